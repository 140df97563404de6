//! Train / validation / test splits, always at patient level.
//!
//! [`assign_splits`] gives every record a [`Split`]:
//!
//! 1. every record has a split (a CSV `split` column): used as is;
//! 2. some records have one and others do not: an error ([`Error::MixedSplit`]);
//! 3. the given splits lack validation or test (CBIS-DDSM's official split is train and test;
//!    passing only its train CSVs, or a `split` column of `train` alone, gives train only):
//!    the given ones are kept, and each missing one is carved out of train by patient, with
//!    the fractions of train and the missing splits (train/test given: val gets
//!    `val / (train + val)` of train's patients);
//! 4. no record has a split: a stratified split by patient with `fractions`.
//!
//! A *patient* is a patient id; a record without one is its own patient (each image its own
//! group). No patient is ever in two splits: given splits that put one patient in two are an
//! error ([`Error::PatientInSeveralSplits`]).
//!
//! The drawn splits (cases 3 and 4) are stratified: a patient's stratum is the largest label
//! among their images (for benign = 0 / malignant = 1: whether they have a malignant lesion).
//! Within each stratum, in label order, the patients (in manifest order of first appearance)
//! are shuffled with one `rand` 0.9 `StdRng` seeded with `seed`, and `round(n · fraction)`
//! patients (halves rounded up) go to val and to test, the rest to train. When a stratum has at least as many
//! patients as there are splits with a positive fraction, each of those splits gets at least
//! one of them. A class whose patients mostly carry a larger label too (benign lesions of
//! patients with a malignant one) can still miss a split that way: such a split then gets one
//! of that class's patients from the split holding most of them, as long as the move leaves
//! every class of that patient in the split it leaves. So with ≥ 3 patients per class every
//! split sees every class, unless every such move would take a class from another split.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::{Error, Result};
use crate::manifest::Record;

/// One of the three dataset splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// Training images.
    Train,
    /// Validation images (model selection, threshold choice).
    Val,
    /// Held-out test images.
    Test,
}

impl Split {
    /// The three splits in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// Position in [`Split::ALL`] (and in a `[train, val, test]` fractions array).
    pub fn index(self) -> usize {
        match self {
            Split::Train => 0,
            Split::Val => 1,
            Split::Test => 2,
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        })
    }
}

impl FromStr for Split {
    type Err = Error;

    /// `train`/`training`, `val`/`valid`/`validation`, `test`/`testing`, any case.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" | "training" => Ok(Split::Train),
            "val" | "valid" | "validation" => Ok(Split::Val),
            "test" | "testing" => Ok(Split::Test),
            _ => Err(Error::InvalidOption {
                option: "split",
                value: s.to_string(),
                expected: "train, val or test".into(),
            }),
        }
    }
}

/// Fail with [`Error::MixedSplit`] if some records have a split and others do not.
pub fn check_split_column(records: &[Record]) -> Result<()> {
    let with = records.iter().filter(|r| r.split.is_some()).count();
    if with == 0 || with == records.len() {
        return Ok(());
    }
    let first = |has: bool| {
        records
            .iter()
            .find(|r| r.split.is_some() == has)
            .map(|r| r.origin.clone())
            .unwrap_or_default()
    };
    Err(Error::MixedSplit {
        with,
        without: records.len() - with,
        example_with: first(true),
        example_without: first(false),
    })
}

/// The split of every record (same order as `records`); see the module documentation.
///
/// `fractions` are `[train, val, test]`, finite and ≥ 0 with a positive sum; they are divided
/// by their sum (so `[7, 1, 2]` is `[0.7, 0.1, 0.2]`). They are unused when the records give
/// all three splits.
pub fn assign_splits(records: &[Record], fractions: [f64; 3], seed: u64) -> Result<Vec<Split>> {
    if fractions.iter().any(|f| !f.is_finite() || *f < 0.0) || fractions.iter().sum::<f64>() <= 0.0
    {
        return Err(Error::BadFractions { fractions });
    }
    check_split_column(records)?;
    let given: Option<Vec<Split>> = records.iter().map(|r| r.split).collect();
    match given {
        Some(splits) if !records.is_empty() => {
            check_patients(records, &splits)?;
            let missing: Vec<Split> = [Split::Val, Split::Test]
                .into_iter()
                .filter(|s| !splits.contains(s))
                .collect();
            if missing.is_empty() || !splits.contains(&Split::Train) {
                return Ok(splits);
            }
            // Carve the missing splits out of train.
            let parts: Vec<Split> = std::iter::once(Split::Train).chain(missing).collect();
            let part_fractions: Vec<f64> = parts.iter().map(|s| fractions[s.index()]).collect();
            let train_idx: Vec<usize> = (0..records.len())
                .filter(|&i| splits[i] == Split::Train)
                .collect();
            let carved = stratified(records, &train_idx, &part_fractions, seed);
            let mut out = splits;
            for (k, &i) in train_idx.iter().enumerate() {
                out[i] = parts[carved[k]];
            }
            Ok(out)
        }
        _ => {
            let all: Vec<usize> = (0..records.len()).collect();
            let drawn = stratified(records, &all, &fractions, seed);
            Ok(drawn.into_iter().map(|b| Split::ALL[b]).collect())
        }
    }
}

/// The patient key of record `i`: its id, or a key unique to the record.
fn patient_key(records: &[Record], i: usize) -> PatientKey<'_> {
    match &records[i].patient {
        Some(p) => PatientKey::Id(p),
        None => PatientKey::Record(i),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PatientKey<'a> {
    Id(&'a str),
    Record(usize),
}

/// Number of distinct patients among `records`.
pub(crate) fn count_patients(records: &[Record]) -> usize {
    let mut seen = std::collections::HashSet::new();
    (0..records.len())
        .filter(|&i| seen.insert(patient_key(records, i)))
        .count()
}

/// Given splits must keep each patient in one split.
fn check_patients(records: &[Record], splits: &[Split]) -> Result<()> {
    // patient -> (first record index per split)
    let mut seen: HashMap<&str, [Option<usize>; 3]> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if let Some(p) = r.patient.as_deref() {
            let slots = seen.entry(p).or_insert_with(|| {
                order.push(p);
                [None; 3]
            });
            slots[splits[i].index()].get_or_insert(i);
        }
    }
    let bad: Vec<&str> = order
        .into_iter()
        .filter(|p| seen[p].iter().filter(|s| s.is_some()).count() > 1)
        .collect();
    let Some(first) = bad.first() else {
        return Ok(());
    };
    let slots = seen[first];
    let names: Vec<String> = Split::ALL
        .iter()
        .zip(slots)
        .filter(|(_, s)| s.is_some())
        .map(|(s, _)| s.to_string())
        .collect();
    let examples: Vec<String> = slots
        .iter()
        .flatten()
        .map(|&i| records[i].origin.clone())
        .collect();
    Err(Error::PatientInSeveralSplits {
        patient: first.to_string(),
        splits: names.join(" and "),
        examples: examples.join(", "),
        others: bad.len() - 1,
    })
}

/// Stratified patient-level assignment of the records `subset` to buckets `0..fractions.len()`.
/// Returns one bucket per element of `subset`.
fn stratified(records: &[Record], subset: &[usize], fractions: &[f64], seed: u64) -> Vec<usize> {
    // Patients in order of first appearance, with their stratum (max label).
    let mut index: HashMap<PatientKey<'_>, usize> = HashMap::new();
    let mut strata: Vec<usize> = Vec::new();
    let mut patient_of = Vec::with_capacity(subset.len());
    for &i in subset {
        let key = patient_key(records, i);
        let p = *index.entry(key).or_insert_with(|| {
            strata.push(0);
            strata.len() - 1
        });
        strata[p] = strata[p].max(records[i].label);
        patient_of.push(p);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut bucket_of_patient = vec![0usize; strata.len()];
    let mut labels: Vec<usize> = strata.clone();
    labels.sort_unstable();
    labels.dedup();
    for label in labels {
        let mut patients: Vec<usize> = (0..strata.len()).filter(|&p| strata[p] == label).collect();
        patients.shuffle(&mut rng);
        let counts = allocate(patients.len(), fractions);
        let mut it = patients.into_iter();
        for (bucket, &count) in counts.iter().enumerate() {
            for p in it.by_ref().take(count) {
                bucket_of_patient[p] = bucket;
            }
        }
    }
    // A patient's stratum is one label, so a class held mostly by patients with a larger label
    // too is allocated with those; the buckets it lacks then get some of its patients.
    let n_labels = subset.iter().map(|&i| records[i].label + 1).max().unwrap_or(0);
    let mut has = vec![vec![false; n_labels]; strata.len()];
    for (k, &i) in subset.iter().enumerate() {
        has[patient_of[k]][records[i].label] = true;
    }
    cover_labels(&has, fractions, &mut bucket_of_patient);
    patient_of
        .into_iter()
        .map(|p| bucket_of_patient[p])
        .collect()
}

/// Moves patients (`has[p][label]`: patient `p` has an image of `label`) between buckets so
/// that every label held by at least as many patients as there are buckets with a positive
/// fraction appears in each of those buckets. A bucket lacking a label gets a patient of it
/// from the bucket holding most of them (among equals, a patient with the fewest labels, then
/// the first), and only a patient whose every label stays in that bucket without them, so no
/// move takes a label from a bucket. Single-label patients never need a move: [`allocate`]
/// already gives each positive bucket one of every stratum that large.
fn cover_labels(has: &[Vec<bool>], fractions: &[f64], bucket_of: &mut [usize]) {
    let positive: Vec<usize> = (0..fractions.len()).filter(|&b| fractions[b] > 0.0).collect();
    let n_labels = has.first().map_or(0, Vec::len);
    let holders = |label: usize, bucket: usize, bucket_of: &[usize]| {
        (0..has.len()).filter(|&p| has[p][label] && bucket_of[p] == bucket).count()
    };
    for label in 0..n_labels {
        if (0..has.len()).filter(|&p| has[p][label]).count() < positive.len() {
            continue;
        }
        for &b in &positive {
            if holders(label, b, bucket_of) > 0 {
                continue;
            }
            let movable = |p: usize| {
                (0..n_labels)
                    .filter(|&m| has[p][m])
                    .all(|m| holders(m, bucket_of[p], bucket_of) >= 2)
            };
            let pick = (0..has.len())
                .filter(|&p| has[p][label] && movable(p))
                .max_by_key(|&p| {
                    let labels = has[p].iter().filter(|&&h| h).count();
                    (holders(label, bucket_of[p], bucket_of), std::cmp::Reverse(labels), std::cmp::Reverse(p))
                });
            if let Some(p) = pick {
                bucket_of[p] = b;
            }
        }
    }
}

/// How many of `n` patients go to each bucket: `round(n · f)` for every bucket but the first,
/// which takes the rest; when `n` is at least the number of buckets with a positive fraction,
/// each of them gets at least one.
pub(crate) fn allocate(n: usize, fractions: &[f64]) -> Vec<usize> {
    // Divide by the sum only when it is not 1, so that `n · f` halves round as written.
    let sum: f64 = fractions.iter().sum();
    let total = if (sum - 1.0).abs() < 1e-9 { 1.0 } else { sum };
    let k = fractions.len();
    let mut counts = vec![0usize; k];
    let mut rest = n;
    for b in 1..k {
        // The relative nudge makes a product that is a half only up to rounding (90 · 0.35 =
        // 31.499999999999996) round up as the exact half does.
        let x = n as f64 * fractions[b] / total;
        let c = ((x * (1.0 + 1e-12)).round() as usize).min(rest);
        counts[b] = c;
        rest -= c;
    }
    counts[0] = rest;
    let positive: Vec<usize> = (0..k).filter(|&b| fractions[b] > 0.0).collect();
    if n >= positive.len() {
        for &b in &positive {
            if counts[b] == 0 {
                // Take one from the bucket with the most to spare (a positive-fraction bucket
                // keeps one). Some bucket has one to spare, since n >= #positive and this
                // positive bucket is empty.
                let spare = |d: usize| counts[d] as isize - isize::from(fractions[d] > 0.0);
                let donor = (0..k)
                    .max_by_key(|&d| (spare(d), std::cmp::Reverse(d)))
                    .unwrap_or(0);
                counts[donor] -= 1;
                counts[b] += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::cover_labels;

    #[test]
    fn a_move_never_takes_a_label_from_the_split_it_leaves() {
        // Label 0: P {0, 2}, Q {0, 3}, R {0, 4} in train, S {0} and T {0} in test, none in val.
        // Train holds most of label 0, but each of P, Q, R is train's only patient of its
        // other label (U {2}, V {3}, W {4} are in test), so S, the first of test's two, moves.
        // X {1} keeps val non-empty. Labels 1–4 have fewer than 3 patients: nothing to cover.
        let sets: [&[usize]; 9] = [&[0, 2], &[0, 3], &[0, 4], &[0], &[0], &[2], &[3], &[4], &[1]];
        let has: Vec<Vec<bool>> = sets.iter().map(|s| (0..5).map(|l| s.contains(&l)).collect()).collect();
        let mut bucket_of = vec![0, 0, 0, 2, 2, 2, 2, 2, 1];
        cover_labels(&has, &[0.7, 0.1, 0.2], &mut bucket_of);
        assert_eq!(bucket_of, [0, 0, 0, 1, 2, 2, 2, 2, 1]);
        // With nothing movable (T a patient of label 1 in val: S is test's only patient of
        // label 0), nothing moves, and val stays without label 0 (the documented exception).
        let mut bucket_of = vec![0, 0, 0, 2, 1, 2, 2, 2, 1];
        let mut has = has;
        has[4] = vec![false, true, false, false, false];
        cover_labels(&has, &[0.7, 0.1, 0.2], &mut bucket_of);
        assert_eq!(bucket_of, [0, 0, 0, 2, 1, 2, 2, 2, 1]);
    }
}
