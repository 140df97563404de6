//! Test data shared by the derma-train integration tests.

#![allow(dead_code)] // each test crate uses its own part

use std::path::PathBuf;
use std::process::{Command, Output};

use medmnist::{MedMnistArrays, Split};

/// 28x28 RGB images whose class sets the mean colour, plus heavy per-pixel noise (σ ≈ 40):
/// learnable, but not by memorising pixels.
pub fn colour_split(per_class: usize, seed: u64) -> Split {
    const PALETTE: [[f32; 3]; 7] = [
        [230.0, 40.0, 40.0],
        [40.0, 230.0, 40.0],
        [40.0, 40.0, 230.0],
        [230.0, 230.0, 40.0],
        [230.0, 40.0, 230.0],
        [40.0, 230.0, 230.0],
        [128.0, 128.0, 128.0],
    ];
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut noise = move || {
        (0..4)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 33) as f32 / (1u64 << 31) as f32 - 0.5
            })
            .sum::<f32>()
            * 69.0
    };
    let n = 7 * per_class;
    let mut images = Vec::with_capacity(n * 28 * 28 * 3);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % 7;
        labels.push(c as u8);
        for _ in 0..28 * 28 {
            for &v in &PALETTE[c] {
                images.push((v + noise()).clamp(0.0, 255.0) as u8);
            }
        }
    }
    Split { images, labels, len: n, height: 28, width: 28, channels: 3 }
}

/// Process output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A temporary folder holding the colour dataset (`colours.npz`, 140/56/56 images), and the
/// run folder path inside it.
pub fn colour_run_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("colours.npz");
    let arrays = MedMnistArrays { train: colour_split(20, 1), val: colour_split(8, 2), test: colour_split(8, 3) };
    medmnist::write_npz(&npz, &arrays).unwrap();
    let out = dir.path().join("run");
    (dir, npz, out)
}

/// Runs the `derma-train` binary.
pub fn derma_train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_derma-train")).args(args).output().unwrap()
}

/// Runs the `derma-predict` binary.
pub fn derma_predict(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_derma-predict")).args(args).output().unwrap()
}
