//! `derma-bench`: MobileNetV2 training and inference throughput, and device memory, on this
//! project's code path. Compare with `scripts/bench_torch.py`; `scripts/bench_gpu.sh` runs both.
//!
//! ```sh
//! derma-bench --backend wgpu --sizes 28:256,224:128 --modes step,e2e,infer --json burn.json
//! ```

use std::path::PathBuf;

use clap::Parser;
use derma_bench::measure::Schedule;
use derma_bench::options::{DataSource, Mode, Optimizer, SizeBatch, Upload, parse_modes, parse_sizes};
use derma_bench::report::{BenchReport, table};
use derma_bench::run::{Settings, run_config_with};
use derma_data::AugmentPreset;
use derma_model::{BatchNormImpl, DepthwiseImpl, PointwiseImpl};

/// MobileNetV2 training/inference throughput and device memory (this project's code path).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// auto | wgpu | wgpu-software | cpu (auto: wgpu if a GPU adapter answers, else the CPU;
    /// wgpu-software: a software Vulkan adapter such as lavapipe, to check the GPU path).
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Comma-separated SIZE:BATCH configurations.
    #[arg(long, default_value = "28:256,224:128", value_parser = parse_sizes)]
    sizes: std::vec::Vec<SizeBatch>,
    /// MobileNetV2 width multiplier.
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    /// Classifier outputs (DermaMNIST: 7).
    #[arg(long, default_value_t = 7)]
    classes: usize,
    /// Untimed iterations before each measurement (compilation, autotuning).
    #[arg(long, default_value_t = 10)]
    warmup_steps: usize,
    /// Timed iterations per measurement.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Comma-separated modes: step (resident batch), e2e (loader + augmentation + upload +
    /// step), e2e-captured (e2e with the captured step, derma-train's default on a GPU), loader (the loader alone), infer, infer-graph (the inference replayed from a
    /// captured graph: Burn's per-operation host overhead, by difference with infer),
    /// step-graph (one training step replayed: a bound), step-captured (training with the
    /// step captured as a graph and replayed, parameters advancing), phases (forward, backward and AdamW
    /// update each synchronised and timed: issued vs finished).
    #[arg(long, default_value = "step,e2e,infer", value_parser = parse_modes)]
    modes: std::vec::Vec<Mode>,
    /// synthetic | npz:PATH (a MedMNIST-layout file; its train split, resized to each size).
    #[arg(long, default_value = "synthetic")]
    data: DataSource,
    /// Synthetic images per configuration (at least one batch).
    #[arg(long, default_value_t = 2048)]
    synthetic_images: usize,
    /// Loader augmentation: none | natural | mammo.
    #[arg(long, default_value = "natural")]
    augment: AugmentPreset,
    /// Batches the loader prepares ahead (the training loop uses 4).
    #[arg(long, default_value_t = 4)]
    prefetch: usize,
    /// move (what the training loop does: HostBatch::take_images, no host copy) | copy
    /// (HostBatch::images, a host copy of the pixels first).
    #[arg(long, default_value = "move")]
    upload: Upload,
    /// Constant AdamW learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// adamw (one fused operation per parameter tensor: the training loop's) | adamw-burn
    /// (Burn's own AdamW, ~15 operations per parameter tensor: the baseline) | adamw-flat (the
    /// same update over all parameters as one vector: a lever).
    #[arg(long, default_value = "adamw")]
    optimizer: Optimizer,
    /// Batch norms use their running statistics, as derma-train's `--freeze-bn`: the step
    /// without training-mode batch norm (what it costs: docs/performance.md).
    #[arg(long)]
    freeze_bn: bool,
    /// Training-mode batch norm: fused (derma-model's one-node batch norm with ReLU6 folded in,
    /// one or two kernels per direction on the GPU: what the training loop uses) | burn (Burn
    /// 0.22's own `batch_norm_train` and `relu6`, the decomposition it replaces: a lever's
    /// baseline).
    #[arg(long, default_value = "fused")]
    batch_norm: BatchNormImpl,
    /// Depthwise convolutions' backward pass: kernels (derma-model's node, two or three
    /// kernels on the GPU: what the training loop uses) | burn (Burn 0.22's convolution
    /// backward: a transposed convolution and a convolution by the output gradient, the
    /// baseline).
    #[arg(long, default_value = "kernels")]
    depthwise: DepthwiseImpl,
    /// 1x1 convolutions: burn (Burn 0.22's autotuned convolutions and their backward: what the
    /// training loop uses) | kernels (derma-model's pointwise node, one tiled matrix-product
    /// kernel in three directions on the GPU: the lever under test).
    #[arg(long, default_value = "burn")]
    pointwise: PointwiseImpl,
    /// Seed (model initialisation, synthetic data, augmentation).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() {
    // Rayon's workers (the loader's per-image augmentation) named, so the per-thread CPU
    // readings tell them from the calling thread, whose name they would otherwise inherit.
    let _ = rayon::ThreadPoolBuilder::new().thread_name(|_| "rayon".into()).build_global();
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The backend as the JSON report records it: `select`'s name (e.g. `wgpu (discrete GPU)`)
/// and, for wgpu, the build's shader compiler, so the WGSL and SPIR-V binaries' reports differ.
fn backend_description(name: &str) -> String {
    if name.starts_with("wgpu") {
        let compiler = if cfg!(feature = "vulkan") { "SPIR-V on Vulkan, else WGSL" } else { "WGSL" };
        let extra = if cfg!(feature = "autotune-cache") { ", autotune cache on disk" } else { "" };
        format!("{name}: fusion, autotune, {compiler}{extra}")
    } else {
        name.to_string()
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if !(args.width > 0.0 && args.width.is_finite()) {
        anyhow::bail!("--width must be > 0, got {}", args.width);
    }
    if args.steps == 0 {
        anyhow::bail!("--steps must be at least 1");
    }
    if args.classes == 0 {
        anyhow::bail!("--classes must be at least 1");
    }
    // As derma-train checks them (a NaN rate failed only after the warm-up).
    if !(args.lr.is_finite() && args.lr > 0.0) {
        anyhow::bail!("--lr must be > 0, got {}", args.lr);
    }
    if !(args.weight_decay.is_finite() && args.weight_decay >= 0.0) {
        anyhow::bail!("--weight-decay must be >= 0, got {}", args.weight_decay);
    }
    // The report's folder must exist before minutes of measuring, not after.
    if let Some(path) = &args.json {
        if path.is_dir() {
            anyhow::bail!("--json {}: is a folder; expected the path of the JSON file to write", path.display());
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
            anyhow::bail!("--json {}: its folder {} does not exist", path.display(), parent.display());
        }
    }
    let backend = derma_train::backend::select(&args.backend)?;
    let settings = Settings {
        width: args.width,
        classes: args.classes,
        modes: args.modes.clone(),
        schedule: Schedule { warmup: args.warmup_steps, steps: args.steps },
        data: args.data.clone(),
        synthetic_images: args.synthetic_images,
        augment: args.augment,
        prefetch: args.prefetch,
        upload: args.upload,
        lr: args.lr,
        weight_decay: args.weight_decay,
        optimizer: args.optimizer,
        freeze_bn: args.freeze_bn,
        batch_norm: args.batch_norm,
        depthwise: args.depthwise,
        pointwise: args.pointwise,
        seed: args.seed,
    };
    let mut report = BenchReport {
        framework: "burn".into(),
        framework_version: "0.22.1".into(),
        backend: backend_description(backend.name),
        width: args.width,
        classes: args.classes,
        data: args.data.to_string(),
        augment: format!("{:?}", args.augment).to_lowercase(),
        upload: format!("{:?}", args.upload).to_lowercase(),
        warmup_steps: args.warmup_steps,
        steps: args.steps,
        lr: args.lr,
        optimizer: args.optimizer.name().into(),
        freeze_bn: args.freeze_bn,
        batch_norm: args.batch_norm.name().into(),
        depthwise: args.depthwise.name().into(),
        pointwise: args.pointwise.name().into(),
        pid: std::process::id(),
        results: Vec::new(),
    };
    eprintln!("derma-bench: {} (pid {})", report.backend, report.pid);
    for &sb in &args.sizes {
        // The JSON is rewritten after every mode: a run stopped by a time cap keeps its modes.
        let done = report.clone();
        let result = run_config_with(&settings, sb, &backend.device, |line| eprintln!("{line}"), |partial| {
            if let Some(path) = &args.json {
                let mut so_far = done.clone();
                so_far.results.push(partial.clone());
                if let Err(e) = write_json(path, &so_far) {
                    eprintln!("warning: {e}");
                }
            }
        })?;
        report.results.push(result);
        // Keep what is measured so far if a later configuration fails.
        if let Some(path) = &args.json {
            write_json(path, &report)?;
        }
    }
    print!("{}", table(&report));
    Ok(())
}

/// Written through a temporary file and a rename: a kill mid-write leaves the previous JSON.
fn write_json(path: &std::path::Path, report: &BenchReport) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    derma_train::report::write_atomic(path, (text + "\n").as_bytes()).map_err(|e| anyhow::anyhow!("--json {}: {e}", path.display()))
}
