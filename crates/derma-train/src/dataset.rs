//! The task's data: a MedMNIST dataset (downloaded, or the `--npz` file) or image files
//! (`folder`, `csv`, `cbis-ddsm`) → the train / val / test [`ImageDataset`]s of a run, at the
//! run's image size, in the binary view of `--positive-classes` when one is given.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use derma_data::ImageDataset;

use crate::config::TrainConfig;

/// The three splits of a task, with the task's class names.
pub struct TaskData {
    /// Training split.
    pub train: ImageDataset,
    /// Validation split.
    pub val: ImageDataset,
    /// Test split.
    pub test: ImageDataset,
    /// File datasets: the patient of every image of train, val and test (an image without a
    /// patient id is its own patient), for patient-grouped cross-validation. `None` for
    /// MedMNIST, whose images are independent.
    pub patients: Option<[Vec<String>; 3]>,
    /// File datasets: the file of every image of train, val and test, in split order (the
    /// `index` of `predictions.csv`), written to the run folder's `splits.csv`. `None` for
    /// MedMNIST (the index is the `.npz`'s).
    pub paths: Option<[Vec<std::path::PathBuf>; 3]>,
}

impl TaskData {
    /// Single-logit binary task?
    pub fn is_binary(&self) -> bool {
        self.train.num_classes() == 2
    }

    /// A hash (FNV-1a, hex) of every split's images, shapes and labels: a resumed run must see
    /// the data its checkpoint was trained on.
    pub fn fingerprint(&self) -> String {
        let mut h = FNV_OFFSET;
        for d in [&self.train, &self.val, &self.test] {
            for dim in d.image_shape() {
                h = fnv1a(h, &(dim as u64).to_le_bytes());
            }
            h = fnv1a_images(fnv1a(h, &(d.len() as u64).to_le_bytes()), d);
        }
        format!("{h:016x}")
    }
}

/// FNV-1a, 64 bits: a stable hash (the same on every platform and build) for folder names
/// and data fingerprints.
pub(crate) fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// [`fnv1a`] over every image of `d` followed by its label (u64, little-endian), in order.
pub(crate) fn fnv1a_images(mut h: u64, d: &ImageDataset) -> u64 {
    for i in 0..d.len() {
        h = fnv1a(h, d.image(i));
        h = fnv1a(h, &(d.label(i) as u64).to_le_bytes());
    }
    h
}

/// The configuration keys that decide which images are loaded, as text: configurations with
/// the same fingerprint load the same data (a sweep trial changing one reloads the data).
pub fn data_fingerprint(c: &TrainConfig) -> String {
    let file = c.is_file_dataset();
    format!(
        "{:?}",
        (
            &c.dataset,
            c.size,
            &c.npz,
            &c.data_root,
            &c.data_dir,
            &c.manifest,
            &c.positive_classes,
            // MedMNIST images are shrunk to the training size at load time too.
            c.image_size(),
            file.then(|| (&c.intensity, &c.resize, c.split_fractions, c.seed, &c.patient_pattern)),
        )
    )
}

fn to_dataset(split: &medmnist::Split, names: &[String]) -> anyhow::Result<ImageDataset> {
    ImageDataset::new(
        split.images.clone(),
        split.labels.iter().map(|&l| l as usize).collect(),
        [split.height, split.width, split.channels],
        names.to_vec(),
    )
    .map_err(|e| anyhow::anyhow!(e))
}

/// The patient id of an image without one in [`TaskData::patients`]: this prefix and its path
/// (its own patient, grouped with no other image; `splits.csv` leaves it empty).
pub(crate) const OWN_PATIENT: &str = "image:";

/// Loads the configured data — a MedMNIST dataset (downloading it if needed), the `.npz`
/// given with `--npz`, or image files (`folder`, `csv`, `cbis-ddsm`) — and applies the binary
/// view of `--positive-classes`.
pub fn load_data(config: &TrainConfig) -> anyhow::Result<TaskData> {
    let (mut data, source) = if config.is_file_dataset() {
        (load_files(config)?, config.dataset.clone())
    } else {
        // Messages name the file a problem is in (`the val split of dermamnist is empty` did not).
        let source = config.npz.as_ref().map_or_else(|| config.dataset.clone(), |p| format!("{} ({})", config.dataset, p.display()));
        (load_medmnist(config)?, source)
    };
    if let Some(pos) = &config.positive_classes {
        let (positives, bin) = binary_view(pos, data.train.class_names(), &source)?;
        data.train = data.train.binary(&positives, bin.clone());
        data.val = data.val.binary(&positives, bin.clone());
        data.test = data.test.binary(&positives, bin);
    }
    for (name, d) in [("train", &data.train), ("val", &data.val), ("test", &data.test)] {
        if d.is_empty() {
            anyhow::bail!("the {name} split of {source} is empty");
        }
        // A class missing from a split leaves its recall, the AUC and the screening threshold
        // undefined there (or unlearnable, in train): refused rather than reported as numbers.
        let counts = d.class_counts();
        if let Some(c) = counts.iter().position(|&n| n == 0) {
            let names = d.class_names();
            let fix = if config.is_file_dataset() {
                "; more patients of that class, other --split-fractions or a split column in the manifest fix it"
            } else {
                ""
            };
            anyhow::bail!(
                "the {name} split of {source} has no `{}` image ({} images: {}){fix}",
                names[c],
                d.len(),
                names.iter().zip(&counts).map(|(n, k)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
            );
        }
    }
    if config.select_metric().map_err(anyhow::Error::msg)?.needs_binary() && !data.is_binary() {
        anyhow::bail!(
            "--select-metric {} needs a two-class task; {source} has {} classes (use --positive-classes)",
            config.select_metric,
            data.train.num_classes()
        );
    }
    Ok(data)
}

/// `--positive-classes` (names or indices) of a dataset with classes `names`: the positive
/// class indices and the two names of the binary view (`not a/b`, `a/b`).
pub fn binary_view(positive: &[String], names: &[String], source: &str) -> anyhow::Result<(Vec<usize>, [String; 2])> {
    let positives = positive
        .iter()
        .map(|p| {
            p.parse::<usize>()
                .ok()
                .filter(|&i| i < names.len())
                .or_else(|| names.iter().position(|n| n == p))
                .ok_or_else(|| anyhow::anyhow!("--positive-classes: `{p}` is not a class of {source} (classes: {})", names.join(", ")))
        })
        .collect::<anyhow::Result<Vec<usize>>>()?;
    // One class given twice, by name and by index (`mel,4`): the names would read `mel/mel`.
    for (k, &i) in positives.iter().enumerate() {
        if let Some(j) = positives[..k].iter().position(|&e| e == i) {
            anyhow::bail!("--positive-classes: `{}` and `{}` are the same class of {source} ({})", positive[j], positive[k], names[i]);
        }
    }
    let pos_names: Vec<&str> = positives.iter().map(|&i| names[i].as_str()).collect();
    Ok((positives, [format!("not {}", pos_names.join("/")), pos_names.join("/")]))
}

/// Image files through the `mammo` crate: manifest → patient-level splits → decoded,
/// windowed and resized `u8` images at the training resolution.
fn load_files(config: &TrainConfig) -> anyhow::Result<TaskData> {
    let manifests = config.manifest.clone().unwrap_or_default();
    // The folder image paths are relative to, for --patient-pattern.
    let (manifest, root) = match config.dataset.as_str() {
        "folder" => {
            let dir = config.data_dir.as_deref().ok_or_else(|| anyhow::anyhow!("--dataset folder needs --data-dir"))?;
            (mammo::read_folder(dir)?, dir.to_path_buf())
        }
        "csv" => {
            let root = manifests[0].parent().map(Path::to_path_buf).unwrap_or_default();
            (mammo::read_csv(&manifests[0], None)?, root)
        }
        _ => (mammo::read_cbis_ddsm(&manifests, config.data_dir.as_deref())?, PathBuf::new()),
    };
    let manifest = match &config.patient_pattern {
        Some(p) => {
            let pattern: mammo::PatientPattern = p.parse().map_err(|e| anyhow::anyhow!("--patient-pattern: {e}"))?;
            let m = manifest.patients_from_paths(&pattern, &root).map_err(|e| anyhow::anyhow!("--patient-pattern: {e}"))?;
            let patients: std::collections::HashSet<&str> = m.records.iter().filter_map(|r| r.patient.as_deref()).collect();
            println!("--patient-pattern: {} images of {} patients", m.len(), patients.len());
            m
        }
        None => manifest,
    };
    // Train, val and test each need every class: a class of one or two images is most often a
    // mistyped label (`malignnat`), which the split error would not point at.
    // (With --positive-classes the merged classes matter: load_data checks them per split.)
    let counts = manifest.class_counts();
    if let Some(c) = counts.iter().position(|&n| n < 3).filter(|_| config.positive_classes.is_none()) {
        let rows: Vec<&str> = manifest.records.iter().filter(|r| r.label == c).map(|r| r.origin.as_str()).collect();
        anyhow::bail!(
            "class `{}` has only {} image(s) ({}); train, val and test each need every class, so at least 3: a typo in a \
             label? (classes: {})",
            manifest.class_names[c],
            counts[c],
            rows.join(", "),
            manifest.class_names.iter().zip(&counts).map(|(n, k)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
        );
    }
    if config.positive_classes.is_none()
        && let [negative, positive] = manifest.class_names.as_slice()
    {
        // Label 1 is what sensitivity, AUC and the threshold are about.
        println!("classes: `{negative}` = 0, `{positive}` = 1 (the positive class); --positive-classes {negative} screens for `{negative}` instead");
        if looks_negative(positive) && !looks_negative(negative) {
            eprintln!(
                "warning: the positive class (label 1, from sorting the class names) is `{positive}`, which reads like a \
                 negative finding; give --positive-classes {negative} to screen for `{negative}`"
            );
        }
    }
    if manifest.records.iter().all(|r| r.patient.is_none() && r.split.is_none()) {
        eprintln!(
            "warning: {} has no patient ids: every image is split as its own patient, so two images of one patient \
             (views, crops of one lesion) can land in train and test. --patient-pattern REGEX takes the patient id \
             from the file names (e.g. 'P_\\d+'); a CSV manifest with a patient_id column (--dataset csv) gives it directly.",
            if config.dataset == "folder" { "a folder dataset" } else { "the manifest" }
        );
    }
    let load = mammo::LoadConfig {
        size: config.image_size(),
        fit: config.resize.parse().map_err(|e| anyhow::anyhow!("--resize: {e}"))?,
        intensity: config.intensity.parse().map_err(|e| anyhow::anyhow!("--intensity: {e}"))?,
        fractions: config.split_fractions,
        seed: config.seed,
    };
    let crops = mammo::load(&manifest, &load)?;
    println!(
        "decoded {} images in {:.1}s ({:.0} images/s, {} px, {} channel(s))",
        crops.report.images,
        crops.report.seconds,
        crops.report.images as f64 / crops.report.seconds.max(1e-9),
        load.size,
        crops.train.channels
    );
    let patients = |split: &mammo::CropSplit| -> Vec<String> {
        split
            .patients
            .iter()
            .zip(&split.paths)
            .map(|(p, path)| p.clone().unwrap_or_else(|| format!("{OWN_PATIENT}{}", path.display())))
            .collect()
    };
    let patients = Some([patients(&crops.train), patients(&crops.val), patients(&crops.test)]);
    let paths = Some([crops.train.paths.clone(), crops.val.paths.clone(), crops.test.paths.clone()]);
    let to_dataset = |split: mammo::CropSplit| {
        ImageDataset::new(split.pixels, split.labels, [split.height, split.width, split.channels], crops.class_names.clone())
            .map_err(|e| anyhow::anyhow!(e))
    };
    Ok(TaskData { train: to_dataset(crops.train)?, val: to_dataset(crops.val)?, test: to_dataset(crops.test)?, patients, paths })
}

/// Whether a class name reads like a negative finding (`normal`, `benign`, `negative`, …).
fn looks_negative(name: &str) -> bool {
    let n = name.to_lowercase();
    ["normal", "benign", "negative", "healthy", "control", "no", "none", "false", "0"].iter().any(|w| n == *w || n.starts_with(&format!("{w}_")) || n.starts_with(&format!("{w}-")))
}

/// `d` with its images resized to `size`×`size` when they are larger, with an area-averaging
/// (antialiased) filter, once: the per-batch bilinear sampling of `derma-data` takes two taps
/// and would alias a downscale (e.g. `--size 224 --image-size 64`), where torchvision's
/// `Resize` antialiases. Smaller images are left to the per-batch (bilinear) upsampling.
pub fn shrink_to(d: ImageDataset, size: usize) -> anyhow::Result<ImageDataset> {
    use rayon::prelude::*;
    let [h, w, c] = d.image_shape();
    if h <= size && w <= size {
        return Ok(d);
    }
    let images: Vec<Vec<u8>> = (0..d.len())
        .into_par_iter()
        .map(|i| {
            let img = mammo::Image { pixels: d.image(i).to_vec(), height: h, width: w, channels: c };
            mammo::resize(&img, size, mammo::Fit::Stretch).map(|r| r.pixels)
        })
        .collect::<Result<_, _>>()?;
    ImageDataset::new(images.concat(), d.labels().to_vec(), [size, size, c], d.class_names().to_vec()).map_err(|e| anyhow::anyhow!(e))
}

/// A MedMNIST dataset (downloaded and md5-checked, or the `--npz` file).
fn load_medmnist(config: &TrainConfig) -> anyhow::Result<TaskData> {
    let info = medmnist::lookup(&config.dataset).map_err(|e| anyhow::anyhow!("--dataset {}: {e}", config.dataset))?;
    let arrays = match &config.npz {
        Some(path) => {
            let arrays = medmnist::read_npz_checked(path, info.n_classes()).map_err(|e| {
                // The reader's causes (e.g. the CRC or decompression failure) stay attached.
                anyhow::Error::new(e).context(format!(
                    "--npz {} (read as --dataset {}: {} classes, {})",
                    path.display(),
                    config.dataset,
                    info.n_classes(),
                    info.labels.join(", ")
                ))
            })?;
            // Without `--image-size` the run trains at `--size`: a file of another resolution
            // would be resampled without a word. With it, resampling is what was asked for.
            let (h, w) = (arrays.train.height, arrays.train.width);
            let side = config.size as usize;
            if config.image_size.is_none() && (h != side || w != side) {
                let fix = if h == w && u32::try_from(h).is_ok_and(|px| medmnist::ImageSize::from_pixels(px).is_ok()) {
                    format!("pass --size {h}, or --image-size N to resample to N px")
                } else {
                    "pass --image-size N to resample to N px".to_string()
                };
                anyhow::bail!("--npz {}: its images are {h}x{w} but --size is {side}: {fix}", path.display());
            }
            arrays
        }
        None => {
            let size = medmnist::ImageSize::from_pixels(config.size)?;
            let fetcher = medmnist::Fetcher::new(medmnist::Fetcher::resolve_root(config.data_root.clone()))
                .with_offline(config.offline)
                .with_progress(std::io::stderr().is_terminal());
            medmnist::load(&config.dataset, size, &fetcher)?
        }
    };
    let names: Vec<String> = info.labels.iter().map(|s| s.to_string()).collect();
    let size = config.image_size();
    Ok(TaskData {
        train: shrink_to(to_dataset(&arrays.train, &names)?, size)?,
        val: shrink_to(to_dataset(&arrays.val, &names)?, size)?,
        test: shrink_to(to_dataset(&arrays.test, &names)?, size)?,
        patients: None,
        paths: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names that make a two-class file dataset's label 1 suspicious as the positive class
    /// (sorted `cancer`/`normal` makes `normal` positive).
    #[test]
    fn negative_looking_class_names() {
        for n in ["normal", "Normal", "benign", "NEGATIVE", "healthy", "normal_tissue", "no", "0"] {
            assert!(looks_negative(n), "{n}");
        }
        for n in ["malignant", "cancer", "Malignant", "positive", "1", "abnormal", "nodule"] {
            assert!(!looks_negative(n), "{n}");
        }
    }

    /// A 1-px checkerboard (mean 127.5) shrunk 32 → 8: the area filter gives flat grey, where
    /// two-tap bilinear sampling would pick single pixels (0 or 255, aliasing).
    #[test]
    fn shrinking_averages_instead_of_aliasing() {
        let px: Vec<u8> = (0..32 * 32).map(|i| if (i / 32 + i % 32) % 2 == 0 { 0 } else { 255 }).collect();
        let d = ImageDataset::new(px, vec![0], [32, 32, 1], vec!["a".into()]).unwrap();
        let s = shrink_to(d, 8).unwrap();
        assert_eq!(s.image_shape(), [8, 8, 1]);
        assert!(s.image(0).iter().all(|&v| (120..=135).contains(&v)), "{:?}", s.image(0));
        // Not larger: unchanged.
        let d = ImageDataset::new(vec![7; 4 * 4 * 3], vec![0], [4, 4, 3], vec!["a".into()]).unwrap();
        assert_eq!(shrink_to(d, 8).unwrap().image_shape(), [4, 4, 3]);
    }
}
