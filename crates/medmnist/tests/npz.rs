//! Reading `.npz` files: round trips and every rejection path.

mod common;

use std::path::{Path, PathBuf};

use common::{SplitFixture, chain, members, npy, npy_raw, npy_u8, pattern, replace, rgb_splits, write_zip};
use medmnist::{Error, SplitName, read_npy_u8, read_npz, read_npz_checked};
use zip::CompressionMethod;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Write `members` as `name` in a fresh temp dir; returns (dir guard, path).
fn npz_with(
    members: &[(String, Vec<u8>)],
    method: CompressionMethod,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fixture.npz");
    write_zip(&path, members, method);
    (dir, path)
}

fn assert_split_eq(name: SplitName, got: &medmnist::Split, want: &SplitFixture) {
    let (h, w) = (want.image_shape[1], want.image_shape[2]);
    let c = want.image_shape.get(3).copied().unwrap_or(1);
    assert_eq!(
        (got.len, got.height, got.width, got.channels),
        (want.image_shape[0], h, w, c),
        "{name}"
    );
    assert_eq!(got.images, want.images, "{name} images");
    assert_eq!(got.labels, want.labels, "{name} labels");
}

#[test]
fn rgb_round_trip_is_exact() {
    let splits = rgb_splits();
    let (_dir, path) = npz_with(&members(&splits), CompressionMethod::Deflated);
    let arrays = read_npz_checked(&path, 7).expect("valid fixture");
    for (name, want) in SplitName::ALL.into_iter().zip(&splits) {
        assert_split_eq(name, arrays.split(name), want);
    }
    let train = &arrays.train;
    assert_eq!(train.image_len(), 4 * 5 * 3);
    assert_eq!(train.image(1), Some(&splits[0].images[60..120]));
    assert_eq!(train.label(1), Some(6));
    assert_eq!(train.image(3), None);
    assert_eq!(train.label(3), None);
}

#[test]
fn grayscale_round_trip_gets_one_channel() {
    // (N, H, W) images and (N,) labels, stored uncompressed.
    let mut splits = [
        SplitFixture::new(2, 6, 6, None, 0, &[1, 0]),
        SplitFixture::new(1, 6, 6, None, 100, &[1]),
        SplitFixture::new(1, 6, 6, None, 200, &[0]),
    ];
    for s in &mut splits {
        s.label_shape = vec![s.labels.len()];
    }
    let (_dir, path) = npz_with(&members(&splits), CompressionMethod::Stored);
    let arrays = read_npz_checked(&path, 2).expect("valid fixture");
    for (name, want) in SplitName::ALL.into_iter().zip(&splits) {
        assert_split_eq(name, arrays.split(name), want);
    }
}

#[test]
fn explicit_single_channel_axis_is_accepted() {
    let splits = [
        SplitFixture::new(2, 3, 3, Some(1), 0, &[0, 1]),
        SplitFixture::new(1, 3, 3, Some(1), 1, &[1]),
        SplitFixture::new(1, 3, 3, Some(1), 2, &[0]),
    ];
    let (_dir, path) = npz_with(&members(&splits), CompressionMethod::Deflated);
    let arrays = read_npz(&path).expect("valid");
    assert_eq!(arrays.train.channels, 1);
    assert_eq!(arrays.train.images, splits[0].images);
}

/// Files written by numpy itself (`np.savez_compressed` / `np.savez`, which
/// use zip64 extra fields): see tests/fixtures/make_fixtures.py.
#[test]
fn numpy_written_files_read_exactly() {
    let rgb = read_npz_checked(fixture_dir().join("numpy_rgb.npz"), 7).expect("numpy rgb fixture");
    let expected = rgb_splits(); // same formula, shapes and labels as the script
    for (name, want) in SplitName::ALL.into_iter().zip(&expected) {
        assert_split_eq(name, rgb.split(name), want);
    }

    let gray =
        read_npz_checked(fixture_dir().join("numpy_gray.npz"), 2).expect("numpy gray fixture");
    assert_eq!(
        (
            gray.train.len,
            gray.train.height,
            gray.train.width,
            gray.train.channels
        ),
        (2, 6, 6, 1)
    );
    assert_eq!(gray.train.images, pattern(72, 0));
    assert_eq!(gray.val.images, pattern(36, 100));
    assert_eq!(gray.test.images, pattern(36, 200));
    assert_eq!(
        (
            gray.train.labels.as_slice(),
            gray.val.labels.as_slice(),
            gray.test.labels.as_slice()
        ),
        (&[1, 0][..], &[1][..], &[0][..])
    );
}

#[test]
fn fortran_order_images_are_transposed_to_channels_last() {
    let mut ms = members(&rgb_splits());
    // Store the train images (3, 4, 5, 3) in Fortran order: first axis fastest.
    let c_order = rgb_splits()[0].images.clone();
    let shape = [3, 4, 5, 3];
    let mut f_order = Vec::with_capacity(c_order.len());
    for c in 0..shape[3] {
        for x in 0..shape[2] {
            for y in 0..shape[1] {
                for n in 0..shape[0] {
                    f_order.push(c_order[((n * shape[1] + y) * shape[2] + x) * shape[3] + c]);
                }
            }
        }
    }
    assert_ne!(f_order, c_order);
    replace(
        &mut ms,
        "train_images.npy",
        npy("|u1", true, &shape, &f_order),
    );
    let (_dir, path) = npz_with(&ms, CompressionMethod::Deflated);
    let arrays = read_npz(&path).expect("fortran order is supported");
    assert_eq!(arrays.train.images, c_order);
}

#[test]
fn missing_member_is_named_with_present_members() {
    let ms: Vec<_> = members(&rgb_splits())
        .into_iter()
        .filter(|(n, _)| n != "val_labels.npy")
        .collect();
    let (_dir, path) = npz_with(&ms, CompressionMethod::Deflated);
    let err = read_npz(&path).expect_err("missing member");
    assert!(
        matches!(err, Error::MissingArray { ref member, .. } if member == "val_labels.npy"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("val_labels.npy"), "{msg}");
    assert!(
        msg.contains("train_images.npy, train_labels.npy, val_images.npy"),
        "{msg}"
    );
}

#[test]
fn wrong_dtype_is_rejected() {
    let mut ms = members(&rgb_splits());
    let floats: Vec<u8> = (0..3 * 4 * 5 * 3)
        .flat_map(|_| 0.5f32.to_le_bytes())
        .collect();
    replace(
        &mut ms,
        "train_images.npy",
        npy("<f4", false, &[3, 4, 5, 3], &floats),
    );
    let (_dir, path) = npz_with(&ms, CompressionMethod::Deflated);
    let err = read_npz(&path).expect_err("float images");
    assert!(
        matches!(err, Error::Dtype { ref found, .. } if found == "<f4"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("train_images.npy") && msg.contains("fixture.npz"),
        "{msg}"
    );
    assert!(msg.contains("|u1") && msg.contains("<f4"), "{msg}");
}

#[test]
fn wrong_image_rank_is_rejected() {
    let mut ms = members(&rgb_splits());
    replace(
        &mut ms,
        "test_images.npy",
        npy_u8(&[1, 60], &pattern(60, 0)),
    );
    let (_dir, path) = npz_with(&ms, CompressionMethod::Deflated);
    let err = read_npz(&path).expect_err("rank 2 images");
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("test_images.npy") && msg.contains("(1, 60)") && msg.contains("(N, H, W)"),
        "{msg}"
    );
}

#[test]
fn wrong_channel_count_is_rejected() {
    let mut ms = members(&rgb_splits());
    replace(
        &mut ms,
        "train_images.npy",
        npy_u8(&[3, 4, 5, 2], &pattern(120, 0)),
    );
    let (_dir, path) = npz_with(&ms, CompressionMethod::Deflated);
    let err = read_npz(&path).expect_err("two channels");
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("(3, 4, 5, 2)"), "{err}");
}

/// A member compressed with bzip2 (Python's `zipfile` can write one): named as such, not as a
/// bad .npy header. The stored archive's method fields (local header offset 8, central
/// directory entry offset 10) are set to 12, bzip2.
#[test]
fn an_unsupported_compression_is_named() {
    let (_dir, path) = npz_with(&members(&rgb_splits()), CompressionMethod::Stored);
    let mut bytes = std::fs::read(&path).unwrap();
    for (signature, offset) in [(b"PK\x03\x04", 8), (b"PK\x01\x02", 10)] {
        let starts: Vec<usize> = bytes.windows(4).enumerate().filter(|(_, w)| w == signature).map(|(i, _)| i).collect();
        assert!(!starts.is_empty());
        for i in starts {
            bytes[i + offset..i + offset + 2].copy_from_slice(&12u16.to_le_bytes());
        }
    }
    std::fs::write(&path, bytes).unwrap();
    let err = read_npz(&path).expect_err("bzip2 members");
    assert!(matches!(err, Error::UnsupportedCompression { .. }), "{err:?}");
    assert!(err.to_string().contains("train_images.npy") && err.to_string().contains("stored or deflate"), "{err}");
}

#[test]
fn zero_size_images_are_rejected() {
    for shape in [[2, 4, 0, 3], [2, 0, 0, 3]] {
        let mut ms = members(&rgb_splits());
        replace(&mut ms, "val_images.npy", npy_u8(&shape, &[]));
        let (_dir, path) = npz_with(&ms, CompressionMethod::Deflated);
        let err = read_npz(&path).expect_err("zero-size images");
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        assert!(err.to_string().contains("val_images.npy") && err.to_string().contains("at least 1 x 1"), "{err}");
    }
}

#[test]
fn splits_of_another_image_shape_than_train_are_rejected() {
    // val at 2 x 5 (train 4 x 5), then test grayscale (train RGB).
    let mut ms = members(&rgb_splits());
    replace(&mut ms, "val_images.npy", npy_u8(&[2, 2, 5, 3], &pattern(60, 0)));
    let (_dir, path) = npz_with(&ms, CompressionMethod::Deflated);
    let err = read_npz(&path).expect_err("val of another size");
    assert!(matches!(err, Error::SplitShape { .. }), "{err}");
    assert!(err.to_string().contains("val_images.npy") && err.to_string().contains("2 x 5 x 3") && err.to_string().contains("4 x 5 x 3"), "{err}");
    let mut ms = members(&rgb_splits());
    replace(&mut ms, "test_images.npy", npy_u8(&[1, 4, 5], &pattern(20, 0)));
    let (_dir, path) = npz_with(&ms, CompressionMethod::Deflated);
    let err = read_npz(&path).expect_err("test grayscale");
    assert!(err.to_string().contains("test_images.npy") && err.to_string().contains("4 x 5 x 1"), "{err}");
}

#[test]
fn wrong_label_shape_is_rejected() {
    let mut ms = members(&rgb_splits());
    replace(
        &mut ms,
        "train_labels.npy",
        npy_u8(&[3, 2], &[0, 1, 0, 1, 1, 0]),
    );
    let (_dir, path) = npz_with(&ms, CompressionMethod::Deflated);
    let err = read_npz(&path).expect_err("multi-column labels");
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("train_labels.npy")
            && msg.contains("(3, 2)")
            && msg.contains("(N,) or (N, 1)"),
        "{msg}"
    );
}

#[test]
fn image_label_count_mismatch_is_rejected() {
    let mut ms = members(&rgb_splits());
    replace(&mut ms, "val_labels.npy", npy_u8(&[3, 1], &[0, 1, 2]));
    let (_dir, path) = npz_with(&ms, CompressionMethod::Deflated);
    let err = read_npz(&path).expect_err("3 labels for 2 images");
    assert!(
        matches!(
            err,
            Error::CountMismatch {
                images: 2,
                labels: 3,
                split: "val",
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("`val_images.npy` holds 2 images") && msg.contains("holds 3 labels"),
        "{msg}"
    );
}

#[test]
fn truncated_zip_is_reported_as_corrupt() {
    let (_dir, path) = npz_with(&members(&rgb_splits()), CompressionMethod::Deflated);
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = read_npz(&path).expect_err("truncated");
    assert!(matches!(err, Error::CorruptZip { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("fixture.npz") && msg.contains("truncated or corrupt"),
        "{msg}"
    );
}

#[test]
fn corrupt_member_data_is_reported() {
    // Stored (uncompressed) member whose data bytes are flipped: the CRC check fails.
    let (_dir, path) = npz_with(&members(&rgb_splits()), CompressionMethod::Stored);
    let mut bytes = std::fs::read(&path).expect("read");
    // Find the first member's array data: after the `.npy` magic, version and header.
    let magic = bytes
        .windows(6)
        .position(|w| w == b"\x93NUMPY")
        .expect("stored npy magic");
    let header_len = u16::from_le_bytes([bytes[magic + 8], bytes[magic + 9]]) as usize;
    let data_at = magic + 10 + header_len;
    for b in &mut bytes[data_at..data_at + 8] {
        *b ^= 0xff;
    }
    std::fs::write(&path, &bytes).expect("write");
    let err = read_npz(&path).expect_err("crc mismatch");
    assert!(matches!(err, Error::ReadData { .. }), "{}", chain(&err));
    assert!(err.to_string().contains("train_images.npy"), "{err}");
}

#[test]
fn not_a_zip_is_reported_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fixture.npz");
    std::fs::write(&path, b"<html>rate limited</html>").expect("write");
    let err = read_npz(&path).expect_err("html");
    assert!(matches!(err, Error::NotZip { .. }), "{err}");
    assert!(
        err.to_string().contains("fixture.npz") && err.to_string().contains("zip archive"),
        "{err}"
    );

    std::fs::write(&path, b"").expect("write");
    let err = read_npz(&path).expect_err("empty");
    assert!(err.to_string().contains("an empty file"), "{err}");
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.npz");
    let err = read_npz(&path).expect_err("absent");
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("absent.npz"), "{err}");
}

#[test]
fn label_out_of_range_is_rejected_only_when_checked() {
    let mut splits = rgb_splits();
    splits[2].labels = vec![7];
    let (_dir, path) = npz_with(&members(&splits), CompressionMethod::Deflated);
    read_npz(&path).expect("unchecked read accepts any label");
    read_npz_checked(&path, 8).expect("7 < 8");
    let err = read_npz_checked(&path, 7).expect_err("7 >= 7");
    assert!(
        matches!(
            err,
            Error::LabelOutOfRange {
                value: 7,
                index: 0,
                n_classes: 7,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("test_labels.npy") && msg.contains("0..7") && msg.contains("fixture.npz"),
        "{msg}"
    );
}

#[test]
fn member_shorter_than_header_declares_is_rejected() {
    let mut ms = members(&rgb_splits());
    let mut short = npy_u8(&[1, 4, 5, 3], &pattern(60, 0));
    short.truncate(short.len() - 10);
    replace(&mut ms, "test_images.npy", short);
    let (_dir, path) = npz_with(&ms, CompressionMethod::Deflated);
    let err = read_npz(&path).expect_err("short data");
    assert!(
        matches!(
            err,
            Error::DataLength {
                expected: 60,
                found: 50,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("test_images.npy"), "{err}");
}

#[test]
fn read_npy_u8_reads_streams_and_rejects_bad_ones() {
    let bytes = npy_u8(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let arr = read_npy_u8(bytes.as_slice(), "a.npy").expect("valid");
    assert_eq!(arr.shape, vec![2, 3]);
    assert_eq!(arr.data, vec![1, 2, 3, 4, 5, 6]);

    let mut trailing = bytes.clone();
    trailing.extend([9, 9]);
    let err = read_npy_u8(trailing.as_slice(), "a.npy").expect_err("trailing bytes");
    assert!(
        matches!(
            err,
            Error::DataLength {
                expected: 6,
                found: 8,
                ..
            }
        ),
        "{err}"
    );

    let err = read_npy_u8(&bytes[..bytes.len() - 1], "a.npy").expect_err("short");
    assert!(
        matches!(
            err,
            Error::DataLength {
                expected: 6,
                found: 5,
                ..
            }
        ),
        "{err}"
    );

    let err = read_npy_u8(&b"PK\x03\x04 not an npy"[..], "b.npy").expect_err("bad magic");
    assert!(matches!(err, Error::NpyHeader { .. }), "{err}");
    assert!(err.to_string().contains("b.npy"), "{err}");

    // Version 2 header claiming a 4 GiB header: rejected before allocating it.
    let huge = b"\x93NUMPY\x02\x00\xff\xff\xff\xff{".to_vec();
    let err = read_npy_u8(huge.as_slice(), "c.npy").expect_err("huge header");
    assert!(chain(&err).contains("exceeds the limit"), "{}", chain(&err));
}

#[test]
fn catalogue_check_accepts_matching_arrays_and_names_mismatches() {
    use medmnist::{DatasetInfo, ImageSize, Task};
    let info = DatasetInfo {
        flag: "tinymnist",
        python_name: "TinyMNIST",
        task: Task::MultiClass,
        n_channels: 3,
        labels: &["a", "b", "c", "d", "e", "f", "g"],
        label_names: &["a", "b", "c", "d", "e", "f", "g"],
        split_sizes: [3, 2, 1],
        md5: ["00000000000000000000000000000000"; 4],
        license: "test",
    };
    let splits = [
        SplitFixture::new(3, 28, 28, Some(3), 0, &[0, 6, 3]),
        SplitFixture::new(2, 28, 28, Some(3), 100, &[5, 1]),
        SplitFixture::new(1, 28, 28, Some(3), 200, &[2]),
    ];
    let (_dir, path) = npz_with(&members(&splits), CompressionMethod::Deflated);
    let arrays = read_npz_checked(&path, info.n_classes()).expect("valid");
    info.check_arrays(ImageSize::Px28, &arrays, &path)
        .expect("matches");

    let err = info
        .check_arrays(ImageSize::Px64, &arrays, &path)
        .expect_err("wrong size");
    assert!(
        err.to_string().contains("64x64") && err.to_string().contains("28x28"),
        "{err}"
    );

    let gray = DatasetInfo {
        n_channels: 1,
        ..info.clone()
    };
    let err = gray
        .check_arrays(ImageSize::Px28, &arrays, &path)
        .expect_err("wrong channels");
    assert!(err.to_string().contains("channel count"), "{err}");

    let longer = DatasetInfo {
        split_sizes: [3, 2, 2],
        ..info
    };
    let err = longer
        .check_arrays(ImageSize::Px28, &arrays, &path)
        .expect_err("wrong length");
    let msg = err.to_string();
    assert!(
        msg.contains("test split length") && msg.contains("fixture.npz"),
        "{msg}"
    );
}

#[test]
fn empty_split_with_absurd_image_size_is_rejected() {
    let mut ms = members(&rgb_splits());
    let huge = 1usize << 40; // (2^40)^2 overflows usize
    replace(
        &mut ms,
        "test_images.npy",
        npy("|u1", false, &[0, huge, huge, 3], &[]),
    );
    replace(&mut ms, "test_labels.npy", npy_u8(&[0, 1], &[]));
    let (_dir, path) = npz_with(&ms, CompressionMethod::Deflated);
    let err = read_npz(&path).expect_err("overflowing image size");
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("test_images.npy"), "{err}");
}

/// `write_npz` output reads back exactly (RGB and grayscale), with no temporary file left.
#[test]
fn written_npz_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for channels in [3, 1] {
        let split = |n: usize, seed: usize| medmnist::Split {
            images: pattern(n * 4 * 5 * channels, seed),
            labels: (0..n).map(|i| (i % 7) as u8).collect(),
            len: n,
            height: 4,
            width: 5,
            channels,
        };
        let arrays = medmnist::MedMnistArrays { train: split(6, 1), val: split(3, 2), test: split(2, 3) };
        let path = dir.path().join(format!("w{channels}.npz"));
        medmnist::write_npz(&path, &arrays).unwrap();
        assert_eq!(medmnist::read_npz(&path).unwrap(), arrays);
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["w1.npz", "w3.npz"]);
}

/// Headers whose shape the overflow pre-check cannot read the way npyz does — a list, the key
/// twice (npyz keeps the last), a decoy `'shape'` inside another value — made npyz multiply
/// 2^32 · 2^32 · 2^32 unchecked (a panic in debug builds). They are refused, naming the member.
#[test]
fn headers_hiding_an_overflowing_shape_are_refused() {
    let huge = "4294967296, 4294967296, 4294967296";
    for dict in [
        format!("{{'descr': '|u1', 'fortran_order': False, 'shape': [{huge}], }}"),
        format!("{{'descr': '|u1', 'fortran_order': False, 'shape': (1,), 'shape': ({huge}), }}"),
        format!("{{'x': \"'shape': (1,)\", 'descr': '|u1', 'fortran_order': False, 'shape': ({huge}), }}"),
    ] {
        let mut ms = members(&rgb_splits());
        replace(&mut ms, "train_images.npy", npy_raw(&dict, &[]));
        let (_dir, path) = npz_with(&ms, CompressionMethod::Stored);
        let err = read_npz(&path).expect_err(&dict);
        assert!(chain(&err).contains("train_images.npy"), "{dict}: {}", chain(&err));
    }
    // numpy's own header with a list-free, single shape still reads.
    let mut ms = members(&rgb_splits());
    replace(&mut ms, "train_images.npy", npy_raw("{'descr': '|u1', 'fortran_order': False, 'shape': (0, 4, 5, 3), }", &[]));
    replace(&mut ms, "train_labels.npy", npy_u8(&[0, 1], &[]));
    let (_dir, path) = npz_with(&ms, CompressionMethod::Stored);
    assert_eq!(read_npz(&path).unwrap().train.len, 0);
}

/// A stored member whose header declares 2^40 bytes and whose zip64 central-directory entry
/// claims that size too (the file is 2 KB): the reader used to allocate the claimed size up
/// front and abort the process ("memory allocation of 1099511627776 bytes failed"); now the
/// buffer grows with the bytes that really arrive and the short data is an error.
#[test]
fn a_claimed_huge_member_size_is_not_allocated_up_front() {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
            }
        }
        !c
    }
    // (name, data, claimed uncompressed size for a zip64 extra field)
    let header = npy_raw("{'descr': '|u1', 'fortran_order': False, 'shape': (1099511627776,), }", &[]);
    let mut members: Vec<(String, Vec<u8>, Option<u64>)> = vec![(
        "train_images.npy".into(),
        [header.clone(), vec![0u8; 16]].concat(),
        Some(header.len() as u64 + (1 << 40)),
    )];
    for (name, bytes) in common::members(&rgb_splits()) {
        if name != "train_images.npy" {
            members.push((name, bytes, None));
        }
    }
    let (mut out, mut cd) = (Vec::new(), Vec::new());
    let le16 = |v: &mut Vec<u8>, x: u16| v.extend(x.to_le_bytes());
    let le32 = |v: &mut Vec<u8>, x: u32| v.extend(x.to_le_bytes());
    for (name, data, claim) in &members {
        let offset = out.len() as u32;
        let crc = crc32(data);
        le32(&mut out, 0x0403_4b50);
        for x in [45u16, 0, 0, 0, 0] {
            le16(&mut out, x);
        }
        le32(&mut out, crc);
        le32(&mut out, data.len() as u32);
        le32(&mut out, data.len() as u32);
        le16(&mut out, name.len() as u16);
        le16(&mut out, 0);
        out.extend(name.as_bytes());
        out.extend(data);
        le32(&mut cd, 0x0201_4b50);
        for x in [45u16, 45, 0, 0, 0, 0] {
            le16(&mut cd, x);
        }
        le32(&mut cd, crc);
        le32(&mut cd, data.len() as u32);
        le32(&mut cd, if claim.is_some() { 0xFFFF_FFFF } else { data.len() as u32 });
        le16(&mut cd, name.len() as u16);
        le16(&mut cd, if claim.is_some() { 12 } else { 0 });
        for x in [0u16, 0, 0] {
            le16(&mut cd, x);
        }
        le32(&mut cd, 0);
        le32(&mut cd, offset);
        cd.extend(name.as_bytes());
        if let Some(size) = claim {
            le16(&mut cd, 1); // zip64 extended information: the uncompressed size
            le16(&mut cd, 8);
            cd.extend(size.to_le_bytes());
        }
    }
    let cd_offset = out.len() as u32;
    out.extend(&cd);
    le32(&mut out, 0x0605_4b50);
    for x in [0u16, 0, members.len() as u16, members.len() as u16] {
        le16(&mut out, x);
    }
    le32(&mut out, cd.len() as u32);
    le32(&mut out, cd_offset);
    le16(&mut out, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claims.npz");
    std::fs::write(&path, out).unwrap();
    let err = read_npz(&path).expect_err("16 bytes of a declared 2^40");
    assert!(chain(&err).contains("train_images.npy"), "{}", chain(&err));
}
