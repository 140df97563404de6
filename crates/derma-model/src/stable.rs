//! Stable buffers: tensors whose new values are written into their own device memory, so that a
//! training step captured once as a graph (derma-train's `captured_step`) reads and writes the
//! same buffers at every replay.
//!
//! Burn's tensors are values: an operation returns a new tensor in new memory. A graph that
//! CubeCL captured replays its recorded kernels against the buffers of the capture, so
//! everything a step carries to the next one — the batch it reads, the parameters, AdamW's
//! moments, the batch norms' running statistics — must be written where the capture read it.
//! Two pieces do that:
//! - [`assign`] writes a tensor's values into another tensor's memory: one copy kernel on the
//!   CubeCL backend (a burn-fusion custom operation). On any other backend (Flex, the CPU) the
//!   target simply becomes the source: nothing is replayed there, and the result is the same.
//! - [`set_stable_buffers`]: while on (per thread), the models' training-mode batch norms
//!   write their moved running statistics into the running tensors through [`assign`]
//!   ([`crate::block`]) instead of replacing them.
//!
//! Every other tensor keeps the value semantics: a clone of a stable tensor (`x.clone()` shares
//! the memory) sees the values written into it later, so code that keeps a model across steps
//! in stable mode must copy it ([`detached_copy`]). So may a `TensorData` read from one: on
//! Mesa's lavapipe (host memory) a read shares the buffer, and a `TensorData` kept across an
//! [`assign`] into it showed the new values (the GPU test below compares copied-out values).

use std::cell::Cell;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, backend_extension};
use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::TensorData;

/// Writing one float tensor's values into another's memory.
#[backend_extension(
    Flex,
    Cube: cfg(feature = "wgpu"),
    Fusion: cfg(feature = "wgpu"),
    Autodiff
)]
pub trait AssignInPlace: Backend {
    /// `target` holding `source`'s values (same shape): on a backend with its kernel, `target`'s
    /// own memory rewritten; by default `source` itself.
    #[fusion(meta = assign_meta)]
    fn assign_into(target: FloatTensor<Self>, source: FloatTensor<Self>) -> FloatTensor<Self> {
        let _ = target;
        source
    }
}

#[cfg(feature = "wgpu")]
use burn::backend::fusion::custom::TensorSpec;

/// Output metadata for burn-fusion: the target.
#[cfg(feature = "wgpu")]
fn assign_meta(target: &TensorSpec, _source: &TensorSpec) -> TensorSpec {
    target.clone()
}

impl AssignInPlace for burn::backend::Flex {}

/// Not differentiable (parameters, statistics and inputs are written between or after the
/// differentiated computations): the inner backend's assignment, returned as a constant.
impl<B: Backend + AssignInPlace, C: CheckpointStrategy> AssignInPlace for Autodiff<B, C> {
    fn assign_into(target: FloatTensor<Self>, source: FloatTensor<Self>) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::assign_into(target.into_primitive(), source.into_primitive()))
    }
}

#[cfg(feature = "wgpu")]
mod cube {
    //! The copy kernel: one unit per value, both tensors read and written through their strides
    //! unless contiguous.

    use super::AssignInPlace;
    use crate::kernel::{elem, elementwise_grid, offset_of, offset_of_mut, supported};
    use burn::backend::tensor::FloatTensor;
    use burn::backend::wgpu::CubeBackend;
    use burn_cubecl::cubecl;
    use burn_cubecl::cubecl::prelude::*;

    /// `target[i] = source[i]` for the `count[0]` values.
    #[cube(launch)]
    fn assign_kernel<F: Float>(
        target: &mut Tensor<F>,
        source: &Tensor<F>,
        count: Sequence<usize>,
        #[comptime] dense: [bool; 2],
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= count[0] {
            terminate!();
        }
        let to = offset_of_mut::<F>(target, i, dense[0]);
        target[to] = source[offset_of::<F>(source, i, dense[1])];
    }

    impl AssignInPlace for CubeBackend {
        /// # Panics
        /// When the kernel cannot write `target` in place (not float32, or a storage-tiled
        /// layout): falling back to a new tensor would leave a captured graph reading the old
        /// memory, training silently on stale values.
        fn assign_into(target: FloatTensor<Self>, source: FloatTensor<Self>) -> FloatTensor<Self> {
            assert!(
                supported(&[&target, &source]) && !target.meta.is_tiled(),
                "assign: the in-place copy takes float32 tensors in rows (got {:?} ← {:?})",
                target.dtype,
                source.dtype
            );
            let source = burn_cubecl::kernel::untile(source);
            let dense = [target.is_contiguous(), source.is_contiguous()];
            let values = target.meta.shape().num_elements();
            let mut count = SequenceArg::new();
            count.push(values);
            let (cubes, units) = elementwise_grid(&target, values);
            assign_kernel::launch(
                &target.client.clone(),
                cubes,
                units,
                target.clone().into_tensor_arg(),
                source.into_tensor_arg(),
                count,
                dense,
                elem(),
            );
            target
        }
    }
}

/// Writes `source`'s values into `target` (same shape): into `target`'s own memory on the
/// CubeCL backend, so every holder of that memory — a clone of `target`, a captured graph —
/// sees them; elsewhere `target` becomes `source`. `source` may live on `target`'s device with
/// or without autodiff; the result has no autodiff history.
///
/// # Panics
/// When the shapes differ.
pub fn assign<const D: usize>(target: &mut Tensor<D>, source: Tensor<D>) {
    assert_eq!(target.dims(), source.dims(), "assign: the source's shape must be the target's");
    let device = target.device();
    let source = if device.is_autodiff() { source.detach().to_device(&device) } else { source.without_autodiff().to_device(&device) };
    let written = <Dispatch as AssignInPlace>::assign_into(target.clone().into_dispatch(), source.into_dispatch());
    let written = Tensor::from_dispatch(written);
    *target = if device.is_autodiff() { written } else { written.without_autodiff() };
}

/// Whether [`assign`] writes into the target's own memory on `device` (a CubeCL device, with or
/// without autodiff) rather than replacing the target.
pub fn writes_in_place(device: &Device) -> bool {
    #[cfg(feature = "wgpu")]
    {
        matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::Cube(_))
    }
    #[cfg(not(feature = "wgpu"))]
    {
        let _ = device;
        false
    }
}

/// A copy of `module` in new memory (every parameter and running statistic read back and
/// uploaded anew, gradient requirements kept): what must be kept of a model whose memory a
/// captured step goes on writing, e.g. the best epoch's weights. A clone would share it.
///
/// Burn 0.22's running statistics live in shared containers: a clone shares them, and a
/// [`ModuleMapper`] writes its result back into them, so mapping a clone alone would leave
/// the copy's batch norms updating the original's statistics. [`Module::valid`] gives each
/// statistic a container of its own first; on an autodiff device [`Module::train`] then
/// restores autodiff and which parameters train (`valid` keeps that).
pub fn detached_copy<M: Module>(module: M) -> M {
    struct Copy;
    impl ModuleMapper for Copy {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| {
                // The values copied out first: a read may share the tensor's memory (on lavapipe
                // it does), which a later in-place write would change.
                let data = t.to_data();
                let owned = TensorData::from_bytes_vec(data.as_bytes().to_vec(), t.shape(), t.dtype());
                let copy = Tensor::from_data(owned, &t.device());
                if t.is_require_grad() { copy.require_grad() } else { copy }
            })
        }
    }
    let autodiff = module.devices().iter().any(|d| d.is_autodiff());
    let copy = module.valid().map(&mut Copy);
    if autodiff { copy.train() } else { copy }
}

thread_local! {
    static STABLE_BUFFERS: Cell<bool> = const { Cell::new(false) };
}

/// Whether the training-mode batch norms of the models run on the calling thread write their
/// running statistics in place ([`assign`]) rather than replacing them: on for a captured
/// training step (graph replay), off by default.
pub fn set_stable_buffers(on: bool) {
    STABLE_BUFFERS.with(|s| s.set(on));
}

/// See [`set_stable_buffers`].
pub fn stable_buffers() -> bool {
    STABLE_BUFFERS.with(|s| s.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the CPU the target becomes the source (its values, its shape), also from an autodiff
    /// source; a shape mismatch panics rather than writing part of a tensor.
    #[test]
    fn assign_gives_the_target_the_sources_values() {
        let device = Device::flex();
        let mut target = Tensor::<2>::zeros([2, 3], &device);
        let source = Tensor::<2>::from_floats([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], &device.clone().autodiff());
        assign(&mut target, source);
        assert_eq!(target.to_data().try_to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(!target.device().is_autodiff());
        assert!(!writes_in_place(&device) && !writes_in_place(&device.clone().autodiff()));
        // A copy keeps the values and which parameters train.
        let layer = burn::nn::LinearConfig::new(2, 3).init(&device.clone().autodiff());
        let copy = detached_copy(layer.clone());
        assert_eq!(copy.weight.val().to_data(), layer.weight.val().to_data());
        assert!(copy.weight.val().is_require_grad() && copy.bias.as_ref().unwrap().val().is_require_grad());
        // A frozen parameter stays frozen, and the copy stays on the autodiff device.
        let frozen = detached_copy(layer.clone().no_grad());
        assert!(!frozen.weight.val().is_require_grad() && frozen.weight.val().device().is_autodiff());
        // A batch norm's running statistics are the copy's own: a training-mode forward of the
        // original leaves the copy's as they were (before, the copy shared the original's
        // containers, and the captured-step tests compared one running mean with itself).
        let autodiff = device.clone().autodiff();
        let bn = burn::nn::BatchNormConfig::new(3).init(&autodiff);
        let copy = detached_copy(bn.clone());
        let x = Tensor::<4>::from_floats([[[[1.0, 2.0]], [[3.0, 4.0]], [[5.0, 6.0]]]], &autodiff);
        let _ = bn.forward(x);
        let mean = |b: &burn::nn::BatchNorm| b.running_mean.value_sync().to_data().try_to_vec::<f32>().unwrap();
        // PyTorch's BatchNorm2d(3) (momentum 0.1) after one training forward of this input:
        // running_mean = 0.1 · [1.5, 3.5, 5.5].
        let moved = mean(&bn);
        assert!((moved[0] - 0.15).abs() < 1e-6 && (moved[2] - 0.55).abs() < 1e-6, "{moved:?}");
        assert_eq!(mean(&copy), [0.0; 3], "the copy's running mean moved with the original's");
        let wrong = std::panic::catch_unwind(|| assign(&mut Tensor::<1>::zeros([3], &Device::flex()), Tensor::<1>::zeros([4], &Device::flex())));
        assert!(wrong.is_err());
    }

    /// On wgpu (any adapter, e.g. lavapipe; not in the CPU test build) the copy lands in the
    /// target's own memory: a clone taken before sees it, including from a transposed (strided)
    /// source, and the flag is per thread.
    #[cfg(feature = "wgpu")]
    #[test]
    fn assign_writes_the_targets_memory_on_the_gpu() {
        let device = Device::wgpu(Default::default());
        let mut target = Tensor::<2>::zeros([2, 3], &device);
        let alias = target.clone();
        let source = Tensor::<2>::from_floats([[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]], &device).transpose();
        assign(&mut target, source);
        assert_eq!(alias.to_data().try_to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(target.to_data().try_to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(writes_in_place(&device) && writes_in_place(&device.clone().autodiff()));
        let copy = detached_copy(burn::nn::LinearConfig::new(2, 3).init(&device));
        let mut weight = copy.weight.val();
        let values = |t: Tensor<2>| t.to_data().try_to_vec::<f32>().unwrap();
        let before = values(weight.clone());
        let kept = detached_copy(copy.clone());
        assign(&mut weight, Tensor::zeros([2, 3], &device));
        assert_eq!(values(kept.weight.val()), before, "the copy shares the original's memory");
        assert_eq!(values(copy.weight.val()), [0.0; 6]);
        set_stable_buffers(true);
        assert!(stable_buffers());
        assert!(!std::thread::spawn(stable_buffers).join().unwrap());
        set_stable_buffers(false);
    }

    /// A launch queued behind a sealed graph reads its own shapes (wgpu; not in the CPU test
    /// build). CubeCL's wgpu runtime keeps each launch's metadata (shapes, strides, scalars) in a
    /// cached uniform, at most 512 entries, and a graph pins every entry its warm-up and
    /// recording touched; past 512, each new entry evicts the least recently used unpinned one
    /// at once. cubecl-wgpu 0.11.3 did not hold an entry a queued launch had reused until that
    /// launch was submitted: evicted in the same submission, its uniform went to a new entry
    /// whose `queue.write_buffer` runs at the submit, before the queued launch, which then read
    /// the other launch's shapes. Here the 8-value copy would run with a smaller copy's count
    /// and leave its tail at 0; in training it was the captured metric-head NaN
    /// (docs/performance.md, *Twenty-fifth session*). vendor/cubecl-wgpu holds the fix.
    #[cfg(feature = "wgpu")]
    #[test]
    fn a_launch_queued_behind_a_sealed_graph_reads_its_own_shapes() {
        let device = Device::wgpu(Default::default());
        let dispatch = device.as_dispatch();
        let host = |values: Vec<f32>, n: usize| Tensor::<1>::from_data(TensorData::new(values, [n]), &device);
        let read = |t: &Tensor<1>| t.to_data().try_to_vec::<f32>().unwrap();
        // The graph's warm-up: 600 copies of distinct lengths (from 100 on, so no shape below is
        // among them), whose 600 metadata entries the graph pins; then one recorded copy.
        Dispatch::graph_prepare(dispatch).expect("graph_prepare");
        let mut pinned: Vec<(Tensor<1>, Tensor<1>)> =
            (100..700).map(|n| (host(vec![0.0; n], n), host(vec![1.0; n], n))).collect();
        for (target, source) in pinned.iter_mut() {
            assign(target, source.clone());
        }
        Dispatch::sync(dispatch).expect("sync");
        Dispatch::graph_start_capture(dispatch).expect("graph_start_capture");
        let again = pinned[0].1.clone();
        assign(&mut pinned[0].0, again);
        let graph = Dispatch::graph_stop_capture(dispatch).expect("graph_stop_capture");
        assert_eq!(read(&pinned[599].0), vec![1.0; 699]);
        // Only the pinned entries are left: the next new one is the only one to evict.
        Dispatch::memory_cleanup(dispatch);
        // Made on the host: no kernel, so no metadata entry, before the copies.
        let values: Vec<f32> = (1..=8).map(|v| v as f32).collect();
        let source = host(values.clone(), 8);
        let mut first = host(vec![0.0; 8], 8);
        let mut second = host(vec![0.0; 8], 8);
        let mut smaller: Vec<(Tensor<1>, Tensor<1>)> = (1..8).map(|n| (host(vec![0.0; n], n), host(vec![1.0; n], n))).collect();
        let mut shapes: Vec<(Tensor<2>, Tensor<2>)> = [[1, 2], [1, 3], [1, 4], [1, 5], [1, 6], [1, 7], [2, 1], [2, 2], [2, 3], [3, 1], [3, 2], [4, 1], [5, 1], [6, 1], [7, 1], [1, 1]]
            .into_iter()
            .map(|[a, b]| (Tensor::from_data(TensorData::new(vec![0.0f32; a * b], [a, b]), &device), Tensor::from_data(TensorData::new(vec![1.0f32; a * b], [a, b]), &device)))
            .collect();
        Dispatch::sync(dispatch).expect("sync");
        // The 8-value copy's entry, made and submitted (the read).
        assign(&mut first, source.clone());
        assert_eq!(read(&first), values);
        // Reused by a queued copy, then evicted by the new entries of 23 smaller copies queued
        // in the same submission (fewer than its 32 launches).
        assign(&mut second, source.clone());
        for (target, source) in smaller.iter_mut() {
            assign(target, source.clone());
        }
        for (target, source) in shapes.iter_mut() {
            assign(target, source.clone());
        }
        assert_eq!(read(&second), values, "the queued copy read another launch's shapes");
        for (target, _) in &smaller {
            assert_eq!(read(target), vec![1.0; target.dims()[0]]);
        }
        drop(graph);
    }

    /// More values than a grid along x alone holds (65,535 cubes of 256 units on Vulkan: 16.8 M;
    /// the batch images of 224 px at batch 128 are 19.3 M): every value is copied, the last one
    /// included (wgpu; not in the CPU test build).
    #[cfg(feature = "wgpu")]
    #[test]
    fn assign_copies_more_values_than_one_grid_axis_holds() {
        let device = Device::wgpu(Default::default());
        let n = 65_535 * 256 + 1_000;
        // Made on the host (every value exact in f32): on lavapipe Burn's own
        // `Tensor::<1, Int>::arange(0..100_000).float()` read back wrong from position 65,535 on
        // (34,465 of 100,000 values; the last one 65,534), seen 2026-11-27 and not our kernel.
        let pattern = |i: usize| (i % 1_000_003) as f32;
        let source = Tensor::<1>::from_data(burn::tensor::TensorData::new((0..n).map(pattern).collect::<Vec<_>>(), [n]), &device);
        let mut target = Tensor::<1>::zeros([n], &device);
        assign(&mut target, source);
        let values = target.to_data().try_to_vec::<f32>().unwrap();
        let wrong = values.iter().enumerate().filter(|&(i, &v)| v != pattern(i)).count();
        assert_eq!(wrong, 0, "{wrong} of {n} values not copied (last: {})", values[n - 1]);
    }
}
