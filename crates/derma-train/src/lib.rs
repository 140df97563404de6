//! # derma-train
//!
//! The training side of the data flow, after the model:
//!
//! - [`config`]: the run configuration (TOML + flags) and its validation.
//! - [`cli`]: the training flags shared by the binaries, and their error exit.
//! - [`backend`]: the device — wgpu GPU or the Flex CPU backend.
//! - [`dataset`]: the task's data — MedMNIST or image files → train / val / test datasets.
//! - [`pretrained`]: where ImageNet / user weights come from.
//! - [`loss`]: cross-entropy, BCE, focal and combined losses with class weights.
//! - [`metric`]: the metric-learning auxiliary loss: batch-hard triplets on the embedding
//!   head and two-stage hard-sample generation (`--metric-weight`).
//! - [`mining`]: online hard-negative (hard-example) mining: per-sample training losses →
//!   sampling multipliers of the next epoch (`--hard-negative-mining`).
//! - [`step`]: one optimisation step (forward, loss, backward, AdamW), shared with `derma-bench`.
//! - [`captured_step`]: the same step captured once as a graph and replayed (parameters,
//!   moments, running statistics and the batch in stable memory, written in place).
//! - [`fused_adamw`]: AdamW with each parameter tensor's update as one operation (one kernel on
//!   the GPU), Burn's arithmetic and records: the training optimiser ([`step::adamw`]).
//! - [`flat_adamw`]: AdamW over all parameters as one vector (a throughput lever `derma-bench`
//!   measures; not yet the training default).
//! - [`train`]: the training loop (AdamW, warmup + cosine, best-epoch selection).
//! - [`checkpoint`]: the per-epoch checkpoint of a run, and resuming from it (`--resume`).
//! - [`evaluate`]: model → probabilities → metrics and the operating threshold.
//! - [`select`]: the model-selection metric (`--select-metric`, a sweep's fold score).
//! - [`report`]: the run folder's files (atomic) and the summary table.
//! - [`predict`]: a finished run folder → model, preprocessing and threshold → predictions
//!   for image files or an `.npz` split (the `derma-predict` binary).
//! - [`gradcam`]: Grad-CAM heatmaps on the last convolutional block, and overlays.
//! - [`folds`]: stratified (patient-grouped) k-fold splits and inner validation splits.
//! - [`sweep`]: cross-validated hyper-parameter sweeps in phases (the `derma-sweep` binary).
//! - [`cascade`]: a two-stage screener + specialist cascade (the `derma-cascade` binary).

pub mod backend;
pub mod captured_step;
pub mod cascade;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod evaluate;
pub mod flat_adamw;
pub mod fused_adamw;
pub mod folds;
pub mod gradcam;
pub mod loss;
pub mod metric;
pub mod mining;
pub mod predict;
pub mod pretrained;
pub mod report;
pub mod select;
pub mod step;
pub mod sweep;
pub mod train;

pub use config::TrainConfig;
pub use loss::{Alpha, Loss, LossConfig, LossKind};
