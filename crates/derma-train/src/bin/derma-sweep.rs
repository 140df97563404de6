//! `derma-sweep`: run a plan of training trials (a grid, or phases that fix the winners of
//! earlier phases), each scored by stratified (patient-grouped) k-fold cross-validation on
//! train+val; results in `results.csv` / `results.md`, resumable. See `derma_train::sweep`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use derma_train::sweep::{self, Plan};
use derma_train::backend;

/// Cross-validated hyper-parameter sweeps for derma-train.
#[derive(Parser, Debug)]
#[command(name = "derma-sweep", version, about = "Cross-validated hyper-parameter sweeps for derma-train (see configs/sweeps/)")]
struct Cli {
    /// The plan (TOML): base config, folds, metric, seed and [[phase]]s of trials.
    #[arg(long)]
    plan: PathBuf,
    /// Output folder (default: runs/sweep-<plan name>); an existing one is resumed.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Number of folds (overrides the plan).
    #[arg(long)]
    folds: Option<usize>,
    /// Fold score: auc, bal_acc, acc, ap, f2, sens@spec (overrides the plan).
    #[arg(long)]
    metric: Option<String>,
    /// auto, wgpu, wgpu-software or cpu (overrides the configuration's backend).
    #[arg(long)]
    backend: Option<String>,
    /// Epochs of every training run (overrides every trial, for quick runs).
    #[arg(long)]
    epochs: Option<usize>,
    /// Print the trials and exit (the plan and every configuration are still validated).
    #[arg(long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    derma_train::cli::exit(run())
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut plan = Plan::from_file(&cli.plan)?;
    if let Some(k) = cli.folds {
        plan.folds = k;
    }
    if let Some(m) = &cli.metric {
        // A sweep compares trials on a held-out score: `loss` is no choice here (Plan::validate).
        plan.metric = m.parse().map_err(|_| anyhow::anyhow!("--metric `{m}`: expected one of {}", derma_train::sweep::sweep_metrics()))?;
    }
    if let Some(e) = cli.epochs {
        let e = i64::try_from(e).map_err(|_| anyhow::anyhow!("--epochs {e}: too large"))?;
        plan.set_override("epochs", toml::Value::Integer(e));
    }
    if let Some(b) = &cli.backend {
        plan.set_override("backend", toml::Value::String(b.clone()));
    }
    plan.validate()?;
    if cli.dry_run {
        print!("{}", sweep::describe(&plan));
        return Ok(());
    }
    let out = cli.out.unwrap_or_else(|| PathBuf::from("runs").join(format!("sweep-{}", plan.name)));
    let base = derma_train::TrainConfig::from_layers(&[&plan.base, &plan.overrides]).map_err(|e| anyhow::anyhow!(e))?;
    let backend = backend::select(&base.backend)?;
    backend::explain_out_of_memory("Give the plan a smaller batch_size (or image size) and run it again.".into());
    let summary = sweep::run(&plan, &out, &backend.device, backend.name)?;
    println!(
        "sweep done: {} trial(s), {} skipped (already in results.csv); {} fold(s) trained, {} reused",
        summary.rows.len(),
        summary.skipped_trials,
        summary.trained_folds,
        summary.reused_folds
    );
    Ok(())
}
