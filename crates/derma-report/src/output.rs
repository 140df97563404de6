//! Writing into the run folder: every file atomically (a temporary file in the same folder,
//! then a rename), so a reader sees the old file or the new one, never half of one.

use std::io::Write as _;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `contents` to `path` atomically (also derma-train's writer of the run folder).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io { path: path.into(), action: "writing", cause: source }
    })
}

/// Creates `dir` (and its parents) if needed.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.into(), action: "creating the folder", cause: source })
}
