//! Load a crop collection and print what the training would see.
//!
//! ```sh
//! cargo run --release -p mammo --example mammo_load -- DIR_OR_CSV [SIZE] [FIT] [INTENSITY]
//! cargo run --release -p mammo --example mammo_load -- /tmp/mammo_crops 384 crop percentile:0.5,99.5
//! ```
//!
//! A folder is read with `read_folder`, a `.csv` with `read_csv`; prints the class and split
//! counts, the channel count and the decode rate.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(source) = args.first() else {
        return Err("usage: mammo_load DIR_OR_CSV [SIZE] [FIT] [INTENSITY]".into());
    };
    let config = mammo::LoadConfig {
        size: args.get(1).map_or(Ok(384), |s| s.parse())?,
        fit: args
            .get(2)
            .map_or(Ok(mammo::Fit::default()), |s| s.parse())?,
        intensity: args
            .get(3)
            .map_or(Ok(mammo::Intensity::default()), |s| s.parse())?,
        ..mammo::LoadConfig::default()
    };
    let path = Path::new(source);
    let manifest = if path.is_dir() {
        mammo::read_folder(path)?
    } else {
        mammo::read_csv(path, None)?
    };
    println!(
        "{} images, classes {:?} {:?}",
        manifest.len(),
        manifest.class_names,
        manifest.class_counts()
    );
    let crops = mammo::load(&manifest, &config)?;
    for split in mammo::Split::ALL {
        let s = crops.split(split);
        // Images without a patient id count as one patient each.
        let ids: std::collections::HashSet<_> = s.patients.iter().flatten().collect();
        let patients = ids.len() + s.patients.iter().filter(|p| p.is_none()).count();
        println!(
            "{split:>5}: {:4} images, {:4} patients, per class {:?}",
            s.len(),
            patients,
            s.class_counts(crops.class_names.len())
        );
    }
    let r = crops.report;
    println!(
        "{}x{} px, {} channel(s), {} fit, {}: decoded {} images in {:.2}s ({:.0} images/s)",
        config.size,
        config.size,
        crops.train.channels,
        config.fit,
        config.intensity,
        r.images,
        r.seconds,
        r.images as f64 / r.seconds.max(1e-9)
    );
    Ok(())
}
