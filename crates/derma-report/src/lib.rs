//! # derma-report
//!
//! Reports of finished training runs that people would rather look at than CSV files. The
//! library reads a run folder written by derma-train — nothing else, so it works for any
//! finished run and can regenerate a report later — and writes into it:
//!
//! | file | content |
//! |---|---|
//! | `plots/curves.png` | training curves per epoch, best epoch marked |
//! | `plots/roc.png`, `plots/pr.png` | test ROC and precision-recall curves |
//! | `plots/confusion.png` | test confusion matrix, counts and row-normalised |
//! | `plots/recall.png` | test recall per class |
//! | `plots/calibration.png` | test reliability diagram, Brier score and calibration error |
//! | `gallery/*.png` | the most confident test errors (when an [`ImageSource`] is given) |
//! | `report.md` | everything above with configuration, class counts and metric tables |
//! | `report.html` | the same, self-contained (images inlined) |
//!
//! Every file is written atomically (temporary file in the same folder, then rename). No
//! framework: metrics and curves come from `derma-eval`, plots from `plotters` with a bundled
//! font, PNGs from `image`.
//!
//! The modules, in the order of the data flow:
//!
//! - [`run`]: reading and cross-checking the run folder's files.
//! - [`rule`]: the run's prediction rule (arg-max, or `prob >= threshold` for binary tasks).
//! - `check`: `report.json`'s numbers recomputed from `predictions.csv` (disagreements become notes).
//! - [`curves`], [`roc`], [`confusion`], [`recall`], [`calibration`]: one plot each (and the
//!   numbers behind it).
//! - [`gallery`]: choosing the most confident errors and writing their thumbnails.
//! - [`compare`]: two runs on the same test images, compared paired (`derma-report --compare A B`).
//! - `document`, `markdown`, `html`: the report's content, once, rendered twice.
//! - `plot`, `output`, `csv`: shared plotting/PNG helpers, atomic writes, CSV reading.
//! - [`error`]: the error type.

mod check;
mod csv;
mod document;
mod html;
mod markdown;
mod output;
mod plot;

pub mod calibration;
pub mod compare;
pub mod confusion;
pub mod curves;
pub mod error;
pub mod gallery;
pub mod recall;
pub mod roc;
pub mod rule;
pub mod run;

use std::path::{Path, PathBuf};

pub use compare::{CompareOptions, Comparison, compare};
pub use error::{Error, Result};
pub use gallery::{ImageSource, Thumb};
pub use rule::Rule;
pub use run::Run;

use document::{Computed, GallerySection};
pub use output::write_atomic;
pub use plot::{threshold_text, threshold_texts};
use output::create_dir;

/// What the report should contain besides the run folder's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOptions {
    /// At most this many images per gallery group (default 8).
    pub gallery_size: usize,
    /// Longest side of a gallery thumbnail in pixels (default 128).
    pub thumb_size: u32,
    /// Training images per class (binary: negatives, positives), for the class-count table;
    /// the run folder does not record them.
    pub train_counts: Option<Vec<u64>>,
    /// Report title (default: `Run report: <folder name>`).
    pub title: Option<String>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self { gallery_size: 8, thumb_size: 128, train_counts: None, title: None }
    }
}

/// The files a report wrote, and what it had to leave out.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// `plots/curves.png`.
    pub curves: PathBuf,
    /// `plots/roc.png`.
    pub roc: PathBuf,
    /// `plots/pr.png`.
    pub pr: PathBuf,
    /// `plots/confusion.png`.
    pub confusion: PathBuf,
    /// `plots/recall.png`.
    pub recall: PathBuf,
    /// `plots/calibration.png`.
    pub calibration: PathBuf,
    /// The gallery thumbnails (empty without an image source).
    pub gallery: Vec<PathBuf>,
    /// What was skipped or looked wrong, in words (also in the report's *Notes*).
    pub notes: Vec<String>,
}

impl ReportFiles {
    /// The six plots.
    pub fn plots(&self) -> [&Path; 6] {
        [&self.curves, &self.roc, &self.pr, &self.confusion, &self.recall, &self.calibration]
    }

    /// Every file written.
    pub fn all(&self) -> Vec<&Path> {
        let mut all = vec![self.markdown.as_path(), self.html.as_path()];
        all.extend(self.plots());
        all.extend(self.gallery.iter().map(PathBuf::as_path));
        all
    }
}

/// Reads the run folder `run_dir` and writes its report into it (see the crate
/// documentation for the files). `images` provides the gallery's images; without it the
/// gallery lists the selected images without pictures and the report says so.
pub fn write_report(run_dir: &Path, options: &ReportOptions, images: Option<&dyn ImageSource>) -> Result<ReportFiles> {
    let run = Run::read(run_dir)?;
    write_report_for(&run, options, images)
}

/// [`write_report`] for a run already read with [`Run::read`]; writes into `run.dir`.
pub fn write_report_for(run: &Run, options: &ReportOptions, images: Option<&dyn ImageSource>) -> Result<ReportFiles> {
    let k = run.classes().len();
    if let Some(c) = &options.train_counts
        && c.len() != k
    {
        return Err(Error::Option {
            option: "train_counts",
            reason: format!("{} counts for the run's {k} classes ({})", c.len(), run.classes().join(", ")),
        });
    }
    let dir = &run.dir;
    let plots_dir = dir.join("plots");
    create_dir(&plots_dir)?;
    let mut notes = Vec::new();
    if run.config.is_none() {
        notes.push("config.toml is missing: no configuration table".to_string());
    }
    if run.is_binary() && run.thresholds.is_none() {
        notes.push("thresholds.csv is missing: no threshold table".to_string());
    }
    if run.is_binary() && run.report.threshold.is_some() && run.val.labels.is_empty() {
        notes.push("predictions.csv has no `val` rows: report.json's validation counts at the threshold are not checked".to_string());
    }

    let rule = run.rule();
    let confusion = confusion::compute(run)?;
    let per_class = recall::per_class(run)?;
    let calibrated = calibration::compute(run)?;
    notes.extend(check::disagreements(run, &calibrated));
    if confusion.counts != run.report.test.confusion_matrix {
        notes.push(format!(
            "the confusion matrix recomputed from predictions.csv ({:?}) differs from report.json's ({:?}); the plots use the recomputed one",
            confusion.counts, run.report.test.confusion_matrix
        ));
    }

    let files = ReportFiles {
        markdown: dir.join("report.md"),
        html: dir.join("report.html"),
        curves: plots_dir.join("curves.png"),
        roc: plots_dir.join("roc.png"),
        pr: plots_dir.join("pr.png"),
        confusion: plots_dir.join("confusion.png"),
        recall: plots_dir.join("recall.png"),
        calibration: plots_dir.join("calibration.png"),
        gallery: Vec::new(),
        notes: Vec::new(),
    };
    curves::write(run, &files.curves)?;
    let curves = roc::compute(run)?;
    notes.extend(curves.notes.iter().cloned());
    if let (Some(t), Some(op)) = (&run.report.threshold, curves.points.first()) {
        let (j, m) = (&t.test, &op.metrics);
        if (j.tp, j.fp, j.tn, j.fn_) != (m.tp, m.fp, m.tn, m.fn_) {
            notes.push(format!(
                "test counts at the threshold recomputed from predictions.csv (tp {} fp {} tn {} fn {}) differ from report.json's (tp {} fp {} tn {} fn {})",
                m.tp, m.fp, m.tn, m.fn_, j.tp, j.fp, j.tn, j.fn_
            ));
        }
    }
    roc::write(run, &curves, &files.roc, &files.pr)?;
    confusion::write(&confusion, &rule, &files.confusion)?;
    recall::write(run, &per_class, &files.recall)?;
    calibration::write(run, &calibrated, &files.calibration)?;

    let groups = gallery::select(run, options.gallery_size);
    let (gallery_section, gallery_files) = match images {
        // A regenerated report shows the thumbnails an earlier report (the training run's)
        // left for the same selection: the same gallery, nothing to note.
        None => match gallery::existing(dir, &groups) {
            Some(figures) => (GallerySection::Figures(figures), Vec::new()),
            None => {
                notes.push(
                    "gallery without thumbnails: the images are not in the run folder and gallery/ holds none for this \
                     selection (the training run writes them)"
                        .to_string(),
                );
                (GallerySection::NoImages(groups), Vec::new())
            }
        },
        Some(source) => {
            let written = gallery::write(dir, &groups, source, options.thumb_size)?;
            notes.extend(written.notes);
            (GallerySection::Figures(written.groups), written.files)
        }
    };

    let title = options.title.clone().unwrap_or_else(|| {
        let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        format!("Run report: {name}")
    });
    let plot_list = [
        ("plots/curves.png", "Training curves", "training curves per epoch"),
        ("plots/roc.png", "ROC curve", "test ROC curve"),
        ("plots/pr.png", "Precision-recall curve", "test precision-recall curve"),
        ("plots/confusion.png", "Confusion matrix", "test confusion matrix"),
        ("plots/recall.png", "Per-class recall", "test recall per class"),
        ("plots/calibration.png", "Calibration", "test reliability diagram"),
    ]
    .map(|(p, h, a)| (p.to_string(), h, a.to_string()));
    let blocks = document::build(
        run,
        &Computed {
            title: title.clone(),
            // Given, else report.json's (a regenerated report keeps its class table).
            train_counts: options.train_counts.as_deref().or(run.report.train_counts.as_deref()),
            confusion: &confusion,
            curves: &curves,
            plots: &plot_list,
            gallery: &gallery_section,
            notes: &notes,
            calibration: &calibrated,
            auc_ci95: if run.is_binary() { derma_eval::auc_delong95(&run.test.positives(), &run.test.scores()).ok() } else { None },
        },
    );
    // The pages first (the HTML embeds the new images), then the old thumbnails go: a failure
    // before this point leaves the previous report's pages with their own images.
    let html = html::render(&blocks, &title, dir)?;
    write_atomic(&files.markdown, markdown::render(&blocks).as_bytes())?;
    write_atomic(&files.html, html.as_bytes())?;
    if images.is_some() {
        // Without an image source the gallery was not rewritten: the thumbnails a training
        // run made are kept (they cannot be made again from the run folder).
        gallery::remove_other_thumbnails(dir, &gallery_files)?;
    }
    Ok(ReportFiles { gallery: gallery_files, notes, ..files })
}
