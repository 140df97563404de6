//! Pretrained weights: torchvision MobileNetV2 state dicts (`.pth` through burn-store's PyTorch
//! reader, `.safetensors`) mapped onto [`MobileNetV2`], and the input normalisation each weight
//! source was trained with.
//!
//! Loading is strict: every backbone tensor must be present with the right shape, and every
//! tensor in the file must be used (only `num_batches_tracked` is ignored), so a width or
//! architecture mismatch is an error that names the keys. The classifier is loaded only when
//! `keep_classifier` is set; otherwise the task's freshly initialised head stays (head swap).
//! A file in another float precision (F16, BF16, F64) loads cast to the model's (F32), as
//! PyTorch's `load_state_dict` does.

use std::path::Path;

use burn::module::{ModuleMapper, ModuleVisitor, Param, RunningState};
use burn::tensor::FloatDType;
use burn::prelude::*;
use burn_store::{
    ApplyError, ApplyResult, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use serde::{Deserialize, Serialize};

use crate::block::Padding;
use crate::mobilenet::MobileNetV2;

/// How raw `u8` RGB pixels are turned into network inputs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputNorm {
    /// torchvision: `(x / 255 - mean) / std` with the ImageNet mean and std.
    #[serde(rename = "imagenet")]
    ImageNet,
    /// Inception / TF-slim: `x / 127.5 - 1`, range `[-1, 1]` (the TF-lite weights).
    MinusOneToOne,
}

impl InputNorm {
    /// Per-channel `(scale, shift)` so that `input = x * scale + shift` for `x` in `0..=255`.
    pub fn affine(self) -> [(f32, f32); 3] {
        match self {
            InputNorm::ImageNet => {
                const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
                const STD: [f32; 3] = [0.229, 0.224, 0.225];
                std::array::from_fn(|c| (1.0 / (255.0 * STD[c]), -MEAN[c] / STD[c]))
            }
            InputNorm::MinusOneToOne => [(1.0 / 127.5, -1.0); 3],
        }
    }
}

/// The input normalisation and padding a weight file was trained with.
///
/// A `.safetensors` file may say so in its metadata (`input_norm`: `imagenet` or
/// `minus_one_to_one`; `padding`: `symmetric` or `tf_same`), as `scripts/convert_tflite.py`
/// writes it for the TF-lite ImageNet weights; anything else follows torchvision's conventions
/// (ImageNet mean/std, symmetric padding).
pub fn weight_conventions(path: &Path) -> anyhow::Result<(InputNorm, Padding)> {
    let defaults = (InputNorm::ImageNet, Padding::Symmetric);
    if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors")) {
        return Ok(defaults);
    }
    let bad = |why: String| anyhow::anyhow!("{}: not a safetensors file ({why})", path.display());
    let mut file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut len = [0u8; 8];
    std::io::Read::read_exact(&mut file, &mut len).map_err(|e| bad(e.to_string()))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(bad(format!("header of {len} bytes")));
    }
    let mut header = vec![0u8; len as usize];
    std::io::Read::read_exact(&mut file, &mut header).map_err(|e| bad(e.to_string()))?;
    let header: serde_json::Value = serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
    let meta = &header["__metadata__"];
    let norm = match meta["input_norm"].as_str() {
        None | Some("imagenet") => InputNorm::ImageNet,
        Some("minus_one_to_one") => InputNorm::MinusOneToOne,
        Some(other) => anyhow::bail!("{}: unknown input_norm `{other}` in its metadata (expected imagenet or minus_one_to_one)", path.display()),
    };
    let padding = match meta["padding"].as_str() {
        None | Some("symmetric") => Padding::Symmetric,
        Some("tf_same") => Padding::TfSame,
        Some(other) => anyhow::bail!("{}: unknown padding `{other}` in its metadata (expected symmetric or tf_same)", path.display()),
    };
    Ok((norm, padding))
}

/// torchvision key prefix → [`MobileNetV2`] key prefix.
fn torchvision_prefixes() -> Vec<(String, String)> {
    let mut map: Vec<(String, String)> = vec![
        ("features.0.0.".into(), "stem.conv.".into()),
        ("features.0.1.".into(), "stem.bn.".into()),
        ("features.18.0.".into(), "head.conv.".into()),
        ("features.18.1.".into(), "head.bn.".into()),
        ("classifier.1.".into(), "classifier.".into()),
    ];
    // features.1 has no expansion: conv.0 = depthwise, conv.1 = project, conv.2 = its BN.
    let first = [
        ("conv.0.0", "depthwise.conv"),
        ("conv.0.1", "depthwise.bn"),
        ("conv.1", "project"),
        ("conv.2", "project_bn"),
    ];
    let expanded = [
        ("conv.0.0", "expand.conv"),
        ("conv.0.1", "expand.bn"),
        ("conv.1.0", "depthwise.conv"),
        ("conv.1.1", "depthwise.bn"),
        ("conv.2", "project"),
        ("conv.3", "project_bn"),
    ];
    for k in 1..=17 {
        let parts: &[(&str, &str)] = if k == 1 { &first } else { &expanded };
        for (from, to) in parts {
            map.push((format!("features.{k}.{from}."), format!("blocks.{}.{to}.", k - 1)));
        }
    }
    map
}

/// torchvision key → [`MobileNetV2`] key, as `(regex, replacement)` pairs applied in order.
fn torchvision_key_map() -> Vec<(String, String)> {
    torchvision_prefixes().into_iter().map(|(from, to)| (format!("^{}", from.replace('.', r"\.")), to)).collect()
}

/// The torchvision (file) name of a [`MobileNetV2`] key, for messages: `blocks.3.depthwise.conv.weight`
/// → `features.4.conv.1.0.weight`, a batch norm's `gamma`/`beta` → `weight`/`bias` (the
/// PyTorch adapter's renaming undone); a key outside the map as is.
pub fn torchvision_name(model_key: &str) -> String {
    let renamed = torchvision_prefixes()
        .into_iter()
        .find_map(|(file, model)| model_key.strip_prefix(model.as_str()).map(|rest| format!("{file}{rest}")));
    match renamed {
        Some(key) => match key.rsplit_once('.') {
            Some((head, "gamma")) => format!("{head}.weight"),
            Some((head, "beta")) => format!("{head}.bias"),
            _ => key,
        },
        None => model_key.to_string(),
    }
}

/// The key map as a burn-store [`KeyRemapper`].
fn torchvision_remapper() -> KeyRemapper {
    torchvision_key_map()
        .into_iter()
        .fold(KeyRemapper::new(), |r, (from, to)| {
            r.add_pattern(from, to).expect("the torchvision key map is valid regex")
        })
}

/// Loads a torchvision MobileNetV2 state dict into `model`.
///
/// The format follows the extension: `.safetensors`, else PyTorch pickle (`.pth`, `.pt`).
/// With `keep_classifier` the file's classifier must match the model's class count. A model
/// with a 1-channel stem gets the RGB stem folded into one channel for the file's input
/// normalisation ([`weight_conventions`]): see [`fold_gray_stem`].
pub fn load_torchvision(
    model: MobileNetV2,
    path: &Path,
    keep_classifier: bool,
) -> anyhow::Result<MobileNetV2> {
    if !path.is_file() {
        anyhow::bail!("weight file {} does not exist", path.display());
    }
    // A grayscale (1-channel) stem loads the RGB stem and sums it over the colour channels:
    // the same response to a gray image fed as three equal channels.
    let gray_stem = model.stem.conv.weight.dims()[1] == 1;
    // The model's own precision, which every loaded tensor is brought to (see `CastFloats`).
    let dtype: FloatDType = model.stem.conv.weight.val().dtype().into();
    let mut model = model;
    if gray_stem {
        // Detached after the op: a parameter must be a leaf tensor on an autodiff device.
        let w = model.stem.conv.weight.val(); // [out, 1, 3, 3]
        model.stem.conv.weight = Param::from_tensor(w.repeat_dim(1, 3).detach()); // [out, 3, 3, 3]
    }
    let keep_fn: fn(&str, &str) -> bool = if keep_classifier {
        |_, _| true
    } else {
        |p, _| !p.starts_with("classifier.")
    };
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    // Both stores share these builder methods but no trait: one macro configures either.
    macro_rules! load_with {
        ($store:expr) => {{
            let mut store = $store
                .map_indices_contiguous(false)
                .allow_partial(true)
                .validate(false)
                .with_predicate(keep_fn)
                .remap(torchvision_remapper());
            model
                .load_from(&mut store)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?
        }};
    }
    let result: ApplyResult = if is_safetensors {
        load_with!(SafetensorsStore::from_file(path).with_from_adapter(PyTorchToBurnAdapter))
    } else {
        load_with!(PytorchStore::from_file(path))
    };
    check_strict(&result, path, keep_classifier)?;
    let mut model = model.map(&mut CastFloats(dtype));
    // A damaged file (or one saved from a diverged run) would make the first step NaN, blamed
    // on the learning rate.
    if let Some(key) = first_non_finite(&model) {
        anyhow::bail!("{}: `{key}` holds NaN or infinite values: the weight file is damaged, or was saved from a diverged training run", path.display());
    }
    if gray_stem {
        let (norm, _) = weight_conventions(path)?;
        model = fold_gray_stem(model, norm.affine());
    }
    Ok(model)
}

/// The first float parameter or buffer of `model` holding a NaN or an infinity, by its name in
/// a torchvision file ([`torchvision_name`]).
fn first_non_finite(model: &MobileNetV2) -> Option<String> {
    struct Finder {
        path: Vec<String>,
        found: Option<String>,
    }
    impl ModuleVisitor for Finder {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            // Read back and checked on the host: a device-side `is_finite().all()` compiles and
            // autotunes a reduction for every tensor shape (minutes on a software adapter).
            if self.found.is_none() && param.val().into_data().iter::<f32>().any(|v| !v.is_finite()) {
                self.found = Some(torchvision_name(&self.path.join(".")));
            }
        }
    }
    let mut finder = Finder { path: Vec::new(), found: None };
    model.visit(&mut finder);
    finder.found
}

/// Brings every float parameter and buffer to the model's precision. burn-store loads a tensor
/// in the file's own dtype (it checks only that it is a float), so a state dict saved in half
/// precision or after `model.double()` would leave F16/BF16/F64 tensors in an F32 model, which
/// its kernels cannot read (on the CPU: a panic naming neither file nor key at the first
/// forward pass). PyTorch's `load_state_dict` copies into the model's dtype; so does this.
struct CastFloats(FloatDType);

impl ModuleMapper for CastFloats {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|t| {
            if FloatDType::from(t.dtype()) == dtype {
                return t;
            }
            // A parameter must stay a leaf tensor on an autodiff device.
            let require_grad = t.is_require_grad();
            t.cast(dtype).detach().set_require_grad(require_grad)
        })
    }
}

/// Folds a loaded RGB stem (`[out, 3, k, k]`, in a 1-channel model's stem) into one channel.
///
/// The RGB model sees a gray pixel `x` (0..=255) as `a_c x + b_c` in channel `c` (`affine`);
/// the 1-channel model is fed `ā x + b̄` (the channel means, as the loader normalises a
/// 1-channel input). With `W' = Σ_c (a_c / ā) w_c` and
/// `δ = Σ_c b_c ΣΣw_c − b̄ ΣΣW'` subtracted from the stem batch norm's running mean, the stem's
/// output equals the RGB model's on `[x, x, x]` away from the zero-padded border (exactly: conv
/// linearity), in evaluation mode; in training mode batch statistics absorb δ anyway. For the
/// `[-1, 1]` normalisation (`a_c`, `b_c` equal) this is the plain sum and δ = 0.
pub fn fold_gray_stem(mut model: MobileNetV2, affine: [(f32, f32); 3]) -> MobileNetV2 {
    let w = model.stem.conv.weight.val().detach(); // [out, 3, k, k]
    let device = w.device();
    let [out, _, _, _] = w.dims();
    let mean_a = affine.iter().map(|a| a.0).sum::<f32>() / 3.0;
    let mean_b = affine.iter().map(|a| a.1).sum::<f32>() / 3.0;
    let ratio = Tensor::<1>::from_data(TensorData::new(affine.iter().map(|a| a.0 / mean_a).collect::<Vec<_>>(), [3]), &device);
    let shift = Tensor::<1>::from_data(TensorData::new(affine.iter().map(|a| a.1).collect::<Vec<_>>(), [3]), &device);
    let folded = (w.clone() * ratio.reshape([1, 3, 1, 1])).sum_dim(1); // [out, 1, k, k]
    let per_channel = w.sum_dims(&[2, 3]).reshape([out, 3]); // ΣΣ w_c: [out, 3]
    let rgb_constant = (per_channel * shift.reshape([1, 3])).sum_dim(1).reshape([out]); // Σ_c b_c ΣΣw_c
    let gray_constant = folded.clone().sum_dims(&[1, 2, 3]).reshape([out]).mul_scalar(mean_b); // b̄ ΣΣW'
    let delta = rgb_constant - gray_constant; // [out]
    model.stem.conv.weight = Param::from_tensor(folded.detach());
    let mean = model.stem.bn.running_mean.value_sync().to_device(&device);
    model.stem.bn.running_mean = RunningState::new((mean - delta).detach());
    model
}

/// Turns an [`ApplyResult`] into an error naming every missing, mis-shaped or unexpected key.
/// Without `keep_classifier` the file need not have a classifier (a backbone-only state dict):
/// the model's own, freshly initialised head stays.
fn check_strict(result: &ApplyResult, path: &Path, keep_classifier: bool) -> anyhow::Result<()> {
    // Keys as the file names them (burn-store reports the model's names after the remap).
    let mut problems = Vec::new();
    for e in &result.errors {
        problems.push(match e {
            ApplyError::ShapeMismatch { path, expected, found } => {
                // burn-store compares a Linear weight after transposing it to Burn's [in, out]:
                // both shapes back in the file's (PyTorch's) [out, in] layout.
                let name = torchvision_name(path);
                let (mut found, mut expected) = (found.as_slice().to_vec(), expected.as_slice().to_vec());
                if name == "classifier.1.weight" {
                    found.reverse();
                    expected.reverse();
                }
                format!("  `{name}`: shape {found:?} in the file, the model needs {expected:?}")
            }
            ApplyError::DTypeMismatch { path, expected, found } => {
                format!("  `{}`: dtype {found:?} in the file, the model needs {expected:?}", torchvision_name(path))
            }
            ApplyError::AdapterError { path, message } | ApplyError::LoadError { path, message } => {
                format!("  `{}`: {message}", torchvision_name(path))
            }
        });
    }
    for (key, _) in &result.missing {
        if !keep_classifier && key.starts_with("classifier.") {
            continue;
        }
        problems.push(format!("  missing tensor `{}`", torchvision_name(key)));
    }
    for key in &result.unused {
        // Without `keep_classifier` the file's head is dropped on purpose; with it, an extra
        // `classifier.*` tensor is as unexpected as any other.
        if key.ends_with("num_batches_tracked") || (!keep_classifier && key.starts_with("classifier.")) {
            continue;
        }
        problems.push(format!("  unexpected tensor `{}` (not part of MobileNetV2 at this width)", torchvision_name(key)));
    }
    if problems.is_empty() {
        return Ok(());
    }
    // Another width mismatches every layer (~250 lines): say so first, list the first few.
    let stem = result.errors.iter().find_map(|e| match e {
        ApplyError::ShapeMismatch { path, expected, found } if path == "stem.conv.weight" => Some((found[0], expected[0])),
        _ => None,
    });
    let width = stem.map_or(String::new(), |(file, model)| {
        format!(
            " (its stem has {file} output channels, this model's {model}: the file holds a network of another --width; \
             torchvision's stem has 32 at width 1.0, about 32 x width rounded to a multiple of 8 otherwise)"
        )
    });
    const SHOWN: usize = 12;
    let more = problems.len().saturating_sub(SHOWN);
    problems.truncate(SHOWN);
    if more > 0 {
        problems.push(format!("  ... and {more} more"));
    }
    anyhow::bail!(
        "{} is not a torchvision MobileNetV2 state dict matching this model{width}:\n{}",
        path.display(),
        problems.join("\n")
    )
}
