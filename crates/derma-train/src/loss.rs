//! Training losses for imbalanced classification, computed from log-softmax / log-sigmoid so
//! confident logits never produce `inf` or `NaN`.
//!
//! Heads: a multi-class task has `K ≥ 2` softmax logits; a binary task (mammography, or
//! `--positive-classes`) has **one sigmoid logit** whose probability is that of the positive
//! class.
//!
//! | loss | `K ≥ 2` logits | 1 logit |
//! |---|---|---|
//! | `ce` | `F.cross_entropy(weight=w)` | `F.binary_cross_entropy_with_logits` |
//! | `bce` | BCE on one-hot targets (one-vs-rest) | BCE |
//! | `focal` | softmax focal `-α_y (1-p_y)^γ log p_y` | `torchvision.ops.sigmoid_focal_loss` |
//! | `combined` | `bce_weight`·BCE + `focal_weight`·sigmoid focal, one-hot | same on the logit |
//!
//! Class weights `w_c` (`--class-weights`) weight each sample by its class: softmax losses
//! (`ce`, softmax `focal`) average as PyTorch's weighted cross-entropy does,
//! `Σ w_{y_i} l_i / Σ w_{y_i}`; sigmoid losses multiply element-wise and take the plain mean, as
//! `binary_cross_entropy_with_logits(weight=...)` does.
//!
//! `α` (`--alpha`): a scalar weights positives by `α` and negatives by `1-α` for sigmoid
//! losses (torchvision; `α < 0` disables it) and for a 2-logit softmax (class 1 = positive);
//! for a softmax over `K > 2` classes a scalar multiplies every class alike (a constant: no
//! imbalance correction). A per-class list `α_0, …` weighs each sample's focal term by its
//! true class's `α_y`: softmax focal `-α_y (1-p_y)^γ log p_y`; one sigmoid logit
//! `α_y · FL_γ(x, t)` (`α_0` for negatives, `α_1` for positives); one-vs-rest `combined` each of
//! the sample's `K` focal terms by `α_y`.
//!
//! [`Loss::forward_per_sample`] also returns each sample's loss `l_i` before class weights
//! (`K ≥ 2` one-vs-rest losses: the mean of the `K` terms), which hard-example mining ranks
//! (`crate::mining`).

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, log_softmax};
use serde::{Deserialize, Serialize};

/// Which loss to train with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Cross-entropy (BCE on a single logit).
    Ce,
    /// Binary cross-entropy (one-vs-rest on one-hot targets for `K ≥ 2`).
    Bce,
    /// Focal loss (softmax for `K ≥ 2`, sigmoid on one logit).
    Focal,
    /// `bce_weight` × BCE + `focal_weight` × sigmoid focal.
    Combined,
}

impl std::fmt::Display for LossKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ce => "ce",
            Self::Bce => "bce",
            Self::Focal => "focal",
            Self::Combined => "combined",
        })
    }
}

impl std::str::FromStr for LossKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ce" => Ok(Self::Ce),
            "bce" => Ok(Self::Bce),
            "focal" => Ok(Self::Focal),
            "combined" => Ok(Self::Combined),
            _ => Err(format!("unknown loss `{s}` (expected ce, bce, focal or combined)")),
        }
    }
}

/// The focal `α`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Alpha {
    /// One value (see the module docs for its meaning per head).
    Scalar(f64),
    /// One value per class.
    PerClass(Vec<f64>),
}

/// Everything that defines the loss.
#[derive(Debug, Clone, PartialEq)]
pub struct LossConfig {
    /// The loss.
    pub kind: LossKind,
    /// Focusing parameter `γ ≥ 0` (focal and combined).
    pub gamma: f64,
    /// Focal `α` (`None`: off).
    pub alpha: Option<Alpha>,
    /// Per-class sample weights (`None`: all 1).
    pub class_weights: Option<Vec<f64>>,
    /// Weight of the BCE term of `combined`.
    pub bce_weight: f64,
    /// Weight of the focal term of `combined`.
    pub focal_weight: f64,
}

impl LossConfig {
    /// Plain cross-entropy.
    pub fn ce() -> Self {
        Self {
            kind: LossKind::Ce,
            gamma: 0.0,
            alpha: None,
            class_weights: None,
            bce_weight: 0.5,
            focal_weight: 0.5,
        }
    }

    /// Checks values against a head with `num_logits` outputs over `num_classes` classes,
    /// naming the flag at fault.
    pub fn validate(&self, num_classes: usize) -> Result<(), String> {
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return Err(format!("--gamma must be >= 0, got {}", self.gamma));
        }
        if let Some(alpha) = &self.alpha {
            check_alpha(alpha)?;
            if let Alpha::PerClass(v) = alpha
                && v.len() != num_classes
            {
                return Err(format!("--alpha lists {} values but there are {num_classes} classes", v.len()));
            }
        }
        if let Some(w) = &self.class_weights {
            if w.len() != num_classes {
                return Err(format!("--class-weights lists {} values but there are {num_classes} classes", w.len()));
            }
            check_class_weights(w)?;
        }
        for (flag, v) in [("--bce-weight", self.bce_weight), ("--focal-weight", self.focal_weight)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{flag} must be >= 0, got {v}"));
            }
        }
        Ok(())
    }

    /// Places the per-class constants on `device`.
    pub fn init(&self, device: &Device) -> Loss {
        let tensor = |v: &Vec<f64>| {
            Tensor::<1>::from_data(TensorData::new(v.iter().map(|&x| x as f32).collect::<Vec<_>>(), [v.len()]), device)
        };
        Loss {
            config: self.clone(),
            class_weights: self.class_weights.as_ref().map(tensor),
            alpha_per_class: match &self.alpha {
                Some(Alpha::PerClass(v)) => Some(tensor(v)),
                _ => None,
            },
        }
    }
}

/// Checks explicit class weights without the class count: every weight finite and > 0.
pub(crate) fn check_class_weights(w: &[f64]) -> Result<(), String> {
    if w.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
        return Err(format!("--class-weights must all be > 0, got {w:?}"));
    }
    Ok(())
}

/// Checks focal `α` values, whatever the class count: a scalar in [0, 1] (negative: off), each
/// value of a per-class list in [0, 1]. One check for the CLI's up-front validation and
/// [`LossConfig::validate`], so both accept the same values with the same message.
pub(crate) fn check_alpha(alpha: &Alpha) -> Result<(), String> {
    match alpha {
        Alpha::Scalar(a) if !(a.is_finite() && *a <= 1.0) => {
            Err(format!("--alpha must be in [0, 1] (negative disables it), got {a}"))
        }
        Alpha::PerClass(v) if v.iter().any(|a| !(a.is_finite() && (0.0..=1.0).contains(a))) => {
            Err(format!("--alpha values must be in [0, 1], got {v:?}"))
        }
        _ => Ok(()),
    }
}

/// A loss ready to run on one device.
#[derive(Debug, Clone)]
pub struct Loss {
    config: LossConfig,
    class_weights: Option<Tensor<1>>,
    alpha_per_class: Option<Tensor<1>>,
}

impl Loss {
    /// Mean loss of a batch: `logits` `[batch, k]` (`k = 1`: one sigmoid logit), `targets`
    /// `[batch]` class indices. Returns a `[1]` tensor.
    pub fn forward(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        self.forward_per_sample(logits, targets).0
    }

    /// The batch mean of [`forward`](Self::forward) and the per-sample losses it reduces:
    /// `([1], [batch])`. The per-sample loss `l_i` is the configured loss of sample `i`
    /// (focal `α` included, one-vs-rest terms averaged over the `k` logits) **before** class
    /// weights; the mean is `Σ w_{y_i} l_i / Σ w_{y_i}` for softmax losses and
    /// `mean(w_{y_i} l_i)` for sigmoid losses (see the module docs).
    pub fn forward_per_sample(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> (Tensor<1>, Tensor<1>) {
        let [_, k] = logits.dims();
        let c = &self.config;
        if k == 1 {
            let x = logits.flatten::<1>(0, 1); // [batch]
            let t = targets.float(); // [batch]
            let w = self.sample_weights_binary(&t);
            // A per-class α list weighs each sample's focal term by its class's α.
            let alpha_y = self.alpha_per_class.as_ref().map(|a| {
                let (a0, a1) = (a.clone().slice(0..1), a.clone().slice(1..2));
                t.clone().mul(a1 - a0.clone()).add(a0) // a0 + t (a1 - a0): [batch]
            });
            let l = match c.kind {
                LossKind::Ce | LossKind::Bce => bce_logits(x, t),
                LossKind::Focal => self.sigmoid_focal(x, t, alpha_y),
                LossKind::Combined => {
                    let bce = bce_logits(x.clone(), t.clone()).mul_scalar(c.bce_weight);
                    bce + self.sigmoid_focal(x, t, alpha_y).mul_scalar(c.focal_weight)
                }
            };
            return (mean_weighted(l.clone(), w), l);
        }
        match c.kind {
            LossKind::Ce => self.softmax_focal(logits, targets, 0.0, false),
            LossKind::Focal => self.softmax_focal(logits, targets, c.gamma, true),
            LossKind::Bce | LossKind::Combined => {
                let t = targets.clone().one_hot::<2>(k).float(); // [batch, k]
                let mut l = bce_logits(logits.clone(), t.clone()); // [batch, k]
                if c.kind == LossKind::Combined {
                    // A per-class α list: each sample's k focal terms by its class's α.
                    let alpha_y = self.alpha_per_class.as_ref().map(|a| {
                        let batch = logits.dims()[0];
                        a.clone().select(0, targets.clone()).reshape([batch, 1]).repeat_dim(1, k)
                    });
                    l = l.mul_scalar(c.bce_weight) + self.sigmoid_focal(logits, t, alpha_y).mul_scalar(c.focal_weight);
                }
                let l = l.mean_dim(1).flatten::<1>(0, 1); // [batch]: mean over the k terms
                let w = self.class_weights.as_ref().map(|w| w.clone().select(0, targets));
                (mean_weighted(l.clone(), w), l)
            }
        }
    }

    /// The batch's share of a loss over many batches: `(numerator, denominator)`, both `[1]`,
    /// such that the loss over the batches is `Σ numerator / Σ denominator` — with class weights
    /// the whole split's `Σ w_{y_i} l_i / Σ w_{y_i}` (softmax losses, as `F.cross_entropy(weight=…)`
    /// over the split), not a mean of batch means that would depend on the batch size.
    pub fn forward_sums(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> (Tensor<1>, Tensor<1>) {
        let [batch, k] = logits.dims();
        let device = logits.device();
        let weighted_mean = k > 1 && matches!(self.config.kind, LossKind::Ce | LossKind::Focal);
        let den = match (&self.class_weights, weighted_mean) {
            (Some(w), true) => w.clone().select(0, targets.clone()).sum(),
            _ => Tensor::<1>::from_data(TensorData::new(vec![batch as f32], [1]), &device),
        };
        let (mean, _) = self.forward_per_sample(logits, targets);
        (mean.mul(den.clone()), den)
    }

    /// The denominator [`Loss::forward_sums`] gives a batch, from its host labels without a
    /// device read: `Σ w_{y_i}` for class-weighted softmax losses (`num_logits > 1`, ce or
    /// focal), else the batch size. The training loop weighs each batch's mean loss by it, so
    /// its epoch loss is the same quantity as the validation loss (and does not depend on the
    /// batch size).
    pub fn batch_weight(&self, labels: &[usize], num_logits: usize) -> f64 {
        let weighted_mean = num_logits > 1 && matches!(self.config.kind, LossKind::Ce | LossKind::Focal);
        match (&self.config.class_weights, weighted_mean) {
            (Some(w), true) => labels.iter().map(|&l| w.get(l).copied().unwrap_or(0.0)).sum(),
            _ => labels.len() as f64,
        }
    }

    /// `[batch]` class weight of each sample of a binary batch (`t` in {0, 1}).
    fn sample_weights_binary(&self, t: &Tensor<1>) -> Option<Tensor<1>> {
        self.class_weights.as_ref().map(|w| {
            let w0 = w.clone().slice(0..1);
            let w1 = w.clone().slice(1..2);
            // w0 + t (w1 - w0): broadcast [1] over [batch]
            t.clone().mul(w1 - w0.clone()).add(w0)
        })
    }

    /// Element-wise torchvision `sigmoid_focal_loss` (no reduction); works for any rank. A scalar
    /// `α` acts as torchvision's; `alpha_y` (a per-class `α` list: the sample's class's value,
    /// shaped as `x`) multiplies instead.
    fn sigmoid_focal<const D: usize>(&self, x: Tensor<D>, t: Tensor<D>, alpha_y: Option<Tensor<D>>) -> Tensor<D> {
        let c = &self.config;
        let ce = bce_logits(x.clone(), t.clone());
        // log(1 - p_t): t=1 → log σ(-x); t=0 → log σ(x).
        let log_one_minus_pt =
            t.clone().mul(log_sigmoid(x.clone().neg())) + t.clone().neg().add_scalar(1.0).mul(log_sigmoid(x));
        let mut loss = if c.gamma == 0.0 {
            ce
        } else {
            ce.mul(log_one_minus_pt.mul_scalar(c.gamma).exp())
        };
        if let Some(Alpha::Scalar(a)) = c.alpha
            && a >= 0.0
        {
            // α t + (1 - α)(1 - t)
            loss = loss.mul(t.mul_scalar(2.0 * a - 1.0).add_scalar(1.0 - a));
        }
        if let Some(a) = alpha_y {
            loss = loss.mul(a);
        }
        loss
    }

    /// Softmax focal loss `-α_y (1 - p_y)^γ log p_y`, averaged with class weights as PyTorch's
    /// weighted cross-entropy, and its per-sample terms. `γ = 0` without `α` is exactly
    /// cross-entropy.
    fn softmax_focal(&self, logits: Tensor<2>, targets: Tensor<1, Int>, gamma: f64, use_alpha: bool) -> (Tensor<1>, Tensor<1>) {
        let [batch, k] = logits.dims();
        let logp = log_softmax(logits, 1) // [batch, k]
            .gather(1, targets.clone().reshape([batch, 1]))
            .flatten::<1>(0, 1); // [batch]: log p_y
        let mut loss = logp.clone().neg();
        if gamma != 0.0 {
            // (1 - p_y)^γ = exp(γ log(1 - p_y)); 1 - p_y is clamped away from 0 only inside the log.
            let one_minus = logp.exp().neg().add_scalar(1.0).clamp_min(1e-30);
            loss = loss.mul(one_minus.log().mul_scalar(gamma).exp());
        }
        if use_alpha {
            match (&self.config.alpha, &self.alpha_per_class) {
                (_, Some(a)) => loss = loss.mul(a.clone().select(0, targets.clone())),
                (Some(Alpha::Scalar(a)), None) if *a >= 0.0 => {
                    if k == 2 {
                        let t = targets.clone().float();
                        loss = loss.mul(t.mul_scalar(2.0 * a - 1.0).add_scalar(1.0 - a));
                    } else {
                        loss = loss.mul_scalar(*a);
                    }
                }
                _ => {}
            }
        }
        let mean = match &self.class_weights {
            Some(w) => {
                let w = w.clone().select(0, targets); // [batch]
                loss.clone().mul(w.clone()).sum().div(w.sum())
            }
            None => loss.clone().mean(),
        };
        (mean, loss)
    }
}

/// Element-wise `binary_cross_entropy_with_logits`: `-(t log σ(x) + (1 - t) log σ(-x))`.
fn bce_logits<const D: usize>(x: Tensor<D>, t: Tensor<D>) -> Tensor<D> {
    let pos = t.clone().mul(log_sigmoid(x.clone()));
    let neg = t.neg().add_scalar(1.0).mul(log_sigmoid(x.neg()));
    (pos + neg).neg()
}

fn mean_weighted(l: Tensor<1>, w: Option<Tensor<1>>) -> Tensor<1> {
    match w {
        Some(w) => l.mul(w).mean(),
        None => l.mean(),
    }
}
