//! The numbers behind the report on small known predictions: the prediction rule, the
//! confusion matrix, the gallery's choice, and the errors for bad run folders.

mod common;

use common::*;
use derma_report::gallery::{ErrorKind, select};
use derma_report::{Error, ReportOptions, Rule, Run, confusion, write_report};

#[test]
fn binary_confusion_matrix_counts_ties_at_the_threshold_as_positive() {
    let run = binary_run();
    let run = Run::read(run.path()).unwrap();
    assert_eq!(run.rule(), Rule::Threshold(THRESHOLD));
    // BINARY_TEST at t = 0.6123, `prob >= t` positive:
    //   negatives (rows 0,1,4,6,8,9,11): 0.10 0.30 0.05 0.61 → TN = 4; 0.65, 0.6123 (tie), 0.95 → FP = 3
    //   positives (rows 2,3,5,7,10,12,13): 0.90 0.6123 (tie) 0.80 0.70 0.99 → TP = 5; 0.20 0.55 → FN = 2
    // Rows: true class, columns: predicted → [[TN, FP], [FN, TP]]. Were ties negative, the
    // matrix would be [[5, 2], [3, 4]].
    let cm = confusion::compute(&run).unwrap();
    assert_eq!(cm.counts, vec![vec![4, 3], vec![2, 5]]);
    let rows = cm.row_normalised();
    assert_eq!(rows[1][1], Some(5.0 / 7.0));
}

#[test]
fn multiclass_confusion_matrix_uses_argmax_with_the_first_class_winning_ties() {
    let run = multi_run();
    let run = Run::read(run.path()).unwrap();
    assert_eq!(run.rule(), Rule::Argmax);
    // MULTI_TEST's arg-max: rows 0..9 → 0, 1, 0 (tie 0.4/0.4), 1, 2, 0, 2, 2, 2.
    //   true 0 (rows 0, 1, 8) → predicted 0, 1, 2 → [1, 1, 1]
    //   true 1 (rows 2, 3, 7) → predicted 0, 1, 2 → [1, 1, 1]
    //   true 2 (rows 4, 5, 6) → predicted 2, 0, 2 → [1, 0, 2]
    let cm = confusion::compute(&run).unwrap();
    assert_eq!(cm.counts, vec![vec![1, 1, 1], vec![1, 1, 1], vec![1, 0, 2]]);
    assert_eq!(cm.classes, ["akiec", "bcc", "nv"]);
}

#[test]
fn the_report_agrees_with_report_json_and_says_so_when_it_does_not() {
    let tmp = binary_run();
    let files = write_report(tmp.path(), &ReportOptions::default(), None).unwrap();
    assert!(!files.notes.iter().any(|n| n.contains("differ")), "{:?}", files.notes);
    // A report.json whose matrix does not match predictions.csv is reported, not trusted.
    let json = std::fs::read_to_string(tmp.path().join("report.json")).unwrap();
    let edited = json.replacen("\"confusion_matrix\": [\n      [\n        4,", "\"confusion_matrix\": [\n      [\n        5,", 1);
    assert_ne!(json, edited, "the fixture's layout changed");
    put(tmp.path(), "report.json", &edited);
    let files = write_report(tmp.path(), &ReportOptions::default(), None).unwrap();
    assert!(files.notes.iter().any(|n| n.contains("confusion matrix recomputed")), "{:?}", files.notes);
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(md.contains("## Notes"));
}

#[test]
fn binary_gallery_picks_the_most_confident_false_positives_and_negatives() {
    let tmp = binary_run();
    let run = Run::read(tmp.path()).unwrap();
    let groups = select(&run, 8);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].kind, ErrorKind::FalsePositive);
    // False positives by falling probability: row 8 (0.95), row 1 (0.65), row 4 (0.6123, on
    // the threshold); row 11 (0.61) is below it, a true negative. Dataset index = 100 + row.
    let fp: Vec<(usize, f64)> = groups[0].items.iter().map(|i| (i.index, i.prob)).collect();
    assert_eq!(fp, [(108, 0.95), (101, 0.65), (104, 0.6123)]);
    // False negatives by rising probability: row 5 (0.20), row 7 (0.55).
    assert_eq!(groups[1].kind, ErrorKind::FalseNegative);
    let fn_: Vec<(usize, f64)> = groups[1].items.iter().map(|i| (i.index, i.prob)).collect();
    assert_eq!(fn_, [(105, 0.20), (107, 0.55)]);
    // At most n each.
    let two = select(&run, 2);
    assert_eq!(two[0].items.len(), 2);
    assert_eq!(two[0].items[1].index, 101);
}

#[test]
fn multiclass_gallery_orders_errors_by_predicted_probability_ties_in_file_order() {
    let tmp = multi_run();
    let run = Run::read(tmp.path()).unwrap();
    let groups = select(&run, 8);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].kind, ErrorKind::Misclassified);
    // Misclassified rows and their predicted-class probability: 7 (nv, 0.8), 5 (akiec, 0.6),
    // 1 (bcc, 0.5), 2 (akiec, 0.4), 8 (nv, 0.4) — rows 2 and 8 tie and keep file order.
    let got: Vec<(usize, usize, usize, f64)> = groups[0].items.iter().map(|i| (i.index, i.label, i.predicted, i.prob)).collect();
    assert_eq!(got, [(207, 1, 2, 0.8), (205, 2, 0, 0.6), (201, 0, 1, 0.5), (202, 1, 0, 0.4), (208, 0, 2, 0.4)]);
}

#[test]
fn gallery_thumbnails_are_named_scaled_and_missing_images_are_noted() {
    let tmp = multi_run();
    let source = images(Some(205));
    let options = ReportOptions { gallery_size: 3, thumb_size: 128, ..ReportOptions::default() };
    let files = write_report(tmp.path(), &options, Some(&source)).unwrap();
    let names: Vec<String> = files.gallery.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    // Ranks 1 and 3 (row 5, rank 2, has no image).
    assert_eq!(names, ["err-01-test-207-true1-pred2-p0.8000.png", "err-03-test-201-true0-pred1-p0.5000.png"]);
    for p in &files.gallery {
        let img = decode(p);
        // 28 px enlarged by the whole factor 128 / 28 = 4.
        assert_eq!((img.width(), img.height()), (112, 112));
    }
    assert!(files.notes.iter().any(|n| n.contains("no image for test #205")), "{:?}", files.notes);
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(md.contains("(no image)"));
}

#[test]
fn without_an_image_source_the_gallery_is_listed_and_skipped() {
    let tmp = binary_run();
    let files = write_report(tmp.path(), &ReportOptions::default(), None).unwrap();
    assert!(files.gallery.is_empty());
    assert!(files.notes.iter().any(|n| n.contains("gallery without thumbnails")), "{:?}", files.notes);
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(md.contains("No thumbnails: the images are not in the run folder"), "{md}");
    assert!(md.contains("| 108 | not mel/bcc | 0.9500 |"), "the selected items are listed:\n{md}");
    assert!(!tmp.path().join("gallery").exists());
}

/// A test split with negatives only has no ROC/PR curve; the rest of the report is still
/// written, with a note (it was an error that wrote nothing).
#[test]
fn a_binary_test_split_of_one_class_is_a_note_not_a_failure() {
    let tmp = binary_run();
    let text = std::fs::read_to_string(tmp.path().join("predictions.csv")).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.strip_prefix("test,") {
            Some(rest) => {
                let f: Vec<&str> = rest.split(',').collect();
                format!("test,{},0,{}", f[0], f[2])
            }
            None => l.to_string(),
        })
        .collect();
    put(tmp.path(), "predictions.csv", &(lines.join("\n") + "\n"));
    let files = write_report(tmp.path(), &ReportOptions::default(), None).unwrap();
    assert!(files.notes.iter().any(|n| n.contains("no ROC/PR curve")), "{:?}", files.notes);
    assert!(files.markdown.is_file());
}

/// Screening thresholds far below 0.001 are shown with significant digits, not as 0.0000
/// (which would state the wrong rule: "positive when p ≥ 0.0000").
#[test]
fn tiny_thresholds_keep_their_digits() {
    let tmp = binary_run();
    let json = std::fs::read_to_string(tmp.path().join("report.json")).unwrap();
    put(tmp.path(), "report.json", &json.replace("\"value\": 0.6123", "\"value\": 3.2e-5"));
    let files = write_report(tmp.path(), &ReportOptions::default(), None).unwrap();
    let md = std::fs::read_to_string(files.markdown).unwrap();
    // Without the calibration section, whose observed fractions may well be 0.0000.
    let (before, after) = md.split_once("## Calibration").unwrap();
    let md = format!("{before}{}", &after[after.find("\n## ").unwrap()..]);
    assert!(!md.contains("0.0000 ") && !md.contains("≥ 0.0000"), "{md}");
    assert!(md.contains("3.200e-5"), "{md}");
}

#[test]
fn an_infinite_threshold_predicts_nothing_positive() {
    // derma-train writes +inf (youden with no separating threshold) as JSON null.
    let tmp = binary_run();
    let json = std::fs::read_to_string(tmp.path().join("report.json")).unwrap();
    put(tmp.path(), "report.json", &json.replace("\"value\": 0.6123", "\"value\": null"));
    let run = Run::read(tmp.path()).unwrap();
    assert_eq!(run.rule(), Rule::Threshold(f64::INFINITY));
    // All 7 negatives are TN, all 7 positives FN.
    assert_eq!(confusion::compute(&run).unwrap().counts, vec![vec![7, 0], vec![7, 0]]);
    assert!(select(&run, 8)[0].items.is_empty(), "no false positives");
    let files = write_report(tmp.path(), &ReportOptions::default(), None).unwrap();
    let md = std::fs::read_to_string(files.markdown).unwrap();
    assert!(md.contains("+inf (nothing is predicted positive)"), "{md}");
}

#[test]
fn a_missing_metrics_csv_is_an_error_naming_it() {
    let tmp = binary_run();
    std::fs::remove_file(tmp.path().join("metrics.csv")).unwrap();
    let err = write_report(tmp.path(), &ReportOptions::default(), None).unwrap_err();
    assert!(matches!(&err, Error::Missing { path, .. } if path.ends_with("metrics.csv")), "{err:?}");
    assert!(err.to_string().contains("metrics.csv: missing"), "{err}");
}

#[test]
fn a_malformed_predictions_row_is_an_error_naming_file_and_line() {
    let tmp = binary_run();
    let text = std::fs::read_to_string(tmp.path().join("predictions.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Line 1 is the header, lines 2..=9 the val rows; line 12 is the third test row.
    lines[11] = "test,102,1,zero point nine".into();
    put(tmp.path(), "predictions.csv", &(lines.join("\n") + "\n"));
    let err = Run::read(tmp.path()).unwrap_err();
    assert!(matches!(&err, Error::Malformed { path, line: 12, .. } if path.ends_with("predictions.csv")), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("predictions.csv: line 12") && msg.contains("zero point nine"), "{msg}");

    // A missing field, a probability outside [0, 1], a label that is no class.
    for (bad, want) in [
        ("test,102,1", "3 fields"),
        ("test,102,1,1.5", "not a probability"),
        ("test,102,2,0.5", "label 2 is not a class"),
        ("train,102,1,0.5", "neither `val` nor `test`"),
    ] {
        lines[11] = bad.into();
        put(tmp.path(), "predictions.csv", &(lines.join("\n") + "\n"));
        let err = Run::read(tmp.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("predictions.csv: line 12") && msg.contains(want), "{bad}: {msg}");
    }
}

/// Epoch numbers must run 1, 2, … : a huge one would overflow the plots' axis (it panicked),
/// one that wraps would draw the best epoch at the wrong place.
#[test]
fn metrics_epochs_must_increase_within_range() {
    let tmp = binary_run();
    let text = std::fs::read_to_string(tmp.path().join("metrics.csv")).unwrap();
    for (row, first, want) in [
        (3, "2147483647", "epoch 2147483647 after epoch 2"),
        (3, "4294967297", "epoch 4294967297 after epoch 2"),
        (3, "1", "epoch 1 after epoch 2"),
        (1, "0", "epoch 0 after epoch 0"),
    ] {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let rest = lines[row].split_once(',').unwrap().1.to_string();
        lines[row] = format!("{first},{rest}");
        put(tmp.path(), "metrics.csv", &(lines.join("\n") + "\n"));
        let err = write_report(tmp.path(), &ReportOptions::default(), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("metrics.csv: line {}", row + 1)) && msg.contains(want), "{first}: {msg}");
    }
}

#[test]
fn other_bad_files_are_errors_naming_them() {
    let tmp = multi_run();
    let dir = tmp.path();
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();

    put(dir, "metrics.csv", &metrics.replace("\n2,", "\ntwo,"));
    let msg = Run::read(dir).unwrap_err().to_string();
    assert!(msg.contains("metrics.csv: line 3") && msg.contains("`epoch`"), "{msg}");

    put(dir, "metrics.csv", &metrics);
    put(dir, "predictions.csv", "split,index,label,prob_0,prob_1\nval,0,0,0.5,0.5\n");
    let msg = Run::read(dir).unwrap_err().to_string();
    assert!(msg.contains("predictions.csv") && msg.contains("2 probability column(s), but report.json lists 3 classes"), "{msg}");

    put(dir, "predictions.csv", "");
    let msg = Run::read(dir).unwrap_err().to_string();
    assert!(msg.contains("predictions.csv: line 1") && msg.contains("empty"), "{msg}");

    put(dir, "report.json", "{\"best_epoch\": 2, \"classes\": [\"a\", \"b\", \"c\"]}");
    let msg = Run::read(dir).unwrap_err().to_string();
    assert!(msg.contains("report.json") && msg.contains("missing field `test`"), "{msg}");

    std::fs::remove_file(dir.join("report.json")).unwrap();
    assert!(matches!(Run::read(dir).unwrap_err(), Error::Missing { path, .. } if path.ends_with("report.json")));
}

/// A thresholds.csv row derma-train cannot have written (a rate outside [0, 1] or NaN, a
/// NaN threshold, thresholds not strictly decreasing) is an error naming the file and line,
/// not a table row with "sensitivity 1.7000" or a row silently left out of every floor.
#[test]
fn a_bad_thresholds_row_is_an_error_naming_file_and_line() {
    let tmp = binary_run();
    let dir = tmp.path();
    let good = std::fs::read_to_string(dir.join("thresholds.csv")).unwrap();
    assert!(Run::read(dir).unwrap().thresholds.is_some());
    let mut lines: Vec<String> = good.lines().map(String::from).collect();
    let t2: f64 = lines[2].split(',').next().unwrap().parse().unwrap();
    for (row, want) in [
        (format!("{t2},1.7,0.1,0.5"), "`tpr` is 1.7, not a rate in [0, 1]"),
        (format!("{t2},0.5,NaN,0.5"), "`fpr` is NaN, not a rate in [0, 1]"),
        (format!("{t2},0.5,0.1,-0.2"), "`precision` is -0.2, not a rate in [0, 1]"),
        ("NaN,0.5,0.1,0.5".to_string(), "`threshold` is NaN"),
        ("inf,0.5,0.1,0.5".to_string(), "`threshold` inf does not decrease (previous row inf)"),
    ] {
        lines[2] = row.clone();
        put(dir, "thresholds.csv", &(lines.join("\n") + "\n"));
        let err = Run::read(dir).unwrap_err();
        assert!(matches!(&err, Error::Malformed { path, line: 3, .. } if path.ends_with("thresholds.csv")), "{row}: {err:?}");
        assert!(err.to_string().contains(want), "{row}: {err}");
    }
}

/// A binary run's predictions.csv without `val` rows cannot confirm report.json's validation
/// counts at the threshold: the report says so instead of skipping the check silently.
#[test]
fn missing_validation_predictions_are_a_note() {
    let tmp = binary_run();
    let dir = tmp.path();
    let files = write_report(dir, &ReportOptions::default(), None).unwrap();
    assert!(!files.notes.iter().any(|n| n.contains("no `val` rows")), "{:?}", files.notes);
    let p = std::fs::read_to_string(dir.join("predictions.csv")).unwrap();
    put(dir, "predictions.csv", &p.lines().filter(|l| !l.starts_with("val,")).map(|l| format!("{l}\n")).collect::<String>());
    let files = write_report(dir, &ReportOptions::default(), None).unwrap();
    assert!(files.notes.iter().any(|n| n.contains("predictions.csv has no `val` rows")), "{:?}", files.notes);
}

#[test]
fn train_counts_must_have_one_entry_per_class() {
    let tmp = multi_run();
    let options = ReportOptions { train_counts: Some(vec![1, 2]), ..ReportOptions::default() };
    let err = write_report(tmp.path(), &options, None).unwrap_err();
    assert!(matches!(err, Error::Option { option: "train_counts", .. }), "{err:?}");
}

#[test]
fn optional_files_may_be_missing() {
    let tmp = binary_run();
    std::fs::remove_file(tmp.path().join("config.toml")).unwrap();
    std::fs::remove_file(tmp.path().join("thresholds.csv")).unwrap();
    let files = write_report(tmp.path(), &ReportOptions::default(), None).unwrap();
    let md = std::fs::read_to_string(files.markdown).unwrap();
    assert!(md.contains("config.toml is not in the run folder") && md.contains("thresholds.csv is not in the run folder"));
}

/// A file cut short, or numbers no derma-train run writes, are errors naming the file (they
/// were a report with "accuracy 1.5000", or report.json's figures beside plots of part of the
/// test split, behind notes only).
#[test]
fn truncated_files_and_out_of_range_numbers_are_errors_naming_them() {
    let tmp = binary_run();
    let dir = tmp.path();
    let predictions = std::fs::read_to_string(dir.join("predictions.csv")).unwrap();
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let report = std::fs::read_to_string(dir.join("report.json")).unwrap();
    assert!(Run::read(dir).is_ok());

    // The last test row missing: 13 rows for report.json's 7 + 7 test images.
    let lines: Vec<&str> = predictions.lines().collect();
    put(dir, "predictions.csv", &(lines[..lines.len() - 1].join("\n") + "\n"));
    let msg = Run::read(dir).unwrap_err().to_string();
    assert!(msg.contains("predictions.csv") && msg.contains("13 `test` rows, but report.json's test split has 14 images"), "{msg}");
    // Cut in the middle of the last number: the row count still matches.
    put(dir, "predictions.csv", &predictions[..predictions.len() - 2]);
    let msg = Run::read(dir).unwrap_err().to_string();
    assert!(msg.contains("predictions.csv: line 23") && msg.contains("ends in the middle of a line"), "{msg}");
    put(dir, "predictions.csv", &predictions);

    // metrics.csv: an AUC, an accuracy, an AP or a threshold outside [0, 1]; NaN and inf are
    // what derma-train writes for undefined values and stay accepted.
    let head: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    for (name, value, ok) in [
        ("val_auc", "1.511", false),
        ("val_acc", "-0.1", false),
        ("val_ap", "1.2", false),
        ("val_threshold", "1.7", false),
        ("val_auc", "NaN", true),
        ("val_threshold", "inf", true),
    ] {
        let mut lines: Vec<String> = metrics.lines().map(String::from).collect();
        let mut fields: Vec<String> = lines[2].split(',').map(String::from).collect();
        fields[col(name)] = value.into();
        lines[2] = fields.join(",");
        put(dir, "metrics.csv", &(lines.join("\n") + "\n"));
        let read = Run::read(dir);
        if ok {
            assert!(read.is_ok(), "{name} = {value}: {:?}", read.err());
        } else {
            let msg = read.unwrap_err().to_string();
            assert!(msg.contains("metrics.csv: line 3") && msg.contains(&format!("`{name}` is {value}")), "{name}: {msg}");
        }
    }
    put(dir, "metrics.csv", &metrics);

    // report.json.
    for (pointer, value, want) in [
        ("/test/accuracy", serde_json::json!(1.5), "`test.accuracy` is 1.5"),
        ("/test/auc", serde_json::json!(-2.0), "`test.auc` is -2"),
        ("/test/per_class/1/recall", serde_json::json!(1.25), "`test.per_class[1].recall` is 1.25"),
        ("/threshold/value", serde_json::json!(1.7), "`threshold.value` is 1.7"),
    ] {
        let mut json: serde_json::Value = serde_json::from_str(&report).unwrap();
        *json.pointer_mut(pointer).unwrap() = value;
        put(dir, "report.json", &serde_json::to_string(&json).unwrap());
        let msg = Run::read(dir).unwrap_err().to_string();
        assert!(msg.contains("report.json") && msg.contains(want) && msg.contains("not a value in [0, 1]"), "{pointer}: {msg}");
    }
    // A calibration error cannot exceed 1 either.
    let mut json: serde_json::Value = serde_json::from_str(&report).unwrap();
    json["test"]["calibration"] = serde_json::json!({ "brier": 0.2, "ece": 1.2 });
    put(dir, "report.json", &serde_json::to_string(&json).unwrap());
    let msg = Run::read(dir).unwrap_err().to_string();
    assert!(msg.contains("`test.calibration.ece` is 1.2, not a value in [0, 1]"), "{msg}");
    json["test"]["calibration"] = serde_json::json!({ "brier": 2.5, "ece": 0.1 });
    put(dir, "report.json", &serde_json::to_string(&json).unwrap());
    let msg = Run::read(dir).unwrap_err().to_string();
    assert!(msg.contains("`test.calibration.brier` is 2.5, not a value in [0, 2]"), "{msg}");
    // A `decision` (--decision balanced) needs one positive frequency per class.
    let classes = json["classes"].as_array().unwrap().len();
    json["test"]["calibration"] = serde_json::json!({ "brier": 0.2, "ece": 0.1 });
    for decision in [
        serde_json::json!({ "rule": "balanced", "prior": vec![0.5; classes + 1] }),
        serde_json::json!({ "rule": "balanced", "prior": vec![0.0; classes] }),
        serde_json::json!({ "rule": "other", "prior": vec![0.5; classes] }),
    ] {
        json["decision"] = decision.clone();
        put(dir, "report.json", &serde_json::to_string(&json).unwrap());
        let msg = Run::read(dir).unwrap_err().to_string();
        assert!(msg.contains("report.json") && msg.contains("`decision` needs `rule` \"balanced\""), "{decision}: {msg}");
    }
}
