//! Verified downloads into a local cache directory.
//!
//! [`Fetcher`] keeps MedMNIST files under a root directory (by default
//! `~/.medmnist`, shared with the Python package), verifies their checksums
//! and downloads missing or corrupt ones. [`download_verified`] is the
//! reusable primitive: stream a URL to a temporary file next to the
//! destination while hashing it, and move it into place only if the checksum
//! matches.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::catalogue::{DatasetInfo, ImageSize};
use crate::checksum::Checksum;
use crate::error::{Error, Result};

/// Environment variable naming the cache root (used when no root is given explicitly).
pub const ROOT_ENV_VAR: &str = "MEDMNIST_ROOT";

/// How long to wait for a TCP/TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long any single network operation (sending the request, waiting for
/// headers, each read of the body) may stall. Not a limit on the whole transfer.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A file to download: where from, what it must hash to, and its name in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// Download URL.
    pub url: String,
    /// Required checksum of the file.
    pub checksum: Checksum,
    /// File name inside the cache root (no directories).
    pub file_name: String,
}

/// Finds MedMNIST files in a cache directory, downloading them when needed.
#[derive(Clone, Debug)]
pub struct Fetcher {
    root: PathBuf,
    offline: bool,
    show_progress: bool,
}

impl Fetcher {
    /// A fetcher caching under `root`, online, with a progress bar on terminals.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            offline: false,
            show_progress: true,
        }
    }

    /// In offline mode nothing is downloaded: missing or corrupt files are
    /// errors that say where to put a hand-downloaded copy.
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Whether to draw a progress bar while downloading (it is never drawn
    /// when standard error is not a terminal).
    pub fn with_progress(mut self, show_progress: bool) -> Self {
        self.show_progress = show_progress;
        self
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this fetcher is offline.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The cache root to use: `cli` if given, else `$MEDMNIST_ROOT` if set and
    /// non-empty, else `$HOME/.medmnist` (the Python package's default), else
    /// `.medmnist` in the current directory.
    pub fn resolve_root(cli: Option<PathBuf>) -> PathBuf {
        resolve_root_from(
            cli,
            std::env::var_os(ROOT_ENV_VAR),
            std::env::var_os("HOME"),
        )
    }

    /// Where `remote` lives (or will live) in the cache.
    pub fn path_for(&self, remote: &Remote) -> PathBuf {
        self.root.join(&remote.file_name)
    }

    /// The verified local path of dataset `info` at `size`, downloading it if
    /// needed. See [`Fetcher::fetch_remote`].
    pub fn fetch(&self, info: &DatasetInfo, size: ImageSize) -> Result<PathBuf> {
        self.fetch_remote(&info.remote(size)?)
    }

    /// The verified local path of `remote`.
    ///
    /// A cached file with the right checksum is returned as is. A cached file
    /// with the wrong checksum is reported on standard error and downloaded
    /// again (an error when offline). A missing file is downloaded (an error
    /// when offline).
    pub fn fetch_remote(&self, remote: &Remote) -> Result<PathBuf> {
        let dest = self.path_for(remote);
        if dest.exists() {
            let actual = remote.checksum.compute_file(&dest)?;
            if remote.checksum.matches(&actual) {
                return Ok(dest);
            }
            if self.offline {
                return Err(Error::OfflineCorrupt {
                    path: dest,
                    url: remote.url.clone(),
                    expected: remote.checksum.clone(),
                    actual,
                });
            }
            eprintln!(
                "warning: cached file `{}` is corrupt (expected {}, found {}); downloading it again",
                dest.display(),
                remote.checksum,
                actual
            );
        } else if self.offline {
            return Err(Error::OfflineMissing {
                url: remote.url.clone(),
                expected: remote.checksum.clone(),
                dest,
            });
        }
        download_verified(&remote.url, &dest, &remote.checksum, self.show_progress)?;
        Ok(dest)
    }
}

/// [`Fetcher::resolve_root`] with the environment passed in (for testing).
pub fn resolve_root_from(
    cli: Option<PathBuf>,
    env_root: Option<OsString>,
    home: Option<OsString>,
) -> PathBuf {
    let non_empty = |v: Option<OsString>| v.filter(|s| !s.is_empty());
    // A leading `~/` (a config file's `data_root = "~/data"`, a quoted flag): the shell did
    // not expand it, so it is the home folder here too.
    let expand = |p: PathBuf| match (p.strip_prefix("~"), non_empty(home.clone())) {
        (Ok(rest), Some(h)) => PathBuf::from(h).join(rest),
        _ => p,
    };
    if let Some(root) = cli {
        expand(root)
    } else if let Some(root) = non_empty(env_root) {
        expand(PathBuf::from(root))
    } else if let Some(home) = non_empty(home) {
        PathBuf::from(home).join(".medmnist")
    } else {
        PathBuf::from(".medmnist")
    }
}

/// Download `url` to `dest`, requiring the content to match `checksum`.
///
/// The body is streamed to `.<name>.part-<pid>` in `dest`'s directory (created
/// if needed; partial files of killed downloads, untouched for 10 minutes, are removed first)
/// while being hashed, synced to disk, and atomically renamed onto
/// `dest` only if the checksum matches; otherwise the temporary file is
/// deleted and `dest` is left untouched. `progress` draws a byte progress bar
/// on standard error when it is a terminal.
pub fn download_verified(
    url: &str,
    dest: &Path,
    checksum: &Checksum,
    progress: bool,
) -> Result<()> {
    let file_name = dest.file_name().ok_or_else(|| Error::Io {
        action: "cannot download to",
        path: dest.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "destination has no file name",
        ),
    })?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    // The folders this call creates, removed again (if still empty) when the download fails:
    // a failed first download leaves the file system as it was.
    let created: Vec<PathBuf> = dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).map(Path::to_path_buf).collect();
    fs::create_dir_all(&dir).map_err(Error::io("cannot create the cache directory", &dir))?;
    let result = download_into(url, dest, &dir, file_name, checksum, progress);
    if result.is_err() {
        for folder in &created {
            let _ = fs::remove_dir(folder); // only an empty one goes
        }
    }
    result
}

/// [`download_verified`] once `dir`, `dest`'s folder, exists.
fn download_into(url: &str, dest: &Path, dir: &Path, file_name: &std::ffi::OsStr, checksum: &Checksum, progress: bool) -> Result<()> {
    let mut prefix = OsString::from(".");
    prefix.push(file_name);
    prefix.push(".part-");
    remove_stale_parts(dir, &prefix);
    let mut part_name = prefix;
    part_name.push(std::process::id().to_string());
    let mut part = PartFile {
        path: dir.join(part_name),
        armed: true,
    };

    let actual = stream_to(url, &part.path, checksum, progress).map_err(|e| match e {
        Error::Http { .. } | Error::HttpStatus { .. } | Error::Transfer { .. } => Error::DownloadFailed {
            url: url.to_owned(),
            expected: checksum.clone(),
            dest: dest.to_owned(),
            source: Box::new(e),
        },
        other => other,
    })?;
    if !checksum.matches(&actual) {
        return Err(Error::ChecksumMismatch {
            url: url.to_owned(),
            expected: checksum.clone(),
            actual,
            dest: dest.to_owned(),
        });
    }
    fs::rename(&part.path, dest).map_err(Error::io("cannot move the finished download into place at", dest))?;
    part.disarm();
    // Make the rename durable; failure here does not invalidate the file.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// How long a partial download may go unwritten before it counts as abandoned.
const STALE_PART: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes the partial downloads (`<prefix><pid>` in `dir`) that a killed process left: those
/// not written for [`STALE_PART`] (a download in progress writes every few milliseconds).
/// Best effort: a file that cannot be read or removed stays.
fn remove_stale_parts(dir: &Path, prefix: &std::ffi::OsStr) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let prefix = prefix.as_encoded_bytes();
    for entry in entries.flatten() {
        if !entry.file_name().as_encoded_bytes().starts_with(prefix) {
            continue;
        }
        let idle = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if idle.is_some_and(|d| d >= STALE_PART) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// GET `url` into a new file at `part`, returning the content's digest.
fn stream_to(url: &str, part: &Path, checksum: &Checksum, progress: bool) -> Result<Checksum> {
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(STALL_TIMEOUT)
        .user_agent(concat!("medmnist-rs/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| Error::HttpClient { source })?;
    let mut response = client.get(url).send().map_err(|source| Error::Http {
        url: url.to_owned(),
        source,
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::HttpStatus {
            url: url.to_owned(),
            status: status.to_string(),
        });
    }

    let bar = progress_bar(response.content_length(), progress, url);
    let mut file = File::create(part).map_err(Error::io("cannot create", part))?;
    let mut hasher = checksum.hasher();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = response.read(&mut buf).map_err(|source| Error::Transfer {
            url: url.to_owned(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(Error::io("cannot write", part))?;
        bar.inc(n as u64);
    }
    file.sync_all().map_err(Error::io("cannot sync", part))?;
    bar.finish_and_clear();
    Ok(hasher.finish())
}

fn progress_bar(len: Option<u64>, enabled: bool, url: &str) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let name = url.rsplit('/').next().unwrap_or(url);
    let name = name.split('?').next().unwrap_or(name).to_owned();
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::new(len),
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg} {spinner} {bytes} ({bytes_per_sec})",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name);
    bar
}

/// A temporary download file, deleted on drop unless disarmed.
struct PartFile {
    path: PathBuf,
    armed: bool,
}

impl PartFile {
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_precedence_is_flag_then_env_then_home() {
        let flag = Some(PathBuf::from("/flag"));
        let env = || Some(OsString::from("/env"));
        let home = || Some(OsString::from("/home/u"));
        assert_eq!(
            resolve_root_from(flag, env(), home()),
            PathBuf::from("/flag")
        );
        assert_eq!(
            resolve_root_from(None, env(), home()),
            PathBuf::from("/env")
        );
        assert_eq!(
            resolve_root_from(None, Some(OsString::new()), home()),
            PathBuf::from("/home/u/.medmnist")
        );
        assert_eq!(
            resolve_root_from(None, None, home()),
            PathBuf::from("/home/u/.medmnist")
        );
        assert_eq!(
            resolve_root_from(None, None, None),
            PathBuf::from(".medmnist")
        );
    }

    #[test]
    fn a_leading_tilde_is_the_home_folder() {
        let home = || Some(OsString::from("/home/u"));
        assert_eq!(resolve_root_from(Some(PathBuf::from("~/.medmnist")), None, home()), PathBuf::from("/home/u/.medmnist"));
        assert_eq!(resolve_root_from(None, Some(OsString::from("~/data")), home()), PathBuf::from("/home/u/data"));
        // Only a whole `~` component: `~user/x` and `a/~/b` stay as written.
        assert_eq!(resolve_root_from(Some(PathBuf::from("~user/x")), None, home()), PathBuf::from("~user/x"));
        assert_eq!(resolve_root_from(Some(PathBuf::from("a/~/b")), None, home()), PathBuf::from("a/~/b"));
        // No home folder known: unchanged.
        assert_eq!(resolve_root_from(Some(PathBuf::from("~/x")), None, None), PathBuf::from("~/x"));
    }
}
