//! Images per second of the data pipeline alone (no model): decoding an image-file dataset
//! once, then the training loader — mammography augmentation, normalisation and batching on
//! worker threads — over its training split.
//!
//! ```text
//! cargo run --release -p derma-train --example loader_speed -- DIR [--size 512] [--batch 32] [--epochs 2] [--augment mammo]
//! ```
//! `DIR` holds one subfolder of images per class (e.g. `scripts/make_mammo_crops.py` output).

use std::time::Instant;

use derma_data::{Augment, AugmentConfig, AugmentPreset, Loader, LoaderConfig, Normalize};
use derma_train::TrainConfig;
use derma_train::train::load_data;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: &str| -> String {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
    };
    let dir = args.first().filter(|a| !a.starts_with("--")).ok_or_else(|| {
        anyhow::anyhow!("usage: loader_speed DIR [--size 512] [--batch 32] [--epochs 2] [--augment mammo]")
    })?;
    let size: usize = flag("--size", "512").parse()?;
    let batch: usize = flag("--batch", "32").parse()?;
    let epochs: usize = flag("--epochs", "2").parse()?;
    let preset: AugmentPreset = flag("--augment", "mammo").parse().map_err(|e: String| anyhow::anyhow!(e))?;

    let config = TrainConfig {
        dataset: "folder".into(),
        data_dir: Some(dir.into()),
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
