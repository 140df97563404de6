//! A sweep's results: the rows of `results.csv` (written and read back exactly, for resume),
//! each phase's best trial, and the `results.md` table.

use std::fmt::Write as _;

use crate::report::csv_field;
use super::plan::{Phase, Plan, params_string};

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
pub(super) fn best_of<'a>(rows: impl Iterator<Item = &'a TrialRow>) -> Option<&'a TrialRow> {
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
pub(super) struct Scheduled<'a> {
    pub(super) number: usize,
    pub(super) phase: &'a Phase,
    pub(super) own: &'a toml::Table,
    /// `None` while an earlier phase is not finished.
    pub(super) params: Option<toml::Table>,
}

pub(super) fn fmt_score(v: f64) -> String {
    if v.is_nan() { "nan".into() } else { format!("{v:.4}") }
}

/// `results.md`: one table per phase (trial, its own parameters, the ones fixed by earlier
/// phases, mean ± std, per-fold scores), the best trial of each phase in bold with ★, and
/// the folds that scored NaN because their training diverged (`fold_notes`, by phase index)
/// and what each finished phase fixed (`notes`, one per phase).
pub(super) fn results_md(plan: &Plan, schedule: &[Scheduled], rows: &[TrialRow], notes: &[String], fold_notes: &[(usize, String)], grouped: bool) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
