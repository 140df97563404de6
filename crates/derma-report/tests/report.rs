//! End to end: synthetic binary and 3-class run folders → plots, gallery, report.md and
//! report.html.

mod common;

use std::path::Path;

use common::*;
use derma_report::{ReportOptions, curves, write_report};

fn assert_real_png(path: &Path, size: (u32, u32)) {
    assert!(path.is_file(), "{} was not written", path.display());
    let img = decode(path);
    assert_eq!((img.width(), img.height()), size, "{} has the wrong size", path.display());
    // Curves, text and shading: far more than a flat background plus a line colour.
    let colours = distinct_colours(&img);
    assert!(colours > 20, "{} looks blank ({colours} colours)", path.display());
}

#[test]
fn binary_report_writes_every_plot_as_a_real_png() {
    let run = binary_run();
    let source = images(None);
    let files = write_report(run.path(), &ReportOptions::default(), Some(&source)).unwrap();
    assert_real_png(&files.curves, curves::size(true));
    assert_eq!(curves::size(true), (900, 3 * curves::PANEL_HEIGHT));
    assert_real_png(&files.roc, derma_report::roc::SIZE);
    assert_real_png(&files.pr, derma_report::roc::SIZE);
    assert_real_png(&files.confusion, derma_report::confusion::SIZE);
    assert_real_png(&files.recall, derma_report::recall::SIZE);
    for f in files.all() {
        assert!(f.starts_with(run.path()), "{} is outside the run folder", f.display());
        assert!(f.is_file(), "{} listed but missing", f.display());
    }
    // No temporary file is left behind by the atomic writes.
    for dir in [run.path().to_path_buf(), run.path().join("plots"), run.path().join("gallery")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(!name.contains(".tmp-"), "temporary file {name} left in {}", dir.display());
        }
    }
}

#[test]
fn multiclass_report_writes_every_plot_as_a_real_png() {
    let run = multi_run();
    let files = write_report(run.path(), &ReportOptions::default(), None).unwrap();
    assert_real_png(&files.curves, curves::size(false));
    assert_eq!(curves::size(false), (900, 2 * curves::PANEL_HEIGHT));
    for p in [&files.roc, &files.pr] {
        assert_real_png(p, derma_report::roc::SIZE);
    }
    assert_real_png(&files.confusion, derma_report::confusion::SIZE);
    assert_real_png(&files.recall, derma_report::recall::SIZE);
    assert!(files.gallery.is_empty());
}

#[test]
fn binary_markdown_has_the_sections_numbers_and_existing_links() {
    let run = binary_run();
    let options = ReportOptions { train_counts: Some(vec![900, 123]), ..ReportOptions::default() };
    let source = images(None);
    let files = write_report(run.path(), &options, Some(&source)).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    for section in [
        "## Configuration",
        "## Class counts",
        "## Test results",
        "## Operating threshold",
        "## Training curves",
        "## ROC curve",
        "## Precision-recall curve",
        "## Confusion matrix",
        "## Per-class recall",
        "## Validation threshold table",
        "## Error gallery (test)",
        "### False positives with the highest probability",
        "### False negatives with the lowest probability",
    ] {
        assert!(md.contains(section), "report.md lacks `{section}`:\n{md}");
    }
    // The threshold from report.json, exactly, and the test sensitivity/specificity at it
    // (5/7 and 4/7, see BINARY_TEST).
    assert!(md.contains("threshold: 0.6123 "), "threshold value missing:\n{md}");
    assert!(md.contains("| sensitivity | 0.7500 | 0.7143 |"), "val/test sensitivity row missing:\n{md}");
    assert!(md.contains("| specificity | 0.7500 | 0.5714 |"), "val/test specificity row missing:\n{md}");
    assert!(md.contains("| TP | 3 | 5 |") && md.contains("| FN | 1 | 2 |"), "count rows missing:\n{md}");
    // 95 % intervals: Wilson from the test counts, scipy 1.17
    // `binomtest(k, n).proportion_ci(0.95, method="wilson")`: 5 of 7 → 0.3589–0.9178, 4 of 7 →
    // 0.2505–0.8418, 5 of 8 → 0.3057–0.8632; DeLong's for the test AUC (0.7041) from its
    // definition over every positive-negative pair (scripts/reference_eval.py's delong_ci95 on
    // BINARY_TEST): 0.4097–0.9985.
    for want in [
        "sensitivity 0.7143 (95% CI 0.3589–0.9178), specificity 0.5714 (95% CI 0.2505–0.8418)",
        "| 0.3589–0.9178 |",
        "| 0.2505–0.8418 |",
        "| 0.3057–0.8632 |",
        "ROC AUC 0.7041 (95% CI 0.4097–0.9985)",
        "Test ROC AUC 0.7041 (95% CI 0.4097–0.9985, DeLong)",
    ] {
        assert!(md.contains(want), "`{want}` missing:\n{md}");
    }
    assert!(md.contains("rule: recall:0.75") && md.contains("rule met on validation: yes"));
    // Configuration: the settings that matter for this loss and sampler.
    assert!(md.contains("| gamma | 2.0 |") && md.contains("| sampler\\_power | 0.5 |"), "config table:\n{md}");
    assert!(!md.contains("undersample\\_ratio"), "an unused setting is shown:\n{md}");
    for row in ["| mining\\_strength | 2.0 |", "| patience | 3 |", "| freeze\\_bn | true |"] {
        assert!(md.contains(row), "config table lacks `{row}`:\n{md}");
    }
    assert!(!md.contains("triplet\\_margin"), "the margin of a metric head that is off is shown:\n{md}");
    // Class counts: train from the options, val/test from predictions.csv.
    assert!(md.contains("| mel/bcc | 123 (12.0%) | 4 (50.0%) | 7 (50.0%) |"), "class counts:\n{md}");
    // Threshold table: the chosen row and specificity floors.
    // Validation (BINARY_VAL): at 0.8 specificity 1 (every floor up to 0.99), at 0.6123 the
    // chosen threshold, at 0.4 sensitivity 1 and specificity 0.75 (floors 0.5, 0.6, 0.7: at
    // 0.3 the sensitivity is also 1 but the specificity only 0.5, and min-spec breaks the tie
    // to the higher specificity).
    assert!(md.contains("| chosen | 0.6123 | 0.7500 | 0.7500 | 0.7500 |"), "threshold table lacks the chosen row:\n{md}");
    assert!(md.contains("| spec ≥ 0.80, 0.85, 0.90, 0.95, 0.99 | 0.8000 | 0.5000 | 1.0000 | 1.0000 |"), "threshold table:\n{md}");
    assert!(md.contains("| spec ≥ 0.50, 0.60, 0.70 | 0.4000 | 1.0000 | 0.7500 | 0.8000 |"), "threshold table:\n{md}");
    // Calibration of BINARY_TEST, scikit-learn 1.9.1: brier_score_loss = 0.23624447, and over
    // calibration_curve(n_bins=10)'s bins an ECE of 0.29461; its (0.6, 0.7] bin holds 5 scores
    // of mean 0.63692, 2 of them positive.
    assert!(md.contains("Brier score 0.2362. Expected calibration error 0.2946 over 10 equal-width bins of P(mel/bcc)."), "{md}");
    assert!(md.contains("- Calibration (test): Brier score 0.2362; expected calibration error 0.2946 over 10 bins of P(mel/bcc)."), "{md}");
    assert!(md.contains("| (0.6, 0.7\\] | 5 | 0.6369 | 0.4000 |") && md.contains("| \\[0.0, 0.1\\] | 2 | 0.0750 | 0.0000 |"), "{md}");
    let links = markdown_links(&md);
    assert_eq!(links.iter().filter(|l| l.starts_with("plots")).count(), 6, "{links:?}");
    assert_eq!(links.iter().filter(|l| l.starts_with("gallery")).count(), 5, "3 FP + 2 FN thumbnails: {links:?}");
    for link in &links {
        assert!(link.is_relative(), "{} is not relative", link.display());
        assert!(run.path().join(link).is_file(), "report.md links to missing {}", link.display());
    }
}

#[test]
fn multiclass_markdown_has_per_class_tables_and_no_binary_sections() {
    let run = multi_run();
    let files = write_report(run.path(), &ReportOptions::default(), None).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    // Recall 1 of 3 with its Wilson 95 % interval, scipy 1.17
    // `binomtest(1, 3).proportion_ci(0.95, method="wilson")`: 0.0615–0.7923.
    assert!(md.contains("| bcc | 0.5000 | 0.3333 | 0.0615–0.7923 | 0.4000 | 3 |"), "per-class row:\n{md}");
    assert!(md.contains("| nv | 1 | 0 | 2 |"), "confusion table row:\n{md}");
    assert!(md.contains("macro one-vs-rest ROC AUC"));
    assert!(!md.contains("## Operating threshold") && !md.contains("threshold table"));
    // Top-label calibration of MULTI_TEST, scikit-learn 1.9.1: brier_score_loss(labels, probs)
    // = 0.55056; the highest probabilities against whether numpy's arg-max is right, in
    // calibration_curve(n_bins=10)'s bins: ECE 0.35556, (0.7, 0.8] holding 2 (mean 0.8), 1 right.
    assert!(md.contains("Brier score 0.5506 (summed over the classes). Expected calibration error 0.3556 over 10 equal-width bins of the top label's probability"), "{md}");
    assert!(md.contains("| (0.7, 0.8\\] | 2 | 0.8000 | 0.5000 |"), "{md}");
    for link in markdown_links(&md) {
        assert!(run.path().join(&link).is_file(), "report.md links to missing {}", link.display());
    }
}

#[test]
fn html_is_self_contained() {
    let run = binary_run();
    let source = images(None);
    let files = write_report(run.path(), &ReportOptions::default(), Some(&source)).unwrap();
    let html = std::fs::read_to_string(&files.html).unwrap();
    let inlined = html.matches("<img src=\"data:image/png;base64,").count();
    assert_eq!(inlined, 6 + 5, "6 plots and 5 thumbnails inlined");
    assert_eq!(html.matches("<img").count(), inlined, "every image is inlined");
    for local in ["src=\"plots/", "src=\"gallery/", "href=", "url(", "<link", "<script"] {
        assert!(!html.contains(local), "report.html refers to another file: `{local}`");
    }
    // Same content as the Markdown.
    assert!(html.contains("<h2>Operating threshold</h2>") && html.contains("0.7143"));
    // The plot bytes really are in the page: the inlined ROC plot is as long as the file.
    let roc_len = std::fs::metadata(&files.roc).unwrap().len() as usize;
    let longest = html.split("base64,").skip(1).map(|s| s.split('"').next().unwrap().len()).max().unwrap();
    assert!(longest >= roc_len * 4 / 3, "inlined images are shorter than the PNG files");
}

#[test]
fn a_report_can_be_regenerated_and_stale_thumbnails_go() {
    let run = binary_run();
    let source = images(None);
    let big = ReportOptions { gallery_size: 3, ..ReportOptions::default() };
    let first = write_report(run.path(), &big, Some(&source)).unwrap();
    assert_eq!(first.gallery.len(), 5, "3 FP + 2 FN");
    let small = ReportOptions { gallery_size: 1, ..ReportOptions::default() };
    let second = write_report(run.path(), &small, Some(&source)).unwrap();
    assert_eq!(second.gallery.len(), 2);
    let left: Vec<_> = std::fs::read_dir(run.path().join("gallery")).unwrap().map(|e| e.unwrap().path()).collect();
    let mut left_sorted = left.clone();
    left_sorted.sort();
    let mut expected = second.gallery.clone();
    expected.sort();
    assert_eq!(left_sorted, expected, "old thumbnails must be removed");
}

#[test]
fn operating_threshold_rates_are_derived_from_the_counts() {
    // report.json's rates beside TP/FP/TN/FN are derived data; a file whose rates disagree
    // with its counts (edited by hand, or written by another tool) must not put the wrong
    // numbers in the report.
    let run = binary_run();
    let path = run.path().join("report.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["threshold"]["val"]["sensitivity"] = serde_json::json!(0.123);
    json["threshold"]["test"]["specificity"] = serde_json::json!(0.987);
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    let files = write_report(run.path(), &ReportOptions::default(), None).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    // val 3 of 4 positives found, test 5 of 7; test 4 of 7 negatives right (BINARY_VAL/TEST).
    assert!(md.contains("| sensitivity | 0.7500 | 0.7143 |"), "sensitivity row:\n{md}");
    assert!(md.contains("| specificity | 0.7500 | 0.5714 |"), "specificity row:\n{md}");
    assert!(!md.contains("0.1230") && !md.contains("0.9870"), "a stale rate from report.json is shown:\n{md}");
}

#[test]
fn epoch_rates_are_derived_from_the_metrics_csv_counts() {
    // metrics.csv's val_sensitivity/val_specificity beside val_tp/fp/tn/fn are derived data,
    // like report.json's: rates that disagree with the counts must not reach the report.
    let run = binary_run();
    let path = run.path().join("metrics.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    // Epoch 2 (the best) was written with 3 of 4 positives and 3 of 4 negatives right.
    let row = text.lines().find(|l| l.starts_with("2,")).unwrap().to_string();
    assert!(row.contains(",0.750000,0.750000,"), "fixture row changed: {row}");
    std::fs::write(&path, text.replace(&row, &row.replacen(",0.750000,0.750000,", ",0.123000,0.987000,", 1))).unwrap();
    let files = write_report(run.path(), &ReportOptions::default(), None).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(md.contains("val sensitivity 0.7500 and specificity 0.7500"), "best-epoch paragraph:\n{md}");
    assert!(!md.contains("0.1230") && !md.contains("0.9870"), "a stale rate from metrics.csv is shown:\n{md}");
}

#[test]
fn headline_numbers_that_predictions_csv_does_not_reproduce_are_noted() {
    // The fixtures' report.json numbers are those of their predictions.csv (hand-computed and
    // derma-eval, see tests/common): no note.
    for run in [binary_run(), multi_run()] {
        let files = write_report(run.path(), &ReportOptions::default(), None).unwrap();
        assert!(!files.notes.iter().any(|n| n.contains("predictions.csv")), "{:?}", files.notes);
    }
    // Edited (or from another run): each number is named with both values.
    let run = multi_run();
    let path = run.path().join("report.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["test"]["auc_macro"] = serde_json::json!(0.9999);
    json["test"]["balanced_accuracy"] = serde_json::json!(0.5);
    json["test"]["per_class"][0]["recall"] = serde_json::json!(0.77);
    // MULTI_TEST's Brier score is 0.55056 (scikit-learn, above); its ECE 0.35556 is kept.
    json["test"]["calibration"] = serde_json::json!({ "brier": 0.25, "ece": 0.35555555555555557, "bins_of": "top label", "bins": [] });
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    let files = write_report(run.path(), &ReportOptions::default(), None).unwrap();
    let notes = files.notes.join("\n");
    assert!(!notes.contains("expected calibration error"), "{notes}");
    for want in ["test macro AUC (auc_macro) is 0.9999", "test balanced accuracy is 0.5, but predictions.csv gives 0.444",
        "test recall of `akiec` is 0.77, but predictions.csv gives 0.333", "test Brier score is 0.25, but predictions.csv gives 0.5505", "disagree"] {
        assert!(notes.contains(want), "`{want}` missing:\n{notes}");
    }
    assert!(std::fs::read_to_string(&files.markdown).unwrap().contains("0.9999"), "the note reaches the report");
    // Binary: the validation counts at the threshold too (BINARY_VAL at 0.6123: tp 3).
    let run = binary_run();
    let path = run.path().join("report.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["threshold"]["val"]["tp"] = serde_json::json!(70);
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    let files = write_report(run.path(), &ReportOptions::default(), None).unwrap();
    let notes = files.notes.join("\n");
    assert!(notes.contains("validation counts at the threshold (tp 70") && notes.contains("predictions.csv's (tp 3"), "{notes}");
}

#[test]
fn a_report_regenerated_from_the_run_folder_alone_keeps_its_class_table_and_thumbnails() {
    // As derma-train writes it: report.json carries the training counts, and the training
    // run's report wrote the gallery thumbnails.
    let run = binary_run();
    let path = run.path().join("report.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["train_counts"] = serde_json::json!([30, 10]);
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    let first = write_report(run.path(), &ReportOptions::default(), Some(&images(None))).unwrap();
    assert!(!first.gallery.is_empty());
    // `derma-report RUN` later: no options, no image source.
    let again = write_report(run.path(), &ReportOptions::default(), None).unwrap();
    let md = std::fs::read_to_string(&again.markdown).unwrap();
    assert!(md.contains("| class | train | val | test |") && md.contains("30 (75.0%)"), "class table:\n{md}");
    for thumb in &first.gallery {
        let name = thumb.file_name().unwrap().to_str().unwrap();
        assert!(md.contains(&format!("gallery/{name}")), "{name} not linked:\n{md}");
        assert!(thumb.is_file(), "{name} was removed");
    }
    // The training run's gallery again: nothing to note (a "Notes" section appeared).
    assert!(again.notes.is_empty(), "{:?}", again.notes);
    assert!(!md.contains("## Notes"), "{md}");
    // A count list of the wrong length is refused, naming report.json.
    json["train_counts"] = serde_json::json!([30]);
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    let e = write_report(run.path(), &ReportOptions::default(), None).unwrap_err().to_string();
    assert!(e.contains("report.json") && e.contains("train_counts"), "{e}");
}

/// A run that ran fewer epochs than configured under `patience` stopped early: the headline says
/// so (it read "Best epoch: 2 of 3" as if 3 had been planned).
#[test]
fn an_early_stop_is_stated() {
    let run = binary_run();
    let config = std::fs::read_to_string(run.path().join("config.toml")).unwrap();
    let md = |config: &str| {
        std::fs::write(run.path().join("config.toml"), config).unwrap();
        let files = write_report(run.path(), &ReportOptions::default(), None).unwrap();
        std::fs::read_to_string(&files.markdown).unwrap()
    };
    // The fixture: epochs = 3, three rows, patience = 3: not stopped early.
    assert!(!md(&config).contains("stopped early"));
    let ten = config.replace("epochs = 3\n", "epochs = 10\n");
    assert!(md(&ten).contains("Best epoch: 2 of 3, selected by validation sens@spec; stopped early after epoch 3 of 10 planned (--patience 3"));
    assert!(!md(&ten.replace("patience = 3\n", "patience = 0\n")).contains("stopped early"));
}
