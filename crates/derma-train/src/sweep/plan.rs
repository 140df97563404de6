//! A sweep's plan: its TOML file (base configuration, phases of trials or grids), every
//! trial's configuration built and checked before anything trains, and the `--dry-run`
//! listing. See [`crate::sweep`] for the format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use crate::config::TrainConfig;
use crate::select::SelectMetric;

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
            TrainConfig::from_layers(&[&base]).map_err(|e| anyhow::anyhow!("plan {at}: config {}: {e}", config_path.display()))?;
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
        let config = TrainConfig::from_layers(&[&self.base, params, &self.overrides])?;
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
}
