//! The benchmark's measurement functions on the CPU backend, tiny: width 0.25, 28 px.

use burn::prelude::*;
use derma_bench::data;
use derma_bench::measure::{self, Measurement, Schedule};
use derma_bench::options::{DataSource, Mode, Optimizer, SizeBatch, Upload, parse_modes, parse_sizes};
use derma_bench::report::{BenchReport, table};
use derma_bench::run::{Settings, loader_config, run_config};
use derma_data::AugmentPreset;
use derma_data::batch::assemble;
use derma_model::{BatchNormImpl, DepthwiseImpl, MobileNetV2, MobileNetV2Config, PointwiseImpl};
use derma_train::LossConfig;
use derma_train::step::{AdamWSettings, TrainStep};

fn settings() -> Settings {
    Settings {
        width: 0.25,
        classes: 7,
        modes: vec![Mode::Step, Mode::E2e, Mode::E2eCaptured, Mode::Loader, Mode::Infer, Mode::InferGraph, Mode::StepGraph, Mode::StepCaptured, Mode::Phases],
        schedule: Schedule { warmup: 1, steps: 2 },
        data: DataSource::Synthetic,
        synthetic_images: 16,
        augment: AugmentPreset::Natural,
        prefetch: 2,
        upload: Upload::Copy,
        lr: 1e-2,
        weight_decay: 1e-4,
        optimizer: Optimizer::AdamW,
        freeze_bn: false,
        batch_norm: BatchNormImpl::Fused,
        depthwise: DepthwiseImpl::Kernels,
        pointwise: PointwiseImpl::Burn,
        seed: 0,
    }
}

/// The report of one configuration measured with `settings()` on the CPU.
fn report(freeze_bn: bool, result: derma_bench::report::ConfigResult) -> BenchReport {
    BenchReport {
        framework: "burn".into(),
        framework_version: "0.22.1".into(),
        backend: "cpu (flex)".into(),
        width: 0.25,
        classes: 7,
        data: "synthetic".into(),
        augment: "natural".into(),
        upload: "copy".into(),
        warmup_steps: 1,
        steps: 2,
        lr: 1e-2,
        optimizer: "adamw".into(),
        freeze_bn,
        batch_norm: "fused".into(),
        depthwise: "kernels".into(),
        pointwise: "burn".into(),
        pid: std::process::id(),
        results: vec![result],
    }
}

fn check(m: &Measurement, steps: usize, images: usize, training: bool) {
    assert_eq!(m.steps, steps);
    assert_eq!(m.images, images);
    for (name, v) in [("seconds", m.seconds), ("images_per_second", m.images_per_second), ("ms_per_step", m.ms_per_step)] {
        assert!(v.is_finite() && v > 0.0, "{name} = {v}");
    }
    // The warm-up ran at least one untimed iteration (every schedule here has warmup >= 1).
    assert!(m.warmup_seconds.is_finite() && m.warmup_seconds > 0.0, "warmup_seconds = {}", m.warmup_seconds);
    let expected = m.images as f64 / m.seconds;
    assert!((m.images_per_second - expected).abs() <= 1e-9 * expected, "{} vs {expected}", m.images_per_second);
    match (training, m.mean_loss) {
        (true, Some(l)) => assert!(l.is_finite() && l > 0.0, "loss {l}"),
        (false, None) => {}
        other => panic!("unexpected loss {other:?}"),
    }
}

/// Classifier and stem weights as host vectors.
fn weights(model: &MobileNetV2) -> (Vec<f32>, Vec<f32>) {
    let v = |d: TensorData| d.try_into_vec::<f32>().expect("f32 weights");
    (v(model.classifier.weight.val().into_data()), v(model.stem.conv.weight.val().into_data()))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn measurements_are_positive_and_steps_update_the_weights() {
    let device = Device::flex();
    let train_device = device.clone().autodiff();
    let s = settings();
    let sb = SizeBatch { size: 28, batch: 4 };
    let dataset = data::synthetic(16, 28, 7, 0);
    let config = loader_config(&s, sb);
    let batch = assemble(&dataset, &[0, 1, 2, 3], 0, &config);
    assert_eq!(batch.shape, [4, 3, 28, 28]);

    device.seed(0);
    let model = MobileNetV2Config::new(7).with_width(0.25).init(&train_device);
    let (cls0, stem0) = weights(&model);
    let mut step = TrainStep::new(LossConfig::ce().init(&train_device), AdamWSettings::new(1e-4), 1.0);

    let schedule = Schedule { warmup: 1, steps: 2 };
    let (model, m) = measure::train_resident(model, &mut step, &batch, &train_device, &device, schedule, 1e-2).unwrap();
    let feed = || measure::Feed { dataset: &dataset, config: config.clone(), train_device: &train_device, device: &device, how: Upload::Move };
    check(&m, 2, 8, true);
    let (cls1, stem1) = weights(&model);
    // AdamW's first steps move every parameter by about lr: far above rounding.
    assert!(max_abs_diff(&cls0, &cls1) > 1e-4, "the classifier did not change");
    assert!(max_abs_diff(&stem0, &stem1) > 1e-4, "the backbone (stem) did not change");

    let (model, m) =
        measure::train_e2e(model, &mut step, feed(), schedule, 1e-2).unwrap();
    check(&m, 2, 8, true);
    let (cls2, _) = weights(&model);
    assert!(max_abs_diff(&cls1, &cls2) > 1e-4, "end-to-end steps did not change the weights");
    let (model, m) = measure::train_e2e_captured(model, feed(), schedule, 1e-2, 1e-4).unwrap();
    check(&m, 2, 8, true);
    assert_eq!(m.hardware_graph, Some(false), "the CPU has no graph capture");
    let (cls3, _) = weights(&model);
    assert!(max_abs_diff(&cls2, &cls3) > 1e-4, "the captured step's end-to-end steps did not change the weights");

    check(&measure::loader_only(&dataset, config, Schedule { warmup: 1, steps: 2 }).unwrap(), 2, 8, false);
    let eval = model.valid();
    check(&measure::infer_resident(&eval, &batch, &device, Schedule { warmup: 1, steps: 2 }).unwrap(), 2, 8, false);
}

#[test]
fn a_configuration_fills_every_mode_and_the_table() {
    let s = settings();
    let mut lines = Vec::new();
    let r = run_config(&s, SizeBatch { size: 28, batch: 4 }, &Device::flex(), |l| lines.push(l.to_string())).unwrap();
    assert_eq!(lines.len(), 9, "{lines:?}");
    check(r.step.as_ref().unwrap(), 2, 8, true);
    check(r.e2e.as_ref().unwrap(), 2, 8, true);
    // e2e-captured on the CPU: the loader feeding the captured step's code, every step eager.
    check(r.e2e_captured.as_ref().unwrap(), 2, 8, true);
    assert_eq!(r.e2e_captured.as_ref().unwrap().hardware_graph, Some(false));
    assert!(lines[2].contains("e2e-captured"), "{lines:?}");
    check(r.loader.as_ref().unwrap(), 2, 8, false);
    check(r.infer.as_ref().unwrap(), 2, 8, false);
    // On the CPU `capture` falls back to re-running the forward; its agreement check (replayed
    // sum = direct sum) ran inside infer_graph.
    check(r.infer_graph.as_ref().unwrap(), 2, 8, false);
    // Flex implements no graph capture: `capture` falls back to re-running the closure.
    assert_eq!(r.infer_graph.as_ref().unwrap().hardware_graph, Some(false));
    assert_eq!(r.infer.as_ref().unwrap().hardware_graph, None);
    assert!(lines[5].contains("infer-graph"), "{lines:?}");
    // step-graph on the CPU: the fallback re-runs the training step (a loss, no graph).
    check(r.step_graph.as_ref().unwrap(), 2, 8, true);
    assert_eq!(r.step_graph.as_ref().unwrap().hardware_graph, Some(false));
    assert!(lines[6].contains("step-graph"), "{lines:?}");
    // step-captured on the CPU: every step eager through the captured step's code; it trains
    // from the weights the earlier modes left (a finite loss), with no graph.
    check(r.step_captured.as_ref().unwrap(), 2, 8, true);
    assert_eq!(r.step_captured.as_ref().unwrap().hardware_graph, Some(false));
    assert!(lines[7].contains("step-captured"), "{lines:?}");
    // phases: each phase took time, was issued before it finished, and the steps trained.
    let p = r.phases.clone().unwrap();
    assert_eq!(p.steps, 2);
    for (name, t) in [("forward", p.forward), ("backward", p.backward), ("update", p.update)] {
        assert!(t.issued_ms.is_finite() && t.issued_ms > 0.0 && t.done_ms >= t.issued_ms, "{name}: {t:?}");
    }
    assert!((p.step_ms() - (p.forward.done_ms + p.backward.done_ms + p.update.done_ms)).abs() < 1e-12);
    assert!(p.mean_loss.is_finite() && p.mean_loss > 0.0, "{p:?}");
    assert!(lines[8].contains("phases") && lines[8].contains("backward"), "{lines:?}");
    if let Some(m) = r.memory {
        assert!(m.peak_reserved_bytes >= m.reserved_bytes && m.reserved_bytes >= m.in_use_bytes, "{m:?}");
    }
    let report = report(false, r);
    let text = table(&report);
    assert!(text.lines().nth(2).is_some_and(|l| l.trim_start().starts_with("28")), "{text}");
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert!(json["results"][0]["step"]["images_per_second"].as_f64().unwrap() > 0.0);
    assert!(json["results"][0]["step_captured"]["images_per_second"].as_f64().unwrap() > 0.0);
    assert!(json["results"][0]["e2e_captured"]["images_per_second"].as_f64().unwrap() > 0.0);
    assert!(text.lines().nth(1).is_some_and(|l| l.contains("step-captured")), "{text}");
    assert!(text.contains("phases 28:4: forward"), "{text}");
    assert!(json["results"][0]["phases"]["update"]["done_ms"].as_f64().unwrap() > 0.0);
}

/// `--optimizer adamw-flat` trains through the same step (its arithmetic against Burn's AdamW
/// is checked in derma-train's `flat_adamw` tests).
#[test]
fn the_flat_adamw_lever_runs_the_training_modes() {
    let s = Settings { optimizer: Optimizer::AdamWFlat, modes: vec![Mode::Step, Mode::Phases], ..settings() };
    let r = run_config(&s, SizeBatch { size: 28, batch: 4 }, &Device::flex(), |_| {}).unwrap();
    check(r.step.as_ref().unwrap(), 2, 8, true);
    assert!(r.phases.as_ref().unwrap().mean_loss.is_finite());
}

/// `--freeze-bn` reaches the benchmarked model: a training-mode forward on an autodiff device
/// leaves its running statistics as they were, where the default model's move toward the
/// batch's; the step trains with it and the report says which it measured.
#[test]
fn frozen_batch_norms_reach_the_model_and_the_report() {
    let device = Device::flex().autodiff();
    let images = Tensor::<4>::random([2, 3, 28, 28], burn::tensor::Distribution::Normal(0.5, 1.0), &device);
    for freeze_bn in [false, true] {
        let model = derma_bench::run::model(&Settings { freeze_bn, ..settings() }, 7, &device);
        // `value_sync`: `value()` may lag one update behind (Burn's RunningState).
        let mean = |m: &MobileNetV2| -> Vec<f32> { m.stem.bn.running_mean.value_sync().into_data().try_into_vec().unwrap() };
        let before = mean(&model);
        let _ = model.forward(images.clone());
        assert_eq!(before == mean(&model), freeze_bn, "freeze_bn {freeze_bn}: running mean {before:?} -> {:?}", mean(&model));
    }
    let s = Settings { modes: vec![Mode::Step], freeze_bn: true, ..settings() };
    let frozen = run_config(&s, SizeBatch { size: 28, batch: 4 }, &Device::flex(), |_| {}).unwrap();
    check(frozen.step.as_ref().unwrap(), 2, 8, true);
    let report = report(true, frozen);
    assert!(table(&report).lines().next().unwrap().contains("| adamw | frozen batch norms |"), "{}", table(&report));
    assert_eq!(serde_json::to_value(&report).unwrap()["freeze_bn"], true);
}

/// `--batch-norm burn` reaches the models the measurement runs (the thread's batch-norm choice
/// is Burn's once `run_config` starts, fused again for a fused run) and the report; both train.
#[test]
fn the_batch_norm_choice_reaches_the_steps_and_the_report() {
    for kind in [BatchNormImpl::Burn, BatchNormImpl::Fused] {
        derma_model::set_batch_norm_impl(if kind == BatchNormImpl::Burn { BatchNormImpl::Fused } else { BatchNormImpl::Burn });
        let s = Settings { modes: vec![Mode::Step], batch_norm: kind, ..settings() };
        let r = run_config(&s, SizeBatch { size: 28, batch: 4 }, &Device::flex(), |_| {}).unwrap();
        assert_eq!(derma_model::batch_norm_impl(), kind);
        check(r.step.as_ref().unwrap(), 2, 8, true);
        let report = BenchReport { batch_norm: kind.name().into(), ..report(false, r) };
        let header = table(&report).lines().next().unwrap().to_string();
        assert_eq!(header.contains("| adamw | Burn's batch norm |"), kind == BatchNormImpl::Burn, "{header}");
        assert_eq!(serde_json::to_value(&report).unwrap()["batch_norm"], kind.name());
    }
    assert_eq!("burn".parse::<BatchNormImpl>(), Ok(BatchNormImpl::Burn));
    assert!("cudnn".parse::<BatchNormImpl>().unwrap_err().contains("expected fused or burn"));
}

/// `--depthwise burn` likewise: the thread's depthwise choice once `run_config` starts, and
/// the report's; both train.
#[test]
fn the_depthwise_choice_reaches_the_steps_and_the_report() {
    for kind in [DepthwiseImpl::Burn, DepthwiseImpl::Kernels] {
        derma_model::set_depthwise_impl(if kind == DepthwiseImpl::Burn { DepthwiseImpl::Kernels } else { DepthwiseImpl::Burn });
        let s = Settings { modes: vec![Mode::Step], depthwise: kind, ..settings() };
        let r = run_config(&s, SizeBatch { size: 28, batch: 4 }, &Device::flex(), |_| {}).unwrap();
        assert_eq!(derma_model::depthwise_impl(), kind);
        check(r.step.as_ref().unwrap(), 2, 8, true);
        let report = BenchReport { depthwise: kind.name().into(), ..report(false, r) };
        let header = table(&report).lines().next().unwrap().to_string();
        assert_eq!(header.contains("| adamw | Burn's depthwise backward |"), kind == DepthwiseImpl::Burn, "{header}");
        assert_eq!(serde_json::to_value(&report).unwrap()["depthwise"], kind.name());
    }
}

#[test]
fn an_npz_dataset_is_resized_by_the_loader() {
    let dir = std::env::temp_dir().join(format!("derma-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.npz");
    let split = |n: usize| medmnist::Split {
        images: (0..n * 8 * 8 * 3).map(|i| (i % 251) as u8).collect(),
        labels: (0..n).map(|i| (i % 3) as u8).collect(),
        len: n,
        height: 8,
        width: 8,
        channels: 3,
    };
    medmnist::write_npz(&path, &medmnist::MedMnistArrays { train: split(6), val: split(2), test: split(2) }).unwrap();
    let dataset = data::load(&DataSource::Npz(path.clone()), 28, 0, 7, 0).unwrap();
    assert_eq!((dataset.len(), dataset.num_classes(), dataset.image_shape()), (6, 7, [8, 8, 3]));
    let batch = assemble(&dataset, &[0, 1, 2], 0, &loader_config(&settings(), SizeBatch { size: 28, batch: 3 }));
    assert_eq!(batch.shape, [3, 3, 28, 28]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn flags_parse_and_bad_values_are_refused() {
    assert_eq!(
        parse_sizes("28:256, 224:128").unwrap(),
        vec![SizeBatch { size: 28, batch: 256 }, SizeBatch { size: 224, batch: 128 }]
    );
    for bad in ["28", "0:4", "28:0", "28:x", ""] {
        assert!(parse_sizes(bad).is_err(), "{bad} accepted");
    }
    assert_eq!(parse_modes("step,infer,step").unwrap(), vec![Mode::Step, Mode::Infer]);
    assert_eq!(parse_modes("infer-graph,infer").unwrap(), vec![Mode::InferGraph, Mode::Infer]);
    assert_eq!(parse_modes("step-graph").unwrap(), vec![Mode::StepGraph]);
    assert_eq!(parse_modes("step-captured,step").unwrap(), vec![Mode::StepCaptured, Mode::Step]);
    assert_eq!(parse_modes("phases,step").unwrap(), vec![Mode::Phases, Mode::Step]);
    assert!(parse_modes("step,bogus").is_err());
    assert_eq!("npz:a.npz".parse::<DataSource>().unwrap(), DataSource::Npz("a.npz".into()));
    assert!("npz:".parse::<DataSource>().is_err());
    assert!("zip".parse::<Upload>().is_err());
    assert_eq!("adamw-flat".parse::<Optimizer>().unwrap(), Optimizer::AdamWFlat);
    assert_eq!("adamw-burn".parse::<Optimizer>().unwrap(), Optimizer::AdamWBurn);
    assert!("sgd".parse::<Optimizer>().unwrap_err().contains("adamw, adamw-burn or adamw-flat"));
}

/// `--pointwise kernels` likewise: the thread's 1x1-convolution choice once `run_config` starts,
/// and the report's; both train (on the CPU the node runs Burn's convolution functions).
#[test]
fn the_pointwise_choice_reaches_the_steps_and_the_report() {
    for kind in [PointwiseImpl::Kernels, PointwiseImpl::Burn] {
        derma_model::set_pointwise_impl(if kind == PointwiseImpl::Burn { PointwiseImpl::Kernels } else { PointwiseImpl::Burn });
        let s = Settings { modes: vec![Mode::Step], pointwise: kind, ..settings() };
        let r = run_config(&s, SizeBatch { size: 28, batch: 4 }, &Device::flex(), |_| {}).unwrap();
        assert_eq!(derma_model::pointwise_impl(), kind);
        check(r.step.as_ref().unwrap(), 2, 8, true);
        let report = BenchReport { pointwise: kind.name().into(), ..report(false, r) };
        let header = table(&report).lines().next().unwrap().to_string();
        assert_eq!(header.contains("| adamw | pointwise kernels |"), kind == PointwiseImpl::Kernels, "{header}");
        assert_eq!(serde_json::to_value(&report).unwrap()["pointwise"], kind.name());
    }
}

/// The binary refuses a bad learning rate or weight decay, and a `--json` whose folder does not
/// exist, before measuring anything (a NaN rate failed after the warm-up, a bad path after the
/// whole benchmark).
#[test]
fn the_binary_refuses_bad_rates_and_json_paths_up_front() {
    let run = |extra: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_derma-bench"))
            .args(["--backend", "cpu", "--sizes", "28:2", "--width", "0.1", "--steps", "1"])
            .args(extra)
            .output()
            .unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    for (extra, want) in [
        (vec!["--lr=-1"], "--lr must be > 0, got -1"),
        (vec!["--lr", "nan"], "--lr must be > 0, got NaN"),
        (vec!["--weight-decay=-5"], "--weight-decay must be >= 0, got -5"),
        (vec!["--json", "/nonexistent/folder/x.json"], "--json /nonexistent/folder/x.json: its folder /nonexistent/folder does not exist"),
    ] {
        let (ok, err) = run(&extra);
        assert!(!ok && err.contains(want) && !err.contains("derma-bench: "), "{extra:?}: {err}");
    }
}
