//! # derma-bench
//!
//! Throughput and memory of MobileNetV2 training on this project's code path, to set beside
//! `scripts/bench_torch.py` (PyTorch) on the same GPU. Per image size and batch:
//!
//! - [`options`]: what to measure — the `size:batch` list, the modes, the data source.
//! - [`data`]: the images: synthetic `u8` images, or a MedMNIST-layout `.npz`.
//! - [`measure`]: the timed loops — the training step on a resident batch, end to end
//!   through the real loader and augmentation, the loader alone, inference, graph replays,
//!   and a step split into its synchronised phases.
//! - [`threads`]: CPU time per thread over a timed loop (which host thread bounds a step).
//! - [`memory`]: what the device allocator holds and its peak, where the backend reports it.
//! - [`report`]: the results as a table and as JSON.
//! - [`run`]: one configuration: data, a fresh model, the chosen modes, the memory reading.
//!
//! Every timer starts and stops on a synchronised device, so queued work never leaks into or
//! out of a measurement; inside a measured loop nothing is read back.

pub mod data;
pub mod measure;
pub mod memory;
pub mod options;
pub mod report;
pub mod run;
pub mod threads;
