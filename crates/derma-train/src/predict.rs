//! Inference from a finished run folder: the model, its preprocessing and its operating
//! threshold are rebuilt from `config.toml`, `report.json` and `model.bpk`. Inputs are image
//! files (PNG, JPEG, TIFF; 8- or 16-bit), folders of them, or one split of a MedMNIST `.npz`.
//! Files go through the run's own file pipeline (intensity window, square fit, training size),
//! `.npz` images through the evaluation resize, exactly as during training.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use burn::prelude::*;
use burn_store::{BurnpackStore, ModuleSnapshot};
use derma_data::{ImageDataset, Normalize, SplitName};
use derma_eval::LogitScaling;
use derma_model::{InputNorm, MobileNetV2, MobileNetV2Config, Padding};
use derma_report::Rule;
use rayon::prelude::*;

use crate::config::TrainConfig;
use crate::evaluate::{Predictions, predict};
use crate::report::csv_field;

/// A trained model with everything needed to use it as it was validated.
pub struct RunModel {
    /// The run's configuration (`config.toml`).
    pub config: TrainConfig,
    /// Class names (`report.json`); binary runs: `[negative, positive]`.
    pub class_names: Vec<String>,
    /// How a row of probabilities becomes a class, as the run decided its test images
    /// (`report.json`): the operating threshold chosen on validation (binary runs), the
    /// balanced decision (`--decision balanced`, `decision.prior`), or the arg-max.
    pub rule: Rule,
    /// The model, in evaluation mode.
    pub model: MobileNetV2,
    /// Input normalisation of the run.
    pub normalize: Normalize,
    /// The run's `--calibrate` map (`report.json` `recalibration`), applied to every prediction.
    pub recalibration: Option<LogitScaling>,
}

impl RunModel {
    /// Reads `run_dir`'s `config.toml`, `report.json` and `model.bpk`.
    pub fn load(run_dir: &Path, device: &Device) -> anyhow::Result<Self> {
        let file = |name: &str| run_dir.join(name);
        // A checkpoint means the run is still training, or was stopped: its model.bpk is of an
        // unfinished run, and report.json (if any) of an older one it overwrites.
        if let Some(why) = crate::checkpoint::diverged(run_dir) {
            anyhow::bail!("--run {}", crate::checkpoint::diverged_advice(run_dir, &why));
        }
        if run_dir.join(crate::checkpoint::DIR).join("state.json").is_file() {
            anyhow::bail!(
                "--run {}: the run has not finished (it holds a checkpoint/): wait for it, or finish a stopped run with \
                 `derma-train --resume {}`",
                run_dir.display(),
                run_dir.display()
            );
        }
        for name in ["config.toml", "report.json", "model.bpk"] {
            if !file(name).is_file() {
                anyhow::bail!("--run {}: no {name} (is this a finished derma-train run folder?)", run_dir.display());
            }
        }
        let config = TrainConfig::from_run_folder(&file("config.toml"), "--run")?;
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(file("report.json")).with_context(|| format!("reading {}", file("report.json").display()))?,
        )
        .with_context(|| format!("{} is not valid JSON", file("report.json").display()))?;
        let class_names: Vec<String> = report["classes"]
            .as_array()
            .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| anyhow::anyhow!("{}: no `classes` list", file("report.json").display()))?;
        if class_names.len() < 2 {
            anyhow::bail!("{}: `classes` needs at least 2 names", file("report.json").display());
        }
        let binary = class_names.len() == 2;
        // The operating threshold chosen on validation; JSON has no infinity: `null` is +inf
        // (a rule that flags nothing).
        let rule = match report["threshold"].get("value") {
            _ if !binary => match prior_of(&report["decision"], &class_names, &file("report.json"))? {
                Some(prior) => Rule::Balanced(prior),
                None => Rule::Argmax,
            },
            Some(serde_json::Value::Null) => Rule::Threshold(f64::INFINITY),
            v => Rule::Threshold(v.and_then(|v| v.as_f64()).ok_or_else(|| {
                anyhow::anyhow!("{}: a two-class run needs `threshold.value` (a number, or null for +inf)", file("report.json").display())
            })?),
        };
        let logits = if binary { 1 } else { class_names.len() };
        let recalibration = recalibration_of(&report["recalibration"], logits, &file("report.json"))?;
        let model = MobileNetV2Config::new(logits)
            .with_width(config.width)
            .with_in_channels(config.in_channels)
            .with_output_stride(config.output_stride)
            .with_dilate(config.dilate)
            .with_dropout(config.dropout)
            .with_padding(config.padding.unwrap_or(Padding::Symmetric))
            .init(device);
        let mut model = model;
        let mut store = BurnpackStore::from_file(file("model.bpk"));
        model
            .load_from(&mut store)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file("model.bpk").display()))?;
        let input_norm = config.input_norm.unwrap_or(InputNorm::ImageNet);
        let normalize = Normalize { affine: input_norm.affine(), out_channels: config.in_channels };
        Ok(Self {
            rule,
            config,
            class_names,
            model,
            normalize,
            recalibration,
        })
    }

    /// Single-logit binary model?
    pub fn is_binary(&self) -> bool {
        matches!(self.rule, Rule::Threshold(_))
    }

    /// Input side in pixels.
    pub fn image_size(&self) -> usize {
        self.config.image_size()
    }

    /// Probabilities of every image (labels, if any, are carried through), through the run's
    /// recalibration map if it has one — the probabilities its threshold was chosen on.
    pub fn predict(&self, images: &ImageDataset, batch_size: usize, device: &Device) -> Predictions {
        let pred = predict(&self.model, images, self.image_size(), self.normalize, batch_size, None, device);
        match &self.recalibration {
            Some(map) => pred.recalibrated(map),
            None => pred,
        }
    }

    /// The decision for one row of probabilities ([`Rule::predict`], the rule derma-report
    /// checks report.json with): the class at or above the threshold (binary), the balanced
    /// decision (`--decision balanced`), else the most probable class; a row with a non-finite
    /// probability (a diverged model) is class 0.
    pub fn decision(&self, probs: &[f64]) -> usize {
        self.rule.predict(probs)
    }
}

/// The logit map of report.json's `recalibration` record for a model with `logits` outputs:
/// none when the record is absent (a run without `--calibrate`, or older than it) or says the
/// map was not applied.
fn recalibration_of(record: &serde_json::Value, logits: usize, file: &Path) -> anyhow::Result<Option<LogitScaling>> {
    if record.is_null() || record["applied"] == false {
        return Ok(None);
    }
    // `class_bias` (bias-corrected temperature scaling of K > 1 logits): absent, or one finite
    // number per logit.
    let class_bias: Option<Vec<f64>> = match &record["class_bias"] {
        serde_json::Value::Null => Some(Vec::new()),
        serde_json::Value::Array(values) if logits > 1 && values.len() == logits => {
            values.iter().map(|v| v.as_f64().filter(|b| b.is_finite())).collect()
        }
        _ => None,
    };
    match (record["applied"].as_bool(), record["scale"].as_f64(), record["bias"].as_f64(), class_bias) {
        (Some(true), Some(scale), Some(bias), Some(class_bias)) if scale.is_finite() && scale > 0.0 && bias.is_finite() => {
            Ok(Some(LogitScaling { scale, bias, class_bias }))
        }
        _ => anyhow::bail!(
            "{}: `recalibration` needs `applied` (true or false) and, when applied, a positive `scale`, a finite `bias` and, \
             if it has `class_bias`, one finite number per class of this {logits}-logit model; got {record}",
            file.display()
        ),
    }
}

/// The class prior of report.json's `decision` record (`--decision balanced`): none when the
/// record is absent (an arg-max run, or one older than the flag).
fn prior_of(record: &serde_json::Value, class_names: &[String], file: &Path) -> anyhow::Result<Option<Vec<f64>>> {
    if record.is_null() {
        return Ok(None);
    }
    let prior: Option<Vec<f64>> = record["prior"]
        .as_array()
        .filter(|a| a.len() == class_names.len())
        .and_then(|a| a.iter().map(|v| v.as_f64().filter(|p| p.is_finite() && *p > 0.0)).collect());
    match (record["rule"].as_str(), prior) {
        (Some("balanced"), Some(prior)) if class_names.len() > 2 => Ok(Some(prior)),
        _ => anyhow::bail!(
            "{}: `decision` needs `rule` \"balanced\" and a `prior` of one positive frequency per class of a multi-class \
             run ({} classes); got {record}",
            file.display(),
            class_names.len()
        ),
    }
}

/// `path` itself if it is a file, else the image files under the folder (recursively, sorted;
/// [`mammo::files_below`], [`mammo::is_image_path`]).
pub fn list_images(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        anyhow::bail!("--input {}: no such file or folder", path.display());
    }
    let out: Vec<PathBuf> = mammo::files_below(path).context("--input")?.into_iter().filter(|p| mammo::is_image_path(p)).collect();
    if out.is_empty() {
        anyhow::bail!("--input {}: no image files (png, jpg, jpeg, tif, tiff) in it", path.display());
    }
    Ok(out)
}

/// Decodes `paths` with the run's file pipeline into a dataset (labels 0: unknown): a file
/// dataset's run at its image size; a MedMNIST run's the way its `.npz` images went, brought
/// to the dataset's resolution (`size`) and then shrunk to the image size if that is smaller
/// ([`crate::dataset::shrink_to`]; a larger one is reached by the evaluation transform, as in
/// training), so a file holding an `.npz` image scores as that image does. Grayscale files stay
/// 1-channel unless some file is colour. A MedMNIST run trained on 8-bit images without an
/// intensity window, so a 16-bit file is scaled by its full range there (`Intensity::None`);
/// file-dataset runs use their own window. When files fail, the first in `paths` order is
/// named, with the count.
pub fn read_images(paths: &[PathBuf], config: &TrainConfig, class_names: &[String]) -> anyhow::Result<ImageDataset> {
    let intensity: mammo::Intensity = if config.is_file_dataset() {
        config.intensity.parse().map_err(|e| anyhow::anyhow!("config intensity: {e}"))?
    } else {
        mammo::Intensity::None
    };
    let fit: mammo::Fit = config.resize.parse().map_err(|e| anyhow::anyhow!("config resize: {e}"))?;
    let size = if config.is_file_dataset() { config.image_size() } else { config.size as usize };
    let results: Vec<mammo::Result<mammo::Image>> = paths
        .par_iter()
        .map(|p| {
            mammo::decode(p, &intensity)
                .and_then(|img| mammo::check_aspect(&img, fit, p).map(|()| img))
                .and_then(|img| mammo::resize(&img, size, fit))
        })
        .collect();
    let failed = results.iter().filter(|r| r.is_err()).count();
    let mut images = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(img) => images.push(img),
            Err(e) if failed == 1 => return Err(e.into()),
            Err(e) => return Err(anyhow::Error::from(e).context(format!("{failed} of {} input images could not be read; the first", paths.len()))),
        }
    }
    let channels = if images.iter().all(|i| i.channels == 1) { 1 } else { 3 };
    let mut pixels = Vec::with_capacity(images.len() * size * size * channels);
    for img in &images {
        if img.channels == channels {
            pixels.extend_from_slice(&img.pixels);
        } else {
            pixels.extend(img.pixels.iter().flat_map(|&v| [v, v, v]));
        }
    }
    let dataset = ImageDataset::new(pixels, vec![0; images.len()], [size, size, channels], class_names.to_vec())
        .map_err(|e| anyhow::anyhow!(e))?;
    if config.is_file_dataset() { Ok(dataset) } else { crate::dataset::shrink_to(dataset, config.image_size()) }
}

/// One split of a MedMNIST-layout `.npz`, labelled as the run was trained: a
/// `--positive-classes` run's labels become 0/1 through the run's dataset's class names, as
/// its training `predictions.csv` has them.
pub fn read_npz_split(path: &Path, split: SplitName, run: &RunModel) -> anyhow::Result<ImageDataset> {
    let arrays = medmnist::read_npz(path)?;
    let s = match split {
        SplitName::Train => arrays.train,
        SplitName::Val => arrays.val,
        SplitName::Test => arrays.test,
    };
    let labels: Vec<usize> = s.labels.iter().map(|&l| l as usize).collect();
    let shape = [s.height, s.width, s.channels];
    // A --positive-classes run of a MedMNIST dataset maps the file's labels through that
    // dataset's class names; otherwise the labels are the run's own.
    let info = run.config.positive_classes.as_ref().and_then(|p| medmnist::lookup(&run.config.dataset).ok().map(|i| (p, i)));
    let Some((positive, info)) = info else {
        // Extra label values (a binary view of a file dataset) get numbered names.
        let max = labels.iter().copied().max().unwrap_or(0);
        if max >= run.class_names.len() {
            eprintln!(
                "warning: {} has labels up to {max}, but the run has {} classes ({}): its label column is the file's \
                 numbering, not the run's (is this the run's kind of data?)",
                path.display(),
                run.class_names.len(),
                run.class_names.join(", ")
            );
        }
        let names: Vec<String> =
            (0..=max.max(run.class_names.len() - 1)).map(|i| run.class_names.get(i).cloned().unwrap_or_else(|| i.to_string())).collect();
        return ImageDataset::new(s.images, labels, shape, names)
            .map_err(|e| anyhow::anyhow!("{}: {e} (the run's classes: {})", path.display(), run.class_names.join(", ")));
    };
    let names: Vec<String> = info.labels.iter().map(|l| l.to_string()).collect();
    let (positives, bin) = crate::dataset::binary_view(positive, &names, &run.config.dataset)?;
    let d = ImageDataset::new(s.images, labels, shape, names)
        .map_err(|e| anyhow::anyhow!("{}: {e} (the run was trained on {})", path.display(), run.config.dataset))?;
    Ok(d.binary(&positives, bin))
}

/// The output CSV: `path_or_index,<probability columns>,decision` — binary runs one `prob`
/// column (of the positive class), others `prob_<class>` per class; `decision` is a class name.
/// `.npz` inputs add a `label` column, numbered as in the run's own `predictions.csv` (binary
/// runs: 1 = positive).
pub fn predictions_csv(run: &RunModel, names: &[String], pred: &Predictions, labels: bool) -> String {
    let mut s = String::from("path_or_index");
    if labels {
        s.push_str(",label");
    }
    if run.is_binary() {
        s.push_str(",prob");
    } else {
        for c in &run.class_names {
            let _ = write!(s, ",{}", csv_field(&format!("prob_{c}")));
        }
    }
    s.push_str(",decision\n");
    for ((i, l), probs) in pred.indices.iter().zip(&pred.labels).zip(&pred.probs) {
        let _ = write!(s, "{}", csv_field(&names[*i]));
        if labels {
            let _ = write!(s, ",{l}");
        }
        for p in probs {
            let _ = write!(s, ",{p}");
        }
        let _ = writeln!(s, ",{}", csv_field(&run.class_names[run.decision(probs)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// report.json's `recalibration`: absent or not applied is no map; an applied one needs a
    /// positive scale and a finite bias, else the file is named.
    #[test]
    fn the_recalibration_record_is_read_strictly() {
        let file = Path::new("run/report.json");
        let read = |v: serde_json::Value| recalibration_of(&v, 1, file);
        assert_eq!(read(serde_json::Value::Null).unwrap(), None);
        assert_eq!(read(serde_json::json!({"method": "platt", "applied": false, "reason": "one class"})).unwrap(), None);
        let applied = serde_json::json!({"method": "platt", "applied": true, "scale": 0.5, "bias": -1.25});
        assert_eq!(read(applied).unwrap(), Some(LogitScaling::affine(0.5, -1.25)));
        // Class biases: one per logit of a K-class model.
        let bcts = serde_json::json!({"method": "bcts", "applied": true, "scale": 0.8, "bias": 0.0, "class_bias": [0.5, -0.25, -0.25]});
        assert_eq!(
            recalibration_of(&bcts, 3, file).unwrap(),
            Some(LogitScaling { scale: 0.8, bias: 0.0, class_bias: vec![0.5, -0.25, -0.25] })
        );
        for (bad, logits) in [
            (serde_json::json!({"method": "platt", "applied": true, "scale": -0.5, "bias": 0.0}), 1),
            (serde_json::json!({"method": "platt", "applied": true, "bias": 0.0}), 1),
            (serde_json::json!({"method": "platt", "scale": 0.5, "bias": 0.0}), 1),
            (bcts.clone(), 4),
            (bcts.clone(), 1),
            (serde_json::json!({"method": "bcts", "applied": true, "scale": 0.8, "bias": 0.0, "class_bias": [0.5, "x", 0.1]}), 3),
        ] {
            let e = recalibration_of(&bad, logits, file).unwrap_err().to_string();
            assert!(e.contains("run/report.json") && e.contains("`recalibration`"), "{bad}: {e}");
        }
    }

    /// report.json's `decision`: absent is the arg-max; a balanced one needs one positive
    /// frequency per class of a multi-class run, else the file is named.
    #[test]
    fn the_decision_record_is_read_strictly() {
        let file = Path::new("run/report.json");
        let names = |k: usize| (0..k).map(|i| format!("c{i}")).collect::<Vec<_>>();
        assert_eq!(prior_of(&serde_json::Value::Null, &names(3), file).unwrap(), None);
        let good = serde_json::json!({"rule": "balanced", "prior": [0.5, 0.25, 0.25]});
        assert_eq!(prior_of(&good, &names(3), file).unwrap(), Some(vec![0.5, 0.25, 0.25]));
        for (bad, k) in [
            (good.clone(), 4),
            (good.clone(), 2),
            (serde_json::json!({"rule": "balanced", "prior": [0.5, 0.5]}), 2),
            (serde_json::json!({"rule": "argmax", "prior": [0.5, 0.25, 0.25]}), 3),
            (serde_json::json!({"rule": "balanced", "prior": [0.5, 0.0, 0.5]}), 3),
            (serde_json::json!({"rule": "balanced"}), 3),
        ] {
            let e = prior_of(&bad, &names(k), file).unwrap_err().to_string();
            assert!(e.contains("run/report.json") && e.contains("`decision`"), "{bad}: {e}");
        }
    }

    /// A folder's images, below it too, once each, sorted; a link back up the tree is not
    /// walked again (it looped forever).
    #[test]
    fn input_folders_are_listed_recursively_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        for f in ["z.png", "a/y.JPG", "a/b/x.tif", "a/notes.txt", ".hidden.png"] {
            std::fs::write(root.join(f), b"").unwrap();
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(root, root.join("a/b/up")).unwrap();
        let got: Vec<String> = list_images(root).unwrap().iter().map(|p| p.strip_prefix(root).unwrap().display().to_string()).collect();
        assert_eq!(got, ["a/b/x.tif", "a/y.JPG", "z.png"]);
    }

    /// A MedMNIST run's images as PNG files give the dataset its `.npz` split gives
    /// (`read_npz_split`: the file's images, then `shrink_to` the image size), at an image size
    /// above the file's resolution (enlarged later by the evaluation transform, as in training)
    /// and below it; before, files were resized straight to the image size by another filter
    /// (probabilities 0.3–1.2 % off at 40 px for 28-px images).
    #[test]
    fn a_medmnist_runs_image_files_take_the_npz_images_way() {
        let dir = tempfile::tempdir().unwrap();
        let (n, size) = (3, 28);
        let pixels: Vec<u8> = (0..n * size * size * 3).map(|i| ((i * 7919) % 251) as u8).collect();
        let paths: Vec<PathBuf> = (0..n)
            .map(|i| {
                let p = dir.path().join(format!("img{i}.png"));
                let img = &pixels[i * size * size * 3..(i + 1) * size * size * 3];
                image::save_buffer(&p, img, size as u32, size as u32, image::ExtendedColorType::Rgb8).unwrap();
                p
            })
            .collect();
        let names: Vec<String> = (0..7).map(|c| c.to_string()).collect();
        for image_size in [40, 28, 20] {
            let config = TrainConfig { image_size: Some(image_size), ..TrainConfig::default() };
            assert_eq!(config.size as usize, size, "the built-in config is the 28-px DermaMNIST");
            let npz = ImageDataset::new(pixels.clone(), vec![0; n], [size, size, 3], names.clone()).unwrap();
            let want = crate::dataset::shrink_to(npz, image_size).unwrap();
            let got = read_images(&paths, &config, &names).unwrap();
            assert_eq!(got.image_shape(), want.image_shape(), "image size {image_size}");
            assert_eq!(got.image_shape()[0], image_size.min(size));
            for i in 0..n {
                assert_eq!(got.image(i), want.image(i), "image {i} at image size {image_size}");
            }
        }
    }
}
