//! A persistent, incremental index of descriptors: durable storage ([`store`]) plus a search
//! backend ([`backend`]: [`exact`] brute force, or an approximate [`hnsw`] graph).
//!
//! # Files and who writes them
//!
//! The segments and the manifest ([`store`]) are the truth; only a writer ([`OpenMode::Write`],
//! an exclusive lock) changes them, through [`Index::commit`] and [`Index::compact`]. A backend may
//! keep a derived file beside them (the HNSW graph, `hnsw.graph`): a cache of the segments that
//! records the store's row epoch ([`Store::epoch`]) and is checked against the store's live rows
//! on every open.
//!
//! * **Re-synchronised once, by whoever opens first.** When an open finds the graph missing,
//!   damaged, of an older format, or behind the store (a writer that crashed or never called
//!   [`Index::flush`]), it brings the graph in line with the store and saves it at once,
//!   atomically, whether the index was opened to write or only to read
//!   ([`Index::graph_resynced`] says how many rows that took). A reader may write this file
//!   because it holds the shared lock, so no writer can exist meanwhile, and concurrent readers
//!   of the same manifest write equivalent graphs (each replaces the file atomically; the last
//!   one wins). Where the save fails (a read-only file system, a copy without write access) the
//!   reader carries on with the graph in memory; the failure is logged at debug level only, and
//!   the next open re-synchronises again.
//! * **Writers save explicitly.** After committing, a writer calls [`Index::flush`] to save the
//!   graph. Nothing is written when an [`Index`] is dropped: a writer that ends without `flush`
//!   (an error, a crash) leaves the graph behind the segments, which the next open repairs.

pub mod backend;
pub mod exact;
pub mod hnsw;
pub mod local;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod store;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use backend::{ExactBackend, HnswBackend, SearchBackend};
pub use exact::Hit;
pub use hnsw::{HnswError, HnswIndex};
pub use local::LocalEncoding;
pub use store::{LocalConfig, ModelIdentity, Record, Row, Store};

/// Whether `db` names PostgreSQL servers (`postgres://` or `postgresql://` URLs, see
/// `index::postgres`) rather than a local index folder; defined in every build, so a build without
/// the `postgres` feature can say what it was given.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// The folder an entry's name lies in, as filters see it: its parent, without a leading `/`
/// (empty for a name without one).
pub fn folder_of(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(p, _)| p).trim_start_matches('/')
}

/// Why an index could not be created, opened, read, changed or searched.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A file of the index could not be read, written or locked.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A file of the index is damaged; it was not used.
    #[error("{path}: corrupt index file ({reason}); it was not used. Restore it from a backup or rebuild the index")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The manifest names a backend this dolg does not know.
    #[error("{path}: unknown index kind '{kind}' (this dolg knows exact and hnsw); it may have been written by a newer dolg")]
    UnknownKind {
        /// The manifest file.
        path: PathBuf,
        /// The unknown kind name.
        kind: String,
    },
    /// The directory holds no `manifest.json`.
    #[error("{path} is not a dolg index (no manifest.json); create one with `dolg index build`")]
    NotAnIndex {
        /// The directory opened as an index.
        path: PathBuf,
    },
    /// An index cannot be created where one already exists.
    #[error("{path} already holds an index")]
    Exists {
        /// The directory that already holds an index.
        path: PathBuf,
    },
    /// The index is locked by another process.
    #[error("{path} is in use by another dolg process")]
    Busy {
        /// The index directory.
        path: PathBuf,
    },
    /// A change was asked of an index opened with [`OpenMode::Read`].
    #[error("{path} was opened read-only; open it with OpenMode::Write to change it")]
    ReadOnly {
        /// The index directory.
        path: PathBuf,
    },
    /// A vector does not have the index's dimension.
    #[error("'{name}': vector has {found} values, the index holds {expected}-d vectors")]
    Dimension {
        /// The item (or "query", or the batch) whose vector is wrong.
        name: String,
        /// The index's descriptor width.
        expected: usize,
        /// The number of values given.
        found: usize,
    },
    /// Vectors from a different model (fingerprint or width) than the index was built with.
    #[error("the index was built with {index}; refusing to mix in vectors from {given}")]
    ModelMismatch {
        /// The index's model: name, width and fingerprint.
        index: String,
        /// The model of the rejected vectors: name, width and fingerprint.
        given: String,
    },
    /// Local features that the index cannot store: it stores none, or of another width.
    #[error("'{name}': local features of {given} dims, but the index stores {}", index.map_or("none (build it with --local)".to_string(), |d| format!("{d}-d ones")))]
    LocalMismatch {
        /// The item whose local features were rejected.
        name: String,
        /// The width of the given local features.
        given: usize,
        /// The width the index stores, `None` if it stores no local features.
        index: Option<usize>,
    },
    /// A row was added to the search backend twice.
    #[error("row {row} is already in the search backend")]
    DuplicateRow {
        /// The store row.
        row: usize,
    },
    /// A PostgreSQL shard could not be reached, or refused or failed a statement.
    #[error("PostgreSQL shard {shard}: {reason}")]
    Shard {
        /// The shard's primary, `host:port/db` (or the whole `--db` value).
        shard: String,
        /// What went wrong, with the server's words.
        reason: String,
    },
    /// The approximate (HNSW) graph failed.
    #[error("approximate index: {0}")]
    Hnsw(#[from] HnswError),
}

/// Search backends. All of them answer the same questions over the same [`Store`]. Stored in the
/// manifest by its lowercase name (`"exact"`, `"hnsw"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// Brute-force inner product over every live vector: exact, no build cost.
    Exact,
    /// Approximate HNSW graph (usearch; M=16, ef_construction=128, ef_search=64 by default):
    /// sub-linear search for large collections, at some recall cost (`dolg index info --recall`).
    Hnsw,
}

impl IndexKind {
    /// Every kind, in declaration order.
    pub const ALL: [IndexKind; 2] = [IndexKind::Exact, IndexKind::Hnsw];

    /// The name stored in the manifest (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            IndexKind::Exact => "exact",
            IndexKind::Hnsw => "hnsw",
        }
    }

    /// The kind stored under `name`, if this dolg knows it.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for IndexKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an index is opened: [`OpenMode::Read`] takes a shared lock (other readers may open it at
/// the same time, writers may not); [`OpenMode::Write`] an exclusive one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpenMode {
    /// Shared lock: read and search only; other readers may open the index at the same time.
    Read,
    /// Exclusive lock: may commit and compact.
    Write,
}

/// A result with its indexed name.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedHit {
    /// The store row of the result.
    pub row: usize,
    /// The name the item was indexed under.
    pub name: String,
    /// Global similarity.
    pub score: f32,
    /// RANSAC inliers, for results that spatial re-ranking verified.
    pub inliers: Option<u32>,
}

/// An opened index: verified storage plus its search backend.
#[derive(Debug)]
pub struct Index {
    store: Store,
    /// Holds exactly the store's live rows (after every successful commit).
    backend: Box<dyn SearchBackend>,
    /// Rows the open had to add to or remove from the saved backend state.
    resynced: usize,
}

impl Index {
    /// Create an empty index of `kind` in `dir`, opened for writing.
    pub fn create(dir: &Path, model: ModelIdentity, kind: IndexKind) -> Result<Self, IndexError> {
        Self::create_with_root(dir, model, kind, None)
    }

    /// [`Index::create`] recording the folder photo names are relative to ([`Store::root`]).
    pub fn create_with_root(dir: &Path, model: ModelIdentity, kind: IndexKind, root: Option<PathBuf>) -> Result<Self, IndexError> {
        Self::create_with(dir, model, kind, root, None)
    }

    /// [`Index::create_with_root`] for an index that also stores local features ([`LocalConfig`]).
    pub(crate) fn create_with(
        dir: &Path,
        model: ModelIdentity,
        kind: IndexKind,
        root: Option<PathBuf>,
        local: Option<LocalConfig>,
    ) -> Result<Self, IndexError> {
        let store = Store::create_with(dir, model, kind, root, local)?;
        let mut backend = backend::create(kind, store.dim())?;
        // Replaces any graph file left in the directory by an index that was deleted without it.
        backend.persist(&store)?;
        Ok(Self { store, backend, resynced: 0 })
    }

    /// Open and verify an existing index. The backend's saved state is brought in line with the
    /// store and, if it had to change, saved again at once (see the module documentation).
    pub fn open(dir: &Path, mode: OpenMode) -> Result<Self, IndexError> {
        let store = Store::open(dir, mode)?;
        let (mut backend, resynced) = backend::open(store.kind(), &store)?;
        if let Err(e) = backend.persist(&store) {
            // A read-only copy or file system: search with the graph in memory.
            tracing::debug!("could not save the re-synchronised search graph ({e}); the next open will repeat the work");
        }
        Ok(Self { store, backend, resynced })
    }

    /// Record the folder photo names are relative to ([`Store::set_root`]).
    pub fn set_root(&mut self, root: PathBuf) -> Result<(), IndexError> {
        self.store.set_root(root)
    }

    /// The durable storage: segments, manifest and rows.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The search backend this index uses.
    pub fn kind(&self) -> IndexKind {
        self.store.kind()
    }

    /// The open mode this index was opened with ([`Index::create`] opens for writing).
    pub fn mode(&self) -> OpenMode {
        self.store.mode()
    }

    /// How many rows [`Index::open`] had to add to or remove from the backend's saved state (for
    /// HNSW: graph insertions and removals) to match the store; 0 when the saved state was current.
    pub fn graph_resynced(&self) -> usize {
        self.resynced
    }

    /// Fail unless vectors from `model` may join this index.
    pub fn check_model(&self, model: &ModelIdentity) -> Result<(), IndexError> {
        self.store.model().accepts(model)
    }

    /// True when `name` is indexed with exactly this content hash (so it need not be extracted again).
    pub fn is_current(&self, name: &str, hash: &[u8; 32]) -> bool {
        self.store.lookup(name).is_some_and(|r| self.store.rows()[r].hash.as_ref() == Some(hash))
    }

    /// Durably append a batch, then update the backend to match. If the backend fails after the
    /// store committed (out of memory), the batch is still durable and the next open repairs the
    /// backend.
    pub fn commit(&mut self, records: Vec<Record>) -> Result<(), IndexError> {
        let before = self.store.rows().len();
        let died = self.store.commit(records)?;
        for r in died.into_iter().filter(|&r| r < before) {
            self.backend.remove(r)?;
        }
        let rows: Vec<usize> = (before..self.store.rows().len()).filter(|&r| self.store.rows()[r].alive).collect();
        let vectors: Vec<f32> = rows.iter().flat_map(|&r| self.store.vector(r).iter().copied()).collect();
        self.backend.add(&rows, &vectors)
    }

    /// Save the backend's derived files if they changed (the segments are already durable).
    /// Writers call it once they are done; nothing is saved on drop, and if it never runs, the
    /// next open re-synchronises.
    pub fn flush(&mut self) -> Result<(), IndexError> {
        self.backend.persist(&self.store).map(|_| ())
    }

    /// Top `k` live entries for each query ([nq, dim] row-major), best first, scores at least `min_score`.
    pub fn search(&self, queries: &[f32], k: usize, min_score: f32) -> Result<Vec<Vec<NamedHit>>, IndexError> {
        self.search_where(queries, k, min_score, None)
    }

    /// [`search`](Self::search) among the rows `keep` marks (indexed by row id; all when `None`).
    pub fn search_where(&self, queries: &[f32], k: usize, min_score: f32, keep: Option<&[bool]>) -> Result<Vec<Vec<NamedHit>>, IndexError> {
        let s = &self.store;
        Ok(self
            .backend
            .search_where(s, queries, k, min_score, keep)?
            .into_iter()
            .map(|hits| hits.into_iter().map(|h| NamedHit { row: h.row, name: s.rows()[h.row].name.clone(), score: h.score, inliers: None }).collect())
            .collect())
    }

    /// Exact results regardless of the backend (for measuring an approximate index's recall).
    pub(crate) fn search_exact(&self, queries: &[f32], k: usize) -> Vec<Vec<usize>> {
        let s = &self.store;
        let alive = s.live_mask();
        exact::search(s.vectors(), s.dim(), Some(&alive), queries, k, f32::MIN).into_iter().map(|h| h.into_iter().map(|h| h.row).collect()).collect()
    }

    /// HNSW: candidates examined per query (higher = better recall, slower). No effect on exact search.
    pub fn set_ef_search(&mut self, ef: usize) {
        self.backend.set_ef_search(ef);
    }

    /// Compact the store; row ids change, so the backend is rebuilt from the live rows (saved by
    /// the next [`Index::flush`]).
    pub fn compact(&mut self) -> Result<(), IndexError> {
        self.store.compact()?;
        self.backend = backend::rebuild(self.store.kind(), &self.store)?;
        Ok(())
    }
}
