//! In-memory labelled image sets.

use std::fmt;
use std::sync::Arc;

/// Which split a dataset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SplitName {
    /// Training split.
    Train,
    /// Validation split (model and threshold selection).
    Val,
    /// Test split (reported once, with the choices made on validation).
    Test,
}

impl fmt::Display for SplitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SplitName::Train => "train",
            SplitName::Val => "val",
            SplitName::Test => "test",
        })
    }
}

/// Images stored channels-last as `u8` (`[n, h, w, c]`), with one class label each.
///
/// Pixels are shared (`Arc`), so binary views and subsets are cheap.
#[derive(Debug, Clone)]
pub struct ImageDataset {
    pixels: Arc<Vec<u8>>,
    /// Position of each item's image in `pixels` (`pixels[i * h * w * c..]`).
    items: Vec<usize>,
    labels: Vec<usize>,
    height: usize,
    width: usize,
    channels: usize,
    class_names: Vec<String>,
}

impl ImageDataset {
    /// Wraps `[n, h, w, c]` pixels and `n` labels.
    ///
    /// Errors when the sizes disagree or a label is not below `class_names.len()`.
    pub fn new(
        pixels: Vec<u8>,
        labels: Vec<usize>,
        [height, width, channels]: [usize; 3],
        class_names: Vec<String>,
    ) -> Result<Self, String> {
        let n = labels.len();
        if pixels.len() != n * height * width * channels {
            return Err(format!(
                "{} pixels do not hold {n} images of {height}x{width}x{channels}",
                pixels.len()
            ));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, l)| **l >= class_names.len()) {
            return Err(format!(
                "label {l} of image {i} is not a class index (there are {} classes)",
                class_names.len()
            ));
        }
        Ok(Self {
            pixels: Arc::new(pixels),
            items: (0..n).collect(),
            labels,
            height,
            width,
            channels,
            class_names,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// `[height, width, channels]` of every image.
    pub fn image_shape(&self) -> [usize; 3] {
        [self.height, self.width, self.channels]
    }

    /// Class label of item `i`.
    pub fn label(&self, i: usize) -> usize {
        self.labels[i]
    }

    /// All labels, in item order.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Class names, indexed by label.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Pixels of item `i`, `[h, w, c]` channels-last.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.height * self.width * self.channels;
        let start = self.items[i] * size;
        &self.pixels[start..start + size]
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        crate::sampler::class_counts(&self.labels, self.num_classes())
    }

    /// A binary view: label 1 ("positive") for the given classes, 0 ("negative") otherwise.
    /// The class names become `[negative_name, positive_name]`.
    pub fn binary(&self, positives: &[usize], names: [String; 2]) -> Self {
        let labels = self
            .labels
            .iter()
            .map(|l| usize::from(positives.contains(l)))
            .collect();
        Self {
            labels,
            class_names: names.to_vec(),
            ..self.clone()
        }
    }

    /// The items at `indices` (in that order), sharing the pixels.
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            items: indices.iter().map(|&i| self.items[i]).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            ..self.clone()
        }
    }
}
