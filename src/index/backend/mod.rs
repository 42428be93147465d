//! Search backends: what answers a query over a [`Store`]'s rows. [`Index`](super::Index) holds
//! one behind [`SearchBackend`]; [`ExactBackend`] scans every vector, [`HnswBackend`] walks an
//! approximate graph. A new kind of search plugs in by implementing the trait, adding an
//! [`IndexKind`] variant (the name the manifest records) and its arm in [`create`] and [`open`],
//! and instantiating the conformance suite (`tests.rs`) for it.

mod exact;
mod hnsw;
#[cfg(test)]
mod tests;

pub use exact::ExactBackend;
pub use hnsw::{HnswBackend, GRAPH_FILE};

use super::{Hit, IndexError, IndexKind, Store};

/// A search structure over the rows of one [`Store`].
///
/// # Contract
///
/// Every implementation behaves as follows; the conformance suite in `backend/tests.rs` checks
/// each point for each backend, and a new backend must pass it.
///
/// - **Ids are store row ids**: the position of a vector in [`Store::rows`] and
///   [`Store::vectors`]. They stay valid until [`Store::compact`] renumbers the rows (which
///   changes [`Store::epoch`]); a backend is then rebuilt ([`rebuild`]), and state it saved under
///   another epoch must not be reused.
/// - **Membership**: a backend holds a set of rows. [`add`](Self::add) inserts a batch,
///   [`remove`](Self::remove) takes one row out, [`contains`](Self::contains) and
///   [`len`](Self::len) report the set. [`Index`](super::Index) keeps it equal to the store's live
///   rows. The vectors passed to `add` are the store's vectors for those rows; a backend may keep
///   a copy or read them from the store at search time.
/// - **Adding** a row the backend already holds, or the same row twice in one batch, is an error
///   ([`IndexError::DuplicateRow`]), and so is a batch whose vectors are not `rows.len() × dim`
///   values; a rejected batch adds nothing. (An approximate backend may reject non-finite values
///   too.)
/// - **Removing** takes effect at once: when `remove(row)` returns, no search returns `row` and
///   `contains(row)` is false. It returns whether the row was held; removing a row that is not
///   held is not an error and changes nothing. A removed row may be added again.
/// - **Scores** are inner products ⟨query, vector⟩ (cosine similarity on unit vectors), equal to
///   the exact f32 dot product up to rounding.
/// - **Results**: one list per query (`queries` is `[nq, dim]` row-major; any other length is
///   [`IndexError::Dimension`]), each with at most `k` hits, best (highest score) first, only
///   held rows, each at most once, and only scores `>= min_score`. `k == 0` or an empty backend
///   gives empty lists. An exact backend ([`is_exact`](Self::is_exact)) returns the true top `k`,
///   ties broken towards the lower row id, so its answers are deterministic; an approximate one
///   may miss some true neighbours (recall below 1), and orders ties as it likes, but keeps every
///   other rule.
/// - **Filtered results** ([`search_where`](Self::search_where) with `keep`): as above over the
///   held rows `r` with `keep[r]` (rows past the end of `keep` are not kept). An exact backend
///   returns the true top `k` of them; an approximate one returns `min(k, kept rows scoring at
///   least min_score)` results too (it may fall back to exact search over the kept rows), so a
///   filter that keeps few rows cannot starve a result list.
/// - **Persistence**: a backend may keep derived files in the store's directory, never anything
///   the store does not also hold: they are caches, and a missing, stale, damaged or
///   older-format file is rebuilt from the store, never an error. [`sync`](Self::sync) brings a
///   backend back in line with the store's live rows; [`persist`](Self::persist) saves what
///   changed, atomically (temporary file, fsync, rename), and may be called by a reader holding
///   the store's shared lock (see the [`index`](super) module documentation).
/// - **Thread-safety**: backends are `Send + Sync`. [`search`](Self::search) takes `&self` and
///   may run on any number of threads at once; every change takes `&mut self`, so it never runs
///   beside a search.
pub trait SearchBackend: Send + Sync + std::fmt::Debug {
    /// True when [`search`](Self::search) returns the exact top `k`, ties to the lower row id.
    fn is_exact(&self) -> bool;

    /// Number of rows held.
    fn len(&self) -> usize;

    /// Whether no rows are held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `row` is held.
    fn contains(&self, row: usize) -> bool;

    /// Insert `rows`, whose vectors are `vectors` (row-major, `rows.len() × dim`).
    fn add(&mut self, rows: &[usize], vectors: &[f32]) -> Result<(), IndexError>;

    /// Take `row` out; returns whether it was held.
    fn remove(&mut self, row: usize) -> Result<bool, IndexError>;

    /// Top `k` held rows for each query, scored against `store`'s vectors (see the contract).
    fn search(&self, store: &Store, queries: &[f32], k: usize, min_score: f32) -> Result<Vec<Vec<Hit>>, IndexError> {
        self.search_where(store, queries, k, min_score, None)
    }

    /// [`search`](Self::search) among the rows `keep` marks (all held rows when `None`).
    fn search_where(&self, store: &Store, queries: &[f32], k: usize, min_score: f32, keep: Option<&[bool]>) -> Result<Vec<Vec<Hit>>, IndexError>;

    /// Make the held set equal to `store`'s live rows, given that every held row is a row of
    /// `store`'s current epoch. Returns how many rows had to be added or removed.
    fn sync(&mut self, store: &Store) -> Result<usize, IndexError> {
        sync_live_rows(self, store)
    }

    /// Save derived files into `store`'s directory if they differ from what is there; returns
    /// whether anything was written. Backends without files do nothing.
    fn persist(&mut self, store: &Store) -> Result<bool, IndexError>;

    /// Trade speed for recall where the backend has such a knob (HNSW's ef_search); else nothing.
    fn set_ef_search(&mut self, _ef: usize) {}
}

/// [`SearchBackend::sync`] through the trait's own operations: remove held dead rows, add live
/// rows not held (one batch).
pub(crate) fn sync_live_rows<B: SearchBackend + ?Sized>(backend: &mut B, store: &Store) -> Result<usize, IndexError> {
    let (mut rows, mut vectors, mut changed) = (Vec::new(), Vec::new(), 0);
    for (i, r) in store.rows().iter().enumerate() {
        let held = backend.contains(i);
        if r.alive && !held {
            rows.push(i);
            vectors.extend_from_slice(store.vector(i));
        } else if !r.alive && held {
            backend.remove(i)?;
            changed += 1;
        }
    }
    backend.add(&rows, &vectors)?;
    Ok(changed + rows.len())
}

/// Fail unless `queries` is a whole number of `dim`-d vectors.
fn check_queries(queries: &[f32], dim: usize) -> Result<(), IndexError> {
    let leftover = queries.len() % dim;
    if leftover != 0 {
        // A single short query reports its length; a batch, its leftover values.
        let found = if queries.len() < dim { queries.len() } else { leftover };
        return Err(IndexError::Dimension { name: "query".into(), expected: dim, found });
    }
    Ok(())
}

/// Fail unless `vectors` holds one `dim`-d vector per row.
fn check_batch(rows: &[usize], vectors: &[f32], dim: usize) -> Result<(), IndexError> {
    if vectors.len() != rows.len() * dim {
        let found = if rows.is_empty() { vectors.len() } else { vectors.len() / rows.len() };
        return Err(IndexError::Dimension { name: format!("batch of {} rows", rows.len()), expected: dim, found });
    }
    Ok(())
}

/// An empty backend of `kind` for `dim`-d vectors.
pub fn create(kind: IndexKind, dim: usize) -> Result<Box<dyn SearchBackend>, IndexError> {
    Ok(match kind {
        IndexKind::Exact => Box::new(ExactBackend::new(dim)),
        IndexKind::Hnsw => Box::new(HnswBackend::new(dim)?),
    })
}

/// The backend of `kind` for `store`: its saved state where it has any (and it is of the
/// store's epoch), synchronised with the store's live rows. Returns it with the number of rows
/// that took adding or removing.
pub fn open(kind: IndexKind, store: &Store) -> Result<(Box<dyn SearchBackend>, usize), IndexError> {
    Ok(match kind {
        IndexKind::Exact => (Box::new(ExactBackend::from_store(store)), 0),
        IndexKind::Hnsw => {
            let (b, n) = HnswBackend::open(store)?;
            (Box::new(b), n)
        }
    })
}

/// A backend of `kind` built from `store`'s live rows alone, ignoring saved state (after a
/// compaction).
pub fn rebuild(kind: IndexKind, store: &Store) -> Result<Box<dyn SearchBackend>, IndexError> {
    let mut b = create(kind, store.dim())?;
    b.sync(store)?;
    Ok(b)
}
