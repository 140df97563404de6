//! The catalogue of known MedMNIST datasets: flags, labels, split sizes,
//! download URLs and checksums.
//!
//! Facts are copied from the `INFO` table of the Python `medmnist` package
//! (v3, Zenodo record 10519652). Only datasets whose checksums could be
//! verified are listed.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::checksum::Checksum;
use crate::download::Remote;
use crate::error::{Error, Result};
use crate::npz::MedMnistArrays;

/// Base URL of the MedMNIST v3 files on Zenodo.
pub const ZENODO_FILES_URL: &str = "https://zenodo.org/records/10519652/files";

/// The kind of prediction task a dataset poses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    /// One label out of several classes.
    MultiClass,
    /// One label out of two classes.
    Binary,
    /// Several independent binary labels per image.
    MultiLabel,
    /// One label out of ordered grades.
    Ordinal,
}

/// The side length of the square images; MedMNIST publishes four.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageSize {
    /// 28 × 28 pixels (the original MedMNIST size; file `<flag>.npz`).
    Px28,
    /// 64 × 64 pixels (file `<flag>_64.npz`).
    Px64,
    /// 128 × 128 pixels (file `<flag>_128.npz`).
    Px128,
    /// 224 × 224 pixels (file `<flag>_224.npz`).
    Px224,
}

impl ImageSize {
    /// All sizes, smallest first; the order of [`DatasetInfo::md5`].
    pub const ALL: [ImageSize; 4] = [Self::Px28, Self::Px64, Self::Px128, Self::Px224];

    /// Side length in pixels.
    pub fn pixels(self) -> u32 {
        match self {
            Self::Px28 => 28,
            Self::Px64 => 64,
            Self::Px128 => 128,
            Self::Px224 => 224,
        }
    }

    /// The size with side length `pixels`, if MedMNIST publishes it.
    pub fn from_pixels(pixels: u32) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.pixels() == pixels)
            .ok_or_else(|| Error::UnsupportedSize {
                size: pixels.to_string(),
            })
    }

    /// Position in [`ImageSize::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// File name suffix used by MedMNIST: empty for 28, `_64` etc. otherwise.
    pub fn file_suffix(self) -> &'static str {
        match self {
            Self::Px28 => "",
            Self::Px64 => "_64",
            Self::Px128 => "_128",
            Self::Px224 => "_224",
        }
    }
}

impl fmt::Display for ImageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pixels())
    }
}

impl FromStr for ImageSize {
    type Err = Error;

    /// Parses `"28"`, `"64"`, `"128"` or `"224"`.
    fn from_str(s: &str) -> Result<Self> {
        s.trim()
            .parse::<u32>()
            .ok()
            .and_then(|px| Self::from_pixels(px).ok())
            .ok_or_else(|| Error::UnsupportedSize { size: s.to_owned() })
    }
}

/// One of the three standard partitions of a MedMNIST dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SplitName {
    /// Training split.
    Train,
    /// Validation split.
    Val,
    /// Test split.
    Test,
}

impl SplitName {
    /// All splits in file order; the order of [`DatasetInfo::split_sizes`].
    pub const ALL: [SplitName; 3] = [Self::Train, Self::Val, Self::Test];

    /// The prefix used in `.npz` member names: `train`, `val` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Val => "val",
            Self::Test => "test",
        }
    }

    /// Position in [`SplitName::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SplitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything known in advance about one MedMNIST dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetInfo {
    /// The dataset's flag, e.g. `"dermamnist"`; also the file name stem.
    pub flag: &'static str,
    /// The Python class name, e.g. `"DermaMNIST"`.
    pub python_name: &'static str,
    /// The prediction task.
    pub task: Task,
    /// Image channels: 1 (grayscale) or 3 (RGB).
    pub n_channels: usize,
    /// Short class names indexed by label value (e.g. `"akiec"`); suitable
    /// for column headers and logs.
    pub labels: &'static [&'static str],
    /// Full class names indexed by label value, as in MedMNIST's `INFO`.
    pub label_names: &'static [&'static str],
    /// Number of samples in the train, val and test splits.
    pub split_sizes: [usize; 3],
    /// MD5 of the `.npz` file for each size, in [`ImageSize::ALL`] order.
    pub md5: [&'static str; 4],
    /// Licence of the data.
    pub license: &'static str,
}

impl DatasetInfo {
    /// Number of classes (the length of [`DatasetInfo::labels`]).
    pub fn n_classes(&self) -> usize {
        self.labels.len()
    }

    /// Number of samples in `split`.
    pub fn split_size(&self, split: SplitName) -> usize {
        self.split_sizes[split.index()]
    }

    /// Cache file name, as the Python package names it: `dermamnist.npz` for
    /// 28 px, `dermamnist_64.npz` etc. otherwise.
    pub fn file_name(&self, size: ImageSize) -> String {
        format!("{}{}.npz", self.flag, size.file_suffix())
    }

    /// Download URL of the file for `size`.
    pub fn url(&self, size: ImageSize) -> String {
        format!("{ZENODO_FILES_URL}/{}?download=1", self.file_name(size))
    }

    /// Published MD5 of the file for `size` (lowercase hex).
    pub fn md5_hex(&self, size: ImageSize) -> &'static str {
        self.md5[size.index()]
    }

    /// Where to get the file for `size` and how to verify it.
    ///
    /// Fails only if the catalogue's MD5 is malformed (a bug in a custom entry).
    pub fn remote(&self, size: ImageSize) -> Result<Remote> {
        Ok(Remote {
            url: self.url(size),
            checksum: Checksum::md5(self.md5_hex(size))?,
            file_name: self.file_name(size),
        })
    }

    /// Check that arrays read from `path` have the geometry this entry
    /// promises for `size`: channels, image height/width and split lengths.
    pub fn check_arrays(
        &self,
        size: ImageSize,
        arrays: &MedMnistArrays,
        path: &Path,
    ) -> Result<()> {
        let mismatch = |what: String, expected: String, found: String| Error::CatalogueMismatch {
            path: path.to_owned(),
            what,
            expected,
            found,
        };
        let px = size.pixels() as usize;
        for name in SplitName::ALL {
            let split = arrays.split(name);
            if split.len != self.split_size(name) {
                return Err(mismatch(
                    format!("the {name} split length"),
                    self.split_size(name).to_string(),
                    split.len.to_string(),
                ));
            }
            if (split.height, split.width) != (px, px) {
                return Err(mismatch(
                    format!("the {name} image size"),
                    format!("{px}x{px}"),
                    format!("{}x{}", split.height, split.width),
                ));
            }
            if split.channels != self.n_channels {
                return Err(mismatch(
                    format!("the {name} channel count"),
                    self.n_channels.to_string(),
                    split.channels.to_string(),
                ));
            }
        }
        Ok(())
    }
}

/// DermaMNIST: dermatoscopic images of pigmented skin lesions (HAM10000), 7 classes.
pub const DERMAMNIST: DatasetInfo = DatasetInfo {
    flag: "dermamnist",
    python_name: "DermaMNIST",
    task: Task::MultiClass,
    n_channels: 3,
    labels: &["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"],
    label_names: &[
        "actinic keratoses and intraepithelial carcinoma",
        "basal cell carcinoma",
        "benign keratosis-like lesions",
        "dermatofibroma",
        "melanoma",
        "melanocytic nevi",
        "vascular lesions",
    ],
    split_sizes: [7007, 1003, 2005],
    md5: [
        "0744692d530f8e62ec473284d019b0c7",
        "b70a2f5635c6199aeaa28c31d7202e1f",
        "2defd784463fa5243564e855ed717de1",
        "8974907d8e169bef5f5b96bc506ae45d",
    ],
    license: "CC BY-NC 4.0",
};

/// BreastMNIST: breast ultrasound images, malignant vs. normal/benign.
pub const BREASTMNIST: DatasetInfo = DatasetInfo {
    flag: "breastmnist",
    python_name: "BreastMNIST",
    task: Task::Binary,
    n_channels: 1,
    labels: &["malignant", "normal-benign"],
    label_names: &["malignant", "normal, benign"],
    split_sizes: [546, 78, 156],
    md5: [
        "750601b1f35ba3300ea97c75c52ff8f6",
        "742edef2a1fd1524b2efff4bd7ba9364",
        "363e4b3f8d712e9b5de15470a2aaadf1",
        "b56378a6eefa9fed602bb16d192d4c8b",
    ],
    license: "CC BY 4.0",
};

/// Every dataset in the catalogue.
pub static DATASETS: &[DatasetInfo] = &[DERMAMNIST, BREASTMNIST];

/// The catalogue entry for `flag` (ASCII case-insensitive, e.g. `"dermamnist"`).
///
/// The error lists the known flags.
pub fn lookup(flag: &str) -> Result<&'static DatasetInfo> {
    DATASETS
        .iter()
        .find(|d| d.flag.eq_ignore_ascii_case(flag.trim()))
        .ok_or_else(|| Error::UnknownDataset {
            flag: flag.to_owned(),
            known: DATASETS
                .iter()
                .map(|d| d.flag)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dermamnist_facts_are_exact() {
        // Expected values: medmnist's `INFO["dermamnist"]` (medmnist/info.py: python_class,
        // task, n_channels, n_samples, label, MD5s of the 28/64/128/224-px files).
        let d = lookup("dermamnist").expect("known");
        assert_eq!(d.python_name, "DermaMNIST");
        assert_eq!(d.task, Task::MultiClass);
        assert_eq!(d.n_channels, 3);
        assert_eq!(d.split_sizes, [7007, 1003, 2005]);
        assert_eq!(d.labels, ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]);
        assert_eq!(
            d.label_names[0],
            "actinic keratoses and intraepithelial carcinoma"
        );
        assert_eq!(d.label_names[2], "benign keratosis-like lesions");
        assert_eq!(d.label_names[5], "melanocytic nevi");
        assert_eq!(d.label_names.len(), d.n_classes());
        let expected = [
            (
                ImageSize::Px28,
                "dermamnist.npz",
                "0744692d530f8e62ec473284d019b0c7",
            ),
            (
                ImageSize::Px64,
                "dermamnist_64.npz",
                "b70a2f5635c6199aeaa28c31d7202e1f",
            ),
            (
                ImageSize::Px128,
                "dermamnist_128.npz",
                "2defd784463fa5243564e855ed717de1",
            ),
            (
                ImageSize::Px224,
                "dermamnist_224.npz",
                "8974907d8e169bef5f5b96bc506ae45d",
            ),
        ];
        for (size, file, md5) in expected {
            assert_eq!(d.file_name(size), file);
            assert_eq!(d.md5_hex(size), md5);
            assert_eq!(
                d.url(size),
                format!("https://zenodo.org/records/10519652/files/{file}?download=1")
            );
            let remote = d.remote(size).expect("valid md5");
            assert_eq!(remote.file_name, file);
            assert_eq!(remote.url, d.url(size));
            assert_eq!(remote.checksum, Checksum::Md5(md5.to_owned()));
        }
    }

    #[test]
    fn breastmnist_facts() {
        let b = lookup("BreastMNIST").expect("case-insensitive lookup");
        assert_eq!(b.flag, "breastmnist");
        assert_eq!(b.task, Task::Binary);
        assert_eq!(b.n_channels, 1);
        assert_eq!(b.label_names, ["malignant", "normal, benign"]);
        assert_eq!(b.split_sizes, [546, 78, 156]);
        assert_eq!(
            b.md5_hex(ImageSize::Px28),
            "750601b1f35ba3300ea97c75c52ff8f6"
        );
        assert_eq!(
            b.md5_hex(ImageSize::Px224),
            "b56378a6eefa9fed602bb16d192d4c8b"
        );
    }

    #[test]
    fn every_entry_is_consistent() {
        for d in DATASETS {
            assert_eq!(d.labels.len(), d.label_names.len(), "{}", d.flag);
            assert!(matches!(d.n_channels, 1 | 3), "{}", d.flag);
            for size in ImageSize::ALL {
                d.remote(size).unwrap_or_else(|e| panic!("{}: {e}", d.flag));
            }
        }
    }

    #[test]
    fn unknown_flag_lists_known_flags() {
        let err = lookup("pathmnistt").expect_err("unknown");
        let msg = err.to_string();
        assert!(msg.contains("`pathmnistt`"), "{msg}");
        assert!(
            msg.contains("dermamnist") && msg.contains("breastmnist"),
            "{msg}"
        );
    }

    #[test]
    fn image_sizes_parse_and_reject() {
        for size in ImageSize::ALL {
            assert_eq!(ImageSize::from_pixels(size.pixels()).expect("valid"), size);
            assert_eq!(size.to_string().parse::<ImageSize>().expect("valid"), size);
        }
        assert_eq!(ImageSize::Px224.index(), 3);
        for bad in ["32", "", "big", "-28"] {
            let err = bad.parse::<ImageSize>().expect_err(bad);
            assert!(err.to_string().contains("28, 64, 128, 224"), "{err}");
        }
        assert!(ImageSize::from_pixels(0).is_err());
    }
}
