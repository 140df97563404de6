//! The prediction rule of a run, exactly as derma-train applied it when it wrote
//! `report.json`: arg-max of the class probabilities (the first class among ties, as
//! `numpy.argmax` and `derma_eval::argmax`), the arg-max of probability / class prior
//! (`--decision balanced`, `derma_eval::prior_corrected_argmax`), or for a binary task
//! `prob >= threshold` (a probability equal to the threshold is positive; `+inf` flags
//! nothing), derma-eval's convention.

use crate::run::Split;

/// How a probability row becomes a predicted class.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// The class of the largest probability (first among ties).
    Argmax,
    /// The class of the largest probability / prior (first among ties): report.json's
    /// `decision.prior`, the training split's class frequencies.
    Balanced(Vec<f64>),
    /// Binary: class 1 when the positive-class probability is `>=` the threshold.
    Threshold(f64),
}

impl Rule {
    /// The predicted class of one row (`probs`: the class probabilities, or the positive
    /// class probability alone for [`Rule::Threshold`]).
    pub fn predict(&self, probs: &[f64]) -> usize {
        match *self {
            Rule::Threshold(t) => usize::from(probs.first().is_some_and(|&p| p >= t)),
            // Rows are validated finite when read; a non-finite row (only possible in a
            // hand-built `Split`) falls back to class 0 instead of panicking.
            Rule::Argmax => derma_eval::argmax(probs).unwrap_or(0),
            // The prior is validated when report.json is read.
            Rule::Balanced(ref prior) => derma_eval::prior_corrected_argmax(probs, prior).unwrap_or(0),
        }
    }

    /// The predicted class of every row of `split`.
    pub fn predict_split(&self, split: &Split) -> Vec<usize> {
        split.probs.iter().map(|p| self.predict(p)).collect()
    }

    /// How much the model believes its prediction: the predicted class's probability
    /// (binary: the positive-class probability, the quantity the threshold is set on).
    pub fn confidence(&self, probs: &[f64]) -> f64 {
        match self {
            Rule::Threshold(_) => probs.first().copied().unwrap_or(f64::NAN),
            Rule::Argmax | Rule::Balanced(_) => probs.get(self.predict(probs)).copied().unwrap_or(f64::NAN),
        }
    }
}
