//! What the unit tests of the custom operations share ([`crate::batch_norm`],
//! [`crate::depthwise`], [`crate::pointwise`]).

use burn::prelude::*;
use burn::tensor::Distribution;

/// The largest absolute difference between `a` and `b`.
pub(crate) fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar()
}

/// The largest absolute difference between `a` and the reference `b`, relative to the
/// reference's largest magnitude (at least 1).
pub(crate) fn relative_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    let scale = b.clone().abs().max().into_scalar::<f32>().max(1.0);
    max_abs_diff(a, b) / scale
}

/// A `[batch, channels, h, w]` tensor drawn from `distribution`: contiguous, or channels-last (a
/// permuted view of a `[batch, h, w, channels]` tensor, as convolution outputs are on the GPU).
pub(crate) fn random_4d(dims: [usize; 4], channels_last: bool, distribution: Distribution, device: &Device) -> Tensor<4> {
    let [b, c, h, w] = dims;
    if channels_last {
        Tensor::<4>::random([b, h, w, c], distribution, device).permute([0, 3, 1, 2])
    } else {
        Tensor::<4>::random(dims, distribution, device)
    }
}
