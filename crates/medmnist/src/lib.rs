//! MedMNIST data source: a catalogue of datasets, verified downloads into a
//! local cache, and a reader for the `.npz` files.
//!
//! The usual entry point is [`load`]:
//!
//! ```no_run
//! use medmnist::{Fetcher, ImageSize};
//!
//! let fetcher = Fetcher::new(Fetcher::resolve_root(None));
//! let arrays = medmnist::load("dermamnist", ImageSize::Px28, &fetcher)?;
//! assert_eq!(arrays.train.len, 7007);
//! # Ok::<(), medmnist::Error>(())
//! ```
//!
//! - [`catalogue`]: known datasets ([`DatasetInfo`], [`lookup`]), image sizes, splits.
//! - [`checksum`]: expected file digests ([`Checksum`]).
//! - [`download`]: the cache ([`Fetcher`]) and [`download_verified`].
//! - [`npz`]: reading `.npz` archives of `uint8` arrays ([`read_npz`]).
//! - [`error`]: the [`Error`] type shared by all of the above.

pub mod catalogue;
pub mod checksum;
pub mod download;
pub mod error;
pub mod npz;

pub use catalogue::{
    BREASTMNIST, DATASETS, DERMAMNIST, DatasetInfo, ImageSize, SplitName, Task, lookup,
};
pub use checksum::Checksum;
pub use download::{Fetcher, Remote, download_verified};
pub use error::{Error, Result};
pub use npz::{MedMnistArrays, Split, U8Array, read_npy_u8, read_npz, read_npz_checked, write_npz};

/// Fetch (downloading if needed) and read dataset `flag` at `size`.
///
/// Labels are checked to be valid class indices, and the arrays' split
/// lengths, image size and channel count are checked against the catalogue.
pub fn load(flag: &str, size: ImageSize, fetcher: &Fetcher) -> Result<MedMnistArrays> {
    let info = lookup(flag)?;
    let path = fetcher.fetch(info, size)?;
    let arrays = read_npz_checked(&path, info.n_classes())?;
    info.check_arrays(size, &arrays, &path)?;
    Ok(arrays)
}
