//! What the project's own CubeCL (wgpu) kernels share on the host side: output allocation in the
//! input's layout, the grid of a one-unit-per-value launch ([`elementwise_grid`]), and the
//! element type they are written for ([`crate::batch_norm`], [`crate::depthwise`],
//! [`crate::stable`], derma-train's fused AdamW); and on the device side the offset of a value
//! in a strided tensor ([`offset_of`]).

use burn::backend::wgpu::CubeTensor;
use burn::tensor::{DType, Shape};
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::ir::{ElemType, FloatKind};
use burn_cubecl::cubecl::prelude::*;

/// The offset in `t` of value `i` (row-major over `t`'s shape): `i` itself when `dense` (a
/// contiguous tensor), else through `t`'s strides.
#[cube]
pub fn offset_of<F: Float>(t: &Tensor<F>, i: usize, #[comptime] dense: bool) -> usize {
    if dense {
        i
    } else {
        let mut rest = i;
        let mut offset = 0;
        let mut d = t.rank();
        while d > 0 {
            d -= 1;
            offset += (rest % t.shape(d)) * t.stride(d);
            rest /= t.shape(d);
        }
        offset
    }
}

/// [`offset_of`] for a tensor the kernel writes (a `&mut` argument cannot be lent as `&` in a
/// cube function).
#[cube]
pub fn offset_of_mut<F: Float>(t: &mut Tensor<F>, i: usize, #[comptime] dense: bool) -> usize {
    if dense {
        i
    } else {
        let mut rest = i;
        let mut offset = 0;
        let mut d = t.rank();
        while d > 0 {
            d -= 1;
            offset += (rest % t.shape(d)) * t.stride(d);
            rest /= t.shape(d);
        }
        offset
    }
}

/// Units per cube of a one-unit-per-value kernel ([`elementwise_grid`]).
pub const UNITS: usize = 256;

/// The cubes and units of a kernel with one unit per value of `values`, on `like`'s device:
/// [`UNITS`] units a cube, the cubes spread over the grid's x, y and z axes within the device's
/// limits by CubeCL's own `calculate_cube_count_elemwise`. A grid along x alone stops at 65,535
/// cubes on Vulkan (16.8 M values: the H100 refused the first depthwise layer's 19.3 M values at
/// 28 px and batch 1,024, "dispatch group size dimension ([75264, 1, 1]) must be less or equal to
/// 65535", 2026-11-27), so such a kernel reads its value as `ABSOLUTE_POS` (flattened over the
/// axes) and returns past the last value (a spread grid can overshoot).
pub fn elementwise_grid(like: &CubeTensor, values: usize) -> (CubeCount, CubeDim) {
    let units = CubeDim::new_1d(UNITS as u32);
    (cubecl::calculate_cube_count_elemwise(&like.client, values.max(1), units), units)
}

/// A new uninitialised contiguous tensor on `like`'s device.
pub fn empty(like: &CubeTensor, shape: Shape) -> CubeTensor {
    burn_cubecl::ops::numeric::empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, like.dtype)
}

/// Whether the 4-d `x` is channels-last: NHWC memory seen as NCHW, what burn-cubecl's
/// convolutions return.
pub fn is_channels_last(x: &CubeTensor) -> bool {
    let shape = x.meta.shape();
    let (c, h, w) = (shape[1], shape[2], shape[3]);
    let strides = x.meta.strides();
    strides[1] == 1 && strides[3] == c && strides[2] == w * c && strides[0] == h * w * c && c > 1 && h * w > 1
}

/// A new uninitialised tensor shaped like the 4-d `x`, in `x`'s memory layout when `x` is
/// channels-last ([`is_channels_last`]), else contiguous. A channels-last output feeds the next
/// convolution, which works in NHWC, without a layout copy, and a channels-last gradient the
/// convolution's backward pass likewise.
pub fn empty_like(x: &CubeTensor) -> CubeTensor {
    let shape = x.meta.shape();
    empty_4d(x, [shape[0], shape[1], shape[2], shape[3]], is_channels_last(x))
}

/// A new uninitialised `[b, c, h, w]` tensor on `like`'s device: channels-last memory (NHWC)
/// seen as NCHW with `channels_last`, else contiguous.
pub fn empty_4d(like: &CubeTensor, [b, c, h, w]: [usize; 4], channels_last: bool) -> CubeTensor {
    if channels_last {
        burn_cubecl::ops::permute_nhwc_to_nchw(empty(like, Shape::new([b, h, w, c])))
    } else {
        empty(like, Shape::new([b, c, h, w]))
    }
}

/// Whether the kernels take these tensors: float32, their element type here.
pub fn supported(tensors: &[&CubeTensor]) -> bool {
    tensors.iter().all(|t| t.dtype == DType::F32)
}

/// The kernels' element type, float32.
pub fn elem() -> ElemType {
    ElemType::Float(FloatKind::F32)
}
