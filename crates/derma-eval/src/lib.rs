//! # derma-eval
//!
//! What predicted probabilities are worth: plain slices in (`&[usize]` classes, `&[bool]`
//! binary labels, `&[f64]` scores, rows of class probabilities), numbers out — no tensors,
//! no framework. Every metric matches the scikit-learn function named in its documentation
//! (the tests check them against values scikit-learn produced), and every problem with the
//! data (empty input, mismatched lengths, NaN scores, one class only) is an [`EvalError`],
//! never a panic.
//!
//! - [`metrics`]: multi-class — confusion matrix, accuracy, balanced accuracy, per-class
//!   precision/recall/F1/support, macro one-vs-rest ROC AUC (MedMNIST's `getAUC`), arg-max and
//!   the prior-corrected (balanced) arg-max.
//! - [`curve`]: binary ranking — ROC curve and AUC, precision-recall curve and average
//!   precision.
//! - [`binary`]: binary counts and screening rates (sensitivity, specificity, precision,
//!   F1, F2) at one threshold, `score >= threshold` being positive.
//! - [`threshold`]: choosing the operating threshold on validation data
//!   (`min-spec:0.8`, `recall:0.99`, `fbeta:2`, `youden`, `fixed:0.5`).
//! - [`calibration`]: whether the probabilities come true — Brier score, reliability table
//!   and expected calibration error (binary, or top-label over several classes).
//! - [`recalibration`]: making them come true — temperature, Platt and bias-corrected
//!   temperature scaling of the logits, fitted on validation data (scipy / scikit-learn checked).
//! - [`interval`]: 95 % confidence intervals — Wilson for sensitivity, specificity and
//!   precision from their counts, DeLong for the ROC AUC (scipy and the definition checked).
//! - [`paired`]: two models on the same test images — DeLong's paired AUC test, McNemar's exact
//!   test, a class-stratified paired bootstrap of any difference.
//! - [`error`]: the error type.

mod check;

pub mod binary;
pub mod calibration;
pub mod curve;
pub mod error;
pub mod interval;
pub mod metrics;
pub mod paired;
pub mod recalibration;
pub mod threshold;

pub use binary::{BinaryCounts, BinaryMetrics, apply, fbeta};
pub use calibration::{Calibration, ReliabilityBin, calibration};
pub use curve::{PrCurve, RocCurve, average_precision, precision_recall_curve, roc_auc, roc_curve};
pub use error::{EvalError, Result};
pub use interval::{Z95, auc_delong95, wilson95};
pub use metrics::{
    ClassReport, accuracy, argmax, argmax_rows, balanced_accuracy, confusion_matrix, macro_auc_ovr, per_class_report,
    prior_corrected_argmax,
};
pub use paired::{BootstrapInterval, McNemar, PairedAuc, SplitMix64, delong_paired, mcnemar_exact, paired_bootstrap};
pub use recalibration::{LogitScaling, Recalibration, fit_bcts, fit_platt, fit_temperature};
pub use threshold::{ThresholdChoice, ThresholdRule, select_threshold};
