//! Threshold selection. Expected thresholds come from a brute-force enumeration in numpy of
//! every candidate (each distinct score, plus +inf = "predict nothing"), positive iff
//! `score >= t`:
//!
//! ```python
//! import numpy as np
//! def table(y, s):
//!     y, s = np.array(y), np.array(s, float)
//!     ts = np.r_[np.inf, np.unique(s)[::-1]]                      # decreasing thresholds
//!     tp = np.array([((s >= t) & (y == 1)).sum() for t in ts])
//!     fp = np.array([((s >= t) & (y == 0)).sum() for t in ts])
//!     return ts, tp, fp, y.sum(), (1 - y).sum()
//! def min_spec(y, s, floor):                                      # -> (threshold, met)
//!     ts, tp, fp, P, N = table(y, s)
//!     ok = [i for i in range(len(ts)) if (N - fp[i]) / N >= floor]
//!     b = max(ok, key=lambda i: (tp[i], N - fp[i]))               # max() keeps the first:
//!     if tp[b] > 0: return ts[b], True                            # ties -> higher threshold
//!     flag = [i for i in range(len(ts)) if tp[i] > 0]
//!     return ts[max(flag, key=lambda i: (N - fp[i], tp[i]))], False
//! ```
//!
//! `youden` and `fbeta` are checked the same way (`np.argmax` keeps the first maximum, i.e.
//! the higher threshold). Case H (hand-checked), `y = [0,0,0,0,0,1,1,1,1,1]`,
//! `s = [0.05,0.2,0.3,0.45,0.6,0.35,0.5,0.6,0.7,0.9]`; `table(y, s)` gives
//! (threshold: tp, fp → sensitivity, specificity):
//!
//! ```text
//! inf: 0 0 → 0.0 1.0     0.5 : 4 1 → 0.8 0.8     0.3 : 5 3 → 1.0 0.4
//! 0.9: 1 0 → 0.2 1.0     0.45: 4 2 → 0.8 0.6     0.2 : 5 4 → 1.0 0.2
//! 0.7: 2 0 → 0.4 1.0     0.35: 5 2 → 1.0 0.6     0.05: 5 5 → 1.0 0.0
//! 0.6: 3 1 → 0.6 0.8
//! ```

mod common;

use common::{assert_close, positives};
use derma_eval::{EvalError, ThresholdRule, apply, select_threshold};

const H_LABELS: [u8; 10] = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1];
const H_SCORES: [f64; 10] = [0.05, 0.2, 0.3, 0.45, 0.6, 0.35, 0.5, 0.6, 0.7, 0.9];

fn choose(rule: &str, labels: &[u8], scores: &[f64]) -> derma_eval::ThresholdChoice {
    let rule: ThresholdRule = rule.parse().unwrap();
    let choice = select_threshold(&rule, &positives(labels), scores).unwrap();
    assert_eq!(choice.rule, rule);
    // The reported validation metrics are those of the chosen threshold.
    assert_eq!(choice.val, apply(choice.value, &positives(labels), scores).unwrap(), "{rule}");
    choice
}

#[test]
fn rules_parse_and_display_back() {
    for text in ["min-spec:0.8", "recall:0.99", "fbeta:2", "youden", "fixed:0.5", "min-spec:1", "fbeta:0.5"] {
        let rule: ThresholdRule = text.parse().unwrap();
        assert_eq!(rule.to_string(), text);
        assert_eq!(String::from(rule).parse::<ThresholdRule>().unwrap(), rule);
    }
    assert_eq!("min-spec:0.80".parse::<ThresholdRule>().unwrap(), ThresholdRule::MinSpecificity(0.8));
    assert_eq!(" recall: 0.99 ".parse::<ThresholdRule>().unwrap(), ThresholdRule::Recall(0.99));
    assert_eq!("fbeta:2".parse::<ThresholdRule>().unwrap(), ThresholdRule::FBeta(2.0));
    assert_eq!("fixed:0.5".parse::<ThresholdRule>().unwrap(), ThresholdRule::Fixed(0.5));
    assert_eq!(ThresholdRule::try_from("youden".to_string()).unwrap(), ThresholdRule::Youden);
}

#[test]
fn bad_rules_are_refused_with_the_text_and_the_accepted_forms() {
    let cases = [
        ("min-spec:1.5", "must be in (0, 1]"),
        ("min-spec:0", "must be in (0, 1]"),
        ("recall:-1", "must be in (0, 1]"),
        ("recall:NaN", "must be in (0, 1]"),
        ("fixed:0", "must be in (0, 1]"),
        ("fbeta:0", "beta must be a number in (0, 1000]"),
        ("fbeta:inf", "beta must be a number in (0, 1000]"),
        // beta² = inf: every F-score NaN, and the rule silently picked +inf.
        ("fbeta:1e200", "beta must be a number in (0, 1000]"),
        ("fixed:x", "`x` is not a number"),
        ("min-spec", "needs a value"),
        ("youden:1", "takes no value"),
        ("median", "unknown rule `median`"),
        ("", "empty"),
    ];
    for (text, reason) in cases {
        let err = text.parse::<ThresholdRule>().unwrap_err();
        assert!(matches!(&err, EvalError::BadRule { text: t, .. } if t == text), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{text}`")) && msg.contains(reason), "{text}: {msg}");
        assert!(msg.contains("min-spec:<s>") && msg.contains("youden") && msg.contains("fbeta:<beta>"), "{msg}");
    }
}

#[test]
fn out_of_range_rules_built_in_code_are_refused_by_selection_too() {
    // The variants are public, so a rule need not come through `parse`. Before the range
    // check in `select_threshold`, `FBeta(1e200)` made every F-score NaN and silently chose
    // +inf with `met = true`; `MinSpecificity(1.5)` silently fell back.
    let (y, s) = (positives(&H_LABELS), H_SCORES);
    for (rule, reason) in [
        (ThresholdRule::FBeta(1e200), "beta must be a number in (0, 1000]"),
        (ThresholdRule::FBeta(f64::NAN), "beta must be a number in (0, 1000]"),
        (ThresholdRule::MinSpecificity(1.5), "must be in (0, 1]"),
        (ThresholdRule::Recall(f64::NAN), "must be in (0, 1]"),
        (ThresholdRule::Fixed(0.0), "must be in (0, 1]"),
    ] {
        let err = select_threshold(&rule, &y, &s).unwrap_err();
        assert!(matches!(&err, EvalError::BadRule { .. }), "{rule}: {err:?}");
        assert!(err.to_string().contains(reason), "{rule}: {err}");
    }
    // In-range rules built in code select as parsed ones do (min_spec(y, s, 0.8) -> 0.5).
    assert_eq!(select_threshold(&ThresholdRule::MinSpecificity(0.8), &y, &s).unwrap().value, 0.5);
}

#[test]
fn min_specificity_takes_the_most_sensitive_threshold_above_the_floor() {
    // min_spec(y, s, 0.8)  -> (0.5, True): 0.6 and 0.5 both have specificity 0.8, 0.5 sees more
    let c = choose("min-spec:0.8", &H_LABELS, &H_SCORES);
    assert_eq!((c.value, c.met, c.note.as_deref()), (0.5, true, None));
    assert_eq!((c.val.sensitivity, c.val.specificity), (0.8, 0.8));
    // min_spec(y, s, 0.6)  -> (0.35, True)
    assert_eq!(choose("min-spec:0.6", &H_LABELS, &H_SCORES).value, 0.35);
    // min_spec(y, s, 1.0)  -> (0.7, True)
    assert_eq!(choose("min-spec:1", &H_LABELS, &H_SCORES).value, 0.7);
}

#[test]
fn an_unreachable_floor_is_reported_and_falls_back_to_the_most_specific_threshold() {
    // y = [0,1,1,0,1,0,0]; s = [0.95,0.9,0.8,0.7,0.6,0.3,0.2]   (the top score is a negative)
    // table: inf 0/0, 0.95 0/1, 0.9 1/1, 0.8 2/1, 0.7 2/2, ... (tp/fp), N = 4
    // min_spec(y, s, 0.9)  -> (0.8, False): only "predict nothing" reaches specificity 0.9;
    // 0.9 and 0.8 tie on specificity 0.75, 0.8 is more sensitive.
    let (y, s) = ([0, 1, 1, 0, 1, 0, 0], [0.95, 0.9, 0.8, 0.7, 0.6, 0.3, 0.2]);
    let c = choose("min-spec:0.9", &y, &s);
    assert_eq!((c.value, c.met), (0.8, false));
    assert_close(c.val.specificity, 0.75, "specificity");
    assert_close(c.val.sensitivity, 0.6666666666666666, "sensitivity");
    let note = c.note.expect("a note explains the fallback");
    assert!(note.contains("NOT met") && note.contains(">= 0.9") && note.contains("threshold 0.8"), "{note}");

    // A finite threshold that flags no positive does not meet the floor either:
    // y = [0,0]+[0]*18+[1,1]; s = [0.9,0.85]+[0.1]*18+[0.8,0.2]
    // min_spec(y, s, 0.95)  -> (0.2, False)   (0.9 reaches 0.95 but flags no positive)
    // min_spec(y, s, 0.9)   -> (0.2, True)
    let mut y = vec![0u8; 20];
    y.extend([1, 1]);
    let mut s = vec![0.9, 0.85];
    s.extend([0.1; 18]);
    s.extend([0.8, 0.2]);
    let c = choose("min-spec:0.95", &y, &s);
    assert_eq!((c.value, c.met, c.val.sensitivity, c.val.specificity), (0.2, false, 1.0, 0.9));
    let c = choose("min-spec:0.9", &y, &s);
    assert_eq!((c.value, c.met, c.note), (0.2, true, None));
}

#[test]
fn recall_takes_the_highest_threshold_reaching_it() {
    // ts, tp, fp, P, N = table(y, s); i = np.flatnonzero(tp / P >= 0.99)[0]
    // ts[i], tp[i] / (tp[i] + fp[i])  -> 0.35, 0.7142857142857143
    let c = choose("recall:0.99", &H_LABELS, &H_SCORES);
    assert_eq!((c.value, c.met, c.val.sensitivity), (0.35, true, 1.0));
    assert_close(c.val.precision, 0.7142857142857143, "precision at recall:0.99");
    // ts[np.flatnonzero(tp / P >= 0.8)[0]]  -> 0.5
    assert_eq!(choose("recall:0.8", &H_LABELS, &H_SCORES).value, 0.5);
}

#[test]
fn youden_and_fbeta_match_a_numpy_brute_force() {
    // ts, tp, fp, P, N = table(y, s)
    // J = tp * N - fp * P    -> [0 5 10 10 15 10 15 10 5 0]
    // ts[np.argmax(J)]       -> 0.5   (tied with 0.35: argmax keeps the higher threshold)
    let c = choose("youden", &H_LABELS, &H_SCORES);
    assert_eq!((c.value, c.met, c.note), (0.5, true, None));
    // f = lambda b2: np.where(tp > 0, (1 + b2) * tp / (b2 * P + tp + fp), 0)
    // ts[np.argmax(f(4))]    -> 0.35   (F2 0.9259259259259259)
    let c = choose("fbeta:2", &H_LABELS, &H_SCORES);
    assert_eq!(c.value, 0.35);
    assert_close(c.val.f2, 0.9259259259259259, "F2");
    // ts[np.argmax(f(0.25))] -> 0.5
    assert_eq!(choose("fbeta:0.5", &H_LABELS, &H_SCORES).value, 0.5);
}

#[test]
fn fixed_takes_the_value_as_given() {
    // y, s = np.array(y), np.array(s); ((s >= 0.55) & (y == 1)).sum(), ((s >= 0.55) & (y == 0)).sum()  -> 3, 1
    let c = choose("fixed:0.55", &H_LABELS, &H_SCORES);
    assert_eq!((c.value, c.met, c.val.tp, c.val.fp), (0.55, true, 3, 1));
    // fixed needs no choice, so a validation split of one class is fine:
    // ((np.array([0.4, 0.6]) >= 0.5) & (np.array([1, 1]) == 1)).sum()  -> 1
    let c = select_threshold(&ThresholdRule::Fixed(0.5), &[true, true], &[0.4, 0.6]).unwrap();
    assert_eq!((c.val.tp, c.val.fn_), (1, 1));
}

#[test]
fn all_equal_probabilities_have_a_single_candidate_score() {
    // y = [0,1,0,1]; s = [0.5]*4; table(y, s)  -> ts [inf, 0.5], tp [0, 2], fp [0, 2]
    let (y, s) = ([0, 1, 0, 1], [0.5; 4]);
    // next(t for t, r in zip(ts, tp / P) if r >= 0.99)  -> 0.5
    assert_eq!(choose("recall:0.99", &y, &s).value, 0.5);
    // np.where(tp > 0, 5 * tp / (4 * P + tp + fp), 0)  -> [0, 0.8333333333333334]: 0.5
    assert_eq!(choose("fbeta:2", &y, &s).value, 0.5);
    // min_spec(y, s, 0.8)  -> (0.5, False)
    let c = choose("min-spec:0.8", &y, &s);
    assert_eq!((c.value, c.met, c.val.specificity), (0.5, false, 0.0));
    // J = tp * N - fp * P  -> [0, 0]; ts[np.argmax(J)]  -> inf
    let c = choose("youden", &y, &s);
    assert_eq!((c.value, c.val.tp, c.val.fp), (f64::INFINITY, 0, 0));
    assert!(c.note.expect("a note").contains("do not separate the classes"));
}

#[test]
fn one_class_validation_is_an_error_that_says_so() {
    for rule in ["min-spec:0.8", "recall:0.99", "fbeta:2", "youden"] {
        let rule: ThresholdRule = rule.parse().unwrap();
        let err = select_threshold(&rule, &[true, true, true], &[0.1, 0.5, 0.9]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("validation split needs both positives and negatives"), "{msg}");
        assert!(msg.contains("only positives (3 labels)"), "{msg}");
        let err = select_threshold(&rule, &[false, false], &[0.1, 0.5]).unwrap_err();
        assert!(matches!(err, EvalError::OneClass { only: "negatives", n: 2, .. }), "{err:?}");
    }
}

#[test]
fn nan_scores_and_bad_lengths_are_errors() {
    let rule = ThresholdRule::MinSpecificity(0.8);
    let err = select_threshold(&rule, &[true, false, true], &[0.9, f64::NAN, 0.3]).unwrap_err();
    assert!(matches!(err, EvalError::NotFinite { index: 1, .. }), "{err:?}");
    let err = select_threshold(&ThresholdRule::Fixed(0.5), &[true, false], &[f64::NAN, 0.3]).unwrap_err();
    assert!(matches!(err, EvalError::NotFinite { index: 0, .. }), "{err:?}");
    assert_eq!(select_threshold(&rule, &[], &[]), Err(EvalError::Empty));
    assert_eq!(select_threshold(&rule, &[true], &[0.2, 0.3]), Err(EvalError::LengthMismatch { labels: 1, predictions: 2 }));
}
