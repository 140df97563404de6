//! `derma-train`: train MobileNetV2 on DermaMNIST (or a binary view of it) and write a run
//! folder. Flags override the config file (`configs/dermamnist.toml` is built in).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use derma_train::cli::{TrainArgs, exit};
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
    /// the configuration is RUN_DIR/config.toml: no other flag but --backend may be given.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
}

fn main() -> ExitCode {
    exit(run())
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(dir) = &cli.resume {
        if cli.overwrite {
            anyhow::bail!("--resume continues the run in {}; --overwrite would replace it: give one of them", dir.display());
        }
        let backend_flag = cli.args.backend.clone();
        let defaults = TrainConfig::default();
        let mut given = cli.args.into_config()?;
        given.backend.clone_from(&defaults.backend);
        if given != defaults {
            anyhow::bail!("--resume {}: the configuration is the run's config.toml; only --backend may be given with --resume", dir.display());
        }
        let mut config = TrainConfig::from_file(&dir.join("config.toml")).map_err(|e| anyhow::anyhow!("--resume: {e:#}"))?;
        if let Some(b) = backend_flag {
            config.backend = b;
        }
        config.out = Some(dir.clone());
        let backend = backend::select(&config.backend)?;
        train::resume(&config, &backend.device, backend.name, dir)?;
        return Ok(());
    }
    let config = cli.args.into_config()?;
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    let out = config.out.clone().unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from("runs").join(format!("{}-{stamp}", config.dataset))
    });
    report::check_out_is_free(&out, &report::RUN_FILES, cli.overwrite)?;
    let backend = backend::select(&config.backend)?;
    train::run(&config, &backend.device, backend.name, &out)?;
    Ok(())
}
