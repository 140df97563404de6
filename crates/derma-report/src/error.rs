//! The crate's error type.
//!
//! Every problem with a run folder (a missing file, a malformed row, files that contradict
//! each other) or with writing the report is an [`Error`] naming the file and, where there is
//! one, the line — never a panic.

use std::path::PathBuf;

/// Shorthand for `Result<T, derma_report::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while reading a run folder or writing its report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file the report needs is not in the run folder.
    #[error("{}: missing; {why}", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// What the file is and who writes it.
        why: &'static str,
    },

    /// A file could not be read, written, renamed or a folder created.
    #[error("{}: {action} failed: {cause}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// `"reading"`, `"writing"`, `"creating the folder"`, …
        action: &'static str,
        /// The operating system's error: in the message, not a `source()` (a chain printed
        /// whole would say it twice).
        cause: std::io::Error,
    },

    /// A line of a CSV file (header = line 1) is not in the expected format.
    #[error("{}: line {line}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number (line 1 is the header).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A JSON or TOML file could not be parsed (the reason gives the line and column).
    #[error("{}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },

    /// The files of the run folder disagree with each other or are incomplete (e.g. a
    /// binary `report.json` with three probability columns in `predictions.csv`).
    #[error("{}: {reason}", path.display())]
    Inconsistent {
        /// The file found at fault.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },

    /// `derma-eval` refused the predictions (e.g. a class without test samples for a ROC
    /// curve).
    #[error("{what}: {source}")]
    Eval {
        /// What was being computed.
        what: String,
        /// The evaluation error.
        source: derma_eval::EvalError,
    },

    /// An option given by the caller does not fit the run.
    #[error("report option `{option}`: {reason}")]
    Option {
        /// The option's field name in [`ReportOptions`](crate::ReportOptions).
        option: &'static str,
        /// What does not fit.
        reason: String,
    },

    /// Drawing a plot or encoding a PNG failed.
    #[error("{}: drawing failed: {reason}", path.display())]
    Plot {
        /// The PNG being drawn.
        path: PathBuf,
        /// The plotting library's or encoder's message.
        reason: String,
    },
}
