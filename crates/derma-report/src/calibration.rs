//! `plots/calibration.png`: the test reliability diagram — each non-empty bin's observed
//! fraction against its mean predicted probability, beside the diagonal of perfect calibration,
//! with the share of test images in each bin — and the numbers behind it: the Brier score and
//! the expected calibration error ([`derma_eval::calibration`], 10 equal-width bins; binary
//! runs on the positive-class probability, multi-class runs on the top label).
//!
//! A run with `--calibrate` shows the model's own curve (report.json's
//! `recalibration.test_before`) beside the recalibrated one.
//!
//! Class weights, undersampling and focal loss move the scores of a rare class without
//! changing their order: the AUC and a threshold chosen on validation do not show it, this
//! plot does.

use std::path::Path;

use derma_eval::Calibration;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::plot::{Area, DrawResult, GREY, color, write_plot};
use crate::roc::{legend, unit_chart};
use crate::run::{CalibrationJson, Run};

/// Size of `calibration.png`.
pub const SIZE: (u32, u32) = (900, 700);

/// The test split's calibration, from `predictions.csv`.
pub fn compute(run: &Run) -> Result<Calibration> {
    derma_eval::calibration(&run.test.labels, &run.test.probs, derma_eval::calibration::BINS)
        .map_err(|source| Error::Eval { what: "test calibration".into(), source })
}

/// What the calibration is of, in words: `P(mel/bcc/akiec)` or `the top label's probability`.
pub fn subject(run: &Run, c: &Calibration) -> String {
    match (c.top_label, run.classes().get(1)) {
        (false, Some(positive)) => format!("P({positive})"),
        _ => "the top label's probability".to_string(),
    }
}

/// Draws `calibration.png`.
pub(crate) fn write(run: &Run, c: &Calibration, path: &Path) -> Result<()> {
    let title = format!("Calibration, test set ({} images)", run.test.len());
    let what = subject(run, c);
    // With --calibrate: the model's own reliability curve beside the mapped one.
    let before = run.report.recalibration.as_ref().filter(|r| r.applied).and_then(|r| r.test_before.as_ref()).filter(|b| !b.bins.is_empty());
    write_plot(path, SIZE, |root| draw(root, &title, &what, c, before, run.test.len()))
}

fn draw(root: &Area, title: &str, what: &str, c: &Calibration, before: Option<&CalibrationJson>, n: usize) -> DrawResult {
    let x_desc = format!("mean predicted probability in the bin ({what})");
    let y_desc = if c.top_label { "fraction right (arg-max = true class)" } else { "fraction positive" };
    let mut chart = unit_chart(root, title, &x_desc, y_desc)?;
    // The share of the test images in each bin, as light bars from 0.
    let share = RGBColor(200, 200, 200).mix(0.6).filled();
    chart
        .draw_series(c.bins.iter().filter(|b| b.count > 0).map(|b| {
            Rectangle::new([(b.lower + 0.005, 0.0), (b.upper - 0.005, b.count as f64 / n as f64)], share)
        }))?
        .label(if before.is_some() { "share of test images per bin (recalibrated)" } else { "share of test images per bin" })
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 22, y + 5)], share));
    let grey = ShapeStyle::from(GREY).stroke_width(1);
    chart
        .draw_series(DashedLineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], 6, 5, grey))?
        .label("perfectly calibrated")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], grey));
    if let Some(b) = before {
        let own = ShapeStyle::from(color(1)).stroke_width(2);
        let points: Vec<(f64, f64)> = b.bins.iter().filter(|b| b.count > 0).map(|b| (b.mean_score, b.observed)).collect();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), own))?
            .label(format!("model's own, before --calibrate (ECE {:.3}, Brier {:.3})", b.ece, b.brier))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], own));
        chart.draw_series(points.iter().map(|&xy| TriangleMarker::new(xy, 5, color(1).filled())))?;
    }
    let style = ShapeStyle::from(color(0)).stroke_width(2);
    let points: Vec<(f64, f64)> = c.bins.iter().filter(|b| b.count > 0).map(|b| (b.mean_score, b.observed)).collect();
    let label = if before.is_some() { "test, recalibrated" } else { "test" };
    chart
        .draw_series(LineSeries::new(points.iter().copied(), style))?
        .label(format!("{label} (ECE {:.3}, Brier {:.3})", c.ece, c.brier))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    chart.draw_series(points.iter().map(|&xy| Circle::new(xy, 5, color(0).filled())))?;
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}
