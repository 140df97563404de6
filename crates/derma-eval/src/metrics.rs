//! Multi-class metrics of predicted classes and class probabilities: confusion matrix,
//! accuracy, balanced accuracy, per-class precision/recall/F1/support, macro one-vs-rest ROC
//! AUC, and the arg-max that turns probabilities into predicted classes.
//!
//! Classes are indices `0..n_classes`. Each function matches the scikit-learn function
//! named in its documentation, with `labels=range(n_classes)` where scikit-learn takes it.

use serde::{Deserialize, Serialize};

use crate::check;
use crate::curve::roc_auc;
use crate::error::{EvalError, Result};

/// The confusion matrix, `m[true][predicted]` = number of samples of class `true` predicted
/// as `predicted`; equal to `sklearn.metrics.confusion_matrix(labels, preds,
/// labels=range(n_classes))`.
///
/// Errors on empty input, mismatched lengths, `n_classes == 0` or a class `>= n_classes`.
pub fn confusion_matrix(labels: &[usize], preds: &[usize], n_classes: usize) -> Result<Vec<Vec<u64>>> {
    check::class_pairs(labels, preds, n_classes)?;
    let mut m = vec![vec![0u64; n_classes]; n_classes];
    for (&l, &p) in labels.iter().zip(preds) {
        m[l][p] += 1;
    }
    Ok(m)
}

/// Fraction of samples whose predicted class equals the label
/// (`sklearn.metrics.accuracy_score`).
///
/// Errors on empty input or mismatched lengths.
pub fn accuracy(labels: &[usize], preds: &[usize]) -> Result<f64> {
    check::lengths(labels.len(), preds.len())?;
    let correct = labels.iter().zip(preds).filter(|(l, p)| l == p).count();
    Ok(correct as f64 / labels.len() as f64)
}

/// Balanced accuracy: the mean recall over the classes present in `labels`; equal to
/// `sklearn.metrics.balanced_accuracy_score(labels, preds)`. A class that is predicted but
/// never true is left out of the mean, as scikit-learn does.
///
/// Errors on empty input, mismatched lengths, `n_classes == 0` or a class `>= n_classes`.
pub fn balanced_accuracy(labels: &[usize], preds: &[usize], n_classes: usize) -> Result<f64> {
    let m = confusion_matrix(labels, preds, n_classes)?;
    let recalls: Vec<f64> = m
        .iter()
        .enumerate()
        .filter_map(|(c, row)| {
            let support: u64 = row.iter().sum();
            (support > 0).then(|| row[c] as f64 / support as f64)
        })
        .collect();
    // Non-empty: the labels are non-empty, so some class has support.
    Ok(recalls.iter().sum::<f64>() / recalls.len() as f64)
}

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    /// `tp / (tp + fp)`; 0 when nothing is predicted as this class.
    pub precision: f64,
    /// `tp / support`; 0 when the class has no sample.
    pub recall: f64,
    /// `2 tp / (support + predicted)`, the harmonic mean of precision and recall; 0 when
    /// `tp = 0`.
    pub f1: f64,
    /// Number of samples whose label is this class.
    pub support: u64,
}

/// Precision, recall, F1 and support of every class `0..n_classes`; equal to
/// `sklearn.metrics.precision_recall_fscore_support(labels, preds,
/// labels=range(n_classes), zero_division=0)`.
///
/// Errors on empty input, mismatched lengths, `n_classes == 0` or a class `>= n_classes`.
pub fn per_class_report(labels: &[usize], preds: &[usize], n_classes: usize) -> Result<Vec<ClassReport>> {
    let m = confusion_matrix(labels, preds, n_classes)?;
    Ok((0..n_classes)
        .map(|c| {
            let tp = m[c][c];
            let support: u64 = m[c].iter().sum();
            let predicted: u64 = m.iter().map(|row| row[c]).sum();
            let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
            ClassReport {
                precision: ratio(tp, predicted),
                recall: ratio(tp, support),
                f1: ratio(2 * tp, support + predicted),
                support,
            }
        })
        .collect())
}

/// Macro one-vs-rest ROC AUC of class probabilities, as MedMNIST's `getAUC` computes it.
///
/// `probs` has one row per sample and one column per class (`Vec<f64>`, `[f64; K]`, …);
/// rows need not sum to 1.
///
/// - `K >= 3` columns: the mean over classes `c` of
///   `roc_auc_score(labels == c, probs[:, c])`, equal to
///   `sklearn.metrics.roc_auc_score(labels, probs, multi_class="ovr", average="macro")`.
/// - `K == 2`: the binary AUC of the last column, `roc_auc_score(labels, probs[:, 1])`
///   (MedMNIST's binary-class case).
/// - `K == 1`: the single column is the positive-class probability and labels are 0 or 1.
///
/// **A class without samples in `labels` is an error** ([`EvalError::ClassAbsent`]), as in
/// scikit-learn: its AUC is undefined, and averaging over the classes present instead would
/// silently change what the number means. Labels of one class only give
/// [`EvalError::SingleClass`]. Also errors on empty input, mismatched lengths, ragged or
/// empty rows, non-finite probabilities and labels `>= K` (`>= 2` when `K == 1`).
pub fn macro_auc_ovr<R: AsRef<[f64]>>(labels: &[usize], probs: &[R]) -> Result<f64> {
    let k = check::prob_rows(labels.len(), probs)?;
    let n_classes = k.max(2);
    check::classes(labels, n_classes, "label")?;
    let mut support = vec![0usize; n_classes];
    for &l in labels {
        support[l] += 1;
    }
    if let Some(class) = support.iter().position(|&s| s == labels.len()) {
        return Err(EvalError::SingleClass { class, n: labels.len(), what: "one-vs-rest ROC AUC" });
    }
    if k <= 2 {
        let positives: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
        let scores: Vec<f64> = probs.iter().map(|row| row.as_ref()[k - 1]).collect();
        return roc_auc(&positives, &scores);
    }
    if let Some(class) = support.iter().position(|&s| s == 0) {
        return Err(EvalError::ClassAbsent { class, classes: k });
    }
    let mut total = 0.0;
    for c in 0..k {
        let is_c: Vec<bool> = labels.iter().map(|&l| l == c).collect();
        let scores: Vec<f64> = probs.iter().map(|row| row.as_ref()[c]).collect();
        total += roc_auc(&is_c, &scores)?;
    }
    Ok(total / k as f64)
}

/// Index of the largest value of `row`, the first one among ties (as `numpy.argmax`).
///
/// Errors on an empty row ([`EvalError::NoClasses`]) or a NaN/infinite value.
pub fn argmax(row: &[f64]) -> Result<usize> {
    if row.is_empty() {
        return Err(EvalError::NoClasses);
    }
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if !v.is_finite() {
            return Err(EvalError::NotFinite { index: i, value: v });
        }
        if v > row[best] {
            best = i;
        }
    }
    Ok(best)
}

/// The prior-corrected decision of one probability row: the index of the largest
/// `row[k] / prior[k]`, the first among ties — post-hoc logit adjustment (Menon et al. 2021,
/// "Long-tail learning via logit adjustment": `argmax_k z_k − log prior_k`), the decision that
/// maximises balanced accuracy when the row's probabilities come true under `prior`.
///
/// Errors on an empty row, a non-finite value, or a `prior` that is not one positive, finite
/// value per column.
pub fn prior_corrected_argmax(row: &[f64], prior: &[f64]) -> Result<usize> {
    if prior.len() != row.len() || prior.iter().any(|p| !(p.is_finite() && *p > 0.0)) {
        return Err(EvalError::BadPrior { prior: prior.to_vec(), classes: row.len() });
    }
    if let Some((index, &value)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(EvalError::NotFinite { index, value });
    }
    argmax(&row.iter().zip(prior).map(|(p, q)| p / q).collect::<Vec<_>>())
}

/// The predicted class of every row of `probs` ([`argmax`] of each row, as
/// `numpy.argmax(probs, axis=1)`).
///
/// Errors on no rows, ragged or empty rows, or a non-finite value (naming its row).
pub fn argmax_rows<R: AsRef<[f64]>>(probs: &[R]) -> Result<Vec<usize>> {
    check::prob_rows(probs.len(), probs)?;
    probs.iter().map(|row| argmax(row.as_ref())).collect()
}
