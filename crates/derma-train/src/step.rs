//! One optimisation step — forward, loss, backward, AdamW update with per-group learning
//! rates — shared by the training loop and the throughput benchmark (`derma-bench`), so both
//! run, and measure, one code path.
//!
//! Nothing here reads a value back to the host: the batch loss is returned as a detached
//! `[1]` tensor on the inference device and summed there by [`RunningLoss`], so the device
//! queue never drains inside an epoch. Read [`RunningLoss::mean`] only when the number is
//! needed (a progress line, the end of the epoch).
//!
//! ```ignore
//! let mut step = TrainStep::new(loss_config.init(&train_device), config.adamw(), config.backbone_lr_mult);
//! let mut running = RunningLoss::new(&device);
//! for mut batch in loader {
//!     let lr = learning_rate(config.lr, global_step, warmup, total_steps);
//!     let (next, loss) = step.step(model, batch.take_images(&train_device), batch.targets(&train_device), lr);
//!     model = next;
//!     running.add(loss, batch.labels.len());
//! }
//! let train_loss = running.mean();
//! ```
//!
//! [`TrainStep::step_full`] is the training loop's step: it also returns the batch's
//! per-sample losses (for hard-example mining, [`crate::mining`]) and, with a metric head
//! ([`TrainStep::with_metric`]), adds `metric_weight × metric loss` ([`crate::metric`]) to the
//! classification loss and updates the head with the classifier's learning rate. Still no
//! host sync: the batch labels it needs for the triplet masks are the host's copy.

use burn::module::ParamGroup;
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use derma_model::MobileNetV2;

use crate::flat_adamw::FlatAdamW;
use crate::fused_adamw::FusedAdamW;
use crate::loss::Loss;
use crate::metric::{MetricHead, TripletInputs};

/// Per-parameter learning rates: the classifier gets `lr`, the backbone `lr * backbone_mult`
/// (one group for everything when `backbone_mult` is 1).
pub fn module_lr(lr: f64, backbone_mult: f64) -> ModuleLearningRate {
    if backbone_mult == 1.0 {
        return lr.into();
    }
    ModuleLrScheduler::new(lr * backbone_mult)
        .with_group(ParamGroup::from_predicate("classifier"), lr)
        .step()
}

/// AdamW's settings (β 0.9 / 0.999): the decoupled weight decay and ε, added to the square
/// root of the bias-corrected second moment (`--weight-decay`, `--adam-epsilon`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    /// Decoupled weight decay (PyTorch's `weight_decay`).
    pub weight_decay: f64,
    /// ε of the update's denominator (PyTorch's `eps`).
    pub epsilon: f64,
}

impl AdamWSettings {
    /// Burn's `AdamWConfig` default ε, and the one every run used before `--adam-epsilon`.
    pub const BURN_EPSILON: f64 = 1e-5;

    /// `weight_decay` with ε [`Self::BURN_EPSILON`].
    pub fn new(weight_decay: f64) -> Self {
        Self { weight_decay, epsilon: Self::BURN_EPSILON }
    }
}

/// The training optimiser: AdamW with decoupled weight decay, each parameter tensor's update
/// one operation ([`FusedAdamW`]: Burn's arithmetic and state).
pub fn adamw(settings: AdamWSettings) -> ModuleOptimizer {
    FusedAdamW::new(settings.weight_decay as f32).with_epsilon(settings.epsilon as f32).init()
}

/// Burn's own AdamW with the same settings: ~15 tensor operations per parameter tensor (the
/// baseline `derma-bench --optimizer adamw-burn` measures). Its records are [`adamw`]'s.
pub fn burn_adamw(settings: AdamWSettings) -> ModuleOptimizer {
    AdamWConfig::new().with_weight_decay(settings.weight_decay as f32).with_epsilon(settings.epsilon as f32).init()
}

/// One step on `model` (whose parameters live on an autodiff device): logits of `images`
/// (`[batch, c, h, w]`), `loss` against `targets` (`[batch]`), backward, and the AdamW update
/// with learning rate `lr` (backbone: `lr * backbone_lr_mult`).
///
/// Returns the updated model and the batch's mean loss as a `[1]` tensor, detached and off
/// autodiff, still on the device (no host sync).
pub fn train_step(
    model: MobileNetV2,
    optim: &mut ModuleOptimizer,
    loss: &Loss,
    images: Tensor<4>,
    targets: Tensor<1, Int>,
    lr: f64,
    backbone_lr_mult: f64,
) -> (MobileNetV2, Tensor<1>) {
    let logits = model.forward(images); // [batch, k]
    let batch_loss = loss.forward(logits, targets); // [1]
    let reported = batch_loss.clone().detach().without_autodiff();
    let grads = GradientsParams::from_grads(batch_loss.backward(), &model);
    let model = optim.step(module_lr(lr, backbone_lr_mult), model, grads);
    (model, reported)
}

/// Back-propagates `total` (the classification loss plus the weighted metric loss) into the
/// network and the metric head, and updates both with `optim`: the network at `model_lr`, the
/// head at `head_lr` (its "learning rate": a row code for the captured step's AdamW). The eager
/// and the captured step's update with a metric head.
pub(crate) fn update_with_head(
    optim: &mut ModuleOptimizer,
    total: Tensor<1>,
    model: MobileNetV2,
    head: MetricHead,
    model_lr: impl Into<ModuleLearningRate>,
    head_lr: f64,
) -> (MobileNetV2, MetricHead) {
    let mut grads = total.backward();
    let model_grads = GradientsParams::from_module(&mut grads, &model);
    let head_grads = GradientsParams::from_module(&mut grads, &head.embedding);
    let model = optim.step(model_lr, model, model_grads);
    let embedding = optim.step(head_lr, head.embedding, head_grads);
    (model, MetricHead { embedding, config: head.config })
}

/// What [`TrainStep::step_full`] returns, detached, off autodiff and on the device.
pub struct StepOutput {
    /// `[1]`: the batch's mean classification loss.
    pub loss: Tensor<1>,
    /// `[batch]`: each sample's classification loss, before class weights.
    pub per_sample: Tensor<1>,
    /// `[1]`: the metric loss (real + synthetic triplets, before `metric_weight`) and the
    /// number of anchors it averages; `None` without a metric head or a valid anchor.
    pub metric: Option<(Tensor<1>, usize)>,
}

/// The parts of a training step, in order ([`TrainStep::step_phased`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Forward pass and loss.
    Forward,
    /// Back-propagation into per-parameter gradients.
    Backward,
    /// The AdamW update of every parameter.
    Update,
}

/// The state a training run carries from step to step: the optimiser (AdamW moments), the
/// loss (its class weights live on the training device), the backbone learning-rate
/// multiplier and the optional training-only metric head.
#[derive(Clone)]
pub struct TrainStep {
    optim: ModuleOptimizer,
    loss: Loss,
    backbone_lr_mult: f64,
    metric: Option<MetricHead>,
    /// The flat AdamW lever ([`TrainStep::with_flat_adamw`]), in place of `optim`.
    flat: Option<FlatAdamW>,
}

impl TrainStep {
    /// AdamW with `settings`; `loss` must have been initialised on the training (autodiff)
    /// device.
    pub fn new(loss: Loss, settings: AdamWSettings, backbone_lr_mult: f64) -> Self {
        Self::with_optimizer(adamw(settings), loss, backbone_lr_mult)
    }

    /// Any [`ModuleOptimizer`] (e.g. one restored from a record).
    pub fn with_optimizer(optim: ModuleOptimizer, loss: Loss, backbone_lr_mult: f64) -> Self {
        Self { optim, loss, backbone_lr_mult, metric: None, flat: None }
    }

    /// Updates with [`FlatAdamW`] (AdamW over all parameters as one vector, the same
    /// arithmetic) instead of Burn's per-parameter AdamW: a throughput lever `derma-bench
    /// --optimizer adamw-flat` measures. Refused with a backbone learning-rate multiplier
    /// other than 1 or a metric head (one learning rate, one module).
    pub fn with_flat_adamw(mut self, settings: AdamWSettings) -> Result<Self, String> {
        if self.backbone_lr_mult != 1.0 || self.metric.is_some() {
            return Err("the flat AdamW takes one learning rate for one module: no --backbone-lr-mult, no metric head".into());
        }
        self.flat = Some(FlatAdamW::new(settings));
        Ok(self)
    }

    /// Adds the metric-learning head (on the training device): [`step_full`](Self::step_full)
    /// then trains it jointly.
    pub fn with_metric(mut self, head: MetricHead) -> Self {
        assert!(self.flat.is_none(), "TrainStep::with_metric: the flat AdamW lever updates one module only");
        self.metric = Some(head);
        self
    }

    /// The metric head, if any (training-only: not part of the saved model).
    pub fn metric(&self) -> Option<&MetricHead> {
        self.metric.as_ref()
    }

    /// Takes the metric head out: later steps train without it (the captured step takes it
    /// over, [`crate::captured_step::CapturedStep::with_metric`]).
    pub fn take_metric(&mut self) -> Option<MetricHead> {
        self.metric.take()
    }

    /// One step with everything the training loop needs: classification loss, per-sample
    /// losses and, with a metric head, `loss + metric_weight × metric_loss` back-propagated
    /// into the network and the head. `labels` are the host copy of `targets`; `progress` is
    /// the training progress in `[0, 1]` (hard-sample generation schedule). No host sync.
    pub fn step_full(
        &mut self,
        model: MobileNetV2,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
        labels: &[usize],
        lr: f64,
        progress: f64,
    ) -> (MobileNetV2, StepOutput) {
        let Some(head) = self.metric.take() else {
            return self.step_phased(model, images, targets, lr, |_| {});
        };
        let (inputs, anchors) = TripletInputs::new(labels, &head.config.synthesis, progress, &images.device());
        let features = model.forward_features(images);
        // A batch without a valid anchor adds 0: the head gets a zero gradient (AdamW still
        // moves it by its moments and weight decay), as in the captured step, whose graph
        // cannot leave the head out.
        let metric = head.loss(features.clone(), &inputs); // [1]
        let logits = model.classify(features);
        let (batch_loss, per_sample) = self.loss.forward_per_sample(logits, targets);
        let total = batch_loss.clone() + metric.clone().mul_scalar(head.config.weight);
        let out = StepOutput {
            loss: batch_loss.detach().without_autodiff(),
            per_sample: per_sample.detach().without_autodiff(),
            metric: (anchors > 0).then(|| (metric.detach().without_autodiff(), anchors)),
        };
        // The head is a new layer on top, like the classifier: it gets `lr`.
        let (model, head) = update_with_head(&mut self.optim, total, model, head, module_lr(lr, self.backbone_lr_mult), lr);
        self.metric = Some(head);
        (model, out)
    }

    /// [`step_full`](Self::step_full) without a metric head, calling `after(phase)` as each
    /// [`Phase`] has been issued (nothing waits for the device here: a caller that times the
    /// phases synchronises in `after`). The training loop's step is this with a no-op `after`.
    ///
    /// # Panics
    /// With a metric head ([`with_metric`](Self::with_metric)): its step is not split.
    pub fn step_phased(
        &mut self,
        model: MobileNetV2,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
        lr: f64,
        mut after: impl FnMut(Phase),
    ) -> (MobileNetV2, StepOutput) {
        assert!(self.metric.is_none(), "step_phased: a metric-head step is not split into phases");
        let logits = model.forward(images); // [batch, k]
        let (batch_loss, per_sample) = self.loss.forward_per_sample(logits, targets);
        let out = StepOutput {
            loss: batch_loss.clone().detach().without_autodiff(),
            per_sample: per_sample.detach().without_autodiff(),
            metric: None,
        };
        after(Phase::Forward);
        let grads = GradientsParams::from_grads(batch_loss.backward(), &model);
        after(Phase::Backward);
        let model = match &mut self.flat {
            Some(flat) => flat.step(lr, model, grads),
            None => self.optim.step(module_lr(lr, self.backbone_lr_mult), model, grads),
        };
        after(Phase::Update);
        (model, out)
    }

    /// One step at learning rate `lr`: see [`train_step`].
    pub fn step(&mut self, model: MobileNetV2, images: Tensor<4>, targets: Tensor<1, Int>, lr: f64) -> (MobileNetV2, Tensor<1>) {
        if self.flat.is_some() {
            let (model, out) = self.step_phased(model, images, targets, lr, |_| {});
            return (model, out.loss);
        }
        train_step(model, &mut self.optim, &self.loss, images, targets, lr, self.backbone_lr_mult)
    }

    /// The optimiser and its state.
    pub fn optimizer(&self) -> &ModuleOptimizer {
        &self.optim
    }

    /// The loss.
    pub fn loss(&self) -> &Loss {
        &self.loss
    }

    /// Backbone learning rate = classifier learning rate × this.
    pub fn backbone_lr_mult(&self) -> f64 {
        self.backbone_lr_mult
    }
}

/// Sum of `batch mean loss × batch weight` kept on the device (the weight: the batch size, or
/// with class weights [`Loss::batch_weight`]), the sum of the weights, and the images seen.
pub struct RunningLoss {
    sum: Tensor<1>,
    weight: f64,
    seen: usize,
}

impl RunningLoss {
    /// Zero, on `device` (the inference device, without autodiff).
    pub fn new(device: &Device) -> Self {
        Self { sum: Tensor::<1>::zeros([1], device), weight: 0.0, seen: 0 }
    }

    /// Adds one batch's mean loss (as returned by [`train_step`]) over `batch_size` images.
    /// No host sync.
    pub fn add(&mut self, batch_mean: Tensor<1>, batch_size: usize) {
        self.add_weighted(batch_mean, batch_size as f64, batch_size);
    }

    /// Adds one batch's mean loss weighted by `weight` (its [`Loss::batch_weight`]: with
    /// class weights, the sum of its images' weights), over `batch_size` images. No host sync.
    pub fn add_weighted(&mut self, batch_mean: Tensor<1>, weight: f64, batch_size: usize) {
        self.sum = self.sum.clone() + batch_mean.mul_scalar(weight);
        self.weight += weight;
        self.seen += batch_size;
    }

    /// Images added so far.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// The weighted mean loss so far (per image without weights; 0 before any batch). Reads
    /// the sum back: waits for every queued step to finish.
    pub fn mean(&self) -> f64 {
        let weight = if self.weight > 0.0 { self.weight } else { 1.0 };
        self.sum.clone().into_scalar::<f32>() as f64 / weight
    }
}

#[cfg(test)]
mod tests {
    use burn::module::ParamId;

    use super::*;

    #[test]
    fn running_loss_is_the_image_weighted_mean() {
        let device = Device::flex();
        let mut running = RunningLoss::new(&device);
        assert_eq!(running.mean(), 0.0);
        running.add(Tensor::<1>::from_floats([1.0], &device), 2);
        running.add(Tensor::<1>::from_floats([4.0], &device), 1);
        assert_eq!(running.seen(), 3);
        assert!((running.mean() - 2.0).abs() < 1e-6, "{}", running.mean());
    }

    #[test]
    fn a_phased_step_reports_its_phases_in_order_and_trains() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let model = derma_model::MobileNetV2Config::new(3).with_width(0.25).init(&device);
        let weights = |m: &MobileNetV2| m.classifier.weight.val().into_data().try_into_vec::<f32>().unwrap();
        let before = weights(&model);
        let mut step = TrainStep::new(crate::LossConfig::ce().init(&device), AdamWSettings::new(0.0), 1.0);
        let images = Tensor::<4>::random([2, 3, 28, 28], burn::tensor::Distribution::Default, &device);
        let targets = Tensor::<1, Int>::from_ints([0, 2], &device);
        let mut seen = Vec::new();
        let (model, out) = step.step_phased(model, images, targets, 1e-2, |p| seen.push(p));
        assert_eq!(seen, [Phase::Forward, Phase::Backward, Phase::Update]);
        assert!(out.loss.into_scalar::<f32>().is_finite());
        // AdamW's first step moves each weight by about lr (1e-2): far above rounding.
        let moved = before.iter().zip(weights(&model)).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(moved > 1e-3, "the classifier moved by at most {moved}");
    }

    #[test]
    fn the_backbone_gets_its_multiple_of_the_learning_rate() {
        let lr = module_lr(1e-3, 0.1);
        let id = ParamId::new();
        assert!((lr.lr_from_param(id, Some("classifier.weight")) - 1e-3).abs() < 1e-15);
        assert!((lr.lr_from_param(id, Some("blocks.3.depthwise.conv.weight")) - 1e-4).abs() < 1e-15);
        assert!((module_lr(1e-3, 1.0).lr_from_param(id, Some("stem.conv.weight")) - 1e-3).abs() < 1e-15);
    }
}
