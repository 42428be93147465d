//! The one durable-file layer: every file the product writes (descriptor files and their names
//! files, checkpoints, training state, the index's files, cached weights, reports) is replaced
//! through this module, never written in place.
//!
//! # Contract
//!
//! How a file is replaced: the new content is written in full to a temporary file in the same
//! folder as the destination (so the final rename cannot cross file systems), flushed to disk
//! (`fsync`), given its [`Mode`], renamed over the destination, and then the folder itself is
//! flushed so that the rename is on disk when the call returns.
//!
//! - **What a reader sees, at any instant**: the complete old file, or (from the moment of the
//!   rename) the complete new one; never a truncated or half-written file, and never a mix. A file
//!   that did not exist before is absent until it appears complete.
//! - **What survives a crash** (process killed, power lost): after a successful return, the new
//!   content, durably. A crash during a call leaves the old file or the new one, each complete.
//!   A temporary file of the crashed call may remain in the folder (a `.tmp…` name beside the
//!   destination); nothing ever reads it, and it can be deleted.
//! - **Pairs** ([`replace_pair`], e.g. `X.npy` with its `X.names.txt`): a reader sees the old
//!   pair, the new pair, or the main file with no companion at all, never a main file beside a
//!   companion written for another one. Readers of a pair must treat a missing companion as an
//!   error (naming the missing file), and check that the two agree (e.g. row and name counts).
//! - **Permissions**: the temporary file is created owner-only (0600), so a partly written file
//!   is never readable by others; the result gets its [`Mode`]: [`Mode::Private`] (0600) or
//!   [`Mode::Shared`] (0644). Unix only; ignored elsewhere.
//! - **Temporary files never outlive a call that returns**, successful or not: on success the
//!   temporary file *is* the destination; on an error it is removed before the error is returned.
//! - **Nothing is written in `Drop`**: every write, flush and rename happens inside the call, and
//!   its error is returned. The only thing a `Drop` does here is delete the temporary file of a
//!   call that failed (or whose `fill` panicked) before its rename; no `Drop` ever touches the
//!   destination.
//! - Not provided: locking against two concurrent writers of the same path (the last rename wins,
//!   each result complete); callers that need it take a lock (the index does).
//!
//! # Failpoints (for tests)
//!
//! When `DOLG_FAILPOINT` names one of the [`FAILPOINTS`], the process aborts at that step, as a
//! crash would, so that tests can check what a reader sees afterwards (builds with the
//! `failpoints` feature only: `crate::failpoints`).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Permissions of the file once written (Unix; ignored elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0600: only the owner reads or writes it (the index's files).
    Private,
    /// 0644: everyone may read it, the owner writes it (checkpoints, outputs, reports).
    Shared,
}

/// The failpoints [`replace_pair`] checks, in the order it reaches them.
pub const FAILPOINTS: [&str; 2] = [FAIL_PAIR_COMPANION_REMOVED, FAIL_PAIR_MAIN_RENAMED];
/// [`replace_pair`]: both new files are on disk under temporary names and the old companion has
/// been removed; the old main file is still in place.
pub const FAIL_PAIR_COMPANION_REMOVED: &str = "pair-companion-removed";
/// [`replace_pair`]: the new main file is in place; its companion is not there yet.
pub const FAIL_PAIR_MAIN_RENAMED: &str = "pair-main-renamed";

fn failpoint(name: &str) {
    crate::failpoints::check(name);
}

fn folder(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn sync_folder(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Give the file at `path` its mode and flush it to disk. By path, not through a handle: a
/// `fill` given a path may itself write elsewhere and rename over that path (safetensors'
/// `serialize_to_file` does), leaving an earlier handle on an orphaned inode.
fn finish_by_path(path: &Path, mode: Mode) -> io::Result<()> {
    #[cfg(unix)]
    if mode == Mode::Shared {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    File::open(path)?.sync_all()
}

/// A new file complete and on disk under a temporary name beside its destination, not yet
/// visible there. Dropping it deletes the temporary file.
struct Staged {
    tmp: tempfile::TempPath,
    dest: PathBuf,
}

impl Staged {
    fn by_path(dest: &Path, mode: Mode, fill: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<Self> {
        let tmp = tempfile::NamedTempFile::new_in(folder(dest))?.into_temp_path();
        fill(&tmp)?;
        finish_by_path(&tmp, mode)?;
        Ok(Self { tmp, dest: dest.to_owned() })
    }

    fn by_writer(dest: &Path, mode: Mode, fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>) -> io::Result<Self> {
        let (file, tmp) = tempfile::NamedTempFile::new_in(folder(dest))?.into_parts();
        let mut w = BufWriter::new(file);
        if let Err(e) = fill(&mut w) {
            // Drop the buffer unwritten rather than have `BufWriter`'s `Drop` flush it.
            let _ = w.into_parts();
            return Err(e);
        }
        w.flush()?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        // `fill` only had the handle, so the handle is the file: mode and fsync through it.
        #[cfg(unix)]
        if mode == Mode::Shared {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        file.sync_all()?;
        Ok(Self { tmp, dest: dest.to_owned() })
    }

    /// Rename over the destination (the folder is not flushed).
    fn rename(self) -> io::Result<()> {
        self.tmp.persist(&self.dest).map_err(|e| e.error)
    }
}

/// Replace `path` with what `fill` writes to the temporary path it is given (in the same folder).
/// `fill` may write the path however it likes, including by renaming another file over it. See
/// the module documentation for the guarantees.
pub fn replace(path: &Path, mode: Mode, fill: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    Staged::by_path(path, mode, fill)?.rename()?;
    sync_folder(folder(path))
}

/// Replace `path` with what `fill` writes through a buffered handle on the temporary file, so a
/// large file can be streamed without being built in memory first. `fill` need not flush; the
/// buffer is flushed, and its error returned, before anything is renamed.
pub(crate) fn replace_with_writer(path: &Path, mode: Mode, fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>) -> io::Result<()> {
    Staged::by_writer(path, mode, fill)?.rename()?;
    sync_folder(folder(path))
}

/// [`replace`] with `bytes`.
pub fn write(path: &Path, mode: Mode, bytes: &[u8]) -> io::Result<()> {
    replace_with_writer(path, mode, |w| w.write_all(bytes))
}

/// Remove `path` if it exists, durably: the folder is flushed before returning.
pub fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(()) => sync_folder(folder(path)),
    }
}

/// A writer of a file's content through a buffered handle on its temporary file.
pub(crate) type Fill<'a> = dyn FnMut(&mut BufWriter<File>) -> io::Result<()> + 'a;

/// Replace `main` and the `companion` file that describes it (e.g. `X.npy` and `X.names.txt`),
/// so that a reader never sees one beside a companion written for another. With
/// `fill_companion` `None`, an old companion is removed and none is written.
///
/// Order: both new files are written in full and flushed to temporaries first (an error there
/// leaves the old pair untouched); then the old companion is removed and the folder flushed; then
/// the new main file is renamed into place and the folder flushed; then the companion, and the
/// folder flushed. At every instant, and after a crash at any step, a reader finds the old pair,
/// the new pair, or a main file (old or new) with no companion, never a mismatched pair. The
/// flush between the renames keeps that order on disk: the companion's rename cannot reach the
/// disk without the main file's.
pub fn replace_pair(
    main: &Path,
    companion: &Path,
    mode: Mode,
    fill_main: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
    fill_companion: Option<&mut Fill<'_>>,
) -> io::Result<()> {
    let staged_main = Staged::by_writer(main, mode, fill_main)?;
    let staged_companion = match fill_companion {
        Some(fill) => Some(Staged::by_writer(companion, mode, fill)?),
        None => None,
    };
    // Flushed even when there was nothing to remove: a removal by an earlier call that crashed
    // before its own flush must reach the disk before the rename below does.
    match std::fs::remove_file(companion) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => sync_folder(folder(companion))?,
    }
    failpoint(FAIL_PAIR_COMPANION_REMOVED);
    staged_main.rename()?;
    sync_folder(folder(main))?;
    failpoint(FAIL_PAIR_MAIN_RENAMED);
    if let Some(staged) = staged_companion {
        staged.rename()?;
        sync_folder(folder(companion))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        }
        #[cfg(not(unix))]
        {
            let _ = p;
            0
        }
    }

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
        if cfg!(unix) {
            assert_eq!(mode_of(&p), 0o644);
            write(&p, Mode::Private, b"x").unwrap();
            assert_eq!(mode_of(&p), 0o600);
        }
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn writer_streams_and_a_failing_fill_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        replace_with_writer(&p, Mode::Shared, |w| (0..1000).try_for_each(|i| writeln!(w, "{i}"))).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 1000);
        if cfg!(unix) {
            assert_eq!(mode_of(&p), 0o644);
        }
        let err = replace_with_writer(&p, Mode::Shared, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn pair_replaces_both_or_removes_a_stale_companion() {
        let dir = tempfile::tempdir().unwrap();
        let (m, c) = (dir.path().join("x.bin"), dir.path().join("x.txt"));
        replace_pair(&m, &c, Mode::Shared, |w| w.write_all(b"m1"), Some(&mut |w: &mut BufWriter<File>| w.write_all(b"c1"))).unwrap();
        assert_eq!((std::fs::read(&m).unwrap(), std::fs::read(&c).unwrap()), (b"m1".to_vec(), b"c1".to_vec()));
        // A failing companion leaves the old pair.
        let e = replace_pair(&m, &c, Mode::Shared, |w| w.write_all(b"m2"), Some(&mut |_: &mut BufWriter<File>| Err(io::Error::other("no")))).unwrap_err();
        assert_eq!(e.to_string(), "no");
        assert_eq!((std::fs::read(&m).unwrap(), std::fs::read(&c).unwrap()), (b"m1".to_vec(), b"c1".to_vec()));
        // Without a companion, the old one goes.
        replace_pair(&m, &c, Mode::Shared, |w| w.write_all(b"m3"), None).unwrap();
        assert_eq!(std::fs::read(&m).unwrap(), b"m3");
        assert!(!c.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
