//! Test helpers: write small images and manifests into a temp dir, build records.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};
use mammo::{Record, Split};

fn parent(path: &Path) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("create dir");
    }
}

/// 16-bit grayscale image (`.png` or `.tif` by extension), row-major values.
pub fn save_gray16(path: &Path, width: u32, height: u32, values: &[u16]) {
    parent(path);
    ImageBuffer::<Luma<u16>, _>::from_raw(width, height, values.to_vec())
        .expect("size")
        .save(path)
        .expect("save");
}

/// 8-bit grayscale image.
pub fn save_gray8(path: &Path, width: u32, height: u32, values: &[u8]) {
    parent(path);
    ImageBuffer::<Luma<u8>, _>::from_raw(width, height, values.to_vec())
        .expect("size")
        .save(path)
        .expect("save");
}

/// 8-bit gray + alpha image.
pub fn save_gray_alpha8(path: &Path, width: u32, height: u32, values: &[u8]) {
    parent(path);
    ImageBuffer::<LumaA<u8>, _>::from_raw(width, height, values.to_vec())
        .expect("size")
        .save(path)
        .expect("save");
}

/// 8-bit RGB image, values interleaved.
pub fn save_rgb8(path: &Path, width: u32, height: u32, values: &[u8]) {
    parent(path);
    ImageBuffer::<Rgb<u8>, _>::from_raw(width, height, values.to_vec())
        .expect("size")
        .save(path)
        .expect("save");
}

/// 8-bit RGBA image, values interleaved.
pub fn save_rgba8(path: &Path, width: u32, height: u32, values: &[u8]) {
    parent(path);
    ImageBuffer::<Rgba<u8>, _>::from_raw(width, height, values.to_vec())
        .expect("size")
        .save(path)
        .expect("save");
}

/// 16-bit RGB image, values interleaved.
pub fn save_rgb16(path: &Path, width: u32, height: u32, values: &[u16]) {
    parent(path);
    ImageBuffer::<Rgb<u16>, _>::from_raw(width, height, values.to_vec())
        .expect("size")
        .save(path)
        .expect("save");
}

/// A small 8-bit gray image with a value pattern that depends on `seed`.
pub fn save_small(path: &Path, seed: u8) {
    let values: Vec<u8> = (0..64u8)
        .map(|i| i.wrapping_mul(3).wrapping_add(seed))
        .collect();
    save_gray8(path, 8, 8, &values);
}

/// Write a text file (creating folders).
pub fn write(path: &Path, text: &str) -> PathBuf {
    parent(path);
    std::fs::write(path, text).expect("write");
    path.to_path_buf()
}

/// A record with a fake path; `origin` names its index.
pub fn record(index: usize, label: usize, patient: Option<&str>, split: Option<Split>) -> Record {
    Record {
        path: PathBuf::from(format!("img{index}.png")),
        label,
        patient: patient.map(str::to_string),
        split,
        origin: format!("test record {index}"),
    }
}

/// The error's message with its whole source chain, like anyhow's `{:#}`.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        s.push_str(": ");
        s.push_str(&e.to_string());
        source = e.source();
    }
    s
}
