//! Manifests: which image files to use, with their class, patient and split.
//!
//! Three readers build a [`Manifest`]:
//!
//! - [`read_folder`]: one subfolder per class (`root/benign/*.png`, `root/malignant/*.png`);
//!   class names are the subfolder names sorted (so `benign` = 0, `malignant` = 1).
//! - [`read_csv`]: a CSV with a header `path,label[,patient_id][,split]` (any column order,
//!   extra columns ignored).
//! - [`read_cbis_ddsm`]: CBIS-DDSM case-description CSVs (mass/calc, train/test).
//!
//! Every reader checks what it can without decoding: image paths exist (a missing file is
//! reported with its manifest line, plus how many others are missing), `.dcm` paths are
//! refused (DICOM is not read; a converted sibling with the same name and an image extension is
//! used instead when there is one), labels are known, every class has at least one image and
//! there are at least two classes, and the split column is either filled for every row or for
//! none.
//!
//! Image files are recognised by extension: `png`, `tif`, `tiff`, `jpg`, `jpeg`, any case.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use csv::{ReaderBuilder, StringRecord, Trim};

use crate::error::{Error, Result};
use crate::split::{Split, check_split_column};

/// Image file extensions read by this crate (lowercase).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "tif", "tiff", "jpg", "jpeg"];

/// One image of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The image file, resolved against the manifest's folder (or the image root).
    pub path: PathBuf,
    /// Class index into [`Manifest::class_names`].
    pub label: usize,
    /// Patient id, if known; images of one patient always share a split.
    pub patient: Option<String>,
    /// The split given by the manifest, if any.
    pub split: Option<Split>,
    /// Where the record comes from, for messages: "`crops.csv` line 12", or the image path.
    pub origin: String,
}

/// The images of a dataset and its class names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The images, in manifest order.
    pub records: Vec<Record>,
    /// Class names; a record's `label` indexes this list.
    pub class_names: Vec<String>,
}

impl Manifest {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Number of images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.class_names.len()];
        for r in &self.records {
            if let Some(c) = counts.get_mut(r.label) {
                *c += 1;
            }
        }
        counts
    }

    /// Keep only the records for which `keep` is true; `what` describes the filter in the
    /// message if a class is left without images ([`Error::EmptyClass`]).
    pub fn filter(mut self, what: &str, keep: impl FnMut(&Record) -> bool) -> Result<Manifest> {
        self.records.retain(keep);
        self.check_classes(&format!("the manifest after filtering ({what})"))?;
        Ok(self)
    }

    /// At least two classes, each with at least one image.
    fn check_classes(&self, place: &str) -> Result<()> {
        if self.records.is_empty() {
            return Err(Error::EmptyManifest {
                place: place.to_string(),
                expected: "at least one image per class",
            });
        }
        if self.class_names.len() < 2 {
            return Err(Error::TooFewClasses {
                place: place.to_string(),
                found: format!(
                    "{} class(es): {}",
                    self.class_names.len(),
                    self.class_names.join(", ")
                ),
            });
        }
        let counts = self.class_counts();
        if let Some(c) = counts.iter().position(|&n| n == 0) {
            return Err(Error::EmptyClass {
                class: self.class_names[c].clone(),
                place: place.to_string(),
            });
        }
        Ok(())
    }
}

/// Image formats a class folder may hold that this crate does not read: refused by
/// [`read_folder`] rather than left out.
const UNREAD_IMAGE_EXTENSIONS: [&str; 11] = ["bmp", "gif", "webp", "jp2", "j2k", "pgm", "ppm", "pnm", "heic", "dicom", "ima"];

/// Whether `path` has an image extension ([`IMAGE_EXTENSIONS`], any case).
pub fn is_image_path(path: &Path) -> bool {
    extension(path).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// Whether `path` has a `.dcm` extension (any case).
pub fn is_dicom_path(path: &Path) -> bool {
    extension(path).is_some_and(|e| e == "dcm")
}

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Sorted, non-hidden entries of `dir`.
fn list_dir(dir: &Path, action: &'static str) -> Result<Vec<PathBuf>> {
    let io = Error::io(action, dir);
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(&io)? {
        let path = entry.map_err(&io)?.path();
        if !is_hidden(&path) {
            entries.push(path);
        }
    }
    entries.sort();
    Ok(entries)
}

/// Every non-hidden file in `dir` and the folders below it (hidden folders skipped), sorted by
/// path; each folder is walked once, so a link back up the tree does not loop.
pub fn files_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    let mut seen = std::collections::HashSet::new();
    while let Some(folder) = folders.pop() {
        if !seen.insert(fs::canonicalize(&folder).unwrap_or_else(|_| folder.clone())) {
            continue;
        }
        for p in list_dir(&folder, "cannot read the folder")? {
            if p.is_dir() {
                folders.push(p);
            } else if p.is_file() {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Read a folder with one subfolder per class.
///
/// Class names are the (non-hidden) subfolder names, sorted without regard to case; each
/// class's images are the files with an image extension in its subfolder and the folders below
/// it (e.g. `benign/P001/cc.png`, one folder per patient), sorted by path. Hidden entries
/// (names starting with `.`), files directly in `root` and files that are not images (`.txt`,
/// `Thumbs.db`) are ignored. Errors: a class folder without images ([`Error::EmptyClass`]);
/// a `.dcm` file without a converted image beside it ([`Error::Dicom`]); an image in a format
/// this crate does not read ([`Error::UnreadFormat`]: `.bmp`, `.gif`, `.webp`, ...), which would
/// otherwise be left out of the dataset without a word. Records have no patient id and no split;
/// their origin is their path.
pub fn read_folder(root: impl AsRef<Path>) -> Result<Manifest> {
    let root = root.as_ref();
    let mut class_dirs = Vec::new();
    for path in list_dir(root, "cannot read the image folder")? {
        if path.is_dir() {
            class_dirs.push(path);
        }
    }
    // Without regard to case (`benign/`, `Malignant/`: benign 0, Malignant 1), as a CSV's
    // labels: byte order would put every capitalised name first and make it the negative class.
    class_dirs.sort_by_key(|d| class_order(&d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
    let place = format!("folder `{}`", root.display());
    if class_dirs.is_empty() {
        return Err(Error::EmptyManifest {
            place,
            expected: "one subfolder of images per class, e.g. benign/ and malignant/",
        });
    }
    let mut records = Vec::new();
    let mut class_names = Vec::new();
    for (label, dir) in class_dirs.iter().enumerate() {
        class_names.push(
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let files = files_below(dir)?;
        let images: Vec<&PathBuf> = files.iter().filter(|p| is_image_path(p)).collect();
        // A DICOM original beside its converted image is that image; alone it is not read.
        if let Some(dcm) = files.iter().find(|p| is_dicom_path(p) && converted(p).is_none()) {
            return Err(Error::Dicom {
                path: dcm.clone(),
                origin: String::new(),
            });
        }
        if let Some(other) = files.iter().find(|p| extension(p).is_some_and(|e| UNREAD_IMAGE_EXTENSIONS.contains(&e.as_str()))) {
            return Err(Error::UnreadFormat { path: other.clone() });
        }
        if images.is_empty() {
            return Err(Error::EmptyClass {
                class: class_names[label].clone(),
                place: format!(
                    "folder `{}` (no .png, .tif, .tiff, .jpg or .jpeg files)",
                    dir.display()
                ),
            });
        }
        records.extend(images.into_iter().map(|p| Record {
            path: p.clone(),
            label,
            patient: None,
            split: None,
            origin: p.display().to_string(),
        }));
    }
    // A file linked into two class folders would be one image under two labels.
    check_unique_images(&records)?;
    let manifest = Manifest {
        records,
        class_names,
    };
    manifest.check_classes(&place)?;
    Ok(manifest)
}

/// The order of class names: without regard to case, then by bytes.
fn class_order(name: &str) -> (String, String) {
    (name.to_lowercase(), name.to_string())
}

/// A parsed CSV: its header (normalised names) and rows with their line numbers.
struct CsvTable {
    path: PathBuf,
    /// Header names as written (trimmed), for messages.
    header: Vec<String>,
    /// Normalised header names: lowercase, `_`/`-` as spaces, single spaces.
    keys: Vec<String>,
    rows: Vec<(u64, StringRecord)>,
}

impl CsvTable {
    fn read(path: &Path) -> Result<CsvTable> {
        let bytes = fs::read(path).map_err(Error::io("cannot read manifest", path))?;
        let bytes = bytes
            .strip_prefix(b"\xEF\xBB\xBF".as_slice())
            .unwrap_or(&bytes);
        let mut lines = LineCounter {
            bytes,
            at: 0,
            line: 1,
        };
        let csv_err = |source: csv::Error, lines: &mut LineCounter| Error::Csv {
            path: path.to_path_buf(),
            line: source.position().map(|p| lines.line_at(p)),
            source,
        };
        // Flexible, so that a line of spaces (one empty field) is skipped as a blank line; the
        // field count of every other row is checked below.
        let mut reader = ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(Trim::All)
            .from_reader(bytes);
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| csv_err(e, &mut lines))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let keys = header.iter().map(|h| normalise(h)).collect();
        let mut rows = Vec::new();
        for row in reader.records() {
            let row = row.map_err(|e| csv_err(e, &mut lines))?;
            if row.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            let line = row.position().map_or(0, |p| lines.line_at(p));
            if row.len() != header.len() {
                return Err(Error::FieldCount {
                    path: path.to_path_buf(),
                    line,
                    found: row.len(),
                    expected: header.len(),
                });
            }
            rows.push((line, row));
        }
        Ok(CsvTable {
            path: path.to_path_buf(),
            header,
            keys,
            rows,
        })
    }

    /// Index of the column named `name` (or one of `aliases`), compared normalised;
    /// [`Error::DuplicateColumn`] when the header has two of them (which one would be read?).
    fn column(&self, name: &'static str, aliases: &[&str]) -> Result<Option<usize>> {
        let names: Vec<String> = std::iter::once(name).chain(aliases.iter().copied()).map(normalise).collect();
        let found: Vec<usize> = (0..self.keys.len()).filter(|&i| names.contains(&self.keys[i])).collect();
        if found.len() > 1 {
            return Err(Error::DuplicateColumn {
                path: self.path.clone(),
                column: name,
                found: found.iter().map(|&i| format!("`{}` (column {})", self.header[i], i + 1)).collect::<Vec<_>>().join(", "),
            });
        }
        Ok(found.first().copied())
    }

    fn require(
        &self,
        name: &'static str,
        aliases: &[&str],
        expected: &'static str,
    ) -> Result<usize> {
        self.column(name, aliases)?
            .ok_or_else(|| Error::MissingColumn {
                path: self.path.clone(),
                column: name,
                expected,
                found: if self.header.iter().all(|h| h.is_empty()) {
                    "(none)".into()
                } else {
                    self.header
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    fn origin(&self, line: u64) -> String {
        format!("`{}` line {line}", self.path.display())
    }

    fn place(&self) -> String {
        format!("`{}`", self.path.display())
    }
}

/// Line numbers from byte offsets, counted incrementally (records come in order).
///
/// The parser's own line count, and its record offsets, can point at the end of the line
/// before (CRLF files, blank lines), so line breaks at the offset are skipped first.
struct LineCounter<'a> {
    bytes: &'a [u8],
    /// Offset up to which line breaks have been counted.
    at: usize,
    /// Line number at `at` (1-based).
    line: u64,
}

impl LineCounter<'_> {
    fn line_at(&mut self, pos: &csv::Position) -> u64 {
        let mut target = (pos.byte() as usize).min(self.bytes.len());
        while target < self.bytes.len() && matches!(self.bytes[target], b'\r' | b'\n') {
            target += 1;
        }
        if target < self.at {
            (self.at, self.line) = (0, 1);
        }
        self.line += self.bytes[self.at..target]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        self.at = target;
        self.line
    }
}

fn normalise(name: &str) -> String {
    name.trim()
        .to_lowercase()
        .replace(['_', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn field(row: &StringRecord, column: usize) -> &str {
    row.get(column).unwrap_or("").trim()
}

/// Resolve a listed image path: relative to `base`, a `.dcm` replaced by a converted sibling
/// when one exists (else [`Error::Dicom`]).
fn resolve_image(base: &Path, listed: &str, origin: &str) -> Result<PathBuf> {
    let path = base.join(listed);
    if !is_dicom_path(&path) {
        return Ok(path);
    }
    converted(&path).ok_or_else(|| Error::Dicom {
        path,
        origin: origin.to_string(),
    })
}

/// The converted image beside a `.dcm` file: the same name with an image extension (lower or
/// upper case), if such a file exists.
fn converted(dcm: &Path) -> Option<PathBuf> {
    IMAGE_EXTENSIONS
        .iter()
        .flat_map(|e| [e.to_string(), e.to_ascii_uppercase()])
        .map(|e| dcm.with_extension(e))
        .find(|p| p.is_file())
}

/// [`Error::DuplicateImage`] for the first file listed twice (compared after resolving links
/// and `.`/`..`, so `./a.png` and `a.png` are one file).
fn check_unique_images(records: &[Record]) -> Result<()> {
    let mut seen: HashMap<PathBuf, &str> = HashMap::with_capacity(records.len());
    for r in records {
        let key = std::fs::canonicalize(&r.path).unwrap_or_else(|_| r.path.clone());
        if let Some(first) = seen.insert(key, &r.origin) {
            return Err(Error::DuplicateImage { path: r.path.clone(), first: first.to_string(), second: r.origin.clone() });
        }
    }
    Ok(())
}

/// Labels compared without case and with runs of whitespace as one space.
fn label_key(label: &str) -> String {
    label.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// [`Error::AmbiguousLabel`] for two spellings of one label among `labels` (row `i` of
/// `records`).
fn check_label_spellings(labels: &[String], records: &[Record]) -> Result<()> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, l) in labels.iter().enumerate() {
        let j = *seen.entry(label_key(l)).or_insert(i);
        if labels[j] != *l {
            return Err(Error::AmbiguousLabel {
                label: l.clone(),
                second: records[i].origin.clone(),
                other: labels[j].clone(),
                first: records[j].origin.clone(),
            });
        }
    }
    Ok(())
}

/// [`Error::MissingImage`] for the first record whose file does not exist.
fn check_files_exist(records: &[Record]) -> Result<()> {
    let missing: Vec<&Record> = records.iter().filter(|r| !r.path.is_file()).collect();
    match missing.first() {
        None => Ok(()),
        Some(r) => Err(Error::MissingImage {
            path: r.path.clone(),
            origin: r.origin.clone(),
            others: missing.len() - 1,
        }),
    }
}

const CSV_EXPECTED: &str = "a header `path,label[,patient_id][,split]`";

/// Read a CSV manifest with a header `path,label[,patient_id][,split]`.
///
/// - Columns may come in any order; extra columns are ignored; header names are compared
///   case-insensitively with `_`, `-` and spaces alike (`patient` is accepted for
///   `patient_id`). Quoted fields, surrounding whitespace, CRLF line ends, blank lines and a
///   UTF-8 byte-order mark are handled.
/// - `path`: relative to the CSV's folder, or absolute.
/// - `label`: a class name or an integer class index. With `class_names` given, a label is
///   matched by name first, then as an index. Without, the class names are the sorted unique
///   labels, or, when every label is an integer, `"0"`, `"1"`, … up to the largest.
/// - `patient_id`: optional; empty means unknown.
/// - `split`: optional; `train`, `val` or `test` (see [`Split`]'s `FromStr`); either every row
///   has one or none does.
///
/// Records' origins read "`<csv>` line N" (the header is line 1).
pub fn read_csv(path: impl AsRef<Path>, class_names: Option<&[String]>) -> Result<Manifest> {
    let path = path.as_ref();
    let table = CsvTable::read(path)?;
    let path_col = table.require("path", &[], CSV_EXPECTED)?;
    let label_col = table.require("label", &[], CSV_EXPECTED)?;
    let patient_col = table.column("patient_id", &["patient"])?;
    let split_col = table.column("split", &[])?;
    if table.rows.is_empty() {
        return Err(Error::EmptyManifest {
            place: table.place(),
            expected: "one row per image after the header",
        });
    }
    let base = path.parent().unwrap_or(Path::new(""));

    let mut records = Vec::with_capacity(table.rows.len());
    let mut labels = Vec::with_capacity(table.rows.len());
    for (line, row) in &table.rows {
        let origin = table.origin(*line);
        let listed = field(row, path_col);
        if listed.is_empty() {
            return Err(Error::EmptyField {
                origin,
                column: "path",
                expected: "an image path",
            });
        }
        let label = field(row, label_col);
        if label.is_empty() {
            return Err(Error::EmptyField {
                origin,
                column: "label",
                expected: "a class name or index",
            });
        }
        let split = match split_col.map(|c| field(row, c)).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(s.parse::<Split>().map_err(|_| Error::BadSplit {
                origin: origin.clone(),
                value: s.to_string(),
            })?),
        };
        let patient = patient_col
            .map(|c| field(row, c))
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        let image = resolve_image(base, listed, &origin)?;
        labels.push(label.to_string());
        records.push(Record {
            path: image,
            label: 0,
            patient,
            split,
            origin,
        });
    }

    let names: Vec<String> = match class_names {
        Some(names) => names.to_vec(),
        None => {
            // Integer labels are class indices. One beyond both the row count and 1000 is a
            // typo (20000000 would otherwise make that many classes); smaller gaps are
            // reported with the indices they leave empty (`IndexGap`).
            let bound = labels.len().max(MAX_INDEX_LABEL + 1);
            if labels.iter().all(|l| l.parse::<usize>().is_ok())
                && let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| l.parse::<usize>().is_ok_and(|v| v >= bound))
            {
                return Err(Error::UnknownLabel {
                    origin: records[i].origin.clone(),
                    label: l.clone(),
                    known: format!("integer class indices 0..{} (at most one class per row)", bound - 1),
                });
            }
            check_label_spellings(&labels, &records)?;
            let ints: Option<Vec<usize>> = labels.iter().map(|l| l.parse::<usize>().ok()).collect();
            if let Some(ints) = ints
                && let Some((at, &max)) = ints.iter().enumerate().max_by_key(|(_, v)| **v)
            {
                let present: BTreeSet<usize> = ints.iter().copied().collect();
                let missing: Vec<String> = (0..max).filter(|i| !present.contains(i)).map(|i| i.to_string()).collect();
                if !missing.is_empty() {
                    return Err(Error::IndexGap {
                        place: table.place(),
                        max,
                        hint: if missing == ["0"] {
                            "labels counted from 1? number the classes from 0, or name them".to_string()
                        } else {
                            format!("the largest, {max}, is at {} (a typo? or name the classes)", records[at].origin)
                        },
                        missing: if missing.len() > 1 {
                            format!("classes {} have", missing.join(", "))
                        } else {
                            format!("class {} has", missing[0])
                        },
                    });
                }
            }
            derive_class_names(&labels)
        }
    };
    for (record, label) in records.iter_mut().zip(&labels) {
        record.label = resolve_label(label, &names).ok_or_else(|| Error::UnknownLabel {
            origin: record.origin.clone(),
            label: label.clone(),
            known: known_labels(&names),
        })?;
    }
    check_split_column(&records)?;
    check_files_exist(&records)?;
    check_unique_images(&records)?;
    let manifest = Manifest {
        records,
        class_names: names,
    };
    manifest.check_classes(&table.place())?;
    Ok(manifest)
}

/// Integer labels up to this are accepted as class indices whatever the row count.
const MAX_INDEX_LABEL: usize = 999;

/// Sorted unique labels, or `"0"..="max"` when every label is an integer.
fn derive_class_names(labels: &[String]) -> Vec<String> {
    let ints: Option<Vec<usize>> = labels.iter().map(|l| l.parse::<usize>().ok()).collect();
    match ints {
        Some(ints) => {
            let max = ints.iter().copied().max().unwrap_or(0);
            (0..=max).map(|i| i.to_string()).collect()
        }
        None => {
            let mut names: Vec<String> = labels.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
            names.sort_by_key(|n| class_order(n));
            names
        }
    }
}

fn resolve_label(label: &str, names: &[String]) -> Option<usize> {
    names
        .iter()
        .position(|n| n == label)
        .or_else(|| names.iter().position(|n| label_key(n) == label_key(label)))
        .or_else(|| label.parse::<usize>().ok().filter(|&i| i < names.len()))
}

fn known_labels(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".into();
    }
    let listed: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("`{n}` ({i})"))
        .collect();
    format!("{} (a name or its index)", listed.join(", "))
}

/// CBIS-DDSM pathology values and their class (0 = benign, 1 = malignant).
pub const CBIS_PATHOLOGY: [(&str, usize); 3] = [
    ("BENIGN", 0),
    ("BENIGN_WITHOUT_CALLBACK", 0),
    ("MALIGNANT", 1),
];

const CBIS_EXPECTED: &str = "a CBIS-DDSM case-description CSV (columns `patient_id`, `pathology`, `cropped image file path`, ...)";

/// Read CBIS-DDSM case-description CSVs (`mass_case_description_train_set.csv`,
/// `calc_case_description_test_set.csv`, ...).
///
/// - Class names are `["benign", "malignant"]`: `pathology` `BENIGN` and
///   `BENIGN_WITHOUT_CALLBACK` are benign (0), `MALIGNANT` is malignant (1) (any case).
/// - `patient_id` is the patient (e.g. `P_00001`), so a patient's mass and calcification
///   crops stay together.
/// - The image is the `cropped image file path` column, trimmed of the whitespace and line
///   breaks the official files contain, relative to `image_root` if given, else to the CSV's
///   folder. The official paths end in `.dcm`: DICOM is not read; a converted file next to it
///   with the same name and an image extension is used when present, else the error says what
///   to do.
/// - The split comes from the file name: containing `train` (so also `training`) is train,
///   else containing `test` is test, else none.
pub fn read_cbis_ddsm(paths: &[PathBuf], image_root: Option<&Path>) -> Result<Manifest> {
    if paths.is_empty() {
        return Err(Error::EmptyManifest {
            place: "the CBIS-DDSM CSV list".into(),
            expected: "at least one case-description CSV",
        });
    }
    let mut records = Vec::new();
    for path in paths {
        let table = CsvTable::read(path)?;
        let pathology_col = table.require("pathology", &[], CBIS_EXPECTED)?;
        let patient_col = table.require("patient_id", &[], CBIS_EXPECTED)?;
        let crop_col = table.require("cropped image file path", &[], CBIS_EXPECTED)?;
        if table.rows.is_empty() {
            return Err(Error::EmptyManifest {
                place: table.place(),
                expected: "one row per abnormality after the header",
            });
        }
        let split = cbis_split(path);
        let base = image_root.or(path.parent()).unwrap_or(Path::new(""));
        for (line, row) in &table.rows {
            let origin = table.origin(*line);
            let pathology = field(row, pathology_col);
            let label = CBIS_PATHOLOGY
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(pathology))
                .map(|&(_, l)| l)
                .ok_or_else(|| Error::UnknownLabel {
                    origin: origin.clone(),
                    label: pathology.to_string(),
                    known: CBIS_PATHOLOGY
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let listed = field(row, crop_col);
            if listed.is_empty() {
                return Err(Error::EmptyField {
                    origin,
                    column: "cropped image file path",
                    expected: "the crop's image path",
                });
            }
            let patient = Some(field(row, patient_col))
                .filter(|p| !p.is_empty())
                .map(str::to_string);
            let image = resolve_image(base, listed, &origin)?;
            records.push(Record {
                path: image,
                label,
                patient,
                split,
                origin,
            });
        }
    }
    check_split_column(&records)?;
    check_files_exist(&records)?;
    check_unique_images(&records)?;
    let manifest = Manifest {
        records,
        class_names: vec!["benign".into(), "malignant".into()],
    };
    let place = paths
        .iter()
        .map(|p| format!("`{}`", p.display()))
        .collect::<Vec<_>>()
        .join(", ");
    manifest.check_classes(&place)?;
    Ok(manifest)
}

/// The split a CBIS-DDSM file name implies.
fn cbis_split(path: &Path) -> Option<Split> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    if name.contains("train") {
        Some(Split::Train)
    } else if name.contains("test") {
        Some(Split::Test)
    } else {
        None
    }
}
