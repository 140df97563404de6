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
//! replay. A batch of another shape (an epoch's last, smaller batch) runs eagerly, in place.
//! On a backend without graph capture (Flex, the CPU) every step runs eagerly through the same
//! code, which is what the CPU tests check against [`crate::step::train_step`].
//!
//! Not captured (refused by [`CapturedStep::new`]'s callers): the metric-learning head,
//! per-sample losses for hard-example mining, a backbone-freezing schedule (a new graph would be
//! needed when the trainable set changes).

use burn::backend::{Backend, BackendGraph, Dispatch};
use burn::module::ParamGroup;
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::prelude::*;
use burn::tensor::Distribution;
use derma_model::{MobileNetV2, assign, set_stable_buffers};

use crate::fused_adamw::{FusedAdamW, StableCoefficients};
use crate::loss::Loss;

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
}

/// Where the capture stands.
enum Phase {
    /// Eager steps run so far (after `graph_prepare`).
    Warming(usize),
    /// The recorded step, replayed once per later step.
    Captured { graph: BackendGraph<Dispatch>, loss: Tensor<1> },
    /// No graph: the backend has none, or the capture failed (the reason).
    Eager(String),
}

/// A training step (AdamW, weight decay, per-group learning rates as [`crate::step::TrainStep`])
/// captured as a graph after [`WARMUP_STEPS`] eager steps; see the module documentation.
pub struct CapturedStep {
    loss: Loss,
    optim: ModuleOptimizer,
    adamw: FusedAdamW,
    table: StableCoefficients,
    backbone_lr_mult: f64,
    batch: Option<StableBatch>,
    phase: Phase,
    time: usize,
    device: Device,
}

/// Learning-rate groups, the coefficient table's rows: the classifier and the backbone, or one
/// when `backbone_lr_mult` is 1 ([`row_codes`]).
fn groups(backbone_lr_mult: f64) -> usize {
    if backbone_lr_mult == 1.0 { 1 } else { 2 }
}

/// The learning-rate "values" that pick each parameter's row of the coefficient table: the
/// classifier row 0, the backbone row 1 (one row, 0, when `backbone_lr_mult` is 1).
fn row_codes(backbone_lr_mult: f64) -> ModuleLearningRate {
    if backbone_lr_mult == 1.0 {
        return 0.0.into();
    }
    ModuleLrScheduler::new(1.0).with_group(ParamGroup::from_predicate("classifier"), 0.0).step()
}

impl CapturedStep {
    /// AdamW with `weight_decay` (β 0.9/0.999, ε 1e-5, as [`crate::step::adamw`]); the
    /// backbone's learning rate is `backbone_lr_mult` × the classifier's. `loss` must have been
    /// initialised on `train_device` (with autodiff), where the model's parameters live.
    pub fn new(loss: Loss, weight_decay: f64, backbone_lr_mult: f64, train_device: &Device) -> Self {
        let table = StableCoefficients::new(groups(backbone_lr_mult), &train_device.clone().inner());
        let adamw = FusedAdamW::new(weight_decay as f32);
        let optim = adamw.clone().with_stable(table.clone()).init();
        Self { loss, optim, adamw, table, backbone_lr_mult, batch: None, phase: Phase::Warming(0), time: 0, device: train_device.clone() }
    }

    /// Whether later steps replay a recorded graph (`Ok(true)`), are still warming up
    /// (`Ok(false)`), or run eagerly for good (`Err`: why — no graph on this backend, or the
    /// capture failed).
    pub fn captured(&self) -> Result<bool, &str> {
        match &self.phase {
            Phase::Warming(_) => Ok(false),
            Phase::Captured { .. } => Ok(true),
            Phase::Eager(why) => Err(why),
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
        self.table.set(vec![identity; groups(self.backbone_lr_mult)], self.time);
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
        let model = self.optim.step(row_codes(self.backbone_lr_mult), model, zeros.0);
        (model, self.optim.to_record())
    }

    /// One step at learning rate `lr` (backbone: `lr × backbone_lr_mult`) on `images`
    /// (`[batch, c, h, w]`) and `targets` (`[batch]`), as [`crate::step::train_step`]. `model`
    /// must be the model the previous step returned (a captured graph updates that model's
    /// memory). Returns the model and the batch's mean loss (`[1]`, no host sync; a replay's
    /// is a copy of the graph's output, which the next replay overwrites).
    pub fn step(&mut self, model: MobileNetV2, images: Tensor<4>, targets: Tensor<1, Int>, lr: f64) -> (MobileNetV2, Tensor<1>) {
        self.time += 1;
        let mut rows = vec![self.adamw.coefficients(self.time, lr)];
        if self.backbone_lr_mult != 1.0 {
            rows.push(self.adamw.coefficients(self.time, lr * self.backbone_lr_mult));
        }
        self.table.set(rows, self.time);
        let dropout = model.dropout_in_effect(&self.device);
        let shape = images.dims();
        let mask = (dropout > 0.0).then(|| {
            let pooled = [shape[0], model.classifier.weight.dims()[0]]; // [batch, last_channel]
            Tensor::<2>::random(pooled, Distribution::Bernoulli(1.0 - dropout), &self.device.clone().inner())
        });
        let stable_shape = self.batch.as_ref().map(|b| b.images.dims());
        if stable_shape.is_some_and(|s| s != shape) {
            // Another batch shape: eagerly, in place.
            return self.run(model, images, targets.float(), mask);
        }
        let batch = self.batch.get_or_insert_with(|| StableBatch {
            images: Tensor::zeros(shape, &self.device),
            targets: Tensor::zeros([shape[0]], &self.device),
            mask: mask.as_ref().map(|m| Tensor::zeros(m.dims(), &self.device)),
        });
        assign(&mut batch.images, images);
        assign(&mut batch.targets, targets.float());
        if let (Some(stable), Some(fresh)) = (batch.mask.as_mut(), mask) {
            assign(stable, fresh);
        }
        let (images, targets, mask) = (batch.images.clone(), batch.targets.clone(), batch.mask.clone());
        let inner = self.device.clone().inner();
        let warmed = match &self.phase {
            Phase::Captured { .. } => return self.replay(model),
            Phase::Eager(_) => return self.run(model, images, targets, mask),
            Phase::Warming(n) => *n,
        };
        if warmed == 0
            && let Err(e) = Dispatch::graph_prepare(inner.as_dispatch())
        {
            self.phase = Phase::Eager(format!("graph_prepare failed: {e:?}"));
            return self.run(model, images, targets, mask);
        }
        if warmed < WARMUP_STEPS {
            self.phase = Phase::Warming(warmed + 1);
            return self.run(model, images, targets, mask);
        }
        // Everything queued so far (this step's batch, mask and coefficients) runs before the
        // window opens; what the step computes from them is recorded.
        if let Err(e) = Dispatch::graph_start_capture(inner.as_dispatch()) {
            self.phase = Phase::Eager(format!("no graph capture on this backend ({e:?})"));
            return self.run(model, images, targets, mask);
        }
        let (next, loss) = self.run(model.clone(), images.clone(), targets.clone(), mask.clone());
        match Dispatch::graph_stop_capture(inner.as_dispatch()) {
            Ok(graph) => {
                self.phase = Phase::Captured { graph, loss };
                self.replay(next)
            }
            Err(e) => {
                // The recording executed nothing: run this step eagerly from `model`.
                self.phase = Phase::Eager(format!("the capture failed: {e:?}"));
                drop(next);
                self.run(model, images, targets, mask)
            }
        }
    }

    /// One replay of the captured step; `model` is the captured one (its memory updated).
    fn replay(&mut self, model: MobileNetV2) -> (MobileNetV2, Tensor<1>) {
        let Phase::Captured { graph, loss } = &self.phase else { unreachable!("replay without a graph") };
        let inner = self.device.clone().inner();
        // SAFETY: every buffer the graph reads or writes stays alive while `self` holds the
        // graph: the stable batch and the coefficient table (held here), the parameters, moments
        // and running statistics (the model and optimiser, whose tensors are only ever written in
        // place), and the capture's own intermediates (pinned by the graph). Everything runs on
        // this thread's stream; the loss is copied by an operation queued after the replay.
        if let Err(e) = unsafe { Dispatch::graph_replay(inner.as_dispatch(), graph) } {
            panic!("replaying the captured training step failed: {e:?}");
        }
        let copy = loss.clone().mul_scalar(1.0);
        (model, copy)
    }

    /// The step itself, eager or recorded (the graph records it from the targets' cast on):
    /// stable buffers on for the model's batch norms. An eager step's loss is its own new tensor;
    /// a replayed step's is copied ([`Self::replay`]).
    fn run(&mut self, model: MobileNetV2, images: Tensor<4>, targets: Tensor<1>, mask: Option<Tensor<2>>) -> (MobileNetV2, Tensor<1>) {
        let targets = targets.int(); // [batch]
        set_stable_buffers(true);
        let features = model.forward_features(images); // [batch, last_channel, h', w']
        let logits = match mask {
            Some(mask) => model.classify_masked(features, mask),
            None => model.classify(features),
        }; // [batch, k]
        let batch_loss = self.loss.forward(logits, targets); // [1]
        set_stable_buffers(false);
        let reported = batch_loss.clone().detach().without_autodiff();
        let grads = GradientsParams::from_grads(batch_loss.backward(), &model);
        let model = self.optim.step(row_codes(self.backbone_lr_mult), model, grads);
        (model, reported)
    }
}

impl Drop for CapturedStep {
    /// A capture prepared but never recorded (dropped during the warm-up) would keep the
    /// device's stream in capture mode, and the next `graph_prepare` would be refused: close it.
    fn drop(&mut self) {
        if matches!(self.phase, Phase::Warming(n) if n > 0) {
            let _ = Dispatch::graph_stop_capture(self.device.clone().inner().as_dispatch());
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
    use burn::tensor::TensorData;
    use derma_model::MobileNetV2Config;

    use super::*;
    use crate::step::TrainStep;

    /// A copy of `model` sharing no memory with it: `config`'s network with `model`'s parameter
    /// values (its own running statistics, equal to `model`'s at initialisation). On the GPU a
    /// clone would share the memory the captured step writes in place.
    fn twin(model: &MobileNetV2, config: &MobileNetV2Config, device: &Device) -> MobileNetV2 {
        struct Collect(Vec<TensorData>);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push(param.val().into_data());
            }
        }
        struct Fill(std::vec::IntoIter<TensorData>);
        impl ModuleMapper for Fill {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let data = self.0.next().expect("the same architecture");
                param.map(|t| Tensor::from_data(data, &t.device()).require_grad())
            }
        }
        let mut collect = Collect(Vec::new());
        model.visit(&mut collect);
        config.init(device).map(&mut Fill(collect.0.into_iter()))
    }

    /// Four batches of 28-px images and their classes, fixed values (tests share the device's
    /// generator, so no random draw), then a smaller last batch.
    fn batches(device: &Device) -> Vec<(Tensor<4>, Tensor<1, Int>)> {
        let batch = |n: usize, k: usize| {
            let values: Vec<f32> = (0..n * 3 * 28 * 28).map(|i| (((i * 7 + k * 13) % 23) as f32 - 11.0) / 11.0).collect();
            let images = Tensor::<1>::from_floats(values.as_slice(), device).reshape([n, 3, 28, 28]);
            let classes: Vec<i64> = (0..n).map(|i| ((i + k) % 3) as i64).collect();
            (images, Tensor::<1, Int>::from_ints(classes.as_slice(), device))
        };
        vec![batch(4, 0), batch(4, 1), batch(4, 2), batch(4, 3), batch(4, 4), batch(4, 5), batch(3, 6)]
    }

    /// `steps` of `captured` and of [`TrainStep`] (the training loop's eager step) from equal
    /// weights on the same batches: each step's two losses, and both models.
    fn side_by_side(device: &Device, dropout: f64) -> (Vec<(f32, f32)>, MobileNetV2, MobileNetV2, CapturedStep) {
        let config = MobileNetV2Config::new(3).with_width(0.25).with_dropout(dropout);
        let a = config.init(device);
        let b = twin(&a, &config, device);
        let mut captured = CapturedStep::new(crate::LossConfig::ce().init(device), 0.05, 0.5, device);
        let mut eager = TrainStep::new(crate::LossConfig::ce().init(device), 0.05, 0.5);
        let (mut a, mut b) = (a, b);
        let mut losses = Vec::new();
        for (i, (images, targets)) in batches(device).into_iter().enumerate() {
            let lr = 1e-3 * (1.0 + i as f64);
            let (next_a, la) = captured.step(a, images.clone(), targets.clone(), lr);
            let (next_b, lb) = eager.step(b, images, targets, lr);
            (a, b) = (next_a, next_b);
            losses.push((la.into_scalar::<f32>(), lb.into_scalar::<f32>()));
        }
        (losses, a, b, captured)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// On the CPU (no graph capture: every step eager, through the captured step's own code —
    /// stable batch, coefficient table by rows, in-place assignments that become replacements)
    /// seven steps with a backbone multiplier of 0.5 and weight decay equal the training loop's
    /// step to the bit: losses, classifier and a backbone weight, a batch norm's running mean.
    #[test]
    fn without_a_graph_it_is_the_training_step() {
        let device = Device::flex().autodiff();
        let (losses, a, b, captured) = side_by_side(&device, 0.0);
        assert!(captured.captured().is_err(), "Flex has no graph capture");
        assert_eq!(captured.steps(), 7);
        for (i, (la, lb)) in losses.iter().enumerate() {
            assert_eq!(la, lb, "step {i}");
        }
        assert_eq!(values(a.classifier.weight.val()), values(b.classifier.weight.val()));
        assert_eq!(values(a.stem.conv.weight.val()), values(b.stem.conv.weight.val()));
        let running = |m: &MobileNetV2| values(m.stem.bn.running_mean.value_sync());
        assert_eq!(running(&a), running(&b));
        assert!(running(&a).iter().any(|v| *v != 0.0), "the running mean moved");
    }

    /// With dropout the step draws a keep-mask per step: it trains (finite losses that differ
    /// from the mask-free step's), and a mask of ones is the layer without dropout scaled by
    /// 1 / (1 − p), as Burn's `Dropout` scales kept values.
    #[test]
    fn dropout_masks_are_drawn_per_step() {
        let device = Device::flex().autodiff();
        let (losses, ..) = side_by_side(&device, 0.5);
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
    /// after the warm-up and replayed, and it trains as the eager step does — every step's
    /// loss within 1e-4 relative, parameters and running statistics within 1e-4 of the largest
    /// value after seven steps (the same kernels; the replays read parameters, moments, running
    /// statistics and batches written in place). A graph that did not advance the parameters
    /// would repeat the fourth step's loss.
    #[cfg(feature = "wgpu")]
    #[test]
    fn captured_steps_train_as_eager_steps_on_the_gpu() {
        let device = Device::wgpu(Default::default()).autodiff();
        // A step dropped during its warm-up leaves the stream free for the next capture.
        let config = MobileNetV2Config::new(3).with_width(0.25);
        let mut dropped = CapturedStep::new(crate::LossConfig::ce().init(&device), 0.0, 1.0, &device);
        let (images, targets) = batches(&device).swap_remove(0);
        let _ = dropped.step(config.init(&device), images, targets, 1e-3);
        drop(dropped);
        let (losses, a, b, captured) = side_by_side(&device, 0.0);
        assert_eq!(captured.captured(), Ok(true));
        for (i, (la, lb)) in losses.iter().enumerate() {
            assert!((la - lb).abs() <= 1e-4 * lb.abs().max(1.0), "step {i}: captured {la}, eager {lb}");
        }
        let close = |x: Vec<f32>, y: Vec<f32>, what: &str| {
            let scale = y.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let d = x.iter().zip(&y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(d <= 1e-4 * scale, "{what}: differs by {d} (largest value {scale})");
        };
        close(values(a.classifier.weight.val()), values(b.classifier.weight.val()), "classifier");
        close(values(a.stem.conv.weight.val()), values(b.stem.conv.weight.val()), "stem");
        close(values(a.stem.bn.running_var.value_sync()), values(b.stem.bn.running_var.value_sync()), "running variance");
        // A second training in the same process once the first is dropped (derma-cascade's second
        // stage, a sweep's next fold): it records its own graph and trains as eager too.
        drop(captured);
        let (losses, a, b, captured) = side_by_side(&device, 0.0);
        assert_eq!(captured.captured(), Ok(true), "the second capture in one process");
        for (i, (la, lb)) in losses.iter().enumerate() {
            assert!((la - lb).abs() <= 1e-4 * lb.abs().max(1.0), "second training, step {i}: captured {la}, eager {lb}");
        }
        close(values(a.classifier.weight.val()), values(b.classifier.weight.val()), "second training's classifier");
    }
}
