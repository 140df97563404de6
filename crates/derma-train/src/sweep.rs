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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::prelude::Device;
use derma_data::ImageDataset;
use serde::Deserialize;
use serde_json::json;

use crate::config::TrainConfig;
use crate::select::SelectMetric;
use crate::folds::{self, Fold};
use crate::report::{csv_field, write_atomic};
use crate::dataset::{FNV_OFFSET, TaskData, fnv1a, fnv1a_images, load_data};
use crate::train::{Diverged, RunOutcome, fit};

/// Keys every run sets from its weight source (`fit_from`): not for a plan.
const DERIVED_KEYS: [&str; 2] = ["input_norm", "padding"];

/// Above this many combinations of earlier-phase winners, a later phase's trials are validated
/// only with the first trial of every earlier phase.
pub const MAX_COMBINATIONS: usize = 1000;

/// The metrics a plan may score trials by, comma-separated: every [`SelectMetric`] but the loss
/// (a held-out loss depends on the loss being swept).
pub fn sweep_metrics() -> String {
    SelectMetric::names(&SelectMetric::ALL.into_iter().filter(|m| *m != SelectMetric::Loss).collect::<Vec<_>>())
}

/// A fold's score: `metric` on its held-out images, at the threshold chosen on the fold's inner
/// validation split (`sens@spec`: 0 when no threshold met the floor there, as `derma-train`
/// scores such an epoch; see [`SelectMetric::score`]).
pub fn fold_score(metric: SelectMetric, outcome: &RunOutcome) -> f64 {
    metric.score(&outcome.test, outcome.report["threshold"]["met"].as_bool() != Some(false))
}

/// One phase of a plan: its trials' own keys, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Phase name (unique in the plan).
    pub name: String,
    /// The keys each trial sets (a grid is expanded to its cartesian product).
    pub trials: Vec<toml::Table>,
}

/// A parsed sweep plan (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The plan file (for messages).
    pub path: PathBuf,
    /// Plan name (default output folder `runs/sweep-<name>`).
    pub name: String,
    /// `config` file keys merged with `[base]`.
    pub base: toml::Table,
    /// Keys forced over every trial (command-line `--epochs`, `--backend`).
    pub overrides: toml::Table,
    /// The plan's `config` file and the keys `base` holds from it (not replaced by `[base]`),
    /// for messages about their values.
    pub config_file: Option<(PathBuf, Vec<String>)>,
    /// Number of folds.
    pub folds: usize,
    /// Score of a fold.
    pub metric: SelectMetric,
    /// Seed of the fold assignment.
    pub seed: u64,
    /// Inner validation fraction.
    pub inner_val: f64,
    /// The phases, in order.
    pub phases: Vec<Phase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    name: Option<String>,
    config: Option<PathBuf>,
    #[serde(default)]
    base: toml::Table,
    folds: Option<usize>,
    metric: Option<String>,
    seed: Option<u64>,
    inner_val: Option<f64>,
    #[serde(default)]
    phase: Vec<PhaseFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseFile {
    name: String,
    trials: Option<Vec<toml::Table>>,
    grid: Option<toml::Table>,
}

/// `key=value;key=value` with keys sorted and values in TOML syntax — a trial's identity in
/// `results.csv`.
pub fn params_string(params: &toml::Table) -> String {
    let sorted: BTreeMap<&String, &toml::Value> = params.iter().collect();
    sorted.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";")
}

/// The configuration of `layers` merged in order over the built-in defaults, exactly as
/// `--config` merges a file (each layer replaces whole top-level keys).
pub fn merge_config(layers: &[&toml::Table]) -> Result<TrainConfig, String> {
    let mut merged = toml::Table::new();
    for layer in layers {
        for (k, v) in layer.iter() {
            merged.insert(k.clone(), v.clone());
        }
    }
    let text = toml::to_string(&merged).map_err(|e| e.to_string())?;
    TrainConfig::from_toml(&text)
}

/// Expands a grid table (`key = [values]`) to its cartesian product (keys in alphabetical
/// order, the last varying fastest: TOML tables are read sorted).
fn expand_grid(grid: &toml::Table) -> Result<Vec<toml::Table>, String> {
    if grid.is_empty() {
        return Err("`grid = {}` has no keys: give `key = [values]`, e.g. `grid = { gamma = [1.0, 2.0] }`".into());
    }
    let mut out = vec![toml::Table::new()];
    for (key, values) in grid {
        let values = values
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| format!("grid key `{key}` must be a non-empty list of values, got {values}"))?;
        out = out
            .into_iter()
            .flat_map(|t| {
                values.iter().map(move |v| {
                    let mut t = t.clone();
                    t.insert(key.clone(), v.clone());
                    t
                })
            })
            .collect();
    }
    Ok(out)
}

impl Plan {
    /// Reads a plan file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--plan {}: cannot read it: {e}", path.display()))?;
        Self::from_toml(&text, path)
    }

    /// Parses a plan; `path` names it in messages and anchors a relative `config` path.
    pub fn from_toml(text: &str, path: &Path) -> anyhow::Result<Self> {
        let at = path.display();
        let file: PlanFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("plan {at}: {e}"))?;
        let mut base = toml::Table::new();
        let mut config_file = None;
        if let Some(config) = &file.config {
            let config_path = path.parent().unwrap_or(Path::new("")).join(config);
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| anyhow::anyhow!("plan {at}: config = {}: cannot read {}: {e}", config.display(), config_path.display()))?;
            base = toml::from_str(&text).map_err(|e| anyhow::anyhow!("plan {at}: config {}: {e}", config_path.display()))?;
            // Its keys checked here, so that an error names it rather than `[base]`.
            merge_config(&[&base]).map_err(|e| anyhow::anyhow!("plan {at}: config {}: {e}", config_path.display()))?;
            // A run's own config.toml holds the conventions its weights set; every fold sets
            // them from its own weights again.
            for key in DERIVED_KEYS {
                base.remove(key);
            }
            // A run's config.toml also names its own folder; each fold has its own under --out.
            base.remove("out");
            let keys = base.keys().filter(|k| !file.base.contains_key(*k)).cloned().collect();
            config_file = Some((config_path, keys));
        }
        for (k, v) in file.base {
            base.insert(k, v);
        }
        let name = file
            .name
            .or_else(|| path.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
            .unwrap_or_else(|| "plan".into());
        let metric_name = file.metric.as_deref().unwrap_or("auc");
        let metric: SelectMetric = metric_name
            .parse()
            .map_err(|_| anyhow::anyhow!("plan {at}: metric `{metric_name}`: expected one of {}", sweep_metrics()))?;
        if file.phase.is_empty() {
            anyhow::bail!("plan {at}: no [[phase]]: a plan needs at least one phase of trials");
        }
        let mut phases: Vec<Phase> = Vec::new();
        for (i, p) in file.phase.into_iter().enumerate() {
            let what = format!("plan {at}: phase {} (`{}`)", i + 1, p.name);
            if p.name.trim().is_empty() {
                anyhow::bail!("plan {at}: phase {} has an empty name", i + 1);
            }
            if p.name.chars().any(char::is_control) {
                anyhow::bail!("{what}: a phase name must be one line of text (it is a results.csv field and a heading)");
            }
            if phases.iter().any(|q| q.name == p.name) {
                anyhow::bail!("{what}: two phases are named `{}`", p.name);
            }
            let trials = match (p.trials, p.grid) {
                (Some(t), None) => t,
                (None, Some(g)) => expand_grid(&g).map_err(|e| anyhow::anyhow!("{what}: {e}"))?,
                _ => anyhow::bail!("{what}: give either `trials = [{{...}}, ...]` or `grid = {{ key = [...] }}`"),
            };
            if trials.is_empty() {
                anyhow::bail!("{what}: no trials");
            }
            for (a, ta) in trials.iter().enumerate() {
                if let Some(b) = trials[..a].iter().position(|tb| tb == ta) {
                    anyhow::bail!("{what}: trials {} and {} are identical ({})", b + 1, a + 1, params_string(ta));
                }
            }
            phases.push(Phase { name: p.name, trials });
        }
        let plan = Self {
            path: path.to_path_buf(),
            name,
            base,
            overrides: toml::Table::new(),
            config_file,
            folds: file.folds.unwrap_or(5),
            metric,
            seed: file.seed.unwrap_or(0),
            inner_val: file.inner_val.unwrap_or(0.15),
            phases,
        };
        Ok(plan)
    }

    /// Forces `key = value` over every trial (command-line overrides such as `--epochs`).
    pub fn set_override(&mut self, key: &str, value: toml::Value) {
        self.overrides.insert(key.to_string(), value);
    }

    /// Number of trials over all phases.
    pub fn trial_count(&self) -> usize {
        self.phases.iter().map(|p| p.trials.len()).sum()
    }

    /// Global 1-based number of trial `t` of phase `p`.
    pub fn trial_number(&self, p: usize, t: usize) -> usize {
        self.phases[..p].iter().map(|q| q.trials.len()).sum::<usize>() + t + 1
    }

    /// The effective parameters of a trial: the earlier winners' keys (`fixed`), then its own.
    pub fn params(fixed: &toml::Table, own: &toml::Table) -> toml::Table {
        let mut p = fixed.clone();
        for (k, v) in own {
            p.insert(k.clone(), v.clone());
        }
        p
    }

    /// The training configuration of a trial with effective parameters `params`.
    pub fn config(&self, params: &toml::Table) -> Result<TrainConfig, String> {
        let config = merge_config(&[&self.base, params, &self.overrides])?;
        config.validate()?;
        if self.metric.needs_binary() && !config.is_two_class() {
            return Err(format!("metric {} needs a two-class task: set positive_classes in [base]", self.metric));
        }
        let min_spec = matches!(config.threshold.parse(), Ok(derma_eval::ThresholdRule::MinSpecificity(_)));
        if self.metric == SelectMetric::SensAtSpec && !min_spec {
            return Err(format!(
                "metric sens@spec is the sensitivity at a specificity floor: it needs threshold = \"min-spec:<floor>\", got `{}`",
                config.threshold
            ));
        }
        Ok(config)
    }

    /// Checks the plan settings and builds and validates every trial's configuration (see the
    /// module documentation), naming the plan file, phase, trial and key at fault.
    pub fn validate(&self) -> anyhow::Result<()> {
        let at = self.path.display();
        if self.metric == SelectMetric::Loss {
            // A held-out loss depends on the loss being swept: trials would not be comparable.
            anyhow::bail!("plan {at}: metric `loss`: a sweep compares trials on the same held-out score: use one of {}", sweep_metrics());
        }
        if self.folds < 2 {
            anyhow::bail!("plan {at}: folds must be at least 2, got {}", self.folds);
        }
        if !(self.inner_val > 0.0 && self.inner_val < 1.0) {
            anyhow::bail!("plan {at}: inner_val must be in (0, 1), got {}", self.inner_val);
        }
        self.config(&toml::Table::new()).map_err(|e| {
            // A value from the plan's config file is named there, not as [base]'s.
            let key = crate::cli::key_of_message(&e).unwrap_or_default();
            match &self.config_file {
                // A knob (`augment_knobs.rotation`) is the file's if its table is.
                Some((file, keys)) if keys.iter().any(|k| Some(k.as_str()) == key.split('.').next()) => anyhow::anyhow!("plan {at}: config {}: {e}", file.display()),
                _ => anyhow::anyhow!("plan {at}: [base]: {e}"),
            }
        })?;
        // The sweep chooses these itself: a value would be recorded but not used.
        if self.base.contains_key("out") {
            anyhow::bail!("plan {at}: [base]: `out` is not a sweep key: each fold's run folder is under derma-sweep's --out");
        }
        // Set by the weight source in every run (the weights' convention): a trial that varied
        // them would train the same model as another under another name.
        if let Some(key) = DERIVED_KEYS.into_iter().find(|k| self.base.contains_key(*k)) {
            anyhow::bail!("plan {at}: [base]: `{key}` is not a sweep key: every run takes it from its weights (--pretrained)");
        }
        for phase in &self.phases {
            for (t, own) in phase.trials.iter().enumerate() {
                if let Some(key) = DERIVED_KEYS.into_iter().find(|k| own.contains_key(*k)) {
                    anyhow::bail!(
                        "plan {at}: phase `{}` trial {} ({}): `{key}` cannot vary: every run takes it from its weights (--pretrained)",
                        phase.name,
                        t + 1,
                        params_string(own)
                    );
                }
                if let Some(key) = ["backend", "out"].into_iter().find(|k| own.contains_key(*k)) {
                    anyhow::bail!(
                        "plan {at}: phase `{}` trial {} ({}): `{key}` cannot vary per trial (the sweep runs on one device, from \
                         [base] or --backend, and puts each fold under --out)",
                        phase.name,
                        t + 1,
                        params_string(own)
                    );
                }
            }
        }
        for (p, phase) in self.phases.iter().enumerate() {
            let earlier = &self.phases[..p];
            // What each earlier phase may leave fixed: one of its trials, or (after the first
            // phase, whose best always wins) nothing, when its best does not beat the winner.
            let options = |q: usize| -> Vec<Option<usize>> {
                let none = (q > 0).then_some(None);
                none.into_iter().chain((0..self.phases[q].trials.len()).map(Some)).collect()
            };
            let combos = (0..p).try_fold(1usize, |n, q| n.checked_mul(options(q).len()));
            let choices: Vec<Vec<Option<usize>>> = if combos.is_some_and(|n| n <= MAX_COMBINATIONS) {
                let mut all = vec![Vec::new()];
                for q in 0..p {
                    all = all.into_iter().flat_map(|c: Vec<Option<usize>>| options(q).into_iter().map(move |t| [c.clone(), vec![t]].concat())).collect();
                }
                all
            } else {
                vec![vec![Some(0); p]]
            };
            // Pairs of this phase's trials that train one configuration, under every choice of
            // earlier winners (a pair equal under some choices only is allowed: the sweep then
            // trains one configuration twice, wasted but not wrong).
            let mut always_same: Option<Vec<(usize, usize)>> = None;
            for choice in &choices {
                let mut fixed = toml::Table::new();
                for (q, t) in earlier.iter().zip(choice) {
                    if let Some(t) = t {
                        fixed = Self::params(&fixed, &q.trials[*t]);
                    }
                }
                // Only an error message needs the earlier winners in words.
                let with = || {
                    if p == 0 {
                        return String::new();
                    }
                    let winner = |(q, t): (&Phase, &Option<usize>)| match t {
                        Some(t) => format!("`{}` trial {}", q.name, t + 1),
                        None => format!("`{}` fixing nothing", q.name),
                    };
                    format!(" with earlier winners {}", earlier.iter().zip(choice).map(winner).collect::<Vec<_>>().join(", "))
                };
                let mut configs: Vec<TrainConfig> = Vec::with_capacity(phase.trials.len());
                for (t, own) in phase.trials.iter().enumerate() {
                    let params = Self::params(&fixed, own);
                    let config = self
                        .config(&params)
                        .map_err(|e| anyhow::anyhow!("plan {at}: phase `{}` trial {} ({}){}: {e}", phase.name, t + 1, params_string(own), with()))?;
                    configs.push(config);
                }
                let same: Vec<(usize, usize)> =
                    (0..configs.len()).flat_map(|t| (0..t).map(move |u| (u, t))).filter(|&(u, t)| configs[u] == configs[t]).collect();
                always_same = Some(match always_same {
                    None => same,
                    Some(prev) => prev.into_iter().filter(|pair| same.contains(pair)).collect(),
                });
            }
            // E.g. `gamma = 1` and `gamma = 1.0`, or a swept key also given as a command-line
            // override: the two trials always train the same thing.
            if let Some(&(u, t)) = always_same.as_deref().and_then(<[_]>::first) {
                let own = &phase.trials[t];
                let overridden: Vec<&String> = own.keys().filter(|k| self.overrides.contains_key(*k)).collect();
                let why = if overridden.is_empty() {
                    String::new()
                } else {
                    format!(" (the command line overrides {})", overridden.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
                };
                anyhow::bail!(
                    "plan {at}: phase `{}` trials {} ({}) and {} ({}) give the same configuration{why}",
                    phase.name,
                    u + 1,
                    params_string(&phase.trials[u]),
                    t + 1,
                    params_string(own)
                );
            }
        }
        Ok(())
    }

    /// The settings a sweep folder belongs to (`sweep.json`): resuming needs the same.
    pub fn settings(&self) -> serde_json::Value {
        json!({
            "folds": self.folds,
            "metric": self.metric.to_string(),
            "seed": self.seed,
            "inner_val": self.inner_val,
            "base": toml::to_string(&self.base).unwrap_or_default(),
            "overrides": toml::to_string(&self.overrides).unwrap_or_default(),
        })
    }
}

/// One row of `results.csv`: a finished trial.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRow {
    /// Global 1-based trial number.
    pub trial: usize,
    /// Phase name.
    pub phase: String,
    /// Effective parameters ([`params_string`]).
    pub params: String,
    /// Metric name.
    pub metric: String,
    /// Mean over folds.
    pub mean: f64,
    /// Sample standard deviation over folds.
    pub std: f64,
    /// Per-fold scores.
    pub folds: Vec<f64>,
}

/// Mean and sample standard deviation (n − 1; NaN for one value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Splits one CSV line (RFC 4180 quoting).
fn csv_split(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    out.push(field);
    out
}

/// `results.csv`: `trial,phase,params,metric,mean,std,fold_1..fold_k` (numbers in shortest
/// round-trip form, so a resumed sweep reads back exactly what it wrote).
pub fn results_csv(rows: &[TrialRow], k: usize) -> String {
    let mut s = String::from("trial,phase,params,metric,mean,std");
    for f in 1..=k {
        let _ = write!(s, ",fold_{f}");
    }
    s.push('\n');
    for r in rows {
        let _ = write!(s, "{},{},{},{},{},{}", r.trial, csv_field(&r.phase), csv_field(&r.params), csv_field(&r.metric), r.mean, r.std);
        for v in &r.folds {
            let _ = write!(s, ",{v}");
        }
        s.push('\n');
    }
    s
}

/// Reads `results.csv` back.
pub fn parse_results_csv(text: &str) -> anyhow::Result<Vec<TrialRow>> {
    let mut lines = text.lines();
    let header = csv_split(lines.next().unwrap_or_default());
    if header.len() < 6 || header[..6] != ["trial", "phase", "params", "metric", "mean", "std"] {
        anyhow::bail!("not a derma-sweep results.csv (header {:?})", header.join(","));
    }
    let num = |s: &str, what: &str, line: usize| -> anyhow::Result<f64> {
        s.parse::<f64>().map_err(|_| anyhow::anyhow!("line {line}: {what} `{s}` is not a number"))
    };
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let n = i + 2;
        let f = csv_split(line);
        if f.len() != header.len() {
            anyhow::bail!("line {n}: {} fields, the header has {}", f.len(), header.len());
        }
        rows.push(TrialRow {
            trial: f[0].parse().map_err(|_| anyhow::anyhow!("line {n}: trial `{}` is not a number", f[0]))?,
            phase: f[1].clone(),
            params: f[2].clone(),
            metric: f[3].clone(),
            mean: num(&f[4], "mean", n)?,
            std: num(&f[5], "std", n)?,
            folds: f[6..].iter().map(|v| num(v, "fold score", n)).collect::<anyhow::Result<_>>()?,
        });
    }
    Ok(rows)
}

/// The best row of a phase: highest mean (NaN lowest), ties to the first.
fn best_of<'a>(rows: impl Iterator<Item = &'a TrialRow>) -> Option<&'a TrialRow> {
    let mut best: Option<&TrialRow> = None;
    for r in rows {
        let better = match best {
            None => true,
            Some(b) => (b.mean.is_nan() && !r.mean.is_nan()) || r.mean > b.mean,
        };
        if better {
            best = Some(r);
        }
    }
    best
}

/// A trial as scheduled: its phase, its own keys and (once the earlier phases are complete)
/// its effective parameters.
#[derive(Debug, Clone)]
struct Scheduled<'a> {
    number: usize,
    phase: &'a Phase,
    own: &'a toml::Table,
    /// `None` while an earlier phase is not finished.
    params: Option<toml::Table>,
}

fn fmt_score(v: f64) -> String {
    if v.is_nan() { "nan".into() } else { format!("{v:.4}") }
}

/// `results.md`: one table per phase (trial, its own parameters, the ones fixed by earlier
/// phases, mean ± std, per-fold scores), the best trial of each phase in bold with ★, and
/// the folds that scored NaN because their training diverged (`fold_notes`, by phase index)
/// and what each finished phase fixed (`notes`, one per phase).
fn results_md(plan: &Plan, schedule: &[Scheduled], rows: &[TrialRow], notes: &[String], fold_notes: &[(usize, String)], grouped: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Sweep `{}`\n", plan.name);
    let _ = writeln!(
        s,
        "Plan `{}`: {} trials, each scored by {}-fold {}stratified cross-validation on train+val (seed {}; \
         inner validation {:.0}% of each fold's training part picks the best epoch and the threshold). \
         Score: **{}** on the held-out fold; mean ± sample std over folds. ★ = best trial of the phase; it fixes its keys for the later phases \
         when it beats the best trial so far.\n",
        plan.path.display(),
        plan.trial_count(),
        plan.folds,
        if grouped { "patient-grouped " } else { "" },
        plan.seed,
        plan.inner_val * 100.0,
        plan.metric
    );
    for (p, phase) in plan.phases.iter().enumerate() {
        let _ = writeln!(s, "## Phase {}: {}\n", p + 1, phase.name);
        let _ = writeln!(s, "| trial | parameters | fixed by earlier phases | {} mean ± std | per fold |", plan.metric);
        let _ = writeln!(s, "|---|---|---|---|---|");
        let mine: Vec<&Scheduled> = schedule.iter().filter(|t| std::ptr::eq(t.phase, phase)).collect();
        // Its own number's row first: two trials of a phase may train one configuration.
        let row_of = |t: &Scheduled| {
            t.params.as_ref().and_then(|p| {
                let key = params_string(p);
                rows.iter().filter(|r| r.phase == phase.name && r.params == key).min_by_key(|r| r.trial != t.number)
            })
        };
        let complete = mine.iter().all(|t| row_of(t).is_some());
        let winner = if complete { best_of(mine.iter().filter_map(|t| row_of(t))) } else { None };
        for t in &mine {
            let own = params_string(t.own).replace(';', "; ");
            let fixed = match &t.params {
                None => format!("best of phase{} before", if p > 1 { "s" } else { "" }),
                Some(params) => {
                    let f: toml::Table = params.iter().filter(|(k, _)| !t.own.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
                    if f.is_empty() { "—".into() } else { params_string(&f).replace(';', "; ") }
                }
            };
            let own = if own.is_empty() { "(base)".into() } else { own };
            match row_of(t) {
                Some(r) => {
                    let win = winner.is_some_and(|w| std::ptr::eq(w, r));
                    let score = format!("{} ± {}", fmt_score(r.mean), fmt_score(r.std));
                    let folds = r.folds.iter().map(|v| fmt_score(*v)).collect::<Vec<_>>().join(", ");
                    if win {
                        let _ = writeln!(s, "| **{:03}** ★ | **{own}** | {fixed} | **{score}** | {folds} |", t.number);
                    } else {
                        let _ = writeln!(s, "| {:03} | {own} | {fixed} | {score} | {folds} |", t.number);
                    }
                }
                None => {
                    let _ = writeln!(s, "| {:03} | {own} | {fixed} | pending | |", t.number);
                }
            }
        }
        for (_, note) in fold_notes.iter().filter(|(q, _)| *q == p) {
            let _ = writeln!(s, "\n{note}");
        }
        if let Some(note) = notes.get(p) {
            let _ = writeln!(s, "\n{note}");
        }
        s.push('\n');
    }
    s
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
    folds: Vec<Fold>,
}

/// The configuration keys that decide which images are loaded, as text: configurations with
/// the same fingerprint load the same data (a sweep trial changing one reloads the data).
pub fn data_fingerprint(c: &TrainConfig) -> String {
    let file = c.is_file_dataset();
    format!(
        "{:?}",
        (
            &c.dataset,
            c.size,
            &c.npz,
            &c.data_root,
            &c.data_dir,
            &c.manifest,
            &c.positive_classes,
            // MedMNIST images are shrunk to the training size at load time too.
            c.image_size(),
            file.then(|| (&c.intensity, &c.resize, c.split_fractions, c.seed, &c.patient_pattern)),
        )
    )
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
    Ok(Pool { fingerprint: data_fingerprint(config), images, groups, folds })
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
                    // The sweep's folds.csv says which pooled image is in which part.
                    paths: None,
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

/// The `--dry-run` listing: every trial with its own keys and what it inherits, and the
/// number of training runs.
pub fn describe(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan {} (`{}`): {} phase(s), {} trials x {} folds = {} training runs; metric {} on the held-out folds, seed {}, inner validation {}",
        plan.path.display(),
        plan.name,
        plan.phases.len(),
        plan.trial_count(),
        plan.folds,
        plan.trial_count() * plan.folds,
        plan.metric,
        plan.seed,
        plan.inner_val
    );
    if !plan.base.is_empty() {
        let _ = writeln!(s, "base: {}", params_string(&plan.base));
    }
    if !plan.overrides.is_empty() {
        let _ = writeln!(s, "overrides: {}", params_string(&plan.overrides));
    }
    for (p, phase) in plan.phases.iter().enumerate() {
        let inherits = if p == 0 {
            String::new()
        } else {
            format!(" (+ the winners of {})", plan.phases[..p].iter().map(|q| format!("`{}`", q.name)).collect::<Vec<_>>().join(", "))
        };
        let _ = writeln!(s, "phase {}: {}{inherits}", p + 1, phase.name);
        for (t, own) in phase.trials.iter().enumerate() {
            let own = params_string(own);
            let _ = writeln!(s, "  trial {:03}: {}", plan.trial_number(p, t), if own.is_empty() { "(base)" } else { &own });
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trip_with_quoted_params() {
        let rows = vec![TrialRow {
            trial: 3,
            phase: "alpha".into(),
            params: "alpha=[0.25, 0.75];positive_classes=[\"mel\", \"bcc\"]".into(),
            metric: "sens@spec".into(),
            mean: 0.123456789,
            std: f64::NAN,
            folds: vec![0.1, 0.146913578],
        }];
        let text = results_csv(&rows, 2);
        let back = parse_results_csv(&text).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].params, rows[0].params);
        assert_eq!(back[0].mean, rows[0].mean);
        assert!(back[0].std.is_nan());
        assert_eq!(back[0].folds, rows[0].folds);
    }

    #[test]
    fn grid_is_the_cartesian_product() {
        let grid: toml::Table = toml::from_str("gamma = [1.0, 2.0]\nalpha = [0.25, 0.5, 0.75]").unwrap();
        let trials = expand_grid(&grid).unwrap();
        assert_eq!(trials.len(), 6);
        let keys: Vec<String> = trials.iter().map(params_string).collect();
        let mut dedup = keys.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 6, "{keys:?}");
    }

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

    #[test]
    fn two_trials_of_one_configuration_keep_their_own_rows_in_results_md() {
        // Phase 2's trials 3 and 4 train one configuration once phase 1's trial 1 wins
        // (`alpha = 0.5` fixed; trial 4 sets it again): allowed, since under trial 2 they
        // differ. Each keeps its own scores and only the better one gets the star; before,
        // both showed trial 3's row and, with trial 3 the best, both were starred.
        let plan = Plan::from_toml(
            "[[phase]]\nname = \"a\"\ntrials = [{ alpha = 0.5 }, { gamma = 3.0 }]\n\
             [[phase]]\nname = \"b\"\ntrials = [{ gamma = 1.0 }, { alpha = 0.5, gamma = 1.0 }]\n",
            Path::new("dup.toml"),
        )
        .unwrap();
        plan.validate().unwrap();
        let nothing = toml::Table::new();
        let fixed = Plan::params(&nothing, &plan.phases[0].trials[0]);
        let mut schedule = Vec::new();
        for (p, phase) in plan.phases.iter().enumerate() {
            for (t, own) in phase.trials.iter().enumerate() {
                let params = Plan::params(if p == 0 { &nothing } else { &fixed }, own);
                schedule.push(Scheduled { number: plan.trial_number(p, t), phase, own, params: Some(params) });
            }
        }
        let row = |trial: usize, phase: &str, params: &toml::Table, folds: [f64; 2]| {
            let (mean, std) = mean_std(&folds);
            TrialRow { trial, phase: phase.into(), params: params_string(params), metric: "auc".into(), mean, std, folds: folds.to_vec() }
        };
        let p3 = schedule[2].params.clone().unwrap();
        assert_eq!(params_string(&p3), params_string(schedule[3].params.as_ref().unwrap()));
        let rows = vec![
            row(1, "a", schedule[0].params.as_ref().unwrap(), [0.8, 0.8]),
            row(2, "a", schedule[1].params.as_ref().unwrap(), [0.7, 0.7]),
            row(3, "b", &p3, [0.9, 0.9]),
            row(4, "b", &p3, [0.6, 0.6]),
        ];
        let md = results_md(&plan, &schedule, &rows, &[], &[], false);
        assert_eq!(md.matches('★').count(), 2 + 1, "one per phase, one in the legend:\n{md}");
        assert!(md.contains("| **003** ★") && md.contains("0.9000 ± 0.0000"), "{md}");
        assert!(md.contains("| 004 | alpha=0.5; gamma=1.0 | — | 0.6000 ± 0.0000 | 0.6000, 0.6000 |"), "{md}");
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - 1.2909944487358056).abs() < 1e-12); // numpy.std(ddof=1)
    }
}
