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
mod cube {
    //! The kernels on CubeCL's backend (wgpu here).

    use super::PointwiseConv;
    use crate::kernel::{elem, elementwise_grid, empty, empty_4d, supported};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::wgpu::{CubeBackend, CubeTensor};
    use burn::tensor::Shape;
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::*;
    use burn_cubecl::cubecl::{CubeCount, CubeDim};

    /// Depth of a stage: values of the summed dimension staged in shared memory at once.
    const DEPTH: usize = 16;
    /// Units per cube (`UX · UY`), each computing 4 × 4 values of the output tile.
    const UNITS: usize = 256;
    /// Values per unit along each side of the tile.
    const PER_UNIT: usize = 4;
    /// Cubes the weight gradient aims for (its tiles times the parts of the rows): enough to
    /// fill a large GPU (132 streaming multiprocessors on an H100 / H200) several times over.
    const TARGET_CUBES: usize = 1024;
    /// Fewest rows a part of the weight gradient sums (so a cube's loop amortises its start).
    const MIN_PART_ROWS: usize = 256;
    /// Most cubes along one grid axis on Vulkan.
    const MAX_GRID: usize = 65_535;

    /// `c[part][i, j] = Σ_k a[i, k] · b[k, j]` over part `part`'s range of k, on flat buffers
    /// with strides: `a[i, k]` at `i · s[0] + k · s[1]`, `b[k, j]` at `k · s[2] + j · s[3]`,
    /// `c[part][i, j]` at `part · s[4] + i · s[5] + j · s[6]`; `dims` = `[m, n, k, k per part]`.
    /// A cube computes the `4 · uy` × `4 · ux` tile at (`CUBE_POS_Y`, `CUBE_POS_X`) of part
    /// `CUBE_POS_Z`; unit (x, y) the values at rows `y + uy · r` and columns `x + ux · c`
    /// (r, c < 4), so a row of units writes consecutive columns. Each stage loads [`DEPTH`]
    /// values of k of both operands into shared memory, the units mapped along whichever axis
    /// is contiguous in memory (`a_k_contiguous`, `b_j_contiguous`), so that adjacent units
    /// read adjacent addresses.
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    fn matmul_kernel<F: Float>(
        a: &Tensor<F>,
        b: &Tensor<F>,
        c: &mut Tensor<F>,
        dims: Sequence<usize>,
        s: Sequence<usize>,
        #[comptime] ux: usize,
        #[comptime] uy: usize,
        #[comptime] a_k_contiguous: bool,
        #[comptime] b_j_contiguous: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let tile_m = comptime!(uy * PER_UNIT);
        let tile_n = comptime!(ux * PER_UNIT);
        // Shared rows one value longer than a tile side: a stage stored along k (the layout
        // where k is contiguous in memory, so adjacent units load adjacent k) then hits 16
        // different banks instead of one (tile sides are multiples of 16).
        let row_a = comptime!(uy * PER_UNIT + 1);
        let row_b = comptime!(ux * PER_UNIT + 1);
        let (m, n, k_len, k_part) = (dims[0], dims[1], dims[2], dims[3]);
        let (tx, ty) = (UNIT_POS_X as usize, UNIT_POS_Y as usize);
        let unit = ty * ux + tx;
        let i0 = CUBE_POS_Y as usize * tile_m;
        let j0 = CUBE_POS_X as usize * tile_n;
        let part = CUBE_POS_Z as usize;
        let k_begin = part * k_part;
        let k_stop = select(k_begin + k_part < k_len, k_begin + k_part, k_len);

        let mut shared_a = Shared::<[F]>::new_slice(comptime!(DEPTH * (uy * PER_UNIT + 1)));
        let mut shared_b = Shared::<[F]>::new_slice(comptime!(DEPTH * (ux * PER_UNIT + 1)));
        let mut acc = Array::<F>::new(comptime!(PER_UNIT * PER_UNIT));
        let mut av = Array::<F>::new(PER_UNIT);
        let mut bv = Array::<F>::new(PER_UNIT);
        #[unroll]
        for v in 0..PER_UNIT * PER_UNIT {
            acc[v] = F::new(0.0);
        }

        let mut k0 = k_begin;
        while k0 < k_stop {
            // Stage a: tile_m × DEPTH values, stored [kk][ii] (rows of row_a).
            #[unroll]
            for r in 0..comptime!(DEPTH * uy * PER_UNIT / UNITS) {
                let t = unit + r * UNITS;
                let (ii, kk) = if a_k_contiguous { (t / DEPTH, t % DEPTH) } else { (t % tile_m, t / tile_m) };
                let (i, k) = (i0 + ii, k0 + kk);
                let mut v = F::new(0.0);
                if i < m && k < k_stop {
                    v = a[i * s[0] + k * s[1]];
                }
                shared_a[kk * row_a + ii] = v;
            }
            // Stage b: DEPTH × tile_n values, stored [kk][jj] (rows of row_b).
            #[unroll]
            for r in 0..comptime!(DEPTH * ux * PER_UNIT / UNITS) {
                let t = unit + r * UNITS;
                let (kk, jj) = if b_j_contiguous { (t / tile_n, t % tile_n) } else { (t % DEPTH, t / DEPTH) };
                let (k, j) = (k0 + kk, j0 + jj);
                let mut v = F::new(0.0);
                if j < n && k < k_stop {
                    v = b[k * s[2] + j * s[3]];
                }
                shared_b[kk * row_b + jj] = v;
            }
            sync_cube();
            #[unroll]
            for kk in 0..DEPTH {
                #[unroll]
                for r in 0..PER_UNIT {
                    av[r] = shared_a[kk * row_a + ty + r * uy];
                    bv[r] = shared_b[kk * row_b + tx + r * ux];
                }
                #[unroll]
                for r in 0..PER_UNIT {
                    #[unroll]
                    for q in 0..PER_UNIT {
                        acc[r * PER_UNIT + q] += av[r] * bv[q];
                    }
                }
            }
            sync_cube();
            k0 += DEPTH;
        }

        #[unroll]
        for r in 0..PER_UNIT {
            let i = i0 + ty + r * uy;
            #[unroll]
            for q in 0..PER_UNIT {
                let j = j0 + tx + q * ux;
                if i < m && j < n {
                    c[part * s[4] + i * s[5] + j * s[6]] = acc[r * PER_UNIT + q];
                }
            }
        }
    }

    /// `total[j] = Σ_part partials[part · values + j]`, one unit per value.
    #[cube(launch)]
    fn sum_parts_kernel<F: Float>(partials: &Tensor<F>, total: &mut Tensor<F>, parts: usize, #[define(F)] _dtype: ElemType) {
        let values = total.len();
        let j = ABSOLUTE_POS;
        if j >= values {
            terminate!();
        }
        let mut sum = F::new(0.0);
        for part in 0..parts {
            sum += partials[part * values + j];
        }
        total[j] = sum;
    }

    /// Units along x and y of a cube (4 × 4 values each, 256 in all) for an output of `rows` ×
    /// `columns`. A tall output (forward and input gradient: rows = batch · h · w) gets 64 × 64
    /// tiles, or taller and narrower ones (128 × 32, 256 × 16) when the columns are few, so
    /// that a tile holds few padding columns and each row of the input is read by few cubes. A
    /// small one (the weight gradient, `out` × `in`) gets the tile shape with the least padded
    /// area, the squarest on a tie.
    pub(super) fn unit_grid(rows: usize, columns: usize) -> (usize, usize) {
        if rows >= 4096 {
            return match columns {
                0..=16 => (4, 64),
                17..=32 => (8, 32),
                _ => (16, 16),
            };
        }
        let padded = |(ux, uy): (usize, usize)| rows.next_multiple_of(uy * PER_UNIT) * columns.next_multiple_of(ux * PER_UNIT);
        let mut best = (16, 16);
        for grid in [(8, 32), (4, 64), (32, 8), (64, 4)] {
            if padded(grid) < padded(best) {
                best = grid;
            }
        }
        best
    }

    /// The parts of the weight gradient's `rows` and the rows in each (a multiple of the stage
    /// depth): about [`TARGET_CUBES`] cubes over `tiles` tiles, at least [`MIN_PART_ROWS`] rows
    /// a part, at most [`MAX_GRID`] parts, none empty.
    pub(super) fn partition(rows: usize, tiles: usize) -> (usize, usize) {
        let parts = TARGET_CUBES.div_ceil(tiles.max(1)).min(rows / MIN_PART_ROWS).clamp(1, MAX_GRID);
        let len = rows.div_ceil(parts).next_multiple_of(DEPTH);
        (rows.div_ceil(len).max(1), len)
    }

    /// Whether `x` is float32 channels-last with dense rows: `[b, c, h, w]` with strides
    /// `[h·w·c, 1, w·c, c]` (any strides on axes of size 1), so that value (row, channel) lies
    /// at `row · c + channel`.
    pub(super) fn dense_channels_last(x: &CubeTensor) -> bool {
        let shape = x.meta.shape();
        let strides = x.meta.strides();
        let (c, h, w) = (shape[1], shape[2], shape[3]);
        let want = [h * w * c, 1, w * c, c];
        supported(&[x]) && (0..4).all(|d| shape[d] == 1 || strides[d] == want[d])
    }

    /// The tiles of an `m` × `n` output with units `(ux, uy)` ([`unit_grid`]): `(along n,
    /// along m)`, the launch's cubes per part.
    fn tiles(m: usize, n: usize, (ux, uy): (usize, usize)) -> (usize, usize) {
        (n.div_ceil(ux * PER_UNIT), m.div_ceil(uy * PER_UNIT))
    }

    /// Launches [`matmul_kernel`]: `c = a · b` over `parts` parts of k (`k_part` each), the
    /// cubes' units laid out as `grid` (`(ux, uy)`, from [`unit_grid`]).
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        a: &CubeTensor,
        b: &CubeTensor,
        c: &CubeTensor,
        [m, n, k, k_part, parts]: [usize; 5],
        grid: (usize, usize),
        strides: [usize; 7],
        a_k_contiguous: bool,
        b_j_contiguous: bool,
    ) {
        let (ux, uy) = grid;
        let (tiles_n, tiles_m) = tiles(m, n, grid);
        let mut dims = SequenceArg::new();
        for d in [m, n, k, k_part] {
            dims.push(d);
        }
        let mut s = SequenceArg::new();
        for v in strides {
            s.push(v);
        }
        matmul_kernel::launch(
            &a.client.clone(),
            CubeCount::Static(tiles_n as u32, tiles_m as u32, parts as u32),
            CubeDim::new_2d(ux as u32, uy as u32),
            a.clone().into_tensor_arg(),
            b.clone().into_tensor_arg(),
            c.clone().into_tensor_arg(),
            dims,
            s,
            ux,
            uy,
            a_k_contiguous,
            b_j_contiguous,
            elem(),
        );
    }

    /// Whether a grid of row tiles for `rows` rows fits one axis (the smallest tiles, 64 rows).
    fn rows_fit(rows: usize) -> bool {
        rows.div_ceil(16 * PER_UNIT) <= MAX_GRID
    }

    impl PointwiseConv for CubeBackend {
        fn pointwise_forward(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
            let [x, weight] = [x, weight].map(burn_cubecl::kernel::untile);
            let [b, cin, h, w] = x.meta.shape().dims::<4>();
            let cout = weight.meta.shape()[0];
            let rows = b * h * w;
            if !(dense_channels_last(&x) && supported(&[&weight]) && rows_fit(rows)) {
                return <Self as burn::backend::ops::ModuleOps<Self>>::conv2d(x, weight, None, super::options());
            }
            let ws = weight.meta.strides().to_vec();
            let y = empty_4d(&x, [b, cout, h, w], true);
            // y[row, o] = Σ_i x[row, i] · w[o, i]: a = x (k = i contiguous), b[i, o] = w[o, i].
            matmul(&x, &weight, &y, [rows, cout, cin, cin, 1], unit_grid(rows, cout), [cin, 1, ws[1], ws[0], 0, cout, 1], true, ws[0] == 1);
            y
        }

        fn pointwise_backward(x: FloatTensor<Self>, weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
            let [x, weight, grad] = [x, weight, grad].map(burn_cubecl::kernel::untile);
            let [b, cin, h, w] = x.meta.shape().dims::<4>();
            let cout = weight.meta.shape()[0];
            let rows = b * h * w;
            if !(dense_channels_last(&x) && dense_channels_last(&grad) && supported(&[&weight]) && rows_fit(rows)) {
                return super::burns_backward::<Self>(x, weight, grad);
            }
            let ws = weight.meta.strides().to_vec();

            // dx[row, i] = Σ_o dy[row, o] · w[o, i]: a = dy (k = o contiguous), b[o, i] = w[o, i].
            let x_grad = empty_4d(&x, [b, cin, h, w], true);
            matmul(&grad, &weight, &x_grad, [rows, cin, cout, cout, 1], unit_grid(rows, cin), [cout, 1, ws[0], ws[1], 0, cin, 1], true, ws[1] == 1);

            // dw[o, i] = Σ_row dy[row, o] · x[row, i], in parts of the rows: a[o, row] = dy[row, o]
            // (o contiguous), b[row, i] = x[row, i] (i contiguous).
            let grid = unit_grid(cout, cin);
            let (tiles_n, tiles_m) = tiles(cout, cin, grid);
            let (parts, len) = partition(rows, tiles_n * tiles_m);
            let weight_grad = empty(&x, Shape::new([cout, cin, 1, 1]));
            let partials = if parts == 1 { weight_grad.clone() } else { empty(&x, Shape::new([parts, cout, cin])) };
            matmul(&grad, &x, &partials, [cout, cin, rows, len, parts], grid, [1, cout, cin, 1, cout * cin, cin, 1], false, true);
            if parts > 1 {
                let (cubes, units) = elementwise_grid(&weight_grad, cout * cin);
                sum_parts_kernel::launch(
                    &x.client.clone(),
                    cubes,
                    units,
                    partials.into_tensor_arg(),
                    weight_grad.clone().into_tensor_arg(),
                    parts,
                    elem(),
                );
            }
            (x_grad, weight_grad)
        }
    }
}

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
