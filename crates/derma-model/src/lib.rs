//! # derma-model
//!
//! The *model* stage of the data flow: MobileNetV2 in torchvision's layout and the import of
//! pretrained weights into it.
//!
//! - [`batch_norm`]: training-mode batch norm (and the ReLU6 after it, [`Activation`]) as one
//!   autodiff node, one or two kernels per direction on the GPU ([`batch_norm_train`],
//!   [`BatchNormTrain`]); [`set_batch_norm_impl`] selects Burn's own instead (a benchmark
//!   baseline).
//! - [`depthwise`]: the depthwise convolution as one autodiff node, its backward pass two or
//!   three kernels on the GPU ([`depthwise_conv2d`], [`DepthwiseConv`]); [`set_depthwise_impl`]
//!   selects Burn's own instead (a benchmark baseline).
//! - [`pointwise`]: the 1x1 convolutions as one autodiff node, one tiled matrix-product kernel
//!   in three directions on the GPU ([`pointwise_conv2d`], [`PointwiseConv`]);
//!   [`set_pointwise_impl`] selects them (Burn's own convolutions are the default).
//! - `node`: the autodiff node the depthwise and pointwise convolutions share (input and weight
//!   checkpointed, both gradients from one backward call).
//! - `choice`: the per-thread choice between a node of this crate and Burn's own operations
//!   that the three `set_*_impl` functions above make (one macro for the three).
//! - [`stable`]: tensors written in place ([`assign`]), and the per-thread switch that makes the
//!   batch norms keep their running statistics in the same memory ([`set_stable_buffers`]): what
//!   a training step captured as a graph and replayed needs.
//! - [`block`]: the two building blocks, conv + batch norm + ReLU6 ([`ConvBnAct`]) and the
//!   inverted residual ([`InvertedResidual`]).
//! - [`mobilenet`]: the network ([`MobileNetV2`], [`MobileNetV2Config`]): width multiplier,
//!   input channels, class count, output stride, head swap and backbone freezing.
//! - [`import`]: torchvision state dicts (`.pth`, `.safetensors`) → [`MobileNetV2`], with the
//!   input normalisation each weight source expects ([`InputNorm`]).
//! - [`embedding`]: the training-only metric-learning head on the pooled features
//!   ([`Embedding`]: `Linear(last_channel → dim)` + L2 normalisation), kept outside
//!   [`MobileNetV2`] so its key layout and classifier path do not change.

pub mod batch_norm;
pub mod block;
mod choice;
pub mod depthwise;
pub mod embedding;
pub mod import;
#[cfg(feature = "wgpu")]
pub mod kernel;
pub mod mobilenet;
mod node;
pub mod pointwise;
pub mod stable;
#[cfg(test)]
mod testing;

pub use batch_norm::{Activation, BatchNormImpl, BatchNormOutput, BatchNormTrain, batch_norm_impl, batch_norm_train, set_batch_norm_impl};
pub use depthwise::{DepthwiseConv, DepthwiseImpl, depthwise_conv2d, depthwise_impl, set_depthwise_impl};
pub use pointwise::{PointwiseConv, PointwiseImpl, pointwise_conv2d, pointwise_impl, set_pointwise_impl};
pub use block::{ConvBnAct, ConvBnActConfig, InvertedResidual, InvertedResidualConfig, Padding};
pub use embedding::{Embedding, EmbeddingConfig, global_pool, l2_normalize};
pub use import::{InputNorm, fold_gray_stem, load_torchvision, weight_conventions};
pub use stable::{AssignInPlace, assign, detached_copy, set_stable_buffers, stable_buffers, writes_in_place};
pub use mobilenet::{MobileNetV2, MobileNetV2Config, make_divisible};
