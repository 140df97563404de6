//! Losses against PyTorch / torchvision. Every expected value is read from
//! `tests/fixtures/torch_reference.json`, written by `scripts/reference_torch.py` (torch 2.11,
//! torchvision 0.26; the per-sample, weighted one-vs-rest and scalar-α keys torch 2.15,
//! torchvision 0.29): `F.cross_entropy(weight=...)`, `F.binary_cross_entropy_with_logits`,
//! `torchvision.ops.sigmoid_focal_loss`, and a reference softmax focal loss
//! (`-alpha_y (1-p_y)^gamma log p_y`, see the script); per-class α lists on the sigmoid losses
//! as `sigmoid_focal_loss(alpha=-1, reduction="none") * alpha[y]`.

use burn::prelude::*;
use derma_train::{Alpha, LossConfig, LossKind};
use serde_json::Value;

fn reference() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/torch_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("run scripts/reference_torch.py")).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().flat_map(|x| match x.as_array() {
        Some(row) => row.iter().map(|y| y.as_f64().unwrap() as f32).collect::<Vec<_>>(),
        None => vec![x.as_f64().unwrap() as f32],
    }).collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn multiclass(r: &Value, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let m = &r["multiclass"];
    let x = floats(&m["logits"]);
    let t: Vec<i64> = m["targets"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    let n = t.len();
    (
        Tensor::from_data(TensorData::new(x, [n, 4]), device),
        Tensor::from_data(TensorData::new(t, [n]), device),
    )
}

fn binary(r: &Value, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let b = &r["binary"];
    let x = floats(&b["logits"]);
    let t: Vec<i64> = f64s(&b["targets"]).iter().map(|&v| v as i64).collect();
    let n = t.len();
    (Tensor::from_data(TensorData::new(x, [n, 1]), device), Tensor::from_data(TensorData::new(t, [n]), device))
}

fn config(kind: LossKind, gamma: f64, alpha: Option<Alpha>, weights: Option<Vec<f64>>) -> LossConfig {
    LossConfig { kind, gamma, alpha, class_weights: weights, bce_weight: 0.5, focal_weight: 0.5 }
}

fn value(loss: Tensor<1>) -> f64 {
    loss.into_scalar::<f32>() as f64
}

fn close(got: f64, want: f64, what: &str) {
    let tol = 2e-5 * want.abs().max(1.0);
    assert!((got - want).abs() <= tol, "{what}: got {got}, PyTorch {want}");
    assert!(got.is_finite(), "{what}: not finite");
}

#[test]
fn cross_entropy_plain_and_weighted_match_pytorch() {
    let r = reference();
    let d = Device::flex();
    let (x, t) = multiclass(&r, &d);
    let w = f64s(&r["multiclass"]["class_weights"]);
    close(value(config(LossKind::Ce, 0.0, None, None).init(&d).forward(x.clone(), t.clone())), r["multiclass"]["ce"].as_f64().unwrap(), "ce");
    close(value(config(LossKind::Ce, 0.0, None, Some(w)).init(&d).forward(x, t)), r["multiclass"]["ce_weighted"].as_f64().unwrap(), "weighted ce");
}

/// γ = 0 without α is cross-entropy: `F.cross_entropy` (plain and with `weight=w`).
#[test]
fn focal_with_gamma_zero_is_cross_entropy() {
    let r = reference();
    let d = Device::flex();
    let (x, t) = multiclass(&r, &d);
    let m = &r["multiclass"];
    let w = f64s(&m["class_weights"]);
    for (weights, key) in [(None, "ce"), (Some(w), "ce_weighted")] {
        let focal = value(config(LossKind::Focal, 0.0, None, weights).init(&d).forward(x.clone(), t.clone()));
        close(focal, m[key].as_f64().unwrap(), &format!("focal γ=0 vs {key}"));
    }
}

/// The per-sample terms `Loss::forward_per_sample` returns (what hard-example mining ranks
/// by), before class weights: `F.cross_entropy(reduction="none")`, the reference softmax focal
/// loss per sample, one-vs-rest `F.binary_cross_entropy_with_logits(reduction="none").mean(1)`
/// and the combined loss's per-sample terms; single logit, `reduction="none"`. With class
/// weights the per-sample terms stay unweighted while the mean is the weighted one.
#[test]
fn per_sample_losses_match_pytorch_without_reduction() {
    let r = reference();
    let d = Device::flex();
    let (x, t) = multiclass(&r, &d);
    let m = &r["multiclass"];
    let w = f64s(&m["class_weights"]);
    let per = |c: LossConfig, x: &Tensor<2>, t: &Tensor<1, Int>| -> (f64, Vec<f64>) {
        let (mean, l) = c.init(&d).forward_per_sample(x.clone(), t.clone());
        (value(mean), l.into_data().iter::<f32>().map(|v| v as f64).collect())
    };
    let cases = [
        (config(LossKind::Ce, 0.0, None, Some(w.clone())), "ce", "ce_weighted"),
        (config(LossKind::Focal, 2.0, None, None), "focal_g2", ""),
        (config(LossKind::Bce, 0.0, None, None), "bce_onehot", "bce_onehot"),
        (config(LossKind::Combined, 3.0, Some(Alpha::Scalar(1.0)), None), "combined_onehot_a1_g3", "combined_onehot_a1_g3"),
    ];
    for (c, key, mean_key) in cases {
        let want = f64s(&m["per_sample"][key]);
        let (mean, got) = per(c, &x, &t);
        assert_eq!(got.len(), 6, "{key}");
        assert_eq!(want.len(), 6, "{key}: the fixture's rows");
        for (i, (g, p)) in got.iter().zip(&want).enumerate() {
            close(*g, *p, &format!("{key} sample {i}"));
        }
        if !mean_key.is_empty() {
            close(mean, m[mean_key].as_f64().unwrap(), &format!("{key} mean"));
        }
    }
    let (x, t) = binary(&r, &d);
    let b = &r["binary"];
    for (c, key) in [
        (config(LossKind::Bce, 0.0, None, Some(f64s(&b["class_weights"]))), "bce"),
        (config(LossKind::Combined, 3.0, Some(Alpha::Scalar(1.0)), None), "combined_a1_g3"),
    ] {
        let want = f64s(&b["per_sample"][key]);
        let (_, got) = per(c, &x, &t);
        assert_eq!((got.len(), want.len()), (10, 10), "{key}");
        for (i, (g, p)) in got.iter().zip(&want).enumerate() {
            close(*g, *p, &format!("binary {key} sample {i}"));
        }
    }
}

/// One-vs-rest BCE and the combined loss with class weights: each sample's k terms weighed by
/// its class's weight, the mean over all terms —
/// `F.binary_cross_entropy_with_logits(x, onehot, weight=w[y][:, None])`.
#[test]
fn class_weighted_one_vs_rest_losses_match_pytorch() {
    let r = reference();
    let d = Device::flex();
    let (x, t) = multiclass(&r, &d);
    let m = &r["multiclass"];
    let w = f64s(&m["class_weights"]);
    let bce = config(LossKind::Bce, 0.0, None, Some(w.clone())).init(&d).forward(x.clone(), t.clone());
    close(value(bce), m["bce_onehot_weighted"].as_f64().unwrap(), "weighted one-hot bce");
    let combined = config(LossKind::Combined, 3.0, Some(Alpha::Scalar(1.0)), Some(w)).init(&d).forward(x, t);
    close(value(combined), m["combined_onehot_a1_g3_weighted"].as_f64().unwrap(), "weighted combined one-hot");
}

/// Softmax focal loss with a scalar α: over 4 classes a constant factor (`0.25 × focal`), over
/// 2 softmax logits α for class 1 and 1 − α for class 0 (torchvision's sigmoid convention).
#[test]
fn softmax_focal_with_a_scalar_alpha_matches_the_reference() {
    let r = reference();
    let d = Device::flex();
    let (x, t) = multiclass(&r, &d);
    let focal = config(LossKind::Focal, 2.0, Some(Alpha::Scalar(0.25)), None).init(&d).forward(x, t);
    close(value(focal), r["multiclass"]["focal_scalar_alpha_0.25_g2"].as_f64().unwrap(), "focal α=0.25 over 4 classes");
    let two = &r["two_class"];
    let x2 = floats(&two["logits"]);
    let t2: Vec<i64> = two["targets"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!((x2.len(), t2.len()), (12, 6));
    let x2 = Tensor::<2>::from_data(TensorData::new(x2, [6, 2]), &d);
    let t2 = Tensor::<1, Int>::from_data(TensorData::new(t2, [6]), &d);
    let focal = config(LossKind::Focal, 2.0, Some(Alpha::Scalar(0.25)), None).init(&d).forward(x2, t2);
    close(value(focal), two["focal_scalar_alpha_0.25_g2"].as_f64().unwrap(), "focal α=0.25 over 2 softmax logits");
}

#[test]
fn softmax_focal_matches_the_reference_for_several_gammas() {
    let r = reference();
    let d = Device::flex();
    let (x, t) = multiclass(&r, &d);
    let m = &r["multiclass"];
    let w = f64s(&m["class_weights"]);
    let a = f64s(&m["alpha_per_class"]);
    assert_eq!(m["focal"].as_object().unwrap().len(), 4, "the fixture's gammas 0, 1, 2, 5");
    for (g, expected) in m["focal"].as_object().unwrap() {
        let gamma: f64 = g.parse().unwrap();
        let plain = config(LossKind::Focal, gamma, None, None).init(&d).forward(x.clone(), t.clone());
        close(value(plain), expected["plain"].as_f64().unwrap(), &format!("focal γ={g}"));
        let alpha = config(LossKind::Focal, gamma, Some(Alpha::PerClass(a.clone())), None).init(&d).forward(x.clone(), t.clone());
        close(value(alpha), expected["alpha"].as_f64().unwrap(), &format!("focal γ={g} per-class α"));
        let weighted = config(LossKind::Focal, gamma, None, Some(w.clone())).init(&d).forward(x.clone(), t.clone());
        close(value(weighted), expected["weighted"].as_f64().unwrap(), &format!("focal γ={g} weighted"));
    }
}

/// Gradient of the γ=2 softmax focal loss: equal to PyTorch autograd, and to central finite
/// differences of our own forward pass.
#[test]
fn softmax_focal_gradient_matches_autograd_and_finite_differences() {
    let r = reference();
    let d = Device::flex().autodiff();
    let (x, t) = multiclass(&r, &d);
    let loss = config(LossKind::Focal, 2.0, None, None).init(&d);
    let x = x.require_grad();
    let grads = loss.forward(x.clone(), t.clone()).backward();
    let g: Vec<f32> = x.grad(&grads).unwrap().into_data().try_into_vec().unwrap();
    let torch = floats(&r["multiclass"]["focal_grad_gamma2"]);
    assert_eq!((g.len(), torch.len()), (24, 24));
    for (i, (a, b)) in g.iter().zip(&torch).enumerate() {
        assert!((a - b).abs() < 1e-5, "d loss / d x[{i}]: got {a}, autograd {b}");
    }
    // finite differences on the non-saturated rows (0, 1, 4, 5), in f32 with h = 1e-2
    let x0 = floats(&r["multiclass"]["logits"]);
    let plain = Device::flex();
    let f = |v: &[f32]| {
        let xt = Tensor::<2>::from_data(TensorData::new(v.to_vec(), [6, 4]), &plain);
        let tt = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 3, 0, 0, 2, 1], [6]), &plain);
        value(config(LossKind::Focal, 2.0, None, None).init(&plain).forward(xt, tt))
    };
    for row in [0, 1, 4, 5] {
        for col in 0..4 {
            let i = row * 4 + col;
            let h = 1e-2f32;
            let (mut up, mut down) = (x0.clone(), x0.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (f(&up) - f(&down)) / (2.0 * h as f64);
            assert!((fd - g[i] as f64).abs() < 2e-3, "x[{row},{col}]: finite difference {fd}, autodiff {}", g[i]);
        }
    }
}

#[test]
fn one_vs_rest_bce_and_combined_match_pytorch() {
    let r = reference();
    let d = Device::flex();
    let (x, t) = multiclass(&r, &d);
    let m = &r["multiclass"];
    close(value(config(LossKind::Bce, 0.0, None, None).init(&d).forward(x.clone(), t.clone())), m["bce_onehot"].as_f64().unwrap(), "one-hot bce");
    let combined = config(LossKind::Combined, 3.0, Some(Alpha::Scalar(1.0)), None).init(&d).forward(x.clone(), t.clone());
    close(value(combined), m["combined_onehot_a1_g3"].as_f64().unwrap(), "combined one-hot");
    // A per-class α list weighs each sample's k focal terms by α of its class (it was ignored).
    let alpha = Some(Alpha::PerClass(f64s(&m["alpha_per_class"])));
    let combined = config(LossKind::Combined, 2.0, alpha, None).init(&d).forward(x, t);
    close(value(combined), m["combined_onehot_alpha_list_g2"].as_f64().unwrap(), "combined one-hot, α list");
}

/// The loss of a split is the whole split's weighted mean, whatever the batches:
/// `F.cross_entropy(logits, targets, weight=w)` over all 6 rows, summed from batches of 4 and 2
/// with `Loss::forward_sums` (a mean of the two batch means would differ).
#[test]
fn split_loss_from_batches_equals_the_whole_split_loss() {
    let r = reference();
    let d = Device::flex();
    let (x, t) = multiclass(&r, &d);
    let w = f64s(&r["multiclass"]["class_weights"]);
    let loss = config(LossKind::Ce, 0.0, None, Some(w)).init(&d);
    let (mut num, mut den) = (0.0, 0.0);
    let mut batch_means = Vec::new();
    for range in [0..4, 4..6] {
        let (n, dn) = loss.forward_sums(x.clone().slice(range.clone()), t.clone().slice(range.clone()));
        num += value(n);
        den += value(dn);
        batch_means.push(value(loss.forward(x.clone().slice(range.clone()), t.clone().slice(range))));
    }
    let want = r["multiclass"]["ce_weighted"].as_f64().unwrap();
    close(num / den, want, "weighted ce from two batches");
    let naive = (batch_means[0] * 4.0 + batch_means[1] * 2.0) / 6.0;
    assert!((naive - want).abs() > 1e-3, "the batches do not tell the two reductions apart: {naive} vs {want}");

    // The training loop's epoch loss: each batch's mean (the gradient's loss) weighted by
    // `Loss::batch_weight` from the host labels, read once — the same split loss.
    let labels: Vec<usize> = t.clone().into_data().iter::<i64>().map(|v| v as usize).collect();
    let mut running = derma_train::step::RunningLoss::new(&d);
    for range in [0..4, 4..6] {
        let mean = loss.forward(x.clone().slice(range.clone()), t.clone().slice(range.clone()));
        running.add_weighted(mean, loss.batch_weight(&labels[range.clone()], 4), range.len());
    }
    close(running.mean(), want, "epoch loss from batch means and batch weights");
    // Without class weights (or with one logit) the weight is the batch size.
    let plain = config(LossKind::Ce, 0.0, None, None).init(&d);
    assert_eq!(plain.batch_weight(&labels[..4], 4), 4.0);
    assert_eq!(loss.batch_weight(&labels[..4], 1), 4.0);
}

#[test]
fn single_logit_bce_weighted_bce_and_combined_match_pytorch() {
    let r = reference();
    let d = Device::flex();
    let (x, t) = binary(&r, &d);
    let b = &r["binary"];
    close(value(config(LossKind::Bce, 0.0, None, None).init(&d).forward(x.clone(), t.clone())), b["bce"].as_f64().unwrap(), "bce");
    // `ce` on one logit is BCE too
    close(value(config(LossKind::Ce, 0.0, None, None).init(&d).forward(x.clone(), t.clone())), b["bce"].as_f64().unwrap(), "ce on one logit");
    let w = f64s(&b["class_weights"]);
    close(value(config(LossKind::Bce, 0.0, None, Some(w)).init(&d).forward(x.clone(), t.clone())), b["bce_weighted"].as_f64().unwrap(), "weighted bce");
    let combined = config(LossKind::Combined, 3.0, Some(Alpha::Scalar(1.0)), None).init(&d).forward(x.clone(), t.clone());
    close(value(combined), b["combined_a1_g3"].as_f64().unwrap(), "combined");
    // α as a list [α_neg, α_pos] (it was silently ignored by the sigmoid losses).
    let alpha = || Some(Alpha::PerClass(f64s(&b["alpha_list"])));
    let focal = config(LossKind::Focal, 2.0, alpha(), None).init(&d).forward(x.clone(), t.clone());
    close(value(focal), b["focal_alpha_list_g2"].as_f64().unwrap(), "sigmoid focal, α list");
    let combined = config(LossKind::Combined, 3.0, alpha(), None).init(&d).forward(x, t);
    close(value(combined), b["combined_alpha_list_g3"].as_f64().unwrap(), "combined, α list");
}

/// `torchvision.ops.sigmoid_focal_loss(reduction="mean")` for α ∈ {0.25, 0.75, -1 (off), 1}
/// and γ ∈ {0, 2, 3}, with logits of ±50 in the batch.
#[test]
fn sigmoid_focal_matches_torchvision_including_extreme_logits() {
    let r = reference();
    let d = Device::flex();
    let (x, t) = binary(&r, &d);
    assert_eq!(r["binary"]["sigmoid_focal"].as_array().unwrap().len(), 12, "4 alphas × 3 gammas");
    for case in r["binary"]["sigmoid_focal"].as_array().unwrap() {
        let (a, g) = (case["alpha"].as_f64().unwrap(), case["gamma"].as_f64().unwrap());
        let got = value(config(LossKind::Focal, g, Some(Alpha::Scalar(a)), None).init(&d).forward(x.clone(), t.clone()));
        close(got, case["loss"].as_f64().unwrap(), &format!("sigmoid focal α={a} γ={g}"));
    }
}

/// `LossConfig::validate` (the library path) accepts the focal α values the CLI accepts
/// (`--alpha` in `invalid_flags_are_refused_with_the_flag_name`, tests/cli.rs): a scalar ≤ 1
/// (negative: off), each per-class value in [0, 1], one value per class.
#[test]
fn loss_config_refuses_the_alpha_values_the_cli_refuses() {
    let check = |a: Alpha| config(LossKind::Focal, 2.0, Some(a), None).validate(2);
    assert_eq!(check(Alpha::PerClass(vec![0.25, 1.5])).unwrap_err(), "--alpha values must be in [0, 1], got [0.25, 1.5]");
    assert_eq!(check(Alpha::PerClass(vec![-0.1, 0.5])).unwrap_err(), "--alpha values must be in [0, 1], got [-0.1, 0.5]");
    assert_eq!(check(Alpha::Scalar(1.01)).unwrap_err(), "--alpha must be in [0, 1] (negative disables it), got 1.01");
    assert!(check(Alpha::Scalar(f64::NAN)).is_err());
    assert_eq!(check(Alpha::PerClass(vec![0.5; 3])).unwrap_err(), "--alpha lists 3 values but there are 2 classes");
    for ok in [Alpha::PerClass(vec![0.0, 1.0]), Alpha::Scalar(-1.0), Alpha::Scalar(0.75)] {
        check(ok.clone()).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
}

/// scikit-learn `compute_class_weight("balanced")` on the DermaMNIST-ham training counts.
#[test]
fn balanced_class_weights_match_scikit_learn() {
    let r = reference();
    let counts: Vec<usize> = f64s(&r["balanced_weights"]["counts"]).iter().map(|&c| c as usize).collect();
    let got = derma_data::balanced_class_weights(&counts).unwrap();
    assert_eq!((got.len(), f64s(&r["balanced_weights"]["weights"]).len()), (7, 7));
    for (g, w) in got.iter().zip(f64s(&r["balanced_weights"]["weights"])) {
        assert!((g - w).abs() < 1e-12, "{g} vs sklearn {w}");
    }
    assert!(derma_data::balanced_class_weights(&[3, 0, 2]).is_err());
}

/// Parameter counts of torchvision's mobilenet_v2 at several widths and class counts.
#[test]
fn parameter_counts_match_torchvision() {
    let r = reference();
    let d = Device::flex();
    assert_eq!(r["param_counts"].as_array().unwrap().len(), 18, "6 widths × 3 class counts");
    for case in r["param_counts"].as_array().unwrap() {
        let width = case["width"].as_f64().unwrap();
        let classes = case["classes"].as_u64().unwrap() as usize;
        let model = derma_model::MobileNetV2Config::new(classes).with_width(width).init(&d);
        assert_eq!(model.num_trainable_params() as u64, case["params"].as_u64().unwrap(), "width {width}, {classes} classes");
    }
}
