//! `derma-cascade`: a two-stage screening cascade — a high-recall screener (weighted CE, 1:2
//! undersampling, threshold recall:0.99) and a specialist (focal loss) trained on the images
//! the screener flags; reports precision at 99% / 98% recall for stage 1 alone vs the cascade.
//! See `derma_train::cascade`.

use std::process::ExitCode;

use clap::Parser;
use derma_train::{TrainConfig, backend, report};
use derma_train::cli::{TrainArgs, exit};
use derma_train::cascade::{self, CascadeOptions, parse_assignment};

/// Train and evaluate a two-stage screening cascade.
#[derive(Parser, Debug)]
#[command(name = "derma-cascade", version, about = "Train and evaluate a two-stage screening cascade (screener + specialist)", allow_negative_numbers = true)]
struct Cli {
    /// The data, model and training flags of both stages (`--out` is the cascade's folder:
    /// stage1/, stage2/, cascade.json, cascade.md; default runs/cascade-<time>).
    #[command(flatten)]
    train: TrainArgs,
    /// Any config key for both stages, KEY=VALUE (TOML value), repeatable. A key a stage's
    /// recipe sets (loss, gamma, alpha, class_weights, sampler, undersample_ratio, threshold)
    /// is replaced there, with a warning: use --stage1/--stage2 for those.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A config key over stage 1's recipe (loss ce, class_weights balanced, sampler
    /// undersample, undersample_ratio 2, threshold recall:0.99), repeatable.
    #[arg(long = "stage1", value_name = "KEY=VALUE")]
    stage1: Vec<String>,
    /// A config key over stage 2's recipe (loss focal, alpha 0.75, gamma 1, class_weights
    /// none, sampler none, threshold recall:0.99), repeatable. Its `threshold` is stage 2's own
    /// report's: the cascade table picks stage 2's threshold per recall target (--recall).
    #[arg(long = "stage2", value_name = "KEY=VALUE")]
    stage2: Vec<String>,
    /// Recall targets of the report (the first gives the confusion matrix).
    #[arg(long, value_delimiter = ',', default_value = "0.99,0.98")]
    recall: Vec<f64>,
    /// Replace the results of a previous cascade in `--out` (without it, a folder that
    /// already holds one is refused).
    #[arg(long)]
    overwrite: bool,
    /// Continue the interrupted cascade in --out, given with the same flags as it was started:
    /// a finished stage is reused, an interrupted one continued from its checkpoint.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
}

fn main() -> ExitCode {
    exit(run())
}

fn table(assignments: &[String], flag: &str) -> anyhow::Result<toml::Table> {
    let mut t = toml::Table::new();
    for a in assignments {
        let (k, v) = parse_assignment(a).map_err(|e| anyhow::anyhow!("--{flag} {e}"))?;
        t.insert(k, v);
    }
    Ok(t)
}

fn run() -> anyhow::Result<()> {
    // The stage recipes set some keys whatever the base says: their help says so.
    let recipe_keys: Vec<String> = derma_train::cascade::stage1_recipe()
        .keys()
        .chain(derma_train::cascade::stage2_recipe().keys())
        .cloned()
        .collect();
    let command = derma_train::cli::with_config_defaults_except(
        <Cli as clap::CommandFactory>::command(),
        &recipe_keys,
        "[set by the stage recipes: override with --stage1/--stage2 KEY=VALUE]",
    );
    let args = derma_train::cli::attach_negative_lists(&command, std::env::args_os());
    let matches = command.get_matches_from(args);
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let config_file = cli.train.config.clone();
    let out = cli.train.out.clone();
    let config = cli.train.into_config()?;
    // What the stage configurations are made from must survive TOML (integers, UTF-8 paths),
    // named by its flag; the rest is checked per stage below.
    config.check_storable().map_err(|e| anyhow::anyhow!(e))?;
    let mut base: toml::Table = toml::from_str(&config.to_toml()).map_err(|e| anyhow::anyhow!("the merged configuration: {e}"))?;
    base.remove("out");
    let set = table(&cli.set, "set")?;
    for (k, v) in &set {
        base.insert(k.clone(), v.clone());
    }
    let options = CascadeOptions { base, stage1: table(&cli.stage1, "stage1")?, stage2: table(&cli.stage2, "stage2")?, recalls: cli.recall };
    // Every flag checked before any work; a refused value from the --config file says where
    // it is (unless the command line, --set or a --stageN sets that key too).
    let given: Vec<String> = matches
        .ids()
        .filter(|id| matches.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.as_str().to_string())
        .chain(options.stage1.keys().chain(options.stage2.keys()).cloned())
        .chain(set.keys().cloned())
        .collect();
    options.configs_for(cli.resume).map_err(|e| {
        anyhow::anyhow!("{}", derma_train::cli::with_config_source(&format!("{e:#}"), config_file.as_deref(), |key| {
            // The flag, or the top-level key a --set / --stageN table replaces (`augment_knobs`).
            given.iter().any(|g| g == derma_train::cli::flag_of_key(key) || key.split('.').next() == Some(g.as_str()))
        }))
    })?;
    for w in options.ignored_settings() {
        eprintln!("{w}");
    }
    if cli.resume && out.is_none() {
        anyhow::bail!("--resume needs --out DIR, the interrupted cascade's folder");
    }
    let out = out.unwrap_or_else(cascade::default_out);
    if cli.resume {
        if !out.join("stage1").join("config.toml").is_file() {
            anyhow::bail!("--resume: {} holds no cascade stage 1 (stage1/config.toml) to continue", out.display());
        }
    } else {
        // An interrupted cascade (stage folders, no cascade.json) is continued with --resume:
        // --overwrite would throw away a finished stage 1.
        if !cli.overwrite && out.join("stage1").is_dir() && !out.join("cascade.json").is_file() {
            if let Some((s, why)) = ["stage1", "stage2"].iter().find_map(|s| derma_train::checkpoint::diverged(&out.join(s)).map(|why| (s, why))) {
                anyhow::bail!(
                    "--out {}: the folder holds a cascade whose {s} diverged ({why}): change its settings and pass --overwrite \
                     to start over",
                    out.display()
                );
            }
            anyhow::bail!(
                "--out {}: the folder holds an interrupted cascade (stage folders, no cascade.json): rerun with the same flags \
                 plus --resume to continue it, or pass --overwrite to start over",
                out.display()
            );
        }
        report::check_out_is_free(&out, &["cascade.json", "stage1", "stage2"], cli.overwrite)?;
    }
    // With --overwrite, cascade::run removes the earlier outputs once its settings and data
    // have resolved.
    if cli.resume {
        // SAFETY: only the main thread runs yet (no data loading, no device, no pool).
        unsafe { backend::restore_optimizer_state_on_the_cpu() };
    }
    let backend = backend::select(&TrainConfig::from_layers(&[&options.base]).map_err(|e| anyhow::anyhow!(e))?.backend)?;
    backend::explain_out_of_memory("Give the stages a smaller batch_size (or image size) in the recipe and run it again.".into());
    cascade::run(&options, &out, &backend.device, backend.name, cli.resume)?;
    Ok(())
}
