//! The 1x1 (pointwise) convolutions of MobileNetV2's blocks (expansion and projection) as one
//! autodiff node, computed on CubeCL (wgpu) by one tiled matrix-product kernel in three
//! directions, on channels-last tensors seen as `[rows, channels]` matrices (`rows` = batch ·
//! h · w):
//! - forward: `y[rows, out] = x[rows, in] · wᵀ`;
//! - input gradient: `dx[rows, in] = dy[rows, out] · w`;
//! - weight gradient: `dw[out, in] = dyᵀ · x`, a sum over all rows cut into parts (each cube
//!   one tile of `dw` over one part), the parts added by a second kernel.
//!
//! Why: CubeCL keeps the time of every candidate it tunes, and on the H200 at 224 px / batch
//! 128 the winners for these convolutions sum to ~67 ms of the 210-ms step against a roofline
//! bound of ~3.6 ms (`scripts/tune_cache_report.py`, docs/performance.md, *Eleventh session*):
//! burn-cubecl runs them as im2col + matmul, and on WGSL (no tensor cores for float32) its
//! matmul candidates reach 1–20 TFLOP/s on these shapes, 2.4 ms for the 32 → 16 projection over
//! 1.6 M rows whose data moves in 64 µs. Here a cube computes a tile of the output (64 × 64,
//! 128 × 32 or 256 × 16 by the column count, 4 × 4 values a unit), the operands staged through
//! shared memory 16 deep, loads laid out so that adjacent units read adjacent addresses in
//! either operand layout.
//!
//! On Flex (the CPU backend) the node runs Burn's own `conv2d`, `conv2d_x_backward` and
//! `conv2d_weight_backward`, so training there is unchanged to the bit. The GPU kernels take
//! float32 channels-last (dense NHWC) inputs, what burn-cubecl's convolutions and this crate's
//! kernels produce; anything else runs Burn's convolution. [`PointwiseImpl::Burn`] (the
//! default until the kernels are measured on a GPU) keeps Burn's whole path.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

/// A 1x1 convolution (`[batch, in, h, w]` by `[out, in, 1, 1]`, stride 1, no padding, no bias)
/// and its gradients.
#[backend_extension(
    Flex,
    Cube: cfg(feature = "wgpu"),
    Fusion: cfg(feature = "wgpu"),
    Autodiff
)]
pub trait PointwiseConv: Backend {
    /// The convolution itself: the backend's own `conv2d` unless the backend has its kernel.
    #[fusion(meta = forward_meta)]
    fn pointwise_forward(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options())
    }

    /// The gradients of [`Self::pointwise_forward`] given the output's gradient `grad`:
    /// `(dx [batch, in, h, w], dw [out, in, 1, 1])`; Burn's own unless the backend has its
    /// kernels.
    #[fusion(meta = backward_meta)]
    fn pointwise_backward(x: FloatTensor<Self>, weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        burns_backward::<Self>(x, weight, grad)
    }
}

/// A 1x1 convolution's options: stride 1, no padding, no dilation, one group.
fn options() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [0, 0], [1, 1], 1)
}

/// Burn's own gradients of the convolution (what burn-autodiff's `conv2d` node computes).
fn burns_backward<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>, grad: FloatTensor<B>) -> (FloatTensor<B>, FloatTensor<B>) {
    let x_grad = B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options());
    (x_grad, B::conv2d_weight_backward(x, weight, grad, options()))
}

#[cfg(feature = "wgpu")]
use burn::backend::fusion::custom::TensorSpec;

/// Output metadata of the forward pass, for burn-fusion: `[batch, out, h, w]`.
#[cfg(feature = "wgpu")]
fn forward_meta(x: &TensorSpec, weight: &TensorSpec) -> TensorSpec {
    TensorSpec::new(Shape::new([x.shape[0], weight.shape[0], x.shape[2], x.shape[3]]), x.dtype)
}

/// Output metadata of the backward pass, for burn-fusion: dx like `x`, dw like `weight`.
#[cfg(feature = "wgpu")]
fn backward_meta(x: &TensorSpec, weight: &TensorSpec, _grad: &TensorSpec) -> (TensorSpec, TensorSpec) {
    (x.clone(), weight.clone())
}

impl PointwiseConv for burn::backend::Flex {}

/// The backward pass of the node below: [`PointwiseConv::pointwise_backward`].
#[derive(Debug)]
struct PointwiseGradients;

impl<B: Backend + PointwiseConv> crate::node::WeightedBackward<B> for PointwiseGradients {
    type Options = ();

    fn gradients(x: FloatTensor<B>, weight: FloatTensor<B>, grad: FloatTensor<B>, _: ()) -> (FloatTensor<B>, FloatTensor<B>) {
        B::pointwise_backward(x, weight, grad)
    }
}

/// The convolution as one autodiff node ([`crate::node::weighted`]): `x` and the weight are
/// checkpointed, and the backward pass is one call of [`PointwiseConv::pointwise_backward`].
impl<B: Backend + PointwiseConv, C: CheckpointStrategy> PointwiseConv for Autodiff<B, C> {
    fn pointwise_forward(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        crate::node::weighted::<B, C, PointwiseGradients>(x, weight, (), |x, weight, ()| B::pointwise_forward(x, weight))
    }

    /// Not differentiable itself (the forward node's backward calls the inner backend's):
    /// computed on the inner tensors, returned as constants.
    fn pointwise_backward(x: FloatTensor<Self>, weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (x_grad, weight_grad) = B::pointwise_backward(x.into_primitive(), weight.into_primitive(), grad.into_primitive());
        (<FloatTensor<Self>>::new(x_grad), <FloatTensor<Self>>::new(weight_grad))
    }
}

#[cfg(feature = "wgpu")]
// The kernels on CubeCL's backend, in pointwise/cube.rs.
mod cube;

crate::choice::implementation_choice! {
    /// Which implementation computes the 1x1 convolutions.
    pub enum PointwiseImpl ("pointwise implementation") {
        /// Burn's `Conv2d::forward` and burn-autodiff's convolution backward (autotuned
        /// burn-cubecl kernels on the GPU): the default until the kernels are measured on one.
        Burn = "burn",
        /// [`pointwise_conv2d`]'s node: this module's kernels on the GPU.
        Kernels = "kernels",
    }
    default Burn;
    static POINTWISE_IMPL;
    /// Selects the calling thread's 1x1-convolution implementation (the model runs on the
    /// thread that calls its `forward`).
    pub fn set_pointwise_impl;
    /// The calling thread's 1x1-convolution implementation ([`PointwiseImpl::Burn`] unless
    /// set).
    pub fn pointwise_impl;
}

/// `conv.forward(x)` for a 1x1 `conv` (stride 1, no padding, one group, no bias) through
/// [`PointwiseConv`]'s node when the calling thread selected [`PointwiseImpl::Kernels`]; any
/// other convolution, or the default choice, is `conv.forward(x)`.
pub fn pointwise_conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let zero_padding = match conv.padding {
        PaddingConfig2d::Valid | PaddingConfig2d::Same => true,
        PaddingConfig2d::Explicit(top, left, bottom, right) => top + left + bottom + right == 0,
    };
    let pointwise = conv.kernel_size == [1, 1] && conv.stride == [1, 1] && conv.groups == 1 && conv.bias.is_none() && zero_padding;
    if !pointwise || pointwise_impl() == PointwiseImpl::Burn {
        return conv.forward(x);
    }
    let output = <Dispatch as PointwiseConv>::pointwise_forward(x.into_dispatch(), conv.weight.val().into_dispatch());
    Tensor::from_dispatch(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{Padding, conv};
    use crate::testing::random_4d;
    use burn::tensor::Distribution;

    /// Output and the gradients with respect to x and the weight of `sum(conv(x) · m)`, through
    /// [`pointwise_conv2d`] with the kernels selected (`ours`) or Burn's `Conv2d::forward`
    /// differentiated by burn-autodiff's convolution node.
    fn run(ours: bool, layer: &Conv2d, x: &Tensor<4>, m: &Tensor<4>) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        set_pointwise_impl(if ours { PointwiseImpl::Kernels } else { PointwiseImpl::Burn });
        let x = x.clone().detach().require_grad();
        let output = pointwise_conv2d(layer, x.clone());
        set_pointwise_impl(PointwiseImpl::Burn);
        let grads = (output.clone() * m.clone()).sum().backward();
        let gx = x.grad(&grads).expect("x grad");
        let gw = layer.weight.val().grad(&grads).expect("weight grad");
        (output.inner(), gx, gw)
    }

    /// `(in, out, h, w, channels_last)`: column counts for each tile shape (≤ 16, ≤ 32, more),
    /// counts that are not multiples of a tile or of the stage depth (5, 24, 33, 70), a single
    /// position, and a contiguous (NCHW) input and output gradient, which the GPU path hands to
    /// Burn. The two 12 × 12 layers have 5,760 rows at batch 40: the tall outputs' tiles
    /// (256 × 16 and 128 × 32; 64 × 64) rather than the least-padding choice of small ones.
    const CASES: [(usize, usize, usize, usize, bool); 10] = [
        (24, 16, 12, 12, true),
        (40, 33, 12, 12, true),
        (32, 16, 9, 7, true),
        (16, 96, 6, 6, true),
        (96, 24, 5, 5, true),
        (24, 33, 4, 3, true),
        (70, 5, 3, 3, true),
        (160, 70, 2, 2, true),
        (40, 36, 1, 1, true),
        (12, 20, 4, 5, false),
    ];

    /// [`run`] both ways for every case of [`CASES`] at batch `batch`, each quantity's largest
    /// difference relative to the reference's largest magnitude (at least 1).
    fn differences(batch: usize, device: &Device) -> Vec<(String, f32)> {
        use crate::testing::relative_diff as rel;
        let mut out = Vec::new();
        for (cin, cout, h, w, channels_last) in CASES {
            let layer = conv([cin, cout], 1, [1, 1], 1, Padding::Symmetric, device);
            let x = random_4d([batch, cin, h, w], channels_last, Distribution::Normal(0.3, 1.0), device);
            // The output's gradient is `m`: channels-last like a batch norm's input gradient.
            let m = random_4d([batch, cout, h, w], channels_last, Distribution::Normal(0.0, 1.0), device);
            let (o1, gx1, gw1) = run(true, &layer, &x, &m);
            let (o2, gx2, gw2) = run(false, &layer, &x, &m);
            let case = format!("{cin}->{cout} {h}x{w} channels_last {channels_last}");
            out.push((format!("{case}: output"), rel(o1, o2)));
            out.push((format!("{case}: x grad"), rel(gx1, gx2)));
            out.push((format!("{case}: weight grad"), rel(gw1, gw2)));
        }
        out
    }

    /// On the CPU the node runs Burn's convolution forward and Burn's two backward functions:
    /// output and both gradients equal burn-autodiff's own convolution node to the bit, which
    /// checks the node's wiring (checkpointed x and weight, each gradient to its parent).
    #[test]
    fn the_node_gives_burns_convolution_gradients() {
        for (name, d) in differences(2, &Device::flex().autodiff()) {
            assert_eq!(d, 0.0, "{name} differs by {d}");
        }
    }

    /// Only 1x1, stride-1, unpadded, ungrouped, bias-free convolutions take the node: a 3x3 (or
    /// strided) layer through [`pointwise_conv2d`] with the kernels selected is
    /// `Conv2d::forward` (same values; the node would reject its weight shape). The choice is
    /// the calling thread's, and the flag parses.
    #[test]
    fn only_pointwise_layers_take_the_node_and_the_choice_is_this_threads() {
        let device = Device::flex().autodiff();
        let x = random_4d([2, 4, 5, 5], false, Distribution::Normal(0.0, 1.0), &device);
        for layer in [conv([4, 6], 3, [1, 1], 1, Padding::Symmetric, &device), conv([4, 6], 1, [2, 1], 1, Padding::Symmetric, &device)] {
            set_pointwise_impl(PointwiseImpl::Kernels);
            let ours = pointwise_conv2d(&layer, x.clone());
            set_pointwise_impl(PointwiseImpl::Burn);
            assert_eq!(ours.into_data(), layer.forward(x.clone()).into_data());
        }
        set_pointwise_impl(PointwiseImpl::Kernels);
        assert_eq!(std::thread::spawn(pointwise_impl).join().unwrap(), PointwiseImpl::Burn);
        set_pointwise_impl(PointwiseImpl::Burn);
        assert_eq!("kernels".parse::<PointwiseImpl>(), Ok(PointwiseImpl::Kernels));
        assert!("fast".parse::<PointwiseImpl>().unwrap_err().contains("expected burn or kernels"));
    }

    /// The weight gradient's parts: about 1,024 cubes, at least 256 rows a part (a multiple of
    /// the stage depth 16), the parts cover every row and none is empty. 224 px / batch 128:
    /// 1,605,632 rows of the 16 → 96 expansion (2 tiles: 512 parts); 7 px: 6,272 rows of the
    /// 160 → 960 expansion (40 tiles of 128 × 32: 26 parts asked, 24 allowed by 256 rows a
    /// part, 24 of 272).
    #[cfg(feature = "wgpu")]
    #[test]
    fn partition_covers_the_rows() {
        for (rows, tiles) in [(1, 1), (255, 1), (257, 1), (6_272, 40), (1_605_632, 2), (100_352, 60), (1_000_003, 1)] {
            let (parts, len) = cube::partition(rows, tiles);
            assert!(parts * len >= rows && (parts - 1) * len < rows, "{rows}/{tiles}: {parts} × {len}");
            assert_eq!(len % 16, 0);
            assert!(parts <= 65_535 && (parts == 1 || len >= 256), "{rows}/{tiles}: {parts} × {len}");
        }
        assert_eq!(cube::partition(1_605_632, 2), (512, 3_136));
        assert_eq!(cube::partition(6_272, 40), (24, 272));
        // Tall outputs by their column count; small ones by the least padded area (160 → 960's
        // weight gradient, 960 × 160: 128 × 32 tiles pad it to 1,024 × 160, 64 × 64 ones to
        // 960 × 192; 32 → 16's, 16 × 32: four shapes pad it to 4,096, the square one is kept).
        assert_eq!(cube::unit_grid(1_605_632, 16), (4, 64));
        assert_eq!(cube::unit_grid(100_352, 24), (8, 32));
        assert_eq!(cube::unit_grid(6_272, 33), (16, 16));
        assert_eq!(cube::unit_grid(960, 160), (8, 32));
        assert_eq!(cube::unit_grid(16, 32), (16, 16));
        assert_eq!(cube::unit_grid(1_280, 16), (4, 64));
    }

    /// The kernels' output and gradients against Burn's convolution and its two backward
    /// functions on the same backend, for every case of [`CASES`] at batch `batch`, each
    /// quantity's largest difference relative to the reference's largest magnitude (at least
    /// 1). Called on the backend itself rather than through autodiff so that the output's
    /// gradient can be channels-last, as a batch norm's input gradient is in the network (an
    /// autodiff test's `sum(y · m)` hands the node a contiguous gradient, which the kernels
    /// leave to Burn).
    #[cfg(feature = "wgpu")]
    fn backend_differences(batch: usize, device: &Device) -> Vec<(String, f32)> {
        use burn::backend::ops::ModuleOps;
        fn rel(a: FloatTensor<Dispatch>, b: FloatTensor<Dispatch>) -> f32 {
            crate::testing::relative_diff(Tensor::<4>::from_dispatch(a), Tensor::<4>::from_dispatch(b))
        }
        let mut out = Vec::new();
        for (cin, cout, h, w, channels_last) in CASES {
            let weight = conv([cin, cout], 1, [1, 1], 1, Padding::Symmetric, device).weight.val().into_dispatch();
            let x = random_4d([batch, cin, h, w], channels_last, Distribution::Normal(0.3, 1.0), device).into_dispatch();
            let dy = random_4d([batch, cout, h, w], channels_last, Distribution::Normal(0.0, 1.0), device).into_dispatch();
            let case = format!("{cin}->{cout} {h}x{w} channels_last {channels_last}");
            let ours = <Dispatch as PointwiseConv>::pointwise_forward(x.clone(), weight.clone());
            let burns = <Dispatch as ModuleOps<Dispatch>>::conv2d(x.clone(), weight.clone(), None, options());
            out.push((format!("{case}: output"), rel(ours, burns)));
            let (dx1, dw1) = <Dispatch as PointwiseConv>::pointwise_backward(x.clone(), weight.clone(), dy.clone());
            let (dx2, dw2) = burns_backward::<Dispatch>(x, weight, dy);
            out.push((format!("{case}: x grad"), rel(dx1, dx2)));
            out.push((format!("{case}: weight grad"), rel(dw1, dw2)));
        }
        out
    }

    /// The GPU kernels (wgpu; any adapter, e.g. Mesa's lavapipe on a CPU) against burn-cubecl's
    /// own convolution and its backward on the same device ([`backend_differences`]), at batch
    /// 2 and batch 40 (9 · 7 · 40 = 2,520 rows: several row tiles, and the weight gradient in
    /// parts — ⌊2,520 / 256⌋ = 9 parts of 288 rows for its one tile — so the parts' sum runs).
    /// Runs with `cargo test -p derma-model --features wgpu` (not in the CPU-only test build).
    #[cfg(feature = "wgpu")]
    #[test]
    fn gpu_kernels_match_burns_convolution() {
        let device = Device::wgpu(Default::default());
        for batch in [2, 40] {
            for (name, d) in backend_differences(batch, &device) {
                assert!(d < 1e-5, "batch {batch}, {name} differs by {d} (relative)");
            }
        }
    }
}
