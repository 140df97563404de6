//! 95 % confidence intervals of the screening figures a test set gives: the Wilson score
//! interval of a proportion (sensitivity, specificity, precision from their counts) and
//! DeLong's interval of the ROC AUC. A test split of a few hundred images, with tens of
//! positives, leaves wide intervals; a report without them reads more certain than it is.
//!
//! References (checked in `tests/reference.rs` against `scripts/reference_eval.py`):
//! `scipy.stats.binomtest(k, n).proportion_ci(0.95, method="wilson")`, and DeLong et al.
//! (1988) computed from its definition — the interval pROC's `ci.auc(method = "delong")` gives.

use crate::check;
use crate::error::{EvalError, Result};

/// The two-sided 95 % normal quantile, `scipy.stats.norm.ppf(0.975)`.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score 95 % interval of `successes` in `trials` (no continuity correction), equal
/// to scipy's `binomtest(successes, trials).proportion_ci(0.95, method="wilson")`: centre
/// `(2np + z²) / (2(n + z²))`, half-width `z √(z² + 4np(1 − p)) / (2(n + z²))`. Unlike the normal
/// approximation it stays inside [0, 1] and is not empty at 0 or `n` successes (0 of 20:
/// [0, 0.161]). `None` without trials (or more successes than trials).
pub fn wilson95(successes: u64, trials: u64) -> Option<(f64, f64)> {
    if trials == 0 || successes > trials {
        return None;
    }
    let (n, p) = (trials as f64, successes as f64 / trials as f64);
    let z2 = Z95 * Z95;
    let denominator = 2.0 * (n + z2);
    let centre = (2.0 * n * p + z2) / denominator;
    let half = Z95 * (z2 + 4.0 * n * p * (1.0 - p)).sqrt() / denominator;
    // At 0 (or all) successes the bound is 0 (1) exactly; computed, it can round past it.
    let low = if successes == 0 { 0.0 } else { (centre - half).max(0.0) };
    let high = if successes == trials { 1.0 } else { (centre + half).min(1.0) };
    Some((low, high))
}

/// DeLong's 95 % interval of the ROC AUC of `scores` against `labels` (`true` = positive):
/// `AUC ∓ z √Var`, clipped to [0, 1], with `Var = S₁₀/m + S₀₁/n` — the sample variances
/// (n − 1) of each positive's share of negatives scored below it (ties one half) over the `m`
/// positives, and of each negative's share of positives scored above it over the `n`
/// negatives (DeLong, DeLong & Clarke-Pearson 1988; computed from mid-ranks as Sun & Xu 2014,
/// O(N log N)).
///
/// Errors as [`roc_auc`](crate::roc_auc) does, and with fewer than two positives or two
/// negatives (no variance to estimate).
pub fn auc_delong95(labels: &[bool], scores: &[f64]) -> Result<(f64, f64)> {
    let (v10, v01) = auc_components(labels, scores)?;
    let (m, n) = (v10.len() as f64, v01.len() as f64);
    let auc = v10.iter().sum::<f64>() / m;
    let variance = sample_variance(&v10) / m + sample_variance(&v01) / n;
    let half = Z95 * variance.sqrt();
    Ok(((auc - half).max(0.0), (auc + half).min(1.0)))
}

/// DeLong's structural components of the ROC AUC: `V₁₀`, each positive's share of negatives
/// scored below it (ties one half), in the positives' order, and `V₀₁`, each negative's share of
/// positives scored above it; the AUC is the mean of either. Computed from mid-ranks as Sun &
/// Xu (2014), O(N log N). Errors as [`auc_delong95`].
pub(crate) fn auc_components(labels: &[bool], scores: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
    check::scores(labels.len(), scores)?;
    let (m, n) = check::both_classes(labels, "the AUC's confidence interval")?;
    if m < 2 || n < 2 {
        return Err(EvalError::TooFew { what: "the AUC's DeLong interval", positives: m as usize, negatives: n as usize });
    }
    let all = mid_ranks(scores);
    let split = |positive: bool| -> (Vec<f64>, Vec<f64>) {
        let picked: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == positive).collect();
        let own = mid_ranks(&picked.iter().map(|&i| scores[i]).collect::<Vec<_>>());
        (picked.iter().map(|&i| all[i]).collect(), own)
    };
    let (m, n) = (m as f64, n as f64);
    let (pos_all, pos_own) = split(true);
    let (neg_all, neg_own) = split(false);
    // A positive's rank among all minus its rank among positives: the negatives below it.
    let v10: Vec<f64> = pos_all.iter().zip(&pos_own).map(|(a, o)| (a - o) / n).collect();
    // A negative's rank among all minus its rank among negatives: the positives below it.
    let v01: Vec<f64> = neg_all.iter().zip(&neg_own).map(|(a, o)| 1.0 - (a - o) / m).collect();
    Ok((v10, v01))
}

/// 1-based ranks of `values`, tied values sharing the mean of their ranks.
fn mid_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold one value: ranks start+1 ..= end, mean below.
        let mean = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = mean;
        }
        start = end;
    }
    ranks
}

/// The variance with `n − 1` in the denominator.
pub(crate) fn sample_variance(v: &[f64]) -> f64 {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (v.len() - 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked: [3, 1, 3, 2] ranks 3.5, 1, 3.5, 2.
    #[test]
    fn mid_ranks_share_ties() {
        assert_eq!(mid_ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
        assert_eq!(mid_ranks(&[5.0, 5.0, 5.0]), [2.0, 2.0, 2.0]);
    }
}
