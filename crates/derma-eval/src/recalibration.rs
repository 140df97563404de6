//! Recalibration: a map of the logits, fitted on held-out (validation) data, after which the
//! probabilities come true more often than the raw ones ([`crate::calibration`] measures it).
//!
//! Every method scales the logits, `z' = scale · z + bias` with `scale > 0`. For a single
//! (binary) logit that is an increasing map: the ranking (ROC curve, AUC) does not change in
//! exact arithmetic, only the probabilities (and the threshold value that meets a rule). On K
//! classes temperature scaling keeps each image's arg-max but can reorder one class's
//! probabilities *across* images, so the one-vs-rest AUCs may move a little; bias-corrected
//! temperature scaling adds a bias per class, which moves the arg-max on purpose (it corrects the
//! class prior).
//!
//! - [`fit_temperature`], **temperature scaling** (Guo et al. 2017, "On calibration of modern
//!   neural networks"): `softmax(z / T)` with the one `T > 0` that minimises the negative
//!   log-likelihood of the labels (`scale = 1/T`, `bias = 0`); a single logit is the binary
//!   `sigmoid(z / T)`. It fixes over- and under-confidence, not a shifted prior.
//! - [`fit_platt`], **Platt scaling** of a binary logit (Platt 2000), the problem
//!   `sklearn.calibration._sigmoid_calibration` solves (its L-BFGS stops at a gradient of 1e-6:
//!   the two agree to ~1e-6): `sigmoid(a·z + b)` fitted by maximum likelihood
//!   against Platt's smoothed targets `(N₊ + 1)/(N₊ + 2)` and `1/(N₋ + 2)`. Its intercept also
//!   undoes the prior shift that class weights and undersampling put into a binary model.
//! - [`fit_bcts`], **bias-corrected temperature scaling** (Alexandari, Kundaje & Shrikumar 2020,
//!   "Maximum likelihood with bias-corrected calibration is hard-to-beat at label shift
//!   adaptation"): `softmax(z / T + b)` with one bias per class, by maximum likelihood of the
//!   hard labels: the K-class counterpart of Platt's intercept, which undoes the prior shift of
//!   balanced class weights or a balanced sampler. On a single logit it is `sigmoid(z / T + b)`,
//!   an unpenalised logistic regression of the labels on the logit.
//!
//! The objectives are convex; they are solved to machine precision by safeguarded Newton steps
//! (the references, in `tests/recalibration.rs`, are scipy's `brentq` on the derivative,
//! checked against its bounded scalar minimiser, scikit-learn's L-BFGS, and scipy's BFGS with
//! scikit-learn's logistic regression).

use crate::check;
use crate::error::{EvalError, Result};

/// Temperature scaling searches `1/T` in `[1/MAX_TEMPERATURE, 1/MIN_TEMPERATURE]`: a
/// validation split the model separates perfectly pushes `T` towards 0 without end.
pub const MIN_TEMPERATURE: f64 = 0.01;
/// The other end of the search (a model whose logits carry no information: `T → ∞`).
pub const MAX_TEMPERATURE: f64 = 100.0;

/// The logit map `z' = scale · z + bias`: `bias` for a single (binary) logit, `class_bias[k]`
/// for class `k` of a K-class row.
#[derive(Debug, Clone, PartialEq)]
pub struct LogitScaling {
    /// Multiplies every logit (`1/T` for temperature scaling, Platt's slope).
    pub scale: f64,
    /// Added to a single (binary) logit: Platt's intercept; 0 for temperature scaling.
    pub bias: f64,
    /// Added to each class's logit of a K-class row (bias-corrected temperature scaling, centred
    /// to mean 0); empty for none.
    pub class_bias: Vec<f64>,
}

impl LogitScaling {
    /// The map that changes nothing.
    pub const IDENTITY: LogitScaling = LogitScaling { scale: 1.0, bias: 0.0, class_bias: Vec::new() };

    /// The map `scale · z + bias` (no class biases).
    pub fn affine(scale: f64, bias: f64) -> LogitScaling {
        LogitScaling { scale, bias, class_bias: Vec::new() }
    }

    /// The mapped logits of one row: `bias` on a single logit, `class_bias` on K.
    ///
    /// Panics if the row's length differs from a non-empty `class_bias` (readers of a stored
    /// map check it against the class count first).
    pub fn apply(&self, logits: &[f64]) -> Vec<f64> {
        match logits {
            [z] => vec![self.scale * z + self.bias],
            row if self.class_bias.is_empty() => row.iter().map(|z| self.scale * z).collect(),
            row => {
                assert_eq!(row.len(), self.class_bias.len(), "a row of {} logits and {} class biases", row.len(), self.class_bias.len());
                row.iter().zip(&self.class_bias).map(|(z, b)| self.scale * z + b).collect()
            }
        }
    }
}

/// A fitted map and what it did on the data it was fitted to.
#[derive(Debug, Clone, PartialEq)]
pub struct Recalibration {
    /// The map.
    pub scaling: LogitScaling,
    /// Mean negative log-likelihood of the labels (natural log, the plain hard-label
    /// `log_loss`) before the map…
    pub nll_before: f64,
    /// … and after it.
    pub nll_after: f64,
    /// Temperature scaling (plain or bias-corrected): the optimum lies at or beyond an end of
    /// [`MIN_TEMPERATURE`, `MAX_TEMPERATURE`] (the end was taken), or has no finite value.
    pub at_bound: bool,
}

/// Temperature scaling of `logits` (rows of K ≥ 2 class logits, or one binary logit per row
/// with labels 0 / 1) fitted to `labels`: the `T` in [[`MIN_TEMPERATURE`],
/// [`MAX_TEMPERATURE`]] minimising the mean negative log-likelihood.
///
/// Errors on empty input, mismatched lengths, ragged rows, non-finite logits, labels that are
/// not class indices, or labels of one class only.
pub fn fit_temperature<R: AsRef<[f64]>>(labels: &[usize], logits: &[R]) -> Result<Recalibration> {
    let k = check::prob_rows(labels.len(), logits)?;
    check::classes(labels, k.max(2), "label")?;
    if let Some(&first) = labels.first()
        && labels.iter().all(|&l| l == first)
    {
        return Err(EvalError::SingleClass { class: first, n: labels.len(), what: "temperature scaling" });
    }
    // Each row as K ≥ 2 logits: a binary logit z is the pair (0, z).
    let rows: Vec<Vec<f64>> = logits.iter().map(|r| if k == 1 { vec![0.0, r.as_ref()[0]] } else { r.as_ref().to_vec() }).collect();
    // The mean NLL's first and second derivatives in the scale s: with p = softmax(s·z),
    // d/ds = mean(E_p[z] − z_y) and d²/ds² = mean(Var_p[z]) ≥ 0 (convex in s).
    let derivatives = |s: f64| -> (f64, f64) {
        let (mut d1, mut d2) = (0.0, 0.0);
        for (row, &y) in rows.iter().zip(labels) {
            let p = softmax(row, s);
            let mean: f64 = p.iter().zip(row).map(|(p, z)| p * z).sum();
            let var: f64 = p.iter().zip(row).map(|(p, z)| p * (z - mean) * (z - mean)).sum();
            d1 += mean - row[y];
            d2 += var;
        }
        let n = rows.len() as f64;
        (d1 / n, d2 / n)
    };
    let (mut lo, mut hi) = (1.0 / MAX_TEMPERATURE, 1.0 / MIN_TEMPERATURE);
    let (scale, at_bound) = if derivatives(lo).0 >= 0.0 {
        (lo, true)
    } else if derivatives(hi).0 <= 0.0 {
        (hi, true)
    } else {
        // The derivative is increasing, negative at `lo` and positive at `hi`: Newton steps
        // from s = 1, falling back to bisection whenever a step leaves the bracket.
        let mut s = 1.0;
        for _ in 0..200 {
            let (d1, d2) = derivatives(s);
            if d1 == 0.0 {
                break;
            }
            if d1 < 0.0 { lo = s } else { hi = s }
            let newton = s - d1 / d2;
            let next = if d2 > 0.0 && newton > lo && newton < hi { newton } else { 0.5 * (lo + hi) };
            if (next - s).abs() <= 1e-15 * s || hi - lo <= 1e-15 * s {
                s = next;
                break;
            }
            s = next;
        }
        (s, false)
    };
    let nll = |s: f64| rows.iter().zip(labels).map(|(row, &y)| log_sum_exp(row, s) - s * row[y]).sum::<f64>() / rows.len() as f64;
    Ok(Recalibration { scaling: LogitScaling::affine(scale, 0.0), nll_before: nll(1.0), nll_after: nll(scale), at_bound })
}

/// Platt scaling of binary `logits` (one per image) fitted to `positives`: the optimum of
/// `sklearn.calibration._sigmoid_calibration`'s problem (module documentation).
///
/// Errors on empty input, mismatched lengths, non-finite logits, labels of one class only, or
/// logits that do not rank positives above negatives (a fitted slope ≤ 0: the map would
/// reverse or erase their order).
pub fn fit_platt(positives: &[bool], logits: &[f64]) -> Result<Recalibration> {
    check::scores(positives.len(), logits)?;
    let (n_pos, n_neg) = check::both_classes(positives, "Platt scaling")?;
    let (n_pos, n_neg) = (n_pos as f64, n_neg as f64);
    let target: Vec<f64> = positives.iter().map(|&p| if p { (n_pos + 1.0) / (n_pos + 2.0) } else { 1.0 / (n_neg + 2.0) }).collect();
    // Σ softplus(u) − t·u with u = a·z + b: the cross-entropy against the smoothed targets.
    let objective = |a: f64, b: f64| -> f64 {
        logits.iter().zip(&target).map(|(z, t)| softplus(a * z + b) - t * (a * z + b)).sum()
    };
    let (mut a, mut b) = (0.0, ((n_pos + 1.0) / (n_neg + 1.0)).ln());
    let mut value = objective(a, b);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (z, t) in logits.iter().zip(&target) {
            let p = sigmoid(a * z + b);
            let w = p * (1.0 - p);
            ga += (p - t) * z;
            gb += p - t;
            haa += w * z * z;
            hab += w * z;
            hbb += w;
        }
        // The Newton direction; a (nearly) singular Hessian — every logit equal — gets a ridge.
        let ridge = 1e-12 * (haa + hbb).max(f64::MIN_POSITIVE);
        let (haa, hbb) = (haa + ridge, hbb + ridge);
        let det = haa * hbb - hab * hab;
        let (da, db) = ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det);
        // Backtracking until the objective does not grow (it is convex: a small enough
        // Newton step always decreases it).
        let mut step = 1.0;
        let mut moved = false;
        while step > 1e-10 {
            let (na, nb) = (a - step * da, b - step * db);
            let v = objective(na, nb);
            if v <= value {
                moved = (na, nb) != (a, b);
                (a, b, value) = (na, nb, v);
                break;
            }
            step *= 0.5;
        }
        if !moved || (ga.abs() + gb.abs()) <= 1e-13 * logits.len() as f64 {
            break;
        }
    }
    if !(a > 0.0) {
        return Err(EvalError::NotRanking { slope: a });
    }
    let nll = |a: f64, b: f64| {
        logits.iter().zip(positives).map(|(z, &y)| softplus(a * z + b) - if y { a * z + b } else { 0.0 }).sum::<f64>()
            / logits.len() as f64
    };
    Ok(Recalibration { scaling: LogitScaling::affine(a, b), nll_before: nll(1.0, 0.0), nll_after: nll(a, b), at_bound: false })
}

/// Bias-corrected temperature scaling of `logits` (rows of K ≥ 2 class logits, or one binary
/// logit per row with labels 0 / 1) fitted to `labels`: the scale `1/T` and the class biases
/// minimising the mean negative log-likelihood of `softmax(z / T + b)` (module documentation).
/// The K-class biases come centred to mean 0 (softmax ignores a common shift); a binary
/// logit's map is `sigmoid(z / T + bias)`.
///
/// Errors on empty input, mismatched lengths, ragged rows, non-finite logits, labels that are
/// not class indices, labels of one class only, a class without a label (its bias would have
/// no finite optimum), or a fitted scale ≤ 0. A scale outside [`1/MAX_TEMPERATURE`,
/// `1/MIN_TEMPERATURE`] (a split the logits separate perfectly) comes back with `at_bound`.
pub fn fit_bcts<R: AsRef<[f64]>>(labels: &[usize], logits: &[R]) -> Result<Recalibration> {
    const WHAT: &str = "bias-corrected temperature scaling";
    let k = check::prob_rows(labels.len(), logits)?;
    let classes = k.max(2);
    check::classes(labels, classes, "label")?;
    if let Some(&first) = labels.first()
        && labels.iter().all(|&l| l == first)
    {
        return Err(EvalError::SingleClass { class: first, n: labels.len(), what: WHAT });
    }
    let mut counts = vec![0usize; classes];
    labels.iter().for_each(|&l| counts[l] += 1);
    if let Some(class) = counts.iter().position(|&c| c == 0) {
        return Err(EvalError::NoSampleOfClass { class, classes, what: WHAT });
    }
    let rows: Vec<Vec<f64>> = logits.iter().map(|r| if k == 1 { vec![0.0, r.as_ref()[0]] } else { r.as_ref().to_vec() }).collect();
    // The parameters θ = (s, b_1 … b_{K−1}) with b_0 = 0 (softmax ignores a common shift):
    // u = s·z + b, and the summed NLL Σ logsumexp(u) − u_y is convex in θ.
    let mapped = |theta: &[f64], row: &[f64]| -> Vec<f64> {
        row.iter().enumerate().map(|(j, z)| theta[0] * z + if j == 0 { 0.0 } else { theta[j] }).collect()
    };
    let objective = |theta: &[f64]| -> f64 {
        rows.iter().zip(labels).map(|(row, &y)| {
            let u = mapped(theta, row);
            log_sum_exp(&u, 1.0) - u[y]
        }).sum()
    };
    // From the identity map: s = 1, b = 0.
    let mut theta = vec![0.0; classes];
    theta[0] = 1.0;
    let mut value = objective(&theta);
    let start_value = value;
    let mut converged = false;
    for _ in 0..500 {
        // Gradient and Hessian: with p = softmax(u) and the feature of class j,
        // φ_j = (z_j, e_j), g = Σ E_p[φ] − φ_y and H = Σ Cov_p[φ].
        let mut g = vec![0.0; classes];
        let mut h = vec![0.0; classes * classes];
        for (row, &y) in rows.iter().zip(labels) {
            let p = softmax(&mapped(&theta, row), 1.0);
            let ez: f64 = p.iter().zip(row).map(|(p, z)| p * z).sum();
            let ez2: f64 = p.iter().zip(row).map(|(p, z)| p * z * z).sum();
            g[0] += ez - row[y];
            h[0] += ez2 - ez * ez;
            for a in 1..classes {
                g[a] += p[a] - if a == y { 1.0 } else { 0.0 };
                let hsa = p[a] * (row[a] - ez);
                h[a] += hsa;
                h[a * classes] += hsa;
                for c in 1..classes {
                    h[a * classes + c] += if a == c { p[a] } else { 0.0 } - p[a] * p[c];
                }
            }
        }
        let step_dir = solve(&h, &g, classes);
        // Converged when the Newton decrement g·H⁻¹g (twice the predicted decrease) is at the
        // rounding of the objective. A split the logits separate has no optimum: the NLL falls
        // geometrically towards 0 as the scale grows, so the search stops when the scale leaves
        // its range or the NLL underflows to 0, not converged.
        let decrement: f64 = g.iter().zip(&step_dir).map(|(g, d)| g * d).sum();
        if decrement <= 1e-15 * value {
            converged = value > 0.0;
            break;
        }
        if theta[0] > 1.0 / MIN_TEMPERATURE {
            break;
        }
        // Backtracking until the objective does not grow (convex: a small enough Newton step
        // always decreases it).
        let mut step = 1.0;
        let mut moved = false;
        while step > 1e-10 {
            let next: Vec<f64> = theta.iter().zip(&step_dir).map(|(t, d)| t - step * d).collect();
            let v = objective(&next);
            if v <= value {
                moved = next != theta;
                (theta, value) = (next, v);
                break;
            }
            step *= 0.5;
        }
        if !moved {
            converged = true;
            break;
        }
    }
    let scale = theta[0];
    if !(scale > 0.0) {
        return Err(EvalError::NotRanking { slope: scale });
    }
    let at_bound = !converged || !(1.0 / MAX_TEMPERATURE..=1.0 / MIN_TEMPERATURE).contains(&scale);
    let n = rows.len() as f64;
    let (nll_before, nll_after) = (start_value / n, value / n);
    let scaling = if k == 1 {
        LogitScaling::affine(scale, theta[1])
    } else {
        let mut b: Vec<f64> = (0..classes).map(|j| if j == 0 { 0.0 } else { theta[j] }).collect();
        let mean = b.iter().sum::<f64>() / classes as f64;
        b.iter_mut().for_each(|v| *v -= mean);
        LogitScaling { scale, bias: 0.0, class_bias: b }
    };
    Ok(Recalibration { scaling, nll_before, nll_after, at_bound })
}

/// The solution `d` of `(H + ridge·I) d = g` for a symmetric positive semi-definite `n × n`
/// `h` (row-major), by Gaussian elimination with partial pivoting; the ridge (relative to the
/// diagonal) keeps a nearly singular Hessian solvable.
fn solve(h: &[f64], g: &[f64], n: usize) -> Vec<f64> {
    let trace: f64 = (0..n).map(|i| h[i * n + i]).sum();
    let ridge = 1e-12 * trace.max(f64::MIN_POSITIVE);
    let mut a: Vec<Vec<f64>> = (0..n).map(|i| {
        let mut row: Vec<f64> = h[i * n..(i + 1) * n].to_vec();
        row[i] += ridge;
        row.push(g[i]);
        row
    }).collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        let d = a[col][col];
        if d == 0.0 {
            continue;
        }
        let pivot_row = a[col].clone();
        for row in a.iter_mut().skip(col + 1) {
            let f = row[col] / d;
            if f != 0.0 {
                row[col..].iter_mut().zip(&pivot_row[col..]).for_each(|(x, p)| *x -= f * p);
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let tail: f64 = (r + 1..n).map(|c| a[r][c] * x[c]).sum();
        x[r] = if a[r][r] == 0.0 { 0.0 } else { (a[r][n] - tail) / a[r][r] };
    }
    x
}

/// `softmax(s · row)`.
fn softmax(row: &[f64], s: f64) -> Vec<f64> {
    let max = row.iter().map(|z| s * z).fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|z| (s * z - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// `log Σ exp(s · z)`.
fn log_sum_exp(row: &[f64], s: f64) -> f64 {
    let max = row.iter().map(|z| s * z).fold(f64::NEG_INFINITY, f64::max);
    max + row.iter().map(|z| (s * z - max).exp()).sum::<f64>().ln()
}

/// `log(1 + e^u)` without overflow.
fn softplus(u: f64) -> f64 {
    if u > 0.0 { u + (-u).exp().ln_1p() } else { u.exp().ln_1p() }
}

/// `1 / (1 + e^-u)` without overflow.
fn sigmoid(u: f64) -> f64 {
    if u >= 0.0 { 1.0 / (1.0 + (-u).exp()) } else { u.exp() / (1.0 + u.exp()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_keeps_order_and_scales_only_a_single_logit_with_a_bias() {
        let m = LogitScaling::affine(0.5, -1.0);
        assert_eq!(m.apply(&[4.0]), vec![1.0]);
        assert_eq!(m.apply(&[4.0, -2.0, 0.0]), vec![2.0, -1.0, 0.0]);
        assert_eq!(LogitScaling::IDENTITY.apply(&[3.0, 1.0]), vec![3.0, 1.0]);
        let c = LogitScaling { scale: 2.0, bias: 0.0, class_bias: vec![0.5, -0.5] };
        assert_eq!(c.apply(&[1.0, 1.0]), vec![2.5, 1.5]);
    }

    #[test]
    fn temperature_of_an_over_confident_model_is_above_one() {
        // Logits ±4 that are right 75 % of the time: the NLL-optimal softmax(s·z) puts 0.75 on
        // the arg-max, s·8 = ln 3 (two classes, z = (4, −4) or (−4, 4)): s = ln(3)/8.
        let logits: Vec<Vec<f64>> = (0..8).map(|i| if i % 2 == 0 { vec![4.0, -4.0] } else { vec![-4.0, 4.0] }).collect();
        let labels = vec![0, 1, 0, 1, 0, 1, 1, 0]; // rows 6 and 7 wrong
        let r = fit_temperature(&labels, &logits).unwrap();
        assert!((r.scaling.scale - 3f64.ln() / 8.0).abs() < 1e-12, "{r:?}");
        assert!(r.nll_after < r.nll_before && !r.at_bound);
        // The same as one binary logit z1 − z0 = ±8: s·8 = ln 3 again.
        let single: Vec<Vec<f64>> = logits.iter().map(|r| vec![r[1] - r[0]]).collect();
        let b = fit_temperature(&labels, &single).unwrap();
        assert!((b.scaling.scale - 3f64.ln() / 8.0).abs() < 1e-12, "{b:?}");
    }

    #[test]
    fn temperature_stops_at_its_bounds() {
        // Perfectly separated: T → 0, clipped at MIN_TEMPERATURE.
        let r = fit_temperature(&[0, 1], &[vec![1.0, 0.0], vec![0.0, 1.0]]).unwrap();
        assert_eq!((r.scaling.scale, r.at_bound), (1.0 / MIN_TEMPERATURE, true));
        // Always wrong: the NLL falls as s → 0, clipped at 1/MAX_TEMPERATURE.
        let r = fit_temperature(&[1, 0], &[vec![1.0, 0.0], vec![0.0, 1.0]]).unwrap();
        assert_eq!((r.scaling.scale, r.at_bound), (1.0 / MAX_TEMPERATURE, true));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(fit_temperature::<Vec<f64>>(&[], &[]), Err(EvalError::Empty));
        assert!(matches!(fit_temperature(&[0, 0], &[vec![1.0, 0.0], vec![0.0, 1.0]]), Err(EvalError::SingleClass { .. })));
        assert!(matches!(fit_temperature(&[0, 2], &[vec![1.0, 0.0], vec![0.0, 1.0]]), Err(EvalError::BadClass { .. })));
        assert!(matches!(fit_temperature(&[0, 1], &[vec![f64::NAN], vec![0.0]]), Err(EvalError::NotFinite { .. })));
        assert!(matches!(fit_platt(&[true, true], &[1.0, 2.0]), Err(EvalError::OneClass { .. })));
        // Positives below the negatives: the slope comes out negative.
        let e = fit_platt(&[true, false, true, false], &[-2.0, 2.0, -1.0, 1.0]).unwrap_err();
        assert!(matches!(e, EvalError::NotRanking { slope } if slope < 0.0), "{e:?}");
        assert!(e.to_string().contains("slope"), "{e}");
    }

    #[test]
    fn platt_zero_gradient_at_its_optimum() {
        // The stationarity conditions of the smoothed-target likelihood (its gradient in b and
        // in a): Σ (p − t) = 0 and Σ (p − t)·z = 0 at the fitted (a, b).
        let z = [-3.0, -2.5, -1.0, -0.5, 0.0, 0.3, 1.0, 2.0, 2.2, 4.0];
        let y = [false, false, true, false, false, true, false, true, true, true];
        let r = fit_platt(&y, &z).unwrap();
        let (np, nn) = (5.0, 5.0);
        let (mut g0, mut g1) = (0.0, 0.0);
        for (z, &y) in z.iter().zip(&y) {
            let t = if y { (np + 1.0) / (np + 2.0) } else { 1.0 / (nn + 2.0) };
            let p = sigmoid(r.scaling.scale * z + r.scaling.bias);
            g0 += p - t;
            g1 += (p - t) * z;
        }
        assert!(g0.abs() < 1e-12 && g1.abs() < 1e-12, "{g0} {g1}");
        assert!(r.scaling.scale > 0.0);
    }
}
