//! [`HnswBackend`]: the approximate [`HnswIndex`] graph, saved as `hnsw.graph` beside the segments.

use super::{check_batch, check_queries, sync_live_rows, SearchBackend};
use crate::index::{exact, Hit, HnswError, HnswIndex, IndexError, Store};

/// The graph file in the index directory: a cache of the segments, tagged with the store's
/// epoch ([`Store::epoch`]) and re-synchronised on open.
pub const GRAPH_FILE: &str = "hnsw.graph";

/// Approximate search through an HNSW graph whose ids are store row ids. It keeps its own copy
/// of the vectors (inside usearch) and saves the graph to [`GRAPH_FILE`].
#[derive(Debug)]
pub struct HnswBackend {
    graph: HnswIndex,
    /// The graph differs from its saved file (or there is none).
    dirty: bool,
}

/// usearch's errors for rows, in the backend's terms.
fn row_err(e: HnswError) -> IndexError {
    match e {
        HnswError::DuplicateId { id } => IndexError::DuplicateRow { row: id as usize },
        e => IndexError::Hnsw(e),
    }
}

impl HnswBackend {
    /// An empty graph (not saved yet).
    pub fn new(dim: usize) -> Result<Self, IndexError> {
        Ok(Self { graph: HnswIndex::new(dim, 1024)?, dirty: true })
    }

    /// The saved graph if it is intact and of `store`'s epoch, else an empty one; then
    /// synchronised with the store's live rows. Returns the number of rows added or removed.
    pub fn open(store: &Store) -> Result<(Self, usize), IndexError> {
        let path = store.dir().join(GRAPH_FILE);
        let rows = store.rows().len() as u64;
        let saved = match HnswIndex::load(&path, store.dim()) {
            // Ids past the row count would mean a graph of another numbering, whatever its tag.
            Ok((g, epoch)) if epoch == store.epoch() && !g.contains(rows) => Some(g),
            Ok(_) => {
                tracing::info!("{}: the graph predates a compaction; rebuilding it from the stored vectors", path.display());
                None
            }
            Err(HnswError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!("{}: {e}; rebuilding the graph from the stored vectors", path.display());
                None
            }
        };
        let mut backend = match saved {
            Some(graph) => Self { graph, dirty: false },
            None => Self { graph: HnswIndex::new(store.dim(), store.live_count().max(1024))?, dirty: true },
        };
        let changed = backend.sync(store)?;
        Ok((backend, changed))
    }

    /// The underlying HNSW graph.
    pub fn graph(&self) -> &HnswIndex {
        &self.graph
    }
}

/// A filter keeping at most this many rows is searched exactly: scoring them all costs less than
/// a graph walk that must skip the rest.
const FILTER_EXACT_BELOW: usize = 2048;

impl SearchBackend for HnswBackend {
    fn is_exact(&self) -> bool {
        false
    }

    fn len(&self) -> usize {
        self.graph.len()
    }

    fn contains(&self, row: usize) -> bool {
        self.graph.contains(row as u64)
    }

    fn add(&mut self, rows: &[usize], vectors: &[f32]) -> Result<(), IndexError> {
        check_batch(rows, vectors, self.graph.dim())?;
        if rows.is_empty() {
            return Ok(());
        }
        let ids: Vec<u64> = rows.iter().map(|&r| r as u64).collect();
        // Mark first: a failure inside usearch can leave the batch partly added.
        self.dirty = true;
        self.graph.add_batch(&ids, vectors).map_err(row_err)
    }

    fn remove(&mut self, row: usize) -> Result<bool, IndexError> {
        if !self.graph.contains(row as u64) {
            return Ok(false);
        }
        self.dirty = true;
        self.graph.remove(row as u64)?;
        Ok(true)
    }

    fn search_where(&self, store: &Store, queries: &[f32], k: usize, min_score: f32, keep: Option<&[bool]>) -> Result<Vec<Vec<Hit>>, IndexError> {
        let dim = self.graph.dim();
        check_queries(queries, dim)?;
        let hits = |found: Vec<(u64, f32)>| -> Vec<Hit> {
            found.into_iter().filter(|&(_, s)| s >= min_score).map(|(id, score)| Hit { row: id as usize, score }).collect()
        };
        let Some(keep) = keep else {
            return queries.chunks_exact(dim).map(|q| Ok(hits(self.graph.search(q, k)?))).collect();
        };
        // Held rows the filter keeps (rows past the end of `keep` are not kept), once for every
        // query: the graph walk's predicate and the exact fallback's mask.
        let mask: Vec<bool> = (0..store.rows().len()).map(|r| keep.get(r).copied().unwrap_or(false) && self.contains(r)).collect();
        let kept = |id: u64| mask.get(id as usize).copied().unwrap_or(false);
        let kept_count = mask.iter().filter(|&&m| m).count();
        let want = k.min(kept_count);
        queries
            .chunks_exact(dim)
            .map(|q| {
                // The graph walk with the predicate finds most; when a selective filter leaves it
                // short of what exists, exact search over the kept rows (few, by then) finishes it.
                let mut found = if kept_count > FILTER_EXACT_BELOW { hits(self.graph.search_where(q, k, kept)?) } else { Vec::new() };
                if found.len() < want {
                    found = exact::search(store.vectors(), dim, Some(&mask), q, k, min_score).remove(0);
                }
                Ok(found)
            })
            .collect()
    }

    fn sync(&mut self, store: &Store) -> Result<usize, IndexError> {
        let changed = sync_live_rows(self, store)?;
        self.dirty |= changed > 0;
        Ok(changed)
    }

    fn persist(&mut self, store: &Store) -> Result<bool, IndexError> {
        if !self.dirty {
            return Ok(false);
        }
        self.graph.save(&store.dir().join(GRAPH_FILE), store.epoch())?;
        self.dirty = false;
        Ok(true)
    }

    fn set_ef_search(&mut self, ef: usize) {
        self.graph.set_ef_search(ef);
    }
}
