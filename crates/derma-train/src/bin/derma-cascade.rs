//! `derma-cascade`: a two-stage screening cascade — a high-recall screener (weighted CE, 1:2
//! undersampling, threshold recall:0.99) and a specialist (focal loss) trained on the images
//! the screener flags; reports precision at 99% / 98% recall for stage 1 alone vs the cascade.
//! See `derma_train::cascade`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use derma_train::backend;
use derma_train::cascade::{self, CascadeOptions, parse_assignment};
use derma_train::sweep::merge_config;

/// Train and evaluate a two-stage screening cascade.
#[derive(Parser, Debug)]
#[command(name = "derma-cascade", version, about = "Train and evaluate a two-stage screening cascade (screener + specialist)", allow_negative_numbers = true)]
struct Cli {
    /// Base TOML config of both stages (missing keys keep the built-in defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output folder: stage1/, stage2/, cascade.json, cascade.md (default runs/cascade-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A MedMNIST flag (dermamnist, ...) or folder | csv | cbis-ddsm.
    #[arg(long)]
    dataset: Option<String>,
    /// Train on this MedMNIST-layout .npz instead of the downloaded file.
    #[arg(long)]
    npz: Option<PathBuf>,
    /// Cache folder (default: $MEDMNIST_ROOT, else ~/.medmnist).
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// --dataset folder: one subfolder per class; cbis-ddsm: the image root.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// --dataset csv / cbis-ddsm manifest(s) (repeat the flag for several).
    #[arg(long)]
    manifest: Vec<PathBuf>,
    /// MedMNIST file resolution: 28, 64, 128 or 224.
    #[arg(long)]
    size: Option<u32>,
    /// Training resolution.
    #[arg(long)]
    image_size: Option<usize>,
    /// Never touch the network.
    #[arg(long)]
    offline: bool,
    /// Binary task: these classes (names or indices, comma-separated) vs the rest.
    #[arg(long, value_delimiter = ',')]
    positive_classes: Option<Vec<String>>,
    /// Augmentation: none, natural or mammo.
    #[arg(long)]
    augment: Option<String>,
    /// auto, wgpu or cpu.
    #[arg(long)]
    backend: Option<String>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    #[arg(long)]
    warmup_epochs: Option<f64>,
    /// MobileNetV2 width multiplier.
    #[arg(long)]
    width: Option<f64>,
    /// 32, 16 or 8.
    #[arg(long)]
    output_stride: Option<usize>,
    #[arg(long)]
    dropout: Option<f64>,
    /// none, imagenet or a weight file.
    #[arg(long)]
    pretrained: Option<String>,
    #[arg(long)]
    seed: Option<u64>,
    /// Best epoch by: auc, bal_acc, acc, loss, ap, f2.
    #[arg(long)]
    select_metric: Option<String>,
    /// Any config key for both stages, KEY=VALUE (TOML value), repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// A config key over stage 1's recipe (loss ce, class_weights balanced, sampler
    /// undersample, undersample_ratio 2, threshold recall:0.99), repeatable.
    #[arg(long = "stage1", value_name = "KEY=VALUE")]
    stage1: Vec<String>,
    /// A config key over stage 2's recipe (loss focal, alpha 0.75, gamma 1, threshold
    /// recall:0.99), repeatable.
    #[arg(long = "stage2", value_name = "KEY=VALUE")]
    stage2: Vec<String>,
    /// Recall targets of the report (the first gives the confusion matrix).
    #[arg(long, value_delimiter = ',', default_value = "0.99,0.98")]
    recall: Vec<f64>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
    let cli = Cli::parse();
    let mut base = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--config {}: cannot read it: {e}", path.display()))?;
            toml::from_str::<toml::Table>(&text).map_err(|e| anyhow::anyhow!("--config {}: {e}", path.display()))?
        }
        None => toml::Table::new(),
    };
    let path = |p: &PathBuf| toml::Value::String(p.display().to_string());
    let mut set = |k: &str, v: Option<toml::Value>| {
        if let Some(v) = v {
            base.insert(k.to_string(), v);
        }
    };
    use toml::Value as V;
    set("dataset", cli.dataset.clone().map(V::String));
    set("npz", cli.npz.as_ref().map(path));
    set("data_root", cli.data_root.as_ref().map(path));
    set("data_dir", cli.data_dir.as_ref().map(path));
    set("manifest", (!cli.manifest.is_empty()).then(|| V::Array(cli.manifest.iter().map(path).collect())));
    set("size", cli.size.map(|v| V::Integer(v.into())));
    set("image_size", cli.image_size.map(|v| V::Integer(v as i64)));
    set("offline", cli.offline.then_some(V::Boolean(true)));
    set("positive_classes", cli.positive_classes.clone().map(|v| V::Array(v.into_iter().map(V::String).collect())));
    set("augment", cli.augment.clone().map(V::String));
    set("backend", cli.backend.clone().map(V::String));
    set("epochs", cli.epochs.map(|v| V::Integer(v as i64)));
    set("batch_size", cli.batch_size.map(|v| V::Integer(v as i64)));
    set("lr", cli.lr.map(V::Float));
    set("weight_decay", cli.weight_decay.map(V::Float));
    set("warmup_epochs", cli.warmup_epochs.map(V::Float));
    set("width", cli.width.map(V::Float));
    set("output_stride", cli.output_stride.map(|v| V::Integer(v as i64)));
    set("dropout", cli.dropout.map(V::Float));
    set("pretrained", cli.pretrained.clone().map(V::String));
    set("seed", cli.seed.map(|v| V::Integer(v as i64)));
    set("select_metric", cli.select_metric.clone().map(V::String));
    for (k, v) in table(&cli.set, "set")? {
        base.insert(k, v);
    }
    let options = CascadeOptions { base, stage1: table(&cli.stage1, "stage1")?, stage2: table(&cli.stage2, "stage2")?, recalls: cli.recall };
    options.configs()?; // every flag checked before any work
    let out = cli.out.unwrap_or_else(cascade::default_out);
    let backend = backend::select(&merge_config(&[&options.base]).map_err(|e| anyhow::anyhow!(e))?.backend)?;
    cascade::run(&options, &out, &backend.device, backend.name)?;
    Ok(())
}
