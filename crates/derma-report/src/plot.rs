//! What every plot shares: the bundled font, rendering into an RGB buffer
//! (`BitMapBackend::with_buffer`), PNG encoding with the `image` crate, the colours and the
//! text sizes.
//!
//! Plotters' `ab_glyph` text needs its fonts registered at run time; DejaVu Sans (bundled
//! in `assets/fonts`, with its licence) is registered once under the names plotters asks for,
//! so the plots need no system font.

use std::path::Path;
use std::sync::OnceLock;

use image::ImageEncoder as _;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Error, Result};
use crate::output::write_atomic;

/// The font family every text uses.
pub(crate) const FONT: &str = "sans-serif";

/// DejaVu Sans, `assets/fonts/DejaVuSans.ttf` (licence in `assets/fonts/LICENSE-DejaVu.txt`).
static DEJAVU_SANS: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// A drawing area of the in-memory bitmap.
pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// What a drawing function returns: plotters' errors, boxed.
pub(crate) type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Title text size.
pub(crate) const TITLE: u32 = 24;
/// Axis description text size.
pub(crate) const AXIS: u32 = 17;
/// Tick label and legend text size.
pub(crate) const LABEL: u32 = 15;

/// The tab10 palette (matplotlib's default colours).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Colour number `i` of the palette (cycling).
pub(crate) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Mid grey for reference lines.
pub(crate) const GREY: RGBColor = RGBColor(150, 150, 150);

/// Registers the bundled font under the family names plotters uses, once per process.
fn register_fonts() -> std::result::Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        ["sans-serif", "serif", "monospace"]
            .iter()
            .all(|family| plotters::style::register_font(family, FontStyle::Normal, DEJAVU_SANS).is_ok())
    });
    if ok { Ok(()) } else { Err("the bundled DejaVu Sans font could not be loaded".into()) }
}

/// Draws a `size` (width, height) white image with `draw` and returns it as PNG bytes;
/// `path` names the plot in errors.
pub(crate) fn render_png(path: &Path, size: (u32, u32), draw: impl FnOnce(&Area) -> DrawResult) -> Result<Vec<u8>> {
    let plot_error = |reason: String| Error::Plot { path: path.into(), reason };
    register_fonts().map_err(plot_error)?;
    let (w, h) = size;
    let mut pixels = vec![255u8; w as usize * h as usize * 3];
    {
        let area = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        area.fill(&WHITE).map_err(|e| plot_error(e.to_string()))?;
        draw(&area).map_err(|e| plot_error(e.to_string()))?;
        area.present().map_err(|e| plot_error(e.to_string()))?;
    }
    encode_png(&pixels, w, h, image::ExtendedColorType::Rgb8).map_err(plot_error)
}

/// Draws a plot (see [`render_png`]) and writes it to `path` atomically.
pub(crate) fn write_plot(path: &Path, size: (u32, u32), draw: impl FnOnce(&Area) -> DrawResult) -> Result<()> {
    let png = render_png(path, size, draw)?;
    write_atomic(path, &png)
}

/// PNG bytes of 8-bit `pixels` (rows top to bottom, channels interleaved).
pub(crate) fn encode_png(pixels: &[u8], width: u32, height: u32, color: image::ExtendedColorType) -> std::result::Result<Vec<u8>, String> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(pixels, width, height, color)
        .map_err(|e| format!("PNG encoding failed: {e}"))?;
    Ok(png)
}

/// The range `[lo, hi]` of the finite values, widened by `pad` of its span (or by 0.5 when
/// all values are equal); `(0, 1)` when there is no finite value.
pub(crate) fn padded_range(values: impl IntoIterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= 0.0 { (lo - 0.5, hi + 0.5) } else { (lo - pad * span, hi + pad * span) }
}

/// Splits a polyline at its non-finite values, so that a gap is drawn as a gap.
pub(crate) fn finite_segments<X: Copy>(points: impl IntoIterator<Item = (X, f64)>) -> Vec<Vec<(X, f64)>> {
    let mut segments = vec![Vec::new()];
    for (x, y) in points {
        if y.is_finite() {
            segments.last_mut().expect("never empty").push((x, y));
        } else if !segments.last().expect("never empty").is_empty() {
            segments.push(Vec::new());
        }
    }
    segments.retain(|s| !s.is_empty());
    segments
}

/// [`threshold_text`] of each value, with more digits where two different values would read
/// alike (validation thresholds can differ in the 7th decimal, or sit at 0.99984 and 0.99987).
pub fn threshold_texts(values: &[f64]) -> Vec<String> {
    let clash = |texts: &[String]| {
        (0..values.len()).any(|i| (0..i).any(|j| texts[i] == texts[j] && values[i] != values[j]))
    };
    let mut texts: Vec<String> = values.iter().map(|&t| threshold_text(t)).collect();
    for digits in 5..=17 {
        if !clash(&texts) {
            break;
        }
        texts = values
            .iter()
            .map(|&t| match t {
                t if t.is_infinite() => "+inf".into(),
                t if t != 0.0 && t.abs() < 1e-3 => format!("{t:.*e}", digits - 1),
                t => decimals(t, digits),
            })
            .collect();
    }
    texts
}

/// A threshold for a label: 4 decimals; below 0.001 four significant digits (screening
/// thresholds of heavily imbalanced data are often that small: `0.0000` would hide them);
/// `+inf`. A threshold below 1 never reads `1.0000` (`p ≥ 1.0000` would state another rule):
/// it gets the decimals that show it is below 1.
pub fn threshold_text(t: f64) -> String {
    if t.is_infinite() {
        "+inf".into()
    } else if t != 0.0 && t.abs() < 1e-3 {
        format!("{t:.3e}")
    } else {
        decimals(t, 4)
    }
}

/// `t` with `digits` decimals, or more where `t < 1` would round to a text that reads 1.
fn decimals(t: f64, digits: usize) -> String {
    let mut d = digits;
    loop {
        let text = format!("{t:.d$}");
        if t >= 1.0 || d >= 17 || text.parse::<f64>().is_ok_and(|v| v < 1.0) {
            return text;
        }
        d += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::threshold_texts;

    #[test]
    fn thresholds_that_differ_read_differently() {
        // Four decimals would show 0.2856 and 0.2857 twice each (validation scores 4e-8 apart).
        assert_eq!(
            threshold_texts(&[0.28564993, 0.28564997, 0.28565003, 0.28565007, 0.5, 0.5]),
            ["0.28564993", "0.28564997", "0.28565003", "0.28565007", "0.50000000", "0.50000000"]
        );
        assert_eq!(threshold_texts(&[0.99981, 0.99984, f64::INFINITY]), ["0.99981", "0.99984", "+inf"]);
        assert_eq!(threshold_texts(&[1.23441e-4, 1.23449e-4]), ["1.2344e-4", "1.2345e-4"]);
        // Nothing to tell apart: the usual 4 decimals.
        assert_eq!(threshold_texts(&[0.25, 0.3150, 2e-4]), ["0.2500", "0.3150", "2.000e-4"]);
    }

    #[test]
    fn a_threshold_below_one_does_not_read_as_one() {
        // `{:.4}` rounds 0.99997 to 1.0000: "p ≥ 1.0000" would be another rule.
        assert_eq!(threshold_texts(&[0.99997, 0.5, 1.0]), ["0.99997", "0.5000", "1.0000"]);
        assert_eq!(threshold_texts(&[0.9999996]), ["0.9999996"]);
        // More digits for a clash elsewhere still keep a value below 1 below 1.
        // (7 decimals tell the first two apart; the third would read 1.0000000.)
        assert_eq!(threshold_texts(&[0.28564993, 0.28564997, 0.9999999996]), ["0.2856499", "0.2856500", "0.9999999996"]);
    }
}
