//! End-to-end tests of the `derma-train` binary on the CPU backend.

mod common;
use common::{colour_run_dir, colour_split, derma_predict, derma_train, text};





/// The whole job on a tiny dataset: it must really learn (test AUC > 0.9; chance is 0.5) and
/// leave every file of the run folder.
#[test]
fn trains_and_writes_the_run_folder() {
    let (_dir, npz, out) = colour_run_dir();
    let o = derma_train(&[
        "--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8",
        "--epochs", "6", "--batch-size", "10", "--lr", "0.003", "--out", out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));

    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let auc = report["test"]["auc_macro"].as_f64().unwrap();
    assert!(auc > 0.9, "test AUC {auc} — the model did not learn the colour signal");
    let best = report["best_epoch"].as_u64().unwrap();
    assert!((1..=6).contains(&best));
    let cm = report["test"]["confusion_matrix"].as_array().unwrap();
    assert_eq!(cm.len(), 7);
    let total: u64 = cm.iter().flat_map(|r| r.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 56);
    assert_eq!(report["test"]["per_class"].as_array().unwrap().len(), 7);

    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("batch_norm = \"fused\"") && config.contains("depthwise = \"kernels\"") && config.contains("pointwise = \"burn\""), "{config}");
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let mut lines = metrics.lines();
    assert!(lines.next().unwrap().starts_with("epoch,train_loss,val_loss,val_acc,val_bal_acc,val_auc,lr,seconds"));
    assert_eq!(lines.count(), 6);

    let preds = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    let mut lines = preds.lines();
    assert_eq!(lines.next().unwrap(), "split,index,label,prob_0,prob_1,prob_2,prob_3,prob_4,prob_5,prob_6");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 56 + 56);
    for row in &rows {
        let probs: f64 = row.split(',').skip(3).map(|p| p.parse::<f64>().unwrap()).sum();
        assert!((probs - 1.0).abs() < 1e-4, "probabilities of `{row}` sum to {probs}");
    }

    // derma-predict on the same test images, from the .npz and from PNG files, agrees with
    // the run's own predictions.csv.
    let expected: Vec<Vec<f64>> = rows
        .iter()
        .filter(|r| r.starts_with("test,"))
        .map(|r| r.split(',').skip(3).map(|p| p.parse().unwrap()).collect())
        .collect();
    let close = |got: &[f64], want: &[f64], what: &str| {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{what}: {got:?} vs {want:?}");
        }
    };
    let csv = out.join("predict-npz.csv");
    let o = derma_predict(&["--run", out.to_str().unwrap(), "--input", npz.to_str().unwrap(), "--split", "test",
        "--out", csv.to_str().unwrap(), "--backend", "cpu"]);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    let pred = std::fs::read_to_string(&csv).unwrap();
    let mut lines = pred.lines();
    assert_eq!(lines.next().unwrap(), "path_or_index,label,prob_akiec,prob_bcc,prob_bkl,prob_df,prob_mel,prob_nv,prob_vasc,decision");
    let pred_rows: Vec<&str> = lines.collect();
    assert_eq!(pred_rows.len(), 56);
    for (row, want) in pred_rows.iter().zip(&expected) {
        let f: Vec<&str> = row.split(',').collect();
        let probs: Vec<f64> = f[2..9].iter().map(|p| p.parse().unwrap()).collect();
        close(&probs, want, row);
        let argmax = (0..7).max_by(|&a, &b| probs[a].total_cmp(&probs[b])).unwrap();
        assert_eq!(f[9], ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"][argmax], "{row}");
    }
    let test_split = colour_split(8, 3);
    let pngs = out.join("pngs");
    std::fs::create_dir_all(&pngs).unwrap();
    for i in 0..test_split.len {
        let img = &test_split.images[i * 28 * 28 * 3..(i + 1) * 28 * 28 * 3];
        image::save_buffer(pngs.join(format!("img{i:03}.png")), img, 28, 28, image::ExtendedColorType::Rgb8).unwrap();
    }
    let csv = out.join("predict-png.csv");
    let cams = out.join("cams");
    // Overlays of the first image under every class, and under a class name this run does not
    // have, as an earlier run (another model, threshold or class names) could have left: all
    // but this run's decision are removed. PNGs of no image of this call stay.
    std::fs::create_dir_all(&cams).unwrap();
    for class in ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc", "Melanoma"] {
        std::fs::write(cams.join(format!("00000-img000-{class}.png")), b"stale").unwrap();
    }
    for other in ["99999-img999-bcc.png", "00000-img000.png", "notes.png"] {
        std::fs::write(cams.join(other), b"kept").unwrap();
    }
    let o = derma_predict(&["--run", out.to_str().unwrap(), "--input", pngs.to_str().unwrap(), "--out", csv.to_str().unwrap(),
        "--backend", "cpu", "--gradcam", cams.to_str().unwrap()]);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    let pred = std::fs::read_to_string(&csv).unwrap();
    let pred_rows: Vec<&str> = pred.lines().skip(1).collect();
    assert_eq!(pred_rows.len(), 56);
    for (row, want) in pred_rows.iter().zip(&expected) {
        assert!(row.contains("img"), "{row}");
        let probs: Vec<f64> = row.split(',').skip(1).take(7).map(|p| p.parse().unwrap()).collect();
        close(&probs, want, row);
    }
    for other in ["99999-img999-bcc.png", "00000-img000.png", "notes.png"] {
        assert_eq!(std::fs::read(cams.join(other)).unwrap(), b"kept", "{other}");
        std::fs::remove_file(cams.join(other)).unwrap();
    }
    let overlays: Vec<_> = std::fs::read_dir(&cams).unwrap().collect();
    assert_eq!(overlays.len(), 56);
    let first_image: Vec<_> =
        overlays.iter().map(|e| e.as_ref().unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("00000-img000-")).collect();
    assert_eq!(first_image.len(), 1, "{first_image:?}");
    assert!(std::fs::read(cams.join(&first_image[0])).unwrap().starts_with(b"\x89PNG"), "this run's overlay");
    let first = overlays[0].as_ref().unwrap().path();
    assert_eq!(image::image_dimensions(&first).unwrap(), (224, 224), "{}", first.display());
    let o = derma_predict(&["--run", out.to_str().unwrap(), "--input", out.join("missing.png").to_str().unwrap(),
        "--out", csv.to_str().unwrap(), "--backend", "cpu"]);
    assert!(!o.status.success() && text(&o.stderr).contains("missing.png"), "{}", text(&o.stderr));
    // The same images as 16-bit PNGs (v * 257): a MedMNIST run applies no intensity window
    // (its config's file-dataset default would stretch each image's contrast), so the
    // probabilities are the same.
    let pngs16 = out.join("pngs16");
    std::fs::create_dir_all(&pngs16).unwrap();
    for i in 0..test_split.len {
        let img: Vec<u16> = test_split.images[i * 28 * 28 * 3..(i + 1) * 28 * 28 * 3].iter().map(|&v| v as u16 * 257).collect();
        image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(28, 28, img).unwrap().save(pngs16.join(format!("img{i:03}.png"))).unwrap();
    }
    let o = derma_predict(&["--run", out.to_str().unwrap(), "--input", pngs16.to_str().unwrap(), "--out", csv.to_str().unwrap(), "--backend", "cpu"]);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    let pred = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(pred.lines().skip(1).count(), expected.len());
    for (row, want) in pred.lines().skip(1).zip(&expected) {
        let probs: Vec<f64> = row.split(',').skip(1).take(7).map(|p| p.parse().unwrap()).collect();
        close(&probs, want, row);
    }
    // Two unreadable files: the first by name is reported, with the count.
    std::fs::write(pngs16.join("a_bad.png"), b"not a png").unwrap();
    std::fs::write(pngs16.join("z_bad.png"), b"not a png").unwrap();
    let o = derma_predict(&["--run", out.to_str().unwrap(), "--input", pngs16.to_str().unwrap(), "--out", csv.to_str().unwrap(), "--backend", "cpu"]);
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains("2 of 58 input images") && err.contains("a_bad.png") && !err.contains("z_bad.png"), "{err}");
    // Output paths are checked before the model runs; --split needs an .npz.
    for (args, want) in [
        (vec!["--out", out.to_str().unwrap()], "is a folder; expected the path of the CSV file"),
        (vec!["--out", csv.to_str().unwrap(), "--gradcam", csv.to_str().unwrap()], "--gradcam"),
        (vec!["--out", out.join("p2").to_str().unwrap(), "--gradcam", out.join("p2").to_str().unwrap()], "name the same path"),
        (vec!["--out", csv.to_str().unwrap(), "--split", "val"], "--split val applies to an .npz input"),
        // Never one of the run's own files, or an input.
        (vec!["--out", out.join("predictions.csv").to_str().unwrap()], "would replace the run's own predictions.csv"),
        (vec!["--out", out.join("model.bpk").to_str().unwrap()], "would replace the run's own model.bpk"),
        (vec!["--out", out.join("plots").join("roc.csv").to_str().unwrap()], "would replace the run's own plots"),
        (vec!["--out", pngs.join("img000.png").to_str().unwrap()], "is one of the --input files"),
    ] {
        let o = derma_predict(&[&["--run", out.to_str().unwrap(), "--input", pngs.to_str().unwrap(), "--backend", "cpu"][..], &args].concat());
        assert!(!o.status.success() && text(&o.stderr).contains(want), "{args:?}: {}", text(&o.stderr));
    }
    // derma-train's --out naming a file.
    let o = derma_train(&["--npz", npz.to_str().unwrap(), "--backend", "cpu", "--out", csv.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o.stderr).contains("is a file; expected a folder"), "{}", text(&o.stderr));
    std::fs::remove_dir_all(&pngs).unwrap();
    std::fs::remove_dir_all(&pngs16).unwrap();
    std::fs::remove_dir_all(&cams).unwrap();

    // the report pages (derma-report) come with every run
    for f in ["report.md", "report.html", "plots/curves.png", "plots/roc.png", "plots/pr.png", "plots/confusion.png", "plots/recall.png"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("plots/confusion.png") && md.contains("akiec"), "{md}");
    // The report's own cross-check of what the run wrote (report.json against predictions.csv,
    // metrics.csv) finds nothing: the writer's and the reader's formats agree.
    assert!(!["disagree", "differs from report.json", "differ from report.json"].iter().any(|n| md.contains(n)), "{md}");
    assert_eq!(image::image_dimensions(out.join("plots/recall.png")).unwrap(), (900, 600));

    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("epochs = 6") && config.contains("width = 0.25"), "{config}");
    assert!(out.join("model.bpk").metadata().unwrap().len() > 100_000);
    // atomic writes leave no temporary file behind
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(!name.starts_with('.') && !name.ends_with(".tmp"), "left over: {name}");
    }

    // the same --out again: refused before any work, the finished run untouched; with
    // --overwrite the new run replaces it
    let report_before = std::fs::read(out.join("report.json")).unwrap();
    let again = |extra: &[&str]| {
        let mut args = vec!["--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8",
            "--epochs", "1", "--batch-size", "10", "--out", out.to_str().unwrap()];
        args.extend(extra);
        derma_train(&args)
    };
    let o = again(&[]);
    assert!(!o.status.success(), "a second run into the same --out was accepted");
    let err = text(&o.stderr);
    assert!(err.contains("--out") && err.contains("config.toml") && err.contains("--overwrite"), "{err}");
    assert_eq!(std::fs::read(out.join("report.json")).unwrap(), report_before, "the refused run touched report.json");
    assert!(std::fs::read_to_string(out.join("config.toml")).unwrap().contains("epochs = 6"));
    let o = again(&["--overwrite"]);
    assert!(o.status.success(), "--overwrite: {}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(out.join("metrics.csv")).unwrap().lines().count(), 2, "one epoch after --overwrite");
}

/// Starts derma-train with `args` and kills it (SIGKILL) as soon as `out` holds a checkpoint
/// of epoch `epoch` or later.
fn kill_after_checkpoint(args: &[String], out: &std::path::Path, epoch: u64) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_derma-train"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let reached = || {
        std::fs::read_to_string(out.join("checkpoint/state.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["epoch"].as_u64().is_some_and(|e| e >= epoch))
    };
    while !reached() {
        assert!(child.try_wait().unwrap().is_none(), "derma-train exited before the checkpoint of epoch {epoch}");
        assert!(started.elapsed().as_secs() < 300, "no epoch finished in 300 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A copy of the folder `from` (files and sub-folders) at `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// `metrics.csv` of `run` without its timing columns (`seconds`, `images_per_second`).
fn without_timings(run: &std::path::Path) -> Vec<String> {
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    csv.lines().map(|l| l.split(',').enumerate().filter(|(i, _)| *i != 7 && *i != 8).map(|(_, f)| f).collect::<Vec<_>>().join(",")).collect()
}

/// A run stopped hard after an epoch (SIGKILL: a lost machine, a killed job) keeps its best
/// model so far and a checkpoint, and `--resume` finishes it. Data order, augmentation and
/// dropout (0.2 here) are seeded per epoch, so the resumed run is the uninterrupted one
/// exactly: same metrics every epoch, same test report — so the model, AdamW's moments,
/// batch-norm statistics, the step, the best epoch and its weights all came back. Killed after
/// epoch 3 or later, so the best epoch may lie before the checkpoint's (its `best-K.bpk`).
#[test]
fn a_killed_run_resumes_to_the_uninterrupted_result() {
    let (dir, npz, out) = colour_run_dir();
    let flags = |out: &std::path::Path| -> Vec<String> {
        ["--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8", "--epochs", "6",
            "--batch-size", "10", "--lr", "0.003", "--out", out.to_str().unwrap()]
        .map(String::from)
        .to_vec()
    };
    let whole = dir.path().join("whole");
    let o = derma_train(&flags(&whole).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));

    kill_after_checkpoint(&flags(&out), &out, 3);
    assert!(!out.join("report.json").exists(), "the run finished before it was killed");
    let model = out.join("model.bpk").metadata().expect("model.bpk of the best epoch so far");
    assert!(model.len() > 100_000, "model.bpk is {} bytes", model.len());
    // A later epoch may have rewritten model.bpk before its checkpoint was complete: the
    // checkpoint keeps its own copy of the best weights, and the resume restores model.bpk.
    std::fs::write(out.join("model.bpk"), b"overwritten by an epoch that did not finish").unwrap();

    // A checkpoint marked `stopped` (the last epoch's, or an early stop's: the run was killed
    // during its final evaluation) resumes to that evaluation alone, from the best weights.
    let ended = dir.path().join("ended");
    copy_dir(&out, &ended);
    let state_path = ended.join("checkpoint/state.json");
    let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let (done, best) = (state["epoch"].as_u64().unwrap(), state["best_epoch"].as_u64().unwrap());
    state["stopped"] = serde_json::Value::Bool(true);
    std::fs::write(&state_path, state.to_string()).unwrap();
    // A removal of the checkpoint cut short after the epoch files (listing order): the final
    // evaluation needs only the best weights.
    for what in ["model", "optimizer"] {
        std::fs::remove_file(ended.join(format!("checkpoint/epoch-{done}-{what}.bpk"))).unwrap();
    }
    let o = derma_train(&["--resume", ended.to_str().unwrap(), "--backend", "cpu"]);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("training had ended") && !text(&o.stdout).contains("epoch   4/6"), "{}", text(&o.stdout));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(ended.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["best_epoch"].as_u64(), Some(best));
    assert_eq!(without_timings(&ended).len() as u64, 1 + done);
    assert!(!ended.join("checkpoint").exists());

    // A checkpoint marked diverged: refused where the steps would repeat (the same backend and
    // effective step: on the CPU `--step eager` changes nothing), with the way out; continued
    // where they run otherwise (it diverged on a GPU's captured step, resumed on the CPU).
    let marked = dir.path().join("marked");
    copy_dir(&out, &marked);
    let state_path = marked.join("checkpoint/state.json");
    let mark = |on: &str| {
        let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
        state["diverged"] = serde_json::Value::String("training diverged at epoch 4 (loss NaN); lower --lr".into());
        state["diverged_on"] = serde_json::Value::String(on.into());
        std::fs::write(&state_path, state.to_string()).unwrap();
    };
    mark(&::derma_train::checkpoint::run_signature("cpu (flex)", false));
    for extra in [&[][..], &["--step", "eager"][..]] {
        let o = derma_train(&[&["--resume", marked.to_str().unwrap(), "--backend", "cpu"][..], extra].concat());
        let err = text(&o.stderr);
        assert!(!o.status.success() && err.contains("diverge again") && err.contains("--step eager"), "{extra:?}: {err}");
    }
    mark(&::derma_train::checkpoint::run_signature("wgpu", true));
    let o = derma_train(&["--resume", marked.to_str().unwrap(), "--backend", "cpu"]);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    assert!(marked.join("report.json").is_file() && !marked.join("checkpoint").exists());

    // derma-predict and the same --out again point to --resume.
    let o = derma_predict(&["--run", out.to_str().unwrap(), "--input", npz.to_str().unwrap(), "--out", dir.path().join("p.csv").to_str().unwrap()]);
    assert!(!o.status.success() && text(&o.stderr).contains("--resume"), "{}", text(&o.stderr));
    let o = derma_train(&flags(&out).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success() && text(&o.stderr).contains(&format!("--resume {}", out.display())), "{}", text(&o.stderr));
    // Only --backend and --step may come with --resume.
    let o = derma_train(&["--resume", out.to_str().unwrap(), "--epochs", "9"]);
    assert!(!o.status.success() && text(&o.stderr).contains("only --backend"), "{}", text(&o.stderr));
    // Also a flag at its built-in default (seed 0, 10 epochs): it would be silently ignored.
    let o = derma_train(&["--resume", out.to_str().unwrap(), "--seed", "0", "--epochs", "10"]);
    assert!(!o.status.success() && text(&o.stderr).contains("--seed") && text(&o.stderr).contains("--epochs"), "{}", text(&o.stderr));
    let o = derma_train(&["--resume", dir.path().join("nothing").to_str().unwrap()]);
    assert!(!o.status.success() && text(&o.stderr).contains("no config.toml"), "{}", text(&o.stderr));
    // Other data behind the same --npz path: refused (the checkpoint records its data's hash).
    let original = std::fs::read(&npz).unwrap();
    let other = medmnist::MedMnistArrays { train: colour_split(20, 11), val: colour_split(8, 12), test: colour_split(8, 13) };
    medmnist::write_npz(&npz, &other).unwrap();
    let o = derma_train(&["--resume", out.to_str().unwrap(), "--backend", "cpu"]);
    assert!(!o.status.success() && text(&o.stderr).contains("the data differ from those the checkpoint was trained on"), "{}", text(&o.stderr));
    std::fs::write(&npz, original).unwrap();
    // --step may come with --resume too (how the step runs, e.g. eager after a failed capture).
    // Given relative to the working directory, the folder is still recorded absolute.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_derma-train"))
        .current_dir(out.parent().unwrap())
        .args(["--resume", out.file_name().unwrap().to_str().unwrap(), "--backend", "cpu", "--step", "eager"])
        .output()
        .unwrap();
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("resuming after epoch"), "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("training step: eager (--step eager)"), "{}", text(&o.stdout));
    assert!(!out.join("checkpoint").exists(), "a finished run keeps its checkpoint");
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains(&format!("out = {}", toml::Value::String(out.display().to_string()))), "{config}");

    // Every column but the timings, every epoch, and the test report: identical.
    let resumed = without_timings(&out);
    assert_eq!(resumed.len(), 1 + 6);
    assert_eq!(resumed, without_timings(&whole));
    assert_eq!(std::fs::read(out.join("report.json")).unwrap(), std::fs::read(whole.join("report.json")).unwrap());
    assert_eq!(std::fs::read(out.join("predictions.csv")).unwrap(), std::fs::read(whole.join("predictions.csv")).unwrap());

    // Nothing left to resume.
    let o = derma_train(&["--resume", out.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o.stderr).contains("no checkpoint"), "{}", text(&o.stderr));
}

/// The same with everything else a checkpoint carries: hard-example mining's per-image
/// losses, the metric head and its moments, a backbone frozen for the first epochs, a binary
/// task. Killed after epoch 1 (inside the frozen phase), resumed: identical to uninterrupted.
#[test]
fn a_resumed_run_restores_mining_the_metric_head_and_the_freeze_schedule() {
    let (dir, npz, out) = colour_run_dir();
    let flags = |out: &std::path::Path| -> Vec<String> {
        ["--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8", "--epochs", "4",
            "--batch-size", "10", "--lr", "0.003", "--dropout", "0", "--positive-classes", "mel,bcc", "--hard-negative-mining",
            "--metric-weight", "0.5", "--freeze-backbone-epochs", "2", "--threshold", "min-spec:0.8", "--out", out.to_str().unwrap()]
        .map(String::from)
        .to_vec()
    };
    let whole = dir.path().join("whole");
    let o = derma_train(&flags(&whole).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    // Killed as soon as the first checkpoint exists (inside the two frozen epochs).
    kill_after_checkpoint(&flags(&out), &out, 1);
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint/state.json")).unwrap()).unwrap();
    assert!(state["head"].as_bool().unwrap() && state["mining_losses"].as_array().is_some_and(|l| l.len() == 140), "{state}");
    let o = derma_train(&["--resume", out.to_str().unwrap()]);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(without_timings(&out), without_timings(&whole));
    assert_eq!(std::fs::read(out.join("report.json")).unwrap(), std::fs::read(whole.join("report.json")).unwrap());

    // derma-predict on the test split of the binary run: the run's 0/1 labels and
    // probabilities, and, at the threshold read back from report.json, the test counts the
    // run reported.
    let csv = dir.path().join("binary.csv");
    let o = derma_predict(&["--run", out.to_str().unwrap(), "--input", npz.to_str().unwrap(), "--split", "test",
        "--out", csv.to_str().unwrap(), "--backend", "cpu"]);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    let got = std::fs::read_to_string(&csv).unwrap();
    let mut lines = got.lines();
    assert_eq!(lines.next().unwrap(), "path_or_index,label,prob,decision");
    let trained = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    let want: Vec<(String, f64)> = trained
        .lines()
        .filter(|l| l.starts_with("test,"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2].to_string(), f[3].parse().unwrap())
        })
        .collect();
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    assert_eq!(rows.len(), want.len());
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let positive = report["classes"][1].as_str().unwrap().to_string();
    let mut counts = [0u64; 4]; // tp, fp, tn, fn
    for (row, (label, prob)) in rows.iter().zip(&want) {
        assert_eq!(&row[1], label, "{row:?}");
        assert!((row[2].parse::<f64>().unwrap() - prob).abs() < 1e-5, "{row:?} vs {prob}");
        let (flagged, pos) = (row[3] == positive, label == "1");
        counts[match (flagged, pos) { (true, true) => 0, (true, false) => 1, (false, false) => 2, (false, true) => 3 }] += 1;
    }
    let t = &report["threshold"]["test"];
    assert_eq!(counts, [t["tp"].as_u64().unwrap(), t["fp"].as_u64().unwrap(), t["tn"].as_u64().unwrap(), t["fn"].as_u64().unwrap()], "{t}");
    assert!(counts[0] + counts[3] > 0 && counts[1] + counts[2] > 0, "one class only: the check would be vacuous");
}

/// `--patience N` stops N epochs after the best one (by --select-metric), the best model and
/// the report intact. The colour data is learnt within a few epochs (validation AUC 1 or
/// loss flat), so 40 epochs never run.
/// Also runs with `--batch-norm burn`, `--depthwise burn` (Burn's own batch norm and depthwise
/// convolutions, the same arithmetic) and `--pointwise kernels` (derma-model's 1x1 node, which
/// runs Burn's convolution functions on the CPU): the run says so and records them; the default
/// run above records `fused`, `kernels` and `burn`.
#[test]
fn patience_stops_after_epochs_without_improvement() {
    let (_dir, npz, out) = colour_run_dir();
    let o = derma_train(&[
        "--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8",
        "--epochs", "40", "--batch-size", "10", "--lr", "0.003", "--patience", "2", "--out", out.to_str().unwrap(),
        "--batch-norm", "burn", "--depthwise", "burn", "--pointwise", "kernels",
    ]);
    assert!(text(&o.stdout).contains("batch norm: Burn's batch_norm_train (--batch-norm burn)"), "{}", text(&o.stdout));
    assert!(text(&o.stdout).contains("depthwise convolutions: Burn's conv2d and its backward pass (--depthwise burn)"), "{}", text(&o.stdout));
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("batch_norm = \"burn\"") && config.contains("depthwise = \"burn\""), "{config}");
    assert!(text(&o.stdout).contains("1x1 convolutions: derma-model's pointwise kernels (--pointwise kernels)"), "{}", text(&o.stdout));
    assert!(config.contains("pointwise = \"kernels\""), "{config}");
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let best = report["best_epoch"].as_u64().unwrap() as usize;
    let rows = std::fs::read_to_string(out.join("metrics.csv")).unwrap().lines().count() - 1;
    assert_eq!(rows, best + 2, "best epoch {best}, {rows} epochs run");
    assert!(text(&o.stdout).contains(&format!("early stop after epoch {rows}")), "{}", text(&o.stdout));
    assert!(std::fs::read_to_string(out.join("config.toml")).unwrap().contains("patience = 2"));
}

/// `--step captured` on the CPU (no graph capture there: every step eager through the captured
/// step's own code — stable batch, AdamW coefficient table, in-place writes that become
/// replacements) trains exactly as the default step without dropout (the two draw dropout masks
/// differently): the same metrics every epoch. The default (`auto`) is the eager step on the CPU
/// and says so. Killed after its second checkpoint and resumed (AdamW's record with its step
/// count, the step counter), the captured run ends where it would have. It is recorded in
/// config.toml and said on stdout. The same holds with a metric head and hard-negative mining
/// (their training state resumed from the checkpoint too).
#[test]
fn the_captured_step_trains_as_the_eager_step() {
    let (dir, npz, out) = colour_run_dir();
    let flags = |out: &std::path::Path, captured: bool| -> Vec<String> {
        let mut f: Vec<String> = ["--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8",
            "--epochs", "4", "--batch-size", "10", "--lr", "0.003", "--dropout", "0", "--out", out.to_str().unwrap()]
        .map(String::from)
        .to_vec();
        if captured {
            f.extend(["--step".into(), "captured".into()]);
        }
        f
    };
    let run = |f: Vec<String>| derma_train(&f.iter().map(String::as_str).collect::<Vec<_>>());
    let eager = dir.path().join("eager");
    let o = run(flags(&eager, false));
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("training step: eager (--step auto: no graph capture on the CPU backend)"), "{}", text(&o.stdout));
    let o = run(flags(&out, true));
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("training step: captured as a graph after 3 eager steps and replayed (--step captured)"), "{stdout}");
    assert!(stdout.contains("training step: not captured, every step eager: no graph capture on this backend"), "{stdout}");
    assert!(std::fs::read_to_string(out.join("config.toml")).unwrap().contains("step = \"captured\""));
    assert_eq!(without_timings(&out), without_timings(&eager));
    assert_eq!(without_timings(&out).len(), 5);

    let killed = dir.path().join("killed");
    kill_after_checkpoint(&flags(&killed, true), &killed, 2);
    let o = derma_train(&["--resume", killed.to_str().unwrap(), "--backend", "cpu"]);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    assert_eq!(without_timings(&killed), without_timings(&out));

    // A binary task with a metric head and hard-negative mining: the captured step's code (on
    // the CPU every step eager through it) trains as the eager step, and a run resumed after
    // epoch 2 (the head, its AdamW state and the mining losses from the checkpoint) ends as the
    // uninterrupted one.
    let with_head = |out: &std::path::Path, captured: bool| -> Vec<String> {
        let mut f = flags(out, captured);
        let epochs = f.iter().position(|a| a == "--epochs").expect("an --epochs flag") + 1;
        f[epochs] = "3".into();
        f.extend(["--positive-classes", "mel", "--metric-weight", "0.5", "--hard-negative-mining"].map(String::from));
        f
    };
    let (eager, captured) = (dir.path().join("head-eager"), dir.path().join("head-captured"));
    for (out, on) in [(&eager, false), (&captured, true)] {
        let o = run(with_head(out, on));
        assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
        let stdout = text(&o.stdout);
        assert!(stdout.contains("triplet ") && stdout.contains("mining: 24 of 120 negatives up-weighted for epoch 3"), "{stdout}");
    }
    assert_eq!(without_timings(&captured), without_timings(&eager));
    assert_eq!(without_timings(&captured).len(), 4);
    let killed = dir.path().join("head-killed");
    kill_after_checkpoint(&with_head(&killed, true), &killed, 2);
    let o = derma_train(&["--resume", killed.to_str().unwrap(), "--backend", "cpu"]);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    assert_eq!(without_timings(&killed), without_timings(&captured));

    let o = derma_train(&["--npz", npz.to_str().unwrap(), "--backend", "cpu", "--step", "replayed"]);
    assert!(!o.status.success() && text(&o.stderr).contains("expected auto, eager or captured"), "{}", text(&o.stderr));
}

/// A learning rate that blows the weights up within the epoch, while the epoch's mean training
/// loss is still finite: the validation outputs are NaN, and the run ends as diverged (what a
/// sweep scores NaN and goes on from), not with a metrics error about a NaN prediction.
#[test]
fn blown_up_weights_with_a_finite_training_loss_are_divergence() {
    let (_dir, npz, out) = colour_run_dir();
    let mut hit = Vec::new();
    for lr in ["1e5", "1e6", "3e6", "1e7"] {
        let _ = std::fs::remove_dir_all(&out);
        let o = derma_train(&[
            "--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8",
            "--epochs", "2", "--batch-size", "10", "--warmup-epochs", "0", "--lr", lr, "--out", out.to_str().unwrap(),
        ]);
        let err = text(&o.stderr);
        assert!(!err.contains("is NaN") || err.contains("training diverged"), "lr {lr}: a NaN prediction that is no divergence:\n{err}");
        if err.contains("validation outputs are NaN or infinite") {
            hit.push(lr);
        }
    }
    assert!(!hit.is_empty(), "no learning rate reached the finite-loss, NaN-output case: the test checks nothing");
}

/// Paths given relative to the current directory are stored absolute in the run's
/// config.toml, so `--resume DIR` (and derma-predict) work from any other directory.
#[test]
fn relative_paths_are_stored_absolute() {
    let (dir, npz, _) = colour_run_dir();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_derma-train"))
        .current_dir(dir.path())
        .args(["--npz", npz.file_name().unwrap().to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--epochs", "1",
            "--batch-size", "10", "--out", "rel-run"])
        .output()
        .unwrap();
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    let config = std::fs::read_to_string(dir.path().join("rel-run/config.toml")).unwrap();
    let want = |p: &std::path::Path| format!("{}", toml::Value::String(p.display().to_string()));
    assert!(config.contains(&format!("npz = {}", want(&npz))), "{config}");
    assert!(config.contains(&format!("out = {}", want(&dir.path().join("rel-run")))), "{config}");
}

/// Invalid values are refused before any work, naming the flag.
#[test]
fn invalid_flags_are_refused_with_the_flag_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    for (args, flag) in [
        (vec!["--gamma", "-1"], "--gamma"),
        (vec!["--alpha", "1.5"], "--alpha"),
        (vec!["--alpha", "0.25,1.5,0.5,0.5,0.5,0.5,0.5"], "--alpha values must be in [0, 1], got [0.25, 1.5"),
        (vec!["--epochs", "0"], "--epochs"),
        (vec!["--size", "32"], "--size"),
        (vec!["--threshold", "min-spec:2"], "--threshold"),
        (vec!["--calibrate", "isotonic"], "--calibrate"),
        (vec!["--class-weights", "heavy"], "--class-weights"),
        (vec!["--sampler", "magic"], "--sampler"),
        (vec!["--select-metric", "f2"], "--select-metric"),
        (vec!["--mining-fraction", "1.5"], "--mining-fraction"),
        (vec!["--mining-fraction", "0"], "--mining-fraction"),
        (vec!["--mining-strength", "-1"], "--mining-strength"),
        (vec!["--metric-weight", "-1"], "--metric-weight"),
        (vec!["--triplet-margin", "0"], "--triplet-margin"),
        (vec!["--adam-epsilon", "0"], "--adam-epsilon must be in [1e-12, 1], got 0"),
        (vec!["--adam-epsilon", "1e-30"], "--adam-epsilon must be in [1e-12, 1], got 0.000000000000000000000000000001"),
        (vec!["--adam-epsilon", "2"], "--adam-epsilon must be in [1e-12, 1], got 2"),
        (vec!["--embedding-dim", "0"], "--embedding-dim"),
        (vec!["--in-channels", "2"], "--in-channels"),
        (vec!["--batch-norm", "cudnn"], "--batch-norm"),
        (vec!["--rotation", "200"], "--rotation (augment_knobs.rotation) must be"),
        (vec!["--zoom", "2,1"], "--zoom (augment_knobs.zoom) must be [min, max] with 0 < min <= max (finite)"),
        (vec!["--crop-scale", "0.5,1.5"], "--crop-scale (augment_knobs.crop_scale)"),
        (vec!["--batch-size", "1"], "--batch-size must be at least 2"),
        (vec!["--data-dir", "/"], "--data-dir is for image-file datasets"),
        (vec!["--positive-classes", "mel,mel"], "--positive-classes lists `mel` twice"),
        (vec!["--split-fractions", "0.5,0.5,0.5", "--dataset", "folder", "--data-dir", "/"], "--split-fractions"),
    ] {
        let mut all = args.clone();
        all.extend(["--out", out.to_str().unwrap(), "--backend", "cpu"]);
        let o = derma_train(&all);
        assert!(!o.status.success(), "{args:?} was accepted");
        let err = text(&o.stderr);
        assert!(err.contains(flag), "{args:?}: error does not name {flag}: {err}");
        assert!(!out.exists(), "{args:?}: work started before validation");
    }
    let o = derma_train(&["--loss", "hinge"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("--loss"), "{}", text(&o.stderr));
}

/// Offline without the file: a clear error with the URL and where to put the file.
#[test]
fn offline_without_data_explains_what_to_download() {
    let dir = tempfile::tempdir().unwrap();
    let o = derma_train(&[
        "--offline", "--data-root", dir.path().to_str().unwrap(), "--backend", "cpu",
        "--out", dir.path().join("run").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("https://zenodo.org/records/10519652/files/dermamnist.npz"), "{err}");
    assert!(err.contains("0744692d530f8e62ec473284d019b0c7"), "{err}");
    assert!(err.contains(&dir.path().join("dermamnist.npz").display().to_string()), "{err}");
    assert!(!dir.path().join("run").exists(), "a failed start leaves no run folder");
}

/// An `.npz` whose resolution is not `--size` is refused without `--image-size` (it would be
/// resampled silently).
#[test]
fn npz_of_another_resolution_than_size_is_refused() {
    let (dir, npz, out) = colour_run_dir();
    let o = derma_train(&["--npz", npz.to_str().unwrap(), "--size", "64", "--backend", "cpu", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("28x28") && err.contains("--size 28") && err.contains("colours.npz"), "{err}");
    assert!(!out.exists(), "a failed start leaves no run folder");
    // Nor advice to resume a run that never started: not after a data check, nor after weights
    // of another width (refused once the data are loaded, before config.toml is written).
    assert!(!text(&o.stdout).contains("--resume"), "{}", text(&o.stdout));
    let weights = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/mobilenet_v2_w025.pth");
    let o = derma_train(&["--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.5", "--pretrained", weights, "--out", out.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o.stderr).contains("--pretrained"), "{}", text(&o.stderr));
    assert!(!text(&o.stdout).contains("--resume") && !out.join("config.toml").exists(), "{}", text(&o.stdout));
    // A split without images, or without a class, names the file too.
    let gappy = dir.path().join("gappy.npz");
    let mut val = colour_split(1, 2);
    val.labels.iter_mut().for_each(|l| *l = 0);
    let arrays = medmnist::MedMnistArrays { train: colour_split(4, 1), val, test: colour_split(1, 3) };
    medmnist::write_npz(&gappy, &arrays).unwrap();
    let o = derma_train(&["--npz", gappy.to_str().unwrap(), "--backend", "cpu", "--out", out.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains("the val split of dermamnist (") && err.contains("gappy.npz) has no `bcc` image"), "{err}");
    drop(dir);
}

/// Binary screening view: one sigmoid logit, threshold chosen on validation under a
/// specificity floor and reported on test, with the screening columns and files.
#[test]
fn binary_screening_run_reports_the_validation_threshold() {
    let (_dir, npz, out) = colour_run_dir();
    let o = derma_train(&[
        "--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8",
        "--epochs", "3", "--batch-size", "10", "--lr", "0.003", "--positive-classes", "mel,bcc,0",
        "--loss", "focal", "--gamma", "2", "--threshold", "min-spec:0.8", "--select-metric", "sens@spec",
        "--out", out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let th = &report["threshold"];
    assert_eq!(th["rule"], "min-spec:0.8");
    let value = th["value"].as_f64().unwrap();
    // the rule's constraint holds on validation whenever it is reported as met
    if th["met"].as_bool().unwrap() {
        assert!(th["val"]["specificity"].as_f64().unwrap() >= 0.8);
    }
    for key in ["sensitivity", "specificity", "precision", "f2", "tp", "fp", "tn", "fn"] {
        assert!(th["test"][key].is_number(), "test.{key} missing");
    }
    // 3 positive classes × 8 test images each
    let t = &th["test"];
    assert_eq!(t["tp"].as_u64().unwrap() + t["fn"].as_u64().unwrap(), 24);
    assert_eq!(t["tn"].as_u64().unwrap() + t["fp"].as_u64().unwrap(), 32);
    assert!(report["test"]["auc"].is_number() && report["test"]["ap"].is_number());

    // predictions.csv: split,index,label,prob; the decision at `value` reproduces the test counts
    let preds = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
    let mut lines = preds.lines();
    assert_eq!(lines.next().unwrap(), "split,index,label,prob");
    let (mut tp, mut fp) = (0, 0);
    for row in lines.filter(|l| l.starts_with("test,")) {
        let f: Vec<&str> = row.split(',').collect();
        let (label, prob): (u8, f64) = (f[2].parse().unwrap(), f[3].parse().unwrap());
        assert!(label <= 1);
        if prob >= value {
            if label == 1 { tp += 1 } else { fp += 1 }
        }
    }
    assert_eq!((tp, fp), (t["tp"].as_u64().unwrap(), t["fp"].as_u64().unwrap()));
    // 95 % intervals: Wilson from these counts (derma-eval's, checked against scipy there) and
    // DeLong's around the test AUC.
    let n = |k: &str| t[k].as_u64().unwrap();
    for (key, k, total) in [("sensitivity", n("tp"), n("tp") + n("fn")), ("specificity", n("tn"), n("tn") + n("fp"))] {
        let (lo, hi) = derma_eval::wilson95(k, total).unwrap();
        assert_eq!(t["ci95"][key], serde_json::json!([lo, hi]), "test.ci95.{key}");
        assert!(lo <= t[key].as_f64().unwrap() && t[key].as_f64().unwrap() <= hi);
    }
    let (auc, ci) = (report["test"]["auc"].as_f64().unwrap(), &report["test"]["auc_ci95"]);
    assert!(ci[0].as_f64().unwrap() < auc && auc < ci[1].as_f64().unwrap(), "{ci} around {auc}");
    // ... and the decision at 0.5 the `test_at_0.5` counts (the fixed threshold beside the rule's)
    let half = &th["test_at_0.5"];
    // (label, prob) of one split's rows.
    let split_rows = |split: &str| -> Vec<(u8, f64)> {
        preds
            .lines()
            .filter(|l| l.starts_with(&format!("{split},")))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[2].parse().unwrap(), f[3].parse().unwrap())
            })
            .collect()
    };
    let test_rows = split_rows("test");
    let count = |label: u8, flagged: bool| test_rows.iter().filter(|&&(l, p)| l == label && (p >= 0.5) == flagged).count() as u64;
    assert_eq!(
        [count(1, true), count(0, true), count(0, false), count(1, false)],
        ["tp", "fp", "tn", "fn"].map(|k| half[k].as_u64().unwrap()),
        "{half}"
    );
    if value != 0.5 {
        assert!(text(&o.stdout).contains("threshold 0.5 (for comparison): test sensitivity"), "{}", text(&o.stdout));
    }
    // The threshold comes from the validation rows alone: min-spec:0.8 recomputed from
    // predictions.csv's val rows — candidates every distinct validation score (and +inf, which
    // flags nothing); among those with specificity ≥ 0.8 the most true positives, ties: more
    // true negatives, then the higher threshold — is `value` (derma-eval's rule, written here
    // independently; scores and value are written in shortest round-trip form: exact).
    let val_rows = split_rows("val");
    let negatives = val_rows.iter().filter(|r| r.0 == 0).count() as f64;
    let mut candidates: Vec<f64> = val_rows.iter().map(|r| r.1).collect();
    candidates.sort_by(|a, b| b.total_cmp(a));
    candidates.dedup();
    let mut best: Option<(f64, usize, usize)> = None;
    for &t in &candidates {
        let tp = val_rows.iter().filter(|&&(l, p)| l == 1 && p >= t).count();
        let tn = val_rows.iter().filter(|&&(l, p)| l == 0 && p < t).count();
        if tn as f64 / negatives >= 0.8 && best.is_none_or(|(_, btp, btn)| (tp, tn) > (btp, btn)) {
            best = Some((t, tp, tn));
        }
    }
    // (This run meets the floor, so the comparison below is made.)
    assert!(best.is_some_and(|b| b.1 > 0), "the floor is not met on this run's validation rows: {th}");
    match best.filter(|b| b.1 > 0) {
        Some((t, _, _)) => {
            assert!(th["met"].as_bool().unwrap());
            assert_eq!(t, value, "the threshold is not the validation rows' min-spec:0.8 choice");
        }
        None => assert!(!th["met"].as_bool().unwrap(), "{th}"),
    }

    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(metrics.lines().next().unwrap().contains("val_sensitivity,val_specificity,val_precision,val_f1,val_f2,val_tp,val_fp,val_tn,val_fn,val_ap"));
    let roc = std::fs::read_to_string(out.join("thresholds.csv")).unwrap();
    assert_eq!(roc.lines().next().unwrap(), "threshold,tpr,fpr,precision");
    assert!(roc.lines().count() > 3);
}

/// `--calibrate`: the map is fitted on the validation rows' raw logits, and every probability
/// after it — predictions.csv, the threshold, the test calibration, `RunModel::predict` — is the
/// mapped one; report.json keeps the model's own test calibration beside it.
#[test]
fn calibrate_fits_on_validation_and_every_probability_uses_the_map() {
    let (_dir, npz, out) = colour_run_dir();
    let base = ["--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8", "--epochs", "2", "--batch-size", "10"];
    let run = |extra: &[&str], out: &std::path::Path| {
        let mut args = base.to_vec();
        args.extend(extra.iter().copied());
        args.extend(["--out", out.to_str().unwrap()]);
        derma_train(&args)
    };
    // Platt scaling needs the single logit of a two-class task.
    let o = run(&["--calibrate", "platt"], &out);
    assert!(!o.status.success() && text(&o.stderr).contains("--calibrate platt fits a two-class task"), "{}", text(&o.stderr));
    // The balanced decision: multi-class only, and not over a re-weighted training unless
    // --calibrate bcts restores the prior first.
    let o = run(&["--decision", "balanced", "--positive-classes", "mel,bcc"], &out);
    assert!(!o.status.success() && text(&o.stderr).contains("--decision balanced is a multi-class decision rule"), "{}", text(&o.stderr));
    for reweight in [&["--class-weights", "balanced"][..], &["--sampler", "weighted"][..]] {
        let o = run(&[&["--decision", "balanced"][..], reweight].concat(), &out);
        let e = text(&o.stderr);
        assert!(!o.status.success() && e.contains(&format!("--decision balanced with {}", reweight[0])) && e.contains("--calibrate bcts"), "{e}");
    }

    let device = burn::prelude::Device::flex();
    let json = |out: &std::path::Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap() };
    // predictions.csv rows of one split: (label, probabilities).
    let rows = |out: &std::path::Path, split: &str| -> Vec<(usize, Vec<f64>)> {
        std::fs::read_to_string(out.join("predictions.csv"))
            .unwrap()
            .lines()
            .filter(|l| l.starts_with(&format!("{split},")))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[2].parse().unwrap(), f[3..].iter().map(|v| v.parse().unwrap()).collect())
            })
            .collect()
    };
    let close = |a: f64, b: f64, what: &str| assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{what}: {a} vs {b}");
    let sigmoid = |u: f64| 1.0 / (1.0 + (-u).exp());

    // Binary, Platt.
    let o = run(&["--positive-classes", "mel,bcc,0", "--threshold", "min-spec:0.8", "--calibrate", "platt"], &out);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("recalibration: --calibrate platt fitted on val, sigmoid("), "{}", text(&o.stdout));
    let report = json(&out);
    let r = &report["recalibration"];
    assert_eq!((r["method"].as_str(), r["applied"].as_bool(), r["fitted_on"].as_str()), (Some("platt"), Some(true), Some("val")), "{r}");
    let (a, b) = (r["scale"].as_f64().unwrap(), r["bias"].as_f64().unwrap());
    // The model's raw logits of both splits, as the run's data pipeline gives them.
    let model = derma_train::predict::RunModel::load(&out, &device).unwrap();
    assert_eq!(model.recalibration, Some(derma_eval::LogitScaling::affine(a, b)));
    let data = derma_train::dataset::load_data(&model.config).unwrap();
    let val = model.predict(&data.val, 7, &device);
    let test = model.predict(&data.test, 7, &device);
    // The map is Platt's fit of the validation logits (derma-eval's, checked against
    // scikit-learn there), not the identity.
    let z: Vec<f64> = val.logits.iter().map(|r| r[0] as f64).collect();
    let fit = derma_eval::fit_platt(&val.positives(), &z).unwrap().scaling;
    close(fit.scale, a, "slope");
    close(fit.bias, b, "intercept");
    assert!((a - 1.0).abs() > 1e-3 || b.abs() > 1e-3, "the map is the identity: {r}");
    // predictions.csv and RunModel::predict hold sigmoid(a·z + b) of the raw logits.
    for (split, pred) in [("val", &val), ("test", &test)] {
        let csv = rows(&out, split);
        assert_eq!(csv.len(), pred.logits.len());
        for ((label, p), (logit, q)) in csv.iter().zip(pred.logits.iter().zip(&pred.probs)) {
            let want = sigmoid(a * logit[0] as f64 + b);
            close(p[0], want, split);
            close(q[0], want, split);
            assert!(*label <= 1);
        }
    }
    // The threshold was chosen on the mapped validation probabilities: at it the validation
    // counts of predictions.csv are report.json's.
    let th = &report["threshold"];
    let t = th["value"].as_f64().unwrap();
    let val_rows = rows(&out, "val");
    let tp = val_rows.iter().filter(|(l, p)| *l == 1 && p[0] >= t).count() as u64;
    let fp = val_rows.iter().filter(|(l, p)| *l == 0 && p[0] >= t).count() as u64;
    assert_eq!((tp, fp), (th["val"]["tp"].as_u64().unwrap(), th["val"]["fp"].as_u64().unwrap()), "{th}");
    // test.calibration is of the mapped test probabilities, test_before of the model's own.
    let labels: Vec<usize> = test.labels.clone();
    let mapped = derma_eval::calibration(&labels, &test.probs, 10).unwrap();
    let own: Vec<Vec<f64>> = test.logits.iter().map(|r| vec![sigmoid(r[0] as f64)]).collect();
    let own = derma_eval::calibration(&labels, &own, 10).unwrap();
    close(report["test"]["calibration"]["ece"].as_f64().unwrap(), mapped.ece, "ECE");
    close(r["test_before"]["ece"].as_f64().unwrap(), own.ece, "ECE before");
    close(r["test_before"]["brier"].as_f64().unwrap(), own.brier, "Brier before");
    let own_bins: Vec<u64> = own.bins.iter().filter(|b| b.count > 0).map(|b| b.count as u64).collect();
    let kept: Vec<u64> = r["test_before"]["bins"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).collect();
    assert_eq!(kept, own_bins, "test_before.bins");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("after --calibrate platt: Platt scaling sigmoid(a·z + b)"), "{md}");

    // Seven classes, temperature. The colours separate every validation image: the NLL falls
    // without end as T → 0, the fit stops at T = 0.01, and such a map (probabilities rounded
    // to 0 and 1) is not applied — the model's own probabilities are kept and reported.
    let out7 = out.with_file_name("run7");
    let o = run(&["--calibrate", "temperature"], &out7);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stderr).contains("warning: --calibrate temperature: not applied"), "{}", text(&o.stderr));
    let r = json(&out7)["recalibration"].clone();
    assert_eq!((r["applied"].as_bool(), r["scale"].as_f64()), (Some(false), None), "{r}");
    // (After two epochs the batch norms' running statistics are not settled: on validation the
    // true class's logit is below the row's mean, and the fit runs to T = 100.)
    assert!(r["reason"].as_str().unwrap().contains("T = 100: the logits carry no information"), "{r}");
    let model = derma_train::predict::RunModel::load(&out7, &device).unwrap();
    assert_eq!(model.recalibration, None);
    let data = derma_train::dataset::load_data(&model.config).unwrap();
    let own = model.predict(&data.val, 7, &device);
    for ((_, p), q) in rows(&out7, "val").iter().zip(&own.probs) {
        for (p, q) in p.iter().zip(q) {
            close(*p, *q, "the model's own probability");
        }
    }
    assert!(std::fs::read_to_string(out7.join("report.md")).unwrap().contains("--calibrate temperature was not applied"));
    // The same separated validation split defeats bcts too; after balanced class weights the
    // balanced decision then falls back to the arg-max (dividing the re-weighted model's
    // probabilities by the class frequencies would correct twice), with a warning.
    let out_w = out.with_file_name("run7-weights");
    let o = run(&["--class-weights", "balanced", "--calibrate", "bcts", "--decision", "balanced"], &out_w);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    let e = text(&o.stderr);
    assert!(e.contains("warning: --calibrate bcts: not applied") && e.contains("warning: --decision balanced: not applied"), "{e}");
    let report = json(&out_w);
    assert!(report["decision"].is_null() && report["recalibration"]["applied"] == false, "{report}");
    let w = rows(&out_w, "test");
    let labels: Vec<usize> = w.iter().map(|(l, _)| *l).collect();
    let plain: Vec<usize> = w.iter().map(|(_, p)| derma_eval::argmax(p).unwrap()).collect();
    assert_eq!(report["test"]["confusion_matrix"], serde_json::json!(derma_eval::confusion_matrix(&labels, &plain, 7).unwrap()));

    // With a quarter of the validation labels moved to another class the trained model is
    // over-confident there: T > 1, applied, softmax(z / T) of the raw logits.
    let noisy_npz = npz.with_file_name("noisy-val.npz");
    let mut val = colour_split(8, 2);
    for i in (0..val.len).step_by(4) {
        val.labels[i] = (val.labels[i] + 3) % 7;
    }
    medmnist::write_npz(&noisy_npz, &medmnist::MedMnistArrays { train: colour_split(20, 1), val, test: colour_split(8, 3) }).unwrap();
    let out7 = out.with_file_name("run7-noisy");
    let o = derma_train(&[
        "--npz", noisy_npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8", "--epochs", "5",
        "--batch-size", "10", "--lr", "0.003", "--calibrate", "temperature", "--out", out7.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    let r = json(&out7)["recalibration"].clone();
    assert!(r["applied"].as_bool().unwrap() && r["temperature"].as_f64().unwrap() > 1.0, "{r}");
    let scale = r["scale"].as_f64().unwrap();
    assert_eq!((r["method"].as_str(), r["bias"].as_f64()), (Some("temperature"), Some(0.0)), "{r}");
    close(r["temperature"].as_f64().unwrap(), 1.0 / scale, "T");
    let model = derma_train::predict::RunModel::load(&out7, &device).unwrap();
    let data = derma_train::dataset::load_data(&model.config).unwrap();
    let val = model.predict(&data.val, 7, &device);
    let rows64: Vec<Vec<f64>> = val.logits.iter().map(|r| r.iter().map(|&z| z as f64).collect()).collect();
    close(derma_eval::fit_temperature(&val.labels, &rows64).unwrap().scaling.scale, scale, "1/T");
    for ((_, p), logits) in rows(&out7, "val").iter().zip(&val.logits) {
        let e: Vec<f64> = logits.iter().map(|&z| (scale * z as f64).exp()).collect();
        let sum: f64 = e.iter().sum();
        for (p, e) in p.iter().zip(&e) {
            close(*p, e / sum, "softmax(z / T)");
        }
    }

    // Bias-corrected temperature scaling with the balanced decision, on a training split where
    // the other classes keep 20, 4, 12, 2, 16 and 8 of their 20 images and the rest are
    // relabelled class 5 (78 of 140: a majority, as nv in DermaMNIST). One bias per class, fitted to the run's raw validation logits (derma-eval's
    // fit_bcts, checked against scipy there); every row of predictions.csv and of
    // RunModel::predict is softmax(z / T + b); each test image's class is the arg-max of
    // probability / training class frequency.
    let skewed_npz = npz.with_file_name("skewed.npz");
    let mut train = colour_split(20, 1);
    const KEEP: [usize; 7] = [20, 4, 12, 2, 16, 20, 8];
    for i in 0..train.len {
        // colour_split's image i is of class i % 7, the (i / 7)-th of its class.
        if i / 7 >= KEEP[train.labels[i] as usize] {
            train.labels[i] = 5;
        }
    }
    let train_counts: Vec<usize> = (0..7).map(|c| train.labels.iter().filter(|&&l| l as usize == c).count()).collect();
    assert_eq!(train_counts.iter().sum::<usize>(), 140);
    assert_eq!(train_counts, [20, 4, 12, 2, 16, 78, 8]);
    let mut val = colour_split(8, 2);
    for i in (0..val.len).step_by(4) {
        val.labels[i] = (val.labels[i] + 3) % 7;
    }
    medmnist::write_npz(&skewed_npz, &medmnist::MedMnistArrays { train, val, test: colour_split(8, 3) }).unwrap();
    let out_b = out.with_file_name("run7-bcts");
    let o = derma_train(&[
        "--npz", skewed_npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--output-stride", "8", "--epochs", "5",
        "--batch-size", "10", "--lr", "0.003", "--calibrate", "bcts", "--decision", "balanced", "--out", out_b.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("recalibration: --calibrate bcts fitted on val, T = "), "{}", text(&o.stdout));
    let r = json(&out_b)["recalibration"].clone();
    assert_eq!((r["method"].as_str(), r["applied"].as_bool()), (Some("bcts"), Some(true)), "{r}");
    let scale = r["scale"].as_f64().unwrap();
    let bias: Vec<f64> = r["class_bias"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(bias.len(), 7, "{r}");
    close(r["temperature"].as_f64().unwrap(), 1.0 / scale, "T");
    let model = derma_train::predict::RunModel::load(&out_b, &device).unwrap();
    assert_eq!(model.recalibration, Some(derma_eval::LogitScaling { scale, bias: 0.0, class_bias: bias.clone() }));
    let data = derma_train::dataset::load_data(&model.config).unwrap();
    let val = model.predict(&data.val, 7, &device);
    let rows64: Vec<Vec<f64>> = val.logits.iter().map(|r| r.iter().map(|&z| z as f64).collect()).collect();
    let fit = derma_eval::fit_bcts(&val.labels, &rows64).unwrap().scaling;
    close(fit.scale, scale, "1/T");
    for (f, b) in fit.class_bias.iter().zip(&bias) {
        close(*f, *b, "class bias");
    }
    assert!(bias.iter().any(|b| b.abs() > 1e-3), "no class bias: {r}");
    for (((_, p), logits), q) in rows(&out_b, "val").iter().zip(&val.logits).zip(&val.probs) {
        let e: Vec<f64> = logits.iter().zip(&bias).map(|(&z, b)| (scale * z as f64 + b).exp()).collect();
        let sum: f64 = e.iter().sum();
        for ((p, q), e) in p.iter().zip(q).zip(&e) {
            close(*p, e / sum, "softmax(z / T + b)");
            close(*q, e / sum, "RunModel's softmax(z / T + b)");
        }
    }
    let md = std::fs::read_to_string(out_b.join("report.md")).unwrap();
    assert!(md.contains("after --calibrate bcts: bias-corrected temperature scaling softmax(z / T + b)"), "{md}");
    assert!(md.contains("arg-max of probability / training class frequency"), "{md}");
    // derma-report recomputes the figures from predictions.csv under the same rule: no note of
    // a disagreement with report.json.
    assert!(!md.contains("but predictions.csv gives") && !md.contains("differs from report.json"), "{md}");
    // The decision: report.json's prior is the training split's class frequencies, and its
    // test confusion matrix is that of arg-max(p / prior) over predictions.csv — here not the
    // plain arg-max's (priors from 2/140 to 78/140 turn some images to rarer classes).
    let report = json(&out_b);
    let prior: Vec<f64> = report["decision"]["prior"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(report["decision"]["rule"].as_str(), Some("balanced"));
    for (p, &n) in prior.iter().zip(&train_counts) {
        close(*p, n as f64 / 140.0, "prior");
    }
    assert_eq!(model.rule, derma_report::Rule::Balanced(prior.clone()));
    let test_rows = rows(&out_b, "test");
    let labels: Vec<usize> = test_rows.iter().map(|(l, _)| *l).collect();
    let balanced: Vec<usize> = test_rows.iter().map(|(_, p)| derma_eval::prior_corrected_argmax(p, &prior).unwrap()).collect();
    let plain: Vec<usize> = test_rows.iter().map(|(_, p)| derma_eval::argmax(p).unwrap()).collect();
    let cm = |pred: &[usize]| serde_json::json!(derma_eval::confusion_matrix(&labels, pred, 7).unwrap());
    assert_eq!(report["test"]["confusion_matrix"], cm(&balanced));
    assert_ne!(cm(&balanced), cm(&plain), "the balanced decision changed no test image");
    close(report["test"]["balanced_accuracy"].as_f64().unwrap(), derma_eval::balanced_accuracy(&labels, &balanced, 7).unwrap(), "balanced accuracy");
    for ((_, p), d) in test_rows.iter().zip(&balanced) {
        assert_eq!(model.decision(p), *d);
    }
}

/// Transfer learning from a torchvision state dict: strict load with a new head, a frozen
/// first epoch, a smaller backbone learning rate, and the normalisation recorded.
#[test]
fn pretrained_torchvision_weights_fine_tune() {
    let (dir, npz, out) = colour_run_dir();
    let weights = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/mobilenet_v2_w025.pth");
    let o = derma_train(&[
        "--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--epochs", "2",
        "--batch-size", "20", "--pretrained", weights, "--freeze-backbone-epochs", "1",
        "--backbone-lr-mult", "0.1", "--positive-classes", "nv", "--out", out.to_str().unwrap(),
    ]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&o.stderr));
    assert!(stdout.contains("mobilenet_v2_w025.pth") && stdout.contains("backbone frozen") && stdout.contains("backbone unfrozen"), "{stdout}");
    assert!(stdout.contains(&format!("it continues with `derma-train --resume {}`", out.display())), "{stdout}");
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(config.contains("input_norm = \"imagenet\"") && config.contains("padding = \"Symmetric\""), "{config}");

    // A grayscale stem from the RGB weights (it panicked: a folded stem is built on the
    // training device).
    let gray_out = dir.path().join("gray");
    let o = derma_train(&[
        "--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--epochs", "1",
        "--batch-size", "20", "--pretrained", weights, "--in-channels", "1", "--positive-classes", "nv",
        "--out", gray_out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));

    // --freeze-bn: with the whole network training from the first step, the batch-norm running
    // statistics stay those of the weight file (without the flag every epoch updates them).
    let frozen_out = dir.path().join("frozen-bn");
    let o = derma_train(&[
        "--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.25", "--epochs", "2",
        "--batch-size", "20", "--pretrained", weights, "--freeze-bn",
        "--positive-classes", "nv", "--out", frozen_out.to_str().unwrap(),
    ]);
    let stdout = text(&o.stdout);
    assert!(o.status.success() && stdout.contains("running statistics throughout training"), "stdout:\n{stdout}\nstderr:\n{}", text(&o.stderr));
    assert!(std::fs::read_to_string(frozen_out.join("config.toml")).unwrap().contains("freeze_bn = true"));
    let device = burn::prelude::Device::flex();
    let trained = derma_train::predict::RunModel::load(&frozen_out, &device).unwrap().model;
    let file = derma_model::load_torchvision(
        derma_model::MobileNetV2Config::new(1).with_width(0.25).init(&device),
        std::path::Path::new(weights),
        false,
    )
    .unwrap();
    let values = |t: burn::prelude::Tensor<1>| -> Vec<f32> { t.into_data().try_into_vec().unwrap() };
    let (a, b) = (&trained.blocks[5].depthwise.bn, &file.blocks[5].depthwise.bn);
    assert_eq!(values(a.running_mean.value()), values(b.running_mean.value()), "running mean changed");
    assert_eq!(values(a.running_var.value()), values(b.running_var.value()), "running variance changed");

    // a width mismatch is refused, naming the weight file's keys
    let o = derma_train(&[
        "--npz", npz.to_str().unwrap(), "--backend", "cpu", "--width", "0.5", "--epochs", "1",
        "--pretrained", weights, "--out", dir.path().join("bad").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("--pretrained") && err.contains("`features.0.0.weight`: shape [8, 3, 3, 3] in the file"), "{err}");
}

/// Every shipped config parses over the defaults and validates.
#[test]
fn shipped_configs_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let mut config = derma_train::TrainConfig::from_file(&path).unwrap();
            if config.dataset == "folder" {
                config.data_dir = Some(std::env::temp_dir()); // the user's --data-dir
            }
            config.validate().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 3);
    let combined = derma_train::TrainConfig::from_file(std::path::Path::new(&format!("{dir}/combined-loss.toml"))).unwrap();
    assert_eq!(combined.loss, derma_train::LossKind::Combined);
    assert_eq!((combined.gamma, combined.bce_weight, combined.focal_weight), (3.0, 0.5, 0.5));
    assert_eq!(combined.alpha, Some(derma_train::Alpha::Scalar(1.0)));
}

/// A bad value from `--config` is named as the flag's error plus where it is; one given on the
/// command line is the flag's alone.
#[test]
fn a_bad_config_value_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mine.toml");
    std::fs::write(&config, "lr = -0.5\nepochs = 2\n").unwrap();
    let out = dir.path().join("run");
    let o = derma_train(&["--config", config.to_str().unwrap(), "--backend", "cpu", "--out", out.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains("--lr must be > 0, got -0.5 (the value of `lr` in --config") && err.contains("mine.toml"), "{err}");
    let o = derma_train(&["--config", config.to_str().unwrap(), "--lr", "-2", "--backend", "cpu", "--out", out.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains("--lr must be > 0, got -2") && !err.contains("mine.toml"), "{err}");
    // An augmentation knob sits in the file's [augment_knobs] table.
    std::fs::write(&config, "[augment_knobs]\nrotation = -5.0\n").unwrap();
    let o = derma_train(&["--config", config.to_str().unwrap(), "--backend", "cpu", "--out", out.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("--rotation (augment_knobs.rotation) must be in [0, 180] degrees, got -5 (the value of `augment_knobs.rotation` in --config")
            && err.contains("mine.toml"),
        "{err}"
    );
    let o = derma_train(&["--config", config.to_str().unwrap(), "--rotation", "-7", "--backend", "cpu", "--out", out.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains("got -7") && !err.contains("mine.toml"), "{err}");
    assert!(!out.exists());
}
