//! A two-stage screening cascade (the `derma-cascade` binary).
//!
//! - **Stage 1, the screener**: weighted cross-entropy (`class_weights = "balanced"`) with 1:2
//!   undersampling (`sampler = "undersample"`, `undersample_ratio = 2`) and threshold
//!   `recall:0.99` chosen on validation ([`stage1_recipe`]).
//! - **Stage 2, the specialist**: trained only on the images stage 1 flags positive at its
//!   threshold — on train, stage 1's predictions on the training split; on validation, the
//!   same — with focal loss (`alpha = 0.75`, `gamma = 1`, no class weights, no sampler) and
//!   threshold `recall:0.99` chosen on its validation subset ([`stage2_recipe`]). Its `test`
//!   set (for its own run folder's report) is the flagged test images.
//! - **The cascade** flags an image positive iff both stages do.
//!
//! Both stages start from the same base configuration (`--config` and the data/model flags);
//! the recipes are applied over it and `--stage1 KEY=VALUE` / `--stage2 KEY=VALUE` over them.
//!
//! ## Reported numbers (`cascade.json`, `cascade.md`)
//!
//! For every recall target `r` (default 0.99 and 0.98), with all probabilities recomputed from
//! the saved models ([`RunModel`]):
//!
//! - *stage 1 alone*: `t1(r)` = the highest threshold whose **validation** recall is `≥ r`
//!   (rule `recall:r`); test precision, recall, specificity and counts at `t1(r)`.
//! - *cascade*: `t1(r)` as above; `V2(r)` = validation images with stage-1 probability
//!   `≥ t1(r)`; `t2(r)` = the highest threshold whose recall **on `V2(r)`** is `≥ r` (each stage
//!   at recall `r` on its own validation population, so the cascade's validation recall is
//!   about `r²`). A test image is positive iff `p1 ≥ t1(r)` and `p2 ≥ t2(r)`.
//! - *cascade, end-to-end*: the same, but `t2(r)` is the highest threshold that keeps the
//!   cascade's recall over **all** validation positives `≥ r` (stage-2 recall on `V2(r)` `≥ r ·
//!   P / P2`, `P` and `P2` the positives of the validation set and of `V2(r)`): the like-for-like
//!   comparison with stage 1 alone at the same recall.
//!
//! The specialist is trained once, on the images flagged by stage 1's configured threshold
//! rule (default `recall:0.99`); a lower target only raises `t1`, so its flagged set is a
//! subset of the training population. A higher target (or a looser `--stage1` rule) lowers
//! `t1`: stage 2 then also scores images outside its training population, and the target's
//! rows say so in a note. The cascade's confusion matrix (rows true
//! negative/positive, columns predicted) is that of the first target, per-stage rule.
//!
//! ## Edge cases
//!
//! - The task must be binary (`--positive-classes`, or a two-class file dataset).
//! - If the images stage 1 flags on **train or validation hold one class only** (or none),
//!   there is nothing for a specialist to learn or to calibrate on: stage 2 is **skipped**,
//!   the cascade is stage 1 alone, `cascade.json` has `stage2.skipped` with the reason and a
//!   warning is printed. (Typical cause: stage 1 separates the training images perfectly.)
//! - If the flagged **test** images hold one class only, stage 2's own run folder reports on
//!   the whole test set instead (its report needs both classes); the cascade numbers are
//!   unaffected.
//! - If, at a lower recall target, `V2(r)` holds one class only, that target's cascade is
//!   stage 1 alone, with a note.
//!
//! Caveat: stage 1 has seen its training images, so its training-split probabilities are
//! optimistic; fewer training negatives pass its threshold than test negatives will.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::prelude::Device;
use derma_data::ImageDataset;
use derma_eval::{BinaryCounts, BinaryMetrics, ThresholdRule};
use serde_json::{Value, json};

use crate::config::TrainConfig;
use crate::evaluate::Predictions;
use crate::predict::RunModel;
use crate::report::write_atomic;
use crate::dataset::data_fingerprint;
use crate::dataset::{TaskData, load_data};
use crate::train::fit;

/// Stage 1's keys over the base configuration.
pub fn stage1_recipe() -> toml::Table {
    toml::from_str(
        r#"
        loss = "ce"
        class_weights = "balanced"
        sampler = "undersample"
        undersample_ratio = 2.0
        threshold = "recall:0.99"
        "#,
    )
    .expect("valid TOML")
}

/// Stage 2's keys over the base configuration.
pub fn stage2_recipe() -> toml::Table {
    toml::from_str(
        r#"
        loss = "focal"
        alpha = 0.75
        gamma = 1.0
        class_weights = "none"
        sampler = "none"
        threshold = "recall:0.99"
        "#,
    )
    .expect("valid TOML")
}

/// Parses `KEY=VALUE` into a one-key table; VALUE is TOML (`2`, `0.5`, `"x"`, `[1, 2]`) or,
/// when it does not parse as TOML, a bare string (`threshold=recall:0.95`).
pub fn parse_assignment(s: &str) -> Result<(String, toml::Value), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}`: expected KEY=VALUE"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("`{s}`: empty key"));
    }
    let v = v.trim();
    let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(v.to_string()));
    Ok((k.to_string(), value))
}

/// What `derma-cascade` is asked to do.
#[derive(Debug, Clone)]
pub struct CascadeOptions {
    /// The base configuration keys (config file, then flags).
    pub base: toml::Table,
    /// Keys over stage 1's recipe.
    pub stage1: toml::Table,
    /// Keys over stage 2's recipe.
    pub stage2: toml::Table,
    /// Recall targets of the report (the first one gives the confusion matrix).
    pub recalls: Vec<f64>,
}

impl CascadeOptions {
    /// Stage configurations, validated, with messages naming the stage.
    pub fn configs(&self) -> anyhow::Result<(TrainConfig, TrainConfig)> {
        self.configs_for(false)
    }

    /// [`configs`](Self::configs); for `resume` without requiring a pretrained weight file
    /// ([`TrainConfig::validate_for_resume`]): a stage reused or continued does not read it,
    /// and one trained afresh asks for it then.
    pub fn configs_for(&self, resume: bool) -> anyhow::Result<(TrainConfig, TrainConfig)> {
        let mut c1 = TrainConfig::from_layers(&[&self.base, &stage1_recipe(), &self.stage1]).map_err(|e| anyhow::anyhow!("stage 1: {e}"))?;
        let mut c2 = TrainConfig::from_layers(&[&self.base, &stage2_recipe(), &self.stage2]).map_err(|e| anyhow::anyhow!("stage 2: {e}"))?;
        for (n, c) in [(1, &mut c1), (2, &mut c2)] {
            // The stages' config.toml hold absolute paths, as derma-train's runs do (also those
            // given with --set, --stage1, --stage2): --resume and derma-predict work from any
            // directory.
            c.make_paths_absolute().map_err(|e| anyhow::anyhow!("stage {n}: cannot make the paths absolute: {e}"))?;
        }
        for (n, c) in [(1, &c1), (2, &c2)] {
            let valid = if resume { c.validate_without_weight_file() } else { c.validate() };
            valid.map_err(|e| anyhow::anyhow!("stage {n}: {e}"))?;
            // Also for a two-class MedMNIST set: its label 1 need not be the class to screen
            // for (breastmnist: `normal-benign`).
            if c.positive_classes.is_none() && !c.is_file_dataset() {
                let classes = medmnist::lookup(&c.dataset).map(|i| i.labels.join(", ")).unwrap_or_default();
                anyhow::bail!(
                    "derma-cascade needs a binary task with named positive classes: give --positive-classes (e.g. mel,bcc,akiec for \
                     dermamnist; the classes of {}: {classes})",
                    c.dataset
                );
            }
        }
        // Both stages run on one device and write under --out: a stage's own value would be
        // recorded in its config.toml but not used.
        for (flag, keys) in [("--stage1", &self.stage1), ("--stage2", &self.stage2)] {
            if let Some(key) = ["backend", "out"].into_iter().find(|k| keys.contains_key(*k)) {
                anyhow::bail!("{flag} {key}=…: not a stage setting (both stages run on --backend's device, under --out)");
            }
        }
        if data_fingerprint(&c1) != data_fingerprint(&c2) {
            anyhow::bail!(
                "--stage1/--stage2 must not change the data (dataset, files, positive classes, size; for image files also \
                 image_size, intensity, resize, split_fractions, seed): both stages see the same images"
            );
        }
        if self.recalls.is_empty() || self.recalls.iter().any(|r| !(*r > 0.0 && *r <= 1.0)) {
            anyhow::bail!("--recall values must be in (0, 1], got {:?}", self.recalls);
        }
        Ok((c1, c2))
    }

    /// One warning per setting of the base configuration (a flag, `--set`, the `--config`
    /// file) that differs from the built-in default but that a stage's recipe replaces
    /// (e.g. `--gamma 2`, `--set threshold=recall:0.95`): it would otherwise have no effect
    /// without a word. `--stage1` / `--stage2` are the way to change a recipe key.
    pub fn ignored_settings(&self) -> Vec<String> {
        let defaults: toml::Table = toml::from_str(&TrainConfig::default().to_toml()).expect("the defaults serialise to TOML");
        let mut warnings = Vec::new();
        for (key, value) in &self.base {
            if defaults.get(key) == Some(value) {
                continue;
            }
            let replaced: Vec<String> = [(1, stage1_recipe(), &self.stage1), (2, stage2_recipe(), &self.stage2)]
                .iter()
                .filter(|(_, recipe, over)| recipe.contains_key(key) || over.contains_key(key))
                .map(|(n, recipe, over)| format!("stage {n} uses {key} = {}", over.get(key).or(recipe.get(key)).expect("a key of one of them")))
                .collect();
            if replaced.len() == 2 {
                warnings.push(format!(
                    "warning: {key} = {value} of the base configuration has no effect: {}; set it per stage with --stage1 {key}=VALUE / --stage2 {key}=VALUE",
                    replaced.join(", ")
                ));
            } else if let Some(r) = replaced.first() {
                warnings.push(format!(
                    "warning: {key} = {value} of the base configuration is replaced in one stage: {r} (--stage1/--stage2 {key}=VALUE sets it per stage)"
                ));
            }
        }
        warnings
    }
}

/// Which images stage 2 trains on, or why it is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage2Data {
    /// Indices (into each split) of the images stage 1 flags.
    Train {
        /// Flagged training images.
        train: Vec<usize>,
        /// Flagged validation images.
        val: Vec<usize>,
        /// Flagged test images, or all of them when the flagged ones hold one class only.
        test: Vec<usize>,
        /// Whether `test` is the whole test set (see the module documentation).
        test_is_all: bool,
    },
    /// Stage 2 cannot be trained; the cascade is stage 1 alone.
    Skip(String),
}

fn flagged(scores: &[f64], t: f64) -> Vec<usize> {
    (0..scores.len()).filter(|&i| scores[i] >= t).collect()
}

fn class_count(labels: &[usize], idx: &[usize]) -> (usize, usize) {
    let pos = idx.iter().filter(|&&i| labels[i] == 1).count();
    (idx.len() - pos, pos)
}

/// The stage-2 populations: the images of each split whose stage-1 probability is `≥ t1`
/// (labels 0/1, probabilities per split). Skips when the flagged training or validation
/// images lack a class.
pub fn stage2_data(labels: [&[usize]; 3], scores: [&[f64]; 3], t1: f64) -> Stage2Data {
    let [train, val, test] = [0, 1, 2].map(|s| flagged(scores[s], t1));
    for (name, idx, l) in [("training", &train, labels[0]), ("validation", &val, labels[1])] {
        let (neg, pos) = class_count(l, idx);
        if neg == 0 || pos == 0 {
            return Stage2Data::Skip(format!(
                "stage 1 flags {} {name} images at threshold {t1} ({pos} positive, {neg} negative): a specialist needs both classes; \
                 the cascade is stage 1 alone",
                idx.len()
            ));
        }
    }
    let (neg, pos) = class_count(labels[2], &test);
    let test_is_all = neg == 0 || pos == 0;
    let test = if test_is_all { (0..labels[2].len()).collect() } else { test };
    Stage2Data::Train { train, val, test, test_is_all }
}

/// Binary metrics as JSON (`recall` = sensitivity), with Wilson 95 % intervals of the three
/// rates from the counts (`ci95`; null without a denominator).
fn metrics_json(m: &BinaryMetrics) -> Value {
    let (c, pair) = (m.counts(), |ci: Option<(f64, f64)>| ci.map(|(lo, hi)| [lo, hi]));
    json!({
        "threshold": if m.threshold.is_finite() { json!(m.threshold) } else { json!("inf") },
        "precision": m.precision, "recall": m.sensitivity, "specificity": m.specificity,
        "tp": m.tp, "fp": m.fp, "tn": m.tn, "fn": m.fn_,
        "ci95": {
            "precision": pair(c.precision_ci95()),
            "recall": pair(c.sensitivity_ci95()),
            "specificity": pair(c.specificity_ci95()),
        },
    })
}

/// Counts of the cascade: positive iff `s1 ≥ t1` and `s2 ≥ t2`.
pub fn cascade_counts(labels: &[usize], s1: &[f64], s2: &[f64], t1: f64, t2: f64) -> BinaryCounts {
    let mut c = BinaryCounts::default();
    for ((&l, &a), &b) in labels.iter().zip(s1).zip(s2) {
        match (l == 1, a >= t1 && b >= t2) {
            (true, true) => c.tp += 1,
            (false, true) => c.fp += 1,
            (false, false) => c.tn += 1,
            (true, false) => c.fn_ += 1,
        }
    }
    c
}

fn pick(rule: ThresholdRule, labels: &[usize], scores: &[f64]) -> anyhow::Result<f64> {
    let positives: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
    Ok(derma_eval::select_threshold(&rule, &positives, scores)?.value)
}

fn at(t: f64, labels: &[usize], scores: &[f64]) -> anyhow::Result<BinaryMetrics> {
    let positives: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
    Ok(derma_eval::apply(t, &positives, scores)?)
}

fn select(v: &[f64], idx: &[usize]) -> Vec<f64> {
    idx.iter().map(|&i| v[i]).collect()
}

fn select_usize(v: &[usize], idx: &[usize]) -> Vec<usize> {
    idx.iter().map(|&i| v[i]).collect()
}

/// The predictions of every split by both stages.
struct Scores {
    labels: [Vec<usize>; 3],
    s1: [Vec<f64>; 3],
    /// Stage 2 on validation and test (all images), when it was trained.
    s2: Option<[Vec<f64>; 2]>,
    /// Stage 1's threshold (its configured rule) that chose stage 2's training images.
    t_train: f64,
}

/// One recall target's rows.
fn target_rows(r: f64, sc: &Scores) -> anyhow::Result<Value> {
    let [_, lv, lt] = [&sc.labels[0], &sc.labels[1], &sc.labels[2]];
    let [_, s1v, s1t] = [&sc.s1[0], &sc.s1[1], &sc.s1[2]];
    let t1 = pick(ThresholdRule::Recall(r), lv, s1v)?;
    let stage1 = json!({ "threshold": t1, "val": metrics_json(&at(t1, lv, s1v)?), "test": metrics_json(&at(t1, lt, s1t)?) });
    let alone = |note: String| -> anyhow::Result<Value> {
        let test = at(t1, lt, s1t)?;
        Ok(json!({
            "stage1_threshold": t1, "stage2_threshold": Value::Null, "note": note,
            "val": metrics_json(&at(t1, lv, s1v)?), "test": metrics_json(&test),
            "confusion_matrix": [[test.tn, test.fp], [test.fn_, test.tp]],
        }))
    };
    let (cascade, end_to_end) = match &sc.s2 {
        None => {
            let note = "stage 2 was skipped: the cascade is stage 1 alone".to_string();
            (alone(note.clone())?, alone(note)?)
        }
        Some([s2v, s2t]) => {
            let v2 = flagged(s1v, t1);
            let (neg, pos) = class_count(lv, &v2);
            if neg == 0 || pos == 0 {
                let note = format!("at recall {r} stage 1 flags {} validation images with {pos} positive(s), {neg} negative(s): no stage-2 threshold can be chosen, the cascade is stage 1 alone", v2.len());
                (alone(note.clone())?, alone(note)?)
            } else {
                let (l2, sv2) = (select_usize(lv, &v2), select(s2v, &v2));
                let p_all = lv.iter().filter(|&&l| l == 1).count() as f64;
                let row = |t2: f64, note: Option<String>| {
                    let val = BinaryMetrics::from_counts(t2, cascade_counts(lv, s1v, s2v, t1, t2));
                    let test = BinaryMetrics::from_counts(t2, cascade_counts(lt, s1t, s2t, t1, t2));
                    json!({
                        "stage1_threshold": t1, "stage2_threshold": t2, "note": note,
                        "val": metrics_json(&val), "test": metrics_json(&test),
                        "confusion_matrix": [[test.tn, test.fp], [test.fn_, test.tp]],
                    })
                };
                let t2 = pick(ThresholdRule::Recall(r), &l2, &sv2)?;
                // End to end: recall on V2 >= r * P / P2 keeps the overall validation recall >= r.
                let target = (r * p_all / pos as f64 - 1e-12).clamp(f64::MIN_POSITIVE, 1.0);
                let t2e = pick(ThresholdRule::Recall(target), &l2, &sv2)?;
                // A target above stage 1's own rule lowers t1 below the threshold that chose
                // stage 2's training images: stage 2 then also scores images unlike any it
                // was trained on.
                let outside = (t1 < sc.t_train).then(|| {
                    format!(
                        "stage 1's threshold at this target ({t1:.4}) is below the one that chose stage 2's training images ({:.4}): \
                         stage 2 also scores images outside its training population",
                        sc.t_train
                    )
                });
                let e2e_note = format!("stage-2 recall target on its validation subset: {target:.4}");
                let e2e_note = match &outside {
                    Some(o) => format!("{e2e_note}; {o}"),
                    None => e2e_note,
                };
                (row(t2, outside), row(t2e, Some(e2e_note)))
            }
        }
    };
    Ok(json!({ "recall": r, "stage1": stage1, "cascade": cascade, "cascade_end_to_end": end_to_end }))
}

/// How `cascade.md` prints a threshold of `report`: derma-report's 4 decimals, with more
/// digits wherever two different thresholds of the report would read alike (a weak stage 1's
/// thresholds at 99 % and 98 % recall can differ in the 6th decimal); null (`—`) or a string
/// as written.
fn threshold_formatter(report: &Value) -> impl Fn(&Value) -> String + use<> {
    fn collect(v: &Value, out: &mut Vec<f64>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match x.as_f64() {
                        Some(t) if k.ends_with("threshold") => out.push(t),
                        _ => collect(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    let mut values = Vec::new();
    collect(report, &mut values);
    let texts = derma_report::threshold_texts(&values);
    move |v: &Value| match v.as_f64() {
        Some(t) => values.iter().position(|&x| x == t).map_or_else(|| derma_report::threshold_text(t), |i| texts[i].clone()),
        None => v.as_str().unwrap_or("—").to_string(),
    }
}

/// `cascade.md`.
fn cascade_md(report: &Value) -> String {
    let fmt_t = threshold_formatter(report);
    let mut s = String::from("# Two-stage cascade\n\n");
    let _ = writeln!(
        s,
        "Positive class: `{}`. Thresholds are chosen on validation at recall ≥ the target (stage 2 on the validation \
         images stage 1 flags) and applied unchanged to test. *cascade*: each stage at the target recall on its own \
         validation population; *cascade, end-to-end*: stage 2's threshold keeps the cascade's recall over all \
         validation positives ≥ the target.\n",
        report["positive_class"].as_str().unwrap_or("?")
    );
    let st1 = &report["stage1"];
    let flags = |k: &str| {
        let f = &st1["flagged"][k];
        format!("{}/{} {k} ({} positive, {} negative)", f["images"], f["of"], f["positives"], f["negatives"])
    };
    let _ = writeln!(
        s,
        "Stage 1 (`stage1/`, threshold rule `{}` on validation → {}) flags {}, {}, {}.\n",
        st1["threshold_rule"].as_str().unwrap_or("?"),
        fmt_t(&st1["threshold"]),
        flags("train"),
        flags("val"),
        flags("test")
    );
    match report["stage2"]["skipped"].as_str() {
        Some(skip) => {
            let _ = writeln!(s, "**Stage 2 skipped**: {skip}\n");
        }
        None => {
            let st2 = &report["stage2"];
            let _ = writeln!(
                s,
                "Stage 2 (`stage2/`) trained on the {} flagged training images ({} positive, {} negative), threshold \
                 rule `{}` on the {} flagged validation images → {}.\n",
                st2["train_images"],
                st2["train_positives"],
                st2["train_negatives"],
                st2["threshold_rule"].as_str().unwrap_or("?"),
                st2["val_images"],
                fmt_t(&st2["threshold"])
            );
        }
    }
    let _ = writeln!(s, "| recall target | model | thresholds | val recall | test precision (95% CI) | test recall (95% CI) | test specificity (95% CI) | test FP | test TP | test FN |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for t in report["targets"].as_array().into_iter().flatten() {
        let r = t["recall"].as_f64().unwrap_or(f64::NAN);
        let rows = [
            ("stage 1 alone", &t["stage1"], fmt_t(&t["stage1"]["threshold"])),
            ("cascade", &t["cascade"], format!("{} / {}", fmt_t(&t["cascade"]["stage1_threshold"]), fmt_t(&t["cascade"]["stage2_threshold"]))),
            (
                "cascade, end-to-end",
                &t["cascade_end_to_end"],
                format!("{} / {}", fmt_t(&t["cascade_end_to_end"]["stage1_threshold"]), fmt_t(&t["cascade_end_to_end"]["stage2_threshold"])),
            ),
        ];
        for (name, m, th) in rows {
            // The rate with its Wilson 95 % interval (`ci95`, from the counts).
            let f = |k: &str| {
                let v = m["test"][k].as_f64().map_or("—".into(), |v| format!("{v:.4}"));
                match (m["test"]["ci95"][k][0].as_f64(), m["test"]["ci95"][k][1].as_f64()) {
                    (Some(lo), Some(hi)) => format!("{v} ({lo:.3}–{hi:.3})"),
                    // No denominator (e.g. nothing flagged: precision has none).
                    _ if m["test"]["ci95"].is_object() => format!("{v} (n/a)"),
                    _ => v,
                }
            };
            let n = |k: &str| m["test"][k].as_u64().map_or("—".into(), |v| v.to_string());
            let _ = writeln!(
                s,
                "| {:.0}% | {name} | {th} | {} | {} | {} | {} | {} | {} | {} |",
                r * 100.0,
                m["val"]["recall"].as_f64().map_or("—".into(), |v| format!("{v:.4}")),
                f("precision"),
                f("recall"),
                f("specificity"),
                n("fp"),
                n("tp"),
                n("fn")
            );
        }
    }
    for t in report["targets"].as_array().into_iter().flatten() {
        if let Some(note) = t["cascade"]["note"].as_str() {
            let _ = writeln!(s, "\nnote (recall {}): {note}", t["recall"]);
        }
    }
    let cm = &report["confusion_matrix"];
    let names = report["classes"].as_array().cloned().unwrap_or_default();
    let name = |i: usize| names.get(i).and_then(|v| v.as_str()).unwrap_or("?").to_string();
    let _ = writeln!(s, "\n## Cascade confusion matrix on test (recall target {})\n", report["targets"][0]["recall"]);
    let _ = writeln!(s, "| true \\ predicted | {} | {} |\n|---|---|---|", name(0), name(1));
    for i in 0..2 {
        let _ = writeln!(s, "| {} | {} | {} |", name(i), cm[i][0], cm[i][1]);
    }
    s
}

fn predictions_csv(sc: &Scores) -> String {
    let mut s = String::from("split,index,label,stage1_prob,stage2_prob\n");
    for (k, split) in ["train", "val", "test"].iter().enumerate() {
        for i in 0..sc.labels[k].len() {
            let s2 = match (&sc.s2, k) {
                (Some(v), 1 | 2) => v[k - 1][i].to_string(),
                _ => String::new(),
            };
            let _ = writeln!(s, "{split},{i},{},{},{s2}", sc.labels[k][i], sc.s1[k][i]);
        }
    }
    s
}

/// Of per-split lists `p` (patients, paths), the entries of the images `idx` of each split.
fn subset<T: Clone>(p: &Option<[Vec<T>; 3]>, idx: [&[usize]; 3]) -> Option<[Vec<T>; 3]> {
    p.as_ref().map(|p| [0, 1, 2].map(|s| idx[s].iter().map(|&i| p[s][i].clone()).collect()))
}

fn predict_all(model: &RunModel, splits: &[&ImageDataset], batch: usize, device: &Device) -> Vec<Predictions> {
    splits.iter().map(|d| model.predict(d, batch, device)).collect()
}

/// How a stage's run folder is brought to a finished run: kept (`resume` and it finished on
/// the same data), continued from its checkpoint, or trained (afresh). With `resume`, [`run`]
/// has already checked the folder's settings ([`check_stage_settings`]).
fn stage(
    n: usize,
    config: &TrainConfig,
    data: &TaskData,
    weights: Option<&Path>,
    dir: &Path,
    resume: bool,
    device: &Device,
    backend_name: &str,
) -> anyhow::Result<()> {
    if resume && dir.join("config.toml").is_file() {
        if dir.join(crate::checkpoint::DIR).join("state.json").is_file() {
            // A checkpoint of other images (stage 1 now flags others, e.g. after a resume on
            // another backend): trained again, as a finished run of other images is.
            let state = crate::checkpoint::read_state(dir)?;
            if state.data_hash.as_deref().is_some_and(|h| h != data.fingerprint()) {
                println!(
                    "stage {n}: {} was being trained on other images{}: trained again",
                    dir.display(),
                    if n == 2 { " (stage 1 now flags other images)" } else { "" }
                );
                crate::checkpoint::remove(dir);
            } else {
                if let Some(why) = &state.diverged {
                    anyhow::bail!(
                        "--resume: stage {n} ({}) {why}: change that stage's settings (e.g. --stage{n} lr=…) and pass --overwrite \
                         to train the cascade again",
                        dir.display()
                    );
                }
                println!("stage {n}: continuing {} from its checkpoint", dir.display());
                // `out` stays as the stage wrote it (none: the stage folder is `dir`), so the
                // resumed stage's config.toml and report equal an uninterrupted one's.
                let mut full = TrainConfig::from_run_folder(&dir.join("config.toml"), "--resume")?;
                // An earlier version's relative paths (relative to the directory the cascade ran
                // in) are written back absolute.
                full.make_paths_absolute().map_err(|e| anyhow::anyhow!("{}: cannot make the paths absolute: {e}", dir.display()))?;
                crate::train::resume_fit(&full, data, device, backend_name, dir)?;
                return Ok(());
            }
        } else if dir.join("report.json").is_file() && dir.join("model.bpk").is_file() {
            // A finished run has no checkpoint: its report.json's data hash says what it saw.
            let report: Value = std::fs::read_to_string(dir.join("report.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            let now = data.fingerprint();
            match report["data_hash"].as_str() {
                Some(h) if h == now => {
                    println!("stage {n}: finished in {}, reused", dir.display());
                    return Ok(());
                }
                _ => println!(
                    "stage {n}: {} was trained on other images (or its report.json predates data hashes{}): trained again",
                    dir.display(),
                    if n == 2 { "; stage 1 now flags other images" } else { "" }
                ),
            }
        }
    }
    // A resumed cascade resolves a stage's weights only here, where they are read.
    let resolved = match resume {
        true => crate::pretrained::resolve(&config.pretrained, config.offline)
            .map_err(|e| anyhow::anyhow!("stage {n} is trained afresh and needs its weights: {e}"))?,
        false => None,
    };
    fit(config, data, resolved.as_deref().or(weights), device, backend_name, dir)?;
    Ok(())
}

/// `--resume`: the stage folder's `config.toml` must hold this stage's settings, apart from
/// what training fills in (weight conventions, `out`) and what may change between sessions
/// (`backend`, `offline`, `data_root`). The error names the keys that differ.
fn check_stage_settings(n: usize, config: &TrainConfig, dir: &Path) -> anyhow::Result<()> {
    let normalised = |c: &TrainConfig| -> anyhow::Result<toml::Table> {
        let mut c = c.clone();
        (c.input_norm, c.padding, c.out, c.data_root) = (None, None, None, None);
        c.backend = String::new();
        c.offline = false;
        Ok(toml::from_str(&c.to_toml())?)
    };
    // A stage folder of an earlier version may hold its paths as typed (relative to the
    // directory the cascade ran in): compared as absolute paths, as the given ones are.
    let mut recorded = TrainConfig::from_run_folder(&dir.join("config.toml"), "--resume")?;
    recorded.make_paths_absolute().map_err(|e| anyhow::anyhow!("{}: cannot make the paths absolute: {e}", dir.display()))?;
    let recorded = normalised(&recorded)?;
    let given = normalised(config)?;
    let keys: std::collections::BTreeSet<&String> = recorded.keys().chain(given.keys()).collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| recorded.get(*k) != given.get(*k))
        .map(|k| {
            let show = |v: Option<&toml::Value>| v.map_or("(unset)".to_string(), ToString::to_string);
            format!("{k}: {} there, {} now", show(recorded.get(k)), show(given.get(k)))
        })
        .collect();
    if !differ.is_empty() {
        anyhow::bail!(
            "--resume: {} was trained with other settings than this command gives stage {n} ({}): give the first run's \
             flags again, or --overwrite to start over",
            dir.display(),
            differ.join("; ")
        );
    }
    Ok(())
}

/// Trains both stages into `out/stage1` and `out/stage2` and writes `cascade.json`,
/// `cascade.md` and `cascade-predictions.csv` (`split,index,label,stage1_prob,stage2_prob`,
/// stage 2 on validation and test). Returns the `cascade.json` content. With `resume`, a
/// stage whose folder holds a finished run of the same settings is reused, one with a
/// checkpoint continued (derma-cascade `--resume`).
pub fn run(options: &CascadeOptions, out: &Path, device: &Device, backend_name: &str, resume: bool) -> anyhow::Result<Value> {
    let (c1, c2) = options.configs_for(resume)?;
    for (n, c) in [(1, &c1), (2, &c2)] {
        for w in c.warnings() {
            // Stage 1 stacks class weights and undersampling on purpose (a high-recall screener);
            // its recipe's undersample_ratio is no setting of the user's when --stage1 changes
            // the sampler.
            let recipe_ratio = w.contains("--undersample-ratio") && !options.stage1.contains_key("undersample_ratio");
            if n == 2 || !(w.contains("class weights") || recipe_ratio) {
                eprintln!("stage {n}: {w}");
            }
        }
    }
    // A fresh cascade resolves (downloads) both stages' weights before anything is removed; a
    // resumed one only for a stage it trains afresh (`stage`).
    let (w1, w2) = match resume {
        true => (None, None),
        false => (crate::pretrained::resolve(&c1.pretrained, c1.offline)?, crate::pretrained::resolve(&c2.pretrained, c2.offline)?),
    };
    let data = load_data(&c1)?;
    if !data.is_binary() {
        anyhow::bail!("derma-cascade needs a two-class task; the data has {} classes (use --positive-classes)", data.train.num_classes());
    }
    // Only now, with the weights and the data at hand, an earlier cascade's outputs go (a
    // bad flag above leaves them intact): a stage 2 this run skips, or a cascade.json beside
    // a new stage 1 if this run fails part-way, must not outlive it.
    if resume {
        // Both stages' settings before any work (stage 1 may take hours); nothing is removed:
        // the cascade files are rewritten at the end.
        for (n, c) in [(1, &c1), (2, &c2)] {
            let dir = out.join(format!("stage{n}"));
            if dir.join("config.toml").is_file() {
                check_stage_settings(n, c, &dir)?;
            }
        }
    } else {
        crate::report::remove_outputs(out, &["cascade.json", "cascade.md", "cascade-predictions.csv", "stage1", "stage2"])
            .map_err(|e| anyhow::anyhow!("--overwrite: {e}"))?;
    }
    let rule1: ThresholdRule = c1.threshold.parse().map_err(|e| anyhow::anyhow!("stage 1 --threshold: {e}"))?;

    println!("=== stage 1: screener ===");
    let stage1_dir = out.join("stage1");
    stage(1, &c1, &data, w1.as_deref(), &stage1_dir, resume, device, backend_name)?;
    let m1 = RunModel::load(&stage1_dir, device)?;
    let p1 = predict_all(&m1, &[&data.train, &data.val, &data.test], c1.batch_size, device);
    let labels: [Vec<usize>; 3] = [data.train.labels().to_vec(), data.val.labels().to_vec(), data.test.labels().to_vec()];
    let s1: [Vec<f64>; 3] = [p1[0].scores(), p1[1].scores(), p1[2].scores()];
    let t1 = pick(rule1, &labels[1], &s1[1])?;
    let flag_info = |k: usize| {
        let idx = flagged(&s1[k], t1);
        let (neg, pos) = class_count(&labels[k], &idx);
        json!({ "images": idx.len(), "of": labels[k].len(), "positives": pos, "negatives": neg })
    };
    let stage1_json = json!({
        "run": "stage1", "threshold_rule": rule1.to_string(), "threshold": t1,
        "flagged": { "train": flag_info(0), "val": flag_info(1), "test": flag_info(2) },
    });

    let plan = stage2_data([&labels[0], &labels[1], &labels[2]], [&s1[0], &s1[1], &s1[2]], t1);
    let (stage2_json, s2) = match &plan {
        Stage2Data::Skip(reason) => {
            eprintln!("warning: stage 2 skipped: {reason}");
            if resume {
                // A stage 2 of the interrupted cascade must not outlive this one's verdict.
                crate::report::remove_outputs(out, &["stage2"])?;
            }
            (json!({ "skipped": reason }), None)
        }
        Stage2Data::Train { train, val, test, test_is_all } => {
            println!(
                "\n=== stage 2: specialist on the {} training / {} validation images stage 1 flags (threshold {t1}) ===",
                train.len(),
                val.len()
            );
            if *test_is_all {
                println!("note: the flagged test images hold one class only; stage 2's run folder reports on the whole test set");
            }
            let sub = TaskData {
                train: data.train.subset(train),
                val: data.val.subset(val),
                test: data.test.subset(test),
                patients: subset(&data.patients, [train, val, test]),
                paths: subset(&data.paths, [train, val, test]),
            };
            let stage2_dir = out.join("stage2");
            stage(2, &c2, &sub, w2.as_deref(), &stage2_dir, resume, device, backend_name)?;
            let m2 = RunModel::load(&stage2_dir, device)?;
            let p2 = predict_all(&m2, &[&data.val, &data.test], c2.batch_size, device);
            let rule2: ThresholdRule = c2.threshold.parse().map_err(|e| anyhow::anyhow!("stage 2 --threshold: {e}"))?;
            let (neg, pos) = class_count(&labels[0], train);
            let j = json!({
                "run": "stage2", "threshold_rule": rule2.to_string(),
                "threshold": pick(rule2, &select_usize(&labels[1], val), &select(&p2[0].scores(), val))?,
                "train_images": train.len(), "train_positives": pos, "train_negatives": neg,
                "val_images": val.len(), "test_images": test.len(), "test_is_all": test_is_all,
            });
            (j, Some([p2[0].scores(), p2[1].scores()]))
        }
    };
    let scores = Scores { labels, s1, s2, t_train: t1 };
    let targets = options.recalls.iter().map(|&r| target_rows(r, &scores)).collect::<anyhow::Result<Vec<_>>>()?;
    let confusion = targets[0]["cascade"]["confusion_matrix"].clone();
    let report = json!({
        "classes": data.train.class_names(),
        "positive_class": data.train.class_names()[1],
        "stage1": stage1_json,
        "stage2": stage2_json,
        "targets": targets,
        "confusion_matrix": confusion,
        "confusion_matrix_layout": "rows: true [negative, positive]; columns: predicted [negative, positive]",
        "definitions": "per target r: stage-1 threshold = highest with validation recall >= r; cascade: stage-2 threshold = highest with recall >= r on the validation images stage 1 flags; cascade_end_to_end: stage-2 threshold = highest keeping the cascade's recall over all validation positives >= r; an image is positive iff both stages flag it; test metrics at those thresholds",
    });
    write_atomic(&out.join("cascade.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    write_atomic(&out.join("cascade.md"), cascade_md(&report).as_bytes())?;
    write_atomic(&out.join("cascade-predictions.csv"), predictions_csv(&scores).as_bytes())?;
    println!("\n{}", cascade_md(&report));
    println!("cascade folder: {}", out.display());
    Ok(report)
}

/// Default output folder: `runs/cascade-<unix time>`.
pub fn default_out() -> PathBuf {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    PathBuf::from("runs").join(format!("cascade-{stamp}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_parse_as_toml_or_strings() {
        assert_eq!(parse_assignment("gamma=2").unwrap(), ("gamma".into(), toml::Value::Integer(2)));
        assert_eq!(parse_assignment("alpha = 0.5").unwrap(), ("alpha".into(), toml::Value::Float(0.5)));
        assert_eq!(parse_assignment("threshold=recall:0.95").unwrap().1, toml::Value::String("recall:0.95".into()));
        assert!(parse_assignment("gamma").is_err());
    }

    #[test]
    fn a_target_below_stage2s_training_threshold_is_noted() {
        // Validation: positives score 0.3..0.9 under stage 1, so recall 0.99 needs t1 = 0.3.
        let labels = [vec![0, 1], vec![0, 0, 1, 1, 1, 1], vec![0, 1]];
        let s1 = [vec![0.1, 0.9], vec![0.2, 0.6, 0.3, 0.5, 0.8, 0.9], vec![0.4, 0.7]];
        let s2 = Some([vec![0.1, 0.7, 0.6, 0.8, 0.9, 0.95], vec![0.3, 0.9]]);
        let note = |t_train: f64| {
            let sc = Scores { labels: labels.clone(), s1: s1.clone(), s2: s2.clone(), t_train };
            let rows = target_rows(0.99, &sc).unwrap();
            assert_eq!(rows["cascade"]["stage1_threshold"].as_f64(), Some(0.3));
            (rows["cascade"]["note"].as_str().map(str::to_string), rows["cascade_end_to_end"]["note"].as_str().unwrap().to_string())
        };
        // Stage 2 trained behind 0.5 (e.g. --stage1 threshold=recall:0.75): 0.3 lets in more.
        let (cascade, e2e) = note(0.5);
        assert!(cascade.as_deref().is_some_and(|n| n.contains("(0.3000) is below") && n.contains("(0.5000)")), "{cascade:?}");
        assert!(e2e.contains("outside its training population"), "{e2e}");
        // Trained behind the same threshold: nothing to say.
        let (cascade, e2e) = note(0.3);
        assert_eq!(cascade, None);
        assert!(!e2e.contains("outside"), "{e2e}");
    }

    /// Thresholds that read alike at 4 decimals get the digits that tell them apart (a weak
    /// stage 1's 0.612483 and 0.612489 both printed `0.6125`, with different counts beside
    /// them): every threshold of the report then gets 5 decimals; a report without such a
    /// pair keeps 4.
    #[test]
    fn thresholds_that_would_read_alike_get_more_digits() {
        let report = json!({ "targets": [
            { "stage1": { "threshold": 0.612483 }, "cascade": { "stage1_threshold": 0.612489, "stage2_threshold": 0.25 } },
        ]});
        let fmt = threshold_formatter(&report);
        let t = &report["targets"][0];
        assert_eq!(fmt(&t["stage1"]["threshold"]), "0.61248");
        assert_eq!(fmt(&t["cascade"]["stage1_threshold"]), "0.61249");
        assert_eq!(fmt(&t["cascade"]["stage2_threshold"]), "0.25000");
        assert_eq!(fmt(&Value::Null), "—");
        let fmt = threshold_formatter(&json!({ "a": { "threshold": 0.612483 }, "b": { "threshold": 0.25 } }));
        assert_eq!(fmt(&json!(0.612483)), "0.6125");
    }

    /// cascade.md's rate cells: the rate with its interval, or `(n/a)` where the interval has no
    /// denominator (nothing flagged: no precision) — the cell lost its interval silently.
    #[test]
    fn rate_cells_carry_their_interval_or_say_it_is_missing() {
        let flagged = metrics_json(&BinaryMetrics::from_counts(0.5, BinaryCounts { tp: 3, fp: 1, tn: 5, fn_: 1 }));
        let none = metrics_json(&BinaryMetrics::from_counts(0.9, BinaryCounts { tp: 0, fp: 0, tn: 6, fn_: 4 }));
        let row = |m: &Value| json!({ "val": m, "test": m, "stage1_threshold": 0.5, "stage2_threshold": 0.9 });
        let report = json!({
            "stage1": { "threshold_rule": "recall:0.99", "threshold": 0.5 },
            "stage2": { "skipped": "test" },
            "targets": [{ "recall": 0.99, "stage1": row(&flagged), "cascade": row(&none), "cascade_end_to_end": row(&none) }],
        });
        let md = cascade_md(&report);
        // 3 of 4 flagged are positive: Wilson 0.301–0.954 (scipy 1.17
        // `binomtest(k, n).proportion_ci(0.95, method="wilson")`; 0 of 4: 0.000–0.490, 6 of 6: 0.610–1.000).
        assert!(md.contains("| 0.7500 (0.301–0.954) |"), "{md}");
        assert!(md.contains("| 0.0000 (n/a) | 0.0000 (0.000–0.490) | 1.0000 (0.610–1.000) |"), "{md}");
    }

    #[test]
    fn base_settings_a_recipe_replaces_are_named() {
        let mut base: toml::Table = toml::from_str(&TrainConfig::default().to_toml()).unwrap();
        base.insert("gamma".into(), toml::Value::Float(4.0)); // stage 2's recipe: gamma 1
        base.insert("threshold".into(), toml::Value::String("recall:0.95".into())); // both recipes
        base.insert("lr".into(), toml::Value::Float(0.01)); // no recipe: used as given
        let stage2: toml::Table = toml::from_str("threshold = \"youden\"").unwrap();
        let options = CascadeOptions { base, stage1: toml::Table::new(), stage2, recalls: vec![0.99] };
        let w = options.ignored_settings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().any(|m| m.contains("gamma = 4.0") && m.contains("stage 2 uses gamma = 1.0") && m.contains("one stage")), "{w:?}");
        assert!(
            w.iter().any(|m| m.contains("threshold = \"recall:0.95\"")
                && m.contains("no effect")
                && m.contains("stage 1 uses threshold = \"recall:0.99\"")
                && m.contains("stage 2 uses threshold = \"youden\"")),
            "{w:?}"
        );
        // The defaults alone warn about nothing.
        let plain = CascadeOptions { base: toml::from_str(&TrainConfig::default().to_toml()).unwrap(), ..options };
        assert!(plain.ignored_settings().is_empty(), "{:?}", plain.ignored_settings());
    }

    #[test]
    fn the_positive_class_must_be_named_even_for_a_two_class_medmnist_set() {
        let options = |edit: &str| {
            let mut base: toml::Table = toml::from_str(&TrainConfig::default().to_toml()).unwrap();
            base.extend(toml::from_str::<toml::Table>(edit).unwrap());
            CascadeOptions { base, stage1: toml::Table::new(), stage2: toml::Table::new(), recalls: vec![0.99] }
        };
        // breastmnist's label 1 is `normal-benign`: screening for it by default would be wrong.
        let e = options("dataset = \"breastmnist\"").configs().unwrap_err().to_string();
        assert!(e.contains("--positive-classes") && e.contains("malignant, normal-benign"), "{e}");
        let e = options("").configs().unwrap_err().to_string();
        assert!(e.contains("--positive-classes") && e.contains("mel,bcc,akiec"), "{e}");
        options("dataset = \"breastmnist\"\npositive_classes = [\"malignant\"]").configs().unwrap();
        // A stage's backend would be recorded but not used.
        let mut per_stage = options("positive_classes = [\"mel\"]");
        per_stage.stage2 = toml::from_str("backend = \"cpu\"").unwrap();
        assert!(per_stage.configs().unwrap_err().to_string().contains("--stage2 backend"));
        // A resumed cascade does not need a weight file that did not come along (a stage it
        // trains afresh asks for it then); a new one does.
        let gone = options("positive_classes = [\"mel\"]\npretrained = \"/nonexistent/w.safetensors\"");
        assert!(gone.configs().unwrap_err().to_string().contains("--pretrained"));
        gone.configs_for(true).unwrap();
    }

    #[test]
    fn stage2_is_skipped_when_stage1_flags_one_class() {
        let l = [0usize, 0, 1, 1];
        // Only the two positives reach 0.5 on train: nothing negative left to learn from.
        let train = [0.1, 0.2, 0.8, 0.9];
        let val = [0.6, 0.2, 0.8, 0.9];
        match stage2_data([&l, &l, &l], [&train, &val, &val], 0.5) {
            Stage2Data::Skip(reason) => assert!(reason.contains("training") && reason.contains("0 negative"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Nothing flagged at all.
        assert!(matches!(stage2_data([&l, &l, &l], [&val, &val, &val], 0.95), Stage2Data::Skip(_)));
        // Both classes on train and val; the flagged test images are all positive → test = all.
        let test = [0.1, 0.2, 0.8, 0.9];
        assert_eq!(
            stage2_data([&l, &l, &l], [&val, &val, &test], 0.5),
            Stage2Data::Train { train: vec![0, 2, 3], val: vec![0, 2, 3], test: vec![0, 1, 2, 3], test_is_all: true }
        );
    }

    #[test]
    fn cascade_needs_both_stages() {
        let labels = [1usize, 1, 0, 0];
        let c = cascade_counts(&labels, &[0.9, 0.9, 0.9, 0.1], &[0.9, 0.1, 0.2, 0.9], 0.5, 0.5);
        assert_eq!((c.tp, c.fn_, c.fp, c.tn), (1, 1, 0, 2));
    }
}
