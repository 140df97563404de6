//! Choosing the operating threshold of a screening model on validation data, to be applied
//! unchanged to the test data.
//!
//! Candidates are the distinct validation scores (a sample is positive when its score is
//! `>=` the threshold) plus `+inf` ("predict nothing positive").

use std::fmt;
use std::str::FromStr;

use crate::binary::{BinaryMetrics, apply};
use crate::curve::clf_curve;
use crate::error::{EvalError, check_both, check_scores};

/// A threshold-selection rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdRule {
    /// `min-spec:s` — highest sensitivity among thresholds with specificity ≥ `s` (ties: the
    /// higher specificity, then the higher threshold).
    MinSpecificity(f64),
    /// `recall:r` — the highest threshold whose recall is ≥ `r`.
    Recall(f64),
    /// `fbeta:b` — the threshold maximising F-β (ties: the higher threshold).
    FBeta(f64),
    /// `youden` — the threshold maximising sensitivity + specificity - 1 (ties: higher).
    Youden,
    /// `fixed:x` — `x` itself.
    Fixed(f64),
}

const FORMS: &str = "min-spec:<0..1>, recall:<0..1>, fbeta:<beta>, youden or fixed:<threshold>";

impl FromStr for ThresholdRule {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self, EvalError> {
        let bad = |why: &str| EvalError::BadRule(format!("`{s}`: {why} (accepted: {FORMS})"));
        if s == "youden" {
            return Ok(Self::Youden);
        }
        let (name, value) = s.split_once(':').ok_or_else(|| bad("unknown rule"))?;
        let v: f64 = value.trim().parse().map_err(|_| bad("the value is not a number"))?;
        if !v.is_finite() {
            return Err(bad("the value must be finite"));
        }
        let unit = |v: f64| if v > 0.0 && v <= 1.0 { Ok(v) } else { Err(bad("the value must be in (0, 1]")) };
        match name {
            "min-spec" => Ok(Self::MinSpecificity(unit(v)?)),
            "recall" => Ok(Self::Recall(unit(v)?)),
            "fbeta" if v > 0.0 => Ok(Self::FBeta(v)),
            "fbeta" => Err(bad("beta must be > 0")),
            "fixed" => Ok(Self::Fixed(v)),
            _ => Err(bad("unknown rule")),
        }
    }
}

impl fmt::Display for ThresholdRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MinSpecificity(s) => write!(f, "min-spec:{s}"),
            Self::Recall(r) => write!(f, "recall:{r}"),
            Self::FBeta(b) => write!(f, "fbeta:{b}"),
            Self::Youden => write!(f, "youden"),
            Self::Fixed(x) => write!(f, "fixed:{x}"),
        }
    }
}

/// The chosen threshold and its validation metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdChoice {
    /// The rule.
    pub rule: ThresholdRule,
    /// The threshold (`score >= value` is positive).
    pub value: f64,
    /// Whether the rule's constraint was met (false: a fallback was used, see `note`).
    pub met: bool,
    /// What happened when the constraint could not be met.
    pub note: Option<String>,
    /// Validation metrics at `value`.
    pub val: BinaryMetrics,
}

/// Chooses the threshold on validation `labels` (true = positive) and `scores`.
pub fn select_threshold(rule: &ThresholdRule, labels: &[bool], scores: &[f64]) -> Result<ThresholdChoice, EvalError> {
    check_scores(labels.len(), scores)?;
    check_both(labels, "choosing a threshold")?;
    let p = labels.iter().filter(|&&l| l).count() as u64;
    let n = labels.len() as u64 - p;
    // Candidates in decreasing threshold order, starting with "nothing positive".
    let mut cands = vec![BinaryMetrics::from_counts(f64::INFINITY, 0, 0, n, p)];
    for (t, tp, fp) in clf_curve(labels, scores) {
        let (tp, fp) = (tp as u64, fp as u64);
        cands.push(BinaryMetrics::from_counts(t, tp, fp, n - fp, p - tp));
    }
    // `best_by` keeps the first (highest-threshold) candidate among equals.
    let best_by = |key: &dyn Fn(&BinaryMetrics) -> (f64, f64)| -> BinaryMetrics {
        let mut best = cands[0];
        for c in &cands[1..] {
            if key(c) > key(&best) {
                best = *c;
            }
        }
        best
    };
    let choice = |val: BinaryMetrics, met: bool, note: Option<String>| ThresholdChoice { rule: *rule, value: val.threshold, met, note, val };
    Ok(match *rule {
        ThresholdRule::MinSpecificity(floor) => {
            let ok: Vec<&BinaryMetrics> = cands.iter().filter(|c| c.specificity >= floor).collect();
            if ok.is_empty() {
                let best = best_by(&|c| (c.specificity, c.sensitivity));
                let note = format!(
                    "no threshold reaches validation specificity {floor}; using the most specific one ({:.4}, sensitivity {:.4})",
                    best.specificity, best.sensitivity
                );
                choice(best, false, Some(note))
            } else {
                let mut best = *ok[0];
                for c in &ok[1..] {
                    if (c.sensitivity, c.specificity) > (best.sensitivity, best.specificity) {
                        best = **c;
                    }
                }
                choice(best, true, None)
            }
        }
        ThresholdRule::Recall(target) => {
            // Recall grows as the threshold falls: the first candidate reaching it is the highest.
            let best = *cands.iter().find(|c| c.sensitivity >= target).expect("the lowest score gives recall 1");
            choice(best, true, None)
        }
        ThresholdRule::FBeta(beta) => choice(best_by(&|c| (crate::binary::fbeta(c.precision, c.sensitivity, beta), 0.0)), true, None),
        ThresholdRule::Youden => choice(best_by(&|c| (c.sensitivity + c.specificity - 1.0, 0.0)), true, None),
        ThresholdRule::Fixed(x) => choice(apply(x, labels, scores)?, true, None),
    })
}
