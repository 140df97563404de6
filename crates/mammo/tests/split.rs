//! Patient-level splits: leakage, stratification, determinism, given splits, carving val.

mod common;

use std::collections::{HashMap, HashSet};

use common::{chain, record, write};
use mammo::{Error, Record, Split, assign_splits, read_csv};

/// `n_patients` patients with 1–3 images each; every 5th patient has a malignant image (label
/// 1) among benign ones. Every 7th patient has no id: each of those images is its own patient.
fn cohort(n_patients: usize) -> Vec<Record> {
    let mut records = Vec::new();
    for p in 0..n_patients {
        let id = format!("P_{p:05}");
        for k in 0..(p % 3 + 1) {
            let label = usize::from(p % 5 == 0 && k == 0);
            let patient = (p % 7 != 3).then_some(id.as_str());
            records.push(record(records.len(), label, patient, None));
        }
    }
    records
}

/// Patient key as the splitter sees it (no id: the record alone).
fn key(records: &[Record], i: usize) -> String {
    records[i]
        .patient
        .clone()
        .unwrap_or_else(|| format!("record {i}"))
}

fn splits_of_patients(records: &[Record], splits: &[Split]) -> HashMap<String, HashSet<Split>> {
    let mut map: HashMap<String, HashSet<Split>> = HashMap::new();
    for (i, split) in splits.iter().enumerate() {
        map.entry(key(records, i)).or_default().insert(*split);
    }
    map
}

#[test]
fn no_patient_in_two_splits_and_every_split_has_both_classes() {
    let records = cohort(90);
    for seed in 0..200 {
        let splits = assign_splits(&records, [0.7, 0.1, 0.2], seed).unwrap();
        assert_eq!(splits.len(), records.len());
        for (patient, set) in splits_of_patients(&records, &splits) {
            assert_eq!(set.len(), 1, "seed {seed}: patient {patient} in {set:?}");
        }
        for split in Split::ALL {
            let labels: HashSet<usize> = records
                .iter()
                .zip(&splits)
                .filter(|(_, s)| **s == split)
                .map(|(r, _)| r.label)
                .collect();
            assert_eq!(
                labels,
                HashSet::from([0, 1]),
                "seed {seed}: {split} has labels {labels:?}"
            );
        }
    }
}

#[test]
fn patient_counts_follow_the_fractions_per_stratum() {
    // 100 single-image benign patients and 20 malignant ones, fractions 0.7/0.1/0.2:
    // benign val round(100*0.1) = 10, test round(100*0.2) = 20, train the other 70;
    // malignant val round(20*0.1) = 2, test round(20*0.2) = 4, train 14.
    let records: Vec<Record> = (0..120)
        .map(|i| record(i, usize::from(i >= 100), Some(&format!("P{i}")), None))
        .collect();
    let splits = assign_splits(&records, [0.7, 0.1, 0.2], 3).unwrap();
    let count = |label: usize, split: Split| {
        records
            .iter()
            .zip(&splits)
            .filter(|(r, s)| r.label == label && **s == split)
            .count()
    };
    assert_eq!(
        [
            count(0, Split::Train),
            count(0, Split::Val),
            count(0, Split::Test)
        ],
        [70, 10, 20]
    );
    assert_eq!(
        [
            count(1, Split::Train),
            count(1, Split::Val),
            count(1, Split::Test)
        ],
        [14, 2, 4]
    );
    // Fractions are relative: [7, 1, 2] is the same split.
    assert_eq!(assign_splits(&records, [7.0, 1.0, 2.0], 3).unwrap(), splits);
}

#[test]
fn three_patients_per_class_fill_every_split() {
    // round(3 * 0.1) = 0 val patients would leave val without the class; each split gets one.
    let records: Vec<Record> = (0..6)
        .map(|i| record(i, usize::from(i >= 3), Some(&format!("P{i}")), None))
        .collect();
    for seed in 0..20 {
        let splits = assign_splits(&records, [0.8, 0.1, 0.1], seed).unwrap();
        for label in 0..2 {
            let mut got: Vec<Split> = records
                .iter()
                .zip(&splits)
                .filter(|(r, _)| r.label == label)
                .map(|(_, s)| *s)
                .collect();
            got.sort();
            assert_eq!(got, Split::ALL, "seed {seed} label {label}");
        }
    }
}

#[test]
fn halves_round_up_when_the_product_is_a_half_only_up_to_rounding() {
    // 90 patients at 0.3/0.35/0.35: 90 · 0.35 is 31.5 exactly, 31.499999999999996 in f64, and
    // the module's rule (halves rounded up) gives val 32, test 32, train 26; plain f64 rounding
    // gave 31/31/28.
    let records: Vec<Record> = (0..90).map(|i| record(i, 0, Some(&format!("P{i}")), None)).collect();
    let splits = assign_splits(&records, [0.3, 0.35, 0.35], 0).unwrap();
    let count = |split: Split| splits.iter().filter(|s| **s == split).count();
    assert_eq!([count(Split::Train), count(Split::Val), count(Split::Test)], [26, 32, 32]);
}

#[test]
fn a_class_held_by_patients_with_a_larger_label_still_reaches_every_split() {
    let labels_in = |records: &[Record], splits: &[Split], split: Split| -> HashSet<usize> {
        records.iter().zip(splits).filter(|(_, s)| **s == split).map(|(r, _)| r.label).collect()
    };
    // Class 0 has three patients, A (0 only), B (0 and 1) and C (0 and 2); B's stratum is 1
    // (with D), C's is 2 (with E): strata of one or two patients put all of them in train, so
    // class 0 was in neither val nor test, for every seed. Now A and B move (B also takes
    // class 1 along; D keeps it in train).
    let (mut records, mut n) = (Vec::new(), 0);
    for (p, label) in [("A", 0), ("B", 0), ("B", 1), ("D", 1), ("C", 0), ("C", 2), ("E", 2), ("G", 3), ("H", 3), ("I", 3)] {
        records.push(record(n, label, Some(p), None));
        n += 1;
    }
    for seed in 0..50 {
        let splits = assign_splits(&records, [0.7, 0.1, 0.2], seed).unwrap();
        for split in Split::ALL {
            let labels = labels_in(&records, &splits, split);
            assert!(labels.contains(&0) && labels.contains(&3), "seed {seed}: {split} has {labels:?}");
        }
        // Every class keeps its training patients: 1 (D) and 2 (E) never leave train.
        assert!(labels_in(&records, &splits, Split::Train).is_superset(&[0, 1, 2, 3].into()), "seed {seed}");
        // A patient is never split.
        assert!(splits_of_patients(&records, &splits).values().all(|s| s.len() == 1), "seed {seed}");
    }
    // Binary: 3 patients with benign and malignant images, 7 malignant only, none benign only.
    // All ten are stratum 1, val gets round(10 · 0.1) = 1 of them: a malignant-only one for
    // about 7 seeds in 10, leaving val without a benign image.
    let mut records = Vec::new();
    for p in 0..10 {
        let id = format!("P{p}");
        records.push(record(records.len(), 1, Some(&id), None));
        if p < 3 {
            records.push(record(records.len(), 0, Some(&id), None));
        }
    }
    for seed in 0..50 {
        let splits = assign_splits(&records, [0.7, 0.1, 0.2], seed).unwrap();
        for split in Split::ALL {
            assert_eq!(labels_in(&records, &splits, split), [0, 1].into(), "seed {seed}: {split}");
        }
    }
}

#[test]
fn a_patients_stratum_is_their_largest_label() {
    // Patient A has one malignant and four benign images; B..G are benign only. With three
    // malignant patients (A, H, I), each split gets exactly one, so A's five images are in
    // the split of one malignant patient, never split apart.
    let mut records = Vec::new();
    for k in 0..5 {
        records.push(record(records.len(), usize::from(k == 2), Some("A"), None));
    }
    for p in ["B", "C", "D", "E", "F", "G"] {
        records.push(record(records.len(), 0, Some(p), None));
    }
    for p in ["H", "I"] {
        records.push(record(records.len(), 1, Some(p), None));
    }
    for seed in 0..50 {
        let splits = assign_splits(&records, [0.6, 0.2, 0.2], seed).unwrap();
        assert!(
            splits[..5].iter().all(|s| *s == splits[0]),
            "seed {seed}: {splits:?}"
        );
        let malignant_splits: HashSet<Split> = [splits[0], splits[11], splits[12]].into();
        assert_eq!(malignant_splits.len(), 3, "seed {seed}: {splits:?}");
    }
}

#[test]
fn deterministic_for_a_seed_and_different_for_another() {
    let records = cohort(60);
    let a = assign_splits(&records, [0.7, 0.1, 0.2], 42).unwrap();
    assert_eq!(assign_splits(&records, [0.7, 0.1, 0.2], 42).unwrap(), a);
    let b = assign_splits(&records, [0.7, 0.1, 0.2], 43).unwrap();
    assert_ne!(a, b);
}

#[test]
fn a_csv_split_column_is_used_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("path,label,patient_id,split\n");
    let given = [
        "train",
        "val",
        "test",
        "TRAIN",
        "validation",
        "test",
        "train",
    ];
    for (i, s) in given.iter().enumerate() {
        common::save_small(&dir.path().join(format!("{i}.png")), i as u8);
        csv.push_str(&format!("{i}.png,{},P{i},{s}\n", i % 2));
    }
    let manifest = read_csv(write(&dir.path().join("m.csv"), &csv), None).unwrap();
    let splits = assign_splits(&manifest.records, [0.1, 0.8, 0.1], 9).unwrap();
    use Split::*;
    assert_eq!(splits, [Train, Val, Test, Train, Val, Test, Train]);
}

#[test]
fn train_test_only_carves_val_out_of_train_by_patient() {
    // CBIS-DDSM style: 40 train patients (2 images each, every 4th malignant), 10 test.
    let mut records = Vec::new();
    for p in 0..50 {
        let split = if p < 40 { Split::Train } else { Split::Test };
        for _ in 0..2 {
            records.push(record(
                records.len(),
                usize::from(p % 4 == 0),
                Some(&format!("P{p}")),
                Some(split),
            ));
        }
    }
    for seed in 0..30 {
        let splits = assign_splits(&records, [0.7, 0.1, 0.2], seed).unwrap();
        // Test is untouched.
        for (r, s) in records.iter().zip(&splits) {
            assert_eq!(r.split == Some(Split::Test), *s == Split::Test);
        }
        for (patient, set) in splits_of_patients(&records, &splits) {
            assert_eq!(set.len(), 1, "seed {seed}: {patient} {set:?}");
        }
        // val fraction of train = 0.1 / (0.7 + 0.1) = 0.125: benign round(30 * 0.125) = 4
        // patients, malignant round(10 * 0.125) = 1 patient; 2 images each.
        let val: Vec<&Record> = records
            .iter()
            .zip(&splits)
            .filter(|(_, s)| **s == Split::Val)
            .map(|(r, _)| r)
            .collect();
        assert_eq!(val.len(), 10, "seed {seed}");
        assert_eq!(
            val.iter().filter(|r| r.label == 1).count(),
            2,
            "seed {seed}"
        );
    }
}

#[test]
fn train_only_carves_val_and_test_and_train_val_carves_test() {
    // Only CBIS-DDSM's train CSVs (or a split column of `train` alone): 40 patients of 2
    // images, every 4th malignant (30 benign, 10 malignant patients).
    let records_with = |split_of: &dyn Fn(usize) -> Split| {
        let mut records = Vec::new();
        for p in 0..40 {
            for _ in 0..2 {
                records.push(record(records.len(), usize::from(p % 4 == 0), Some(&format!("P{p}")), Some(split_of(p))));
            }
        }
        records
    };
    let count = |records: &[Record], splits: &[Split], s: Split, label: usize| {
        records.iter().zip(splits).filter(|(r, x)| **x == s && r.label == label).count()
    };
    let all_train = records_with(&|_| Split::Train);
    for seed in 0..10 {
        let splits = assign_splits(&all_train, [0.7, 0.1, 0.2], seed).unwrap();
        for (patient, set) in splits_of_patients(&all_train, &splits) {
            assert_eq!(set.len(), 1, "seed {seed}: {patient} {set:?}");
        }
        // Per stratum round(n * f) patients of 2 images: benign val 3, test 6; malignant
        // val 1, test 2.
        assert_eq!([count(&all_train, &splits, Split::Val, 0), count(&all_train, &splits, Split::Test, 0)], [6, 12], "seed {seed}");
        assert_eq!([count(&all_train, &splits, Split::Val, 1), count(&all_train, &splits, Split::Test, 1)], [2, 4], "seed {seed}");
    }
    // Train and val given: test is carved out of train (0.2 / (0.7 + 0.2) of its patients),
    // the given val is kept.
    let train_val = records_with(&|p| if p < 32 { Split::Train } else { Split::Val });
    let splits = assign_splits(&train_val, [0.7, 0.1, 0.2], 0).unwrap();
    for (r, s) in train_val.iter().zip(&splits) {
        assert_eq!(r.split == Some(Split::Val), *s == Split::Val);
    }
    assert!(splits.contains(&Split::Test));
    for (patient, set) in splits_of_patients(&train_val, &splits) {
        assert_eq!(set.len(), 1, "{patient} {set:?}");
    }
}

#[test]
fn images_without_patient_are_their_own_patient() {
    let records: Vec<Record> = (0..40)
        .map(|i| record(i, usize::from(i % 4 == 0), None, None))
        .collect();
    let splits = assign_splits(&records, [0.5, 0.25, 0.25], 1).unwrap();
    // 30 benign: val round(7.5) = 8, test 8, train 14; 10 malignant: 3 / 3 / 4 (round half away).
    let n = |s: Split| splits.iter().filter(|x| **x == s).count();
    assert_eq!(
        [n(Split::Train), n(Split::Val), n(Split::Test)],
        [14 + 4, 8 + 3, 8 + 3]
    );
}

#[test]
fn mixed_or_leaky_given_splits_are_refused() {
    let records = vec![
        record(0, 0, Some("A"), Some(Split::Train)),
        record(1, 1, Some("B"), None),
        record(2, 1, Some("C"), Some(Split::Test)),
    ];
    let err = assign_splits(&records, [0.7, 0.1, 0.2], 0).unwrap_err();
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
    let msg = err.to_string();
    assert!(
        msg.contains("test record 0") && msg.contains("test record 1"),
        "{msg}"
    );

    let records = vec![
        record(0, 0, Some("A"), Some(Split::Train)),
        record(1, 1, Some("B"), Some(Split::Test)),
        record(2, 1, Some("A"), Some(Split::Test)),
        record(3, 0, Some("C"), Some(Split::Val)),
    ];
    let err = assign_splits(&records, [0.7, 0.1, 0.2], 0).unwrap_err();
    let msg = chain(&err);
    assert!(
        matches!(err, Error::PatientInSeveralSplits { .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("`A`") && msg.contains("train and test") && msg.contains("test record 2"),
        "{msg}"
    );

    for bad in [[0.0, 0.0, 0.0], [0.7, -0.1, 0.4], [f64::NAN, 0.1, 0.2]] {
        let err = assign_splits(&records, bad, 0).unwrap_err();
        assert!(matches!(err, Error::BadFractions { .. }), "{err:?}");
    }
}

#[test]
fn split_names_parse() {
    for (s, want) in [
        ("train", Split::Train),
        ("Training", Split::Train),
        ("val", Split::Val),
        ("valid", Split::Val),
        (" validation ", Split::Val),
        ("TEST", Split::Test),
    ] {
        assert_eq!(s.parse::<Split>().unwrap(), want, "{s}");
    }
    assert!("dev".parse::<Split>().is_err());
    assert_eq!(Split::Val.to_string(), "val");
}
