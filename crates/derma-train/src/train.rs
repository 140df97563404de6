//! The training run: data ([`crate::dataset`]) → model → epochs of AdamW with warmup +
//! cosine, validation after every epoch, best-epoch selection, and the final test evaluation
//! written to the run folder.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use burn_store::{BurnpackStore, ModuleSnapshot};
use derma_data::{Augment, Loader, LoaderConfig, Normalize};
use derma_eval::{LogitScaling, ThresholdRule};
use derma_model::{InputNorm, MobileNetV2, MobileNetV2Config, Padding, load_torchvision, weight_conventions};
use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint;
use crate::config::{Calibrate, Decision, TrainConfig};
use crate::dataset::{TaskData, load_data};
use crate::evaluate::{Predictions, SplitMetrics, choose_threshold, predict, split_metrics};
use crate::metric::MetricHead;
use crate::mining::{EpochLosses, HardMining, Mined};
use crate::report::{self, EpochRow, write_atomic};
use crate::captured_step::CapturedStep;
use crate::loss::Loss;
use crate::step::{RunningLoss, TrainStep, adamw};

/// Learning rate at `step` (0-based) of `total`: linear warmup over `warmup` steps, then
/// cosine decay to 0.
pub fn learning_rate(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        let span = (total - warmup).max(1) as f64;
        let t = (step - warmup) as f64 / span;
        0.5 * peak * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
    }
}

/// The error of a run whose training diverged: its mean training loss became NaN or infinite,
/// or (weights or batch-norm statistics blown up in the epoch's last steps, the mean still
/// finite) its validation outputs did. The run folder keeps `metrics.csv` and the best model
/// so far. A sweep scores such a fold NaN and goes on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diverged {
    /// The epoch (1-based).
    pub epoch: usize,
    /// Its mean training loss.
    pub loss: f64,
    /// Whether the validation outputs (probabilities or loss) were not finite.
    pub validation: bool,
}

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.validation {
            write!(
                f,
                "training diverged at epoch {} (train loss {}, but the model's validation outputs are NaN or infinite); lower --lr",
                self.epoch, self.loss
            )
        } else {
            write!(f, "training diverged at epoch {} (loss {}); lower --lr", self.epoch, self.loss)
        }
    }
}

impl std::error::Error for Diverged {}

/// `d` as the run's error, recorded in the run folder's checkpoint first with how its steps ran
/// (`on`): a resume that would run them the same way is refused.
fn diverged(out_dir: &Path, d: Diverged, on: &str) -> anyhow::Error {
    checkpoint::mark_diverged(out_dir, &d.to_string(), on);
    d.into()
}

/// [`checkpoint::run_signature`] of training with `config` on `device` (`backend_name`).
fn signature(config: &TrainConfig, device: &Device, backend_name: &str) -> String {
    let gpu = derma_model::writes_in_place(device);
    checkpoint::run_signature(backend_name, config.captured_step(gpu).0 && gpu)
}

/// What a finished run leaves behind.
pub struct RunOutcome {
    /// The run folder.
    pub out_dir: PathBuf,
    /// Best epoch (1-based).
    pub best_epoch: usize,
    /// Test metrics of the best model.
    pub test: SplitMetrics,
    /// `report.json` content.
    pub report: serde_json::Value,
}

/// Trains with `config` on `device` and writes the run folder: resolves the weights and the
/// data (before creating the folder, so a bad flag leaves nothing behind), then [`fit`].
pub fn run(config: &TrainConfig, device: &Device, backend_name: &str, out_dir: &Path) -> anyhow::Result<RunOutcome> {
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    for w in config.warnings() {
        eprintln!("{w}");
    }
    let weights = crate::pretrained::resolve(&config.pretrained, config.offline)?;
    let data = load_data(config)?;
    fit_from(config, &data, weights.as_deref(), device, backend_name, out_dir, Start::New { announce: true })
}

/// Continues the interrupted run in `run_dir` from its checkpoint (see [`crate::checkpoint`]):
/// `config` is the folder's `config.toml` (the backend may differ), the data is loaded again
/// and training goes on from the epoch after the checkpoint's.
/// A checkpoint marked diverged is continued only on another backend or step than the one the
/// divergence happened on (the steps would not repeat).
pub fn resume(config: &TrainConfig, device: &Device, backend_name: &str, run_dir: &Path) -> anyhow::Result<RunOutcome> {
    config.validate_for_resume().map_err(|e| anyhow::anyhow!("{}: {e}", run_dir.join("config.toml").display()))?;
    let state = checkpoint::read_state(run_dir)?;
    if let Some(why) = &state.diverged
        && state.diverged_on.as_deref().is_none_or(|on| on == signature(config, device, backend_name))
    {
        anyhow::bail!("--resume {}", checkpoint::diverged_advice(run_dir, why));
    }
    if state.epoch > config.epochs {
        anyhow::bail!("--resume {}: the checkpoint is of epoch {} but config.toml has epochs = {}", run_dir.display(), state.epoch, config.epochs);
    }
    let data = load_data(config)?;
    fit_from(config, &data, None, device, backend_name, run_dir, Start::Checkpoint(state))
}

/// [`resume`] on already loaded `data` (a cascade's stage 2 trains on a subset): continues
/// the run folder's checkpoint; refused when `data` are not those it was trained on. A
/// diverged mark is the caller's to check (the cascade's `stage` refuses it with its advice).
pub fn resume_fit(config: &TrainConfig, data: &TaskData, device: &Device, backend_name: &str, run_dir: &Path) -> anyhow::Result<RunOutcome> {
    let state = checkpoint::read_state(run_dir)?;
    fit_from(config, data, None, device, backend_name, run_dir, Start::Checkpoint(state))
}

/// Trains on already loaded `data` (e.g. one cross-validation fold) and writes the run folder.
pub fn fit(
    config: &TrainConfig,
    data: &TaskData,
    weights: Option<&Path>,
    device: &Device,
    backend_name: &str,
    out_dir: &Path,
) -> anyhow::Result<RunOutcome> {
    fit_from(config, data, weights, device, backend_name, out_dir, Start::New { announce: false })
}

/// Where a run starts.
enum Start {
    /// A new run; with `announce`, how to resume it is printed once its config.toml is
    /// written (derma-train's own runs; a sweep fold or cascade stage is resumed by its tool).
    New { announce: bool },
    /// The run folder's checkpoint.
    Checkpoint(checkpoint::State),
}

/// [`fit`], new or from the run folder's checkpoint.
fn fit_from(
    config: &TrainConfig,
    data: &TaskData,
    weights: Option<&Path>,
    device: &Device,
    backend_name: &str,
    out_dir: &Path,
    start: Start,
) -> anyhow::Result<RunOutcome> {
    let (from, announce) = match start {
        Start::New { announce } => (None, announce),
        Start::Checkpoint(state) => (Some(state), false),
    };
    // Here, not in load_data: a sweep trial may change `calibrate` without reloading the data.
    if config.calibrate == Calibrate::Platt && !data.is_binary() {
        anyhow::bail!(
            "--calibrate platt fits a two-class task's single logit; the data have {} classes (use --calibrate temperature, \
             or --positive-classes)",
            data.train.num_classes()
        );
    }
    if config.decision == Decision::Balanced {
        check_balanced_decision(config, data)?;
    }
    std::fs::create_dir_all(out_dir).map_err(|e| anyhow::anyhow!("--out {}: cannot create it: {e}", out_dir.display()))?;
    select_kernels(config);
    let data_hash = data.fingerprint();
    if let Some(recorded) = from.as_ref().and_then(|s| s.data_hash.as_deref())
        && recorded != data_hash
    {
        anyhow::bail!(
            "--resume {}: the data differ from those the checkpoint was trained on (images, labels or splits of {} changed): \
             continuing would mix two datasets; start a new run",
            out_dir.display(),
            config.npz.as_ref().map_or_else(|| format!("--dataset {}", config.dataset), |p| p.display().to_string())
        );
    }
    let (input_norm, padding) = match (weights, &from) {
        // A resumed run keeps the conventions its config.toml recorded (the checkpoint holds
        // the weights; the pretrained file is not needed again).
        (_, Some(_)) => match (config.input_norm, config.padding) {
            (Some(n), Some(p)) => (n, p),
            _ => anyhow::bail!("--resume {}: config.toml lacks input_norm/padding (not written by derma-train)", out_dir.display()),
        },
        (Some(path), None) => weight_conventions(path)?,
        (None, None) => (InputNorm::ImageNet, Padding::Symmetric),
    };
    if from.is_none() {
        for w in convention_overrides(config, input_norm, padding) {
            eprintln!("{w}");
        }
    }
    let mut config = config.clone();
    config.input_norm = Some(input_norm);
    config.padding = Some(padding);
    let config = &config;
    let binary = data.is_binary();
    let num_logits = if binary { 1 } else { data.train.num_classes() };
    let class_names = data.train.class_names().to_vec();
    let counts = data.train.class_counts();
    let loss_config = config.loss(&counts).map_err(|e| anyhow::anyhow!(e))?;
    let sampler = config.sampler().map_err(|e| anyhow::anyhow!(e))?;
    let rule: ThresholdRule = config.threshold.parse().map_err(|e| anyhow::anyhow!("--threshold: {e}"))?;
    let select_metric = config.select_metric().map_err(anyhow::Error::msg)?;
    println!(
        "data: {} train / {} val / {} test images of {:?}; classes {}",
        data.train.len(),
        data.val.len(),
        data.test.len(),
        data.train.image_shape(),
        class_names.iter().zip(&counts).map(|(n, c)| format!("{n}={c}")).collect::<Vec<_>>().join(" ")
    );

    let train_device = device.clone().autodiff();
    device.seed(config.seed);
    let (model_config, mut model) = build_model(config, num_logits, weights, (input_norm, padding), &train_device)?;
    // Every setting is resolved (loss weights, threshold rule, pretrained weights): a flag
    // that fails above leaves no config.toml to block the corrected command.
    if from.is_none() {
        // An older run's results (--overwrite, a retrained sweep fold) must not sit beside
        // this run's config.toml and model.bpk.
        checkpoint::remove(out_dir);
        // Every run file but config.toml, which is written next.
        let results: Vec<&str> = report::RUN_FILES.into_iter().filter(|f| *f != "config.toml").collect();
        let _ = report::remove_outputs(out_dir, &results);
    }
    write_atomic(&out_dir.join("config.toml"), config.to_toml().as_bytes())?;
    if announce {
        // Said once every setting is resolved and config.toml is there (a run refused before
        // this point has nothing to resume).
        let shown = std::path::absolute(out_dir).unwrap_or_else(|_| out_dir.to_path_buf());
        println!("run folder: {} (stopped after its first epoch, it continues with `derma-train --resume {}`)", shown.display(), shown.display());
    }
    if let Some(paths) = &data.paths {
        let csv = report::splits_csv(paths, data.patients.as_ref(), [&data.train, &data.val, &data.test]);
        write_atomic(&out_dir.join("splits.csv"), csv.as_bytes())?;
    }
    let normalize = Normalize { affine: input_norm.affine(), out_channels: config.in_channels };
    let size = config.image_size();
    let train_augment = Augment::new(config.augment_config(), size);
    let loss_eval = loss_config.init(device);
    let mut step_state = TrainStep::new(loss_config.init(&train_device), config.adamw(), config.backbone_lr_mult);
    if let Some(metric) = config.metric() {
        // Initialised after the network, so the network's initialisation does not change.
        step_state = step_state.with_metric(MetricHead::new(metric, model_config.last_channel(), &train_device));
        println!(
            "metric head: Linear({} -> {}) + L2 norm, batch-hard triplet loss (margin {}) + synthetic hard triplets, \
             weight {} (training-only: not saved in model.bpk)",
            model_config.last_channel(),
            metric.dim,
            metric.margin,
            metric.weight
        );
    }
    // The training step captured as a graph (config.validate refused `--step captured` with
    // what it does not record; `auto` captures on a GPU only).
    let (capture, why) = config.captured_step(derma_model::writes_in_place(device));
    println!("{why}");
    let new_captured = |head: Option<MetricHead>| {
        let c = CapturedStep::new(loss_config.init(&train_device), config.adamw(), config.backbone_lr_mult, &train_device);
        match head {
            Some(head) => c.with_metric(head),
            None => c,
        }
    };
    // With a metric head, the captured step takes over the eager step's freshly initialised
    // head (the eager step then keeps none).
    let mut captured = capture.then(|| new_captured(step_state.take_metric()));
    let mut capture_news = CaptureNews::default();
    let train_labels = data.train.labels();
    let mut mining = config.mining().map(|m| HardMining::new(m, train_labels, binary));
    let mut mined: Option<Mined> = None;

    // Where training starts: epoch 0, or the epoch after the checkpoint's with its model,
    // optimiser, metric head, mining losses, step, best epoch and metrics.csv rows.
    let mut start_epoch = 0;
    let mut step = 0;
    let mut best: Option<(f64, usize, MobileNetV2)> = None;
    let mut earlier_rows: Vec<String> = Vec::new();
    if let Some(state) = &from
        && !state.stopped
    {
        // Training goes on: the training model, AdamW's state, the metric head and mining's
        // losses come back (a stopped run needs none of them, only its best weights below; its
        // epoch files may be gone with a removal of the checkpoint that was cut short).
        let fresh_head = captured.as_ref().and_then(CapturedStep::metric).or(step_state.metric()).cloned();
        let (restored, record, head) = checkpoint::load(out_dir, state, model, fresh_head.as_ref().map(|h| h.embedding.clone()))?;
        model = restored;
        let head = head.zip(fresh_head).map(|(embedding, fresh)| MetricHead { embedding, config: fresh.config });
        if captured.take().is_some() {
            captured = Some(new_captured(head).resume(record, state.step));
        } else {
            let mut resumed =
                TrainStep::with_optimizer(adamw(config.adamw()).load_record(record), step_state.loss().clone(), config.backbone_lr_mult);
            if let Some(h) = head {
                resumed = resumed.with_metric(h);
            }
            step_state = resumed;
        }
        if let (Some(m), Some(losses)) = (mining.as_mut(), state.mining_losses.clone()) {
            mined = Some(m.restore(losses).map_err(|e| anyhow::anyhow!("--resume {}: {e}", out_dir.display()))?);
        }
    }
    if let Some(state) = &from {
        let best_model = checkpoint::load_best(out_dir, state, model_config.init(device))?;
        best = Some((state.best_score(), state.best_epoch, best_model));
        earlier_rows = state.metrics_rows.clone();
        if earlier_rows.len() != state.epoch {
            anyhow::bail!("--resume {}: the checkpoint holds {} metrics rows for {} epochs", out_dir.display(), earlier_rows.len(), state.epoch);
        }
        if config.freeze_bn {
            model = model.set_bn_frozen(true);
        }
        start_epoch = state.epoch;
        step = state.step;
        if state.stopped {
            // Every epoch had run (or --patience had stopped the run): only the final
            // evaluation of the best epoch was missing.
            start_epoch = config.epochs;
            println!("resuming after epoch {} of {}: training had ended; evaluating the best epoch ({})", state.epoch, config.epochs, state.best_epoch);
        } else {
            println!("resuming after epoch {start_epoch} of {} (step {step}; best epoch so far {})", config.epochs, state.best_epoch);
        }
    }

    let steps_per_epoch =
        training_draws(sampler.epoch_indices(data.train.labels(), data.train.num_classes(), config.seed, 0), config.batch_size)
            .len()
            .div_ceil(config.batch_size);
    let total_steps = steps_per_epoch * config.epochs;
    if let Some(c) = captured.as_mut() {
        // A frozen backbone's AdamW states count from its first update.
        c.set_backbone_start(config.freeze_backbone_epochs * steps_per_epoch);
    }
    let warmup = (config.warmup_epochs * steps_per_epoch as f64).round() as usize;
    println!(
        "model: MobileNetV2 width {} ({} parameters), {} px, backend {backend_name}; {} steps/epoch",
        config.width,
        model.num_trainable_params(),
        size,
        steps_per_epoch
    );
    if let Some(note) = gpu_warmup_note(backend_name) {
        println!("{note}");
    }

    let tty = std::io::stdout().is_terminal();
    let mut rows: Vec<EpochRow> = Vec::new();
    for epoch in start_epoch..config.epochs {
        let started = Instant::now();
        // Dropout draws from the device generator: seeded per epoch, so a resumed run draws
        // the masks of an uninterrupted one. Mixed rather than `seed + epoch`: that reused the
        // initialisation's stream in epoch 0 and made seed s + 1's initialisation and masks
        // those of seed s one epoch later, so neighbouring seeds were not independent runs.
        device.seed(crate::folds::mix_seed(config.seed, epoch as u64 + 1));
        let order = match mined.as_ref().filter(|m| m.is_active()) {
            Some(m) => sampler.epoch_indices_with_multipliers(
                train_labels,
                data.train.num_classes(),
                &m.multipliers,
                config.seed,
                epoch,
            ),
            None => sampler.epoch_indices(train_labels, data.train.num_classes(), config.seed, epoch),
        };
        let order = training_draws(order, config.batch_size);
        let n_images = order.len();
        let loader = Loader::spawn(
            &data.train,
            order,
            LoaderConfig {
                batch_size: config.batch_size,
                prefetch: 4,
                augment: train_augment.clone(),
                normalize,
                seed: config.seed,
                epoch,
            },
        );
        let bar = progress_bar(tty, loader.len(), epoch, config.epochs);
        // The running loss stays on the device; it is read every `report_every` steps only.
        let mut running = RunningLoss::new(device);
        let mut running_metric = RunningLoss::new(device);
        let mut epoch_losses = EpochLosses::new();
        let report_every = 20;
        if config.freeze_backbone_epochs > 0 && (epoch == start_epoch || epoch == config.freeze_backbone_epochs) {
            let frozen = epoch < config.freeze_backbone_epochs;
            model = model.set_backbone_frozen(frozen);
            if config.freeze_bn {
                model = model.set_bn_frozen(true); // unfreezing re-enabled batch statistics
            }
            println!("epoch {}: backbone {}", epoch + 1, if frozen { "frozen (classifier only)" } else { "unfrozen" });
            // Other parameters train and other batch norms run: the graphs are recorded anew.
            if let Some(c) = captured.as_mut() {
                c.recapture();
            }
        }
        let mut lr = config.lr;
        for (i, mut batch) in loader.enumerate() {
            lr = learning_rate(config.lr, step, warmup, total_steps);
            let labels: Vec<usize> = batch.labels.iter().map(|&l| l as usize).collect();
            let progress = (step as f64 / total_steps.max(1) as f64).min(1.0);
            let weight = loss_eval.batch_weight(&labels, num_logits);
            let (images, targets) = (batch.take_images(&train_device), batch.targets(&train_device));
            let (next, out) = match captured.as_mut() {
                Some(c) => c.step_full(model, images, targets, &labels, lr, progress).map_err(|e| {
                    let how = match epoch {
                        0 => format!("run it again with `--step eager` (no epoch had finished; --overwrite replaces {})", out_dir.display()),
                        _ => format!("the last finished epoch's checkpoint is intact: `derma-train --resume {} --step eager` continues it", out_dir.display()),
                    };
                    anyhow::anyhow!("{e}. The eager step records no graph: {how}")
                })?,
                None => step_state.step_full(model, images, targets, &labels, lr, progress),
            };
            model = next;
            running.add_weighted(out.loss, weight, labels.len());
            if let Some((metric, anchors)) = out.metric {
                running_metric.add(metric, anchors);
            }
            if mining.is_some() {
                epoch_losses.add(&batch.indices, out.per_sample);
            }
            step += 1;
            if tty && (i % report_every == report_every - 1) {
                let mean = running.mean();
                let ips = running.seen() as f64 / started.elapsed().as_secs_f64();
                bar.set_message(format!("loss {mean:.4}  {ips:.0} img/s"));
            }
            bar.inc(1);
        }
        let train_loss = running.mean();
        let train_seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        if let Some(c) = captured.as_ref() {
            capture_news.report(c);
        }
        if !train_loss.is_finite() {
            return Err(diverged(out_dir, Diverged { epoch: epoch + 1, loss: train_loss, validation: false }, &signature(config, device, backend_name)));
        }
        let metric_loss = (running_metric.seen() > 0).then(|| running_metric.mean());
        // One read of the epoch's per-sample losses → the next epoch's sampling multipliers.
        mined = mining.as_mut().map(|m| m.update(epoch_losses.read(data.train.len())));

        let eval_model = model.valid();
        let val_pred = predict(&eval_model, &data.val, size, normalize, config.batch_size, Some(&loss_eval), device);
        if !val_pred.loss.is_finite() || val_pred.probs.iter().flatten().any(|p| !p.is_finite()) {
            return Err(diverged(out_dir, Diverged { epoch: epoch + 1, loss: train_loss, validation: true }, &signature(config, device, backend_name)));
        }
        let choice = if binary { Some(choose_threshold(&rule, &val_pred)?) } else { None };
        let threshold = choice.as_ref().map_or(0.5, |c| c.value);
        // A floor no threshold meets leaves only the empty operating point (threshold above
        // every score: sensitivity 0), whatever the fallback threshold shows.
        let floor_met = choice.as_ref().is_none_or(|c| c.met);
        // The model's own arg-max here, whatever --decision says (as --calibrate, a choice made
        // after training).
        let val = split_metrics(&val_pred, threshold, None)?;
        let images_per_second = n_images as f64 / train_seconds;
        let row = EpochRow { epoch: epoch + 1, train_loss, val, lr, seconds: started.elapsed().as_secs_f64(), images_per_second };
        println!("{}", epoch_line(&row, config.epochs, floor_met, metric_loss));
        if let Some(m) = mined.as_ref().filter(|_| epoch + 1 < config.epochs) {
            println!("{}", mining_line(m, binary, epoch + 2));
        }
        let score = select_metric.score(&row.val, floor_met);
        if best.as_ref().is_none_or(|(s, _, _)| score > *s || s.is_nan()) {
            // Saved as soon as it is the best, so a run stopped later (Ctrl-C, divergence, a
            // lost machine) keeps its best model beside metrics.csv.
            save_model(&eval_model, &out_dir.join("model.bpk"))?;
            // The captured step writes the training model's memory, which `eval_model` shares.
            let kept = if captured.is_some() { derma_model::detached_copy(eval_model) } else { eval_model };
            best = Some((score, epoch + 1, kept));
        }
        rows.push(row);
        let metrics = report::metrics_csv(binary, &earlier_rows, &rows);
        write_atomic(&out_dir.join("metrics.csv"), metrics.as_bytes())?;
        let (best_score, best_epoch) = best.as_ref().map(|(s, e, _)| (*s, *e)).expect("set at the first epoch");
        // Counted from the unfreezing epoch at the earliest: a frozen backbone is no plateau.
        let since_best = (epoch + 1).saturating_sub(best_epoch.max(config.freeze_backbone_epochs));
        let early_stop = config.patience > 0 && since_best >= config.patience && epoch + 1 < config.epochs;
        let state = checkpoint::State {
            epoch: epoch + 1,
            stopped: early_stop || epoch + 1 == config.epochs,
            step,
            best_epoch,
            best_score_text: best_score.to_string(),
            mining_losses: mining.as_ref().map(|m| m.losses().to_vec()),
            head: config.metric().is_some(),
            metrics_rows: metrics.lines().skip(1).map(str::to_string).collect(),
            data_hash: Some(data_hash.clone()),
            diverged: None,
            diverged_on: None,
        };
        let optimizer = match captured.as_mut() {
            Some(c) => {
                let (settled, record) = c.optimizer_record(model);
                model = settled;
                record
            }
            None => step_state.optimizer().to_record(),
        };
        let head = captured.as_ref().map_or(step_state.metric(), CapturedStep::metric);
        checkpoint::save(out_dir, &state, &model, optimizer, head.map(|h| &h.embedding))?;
        if early_stop {
            println!(
                "early stop after epoch {}: no better val {} for {} epochs (--patience {})",
                epoch + 1,
                config.select_metric,
                since_best,
                config.patience
            );
            break;
        }
    }

    let (_, best_epoch, best_model) = best.expect("at least one epoch ran");
    let finish = Finish { config, data, device, out_dir, rule: &rule, normalize, loss: &loss_eval, data_hash: &data_hash };
    finish.evaluate(best_epoch, &best_model)
}

/// The run's network on `device`: MobileNetV2 as configured with the weights' `padding`, the
/// pretrained `weights` (if any) loaded with a new `num_logits` classifier, and batch norms
/// frozen with `--freeze-bn`.
fn build_model(
    config: &TrainConfig,
    num_logits: usize,
    weights: Option<&Path>,
    (input_norm, padding): (InputNorm, Padding),
    device: &Device,
) -> anyhow::Result<(MobileNetV2Config, MobileNetV2)> {
    let model_config = MobileNetV2Config::new(num_logits)
        .with_width(config.width)
        .with_in_channels(config.in_channels)
        .with_output_stride(config.output_stride)
        .with_dilate(config.dilate)
        .with_dropout(config.dropout)
        .with_padding(padding);
    let mut model = model_config.init(device);
    if let Some(path) = weights {
        model = load_torchvision(model, path, false).map_err(|e| anyhow::anyhow!("--pretrained: {e:#}"))?;
        println!("weights: {} (input normalisation {input_norm:?}, padding {padding:?}; new {num_logits}-logit classifier)", path.display());
        if !config.freeze_bn && model.has_identity_bn_statistics() {
            eprintln!(
                "warning: {} holds identity batch-norm statistics (mean 0, variance 1: batch norms folded into the \
                 convolutions, as in the converted TF-lite weights). In training mode every batch norm re-normalises \
                 its layer with batch statistics, which changes the pretrained function; --freeze-bn keeps it \
                 (docs/results.md, transfer learning: 64 px DermaMNIST-ham, with and without).",
                path.display()
            );
        }
    }
    if config.freeze_bn {
        model = model.set_bn_frozen(true);
        println!("batch norms: running statistics throughout training (--freeze-bn)");
    }
    Ok((model_config, model))
}

/// The kernels the training steps of this thread use (batch norm, depthwise and 1x1
/// convolutions: the choices are the thread's), said when they are not the defaults.
fn select_kernels(config: &TrainConfig) {
    derma_model::set_batch_norm_impl(config.batch_norm);
    if config.batch_norm == derma_model::BatchNormImpl::Burn {
        println!("batch norm: Burn's batch_norm_train (--batch-norm burn)");
    }
    derma_model::set_depthwise_impl(config.depthwise);
    if config.depthwise == derma_model::DepthwiseImpl::Burn {
        println!("depthwise convolutions: Burn's conv2d and its backward pass (--depthwise burn)");
    }
    derma_model::set_pointwise_impl(config.pointwise);
    if config.pointwise == derma_model::PointwiseImpl::Kernels {
        println!("1x1 convolutions: derma-model's pointwise kernels (--pointwise kernels)");
    }
}

/// An epoch's progress bar on a terminal (hidden otherwise).
fn progress_bar(tty: bool, batches: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if !tty {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(batches as u64);
    b.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b.set_prefix(format!("{}/{epochs}", epoch + 1));
    b
}

/// What the captured step has said so far: each piece of news once, at the end of the epoch
/// where the capture happened or failed.
#[derive(Default)]
struct CaptureNews {
    eager: bool,
    graphs: Vec<(usize, usize)>,
}

impl CaptureNews {
    fn report(&mut self, c: &CapturedStep) {
        if let (Err(why), false) = (c.captured(), self.eager) {
            println!("training step: not captured, every step eager: {why}");
            self.eager = true;
        }
        // Each graph once: the full batch's (again after a recapture), and an epoch's last,
        // smaller batch's, recorded at its second epoch.
        for (i, (size, from)) in c.graphs().into_iter().enumerate() {
            let Some(from) = from.filter(|from| !self.graphs.contains(&(size, *from))) else { continue };
            match i {
                0 => println!("training step: the captured graph is replayed from step {from}"),
                _ => println!("training step: the {size}-image last batch has a graph of its own, replayed from step {from}"),
            }
            self.graphs.push((size, from));
        }
    }
}

/// An epoch's line: training loss, validation figures (and the operating point of a binary
/// task), the triplet loss of a metric head, speed and time.
fn epoch_line(row: &EpochRow, epochs: usize, floor_met: bool, metric_loss: Option<f64>) -> String {
    let mut line = format!(
        "epoch {:>3}/{}  train_loss {:.4}  val_loss {:.4}  val_acc {:.4}  val_bal_acc {:.4}  val_auc {:.4}",
        row.epoch, epochs, row.train_loss, row.val.loss, row.val.accuracy, row.val.balanced_accuracy, row.val.auc
    );
    if let Some(b) = &row.val.binary {
        let m = &b.at_threshold;
        line += &format!("  sens {:.3} spec {:.3} @{:.3}  fp {}", m.sensitivity, m.specificity, m.threshold, m.fp);
        if !floor_met {
            line += " (floor not met)";
        }
    }
    if let Some(m) = metric_loss {
        line += &format!("  triplet {m:.4}");
    }
    line += &format!("  {:.0} img/s  {:.1}s", row.images_per_second, row.seconds);
    line
}

/// The end of a run: the best epoch's model evaluated on validation (the threshold) and test,
/// the result files written, the checkpoint removed and the summary printed.
struct Finish<'a> {
    config: &'a TrainConfig,
    data: &'a TaskData,
    device: &'a Device,
    out_dir: &'a Path,
    rule: &'a ThresholdRule,
    normalize: Normalize,
    loss: &'a Loss,
    data_hash: &'a str,
}

impl Finish<'_> {
    fn evaluate(&self, best_epoch: usize, best_model: &MobileNetV2) -> anyhow::Result<RunOutcome> {
        let Finish { config, data, device, out_dir, normalize, .. } = *self;
        let (size, binary) = (config.image_size(), data.is_binary());
        let (class_names, counts) = (data.train.class_names().to_vec(), data.train.class_counts());
        let val_pred = predict(best_model, &data.val, size, normalize, config.batch_size, Some(self.loss), device);
        let test_pred = predict(best_model, &data.test, size, normalize, config.batch_size, Some(self.loss), device);
        let (val_pred, test_pred, recalibration) = self.recalibrate(val_pred, test_pred)?;
        let choice = if binary { Some(choose_threshold(self.rule, &val_pred)?) } else { None };
        let threshold = choice.as_ref().map_or(0.5, |c| c.value);
        // --decision balanced: the training split's class frequencies.
        let prior = self.decision_prior(&counts, recalibration.as_ref());
        let val = split_metrics(&val_pred, threshold, prior.as_deref())?;
        let test = split_metrics(&test_pred, threshold, prior.as_deref())?;
        write_atomic(
            &out_dir.join("predictions.csv"),
            report::predictions_csv(&[("val", &val_pred), ("test", &test_pred)]).as_bytes(),
        )?;
        if binary {
            write_atomic(&out_dir.join("thresholds.csv"), report::thresholds_csv(&val_pred)?.as_bytes())?;
        }
        let mut report_value = report::report_json(best_epoch, &class_names, &counts, &test_pred, &test, choice.as_ref().map(|c| (c, &val)))?;
        // What the run was trained and evaluated on (TaskData::fingerprint): a cascade resumed
        // later reuses this run only for the same data.
        report_value["data_hash"] = serde_json::json!(self.data_hash);
        if let Some(r) = &recalibration {
            report_value["recalibration"] = r.clone();
        }
        if let Some(prior) = &prior {
            report_value["decision"] = serde_json::json!({ "rule": Decision::Balanced.name(), "prior": prior });
        }
        write_atomic(&out_dir.join("report.json"), serde_json::to_string_pretty(&report_value)?.as_bytes())?;
        // Only now is the run complete without its checkpoint: a run stopped before this point
        // is finished by --resume (the final evaluation only, when every epoch had run).
        checkpoint::remove(out_dir);
        write_report_pages(out_dir, data, &counts);

        println!("\nbest epoch {best_epoch} (by val {}); test set:", config.select_metric);
        print!("{}", report::summary_table(&class_names, &test_pred, &test)?);
        if let Some(prior) = &prior {
            let each: Vec<String> = class_names.iter().zip(prior).map(|(n, p)| format!("{n} {p:.3}")).collect();
            println!("decision: --decision balanced, the arg-max of probability / training class frequency ({})", each.join(", "));
        }
        // report.json's calibration (computed once, there).
        let calibration = &report_value["test"]["calibration"];
        let top_label = calibration["bins_of"].as_str() == Some("top label");
        // With --calibrate, the figures before the map beside them.
        let before = recalibration.as_ref().filter(|r| r["applied"] == true).map_or(String::new(), |r| {
            let b = &r["test_before"];
            format!(
                " after --calibrate {} (the model's own: Brier {:.4}, ECE {:.4})",
                config.calibrate.name(),
                b["brier"].as_f64().unwrap_or(f64::NAN),
                b["ece"].as_f64().unwrap_or(f64::NAN)
            )
        });
        println!(
            "calibration: Brier {:.4}{}, ECE {:.4} over {} equal-width bins of the {} probability{before} (plots/calibration.png)",
            calibration["brier"].as_f64().unwrap_or(f64::NAN),
            if top_label { " (summed over the classes)" } else { "" },
            calibration["ece"].as_f64().unwrap_or(f64::NAN),
            derma_eval::calibration::BINS,
            if top_label { "top label's" } else { "positive class's" },
        );
        if let (Some(c), Some(b)) = (&choice, &test.binary) {
            if let Some(note) = &c.note {
                println!("note: {note}");
            }
            let m = &b.at_threshold;
            // 95 % intervals: Wilson from the counts, DeLong's for the AUC.
            let ci = |v: Option<(f64, f64)>| v.map_or_else(|| "n/a".to_string(), |(lo, hi)| format!("{lo:.3}-{hi:.3}"));
            println!(
                "threshold {} = {} ({}): test sensitivity {:.4} [95% CI {}] specificity {:.4} [{}] precision {:.4} F2 {:.4} (tp {} fp {} tn {} fn {}), AUC {:.4} [{}], AP {:.4}",
                c.rule,
                derma_report::threshold_text(c.value),
                if matches!(c.rule, derma_eval::ThresholdRule::Fixed(_)) { "fixed" } else { "chosen on val" },
                m.sensitivity,
                ci(m.counts().sensitivity_ci95()),
                m.specificity,
                ci(m.counts().specificity_ci95()),
                m.precision,
                m.f2,
                m.tp,
                m.fp,
                m.tn,
                m.fn_,
                test.auc,
                // report.json's DeLong interval (computed once, there).
                ci(report_value["test"]["auc_ci95"][0].as_f64().zip(report_value["test"]["auc_ci95"][1].as_f64())),
                b.ap
            );
            if c.value != 0.5 {
                let h = report::at_half(&test_pred)?;
                println!(
                    "threshold 0.5 (for comparison): test sensitivity {:.4} specificity {:.4} precision {:.4} F2 {:.4} (tp {} fp {} tn {} fn {})",
                    h.sensitivity, h.specificity, h.precision, h.f2, h.tp, h.fp, h.tn, h.fn_
                );
            }
        }
        println!("run folder: {}", out_dir.display());
        Ok(RunOutcome { out_dir: out_dir.to_path_buf(), best_epoch, test, report: report_value })
    }

    /// `--decision balanced`: the training split's class frequencies the decision divides by, or
    /// `None` (the arg-max). Not applied, with a warning, where the division would be wrong: a
    /// class without training images (its frequency is 0), or a re-weighted training whose
    /// `--calibrate bcts` map could not be applied (its probabilities still lean towards equal
    /// classes; [`check_balanced_decision`] let it through for the map).
    fn decision_prior(&self, counts: &[usize], recalibration: Option<&serde_json::Value>) -> Option<Vec<f64>> {
        if self.config.decision != Decision::Balanced || self.data.is_binary() {
            return None;
        }
        let skip = if let Some(class) = counts.iter().position(|&c| c == 0) {
            Some(format!("class `{}` has no training image, so it has no frequency to divide by", self.data.train.class_names()[class]))
        } else if !reweighting(self.config).is_empty() && recalibration.is_none_or(|r| r["applied"] != true) {
            Some(format!("--calibrate bcts was not applied, and after {} the division would correct twice", reweighting(self.config).join(" and ")))
        } else {
            None
        };
        if let Some(reason) = skip {
            eprintln!("warning: --decision balanced: not applied, the classes are the arg-max: {reason}");
            return None;
        }
        let total: usize = counts.iter().sum();
        Some(counts.iter().map(|&c| c as f64 / total as f64).collect())
    }

    /// `--calibrate`: the logit map fitted on the validation rows, applied to both splits, and
    /// report.json's `recalibration` record (None without `--calibrate`). A map that cannot be
    /// fitted (validation of one class, logits that do not rank) leaves the model's own
    /// probabilities, with a warning and the reason in the record — the trained run is kept.
    fn recalibrate(&self, val: Predictions, test: Predictions) -> anyhow::Result<(Predictions, Predictions, Option<serde_json::Value>)> {
        let method = self.config.calibrate;
        // The model's own probabilities kept, with a warning and the reason in the record.
        let not_applied = |val: Predictions, test: Predictions, reason: String| {
            eprintln!("warning: --calibrate {}: not applied, the probabilities stay the model's own: {reason}", method.name());
            let record = serde_json::json!({ "method": method.name(), "fitted_on": "val", "applied": false, "reason": reason });
            Ok((val, test, Some(record)))
        };
        let fitted = match val.fit_recalibration(method) {
            Ok(None) => return Ok((val, test, None)),
            Ok(Some(r)) => r,
            Err(e) => return not_applied(val, test, e.to_string()),
        };
        let (val_mapped, test_mapped) = (val.recalibrated(&fitted.scaling), test.recalibrated(&fitted.scaling));
        // A map is applied only where it keeps what it promises: a temperature at an end of its
        // range (a perfectly separated validation split, or logits without information) and a
        // binary map that ties probabilities the model's own keep apart (f64 saturating at 0 or
        // 1 for a steep map) would change the ranking metrics and the threshold, not only the
        // probabilities.
        let refused = if fitted.at_bound {
            let t = 1.0 / fitted.scaling.scale;
            Some(format!(
                "the best temperature lies at or beyond an end of [{}, {}] or has no finite value, T = {t}: {}",
                derma_eval::recalibration::MIN_TEMPERATURE,
                derma_eval::recalibration::MAX_TEMPERATURE,
                if t <= 1.0 {
                    "the model separates the validation split perfectly, and so low a temperature would round the probabilities to 0 and 1"
                } else {
                    "the logits carry no information on the validation split, and so high a temperature would flatten the probabilities"
                }
            ))
        } else if val.is_binary() && (ties_added(&val, &val_mapped) || ties_added(&test, &test_mapped)) {
            Some(format!(
                "the fitted map (scale {:.4}, bias {:.4}) rounds probabilities the model keeps apart to equal values, which \
                 would change the ROC curve and the threshold",
                fitted.scaling.scale, fitted.scaling.bias
            ))
        } else {
            None
        };
        if let Some(reason) = refused {
            return not_applied(val, test, reason);
        }
        let before = report::calibration_json(&test)?;
        let LogitScaling { scale, bias, ref class_bias } = fitted.scaling;
        let signed = |v: f64| format!("{} {:.4}", if v < 0.0 { '-' } else { '+' }, v.abs());
        let map = match method {
            Calibrate::Platt => format!("sigmoid({scale:.4}·z {})", signed(bias)),
            Calibrate::Bcts if class_bias.is_empty() => format!("sigmoid(z / {:.4} {})", 1.0 / scale, signed(bias)),
            Calibrate::Bcts => {
                let names = self.data.train.class_names();
                let b: Vec<String> = names.iter().zip(class_bias).map(|(n, b)| format!("{n} {b:+.3}")).collect();
                format!("T = {:.4}, class biases {}", 1.0 / scale, b.join(", "))
            }
            _ => format!("T = {:.4}", 1.0 / scale),
        };
        println!(
            "recalibration: --calibrate {} fitted on val, {map}: val NLL {:.4} -> {:.4}",
            method.name(),
            fitted.nll_before,
            fitted.nll_after
        );
        let record = serde_json::json!({
            "method": method.name(),
            "fitted_on": "val",
            "applied": true,
            "scale": scale,
            "bias": bias,
            "class_bias": (!class_bias.is_empty()).then_some(class_bias),
            "temperature": matches!(method, Calibrate::Temperature | Calibrate::Bcts).then(|| 1.0 / scale),
            "at_bound": fitted.at_bound,
            "val_nll_before": fitted.nll_before,
            "val_nll_after": fitted.nll_after,
            // The model's own test calibration, in test.calibration's form (bins included).
            "test_before": before,
        });
        Ok((val_mapped, test_mapped, Some(record)))
    }
}

/// `--decision balanced` divides probabilities by the training split's class frequencies: right
/// for probabilities that come true under that prior. A binary task picks its operating point
/// with `--threshold` instead; and class weights, a re-balancing sampler or a per-class focal
/// α train the model towards equal classes already, so the division would correct twice —
/// unless `--calibrate bcts` first fits the probabilities back to the data's prior.
fn check_balanced_decision(config: &TrainConfig, data: &TaskData) -> anyhow::Result<()> {
    if data.is_binary() {
        anyhow::bail!(
            "--decision balanced is a multi-class decision rule; a two-class task chooses its operating point with --threshold \
             (e.g. youden, or min-spec:0.80)"
        );
    }
    let reweighting = reweighting(config);
    if !reweighting.is_empty() && config.calibrate != Calibrate::Bcts {
        anyhow::bail!(
            "--decision balanced with {}: the training already pushes the model towards equal classes, and dividing its \
             probabilities by the class frequencies would correct twice; add --calibrate bcts (which fits them back to \
             the data's prior on validation) or drop the re-weighting",
            reweighting.join(" and ")
        );
    }
    Ok(())
}

/// The flags of `config` that train towards equal classes: `--class-weights`, a `--sampler`
/// and a focal `--alpha`.
fn reweighting(config: &TrainConfig) -> Vec<&'static str> {
    let mut flags = Vec::new();
    if !matches!(&config.class_weights, crate::config::ClassWeights::Named(name) if name == "none") {
        flags.push("--class-weights");
    }
    if config.sampler != "none" {
        flags.push("--sampler");
    }
    if config.alpha.is_some() {
        flags.push("--alpha");
    }
    flags
}

/// Whether the binary probabilities of `mapped` tie two rows that `raw` keeps apart (the map
/// is increasing, so only rounding can do that).
fn ties_added(raw: &Predictions, mapped: &Predictions) -> bool {
    let distinct = |p: &Predictions| {
        let mut s = p.scores();
        s.sort_by(f64::total_cmp);
        s.dedup();
        s.len()
    };
    distinct(mapped) < distinct(raw)
}

/// An epoch's draws without a last batch of a single image: batch norm cannot normalise one
/// image whose last feature maps are 1x1 (its variance is 0; PyTorch refuses such a batch), and
/// its running statistics would be pulled toward that image just before the evaluation.
pub fn training_draws(mut order: Vec<usize>, batch_size: usize) -> Vec<usize> {
    if order.len() > 1 && order.len() % batch_size == 1 {
        order.pop();
    }
    order
}

/// The per-epoch mining summary: how many images the next epoch up-weights.
fn mining_line(m: &Mined, binary: bool, next_epoch: usize) -> String {
    let what = if binary { "negatives" } else { "images (hard-example mining over all classes)" };
    let mut line = format!("mining: {} of {} {what} up-weighted for epoch {next_epoch}", m.up_weighted, m.competing);
    if m.ranked < m.competing {
        line += &format!(" ({} with a known loss)", m.ranked);
    }
    match (m.threshold, m.multipliers.iter().copied().fold(1.0f64, f64::max)) {
        (Some(t), x) if m.is_active() => line += &format!(", drawn x{x} as often: training loss >= {t:.4}"),
        _ => line += " (plain sampler)",
    }
    line
}

/// Plots, `report.md`/`report.html` and the test error gallery (`derma-report`). The results
/// are already on disk: a failure here is a warning, not a lost run.
fn write_report_pages(out_dir: &Path, data: &TaskData, train_counts: &[usize]) {
    let thumbs = |split: &str, i: usize| -> Option<derma_report::Thumb> {
        let d = match split {
            "test" => &data.test,
            "val" => &data.val,
            _ => return None,
        };
        let [height, width, channels] = d.image_shape();
        (i < d.len()).then(|| derma_report::Thumb { pixels: d.image(i).to_vec(), height, width, channels })
    };
    let options = derma_report::ReportOptions {
        train_counts: Some(train_counts.iter().map(|&c| c as u64).collect()),
        ..Default::default()
    };
    match derma_report::write_report(out_dir, &options, Some(&thumbs)) {
        Ok(files) => {
            for note in &files.notes {
                println!("report note: {note}");
            }
            println!("report: {} (plots in {})", files.markdown.display(), out_dir.join("plots").display());
        }
        Err(e) => eprintln!("warning: the report pages were not written: {e}"),
    }
}

/// Warnings for an `input_norm` or `padding` in the configuration (an earlier run's config.toml
/// reused with `--config`, say) that differs from what a fresh run derives from `pretrained`:
/// the derived value wins, since the weights were trained with it, and the user is told.
fn convention_overrides(config: &TrainConfig, input_norm: InputNorm, padding: Padding) -> Vec<String> {
    let name = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut w = Vec::new();
    for (key, set, derived) in [
        ("input_norm", config.input_norm.map(|n| name(serde_json::json!(n))), name(serde_json::json!(input_norm))),
        ("padding", config.padding.map(|p| name(serde_json::json!(p))), name(serde_json::json!(padding))),
    ] {
        if let Some(set) = set
            && set != derived
        {
            w.push(format!(
                "warning: {key} = \"{set}\" in the configuration is replaced by \"{derived}\": a new run takes it from the weights (pretrained = \"{}\")",
                config.pretrained
            ));
        }
    }
    w
}

/// Saves model weights (burnpack) atomically.
pub fn save_model(model: &MobileNetV2, path: &Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("bpk.tmp");
    let mut store = BurnpackStore::from_file(&tmp).overwrite(true);
    model.save_into(&mut store).map_err(|e| anyhow::anyhow!("saving {}: {e}", path.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("saving {}: {e}", path.display()))?;
    Ok(())
}


/// What a GPU run's first epoch costs beyond the others: every kernel is compiled and
/// autotuned in the process's first steps (measured on an H100, docs/performance.md: 117 s for
/// the first epoch at 28 px / batch 128, then ~2 s per epoch). `None` on the CPU backend.
pub fn gpu_warmup_note(backend_name: &str) -> Option<&'static str> {
    backend_name.starts_with("wgpu").then_some(
        "note: the first epoch on a GPU also compiles and autotunes its kernels (about 2 minutes on an H100 at 28 px the \
         first time; the tuning is kept on disk for later runs); later epochs run at full speed",
    )
}

#[cfg(test)]
mod tests {

    use super::*;

    /// A steep binary map that rounds two probabilities to 1.0 adds a tie; an increasing map
    /// that keeps them apart does not.
    #[test]
    fn a_map_that_ties_probabilities_is_detected() {
        let pred = |logits: &[f32]| Predictions {
            indices: (0..logits.len()).collect(),
            labels: vec![0; logits.len()],
            probs: logits.iter().map(|&z| crate::evaluate::probabilities(&[z])).collect(),
            logits: logits.iter().map(|&z| vec![z]).collect(),
            loss: 0.0,
        };
        let raw = pred(&[-1.0, 0.5, 1.0, 2.0]);
        // sigmoid(40·0.5 + 20) and sigmoid(40·1 + 20) are both 1.0 in f64.
        assert!(ties_added(&raw, &raw.recalibrated(&LogitScaling::affine(40.0, 20.0))));
        assert!(!ties_added(&raw, &raw.recalibrated(&LogitScaling::affine(0.3, -1.2))));
        assert!(!ties_added(&raw, &raw));
    }

    /// A configuration's `input_norm`/`padding` that the weights contradict is named in a
    /// warning; matching or absent ones say nothing.
    #[test]
    fn conventions_replaced_by_the_weights_are_warned_about() {
        let mut c = TrainConfig { input_norm: Some(InputNorm::MinusOneToOne), padding: Some(Padding::Symmetric), ..TrainConfig::default() };
        let w = convention_overrides(&c, InputNorm::ImageNet, Padding::Symmetric);
        assert_eq!(
            w,
            ["warning: input_norm = \"minus_one_to_one\" in the configuration is replaced by \"imagenet\": a new run takes it from the weights (pretrained = \"none\")"]
        );
        c.padding = Some(Padding::TfSame);
        assert_eq!(convention_overrides(&c, InputNorm::ImageNet, Padding::Symmetric).len(), 2);
        assert!(convention_overrides(&c, InputNorm::MinusOneToOne, Padding::TfSame).is_empty());
        assert!(convention_overrides(&TrainConfig::default(), InputNorm::ImageNet, Padding::Symmetric).is_empty());
    }

    #[test]
    fn the_warm_up_note_is_for_wgpu_runs_only() {
        // The names backend::select gives its devices.
        assert!(gpu_warmup_note("wgpu (discrete GPU)").is_some_and(|n| n.contains("compiles and autotunes")));
        assert!(gpu_warmup_note("wgpu (software adapter)").is_some());
        assert_eq!(gpu_warmup_note("cpu (flex)"), None);
    }

    #[test]
    fn a_last_batch_of_one_image_is_dropped() {
        // 140 draws in batches of 139: the 1-image remainder goes (PyTorch's BatchNorm2d raises
        // "Expected more than 1 value per channel when training" on it).
        assert_eq!(training_draws((0..140).collect(), 139).len(), 139);
        // Any other remainder stays; so does a single-image epoch (nothing else to train on).
        assert_eq!(training_draws((0..141).collect(), 139).len(), 141);
        assert_eq!(training_draws((0..139).collect(), 139).len(), 139);
        assert_eq!(training_draws(vec![3], 8), vec![3]);
        assert_eq!(training_draws((0..9).collect(), 1).len(), 9);
    }
}
