//! Two finished runs on the same test images, compared paired: is B's figure better than A's
//! by more than the test set's noise? Each figure gets B − A, a 95 % interval of that
//! difference and, where a paired test exists, its p-value (derma-eval's [`paired`]
//! module): DeLong's test for an AUC, McNemar's exact test for a proportion of the same images
//! (accuracy, a class's recall, sensitivity, specificity), and a class-stratified paired
//! bootstrap interval for the rest (balanced accuracy, macro AUC) and for every proportion.
//! Each run decides with its own rule (its threshold, `--decision balanced`, or arg-max), as
//! in its report.
//!
//! [`paired`]: derma_eval::paired

use std::fmt::Write as _;

use derma_eval::{BootstrapInterval, EvalError, PairedAuc, delong_paired, macro_auc_ovr, mcnemar_exact, paired_bootstrap};

use crate::error::{Error, Result};
use crate::run::{Run, Split};

/// How the bootstrap intervals are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompareOptions {
    /// Bootstrap resamples (default 2,000).
    pub resamples: usize,
    /// Seed of the resampling (default 0): the same seed gives the same intervals.
    pub seed: u64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self { resamples: 2000, seed: 0 }
    }
}

/// One compared figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What is compared, e.g. `accuracy`, `AUC mel (one-vs-rest)`.
    pub figure: String,
    /// Run A's value on the test split.
    pub a: f64,
    /// Run B's value.
    pub b: f64,
    /// 95 % interval of B − A.
    pub ci95: (f64, f64),
    /// How the interval was found: `DeLong` or `bootstrap`.
    pub interval: &'static str,
    /// The paired test's p-value, if the figure has one.
    pub p_value: Option<f64>,
    /// The test and its counts, e.g. `McNemar exact: 31 right only in A, 34 only in B`.
    pub test: String,
}

impl Row {
    /// A row of DeLong's paired AUC test.
    fn delong(figure: String, auc: PairedAuc) -> Self {
        Self {
            figure,
            a: auc.auc_a,
            b: auc.auc_b,
            ci95: auc.ci95,
            interval: "DeLong",
            p_value: Some(auc.p_value),
            test: "DeLong, paired".into(),
        }
    }

    /// A row with a bootstrap interval and no test.
    fn bootstrap(figure: &str, a: f64, b: f64, interval: &BootstrapInterval) -> Self {
        Self { figure: figure.into(), a, b, ci95: interval.ci95, interval: "bootstrap", p_value: None, test: String::new() }
    }
}

/// The comparison of run B against run A on their common test split.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Run A's folder, as given.
    pub a: String,
    /// Run B's folder, as given.
    pub b: String,
    /// Test images.
    pub images: usize,
    /// Test images per class.
    pub class_counts: Vec<u64>,
    /// Class names.
    pub classes: Vec<String>,
    /// The compared figures.
    pub rows: Vec<Row>,
    /// Figures that could not be compared, and why.
    pub notes: Vec<String>,
    /// The bootstrap's settings.
    pub options: CompareOptions,
}

/// Compares run `b` with run `a` on their test split. The runs must share the class names
/// and the test images: the same rows of `predictions.csv` (dataset index and label), else an
/// [`Error::Inconsistent`] naming B's file and the first row that differs.
pub fn compare(a: &Run, b: &Run, options: CompareOptions) -> Result<Comparison> {
    let b_file = b.dir.join("predictions.csv");
    let inconsistent = |reason: String| Error::Inconsistent { path: b_file.clone(), reason };
    if a.classes() != b.classes() {
        return Err(Error::Inconsistent {
            path: b.dir.join("report.json"),
            reason: format!("classes {:?}, but {} has {:?}: not the same task", b.classes(), a.dir.display(), a.classes()),
        });
    }
    let (ta, tb) = (&a.test, &b.test);
    if ta.len() != tb.len() {
        return Err(inconsistent(format!(
            "{} test rows, but {} has {}: the runs were not tested on the same images",
            tb.len(),
            a.dir.join("predictions.csv").display(),
            ta.len()
        )));
    }
    if let Some(i) = (0..ta.len()).find(|&i| ta.indices[i] != tb.indices[i] || ta.labels[i] != tb.labels[i]) {
        return Err(inconsistent(format!(
            "test row {} is image {} with label {}, but in {} it is image {} with label {}: the runs were not tested on the \
             same images",
            i + 1,
            tb.indices[i],
            tb.labels[i],
            a.dir.join("predictions.csv").display(),
            ta.indices[i],
            ta.labels[i]
        )));
    }
    let k = a.classes().len();
    let labels = &ta.labels;
    let eval = |what: &str| {
        let what = what.to_string();
        move |source: EvalError| Error::Eval { what: what.clone(), source }
    };
    let (rule_a, rule_b) = (a.rule(), b.rule());
    let (pred_a, pred_b) = (rule_a.predict_split(ta), rule_b.predict_split(tb));
    let right = |pred: &[usize]| -> Vec<bool> { pred.iter().zip(labels).map(|(p, l)| p == l).collect() };
    let (right_a, right_b) = (right(&pred_a), right(&pred_b));
    let bootstrap = |statistic: &dyn Fn(&[usize]) -> derma_eval::Result<f64>| {
        paired_bootstrap(labels, k, options.resamples, options.seed, statistic)
    };

    // A proportion of the images in `cases` (all, a class, the positives or the negatives)
    // that each run gets right: McNemar's exact test and a bootstrap interval.
    let proportion = |figure: String, cases: &dyn Fn(usize) -> bool| -> Result<Row> {
        let picked: Vec<usize> = (0..labels.len()).filter(|&i| cases(i)).collect();
        let (ra, rb): (Vec<bool>, Vec<bool>) = picked.iter().map(|&i| (right_a[i], right_b[i])).unzip();
        let mcnemar = mcnemar_exact(&ra, &rb).map_err(eval(&figure))?;
        let share = |right: &[bool], idx: &[usize]| {
            let mine: Vec<usize> = idx.iter().copied().filter(|&i| cases(i)).collect();
            mine.iter().filter(|&&i| right[i]).count() as f64 / mine.len() as f64
        };
        let interval = bootstrap(&|idx| Ok(share(&right_b, idx) - share(&right_a, idx))).map_err(eval(&figure))?;
        Ok(Row {
            a: share(&right_a, &picked),
            b: share(&right_b, &picked),
            ci95: interval.ci95,
            interval: "bootstrap",
            p_value: Some(mcnemar.p_value),
            test: format!("McNemar exact: {} right only in A, {} only in B", mcnemar.only_a, mcnemar.only_b),
            figure,
        })
    };

    let (mut rows, mut notes) = (Vec::new(), Vec::new());
    if a.is_binary() {
        let (scores_a, scores_b, positives) = (ta.scores(), tb.scores(), ta.positives());
        let auc = delong_paired(&positives, &scores_a, &scores_b).map_err(eval("the AUC"))?;
        rows.push(Row::delong("AUC".into(), auc));
        rows.push(proportion("sensitivity (at each run's threshold)".into(), &|i| labels[i] == 1)?);
        rows.push(proportion("specificity (at each run's threshold)".into(), &|i| labels[i] == 0)?);
        rows.push(proportion("accuracy".into(), &|_| true)?);
    } else {
        rows.push(proportion("accuracy".into(), &|_| true)?);
        let balanced = |pred: &[usize], idx: &[usize]| {
            let y: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
            let p: Vec<usize> = idx.iter().map(|&i| pred[i]).collect();
            derma_eval::balanced_accuracy(&y, &p, k)
        };
        let all: Vec<usize> = (0..labels.len()).collect();
        let what = "balanced accuracy";
        let interval = bootstrap(&|idx| Ok(balanced(&pred_b, idx)? - balanced(&pred_a, idx)?)).map_err(eval(what))?;
        let (value_a, value_b) = (balanced(&pred_a, &all).map_err(eval(what))?, balanced(&pred_b, &all).map_err(eval(what))?);
        rows.push(Row::bootstrap(what, value_a, value_b, &interval));
        let macro_auc = |split: &Split, idx: &[usize]| {
            let y: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
            let p: Vec<&[f64]> = idx.iter().map(|&i| &split.probs[i][..]).collect();
            macro_auc_ovr(&y, &p)
        };
        let what = "macro AUC (one-vs-rest)";
        let counts = ta.class_counts(k);
        let absent: Vec<&str> = a.classes().iter().zip(&counts).filter(|&(_, &n)| n == 0).map(|(c, _)| c.as_str()).collect();
        if absent.is_empty() {
            let interval = bootstrap(&|idx| Ok(macro_auc(tb, idx)? - macro_auc(ta, idx)?)).map_err(eval(what))?;
            let (value_a, value_b) = (macro_auc(ta, &all).map_err(eval(what))?, macro_auc(tb, &all).map_err(eval(what))?);
            rows.push(Row::bootstrap(what, value_a, value_b, &interval));
        } else {
            notes.push(format!("no macro AUC row: no test image of {} (a one-vs-rest AUC needs each class)", absent.join(", ")));
        }
        for (c, name) in a.classes().iter().enumerate() {
            if counts[c] == 0 {
                notes.push(format!("no recall row for {name}: no test image of it"));
                continue;
            }
            rows.push(proportion(format!("recall {name}"), &|i| labels[i] == c)?);
        }
        for (c, name) in a.classes().iter().enumerate() {
            let what = format!("the AUC of {name} (one-vs-rest)");
            let is_c: Vec<bool> = labels.iter().map(|&l| l == c).collect();
            let column = |split: &Split| -> Vec<f64> { split.probs.iter().map(|p| p[c]).collect() };
            // A class of fewer than two test images (or of all but one) has no DeLong variance:
            // its row is left out, with a note.
            match delong_paired(&is_c, &column(ta), &column(tb)) {
                Ok(auc) => rows.push(Row::delong(format!("AUC {name} (one-vs-rest)"), auc)),
                Err(EvalError::TooFew { .. } | EvalError::OneClass { .. }) => notes.push(format!(
                    "no AUC row for {name}: {} of the {} test images, DeLong's test needs at least 2 in and 2 out of the class",
                    counts[c],
                    labels.len()
                )),
                Err(e) => return Err(eval(&what)(e)),
            }
        }
    }
    Ok(Comparison {
        a: a.dir.display().to_string(),
        b: b.dir.display().to_string(),
        images: labels.len(),
        class_counts: ta.class_counts(k),
        classes: a.classes().to_vec(),
        rows,
        notes,
        options,
    })
}

impl Comparison {
    /// The comparison as a Markdown section: the runs, then one table row per figure.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## B against A on the same {} test images\n", self.images);
        let _ = writeln!(s, "- A: `{}`\n- B: `{}`", self.a, self.b);
        let counts: Vec<String> = self.classes.iter().zip(&self.class_counts).map(|(c, n)| format!("{c} {n}")).collect();
        let _ = writeln!(s, "- test images per class: {}\n", counts.join(", "));
        let _ = writeln!(s, "| figure | A | B | B − A | 95 % interval of B − A | p | paired test |");
        let _ = writeln!(s, "|---|---:|---:|---:|---|---:|---|");
        for r in &self.rows {
            let p = r.p_value.map_or("–".to_string(), format_p);
            let _ = writeln!(
                s,
                "| {} | {:.4} | {:.4} | {:+.4} | [{:+.4}, {:+.4}] ({}) | {p} | {} |",
                r.figure,
                r.a,
                r.b,
                r.b - r.a,
                r.ci95.0,
                r.ci95.1,
                r.interval,
                if r.test.is_empty() { "–" } else { &r.test }
            );
        }
        for note in &self.notes {
            let _ = writeln!(s, "\nNote: {note}.");
        }
        let _ = writeln!(
            s,
            "\nBootstrap: {} resamples of the test images within each class (seed {}), percentile interval. p: two-sided, \
             each row on its own (not adjusted for the number of rows). An interval that holds 0 is no evidence of a \
             difference.",
            self.options.resamples, self.options.seed
        );
        s
    }
}

/// A p-value to 2 decimals (4 below 0.01), `< 0.0001` below that.
fn format_p(p: f64) -> String {
    if p < 1e-4 { "< 0.0001".into() } else { format!("{:.*}", if p < 0.01 { 4 } else { 2 }, p) }
}
