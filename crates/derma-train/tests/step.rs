//! One AdamW step with parameter groups and a frozen backbone, checked on the weights
//! themselves. AdamW's first update of a parameter with gradient g is
//! `lr · g / (|g| + ε)` (bias-corrected moments: m̂ = g, v̂ = g²), i.e. about `lr` in size
//! wherever |g| ≫ ε = 1e-5 (weight decay 0 here), so the median size of a tensor's update is
//! its learning rate (torch.optim.AdamW gives the same first step).

use burn::prelude::*;
use burn::tensor::Distribution;
use derma_model::{MobileNetV2, MobileNetV2Config};
use derma_train::LossConfig;
use derma_train::step::{AdamWSettings, TrainStep};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

/// The median size of the updates among the entries that moved (a feature channel that is 0
/// for every image gives its classifier weights no gradient).
fn median_abs_change(before: &[f32], after: &[f32]) -> f64 {
    let mut d: Vec<f64> = before.iter().zip(after).map(|(a, b)| (a - b).abs() as f64).filter(|&d| d > 0.0).collect();
    assert!(d.len() * 4 >= before.len(), "only {} of {} entries moved", d.len(), before.len());
    d.sort_by(f64::total_cmp);
    d[d.len() / 2]
}

/// Steps from the same initial model: the first with the backbone frozen if `frozen_first`,
/// the rest unfrozen. Returns (stem conv, classifier) weights before, after the first step and
/// at the end.
fn steps(backbone_lr_mult: f64, frozen_first: bool, n: usize) -> [(Vec<f32>, Vec<f32>); 3] {
    let device = Device::flex();
    let train = device.clone().autodiff();
    device.seed(7);
    let mut model: MobileNetV2 = MobileNetV2Config::new(3).with_width(0.25).with_output_stride(8).with_dropout(0.0).init(&train);
    let weights = |m: &MobileNetV2| (values(m.stem.conv.weight.val().inner()), values(m.classifier.weight.val().inner()));
    let before = weights(&model);
    let x = Tensor::<4>::random([6, 3, 32, 32], Distribution::Normal(0.0, 1.0), &train);
    let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 0, 1, 2], [6]), &train);
    let mut step = TrainStep::new(LossConfig::ce().init(&train), AdamWSettings::new(0.0), backbone_lr_mult);
    let mut first = None;
    for i in 0..n {
        model = model.set_backbone_frozen(frozen_first && i == 0);
        model = step.step(model, x.clone(), y.clone(), 1e-2).0;
        first.get_or_insert_with(|| weights(&model));
    }
    [before, first.unwrap(), weights(&model)]
}

fn one_step(backbone_lr_mult: f64) -> ((Vec<f32>, Vec<f32>), (Vec<f32>, Vec<f32>)) {
    let [(s0, h0), (s1, h1), _] = steps(backbone_lr_mult, false, 1);
    ((s0, s1), (h0, h1))
}

#[test]
fn the_backbone_learning_rate_is_its_multiple_of_the_classifiers() {
    let ((s0, s1), (h0, h1)) = one_step(0.1);
    let (stem, head) = (median_abs_change(&s0, &s1), median_abs_change(&h0, &h1));
    assert!((head - 1e-2).abs() < 2e-3, "classifier update {head}, lr 1e-2");
    assert!((stem - 1e-3).abs() < 2e-4, "stem update {stem}, lr 1e-2 x 0.1");
    // Without the multiplier both move by lr.
    let ((s0, s1), _) = one_step(1.0);
    assert!((median_abs_change(&s0, &s1) - 1e-2).abs() < 2e-3);
}

/// A frozen step leaves the backbone bit-identical (no weight decay, no update from stale
/// moments) while the classifier moves; after unfreezing, the stem's first update is AdamW's
/// *first* step (size lr): the frozen step left it no moments and no step count. (The size of
/// the frozen step's classifier update is not checked: a randomly initialised backbone with
/// running-statistics batch norms gives near-zero features, so |g| ≪ ε there.)
#[test]
fn a_frozen_backbone_does_not_move_and_starts_fresh_when_unfrozen() {
    let [(s0, h0), (s1, h1), (s2, _)] = steps(1.0, true, 2);
    assert_eq!(s0, s1, "a frozen stem changed (weight decay or a stale moment would move it)");
    assert_ne!(h0, h1, "the classifier did not move while the backbone was frozen");
    let stem = median_abs_change(&s1, &s2);
    assert!((stem - 1e-2).abs() < 2e-3, "the stem's first update after unfreezing is {stem}, not lr 1e-2");
}
