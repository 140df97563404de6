//! How often does a lesion stay fully inside the training image?
//!
//! Reads `lesions.csv` (`path,cx,cy,r` in source pixels, written by
//! `scripts/make_mammo_crops.py`), maps 32 points of each lesion's boundary circle through the
//! file pipeline (square fit to `--size`) and then through `--draws` seeded augmentation draws
//! of each preset, and counts the draws where every point lands inside the output frame.
//!
//! ```text
//! cargo run --release -p derma-train --example lesion_coverage -- DIR/lesions.csv --size 384
//! ```

use std::path::{Path, PathBuf};

use derma_data::augment::{Augment, Draw, image_rng};
use derma_data::{AugmentConfig, AugmentPreset};
use clap::Parser;

struct Lesion {
    width: f64,
    height: f64,
    cx: f64,
    cy: f64,
    r: f64,
}

fn read_lesions(csv: &Path) -> anyhow::Result<Vec<Lesion>> {
    let text = std::fs::read_to_string(csv).map_err(|e| anyhow::anyhow!("{}: {e}", csv.display()))?;
    let dir = csv.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 4 {
            anyhow::bail!("{} line {}: expected path,cx,cy,r", csv.display(), n + 1);
        }
        let num = |s: &str| s.trim().parse::<f64>().map_err(|_| anyhow::anyhow!("{} line {}: `{s}` is not a number", csv.display(), n + 1));
        let path: PathBuf = dir.join(f[0].trim());
        let (w, h) = image::image_dimensions(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        out.push(Lesion { width: w as f64, height: h as f64, cx: num(f[1])?, cy: num(f[2])?, r: num(f[3])? });
    }
    Ok(out)
}

/// Source pixel → stored pixel of the square fit (`crop`, `pad` or `stretch`).
fn fit_point(l: &Lesion, size: f64, fit: &str, (x, y): (f64, f64)) -> (f64, f64) {
    match fit {
        "stretch" => (x * size / l.width, y * size / l.height),
        _ => {
            let s = if fit == "pad" { size / l.width.max(l.height) } else { size / l.width.min(l.height) };
            (x * s + (size - l.width * s) / 2.0, y * s + (size - l.height * s) / 2.0)
        }
    }
}

/// Stored pixel → output pixel: the inverse of the augmentation's affine output → source map.
fn augment_point(aug: &Augment, d: &Draw, (x, y): (f64, f64)) -> (f64, f64) {
    let b = aug.source_point(d, 0.0, 0.0);
    let ex = aug.source_point(d, 1.0, 0.0);
    let ey = aug.source_point(d, 0.0, 1.0);
    let (a11, a21) = (ex.0 - b.0, ex.1 - b.1);
    let (a12, a22) = (ey.0 - b.0, ey.1 - b.1);
    let det = a11 * a22 - a12 * a21;
    let (px, py) = (x - b.0, y - b.1);
    ((a22 * px - a12 * py) / det, (-a21 * px + a11 * py) / det)
}

/// Fraction of lesions that stay fully inside the model input after the square fit and
/// seeded augmentation draws.
#[derive(Parser)]
struct Args {
    /// `lesions.csv` written by scripts/make_mammo_crops.py.
    lesions: PathBuf,
    /// Model input size in pixels.
    #[arg(long, default_value_t = 384)]
    size: usize,
    /// Augmentation draws per lesion and preset.
    #[arg(long, default_value_t = 20)]
    draws: usize,
    /// Square fit of the file pipeline.
    #[arg(long, default_value = "crop", value_parser = ["crop", "pad", "stretch"])]
    fit: String,
}

fn main() -> anyhow::Result<()> {
    let Args { lesions, size, draws, fit } = Args::parse();
    let lesions = read_lesions(&lesions)?;
    let s = size as f64;
    let inside = |p: (f64, f64)| p.0 >= 0.0 && p.1 >= 0.0 && p.0 <= s && p.1 <= s;
    let boundary = |l: &Lesion| -> Vec<(f64, f64)> {
        (0..32)
            .map(|k| {
                let t = k as f64 * std::f64::consts::TAU / 32.0;
                fit_point(l, s, &fit, (l.cx + l.r * t.cos(), l.cy + l.r * t.sin()))
            })
            .collect()
    };
    let after_fit = lesions.iter().filter(|l| boundary(l).into_iter().all(inside)).count();
    println!("{} lesions, {size} px, fit {fit}: {after_fit} ({:.1}%) fully inside after the fit", lesions.len(), 100.0 * after_fit as f64 / lesions.len() as f64);
    println!("{:<8} {:>10} {:>12} {:>14}", "preset", "draws", "fully in", "fraction");
    for preset in [AugmentPreset::None, AugmentPreset::Mammo, AugmentPreset::Natural] {
        let aug = Augment::new(AugmentConfig::preset(preset), size);
        let mut kept = 0usize;
        let mut total = 0usize;
        for (i, l) in lesions.iter().enumerate() {
            let pts = boundary(l);
            for epoch in 0..draws {
                let d = aug.draw(&mut image_rng(0, epoch, i), size, size);
                total += 1;
                kept += usize::from(pts.iter().all(|&p| inside(augment_point(&aug, &d, p))));
            }
        }
        println!("{:<8} {:>10} {:>12} {:>13.1}%", format!("{preset:?}").to_lowercase(), total, kept, 100.0 * kept as f64 / total as f64);
    }
    Ok(())
}
