//! The crate's error type.
//!
//! Every function that reads user data (labels, predicted classes, scores, probabilities,
//! rule text) returns [`EvalError`] instead of panicking. Each message says what was wrong
//! and where (the sample index, the class, the text given), so that a user can act on it
//! without reading the source.

/// Shorthand for `Result<T, derma_eval::EvalError>`.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

/// What is wrong with the labels, predictions or threshold rule given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// There is no sample at all.
    #[error("no samples to evaluate: the labels are empty")]
    Empty,

    /// Labels and predictions differ in length.
    #[error("{labels} labels but {predictions} predictions: every sample needs exactly one of each")]
    LengthMismatch {
        /// Number of labels.
        labels: usize,
        /// Number of predictions (scores, predicted classes or probability rows).
        predictions: usize,
    },

    /// A score or probability is NaN or infinite.
    #[error(
        "the prediction at index {index} is {value}, not a finite number \
         (NaN scores usually mean that the model diverged)"
    )]
    NotFinite {
        /// Sample (row) index; for [`argmax`](crate::argmax), the position in the row.
        index: usize,
        /// The offending value.
        value: f64,
    },

    /// A threshold given to [`apply`](crate::apply) or [`BinaryCounts::at`](crate::BinaryCounts::at)
    /// is NaN.
    #[error("the threshold is NaN; use a number (or +inf to predict nothing positive)")]
    NanThreshold,

    /// The number of classes is zero, or a probability row is empty.
    #[error("the number of classes must be at least 1, got 0")]
    NoClasses,

    /// A label or predicted class is not below the number of classes.
    #[error("{what} {value} at sample {index} is not a class index: expected 0..{classes}")]
    BadClass {
        /// `"label"` or `"predicted class"`.
        what: &'static str,
        /// Sample index.
        index: usize,
        /// The offending value.
        value: usize,
        /// Number of classes.
        classes: usize,
    },

    /// A probability is outside [0, 1] (calibration compares probabilities with frequencies).
    #[error("the probability at row {index} is {value}, not a value in [0, 1]")]
    NotAProbability {
        /// Row index.
        index: usize,
        /// The offending value.
        value: f64,
    },

    /// Probability rows differ in length.
    #[error("probability row {index} has {len} columns but row 0 has {expected}: every row needs one column per class")]
    RaggedRows {
        /// Row index.
        index: usize,
        /// Length of that row.
        len: usize,
        /// Length of row 0.
        expected: usize,
    },

    /// A binary computation that needs both classes got labels of one class only.
    #[error("{what} needs both positives and negatives, but it has only {only} ({n} labels)")]
    OneClass {
        /// `"positives"` or `"negatives"`.
        only: &'static str,
        /// Number of labels.
        n: usize,
        /// What needed both, e.g. `"ROC AUC"`.
        what: &'static str,
    },

    /// An interval estimate got too few samples of a class to estimate a variance.
    #[error("{what} needs at least two positives and two negatives, got {positives} and {negatives}")]
    TooFew {
        /// What needed them, e.g. `"the AUC's DeLong interval"`.
        what: &'static str,
        /// Positives given.
        positives: usize,
        /// Negatives given.
        negatives: usize,
    },

    /// A bootstrap was asked for no resamples.
    #[error("a bootstrap needs at least one resample, got 0")]
    TooFewResamples,

    /// A multi-class computation that needs at least two classes got labels of one class only.
    #[error("{what} needs at least two classes in the labels, but all {n} labels are class {class}")]
    SingleClass {
        /// The only class present.
        class: usize,
        /// Number of labels.
        n: usize,
        /// What needed two, e.g. `"one-vs-rest ROC AUC"`.
        what: &'static str,
    },

    /// A class has no sample in the labels, so its one-vs-rest AUC is undefined.
    #[error(
        "class {class} (of {classes}) has no sample in the labels, so its one-vs-rest ROC AUC is \
         undefined and the macro average over all classes cannot be computed (the split is too \
         small or the class numbering does not match the probabilities)"
    )]
    ClassAbsent {
        /// The absent class.
        class: usize,
        /// Number of classes.
        classes: usize,
    },

    /// A class prior (the prior-corrected decision) that is not one positive frequency per
    /// class.
    #[error("the class prior {prior:?} does not fit these rows of {classes} probabilities: expected one positive, finite frequency per class")]
    BadPrior {
        /// The prior given.
        prior: Vec<f64>,
        /// Columns of the rows.
        classes: usize,
    },

    /// A fit with a parameter per class got labels without one of the classes.
    #[error(
        "{what} fits a bias for every class, but class {class} (of {classes}) has no sample in the labels: \
         its bias would have no finite optimum (the split is too small for this map)"
    )]
    NoSampleOfClass {
        /// The absent class.
        class: usize,
        /// Number of classes.
        classes: usize,
        /// What needed every class, e.g. `"bias-corrected temperature scaling"`.
        what: &'static str,
    },

    /// A recalibration (Platt scaling, bias-corrected temperature scaling) found that the logits
    /// do not rank the labels' classes above the others.
    #[error(
        "the fitted slope of the logits is {slope}, not positive: these logits do not rank the labels' classes \
         above the others, and a map with that slope would reverse or erase their order"
    )]
    NotRanking {
        /// The fitted slope.
        slope: f64,
    },

    /// A threshold rule could not be parsed, or its value is out of range.
    #[error(
        "invalid threshold rule `{text}`: {reason}; accepted forms: min-spec:<s>, recall:<r>, \
         fixed:<t> (s, r, t in (0, 1]), fbeta:<beta> (beta > 0), youden"
    )]
    BadRule {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}
