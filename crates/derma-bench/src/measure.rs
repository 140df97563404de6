//! The timed loops. Each runs `warmup` untimed iterations (kernel compilation, autotuning,
//! allocator growth), synchronises the device, times `steps` iterations, and synchronises
//! again before stopping the clock. Nothing is read back inside the timed loop: training
//! losses are summed on the device ([`RunningLoss`]) and read after the clock stops.
//!
//! The training step is [`TrainStep::step_full`], called as the training loop (`train.rs`)
//! calls it: host labels, images and targets uploaded to the autodiff device, no metric head.

use std::time::Instant;

use burn::prelude::*;
use derma_data::{HostBatch, ImageDataset, Loader, LoaderConfig};
use derma_model::MobileNetV2;
use derma_train::step::{AdamWSettings, Phase, RunningLoss, TrainStep};
use derma_train::captured_step::{CapturedStep, WARMUP_STEPS};
use derma_train::LossConfig;
use serde::Serialize;

use crate::options::Upload;
use crate::threads::{self, ThreadCpu};

/// How many iterations to run untimed, then timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Untimed iterations first.
    pub warmup: usize,
    /// Timed iterations.
    pub steps: usize,
}

/// One timed loop's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    /// Timed iterations.
    pub steps: usize,
    /// Images processed in them.
    pub images: usize,
    /// Wall-clock seconds between the two synchronisations.
    pub seconds: f64,
    /// `images / seconds`.
    pub images_per_second: f64,
    /// Milliseconds per iteration.
    pub ms_per_step: f64,
    /// Training modes: mean loss over the timed steps (read after the clock stopped).
    pub mean_loss: Option<f64>,
    /// Wall-clock seconds of the untimed warm-up, its closing synchronisation included: kernel
    /// compilation and autotuning on a GPU, i.e. what a user waits before the first epoch runs
    /// at speed (in `e2e`, not the untimed drain of the loader's queue, whose depth differs
    /// between the two sides).
    pub warmup_seconds: f64,
    /// `infer-graph` and `step-graph` only: whether the backend replayed a recorded graph (`true`) or re-ran the
    /// captured closure because it has no graph support (`false`, e.g. the CPU backend).
    pub hardware_graph: Option<bool>,
    /// CPU milliseconds per timed iteration of each thread of the process (by name, busiest
    /// first; empty off Linux): [`crate::threads`] says which thread does what.
    pub threads: Vec<ThreadCpu>,
}

/// The clock of a timed loop: wall time and every thread's CPU time.
struct Clock {
    started: Instant,
    cpu: threads::Snapshot,
}

impl Clock {
    fn start() -> Self {
        Self { cpu: threads::snapshot(), started: Instant::now() }
    }

    /// Wall seconds since the start, and CPU milliseconds per step by thread.
    fn stop(self, steps: usize) -> (f64, Vec<ThreadCpu>) {
        let seconds = self.started.elapsed().as_secs_f64();
        (seconds, threads::per_step(&self.cpu, &threads::snapshot(), steps))
    }
}

impl Measurement {
    fn new(steps: usize, images: usize, seconds: f64, mean_loss: Option<f64>, warmup_seconds: f64, threads: Vec<ThreadCpu>) -> Self {
        let seconds = seconds.max(f64::MIN_POSITIVE);
        Self {
            steps,
            images,
            seconds,
            images_per_second: images as f64 / seconds,
            ms_per_step: 1e3 * seconds / steps.max(1) as f64,
            mean_loss,
            warmup_seconds,
            hardware_graph: None,
            threads,
        }
    }
}

/// Waits for every operation queued on `device` (fusion queues included).
pub fn sync(device: &Device) -> anyhow::Result<()> {
    device.sync().map_err(|e| anyhow::anyhow!("device synchronisation failed: {e:?}"))
}

/// Puts a host batch on `device`: images `[batch, c, h, w]` and targets `[batch]`.
pub fn upload(mut batch: HostBatch, device: &Device, how: Upload) -> (Tensor<4>, Tensor<1, Int>) {
    let targets = batch.targets(device);
    let images = match how {
        Upload::Copy => batch.images(device),
        Upload::Move => batch.take_images(device),
    };
    (images, targets)
}

/// The batch's labels as the training loop hands them to [`TrainStep::step_full`].
fn host_labels(batch: &HostBatch) -> Vec<usize> {
    batch.labels.iter().map(|&l| l as usize).collect()
}

fn check_loss(mode: &str, loss: f64) -> anyhow::Result<f64> {
    if loss.is_finite() { Ok(loss) } else { anyhow::bail!("{mode}: the training loss is {loss} (diverged)") }
}

/// What [`resident_steps`] measured.
struct ResidentRun {
    warmup_seconds: f64,
    seconds: f64,
    threads: Vec<ThreadCpu>,
    /// The timed steps' losses.
    running: RunningLoss,
}

/// The loop of the resident-batch modes (`step`, `phases`): `one(model, running, timed)` takes
/// one training step and adds its loss to `running`; it runs `schedule.warmup` times untimed,
/// the device is synchronised, then `schedule.steps` times between [`Clock`] and a closing
/// synchronisation.
fn resident_steps(
    model: MobileNetV2,
    train_device: &Device,
    device: &Device,
    schedule: Schedule,
    mut one: impl FnMut(MobileNetV2, &mut RunningLoss, bool) -> anyhow::Result<MobileNetV2>,
) -> anyhow::Result<(MobileNetV2, ResidentRun)> {
    let mut model = model;
    let warm_started = Instant::now();
    let mut warm = RunningLoss::new(device);
    for _ in 0..schedule.warmup {
        model = one(model, &mut warm, false)?;
    }
    sync(train_device)?;
    let warmup_seconds = warm_started.elapsed().as_secs_f64();
    let mut running = RunningLoss::new(device);
    let clock = Clock::start();
    for _ in 0..schedule.steps {
        model = one(model, &mut running, true)?;
    }
    sync(train_device)?;
    let (seconds, threads) = clock.stop(schedule.steps);
    Ok((model, ResidentRun { warmup_seconds, seconds, threads, running }))
}

/// Training steps on one batch uploaded once: the device's training throughput, free of the
/// loader and of host-to-device copies. `train_device` is the autodiff device the model's
/// parameters live on, `device` the same device without autodiff.
pub fn train_resident(
    model: MobileNetV2,
    step: &mut TrainStep,
    batch: &HostBatch,
    train_device: &Device,
    device: &Device,
    schedule: Schedule,
    lr: f64,
) -> anyhow::Result<(MobileNetV2, Measurement)> {
    let b = batch.labels.len();
    let labels = host_labels(batch);
    let images = batch.images(train_device);
    let targets = batch.targets(train_device);
    let (model, run) = resident_steps(model, train_device, device, schedule, |model, running, _| {
        let (next, out) = step.step_full(model, images.clone(), targets.clone(), &labels, lr, 0.0);
        running.add(out.loss, b);
        Ok(next)
    })?;
    let ResidentRun { warmup_seconds, seconds, threads, running } = run;
    let loss = check_loss("step", running.mean())?;
    Ok((model, Measurement::new(schedule.steps, schedule.steps * b, seconds, Some(loss), warmup_seconds, threads)))
}

/// Training on the resident batch with the step captured as a graph
/// ([`derma_train::captured_step::CapturedStep`], its own AdamW state): at least
/// [`WARMUP_STEPS`](derma_train::captured_step::WARMUP_STEPS) + 1 untimed steps (the eager
/// warm-up and the capture), then the timed steps, each a replay that copies the batch into the
/// graph's input, draws a dropout mask and writes the step's AdamW coefficients, as in
/// training. On a backend without graph capture every step runs eagerly (said in the JSON's
/// `hardware_graph`).
pub fn train_captured(
    model: MobileNetV2,
    batch: &HostBatch,
    train_device: &Device,
    device: &Device,
    schedule: Schedule,
    lr: f64,
    weight_decay: f64,
) -> anyhow::Result<(MobileNetV2, Measurement)> {
    let b = batch.labels.len();
    let images = batch.images(train_device);
    let targets = batch.targets(train_device);
    let (mut step, warmup) = captured_step(train_device, weight_decay, schedule);
    let (model, run) = resident_steps(model, train_device, device, warmup, |model, running, _| {
        let (next, loss) = step.step(model, images.clone(), targets.clone(), lr)?;
        running.add(loss, b);
        Ok(next)
    })?;
    let ResidentRun { warmup_seconds, seconds, threads, running } = run;
    let loss = check_loss("step-captured", running.mean())?;
    let mut m = Measurement::new(schedule.steps, schedule.steps * b, seconds, Some(loss), warmup_seconds, threads);
    m.hardware_graph = Some(step.captured() == Ok(true));
    Ok((model, m))
}

/// The captured step of the `-captured` modes (cross-entropy, AdamW with `weight_decay`, one
/// learning-rate group) and `schedule` with at least [`WARMUP_STEPS`] + 1 untimed steps, so that
/// every timed step is a replay.
fn captured_step(train_device: &Device, weight_decay: f64, schedule: Schedule) -> (CapturedStep, Schedule) {
    let step = CapturedStep::new(LossConfig::ce().init(train_device), AdamWSettings::new(weight_decay), 1.0, train_device);
    (step, Schedule { warmup: schedule.warmup.max(WARMUP_STEPS + 1), ..schedule })
}

/// The dataset indices of `batches` full batches, cycling through the dataset.
fn cycling_order(dataset: &ImageDataset, batches: usize, batch_size: usize) -> Vec<usize> {
    let n = dataset.len().max(1);
    (0..batches * batch_size).map(|i| i % n).collect()
}

/// Where the end-to-end modes draw their batches from ([`Loader`]: augmentation and
/// normalisation on worker threads, `config.prefetch` batches ahead) and how they upload them.
pub struct Feed<'a> {
    /// The images the loader draws, cycling.
    pub dataset: &'a ImageDataset,
    /// Batch size, augmentation, worker threads, prefetch.
    pub config: LoaderConfig,
    /// The autodiff device the model trains on.
    pub train_device: &'a Device,
    /// Its inner device (the running loss).
    pub device: &'a Device,
    /// Copy the pixels into the tensor data or move them.
    pub how: Upload,
}

/// Training end to end, as the training loop runs it: loader, upload, step.
pub fn train_e2e(model: MobileNetV2, step: &mut TrainStep, feed: Feed, schedule: Schedule, lr: f64) -> anyhow::Result<(MobileNetV2, Measurement)> {
    e2e_steps("e2e", model, feed, schedule, |model, images, targets, labels| {
        let (next, out) = step.step_full(model, images, targets, labels, lr, 0.0);
        Ok((next, out.loss))
    })
}

/// [`train_e2e`] with the step captured as a graph after its warm-up and replayed
/// ([`CapturedStep`], derma-train's default on a GPU): what the training CLI runs there. At
/// least [`WARMUP_STEPS`] + 1 untimed steps, so the timed ones are replays.
pub fn train_e2e_captured(
    model: MobileNetV2,
    feed: Feed,
    schedule: Schedule,
    lr: f64,
    weight_decay: f64,
) -> anyhow::Result<(MobileNetV2, Measurement)> {
    let (mut step, schedule) = captured_step(feed.train_device, weight_decay, schedule);
    let (model, mut m) = e2e_steps("e2e-captured", model, feed, schedule, |model, images, targets, _| Ok(step.step(model, images, targets, lr)?))?;
    m.hardware_graph = Some(step.captured() == Ok(true));
    Ok((model, m))
}

/// The loader → upload → `step` loop of the end-to-end mode `name`: warm-up, the drained
/// prefetch queue, then the timed steps. `step` takes the model, the uploaded batch and its host
/// labels and returns the next model and the batch's mean loss.
fn e2e_steps(
    name: &str,
    model: MobileNetV2,
    feed: Feed,
    schedule: Schedule,
    mut step: impl FnMut(MobileNetV2, Tensor<4>, Tensor<1, Int>, &[usize]) -> anyhow::Result<(MobileNetV2, Tensor<1>)>,
) -> anyhow::Result<(MobileNetV2, Measurement)> {
    let Feed { dataset, config, train_device, device, how } = feed;
    // The loader fills its queue (`prefetch` batches) during the warm-up's sync: those batches
    // are drained untimed too, so the clock measures the steady state, not a backlog served at
    // step speed (bench_torch.py drains its workers × prefetch_factor the same way).
    let drain = config.prefetch.max(1); // the loader keeps at least one batch ahead
    let order = cycling_order(dataset, schedule.warmup + drain + schedule.steps, config.batch_size);
    let mut loader = Loader::spawn(dataset, order, config);
    let mut model = model;
    let mut run = |model: MobileNetV2, running: &mut RunningLoss, n: usize| -> anyhow::Result<MobileNetV2> {
        let mut model = model;
        for _ in 0..n {
            let batch = loader.next().ok_or_else(|| anyhow::anyhow!("{name}: the loader ended early"))?;
            let labels = host_labels(&batch);
            let (images, targets) = upload(batch, train_device, how);
            let (next, loss) = step(model, images, targets, &labels)?;
            model = next;
            running.add(loss, labels.len());
        }
        Ok(model)
    };
    let warm_started = Instant::now();
    let mut warm = RunningLoss::new(device);
    model = run(model, &mut warm, schedule.warmup)?;
    sync(train_device)?;
    // The warm-up time ends here: draining the queue is untimed work of either side's own
    // depth (bench_torch.py's is workers × prefetch_factor batches), not start-up cost.
    let warmup_seconds = warm_started.elapsed().as_secs_f64();
    model = run(model, &mut warm, drain)?;
    sync(train_device)?;
    let mut running = RunningLoss::new(device);
    let clock = Clock::start();
    model = run(model, &mut running, schedule.steps)?;
    sync(train_device)?;
    let (seconds, threads) = clock.stop(schedule.steps);
    let images = running.seen();
    let loss = check_loss(name, running.mean())?;
    Ok((model, Measurement::new(schedule.steps, images, seconds, Some(loss), warmup_seconds, threads)))
}

/// The loader alone (augmentation, normalisation, batching on the host): the most images per
/// second end-to-end training can reach with it.
pub fn loader_only(dataset: &ImageDataset, config: LoaderConfig, schedule: Schedule) -> anyhow::Result<Measurement> {
    // Its queue (`prefetch` batches) drained untimed, as in `e2e` and bench_torch.py's loader.
    let drain = config.prefetch.max(1); // the loader keeps at least one batch ahead
    let order = cycling_order(dataset, schedule.warmup + drain + schedule.steps, config.batch_size);
    let warm_started = Instant::now();
    let mut loader = Loader::spawn(dataset, order, config);
    for _ in 0..schedule.warmup {
        loader.next().ok_or_else(|| anyhow::anyhow!("loader: ended early"))?;
    }
    let warmup_seconds = warm_started.elapsed().as_secs_f64();
    for _ in 0..drain {
        loader.next().ok_or_else(|| anyhow::anyhow!("loader: ended early"))?;
    }
    let clock = Clock::start();
    let mut images = 0;
    let mut checksum = 0f64;
    for _ in 0..schedule.steps {
        let batch = loader.next().ok_or_else(|| anyhow::anyhow!("loader: ended early"))?;
        images += batch.labels.len();
        checksum += batch.pixels.first().copied().unwrap_or(0.0) as f64;
    }
    let (seconds, threads) = clock.stop(schedule.steps);
    std::hint::black_box(checksum);
    Ok(Measurement::new(schedule.steps, images, seconds, None, warmup_seconds, threads))
}

/// Inference on a resident batch with `model` (call [`burn::module::Module::valid`]
/// first: evaluation mode, no autodiff). The logits are summed on the device so that every
/// forward pass is consumed.
pub fn infer_resident(model: &MobileNetV2, batch: &HostBatch, device: &Device, schedule: Schedule) -> anyhow::Result<Measurement> {
    let b = batch.labels.len();
    let images = batch.images(device);
    let warm_started = Instant::now();
    let mut acc = Tensor::<1>::zeros([1], device);
    for _ in 0..schedule.warmup {
        acc = acc + model.forward(images.clone()).sum();
    }
    sync(device)?;
    let warmup_seconds = warm_started.elapsed().as_secs_f64();
    let clock = Clock::start();
    for _ in 0..schedule.steps {
        acc = acc + model.forward(images.clone()).sum();
    }
    sync(device)?;
    let (seconds, threads) = clock.stop(schedule.steps);
    let total = acc.into_scalar::<f32>();
    if !total.is_finite() {
        anyhow::bail!("infer: the logits are not finite (sum {total})");
    }
    Ok(Measurement::new(schedule.steps, schedule.steps * b, seconds, None, warmup_seconds, threads))
}

/// A scalar read back from a graph mode (`mode`: `infer-graph`, `step-graph`); a failure names
/// what was read and the known cause (CubeCL's profiling cannot be recorded in a graph).
fn read_graph_scalar(t: Tensor<1>, mode: &str, what: &str) -> anyhow::Result<f32> {
    t.try_into_scalar::<f32>().map_err(|e| {
        anyhow::anyhow!(
            "{mode}: reading the {what} failed: {e:?} (a capture cannot include CubeCL profiling: run this mode \
             without a [profiling] section in cubecl.toml)"
        )
    })
}

/// The timed part of a graph mode: `schedule.steps` replays of `graph` between two
/// synchronisations, `b` images each.
fn time_replays<T, F: FnMut() -> T>(
    graph: &mut burn::tensor::Graph<T, F>,
    device: &Device,
    schedule: Schedule,
    b: usize,
    mean_loss: Option<f64>,
    warmup_seconds: f64,
) -> anyhow::Result<Measurement> {
    let clock = Clock::start();
    for _ in 0..schedule.steps {
        // SAFETY: as stated where the caller captured `graph`, which stays alive and on this
        // thread's stream throughout.
        unsafe { graph.replay() };
    }
    sync(device)?;
    let (seconds, threads) = clock.stop(schedule.steps);
    let mut m = Measurement::new(schedule.steps, schedule.steps * b, seconds, mean_loss, warmup_seconds, threads);
    m.hardware_graph = Some(graph.is_hardware());
    Ok(m)
}

/// Inference replayed from a graph captured once ([`burn::tensor::capture`]): the forward of
/// [`infer_resident`] on the same resident batch, recorded after capture's own warm-up runs,
/// then replayed `warmup` times untimed and `steps` times timed. Before timing, the replayed
/// logits' sum must equal a direct forward's within 1e-4 of the sum of their magnitudes: a
/// replay that computed something else is an error, not a fast number.
pub fn infer_graph(model: &MobileNetV2, batch: &HostBatch, device: &Device, schedule: Schedule) -> anyhow::Result<Measurement> {
    let b = batch.labels.len();
    let images = batch.images(device);
    let read = |t: Tensor<1>, what: &str| read_graph_scalar(t, "infer-graph", what);
    let logits = model.forward(images.clone());
    let magnitude = read(logits.clone().abs().sum(), "direct forward's logits")?;
    let direct = read(logits.sum(), "direct forward's logits")?;
    let warm_started = Instant::now();
    let mut graph = burn::tensor::capture(device, || model.forward(images.clone()).sum());
    // SAFETY (all replays below): the graph reads the model's parameters and `images`, both
    // borrowed by the closure the graph owns, so they outlive every replay; it writes only the
    // buffers it allocated while capturing (its intermediates and output, which it keeps);
    // everything runs on this thread's stream, and the output is read after a sync.
    for _ in 0..schedule.warmup {
        unsafe { graph.replay() };
    }
    sync(device)?;
    let replayed = read(unsafe { graph.replay() }.clone(), "replayed forward's logits")?;
    if !replayed.is_finite() || (replayed - direct).abs() > 1e-4 * magnitude.max(1e-6) {
        anyhow::bail!("infer-graph: the replayed forward's logit sum {replayed} differs from a direct forward's {direct}");
    }
    let warmup_seconds = warm_started.elapsed().as_secs_f64();
    time_replays(&mut graph, device, schedule, b, None, warmup_seconds)
}

/// One training step ([`TrainStep::step_full`] on the resident batch, as [`train_resident`])
/// captured once ([`burn::tensor::capture`]) and replayed `warmup` times untimed and `steps`
/// times timed. A replay re-runs the captured step's kernels against the buffers of that step:
/// the same forward, backward and AdamW update of the same starting parameters, so the
/// parameters do **not** advance. This is not training; it bounds what capturing the training
/// step could give (the whole step's kernels without Burn's per-operation host work). Before
/// timing, the first and the last untimed replay must give the same finite loss: the replay is
/// that one fixed computation (dropout mask included). A backend without graph support re-runs
/// the step from the same starting parameters (new dropout masks, the optimiser's state moving
/// on), so there only finiteness is checked. (On wgpu the capturing run only records
/// its dispatches, so the output is read after replays, never after the capture alone.)
pub fn step_graph(
    model: &MobileNetV2,
    step: &mut TrainStep,
    batch: &HostBatch,
    train_device: &Device,
    device: &Device,
    schedule: Schedule,
    lr: f64,
) -> anyhow::Result<Measurement> {
    let b = batch.labels.len();
    let labels = host_labels(batch);
    let images = batch.images(train_device);
    let targets = batch.targets(train_device);
    let read = |t: Tensor<1>, what: &str| read_graph_scalar(t, "step-graph", what);
    let warm_started = Instant::now();
    let mut graph = burn::tensor::capture(device, || {
        let (next, out) = step.step_full(model.clone(), images.clone(), targets.clone(), &labels, lr, 0.0);
        (next, out.loss)
    });
    // SAFETY (all replays below): the closure the graph owns holds the starting model, the batch
    // and the optimiser it read; the buffers the captured step allocated and wrote stay pinned
    // by the graph until it is dropped; one thread, one stream; outputs are read after a sync.
    let first = read(unsafe { graph.replay() }.1.clone(), "first replay's loss")?;
    for _ in 0..schedule.warmup {
        unsafe { graph.replay() };
    }
    sync(device)?;
    let replayed = read(unsafe { graph.replay() }.1.clone(), "last replay's loss")?;
    if !replayed.is_finite() || (graph.is_hardware() && replayed != first) {
        anyhow::bail!(
            "step-graph: replays of one captured step gave losses {first} and {replayed}: the replay is not the fixed \
             computation this bound assumes"
        );
    }
    let warmup_seconds = warm_started.elapsed().as_secs_f64();
    time_replays(&mut graph, device, schedule, b, Some(f64::from(replayed)), warmup_seconds)
}

/// Milliseconds of one phase of a training step, averaged over the timed steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PhaseTime {
    /// From the phase's start until the host had issued it (Burn's autodiff and fusion front
    /// end on the calling thread; the device may still be working).
    pub issued_ms: f64,
    /// From the phase's start until the device had finished it (a synchronisation).
    pub done_ms: f64,
}

/// `phases`: a training step split into forward + loss, backward and the AdamW update, with a
/// device synchronisation after each ([`TrainStep::step_phased`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseMeasurement {
    /// Timed steps.
    pub steps: usize,
    /// Forward pass and loss.
    pub forward: PhaseTime,
    /// Back-propagation.
    pub backward: PhaseTime,
    /// AdamW update.
    pub update: PhaseTime,
    /// Mean loss over the timed steps.
    pub mean_loss: f64,
    /// Wall-clock seconds of the untimed warm-up steps.
    pub warmup_seconds: f64,
    /// CPU milliseconds per timed step of each thread (see [`Measurement::threads`]).
    pub threads: Vec<ThreadCpu>,
}

impl PhaseMeasurement {
    /// Milliseconds of a whole step with the three synchronisations.
    pub fn step_ms(&self) -> f64 {
        self.forward.done_ms + self.backward.done_ms + self.update.done_ms
    }

    /// `forward 1.00 ms (issued 0.50), backward …, update …; 3.00 ms/step synchronised`, for
    /// the log and the table.
    pub fn summary(&self) -> String {
        format!(
            "forward {:.2} ms (issued {:.2}), backward {:.2} (issued {:.2}), update {:.2} (issued {:.2}); {:.2} ms/step synchronised",
            self.forward.done_ms,
            self.forward.issued_ms,
            self.backward.done_ms,
            self.backward.issued_ms,
            self.update.done_ms,
            self.update.issued_ms,
            self.step_ms()
        )
    }
}

/// Training steps on the resident batch (as [`train_resident`]), each phase synchronised and
/// timed: where a step's time goes. The synchronisations stop the phases from overlapping, so
/// the sum exceeds `step`'s ms/step by whatever overlap the eager step had.
pub fn train_phases(
    model: MobileNetV2,
    step: &mut TrainStep,
    batch: &HostBatch,
    train_device: &Device,
    device: &Device,
    schedule: Schedule,
    lr: f64,
) -> anyhow::Result<(MobileNetV2, PhaseMeasurement)> {
    let b = batch.labels.len();
    let images = batch.images(train_device);
    let targets = batch.targets(train_device);
    // [issued, done] seconds of the timed steps summed per phase, in Phase order.
    let mut sums = [[0.0f64; 2]; 3];
    let mut failed = None;
    let (model, run) = resident_steps(model, train_device, device, schedule, |model, running, timed| {
        let mut start = Instant::now();
        let (next, out) = step.step_phased(model, images.clone(), targets.clone(), lr, |phase| {
            let issued = start.elapsed().as_secs_f64();
            if let Err(e) = sync(train_device) {
                failed.get_or_insert(e);
            }
            let i = match phase {
                Phase::Forward => 0,
                Phase::Backward => 1,
                Phase::Update => 2,
            };
            if timed {
                sums[i][0] += issued;
                sums[i][1] += start.elapsed().as_secs_f64();
            }
            start = Instant::now();
        });
        running.add(out.loss, b);
        Ok(next)
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let ResidentRun { warmup_seconds, threads, running, .. } = run;
    let loss = check_loss("phases", running.mean())?;
    let n = schedule.steps.max(1) as f64;
    let time = |i: usize| PhaseTime { issued_ms: 1e3 * sums[i][0] / n, done_ms: 1e3 * sums[i][1] / n };
    let m = PhaseMeasurement {
        steps: schedule.steps,
        forward: time(0),
        backward: time(1),
        update: time(2),
        mean_loss: loss,
        warmup_seconds,
        threads,
    };
    Ok((model, m))
}
