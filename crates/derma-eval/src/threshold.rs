//! Choosing the operating threshold of a screening model on validation scores, to be applied
//! unchanged to the test scores (with [`apply`]).
//!
//! A sample is predicted positive when `score >= threshold`. The candidate thresholds are
//! the distinct validation scores plus `+inf` ("predict nothing positive"); each
//! [`ThresholdRule`] picks one of them (except `fixed:x`, which takes `x`). Ties between
//! candidates are broken towards the **higher** threshold (fewer positives flagged), so a
//! choice never depends on the order of the samples.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::binary::{BinaryCounts, BinaryMetrics, apply};
use crate::check;
use crate::curve::curve_points;
use crate::error::{EvalError, Result};

/// The largest `fbeta:b` accepted.
pub const MAX_BETA: f64 = 1000.0;

/// A threshold-selection rule, written as text (`min-spec:0.8`, `recall:0.99`, `fbeta:2`,
/// `youden`, `fixed:0.5`) on the command line and in configuration files.
///
/// [`FromStr`] parses that text (rejecting values outside (0, 1], and β ≤ 0);
/// [`Display`](fmt::Display) writes it back in canonical form (`min-spec:0.80` is written
/// `min-spec:0.8`), which parses to the same rule. Serialised as that text.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum ThresholdRule {
    /// `min-spec:s` — the highest sensitivity among the thresholds whose validation
    /// specificity is `>= s` (ties: higher specificity, then higher threshold). The floor is
    /// *met* only when that threshold flags at least one positive: predicting nothing always
    /// has specificity 1 and does not count. Otherwise the choice is the most specific
    /// threshold that flags a positive (ties: higher sensitivity), `met` is false and `note`
    /// says so.
    MinSpecificity(f64),
    /// `recall:r` — the highest threshold whose validation recall (sensitivity) is `>= r`;
    /// always reachable (the lowest score flags every positive). Its precision is in
    /// [`ThresholdChoice::val`].
    Recall(f64),
    /// `fbeta:b` — the threshold maximising F-β on validation (ties: higher threshold);
    /// `b > 1` favours recall, e.g. `fbeta:2`.
    FBeta(f64),
    /// `youden` — the threshold maximising Youden's J = sensitivity + specificity − 1
    /// (ties: higher threshold). When no threshold has J > 0 the choice is `+inf`
    /// (predict nothing) and `note` says the scores do not separate the classes.
    Youden,
    /// `fixed:x` — `x` itself, whatever the validation data (which may then hold one class
    /// only).
    Fixed(f64),
}

impl FromStr for ThresholdRule {
    type Err = EvalError;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |reason: String| EvalError::BadRule { text: text.to_string(), reason };
        let trimmed = text.trim();
        let (name, value) = match trimmed.split_once(':') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (trimmed, None),
        };
        let example = match name {
            "min-spec" => "min-spec:0.8",
            "recall" => "recall:0.99",
            "fbeta" => "fbeta:2",
            "fixed" => "fixed:0.5",
            "youden" => {
                return match value {
                    None => Ok(Self::Youden),
                    Some(_) => Err(bad("`youden` takes no value".into())),
                };
            }
            "" => return Err(bad("the rule is empty".into())),
            other => return Err(bad(format!("unknown rule `{other}`"))),
        };
        let value = value.ok_or_else(|| bad(format!("`{name}` needs a value, e.g. `{example}`")))?;
        let v: f64 = value.parse().map_err(|_| bad(format!("`{value}` is not a number")))?;
        let rule = match name {
            "min-spec" => Self::MinSpecificity(v),
            "recall" => Self::Recall(v),
            "fixed" => Self::Fixed(v),
            _ => Self::FBeta(v),
        };
        rule.range_error().map_or(Ok(rule), |reason| Err(bad(reason)))
    }
}

impl ThresholdRule {
    /// Why the rule's value is out of range (`None` when it is in range): `min-spec`, `recall`
    /// and `fixed` take a value in (0, 1], `fbeta` a β in (0, [`MAX_BETA`]] (NaN is in
    /// neither). [`FromStr`] and [`select_threshold`] both check it, so a rule built in code
    /// is held to the same ranges as one parsed from text.
    fn range_error(&self) -> Option<String> {
        let (name, v, max) = match *self {
            Self::MinSpecificity(v) => ("min-spec", v, 1.0),
            Self::Recall(v) => ("recall", v, 1.0),
            Self::Fixed(v) => ("fixed", v, 1.0),
            // Above ~1e154 beta² overflows and every F-score is NaN; far below that F-β is
            // recall already.
            Self::FBeta(v) => ("fbeta", v, MAX_BETA),
            Self::Youden => return None,
        };
        let in_range = v > 0.0 && v <= max;
        match (in_range, name) {
            (true, _) => None,
            (false, "fbeta") => Some(format!("beta must be a number in (0, {MAX_BETA}], got {v}")),
            (false, _) => Some(format!("the value of `{name}` must be in (0, 1], got {v}")),
        }
    }
}

impl fmt::Display for ThresholdRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MinSpecificity(s) => write!(f, "min-spec:{s}"),
            Self::Recall(r) => write!(f, "recall:{r}"),
            Self::FBeta(b) => write!(f, "fbeta:{b}"),
            Self::Youden => f.write_str("youden"),
            Self::Fixed(x) => write!(f, "fixed:{x}"),
        }
    }
}

impl From<ThresholdRule> for String {
    fn from(rule: ThresholdRule) -> Self {
        rule.to_string()
    }
}

impl TryFrom<String> for ThresholdRule {
    type Error = EvalError;

    fn try_from(text: String) -> Result<Self> {
        text.parse()
    }
}

/// The threshold chosen by a rule and the validation metrics at it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdChoice {
    /// The rule that chose it.
    pub rule: ThresholdRule,
    /// The threshold: `score >= value` is predicted positive (`+inf`: nothing is).
    pub value: f64,
    /// Whether the rule's constraint was met; false only for a `min-spec` floor that no
    /// threshold flagging a positive reaches (a fallback was used, see `note`).
    pub met: bool,
    /// What the user should know about the choice (the fallback used, a degenerate
    /// result), in words.
    pub note: Option<String>,
    /// Validation metrics at `value`.
    pub val: BinaryMetrics,
}

/// A candidate threshold and the validation counts at it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    threshold: f64,
    counts: BinaryCounts,
}

/// Chooses the operating threshold by `rule` on validation `labels` (`true` = positive) and
/// `scores`; see [`ThresholdRule`] for what each rule picks.
///
/// Errors on empty input, mismatched lengths and non-finite scores, and — for every rule but
/// `fixed` — on labels of one class only ([`EvalError::OneClass`]: the split has only
/// positives or only negatives, and selection needs both).
pub fn select_threshold(rule: &ThresholdRule, labels: &[bool], scores: &[f64]) -> Result<ThresholdChoice> {
    let rule = *rule;
    if let Some(reason) = rule.range_error() {
        return Err(EvalError::BadRule { text: rule.to_string(), reason });
    }
    let choice = |c: Candidate, met: bool, note: Option<String>| ThresholdChoice {
        rule,
        value: c.threshold,
        met,
        note,
        val: BinaryMetrics::from_counts(c.threshold, c.counts),
    };
    Ok(match rule {
        ThresholdRule::Fixed(x) => ThresholdChoice { rule, value: x, met: true, note: None, val: apply(x, labels, scores)? },
        ThresholdRule::MinSpecificity(floor) => {
            let Candidates { all, lowest, .. } = Candidates::new(labels, scores)?;
            let qualifying = all.iter().filter(|c| c.counts.specificity() >= floor);
            match first_max(qualifying, |c| (c.counts.tp, c.counts.tn)) {
                Some(best) if best.counts.tp > 0 => choice(best, true, None),
                _ => {
                    let flagging = all.iter().filter(|c| c.counts.tp > 0);
                    let best = first_max(flagging, |c| (c.counts.tn, c.counts.tp)).unwrap_or(lowest);
                    let note = format!(
                        "specificity floor NOT met: no threshold that flags any validation positive \
                         reaches specificity >= {floor}; using the most specific one that does \
                         (threshold {}, specificity {:.4}, sensitivity {:.4})",
                        best.threshold,
                        best.counts.specificity(),
                        best.counts.sensitivity()
                    );
                    choice(best, false, Some(note))
                }
            }
        }
        ThresholdRule::Recall(target) => {
            let Candidates { all, lowest, .. } = Candidates::new(labels, scores)?;
            // Recall grows as the threshold falls: the first candidate reaching it is the highest.
            let best = all.iter().copied().find(|c| c.counts.sensitivity() >= target).unwrap_or(lowest);
            choice(best, true, None)
        }
        ThresholdRule::FBeta(beta) => {
            let Candidates { all, lowest, .. } = Candidates::new(labels, scores)?;
            let best = first_max(all.iter(), |c| c.counts.fbeta(beta)).unwrap_or(lowest);
            choice(best, true, None)
        }
        ThresholdRule::Youden => {
            let Candidates { all, lowest, p, n } = Candidates::new(labels, scores)?;
            // J · P · N = tp · N − fp · P, compared exactly in integers.
            let j = |c: &Candidate| i128::from(c.counts.tp) * i128::from(n) - i128::from(c.counts.fp) * i128::from(p);
            let best = first_max(all.iter(), j).unwrap_or(lowest);
            let note = (j(&best) <= 0).then(|| {
                "no threshold has sensitivity + specificity > 1 on validation (the scores do not \
                 separate the classes): predicting nothing positive"
                    .to_string()
            });
            choice(best, true, note)
        }
    })
}

/// The candidate thresholds of a validation split.
struct Candidates {
    /// Decreasing thresholds: `+inf` ("predict nothing"), then every distinct score.
    all: Vec<Candidate>,
    /// The lowest score, which flags every sample.
    lowest: Candidate,
    /// Number of positives.
    p: u64,
    /// Number of negatives.
    n: u64,
}

impl Candidates {
    /// Validates the split (both classes needed) and lists its candidates.
    fn new(labels: &[bool], scores: &[f64]) -> Result<Self> {
        check::scores(labels.len(), scores)?;
        let (p, n) = check::both_classes(labels, "threshold selection on the validation split")?;
        let nothing = Candidate { threshold: f64::INFINITY, counts: BinaryCounts { tp: 0, fp: 0, tn: n, fn_: p } };
        let all: Vec<Candidate> = std::iter::once(nothing)
            .chain(curve_points(labels, scores).into_iter().map(|pt| Candidate {
                threshold: pt.threshold,
                counts: BinaryCounts { tp: pt.tp, fp: pt.fp, tn: n - pt.fp, fn_: p - pt.tp },
            }))
            .collect();
        let lowest = all.last().copied().unwrap_or(nothing);
        Ok(Self { all, lowest, p, n })
    }
}

/// The first candidate with the largest key (so ties go to the higher threshold).
fn first_max<'a, K: PartialOrd>(
    candidates: impl Iterator<Item = &'a Candidate>,
    key: impl Fn(&Candidate) -> K,
) -> Option<Candidate> {
    let mut best: Option<(Candidate, K)> = None;
    for c in candidates {
        let k = key(c);
        if best.as_ref().is_none_or(|(_, bk)| k > *bk) {
            best = Some((*c, k));
        }
    }
    best.map(|(c, _)| c)
}
