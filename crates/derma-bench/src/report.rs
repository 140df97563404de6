//! The results: one row per configuration, as a table and as JSON (the same layout
//! `scripts/bench_torch.py` writes, so `scripts/bench_gpu.sh compare` reads both).

use serde::Serialize;

use crate::measure::{Measurement, PhaseMeasurement};
use crate::memory::{MemoryStats, mib};

/// Everything measured for one `size:batch`.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigResult {
    /// Image side in pixels.
    pub size: usize,
    /// Images per step.
    pub batch: usize,
    /// Training on a resident batch.
    pub step: Option<Measurement>,
    /// Training through the loader.
    pub e2e: Option<Measurement>,
    /// Training through the loader with the captured step (derma-train's default on a GPU).
    pub e2e_captured: Option<Measurement>,
    /// The loader alone.
    pub loader: Option<Measurement>,
    /// Inference on a resident batch.
    pub infer: Option<Measurement>,
    /// The same inference replayed from a captured graph.
    pub infer_graph: Option<Measurement>,
    /// One training step replayed from a captured graph (parameters do not advance: a bound).
    pub step_graph: Option<Measurement>,
    /// Training with the step captured as a graph and replayed (parameters advance).
    pub step_captured: Option<Measurement>,
    /// A training step split into synchronised phases.
    pub phases: Option<PhaseMeasurement>,
    /// The allocator after this configuration (`None`: the backend reports none).
    pub memory: Option<MemoryStats>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `burn`.
    pub framework: String,
    /// Burn's version.
    pub framework_version: String,
    /// The backend as `derma_train::backend` names it, with the shader compiler.
    pub backend: String,
    /// MobileNetV2 width multiplier.
    pub width: f64,
    /// Classifier outputs.
    pub classes: usize,
    /// Data source (`synthetic`, `npz:PATH`).
    pub data: String,
    /// Augmentation preset of the loader.
    pub augment: String,
    /// How host batches reach the device (`copy`, `move`).
    pub upload: String,
    /// Untimed iterations per measurement.
    pub warmup_steps: usize,
    /// Timed iterations per measurement.
    pub steps: usize,
    /// Learning rate of the training steps.
    pub lr: f64,
    /// The training modes' optimiser (`adamw`: the fused one, `adamw-burn`, `adamw-flat`).
    pub optimizer: String,
    /// Batch norms with their running statistics (`--freeze-bn`).
    pub freeze_bn: bool,
    /// Training-mode batch norm (`fused`, `burn`: `--batch-norm`).
    pub batch_norm: String,
    /// Depthwise convolutions' backward pass (`kernels`, `burn`: `--depthwise`).
    pub depthwise: String,
    /// 1x1 convolutions (`burn`, `kernels`: `--pointwise`).
    pub pointwise: String,
    /// Process id (to match `nvidia-smi` samples).
    pub pid: u32,
    /// One entry per configuration.
    pub results: Vec<ConfigResult>,
}

fn cell(m: &Option<Measurement>) -> String {
    m.as_ref().map_or("-".into(), |m| format!("{:.1}", m.images_per_second))
}

/// A plain-text table of `report`.
pub fn table(report: &BenchReport) -> String {
    let mut s = format!(
        "{} {} | {} | width {} | data {} | augment {} | upload {} | {}{}{}{}{} | {} warmup + {} timed steps\n",
        report.framework,
        report.framework_version,
        report.backend,
        report.width,
        report.data,
        report.augment,
        report.upload,
        report.optimizer,
        if report.freeze_bn { " | frozen batch norms" } else { "" },
        if report.batch_norm == "burn" { " | Burn's batch norm" } else { "" },
        if report.depthwise == "burn" { " | Burn's depthwise backward" } else { "" },
        if report.pointwise == "kernels" { " | pointwise kernels" } else { "" },
        report.warmup_steps,
        report.steps
    );
    s += &format!(
        "{:>5} {:>6} {:>12} {:>12} {:>12} {:>13} {:>12} {:>12} {:>12} {:>13} {:>11} {:>11}\n",
        "size",
        "batch",
        "step img/s",
        "e2e img/s",
        "e2e-captured",
        "loader img/s",
        "infer img/s",
        "inf-graph",
        "step-graph",
        "step-captured",
        "peak MiB",
        "in use MiB"
    );
    for r in &report.results {
        let (peak, in_use) = r.memory.map_or(("n/a".into(), "n/a".into()), |m| {
            (format!("{:.0}", mib(m.peak_reserved_bytes)), format!("{:.0}", mib(m.in_use_bytes)))
        });
        s += &format!(
            "{:>5} {:>6} {:>12} {:>12} {:>12} {:>13} {:>12} {:>12} {:>12} {:>13} {:>11} {:>11}\n",
            r.size,
            r.batch,
            cell(&r.step),
            cell(&r.e2e),
            cell(&r.e2e_captured),
            cell(&r.loader),
            cell(&r.infer),
            cell(&r.infer_graph),
            cell(&r.step_graph),
            cell(&r.step_captured),
            peak,
            in_use
        );
    }
    if report.results.iter().any(|r| r.step_graph.is_some()) {
        s += "step-graph: one captured training step replayed (parameters do not advance): a bound, not training.\n";
    }
    for r in &report.results {
        if let Some(m) = r.step.as_ref().filter(|m| !m.threads.is_empty()) {
            s += &format!(
                "step {}:{}: {:.2} ms/step wall; CPU ms/step by thread: {}\n",
                r.size,
                r.batch,
                m.ms_per_step,
                crate::threads::describe(&m.threads)
            );
        }
        if let Some(p) = &r.phases {
            s += &format!("phases {}:{}: {}\n", r.size, r.batch, p.summary());
        }
    }
    if report.results.iter().any(|r| r.memory.is_none()) {
        s += "peak MiB: n/a = this backend reports no allocator statistics (the CPU Flex backend).\n";
    } else if report.results.len() > 1 {
        s += "peak MiB: reserved-memory peak of the whole process so far (one configuration per process gives per-configuration peaks).\n";
    }
    s
}
