//! Resizing a decoded image to the square training resolution.
//!
//! Resampling is `image::imageops::resize` with `FilterType::Triangle`: bilinear when
//! enlarging; when shrinking, the triangle kernel is widened by the scale factor, so every
//! source pixel contributes (area-aware, like PIL's `BILINEAR` with reduction). An image that
//! already has the target size is not resampled.
//!
//! [`Fit`] decides how a non-square crop becomes `size × size`:
//!
//! - `crop` (default): torchvision's evaluation transform `Resize(size)` + `CenterCrop(size)`.
//!   The shorter side becomes `size`, the longer `⌊size · long / short⌋` (torchvision's
//!   `int(...)`), then the centre `size × size` is cut out at offset
//!   `round((resized - size) / 2)` with halves rounded to even (Python's `round`). Keeps the
//!   centre, may cut off the ends of an elongated crop.
//! - `pad`: letterbox. The longer side becomes `size`, the shorter `⌊size · short / long⌋`
//!   (at least 1), centred on a black (0) square at offset `⌊(size - resized) / 2⌋`. Keeps the
//!   whole crop.
//! - `stretch`: both sides to `size`; keeps everything, distorts the aspect ratio.

use std::fmt;
use std::str::FromStr;

use image::imageops::{self, FilterType};
use image::{ImageBuffer, Luma, Rgb};

use crate::decode::Image;
use crate::error::{Error, Result};

/// How a non-square image is made square; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// Shorter side to `size`, then centre crop (torchvision's eval transform).
    #[default]
    Crop,
    /// Longer side to `size`, then pad with black, centred.
    Pad,
    /// Both sides to `size`.
    Stretch,
}

impl fmt::Display for Fit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fit::Crop => "crop",
            Fit::Pad => "pad",
            Fit::Stretch => "stretch",
        })
    }
}

impl FromStr for Fit {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "crop" => Ok(Fit::Crop),
            "pad" => Ok(Fit::Pad),
            "stretch" => Ok(Fit::Stretch),
            _ => Err(Error::InvalidOption {
                option: "resize fit",
                value: s.to_string(),
                expected: "crop, pad or stretch".into(),
            }),
        }
    }
}

/// `image` resized to `size × size` according to `fit` (same channel count).
///
/// The largest aspect ratio (long side / short side) [`Fit::Crop`] accepts: the intermediate
/// image has `size × aspect` pixels on its long side.
pub const MAX_CROP_ASPECT: usize = 16;

/// Refuses an image `path` whose aspect ratio exceeds [`MAX_CROP_ASPECT`] under `fit` = crop.
pub fn check_aspect(image: &Image, fit: Fit, path: &std::path::Path) -> Result<()> {
    let (long, short) = (image.height.max(image.width), image.height.min(image.width));
    if fit == Fit::Crop && short > 0 && long > MAX_CROP_ASPECT * short {
        return Err(Error::ExtremeAspect {
            path: path.to_path_buf(),
            origin: String::new(),
            height: image.height,
            width: image.width,
            max: MAX_CROP_ASPECT,
        });
    }
    Ok(())
}

/// `size` must be positive ([`Error::ZeroSize`]); an empty image gives an all-black square.
pub fn resize(image: &Image, size: usize, fit: Fit) -> Result<Image> {
    if size == 0 {
        return Err(Error::ZeroSize);
    }
    let (h, w) = (image.height, image.width);
    if h == 0 || w == 0 {
        return Ok(Image {
            pixels: vec![0; size * size * image.channels],
            height: size,
            width: size,
            channels: image.channels,
        });
    }
    match fit {
        Fit::Stretch => Ok(scale(image, size, size)),
        Fit::Crop => {
            let (rh, rw) = if h <= w {
                (size, size * w / h)
            } else {
                (size * h / w, size)
            };
            let resized = scale(image, rh.max(1), rw.max(1));
            let top = half_round_even(rh.saturating_sub(size));
            let left = half_round_even(rw.saturating_sub(size));
            Ok(place(&resized, size, top as isize, left as isize))
        }
        Fit::Pad => {
            let (rh, rw) = if h >= w {
                (size, (size * w / h).max(1))
            } else {
                ((size * h / w).max(1), size)
            };
            let resized = scale(image, rh, rw);
            Ok(place(
                &resized,
                size,
                -(((size - rh) / 2) as isize),
                -(((size - rw) / 2) as isize),
            ))
        }
    }
}

/// `round(d / 2)` with halves to even, as Python's `round`.
fn half_round_even(d: usize) -> usize {
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// The `size × size` window of `image` starting at (`top`, `left`); outside is 0.
fn place(image: &Image, size: usize, top: isize, left: isize) -> Image {
    let c = image.channels;
    let mut pixels = vec![0u8; size * size * c];
    for y in 0..size {
        let sy = y as isize + top;
        if sy < 0 || sy >= image.height as isize {
            continue;
        }
        for x in 0..size {
            let sx = x as isize + left;
            if sx < 0 || sx >= image.width as isize {
                continue;
            }
            let src = (sy as usize * image.width + sx as usize) * c;
            let dst = (y * size + x) * c;
            pixels[dst..dst + c].copy_from_slice(&image.pixels[src..src + c]);
        }
    }
    Image {
        pixels,
        height: size,
        width: size,
        channels: c,
    }
}

/// Resample to `height × width` with the triangle filter.
fn scale(image: &Image, height: usize, width: usize) -> Image {
    if image.height == height && image.width == width {
        return image.clone();
    }
    let (w, h) = (image.width as u32, image.height as u32);
    let (nw, nh) = (width as u32, height as u32);
    let pixels = match image.channels {
        1 => ImageBuffer::<Luma<u8>, _>::from_raw(w, h, image.pixels.as_slice())
            .map(|b| imageops::resize(&b, nw, nh, FilterType::Triangle).into_raw()),
        _ => ImageBuffer::<Rgb<u8>, _>::from_raw(w, h, image.pixels.as_slice())
            .map(|b| imageops::resize(&b, nw, nh, FilterType::Triangle).into_raw()),
    };
    // `from_raw` only fails if the buffer is shorter than the dimensions say, which an `Image`
    // from `decode` never is; an inconsistent hand-made one resizes to black.
    let pixels = pixels.unwrap_or_else(|| vec![0; height * width * image.channels]);
    Image {
        pixels,
        height,
        width,
        channels: image.channels,
    }
}
