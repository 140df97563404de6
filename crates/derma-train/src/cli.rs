//! The training flags shared by the binaries (`derma-train`, `derma-cascade`), and the common
//! way a binary reports an error.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Command};
use derma_data::AugmentPreset;

use crate::LossKind;
use crate::config::{ClassWeights, TrainConfig, parse_alpha};

/// Every training flag; each overrides the config key of the same name (dashes for
/// underscores). Binaries flatten it into their own command line.
#[derive(Args, Debug, Default)]
pub struct TrainArgs {
    /// TOML config replacing the built-in `configs/dermamnist.toml` (missing keys keep defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A MedMNIST flag (dermamnist, breastmnist, ...) or folder | csv | cbis-ddsm.
    #[arg(long)]
    pub dataset: Option<String>,
    /// --dataset folder: one subfolder of images per class; cbis-ddsm: the image root.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// --dataset csv: path,label[,patient_id][,split]; cbis-ddsm: case-description CSVs
    /// (repeat the flag for several).
    #[arg(long)]
    pub manifest: Vec<PathBuf>,
    /// 16-bit intensity window: percentile:0.5,99.5 | fixed:LO,HI | none.
    #[arg(long)]
    pub intensity: Option<String>,
    /// How file images become square: crop | pad | stretch.
    #[arg(long)]
    pub resize: Option<String>,
    /// Patient-level train,val,test fractions (file datasets without a split column), as
    /// `0.7,0.1,0.2` or `0.7 0.1 0.2`.
    #[arg(long, value_delimiter = ',', num_args = 1..=3, allow_negative_numbers = true)]
    pub split_fractions: Option<Vec<f64>>,
    /// Folder/CSV datasets without patient ids: a regular expression finding the patient id
    /// in each image path relative to the folder or CSV (group `patient`, else the first
    /// group, else the whole match), e.g. 'P_\d+'.
    #[arg(long)]
    pub patient_pattern: Option<String>,
    /// Model input channels: 3, or 1 (grayscale stem).
    #[arg(long)]
    pub in_channels: Option<usize>,
    /// Cache folder (default: $MEDMNIST_ROOT, else ~/.medmnist).
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Train on this MedMNIST-layout .npz instead of the downloaded file.
    #[arg(long)]
    pub npz: Option<PathBuf>,
    /// MedMNIST file resolution: 28, 64, 128 or 224.
    #[arg(long)]
    pub size: Option<u32>,
    /// Training resolution (default: --size; file datasets 384).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Never touch the network.
    #[arg(long)]
    pub offline: bool,
    /// Binary task: these classes (names or indices, comma-separated) vs the rest.
    #[arg(long, value_delimiter = ',')]
    pub positive_classes: Option<Vec<String>>,
    /// Augmentation: none, natural or mammo (default: none; file datasets mammo).
    #[arg(long)]
    pub augment: Option<AugmentPreset>,
    /// Augmentation knob: horizontal flip probability.
    #[arg(long)]
    pub hflip: Option<f64>,
    /// Augmentation knob: vertical flip probability.
    #[arg(long)]
    pub vflip: Option<f64>,
    /// Augmentation knob: random resized crop area MIN,MAX (`A,B` or `A B`).
    #[arg(long, value_delimiter = ',', num_args = 1..=2, allow_negative_numbers = true)]
    pub crop_scale: Option<Vec<f64>>,
    /// Augmentation knob: random resized crop aspect ratio MIN,MAX (`A,B` or `A B`).
    #[arg(long, value_delimiter = ',', num_args = 1..=2, allow_negative_numbers = true)]
    pub crop_ratio: Option<Vec<f64>>,
    /// Augmentation knob: maximum rotation in degrees.
    #[arg(long)]
    pub rotation: Option<f64>,
    /// Augmentation knob: maximum translation (fraction of the size).
    #[arg(long)]
    pub translate: Option<f64>,
    /// Augmentation knob: affine zoom MIN,MAX (`A,B` or `A B`).
    #[arg(long, value_delimiter = ',', num_args = 1..=2, allow_negative_numbers = true)]
    pub zoom: Option<Vec<f64>>,
    /// Augmentation knob: brightness jitter.
    #[arg(long)]
    pub brightness: Option<f64>,
    /// Augmentation knob: contrast jitter.
    #[arg(long)]
    pub contrast: Option<f64>,
    /// Augmentation knob: saturation jitter (colour images).
    #[arg(long)]
    pub saturation: Option<f64>,
    /// Augmentation knob: hue jitter in turns, at most 0.5 (colour images).
    #[arg(long)]
    pub hue: Option<f64>,
    /// Run folder (default: runs/<dataset>-<timestamp>; derma-cascade: runs/cascade-<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// auto, wgpu, wgpu-software (a software Vulkan adapter: checks only) or cpu.
    #[arg(long)]
    pub backend: Option<String>,
    /// Training epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per optimisation step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate (AdamW).
    #[arg(long)]
    pub lr: Option<f64>,
    /// AdamW weight decay (decoupled).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// AdamW ε, added to the square root of the second moment (PyTorch's `eps`).
    #[arg(long)]
    pub adam_epsilon: Option<f64>,
    /// Linear learning-rate warmup (epochs, fractions allowed), then cosine decay to 0.
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// MobileNetV2 width multiplier.
    #[arg(long)]
    pub width: Option<f64>,
    /// 32 (torchvision), 16 or 8.
    #[arg(long)]
    pub output_stride: Option<usize>,
    /// With --output-stride 16/8: dilate the later layers as DeepLab (true) or not (false).
    #[arg(long)]
    pub dilate: Option<bool>,
    /// Dropout before the classifier.
    #[arg(long)]
    pub dropout: Option<f64>,
    /// none, imagenet or a torchvision .pth/.safetensors file.
    #[arg(long)]
    pub pretrained: Option<String>,
    /// Seed of the initialisation, data order, augmentation and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train only the classifier for the first N epochs (backbone frozen), then everything.
    #[arg(long)]
    pub freeze_backbone_epochs: Option<usize>,
    /// Backbone learning rate = lr x this (the classifier gets lr).
    #[arg(long)]
    pub backbone_lr_mult: Option<f64>,
    /// Batch norms use their running statistics throughout training (small batches; weights
    /// with folded batch norms such as the converted TF-lite ones).
    #[arg(long)]
    pub freeze_bn: bool,
    /// Training-mode batch norm: fused (one autodiff node with the ReLU6 after it, one or two
    /// GPU kernels per direction: the default) or burn (Burn's own batch_norm_train and relu6, ~18
    /// kernel launches per batch norm; the same arithmetic: docs/performance.md).
    #[arg(long)]
    pub batch_norm: Option<derma_model::BatchNormImpl>,
    /// Depthwise convolutions: kernels (derma-model's node, its own GPU kernels: the default)
    /// or burn (Burn's convolution and its backward pass; the same arithmetic up to rounding:
    /// docs/performance.md, "Fifth session").
    #[arg(long)]
    pub depthwise: Option<derma_model::DepthwiseImpl>,
    /// 1x1 convolutions: burn (Burn's autotuned convolutions: the default) or kernels
    /// (derma-model's pointwise node, one tiled matrix-product kernel in three directions on
    /// the GPU; the same arithmetic up to summation order: docs/performance.md, "Eleventh
    /// session").
    #[arg(long)]
    pub pointwise: Option<derma_model::PointwiseImpl>,
    /// The training step: auto (captured on a GPU, eager on the CPU; the default),
    /// eager, or captured (recorded once as a graph and replayed: on wgpu the recorded kernels
    /// without Burn's per-operation host work, the same arithmetic; docs/performance.md).
    #[arg(long)]
    pub step: Option<crate::config::StepMode>,
    /// ce, bce, focal or combined.
    #[arg(long)]
    pub loss: Option<LossKind>,
    /// Focal focusing parameter (>= 0).
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Focal alpha: a scalar or a per-class comma list; negative disables it.
    #[arg(long, allow_hyphen_values = true)]
    pub alpha: Option<String>,
    /// none, balanced or w0,w1,...
    #[arg(long, allow_hyphen_values = true)]
    pub class_weights: Option<ClassWeights>,
    /// Combined loss: weight of the BCE / cross-entropy term.
    #[arg(long)]
    pub bce_weight: Option<f64>,
    /// Combined loss: weight of the focal term.
    #[arg(long)]
    pub focal_weight: Option<f64>,
    /// none, weighted or undersample.
    #[arg(long)]
    pub sampler: Option<String>,
    /// Weighted sampler: per-image weight (1/n_class)^power (1 = balanced, 0.5 = square root).
    #[arg(long)]
    pub sampler_power: Option<f64>,
    /// Weighted sampler: draws per epoch (default: the training set size).
    #[arg(long)]
    pub samples_per_epoch: Option<usize>,
    /// Undersampling: keep at most ratio x the smallest class of every class, re-drawn each epoch.
    #[arg(long)]
    pub undersample_ratio: Option<f64>,
    /// After each epoch, draw the highest-loss training images more often (binary: the
    /// negatives; multi-class: all images).
    #[arg(long)]
    pub hard_negative_mining: bool,
    /// Mining: a mined image is drawn 1 + strength times as often.
    #[arg(long, allow_hyphen_values = true)]
    pub mining_strength: Option<f64>,
    /// Mining: the top fraction (by loss) that is up-weighted, in (0, 1].
    #[arg(long, allow_hyphen_values = true)]
    pub mining_fraction: Option<f64>,
    /// Weight of the auxiliary triplet loss on a training-only embedding head (0 = off).
    #[arg(long, allow_hyphen_values = true)]
    pub metric_weight: Option<f64>,
    /// Triplet margin of the metric loss.
    #[arg(long, allow_hyphen_values = true)]
    pub triplet_margin: Option<f64>,
    /// Dimension of the embedding head.
    #[arg(long)]
    pub embedding_dim: Option<usize>,
    /// auc, bal_acc, acc, loss (binary also ap, f2, sens@spec).
    #[arg(long)]
    pub select_metric: Option<String>,
    /// Early stopping: stop after N epochs without a better --select-metric; 0 = off.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Binary operating threshold: min-spec:0.80, recall:0.99, fbeta:2, youden, fixed:0.5.
    #[arg(long)]
    pub threshold: Option<String>,
    /// Recalibrate the final probabilities on validation: none, temperature, platt (binary), or
    /// bcts (bias-corrected temperature scaling: a bias per class).
    #[arg(long)]
    pub calibrate: Option<crate::config::Calibrate>,
    /// Multi-class decision: argmax, or balanced (arg-max of probability / training class
    /// frequency: maximises balanced accuracy; needs unweighted training or --calibrate bcts).
    #[arg(long)]
    pub decision: Option<crate::config::Decision>,
}

impl TrainArgs {
    /// The configuration: `--config FILE` (else the built-in defaults) with every given flag
    /// applied over it. Not yet validated.
    pub fn into_config(self) -> anyhow::Result<TrainConfig> {
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
        set!(dataset, size, intensity, resize, in_channels, backend, epochs, batch_size, lr, weight_decay, adam_epsilon, warmup_epochs, width,
             output_stride, dilate, dropout, pretrained, seed, freeze_backbone_epochs, backbone_lr_mult, loss, gamma, class_weights, bce_weight, focal_weight,
             sampler, sampler_power, undersample_ratio, mining_strength, mining_fraction, metric_weight, triplet_margin,
             embedding_dim, select_metric, patience, threshold, calibrate, decision, batch_norm, depthwise, pointwise, step);
        set_opt!(data_root, data_dir, npz, patient_pattern, image_size, positive_classes, augment, out, samples_per_epoch);
        if self.freeze_bn {
            c.freeze_bn = true;
        }
        if !self.manifest.is_empty() {
            c.manifest = Some(self.manifest);
        }
        if let Some(f) = self.split_fractions {
            c.split_fractions = exactly::<3>("--split-fractions", f)?;
        }
        let k = &mut c.augment_knobs;
        macro_rules! knob {
            ($($field:ident),*) => { $( if self.$field.is_some() { k.$field = self.$field; } )* };
        }
        knob!(hflip, vflip, rotation, translate, brightness, contrast, saturation, hue);
        macro_rules! knob_pair {
            ($($field:ident),*) => { $( if let Some(v) = self.$field {
                k.$field = Some(exactly::<2>(concat!("--", stringify!($field)).replace('_', "-").as_str(), v)?);
            } )* };
        }
        knob_pair!(crop_scale, crop_ratio, zoom);
        if self.offline {
            c.offline = true;
        }
        if self.hard_negative_mining {
            c.hard_negative_mining = true;
        }
        if let Some(a) = &self.alpha {
            c.alpha = Some(parse_alpha(a).map_err(|e| anyhow::anyhow!(e))?);
        }
        // The config key stays (a default every run carries); the flag given with image files is
        // a mistake for --image-size.
        if let Some(size) = self.size.filter(|_| c.is_file_dataset()) {
            anyhow::bail!(
                "--size {size} picks a MedMNIST file's resolution; --dataset {} reads image files: give the training \
                 resolution with --image-size",
                c.dataset
            );
        }
        Ok(c)
    }
}

/// `cmd` with each training flag's help ending in its default from the built-in config
/// (`configs/dermamnist.toml`), so `--help` and the file cannot disagree.
pub fn with_config_defaults(cmd: Command) -> Command {
    with_config_defaults_except(cmd, &[], "")
}

/// [`with_config_defaults`], except the flags of `keys`, whose help ends in `note` instead (e.g.
/// the keys derma-cascade's stage recipes set).
pub fn with_config_defaults_except(mut cmd: Command, keys: &[String], note: &str) -> Command {
    let defaults: toml::Table = toml::from_str(&TrainConfig::default().to_toml()).expect("the built-in config serialises to TOML");
    // Keys without a default (e.g. `alpha`) still get the note when they are in `keys`.
    let without_default: std::collections::BTreeSet<&String> = keys.iter().filter(|k| !defaults.contains_key(k.as_str())).collect();
    let mut tails: Vec<(String, String)> = without_default.into_iter().map(|k| (k.clone(), note.to_string())).collect();
    for (key, value) in defaults {
        let shown = match &value {
            toml::Value::Table(_) => continue,
            toml::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let tail = if keys.contains(&key) { note.to_string() } else { format!("[config default: {shown}]") };
        tails.push((key, tail));
    }
    for (key, tail) in tails {
        if cmd.get_arguments().any(|a| a.get_id() == key.as_str()) {
            cmd = cmd.mut_arg(key, |a| {
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                a.help(format!("{help} {tail}"))
            });
        }
    }
    cmd
}

/// The command line with a comma-separated list that starts with a minus sign attached to its
/// flag (`--zoom -1,2` becomes `--zoom=-1,2`), for every flag of `command` that takes a
/// comma-separated list. clap reads a word like `-1,2` as unknown short flags and would answer
/// "unexpected argument '-1'"; attached, the numbers reach the range check, whose error names
/// the flag (space-separated negative numbers reach it through the flags'
/// `allow_negative_numbers`). Binaries parse `attach_negative_lists(&command, std::env::args_os())`.
pub fn attach_negative_lists<I: IntoIterator<Item = OsString>>(command: &Command, args: I) -> Vec<OsString> {
    let list_flags: Vec<String> = command
        .get_arguments()
        .filter(|a| a.get_value_delimiter().is_some())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let mut out: Vec<OsString> = Vec::new();
    for arg in args {
        let negative = arg.to_str().is_some_and(|s| {
            let mut chars = s.chars();
            chars.next() == Some('-') && chars.next().is_some_and(|c| c.is_ascii_digit() || c == '.') && s.contains(',')
        });
        match out.last_mut() {
            Some(flag) if negative && flag.to_str().is_some_and(|f| list_flags.iter().any(|l| l == f)) => {
                flag.push("=");
                flag.push(&arg);
            }
            _ => out.push(arg),
        }
    }
    out
}

/// The configuration key a check's message is about: `lr` for "--lr must be > 0, got -0.5",
/// `class_weights` for "--class-weights: ..." (after a `stage N: ` prefix too), and the dotted
/// path of an augmentation knob, `augment_knobs.rotation` for "--rotation
/// (augment_knobs.rotation) must be ..."; `None` when it does not start with a flag.
pub fn key_of_message(message: &str) -> Option<String> {
    let message = match message.strip_prefix("stage ") {
        Some(rest) => rest.split_once(": ").map_or(message, |(_, m)| m),
        None => message,
    };
    let flag = message.strip_prefix("--")?.split([' ', ':']).next()?;
    if flag.is_empty() {
        return None;
    }
    let knob = message.split_once("(augment_knobs.").and_then(|(_, rest)| rest.split_once(')')).map(|(knob, _)| knob);
    Some(match knob {
        Some(knob) => format!("augment_knobs.{knob}"),
        None => flag.replace('-', "_"),
    })
}

/// The flag (its clap id) that sets the configuration key `key` ([`key_of_message`]): the key
/// itself, or a knob's own flag (`augment_knobs.zoom` is `--zoom`).
pub fn flag_of_key(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// `message` (a check's refusal) with where its value came from when that is the `--config`
/// file `file`: the key it is about ([`key_of_message`], a dotted path into a table) is set in
/// the file, and not `given_elsewhere` (on the command line, say; it is handed that key).
pub fn with_config_source(message: &str, file: Option<&std::path::Path>, given_elsewhere: impl Fn(&str) -> bool) -> String {
    let Some((file, key)) = file.zip(key_of_message(message)) else { return message.to_string() };
    let table = std::fs::read_to_string(file).ok().and_then(|t| t.parse::<toml::Table>().ok());
    let in_file = table.is_some_and(|t| {
        let mut path = key.split('.');
        let first = t.get(path.next().unwrap_or_default());
        path.try_fold(first, |value, part| Some(value?.as_table()?.get(part))).flatten().is_some()
    });
    if in_file && !given_elsewhere(&key) {
        format!("{message} (the value of `{key}` in --config {})", file.display())
    } else {
        message.to_string()
    }
}

/// The `N` numbers of a list flag (`A,B,C` or `A B C`), or an error naming the flag.
fn exactly<const N: usize>(flag: &str, values: Vec<f64>) -> anyhow::Result<[f64; N]> {
    let n = values.len();
    values.try_into().map_err(|_| anyhow::anyhow!("{flag}: expected {N} comma-separated numbers, got {n}"))
}

/// The exit of a binary: success, or the error chain on stderr and a failure status.
pub fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        train: TrainArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<TrainConfig> {
        let command = <Cli as clap::CommandFactory>::command();
        let args = attach_negative_lists(&command, std::iter::once("derma-train").chain(args.iter().copied()).map(OsString::from));
        Cli::try_parse_from(args)?.train.into_config()
    }

    #[test]
    fn help_shows_the_config_defaults() {
        let mut cmd = with_config_defaults(<Cli as clap::CommandFactory>::command());
        let help = cmd.render_help().to_string();
        // configs/dermamnist.toml: epochs = 10, lr = 0.001, loss = "ce", threshold = "fixed:0.5".
        for want in ["[config default: 10]", "[config default: 0.001]", "[config default: ce]", "[config default: fixed:0.5]"] {
            assert!(help.contains(want), "{want} missing:\n{help}");
        }
        assert!(help.contains("Training epochs [config default: 10]"), "{help}");

        // derma-cascade's recipe keys carry its note instead, also `alpha`, which has no
        // config default (it is absent from configs/dermamnist.toml), and only once.
        let keys = ["loss".to_string(), "alpha".to_string(), "alpha".to_string()];
        let mut cmd = with_config_defaults_except(<Cli as clap::CommandFactory>::command(), &keys, "[RECIPE]");
        let help = cmd.render_help().to_string();
        let line = |flag: &str| help.lines().skip_while(|l| !l.contains(flag)).take(2).collect::<Vec<_>>().join(" ");
        assert!(line("--loss <LOSS>").contains("[RECIPE]") && !line("--loss <LOSS>").contains("config default"), "{help}");
        assert!(line("--alpha <ALPHA>").contains("[RECIPE]"), "{help}");
        assert_eq!(help.matches("[RECIPE]").count(), 2, "{help}");
        assert!(help.contains("[config default: 10]"), "{help}");
    }

    #[test]
    fn list_flags_take_commas_or_spaces() {
        let c = config(&["--zoom", "0.9,1.1", "--crop-scale", "0.95", "1.0", "--split-fractions", "0.6,0.2,0.2"]).unwrap();
        assert_eq!(c.augment_knobs.zoom, Some([0.9, 1.1]));
        assert_eq!(c.augment_knobs.crop_scale, Some([0.95, 1.0]));
        assert_eq!(c.split_fractions, [0.6, 0.2, 0.2]);
        let c = config(&["--split-fractions", "0.5", "0.25", "0.25", "--crop-ratio", "0.75,1.25"]).unwrap();
        assert_eq!(c.split_fractions, [0.5, 0.25, 0.25]);
        assert_eq!(c.augment_knobs.crop_ratio, Some([0.75, 1.25]));
        for (args, flag) in [
            (vec!["--zoom", "0.9"], "--zoom: expected 2"),
            (vec!["--crop-ratio", "0.5"], "--crop-ratio: expected 2"),
            (vec!["--split-fractions", "0.7,0.3"], "--split-fractions: expected 3"),
        ] {
            let err = format!("{:#}", config(&args).unwrap_err());
            assert!(err.contains(flag), "{args:?}: {err}");
        }
        // A negative first number, comma-separated or not, reaches the range check naming the
        // flag; clap alone answered "unexpected argument '-0' found" to `-0.5,1`.
        for (args, flag) in [
            (vec!["--crop-scale", "-0.5,1"], "--crop-scale"),
            (vec!["--crop-scale", "-0.5", "1"], "--crop-scale"),
            (vec!["--zoom", "-1,2"], "--zoom"),
            (vec!["--crop-ratio", "-.5,2", "--epochs", "3"], "--crop-ratio"),
            (vec!["--dataset", "folder", "--data-dir", ".", "--split-fractions", "-0.1,0.6,0.5"], "--split-fractions"),
            (vec!["--dataset", "folder", "--data-dir", ".", "--split-fractions", "0.6", "-0.1", "0.5"], "--split-fractions"),
            (vec!["--class-weights", "-1,2"], "--class-weights must all be > 0"),
        ] {
            let err = match config(&args) {
                Ok(c) => c.validate().unwrap_err(),
                Err(e) => format!("{e:#}"),
            };
            assert!(err.contains(flag) && !err.contains("unexpected argument"), "{args:?}: {err}");
        }
        // Only a list flag's value is attached: a negative word elsewhere stays what it was.
        let command = <Cli as clap::CommandFactory>::command();
        let args = attach_negative_lists(&command, ["derma-train", "--zoom", "-1,2", "--lr", "-1,2", "-0.5,1"].map(OsString::from));
        assert_eq!(args, ["derma-train", "--zoom=-1,2", "--lr", "-1,2", "-0.5,1"].map(OsString::from));
    }

    /// The key a refusal is about, as the config file spells it (a knob's through its table).
    #[test]
    fn the_key_of_a_message() {
        for (message, key) in [
            ("--lr must be > 0, got -0.5", Some("lr")),
            ("--class-weights: expected 7 numbers", Some("class_weights")),
            ("stage 2: --alpha lists 3 values but there are 2 classes", Some("alpha")),
            ("--rotation (augment_knobs.rotation) must be in [0, 180] degrees, got -5", Some("augment_knobs.rotation")),
            ("--zoom (augment_knobs.zoom) must be [min, max]", Some("augment_knobs.zoom")),
            ("stage 1: --crop-scale (augment_knobs.crop_scale) must be", Some("augment_knobs.crop_scale")),
            ("no flag here", None),
        ] {
            assert_eq!(key_of_message(message).as_deref(), key, "{message}");
        }
        assert_eq!((flag_of_key("augment_knobs.crop_scale"), flag_of_key("lr")), ("crop_scale", "lr"));
    }
}
