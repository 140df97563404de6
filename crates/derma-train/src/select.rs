//! The model-selection metric: which validation number picks a run's best epoch
//! (`--select-metric`) and scores a sweep's held-out folds (a plan's `metric`).
//!
//! Higher is better for every metric (`loss` is negated). `sens@spec` is the sensitivity at the
//! threshold `--threshold min-spec:<floor>` chose on validation, and scores 0 when no
//! threshold met the floor there: the fallback threshold's sensitivity is not a sensitivity at
//! the floor, and a model that cannot reach the floor must not win on it.

use std::fmt;
use std::str::FromStr;

use crate::evaluate::SplitMetrics;

/// A selection metric (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectMetric {
    /// ROC AUC (multi-class: macro one-vs-rest).
    Auc,
    /// Balanced accuracy (binary: at the operating threshold).
    BalAcc,
    /// Accuracy (binary: at the operating threshold).
    Acc,
    /// Mean loss, negated.
    Loss,
    /// Average precision (binary).
    Ap,
    /// F2 at the operating threshold (binary).
    F2,
    /// Sensitivity at the `min-spec:<floor>` threshold (binary).
    SensAtSpec,
}

impl SelectMetric {
    /// Every metric, in the order messages list them.
    pub const ALL: [Self; 7] = [Self::Auc, Self::BalAcc, Self::Acc, Self::Loss, Self::Ap, Self::F2, Self::SensAtSpec];

    /// Whether the metric needs a two-class task.
    pub fn needs_binary(self) -> bool {
        matches!(self, Self::Ap | Self::F2 | Self::SensAtSpec)
    }

    /// The metric's value in `m` (higher is better; NaN when undefined). `floor_met`: whether
    /// the operating threshold met the `min-spec` floor on validation (`true` for other rules).
    pub fn score(self, m: &SplitMetrics, floor_met: bool) -> f64 {
        match self {
            Self::Auc => m.auc,
            Self::BalAcc => m.balanced_accuracy,
            Self::Acc => m.accuracy,
            Self::Loss => -m.loss,
            Self::Ap => m.binary.as_ref().map_or(f64::NAN, |b| b.ap),
            Self::F2 => m.binary.as_ref().map_or(f64::NAN, |b| b.at_threshold.f2),
            Self::SensAtSpec if !floor_met => 0.0,
            Self::SensAtSpec => m.binary.as_ref().map_or(f64::NAN, |b| b.at_threshold.sensitivity),
        }
    }

    /// The names of `metrics`, comma-separated (for messages).
    pub fn names(metrics: &[Self]) -> String {
        metrics.iter().map(Self::to_string).collect::<Vec<_>>().join(", ")
    }
}

impl FromStr for SelectMetric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.to_string() == s)
            .ok_or_else(|| format!("metric `{s}`: expected one of {}", Self::names(&Self::ALL)))
    }
}

impl fmt::Display for SelectMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auc => "auc",
            Self::BalAcc => "bal_acc",
            Self::Acc => "acc",
            Self::Loss => "loss",
            Self::Ap => "ap",
            Self::F2 => "f2",
            Self::SensAtSpec => "sens@spec",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::BinarySplit;
    use derma_eval::{BinaryCounts, BinaryMetrics};

    #[test]
    fn names_round_trip() {
        for m in SelectMetric::ALL {
            assert_eq!(m.to_string().parse::<SelectMetric>(), Ok(m));
        }
        let err = "sens@0.8".parse::<SelectMetric>().unwrap_err();
        assert!(err.contains("sens@0.8") && err.contains("bal_acc") && err.contains("sens@spec"), "{err}");
    }

    #[test]
    fn sens_at_spec_is_zero_when_the_floor_was_not_met() {
        // 8 of 10 positives found, at a threshold that met (or missed) the floor on validation.
        let counts = BinaryCounts { tp: 8, fp: 3, tn: 7, fn_: 2 };
        let m = SplitMetrics {
            loss: 0.5,
            accuracy: 0.75,
            balanced_accuracy: 0.75,
            auc: 0.8,
            predicted: Vec::new(),
            binary: Some(BinarySplit { ap: 0.7, at_threshold: BinaryMetrics::from_counts(0.4, counts) }),
        };
        assert_eq!(SelectMetric::SensAtSpec.score(&m, true), 0.8);
        assert_eq!(SelectMetric::SensAtSpec.score(&m, false), 0.0);
        // Other metrics do not depend on the floor.
        assert_eq!(SelectMetric::F2.score(&m, false), counts.fbeta(2.0));
        assert_eq!(SelectMetric::Auc.score(&m, false), 0.8);
        assert_eq!(SelectMetric::Ap.score(&m, true), 0.7);
        assert_eq!(SelectMetric::Loss.score(&m, true), -0.5);
        // A multi-class split has no binary metrics: NaN, never a number that could win.
        let multi = SplitMetrics { binary: None, ..m };
        assert!(SelectMetric::F2.score(&multi, true).is_nan());
    }
}
