//! # derma-eval
//!
//! The *metrics* and *threshold* stages: what predicted probabilities are worth. Plain slices
//! in, numbers out (no tensors), each function matching its scikit-learn counterpart.
//!
//! - [`metrics`]: multi-class — confusion matrix, accuracy, balanced accuracy, per-class
//!   precision/recall/F1, macro one-vs-rest ROC AUC.
//! - [`curve`]: binary — ROC curve and AUC, precision-recall curve and average precision.
//! - [`binary`]: counts and screening rates at one threshold.
//! - [`threshold`]: choosing the operating threshold on validation data
//!   (`min-spec:0.80`, `recall:0.99`, `fbeta:2`, `youden`, `fixed:0.5`).

pub mod binary;
pub mod curve;
pub mod error;
pub mod metrics;
pub mod threshold;

pub use binary::{BinaryMetrics, apply, fbeta};
pub use curve::{PrCurve, RocCurve, average_precision, precision_recall_curve, roc_auc, roc_curve};
pub use error::EvalError;
pub use metrics::{ClassReport, accuracy, balanced_accuracy, confusion_matrix, macro_auc_ovr, per_class_report};
pub use threshold::{ThresholdChoice, ThresholdRule, select_threshold};
