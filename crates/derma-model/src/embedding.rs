//! The metric-learning head: an embedding of MobileNetV2's globally pooled features,
//! `Linear(last_channel → dim)` followed by L2 normalisation, so embeddings lie on the unit
//! sphere and Euclidean distances are in `[0, 2]`.
//!
//! It is a separate module, not a field of [`MobileNetV2`](crate::MobileNetV2): the
//! network's torchvision key layout, its classifier path (pool → dropout → classifier) and
//! pretrained import are unchanged. The head reads the pooled features *before* the
//! classifier's dropout:
//!
//! ```ignore
//! let features = model.forward_features(images); // [batch, last_channel, h', w']
//! let logits = model.classify(features.clone());  // [batch, num_classes]
//! let embedding = head.forward(global_pool(features)); // [batch, dim], unit norm
//! ```

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// Configuration of [`Embedding`].
#[derive(Config, Debug)]
pub struct EmbeddingConfig {
    /// Input features: the network's `last_channel` (1280 at width ≤ 1).
    pub input: usize,
    /// Embedding dimension.
    #[config(default = 128)]
    pub dim: usize,
}

/// `Linear(input → dim)` + L2 normalisation.
#[derive(Module, Debug)]
pub struct Embedding {
    /// The projection (Burn's default initialisation, Kaiming-uniform as PyTorch's `Linear`).
    pub projection: Linear,
}

impl EmbeddingConfig {
    /// Checks the configuration, naming the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.input == 0 {
            return Err("embedding input must be at least 1".into());
        }
        if self.dim == 0 {
            return Err("embedding dim must be at least 1".into());
        }
        Ok(())
    }

    /// Builds the head.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> Embedding {
        if let Err(e) = self.validate() {
            panic!("invalid EmbeddingConfig: {e}");
        }
        Embedding { projection: LinearConfig::new(self.input, self.dim).init(device) }
    }
}

impl Embedding {
    /// `[batch, input]` pooled features → `[batch, dim]` unit-norm embeddings
    /// (`x / sqrt(‖x‖² + 1e-12)`).
    pub fn forward(&self, pooled: Tensor<2>) -> Tensor<2> {
        l2_normalize(self.projection.forward(pooled))
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.projection.weight.shape().dims::<2>()[1]
    }
}

/// Rows scaled to unit L2 norm: `x / sqrt(‖x‖² + 1e-12)` (the `1e-12` keeps the gradient
/// finite at 0).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).add_scalar(1e-12).sqrt(); // [batch, 1]
    x.div(norm)
}

/// Global average pooling: `[batch, c, h, w]` → `[batch, c]` (what
/// [`MobileNetV2::classify`](crate::MobileNetV2::classify) pools before its dropout).
pub fn global_pool(features: Tensor<4>) -> Tensor<2> {
    features.mean_dims(&[2, 3]).flatten::<2>(1, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_have_unit_norm_and_the_configured_dimension() {
        let device = Device::flex();
        let head = EmbeddingConfig::new(16).with_dim(5).init(&device);
        assert_eq!(head.dim(), 5);
        let x = Tensor::<2>::random([3, 16], burn::tensor::Distribution::Normal(0.0, 3.0), &device);
        let e = head.forward(x);
        assert_eq!(e.dims(), [3, 5]);
        let norms: Vec<f32> = e.powi_scalar(2).sum_dim(1).sqrt().into_data().try_into_vec::<f32>().unwrap();
        for n in norms {
            assert!((n - 1.0).abs() < 1e-5, "norm {n}");
        }
    }

    #[test]
    fn global_pool_is_the_spatial_mean() {
        let device = Device::flex();
        let f = Tensor::<4>::from_floats([[[[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [0.0, 4.0]]]], &device);
        let p: Vec<f32> = global_pool(f).into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(p, vec![3.0, 1.0]);
    }

    #[test]
    fn an_invalid_config_is_refused() {
        assert!(EmbeddingConfig::new(8).with_dim(0).validate().is_err());
        assert!(EmbeddingConfig::new(0).validate().is_err());
    }
}
