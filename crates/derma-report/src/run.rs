//! Reading a finished run folder: `config.toml`, `metrics.csv`, `predictions.csv`,
//! `report.json` and (binary tasks) `thresholds.csv`, in the formats derma-train writes
//! (see its `report` module), checked against each other.
//!
//! Required: `metrics.csv`, `predictions.csv`, `report.json`. Optional: `config.toml` (the
//! configuration table is left out without it) and `thresholds.csv` (the threshold table is
//! left out). Every problem is an [`Error`] naming the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use derma_eval::{BinaryCounts, BinaryMetrics};
use serde::Deserialize;

use crate::csv::{Csv, read_text};
use crate::error::{Error, Result};
use crate::rule::Rule;

/// Everything the report is made from.
#[derive(Debug, Clone)]
pub struct Run {
    /// The run folder.
    pub dir: PathBuf,
    /// `config.toml` as `key → value` (strings unquoted, lists joined with `, `); `None`
    /// when the file is absent.
    pub config: Option<BTreeMap<String, String>>,
    /// `metrics.csv`, one row per epoch.
    pub epochs: Vec<Epoch>,
    /// `report.json`.
    pub report: ReportJson,
    /// Validation rows of `predictions.csv`.
    pub val: Split,
    /// Test rows of `predictions.csv`.
    pub test: Split,
    /// `thresholds.csv` (binary tasks; `None` when absent).
    pub thresholds: Option<Vec<ThresholdRow>>,
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Epoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_acc: f64,
    /// Validation balanced accuracy.
    pub val_bal_acc: f64,
    /// Validation (macro one-vs-rest) ROC AUC.
    pub val_auc: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
    /// Training throughput (`None` for runs written before the column existed).
    pub images_per_second: Option<f64>,
    /// Binary tasks: validation metrics at that epoch's operating threshold.
    pub binary: Option<EpochBinary>,
}

/// The binary columns of a `metrics.csv` row. Of the metrics at the threshold only the
/// threshold and the counts are read: the rates are derived from the counts (as derma-train
/// derives the columns it writes), so a plot or report can never disagree with the counts.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochBinary {
    /// Validation metrics at the operating threshold chosen at this epoch (threshold `inf`:
    /// nothing positive).
    pub at_threshold: BinaryMetrics,
    /// Validation average precision.
    pub ap: f64,
}

/// The rows of one split in `predictions.csv`, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    /// `val` or `test`.
    pub name: String,
    /// Dataset index of each row (the index an [`ImageSource`](crate::ImageSource) gets).
    pub indices: Vec<usize>,
    /// True class of each row (binary: 1 = positive).
    pub labels: Vec<usize>,
    /// Per row: the class probabilities, or one value, the positive-class probability
    /// (binary).
    pub probs: Vec<Vec<f64>>,
}

impl Split {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split has no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Rows per true class, for `n_classes` classes.
    pub fn class_counts(&self, n_classes: usize) -> Vec<u64> {
        let mut counts = vec![0; n_classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l) {
                *c += 1;
            }
        }
        counts
    }

    /// Binary: the positive-class probability of each row.
    pub fn scores(&self) -> Vec<f64> {
        self.probs.iter().map(|p| p[0]).collect()
    }

    /// Binary: whether each row is a positive.
    pub fn positives(&self) -> Vec<bool> {
        self.labels.iter().map(|&l| l == 1).collect()
    }
}

/// One row of `thresholds.csv` (the validation ROC table).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdRow {
    /// `score >= threshold` is positive; the first row is `inf` (nothing positive).
    pub threshold: f64,
    /// Sensitivity.
    pub tpr: f64,
    /// 1 − specificity.
    pub fpr: f64,
    /// Precision (0 where nothing is positive).
    pub precision: f64,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReportJson {
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    /// Class names (binary: negative, positive).
    pub classes: Vec<String>,
    /// Training images per class (absent in run folders of earlier versions).
    #[serde(default)]
    pub train_counts: Option<Vec<u64>>,
    /// Test results of the best epoch.
    pub test: TestJson,
    /// Binary tasks: the operating threshold.
    #[serde(default)]
    pub threshold: Option<ThresholdJson>,
    /// `--decision balanced`: the rule and the class prior it divides by (absent: arg-max).
    #[serde(default)]
    pub decision: Option<DecisionJson>,
    /// `--calibrate`: the logit map fitted on validation (absent without it).
    #[serde(default)]
    pub recalibration: Option<RecalibrationJson>,
}

/// `report.json`'s `decision`: a multi-class decision rule other than the arg-max.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DecisionJson {
    /// `balanced`.
    pub rule: String,
    /// The training split's class frequencies.
    pub prior: Vec<f64>,
}

/// `report.json`'s `recalibration`: the map the probabilities (predictions.csv, `test`) went
/// through, or why none was applied.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecalibrationJson {
    /// `temperature`, `platt` or `bcts`.
    pub method: String,
    /// Whether the map was fitted and applied.
    pub applied: bool,
    /// The slope (`1/T` for temperature scaling).
    #[serde(default)]
    pub scale: Option<f64>,
    /// Platt's intercept, or a binary `bcts` bias (0 for temperature scaling).
    #[serde(default)]
    pub bias: Option<f64>,
    /// `bcts` on K classes: one bias per class (centred to mean 0).
    #[serde(default)]
    pub class_bias: Option<Vec<f64>>,
    /// Why no map was applied.
    #[serde(default)]
    pub reason: Option<String>,
    /// The test calibration of the model's own probabilities.
    #[serde(default)]
    pub test_before: Option<CalibrationJson>,
}

/// One reliability bin of [`CalibrationJson`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BinJson {
    /// Images in the bin.
    pub count: u64,
    /// Their mean probability.
    pub mean_score: f64,
    /// The fraction of them that came true.
    pub observed: f64,
}

/// `report.json`'s `test`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TestJson {
    /// Accuracy (binary: at the operating threshold).
    pub accuracy: f64,
    /// Balanced accuracy.
    pub balanced_accuracy: f64,
    /// Macro one-vs-rest ROC AUC (binary: the ROC AUC).
    pub auc_macro: f64,
    /// Per-class precision, recall, F1 and support.
    pub per_class: Vec<ClassJson>,
    /// `confusion_matrix[true][predicted]`.
    pub confusion_matrix: Vec<Vec<u64>>,
    /// Binary: ROC AUC.
    #[serde(default)]
    pub auc: Option<f64>,
    /// Binary: average precision.
    #[serde(default)]
    pub ap: Option<f64>,
    /// The calibration derma-train computed (absent in runs made before it did).
    #[serde(default)]
    pub calibration: Option<CalibrationJson>,
}

/// A calibration in report.json: `test.calibration` (whose bins the report recomputes from
/// `predictions.csv`) or `recalibration.test_before` (whose bins are the model's own curve).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CalibrationJson {
    /// The Brier score.
    pub brier: f64,
    /// The expected calibration error.
    pub ece: f64,
    /// The non-empty reliability bins (absent in run folders written before they were kept).
    #[serde(default)]
    pub bins: Vec<BinJson>,
}

/// One entry of `per_class`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClassJson {
    /// Class name.
    pub name: String,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Test samples of the class.
    pub support: u64,
}

/// `report.json`'s `threshold` (binary tasks).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "ThresholdWire")]
pub struct ThresholdJson {
    /// The rule, e.g. `min-spec:0.8`.
    pub rule: String,
    /// The threshold; JSON `null` is `+inf` (serde_json writes infinity as null): nothing is
    /// predicted positive.
    pub value: Option<f64>,
    /// Whether the rule's constraint was met on validation.
    pub met: bool,
    /// What the user should know about the choice.
    pub note: Option<String>,
    /// Validation metrics at the threshold.
    pub val: BinaryMetrics,
    /// Test metrics at the threshold.
    pub test: BinaryMetrics,
}

/// `report.json`'s `threshold` as written. Of `val` and `test` only the counts are read: the
/// rates beside them are derived from the counts, and are derived again here, so the report
/// can never show rates that disagree with its own TP/FP/TN/FN.
#[derive(Deserialize)]
struct ThresholdWire {
    rule: String,
    value: Option<f64>,
    met: bool,
    #[serde(default)]
    note: Option<String>,
    val: BinaryCounts,
    test: BinaryCounts,
}

impl From<ThresholdWire> for ThresholdJson {
    fn from(w: ThresholdWire) -> Self {
        let t = w.value.unwrap_or(f64::INFINITY);
        Self {
            rule: w.rule,
            value: w.value,
            met: w.met,
            note: w.note,
            val: BinaryMetrics::from_counts(t, w.val),
            test: BinaryMetrics::from_counts(t, w.test),
        }
    }
}

impl ThresholdJson {
    /// The threshold as a number (`+inf` for `null`).
    pub fn threshold(&self) -> f64 {
        self.value.unwrap_or(f64::INFINITY)
    }
}

impl Run {
    /// Reads and cross-checks the run folder `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let report = read_report_json(&dir.join("report.json"))?;
        let (binary, val, test) = read_predictions(&dir.join("predictions.csv"), &report)?;
        let epochs = read_metrics(&dir.join("metrics.csv"), binary)?;
        let config = read_config(&dir.join("config.toml"))?;
        let thresholds = if binary { read_thresholds(&dir.join("thresholds.csv"))? } else { None };
        let run = Self { dir: dir.to_path_buf(), config, epochs, report, val, test, thresholds };
        run.check()?;
        Ok(run)
    }

    /// Single-probability (binary) task?
    pub fn is_binary(&self) -> bool {
        self.test.probs.first().is_some_and(|p| p.len() == 1)
    }

    /// Class names from `report.json`.
    pub fn classes(&self) -> &[String] {
        &self.report.classes
    }

    /// The prediction rule the run reported its results with: `prob >= threshold` (binary),
    /// the balanced decision (`decision` in report.json) or arg-max.
    pub fn rule(&self) -> Rule {
        match (&self.report.threshold, &self.report.decision) {
            (Some(t), _) if self.is_binary() => Rule::Threshold(t.threshold()),
            (_, Some(d)) => Rule::Balanced(d.prior.clone()),
            _ => Rule::Argmax,
        }
    }

    /// The best epoch's `metrics.csv` row, if present.
    pub fn best(&self) -> Option<&Epoch> {
        self.epochs.iter().find(|e| e.epoch == self.report.best_epoch)
    }

    /// The files agree with each other.
    fn check(&self) -> Result<()> {
        let json = self.dir.join("report.json");
        let k = self.classes().len();
        let inconsistent = |reason: String| Err(Error::Inconsistent { path: json.clone(), reason });
        if self.is_binary() && self.report.threshold.is_none() {
            return inconsistent("predictions.csv has one probability column (a binary task) but report.json has no `threshold`".into());
        }
        if self.report.test.per_class.len() != k {
            return inconsistent(format!("`test.per_class` has {} entries for {k} classes", self.report.test.per_class.len()));
        }
        let cm = &self.report.test.confusion_matrix;
        if cm.len() != k || cm.iter().any(|r| r.len() != k) {
            return inconsistent(format!("`test.confusion_matrix` is not {k}x{k}"));
        }
        if let Some(c) = &self.report.train_counts
            && c.len() != k
        {
            return inconsistent(format!("`train_counts` has {} entries for {k} classes", c.len()));
        }
        if !self.epochs.iter().any(|e| e.epoch == self.report.best_epoch) {
            return inconsistent(format!("best_epoch {} has no row in metrics.csv", self.report.best_epoch));
        }
        Ok(())
    }
}

fn read_report_json(path: &Path) -> Result<ReportJson> {
    let text = read_text(path, "derma-train writes it at the end of a run; is the run finished?")?;
    let report: ReportJson =
        serde_json::from_str(&text).map_err(|e| Error::Parse { path: path.into(), reason: e.to_string() })?;
    if report.classes.len() < 2 {
        return Err(Error::Inconsistent {
            path: path.into(),
            reason: format!("`classes` has {} entries; a task has at least 2", report.classes.len()),
        });
    }
    // Rates and scores in [0, 1] (NaN where undefined); the threshold a probability or `null`.
    let t = &report.test;
    let mut scores = vec![
        ("test.accuracy".to_string(), Some(t.accuracy)),
        ("test.balanced_accuracy".into(), Some(t.balanced_accuracy)),
        ("test.auc_macro".into(), Some(t.auc_macro)),
        ("test.auc".into(), t.auc),
        ("test.ap".into(), t.ap),
        ("test.calibration.ece".into(), t.calibration.as_ref().map(|c| c.ece)),
        ("threshold.value".into(), report.threshold.as_ref().and_then(|th| th.value)),
    ];
    for (i, c) in t.per_class.iter().enumerate() {
        for (what, v) in [("precision", c.precision), ("recall", c.recall), ("f1", c.f1)] {
            scores.push((format!("test.per_class[{i}].{what}"), Some(v)));
        }
    }
    if let Some((name, v)) = scores.into_iter().find_map(|(n, v)| v.filter(|v| !(v.is_nan() || (0.0..=1.0).contains(v))).map(|v| (n, v))) {
        return Err(Error::Inconsistent { path: path.into(), reason: format!("`{name}` is {v}, not a value in [0, 1]") });
    }
    if let Some(d) = &report.decision
        && (d.rule != "balanced" || d.prior.len() != report.classes.len() || d.prior.iter().any(|p| !(p.is_finite() && *p > 0.0)))
    {
        return Err(Error::Inconsistent {
            path: path.into(),
            reason: format!(
                "`decision` needs `rule` \"balanced\" and a `prior` of {} positive frequencies (one per class), got rule `{}` and {:?}",
                report.classes.len(),
                d.rule,
                d.prior
            ),
        });
    }
    // A Brier score summed over the classes reaches 2 (a sure and wrong prediction).
    if let Some(b) = t.calibration.as_ref().map(|c| c.brier).filter(|b| !(b.is_nan() || (0.0..=2.0).contains(b))) {
        return Err(Error::Inconsistent { path: path.into(), reason: format!("`test.calibration.brier` is {b}, not a value in [0, 2]") });
    }
    Ok(report)
}

/// `predictions.csv` → (binary, val, test).
fn read_predictions(path: &Path, report: &ReportJson) -> Result<(bool, Split, Split)> {
    let csv = Csv::read(path, "derma-train writes it at the end of a run; is the run finished?")?;
    let k = report.classes.len();
    let head = csv.header.iter().map(String::as_str).collect::<Vec<_>>();
    let binary = head == ["split", "index", "label", "prob"];
    let expected: Vec<String> = if binary {
        vec!["prob".into()]
    } else {
        (0..csv.header.len().saturating_sub(3)).map(|c| format!("prob_{c}")).collect()
    };
    if head.len() < 4 || head[..3] != ["split", "index", "label"] || csv.header[3..] != expected[..] {
        return Err(csv.malformed(1, format!("expected `split,index,label,prob` or `split,index,label,prob_0,…`, got `{}`", csv.header.join(","))));
    }
    let n_probs = csv.header.len() - 3;
    if binary && k != 2 || !binary && n_probs != k {
        return Err(Error::Inconsistent {
            path: path.into(),
            reason: format!("{n_probs} probability column(s), but report.json lists {k} classes"),
        });
    }
    let (mut val, mut test) = (Split { name: "val".into(), ..Split::default() }, Split { name: "test".into(), ..Split::default() });
    for (line, fields) in &csv.rows {
        let line = *line;
        csv.check_width(line, fields)?;
        let split = match fields[0].as_str() {
            "val" => &mut val,
            "test" => &mut test,
            other => return Err(csv.malformed(line, format!("split `{other}` is neither `val` nor `test`"))),
        };
        let index = csv.count(line, fields, 1)?;
        let label = csv.count(line, fields, 2)?;
        if label >= k {
            return Err(csv.malformed(line, format!("label {label} is not a class index: expected 0..{k}")));
        }
        let probs = (3..fields.len()).map(|c| csv.unit_float(line, fields, c, "a probability")).collect::<Result<Vec<f64>>>()?;
        split.indices.push(index);
        split.labels.push(label);
        split.probs.push(probs);
    }
    if test.is_empty() {
        return Err(Error::Inconsistent { path: path.into(), reason: "no `test` rows".into() });
    }
    // One row per test image: a file cut short, or one of another run, has another count than
    // report.json's per-class supports (whose numbers would then sit beside its plots).
    let supports: u64 = report.test.per_class.iter().map(|c| c.support).sum();
    if test.len() as u64 != supports {
        return Err(Error::Inconsistent {
            path: path.into(),
            reason: format!(
                "{} `test` rows, but report.json's test split has {supports} images (its per-class supports): a file cut short, \
                 or one of another run?",
                test.len()
            ),
        });
    }
    Ok((binary, val, test))
}

const EPOCH_COLUMNS: [&str; 8] = ["epoch", "train_loss", "val_loss", "val_acc", "val_bal_acc", "val_auc", "lr", "seconds"];
// Read from a binary run's metrics.csv; its rate columns (val_sensitivity, ...) are derived
// from the counts again, see `EpochBinary`.
const BINARY_COLUMNS: [&str; 6] = ["val_threshold", "val_tp", "val_fp", "val_tn", "val_fn", "val_ap"];

/// The largest epoch number accepted in `metrics.csv`.
const MAX_EPOCH: usize = 1_000_000;

fn read_metrics(path: &Path, binary: bool) -> Result<Vec<Epoch>> {
    let csv = Csv::read(path, "derma-train writes it after every epoch")?;
    let cols = EPOCH_COLUMNS.iter().map(|c| csv.column(c)).collect::<Result<Vec<_>>>()?;
    let ips = csv.column("images_per_second").ok();
    let bin_cols = if binary { Some(BINARY_COLUMNS.iter().map(|c| csv.column(c)).collect::<Result<Vec<_>>>()?) } else { None };
    let mut epochs = Vec::with_capacity(csv.rows.len());
    for (line, f) in &csv.rows {
        let line = *line;
        csv.check_width(line, f)?;
        let x = |i: usize| csv.float(line, f, cols[i]);
        // Accuracies and AUCs are in [0, 1] (NaN where undefined).
        let score = |i: usize| csv.unit_or_nan(line, f, cols[i], "a score");
        let binary = match &bin_cols {
            Some(b) => {
                let threshold = csv.float(line, f, b[0])?;
                // A probability, `inf` (nothing positive) or NaN (no threshold).
                if !((0.0..=1.0).contains(&threshold) || threshold == f64::INFINITY || threshold.is_nan()) {
                    return Err(csv.malformed(line, format!("`val_threshold` is {threshold}, not a probability in [0, 1] or inf")));
                }
                let n = |i: usize| csv.count(line, f, b[i]).map(|v| v as u64);
                let counts = BinaryCounts { tp: n(1)?, fp: n(2)?, tn: n(3)?, fn_: n(4)? };
                Some(EpochBinary {
                    at_threshold: BinaryMetrics::from_counts(threshold, counts),
                    ap: csv.unit_or_nan(line, f, b[5], "a score")?,
                })
            }
            None => None,
        };
        let epoch = csv.count(line, f, cols[0])?;
        // 1, 2, … in order (a resumed run rewrites the earlier rows): anything else is not a
        // derma-train file, and a huge number would not fit the plots' axis.
        let previous = epochs.last().map_or(0, |e: &Epoch| e.epoch);
        if epoch <= previous || epoch > MAX_EPOCH {
            return Err(csv.malformed(line, &format!("epoch {epoch} after epoch {previous}: expected increasing epochs from 1 up to {MAX_EPOCH}")));
        }
        epochs.push(Epoch {
            epoch,
            train_loss: x(1)?,
            val_loss: x(2)?,
            val_acc: score(3)?,
            val_bal_acc: score(4)?,
            val_auc: score(5)?,
            lr: x(6)?,
            seconds: x(7)?,
            images_per_second: ips.map(|c| csv.float(line, f, c)).transpose()?,
            binary,
        });
    }
    if epochs.is_empty() {
        return Err(csv.malformed(1, "no epoch rows after the header"));
    }
    Ok(epochs)
}

fn read_thresholds(path: &Path) -> Result<Option<Vec<ThresholdRow>>> {
    let csv = match Csv::read(path, "") {
        Ok(csv) => csv,
        Err(Error::Missing { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let cols = ["threshold", "tpr", "fpr", "precision"].iter().map(|c| csv.column(c)).collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::with_capacity(csv.rows.len());
    for (line, f) in &csv.rows {
        csv.check_width(*line, f)?;
        let rate = |i: usize| csv.unit_float(*line, f, cols[i], "a rate");
        let row = ThresholdRow { threshold: csv.float(*line, f, cols[0])?, tpr: rate(1)?, fpr: rate(2)?, precision: rate(3)? };
        // derma-train writes the ROC thresholds strictly decreasing from `inf`; a NaN or an
        // out-of-order row is not its file.
        if row.threshold.is_nan() {
            return Err(csv.malformed(*line, "`threshold` is NaN"));
        }
        if let Some(prev) = rows.last().map(|r: &ThresholdRow| r.threshold)
            && row.threshold >= prev
        {
            return Err(csv.malformed(*line, format!("`threshold` {} does not decrease (previous row {prev})", row.threshold)));
        }
        rows.push(row);
    }
    Ok(Some(rows))
}

fn read_config(path: &Path) -> Result<Option<BTreeMap<String, String>>> {
    let text = match read_text(path, "") {
        Ok(text) => text,
        Err(Error::Missing { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| Error::Parse { path: path.into(), reason: e.to_string() })?;
    Ok(Some(table.into_iter().map(|(k, v)| (k, config_value(&v))).collect()))
}

/// A TOML value as a person reads it: strings unquoted, lists joined with `, `.
fn config_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => a.iter().map(config_value).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}
