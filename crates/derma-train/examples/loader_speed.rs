//! Images per second of the data pipeline alone (no model): decoding an image-file dataset
//! once, then the training loader — mammography augmentation, normalisation and batching on
//! worker threads — over its training split.
//!
//! ```text
//! cargo run --release -p derma-train --example loader_speed -- DIR [--size 512] [--batch 32] [--epochs 2] [--augment mammo]
//! ```
//! `DIR` holds one subfolder of images per class (e.g. `scripts/make_mammo_crops.py` output).

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

use derma_data::{Augment, AugmentConfig, AugmentPreset, Loader, LoaderConfig, Normalize};
use derma_train::TrainConfig;
use derma_train::dataset::load_data;

/// Images per second of the data pipeline alone (no model).
#[derive(Parser)]
struct Args {
    /// A folder with one subfolder of images per class.
    dir: PathBuf,
    /// Model input size in pixels.
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Passes over the training split.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Augmentation preset (none, natural, mammo).
    #[arg(long, default_value = "mammo")]
    augment: AugmentPreset,
}

fn main() -> anyhow::Result<()> {
    let Args { dir, size, batch, epochs, augment: preset } = Args::parse();

    let config = TrainConfig {
        dataset: "folder".into(),
        data_dir: Some(dir),
        image_size: Some(size),
        ..TrainConfig::default()
    };
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    let data = load_data(&config)?; // prints the decode rate
    let threads = rayon::current_num_threads();
    let normalize = Normalize { affine: derma_model::InputNorm::ImageNet.affine(), out_channels: 3 };
    let augment = Augment::new(AugmentConfig::preset(preset), size);
    for epoch in 0..epochs {
        let started = Instant::now();
        let loader = Loader::spawn(
            &data.train,
            (0..data.train.len()).collect(),
            LoaderConfig { batch_size: batch, prefetch: 4, augment: augment.clone(), normalize, seed: 0, epoch },
        );
        let mut images = 0usize;
        for b in loader {
            images += b.labels.len();
        }
        let s = started.elapsed().as_secs_f64();
        println!(
            "epoch {}: {images} images, {size} px, {preset:?} augmentation, batch {batch}: {:.1}s, {:.0} images/s ({threads} worker threads)",
            epoch + 1,
            s,
            images as f64 / s
        );
    }
    Ok(())
}
