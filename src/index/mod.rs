//! A persistent, incremental index of descriptors: durable storage ([`store`]) plus a search
//! backend ([`exact`] brute force by default).

pub mod exact;
pub mod hnsw;
pub mod store;

use std::path::{Path, PathBuf};

pub use exact::Hit;
pub use hnsw::{HnswError, HnswIndex};
pub use store::{ModelIdentity, Record, Row, Store};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: corrupt index file ({reason}); it was not used. Restore it from a backup or rebuild the index")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} is not a dolg index (no manifest.json); create one with `dolg index build`")]
    NotAnIndex { path: PathBuf },
    #[error("{path} already holds an index")]
    Exists { path: PathBuf },
    #[error("{path} is in use by another dolg process")]
    Busy { path: PathBuf },
    #[error("'{name}': vector has {found} values, the index holds {expected}-d vectors")]
    Dimension { name: String, expected: usize, found: usize },
    #[error("the index was built with {index}; refusing to mix in vectors from {given}")]
    ModelMismatch { index: String, given: String },
    #[error("approximate index: {0}")]
    Hnsw(#[from] HnswError),
}

/// Search backends. All of them answer the same questions over the same [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IndexKind {
    /// Brute-force inner product over every live vector: exact, no build cost.
    Exact,
    /// Approximate HNSW graph (usearch; M=16, ef_construction=128, ef_search=64 by default):
    /// sub-linear search for large collections, at some recall cost (`dolg index info --recall`).
    Hnsw,
}

impl IndexKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IndexKind::Exact => "exact",
            IndexKind::Hnsw => "hnsw",
        }
    }
}

/// File holding the HNSW graph: a cache derived from the segments, re-synchronised on open.
const GRAPH: &str = "hnsw.graph";

/// A result with its indexed name.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedHit {
    pub row: usize,
    pub name: String,
    pub score: f32,
}

/// An opened index: verified storage plus its search backend.
#[derive(Debug)]
pub struct Index {
    store: Store,
    /// The approximate graph for `hnsw` indexes. Its ids are store row ids.
    graph: Option<HnswIndex>,
    /// The graph differs from its saved file.
    graph_dirty: bool,
    /// Read-only opens never write (the graph is re-synchronised in memory only).
    writable: bool,
}

impl Index {
    pub fn create(dir: &Path, model: ModelIdentity, kind: IndexKind) -> Result<Self, IndexError> {
        let dim = model.dim;
        let store = Store::create(dir, model, kind.as_str())?;
        let graph = (kind == IndexKind::Hnsw).then(|| HnswIndex::new(dim, 1024)).transpose()?;
        let graph_dirty = graph.is_some();
        Ok(Self { store, graph, graph_dirty, writable: true })
    }

    pub fn open(dir: &Path, writable: bool) -> Result<Self, IndexError> {
        let store = Store::open(dir, writable)?;
        let mut index = Self { graph: None, graph_dirty: false, writable, store };
        if index.store.kind() == IndexKind::Hnsw.as_str() {
            index.load_graph()?;
        }
        Ok(index)
    }

    /// Load the saved graph (checksummed) and bring it in line with the store's live rows. A
    /// missing, stale or damaged graph is rebuilt from the vectors, which are the source of truth.
    fn load_graph(&mut self) -> Result<(), IndexError> {
        let path = self.store.dir().join(GRAPH);
        let dim = self.store.dim();
        let rows = self.store.rows().len();
        let mut graph = match HnswIndex::load(&path, dim) {
            Ok(g) => g,
            Err(e) => {
                if path.exists() {
                    tracing::warn!("{}: {e}; rebuilding the graph from the stored vectors", path.display());
                }
                HnswIndex::new(dim, self.store.live_count().max(1024))?
            }
        };
        // Ids past the row count mean the graph predates a compaction: start again.
        if graph.len() > self.store.live_count() * 2 + 1024 || (rows > 0 && graph.contains(rows as u64)) {
            graph = HnswIndex::new(dim, self.store.live_count().max(1024))?;
        }
        let (mut add_ids, mut add_rows) = (Vec::new(), Vec::new());
        for (i, r) in self.store.rows().iter().enumerate() {
            let present = graph.contains(i as u64);
            if r.alive && !present {
                add_ids.push(i as u64);
                add_rows.extend_from_slice(self.store.vector(i));
            } else if !r.alive && present {
                graph.remove(i as u64)?;
                self.graph_dirty = true;
            }
        }
        if !add_ids.is_empty() {
            graph.add_batch(&add_ids, &add_rows)?;
            self.graph_dirty = true;
        }
        self.graph = Some(graph);
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn kind(&self) -> IndexKind {
        if self.graph.is_some() {
            IndexKind::Hnsw
        } else {
            IndexKind::Exact
        }
    }

    /// Fail unless vectors from `model` may join this index.
    pub fn check_model(&self, model: &ModelIdentity) -> Result<(), IndexError> {
        let mine = self.store.model();
        if mine.fingerprint != model.fingerprint || mine.dim != model.dim {
            return Err(IndexError::ModelMismatch {
                index: format!("{} ({}-d, fingerprint {})", mine.name, mine.dim, mine.fingerprint.as_deref().unwrap_or("none")),
                given: format!("{} ({}-d, fingerprint {})", model.name, model.dim, model.fingerprint.as_deref().unwrap_or("none")),
            });
        }
        Ok(())
    }

    /// True when `name` is indexed with exactly this content hash (so it need not be extracted again).
    pub fn is_current(&self, name: &str, hash: &[u8; 32]) -> bool {
        self.store.lookup(name).is_some_and(|r| self.store.rows()[r].hash.as_ref() == Some(hash))
    }

    /// Durably append a batch, then update the graph (if any) to match.
    pub fn commit(&mut self, records: Vec<Record>) -> Result<(), IndexError> {
        let before = self.store.rows().len();
        let died = self.store.commit(records)?;
        if let Some(g) = &mut self.graph {
            for r in died.into_iter().filter(|&r| r < before) {
                g.remove(r as u64)?;
            }
            let after = self.store.rows().len();
            let ids: Vec<u64> = (before..after).filter(|&r| self.store.rows()[r].alive).map(|r| r as u64).collect();
            let rows: Vec<f32> = ids.iter().flat_map(|&r| self.store.vector(r as usize).iter().copied()).collect();
            g.add_batch(&ids, &rows)?;
            self.graph_dirty = true;
        }
        Ok(())
    }

    /// Save the graph if it changed (the segments are already durable). Called by every writing
    /// command at the end; if it never runs, the next open re-synchronises the graph.
    pub fn flush(&mut self) -> Result<(), IndexError> {
        if let (Some(g), true, true) = (&self.graph, self.graph_dirty, self.writable) {
            g.save(&self.store.dir().join(GRAPH))?;
            self.graph_dirty = false;
        }
        Ok(())
    }

    /// Top `k` live entries for each query ([nq, dim] row-major), best first.
    pub fn search(&self, queries: &[f32], k: usize, min_score: f32) -> Result<Vec<Vec<NamedHit>>, IndexError> {
        let s = &self.store;
        let named = |row: usize, score: f32| NamedHit { row, name: s.rows()[row].name.clone(), score };
        match &self.graph {
            Some(g) => queries
                .chunks(s.dim())
                .map(|q| Ok(g.search(q, k)?.into_iter().filter(|&(_, sc)| sc >= min_score).map(|(id, sc)| named(id as usize, sc)).collect()))
                .collect(),
            None => {
                let alive: Vec<bool> = s.rows().iter().map(|r| r.alive).collect();
                Ok(exact::search(s.vectors(), s.dim(), Some(&alive), queries, k, min_score)
                    .into_iter()
                    .map(|hits| hits.into_iter().map(|h| named(h.row, h.score)).collect())
                    .collect())
            }
        }
    }

    /// Exact results regardless of the backend (for measuring an approximate index's recall).
    pub fn search_exact(&self, queries: &[f32], k: usize) -> Vec<Vec<usize>> {
        let s = &self.store;
        let alive: Vec<bool> = s.rows().iter().map(|r| r.alive).collect();
        exact::search(s.vectors(), s.dim(), Some(&alive), queries, k, f32::MIN).into_iter().map(|h| h.into_iter().map(|h| h.row).collect()).collect()
    }

    pub fn set_ef_search(&mut self, ef: usize) {
        if let Some(g) = &mut self.graph {
            g.set_ef_search(ef);
        }
    }

    /// Compact the store; row ids change, so the graph is rebuilt.
    pub fn compact(&mut self) -> Result<(), IndexError> {
        self.store.compact()?;
        if self.graph.is_some() {
            let _ = std::fs::remove_file(self.store.dir().join(GRAPH));
            self.load_graph()?;
            self.graph_dirty = true;
        }
        Ok(())
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!("could not save the search graph ({e}); it will be rebuilt on next open");
        }
    }
}
