//! `derma-train` on image-file datasets (mammography-style crops): 16-bit grayscale PNGs in a
//! folder per class or listed in a CSV manifest with patient ids, trained end to end on the CPU.

mod common;
use common::{derma_train, text};

use std::path::Path;


/// Writes `n` 16-bit grayscale crops (40x48, 12-bit noise around 1500); malignant ones carry a
/// bright 12-bit blob. Returns `(relative path, label, patient)` per image.
fn write_crops(root: &Path, n: usize) -> Vec<(String, &'static str, String)> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut rows = Vec::new();
    for i in 0..n {
        let malignant = i % 3 == 0;
        let class = if malignant { "malignant" } else { "benign" };
        let (w, h) = (40u32, 48u32);
        let (cx, cy) = (10.0 + 20.0 * next(), 12.0 + 24.0 * next());
        let mut px = Vec::with_capacity((w * h) as usize);
        for y in 0..h {
            for x in 0..w {
                let d2 = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2);
                let blob = if malignant && d2 < 36.0 { 2000.0 } else { 0.0 };
                px.push((1500.0 + 600.0 * (next() - 0.5) + blob) as u16);
            }
        }
        std::fs::create_dir_all(root.join(class)).unwrap();
        let rel = format!("{class}/crop{i:03}.png");
        image::ImageBuffer::<image::Luma<u16>, _>::from_raw(w, h, px).unwrap().save(root.join(&rel)).unwrap();
        rows.push((rel, class, format!("P{:03}", i / 2)));
    }
    rows
}

/// A CSV manifest with patient ids (two images per patient) trains a binary screening model
/// end to end: patient-level split, min-specificity threshold, grayscale stem.
#[test]
fn csv_manifest_trains_a_screening_model() {
    let dir = tempfile::tempdir().unwrap();
    let rows = write_crops(dir.path(), 60);
    let mut csv = String::from("path,label,patient_id\n");
    for (p, l, id) in &rows {
        csv += &format!("{p},{l},{id}\n");
    }
    let manifest = dir.path().join("crops.csv");
    std::fs::write(&manifest, csv).unwrap();
    let out = dir.path().join("run");
    let o = derma_train(&[
        "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/mammo.toml"),
        "--dataset", "csv", "--manifest", manifest.to_str().unwrap(), "--pretrained", "none",
        "--freeze-backbone-epochs", "0", "--image-size", "32", "--width", "0.25", "--in-channels", "1",
        "--epochs", "2", "--batch-size", "8", "--lr", "0.003", "--backend", "cpu", "--out", out.to_str().unwrap(),
    ]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&o.stderr));
    assert!(stdout.contains("decoded 60 images"), "{stdout}");
    assert!(stdout.contains("classes benign=") && stdout.contains("[32, 32, 1]"), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["classes"], serde_json::json!(["benign", "malignant"]));
    assert_eq!(report["threshold"]["rule"], "min-spec:0.8");
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("dataset = \"csv\"") && config.contains("in_channels = 1") && config.contains("augment = \"mammo\""), "{config}");
    // val + test rows: 30 patients, 70/10/20 → 3 val and 6 test patients of 2 images each.
    let preds = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    let val = preds.lines().filter(|l| l.starts_with("val,")).count();
    let test = preds.lines().filter(|l| l.starts_with("test,")).count();
    assert_eq!((val, test), (6, 12), "{preds}");
}

/// A folder per class, and the errors of file datasets: each names the flag, file or row, and
/// no run folder is left behind.
#[test]
fn folder_dataset_and_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rows = write_crops(dir.path(), 30);
    let out = dir.path().join("run");
    let common = ["--image-size", "32", "--width", "0.25", "--epochs", "1", "--batch-size", "8", "--backend", "cpu"];

    let o = derma_train(&[&["--dataset", "folder"][..], &common, &["--out", out.to_str().unwrap()]].concat());
    assert!(!o.status.success() && text(&o.stderr).contains("--data-dir"), "{}", text(&o.stderr));

    let missing = dir.path().join("missing.csv");
    let o = derma_train(&[&["--dataset", "csv", "--manifest", missing.to_str().unwrap()][..], &common, &["--out", out.to_str().unwrap()]].concat());
    assert!(!o.status.success() && text(&o.stderr).contains("missing.csv"), "{}", text(&o.stderr));

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "path,label\nbenign/crop001.png,benign\nmalignant/nothere.png,malignant\n").unwrap();
    let o = derma_train(&[&["--dataset", "csv", "--manifest", bad.to_str().unwrap()][..], &common, &["--out", out.to_str().unwrap()]].concat());
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains("bad.csv") && err.contains("line 3") && err.contains("nothere.png"), "{err}");

    // A mistyped label is a class of one image: named with its row, not as a split without it.
    let mut typo = String::from("path,label\n");
    for (i, (p, l, _)) in rows.iter().enumerate() {
        typo += &format!("{p},{}\n", if i == 4 { "malignnat" } else { l });
    }
    let typo_csv = dir.path().join("typo.csv");
    std::fs::write(&typo_csv, typo).unwrap();
    let o = derma_train(&[&["--dataset", "csv", "--manifest", typo_csv.to_str().unwrap()][..], &common, &["--out", out.to_str().unwrap()]].concat());
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains("class `malignnat` has only 1 image(s)") && err.contains("typo.csv` line 6"), "{err}");
    assert!(err.contains("a typo in a label?"), "{err}");

    std::fs::write(dir.path().join("benign").join("broken.png"), b"not a png").unwrap();
    let o = derma_train(&[&["--dataset", "folder", "--data-dir", dir.path().to_str().unwrap()][..], &common, &["--out", out.to_str().unwrap()]].concat());
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains("broken.png"), "{err}");
    assert!(err.contains("has no patient ids") && err.contains("--patient-pattern"), "{err}");
    assert!(!out.exists(), "a failed start leaves no run folder");
    std::fs::remove_file(dir.path().join("benign").join("broken.png")).unwrap();

    // --patient-pattern: an image whose name lacks the id is named; a MedMNIST run refuses it.
    let folder = ["--dataset", "folder", "--data-dir", dir.path().to_str().unwrap()];
    let o = derma_train(&[&folder[..], &["--patient-pattern", "crop00(\\d)"], &common, &["--out", out.to_str().unwrap()]].concat());
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains("--patient-pattern") && err.contains("benign/crop010.png` does not match"), "{err}");
    assert!(err.contains("(19 other images do not match either)"), "{err}");
    // Flags a file dataset does not use are refused, not ignored.
    for (flags, want) in [
        (vec!["--data-root", "/nonexistent/cache"], "--data-root is the MedMNIST download cache"),
        (vec!["--manifest", bad.to_str().unwrap()], "--manifest is not used with --dataset folder"),
        (vec!["--size", "64"], "--size 64 picks a MedMNIST file's resolution; --dataset folder reads image files"),
    ] {
        let o = derma_train(&[&folder[..], &flags[..], &common, &["--out", out.to_str().unwrap()]].concat());
        assert!(!o.status.success() && text(&o.stderr).contains(want), "{flags:?}: {}", text(&o.stderr));
    }
    let o = derma_train(&[&["--dataset", "csv", "--manifest", bad.to_str().unwrap(), "--data-dir", "."][..], &common, &["--out", out.to_str().unwrap()]].concat());
    assert!(!o.status.success() && text(&o.stderr).contains("--data-dir is not used with --dataset csv"), "{}", text(&o.stderr));
    let o = derma_train(&[&["--patient-pattern", "P_\\d+"][..], &common, &["--out", out.to_str().unwrap()]].concat());
    assert!(!o.status.success() && text(&o.stderr).contains("--patient-pattern is for file datasets"), "{}", text(&o.stderr));
    assert!(!out.exists(), "a failed start leaves no run folder");

    // The last digit of the crop number as the patient: 10 patients of 3 crops each.
    let o = derma_train(&[&folder[..], &["--patient-pattern", "crop\\d\\d(\\d)", "--augment", "natural", "--hflip", "0"], &common, &["--out", out.to_str().unwrap()]].concat());
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("--patient-pattern: 30 images of 10 patients"), "{stdout}");
    assert!(!stderr.contains("no patient ids"), "{stderr}");
    // Which class is positive is said; `malignant` reads as a positive finding: no warning.
    assert!(stdout.contains("classes: `benign` = 0, `malignant` = 1 (the positive class)"), "{stdout}");
    assert!(!stderr.contains("reads like a negative finding"), "{stderr}");
    // splits.csv: every image once, in predictions.csv's order within its split, each patient
    // (the crop number's last digit) in one split only, labels the class folders.
    let splits = std::fs::read_to_string(out.join("splits.csv")).unwrap();
    let mut lines = splits.lines();
    assert_eq!(lines.next(), Some("split,index,path,patient_id,label"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 30, "{splits}");
    let mut split_of = std::collections::HashMap::new();
    let mut next = std::collections::HashMap::new();
    for r in &rows {
        let index = next.entry(r[0]).or_insert(0usize);
        assert_eq!(r[1], index.to_string(), "{r:?}");
        *index += 1;
        let path = std::path::Path::new(r[2]);
        assert!(path.is_file() && path.parent().unwrap().ends_with(r[4]), "{r:?}");
        let crop = path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(r[3], &crop[crop.len() - 1..], "{r:?}");
        assert_eq!(*split_of.entry(r[3]).or_insert(r[0]), r[0], "patient {} in two splits", r[3]);
    }
    let predictions = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    for split in ["val", "test"] {
        let n = predictions.lines().filter(|l| l.starts_with(&format!("{split},"))).count();
        assert_eq!(next.get(split).copied(), Some(n), "{split}");
    }
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("augment = \"natural\"") && config.contains("hflip = 0.0"), "{config}");
    assert!(config.contains("patient_pattern = 'crop\\d\\d(\\d)'"), "{config}");
}

/// A split column whose validation rows are all benign: no threshold, recall or AUC can be
/// computed there, so the run is refused before any work, naming the split and the class.
#[test]
fn a_split_without_a_class_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rows = write_crops(dir.path(), 30);
    let mut csv = String::from("path,label,patient_id,split\n");
    for (i, (p, l, _)) in rows.iter().enumerate() {
        let id = format!("Q{i:03}"); // one image per patient: any split assignment is patient-level
        let split = match i {
            _ if i < 18 => "train",
            _ if *l == "benign" && i < 24 => "val",
            _ if i < 24 => "train",
            _ => "test",
        };
        csv += &format!("{p},{l},{id},{split}\n");
    }
    let manifest = dir.path().join("crops.csv");
    std::fs::write(&manifest, csv).unwrap();
    let out = dir.path().join("run");
    let o = derma_train(&[
        "--dataset", "csv", "--manifest", manifest.to_str().unwrap(), "--image-size", "32", "--width", "0.25",
        "--epochs", "1", "--backend", "cpu", "--out", out.to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert!(!o.status.success(), "a validation split without malignant images was accepted");
    assert!(err.contains("the val split") && err.contains("no `malignant` image") && err.contains("benign 4, malignant 0"), "{err}");
    assert!(!out.exists(), "a failed start leaves no run folder");
}
