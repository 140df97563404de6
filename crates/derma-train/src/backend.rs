//! Picks the device: wgpu when built with the `wgpu` feature and a hardware GPU adapter
//! (discrete, then integrated, then virtual) answers, else the Flex CPU backend. Software
//! adapters are never picked automatically; `wgpu-software` asks for one explicitly, to run the
//! GPU code path (shaders, fusion, autotune) on a machine without a GPU, e.g. Mesa's lavapipe.

use burn::prelude::*;

/// The chosen device and a one-line description.
pub struct Backend {
    /// Device for inference; [`Device::autodiff`] of it trains.
    pub device: Device,
    /// e.g. `wgpu` or `cpu (flex)`.
    pub name: &'static str,
}

/// The `--backend` values [`select`] accepts.
pub const CHOICES: [&str; 4] = ["auto", "wgpu", "wgpu-software", "cpu"];

/// `auto` tries wgpu and falls back to the CPU with a warning; `wgpu` fails without a GPU;
/// `wgpu-software` is wgpu on a software (CPU) adapter, for checks only; `cpu` is the Flex
/// backend.
pub fn select(choice: &str) -> anyhow::Result<Backend> {
    let cpu = || Backend { device: Device::flex(), name: "cpu (flex)" };
    match choice {
        "cpu" => Ok(cpu()),
        "wgpu" => wgpu().ok_or_else(|| {
            unavailable(
                "wgpu",
                "no hardware GPU adapter answered (is a Vulkan/Metal/DX12 driver installed? software rasterisers are not used)",
            )
        }),
        "wgpu-software" => wgpu_software().ok_or_else(|| {
            unavailable(
                "wgpu-software",
                "no software wgpu adapter answered (install a software Vulkan driver, e.g. Mesa lavapipe: `apt install mesa-vulkan-drivers`)",
            )
        }),
        "auto" => Ok(wgpu().unwrap_or_else(|| {
            let why = if cfg!(feature = "wgpu") {
                format!("no wgpu GPU adapter available{}", probe_failures(1, 200))
            } else {
                "this build has no GPU backend (built without the `wgpu` feature)".to_string()
            };
            eprintln!("warning: {why}; running on the CPU (flex), which is slow");
            cpu()
        })),
        other => anyhow::bail!("{}", unknown(other)),
    }
}

/// The message for a `--backend` value that is not one of [`CHOICES`].
pub fn unknown(choice: &str) -> String {
    format!("--backend `{choice}`: expected auto, wgpu, wgpu-software or cpu")
}

/// The error for `--backend CHOICE` when its adapter did not answer: `no_adapter`, or that the
/// binary has no wgpu at all.
fn unavailable(choice: &str, no_adapter: &str) -> anyhow::Error {
    if !cfg!(feature = "wgpu") {
        return anyhow::anyhow!("--backend {choice}: this binary was built without the `wgpu` feature");
    }
    anyhow::anyhow!("--backend {choice}: {no_adapter}{}", probe_failures(usize::MAX, 300))
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Option<Backend> {
    use burn::tensor::DeviceKind;
    // Hardware adapters only: wgpu's default pick can be a software rasteriser (Mesa llvmpipe
    // through OpenGL, `DeviceKind::Cpu`) on a machine without a GPU driver, which trains
    // thousands of times slower than the Flex CPU backend.
    // On Linux wgpu tries Vulkan, then OpenGL ES (CubeCL's automatic chain); pinning Vulkan
    // (`Device::vulkan`) needs Burn's `vulkan` feature, the SPIR-V build.
    [
        (DeviceKind::DiscreteGpu(0), "wgpu (discrete GPU)"),
        (DeviceKind::IntegratedGpu(0), "wgpu (integrated GPU)"),
        (DeviceKind::VirtualGpu(0), "wgpu (virtual GPU)"),
    ]
    .into_iter()
    .find_map(|(kind, name)| probe(|| Device::wgpu(kind.clone())).map(|device| Backend { device, name }))
}

/// A software adapter (`DeviceKind::Cpu`: lavapipe, llvmpipe, WARP). Correct but slow: for
/// checking the GPU code path without a GPU.
#[cfg(feature = "wgpu")]
fn wgpu_software() -> Option<Backend> {
    probe(|| Device::wgpu(burn::tensor::DeviceKind::Cpu)).map(|device| Backend { device, name: "wgpu (software adapter)" })
}

/// Why the probes failed (their panic messages), for the "no adapter" error.
#[cfg(feature = "wgpu")]
static PROBE_FAILURES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Device creation is lazy and a missing adapter panics on first use: probe with a tiny
/// readback, keeping the panic message (shown only if no device answers).
#[cfg(feature = "wgpu")]
fn probe(device: impl Fn() -> Device) -> Option<Device> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let text = info.to_string();
        if let Ok(mut f) = PROBE_FAILURES.lock() {
            f.push(text.lines().last().unwrap_or_default().chars().take(300).collect());
        }
    }));
    let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let device = device();
        let x = Tensor::<1>::ones([4], &device).sum().into_scalar::<f32>();
        (x == 4.0).then_some(device)
    }));
    std::panic::set_hook(hook);
    probe.ok().flatten()
}

/// The probes' panic messages, de-duplicated, at most `count` of them cut to `chars` characters
/// each (empty without wgpu or before any probe).
fn probe_failures(count: usize, chars: usize) -> String {
    #[cfg(feature = "wgpu")]
    if let Ok(f) = PROBE_FAILURES.lock() {
        let mut seen: Vec<&String> = Vec::new();
        for m in f.iter() {
            if !seen.contains(&m) {
                seen.push(m);
            }
        }
        if !seen.is_empty() {
            let shown: Vec<String> = seen.iter().take(count).map(|s| s.chars().take(chars).collect()).collect();
            return format!(" (wgpu said: {})", shown.join("; "));
        }
    }
    #[cfg(not(feature = "wgpu"))]
    let _ = (count, chars);
    String::new()
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Option<Backend> {
    None
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_software() -> Option<Backend> {
    None
}

/// Before resuming from a checkpoint: Burn restores AdamW's moments on its default device (the
/// GPU in a wgpu build) and moves them to each parameter's device at the next step
/// (burn-optim's `load_record`: the load device does not matter), so a CPU run would start a
/// GPU context for nothing, or fail on a machine without one (`--backend auto`). This makes the
/// default device the CPU (`BURN_DEVICE=flex`) unless the environment names one.
///
/// # Safety
/// It sets an environment variable: call it while only the main thread runs (before data
/// loading, devices or thread pools).
pub unsafe fn restore_optimizer_state_on_the_cpu() {
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: the caller guarantees no other thread runs.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
}

/// Whether a panic message is the GPU stack running out of memory: CubeCL 0.11's
/// `IoError::OutOfMemory` ("out of device memory allocating N bytes"), `IoError::BufferTooBig`
/// ("can't allocate buffer of size: N"), `LaunchError::OutOfMemory` ("An out-of-memory error
/// happened during launch"), their `Debug` names, CubeCL's older pool message ("No pool handles
/// allocation of size N", burn issue #3510), and wgpu's validation error for a buffer it cannot
/// create ("Not enough memory left", wgpu's `create_buffer`).
pub fn is_out_of_memory(panic_message: &str) -> bool {
    const SIGNS: [&str; 8] = [
        "out of device memory",
        "can't allocate buffer of size",
        "out-of-memory error",
        "OutOfMemory",
        "BufferTooBig",
        "No pool handles allocation",
        "Not enough memory left",
        "ERROR_OUT_OF_DEVICE_MEMORY",
    ];
    SIGNS.iter().any(|sign| panic_message.contains(sign))
}

/// After this, a panic whose message [`is_out_of_memory`] is followed on stderr by `advice`
/// (what to change: the batch size, the image size), after Rust's own panic message. CubeCL and
/// wgpu panic where an allocation cannot be served instead of returning an error, so this is
/// where the run can still say what happened in its own terms.
pub fn explain_out_of_memory(advice: String) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let payload = info.payload();
        let message = payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        if message.is_some_and(is_out_of_memory) {
            eprintln!("\nerror: the GPU could not allocate the memory this run needs (out of memory, or a buffer over its size limit). {advice}");
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::is_out_of_memory;

    /// The messages CubeCL 0.11.3 (`cubecl-runtime` `server/base.rs`: the `Display` of
    /// `IoError::OutOfMemory`, `IoError::BufferTooBig`, `LaunchError::OutOfMemory`, and their
    /// `Debug` in an `unwrap` panic), CubeCL's older pool panic (burn issue #3510) and wgpu's
    /// `create_buffer` validation error panic with; other panics are not memory.
    #[test]
    fn out_of_memory_panics_are_recognised() {
        for message in [
            "out of device memory allocating 411041792 bytes\n",
            "can't allocate buffer of size: 17179869184\n",
            "An out-of-memory error happened during launch\nCaused by:\n  pool exhausted",
            "called `Result::unwrap()` on an `Err` value: OutOfMemory { size: 411041792, .. }",
            "called `Result::unwrap()` on an `Err` value: BufferTooBig { size: 1 }",
            "No pool handles allocation of size 411041792",
            "wgpu error: Validation Error\n\nCaused by:\n    In Device::create_buffer\n    Not enough memory left.",
        ] {
            assert!(is_out_of_memory(message), "{message}");
        }
        for message in ["index out of bounds: the len is 3 but the index is 3", "The bytes were never written", "shape mismatch"] {
            assert!(!is_out_of_memory(message), "{message}");
        }
    }
}
