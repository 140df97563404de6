//! Cross-validation folds: stratified k-fold, stratified *group* k-fold (patients never span
//! two folds), and the inner validation split carved from each fold's training part.
//!
//! All functions work on labels (and optional group ids) only and return dataset indices;
//! every split is a pure function of its inputs and the seed.
//!
//! ## Stratified k-fold ([`stratified_kfold`])
//!
//! scikit-learn's `StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)` algorithm:
//! classes are numbered in order of first appearance, the encoded labels are sorted, and fold
//! `i` receives the positions `i, i + k, i + 2k, …` of that sorted list (round robin). This
//! fixes how many images of every class each fold holds — the same numbers as scikit-learn —
//! so per class the fold sizes differ by at most 1, and the class remainders are spread so
//! the total fold sizes also differ by at most 1. Which images of a class go to which fold
//! is then a seeded shuffle (ChaCha `StdRng`, so the images themselves differ from
//! scikit-learn's NumPy shuffle; the counts do not).
//!
//! ## Stratified group k-fold ([`stratified_group_kfold`])
//!
//! scikit-learn's `StratifiedGroupKFold` greedy algorithm: the groups (patients) are shuffled
//! with the seed, then stably sorted by decreasing standard deviation of their per-class
//! counts and, among equals, by decreasing size — for the usual single-class patient this
//! is "largest group first". Each group in turn goes to the fold that, once the group is
//! added, gives the smallest mean over classes of the standard deviation over folds of
//! `fold count of class c / total count of class c`: scanning the folds in order, a fold
//! replaces the best so far when its value is smaller, or within `numpy.isclose` tolerances
//! of it with fewer images (scikit-learn's `_find_best_fold`, checked against it). A group is
//! assigned once, so no group is ever split between folds. With one image per group this
//! reduces to per-class counts that differ by at most 1 between folds.
//!
//! ## Inner validation ([`holdout`])
//!
//! Best-epoch and threshold selection need a validation split that the held-out fold never
//! influences: it is carved from the fold's training part. Every class present in at least
//! two groups gets a target of `max(1, round(fraction · n_c))` validation images; groups
//! (single images without patient ids) are visited in seeded random order, largest first,
//! and a group joins validation when that brings the validation counts closer to the
//! targets (sum over classes of `|count − target| / target` decreases). Without groups this
//! gives exactly the target count per class. A class with a target that this pass leaves
//! without a validation image (every one of its patients holds at least twice the target)
//! then gets the patient that moves the counts least from the targets, as long as each of
//! that patient's classes keeps a patient in training.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Mixes a seed with a stream number, so nearby seeds / folds give unrelated RNG streams.
pub fn mix_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Classes numbered in order of first appearance: `(codes per sample, number of classes)`.
fn encode_by_appearance<T: Eq + std::hash::Hash + Clone>(values: &[T]) -> (Vec<usize>, usize) {
    let mut map: HashMap<T, usize> = HashMap::new();
    let codes = values
        .iter()
        .map(|v| {
            let next = map.len();
            *map.entry(v.clone()).or_insert(next)
        })
        .collect();
    (codes, map.len())
}

fn check_k(n: usize, k: usize) -> Result<(), String> {
    if k < 2 {
        return Err(format!("--folds must be at least 2, got {k}"));
    }
    if k > n {
        return Err(format!("--folds {k} is more than the {n} images"));
    }
    Ok(())
}

/// Held-out indices of each of `k` folds (each list ascending), stratified by `labels` as
/// scikit-learn's `StratifiedKFold(k, shuffle=True, random_state=seed)` (see the module
/// documentation). Every index is in exactly one fold. A class with fewer than `k` images
/// leaves some folds without it (not an error here; [`cross_validation`] refuses it).
pub fn stratified_kfold(labels: &[usize], k: usize, seed: u64) -> Result<Vec<Vec<usize>>, String> {
    check_k(labels.len(), k)?;
    let (codes, n_classes) = encode_by_appearance(labels);
    let mut counts = vec![0usize; n_classes];
    for &c in &codes {
        counts[c] += 1;
    }
    // Round robin over the sorted codes: class c occupies positions [start, start + n_c).
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fold_of = vec![0usize; labels.len()];
    let mut start = 0;
    for (c, &n_c) in counts.iter().enumerate() {
        let mut folds_for_class: Vec<usize> = (start..start + n_c).map(|j| j % k).collect();
        folds_for_class.sort_unstable();
        folds_for_class.shuffle(&mut rng);
        let members = codes.iter().enumerate().filter(|&(_, &code)| code == c).map(|(i, _)| i);
        for (i, f) in members.zip(folds_for_class) {
            fold_of[i] = f;
        }
        start += n_c;
    }
    Ok(collect_folds(&fold_of, k))
}

fn collect_folds(fold_of: &[usize], k: usize) -> Vec<Vec<usize>> {
    let mut folds = vec![Vec::new(); k];
    for (i, &f) in fold_of.iter().enumerate() {
        folds[f].push(i);
    }
    folds
}

/// Per-group class counts: `(group code of each sample, counts[group][class])`.
fn group_counts(labels: &[usize], groups: &[String], n_classes: usize) -> (Vec<usize>, Vec<Vec<usize>>) {
    let (codes, n_groups) = encode_by_appearance(groups);
    let mut counts = vec![vec![0usize; n_classes]; n_groups];
    for (&g, &l) in codes.iter().zip(labels) {
        counts[g][l] += 1;
    }
    (codes, counts)
}

/// Population standard deviation.
fn std_dev(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let n = values.clone().count() as f64;
    let mean = values.clone().sum::<f64>() / n;
    (values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
}

/// Groups in visiting order: seeded shuffle, then stably by decreasing std of the class
/// counts, then decreasing size.
fn group_order(counts: &[Vec<usize>], seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let key = |g: usize| {
        let c = &counts[g];
        (std_dev(c.iter().map(|&v| v as f64)), c.iter().sum::<usize>())
    };
    order.sort_by(|&a, &b| {
        let (sa, na) = key(a);
        let (sb, nb) = key(b);
        sb.total_cmp(&sa).then(nb.cmp(&na))
    });
    order
}

/// Held-out indices of each of `k` folds (each ascending) such that no group (patient) is in
/// two folds, stratified by `labels` with scikit-learn's `StratifiedGroupKFold` greedy rule
/// (see the module documentation). `groups[i]` is the group of sample `i`.
pub fn stratified_group_kfold(labels: &[usize], groups: &[String], k: usize, seed: u64) -> Result<Vec<Vec<usize>>, String> {
    if groups.len() != labels.len() {
        return Err(format!("{} group ids for {} labels", groups.len(), labels.len()));
    }
    let n_classes = labels.iter().max().map_or(0, |m| m + 1);
    let (group_of, counts) = group_counts(labels, groups, n_classes);
    if k > counts.len() {
        return Err(format!("--folds {k} is more than the {} patients (groups)", counts.len()));
    }
    check_k(labels.len(), k)?;
    let fold_of_group = assign_groups(&counts, group_order(&counts, seed), k);
    let fold_of: Vec<usize> = group_of.iter().map(|&g| fold_of_group[g]).collect();
    Ok(collect_folds(&fold_of, k))
}

/// scikit-learn's `StratifiedGroupKFold._find_best_fold` greedy rule: the fold of each group
/// (`counts[g][c]`: images of class `c` in group `g`), groups placed in `order`, each into the
/// fold that minimises the mean over classes of the (population) standard deviation of the
/// folds' class shares — or, within `np.isclose` of the best so far, holds fewer images.
fn assign_groups(counts: &[Vec<usize>], order: impl IntoIterator<Item = usize>, k: usize) -> Vec<usize> {
    let n_classes = counts.first().map_or(0, Vec::len);
    let totals: Vec<f64> = (0..n_classes).map(|c| counts.iter().map(|g| g[c]).sum::<usize>().max(1) as f64).collect();
    let mut per_fold = vec![vec![0f64; n_classes]; k];
    let mut fold_of_group = vec![0usize; counts.len()];
    for g in order {
        let add = &counts[g];
        let mut best: Option<(usize, f64, f64)> = None; // fold, eval, samples in fold
        for i in 0..k {
            let eval = (0..n_classes)
                .map(|c| {
                    std_dev((0..k).map(|f| (per_fold[f][c] + if f == i { add[c] as f64 } else { 0.0 }) / totals[c]))
                })
                .sum::<f64>()
                / n_classes as f64;
            let samples: f64 = per_fold[i].iter().sum();
            let better = match best {
                None => true,
                // `fold_eval < min_eval or (np.isclose(fold_eval, min_eval) and samples < min)`.
                Some((_, be, bs)) => eval < be || ((eval - be).abs() <= 1e-8 + 1e-5 * be.abs() && samples < bs),
            };
            if better {
                best = Some((i, eval, samples));
            }
        }
        let (f, _, _) = best.expect("k >= 2");
        for c in 0..n_classes {
            per_fold[f][c] += add[c] as f64;
        }
        fold_of_group[g] = f;
    }
    fold_of_group
}

/// Splits the samples into `(train, val)` index lists (each ascending) with about `fraction`
/// of every class in `val`, whole groups at a time when `groups` is given (see the module
/// documentation).
pub fn holdout(labels: &[usize], groups: Option<&[String]>, fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>), String> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(format!("the inner validation fraction must be in (0, 1), got {fraction}"));
    }
    let singletons: Vec<String>;
    let groups = match groups {
        Some(g) => {
            if g.len() != labels.len() {
                return Err(format!("{} group ids for {} labels", g.len(), labels.len()));
            }
            g
        }
        None => {
            singletons = (0..labels.len()).map(|i| i.to_string()).collect();
            &singletons
        }
    };
    let n_classes = labels.iter().max().map_or(0, |m| m + 1);
    let (group_of, counts) = group_counts(labels, groups, n_classes);
    let targets: Vec<f64> = (0..n_classes)
        .map(|c| {
            let n_c: usize = counts.iter().map(|g| g[c]).sum();
            let spread = counts.iter().filter(|g| g[c] > 0).count();
            if spread < 2 { 0.0 } else { ((fraction * n_c as f64).round()).max(1.0) }
        })
        .collect();
    let mut val_counts = vec![0f64; n_classes];
    let mut in_val = vec![false; counts.len()];
    // How much adding group `g` to validation changes the sum over classes of
    // `|count − target| / target` (negative: closer to the targets).
    let change = |g: usize, val_counts: &[f64]| -> f64 {
        (0..n_classes)
            .filter(|&c| counts[g][c] > 0)
            .map(|c| {
                let t = targets[c].max(1.0);
                ((val_counts[c] + counts[g][c] as f64 - targets[c]).abs() - (val_counts[c] - targets[c]).abs()) / t
            })
            .sum()
    };
    let order = group_order(&counts, seed);
    for &g in &order {
        if change(g, &val_counts) < 0.0 {
            in_val[g] = true;
            for (v, &n) in val_counts.iter_mut().zip(&counts[g]) {
                *v += n as f64;
            }
        }
    }
    // The pass above adds a group only when it brings the counts closer to the targets, so a
    // class whose groups each hold at least twice its target (a target of 1 and patients of
    // two images, e.g. the CC and MLO views of one breast) would get no validation image
    // although it has groups to spare. Such a class gets the group that moves the split least
    // from the targets (the first in visiting order among equals), unless that group holds the
    // last training group of one of its classes.
    for c in 0..n_classes {
        if targets[c] < 1.0 || val_counts[c] > 0.0 {
            continue;
        }
        let keeps_training = |g: usize, in_val: &[bool]| {
            (0..n_classes).filter(|&d| counts[g][d] > 0).all(|d| (0..counts.len()).any(|h| h != g && !in_val[h] && counts[h][d] > 0))
        };
        let pick = order
            .iter()
            .copied()
            .filter(|&g| !in_val[g] && counts[g][c] > 0 && keeps_training(g, &in_val))
            .min_by(|&a, &b| change(a, &val_counts).total_cmp(&change(b, &val_counts)));
        if let Some(g) = pick {
            in_val[g] = true;
            for (v, &n) in val_counts.iter_mut().zip(&counts[g]) {
                *v += n as f64;
            }
        }
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, &g) in group_of.iter().enumerate() {
        if in_val[g] { val.push(i) } else { train.push(i) }
    }
    Ok((train, val))
}

/// One cross-validation fold, as indices into the pooled data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fold {
    /// Training images of the fold (the other folds minus `val`).
    pub train: Vec<usize>,
    /// Inner validation images (best epoch and threshold), carved from the other folds.
    pub val: Vec<usize>,
    /// The held-out fold, scored once with the choices made on `val`.
    pub test: Vec<usize>,
}

/// The `k` folds of a cross-validation of `labels` (with `class_names.len()` classes):
/// held-out folds from [`stratified_group_kfold`] when `groups` is given, else
/// [`stratified_kfold`]; inside each fold's training part, an inner validation split of
/// about `inner_val` ([`holdout`], grouped likewise).
///
/// Errors — naming the class — when a class is too rare for every held-out fold and every
/// inner validation split to hold it (a fold without a class has no AUC), and on bad `k`.
pub fn cross_validation(
    labels: &[usize],
    class_names: &[String],
    groups: Option<&[String]>,
    k: usize,
    inner_val: f64,
    seed: u64,
) -> Result<Vec<Fold>, String> {
    let n_classes = class_names.len();
    let name = |c: usize| class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
    for c in 0..n_classes {
        let units = match groups {
            Some(g) => {
                let mut set: Vec<&String> = labels.iter().zip(g).filter(|(l, _)| **l == c).map(|(_, g)| g).collect();
                set.sort_unstable();
                set.dedup();
                set.len()
            }
            None => labels.iter().filter(|&&l| l == c).count(),
        };
        // One unit in each of the k held-out folds, and at least two left beside the largest
        // held-out share, ⌈units/k⌉ (one for the fold's inner validation, one for its training
        // part): k units for k >= 3, but 4 for k = 2 (3 units leave 1 beside a share of 2).
        let needed = (k..).find(|n| n - n.div_ceil(k) >= 2).expect("exists");
        if units < needed {
            let what = if groups.is_some() { "patients" } else { "images" };
            return Err(format!(
                "class `{}` has {units} {what} in train+val: {k}-fold cross-validation needs at least {needed} \
                 (every held-out fold, inner validation and training part needs the class); {}",
                name(c),
                fewer_folds(k)
            ));
        }
    }
    let outer = match groups {
        Some(g) => stratified_group_kfold(labels, g, k, seed)?,
        None => stratified_kfold(labels, k, seed)?,
    };
    let mut folds = Vec::with_capacity(k);
    for (i, test) in outer.iter().enumerate() {
        let mut held = vec![false; labels.len()];
        for &t in test {
            held[t] = true;
        }
        let rest: Vec<usize> = (0..labels.len()).filter(|&j| !held[j]).collect();
        let rest_labels: Vec<usize> = rest.iter().map(|&j| labels[j]).collect();
        let rest_groups: Option<Vec<String>> = groups.map(|g| rest.iter().map(|&j| g[j].clone()).collect());
        let (tr, va) = holdout(&rest_labels, rest_groups.as_deref(), inner_val, mix_seed(seed, i as u64 + 1))?;
        let fold = Fold { train: tr.iter().map(|&j| rest[j]).collect(), val: va.iter().map(|&j| rest[j]).collect(), test: test.clone() };
        for (part, idx) in [("held-out fold", &fold.test), ("inner validation split", &fold.val), ("training part", &fold.train)] {
            let mut present = vec![false; n_classes];
            for &j in idx {
                present[labels[j]] = true;
            }
            if let Some(c) = present.iter().position(|p| !p) {
                return Err(format!(
                    "fold {}: the {part} has no image of class `{}` (too few images/patients of it for {k} folds); {}",
                    i + 1,
                    name(c),
                    fewer_folds(k)
                ));
            }
        }
        folds.push(fold);
    }
    Ok(folds)
}

/// What to do about a class too rare for `k` folds.
fn fewer_folds(k: usize) -> &'static str {
    if k > 2 {
        "use fewer --folds"
    } else {
        "2 folds is the fewest: add images of the class, or leave it out of the task (e.g. other --positive-classes)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// scikit-learn 1.9:
    /// ```python
    /// y = np.array([0,0,1,1,1,1,0,0,0,0,0,0,0,1,0,0,0,0,0,1,1])
    /// g = np.array([0,1,2,2,2,3,4,5,5,6,7,7,7,8,9,9,10,10,10,11,11])
    /// for i, (_, te) in enumerate(StratifiedGroupKFold(3).split(np.zeros(21), y, g)): fold[te] = i
    /// # fold of groups 0..11: [1, 2, 0, 1, 1, 0, 2, 1, 1, 0, 2, 2]
    /// # its group order (shuffle=False): np.argsort(-np.std(counts, axis=1), kind="stable")
    /// ```
    /// A rule that lets a slightly smaller `eval` lose to a near-tie on size differs here.
    #[test]
    fn the_greedy_step_matches_scikit_learn() {
        let counts: Vec<Vec<usize>> =
            [[1, 0], [1, 0], [0, 3], [0, 1], [1, 0], [2, 0], [1, 0], [3, 0], [0, 1], [2, 0], [3, 0], [0, 2]].map(Vec::from).to_vec();
        let order = [2, 7, 10, 5, 9, 11, 0, 1, 3, 4, 6, 8];
        assert_eq!(assign_groups(&counts, order, 3), [1, 2, 0, 1, 1, 0, 2, 1, 1, 0, 2, 2]);
    }

    #[test]
    fn mix_seed_differs_per_stream() {
        assert_ne!(mix_seed(0, 1), mix_seed(0, 2));
        assert_ne!(mix_seed(0, 1), mix_seed(1, 1));
    }

    #[test]
    fn holdout_without_groups_hits_the_targets() {
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i % 10 == 0)).collect(); // 90 / 10
        let (train, val) = holdout(&labels, None, 0.2, 3).unwrap();
        assert_eq!(train.len() + val.len(), 100);
        let pos = val.iter().filter(|&&i| labels[i] == 1).count();
        assert_eq!((val.len() - pos, pos), (18, 2));
    }
}
