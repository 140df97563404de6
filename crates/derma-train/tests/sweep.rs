//! Cross-validation folds and the `derma-sweep` binary (CPU backend, tiny data).

mod common;
use common::{colour_split, text};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use derma_train::folds::{cross_validation, holdout, stratified_group_kfold, stratified_kfold};
use derma_train::sweep::Plan;
use medmnist::MedMnistArrays;

// ---------------------------------------------------------------------------------------------
// folds

/// A small deterministic generator for test labels.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn per_class_counts(fold: &[usize], labels: &[usize], n_classes: usize) -> Vec<usize> {
    let mut c = vec![0; n_classes];
    for &i in fold {
        c[labels[i]] += 1;
    }
    c
}

/// Every index in exactly one fold.
fn assert_partition(folds: &[Vec<usize>], n: usize) {
    let mut seen = vec![0; n];
    for f in folds {
        for &i in f {
            seen[i] += 1;
        }
    }
    assert!(seen.iter().all(|&s| s == 1), "not a partition: {seen:?}");
}

/// The per-class counts of each fold are scikit-learn's for the same labels:
///
/// ```python
/// import numpy as np
/// from sklearn.model_selection import StratifiedKFold
/// y = np.array([2,2,0,1,1,3,0,1,2,1,1,1,0,2,1,3,1,1,0,1,2,1,1,3,1,2,0,1,1,1,2,1])
/// for _, te in StratifiedKFold(4, shuffle=True, random_state=0).split(np.zeros(len(y)), y):
///     print(np.bincount(y[te], minlength=4).tolist())
/// # [1, 5, 2, 0]
/// # [1, 4, 2, 1]
/// # [1, 4, 2, 1]
/// # [2, 4, 1, 1]     (the same for random_state=7: the counts do not depend on the seed)
/// ```
///
/// Classes are taken in order of first appearance (2, 0, 1, 3), as scikit-learn does, which
/// is why class 3's missing image falls on fold 1 and class 0's extra one on fold 4.
#[test]
fn stratified_kfold_counts_match_scikit_learn() {
    let y = [2, 2, 0, 1, 1, 3, 0, 1, 2, 1, 1, 1, 0, 2, 1, 3, 1, 1, 0, 1, 2, 1, 1, 3, 1, 2, 0, 1, 1, 1, 2, 1];
    let sklearn = [[1, 5, 2, 0], [1, 4, 2, 1], [1, 4, 2, 1], [2, 4, 1, 1]];
    for seed in [0, 7, 12345] {
        let folds = stratified_kfold(&y, 4, seed).unwrap();
        assert_partition(&folds, y.len());
        for (f, want) in folds.iter().zip(sklearn) {
            assert_eq!(per_class_counts(f, &y, 4), want, "seed {seed}");
        }
    }
}

#[test]
fn stratified_kfold_spreads_every_class_and_is_deterministic() {
    let mut rng = Lcg(3);
    for trial in 0..40 {
        let n_classes = 2 + trial % 5;
        let n = 20 + rng.next(200);
        // Imbalanced: class c drawn with weight c + 1 (squared for some trials).
        let weights: Vec<usize> = (0..n_classes).map(|c| if trial % 2 == 0 { c + 1 } else { (c + 1) * (c + 1) }).collect();
        let total: usize = weights.iter().sum();
        let labels: Vec<usize> = (0..n)
            .map(|_| {
                let mut r = rng.next(total);
                weights.iter().position(|&w| if r < w { true } else { r -= w; false }).unwrap()
            })
            .collect();
        let k = 2 + trial % 6;
        let folds = stratified_kfold(&labels, k, trial as u64).unwrap();
        assert_eq!(folds.len(), k);
        assert_partition(&folds, n);
        for c in 0..n_classes {
            let counts: Vec<usize> = folds.iter().map(|f| per_class_counts(f, &labels, n_classes)[c]).collect();
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(hi - lo <= 1, "class {c} spread {counts:?} (trial {trial})");
        }
        let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "fold sizes {sizes:?}");
        assert_eq!(stratified_kfold(&labels, k, trial as u64).unwrap(), folds, "same seed, same folds");
    }
    // Another seed assigns other images (same counts).
    let labels: Vec<usize> = (0..100).map(|i| i % 3).collect();
    assert_ne!(stratified_kfold(&labels, 5, 1).unwrap(), stratified_kfold(&labels, 5, 2).unwrap());
    assert!(stratified_kfold(&labels, 1, 0).is_err());
    assert!(stratified_kfold(&labels[..3], 4, 0).is_err());
}

/// Patients with 1–4 images each, mostly of one class.
fn patients(n_patients: usize, seed: u64) -> (Vec<usize>, Vec<String>) {
    let mut rng = Lcg(seed);
    let (mut labels, mut groups) = (Vec::new(), Vec::new());
    for p in 0..n_patients {
        let class = usize::from(rng.next(4) == 0); // ~25% positive patients
        for _ in 0..1 + rng.next(4) {
            let l = if rng.next(10) == 0 { 1 - class } else { class };
            labels.push(l);
            groups.push(format!("patient-{p}"));
        }
    }
    (labels, groups)
}

#[test]
fn group_kfold_never_splits_a_patient_and_stays_stratified() {
    for seed in 0..10 {
        let (labels, groups) = patients(120, seed);
        let k = 3 + (seed as usize % 3);
        let folds = stratified_group_kfold(&labels, &groups, k, seed).unwrap();
        assert_partition(&folds, labels.len());
        let mut fold_of_group: HashMap<&str, usize> = HashMap::new();
        for (f, idx) in folds.iter().enumerate() {
            for &i in idx {
                let prev = fold_of_group.insert(&groups[i], f);
                assert!(prev.is_none_or(|p| p == f), "patient {} in folds {prev:?} and {f}", groups[i]);
            }
        }
        // Class proportions close to the overall one in every fold.
        let overall = labels.iter().filter(|&&l| l == 1).count() as f64 / labels.len() as f64;
        for idx in &folds {
            let pos = idx.iter().filter(|&&i| labels[i] == 1).count() as f64 / idx.len() as f64;
            assert!((pos - overall).abs() < 0.1, "fold positive rate {pos:.3} vs {overall:.3}");
        }
        assert_eq!(stratified_group_kfold(&labels, &groups, k, seed).unwrap(), folds, "deterministic");
    }
    // One image per patient: per-class counts within 1, like the plain stratified split.
    let labels: Vec<usize> = (0..97).map(|i| usize::from(i % 7 == 0) + usize::from(i % 11 == 0)).collect();
    let groups: Vec<String> = (0..97).map(|i| format!("p{i}")).collect();
    let folds = stratified_group_kfold(&labels, &groups, 5, 4).unwrap();
    for c in 0..3 {
        let counts: Vec<usize> = folds.iter().map(|f| per_class_counts(f, &labels, 3)[c]).collect();
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1, "class {c}: {counts:?}");
    }
    assert!(stratified_group_kfold(&labels[..4], &groups[..4], 5, 0).is_err(), "5 folds of 4 patients");
}

#[test]
fn cross_validation_keeps_the_held_out_fold_out_of_selection() {
    let names = vec!["benign".to_string(), "malignant".to_string()];
    let (labels, groups) = patients(150, 9);
    for grouped in [false, true] {
        let g = grouped.then_some(groups.as_slice());
        let folds = cross_validation(&labels, &names, g, 5, 0.15, 11).unwrap();
        assert_eq!(folds.len(), 5);
        let held: Vec<Vec<usize>> = folds.iter().map(|f| f.test.clone()).collect();
        assert_partition(&held, labels.len());
        for f in &folds {
            let (tr, va, te): (HashSet<_>, HashSet<_>, HashSet<_>) =
                (f.train.iter().collect(), f.val.iter().collect(), f.test.iter().collect());
            assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
            assert_eq!(tr.len() + va.len() + te.len(), labels.len());
            let frac = va.len() as f64 / (tr.len() + va.len()) as f64;
            assert!((0.08..0.25).contains(&frac), "inner validation fraction {frac}");
            for part in [&f.train, &f.val, &f.test] {
                assert!(per_class_counts(part, &labels, 2).iter().all(|&c| c > 0), "a part lacks a class");
            }
            if grouped {
                let part_of = |i: usize| if tr.contains(&i) { 0 } else if va.contains(&i) { 1 } else { 2 };
                let mut seen: HashMap<&str, usize> = HashMap::new();
                for (i, g) in groups.iter().enumerate() {
                    let p = *seen.entry(g).or_insert(part_of(i));
                    assert_eq!(p, part_of(i), "patient {g} split between train/val/test");
                }
            }
        }
        assert_eq!(cross_validation(&labels, &names, g, 5, 0.15, 11).unwrap(), folds);
    }
    // A class too rare for the folds is named.
    let mut rare = vec![0usize; 40];
    rare[3] = 1;
    rare[17] = 1;
    let e = cross_validation(&rare, &names, None, 5, 0.15, 0).unwrap_err();
    assert!(e.contains("malignant") && e.contains("has 2 images") && e.contains("needs at least 5") && e.contains("fewer --folds"), "{e}");
    // At 2 folds 3 images are too few (a held-out share of 2 leaves 1 for the inner validation
    // and the training part), and fewer folds is no advice; 4 are enough, for every seed.
    rare[29] = 1;
    for seed in 0..4 {
        let e = cross_validation(&rare, &names, None, 2, 0.15, seed).unwrap_err();
        assert!(e.contains("has 3 images") && e.contains("needs at least 4") && e.contains("2 folds is the fewest"), "{e}");
    }
    rare[33] = 1;
    for seed in 0..4 {
        cross_validation(&rare, &names, None, 2, 0.15, seed).unwrap();
    }
    // The plain holdout hits its per-class targets.
    let (tr, va) = holdout(&labels, None, 0.2, 1).unwrap();
    assert_eq!(tr.len() + va.len(), labels.len());
    let pos = labels.iter().filter(|&&l| l == 1).count();
    let va_pos = va.iter().filter(|&&i| labels[i] == 1).count();
    assert_eq!(va_pos, (pos as f64 * 0.2).round() as usize);
}

#[test]
fn inner_validation_takes_a_patient_of_a_rare_class_whose_patients_have_two_images() {
    // Five malignant patients of two images each (e.g. the CC and MLO views of one lesion) and
    // 40 single-image benign patients. The malignant class's inner validation target is 1
    // image (round(0.15 · 6 or 8)), so no two-image patient brings the counts closer to it;
    // before the second pass every fold's inner validation lacked the class and the sweep
    // refused the data for every k and seed, advising fewer folds.
    let names = vec!["benign".to_string(), "malignant".to_string()];
    let mut labels = vec![1usize; 10];
    let mut groups: Vec<String> = (0..10).map(|i| format!("m{}", i / 2)).collect();
    labels.extend([0usize; 40]);
    groups.extend((0..40).map(|i| format!("b{i}")));
    for k in [2, 3, 5] {
        for seed in 0..4 {
            let folds = cross_validation(&labels, &names, Some(&groups), k, 0.15, seed)
                .unwrap_or_else(|e| panic!("{k} folds, seed {seed}: {e}"));
            for f in &folds {
                // One malignant patient in the inner validation (the target is 1 image; the
                // smallest patient has 2), the rest of them still in training.
                assert_eq!(f.val.iter().filter(|&&i| labels[i] == 1).count(), 2, "{k} folds, seed {seed}");
                assert!(f.train.iter().any(|&i| labels[i] == 1));
            }
        }
    }
    // The same through `holdout` alone: 4 malignant patients of 2 images, 30 benign.
    let lab: Vec<usize> = [vec![1; 8], vec![0; 30]].concat();
    let gr: Vec<String> = (0..38).map(|i| if i < 8 { format!("p{}", i / 2) } else { format!("n{i}") }).collect();
    let (tr, va) = holdout(&lab, Some(&gr), 0.15, 0).unwrap();
    assert_eq!(va.iter().filter(|&&i| lab[i] == 1).count(), 2);
    assert_eq!(tr.iter().filter(|&&i| lab[i] == 1).count(), 6);
    // Benign: target round(0.15 · 30) = 5 single-image patients, as before.
    assert_eq!(va.iter().filter(|&&i| lab[i] == 0).count(), 5);
    // The second pass never takes a patient whose classes would lose their last training
    // patient. Class 1 lives in q0 (3 images, plus class 2's only other image) and q1 (5);
    // class 2 in q0 and r (1 image); targets 1 each (round(0.15 · 8), round(0.15 · 2) raised
    // to 1). The first pass takes r (class 2 from 0 to its target), never q0 or q1 (no
    // improvement), leaving class 1 without validation. Of class 1's patients q0 moves the
    // counts less (+2 against q1's +3) but holds class 2's last training image, so q1 goes.
    // Python port of this function (both passes) over 50 seeds: without the guard q0 goes and
    // class 2 leaves training; without the second pass class 1 has no validation image.
    let lab3 = [vec![1, 1, 1, 2], vec![1; 5], vec![2], vec![0; 10]].concat();
    let gr3: Vec<String> = [vec!["q0"; 4], vec!["q1"; 5], vec!["r"]]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .chain((0..10).map(|i| format!("z{i}")))
        .collect();
    for seed in 0..8 {
        let (tr, va) = holdout(&lab3, Some(&gr3), 0.15, seed).unwrap();
        let patients = |idx: &[usize]| {
            let mut p: Vec<&str> = idx.iter().filter(|&&i| lab3[i] != 0).map(|&i| gr3[i].as_str()).collect();
            p.dedup();
            p
        };
        assert_eq!(patients(&va), ["q1", "r"], "seed {seed}");
        assert_eq!(patients(&tr), ["q0"], "seed {seed}");
        assert_eq!(va.iter().filter(|&&i| lab3[i] == 0).count(), 2, "seed {seed}: round(0.15 · 10) benign");
    }
}

// ---------------------------------------------------------------------------------------------
// plans

fn plan(text: &str) -> anyhow::Result<Plan> {
    let p = Plan::from_toml(text, Path::new("plans/my-plan.toml"))?;
    p.validate()?;
    Ok(p)
}

#[test]
fn plan_errors_name_the_file_and_the_key() {
    let phase = "[[phase]]\nname = \"a\"\ntrials = [{ gamma = 1.0 }]\n";
    let cases = [
        // (plan, words the message must hold)
        ("[[phase]]\nname = \"g\"\ntrials = [{ gamma = 1.0 }, { gama = 2.0 }]\n".to_string(), vec!["my-plan.toml", "gama", "phase `g` trial 2"]),
        (format!("fold = 3\n{phase}"), vec!["my-plan.toml", "fold"]),
        (format!("[base]\nlearning_rate = 0.1\n{phase}"), vec!["my-plan.toml", "[base]", "learning_rate"]),
        (format!("metric = \"f2\"\n{phase}"), vec!["my-plan.toml", "f2", "positive_classes"]),
        // Listed without `loss`, which a plan may not use.
        (format!("metric = \"rocauc\"\n{phase}"), vec!["my-plan.toml", "rocauc", "expected one of auc, bal_acc, acc, ap, f2, sens@spec"]),
        // A held-out loss is not comparable across the losses a sweep compares.
        (format!("metric = \"loss\"\n{phase}"), vec!["my-plan.toml", "metric `loss`", "auc"]),
        ("[[phase]]\nname = \"g\"\ngrid = { gamma = 2.0 }\n".to_string(), vec!["my-plan.toml", "gamma", "list"]),
        ("[[phase]]\nname = \"g\"\ntrials = [{ gamma = -1.0 }]\n".to_string(), vec!["my-plan.toml", "phase `g` trial 1", "--gamma"]),
        ("[[phase]]\nname = \"g\"\ntrials = [{ gamma = 1.0 }]\ngrid = { alpha = [0.5] }\n".to_string(), vec!["my-plan.toml", "either"]),
        ("folds = 1\n[[phase]]\nname = \"g\"\ntrials = [{ gamma = 1.0 }]\n".to_string(), vec!["my-plan.toml", "folds"]),
        ("name = \"x\"\n".to_string(), vec!["my-plan.toml", "phase"]),
        ("[[phase]]\nname = \"two\\nlines\"\ntrials = [{ gamma = 1.0 }]\n".to_string(), vec!["my-plan.toml", "one line"]),
        // A trial invalid with the plan's metric: sens@spec needs a min-spec threshold.
        (
            "metric = \"sens@spec\"\n[base]\npositive_classes = [\"mel\"]\nthreshold = \"min-spec:0.8\"\n\
             [[phase]]\nname = \"t\"\ntrials = [{ threshold = \"youden\" }, {}]\n[[phase]]\nname = \"g\"\ntrials = [{ gamma = 1.0 }]\n"
                .to_string(),
            vec!["my-plan.toml", "phase `t` trial 1", "min-spec"],
        ),
        (
            "[[phase]]\nname = \"e\"\ntrials = [{}, { epochs = 2 }]\n[[phase]]\nname = \"f\"\ntrials = [{ freeze_backbone_epochs = 3 }]\n"
                .to_string(),
            vec!["my-plan.toml", "phase `f` trial 1", "earlier winners `e` trial 2", "--freeze-backbone-epochs 3"],
        ),
        // Valid with either trial of `b` fixed, invalid when `b` fixes nothing (its best does
        // not beat `a`'s winner) and epochs stays at the base's 4.
        (
            "[base]\nepochs = 4\n[[phase]]\nname = \"a\"\ntrials = [{}]\n[[phase]]\nname = \"b\"\ntrials = [{ epochs = 20 }, { epochs = 30 }]\n\
             [[phase]]\nname = \"c\"\ntrials = [{ freeze_backbone_epochs = 10 }]\n"
                .to_string(),
            vec!["my-plan.toml", "phase `c` trial 1", "`a` trial 1, `b` fixing nothing", "--freeze-backbone-epochs 10"],
        ),
        // Two spellings of one value are one configuration; an empty grid is no trial.
        (
            "[[phase]]\nname = \"g\"\ntrials = [{ gamma = 1 }, { gamma = 1.0 }]\n".to_string(),
            vec!["my-plan.toml", "phase `g` trials 1 (gamma=1) and 2 (gamma=1.0)", "same configuration"],
        ),
        ("[[phase]]\nname = \"g\"\ngrid = {}\n".to_string(), vec!["my-plan.toml", "phase 1 (`g`)", "no keys"]),
        // Keys the sweep sets itself would be recorded as used but not be.
        (
            "[[phase]]\nname = \"g\"\ntrials = [{ gamma = 1.0 }, { backend = \"wgpu\" }]\n".to_string(),
            vec!["my-plan.toml", "phase `g` trial 2", "`backend` cannot vary per trial"],
        ),
        (format!("[base]\nout = \"elsewhere\"\n{phase}"), vec!["my-plan.toml", "[base]", "`out` is not a sweep key"]),
        // Set from the weights in every run: two trials differing in them train one model.
        (
            "[[phase]]\nname = \"n\"\ngrid = { input_norm = [\"imagenet\", \"minus_one_to_one\"] }\n".to_string(),
            vec!["my-plan.toml", "phase `n` trial 1", "`input_norm` cannot vary"],
        ),
        (format!("[base]\ninput_norm = \"imagenet\"\n{phase}"), vec!["my-plan.toml", "[base]", "`input_norm` is not a sweep key"]),
        // A misspelled dataset in a later trial: refused up front, not when the trial is reached.
        (
            "[[phase]]\nname = \"a\"\ntrials = [{}]\n[[phase]]\nname = \"b\"\ntrials = [{ dataset = \"dermamnsit\" }]\n".to_string(),
            vec!["my-plan.toml", "phase `b` trial 1", "--dataset"],
        ),
        // Per-class lists against the class count known before any data is read (7 for
        // dermamnist, 2 with positive classes): refused up front, not at the trial's first fold.
        (
            "[[phase]]\nname = \"w\"\ntrials = [{}, { class_weights = [1.0, 2.0] }]\n".to_string(),
            vec!["my-plan.toml", "phase `w` trial 2", "--class-weights lists 2 values but there are 7 classes"],
        ),
        (
            "[base]\npositive_classes = [\"mel\"]\n[[phase]]\nname = \"w\"\ntrials = [{ class_weights = [1.0, -1.0] }]\n".to_string(),
            vec!["my-plan.toml", "phase `w` trial 1", "--class-weights must all be > 0"],
        ),
    ];
    for (text, words) in cases {
        let e = format!("{:#}", plan(&text).expect_err(&text));
        for w in words {
            assert!(e.contains(w), "`{w}` missing from the error for\n{text}\n→ {e}");
        }
    }
    // A bad value in the plan's config file is named there; the same key in [base] is [base]'s.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "lr = -0.5\nepochs = 2\n").unwrap();
    let at = dir.path().join("p.toml");
    let text = format!("config = \"bad.toml\"\n{phase}");
    let e = format!("{:#}", Plan::from_toml(&text, &at).unwrap().validate().unwrap_err());
    assert!(e.contains("p.toml: config ") && e.contains("bad.toml: --lr must be > 0, got -0.5") && !e.contains("[base]"), "{e}");
    let text = format!("config = \"bad.toml\"\n[base]\nlr = -2.0\n{phase}");
    let e = format!("{:#}", Plan::from_toml(&text, &at).unwrap().validate().unwrap_err());
    assert!(e.contains("p.toml: [base]: --lr must be > 0, got -2"), "{e}");
    // So is an augmentation knob: its table is the file's.
    std::fs::write(dir.path().join("knob.toml"), "[augment_knobs]\nrotation = -5.0\n").unwrap();
    let e = format!("{:#}", Plan::from_toml(&format!("config = \"knob.toml\"\n{phase}"), &at).unwrap().validate().unwrap_err());
    assert!(e.contains("knob.toml: --rotation (augment_knobs.rotation) must be") && !e.contains("[base]"), "{e}");

    // A valid plan: grids expand (keys alphabetically, the last fastest), phases keep their order.
    let text = "folds = 3\n[[phase]]\nname = \"a\"\ngrid = { gamma = [1.0, 2.0], alpha = [0.25, 0.5] }\n[[phase]]\nname = \"b\"\ntrials = [{ lr = 0.01 }]\n";
    let mut p = plan(text).unwrap();
    assert_eq!(p.trial_count(), 5);
    assert_eq!((p.folds, p.phases[0].trials.len(), p.phases[1].name.as_str()), (3, 4, "b"));
    let shown: Vec<String> = p.phases[0].trials.iter().map(derma_train::sweep::params_string).collect();
    assert_eq!(shown, ["alpha=0.25;gamma=1.0", "alpha=0.25;gamma=2.0", "alpha=0.5;gamma=1.0", "alpha=0.5;gamma=2.0"]);
    // A command-line override of a swept key makes its trials one configuration.
    p.set_override("gamma", toml::Value::Float(3.0));
    let e = format!("{:#}", p.validate().unwrap_err());
    assert!(e.contains("trials 1 (alpha=0.25;gamma=1.0) and 2 (alpha=0.25;gamma=2.0)") && e.contains("overrides `gamma`"), "{e}");

    // Trials equal under one possible earlier winner only (phase `g` trial 1 fixes nothing of
    // gamma, trial 2 fixes gamma = 1.0) are allowed: which one wins is not known up front.
    plan("[[phase]]\nname = \"l\"\ntrials = [{ loss = \"focal\" }, { loss = \"focal\", gamma = 1.0 }]\n\
          [[phase]]\nname = \"g\"\ntrials = [{}, { gamma = 1.0 }]\n")
    .unwrap();

    // A bad key in the plan's `config = FILE` is reported with that file, not as [base].
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("badcfg.toml"), "gama = 2.0\n").unwrap();
    let e = format!("{:#}", Plan::from_toml(&format!("config = \"badcfg.toml\"\n{phase}"), &dir.path().join("p.toml")).unwrap_err());
    assert!(e.contains("p.toml") && e.contains("badcfg.toml") && e.contains("gama") && !e.contains("[base]"), "{e}");
    // A run's config.toml as the plan's config: its folder (`out`) and the conventions its
    // weights set (input_norm, padding) are dropped — every fold has its own folder and sets
    // them from its weights — not refused; in [base] `out` is refused (above).
    std::fs::write(dir.path().join("run.toml"), "out = \"runs/x\"\ninput_norm = \"imagenet\"\npadding = \"Symmetric\"\nlr = 0.002\n").unwrap();
    let plan = Plan::from_toml(&format!("config = \"run.toml\"\n{phase}"), &dir.path().join("p.toml")).unwrap();
    plan.validate().unwrap();
    assert!(["out", "input_norm", "padding"].iter().all(|k| !plan.base.contains_key(*k)) && plan.base.contains_key("lr"));
}

// ---------------------------------------------------------------------------------------------
// the binary


fn derma_sweep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_derma-sweep")).args(args).output().unwrap()
}


fn mtimes(dir: &Path) -> BTreeMap<PathBuf, std::time::SystemTime> {
    let mut out = BTreeMap::new();
    for t in std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("trial-")) {
        for f in std::fs::read_dir(t.path()).unwrap().flatten() {
            let m = f.path().join("model.bpk");
            out.insert(m.clone(), std::fs::metadata(&m).unwrap().modified().unwrap());
        }
    }
    out
}

/// The run folder of trial `number` (`trial-NNN-HHHHHHHH`: number and parameter hash).
fn trial_folder(out: &Path, number: usize) -> PathBuf {
    let prefix = format!("trial-{number:03}-");
    let found: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    assert_eq!(found.len(), 1, "trial {number}: {found:?}");
    found[0].clone()
}

/// Splits a CSV line (fields may be quoted, `""` inside quotes is a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut out, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    out.push(field);
    out
}

/// `results.csv` rows: (trial, phase, params, mean, fold scores).
fn rows(csv: &str) -> Vec<(usize, String, String, f64, Vec<f64>)> {
    csv.lines()
        .skip(1)
        .map(|l| {
            let f = csv_fields(l);
            assert_eq!(f[3], "auc", "{l}");
            (f[0].parse().unwrap(), f[1].clone(), f[2].clone(), f[4].parse().unwrap(), f[6..].iter().map(|v| v.parse().unwrap()).collect())
        })
        .collect()
}

/// 2 phases x 2 trials x 2 folds end to end; phase 2 carries phase 1's winner; a second run
/// trains nothing; an interrupted trial resumes at its unfinished fold; other settings are
/// refused.
#[test]
fn sweep_runs_end_to_end_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("colours.npz");
    let arrays = MedMnistArrays { train: colour_split(4, 1), val: colour_split(2, 2), test: colour_split(1, 3) };
    medmnist::write_npz(&npz, &arrays).unwrap();
    let plan_path = dir.path().join("tiny.toml");
    std::fs::write(
        &plan_path,
        format!(
            r#"
name = "tiny"
folds = 2
metric = "auc"
seed = 1

[base]
npz = "{}"
positive_classes = ["mel", "bcc", "akiec"]
width = 0.25
output_stride = 8
epochs = 1
batch_size = 8
lr = 0.003

[[phase]]
name = "loss"
trials = [{{ loss = "ce" }}, {{ loss = "focal", gamma = 2.0 }}]

[[phase]]
name = "dropout"
grid = {{ dropout = [0.0, 0.3] }}
"#,
            npz.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("sweep");
    let args = ["--plan", plan_path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--backend", "cpu"];

    let o = derma_sweep(&args);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("4 trial(s), 0 skipped"), "{stdout}");
    assert!(stdout.contains("8 fold(s) trained, 0 reused"), "{stdout}");

    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert!(csv.starts_with("trial,phase,params,metric,mean,std,fold_1,fold_2\n"), "{csv}");
    let r = rows(&csv);
    assert_eq!(r.len(), 4, "{csv}");
    assert_eq!(r.iter().map(|x| (x.0, x.1.as_str())).collect::<Vec<_>>(), [(1, "loss"), (2, "loss"), (3, "dropout"), (4, "dropout")]);
    assert_eq!(r[0].2, "loss=\"ce\"");
    assert_eq!(r[1].2, "gamma=2.0;loss=\"focal\"");
    for (trial, _, _, mean, folds) in &r {
        assert_eq!(folds.len(), 2);
        assert!((mean - (folds[0] + folds[1]) / 2.0).abs() < 1e-12, "trial {trial}: mean {mean} of {folds:?}");
        // The fold score is the held-out fold's AUC of that fold's run folder.
        for (k, score) in folds.iter().enumerate() {
            let fold_dir = trial_folder(&out, *trial).join(format!("fold-{}", k + 1));
            let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fold_dir.join("report.json")).unwrap()).unwrap();
            let auc = report["test"]["auc"].as_f64().unwrap();
            assert!((auc - score).abs() < 1e-12, "trial {trial} fold {}: {auc} vs {score}", k + 1);
            let preds = std::fs::read_to_string(fold_dir.join("predictions.csv")).unwrap();
            assert_eq!(preds.lines().filter(|l| l.starts_with("test,")).count(), 21, "held-out fold = half of 42 images");
            assert!(fold_dir.join("model.bpk").is_file() && fold_dir.join("score.json").is_file());
        }
    }
    // Phase 2 carries the phase-1 winner (highest mean, first on ties) and only it.
    let winner = if r[1].3 > r[0].3 { &r[1] } else { &r[0] };
    let loser = if r[1].3 > r[0].3 { &r[0] } else { &r[1] };
    for (i, dropout) in [(2, "dropout=0.0"), (3, "dropout=0.3")] {
        let p: HashSet<&str> = r[i].2.split(';').collect();
        assert!(p.contains(dropout), "{:?}", r[i]);
        for kv in winner.2.split(';') {
            assert!(p.contains(kv), "phase-2 trial {:?} lacks the winner's {kv}", r[i]);
        }
        assert_ne!(p, loser.2.split(';').chain([dropout]).collect::<HashSet<_>>());
        let config = std::fs::read_to_string(trial_folder(&out, i + 1).join("fold-1/config.toml")).unwrap();
        let config: toml::Table = toml::from_str(&config).unwrap();
        assert_eq!(config["loss"].as_str().unwrap(), if winner.0 == 1 { "ce" } else { "focal" });
    }
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("## Phase 1: loss") && md.contains("## Phase 2: dropout"), "{md}");
    assert_eq!(md.matches('★').count(), 1 + 2, "one best per phase (+1 in the legend):\n{md}");
    assert!(md.contains(&format!("| **{:03}** ★", winner.0)), "{md}");
    assert!(out.join("best.toml").is_file());

    // Second run: everything is skipped, nothing is retrained or rewritten.
    let before = mtimes(&out);
    assert_eq!(before.len(), 8);
    let o = derma_sweep(&args);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert_eq!(stdout.matches("skipping, already in results.csv").count(), 4, "{stdout}");
    assert!(stdout.contains("0 fold(s) trained, 0 reused") && !stdout.contains("epoch "), "{stdout}");
    assert_eq!(mtimes(&out), before);
    assert_eq!(std::fs::read_to_string(out.join("results.csv")).unwrap(), csv);

    // An interrupted trial: its row never written and its second fold unfinished.
    let without_4: String = csv.lines().filter(|l| !l.starts_with("4,")).map(|l| format!("{l}\n")).collect();
    std::fs::write(out.join("results.csv"), without_4).unwrap();
    let trial_4 = trial_folder(&out, 4);
    std::fs::remove_file(trial_4.join("fold-2/score.json")).unwrap();
    let o = derma_sweep(&args);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("trial 004 fold 1/2: reusing the finished fold"), "{stdout}");
    assert!(stdout.contains("1 fold(s) trained, 1 reused"), "{stdout}");
    let after = mtimes(&out);
    for (path, t) in &before {
        let retrained = *path == trial_4.join("fold-2/model.bpk");
        assert_eq!(after[path] != *t, retrained, "{}", path.display());
    }
    let r2 = rows(&std::fs::read_to_string(out.join("results.csv")).unwrap());
    assert_eq!(r2.len(), 4);
    assert_eq!(r2[3].4[0], r[3].4[0], "fold 1 of trial 4 reused as recorded");

    // A trial whose row is in results.csv but whose fold record holds another configuration
    // (what a binary rebuilt with another built-in default leaves; simulated by editing trial
    // 1's fold-1 record to another dropout) is not skipped: it trains again, reusing only the
    // fold whose record matches. Before, the row was reused by its parameters alone.
    let record_path = trial_folder(&out, 1).join("fold-1/score.json");
    let mut record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&record_path).unwrap()).unwrap();
    let config = record["config"].as_str().unwrap().to_string();
    let edited: String = config.lines().map(|l| if l.starts_with("dropout = ") { "dropout = 0.45\n".into() } else { format!("{l}\n") }).collect();
    assert_ne!(edited, config, "the record holds a dropout line");
    record["config"] = serde_json::Value::String(edited);
    std::fs::write(&record_path, serde_json::to_string_pretty(&record).unwrap()).unwrap();
    let o = derma_sweep(&args);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("trial 001 [loss] loss=\"ce\": in results.csv, but its fold records"), "{stdout}");
    assert_eq!(stdout.matches("training it again").count(), 1, "{stdout}");
    assert!(stdout.contains("trial 001 fold 2/2: reusing the finished fold") && stdout.contains("1 fold(s) trained, 1 reused"), "{stdout}");
    // The CPU backend retrains bit-identically (tests/cli.rs), so the ranking and every other
    // row stand: the other three trials are skipped.
    assert_eq!(stdout.matches("skipping, already in results.csv").count(), 3, "{stdout}");
    let r3 = rows(&std::fs::read_to_string(out.join("results.csv")).unwrap());
    assert_eq!(r3, r2);

    // A skipped trial's scores are read from the fold records that allowed the skip, not
    // from its row, which may hold another configuration's (a row written by a binary with
    // other defaults, or a kill between a retrained trial's last fold and its row; simulated
    // by rewriting trial 2's row). Before, the row's 0.123 was kept and ranked.
    let csv_now = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let stale: String = csv_now
        .lines()
        .map(|l| {
            if !l.starts_with("2,") {
                return format!("{l}\n");
            }
            let f: Vec<&str> = l.rsplitn(5, ',').collect(); // fold_2, fold_1, std, mean, head
            format!("{},0.123,{},0.123,{}\n", f[4], f[2], f[0])
        })
        .collect();
    assert_ne!(stale, csv_now);
    std::fs::write(out.join("results.csv"), stale).unwrap();
    let o = derma_sweep(&args);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert_eq!(stdout.matches("skipping, already in results.csv").count(), 4, "{stdout}");
    assert_eq!(std::fs::read_to_string(out.join("results.csv")).unwrap(), csv_now);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trial_folder(&out, 2).join("fold-1/score.json")).unwrap()).unwrap();
    assert_eq!(record["score_text"].as_str().unwrap().parse::<f64>().unwrap(), r3[1].4[0]);

    // The folder belongs to 2-fold AUC: other settings are refused before any work.
    let o = derma_sweep(&[&args[..], &["--folds", "3"]].concat());
    assert!(!o.status.success());
    let e = text(&o.stderr);
    assert!(e.contains("other settings") && e.contains("folds"), "{e}");

    // The data file regenerated at the same path (other images): the recorded scores were
    // made on other data, so resuming is refused, naming the cause.
    let arrays = MedMnistArrays { train: colour_split(4, 11), val: colour_split(2, 12), test: colour_split(1, 13) };
    medmnist::write_npz(&npz, &arrays).unwrap();
    std::fs::write(out.join("results.csv"), csv.lines().filter(|l| !l.starts_with("4,")).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let o = derma_sweep(&args);
    assert!(!o.status.success(), "resumed on changed data");
    let e = text(&o.stderr);
    assert!(e.contains("data of this sweep changed") && e.contains("folds.csv"), "{e}");
}

#[test]
fn shipped_plan_dry_run_lists_its_trials() {
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/sweeps/combined-loss.toml");
    let o = derma_sweep(&["--plan", plan.to_str().unwrap(), "--dry-run"]);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    let s = text(&o.stdout);
    assert!(s.contains("11 trials x 5 folds = 55 training runs"), "{s}");
    for want in [
        "trial 001: alpha=1.0;bce_weight=0.5;focal_weight=0.5;gamma=3.0",
        "trial 004: alpha=1.0;bce_weight=0.0;focal_weight=1.0;gamma=3.0",
        "phase 2: gamma (+ the winners of `weights`)",
        "trial 008: gamma=5.0",
        "trial 009: alpha=0.25",
        "trial 011: alpha=0.75",
        "loss=\"combined\"",
        "positive_classes=[\"mel\", \"bcc\", \"akiec\"]",
    ] {
        assert!(s.contains(want), "`{want}` missing:\n{s}");
    }
    // Overrides show, and a bad one is refused naming the flag.
    let o = derma_sweep(&["--plan", plan.to_str().unwrap(), "--dry-run", "--epochs", "2", "--metric", "sens@spec", "--folds", "3"]);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    let s = text(&o.stdout);
    assert!(s.contains("11 trials x 3 folds") && s.contains("metric sens@spec") && s.contains("overrides: epochs=2"), "{s}");
    let o = derma_sweep(&["--plan", plan.to_str().unwrap(), "--dry-run", "--metric", "rocauc"]);
    assert!(!o.status.success() && text(&o.stderr).contains("rocauc"), "{}", text(&o.stderr));
    // The plan file's refusal of `loss` holds for the flag too.
    let o = derma_sweep(&["--plan", plan.to_str().unwrap(), "--dry-run", "--metric", "loss"]);
    assert!(!o.status.success() && text(&o.stderr).contains("metric `loss`"), "{}", text(&o.stderr));
}

/// Image files with patient ids (`--dataset csv`): every fold of a real sweep keeps each
/// patient's images together — in one held-out fold, and in one part (train, inner
/// validation, held-out) of every fold.
#[test]
fn sweep_on_image_files_never_splits_a_patient() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Lcg(5);
    let mut csv = String::from("path,label,patient_id,split\n");
    let mut n_pool = 0;
    for p in 0..28 {
        let malignant = p % 5 < 2;
        let split = if p >= 24 { "test" } else if p % 4 == 3 { "val" } else { "train" };
        for j in 0..1 + rng.next(3) {
            let base = if malignant { 190.0 } else { 60.0 };
            let pixels: Vec<u8> = (0..28 * 28).map(|_| (base + rng.next(80) as f64 - 40.0) as u8).collect();
            let name = format!("p{p}-{j}.png");
            image::save_buffer(dir.path().join(&name), &pixels, 28, 28, image::ExtendedColorType::L8).unwrap();
            csv.push_str(&format!("{name},{},patient-{p},{split}\n", if malignant { "malignant" } else { "benign" }));
            n_pool += usize::from(split != "test");
        }
    }
    let manifest = dir.path().join("crops.csv");
    std::fs::write(&manifest, csv).unwrap();
    let plan_path = dir.path().join("files.toml");
    std::fs::write(
        &plan_path,
        format!(
            "folds = 3\n[base]\ndataset = \"csv\"\nmanifest = [\"{}\"]\nimage_size = 28\naugment = \"none\"\nwidth = 0.25\n\
             output_stride = 8\nepochs = 1\nbatch_size = 8\n[[phase]]\nname = \"base\"\ntrials = [{{}}]\n",
            manifest.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("sweep");
    let o = derma_sweep(&["--plan", plan_path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--backend", "cpu"]);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("3 folds, patient-grouped"), "{}", text(&o.stdout));
    assert!(std::fs::read_to_string(out.join("results.md")).unwrap().contains("3-fold patient-grouped stratified"));

    let folds = std::fs::read_to_string(out.join("folds.csv")).unwrap();
    assert!(folds.starts_with("fold,part,index,label,patient\n"));
    let mut part_of: HashMap<(String, String), HashSet<String>> = HashMap::new(); // (fold, patient) -> parts
    let mut held_out_fold: HashMap<String, HashSet<String>> = HashMap::new(); // patient -> folds holding it out
    let mut held_out_images = HashSet::new();
    let mut rows = 0;
    for line in folds.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (fold, part, index, patient) = (f[0], f[1], f[2], f[4]);
        assert!(patient.starts_with("patient-"), "{line}");
        part_of.entry((fold.into(), patient.into())).or_default().insert(part.into());
        if part == "test" {
            held_out_fold.entry(patient.into()).or_default().insert(fold.into());
            assert!(held_out_images.insert(index.to_string()), "image {index} held out twice");
        }
        rows += 1;
    }
    assert_eq!(rows, 3 * n_pool);
    assert_eq!(held_out_images.len(), n_pool);
    assert_eq!(held_out_fold.len(), 24, "every train+val patient is held out once");
    for (patient, folds) in &held_out_fold {
        assert_eq!(folds.len(), 1, "{patient} held out in folds {folds:?}");
    }
    for ((fold, patient), parts) in &part_of {
        assert_eq!(parts.len(), 1, "fold {fold}: {patient} is in {parts:?}");
    }
    // Each fold's run folder has splits.csv, as a plain run on image files: every image of the
    // fold's train / inner val / held-out parts with its file, in the part folds.csv gives its
    // patient (a file `pN-J.png` is patient-N's).
    let trial = trial_folder(&out, 1);
    for k in 1..=3 {
        let splits = std::fs::read_to_string(trial.join(format!("fold-{k}/splits.csv"))).unwrap();
        assert!(splits.starts_with("split,index,path,patient_id,label\n"), "{splits}");
        let mut n = 0;
        for line in splits.lines().skip(1) {
            let f = csv_fields(line);
            let (split, path, patient) = (&f[0], &f[2], &f[3]);
            let file = Path::new(path).file_name().unwrap().to_string_lossy().into_owned();
            assert!(file.starts_with(&format!("p{}-", patient.trim_start_matches("patient-"))), "fold {k}: {line}");
            assert_eq!(part_of[&(k.to_string(), patient.clone())], HashSet::from([split.clone()]), "fold {k}: {line}");
            n += 1;
        }
        assert_eq!(n, n_pool, "fold {k}: every pooled image once");
    }
}

/// A trial whose training diverges (lr 1e38: the weights overflow float32 and the loss is
/// NaN) scores NaN, is named in results.md and ranks last; the sweep goes on to the next
/// trial and a second run resumes past it instead of failing at the same fold again.
#[test]
fn a_diverging_trial_scores_nan_and_the_sweep_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("colours.npz");
    let arrays = MedMnistArrays { train: colour_split(4, 1), val: colour_split(2, 2), test: colour_split(1, 3) };
    medmnist::write_npz(&npz, &arrays).unwrap();
    let plan_path = dir.path().join("lr.toml");
    std::fs::write(
        &plan_path,
        format!(
            "folds = 2\nmetric = \"auc\"\n[base]\nnpz = \"{}\"\npositive_classes = [\"mel\"]\nwidth = 0.25\noutput_stride = 8\n\
             epochs = 2\nbatch_size = 8\nwarmup_epochs = 0.0\n[[phase]]\nname = \"lr\"\ntrials = [{{ lr = 1e38 }}, {{ lr = 0.003 }}]\n",
            npz.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("sweep");
    let args = ["--plan", plan_path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--backend", "cpu"];
    let o = derma_sweep(&args);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let r = rows(&csv);
    assert_eq!(r.len(), 2, "{csv}");
    assert!(r[0].3.is_nan() && r[0].4.iter().all(|s| s.is_nan()), "trial 1 (lr 1e38): {:?}", r[0]);
    assert!(r[1].3.is_finite(), "trial 2 (lr 0.003): {:?}", r[1]);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains(") fold 1: training diverged at epoch 1") && md.contains("Trial 001 (lr="), "{md}");
    assert!(md.contains("| **002** ★"), "the finite trial wins:\n{md}");
    let score: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(trial_folder(&out, 1).join("fold-2/score.json")).unwrap()).unwrap();
    assert!(score["diverged"].as_str().unwrap().contains("diverged"), "{score}");
    // Resumed: nothing trains again, the note stays.
    std::fs::write(out.join("results.csv"), csv.lines().filter(|l| !l.starts_with("1,")).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let o = derma_sweep(&args);
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("0 fold(s) trained, 2 reused"), "{}", text(&o.stdout));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains(") fold 2: training diverged at epoch 1"), "{md}");
    // Resumed with every row recorded: both trials are skipped, the notes still stay.
    let o = derma_sweep(&args);
    assert!(o.status.success() && text(&o.stdout).contains("2 skipped"), "{}", text(&o.stdout));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains(") fold 1: training diverged at epoch 1") && md.contains(") fold 2: training diverged"), "{md}");
}

/// Trials whose data keys differ (here `positive_classes`) load other data: their folds go to
/// folds-2.csv with a note in results.md. And a resumed sweep that stops early (here a trial
/// that cannot start: ImageNet weights offline, none cached) keeps every recorded row in
/// results.csv, also those it had not reached yet.
#[test]
fn other_data_gets_its_own_folds_and_an_interrupted_resume_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("colours.npz");
    let arrays = MedMnistArrays { train: colour_split(4, 1), val: colour_split(2, 2), test: colour_split(1, 3) };
    medmnist::write_npz(&npz, &arrays).unwrap();
    let plan_path = dir.path().join("data.toml");
    let write_plan = |trials: &str| {
        std::fs::write(
            &plan_path,
            format!(
                "folds = 2\nmetric = \"auc\"\n[base]\nnpz = \"{}\"\nwidth = 0.25\noutput_stride = 8\nepochs = 1\nbatch_size = 8\n\
                 lr = 0.003\n[[phase]]\nname = \"task\"\ntrials = [{trials}]\n",
                npz.display()
            ),
        )
        .unwrap()
    };
    write_plan("{ positive_classes = [\"mel\"] }, { positive_classes = [\"bcc\"] }");
    let out = dir.path().join("sweep");
    let torch_home = dir.path().join("torch-home");
    let sweep = || {
        Command::new(env!("CARGO_BIN_EXE_derma-sweep"))
            .args(["--plan", plan_path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--backend", "cpu"])
            .env("TORCH_HOME", &torch_home)
            .output()
            .unwrap()
    };
    let o = sweep();
    assert!(o.status.success(), "stderr:\n{}", text(&o.stderr));
    assert!(out.join("folds.csv").is_file() && out.join("folds-2.csv").is_file());
    let data: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("data.json")).unwrap()).unwrap();
    assert_eq!(data.as_object().unwrap().len(), 2, "{data}");
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("Trial 002 (positive_classes=[\"bcc\"]) loads other data than the sweep's first") && md.contains("folds-2.csv"), "{md}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(rows(&csv).len(), 2);
    // A resume with nothing to do rewrites results.md with the same note.
    let o = sweep();
    assert!(o.status.success() && text(&o.stdout).contains("skipping, already in results.csv"), "stderr:\n{}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(out.join("results.md")).unwrap(), md, "a no-op resume changed results.md");

    // The plan edited: a new trial first, then one that fails at its start, then the two
    // recorded ones. The new trial trains, the next one stops the sweep: the two recorded
    // rows must still be in results.csv.
    write_plan(
        "{ positive_classes = [\"akiec\"] }, { positive_classes = [\"df\"], pretrained = \"imagenet\", width = 1.0, offline = true }, \
         { positive_classes = [\"mel\"] }, { positive_classes = [\"bcc\"] }",
    );
    let o = sweep();
    assert!(!o.status.success(), "the offline ImageNet trial started");
    assert!(text(&o.stderr).contains("trial 002"), "{}", text(&o.stderr));
    let r = rows(&std::fs::read_to_string(out.join("results.csv")).unwrap());
    let params: Vec<&str> = r.iter().map(|x| x.2.as_str()).collect();
    assert_eq!(r.len(), 3, "{params:?}");
    for p in ["positive_classes=[\"akiec\"]", "positive_classes=[\"mel\"]", "positive_classes=[\"bcc\"]"] {
        assert!(params.contains(&p), "{p} lost: {params:?}");
    }
}
