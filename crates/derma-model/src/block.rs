//! MobileNetV2 building blocks with torchvision's parameter names in mind:
//! `Conv2dNormActivation` (conv, BN, ReLU6) and `InvertedResidual`.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu6;

/// How convolutions pad their input.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Padding {
    /// PyTorch: `(k - 1) / 2` on every side (torchvision's MobileNetV2).
    Symmetric,
    /// TensorFlow `SAME`: stride-2 convolutions put the extra row/column at the bottom/right
    /// (the TF-lite ImageNet weights were trained this way).
    TfSame,
}

impl Padding {
    fn config(self, kernel: usize, dilation: usize) -> PaddingConfig2d {
        match self {
            // A dilated convolution (stride 1 in this network) pads `dilation · (k - 1) / 2` on
            // every side under both conventions: TF SAME is symmetric for an odd effective
            // kernel at stride 1.
            _ if dilation > 1 => {
                let p = dilation * (kernel - 1) / 2;
                PaddingConfig2d::Explicit(p, p, p, p)
            }
            Padding::Symmetric => {
                let p = (kernel - 1) / 2;
                PaddingConfig2d::Explicit(p, p, p, p)
            }
            Padding::TfSame => PaddingConfig2d::Same,
        }
    }
}

/// torchvision initialises every conv with `kaiming_normal_(mode="fan_out")`:
/// std = sqrt(2 / (out_channels * k * k)), with `fan_out` counting all output channels even for
/// grouped convolutions (Burn's own initializer divides by groups, so it is computed here).
fn kaiming_fan_out(out_channels: usize, kernel: usize) -> Initializer {
    Initializer::Normal {
        mean: 0.0,
        std: (2.0 / (out_channels * kernel * kernel) as f64).sqrt(),
    }
}

/// A bias-free convolution, as every MobileNetV2 convolution is.
pub(crate) fn conv(
    channels: [usize; 2],
    kernel: usize,
    [stride, dilation]: [usize; 2],
    groups: usize,
    padding: Padding,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_dilation([dilation, dilation])
        .with_groups(groups)
        .with_padding(padding.config(kernel, dilation))
        .with_bias(false)
        .with_initializer(kaiming_fan_out(channels[1], kernel))
        .init(device)
}

/// Configuration of a [`ConvBnAct`].
#[derive(Config, Debug)]
pub struct ConvBnActConfig {
    /// `[in, out]` channels.
    pub channels: [usize; 2],
    /// Square kernel size.
    pub kernel: usize,
    /// Stride.
    #[config(default = 1)]
    pub stride: usize,
    /// Dilation (reduced output stride, see `MobileNetV2Config::output_stride`).
    #[config(default = 1)]
    pub dilation: usize,
    /// Groups (`= channels` for a depthwise convolution).
    #[config(default = 1)]
    pub groups: usize,
    /// Padding convention.
    #[config(default = "Padding::Symmetric")]
    pub padding: Padding,
}

/// Convolution → batch norm → ReLU6 (torchvision `Conv2dNormActivation`; keys `.0` and `.1`).
#[derive(Module, Debug)]
pub struct ConvBnAct {
    /// Bias-free convolution.
    pub conv: Conv2d,
    /// Batch normalisation (eps 1e-5, momentum 0.1 as in PyTorch).
    pub bn: BatchNorm,
}

impl ConvBnActConfig {
    /// Builds the block with torchvision's initialisation.
    pub fn init(&self, device: &Device) -> ConvBnAct {
        ConvBnAct {
            conv: conv(
                self.channels,
                self.kernel,
                [self.stride, self.dilation],
                self.groups,
                self.padding,
                device,
            ),
            bn: BatchNormConfig::new(self.channels[1]).init(device),
        }
    }
}

impl ConvBnAct {
    /// `[batch, in, h, w]` → `[batch, out, h / stride, w / stride]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu6(self.bn.forward(self.conv.forward(x)))
    }
}

/// Configuration of an [`InvertedResidual`] block.
#[derive(Config, Debug)]
pub struct InvertedResidualConfig {
    /// Input channels.
    pub input: usize,
    /// Output channels.
    pub output: usize,
    /// Stride of the depthwise convolution (1 or 2).
    pub stride: usize,
    /// Expansion ratio `t` (1 means no expansion convolution).
    pub expand_ratio: usize,
    /// Dilation of the depthwise convolution.
    #[config(default = 1)]
    pub dilation: usize,
    /// Padding convention.
    #[config(default = "Padding::Symmetric")]
    pub padding: Padding,
}

/// MobileNetV2 inverted residual: optional 1x1 expansion, 3x3 depthwise, linear 1x1
/// projection, and a skip connection when shapes allow it.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// 1x1 expansion (absent when `expand_ratio == 1`).
    pub expand: Option<ConvBnAct>,
    /// 3x3 depthwise convolution.
    pub depthwise: ConvBnAct,
    /// Linear 1x1 projection.
    pub project: Conv2d,
    /// Batch norm after the projection (no activation).
    pub project_bn: BatchNorm,
    /// Whether the input is added to the output (stride 1 and equal channels).
    pub use_residual: bool,
}

impl InvertedResidualConfig {
    /// Builds the block with torchvision's initialisation.
    pub fn init(&self, device: &Device) -> InvertedResidual {
        let hidden = self.input * self.expand_ratio;
        let expand = (self.expand_ratio != 1).then(|| {
            ConvBnActConfig::new([self.input, hidden], 1)
                .with_padding(self.padding)
                .init(device)
        });
        InvertedResidual {
            expand,
            depthwise: ConvBnActConfig::new([hidden, hidden], 3)
                .with_stride(self.stride)
                .with_dilation(self.dilation)
                .with_groups(hidden)
                .with_padding(self.padding)
                .init(device),
            project: conv([hidden, self.output], 1, [1, 1], 1, self.padding, device),
            project_bn: BatchNormConfig::new(self.output).init(device),
            use_residual: self.stride == 1 && self.input == self.output,
        }
    }
}

impl InvertedResidual {
    /// `[batch, input, h, w]` → `[batch, output, h / stride, w / stride]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = x.clone();
        if let Some(expand) = &self.expand {
            y = expand.forward(y); // [batch, hidden, h, w]
        }
        let y = self.depthwise.forward(y); // [batch, hidden, h', w']
        let y = self.project_bn.forward(self.project.forward(y)); // [batch, output, h', w']
        if self.use_residual { x + y } else { y }
    }
}
