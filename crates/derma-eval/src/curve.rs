//! Ranking curves of a binary task and the areas under them, computed as scikit-learn does.
//!
//! The curves have one point per *distinct* score (tied samples enter together), with the
//! samples whose score is `>= threshold` predicted positive — scikit-learn's
//! `_binary_clf_curve`. Every function here needs both classes in `labels` (scikit-learn
//! warns and returns NaN, or an uninformative constant, instead) and finite scores.
//!
//! The areas are computed from integer counts: [`roc_auc`] exactly (one rounding at the
//! end), [`average_precision`] with compensated summation, so both agree with
//! scikit-learn's floating-point sums to about 1e-15.

use serde::{Deserialize, Serialize};

use crate::check;
use crate::error::Result;

/// The ROC curve, as `sklearn.metrics.roc_curve(y, s, drop_intermediate=False)` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    /// Decreasing thresholds: `+inf` (nothing predicted positive), then every distinct
    /// score from the highest to the lowest.
    pub thresholds: Vec<f64>,
    /// True positive rate (sensitivity) at each threshold, from 0 to 1.
    pub tpr: Vec<f64>,
    /// False positive rate (1 − specificity) at each threshold, from 0 to 1.
    pub fpr: Vec<f64>,
}

/// The precision-recall curve, as `sklearn.metrics.precision_recall_curve(y, s)` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrCurve {
    /// Precision at each threshold (0 where nothing is predicted positive), then a final 1.
    pub precision: Vec<f64>,
    /// Recall at each threshold (decreasing), then a final 0.
    pub recall: Vec<f64>,
    /// Increasing distinct scores; one entry fewer than `precision` and `recall`, whose last
    /// point (precision 1, recall 0) has no threshold.
    pub thresholds: Vec<f64>,
}

/// Cumulative counts at one distinct score.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CurvePoint {
    /// The distinct score.
    pub threshold: f64,
    /// Positives with a score `>= threshold`.
    pub tp: u64,
    /// Negatives with a score `>= threshold`.
    pub fp: u64,
}

/// One point per distinct score, scores decreasing (sklearn's `_binary_clf_curve`).
/// The inputs must have been validated (same length, finite scores).
pub(crate) fn curve_points(labels: &[bool], scores: &[f64]) -> Vec<CurvePoint> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = Vec::new();
    let (mut tp, mut fp) = (0, 0);
    for (rank, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        // `!=` (not `total_cmp`) so that -0.0 and 0.0 form one group, as in numpy.
        let last_of_group = order.get(rank + 1).is_none_or(|&j| scores[j] != scores[i]);
        if last_of_group {
            points.push(CurvePoint { threshold: scores[i], tp, fp });
        }
    }
    points
}

/// The ROC curve of `scores` against `labels` (`true` = positive), equal to
/// `sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)`.
///
/// Errors on empty input, mismatched lengths, non-finite scores or labels of one class.
pub fn roc_curve(labels: &[bool], scores: &[f64]) -> Result<RocCurve> {
    check::scores(labels.len(), scores)?;
    let (p, n) = check::both_classes(labels, "a ROC curve")?;
    let points = curve_points(labels, scores);
    let mut curve = RocCurve {
        thresholds: Vec::with_capacity(points.len() + 1),
        tpr: Vec::with_capacity(points.len() + 1),
        fpr: Vec::with_capacity(points.len() + 1),
    };
    curve.thresholds.push(f64::INFINITY);
    curve.tpr.push(0.0);
    curve.fpr.push(0.0);
    for pt in points {
        curve.thresholds.push(pt.threshold);
        curve.tpr.push(pt.tp as f64 / p as f64);
        curve.fpr.push(pt.fp as f64 / n as f64);
    }
    Ok(curve)
}

/// Area under the ROC curve, equal to `sklearn.metrics.roc_auc_score(labels, scores)`:
/// the trapezoidal area, so that a positive and a negative with tied scores count one half
/// (the Mann-Whitney U statistic over `P · N`).
///
/// Computed exactly in integers (`Σ Δfp · (tp + tp_prev) / (2 P N)`), then divided once.
/// Errors on empty input, mismatched lengths, non-finite scores or labels of one class.
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Result<f64> {
    check::scores(labels.len(), scores)?;
    let (p, n) = check::both_classes(labels, "ROC AUC")?;
    let (mut twice_area, mut prev_tp, mut prev_fp) = (0u128, 0u64, 0u64);
    for pt in curve_points(labels, scores) {
        twice_area += u128::from(pt.fp - prev_fp) * u128::from(pt.tp + prev_tp);
        (prev_tp, prev_fp) = (pt.tp, pt.fp);
    }
    Ok(twice_area as f64 / (2 * u128::from(p) * u128::from(n)) as f64)
}

/// The precision-recall curve of `scores` against `labels` (`true` = positive), equal to
/// `sklearn.metrics.precision_recall_curve(labels, scores)` (thresholds increasing, a final
/// point of precision 1 and recall 0 without threshold).
///
/// Errors on empty input, mismatched lengths, non-finite scores or labels of one class.
pub fn precision_recall_curve(labels: &[bool], scores: &[f64]) -> Result<PrCurve> {
    check::scores(labels.len(), scores)?;
    let (p, _) = check::both_classes(labels, "a precision-recall curve")?;
    let points = curve_points(labels, scores);
    let mut curve = PrCurve {
        precision: Vec::with_capacity(points.len() + 1),
        recall: Vec::with_capacity(points.len() + 1),
        thresholds: Vec::with_capacity(points.len()),
    };
    for pt in points.iter().rev() {
        curve.thresholds.push(pt.threshold);
        // Every point has at least one sample at or above its threshold: tp + fp > 0.
        curve.precision.push(pt.tp as f64 / (pt.tp + pt.fp) as f64);
        curve.recall.push(pt.tp as f64 / p as f64);
    }
    curve.precision.push(1.0);
    curve.recall.push(0.0);
    Ok(curve)
}

/// Average precision, equal to `sklearn.metrics.average_precision_score(labels, scores)`:
/// the step-wise (not interpolated) area `Σ (R_k − R_{k−1}) P_k` over the distinct scores
/// from the highest down, tied samples entering together.
///
/// Errors on empty input, mismatched lengths, non-finite scores or labels of one class
/// (scikit-learn returns 1.0 for positives only, which says nothing about the ranking).
pub fn average_precision(labels: &[bool], scores: &[f64]) -> Result<f64> {
    check::scores(labels.len(), scores)?;
    let (p, _) = check::both_classes(labels, "average precision")?;
    let mut sum = NeumaierSum::default();
    let mut prev_tp = 0u64;
    for pt in curve_points(labels, scores) {
        // (Δtp / P) · tp / (tp + fp), as one division of exact integers.
        let numerator = u128::from(pt.tp - prev_tp) * u128::from(pt.tp);
        let denominator = u128::from(p) * u128::from(pt.tp + pt.fp);
        sum.add(numerator as f64 / denominator as f64);
        prev_tp = pt.tp;
    }
    Ok(sum.total())
}

/// Compensated (Kahan–Babuška–Neumaier) summation.
#[derive(Default)]
struct NeumaierSum {
    sum: f64,
    compensation: f64,
}

impl NeumaierSum {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        self.compensation += if self.sum.abs() >= x.abs() { (self.sum - t) + x } else { (x - t) + self.sum };
        self.sum = t;
    }

    fn total(&self) -> f64 {
        self.sum + self.compensation
    }
}
