//! torchvision equivalence: `scripts/reference_torch.py` saved a random-init
//! `torchvision.models.mobilenet_v2(width_mult=0.25, num_classes=7)` (with non-trivial batch-norm
//! statistics), an input batch and the logits torchvision computes in eval mode. Loading the
//! state dict must reproduce those logits.

use std::path::PathBuf;

use burn::prelude::*;
use derma_model::{InputNorm, MobileNetV2Config, load_torchvision};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures")).join(name)
}

/// The safetensors fixture's header (tensor name → dtype, shape, data offsets) and data bytes
/// (the format: 8-byte little-endian header length, JSON header, data).
fn safetensors_fixture() -> (serde_json::Map<String, serde_json::Value>, Vec<u8>) {
    let bytes = std::fs::read(fixture("mobilenet_v2_w025.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

/// Writes a safetensors file from a header and its data.
fn write_safetensors(path: &std::path::Path, header: &serde_json::Map<String, serde_json::Value>, data: &[u8]) {
    let text = serde_json::to_vec(header).unwrap();
    std::fs::write(path, [(text.len() as u64).to_le_bytes().to_vec(), text, data.to_vec()].concat()).unwrap();
}

/// A tensor's byte range in the data.
fn offsets(info: &serde_json::Value) -> std::ops::Range<usize> {
    let [a, b] = [0, 1].map(|i| info["data_offsets"][i].as_u64().unwrap() as usize);
    a..b
}

fn check(file: &str) {
    check_stride(file, 32, "logits");
}

/// Loads `file` into a width-0.25 model of `output_stride` and compares its eval logits on the
/// fixture input with the fixture's `key`.
fn check_stride(file: &str, output_stride: usize, key: &str) {
    check_variant(file, output_stride, true, key);
}

fn check_variant(file: &str, output_stride: usize, dilate: bool, key: &str) {
    let io: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("mobilenet_v2_w025_io.json")).unwrap()).unwrap();
    let shape: Vec<usize> = io["input_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let input: Vec<f32> = io["input"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let expected: Vec<f32> = io[key]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32))
        .collect();
    let device = Device::flex();
    let model = MobileNetV2Config::new(7).with_width(0.25).with_output_stride(output_stride).with_dilate(dilate).init(&device);
    let model = load_torchvision(model, &fixture(file), true).unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(input, [shape[0], shape[1], shape[2], shape[3]]), &device);
    let got: Vec<f32> = model.valid().forward(x).into_data().try_into_vec().unwrap();
    assert_eq!(got.len(), expected.len(), "{file}: logits");
    let max = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max <= 1e-4, "{file} (output stride {output_stride}): max |logit difference| {max} > 1e-4\n got {got:?}\nwant {expected:?}");
}

/// Output stride 16 and 8 equal torchvision's network made DeepLab-style (strides removed,
/// later depthwise convolutions dilated; `with_output_stride` in scripts/reference_torch.py).
/// Without the dilation the logits differ by up to 0.075 on this input.
#[test]
fn reduced_output_stride_is_deeplabs_dilated_network() {
    check_stride("mobilenet_v2_w025.pth", 16, "logits_os16");
    check_stride("mobilenet_v2_w025.pth", 8, "logits_os8");
    // `dilate = false`: torchvision's network with the strides only removed (at this width no
    // stage's first block has equal input and output widths, so no residual is added there).
    check_variant("mobilenet_v2_w025.pth", 8, false, "logits_os8_undilated");
}

/// The output strides on a 64-px input (`sin(0.37 i)`, the fixture's `stride_input` formula),
/// checked on the feature map itself: its size is 64 / stride, and its per-position channel
/// mean and first 4 channels equal torchvision's `features` output (DeepLab-style networks of
/// `with_output_stride` in scripts/reference_torch.py), as do the logits. The pooled logits
/// alone barely tell stride 16 from 8 (by ~4e-6 on this input, ~3e-6 on the 32-px one): a
/// network that ignored `--output-stride 8` would have passed `reduced_output_stride_…`.
#[test]
fn output_strides_give_torchvisions_feature_maps() {
    let io: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("mobilenet_v2_w025_io.json")).unwrap()).unwrap();
    let flat = |v: &serde_json::Value| -> Vec<f32> {
        fn walk(v: &serde_json::Value, out: &mut Vec<f32>) {
            match v.as_array() {
                Some(a) => a.iter().for_each(|x| walk(x, out)),
                None => out.push(v.as_f64().unwrap() as f32),
            }
        }
        let mut out = Vec::new();
        walk(v, &mut out);
        out
    };
    let max_diff = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
    };
    let input: Vec<f32> = (0..3 * 64 * 64).map(|i| (0.37 * i as f64).sin() as f32).collect();
    let device = Device::flex();
    for (key, stride, dilate) in [("32", 32, true), ("16", 16, true), ("8", 8, true), ("8_undilated", 8, false)] {
        let model = MobileNetV2Config::new(7).with_width(0.25).with_output_stride(stride).with_dilate(dilate).init(&device);
        let model = load_torchvision(model, &fixture("mobilenet_v2_w025.pth"), true).unwrap().valid();
        let x = Tensor::<4>::from_data(TensorData::new(input.clone(), [1, 3, 64, 64]), &device);
        let features = model.forward_features(x.clone()); // [1, 1280, h, w]
        let [_, _, h, w] = features.dims();
        assert_eq!((h, w), (64 / stride, 64 / stride), "output stride {key}: feature map size");
        let mean: Vec<f32> = features.clone().mean_dim(1).into_data().try_into_vec().unwrap();
        let first: Vec<f32> = features.slice([0..1, 0..4, 0..h, 0..w]).into_data().try_into_vec().unwrap();
        let want = &io["stride_features"][key];
        let d = max_diff(&mean, &flat(&want["channel_mean"])).max(max_diff(&first, &flat(&want["first_channels"])));
        assert!(d <= 1e-4, "output stride {key}: features differ from torchvision's by {d}");
        let logits: Vec<f32> = model.forward(x).into_data().try_into_vec().unwrap();
        let d = max_diff(&logits, &flat(&io["stride_logits"][key]));
        assert!(d <= 1e-4, "output stride {key}: logits differ from torchvision's by {d}");
    }
    // The dilated and undilated stride-8 references differ by far more than the tolerance
    // (0.031 in the first channels; stride 16 and 8 differ in the map's size).
    let sf = &io["stride_features"];
    let apart = max_diff(&flat(&sf["8"]["first_channels"]), &flat(&sf["8_undilated"]["first_channels"]));
    assert!(apart > 100.0 * 1e-4, "the fixture does not tell dilated from undilated: {apart}");
}

#[test]
fn pth_state_dict_reproduces_torchvision_logits() {
    check("mobilenet_v2_w025.pth");
}

#[test]
fn safetensors_state_dict_reproduces_torchvision_logits() {
    check("mobilenet_v2_w025.safetensors");
}

/// Loading into a model of another width names the mis-shaped keys.
#[test]
fn width_mismatch_is_an_error_naming_keys() {
    let device = Device::flex();
    let model = MobileNetV2Config::new(7).with_width(0.5).init(&device);
    let err = load_torchvision(model, &fixture("mobilenet_v2_w025.pth"), false).unwrap_err().to_string();
    // The fixture is width 0.25 (8 stem channels), the model 0.5 (16).
    assert!(err.contains("`features.0.0.weight`: shape [8, 3, 3, 3] in the file, the model needs [16, 3, 3, 3]"), "{err}");
    assert!(err.contains("`features.0.1.weight`: shape [8]") && !err.contains("gamma"), "{err}");
    // Said first, and the ~250 lines of a whole network cut to a few.
    assert!(err.contains("(its stem has 8 output channels, this model's 16: the file holds a network of another --width"), "{err}");
    assert!(err.lines().count() <= 14 && err.contains("more"), "{err}");
}

/// A weight file holding a NaN (damaged, or saved from a diverged run) is refused, naming the
/// tensor: it made the first training step NaN, reported as a learning rate too high.
#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    let (header, mut data) = safetensors_fixture();
    let range = offsets(&header["features.3.conv.0.0.weight"]);
    data[range.start + 4..range.start + 8].copy_from_slice(&f32::NAN.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.safetensors");
    write_safetensors(&path, &header, &data);
    let model = MobileNetV2Config::new(7).with_width(0.25).init(&Device::flex());
    let err = load_torchvision(model, &path, false).unwrap_err().to_string();
    assert!(err.contains("nan.safetensors") && err.contains("`features.3.conv.0.0.weight` holds NaN or infinite values"), "{err}");
    // The untouched file loads.
    let model = MobileNetV2Config::new(7).with_width(0.25).init(&Device::flex());
    assert!(load_torchvision(model, &fixture("mobilenet_v2_w025.safetensors"), false).is_ok());
}

/// Errors name the keys as the file has them (torchvision's), not the model's internal names:
/// the fixture's safetensors with `features.4.conv.1.0.weight` renamed away (missing) and
/// `features.5.conv.1.1.running_var` declared [24, 2] instead of [48] (same bytes).
#[test]
fn load_errors_name_the_files_keys() {
    let bytes = std::fs::read(fixture("mobilenet_v2_w025.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let edited = header
        .replacen("\"features.4.conv.1.0.weight\"", "\"features.4.conv.1.0.weighX\"", 1)
        .replacen("\"features.5.conv.1.1.running_var\":{\"dtype\":\"F32\",\"shape\":[48]", "\"features.5.conv.1.1.running_var\":{\"dtype\":\"F32\",\"shape\":[24,2]", 1);
    assert_ne!(edited.len(), header.len(), "the fixture's header changed: the edits did not apply");
    let mut out = (edited.len() as u64).to_le_bytes().to_vec();
    out.extend(edited.as_bytes());
    out.extend(&bytes[8 + n..]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edited.safetensors");
    std::fs::write(&path, out).unwrap();
    let model = MobileNetV2Config::new(7).with_width(0.25).init(&Device::flex());
    let err = load_torchvision(model, &path, false).unwrap_err().to_string();
    assert!(err.contains("missing tensor `features.4.conv.1.0.weight`"), "{err}");
    assert!(err.contains("`features.5.conv.1.1.running_var`: shape [24, 2] in the file, the model needs [48]"), "{err}");
    assert!(err.contains("unexpected tensor `features.4.conv.1.0.weighX`"), "{err}");
    assert!(!err.contains("blocks."), "a model-internal name in the message: {err}");
}

/// With `keep_classifier` a class-count mismatch names the classifier's shapes as the file
/// (PyTorch's `Linear`, `[out, in]`) holds them: the fixture's 7 classes, a 2-class model.
#[test]
fn a_kept_classifier_of_another_class_count_is_named_in_pytorchs_layout() {
    let model = MobileNetV2Config::new(2).with_width(0.25).init(&Device::flex());
    let err = load_torchvision(model, &fixture("mobilenet_v2_w025.pth"), true).unwrap_err().to_string();
    assert!(err.contains("`classifier.1.weight`: shape [7, 1280] in the file, the model needs [2, 1280]"), "{err}");
}

/// Without `keep_classifier` the task's own head stays (head swap), whatever its size.
#[test]
fn head_swap_keeps_a_fresh_classifier() {
    let device = Device::flex();
    let model = MobileNetV2Config::new(2).with_width(0.25).init(&device);
    let loaded = load_torchvision(model, &fixture("mobilenet_v2_w025.pth"), false).unwrap();
    assert_eq!(loaded.num_classes(), 2);
}

/// A 1-channel stem fed what the loader feeds it (`ā x + b̄`, the mean ImageNet affine) answers
/// a gray image `x` as the RGB stem answers `[a_c x + b_c]` (what the RGB model is fed):
/// exactly away from the zero-padded border (`fold_gray_stem`). Loaded on an autodiff device,
/// as training does (re-wrapping a tracked tensor as a parameter panicked there). A plain sum
/// of the RGB kernels (the old fold) is off by far more.
#[test]
fn gray_stem_answers_a_gray_image_as_the_rgb_stem() {
    let device = Device::flex().autodiff();
    let load = |in_channels: usize| {
        let m = MobileNetV2Config::new(7).with_width(0.25).with_in_channels(in_channels).init(&device);
        load_torchvision(m, &fixture("mobilenet_v2_w025.pth"), true).unwrap().valid()
    };
    let (rgb, gray) = (load(3), load(1));
    assert_eq!(gray.stem.conv.weight.dims(), [8, 1, 3, 3]);
    let cpu = Device::flex();
    let x = Tensor::<4>::random([2, 1, 32, 32], burn::tensor::Distribution::Uniform(0.0, 255.0), &cpu);
    let affine = InputNorm::ImageNet.affine();
    let rgb_in = Tensor::cat(affine.iter().map(|&(a, b)| x.clone().mul_scalar(a).add_scalar(b)).collect(), 1);
    let (ma, mb) = (affine.iter().map(|a| a.0).sum::<f32>() / 3.0, affine.iter().map(|a| a.1).sum::<f32>() / 3.0);
    let gray_in = x.mul_scalar(ma).add_scalar(mb);
    // Stem outputs [2, 8, 16, 16] without the first row and column (they see the padding).
    let interior = |t: Tensor<4>| -> Vec<f32> { t.slice([0..2, 0..8, 1..16, 1..16]).into_data().try_into_vec().unwrap() };
    let want = interior(rgb.stem.forward(rgb_in));
    let got = interior(gray.stem.forward(gray_in.clone()));
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let max = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
    assert!(scale > 0.1 && max <= 1e-4 * scale.max(1.0), "max |difference| {max} (scale {scale})");
    // The plain sum over colours, without the per-channel scales and the mean shift.
    let mut plain = rgb.clone();
    plain.stem.conv.weight = burn::module::Param::from_tensor(rgb.stem.conv.weight.val().sum_dim(1));
    let off = interior(plain.stem.forward(gray_in)).iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
    assert!(off > 100.0 * max.max(1e-6), "the plain sum is as close ({off} vs {max}): the check would not tell them apart");
}

/// Identity batch-norm statistics (mean 0, variance 1) are told apart from trained ones: a fresh
/// network has them; the torchvision fixture (statistics randomised by reference_torch.py) does
/// not.
#[test]
fn identity_bn_statistics_are_detected() {
    let device = Device::flex();
    let fresh = MobileNetV2Config::new(7).with_width(0.25).init(&device);
    assert!(fresh.has_identity_bn_statistics());
    let loaded = load_torchvision(fresh, &fixture("mobilenet_v2_w025.pth"), false).unwrap();
    assert!(!loaded.has_identity_bn_statistics());
}

/// A backbone-only state dict (no `classifier.*`, as `train_torch.py` loads TF-lite weights)
/// serves a head swap; with `keep_classifier` its missing classifier is an error naming it.
/// The file is the safetensors fixture with the classifier tensors removed, rewritten here
/// (8-byte header length, JSON header with data offsets, data).
#[test]
fn a_state_dict_without_classifier_serves_a_head_swap() {
    let (header, data) = safetensors_fixture();
    let (mut kept, mut out_data) = (serde_json::Map::new(), Vec::new());
    for (name, info) in &header {
        if name.starts_with("classifier.") || name == "__metadata__" {
            continue;
        }
        let range = offsets(info);
        let mut info = info.clone();
        info["data_offsets"] = serde_json::json!([out_data.len(), out_data.len() + range.len()]);
        out_data.extend_from_slice(&data[range]);
        kept.insert(name.clone(), info);
    }
    assert!(kept.len() + 2 <= header.len(), "the fixture had no classifier to remove");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backbone.safetensors");
    write_safetensors(&path, &kept, &out_data);

    let device = Device::flex();
    let swapped = load_torchvision(MobileNetV2Config::new(2).with_width(0.25).init(&device), &path, false).unwrap();
    assert_eq!(swapped.num_classes(), 2);
    let err = load_torchvision(MobileNetV2Config::new(7).with_width(0.25).init(&device), &path, true).unwrap_err().to_string();
    assert!(err.contains("missing tensor `classifier.1.weight`"), "{err}");
}

/// The safetensors fixture rewritten with every F32 tensor stored as `dtype`: "F64" (each value
/// widened exactly, as `model.double()` then saving would) or "BF16" (each value's top 16 bits,
/// a bfloat16 rounded toward zero).
fn fixture_as(dtype: &str, dir: &std::path::Path) -> PathBuf {
    let (header, data) = safetensors_fixture();
    let (mut out, mut out_data) = (serde_json::Map::new(), Vec::new());
    for (name, info) in &header {
        let mut info = info.clone();
        if name != "__metadata__" && info["dtype"] == "F32" {
            let start = out_data.len();
            for v in data[offsets(&info)].chunks_exact(4) {
                match dtype {
                    "F64" => out_data.extend((f32::from_le_bytes(v.try_into().unwrap()) as f64).to_le_bytes()),
                    "BF16" => out_data.extend(&v[2..4]),
                    _ => unreachable!(),
                }
            }
            info["dtype"] = dtype.into();
            info["data_offsets"] = serde_json::json!([start, out_data.len()]);
        } else if name != "__metadata__" {
            let range = offsets(&info);
            info["data_offsets"] = serde_json::json!([out_data.len(), out_data.len() + range.len()]);
            out_data.extend_from_slice(&data[range]);
        }
        out.insert(name.clone(), info);
    }
    let path = dir.join(format!("w025_{dtype}.safetensors"));
    write_safetensors(&path, &out, &out_data);
    path
}

/// A state dict saved in another float precision loads into the F32 model as F32, as PyTorch's
/// `load_state_dict` copies into the model's dtype. Before, burn-store kept the file's dtype
/// and the first forward pass panicked on the CPU backend. F64 holds the F32 values exactly,
/// so the logits equal the F32 file's bit for bit; BF16 keeps 8 significant bits, so they
/// differ but must be finite.
#[test]
fn other_float_precisions_load_as_the_models_f32() {
    let dir = tempfile::tempdir().unwrap();
    let f32_model = |path: &std::path::Path, device: &Device| {
        let m = load_torchvision(MobileNetV2Config::new(7).with_width(0.25).init(device), path, true).unwrap();
        let dtypes = [m.stem.conv.weight.val().dtype(), m.stem.bn.running_var.value_sync().dtype(), m.classifier.weight.val().dtype()];
        assert_eq!(dtypes, [burn::tensor::DType::F32; 3], "{}", path.display());
        m
    };
    let device = Device::flex();
    let f64_path = fixture_as("F64", dir.path());
    let reference = load_torchvision(MobileNetV2Config::new(7).with_width(0.25).init(&device), &fixture("mobilenet_v2_w025.safetensors"), true).unwrap();
    let x = Tensor::<4>::random([2, 3, 32, 32], burn::tensor::Distribution::Uniform(-1.0, 1.0), &device);
    let want: Vec<f32> = reference.valid().forward(x.clone()).into_data().try_into_vec().unwrap();
    let got: Vec<f32> = f32_model(&f64_path, &device).valid().forward(x.clone()).into_data().try_into_vec().unwrap();
    assert_eq!(got, want, "F64 file: the same weights, the same logits");
    // BF16, loaded on an autodiff device as training does: parameters stay trainable leaves.
    let ad = Device::flex().autodiff();
    let m = f32_model(&fixture_as("BF16", dir.path()), &ad);
    assert!(m.stem.conv.weight.val().is_require_grad());
    let got: Vec<f32> = m.valid().forward(x).into_data().try_into_vec().unwrap();
    assert!(got.iter().all(|v| v.is_finite()) && got != want, "{got:?}");
}
