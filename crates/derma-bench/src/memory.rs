//! Device memory as the backend's allocator reports it (CubeCL backends: wgpu, CUDA; the CPU
//! Flex backend reports nothing).
//!
//! CubeCL keeps no byte-level high-water mark. What it does keep is, per dynamic (sliced)
//! pool, the most pages ever held at once; those pools hold the activations and gradients
//! whose peak a training step sets. The peak here is that: `Σ pages_peak × page_size` over
//! the dynamic pools, plus what the other pools (persistent weights, dedicated and auxiliary
//! buffers) reserve at the end. It is a peak of *reserved* memory for the whole process so far,
//! comparable to PyTorch's `torch.cuda.max_memory_reserved()`; run one configuration per
//! process for per-configuration peaks (as `scripts/bench_gpu.sh` does).

use burn::prelude::*;
use serde::Serialize;

/// One reading of the device allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    /// Bytes held by live tensors now.
    pub in_use_bytes: u64,
    /// Bytes reserved from the driver now.
    pub reserved_bytes: u64,
    /// Estimated peak of reserved bytes since the process started (see the module docs).
    pub peak_reserved_bytes: u64,
}

/// Reads the allocator of `device` (synchronises it); `None` when the backend reports none.
pub fn read(device: &Device) -> Option<MemoryStats> {
    let usage = device.memory_pool_usage()?;
    let pools = device.memory_pool_report().unwrap_or_default();
    let dynamic_now: u64 = pools.iter().map(|p| p.pages * p.page_size).sum();
    let dynamic_peak: u64 = pools.iter().map(|p| p.pages_peak * p.page_size).sum();
    let other_now = usage.bytes_reserved.saturating_sub(dynamic_now);
    Some(MemoryStats {
        in_use_bytes: usage.bytes_in_use,
        reserved_bytes: usage.bytes_reserved,
        peak_reserved_bytes: (other_now + dynamic_peak).max(usage.bytes_reserved),
    })
}

/// `bytes` in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
