//! Paired comparisons of two models against `tests/fixtures/paired.txt`, written by
//! `scripts/reference_compare.py` (run `python3 scripts/reference_compare.py` from the
//! repository root to regenerate it): DeLong's paired AUC test from its definition (the ψ
//! matrices, cross-checked there with scikit-learn's `roc_auc_score`), scipy's
//! `binomtest(min, k, 0.5).pvalue` for McNemar's exact test, and the class-stratified bootstrap
//! re-run in numpy on the same SplitMix64 draws with scikit-learn's `roc_auc_score` and
//! `balanced_accuracy_score`.

mod common;

use common::{assert_all_close, assert_close};
use derma_eval::{EvalError, SplitMix64, argmax, balanced_accuracy, delong_paired, macro_auc_ovr, mcnemar_exact, paired_bootstrap};

const FIXTURE: &str = include_str!("fixtures/paired.txt");

/// One `delong … end` or `bootstrap … end` block: its lines after the first, by key.
struct Block {
    name: String,
    lines: Vec<(String, Vec<String>)>,
}

impl Block {
    fn get(&self, key: &str) -> &[String] {
        &self.lines.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("{}: no `{key}` line", self.name)).1
    }

    fn floats(&self, key: &str) -> Vec<f64> {
        self.get(key).iter().map(|v| v.parse().unwrap_or_else(|_| panic!("{}: bad number `{v}`", self.name))).collect()
    }

    fn ints(&self, key: &str) -> Vec<usize> {
        self.get(key).iter().map(|v| v.parse().unwrap()).collect()
    }
}

/// The fixture's blocks of `kind` (`delong`, `bootstrap`).
fn blocks(kind: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for line in FIXTURE.lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace().map(str::to_string);
        let key = words.next().unwrap_or_default();
        if key == kind {
            current = Some(Block { name: words.collect::<Vec<_>>().join(" "), lines: Vec::new() });
        } else if key == "end" {
            out.extend(current.take());
        } else if let Some(block) = current.as_mut() {
            block.lines.push((key, words.collect()));
        }
    }
    assert!(!out.is_empty(), "no `{kind}` block in the fixture");
    out
}

#[test]
fn delong_paired_matches_the_definition() {
    for case in blocks("delong") {
        let labels: Vec<bool> = case.ints("labels").iter().map(|&l| l == 1).collect();
        let (a, b) = (case.floats("a"), case.floats("b"));
        let want = case.floats("result");
        let got = delong_paired(&labels, &a, &b).unwrap();
        let what = |s: &str| format!("{}: {s}", case.name);
        assert_close(got.auc_a, want[0], &what("AUC a"));
        assert_close(got.auc_b, want[1], &what("AUC b"));
        assert_close(got.difference, want[2], &what("difference"));
        assert_close(got.std_error, want[3], &what("standard error"));
        // p-values down to 1e-12 (the far-apart case): relative agreement.
        assert!((got.p_value - want[4]).abs() <= 1e-9 * want[4].max(1e-300), "{}: p {} vs scipy {}", case.name, got.p_value, want[4]);
        assert_close(got.ci95.0, want[5], &what("interval low"));
        assert_close(got.ci95.1, want[6], &what("interval high"));
        // Swapping the models flips the sign and keeps the standard error and p-value.
        let swapped = delong_paired(&labels, &b, &a).unwrap();
        assert_close(swapped.difference, -want[2], &what("swapped difference"));
        assert_close(swapped.std_error, want[3], &what("swapped standard error"));
    }
}

/// The same scores twice: no difference, no variance, p = 1 (not NaN).
#[test]
fn delong_paired_of_identical_scores_is_no_difference() {
    let case = &blocks("delong")[0];
    let labels: Vec<bool> = case.ints("labels").iter().map(|&l| l == 1).collect();
    let a = case.floats("a");
    let got = delong_paired(&labels, &a, &a).unwrap();
    assert_eq!((got.difference, got.std_error, got.p_value, got.ci95), (0.0, 0.0, 1.0, (0.0, 0.0)));
}

#[test]
fn delong_paired_refuses_bad_input() {
    let labels = [true, true, false, false];
    assert!(matches!(delong_paired(&labels, &[0.9, 0.8, 0.1, 0.2], &[0.9, 0.8, 0.1]), Err(EvalError::LengthMismatch { .. })));
    assert!(matches!(delong_paired(&labels, &[0.9, 0.8, 0.1, 0.2], &[0.9, f64::NAN, 0.1, 0.2]), Err(EvalError::NotFinite { .. })));
    assert!(matches!(delong_paired(&[true, false, false], &[0.9, 0.1, 0.2], &[0.8, 0.1, 0.2]), Err(EvalError::TooFew { .. })));
}

#[test]
fn mcnemar_exact_matches_scipy_binomtest() {
    let mut seen = 0;
    for line in FIXTURE.lines().filter(|l| l.starts_with("mcnemar ")) {
        let v: Vec<&str> = line.split_whitespace().collect();
        let (only_a, only_b): (usize, usize) = (v[1].parse().unwrap(), v[2].parse().unwrap());
        let want: f64 = v[3].parse().unwrap();
        // The discordant cases, plus 10 where both are right and 5 where both are wrong.
        let mut a = vec![true; only_a];
        let mut b = vec![false; only_a];
        a.extend(std::iter::repeat_n(false, only_b));
        b.extend(std::iter::repeat_n(true, only_b));
        a.extend([true; 10].iter().chain(&[false; 5]));
        b.extend([true; 10].iter().chain(&[false; 5]));
        let got = mcnemar_exact(&a, &b).unwrap();
        assert_eq!((got.only_a, got.only_b), (only_a as u64, only_b as u64), "{line}");
        assert!((got.p_value - want).abs() <= 1e-12 * want, "{line}: p {} vs scipy {want}", got.p_value);
        seen += 1;
    }
    assert_eq!(seen, 6);
    assert!(matches!(mcnemar_exact(&[], &[]), Err(EvalError::Empty)));
    assert!(matches!(mcnemar_exact(&[true], &[true, false]), Err(EvalError::LengthMismatch { .. })));
}

#[test]
fn paired_bootstrap_matches_numpy_and_scikit_learn_on_the_same_draws() {
    for case in blocks("bootstrap") {
        let setup = case.get("classes");
        let (k, resamples, seed): (usize, usize, u64) = (setup[0].parse().unwrap(), setup[2].parse().unwrap(), setup[4].parse().unwrap());
        let labels = case.ints("labels");
        let rows = |key: &str| -> Vec<Vec<f64>> { case.floats(key).chunks(k).map(<[f64]>::to_vec).collect() };
        let (a, b) = (rows("a"), rows("b"));
        // The generator: the first draws of resample 0 are class 0's cases numpy picked.
        let class0: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 0).collect();
        let mut rng = SplitMix64::new(seed);
        let first: Vec<usize> = (0..5).map(|_| class0[rng.below(class0.len())]).collect();
        assert_eq!(first, case.ints("first"), "{}: SplitMix64 draws", case.name);

        let pick = |rows: &[Vec<f64>], idx: &[usize]| -> Vec<Vec<f64>> { idx.iter().map(|&i| rows[i].clone()).collect() };
        let sub_labels = |idx: &[usize]| -> Vec<usize> { idx.iter().map(|&i| labels[i]).collect() };
        let auc = paired_bootstrap(&labels, k, resamples, seed, |idx| {
            Ok(macro_auc_ovr(&sub_labels(idx), &pick(&b, idx))? - macro_auc_ovr(&sub_labels(idx), &pick(&a, idx))?)
        })
        .unwrap();
        let decide = |rows: &[Vec<f64>], idx: &[usize]| -> Vec<usize> { idx.iter().map(|&i| argmax(&rows[i]).unwrap()).collect() };
        let bal = paired_bootstrap(&labels, k, resamples, seed, |idx| {
            let y = sub_labels(idx);
            Ok(balanced_accuracy(&y, &decide(&b, idx), k)? - balanced_accuracy(&y, &decide(&a, idx), k)?)
        })
        .unwrap();
        assert_eq!(auc.resamples, resamples);
        let what = |s: &str| format!("{}: {s}", case.name);
        assert_all_close(&[auc.estimate, auc.ci95.0, auc.ci95.1], &case.floats("macro_auc"), &what("macro AUC B - A"));
        assert_all_close(&[bal.estimate, bal.ci95.0, bal.ci95.1], &case.floats("balanced_accuracy"), &what("balanced accuracy B - A"));
    }
}

#[test]
fn paired_bootstrap_refuses_bad_input_and_passes_errors_on() {
    let ok = |_: &[usize]| Ok(0.0);
    assert!(matches!(paired_bootstrap(&[], 2, 10, 0, ok), Err(EvalError::Empty)));
    assert!(matches!(paired_bootstrap(&[0, 1], 2, 0, 0, ok), Err(EvalError::TooFewResamples)));
    assert!(matches!(paired_bootstrap(&[0, 2], 2, 10, 0, ok), Err(EvalError::BadClass { value: 2, .. })));
    let failing = |_: &[usize]| Err(EvalError::NoClasses);
    assert!(matches!(paired_bootstrap(&[0, 1], 2, 10, 0, failing), Err(EvalError::NoClasses)));
    // Each resample keeps the class counts (2 of class 0, 1 of class 1).
    let counts = paired_bootstrap(&[1, 0, 0], 2, 50, 3, |idx| Ok(idx.iter().filter(|&&i| i == 0).count() as f64)).unwrap();
    assert_eq!(counts.estimate, 1.0);
    let zeros = paired_bootstrap(&[1, 0, 0], 2, 50, 3, |idx| Ok(idx.len() as f64 + 10.0 * f64::from(u8::from(!idx.contains(&0))))).unwrap();
    assert_eq!(zeros.ci95, (3.0, 3.0), "a resample lost the class-1 case or changed size");
}
