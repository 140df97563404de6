//! The run folder's CSV files are plain: a header line, then comma-separated numbers and
//! names without quoting (derma-train writes them that way). This reads one with line numbers
//! kept, so every complaint can name the line.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A CSV file split into its header and rows.
pub(crate) struct Csv {
    /// The file, for error messages.
    pub path: PathBuf,
    /// Column names of the header (line 1).
    pub header: Vec<String>,
    /// `(line number, fields)` of every non-blank line after the header.
    pub rows: Vec<(usize, Vec<String>)>,
}

impl Csv {
    /// Reads `path`; `why` says what the file is, for the error when it is missing.
    pub fn read(path: &Path, why: &'static str) -> Result<Self> {
        let text = read_text(path, why)?;
        // A byte-order mark (a spreadsheet's "CSV UTF-8") is not part of the first column's name.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
        let header = match lines.next() {
            Some((_, h)) if !h.trim().is_empty() => h.split(',').map(|f| f.trim().to_string()).collect(),
            _ => return Err(Error::Malformed { path: path.into(), line: 1, reason: "the file is empty (no header line)".into() }),
        };
        // derma-train ends every line with a line break: a file without one after its last
        // row was cut short, perhaps in the middle of a number.
        if !text.ends_with('\n') {
            return Err(Error::Malformed {
                path: path.into(),
                line: text.lines().count(),
                reason: "the file ends in the middle of a line (no line break after it): cut short?".into(),
            });
        }
        let rows = lines
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| (n, l.split(',').map(|f| f.trim().to_string()).collect()))
            .collect();
        Ok(Self { path: path.into(), header, rows })
    }

    /// The position of column `name`, or an error naming the header.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.header.iter().position(|h| h == name).ok_or_else(|| Error::Malformed {
            path: self.path.clone(),
            line: 1,
            reason: format!("the header has no `{name}` column (header: {})", self.header.join(",")),
        })
    }

    /// An error about line `line`.
    pub fn malformed(&self, line: usize, reason: impl Into<String>) -> Error {
        Error::Malformed { path: self.path.clone(), line, reason: reason.into() }
    }

    /// Checks that the row on `line` has one field per header column.
    pub fn check_width(&self, line: usize, fields: &[String]) -> Result<()> {
        if fields.len() == self.header.len() {
            Ok(())
        } else {
            Err(self.malformed(
                line,
                format!("{} fields, but the header has {} columns ({})", fields.len(), self.header.len(), self.header.join(",")),
            ))
        }
    }

    /// Field `col` of the row on `line` parsed as a number (`NaN` and `inf` are accepted:
    /// derma-train writes them for undefined values).
    pub fn float(&self, line: usize, fields: &[String], col: usize) -> Result<f64> {
        let text = &fields[col];
        text.parse::<f64>()
            .map_err(|_| self.malformed(line, format!("`{}` is `{text}`, not a number", self.header[col])))
    }

    /// Field `col` of the row on `line` parsed as a number in [0, 1]; `what` names the kind of
    /// value in the error ("a probability", "a rate").
    pub fn unit_float(&self, line: usize, fields: &[String], col: usize, what: &str) -> Result<f64> {
        let v = self.float(line, fields, col)?;
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(self.malformed(line, format!("`{}` is {v}, not {what} in [0, 1]", self.header[col])))
        }
    }

    /// [`Self::unit_float`], or NaN (derma-train writes NaN where a score is undefined, e.g.
    /// an AUC on a split of one class).
    pub fn unit_or_nan(&self, line: usize, fields: &[String], col: usize, what: &str) -> Result<f64> {
        let v = self.float(line, fields, col)?;
        if v.is_nan() { Ok(v) } else { self.unit_float(line, fields, col, what) }
    }

    /// Field `col` of the row on `line` parsed as a non-negative integer.
    pub fn count(&self, line: usize, fields: &[String], col: usize) -> Result<usize> {
        let text = &fields[col];
        text.parse::<usize>()
            .map_err(|_| self.malformed(line, format!("`{}` is `{text}`, not a non-negative integer", self.header[col])))
    }
}

/// The text of `path`; [`Error::Missing`] when it does not exist.
pub(crate) fn read_text(path: &Path, why: &'static str) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Missing { path: path.into(), why }),
        Err(source) => Err(Error::Io { path: path.into(), action: "reading", cause: source }),
    }
}

#[cfg(test)]
mod tests {
    use super::Csv;

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("predictions.csv");
        std::fs::write(&path, "\u{feff}split,index\ntest,0\n").unwrap();
        let csv = Csv::read(&path, "test").unwrap();
        assert_eq!(csv.column("split").unwrap(), 0);
        assert_eq!(csv.rows.len(), 1);
    }
}
