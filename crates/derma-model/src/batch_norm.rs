//! Training-mode batch normalisation as one differentiable operation, with one or two GPU
//! kernels per direction on the CubeCL (wgpu) backend.
//!
//! Burn 0.22's `batch_norm_train` is burn-backend's default decomposition (neither burn-fusion
//! nor burn-cubecl overrides it): statistics over `swap_dims(0, 1)` + `reshape` views, four
//! reductions in the backward pass, the per-channel arithmetic as separate operations. On wgpu
//! (lavapipe, 28 px, batch 8) that is ~18 kernel launches per batch norm and ~940 of the 1,657
//! launches of a MobileNetV2 training step; on the H100 training-mode batch norm was 43 % of the
//! 64-px step (docs/performance.md, "Second session"). Rewrites in tensor operations kept ~18
//! launches (burn-fusion runs the per-channel operations one kernel each).
//!
//! Here the whole normalisation is one autodiff node. On the CubeCL backend its forward pass is
//! two kernels (per-part means and squared deviations, then the combined statistics, the
//! normalised output and the moved running statistics) and its backward pass two more (per-part
//! Σdy and Σdy·(x − μ), then dx, dγ, dβ), registered with burn-fusion as custom operations
//! through Burn's backend extension (the `cube` module below). The Flex (CPU) backend runs the
//! same arithmetic as tensor operations ([`composed_forward`], [`composed_backward`]), which is
//! also the reference the GPU kernels are tested against. Measured on lavapipe: 1,728 → 1,020
//! launches a training step (docs/performance.md, "Third session").
//!
//! The ReLU6 that follows most batch norms in MobileNetV2 is folded in ([`Activation::Relu6`]):
//! the forward kernel clamps, the backward kernels gate dy on the recomputed pre-clamp value, so
//! Burn's separate clamp and its mask-fill backward (which burn-fusion does not fuse with a
//! custom operation) are gone. The output and dx keep the input's channels-last layout (a
//! convolution's output), so the next convolution and the previous one's backward pass need no
//! layout copy. Both: 1,020 → ~770 launches a step on lavapipe ("Fourth session"). A channel
//! of at most one part (4,096 values: most of MobileNetV2's layers at 28 px) needs only the
//! second kernel of each direction, which then computes its channel's sums itself.
//!
//! Statistics travel as one `[4, channels]` tensor: the batch mean, the biased batch variance,
//! the moved running mean and running variance; the parameter gradients as `[2, channels]`, dγ
//! and dβ (one storage buffer each, wgpu allowing few per kernel).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Scalar, TensorMetadata, backend_extension};
use burn::prelude::*;

/// Training-mode batch norm of a `[batch, channels, h, w]` tensor: forward and backward.
#[allow(clippy::too_many_arguments)]
#[backend_extension(
    Flex,
    Cube: cfg(feature = "wgpu"),
    Fusion: cfg(feature = "wgpu"),
    Autodiff
)]
pub trait BatchNormTrain: Backend {
    /// Normalises `x` (`[batch, channels, h, w]`) with its own batch statistics and applies
    /// `gamma`, `beta` (`[channels]`): `(output [batch, channels, h, w], statistics [4, channels])`,
    /// the statistics' rows the batch mean, the biased batch variance, and the running mean and
    /// variance moved toward the batch's by `momentum` (PyTorch's rule: the running variance
    /// toward the unbiased batch variance, `n / (n − 1)` × the biased one). With `relu6` the
    /// output is clamped to [0, 6] (ReLU6 after the normalisation, in the same pass).
    #[fusion(meta = forward_meta)]
    fn channel_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        running_mean: FloatTensor<Self>,
        running_var: FloatTensor<Self>,
        momentum: f64,
        epsilon: f64,
        relu6: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed_forward::<Self>(x, gamma, beta, running_mean, running_var, momentum, epsilon, relu6)
    }

    /// The gradients of [`Self::channel_norm_forward`] given the output's gradient `grad`:
    /// `(dx [batch, channels, h, w], [dγ; dβ] [2, channels])`; `statistics` is what the forward
    /// pass returned. With `relu6` the gradient passes only where the normalised value (recomputed
    /// from `x`, the statistics, γ and β) lies in [0, 6], as through Burn's `relu6` ([`relu6_gate`]).
    #[fusion(meta = backward_meta)]
    fn channel_norm_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu6: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed_backward::<Self>(x, grad, statistics, gamma, beta, epsilon, relu6)
    }
}

#[cfg(feature = "wgpu")]
use burn::backend::fusion::custom::TensorSpec;

/// Output metadata of the forward pass, for burn-fusion: the output like `x`, statistics
/// `[4, channels]`.
#[cfg(feature = "wgpu")]
#[allow(clippy::too_many_arguments)]
fn forward_meta(
    x: &TensorSpec,
    _gamma: &TensorSpec,
    _beta: &TensorSpec,
    _running_mean: &TensorSpec,
    _running_var: &TensorSpec,
    _momentum: &f64,
    _epsilon: &f64,
    _relu6: &bool,
) -> (TensorSpec, TensorSpec) {
    (x.clone(), TensorSpec::new(Shape::new([4, x.shape[1]]), x.dtype))
}

/// Output metadata of the backward pass: dx like `x`, the parameter gradients `[2, channels]`.
#[cfg(feature = "wgpu")]
fn backward_meta(
    x: &TensorSpec,
    _grad: &TensorSpec,
    _statistics: &TensorSpec,
    _gamma: &TensorSpec,
    _beta: &TensorSpec,
    _epsilon: &f64,
    _relu6: &bool,
) -> (TensorSpec, TensorSpec) {
    (x.clone(), TensorSpec::new(Shape::new([2, x.shape[1]]), x.dtype))
}

/// `[batch, channels, h, w]` of a 4-d tensor.
fn dims4<T: TensorMetadata>(x: &T) -> [usize; 4] {
    let shape = x.shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

/// Per-channel sums of `[batch, channels, h, w]` as `[1, channels, 1, 1]`.
fn channel_sums<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let per_image = B::float_sum_dim(B::float_sum_dim(t, 3), 2); // [batch, channels, 1, 1]
    B::float_sum_dim(per_image, 0)
}

/// Row `row` of a `[rows, channels]` tensor as `[1, channels, 1, 1]`.
fn row<B: Backend>(t: FloatTensor<B>, row: usize) -> FloatTensor<B> {
    let c = t.shape()[1];
    let r = B::float_slice(t, &[burn::tensor::Slice::from(row..row + 1), burn::tensor::Slice::from(0..c)]);
    B::float_reshape(r, Shape::new([1, c, 1, 1]))
}

/// `[1, channels, 1, 1]` (or `[channels]`) tensors stacked as `[rows, channels]`.
fn stack_rows<B: Backend>(rows: Vec<FloatTensor<B>>) -> FloatTensor<B> {
    let c = rows[0].shape().num_elements();
    B::float_cat(rows.into_iter().map(|t| B::float_reshape(t, Shape::new([1, c]))).collect(), 0)
}

/// The unbiased-variance factor `n / (n − 1)` of a channel of `n` values (1 for a single value).
pub fn unbiased_factor(n: usize) -> f64 {
    if n > 1 { n as f64 / (n - 1) as f64 } else { 1.0 }
}

/// The forward pass as tensor operations (the Flex backend's implementation, and the reference
/// of the GPU kernel): mean, biased variance around it, `γ (x − μ) / sqrt(σ² + ε) + β` (clamped
/// to [0, 6] with `relu6`), and the running statistics' update.
#[allow(clippy::too_many_arguments)]
pub fn composed_forward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    running_mean: FloatTensor<B>,
    running_var: FloatTensor<B>,
    momentum: f64,
    epsilon: f64,
    relu6: bool,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let [b, c, h, w] = dims4(&x);
    let count = Scalar::Float((b * h * w) as f64);
    let unbiased = unbiased_factor(b * h * w);
    let per_channel = Shape::new([1, c, 1, 1]);
    let mean = B::float_div_scalar(channel_sums::<B>(x.clone()), count); // [1, c, 1, 1]
    let centered = B::float_sub(x, mean.clone()); // [batch, c, h, w]
    let variance = B::float_div_scalar(channel_sums::<B>(B::float_mul(centered.clone(), centered.clone())), count);
    let inv_std = B::float_recip(B::float_sqrt(B::float_add_scalar(variance.clone(), Scalar::Float(epsilon))));
    let scale = B::float_mul(B::float_reshape(gamma, per_channel.clone()), inv_std);
    let output = B::float_add(B::float_mul(centered, scale), B::float_reshape(beta, per_channel));
    let output = if relu6 { B::float_clamp(output, Scalar::Float(0.0), Scalar::Float(6.0)) } else { output };
    let flat = Shape::new([c]);
    let moved = |running: FloatTensor<B>, batch: FloatTensor<B>, factor: f64| {
        B::float_add(
            B::float_mul_scalar(running, Scalar::Float(1.0 - momentum)),
            B::float_mul_scalar(B::float_reshape(batch, flat.clone()), Scalar::Float(momentum * factor)),
        )
    };
    let new_mean = moved(running_mean, mean.clone(), 1.0);
    let new_var = moved(running_var, variance.clone(), unbiased);
    (output, stack_rows::<B>(vec![mean, variance, new_mean, new_var]))
}

/// The backward pass as tensor operations: with x̂ = (x − μ)/σ and n = batch·h·w,
/// dx = γ/σ · (dy − Σdy/n − x̂ · Σ(dy·x̂)/n), dγ = Σ(dy·x̂), dβ = Σdy (PyTorch's
/// `batch_norm_backward` for the training case). With `relu6`, dy is first zeroed where the
/// forward's normalised value (recomputed with the forward's own operations, so the same bits)
/// is below 0 or above 6 ([`relu6_gate`]).
pub fn composed_backward<B: Backend>(
    x: FloatTensor<B>,
    grad: FloatTensor<B>,
    statistics: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
    relu6: bool,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let [b, c, h, w] = dims4(&x);
    let count = Scalar::Float((b * h * w) as f64);
    let per_channel = Shape::new([1, c, 1, 1]);
    let mean = row::<B>(statistics.clone(), 0);
    let inv_std = B::float_recip(B::float_sqrt(B::float_add_scalar(row::<B>(statistics, 1), Scalar::Float(epsilon))));
    let centered = B::float_sub(x, mean); // [batch, c, h, w]
    let scale = B::float_mul(B::float_reshape(gamma, per_channel.clone()), inv_std.clone()); // γ/σ
    let grad = if relu6 {
        let output = B::float_add(B::float_mul(centered.clone(), scale.clone()), B::float_reshape(beta, per_channel));
        relu6_gate::<B>(grad, output)
    } else {
        grad
    };
    let normalized = B::float_mul(centered, inv_std.clone());
    let sum_grad = channel_sums::<B>(grad.clone()); // Σdy, [1, c, 1, 1]
    let sum_grad_normalized = channel_sums::<B>(B::float_mul(grad.clone(), normalized.clone())); // Σdy·x̂
    let centred_grad = B::float_sub(grad, B::float_div_scalar(sum_grad.clone(), count));
    let projected = B::float_mul(normalized, B::float_div_scalar(sum_grad_normalized.clone(), count));
    let x_grad = B::float_mul(scale, B::float_sub(centred_grad, projected));
    (x_grad, stack_rows::<B>(vec![sum_grad_normalized, sum_grad]))
}

/// `grad` where `output` (the value ReLU6 clamps) lies in [0, 6], zero elsewhere: the gradient
/// of Burn's `relu6` (`clamp_min(clamp_max(x, 6), 0)`, each a `mask_fill` whose backward passes
/// where the value was not replaced), so that folding ReLU6 in changes no number. PyTorch's
/// `hardtanh_backward` is strict, zero at exactly 0 and 6; the two differ on values that are
/// exactly 0, which occur: a channel that is constant over the batch (e.g. all zeros after an
/// earlier ReLU6 and a depthwise convolution) normalises to exactly β, 0 at initialisation.
/// Checked by `a_constant_channel_passes_its_gradient_as_through_burns_relu6`; kept as before the
/// fold (with the strict gate, the 48-px Grad-CAM test's training differed on 2 of 5 seeds compared).
pub fn relu6_gate<B: Backend>(grad: FloatTensor<B>, output: FloatTensor<B>) -> FloatTensor<B> {
    let bool_dtype = burn::backend::get_or_init_device_settings::<B>(&output.device()).bool_dtype;
    let low = B::float_lower_elem(output.clone(), Scalar::Float(0.0), bool_dtype);
    let high = B::float_greater_elem(output, Scalar::Float(6.0), bool_dtype);
    B::float_mask_fill(grad, B::bool_or(low, high), Scalar::Float(0.0))
}

impl BatchNormTrain for burn::backend::Flex {}

/// The whole normalisation (and the ReLU6 after it, when asked) as one autodiff node: `x`, γ
/// and β are checkpointed, the statistics travel with the node, and the backward pass is one
/// call of [`BatchNormTrain::channel_norm_backward`].
impl<B: Backend + BatchNormTrain, C: CheckpointStrategy> BatchNormTrain for Autodiff<B, C> {
    fn channel_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        running_mean: FloatTensor<Self>,
        running_var: FloatTensor<Self>,
        momentum: f64,
        epsilon: f64,
        relu6: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        // The running statistics are not differentiated (constants of the node).
        let (running_mean, running_var) = (running_mean.into_primitive(), running_var.into_primitive());
        #[derive(Debug)]
        struct BatchNormBackward;

        impl<B: Backend + BatchNormTrain> Backward<B, 3> for BatchNormBackward {
            type State = ([burn::backend::autodiff::NodeId; 3], FloatTensor<B>, f64, bool);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let ([x_state, gamma_state, beta_state], statistics, epsilon, relu6) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
                let beta = checkpointer.retrieve_node_output::<FloatTensor<B>>(beta_state);
                let c = gamma.shape()[0];
                let (x_grad, param_grads) = B::channel_norm_backward(x, grad, statistics, gamma, beta, epsilon, relu6);
                let param_row = |r: usize| {
                    let row = B::float_slice(param_grads.clone(), &[burn::tensor::Slice::from(r..r + 1), burn::tensor::Slice::from(0..c)]);
                    B::float_reshape(row, Shape::new([c]))
                };
                if let Some(node) = node_gamma {
                    grads.register::<B>(node.id, param_row(0));
                }
                if let Some(node) = node_beta {
                    grads.register::<B>(node.id, param_row(1));
                }
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, x_grad);
                }
            }
        }

        match BatchNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let states = [prep.checkpoint(&x), prep.checkpoint(&gamma), prep.checkpoint(&beta)];
                let (output, statistics) = B::channel_norm_forward(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    running_mean,
                    running_var,
                    momentum,
                    epsilon,
                    relu6,
                );
                let output = prep.finish((states, statistics.clone(), epsilon, relu6), output);
                (output, <FloatTensor<Self>>::new(statistics))
            }
            OpsKind::UnTracked(prep) => {
                let (output, statistics) = B::channel_norm_forward(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    running_mean,
                    running_var,
                    momentum,
                    epsilon,
                    relu6,
                );
                (prep.finish(output), <FloatTensor<Self>>::new(statistics))
            }
        }
    }

    /// Not differentiable itself (the forward node's backward calls the inner backend's):
    /// computed on the inner tensors, returned as constants.
    fn channel_norm_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        statistics: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu6: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (x_grad, param_grads) = B::channel_norm_backward(
            x.into_primitive(),
            grad.into_primitive(),
            statistics.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            epsilon,
            relu6,
        );
        (<FloatTensor<Self>>::new(x_grad), <FloatTensor<Self>>::new(param_grads))
    }
}

#[cfg(feature = "wgpu")]
// The kernels on CubeCL's backend, in batch_norm/cube.rs.
mod cube;

crate::choice::implementation_choice! {
    /// Which implementation normalises a batch in training mode.
    pub enum BatchNormImpl ("batch-norm implementation") {
        /// [`batch_norm_train`]: one autodiff node, one or two kernels per direction on the GPU,
        /// ReLU6 folded in (the default).
        Fused = "fused",
        /// Burn 0.22's own `burn::tensor::module::batch_norm_train` (then `relu6`), the
        /// decomposition [`Self::Fused`] replaces; kept as a benchmark lever (`derma-bench
        /// --batch-norm burn`), so that one binary measures both on the same device.
        Burn = "burn",
    }
    default Fused;
    static BATCH_NORM_IMPL;
    /// Selects the training-mode batch norm of the models run on the calling thread (a thread,
    /// not the process: tests running side by side each keep their own).
    pub fn set_batch_norm_impl;
    /// The calling thread's training-mode batch norm ([`BatchNormImpl::Fused`] unless set).
    pub fn batch_norm_impl;
}

/// The output of a training-mode batch norm.
pub struct BatchNormOutput {
    /// The normalised, scaled and shifted input after the activation, `[batch, channels, h, w]`.
    pub output: Tensor<4>,
    /// The running mean moved toward the batch mean: `(1 − momentum) · running + momentum · mean`.
    pub running_mean: Tensor<1>,
    /// The running variance moved toward the *unbiased* batch variance (PyTorch's rule):
    /// `(1 − momentum) · running + momentum · n / (n − 1) · variance`, `n = batch · h · w`.
    pub running_var: Tensor<1>,
    /// The batch statistics, taken out only when asked ([`Self::mean`], [`Self::variance`]): the
    /// training forward needs the running ones alone, and each row is two more operations.
    batch: BatchStatistics,
}

/// Where the batch mean and biased variance are.
enum BatchStatistics {
    /// Rows 0 and 1 of the fused operation's `[4, channels]` statistics.
    Rows(Tensor<2>),
    /// Burn's `batch_norm_train` returns them as two tensors.
    Split { mean: Tensor<1>, variance: Tensor<1> },
}

impl BatchNormOutput {
    /// The batch mean per channel, `[channels]`.
    pub fn mean(&self) -> Tensor<1> {
        match &self.batch {
            BatchStatistics::Rows(statistics) => statistics_row(statistics, 0),
            BatchStatistics::Split { mean, .. } => mean.clone(),
        }
    }

    /// The biased batch variance per channel, `[channels]` (what normalises the batch).
    pub fn variance(&self) -> Tensor<1> {
        match &self.batch {
            BatchStatistics::Rows(statistics) => statistics_row(statistics, 1),
            BatchStatistics::Split { variance, .. } => variance.clone(),
        }
    }
}

/// Row `r` of a `[rows, channels]` tensor as `[channels]`.
fn statistics_row(statistics: &Tensor<2>, r: usize) -> Tensor<1> {
    let c = statistics.dims()[1];
    statistics.clone().slice([r..r + 1, 0..c]).reshape([c])
}

/// What follows the normalisation, inside the same operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Nothing (the linear batch norm after MobileNetV2's projection convolution).
    Identity,
    /// ReLU6, `min(max(y, 0), 6)` (torchvision's `Conv2dNormActivation`): folded into the
    /// kernels, where Burn's separate `relu6` (a clamp) costs its own launches forward and
    /// backward, which burn-fusion does not fuse with a custom operation.
    Relu6,
}

impl Activation {
    /// The activation as Burn's own tensor operation (after an unfused normalisation: evaluation
    /// mode, or [`BatchNormImpl::Burn`]).
    pub fn apply<const D: usize>(self, y: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Identity => y,
            Activation::Relu6 => burn::tensor::activation::relu6(y),
        }
    }
}

/// Normalises `x` (`[batch, channels, h, w]`) with its own batch statistics, applies
/// `activation`, and moves the running statistics toward the batch's; the output is
/// differentiable with respect to `x`, `gamma` and `beta` on an autodiff device (the statistics
/// are not). Replaces `burn::tensor::module::batch_norm_train` followed by the activation (same
/// arithmetic, one autodiff node, one or two kernels per direction on the GPU, the running statistics'
/// update inside the forward kernels), which runs instead when the calling thread selected
/// [`BatchNormImpl::Burn`].
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    running_mean: Tensor<1>,
    running_var: Tensor<1>,
    momentum: f64,
    epsilon: f64,
    activation: Activation,
) -> BatchNormOutput {
    let [b, _, h, w] = x.dims();
    if batch_norm_impl() == BatchNormImpl::Burn {
        let o = burn::tensor::module::batch_norm_train(x, gamma, beta, epsilon);
        let unbiased = unbiased_factor(b * h * w);
        let running_mean = running_mean.mul_scalar(1.0 - momentum).add(o.mean.clone().detach().mul_scalar(momentum));
        let running_var = running_var.mul_scalar(1.0 - momentum).add(o.variance.clone().detach().mul_scalar(momentum * unbiased));
        let batch = BatchStatistics::Split { mean: o.mean, variance: o.variance };
        return BatchNormOutput { output: activation.apply(o.output), running_mean, running_var, batch };
    }
    let (output, statistics) = <Dispatch as BatchNormTrain>::channel_norm_forward(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        running_mean.into_dispatch(),
        running_var.into_dispatch(),
        momentum,
        epsilon,
        activation == Activation::Relu6,
    );
    let statistics = Tensor::<2>::from_dispatch(statistics); // [4, c]
    BatchNormOutput {
        output: Tensor::from_dispatch(output),
        running_mean: statistics_row(&statistics, 2),
        running_var: statistics_row(&statistics, 3),
        batch: BatchStatistics::Rows(statistics),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    use crate::testing::{max_abs_diff, random_4d};

    /// `[batch, channels, h, w]` ~ N(0.7, 2), contiguous or channels-last.
    fn input(dims: [usize; 4], channels_last: bool, device: &Device) -> Tensor<4> {
        random_4d(dims, channels_last, Distribution::Normal(0.7, 2.0), device)
    }

    /// Output, mean, variance, the moved running statistics and the gradients with respect to
    /// x, γ, β of `sum(output · w)`, through [`batch_norm_train`] (`ours`) or Burn 0.22's own
    /// `burn::tensor::module::batch_norm_train` (burn-backend's default decomposition,
    /// differentiated by burn-autodiff) followed by Burn's `relu6` for [`Activation::Relu6`],
    /// with the running statistics moved by PyTorch's rule (`torch.nn.BatchNorm2d`, momentum
    /// 0.1: mean toward the batch mean, variance toward the unbiased batch variance).
    #[allow(clippy::type_complexity)]
    fn run(
        ours: bool,
        x: &Tensor<4>,
        gamma: &Tensor<1>,
        beta: &Tensor<1>,
        w: &Tensor<4>,
        activation: Activation,
    ) -> (Tensor<4>, Tensor<1>, Tensor<1>, Tensor<1>, Tensor<1>, Tensor<4>, Tensor<1>, Tensor<1>) {
        let (x, gamma, beta) = (x.clone().detach().require_grad(), gamma.clone().detach().require_grad(), beta.clone().detach().require_grad());
        let c = gamma.dims()[0];
        let device = x.device();
        let running_mean = Tensor::<1, Int>::arange(0..c as i64, &device).float().mul_scalar(0.3);
        let running_var = Tensor::<1>::ones([c], &device).add_scalar(0.5);
        let momentum = 0.1;
        let (output, mean, variance, new_mean, new_var) = if ours {
            let o = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), running_mean, running_var, momentum, 1e-5, activation);
            (o.output.clone(), o.mean(), o.variance(), o.running_mean, o.running_var)
        } else {
            let o = burn::tensor::module::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
            let [b, _, h, w] = x.dims();
            let n = (b * h * w) as f64;
            let unbiased = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
            let new_mean = running_mean.mul_scalar(1.0 - momentum) + o.mean.clone().mul_scalar(momentum);
            let new_var = running_var.mul_scalar(1.0 - momentum) + o.variance.clone().mul_scalar(momentum * unbiased);
            (activation.apply(o.output), o.mean, o.variance, new_mean, new_var)
        };
        let grads = (output.clone() * w.clone()).sum().backward();
        let gx = x.grad(&grads).expect("x grad");
        let gg = gamma.grad(&grads).expect("gamma grad");
        let gb = beta.grad(&grads).expect("beta grad");
        (output.inner(), mean.inner(), variance.inner(), new_mean.inner(), new_var.inner(), gx, gg, gb)
    }

    /// [`run`] through [`batch_norm_train`] and through Burn's own, each quantity's difference as
    /// `measure` gives it.
    fn differences(
        x: &Tensor<4>,
        gamma: &Tensor<1>,
        beta: &Tensor<1>,
        w: &Tensor<4>,
        activation: Activation,
        measure: fn(Tensor<1>, Tensor<1>) -> f32,
        measure4: fn(Tensor<4>, Tensor<4>) -> f32,
    ) -> [(&'static str, f32); 8] {
        let (o1, m1, v1, rm1, rv1, gx1, gg1, gb1) = run(true, x, gamma, beta, w, activation);
        let (o2, m2, v2, rm2, rv2, gx2, gg2, gb2) = run(false, x, gamma, beta, w, activation);
        if activation == Activation::Relu6 {
            // Both of ReLU6's bounds must be reached, or the test says nothing about them.
            let clamped = |v: f32| o2.clone().equal_elem(v).int().sum().into_scalar::<i64>();
            assert!(clamped(0.0) > 0 && clamped(6.0) > 0, "ReLU6 case: {} zeros, {} sixes", clamped(0.0), clamped(6.0));
        }
        [
            ("output", measure4(o1, o2)),
            ("x grad", measure4(gx1, gx2)),
            ("mean", measure(m1, m2)),
            ("variance", measure(v1, v2)),
            ("running mean", measure(rm1, rm2)),
            ("running variance", measure(rv1, rv2)),
            ("gamma grad", measure(gg1, gg2)),
            ("beta grad", measure(gb1, gb2)),
        ]
    }

    /// γ and β for a test: for ReLU6 γ ~ N(4, 1) and β ~ N(1, 1), so that a channel's
    /// normalised values (mostly within ±3) cross both 0 and 6.
    fn affine_parameters(c: usize, activation: Activation, device: &Device) -> (Tensor<1>, Tensor<1>) {
        let (g, b) = match activation {
            Activation::Identity => ((1.0, 0.5), (0.0, 0.5)),
            Activation::Relu6 => ((4.0, 1.0), (1.0, 1.0)),
        };
        (
            Tensor::<1>::random([c], Distribution::Normal(g.0, g.1), device),
            Tensor::<1>::random([c], Distribution::Normal(b.0, b.1), device),
        )
    }

    /// Against Burn 0.22's own `batch_norm_train` (which this operation replaces), followed by
    /// Burn's `relu6` for the folded activation, on the CPU autodiff backend: output, batch
    /// statistics and the three gradients agree within float32 rounding, for contiguous and
    /// channels-last inputs.
    #[test]
    fn matches_burns_batch_norm_train_forward_and_backward() {
        let device = Device::flex().autodiff();
        for activation in [Activation::Identity, Activation::Relu6] {
            for channels_last in [false, true] {
                let x = input([3, 6, 5, 4], channels_last, &device);
                let w = Tensor::<4>::random(x.dims(), Distribution::Normal(0.0, 1.0), &device);
                let (gamma, beta) = affine_parameters(6, activation, &device);
                for (name, d) in differences(&x, &gamma, &beta, &w, activation, max_abs_diff, max_abs_diff) {
                    assert!(d < 2e-5, "{activation:?} channels_last {channels_last}: {name} differs by {d}");
                }
            }
        }
    }

    /// `set_batch_norm_impl(Burn)` routes [`batch_norm_train`] to Burn's own function (the
    /// output is bit-for-bit Burn's) on the calling thread only: another thread still runs the
    /// fused one.
    #[test]
    fn the_burn_choice_is_burns_function_on_this_thread_only() {
        let device = Device::flex().autodiff();
        let x = input([2, 3, 4, 5], false, &device);
        let gamma = Tensor::<1>::random([3], Distribution::Normal(1.0, 0.5), &device);
        let beta = Tensor::<1>::random([3], Distribution::Normal(0.0, 0.5), &device);
        set_batch_norm_impl(BatchNormImpl::Burn);
        let (rm, rv) = (Tensor::<1>::zeros([3], &device), Tensor::<1>::ones([3], &device));
        let ours = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), rm, rv, 0.1, 1e-5, Activation::Identity).output.into_data();
        let burns = burn::tensor::module::batch_norm_train(x, gamma, beta, 1e-5).output.into_data();
        assert_eq!(ours, burns);
        assert_eq!(std::thread::spawn(batch_norm_impl).join().unwrap(), BatchNormImpl::Fused);
        set_batch_norm_impl(BatchNormImpl::Fused);
        assert_eq!(batch_norm_impl(), BatchNormImpl::Fused);
    }

    /// The hand-checkable channel x = [1, 2, 3, 4] as [2, 1, 1, 2] (mean 2.5, biased variance
    /// 1.25) through [`batch_norm_train`] with γ, β and `activation` (running statistics from 0
    /// and 1), differentiated for the loss `sum(output · w)`, beside the by-hand values: x̂ =
    /// (x − 2.5)/σ, σ = sqrt(1.25 + 1e-5), and for the gradient m reaching the normalisation
    /// (w, zeroed where ReLU6 clamped) dβ = Σm, dγ = Σm·x̂, dx = γ/σ · (m − mean(m) − x̂ ·
    /// mean(m·x̂)) (PyTorch's `batch_norm_backward` for the training case). Asserts dx, dγ and dβ
    /// within 1e-5 and returns the operation's output and x̂.
    fn one_channel(gamma: f32, beta: f32, activation: Activation, w: [f32; 4], m: [f64; 4]) -> (BatchNormOutput, Vec<f64>) {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::from_floats([[[[1.0, 2.0]]], [[[3.0, 4.0]]]], &device).require_grad();
        let g = Tensor::<1>::from_floats([gamma], &device).require_grad();
        let b = Tensor::<1>::from_floats([beta], &device).require_grad();
        let (rm, rv) = (Tensor::<1>::zeros([1], &device), Tensor::<1>::ones([1], &device));
        let out = batch_norm_train(x.clone(), g.clone(), b.clone(), rm, rv, 0.1, 1e-5, activation);
        let w = Tensor::<4>::from_floats([[[[w[0], w[1]]]], [[[w[2], w[3]]]]], &device);
        let grads = (out.output.clone() * w).sum().backward();
        let sigma = (1.25f64 + 1e-5).sqrt();
        let xhat: Vec<f64> = [1.0, 2.0, 3.0, 4.0].iter().map(|v| (v - 2.5) / sigma).collect();
        let mean_m = m.iter().sum::<f64>() / 4.0;
        let mean_mx = (0..4).map(|i| m[i] * xhat[i]).sum::<f64>() / 4.0;
        let want_dx: Vec<f64> = (0..4).map(|i| gamma as f64 / sigma * (m[i] - mean_m - xhat[i] * mean_mx)).collect();
        let dx: Vec<f32> = x.grad(&grads).unwrap().into_data().try_into_vec::<f32>().unwrap();
        for (got, want) in dx.iter().zip(&want_dx) {
            assert!((*got as f64 - want).abs() < 1e-5, "{dx:?} vs {want_dx:?}");
        }
        let dgamma = g.grad(&grads).unwrap().into_scalar::<f32>() as f64;
        let dbeta = b.grad(&grads).unwrap().into_scalar::<f32>() as f64;
        assert!((dgamma - mean_mx * 4.0).abs() < 1e-5 && (dbeta - mean_m * 4.0).abs() < 1e-5, "dγ {dgamma} dβ {dbeta}");
        (out, xhat)
    }

    /// [`one_channel`] with γ = 2, β = 0.5 and no activation, for the loss
    /// `sum(output · [1, 0, 0, 0])`: dβ = 1, dγ = x̂₀ = −1.3416; output γx̂ + β; running mean
    /// 0.9·0 + 0.1·2.5 = 0.25 and variance 0.9·1 + 0.1·(4/3)·1.25 = 1.0666667 (torch.nn.BatchNorm2d's
    /// update, momentum 0.1); batch mean 2.5, biased variance 1.25.
    #[test]
    fn one_channel_by_hand() {
        let (out, xhat) = one_channel(2.0, 0.5, Activation::Identity, [1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]);
        let running: Vec<f32> = Tensor::cat(vec![out.running_mean.clone(), out.running_var.clone()], 0).into_data().try_into_vec::<f32>().unwrap();
        assert!((running[0] - 0.25).abs() < 1e-6 && (running[1] - 1.066_666_7).abs() < 1e-6, "{running:?}");
        let got: Vec<f32> = out.output.clone().into_data().try_into_vec::<f32>().unwrap();
        for (g, h) in got.iter().zip(&xhat) {
            assert!((*g as f64 - (2.0 * h + 0.5)).abs() < 1e-5, "{got:?}");
        }
        let mean: Vec<f32> = out.mean().into_data().try_into_vec::<f32>().unwrap();
        let var: Vec<f32> = out.variance().into_data().try_into_vec::<f32>().unwrap();
        assert_eq!((mean[0], var[0]), (2.5, 1.25));
    }

    /// A channel constant over the batch (all zeros, as after a ReLU6 that zeroed it and a
    /// depthwise convolution) normalises to exactly β; with β = 0 the ReLU6 input is exactly 0.
    /// The folded ReLU6 passes the gradient there as Burn's `relu6` does (dβ = Σw over the
    /// channel, here 8 · 0.5 = 4; PyTorch's strict `hardtanh_backward` would give 0: see
    /// [`relu6_gate`]), and every gradient equals Burn's batch norm + `relu6` within `tolerance`.
    fn constant_channel_case(device: &Device, tolerance: f32) {
        // [2, 2, 2, 2]: channel 0 all zeros, channel 1 varied.
        let x = Tensor::<4>::from_floats(
            [[[[0.0, 0.0], [0.0, 0.0]], [[1.0, -2.0], [3.0, 0.5]]], [[[0.0, 0.0], [0.0, 0.0]], [[-1.0, 2.5], [0.25, 4.0]]]],
            device,
        );
        let gamma = Tensor::<1>::from_floats([1.0, 1.5], device);
        let beta = Tensor::<1>::from_floats([0.0, 0.2], device);
        let w = Tensor::<4>::full([2, 2, 2, 2], 0.5, device);
        let fused = run(true, &x, &gamma, &beta, &w, Activation::Relu6);
        let reference = run(false, &x, &gamma, &beta, &w, Activation::Relu6);
        let out: Vec<f32> = fused.0.clone().into_data().try_into_vec().unwrap();
        assert_eq!(&out[..4], &[0.0; 4], "the constant channel's output");
        let dbeta: Vec<f32> = fused.7.clone().into_data().try_into_vec().unwrap();
        assert_eq!(dbeta[0], 4.0, "dβ of the constant channel");
        for (name, d) in [
            ("x grad", max_abs_diff(fused.5, reference.5)),
            ("gamma grad", max_abs_diff(fused.6, reference.6)),
            ("beta grad", max_abs_diff(fused.7, reference.7)),
        ] {
            assert!(d <= tolerance, "{name} differs by {d}");
        }
    }

    /// [`constant_channel_case`] on the CPU: bit for bit.
    #[test]
    fn a_constant_channel_passes_its_gradient_as_through_burns_relu6() {
        constant_channel_case(&Device::flex().autodiff(), 0.0);
    }

    /// ReLU6 folded in, by hand: [`one_channel`] with γ = 5, β = 0.5, so γx̂ + β =
    /// [−6.21, −1.74, 2.74, 7.21] and the output [0, 0, 2.74, 6]. For `sum(output)` only the third
    /// value passes its gradient (m = [0, 0, 1, 0]): dβ = 1, dγ = x̂₂ = 0.4472 (what
    /// `F.relu6(F.batch_norm(x, None, None, w, b, training=True)).sum().backward()` gives).
    #[test]
    fn relu6_by_hand() {
        let (out, xhat) = one_channel(5.0, 0.5, Activation::Relu6, [1.0; 4], [0.0, 0.0, 1.0, 0.0]);
        let want: Vec<f64> = xhat.iter().map(|h| (5.0 * h + 0.5).clamp(0.0, 6.0)).collect();
        let got: Vec<f32> = out.output.into_data().try_into_vec::<f32>().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        assert_eq!((got[0], got[1], got[3]), (0.0, 0.0, 6.0));
    }

    /// A channel's parts fit one grid axis (65,535 cubes) however many values it has, and cover
    /// them: the default part length up to 65,535 default parts, longer parts beyond.
    #[cfg(feature = "wgpu")]
    #[test]
    fn parts_fit_a_grid_axis() {
        for default in [1_024, 4_096] {
            for n in [1, 1_000, 1_605_632, 65_535 * default, 65_535 * default + 1, 1 << 33] {
                let part = cube::part_length(n, default);
                let parts = n.div_ceil(part);
                assert!(parts <= 65_535 && parts * part >= n, "{n} values, default {default}: {parts} parts of {part}");
                if n <= 65_535 * default {
                    assert_eq!(part, default, "{n} values");
                }
            }
        }
    }

    /// The GPU kernels (wgpu; any adapter, e.g. Mesa's lavapipe on a CPU) against Burn's own
    /// `batch_norm_train` (+ `relu6`) on the same device: output, statistics and gradients,
    /// contiguous and channels-last, with a channel of `batch·h·w` = 2·13·11 = 286 values (more
    /// than a cube's 256 units, not a multiple of them), one of 1·1·1 (a single value:
    /// variance 0), and one of 4,551 (two parts of unequal length, combined), also around a
    /// mean of 50; ReLU6 folded in on the 286- and 4,551-value channels (not around a mean of
    /// 50, where the two sides' x − μ differ by ~1e-5 and a value that close to 0 or 6 would
    /// pass its gradient on one side only), and the constant channel of [`constant_channel_case`].
    /// Runs with `cargo test -p derma-model --features wgpu` (not in the CPU-only test build).
    #[cfg(feature = "wgpu")]
    #[test]
    fn gpu_kernels_match_burns_batch_norm_train() {
        use Activation::{Identity, Relu6};
        // Relative to the reference's largest magnitude (at least 1): the sums run in a
        // different order.
        use crate::testing::relative_diff as rel;
        let device = Device::wgpu(Default::default()).autodiff();
        // (dims, x channels-last, offset, activation, the output gradient channels-last)
        for (dims, channels_last, offset, activation, grad_channels_last) in [
            ([2, 5, 13, 11], false, 0.0, Identity, false),
            ([2, 5, 13, 11], true, 0.0, Identity, false),
            ([2, 5, 13, 11], true, 0.0, Identity, true),
            ([2, 5, 13, 11], false, 0.0, Relu6, false),
            ([2, 5, 13, 11], true, 0.0, Relu6, true),
            ([1, 3, 1, 1], false, 0.0, Identity, false),
            ([4, 40, 3, 2], true, 0.0, Identity, true), // two groups of channels, the second 8 of 32
            ([3, 4, 41, 37], false, 0.0, Identity, false), // 4,551 values a channel: two parts (4,096 + 455)
            ([3, 4, 41, 37], false, 0.0, Relu6, false),
            // The same shape channels-last, mean ~50 (the variance's precision): one part, a
            // cube of 4 channels × 64 rows covering up to 8,192 positions.
            ([3, 4, 41, 37], true, 50.0, Identity, true),
            // Channels-last, 4,608 values a channel in parts of 1,024 (five, the last 512), 36
            // channels (a second group of 4): with the gradient in either layout.
            ([8, 36, 24, 24], true, 0.0, Identity, true),
            ([8, 36, 24, 24], true, 0.0, Identity, false),
            ([8, 36, 24, 24], true, 0.0, Relu6, true),
            ([8, 36, 24, 24], true, 50.0, Identity, true),
            // Shapes of the 28-px network at batch 16: four parts (the last 64 positions), 24
            // channels in a group of 32, 16 channels in a group of 16.
            ([16, 32, 14, 14], true, 0.0, Relu6, true),
            ([16, 24, 7, 7], true, 0.0, Identity, true),
            ([16, 16, 14, 14], true, 0.0, Identity, true),
        ] {
            let x = input(dims, channels_last, &device) + offset;
            let w = random_4d(dims, grad_channels_last, Distribution::Normal(0.0, 1.0), &device);
            let (gamma, beta) = affine_parameters(dims[1], activation, &device);
            let cases = differences(&x, &gamma, &beta, &w, activation, rel, rel);
            // Around a mean of 50, x − μ keeps ~6 significant digits in float32 on both sides
            // (seen: dγ 2.5e-5 apart), hence the wider bound there.
            let bound = if offset == 0.0 { 2e-5 } else { 1e-4 };
            for (name, d) in cases {
                assert!(
                    d < bound,
                    "{dims:?} channels_last {channels_last} (gradient {grad_channels_last}) offset {offset} {activation:?}: {name} differs by {d} (relative)"
                );
            }
        }
        // The ReLU6 gate at exactly 0 (the kernels' comparison, not only the CPU's).
        constant_channel_case(&device, 1e-5);
    }
}
