//! The run configuration: `configs/dermamnist.toml` (built in) or `--config FILE`, overridden
//! by flags, validated before any work, and written to the run folder as `config.toml`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use derma_data::{AugmentPreset, Sampler};
use serde::{Deserialize, Serialize};

use crate::loss::{Alpha, LossConfig, LossKind};

/// The built-in defaults (the repository's `configs/dermamnist.toml`).
pub const DEFAULT_CONFIG: &str = include_str!("../../../configs/dermamnist.toml");

/// Class weights of the loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassWeights {
    /// `"none"` or `"balanced"`.
    Named(String),
    /// Explicit per-class weights.
    Values(Vec<f64>),
}

impl FromStr for ClassWeights {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "balanced" => Ok(Self::Named(s.into())),
            _ => parse_list(s)
                .map(Self::Values)
                .map_err(|_| format!("--class-weights `{s}`: expected none, balanced or a list like 1,2.5,4")),
        }
    }
}

/// Parses `0.25` or `0.1,0.2,0.7`.
pub fn parse_list(s: &str) -> Result<Vec<f64>, String> {
    s.split(',')
        .map(|x| x.trim().parse::<f64>().map_err(|_| format!("`{x}` is not a number")))
        .collect()
}

/// Parses `--alpha`: a scalar or a per-class list.
pub fn parse_alpha(s: &str) -> Result<Alpha, String> {
    let v = parse_list(s).map_err(|e| format!("--alpha: {e}"))?;
    Ok(if v.len() == 1 { Alpha::Scalar(v[0]) } else { Alpha::PerClass(v) })
}

/// Everything a training run is made of. Field names are the config keys; flags use dashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// MedMNIST dataset flag.
    pub dataset: String,
    /// MedMNIST file resolution (28, 64, 128, 224).
    pub size: u32,
    /// Training resolution (default: `size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// A MedMNIST-layout `.npz` to train on instead of the catalogue file (no download, no
    /// md5 check; labels are those of `dataset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub npz: Option<PathBuf>,
    /// Cache folder of the MedMNIST files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_root: Option<PathBuf>,
    /// Never touch the network.
    pub offline: bool,
    /// Binary view: these classes (names or indices) are positive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_classes: Option<Vec<String>>,
    /// Augmentation preset.
    pub augment: AugmentPreset,
    /// Width multiplier.
    pub width: f64,
    /// Output stride (32, 16, 8).
    pub output_stride: usize,
    /// Dropout before the classifier.
    pub dropout: f64,
    /// `none`, `imagenet` or a weight file.
    pub pretrained: String,
    /// Epochs training only the classifier (backbone frozen, its batch norms on running
    /// statistics) before everything is unfrozen.
    pub freeze_backbone_epochs: usize,
    /// Learning-rate multiplier of the backbone (the classifier gets `lr`).
    pub backbone_lr_mult: f64,
    /// Input normalisation and padding of the weights (resolved from `pretrained`; written to
    /// `config.toml` for the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_norm: Option<derma_model::InputNorm>,
    /// Convolution padding of the weights (resolved from `pretrained`, recorded like
    /// `input_norm` so the model can be rebuilt from the run folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<derma_model::Padding>,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Linear warmup length in epochs.
    pub warmup_epochs: f64,
    /// Seed of initialisation, sampling and augmentation.
    pub seed: u64,
    /// Loss.
    pub loss: LossKind,
    /// Focal γ.
    pub gamma: f64,
    /// Focal α (absent: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<Alpha>,
    /// Class weights.
    pub class_weights: ClassWeights,
    /// Combined loss: BCE weight.
    pub bce_weight: f64,
    /// Combined loss: focal weight.
    pub focal_weight: f64,
    /// `none`, `weighted` or `undersample`.
    pub sampler: String,
    /// Weighted sampler exponent.
    pub sampler_power: f64,
    /// Weighted sampler draws per epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_per_epoch: Option<usize>,
    /// Undersampling cap ratio.
    pub undersample_ratio: f64,
    /// Validation metric that picks the best epoch.
    pub select_metric: String,
    /// Operating-threshold rule of binary tasks.
    pub threshold: String,
    /// `auto`, `wgpu` or `cpu`.
    pub backend: String,
    /// Run folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        toml::from_str(DEFAULT_CONFIG).expect("configs/dermamnist.toml is a valid config")
    }
}

impl TrainConfig {
    /// Reads a TOML config; missing keys take the built-in defaults.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--config {}: cannot read it: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| anyhow::anyhow!("--config {}: {e}", path.display()))
    }

    /// Parses TOML over the built-in defaults.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let mut base: toml::Table = toml::from_str(DEFAULT_CONFIG).map_err(|e| e.to_string())?;
        let user: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        for (k, v) in user {
            base.insert(k, v);
        }
        toml::Value::Table(base).try_into().map_err(|e: toml::de::Error| e.to_string())
    }

    /// The TOML written to the run folder.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a TrainConfig always serialises")
    }

    /// The training resolution.
    pub fn image_size(&self) -> usize {
        self.image_size.unwrap_or(self.size as usize)
    }

    /// The sampler.
    pub fn sampler(&self) -> Result<Sampler, String> {
        let s = match self.sampler.as_str() {
            "none" => Sampler::Shuffle,
            "weighted" => Sampler::Weighted {
                power: self.sampler_power,
                samples_per_epoch: self.samples_per_epoch,
            },
            "undersample" => Sampler::Undersample { ratio: self.undersample_ratio },
            other => return Err(format!("--sampler `{other}`: expected none, weighted or undersample")),
        };
        s.validate()?;
        Ok(s)
    }

    /// The loss, with `balanced` weights resolved from the training class counts.
    pub fn loss(&self, train_counts: &[usize]) -> Result<LossConfig, String> {
        let class_weights = match &self.class_weights {
            ClassWeights::Named(n) if n == "none" => None,
            ClassWeights::Named(n) if n == "balanced" => {
                Some(derma_data::balanced_class_weights(train_counts).map_err(|e| format!("--class-weights balanced: {e}"))?)
            }
            ClassWeights::Named(n) => {
                return Err(format!("--class-weights `{n}`: expected none, balanced or a list of numbers"));
            }
            ClassWeights::Values(v) => Some(v.clone()),
        };
        let config = LossConfig {
            kind: self.loss,
            gamma: self.gamma,
            alpha: self.alpha.clone(),
            class_weights,
            bce_weight: self.bce_weight,
            focal_weight: self.focal_weight,
        };
        config.validate(train_counts.len())?;
        Ok(config)
    }

    /// Checks every value that does not need the data, naming the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        if ![28, 64, 128, 224].contains(&self.size) {
            return Err(format!("--size must be 28, 64, 128 or 224, got {}", self.size));
        }
        let image = self.image_size();
        if !(16..=1024).contains(&image) {
            return Err(format!("--image-size must be in 16..=1024, got {image}"));
        }
        if self.epochs == 0 {
            return Err("--epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return Err("--batch-size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!("--lr must be > 0, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(format!("--weight-decay must be >= 0, got {}", self.weight_decay));
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return Err(format!("--warmup-epochs must be >= 0, got {}", self.warmup_epochs));
        }
        if !(self.width.is_finite() && self.width > 0.0 && self.width <= 4.0) {
            return Err(format!("--width must be in (0, 4], got {}", self.width));
        }
        if ![8, 16, 32].contains(&self.output_stride) {
            return Err(format!("--output-stride must be 8, 16 or 32, got {}", self.output_stride));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("--dropout must be in [0, 1), got {}", self.dropout));
        }
        if !(self.gamma.is_finite() && self.gamma >= 0.0) {
            return Err(format!("--gamma must be >= 0, got {}", self.gamma));
        }
        if let Some(Alpha::Scalar(a)) = self.alpha
            && !(a.is_finite() && a <= 1.0)
        {
            return Err(format!("--alpha must be in [0, 1] (negative disables it), got {a}"));
        }
        if let Some(Alpha::PerClass(v)) = &self.alpha
            && v.iter().any(|a| !(a.is_finite() && (0.0..=1.0).contains(a)))
        {
            return Err(format!("--alpha values must be in [0, 1], got {v:?}"));
        }
        if let ClassWeights::Named(n) = &self.class_weights
            && n != "none"
            && n != "balanced"
        {
            return Err(format!("--class-weights `{n}`: expected none, balanced or a list of numbers"));
        }
        self.sampler()?;
        if !["auto", "wgpu", "cpu"].contains(&self.backend.as_str()) {
            return Err(format!("--backend `{}`: expected auto, wgpu or cpu", self.backend));
        }
        let binary = self.positive_classes.is_some();
        let metrics: &[&str] = if binary {
            &["auc", "bal_acc", "acc", "loss", "ap", "f2", "sens@spec"]
        } else {
            &["auc", "bal_acc", "acc", "loss"]
        };
        if !metrics.contains(&self.select_metric.as_str()) {
            return Err(format!(
                "--select-metric `{}`: expected one of {}{}",
                self.select_metric,
                metrics.join(", "),
                if binary { "" } else { " (ap, f2, sens@spec need a binary task: --positive-classes)" }
            ));
        }
        let rule: derma_eval::ThresholdRule = self
            .threshold
            .parse()
            .map_err(|e| format!("--threshold: {e}"))?;
        if self.select_metric == "sens@spec" && !matches!(rule, derma_eval::ThresholdRule::MinSpecificity(_)) {
            return Err("--select-metric sens@spec needs --threshold min-spec:<floor>".into());
        }
        if self.pretrained != "none" && self.pretrained != "imagenet" && !Path::new(&self.pretrained).is_file() {
            return Err(format!("--pretrained `{}`: expected none, imagenet or an existing weight file", self.pretrained));
        }
        if self.pretrained == "imagenet" && self.width != 1.0 {
            return Err(format!("--pretrained imagenet holds the width-1.0 network; got --width {}", self.width));
        }
        if self.freeze_backbone_epochs >= self.epochs && self.freeze_backbone_epochs > 0 {
            return Err(format!(
                "--freeze-backbone-epochs {} must be below --epochs {} (the backbone would never train)",
                self.freeze_backbone_epochs, self.epochs
            ));
        }
        if !(self.backbone_lr_mult.is_finite() && self.backbone_lr_mult > 0.0) {
            return Err(format!("--backbone-lr-mult must be > 0, got {}", self.backbone_lr_mult));
        }
        Ok(())
    }

    /// Warnings about settings that are legal but usually a mistake.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let weighted = !matches!(&self.class_weights, ClassWeights::Named(n) if n == "none");
        let alpha = matches!(&self.alpha, Some(Alpha::Scalar(a)) if *a >= 0.0 && *a != 0.5)
            || matches!(&self.alpha, Some(Alpha::PerClass(_)));
        let resampled = self.sampler != "none";
        let alpha_used = alpha && matches!(self.loss, LossKind::Focal | LossKind::Combined);
        let corrections = [(resampled, "a rebalancing sampler"), (weighted, "class weights"), (alpha_used, "focal alpha")];
        let on: Vec<&str> = corrections.iter().filter(|c| c.0).map(|c| c.1).collect();
        if on.len() > 1 {
            w.push(format!(
                "warning: {} both correct for class imbalance; stacking them over-corrects and \
                 over-predicts the minority class",
                on.join(" and ")
            ));
        }
        w
    }
}
