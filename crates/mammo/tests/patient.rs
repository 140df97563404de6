//! Patient ids from image paths (`--patient-pattern`): which part of the path becomes the id,
//! every rejection naming the image, and that the ids then keep patients in one split.

mod common;

use std::collections::{HashMap, HashSet};

use common::{save_small, write};
use mammo::{Error, PatientPattern, Split, assign_splits, read_csv, read_folder};

fn pattern(p: &str) -> PatientPattern {
    p.parse().unwrap()
}

#[test]
fn the_id_is_the_named_group_else_the_first_group_else_the_whole_match() {
    let path = "malignant/P_00017_LEFT_CC_2.png";
    assert_eq!(pattern(r"P_\d+").patient(path).as_deref(), Some("P_00017"));
    assert_eq!(pattern(r"P_(\d+)_(LEFT|RIGHT)").patient(path).as_deref(), Some("00017"));
    assert_eq!(pattern(r"(?:P)_(?<patient>\d+)_(LEFT|RIGHT)").patient(path).as_deref(), Some("00017"));
    assert_eq!(pattern(r"(LEFT|RIGHT)_(?<patient>CC|MLO)").patient(path).as_deref(), Some("CC"));
    // Searched, not anchored; anchors still work against the relative path.
    assert_eq!(pattern(r"^malignant/(P_\d+)").patient(path).as_deref(), Some("P_00017"));
    assert_eq!(pattern(r"^P_\d+").patient(path), None);
    // An empty (or non-participating) group is no id.
    assert_eq!(pattern(r"P_(x*)\d").patient(path), None);
    assert_eq!(pattern(r"(Q_\d+)?P_\d+").patient(path), None);
}

#[test]
fn a_bad_pattern_names_itself_and_the_regex_error() {
    let err = "P_(\\d+".parse::<PatientPattern>().unwrap_err();
    assert!(matches!(err, Error::InvalidOption { option: "patient pattern", .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("`P_(\\d+`") && msg.contains("unclosed group"), "{msg}");
}

#[test]
fn folder_images_get_their_patient_and_patients_stay_in_one_split() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // 12 patients; each has 2 or 3 crops, benign patients 0-7, malignant 8-11 (one patient
    // has a crop in each class, as a patient with two lesions does).
    let mut seed = 0u8;
    for p in 0..12 {
        let class = if p < 8 { "benign" } else { "malignant" };
        for view in 0..(2 + p % 2) {
            seed = seed.wrapping_add(1);
            save_small(&root.join(format!("{class}/P_{p:05}_VIEW{view}.png")), seed);
        }
    }
    save_small(&root.join("malignant/P_00003_VIEW9.png"), 99);
    let m = read_folder(root).unwrap().patients_from_paths(&pattern(r"P_\d+"), root).unwrap();
    let ids: HashSet<&str> = m.records.iter().map(|r| r.patient.as_deref().unwrap()).collect();
    assert_eq!(ids.len(), 12);
    assert_eq!(m.records[0].patient.as_deref(), Some("P_00000"));

    // Whatever the seed, a patient's crops share a split; without the pattern the seeds below
    // put some patient's crops in two splits (every image is its own patient).
    let split_of_patients = |m: &mammo::Manifest, seed| {
        let splits = assign_splits(&m.records, [0.5, 0.25, 0.25], seed).unwrap();
        let mut by_patient: HashMap<String, HashSet<Split>> = HashMap::new();
        for (r, s) in m.records.iter().zip(splits) {
            let key = r.path.file_name().unwrap().to_string_lossy()[..7].to_string();
            by_patient.entry(key).or_default().insert(s);
        }
        by_patient.values().all(|s| s.len() == 1)
    };
    for seed in 0..5 {
        assert!(split_of_patients(&m, seed), "seed {seed}: a patient spans two splits");
    }
    let plain = read_folder(root).unwrap();
    assert!((0..5).any(|seed| !split_of_patients(&plain, seed)), "the test cannot fail: no seed splits a patient without the pattern");
}

#[test]
fn an_unmatched_image_is_named_with_the_count_of_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_small(&root.join("benign/P_00001_CC.png"), 1);
    save_small(&root.join("benign/scan7.png"), 2);
    save_small(&root.join("malignant/P_00002_CC.png"), 3);
    save_small(&root.join("malignant/scan8.png"), 4);
    let err = read_folder(root).unwrap().patients_from_paths(&pattern(r"P_\d+"), root).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::PatientUnmatched { others: 1, .. }), "{err:?}");
    assert!(msg.contains("scan7.png") && msg.contains("`benign/scan7.png` does not match") && msg.contains("`P_\\d+`"), "{msg}");
    assert!(msg.contains("1 other image does not match either"), "{msg}");
}

#[test]
fn csv_paths_are_matched_relative_to_the_csv_and_known_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save_small(&root.join("crops/P1/a.png"), 1);
    save_small(&root.join("crops/P1/b.png"), 2);
    save_small(&root.join("crops/P2/c.png"), 3);
    let csv = write(&root.join("crops.csv"), "path,label\ncrops/P1/a.png,benign\ncrops/P1/b.png,malignant\ncrops/P2/c.png,benign\n");
    let m = read_csv(&csv, None).unwrap().patients_from_paths(&pattern(r"^crops/([^/]+)/"), root).unwrap();
    let ids: Vec<&str> = m.records.iter().map(|r| r.patient.as_deref().unwrap()).collect();
    assert_eq!(ids, ["P1", "P1", "P2"]);

    let csv = write(&root.join("ids.csv"), "path,label,patient_id\ncrops/P1/a.png,benign,\ncrops/P1/b.png,malignant,7\n");
    let err = read_csv(&csv, None).unwrap().patients_from_paths(&pattern("P1"), root).unwrap_err();
    assert!(matches!(err, Error::PatientAlreadyKnown { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("ids.csv") && msg.contains("line 3") && msg.contains("`7`"), "{msg}");
}
