//! The run folder's files, each written atomically (temporary file in the same folder, then
//! rename), and the summary table printed at the end of a run.

use std::fmt::Write as _;
use std::path::Path;

use derma_eval::{BinaryMetrics, ThresholdChoice};
use serde_json::{Value, json};

use derma_data::ImageDataset;

use crate::evaluate::{Predictions, SplitMetrics};

/// Writes `contents` to `path` atomically: a reader sees the old file or the new one, never a
/// partial one, and a crash leaves no half-written result (`derma_report::write_atomic`).
pub fn write_atomic(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    Ok(derma_report::write_atomic(path, contents)?)
}

/// The files of a run folder that make it a run (a finished or an interrupted one); a fresh
/// run into the folder removes all but `config.toml` before writing its own.
pub const RUN_FILES: [&str; 11] = [
    "config.toml",
    "splits.csv",
    "metrics.csv",
    "report.json",
    "model.bpk",
    "predictions.csv",
    "thresholds.csv",
    "report.md",
    "report.html",
    "plots",
    "gallery",
];

/// Refuses `--out DIR` when `DIR` already holds one of `marks` (a previous run's results),
/// unless `overwrite`: a new run would replace them file by file, and if it stopped early the
/// folder would mix the two runs. Names the folder, the file found and the ways out.
pub fn check_out_is_free(out: &Path, marks: &[&str], overwrite: bool) -> anyhow::Result<()> {
    if out.exists() && !out.is_dir() {
        anyhow::bail!("--out {}: is a file; expected a folder for the run's files", out.display());
    }
    if overwrite {
        return Ok(());
    }
    if let Some(found) = marks.iter().find(|m| out.join(m).exists()) {
        let resume = if let Some(why) = crate::checkpoint::diverged(out) {
            format!(" Its training diverged ({why}): start it again with a lower --lr and --overwrite.")
        } else if out.join(crate::checkpoint::DIR).join("state.json").is_file() {
            format!(" It has not finished: `derma-train --resume {}` continues it.", out.display())
        } else {
            String::new()
        };
        anyhow::bail!(
            "--out {}: the folder already holds a run ({found}); choose another --out, remove the folder, or pass --overwrite to replace it.{resume}",
            out.display()
        );
    }
    Ok(())
}

/// Removes `names` (files or folders) from `dir` where they exist, each tried whatever happened
/// to the others; the first failure is the error, naming the path (a fresh run's stale
/// results, a cascade's earlier outputs).
pub fn remove_outputs(dir: &Path, names: &[&str]) -> anyhow::Result<()> {
    let mut first = Ok(());
    for name in names {
        let path = dir.join(name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else if path.exists() {
            std::fs::remove_file(&path)
        } else {
            Ok(())
        };
        if let (Err(e), Ok(())) = (removed, &first) {
            first = Err(anyhow::anyhow!("cannot remove {}: {e}", path.display()));
        }
    }
    first
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone)]
pub struct EpochRow {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation metrics.
    pub val: SplitMetrics,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Wall time of the epoch (training and validation).
    pub seconds: f64,
    /// Training throughput.
    pub images_per_second: f64,
}

/// `metrics.csv`: `epoch,train_loss,val_loss,val_acc,val_bal_acc,val_auc,lr,seconds` and, for
/// `binary` tasks, the screening columns at the operating threshold; `earlier` are rows
/// already written (the epochs before a resumed run's checkpoint), kept as they are.
pub fn metrics_csv(binary: bool, earlier: &[String], rows: &[EpochRow]) -> String {
    let mut s = String::from("epoch,train_loss,val_loss,val_acc,val_bal_acc,val_auc,lr,seconds,images_per_second");
    if binary {
        s.push_str(",val_threshold,val_sensitivity,val_specificity,val_precision,val_f1,val_f2,val_tp,val_fp,val_tn,val_fn,val_ap");
    }
    s.push('\n');
    for line in earlier {
        s.push_str(line);
        s.push('\n');
    }
    for r in rows {
        let _ = write!(
            s,
            "{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6e},{:.2},{:.1}",
            r.epoch, r.train_loss, r.val.loss, r.val.accuracy, r.val.balanced_accuracy, r.val.auc, r.lr, r.seconds, r.images_per_second
        );
        if let Some(b) = &r.val.binary {
            let m = &b.at_threshold;
            let _ = write!(
                s,
                // The threshold exactly (shortest round-trip form): screening thresholds of
                // heavily imbalanced data can be far below 1e-6.
                ",{},{:.6},{:.6},{:.6},{:.6},{:.6},{},{},{},{},{:.6}",
                m.threshold, m.sensitivity, m.specificity, m.precision, m.f1, m.f2, m.tp, m.fp, m.tn, m.fn_, b.ap
            );
        }
        s.push('\n');
    }
    s
}

/// Quotes a CSV field when it holds a comma, quote or newline (RFC 4180).
pub fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_string() }
}

/// `splits.csv` of a run on image files: `split,index,path,patient_id,label` for every image of
/// train, val and test — which file `index` is in `predictions.csv`, and which patient (empty
/// for an image without one: it was split on its own) — so the patient-level split can be
/// checked and every prediction traced to its file. `paths` and `patients` per split as in
/// [`crate::dataset::TaskData`]; labels as class names.
pub fn splits_csv(paths: &[Vec<std::path::PathBuf>; 3], patients: Option<&[Vec<String>; 3]>, splits: [&ImageDataset; 3]) -> String {
    let mut s = String::from("split,index,path,patient_id,label\n");
    for (k, name) in ["train", "val", "test"].into_iter().enumerate() {
        let names = splits[k].class_names();
        for (i, path) in paths[k].iter().enumerate() {
            let patient = patients.map_or("", |p| p[k][i].as_str());
            // An image without a patient id is its own patient: left empty.
            let patient = if patient.starts_with(crate::dataset::OWN_PATIENT) { "" } else { patient };
            let _ = writeln!(
                s,
                "{name},{i},{},{},{}",
                csv_field(&path.display().to_string()),
                csv_field(patient),
                csv_field(&names[splits[k].labels()[i]])
            );
        }
    }
    s
}

/// `predictions.csv`: `split,index,label,prob_0..prob_{k-1}` (binary: `split,index,label,prob`),
/// probabilities printed exactly (shortest round-trip form), so a threshold from `report.json`
/// reproduces the reported counts.
pub fn predictions_csv(splits: &[(&str, &Predictions)]) -> String {
    let binary = splits.first().is_some_and(|(_, p)| p.is_binary());
    let k = splits.first().map_or(0, |(_, p)| p.probs.first().map_or(0, Vec::len));
    let mut s = String::from("split,index,label");
    if binary {
        s.push_str(",prob");
    } else {
        for c in 0..k {
            let _ = write!(s, ",prob_{c}");
        }
    }
    s.push('\n');
    for (name, p) in splits {
        for ((i, l), probs) in p.indices.iter().zip(&p.labels).zip(&p.probs) {
            let _ = write!(s, "{name},{i},{l}");
            for v in probs {
                let _ = write!(s, ",{v}");
            }
            s.push('\n');
        }
    }
    s
}

/// `thresholds.csv`: the validation ROC table (`threshold,tpr,fpr,precision`), every value at
/// full precision (shortest round-trip form): derma-report checks the specificity floors on
/// these rates, and rounded ones (6 decimals) could meet a floor the exact rate misses (300 false
/// positives of 29,999 negatives: specificity 0.9899997, rounded 0.990000).
pub fn thresholds_csv(val: &Predictions) -> anyhow::Result<String> {
    let roc = derma_eval::roc_curve(&val.positives(), &val.scores())?;
    let positives = val.positives();
    let scores = val.scores();
    let mut s = String::from("threshold,tpr,fpr,precision\n");
    for ((t, tpr), fpr) in roc.thresholds.iter().zip(&roc.tpr).zip(&roc.fpr) {
        let precision = if t.is_finite() {
            derma_eval::apply(*t, &positives, &scores)?.precision
        } else {
            0.0
        };
        let _ = writeln!(s, "{t},{tpr},{fpr},{precision}");
    }
    Ok(s)
}

/// A binary task's metrics at the fixed threshold 0.5 (`prob >= 0.5` is positive), reported
/// beside the rule's threshold so that what the rule changed is visible in one place.
pub fn at_half(pred: &Predictions) -> anyhow::Result<BinaryMetrics> {
    Ok(derma_eval::apply(0.5, &pred.positives(), &pred.scores())?)
}

fn binary_json(m: &BinaryMetrics) -> Value {
    // Wilson 95 % intervals from the counts (null without a denominator).
    let (c, pair) = (m.counts(), |ci: Option<(f64, f64)>| ci.map(|(lo, hi)| [lo, hi]));
    json!({
        "sensitivity": m.sensitivity, "specificity": m.specificity, "precision": m.precision,
        "f1": m.f1, "f2": m.f2, "tp": m.tp, "fp": m.fp, "tn": m.tn, "fn": m.fn_,
        "ci95": {
            "sensitivity": pair(c.sensitivity_ci95()),
            "specificity": pair(c.specificity_ci95()),
            "precision": pair(c.precision_ci95()),
        },
    })
}

/// `report.json` (`train_counts`: training images per class, for the report's class table
/// when it is regenerated from the run folder alone).
pub fn report_json(
    best_epoch: usize,
    class_names: &[String],
    train_counts: &[usize],
    test_pred: &Predictions,
    test: &SplitMetrics,
    threshold: Option<(&ThresholdChoice, &SplitMetrics)>,
) -> anyhow::Result<Value> {
    let k = class_names.len();
    let per_class = derma_eval::per_class_report(&test_pred.labels, &test.predicted, k)?;
    let cm = derma_eval::confusion_matrix(&test_pred.labels, &test.predicted, k)?;
    let mut test_json = json!({
        "accuracy": test.accuracy,
        "balanced_accuracy": test.balanced_accuracy,
        "auc_macro": test.auc,
        "loss": test.loss,
        "per_class": per_class.iter().zip(class_names).map(|(r, n)| json!({
            "name": n, "precision": r.precision, "recall": r.recall, "f1": r.f1, "support": r.support,
        })).collect::<Vec<_>>(),
        "confusion_matrix": cm,
        "calibration": calibration_json(test_pred)?,
    });
    let mut report = json!({ "best_epoch": best_epoch, "classes": class_names, "train_counts": train_counts });
    if let (Some((choice, val)), Some(b)) = (threshold, &test.binary) {
        test_json["auc"] = json!(test.auc);
        // DeLong's 95 % interval (null when a class has fewer than two test images).
        test_json["auc_ci95"] = json!(derma_eval::auc_delong95(&test_pred.positives(), &test_pred.scores()).ok().map(|(lo, hi)| [lo, hi]));
        test_json["ap"] = json!(b.ap);
        report["threshold"] = json!({
            "rule": choice.rule.to_string(),
            "value": choice.value,
            "met": choice.met,
            "note": choice.note,
            "val": binary_json(&val.binary.as_ref().expect("binary val").at_threshold),
            "test": binary_json(&b.at_threshold),
            "test_at_0.5": binary_json(&at_half(test_pred)?),
        });
    }
    report["test"] = test_json;
    Ok(report)
}

/// The calibration of a split's probabilities ([`derma_eval::calibration`], 10 bins): the
/// Brier score (binary: of the positive-class probability; several classes: summed over them),
/// the ECE, what the bins and ECE are of (`bins_of`: the top label with several classes, else
/// the positive class), and the non-empty bins' edges, counts, mean scores and observed
/// fractions.
pub fn calibration_json(pred: &Predictions) -> anyhow::Result<Value> {
    let c = derma_eval::calibration(&pred.labels, &pred.probs, derma_eval::calibration::BINS)?;
    Ok(json!({
        "brier": c.brier,
        "ece": c.ece,
        "bins_of": if c.top_label { "top label" } else { "positive class" },
        "bins": c.bins.iter().filter(|b| b.count > 0).map(|b| json!({
            "lower": b.lower, "upper": b.upper, "count": b.count, "mean_score": b.mean_score, "observed": b.observed,
        })).collect::<Vec<_>>(),
    }))
}

/// The end-of-run table: per-class precision/recall/F1/support and the confusion matrix.
pub fn summary_table(class_names: &[String], test_pred: &Predictions, test: &SplitMetrics) -> anyhow::Result<String> {
    let k = class_names.len();
    let per_class = derma_eval::per_class_report(&test_pred.labels, &test.predicted, k)?;
    let cm = derma_eval::confusion_matrix(&test_pred.labels, &test.predicted, k)?;
    let w = class_names.iter().map(String::len).max().unwrap_or(5).max(8);
    let mut s = String::new();
    let _ = writeln!(s, "{:w$}  precision  recall     f1  support", "class");
    for (r, n) in per_class.iter().zip(class_names) {
        let _ = writeln!(s, "{n:w$}  {:9.3}  {:6.3}  {:5.3}  {:7}", r.precision, r.recall, r.f1, r.support);
    }
    let _ = writeln!(
        s,
        "\naccuracy {:.4}   balanced accuracy {:.4}   AUC {:.4}",
        test.accuracy, test.balanced_accuracy, test.auc
    );
    let _ = writeln!(s, "\nconfusion matrix (rows: true, columns: predicted)");
    let cw = 7;
    let _ = write!(s, "{:w$}", "");
    for n in class_names {
        let short: String = n.chars().take(cw - 1).collect();
        let _ = write!(s, "{short:>cw$}");
    }
    s.push('\n');
    for (row, n) in cm.iter().zip(class_names) {
        let _ = write!(s, "{n:w$}");
        for v in row {
            let _ = write!(s, "{v:>cw$}");
        }
        s.push('\n');
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rates in `thresholds.csv` are the exact ones the threshold rules use. Validation:
    /// 29,999 negatives (300 scored 0.9, 29,699 scored 0.1) and 20 positives (10 at 0.95, 10 at
    /// 0.5). At 0.5 there are 300 false positives: fpr = 300 / 29,999 = 0.0100003…, specificity
    /// 0.9899997 < 0.99, so `min-spec:0.99` picks 0.95 (arithmetic; 6 decimals wrote 0.010000,
    /// which read back as specificity 0.99 and put 0.5 under the 0.99 floor in derma-report).
    #[test]
    fn threshold_table_rates_are_written_exactly() {
        let mut probs = vec![vec![0.9]; 300];
        probs.extend(vec![vec![0.1]; 29_699]);
        probs.extend(vec![vec![0.95]; 10]);
        probs.extend(vec![vec![0.5]; 10]);
        let labels: Vec<usize> = (0..probs.len()).map(|i| usize::from(i >= 29_999)).collect();
        let val = Predictions { indices: (0..probs.len()).collect(), labels, probs, logits: Vec::new(), loss: 0.0 };
        let csv = thresholds_csv(&val).unwrap();
        let row = csv.lines().find(|l| l.starts_with("0.5,")).unwrap_or_else(|| panic!("{csv}"));
        let fpr: f64 = row.split(',').nth(2).unwrap().parse().unwrap();
        assert_eq!(fpr, 300.0 / 29_999.0, "{row}");
        assert!(1.0 - fpr < 0.99);
        let rule = derma_eval::ThresholdRule::MinSpecificity(0.99);
        assert_eq!(derma_eval::select_threshold(&rule, &val.positives(), &val.scores()).unwrap().value, 0.95);
    }
}
