//! Replacing a file so that readers, and a crash at any point, see either the old content or the
//! new one, never a mix: used for checkpoints, training state and the index's files.

use std::io;
use std::path::Path;

/// Replace `path` with what `fill` writes to the temporary path it is given (in the same
/// directory, so the final rename is atomic). The file is flushed to disk before the rename and
/// the directory entry after it. Temporary files are created private (0600); `readable` gives the
/// result the usual 0644.
pub fn replace(path: &Path, readable: bool, fill: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    fill(tmp.path())?;
    #[cfg(unix)]
    if readable {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = readable;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// [`replace`] with `bytes`.
pub fn write(path: &Path, readable: bool, bytes: &[u8]) -> io::Result<()> {
    replace(path, readable, |tmp| std::fs::write(tmp, bytes))
}
