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
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    torch_cache_dir_from(var("TORCH_HOME"), var("XDG_CACHE_HOME"), var("HOME"))
}

/// [`torch_cache_dir`] from the values of `TORCH_HOME`, `XDG_CACHE_HOME` and `HOME` (unset or
/// empty: `None`). A leading `~` is expanded as PyTorch's `os.path.expanduser` does (a
/// Dockerfile `ENV`, a quoted export), so that the same cache is found.
fn torch_cache_dir_from(torch_home: Option<PathBuf>, xdg_cache: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    let expand = |p: PathBuf| match (p.strip_prefix("~"), &home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => p,
    };
    if let Some(torch_home) = torch_home {
        return expand(torch_home).join("hub/checkpoints");
    }
    let cache = xdg_cache
        .map(expand)
        .or_else(|| home.as_ref().map(|h| h.join(".cache")))
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

#[cfg(test)]
mod tests {
    use super::torch_cache_dir_from;
    use std::path::PathBuf;

    /// PyTorch's `torch.hub._get_torch_home()`:
    /// `os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME",
    /// "~/.cache"), "torch")))`, then `hub/checkpoints`.
    #[test]
    fn the_torch_cache_is_found_where_pytorch_puts_it() {
        let p = |s: &str| Some(PathBuf::from(s));
        let home = || p("/root");
        assert_eq!(torch_cache_dir_from(p("~/th"), None, home()), PathBuf::from("/root/th/hub/checkpoints"));
        assert_eq!(torch_cache_dir_from(p("/data/th"), p("/x"), home()), PathBuf::from("/data/th/hub/checkpoints"));
        assert_eq!(torch_cache_dir_from(None, p("~/cache"), home()), PathBuf::from("/root/cache/torch/hub/checkpoints"));
        assert_eq!(torch_cache_dir_from(None, None, home()), PathBuf::from("/root/.cache/torch/hub/checkpoints"));
        // `~user` is not the current user's home: left as it is.
        assert_eq!(torch_cache_dir_from(p("~other/th"), None, home()), PathBuf::from("~other/th/hub/checkpoints"));
    }
}
