//! AdamW over all parameters at once: the gradients of every parameter tensor are
//! concatenated into one vector, the moments live as two flat vectors, and the update is one
//! chain of element-wise operations on that vector, whose slices become the new parameters.
//!
//! The arithmetic is Burn's `AdamW` (`burn_optim::AdamW`, β 0.9 / 0.999, ε 1e-5, decoupled
//! weight decay, bias corrections in `f32`), element for element; what changes is the number
//! of tensor operations the host issues per step: Burn's update issues ~15 per parameter
//! tensor (~2,400 for MobileNetV2's 158), this one ~15 in all plus a reshape, a slice and a
//! reshape per tensor. Burn 0.22 on wgpu spends its per-step host time per operation
//! (docs/performance.md, "Where a step's host time goes"), so this is a lever to measure
//! (`derma-bench --optimizer adamw-flat`), not yet the training default.
//!
//! Limits: one learning rate for every parameter, and the set of parameters that receive
//! gradients must stay the same from step to step (no freezing schedule); its state is not
//! part of derma-train's checkpoints.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;

/// AdamW's β, as Burn's `AdamWConfig` defaults (and [`crate::step::adamw`]).
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;

/// Flat AdamW with decoupled weight decay (see the module documentation).
#[derive(Clone)]
pub struct FlatAdamW {
    weight_decay: f64,
    epsilon: f32,
    state: Option<FlatState>,
}

#[derive(Clone)]
struct FlatState {
    /// The parameters updated, in visiting order, with their element counts.
    layout: Vec<(ParamId, usize)>,
    /// `[n]` first and second moments.
    moment_1: Tensor<1>,
    moment_2: Tensor<1>,
    /// Steps taken.
    time: i32,
}

/// Collects, in visiting order, each parameter that has a gradient: its id, element count,
/// and the parameter and gradient flattened (off autodiff).
struct Collect<'a> {
    grads: &'a mut GradientsParams,
    layout: Vec<(ParamId, usize)>,
    params: Vec<Tensor<1>>,
    flat_grads: Vec<Tensor<1>>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(grad) = self.grads.remove::<D>(param.id) else { return };
        let n = grad.shape().num_elements();
        self.layout.push((param.id, n));
        self.flat_grads.push(grad.reshape([n]));
        self.params.push(param.val().inner().reshape([n]));
    }
}

/// Replaces each parameter in the layout by its slice of the updated flat vector, with the
/// autodiff state the old one had (as Burn's optimiser does).
struct Scatter {
    updated: Tensor<1>,
    offsets: std::collections::HashMap<ParamId, (usize, usize)>,
}

impl ModuleMapper for Scatter {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(&(offset, n)) = self.offsets.get(&param.id) else { return param };
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.shape();
        let require_grad = tensor.is_require_grad();
        let checkpointing = tensor.gradient_checkpointing_strategy();
        let value = self.updated.clone().slice([offset..offset + n]).reshape(shape); // the parameter's shape
        let mut value = Tensor::from_inner(value);
        if let Some(strategy) = checkpointing {
            value = value.with_gradient_checkpointing_strategy(strategy);
        }
        if require_grad {
            value = value.require_grad();
        }
        Param::from_mapped_value(id, value, mapper)
    }
}

impl FlatAdamW {
    /// AdamW with `settings` (decoupled weight decay, ε).
    pub fn new(settings: crate::step::AdamWSettings) -> Self {
        Self { weight_decay: settings.weight_decay, epsilon: settings.epsilon as f32, state: None }
    }

    /// One update of every parameter of `module` that has a gradient in `grads`, at learning
    /// rate `lr`. No host sync.
    ///
    /// # Panics
    /// If the parameters with gradients differ from the previous step's (see the module
    /// documentation): the flat moments would no longer line up with them.
    pub fn step<M: Module>(&mut self, lr: f64, module: M, mut grads: GradientsParams) -> M {
        let mut collect = Collect { grads: &mut grads, layout: Vec::new(), params: Vec::new(), flat_grads: Vec::new() };
        module.visit(&mut collect);
        let Collect { layout, params, flat_grads, .. } = collect;
        if layout.is_empty() {
            return module;
        }
        let grad = Tensor::cat(flat_grads, 0); // [n]
        let param = Tensor::cat(params, 0); // [n]
        let (factor_1, factor_2) = (1.0 - BETA_1, 1.0 - BETA_2);
        let state = match self.state.take() {
            Some(s) => {
                assert!(
                    s.layout == layout,
                    "FlatAdamW: the parameters with gradients changed between steps ({} then {} tensors)",
                    s.layout.len(),
                    layout.len()
                );
                FlatState {
                    moment_1: s.moment_1.mul_scalar(BETA_1).add(grad.clone().mul_scalar(factor_1)),
                    moment_2: s.moment_2.mul_scalar(BETA_2).add(grad.square().mul_scalar(factor_2)),
                    time: s.time + 1,
                    layout,
                }
            }
            None => FlatState {
                moment_1: grad.clone().mul_scalar(factor_1),
                moment_2: grad.square().mul_scalar(factor_2),
                time: 1,
                layout,
            },
        };
        let m = state.moment_1.clone().div_scalar(1f32 - BETA_1.powi(state.time));
        let v = state.moment_2.clone().div_scalar(1f32 - BETA_2.powi(state.time));
        let delta = m.div(v.sqrt().add_scalar(self.epsilon));
        // Burn's AdamW keeps the weight decay as f32 (`AdamWConfig::weight_decay: f32`).
        let decay_rate = lr * (self.weight_decay as f32) as f64;
        let decayed = if decay_rate == 0.0 { param } else { param.mul_scalar(1.0 - decay_rate) };
        let updated = decayed - delta.mul_scalar(lr);
        let mut offsets = std::collections::HashMap::with_capacity(state.layout.len());
        let mut offset = 0;
        for &(id, n) in &state.layout {
            offsets.insert(id, (offset, n));
            offset += n;
        }
        self.state = Some(state);
        module.map(&mut Scatter { updated, offsets })
    }
}

#[cfg(test)]
mod tests {
    use burn::optim::AdamWConfig;

    use super::*;
    use crate::LossConfig;

    fn all_weights(model: &derma_model::MobileNetV2) -> Vec<f32> {
        struct Gather(Vec<f32>);
        impl ModuleVisitor for Gather {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.extend(param.val().into_data().try_into_vec::<f32>().unwrap());
            }
        }
        let mut g = Gather(Vec::new());
        model.visit(&mut g);
        g.0
    }

    /// Three steps of the flat update and of Burn's `AdamW` (the optimiser derma-train trains
    /// with, `AdamWConfig::new().with_weight_decay(..)`) from the same weights on the same
    /// batches give the same parameters: the same arithmetic, element for element (within
    /// f32 rounding of the fused element-wise chains).
    #[test]
    fn three_steps_equal_burns_adamw() {
        let device = Device::flex().autodiff();
        device.seed(11);
        // No dropout: the two models' forwards would draw different masks.
        let model = derma_model::MobileNetV2Config::new(3).with_width(0.25).with_dropout(0.0).init(&device);
        let loss = LossConfig::ce().init(&device);
        let mut flat = FlatAdamW::new(crate::step::AdamWSettings::new(1e-2));
        let mut burn_optim = AdamWConfig::new().with_weight_decay(1e-2).init();
        let start = all_weights(&model);
        let (mut a, mut b) = (model.clone(), model);
        for step in 0..3 {
            let images = Tensor::<4>::random([4, 3, 28, 28], burn::tensor::Distribution::Default, &device);
            let targets = Tensor::<1, Int>::from_ints([0, 1, 2, step % 3], &device);
            let grads_a = GradientsParams::from_grads(loss.forward(a.forward(images.clone()), targets.clone()).backward(), &a);
            a = flat.step(3e-3, a, grads_a);
            let grads_b = GradientsParams::from_grads(loss.forward(b.forward(images), targets).backward(), &b);
            b = burn_optim.step(3e-3, b, grads_b);
        }
        let (wa, wb) = (all_weights(&a), all_weights(&b));
        assert_eq!(wa.len(), wb.len());
        let worst = wa.iter().zip(&wb).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        // Three AdamW steps move each weight by ~3 × lr = 9e-3; agreement to 1e-5 is 0.1 % of it.
        assert!(worst < 1e-5, "flat vs Burn's AdamW differ by up to {worst}");
        // And the steps did move the weights (a test that the update ran at all).
        let moved = start.iter().zip(&wa).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(moved > 1e-3, "the weights moved by at most {moved}");
    }
}
