//! Temperature and Platt scaling against scipy / scikit-learn.
//!
//! `tests/fixtures/recalibration.txt` is written by `scripts/reference_eval.py` (its own seed;
//! `python3 scripts/reference_eval.py` from the repository root regenerates it beside
//! `reference.txt`): binary logits with scikit-learn 1.9.1's Platt fit
//! (`sklearn.calibration._sigmoid_calibration`) and `log_loss` before and after it, and for
//! binary and multi-class logits the temperature scale `1/T` — the root of the NLL's derivative
//! by scipy's `brentq`, checked in the script against `minimize_scalar` — with the NLL after it;
//! and for K-class logits (and one binary logit) bias-corrected temperature scaling by scipy's
//! BFGS (the binary fit checked in the script against scikit-learn's unpenalised
//! `LogisticRegression`), with the NLL before and after it.

use derma_eval::{EvalError, LogitScaling, fit_bcts, fit_platt, fit_temperature};

const FIXTURE: &str = include_str!("fixtures/recalibration.txt");

/// One `platt` or `tempcase` block.
#[derive(Default, Debug)]
struct Block {
    kind: String,
    name: String,
    classes: usize,
    labels: Vec<usize>,
    logits: Vec<f64>,
    /// A `bcts` block's bias line (one value, or one per class).
    bias: Vec<f64>,
    values: Vec<(String, f64)>,
}

impl Block {
    fn value(&self, key: &str) -> f64 {
        self.values.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("{}: no `{key}`", self.name)).1
    }

    /// The logits as rows (one column for a `platt` block).
    fn rows(&self) -> Vec<Vec<f64>> {
        self.logits.chunks(self.classes.max(1)).map(<[f64]>::to_vec).collect()
    }
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    let mut b = Block::default();
    for line in FIXTURE.lines().filter(|l| !l.starts_with('#')) {
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "platt" | "tempcase" | "bcts" => b = Block { kind: key.into(), name: rest.into(), ..Block::default() },
            "classes" => b.classes = rest.parse().unwrap(),
            "labels" => b.labels = rest.split(' ').map(|v| v.parse().unwrap()).collect(),
            "logits" => b.logits = rest.split(' ').map(|v| v.parse().unwrap()).collect(),
            "bias" => b.bias = rest.split(' ').map(|v| v.parse().unwrap()).collect(),
            "end" => out.push(std::mem::take(&mut b)),
            _ => b.values.push((key.into(), rest.parse().unwrap())),
        }
    }
    out
}

fn close(got: f64, want: f64, rel: f64, what: &str) {
    assert!((got - want).abs() <= rel * want.abs().max(1.0), "{what}: got {got}, reference {want} (tolerance {rel} relative)");
}

#[test]
fn the_fixture_holds_its_binary_multiclass_and_bias_corrected_cases() {
    let b = blocks();
    assert_eq!(b.iter().filter(|b| b.kind == "platt").count(), 3);
    assert_eq!(b.iter().filter(|b| b.kind == "tempcase").count(), 2);
    assert_eq!(b.iter().filter(|b| b.kind == "bcts").count(), 3);
    for b in &b {
        assert_eq!(b.labels.len() * b.classes.max(1), b.logits.len(), "{}", b.name);
    }
}

#[test]
fn platt_scaling_matches_scikit_learn() {
    for b in blocks().iter().filter(|b| b.kind == "platt") {
        let positives: Vec<bool> = b.labels.iter().map(|&l| l == 1).collect();
        let r = fit_platt(&positives, &b.logits).unwrap();
        // scikit-learn stops its L-BFGS at a gradient of 1e-6 (on rescaled logits when
        // |z| ≥ 30); this fit solves the same convex problem to rounding, so the two agree to
        // about 1e-6, not to 1e-12.
        close(r.scaling.scale, b.value("slope"), 2e-6, &format!("{} slope", b.name));
        close(r.scaling.bias, b.value("intercept"), 2e-6, &format!("{} intercept", b.name));
        close(r.nll_before, b.value("nll_before"), 1e-12, &format!("{} NLL before", b.name));
        close(r.nll_after, b.value("nll_platt"), 1e-7, &format!("{} NLL after", b.name));
        assert!(!r.at_bound);
    }
}

#[test]
fn temperature_scaling_matches_scipy() {
    for b in blocks().into_iter().filter(|b| b.kind != "bcts") {
        let r = fit_temperature(&b.labels, &b.rows()).unwrap();
        close(r.scaling.scale, b.value("temperature_scale"), 1e-10, &format!("{} scale", b.name));
        assert_eq!(r.scaling.bias, 0.0);
        close(r.nll_after, b.value("nll_temperature"), 1e-12, &format!("{} NLL after", b.name));
        if b.kind == "tempcase" {
            close(r.nll_before, b.value("nll_before"), 1e-12, &format!("{} NLL before", b.name));
        }
        assert!(r.nll_after <= r.nll_before && !r.at_bound, "{}: {r:?}", b.name);
    }
}

#[test]
fn temperature_leaves_the_arg_max_and_platt_the_order() {
    let b = blocks();
    let seven = b.iter().find(|b| b.name == "seven-classes").unwrap();
    let r = fit_temperature(&seven.labels, &seven.rows()).unwrap();
    let top = |row: &[f64]| derma_eval::argmax(row).unwrap();
    for row in seven.rows() {
        assert_eq!(top(&r.scaling.apply(&row)), top(&row));
    }
    let shifted = b.iter().find(|b| b.name == "shifted-30pc").unwrap();
    let positives: Vec<bool> = shifted.labels.iter().map(|&l| l == 1).collect();
    let m = fit_platt(&positives, &shifted.logits).unwrap().scaling;
    let mapped: Vec<f64> = shifted.logits.iter().map(|&z| m.apply(&[z])[0]).collect();
    let auc = |s: &[f64]| derma_eval::roc_auc(&positives, s).unwrap();
    assert_eq!(auc(&mapped), auc(&shifted.logits));
    assert_ne!(m, LogitScaling::IDENTITY);
}

#[test]
fn a_platt_fit_of_one_class_is_an_error() {
    let b = blocks();
    let z = &b[0].logits;
    assert!(matches!(fit_platt(&vec![false; z.len()], z), Err(EvalError::OneClass { only: "negatives", .. })));
}

#[test]
fn bias_corrected_temperature_scaling_matches_scipy() {
    for b in blocks().iter().filter(|b| b.kind == "bcts") {
        let r = fit_bcts(&b.labels, &b.rows()).unwrap();
        // Both sides converge to a gradient of ~1e-12 on the same convex NLL; the parameters
        // agree to the conditioning of that optimum, the NLL to rounding.
        close(r.scaling.scale, b.value("scale"), 1e-7, &format!("{} scale", b.name));
        if b.classes == 1 {
            close(r.scaling.bias, b.bias[0], 1e-7, &format!("{} bias", b.name));
            assert!(r.scaling.class_bias.is_empty());
        } else {
            assert_eq!(r.scaling.class_bias.len(), b.classes, "{}", b.name);
            for (got, want) in r.scaling.class_bias.iter().zip(&b.bias) {
                close(*got, *want, 1e-7, &format!("{} class bias", b.name));
            }
            assert_eq!(r.scaling.bias, 0.0);
        }
        close(r.nll_before, b.value("nll_before"), 1e-12, &format!("{} NLL before", b.name));
        close(r.nll_after, b.value("nll_after"), 1e-12, &format!("{} NLL after", b.name));
        assert!(r.nll_after < r.nll_before && !r.at_bound, "{}: {r:?}", b.name);
    }
}

#[test]
fn bias_corrected_scaling_moves_the_prior_that_temperature_cannot() {
    // The shifted seven-class case: labels drawn with DermaMNIST's prior from logits that carry
    // none. One temperature barely helps; the class biases recover most of the NLL, and the
    // largest bias goes to the most frequent class (nv, class 5, 67 % of the labels).
    let b = blocks();
    let shifted = b.iter().find(|b| b.name == "seven-classes-shifted").unwrap();
    let t = fit_temperature(&shifted.labels, &shifted.rows()).unwrap();
    let c = fit_bcts(&shifted.labels, &shifted.rows()).unwrap();
    assert!(c.nll_after < t.nll_after - 0.3, "temperature {} bias-corrected {}", t.nll_after, c.nll_after);
    assert_eq!(derma_eval::argmax(&c.scaling.class_bias), Ok(5));
    assert!(c.scaling.class_bias.iter().sum::<f64>().abs() < 1e-12);
}

#[test]
fn a_bias_corrected_fit_needs_every_class() {
    let rows = vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0], vec![0.5, 0.2, 0.0]];
    let e = fit_bcts(&[0, 1, 0], &rows).unwrap_err();
    assert_eq!(e, EvalError::NoSampleOfClass { class: 2, classes: 3, what: "bias-corrected temperature scaling" });
    assert!(e.to_string().contains("class 2 (of 3) has no sample"), "{e}");
    assert!(matches!(fit_bcts(&[1, 1], &[vec![1.0], vec![2.0]]), Err(EvalError::SingleClass { .. })));
    // Perfectly separated: no finite optimum; the fit says so instead of returning a map.
    let r = fit_bcts(&[0, 1, 0, 1], &[vec![-1.0], vec![1.0], vec![-2.0], vec![2.0]]).unwrap();
    assert!(r.at_bound, "{r:?}");
}
