//! Reading MedMNIST `.npz` files: a zip archive of `uint8` `.npy` arrays
//! named `{train,val,test}_{images,labels}.npy`.
//!
//! Images are returned channels-last (`N × H × W × C`, C = 1 or 3) exactly as
//! stored; grayscale arrays of shape `(N, H, W)` become `C = 1`. Labels are
//! one `u8` class index per image.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use npyz::{DType, NpyHeader, Order, TypeChar};
use zip::ZipArchive;
use zip::result::ZipError;

use crate::catalogue::SplitName;
use crate::error::{Error, Result};

/// A `uint8` array read from a `.npy` stream, in C (row-major) order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct U8Array {
    /// The array's shape.
    pub shape: Vec<usize>,
    /// The elements, row-major; `data.len()` is the product of `shape`.
    pub data: Vec<u8>,
}

/// One split (train, val or test) of a MedMNIST dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Pixels, `len × height × width × channels`, channels last.
    pub images: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<u8>,
    /// Number of images (and labels).
    pub len: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Channels per pixel: 1 (grayscale) or 3 (RGB).
    pub channels: usize,
}

impl Split {
    /// Bytes per image: `height × width × channels`.
    pub fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Whether the split holds no images.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pixels of image `index` (`height × width × channels`), or `None`
    /// if `index` is out of range.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let n = self.image_len();
        let start = index.checked_mul(n)?;
        self.images.get(start..start.checked_add(n)?)
    }

    /// The label of image `index`, or `None` if `index` is out of range.
    pub fn label(&self, index: usize) -> Option<u8> {
        self.labels.get(index).copied()
    }
}

/// The three splits of a MedMNIST `.npz` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MedMnistArrays {
    /// Training split.
    pub train: Split,
    /// Validation split.
    pub val: Split,
    /// Test split.
    pub test: Split,
}

impl MedMnistArrays {
    /// The split called `name`.
    pub fn split(&self, name: SplitName) -> &Split {
        match name {
            SplitName::Train => &self.train,
            SplitName::Val => &self.val,
            SplitName::Test => &self.test,
        }
    }
}

/// Read a MedMNIST `.npz` file without checking label values.
pub fn read_npz(path: impl AsRef<Path>) -> Result<MedMnistArrays> {
    read(path.as_ref(), None)
}

/// Read a MedMNIST `.npz` file and check that every label is below `n_classes`.
pub fn read_npz_checked(path: impl AsRef<Path>, n_classes: usize) -> Result<MedMnistArrays> {
    read(path.as_ref(), Some(n_classes))
}

/// Read a whole `.npy` stream holding a `uint8` array.
///
/// `name` identifies the array in error messages (e.g. a file path). The
/// reader is consumed to its end; data after the array is an error. Arrays
/// stored in Fortran order are transposed to C order.
pub fn read_npy_u8(reader: impl Read, name: &str) -> Result<U8Array> {
    read_npy(reader, name, None)
}

fn read(path: &Path, n_classes: Option<usize>) -> Result<MedMnistArrays> {
    let mut archive = open_zip(path)?;
    let present: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();

    let mut read_split = |name: SplitName| -> Result<Split> {
        let images_member = format!("{name}_images.npy");
        let labels_member = format!("{name}_labels.npy");
        let images = read_member(&mut archive, path, &images_member, &present)?;
        let labels = read_member(&mut archive, path, &labels_member, &present)?;
        let split = assemble_split(path, name, &images_member, images, &labels_member, labels)?;
        if let Some(n_classes) = n_classes {
            check_labels(path, &labels_member, &split.labels, n_classes)?;
        }
        Ok(split)
    };
    let arrays = MedMnistArrays {
        train: read_split(SplitName::Train)?,
        val: read_split(SplitName::Val)?,
        test: read_split(SplitName::Test)?,
    };
    // One image shape for all splits: a model trained on one would silently see another.
    let shape = |s: &Split| format!("{} x {} x {}", s.height, s.width, s.channels);
    for name in [SplitName::Val, SplitName::Test] {
        let s = arrays.split(name);
        if (s.height, s.width, s.channels) != (arrays.train.height, arrays.train.width, arrays.train.channels) {
            return Err(Error::SplitShape {
                array: array_name(path, &format!("{name}_images.npy")),
                found: shape(s),
                expected: shape(&arrays.train),
            });
        }
    }
    Ok(arrays)
}

/// Open `path` as a zip archive, telling "not a zip at all" apart from
/// "a damaged zip".
fn open_zip(path: &Path) -> Result<ZipArchive<BufReader<File>>> {
    let mut file = File::open(path).map_err(Error::io("cannot open", path))?;
    let mut magic = Vec::with_capacity(4);
    (&mut file)
        .take(4)
        .read_to_end(&mut magic)
        .map_err(Error::io("cannot read", path))?;
    // Local file header, or end-of-central-directory of an empty archive.
    if magic != b"PK\x03\x04" && magic != b"PK\x05\x06" {
        let found = if magic.is_empty() {
            "an empty file".to_owned()
        } else {
            format!("bytes {:02x?}", magic)
        };
        return Err(Error::NotZip {
            path: path.to_owned(),
            found,
        });
    }
    file.seek(SeekFrom::Start(0))
        .map_err(Error::io("cannot read", path))?;
    ZipArchive::new(BufReader::new(file)).map_err(|source| Error::CorruptZip {
        path: path.to_owned(),
        source,
    })
}

fn read_member(
    archive: &mut ZipArchive<BufReader<File>>,
    path: &Path,
    member: &str,
    present: &[String],
) -> Result<U8Array> {
    let entry = match archive.by_name(member) {
        Ok(entry) => entry,
        Err(ZipError::FileNotFound) => {
            return Err(Error::MissingArray {
                path: path.to_owned(),
                member: member.to_owned(),
                present: if present.is_empty() {
                    "none".to_owned()
                } else {
                    present.join(", ")
                },
            });
        }
        Err(source) => {
            return Err(Error::CorruptMember {
                path: path.to_owned(),
                member: member.to_owned(),
                source,
            });
        }
    };
    // The zip crate reports an unsupported method only when the data is read, as an I/O error
    // a .npy parser would misread as a bad header.
    let method = entry.compression();
    if !matches!(method, zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated) {
        return Err(Error::UnsupportedCompression { path: path.to_owned(), member: member.to_owned(), method: format!("{method:?}") });
    }
    let size = entry.size();
    read_npy(entry, &array_name(path, member), Some(size))
}

fn array_name(path: &Path, member: &str) -> String {
    format!("`{}` member `{member}`", path.display())
}

/// Largest `.npy` header accepted (numpy itself refuses more than 10 000 bytes
/// by default).
const MAX_HEADER_LEN: u64 = 1 << 20;

/// Read one `.npy` stream. `total_size`, when known (zip members), is the
/// stream's full length and lets the data length be checked before allocating.
fn read_npy(mut reader: impl Read, name: &str, total_size: Option<u64>) -> Result<U8Array> {
    let (header, header_len, leftover) = read_header(&mut reader, name)?;
    // Bytes read past the header belong to the data.
    let mut reader = io::Cursor::new(leftover).chain(reader);

    match header.dtype() {
        DType::Plain(ts) if ts.type_char() == TypeChar::Uint && ts.size_field() == 1 => {}
        DType::Plain(ts) => {
            return Err(Error::Dtype {
                array: name.to_owned(),
                found: ts.to_string(),
            });
        }
        other => {
            return Err(Error::Dtype {
                array: name.to_owned(),
                found: other.descr(),
            });
        }
    }

    let shape_err = |expected| Error::Shape {
        array: name.to_owned(),
        shape: format_shape(header.shape()),
        expected,
    };
    let shape: Vec<usize> = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<_>>()
        .ok_or_else(|| shape_err("dimensions that fit in memory"))?;
    let n_bytes = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| shape_err("dimensions that fit in memory"))?;
    let n_bytes_u64 = n_bytes as u64;

    let capacity = match total_size {
        Some(total) => {
            let found = total.saturating_sub(header_len);
            if found != n_bytes_u64 {
                return Err(Error::DataLength {
                    array: name.to_owned(),
                    expected: n_bytes_u64,
                    found,
                });
            }
            // The zip entry's size is the file's claim too: the buffer grows as bytes arrive.
            n_bytes.min(64 << 20)
        }
        // Unknown length: do not trust the header with a huge allocation.
        None => n_bytes.min(64 << 20),
    };

    let read_err = |source| Error::ReadData {
        array: name.to_owned(),
        source,
    };
    let mut data = Vec::with_capacity(capacity);
    (&mut reader)
        .take(n_bytes_u64)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    let trailing = io::copy(&mut reader, &mut io::sink()).map_err(read_err)?;
    if data.len() != n_bytes || trailing != 0 {
        return Err(Error::DataLength {
            array: name.to_owned(),
            expected: n_bytes_u64,
            found: data.len() as u64 + trailing,
        });
    }

    if header.order() == Order::Fortran && shape.len() > 1 {
        data = fortran_to_c(&data, &shape);
    }
    Ok(U8Array { shape, data })
}

/// Read and parse the `.npy` header (magic, version, length, dict).
///
/// The header is read in full and its shape checked before npyz sees it:
/// npyz computes strides and element counts with unchecked arithmetic.
/// Returns the header, its length in bytes, and any bytes read past it.
fn read_header(reader: &mut impl Read, name: &str) -> Result<(NpyHeader, u64, Vec<u8>)> {
    let header_err = |source| Error::NpyHeader {
        array: name.to_owned(),
        source,
    };
    let invalid = |msg: String| header_err(io::Error::new(io::ErrorKind::InvalidData, msg));

    let mut head = Vec::with_capacity(12);
    reader
        .by_ref()
        .take(12)
        .read_to_end(&mut head)
        .map_err(header_err)?;
    let layout = match (head.get(..6), head.get(6)) {
        (Some(b"\x93NUMPY"), Some(1)) => head
            .get(8..10)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(|b| (10, u64::from(u16::from_le_bytes(b)))),
        (Some(b"\x93NUMPY"), Some(2 | 3)) => head
            .get(8..12)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| (12, u64::from(u32::from_le_bytes(b)))),
        _ => None,
    };
    let Some((text_start, text_len)) = layout else {
        // Bad magic, unknown version or a stream too short: npyz says which.
        let source = NpyHeader::from_reader(head.as_slice())
            .err()
            .unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "malformed .npy preamble")
            });
        return Err(header_err(source));
    };
    if text_len > MAX_HEADER_LEN {
        return Err(invalid(format!(
            "header length {text_len} exceeds the limit of {MAX_HEADER_LEN} bytes"
        )));
    }
    let header_len = text_start + text_len;
    let have = head.len() as u64;
    if have < header_len {
        reader
            .by_ref()
            .take(header_len - have)
            .read_to_end(&mut head)
            .map_err(header_err)?;
    }
    // `header_len <= 12 + MAX_HEADER_LEN`, so it fits in usize.
    let leftover = head.split_off((header_len as usize).min(head.len()));

    // npyz multiplies the dimensions unchecked: a header whose shape cannot be checked here
    // (not numpy's one `'shape': (..)` entry of integers) is refused rather than passed on.
    let dims = head.get(text_start as usize..).and_then(declared_shape).ok_or_else(|| {
        invalid("the header's `shape` is not one tuple of non-negative integers, as numpy writes it".to_string())
    })?;
    let fits = dims
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1u64, |acc, &d| acc.checked_mul(d));
    if fits.is_none() {
        return Err(Error::Shape {
            array: name.to_owned(),
            shape: format_shape(&dims),
            expected: "dimensions whose product fits in 64 bits",
        });
    }
    let header = NpyHeader::from_reader(head.as_slice()).map_err(header_err)?;
    Ok((header, header_len, leftover))
}

/// The `shape` of a `.npy` header dict: `None` unless the text names `shape` exactly once and
/// its value is a tuple (or list) of integers (npyz does the authoritative parse, and keeps
/// the last of repeated keys).
fn declared_shape(text: &[u8]) -> Option<Vec<u64>> {
    let text = std::str::from_utf8(text).ok()?;
    if text.matches("'shape'").count() + text.matches("\"shape\"").count() != 1 {
        return None;
    }
    let key = text.find("'shape'").or_else(|| text.find("\"shape\""))?;
    let rest = text.get(key + "'shape'".len()..)?.trim_start().strip_prefix(':')?.trim_start();
    let (open, close) = match rest.chars().next()? {
        '(' => (0, rest.find(')')?),
        '[' => (0, rest.find(']')?),
        _ => return None,
    };
    rest.get(open + 1..close)?
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.trim_end_matches(['L', 'l']).parse::<u64>().ok())
        .collect()
}

fn assemble_split(
    path: &Path,
    name: SplitName,
    images_member: &str,
    images: U8Array,
    labels_member: &str,
    labels: U8Array,
) -> Result<Split> {
    let bad_images = |expected| Error::Shape {
        array: array_name(path, images_member),
        shape: format_shape(&images.shape),
        expected,
    };
    let (len, height, width, channels) = match images.shape[..] {
        [n, h, w] => (n, h, w, 1),
        [n, h, w, c @ (1 | 3)] => (n, h, w, c),
        _ => return Err(bad_images("(N, H, W) or (N, H, W, C) with C = 1 or 3")),
    };
    if height == 0 || width == 0 {
        return Err(bad_images("images of at least 1 x 1 pixels"));
    }
    // With N = 0 the total size cannot overflow, but the per-image size still might.
    if height
        .checked_mul(width)
        .and_then(|p| p.checked_mul(channels))
        .is_none()
    {
        return Err(bad_images("an image size that fits in memory"));
    }
    let n_labels = match labels.shape[..] {
        [n] | [n, 1] => n,
        _ => {
            return Err(Error::Shape {
                array: array_name(path, labels_member),
                shape: format_shape(&labels.shape),
                expected: "(N,) or (N, 1)",
            });
        }
    };
    if n_labels != len {
        return Err(Error::CountMismatch {
            path: path.to_owned(),
            split: name.as_str(),
            images: len,
            labels: n_labels,
        });
    }
    Ok(Split {
        images: images.data,
        labels: labels.data,
        len,
        height,
        width,
        channels,
    })
}

fn check_labels(path: &Path, member: &str, labels: &[u8], n_classes: usize) -> Result<()> {
    match labels.iter().position(|&l| usize::from(l) >= n_classes) {
        None => Ok(()),
        Some(index) => Err(Error::LabelOutOfRange {
            path: PathBuf::from(path),
            member: member.to_owned(),
            index,
            value: labels[index],
            n_classes,
        }),
    }
}

/// Format a shape like a Python tuple: `(3,)`, `(2, 28, 28)`.
fn format_shape<T: std::fmt::Display>(shape: &[T]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Reorder column-major (Fortran) `data` of the given `shape` into row-major order.
fn fortran_to_c(data: &[u8], shape: &[usize]) -> Vec<u8> {
    let rank = shape.len();
    let mut c_strides = vec![1usize; rank];
    for k in (0..rank.saturating_sub(1)).rev() {
        c_strides[k] = c_strides[k + 1] * shape[k + 1];
    }
    let mut out = vec![0u8; data.len()];
    let mut index = vec![0usize; rank];
    let mut offset = 0usize;
    // Walk the input in storage order: the first axis varies fastest.
    for &value in data {
        if let Some(slot) = out.get_mut(offset) {
            *slot = value;
        }
        for k in 0..rank {
            index[k] += 1;
            offset += c_strides[k];
            if index[k] < shape[k] {
                break;
            }
            offset -= c_strides[k] * shape[k];
            index[k] = 0;
        }
    }
    out
}


/// Writes `arrays` as a MedMNIST-layout `.npz` (deflate-compressed `uint8` `.npy` members,
/// labels shaped `(N, 1)`, grayscale images `(N, H, W)`), atomically: the archive is built in
/// a temporary file beside `path` and renamed over it.
pub fn write_npz(path: impl AsRef<Path>, arrays: &MedMnistArrays) -> Result<()> {
    use std::io::Write;
    let path = path.as_ref();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.part-{}", std::process::id()));
    let write = || -> std::result::Result<(), io::Error> {
        let file = File::create(&tmp)?;
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for split in SplitName::ALL {
            let s = arrays.split(split);
            let image_shape: Vec<usize> = if s.channels == 1 {
                vec![s.len, s.height, s.width]
            } else {
                vec![s.len, s.height, s.width, s.channels]
            };
            for (kind, shape, data) in [("images", image_shape, &s.images), ("labels", vec![s.len, 1], &s.labels)] {
                zip.start_file(format!("{}_{kind}.npy", split.as_str()), options)
                    .map_err(io::Error::other)?;
                zip.write_all(&npy_u8_bytes(&shape, data))?;
            }
        }
        zip.finish().map_err(io::Error::other)?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("cannot write", path)(e)
    })
}

/// A version 1.0 `.npy` file of `uint8` data, C order.
fn npy_u8_bytes(shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_to_c_transposes() {
        // numpy: a = np.arange(6).reshape(2, 3); a.flatten(order='F') == [0, 3, 1, 4, 2, 5]
        assert_eq!(
            fortran_to_c(&[0, 3, 1, 4, 2, 5], &[2, 3]),
            vec![0, 1, 2, 3, 4, 5]
        );
        // np.arange(24).reshape(2, 3, 4).flatten(order='F')
        let c: Vec<u8> = (0..24).collect();
        let mut f = Vec::new();
        for k in 0..4 {
            for j in 0..3 {
                for i in 0..2 {
                    f.push(c[i * 12 + j * 4 + k]);
                }
            }
        }
        assert_eq!(fortran_to_c(&f, &[2, 3, 4]), c);
        assert_eq!(fortran_to_c(&[], &[0, 3]), Vec::<u8>::new());
    }

    #[test]
    fn shapes_format_like_python() {
        assert_eq!(format_shape(&[3usize]), "(3,)");
        assert_eq!(format_shape(&[2u64, 28, 28]), "(2, 28, 28)");
        assert_eq!(format_shape::<u64>(&[]), "()");
    }
}
