//! Sampling: class frequencies of the weighted sampler, exact undersampling caps,
//! reproducibility.

use derma_data::{Sampler, class_counts};

/// 90 negatives, 10 positives.
fn labels() -> Vec<usize> {
    (0..100).map(|i| usize::from(i % 10 == 0)).collect()
}

#[test]
fn weighted_sampler_balances_classes_over_many_draws() {
    let labels = labels();
    let s = Sampler::Weighted { power: 1.0, samples_per_epoch: Some(100_000) };
    let idx = s.epoch_indices(&labels, 2, 7, 0);
    assert_eq!(idx.len(), 100_000);
    let pos = idx.iter().filter(|&&i| labels[i] == 1).count() as f64 / idx.len() as f64;
    // power 1: each class drawn with probability 1/2. 5σ of a binomial(1e5, 0.5) is 0.0079.
    assert!((pos - 0.5).abs() < 0.008, "positive share {pos}");
}

#[test]
fn square_root_power_gives_the_intermediate_share() {
    let labels = labels();
    let s = Sampler::Weighted { power: 0.5, samples_per_epoch: Some(100_000) };
    let idx = s.epoch_indices(&labels, 2, 3, 1);
    let pos = idx.iter().filter(|&&i| labels[i] == 1).count() as f64 / idx.len() as f64;
    // share = 10·(1/10)^0.5 / (10·(1/10)^0.5 + 90·(1/90)^0.5) = √10 / (√10 + √90) = 0.25;
    // σ of a binomial(1e5, 0.25) share is √(0.25 · 0.75 / 1e5) = 0.00137: 0.007 is 5.1σ.
    assert!((pos - 0.25).abs() < 0.007, "positive share {pos}");
}

#[test]
fn default_samples_per_epoch_is_the_dataset_size_and_draws_are_seeded() {
    let labels = labels();
    let s = Sampler::Weighted { power: 1.0, samples_per_epoch: None };
    let a = s.epoch_indices(&labels, 2, 1, 4);
    assert_eq!(a.len(), 100);
    assert_eq!(a, s.epoch_indices(&labels, 2, 1, 4), "same seed and epoch, same draw");
    assert_ne!(a, s.epoch_indices(&labels, 2, 1, 5), "another epoch draws again");
}

#[test]
fn undersampling_caps_the_majority_exactly_and_redraws_each_epoch() {
    let labels = labels();
    let s = Sampler::Undersample { ratio: 2.0 };
    let e0 = s.epoch_indices(&labels, 2, 0, 0);
    assert_eq!(class_counts(&e0.iter().map(|&i| labels[i]).collect::<Vec<_>>(), 2), vec![20, 10]);
    let mut sorted = e0.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 30, "no duplicates");
    let e1 = s.epoch_indices(&labels, 2, 0, 1);
    let neg = |e: &[usize]| {
        let mut v: Vec<usize> = e.iter().copied().filter(|&i| labels[i] == 0).collect();
        v.sort();
        v
    };
    assert_ne!(neg(&e0), neg(&e1), "negatives are re-drawn every epoch");
}

#[test]
fn multiclass_undersampling_caps_each_class_at_ratio_times_the_smallest() {
    // classes of 50, 20, 5 → cap 1.5 × 5 = 7
    let labels: Vec<usize> = [vec![0; 50], vec![1; 20], vec![2; 5]].concat();
    let idx = Sampler::Undersample { ratio: 1.5 }.epoch_indices(&labels, 3, 9, 0);
    assert_eq!(class_counts(&idx.iter().map(|&i| labels[i]).collect::<Vec<_>>(), 3), vec![7, 7, 5]);
}

#[test]
fn a_decimal_ratio_caps_at_its_exact_product() {
    // In f64 1.4 * 45 = 62.99999999999999 (Python: `1.4*45`), but ⌊1.4 × 45⌋ = 63; likewise
    // 2.3 × 50 = 115 and 1.14 × 100 = 114.
    for (ratio, minority, cap) in [(1.4, 45, 63), (2.3, 50, 115), (1.14, 100, 114)] {
        let labels: Vec<usize> = [vec![0; 200], vec![1; minority]].concat();
        let s = Sampler::Undersample { ratio };
        let idx = s.epoch_indices(&labels, 2, 0, 0);
        assert_eq!(class_counts(&idx.iter().map(|&i| labels[i]).collect::<Vec<_>>(), 2), vec![cap, minority], "ratio {ratio}");
        assert_eq!(s.base_weights(&labels, 2).1, cap + minority, "ratio {ratio}");
    }
}

#[test]
fn shuffle_visits_every_image_once() {
    let labels = labels();
    let mut idx = Sampler::Shuffle.epoch_indices(&labels, 2, 0, 0);
    assert_ne!(idx, (0..100).collect::<Vec<_>>());
    idx.sort();
    assert_eq!(idx, (0..100).collect::<Vec<_>>());
}

#[test]
fn invalid_parameters_name_the_flag() {
    assert!(Sampler::Undersample { ratio: 0.5 }.validate().unwrap_err().contains("--undersample-ratio"));
    assert!(Sampler::Weighted { power: -1.0, samples_per_epoch: None }.validate().unwrap_err().contains("--sampler-power"));
    assert!(Sampler::Weighted { power: 1.0, samples_per_epoch: Some(0) }.validate().unwrap_err().contains("--samples-per-epoch"));
}
