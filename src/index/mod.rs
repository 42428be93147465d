//! A persistent, incremental index of descriptors: durable storage ([`store`]) plus a search
//! backend ([`exact`] brute force by default).

pub mod exact;
pub mod store;

use std::path::{Path, PathBuf};

pub use exact::Hit;
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
}

/// Search backends. All of them answer the same questions over the same [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IndexKind {
    /// Brute-force inner product over every live vector: exact, no build cost.
    Exact,
}

impl IndexKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IndexKind::Exact => "exact",
        }
    }
}

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
}

impl Index {
    pub fn create(dir: &Path, model: ModelIdentity, kind: IndexKind) -> Result<Self, IndexError> {
        Ok(Self { store: Store::create(dir, model, kind.as_str())? })
    }

    pub fn open(dir: &Path, writable: bool) -> Result<Self, IndexError> {
        Ok(Self { store: Store::open(dir, writable)? })
    }

    pub fn store(&self) -> &Store {
        &self.store
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

    pub fn commit(&mut self, records: Vec<Record>) -> Result<(), IndexError> {
        self.store.commit(records)
    }

    /// Top `k` live entries for each query ([nq, dim] row-major), best first.
    pub fn search(&self, queries: &[f32], k: usize, min_score: f32) -> Vec<Vec<NamedHit>> {
        let s = &self.store;
        let alive: Vec<bool> = s.rows().iter().map(|r| r.alive).collect();
        exact::search(s.vectors(), s.dim(), Some(&alive), queries, k, min_score)
            .into_iter()
            .map(|hits| hits.into_iter().map(|h| NamedHit { row: h.row, name: s.rows()[h.row].name.clone(), score: h.score }).collect())
            .collect()
    }

    pub fn compact(&mut self) -> Result<(), IndexError> {
        self.store.compact()
    }
}
