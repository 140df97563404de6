//! `derma-train`: train MobileNetV2 on DermaMNIST (or a binary view of it) and write a run
//! folder. Flags override the config file (`configs/dermamnist.toml` is built in).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use derma_data::AugmentPreset;
use derma_train::config::{ClassWeights, TrainConfig, parse_alpha};
use derma_train::{LossKind, backend, train};

/// Train MobileNetV2 for imbalanced medical image classification.
#[derive(Parser, Debug)]
#[command(name = "derma-train", version, about, allow_negative_numbers = true)]
struct Cli {
    /// TOML config replacing the built-in `configs/dermamnist.toml` (missing keys keep defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A MedMNIST flag (dermamnist, breastmnist, ...) or folder | csv | cbis-ddsm.
    #[arg(long)]
    dataset: Option<String>,
    /// --dataset folder: one subfolder of images per class; cbis-ddsm: the image root.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// --dataset csv: path,label[,patient_id][,split]; cbis-ddsm: case-description CSVs
    /// (repeat the flag for several).
    #[arg(long)]
    manifest: Vec<PathBuf>,
    /// 16-bit intensity window: percentile:0.5,99.5 | fixed:LO,HI | none.
    #[arg(long)]
    intensity: Option<String>,
    /// How file images become square: crop | pad | stretch.
    #[arg(long)]
    resize: Option<String>,
    /// Patient-level train,val,test fractions (file datasets without a split column).
    #[arg(long, value_delimiter = ',', num_args = 3)]
    split_fractions: Option<Vec<f64>>,
    /// Model input channels: 3, or 1 (grayscale stem).
    #[arg(long)]
    in_channels: Option<usize>,
    /// Cache folder (default: $MEDMNIST_ROOT, else ~/.medmnist).
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Train on this MedMNIST-layout .npz instead of the downloaded file.
    #[arg(long)]
    npz: Option<PathBuf>,
    /// MedMNIST file resolution: 28, 64, 128 or 224.
    #[arg(long)]
    size: Option<u32>,
    /// Training resolution (default: --size).
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
    augment: Option<AugmentPreset>,
    /// Augmentation knob: horizontal flip probability.
    #[arg(long)]
    hflip: Option<f64>,
    /// Augmentation knob: vertical flip probability.
    #[arg(long)]
    vflip: Option<f64>,
    /// Augmentation knob: random resized crop area MIN,MAX.
    #[arg(long, value_delimiter = ',', num_args = 2)]
    crop_scale: Option<Vec<f64>>,
    /// Augmentation knob: random resized crop aspect ratio MIN,MAX.
    #[arg(long, value_delimiter = ',', num_args = 2)]
    crop_ratio: Option<Vec<f64>>,
    /// Augmentation knob: maximum rotation in degrees.
    #[arg(long)]
    rotation: Option<f64>,
    /// Augmentation knob: maximum translation (fraction of the size).
    #[arg(long)]
    translate: Option<f64>,
    /// Augmentation knob: affine zoom MIN,MAX.
    #[arg(long, value_delimiter = ',', num_args = 2)]
    zoom: Option<Vec<f64>>,
    /// Augmentation knob: brightness jitter.
    #[arg(long)]
    brightness: Option<f64>,
    /// Augmentation knob: contrast jitter.
    #[arg(long)]
    contrast: Option<f64>,
    /// Run folder (default: runs/<dataset>-<timestamp>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// auto, wgpu or cpu.
    #[arg(long)]
    backend: Option<String>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate (AdamW).
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    #[arg(long)]
    warmup_epochs: Option<f64>,
    /// MobileNetV2 width multiplier.
    #[arg(long)]
    width: Option<f64>,
    /// 32 (torchvision), 16 or 8.
    #[arg(long)]
    output_stride: Option<usize>,
    #[arg(long)]
    dropout: Option<f64>,
    /// none, imagenet or a torchvision .pth/.safetensors file.
    #[arg(long)]
    pretrained: Option<String>,
    #[arg(long)]
    seed: Option<u64>,
    /// Train only the classifier for the first N epochs (backbone frozen), then everything.
    #[arg(long)]
    freeze_backbone_epochs: Option<usize>,
    /// Backbone learning rate = lr x this (the classifier gets lr).
    #[arg(long)]
    backbone_lr_mult: Option<f64>,
    /// ce, bce, focal or combined.
    #[arg(long)]
    loss: Option<LossKind>,
    /// Focal focusing parameter (>= 0).
    #[arg(long)]
    gamma: Option<f64>,
    /// Focal alpha: a scalar or a per-class comma list; negative disables it.
    #[arg(long, allow_hyphen_values = true)]
    alpha: Option<String>,
    /// none, balanced or w0,w1,...
    #[arg(long)]
    class_weights: Option<ClassWeights>,
    #[arg(long)]
    bce_weight: Option<f64>,
    #[arg(long)]
    focal_weight: Option<f64>,
    /// none, weighted or undersample.
    #[arg(long)]
    sampler: Option<String>,
    #[arg(long)]
    sampler_power: Option<f64>,
    #[arg(long)]
    samples_per_epoch: Option<usize>,
    #[arg(long)]
    undersample_ratio: Option<f64>,
    /// auc, bal_acc, acc, loss (binary also ap, f2, sens@spec).
    #[arg(long)]
    select_metric: Option<String>,
    /// Binary operating threshold: min-spec:0.80, recall:0.99, fbeta:2, youden, fixed:0.5.
    #[arg(long)]
    threshold: Option<String>,
}

impl Cli {
    fn into_config(self) -> anyhow::Result<TrainConfig> {
        let mut c = match &self.config {
            Some(path) => TrainConfig::from_file(path)?,
            None => TrainConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { c.$field = v; } )* };
        }
        macro_rules! set_opt {
            ($($field:ident),*) => { $( if self.$field.is_some() { c.$field = self.$field; } )* };
        }
        set!(dataset, size, intensity, resize, in_channels, backend, epochs, batch_size, lr, weight_decay, warmup_epochs, width,
             output_stride, dropout, pretrained, seed, freeze_backbone_epochs, backbone_lr_mult, loss, gamma, class_weights, bce_weight, focal_weight,
             sampler, sampler_power, undersample_ratio, select_metric, threshold);
        set_opt!(data_root, data_dir, npz, image_size, positive_classes, augment, out, samples_per_epoch);
        if !self.manifest.is_empty() {
            c.manifest = Some(self.manifest);
        }
        if let Some(f) = self.split_fractions {
            c.split_fractions = [f[0], f[1], f[2]];
        }
        let pair = |v: Vec<f64>| [v[0], v[1]];
        let k = &mut c.augment_knobs;
        macro_rules! knob {
            ($($field:ident),*) => { $( if self.$field.is_some() { k.$field = self.$field; } )* };
        }
        knob!(hflip, vflip, rotation, translate, brightness, contrast);
        macro_rules! knob_pair {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { k.$field = Some(pair(v)); } )* };
        }
        knob_pair!(crop_scale, crop_ratio, zoom);
        if self.offline {
            c.offline = true;
        }
        if let Some(a) = &self.alpha {
            c.alpha = Some(parse_alpha(a).map_err(|e| anyhow::anyhow!(e))?);
        }
        Ok(c)
    }
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

fn run() -> anyhow::Result<()> {
    let config = Cli::parse().into_config()?;
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    let out = config.out.clone().unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from("runs").join(format!("{}-{stamp}", config.dataset))
    });
    let backend = backend::select(&config.backend)?;
    train::run(&config, &backend.device, backend.name, &out)?;
    Ok(())
}
