//! The metric-learning auxiliary loss (`--metric-weight`): a triplet loss with batch-hard
//! mining on the embedding head ([`derma_model::Embedding`]), plus two-stage hard-sample
//! generation in embedding space.
//!
//! Total training loss = classification loss + `metric_weight` × [`metric_loss`].
//!
//! ## Batch-hard triplets (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss for
//! Person Re-Identification", arXiv:1703.07737)
//!
//! With unit-norm embeddings `e_i` and `d(x, y) = sqrt(‖x − y‖² + 1e-12)`, every anchor `a`
//! that has at least one positive (same label, another sample) and one negative (other label)
//! in the batch — the *valid* anchors `V` — takes its farthest positive and its nearest
//! negative:
//!
//! ```text
//! p(a) = argmax_{j ≠ a, y_j = y_a} d(e_a, e_j)      n(a) = argmin_{j : y_j ≠ y_a} d(e_a, e_j)
//! ℓ(a, p, n) = max(0, m + d(a, p) − d(a, n))          L_real = (1/|V|) Σ_{a ∈ V} ℓ(a, p(a), n(a))
//! ```
//!
//! `m` is `--triplet-margin`. Binary tasks use the labels 0/1, multi-class tasks the class.
//! The choice of `p(a)`, `n(a)` is made on the detached distances (an index, no gradient);
//! the loss is then differentiated through the chosen embeddings.
//!
//! ## Two-stage hard-sample generation (in the style of Zheng, Chen, Lu & Zhou 2019,
//! "Hardness-Aware Deep Metric Learning", CVPR, arXiv:1903.05503)
//!
//! From each batch-hard triplet `(a, p, n)`, with training progress `t ∈ [0, 1]` (optimiser
//! step / total steps) and the distances `d_ap = d(a, p)`, `d_an = d(a, n)`:
//!
//! 1. **Harder positive**, extrapolated away from the anchor along `p − a` (piecewise linear
//!    in the triplet's slack because of the clip):
//!
//!    ```text
//!    η(t) = η_max · t                                  (hardness factor, η_max = 0.5)
//!    λ    = min(1 + η(t) · max(d_an − d_ap, 0) / max(d_ap, 1e-6), λ_max)      (λ_max = 2)
//!    p̂    = a + λ (p − a)                               ⇒ d(a, p̂) = λ · d_ap
//!    ```
//!
//!    i.e. the positive moves a fraction `η(t)` of the way out to the negative's distance, at
//!    most to twice its own distance; `λ = 1` (the real positive) at the start of training or
//!    for a triplet that already violates the ordering.
//! 2. **Harder negative**, moved toward the midpoint of the anchor and the synthetic
//!    positive, `c = (a + p̂) / 2`, as far as an adaptive *reverse-triplet margin* allows:
//!
//!    ```text
//!    m_r(t) = m0 + (m1 − m0) · t                       (m0 = m, m1 = m / 2: tightens linearly)
//!    n̂      = n + μ (c − n),   μ = the largest value in [0, 1] with d(a, n̂) ≥ d(a, p̂) + m_r(t)
//!    ```
//!
//!    With `u = n − a`, `v = c − n`, `r = d(a, p̂) + m_r(t)`: `‖u + μ v‖² = r²` is a quadratic
//!    `A μ² + B μ + C = 0` (`A = ‖v‖²`, `B = 2 u·v`, `C = ‖u‖² − r²`); if `C ≤ 0` the real
//!    negative is already within `r` and `μ = 0` (`n̂ = n`), otherwise `‖c − a‖ = d(a, p̂)/2 < r`
//!    puts exactly one root in `[0, 1]`, the smaller one, computed stably as
//!    `μ = 2C / (−B + sqrt(B² − 4AC))`.
//!
//! The synthetic triplet adds `ℓ(a, p̂, n̂) = max(0, m + d(a, p̂) − d(a, n̂))`, which is at most
//! `m − m_r(t)` whenever stage 2 moved the negative: the synthetic negative stays a negative
//! (at least `m_r(t)` farther than the positive) but gets closer as training progresses.
//! `λ` and `μ` are computed from detached distances (constants for back-propagation); the
//! gradient flows into `a`, `p`, `n` through `p̂` and `n̂`.
//!
//! ```text
//! metric_loss = L_real + L_synthetic = (1/|V|) Σ_{a ∈ V} [ℓ(a, p, n) + ℓ(a, p̂, n̂)]
//! ```
//!
//! Differences from HDML: HDML scales hardness by the running average loss (`e^{−α/J_avg}`)
//! and trains a generator network to map synthetic points back to label-preserving samples;
//! here the hardness follows training progress and the synthetic points are used directly
//! (no generator). Nothing is read back to the host: the masks that select positives and
//! negatives (and the valid anchors) are built on the host from the batch labels and uploaded
//! ([`TripletInputs`]). Every row of the batch is computed as an anchor and the invalid ones are
//! masked out of the mean, so no shape depends on the labels: the captured training step
//! records the loss once and replays it with each batch's masks.
//!
//! The embedding head is **training-only**: `model.bpk` holds the MobileNetV2 classifier
//! network, the head is dropped at save time, and prediction never uses it.

use burn::prelude::*;
use derma_model::{Embedding, EmbeddingConfig, global_pool};

/// The hard-sample generation constants (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Synthesis {
    /// `η_max`: the hardness factor at the end of training.
    pub hardness: f64,
    /// `λ_max`: the largest extrapolation factor of the positive.
    pub lambda_max: f64,
    /// `(m0, m1)`: the reverse-triplet margin at the start and the end of training.
    pub reverse_margin: (f64, f64),
}

impl Synthesis {
    /// The defaults for triplet margin `m`: `η_max = 0.5`, `λ_max = 2`, `m_r` from `m` to `m/2`.
    pub fn new(margin: f64) -> Self {
        Self { hardness: 0.5, lambda_max: 2.0, reverse_margin: (margin, margin / 2.0) }
    }

    /// `η(t) = η_max · t`, `t` clamped to `[0, 1]`.
    pub fn hardness_at(&self, progress: f64) -> f64 {
        self.hardness * progress.clamp(0.0, 1.0)
    }

    /// `m_r(t) = m0 + (m1 − m0) · t`, `t` clamped to `[0, 1]`.
    pub fn reverse_margin_at(&self, progress: f64) -> f64 {
        let (m0, m1) = self.reverse_margin;
        m0 + (m1 - m0) * progress.clamp(0.0, 1.0)
    }
}

/// The metric-learning settings of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricConfig {
    /// Weight of the metric loss in the total loss (`--metric-weight`).
    pub weight: f64,
    /// Triplet margin `m` (`--triplet-margin`).
    pub margin: f64,
    /// Embedding dimension (`--embedding-dim`).
    pub dim: usize,
    /// Hard-sample generation.
    pub synthesis: Synthesis,
}

impl MetricConfig {
    /// `weight`, `margin`, `dim` with the default synthesis for `margin`.
    pub fn new(weight: f64, margin: f64, dim: usize) -> Self {
        Self { weight, margin, dim, synthesis: Synthesis::new(margin) }
    }
}

/// The training-only embedding head and its loss settings.
#[derive(Debug, Clone)]
pub struct MetricHead {
    /// The head (on the training device).
    pub embedding: Embedding,
    /// Loss settings.
    pub config: MetricConfig,
}

impl MetricHead {
    /// A fresh head on `device` for a network whose pooled features have `last_channel`
    /// channels.
    pub fn new(config: MetricConfig, last_channel: usize, device: &Device) -> Self {
        Self { embedding: EmbeddingConfig::new(last_channel).with_dim(config.dim).init(device), config }
    }

    /// Embeddings of a feature map (`[batch, c, h, w]` → `[batch, dim]`).
    pub fn embed(&self, features: Tensor<4>) -> Tensor<2> {
        self.embedding.forward(global_pool(features))
    }

    /// The metric loss of a feature map (`[batch, c, h, w]`) with the batch's
    /// [`TripletInputs`]: [`metric_loss_masked`] of its embeddings (`[1]`, 0 without a valid
    /// anchor), before `weight`.
    pub fn loss(&self, features: Tensor<4>, inputs: &TripletInputs) -> Tensor<1> {
        metric_loss_masked(self.embed(features), inputs, &self.config)
    }
}

/// The batch-hard triplets of a batch: for every anchor, its row, its farthest positive and its
/// nearest negative (`[n, dim]` each: `n = |V|` from [`batch_hard`]; every row of the batch, the
/// invalid ones masked later, inside [`metric_loss_masked`]).
pub struct Triplets {
    /// Anchors.
    pub anchors: Tensor<2>,
    /// Farthest positive of each anchor.
    pub positives: Tensor<2>,
    /// Nearest negative of each anchor.
    pub negatives: Tensor<2>,
}

/// Anchors with at least one positive (same label, another sample) and one negative.
pub fn valid_anchors(labels: &[usize]) -> Vec<usize> {
    (0..labels.len())
        .filter(|&a| {
            let pos = labels.iter().enumerate().any(|(j, &l)| j != a && l == labels[a]);
            let neg = labels.iter().any(|&l| l != labels[a]);
            pos && neg
        })
        .collect()
}

/// What the metric loss takes besides the embeddings, as tensors of shapes fixed by the batch
/// size: the masks built on the host from the batch labels and the synthesis schedule at the
/// current training progress. Every row of the batch is an anchor and the invalid ones are
/// masked out, so the loss's shapes never depend on the labels — the captured training step
/// ([`crate::captured_step`]) copies a new batch's values into the same tensors and replays.
#[derive(Debug, Clone)]
pub struct TripletInputs {
    /// `[b, b]`: 1 where `j` is a positive of anchor `i` (same label, `j ≠ i`).
    pub positive: Tensor<2>,
    /// `[b, b]`: 1 where `j` is a negative of anchor `i` (another label).
    pub negative: Tensor<2>,
    /// `[b, 1]`: 1 for a valid anchor ([`valid_anchors`]).
    pub valid: Tensor<2>,
    /// `[1, 1]`: `1 / |V|`, 0 without a valid anchor (the loss is then 0).
    pub inverse_count: Tensor<2>,
    /// `[1, 1]`: `η(t)` ([`Synthesis::hardness_at`]).
    pub hardness: Tensor<2>,
    /// `[1, 1]`: `m_r(t)` ([`Synthesis::reverse_margin_at`]).
    pub reverse_margin: Tensor<2>,
}

impl TripletInputs {
    /// The inputs of a batch with `labels` at training progress `progress`, on `device`, and
    /// the number of valid anchors.
    pub fn new(labels: &[usize], synthesis: &Synthesis, progress: f64, device: &Device) -> (Self, usize) {
        let b = labels.len();
        let valid = valid_anchors(labels);
        let mut positive = Vec::with_capacity(b * b);
        let mut negative = Vec::with_capacity(b * b);
        for (i, &li) in labels.iter().enumerate() {
            for (j, &l) in labels.iter().enumerate() {
                positive.push(if j != i && l == li { 1.0f32 } else { 0.0 });
                negative.push(if l != li { 1.0f32 } else { 0.0 });
            }
        }
        let mut is_valid = vec![0.0f32; b];
        for &a in &valid {
            is_valid[a] = 1.0;
        }
        let inverse = if valid.is_empty() { 0.0 } else { 1.0 / valid.len() as f32 };
        let scalar = |v: f64| Tensor::<2>::from_data(TensorData::new(vec![v as f32], [1, 1]), device);
        let inputs = Self {
            positive: Tensor::from_data(TensorData::new(positive, [b, b]), device),
            negative: Tensor::from_data(TensorData::new(negative, [b, b]), device),
            valid: Tensor::from_data(TensorData::new(is_valid, [b, 1]), device),
            inverse_count: scalar(inverse as f64),
            hardness: scalar(synthesis.hardness_at(progress)),
            reverse_margin: scalar(synthesis.reverse_margin_at(progress)),
        };
        (inputs, valid.len())
    }

    /// Zeros for a batch of `b` on `device`: the stable tensors a captured step copies each
    /// batch's inputs into.
    pub fn zeros(b: usize, device: &Device) -> Self {
        Self {
            positive: Tensor::zeros([b, b], device),
            negative: Tensor::zeros([b, b], device),
            valid: Tensor::zeros([b, 1], device),
            inverse_count: Tensor::zeros([1, 1], device),
            hardness: Tensor::zeros([1, 1], device),
            reverse_margin: Tensor::zeros([1, 1], device),
        }
    }

    /// Copies `fresh`'s values into these tensors, in place where the device allows
    /// ([`derma_model::assign`]).
    pub fn assign(&mut self, fresh: Self) {
        use derma_model::assign;
        assign(&mut self.positive, fresh.positive);
        assign(&mut self.negative, fresh.negative);
        assign(&mut self.valid, fresh.valid);
        assign(&mut self.inverse_count, fresh.inverse_count);
        assign(&mut self.hardness, fresh.hardness);
        assign(&mut self.reverse_margin, fresh.reverse_margin);
    }
}

/// Row-wise `d(x, y) = sqrt(‖x − y‖² + 1e-12)`: `[n, dim]` × `[n, dim]` → `[n, 1]`.
pub fn row_distance(x: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
    x.sub(y).powi_scalar(2).sum_dim(1).add_scalar(1e-12).sqrt()
}

/// Batch-hard mining with every row an anchor: `embeddings` `[b, dim]`, the masks of
/// [`TripletInputs`]. A row without a positive (or negative) gets an arbitrary one, masked out
/// of the loss by [`TripletInputs::valid`].
fn batch_hard_all(embeddings: Tensor<2>, positive: Tensor<2>, negative: Tensor<2>) -> Triplets {
    let [b, _] = embeddings.dims();
    // Squared distances of every anchor to every sample, detached: [b, b].
    let e = embeddings.clone().detach();
    let e_sq = e.clone().powi_scalar(2).sum_dim(1); // [b, 1]
    let d2 = e.clone().matmul(e.transpose()).mul_scalar(-2.0).add(e_sq.clone()).add(e_sq.reshape([1, b])); // [b, b]
    // Farthest positive: non-positives at -1 (below every distance ≥ 0).
    let pos_idx = d2.clone().mul(positive.clone()).add(positive.sub_scalar(1.0)).argmax(1).flatten::<1>(0, 1);
    // Nearest negative: non-negatives pushed up by 1e6 (distances² are ≤ 4 on the sphere).
    let neg_idx = d2.add(negative.neg().add_scalar(1.0).mul_scalar(1e6)).argmin(1).flatten::<1>(0, 1);
    Triplets {
        anchors: embeddings.clone(),
        positives: embeddings.clone().select(0, pos_idx),
        negatives: embeddings.select(0, neg_idx),
    }
}

/// Batch-hard mining (Hermans et al. 2017): `embeddings` `[batch, dim]`, `labels` one per
/// row; the valid anchors' triplets. `None` when no anchor is valid (no triplet in the batch).
pub fn batch_hard(embeddings: Tensor<2>, labels: &[usize]) -> Option<Triplets> {
    let [b, _] = embeddings.dims();
    assert_eq!(b, labels.len(), "one label per embedding");
    let device = embeddings.device();
    let (inputs, v) = TripletInputs::new(labels, &Synthesis::new(0.0), 0.0, &device);
    if v == 0 {
        return None;
    }
    let valid = valid_anchors(labels);
    let valid_idx = Tensor::<1, Int>::from_data(TensorData::new(valid.iter().map(|&i| i as i64).collect::<Vec<_>>(), [v]), &device);
    let t = batch_hard_all(embeddings, inputs.positive, inputs.negative);
    Some(Triplets {
        anchors: t.anchors.select(0, valid_idx.clone()),
        positives: t.positives.select(0, valid_idx.clone()),
        negatives: t.negatives.select(0, valid_idx),
    })
}

/// `ℓ = max(0, m + d(a, p) − d(a, n))` per triplet: `[n, 1]`.
pub fn triplet_hinge(anchors: Tensor<2>, positives: Tensor<2>, negatives: Tensor<2>, margin: f64) -> Tensor<2> {
    let d_ap = row_distance(anchors.clone(), positives);
    let d_an = row_distance(anchors, negatives);
    d_ap.sub(d_an).add_scalar(margin).clamp_min(0.0)
}

/// `(1/|V|) Σ_{a ∈ V} values_a`: `values` `[b, 1]`, masked by `inputs` → `[1]`.
fn mean_over_valid(values: Tensor<2>, inputs: &TripletInputs) -> Tensor<1> {
    values.mul(inputs.valid.clone()).sum().mul(inputs.inverse_count.clone().reshape([1]))
}

/// The batch-hard triplet loss `L_real` (`[1]`; `None` without a valid anchor).
pub fn batch_hard_triplet_loss(embeddings: Tensor<2>, labels: &[usize], margin: f64) -> Option<Tensor<1>> {
    let (inputs, v) = TripletInputs::new(labels, &Synthesis::new(margin), 0.0, &embeddings.device());
    if v == 0 {
        return None;
    }
    let t = batch_hard_all(embeddings, inputs.positive.clone(), inputs.negative.clone());
    Some(mean_over_valid(triplet_hinge(t.anchors, t.positives, t.negatives, margin), &inputs))
}

/// The synthetic positives `p̂` and negatives `n̂` of `triplets` at training progress
/// `progress` (see the module docs).
pub fn synthesize(t: &Triplets, synthesis: &Synthesis, progress: f64) -> (Tensor<2>, Tensor<2>) {
    let device = t.anchors.device();
    let scalar = |v: f64| Tensor::<2>::from_data(TensorData::new(vec![v as f32], [1, 1]), &device);
    synthesize_at(t, scalar(synthesis.hardness_at(progress)), scalar(synthesis.reverse_margin_at(progress)), synthesis.lambda_max)
}

/// [`synthesize`] with `η(t)` and `m_r(t)` as `[1, 1]` tensors.
fn synthesize_at(t: &Triplets, hardness: Tensor<2>, reverse_margin: Tensor<2>, lambda_max: f64) -> (Tensor<2>, Tensor<2>) {
    let (a, p, n) = (t.anchors.clone(), t.positives.clone(), t.negatives.clone());
    // Stage 1: λ from detached distances.
    let d_ap = row_distance(a.clone().detach(), p.clone().detach()); // [v, 1]
    let d_an = row_distance(a.clone().detach(), n.clone().detach());
    let slack = d_an.sub(d_ap.clone()).clamp_min(0.0);
    let lambda = slack
        .div(d_ap.clamp_min(1e-6))
        .mul(hardness)
        .add_scalar(1.0)
        .clamp_max(lambda_max); // [v, 1]
    let p_hat = a.clone() + p.sub(a.clone()).mul(lambda);
    // Stage 2: μ from detached points.
    let (ad, pd, nd) = (a.clone().detach(), p_hat.clone().detach(), n.clone().detach());
    let r = row_distance(ad.clone(), pd.clone()).add(reverse_margin); // [v, 1]
    let c = ad.clone().add(pd).div_scalar(2.0);
    let u = nd.clone().sub(ad);
    let v = c.sub(nd);
    let qa = v.clone().powi_scalar(2).sum_dim(1);
    let qb = u.clone().mul(v).sum_dim(1).mul_scalar(2.0);
    let qc = u.powi_scalar(2).sum_dim(1).sub(r.powi_scalar(2)).clamp_min(0.0); // C⁺: 0 ⇒ μ = 0
    let disc = qb.clone().powi_scalar(2).sub(qa.mul(qc.clone()).mul_scalar(4.0)).clamp_min(0.0);
    let mu = qc
        .mul_scalar(2.0)
        .div(qb.neg().add(disc.sqrt()).clamp_min(1e-12))
        .clamp(0.0, 1.0); // [v, 1]
    let midpoint = a.add(p_hat.clone()).div_scalar(2.0);
    let n_hat = n.clone() + midpoint.sub(n).mul(mu);
    (p_hat, n_hat)
}

/// The metric loss of a batch, `L_real + L_synthetic` (`[1]`), from tensors whose shapes
/// depend only on the batch size ([`TripletInputs`]; 0 when the batch has no valid anchor):
/// what the captured training step records.
pub fn metric_loss_masked(embeddings: Tensor<2>, inputs: &TripletInputs, config: &MetricConfig) -> Tensor<1> {
    let t = batch_hard_all(embeddings, inputs.positive.clone(), inputs.negative.clone());
    let (p_hat, n_hat) = synthesize_at(&t, inputs.hardness.clone(), inputs.reverse_margin.clone(), config.synthesis.lambda_max);
    let real = triplet_hinge(t.anchors.clone(), t.positives, t.negatives, config.margin);
    let synthetic = triplet_hinge(t.anchors, p_hat, n_hat, config.margin);
    mean_over_valid(real + synthetic, inputs)
}

/// The metric loss of a batch: `L_real + L_synthetic` (`[1]`), and the number of valid
/// anchors; `None` when the batch has no valid anchor.
pub fn metric_loss(embeddings: Tensor<2>, labels: &[usize], config: &MetricConfig, progress: f64) -> Option<(Tensor<1>, usize)> {
    let (inputs, v) = TripletInputs::new(labels, &config.synthesis, progress, &embeddings.device());
    (v > 0).then(|| (metric_loss_masked(embeddings, &inputs, config), v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_anchors_need_a_positive_and_a_negative() {
        assert_eq!(valid_anchors(&[0, 0, 1]), vec![0, 1]);
        assert_eq!(valid_anchors(&[0, 0, 0]), Vec::<usize>::new());
        assert_eq!(valid_anchors(&[0, 1, 2, 2]), vec![2, 3]);
    }

    #[test]
    fn no_valid_anchor_gives_no_loss() {
        let device = Device::flex();
        let e = Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &device);
        assert!(batch_hard_triplet_loss(e.clone(), &[0, 1], 0.2).is_none());
        assert!(metric_loss(e, &[3, 3], &MetricConfig::new(1.0, 0.2, 2), 0.5).is_none());
    }
}
