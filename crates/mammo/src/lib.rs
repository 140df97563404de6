//! Mammography crop sources: manifests of 8/16-bit grayscale (or RGB) lesion crops,
//! decoding with an intensity window, resizing, and patient-level splits. No Burn here: the
//! result is plain `u8` arrays.
//!
//! The usual path is a reader, then [`load()`]:
//!
//! ```no_run
//! let manifest = mammo::read_folder("crops/")?; // crops/benign/*.png, crops/malignant/*.png
//! let crops = mammo::load(&manifest, &mammo::LoadConfig::default())?;
//! println!("{} train images of {}x{}", crops.train.len(), crops.train.height, crops.train.width);
//! # Ok::<(), mammo::Error>(())
//! ```
//!
//! - [`manifest`]: which files, with class, patient and split ([`Record`], [`Manifest`]):
//!   [`read_folder`] (one subfolder per class), [`read_csv`] (`path,label[,patient_id][,split]`),
//!   [`read_cbis_ddsm`] (CBIS-DDSM case-description CSVs).
//! - [`patient`]: [`PatientPattern`], patient ids from image paths where a manifest has none.
//! - [`decode`](mod@decode): PNG/TIFF/JPEG to 8-bit pixels ([`Image`]) with the 16-bit
//!   intensity window [`Intensity`] (`percentile:0.5,99.5`, `fixed:0,4095`, `none`).
//! - [`resize`](mod@resize): to `size × size` with a [`Fit`] (`crop`, `pad`, `stretch`).
//! - [`split`]: [`Split`] and [`assign_splits`] (given, or stratified by patient, seeded).
//! - [`load`](mod@load): everything together, in parallel ([`LoadConfig`], [`Crops`],
//!   [`CropSplit`], [`LoadReport`]).
//! - [`error`]: the [`Error`] type shared by all of the above.

pub mod decode;
pub mod error;
pub mod load;
pub mod manifest;
pub mod patient;
pub mod resize;
pub mod split;

pub use decode::{Image, Intensity, decode, percentile_u16};
pub use error::{Error, Result};
pub use load::{CropSplit, Crops, LoadConfig, LoadReport, load};
pub use manifest::{
    CBIS_PATHOLOGY, IMAGE_EXTENSIONS, Manifest, Record, files_below, is_dicom_path, is_image_path,
    read_cbis_ddsm, read_csv, read_folder,
};
pub use patient::PatientPattern;
pub use resize::{Fit, MAX_CROP_ASPECT, check_aspect, resize};
pub use split::{Split, assign_splits, check_split_column};
