//! Approximate nearest-neighbour index over L2-normalised f32 descriptors, inner-product
//! similarity (= cosine on unit vectors), backed by `usearch` (which needs a C++17 compiler at
//! build time). The on-disk format lives in `file.rs`, the tests in `tests.rs`.
//!
//! Notes:
//! * usearch's `MetricKind::IP` returns the *distance* `1 - dot`; this module converts it back,
//!   so `search` returns `(id, dot)` with the best (largest dot) first.
//! * `usearch::IndexOptions::default()` quantises to **BF16**; this module sets F32 explicitly.
//! * usearch can only add into reserved capacity. This module grows it (doubling) for you.
//! * Duplicate ids are rejected (`multi = false`); `remove` really removes, and the slot is reused.
//! * `add_batch` inserts one vector at a time: concurrent `add` in usearch 2.26.x leaves a few
//!   nodes stored but unreachable by any search (unum-cloud/USearch#735, fix proposed in PR #772).
//! * File format: the plain usearch image followed by a 40-byte trailer (magic, format version,
//!   dim, ef_search, image length, a caller's tag, CRC-32 of everything before it). `load` checks
//!   the trailer and checksum *before* handing the bytes to usearch, whose loader does not check
//!   the graph itself. `save` replaces the file atomically through [`crate::atomic_file`].
//! * `search(&self)` may be called from many threads at once. usearch serves at most the
//!   reserved number of "thread contexts" concurrently; past that it returns the misleading
//!   error "Reserve capacity ahead of searches!". This module reserves max(8, 2 x cores)
//!   contexts and makes extra callers wait on a semaphore instead of failing.

mod file;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// Graph degree (HNSW "M").
pub(crate) const DEFAULT_CONNECTIVITY: usize = 16;
/// ef_construction.
pub(crate) const DEFAULT_EF_CONSTRUCTION: usize = 128;
/// ef_search.
pub(crate) const DEFAULT_EF_SEARCH: usize = 64;

/// Why an HNSW index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HnswError {
    /// A vector does not have the index's dimension.
    #[error("dimension mismatch: index has dim {expected}, got a vector of length {got}")]
    DimMismatch {
        /// The index's dimension.
        expected: usize,
        /// The length of the vector given.
        got: usize,
    },
    /// An index cannot have dimension 0.
    #[error("invalid dimension {dim} (must be > 0)")]
    InvalidDim {
        /// The dimension asked for.
        dim: usize,
    },
    /// A vector contains NaN or infinite values.
    #[error("vector for id {id:?} contains NaN or infinite values")]
    NonFinite {
        /// The id it was to be added under; `None` for a query.
        id: Option<u64>,
    },
    /// An id was added twice (already in the index, or twice in one batch).
    #[error("id {id} is already in the index")]
    DuplicateId {
        /// The repeated id.
        id: u64,
    },
    /// An id to remove is not in the index.
    #[error("id {id} is not in the index")]
    NotFound {
        /// The missing id.
        id: u64,
    },
    /// A batch's flat vector buffer is not `ids × dim` floats.
    #[error("batch shape mismatch: {ids} ids but {floats} floats (dim {dim})")]
    BatchShape {
        /// The number of ids.
        ids: usize,
        /// The number of `f32` values given.
        floats: usize,
        /// The index's dimension.
        dim: usize,
    },
    /// The index file could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// usearch needs a UTF-8 path, and this one is not.
    #[error("path {path} is not valid UTF-8 (usearch needs a UTF-8 path)")]
    NonUtf8Path {
        /// The offending path.
        path: PathBuf,
    },
    /// An index file is damaged, truncated, foreign, of an older format or of another dimension.
    #[error("corrupt or incompatible index file {path}: {msg}")]
    Corrupt {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// usearch itself reported an error.
    #[error("usearch error during {op}{}: {msg}", id.map(|i| format!(" (id {i})")).unwrap_or_default())]
    Backend {
        /// The operation: "create", "reserve", "add", "remove", "search" or "save".
        op: &'static str,
        /// The id involved, if any.
        id: Option<u64>,
        /// usearch's message (the C++ exception text).
        msg: String,
    },
}

// usearch reports C++ exceptions as `cxx::Exception` (Display = the C++ `what()`).
fn backend<E: std::fmt::Display>(op: &'static str, id: Option<u64>) -> impl FnOnce(E) -> HnswError {
    move |e| HnswError::Backend { op, id, msg: e.to_string() }
}

/// An approximate nearest-neighbour graph (HNSW, via usearch) over `u64` ids, scored by inner product.
pub struct HnswIndex {
    index: Index,
    dim: usize,
    ef_search: usize,
    /// usearch needs one reserved "thread context" per concurrent call; a call that finds none
    /// free fails with the misleading "Reserve capacity ahead of searches!". `gate` caps
    /// concurrent `search` calls at `contexts`, so extra callers wait instead of failing.
    contexts: usize,
    gate: Gate,
}

// `usearch::Index` is `Send + Sync` (concurrent `add`/`search` through `&Index` is supported
// by the C++ core, up to the reserved number of thread contexts), so `HnswIndex` is too:
// `search(&self)` may be called from any number of threads at once.

/// Counting semaphore (std only).
struct Gate {
    free: std::sync::Mutex<usize>,
    cv: std::sync::Condvar,
}

impl Gate {
    fn new(n: usize) -> Self {
        Self { free: std::sync::Mutex::new(n), cv: std::sync::Condvar::new() }
    }
    fn acquire(&self) -> GateGuard<'_> {
        let mut f = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *f == 0 {
            f = self.cv.wait(f).unwrap_or_else(|p| p.into_inner());
        }
        *f -= 1;
        GateGuard(self)
    }
}

struct GateGuard<'a>(&'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("dim", &self.dim)
            .field("len", &self.index.size())
            .field("capacity", &self.index.capacity())
            .field("ef_search", &self.ef_search)
            .finish()
    }
}

fn options(dim: usize, ef_search: usize) -> IndexOptions {
    IndexOptions {
        dimensions: dim,
        metric: MetricKind::IP,
        quantization: ScalarKind::F32,
        connectivity: DEFAULT_CONNECTIVITY,
        expansion_add: DEFAULT_EF_CONSTRUCTION,
        expansion_search: ef_search,
        multi: false,
    }
}

/// Thread contexts reserved in usearch (cheap: a scratch buffer and visited-set each).
fn default_contexts() -> usize {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (threads * 2).max(8)
}

impl HnswIndex {
    /// Empty inner-product index over `dim`-dimensional f32 vectors.
    pub fn new(dim: usize, capacity_hint: usize) -> Result<Self, HnswError> {
        if dim == 0 {
            return Err(HnswError::InvalidDim { dim });
        }
        let index = Index::new(&options(dim, DEFAULT_EF_SEARCH)).map_err(backend("create", None))?;
        let contexts = default_contexts();
        index.reserve_capacity_and_threads(capacity_hint.max(64), contexts).map_err(backend("reserve", None))?;
        Ok(Self { index, dim, ef_search: DEFAULT_EF_SEARCH, contexts, gate: Gate::new(contexts) })
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of vectors in the index.
    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// Whether the index holds no vectors.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` is in the index.
    pub fn contains(&self, id: u64) -> bool {
        self.index.contains(id)
    }

    /// Set the search beam width (HNSW "ef_search"; at least 1): larger is slower and more accurate.
    pub fn set_ef_search(&mut self, ef: usize) {
        self.ef_search = ef.max(1);
        self.index.change_expansion_search(self.ef_search);
    }

    fn check_vec(&self, id: Option<u64>, v: &[f32]) -> Result<(), HnswError> {
        if v.len() != self.dim {
            return Err(HnswError::DimMismatch { expected: self.dim, got: v.len() });
        }
        if !v.iter().all(|x| x.is_finite()) {
            return Err(HnswError::NonFinite { id });
        }
        Ok(())
    }

    /// Make sure `extra` more vectors fit (usearch refuses to add beyond reserved capacity).
    fn ensure_capacity(&mut self, extra: usize) -> Result<(), HnswError> {
        let need = self.index.size() + extra;
        let cap = self.index.capacity();
        if need > cap {
            let new_cap = need.max(cap.saturating_mul(2)).max(64);
            self.index.reserve_capacity_and_threads(new_cap, self.contexts).map_err(backend("reserve", None))?;
        }
        Ok(())
    }

    /// Add one vector under the caller's id. Fails on a duplicate id.
    pub fn add(&mut self, id: u64, v: &[f32]) -> Result<(), HnswError> {
        self.check_vec(Some(id), v)?;
        if self.index.contains(id) {
            return Err(HnswError::DuplicateId { id });
        }
        self.ensure_capacity(1)?;
        self.index.add::<f32>(id, v).map_err(backend("add", Some(id)))
    }

    /// Add `ids.len()` row-major vectors (`rows.len() == ids.len() * dim`), one at a time (see
    /// the module notes for why not in parallel). Everything is checked first (shape, finiteness,
    /// duplicate ids against the index and within the batch), so a rejected batch adds nothing.
    /// A failure inside usearch afterwards (out of memory) can leave the batch partly added.
    pub fn add_batch(&mut self, ids: &[u64], rows: &[f32]) -> Result<(), HnswError> {
        if rows.len() != ids.len() * self.dim {
            return Err(HnswError::BatchShape { ids: ids.len(), floats: rows.len(), dim: self.dim });
        }
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            self.check_vec(Some(id), &rows[i * self.dim..(i + 1) * self.dim])?;
            if !seen.insert(id) || self.index.contains(id) {
                return Err(HnswError::DuplicateId { id });
            }
        }
        self.ensure_capacity(ids.len())?;
        for (&id, v) in ids.iter().zip(rows.chunks_exact(self.dim)) {
            self.index.add::<f32>(id, v).map_err(backend("add", Some(id)))?;
        }
        Ok(())
    }

    /// Remove `id`; later searches no longer return it. Its slot is reused by later adds.
    pub fn remove(&mut self, id: u64) -> Result<(), HnswError> {
        if !self.index.contains(id) {
            return Err(HnswError::NotFound { id });
        }
        let n = self.index.remove(id).map_err(backend("remove", Some(id)))?;
        if n == 0 {
            return Err(HnswError::NotFound { id });
        }
        Ok(())
    }

    /// Up to `k` nearest ids, best first, scored by inner product (cosine for unit vectors).
    pub fn search(&self, q: &[f32], k: usize) -> Result<Vec<(u64, f32)>, HnswError> {
        self.check_vec(None, q)?;
        if k == 0 || self.index.size() == 0 {
            return Ok(Vec::new());
        }
        let m = {
            let _slot = self.gate.acquire();
            self.index.search::<f32>(q, k).map_err(backend("search", None))?
        };
        // MetricKind::IP distance is `1 - dot`; results are sorted by ascending distance.
        Ok(m.keys.into_iter().zip(m.distances).map(|(id, d)| (id, 1.0 - d)).collect())
    }

    /// [`search`](Self::search) among the ids `keep` accepts (usearch's filtered search: the walk
    /// skips the others, so it may find fewer than `k` when few ids pass).
    pub fn search_where(&self, q: &[f32], k: usize, keep: impl Fn(u64) -> bool) -> Result<Vec<(u64, f32)>, HnswError> {
        self.check_vec(None, q)?;
        if k == 0 || self.index.size() == 0 {
            return Ok(Vec::new());
        }
        let m = {
            let _slot = self.gate.acquire();
            self.index.filtered_search::<f32, _>(q, k, keep).map_err(backend("search", None))?
        };
        Ok(m.keys.into_iter().zip(m.distances).map(|(id, d)| (id, 1.0 - d)).collect())
    }

    /// The search beam width (HNSW "ef_search").
    pub fn ef_search(&self) -> usize {
        self.ef_search
    }

    /// Write the index to `path`, replacing it atomically (see [`crate::atomic_file`]). `tag` is
    /// stored in the trailer and returned by [`HnswIndex::load`].
    pub fn save(&self, path: &Path, tag: u64) -> Result<(), HnswError> {
        let trailer = file::Trailer { dim: self.dim as u32, ef_search: self.ef_search as u32, tag };
        file::save(path, &trailer, |tmp| {
            let tmp_str = tmp.to_str().ok_or_else(|| HnswError::NonUtf8Path { path: tmp.to_path_buf() })?;
            self.index.save(tmp_str).map_err(backend("save", None))
        })
    }

    /// Load an index written by [`HnswIndex::save`], with its tag. A damaged, truncated or
    /// foreign file, one of an older format, or one of another dimension gives `Err`; nothing
    /// reaches usearch until the trailer and checksum match.
    pub fn load(path: &Path, dim: usize) -> Result<(Self, u64), HnswError> {
        let corrupt = |msg: String| HnswError::Corrupt { path: path.to_path_buf(), msg };
        let (image, trailer) = file::load(path)?;
        if trailer.dim as usize != dim {
            return Err(corrupt(format!("index has dim {}, caller expects {dim}", trailer.dim)));
        }
        let ef_search = if trailer.ef_search == 0 { DEFAULT_EF_SEARCH } else { trailer.ef_search as usize };
        let index = Index::new(&options(dim, ef_search)).map_err(backend("create", None))?;
        index.load_from_buffer(&image).map_err(|e| corrupt(format!("usearch: {e}")))?;
        drop(image);
        // Double-check what usearch read against what we expect.
        if index.dimensions() != dim {
            return Err(corrupt(format!("usearch image has dim {}, expected {dim}", index.dimensions())));
        }
        if index.metric_kind() != MetricKind::IP || index.scalar_kind() != ScalarKind::F32 {
            return Err(corrupt(format!("usearch image has metric {:?} / scalar {:?}, expected IP / F32", index.metric_kind(), index.scalar_kind())));
        }
        let contexts = default_contexts();
        let cap = index.capacity().max(index.size()).max(64);
        index.reserve_capacity_and_threads(cap, contexts).map_err(backend("reserve", None))?;
        index.change_expansion_search(ef_search);
        Ok((Self { index, dim, ef_search, contexts, gate: Gate::new(contexts) }, trailer.tag))
    }
}
