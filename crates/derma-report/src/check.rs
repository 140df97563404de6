//! `report.json`'s numbers recomputed from `predictions.csv`: the report prints the headline
//! figures (accuracy, balanced accuracy, AUC, average precision, the per-class table, the
//! validation counts at the threshold) from `report.json`, and its plots from
//! `predictions.csv`. Both come from one derma-train run, so they agree; an edited file, or
//! files of two runs, would make the report contradict itself silently. Every disagreement
//! becomes a note in the report.

use derma_eval::{BinaryCounts, Calibration};

use crate::run::{Run, Split};

/// How far a recomputed number may be from `report.json`'s: both come from the same
/// probabilities (written in shortest round-trip form), so only summation order differs.
const TOLERANCE: f64 = 1e-6;

fn differs(json: f64, csv: f64) -> bool {
    !((json - csv).abs() <= TOLERANCE || (json.is_nan() && csv.is_nan()))
}

/// Positive labels and positive-class scores of a binary split.
fn binary(split: &Split) -> (Vec<bool>, Vec<f64>) {
    (split.labels.iter().map(|&l| l == 1).collect(), split.probs.iter().map(|p| p.first().copied().unwrap_or(f64::NAN)).collect())
}

/// One note per `report.json` number that `predictions.csv` does not reproduce (numbers that
/// cannot be computed, e.g. an AUC on a test set of one class, are not compared); `calibrated`
/// is the test calibration the report computed from `predictions.csv`.
pub(crate) fn disagreements(run: &Run, calibrated: &Calibration) -> Vec<String> {
    let mut notes = Vec::new();
    let test = &run.report.test;
    let k = run.classes().len();
    let rule = run.rule();
    let predicted = rule.predict_split(&run.test);
    let labels = &run.test.labels;
    let mut compare = |what: String, json: f64, csv: Option<f64>| {
        if let Some(csv) = csv
            && differs(json, csv)
        {
            notes.push(format!("report.json's test {what} is {json}, but predictions.csv gives {csv}"));
        }
    };
    compare("accuracy".into(), test.accuracy, derma_eval::accuracy(labels, &predicted).ok());
    compare("balanced accuracy".into(), test.balanced_accuracy, derma_eval::balanced_accuracy(labels, &predicted, k).ok());
    compare("macro AUC (auc_macro)".into(), test.auc_macro, derma_eval::macro_auc_ovr(labels, &run.test.probs).ok());
    let binary_task = run.is_binary();
    if binary_task {
        let (pos, scores) = binary(&run.test);
        if let Some(auc) = test.auc {
            compare("AUC".into(), auc, derma_eval::roc_auc(&pos, &scores).ok());
        }
        if let Some(ap) = test.ap {
            compare("average precision".into(), ap, derma_eval::average_precision(&pos, &scores).ok());
        }
    }
    if let Some(json) = &test.calibration {
        compare("Brier score".into(), json.brier, Some(calibrated.brier));
        compare("expected calibration error".into(), json.ece, Some(calibrated.ece));
    }
    if let Ok(per_class) = derma_eval::per_class_report(labels, &predicted, k) {
        for (json, csv) in test.per_class.iter().zip(&per_class) {
            compare(format!("precision of `{}`", json.name), json.precision, Some(csv.precision));
            compare(format!("recall of `{}`", json.name), json.recall, Some(csv.recall));
            compare(format!("F1 of `{}`", json.name), json.f1, Some(csv.f1));
            compare(format!("support of `{}`", json.name), json.support as f64, Some(csv.support as f64));
        }
    }
    if binary_task && let Some(th) = &run.report.threshold {
        let (pos, scores) = binary(&run.val);
        if let Ok(c) = BinaryCounts::at(th.threshold(), &pos, &scores) {
            let j = th.val.counts();
            if c != j {
                notes.push(format!(
                    "report.json's validation counts at the threshold (tp {} fp {} tn {} fn {}) differ from predictions.csv's \
                     (tp {} fp {} tn {} fn {})",
                    j.tp, j.fp, j.tn, j.fn_, c.tp, c.fp, c.tn, c.fn_
                ));
            }
        }
    }
    if !notes.is_empty() {
        notes.push(
            "report.json and predictions.csv disagree (an edited file, or files of two runs): the numbers above are \
             report.json's, the plots predictions.csv's"
                .into(),
        );
    }
    notes
}
