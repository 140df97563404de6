//! Multi-class metrics against scikit-learn 1.9.1 and numpy 2.4. Each expected value was
//! produced by the Python in the comment beside it, run after:
//!
//! ```python
//! import numpy as np
//! from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix,
//!                              precision_recall_fscore_support, roc_auc_score)
//! y = [0,1,2,3,0,1,2,3,0,1,2,0]
//! p = [[0.7,0.1,0.1,0.1],[0.2,0.5,0.2,0.1],[0.1,0.2,0.3,0.4],[0.25,0.25,0.25,0.25],
//!      [0.4,0.4,0.1,0.1],[0.3,0.3,0.2,0.2],[0.1,0.1,0.7,0.1],[0.1,0.2,0.2,0.5],
//!      [0.2,0.5,0.2,0.1],[0.6,0.2,0.1,0.1],[0.2,0.2,0.5,0.1],[0.4,0.3,0.2,0.1]]
//! pred = np.argmax(p, axis=1)
//! ```

mod common;

use common::{assert_all_close, assert_close};
use derma_eval::{
    EvalError, accuracy, argmax, argmax_rows, balanced_accuracy, confusion_matrix, macro_auc_ovr, per_class_report,
    prior_corrected_argmax,
};

const Y: [usize; 12] = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 0];
const P: [[f64; 4]; 12] = [
    [0.7, 0.1, 0.1, 0.1],
    [0.2, 0.5, 0.2, 0.1],
    [0.1, 0.2, 0.3, 0.4],
    [0.25, 0.25, 0.25, 0.25],
    [0.4, 0.4, 0.1, 0.1],
    [0.3, 0.3, 0.2, 0.2],
    [0.1, 0.1, 0.7, 0.1],
    [0.1, 0.2, 0.2, 0.5],
    [0.2, 0.5, 0.2, 0.1],
    [0.6, 0.2, 0.1, 0.1],
    [0.2, 0.2, 0.5, 0.1],
    [0.4, 0.3, 0.2, 0.1],
];
// pred.tolist()  -> [0, 1, 3, 0, 0, 0, 2, 3, 1, 0, 2, 0]   (ties go to the first column)
const PRED: [usize; 12] = [0, 1, 3, 0, 0, 0, 2, 3, 1, 0, 2, 0];

// A second case: class 3 is predicted but never true, class 2 is true but never predicted.
// yl = [0,0,1,1,1,2]; pl = [0,3,1,1,0,1]
const YL: [usize; 6] = [0, 0, 1, 1, 1, 2];
const PL: [usize; 6] = [0, 3, 1, 1, 0, 1];

#[test]
fn argmax_takes_the_first_maximum_like_numpy() {
    assert_eq!(argmax_rows(&P).unwrap(), PRED);
    // np.argmax([0.2, 0.4, 0.4])  -> 1
    assert_eq!(argmax(&[0.2, 0.4, 0.4]).unwrap(), 1);
    let err = argmax(&[0.2, f64::NAN]).unwrap_err();
    assert!(matches!(err, EvalError::NotFinite { index: 1, .. }), "{err:?}");
    assert_eq!(argmax(&[]), Err(EvalError::NoClasses));
    let err = argmax_rows(&[vec![0.1, 0.9], vec![0.5]]).unwrap_err();
    assert_eq!(err, EvalError::RaggedRows { index: 1, len: 1, expected: 2 });
}

#[test]
fn the_prior_corrected_decision_divides_by_the_prior() {
    // prior = np.bincount(y) / len(y)   -> [1/3, 1/4, 1/4, 1/6]
    // d = (np.array(p) / prior).argmax(1)
    // d.tolist()                        -> [0, 1, 3, 3, 1, 3, 2, 3, 1, 0, 2, 0]
    // balanced_accuracy_score(y, d)     -> 0.625  (the arg-max: 0.5625)
    let prior = [1.0 / 3.0, 0.25, 0.25, 1.0 / 6.0];
    let d: Vec<usize> = P.iter().map(|row| prior_corrected_argmax(row, &prior).unwrap()).collect();
    assert_eq!(d, [0, 1, 3, 3, 1, 3, 2, 3, 1, 0, 2, 0]);
    assert_close(balanced_accuracy(&Y, &d, 4).unwrap(), 0.625, "balanced accuracy of the prior-corrected decision");
    assert_close(balanced_accuracy(&Y, &PRED, 4).unwrap(), 0.5625, "balanced accuracy of the arg-max");
    // A uniform prior is the arg-max.
    assert_eq!(P.iter().map(|row| prior_corrected_argmax(row, &[0.25; 4]).unwrap()).collect::<Vec<_>>(), PRED);
    for bad in [vec![0.5, 0.5], vec![0.5, 0.5, 0.0, 0.0], vec![0.5, 0.5, f64::NAN, 0.1]] {
        assert!(matches!(prior_corrected_argmax(&P[0], &bad), Err(EvalError::BadPrior { classes: 4, .. })), "{bad:?}");
    }
    assert!(matches!(prior_corrected_argmax(&[0.5, f64::NAN], &[0.5, 0.5]), Err(EvalError::NotFinite { index: 1, .. })));
}

#[test]
fn confusion_matrix_matches_sklearn() {
    // confusion_matrix(y, pred, labels=range(4)).tolist()
    //   -> [[3, 1, 0, 0], [2, 1, 0, 0], [0, 0, 2, 1], [1, 0, 0, 1]]
    assert_eq!(confusion_matrix(&Y, &PRED, 4).unwrap(), vec![vec![3, 1, 0, 0], vec![2, 1, 0, 0], vec![0, 0, 2, 1], vec![1, 0, 0, 1]]);
    // confusion_matrix(yl, pl, labels=range(4)).tolist()
    //   -> [[1, 0, 0, 1], [1, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert_eq!(confusion_matrix(&YL, &PL, 4).unwrap(), vec![vec![1, 0, 0, 1], vec![1, 2, 0, 0], vec![0, 1, 0, 0], vec![0; 4]]);
}

#[test]
fn accuracy_and_balanced_accuracy_match_sklearn() {
    // accuracy_score(y, pred)  -> 0.5833333333333334
    assert_close(accuracy(&Y, &PRED).unwrap(), 0.5833333333333334, "accuracy");
    // balanced_accuracy_score(y, pred)  -> 0.5625
    assert_close(balanced_accuracy(&Y, &PRED, 4).unwrap(), 0.5625, "balanced accuracy");
    // accuracy_score(yl, pl)  -> 0.5
    assert_close(accuracy(&YL, &PL).unwrap(), 0.5, "accuracy (second case)");
    // balanced_accuracy_score(yl, pl)  -> 0.38888888888888884
    // (mean recall over classes 0, 1, 2: class 3 is only predicted, so it is left out)
    assert_close(balanced_accuracy(&YL, &PL, 4).unwrap(), 0.38888888888888884, "balanced accuracy (second case)");
}

#[test]
fn per_class_report_matches_sklearn_with_zero_division_zero() {
    // pr, rc, f1, sup = precision_recall_fscore_support(y, pred, labels=range(4), zero_division=0)
    //   pr -> [0.5, 0.5, 1.0, 0.5]
    //   rc -> [0.75, 0.3333333333333333, 0.6666666666666666, 0.5]
    //   f1 -> [0.6, 0.4, 0.8, 0.5]
    //   sup -> [4, 3, 3, 2]
    let r = per_class_report(&Y, &PRED, 4).unwrap();
    let column = |f: fn(&derma_eval::ClassReport) -> f64| r.iter().map(f).collect::<Vec<_>>();
    assert_all_close(&column(|c| c.precision), &[0.5, 0.5, 1.0, 0.5], "precision");
    assert_all_close(&column(|c| c.recall), &[0.75, 0.3333333333333333, 0.6666666666666666, 0.5], "recall");
    assert_all_close(&column(|c| c.f1), &[0.6, 0.4, 0.8, 0.5], "f1");
    assert_eq!(r.iter().map(|c| c.support).collect::<Vec<_>>(), [4, 3, 3, 2]);

    // precision_recall_fscore_support(yl, pl, labels=range(4), zero_division=0)
    //   pr -> [0.5, 0.6666666666666666, 0.0, 0.0]
    //   rc -> [0.5, 0.6666666666666666, 0.0, 0.0]
    //   f1 -> [0.5, 0.6666666666666666, 0.0, 0.0]
    //   sup -> [2, 3, 1, 0]
    let r = per_class_report(&YL, &PL, 4).unwrap();
    let column = |f: fn(&derma_eval::ClassReport) -> f64| r.iter().map(f).collect::<Vec<_>>();
    assert_all_close(&column(|c| c.precision), &[0.5, 0.6666666666666666, 0.0, 0.0], "precision (second case)");
    assert_all_close(&column(|c| c.recall), &[0.5, 0.6666666666666666, 0.0, 0.0], "recall (second case)");
    assert_all_close(&column(|c| c.f1), &[0.5, 0.6666666666666666, 0.0, 0.0], "f1 (second case)");
    assert_eq!(r.iter().map(|c| c.support).collect::<Vec<_>>(), [2, 3, 1, 0]);
}

#[test]
fn macro_auc_ovr_matches_sklearn_on_four_classes() {
    // roc_auc_score(y, p, multi_class='ovr', average='macro')  -> 0.8619212962962963
    // (per class: [roc_auc_score(np.array(y)==i, np.array(p)[:,i]) for i in range(4)]
    //   -> [0.8125, 0.6851851851851851, 1.0, 0.9500000000000001])
    assert_close(macro_auc_ovr(&Y, &P).unwrap(), 0.8619212962962963, "macro OvR AUC (arrays)");
    let rows: Vec<Vec<f64>> = P.iter().map(|r| r.to_vec()).collect();
    assert_close(macro_auc_ovr(&Y, &rows).unwrap(), 0.8619212962962963, "macro OvR AUC (Vec rows)");
}

#[test]
fn macro_auc_ovr_of_two_columns_or_one_is_the_binary_auc() {
    // roc_auc_score([0,1,1,0,1,0], [0.2,0.7,0.4,0.4,0.9,0.6])  -> 0.8333333333333333
    let y = [0, 1, 1, 0, 1, 0];
    let p1 = [0.2, 0.7, 0.4, 0.4, 0.9, 0.6];
    let two: Vec<[f64; 2]> = p1.iter().map(|&p| [1.0 - p, p]).collect();
    let one: Vec<[f64; 1]> = p1.iter().map(|&p| [p]).collect();
    assert_close(macro_auc_ovr(&y, &two).unwrap(), 0.8333333333333333, "two columns");
    assert_close(macro_auc_ovr(&y, &one).unwrap(), 0.8333333333333333, "one column");
    // A label of 2 is not a class of a binary task.
    let err = macro_auc_ovr(&[0, 2], &[[0.1], [0.2]]).unwrap_err();
    assert_eq!(err, EvalError::BadClass { what: "label", index: 1, value: 2, classes: 2 });
}

#[test]
fn macro_auc_ovr_refuses_an_absent_class() {
    // sklearn raises too: roc_auc_score([0,0,1], [[.9,.1,0],[.8,.1,.1],[.2,.7,.1]], multi_class='ovr')
    //   -> ValueError: Number of classes in y_true not equal to the number of columns in 'y_score'
    let p = [[0.9, 0.1, 0.0], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1]];
    let err = macro_auc_ovr(&[0, 0, 1], &p).unwrap_err();
    assert_eq!(err, EvalError::ClassAbsent { class: 2, classes: 3 });
    assert!(err.to_string().contains("class 2 (of 3) has no sample"), "{err}");
    // roc_auc_score([1,1,1], p, multi_class='ovr')  -> the same ValueError
    let err = macro_auc_ovr(&[1, 1, 1], &p).unwrap_err();
    assert_eq!(err, EvalError::SingleClass { class: 1, n: 3, what: "one-vs-rest ROC AUC" });
}

#[test]
fn bad_inputs_are_errors() {
    assert_eq!(confusion_matrix(&[], &[], 3), Err(EvalError::Empty));
    assert_eq!(accuracy(&[0, 1], &[0]), Err(EvalError::LengthMismatch { labels: 2, predictions: 1 }));
    assert_eq!(balanced_accuracy(&[0, 1], &[0, 1], 0), Err(EvalError::NoClasses));
    let err = confusion_matrix(&[0, 5], &[0, 1], 3).unwrap_err();
    assert_eq!(err, EvalError::BadClass { what: "label", index: 1, value: 5, classes: 3 });
    assert!(err.to_string().contains("label 5 at sample 1"), "{err}");
    let err = per_class_report(&[0, 1], &[0, 3], 3).unwrap_err();
    assert_eq!(err, EvalError::BadClass { what: "predicted class", index: 1, value: 3, classes: 3 });
    let err = macro_auc_ovr(&[0, 1, 2], &[vec![0.5, 0.3, 0.2], vec![0.1, f64::NAN, 0.2], vec![0.1, 0.1, 0.8]]).unwrap_err();
    assert!(matches!(err, EvalError::NotFinite { index: 1, .. }), "{err:?}");
    let err = macro_auc_ovr(&[0, 1, 2], &[vec![0.5, 0.3, 0.2], vec![0.1, 0.2], vec![0.1, 0.1, 0.8]]).unwrap_err();
    assert_eq!(err, EvalError::RaggedRows { index: 1, len: 2, expected: 3 });
    let empty_rows: [Vec<f64>; 2] = [vec![], vec![]];
    assert_eq!(macro_auc_ovr(&[0, 1], &empty_rows), Err(EvalError::NoClasses));
}
