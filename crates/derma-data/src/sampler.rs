//! Which training images an epoch visits, and the class-frequency corrections built on class
//! counts.
//!
//! Every draw is seeded by `(seed, epoch)`, so a run is reproducible and each epoch differs.
//!
//! **Per-image multipliers** (online hard-example mining, `--hard-negative-mining`): an epoch
//! can also be drawn *with replacement* from weights `base_i × multiplier_i`
//! ([`Sampler::epoch_indices_with_multipliers`], [`weighted_draw`]), where the base weights and
//! the number of draws come from the configured sampler ([`Sampler::base_weights`]):
//!
//! | sampler | base weight of image `i` | draws per epoch |
//! |---|---|---|
//! | `none` (shuffle) | 1 | the training set size |
//! | `weighted` | `(1 / n_{class(i)})^power` | `samples_per_epoch` (default: the set size) |
//! | `undersample` | `min(cap, n_c) / n_c`, the chance that undersampling keeps `i` (`cap = ⌊ratio · n_min⌋`) | `Σ_c min(cap, n_c)`, undersampling's epoch size |
//!
//! With every multiplier 1 the expected class mix and the epoch size are those of the
//! sampler alone; only `none` and `undersample` turn from draws without replacement into
//! draws with replacement.

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

/// Draws `n` indices in `0..weights.len()` with replacement, index `i` with probability
/// `weights[i] / Σ weights` (PyTorch `WeightedRandomSampler(weights, n, replacement=True)`),
/// seeded by `(seed, epoch)` like every sampler draw. A zero weight is never drawn.
///
/// # Panics
/// If a weight is negative or not finite, or all are zero (while `n > 0`).
pub fn weighted_draw(weights: &[f64], n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    draw_with(&mut epoch_rng(seed, epoch), weights, n)
}

fn draw_with(rng: &mut StdRng, weights: &[f64], n: usize) -> Vec<usize> {
    assert!(
        weights.iter().all(|w| w.is_finite() && *w >= 0.0),
        "weighted_draw: weights must be finite and >= 0"
    );
    let mut cumulative = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for &w in weights {
        acc += w;
        cumulative.push(acc);
    }
    if n == 0 {
        return Vec::new();
    }
    assert!(acc > 0.0, "weighted_draw: all weights are zero");
    // The last index with a positive weight: the guard against `u` rounding up to `acc`.
    let last = weights.iter().rposition(|&w| w > 0.0).unwrap_or(0);
    (0..n)
        .map(|_| {
            let u = rng.random::<f64>() * acc;
            cumulative.partition_point(|&c| c <= u).min(last)
        })
        .collect()
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
                draw_with(&mut rng, &weights, samples_per_epoch.unwrap_or(labels.len()))
            }
            Sampler::Undersample { ratio } => {
                let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
                for (i, &l) in labels.iter().enumerate() {
                    by_class[l].push(i);
                }
                let cap = undersample_cap(&by_class.iter().map(Vec::len).collect::<Vec<_>>(), *ratio);
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

    /// The with-replacement form of this sampler: per-image base weights and the number of
    /// draws per epoch (see the module docs' table). With all multipliers 1,
    /// [`epoch_indices_with_multipliers`](Self::epoch_indices_with_multipliers) draws the
    /// sampler's expected class mix and epoch size.
    pub fn base_weights(&self, labels: &[usize], num_classes: usize) -> (Vec<f64>, usize) {
        match self {
            Sampler::Shuffle => (vec![1.0; labels.len()], labels.len()),
            Sampler::Weighted { power, samples_per_epoch } => {
                (Self::sample_weights(labels, num_classes, *power), samples_per_epoch.unwrap_or(labels.len()))
            }
            Sampler::Undersample { ratio } => {
                let counts = class_counts(labels, num_classes);
                let cap = undersample_cap(&counts, *ratio);
                let weights = labels.iter().map(|&l| cap.min(counts[l]) as f64 / counts[l] as f64).collect();
                (weights, counts.iter().map(|&n| n.min(cap)).sum())
            }
        }
    }

    /// The training indices of `epoch` drawn with replacement from weights
    /// `base_i × multipliers[i]` ([`base_weights`](Self::base_weights)), seeded by
    /// `(seed, epoch)`: how hard-example mining up-weights images on top of any sampler.
    ///
    /// # Panics
    /// If `multipliers` is not one per label, or a multiplier is negative or not finite.
    pub fn epoch_indices_with_multipliers(
        &self,
        labels: &[usize],
        num_classes: usize,
        multipliers: &[f64],
        seed: u64,
        epoch: usize,
    ) -> Vec<usize> {
        assert_eq!(multipliers.len(), labels.len(), "one multiplier per training image");
        let (base, n) = self.base_weights(labels, num_classes);
        let weights: Vec<f64> = base.iter().zip(multipliers).map(|(b, m)| b * m).collect();
        weighted_draw(&weights, n, seed, epoch)
    }
}

/// Undersampling's per-class cap: `⌊ratio × smallest non-empty class⌋`, the product taken
/// with a relative tolerance of 1e-12 so that a decimal ratio lands on its integer (in f64,
/// `1.4 × 45` is 62.99999999999999).
fn undersample_cap(counts: &[usize], ratio: f64) -> usize {
    let smallest = counts.iter().copied().filter(|&n| n > 0).min().unwrap_or(0);
    (ratio * smallest as f64 * (1.0 + 1e-12)).floor() as usize
}
