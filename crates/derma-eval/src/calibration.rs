//! Calibration: whether a predicted probability of 0.3 comes true about 30 % of the time.
//!
//! Ranking metrics (AUC) and thresholds chosen on validation do not care; a reader of the
//! probabilities does, and the imbalance tools change them: class weights, undersampling and
//! focal loss all move the scores of the rare class up (or flatten them) without changing
//! their order. [`calibration`] reports three things:
//!
//! - the **Brier score**, `scikit-learn.metrics.brier_score_loss`: the mean squared distance
//!   between the probabilities and the one-hot truth (binary: `(p − y)²`; K classes: summed
//!   over the classes, so a binary task seen as two columns scores twice as much);
//! - a **reliability table** of equal-width bins over [0, 1], the bins of
//!   `sklearn.calibration.calibration_curve(strategy="uniform")`: a score `s` falls in bin `b`
//!   for `b/n < s ≤ (b+1)/n`, bin 0 holding `[0, 1/n]`; per bin the mean score and the
//!   observed fraction;
//! - the **expected calibration error**, `Σ_b (n_b / N) · |observed_b − mean score_b|` over
//!   those bins (Naeini et al. 2015; Guo et al. 2017 for the top-label form).
//!
//! A binary task (one probability column, labels 0 / 1) is calibrated on its positive-class
//! probability. With K ≥ 2 columns the table and ECE are the *top-label* ones (Guo et al.):
//! each sample's highest probability against whether its arg-max class is right.

use crate::check;
use crate::error::{EvalError, Result};
use crate::metrics::argmax;

/// The number of reliability bins derma-train and derma-report use.
pub const BINS: usize = 10;

/// One bin of the reliability table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReliabilityBin {
    /// The bin's edges: scores in `(lower, upper]` (bin 0: `[0, upper]`).
    pub lower: f64,
    pub upper: f64,
    /// Samples in the bin.
    pub count: usize,
    /// Their mean score (NaN for an empty bin).
    pub mean_score: f64,
    /// The fraction of them that are positive (binary) or right (top-label); NaN when empty.
    pub observed: f64,
}

/// The calibration of a split's probabilities (module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The Brier score (`brier_score_loss`).
    pub brier: f64,
    /// The expected calibration error over [`Calibration::bins`].
    pub ece: f64,
    /// The reliability table, every bin (empty ones with count 0).
    pub bins: Vec<ReliabilityBin>,
    /// Whether the table is top-label (K ≥ 2 columns) rather than the positive class's.
    pub top_label: bool,
}

/// The calibration of `probs` (rows of class probabilities, or one column with the positive
/// probability of a binary task) against `labels`, in `bins` equal-width bins.
///
/// Errors on empty input, mismatched lengths, ragged rows, non-finite probabilities or ones
/// outside [0, 1] (as `calibration_curve`), labels that are not class indices (0 / 1 for one
/// column) and `bins == 0` ([`EvalError::NoClasses`](crate::EvalError::NoClasses) stands for no
/// bins).
pub fn calibration<R: AsRef<[f64]>>(labels: &[usize], probs: &[R], bins: usize) -> Result<Calibration> {
    let k = check::prob_rows(labels.len(), probs)?;
    check::classes(labels, k.max(2), "label")?;
    if bins == 0 {
        return Err(EvalError::NoClasses);
    }
    for (index, row) in probs.iter().enumerate() {
        if let Some(&value) = row.as_ref().iter().find(|p| !(0.0..=1.0).contains(*p)) {
            return Err(EvalError::NotAProbability { index, value });
        }
    }
    let n = labels.len() as f64;
    // (score, whether it came true) per sample, and each sample's squared error.
    let (points, squared): (Vec<(f64, bool)>, Vec<f64>) = if k == 1 {
        labels
            .iter()
            .zip(probs)
            .map(|(&l, row)| {
                let p = row.as_ref()[0];
                let y = if l == 1 { 1.0 } else { 0.0 };
                ((p, l == 1), (p - y) * (p - y))
            })
            .unzip()
    } else {
        let mut points = Vec::with_capacity(labels.len());
        let mut squared = Vec::with_capacity(labels.len());
        for (&l, row) in labels.iter().zip(probs) {
            let row = row.as_ref();
            let top = argmax(row)?;
            points.push((row[top], top == l));
            squared.push(row.iter().enumerate().map(|(c, &p)| if c == l { (p - 1.0) * (p - 1.0) } else { p * p }).sum());
        }
        (points, squared)
    };
    let brier = squared.iter().sum::<f64>() / n;
    // numpy.linspace(0, 1, bins + 1)'s inner edges, `j · (1 / bins)`, as calibration_curve
    // bins with `searchsorted(edges, s)`: the number of inner edges strictly below `s`.
    let step = 1.0 / bins as f64;
    let edges: Vec<f64> = (1..bins).map(|j| j as f64 * step).collect();
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for &(s, hit) in &points {
        let b = edges.partition_point(|&e| e < s);
        let sum = &mut sums[b];
        sum.0 += 1;
        sum.1 += s;
        sum.2 += usize::from(hit);
    }
    let table: Vec<ReliabilityBin> = sums
        .iter()
        .enumerate()
        .map(|(b, &(count, total, hits))| ReliabilityBin {
            lower: if b == 0 { 0.0 } else { edges[b - 1] },
            upper: if b + 1 == bins { 1.0 } else { edges[b] },
            count,
            mean_score: total / count as f64,
            observed: hits as f64 / count as f64,
        })
        .collect();
    let ece = table.iter().filter(|b| b.count > 0).map(|b| b.count as f64 / n * (b.observed - b.mean_score).abs()).sum();
    Ok(Calibration { brier, ece, bins: table, top_label: k > 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked by hand: scores 0.1, 0.1, 0.8, 0.9 with labels 0, 1, 1, 1 in two bins — bin 0
    /// `[0, 0.5]` holds the two 0.1s (mean 0.1, observed 0.5), bin 1 the rest (mean 0.85,
    /// observed 1); ECE = ½·0.4 + ½·0.15 = 0.275; Brier = (0.01 + 0.81 + 0.04 + 0.01) / 4.
    #[test]
    fn a_small_binary_case_by_hand() {
        let probs = [[0.1], [0.1], [0.8], [0.9]];
        let c = calibration(&[0, 1, 1, 1], &probs, 2).unwrap();
        assert!((c.brier - 0.2175).abs() < 1e-15, "{c:?}");
        assert!((c.ece - 0.275).abs() < 1e-15, "{c:?}");
        assert_eq!(c.bins.iter().map(|b| b.count).collect::<Vec<_>>(), [2, 2]);
        assert!(!c.top_label);
    }

    /// A score on an inner edge belongs to the bin below it (`searchsorted`, side left); 0
    /// and 1 to the first and last bins.
    #[test]
    fn edges_go_to_the_lower_bin() {
        let probs = [[0.0], [0.5], [0.50000001], [1.0]];
        let c = calibration(&[0, 0, 1, 1], &probs, 2).unwrap();
        assert_eq!(c.bins.iter().map(|b| b.count).collect::<Vec<_>>(), [2, 2]);
        assert_eq!((c.bins[0].lower, c.bins[0].upper, c.bins[1].upper), (0.0, 0.5, 1.0));
    }

    /// Top-label: the highest probability against whether the arg-max is right; the Brier score
    /// sums the squared errors over the classes.
    #[test]
    fn top_label_for_several_columns() {
        let probs = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]];
        let c = calibration(&[0, 1, 2, 1], &probs, 10).unwrap();
        // sklearn.metrics.brier_score_loss([0, 1, 2, 1], probs) = 0.34 (scikit-learn 1.9.1).
        assert!((c.brier - 0.34).abs() < 1e-15, "{c:?}");
        assert!(c.top_label);
        // Confidences 0.7 (right), 0.8 (right), 0.4 (right), 0.5 (wrong): one per bin.
        let filled: Vec<(usize, f64)> = c.bins.iter().filter(|b| b.count > 0).map(|b| (b.count, b.observed)).collect();
        assert_eq!(filled, [(1, 1.0), (1, 0.0), (1, 1.0), (1, 1.0)]);
        assert!((c.ece - (0.6 + 0.5 + 0.3 + 0.2) / 4.0).abs() < 1e-15, "{c:?}");
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(calibration::<[f64; 1]>(&[], &[], 10), Err(EvalError::Empty)));
        assert!(matches!(calibration(&[2], &[[0.5]], 10), Err(EvalError::BadClass { .. })));
        assert!(matches!(calibration(&[1], &[[f64::NAN]], 10), Err(EvalError::NotFinite { .. })));
        assert!(matches!(calibration(&[1], &[[0.5]], 0), Err(EvalError::NoClasses)));
        assert!(matches!(calibration(&[0, 1], &[[0.2, 0.8], [1.1, -0.1]], 10), Err(EvalError::NotAProbability { index: 1, value: 1.1 })));
    }
}
