//! MobileNetV2 structure: parameter counts and output shapes.

use burn::prelude::*;
use derma_model::{MobileNetV2Config, make_divisible};

/// torchvision reference:
/// `sum(p.numel() for p in torchvision.models.mobilenet_v2().parameters())` → 3504872
#[test]
fn parameter_count_matches_torchvision_at_width_1() {
    let model = MobileNetV2Config::new(1000).init(&Device::flex());
    assert_eq!(model.num_trainable_params(), 3_504_872);
    assert_eq!(model.blocks.len(), 17);
}

/// Values of torchvision's `_make_divisible(v, 8)`.
#[test]
fn make_divisible_matches_torchvision() {
    // _make_divisible(32*0.35, 8) = 16 (11.2 → 8 is < 0.9*11.2, so +8), (16*0.35) → 8,
    // (1280*1.0) → 1280, (24*0.75) → 24 (18 → 16 < 16.2 → 24), (96*1.4) → 136.
    assert_eq!(make_divisible(32.0 * 0.35, 8), 16);
    assert_eq!(make_divisible(16.0 * 0.35, 8), 8);
    assert_eq!(make_divisible(1280.0, 8), 1280);
    assert_eq!(make_divisible(24.0 * 0.75, 8), 24);
    assert_eq!(make_divisible(96.0 * 1.4, 8), 136);
}

#[test]
fn output_shapes_at_28_64_224() {
    let device = Device::flex();
    let model = MobileNetV2Config::new(7).with_width(0.25).init(&device);
    for (size, fmap) in [(28, 1), (64, 2), (224, 7)] {
        let x = Tensor::<4>::zeros([2, 3, size, size], &device);
        let features = model.forward_features(x.clone());
        assert_eq!(features.dims(), [2, 1280, fmap, fmap], "input {size}");
        assert_eq!(model.forward(x).dims(), [2, 7]);
    }
}

#[test]
fn reduced_output_stride_keeps_larger_maps_and_the_same_parameters() {
    let device = Device::flex();
    let base = MobileNetV2Config::new(7).with_width(0.25);
    let s8 = base.clone().with_output_stride(8).init(&device);
    let x = Tensor::<4>::zeros([1, 3, 28, 28], &device);
    // 28 / 8 = 3.5 → stride-2 convs with padding 1 round up: 28 → 14 → 7 → 4.
    assert_eq!(s8.forward_features(x).dims(), [1, 1280, 4, 4]);
    assert_eq!(s8.num_params(), base.init(&device).num_params());
}

#[test]
fn grayscale_stem_and_single_logit_head() {
    let device = Device::flex();
    let model = MobileNetV2Config::new(1).with_width(0.25).with_in_channels(1).init(&device);
    let x = Tensor::<4>::zeros([3, 1, 32, 32], &device);
    assert_eq!(model.forward(x).dims(), [3, 1]);
}

/// torchvision initialises the classifier bias to 0 (`nn.init.zeros_`), its weight N(0, 0.01).
#[test]
fn classifier_starts_with_zero_bias() {
    let device = Device::flex();
    let model = MobileNetV2Config::new(1000).with_width(0.25).init(&device);
    let bias: Vec<f32> = model.classifier.bias.as_ref().unwrap().val().into_data().try_into_vec().unwrap();
    assert!(bias.iter().all(|&b| b == 0.0), "non-zero classifier bias");
    let w: Vec<f32> = model.classifier.weight.val().into_data().try_into_vec().unwrap();
    let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
    // torchvision's init: N(0, 0.01). Over 1280 × 1000 weights the sample std's standard
    // error is 0.01 / √(2 · 1.28e6) ≈ 6e-6: 1e-4 is ~16σ, and a std of 0.011 fails.
    assert!((std - 0.01).abs() < 1e-4, "classifier weight std {std}");
    let swapped = model.with_classifier(7, &device);
    let bias: Vec<f32> = swapped.classifier.bias.as_ref().unwrap().val().into_data().try_into_vec().unwrap();
    assert!(bias.iter().all(|&b| b == 0.0));
}

#[test]
fn head_swap_changes_only_the_classifier() {
    let device = Device::flex();
    let model = MobileNetV2Config::new(1000).with_width(0.25).init(&device);
    let before = model.num_trainable_params();
    let swapped = model.with_classifier(7, &device);
    assert_eq!(swapped.num_classes(), 7);
    assert_eq!(before - swapped.num_trainable_params(), 1280 * (1000 - 7) + (1000 - 7));
}

#[test]
fn invalid_configs_are_refused_with_the_field_name() {
    let err = MobileNetV2Config::new(7).with_output_stride(4).validate().unwrap_err();
    assert!(err.contains("output_stride"), "{err}");
    let err = MobileNetV2Config::new(7).with_in_channels(2).validate().unwrap_err();
    assert!(err.contains("in_channels"), "{err}");
}

/// Frozen batch-norm statistics: on the training (autodiff) device the network computes what
/// the evaluation-mode network computes, its running statistics stay untouched, and the batch
/// norms' scale still receives gradients.
#[test]
fn frozen_bn_statistics_behave_as_in_evaluation_on_the_training_device() {
    let device = Device::flex().autodiff();
    let model = MobileNetV2Config::new(3).with_width(0.25).with_dropout(0.0).init(&device).set_bn_frozen(true);
    let x = Tensor::<4>::random([2, 3, 32, 32], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    // `value_sync`: `value()` may lag one update behind (Burn's RunningState), which would make
    // the "not updated" check below pass whatever happened.
    let mean_before: Vec<f32> = model.stem.bn.running_mean.value_sync().into_data().try_into_vec().unwrap();
    let train_out = model.forward(x.clone());
    let eval_out = model.valid().forward(x.clone().inner());
    let a: Vec<f32> = train_out.clone().into_data().try_into_vec().unwrap();
    let b: Vec<f32> = eval_out.into_data().try_into_vec().unwrap();
    let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(max < 1e-5, "frozen-statistics training forward differs from evaluation by {max}");
    let mean_after: Vec<f32> = model.stem.bn.running_mean.value_sync().into_data().try_into_vec().unwrap();
    assert_eq!(mean_before, mean_after, "running statistics were updated");
    let grads = train_out.sum().backward();
    assert!(model.stem.bn.gamma.grad(&grads).is_some(), "the scale no longer trains");
    // and unfreezing restores batch statistics: the output then differs from evaluation
    let model = model.set_bn_frozen(false);
    let c: Vec<f32> = model.forward(x).into_data().try_into_vec().unwrap();
    let max = c.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(max > 1e-3, "unfrozen batch norms still use running statistics");
}

/// Unfreezing the backbone re-enables batch statistics; `set_bn_frozen` after it (as the
/// training loop does with `--freeze-bn`) turns them off again, in every block.
#[test]
fn bn_freeze_survives_the_backbone_unfreeze_when_reapplied() {
    let device = Device::flex().autodiff();
    let model = MobileNetV2Config::new(2).with_width(0.25).init(&device).set_bn_frozen(true);
    let model = model.set_backbone_frozen(true).set_backbone_frozen(false);
    assert!(model.stem.bn.training.is_enabled(), "unfreeze should restore batch statistics");
    let model = model.set_bn_frozen(true);
    assert!(!model.stem.bn.training.is_enabled() && !model.head.bn.training.is_enabled());
    for b in &model.blocks {
        assert!(!b.depthwise.bn.training.is_enabled() && !b.project_bn.training.is_enabled());
        assert!(b.expand.as_ref().is_none_or(|e| !e.bn.training.is_enabled()));
    }
}

/// `Padding::TfSame` is TensorFlow's SAME: for a stride-2 3x3 convolution on a 6x6 input,
/// `pad_total = (out - 1) * s + k - in = 1`, all of it after (bottom/right): output (i, j) sums
/// `w[u][v] * x[2i + u][2j + v]` over the valid input. The reference is that formula, computed
/// here; symmetric padding (one row/column each side) gives other values, so the check can fail.
#[test]
fn tf_same_padding_pads_only_after_on_stride_two() {
    use derma_model::{ConvBnActConfig, Padding};
    let device = Device::flex();
    let x: Vec<f32> = (0..36).map(|i| ((i * 7) % 11) as f32 * 0.1).collect();
    let w: Vec<f32> = (0..9).map(|i| ((i * 5) % 7) as f32 * 0.1 - 0.2).collect();
    let mut reference = vec![0.0f32; 9];
    for (i, j) in (0..3).flat_map(|i| (0..3).map(move |j| (i, j))) {
        for (u, v) in (0..3).flat_map(|u| (0..3).map(move |v| (u, v))) {
            let (r, c) = (2 * i + u, 2 * j + v);
            if r < 6 && c < 6 {
                reference[i * 3 + j] += w[u * 3 + v] * x[r * 6 + c];
            }
        }
    }
    let run = |padding: Padding| -> Vec<f32> {
        let mut block = ConvBnActConfig::new([1, 1], 3).with_stride(2).with_padding(padding).init(&device);
        block.conv.weight = burn::module::Param::from_tensor(Tensor::from_data(TensorData::new(w.clone(), [1, 1, 3, 3]), &device));
        // The conv alone (the block adds batch norm and ReLU6).
        block.conv.forward(Tensor::from_data(TensorData::new(x.clone(), [1, 1, 6, 6]), &device)).into_data().try_into_vec().unwrap()
    };
    let same = run(Padding::TfSame);
    let max = same.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max < 1e-5, "TfSame {same:?} vs TF's formula {reference:?}");
    let symmetric = run(Padding::Symmetric);
    assert!(symmetric.iter().zip(&reference).any(|(a, b)| (a - b).abs() > 1e-3), "symmetric padding matches too: the check is vacuous");
}

/// `weight_conventions` reads a safetensors file's metadata (as `convert_tflite.py` writes it),
/// defaults to torchvision's conventions without it, and refuses an unknown value by name.
#[test]
fn weight_conventions_follow_the_safetensors_metadata() {
    use derma_model::{InputNorm, Padding, weight_conventions};
    let dir = std::env::temp_dir().join(format!("derma-model-conv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, meta: &str| {
        let header = format!("{{\"__metadata__\":{{{meta}}},\"t\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}}}");
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(0f32.to_le_bytes());
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let tfl = write("tfl.safetensors", "\"input_norm\":\"minus_one_to_one\",\"padding\":\"tf_same\"");
    assert_eq!(weight_conventions(&tfl).unwrap(), (InputNorm::MinusOneToOne, Padding::TfSame));
    let plain = write("plain.safetensors", "");
    assert_eq!(weight_conventions(&plain).unwrap(), (InputNorm::ImageNet, Padding::Symmetric));
    let odd = write("odd.safetensors", "\"padding\":\"reflect\"");
    let err = weight_conventions(&odd).unwrap_err().to_string();
    assert!(err.contains("odd.safetensors") && err.contains("reflect"), "{err}");
    // A .pth has no metadata: torchvision's conventions.
    assert_eq!(weight_conventions(std::path::Path::new("x.pth")).unwrap(), (InputNorm::ImageNet, Padding::Symmetric));
    std::fs::remove_dir_all(&dir).unwrap();
}
