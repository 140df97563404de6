//! `derma-report --compare`: two synthetic run folders on the same test images, compared
//! paired. The figures are hand-counted from the fixtures (tests/common); the p-values are
//! McNemar's exact test, `scipy.stats.binomtest(min, k, 0.5).pvalue`, whose values for these
//! counts are exact binomial sums: k = 5, min 0 → 2 · ½⁵ = 0.0625; k = 2, min 0 → 0.5; k = 3,
//! min 0 → 0.25; k = 1 → 1. derma-eval's own tests check DeLong, McNemar and the bootstrap
//! against scipy / scikit-learn; here they are checked to be applied to the right columns and
//! decisions.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use derma_report::{CompareOptions, Run, compare};

/// Run B of the binary pair: the binary run with these test probabilities (same threshold).
/// Against A at 0.6123 B also catches positives 5 and 7 (0.20, 0.55 → 0.75, 0.90) and clears
/// negatives 1, 4 and 8 (0.65, 0.6123, 0.95 → 0.15, 0.60, 0.30): right wherever A is right,
/// and on 5 more images (2 positives, 3 negatives).
fn write_binary_b(dir: &Path) {
    write_binary_run(dir);
    let mut test = BINARY_TEST;
    for (row, prob) in [(5, 0.75), (7, 0.90), (1, 0.15), (4, 0.60), (8, 0.30)] {
        test[row].1 = prob;
    }
    put(dir, "predictions.csv", &binary_predictions(&test));
}

fn row<'a>(c: &'a derma_report::Comparison, figure: &str) -> &'a derma_report::compare::Row {
    c.rows.iter().find(|r| r.figure == figure).unwrap_or_else(|| panic!("no row `{figure}` in {:?}", c.rows))
}

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() < 1e-12, "{what}: got {got}, want {want}");
}

#[test]
fn binary_runs_compare_auc_sensitivity_and_specificity_paired() {
    let (a_dir, b_dir) = (binary_run(), tempfile::tempdir().unwrap());
    write_binary_b(b_dir.path());
    let (a, b) = (Run::read(a_dir.path()).unwrap(), Run::read(b_dir.path()).unwrap());
    let c = compare(&a, &b, CompareOptions::default()).unwrap();
    assert_eq!((c.images, c.class_counts.clone()), (14, vec![7, 7]));

    // The AUC row is DeLong's paired test of the two probability columns.
    let auc = row(&c, "AUC");
    let want = derma_eval::delong_paired(&a.test.positives(), &a.test.scores(), &b.test.scores()).unwrap();
    assert_eq!((auc.a, auc.b, auc.ci95, auc.p_value), (want.auc_a, want.auc_b, want.ci95, Some(want.p_value)));
    close(auc.a, derma_eval::roc_auc(&a.test.positives(), &a.test.scores()).unwrap(), "AUC of A");

    // Sensitivity 5/7 → 7/7 (only B: rows 5, 7), specificity 4/7 → 7/7 (only B: 1, 4, 8),
    // accuracy 9/14 → 14/14 (5 discordant, all for B).
    for (figure, a_value, b_value, only_b, p) in [
        ("sensitivity (at each run's threshold)", 5.0 / 7.0, 1.0, 2, 0.5),
        ("specificity (at each run's threshold)", 4.0 / 7.0, 1.0, 3, 0.25),
        ("accuracy", 9.0 / 14.0, 1.0, 5, 0.0625),
    ] {
        let r = row(&c, figure);
        close(r.a, a_value, figure);
        close(r.b, b_value, figure);
        assert_eq!(r.test, format!("McNemar exact: 0 right only in A, {only_b} only in B"), "{figure}");
        close(r.p_value.unwrap(), p, figure);
        // B is right wherever A is: no resample can favour A.
        assert!(r.ci95.0 >= 0.0 && r.ci95.1 > 0.0 && r.ci95.1 <= 1.0, "{figure}: {:?}", r.ci95);
    }
    // The sensitivity's interval resamples the positives' difference alone: B − A on a resample
    // is (drawn copies of rows 5 and 7) / 7, the specificity's (copies of rows 1, 4, 8) / 7.
    let labels: Vec<usize> = BINARY_TEST.iter().map(|r| r.0).collect();
    for (figure, class, gained) in
        [("sensitivity (at each run's threshold)", 1, &[5, 7][..]), ("specificity (at each run's threshold)", 0, &[1, 4, 8][..])]
    {
        let want = derma_eval::paired_bootstrap(&labels, 2, 2000, 0, |idx| {
            let of_class = idx.iter().filter(|&&i| labels[i] == class).count() as f64;
            Ok(idx.iter().filter(|i| gained.contains(i)).count() as f64 / of_class)
        })
        .unwrap();
        let got = row(&c, figure).ci95;
        close(got.0, want.ci95.0, figure);
        close(got.1, want.ci95.1, figure);
    }

    // Seeded: the same seed gives the same intervals, another seed others.
    let again = compare(&a, &b, CompareOptions::default()).unwrap();
    assert_eq!(again, c);
    let other = compare(&a, &b, CompareOptions { seed: 1, ..CompareOptions::default() }).unwrap();
    assert_ne!(other.rows, c.rows, "the seed changed no interval");

    // A run against itself: no difference anywhere.
    let same = compare(&a, &a, CompareOptions::default()).unwrap();
    for r in &same.rows {
        assert_eq!((r.b - r.a, r.ci95), (0.0, (0.0, 0.0)), "{}", r.figure);
        assert_eq!(r.p_value, Some(1.0), "{}", r.figure);
    }
}

/// Run B of the 3-class pair: the 3-class run decided by `--decision balanced` with the prior
/// [0.5, 0.25, 0.25]. argmax(p / prior) over MULTI_TEST: rows 0 … 8 → 0, 1, 1, 1, 2, 0, 2, 2, 2
/// (row 2 [0.4, 0.4, 0.2] becomes [0.8, 1.6, 0.8]: bcc, its true class; row 5 [1.2, 0.4, 1.2]
/// keeps the first of the tie). Only row 2 changes from A's arg-max, for the better.
fn write_multi_b(dir: &Path) {
    write_multi_run(dir);
    let path = dir.join("report.json");
    let mut report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    report["decision"] = serde_json::json!({"rule": "balanced", "prior": [0.5, 0.25, 0.25]});
    put(dir, "report.json", &serde_json::to_string_pretty(&report).unwrap());
}

#[test]
fn multi_class_runs_each_decide_with_their_own_rule() {
    let (a_dir, b_dir) = (multi_run(), tempfile::tempdir().unwrap());
    write_multi_b(b_dir.path());
    let (a, b) = (Run::read(a_dir.path()).unwrap(), Run::read(b_dir.path()).unwrap());
    let c = compare(&a, &b, CompareOptions::default()).unwrap();
    // Accuracy 4/9 → 5/9 (row 2 only in B); balanced accuracy (1/3 + 1/3 + 2/3)/3 → (1/3 +
    // 2/3 + 2/3)/3; bcc recall 1/3 → 2/3; the other recalls unchanged.
    let acc = row(&c, "accuracy");
    close(acc.a, 4.0 / 9.0, "accuracy A");
    close(acc.b, 5.0 / 9.0, "accuracy B");
    assert_eq!(acc.test, "McNemar exact: 0 right only in A, 1 only in B");
    close(acc.p_value.unwrap(), 1.0, "accuracy p");
    let bal = row(&c, "balanced accuracy");
    close(bal.a, 4.0 / 9.0, "balanced accuracy A");
    close(bal.b, 5.0 / 9.0, "balanced accuracy B");
    assert_eq!(bal.p_value, None);
    for (name, a_value, b_value) in [("akiec", 1.0 / 3.0, 1.0 / 3.0), ("bcc", 1.0 / 3.0, 2.0 / 3.0), ("nv", 2.0 / 3.0, 2.0 / 3.0)] {
        let r = row(&c, &format!("recall {name}"));
        close(r.a, a_value, name);
        close(r.b, b_value, name);
    }
    // The probabilities are the same: every AUC is equal, its interval [0, 0].
    let macro_auc = row(&c, "macro AUC (one-vs-rest)");
    close(macro_auc.a, a.report.test.auc_macro, "macro AUC A");
    assert_eq!((macro_auc.b - macro_auc.a, macro_auc.ci95), (0.0, (0.0, 0.0)));
    for name in ["akiec", "bcc", "nv"] {
        let r = row(&c, &format!("AUC {name} (one-vs-rest)"));
        assert_eq!((r.b - r.a, r.p_value), (0.0, Some(1.0)), "{name}");
    }

    // A class of one test image has no DeLong variance: no AUC row, a note instead.
    let mut one = a.clone();
    for i in [5, 6] {
        one.test.labels[i] = 0;
    }
    let single = compare(&one, &one, CompareOptions::default()).unwrap();
    assert_eq!(single.notes, ["no AUC row for nv: 1 of the 9 test images, DeLong's test needs at least 2 in and 2 out of the class"]);
    assert!(single.rows.iter().all(|r| r.figure != "AUC nv (one-vs-rest)") && single.rows.iter().any(|r| r.figure == "recall nv"));
    assert!(single.markdown().contains("Note: no AUC row for nv"));

    // A class without test images: no macro AUC, recall or AUC row for it, notes instead.
    let mut none = a.clone();
    for i in [4, 5, 6] {
        none.test.labels[i] = 0;
    }
    let absent = compare(&none, &none, CompareOptions::default()).unwrap();
    assert_eq!(
        absent.notes,
        [
            "no macro AUC row: no test image of nv (a one-vs-rest AUC needs each class)",
            "no recall row for nv: no test image of it",
            "no AUC row for nv: 0 of the 9 test images, DeLong's test needs at least 2 in and 2 out of the class",
        ]
    );
    assert!(absent.rows.iter().any(|r| r.figure == "balanced accuracy"));

    let md = c.markdown();
    assert!(md.contains("## B against A on the same 9 test images"), "{md}");
    assert!(md.contains("- test images per class: akiec 3, bcc 3, nv 3"), "{md}");
    assert!(md.contains("| recall bcc | 0.3333 | 0.6667 | +0.3333 |"), "{md}");
}

#[test]
fn runs_on_other_test_images_are_refused() {
    let a_dir = multi_run();
    let a = Run::read(a_dir.path()).unwrap();

    // A label changed in row 4 (1-based 5): named, with B's file.
    let b_dir = tempfile::tempdir().unwrap();
    write_multi_run(b_dir.path());
    let csv = std::fs::read_to_string(b_dir.path().join("predictions.csv")).unwrap();
    put(b_dir.path(), "predictions.csv", &csv.replace("test,204,2,", "test,204,1,"));
    let e = compare(&a, &Run::read(b_dir.path()).unwrap(), CompareOptions::default()).unwrap_err().to_string();
    assert!(e.contains("predictions.csv") && e.contains("test row 5 is image 204 with label 1") && e.contains("not tested on the same images"), "{e}");

    // One test row fewer (a run folder whose own files agree: Run::read refuses a cut file).
    let mut short = a.clone();
    short.test.labels.pop();
    short.test.probs.pop();
    short.test.indices.pop();
    let e = compare(&a, &short, CompareOptions::default()).unwrap_err().to_string();
    assert!(e.contains("8 test rows, but") && e.contains("has 9"), "{e}");

    // Another task.
    let bin = binary_run();
    let e = compare(&a, &Run::read(bin.path()).unwrap(), CompareOptions::default()).unwrap_err().to_string();
    assert!(e.contains("report.json") && e.contains("not the same task"), "{e}");
}

#[test]
fn the_cli_prints_and_writes_the_comparison_and_names_bad_flags() {
    let (a_dir, b_dir, out) = (binary_run(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_binary_b(b_dir.path());
    let md = out.path().join("compare.md");
    let exe = env!("CARGO_BIN_EXE_derma-report");
    let o = Command::new(exe)
        .args(["--compare"])
        .args([a_dir.path(), b_dir.path()])
        .args(["--resamples", "500", "--seed", "3", "--out"])
        .arg(&md)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    let written = std::fs::read_to_string(&md).unwrap();
    assert!(stdout.starts_with(&written), "stdout:\n{stdout}\nfile:\n{written}");
    assert!(written.contains("Bootstrap: 500 resamples") && written.contains("(seed 3)"), "{written}");
    assert!(written.contains("| accuracy | 0.6429 | 1.0000 | +0.3571 |"), "{written}");

    for (args, message) in [
        (vec!["--resamples", "10"], "--resamples `10`: expected a number of bootstrap resamples, at least 100"),
        (vec!["--seed", "-1"], "--seed `-1`: expected a non-negative integer"),
        (vec!["--bogus"], "unknown option `--bogus`"),
    ] {
        let o = Command::new(exe).arg("--compare").args([a_dir.path(), b_dir.path()]).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && stderr.contains(message), "{args:?}: {stderr}");
    }
    let o = Command::new(exe).arg("--compare").arg(a_dir.path()).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("--compare takes two run folders, got 1"));
    let o = Command::new(exe).arg("--compare").arg(a_dir.path()).arg(out.path().join("nowhere")).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("nowhere: no such folder"));
}
