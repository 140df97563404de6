//! Validation of user data shared by the metrics: non-empty, matching lengths, finite scores,
//! class indices in range, both classes present. Each check returns the [`EvalError`] that
//! names the first offending sample.

use crate::error::{EvalError, Result};

/// `labels` is non-empty and as long as the predictions.
pub(crate) fn lengths(labels: usize, predictions: usize) -> Result<()> {
    if labels == 0 {
        return Err(EvalError::Empty);
    }
    if labels != predictions {
        return Err(EvalError::LengthMismatch { labels, predictions });
    }
    Ok(())
}

/// One finite score per label.
pub(crate) fn scores(labels: usize, scores: &[f64]) -> Result<()> {
    lengths(labels, scores.len())?;
    finite(scores.iter().copied().enumerate())
}

/// Every `(index, value)` is finite.
fn finite(values: impl Iterator<Item = (usize, f64)>) -> Result<()> {
    for (index, value) in values {
        if !value.is_finite() {
            return Err(EvalError::NotFinite { index, value });
        }
    }
    Ok(())
}

/// Every value is a class index below `classes`.
pub(crate) fn classes(values: &[usize], classes: usize, what: &'static str) -> Result<()> {
    if classes == 0 {
        return Err(EvalError::NoClasses);
    }
    match values.iter().enumerate().find(|&(_, &v)| v >= classes) {
        Some((index, &value)) => Err(EvalError::BadClass { what, index, value, classes }),
        None => Ok(()),
    }
}

/// Labels and predicted classes of the same samples, all below `classes`.
pub(crate) fn class_pairs(labels: &[usize], preds: &[usize], n_classes: usize) -> Result<()> {
    lengths(labels.len(), preds.len())?;
    classes(labels, n_classes, "label")?;
    classes(preds, n_classes, "predicted class")
}

/// The numbers of positives and negatives, both non-zero.
pub(crate) fn both_classes(labels: &[bool], what: &'static str) -> Result<(u64, u64)> {
    let n = labels.len();
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return Err(EvalError::OneClass { only: "negatives", n, what });
    }
    if positives == n {
        return Err(EvalError::OneClass { only: "positives", n, what });
    }
    Ok((positives as u64, (n - positives) as u64))
}

/// One probability row per label, all of the same non-zero length and finite; returns that
/// length.
pub(crate) fn prob_rows<R: AsRef<[f64]>>(labels: usize, probs: &[R]) -> Result<usize> {
    lengths(labels, probs.len())?;
    let expected = probs[0].as_ref().len();
    if expected == 0 {
        return Err(EvalError::NoClasses);
    }
    for (index, row) in probs.iter().enumerate() {
        let row = row.as_ref();
        if row.len() != expected {
            return Err(EvalError::RaggedRows { index, len: row.len(), expected });
        }
        finite(row.iter().map(|&v| (index, v)))?;
    }
    Ok(expected)
}
