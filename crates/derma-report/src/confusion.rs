//! The test confusion matrix under the run's prediction rule ([`Rule`]), and
//! `plots/confusion.png`: counts and row-normalised fractions side by side, true classes in
//! rows, predicted classes in columns, numbers in the cells. Both panels are shaded by the
//! row fraction (the recall of the diagonal), so a large class does not wash out the others.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use crate::error::{Error, Result};
use crate::plot::{AXIS, Area, DrawResult, FONT, LABEL, TITLE, write_plot};
use crate::rule::Rule;
use crate::run::Run;

/// Size of `confusion.png` (two panels).
pub const SIZE: (u32, u32) = (1400, 680);

/// A confusion matrix with its class names.
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    /// Class names.
    pub classes: Vec<String>,
    /// `counts[true][predicted]`.
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// Each row divided by its sum; `None` for a class without samples.
    pub fn row_normalised(&self) -> Vec<Vec<Option<f64>>> {
        self.counts
            .iter()
            .map(|row| {
                let n: u64 = row.iter().sum();
                row.iter().map(|&v| (n > 0).then(|| v as f64 / n as f64)).collect()
            })
            .collect()
    }
}

/// The test confusion matrix of `run`, predictions made by [`Run::rule`].
pub fn compute(run: &Run) -> Result<Confusion> {
    let rule = run.rule();
    let predicted = rule.predict_split(&run.test);
    let k = run.classes().len();
    let counts = derma_eval::confusion_matrix(&run.test.labels, &predicted, k)
        .map_err(|source| Error::Eval { what: "test confusion matrix".into(), source })?;
    Ok(Confusion { classes: run.classes().to_vec(), counts })
}

/// The rule in words, for titles.
pub(crate) fn rule_text(rule: &Rule) -> String {
    match *rule {
        Rule::Argmax => "predicted class = arg-max probability".into(),
        Rule::Balanced(_) => "predicted class = arg-max of probability / training class frequency".into(),
        Rule::Threshold(t) if t.is_infinite() => "threshold +inf: nothing predicted positive".into(),
        Rule::Threshold(t) => format!("positive when p ≥ {}", crate::plot::threshold_text(t)),
    }
}

/// Draws `confusion.png`.
pub(crate) fn write(confusion: &Confusion, rule: &Rule, path: &Path) -> Result<()> {
    write_plot(path, SIZE, |root| {
        let root = root.margin(8, 0, 0, 0).titled(&format!("Test confusion matrix ({})", rule_text(rule)), (FONT, TITLE))?;
        let halves = root.split_evenly((1, 2));
        let fractions = confusion.row_normalised();
        let counts: Vec<Vec<String>> =
            confusion.counts.iter().map(|r| r.iter().map(|v| v.to_string()).collect()).collect();
        let shares: Vec<Vec<String>> = fractions
            .iter()
            .map(|r| r.iter().map(|v| v.map_or("–".to_string(), |f| format!("{f:.2}"))).collect())
            .collect();
        heatmap(&halves[0], "counts", &confusion.classes, &counts, &fractions)?;
        heatmap(&halves[1], "fraction of each true class (row-normalised)", &confusion.classes, &shares, &fractions)?;
        Ok(())
    })
}

/// Sequential blue colour map (matplotlib's `Blues` end points and middle) at `f` in [0, 1].
fn blues(f: f64) -> RGBColor {
    const STOPS: [(f64, [f64; 3]); 3] = [(0.0, [247.0, 251.0, 255.0]), (0.5, [107.0, 174.0, 214.0]), (1.0, [8.0, 48.0, 107.0])];
    let f = f.clamp(0.0, 1.0);
    let (a, b) = if f <= 0.5 { (STOPS[0], STOPS[1]) } else { (STOPS[1], STOPS[2]) };
    let t = (f - a.0) / (b.0 - a.0);
    let c = |i: usize| (a.1[i] + t * (b.1[i] - a.1[i])).round() as u8;
    RGBColor(c(0), c(1), c(2))
}

/// `text`, shortened with `…` until it is at most `max_width` pixels wide in `font`.
fn fit(area: &Area, text: &str, font: &TextStyle, max_width: u32) -> std::result::Result<String, Box<dyn std::error::Error>> {
    if area.estimate_text_size(text, font)?.0 <= max_width {
        return Ok(text.to_string());
    }
    let chars: Vec<char> = text.chars().collect();
    for keep in (1..chars.len()).rev() {
        let short: String = chars[..keep].iter().collect::<String>() + "…";
        if area.estimate_text_size(&short, font)?.0 <= max_width {
            return Ok(short);
        }
    }
    Ok("…".into())
}

fn heatmap(area: &Area, subtitle: &str, classes: &[String], cells: &[Vec<String>], shade: &[Vec<Option<f64>>]) -> DrawResult {
    let area = area.titled(subtitle, (FONT, AXIS + 2))?;
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let k = classes.len().max(1) as i32;
    let label_font = TextStyle::from((FONT, LABEL + 1).into_font());
    let axis_font = TextStyle::from((FONT, AXIS).into_font());
    let widest = classes.iter().map(|c| area.estimate_text_size(c, &label_font).map(|s| s.0 as i32)).try_fold(0, |m, w| w.map(|w| m.max(w)))?;
    let left = 36 + widest.min(w / 3) + 10;
    let (top, bottom, right) = (8, 70, 16);
    let cell = ((w - left - right) / k).min((h - top - bottom) / k).max(4);
    let x0 = left + ((w - left - right) - cell * k) / 2;
    let y0 = top;
    let value_size = (f64::from(cell) / 3.2).clamp(10.0, 26.0);
    for (i, row) in cells.iter().enumerate() {
        for (j, text) in row.iter().enumerate() {
            let (x, y) = (x0 + j as i32 * cell, y0 + i as i32 * cell);
            let f = shade[i][j];
            let fill = f.map_or(RGBColor(225, 225, 225), blues);
            area.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], fill.filled()))?;
            area.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], WHITE.stroke_width(1)))?;
            let ink = if f.is_some_and(|f| f > 0.55) { WHITE } else { BLACK };
            let style = TextStyle::from((FONT, value_size).into_font()).color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
            area.draw_text(text, &style, (x + cell / 2, y + cell / 2))?;
        }
    }
    let grid_bottom = y0 + k * cell;
    for (i, name) in classes.iter().enumerate() {
        let i = i as i32;
        let row_label = fit(&area, name, &label_font, (left - 46).max(10) as u32)?;
        let style = label_font.pos(Pos::new(HPos::Right, VPos::Center));
        area.draw_text(&row_label, &style, (x0 - 8, y0 + i * cell + cell / 2))?;
        let col_label = fit(&area, name, &label_font, (cell - 4).max(10) as u32)?;
        let style = label_font.pos(Pos::new(HPos::Center, VPos::Top));
        area.draw_text(&col_label, &style, (x0 + i * cell + cell / 2, grid_bottom + 8))?;
    }
    let style = axis_font.pos(Pos::new(HPos::Center, VPos::Top));
    area.draw_text("predicted class", &style, (x0 + k * cell / 2, grid_bottom + 36))?;
    let style = axis_font.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Top));
    area.draw_text("true class", &style, (6, y0 + k * cell / 2))?;
    Ok(())
}
