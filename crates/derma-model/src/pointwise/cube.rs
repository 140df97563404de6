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
