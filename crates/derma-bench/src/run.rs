//! One configuration end to end: data, a fresh model and optimiser, then the chosen modes in
//! a fixed order (step, e2e, loader, infer, infer-graph, step-graph, phases) and the allocator
//! reading.

use burn::module::Module;
use burn::prelude::*;
use derma_data::{Augment, AugmentConfig, AugmentPreset, LoaderConfig, Normalize, batch::assemble};
use derma_model::{BatchNormImpl, DepthwiseImpl, InputNorm, PointwiseImpl, MobileNetV2, MobileNetV2Config};
use derma_train::LossConfig;
use derma_train::step::{AdamWSettings, TrainStep, burn_adamw};

use crate::measure::{self, Schedule};
use crate::memory;
use crate::options::{DataSource, Mode, Optimizer, SizeBatch, Upload};
use crate::report::ConfigResult;

/// `  CPU ms/step: name 1.2, name 3.4` (nothing when no thread reading was possible).
fn cpu_note(threads: &[crate::threads::ThreadCpu]) -> String {
    if threads.is_empty() { String::new() } else { format!("  CPU ms/step: {}", crate::threads::describe(threads)) }
}

/// What every configuration shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// MobileNetV2 width multiplier.
    pub width: f64,
    /// Classifier outputs (DermaMNIST: 7).
    pub classes: usize,
    /// Modes to run.
    pub modes: Vec<Mode>,
    /// Untimed, then timed iterations.
    pub schedule: Schedule,
    /// Images.
    pub data: DataSource,
    /// Synthetic images generated per configuration.
    pub synthetic_images: usize,
    /// Loader augmentation.
    pub augment: AugmentPreset,
    /// Batches the loader prepares ahead.
    pub prefetch: usize,
    /// Host-to-device transfer of loader batches.
    pub upload: Upload,
    /// Constant AdamW learning rate (classifier and backbone alike).
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Burn's per-tensor AdamW or the flat one.
    pub optimizer: Optimizer,
    /// Batch norms with their running statistics (derma-train's `--freeze-bn`).
    pub freeze_bn: bool,
    /// Training-mode batch norm (derma-model's fused one, or Burn's own as a baseline).
    pub batch_norm: BatchNormImpl,
    /// Depthwise convolutions' backward pass (derma-model's kernels, or Burn's as a baseline).
    pub depthwise: DepthwiseImpl,
    /// 1x1 convolutions (Burn's, or derma-model's pointwise kernels as the lever under test).
    pub pointwise: PointwiseImpl,
    /// Seed of the model initialisation, data and augmentation.
    pub seed: u64,
}

/// The benchmarked network on `device`: MobileNetV2 at the settings' width, its batch norms
/// frozen with `freeze_bn`.
pub fn model(settings: &Settings, classes: usize, device: &Device) -> MobileNetV2 {
    MobileNetV2Config::new(classes).with_width(settings.width).init(device).set_bn_frozen(settings.freeze_bn)
}

/// The loader configuration of a benchmark configuration.
pub fn loader_config(settings: &Settings, sb: SizeBatch) -> LoaderConfig {
    LoaderConfig {
        batch_size: sb.batch,
        prefetch: settings.prefetch,
        augment: Augment::new(AugmentConfig::preset(settings.augment), sb.size),
        normalize: Normalize { affine: InputNorm::ImageNet.affine(), out_channels: 3 },
        seed: settings.seed,
        epoch: 0,
    }
}

/// Runs `settings.modes` for `sb` on `device` (without autodiff; training uses its autodiff
/// twin). `log` receives one line per finished mode.
pub fn run_config(settings: &Settings, sb: SizeBatch, device: &Device, log: impl FnMut(&str)) -> anyhow::Result<ConfigResult> {
    run_config_with(settings, sb, device, log, |_| {})
}

/// [`run_config`], handing the result so far to `partial` after each mode (a run stopped by a
/// time limit keeps what it measured).
pub fn run_config_with(
    settings: &Settings,
    sb: SizeBatch,
    device: &Device,
    mut log: impl FnMut(&str),
    mut partial: impl FnMut(&ConfigResult),
) -> anyhow::Result<ConfigResult> {
    // The steps run on this thread; the batch-norm, depthwise and pointwise choices are the
    // thread's.
    derma_model::set_batch_norm_impl(settings.batch_norm);
    derma_model::set_depthwise_impl(settings.depthwise);
    derma_model::set_pointwise_impl(settings.pointwise);
    let dataset = crate::data::load(&settings.data, sb.size, settings.synthetic_images.max(sb.batch), settings.classes, settings.seed)?;
    let config = loader_config(settings, sb);
    let first: Vec<usize> = (0..sb.batch).map(|i| i % dataset.len()).collect();
    let batch = assemble(&dataset, &first, 0, &config);

    let train_device = device.clone().autodiff();
    device.seed(settings.seed);
    let mut model = model(settings, dataset.num_classes(), &train_device);
    let loss = LossConfig::ce().init(&train_device);
    let mut step = match settings.optimizer {
        Optimizer::AdamWBurn => TrainStep::with_optimizer(burn_adamw(AdamWSettings::new(settings.weight_decay)), loss, 1.0),
        _ => TrainStep::new(loss, AdamWSettings::new(settings.weight_decay), 1.0),
    };
    if settings.optimizer == Optimizer::AdamWFlat {
        step = step.with_flat_adamw(AdamWSettings::new(settings.weight_decay)).map_err(anyhow::Error::msg)?;
    }
    let mut result =
        ConfigResult { size: sb.size, batch: sb.batch, step: None, e2e: None, e2e_captured: None, loader: None, infer: None, infer_graph: None, step_graph: None, step_captured: None, phases: None, memory: None };
    let line = |mode: Mode, m: &measure::Measurement| {
        format!(
            "{}px batch {}: {:<6} {:>10.1} img/s  {:>9.2} ms/step  warm-up {:>7.1} s{}{}{}",
            sb.size,
            sb.batch,
            mode.name(),
            m.images_per_second,
            m.ms_per_step,
            m.warmup_seconds,
            m.mean_loss.map_or(String::new(), |l| format!("  loss {l:.4}")),
            match m.hardware_graph {
                Some(true) => "  (recorded graph replayed)",
                Some(false) => "  (no graph support here: ran eagerly)",
                None => "",
            },
            cpu_note(&m.threads)
        )
    };
    let feed = || measure::Feed { dataset: &dataset, config: config.clone(), train_device: &train_device, device, how: settings.upload };
    for &mode in &[Mode::Step, Mode::E2e, Mode::E2eCaptured, Mode::Loader, Mode::Infer, Mode::InferGraph, Mode::StepGraph, Mode::StepCaptured, Mode::Phases] {
        if !settings.modes.contains(&mode) {
            continue;
        }
        match mode {
            Mode::Step => {
                let (next, m) = measure::train_resident(model, &mut step, &batch, &train_device, device, settings.schedule, settings.lr)?;
                model = next;
                log(&line(mode, &m));
                result.step = Some(m);
                partial(&result);
            }
            Mode::E2e => {
                let (next, m) = measure::train_e2e(model, &mut step, feed(), settings.schedule, settings.lr)?;
                model = next;
                log(&line(mode, &m));
                result.e2e = Some(m);
                partial(&result);
            }
            Mode::E2eCaptured => {
                let (next, m) = measure::train_e2e_captured(model, feed(), settings.schedule, settings.lr, settings.weight_decay)?;
                model = next;
                log(&line(mode, &m));
                result.e2e_captured = Some(m);
                partial(&result);
            }
            Mode::Loader => {
                let m = measure::loader_only(&dataset, config.clone(), settings.schedule)?;
                log(&line(mode, &m));
                result.loader = Some(m);
                partial(&result);
            }
            Mode::Infer => {
                let m = measure::infer_resident(&model.valid(), &batch, device, settings.schedule)?;
                log(&line(mode, &m));
                result.infer = Some(m);
                partial(&result);
            }
            Mode::InferGraph => {
                let m = measure::infer_graph(&model.valid(), &batch, device, settings.schedule)?;
                log(&line(mode, &m));
                result.infer_graph = Some(m);
                partial(&result);
            }
            Mode::StepGraph => {
                let m = measure::step_graph(&model, &mut step, &batch, &train_device, device, settings.schedule, settings.lr)?;
                log(&line(mode, &m));
                result.step_graph = Some(m);
                partial(&result);
            }
            Mode::StepCaptured => {
                let (next, m) = measure::train_captured(model, &batch, &train_device, device, settings.schedule, settings.lr, settings.weight_decay)?;
                model = next;
                log(&line(mode, &m));
                result.step_captured = Some(m);
                partial(&result);
            }
            Mode::Phases => {
                let (next, m) = measure::train_phases(model, &mut step, &batch, &train_device, device, settings.schedule, settings.lr)?;
                model = next;
                log(&format!(
                    "{}px batch {}: phases  {}  warm-up {:.1} s  loss {:.4}{}",
                    sb.size,
                    sb.batch,
                    m.summary(),
                    m.warmup_seconds,
                    m.mean_loss,
                    cpu_note(&m.threads)
                ));
                result.phases = Some(m);
                partial(&result);
            }
        }
    }
    measure::sync(device)?;
    result.memory = memory::read(device);
    Ok(result)
}
