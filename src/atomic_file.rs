//! Replacing a file so that readers, and a crash at any point, see either the old content or the
//! new one, never a mix: used for checkpoints, training state and the index's files.

use std::io;
use std::path::Path;

/// Permissions of the file once written (Unix; ignored elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0600: only the owner reads or writes it (the index's files).
    Private,
    /// 0644: everyone may read it, the owner writes it (checkpoints, outputs, reports).
    Shared,
}

/// Replace `path` with what `fill` writes to the temporary path it is given (in the same
/// directory, so the final rename is atomic). The file is flushed to disk before the rename and
/// the directory entry after it. Temporary files are created private (0600); `mode` sets the
/// result's permissions.
pub fn replace(path: &Path, mode: Mode, fill: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    fill(tmp.path())?;
    // By path, not through the temporary file's handle: `fill` may itself write elsewhere and
    // rename over the path (safetensors' `serialize_to_file` does), leaving the handle on an
    // orphaned inode.
    #[cfg(unix)]
    if mode == Mode::Shared {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    std::fs::File::open(tmp.path())?.sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// [`replace`] with `bytes`.
pub fn write(path: &Path, mode: Mode, bytes: &[u8]) -> io::Result<()> {
    replace(path, mode, |tmp| std::fs::write(tmp, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_mode_even_when_fill_renames_over_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write(&p, Mode::Private, b"old").unwrap();
        // A writer that, like safetensors, writes a sibling file and renames it over the path.
        replace(&p, Mode::Shared, |tmp| {
            let side = tmp.with_extension("side");
            std::fs::write(&side, b"new")?;
            std::fs::rename(&side, tmp)
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
            write(&p, Mode::Private, b"x").unwrap();
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
