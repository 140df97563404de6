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
            eprintln!("warning: no wgpu GPU adapter available{}; training on the CPU (flex), which is slow", probe_failures(1, 200));
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
