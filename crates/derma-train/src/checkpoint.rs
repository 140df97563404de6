//! Resumable runs. After every epoch the run folder's `checkpoint/` holds what the next epoch
//! needs — the training model (not only the best one), AdamW's moments, the metric head,
//! hard-example mining's per-image losses, the global step and the best epoch so far — and
//! `derma-train --resume RUN` continues from it. A run that finishes removes its checkpoint
//! (its results are `model.bpk` and the report); one that is killed, diverges or loses its
//! machine keeps the last finished epoch's. One that diverged has it marked (`diverged`, and
//! how its steps ran): a resume that would repeat the same steps is refused with what to do
//! instead; one on another backend or step continues.
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
    /// [`crate::dataset::TaskData::fingerprint`] of the data trained on (absent in checkpoints
    /// of earlier versions): a resume refuses other data.
    #[serde(default)]
    pub data_hash: Option<String>,
    /// Set when the epoch after this checkpoint diverged (`Diverged`'s text): a resume that
    /// would repeat the same steps from here is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged: Option<String>,
    /// How the diverged epoch ran ([`run_signature`]): a resume that runs otherwise (another
    /// backend, the eager step instead of the captured one) does not repeat its steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_on: Option<String>,
}

/// How training steps run: the backend and whether a captured graph replays them (`graph`:
/// the captured step on a device with graph capture; on the CPU every step runs eagerly).
pub fn run_signature(backend_name: &str, graph: bool) -> String {
    format!("{backend_name}, {} step", if graph { "captured" } else { "eager" })
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

/// Records in `run_dir`'s checkpoint (where there is one: a run that diverged in its first
/// epoch has none) that training diverged after it, `why`, running `on` ([`run_signature`]).
pub fn mark_diverged(run_dir: &Path, why: &str, on: &str) {
    let Ok(mut state) = read_state(run_dir) else {
        return;
    };
    let path = run_dir.join(DIR).join("state.json");
    state.diverged = Some(why.to_string());
    state.diverged_on = Some(on.to_string());
    let written = serde_json::to_string_pretty(&state).map_err(anyhow::Error::from).and_then(|t| write_atomic(&path, t.as_bytes()));
    if let Err(e) = written {
        eprintln!("warning: could not record the divergence in {}: {e}", path.display());
    }
}

/// Why the run in `run_dir` stopped for good if it diverged (its checkpoint says so), for the
/// messages that would otherwise point to `--resume`.
pub fn diverged(run_dir: &Path) -> Option<String> {
    read_state(run_dir).ok()?.diverged
}

/// What to do with a run folder whose training diverged (`why`): with a checkpoint (an epoch
/// finished before) a resume on another step or backend, or a new start; without one a new
/// start.
pub fn diverged_advice(run_dir: &Path, why: &str) -> String {
    if run_dir.join(DIR).join("state.json").is_file() {
        format!(
            "{}: {why}. A resume on the same backend and step would repeat the same steps and diverge again; one that runs \
             otherwise continues (e.g. `derma-train --resume {} --step eager` after a captured step's NaN). Or start the \
             run again (e.g. with a lower --lr) with --overwrite to reuse the folder; its model.bpk and metrics.csv keep \
             the epochs before",
            run_dir.display(),
            run_dir.display()
        )
    } else {
        format!(
            "{}: {why}. It diverged in its first epoch, so nothing was kept: start it again (e.g. with a lower --lr), with \
             --overwrite to reuse the folder",
            run_dir.display()
        )
    }
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
    let state: State = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    // A damaged score would read as NaN and make the next epoch the best unconditionally.
    if state.best_score_text.parse::<f64>().is_err() {
        anyhow::bail!("{}: best_score_text `{}` is not a number (a damaged checkpoint)", path.display(), state.best_score_text);
    }
    Ok(state)
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

/// Removes `run_dir/checkpoint/` (a finished run's results are complete without it):
/// `state.json` first, so that a removal cut short (a kill, a full disk) leaves no `state.json`
/// naming epoch files already gone — derma-predict, `--out` and the cascade take a run with a
/// `state.json` for unfinished. What is left of the folder is then only litter.
pub fn remove(run_dir: &Path) {
    let dir = run_dir.join(DIR);
    if !dir.exists() {
        return;
    }
    let state = dir.join("state.json");
    if let Err(e) = std::fs::remove_file(&state)
        && state.exists()
    {
        eprintln!("warning: could not remove {}: {e}", state.display());
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("warning: could not remove {}: {e}", dir.display());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint whose next epoch diverged is marked: `--resume`, derma-predict's run check
    /// and a new run into the folder say so instead of pointing to `--resume`, which would
    /// repeat the same steps.
    #[test]
    fn a_diverged_run_is_not_sent_to_resume() {
        let run = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(run.path().join(DIR)).unwrap();
        let state = State {
            epoch: 1,
            stopped: false,
            step: 10,
            best_epoch: 1,
            best_score_text: "0.5".into(),
            mining_losses: None,
            head: false,
            metrics_rows: vec!["1,...".into()],
            data_hash: None,
            diverged: None,
            diverged_on: None,
        };
        std::fs::write(run.path().join(DIR).join("state.json"), serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(read_state(run.path()).unwrap(), state, "resumable before");
        // A damaged score is an error, not a NaN that any epoch beats.
        let damaged = State { best_score_text: "0.5x".into(), ..state.clone() };
        std::fs::write(run.path().join(DIR).join("state.json"), serde_json::to_string(&damaged).unwrap()).unwrap();
        assert!(read_state(run.path()).unwrap_err().to_string().contains("not a number"));
        let nan = State { best_score_text: "NaN".into(), ..state.clone() };
        std::fs::write(run.path().join(DIR).join("state.json"), serde_json::to_string(&nan).unwrap()).unwrap();
        assert!(read_state(run.path()).unwrap().best_score().is_nan(), "a NaN score (a diverged first epoch) is valid");
        std::fs::write(run.path().join(DIR).join("state.json"), serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(diverged(run.path()), None);
        std::fs::write(run.path().join("metrics.csv"), "epoch\n1\n").unwrap();
        let out_hint = crate::report::check_out_is_free(run.path(), &crate::report::RUN_FILES, false).unwrap_err().to_string();
        assert!(out_hint.contains("--resume"), "{out_hint}");

        mark_diverged(run.path(), "training diverged at epoch 2 (loss NaN); lower --lr", &run_signature("wgpu", true));
        assert_eq!(diverged(run.path()).as_deref(), Some("training diverged at epoch 2 (loss NaN); lower --lr"));
        let e = diverged_advice(run.path(), &diverged(run.path()).unwrap());
        assert!(e.contains("diverged at epoch 2") && e.contains("diverge again") && e.contains("--step eager") && e.contains("--overwrite"), "{e}");
        assert_eq!(read_state(run.path()).unwrap().diverged.as_deref(), Some("training diverged at epoch 2 (loss NaN); lower --lr"));
        let out_hint = crate::report::check_out_is_free(run.path(), &crate::report::RUN_FILES, false).unwrap_err().to_string();
        assert!(out_hint.contains("diverged") && !out_hint.contains("--resume"), "{out_hint}");
        let e = crate::predict::RunModel::load(run.path(), &burn::prelude::Device::flex()).err().unwrap().to_string();
        assert!(e.contains("diverge again") && !e.contains("finish a stopped run"), "{e}");
        // Marking a folder without a checkpoint (diverged in its first epoch) does nothing, and
        // its advice does not promise what is not there.
        let empty = tempfile::tempdir().unwrap();
        mark_diverged(empty.path(), "x", "y");
        assert!(!empty.path().join(DIR).exists());
        let e = diverged_advice(empty.path(), "training diverged at epoch 1 (loss NaN); lower --lr");
        assert!(e.contains("nothing was kept") && !e.contains("--resume") && !e.contains("model.bpk"), "{e}");
    }
}
