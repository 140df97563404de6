//! The `derma-cascade` binary end to end on a tiny binary task (CPU backend).

mod common;
use common::{colour_split, text};

use std::path::Path;
use std::process::{Command, Output};

use derma_data::ImageDataset;
use derma_train::backend;
use derma_train::predict::RunModel;
use medmnist::{MedMnistArrays, Split};


const NAMES: [&str; 7] = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"];

/// The binary view (akiec, bcc, mel = indices 0, 1, 4 positive) of a split.
fn binary(split: &Split) -> ImageDataset {
    let labels = split.labels.iter().map(|&l| l as usize).collect();
    let names = NAMES.iter().map(|s| s.to_string()).collect();
    ImageDataset::new(split.images.clone(), labels, [28, 28, 3], names)
        .unwrap()
        .binary(&[0, 1, 4], ["not akiec/bcc/mel".into(), "akiec/bcc/mel".into()])
}

fn derma_cascade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_derma-cascade")).args(args).output().unwrap()
}


fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `split -> probabilities` column `col` of a predictions CSV.
fn column(csv: &str, split: &str, col: usize) -> Vec<f64> {
    csv.lines().skip(1).filter(|l| l.starts_with(&format!("{split},"))).map(|l| l.split(',').nth(col).unwrap().parse().unwrap()).collect()
}

/// Both stages train; the reported cascade confusion matrix, thresholds and stage-2 training
/// population are recomputed here from the two saved models' own predictions.
#[test]
fn cascade_end_to_end_matches_its_stages() {
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("colours.npz");
    let (train, val, test) = (colour_split(6, 1), colour_split(4, 2), colour_split(4, 3));
    let arrays = MedMnistArrays { train: train.clone(), val: val.clone(), test: test.clone() };
    medmnist::write_npz(&npz, &arrays).unwrap();
    let out = dir.path().join("cascade");
    let o = derma_cascade(&[
        "--npz", npz.to_str().unwrap(), "--positive-classes", "mel,bcc,akiec", "--backend", "cpu", "--width", "0.25",
        "--output-stride", "8", "--epochs", "2", "--batch-size", "8", "--lr", "0.003", "--out", out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    let report = json(&out.join("cascade.json"));
    assert!(report["stage2"]["skipped"].is_null(), "stage 2 was skipped: {}", report["stage2"]);
    for stage in ["stage1", "stage2"] {
        for f in ["config.toml", "metrics.csv", "predictions.csv", "report.json", "model.bpk"] {
            assert!(out.join(stage).join(f).is_file(), "{stage}/{f}");
        }
    }
    // The recipes reached the run folders.
    let c1: toml::Table = toml::from_str(&std::fs::read_to_string(out.join("stage1/config.toml")).unwrap()).unwrap();
    let c2: toml::Table = toml::from_str(&std::fs::read_to_string(out.join("stage2/config.toml")).unwrap()).unwrap();
    assert_eq!((c1["loss"].as_str(), c1["class_weights"].as_str(), c1["sampler"].as_str()), (Some("ce"), Some("balanced"), Some("undersample")));
    assert_eq!((c1["undersample_ratio"].as_float(), c1["threshold"].as_str()), (Some(2.0), Some("recall:0.99")));
    assert_eq!((c2["loss"].as_str(), c2["alpha"].as_float(), c2["gamma"].as_float()), (Some("focal"), Some(0.75), Some(1.0)));

    // Both models, reloaded here, on every split.
    let device = backend::select("cpu").unwrap().device;
    let m1 = RunModel::load(&out.join("stage1"), &device).unwrap();
    let m2 = RunModel::load(&out.join("stage2"), &device).unwrap();
    let (dtrain, dval, dtest) = (binary(&train), binary(&val), binary(&test));
    let p1 = |d: &ImageDataset| m1.predict(d, 16, &device).scores();
    let p2 = |d: &ImageDataset| m2.predict(d, 16, &device).scores();
    let (s1_train, s1_val, s1_test, s2_val, s2_test) = (p1(&dtrain), p1(&dval), p1(&dtest), p2(&dval), p2(&dtest));
    let close = |a: &[f64], b: &[f64], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{what}: {x} vs {y}");
        }
    };
    // Stage 1's run folder (fit's own predictions) and the cascade's predictions agree with them.
    close(&column(&std::fs::read_to_string(out.join("stage1/predictions.csv")).unwrap(), "test", 3), &s1_test, "stage1 run test");
    let preds = std::fs::read_to_string(out.join("cascade-predictions.csv")).unwrap();
    assert!(preds.starts_with("split,index,label,stage1_prob,stage2_prob\n"));
    close(&column(&preds, "train", 3), &s1_train, "stage1 train");
    close(&column(&preds, "test", 3), &s1_test, "stage1 test");
    close(&column(&preds, "test", 4), &s2_test, "stage2 test");

    // Stage 2 trained on exactly the training images stage 1 flags at its threshold.
    let t_rule = report["stage1"]["threshold"].as_f64().unwrap();
    let flagged_train = s1_train.iter().filter(|&&s| s >= t_rule).count();
    let flagged_val = s1_val.iter().filter(|&&s| s >= t_rule).count();
    assert_eq!(report["stage2"]["train_images"].as_u64().unwrap() as usize, flagged_train);
    assert_eq!(report["stage2"]["val_images"].as_u64().unwrap() as usize, flagged_val);
    let stage2_preds = std::fs::read_to_string(out.join("stage2/predictions.csv")).unwrap();
    assert_eq!(stage2_preds.lines().filter(|l| l.starts_with("val,")).count(), flagged_val);
    // Validation recall of stage 1 at its threshold is >= 0.99 (all positives, here).
    let pos_val: Vec<usize> = (0..dval.len()).filter(|&i| dval.label(i) == 1).collect();
    assert!(pos_val.iter().all(|&i| s1_val[i] >= t_rule), "a validation positive below the recall:0.99 threshold");

    // The cascade confusion matrix, recomputed from the two stages at the reported thresholds.
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.iter().map(|t| t["recall"].as_f64().unwrap()).collect::<Vec<_>>(), [0.99, 0.98]);
    let first = &targets[0]["cascade"];
    let (t1, t2) = (first["stage1_threshold"].as_f64().unwrap(), first["stage2_threshold"].as_f64().unwrap());
    let mut cm = [[0u64; 2]; 2];
    for i in 0..dtest.len() {
        let predicted = usize::from(s1_test[i] >= t1 && s2_test[i] >= t2);
        cm[dtest.label(i)][predicted] += 1;
    }
    let reported: Vec<Vec<u64>> = serde_json::from_value(report["confusion_matrix"].clone()).unwrap();
    assert_eq!(reported, cm.map(|r| r.to_vec()).to_vec(), "cascade confusion matrix");
    assert_eq!(cm.iter().flatten().sum::<u64>(), 28);
    let m = &first["test"];
    assert_eq!([m["tn"].as_u64(), m["fp"].as_u64(), m["fn"].as_u64(), m["tp"].as_u64()], [cm[0][0], cm[0][1], cm[1][0], cm[1][1]].map(Some));
    // Cascade = both stages: never more positives than stage 1 alone at the same threshold.
    let stage1 = &targets[0]["stage1"];
    assert_eq!(stage1["threshold"].as_f64().unwrap(), t1);
    let s1_pos = s1_test.iter().filter(|&&s| s >= t1).count() as u64;
    assert_eq!(stage1["test"]["tp"].as_u64().unwrap() + stage1["test"]["fp"].as_u64().unwrap(), s1_pos);
    assert!(cm[0][1] + cm[1][1] <= s1_pos);
    // Each threshold met its validation recall on its own population.
    let v2: Vec<usize> = (0..dval.len()).filter(|&i| s1_val[i] >= t1).collect();
    let v2_pos: Vec<usize> = v2.iter().copied().filter(|&i| dval.label(i) == 1).collect();
    let kept = v2_pos.iter().filter(|&&i| s2_val[i] >= t2).count();
    assert!(kept as f64 >= 0.99 * v2_pos.len() as f64, "stage-2 validation recall {kept}/{}", v2_pos.len());
    let e2e = &targets[0]["cascade_end_to_end"];
    assert!(e2e["val"]["recall"].as_f64().unwrap() >= 0.99);
    // Wilson 95 % intervals from each row's counts (derma-eval's, checked against scipy there).
    let (tp, fp) = (m["tp"].as_u64().unwrap(), m["fp"].as_u64().unwrap());
    let (lo, hi) = derma_eval::wilson95(tp, tp + fp).unwrap();
    assert_eq!(m["ci95"]["precision"], serde_json::json!([lo, hi]));
    let precision_cell = format!("{:.4} ({lo:.3}–{hi:.3})", m["precision"].as_f64().unwrap());

    let md = std::fs::read_to_string(out.join("cascade.md")).unwrap();
    for want in ["| 99% | stage 1 alone |", "| 99% | cascade |", "| 98% | cascade, end-to-end |", "Cascade confusion matrix", &precision_cell] {
        assert!(md.contains(want), "`{want}` missing:\n{md}");
    }

    // the same --out again is refused before any work (--overwrite replaces it)
    let before = std::fs::read(out.join("cascade.json")).unwrap();
    let o = derma_cascade(&["--npz", npz.to_str().unwrap(), "--positive-classes", "mel", "--backend", "cpu", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success(), "a second cascade into the same --out was accepted");
    let err = text(&o.stderr);
    assert!(err.contains("--out") && err.contains("cascade.json") && err.contains("--overwrite"), "{err}");
    assert_eq!(std::fs::read(out.join("cascade.json")).unwrap(), before);

    // --resume: a cascade stopped during stage 2 (stage 2's results gone, as if killed before
    // its first checkpoint) reuses stage 1 and trains stage 2 again: the same cascade.json.
    let flags = ["--npz", npz.to_str().unwrap(), "--positive-classes", "mel,bcc,akiec", "--backend", "cpu", "--width", "0.25",
        "--output-stride", "8", "--epochs", "2", "--batch-size", "8", "--lr", "0.003", "--out", out.to_str().unwrap(), "--resume"];
    for f in ["report.json", "model.bpk", "predictions.csv"] {
        std::fs::remove_file(out.join("stage2").join(f)).unwrap();
    }
    std::fs::remove_file(out.join("cascade.json")).unwrap();
    // Without --resume the interrupted cascade is named as such, with the way to continue it
    // (not only --overwrite, which would throw stage 1 away).
    let o = derma_cascade(&flags[..flags.len() - 1]);
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains("interrupted cascade") && err.contains("--resume"), "{err}");
    let stage1_model = std::fs::read(out.join("stage1/model.bpk")).unwrap();
    let o = derma_cascade(&flags);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("stage 1: finished in") && text(&o.stdout).contains("reused"), "{}", text(&o.stdout));
    assert_eq!(std::fs::read(out.join("stage1/model.bpk")).unwrap(), stage1_model, "stage 1 was retrained");
    assert_eq!(std::fs::read(out.join("cascade.json")).unwrap(), before, "the resumed cascade differs");
    // Other settings than the stages were trained with: refused, naming the stage folder.
    let mut other = flags.to_vec();
    other[11] = "3"; // --epochs
    assert_eq!(flags[10], "--epochs");
    let o = derma_cascade(&other);
    assert!(!o.status.success() && text(&o.stderr).contains("stage1") && text(&o.stderr).contains("epochs: 2 there, 3 now"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(out.join("cascade.json")).unwrap(), before, "a refused --resume touched the finished cascade");
    // Another backend name is no other setting (as derma-train --resume --backend); both stages reused.
    let mut auto = flags.to_vec();
    auto[5] = "auto";
    assert_eq!(flags[4], "--backend");
    let o = derma_cascade(&auto);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("stage 2: finished in"), "{}", text(&o.stdout));
    assert_eq!(std::fs::read(out.join("cascade.json")).unwrap(), before);
    let o = derma_cascade(&["--npz", npz.to_str().unwrap(), "--positive-classes", "mel", "--resume", "--out", dir.path().join("none").to_str().unwrap()]);
    assert!(!o.status.success() && text(&o.stderr).contains("holds no cascade stage 1"), "{}", text(&o.stderr));
}

#[test]
fn cascade_refuses_a_multi_class_task_and_bad_stage_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    let o = derma_cascade(&["--npz", "nothing.npz", "--backend", "cpu", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("binary task"), "{}", text(&o.stderr));
    let o = derma_cascade(&["--npz", "x.npz", "--positive-classes", "mel", "--stage2", "gama=2", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = text(&o.stderr);
    assert!(e.contains("stage 2") && e.contains("gama"), "{e}");
    let o = derma_cascade(&["--npz", "x.npz", "--positive-classes", "mel", "--stage1", "positive_classes=[\"bcc\"]", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("must not change the data"), "{}", text(&o.stderr));
    // Per-class lists must fit the two classes of the task before stage 1 trains (before the
    // check, stage 2's `fit` refused them only after stage 1 had trained to the end).
    for (stage, key, words) in [
        ("--stage2", "alpha=[0.25, 0.5, 0.75]", "--alpha lists 3 values but there are 2 classes"),
        ("--stage2", "class_weights=[1.0, 0.0]", "--class-weights must all be > 0"),
        ("--stage1", "class_weights=[1.0, 2.0, 3.0]", "--class-weights lists 3 values but there are 2 classes"),
    ] {
        let o = derma_cascade(&["--npz", "x.npz", "--positive-classes", "mel", stage, key, "--out", out.to_str().unwrap()]);
        let e = text(&o.stderr);
        assert!(!o.status.success() && e.contains(&format!("stage {}", &stage[7..])) && e.contains(words), "{key}: {e}");
    }
    // A refused value from --config names the file; set again on the command line, it does not.
    let config = dir.path().join("mine.toml");
    std::fs::write(&config, "lr = -0.5\n").unwrap();
    let base = ["--npz", "x.npz", "--positive-classes", "mel", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let o = derma_cascade(&base);
    let e = text(&o.stderr);
    assert!(!o.status.success() && e.contains("--lr must be > 0, got -0.5 (the value of `lr` in --config") && e.contains("mine.toml"), "{e}");
    let o = derma_cascade(&[&base[..], &["--set", "lr=-2.0"]].concat());
    let e = text(&o.stderr);
    assert!(!o.status.success() && e.contains("--lr must be > 0, got -2") && !e.contains("mine.toml"), "{e}");
    // An augmentation knob of the file's [augment_knobs]; a --set of that table replaces it.
    std::fs::write(&config, "[augment_knobs]\nhflip = 1.5\n").unwrap();
    let o = derma_cascade(&base);
    let e = text(&o.stderr);
    assert!(!o.status.success() && e.contains("(the value of `augment_knobs.hflip` in --config") && e.contains("mine.toml"), "{e}");
    let o = derma_cascade(&[&base[..], &["--set", "augment_knobs={ hflip = 2.0 }"]].concat());
    let e = text(&o.stderr);
    assert!(!o.status.success() && e.contains("--hflip (augment_knobs.hflip) must be in [0, 1], got 2") && !e.contains("mine.toml"), "{e}");
    assert!(!out.exists(), "nothing is written before the checks pass");
}
