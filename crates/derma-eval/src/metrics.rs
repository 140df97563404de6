//! Multi-class metrics of predicted classes and probabilities.

use crate::curve::roc_auc;
use crate::error::EvalError;

fn check_classes(name_rows: &[usize], k: usize) -> Result<(), EvalError> {
    match name_rows.iter().enumerate().find(|(_, c)| **c >= k) {
        Some((index, &value)) => Err(EvalError::BadClass { index, value, classes: k }),
        None => Ok(()),
    }
}

fn check_pair(labels: &[usize], preds: &[usize], k: usize) -> Result<(), EvalError> {
    if labels.is_empty() {
        return Err(EvalError::Empty);
    }
    if labels.len() != preds.len() {
        return Err(EvalError::LengthMismatch { labels: labels.len(), scores: preds.len() });
    }
    check_classes(labels, k)?;
    check_classes(preds, k)
}

/// `sklearn.metrics.confusion_matrix(y, p, labels=range(k))`: rows true, columns predicted.
pub fn confusion_matrix(labels: &[usize], preds: &[usize], k: usize) -> Result<Vec<Vec<u64>>, EvalError> {
    check_pair(labels, preds, k)?;
    let mut m = vec![vec![0u64; k]; k];
    for (&l, &p) in labels.iter().zip(preds) {
        m[l][p] += 1;
    }
    Ok(m)
}

/// Fraction of correct predictions.
pub fn accuracy(labels: &[usize], preds: &[usize]) -> Result<f64, EvalError> {
    if labels.is_empty() {
        return Err(EvalError::Empty);
    }
    if labels.len() != preds.len() {
        return Err(EvalError::LengthMismatch { labels: labels.len(), scores: preds.len() });
    }
    Ok(labels.iter().zip(preds).filter(|(a, b)| a == b).count() as f64 / labels.len() as f64)
}

/// `sklearn.metrics.balanced_accuracy_score`: mean recall over the classes present in
/// `labels`.
pub fn balanced_accuracy(labels: &[usize], preds: &[usize], k: usize) -> Result<f64, EvalError> {
    let m = confusion_matrix(labels, preds, k)?;
    let recalls: Vec<f64> = m
        .iter()
        .enumerate()
        .filter_map(|(c, row)| {
            let n: u64 = row.iter().sum();
            (n > 0).then(|| row[c] as f64 / n as f64)
        })
        .collect();
    Ok(recalls.iter().sum::<f64>() / recalls.len() as f64)
}

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassReport {
    /// `tp / (tp + fp)` (0 when nothing was predicted as this class).
    pub precision: f64,
    /// `tp / support` (0 without support).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// True samples of the class.
    pub support: u64,
}

/// `sklearn.metrics.precision_recall_fscore_support(y, p, labels=range(k), zero_division=0)`.
pub fn per_class_report(labels: &[usize], preds: &[usize], k: usize) -> Result<Vec<ClassReport>, EvalError> {
    let m = confusion_matrix(labels, preds, k)?;
    Ok((0..k)
        .map(|c| {
            let tp = m[c][c] as f64;
            let support: u64 = m[c].iter().sum();
            let predicted: u64 = m.iter().map(|row| row[c]).sum();
            let precision = if predicted == 0 { 0.0 } else { tp / predicted as f64 };
            let recall = if support == 0 { 0.0 } else { tp / support as f64 };
            let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
            ClassReport { precision, recall, f1, support }
        })
        .collect())
}

/// Macro one-vs-rest ROC AUC, as MedMNIST's `getAUC` and
/// `roc_auc_score(y, p, multi_class="ovr", average="macro")` compute it: the mean over classes
/// of the AUC of "class c vs the rest" scored by `probs[:, c]`.
///
/// Every class must be present in `labels` (scikit-learn raises otherwise): a class without
/// samples has no AUC, and silently dropping it would inflate the average.
pub fn macro_auc_ovr(labels: &[usize], probs: &[Vec<f64>]) -> Result<f64, EvalError> {
    if labels.is_empty() {
        return Err(EvalError::Empty);
    }
    if labels.len() != probs.len() {
        return Err(EvalError::LengthMismatch { labels: labels.len(), scores: probs.len() });
    }
    let k = probs[0].len();
    check_classes(labels, k)?;
    let mut total = 0.0;
    for c in 0..k {
        let is_c: Vec<bool> = labels.iter().map(|&l| l == c).collect();
        let scores: Vec<f64> = probs.iter().map(|p| p[c]).collect();
        total += roc_auc(&is_c, &scores).map_err(|e| match e {
            EvalError::OneClass { .. } => EvalError::ClassAbsent { class: c },
            other => other,
        })?;
    }
    Ok(total / k as f64)
}
