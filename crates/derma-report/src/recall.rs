//! `plots/recall.png`: test recall of every class as bars (value and support above each bar),
//! with the balanced accuracy — their mean — as a dashed line.

use std::path::Path;

use derma_eval::ClassReport;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};
use crate::plot::{AXIS, DrawResult, FONT, LABEL, TITLE, color, write_plot};
use crate::run::Run;

/// Size of `recall.png`.
pub const SIZE: (u32, u32) = (900, 600);

/// Test precision, recall, F1 and support of every class of `run` under its prediction rule.
pub fn per_class(run: &Run) -> Result<Vec<ClassReport>> {
    let predicted = run.rule().predict_split(&run.test);
    derma_eval::per_class_report(&run.test.labels, &predicted, run.classes().len())
        .map_err(|source| Error::Eval { what: "test per-class report".into(), source })
}

/// Draws `recall.png`.
pub(crate) fn write(run: &Run, reports: &[ClassReport], path: &Path) -> Result<()> {
    write_plot(path, SIZE, |root| draw(root, run, reports))
}

fn draw(root: &crate::plot::Area, run: &Run, reports: &[ClassReport]) -> DrawResult {
    let classes = run.classes();
    let k = classes.len() as i32;
    let title = format!("Per-class recall, test set ({} images)", run.test.len());
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, TITLE))
        .margin(16)
        .margin_right(24)
        .x_label_area_size(60)
        .y_label_area_size(70)
        // `into_segmented` makes one segment per value of the inclusive range.
        .build_cartesian_2d((0..k - 1).into_segmented(), 0f64..1.3f64)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("true class")
        .y_desc("recall (sensitivity of the class)")
        .x_labels(classes.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => classes.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_labels(7)
        .y_label_formatter(&|y| if *y <= 1.0 { format!("{y:.1}") } else { String::new() })
        .label_style((FONT, LABEL))
        .axis_desc_style((FONT, AXIS))
        .max_light_lines(1)
        .light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    let pad = if k > 12 { 2 } else { 12 };
    chart.draw_series(reports.iter().enumerate().map(|(i, r)| {
        let i = i as i32;
        let mut bar = Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), r.recall)], color(i as usize).filled());
        bar.set_margin(0, 0, pad, pad);
        bar
    }))?;
    // Above each bar: its recall, and above that (up to 10 classes) its support.
    let text = TextStyle::from((FONT, LABEL).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    let grey = RGBColor(90, 90, 90);
    let small = TextStyle::from((FONT, LABEL - 2).into_font()).color(&grey).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(reports.iter().enumerate().map(|(i, r)| {
        let label = if k <= 10 { format!("{:.3}", r.recall) } else { format!("{:.2}", r.recall) };
        Text::new(label, (SegmentValue::CenterOf(i as i32), r.recall + 0.015), text.clone())
    }))?;
    if k <= 10 {
        chart.draw_series(reports.iter().enumerate().map(|(i, r)| {
            Text::new(format!("n={}", r.support), (SegmentValue::CenterOf(i as i32), r.recall + 0.065), small.clone())
        }))?;
    }
    // Balanced accuracy: the mean recall over the classes with test samples.
    let present: Vec<f64> = reports.iter().filter(|r| r.support > 0).map(|r| r.recall).collect();
    let mean = present.iter().sum::<f64>() / present.len().max(1) as f64;
    let style = ShapeStyle::from(BLACK).stroke_width(1);
    chart
        .draw_series(DashedLineSeries::new(
            vec![(SegmentValue::Exact(0), mean), (SegmentValue::Exact(k), mean)],
            6,
            5,
            style,
        ))?
        .label(format!("balanced accuracy {mean:.3}"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .label_font((FONT, LABEL))
        .draw()?;
    Ok(())
}
