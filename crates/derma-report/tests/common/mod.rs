//! Synthetic run folders in exactly the formats derma-train writes (see its `report` module):
//! a binary run and a 3-class run with small, known predictions.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use derma_report::Thumb;
use serde_json::json;

/// Test rows of the binary run: (label, positive-class probability); dataset index = 100 + row.
///
/// At the operating threshold 0.6123 (`prob >= t` is positive; rows 3 and 4 sit exactly on it):
/// positives 2,3,5,7,10,12,13 (P = 7): TP = 2,3,10,12,13 = 5, FN = 5,7 = 2;
/// negatives 0,1,4,6,8,9,11 (N = 7): FP = 1,4,8 = 3, TN = 0,6,9,11 = 4.
pub const BINARY_TEST: [(usize, f64); 14] = [
    (0, 0.10),
    (0, 0.65),
    (1, 0.90),
    (1, 0.6123),
    (0, 0.6123),
    (1, 0.20),
    (0, 0.30),
    (1, 0.55),
    (0, 0.95),
    (0, 0.05),
    (1, 0.80),
    (0, 0.61),
    (1, 0.70),
    (1, 0.99),
];

/// Validation rows of the binary run (label, probability); 0.6123 is one of the scores, so the
/// threshold is a row of thresholds.csv. At 0.6123: TP 3, FP 1, TN 3, FN 1 — the highest
/// threshold with recall >= 0.75 (the `recall:0.75` rule).
pub const BINARY_VAL: [(usize, f64); 8] =
    [(1, 0.9), (1, 0.6123), (0, 0.7), (0, 0.3), (1, 0.4), (0, 0.2), (0, 0.1), (1, 0.8)];

/// The binary run's operating threshold.
pub const THRESHOLD: f64 = 0.6123;

/// Test rows of the 3-class run: (label, probabilities); dataset index = 200 + row.
///
/// Arg-max (first among ties): row 0 → 0, 1 → 1, 2 → 0 (0.4 = 0.4: the first wins), 3 → 1,
/// 4 → 2, 5 → 0, 6 → 2, 7 → 2, 8 → 2.
pub const MULTI_TEST: [(usize, [f64; 3]); 9] = [
    (0, [0.7, 0.2, 0.1]),
    (0, [0.2, 0.5, 0.3]),
    (1, [0.4, 0.4, 0.2]),
    (1, [0.1, 0.8, 0.1]),
    (2, [0.05, 0.05, 0.9]),
    (2, [0.6, 0.1, 0.3]),
    (2, [0.1, 0.2, 0.7]),
    (1, [0.1, 0.1, 0.8]),
    (0, [0.3, 0.3, 0.4]),
];

/// Validation rows of the 3-class run.
pub const MULTI_VAL: [(usize, [f64; 3]); 6] = [
    (0, [0.6, 0.3, 0.1]),
    (1, [0.2, 0.7, 0.1]),
    (2, [0.1, 0.1, 0.8]),
    (2, [0.3, 0.3, 0.4]),
    (1, [0.5, 0.4, 0.1]),
    (0, [0.3, 0.3, 0.4]),
];

/// Writes `contents` to `dir/name`.
pub fn put(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).unwrap();
}

fn config(binary: bool) -> String {
    let mut s = String::from(
        "dataset = \"dermamnist\"\nsize = 28\noffline = false\naugment = \"natural\"\nwidth = 1.0\noutput_stride = 16\n\
         dropout = 0.2\npretrained = \"imagenet\"\nfreeze_backbone_epochs = 0\nbackbone_lr_mult = 1.0\ninput_norm = \"imagenet\"\n\
         padding = \"symmetric\"\nepochs = 3\nbatch_size = 128\nlr = 0.001\nweight_decay = 0.0001\nwarmup_epochs = 1.0\nseed = 0\n",
    );
    if binary {
        s += "positive_classes = [\"mel\", \"bcc\"]\nloss = \"focal\"\ngamma = 2.0\nalpha = 0.25\nclass_weights = \"none\"\n\
              bce_weight = 0.5\nfocal_weight = 0.5\nsampler = \"weighted\"\nsampler_power = 0.5\nundersample_ratio = 1.0\n\
              select_metric = \"sens@spec\"\nthreshold = \"recall:0.75\"\nbackend = \"cpu\"\n\
              hard_negative_mining = true\nmining_strength = 2.0\nmining_fraction = 0.2\nmetric_weight = 0.0\ntriplet_margin = 0.2\n\
              patience = 3\nfreeze_bn = true\n";
    } else {
        s += "loss = \"ce\"\ngamma = 2.0\nclass_weights = \"balanced\"\nbce_weight = 0.5\nfocal_weight = 0.5\nsampler = \"none\"\n\
              sampler_power = 1.0\nundersample_ratio = 1.0\nselect_metric = \"auc\"\nthreshold = \"fixed:0.5\"\nbackend = \"cpu\"\n";
    }
    s
}

/// `metrics.csv` of 3 epochs, as derma-train formats it.
fn metrics(binary: bool) -> String {
    let mut s = String::from("epoch,train_loss,val_loss,val_acc,val_bal_acc,val_auc,lr,seconds,images_per_second");
    if binary {
        s += ",val_threshold,val_sensitivity,val_specificity,val_precision,val_f1,val_f2,val_tp,val_fp,val_tn,val_fn,val_ap";
    }
    s.push('\n');
    let rows = [(1, 0.92, 0.81, 0.61, 0.55, 0.71), (2, 0.64, 0.58, 0.72, 0.66, 0.83), (3, 0.45, 0.61, 0.74, 0.64, 0.81)];
    for (e, tl, vl, acc, bal, auc) in rows {
        let _ = write!(s, "{e},{tl:.6},{vl:.6},{acc:.6},{bal:.6},{auc:.6},{:.6e},{:.2},{:.1}", 1e-3 / f64::from(e), 12.5, 800.0);
        if binary {
            // Validation has 4 positives and 4 negatives (BINARY_VAL); epoch 2 is the best one,
            // at the run's threshold. The rates are derived from the counts, as derma-train does.
            let (t, tp, fp) = [(0.7, 2, 1), (THRESHOLD, 3, 1), (0.55, 4, 2)][e as usize - 1];
            let m = derma_eval::BinaryMetrics::from_counts(t, derma_eval::BinaryCounts { tp, fp, tn: 4 - fp, fn_: 4 - tp });
            let _ = write!(
                s,
                ",{t:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{},{},{},{},0.800000",
                m.sensitivity, m.specificity, m.precision, m.f1, m.f2, m.tp, m.fp, m.tn, m.fn_
            );
        }
        s.push('\n');
    }
    s
}

fn binary_json(m: &derma_eval::BinaryMetrics) -> serde_json::Value {
    json!({"sensitivity": m.sensitivity, "specificity": m.specificity, "precision": m.precision,
           "f1": m.f1, "f2": m.f2, "tp": m.tp, "fp": m.fp, "tn": m.tn, "fn": m.fn_})
}

/// The binary run's predictions.csv with these test rows (BINARY_VAL's validation rows).
pub fn binary_predictions(test: &[(usize, f64)]) -> String {
    let mut p = String::from("split,index,label,prob\n");
    for (i, (l, s)) in BINARY_VAL.iter().enumerate() {
        let _ = writeln!(p, "val,{},{l},{s}", 10 + i);
    }
    for (i, (l, s)) in test.iter().enumerate() {
        let _ = writeln!(p, "test,{},{l},{s}", 100 + i);
    }
    p
}

/// A binary run folder in a fresh temporary directory.
pub fn binary_run() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write_binary_run(tmp.path());
    tmp
}

/// Writes the binary run into `dir`.
pub fn write_binary_run(dir: &Path) {
    put(dir, "config.toml", &config(true));
    put(dir, "metrics.csv", &metrics(true));
    put(dir, "predictions.csv", &binary_predictions(&BINARY_TEST));

    let (vl, vs): (Vec<bool>, Vec<f64>) = BINARY_VAL.iter().map(|&(l, s)| (l == 1, s)).unzip();
    let (tl, ts): (Vec<bool>, Vec<f64>) = BINARY_TEST.iter().map(|&(l, s)| (l == 1, s)).unzip();
    // thresholds.csv exactly as derma-train's `thresholds_csv`.
    let roc = derma_eval::roc_curve(&vl, &vs).unwrap();
    let mut t = String::from("threshold,tpr,fpr,precision\n");
    for ((th, tpr), fpr) in roc.thresholds.iter().zip(&roc.tpr).zip(&roc.fpr) {
        let precision = if th.is_finite() { derma_eval::apply(*th, &vl, &vs).unwrap().precision } else { 0.0 };
        let _ = writeln!(t, "{th},{tpr},{fpr},{precision}");
    }
    put(dir, "thresholds.csv", &t);

    let val = derma_eval::apply(THRESHOLD, &vl, &vs).unwrap();
    let test = derma_eval::apply(THRESHOLD, &tl, &ts).unwrap();
    let auc = derma_eval::roc_auc(&tl, &ts).unwrap();
    let report = json!({
        "best_epoch": 2,
        "classes": ["not mel/bcc", "mel/bcc"],
        "test": {
            "accuracy": 9.0 / 14.0,
            "balanced_accuracy": (5.0 / 7.0 + 4.0 / 7.0) / 2.0,
            "auc_macro": auc,
            "loss": 0.55,
            "per_class": [
                {"name": "not mel/bcc", "precision": 4.0 / 6.0, "recall": 4.0 / 7.0, "f1": 8.0 / 13.0, "support": 7},
                {"name": "mel/bcc", "precision": 5.0 / 8.0, "recall": 5.0 / 7.0, "f1": 10.0 / 15.0, "support": 7},
            ],
            // Hand-computed from BINARY_TEST at 0.6123: [[TN, FP], [FN, TP]].
            "confusion_matrix": [[4, 3], [2, 5]],
            "auc": auc,
            "ap": derma_eval::average_precision(&tl, &ts).unwrap(),
        },
        "threshold": {
            "rule": "recall:0.75",
            "value": THRESHOLD,
            "met": true,
            "note": null,
            "val": binary_json(&val),
            "test": binary_json(&test),
        },
    });
    put(dir, "report.json", &serde_json::to_string_pretty(&report).unwrap());
}

/// A 3-class run folder in a fresh temporary directory.
pub fn multi_run() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write_multi_run(tmp.path());
    tmp
}

/// Writes the 3-class run into `dir`.
pub fn write_multi_run(dir: &Path) {
    put(dir, "config.toml", &config(false));
    put(dir, "metrics.csv", &metrics(false));
    let mut p = String::from("split,index,label,prob_0,prob_1,prob_2\n");
    for (split, rows, base) in [("val", &MULTI_VAL[..], 10), ("test", &MULTI_TEST[..], 200)] {
        for (i, (l, probs)) in rows.iter().enumerate() {
            let _ = writeln!(p, "{split},{},{l},{},{},{}", base + i, probs[0], probs[1], probs[2]);
        }
    }
    put(dir, "predictions.csv", &p);
    let labels: Vec<usize> = MULTI_TEST.iter().map(|r| r.0).collect();
    let probs: Vec<[f64; 3]> = MULTI_TEST.iter().map(|r| r.1).collect();
    let report = json!({
        "best_epoch": 2,
        "classes": ["akiec", "bcc", "nv"],
        "test": {
            "accuracy": 4.0 / 9.0,
            "balanced_accuracy": 4.0 / 9.0,
            "auc_macro": derma_eval::macro_auc_ovr(&labels, &probs).unwrap(),
            "loss": 1.02,
            "per_class": [
                {"name": "akiec", "precision": 1.0 / 3.0, "recall": 1.0 / 3.0, "f1": 1.0 / 3.0, "support": 3},
                {"name": "bcc", "precision": 0.5, "recall": 1.0 / 3.0, "f1": 0.4, "support": 3},
                {"name": "nv", "precision": 0.5, "recall": 2.0 / 3.0, "f1": 4.0 / 7.0, "support": 3},
            ],
            // Hand-computed from MULTI_TEST's arg-max (see there).
            "confusion_matrix": [[1, 1, 1], [1, 1, 1], [1, 0, 2]],
        },
    });
    put(dir, "report.json", &serde_json::to_string_pretty(&report).unwrap());
}

/// An image source of 28x28 images (grey for even indices, RGB for odd ones) with a pattern
/// that depends on the index; `missing` has no image.
pub fn images(missing: Option<usize>) -> impl Fn(&str, usize) -> Option<Thumb> {
    move |_split: &str, index: usize| {
        if Some(index) == missing {
            return None;
        }
        let channels = if index.is_multiple_of(2) { 1 } else { 3 };
        let pixels = (0..28 * 28 * channels).map(|i| ((i * 7 + index * 13) % 256) as u8).collect();
        Some(Thumb { pixels, height: 28, width: 28, channels })
    }
}

/// Decodes the PNG at `path`, panicking with the path on failure.
pub fn decode(path: &Path) -> image::DynamicImage {
    image::open(path).unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()))
}

/// Number of distinct colours of an image.
pub fn distinct_colours(img: &image::DynamicImage) -> usize {
    let rgb = img.to_rgb8();
    let mut seen: std::collections::HashSet<[u8; 3]> = std::collections::HashSet::new();
    for p in rgb.pixels() {
        seen.insert(p.0);
    }
    seen.len()
}

/// The targets of Markdown image links `](…)` in `md`.
pub fn markdown_links(md: &str) -> Vec<PathBuf> {
    md.split("](").skip(1).filter_map(|rest| rest.split(')').next()).map(PathBuf::from).collect()
}
