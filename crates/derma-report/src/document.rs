//! The report's content, once, as a list of [`Block`]s that [`markdown`](crate::markdown) and
//! [`html`](crate::html) render the same way: headline, configuration, class counts, test
//! metrics, operating threshold, plots, threshold table, gallery, notes.

use std::collections::BTreeMap;

use derma_eval::{BinaryMetrics, Calibration};

use crate::confusion::{Confusion, rule_text};
use crate::gallery::{ErrorKind, Figure, Group};
use crate::plot::threshold_text;
use crate::roc::Curves;
use crate::run::{Run, ThresholdRow};

/// One piece of the report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    /// A heading (level 1–3).
    Heading(u8, String),
    /// A paragraph of plain text.
    Paragraph(String),
    /// A remark in italics.
    Note(String),
    /// A bulleted list.
    List(Vec<String>),
    /// A table: the first column left-aligned, the others right-aligned.
    Table { header: Vec<String>, rows: Vec<Vec<Cell>> },
    /// A plot, `path` relative to the run folder.
    Image { path: String, alt: String },
}

/// A table cell.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    /// Plain text.
    Text(String),
    /// An image, `path` relative to the run folder.
    Image { path: String, alt: String },
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_string())
    }
}

/// The gallery as it ended up.
pub(crate) enum GallerySection {
    /// No image source: the selected items without pictures.
    NoImages(Vec<Group>),
    /// Thumbnails written (some may be missing).
    Figures(Vec<(ErrorKind, Vec<Figure>)>),
}

/// Everything the document is built from besides the run itself.
pub(crate) struct Computed<'a> {
    /// Title of the report.
    pub title: String,
    /// Training class counts given by the caller.
    pub train_counts: Option<&'a [u64]>,
    /// Test confusion matrix (recomputed).
    pub confusion: &'a Confusion,
    /// ROC/PR curves and binary operating points.
    pub curves: &'a Curves,
    /// Plots: (file relative to the run folder, heading, alt text).
    pub plots: &'a [(String, &'static str, String)],
    /// The gallery.
    pub gallery: &'a GallerySection,
    /// Notes collected while building the report.
    pub notes: &'a [String],
    /// The test split's calibration (recomputed from predictions.csv).
    pub calibration: &'a Calibration,
    /// Binary tasks: DeLong's 95 % interval of the test AUC, from predictions.csv (`None`
    /// multi-class, or with fewer than two test images of a class).
    pub auc_ci95: Option<(f64, f64)>,
}

/// A number with 4 decimals (`n/a` when undefined).
pub(crate) fn num(x: f64) -> String {
    if x.is_finite() { format!("{x:.4}") } else { "n/a".into() }
}

/// A 95 % interval as `low–high` (`n/a` without one).
fn interval(ci: Option<(f64, f64)>) -> String {
    ci.map_or_else(|| "n/a".into(), |(lo, hi)| format!("{}–{}", num(lo), num(hi)))
}

/// Wilson 95 % intervals of a binary operating point's rates, from its counts.
fn sensitivity_ci(m: &BinaryMetrics) -> String {
    interval(m.counts().sensitivity_ci95())
}
fn specificity_ci(m: &BinaryMetrics) -> String {
    interval(m.counts().specificity_ci95())
}
fn precision_ci(m: &BinaryMetrics) -> String {
    interval(m.counts().precision_ci95())
}

fn cells<const N: usize>(v: [String; N]) -> Vec<Cell> {
    v.into_iter().map(Cell::Text).collect()
}

/// Builds the report of `run`.
pub(crate) fn build(run: &Run, c: &Computed) -> Vec<Block> {
    let mut doc = vec![Block::Heading(1, c.title.clone())];
    doc.push(Block::List(headline(run, c)));
    configuration(&mut doc, run);
    class_counts(&mut doc, run, c.train_counts);
    test_results(&mut doc, run, c);
    if run.is_binary() {
        threshold_section(&mut doc, run, c);
    }
    plots(&mut doc, run, c);
    if run.is_binary() {
        threshold_table(&mut doc, run);
    }
    gallery(&mut doc, run, c.gallery);
    if !c.notes.is_empty() {
        doc.push(Block::Heading(2, "Notes".into()));
        doc.push(Block::List(c.notes.to_vec()));
    }
    doc
}

fn headline(run: &Run, c: &Computed) -> Vec<String> {
    let classes = run.classes();
    let t = &run.report.test;
    let mut lines = vec![if run.is_binary() {
        format!("Task: binary screening, positive class `{}` against `{}`.", classes[1], classes[0])
    } else {
        format!("Task: {} classes ({}).", classes.len(), classes.join(", "))
    }];
    let metric = run.config.as_ref().and_then(|c| c.get("select_metric")).map_or(String::new(), |m| format!(", selected by validation {m}"));
    // A run with `patience` that ran fewer epochs than configured stopped early.
    let setting = |key: &str| run.config.as_ref().and_then(|c| c.get(key)).and_then(|v| v.parse::<usize>().ok());
    let stopped = match (setting("epochs"), setting("patience")) {
        (Some(planned), Some(patience)) if patience > 0 && run.epochs.len() < planned => format!(
            "; stopped early after epoch {} of {planned} planned (--patience {patience}: that many epochs without a better \
             validation score)",
            run.epochs.len()
        ),
        _ => String::new(),
    };
    lines.push(format!("Best epoch: {} of {}{metric}{stopped}.", run.report.best_epoch, run.epochs.len()));
    // A binary AUC with DeLong's 95 % interval.
    let auc_ci = if run.is_binary() {
        format!(" (95% CI {})", interval(c.auc_ci95))
    } else {
        String::new()
    };
    let mut test = format!(
        "Test ({} images): accuracy {}, balanced accuracy {}, {} {}{auc_ci}",
        run.test.len(),
        num(t.accuracy),
        num(t.balanced_accuracy),
        if run.is_binary() { "ROC AUC" } else { "macro AUC" },
        num(t.auc_macro)
    );
    if let Some(th) = &run.report.threshold {
        test += &format!(
            "; at threshold {} ({}): sensitivity {} (95% CI {}), specificity {} (95% CI {})",
            threshold_text(th.threshold()),
            th.rule,
            num(th.test.sensitivity),
            sensitivity_ci(&th.test),
            num(th.test.specificity),
            specificity_ci(&th.test)
        );
    }
    lines.push(test + ".");
    let cal = c.calibration;
    lines.push(format!(
        "Calibration (test): Brier score {}{}; expected calibration error {} over {} bins of {}{}.",
        num(cal.brier),
        brier_scope(cal),
        num(cal.ece),
        cal.bins.len(),
        crate::calibration::subject(run, cal),
        recalibration_text(run).map_or(String::new(), |t| format!(" ({t})")),
    ));
    lines
}

/// Config keys shown, in this order, with the condition under which each matters.
fn shown(key: &str, cfg: &BTreeMap<String, String>, binary: bool) -> bool {
    let is = |k: &str, values: &[&str]| cfg.get(k).is_some_and(|v| values.contains(&v.as_str()));
    match key {
        "gamma" | "alpha" => is("loss", &["focal", "combined"]),
        "bce_weight" | "focal_weight" => is("loss", &["combined"]),
        "sampler_power" | "samples_per_epoch" => is("sampler", &["weighted"]),
        "undersample_ratio" => is("sampler", &["undersample"]),
        "mining_strength" | "mining_fraction" => is("hard_negative_mining", &["true"]),
        "triplet_margin" | "embedding_dim" => cfg.get("metric_weight").is_some_and(|w| w.parse::<f64>().is_ok_and(|w| w > 0.0)),
        "threshold" => binary,
        "calibrate" => cfg.get("calibrate").is_some_and(|v| v != "none"),
        "dilate" => cfg.get("output_stride").is_some_and(|s| s != "32"),
        _ => true,
    }
}

const CONFIG_KEYS: [&str; 46] = [
    "dataset",
    "size",
    "image_size",
    "npz",
    "positive_classes",
    "augment",
    "augment_knobs",
    "in_channels",
    "pretrained",
    "input_norm",
    "padding",
    "width",
    "output_stride",
    "dilate",
    "dropout",
    "freeze_backbone_epochs",
    "backbone_lr_mult",
    "freeze_bn",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_epochs",
    "seed",
    "loss",
    "gamma",
    "alpha",
    "bce_weight",
    "focal_weight",
    "class_weights",
    "sampler",
    "sampler_power",
    "samples_per_epoch",
    "undersample_ratio",
    "hard_negative_mining",
    "mining_strength",
    "mining_fraction",
    "metric_weight",
    "triplet_margin",
    "embedding_dim",
    "select_metric",
    "patience",
    "threshold",
    "calibrate",
    "backend",
    "out",
];

fn configuration(doc: &mut Vec<Block>, run: &Run) {
    doc.push(Block::Heading(2, "Configuration".into()));
    let Some(cfg) = &run.config else {
        doc.push(Block::Note("config.toml is not in the run folder: no configuration to show.".into()));
        return;
    };
    let rows = CONFIG_KEYS
        .iter()
        .filter(|k| shown(k, cfg, run.is_binary()))
        .filter_map(|k| cfg.get(*k).map(|v| cells([k.to_string(), v.clone()])))
        .collect();
    doc.push(Block::Table { header: vec!["setting".into(), "value".into()], rows });
}

fn class_counts(doc: &mut Vec<Block>, run: &Run, train: Option<&[u64]>) {
    doc.push(Block::Heading(2, "Class counts".into()));
    let k = run.classes().len();
    let (val, test) = (run.val.class_counts(k), run.test.class_counts(k));
    let mut header = vec!["class".to_string()];
    if train.is_some() {
        header.push("train".into());
    }
    header.extend(["val".into(), "test".into()]);
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    let share = |n: u64, total: u64| if total == 0 { "0".to_string() } else { format!("{n} ({:.1}%)", 100.0 * n as f64 / total as f64) };
    let totals = |v: &[u64]| v.iter().sum::<u64>();
    for (i, name) in run.classes().iter().enumerate() {
        let mut row = vec![Cell::Text(name.clone())];
        if let Some(t) = train {
            row.push(share(t[i], totals(t)).into());
        }
        row.push(share(val[i], totals(&val)).into());
        row.push(share(test[i], totals(&test)).into());
        rows.push(row);
    }
    let mut total = vec![Cell::from("total")];
    if let Some(t) = train {
        total.push(totals(t).to_string().into());
    }
    total.extend([totals(&val).to_string().into(), totals(&test).to_string().into()]);
    rows.push(total);
    doc.push(Block::Table { header, rows });
    if train.is_none() {
        doc.push(Block::Note("Validation and test counts are read from predictions.csv; training counts were not given.".into()));
    }
}

fn test_results(doc: &mut Vec<Block>, run: &Run, c: &Computed) {
    let t = &run.report.test;
    doc.push(Block::Heading(2, "Test results".into()));
    doc.push(Block::Paragraph(format!(
        "Best epoch {}, test set of {} images, {}.",
        run.report.best_epoch,
        run.test.len(),
        rule_text(&run.rule())
    )));
    let mut rows = vec![
        cells(["accuracy".into(), num(t.accuracy)]),
        cells(["balanced accuracy".into(), num(t.balanced_accuracy)]),
    ];
    if run.is_binary() {
        let ci = interval(c.auc_ci95);
        rows.push(cells(["ROC AUC".into(), format!("{} (95% CI {ci}, DeLong)", num(t.auc.unwrap_or(t.auc_macro)))]));
        if let Some(ap) = t.ap {
            rows.push(cells(["average precision (PR AUC)".into(), num(ap)]));
        }
    } else {
        rows.push(cells(["macro one-vs-rest ROC AUC".into(), num(t.auc_macro)]));
    }
    doc.push(Block::Table { header: vec!["metric".into(), "value".into()], rows });

    let auc_of = |class: usize| c.curves.classes.iter().find(|cc| cc.class == class).map(|cc| cc.auc);
    let mut header: Vec<String> = ["class", "precision", "recall", "recall 95% CI (Wilson)", "F1", "support"].map(String::from).to_vec();
    if !run.is_binary() {
        header.push("one-vs-rest AUC".into());
    }
    // A class's recall is its diagonal count of its row of the confusion matrix.
    let recall_ci = |i: usize| {
        let row = &t.confusion_matrix[i];
        interval(derma_eval::wilson95(row[i], row.iter().sum()))
    };
    let rows = t
        .per_class
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut row = cells([r.name.clone(), num(r.precision), num(r.recall), recall_ci(i), num(r.f1), r.support.to_string()]);
            if !run.is_binary() {
                row.push(auc_of(i).map_or("n/a".into(), num).into());
            }
            row
        })
        .collect();
    doc.push(Block::Table { header, rows });
}

fn threshold_section(doc: &mut Vec<Block>, run: &Run, c: &Computed) {
    let Some(th) = &run.report.threshold else { return };
    doc.push(Block::Heading(2, "Operating threshold".into()));
    let value = match th.value {
        Some(v) => format!("{v}"),
        None => "+inf (nothing is predicted positive)".into(),
    };
    let mut list = vec![
        format!("rule: {}", th.rule),
        format!(
            "threshold: {value} (a test image is positive when p ≥ threshold; {})",
            if th.rule.starts_with("fixed") { "fixed by the rule" } else { "chosen on validation" }
        ),
        format!("rule met on validation: {}", if th.met { "yes" } else { "NO" }),
    ];
    if let Some(note) = &th.note {
        list.push(format!("note: {note}"));
    }
    doc.push(Block::List(list));
    let half = c.curves.points.get(1).map(|p| p.metrics);
    let mut header = vec!["".to_string(), "validation".into(), "test".into()];
    if half.is_some() {
        header.push("test at 0.5".into());
    }
    let row = |name: &str, f: fn(&BinaryMetrics) -> String| {
        let mut r = cells([name.to_string(), f(&th.val), f(&th.test)]);
        if let Some(h) = &half {
            r.push(f(h).into());
        }
        r
    };
    let rows = vec![
        row("sensitivity", |m| num(m.sensitivity)),
        row("sensitivity 95% CI (Wilson)", sensitivity_ci),
        row("specificity", |m| num(m.specificity)),
        row("specificity 95% CI (Wilson)", specificity_ci),
        row("precision", |m| num(m.precision)),
        row("precision 95% CI (Wilson)", precision_ci),
        row("F1", |m| num(m.f1)),
        row("F2", |m| num(m.f2)),
        row("TP", |m| m.tp.to_string()),
        row("FP", |m| m.fp.to_string()),
        row("TN", |m| m.tn.to_string()),
        row("FN", |m| m.fn_.to_string()),
    ];
    doc.push(Block::Table { header, rows });
    let t = &run.report.test;
    doc.push(Block::Paragraph(format!(
        "Test ROC AUC {} (95% CI {}, DeLong), average precision {} (threshold-free).",
        num(t.auc.unwrap_or(t.auc_macro)),
        interval(c.auc_ci95),
        t.ap.map_or("n/a".into(), num)
    )));
}

fn plots(doc: &mut Vec<Block>, run: &Run, c: &Computed) {
    for (path, heading, alt) in c.plots {
        doc.push(Block::Heading(2, heading.to_string()));
        if path.ends_with("curves.png")
            && let Some(b) = run.best()
        {
            let mut text = format!(
                "Best epoch {}: train loss {}, val loss {}, val AUC {}, val balanced accuracy {}",
                b.epoch,
                num(b.train_loss),
                num(b.val_loss),
                num(b.val_auc),
                num(b.val_bal_acc)
            );
            if let Some(bin) = &b.binary {
                text += &format!(
                    ", val sensitivity {} and specificity {} at threshold {}",
                    num(bin.at_threshold.sensitivity),
                    num(bin.at_threshold.specificity),
                    threshold_text(bin.at_threshold.threshold)
                );
            }
            doc.push(Block::Paragraph(text + "."));
        }
        doc.push(Block::Image { path: path.clone(), alt: alt.clone() });
        if path.ends_with("confusion.png") {
            let mut header = vec!["true \\ predicted".to_string()];
            header.extend(c.confusion.classes.iter().cloned());
            let rows = c
                .confusion
                .counts
                .iter()
                .zip(&c.confusion.classes)
                .map(|(row, name)| std::iter::once(Cell::Text(name.clone())).chain(row.iter().map(|v| Cell::Text(v.to_string()))).collect())
                .collect();
            doc.push(Block::Table { header, rows });
        }
        if path.ends_with("calibration.png") {
            calibration_table(doc, run, c.calibration);
        }
    }
}

/// What `--calibrate` did, if the run used it: the map and the model's own figures, or why no
/// map was applied.
fn recalibration_text(run: &Run) -> Option<String> {
    let r = run.report.recalibration.as_ref()?;
    if !r.applied {
        return Some(format!(
            "--calibrate {} was not applied, so these are the model's own probabilities: {}",
            r.method,
            r.reason.as_deref().unwrap_or("no reason recorded")
        ));
    }
    let (scale, bias) = (r.scale.unwrap_or(f64::NAN), r.bias.unwrap_or(f64::NAN));
    let map = if r.method == "platt" {
        format!("Platt scaling sigmoid(a·z + b), a = {}, b = {}", num(scale), num(bias))
    } else if r.method == "bcts" {
        let biases = match &r.class_bias {
            Some(b) => {
                let each: Vec<String> = run.report.classes.iter().zip(b).map(|(c, b)| format!("{c} {}", num(*b))).collect();
                format!("softmax(z / T + b), T = {}, b: {}", num(1.0 / scale), each.join(", "))
            }
            None => format!("sigmoid(z / T + b), T = {}, b = {}", num(1.0 / scale), num(bias)),
        };
        format!("bias-corrected temperature scaling {biases}")
    } else {
        let f = if run.is_binary() { "sigmoid(z / T)" } else { "softmax(z / T)" };
        format!("temperature scaling {f}, T = {}", num(1.0 / scale))
    };
    let before = r.test_before.as_ref().map_or(String::new(), |b| {
        format!("; the model's own probabilities had Brier score {} and expected calibration error {}", num(b.brier), num(b.ece))
    });
    Some(format!("after --calibrate {}: {map}, fitted on the validation split{before}", r.method))
}

/// `text` with its first letter in upper case.
fn upper_first(text: &str) -> String {
    let mut c = text.chars();
    c.next().map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
}

/// What the Brier score is over: the one probability of a binary task, or every class.
fn brier_scope(c: &Calibration) -> &'static str {
    if c.top_label { " (summed over the classes)" } else { "" }
}

/// The numbers behind the reliability diagram: Brier score, ECE and the non-empty bins.
fn calibration_table(doc: &mut Vec<Block>, run: &Run, c: &Calibration) {
    let of = crate::calibration::subject(run, c);
    let below = if c.top_label {
        "the top label is right less often than its probability says (over-confidence)"
    } else {
        "fewer images are positive than the probabilities say (the positive class over-predicted, as class \
         weights, undersampling and focal loss do)"
    };
    doc.push(Block::Paragraph(format!(
        "Brier score {}{}. Expected calibration error {} over {} equal-width bins of {of}{}. A point below \
         the diagonal means {below}; above it, the opposite.",
        num(c.brier),
        brier_scope(c),
        num(c.ece),
        c.bins.len(),
        if c.top_label { " (whether the arg-max class is right)" } else { "" },
    )));
    if let Some(t) = recalibration_text(run) {
        doc.push(Block::Paragraph(format!("{}.", upper_first(&t))));
    }
    let header = ["probability bin", "test images", "mean predicted", "observed"].map(String::from).to_vec();
    let rows = c
        .bins
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| {
            let open = if b.lower == 0.0 { "[" } else { "(" };
            cells([format!("{open}{:.1}, {:.1}]", b.lower, b.upper), b.count.to_string(), num(b.mean_score), num(b.observed)])
        })
        .collect();
    doc.push(Block::Table { header, rows });
}

/// Specificity floors of the threshold table.
const SPEC_TARGETS: [f64; 8] = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99];

/// Rows of the threshold table: for each specificity floor, the validation threshold that
/// `min-spec:<floor>` picks (derma-eval's rule: the highest sensitivity among thresholds
/// meeting the floor, ties to the higher specificity; the empty operating point, sensitivity
/// 0, does not count), and the chosen threshold; as (label, row), threshold decreasing. Also
/// the floors no threshold reaches.
pub(crate) fn threshold_rows(rows: &[ThresholdRow], chosen: Option<f64>) -> (Vec<(String, ThresholdRow)>, Vec<f64>) {
    // (floors met by the row, is it the chosen one, row)
    let mut picked: Vec<(Vec<f64>, bool, ThresholdRow)> = Vec::new();
    let mut add = |floor: Option<f64>, row: ThresholdRow| {
        let i = match picked.iter().position(|(_, _, r)| r.threshold == row.threshold) {
            Some(i) => i,
            None => {
                picked.push((Vec::new(), false, row));
                picked.len() - 1
            }
        };
        match floor {
            Some(f) => picked[i].0.push(f),
            None => picked[i].1 = true,
        }
    };
    let mut unreachable = Vec::new();
    for s in SPEC_TARGETS {
        let best = rows
            .iter()
            .filter(|r| r.tpr > 0.0 && 1.0 - r.fpr >= s - 1e-12)
            .max_by(|a, b| a.tpr.total_cmp(&b.tpr).then(b.fpr.total_cmp(&a.fpr)));
        match best {
            Some(r) => add(Some(s), *r),
            None => unreachable.push(s),
        }
    }
    if let Some(t) = chosen
        && let Some(r) = rows.iter().find(|r| r.threshold == t)
    {
        add(None, *r);
    }
    picked.sort_by(|a, b| b.2.threshold.total_cmp(&a.2.threshold));
    let labelled = picked
        .into_iter()
        .map(|(floors, is_chosen, row)| {
            let mut label = Vec::new();
            if is_chosen {
                label.push("chosen".to_string());
            }
            if !floors.is_empty() {
                label.push(format!("spec ≥ {}", floors.iter().map(|f| format!("{f:.2}")).collect::<Vec<_>>().join(", ")));
            }
            (label.join("; "), row)
        })
        .collect();
    (labelled, unreachable)
}

fn threshold_table(doc: &mut Vec<Block>, run: &Run) {
    doc.push(Block::Heading(2, "Validation threshold table".into()));
    let Some(rows) = &run.thresholds else {
        doc.push(Block::Note("thresholds.csv is not in the run folder: no threshold table.".into()));
        return;
    };
    let th = run.report.threshold.as_ref();
    let chosen = th.map(|t| t.threshold());
    doc.push(Block::Paragraph(format!(
        "From thresholds.csv ({} validation thresholds): at each specificity floor the threshold `min-spec` would choose (the most sensitive one meeting the floor), and the chosen one.",
        rows.len()
    )));
    let (picked, unreachable) = threshold_rows(rows, chosen);
    // A chosen threshold that is not a validation score (e.g. `fixed:0.5`) is not in the file:
    // its row comes from report.json.
    let extra = chosen.filter(|&t| !rows.iter().any(|r| r.threshold == t));
    let shown: Vec<f64> = picked.iter().map(|(_, r)| r.threshold).chain(extra).collect();
    let texts = crate::plot::threshold_texts(&shown);
    let mut table: Vec<Vec<Cell>> = picked
        .into_iter()
        .zip(&texts)
        .map(|((label, r), text)| cells([label, text.clone(), num(r.tpr), num(1.0 - r.fpr), num(r.precision)]))
        .collect();
    if let (Some(t), Some(th)) = (extra, th) {
        let v = &th.val;
        table.push(cells([
            "chosen (not a validation score; from report.json)".into(),
            texts.last().cloned().unwrap_or_else(|| threshold_text(t)),
            num(v.sensitivity),
            num(v.specificity),
            num(v.precision),
        ]));
    }
    doc.push(Block::Table {
        header: ["row", "threshold", "sensitivity", "specificity", "precision"].map(String::from).to_vec(),
        rows: table,
    });
    if !unreachable.is_empty() {
        doc.push(Block::Note(format!(
            "No validation threshold with sensitivity above 0 reaches specificity ≥ {} (min-spec would fall back to the most specific threshold).",
            unreachable.iter().map(|f| format!("{f:.2}")).collect::<Vec<_>>().join(", ")
        )));
    }
}

fn gallery(doc: &mut Vec<Block>, run: &Run, section: &GallerySection) {
    doc.push(Block::Heading(2, "Error gallery (test)".into()));
    let classes = run.classes();
    let name = |c: usize| classes.get(c).cloned().unwrap_or_else(|| c.to_string());
    let binary = run.is_binary();
    let mut header: Vec<String> = vec!["test index".into(), "true class".into()];
    header.push(if binary { "p(positive)".into() } else { "predicted class".into() });
    if !binary {
        header.push("p(predicted)".into());
    }
    let item_cells = |it: &crate::gallery::Item| {
        let mut row = vec![Cell::Text(it.index.to_string()), Cell::Text(name(it.label))];
        if !binary {
            row.push(Cell::Text(name(it.predicted)));
        }
        row.push(Cell::Text(num(it.prob)));
        row
    };
    match section {
        GallerySection::NoImages(groups) => {
            doc.push(Block::Note(
                "No thumbnails: the images are not in the run folder and gallery/ holds none for this selection (the \
                 training run writes them); the images the gallery would show are listed."
                    .into(),
            ));
            for g in groups {
                doc.push(Block::Heading(3, g.kind.title().into()));
                if g.items.is_empty() {
                    doc.push(Block::Paragraph("None.".into()));
                } else {
                    doc.push(Block::Table { header: header.clone(), rows: g.items.iter().map(item_cells).collect() });
                }
            }
        }
        GallerySection::Figures(groups) => {
            let mut with_image = vec!["image".to_string()];
            with_image.extend(header.iter().cloned());
            for (kind, figures) in groups {
                doc.push(Block::Heading(3, kind.title().into()));
                if figures.is_empty() {
                    doc.push(Block::Paragraph("None.".into()));
                    continue;
                }
                let rows = figures
                    .iter()
                    .map(|f| {
                        let alt = format!("{} #{}, p = {}", f.item.split, f.item.index, num(f.item.prob));
                        let image = match &f.file {
                            Some(path) => Cell::Image { path: path.clone(), alt },
                            None => Cell::Text("(no image)".into()),
                        };
                        std::iter::once(image).chain(item_cells(&f.item)).collect()
                    })
                    .collect();
                doc.push(Block::Table { header: with_image.clone(), rows });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(threshold: f64, tpr: f64, fpr: f64) -> ThresholdRow {
        ThresholdRow { threshold, tpr, fpr, precision: f64::NAN }
    }

    /// Validation positives {0.6, 0.3}, negatives {0.9, 0.2, 0.1 x 8}: sklearn
    /// `roc_curve([1,1,0,0]+[0]*8, [0.6,0.3,0.9,0.2]+[0.1]*8, drop_intermediate=False)` gives
    /// thresholds inf, 0.9, 0.6, 0.3, 0.2, 0.1 with tpr 0, 0, .5, 1, 1, 1 and fpr 0, .1, .1, .1,
    /// .2, 1. `min-spec:0.8` (derma-eval's `select_threshold`) picks 0.3 (sensitivity 1,
    /// specificity 0.9), not 0.2 (sensitivity 1, specificity 0.8); 0.95 and 0.99 are reached
    /// only by the empty operating point (+inf), which the rule does not count.
    #[test]
    fn the_table_picks_what_min_spec_picks() {
        let rows = [
            row(f64::INFINITY, 0.0, 0.0),
            row(0.9, 0.0, 0.1),
            row(0.6, 0.5, 0.1),
            row(0.3, 1.0, 0.1),
            row(0.2, 1.0, 0.2),
            row(0.1, 1.0, 1.0),
        ];
        let (picked, unreachable) = threshold_rows(&rows, None);
        let at = |t: f64| picked.iter().find(|(_, r)| r.threshold == t).map(|(l, _)| l.clone());
        assert_eq!(at(0.3).as_deref(), Some("spec ≥ 0.50, 0.60, 0.70, 0.80, 0.85, 0.90"));
        assert_eq!(at(0.2), None);
        assert_eq!(at(f64::INFINITY), None);
        assert_eq!(unreachable, vec![0.95, 0.99]);
        let choice = derma_eval::select_threshold(
            &"min-spec:0.8".parse().unwrap(),
            &[true, true, false, false, false, false, false, false, false, false, false, false],
            &[0.6, 0.3, 0.9, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
        )
        .unwrap();
        assert_eq!(choice.value, 0.3);
    }
}
