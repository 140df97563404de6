//! Binary ranking curves and areas against scikit-learn 1.9.1. Each expected value was
//! produced by the Python in the comment beside it, run with:
//!
//! ```python
//! from sklearn.metrics import roc_auc_score, roc_curve, precision_recall_curve, average_precision_score
//! ```

mod common;

use common::{assert_all_close, assert_close, positives};
use derma_eval::{EvalError, average_precision, precision_recall_curve, roc_auc, roc_curve};

// Case A: a positive tied with a negative at 0.4.
const A_LABELS: [u8; 5] = [0, 0, 1, 1, 1];
const A_SCORES: [f64; 5] = [0.1, 0.4, 0.35, 0.8, 0.4];
// Case B: ties of mixed labels at 0.9, 0.5 and 0.3.
const B_LABELS: [u8; 10] = [1, 0, 1, 1, 0, 0, 1, 0, 1, 0];
const B_SCORES: [f64; 10] = [0.9, 0.9, 0.7, 0.5, 0.5, 0.5, 0.3, 0.3, 0.1, 0.05];
// Case C: every score equal.
const C_LABELS: [u8; 5] = [0, 1, 0, 1, 1];
const C_SCORES: [f64; 5] = [0.5; 5];

#[test]
fn roc_auc_counts_ties_as_one_half() {
    // roc_auc_score([0,0,1,1,1], [0.1,0.4,0.35,0.8,0.4])  -> 0.75
    assert_close(roc_auc(&positives(&A_LABELS), &A_SCORES).unwrap(), 0.75, "AUC of A");
    // roc_auc_score([1,0,1,1,0,0,1,0,1,0], [0.9,0.9,0.7,0.5,0.5,0.5,0.3,0.3,0.1,0.05])  -> 0.5599999999999999
    assert_close(roc_auc(&positives(&B_LABELS), &B_SCORES).unwrap(), 0.5599999999999999, "AUC of B");
    // roc_auc_score([0,1,0,1,1], [0.5]*5)  -> 0.5
    assert_close(roc_auc(&positives(&C_LABELS), &C_SCORES).unwrap(), 0.5, "AUC of C");
}

#[test]
fn roc_auc_does_not_depend_on_sample_order() {
    // B reversed: roc_auc_score([1,0,1,1,0,0,1,0,1,0][::-1], [0.9,0.9,0.7,0.5,0.5,0.5,0.3,0.3,0.1,0.05][::-1])
    //   -> 0.5599999999999999
    let labels: Vec<bool> = positives(&B_LABELS).into_iter().rev().collect();
    let scores: Vec<f64> = B_SCORES.iter().rev().copied().collect();
    assert_close(roc_auc(&labels, &scores).unwrap(), 0.5599999999999999, "AUC of reversed B");
}

#[test]
fn roc_curve_matches_sklearn_without_dropping_points() {
    // fpr, tpr, thr = roc_curve([0,0,1,1,1], [0.1,0.4,0.35,0.8,0.4], drop_intermediate=False)
    //   thr -> [inf, 0.8, 0.4, 0.35, 0.1]
    //   tpr -> [0.0, 0.3333333333333333, 0.6666666666666666, 1.0, 1.0]
    //   fpr -> [0.0, 0.0, 0.5, 0.5, 1.0]
    let roc = roc_curve(&positives(&A_LABELS), &A_SCORES).unwrap();
    assert_all_close(&roc.thresholds, &[f64::INFINITY, 0.8, 0.4, 0.35, 0.1], "A thresholds");
    assert_all_close(&roc.tpr, &[0.0, 0.3333333333333333, 0.6666666666666666, 1.0, 1.0], "A tpr");
    assert_all_close(&roc.fpr, &[0.0, 0.0, 0.5, 0.5, 1.0], "A fpr");

    // roc_curve([1,0,1,1,0,0,1,0,1,0], [0.9,0.9,0.7,0.5,0.5,0.5,0.3,0.3,0.1,0.05], drop_intermediate=False)
    //   thr -> [inf, 0.9, 0.7, 0.5, 0.3, 0.1, 0.05]
    //   tpr -> [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    //   fpr -> [0.0, 0.2, 0.2, 0.6, 0.8, 0.8, 1.0]
    let roc = roc_curve(&positives(&B_LABELS), &B_SCORES).unwrap();
    assert_all_close(&roc.thresholds, &[f64::INFINITY, 0.9, 0.7, 0.5, 0.3, 0.1, 0.05], "B thresholds");
    assert_all_close(&roc.tpr, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0], "B tpr");
    assert_all_close(&roc.fpr, &[0.0, 0.2, 0.2, 0.6, 0.8, 0.8, 1.0], "B fpr");

    // roc_curve([0,1,0,1,1], [0.5]*5, drop_intermediate=False)
    //   thr -> [inf, 0.5], tpr -> [0.0, 1.0], fpr -> [0.0, 1.0]
    let roc = roc_curve(&positives(&C_LABELS), &C_SCORES).unwrap();
    assert_all_close(&roc.thresholds, &[f64::INFINITY, 0.5], "C thresholds");
    assert_all_close(&roc.tpr, &[0.0, 1.0], "C tpr");
    assert_all_close(&roc.fpr, &[0.0, 1.0], "C fpr");
}

#[test]
fn precision_recall_curve_matches_sklearn() {
    // p, r, thr = precision_recall_curve([0,0,1,1,1], [0.1,0.4,0.35,0.8,0.4])
    //   p   -> [0.6, 0.75, 0.6666666666666666, 1.0, 1.0]
    //   r   -> [1.0, 1.0, 0.6666666666666666, 0.3333333333333333, 0.0]
    //   thr -> [0.1, 0.35, 0.4, 0.8]
    let pr = precision_recall_curve(&positives(&A_LABELS), &A_SCORES).unwrap();
    assert_all_close(&pr.precision, &[0.6, 0.75, 0.6666666666666666, 1.0, 1.0], "A precision");
    assert_all_close(&pr.recall, &[1.0, 1.0, 0.6666666666666666, 0.3333333333333333, 0.0], "A recall");
    assert_all_close(&pr.thresholds, &[0.1, 0.35, 0.4, 0.8], "A thresholds");

    // precision_recall_curve([1,0,1,1,0,0,1,0,1,0], [0.9,0.9,0.7,0.5,0.5,0.5,0.3,0.3,0.1,0.05])
    //   p   -> [0.5, 0.5555555555555556, 0.5, 0.5, 0.6666666666666666, 0.5, 1.0]
    //   r   -> [1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
    //   thr -> [0.05, 0.1, 0.3, 0.5, 0.7, 0.9]
    let pr = precision_recall_curve(&positives(&B_LABELS), &B_SCORES).unwrap();
    assert_all_close(&pr.precision, &[0.5, 0.5555555555555556, 0.5, 0.5, 0.6666666666666666, 0.5, 1.0], "B precision");
    assert_all_close(&pr.recall, &[1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0], "B recall");
    assert_all_close(&pr.thresholds, &[0.05, 0.1, 0.3, 0.5, 0.7, 0.9], "B thresholds");

    // precision_recall_curve([0,1,0,1,1], [0.5]*5)  -> p [0.6, 1.0], r [1.0, 0.0], thr [0.5]
    let pr = precision_recall_curve(&positives(&C_LABELS), &C_SCORES).unwrap();
    assert_all_close(&pr.precision, &[0.6, 1.0], "C precision");
    assert_all_close(&pr.recall, &[1.0, 0.0], "C recall");
    assert_all_close(&pr.thresholds, &[0.5], "C thresholds");
}

#[test]
fn average_precision_is_stepwise_with_ties_entering_together() {
    // average_precision_score([0,0,1,1,1], [0.1,0.4,0.35,0.8,0.4])  -> 0.8055555555555556
    assert_close(average_precision(&positives(&A_LABELS), &A_SCORES).unwrap(), 0.8055555555555556, "AP of A");
    // average_precision_score([1,0,1,1,0,0,1,0,1,0], [0.9,0.9,0.7,0.5,0.5,0.5,0.3,0.3,0.1,0.05])
    //   -> 0.5444444444444444
    assert_close(average_precision(&positives(&B_LABELS), &B_SCORES).unwrap(), 0.5444444444444444, "AP of B");
    // average_precision_score([0,1,0,1,1], [0.5]*5)  -> 0.6 (the prevalence)
    assert_close(average_precision(&positives(&C_LABELS), &C_SCORES).unwrap(), 0.6, "AP of C");
}

#[test]
fn labels_of_one_class_are_errors() {
    let scores = [0.1, 0.7, 0.3];
    let negatives = [false; 3];
    let all_positive = [true; 3];
    for (labels, only) in [(&negatives, "negatives"), (&all_positive, "positives")] {
        let err = roc_auc(labels, &scores).unwrap_err();
        assert!(matches!(err, EvalError::OneClass { only: o, n: 3, .. } if o == only), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("ROC AUC needs both") && msg.contains(&format!("only {only} (3 labels)")), "{msg}");
        assert!(roc_curve(labels, &scores).is_err());
        assert!(precision_recall_curve(labels, &scores).is_err());
        assert!(average_precision(labels, &scores).is_err());
    }
}

#[test]
fn empty_mismatched_and_non_finite_inputs_are_errors() {
    assert_eq!(roc_auc(&[], &[]), Err(EvalError::Empty));
    assert_eq!(roc_curve(&[true, false], &[0.3]).unwrap_err(), EvalError::LengthMismatch { labels: 2, predictions: 1 });
    let err = average_precision(&[true, false, true], &[0.2, f64::NAN, 0.4]).unwrap_err();
    assert!(matches!(err, EvalError::NotFinite { index: 1, value } if value.is_nan()), "{err:?}");
    assert!(err.to_string().contains("index 1 is NaN"), "{err}");
    let err = precision_recall_curve(&[true, false], &[f64::INFINITY, 0.4]).unwrap_err();
    assert!(matches!(err, EvalError::NotFinite { index: 0, .. }), "{err:?}");
}
