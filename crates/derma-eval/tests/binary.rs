//! Counts and screening rates at a threshold against scikit-learn 1.9.1. Each expected value
//! was produced by the Python in the comment beside it, run after:
//!
//! ```python
//! import numpy as np
//! from sklearn.metrics import confusion_matrix, recall_score, precision_score, f1_score, fbeta_score
//! y = np.array([1,1,1,0,0,0,0,1,0,0]); s = np.array([0.9,0.6,0.3,0.8,0.5,0.2,0.1,0.6,0.6,0.05])
//! pred = (s >= 0.6).astype(int)
//! ```

mod common;

use common::{assert_close, positives};
use derma_eval::{BinaryCounts, BinaryMetrics, EvalError, apply, fbeta};

const Y: [u8; 10] = [1, 1, 1, 0, 0, 0, 0, 1, 0, 0];
const S: [f64; 10] = [0.9, 0.6, 0.3, 0.8, 0.5, 0.2, 0.1, 0.6, 0.6, 0.05];

#[test]
fn scores_equal_to_the_threshold_are_positive() {
    // confusion_matrix(y, pred).ravel().tolist()  -> [4, 2, 1, 3]   (tn, fp, fn, tp)
    let c = BinaryCounts::at(0.6, &positives(&Y), &S).unwrap();
    assert_eq!(c, BinaryCounts { tp: 3, fp: 2, tn: 4, fn_: 1 });
    assert_eq!((c.positives(), c.negatives()), (4, 6));
}

#[test]
fn metrics_at_a_threshold_match_sklearn() {
    let m = apply(0.6, &positives(&Y), &S).unwrap();
    assert_eq!((m.tp, m.fp, m.tn, m.fn_, m.threshold), (3, 2, 4, 1, 0.6));
    // recall_score(y, pred)  -> 0.75
    assert_close(m.sensitivity, 0.75, "sensitivity");
    // recall_score(y, pred, pos_label=0)  -> 0.6666666666666666
    assert_close(m.specificity, 0.6666666666666666, "specificity");
    // precision_score(y, pred)  -> 0.6
    assert_close(m.precision, 0.6, "precision");
    // f1_score(y, pred)  -> 0.6666666666666666
    assert_close(m.f1, 0.6666666666666666, "f1");
    // fbeta_score(y, pred, beta=2)  -> 0.7142857142857143
    assert_close(m.f2, 0.7142857142857143, "f2");
    // fbeta_score(y, pred, beta=0.5)  -> 0.625
    assert_close(m.counts().fbeta(0.5), 0.625, "f0.5 from counts");
    assert_close(fbeta(m.precision, m.sensitivity, 0.5), 0.625, "f0.5 from rates");
    assert_close(fbeta(m.precision, m.sensitivity, 2.0), 0.7142857142857143, "f2 from rates");
    assert_eq!(BinaryMetrics::from_counts(0.6, m.counts()), m);
}

#[test]
fn undefined_ratios_are_zero() {
    // Nothing predicted positive: pred = (s >= 0.95).astype(int)
    //   precision_score(y, pred, zero_division=0)  -> 0.0
    //   fbeta_score(y, pred, beta=2, zero_division=0)  -> 0.0
    //   recall_score(y, pred, pos_label=0)  -> 1.0
    let m = apply(0.95, &positives(&Y), &S).unwrap();
    assert_eq!((m.precision, m.f1, m.f2, m.sensitivity, m.specificity), (0.0, 0.0, 0.0, 0.0, 1.0));
    assert_eq!(fbeta(0.0, 0.0, 2.0), 0.0);

    // Only negatives: yn = np.zeros(4, int); pn = (np.array([0.1,0.7,0.2,0.9]) >= 0.5).astype(int)
    //   recall_score(yn, pn, zero_division=0)  -> 0.0
    //   recall_score(yn, pn, pos_label=0)  -> 0.5
    //   confusion_matrix(yn, pn, labels=[0,1]).ravel().tolist()  -> [2, 2, 0, 0]
    let m = apply(0.5, &[false; 4], &[0.1, 0.7, 0.2, 0.9]).unwrap();
    assert_eq!((m.tn, m.fp, m.fn_, m.tp), (2, 2, 0, 0));
    assert_eq!((m.sensitivity, m.specificity), (0.0, 0.5));
}

#[test]
fn an_infinite_threshold_predicts_nothing() {
    let m = apply(f64::INFINITY, &positives(&Y), &S).unwrap();
    assert_eq!((m.tp, m.fp, m.tn, m.fn_), (0, 0, 6, 4));
}

#[test]
fn bad_inputs_are_errors() {
    assert_eq!(apply(f64::NAN, &[true], &[0.5]), Err(EvalError::NanThreshold));
    let err = apply(0.5, &[true, false], &[0.5, f64::NAN]).unwrap_err();
    assert!(matches!(err, EvalError::NotFinite { index: 1, .. }), "{err:?}");
    assert_eq!(apply(0.5, &[], &[]), Err(EvalError::Empty));
    assert_eq!(BinaryCounts::at(0.5, &[true], &[0.1, 0.2]), Err(EvalError::LengthMismatch { labels: 1, predictions: 2 }));
}
