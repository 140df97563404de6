//! The kernels on CubeCL's backend (wgpu here). Tensors are read through their
//! strides (any layout); the units are laid out for channels-last tensors, what
//! burn-cubecl's convolutions and the batch-norm kernels produce.

use super::DepthwiseConv;
use crate::kernel::{elem, elementwise_grid, empty, empty_4d, empty_like, is_channels_last, supported};
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{CubeBackend, CubeTensor};
use burn::tensor::Shape;
use burn::tensor::ops::ConvOptions;
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::cubecl::{CubeCount, CubeDim};

/// Channels per cube of the weight-gradient kernels (units along x).
const CHANNELS: usize = 32;
/// Rows of units per cube of the weight-gradient kernels (along y), each a slice of the
/// positions.
const ROWS: usize = 8;
/// Positions each unit of the weight-gradient kernel sums at least (so a part holds
/// `ROWS` × this many), unless the parts would exceed [`MAX_PARTS`]. 64 until 2026-11-28:
/// on the H100 at 28 px / 256 the kernel took 145 µs a launch (15 % of a step's kernel time)
/// for inputs of at most 19 MB, with 98 cubes for the largest layer, too few to hide the
/// memory latency of each unit's serial loop.
const POSITIONS_PER_UNIT: usize = 16;
/// Most parts per channel: the parts' sums are added by one cube row per 8 parts.
const MAX_PARTS: usize = 1024;
/// Most taps (`kh · kw`) the kernels unroll; larger filters run Burn's backward.
const MAX_TAPS: usize = 49;

/// `position + pad − tap · dilation` as an output index along one axis, if it is one:
/// divisible by the stride and below `out`.
#[cube]
fn output_index(position: usize, tap: usize, stride: usize, pad: usize, dilation: usize, out: usize) -> (bool, usize) {
    let shifted = position + pad;
    let reach = tap * dilation;
    let numerator = select(shifted >= reach, shifted - reach, 0);
    let index = numerator / stride;
    (shifted >= reach && index * stride == numerator && index < out, index)
}

/// `index · stride + tap · dilation − pad` as an input index along one axis, if it is one
/// (not in the padding): below `size`.
#[cube]
fn input_index(index: usize, tap: usize, stride: usize, pad: usize, dilation: usize, size: usize) -> (bool, usize) {
    let padded = index * stride + tap * dilation;
    let position = select(padded >= pad, padded - pad, 0);
    (padded >= pad && position < size, position)
}

/// `(n, c, y, x)` of value `i` of a `[batch, channels, h, w]` tensor counted in memory
/// order: n, y, x, c when `channels_last`, else n, c, y, x.
#[cube]
fn position(i: usize, channels: usize, h: usize, w: usize, #[comptime] channels_last: bool) -> (usize, usize, usize, usize) {
    if channels_last {
        let r = i / channels;
        let r2 = r / w;
        (r2 / h, i % channels, r2 % h, r % w)
    } else {
        let r = i / w;
        let r2 = r / h;
        (r2 / channels, r2 % channels, r % h, i % w)
    }
}

/// Along one axis, the `source` index that tap `tap` pairs with `target` index `position` in
/// [`tap_sum_kernel`]: [`output_index`] when `transposed`, else [`input_index`].
#[cube]
#[allow(clippy::too_many_arguments)]
fn source_index(
    position: usize,
    tap: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    size: usize,
    #[comptime] transposed: bool,
) -> (bool, usize) {
    if transposed {
        output_index(position, tap, stride, pad, dilation, size)
    } else {
        input_index(position, tap, stride, pad, dilation, size)
    }
}

/// The forward pass and the input gradient, which are the same tap sum in two directions:
/// one unit per value of `target` (in its memory order: n, y, x, c with `channels_last`,
/// else n, c, y, x), `target[n, c, p, q] = Σ source[n, c, p', q'] · w[c, 0, ky, kx]` over the
/// taps (ky, kx) whose `source` position (p', q') exists.
/// - Forward (`transposed` false): `source` is x, `target` y; (p', q') = the input position
///   tap (ky, kx) of output (p, q) reads, unless it is padding ([`input_index`]).
/// - Input gradient (`transposed`): `source` is dy, `target` dx; (p', q') = the output whose
///   tap (ky, kx) reads input (p, q), if there is one ([`output_index`]).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn tap_sum_kernel<F: Float>(
    source: &Tensor<F>,
    weight: &Tensor<F>,
    target: &mut Tensor<F>,
    geometry: Sequence<usize>,
    #[comptime] kernel_h: usize,
    #[comptime] kernel_w: usize,
    #[comptime] channels_last: bool,
    #[comptime] transposed: bool,
    #[define(F)] _dtype: ElemType,
) {
    let (channels, h, w) = (target.shape(1), target.shape(2), target.shape(3));
    let i = ABSOLUTE_POS;
    if i >= target.shape(0) * channels * h * w {
        terminate!();
    }
    let (n, c, p, q) = position(i, channels, h, w, channels_last);
    let (source_h, source_w) = (source.shape(2), source.shape(3));
    let base = n * source.stride(0) + c * source.stride(1);
    let filter = c * weight.stride(0);
    let mut acc = F::new(0.0);
    #[unroll]
    for ky in 0..kernel_h {
        let (row_hit, sp) = source_index(p, ky, geometry[0], geometry[1], geometry[2], source_h, transposed);
        if row_hit {
            #[unroll]
            for kx in 0..kernel_w {
                let (col_hit, sq) = source_index(q, kx, geometry[3], geometry[4], geometry[5], source_w, transposed);
                if col_hit {
                    acc += source[base + sp * source.stride(2) + sq * source.stride(3)]
                        * weight[filter + ky * weight.stride(2) + kx * weight.stride(3)];
                }
            }
        }
    }
    let at = n * target.stride(0) + c * target.stride(1) + p * target.stride(2) + q * target.stride(3);
    target[at] = acc;
}

/// dw, per part: `partials[part, c · taps + k] = Σ dy[n, c, oy, ox] · x[n, c, iy, ix]` over
/// part `part`'s positions (n, oy, ox) (`part_len` of the `batch · h_out · w_out`), (iy, ix)
/// the input position of tap k. A cube covers 32 channels (x) and `ROWS` consecutive slices
/// of the part (y), each row walking its slice in order (the position decoded once, then
/// carried: no division per position); the rows are added in shared memory. With one part
/// `partials` is dw itself (`[channels, 1, kh, kw]`, contiguous).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn weight_grad_kernel<F: Float>(
    x: &Tensor<F>,
    grad: &Tensor<F>,
    partials: &mut Tensor<F>,
    part_len: usize,
    geometry: Sequence<usize>,
    #[comptime] kernel_h: usize,
    #[comptime] kernel_w: usize,
    #[define(F)] _dtype: ElemType,
) {
    let taps = comptime!(kernel_h * kernel_w);
    let (tx, ty) = (UNIT_POS_X as usize, UNIT_POS_Y as usize);
    let c = CUBE_POS_X as usize * CHANNELS + tx;
    let part = CUBE_POS_Y as usize;
    let (channels, h, w) = (x.shape(1), x.shape(2), x.shape(3));
    let (out_h, out_w) = (grad.shape(2), grad.shape(3));
    let positions = grad.shape(0) * out_h * out_w;

    let mut acc = Array::<F>::new(taps);
    #[unroll]
    for k in 0..taps {
        acc[k] = F::new(0.0);
    }
    let part_start = part * part_len;
    let part_end = select(part_start + part_len < positions, part_start + part_len, positions);
    let slice = part_len.div_ceil(ROWS);
    let first = part_start + ty * slice;
    let end = select(first + slice < part_end, first + slice, part_end);
    if c < channels && first < end {
        let mut p = first;
        let mut ox = p % out_w;
        let r = p / out_w;
        let mut oy = r % out_h;
        let mut n = r / out_h;
        while p < end {
            let g = grad[n * grad.stride(0) + c * grad.stride(1) + oy * grad.stride(2) + ox * grad.stride(3)];
            let base = n * x.stride(0) + c * x.stride(1);
            #[unroll]
            for ky in 0..kernel_h {
                let (row_hit, iy) = input_index(oy, ky, geometry[0], geometry[1], geometry[2], h);
                if row_hit {
                    #[unroll]
                    for kx in 0..kernel_w {
                        let (col_hit, ix) = input_index(ox, kx, geometry[3], geometry[4], geometry[5], w);
                        if col_hit {
                            acc[ky * kernel_w + kx] += g * x[base + iy * x.stride(2) + ix * x.stride(3)];
                        }
                    }
                }
            }
            p += 1;
            ox += 1;
            if ox == out_w {
                ox = 0;
                oy += 1;
                if oy == out_h {
                    oy = 0;
                    n += 1;
                }
            }
        }
    }

    // The rows' sums, added by row 0.
    let mut shared = Shared::<[F]>::new_slice(comptime!(taps * ROWS * CHANNELS));
    #[unroll]
    for k in 0..taps {
        shared[(k * ROWS + ty) * CHANNELS + tx] = acc[k];
    }
    sync_cube();
    if ty == 0 && c < channels {
        #[unroll]
        for k in 0..taps {
            let mut sum = F::new(0.0);
            #[unroll]
            for row in 0..ROWS {
                sum += shared[(k * ROWS + row) * CHANNELS + tx];
            }
            partials[(part * channels + c) * taps + k] = sum;
        }
    }
}

/// dw from the parts: `weight_grad[j] = Σ_part partials[part, j]`, a cube per 32 values
/// (x) with `ROWS` rows taking every `ROWS`-th part (y), added in shared memory.
#[cube(launch)]
fn sum_parts_kernel<F: Float>(partials: &Tensor<F>, weight_grad: &mut Tensor<F>, parts: usize, #[define(F)] _dtype: ElemType) {
    let (tx, ty) = (UNIT_POS_X as usize, UNIT_POS_Y as usize);
    let values = weight_grad.len();
    let j = CUBE_POS_X as usize * CHANNELS + tx;
    let mut acc = F::new(0.0);
    if j < values {
        let mut part = ty;
        while part < parts {
            acc += partials[part * values + j];
            part += ROWS;
        }
    }
    let mut shared = Shared::<[F]>::new_slice(comptime!(ROWS * CHANNELS));
    shared[ty * CHANNELS + tx] = acc;
    sync_cube();
    if ty == 0 && j < values {
        let mut sum = F::new(0.0);
        #[unroll]
        for row in 0..ROWS {
            sum += shared[row * CHANNELS + tx];
        }
        weight_grad[j] = sum;
    }
}

/// The parts of a channel's `positions` and the positions in each: about
/// [`POSITIONS_PER_UNIT`] per unit, at most [`MAX_PARTS`] parts, none empty (the count
/// recomputed from the part length: 524,289 positions in 1,024 parts of 513 would leave the
/// last empty).
pub(super) fn partition(positions: usize) -> (usize, usize) {
    let parts = positions.div_ceil(ROWS * POSITIONS_PER_UNIT).clamp(1, MAX_PARTS);
    let len = positions.div_ceil(parts).max(1);
    (positions.div_ceil(len).max(1), len)
}

/// Whether the kernels take this convolution: float32, one filter per input channel
/// (`groups` = channels, weight `[channels, 1, kh, kw]`), at most [`MAX_TAPS`] taps.
fn kernels_apply(x: &CubeTensor, weight: &CubeTensor, options: &ConvOptions<2>) -> bool {
    let (xs, ws) = (x.meta.shape(), weight.meta.shape());
    supported(&[x, weight]) && options.groups == xs[1] && ws[0] == xs[1] && ws[1] == 1 && ws[2] * ws[3] <= MAX_TAPS
}

/// The kernels' `geometry`: stride, leading padding and dilation of the rows, then of the
/// columns.
fn geometry(options: &ConvOptions<2>) -> SequenceArg<usize> {
    let mut geometry = SequenceArg::new();
    for a in 0..2 {
        geometry.push(options.stride[a]);
        geometry.push(options.padding[a].0);
        geometry.push(options.dilation[a]);
    }
    geometry
}

/// Launches [`tap_sum_kernel`] from `source` into `target` (allocated by the caller), one
/// unit per value of `target`.
fn tap_sum(source: CubeTensor, weight: &CubeTensor, target: &CubeTensor, options: &ConvOptions<2>, transposed: bool) {
    let values = target.meta.shape().num_elements();
    let (cubes, units) = elementwise_grid(target, values);
    tap_sum_kernel::launch(
        &source.client.clone(),
        cubes,
        units,
        source.into_tensor_arg(),
        weight.clone().into_tensor_arg(),
        target.clone().into_tensor_arg(),
        geometry(options),
        weight.meta.shape()[2],
        weight.meta.shape()[3],
        is_channels_last(target),
        transposed,
        elem(),
    );
}

impl DepthwiseConv for CubeBackend {
    /// One kernel, one unit per output value, the output in the input's layout. burn-cubecl's
    /// own depthwise routine copies the weight into `[kh, kw, channels]` order on every call
    /// (a layout copy per layer, seen on lavapipe), and its direct convolution copies any
    /// weight whose NHWC view's last stride is not 1.
    fn depthwise_forward(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        if !kernels_apply(&x, &weight, &options) {
            return <Self as burn::backend::ops::ModuleOps<Self>>::conv2d(x, weight, None, options);
        }
        let [x, weight] = [x, weight].map(burn_cubecl::kernel::untile);
        let output = empty_4d(&x, super::output_shape(x.meta.shape(), weight.meta.shape(), &options), is_channels_last(&x));
        tap_sum(x, &weight, &output, &options, false);
        output
    }

    fn depthwise_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !(kernels_apply(&x, &weight, &options) && supported(&[&grad])) {
            return super::burns_backward::<Self>(x, weight, grad, options);
        }
        let [x, weight, grad] = [x, weight, grad].map(burn_cubecl::kernel::untile);
        let client = x.client.clone();
        let (kernel_h, kernel_w) = (weight.meta.shape()[2], weight.meta.shape()[3]);
        let channels = x.meta.shape()[1];

        let x_grad = empty_like(&x);
        tap_sum(grad.clone(), &weight, &x_grad, &options, true);

        let g = grad.meta.shape();
        let (parts, part_len) = partition(g[0] * g[2] * g[3]);
        let weight_grad = empty(&x, weight.meta.shape().clone());
        let partials = if parts == 1 { weight_grad.clone() } else { empty(&x, Shape::new([parts, channels * kernel_h * kernel_w])) };
        weight_grad_kernel::launch(
            &client,
            CubeCount::Static(channels.div_ceil(CHANNELS) as u32, parts as u32, 1),
            CubeDim::new_2d(CHANNELS as u32, ROWS as u32),
            x.into_tensor_arg(),
            grad.into_tensor_arg(),
            partials.clone().into_tensor_arg(),
            part_len,
            geometry(&options),
            kernel_h,
            kernel_w,
            elem(),
        );
        if parts > 1 {
            sum_parts_kernel::launch(
                &client,
                CubeCount::Static((channels * kernel_h * kernel_w).div_ceil(CHANNELS) as u32, 1, 1),
                CubeDim::new_2d(CHANNELS as u32, ROWS as u32),
                partials.into_tensor_arg(),
                weight_grad.clone().into_tensor_arg(),
                parts,
                elem(),
            );
        }
        (x_grad, weight_grad)
    }
}
