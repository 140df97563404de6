//! Training-mode batch normalisation as one differentiable operation whose statistics are
//! per-channel sums over the `[batch, channels, h·w]` view of the input.
//!
//! Burn 0.22's `batch_norm_train` (burn-backend's default, which neither the fusion nor the
//! CubeCL backend overrides) takes its statistics over `swap_dims(0, 1)` + `reshape` views,
//! which copy the activation whenever the swapped view cannot be merged, and computes the two
//! per-channel sums of its backward pass twice each (once as the γ/β gradient, once as a mean).
//! On wgpu (lavapipe, 28 px, batch 8) a training step then launches ~940 more kernels than the
//! same step with frozen batch norms, ~205 of them copies; on the H100 training-mode batch norm
//! was 43 % of the 64-px step (docs/performance.md). Here the `[batch, channels, h·w]` view is a
//! plain reshape of a contiguous (or channels-last) tensor, each statistic is a two-stage sum
//! (over `h·w`, then over the batch), and the backward pass computes Σdy and Σdy·x̂ once.
//!
//! The operation is a Burn backend extension: the forward and backward bodies below compose the
//! backend's own operations (lazily fused on wgpu), and the autodiff implementation records the
//! whole normalisation as one node whose backward calls [`BatchNormStats::batch_norm_stats_backward`].

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Scalar, TensorMetadata, backend_extension};
use burn::prelude::*;

/// Batch-norm statistics and gradients of a `[batch, channels, h, w]` tensor.
#[backend_extension(Flex, Cube: cfg(feature = "wgpu"), Autodiff)]
pub trait BatchNormStats: Backend {
    /// Normalises `x` with its own batch statistics:
    /// `(output, mean, biased variance, 1 / sqrt(variance + epsilon))`, the last three
    /// `[channels]`.
    fn batch_norm_stats_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [_, c, _, _] = dims4(&x);
        let count = Scalar::Float(per_channel_count(&x));
        let per_channel = Shape::new([1, c, 1, 1]);
        let mean = Self::float_div_scalar(channel_sums::<Self>(x.clone()), count); // [1, c, 1, 1]
        let centered = Self::float_sub(x, mean.clone()); // [batch, c, h, w]
        let variance = Self::float_div_scalar(channel_sums::<Self>(Self::float_mul(centered.clone(), centered.clone())), count);
        let inv_std = Self::float_recip(Self::float_sqrt(Self::float_add_scalar(variance.clone(), Scalar::Float(epsilon))));
        let scale = Self::float_mul(Self::float_reshape(gamma, per_channel.clone()), inv_std.clone());
        let output = Self::float_add(Self::float_mul(centered, scale), Self::float_reshape(beta, per_channel));
        let flat = Shape::new([c]);
        (
            output,
            Self::float_reshape(mean, flat.clone()),
            Self::float_reshape(variance, flat.clone()),
            Self::float_reshape(inv_std, flat),
        )
    }

    /// Gradients `(x, gamma, beta)` of the forward pass given the output's gradient `grad`;
    /// `mean` and `inv_std` are what the forward pass returned.
    fn batch_norm_stats_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        inv_std: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [_, c, _, _] = dims4(&x);
        let count = Scalar::Float(per_channel_count(&x));
        let per_channel = Shape::new([1, c, 1, 1]);
        let inv_std = Self::float_reshape(inv_std, per_channel.clone());
        let normalized = Self::float_mul(Self::float_sub(x, Self::float_reshape(mean, per_channel.clone())), inv_std.clone());
        let sum_grad = channel_sums::<Self>(grad.clone()); // Σdy, [1, c, 1, 1]
        let sum_grad_normalized = channel_sums::<Self>(Self::float_mul(grad.clone(), normalized.clone())); // Σdy·x̂
        // dx = γ / σ · (dy − Σdy / n − x̂ · Σdy·x̂ / n)
        let centred_grad = Self::float_sub(grad, Self::float_div_scalar(sum_grad.clone(), count));
        let projected = Self::float_mul(normalized, Self::float_div_scalar(sum_grad_normalized.clone(), count));
        let scale = Self::float_mul(Self::float_reshape(gamma, per_channel), inv_std);
        let x_grad = Self::float_mul(scale, Self::float_sub(centred_grad, projected));
        let flat = Shape::new([c]);
        (x_grad, Self::float_reshape(sum_grad_normalized, flat.clone()), Self::float_reshape(sum_grad, flat))
    }
}

/// `[batch, channels, h, w]` of a 4-d tensor.
fn dims4<T: TensorMetadata>(x: &T) -> [usize; 4] {
    let shape = x.shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

/// The number of values each channel's statistics are taken over: `batch × h × w`.
fn per_channel_count<T: TensorMetadata>(x: &T) -> f64 {
    let [b, _, h, w] = dims4(x);
    (b * h * w) as f64
}

/// Per-channel sums of `[batch, channels, h, w]` as `[1, channels, 1, 1]`: over `h·w` first (a
/// reshape, no copy, of a contiguous or channels-last tensor), then over the batch.
fn channel_sums<B: Backend>(t: FloatTensor<B>) -> FloatTensor<B> {
    let [b, c, h, w] = dims4(&t);
    let per_image = B::float_sum_dim(B::float_reshape(t, Shape::new([b, c, h * w])), 2); // [b, c, 1]
    B::float_reshape(B::float_sum_dim(per_image, 0), Shape::new([1, c, 1, 1]))
}

impl BatchNormStats for burn::backend::Flex {}

#[cfg(feature = "wgpu")]
impl BatchNormStats for burn::backend::Cube {}

/// The whole normalisation as one autodiff node (the input and γ are checkpointed; the mean
/// and `1 / σ` travel with the node).
impl<B: Backend + BatchNormStats, C: CheckpointStrategy> BatchNormStats for Autodiff<B, C> {
    fn batch_norm_stats_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        #[derive(Debug)]
        struct BatchNormBackward;

        impl<B: Backend + BatchNormStats> Backward<B, 3> for BatchNormBackward {
            type State = (NodeId, NodeId, FloatTensor<B>, FloatTensor<B>);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, gamma_state, mean, inv_std) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
                let (x_grad, gamma_grad, beta_grad) = B::batch_norm_stats_backward(x, gamma, mean, inv_std, grad);
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, x_grad);
                }
                if let Some(node) = node_gamma {
                    grads.register::<B>(node.id, gamma_grad);
                }
                if let Some(node) = node_beta {
                    grads.register::<B>(node.id, beta_grad);
                }
            }
        }

        match BatchNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let (output, mean, variance, inv_std) =
                    B::batch_norm_stats_forward(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), epsilon);
                let output = prep.finish((x_state, gamma_state, mean.clone(), inv_std.clone()), output);
                (output, <FloatTensor<Self>>::new(mean), <FloatTensor<Self>>::new(variance), <FloatTensor<Self>>::new(inv_std))
            }
            OpsKind::UnTracked(prep) => {
                let (output, mean, variance, inv_std) =
                    B::batch_norm_stats_forward(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), epsilon);
                (prep.finish(output), <FloatTensor<Self>>::new(mean), <FloatTensor<Self>>::new(variance), <FloatTensor<Self>>::new(inv_std))
            }
        }
    }
}

/// The output of a training-mode batch norm: `[batch, channels, h, w]`.
pub struct BatchNormOutput {
    /// The normalised, scaled and shifted input.
    pub output: Tensor<4>,
    /// The batch mean per channel, `[channels]`.
    pub mean: Tensor<1>,
    /// The biased batch variance per channel, `[channels]` (what normalises the batch).
    pub variance: Tensor<1>,
}

/// Normalises `x` (`[batch, channels, h, w]`) with its own batch statistics; the output is
/// differentiable with respect to `x`, `gamma` and `beta` on an autodiff device.
pub fn batch_norm_train(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, epsilon: f64) -> BatchNormOutput {
    let (output, mean, variance, _) =
        <Dispatch as BatchNormStats>::batch_norm_stats_forward(x.into_dispatch(), gamma.into_dispatch(), beta.into_dispatch(), epsilon);
    BatchNormOutput { output: Tensor::from_dispatch(output), mean: Tensor::from_dispatch(mean), variance: Tensor::from_dispatch(variance) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// Against Burn 0.22's own `burn::tensor::module::batch_norm_train` (burn-backend's default
    /// decomposition, differentiated as one node by burn-autodiff), which this operation
    /// replaces: output, batch statistics and the gradients with respect to x, γ and β of
    /// `sum(output · w)` for a random `w`, on the CPU autodiff backend, within float32 rounding.
    /// Two layouts of x: contiguous, and channels-last (a permuted view, as convolution outputs
    /// can be), whose `[batch, channels, h·w]` view must also be taken without a copy.
    #[test]
    fn matches_burns_batch_norm_train_forward_and_backward() {
        let device = Device::flex().autodiff();
        for channels_last in [false, true] {
            let x = if channels_last {
                // [batch, h, w, channels] laid out, viewed as [batch, channels, h, w]
                Tensor::<4>::random([3, 5, 4, 6], Distribution::Normal(0.7, 2.0), &device).permute([0, 3, 1, 2])
            } else {
                Tensor::<4>::random([3, 6, 5, 4], Distribution::Normal(0.7, 2.0), &device)
            };
            let w = Tensor::<4>::random(x.dims(), Distribution::Normal(0.0, 1.0), &device);
            let gamma = Tensor::<1>::random([6], Distribution::Normal(1.0, 0.5), &device);
            let beta = Tensor::<1>::random([6], Distribution::Normal(0.0, 0.5), &device);

            let run = |ours: bool| {
                let (x, gamma, beta) = (x.clone().detach().require_grad(), gamma.clone().detach().require_grad(), beta.clone().detach().require_grad());
                let (output, mean, variance) = if ours {
                    let o = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
                    (o.output, o.mean, o.variance)
                } else {
                    let o = burn::tensor::module::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
                    (o.output, o.mean, o.variance)
                };
                let grads = (output.clone() * w.clone()).sum().backward();
                let g = |t: &Tensor<4>| t.grad(&grads).expect("x grad");
                let g1 = |t: &Tensor<1>| t.grad(&grads).expect("param grad");
                (output.inner(), mean.inner(), variance.inner(), g(&x), g1(&gamma), g1(&beta))
            };
            let (o1, m1, v1, gx1, gg1, gb1) = run(true);
            let (o2, m2, v2, gx2, gg2, gb2) = run(false);
            let cases = [
                ("output", max_abs_diff(o1, o2)),
                ("x grad", max_abs_diff(gx1, gx2)),
                ("mean", max_abs_diff(m1, m2)),
                ("variance", max_abs_diff(v1, v2)),
                ("gamma grad", max_abs_diff(gg1, gg2)),
                ("beta grad", max_abs_diff(gb1, gb2)),
            ];
            for (name, d) in cases {
                assert!(d < 2e-5, "channels_last {channels_last}: {name} differs by {d}");
            }
        }
    }

    /// A hand-checkable case: one channel, x = [1, 2, 3, 4] as [2, 1, 1, 2], γ = 2, β = 0.5.
    /// mean 2.5, biased variance 1.25; output γ·(x − 2.5)/sqrt(1.25 + 1e-5) + β. For the loss
    /// `sum(output · [1, 0, 0, 0])` the gradients are dβ = Σw = 1, dγ = Σw·x̂ = x̂₀ = −1.3416,
    /// dx = γ/σ · (w − mean(w) − x̂ · mean(w·x̂)) (the same values `torch.nn.functional.batch_norm`
    /// with `training=True` gives; the formula is PyTorch's `batch_norm_backward` for the
    /// training case).
    #[test]
    fn one_channel_by_hand() {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::from_floats([[[[1.0, 2.0]]], [[[3.0, 4.0]]]], &device).require_grad();
        let gamma = Tensor::<1>::from_floats([2.0], &device).require_grad();
        let beta = Tensor::<1>::from_floats([0.5], &device).require_grad();
        let out = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
        let sigma = (1.25f64 + 1e-5).sqrt();
        let xhat: Vec<f64> = [1.0, 2.0, 3.0, 4.0].iter().map(|v| (v - 2.5) / sigma).collect();
        let got: Vec<f32> = out.output.clone().into_data().try_into_vec::<f32>().unwrap();
        for (g, h) in got.iter().zip(&xhat) {
            assert!((*g as f64 - (2.0 * h + 0.5)).abs() < 1e-5, "{got:?}");
        }
        let mask = Tensor::<4>::from_floats([[[[1.0, 0.0]]], [[[0.0, 0.0]]]], &device);
        let grads = (out.output * mask).sum().backward();
        let w = [1.0, 0.0, 0.0, 0.0];
        let mean_w = 0.25;
        let mean_wx = xhat[0] * 0.25;
        let want_dx: Vec<f64> = (0..4).map(|i| 2.0 / sigma * (w[i] - mean_w - xhat[i] * mean_wx)).collect();
        let dx: Vec<f32> = x.grad(&grads).unwrap().into_data().try_into_vec::<f32>().unwrap();
        for (g, want) in dx.iter().zip(&want_dx) {
            assert!((*g as f64 - want).abs() < 1e-5, "{dx:?} vs {want_dx:?}");
        }
        let dgamma: Vec<f32> = gamma.grad(&grads).unwrap().into_data().try_into_vec::<f32>().unwrap();
        let dbeta: Vec<f32> = beta.grad(&grads).unwrap().into_data().try_into_vec::<f32>().unwrap();
        assert!((dgamma[0] as f64 - xhat[0]).abs() < 1e-5 && (dbeta[0] - 1.0).abs() < 1e-6, "{dgamma:?} {dbeta:?}");
        let mean: Vec<f32> = out.mean.into_data().try_into_vec::<f32>().unwrap();
        let var: Vec<f32> = out.variance.into_data().try_into_vec::<f32>().unwrap();
        assert_eq!((mean[0], var[0]), (2.5, 1.25));
    }
}
