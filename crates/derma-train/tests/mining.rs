//! Hard-example mining and the metric-learning auxiliary loss: the weighted draw and its
//! composition with the samplers, the mining multipliers, the batch-hard triplet loss against
//! a numpy reference, the synthetic hard samples, the triplet gradient against finite
//! differences, one training step with the head, and `derma-train` end to end.

mod common;
use common::{colour_run_dir, derma_predict, derma_train, text};


use burn::prelude::*;
use derma_data::Sampler;
use derma_data::sampler::weighted_draw;
use derma_model::MobileNetV2Config;
use derma_train::metric::{
    MetricConfig, MetricHead, Synthesis, Triplets, batch_hard, batch_hard_triplet_loss, metric_loss, row_distance,
    synthesize, triplet_hinge,
};
use derma_train::mining::{MiningConfig, competing, multipliers};
use derma_train::step::{AdamWSettings, TrainStep};
use derma_train::LossConfig;

// ---------------------------------------------------------------- weighted draw

/// `|count − N p| ≤ 5 sqrt(N p (1 − p))`: a 5σ binomial bound per index (a correct sampler
/// fails it with probability ~6e-7 per index; the draws are seeded, so the test is
/// deterministic anyway).
fn assert_binomial(counts: &[usize], probs: &[f64], n: usize) {
    for (i, (&c, &p)) in counts.iter().zip(probs).enumerate() {
        let mean = n as f64 * p;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!((c as f64 - mean).abs() <= 5.0 * sd + 1e-9, "index {i}: drawn {c} times, expected {mean:.1} ± {:.1}", 5.0 * sd);
    }
}

fn counts(idx: &[usize], len: usize) -> Vec<usize> {
    let mut c = vec![0; len];
    for &i in idx {
        c[i] += 1;
    }
    c
}

#[test]
fn weighted_draw_frequencies_match_the_weights() {
    let weights = [1.0, 2.0, 3.0, 4.0, 0.0, 10.0];
    let total: f64 = weights.iter().sum();
    let probs: Vec<f64> = weights.iter().map(|w| w / total).collect();
    let n = 200_000;
    let idx = weighted_draw(&weights, n, 11, 3);
    assert_eq!(idx.len(), n);
    let c = counts(&idx, weights.len());
    assert_eq!(c[4], 0, "a zero weight is never drawn");
    assert_binomial(&c, &probs, n);
    // a uniform draw would be far outside the bound: index 0 would get 1/6 instead of 1/20
    assert!((c[0] as f64 / n as f64) < 0.06);
}

#[test]
fn weighted_draw_is_deterministic_per_seed_and_epoch() {
    let weights = [0.5, 1.0, 1.5, 2.0];
    let a = weighted_draw(&weights, 50, 7, 2);
    assert_eq!(a, weighted_draw(&weights, 50, 7, 2), "same (seed, epoch), same draw");
    assert_ne!(a, weighted_draw(&weights, 50, 7, 3), "another epoch draws again");
    assert_ne!(a, weighted_draw(&weights, 50, 8, 2), "another seed draws again");
    assert!(weighted_draw(&weights, 0, 7, 2).is_empty());
}

/// 90 negatives, 10 positives.
fn labels() -> Vec<usize> {
    (0..100).map(|i| usize::from(i % 10 == 0)).collect()
}

#[test]
fn the_weighted_sampler_is_the_weighted_draw_of_its_weights() {
    let labels = labels();
    let s = Sampler::Weighted { power: 0.5, samples_per_epoch: Some(300) };
    let weights = Sampler::sample_weights(&labels, 2, 0.5);
    assert_eq!(s.epoch_indices(&labels, 2, 5, 1), weighted_draw(&weights, 300, 5, 1));
    // unit multipliers leave the weighted sampler's draw exactly as it is
    assert_eq!(s.epoch_indices_with_multipliers(&labels, 2, &[1.0; 100], 5, 1), s.epoch_indices(&labels, 2, 5, 1));
}

#[test]
fn multipliers_compose_with_every_sampler() {
    let labels = labels();
    // none: base 1, N draws; undersample: keep probability, undersampling's epoch size
    let (w, n) = Sampler::Shuffle.base_weights(&labels, 2);
    assert_eq!((w, n), (vec![1.0; 100], 100));
    let (w, n) = Sampler::Undersample { ratio: 2.0 }.base_weights(&labels, 2);
    assert_eq!(n, 30, "20 negatives + 10 positives, as undersampling draws");
    assert!((w[1] - 20.0 / 90.0).abs() < 1e-12 && w[0] == 1.0, "{:?}", &w[..2]);

    // weighted (power 1) with 9 mined negatives at 1 + 2: image i drawn ∝ (1/n_c) × m_i
    let mut m = vec![1.0; 100];
    let mined: Vec<usize> = (1..10).collect(); // negatives 1..=9
    for &i in &mined {
        m[i] = 3.0;
    }
    let s = Sampler::Weighted { power: 1.0, samples_per_epoch: Some(300_000) };
    let idx = s.epoch_indices_with_multipliers(&labels, 2, &m, 1, 4);
    let c = counts(&idx, 100);
    let weights: Vec<f64> = labels.iter().zip(&m).map(|(&l, &x)| if l == 1 { 0.1 } else { x / 90.0 }).collect();
    let total: f64 = weights.iter().sum();
    let probs: Vec<f64> = weights.iter().map(|w| w / total).collect();
    assert_binomial(&c, &probs, idx.len());
    // the class share: positives 1 / (1 + 108/90)
    let pos = idx.iter().filter(|&&i| labels[i] == 1).count() as f64 / idx.len() as f64;
    assert!((pos - 1.0 / 2.2).abs() < 0.005, "positive share {pos}");

    // undersampling with the same multipliers: 30 draws per epoch, mined negatives 3x as
    // often as the other negatives over many epochs
    let s = Sampler::Undersample { ratio: 2.0 };
    let (mut mined_draws, mut other_draws) = (0usize, 0usize);
    for epoch in 0..4000 {
        let idx = s.epoch_indices_with_multipliers(&labels, 2, &m, 0, epoch);
        assert_eq!(idx.len(), 30);
        for i in idx {
            if mined.contains(&i) {
                mined_draws += 1;
            } else if labels[i] == 0 {
                other_draws += 1;
            }
        }
    }
    let ratio = (mined_draws as f64 / 9.0) / (other_draws as f64 / 81.0);
    assert!((ratio - 3.0).abs() < 0.15, "a mined negative is drawn {ratio:.3}x as often, expected 3");
}

// ---------------------------------------------------------------- mining multipliers

#[test]
fn exactly_the_top_fraction_of_negatives_gets_the_multiplier() {
    // 10 negatives (label 0) with losses 0.1 .. 1.0 in scrambled order, 3 positives with
    // the highest losses of all: positives never compete in a binary task.
    let labels = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0];
    let neg_losses = [0.5, 0.9, 0.1, 0.7, 1.0, 0.3, 0.2, 0.8, 0.6, 0.4];
    let mut losses = Vec::new();
    let mut n = neg_losses.iter();
    for &l in &labels {
        losses.push(Some(if l == 1 { 5.0 } else { *n.next().unwrap() }));
    }
    let comp = competing(&labels, true);
    let m = multipliers(&losses, &comp, &MiningConfig { fraction: 0.2, strength: 2.0 });
    let up: Vec<usize> = (0..labels.len()).filter(|&i| m.multipliers[i] != 1.0).collect();
    // losses 1.0 and 0.9: the negatives at positions 6 and 2
    assert_eq!(up, vec![2, 6]);
    assert!(up.iter().all(|&i| m.multipliers[i] == 3.0));
    assert_eq!((m.up_weighted, m.ranked, m.competing, m.threshold), (2, 10, 10, Some(0.9)));
    assert!(m.is_active());

    // fraction 0.5 → the 5 highest negatives
    let m = multipliers(&losses, &comp, &MiningConfig { fraction: 0.5, strength: 1.0 });
    let mut up: Vec<f64> = (0..labels.len()).filter(|&i| m.multipliers[i] == 2.0).map(|i| losses[i].unwrap()).collect();
    up.sort_by(f64::total_cmp);
    assert_eq!(up, vec![0.6, 0.7, 0.8, 0.9, 1.0]);

    // strength 0: no change at all, and the plain sampler applies
    let m = multipliers(&losses, &comp, &MiningConfig { fraction: 0.2, strength: 0.0 });
    assert!(m.multipliers.iter().all(|&x| x == 1.0));
    assert!(!m.is_active());

    // multi-class: every image competes (hard-example mining): the 3 "positives" now lead
    let m = multipliers(&losses, &competing(&labels, false), &MiningConfig { fraction: 0.25, strength: 1.0 });
    let up: Vec<usize> = (0..labels.len()).filter(|&i| m.multipliers[i] == 2.0).collect();
    assert_eq!(up, vec![1, 5, 10]); // round(0.25 × 13) = 3
}

#[test]
fn images_without_a_loss_are_not_ranked() {
    let losses = [Some(1.0), None, Some(3.0), None, Some(2.0)];
    let m = multipliers(&losses, &[true; 5], &MiningConfig { fraction: 0.4, strength: 1.0 });
    assert_eq!((m.ranked, m.competing, m.up_weighted), (3, 5, 1)); // round(0.4 × 3) = 1
    assert_eq!(m.multipliers, vec![1.0, 1.0, 2.0, 1.0, 1.0]);
}

// ---------------------------------------------------------------- batch-hard triplet loss

/// 10 points in 2-D, labels 0,0,0,1,1,2,2,3,3,4: anchors 0–8 are valid (point 9 is the only
/// one of its class), anchors 7 and 8 already satisfy the margin.
const POINTS: [[f32; 2]; 10] =
    [[0.0, 0.0], [1.0, 0.2], [0.3, 0.9], [2.0, 1.0], [1.6, -0.4], [0.5, -1.2], [-0.7, 0.4], [3.0, -2.0], [3.1, -2.1], [-1.5, -1.5]];
const LABELS: [usize; 10] = [0, 0, 0, 1, 1, 2, 2, 3, 3, 4];

fn points(device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(POINTS.iter().flatten().copied().collect::<Vec<f32>>(), [10, 2]), device)
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

fn rows(t: Tensor<2>) -> Vec<Vec<f64>> {
    let [_, d] = t.dims();
    let v: Vec<f32> = t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    v.chunks(d).map(|r| r.iter().map(|&x| x as f64).collect()).collect()
}

/// The reference, numpy (float64):
///
/// ```python
/// import numpy as np
/// E = np.array([[0.0, 0.0], [1.0, 0.2], [0.3, 0.9], [2.0, 1.0], [1.6, -0.4], [0.5, -1.2],
///               [-0.7, 0.4], [3.0, -2.0], [3.1, -2.1], [-1.5, -1.5]])
/// y = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, 4]); m = 0.3
/// def loss(E):
///     D = np.sqrt(((E[:, None, :] - E[None, :, :]) ** 2).sum(-1) + 1e-12)
///     ls = []
///     for a in range(len(y)):
///         pos = [j for j in range(len(y)) if j != a and y[j] == y[a]]
///         neg = [j for j in range(len(y)) if y[j] != y[a]]
///         if not pos or not neg: continue
///         p = max(pos, key=lambda j: D[a, j]); n = min(neg, key=lambda j: D[a, j])
///         ls.append(max(0.0, m + D[a, p] - D[a, n]))
///     return np.mean(ls)
/// loss(E)  # 0.5592705104517367
/// ```
#[test]
fn batch_hard_triplet_loss_matches_numpy() {
    let device = Device::flex();
    let got = scalar(batch_hard_triplet_loss(points(&device), &LABELS, 0.3).unwrap());
    assert!((got - 0.559_270_510_451_736_7).abs() < 1e-6, "got {got}");
    // the chosen triplets: anchor 0 → farthest positive 1, nearest negative 6
    let t = batch_hard(points(&device), &LABELS).unwrap();
    assert_eq!(t.anchors.dims(), [9, 2]);
    assert_eq!(rows(t.positives.slice([0..1, 0..2])), vec![vec![1.0, 0.2f32 as f64]]);
    assert_eq!(rows(t.negatives.slice([0..1, 0..2])), vec![vec![-0.7f32 as f64, 0.4f32 as f64]]);
}

/// Gradient of the batch-hard loss: autodiff against numpy central differences (float64,
/// h = 1e-6, of the `loss` above) and against central differences of our own forward pass
/// (float32, h = 5e-3; every triplet selection and active hinge is at least 0.07 away from a
/// switch, so the function is smooth there).
#[test]
fn triplet_gradient_matches_finite_differences() {
    let ad = Device::flex().autodiff();
    let e = points(&ad).require_grad();
    let grads = batch_hard_triplet_loss(e.clone(), &LABELS, 0.3).unwrap().backward();
    let g: Vec<f32> = e.grad(&grads).unwrap().into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    let numpy = [
        -0.368114695, -0.035892369, 0.540372278, -0.122710336, -0.177948219, 0.028877021, -0.025714061, 0.144261428,
        -0.21818398, -0.056537148, 0.09059829, -0.075213675, 0.158990386, 0.11721508, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    ];
    for (i, (a, b)) in g.iter().zip(numpy).enumerate() {
        assert!((*a as f64 - b).abs() < 1e-5, "d loss / d e[{i}]: autodiff {a}, numpy {b}");
    }
    let plain = Device::flex();
    let f = |v: &[f32]| scalar(batch_hard_triplet_loss(Tensor::from_data(TensorData::new(v.to_vec(), [10, 2]), &plain), &LABELS, 0.3).unwrap());
    let x0: Vec<f32> = POINTS.iter().flatten().copied().collect();
    let h = 5e-3f32;
    for i in 0..x0.len() {
        let (mut up, mut down) = (x0.clone(), x0.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (f(&up) - f(&down)) / (2.0 * h as f64);
        assert!((fd - g[i] as f64).abs() < 5e-4, "e[{i}]: finite difference {fd}, autodiff {}", g[i]);
    }
}

// ---------------------------------------------------------------- synthetic hard samples

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt()
}

/// Three triplets with the anchor at the origin:
/// 0. `p = (0.5, 0)`, `n = (1.2, 1.6)`: slack 1.5, λ capped at 2, stage 2 active;
/// 1. `p = (0, 1)`, `n = (1.5, 1.5)`: λ = 1 + η · 1.1213 below the cap;
/// 2. `p = (1, 0)`, `n = (−0.8, 0.6)`: no slack (λ = 1) and the negative already within
///    `d(a, p̂) + m_r`: it is not moved (μ = 0).
fn triplets(device: &Device) -> Triplets {
    let t = |v: [[f32; 2]; 3]| Tensor::<2>::from_data(TensorData::new(v.iter().flatten().copied().collect::<Vec<f32>>(), [3, 2]), device);
    Triplets {
        anchors: t([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]),
        positives: t([[0.5, 0.0], [0.0, 1.0], [1.0, 0.0]]),
        negatives: t([[1.2, 1.6], [1.5, 1.5], [-0.8, 0.6]]),
    }
}

#[test]
fn the_reverse_margin_schedule_runs_from_m0_to_m1() {
    let s = Synthesis::new(0.2);
    assert_eq!(s.reverse_margin, (0.2, 0.1));
    assert!((s.reverse_margin_at(0.0) - 0.2).abs() < 1e-12);
    assert!((s.reverse_margin_at(1.0) - 0.1).abs() < 1e-12);
    assert!((s.reverse_margin_at(0.5) - 0.15).abs() < 1e-12);
    assert!((s.reverse_margin_at(7.0) - 0.1).abs() < 1e-12, "clamped after the end");
    assert_eq!((s.hardness_at(0.0), s.hardness_at(1.0), s.lambda_max), (0.0, 0.5, 2.0));
}

#[test]
fn synthetic_positives_are_farther_by_the_expected_factor() {
    let device = Device::flex();
    let t = triplets(&device);
    let s = Synthesis::new(0.2);
    for progress in [0.0, 0.5, 1.0] {
        let (p_hat, _) = synthesize(&t, &s, progress);
        let p_hat = rows(p_hat);
        let p = rows(t.positives.clone());
        let n = rows(t.negatives.clone());
        for i in 0..3 {
            let (d_ap, d_an) = (dist(&[0.0, 0.0], &p[i]), dist(&[0.0, 0.0], &n[i]));
            let lambda = (1.0 + s.hardness_at(progress) * (d_an - d_ap).max(0.0) / d_ap).min(2.0);
            let got = dist(&[0.0, 0.0], &p_hat[i]);
            assert!((got - lambda * d_ap).abs() < 1e-5, "t={progress} row {i}: d(a, p̂) {got}, expected λ d_ap = {}", lambda * d_ap);
            // along the ray from the anchor through p
            assert!((p_hat[i][0] * p[i][1] - p_hat[i][1] * p[i][0]).abs() < 1e-6);
        }
        if progress == 1.0 {
            assert!((dist(&[0.0, 0.0], &p_hat[0]) - 1.0).abs() < 1e-6, "row 0: λ capped at 2 → d = 2 × 0.5");
            assert!((dist(&[0.0, 0.0], &p_hat[1]) - (1.0 + 0.5 * (4.5f64.sqrt() - 1.0))).abs() < 1e-5);
        }
    }
    // no slack: the real positive
    let (p_hat, _) = synthesize(&t, &s, 1.0);
    assert!((dist(&[0.0, 0.0], &rows(p_hat)[2]) - 1.0).abs() < 1e-6);
}

#[test]
fn synthetic_negatives_lie_on_the_segment_and_respect_the_reverse_margin() {
    let device = Device::flex();
    let t = triplets(&device);
    let s = Synthesis::new(0.2);
    for progress in [0.0, 0.3, 1.0] {
        let (p_hat, n_hat) = synthesize(&t, &s, progress);
        let (p_hat, n_hat) = (rows(p_hat), rows(n_hat));
        let n = rows(t.negatives.clone());
        let m_r = s.reverse_margin_at(progress);
        for i in 0..3 {
            let c = [p_hat[i][0] / 2.0, p_hat[i][1] / 2.0]; // midpoint of a = 0 and p̂
            let (v, w) = ([c[0] - n[i][0], c[1] - n[i][1]], [n_hat[i][0] - n[i][0], n_hat[i][1] - n[i][1]]);
            // n̂ − n = μ (c − n) with μ ∈ [0, 1]
            let cross = v[0] * w[1] - v[1] * w[0];
            assert!(cross.abs() < 1e-5, "t={progress} row {i}: n̂ off the line to the midpoint");
            let mu = (v[0] * w[0] + v[1] * w[1]) / (v[0] * v[0] + v[1] * v[1]);
            assert!((-1e-6..=1.0 + 1e-6).contains(&mu), "t={progress} row {i}: μ = {mu}");
            let (d_pos, d_neg) = (dist(&[0.0, 0.0], &p_hat[i]), dist(&[0.0, 0.0], &n_hat[i]));
            if i < 2 {
                // the negative moved exactly to the reverse margin
                assert!(mu > 0.01, "t={progress} row {i}: the negative was not moved");
                assert!((d_neg - (d_pos + m_r)).abs() < 1e-5, "t={progress} row {i}: d(a, n̂) {d_neg}, d(a, p̂) + m_r {}", d_pos + m_r);
            } else {
                assert!(mu.abs() < 1e-6, "row 2: a negative already within the margin stays put");
                assert_eq!(n_hat[i], n[i]);
            }
        }
    }
    // the synthetic triplet's loss is m − m_r(t) where stage 2 acted
    let (p_hat, n_hat) = synthesize(&t, &s, 1.0);
    let l = rows(triplet_hinge(t.anchors.clone(), p_hat, n_hat, 0.2));
    assert!((l[0][0] - 0.1).abs() < 1e-5 && (l[1][0] - 0.1).abs() < 1e-5, "{l:?}");
    // and row_distance is the Euclidean distance
    let d = rows(row_distance(t.anchors.clone(), t.negatives.clone()));
    assert!((d[0][0] - 2.0).abs() < 1e-6);
}

/// `L_real + L_synthetic` at t = 0 and t = 1 against numpy (float64), the module's formulas
/// with η_max 0.5, λ_max 2, m_r from m to m/2, on the `loss` fixture above:
///
/// ```python
/// d = lambda x, z: np.sqrt(((x - z) ** 2).sum() + 1e-12)
/// def total(t):   # same triplets (a, p, n) as `loss`
///     eta, mr = 0.5 * t, m + (m / 2 - m) * t
///     for each triplet: dap, dan = d(a, p), d(a, n)
///         lam = min(1 + eta * max(dan - dap, 0) / max(dap, 1e-6), 2.0); ph = a + lam * (p - a)
///         c = (a + ph) / 2; r = d(a, ph) + mr; u = n - a; v = c - n
///         A, B, C = v @ v, 2 * u @ v, u @ u - r * r
///         mu = 0 if C <= 0 else clip(2 * C / (-B + sqrt(B * B - 4 * A * C)), 0, 1); nh = n + mu * (c - n)
///         real += max(0, m + dap - dan); syn += max(0, m + d(a, ph) - d(a, nh))
///     return mean(real) + mean(syn)
/// total(0.0)  # 1.1185410209034734 (= 2 x real: at t = 0 no triplet changes)
/// total(1.0)  # 1.1589901595192469
/// ```
#[test]
fn the_metric_loss_adds_the_synthetic_triplets() {
    let device = Device::flex();
    let config = MetricConfig::new(1.0, 0.3, 2);
    let (total, anchors) = metric_loss(points(&device), &LABELS, &config, 0.0).unwrap();
    assert_eq!(anchors, 9);
    let total = scalar(total);
    assert!((total - 1.118_541_020_903_473_4).abs() < 1e-5, "t = 0: {total}");
    let (later, _) = metric_loss(points(&device), &LABELS, &config, 1.0).unwrap();
    let later = scalar(later);
    assert!((later - 1.158_990_159_519_246_9).abs() < 1e-5, "t = 1: {later}");
}

// ---------------------------------------------------------------- one step with the head

/// One training step with the metric head, binary and multi-class: the per-sample losses
/// come back, the metric loss is reported and the head's weights move.
#[test]
fn a_step_with_the_metric_head_trains_the_head_and_returns_per_sample_losses() {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    for (k, labels) in [(1usize, vec![0usize, 0, 1, 1, 0, 1]), (3, vec![0, 1, 2, 0, 1, 2])] {
        let config = MobileNetV2Config::new(k).with_width(0.25).with_output_stride(8);
        let model = config.init(&ad);
        let head = MetricHead::new(MetricConfig::new(0.5, 0.2, 8), config.last_channel(), &ad);
        let before: Vec<f32> = head.embedding.projection.weight.val().into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        let mut step = TrainStep::new(LossConfig::ce().init(&ad), AdamWSettings::new(0.0), 1.0).with_metric(head);
        let images = Tensor::<4>::random([6, 3, 28, 28], burn::tensor::Distribution::Normal(0.0, 1.0), &ad);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [6]), &ad);
        let (_model, out) = step.step_full(model, images, targets, &labels, 1e-2, 0.5);
        assert_eq!(out.per_sample.dims(), [6]);
        let per_sample: Vec<f32> = out.per_sample.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        let mean = per_sample.iter().sum::<f32>() / 6.0;
        assert!((mean as f64 - scalar(out.loss)).abs() < 1e-5, "k={k}: the mean loss is the mean of the per-sample losses");
        let (metric, anchors) = out.metric.expect("every anchor has a positive and a negative");
        assert_eq!(anchors, 6);
        assert!(scalar(metric).is_finite());
        let after: Vec<f32> =
            step.metric().unwrap().embedding.projection.weight.val().into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        assert!(before.iter().zip(&after).any(|(a, b)| a != b), "k={k}: the head did not move");
    }
}

// ---------------------------------------------------------------- end to end

/// Binary screening (`mel` = 20 of 140 training images) with both features on: it trains,
/// prints the mining counts (round(0.2 × 120 negatives) = 24) and the triplet loss, writes
/// the run folder, records the new keys, and `model.bpk` stays the plain network (the head
/// is training-only), so `derma-predict` reads it.
#[test]
fn binary_run_with_mining_and_metric_head_writes_the_run_folder() {
    let (_dir, npz, out) = colour_run_dir();
    let o = derma_train(&[
        "--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8",
        "--epochs", "3", "--batch-size", "20", "--lr", "0.003", "--positive-classes", "mel",
        "--hard-negative-mining", "--metric-weight", "0.5", "--out", out.to_str().unwrap(),
    ]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&o.stderr));
    assert!(stdout.contains("mining: 24 of 120 negatives up-weighted for epoch 2"), "{stdout}");
    assert!(stdout.contains("mining: 24 of 120 negatives up-weighted for epoch 3"), "{stdout}");
    assert!(!stdout.contains("for epoch 4"), "no mining line after the last epoch: {stdout}");
    assert!(stdout.contains("metric head: Linear(1280 -> 128)") && stdout.contains("triplet "), "{stdout}");
    for f in ["config.toml", "metrics.csv", "report.json", "predictions.csv", "thresholds.csv", "model.bpk"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert_eq!(std::fs::read_to_string(out.join("metrics.csv")).unwrap().lines().count(), 4);
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    for key in [
        "hard_negative_mining = true", "mining_strength = 2.0", "mining_fraction = 0.2", "metric_weight = 0.5",
        "triplet_margin = 0.2", "embedding_dim = 128",
    ] {
        assert!(config.contains(key), "config.toml lacks `{key}`:\n{config}");
    }
    let csv = out.join("predict.csv");
    let o = derma_predict(&["--run", out.to_str().unwrap(), "--input", npz.to_str().unwrap(), "--split", "test", "--out", csv.to_str().unwrap(), "--backend", "cpu"]);
    assert!(o.status.success(), "derma-predict on the run's model.bpk:\n{}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 57);
}

/// Multi-class with undersampling: hard-example mining over all images (round(0.2 × 140)
/// = 28) on top of the undersampled draw (20 per class here: the classes are balanced).
#[test]
fn multiclass_run_with_mining_on_top_of_undersampling() {
    let (_dir, npz, out) = colour_run_dir();
    let o = derma_train(&[
        "--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8",
        "--epochs", "2", "--batch-size", "35", "--sampler", "undersample", "--hard-negative-mining",
        "--mining-strength", "1", "--metric-weight", "0.2", "--embedding-dim", "16", "--out", out.to_str().unwrap(),
    ]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&o.stderr));
    assert!(stdout.contains("mining: 28 of 140 images (hard-example mining over all classes) up-weighted for epoch 2"), "{stdout}");
    assert!(stdout.contains("drawn x2 as often"), "{stdout}");
    assert!(stdout.contains("Linear(1280 -> 16)"), "{stdout}");
    assert!(out.join("report.json").is_file());
}

/// `--mining-strength 0` changes nothing: the run is identical to one without mining.
#[test]
fn mining_strength_zero_is_the_plain_run() {
    let (dir, npz, out) = colour_run_dir();
    let common = ["--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8", "--epochs", "2",
        "--batch-size", "20", "--positive-classes", "mel"];
    let plain = dir.path().join("plain");
    let o = derma_train(&[&common[..], &["--out", plain.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = derma_train(&[&common[..], &["--hard-negative-mining", "--mining-strength", "0", "--out", out.to_str().unwrap()]].concat());
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(stdout.contains("mining: 0 of 120 negatives up-weighted for epoch 2 (plain sampler)"), "{stdout}");
    let read = |d: &std::path::Path| std::fs::read_to_string(d.join("predictions.csv")).unwrap();
    assert_eq!(read(&plain), read(&out), "strength 0 must not change the run");
}
