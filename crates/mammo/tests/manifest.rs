//! Manifest readers: class folders, CSV manifests, CBIS-DDSM case descriptions, and every
//! rejection with the file (and line) it names.

mod common;

use std::path::{Path, PathBuf};

use common::{chain, save_small, write};
use mammo::{Error, Split, read_cbis_ddsm, read_csv, read_folder};

// ----- folders ---------------------------------------------------------------

#[test]
fn folder_classes_are_sorted_subfolders_and_only_images_count() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_small(&root.join("malignant/m1.PNG"), 1);
    save_small(&root.join("benign/b2.tif"), 2);
    save_small(&root.join("benign/b1.png"), 3);
    save_small(&root.join("benign/b3.JPEG"), 4);
    save_small(&root.join("benign/.hidden.png"), 5);
    write(&root.join("benign/notes.txt"), "ignored");
    write(&root.join("benign/Thumbs.db"), "ignored");
    save_small(&root.join(".cache/x.png"), 6); // hidden folder: not a class
    save_small(&root.join("stray.png"), 7); // file in the root: ignored
    let m = read_folder(root).unwrap();
    assert_eq!(m.class_names, ["benign", "malignant"]);
    let got: Vec<(String, usize)> = m
        .records
        .iter()
        .map(|r| {
            (
                r.path.strip_prefix(root).unwrap().display().to_string(),
                r.label,
            )
        })
        .collect();
    let want = [
        ("benign/b1.png", 0),
        ("benign/b2.tif", 0),
        ("benign/b3.JPEG", 0),
        ("malignant/m1.PNG", 1),
    ];
    assert_eq!(got, want.map(|(p, l)| (p.to_string(), l)));
    assert!(
        m.records
            .iter()
            .all(|r| r.patient.is_none() && r.split.is_none())
    );
    assert_eq!(
        m.records[0].origin,
        root.join("benign/b1.png").display().to_string()
    );
    assert_eq!(m.class_counts(), [3, 1]);
}

/// Images in folders below a class folder (one per patient, say) are the class's too; a DICOM
/// original beside its converted image is skipped, one alone is refused, and so is an image
/// format that is not read (before, all three were left out without a word).
#[test]
fn folder_classes_are_read_recursively_and_unread_images_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_small(&root.join("benign/b1.png"), 1);
    save_small(&root.join("benign/P7/b2.png"), 2);
    save_small(&root.join("benign/P7/views/b3.tif"), 3);
    save_small(&root.join("benign/.P8/hidden.png"), 4);
    write(&root.join("benign/b1.dcm"), "the original of b1.png");
    save_small(&root.join("malignant/P9/m1.png"), 5);
    let m = read_folder(root).unwrap();
    let got: Vec<String> = m.records.iter().map(|r| r.path.strip_prefix(root).unwrap().display().to_string()).collect();
    assert_eq!(got, ["benign/P7/b2.png", "benign/P7/views/b3.tif", "benign/b1.png", "malignant/P9/m1.png"]);
    assert_eq!(m.class_counts(), [3, 1]);

    // A link back up the tree is walked once.
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.join("benign"), root.join("benign/P7/loop")).unwrap();
    assert_eq!(read_folder(root).unwrap().class_counts(), [3, 1]);

    write(&root.join("malignant/P9/m2.dcm"), "not converted");
    let err = read_folder(root).unwrap_err();
    assert!(matches!(&err, Error::Dicom { path, .. } if path.ends_with("malignant/P9/m2.dcm")), "{err:?}");
    std::fs::remove_file(root.join("malignant/P9/m2.dcm")).unwrap();

    write(&root.join("benign/P7/b4.BMP"), "a bitmap");
    let err = read_folder(root).unwrap_err();
    assert!(matches!(&err, Error::UnreadFormat { path } if path.ends_with("benign/P7/b4.BMP")), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("b4.BMP") && msg.contains(".png, .tif"), "{msg}");
}

/// Class order does not depend on case: with `benign/` and `Malignant/` (or those CSV labels)
/// `Malignant` is label 1, the positive class of a two-class run, as `malignant` is; byte order
/// put every capitalised name first.
#[test]
fn class_names_sort_without_regard_to_case() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_small(&root.join("Malignant/m1.png"), 1);
    save_small(&root.join("benign/b1.png"), 2);
    let m = read_folder(root).unwrap();
    assert_eq!(m.class_names, ["benign", "Malignant"]);
    assert_eq!(m.records.iter().map(|r| r.label).collect::<Vec<_>>(), [0, 1], "benign first, its image label 0");
    let csv = write(&root.join("m.csv"), "path,label\nbenign/b1.png,benign\nMalignant/m1.png,Malignant\n");
    assert_eq!(read_csv(&csv, None).unwrap().class_names, ["benign", "Malignant"]);
}

/// A file linked into two class folders is one image under two labels (it could land in two
/// splits): refused, as a CSV listing one file twice is.
#[cfg(unix)]
#[test]
fn folder_refuses_one_file_in_two_classes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_small(&root.join("benign/b0.png"), 1);
    save_small(&root.join("benign/b1.png"), 2);
    save_small(&root.join("malignant/m1.png"), 3);
    std::os::unix::fs::symlink(root.join("benign/b0.png"), root.join("malignant/b0.png")).unwrap();
    let err = read_folder(root).unwrap_err();
    assert!(matches!(err, Error::DuplicateImage { .. }), "{err:?}");
}

#[test]
fn folder_errors_name_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // No class folders.
    let err = read_folder(root).unwrap_err();
    assert!(matches!(err, Error::EmptyManifest { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&root.display().to_string()),
        "{err}"
    );
    // An empty class folder.
    save_small(&root.join("benign/b.png"), 1);
    std::fs::create_dir_all(root.join("malignant")).unwrap();
    write(&root.join("malignant/readme.txt"), "no images here");
    let err = read_folder(root).unwrap_err();
    assert!(matches!(err, Error::EmptyClass { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("`malignant`") && msg.contains(&root.join("malignant").display().to_string()),
        "{msg}"
    );
    // A class folder of DICOM files.
    write(&root.join("malignant/1-1.dcm"), "DICM");
    let err = read_folder(root).unwrap_err();
    assert!(matches!(err, Error::Dicom { .. }), "{err:?}");
    assert!(
        err.to_string().contains("1-1.dcm") && err.to_string().contains("DICOM is not read"),
        "{err}"
    );
    // One class only.
    std::fs::remove_dir_all(root.join("malignant")).unwrap();
    let err = read_folder(root).unwrap_err();
    assert!(matches!(err, Error::TooFewClasses { .. }), "{err:?}");
    // Not a folder at all.
    let err = read_folder(root.join("nope")).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }) && err.to_string().contains("nope"),
        "{err:?}"
    );
}

// ----- CSV -------------------------------------------------------------------

/// Two images per class in `dir/img/`.
fn images(dir: &Path) {
    for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
        save_small(&dir.join(format!("img/{name}.png")), i as u8);
    }
}

#[test]
fn csv_reads_names_paths_patients_and_odd_formatting() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let abs = dir.path().join("img/d.png");
    // BOM, columns in another order, an extra column, quotes, spaces, CRLF, a blank line of
    // spaces (one empty field to the CSV reader: an error before it was skipped like an
    // empty line).
    let text = format!(
        "\u{feff}Label , notes,PATH,patient_id\r\n\
         malignant,\"x, y\",img/a.png,P1\r\n\
         benign ,,\"img/b.png\"  ,  P2 \r\n\
         \x20 \r\n\
         benign,z,img/c.png,\r\n\
         \"malignant\",,{},P1\r\n",
        abs.display()
    );
    let csv = write(&dir.path().join("m.csv"), &text);
    let m = read_csv(&csv, None).unwrap();
    assert_eq!(m.class_names, ["benign", "malignant"]);
    let labels: Vec<usize> = m.records.iter().map(|r| r.label).collect();
    assert_eq!(labels, [1, 0, 0, 1]);
    assert_eq!(m.records[0].path, dir.path().join("img/a.png"));
    assert_eq!(m.records[3].path, abs);
    let patients: Vec<Option<&str>> = m.records.iter().map(|r| r.patient.as_deref()).collect();
    assert_eq!(patients, [Some("P1"), Some("P2"), None, Some("P1")]);
    // Lines count from the header (line 1); the blank line 4 is skipped.
    let origins: Vec<String> = m.records.iter().map(|r| r.origin.clone()).collect();
    let want: Vec<String> = [2, 3, 5, 6]
        .iter()
        .map(|l| format!("`{}` line {l}", csv.display()))
        .collect();
    assert_eq!(origins, want);
}

#[test]
fn csv_integer_labels_and_given_class_names() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let csv = write(
        &dir.path().join("m.csv"),
        "path,label\nimg/a.png,1\nimg/b.png,0\nimg/c.png,1\n",
    );
    let m = read_csv(&csv, None).unwrap();
    assert_eq!(m.class_names, ["0", "1"]);
    assert_eq!(
        m.records.iter().map(|r| r.label).collect::<Vec<_>>(),
        [1, 0, 1]
    );
    // Given names: labels by name or by index.
    let names = vec!["normal".to_string(), "cancer".to_string()];
    let csv = write(
        &dir.path().join("n.csv"),
        "path,label\nimg/a.png,cancer\nimg/b.png,0\nimg/c.png,1\n",
    );
    let m = read_csv(&csv, Some(&names)).unwrap();
    assert_eq!(m.class_names, names);
    assert_eq!(
        m.records.iter().map(|r| r.label).collect::<Vec<_>>(),
        [1, 0, 1]
    );
    // A given class without rows is an empty class.
    let three = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let csv = write(
        &dir.path().join("abc.csv"),
        "path,label\nimg/a.png,a\nimg/b.png,1\n",
    );
    let err = read_csv(&csv, Some(&three)).unwrap_err();
    assert!(
        matches!(err, Error::EmptyClass { ref class, .. } if class == "c"),
        "{err:?}"
    );
    assert!(err.to_string().contains("abc.csv"), "{err}");
    // Integer labels with a gap: class "1" has no images; the row of the largest index (the
    // likely typo) is named.
    let csv = write(
        &dir.path().join("gap.csv"),
        "path,label\nimg/a.png,0\nimg/b.png,2\n",
    );
    let err = read_csv(&csv, None).unwrap_err();
    assert!(matches!(err, Error::IndexGap { max: 2, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("class indices 0..=2, but class 1 has no rows") && msg.contains("gap.csv` line 3"), "{msg}");
    // Labels counted from 1: said so.
    let csv = write(&dir.path().join("one.csv"), "path,label\nimg/a.png,1\nimg/b.png,2\n");
    let msg = read_csv(&csv, None).unwrap_err().to_string();
    assert!(msg.contains("class 0 has no rows; labels counted from 1?"), "{msg}");
    // A label far beyond any class count (a typo) names its row instead of making 20 million
    // empty classes (or overflowing for u64::MAX).
    for huge in ["20000000", "18446744073709551615"] {
        let csv = write(&dir.path().join("huge.csv"), &format!("path,label\nimg/a.png,0\nimg/b.png,{huge}\n"));
        let err = read_csv(&csv, None).unwrap_err();
        assert!(matches!(err, Error::UnknownLabel { ref label, .. } if label == huge), "{err:?}");
        assert!(err.to_string().contains("huge.csv") && err.to_string().contains("line 3"), "{err}");
    }
}

#[test]
fn csv_missing_image_names_the_row_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let csv = write(
        &dir.path().join("m.csv"),
        "path,label\nimg/a.png,benign\nimg/gone.png,malignant\nimg/b.png,malignant\nimg/gone2.png,benign\n",
    );
    let err = read_csv(&csv, None).unwrap_err();
    assert!(
        matches!(err, Error::MissingImage { others: 1, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    let path = dir.path().join("img/gone.png");
    assert!(msg.contains(&format!("`{}`", path.display())), "{msg}");
    assert!(
        msg.contains(&format!("`{}` line 3", csv.display())),
        "{msg}"
    );
    assert!(msg.contains("1 other listed image is missing"), "{msg}");
}

/// One file listed twice could put its copies in different splits: refused, naming both rows,
/// also when written differently (`./`). Labels that differ only in case or spacing would be
/// two classes: refused; with given class names they match.
#[test]
fn csv_duplicate_images_and_label_spellings() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let csv = write(&dir.path().join("m.csv"), "path,label\nimg/a.png,benign\nimg/b.png,malignant\n./img/a.png,malignant\n");
    let err = read_csv(&csv, None).unwrap_err();
    assert!(matches!(err, Error::DuplicateImage { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("line 4") && msg.contains("line 2") && msg.contains("a.png"), "{msg}");

    let csv = write(&dir.path().join("l.csv"), "path,label\nimg/a.png,benign\nimg/b.png,malignant\nimg/c.png,Benign\n");
    let err = read_csv(&csv, None).unwrap_err();
    assert!(matches!(err, Error::AmbiguousLabel { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("`Benign`") && msg.contains("`benign`") && msg.contains("line 4") && msg.contains("line 2"), "{msg}");
    let names = vec!["benign".to_string(), "malignant".to_string()];
    let m = read_csv(&csv, Some(&names)).unwrap();
    assert_eq!(m.records.iter().map(|r| r.label).collect::<Vec<_>>(), [0, 1, 0]);
}

#[test]
fn csv_unknown_label_lists_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let names = vec!["benign".to_string(), "malignant".to_string()];
    let csv = write(
        &dir.path().join("m.csv"),
        "path,label\nimg/a.png,benign\nimg/b.png,cancer\n",
    );
    let err = read_csv(&csv, Some(&names)).unwrap_err();
    assert!(matches!(err, Error::UnknownLabel { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("line 3")
            && msg.contains("`cancer`")
            && msg.contains("`benign` (0), `malignant` (1)"),
        "{msg}"
    );
    // An index out of range is unknown too.
    let csv = write(
        &dir.path().join("i.csv"),
        "path,label\nimg/a.png,0\nimg/b.png,2\n",
    );
    let err = read_csv(&csv, Some(&names)).unwrap_err();
    assert!(
        matches!(err, Error::UnknownLabel { ref label, .. } if label == "2"),
        "{err:?}"
    );
}

#[test]
fn csv_missing_column_lists_the_columns_found() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let csv = write(
        &dir.path().join("m.csv"),
        "file,label,patient_id\nimg/a.png,benign,P1\n",
    );
    let err = read_csv(&csv, None).unwrap_err();
    assert!(
        matches!(err, Error::MissingColumn { column: "path", .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("m.csv") && msg.contains("`file`, `label`, `patient_id`"),
        "{msg}"
    );
    let csv = write(&dir.path().join("n.csv"), "path,class\nimg/a.png,benign\n");
    assert!(matches!(
        read_csv(&csv, None),
        Err(Error::MissingColumn {
            column: "label",
            ..
        })
    ));
}

/// A column the reader uses, named twice (also through its alias or another spelling): which
/// one is meant is not known, so neither is read.
#[test]
fn csv_duplicate_columns_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    for (header, column, found) in [
        ("path,label,patient_id,path", "path", "`path` (column 1), `path` (column 4)"),
        ("path,label,Patient ID,patient_id", "patient_id", "`Patient ID` (column 3), `patient_id` (column 4)"),
        ("path,label,patient,patient_id", "patient_id", "`patient` (column 3), `patient_id` (column 4)"),
    ] {
        let csv = write(&dir.path().join("d.csv"), &format!("{header}\nimg/a.png,benign,P1,img/b.png\n"));
        let err = read_csv(&csv, None).unwrap_err();
        assert!(matches!(&err, Error::DuplicateColumn { column: c, .. } if *c == column), "{header}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains("d.csv") && msg.contains(found), "{msg}");
    }
    // Columns it does not read may repeat.
    let csv = write(&dir.path().join("n.csv"), "path,label,note,note\nimg/a.png,benign,x,y\nimg/b.png,malignant,x,y\n");
    assert_eq!(read_csv(&csv, None).unwrap().records.len(), 2);
}

#[test]
fn csv_bad_and_mixed_split_values() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let csv = write(
        &dir.path().join("m.csv"),
        "path,label,split\nimg/a.png,benign,train\nimg/b.png,malignant,dev\n",
    );
    let err = read_csv(&csv, None).unwrap_err();
    assert!(matches!(err, Error::BadSplit { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("m.csv` line 3")
            && msg.contains("`dev`")
            && msg.contains("train, val or test"),
        "{msg}"
    );

    let csv = write(
        &dir.path().join("mixed.csv"),
        "path,label,split\nimg/a.png,benign,train\nimg/b.png,malignant,\nimg/c.png,benign,test\n",
    );
    let err = read_csv(&csv, None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::MixedSplit {
                with: 2,
                without: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("mixed.csv` line 3"), "{err}");

    // All empty: no split given.
    let csv = write(
        &dir.path().join("none.csv"),
        "path,label,split\nimg/a.png,benign,\nimg/b.png,malignant, \n",
    );
    let m = read_csv(&csv, None).unwrap();
    assert!(m.records.iter().all(|r| r.split.is_none()));
    let csv = write(
        &dir.path().join("all.csv"),
        "path,label,split\nimg/a.png,benign,Train\nimg/b.png,malignant,val\n",
    );
    let m = read_csv(&csv, None).unwrap();
    assert_eq!(
        m.records.iter().map(|r| r.split).collect::<Vec<_>>(),
        [Some(Split::Train), Some(Split::Val)]
    );
}

#[test]
fn csv_dicom_path_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    write(&dir.path().join("scans/1-1.dcm"), "DICM");
    let csv = write(
        &dir.path().join("m.csv"),
        "path,label\nimg/a.png,benign\nscans/1-1.dcm,malignant\n",
    );
    let err = read_csv(&csv, None).unwrap_err();
    assert!(matches!(err, Error::Dicom { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("1-1.dcm") && msg.contains("m.csv` line 3"),
        "{msg}"
    );
    assert!(
        msg.contains("DICOM is not read")
            && msg.contains("PNG or TIFF")
            && msg.contains("Kaggle CBIS-DDSM JPEG release: jpeg/<series UID>/1-N.jpg")
            && msg.contains("need a CSV manifest"),
        "{msg}"
    );
    // With a converted file next to it, that file is used.
    save_small(&dir.path().join("scans/1-1.png"), 9);
    let m = read_csv(&csv, None).unwrap();
    assert_eq!(m.records[1].path, dir.path().join("scans/1-1.png"));
}

#[test]
fn csv_structural_errors() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    // Header only.
    let csv = write(&dir.path().join("empty.csv"), "path,label\n");
    let err = read_csv(&csv, None).unwrap_err();
    assert!(
        matches!(err, Error::EmptyManifest { .. }) && err.to_string().contains("empty.csv"),
        "{err:?}"
    );
    // Empty file: no columns at all.
    let csv = write(&dir.path().join("blank.csv"), "");
    let err = read_csv(&csv, None).unwrap_err();
    assert!(matches!(err, Error::MissingColumn { .. }), "{err:?}");
    // A row with too few fields.
    let csv = write(
        &dir.path().join("short.csv"),
        "path,label\nimg/a.png,benign\nimg/b.png\n",
    );
    let err = read_csv(&csv, None).unwrap_err();
    assert!(matches!(err, Error::FieldCount { line: 3, found: 1, expected: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("short.csv` line 3: 1 fields, but the header has 2"), "{err}");
    // And one with too many (an unquoted comma in a path).
    let csv = write(&dir.path().join("long.csv"), "path,label
img/a,b.png,benign
");
    let err = read_csv(&csv, None).unwrap_err();
    assert!(matches!(err, Error::FieldCount { line: 2, found: 3, expected: 2, .. }), "{err:?}");
    // Empty fields.
    let csv = write(
        &dir.path().join("nolabel.csv"),
        "path,label\nimg/a.png,benign\nimg/b.png,\n",
    );
    let err = read_csv(&csv, None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::EmptyField {
                column: "label",
                ..
            }
        ) && err.to_string().contains("line 3"),
        "{err:?}"
    );
    // The manifest itself missing.
    let err = read_csv(dir.path().join("absent.csv"), None).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }) && chain(&err).contains("absent.csv"),
        "{err:?}"
    );
}

// ----- CBIS-DDSM -------------------------------------------------------------

const MASS_HEADER: &str = "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,\
mass shape,mass margins,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path\n";

const CALC_HEADER: &str = "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,\
calc type,calc distribution,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path\n";

/// A CBIS-DDSM-like row; the crop path is quoted and ends with a line break, as in the
/// official files.
fn cbis_row(patient: &str, pathology: &str, crop: &str) -> String {
    format!(
        "{patient},3,LEFT,CC,1,mass,OVAL,CIRCUMSCRIBED,4,{pathology},4,\
         {patient}_LEFT_CC/1.3.6/1.3.6.1/000000.dcm,\"{crop}\n\",{patient}_LEFT_CC_1/1.3.6/1.3.6.2/000001.dcm\n"
    )
}

#[test]
fn cbis_ddsm_pathology_patients_paths_and_splits() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    for name in ["m1", "m2", "m3", "c1"] {
        save_small(&root.join(format!("{name}/crop.png")), 1);
    }
    let train = write(
        &dir.path().join("csv/mass_case_description_train_set.csv"),
        &format!(
            "{MASS_HEADER}{}{}{}",
            cbis_row("P_00001", "MALIGNANT", "m1/crop.png"),
            cbis_row("P_00002", "BENIGN", " m2/crop.png "),
            cbis_row("P_00003", "BENIGN_WITHOUT_CALLBACK", "m3/crop.png"),
        ),
    );
    let test = write(
        &dir.path().join("csv/calc_case_description_test_set.csv"),
        &format!(
            "{CALC_HEADER}{}",
            cbis_row("P_00004", "malignant", "c1/crop.png")
        ),
    );
    let m = read_cbis_ddsm(&[train.clone(), test], Some(&root)).unwrap();
    assert_eq!(m.class_names, ["benign", "malignant"]);
    let got: Vec<(PathBuf, usize, Option<&str>, Option<Split>)> = m
        .records
        .iter()
        .map(|r| (r.path.clone(), r.label, r.patient.as_deref(), r.split))
        .collect();
    assert_eq!(
        got,
        [
            (
                root.join("m1/crop.png"),
                1,
                Some("P_00001"),
                Some(Split::Train)
            ),
            (
                root.join("m2/crop.png"),
                0,
                Some("P_00002"),
                Some(Split::Train)
            ),
            (
                root.join("m3/crop.png"),
                0,
                Some("P_00003"),
                Some(Split::Train)
            ),
            (
                root.join("c1/crop.png"),
                1,
                Some("P_00004"),
                Some(Split::Test)
            ),
        ]
    );
    // Each row spans two physical lines (the crop path ends with a line break).
    assert_eq!(m.records[1].origin, format!("`{}` line 4", train.display()));

    // Without an image root, paths are relative to the CSV's folder.
    let err = read_cbis_ddsm(std::slice::from_ref(&train), None).unwrap_err();
    assert!(
        matches!(err, Error::MissingImage { others: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&dir.path().join("csv/m1/crop.png").display().to_string()),
        "{err}"
    );
}

#[test]
fn cbis_ddsm_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_small(&root.join("a/crop.png"), 1);
    save_small(&root.join("b/crop.png"), 2);
    // Unknown pathology.
    let csv = write(
        &root.join("mass_case_description_train_set.csv"),
        &format!(
            "{MASS_HEADER}{}{}",
            cbis_row("P_1", "BENIGN", "a/crop.png"),
            cbis_row("P_2", "UNPROVEN", "b/crop.png")
        ),
    );
    let err = read_cbis_ddsm(&[csv], None).unwrap_err();
    assert!(matches!(err, Error::UnknownLabel { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("`UNPROVEN`") && msg.contains("BENIGN, BENIGN_WITHOUT_CALLBACK, MALIGNANT"),
        "{msg}"
    );
    // The official .dcm crop paths, not converted.
    let csv = write(
        &root.join("calc_case_description_test_set.csv"),
        &format!(
            "{CALC_HEADER}{}",
            cbis_row(
                "P_3",
                "MALIGNANT",
                "Calc-Test_P_3_LEFT_CC_1/1.3.6/1.3.6.9/000000.dcm"
            )
        ),
    );
    let err = read_cbis_ddsm(&[csv], None).unwrap_err();
    assert!(matches!(err, Error::Dicom { .. }), "{err:?}");
    assert!(
        err.to_string().contains("000000.dcm") && err.to_string().contains("line 2"),
        "{err}"
    );
    // Missing column.
    let csv = write(
        &root.join("other_train.csv"),
        "patient_id,pathology,image file path\nP_1,BENIGN,a/crop.png\n",
    );
    let err = read_cbis_ddsm(&[csv], None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::MissingColumn {
                column: "cropped image file path",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("`patient_id`, `pathology`, `image file path`"),
        "{err}"
    );
    // Only benign: malignant is an empty class.
    let csv = write(
        &root.join("benign_train.csv"),
        &format!("{MASS_HEADER}{}", cbis_row("P_1", "BENIGN", "a/crop.png")),
    );
    let err = read_cbis_ddsm(&[csv], None).unwrap_err();
    assert!(
        matches!(err, Error::EmptyClass { ref class, .. } if class == "malignant"),
        "{err:?}"
    );
    // No files at all.
    assert!(matches!(
        read_cbis_ddsm(&[], None),
        Err(Error::EmptyManifest { .. })
    ));
}

#[test]
fn manifest_filter_reports_emptied_classes() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let csv = write(
        &dir.path().join("m.csv"),
        "path,label,patient_id\nimg/a.png,benign,P1\nimg/b.png,malignant,P2\nimg/c.png,benign,P3\n",
    );
    let m = read_csv(&csv, None).unwrap();
    let kept = m
        .clone()
        .filter("not P3", |r| r.patient.as_deref() != Some("P3"))
        .unwrap();
    assert_eq!(kept.len(), 2);
    let err = m.filter("benign only", |r| r.label == 0).unwrap_err();
    assert!(
        matches!(err, Error::EmptyClass { ref class, .. } if class == "malignant"),
        "{err:?}"
    );
    assert!(err.to_string().contains("benign only"), "{err}");
}
