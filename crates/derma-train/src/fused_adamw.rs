//! AdamW whose update of one parameter tensor is one operation: on the GPU one CubeCL kernel
//! that reads the parameter, its gradient and both moments and writes the three new tensors.
//!
//! Burn 0.22's `AdamW` writes the update as ~15 tensor operations per parameter tensor (the two
//! moments, their bias corrections, the square root, the decay, the step). Each is traced by
//! the calling thread, handed to burn-fusion's server thread and fused there, for each of
//! MobileNetV2's 158 parameter tensors: ~2,400 operations a step, the largest block of Burn's
//! per-operation host work in a training step (docs/performance.md, "Where a step's host time
//! goes"; on the H100 the 28-px step is bound by host work, not the GPU). Here each tensor's
//! update is one operation ([`AdamWUpdate::adamw_update`], a custom operation for burn-fusion),
//! one kernel launch as before.
//!
//! The arithmetic is Burn's, operation for operation (`burn-optim` 0.22.1 `adamw.rs`, without
//! AMSGrad and cautious weight decay, which derma-train does not use), and so is the state:
//! [`FusedAdamW`]'s state is Burn's `AdamWState`, so its records (checkpoints) are AdamW's. On
//! the CPU backend the update is Burn's tensor operations themselves ([`composed_update`]).

use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, backend_extension};
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer};
use burn::prelude::*;

/// The scalars of one AdamW update, as float32 (what Burn's scalar operations on float32
/// tensors use).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdateCoefficients {
    /// β₁ and 1 − β₁.
    pub beta_1: f32,
    pub factor_1: f32,
    /// β₂ and 1 − β₂.
    pub beta_2: f32,
    pub factor_2: f32,
    /// The bias corrections 1 − β₁ᵗ and 1 − β₂ᵗ.
    pub correction_1: f32,
    pub correction_2: f32,
    /// ε, added to the corrected second moment's square root.
    pub epsilon: f32,
    /// The decoupled weight decay's factor, 1 − lr · weight decay (exactly 1 without decay).
    pub keep: f32,
    /// The learning rate.
    pub lr: f32,
}

impl UpdateCoefficients {
    /// The nine values in the order the kernels read them: β₁, 1 − β₁, β₂, 1 − β₂, the two
    /// bias corrections, ε, the decay factor, the learning rate.
    pub fn row(&self) -> [f32; 9] {
        [self.beta_1, self.factor_1, self.beta_2, self.factor_2, self.correction_1, self.correction_2, self.epsilon, self.keep, self.lr]
    }
}

/// One AdamW update of a parameter tensor.
#[backend_extension(
    Flex,
    Cube: cfg(feature = "wgpu"),
    Fusion: cfg(feature = "wgpu"),
    Autodiff
)]
pub trait AdamWUpdate: Backend {
    /// `(param', moment_1', moment_2')` from the parameter, its gradient and the moments (all
    /// of one shape; zero moments before the first step).
    #[fusion(meta = update_meta)]
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        coefficients: UpdateCoefficients,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        composed_update::<Self>(param, grad, moment_1, moment_2, coefficients)
    }

    /// [`Self::adamw_update`] for a step captured as a graph ([`StableCoefficients`]): on a
    /// backend with its kernel the coefficients are read on the device from row `row` of
    /// `table` (`[rows, 9]`, [`UpdateCoefficients::row`]'s order), so a replay uses the values
    /// written there before it, and the three results are written into the parameter's and the
    /// moments' own memory (returned as those tensors). Elsewhere `coefficients`, the host's
    /// copy of that row, and [`composed_update`].
    #[fusion(meta = stable_update_meta)]
    fn adamw_update_stable(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        table: FloatTensor<Self>,
        row: usize,
        coefficients: UpdateCoefficients,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let _ = (table, row);
        composed_update::<Self>(param, grad, moment_1, moment_2, coefficients)
    }
}

#[cfg(feature = "wgpu")]
use burn::backend::fusion::custom::TensorSpec;

/// Output metadata for burn-fusion: three tensors like the parameter.
#[cfg(feature = "wgpu")]
fn update_meta(
    param: &TensorSpec,
    _grad: &TensorSpec,
    _moment_1: &TensorSpec,
    _moment_2: &TensorSpec,
    _coefficients: &UpdateCoefficients,
) -> (TensorSpec, TensorSpec, TensorSpec) {
    (param.clone(), param.clone(), param.clone())
}

/// Output metadata of the stable update: three tensors like the parameter.
#[cfg(feature = "wgpu")]
fn stable_update_meta(
    param: &TensorSpec,
    _grad: &TensorSpec,
    _moment_1: &TensorSpec,
    _moment_2: &TensorSpec,
    _table: &TensorSpec,
    _row: &usize,
    _coefficients: &UpdateCoefficients,
) -> (TensorSpec, TensorSpec, TensorSpec) {
    (param.clone(), param.clone(), param.clone())
}

/// Burn's AdamW update as its tensor operations, in its order: m₁ = β₁m₁ + (1 − β₁)g,
/// m₂ = β₂m₂ + (1 − β₂)g², δ = (m₁ / c₁) / (sqrt(m₂ / c₂) + ε), param' = keep · param − lr · δ
/// (the multiplication by `keep` skipped when it is 1, as Burn skips a zero decay).
pub fn composed_update<B: Backend>(
    param: FloatTensor<B>,
    grad: FloatTensor<B>,
    moment_1: FloatTensor<B>,
    moment_2: FloatTensor<B>,
    k: UpdateCoefficients,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let moment_1 = B::float_add(B::float_mul_scalar(moment_1, k.beta_1.into()), B::float_mul_scalar(grad.clone(), k.factor_1.into()));
    let squared = B::float_powi_scalar(grad, 2.into());
    let moment_2 = B::float_add(B::float_mul_scalar(moment_2, k.beta_2.into()), B::float_mul_scalar(squared, k.factor_2.into()));
    let corrected_1 = B::float_div_scalar(moment_1.clone(), k.correction_1.into());
    let corrected_2 = B::float_div_scalar(moment_2.clone(), k.correction_2.into());
    let delta = B::float_div(corrected_1, B::float_add_scalar(B::float_sqrt(corrected_2), k.epsilon.into()));
    let decayed = if k.keep == 1.0 { param } else { B::float_mul_scalar(param, k.keep.into()) };
    (B::float_sub(decayed, B::float_mul_scalar(delta, k.lr.into())), moment_1, moment_2)
}

impl AdamWUpdate for burn::backend::Flex {}

/// Not differentiable (an optimiser step runs on detached tensors): the inner backend's
/// update, returned as constants.
impl<B: Backend + AdamWUpdate, C: CheckpointStrategy> AdamWUpdate for Autodiff<B, C> {
    fn adamw_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        coefficients: UpdateCoefficients,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (p, m1, m2) =
            B::adamw_update(param.into_primitive(), grad.into_primitive(), moment_1.into_primitive(), moment_2.into_primitive(), coefficients);
        (<FloatTensor<Self>>::new(p), <FloatTensor<Self>>::new(m1), <FloatTensor<Self>>::new(m2))
    }

    fn adamw_update_stable(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        table: FloatTensor<Self>,
        row: usize,
        coefficients: UpdateCoefficients,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (p, m1, m2) = B::adamw_update_stable(
            param.into_primitive(),
            grad.into_primitive(),
            moment_1.into_primitive(),
            moment_2.into_primitive(),
            table.into_primitive(),
            row,
            coefficients,
        );
        (<FloatTensor<Self>>::new(p), <FloatTensor<Self>>::new(m1), <FloatTensor<Self>>::new(m2))
    }
}

#[cfg(feature = "wgpu")]
mod cube {
    //! The update as one CubeCL kernel: one unit per value; inputs read through their strides
    //! unless dense, outputs contiguous.

    use super::{AdamWUpdate, UpdateCoefficients};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::wgpu::{CubeBackend, CubeTensor};
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::*;
    use derma_model::kernel::{elem, elementwise_grid, empty, offset_of as at, offset_of_mut as at_mut, supported};

    /// A moment moved toward `x`: `m · β + x · (1 − β)` (`factor` = 1 − β), in Burn's order.
    #[cube]
    fn moved<F: Float>(m: F, x: F, beta: F, factor: F) -> F {
        m * beta + x * factor
    }

    /// The step before the learning rate: `(m₁ / c₁) / (sqrt(m₂ / c₂) + ε)`.
    #[cube]
    fn direction<F: Float>(m1: F, m2: F, correction_1: F, correction_2: F, epsilon: F) -> F {
        (m1 / correction_1) / (F::sqrt(m2 / correction_2) + epsilon)
    }

    /// Burn's AdamW arithmetic on one value ([`super::composed_update`]).
    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    fn update_kernel<F: Float>(
        param: &Tensor<F>,
        grad: &Tensor<F>,
        moment_1: &Tensor<F>,
        moment_2: &Tensor<F>,
        new_param: &mut Tensor<F>,
        new_moment_1: &mut Tensor<F>,
        new_moment_2: &mut Tensor<F>,
        coefficients: Sequence<f32>,
        #[comptime] dense: [bool; 4],
        #[comptime] decay: bool,
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= new_param.len() {
            terminate!();
        }
        let g = grad[at::<F>(grad, i, dense[1])];
        let m1 = moved::<F>(moment_1[at::<F>(moment_1, i, dense[2])], g, F::cast_from(coefficients[0]), F::cast_from(coefficients[1]));
        let m2 = moved::<F>(moment_2[at::<F>(moment_2, i, dense[3])], g * g, F::cast_from(coefficients[2]), F::cast_from(coefficients[3]));
        let delta = direction::<F>(m1, m2, F::cast_from(coefficients[4]), F::cast_from(coefficients[5]), F::cast_from(coefficients[6]));
        let mut p = param[at::<F>(param, i, dense[0])];
        if decay {
            p *= F::cast_from(coefficients[7]);
        }
        new_param[i] = p - delta * F::cast_from(coefficients[8]);
        new_moment_1[i] = m1;
        new_moment_2[i] = m2;
    }

    /// [`update_kernel`] in place, the coefficients read from `table` from offset `scalars[0]`
    /// (`scalars[1]`: the number of values).
    #[cube(launch)]
    fn update_in_place_kernel<F: Float>(
        param: &mut Tensor<F>,
        grad: &Tensor<F>,
        moment_1: &mut Tensor<F>,
        moment_2: &mut Tensor<F>,
        table: &Tensor<F>,
        scalars: Sequence<usize>,
        #[comptime] dense: [bool; 4],
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= scalars[1] {
            terminate!();
        }
        let k = scalars[0];
        let g = grad[at::<F>(grad, i, dense[1])];
        let i1 = at_mut::<F>(moment_1, i, dense[2]);
        let i2 = at_mut::<F>(moment_2, i, dense[3]);
        let m1 = moved::<F>(moment_1[i1], g, table[k], table[k + 1]);
        let m2 = moved::<F>(moment_2[i2], g * g, table[k + 2], table[k + 3]);
        let delta = direction::<F>(m1, m2, table[k + 4], table[k + 5], table[k + 6]);
        let ip = at_mut::<F>(param, i, dense[0]);
        // × 1 is exact, so the decay needs no switch here.
        param[ip] = param[ip] * table[k + 7] - delta * table[k + 8];
        moment_1[i1] = m1;
        moment_2[i2] = m2;
    }

    impl AdamWUpdate for CubeBackend {
        /// # Panics
        /// When a tensor is not float32 or is storage-tiled: a new tensor in place of the
        /// in-place write would leave a captured graph updating memory nothing reads.
        fn adamw_update_stable(
            param: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            moment_1: FloatTensor<Self>,
            moment_2: FloatTensor<Self>,
            table: FloatTensor<Self>,
            row: usize,
            _coefficients: UpdateCoefficients,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            let written = [&param, &moment_1, &moment_2];
            assert!(
                supported(&[&param, &grad, &moment_1, &moment_2, &table]) && written.iter().all(|t| !t.meta.is_tiled()),
                "the in-place AdamW update takes float32 tensors in rows"
            );
            let [grad, table] = [grad, table].map(burn_cubecl::kernel::untile);
            assert!(table.is_contiguous(), "the AdamW coefficient table must be contiguous");
            let dense = [param.is_contiguous(), grad.is_contiguous(), moment_1.is_contiguous(), moment_2.is_contiguous()];
            let values = param.meta.shape().num_elements();
            let mut scalars = SequenceArg::new();
            scalars.push(row * 9);
            scalars.push(values);
            let (cubes, units) = elementwise_grid(&param, values);
            update_in_place_kernel::launch(
                &param.client.clone(),
                cubes,
                units,
                param.clone().into_tensor_arg(),
                grad.into_tensor_arg(),
                moment_1.clone().into_tensor_arg(),
                moment_2.clone().into_tensor_arg(),
                table.into_tensor_arg(),
                scalars,
                dense,
                elem(),
            );
            (param, moment_1, moment_2)
        }

        fn adamw_update(
            param: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            moment_1: FloatTensor<Self>,
            moment_2: FloatTensor<Self>,
            k: UpdateCoefficients,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
            if !supported(&[&param, &grad, &moment_1, &moment_2]) {
                return super::composed_update::<Self>(param, grad, moment_1, moment_2, k);
            }
            let inputs = [param, grad, moment_1, moment_2].map(burn_cubecl::kernel::untile);
            let dense = inputs.each_ref().map(CubeTensor::is_contiguous);
            let [param, grad, moment_1, moment_2] = inputs;
            let shape = param.meta.shape().clone();
            let outputs = [0; 3].map(|_| empty(&param, shape.clone()));
            let mut coefficients = SequenceArg::new();
            for v in k.row() {
                coefficients.push(v);
            }
            let values = shape.num_elements();
            let (cubes, units) = elementwise_grid(&param, values);
            update_kernel::launch(
                &param.client.clone(),
                cubes,
                units,
                param.into_tensor_arg(),
                grad.into_tensor_arg(),
                moment_1.into_tensor_arg(),
                moment_2.into_tensor_arg(),
                outputs[0].clone().into_tensor_arg(),
                outputs[1].clone().into_tensor_arg(),
                outputs[2].clone().into_tensor_arg(),
                coefficients,
                dense,
                k.keep != 1.0,
                elem(),
            );
            let [p, m1, m2] = outputs;
            (p, m1, m2)
        }
    }
}

/// AdamW (no AMSGrad, no cautious decay) with the update of each parameter tensor as one
/// [`AdamWUpdate`] operation; its state is Burn's `AdamWState`.
#[derive(Clone, Debug)]
pub struct FusedAdamW {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    /// With [`FusedAdamW::with_stable`]: the update in place, its coefficients from this table.
    stable: Option<StableCoefficients>,
}

/// The AdamW coefficients of a training step captured as a graph: a `[rows, 9]` table on the
/// device (one row per learning-rate group, [`UpdateCoefficients::row`]) that the captured
/// update kernels read, so each replay runs with the step's learning rate and bias corrections
/// written there before it ([`StableCoefficients::set`]), and the host's copy of the rows for
/// backends that run the update as tensor operations. Clones share the table.
#[derive(Clone, Debug)]
pub struct StableCoefficients {
    inner: std::sync::Arc<std::sync::Mutex<StableTable>>,
}

#[derive(Debug)]
struct StableTable {
    /// `[rows, 9]`, written in place ([`derma_model::assign`]).
    table: Tensor<2>,
    rows: Vec<UpdateCoefficients>,
    /// Per row, the step the row is for (1 for the first): the state's step count.
    times: Vec<usize>,
}

impl StableCoefficients {
    /// A table of `rows` rows (zeros until [`set`](Self::set)) on `device`, the device of the
    /// parameters the optimiser updates (without autodiff).
    pub fn new(rows: usize, device: &Device) -> Self {
        let table = StableTable { table: Tensor::zeros([rows, 9], device), rows: Vec::new(), times: Vec::new() };
        Self { inner: std::sync::Arc::new(std::sync::Mutex::new(table)) }
    }

    /// The coefficients, one per row, row `i` those of step `times[i]` (1 for the first: a
    /// group of parameters that started training later counts its own steps): written into the
    /// device table's memory (an upload and one copy, ordered before whatever is queued after
    /// this call); `times[i]` is what the parameters of row `i` record in their AdamW states as
    /// their step count.
    ///
    /// # Panics
    /// With a row or time count other than the table's.
    pub fn set(&self, rows: Vec<UpdateCoefficients>, times: Vec<usize>) {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let n = t.table.dims()[0];
        assert!(rows.len() == n && times.len() == n, "StableCoefficients::set: {} rows, {} times for a table of {n}", rows.len(), times.len());
        let values: Vec<f32> = rows.iter().flat_map(UpdateCoefficients::row).collect();
        let fresh = Tensor::<1>::from_floats(values.as_slice(), &t.table.device()).reshape([n, 9]);
        derma_model::assign(&mut t.table, fresh);
        t.rows = rows;
        t.times = times;
    }

    /// The table, the host's copy of row `row` and its step count.
    ///
    /// # Panics
    /// Before [`set`](Self::set), or for a row past the table.
    fn row(&self, row: usize) -> (Tensor<2>, UpdateCoefficients, usize) {
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let k = *t.rows.get(row).unwrap_or_else(|| panic!("AdamW coefficient row {row} not set ({} rows)", t.rows.len()));
        (t.table.clone(), k, t.times[row])
    }
}

impl FusedAdamW {
    /// β₁ 0.9, β₂ 0.999, ε 1e-5 (Burn's `AdamWConfig` defaults) and `weight_decay`.
    pub fn new(weight_decay: f32) -> Self {
        Self { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-5, weight_decay, stable: None }
    }

    /// ε of the update's denominator (PyTorch's `eps`, whose default is 1e-8).
    pub fn with_epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// The update for a captured step: each parameter and its moments written in their own
    /// memory ([`AdamWUpdate::adamw_update_stable`]), with the coefficients of `table`'s row
    /// given **as the learning rate** (0.0, 1.0, …: a [`burn::optim::lr_scheduler`] value per
    /// parameter picks its group's row, [`crate::captured_step`]); the bias corrections are the
    /// table's, and so is the step count the state records.
    pub fn with_stable(mut self, table: StableCoefficients) -> Self {
        self.stable = Some(table);
        self
    }

    /// As a [`ModuleOptimizer`] over every parameter of a module.
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }

    /// The scalars of step `time` (1 for the first) at learning rate `lr`, computed as Burn's
    /// AdamW computes them (in float32, the bias corrections with `powi`; the decay factor in
    /// float64, then float32).
    pub fn coefficients(&self, time: usize, lr: LearningRate) -> UpdateCoefficients {
        let decay_rate = lr * self.weight_decay as f64;
        UpdateCoefficients {
            beta_1: self.beta_1,
            factor_1: 1.0 - self.beta_1,
            beta_2: self.beta_2,
            factor_2: 1.0 - self.beta_2,
            correction_1: 1f32 - self.beta_1.powi(time as i32),
            correction_2: 1f32 - self.beta_2.powi(time as i32),
            epsilon: self.epsilon,
            keep: if decay_rate == 0.0 { 1.0 } else { (1.0 - decay_rate) as f32 },
            lr: lr as f32,
        }
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (moment_1, moment_2, mut time) = match state {
            Some(s) => (s.momentum.moment_1, s.momentum.moment_2, s.momentum.time + 1),
            None => (grad.zeros_like(), grad.zeros_like(), 1),
        };
        let (param, moment_1, moment_2) = match &self.stable {
            None => <Dispatch as AdamWUpdate>::adamw_update(
                tensor.into_dispatch(),
                grad.into_dispatch(),
                moment_1.into_dispatch(),
                moment_2.into_dispatch(),
                self.coefficients(time, lr),
            ),
            Some(stable) => {
                let row = lr as usize;
                let (table, k, step) = stable.row(row);
                time = step;
                <Dispatch as AdamWUpdate>::adamw_update_stable(
                    tensor.into_dispatch(),
                    grad.into_dispatch(),
                    moment_1.into_dispatch(),
                    moment_2.into_dispatch(),
                    table.into_dispatch(),
                    row,
                    k,
                )
            }
        };
        let momentum = AdaptiveMomentumState::new(time, Tensor::from_dispatch(moment_1), Tensor::from_dispatch(moment_2));
        (Tensor::from_dispatch(param), Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{AdamWConfig, GradientsParams};
    use burn::tensor::Distribution;

    /// `len` fixed values in [−0.8, 0.8] (no random draw: tests run in parallel and share the
    /// device's generator, so two calls of [`three_steps`] could otherwise start apart).
    fn fixed(len: usize, device: &Device) -> Tensor<1> {
        let values: Vec<f32> = (0..len).map(|i| ((i * 37 % 17) as f32 - 8.0) / 10.0).collect();
        Tensor::<1>::from_floats(values.as_slice(), device)
    }

    /// Three steps of a small linear layer (weight decay 0.1, lr 0.01) with `optim` on `device`
    /// from fixed weights and inputs, the inputs scaled by the step; the layer's weight and bias
    /// after them.
    fn three_steps(optim: ModuleOptimizer, device: &Device) -> (Tensor<2>, Tensor<1>) {
        three_scaled_steps(optim, 1.0, device)
    }

    /// [`three_steps`] with the loss `scale · Σ y²` (`scripts/reference_torch.py`, "AdamW").
    fn three_scaled_steps(mut optim: ModuleOptimizer, scale: f64, device: &Device) -> (Tensor<2>, Tensor<1>) {
        let mut layer: Linear = LinearConfig::new(5, 4).init(device);
        layer.weight = burn::module::Param::from_tensor(fixed(20, device).reshape([5, 4]));
        layer.bias = Some(burn::module::Param::from_tensor(fixed(4, device).mul_scalar(0.5)));
        let x = fixed(30, device).reshape([6, 5]);
        for step in 0..3 {
            let y = layer.forward(x.clone().mul_scalar(1.0 + step as f64));
            let loss = (y.clone() * y).sum();
            let loss = if scale == 1.0 { loss } else { loss.mul_scalar(scale) };
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            layer = optim.step(0.01, layer, grads);
        }
        let layer = layer.valid();
        (layer.weight.val(), layer.bias.unwrap().val())
    }

    /// Against `torch.optim.AdamW(lr=0.01, weight_decay=0.1, eps=ε)` (torch 2.15, CPU;
    /// `scripts/reference_torch.py`, "AdamW"), ε 1e-8 (PyTorch's default) and 1e-5 (Burn's), with
    /// gradients of ~10 and of ~1e-5 (loss scale 1e-6, where ε sets the step size: the two ε
    /// end 0.024 apart there). Within 1e-6 (measured: 1.5e-7; float32 on both sides, other
    /// operation orders).
    #[test]
    fn three_steps_match_pytorch_adamw_at_its_epsilon() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/torch_reference.json");
        let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let runs = reference["adamw"]["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 4);
        let device = Device::flex().autodiff();
        let floats = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<f32>>();
        let mut apart = 0f32;
        for run in runs {
            let (scale, eps) = (run["scale"].as_f64().unwrap(), run["eps"].as_f64().unwrap());
            let (w, b) = three_scaled_steps(FusedAdamW::new(0.1).with_epsilon(eps as f32).init(), scale, &device);
            let got: Vec<f32> = w.into_data().try_to_vec::<f32>().unwrap().into_iter().chain(b.into_data().try_to_vec::<f32>().unwrap()).collect();
            let want: Vec<f32> = floats(&run["weight"]).into_iter().chain(floats(&run["bias"])).collect();
            let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-6, "scale {scale} eps {eps}: {worst} off PyTorch");
            if scale != 1.0 {
                // How far the two ε's end apart: what this test tells apart.
                let other = runs.iter().find(|r| r["scale"] == run["scale"] && r["eps"] != run["eps"]).unwrap();
                let other: Vec<f32> = floats(&other["weight"]).into_iter().chain(floats(&other["bias"])).collect();
                apart = apart.max(want.iter().zip(&other).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max));
            }
        }
        assert!(apart > 0.01, "the references of the two ε should differ at the small loss scale: {apart}");
    }

    /// Against Burn 0.22's own `AdamW` (`AdamWConfig::new().with_weight_decay(0.1)`: β 0.9/0.999,
    /// ε 1e-5), three steps on the CPU: the same parameters to the bit (the same float32
    /// operations in the same order; the first step's zero moments add exactly 0).
    #[test]
    fn three_steps_equal_burns_adamw_on_the_cpu() {
        let device = Device::flex().autodiff();
        let (w1, b1) = three_steps(FusedAdamW::new(0.1).init(), &device);
        let (w2, b2) = three_steps(AdamWConfig::new().with_weight_decay(0.1).init(), &device);
        assert_eq!(w1.into_data(), w2.into_data());
        assert_eq!(b1.into_data(), b2.into_data());
    }

    /// The optimiser's record is Burn AdamW's: a record saved by one loads into the other and
    /// the next step agrees.
    #[test]
    fn records_are_burns_adamw_records() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let layer: Linear = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::random([4, 3], Distribution::Normal(0.0, 1.0), &device);
        let step = |optim: &mut ModuleOptimizer, layer: Linear| {
            let grads = GradientsParams::from_grads(layer.forward(x.clone()).sum().backward(), &layer);
            optim.step(0.05, layer, grads)
        };
        let mut burns = AdamWConfig::new().init();
        let layer = step(&mut burns, layer);
        let mut fused = FusedAdamW::new(1e-4).init().load_record(burns.to_record());
        let a = step(&mut fused, layer.clone()).weight.val().into_data();
        let b = step(&mut burns, layer).weight.val().into_data();
        assert_eq!(a, b);
    }

    /// The coefficients as Burn computes them: lr 0.01, decay 0.1, step 2: 1 − 0.9² = 0.19,
    /// 1 − 0.999² = 0.001999, keep 1 − 0.001 = 0.999; no decay keeps exactly 1.
    #[test]
    fn coefficients_of_a_step() {
        let k = FusedAdamW::new(0.1).coefficients(2, 0.01);
        assert!((k.correction_1 - 0.19).abs() < 1e-7 && (k.correction_2 - 0.001999).abs() < 1e-7, "{k:?}");
        assert_eq!((k.keep, k.lr), (0.999, 0.01));
        assert_eq!(FusedAdamW::new(0.0).coefficients(1, 0.01).keep, 1.0);
    }

    /// The GPU kernel (wgpu; any adapter, e.g. Mesa's lavapipe) against Burn's `AdamW` on the
    /// same device, three steps: within 1e-6 relative (fused element-wise kernels on both
    /// sides, the same operations). Runs with `cargo test -p derma-train --lib fused_adamw`
    /// in a wgpu build (not in the CPU-only test build).
    #[cfg(feature = "wgpu")]
    #[test]
    fn gpu_kernel_matches_burns_adamw() {
        let device = Device::wgpu(Default::default()).autodiff();
        let (w1, b1) = three_steps(FusedAdamW::new(0.1).init(), &device);
        let (w2, b2) = three_steps(AdamWConfig::new().with_weight_decay(0.1).init(), &device);
        for (name, a, b) in [("weight", w1.flatten::<1>(0, 1), w2.flatten::<1>(0, 1)), ("bias", b1, b2)] {
            let scale = b.clone().abs().max().into_scalar::<f32>().max(1e-3);
            let d = (a - b).abs().max().into_scalar::<f32>() / scale;
            assert!(d < 1e-6, "{name} differs by {d} (relative)");
        }
    }
}
