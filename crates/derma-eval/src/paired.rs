//! Two models on the same test images: is the difference more than the test set's noise?
//! Each image is scored by both, so the two figures are correlated and must be compared
//! paired — two separate confidence intervals that overlap say little about their difference.
//!
//! - [`delong_paired`]: DeLong's test of two correlated ROC AUCs (pROC's
//!   `roc.test(method = "delong", paired = TRUE)`).
//! - [`mcnemar_exact`]: McNemar's exact test of two paired proportions — accuracy, or
//!   sensitivity on the positives and specificity on the negatives.
//! - [`paired_bootstrap`]: a percentile interval of any difference (macro AUC, balanced
//!   accuracy), resampling the images within each class with a seeded generator.
//!
//! References (checked in `tests/paired.rs` against `scripts/reference_compare.py`): DeLong
//! from its definition (ψ matrices), `scipy.stats.binomtest(k, n, 0.5)`, and the bootstrap
//! re-run in numpy on the same draws ([`SplitMix64`]) with scikit-learn's `roc_auc_score` and
//! `balanced_accuracy_score`.

use crate::check;
use crate::error::{EvalError, Result};
use crate::interval::{Z95, auc_components, sample_variance};

/// DeLong's test of `auc_b − auc_a` on the same cases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedAuc {
    /// ROC AUC of the first model's scores.
    pub auc_a: f64,
    /// ROC AUC of the second model's scores.
    pub auc_b: f64,
    /// `auc_b − auc_a`.
    pub difference: f64,
    /// Standard error of the difference.
    pub std_error: f64,
    /// Two-sided p-value of "no difference" (1 when both score the cases identically).
    pub p_value: f64,
    /// 95 % interval of the difference, `difference ∓ z · std_error`.
    pub ci95: (f64, f64),
}

/// DeLong's test of two correlated ROC AUCs (DeLong, DeLong & Clarke-Pearson 1988): `a` and `b`
/// score the same cases (`labels`, `true` = positive). With `V₁₀` (each positive's share of
/// negatives scored below it, ties one half) and `V₀₁` (each negative's share of positives
/// scored above it) per model, `Var(B − A) = (S₁₀ᴬᴬ + S₁₀ᴮᴮ − 2 S₁₀ᴬᴮ)/m + (S₀₁ᴬᴬ + S₀₁ᴮᴮ − 2 S₀₁ᴬᴮ)/n`
/// with sample (co)variances over the `m` positives and `n` negatives; `z = (B − A)/√Var`, the
/// p-value `2 (1 − Φ(|z|))`. This is pROC's `roc.test(method = "delong", paired = TRUE)`.
///
/// Errors as [`auc_delong95`](crate::auc_delong95), and when `a` and `b` differ in length.
pub fn delong_paired(labels: &[bool], a: &[f64], b: &[f64]) -> Result<PairedAuc> {
    check::scores(labels.len(), b)?;
    let (va10, va01) = auc_components(labels, a)?;
    let (vb10, vb01) = auc_components(labels, b)?;
    let (m, n) = (va10.len() as f64, va01.len() as f64);
    let (auc_a, auc_b) = (va10.iter().sum::<f64>() / m, vb10.iter().sum::<f64>() / m);
    // The variance of B − A over the cases is that of the per-case differences.
    let d10: Vec<f64> = vb10.iter().zip(&va10).map(|(b, a)| b - a).collect();
    let d01: Vec<f64> = vb01.iter().zip(&va01).map(|(b, a)| b - a).collect();
    let variance = sample_variance(&d10) / m + sample_variance(&d01) / n;
    let difference = auc_b - auc_a;
    let std_error = variance.max(0.0).sqrt();
    let p_value = if std_error > 0.0 { normal_two_sided(difference / std_error) } else { 1.0 };
    Ok(PairedAuc { auc_a, auc_b, difference, std_error, p_value, ci95: (difference - Z95 * std_error, difference + Z95 * std_error) })
}

/// McNemar's exact test of two paired proportions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct McNemar {
    /// Cases the first model gets right and the second wrong.
    pub only_a: u64,
    /// Cases the second model gets right and the first wrong.
    pub only_b: u64,
    /// Two-sided exact p-value of "both models are right equally often".
    pub p_value: f64,
}

/// McNemar's exact test (the mid-p is not used): of the `k = only_a + only_b` discordant cases,
/// under "no difference" each is equally likely to favour either model, so the two-sided
/// p-value is `min(1, 2 · P[Binomial(k, ½) ≤ min(only_a, only_b)])` — scipy's
/// `binomtest(min, k, 0.5).pvalue`, statsmodels' `mcnemar(table, exact=True)`; 1 with no
/// discordant case. `a_right[i]`, `b_right[i]`: whether each model is right on case `i`.
///
/// Errors when the slices are empty or differ in length.
pub fn mcnemar_exact(a_right: &[bool], b_right: &[bool]) -> Result<McNemar> {
    if a_right.is_empty() {
        return Err(EvalError::Empty);
    }
    if a_right.len() != b_right.len() {
        return Err(EvalError::LengthMismatch { labels: a_right.len(), predictions: b_right.len() });
    }
    let only_a = a_right.iter().zip(b_right).filter(|&(&a, &b)| a && !b).count() as u64;
    let only_b = a_right.iter().zip(b_right).filter(|&(&a, &b)| b && !a).count() as u64;
    let p = (2.0 * binomial_half_cdf(only_a.min(only_b), only_a + only_b)).min(1.0);
    Ok(McNemar { only_a, only_b, p_value: p })
}

/// `P[Binomial(n, ½) ≤ k]`, summed in the log domain (`½ⁿ` underflows past n = 1074).
fn binomial_half_cdf(k: u64, n: u64) -> f64 {
    if k >= n {
        return 1.0;
    }
    // ln C(n, i) ½ⁿ for i = 0..=k, each from the one before.
    let mut terms = Vec::with_capacity(k as usize + 1);
    let mut term = -(n as f64) * std::f64::consts::LN_2;
    for i in 0..=k {
        terms.push(term);
        term += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (top + terms.iter().map(|t| (t - top).exp()).sum::<f64>().ln()).exp().min(1.0)
}

/// `2 (1 − Φ(|z|))`, the two-sided normal tail (scipy's `2 * norm.sf(abs(z))`).
fn normal_two_sided(z: f64) -> f64 {
    libm::erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// A bootstrap percentile interval.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapInterval {
    /// The statistic on the cases as they are.
    pub estimate: f64,
    /// 2.5th and 97.5th percentiles of the resampled statistic (numpy's default, linear
    /// interpolation between order statistics).
    pub ci95: (f64, f64),
    /// Resamples drawn.
    pub resamples: usize,
}

/// Sebastiano Vigna's SplitMix64: a 64-bit generator simple enough to re-run bit for bit in
/// another language, which is what lets a test compare this bootstrap with numpy's
/// and scikit-learn's figures on the same resamples.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index below `len` (`len > 0`): `⌊u · len⌋` with `u` the top 53 bits in [0, 1).
    pub fn below(&mut self, len: usize) -> usize {
        let u = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        ((u * len as f64) as usize).min(len - 1)
    }
}

/// A paired, class-stratified bootstrap of a statistic of the cases: each resample draws, for
/// each class in order, as many cases of that class as it has, with replacement (so every
/// resample keeps the class counts, and a macro AUC or balanced accuracy stays defined even for
/// a class of five cases), and evaluates `statistic` on the drawn case indices. Both models are
/// resampled together (the same cases), which is what makes the interval of a *difference*
/// paired. Draws: `resamples` rounds × classes in order × cases of the class, each
/// [`SplitMix64::below`] the class's size, the class's cases in ascending index order.
///
/// Errors when `labels` is empty, a label is not below `n_classes`, `resamples` is 0, or
/// `statistic` fails (on the cases as they are or on a resample).
pub fn paired_bootstrap<F>(labels: &[usize], n_classes: usize, resamples: usize, seed: u64, statistic: F) -> Result<BootstrapInterval>
where
    F: Fn(&[usize]) -> Result<f64>,
{
    if labels.is_empty() {
        return Err(EvalError::Empty);
    }
    if n_classes == 0 {
        return Err(EvalError::NoClasses);
    }
    check::classes(labels, n_classes, "label")?;
    if resamples == 0 {
        return Err(EvalError::TooFewResamples);
    }
    let by_class: Vec<Vec<usize>> = (0..n_classes).map(|c| (0..labels.len()).filter(|&i| labels[i] == c).collect()).collect();
    let all: Vec<usize> = (0..labels.len()).collect();
    let estimate = statistic(&all)?;
    let mut rng = SplitMix64::new(seed);
    let mut values = Vec::with_capacity(resamples);
    let mut drawn = Vec::with_capacity(labels.len());
    for _ in 0..resamples {
        drawn.clear();
        for cases in by_class.iter().filter(|c| !c.is_empty()) {
            for _ in 0..cases.len() {
                drawn.push(cases[rng.below(cases.len())]);
            }
        }
        values.push(statistic(&drawn)?);
    }
    values.sort_by(f64::total_cmp);
    Ok(BootstrapInterval { estimate, ci95: (percentile(&values, 2.5), percentile(&values, 97.5)), resamples })
}

/// numpy's default percentile of sorted `values`: linear between the order statistics around
/// position `q/100 · (len − 1)`.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let position = q / 100.0 * (sorted.len() - 1) as f64;
    let (low, fraction) = (position.floor() as usize, position - position.floor());
    match sorted.get(low + 1) {
        Some(&next) if fraction > 0.0 => sorted[low] + (next - sorted[low]) * fraction,
        _ => sorted[low],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked: P[Bin(4, ½) ≤ 1] = (1 + 4)/16; P[Bin(10, ½) ≤ 0] = 1/1024; k ≥ n is 1.
    #[test]
    fn binomial_cdf_small_cases() {
        assert!((binomial_half_cdf(1, 4) - 5.0 / 16.0).abs() < 1e-15);
        assert!((binomial_half_cdf(0, 10) - 1.0 / 1024.0).abs() < 1e-18);
        assert_eq!(binomial_half_cdf(3, 3), 1.0);
        // Far past ½ⁿ's underflow the middle of Bin(3000, ½) is still ~½.
        let mid = binomial_half_cdf(1500, 3000);
        assert!((mid - 0.5).abs() < 0.01, "{mid}");
    }

    /// numpy.percentile([1, 2, 3, 4], 2.5) = 1.075 and (…, 97.5) = 3.925; one value is itself.
    #[test]
    fn percentile_is_numpys_linear() {
        assert!((percentile(&[1.0, 2.0, 3.0, 4.0], 2.5) - 1.075).abs() < 1e-12);
        assert!((percentile(&[1.0, 2.0, 3.0, 4.0], 97.5) - 3.925).abs() < 1e-12);
        assert_eq!(percentile(&[7.0], 97.5), 7.0);
    }
}
