//! The crate's error type.
//!
//! Every failure is a variant of [`Error`]; nothing in this crate panics on bad input. Each
//! message names the file concerned — the image, or the manifest and its line — and says what
//! was expected, so that a user can act on it without reading the source. Underlying causes
//! (I/O, CSV and image-decoder errors) are attached as [`std::error::Error::source`] rather than
//! repeated in the message; print the whole chain (for example with anyhow's `{:#}`) to see
//! them.
//!
//! Where an image was listed by a manifest, messages give both the image path and the
//! manifest line (the record's `origin`, e.g. "`crops.csv` line 12").

use std::path::{Path, PathBuf};

use crate::split::Split;

/// Shorthand for `Result<T, mammo::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The image formats this crate reads, for messages.
pub(crate) const FORMATS: &str = "8- or 16-bit grayscale, RGB or RGBA PNG or TIFF (gray+alpha: PNG only), or a JPEG";

/// What to do with DICOM files, for messages.
const DICOM_ADVICE: &str = "DICOM is not read: convert the images to PNG or TIFF (16-bit keeps \
     the full range) and point the path column at the converted files (a converted file next to \
     the .dcm, with the same name and a .png, .tif, .tiff, .jpg or .jpeg extension, is used \
     automatically); releases that rename the files (the Kaggle CBIS-DDSM JPEG release: \
     jpeg/<series UID>/1-N.jpg, mapped in its dicom_info.csv) need a CSV manifest \
     (--dataset csv: path,label,patient_id[,split]) listing the converted crops";

/// Everything that can go wrong while reading manifests, decoding images and splitting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- options -----------------------------------------------------------
    /// A textual option (intensity window, fit, split name) does not parse.
    #[error("invalid {option} `{value}`; expected {expected}")]
    InvalidOption {
        /// Which option, e.g. "intensity".
        option: &'static str,
        /// The value as given.
        value: String,
        /// What valid values look like.
        expected: String,
    },

    /// Split fractions that cannot be used.
    #[error(
        "invalid split fractions {fractions:?}; expected three finite train,val,test fractions >= 0 with a positive sum"
    )]
    BadFractions {
        /// The fractions as given.
        fractions: [f64; 3],
    },

    /// The target image size is zero.
    #[error("invalid image size 0; expected a positive number of pixels")]
    ZeroSize,

    // ----- files -------------------------------------------------------------
    /// A filesystem operation failed.
    #[error("{action} `{}`", .path.display())]
    Io {
        /// What was being attempted, e.g. "cannot read manifest".
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// An image listed by a manifest does not exist.
    #[error(
        "image file {} does not exist{}",
        located(.path, .origin),
        others_missing(*.others)
    )]
    MissingImage {
        /// The resolved image path.
        path: PathBuf,
        /// Where it was listed.
        origin: String,
        /// How many other listed images are missing as well.
        others: usize,
    },

    /// A DICOM file where a PNG/TIFF/JPEG image was expected.
    #[error("{} is a DICOM file; {DICOM_ADVICE}", located(.path, .origin))]
    Dicom {
        /// The `.dcm` path.
        path: PathBuf,
        /// Where it was listed (empty if not from a manifest).
        origin: String,
    },

    /// An image file in a format this crate does not read, in a class folder.
    #[error("`{}` is not read (its format); expected an {FORMATS} (.png, .tif, .tiff, .jpg, .jpeg): convert it, or move it out of the class folder", .path.display())]
    UnreadFormat {
        /// The file.
        path: PathBuf,
    },

    // ----- images ------------------------------------------------------------
    /// The image cannot be opened or decoded.
    #[error("cannot decode image {}; expected an {FORMATS}", located(.path, .origin))]
    Decode {
        /// The image file.
        path: PathBuf,
        /// Where it was listed (empty if not from a manifest).
        origin: String,
        /// The decoder's diagnosis.
        #[source]
        source: image::ImageError,
    },

    /// The image decodes to a pixel format this crate does not handle.
    #[error(
        "image {} has pixel format {found}; expected 8- or 16-bit gray, gray+alpha, RGB or RGBA",
        located(.path, .origin)
    )]
    UnsupportedPixelFormat {
        /// The image file.
        path: PathBuf,
        /// Where it was listed (empty if not from a manifest).
        origin: String,
        /// The pixel format found, e.g. `Rgb32F`.
        found: String,
    },

    /// An image too elongated for the `crop` fit, which resizes the short side to the
    /// training size first (the long side would need `size × aspect` pixels).
    #[error(
        "image {} is {width}x{height} px (aspect ratio {:.2}:1); expected a lesion crop of aspect ratio at most \
         {max}:1 for --resize crop: fix or remove the file, or use --resize pad or stretch",
        located(.path, .origin),
        *.width.max(.height) as f64 / (*.width.min(.height)).max(1) as f64
    )]
    ExtremeAspect {
        /// The image file.
        path: PathBuf,
        /// Where it was listed (empty if not from a manifest).
        origin: String,
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
        /// The largest accepted aspect ratio.
        max: usize,
    },

    // ----- manifests ---------------------------------------------------------
    /// The CSV is malformed (invalid UTF-8, ...).
    #[error(
        "`{}`{}: not a valid CSV manifest; expected a header row, then one row per image with as many fields as the header",
        .path.display(),
        line_suffix(*.line)
    )]
    Csv {
        /// The manifest.
        path: PathBuf,
        /// The line where parsing failed, if known.
        line: Option<u64>,
        /// The CSV parser's diagnosis.
        #[source]
        source: csv::Error,
    },

    /// A row of a CSV manifest with another number of fields than the header.
    #[error(
        "`{}` line {line}: {found} fields, but the header has {expected}; expected one row per image with as many fields as the header (quote a field that holds a comma)",
        .path.display()
    )]
    FieldCount {
        /// The manifest.
        path: PathBuf,
        /// The row's line (the header is line 1).
        line: u64,
        /// Fields in the row.
        found: usize,
        /// Fields in the header.
        expected: usize,
    },

    /// A CSV manifest's header names a column it reads twice (compared as its names are:
    /// without case, `_`, `-` and spaces alike, aliases included).
    #[error("`{}` has more than one `{column}` column: {found}; keep one", .path.display())]
    DuplicateColumn {
        /// The manifest.
        path: PathBuf,
        /// The column read.
        column: &'static str,
        /// The header's columns of that name, with their positions.
        found: String,
    },

    /// A required column is missing from a CSV manifest.
    #[error("`{}` has no `{column}` column; expected {expected}; columns found: {found}", .path.display())]
    MissingColumn {
        /// The manifest.
        path: PathBuf,
        /// The column that is required.
        column: &'static str,
        /// What the header should contain.
        expected: &'static str,
        /// The columns the header does have, comma-separated.
        found: String,
    },

    /// A required field is empty.
    #[error("{origin}: the `{column}` field is empty; expected {expected}")]
    EmptyField {
        /// Manifest and line.
        origin: String,
        /// The column.
        column: &'static str,
        /// What the field should hold.
        expected: &'static str,
    },

    /// A label that names no known class.
    #[error("{origin}: unknown label `{label}`; known labels: {known}")]
    UnknownLabel {
        /// Manifest and line.
        origin: String,
        /// The label as written.
        label: String,
        /// The accepted labels, comma-separated.
        known: String,
    },

    /// Integer labels (class indices) that leave classes without a row.
    #[error(
        "{place}: integer labels are class indices 0..={max}, but {missing} no rows; {hint}"
    )]
    IndexGap {
        /// The manifest, formatted.
        place: String,
        /// The largest index.
        max: usize,
        /// The indices without rows with their verb ("class 1 has", "classes 2, 3 have").
        missing: String,
        /// What to look at: the row of the largest index (a typo?), or 1-based labels.
        hint: String,
    },

    /// One image file listed twice: its copies could land in different splits (leakage), or
    /// carry different labels.
    #[error("{second}: `{path}` is already listed at {first}; list each image once")]
    DuplicateImage {
        /// The file (as resolved).
        path: PathBuf,
        /// Where it is listed first.
        first: String,
        /// Where it is listed again.
        second: String,
    },

    /// Two labels that differ only in case or spacing (`benign`, ` Benign `): they would
    /// silently become two classes.
    #[error("{second}: label `{label}` differs only in case or spacing from `{other}` at {first}; write one class one way")]
    AmbiguousLabel {
        /// The later spelling.
        label: String,
        /// Where it is.
        second: String,
        /// The earlier spelling.
        other: String,
        /// Where that is.
        first: String,
    },

    /// A split value that is not train, val or test.
    #[error(
        "{origin}: split `{value}` is not a split name; expected train, val or test (or an empty field)"
    )]
    BadSplit {
        /// Manifest and line.
        origin: String,
        /// The value as written.
        value: String,
    },

    /// Some records have a split and others do not.
    #[error(
        "{with} records have a split and {without} do not (e.g. {example_with} has one, {example_without} has none); \
         expected a split for every record, or for none (then splits are drawn by patient)"
    )]
    MixedSplit {
        /// Records with a split.
        with: usize,
        /// Records without one.
        without: usize,
        /// The origin of the first record with a split.
        example_with: String,
        /// The origin of the first record without one.
        example_without: String,
    },

    /// A manifest (or an image folder) lists no images.
    #[error("{place} lists no images; expected {expected}")]
    EmptyManifest {
        /// The manifest or folder, formatted.
        place: String,
        /// What it should contain.
        expected: &'static str,
    },

    /// A class has no images.
    #[error("class `{class}` has no images in {place}; every class needs at least one image")]
    EmptyClass {
        /// The class name.
        class: String,
        /// Where it was looked for, e.g. "folder `crops/benign`" or "`crops.csv`".
        place: String,
    },

    /// Fewer than two classes.
    #[error("{place} has {found}; a classifier needs at least two classes")]
    TooFewClasses {
        /// The manifest or folder, formatted.
        place: String,
        /// The classes found, formatted.
        found: String,
    },

    // ----- patient pattern ---------------------------------------------------
    /// `--patient-pattern` finds no patient id in an image's path.
    #[error(
        "image {}: its path `{relative}` does not match the patient pattern `{pattern}`{}; expected every image path \
         (relative to the image folder or the CSV's folder) to contain the patient id: fix the pattern or the file name",
        located(.path, .origin),
        others_unmatched(*.others)
    )]
    PatientUnmatched {
        /// The image file.
        path: PathBuf,
        /// Where it was listed.
        origin: String,
        /// The path the pattern was searched in.
        relative: String,
        /// The pattern.
        pattern: String,
        /// How many other images do not match either.
        others: usize,
    },

    /// `--patient-pattern` on a manifest that already gives patient ids.
    #[error(
        "{origin} already has patient id `{patient}`; --patient-pattern is for datasets without patient ids: \
         drop the flag, or the manifest's patient_id column"
    )]
    PatientAlreadyKnown {
        /// Manifest and line of the first record with a patient id.
        origin: String,
        /// Its patient id.
        patient: String,
    },

    // ----- splits ------------------------------------------------------------
    /// A patient's images are in two or more given splits.
    #[error(
        "patient `{patient}` has images in the {splits} splits (e.g. {examples}){}; \
         a patient's images must all be in one split: fix the split values",
        others_patients(*.others)
    )]
    PatientInSeveralSplits {
        /// The patient id.
        patient: String,
        /// The splits concerned, e.g. "train and test".
        splits: String,
        /// One record origin per split.
        examples: String,
        /// How many other patients are in several splits too.
        others: usize,
    },

    /// A split holds no images.
    #[error(
        "the {split} split is empty (train {train}, val {val}, test {test} images from {patients} patients); \
         expected images in every split: add images, raise its fraction or give a split column"
    )]
    EmptySplit {
        /// The empty split.
        split: Split,
        /// Images per split.
        train: usize,
        /// Images per split.
        val: usize,
        /// Images per split.
        test: usize,
        /// Number of distinct patients (records without a patient id count one each).
        patients: usize,
    },

    // ----- loading -----------------------------------------------------------
    /// Several images failed to load; the first, in manifest order, is the source.
    #[error(
        "{failed} of {total} images could not be loaded; the first, in manifest order, is {first}"
    )]
    ImagesFailed {
        /// Number of images that failed.
        failed: usize,
        /// Number of images in the manifest.
        total: usize,
        /// The first failing image, with its origin.
        first: String,
        /// The first failure.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// For `map_err`: an I/O failure while doing `action` (e.g. "cannot read manifest") on `path`.
    pub(crate) fn io<'p>(action: &'static str, path: &'p Path) -> impl Fn(std::io::Error) -> Error + 'p {
        move |source| Error::Io { action, path: path.to_path_buf(), source }
    }

    /// Attach the manifest origin of the image to an image error that has none yet.
    pub fn with_origin(mut self, record_origin: &str) -> Self {
        match &mut self {
            Error::Dicom { origin, .. }
            | Error::Decode { origin, .. }
            | Error::UnsupportedPixelFormat { origin, .. }
            | Error::ExtremeAspect { origin, .. }
            | Error::MissingImage { origin, .. }
                if origin.is_empty() =>
            {
                *origin = record_origin.to_string();
            }
            _ => {}
        }
        self
    }
}

/// "`path`", followed by "(origin)" when the origin says more than the path.
pub(crate) fn located(path: &Path, origin: &str) -> String {
    let shown = path.display().to_string();
    if origin.is_empty() || origin == shown {
        format!("`{shown}`")
    } else {
        format!("`{shown}` ({origin})")
    }
}

fn others_missing(others: usize) -> String {
    match others {
        0 => String::new(),
        1 => "; 1 other listed image is missing too".into(),
        n => format!("; {n} other listed images are missing too"),
    }
}

fn others_unmatched(others: usize) -> String {
    match others {
        0 => String::new(),
        1 => " (1 other image does not match either)".into(),
        n => format!(" ({n} other images do not match either)"),
    }
}

fn others_patients(others: usize) -> String {
    match others {
        0 => String::new(),
        1 => "; 1 other patient is in several splits too".into(),
        n => format!("; {n} other patients are in several splits too"),
    }
}

fn line_suffix(line: Option<u64>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

