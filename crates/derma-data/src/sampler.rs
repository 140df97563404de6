//! Which training images an epoch visits, and the class-frequency corrections built on class
//! counts.
//!
//! Every draw is seeded by `(seed, epoch)`, so a run is reproducible and each epoch differs.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// How the training indices of an epoch are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// Every image once, shuffled.
    Shuffle,
    /// With replacement, image `i` drawn with probability ∝ `(1 / n_{class(i)})^power`
    /// (PyTorch `WeightedRandomSampler(weights, num_samples, replacement=True)`); `power = 1`
    /// balances the classes, `0.5` is the square-root compromise.
    Weighted {
        /// Exponent on the inverse class frequency.
        power: f64,
        /// Draws per epoch (`None`: the training set size).
        samples_per_epoch: Option<usize>,
    },
    /// Every class capped at `ratio` × the smallest class count, a fresh random subset each
    /// epoch (binary: at most `ratio` negatives per positive).
    Undersample {
        /// Cap, as a multiple of the smallest class count (≥ 1).
        ratio: f64,
    },
}

/// Images per class (`labels` below `num_classes`).
pub fn class_counts(labels: &[usize], num_classes: usize) -> Vec<usize> {
    let mut counts = vec![0; num_classes];
    for &l in labels {
        counts[l] += 1;
    }
    counts
}

/// scikit-learn's `compute_class_weight("balanced")`: `n_samples / (n_classes * n_c)`.
///
/// Errors when a class has no sample (scikit-learn raises too).
pub fn balanced_class_weights(counts: &[usize]) -> Result<Vec<f64>, String> {
    let total: usize = counts.iter().sum();
    if let Some(c) = counts.iter().position(|&n| n == 0) {
        return Err(format!("class {c} has no training sample: balanced weights are undefined"));
    }
    Ok(counts
        .iter()
        .map(|&n| total as f64 / (counts.len() * n) as f64)
        .collect())
}

/// The RNG of one epoch.
fn epoch_rng(seed: u64, epoch: usize) -> StdRng {
    // splitmix-style mixing so nearby seeds/epochs give unrelated streams.
    let mut z = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

impl Sampler {
    /// Checks the parameters, naming the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Sampler::Shuffle => Ok(()),
            Sampler::Weighted { power, samples_per_epoch } => {
                if !(power.is_finite() && *power >= 0.0) {
                    return Err(format!("--sampler-power must be >= 0, got {power}"));
                }
                if *samples_per_epoch == Some(0) {
                    return Err("--samples-per-epoch must be at least 1".into());
                }
                Ok(())
            }
            Sampler::Undersample { ratio } => {
                if ratio.is_finite() && *ratio >= 1.0 {
                    Ok(())
                } else {
                    Err(format!("--undersample-ratio must be >= 1, got {ratio}"))
                }
            }
        }
    }

    /// Per-image draw weights of [`Sampler::Weighted`] (`(1 / n_c)^power`).
    pub fn sample_weights(labels: &[usize], num_classes: usize, power: f64) -> Vec<f64> {
        let counts = class_counts(labels, num_classes);
        labels
            .iter()
            .map(|&l| (1.0 / counts[l] as f64).powf(power))
            .collect()
    }

    /// The training indices of `epoch`, in visiting order.
    pub fn epoch_indices(
        &self,
        labels: &[usize],
        num_classes: usize,
        seed: u64,
        epoch: usize,
    ) -> Vec<usize> {
        let mut rng = epoch_rng(seed, epoch);
        match self {
            Sampler::Shuffle => {
                let mut idx: Vec<usize> = (0..labels.len()).collect();
                idx.shuffle(&mut rng);
                idx
            }
            Sampler::Weighted { power, samples_per_epoch } => {
                let weights = Self::sample_weights(labels, num_classes, *power);
                let mut cumulative = Vec::with_capacity(weights.len());
                let mut acc = 0.0;
                for w in weights {
                    acc += w;
                    cumulative.push(acc);
                }
                let n = samples_per_epoch.unwrap_or(labels.len());
                (0..n)
                    .map(|_| {
                        let u = rng.random::<f64>() * acc;
                        cumulative.partition_point(|&c| c <= u).min(labels.len() - 1)
                    })
                    .collect()
            }
            Sampler::Undersample { ratio } => {
                let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
                for (i, &l) in labels.iter().enumerate() {
                    by_class[l].push(i);
                }
                let smallest = by_class
                    .iter()
                    .map(Vec::len)
                    .filter(|&n| n > 0)
                    .min()
                    .unwrap_or(0);
                let cap = (ratio * smallest as f64).floor() as usize;
                let mut idx = Vec::new();
                for mut members in by_class {
                    members.shuffle(&mut rng);
                    members.truncate(cap);
                    idx.extend(members);
                }
                idx.shuffle(&mut rng);
                idx
            }
        }
    }
}
