//! Decoding image files to 8-bit pixels, with an intensity window for 16-bit images.
//!
//! [`decode`] reads PNG, TIFF and JPEG files with the `image` crate (the format is guessed
//! from the content, not the extension) and returns an [`Image`] of `u8` pixels with 1
//! (grayscale) or 3 (RGB) channels. Accepted pixel formats: 8- and 16-bit gray, RGB and RGBA,
//! and gray+alpha in PNG (the TIFF decoder does not read gray+alpha); palette and 1-bit PNGs
//! decode to RGB or gray; alpha is dropped. An RGB image whose three channels are equal at
//! every pixel (a gray palette, a gray image saved as RGB) is returned as gray. Anything else is refused: pixel formats the
//! decoder reads but this crate does not handle (e.g. 32-bit float TIFF) as
//! [`Error::UnsupportedPixelFormat`], files the decoder cannot read (e.g. gray+alpha, palette
//! or 32-bit integer TIFF) as [`Error::Decode`] with the decoder's reason.
//!
//! # Intensity normalisation ([`Intensity`])
//!
//! Each pixel value `x` is mapped through a window `[lo, hi]` to
//! `y = round(clamp((x - lo) / (hi - lo), 0, 1) · 255)`, where `round` rounds halves away
//! from zero (Rust's `f64::round`; for numpy use `np.floor(v + 0.5)`, not `np.round`, which
//! rounds halves to even). A window with `hi <= lo` is a step at `lo`: pixels `<= lo` map to
//! 0, brighter ones to 255 — a constant image is all 0, and a small bright lesion on a flat
//! background (fewer pixels than the percentile's tail, so both percentiles are the
//! background value) stays visible instead of vanishing.
//!
//! - `percentile:P_LO,P_HI` (the default, `percentile:0.5,99.5`): for 16-bit images the window
//!   is the `P_LO`-th and `P_HI`-th percentile of the image's own pixel values (for RGB, of all
//!   its R, G and B values together, alpha excluded). The percentile is exactly numpy's
//!   default, `np.percentile(x, q)` with `method="linear"`: for the `n` sorted values `v`,
//!   index `i = (n - 1) · (q / 100)`, and `v[⌊i⌋] + (v[⌊i⌋+1] - v[⌊i⌋]) · (i - ⌊i⌋)` (computed
//!   with numpy's formulas, see [`percentile_u16`]). 8-bit images pass through unchanged.
//! - `fixed:LO,HI`: the window `[LO, HI]` in the file's own raw values (e.g. `fixed:0,4095`
//!   for 12-bit data stored in 16-bit files), for 16-bit **and** 8-bit images.
//! - `none`: 16-bit images are scaled over the full range, `round(x · 255 / 65535)` (so 12-bit
//!   data stored in 16 bits comes out dark: use a window for it); 8-bit images pass through.
//!
//! The window is applied at the file's resolution, before any resizing.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::error::{Error, Result};
use crate::manifest::is_dicom_path;

/// A decoded image: `u8` pixels, row-major, channels last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `height × width × channels` values.
    pub pixels: Vec<u8>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
}

impl Image {
    /// The same image with 3 channels (a grayscale image is replicated into R, G and B).
    pub fn to_rgb(&self) -> Image {
        if self.channels == 3 {
            return self.clone();
        }
        Image {
            pixels: self.pixels.iter().flat_map(|&v| [v, v, v]).collect(),
            height: self.height,
            width: self.width,
            channels: 3,
        }
    }
}

/// How 16-bit (and, for `Fixed`, 8-bit) pixel values are mapped to `u8`; see the module
/// documentation. Parses from and displays as `percentile:0.5,99.5`, `fixed:0,4095`, `none`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Intensity {
    /// Per-image window between two percentiles (each in `0..=100`, `low < high`).
    Percentile {
        /// Lower percentile.
        low: f64,
        /// Upper percentile.
        high: f64,
    },
    /// A fixed window in raw pixel values.
    Fixed {
        /// Raw value mapped to 0.
        low: f64,
        /// Raw value mapped to 255.
        high: f64,
    },
    /// 16-bit: `round(x · 255 / 65535)`; 8-bit: unchanged.
    None,
}

impl Default for Intensity {
    /// `percentile:0.5,99.5`.
    fn default() -> Self {
        Intensity::Percentile {
            low: 0.5,
            high: 99.5,
        }
    }
}

impl fmt::Display for Intensity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Intensity::Percentile { low, high } => write!(f, "percentile:{low},{high}"),
            Intensity::Fixed { low, high } => write!(f, "fixed:{low},{high}"),
            Intensity::None => f.write_str("none"),
        }
    }
}

const INTENSITY_EXPECTED: &str = "`percentile:LO,HI` (0 <= LO < HI <= 100; `percentile` alone is 0.5,99.5), `fixed:LO,HI` (raw values, LO < HI) or `none`";

impl FromStr for Intensity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidOption {
            option: "intensity",
            value: s.to_string(),
            expected: INTENSITY_EXPECTED.into(),
        };
        let t = s.trim().to_ascii_lowercase();
        let (kind, args) = match t.split_once(':') {
            Some((k, a)) => (k.trim(), Some(a)),
            None => (t.as_str(), None),
        };
        let pair = |a: &str| -> Option<(f64, f64)> {
            let (lo, hi) = a.split_once(',')?;
            let lo: f64 = lo.trim().parse().ok()?;
            let hi: f64 = hi.trim().parse().ok()?;
            (lo.is_finite() && hi.is_finite() && lo < hi).then_some((lo, hi))
        };
        match (kind, args) {
            ("none", None) => Ok(Intensity::None),
            ("percentile", None) => Ok(Intensity::default()),
            ("percentile", Some(a)) => match pair(a) {
                Some((low, high)) if low >= 0.0 && high <= 100.0 => {
                    Ok(Intensity::Percentile { low, high })
                }
                _ => Err(bad()),
            },
            ("fixed", Some(a)) => pair(a)
                .map(|(low, high)| Intensity::Fixed { low, high })
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

/// Decode the image file at `path` to 8-bit pixels with 1 or 3 channels, applying
/// `intensity` (see the module documentation).
pub fn decode(path: impl AsRef<Path>, intensity: &Intensity) -> Result<Image> {
    let path = path.as_ref();
    if is_dicom_path(path) {
        return Err(Error::Dicom {
            path: path.to_path_buf(),
            origin: String::new(),
        });
    }
    let decode_err = |source| Error::Decode {
        path: path.to_path_buf(),
        origin: String::new(),
        source,
    };
    let reader = ImageReader::open(path)
        .map_err(|e| decode_err(image::ImageError::IoError(e)))?
        .with_guessed_format()
        .map_err(|e| decode_err(image::ImageError::IoError(e)))?;
    // EXIF / TIFF orientation applied, as PIL's `exif_transpose` and viewers do (a phone or
    // scanner JPEG stored sideways would otherwise train and predict rotated).
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let orientation = decoder.orientation().map_err(decode_err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    img.apply_orientation(orientation);
    let (width, height) = (img.width() as usize, img.height() as usize);
    let unsupported = |found: String| Error::UnsupportedPixelFormat {
        path: path.to_path_buf(),
        origin: String::new(),
        found,
    };
    // A gray image stored as RGB (a palette PNG with a gray palette, a gray JPEG saved as RGB)
    // is read as gray: the same values (the window's percentiles are those of the repeated
    // values), a third of the memory, and a dataset of such files stays one-channel.
    let u8s = |rgb: Vec<u8>| {
        let (values, c) = gray_if_equal(rgb);
        (window_u8(values, intensity), c)
    };
    let u16s = |rgb: Vec<u16>| {
        let (values, c) = gray_if_equal(rgb);
        (window_u16(&values, intensity), c)
    };
    let (pixels, channels) = match img {
        DynamicImage::ImageLuma8(b) => (window_u8(b.into_raw(), intensity), 1),
        DynamicImage::ImageLumaA8(b) => (window_u8(drop_alpha(b.into_raw(), 1), intensity), 1),
        DynamicImage::ImageRgb8(b) => u8s(b.into_raw()),
        DynamicImage::ImageRgba8(b) => u8s(drop_alpha(b.into_raw(), 3)),
        DynamicImage::ImageLuma16(b) => (window_u16(&b.into_raw(), intensity), 1),
        DynamicImage::ImageLumaA16(b) => (window_u16(&drop_alpha(b.into_raw(), 1), intensity), 1),
        DynamicImage::ImageRgb16(b) => u16s(b.into_raw()),
        DynamicImage::ImageRgba16(b) => u16s(drop_alpha(b.into_raw(), 3)),
        other => return Err(unsupported(format!("{:?}", other.color()))),
    };
    Ok(Image {
        pixels,
        height,
        width,
        channels,
    })
}

/// Interleaved RGB `values` and 3, or their first channel and 1 when every pixel has equal
/// channels.
fn gray_if_equal<T: Copy + PartialEq>(values: Vec<T>) -> (Vec<T>, usize) {
    if values.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]) {
        (values.iter().step_by(3).copied().collect(), 1)
    } else {
        (values, 3)
    }
}

/// Keep the first `keep` of every `keep + 1` values (drop the trailing alpha channel).
fn drop_alpha<T: Copy>(values: Vec<T>, keep: usize) -> Vec<T> {
    values
        .chunks_exact(keep + 1)
        .flat_map(|px| px[..keep].iter().copied())
        .collect()
}

/// `round(clamp((x - lo) / (hi - lo), 0, 1) · 255)`; when `hi <= lo`, a step at `lo`.
fn map_window(x: f64, lo: f64, hi: f64) -> u8 {
    if hi <= lo {
        return if x > lo { 255 } else { 0 };
    }
    (((x - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0).round() as u8
}

fn window_u8(values: Vec<u8>, intensity: &Intensity) -> Vec<u8> {
    match *intensity {
        Intensity::Fixed { low, high } => {
            let lut: Vec<u8> = (0..=255u8)
                .map(|x| map_window(f64::from(x), low, high))
                .collect();
            values.into_iter().map(|x| lut[usize::from(x)]).collect()
        }
        Intensity::Percentile { .. } | Intensity::None => values,
    }
}

fn window_u16(values: &[u16], intensity: &Intensity) -> Vec<u8> {
    let (lo, hi) = match *intensity {
        Intensity::Percentile { low, high } => {
            let hist = histogram(values);
            (
                percentile_hist(&hist, values.len(), low),
                percentile_hist(&hist, values.len(), high),
            )
        }
        Intensity::Fixed { low, high } => (low, high),
        Intensity::None => (0.0, 65535.0),
    };
    values
        .iter()
        .map(|&x| map_window(f64::from(x), lo, hi))
        .collect()
}

fn histogram(values: &[u16]) -> Vec<usize> {
    let mut hist = vec![0usize; 65536];
    for &v in values {
        hist[usize::from(v)] += 1;
    }
    hist
}

/// The `q`-th percentile (`0..=100`) of `values`, exactly as numpy's
/// `np.percentile(values, q)` (method `linear`) computes it in float64; `NaN` for no values.
pub fn percentile_u16(values: &[u16], q: f64) -> f64 {
    percentile_hist(&histogram(values), values.len(), q)
}

/// Percentile from a 65536-bin histogram of `n` values (the k-th smallest value is read off
/// the cumulative counts, so no sort is needed).
fn percentile_hist(hist: &[usize], n: usize, q: f64) -> f64 {
    if n == 0 {
        return f64::NAN;
    }
    let kth = |k: usize| -> f64 {
        let mut seen = 0;
        for (v, &c) in hist.iter().enumerate() {
            seen += c;
            if seen > k {
                return v as f64;
            }
        }
        (hist.len() - 1) as f64
    };
    // numpy (`_QuantileMethods["linear"]`): quantile = q / 100, virtual index = (n - 1) * quantile.
    let quantile = q / 100.0;
    let last = (n - 1) as f64;
    let virtual_index = last * quantile;
    if virtual_index >= last {
        return kth(n - 1);
    }
    if virtual_index < 0.0 {
        return kth(0);
    }
    let previous = virtual_index.floor();
    let gamma = virtual_index - previous;
    let k = previous as usize;
    let (a, b) = (kth(k), kth(k + 1));
    // numpy's _lerp: a + (b-a)*t, or b - (b-a)*(1-t) where t >= 0.5.
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}
