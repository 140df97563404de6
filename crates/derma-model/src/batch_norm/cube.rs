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
