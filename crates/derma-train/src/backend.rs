//! Picks the device: wgpu (GPU) when built with the `wgpu` feature and an adapter answers,
//! else the Flex CPU backend.

use burn::prelude::*;

/// The chosen device and a one-line description.
pub struct Backend {
    /// Device for inference; [`Device::autodiff`] of it trains.
    pub device: Device,
    /// e.g. `wgpu` or `cpu (flex)`.
    pub name: &'static str,
}

/// `auto` tries wgpu and falls back to the CPU with a warning; `wgpu` fails without a GPU;
/// `cpu` is the Flex backend.
pub fn select(choice: &str) -> anyhow::Result<Backend> {
    let cpu = || Backend { device: Device::flex(), name: "cpu (flex)" };
    match choice {
        "cpu" => Ok(cpu()),
        "wgpu" => wgpu().ok_or_else(|| {
            anyhow::anyhow!(
                "--backend wgpu: {}",
                if cfg!(feature = "wgpu") {
                    "no GPU adapter answered (is a Vulkan/Metal/DX12 driver installed?)"
                } else {
                    "this binary was built without the `wgpu` feature"
                }
            )
        }),
        "auto" => Ok(wgpu().unwrap_or_else(|| {
            eprintln!("warning: no wgpu GPU adapter available; training on the CPU (flex), which is slow");
            cpu()
        })),
        other => anyhow::bail!("--backend `{other}`: expected auto, wgpu or cpu"),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Option<Backend> {
    // Device creation is lazy and a missing adapter panics on first use: probe with a tiny
    // readback, silencing the panic message.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| {
        let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
        let x = Tensor::<1>::ones([4], &device).sum().into_scalar::<f32>();
        (x == 4.0).then_some(device)
    });
    std::panic::set_hook(hook);
    probe.ok().flatten().map(|device| Backend { device, name: "wgpu" })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Option<Backend> {
    None
}
