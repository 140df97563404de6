//! The training step captured once as a graph and replayed: forward, loss, backward and the
//! AdamW update of [`crate::step::train_step`] without Burn's per-operation host work (tracing,
//! autodiff bookkeeping, fusion, dispatch) at every step.
//!
//! CubeCL's wgpu runtime records a step's kernel launches once ("software graph": pipelines,
//! bindings and uniforms resolved at record time) and re-encodes them on each replay
//! (docs/performance.md: a captured step replayed 4.1x faster than the eager step on lavapipe).
//! A replay runs the recorded kernels against the buffers of the capture, so a step that
//! *trains* keeps everything it carries in those buffers, written in place:
//! - the batch: images, targets (as floats, cast inside the step) and the dropout keep-mask
//!   are stable tensors the next batch is copied into before each replay
//!   ([`derma_model::assign`]); the mask is drawn outside the graph each step (a draw inside it
//!   would replay the same mask);
//! - the parameters and AdamW's moments: [`FusedAdamW::with_stable`] updates them in place,
//!   reading the learning rate and bias corrections from a device table written before each
//!   replay ([`StableCoefficients`]; a parameter's learning-rate group is its row);
//! - the batch norms' running statistics: [`derma_model::set_stable_buffers`].
//!
//! The sequence: the first [`WARMUP_STEPS`] steps run eagerly after `graph_prepare` (allocating
//! every buffer the capture will reuse, and autotuning); the next is recorded (a recording
//! executes nothing) and replayed at once; every later step of the same batch shape is a
//! replay. A batch of another shape (an epoch's last, smaller batch) gets a stable batch and a
//! graph of its own: its first step runs eagerly (tuning its kernels); at its second (once the
//! first shape's capture is sealed: a stream prepares one capture at a time) `graph_prepare`,
//! then `WARMUP_STEPS − 1` warm-up runs of that step as an identity update (a recording may not
//! add memory pages, so the same workload must run just before it; parameters and moments stay
//! unchanged to the bit, the running statistics are put back), then the real step recorded and
//! replayed; later ones replay. The graphs share the parameters, moments, running statistics
//! and coefficient table, all written in place. Past [`MAX_GRAPHS`] shapes, a step runs
//! eagerly. A recording that began and could not be sealed leaves the memory it would have
//! written failed for good: [`CaptureFailed`], not an eager fallback.
//! On a backend without graph capture (Flex, the CPU) every step runs eagerly through the same
//! code, which is what the CPU tests check against [`crate::step::train_step`].
//!
//! A backbone-freezing schedule is captured in two stretches: the frozen epochs' graphs, then,
//! after [`CapturedStep::recapture`] when the backbone is unfrozen, new ones (warm-up and
//! recording again).
//!
//! [`CapturedStep::step_full`] is the training loop's step, as [`TrainStep::step_full`]: it
//! also returns the per-sample losses (hard-example mining, [`crate::mining`]; a replay's are
//! copied out as its loss is) and, with a metric head ([`CapturedStep::with_metric`]), records
//! the triplet loss and the head's update in the same graph. The triplet loss takes every row
//! of the batch as an anchor and masks the invalid ones ([`TripletInputs`]): the masks and the
//! synthesis schedule are stable tensors each batch's values are copied into, like the images.
//! A batch without a valid anchor adds a zero metric loss, so the head gets a zero gradient
//! (AdamW still moves it by its moments and weight decay), as in the eager step.
//!
//! [`TrainStep::step_full`]: crate::step::TrainStep::step_full

use burn::backend::{Backend, BackendGraph, Dispatch};
use burn::module::ParamGroup;
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::prelude::*;
use burn::tensor::Distribution;
use derma_model::{MobileNetV2, assign, set_stable_buffers};

use crate::fused_adamw::{FusedAdamW, StableCoefficients};
use crate::loss::Loss;
use crate::metric::{MetricHead, TripletInputs};
use crate::step::{AdamWSettings, StepOutput};

/// Eager steps before the capture (Burn's `capture` also warms up three times: with fusion, the
/// first run builds and tunes the fused kernels, and only later runs allocate what the
/// steady state uses).
pub const WARMUP_STEPS: usize = 3;

/// The batch a captured step reads, in stable memory on the training device.
struct StableBatch {
    /// `[batch, channels, h, w]`.
    images: Tensor<4>,
    /// `[batch]`, the class indices as floats.
    targets: Tensor<1>,
    /// `[batch, last_channel]`: the dropout keep-mask, when dropout applies.
    mask: Option<Tensor<2>>,
    /// The triplet loss's masks and schedule, with a metric head.
    triplets: Option<TripletInputs>,
}

/// What one step computes, detached, off autodiff and on the device: the graph's outputs, which
/// each replay overwrites.
#[derive(Clone)]
struct Outputs {
    /// `[1]`: the batch's mean classification loss.
    loss: Tensor<1>,
    /// `[batch]`: each sample's classification loss, before class weights.
    per_sample: Tensor<1>,
    /// `[1]`: the metric loss before its weight (0 without a valid anchor), with a metric head.
    metric: Option<Tensor<1>>,
}

impl Outputs {
    /// A copy in new memory (queued after the replay that wrote these).
    fn copy(&self) -> Self {
        let copy = |t: &Tensor<1>| t.clone().mul_scalar(1.0);
        Self { loss: copy(&self.loss), per_sample: copy(&self.per_sample), metric: self.metric.as_ref().map(copy) }
    }
}

/// Where the capture of one batch shape stands.
enum Phase {
    /// Eager steps of this shape run so far (the first shape's: after `graph_prepare`).
    Warming(usize),
    /// The recorded step, replayed once per later step of this shape.
    Captured { graph: BackendGraph<Dispatch>, out: Outputs },
    /// No graph: the backend has none, or `graph_prepare` or the capture failed (the reason).
    Eager(String),
}

/// One batch shape's stable batch and graph. The first shape (the full batch) is captured after
/// [`WARMUP_STEPS`] eager steps in a row; another (an epoch's last, smaller batch, seen once an
/// epoch) at its second step, after identity warm-up runs, its first having tuned its kernels
/// ([`CapturedStep::step`]).
struct Slot {
    /// `[batch, channels, h, w]` of the images this slot takes.
    shape: [usize; 4],
    batch: StableBatch,
    phase: Phase,
    /// The step at which this shape's graph was first replayed.
    replayed_from: Option<usize>,
}

/// Batch shapes given a graph of their own; a further shape runs eagerly (a training run has
/// two: the full batch and the epoch's last).
pub const MAX_GRAPHS: usize = 4;

/// A training step (AdamW, weight decay, per-group learning rates as [`crate::step::TrainStep`])
/// captured as a graph, one per batch shape; see the module documentation.
pub struct CapturedStep {
    loss: Loss,
    optim: ModuleOptimizer,
    adamw: FusedAdamW,
    table: StableCoefficients,
    backbone_lr_mult: f64,
    /// One per batch shape met, the first shape's first.
    slots: Vec<Slot>,
    time: usize,
    /// Steps taken before the backbone first trained (a frozen start; 0 without one).
    backbone_start: usize,
    /// The training-only metric head ([`Self::with_metric`]), updated in place as the model.
    metric: Option<MetricHead>,
    device: Device,
}

/// The coefficient table's rows: the classifier's (row 0) and the backbone's (row 1), which
/// differ in learning rate (`backbone_lr_mult`) and, after a frozen start, in step count.
const ROWS: usize = 2;

/// The learning-rate "values" that pick each parameter's row of the coefficient table: the
/// classifier row 0, the backbone row 1.
fn row_codes() -> ModuleLearningRate {
    ModuleLrScheduler::new(1.0).with_group(ParamGroup::from_predicate("classifier"), 0.0).step()
}

impl CapturedStep {
    /// AdamW with `settings` (as [`crate::step::adamw`]); the backbone's learning rate is
    /// `backbone_lr_mult` × the classifier's. `loss` must have been initialised on
    /// `train_device` (with autodiff), where the model's parameters live.
    pub fn new(loss: Loss, settings: AdamWSettings, backbone_lr_mult: f64, train_device: &Device) -> Self {
        let table = StableCoefficients::new(ROWS, &train_device.clone().inner());
        let adamw = FusedAdamW::new(settings.weight_decay as f32).with_epsilon(settings.epsilon as f32);
        let optim = adamw.clone().with_stable(table.clone()).init();
        Self {
            loss,
            optim,
            adamw,
            table,
            backbone_lr_mult,
            slots: Vec::new(),
            time: 0,
            backbone_start: 0,
            metric: None,
            device: train_device.clone(),
        }
    }

    /// Adds the metric-learning head (on the training device), trained jointly from the first
    /// step with the classifier's learning rate, as [`crate::step::TrainStep::with_metric`].
    /// Before the first step.
    pub fn with_metric(mut self, head: MetricHead) -> Self {
        assert_eq!(self.time, 0, "CapturedStep::with_metric: before the first step");
        self.metric = Some(head);
        self
    }

    /// The metric head, if any (its memory is written in place by the replays).
    pub fn metric(&self) -> Option<&MetricHead> {
        self.metric.as_ref()
    }

    /// The backbone trains from step `steps + 1` on (frozen before: `--freeze-backbone-epochs`
    /// × steps per epoch): its AdamW bias corrections and state step counts count its own
    /// updates, as Burn's per-parameter AdamW states do.
    pub fn set_backbone_start(&mut self, steps: usize) {
        self.backbone_start = steps;
    }

    /// The step count of each row at the current step (≥ 1).
    fn times(&self) -> Vec<usize> {
        vec![self.time.max(1), self.time.saturating_sub(self.backbone_start).max(1)]
    }

    /// The rows of the current step at learning rate `lr`.
    fn step_rows(&self, lr: f64) -> Vec<crate::fused_adamw::UpdateCoefficients> {
        let times = self.times();
        vec![self.adamw.coefficients(times[0], lr), self.adamw.coefficients(times[1], lr * self.backbone_lr_mult)]
    }

    /// Whether later steps of the first batch shape replay a recorded graph (`Ok(true)`), are
    /// still warming up (`Ok(false)`), or run eagerly for good (`Err`: why — no graph on this
    /// backend, or the capture failed).
    pub fn captured(&self) -> Result<bool, &str> {
        match self.slots.first().map(|s| &s.phase) {
            None | Some(Phase::Warming(_)) => Ok(false),
            Some(Phase::Captured { .. }) => Ok(true),
            Some(Phase::Eager(why)) => Err(why),
        }
    }

    /// Each batch shape met, in order: its batch size and the step from which its graph was
    /// replayed (`None`: eager so far, or for good), e.g. `[(256, Some(4)), (114, Some(30))]`
    /// for the full batch and an epoch's last batch of 114 images.
    pub fn graphs(&self) -> Vec<(usize, Option<usize>)> {
        self.slots.iter().map(|s| (s.shape[0], s.replayed_from)).collect()
    }

    /// Forgets every graph: the next steps warm up and record anew, as the first ones did. For
    /// a model whose step changed — a backbone unfrozen after the first epochs
    /// (`--freeze-backbone-epochs`) trains parameters, and runs batch norms, that the recorded
    /// graphs do not.
    pub fn recapture(&mut self) {
        self.close_prepared();
        self.slots.clear();
    }

    /// A capture prepared but never recorded (the first shape still warming up) would keep the
    /// device's stream in capture mode, and the next `graph_prepare` would be refused: close it.
    fn close_prepared(&mut self) {
        if matches!(self.slots.first().map(|s| &s.phase), Some(Phase::Warming(n)) if *n > 0) {
            let _ = Dispatch::graph_stop_capture(self.device.clone().inner().as_dispatch());
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.time
    }

    /// Continues from a checkpoint: AdamW's state `record` (Burn's `AdamW` record, as
    /// [`optimizer_record`](Self::optimizer_record) or the eager step saves it) after `steps`
    /// steps. Before the first step.
    pub fn resume(mut self, record: OptimizerRecord, steps: usize) -> Self {
        self.optim = self.adamw.clone().with_stable(self.table.clone()).init().load_record(record);
        self.time = steps;
        self
    }

    /// Coefficient rows of the identity update (β 1, learning rate 0, bias corrections 1, no
    /// decay): every parameter and moment unchanged to the bit.
    fn identity_rows(&self) -> Vec<crate::fused_adamw::UpdateCoefficients> {
        let epsilon = self.adamw.coefficients(1, 0.0).epsilon;
        let identity = crate::fused_adamw::UpdateCoefficients {
            beta_1: 1.0,
            factor_1: 0.0,
            beta_2: 1.0,
            factor_2: 0.0,
            correction_1: 1.0,
            correction_2: 1.0,
            epsilon,
            keep: 1.0,
            lr: 0.0,
        };
        vec![identity; ROWS]
    }

    /// AdamW's state for a checkpoint, Burn's `AdamW` record (loadable by
    /// [`crate::step::adamw`] as well as [`resume`](Self::resume)). Replays update the moments
    /// in their memory but not the step count the states record, so this first runs one
    /// identity update (β 1, learning rate 0, bias corrections 1: every parameter and moment
    /// unchanged to the bit) of every trainable parameter, eagerly, which rewrites the states
    /// with the current count. `model` is the training model (the one [`step`](Self::step)
    /// returned), returned unchanged.
    pub fn optimizer_record(&mut self, model: MobileNetV2) -> (MobileNetV2, OptimizerRecord) {
        if self.time == 0 {
            return (model, self.optim.to_record());
        }
        self.table.set(self.identity_rows(), self.times());
        struct Zeros(GradientsParams, Device);
        impl ModuleVisitor for Zeros {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if param.val().is_require_grad() {
                    self.0.register(param.id, Tensor::<D>::zeros(param.shape(), &self.1));
                }
            }
        }
        let mut zeros = Zeros(GradientsParams::new(), self.device.clone().inner());
        model.visit(&mut zeros);
        let model = self.optim.step(row_codes(), model, zeros.0);
        if let Some(head) = self.metric.take() {
            let mut zeros = Zeros(GradientsParams::new(), self.device.clone().inner());
            head.embedding.visit(&mut zeros);
            let embedding = self.optim.step(HEAD_ROW, head.embedding, zeros.0);
            self.metric = Some(MetricHead { embedding, config: head.config });
        }
        (model, self.optim.to_record())
    }

    /// One step at learning rate `lr` (backbone: `lr × backbone_lr_mult`) on `images`
    /// (`[batch, c, h, w]`) and `targets` (`[batch]`), as [`crate::step::train_step`]. `model`
    /// must be the model the previous step returned (a captured graph updates that model's
    /// memory). Returns the model and the batch's mean loss (`[1]`, no host sync; a replay's
    /// is a copy of the graph's output, which the next replay overwrites).
    ///
    /// # Errors
    /// [`CaptureFailed`] when a recording that had begun could not be sealed: the training
    /// cannot go on in this process.
    ///
    /// # Panics
    /// With a metric head: its step needs the labels ([`step_full`](Self::step_full)).
    pub fn step(&mut self, model: MobileNetV2, images: Tensor<4>, targets: Tensor<1, Int>, lr: f64) -> Result<(MobileNetV2, Tensor<1>), CaptureFailed> {
        assert!(self.metric.is_none(), "CapturedStep::step: a metric head needs the labels, use step_full");
        self.step_full(model, images, targets, &[], lr, 0.0).map(|(model, out)| (model, out.loss))
    }

    /// [`step`](Self::step) with everything the training loop needs, as
    /// [`crate::step::TrainStep::step_full`]: the per-sample losses and, with a metric head,
    /// `loss + metric_weight × metric_loss` back-propagated into the network and the head.
    /// `labels` are the host copy of `targets` (read only with a metric head, for the triplet
    /// masks); `progress` is the training progress in `[0, 1]` (hard-sample generation). No
    /// host sync. The metric loss is reported only for a batch with a valid anchor.
    ///
    /// # Errors
    /// As [`step`](Self::step).
    pub fn step_full(
        &mut self,
        model: MobileNetV2,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
        labels: &[usize],
        lr: f64,
        progress: f64,
    ) -> Result<(MobileNetV2, StepOutput), CaptureFailed> {
        let shape = images.dims();
        let triplets = self.metric.as_ref().map(|head| {
            assert_eq!(labels.len(), shape[0], "CapturedStep::step_full: one label per image");
            TripletInputs::new(labels, &head.config.synthesis, progress, &self.device)
        });
        let anchors = triplets.as_ref().map_or(0, |(_, v)| *v);
        let (model, out) = self.step_outputs(model, images, targets, triplets.map(|(t, _)| t), lr)?;
        let metric = out.metric.filter(|_| anchors > 0).map(|m| (m, anchors));
        Ok((model, StepOutput { loss: out.loss, per_sample: out.per_sample, metric }))
    }

    /// The step of [`step_full`](Self::step_full): the graph's outputs (or a replay's copies).
    fn step_outputs(
        &mut self,
        model: MobileNetV2,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
        triplets: Option<TripletInputs>,
        lr: f64,
    ) -> Result<(MobileNetV2, Outputs), CaptureFailed> {
        self.time += 1;
        let rows = self.step_rows(lr);
        self.table.set(rows.clone(), self.times());
        let dropout = model.dropout_in_effect(&self.device);
        let shape = images.dims();
        let mask = (dropout > 0.0).then(|| {
            let pooled = [shape[0], model.classifier.weight.dims()[0]]; // [batch, last_channel]
            Tensor::<2>::random(pooled, Distribution::Bernoulli(1.0 - dropout), &self.device.clone().inner())
        });
        let index = match self.slots.iter().position(|s| s.shape == shape) {
            Some(i) => i,
            None if self.slots.len() < MAX_GRAPHS => {
                // A backend without graphs (or whose first capture failed) runs every shape
                // eagerly, for the same reason.
                let phase = match self.slots.first().map(|s| &s.phase) {
                    Some(Phase::Eager(why)) => Phase::Eager(why.clone()),
                    _ => Phase::Warming(0),
                };
                let batch = StableBatch {
                    images: Tensor::zeros(shape, &self.device),
                    targets: Tensor::zeros([shape[0]], &self.device),
                    mask: mask.as_ref().map(|m| Tensor::zeros(m.dims(), &self.device)),
                    triplets: triplets.as_ref().map(|_| TripletInputs::zeros(shape[0], &self.device)),
                };
                self.slots.push(Slot { shape, batch, phase, replayed_from: None });
                self.slots.len() - 1
            }
            // Yet another shape: eagerly, in place.
            None => return Ok(self.run(model, images, targets.float(), mask, triplets)),
        };
        let slot = &mut self.slots[index];
        assign(&mut slot.batch.images, images);
        assign(&mut slot.batch.targets, targets.float());
        if let (Some(stable), Some(fresh)) = (slot.batch.mask.as_mut(), mask) {
            assign(stable, fresh);
        }
        if let (Some(stable), Some(fresh)) = (slot.batch.triplets.as_mut(), triplets) {
            stable.assign(fresh);
        }
        let (images, targets, mask, triplets) =
            (slot.batch.images.clone(), slot.batch.targets.clone(), slot.batch.mask.clone(), slot.batch.triplets.clone());
        let warmed = match &slot.phase {
            Phase::Captured { .. } => return Ok(self.replay(index, model)),
            Phase::Eager(_) => return Ok(self.run(model, images, targets, mask, triplets)),
            Phase::Warming(n) => *n,
        };
        let inner = self.device.clone().inner();
        if index == 0 {
            // The first shape: `graph_prepare`, then WARMUP_STEPS eager steps in a row.
            if warmed == 0
                && let Err(e) = Dispatch::graph_prepare(inner.as_dispatch())
            {
                self.slots[index].phase = Phase::Eager(format!("graph_prepare failed: {e:?}"));
                return Ok(self.run(model, images, targets, mask, triplets));
            }
            if warmed < WARMUP_STEPS {
                self.slots[index].phase = Phase::Warming(warmed + 1);
                return Ok(self.run(model, images, targets, mask, triplets));
            }
        } else {
            // Another shape, met once an epoch: its first step ran eagerly and tuned its
            // kernels; it is prepared and recorded at its next step, unless the first shape's
            // capture is still being prepared (a stream holds one capture at a time).
            if warmed == 0 || matches!(self.slots[0].phase, Phase::Warming(_)) {
                self.slots[index].phase = Phase::Warming(warmed + 1);
                return Ok(self.run(model, images, targets, mask, triplets));
            }
            if let Err(e) = Dispatch::graph_prepare(inner.as_dispatch()) {
                self.slots[index].phase = Phase::Eager(format!("graph_prepare failed: {e:?}"));
                return Ok(self.run(model, images, targets, mask, triplets));
            }
            // A recording may not add memory pages: the pools must already hold room for the
            // step, which the same workload run just before leaves behind (other work between
            // epochs, and `graph_prepare` itself, may have taken or given back what this
            // shape's first step had). So the step runs WARMUP_STEPS − 1 times here as an
            // identity update (parameters and moments unchanged to the bit), its batch norms'
            // running statistics put back afterwards, then the real step is recorded.
            let saved = running_statistics(&model);
            self.table.set(self.identity_rows(), self.times());
            let mut model = model;
            for _ in 1..WARMUP_STEPS {
                model = self.run(model, images.clone(), targets.clone(), mask.clone(), triplets.clone()).0;
            }
            let model = restore_running_statistics(model, saved);
            self.table.set(rows, self.times());
            return self.capture(index, model, images, targets, mask, triplets);
        }
        self.capture(index, model, images, targets, mask, triplets)
    }

    /// Records the step of slot `index` (prepared and warmed up) and replays it once: this
    /// step. Errors when the recording cannot be sealed: its launches never ran, and the memory
    /// they would have written (the parameters, moments and running statistics) reports that
    /// failure on every later read.
    fn capture(
        &mut self,
        index: usize,
        model: MobileNetV2,
        images: Tensor<4>,
        targets: Tensor<1>,
        mask: Option<Tensor<2>>,
        triplets: Option<TripletInputs>,
    ) -> Result<(MobileNetV2, Outputs), CaptureFailed> {
        let inner = self.device.clone().inner();
        // Everything queued so far (this step's batch, mask and coefficients) runs before the
        // window opens; what the step computes from them is recorded.
        if let Err(e) = Dispatch::graph_start_capture(inner.as_dispatch()) {
            // Nothing recorded: close what `graph_prepare` opened, so that no later capture is
            // refused for it, and run this shape eagerly from now on.
            let _ = Dispatch::graph_stop_capture(inner.as_dispatch());
            self.slots[index].phase = Phase::Eager(format!("no graph capture on this backend ({e:?})"));
            return Ok(self.run(model, images, targets, mask, triplets));
        }
        let (next, out) = self.run(model, images, targets, mask, triplets);
        match Dispatch::graph_stop_capture(inner.as_dispatch()) {
            Ok(graph) => {
                self.slots[index].phase = Phase::Captured { graph, out };
                self.slots[index].replayed_from = Some(self.time);
                Ok(self.replay(index, next))
            }
            Err(e) => {
                let why = format!("{e:?}");
                self.slots[index].phase = Phase::Eager(format!("the capture failed: {why}"));
                Err(CaptureFailed { step: self.time, batch: self.slots[index].shape[0], why })
            }
        }
    }

    /// One replay of slot `index`'s captured step; `model` is the captured one (its memory
    /// updated, as the metric head's).
    fn replay(&mut self, index: usize, model: MobileNetV2) -> (MobileNetV2, Outputs) {
        let Phase::Captured { graph, out } = &self.slots[index].phase else { unreachable!("replay without a graph") };
        let inner = self.device.clone().inner();
        // SAFETY: every buffer the graph reads or writes stays alive while `self` holds the
        // graph: the slot's stable batch and the coefficient table (held here), the parameters,
        // moments and running statistics (the model, the metric head and the optimiser, whose
        // tensors are only ever written in place, by every shape's graph and eager step alike),
        // and the capture's own intermediates (pinned by the graph). Everything runs on this
        // thread's stream; the outputs are copied by operations queued after the replay.
        if let Err(e) = unsafe { Dispatch::graph_replay(inner.as_dispatch(), graph) } {
            panic!("replaying the captured training step failed: {e:?}");
        }
        (model, out.copy())
    }

    /// The step itself, eager or recorded (the graph records it from the targets' cast on):
    /// stable buffers on for the model's batch norms. An eager step's outputs are its own new
    /// tensors; a replayed step's are copied ([`Self::replay`]).
    fn run(
        &mut self,
        model: MobileNetV2,
        images: Tensor<4>,
        targets: Tensor<1>,
        mask: Option<Tensor<2>>,
        triplets: Option<TripletInputs>,
    ) -> (MobileNetV2, Outputs) {
        let targets = targets.int(); // [batch]
        set_stable_buffers(true);
        let features = model.forward_features(images); // [batch, last_channel, h', w']
        let metric = match (self.metric.as_ref(), triplets.as_ref()) {
            (Some(head), Some(inputs)) => Some(head.loss(features.clone(), inputs)), // [1]
            _ => None,
        };
        let logits = match mask {
            Some(mask) => model.classify_masked(features, mask),
            None => model.classify(features),
        }; // [batch, k]
        let (batch_loss, per_sample) = self.loss.forward_per_sample(logits, targets); // [1], [batch]
        set_stable_buffers(false);
        let out = Outputs {
            loss: batch_loss.clone().detach().without_autodiff(),
            per_sample: per_sample.detach().without_autodiff(),
            metric: metric.as_ref().map(|m| m.clone().detach().without_autodiff()),
        };
        let Some(head) = self.metric.take() else {
            let grads = GradientsParams::from_grads(batch_loss.backward(), &model);
            return (self.optim.step(row_codes(), model, grads), out);
        };
        let total = batch_loss + metric.expect("a metric head's step has its triplet inputs").mul_scalar(head.config.weight);
        // The head is a new layer on top, like the classifier: the classifier's row.
        let (model, head) = crate::step::update_with_head(&mut self.optim, total, model, head, row_codes(), HEAD_ROW);
        self.metric = Some(head);
        (model, out)
    }
}

/// The metric head's row of the coefficient table (its "learning rate" for the optimiser):
/// the classifier's, row 0.
const HEAD_ROW: f64 = 0.0;

/// A training step's recording that began and could not be sealed (e.g. it needed memory the
/// pools did not hold). Its launches never ran, and CubeCL marks the memory they would have
/// written (the parameters, AdamW's moments, the running statistics) as failed, so that no read
/// returns bytes nothing wrote: the training cannot go on in this process. The last epoch's
/// checkpoint is intact.
#[derive(Debug, Clone)]
pub struct CaptureFailed {
    /// The step being recorded.
    pub step: usize,
    /// Its batch size.
    pub batch: usize,
    /// CubeCL's reason.
    pub why: String,
}

impl std::fmt::Display for CaptureFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recording the training step as a graph failed at step {} (batch of {}): {}; the model's memory on the device is unusable \
             in this process",
            self.step, self.batch, self.why
        )
    }
}

impl std::error::Error for CaptureFailed {}

/// A copy, in new memory, of every float tensor of `model` that is not trained (the batch
/// norms' running means and variances), flattened, in visiting order.
fn running_statistics(model: &MobileNetV2) -> Vec<Tensor<1>> {
    struct Collect(Vec<Tensor<1>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            if !t.is_require_grad() {
                let n = t.shape().num_elements();
                self.0.push(t.reshape([n]).mul_scalar(1.0));
            }
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

/// Writes `saved` ([`running_statistics`] of the same model) back into `model`'s untrained
/// tensors, in place (the memory a captured graph reads).
fn restore_running_statistics(model: MobileNetV2, saved: Vec<Tensor<1>>) -> MobileNetV2 {
    struct Restore(std::vec::IntoIter<Tensor<1>>);
    impl ModuleMapper for Restore {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if param.val().is_require_grad() {
                return param;
            }
            let saved = self.0.next().expect("the same model");
            param.map(|mut t| {
                let shape = t.dims();
                assign(&mut t, saved.reshape(shape));
                t
            })
        }
    }
    model.map(&mut Restore(saved.into_iter()))
}

impl Drop for CapturedStep {
    fn drop(&mut self) {
        self.close_prepared();
    }
}

#[cfg(test)]
mod tests {
    use derma_model::MobileNetV2Config;

    use super::*;
    use crate::step::TrainStep;

    /// Batches of 28-px images and their classes of `sizes` images each, fixed values (tests
    /// share the device's generator, so no random draw).
    fn batches(device: &Device, sizes: &[usize]) -> Vec<(Tensor<4>, Tensor<1, Int>)> {
        let batch = |n: usize, k: usize| {
            let values: Vec<f32> = (0..n * 3 * 28 * 28).map(|i| (((i * 7 + k * 13) % 23) as f32 - 11.0) / 11.0).collect();
            let images = Tensor::<1>::from_floats(values.as_slice(), device).reshape([n, 3, 28, 28]);
            let classes: Vec<i64> = (0..n).map(|i| ((i + k) % 3) as i64).collect();
            (images, Tensor::<1, Int>::from_ints(classes.as_slice(), device))
        };
        sizes.iter().enumerate().map(|(k, &n)| batch(n, k)).collect()
    }

    /// Full batches of 4 and an epoch's last batch of 3, as training meets them: the first
    /// shape's graph is recorded at step 4, the last batch's eagerly at step 5 (tuning) and
    /// recorded at step 8, then both replay.
    const EPOCHS: [usize; 10] = [4, 4, 4, 4, 3, 4, 4, 3, 4, 3];

    /// `steps` of `captured` and of [`TrainStep`] (the training loop's eager step) from equal
    /// weights on the same batches: each step's two losses, and both models.
    fn side_by_side(device: &Device, dropout: f64, sizes: &[usize]) -> (Vec<(f32, f32)>, MobileNetV2, MobileNetV2, CapturedStep) {
        side_by_side_unfreezing(device, dropout, sizes, None)
    }

    /// [`side_by_side`], with the backbone frozen before the first step and unfrozen before
    /// step `unfreeze` (the captured step told to [`CapturedStep::recapture`]), when given.
    fn side_by_side_unfreezing(
        device: &Device,
        dropout: f64,
        sizes: &[usize],
        unfreeze: Option<usize>,
    ) -> (Vec<(f32, f32)>, MobileNetV2, MobileNetV2, CapturedStep) {
        let config = MobileNetV2Config::new(3).with_width(0.25).with_dropout(dropout);
        let a = config.init(device);
        let b = derma_model::detached_copy(a.clone());
        let frozen = unfreeze.is_some();
        let (a, b) = (a.set_backbone_frozen(frozen), b.set_backbone_frozen(frozen));
        let mut captured = CapturedStep::new(crate::LossConfig::ce().init(device), AdamWSettings::new(0.05), 0.5, device);
        captured.set_backbone_start(unfreeze.unwrap_or(0));
        let mut eager = TrainStep::new(crate::LossConfig::ce().init(device), AdamWSettings::new(0.05), 0.5);
        let (mut a, mut b) = (a, b);
        let mut losses = Vec::new();
        for (i, (images, targets)) in batches(device, sizes).into_iter().enumerate() {
            if unfreeze == Some(i) {
                (a, b) = (a.set_backbone_frozen(false), b.set_backbone_frozen(false));
                captured.recapture();
            }
            let lr = 1e-3 * (1.0 + i as f64);
            let (next_a, la) = captured.step(a, images.clone(), targets.clone(), lr).expect("the capture sealed");
            let (next_b, lb) = eager.step(b, images, targets, lr);
            (a, b) = (next_a, next_b);
            losses.push((la.into_scalar::<f32>(), lb.into_scalar::<f32>()));
        }
        (losses, a, b, captured)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// One step's outputs as host values: the loss, the per-sample losses, the metric loss and
    /// its anchor count.
    type Reported = (f32, Vec<f32>, Option<(f32, usize)>);

    fn reported(out: StepOutput) -> Reported {
        (out.loss.into_scalar::<f32>(), values(out.per_sample), out.metric.map(|(m, n)| (m.into_scalar::<f32>(), n)))
    }

    /// [`side_by_side`] through both steps' `step_full`, with a metric head (margin 0.2, 8
    /// dimensions, weight 0.5) on equal weights and the training progress going from 0 to 1:
    /// each step's two outputs, both models and both heads. The batches' classes `(i + k) mod 3`
    /// give a batch of 4 two valid anchors and a batch of 3 none.
    fn side_by_side_with_head(device: &Device, sizes: &[usize]) -> (Vec<(Reported, Reported)>, [MobileNetV2; 2], [MetricHead; 2], CapturedStep) {
        let config = MobileNetV2Config::new(3).with_width(0.25).with_dropout(0.0);
        let a = config.init(device);
        let b = derma_model::detached_copy(a.clone());
        let metric = crate::metric::MetricConfig::new(0.5, 0.2, 8);
        let head = MetricHead::new(metric, config.last_channel(), device);
        let twin_head = MetricHead { embedding: derma_model::detached_copy(head.embedding.clone()), config: metric };
        let mut captured = CapturedStep::new(crate::LossConfig::ce().init(device), AdamWSettings::new(0.05), 0.5, device).with_metric(head);
        let mut eager = TrainStep::new(crate::LossConfig::ce().init(device), AdamWSettings::new(0.05), 0.5).with_metric(twin_head);
        let (mut a, mut b) = (a, b);
        let mut outputs = Vec::new();
        for (i, (images, targets)) in batches(device, sizes).into_iter().enumerate() {
            let labels: Vec<usize> = values(targets.clone().float()).iter().map(|&l| l as usize).collect();
            let (lr, progress) = (1e-3 * (1.0 + i as f64), i as f64 / (sizes.len() - 1) as f64);
            let (next_a, oa) = captured.step_full(a, images.clone(), targets.clone(), &labels, lr, progress).expect("the capture sealed");
            let (next_b, ob) = eager.step_full(b, images, targets, &labels, lr, progress);
            (a, b) = (next_a, next_b);
            outputs.push((reported(oa), reported(ob)));
        }
        let heads = [captured.metric().unwrap().clone(), eager.metric().unwrap().clone()];
        (outputs, [a, b], heads, captured)
    }


    /// Every step's captured loss within 1e-4 (relative above 1) of the eager step's.
    #[cfg(feature = "wgpu")]
    fn agree(losses: &[(f32, f32)], what: &str) {
        for (i, (la, lb)) in losses.iter().enumerate() {
            assert!((la - lb).abs() <= 1e-4 * lb.abs().max(1.0), "{what}step {i}: captured {la}, eager {lb}");
        }
    }

    /// `x` within 1e-4 of `y`'s largest magnitude, value by value.
    #[cfg(feature = "wgpu")]
    fn close(x: Vec<f32>, y: Vec<f32>, what: &str) {
        let scale = y.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let d = x.iter().zip(&y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(d <= 1e-4 * scale, "{what}: differs by {d} (largest value {scale})");
    }

    /// On the CPU (no graph capture: every step eager, through the captured step's own code —
    /// stable batch, coefficient table by rows, in-place assignments that become replacements)
    /// ten steps of two batch shapes with a backbone multiplier of 0.5 and weight decay equal
    /// the training loop's step to the bit: losses, classifier and a backbone weight, a batch
    /// norm's running mean.
    #[test]
    fn without_a_graph_it_is_the_training_step() {
        let device = Device::flex().autodiff();
        let (losses, a, b, captured) = side_by_side(&device, 0.0, &EPOCHS);
        assert!(captured.captured().is_err(), "Flex has no graph capture");
        assert_eq!(captured.graphs(), vec![(4, None), (3, None)], "both shapes eager");
        assert_eq!(captured.steps(), 10);
        for (i, (la, lb)) in losses.iter().enumerate() {
            assert_eq!(la, lb, "step {i}");
        }
        assert_eq!(values(a.classifier.weight.val()), values(b.classifier.weight.val()));
        assert_eq!(values(a.stem.conv.weight.val()), values(b.stem.conv.weight.val()));
        let running = |m: &MobileNetV2| values(m.stem.bn.running_mean.value_sync());
        assert_eq!(running(&a), running(&b));
        assert!(running(&a).iter().any(|v| *v != 0.0), "the running mean moved");
    }

    /// With a metric head and the per-sample losses (`--metric-weight`, `--hard-negative-mining`)
    /// on the CPU: every step eager through the captured step's code — the triplet masks and
    /// schedule copied into stable tensors, the head updated on the classifier's row — equals
    /// the training loop's eager step to the bit: losses, per-sample losses, metric losses (none
    /// for the batches of 3, which have no valid anchor), the classifier, the stem and the head.
    #[test]
    fn with_a_metric_head_it_is_the_training_step() {
        let device = Device::flex().autodiff();
        let (outputs, [a, b], [ha, hb], _) = side_by_side_with_head(&device, &EPOCHS);
        for (i, (oa, ob)) in outputs.iter().enumerate() {
            assert_eq!(oa, ob, "step {i}");
            assert_eq!(oa.1.len(), EPOCHS[i], "step {i}: one loss per image");
            assert_eq!(oa.2.map(|(_, n)| n), (EPOCHS[i] == 4).then_some(2), "step {i}: valid anchors");
        }
        assert_eq!(values(a.classifier.weight.val()), values(b.classifier.weight.val()));
        assert_eq!(values(a.stem.conv.weight.val()), values(b.stem.conv.weight.val()));
        let head = |h: &MetricHead| values(h.embedding.projection.weight.val());
        assert_eq!(head(&ha), head(&hb));
        assert_ne!(head(&ha), values(MetricHead::new(ha.config, 1280, &device).embedding.projection.weight.val()), "a fresh head differs");
    }

    /// A backbone frozen for the first steps, then unfrozen (`--freeze-backbone-epochs`): on
    /// the CPU every step eager through the captured step's code, equal to the training loop's
    /// step to the bit, the stem (frozen for five steps) trainable after the unfreezing.
    #[test]
    fn an_unfrozen_backbone_trains_as_the_training_step() {
        let device = Device::flex().autodiff();
        let (losses, a, b, _) = side_by_side_unfreezing(&device, 0.0, &[4; 10], Some(5));
        for (i, (la, lb)) in losses.iter().enumerate() {
            assert_eq!(la, lb, "step {i}");
        }
        assert_eq!(values(a.classifier.weight.val()), values(b.classifier.weight.val()));
        assert_eq!(values(a.stem.conv.weight.val()), values(b.stem.conv.weight.val()));
        assert!(a.stem.conv.weight.val().is_require_grad(), "unfrozen");
    }

    /// With dropout the step draws a keep-mask per step: it trains (finite losses that differ
    /// from the mask-free step's), and a mask of ones is the layer without dropout scaled by
    /// 1 / (1 − p), as Burn's `Dropout` scales kept values.
    #[test]
    fn dropout_masks_are_drawn_per_step() {
        let device = Device::flex().autodiff();
        let (losses, ..) = side_by_side(&device, 0.5, &EPOCHS);
        assert!(losses.iter().all(|(a, _)| a.is_finite()));
        assert!(losses.iter().any(|(a, b)| a != b), "the masks changed nothing");
        let config = MobileNetV2Config::new(3).with_width(0.25).with_dropout(0.5);
        let model = config.init(&device);
        let features = Tensor::<4>::ones([2, model.classifier.weight.dims()[0], 1, 1], &device);
        let masked = model.classify_masked(features.clone(), Tensor::ones([2, model.classifier.weight.dims()[0]], &device));
        let expected = model.classifier.forward(features.flatten::<2>(1, 3) * 2.0);
        assert_eq!(values(masked), values(expected));
    }

    /// On wgpu (any adapter, e.g. lavapipe; not in the CPU test build): the step is captured
    /// after the warm-up and replayed, the epoch's last, smaller batch in a graph of its own,
    /// and it trains as the eager step does — every step's loss within 1e-4 relative,
    /// parameters and running statistics within 1e-4 of the largest value after ten steps (the
    /// same kernels; the replays read parameters, moments, running statistics and batches
    /// written in place by both graphs). A graph that did not advance the parameters would
    /// repeat its shape's previous loss; one that read a stale batch, its batch's loss.
    #[cfg(feature = "wgpu")]
    #[test]
    fn captured_steps_train_as_eager_steps_on_the_gpu() {
        let device = Device::wgpu(Default::default()).autodiff();
        // A step dropped during its warm-up leaves the stream free for the next capture.
        let config = MobileNetV2Config::new(3).with_width(0.25);
        let mut dropped = CapturedStep::new(crate::LossConfig::ce().init(&device), AdamWSettings::new(0.0), 1.0, &device);
        let (images, targets) = batches(&device, &[4]).swap_remove(0);
        let _ = dropped.step(config.init(&device), images, targets, 1e-3).expect("a warm-up step");
        drop(dropped);
        let (losses, a, b, captured) = side_by_side(&device, 0.0, &EPOCHS);
        assert_eq!(captured.captured(), Ok(true));
        assert_eq!(captured.graphs(), vec![(4, Some(4)), (3, Some(8))], "the steps each shape's graph was recorded at");
        agree(&losses, "");
        close(values(a.classifier.weight.val()), values(b.classifier.weight.val()), "classifier");
        close(values(a.stem.conv.weight.val()), values(b.stem.conv.weight.val()), "stem");
        close(values(a.stem.bn.running_var.value_sync()), values(b.stem.bn.running_var.value_sync()), "running variance");
        // A second training in the same process once the first is dropped (derma-cascade's second
        // stage, a sweep's next fold): it records its own graphs and trains as eager too. Here the
        // small batch first comes during the first shape's warm-up (an epoch of two batches), so
        // it waits for that capture to be sealed and is recorded at its next step.
        drop(captured);
        let (losses, a, b, captured) = side_by_side(&device, 0.0, &[4, 3, 4, 4, 4, 3, 4, 3]);
        assert_eq!(captured.captured(), Ok(true), "the second capture in one process");
        assert_eq!(captured.graphs(), vec![(4, Some(5)), (3, Some(6))]);
        agree(&losses, "second training, ");
        close(values(a.classifier.weight.val()), values(b.classifier.weight.val()), "second training's classifier");
    }

    /// On wgpu with a metric head and per-sample losses: both shapes' graphs record the triplet
    /// loss (its masks and schedule copied in before each replay) and the head's update, and
    /// every step's loss, per-sample losses and metric loss stay within 1e-4 of the eager
    /// step's, as do the classifier and the head after ten steps. A graph that replayed stale
    /// masks or schedule would drift in the metric loss; one that left the head out, in the
    /// head.
    #[cfg(feature = "wgpu")]
    #[test]
    fn a_metric_head_is_captured_on_the_gpu() {
        let device = Device::wgpu(Default::default()).autodiff();
        let (outputs, [a, b], [ha, hb], captured) = side_by_side_with_head(&device, &EPOCHS);
        assert_eq!(captured.graphs(), vec![(4, Some(4)), (3, Some(8))]);
        let losses: Vec<(f32, f32)> = outputs.iter().map(|(oa, ob)| (oa.0, ob.0)).collect();
        agree(&losses, "");
        for (i, (oa, ob)) in outputs.iter().enumerate() {
            close(oa.1.clone(), ob.1.clone(), &format!("step {i}'s per-sample losses"));
            assert_eq!(oa.2.map(|(_, n)| n), ob.2.map(|(_, n)| n), "step {i}: anchors");
            if let (Some((ma, _)), Some((mb, _))) = (oa.2, ob.2) {
                assert!((ma - mb).abs() <= 1e-4 * mb.abs().max(1.0), "step {i}: metric loss captured {ma}, eager {mb}");
            }
        }
        close(values(a.classifier.weight.val()), values(b.classifier.weight.val()), "classifier");
        close(values(ha.embedding.projection.weight.val()), values(hb.embedding.projection.weight.val()), "head");
    }

    /// On wgpu: a backbone frozen for five steps (its graph recorded at step 4 and replayed at
    /// step 5), then unfrozen: the step forgets that graph and records the new one at step 9
    /// (three warm-up steps first), and every loss, the classifier and the stem (trained only
    /// after the unfreezing) stay within 1e-4 of the eager step's. A replay of the frozen graph
    /// after the unfreezing would leave the stem as it was and drift from the eager losses.
    #[cfg(feature = "wgpu")]
    #[test]
    fn an_unfrozen_backbone_is_captured_anew_on_the_gpu() {
        let device = Device::wgpu(Default::default()).autodiff();
        let (losses, a, b, captured) = side_by_side_unfreezing(&device, 0.0, &[4; 10], Some(5));
        assert_eq!(captured.graphs(), vec![(4, Some(9))], "recorded anew after the unfreezing");
        agree(&losses, "");
        close(values(a.classifier.weight.val()), values(b.classifier.weight.val()), "classifier");
        close(values(a.stem.conv.weight.val()), values(b.stem.conv.weight.val()), "stem");
    }
}
