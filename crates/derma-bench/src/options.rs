//! What to measure: `size:batch` pairs, modes and the data source, parsed from flags.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// One configuration: images of `size`×`size` pixels, `batch` per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeBatch {
    /// Image side in pixels (the network input).
    pub size: usize,
    /// Images per step.
    pub batch: usize,
}

impl FromStr for SizeBatch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (size, batch) = s.split_once(':').ok_or_else(|| format!("`{s}`: expected SIZE:BATCH, e.g. 28:256"))?;
        let parse = |what: &str, v: &str| match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("`{s}`: {what} must be a positive integer, got `{v}`")),
        };
        Ok(Self { size: parse("size", size)?, batch: parse("batch", batch)? })
    }
}

/// Parses a comma-separated `SIZE:BATCH` list (`28:256,224:128`).
pub fn parse_sizes(s: &str) -> Result<Vec<SizeBatch>, String> {
    let v = s.split(',').filter(|p| !p.trim().is_empty()).map(|p| p.trim().parse()).collect::<Result<Vec<_>, _>>()?;
    if v.is_empty() {
        return Err("--sizes: no SIZE:BATCH given".into());
    }
    Ok(v)
}

/// A measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training steps on one batch uploaded once (the device's training throughput).
    Step,
    /// Training end to end: loader, augmentation, upload and step.
    E2e,
    /// [`Mode::E2e`] with the step captured as a graph and replayed ([`Mode::StepCaptured`]'s
    /// step): what derma-train runs on a GPU by default.
    E2eCaptured,
    /// The loader and augmentation alone (host throughput, no device work).
    Loader,
    /// Inference (`model.valid()` forward) on a resident batch.
    Infer,
    /// The same inference recorded once with `burn::tensor::capture` and replayed: on wgpu the
    /// recorded kernels are re-submitted without Burn's per-operation host work (tracing,
    /// fusion, dispatch), so `infer-graph` against `infer` measures that host overhead. Backends
    /// without graph support (the CPU) re-run the forward instead.
    InferGraph,
    /// One training step on the resident batch captured once and replayed: the replay re-runs
    /// the captured step's kernels against the buffers of that step, so the parameters do not
    /// advance. Not training: a bound on what capturing the training step could give.
    StepGraph,
    /// Training on the resident batch with the step captured as a graph after its warm-up and
    /// replayed ([`derma_train::captured_step`]): parameters, moments and running statistics
    /// written in place, so it trains (the parameters advance), unlike `step-graph`.
    StepCaptured,
    /// Training steps on the resident batch with a device synchronisation after the forward
    /// (and loss), the backward and the AdamW update: each phase's time until the host had
    /// issued it and until the device had finished it.
    Phases,
}

impl Mode {
    /// The flag spelling.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Step => "step",
            Mode::E2e => "e2e",
            Mode::E2eCaptured => "e2e-captured",
            Mode::Loader => "loader",
            Mode::Infer => "infer",
            Mode::InferGraph => "infer-graph",
            Mode::StepGraph => "step-graph",
            Mode::StepCaptured => "step-captured",
            Mode::Phases => "phases",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "step" => Ok(Mode::Step),
            "e2e" => Ok(Mode::E2e),
            "e2e-captured" => Ok(Mode::E2eCaptured),
            "loader" => Ok(Mode::Loader),
            "infer" => Ok(Mode::Infer),
            "infer-graph" => Ok(Mode::InferGraph),
            "step-graph" => Ok(Mode::StepGraph),
            "step-captured" => Ok(Mode::StepCaptured),
            "phases" => Ok(Mode::Phases),
            other => Err(format!("unknown mode `{other}` (expected step, e2e, e2e-captured, loader, infer, infer-graph, step-graph, step-captured or phases)")),
        }
    }
}

/// Parses a comma-separated mode list (`step,e2e,infer`).
pub fn parse_modes(s: &str) -> Result<Vec<Mode>, String> {
    let mut v: Vec<Mode> = Vec::new();
    for m in s.split(',').filter(|p| !p.trim().is_empty()) {
        let m: Mode = m.parse()?;
        if !v.contains(&m) {
            v.push(m);
        }
    }
    if v.is_empty() {
        return Err("--modes: no mode given".into());
    }
    Ok(v)
}

/// Where the images come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// Generated `u8` images of the benchmark size.
    Synthetic,
    /// The training split of a MedMNIST-layout `.npz`, resized by the augmentation.
    Npz(PathBuf),
}

impl FromStr for DataSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "synthetic" => Ok(DataSource::Synthetic),
            _ => match s.strip_prefix("npz:") {
                Some(p) if !p.is_empty() => Ok(DataSource::Npz(PathBuf::from(p))),
                _ => Err(format!("--data `{s}`: expected synthetic or npz:PATH")),
            },
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::Synthetic => write!(f, "synthetic"),
            DataSource::Npz(p) => write!(f, "npz:{}", p.display()),
        }
    }
}

/// How a host batch reaches the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// `HostBatch::images` (copies the pixels first): the training loop before 2026-11-28.
    Copy,
    /// `HostBatch::take_images` (the pixel buffer handed over without a copy): what the
    /// training loop does.
    Move,
}

impl FromStr for Upload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "copy" => Ok(Upload::Copy),
            "move" => Ok(Upload::Move),
            _ => Err(format!("--upload `{s}`: expected copy or move")),
        }
    }
}

/// The optimiser of the training modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimizer {
    /// [`derma_train::fused_adamw::FusedAdamW`], one operation (one kernel) per parameter
    /// tensor: what the training loop uses.
    AdamW,
    /// Burn's own AdamW, ~15 tensor operations per parameter tensor (the baseline of the
    /// fused one; `adamw` meant this in reports before 2026-11-27's fused AdamW).
    AdamWBurn,
    /// [`derma_train::flat_adamw::FlatAdamW`]: the same arithmetic over all parameters as one
    /// vector (a lever: ~15 operations per step instead of ~15 per parameter tensor).
    AdamWFlat,
}

impl Optimizer {
    /// The flag spelling.
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::AdamW => "adamw",
            Optimizer::AdamWFlat => "adamw-flat",
            Optimizer::AdamWBurn => "adamw-burn",
        }
    }
}

impl FromStr for Optimizer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "adamw" => Ok(Optimizer::AdamW),
            "adamw-flat" => Ok(Optimizer::AdamWFlat),
            "adamw-burn" => Ok(Optimizer::AdamWBurn),
            _ => Err(format!("--optimizer `{s}`: expected adamw, adamw-burn or adamw-flat")),
        }
    }
}
