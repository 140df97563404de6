//! Loading a manifest into memory: split, decode, window, resize.
//!
//! [`load`] assigns splits ([`assign_splits`]), refuses an empty split, then decodes and
//! resizes every image in parallel (rayon) and gathers the three splits as `u8` arrays,
//! channels last, in manifest order within each split.
//!
//! - Channels: if every image is grayscale the splits have 1 channel; otherwise 3, with
//!   grayscale images replicated into R, G and B.
//! - Errors: if any image fails, the error is the first failing record's, in manifest order;
//!   when several fail, it is wrapped in [`Error::ImagesFailed`], which counts them.
//! - [`LoadReport`] gives the decode + resize time, for an images-per-second figure.

use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;

use crate::decode::{Image, Intensity, decode};
use crate::error::{Error, Result, located};
use crate::manifest::Manifest;
use crate::resize::{Fit, check_aspect, resize};
use crate::split::{Split, assign_splits, count_patients};

/// How to turn a manifest into training arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// Output side in pixels: every image becomes `size × size`.
    pub size: usize,
    /// How non-square images are made square.
    pub fit: Fit,
    /// Intensity window for 16-bit images.
    pub intensity: Intensity,
    /// `[train, val, test]` patient fractions, used when the manifest gives no (or only
    /// train/test) splits.
    pub fractions: [f64; 3],
    /// Seed of the patient split.
    pub seed: u64,
}

impl Default for LoadConfig {
    /// 384 px, `crop`, `percentile:0.5,99.5`, fractions `[0.7, 0.1, 0.2]`, seed 0.
    fn default() -> Self {
        LoadConfig {
            size: 384,
            fit: Fit::Crop,
            intensity: Intensity::default(),
            fractions: [0.7, 0.1, 0.2],
            seed: 0,
        }
    }
}

/// The images of one split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CropSplit {
    /// `n × height × width × channels` values, channels last.
    pub pixels: Vec<u8>,
    /// Class index per image.
    pub labels: Vec<usize>,
    /// Source file per image.
    pub paths: Vec<PathBuf>,
    /// Patient id per image, if known.
    pub patients: Vec<Option<String>>,
    /// Rows per image.
    pub height: usize,
    /// Columns per image.
    pub width: usize,
    /// 1 or 3.
    pub channels: usize,
}

impl CropSplit {
    fn empty(size: usize, channels: usize) -> Self {
        CropSplit {
            pixels: Vec::new(),
            labels: Vec::new(),
            paths: Vec::new(),
            patients: Vec::new(),
            height: size,
            width: size,
            channels,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image: `height × width × channels`.
    pub fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// The pixels of image `index`, or `None` if out of range.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let n = self.image_len();
        let start = index.checked_mul(n)?;
        self.pixels.get(start..start.checked_add(n)?)
    }

    /// Number of images per class, for `n_classes` classes.
    pub fn class_counts(&self, n_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; n_classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l) {
                *c += 1;
            }
        }
        counts
    }
}

/// How long decoding took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadReport {
    /// Wall-clock seconds spent decoding and resizing (all threads together).
    pub seconds: f64,
    /// Images decoded.
    pub images: usize,
}

/// A loaded dataset: class names and the three splits.
#[derive(Debug, Clone, PartialEq)]
pub struct Crops {
    /// Class names; labels index this list.
    pub class_names: Vec<String>,
    /// Training images.
    pub train: CropSplit,
    /// Validation images.
    pub val: CropSplit,
    /// Test images.
    pub test: CropSplit,
    /// Decode timing.
    pub report: LoadReport,
}

impl Crops {
    /// The split called `split`.
    pub fn split(&self, split: Split) -> &CropSplit {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
}

/// Split `manifest`, then decode and resize every image; see the module documentation.
pub fn load(manifest: &Manifest, config: &LoadConfig) -> Result<Crops> {
    if config.size == 0 {
        return Err(Error::ZeroSize);
    }
    let records = &manifest.records;
    if records.is_empty() {
        return Err(Error::EmptyManifest {
            place: "the manifest".into(),
            expected: "at least one image",
        });
    }
    let splits = assign_splits(records, config.fractions, config.seed)?;
    let mut counts = [0usize; 3];
    for s in &splits {
        counts[s.index()] += 1;
    }
    if let Some(empty) = Split::ALL.into_iter().find(|s| counts[s.index()] == 0) {
        return Err(Error::EmptySplit {
            split: empty,
            train: counts[0],
            val: counts[1],
            test: counts[2],
            patients: count_patients(records),
        });
    }

    let start = Instant::now();
    let images: Vec<Result<Image>> = records
        .par_iter()
        .map(|r| {
            decode(&r.path, &config.intensity)
                .and_then(|img| check_aspect(&img, config.fit, &r.path).map(|()| img))
                .and_then(|img| resize(&img, config.size, config.fit))
                .map_err(|e| e.with_origin(&r.origin))
        })
        .collect();
    let seconds = start.elapsed().as_secs_f64();

    let mut decoded = Vec::with_capacity(records.len());
    let mut failures = Vec::new();
    for (i, result) in images.into_iter().enumerate() {
        match result {
            Ok(image) => decoded.push(image),
            Err(e) => failures.push((i, e)),
        }
    }
    let failed = failures.len();
    if let Some((index, first)) = failures.into_iter().next() {
        if failed == 1 {
            return Err(first);
        }
        let r = &records[index];
        return Err(Error::ImagesFailed {
            failed,
            total: records.len(),
            first: located(&r.path, &r.origin),
            source: Box::new(first),
        });
    }
    let images = decoded;
    let channels = if images.iter().all(|i| i.channels == 1) {
        1
    } else {
        3
    };
    let mut out: [CropSplit; 3] = std::array::from_fn(|_| CropSplit::empty(config.size, channels));
    for (k, s) in out.iter_mut().enumerate() {
        s.pixels
            .reserve(counts[k] * config.size * config.size * channels);
    }
    for ((image, record), split) in images.into_iter().zip(records).zip(&splits) {
        let dst = &mut out[split.index()];
        if image.channels == channels {
            dst.pixels.extend_from_slice(&image.pixels);
        } else {
            dst.pixels
                .extend(image.pixels.iter().flat_map(|&v| [v, v, v]));
        }
        dst.labels.push(record.label);
        dst.paths.push(record.path.clone());
        dst.patients.push(record.patient.clone());
    }
    let [train, val, test] = out;
    Ok(Crops {
        class_names: manifest.class_names.clone(),
        train,
        val,
        test,
        report: LoadReport {
            seconds,
            images: records.len(),
        },
    })
}
