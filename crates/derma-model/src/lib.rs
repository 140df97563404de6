//! # derma-model
//!
//! The *model* stage of the data flow: MobileNetV2 in torchvision's layout and the import of
//! pretrained weights into it.
//!
//! - [`block`]: the two building blocks, conv + batch norm + ReLU6 ([`ConvBnAct`]) and the
//!   inverted residual ([`InvertedResidual`]).
//! - [`mobilenet`]: the network ([`MobileNetV2`], [`MobileNetV2Config`]): width multiplier,
//!   input channels, class count, output stride, head swap and backbone freezing.
//! - [`import`]: torchvision state dicts (`.pth`, `.safetensors`) → [`MobileNetV2`], with the
//!   input normalisation each weight source expects ([`InputNorm`]).

pub mod block;
pub mod import;
pub mod mobilenet;

pub use block::{ConvBnAct, ConvBnActConfig, InvertedResidual, InvertedResidualConfig, Padding};
pub use import::{InputNorm, load_torchvision, weight_conventions};
pub use mobilenet::{MobileNetV2, MobileNetV2Config, make_divisible};
