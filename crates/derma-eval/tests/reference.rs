//! Randomised cross-check against scikit-learn 1.9.1 on ~200 scores with many ties.
//!
//! `tests/fixtures/reference.txt` is written by `scripts/reference_eval.py` (fixed seed; run
//! `python3 scripts/reference_eval.py` from the repository root to regenerate it). Each case
//! holds labels and scores, scikit-learn's `roc_auc_score` and `average_precision_score`,
//! and the threshold (and whether the rule was met) that a brute-force enumeration of every
//! candidate threshold picks for several rules.

mod common;

use common::assert_close;
use derma_eval::{ThresholdRule, apply, average_precision, precision_recall_curve, roc_auc, roc_curve, select_threshold};

const FIXTURE: &str = include_str!("fixtures/reference.txt");

/// One `case … end` block of the fixture.
#[derive(Default)]
struct Case {
    name: String,
    labels: Vec<bool>,
    scores: Vec<f64>,
    auc: f64,
    ap: f64,
    /// `(rule, threshold, met)`.
    choices: Vec<(String, f64, bool)>,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut case = Case::default();
    for line in FIXTURE.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        let number = |s: &str| -> f64 { s.parse().unwrap_or_else(|_| panic!("bad number `{s}` in `{line}`")) };
        match key {
            "case" => case = Case { name: rest.to_string(), ..Case::default() },
            "labels" => case.labels = rest.split(' ').map(|v| v == "1").collect(),
            "scores" => case.scores = rest.split(' ').map(number).collect(),
            "auc" => case.auc = number(rest),
            "ap" => case.ap = number(rest),
            "choose" => {
                let fields: Vec<&str> = rest.split(' ').collect();
                case.choices.push((fields[0].to_string(), number(fields[1]), fields[2] == "met"));
            }
            "end" => cases.push(std::mem::take(&mut case)),
            other => panic!("unknown fixture line `{other}`"),
        }
    }
    assert_eq!(cases.len(), 4, "the fixture holds four cases");
    // The fallback branch of min-spec (no threshold meets the floor) is exercised.
    assert!(cases.iter().any(|c| c.choices.iter().any(|(_, _, met)| !met)), "every fixture choice is met");
    cases
}

#[test]
fn fixture_cases_are_large_and_heavily_tied() {
    for c in cases() {
        assert!(c.labels.len() >= 180 && c.labels.len() == c.scores.len(), "{}", c.name);
        let mut distinct = c.scores.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert!(distinct.len() * 2 < c.scores.len(), "{}: {} distinct scores", c.name, distinct.len());
    }
}

#[test]
fn roc_auc_and_average_precision_match_sklearn_to_1e_12() {
    for c in cases() {
        assert_close(roc_auc(&c.labels, &c.scores).unwrap(), c.auc, &format!("{}: AUC", c.name));
        assert_close(average_precision(&c.labels, &c.scores).unwrap(), c.ap, &format!("{}: AP", c.name));
    }
}

#[test]
fn curves_are_consistent_with_the_areas() {
    for c in cases() {
        // The trapezoidal area of the ROC curve and the step area of the PR curve, computed
        // here in floating point the way scikit-learn's `auc` and `average_precision_score` do.
        let roc = roc_curve(&c.labels, &c.scores).unwrap();
        let area: f64 = roc.fpr.windows(2).zip(roc.tpr.windows(2)).map(|(f, t)| (f[1] - f[0]) * (t[1] + t[0]) / 2.0).sum();
        assert!((area - c.auc).abs() < 1e-12, "{}: ROC curve area {area} vs sklearn {}", c.name, c.auc);
        let pr = precision_recall_curve(&c.labels, &c.scores).unwrap();
        let ap: f64 = -pr.recall.windows(2).zip(&pr.precision).map(|(r, p)| (r[1] - r[0]) * p).sum::<f64>();
        assert!((ap - c.ap).abs() < 1e-12, "{}: PR step area {ap} vs sklearn {}", c.name, c.ap);
    }
}

#[test]
fn threshold_choices_match_a_brute_force_enumeration() {
    for c in cases() {
        assert!(c.choices.len() >= 8, "{}", c.name);
        for (rule, threshold, met) in &c.choices {
            let parsed: ThresholdRule = rule.parse().unwrap();
            let choice = select_threshold(&parsed, &c.labels, &c.scores).unwrap();
            assert_eq!((choice.value, choice.met), (*threshold, *met), "{}: {rule}", c.name);
            assert_eq!(choice.val, apply(*threshold, &c.labels, &c.scores).unwrap(), "{}: {rule}", c.name);
        }
    }
}
