//! Turning command-line inputs (images, folders, a list file) into the list of images to process.
//!
//! [`list_inputs`] expands each input in the order given:
//!
//! * a **folder** is walked recursively and its images (files whose extension, in any case, is one
//!   of [`IMAGE_EXTENSIONS`]) are added at the position of that argument, in sorted order: the
//!   entries of every folder are visited sorted by name (byte order), depth first, which is the
//!   order of `Vec<PathBuf>::sort` on the found paths;
//! * anything else (a file, a symbolic link to one, a path that does not exist) is **taken as
//!   given**, whatever its extension, so that a file the user named is reported by the decoder
//!   rather than silently dropped.
//!
//! Every file appears once: a file reached a second time (given twice, inside two overlapping
//! folders, through a followed link or a hard link) keeps its first position and is counted in
//! [`Listing::duplicates`]. Identity is the device and inode number on Unix, the canonical path
//! elsewhere.
//!
//! Inside folders, symbolic links are not followed unless [`Links::Follow`] is chosen; they are
//! counted in [`Listing::links_not_followed`]. With [`Links::Follow`] a link that leads back to
//! one of its own ancestor folders is reported as a [`Problem`] ([`SkipReason::LinkLoop`]) and not
//! entered, so the walk always ends. A link named directly (on the command line or in the list
//! file), to a file or to a folder, is always followed.
//!
//! Nothing found inside a folder is fatal: a subfolder that cannot be read (permission denied,
//! removed during the walk), a broken link or a loop is named in [`Listing::problems`] and the walk
//! goes on. Only a bad `--exclude` glob or an unreadable `--files-from` list is an [`InputsError`].
//!
//! Crate choice: `walkdir` (BurntSushi, the walker under `ignore` and ripgrep) rather than
//! `ignore`. `walkdir` gives exactly the switches needed here (follow links or not, with loop
//! detection by file identity; sort each folder by name; prune a subtree with `filter_entry`;
//! per-entry errors that let the walk continue) and nothing else. `ignore` would add `.gitignore`
//! / `.ignore` semantics and a parallel walker that a photo folder does not want and that would
//! have to be switched off one by one. Exclude patterns use `globset`, the glob matcher both
//! crates are built on.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead};
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use walkdir::{DirEntry, WalkDir};

pub use crate::decode::IMAGE_EXTENSIONS;

/// Whether symbolic links found inside folders are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Links {
    /// Links inside folders are left out (counted in [`Listing::links_not_followed`]). A link named
    /// directly as an input is still followed.
    #[default]
    Skip,
    /// Links are followed, to files and to folders; a link back to an ancestor folder is reported
    /// as [`SkipReason::LinkLoop`] and not entered.
    Follow,
}

/// Whether hidden files and folders (name starting with `.`) found inside folders are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hidden {
    /// Hidden files are left out and hidden folders are not entered. An input named directly
    /// (`dolg extract .photos`, `dolg extract .` or a hidden file) is still taken.
    #[default]
    Skip,
    /// Hidden files and folders are treated like any other.
    Include,
}

/// How [`list_inputs`] expands its inputs. `WalkOptions::default()` is what `dolg` does without
/// flags: links inside folders not followed, hidden entries skipped, nothing excluded, no list file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalkOptions {
    /// Whether symbolic links inside folders are followed.
    pub links: Links,
    /// Whether hidden files and folders inside folders are listed.
    pub hidden: Hidden,
    /// Glob patterns of files and folders to leave out (`globset` syntax, case-sensitive; `*` and
    /// `?` do not match `/`, `**` matches any number of folders). A pattern excludes a path when it
    /// matches either
    ///
    /// * the path's **file name** (`*_thumb.jpg`, `thumbs`), or
    /// * the path **relative to the folder given as input** (`raw/**`, `2019/*/drafts`); for an
    ///   input named directly, its path as given, without a leading `./`.
    ///
    /// An excluded folder is not entered. Excluded paths are not counted anywhere.
    pub exclude: Vec<String>,
    /// Read more inputs from this file, one path per line, after those given as arguments; `-`
    /// reads standard input. Lines are taken whole (only the line ending, `\n` or `\r\n`, is
    /// removed, so names may contain spaces); blank lines are skipped. A relative path is relative
    /// to the current directory, not to the list file (as with `xargs`). Each line is expanded like
    /// an argument: a folder is walked, anything else is taken as given.
    pub files_from: Option<PathBuf>,
}

/// The result of [`list_inputs`].
#[derive(Debug, Default)]
pub struct Listing {
    /// The images to process, each file once, in the order described in the module documentation.
    pub files: Vec<PathBuf>,
    /// Paths skipped because of an error, in the order met; the walk went on without them.
    pub problems: Vec<Problem>,
    /// Symbolic links inside folders that were not followed ([`Links::Skip`]).
    pub links_not_followed: usize,
    /// Paths left out because they name a file already in [`files`](Listing::files).
    pub duplicates: usize,
}

/// A path the walk skipped, and why.
#[derive(Debug)]
pub struct Problem {
    /// The skipped path.
    pub path: PathBuf,
    /// Why it was skipped.
    pub error: SkipReason,
}

/// Why a path was skipped.
#[derive(Debug, thiserror::Error)]
pub enum SkipReason {
    /// A folder (or entry) that could not be read: permission denied, removed during the walk, ...
    #[error("{source}")]
    Unreadable {
        /// The I/O error.
        source: io::Error,
    },
    /// A followed symbolic link that leads back to `ancestor`, a folder it is inside of.
    #[error("symbolic link loop (leads back to {})", ancestor.display())]
    LinkLoop {
        /// The folder the link leads back to.
        ancestor: PathBuf,
    },
    /// A followed symbolic link whose target does not exist or cannot be reached.
    #[error("broken symbolic link: {source}")]
    BrokenLink {
        /// The error reaching the target.
        source: io::Error,
    },
}

/// What stops [`list_inputs`] altogether.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    /// The `files_from` list could not be read.
    #[error("cannot read the input list {}: {source}", path.display())]
    Io {
        /// The list file (`-` for standard input).
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// An `exclude` pattern that is not a valid glob.
    #[error("bad exclude glob {glob:?}: {reason}")]
    BadGlob {
        /// The pattern as given.
        glob: String,
        /// Why it is not a valid glob.
        reason: String,
    },
}

/// Expand `inputs` (then the lines of `opts.files_from`, if any) into the list of images; see the
/// module documentation. `files_from` of `-` reads this process's standard input.
pub fn list_inputs(inputs: &[PathBuf], opts: &WalkOptions) -> Result<Listing, InputsError> {
    list_inputs_with_stdin(inputs, opts, &mut io::stdin().lock())
}

/// [`list_inputs`], reading `stdin` instead of the process's standard input when
/// `opts.files_from` is `-` (for tests and embedding).
pub fn list_inputs_with_stdin(inputs: &[PathBuf], opts: &WalkOptions, stdin: &mut dyn BufRead) -> Result<Listing, InputsError> {
    let exclude = build_globs(&opts.exclude)?;
    let mut all: Vec<PathBuf> = inputs.to_vec();
    if let Some(list) = &opts.files_from {
        let lines = if list.as_os_str() == "-" { read_path_list(stdin) } else { fs::File::open(list).and_then(|f| read_path_list(&mut io::BufReader::new(f))) };
        all.extend(lines.map_err(|source| InputsError::Io { path: list.clone(), source })?);
    }
    let mut walk = Walk { opts, exclude, seen: HashSet::new(), out: Listing::default() };
    for input in &all {
        walk.input(input);
    }
    Ok(walk.out)
}

/// Read a list of paths, one per line: the line ending (`\n`, `\r\n`) is removed and nothing else,
/// blank (empty or all-whitespace) lines are skipped. On Unix a line may hold any bytes but `\n`.
pub fn read_path_list(reader: &mut dyn BufRead) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for line in reader.split(b'\n') {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push(bytes_to_path(line)?);
    }
    Ok(out)
}

#[cfg(unix)]
fn bytes_to_path(bytes: Vec<u8>) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

#[cfg(not(unix))]
fn bytes_to_path(bytes: Vec<u8>) -> io::Result<PathBuf> {
    String::from_utf8(bytes).map(PathBuf::from).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Whether `path` has one of [`IMAGE_EXTENSIONS`], in any case.
pub(crate) fn has_image_extension(path: &Path) -> bool {
    path.extension().and_then(OsStr::to_str).is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn build_globs(patterns: &[String]) -> Result<Option<GlobSet>, InputsError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for glob in patterns {
        let g =
            GlobBuilder::new(glob).literal_separator(true).build().map_err(|e| InputsError::BadGlob { glob: glob.clone(), reason: e.kind().to_string() })?;
        set.add(g);
    }
    set.build().map(Some).map_err(|e| InputsError::BadGlob { glob: patterns.join(" "), reason: e.to_string() })
}

/// Identity of a file for "each file once".
#[derive(Hash, PartialEq, Eq)]
enum FileKey {
    #[cfg(unix)]
    Inode(u64, u64),
    Path(PathBuf),
}

fn file_key(path: &Path) -> FileKey {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = fs::metadata(path) {
            return FileKey::Inode(m.dev(), m.ino());
        }
    }
    #[cfg(not(unix))]
    if let Ok(p) = fs::canonicalize(path) {
        return FileKey::Path(p);
    }
    FileKey::Path(path.to_owned())
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

struct Walk<'a> {
    opts: &'a WalkOptions,
    exclude: Option<GlobSet>,
    seen: HashSet<FileKey>,
    out: Listing,
}

impl Walk<'_> {
    fn excluded(&self, path: &Path, name: Option<&OsStr>) -> bool {
        self.exclude.as_ref().is_some_and(|set| set.is_match(path) || name.is_some_and(|n| set.is_match(n)))
    }

    fn push(&mut self, path: PathBuf) {
        if self.seen.insert(file_key(&path)) {
            self.out.files.push(path);
        } else {
            self.out.duplicates += 1;
        }
    }

    /// One input named directly: walk it if it is a folder (through links), else take it as given.
    fn input(&mut self, input: &Path) {
        let as_given: PathBuf = input.components().skip_while(|c| matches!(c, Component::CurDir)).collect();
        if self.excluded(&as_given, input.file_name()) {
            return;
        }
        if fs::metadata(input).is_ok_and(|m| m.is_dir()) {
            self.walk_dir(input);
        } else {
            self.push(input.to_owned());
        }
    }

    fn keep_entry(&self, root: &Path, e: &DirEntry) -> bool {
        if e.depth() == 0 {
            return true;
        }
        if self.opts.hidden == Hidden::Skip && is_hidden(e.file_name()) {
            return false;
        }
        let rel = e.path().strip_prefix(root).unwrap_or(e.path());
        !self.excluded(rel, Some(e.file_name()))
    }

    fn walk_dir(&mut self, root: &Path) {
        let follow = self.opts.links == Links::Follow;
        let walker = WalkDir::new(root).follow_links(follow).follow_root_links(true).sort_by_file_name();
        // filter_entry needs the predicate to borrow `self` while the loop below mutates
        // `self.out`: collect the decisions first into a local result and apply them after.
        let mut found = Vec::new();
        let mut problems = Vec::new();
        let mut links = 0usize;
        for entry in walker.into_iter().filter_entry(|e| self.keep_entry(root, e)) {
            match entry {
                Ok(e) if e.file_type().is_file() => {
                    if has_image_extension(e.path()) {
                        found.push(e.into_path());
                    }
                }
                // Only when not following. A root given as a link is yielded as a link and walked all the same.
                Ok(e) if e.file_type().is_symlink() => links += usize::from(e.depth() > 0),
                Ok(_) => {} // folders (entered by the walker), fifos, sockets, devices
                Err(err) => problems.push(problem(err)),
            }
        }
        self.out.problems.extend(problems);
        self.out.links_not_followed += links;
        for path in found {
            self.push(path);
        }
    }
}

fn problem(err: walkdir::Error) -> Problem {
    let path = err.path().map(Path::to_owned).unwrap_or_default();
    if let Some(ancestor) = err.loop_ancestor() {
        return Problem { path, error: SkipReason::LinkLoop { ancestor: ancestor.to_owned() } };
    }
    let broken_link = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) && fs::metadata(&path).is_err();
    let source = err.into_io_error().unwrap_or_else(|| io::Error::other("walk error"));
    let error = if broken_link { SkipReason::BrokenLink { source } } else { SkipReason::Unreadable { source } };
    Problem { path, error }
}

/// Expand files and directories into a list of image paths with the default
/// [`WalkOptions`]: files are kept as given (whatever their extension,
/// so a bad file is reported rather than silently dropped); directories are walked recursively and
/// their images added in sorted order, without following symbolic links inside them or entering
/// hidden folders, each file once. A subfolder that cannot be read is logged (`tracing::warn!`)
/// and skipped. A thin wrapper over [`list_inputs`], which also returns those
/// problems and takes the options.
pub fn expand_inputs(inputs: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let listing = list_inputs(inputs, &WalkOptions::default()).map_err(std::io::Error::other)?;
    for p in &listing.problems {
        tracing::warn!("skipped {}: {}", p.path.display(), p.error);
    }
    Ok(listing.files)
}
