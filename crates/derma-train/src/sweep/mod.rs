//! Hyper-parameter sweeps scored by cross-validation (the `derma-sweep` binary).
//!
//! A **plan** (TOML) names a base configuration and a list of phases of trials:
//!
//! ```toml
//! name = "combined-loss"          # default: the plan file's stem
//! config = "../combined-loss.toml" # optional, relative to the plan file
//! folds = 5                       # k of the k-fold cross-validation
//! metric = "auc"                  # auc | bal_acc | acc | ap | f2 | sens@spec
//! seed = 0                        # seed of the fold assignment (training: config key `seed`)
//! inner_val = 0.15                # inner validation fraction of each fold's training part
//!
//! [base]                          # config keys over `config` (over the built-in defaults)
//! positive_classes = ["mel", "bcc", "akiec"]
//!
//! [[phase]]
//! name = "weights"
//! trials = [{ bce_weight = 0.5, focal_weight = 0.5 }, { bce_weight = 0.2, focal_weight = 0.8 }]
//!
//! [[phase]]
//! name = "gamma"
//! grid = { gamma = [1.0, 2.0] }   # cartesian product over the listed keys
//! ```
//!
//! The configuration of a trial is built like `derma-train --config`: the built-in defaults,
//! then the keys of `config`, then `[base]`, then the winning trial of every earlier phase (in
//! phase order), then the trial's own keys, then the command-line overrides (`--epochs`,
//! `--backend`); each layer replaces whole top-level keys. Every trial's configuration is
//! built and [`TrainConfig::validate`]d before anything trains (for phases after the first,
//! with every possible combination of earlier winners — a trial of each earlier phase, or
//! nothing for a phase after the first whose best does not beat the winner so far — up to
//! [`MAX_COMBINATIONS`]).
//!
//! **Scoring.** The training and validation splits are pooled and cut into `folds` stratified
//! folds (patient-grouped when the data has patient ids; see [`crate::folds`]); the test split
//! is never touched. For fold k, [`fit`] trains on the other folds minus an inner validation
//! split (best epoch and threshold), and the held-out fold k is `fit`'s test set: the fold's
//! score is `metric` on it (`sens@spec`: 0 when no threshold met the specificity floor on the
//! inner validation split, as `derma-train` scores such an epoch; a fold whose training
//! diverged scores NaN, is named in `results.md`, and the sweep goes on). A trial's score is
//! the mean and the sample standard deviation
//! over folds. The best trial of a phase is the one with the highest mean (ties: the first).
//! Phases are coordinate ascent from the current best: a phase's best trial fixes its keys
//! for the later phases only if its mean beats the best trial so far (the previous phases'
//! winner, evaluated on the same folds); otherwise the earlier winner stays and the phase
//! fixes nothing (e.g. phase 2 tries γ ∈ {1, 2, 4, 5} while phase 1 ran γ = 3: if none beats
//! it, γ = 3 is kept).
//!
//! **Output** (`--out`): `trial-NNN-HHHHHHHH/fold-K/` run folders (trial number and a hash of
//! its parameters; each with a `score.json` once finished), `results.csv`, `results.md`,
//! `folds.csv` (which pooled image is in which part of which fold, with its patient;
//! `folds-2.csv`, ... for trials whose data keys load other data, with a note in
//! `results.md`), `data.json` (a hash of each pooled data set and its folds: a resumed sweep
//! whose data changed is refused), `sweep.json` (the settings the folder belongs to) and, when
//! every phase is complete, `best.toml` (the winning configuration, usable with
//! `derma-train --config`). Results are rewritten atomically after every trial.
//!
//! **Resume.** A trial whose `(phase, params)` row is already in `results.csv` is skipped while
//! every one of its folds' `score.json` (in a trial folder with its parameter hash, whatever
//! its number; its own number's first) holds the same full configuration and metric — a
//! binary with other built-in defaults trains it again — and its scores are read from those
//! `score.json` files, not from the row; a fold whose `score.json` holds the same
//! configuration and metric is not trained again (an interrupted trial restarts at its first
//! unfinished fold). Phase winners are recomputed from the rows. A folder made with other
//! settings (folds, metric, seed, inner validation fraction, base configuration — the plan's
//! `[base]` and its `config = FILE` contents — and overrides) is refused (`sweep.json`).

mod plan;
mod results;

pub use plan::{MAX_COMBINATIONS, Phase, Plan, describe, params_string, sweep_metrics};
pub use results::{TrialRow, mean_std, parse_results_csv, results_csv};
use results::{Scheduled, best_of, fmt_score, results_md};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::prelude::Device;
use derma_data::ImageDataset;
use serde_json::json;

use crate::config::TrainConfig;
use crate::select::SelectMetric;
use crate::folds::{self, Fold};
use crate::report::{csv_field, write_atomic};
use crate::dataset::{FNV_OFFSET, TaskData, data_fingerprint, fnv1a, fnv1a_images, load_data};
use crate::train::{Diverged, RunOutcome, fit};

/// A fold's score: `metric` on its held-out images, at the threshold chosen on the fold's inner
/// validation split (`sens@spec`: 0 when no threshold met the floor there, as `derma-train`
/// scores such an epoch; see [`SelectMetric::score`]).
pub fn fold_score(metric: SelectMetric, outcome: &RunOutcome) -> f64 {
    metric.score(&outcome.test, outcome.report["threshold"]["met"].as_bool() != Some(false))
}

/// What a sweep did.
#[derive(Debug, Clone)]
pub struct SweepSummary {
    /// Rows of `results.csv`, in plan order.
    pub rows: Vec<TrialRow>,
    /// The keys each phase fixed for the later ones (empty: its best trial did not beat the
    /// earlier winner).
    pub winners: Vec<toml::Table>,
    /// The best trial overall (the final winner) and its effective parameters.
    pub best: Option<(TrialRow, toml::Table)>,
    /// Folds trained by this call.
    pub trained_folds: usize,
    /// Folds reused from an earlier call's `score.json`.
    pub reused_folds: usize,
    /// Trials skipped because `results.csv` had them.
    pub skipped_trials: usize,
}

/// Train and validation pooled, with their patients, and the folds cut from them.
struct Pool {
    fingerprint: String,
    images: ImageDataset,
    groups: Option<Vec<String>>,
    /// Image-file datasets: each pooled image's file (for the folds' `splits.csv`).
    paths: Option<Vec<std::path::PathBuf>>,
    folds: Vec<Fold>,
}

/// The results.md note of a trial whose data (and so folds) is not the sweep's first, whose
/// folds are in `folds_file`; `None` for `folds.csv`.
fn other_data_note(number: usize, shown: &str, folds_file: &str) -> Option<String> {
    (folds_file != "folds.csv").then(|| {
        format!(
            "Trial {number:03} ({shown}) loads other data than the sweep's first data (its data keys differ, e.g. \
             positive_classes, size or, for image files, seed): its folds are in {folds_file}, not folds.csv, so its \
             score is not on the same folds as those of the trials on folds.csv."
        )
    })
}

/// The results.md note of a diverged fold (0-based `k`).
fn diverged_note(number: usize, shown: &str, k: usize, why: &str) -> String {
    format!("Trial {number:03} ({shown}) fold {}: {why}; the fold scores NaN.", k + 1)
}

/// `a` followed by `b` (copies the pixels; class names and image shape must agree).
pub fn concat(a: &ImageDataset, b: &ImageDataset) -> anyhow::Result<ImageDataset> {
    if a.image_shape() != b.image_shape() || a.class_names() != b.class_names() {
        anyhow::bail!("cannot pool splits of different image shapes or classes");
    }
    let [h, w, c] = a.image_shape();
    let mut pixels = Vec::with_capacity((a.len() + b.len()) * h * w * c);
    let mut labels = Vec::with_capacity(a.len() + b.len());
    for d in [a, b] {
        for i in 0..d.len() {
            pixels.extend_from_slice(d.image(i));
            labels.push(d.label(i));
        }
    }
    ImageDataset::new(pixels, labels, [h, w, c], a.class_names().to_vec()).map_err(|e| anyhow::anyhow!(e))
}

fn load_pool(plan: &Plan, config: &TrainConfig) -> anyhow::Result<Pool> {
    let data = load_data(config)?;
    if plan.metric.needs_binary() && !data.is_binary() {
        anyhow::bail!("metric {} needs a two-class task; the data has {} classes (set positive_classes)", plan.metric, data.train.num_classes());
    }
    let images = concat(&data.train, &data.val)?;
    let groups = data.patients.as_ref().map(|[tr, va, _]| [tr.clone(), va.clone()].concat());
    let paths = data.paths.as_ref().map(|[tr, va, _]| [tr.clone(), va.clone()].concat());
    let folds = folds::cross_validation(images.labels(), images.class_names(), groups.as_deref(), plan.folds, plan.inner_val, plan.seed)
        .map_err(|e| anyhow::anyhow!("cross-validation of {} train+val images: {e}", images.len()))?;
    let sizes: Vec<String> = folds.iter().map(|f| format!("{}/{}/{}", f.train.len(), f.val.len(), f.test.len())).collect();
    println!(
        "cross-validation: {} train+val images, {} folds{} (train/inner-val/held-out: {})",
        images.len(),
        plan.folds,
        if groups.is_some() { ", patient-grouped" } else { "" },
        sizes.join(", ")
    );
    Ok(Pool { fingerprint: data_fingerprint(config), images, groups, paths, folds })
}

/// `folds.csv`: `fold,part,index,label,patient` — every pooled image (train images first,
/// then validation) in each fold's `train`, `val` (inner validation) or `test` (held-out)
/// part, for auditing the splits.
pub fn folds_csv(folds: &[Fold], labels: &[usize], groups: Option<&[String]>) -> String {
    let mut s = String::from("fold,part,index,label,patient\n");
    for (k, f) in folds.iter().enumerate() {
        for (part, idx) in [("train", &f.train), ("val", &f.val), ("test", &f.test)] {
            for &i in idx {
                let g = groups.map_or(String::new(), |g| csv_field(&g[i]));
                let _ = writeln!(s, "{},{part},{i},{},{g}", k + 1, labels[i]);
            }
        }
    }
    s
}

/// A finished fold's record (`fold-K/score.json`): its score and, for a fold whose training
/// diverged, why it is NaN. `None` (train it again) for another configuration or metric, or
/// a record without a readable score.
fn read_fold_score(dir: &Path, config_toml: &str, metric: SelectMetric) -> Option<(f64, Option<String>)> {
    let v = score_json(dir)?;
    if v["config"].as_str() != Some(config_toml) || v["metric"].as_str() != Some(&metric.to_string()) {
        return None;
    }
    // `score_text` is the exact value (shortest round-trip form); `score` is for people.
    let score = v["score_text"].as_str()?.parse().ok()?;
    Some((score, v["diverged"].as_str().map(str::to_string)))
}

/// The trial folder of `out` whose every fold (1..=`folds`) was recorded with `config_toml`
/// and `metric`, among those holding the parameters `params_key` (whatever their trial
/// number: numbers shift when trials are inserted into a plan; trial `number`'s own folder
/// first, then in name order); `None` if there is none.
fn folds_recorded(out: &Path, number: usize, params_key: &str, folds: usize, config_toml: &str, metric: SelectMetric) -> Option<PathBuf> {
    let own = out.join(trial_dir(number, params_key));
    let suffix = trial_dir(0, params_key).split_off("trial-000".len());
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(out)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("trial-") && n.ends_with(&suffix)))
        .map(|e| e.path())
        .collect();
    candidates.sort_by_key(|dir| (*dir != own, dir.clone()));
    candidates
        .into_iter()
        .find(|dir| (1..=folds).all(|k| read_fold_score(&dir.join(format!("fold-{k}")), config_toml, metric).is_some()))
}

/// A fold folder's `score.json`, if readable.
fn score_json(dir: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("score.json")).ok()?).ok()
}

/// A trial's run folder: `trial-NNN-HHHHHHHH`, the trial number and a hash of its effective
/// parameters, so a trial inserted into an edited plan never trains into (and overwrites)
/// the folder of the trial that had its number before.
pub fn trial_dir(number: usize, params_key: &str) -> String {
    format!("trial-{number:03}-{:08x}", fnv1a(FNV_OFFSET, params_key.as_bytes()) as u32)
}

/// Hash of the pooled images, labels and patients and of the fold assignment: resuming a
/// sweep whose data file was regenerated at the same path must not mix old and new scores.
fn pool_hash(images: &ImageDataset, groups: Option<&[String]>, folds_text: &str) -> String {
    let mut h = fnv1a_images(FNV_OFFSET, images);
    for g in groups.unwrap_or_default() {
        h = fnv1a(h, g.as_bytes());
        h = fnv1a(h, &[0]);
    }
    format!("{:016x}", fnv1a(h, folds_text.as_bytes()))
}

/// Runs (or resumes) the sweep of `plan` into `out`: see the module documentation.
pub fn run(plan: &Plan, out: &Path, device: &Device, backend_name: &str) -> anyhow::Result<SweepSummary> {
    plan.validate()?;
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("--out {}: cannot create it: {e}", out.display()))?;
    let settings_path = out.join("sweep.json");
    let settings = plan.settings();
    if let Ok(text) = std::fs::read_to_string(&settings_path) {
        let old: serde_json::Value = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", settings_path.display()))?;
        let differ: Vec<String> = settings
            .as_object()
            .expect("object")
            .iter()
            .filter(|(k, v)| old.get(k.as_str()) != Some(*v))
            .map(|(k, v)| format!("{k} (folder: {}, now: {v})", old.get(k.as_str()).map_or("absent".into(), |o| o.to_string())))
            .collect();
        if !differ.is_empty() {
            anyhow::bail!(
                "--out {} holds a sweep made with other settings — {}; resume with the same plan and flags, or choose another --out",
                out.display(),
                differ.join("; ")
            );
        }
    } else {
        write_atomic(&settings_path, serde_json::to_string_pretty(&settings)?.as_bytes())?;
    }
    // The pooled data of each data configuration (keys of `data_fingerprint`) met so far: its
    // hash and its folds file.
    let data_path = out.join("data.json");
    let mut data: serde_json::Value = match std::fs::read_to_string(&data_path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", data_path.display()))?,
        Err(_) => json!({}),
    };
    if !data.is_object() {
        anyhow::bail!("{}: expected a JSON object", data_path.display());
    }
    let csv_path = out.join("results.csv");
    let recorded = match std::fs::read_to_string(&csv_path) {
        Ok(text) => parse_results_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", csv_path.display()))?,
        Err(_) => Vec::new(),
    };
    let metric_name = plan.metric.to_string();

    let mut rows: Vec<TrialRow> = Vec::new();
    let mut summary = SweepSummary { rows: Vec::new(), winners: Vec::new(), best: None, trained_folds: 0, reused_folds: 0, skipped_trials: 0 };
    let mut pool: Option<Pool> = None;
    let mut fixed = toml::Table::new();
    // File datasets always carry patient ids (grouped folds); MedMNIST images are independent.
    let grouped = plan.config(&toml::Table::new()).map_err(|e| anyhow::anyhow!(e))?.is_file_dataset();
    let schedule_of = |fixed_upto: &[toml::Table]| -> Vec<Scheduled> {
        let mut sched = Vec::new();
        for (p, phase) in plan.phases.iter().enumerate() {
            for (t, own) in phase.trials.iter().enumerate() {
                let params = (p <= fixed_upto.len()).then(|| {
                    let f = fixed_upto[..p].iter().fold(toml::Table::new(), |acc, w| Plan::params(&acc, w));
                    Plan::params(&f, own)
                });
                sched.push(Scheduled { number: plan.trial_number(p, t), phase, own, params });
            }
        }
        sched
    };
    let mut notes: Vec<String> = Vec::new();
    let mut fold_notes: Vec<(usize, String)> = Vec::new();
    // Mid-sweep, the recorded rows this call has not reached yet are kept in results.csv
    // (after the reached ones), so an interruption of a resumed sweep loses none of them; the
    // final write drops those that match no trial of the plan.
    let write_results = |rows: &[TrialRow], winners: &[toml::Table], notes: &[String], fold_notes: &[(usize, String)], last: bool| -> anyhow::Result<()> {
        let mut all = rows.to_vec();
        if !last {
            all.extend(recorded.iter().filter(|r| !rows.iter().any(|x| x.phase == r.phase && x.params == r.params)).cloned());
        }
        write_atomic(&csv_path, results_csv(&all, plan.folds).as_bytes())?;
        let md = results_md(plan, &schedule_of(winners), rows, notes, fold_notes, grouped);
        write_atomic(&out.join("results.md"), md.as_bytes())
    };

    for (p, phase) in plan.phases.iter().enumerate() {
        println!("\n=== phase {}/{}: {} ({} trials) ===", p + 1, plan.phases.len(), phase.name, phase.trials.len());
        let mut phase_rows: Vec<(usize, TrialRow)> = Vec::new();
        for (t, own) in phase.trials.iter().enumerate() {
            let number = plan.trial_number(p, t);
            let params = Plan::params(&fixed, own);
            let key = params_string(&params);
            let shown = if key.is_empty() { "(base)".to_string() } else { key.clone() };
            // Its own number's row first: two trials of a phase may train one configuration.
            let row = recorded
                .iter()
                .filter(|r| r.phase == phase.name && r.params == key && r.metric == metric_name && r.folds.len() == plan.folds)
                .min_by_key(|r| r.trial != number);
            // A recorded row is reused only while its folds' records hold this very
            // configuration: a rebuilt binary with other built-in defaults changes the
            // configuration without changing the trial's parameters, and its old scores must
            // not be ranked beside new ones. (Other plan settings are refused above.)
            let recorded_config = row.and_then(|_| plan.config(&params).ok());
            let recorded_toml = recorded_config.as_ref().map(TrainConfig::to_toml);
            let folder = recorded_toml.as_ref().and_then(|c| folds_recorded(out, number, &key, plan.folds, c, plan.metric));
            if row.is_some() && folder.is_none() {
                println!(
                    "trial {number:03} [{}] {shown}: in results.csv, but its fold records (fold-K/score.json) are missing or hold \
                     another configuration (changed defaults or config file): training it again",
                    phase.name
                );
            }
            if let (Some(_), Some(folder), Some(config_toml)) = (row, folder, &recorded_toml) {
                // The scores of the records that allowed the skip (the row may hold those of
                // another configuration, e.g. written by a binary with other defaults, or
                // killed between a retrained trial's last fold and its row).
                let scores: Vec<f64> = (1..=plan.folds)
                    .map(|k| read_fold_score(&folder.join(format!("fold-{k}")), config_toml, plan.metric).map_or(f64::NAN, |(s, _)| s))
                    .collect();
                let (mean, std) = mean_std(&scores);
                println!(
                    "trial {number:03} [{}] {shown}: skipping, already in results.csv ({} {} ± {})",
                    phase.name,
                    metric_name,
                    fmt_score(mean),
                    fmt_score(std)
                );
                summary.skipped_trials += 1;
                // Its diverged folds keep their note in results.md (their score.json says why).
                for k in 0..plan.folds {
                    let dir = folder.join(format!("fold-{}", k + 1));
                    let why = score_json(&dir).and_then(|v| v["diverged"].as_str().map(str::to_string));
                    if let Some(why) = why {
                        fold_notes.push((p, diverged_note(number, &shown, k, &why)));
                    }
                }
                // As is its note of being on other folds (data.json names its folds file).
                let folds_file = recorded_config.as_ref().and_then(|c| data[&data_fingerprint(c)]["folds"].as_str().map(str::to_string));
                if let Some(note) = folds_file.and_then(|f| other_data_note(number, &shown, &f)) {
                    fold_notes.push((p, note));
                }
                let row = TrialRow { trial: number, phase: phase.name.clone(), params: key, metric: metric_name.clone(), mean, std, folds: scores };
                rows.push(row.clone());
                phase_rows.push((t, row));
                continue;
            }
            let config = plan.config(&params).map_err(|e| anyhow::anyhow!("trial {number:03}: {e}"))?;
            for w in config.warnings() {
                eprintln!("trial {number:03}: {w}");
            }
            let fp = data_fingerprint(&config);
            if pool.as_ref().is_none_or(|pl| pl.fingerprint != fp) {
                let pl = load_pool(plan, &config).map_err(|e| anyhow::anyhow!("trial {number:03} ({shown}): {e:#}"))?;
                let text = folds_csv(&pl.folds, pl.images.labels(), pl.groups.as_deref());
                let hash = pool_hash(&pl.images, pl.groups.as_deref(), &text);
                let entries = data.as_object_mut().expect("data.json is an object");
                let folds_file = match entries.get(&fp) {
                    Some(old) if old["hash"].as_str() != Some(&hash) => anyhow::bail!(
                        "--out {}: the data of this sweep changed since it started (images, labels, patients or folds of {} differ \
                         from data.json): its earlier scores were made on other data; choose another --out",
                        out.display(),
                        old["folds"].as_str().unwrap_or("folds.csv")
                    ),
                    Some(old) => old["folds"].as_str().unwrap_or("folds.csv").to_string(),
                    None => {
                        let name = if entries.is_empty() { "folds.csv".to_string() } else { format!("folds-{}.csv", entries.len() + 1) };
                        entries.insert(fp.clone(), json!({ "hash": hash, "folds": name, "images": pl.images.len(), "keys": fp }));
                        write_atomic(&data_path, serde_json::to_string_pretty(&data)?.as_bytes())?;
                        name
                    }
                };
                write_atomic(&out.join(&folds_file), text.as_bytes())?;
                pool = Some(pl);
            }
            // Every trial on other data than the first says so (skipped ones too, above).
            if let Some(note) = data[&fp]["folds"].as_str().and_then(|f| other_data_note(number, &shown, f)) {
                eprintln!("note: {note}");
                fold_notes.push((p, note));
            }
            let pl = pool.as_ref().expect("loaded");
            let weights = crate::pretrained::resolve(&config.pretrained, config.offline)
                .map_err(|e| anyhow::anyhow!("trial {number:03} ({shown}): {e:#}"))?;
            let config_toml = config.to_toml();
            println!("\ntrial {number:03} [{}] {shown}", phase.name);
            let mut scores = Vec::with_capacity(plan.folds);
            for (k, fold) in pl.folds.iter().enumerate() {
                let dir = out.join(trial_dir(number, &key)).join(format!("fold-{}", k + 1));
                let diverged_note = |why: &str| diverged_note(number, &shown, k, why);
                if let Some((score, diverged)) = read_fold_score(&dir, &config_toml, plan.metric) {
                    println!("trial {number:03} fold {}/{}: reusing the finished fold ({metric_name} {})", k + 1, plan.folds, fmt_score(score));
                    if let Some(why) = diverged {
                        fold_notes.push((p, diverged_note(&why)));
                    }
                    summary.reused_folds += 1;
                    scores.push(score);
                    continue;
                }
                println!("--- trial {number:03} fold {}/{} ---", k + 1, plan.folds);
                let sub = |idx: &[usize]| pl.images.subset(idx);
                let groups = |idx: &[usize]| pl.groups.as_ref().map(|g| idx.iter().map(|&i| g[i].clone()).collect::<Vec<_>>());
                let data = TaskData {
                    train: sub(&fold.train),
                    val: sub(&fold.val),
                    test: sub(&fold.test),
                    patients: pl.groups.as_ref().map(|_| {
                        [groups(&fold.train).unwrap_or_default(), groups(&fold.val).unwrap_or_default(), groups(&fold.test).unwrap_or_default()]
                    }),
                    // Image files: the fold's run folder gets splits.csv (train / inner val /
                    // held-out, with each image's file), as a plain run on image files does.
                    paths: pl.paths.as_ref().map(|p| {
                        let files = |idx: &[usize]| idx.iter().map(|&i| p[i].clone()).collect::<Vec<_>>();
                        [files(&fold.train), files(&fold.val), files(&fold.test)]
                    }),
                };
                // A diverging trial (e.g. too high a learning rate) scores NaN and ranks last;
                // it must not end the sweep, nor stop every resume at the same fold.
                let (score, best_epoch, diverged) = match fit(&config, &data, weights.as_deref(), device, backend_name, &dir) {
                    Ok(outcome) => (fold_score(plan.metric, &outcome), Some(outcome.best_epoch), None),
                    Err(e) => match e.downcast_ref::<Diverged>() {
                        Some(d) => {
                            let note = diverged_note(&d.to_string());
                            eprintln!("{note}");
                            fold_notes.push((p, note));
                            (f64::NAN, None, Some(d.to_string()))
                        }
                        None => return Err(anyhow::anyhow!("trial {number:03} ({shown}) fold {}: {e:#}", k + 1)),
                    },
                };
                let record = json!({
                    "metric": metric_name,
                    "score": if score.is_finite() { json!(score) } else { serde_json::Value::Null },
                    "score_text": score.to_string(),
                    "best_epoch": best_epoch,
                    "diverged": diverged,
                    "held_out_images": fold.test.len(),
                    "config": config_toml,
                });
                write_atomic(&dir.join("score.json"), serde_json::to_string_pretty(&record)?.as_bytes())?;
                println!("trial {number:03} fold {}/{}: {metric_name} {}", k + 1, plan.folds, fmt_score(score));
                summary.trained_folds += 1;
                scores.push(score);
            }
            let (mean, std) = mean_std(&scores);
            println!("trial {number:03} [{}] {shown}: {metric_name} {} ± {}", phase.name, fmt_score(mean), fmt_score(std));
            let row = TrialRow { trial: number, phase: phase.name.clone(), params: key, metric: metric_name.clone(), mean, std, folds: scores };
            rows.push(row.clone());
            phase_rows.push((t, row));
            write_results(&rows, &summary.winners, &notes, &fold_notes, false)?;
        }
        let best = best_of(phase_rows.iter().map(|(_, r)| r)).expect("a phase has trials");
        let (t, _) = phase_rows.iter().find(|(_, r)| std::ptr::eq(r, best)).expect("found");
        let beats = |r: &TrialRow, inc: &TrialRow| (inc.mean.is_nan() && !r.mean.is_nan()) || r.mean > inc.mean;
        let note = match &summary.best {
            Some((inc, _)) if !beats(best, inc) => {
                summary.winners.push(toml::Table::new());
                format!(
                    "Phase `{}`: its best, trial {:03} ({} {}), does not beat trial {:03} ({} {}): that one stays, nothing is fixed.",
                    phase.name,
                    best.trial,
                    metric_name,
                    fmt_score(best.mean),
                    inc.trial,
                    metric_name,
                    fmt_score(inc.mean)
                )
            }
            _ => {
                summary.winners.push(phase.trials[*t].clone());
                fixed = Plan::params(&fixed, &phase.trials[*t]);
                summary.best = Some((best.clone(), fixed.clone()));
                format!(
                    "Phase `{}` winner: trial {:03} ({} {} ± {}), fixing {}.",
                    phase.name,
                    best.trial,
                    metric_name,
                    fmt_score(best.mean),
                    fmt_score(best.std),
                    params_string(&phase.trials[*t]).replace(';', "; ")
                )
            }
        };
        println!("{note}");
        notes.push(note);
    }
    let stale = recorded.iter().filter(|r| !rows.iter().any(|x| x.phase == r.phase && x.params == r.params)).count();
    if stale > 0 {
        println!("note: {stale} row(s) of the old results.csv match no trial of the plan any more and were dropped");
    }
    write_results(&rows, &summary.winners, &notes, &fold_notes, true)?;
    let best_config = plan.config(&fixed).map_err(|e| anyhow::anyhow!(e))?;
    let mut best_toml = format!(
        "# derma-sweep `{}`: the base configuration with the winning parameters ({}).\n# derma-train --config {}\n",
        plan.name,
        params_string(&fixed),
        out.join("best.toml").display()
    );
    best_toml.push_str(&best_config.to_toml());
    write_atomic(&out.join("best.toml"), best_toml.as_bytes())?;
    println!("\nbest parameters: {}\nresults: {} and {}; best configuration: {}", params_string(&fixed), csv_path.display(), out.join("results.md").display(), out.join("best.toml").display());
    summary.rows = rows;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_score_reads_whether_the_floor_was_met() {
        use crate::evaluate::SplitMetrics;
        // 8 of 10 positives found on the held-out fold, at a threshold that met (or missed)
        // the floor on the inner validation split.
        let counts = derma_eval::BinaryCounts { tp: 8, fp: 3, tn: 7, fn_: 2 };
        let test = SplitMetrics {
            loss: 0.5,
            accuracy: 0.75,
            balanced_accuracy: 0.75,
            auc: 0.8,
            predicted: Vec::new(),
            binary: Some(crate::evaluate::BinarySplit { ap: 0.7, at_threshold: derma_eval::BinaryMetrics::from_counts(0.4, counts) }),
        };
        let outcome = |met: bool| RunOutcome {
            out_dir: PathBuf::new(),
            best_epoch: 1,
            test: test.clone(),
            report: json!({ "threshold": { "rule": "min-spec:0.9", "met": met } }),
        };
        assert_eq!(fold_score(SelectMetric::SensAtSpec, &outcome(true)), 0.8);
        assert_eq!(fold_score(SelectMetric::SensAtSpec, &outcome(false)), 0.0);
        // Other metrics do not depend on the floor.
        assert_eq!(fold_score(SelectMetric::F2, &outcome(false)), counts.fbeta(2.0));
        assert_eq!(fold_score(SelectMetric::Auc, &outcome(false)), 0.8);
    }
}
