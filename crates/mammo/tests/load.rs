//! Loading: end to end from files to split arrays, channel policy, error reporting.

mod common;

use std::collections::HashSet;

use common::{chain, save_gray16, save_rgb8, save_small, write};
use mammo::{Error, Fit, Intensity, LoadConfig, Split, load, read_csv, read_folder};

fn config(size: usize) -> LoadConfig {
    LoadConfig {
        size,
        fit: Fit::Crop,
        intensity: Intensity::default(),
        fractions: [0.6, 0.2, 0.2],
        seed: 7,
    }
}

/// `n` patients per class, two 8-bit images each, in `dir/<class>/`; returns the CSV path.
fn cohort(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let mut csv = String::from("path,label,patient_id\n");
    for class in ["benign", "malignant"] {
        for p in 0..n {
            for k in 0..2 {
                let rel = format!("{class}/{p}_{k}.png");
                save_small(&dir.join(&rel), (p * 2 + k) as u8);
                csv.push_str(&format!("{rel},{class},{class}-{p}\n"));
            }
        }
    }
    write(&dir.join("m.csv"), &csv)
}

#[test]
fn loads_splits_in_manifest_order_with_one_channel() {
    let dir = tempfile::tempdir().unwrap();
    let m = read_csv(cohort(dir.path(), 5), None).unwrap();
    let crops = load(&m, &config(4)).unwrap();
    assert_eq!(crops.class_names, ["benign", "malignant"]);
    assert_eq!(crops.report.images, 20);
    assert!(crops.report.seconds >= 0.0);
    let mut seen = HashSet::new();
    let mut total = 0;
    for split in Split::ALL {
        let s = crops.split(split);
        assert_eq!((s.height, s.width, s.channels), (4, 4, 1), "{split}");
        assert_eq!(s.pixels.len(), s.len() * 16);
        assert_eq!((s.paths.len(), s.patients.len()), (s.len(), s.len()));
        assert_eq!(
            s.class_counts(2).iter().filter(|&&c| c > 0).count(),
            2,
            "{split}: both classes"
        );
        // Patients do not cross splits; images keep manifest order within a split.
        let patients: HashSet<_> = s.patients.iter().cloned().collect();
        assert!(patients.is_disjoint(&seen), "{split}");
        seen.extend(patients);
        let order: Vec<usize> = s
            .paths
            .iter()
            .map(|p| m.records.iter().position(|r| &r.path == p).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{split}: {order:?}");
        // Each image equals decoding + resizing its file alone.
        for (i, &record) in order.iter().enumerate() {
            let img = mammo::decode(&s.paths[i], &Intensity::default()).unwrap();
            let want = mammo::resize(&img, 4, Fit::Crop).unwrap();
            assert_eq!(s.image(i).unwrap(), want.pixels.as_slice());
            assert_eq!(s.labels[i], m.records[record].label);
        }
        total += s.len();
    }
    assert_eq!(total, 20);
    // 5 patients per class, fractions 0.6/0.2/0.2: 3/1/1 patients, 2 images each.
    assert_eq!(
        [crops.train.len(), crops.val.len(), crops.test.len()],
        [12, 4, 4]
    );
}

#[test]
fn one_rgb_image_makes_every_split_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..3 {
        save_gray16(
            &root.join(format!("benign/{i}.png")),
            2,
            2,
            &[0, 1000, 2000, 3000],
        );
        save_small(&root.join(format!("malignant/{i}.png")), i);
    }
    save_rgb8(&root.join("malignant/c.png"), 1, 1, &[10, 20, 30]);
    let m = read_folder(root).unwrap();
    let crops = load(
        &m,
        &LoadConfig {
            size: 2,
            fit: Fit::Stretch,
            ..config(2)
        },
    )
    .unwrap();
    for split in Split::ALL {
        let s = crops.split(split);
        assert_eq!(s.channels, 3);
        for i in 0..s.len() {
            let px = s.image(i).unwrap();
            if s.paths[i].ends_with("c.png") {
                assert_eq!(px, [10, 20, 30].repeat(4));
            } else {
                // Grayscale replicated into R, G and B.
                assert!(px.chunks(3).all(|c| c[0] == c[1] && c[1] == c[2]), "{px:?}");
            }
        }
    }
    // The 16-bit images were windowed: np.percentile([0,1000,2000,3000], [0.5, 99.5]) =
    // 15.0, 2985.0 -> np.floor(np.clip((x - 15) / 2970, 0, 1) * 255 + 0.5) = 0, 85, 170, 255.
    let benign = Split::ALL
        .iter()
        .map(|s| crops.split(*s))
        .find_map(|s| {
            (0..s.len())
                .find(|&i| s.labels[i] == 0)
                .map(|i| s.image(i).unwrap().to_vec())
        })
        .unwrap();
    assert_eq!(benign, [0, 0, 0, 85, 85, 85, 170, 170, 170, 255, 255, 255]);
}

#[test]
fn failing_images_report_the_first_in_manifest_order_and_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let csv = cohort(dir.path(), 3);
    // Corrupt three files; the first in manifest order is benign/1_0.png (line 4).
    for rel in ["malignant/0_0.png", "benign/2_1.png", "benign/1_0.png"] {
        write(&dir.path().join(rel), "not an image");
    }
    let m = read_csv(&csv, None).unwrap();
    let err = load(&m, &config(4)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ImagesFailed {
                failed: 3,
                total: 12,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = chain(&err);
    assert!(
        msg.starts_with("3 of 12 images could not be loaded"),
        "{msg}"
    );
    assert!(
        msg.contains("benign/1_0.png") && msg.contains("m.csv` line 4"),
        "{msg}"
    );
    assert!(msg.contains("cannot decode image"), "{msg}");

    // A single failure is returned as is, with its manifest line.
    let dir = tempfile::tempdir().unwrap();
    let csv = cohort(dir.path(), 3);
    write(&dir.path().join("malignant/2_1.png"), "junk");
    let m = read_csv(&csv, None).unwrap();
    let err = load(&m, &config(4)).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(
        err.to_string().contains("malignant/2_1.png") && err.to_string().contains("m.csv` line 13"),
        "{err}"
    );
}

#[test]
fn undecodable_file_in_a_class_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..3 {
        save_small(&root.join(format!("benign/{i}.png")), i);
        save_small(&root.join(format!("malignant/{i}.png")), i);
    }
    let bad = write(&root.join("malignant/broken.tif"), "II*\0 truncated");
    let m = read_folder(root).unwrap();
    let err = load(&m, &config(4)).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("`{}`", bad.display())),
        "{err}"
    );
}

/// `--resize crop` resizes the short side to the training size first: a 1x400 image would
/// need a 1x(400 x size) buffer (a 1x11 million PNG of 21 KB panicked); it is refused, naming
/// the file, and `pad` takes it.
#[test]
fn an_extremely_elongated_image_is_refused_for_crop() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..3 {
        save_small(&root.join(format!("benign/{i}.png")), i);
        save_small(&root.join(format!("malignant/{i}.png")), i);
    }
    let strip = root.join("malignant/strip.png");
    save_gray16(&strip, 400, 1, &[1000; 400]);
    let m = read_folder(root).unwrap();
    let err = load(&m, &config(8)).unwrap_err();
    assert!(matches!(err, Error::ExtremeAspect { height: 1, width: 400, .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("`{}`", strip.display())) && err.to_string().contains("--resize pad"), "{err}");
    let padded = load(&m, &LoadConfig { fit: Fit::Pad, ..config(8) }).unwrap();
    assert_eq!(padded.report.images, 7);
}

#[test]
fn an_empty_split_is_named_with_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let m = read_csv(cohort(dir.path(), 1), None).unwrap();
    // One patient per class: everything goes to train.
    let err = load(&m, &config(4)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::EmptySplit {
                split: Split::Val,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("val split is empty")
            && msg.contains("train 4, val 0, test 0 images from 2 patients"),
        "{msg}"
    );
    // A given split without test images.
    let csv = write(
        &dir.path().join("s.csv"),
        "path,label,split\nbenign/0_0.png,benign,train\nmalignant/0_0.png,malignant,val\n",
    );
    let err = load(&read_csv(&csv, None).unwrap(), &config(4)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::EmptySplit {
                split: Split::Test,
                train: 1,
                val: 1,
                test: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        load(&read_csv(&csv, None).unwrap(), &config(0)),
        Err(Error::ZeroSize)
    ));
}
