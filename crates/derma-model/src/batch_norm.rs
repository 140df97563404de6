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
mod cube {
    //! The kernels on CubeCL's backend (wgpu here), two per direction. A channel's
    //! `batch · h · w` values are cut into parts, so that a channel of a large input is spread
    //! over many cubes (one cube per channel would leave most of a GPU idle on the early layers'
    //! few channels). The first kernel writes per-part partial results, `[channels, parts, 2]`;
    //! the second combines a channel's parts in every cube (a few thousand values at most) and
    //! writes its part of the output. A channel of one part skips the first kernel: the second
    //! sums it itself (`single`). Values are read in the input's own layout, and the output and
    //! dx are written in it when it is channels-last ([`empty_like`]), contiguous otherwise.
    //! How a cube covers the values depends on the layout ([`Tiling`]): contiguous, a cube per
    //! (part of 4,096 values, channel) with 32 to 256 units along the plane; channels-last (what
    //! convolutions return), a cube per (part, group of up to 32 channels), each row of units
    //! reading neighbouring channels of one position. Partial sums are reduced in shared memory.

    use super::BatchNormTrain;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::wgpu::{CubeBackend, CubeTensor};
    use crate::kernel::{elem, empty, empty_like, is_channels_last, supported};
    use burn::tensor::Shape;
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::*;
    use burn_cubecl::cubecl::{CubeCount, CubeDim};

    /// Most units per cube: a power of two within wgpu's default limit of 256 invocations.
    const UNITS: usize = 256;
    /// Values of one channel per cube in the contiguous layout (16 per unit of a full cube).
    const PART: usize = UNITS * 16;
    /// Most channels per cube in the channels-last layout: 32 neighbouring channels of one
    /// position are 128 contiguous bytes, one read per warp.
    const TILE: usize = 32;
    /// Positions per unit in a part, channels-last layout.
    const PER_UNIT: usize = 128;
    /// Most parts per channel: one grid axis holds at most 65,535 cubes on Vulkan. A channel of
    /// more values than this many default parts hold gets longer parts.
    const MAX_PARTS: usize = 65_535;

    /// How the cubes cover a `[batch, channels, h, w]` tensor. A cube has `tile` channels × `rows`
    /// units (unit `u`: channel `u % tile` of the cube's group, row `u / tile`) and covers `part`
    /// consecutive positions (in `batch, h, w` order) of each of its channels, row `r` taking
    /// positions `r, r + rows, …`. Contiguous layout: `tile` 1, a cube per (part, channel), its
    /// units reading consecutive values of one plane. Channels-last layout: `tile` up to 32, so
    /// that the units of one row read neighbouring channels of one position (a coalesced read;
    /// with one channel per cube, neighbouring units' values were `channels` floats apart, each
    /// read a memory sector of its own). `packed`: every 4-d tensor the kernel reads or writes is
    /// dense channels-last, so value `i` of channel `c` is at `i · channels + c` (no division).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    struct Tiling {
        tile: usize,
        rows: usize,
        part: usize,
        packed: bool,
    }

    /// This unit's channel, its row, and whether the channel exists (the last group of a
    /// channels-last tensor can be partly empty; such units add zeros and write nothing).
    #[cube]
    fn lane(channels: usize, #[comptime] t: Tiling) -> (usize, usize, bool) {
        let unit = UNIT_POS as usize;
        let c = CUBE_POS_Y as usize * t.tile + unit % t.tile;
        (c, unit / t.tile, c < channels)
    }

    /// The offset of value `i` (in `batch, h, w` order) of channel `c` in `t`.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn offset<F: Float>(t: &Tensor<F>, c: usize, i: usize, hw: usize, w: usize, channels: usize, #[comptime] packed: bool) -> usize {
        strided(c, i, hw, w, channels, t.stride(0), t.stride(1), t.stride(2), t.stride(3), packed)
    }

    /// The offset of value `i` (in `batch, h, w` order) of channel `c` in a 4-d tensor of
    /// strides `s0..s3` (an output's, read before the kernel writes to it); `i · channels + c`
    /// when `packed`.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn strided(
        c: usize,
        i: usize,
        hw: usize,
        w: usize,
        channels: usize,
        s0: usize,
        s1: usize,
        s2: usize,
        s3: usize,
        #[comptime] packed: bool,
    ) -> usize {
        if packed {
            i * channels + c
        } else {
            let b = i / hw;
            let r = i % hw;
            b * s0 + c * s1 + (r / w) * s2 + (r % w) * s3
        }
    }

    /// The number of values in part `k` of a channel of `n`.
    #[cube]
    fn part_len(k: usize, n: usize, part: usize) -> usize {
        let end = k * part + part;
        select(end < n, part, n - k * part)
    }

    /// The normalisation of channel `c` as `x · scale + shift`: `scale = γ / sqrt(var + ε)`,
    /// `shift = β − mean · scale`. The forward and backward kernels both call it, so the
    /// backward pass's ReLU6 gate sees the forward's output to the bit.
    #[cube]
    fn affine<F: Float>(gamma: &Tensor<F>, beta: &Tensor<F>, c: usize, mean: F, variance: F, epsilon: f32) -> (F, F) {
        let scale = gamma[c * gamma.stride(0)] / F::sqrt(variance + F::cast_from(epsilon));
        (scale, beta[c * beta.stride(0)] - mean * scale)
    }

    /// `dy` where the forward output `y` (before the clamp) is in [0, 6], else 0: the gradient
    /// of Burn's `relu6` (see [`super::relu6_gate`]).
    #[cube]
    fn relu6_gate<F: Float>(dy: F, y: F) -> F {
        select(y >= F::new(0.0) && y <= F::new(6.0), dy, F::new(0.0))
    }

    /// `(w, h·w, batch·h·w)` of a `[batch, channels, h, w]` tensor: the row length, the plane
    /// size and the number of values in a channel.
    #[cube]
    fn plane<F: Float>(x: &Tensor<F>) -> (usize, usize, usize) {
        let w = x.shape(3);
        let hw = x.shape(2) * w;
        (w, hw, x.shape(0) * hw)
    }

    /// The values `start..end` of part `k` of a channel of `n`.
    #[cube]
    fn part_range(k: usize, n: usize, part: usize) -> (usize, usize) {
        let start = k * part;
        (start, start + part_len(k, n, part))
    }

    /// Channel `c`'s batch mean and biased variance, rows 0 and 1 of the forward's statistics.
    #[cube]
    fn batch_moments<F: Float>(statistics: &Tensor<F>, c: usize) -> (F, F) {
        (statistics[c * statistics.stride(1)], statistics[statistics.stride(0) + c * statistics.stride(1)])
    }

    /// Row 0 stores part `k` of channel `c`'s pair of partial results, `partials[c, k] = (a, b)`.
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn store_partial<F: Float>(partials: &mut Tensor<F>, c: usize, row: usize, valid: bool, k: usize, parts: usize, a: F, b: F) {
        if row == 0 && valid {
            partials[(c * parts + k) * 2] = a;
            partials[(c * parts + k) * 2 + 1] = b;
        }
    }

    /// The sum of `value` over the rows of this unit's channel (all units must call it).
    #[cube]
    fn tile_sum<F: Float>(partial: &mut Shared<[F]>, value: F, #[comptime] t: Tiling) -> F {
        let unit = UNIT_POS as usize;
        let row = unit / t.tile;
        partial[unit] = value;
        sync_cube();
        // Pairwise: at distance 1, 2, 4, … rows, the row at a multiple of twice the distance adds
        // its partner's sum (`rows` is a power of two).
        let mut distance = 1usize;
        while distance < t.rows {
            if row % (2 * distance) == 0 {
                let other = partial[unit + distance * t.tile];
                partial[unit] += other;
            }
            sync_cube();
            distance *= 2;
        }
        let total = partial[unit % t.tile];
        sync_cube();
        total
    }

    /// Forward, first kernel: each part's mean and sum of squared deviations from it,
    /// `partials[c, k] = (mean_k, M2_k)`.
    #[cube(launch)]
    fn forward_parts_kernel<F: Float>(x: &Tensor<F>, partials: &mut Tensor<F>, parts: usize, #[comptime] t: Tiling, #[define(F)] _dtype: ElemType) {
        let k = CUBE_POS_X as usize;
        let channels = x.shape(1);
        let (c, row, valid) = lane(channels, t);
        let (w, hw, n) = plane::<F>(x);
        let (start, end) = part_range(k, n, t.part);
        let mut partial = Shared::new_slice(comptime!(t.tile * t.rows));
        let (mean, m2) = part_moments::<F>(x, c, row, valid, start, end, hw, w, &mut partial, t);
        store_partial::<F>(partials, c, row, valid, k, parts, mean, m2);
    }

    /// The mean of channel `c`'s values `start..end` (in `batch, h, w` order) and the sum of
    /// their squared deviations from it (M2), summed over the channel's rows (all units must
    /// call it; a unit of a missing channel reads nothing).
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn part_moments<F: Float>(
        x: &Tensor<F>,
        c: usize,
        row: usize,
        valid: bool,
        start: usize,
        end: usize,
        hw: usize,
        w: usize,
        partial: &mut Shared<[F]>,
        #[comptime] t: Tiling,
    ) -> (F, F) {
        let channels = x.shape(1);
        let stop = select(valid, end, start);
        let mut acc = F::new(0.0);
        let mut i = start + row;
        while i < stop {
            acc += x[offset::<F>(x, c, i, hw, w, channels, t.packed)];
            i += t.rows;
        }
        let mean = tile_sum::<F>(partial, acc, t) / F::cast_from(end - start);
        let mut acc = F::new(0.0);
        let mut i = start + row;
        while i < stop {
            let d = x[offset::<F>(x, c, i, hw, w, channels, t.packed)] - mean;
            acc += d * d;
            i += t.rows;
        }
        (mean, tile_sum::<F>(partial, acc, t))
    }

    /// Forward, second kernel: the channel's mean and biased variance from its parts (Chan et
    /// al.'s pairwise combination: mean = Σ n_k·mean_k / n, M2 = Σ M2_k + n_k·(mean_k − mean)²),
    /// then `γ (x − mean) / sqrt(var + ε) + β` on this cube's part (clamped to [0, 6] with
    /// `relu6`); part 0 writes the statistics and the running statistics moved toward them. With
    /// `single` (a channel of one part, the only kernel launched) the cube computes its
    /// channel's mean and M2 itself and `partials` is not read.
    #[cube(launch)]
    fn forward_output_kernel<F: Float>(
        x: &Tensor<F>,
        partials: &Tensor<F>,
        gamma: &Tensor<F>,
        beta: &Tensor<F>,
        running_mean: &Tensor<F>,
        running_var: &Tensor<F>,
        output: &mut Tensor<F>,
        statistics: &mut Tensor<F>,
        parts: usize,
        momentum: f32,
        unbiased: f32,
        epsilon: f32,
        #[comptime] t: Tiling,
        #[comptime] relu6: bool,
        #[comptime] single: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let k = CUBE_POS_X as usize;
        let channels = x.shape(1);
        let (c, row, valid) = lane(channels, t);
        // The channel whose parameters a unit reads (a missing channel's units read channel 0's).
        let read = select(valid, c, 0);
        let (w, hw, n) = plane::<F>(x);
        let count = F::cast_from(n);
        let mut partial = Shared::new_slice(comptime!(t.tile * t.rows));

        let (mean, m2) = if single {
            part_moments::<F>(x, c, row, valid, 0, n, hw, w, &mut partial, t)
        } else {
            let last = select(valid, parts, 0);
            let mut acc = F::new(0.0);
            let mut j = row;
            while j < last {
                acc += F::cast_from(part_len(j, n, t.part)) * partials[(c * parts + j) * 2];
                j += t.rows;
            }
            let mean = tile_sum::<F>(&mut partial, acc, t) / count;
            let mut acc = F::new(0.0);
            let mut j = row;
            while j < last {
                let d = partials[(c * parts + j) * 2] - mean;
                acc += partials[(c * parts + j) * 2 + 1] + F::cast_from(part_len(j, n, t.part)) * d * d;
                j += t.rows;
            }
            (mean, tile_sum::<F>(&mut partial, acc, t))
        };
        let variance = m2 / count;

        let (scale, shift) = affine::<F>(gamma, beta, read, mean, variance, epsilon);
        let (start, end) = part_range(k, n, t.part);
        let stop = select(valid, end, start);
        let (s0, s1, s2, s3) = (output.stride(0), output.stride(1), output.stride(2), output.stride(3));
        let mut i = start + row;
        while i < stop {
            let mut y = x[offset::<F>(x, c, i, hw, w, channels, t.packed)] * scale + shift;
            if relu6 {
                y = F::clamp(y, F::new(0.0), F::new(6.0));
            }
            output[strided(c, i, hw, w, channels, s0, s1, s2, s3, t.packed)] = y;
            i += t.rows;
        }
        if k == 0 && row == 0 && valid {
            let m = F::cast_from(momentum);
            let keep = F::new(1.0) - m;
            statistics[c] = mean; // [4, channels], contiguous
            statistics[channels + c] = variance;
            statistics[2 * channels + c] = keep * running_mean[c * running_mean.stride(0)] + m * mean;
            statistics[3 * channels + c] =
                keep * running_var[c * running_var.stride(0)] + m * F::cast_from(unbiased) * variance;
        }
    }

    /// Backward, first kernel: each part's Σdy and Σdy·(x − mean), `partials[c, k]` (dy gated
    /// by ReLU6 with `relu6`).
    #[cube(launch)]
    fn backward_parts_kernel<F: Float>(
        x: &Tensor<F>,
        grad: &Tensor<F>,
        statistics: &Tensor<F>,
        gamma: &Tensor<F>,
        beta: &Tensor<F>,
        partials: &mut Tensor<F>,
        parts: usize,
        epsilon: f32,
        #[comptime] t: Tiling,
        #[comptime] relu6: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let k = CUBE_POS_X as usize;
        let (c, row, valid) = lane(x.shape(1), t);
        let read = select(valid, c, 0);
        let (w, hw, n) = plane::<F>(x);
        let (mean, variance) = batch_moments::<F>(statistics, read);
        let (scale, shift) = affine::<F>(gamma, beta, read, mean, variance, epsilon);
        let (start, end) = part_range(k, n, t.part);
        let mut partial = Shared::new_slice(comptime!(t.tile * t.rows));
        let (sum_grad, sum_grad_centred) =
            part_grad_sums::<F>(x, grad, c, row, valid, start, end, hw, w, mean, scale, shift, &mut partial, t, relu6);
        store_partial::<F>(partials, c, row, valid, k, parts, sum_grad, sum_grad_centred);
    }

    /// Σdy and Σdy·(x − mean) over channel `c`'s values `start..end` (dy gated by ReLU6 on the
    /// recomputed pre-clamp value `x · scale + shift` with `relu6`), summed over the channel's
    /// rows (all units must call it; a unit of a missing channel reads nothing).
    #[cube]
    #[allow(clippy::too_many_arguments)]
    fn part_grad_sums<F: Float>(
        x: &Tensor<F>,
        grad: &Tensor<F>,
        c: usize,
        row: usize,
        valid: bool,
        start: usize,
        end: usize,
        hw: usize,
        w: usize,
        mean: F,
        scale: F,
        shift: F,
        partial: &mut Shared<[F]>,
        #[comptime] t: Tiling,
        #[comptime] relu6: bool,
    ) -> (F, F) {
        let channels = x.shape(1);
        let stop = select(valid, end, start);
        let mut sum_grad = F::new(0.0);
        let mut sum_grad_centred = F::new(0.0);
        let mut i = start + row;
        while i < stop {
            let xv = x[offset::<F>(x, c, i, hw, w, channels, t.packed)];
            let mut dy = grad[offset::<F>(grad, c, i, hw, w, channels, t.packed)];
            if relu6 {
                dy = relu6_gate::<F>(dy, xv * scale + shift);
            }
            sum_grad += dy;
            sum_grad_centred += dy * (xv - mean);
            i += t.rows;
        }
        let sum_grad = tile_sum::<F>(partial, sum_grad, t);
        (sum_grad, tile_sum::<F>(partial, sum_grad_centred, t))
    }

    /// Backward, second kernel: the channel's Σdy and Σdy·x̂ from its parts, then
    /// dx = γσ⁻¹·(dy − Σdy/n − x̂·Σdy·x̂/n) on this cube's part (dy gated by ReLU6 with
    /// `relu6`); part 0 writes dγ = Σdy·x̂ and dβ = Σdy. With `single` (a channel of one part,
    /// the only kernel launched) the cube sums its channel itself and `partials` is not read.
    #[cube(launch)]
    fn backward_input_kernel<F: Float>(
        x: &Tensor<F>,
        grad: &Tensor<F>,
        statistics: &Tensor<F>,
        gamma: &Tensor<F>,
        beta: &Tensor<F>,
        partials: &Tensor<F>,
        x_grad: &mut Tensor<F>,
        param_grads: &mut Tensor<F>,
        parts: usize,
        epsilon: f32,
        #[comptime] t: Tiling,
        #[comptime] relu6: bool,
        #[comptime] single: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let k = CUBE_POS_X as usize;
        let channels = x.shape(1);
        let (c, row, valid) = lane(channels, t);
        let read = select(valid, c, 0);
        let (w, hw, n) = plane::<F>(x);
        let count = F::cast_from(n);
        let mut partial = Shared::new_slice(comptime!(t.tile * t.rows));
        let (mean, variance) = batch_moments::<F>(statistics, read);
        let inv_std = F::new(1.0) / F::sqrt(variance + F::cast_from(epsilon));
        let (scale, shift) = affine::<F>(gamma, beta, read, mean, variance, epsilon);

        // Σdy and Σdy·(x − mean)
        let (sum_grad, sum_grad_centred) = if single {
            part_grad_sums::<F>(x, grad, c, row, valid, 0, n, hw, w, mean, scale, shift, &mut partial, t, relu6)
        } else {
            let last = select(valid, parts, 0);
            let mut sum_grad = F::new(0.0);
            let mut sum_grad_centred = F::new(0.0);
            let mut j = row;
            while j < last {
                sum_grad += partials[(c * parts + j) * 2];
                sum_grad_centred += partials[(c * parts + j) * 2 + 1];
                j += t.rows;
            }
            let sum_grad = tile_sum::<F>(&mut partial, sum_grad, t);
            (sum_grad, tile_sum::<F>(&mut partial, sum_grad_centred, t))
        };
        let sum_grad_normalized = sum_grad_centred * inv_std; // Σdy·x̂

        // dx = a·dy + b·x + d
        let a = gamma[read * gamma.stride(0)] * inv_std;
        let b = F::new(0.0) - a * inv_std * sum_grad_normalized / count;
        let d = F::new(0.0) - a * sum_grad / count - b * mean;
        let (start, end) = part_range(k, n, t.part);
        let stop = select(valid, end, start);
        let (s0, s1, s2, s3) = (x_grad.stride(0), x_grad.stride(1), x_grad.stride(2), x_grad.stride(3));
        let mut i = start + row;
        while i < stop {
            let xv = x[offset::<F>(x, c, i, hw, w, channels, t.packed)];
            let mut dy = grad[offset::<F>(grad, c, i, hw, w, channels, t.packed)];
            if relu6 {
                dy = relu6_gate::<F>(dy, xv * scale + shift);
            }
            x_grad[strided(c, i, hw, w, channels, s0, s1, s2, s3, t.packed)] = a * dy + b * xv + d;
            i += t.rows;
        }
        if k == 0 && row == 0 && valid {
            param_grads[c] = sum_grad_normalized; // [2, channels], contiguous
            param_grads[channels + c] = sum_grad;
        }
    }

    /// The positions of a part of a channel of `n`: `default`, or more when `n` would need more
    /// than [`MAX_PARTS`] parts (a grid axis' limit).
    pub(super) fn part_length(n: usize, default: usize) -> usize {
        default.max(n.div_ceil(MAX_PARTS))
    }

    /// The launch of a kernel over `x`: its tiling (`packed` when `x` and every other 4-d
    /// tensor of the launch, `others`, are dense channels-last), the parts per channel, and the
    /// grid: one cube per (part, group of `tile` channels).
    fn grid(x: &CubeTensor, others: &[&CubeTensor]) -> (Tiling, usize, CubeCount, CubeDim) {
        let [b, c, h, w] = super::dims4(x);
        let n = b * h * w;
        let channels_last = is_channels_last(x);
        let t = if channels_last {
            let tile = c.next_power_of_two().min(TILE);
            let rows = (n / 16).next_power_of_two().clamp(1, UNITS / tile);
            let packed = others.iter().all(|o| is_channels_last(o) && o.meta.strides() == x.meta.strides());
            Tiling { tile, rows, part: part_length(n, rows * PER_UNIT), packed }
        } else {
            let rows = (n.min(PART) / 16).next_power_of_two().clamp(32, UNITS);
            Tiling { tile: 1, rows, part: part_length(n, PART), packed: false }
        };
        let parts = n.div_ceil(t.part).max(1);
        let groups = c.div_ceil(t.tile);
        (t, parts, CubeCount::Static(parts as u32, groups as u32, 1), CubeDim::new_1d((t.tile * t.rows) as u32))
    }

    impl BatchNormTrain for CubeBackend {
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
            if !supported(&[&x, &gamma, &beta, &running_mean, &running_var]) {
                return super::composed_forward::<Self>(x, gamma, beta, running_mean, running_var, momentum, epsilon, relu6);
            }
            let [x, gamma, beta, running_mean, running_var] =
                [x, gamma, beta, running_mean, running_var].map(burn_cubecl::kernel::untile);
            let (t, parts, count, dim) = grid(&x, &[]);
            let [b, c, h, w] = super::dims4(&x);
            let partials = empty(&x, Shape::new([c, parts, 2]));
            let output = empty_like(&x);
            let statistics = empty(&x, Shape::new([4, c]));
            let client = x.client.clone();
            // A channel of one part: the second kernel alone (it computes the moments itself).
            let single = parts == 1;
            if !single {
                forward_parts_kernel::launch(
                    &client,
                    count.clone(),
                    dim,
                    x.clone().into_tensor_arg(),
                    partials.clone().into_tensor_arg(),
                    parts,
                    t,
                    elem(),
                );
            }
            forward_output_kernel::launch(
                &client,
                count,
                dim,
                x.into_tensor_arg(),
                partials.into_tensor_arg(),
                gamma.into_tensor_arg(),
                beta.into_tensor_arg(),
                running_mean.into_tensor_arg(),
                running_var.into_tensor_arg(),
                output.clone().into_tensor_arg(),
                statistics.clone().into_tensor_arg(),
                parts,
                momentum as f32,
                super::unbiased_factor(b * h * w) as f32,
                epsilon as f32,
                t,
                relu6,
                single,
                elem(),
            );
            (output, statistics)
        }

        fn channel_norm_backward(
            x: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            statistics: FloatTensor<Self>,
            gamma: FloatTensor<Self>,
            beta: FloatTensor<Self>,
            epsilon: f64,
            relu6: bool,
        ) -> (FloatTensor<Self>, FloatTensor<Self>) {
            if !supported(&[&x, &grad, &statistics, &gamma, &beta]) {
                return super::composed_backward::<Self>(x, grad, statistics, gamma, beta, epsilon, relu6);
            }
            let [x, grad, statistics, gamma, beta] = [x, grad, statistics, gamma, beta].map(burn_cubecl::kernel::untile);
            let (t, parts, count, dim) = grid(&x, &[&grad]);
            let c = super::dims4(&x)[1];
            let partials = empty(&x, Shape::new([c, parts, 2]));
            let x_grad = empty_like(&x);
            let param_grads = empty(&x, Shape::new([2, c]));
            let client = x.client.clone();
            let single = parts == 1;
            if !single {
                backward_parts_kernel::launch(
                    &client,
                    count.clone(),
                    dim,
                    x.clone().into_tensor_arg(),
                    grad.clone().into_tensor_arg(),
                    statistics.clone().into_tensor_arg(),
                    gamma.clone().into_tensor_arg(),
                    beta.clone().into_tensor_arg(),
                    partials.clone().into_tensor_arg(),
                    parts,
                    epsilon as f32,
                    t,
                    relu6,
                    elem(),
                );
            }
            backward_input_kernel::launch(
                &client,
                count,
                dim,
                x.into_tensor_arg(),
                grad.into_tensor_arg(),
                statistics.into_tensor_arg(),
                gamma.into_tensor_arg(),
                beta.into_tensor_arg(),
                partials.into_tensor_arg(),
                x_grad.clone().into_tensor_arg(),
                param_grads.clone().into_tensor_arg(),
                parts,
                epsilon as f32,
                t,
                relu6,
                single,
                elem(),
            );
            (x_grad, param_grads)
        }
    }
}

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
