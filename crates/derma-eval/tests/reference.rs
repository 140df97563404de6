//! Randomised cross-check against scikit-learn 1.9.1 on ~200 scores with many ties.
//!
//! `tests/fixtures/reference.txt` is written by `scripts/reference_eval.py` (fixed seed; run
//! `python3 scripts/reference_eval.py` from the repository root to regenerate it). Each case
//! holds labels and scores, scikit-learn's `roc_auc_score` and `average_precision_score`,
//! and the threshold (and whether the rule was met) that a brute-force enumeration of every
//! candidate threshold picks for several rules; also the AUC's DeLong 95 % interval computed
//! from its definition, and scipy's Wilson 95 % intervals of the sensitivity and specificity at
//! the `min-spec:0.8` threshold (plus a few edge counts after the cases); and the calibration
//! of each case — `brier_score_loss`, the reliability table of `calibration_curve`'s 10
//! uniform bins and the ECE over them — with one multi-class `topcase` block (top-label).

mod common;

use common::assert_close;
use derma_eval::{
    ThresholdRule, apply, auc_delong95, average_precision, calibration, precision_recall_curve, roc_auc, roc_curve, select_threshold,
    wilson95,
};

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
    /// DeLong's 95 % interval of the AUC.
    auc_ci95: (f64, f64),
    /// `(successes, trials, low, high)`: scipy's Wilson 95 % intervals.
    wilson: Vec<(u64, u64, f64, f64)>,
    /// `brier_score_loss`.
    brier: f64,
    /// The ECE over 10 uniform bins, and the non-empty bins `(count, mean score, observed)`.
    ece: f64,
    reliability: Vec<(usize, f64, f64)>,
    /// A `topcase`: the class count and the rows of probabilities (`scores`, flattened).
    classes: usize,
}

/// The fixture's binary cases, the Wilson lines after the last case, and the `topcase` blocks.
fn fixture_all() -> (Vec<Case>, Vec<(u64, u64, f64, f64)>, Vec<Case>) {
    let mut cases = Vec::new();
    let mut top = Vec::new();
    let mut edges = Vec::new();
    let mut case = Case::default();
    for line in FIXTURE.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        let number = |s: &str| -> f64 { s.parse().unwrap_or_else(|_| panic!("bad number `{s}` in `{line}`")) };
        match key {
            "case" => case = Case { name: rest.to_string(), ..Case::default() },
            "topcase" => {
                // The Wilson edge lines before it belong to no case.
                edges.append(&mut case.wilson);
                case = Case { name: rest.to_string(), ..Case::default() };
            }
            "classes" => case.classes = rest.parse().unwrap(),
            "labels" if case.classes > 0 => case.choices = rest.split(' ').map(|v| (v.to_string(), 0.0, true)).collect(),
            "labels" => case.labels = rest.split(' ').map(|v| v == "1").collect(),
            "probs" => case.scores = rest.split(' ').map(number).collect(),
            "brier" => case.brier = number(rest),
            "ece10" => case.ece = number(rest),
            "reliability10" => {
                case.reliability = rest
                    .split(' ')
                    .map(|bin| {
                        let f: Vec<&str> = bin.split(':').collect();
                        (f[0].parse().unwrap(), number(f[1]), number(f[2]))
                    })
                    .collect()
            }
            "scores" => case.scores = rest.split(' ').map(number).collect(),
            "auc" => case.auc = number(rest),
            "ap" => case.ap = number(rest),
            "choose" => {
                let fields: Vec<&str> = rest.split(' ').collect();
                case.choices.push((fields[0].to_string(), number(fields[1]), fields[2] == "met"));
            }
            "auc_ci95" => {
                let (lo, hi) = rest.split_once(' ').unwrap();
                case.auc_ci95 = (number(lo), number(hi));
            }
            "wilson95" => {
                let f: Vec<&str> = rest.split(' ').collect();
                case.wilson.push((f[0].parse().unwrap(), f[1].parse().unwrap(), number(f[2]), number(f[3])));
            }
            "end" if case.classes > 0 => top.push(std::mem::take(&mut case)),
            "end" => cases.push(std::mem::take(&mut case)),
            other => panic!("unknown fixture line `{other}`"),
        }
    }
    edges.append(&mut case.wilson);
    (cases, edges, top)
}

/// The fixture's binary cases and the Wilson lines after the last case.
fn fixture() -> (Vec<Case>, Vec<(u64, u64, f64, f64)>) {
    let (cases, wilson, _) = fixture_all();
    (cases, wilson)
}

fn cases() -> Vec<Case> {
    let (cases, _) = fixture();
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

/// DeLong's interval (mid-ranks, O(N log N)) equals the definition's (every positive-negative
/// pair) on the tied cases, to 1e-12.
#[test]
fn auc_intervals_match_delongs_definition() {
    for c in cases() {
        let (lo, hi) = auc_delong95(&c.labels, &c.scores).unwrap();
        assert_close(lo, c.auc_ci95.0, &format!("{}: AUC 95 % low", c.name));
        assert_close(hi, c.auc_ci95.1, &format!("{}: AUC 95 % high", c.name));
        assert!(lo < c.auc && c.auc < hi, "{}", c.name);
    }
    // Too few of a class for a variance, one class, NaN: errors.
    assert!(auc_delong95(&[true, false, false], &[0.9, 0.1, 0.2]).is_err());
    assert!(auc_delong95(&[false, false], &[0.9, 0.1]).is_err());
    assert!(auc_delong95(&[true, true, false, false], &[0.9, f64::NAN, 0.1, 0.2]).is_err());
}

/// Wilson intervals equal scipy's: the sensitivity and specificity counts of each case at
/// min-spec:0.8, and 0 or all of 20, 0 or 1 of 1, 7 of 99.
#[test]
fn wilson_intervals_match_scipy() {
    let (cases, edges) = fixture();
    let all: Vec<_> = cases.iter().flat_map(|c| c.wilson.clone()).chain(edges).collect();
    assert_eq!(all.len(), 13);
    for (k, n, lo, hi) in all {
        let (l, h) = wilson95(k, n).unwrap();
        assert_close(l, lo, &format!("{k} of {n}: low"));
        assert_close(h, hi, &format!("{k} of {n}: high"));
    }
    assert_eq!(wilson95(0, 0), None);
    assert_eq!(wilson95(3, 2), None);
}

/// The calibration of every binary case (positive-class scores in tenths and hundredths, many
/// on the bin edges) and of the 7-class top-label block equals scikit-learn's: the Brier score,
/// each non-empty bin's count, mean score and observed fraction, and the ECE, to 1e-12.
#[test]
fn calibration_matches_sklearn() {
    let (binary, _, top) = fixture_all();
    assert_eq!(top.len(), 1);
    let mut checked = Vec::new();
    for c in &binary {
        let labels: Vec<usize> = c.labels.iter().map(|&l| usize::from(l)).collect();
        let rows: Vec<[f64; 1]> = c.scores.iter().map(|&s| [s]).collect();
        checked.push((c, calibration(&labels, &rows, 10).unwrap()));
    }
    for c in &top {
        let labels: Vec<usize> = c.choices.iter().map(|(l, _, _)| l.parse().unwrap()).collect();
        let rows: Vec<&[f64]> = c.scores.chunks(c.classes).collect();
        assert_eq!((rows.len(), labels.len()), (150, 150));
        let got = calibration(&labels, &rows, 10).unwrap();
        assert!(got.top_label);
        checked.push((c, got));
    }
    for (c, got) in checked {
        assert_close(got.brier, c.brier, &format!("{}: Brier", c.name));
        assert_close(got.ece, c.ece, &format!("{}: ECE", c.name));
        let filled: Vec<_> = got.bins.iter().filter(|b| b.count > 0).collect();
        assert_eq!(filled.len(), c.reliability.len(), "{}: non-empty bins", c.name);
        for (b, &(count, mean, observed)) in filled.iter().zip(&c.reliability) {
            assert_eq!(b.count, count, "{}: bin ({}, {}]", c.name, b.lower, b.upper);
            assert_close(b.mean_score, mean, &format!("{}: bin ({}, {}] mean score", c.name, b.lower, b.upper));
            assert_close(b.observed, observed, &format!("{}: bin ({}, {}] observed", c.name, b.lower, b.upper));
        }
    }
}
