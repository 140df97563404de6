//! The error gallery: the test images the model got most confidently wrong.
//!
//! - Binary runs: false positives (negatives flagged, `prob >= threshold`) with the highest
//!   positive-class probability, and false negatives (positives missed) with the lowest.
//! - Multi-class runs: misclassified images (arg-max ≠ label) with the highest probability of
//!   the predicted class.
//!
//! Ties keep the order of `predictions.csv`. The images are not in the run folder: the caller
//! hands them over through an [`ImageSource`]; each becomes a thumbnail PNG in `gallery/`
//! named after its group, rank, split, index and probability.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;

use crate::error::{Error, Result};
use crate::output::{create_dir, write_atomic};
use crate::plot::encode_png;
use crate::rule::Rule;
use crate::run::Run;

/// An image given by an [`ImageSource`]: 8-bit pixels, rows top to bottom, channels
/// interleaved (HWC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumb {
    /// `height * width * channels` bytes.
    pub pixels: Vec<u8>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
}

/// Where the gallery's images come from: the dataset split and index of a row of
/// `predictions.csv` (`split` is `"test"`) → its image, or `None` when it cannot be had.
///
/// Any `Fn(&str, usize) -> Option<Thumb>` closure is an `ImageSource`.
pub trait ImageSource {
    /// The image of row `index` of `split`.
    fn image(&self, split: &str, index: usize) -> Option<Thumb>;
}

impl<F: Fn(&str, usize) -> Option<Thumb>> ImageSource for F {
    fn image(&self, split: &str, index: usize) -> Option<Thumb> {
        self(split, index)
    }
}

/// Which kind of error a gallery group shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Binary: a negative predicted positive.
    FalsePositive,
    /// Binary: a positive predicted negative.
    FalseNegative,
    /// Multi-class: a wrong arg-max.
    Misclassified,
}

impl ErrorKind {
    /// File name prefix: `fp`, `fn` or `err`.
    pub fn prefix(self) -> &'static str {
        match self {
            ErrorKind::FalsePositive => "fp",
            ErrorKind::FalseNegative => "fn",
            ErrorKind::Misclassified => "err",
        }
    }

    /// Heading of the group.
    pub fn title(self) -> &'static str {
        match self {
            ErrorKind::FalsePositive => "False positives with the highest probability",
            ErrorKind::FalseNegative => "False negatives with the lowest probability",
            ErrorKind::Misclassified => "Misclassified images with the highest predicted-class probability",
        }
    }
}

/// One gallery image: a row of the test split.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Split (`test`).
    pub split: String,
    /// Dataset index.
    pub index: usize,
    /// True class.
    pub label: usize,
    /// Predicted class.
    pub predicted: usize,
    /// Binary: the positive-class probability; multi-class: the predicted class's.
    pub prob: f64,
}

/// The items of one kind, most confident error first.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// What kind of errors.
    pub kind: ErrorKind,
    /// At most the gallery size of them.
    pub items: Vec<Item>,
}

/// The gallery's groups for `run`, at most `n` items each: binary runs a false-positive and a
/// false-negative group, multi-class runs one group of misclassified images.
pub fn select(run: &Run, n: usize) -> Vec<Group> {
    let rule = run.rule();
    let test = &run.test;
    let items: Vec<Item> = (0..test.len())
        .map(|i| Item {
            split: test.name.clone(),
            index: test.indices[i],
            label: test.labels[i],
            predicted: rule.predict(&test.probs[i]),
            prob: rule.confidence(&test.probs[i]),
        })
        .filter(|it| it.label != it.predicted)
        .collect();
    let take = |kind: ErrorKind, mut items: Vec<Item>, highest_first: bool| {
        // Stable sort: ties keep file order.
        items.sort_by(|a, b| if highest_first { b.prob.total_cmp(&a.prob) } else { a.prob.total_cmp(&b.prob) });
        items.truncate(n);
        Group { kind, items }
    };
    match rule {
        Rule::Threshold(_) => {
            let (fps, fns): (Vec<Item>, Vec<Item>) = items.into_iter().partition(|it| it.label == 0);
            vec![take(ErrorKind::FalsePositive, fps, true), take(ErrorKind::FalseNegative, fns, false)]
        }
        Rule::Argmax | Rule::Balanced(_) => vec![take(ErrorKind::Misclassified, items, true)],
    }
}

/// The file name of an item's thumbnail, e.g. `fp-01-test-123-p0.9731.png` or
/// `err-02-test-45-true3-pred5-p0.8810.png` (`rank` is 1-based).
pub fn file_name(kind: ErrorKind, rank: usize, item: &Item) -> String {
    let classes = if kind == ErrorKind::Misclassified { format!("-true{}-pred{}", item.label, item.predicted) } else { String::new() };
    format!("{}-{rank:02}-{}-{}{classes}-p{:.4}.png", kind.prefix(), item.split, item.index, item.prob)
}

/// A written gallery item.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The item.
    pub item: Item,
    /// Its thumbnail relative to the run folder (`gallery/…png`), `None` when there is no
    /// image (no source, or the source had none).
    pub file: Option<String>,
}

/// What [`write`] produced.
pub(crate) struct Written {
    /// The figures of each group.
    pub groups: Vec<(ErrorKind, Vec<Figure>)>,
    /// The thumbnails written.
    pub files: Vec<PathBuf>,
    /// Images that could not be had, in words.
    pub notes: Vec<String>,
}

/// Writes the thumbnails of `groups` into `dir/gallery/` (an earlier report's stay until
/// [`remove_other_thumbnails`], once the new pages are written).
pub(crate) fn write(dir: &Path, groups: &[Group], source: &dyn ImageSource, thumb_size: u32) -> Result<Written> {
    let folder = dir.join("gallery");
    create_dir(&folder)?;
    let (mut out, mut written, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    for group in groups {
        let mut figures = Vec::new();
        for (rank, item) in group.items.iter().enumerate() {
            let file = match source.image(&item.split, item.index) {
                None => {
                    notes.push(format!("no image for {} #{} (the image source returned none)", item.split, item.index));
                    None
                }
                Some(thumb) => match thumbnail_png(&thumb, thumb_size) {
                    Err(reason) => {
                        notes.push(format!("image of {} #{} not shown: {reason}", item.split, item.index));
                        None
                    }
                    Ok(png) => {
                        let name = file_name(group.kind, rank + 1, item);
                        let path = folder.join(&name);
                        write_atomic(&path, &png)?;
                        written.push(path);
                        Some(format!("gallery/{name}"))
                    }
                },
            };
            figures.push(Figure { item: item.clone(), file });
        }
        out.push((group.kind, figures));
    }
    Ok(Written { groups: out, files: written, notes })
}

/// The figures of `groups` from the thumbnails already in `dir/gallery/` (the names are
/// [`file_name`]s, so an earlier report of the same selection wrote them); `None` when none
/// of them is there.
pub(crate) fn existing(dir: &Path, groups: &[Group]) -> Option<Vec<(ErrorKind, Vec<Figure>)>> {
    let mut any = false;
    let figures = groups
        .iter()
        .map(|group| {
            let figures = group
                .items
                .iter()
                .enumerate()
                .map(|(rank, item)| {
                    let name = file_name(group.kind, rank + 1, item);
                    let file = dir.join("gallery").join(&name).is_file().then(|| format!("gallery/{name}"));
                    any |= file.is_some();
                    Figure { item: item.clone(), file }
                })
                .collect();
            (group.kind, figures)
        })
        .collect();
    any.then_some(figures)
}

/// Removes the thumbnails in `dir/gallery/` that are not in `keep` (an earlier report's).
pub(crate) fn remove_other_thumbnails(dir: &Path, keep: &[PathBuf]) -> Result<()> {
    let folder = dir.join("gallery");
    if !folder.is_dir() {
        return Ok(());
    }
    let io = |source| Error::Io { path: folder.clone(), action: "listing", cause: source };
    for entry in std::fs::read_dir(&folder).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = ["fp-", "fn-", "err-"].iter().any(|p| name.starts_with(p)) && name.ends_with(".png");
        if ours && !keep.contains(&path) {
            std::fs::remove_file(&path).map_err(|source| Error::Io { path: path.clone(), action: "removing", cause: source })?;
        }
    }
    Ok(())
}

/// PNG bytes of `thumb` scaled to fit `size` × `size`: small images are enlarged by a whole
/// factor with nearest-neighbour (pixels stay crisp, nothing is invented), large ones reduced.
pub fn thumbnail_png(thumb: &Thumb, size: u32) -> std::result::Result<Vec<u8>, String> {
    let (h, w, c) = (thumb.height, thumb.width, thumb.channels);
    if h == 0 || w == 0 {
        return Err(format!("empty image ({h}x{w})"));
    }
    if c != 1 && c != 3 {
        return Err(format!("{c} channels; expected 1 or 3"));
    }
    if thumb.pixels.len() != h * w * c {
        return Err(format!("{} bytes for a {h}x{w}x{c} image (expected {})", thumb.pixels.len(), h * w * c));
    }
    let (w32, h32) = (u32::try_from(w).map_err(|e| e.to_string())?, u32::try_from(h).map_err(|e| e.to_string())?);
    let longest = w32.max(h32);
    let (nw, nh, filter) = if longest <= size {
        let f = (size / longest).max(1);
        (w32 * f, h32 * f, FilterType::Nearest)
    } else {
        let scale = f64::from(size) / f64::from(longest);
        let s = |v: u32| ((f64::from(v) * scale).round() as u32).max(1);
        (s(w32), s(h32), FilterType::Triangle)
    };
    if c == 1 {
        let img = image::GrayImage::from_raw(w32, h32, thumb.pixels.clone()).ok_or("bad buffer")?;
        let img = image::imageops::resize(&img, nw, nh, filter);
        encode_png(img.as_raw(), nw, nh, image::ExtendedColorType::L8)
    } else {
        let img = image::RgbImage::from_raw(w32, h32, thumb.pixels.clone()).ok_or("bad buffer")?;
        let img = image::imageops::resize(&img, nw, nh, filter);
        encode_png(img.as_raw(), nw, nh, image::ExtendedColorType::Rgb8)
    }
}
