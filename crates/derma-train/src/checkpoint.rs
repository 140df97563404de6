//! Resumable runs. After every epoch the run folder's `checkpoint/` holds what the next epoch
//! needs — the training model (not only the best one), AdamW's moments, the metric head,
//! hard-example mining's per-image losses, the global step and the best epoch so far — and
//! `derma-train --resume RUN` continues from it. A run that finishes removes its checkpoint
//! (its results are `model.bpk` and the report); one that is killed, diverges or loses its
//! machine keeps the last finished epoch's.
//!
//! Files: `epoch-N-model.bpk`, `epoch-N-optimizer.bpk` (Burn's `OptimizerRecord`, keyed by
//! parameter id; burnpack keeps the ids, so the restored moments meet their parameters),
//! `epoch-N-head.bpk` (with a metric head), `best-K.bpk` (a copy of `model.bpk` as of the best
//! epoch K: a later epoch may overwrite `model.bpk` before its own checkpoint is complete) and
//! `state.json`, written last and atomically: it names the epoch whose files are complete, and
//! the files of older epochs are removed after it. A crash while writing leaves the previous
//! epoch's checkpoint valid.
//!
//! What a resumed run repeats exactly: the data order, augmentation and dropout masks of every
//! later epoch (all seeded by seed and epoch), the learning-rate schedule, AdamW's state, the
//! best-epoch selection — on the same backend, the uninterrupted run's result.
//!
//! The checkpoint is removed only once `report.json` is written: a run stopped during its
//! final evaluation resumes to that evaluation alone (`stopped` in `state.json`).

use std::path::{Path, PathBuf};

use burn::optim::OptimizerRecord;
use burn_store::{BurnpackStore, ModuleSnapshot};
use derma_model::{Embedding, MobileNetV2};
use serde::{Deserialize, Serialize};

use crate::report::write_atomic;

/// The checkpoint folder inside a run folder.
pub const DIR: &str = "checkpoint";

/// `checkpoint/state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Epochs finished (the resumed run starts at this 0-based epoch).
    pub epoch: usize,
    /// Training had ended (the last epoch, or `--patience`): a resume only runs the final
    /// evaluation of the best epoch.
    #[serde(default)]
    pub stopped: bool,
    /// Optimisation steps taken (the learning-rate schedule's position).
    pub step: usize,
    /// The best epoch so far (1-based) and its selection score, exactly (`score_text`:
    /// shortest round-trip form, `NaN` allowed); `best-K.bpk` holds its weights.
    pub best_epoch: usize,
    /// See `best_epoch`.
    pub best_score_text: String,
    /// Hard-example mining: the last known training loss of every training image.
    pub mining_losses: Option<Vec<Option<f64>>>,
    /// Whether `epoch-N-head.bpk` was written (a metric head).
    pub head: bool,
    /// The `metrics.csv` rows of the finished epochs (without the header): the resumed run
    /// writes them again before its own, whatever metrics.csv held when it stopped.
    pub metrics_rows: Vec<String>,
    /// [`crate::train::TaskData::fingerprint`] of the data trained on (absent in checkpoints
    /// of earlier versions): a resume refuses other data.
    #[serde(default)]
    pub data_hash: Option<String>,
}

impl State {
    /// The best epoch's selection score.
    pub fn best_score(&self) -> f64 {
        self.best_score_text.parse().unwrap_or(f64::NAN)
    }
}

fn file(dir: &Path, epoch: usize, what: &str) -> PathBuf {
    dir.join(format!("epoch-{epoch}-{what}.bpk"))
}

fn save_module<M: ModuleSnapshot>(module: &M, path: &Path) -> anyhow::Result<()> {
    let mut store = BurnpackStore::from_file(path).overwrite(true);
    module.save_into(&mut store).map_err(|e| anyhow::anyhow!("writing the checkpoint {}: {e}", path.display()))
}

fn load_module<M: ModuleSnapshot>(module: &mut M, path: &Path) -> anyhow::Result<()> {
    let mut store = BurnpackStore::from_file(path);
    module.load_from(&mut store).map(|_| ()).map_err(|e| anyhow::anyhow!("reading the checkpoint {}: {e}", path.display()))
}

/// Writes the checkpoint of `state.epoch` finished epochs into `run_dir/checkpoint/` and
/// removes the previous one's files.
pub fn save(
    run_dir: &Path,
    state: &State,
    model: &MobileNetV2,
    optimizer: OptimizerRecord,
    head: Option<&Embedding>,
) -> anyhow::Result<()> {
    let dir = run_dir.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    save_module(model, &file(&dir, state.epoch, "model"))?;
    let opt = file(&dir, state.epoch, "optimizer");
    optimizer.save(&opt).map_err(|e| anyhow::anyhow!("writing the checkpoint {}: {e}", opt.display()))?;
    if let Some(head) = head {
        save_module(head, &file(&dir, state.epoch, "head"))?;
    }
    // model.bpk holds the best epoch's weights now (no better epoch since): keep a copy. A
    // best-K.bpk of this very epoch is always rewritten: it may be left from a run killed
    // before its state.json, whose epoch K the resume has just trained again.
    let best = best_file(&dir, state.best_epoch);
    if state.best_epoch == state.epoch || !best.is_file() {
        copy_atomic(&run_dir.join("model.bpk"), &best)?;
    }
    write_atomic(&dir.join("state.json"), serde_json::to_string_pretty(state)?.as_bytes())?;
    // Only now are the older epoch's files unreferenced.
    let keep = [format!("epoch-{}-", state.epoch), format!("best-{}.", state.best_epoch)];
    for entry in std::fs::read_dir(&dir).map_err(|e| anyhow::anyhow!("cannot list {}: {e}", dir.display()))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if (name.starts_with("epoch-") || name.starts_with("best-")) && !keep.iter().any(|k| name.starts_with(k.as_str())) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

fn best_file(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("best-{epoch}.bpk"))
}

/// `src`'s bytes to `dst` through the run folder's atomic write.
fn copy_atomic(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(src).map_err(|e| anyhow::anyhow!("reading {}: {e}", src.display()))?;
    write_atomic(dst, &bytes)
}

/// The checkpoint of `run_dir`, or an error naming what is missing.
pub fn read_state(run_dir: &Path) -> anyhow::Result<State> {
    let path = run_dir.join(DIR).join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "--resume {}: no checkpoint to resume from ({}: {e}); a run that finished removes its checkpoint, and one \
             stopped during its first epoch has none",
            run_dir.display(),
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Loads the checkpoint's training model into `model` (a fresh network of the run's
/// configuration), its optimizer record and, with `head`, the metric head.
pub fn load(
    run_dir: &Path,
    state: &State,
    mut model: MobileNetV2,
    head: Option<Embedding>,
) -> anyhow::Result<(MobileNetV2, OptimizerRecord, Option<Embedding>)> {
    let dir = run_dir.join(DIR);
    load_module(&mut model, &file(&dir, state.epoch, "model"))?;
    let opt = file(&dir, state.epoch, "optimizer");
    let record = OptimizerRecord::load(&opt).map_err(|e| anyhow::anyhow!("reading the checkpoint {}: {e}", opt.display()))?;
    let head = match (head, state.head) {
        (Some(mut h), true) => {
            load_module(&mut h, &file(&dir, state.epoch, "head"))?;
            Some(h)
        }
        (None, false) => None,
        _ => anyhow::bail!("{}: the checkpoint and config.toml disagree on the metric head (metric_weight)", dir.display()),
    };
    Ok((model, record, head))
}

/// Removes `run_dir/checkpoint/` (a finished run's results are complete without it).
pub fn remove(run_dir: &Path) {
    let dir = run_dir.join(DIR);
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            eprintln!("warning: could not remove {}: {e}", dir.display());
        }
    }
}

/// Loads the best epoch's weights of the checkpoint into `model`, and puts them back in
/// `model.bpk` (which a later, unfinished epoch may have overwritten).
pub fn load_best(run_dir: &Path, state: &State, mut model: MobileNetV2) -> anyhow::Result<MobileNetV2> {
    let best = best_file(&run_dir.join(DIR), state.best_epoch);
    load_module(&mut model, &best)?;
    copy_atomic(&best, &run_dir.join("model.bpk"))?;
    Ok(model)
}
