//! Durable storage of an index: immutable, checksummed segment files plus a manifest that is
//! replaced atomically.
//!
//! Every commit writes its records to a new segment (temporary file → fsync → rename), then a
//! new manifest listing all segments with their sizes and CRC-32s (same procedure). The manifest
//! rename is the commit point, so a process killed at any moment leaves the previous manifest and
//! the segments it names intact: reopening yields the last committed state, losing at most the
//! batch in flight. Segments not named by the manifest (a crash between the two renames) are
//! removed by the next commit. A segment or manifest whose bytes do not match its checksum is
//! reported as corrupt, never used. Removal appends a tombstone segment; nothing is rewritten
//! until [`Store::compact`].
//!
//! The manifest names the index kind by its lowercase name (`"kind": "exact"` or `"hnsw"`, see
//! [`IndexKind`]); a kind this dolg does not know is refused ([`IndexError::UnknownKind`]), never
//! read as another kind.
//!
//! # Testing hook: the commit failpoint
//!
//! `DOLG_FAILPOINT=commit:N[:STAGE]` makes the process call [`std::process::abort`] during its
//! N-th call of [`Store::commit`] (counting from 1, non-empty commits only), at STAGE:
//!
//! * `segment` (the default): the new segment is durable, the manifest not yet replaced, so the
//!   commit is lost and its segment is an orphan;
//! * `manifest`: just after the manifest rename, so the commit is durable although the call
//!   never returned.
//!
//! The variable is read once per process; when it is unset the hook costs one check of a
//! `OnceLock` per commit. A malformed `commit:` value is ignored with a warning; other values
//! belong to the failpoints of [`crate::atomic_file`]. The crash test in
//! `tests/integration/index_conformance.rs` uses it to kill a child process at every commit of a build.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::local::{self, LocalEncoding, LocalRef};
use super::{IndexError, IndexKind, OpenMode};
use crate::metadata::PhotoMeta;
use crate::model::LocalFeatures;

const SEGMENT_MAGIC: &[u8; 8] = b"DOLGSEG1";
const MANIFEST: &str = "manifest.json";
const LOCK: &str = "lock";
const FORMAT: u32 = 1;

/// What produced the vectors. Indexes refuse to mix vectors whose fingerprints differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// Human name, e.g. `DOLG-R50` or `MobileNetV2-GeM (off-the-shelf, ImageNet)`.
    pub name: String,
    /// Descriptor width.
    pub dim: usize,
    /// SHA-256 of the weights file and every option that changes descriptors; `None` for an index
    /// made only of imported vectors.
    pub fingerprint: Option<String>,
    /// How to rebuild the model to describe new images (weights path or backbone, options).
    pub spec: Option<crate::spec::ModelSpec>,
}

impl ModelIdentity {
    /// Fail unless vectors from `model` may join a collection of this model (same fingerprint
    /// and width).
    pub fn accepts(&self, model: &ModelIdentity) -> Result<(), IndexError> {
        if self.fingerprint != model.fingerprint || self.dim != model.dim {
            return Err(IndexError::ModelMismatch {
                index: format!("{} ({}-d, fingerprint {})", self.name, self.dim, self.fingerprint.as_deref().unwrap_or("none")),
                given: format!("{} ({}-d, fingerprint {})", model.name, model.dim, model.fingerprint.as_deref().unwrap_or("none")),
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SegmentInfo {
    file: String,
    records: u64,
    bytes: u64,
    crc32: u32,
    /// The segment's local-feature file ([`super::local`]), when any of its adds carry some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local: Option<LocalFileInfo>,
    /// The segment's photo metadata file (`seg-N.meta`: a JSON array with one [`PhotoMeta`] or
    /// `null` per add, in order), when any of its adds carry some. Absent in segments written
    /// before metadata existed, and not serialised then, so their manifests keep their checksums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    meta: Option<LocalFileInfo>,
}

/// A file beside a segment: its local features or its photo metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LocalFileInfo {
    file: String,
    bytes: u64,
    /// CRC-32 of the whole file (for local features, each block and the offset table also carry
    /// their own, which is what reads check: that file is never read whole).
    crc32: u32,
}

/// What the local features stored with an index are: set when the index is created, and every
/// add's features must match it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalConfig {
    /// The local-feature extractor (e.g. `xfeat`, `delg`).
    pub extractor: String,
    /// Descriptor width.
    pub dim: usize,
    /// How the descriptors are stored on disk.
    pub encoding: LocalEncoding,
    /// The longest side every photo was brought to for extraction (XFeat: `Some(640)`, see
    /// `model::xfeat::CANONICAL_SIZE`). `None` for DELG, which follows the global model, and for
    /// XFeat indexes written before it existed (at most 1024, down only); not serialised then, so
    /// their manifests keep their checksums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManifestBody {
    format: u32,
    model: ModelIdentity,
    /// An [`IndexKind`]'s serde name, kept as a string here so that an unknown one is reported
    /// by name ([`IndexError::UnknownKind`]) after the checksum, not as an unreadable manifest.
    kind: String,
    segments: Vec<SegmentInfo>,
    next_segment: u64,
    /// The folder photo names are relative to (absolute). Absent in indexes written before it
    /// existed, whose names are absolute paths; skipped when absent so their manifests keep
    /// serialising, and checksumming, exactly as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root: Option<PathBuf>,
    /// Local features stored beside the vectors; absent (and not serialised) when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local: Option<LocalConfig>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    body: ManifestBody,
    /// CRC-32 of the body serialised compactly.
    crc32: u32,
}

/// Where each add of a segment has its local-feature block: `(offset, len)`, or `None`.
type LocalTable = Vec<Option<(u64, u32)>>;

/// One logged operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// `local`: the image's local features, for an index that stores them ([`LocalConfig`]).
    Add {
        /// The name the vector is stored under (replaces any live row of that name).
        name: String,
        /// SHA-256 of the image file's bytes, when known (to skip unchanged files).
        hash: Option<[u8; 32]>,
        /// The global descriptor, `dim` values.
        vector: Vec<f32>,
        /// The image's local features, if the index stores them.
        local: Option<LocalFeatures>,
        /// What the photo file says about itself (date taken, camera, …), for search filters.
        meta: Option<Box<PhotoMeta>>,
    },
    /// Remove the live row of a name (a tombstone).
    Remove {
        /// The name to remove.
        name: String,
    },
}

impl Record {
    /// An add without local features.
    pub fn add(name: impl Into<String>, hash: Option<[u8; 32]>, vector: Vec<f32>) -> Self {
        Record::Add { name: name.into(), hash, vector, local: None, meta: None }
    }
}

/// A stored row: every `Add` ever committed (until compaction), dead once superseded or removed.
#[derive(Debug, Clone)]
pub struct Row {
    /// The name the row was added under.
    pub name: String,
    /// SHA-256 of the image file's bytes, when known.
    pub hash: Option<[u8; 32]>,
    /// Whether this is the live row of its name (not superseded or removed).
    pub alive: bool,
    /// Where its local features are, if it has any ([`Store::local_features`]).
    pub local: Option<LocalRef>,
    /// Its photo's metadata, if it was added with some.
    pub meta: Option<Box<PhotoMeta>>,
}

/// The replayed contents of an index directory.
pub struct Store {
    dir: PathBuf,
    body: ManifestBody,
    kind: IndexKind,
    mode: OpenMode,
    rows: Vec<Row>,
    /// Row-major `[rows.len(), dim]`.
    vectors: Vec<f32>,
    live: HashMap<String, usize>,
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).field("rows", &self.rows.len()).field("live", &self.live.len()).finish()
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io { path: path.to_owned(), source }
}

/// Write `bytes` to `path` atomically (temporary file, fsync, rename, fsync dir); index files keep
/// the temporary file's private mode.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IndexError> {
    crate::atomic_file::write(path, crate::atomic_file::Mode::Private, bytes).map_err(io_err(path))
}

/// Writers hold an exclusive lock on `dir/lock`, readers a shared one, for the life of the Store.
fn lock_dir(dir: &Path, exclusive: bool) -> Result<File, IndexError> {
    let path = dir.join(LOCK);
    // Readers need no write access: on a read-only copy they open the existing lock file read-only.
    let f = if exclusive || !path.exists() { File::options().create(true).truncate(false).write(true).open(&path) } else { File::open(&path) }
        .map_err(io_err(&path))?;
    // A lock can outlive its holder by a moment: a process that forks while holding it (any
    // multi-threaded program spawning a child) keeps a copy of the descriptor until the child's
    // exec closes it. So "busy" is only said after a short grace period, not at the first try.
    let deadline = std::time::Instant::now() + LOCK_GRACE;
    loop {
        let got = if exclusive { f.try_lock() } else { f.try_lock_shared() };
        match got {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(std::fs::TryLockError::WouldBlock) => return Err(IndexError::Busy { path: dir.to_owned() }),
            Err(std::fs::TryLockError::Error(e)) => return Err(IndexError::Io { path, source: e }),
        }
    }
}

/// How long opening waits for a lock held by someone else before reporting the index busy.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailStage {
    /// After the segment is written, before the manifest rename.
    Segment,
    /// After the manifest rename.
    Manifest,
}

/// `DOLG_FAILPOINT=commit:N[:segment|manifest]`, read once (see the module documentation).
fn failpoint() -> Option<(u64, FailStage)> {
    static FAILPOINT: std::sync::OnceLock<Option<(u64, FailStage)>> = std::sync::OnceLock::new();
    *FAILPOINT.get_or_init(|| {
        let value = crate::failpoints::requested()?;
        let parsed = parse_failpoint(value);
        // Other values name failpoints elsewhere (crate::atomic_file's).
        if parsed.is_none() && value.starts_with("commit:") {
            tracing::warn!("ignoring DOLG_FAILPOINT={value:?}: expected commit:N or commit:N:segment or commit:N:manifest");
        }
        parsed
    })
}

fn parse_failpoint(value: &str) -> Option<(u64, FailStage)> {
    let mut parts = value.split(':');
    if parts.next()? != "commit" {
        return None;
    }
    let n: u64 = parts.next()?.parse().ok().filter(|&n| n > 0)?;
    let stage = match parts.next() {
        None | Some("segment") => FailStage::Segment,
        Some("manifest") => FailStage::Manifest,
        Some(_) => return None,
    };
    parts.next().is_none().then_some((n, stage))
}

/// Abort the process if the failpoint names commit `n` at `stage`.
fn failpoint_check(n: u64, stage: FailStage) {
    if failpoint() == Some((n, stage)) {
        crate::failpoints::crash(&format!("commit:{n}:{stage:?}"));
    }
}

/// Commits attempted by this process (for the failpoint).
static COMMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn encode_segment(dim: usize, records: &[Record]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(SEGMENT_MAGIC);
    b.extend_from_slice(&(dim as u32).to_le_bytes());
    b.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for r in records {
        let (kind, name, hash) = match r {
            Record::Add { name, hash, .. } => (1u8, name, *hash),
            Record::Remove { name } => (2u8, name, None),
        };
        b.push(kind);
        match hash {
            Some(h) => {
                b.push(1);
                b.extend_from_slice(&h);
            }
            None => b.push(0),
        }
        b.extend_from_slice(&(name.len() as u32).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
    }
    for r in records {
        if let Record::Add { vector, .. } = r {
            for v in vector {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn decode_segment(path: &Path, bytes: &[u8], dim: usize) -> Result<Vec<Record>, IndexError> {
    let corrupt = |reason: String| IndexError::Corrupt { path: path.to_owned(), reason };
    if bytes.len() < 24 || &bytes[..8] != SEGMENT_MAGIC {
        return Err(corrupt("not a dolg segment (bad magic or too short)".into()));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 4);
    let want = u32::from_le_bytes(trailer.try_into().unwrap());
    if crc32fast::hash(body) != want {
        return Err(corrupt("checksum mismatch".into()));
    }
    let mut pos = 8;
    let mut take = |n: usize| -> Result<&[u8], IndexError> {
        let s = body.get(pos..pos + n).ok_or_else(|| corrupt("truncated record table".into()))?;
        pos += n;
        Ok(s)
    };
    let seg_dim = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
    if seg_dim != dim {
        return Err(corrupt(format!("segment holds {seg_dim}-d vectors, the index is {dim}-d")));
    }
    let n = u64::from_le_bytes(take(8)?.try_into().unwrap()) as usize;
    let mut heads = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let kind = take(1)?[0];
        let hash = match take(1)?[0] {
            0 => None,
            1 => Some(<[u8; 32]>::try_from(take(32)?).unwrap()),
            x => return Err(corrupt(format!("bad hash flag {x}"))),
        };
        let len = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
        let name = String::from_utf8(take(len)?.to_vec()).map_err(|_| corrupt("name is not UTF-8".into()))?;
        heads.push((kind, name, hash));
    }
    let mut records = Vec::with_capacity(heads.len());
    for (kind, name, hash) in heads {
        records.push(match kind {
            1 => {
                let raw = take(dim * 4)?;
                Record::add(name, hash, raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
            }
            2 => Record::Remove { name },
            x => return Err(corrupt(format!("unknown record kind {x}"))),
        });
    }
    if pos != body.len() {
        return Err(corrupt(format!("{} unexpected trailing bytes", body.len() - pos)));
    }
    Ok(records)
}

/// The photo metadata of a segment's `adds` adds, from its `seg-N.meta` file (checked against the
/// manifest's size and CRC-32).
fn read_meta(path: &Path, info: &LocalFileInfo, adds: usize) -> Result<Vec<Option<PhotoMeta>>, IndexError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let corrupt = |reason: String| IndexError::Corrupt { path: path.to_owned(), reason };
    if bytes.len() as u64 != info.bytes || crc32fast::hash(&bytes) != info.crc32 {
        return Err(corrupt(format!("size or checksum differs from the manifest ({} bytes, expected {})", bytes.len(), info.bytes)));
    }
    let metas: Vec<Option<PhotoMeta>> = serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("unreadable photo metadata: {e}")))?;
    if metas.len() != adds {
        return Err(corrupt(format!("{} metadata entries for a segment of {adds} adds", metas.len())));
    }
    Ok(metas)
}

impl Store {
    /// Whether `dir` holds an index (has a `manifest.json`).
    pub fn exists(dir: &Path) -> bool {
        dir.join(MANIFEST).is_file()
    }

    /// Create an empty index in `dir` (created if needed; must not already hold an index),
    /// opened for writing.
    pub fn create(dir: &Path, model: ModelIdentity, kind: IndexKind) -> Result<Self, IndexError> {
        Self::create_with_root(dir, model, kind, None)
    }

    /// [`Store::create`] recording the folder photo names will be relative to.
    pub fn create_with_root(dir: &Path, model: ModelIdentity, kind: IndexKind, root: Option<PathBuf>) -> Result<Self, IndexError> {
        Self::create_with(dir, model, kind, root, None)
    }

    /// [`Store::create_with_root`] for an index that also stores local features.
    pub(crate) fn create_with(
        dir: &Path,
        model: ModelIdentity,
        kind: IndexKind,
        root: Option<PathBuf>,
        local: Option<LocalConfig>,
    ) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = lock_dir(dir, true)?;
        if Self::exists(dir) {
            return Err(IndexError::Exists { path: dir.to_owned() });
        }
        let body = ManifestBody { format: FORMAT, model, kind: kind.as_str().to_owned(), segments: Vec::new(), next_segment: 1, root, local };
        let store = Self { dir: dir.to_owned(), body, kind, mode: OpenMode::Write, rows: Vec::new(), vectors: Vec::new(), live: HashMap::new(), _lock: lock };
        store.write_manifest()?;
        Ok(store)
    }

    /// Open and verify an existing index (the manifest's and every segment's checksum). A store
    /// opened with [`OpenMode::Write`] excludes every other process; [`OpenMode::Read`] stores only
    /// exclude writers, and refuse to commit or compact.
    pub fn open(dir: &Path, mode: OpenMode) -> Result<Self, IndexError> {
        let mpath = dir.join(MANIFEST);
        if !mpath.is_file() {
            return Err(IndexError::NotAnIndex { path: dir.to_owned() });
        }
        let lock = lock_dir(dir, mode == OpenMode::Write)?;
        let text = std::fs::read(&mpath).map_err(io_err(&mpath))?;
        let corrupt = |reason: String| IndexError::Corrupt { path: mpath.clone(), reason };
        let m: Manifest = serde_json::from_slice(&text).map_err(|e| corrupt(format!("unreadable manifest: {e}")))?;
        let body_bytes = serde_json::to_vec(&m.body).expect("serialisable");
        if crc32fast::hash(&body_bytes) != m.crc32 {
            return Err(corrupt("manifest checksum mismatch".into()));
        }
        if m.body.format != FORMAT {
            return Err(corrupt(format!("format version {} (this dolg reads {FORMAT})", m.body.format)));
        }
        let kind = IndexKind::from_name(&m.body.kind).ok_or_else(|| IndexError::UnknownKind { path: mpath.clone(), kind: m.body.kind.clone() })?;
        let mut store = Self { dir: dir.to_owned(), body: m.body, kind, mode, rows: Vec::new(), vectors: Vec::new(), live: HashMap::new(), _lock: lock };
        for (i, seg) in store.body.segments.clone().into_iter().enumerate() {
            let path = dir.join(&seg.file);
            let bytes = std::fs::read(&path).map_err(io_err(&path))?;
            if bytes.len() as u64 != seg.bytes || crc32fast::hash(&bytes) != seg.crc32 {
                return Err(IndexError::Corrupt {
                    path,
                    reason: format!("size or checksum differs from the manifest ({} bytes, expected {})", bytes.len(), seg.bytes),
                });
            }
            let mut records = decode_segment(&path, &bytes, store.body.model.dim)?;
            let adds = records.iter().filter(|r| matches!(r, Record::Add { .. })).count();
            if let Some(m) = &seg.meta {
                let metas = read_meta(&dir.join(&m.file), m, adds)?;
                let slots = records.iter_mut().filter_map(|r| match r {
                    Record::Add { meta, .. } => Some(meta),
                    Record::Remove { .. } => None,
                });
                slots.zip(metas).for_each(|(slot, m)| *slot = m.map(Box::new));
            }
            let table = match &seg.local {
                Some(l) => local::read_table(&dir.join(&l.file), l.bytes, adds)?,
                None => Vec::new(),
            };
            store.apply(records, i as u32, &table);
        }
        Ok(store)
    }

    /// Replay the records of segment `segment`, whose `i`-th add has its local features at
    /// `table[i]` (an empty table: none); returns the rows that died (superseded or removed).
    fn apply(&mut self, records: Vec<Record>, segment: u32, table: &[Option<(u64, u32)>]) -> Vec<usize> {
        let dim = self.body.model.dim;
        let mut died = Vec::new();
        let mut adds = 0;
        for r in records {
            match r {
                Record::Add { name, hash, vector, meta, .. } => {
                    let local = table.get(adds).copied().flatten().map(|(offset, len)| LocalRef { segment, offset, len });
                    adds += 1;
                    debug_assert_eq!(vector.len(), dim);
                    if let Some(old) = self.live.insert(name.clone(), self.rows.len()) {
                        self.rows[old].alive = false;
                        died.push(old);
                    }
                    self.rows.push(Row { name, hash, alive: true, local, meta });
                    self.vectors.extend_from_slice(&vector);
                }
                Record::Remove { name } => {
                    if let Some(old) = self.live.remove(&name) {
                        self.rows[old].alive = false;
                        died.push(old);
                    }
                }
            }
        }
        died
    }

    fn write_manifest(&self) -> Result<(), IndexError> {
        let body_bytes = serde_json::to_vec(&self.body).expect("serialisable");
        let m = Manifest { body: self.body.clone(), crc32: crc32fast::hash(&body_bytes) };
        write_atomic(&self.dir.join(MANIFEST), &serde_json::to_vec_pretty(&m).expect("serialisable"))
    }

    /// Durably append a batch. On return the batch survives a crash; on error the index is
    /// unchanged. Returns the rows that died; the new rows are the ones past the old row count.
    pub fn commit(&mut self, records: Vec<Record>) -> Result<Vec<usize>, IndexError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.check_writable()?;
        let dim = self.body.model.dim;
        let mut blocks = Vec::new();
        for r in &records {
            if let Record::Add { name, vector, local, .. } = r {
                if vector.len() != dim {
                    return Err(IndexError::Dimension { name: name.clone(), expected: dim, found: vector.len() });
                }
                blocks.push(match (local, &self.body.local) {
                    (None, _) => None,
                    (Some(f), Some(cfg)) if f.dim == cfg.dim && f.is_consistent() => Some(local::encode_block(f, cfg.encoding)),
                    (Some(f), cfg) => return Err(IndexError::LocalMismatch { name: name.clone(), given: f.dim, index: cfg.as_ref().map(|c| c.dim) }),
                });
            }
        }
        let nth = COMMITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let (info, table) = self.write_segment(&records, blocks)?;
        failpoint_check(nth, FailStage::Segment);
        let mut body = self.body.clone();
        body.segments.push(info);
        body.next_segment += 1;
        let previous = std::mem::replace(&mut self.body, body);
        if let Err(e) = self.write_manifest() {
            self.body = previous;
            return Err(e);
        }
        failpoint_check(nth, FailStage::Manifest);
        let died = self.apply(records, self.body.segments.len() as u32 - 1, &table);
        self.remove_orphans();
        Ok(died)
    }

    /// Write segment `next_segment` and, when any block is present, its local file (before the
    /// manifest names either, so a crash leaves only orphans). Returns its manifest entry and the
    /// blocks' locations.
    fn write_segment(&self, records: &[Record], blocks: Vec<Option<Vec<u8>>>) -> Result<(SegmentInfo, LocalTable), IndexError> {
        let file = format!("seg-{:08}.bin", self.body.next_segment);
        let (local, table) = if blocks.iter().any(Option::is_some) {
            let name = format!("seg-{:08}.local", self.body.next_segment);
            let (bytes, table) = local::encode_file(&blocks);
            write_atomic(&self.dir.join(&name), &bytes)?;
            (Some(LocalFileInfo { file: name, bytes: bytes.len() as u64, crc32: crc32fast::hash(&bytes) }), table)
        } else {
            (None, Vec::new())
        };
        let metas: Vec<Option<&PhotoMeta>> = records
            .iter()
            .filter_map(|r| match r {
                Record::Add { meta, .. } => Some(meta.as_deref()),
                Record::Remove { .. } => None,
            })
            .collect();
        let meta = if metas.iter().any(Option::is_some) {
            let name = format!("seg-{:08}.meta", self.body.next_segment);
            let bytes = serde_json::to_vec(&metas).expect("serialisable");
            write_atomic(&self.dir.join(&name), &bytes)?;
            Some(LocalFileInfo { file: name, bytes: bytes.len() as u64, crc32: crc32fast::hash(&bytes) })
        } else {
            None
        };
        let bytes = encode_segment(self.body.model.dim, records);
        write_atomic(&self.dir.join(&file), &bytes)?;
        Ok((SegmentInfo { file, records: records.len() as u64, bytes: bytes.len() as u64, crc32: crc32fast::hash(&bytes), local, meta }, table))
    }

    /// Rewrite all live rows into one segment (drops dead rows and tombstones).
    pub fn compact(&mut self) -> Result<(), IndexError> {
        self.check_writable()?;
        let records: Vec<Record> = self
            .live_rows()
            .map(|(i, r)| Record::Add { name: r.name.clone(), hash: r.hash, vector: self.vector(i).to_vec(), local: None, meta: r.meta.clone() })
            .collect();
        // Blocks are copied as they are (checksum verified), not decoded and re-encoded.
        let blocks =
            self.live_rows().map(|(_, r)| r.local.map(|l| local::read_raw(&self.local_path(l), l.offset, l.len)).transpose()).collect::<Result<Vec<_>, _>>()?;
        let (info, table) = self.write_segment(&records, blocks)?;
        let mut body = self.body.clone();
        body.segments = vec![info];
        body.next_segment += 1;
        let previous = std::mem::replace(&mut self.body, body);
        if let Err(e) = self.write_manifest() {
            self.body = previous;
            return Err(e);
        }
        self.rows.clear();
        self.vectors.clear();
        self.live.clear();
        self.apply(records, 0, &table);
        self.remove_orphans();
        Ok(())
    }

    fn check_writable(&self) -> Result<(), IndexError> {
        match self.mode {
            OpenMode::Write => Ok(()),
            OpenMode::Read => Err(IndexError::ReadOnly { path: self.dir.clone() }),
        }
    }

    fn remove_orphans(&self) {
        let keep: std::collections::HashSet<&str> = self
            .body
            .segments
            .iter()
            .flat_map(|s| std::iter::once(s.file.as_str()).chain(s.local.as_ref().map(|l| l.file.as_str())).chain(s.meta.as_ref().map(|m| m.file.as_str())))
            .collect();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("seg-") && (name.ends_with(".bin") || name.ends_with(".local") || name.ends_with(".meta")) && !keep.contains(name.as_str())
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What local features this index stores, if any.
    pub fn local_config(&self) -> Option<&LocalConfig> {
        self.body.local.as_ref()
    }

    fn local_path(&self, l: LocalRef) -> PathBuf {
        let seg = &self.body.segments[l.segment as usize];
        self.dir.join(&seg.local.as_ref().expect("a LocalRef points into a segment with a local file").file)
    }

    /// The local features of `row` (read from disk, checksum verified), or `None` when that row
    /// was added without any.
    pub fn local_features(&self, row: usize) -> Result<Option<LocalFeatures>, IndexError> {
        self.rows[row].local.map(|l| local::read_block(&self.local_path(l), l.offset, l.len)).transpose()
    }
    /// The folder photo names are relative to, if the index records one.
    pub fn root(&self) -> Option<&Path> {
        self.body.root.as_deref()
    }

    /// Record a new root folder (the photos moved): one atomic manifest replacement.
    pub fn set_root(&mut self, root: PathBuf) -> Result<(), IndexError> {
        self.check_writable()?;
        let mut body = self.body.clone();
        body.root = Some(root);
        let previous = std::mem::replace(&mut self.body, body);
        if let Err(e) = self.write_manifest() {
            self.body = previous;
            return Err(e);
        }
        Ok(())
    }

    /// Who made the vectors (name, width, fingerprint, spec).
    pub fn model(&self) -> &ModelIdentity {
        &self.body.model
    }
    /// The search backend recorded in the manifest.
    pub fn kind(&self) -> IndexKind {
        self.kind
    }
    /// How this store was opened.
    pub fn mode(&self) -> OpenMode {
        self.mode
    }
    /// Identifies the current numbering of rows: it changes when [`Store::compact`] renumbers
    /// them, and only then (commits append rows, keeping every existing id). Derived files such as
    /// the HNSW graph record it to tell whether their row ids still mean the same vectors.
    pub fn epoch(&self) -> u64 {
        // Commits append segment next_segment; compaction leaves the single segment it wrote. So
        // the segments are always numbered consecutively from the last compaction's (or from 1).
        self.body.next_segment - self.body.segments.len() as u64
    }
    /// Descriptor width.
    pub fn dim(&self) -> usize {
        self.body.model.dim
    }
    /// Number of segment files.
    pub fn segments(&self) -> usize {
        self.body.segments.len()
    }
    /// Every row ever added since the last compaction, live or not; ids are positions here.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }
    /// Every row's vector, `[rows().len(), dim]` row-major (dead rows included).
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }
    /// The vector of `row`, `dim` values.
    pub fn vector(&self, row: usize) -> &[f32] {
        let d = self.dim();
        &self.vectors[row * d..(row + 1) * d]
    }
    /// One flag per row (by row id): whether it is live. The mask exact searches take.
    pub fn live_mask(&self) -> Vec<bool> {
        self.rows().iter().map(|r| r.alive).collect()
    }
    /// Number of live rows.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }
    /// The live row of `name`, if any.
    pub fn lookup(&self, name: &str) -> Option<usize> {
        self.live.get(name).copied()
    }
    /// The live rows with their ids.
    pub fn live_rows(&self) -> impl Iterator<Item = (usize, &Row)> {
        self.rows.iter().enumerate().filter(|(_, r)| r.alive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(dim: usize) -> ModelIdentity {
        ModelIdentity { name: "test".into(), dim, fingerprint: Some("abc".into()), spec: None }
    }

    #[test]
    fn segment_round_trip_and_corruption_detected() {
        let recs = vec![Record::add("a.jpg", Some([7; 32]), vec![1.0, 2.0]), Record::Remove { name: "b.jpg".into() }, Record::add("c", None, vec![-1.0, 0.5])];
        let bytes = encode_segment(2, &recs);
        assert_eq!(decode_segment(Path::new("s"), &bytes, 2).unwrap(), recs);
        for i in [0, 9, 30, bytes.len() - 9, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(matches!(decode_segment(Path::new("s"), &bad, 2), Err(IndexError::Corrupt { .. })), "flip at {i}");
        }
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode_segment(Path::new("s"), &bytes[..cut], 2).is_err());
        }
    }

    fn feats(n: usize, seed: f32) -> LocalFeatures {
        let mut f = LocalFeatures::empty(4);
        for i in 0..n {
            f.locations.push([seed + i as f32, 2.0 * i as f32]);
            f.descriptors.extend([0.5f32, -0.5, 0.5, -0.5]);
            f.scores.push(10.0 - i as f32);
            f.scales.push(1.0);
        }
        f
    }

    #[test]
    fn metadata_follows_its_rows_through_supersede_remove_reopen_and_compact_and_corruption_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let meta = |t: i64| PhotoMeta {
            taken: Some(t),
            camera: Some(format!("cam {t}")),
            gps: Some([1.5, -2.25]),
            width: Some(3),
            height: Some(4),
            filesize: Some(5),
        };
        let add = |name: &str, m: Option<PhotoMeta>| Record::Add { name: name.into(), hash: None, vector: vec![1.0, 0.0], local: None, meta: m.map(Box::new) };
        let mut s = Store::create(dir.path(), model(2), IndexKind::Exact).unwrap();
        s.commit(vec![add("a", Some(meta(1))), add("b", None), add("c", Some(meta(3)))]).unwrap();
        s.commit(vec![add("a", Some(meta(10))), Record::Remove { name: "c".into() }]).unwrap();
        // A segment without metadata writes no metadata file.
        s.commit(vec![add("d", None)]).unwrap();
        let check = |s: &Store| {
            let get = |name: &str| s.rows()[s.lookup(name).unwrap()].meta.as_deref().cloned();
            assert_eq!((get("a"), get("b"), get("d")), (Some(meta(10)), None, None));
        };
        let metas = |d: &Path| std::fs::read_dir(d).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".meta")).count();
        check(&s);
        assert_eq!(metas(dir.path()), 2);
        drop(s);
        let mut s = Store::open(dir.path(), OpenMode::Write).unwrap();
        check(&s);
        s.compact().unwrap();
        check(&s);
        assert_eq!(metas(dir.path()), 1, "compaction leaves one metadata file");
        drop(s);
        check(&Store::open(dir.path(), OpenMode::Read).unwrap());
        // A changed byte is caught by the manifest's checksum of the file.
        let file = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "meta")).unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        match Store::open(dir.path(), OpenMode::Read) {
            Err(IndexError::Corrupt { path, .. }) => assert_eq!(path, file),
            other => panic!("{other:?}"),
        }
    }

    fn local_cfg() -> Option<LocalConfig> {
        Some(LocalConfig { extractor: "test".into(), dim: 4, encoding: LocalEncoding::F16, size: None })
    }

    #[test]
    fn local_features_follow_their_rows_through_supersede_remove_reopen_and_compact() {
        let dir = tempfile::tempdir().unwrap();
        let add = |name: &str, n: Option<usize>, seed: f32| Record::Add {
            name: name.into(),
            hash: None,
            vector: vec![1.0, 0.0],
            meta: None,
            local: n.map(|n| feats(n, seed)),
        };
        let mut s = Store::create_with(dir.path(), model(2), IndexKind::Exact, None, local_cfg()).unwrap();
        s.commit(vec![add("a", Some(3), 100.0), add("b", None, 0.0), add("c", Some(2), 200.0)]).unwrap();
        s.commit(vec![add("a", Some(5), 300.0), Record::Remove { name: "c".into() }]).unwrap();
        // A segment without any local features writes no local file.
        s.commit(vec![add("d", None, 0.0)]).unwrap();
        let check = |s: &Store| {
            let get = |name: &str| s.local_features(s.lookup(name).unwrap()).unwrap();
            assert_eq!(get("a"), Some(feats(5, 300.0)));
            assert_eq!(get("b"), None);
            assert_eq!(get("d"), None);
            assert!(s.lookup("c").is_none());
        };
        check(&s);
        let locals = |d: &Path| std::fs::read_dir(d).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".local")).count();
        assert_eq!(locals(dir.path()), 2);
        drop(s);
        let mut s = Store::open(dir.path(), OpenMode::Write).unwrap();
        check(&s);
        assert_eq!(s.local_config(), local_cfg().as_ref());
        s.compact().unwrap();
        check(&s);
        assert_eq!(locals(dir.path()), 1, "compaction leaves one local file");
        drop(s);
        check(&Store::open(dir.path(), OpenMode::Read).unwrap());
    }

    #[test]
    fn local_features_of_the_wrong_width_or_for_an_index_without_them_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(dir.path(), model(2), IndexKind::Exact).unwrap();
        let rec = Record::Add { name: "a".into(), hash: None, vector: vec![1.0, 0.0], local: Some(feats(1, 0.0)), meta: None };
        assert!(matches!(s.commit(vec![rec.clone()]), Err(IndexError::LocalMismatch { index: None, .. })));
        let dir2 = tempfile::tempdir().unwrap();
        let mut s2 = Store::create_with(
            dir2.path(),
            model(2),
            IndexKind::Exact,
            None,
            Some(LocalConfig { extractor: "t".into(), dim: 8, encoding: LocalEncoding::Int8, size: None }),
        )
        .unwrap();
        assert!(matches!(s2.commit(vec![rec]), Err(IndexError::LocalMismatch { index: Some(8), given: 4, .. })));
        assert_eq!(s.rows().len() + s2.rows().len(), 0);
    }

    #[test]
    fn a_damaged_local_table_is_reported_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create_with(dir.path(), model(2), IndexKind::Exact, None, local_cfg()).unwrap();
        s.commit(vec![Record::Add { name: "a".into(), hash: None, vector: vec![1.0, 0.0], local: Some(feats(2, 0.0)), meta: None }]).unwrap();
        drop(s);
        let f = std::fs::read_dir(dir.path()).unwrap().flatten().find(|e| e.file_name().to_string_lossy().ends_with(".local")).unwrap().path();
        let mut bytes = std::fs::read(&f).unwrap();
        bytes[17] ^= 1;
        std::fs::write(&f, &bytes).unwrap();
        assert!(matches!(Store::open(dir.path(), OpenMode::Read), Err(IndexError::Corrupt { .. })));
    }

    #[test]
    fn replay_supersedes_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(dir.path(), model(2), IndexKind::Exact).unwrap();
        s.commit(vec![Record::add("a", None, vec![1.0, 0.0]), Record::add("b", None, vec![0.0, 1.0])]).unwrap();
        s.commit(vec![Record::add("a", None, vec![0.6, 0.8]), Record::Remove { name: "b".into() }]).unwrap();
        drop(s);
        let s = Store::open(dir.path(), OpenMode::Read).unwrap();
        assert_eq!(s.live_count(), 1);
        assert_eq!(s.vector(s.lookup("a").unwrap()), &[0.6, 0.8]);
        assert!(s.lookup("b").is_none());
    }

    #[test]
    fn second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _s = Store::create(dir.path(), model(2), IndexKind::Exact).unwrap();
        assert!(matches!(Store::open(dir.path(), OpenMode::Read), Err(IndexError::Busy { .. })));
    }

    /// A manifest as dolg has always written it (kind as the string "exact").
    fn manifest_text(kind: &str, crc32: u32) -> String {
        format!(
            r#"{{
  "body": {{
    "format": 1,
    "model": {{
      "name": "test",
      "dim": 2,
      "fingerprint": "abc",
      "spec": null
    }},
    "kind": "{kind}",
    "segments": [],
    "next_segment": 1
  }},
  "crc32": {crc32}
}}"#
        )
    }

    #[test]
    fn kind_is_read_from_existing_manifests_and_unknown_kinds_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), manifest_text("exact", 1019842226)).unwrap();
        let s = Store::open(dir.path(), OpenMode::Read).unwrap();
        assert_eq!(s.kind(), IndexKind::Exact);
        drop(s);
        std::fs::write(dir.path().join(MANIFEST), manifest_text("ivf", 679099068)).unwrap();
        match Store::open(dir.path(), OpenMode::Read) {
            Err(IndexError::UnknownKind { path, kind }) => {
                assert_eq!(kind, "ivf");
                assert_eq!(path, dir.path().join(MANIFEST));
            }
            other => panic!("expected UnknownKind, got {other:?}"),
        }
        // Written manifests keep the same spelling.
        let dir = tempfile::tempdir().unwrap();
        drop(Store::create(dir.path(), model(2), IndexKind::Hnsw).unwrap());
        assert!(std::fs::read_to_string(dir.path().join(MANIFEST)).unwrap().contains(r#""kind": "hnsw""#));
        assert_eq!(Store::open(dir.path(), OpenMode::Read).unwrap().kind(), IndexKind::Hnsw);
        for k in IndexKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::Value::String(k.as_str().into()));
            assert_eq!(IndexKind::from_name(k.as_str()), Some(k));
        }
    }

    #[test]
    fn read_only_store_refuses_to_change() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::create(dir.path(), model(2), IndexKind::Exact).unwrap());
        let mut s = Store::open(dir.path(), OpenMode::Read).unwrap();
        let rec = Record::add("a", None, vec![1.0, 0.0]);
        assert!(matches!(s.commit(vec![rec]), Err(IndexError::ReadOnly { .. })));
        assert!(matches!(s.compact(), Err(IndexError::ReadOnly { .. })));
        assert_eq!(s.segments(), 0);
    }

    #[test]
    fn epoch_changes_with_compaction_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::create(dir.path(), model(2), IndexKind::Exact).unwrap();
        let e0 = s.epoch();
        for name in ["a", "b", "c"] {
            s.commit(vec![Record::add(name, None, vec![1.0, 0.0])]).unwrap();
            assert_eq!(s.epoch(), e0);
        }
        s.compact().unwrap();
        let e1 = s.epoch();
        assert_ne!(e1, e0);
        s.commit(vec![Record::Remove { name: "a".into() }]).unwrap();
        assert_eq!(s.epoch(), e1);
        drop(s);
        assert_eq!(Store::open(dir.path(), OpenMode::Read).unwrap().epoch(), e1);
    }

    #[test]
    fn failpoint_values() {
        assert_eq!(parse_failpoint("commit:3"), Some((3, FailStage::Segment)));
        assert_eq!(parse_failpoint("commit:1:segment"), Some((1, FailStage::Segment)));
        assert_eq!(parse_failpoint("commit:12:manifest"), Some((12, FailStage::Manifest)));
        for bad in ["", "commit", "commit:0", "commit:x", "commit:2:later", "compact:1", "commit:1:segment:x"] {
            assert_eq!(parse_failpoint(bad), None, "{bad}");
        }
    }
}
