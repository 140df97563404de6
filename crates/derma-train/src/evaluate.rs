//! Model → probabilities on a split, and the metrics of those probabilities (through
//! `derma-eval`): multi-class accuracy, balanced accuracy, macro one-vs-rest AUC; for binary
//! tasks also the operating threshold chosen on validation and the screening metrics at it.

use burn::prelude::*;
use derma_data::{Augment, ImageDataset, Loader, LoaderConfig, Normalize};
use derma_eval::{BinaryMetrics, LogitScaling, Recalibration, ThresholdChoice, ThresholdRule};
use derma_model::MobileNetV2;

use crate::config::Calibrate;
use crate::loss::Loss;

/// Probabilities of every image of a split.
#[derive(Debug, Clone)]
pub struct Predictions {
    /// Dataset index of each row.
    pub indices: Vec<usize>,
    /// True class of each row.
    pub labels: Vec<usize>,
    /// Per row: class probabilities (`K ≥ 2`) or the positive-class probability (binary);
    /// after [`Predictions::recalibrated`], those of the mapped logits.
    pub probs: Vec<Vec<f64>>,
    /// Per row: the model's own logits (`K`, or 1 for binary), never recalibrated.
    pub logits: Vec<Vec<f32>>,
    /// Mean loss over the split.
    pub loss: f64,
}

impl Predictions {
    /// Whether this is a single-logit (binary) task.
    pub fn is_binary(&self) -> bool {
        self.probs.first().is_some_and(|p| p.len() == 1)
    }

    /// Positive-class probabilities of a binary task.
    pub fn scores(&self) -> Vec<f64> {
        self.probs.iter().map(|p| p[0]).collect()
    }

    /// Labels as booleans (binary task).
    pub fn positives(&self) -> Vec<bool> {
        self.labels.iter().map(|&l| l == 1).collect()
    }

    /// The same rows with the probabilities of the model's logits mapped by `scaling`
    /// (`--calibrate`); the loss stays the model's own.
    pub fn recalibrated(&self, scaling: &LogitScaling) -> Predictions {
        let probs = self.logits.iter().map(|row| probabilities_f64(&scaling.apply(&row.iter().map(|&z| z as f64).collect::<Vec<_>>()))).collect();
        Predictions { probs, ..self.clone() }
    }

    /// `--calibrate`: the logit map of `method` fitted to these (validation) rows' labels and
    /// raw logits ([`derma_eval::fit_temperature`], [`derma_eval::fit_platt`],
    /// [`derma_eval::fit_bcts`]); `None` for `none`.
    pub fn fit_recalibration(&self, method: Calibrate) -> anyhow::Result<Option<Recalibration>> {
        let logits: Vec<Vec<f64>> = self.logits.iter().map(|r| r.iter().map(|&z| z as f64).collect()).collect();
        Ok(match method {
            Calibrate::None => None,
            Calibrate::Temperature => Some(derma_eval::fit_temperature(&self.labels, &logits)?),
            Calibrate::Bcts => Some(derma_eval::fit_bcts(&self.labels, &logits)?),
            Calibrate::Platt if !self.is_binary() => {
                anyhow::bail!("Platt scaling fits a single (binary) logit; these rows have {}", self.logits.first().map_or(0, Vec::len))
            }
            Calibrate::Platt => {
                let single: Vec<f64> = logits.iter().map(|r| r[0]).collect();
                Some(derma_eval::fit_platt(&self.positives(), &single)?)
            }
        })
    }
}

/// Runs `model` (validation mode) over all of `dataset` with the evaluation transform; the
/// mean `loss` is computed when a loss is given (else NaN: unlabelled inputs).
pub fn predict(
    model: &MobileNetV2,
    dataset: &ImageDataset,
    size: usize,
    normalize: Normalize,
    batch_size: usize,
    loss: Option<&Loss>,
    device: &Device,
) -> Predictions {
    let loader = Loader::spawn(
        dataset,
        (0..dataset.len()).collect(),
        LoaderConfig {
            batch_size,
            prefetch: 2,
            augment: Augment::eval(size),
            normalize,
            seed: 0,
            epoch: 0,
        },
    );
    let mut out = Predictions { indices: Vec::new(), labels: Vec::new(), probs: Vec::new(), logits: Vec::new(), loss: 0.0 };
    // Σ numerator and Σ denominator of the split's loss (see `Loss::forward_sums`).
    let mut loss_sum = Tensor::<1>::zeros([1], device);
    let mut loss_den = Tensor::<1>::zeros([1], device);
    for mut batch in loader {
        let logits = model.forward(batch.take_images(device)); // [batch, k]
        let [_, k] = logits.dims();
        if let Some(loss) = loss {
            let (num, den) = loss.forward_sums(logits.clone(), batch.targets(device));
            loss_sum = loss_sum + num;
            loss_den = loss_den + den;
        }
        let flat: Vec<f32> = logits.into_data().try_into_vec::<f32>().expect("logits are f32");
        out.probs.extend(flat.chunks(k).map(probabilities));
        out.logits.extend(flat.chunks(k).map(<[f32]>::to_vec));
        out.labels.extend(batch.labels.iter().map(|&l| l as usize));
        out.indices.extend(batch.indices);
    }
    out.loss = match loss {
        Some(_) if !dataset.is_empty() => loss_sum.into_scalar::<f32>() as f64 / loss_den.into_scalar::<f32>() as f64,
        Some(_) => f64::NAN,
        None => f64::NAN,
    };
    out
}

/// The probabilities of one row of logits, in f64: the sigmoid of a single logit, else the
/// softmax. On the host in f64 because f32 rounds them coarsely — every logit above ~17 has
/// the f32 sigmoid 1.0 — and ranks that ties would blur are what AUC, average precision and
/// the screening thresholds are made of. Non-finite logits give NaN (a diverged model).
pub fn probabilities(logits: &[f32]) -> Vec<f64> {
    probabilities_f64(&logits.iter().map(|&x| x as f64).collect::<Vec<_>>())
}

/// [`probabilities`] of logits already in f64 (recalibrated ones).
pub fn probabilities_f64(logits: &[f64]) -> Vec<f64> {
    if let [x] = logits {
        let x = *x;
        let p = if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) };
        return vec![if x.is_finite() { p } else { f64::NAN }];
    }
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|&x| if x.is_finite() { (x - max).exp() } else { f64::NAN }).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// Metrics of one split.
#[derive(Debug, Clone)]
pub struct SplitMetrics {
    /// Mean loss.
    pub loss: f64,
    /// Accuracy (binary: at the operating threshold).
    pub accuracy: f64,
    /// Balanced accuracy (mean per-class recall).
    pub balanced_accuracy: f64,
    /// Macro one-vs-rest ROC AUC (binary: the ROC AUC).
    pub auc: f64,
    /// Predicted class per row.
    pub predicted: Vec<usize>,
    /// Binary tasks only.
    pub binary: Option<BinarySplit>,
}

/// Screening metrics of a binary split.
#[derive(Debug, Clone)]
pub struct BinarySplit {
    /// Average precision (PR AUC).
    pub ap: f64,
    /// Counts and rates at the operating threshold.
    pub at_threshold: BinaryMetrics,
}

/// Metrics of `pred`; `threshold` is the operating threshold of a binary task, `prior` a
/// multi-class task's class prior for the balanced decision (`--decision balanced`:
/// [`derma_eval::prior_corrected_argmax`]; `None`: the arg-max).
pub fn split_metrics(pred: &Predictions, threshold: f64, prior: Option<&[f64]>) -> anyhow::Result<SplitMetrics> {
    let k = if pred.is_binary() { 2 } else { pred.probs[0].len() };
    if pred.is_binary() {
        let scores = pred.scores();
        let positives = pred.positives();
        let predicted: Vec<usize> = scores.iter().map(|&s| usize::from(s >= threshold)).collect();
        let at = derma_eval::apply(threshold, &positives, &scores)?;
        Ok(SplitMetrics {
            loss: pred.loss,
            accuracy: derma_eval::accuracy(&pred.labels, &predicted)?,
            balanced_accuracy: derma_eval::balanced_accuracy(&pred.labels, &predicted, k)?,
            auc: derma_eval::roc_auc(&positives, &scores)?,
            predicted,
            binary: Some(BinarySplit { ap: derma_eval::average_precision(&positives, &scores)?, at_threshold: at }),
        })
    } else {
        let predicted: Vec<usize> = match prior {
            Some(prior) => pred.probs.iter().map(|p| derma_eval::prior_corrected_argmax(p, prior)).collect::<Result<_, _>>()?,
            None => pred.probs.iter().map(|p| argmax(p)).collect(),
        };
        Ok(SplitMetrics {
            loss: pred.loss,
            accuracy: derma_eval::accuracy(&pred.labels, &predicted)?,
            balanced_accuracy: derma_eval::balanced_accuracy(&pred.labels, &predicted, k)?,
            auc: derma_eval::macro_auc_ovr(&pred.labels, &pred.probs)?,
            predicted,
            binary: None,
        })
    }
}

/// Chooses the operating threshold of a binary task on validation predictions.
pub fn choose_threshold(rule: &ThresholdRule, val: &Predictions) -> anyhow::Result<ThresholdChoice> {
    Ok(derma_eval::select_threshold(rule, &val.positives(), &val.scores())?)
}

fn argmax(p: &[f64]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best })
        .0
}

#[cfg(test)]
mod tests {
    use super::probabilities;

    /// torch 2.11: `torch.sigmoid(torch.tensor([17.5, 18.0, -3.0], dtype=torch.float64))` and
    /// `torch.softmax(torch.tensor([[2.0, -1.0, 0.5, 3.25]], dtype=torch.float64), 1)`; in
    /// float32 both sigmoids are 1.0 (`torch.sigmoid(torch.tensor([17.5, 18.0]))`).
    #[test]
    fn probabilities_keep_the_ranking_f32_would_tie() {
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        let (neg, pos) = (probabilities(&[17.5])[0], probabilities(&[18.0])[0]);
        close(neg, 0.999999974890009);
        close(pos, 0.9999999847700205);
        close(probabilities(&[-3.0])[0], 0.04742587317756678);
        // A negative at logit 17.5 below a positive at 18: separable, AUC 1 (f32: a tie, 0.5).
        assert_eq!(derma_eval::roc_auc(&[false, true], &[neg, pos]).unwrap(), 1.0);
        let p = probabilities(&[2.0, -1.0, 0.5, 3.25]);
        for (got, want) in p.iter().zip([0.20994024280759502, 0.01045230922182769, 0.04684399999925892, 0.7327634479713183]) {
            close(*got, want);
        }
        assert!(probabilities(&[f32::NAN])[0].is_nan() && probabilities(&[1.0, f32::INFINITY]).iter().all(|p| p.is_nan()));
    }
}
