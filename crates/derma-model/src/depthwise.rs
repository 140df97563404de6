//! The depthwise convolution of MobileNetV2's blocks as one autodiff node, computed by this
//! module's own kernels on the CubeCL (wgpu) backend: one forward, two or three backward.
//!
//! Burn 0.22 differentiates a depthwise convolution (`groups` = channels, one filter each)
//! with burn-cubecl's general machinery: the input gradient as a transposed convolution, the
//! weight gradient as a *convolution of the input by the output gradient* (burn-cubecl's
//! `conv_weight_grad_depthwise`: the batch folded into the channels by a layout copy, then a
//! grouped direct convolution whose kernel is the whole output map). Every other weight-gradient
//! candidate of its autotune declines `groups != 1`, so that direct convolution always runs: one
//! unit per weight value (9 · channels of them) summing over `batch · h · w` products, a few
//! hundred units for a whole layer at 224 px (burn-cubecl's own note on that shape for a dense
//! convolution: ~20 ms where a matmul takes 1.5 ms). Its forward routine copies the weight into
//! `[kh, kw, channels]` order on every call, and the backward pass packs its operands: on
//! lavapipe (28 px, batch 8) ~67 of a training step's 110 layout copies came from the depthwise
//! layers (docs/performance.md, "Fifth session").
//!
//! Here, on CubeCL ([`DepthwiseConv`]; tensors read through their strides, outputs written in
//! the input's layout, the units laid out for channels-last tensors, which burn-cubecl's
//! convolutions and the batch-norm kernels produce):
//! - forward and dx, one kernel in two directions: one unit per output value summing its
//!   `kh·kw` taps, or one unit per input value summing the output-gradient values its taps
//!   reach;
//! - dw: cubes of 32 channels × 8 rows of units, each unit summing its channel's `kh·kw` products
//!   over a slice of the `batch · h_out · w_out` positions (adjacent units read adjacent
//!   channels, adjacent in channels-last memory), the rows added in shared memory; with more
//!   than one slice (part) per channel, a last kernel adds the parts.
//!
//! On Flex (the CPU backend) the node runs Burn's own `conv2d`, `conv2d_x_backward` and
//! `conv2d_weight_backward`, so training there is unchanged to the bit; [`set_depthwise_impl`]
//! selects Burn's whole path on the GPU too (a benchmark baseline).

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::ConvOptions;

/// A depthwise 2-d convolution (`[batch, channels, h, w]` by `[channels, 1, kh, kw]`, no bias)
/// and its gradients.
#[backend_extension(
    Flex,
    Cube: cfg(feature = "wgpu"),
    Fusion: cfg(feature = "wgpu"),
    Autodiff
)]
pub trait DepthwiseConv: Backend {
    /// The convolution itself (`options.groups` = channels): the backend's own `conv2d` unless
    /// the backend has its kernel.
    #[fusion(meta = forward_meta)]
    fn depthwise_forward(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options)
    }

    /// The gradients of [`Self::depthwise_forward`] given the output's gradient `grad`:
    /// `(dx [batch, channels, h, w], dw [channels, 1, kh, kw])`; Burn's own unless the backend
    /// has its kernels.
    #[fusion(meta = backward_meta)]
    fn depthwise_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        burns_backward::<Self>(x, weight, grad, options)
    }
}

/// Burn's own gradients of a convolution (what burn-autodiff's `conv2d` node computes).
fn burns_backward<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    grad: FloatTensor<B>,
    options: ConvOptions<2>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let x_grad = B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
    (x_grad, B::conv2d_weight_backward(x, weight, grad, options))
}

#[cfg(feature = "wgpu")]
use burn::backend::fusion::custom::TensorSpec;

/// The output's `[batch, channels, h_out, w_out]` for an input `[batch, channels, h, w]` and a
/// weight `[channels, 1, kh, kw]`: PyTorch's `(size + pad_begin + pad_end − dilation · (k − 1)
/// − 1) / stride + 1` per axis.
#[cfg(feature = "wgpu")]
fn output_shape(x: &Shape, weight: &Shape, options: &ConvOptions<2>) -> [usize; 4] {
    let out = |a: usize| {
        let (begin, end) = options.padding[a];
        (x[2 + a] + begin + end - options.dilation[a] * (weight[2 + a] - 1) - 1) / options.stride[a] + 1
    };
    [x[0], weight[0], out(0), out(1)]
}

/// Output metadata of the forward pass, for burn-fusion ([`output_shape`]).
#[cfg(feature = "wgpu")]
fn forward_meta(x: &TensorSpec, weight: &TensorSpec, options: &ConvOptions<2>) -> TensorSpec {
    TensorSpec::new(Shape::new(output_shape(&x.shape, &weight.shape, options)), x.dtype)
}

/// Output metadata of the backward pass, for burn-fusion: dx like `x`, dw like `weight`.
#[cfg(feature = "wgpu")]
fn backward_meta(x: &TensorSpec, weight: &TensorSpec, _grad: &TensorSpec, _options: &ConvOptions<2>) -> (TensorSpec, TensorSpec) {
    (x.clone(), weight.clone())
}

impl DepthwiseConv for burn::backend::Flex {}

/// The backward pass of the node below: [`DepthwiseConv::depthwise_backward`].
#[derive(Debug)]
struct DepthwiseGradients;

impl<B: Backend + DepthwiseConv> crate::node::WeightedBackward<B> for DepthwiseGradients {
    type Options = ConvOptions<2>;

    fn gradients(x: FloatTensor<B>, weight: FloatTensor<B>, grad: FloatTensor<B>, options: ConvOptions<2>) -> (FloatTensor<B>, FloatTensor<B>) {
        B::depthwise_backward(x, weight, grad, options)
    }
}

/// The convolution as one autodiff node ([`crate::node::weighted`]): `x` and the weight are
/// checkpointed, and the backward pass is one call of [`DepthwiseConv::depthwise_backward`].
impl<B: Backend + DepthwiseConv, C: CheckpointStrategy> DepthwiseConv for Autodiff<B, C> {
    fn depthwise_forward(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        crate::node::weighted::<B, C, DepthwiseGradients>(x, weight, options, B::depthwise_forward)
    }

    /// Not differentiable itself (the forward node's backward calls the inner backend's):
    /// computed on the inner tensors, returned as constants.
    fn depthwise_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (x_grad, weight_grad) = B::depthwise_backward(x.into_primitive(), weight.into_primitive(), grad.into_primitive(), options);
        (<FloatTensor<Self>>::new(x_grad), <FloatTensor<Self>>::new(weight_grad))
    }
}

#[cfg(feature = "wgpu")]
// The kernels on CubeCL's backend, in depthwise/cube.rs.
mod cube;

crate::choice::implementation_choice! {
    /// Which implementation differentiates the depthwise convolutions.
    pub enum DepthwiseImpl ("depthwise implementation") {
        /// [`depthwise_conv2d`]'s node: Burn's forward, the backward kernels of this module (the
        /// default).
        Kernels = "kernels",
        /// Burn's `Conv2d::forward` and burn-autodiff's convolution backward (the benchmark's
        /// baseline).
        Burn = "burn",
    }
    default Kernels;
    static DEPTHWISE_IMPL;
    /// Selects the calling thread's depthwise-convolution implementation (the model runs on the
    /// thread that calls its `forward`).
    pub fn set_depthwise_impl;
    /// The calling thread's depthwise-convolution implementation ([`DepthwiseImpl::Kernels`]
    /// unless set).
    pub fn depthwise_impl;
}

/// `conv.forward(x)` for a depthwise `conv` (`groups` = input channels = output channels, no
/// bias), differentiated by [`DepthwiseConv::depthwise_backward`] unless the calling thread
/// selected [`DepthwiseImpl::Burn`]; any other convolution is `conv.forward(x)`. The padding is
/// the layer's own (`Same` resolved for this input, as `Conv2d::forward` does).
pub fn depthwise_conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, channels, h, w] = x.dims();
    let [out_channels, per_group, _, _] = conv.weight.shape().dims::<4>();
    let depthwise = conv.groups == channels && out_channels == channels && per_group == 1 && conv.bias.is_none();
    if !depthwise || depthwise_impl() == DepthwiseImpl::Burn {
        return conv.forward(x);
    }
    let (rows, cols) = padding_pairs(&conv.padding, [h, w], conv.kernel_size, conv.stride);
    let options = ConvOptions::new_with_padding(conv.stride, [rows, cols], conv.dilation, conv.groups);
    let output = <Dispatch as DepthwiseConv>::depthwise_forward(x.into_dispatch(), conv.weight.val().into_dispatch(), options);
    Tensor::from_dispatch(output)
}

/// `((top, bottom), (left, right))` padding of a `[h, w]` input: burn-nn's
/// `PaddingConfig2d::calculate_padding_2d_pairs` (crate-private there), whose `Same` pads
/// `(out − 1)·stride + kernel − size` in all, `out = ⌈size / stride⌉`, the odd one at the end.
fn padding_pairs(padding: &PaddingConfig2d, size: [usize; 2], kernel: [usize; 2], stride: [usize; 2]) -> ((usize, usize), (usize, usize)) {
    let same = |a: usize| {
        let out = size[a].div_ceil(stride[a]);
        let total = if out > 0 { ((out - 1) * stride[a] + kernel[a]).saturating_sub(size[a]) } else { 0 };
        (total / 2, total - total / 2)
    };
    match *padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Same => (same(0), same(1)),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{Padding, conv};
    use burn::tensor::Distribution;

    use crate::testing::random_4d;

    /// `[batch, channels, h, w]` ~ N(0.3, 1), contiguous or channels-last.
    fn input(dims: [usize; 4], channels_last: bool, device: &Device) -> Tensor<4> {
        random_4d(dims, channels_last, Distribution::Normal(0.3, 1.0), device)
    }

    /// Output and the gradients with respect to x and the weight of `sum(conv(x) · m)`, through
    /// [`depthwise_conv2d`] (`ours`) or Burn's `Conv2d::forward` differentiated by
    /// burn-autodiff's convolution node.
    fn run(ours: bool, layer: &Conv2d, x: &Tensor<4>, m: &Tensor<4>) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let x = x.clone().detach().require_grad();
        let output = if ours { depthwise_conv2d(layer, x.clone()) } else { layer.forward(x.clone()) };
        let grads = (output.clone() * m.clone()).sum().backward();
        let gx = x.grad(&grads).expect("x grad");
        let gw = layer.weight.val().grad(&grads).expect("weight grad");
        (output.inner(), gx, gw)
    }

    /// The layers of a test: `(channels, h, w, kernel, stride, dilation, padding, channels_last)`
    /// over MobileNetV2's shapes (3x3, stride 1 and 2, TF SAME's asymmetric padding, the
    /// dilated layers of a reduced output stride), odd sizes, and the 2x2 and 1x1 maps of the
    /// last stages at 28 px (where every tap but the centre reads padding).
    const CASES: [(usize, usize, usize, usize, usize, usize, Padding, bool); 10] = [
        (5, 7, 6, 3, 1, 1, Padding::Symmetric, false),
        (5, 7, 6, 3, 2, 1, Padding::Symmetric, true),
        (4, 8, 8, 3, 2, 1, Padding::TfSame, true),
        (4, 9, 7, 3, 2, 1, Padding::TfSame, false),
        (6, 9, 9, 3, 1, 2, Padding::Symmetric, true),
        (3, 5, 5, 5, 1, 1, Padding::Symmetric, false),
        (40, 3, 3, 3, 2, 1, Padding::Symmetric, true),
        (36, 2, 2, 3, 2, 1, Padding::Symmetric, true),
        (36, 2, 2, 3, 1, 1, Padding::Symmetric, true),
        (33, 1, 1, 3, 1, 1, Padding::Symmetric, false),
    ];

    /// [`run`] both ways for every case of [`CASES`] at batch `batch`, each quantity's largest
    /// difference relative to the reference's largest magnitude (at least 1).
    fn differences(batch: usize, device: &Device) -> Vec<(String, f32)> {
        use crate::testing::relative_diff as rel;
        let mut out = Vec::new();
        for (c, h, w, k, stride, dilation, padding, channels_last) in CASES {
            let layer = conv([c, c], k, [stride, dilation], c, padding, device);
            let x = input([batch, c, h, w], channels_last, device);
            let m = Tensor::<4>::random(layer.forward(x.clone()).dims(), Distribution::Normal(0.0, 1.0), device);
            let (o1, gx1, gw1) = run(true, &layer, &x, &m);
            let (o2, gx2, gw2) = run(false, &layer, &x, &m);
            let case = format!("{c}x{h}x{w} k{k} s{stride} d{dilation} {padding:?} channels_last {channels_last}");
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

    /// Only the input's gradient tracked (the weight a constant, as in a frozen backbone with a
    /// trainable stem before it): the node still gives Burn's dx, and no weight gradient.
    #[test]
    fn an_untracked_weight_gets_no_gradient() {
        let device = Device::flex().autodiff();
        let layer = conv([4, 4], 3, [1, 1], 4, Padding::Symmetric, &device).no_grad();
        let x = input([2, 4, 5, 5], false, &device).require_grad();
        let ours = depthwise_conv2d(&layer, x.clone()).sum().backward();
        let burns = layer.forward(x.clone()).sum().backward();
        assert!(layer.weight.val().grad(&ours).is_none());
        assert_eq!(x.grad(&ours).unwrap().into_data(), x.grad(&burns).unwrap().into_data());
    }

    /// By hand: one channel, x = 1..=9 as 3x3, the 3x3 filter of ones, padding 1, stride 2:
    /// outputs at (0,0), (0,2), (2,0), (2,2) are the sums of x over the window clipped to the
    /// image: 1+2+4+5 = 12, 2+3+5+6 = 16, 4+5+7+8 = 24, 5+6+8+9 = 28. For `sum(output)` dx[i]
    /// counts the windows holding x[i] (corner 1, edge 2, centre 4) and dw[ky, kx] is the sum of
    /// the x values tap (ky, kx) reads over the four outputs (PyTorch gives the same with
    /// `F.conv2d(x, w, stride=2, padding=1, groups=1)` on this single channel).
    #[test]
    fn one_channel_by_hand() {
        let device = Device::flex().autodiff();
        let mut layer = conv([1, 1], 3, [2, 1], 1, Padding::Symmetric, &device);
        layer.weight = burn::module::Param::from_tensor(Tensor::<4>::ones([1, 1, 3, 3], &device));
        let x = Tensor::<1, Int>::arange(1..10, &device).float().reshape([1, 1, 3, 3]).require_grad();
        let output = depthwise_conv2d(&layer, x.clone());
        assert_eq!(output.clone().into_data().try_into_vec::<f32>().unwrap(), vec![12.0, 16.0, 24.0, 28.0]);
        let grads = output.sum().backward();
        assert_eq!(x.grad(&grads).unwrap().into_data().try_into_vec::<f32>().unwrap(), vec![1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]);
        // tap (ky, kx) reads x at (2·oy + ky − 1, 2·ox + kx − 1) for oy, ox in {0, 1}.
        let xv = |r: i32, c: i32| if (0..3).contains(&r) && (0..3).contains(&c) { (r * 3 + c + 1) as f32 } else { 0.0 };
        let want: Vec<f32> = (0..3)
            .flat_map(|ky| (0..3).map(move |kx| (ky, kx)))
            .map(|(ky, kx)| (0..2).flat_map(|oy| (0..2).map(move |ox| (oy, ox))).map(|(oy, ox)| xv(2 * oy + ky - 1, 2 * ox + kx - 1)).sum())
            .collect();
        assert_eq!(layer.weight.val().grad(&grads).unwrap().into_data().try_into_vec::<f32>().unwrap(), want);
    }

    /// `set_depthwise_impl(Burn)` routes [`depthwise_conv2d`] to `Conv2d::forward` on the calling
    /// thread only.
    #[test]
    fn the_burn_choice_is_this_threads_only() {
        set_depthwise_impl(DepthwiseImpl::Burn);
        assert_eq!(depthwise_impl(), DepthwiseImpl::Burn);
        assert_eq!(std::thread::spawn(depthwise_impl).join().unwrap(), DepthwiseImpl::Kernels);
        set_depthwise_impl(DepthwiseImpl::Kernels);
        assert_eq!("burn".parse::<DepthwiseImpl>(), Ok(DepthwiseImpl::Burn));
        assert!("fast".parse::<DepthwiseImpl>().unwrap_err().contains("expected kernels or burn"));
    }

    /// The partition of a channel's positions: one part up to 128 positions (8 rows × 16),
    /// never more than 1,024 parts, the parts cover every position and none is empty (524,289
    /// and 600,000: where 1,024 parts of ⌈n / 1,024⌉ would leave empty ones).
    #[cfg(feature = "wgpu")]
    #[test]
    fn partition_covers_the_positions() {
        for positions in [1, 127, 128, 129, 50_176, 131_073, 524_289, 600_000, 1_605_632] {
            let (parts, len) = cube::partition(positions);
            assert!(parts * len >= positions && (parts - 1) * len < positions, "{positions}: {parts} × {len}");
            assert!(parts <= 1024);
        }
        assert_eq!(cube::partition(128), (1, 128));
        assert_eq!(cube::partition(50_176).0, 392);
    }

    /// The GPU kernels (wgpu; any adapter, e.g. Mesa's lavapipe on a CPU) against burn-cubecl's
    /// own convolution backward on the same device, for every case of [`CASES`] at batch 2
    /// (`batch · h_out · w_out` up to 2·9·9 = 162 positions: one or two parts a channel) and
    /// batch 24 (from 24·2·2 = 96 positions, one part, to 24·9·9 = 1,944, 16 parts of 122, the
    /// last 114: the parts' sum runs, and the rows' slices of 16 leave the last row short).
    /// Runs with `cargo test -p derma-model --features wgpu` (not in the CPU-only test build).
    #[cfg(feature = "wgpu")]
    #[test]
    fn gpu_kernels_match_burns_convolution_backward() {
        let device = Device::wgpu(Default::default()).autodiff();
        for batch in [2, 24] {
            for (name, d) in differences(batch, &device) {
                assert!(d < 1e-5, "batch {batch}, {name} differs by {d} (relative)");
            }
        }
    }
    /// More output values than a grid along x alone holds (65,535 cubes of 256 units on Vulkan:
    /// 16.8 M; the H100 refused the first depthwise layer at 28 px and batch 1,024, 19.3 M
    /// values, before the grid was spread, 2026-11-27): one 4,100 x 4,100 channel through the
    /// filter that is 1 at the centre tap and 0 elsewhere, so the output and the input's
    /// gradient of `sum(output · m)` are x and m exactly, every value the last included.
    #[cfg(feature = "wgpu")]
    #[test]
    fn gpu_kernels_cover_more_values_than_one_grid_axis_holds() {
        let device = Device::wgpu(Default::default()).autodiff();
        let side = 4_100; // 16,810,000 values > 65,535 · 256
        let mut layer = conv([1, 1], 3, [1, 1], 1, Padding::Symmetric, &device);
        let centre: Vec<f32> = (0..9).map(|t| if t == 4 { 1.0 } else { 0.0 }).collect();
        layer.weight = burn::module::Param::from_tensor(Tensor::<1>::from_floats(centre.as_slice(), &device).reshape([1, 1, 3, 3]));
        let x = input([1, 1, side, side], false, &device).require_grad();
        let m = input([1, 1, side, side], false, &device);
        let output = depthwise_conv2d(&layer, x.clone());
        let grads = (output.clone() * m.clone()).sum().backward();
        let values = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().unwrap();
        let (out, xs) = (values(output.inner()), values(x.clone().inner()));
        let (gx, ms) = (values(x.grad(&grads).unwrap()), values(m.inner()));
        let wrong = |a: &[f32], b: &[f32]| a.iter().zip(b).filter(|(p, q)| p != q).count();
        assert_eq!(wrong(&out, &xs), 0, "output: last value {} for {}", out[out.len() - 1], xs[xs.len() - 1]);
        assert_eq!(wrong(&gx, &ms), 0, "x grad: last value {} for {}", gx[gx.len() - 1], ms[ms.len() - 1]);
    }
}
