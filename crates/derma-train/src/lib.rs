//! # derma-train
//!
//! The training side of the data flow, after the model:
//!
//! - [`config`]: the run configuration (TOML + flags) and its validation.
//! - [`backend`]: the device — wgpu GPU or the Flex CPU backend.
//! - [`pretrained`]: where ImageNet / user weights come from.
//! - [`loss`]: cross-entropy, BCE, focal and combined losses with class weights.
//! - [`train`]: the training loop (AdamW, warmup + cosine, best-epoch selection).
//! - [`evaluate`]: model → probabilities → metrics and the operating threshold.
//! - [`report`]: the run folder's files (atomic) and the summary table.

pub mod backend;
pub mod config;
pub mod evaluate;
pub mod loss;
pub mod pretrained;
pub mod report;
pub mod train;

pub use config::TrainConfig;
pub use loss::{Alpha, Loss, LossConfig, LossKind};
