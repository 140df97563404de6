//! Online hard-negative mining (`--hard-negative-mining`): after each epoch, the training
//! images with the highest loss are drawn more often in the next epoch.
//!
//! **Which images compete.** Binary tasks (one sigmoid logit): the *negatives*, label 0 —
//! hard negatives are the benign images the model scores high, the source of false positives
//! at a screening threshold. Multi-class tasks have no single negative class, so every
//! training image is ranked by its own loss: this is *hard-example* mining over all classes
//! (for a class `c`, its hard negatives are among the other classes' high-loss images).
//!
//! **Where the losses come from.** From the training forward passes themselves: each step
//! returns its per-sample loss vector (the configured loss before class weights, see
//! [`Loss::forward_per_sample`](crate::loss::Loss::forward_per_sample)), detached and kept
//! on the device with the batch's indices ([`EpochLosses`]); they are concatenated and read
//! back **once per epoch**. Cost: no extra forward pass and no host sync per step, at the price
//! of losses measured in training mode (dropout, augmentation) by a model that moves during
//! the epoch. (An evaluation pass over the training set after each epoch would give cleaner
//! losses for about a third of an epoch's compute — the backward pass is the larger part —
//! and is not done.) An image drawn several times in the epoch gets the mean of its losses;
//! an image not drawn this epoch (weighted / undersampling draws) keeps the loss of the last
//! epoch that drew it; an image never drawn is not ranked.
//!
//! **The multiplier.** Among the `R` ranked competing images, the `round(fraction × R)` with
//! the highest loss (ties: lower index first) get multiplier `1 + strength`, every other image
//! `1`. The next epoch is then drawn with replacement with weights `base_i × multiplier_i`
//! ([`Sampler::epoch_indices_with_multipliers`](derma_data::Sampler::epoch_indices_with_multipliers)),
//! the base weights being those of `--sampler` (`none`: 1; `weighted`: `(1/n_c)^power`;
//! `undersample`: the class's keep probability), so a mined image is drawn `1 + strength`
//! times as often as an unmined image of the same base weight — "up to" `(1 + strength)×` its
//! unmined rate, since the renormalisation takes a little from everyone. The first epoch, and
//! any epoch where no image is up-weighted (`strength = 0`), uses the plain sampler.

use burn::prelude::*;

/// `--mining-fraction`, `--mining-strength`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MiningConfig {
    /// Top fraction of the competing images (by loss) that is up-weighted, in `(0, 1]`.
    pub fraction: f64,
    /// A mined image is drawn `1 + strength` times as often (`strength ≥ 0`).
    pub strength: f64,
}

/// Which training images compete for up-weighting: binary tasks the negatives (label 0),
/// multi-class tasks every image.
pub fn competing(labels: &[usize], binary: bool) -> Vec<bool> {
    labels.iter().map(|&l| !binary || l == 0).collect()
}

/// The per-sample losses of one epoch's training steps, kept on the device until
/// [`read`](Self::read).
#[derive(Default)]
pub struct EpochLosses {
    indices: Vec<usize>,
    losses: Vec<Tensor<1>>,
}

impl EpochLosses {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// One step's per-sample losses (`[batch]`, detached) of the images `indices`. No host
    /// sync.
    pub fn add(&mut self, indices: &[usize], per_sample: Tensor<1>) {
        assert_eq!(per_sample.dims()[0], indices.len(), "one loss per index");
        self.indices.extend_from_slice(indices);
        self.losses.push(per_sample);
    }

    /// The mean loss of each of the `n` training images this epoch (`None`: not drawn). Reads
    /// the losses back in one transfer.
    pub fn read(self, n: usize) -> Vec<Option<f64>> {
        let mut sum = vec![0.0f64; n];
        let mut count = vec![0usize; n];
        if !self.losses.is_empty() {
            let values: Vec<f32> = Tensor::cat(self.losses, 0)
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("losses are f32");
            for (&i, &l) in self.indices.iter().zip(&values) {
                sum[i] += l as f64;
                count[i] += 1;
            }
        }
        sum.into_iter().zip(count).map(|(s, c)| (c > 0).then(|| s / c as f64)).collect()
    }
}

/// The outcome of one mining round.
#[derive(Debug, Clone, PartialEq)]
pub struct Mined {
    /// One sampling multiplier per training image (1 or `1 + strength`).
    pub multipliers: Vec<f64>,
    /// Images with multiplier `1 + strength` (0 when `strength` is 0).
    pub up_weighted: usize,
    /// Competing images with a known loss.
    pub ranked: usize,
    /// Competing images.
    pub competing: usize,
    /// The lowest loss among the up-weighted images.
    pub threshold: Option<f64>,
}

impl Mined {
    /// Whether any image is up-weighted (else the plain sampler applies).
    pub fn is_active(&self) -> bool {
        self.up_weighted > 0
    }
}

/// Multipliers from known per-image `losses` (see the module docs): the top
/// `round(fraction × R)` of the `R` competing images with a known loss get `1 + strength`.
pub fn multipliers(losses: &[Option<f64>], competing: &[bool], config: &MiningConfig) -> Mined {
    assert_eq!(losses.len(), competing.len(), "one loss and one flag per image");
    let mut ranked: Vec<(usize, f64)> = losses
        .iter()
        .zip(competing)
        .enumerate()
        .filter_map(|(i, (l, &c))| if c { l.map(|l| (i, l)) } else { None })
        .collect();
    // highest loss first; ties by index (a NaN ranks as the highest loss)
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let top = if config.strength > 0.0 { (config.fraction * ranked.len() as f64).round() as usize } else { 0 };
    let top = top.min(ranked.len());
    let mut multipliers = vec![1.0; losses.len()];
    for &(i, _) in &ranked[..top] {
        multipliers[i] = 1.0 + config.strength;
    }
    Mined {
        multipliers,
        up_weighted: top,
        ranked: ranked.len(),
        competing: competing.iter().filter(|&&c| c).count(),
        threshold: top.checked_sub(1).map(|last| ranked[last].1),
    }
}

/// Mining state across epochs: the last known loss of every training image.
pub struct HardMining {
    config: MiningConfig,
    competing: Vec<bool>,
    last: Vec<Option<f64>>,
}

impl HardMining {
    /// For a training set with `labels`; `binary`: single-logit task (negatives compete).
    pub fn new(config: MiningConfig, labels: &[usize], binary: bool) -> Self {
        Self { config, competing: competing(labels, binary), last: vec![None; labels.len()] }
    }

    /// Folds in one epoch's losses (images not drawn keep their previous loss) and returns the
    /// multipliers of the next epoch.
    pub fn update(&mut self, epoch: Vec<Option<f64>>) -> Mined {
        assert_eq!(epoch.len(), self.last.len(), "one loss per training image");
        for (last, new) in self.last.iter_mut().zip(epoch) {
            if new.is_some() {
                *last = new;
            }
        }
        multipliers(&self.last, &self.competing, &self.config)
    }

    /// The last known loss of every training image (what a checkpoint keeps).
    pub fn losses(&self) -> &[Option<f64>] {
        &self.last
    }

    /// Restores the losses of a checkpoint and returns the multipliers they give (those of
    /// the epoch after the checkpoint). Errors if their number is not the training set's.
    pub fn restore(&mut self, losses: Vec<Option<f64>>) -> Result<Mined, String> {
        if losses.len() != self.last.len() {
            return Err(format!("the checkpoint holds {} mining losses for {} training images", losses.len(), self.last.len()));
        }
        self.last = losses;
        Ok(multipliers(&self.last, &self.competing, &self.config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undrawn_images_keep_their_last_loss() {
        let config = MiningConfig { fraction: 0.5, strength: 1.0 };
        let mut m = HardMining::new(config, &[0, 0, 0, 0], true);
        let first = m.update(vec![Some(4.0), Some(3.0), Some(1.0), None]);
        assert_eq!(first.ranked, 3);
        assert_eq!(first.multipliers, vec![2.0, 2.0, 1.0, 1.0]); // round(1.5) = 2
        // image 0 not drawn: keeps 4.0; image 3 now known with a low loss
        let second = m.update(vec![None, Some(0.5), Some(5.0), Some(0.1)]);
        assert_eq!(second.multipliers, vec![2.0, 1.0, 2.0, 1.0]);
        assert_eq!(second.threshold, Some(4.0));
    }

    #[test]
    fn epoch_losses_average_repeated_draws() {
        let device = Device::flex();
        let mut e = EpochLosses::new();
        e.add(&[2, 0], Tensor::<1>::from_floats([1.0, 3.0], &device));
        e.add(&[2], Tensor::<1>::from_floats([2.0], &device));
        assert_eq!(e.read(4), vec![Some(3.0), None, Some(1.5), None]);
        assert_eq!(EpochLosses::new().read(2), vec![None, None]);
    }
}
