//! `plots/curves.png`: the training curves of `metrics.csv`, one panel per question, epochs
//! on a shared x axis, the best epoch marked by a dashed vertical line in every panel:
//!
//! 1. train and validation loss;
//! 2. validation AUC and balanced accuracy (binary: and average precision);
//! 3. binary only: validation sensitivity and specificity at each epoch's operating
//!    threshold, and that threshold.

use std::path::Path;

use plotters::prelude::*;

use crate::error::Result;
use crate::plot::{AXIS, Area, DrawResult, FONT, GREY, LABEL, TITLE, color, finite_segments, padded_range, write_plot};
use crate::run::{Epoch, Run};

/// Width of `curves.png`.
pub const WIDTH: u32 = 900;
/// Height of one panel of `curves.png` (2 panels, binary runs 3).
pub const PANEL_HEIGHT: u32 = 340;

/// The size of `curves.png` for a binary or multi-class run.
pub fn size(binary: bool) -> (u32, u32) {
    (WIDTH, PANEL_HEIGHT * if binary { 3 } else { 2 })
}

/// One line of a panel.
struct Line {
    label: &'static str,
    color: RGBColor,
    dashed: bool,
    value: fn(&Epoch) -> f64,
}

/// One panel: its title, y axis, y range rule and lines.
struct Panel {
    title: &'static str,
    y_desc: &'static str,
    /// `None`: fitted to the data; `Some((lo, hi))`: fixed.
    y_range: Option<(f64, f64)>,
    legend: SeriesLabelPosition,
    lines: Vec<Line>,
}

fn panels(binary: bool) -> Vec<Panel> {
    let mut out = vec![
        Panel {
            title: "Loss",
            y_desc: "loss",
            y_range: None,
            legend: SeriesLabelPosition::UpperRight,
            lines: vec![
                Line { label: "train loss", color: color(0), dashed: false, value: |e| e.train_loss },
                Line { label: "val loss", color: color(1), dashed: false, value: |e| e.val_loss },
            ],
        },
        Panel {
            title: "Validation ranking and balanced accuracy",
            y_desc: "score",
            y_range: None,
            legend: SeriesLabelPosition::LowerRight,
            lines: vec![
                Line { label: "val AUC", color: color(0), dashed: false, value: |e| e.val_auc },
                Line { label: "val balanced accuracy", color: color(2), dashed: false, value: |e| e.val_bal_acc },
            ],
        },
    ];
    if binary {
        out[1].lines.push(Line {
            label: "val average precision",
            color: color(4),
            dashed: false,
            value: |e| e.binary.as_ref().map_or(f64::NAN, |b| b.ap),
        });
        out.push(Panel {
            title: "Validation screening at each epoch's operating threshold",
            y_desc: "rate",
            y_range: Some((0.0, 1.02)),
            legend: SeriesLabelPosition::LowerRight,
            lines: vec![
                Line {
                    label: "sensitivity",
                    color: color(3),
                    dashed: false,
                    value: |e| e.binary.as_ref().map_or(f64::NAN, |b| b.at_threshold.sensitivity),
                },
                Line {
                    label: "specificity",
                    color: color(0),
                    dashed: false,
                    value: |e| e.binary.as_ref().map_or(f64::NAN, |b| b.at_threshold.specificity),
                },
                Line {
                    label: "threshold",
                    color: GREY,
                    dashed: true,
                    value: |e| e.binary.as_ref().map_or(f64::NAN, |b| b.at_threshold.threshold),
                },
            ],
        });
    }
    out
}

/// Draws `plots/curves.png` of `run` into `path`.
pub(crate) fn write(run: &Run, path: &Path) -> Result<()> {
    let binary = run.is_binary();
    write_plot(path, size(binary), |root| {
        let panels = panels(binary);
        let areas = root.split_evenly((panels.len(), 1));
        for (panel, area) in panels.iter().zip(&areas) {
            draw_panel(area, panel, &run.epochs, run.report.best_epoch)?;
        }
        Ok(())
    })
}

fn draw_panel(area: &Area, panel: &Panel, epochs: &[Epoch], best_epoch: usize) -> DrawResult {
    let first = epochs.iter().map(|e| e.epoch).min().unwrap_or(1) as i32;
    let last = epochs.iter().map(|e| e.epoch).max().unwrap_or(1) as i32;
    // A single epoch still gets a visible x range.
    let (x0, x1) = if first == last { (first - 1, last + 1) } else { (first, last) };
    let (y0, y1) = panel.y_range.unwrap_or_else(|| {
        let (lo, hi) = padded_range(panel.lines.iter().flat_map(|l| epochs.iter().map(l.value)), 0.08);
        (lo, hi)
    });
    // Enough decimals to tell the tick labels apart.
    let decimals = (-((y1 - y0) / 5.0).log10()).ceil().clamp(1.0, 6.0) as usize;
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, (FONT, TITLE))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(panel.y_desc)
        .x_labels(((x1 - x0 + 1) as usize).min(12))
        .y_labels(6)
        .y_label_formatter(&|y| format!("{y:.decimals$}"))
        .label_style((FONT, LABEL))
        .axis_desc_style((FONT, AXIS))
        .max_light_lines(1)
        .light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;

    for line in &panel.lines {
        let style = ShapeStyle::from(line.color).stroke_width(2);
        let points = epochs.iter().map(|e| (e.epoch as i32, (line.value)(e)));
        let mut labelled = false;
        for segment in finite_segments(points) {
            let clipped: Vec<(i32, f64)> = segment.into_iter().map(|(x, y)| (x, y.clamp(y0, y1))).collect();
            let series = if line.dashed {
                chart.draw_series(DashedLineSeries::new(clipped.clone(), 6, 4, style))?
            } else {
                chart.draw_series(LineSeries::new(clipped.clone(), style))?
            };
            if !labelled {
                series.label(line.label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
                labelled = true;
            }
            if epochs.len() <= 40 && !line.dashed {
                chart.draw_series(clipped.iter().map(|&p| Circle::new(p, 3, line.color.filled())))?;
            }
        }
    }

    let best = best_epoch as i32;
    let best_style = ShapeStyle::from(BLACK).stroke_width(1);
    chart
        .draw_series(DashedLineSeries::new(vec![(best, y0), (best, y1)], 5, 5, best_style))?
        .label(format!("best epoch {best_epoch}"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], best_style));
    chart
        .configure_series_labels()
        .position(panel.legend.clone())
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font((FONT, LABEL))
        .draw()?;
    Ok(())
}
