//! MobileNetV2 (Sandler et al., 2018) with torchvision's layout: stem, 17 inverted residual
//! blocks, 1x1 head convolution, global average pool, dropout and a linear classifier.

use burn::module::Param;
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;

use crate::block::{ConvBnAct, ConvBnActConfig, InvertedResidual, InvertedResidualConfig, Padding};

/// torchvision's `inverted_residual_setting`: `(t, c, n, s)` = expansion, output channels,
/// repeats, stride of the first repeat.
const SETTING: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// torchvision's `_make_divisible`: rounds `v` to the nearest multiple of `divisor` (at least
/// `divisor`), never going more than 10% below `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = ((v + d / 2.0) / d).floor() as usize * divisor;
    new_v = new_v.max(divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// Configuration of [`MobileNetV2`].
#[derive(Config, Debug)]
pub struct MobileNetV2Config {
    /// Number of classes of the classifier (1 for a single sigmoid logit).
    pub num_classes: usize,
    /// Width multiplier (torchvision `width_mult`): 1.0 is the ImageNet network.
    #[config(default = 1.0)]
    pub width: f64,
    /// Input channels: 3 (RGB, or grayscale replicated) or 1 (grayscale stem).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Dropout before the classifier (torchvision: 0.2).
    #[config(default = 0.2)]
    pub dropout: f64,
    /// Total downsampling: 32 is torchvision's network (a 28-px input ends in a 1x1 map);
    /// 16 or 8 drop the stride of the last stride-2 stages (same weights, larger final maps)
    /// for small inputs, with `dilate` deciding what the later layers see.
    #[config(default = 32)]
    pub output_stride: usize,
    /// With a reduced output stride: dilate the later depthwise convolutions by the dropped
    /// stride, as DeepLab's MobileNetV2 backbone does (the receptive field, and what
    /// pretrained kernels see, stay the stride-32 network's), or not (`false`: the
    /// small-image, CIFAR-style variant, whose features stay local — a smaller receptive field
    /// and sharper Grad-CAM maps on tiny inputs).
    #[config(default = true)]
    pub dilate: bool,
    /// Padding convention (`TfSame` matches the TF-lite ImageNet weights).
    #[config(default = "Padding::Symmetric")]
    pub padding: Padding,
}

/// MobileNetV2 classifier.
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    /// `features.0`: 3x3 stride-2 convolution.
    pub stem: ConvBnAct,
    /// `features.1` … `features.17`.
    pub blocks: Vec<InvertedResidual>,
    /// `features.18`: 1x1 convolution to `last_channel`.
    pub head: ConvBnAct,
    /// `classifier.0`.
    pub dropout: Dropout,
    /// `classifier.1`.
    pub classifier: Linear,
}

impl MobileNetV2Config {
    /// Checks the configuration, naming the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.width > 0.0 && self.width.is_finite()) {
            return Err(format!("width must be > 0, got {}", self.width));
        }
        if self.in_channels != 1 && self.in_channels != 3 {
            return Err(format!("in_channels must be 1 or 3, got {}", self.in_channels));
        }
        if self.num_classes == 0 {
            return Err("num_classes must be at least 1".into());
        }
        if ![8, 16, 32].contains(&self.output_stride) {
            return Err(format!("output_stride must be 8, 16 or 32, got {}", self.output_stride));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }

    /// Channels of the final feature map (`last_channel` in torchvision).
    pub fn last_channel(&self) -> usize {
        make_divisible(1280.0 * self.width.max(1.0), 8)
    }

    /// Builds the network with torchvision's initialisation (kaiming-normal fan-out convs,
    /// BN weight 1 / bias 0, classifier N(0, 0.01) with zero bias).
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails: call it first on user input.
    pub fn init(&self, device: &Device) -> MobileNetV2 {
        if let Err(e) = self.validate() {
            panic!("invalid MobileNetV2Config: {e}");
        }
        let mut input = make_divisible(32.0 * self.width, 8);
        let mut stride_so_far = 2;
        let stem = ConvBnActConfig::new([self.in_channels, input], 3)
            .with_stride(2)
            .with_padding(self.padding)
            .init(device);
        let mut blocks = Vec::with_capacity(17);
        // Reduced output stride as DeepLab's MobileNetV2 backbone (TF-slim; VainF's
        // DeepLabV3Plus-Pytorch): once the running stride reaches `output_stride`, a stage's
        // stride becomes 1 and the dilation grows by it instead; the stage's first block keeps
        // the previous dilation, its later blocks use the new one. The receptive field, and
        // what pretrained kernels see, stay those of the stride-32 network. A stage's first
        // block whose stride becomes 1 gets the residual connection when its input and output
        // widths are equal, as in TF-slim (which decides it from the stride it builds with);
        // torchvision fixes it at construction, so with the strides edited afterwards
        // (scripts/reference_torch.py) it has none. The widths are equal only at tiny width
        // multipliers (e.g. 0.1, where `make_divisible` floors 32 and 64 channels to 8).
        let mut dilation = 1;
        for (t, c, n, s) in SETTING {
            let output = make_divisible(c as f64 * self.width, 8);
            let previous = dilation;
            let stage_stride = if stride_so_far == self.output_stride {
                if self.dilate {
                    dilation *= s;
                }
                1
            } else {
                stride_so_far *= s;
                s
            };
            for i in 0..n {
                let (stride, d) = if i == 0 { (stage_stride, previous) } else { (1, dilation) };
                blocks.push(
                    InvertedResidualConfig::new(input, output, stride, t)
                        .with_dilation(d)
                        .with_padding(self.padding)
                        .init(device),
                );
                input = output;
            }
        }
        let last = self.last_channel();
        MobileNetV2 {
            stem,
            blocks,
            head: ConvBnActConfig::new([input, last], 1)
                .with_padding(self.padding)
                .init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            classifier: classifier(last, self.num_classes, device),
        }
    }
}

/// torchvision's classifier initialisation: weight N(0, 0.01), bias 0 (Burn's initializer
/// would draw the bias from the same normal).
fn classifier(input: usize, classes: usize, device: &Device) -> Linear {
    let mut linear = LinearConfig::new(input, classes)
        .with_initializer(Initializer::Normal { mean: 0.0, std: 0.01 })
        .init(device);
    linear.bias = Some(Param::from_tensor(Tensor::zeros([classes], device)));
    linear
}

impl MobileNetV2 {
    /// The last convolutional feature map (Grad-CAM's target layer).
    ///
    /// `[batch, in_channels, h, w]` → `[batch, last_channel, h / s, w / s]`, `s` the output
    /// stride.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.stem.forward(x); // [batch, 32w, h/2, w/2]
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.head.forward(x) // [batch, last_channel, h/s, w/s]
    }

    /// Global average pooling, dropout and the classifier on a feature map.
    ///
    /// `[batch, c, h', w']` → `[batch, num_classes]`.
    pub fn classify(&self, features: Tensor<4>) -> Tensor<2> {
        let pooled = features.mean_dims(&[2, 3]).flatten::<2>(1, 3); // [batch, c]
        self.classifier.forward(self.dropout.forward(pooled)) // [batch, num_classes]
    }

    /// [`classify`](Self::classify) with the dropout's keep-mask given instead of drawn:
    /// `mask` (`[batch, last_channel]`, 0 or 1) multiplies the pooled features, which are then
    /// scaled by 1 / (1 − p) as Burn's `Dropout` scales them (the same operations in its order),
    /// where the layer would apply dropout (training, on an autodiff device, p > 0); elsewhere
    /// the mask is ignored. A captured training step draws the mask outside the graph, so each
    /// replay gets a new one (a draw inside it would be replayed unchanged).
    pub fn classify_masked(&self, features: Tensor<4>, mask: Tensor<2>) -> Tensor<2> {
        let pooled = features.mean_dims(&[2, 3]).flatten::<2>(1, 3); // [batch, c]
        let prob = self.dropout.prob;
        if !self.dropout.training.is_enabled() || !pooled.device().is_autodiff() || prob == 0.0 {
            return self.classifier.forward(pooled);
        }
        self.classifier.forward(pooled * mask * (1.0 / (1.0 - prob))) // [batch, num_classes]
    }

    /// The dropout's probability where [`classify`](Self::classify) applies it on `device`
    /// (training flag on, autodiff, p > 0), else 0: whether [`classify_masked`](Self::classify_masked)
    /// uses its mask.
    pub fn dropout_in_effect(&self, device: &Device) -> f64 {
        if self.dropout.training.is_enabled() && device.is_autodiff() { self.dropout.prob } else { 0.0 }
    }

    /// Logits: `[batch, in_channels, h, w]` → `[batch, num_classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.classify(self.forward_features(x))
    }

    /// Replaces the classifier with a freshly initialised one for `num_classes` (the head swap
    /// of transfer learning).
    pub fn with_classifier(mut self, num_classes: usize, device: &Device) -> Self {
        let [input, _] = self.classifier.weight.shape().dims();
        self.classifier = classifier(input, num_classes, device);
        self
    }

    /// Trainable parameters, counted as PyTorch's `sum(p.numel() for p in model.parameters())`
    /// does: Burn's `num_params` also counts the batch-norm running mean and variance.
    pub fn num_trainable_params(&self) -> usize {
        let running: usize = self.batch_norms().map(|b| 2 * b.gamma.shape().dims::<1>()[0]).sum();
        self.num_params() - running
    }

    /// Every batch norm, stem to head.
    fn batch_norms(&self) -> impl Iterator<Item = &BatchNorm> {
        std::iter::once(&self.stem.bn)
            .chain(self.blocks.iter().flat_map(|b| {
                b.expand.iter().map(|e| &e.bn).chain([&b.depthwise.bn, &b.project_bn])
            }))
            .chain(std::iter::once(&self.head.bn))
    }

    /// Whether every batch norm holds identity running statistics (mean 0 within 1e-6,
    /// variance 1 within 2e-5): a freshly initialised network, or weights whose batch norms were
    /// folded into the convolutions (the converted TF-lite weights: variance 1 - 1e-5). Such
    /// statistics say nothing about the activations, so batch norms in training mode would
    /// replace the pretrained scaling with batch statistics; see
    /// [`set_bn_frozen`](Self::set_bn_frozen). Reads one scalar per statistic from the device.
    pub fn has_identity_bn_statistics(&self) -> bool {
        self.batch_norms().all(|bn| {
            let mean = bn.running_mean.value().abs().max().into_scalar::<f32>();
            let var = (bn.running_var.value() - 1.0).abs().max().into_scalar::<f32>();
            mean <= 1e-6 && var <= 2e-5
        })
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.classifier.weight.shape().dims::<2>()[1]
    }

    /// Freezes (or unfreezes) the batch-norm statistics of the whole network: the batch norms
    /// normalise with their running mean and variance even in training (no batch statistics,
    /// no running-average updates), while their scale and shift keep training. For small
    /// batches (high-resolution inputs) and for weights whose batch norms were folded into the
    /// convolutions (the TF-lite ImageNet weights: identity statistics), where batch statistics
    /// would change the pretrained function. torchvision detection's `FrozenBatchNorm2d`
    /// freezes the statistics the same way.
    pub fn set_bn_frozen(mut self, frozen: bool) -> Self {
        let f = |mut c: ConvBnAct| {
            c.bn.training = c.bn.training.with_value(!frozen);
            c
        };
        self.stem = f(self.stem);
        self.head = f(self.head);
        self.blocks = self
            .blocks
            .into_iter()
            .map(|mut b| {
                b.expand = b.expand.map(f);
                b.depthwise = f(b.depthwise);
                b.project_bn.training = b.project_bn.training.with_value(!frozen);
                b
            })
            .collect();
        self
    }

    /// Freezes (or unfreezes) everything but the classifier. A frozen backbone gets no
    /// gradients and its batch norms use their running statistics (they are not updated): the
    /// usual "linear probe" stage of fine-tuning.
    pub fn set_backbone_frozen(mut self, frozen: bool) -> Self {
        let f = |m: ConvBnAct| if frozen { m.freeze() } else { m.unfreeze() };
        self.stem = f(self.stem);
        self.head = f(self.head);
        self.blocks = self
            .blocks
            .into_iter()
            .map(|b| if frozen { b.freeze() } else { b.unfreeze() })
            .collect();
        self
    }
}
