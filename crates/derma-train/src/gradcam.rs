//! Grad-CAM (Selvaraju et al., 2017) on MobileNetV2's last convolutional block (`head`,
//! torchvision `features.18`), and heatmap overlays.
//!
//! Grad-CAM weights each channel `k` of the target feature map `A` by the spatial mean of the
//! gradient of the class score, `α_k = mean_ij ∂y_c/∂A_k(i,j)`, and keeps
//! `ReLU(Σ_k α_k A_k)`. After the head MobileNetV2 has only global average pooling, dropout
//! (the identity in evaluation) and the linear classifier, so `y_c = Σ_k W_kc mean_ij A_k + b_c`
//! and `∂y_c/∂A_k(i,j) = W_kc / (H W)` everywhere: the weights are known in closed form and
//! one forward pass suffices (no backward). `tests/gradcam.rs` checks this against Burn's
//! autodiff gradients.
//!
//! A single-logit (binary) model has one score, the positive class's log-odds `z`; the
//! negative class's is `−z` ([`Target::Negated`]), so a negative decision is explained by the
//! evidence *against* the positive class, not by the (weak) evidence for it.

use burn::prelude::*;
use derma_model::MobileNetV2;

/// A class-activation map at the feature-map resolution (`ReLU`'d, not normalised).
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    /// Row-major values, `height * width`.
    pub values: Vec<f32>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

/// The score `y` whose evidence a map shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A logit, `y = z_c`: a class of a multi-class model, or the positive class of a
    /// single-logit binary model.
    Logit(usize),
    /// A negated logit, `y = −z_c`: the negative class of a single-logit binary model.
    Negated(usize),
}

impl Target {
    /// The target of a model's decision: the decided class (`logits` > 1), else the positive
    /// or the negative class of the single logit.
    pub fn of_decision(logits: usize, decided: usize) -> Self {
        match (logits, decided) {
            (1, 0) => Self::Negated(0),
            (1, _) => Self::Logit(0),
            (_, c) => Self::Logit(c),
        }
    }

    fn logit_and_sign(self) -> (usize, f32) {
        match self {
            Self::Logit(c) => (c, 1.0),
            Self::Negated(c) => (c, -1.0),
        }
    }
}

/// Grad-CAM of each image for its target score (`targets[b]`).
///
/// `images`: `[batch, channels, h, w]` normalised inputs.
pub fn gradcam(model: &MobileNetV2, images: Tensor<4>, targets: &[Target]) -> Vec<Heatmap> {
    let features = model.forward_features(images); // [batch, k, h', w']
    let [batch, k, h, w] = features.dims();
    assert_eq!(batch, targets.len(), "one target per image");
    let device = features.device();
    let weight = model.classifier.weight.val().transpose(); // [classes, k]
    let (index, sign): (Vec<i64>, Vec<f32>) = targets.iter().map(|t| t.logit_and_sign()).map(|(c, s)| (c as i64, s)).unzip();
    let index = Tensor::<1, Int>::from_data(TensorData::new(index, [batch]), &device);
    let sign = Tensor::<2>::from_data(TensorData::new(sign, [batch, 1]), &device);
    let alpha = (weight.select(0, index) * sign).div_scalar((h * w) as f64); // [batch, k]
    let cam = (features * alpha.reshape([batch, k, 1, 1])).sum_dim(1); // [batch, 1, h', w']
    let cam = burn::tensor::activation::relu(cam);
    let values: Vec<f32> = cam.into_data().try_into_vec().expect("f32 heatmap");
    values
        .chunks(h * w)
        .map(|v| Heatmap { values: v.to_vec(), height: h, width: w })
        .collect()
}

impl Heatmap {
    /// The map scaled to `[0, 1]` as pytorch-grad-cam's `scale_cam_image` does —
    /// `(m − min) / (1e-7 + max(m − min))`, so a constant map (a 1×1 map: a small input at
    /// output stride 32) is all 0, no heat rather than heat everywhere — then bilinearly
    /// upsampled to `height`×`width` (pixel centres aligned as in
    /// `F.interpolate(..., align_corners=False)` and OpenCV's `resize`).
    pub fn upsample(&self, height: usize, width: usize) -> Vec<f32> {
        let (h, w) = (self.height, self.width);
        let min = self.values.iter().copied().fold(f32::INFINITY, f32::min);
        let span = self.values.iter().fold(0.0f32, |m, v| m.max(v - min));
        let scaled: Vec<f32> = self.values.iter().map(|v| (v - min) / (1e-7 + span)).collect();
        let at = |y: usize, x: usize| scaled[y * w + x];
        let mut out = Vec::with_capacity(height * width);
        for v in 0..height {
            let sy = ((v as f32 + 0.5) * h as f32 / height as f32 - 0.5).clamp(0.0, (h - 1) as f32);
            let (y0, fy) = (sy.floor() as usize, sy - sy.floor());
            let y1 = (y0 + 1).min(h - 1);
            for u in 0..width {
                let sx = ((u as f32 + 0.5) * w as f32 / width as f32 - 0.5).clamp(0.0, (w - 1) as f32);
                let (x0, fx) = (sx.floor() as usize, sx - sx.floor());
                let x1 = (x0 + 1).min(w - 1);
                let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                out.push(top * (1.0 - fy) + bottom * fy);
            }
        }
        out
    }

    /// Whether the map has one cell: it cannot show *where* the evidence is (the input is
    /// too small for the network's output stride).
    pub fn is_single_cell(&self) -> bool {
        self.height * self.width == 1
    }
}

/// The "jet" colour of `t` in `[0, 1]` (blue → cyan → yellow → red).
fn jet(t: f32) -> [f32; 3] {
    let c = |x: f32| (1.5 - (4.0 * t - x).abs()).clamp(0.0, 1.0);
    [c(3.0), c(2.0), c(1.0)]
}

/// Blends a heatmap (values in `[0, 1]`, `h * w`) over an `[h, w, c]` image (`c` 1 or 3):
/// RGB `[h, w, 3]`, the heat weighted by `alpha * heat` so cold regions show the image.
pub fn overlay(image: &[u8], [h, w, c]: [usize; 3], heat: &[f32], alpha: f32) -> Vec<u8> {
    let mut out = Vec::with_capacity(h * w * 3);
    for (p, &t) in heat.iter().enumerate().take(h * w) {
        let colour = jet(t);
        let a = alpha * t.clamp(0.0, 1.0);
        for ch in 0..3 {
            let base = image[p * c + if c == 3 { ch } else { 0 }] as f32;
            out.push((base * (1.0 - a) + colour[ch] * 255.0 * a).round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}
