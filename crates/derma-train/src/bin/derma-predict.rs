//! `derma-predict`: probabilities and decisions of a finished run on new images (PNG, JPEG,
//! TIFF; 8/16-bit), a folder of them, or an `.npz` split, at the run's chosen threshold; and
//! Grad-CAM overlays with `--gradcam DIR`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use derma_data::{Augment, SplitName};
use derma_report::Rule;
use derma_train::gradcam::{Target, gradcam, overlay};
use derma_train::predict::{RunModel, list_images, predictions_csv, read_images, read_npz_split};
use derma_train::report::{RUN_FILES, write_atomic};
use derma_train::backend;
use image::ImageEncoder as _;

/// Predict with a trained derma-train run.
#[derive(Parser, Debug)]
#[command(name = "derma-predict", version, about = "Probabilities, decisions and Grad-CAM overlays of a trained derma-train run on new images")]
struct Cli {
    /// The run folder (config.toml, report.json, model.bpk).
    #[arg(long)]
    run: PathBuf,
    /// An image file, a folder of images (searched recursively) or a MedMNIST-layout .npz.
    #[arg(long)]
    input: PathBuf,
    /// Split of an .npz input: train, val or test.
    #[arg(long, default_value = "test")]
    split: String,
    /// Output CSV: path_or_index[,label],prob_<class>...|prob,decision (label: .npz inputs).
    #[arg(long)]
    out: PathBuf,
    /// Also write a Grad-CAM overlay PNG per image into this folder.
    #[arg(long)]
    gradcam: Option<PathBuf>,
    /// Binary runs: use this threshold instead of the run's chosen one.
    #[arg(long)]
    threshold: Option<f64>,
    /// auto, wgpu, wgpu-software (a software Vulkan adapter: checks only) or cpu.
    #[arg(long, default_value = "auto")]
    backend: String,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
}

fn main() -> ExitCode {
    derma_train::cli::exit(run())
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    // The output paths are checked before the model runs (minutes on a large input).
    if cli.out.is_dir() {
        anyhow::bail!("--out {}: is a folder; expected the path of the CSV file to write", cli.out.display());
    }
    if let Some(parent) = cli.out.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        anyhow::bail!("--out {}: its folder {} does not exist", cli.out.display(), parent.display());
    }
    // The CSV never replaces what it is made from: one of the run folder's own files
    // (predictions.csv, report.json, model.bpk, ...) or an input.
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).ok();
    let out_folder = cli.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if let (Some(folder), Some(run), Some(name)) = (canonical(out_folder), canonical(&cli.run), cli.out.file_name())
        && let Ok(inside) = folder.join(name).strip_prefix(&run)
        && let Some(first) = inside.components().next().and_then(|c| c.as_os_str().to_str())
        && (RUN_FILES.contains(&first) || first == "checkpoint")
    {
        anyhow::bail!(
            "--out {}: would replace the run's own {first}; write the CSV under another name or elsewhere",
            cli.out.display()
        );
    }
    if let (Some(out), Some(input)) = (canonical(&cli.out), canonical(&cli.input))
        && (out == input || (input.is_dir() && out.starts_with(&input) && mammo::is_image_path(&out)))
    {
        anyhow::bail!("--out {}: is one of the --input files; write the CSV elsewhere", cli.out.display());
    }
    if let Some(dir) = &cli.gradcam {
        if dir.exists() && !dir.is_dir() {
            anyhow::bail!("--gradcam {}: is a file; expected a folder for the heatmap overlays", dir.display());
        }
        if std::path::absolute(dir).ok() == std::path::absolute(&cli.out).ok() {
            anyhow::bail!("--gradcam {} and --out name the same path: the overlays need a folder of their own", dir.display());
        }
    }
    let is_npz = cli.input.extension().is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    if !is_npz && cli.split != "test" {
        anyhow::bail!("--split {} applies to an .npz input; {} is not one", cli.split, cli.input.display());
    }
    let split = match cli.split.as_str() {
        "train" => SplitName::Train,
        "val" => SplitName::Val,
        "test" => SplitName::Test,
        other => anyhow::bail!("--split `{other}`: expected train, val or test"),
    };
    if let Some(t) = cli.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
        anyhow::bail!("--threshold must be in [0, 1], got {t}");
    }
    // Created once the flags are checked, before the model runs (a folder that cannot be made
    // fails now, not after the predictions).
    if let Some(dir) = &cli.gradcam {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("--gradcam {}: cannot create it: {e}", dir.display()))?;
    }
    let backend = backend::select(&cli.backend)?;
    backend::explain_out_of_memory(format!("A batch of {} images needs more than it has: give a smaller --batch-size.", cli.batch_size));
    let device = backend.device;
    let mut run = RunModel::load(&cli.run, &device)?;
    if let Some(t) = cli.threshold {
        if !run.is_binary() {
            anyhow::bail!("--threshold applies to binary runs; {} has {} classes", cli.run.display(), run.class_names.len());
        }
        run.rule = Rule::Threshold(t);
    }
    let (dataset, names) = if is_npz {
        // Shrunk as the training run shrank its file (area filter), so the scores match.
        let d = derma_train::dataset::shrink_to(read_npz_split(&cli.input, split, &run)?, run.image_size())?;
        let names = (0..d.len()).map(|i| i.to_string()).collect::<Vec<_>>();
        (d, names)
    } else {
        let paths = list_images(&cli.input)?;
        let d = read_images(&paths, &run.config, &run.class_names)?;
        (d, paths.iter().map(|p| p.display().to_string()).collect())
    };
    let pred = run.predict(&dataset, cli.batch_size, &device);
    write_atomic(&cli.out, predictions_csv(&run, &names, &pred, is_npz).as_bytes())?;
    println!(
        "{} images → {} ({} on {}{}{}{})",
        dataset.len(),
        cli.out.display(),
        if run.is_binary() { "binary" } else { "multi-class" },
        backend.name,
        match run.rule {
            Rule::Threshold(t) => format!(", threshold {t}"),
            Rule::Argmax | Rule::Balanced(_) => String::new(),
        },
        if run.recalibration.is_some() { format!(", probabilities recalibrated (--calibrate {})", run.config.calibrate.name()) } else { String::new() },
        if matches!(run.rule, Rule::Balanced(_)) { ", classes by --decision balanced (probability / training class frequency)" } else { "" }
    );

    if let Some(dir) = &cli.gradcam {
        let size = run.image_size();
        let view = size.max(224); // overlays of small inputs are enlarged to be legible
        let eval = Augment::eval(size);
        let shown = Augment::eval(view);
        let shape = dataset.image_shape();
        // The folder's PNG files before this call: an earlier run into it (another model,
        // threshold or class names) may have left an image's overlay under another decision,
        // which would contradict the CSV.
        let mut earlier = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("--gradcam {}: cannot list it: {e}", dir.display()))? {
            let name = entry.map_err(|e| anyhow::anyhow!("--gradcam {}: cannot list it: {e}", dir.display()))?.file_name();
            if let Some(name) = name.to_str().filter(|n| n.ends_with(".png")) {
                earlier.insert(name.to_string());
            }
        }
        for start in (0..dataset.len()).step_by(cli.batch_size) {
            let idx: Vec<usize> = (start..(start + cli.batch_size).min(dataset.len())).collect();
            let batch = derma_data::batch::assemble(
                &dataset,
                &idx,
                start,
                &derma_data::LoaderConfig {
                    batch_size: idx.len(),
                    prefetch: 1,
                    augment: eval.clone(),
                    normalize: run.normalize,
                    seed: 0,
                    epoch: 0,
                },
            );
            // The decided class: multi-class, its logit; binary, the positive logit or (a
            // negative decision) the negated one.
            let logits = if run.is_binary() { 1 } else { run.class_names.len() };
            let targets: Vec<Target> = idx.iter().map(|&i| Target::of_decision(logits, run.decision(&pred.probs[i]))).collect();
            let maps = gradcam(&run.model, batch.images(&device), &targets);
            if start == 0 && maps.first().is_some_and(|m| m.is_single_cell()) {
                eprintln!(
                    "warning: --gradcam: at {size} px the run's last feature map is 1x1 (output stride {}): a heatmap \
                     cannot show where the evidence lies, and the overlays show none; train with --output-stride 8 \
                     or a larger --image-size for Grad-CAM",
                    run.config.output_stride
                );
            }
            for (&i, map) in idx.iter().zip(&maps) {
                let img = shown.run(dataset.image(i), shape, 0, 0, i);
                let heat = map.upsample(view, view);
                let rgb = overlay(&img, [view, view, shape[2]], &heat, 0.5);
                let stem = if is_npz {
                    format!("{}-{i:05}", cli.split)
                } else {
                    PathBuf::from(&names[i]).file_stem().map_or(format!("{i:05}"), |s| format!("{i:05}-{}", s.to_string_lossy()))
                };
                let decided = run.decision(&pred.probs[i]);
                let name = format!("{stem}-{}.png", run.class_names[decided].replace(['/', ' '], "_"));
                let path = dir.join(&name);
                // Every other `<stem>-*.png`: this image's overlay under another decision.
                let prefix = format!("{stem}-");
                for stale in earlier.range(prefix.clone()..).take_while(|n| n.starts_with(&prefix)).filter(|n| **n != name) {
                    let stale = dir.join(stale);
                    if stale.is_file() {
                        std::fs::remove_file(&stale).map_err(|e| anyhow::anyhow!("--gradcam: removing the stale {}: {e}", stale.display()))?;
                    }
                }
                let mut png = Vec::new();
                image::codecs::png::PngEncoder::new(&mut png)
                    .write_image(&rgb, view as u32, view as u32, image::ExtendedColorType::Rgb8)
                    .map_err(|e| anyhow::anyhow!("encoding {}: {e}", path.display()))?;
                write_atomic(&path, &png)?;
            }
        }
        println!("Grad-CAM overlays → {}", dir.display());
    }
    Ok(())
}
