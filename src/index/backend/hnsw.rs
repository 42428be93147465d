//! [`HnswBackend`]: the approximate [`HnswIndex`] graph, saved as `hnsw.graph` beside the segments.

use super::{check_batch, check_queries, sync_live_rows, SearchBackend};
use crate::index::{Hit, HnswError, HnswIndex, IndexError, Store};

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

    pub fn graph(&self) -> &HnswIndex {
        &self.graph
    }
}

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

    fn search(&self, _store: &Store, queries: &[f32], k: usize, min_score: f32) -> Result<Vec<Vec<Hit>>, IndexError> {
        let dim = self.graph.dim();
        check_queries(queries, dim)?;
        queries
            .chunks_exact(dim)
            .map(|q| Ok(self.graph.search(q, k)?.into_iter().filter(|&(_, s)| s >= min_score).map(|(id, score)| Hit { row: id as usize, score }).collect()))
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
