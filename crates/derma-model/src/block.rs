//! MobileNetV2 building blocks with torchvision's parameter names in mind:
//! `Conv2dNormActivation` (conv, BN, ReLU6) and `InvertedResidual`.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::prelude::*;

use crate::batch_norm::Activation;

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

/// `bn.forward(x)` followed by `activation`, with PyTorch's running-variance update: the
/// running variance moves toward the *unbiased* batch variance (`n / (n - 1)` × the population
/// variance that normalises the batch, `n = batch × h × w`), where Burn 0.22's `BatchNorm` moves
/// it toward the population variance — 14 % low at batch 8 on a 1x1 map, so evaluation would
/// differ from PyTorch's.
/// The batch itself is normalised, and the running statistics moved, by
/// [`crate::batch_norm::batch_norm_train`] (one autodiff node, one or two kernels per direction
/// on the GPU, ReLU6 folded into them) rather than Burn's `batch_norm_train` and `relu6`; the
/// arithmetic is the same. Otherwise Burn's own
/// logic: training statistics only on an autodiff device with the layer's training flag on (frozen batch norms, [`MobileNetV2::set_bn_frozen`], keep their
/// running statistics). With [`crate::stable::set_stable_buffers`] on, the running statistics are
/// written into their own memory ([`crate::stable::assign`]).
///
/// [`MobileNetV2::set_bn_frozen`]: crate::MobileNetV2::set_bn_frozen
pub(crate) fn batch_norm(bn: &BatchNorm, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    if !(x.device().is_autodiff() && bn.training.is_enabled()) {
        return activation.apply(bn.forward(x));
    }
    let device = x.device();
    let (stored_mean, stored_var) = (bn.running_mean.value_sync(), bn.running_var.value_sync());
    let running_mean = stored_mean.clone().to_device(&device);
    let running_var = stored_var.clone().to_device(&device);
    let out = crate::batch_norm::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), running_mean, running_var, bn.momentum, bn.epsilon, activation);
    if crate::stable::stable_buffers() {
        // A captured step replays against the running statistics' memory: write it. Burn's
        // `RunningState::update` would not do: the next `value_sync` computes its value anew
        // (the mean over threads, `div_scalar(1)` for one), a new buffer at every read. After a
        // read that found no update pending, the state holds the memory written here.
        let (mut mean, mut var) = (stored_mean, stored_var);
        crate::stable::assign(&mut mean, out.running_mean);
        crate::stable::assign(&mut var, out.running_var);
        if !crate::stable::writes_in_place(&device) {
            bn.running_mean.update(mean);
            bn.running_var.update(var);
        }
    } else {
        bn.running_mean.update(out.running_mean.detach());
        bn.running_var.update(out.running_var.detach());
    }
    out.output
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
        // A depthwise convolution through its own node (its own GPU kernels, forward and
        // backward); a 1x1 through the pointwise node (Burn's convolution unless the thread
        // selected the kernels); any other is `Conv2d::forward`.
        let y = if self.conv.groups > 1 {
            crate::depthwise::depthwise_conv2d(&self.conv, x)
        } else {
            crate::pointwise::pointwise_conv2d(&self.conv, x)
        };
        batch_norm(&self.bn, y, Activation::Relu6)
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
        let y = batch_norm(&self.project_bn, crate::pointwise::pointwise_conv2d(&self.project, y), Activation::Identity); // [batch, output, h', w']
        if self.use_residual { x + y } else { y }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One training-mode pass of `torch.nn.BatchNorm2d(1)` (momentum 0.1) over
    /// `x = [1, 2, 3, 4]` shaped `[2, 1, 1, 2]` leaves `running_mean` 0.25 and `running_var`
    /// `0.9 + 0.1 · 1.6667` = 1.0667 (the unbiased variance; Burn's own update gives 1.025).
    #[test]
    fn running_variance_is_updated_with_the_unbiased_variance_as_in_pytorch() {
        let device = Device::flex().autodiff();
        let bn = BatchNormConfig::new(1).init(&device);
        let x = Tensor::<4>::from_floats([[[[1.0, 2.0]]], [[[3.0, 4.0]]]], &device);
        let y = batch_norm(&bn, x, Activation::Identity);
        let mean: Vec<f32> = bn.running_mean.value_sync().into_data().try_into_vec().unwrap();
        let var: Vec<f32> = bn.running_var.value_sync().into_data().try_into_vec().unwrap();
        assert!((mean[0] - 0.25).abs() < 1e-6, "{mean:?}");
        assert!((var[0] - 1.066_666_6).abs() < 1e-5, "{var:?}");
        // The batch itself is normalised with the population variance, as in PyTorch:
        // (1 - 2.5) / sqrt(1.25 + 1e-5).
        let out: Vec<f32> = y.into_data().try_into_vec().unwrap();
        assert!((out[0] + 1.341_635_5).abs() < 1e-4, "{out:?}");
    }
}
