//! Where pretrained weights come from: `--pretrained imagenet` downloads torchvision's
//! ImageNet MobileNetV2 (IMAGENET1K_V2) into PyTorch's own cache, so a machine that already ran
//! torchvision reuses its file; `--pretrained FILE` is any torchvision-layout state dict.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use medmnist::{Checksum, Fetcher, Remote};

/// torchvision `MobileNet_V2_Weights.IMAGENET1K_V2` (IMAGENET1K_V1 is `mobilenet_v2-b0353104.pth`).
pub const IMAGENET_FILE: &str = "mobilenet_v2-7ebf99e0.pth";
const IMAGENET_URL: &str = "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth";

/// PyTorch's checkpoint cache: `$TORCH_HOME/hub/checkpoints`, else
/// `$XDG_CACHE_HOME/torch/hub/checkpoints`, else `~/.cache/torch/hub/checkpoints`.
pub fn torch_cache_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("TORCH_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join("hub/checkpoints");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("torch/hub/checkpoints")
}

/// The weight file of `--pretrained` (`None` for `none`), downloading `imagenet` if needed
/// (SHA-256 checked against the hex in the file name, torchvision's rule; `offline` forbids the
/// download and says where to put the file).
pub fn resolve(pretrained: &str, offline: bool) -> anyhow::Result<Option<PathBuf>> {
    match pretrained {
        "none" => Ok(None),
        "imagenet" => {
            let remote = Remote {
                url: IMAGENET_URL.into(),
                checksum: Checksum::sha256_prefix("7ebf99e0")?,
                file_name: IMAGENET_FILE.into(),
            };
            // The download creates the folder; offline, nothing is written.
            let dir = torch_cache_dir();
            let fetcher = Fetcher::new(dir).with_offline(offline).with_progress(std::io::stderr().is_terminal());
            // The error's causes (e.g. the connection failure) stay attached: `{e:#}` shows them.
            Ok(Some(fetcher.fetch_remote(&remote).map_err(|e| anyhow::Error::new(e).context("--pretrained imagenet"))?))
        }
        file => {
            let path = Path::new(file);
            if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("bpk")) {
                anyhow::bail!(
                    "--pretrained `{file}`: a Burn .bpk (a derma-train run's model.bpk) is not read here; expected a \
                     torchvision state dict (.pth, .pt or .safetensors), `imagenet` or `none`"
                );
            }
            if path.is_file() {
                Ok(Some(path.to_path_buf()))
            } else {
                anyhow::bail!("--pretrained `{file}`: expected none, imagenet or an existing weight file")
            }
        }
    }
}
