//! The crate's error type.
//!
//! Every failure is a variant of [`Error`]. Each message names the file, the
//! archive member or the URL involved and says what was expected, so that a
//! user can act on it without reading the source. Underlying causes (I/O,
//! zip, HTTP errors) are attached as [`std::error::Error::source`] rather than
//! repeated in the message; print the whole chain (for example with anyhow's
//! `{:#}`) to see them.

use std::path::{Path, PathBuf};

use crate::checksum::Checksum;

/// Shorthand for `Result<T, medmnist::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while looking up, downloading or reading a
/// MedMNIST dataset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- catalogue -------------------------------------------------------
    /// The dataset flag is not in the catalogue.
    #[error("unknown MedMNIST dataset `{flag}`; known datasets: {known}")]
    UnknownDataset {
        /// The flag that was asked for.
        flag: String,
        /// Comma-separated list of the flags this crate knows.
        known: String,
    },

    /// The image size is not one MedMNIST publishes.
    #[error("unsupported MedMNIST image size `{size}`; expected one of 28, 64, 128, 224")]
    UnsupportedSize {
        /// The size that was asked for, as given.
        size: String,
    },

    /// A checksum string is not well formed.
    #[error("invalid {algorithm} checksum `{value}`; expected {expected}")]
    InvalidChecksum {
        /// Name of the digest algorithm.
        algorithm: &'static str,
        /// The checksum as given.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },

    // ----- files -----------------------------------------------------------
    /// A filesystem operation failed.
    #[error("{action} `{}`", .path.display())]
    Io {
        /// What was being attempted, e.g. "cannot open".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    // ----- .npz container --------------------------------------------------
    /// The file does not start with a zip signature.
    #[error(
        "`{}` is not a .npz file: expected a zip archive (starting with `PK\\x03\\x04`), found {found}",
        .path.display()
    )]
    NotZip {
        /// The file that was read.
        path: PathBuf,
        /// A short description of what the file starts with instead.
        found: String,
    },

    /// The file looks like a zip archive but cannot be opened as one.
    #[error(
        "`{}` is a truncated or corrupt .npz (zip) archive; delete it and download it again",
        .path.display()
    )]
    CorruptZip {
        /// The archive.
        path: PathBuf,
        /// The zip library's diagnosis.
        #[source]
        source: zip::result::ZipError,
    },

    /// A member of the archive cannot be opened (corrupt entry, unsupported
    /// compression, ...).
    #[error(
        "`{}`: cannot open member `{member}` of the .npz archive; the file is corrupt or uses an unsupported compression",
        .path.display()
    )]
    CorruptMember {
        /// The archive.
        path: PathBuf,
        /// The member that failed.
        member: String,
        /// The zip library's diagnosis.
        #[source]
        source: zip::result::ZipError,
    },

    /// A member compressed with a method this reader does not decompress.
    #[error(
        "`{}`: member `{member}` is compressed with {method}; expected stored or deflate members (as numpy's \
         savez and savez_compressed write them): re-save the arrays with numpy",
        .path.display()
    )]
    UnsupportedCompression {
        /// The archive.
        path: PathBuf,
        /// The member.
        member: String,
        /// Its compression method.
        method: String,
    },

    /// A required array is absent from the archive.
    #[error("`{}` has no member `{member}`; members present: {present}", .path.display())]
    MissingArray {
        /// The archive.
        path: PathBuf,
        /// The member that was expected, e.g. `train_images.npy`.
        member: String,
        /// Comma-separated list of the members the archive does have.
        present: String,
    },

    // ----- .npy arrays -----------------------------------------------------
    //
    // `array` names the array: for archive members it reads
    // "<archive path> member <member name>".
    /// The `.npy` header cannot be parsed.
    #[error("{array}: not a valid .npy array (expected `\\x93NUMPY` magic and a header dict)")]
    NpyHeader {
        /// The array concerned.
        array: String,
        /// What the .npy parser reported.
        #[source]
        source: std::io::Error,
    },

    /// The array's element type is not `uint8`.
    #[error("{array}: expected dtype `|u1` (uint8), found `{found}`")]
    Dtype {
        /// The array concerned.
        array: String,
        /// The dtype the header declares.
        found: String,
    },

    /// A split's images differ in size or channels from the train split's.
    #[error("{array}: images of {found}, but the train images are {expected}; every split of a MedMNIST file has one image shape")]
    SplitShape {
        /// The images array concerned.
        array: String,
        /// Its image shape, `H x W x C`.
        found: String,
        /// The train split's image shape.
        expected: String,
    },

    /// The array's shape is not one this crate understands.
    #[error("{array}: has shape {shape}; expected {expected}")]
    Shape {
        /// The array concerned.
        array: String,
        /// The shape the header declares, formatted like a Python tuple.
        shape: String,
        /// The accepted shapes.
        expected: &'static str,
    },

    /// The amount of array data differs from what the header declares.
    #[error(
        "{array}: header declares {expected} bytes of data but {found} bytes follow it (truncated or corrupt file)"
    )]
    DataLength {
        /// The array concerned.
        array: String,
        /// Bytes implied by the header's shape and dtype.
        expected: u64,
        /// Bytes actually present.
        found: u64,
    },

    /// The array data cannot be read (I/O error, bad deflate stream, CRC mismatch).
    #[error("{array}: cannot read the array data; the file is corrupt or unreadable")]
    ReadData {
        /// The array concerned.
        array: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    // ----- content checks --------------------------------------------------
    /// Images and labels of one split disagree on the number of samples.
    #[error(
        "`{}`: `{split}_images.npy` holds {images} images but `{split}_labels.npy` holds {labels} labels; expected equal counts",
        .path.display()
    )]
    CountMismatch {
        /// The archive.
        path: PathBuf,
        /// `train`, `val` or `test`.
        split: &'static str,
        /// Number of images.
        images: usize,
        /// Number of labels.
        labels: usize,
    },

    /// A label is not a valid class index.
    #[error(
        "`{}` member `{member}`: label {value} at index {index} is out of range; expected a class index in 0..{n_classes}",
        .path.display()
    )]
    LabelOutOfRange {
        /// The archive.
        path: PathBuf,
        /// The labels member, e.g. `train_labels.npy`.
        member: String,
        /// Position of the first offending label.
        index: usize,
        /// The offending value.
        value: u8,
        /// Number of classes the caller expects.
        n_classes: usize,
    },

    /// The arrays do not match the catalogue entry they were loaded for.
    #[error("`{}`: {what} is {found}, but the catalogue expects {expected}", .path.display())]
    CatalogueMismatch {
        /// The archive.
        path: PathBuf,
        /// What was compared, e.g. "train split length".
        what: String,
        /// What the catalogue says.
        expected: String,
        /// What the file holds.
        found: String,
    },

    // ----- download --------------------------------------------------------
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("cannot initialise the HTTP client")]
    HttpClient {
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// The request failed before a response arrived (DNS, connect, TLS, timeout).
    #[error("request for {url} failed")]
    Http {
        /// The URL requested.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// The server answered with a non-success status.
    #[error("{url} answered HTTP {status}; expected a 2xx success status")]
    HttpStatus {
        /// The URL requested.
        url: String,
        /// The status line, e.g. "404 Not Found".
        status: String,
    },

    /// The transfer broke off while the body was being received.
    #[error("download of {url} was interrupted")]
    Transfer {
        /// The URL requested.
        url: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The downloaded bytes do not have the expected checksum.
    #[error(
        "download of {url} failed verification: expected {expected}, got {actual}; the download was discarded \
         (`{}` was not written). Try again: a transfer cut short or altered on the way (a proxy) gives another \
         checksum. A file with another checksum is not taken from the cache either; to use one anyway, give its path \
         directly (derma-train: `--npz FILE` for a dataset, `--pretrained FILE` for weights)",
        .dest.display()
    )]
    ChecksumMismatch {
        /// The URL downloaded.
        url: String,
        /// The checksum that was required.
        expected: Checksum,
        /// The checksum of what arrived.
        actual: Checksum,
        /// Where the file would have been stored.
        dest: PathBuf,
    },

    /// A download failed on the network (no response, an error status, a broken transfer):
    /// the cause, and how to install the file by hand.
    #[error(
        "cannot download {url}; download it by hand (expected {expected}) and place it at `{}` \
         (--offline then uses it without the network)",
        .dest.display()
    )]
    DownloadFailed {
        /// The URL.
        url: String,
        /// Its expected checksum.
        expected: Checksum,
        /// Exactly where to put it.
        dest: PathBuf,
        /// The network failure (its own causes follow in the chain).
        #[source]
        source: Box<Error>,
    },

    /// Offline mode and the file is not in the cache.
    #[error(
        "offline mode: `{}` is not cached. Download {url} by hand (expected {expected}) and place it at `{}`",
        .dest.display(), .dest.display()
    )]
    OfflineMissing {
        /// Where to download it from.
        url: String,
        /// Its expected checksum.
        expected: Checksum,
        /// Exactly where to put it.
        dest: PathBuf,
    },

    /// Offline mode and the cached file has the wrong checksum.
    #[error(
        "offline mode: cached file `{}` is corrupt: expected {expected}, found {actual}. \
         Download {url} again (without --offline, or by hand) and replace it; to use this file anyway, give its path \
         directly (derma-train: `--npz FILE` for a dataset, `--pretrained FILE` for weights)",
        .path.display()
    )]
    OfflineCorrupt {
        /// The cached file.
        path: PathBuf,
        /// Where to download a fresh copy from.
        url: String,
        /// Its expected checksum.
        expected: Checksum,
        /// The checksum the cached file has.
        actual: Checksum,
    },
}

impl Error {
    /// For `map_err`: an I/O failure while doing `action` (e.g. "cannot read") on `path`.
    pub(crate) fn io<'p>(action: &'static str, path: &'p Path) -> impl Fn(std::io::Error) -> Error + 'p {
        move |source| Error::Io { action, path: path.to_owned(), source }
    }
}
