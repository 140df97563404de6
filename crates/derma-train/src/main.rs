//! `derma-train`: train MobileNetV2 on DermaMNIST (or a binary view of it) and write a run
//! folder. Flags override the config file (`configs/dermamnist.toml` is built in).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use derma_train::cli::{TrainArgs, exit, with_config_defaults};
use derma_train::config::TrainConfig;
use derma_train::{backend, report, train};

/// Train MobileNetV2 for imbalanced medical image classification.
#[derive(Parser, Debug)]
#[command(name = "derma-train", version, about = "Train MobileNetV2 for imbalanced medical image classification", allow_negative_numbers = true)]
struct Cli {
    #[command(flatten)]
    args: TrainArgs,
    /// Replace the results of a previous run in `--out` (without it, a folder that already
    /// holds a run is refused).
    #[arg(long)]
    overwrite: bool,
    /// Continue the interrupted run in RUN_DIR from its last finished epoch (its checkpoint/);
    /// the configuration is RUN_DIR/config.toml: no other flag but --backend and --step may be
    /// given.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
}

fn main() -> ExitCode {
    exit(run())
}

fn run() -> anyhow::Result<()> {
    let command = with_config_defaults(Cli::command());
    let flags: Vec<String> = command.get_arguments().map(|a| a.get_id().to_string()).collect();
    let args = derma_train::cli::attach_negative_lists(&command, std::env::args_os());
    let matches = command.get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(dir) = &cli.resume {
        if cli.overwrite {
            anyhow::bail!("--resume continues the run in {}; --overwrite would replace it: give one of them", dir.display());
        }
        // Any flag given on the command line, even at its default value, would be ignored.
        let given: Vec<String> = matches
            .ids()
            .filter(|id| flags.iter().any(|f| f == id.as_str()) && !["resume", "backend", "step"].contains(&id.as_str()))
            .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
            .map(|id| format!("--{}", id.as_str().replace('_', "-")))
            .collect();
        if !given.is_empty() {
            anyhow::bail!(
                "--resume {}: the configuration is the run's config.toml; only --backend and --step may be given with --resume (got {})",
                dir.display(),
                given.join(", ")
            );
        }
        let backend_flag = cli.args.backend.clone();
        let step_flag = cli.args.step;
        let config_path = dir.join("config.toml");
        if !config_path.is_file() {
            anyhow::bail!("--resume {}: no config.toml there (not a derma-train run folder)", dir.display());
        }
        let mut config = TrainConfig::from_run_folder(&config_path, "--resume")?;
        if let Some(b) = backend_flag {
            config.backend = b;
        }
        // How the step runs, not what it computes (e.g. `--step eager` after a failed capture).
        if let Some(step) = step_flag {
            config.step = step;
            config.validate_for_resume().map_err(|e| anyhow::anyhow!("--resume {} --step: {e}", dir.display()))?;
        }
        // Absolute, as a fresh run records it (`--resume runs/x` wrote `out = "runs/x"`).
        config.out = Some(std::path::absolute(dir).unwrap_or_else(|_| dir.clone()));
        // SAFETY: only the main thread runs yet (no data loading, no device, no pool).
        unsafe { backend::restore_optimizer_state_on_the_cpu() };
        let backend = backend::select(&config.backend)?;
        backend::explain_out_of_memory(out_of_memory_advice(&config, dir));
        train::resume(&config, &backend.device, backend.name, dir).map_err(|e| with_divergence_advice(e, dir))?;
        return Ok(());
    }
    let config_file = cli.args.config.clone();
    let mut config = cli.args.into_config()?;
    // "--lr must be > 0" about a value that came from the config file says where it is.
    config.validate().map_err(|e| {
        anyhow::anyhow!(
            "{}",
            derma_train::cli::with_config_source(&e, config_file.as_deref(), |key| {
                let flag = derma_train::cli::flag_of_key(key);
                !flags.iter().any(|f| f == flag) || matches.value_source(flag) == Some(ValueSource::CommandLine)
            })
        )
    })?;
    // The run's config.toml holds absolute paths: `--resume DIR` works from any directory.
    config.make_paths_absolute().map_err(|e| anyhow::anyhow!("cannot make the paths absolute: {e}"))?;
    let out = config.out.clone().unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from("runs").join(format!("{}-{stamp}", config.dataset))
    });
    report::check_out_is_free(&out, &report::RUN_FILES, cli.overwrite)?;
    let backend = backend::select(&config.backend)?;
    let shown = std::path::absolute(&out).unwrap_or_else(|_| out.clone());
    backend::explain_out_of_memory(out_of_memory_advice(&config, &shown));
    train::run(&config, &backend.device, backend.name, &out).map_err(|e| with_divergence_advice(e, &shown))?;
    Ok(())
}

/// A divergence's error with what to do next: its checkpoint is marked, `--resume` refused.
fn with_divergence_advice(e: anyhow::Error, run: &std::path::Path) -> anyhow::Error {
    match e.downcast_ref::<train::Diverged>() {
        Some(d) => anyhow::anyhow!("{}", derma_train::checkpoint::diverged_advice(run, &d.to_string())),
        None => e,
    }
}

/// What to change when the GPU runs out of memory during this run (the batch size and the image
/// size are part of the run's configuration, which `--resume` keeps).
fn out_of_memory_advice(config: &TrainConfig, run: &std::path::Path) -> String {
    format!(
        "A training batch of {} images of {} px at width {} needs more than it has (activations grow with batch × pixels). \
         Start again with a smaller --batch-size (e.g. {}) or --image-size, with --overwrite to reuse {} (--resume keeps the \
         run's batch size); the epochs already finished are in its metrics.csv and checkpoint/.",
        config.batch_size,
        config.image_size(),
        config.width,
        (config.batch_size / 2).max(2),
        run.display()
    )
}
