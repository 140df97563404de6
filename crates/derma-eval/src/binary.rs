//! Counts and screening rates of a binary task at one threshold.
//!
//! A sample is predicted positive when `score >= threshold` — the convention of
//! scikit-learn's `roc_curve` and `precision_recall_curve`, so a threshold read off those
//! curves reproduces their counts. A threshold of `+inf` predicts nothing positive.
//!
//! Undefined ratios (0/0: no positive labels, no negative labels, nothing predicted positive)
//! are reported as 0.0, as scikit-learn does with `zero_division=0`.

use serde::{Deserialize, Serialize};

use crate::check;
use crate::error::{EvalError, Result};

/// Confusion counts of a binary task at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BinaryCounts {
    /// Positives predicted positive.
    pub tp: u64,
    /// Negatives predicted positive.
    pub fp: u64,
    /// Negatives predicted negative.
    pub tn: u64,
    /// Positives predicted negative (`fn` is a Rust keyword).
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl BinaryCounts {
    /// Counts of `scores` against `labels` (`true` = positive) with `score >= threshold`
    /// predicted positive.
    ///
    /// Errors on empty input, mismatched lengths, a non-finite score or a NaN threshold.
    pub fn at(threshold: f64, labels: &[bool], scores: &[f64]) -> Result<Self> {
        check::scores(labels.len(), scores)?;
        if threshold.is_nan() {
            return Err(EvalError::NanThreshold);
        }
        let mut c = Self::default();
        for (&label, &score) in labels.iter().zip(scores) {
            match (label, score >= threshold) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (false, false) => c.tn += 1,
                (true, false) => c.fn_ += 1,
            }
        }
        Ok(c)
    }

    /// Number of positive labels, `tp + fn`.
    pub fn positives(&self) -> u64 {
        self.tp + self.fn_
    }

    /// Number of negative labels, `tn + fp`.
    pub fn negatives(&self) -> u64 {
        self.tn + self.fp
    }

    /// Sensitivity (recall, true positive rate), `tp / (tp + fn)`; 0 without positives.
    pub fn sensitivity(&self) -> f64 {
        ratio(self.tp, self.positives())
    }

    /// Specificity (true negative rate), `tn / (tn + fp)`; 0 without negatives.
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.negatives())
    }

    /// Precision (positive predictive value), `tp / (tp + fp)`; 0 when nothing is predicted
    /// positive.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// Wilson 95 % interval of the sensitivity ([`crate::wilson95`] of `tp` in `tp + fn`);
    /// `None` without positives.
    pub fn sensitivity_ci95(&self) -> Option<(f64, f64)> {
        crate::wilson95(self.tp, self.positives())
    }

    /// Wilson 95 % interval of the specificity (`tn` in `tn + fp`); `None` without negatives.
    pub fn specificity_ci95(&self) -> Option<(f64, f64)> {
        crate::wilson95(self.tn, self.negatives())
    }

    /// Wilson 95 % interval of the precision (`tp` in `tp + fp`); `None` when nothing is
    /// predicted positive.
    pub fn precision_ci95(&self) -> Option<(f64, f64)> {
        crate::wilson95(self.tp, self.tp + self.fp)
    }

    /// F-β from the counts, `(1 + β²) tp / (β² (tp + fn) + (tp + fp))`, the expression
    /// scikit-learn's `fbeta_score` evaluates; 0 when `tp = 0`. `beta` should be positive.
    pub fn fbeta(&self, beta: f64) -> f64 {
        if self.tp == 0 {
            return 0.0;
        }
        let b2 = beta * beta;
        (1.0 + b2) * self.tp as f64 / (b2 * self.positives() as f64 + (self.tp + self.fp) as f64)
    }
}

/// Screening metrics of a binary task at one threshold: the counts and the rates derived
/// from them (undefined rates are 0.0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BinaryMetrics {
    /// The threshold: `score >= threshold` is predicted positive (`+inf`: nothing is).
    pub threshold: f64,
    /// Recall of positives, `tp / (tp + fn)`.
    pub sensitivity: f64,
    /// Recall of negatives, `tn / (tn + fp)`.
    pub specificity: f64,
    /// `tp / (tp + fp)`.
    pub precision: f64,
    /// F1, the harmonic mean of precision and sensitivity ([`BinaryCounts::fbeta`] with β = 1).
    pub f1: f64,
    /// F2, recall weighted 4× precision ([`BinaryCounts::fbeta`] with β = 2).
    pub f2: f64,
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives (`fn` is a Rust keyword).
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl BinaryMetrics {
    /// Rates derived from `counts` taken at `threshold`.
    pub fn from_counts(threshold: f64, counts: BinaryCounts) -> Self {
        Self {
            threshold,
            sensitivity: counts.sensitivity(),
            specificity: counts.specificity(),
            precision: counts.precision(),
            f1: counts.fbeta(1.0),
            f2: counts.fbeta(2.0),
            tp: counts.tp,
            fp: counts.fp,
            tn: counts.tn,
            fn_: counts.fn_,
        }
    }

    /// The counts these metrics were derived from.
    pub fn counts(&self) -> BinaryCounts {
        BinaryCounts { tp: self.tp, fp: self.fp, tn: self.tn, fn_: self.fn_ }
    }
}

/// Metrics of `scores` against `labels` (`true` = positive) at `threshold`; used to report a
/// threshold chosen on validation unchanged on test.
///
/// Labels of one class only are accepted (the undefined rate is 0.0). Errors on empty input,
/// mismatched lengths, a non-finite score or a NaN threshold.
pub fn apply(threshold: f64, labels: &[bool], scores: &[f64]) -> Result<BinaryMetrics> {
    Ok(BinaryMetrics::from_counts(threshold, BinaryCounts::at(threshold, labels, scores)?))
}

/// F-β from rates, `(1 + β²) P R / (β² P + R)`; 0 when precision and recall are both 0.
/// `beta` should be positive (β > 1 weights recall more).
///
/// Equal to [`BinaryCounts::fbeta`] up to rounding.
pub fn fbeta(precision: f64, recall: f64, beta: f64) -> f64 {
    let b2 = beta * beta;
    let denominator = b2 * precision + recall;
    if denominator == 0.0 { 0.0 } else { (1.0 + b2) * precision * recall / denominator }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}
