//! Seeded per-image augmentation, and the deterministic evaluation resize.
//!
//! Every geometric transform (random resized crop, flips, rotation, translation, scale) is
//! composed into one affine map from output pixels to source pixels and sampled once with
//! bilinear interpolation, so an image is resampled a single time whatever the preset. Pixels
//! that fall outside the source are filled with 0. A positive angle turns the image clockwise
//! on screen, as torchvision's `F.affine` (`F.rotate` turns counter-clockwise); translation is a
//! fraction of the output side. Each piece equals torchvision's (`tests/augment.rs`,
//! `geometry_matches_torchvision`); torchvision's pipeline resamples once per transform.
//!
//! Presets:
//! - `none`: the evaluation transform (resize the whole image to the output size).
//! - `natural`: horizontal flip 0.5, random resized crop scale 0.08–1.0 (ratio 3/4–4/3),
//!   rotation ±15°, colour jitter: brightness/contrast/saturation ±0.2 and hue ±0.02 of a turn
//!   (torchvision's ImageNet recipe plus a little rotation; dermoscopy colour varies with
//!   camera and lighting).
//! - `mammo`: no flips, crop scale 0.95–1.0 (ratio 0.95–1.05), rotation ±7°, translate ±5%,
//!   scale 0.95–1.05, brightness/contrast ±0.1: nothing that cuts a small lesion out.
//!
//! Colour jitter is applied after the geometry, in an order drawn per image as torchvision's
//! `ColorJitter` does (a uniform permutation of brightness, contrast, saturation, hue, drawn
//! after the other parameters), with torchvision's definitions
//! (`torchvision.transforms.functional`):
//! brightness scales the pixels; contrast blends with the mean of the grayscale image
//! (`0.299 R + 0.587 G + 0.114 B`; the mean of the pixels for grayscale); saturation blends
//! each pixel with its grayscale value; hue shifts the HSV hue by a fraction of a turn.
//! Saturation and hue leave grayscale images unchanged.

use std::f64::consts::PI;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Named augmentation presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AugmentPreset {
    /// No augmentation (the evaluation transform).
    None,
    /// Natural-image augmentation.
    Natural,
    /// Mammography-safe augmentation.
    Mammo,
}

impl FromStr for AugmentPreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "natural" => Ok(Self::Natural),
            "mammo" => Ok(Self::Mammo),
            _ => Err(format!("unknown augmentation `{s}` (expected none, natural or mammo)")),
        }
    }
}

/// Every augmentation knob. Ranges are `[min, max]`, drawn uniformly per image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Probability of a horizontal flip.
    pub hflip: f64,
    /// Probability of a vertical flip.
    pub vflip: f64,
    /// Area fraction of the random resized crop.
    pub crop_scale: [f64; 2],
    /// Aspect ratio (w/h) of the random resized crop (drawn log-uniformly).
    pub crop_ratio: [f64; 2],
    /// Maximum rotation in degrees (drawn in `±rotation`).
    pub rotation: f64,
    /// Maximum translation as a fraction of the output size (drawn in `±translate`).
    pub translate: f64,
    /// Zoom factor range of the affine transform.
    pub scale: [f64; 2],
    /// Brightness factor drawn in `1 ± brightness`.
    pub brightness: f64,
    /// Contrast factor drawn in `1 ± contrast` (around the image mean).
    pub contrast: f64,
    /// Saturation factor drawn in `1 ± saturation` (colour images).
    #[serde(default)]
    pub saturation: f64,
    /// Hue shift drawn in `± hue` turns, at most 0.5 (colour images).
    #[serde(default)]
    pub hue: f64,
}

impl AugmentConfig {
    /// The preset's knobs.
    pub fn preset(preset: AugmentPreset) -> Self {
        match preset {
            AugmentPreset::None => Self {
                hflip: 0.0,
                vflip: 0.0,
                crop_scale: [1.0, 1.0],
                crop_ratio: [1.0, 1.0],
                rotation: 0.0,
                translate: 0.0,
                scale: [1.0, 1.0],
                brightness: 0.0,
                contrast: 0.0,
                saturation: 0.0,
                hue: 0.0,
            },
            AugmentPreset::Natural => Self {
                hflip: 0.5,
                vflip: 0.0,
                crop_scale: [0.08, 1.0],
                crop_ratio: [3.0 / 4.0, 4.0 / 3.0],
                rotation: 15.0,
                translate: 0.0,
                scale: [1.0, 1.0],
                brightness: 0.2,
                contrast: 0.2,
                saturation: 0.2,
                hue: 0.02,
            },
            AugmentPreset::Mammo => Self {
                hflip: 0.0,
                vflip: 0.0,
                crop_scale: [0.95, 1.0],
                crop_ratio: [0.95, 1.05],
                rotation: 7.0,
                translate: 0.05,
                scale: [0.95, 1.05],
                brightness: 0.1,
                contrast: 0.1,
                saturation: 0.0,
                hue: 0.0,
            },
        }
    }

    /// Checks every knob, naming the one at fault.
    pub fn validate(&self) -> Result<(), String> {
        let prob = |name: &str, p: f64| {
            if (0.0..=1.0).contains(&p) { Ok(()) } else { Err(format!("augment.{name} must be in [0, 1], got {p}")) }
        };
        let range = |name: &str, r: [f64; 2], lo: f64, hi: f64| {
            if r[0] <= r[1] && r[0] > lo && r[1] <= hi && r[0].is_finite() && r[1].is_finite() {
                Ok(())
            } else if hi.is_finite() {
                Err(format!("augment.{name} must be [min, max] with {lo} < min <= max <= {hi}, got {r:?}"))
            } else {
                Err(format!("augment.{name} must be [min, max] with {lo} < min <= max (finite), got {r:?}"))
            }
        };
        prob("hflip", self.hflip)?;
        prob("vflip", self.vflip)?;
        range("crop_scale", self.crop_scale, 0.0, 1.0)?;
        range("crop_ratio", self.crop_ratio, 0.0, f64::INFINITY)?;
        range("scale", self.scale, 0.0, f64::INFINITY)?;
        if !(0.0..=180.0).contains(&self.rotation) {
            return Err(format!("augment.rotation must be in [0, 180] degrees, got {}", self.rotation));
        }
        prob("translate", self.translate)?;
        prob("brightness", self.brightness)?;
        prob("contrast", self.contrast)?;
        prob("saturation", self.saturation)?;
        if !(0.0..=0.5).contains(&self.hue) {
            return Err(format!("augment.hue must be in [0, 0.5] turns, got {}", self.hue));
        }
        Ok(())
    }
}

/// One image's drawn parameters (exposed for tests and the lesion-coverage measurement).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    /// Crop centre in source pixels `(x, y)`.
    pub crop_center: (f64, f64),
    /// Crop size in source pixels `(w, h)`.
    pub crop_size: (f64, f64),
    /// Horizontal flip.
    pub hflip: bool,
    /// Vertical flip.
    pub vflip: bool,
    /// Rotation in radians.
    pub angle: f64,
    /// Translation as a fraction of the output size `(x, y)`.
    pub translate: (f64, f64),
    /// Zoom factor.
    pub scale: f64,
    /// Brightness factor.
    pub brightness: f64,
    /// Contrast factor.
    pub contrast: f64,
    /// Saturation factor.
    pub saturation: f64,
    /// Hue shift in turns.
    pub hue: f64,
    /// The order the colour operations apply in (torchvision's `ColorJitter` draws it per
    /// image with `torch.randperm(4)`).
    pub jitter_order: [Jitter; 4],
}

impl Draw {
    /// Whether the colour operations change an image of `c` channels (saturation and hue
    /// leave grayscale unchanged).
    pub fn changes_colour(&self, c: usize) -> bool {
        self.brightness != 1.0 || self.contrast != 1.0 || (c == 3 && (self.saturation != 1.0 || self.hue != 0.0))
    }
}

/// One colour-jitter operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Jitter {
    /// Scale the pixels.
    Brightness,
    /// Blend with the image's mean grey level.
    Contrast,
    /// Blend each pixel with its grey value.
    Saturation,
    /// Shift the HSV hue.
    Hue,
}

impl Jitter {
    /// torchvision's listing order (`ColorJitter`'s `fn_idx` 0, 1, 2, 3).
    pub const LISTED: [Jitter; 4] = [Jitter::Brightness, Jitter::Contrast, Jitter::Saturation, Jitter::Hue];
}

/// An augmentation pipeline producing square `size`×`size` images.
#[derive(Debug, Clone)]
pub struct Augment {
    /// The knobs.
    pub config: AugmentConfig,
    /// Output side in pixels.
    pub size: usize,
}

impl Augment {
    /// Pipeline with the given knobs and output size.
    pub fn new(config: AugmentConfig, size: usize) -> Self {
        Self { config, size }
    }

    /// The evaluation transform: the whole image resized to `size`.
    pub fn eval(size: usize) -> Self {
        Self::new(AugmentConfig::preset(AugmentPreset::None), size)
    }

    /// Draws the parameters for one image of `w`×`h` source pixels.
    pub fn draw(&self, rng: &mut impl Rng, w: usize, h: usize) -> Draw {
        let c = &self.config;
        let uniform = |rng: &mut dyn rand::RngCore, [lo, hi]: [f64; 2]| {
            if hi > lo { rng.random_range(lo..hi) } else { lo }
        };
        let (wf, hf) = (w as f64, h as f64);
        // torchvision RandomResizedCrop: 10 tries, then fall back to a centre crop of the whole
        // image with its aspect ratio clamped to `crop_ratio` (the whole image if it is within).
        let mut crop = ((wf / 2.0, hf / 2.0), (wf, hf));
        if c.crop_scale != [1.0, 1.0] || c.crop_ratio != [1.0, 1.0] {
            let (lo, hi) = (c.crop_ratio[0].min(c.crop_ratio[1]), c.crop_ratio[0].max(c.crop_ratio[1]));
            if wf / hf < lo {
                crop.1 = (wf, wf / lo);
            } else if wf / hf > hi {
                crop.1 = (hf * hi, hf);
            }
            for _ in 0..10 {
                let area = wf * hf * uniform(rng, c.crop_scale);
                let log_ratio = uniform(rng, [c.crop_ratio[0].ln(), c.crop_ratio[1].ln()]);
                let ratio = log_ratio.exp();
                let cw = (area * ratio).sqrt();
                let ch = (area / ratio).sqrt();
                if cw <= wf && ch <= hf {
                    let x0 = uniform(rng, [0.0, wf - cw]);
                    let y0 = uniform(rng, [0.0, hf - ch]);
                    crop = ((x0 + cw / 2.0, y0 + ch / 2.0), (cw, ch));
                    break;
                }
            }
        }
        let sym = |rng: &mut dyn rand::RngCore, m: f64| uniform(rng, [-m, m]);
        Draw {
            crop_center: crop.0,
            crop_size: crop.1,
            hflip: c.hflip > 0.0 && rng.random::<f64>() < c.hflip,
            vflip: c.vflip > 0.0 && rng.random::<f64>() < c.vflip,
            angle: sym(rng, c.rotation) * PI / 180.0,
            translate: (sym(rng, c.translate), sym(rng, c.translate)),
            scale: uniform(rng, c.scale),
            brightness: 1.0 + sym(rng, c.brightness),
            contrast: 1.0 + sym(rng, c.contrast),
            saturation: 1.0 + sym(rng, c.saturation),
            hue: sym(rng, c.hue),
            jitter_order: jitter_order(rng, c),
        }
    }

    /// Maps an output pixel centre `(u, v)` (in output pixels) to source coordinates.
    pub fn source_point(&self, d: &Draw, u: f64, v: f64) -> (f64, f64) {
        let s = self.size as f64;
        // Undo translation, then rotation and zoom, around the output centre.
        let px = u - s / 2.0 - d.translate.0 * s;
        let py = v - s / 2.0 - d.translate.1 * s;
        let (sin, cos) = (-d.angle).sin_cos();
        let mut qx = (cos * px - sin * py) / d.scale;
        let mut qy = (sin * px + cos * py) / d.scale;
        if d.hflip {
            qx = -qx;
        }
        if d.vflip {
            qy = -qy;
        }
        (
            d.crop_center.0 + qx * d.crop_size.0 / s,
            d.crop_center.1 + qy * d.crop_size.1 / s,
        )
    }

    /// Applies drawn parameters to an `[h, w, c]` image, returning `[size, size, c]`.
    ///
    /// # Panics
    /// When `src` does not hold `h × w × c` values.
    pub fn apply(&self, d: &Draw, src: &[u8], [h, w, c]: [usize; 3]) -> Vec<u8> {
        assert_eq!(src.len(), h * w * c, "Augment::apply: {h}x{w}x{c} image of {} values", src.len());
        let s = self.size;
        // `source_point` is affine in (u, v): evaluate it at three pixel centres, then step.
        let (x0, y0) = self.source_point(d, 0.5, 0.5);
        let (xu, yu) = self.source_point(d, 1.5, 0.5);
        let (xv, yv) = self.source_point(d, 0.5, 1.5);
        let (dxu, dyu, dxv, dyv) = (xu - x0, yu - y0, xv - x0, yv - y0);
        // Output pixel centres on the source's pixel centres, nothing else: the image itself
        // (what the sampling below gives too, every weight 0 or 1), e.g. the evaluation
        // transform of an image already at the training size.
        if (h, w) == (s, s) && (x0, y0, dxu, dyu, dxv, dyv) == (0.5, 0.5, 1.0, 0.0, 0.0, 1.0) && !d.changes_colour(c) {
            return src.to_vec();
        }
        let mut out = vec![0f32; s * s * c];
        // The channel count as a constant where it is known (gray, RGB): the per-channel loop
        // unrolls.
        let warp = match c {
            1 => warp::<1>,
            3 => warp::<3>,
            _ => warp::<0>,
        };
        warp(&mut out, src, [h, w, c], s, [x0 - 0.5, y0 - 0.5], [dxu, dyu, dxv, dyv]);
        color_jitter(&mut out, c, d);
        out.into_iter().map(round_to_u8).collect()
    }

    /// Draws from an RNG seeded by `(seed, epoch, position)` — `position`: the draw's place in
    /// the epoch's order — and applies: the result does not depend on thread scheduling.
    pub fn run(&self, src: &[u8], shape: [usize; 3], seed: u64, epoch: usize, position: usize) -> Vec<u8> {
        let d = self.draw(&mut image_rng(seed, epoch, position), shape[1], shape[0]);
        self.apply(&d, src, shape)
    }
}

/// A uniformly random order of the four colour operations (Fisher–Yates), drawn last so the
/// other parameters' draws do not depend on it, and only when two or more operations are on
/// (otherwise the order cannot matter and the listed one is kept without a draw).
fn jitter_order(rng: &mut impl Rng, c: &AugmentConfig) -> [Jitter; 4] {
    let mut order = Jitter::LISTED;
    let active = [c.brightness, c.contrast, c.saturation, c.hue].iter().filter(|&&m| m > 0.0).count();
    if active >= 2 {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
    }
    order
}

/// `p.round().clamp(0.0, 255.0) as u8` (half away from zero; NaN to 0) without a call to the
/// C library's `roundf` per value, which the baseline x86-64 target has no instruction for.
#[inline]
fn round_to_u8(p: f32) -> u8 {
    let p = p.clamp(0.0, 255.0);
    let whole = p as u32; // `p ≥ 0`: truncation is the floor
    // Exact: `p` and its integer part are within 2^8, far below f32's 2^24.
    let up = p - whole as f32 >= 0.5;
    (whole + up as u32) as u8
}

/// Grayscale value of an RGB pixel: ITU-R 601-2 luma `0.299 R + 0.587 G + 0.114 B` (PIL's
/// `convert("L")`; torchvision's tensor `rgb_to_grayscale` weighs R by 0.2989, which gives the
/// same uint8 values on the tests' torchvision fixture).
fn luma(p: &[f32]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Brightness, contrast, saturation, hue (see the module documentation) in the draw's order
/// on `[.., c]` pixels in `0..=255`, clamped after each step as torchvision's float path does.
fn color_jitter(out: &mut [f32], c: usize, d: &Draw) {
    let clamp = |v: f32| v.clamp(0.0, 255.0);
    for op in d.jitter_order {
        match op {
            Jitter::Brightness if d.brightness != 1.0 => {
                let b = d.brightness as f32;
                out.iter_mut().for_each(|p| *p = clamp(*p * b));
            }
            Jitter::Contrast if d.contrast != 1.0 => {
                let n = (out.len() / c).max(1) as f32;
                let mean =
                    if c == 3 { out.chunks_exact(3).map(luma).sum::<f32>() / n } else { out.iter().sum::<f32>() / out.len().max(1) as f32 };
                let k = d.contrast as f32;
                out.iter_mut().for_each(|p| *p = clamp((*p - mean) * k + mean));
            }
            // Saturation and hue leave grayscale unchanged.
            Jitter::Saturation if d.saturation != 1.0 && c == 3 => {
                let s = d.saturation as f32;
                for px in out.chunks_exact_mut(3) {
                    let g = luma(px);
                    px.iter_mut().for_each(|p| *p = clamp((*p - g) * s + g));
                }
            }
            Jitter::Hue if d.hue != 0.0 && c == 3 => shift_hue(out, d.hue as f32),
            _ => {}
        }
    }
}

/// Shifts the HSV hue of every pixel of `out` (`[.., 3]`, `0..=255`) by `turns`, keeping value
/// and saturation ([`hue_shifted`]). Blocks of pixels are split into colour planes, so that the
/// compiler evaluates the per-pixel arithmetic on several pixels per instruction; every pixel
/// gets the same operations as alone.
fn shift_hue(out: &mut [f32], turns: f32) {
    const LANES: usize = 16;
    let mut blocks = out.chunks_exact_mut(3 * LANES);
    for block in &mut blocks {
        let mut planes = [[0f32; LANES]; 3];
        for (i, px) in block.chunks_exact(3).enumerate() {
            (planes[0][i], planes[1][i], planes[2][i]) = (px[0], px[1], px[2]);
        }
        let [r, g, b] = &mut planes;
        for i in 0..LANES {
            (r[i], g[i], b[i]) = hue_shifted(r[i], g[i], b[i], turns);
        }
        for (i, px) in block.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&[r[i], g[i], b[i]]);
        }
    }
    for px in blocks.into_remainder().chunks_exact_mut(3) {
        (px[0], px[1], px[2]) = hue_shifted(px[0], px[1], px[2], turns);
    }
}

/// One RGB pixel with its HSV hue shifted by `turns` (`|turns| ≤ 0.5`); a gray pixel unchanged.
/// Written without jumps (selections only), so that blocks of pixels vectorise.
#[inline(always)]
fn hue_shifted(r: f32, g: f32, b: f32, turns: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let chroma = max - min;
    // The `rem_euclid`s and `%` of the formulas, on arguments whose range is known, without a
    // call to the C library's `fmodf` per pixel; each is the exact value `fmodf` gives.
    let (numerator, offset) = if max == r {
        (g - b, 0.0)
    } else if max == g {
        (b - r, 2.0)
    } else {
        (r - g, 4.0)
    };
    let q = numerator / chroma; // a gray pixel's NaN is not used
    // Red: `q.rem_euclid(6)`, `q` in [-1, 1]; green and blue: `q + offset`.
    let h = if max == r {
        if q < 0.0 { q + 6.0 } else { q }
    } else {
        q + offset
    } / 6.0;
    // `(h + turns).rem_euclid(1)` for `h` in [0, 1] and `|turns| ≤ 0.5`: in [-0.5, 1.5].
    let shifted = h + turns;
    let wrapped = if shifted >= 1.0 { shifted - 1.0 } else { shifted };
    let h = if wrapped < 0.0 { wrapped + 1.0 } else { wrapped } * 6.0;
    // `h % 2` for `h` in [0, 6]: subtract the even integer below (exact, as `fmodf`).
    let whole = h as i32;
    let x = chroma * (1.0 - ((h - (whole & !1) as f32) - 1.0).abs());
    // The sector's (chroma, x, 0) permutation, channel by channel: sectors 0..=5 give
    // (C, X, 0), (X, C, 0), (0, C, X), (0, X, C), (X, 0, C), (C, 0, X).
    let sector = whole.min(5);
    let pick = |full: [i32; 2], part: [i32; 2]| {
        if sector == full[0] || sector == full[1] {
            chroma
        } else if sector == part[0] || sector == part[1] {
            x
        } else {
            0.0
        }
    };
    let (r1, g1, b1) = (pick([0, 5], [1, 4]), pick([1, 2], [0, 3]), pick([3, 4], [2, 5]));
    if chroma <= 0.0 {
        return (r, g, b); // gray: no hue
    }
    (r1 + min, g1 + min, b1 + min)
}

/// The RNG of the draw at `position` of an epoch's order. Position `p` mixes `p + 1`, so no
/// draw shares its stream with the sampler's epoch RNG (`seed ^ epoch·φ`).
pub fn image_rng(seed: u64, epoch: usize, position: usize) -> StdRng {
    let mut z = seed
        ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (position as u64).wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// Bilinear sample at continuous pixel coordinates (pixel centres at integers). Points inside
/// the image area (`-0.5..w-0.5`) clamp to the edge pixels, as PIL and torchvision resize do;
/// points outside it are 0 (the fill of rotations and translations).
/// Fills `out` (`[s, s, c]`) with bilinear samples of `src` at the points `origin + u·(dxu,
/// dyu) + v·(dxv, dyv)` of output pixel `(u, v)`. `C`: the channel count `c` as a constant (0:
/// not known at compile time).
fn warp<const C: usize>(out: &mut [f32], src: &[u8], shape: [usize; 3], s: usize, origin: [f64; 2], [dxu, dyu, dxv, dyv]: [f64; 4]) {
    let c = if C == 0 { shape[2] } else { C };
    for (v, row) in out.chunks_exact_mut(s * c).enumerate() {
        let (rx, ry) = (origin[0] + v as f64 * dxv, origin[1] + v as f64 * dyv);
        for (u, px) in row.chunks_exact_mut(c).enumerate() {
            bilinear::<C>(src, shape, rx + u as f64 * dxu, ry + u as f64 * dyu, px);
        }
    }
}

/// `C`: the channel count `c` as a constant (0: not known at compile time).
#[inline(always)]
fn bilinear<const C: usize>(src: &[u8], [h, w, c]: [usize; 3], x: f64, y: f64, out: &mut [f32]) {
    let c = if C == 0 { c } else { C };
    if x < -0.5 || y < -0.5 || x > w as f64 - 0.5 || y > h as f64 - 0.5 {
        out.fill(0.0);
        return;
    }
    let x = x.clamp(0.0, (w - 1) as f64);
    let y = y.clamp(0.0, (h - 1) as f64);
    // Non-negative after the clamp: truncation is the floor (no C library `floor` call); i32
    // converts to and from f64 in one instruction each (an image side is far below 2^31).
    let (xi, yi) = (x as i32, y as i32);
    let (fx, fy) = ((x - xi as f64) as f32, (y - yi as f64) as f32);
    let (x0, y0) = (xi as usize, yi as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let pixel = |xi: usize, yi: usize| &src[(yi * w + xi) * c..][..c];
    let (p00, p10, p01, p11) = (pixel(x0, y0), pixel(x1, y0), pixel(x0, y1), pixel(x1, y1));
    for (ch, o) in out[..c].iter_mut().enumerate() {
        let top = p00[ch] as f32 * (1.0 - fx) + p10[ch] as f32 * fx;
        let bottom = p01[ch] as f32 * (1.0 - fx) + p11[ch] as f32 * fx;
        *o = top * (1.0 - fy) + bottom * fy;
    }
}
