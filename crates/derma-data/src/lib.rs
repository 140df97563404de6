//! # derma-data
//!
//! The data stages between the source files and the model, in data-flow order:
//!
//! - [`dataset`]: an in-memory labelled image set ([`ImageDataset`]), its class names and
//!   counts, and binary views of multi-class sets (`--positive-classes`).
//! - [`sampler`]: which training images an epoch visits ([`Sampler`]): all of them shuffled,
//!   a weighted random sample, or majority-class undersampling; and the balanced class weights.
//! - [`augment`]: seeded per-image augmentation ([`Augment`]) — `none`, `natural`, `mammo`
//!   presets — and the deterministic evaluation resize.
//! - [`batch`]: parallel batch assembly with prefetch ([`Loader`]): augment, normalise to
//!   `[batch, channels, h, w]` floats, and hand over to the device.

pub mod augment;
pub mod batch;
pub mod dataset;
pub mod sampler;

pub use augment::{Augment, AugmentConfig, AugmentPreset};
pub use batch::{HostBatch, Loader, LoaderConfig, Normalize};
pub use dataset::{ImageDataset, SplitName};
pub use sampler::{Sampler, balanced_class_weights, class_counts};
