//! `plots/roc.png` and `plots/pr.png`: the test set's ROC and precision-recall curves, computed
//! by derma-eval from `predictions.csv`.
//!
//! - Binary runs: the positive class's curve, with the run's operating threshold marked and
//!   labelled (threshold, test sensitivity and specificity — or precision and recall on the
//!   PR plot), and the fixed 0.5 threshold for comparison.
//! - Multi-class runs: one one-vs-rest curve per class, its AUC (or AP) in the legend; a class
//!   without test samples has no curve and is reported in the notes.

use std::path::Path;

use derma_eval::{BinaryMetrics, PrCurve, RocCurve};
use plotters::prelude::*;
use plotters::coord::types::RangedCoordf64;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};
use crate::plot::{AXIS, Area, DrawResult, FONT, GREY, LABEL, TITLE, color, threshold_text, write_plot};
use crate::run::Run;

/// Size of `roc.png` and `pr.png`.
pub const SIZE: (u32, u32) = (900, 700);

/// One curve: one-vs-rest of one class (binary: the positive class).
pub struct ClassCurves {
    /// Class index.
    pub class: usize,
    /// Class name.
    pub name: String,
    /// ROC curve.
    pub roc: RocCurve,
    /// ROC AUC.
    pub auc: f64,
    /// Precision-recall curve.
    pub pr: PrCurve,
    /// Average precision.
    pub ap: f64,
    /// Fraction of test samples in the class (the PR curve of a random ranking).
    pub prevalence: f64,
}

/// A marked threshold on a binary plot: its name and the test metrics at it.
pub struct OperatingPoint {
    /// Legend text.
    pub label: String,
    /// Test metrics at the threshold.
    pub metrics: BinaryMetrics,
}

/// The test curves of a run.
pub struct Curves {
    /// One per class that has test samples and non-samples (binary: one, the positive class).
    pub classes: Vec<ClassCurves>,
    /// Binary: the operating threshold, then the fixed 0.5 threshold.
    pub points: Vec<OperatingPoint>,
    /// Classes left out, in words.
    pub notes: Vec<String>,
}

/// Computes the test ROC and PR curves of `run`.
pub fn compute(run: &Run) -> Result<Curves> {
    let test = &run.test;
    let eval = |what: String| move |source| Error::Eval { what, source };
    let one = |class: usize, name: &str, labels: &[bool], scores: &[f64]| -> Result<ClassCurves> {
        let what = |curve: &str| format!("test {curve} of class `{name}`");
        Ok(ClassCurves {
            class,
            name: name.to_string(),
            roc: derma_eval::roc_curve(labels, scores).map_err(eval(what("ROC curve")))?,
            auc: derma_eval::roc_auc(labels, scores).map_err(eval(what("ROC AUC")))?,
            pr: derma_eval::precision_recall_curve(labels, scores).map_err(eval(what("precision-recall curve")))?,
            ap: derma_eval::average_precision(labels, scores).map_err(eval(what("average precision")))?,
            prevalence: labels.iter().filter(|&&l| l).count() as f64 / labels.len() as f64,
        })
    };
    let mut curves = Curves { classes: Vec::new(), points: Vec::new(), notes: Vec::new() };
    if run.is_binary() {
        let (labels, scores) = (test.positives(), test.scores());
        let name = run.classes()[1].as_str();
        let n = labels.iter().filter(|&&l| l).count();
        if n == 0 || n == labels.len() {
            // No curve to draw; the counts at the threshold are still in the report.
            curves.notes.push(format!(
                "the test set has {} `{name}` images: no ROC/PR curve",
                if n == 0 { "no" } else { "only" }
            ));
            return Ok(curves);
        }
        curves.classes.push(one(1, name, &labels, &scores)?);
        if let Some(t) = &run.report.threshold {
            let at = |threshold: f64| {
                derma_eval::apply(threshold, &labels, &scores).map_err(eval(format!("test metrics at threshold {threshold}")))
            };
            curves.points.push(OperatingPoint {
                label: format!("operating threshold {} ({})", threshold_text(t.threshold()), t.rule),
                metrics: at(t.threshold())?,
            });
            curves.points.push(OperatingPoint { label: "fixed threshold 0.5".into(), metrics: at(0.5)? });
        }
    } else {
        for (c, name) in run.classes().iter().enumerate() {
            let labels: Vec<bool> = test.labels.iter().map(|&l| l == c).collect();
            let n = labels.iter().filter(|&&l| l).count();
            if n == 0 || n == labels.len() {
                curves.notes.push(format!(
                    "class `{name}` has {} test samples: no one-vs-rest ROC/PR curve",
                    if n == 0 { "no" } else { "only" }
                ));
                continue;
            }
            let scores: Vec<f64> = test.probs.iter().map(|p| p[c]).collect();
            curves.classes.push(one(c, name, &labels, &scores)?);
        }
    }
    Ok(curves)
}

/// Draws `roc.png` and `pr.png` of `curves` (computed by [`compute`]).
pub(crate) fn write(run: &Run, curves: &Curves, roc_path: &Path, pr_path: &Path) -> Result<()> {
    let n = run.test.len();
    let binary = run.is_binary();
    let roc_title = if binary {
        format!("ROC curve, test set ({n} images)")
    } else {
        format!("One-vs-rest ROC curves, test set ({n} images; macro AUC {:.3})", run.report.test.auc_macro)
    };
    write_plot(roc_path, SIZE, |root| draw_roc(root, &roc_title, curves))?;
    let pr_title = format!("Precision-recall curve{}, test set ({n} images)", if binary { "" } else { "s (one-vs-rest)" });
    write_plot(pr_path, SIZE, |root| draw_pr(root, &pr_title, curves, binary))

}

/// Markers of the operating points: the chosen threshold, then 0.5.
const POINT_COLORS: [RGBColor; 2] = [RGBColor(214, 39, 40), RGBColor(44, 160, 44)];

pub(crate) fn unit_chart<'a, 'b>(
    root: &'a Area<'b>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
) -> std::result::Result<UnitChart<'a, 'b>, Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, TITLE))
        .margin(16)
        .margin_right(30)
        .x_label_area_size(55)
        .y_label_area_size(75)
        .build_cartesian_2d(-0.01f64..1.01f64, -0.01f64..1.02f64)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(11)
        .y_labels(11)
        .x_label_formatter(&|x| format!("{x:.1}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .label_style((FONT, LABEL))
        .axis_desc_style((FONT, AXIS))
        .max_light_lines(1)
        .light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    Ok(chart)
}

fn draw_roc(root: &Area, title: &str, curves: &Curves) -> DrawResult {
    let mut chart = unit_chart(root, title, "false positive rate (1 − specificity)", "true positive rate (sensitivity)")?;
    let grey = ShapeStyle::from(GREY).stroke_width(1);
    chart
        .draw_series(DashedLineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], 6, 5, grey))?
        .label("chance")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], grey));
    for (i, c) in curves.classes.iter().enumerate() {
        let style = ShapeStyle::from(color(i)).stroke_width(2);
        let label = format!("{} (AUC {:.3})", c.name, c.auc);
        chart
            .draw_series(LineSeries::new(c.roc.fpr.iter().copied().zip(c.roc.tpr.iter().copied()), style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    }
    for (p, col) in curves.points.iter().zip(POINT_COLORS) {
        let m = &p.metrics;
        let xy = (1.0 - m.specificity, m.sensitivity);
        let text = format!("{}: sens {:.3}, spec {:.3}", p.label, m.sensitivity, m.specificity);
        mark_point(&mut chart, xy, col, text, &short_label(m.threshold))?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn draw_pr(root: &Area, title: &str, curves: &Curves, binary: bool) -> DrawResult {
    let mut chart = unit_chart(root, title, "recall (sensitivity)", "precision")?;
    for (i, c) in curves.classes.iter().enumerate() {
        let style = ShapeStyle::from(color(i)).stroke_width(2);
        // Step-wise, as the average precision sums it (sklearn's PrecisionRecallDisplay).
        let pts: Vec<(f64, f64)> = c.pr.recall.iter().copied().zip(c.pr.precision.iter().copied()).collect();
        let mut steps = Vec::with_capacity(2 * pts.len());
        for w in pts.windows(2) {
            steps.push(w[0]);
            steps.push((w[1].0, w[0].1));
        }
        steps.extend(pts.last());
        steps.dedup();
        // Piece by piece: where the curve goes down and back up at one recall (thresholds of
        // equal recall), plotters' joined wide lines break up.
        chart
            .draw_series(steps.windows(2).map(|w| PathElement::new(vec![w[0], w[1]], style)))?
            .label(format!("{} (AP {:.3})", c.name, c.ap))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
        if binary {
            let grey = ShapeStyle::from(GREY).stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(vec![(0.0, c.prevalence), (1.0, c.prevalence)], 6, 5, grey))?
                .label(format!("prevalence {:.3} (random ranking)", c.prevalence))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], grey));
        }
    }
    for (p, col) in curves.points.iter().zip(POINT_COLORS) {
        let m = &p.metrics;
        let xy = (m.sensitivity, m.precision);
        let text = format!("{}: recall {:.3}, precision {:.3}", p.label, m.sensitivity, m.precision);
        mark_point(&mut chart, xy, col, text, &short_label(m.threshold))?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerLeft)
}

fn short_label(threshold: f64) -> String {
    format!("t = {}", threshold_text(threshold))
}

pub(crate) type UnitChart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A filled circle at `xy` with a legend entry and a short label beside it.
fn mark_point<'a, 'b: 'a>(chart: &mut UnitChart<'a, 'b>, xy: (f64, f64), col: RGBColor, legend_text: String, tag: &str) -> DrawResult {
    chart
        .draw_series(std::iter::once(Circle::new(xy, 7, col.filled())))?
        .label(legend_text)
        .legend(move |(x, y)| Circle::new((x + 11, y), 6, col.filled()));
    chart.draw_series(std::iter::once(Circle::new(xy, 7, BLACK.stroke_width(1))))?;
    // Beside the point, on the side with room.
    let (dx, anchor) = if xy.0 > 0.7 { (-0.02, HPos::Right) } else { (0.02, HPos::Left) };
    let dy = if xy.1 > 0.9 { -0.04 } else { 0.03 };
    let style = TextStyle::from((FONT, LABEL).into_font()).color(&col).pos(Pos::new(anchor, VPos::Center));
    chart.draw_series(std::iter::once(Text::new(tag.to_string(), (xy.0 + dx, xy.1 + dy), style)))?;
    Ok(())
}

pub(crate) fn legend<'a, 'b: 'a>(chart: &mut UnitChart<'a, 'b>, position: SeriesLabelPosition) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .margin(12)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .label_font((FONT, LABEL))
        .draw()?;
    Ok(())
}
