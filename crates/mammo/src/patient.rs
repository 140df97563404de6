//! Patient ids from image paths, for datasets that do not list them (`--patient-pattern`).
//!
//! A class folder (`crops/benign/P_00001_LEFT_CC_1.png`) or a CSV without a `patient_id`
//! column has no patient ids, so two crops of one patient could land in train and test. Most
//! collections encode the patient in the file name, though; a [`PatientPattern`] — a regular
//! expression (Rust `regex` syntax) — recovers it:
//!
//! - it is searched for (not anchored) in the image's path relative to the dataset root (the
//!   image folder, or the CSV's folder), with `/` between folders: `benign/P_00001_LEFT_CC_1.png`;
//! - the patient id is the capture group named `patient` if the pattern has one, else the first
//!   capture group, else the whole match: `P_\d+` and `^[^/]+/(P_\d+)_` both give `P_00001`;
//! - an image whose path does not match (or whose group is empty) is an error naming it: a
//!   silently unmatched image would become its own patient and could leak across splits;
//! - records that already carry a patient id are refused ([`Error::PatientAlreadyKnown`]), so
//!   the manifest's column and the pattern cannot disagree silently.

use std::path::{Component, Path};
use std::str::FromStr;

use regex::Regex;

use crate::error::{Error, Result};
use crate::manifest::Manifest;

/// What a patient pattern looks like, for messages.
const EXPECTED: &str = "a regular expression whose capture group `patient` (or first group, or whole match) is \
     the patient id, e.g. `P_\\d+` or `^[^/]+/(\\d+)_`";

/// A regular expression that finds the patient id in an image path; see the module docs.
#[derive(Debug, Clone)]
pub struct PatientPattern {
    regex: Regex,
    /// Which capture group is the patient id (0: the whole match).
    group: usize,
}

impl FromStr for PatientPattern {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let regex = Regex::new(s).map_err(|e| Error::InvalidOption {
            option: "patient pattern",
            value: s.to_string(),
            expected: format!("{EXPECTED} ({})", e.to_string().replace('\n', " ")),
        })?;
        let group = regex
            .capture_names()
            .position(|n| n == Some("patient"))
            .unwrap_or(if regex.captures_len() > 1 { 1 } else { 0 });
        Ok(PatientPattern { regex, group })
    }
}

impl PatientPattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// The patient id in `path` (relative, `/`-separated), or `None` if the pattern does not
    /// match or its group is empty.
    pub fn patient(&self, path: &str) -> Option<String> {
        let m = self.regex.captures(path)?.get(self.group)?;
        (!m.as_str().is_empty()).then(|| m.as_str().to_string())
    }
}

/// `path` relative to `root` (as is when it is not under `root`), folders joined by `/`.
pub fn relative_path(path: &Path, root: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::Prefix(_) | Component::CurDir => None,
        })
        .collect();
    let joined = parts.join("/");
    if rel.has_root() { format!("/{joined}") } else { joined }
}

impl Manifest {
    /// The manifest with every record's patient id taken from its path relative to `root` by
    /// `pattern` (see the module docs). Errors name the first unmatched image (and how many
    /// others), or the first record that already has a patient id.
    pub fn patients_from_paths(mut self, pattern: &PatientPattern, root: &Path) -> Result<Manifest> {
        if let Some(r) = self.records.iter().find(|r| r.patient.is_some()) {
            return Err(Error::PatientAlreadyKnown {
                origin: r.origin.clone(),
                patient: r.patient.clone().unwrap_or_default(),
            });
        }
        let mut unmatched = Vec::new();
        for r in &mut self.records {
            let rel = relative_path(&r.path, root);
            match pattern.patient(&rel) {
                Some(p) => r.patient = Some(p),
                None => unmatched.push((r.path.clone(), r.origin.clone(), rel)),
            }
        }
        match unmatched.first() {
            None => Ok(self),
            Some((path, origin, rel)) => Err(Error::PatientUnmatched {
                path: path.clone(),
                origin: origin.clone(),
                relative: rel.clone(),
                pattern: pattern.as_str().to_string(),
                others: unmatched.len() - 1,
            }),
        }
    }
}
