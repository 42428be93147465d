//! [`ExactBackend`]: brute force over the store's vectors ([`crate::index::exact::search`]).

use super::{check_batch, check_queries, SearchBackend};
use crate::index::{exact, Hit, IndexError, Store};

/// Exact search: one blocked SGEMM pass over the store's vectors per batch of queries. It keeps
/// no vectors of its own, only which rows it holds (one byte per row), and no files.
#[derive(Debug, Clone)]
pub struct ExactBackend {
    dim: usize,
    /// `held[row]`; rows past the end are not held.
    held: Vec<bool>,
    len: usize,
}

impl ExactBackend {
    /// An empty backend for `dim`-wide vectors.
    pub fn new(dim: usize) -> Self {
        Self { dim, held: Vec::new(), len: 0 }
    }

    /// Holding exactly `store`'s live rows.
    pub(crate) fn from_store(store: &Store) -> Self {
        let held = store.live_mask();
        Self { dim: store.dim(), len: store.live_count(), held }
    }
}

impl SearchBackend for ExactBackend {
    fn is_exact(&self) -> bool {
        true
    }

    fn len(&self) -> usize {
        self.len
    }

    fn contains(&self, row: usize) -> bool {
        self.held.get(row).copied().unwrap_or(false)
    }

    fn add(&mut self, rows: &[usize], vectors: &[f32]) -> Result<(), IndexError> {
        check_batch(rows, vectors, self.dim)?;
        let mut seen = std::collections::HashSet::with_capacity(rows.len());
        if let Some(&row) = rows.iter().find(|&&r| self.contains(r) || !seen.insert(r)) {
            return Err(IndexError::DuplicateRow { row });
        }
        if let Some(&max) = rows.iter().max() {
            if max >= self.held.len() {
                self.held.resize(max + 1, false);
            }
        }
        for &r in rows {
            self.held[r] = true;
        }
        self.len += rows.len();
        Ok(())
    }

    fn remove(&mut self, row: usize) -> Result<bool, IndexError> {
        let held = self.contains(row);
        if held {
            self.held[row] = false;
            self.len -= 1;
        }
        Ok(held)
    }

    fn search_where(&self, store: &Store, queries: &[f32], k: usize, min_score: f32, keep: Option<&[bool]>) -> Result<Vec<Vec<Hit>>, IndexError> {
        check_queries(queries, self.dim)?;
        let n = store.rows().len();
        // The mask must cover every stored row; rows added to the store but not (yet) here are not held.
        let combined: Vec<bool>;
        let mask = match keep {
            None if self.held.len() >= n => &self.held[..n],
            _ => {
                let kept = |r: usize| keep.is_none_or(|k| k.get(r).copied().unwrap_or(false));
                combined = (0..n).map(|r| self.contains(r) && kept(r)).collect();
                &combined
            }
        };
        Ok(exact::search(store.vectors(), self.dim, Some(mask), queries, k, min_score))
    }

    /// Copies the store's live flags: no vectors move.
    fn sync(&mut self, store: &Store) -> Result<usize, IndexError> {
        let n = store.rows().len();
        let beyond = self.held.get(n..).map_or(0, |t| t.iter().filter(|&&h| h).count());
        self.held.truncate(n);
        self.held.resize(n, false);
        let mut changed = beyond;
        for (h, r) in self.held.iter_mut().zip(store.rows()) {
            changed += usize::from(*h != r.alive);
            *h = r.alive;
        }
        self.len = store.live_count();
        Ok(changed)
    }

    fn persist(&mut self, _store: &Store) -> Result<bool, IndexError> {
        Ok(false)
    }
}
