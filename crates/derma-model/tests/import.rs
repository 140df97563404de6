//! torchvision equivalence: `scripts/reference_torch.py` saved a random-init
//! `torchvision.models.mobilenet_v2(width_mult=0.25, num_classes=7)` (with non-trivial batch-norm
//! statistics), an input batch and the logits torchvision computes in eval mode. Loading the
//! state dict must reproduce those logits.

use std::path::PathBuf;

use burn::prelude::*;
use derma_model::{MobileNetV2Config, load_torchvision};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures")).join(name)
}

fn check(file: &str) {
    let io: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("mobilenet_v2_w025_io.json")).unwrap()).unwrap();
    let shape: Vec<usize> = io["input_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let input: Vec<f32> = io["input"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let expected: Vec<f32> = io["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32))
        .collect();
    let device = Device::flex();
    let model = MobileNetV2Config::new(7).with_width(0.25).init(&device);
    let model = load_torchvision(model, &fixture(file), true).unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(input, [shape[0], shape[1], shape[2], shape[3]]), &device);
    let got: Vec<f32> = model.valid().forward(x).into_data().try_into_vec().unwrap();
    let max = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max <= 1e-4, "{file}: max |logit difference| {max} > 1e-4\n got {got:?}\nwant {expected:?}");
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
    assert!(err.contains("stem.conv.weight") || err.contains("features.0.0.weight"), "{err}");
}

/// Without `keep_classifier` the task's own head stays (head swap), whatever its size.
#[test]
fn head_swap_keeps_a_fresh_classifier() {
    let device = Device::flex();
    let model = MobileNetV2Config::new(2).with_width(0.25).init(&device);
    let loaded = load_torchvision(model, &fixture("mobilenet_v2_w025.pth"), false).unwrap();
    assert_eq!(loaded.num_classes(), 2);
}

/// A 1-channel stem gets the RGB stem summed over colours, so a gray image `g` gives the logits
/// the RGB model gives for `[g, g, g]` (conv linearity: Σ_c w_c * g = (Σ_c w_c) * g).
#[test]
fn gray_stem_equals_rgb_model_on_replicated_gray() {
    let device = Device::flex();
    let rgb = load_torchvision(MobileNetV2Config::new(7).with_width(0.25).init(&device), &fixture("mobilenet_v2_w025.pth"), true)
        .unwrap()
        .valid();
    let gray = MobileNetV2Config::new(7).with_width(0.25).with_in_channels(1).init(&device);
    let gray = load_torchvision(gray, &fixture("mobilenet_v2_w025.pth"), true).unwrap().valid();
    assert_eq!(gray.stem.conv.weight.dims(), [8, 1, 3, 3]);
    let g = Tensor::<4>::random([2, 1, 32, 32], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let a: Vec<f32> = gray.forward(g.clone()).into_data().try_into_vec().unwrap();
    let b: Vec<f32> = rgb.forward(g.repeat_dim(1, 3)).into_data().try_into_vec().unwrap();
    let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(max <= 1e-4, "max |logit difference| {max}");
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
