//! Revisited Oxford / Paris ground truth (`gnd_roxford5k.pkl`, `gnd_rparis6k.pkl`).
//!
//! The files are Python pickles (protocol 3) of builtin types only:
//! `{"imlist": [str], "qimlist": [str], "gnd": [{"bbx": [x1, y1, x2, y2], "easy": [int],
//! "hard": [int], "junk": [int]}]}`. They are decoded with serde-pickle and validated so that
//! later stages can index without checks.

use std::path::Path;

use serde::Deserialize;

use super::metric::{PositionSource, RevisitedPositions, RevisitedResult};
use super::{EvalError, Result};

/// Ground truth of one query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryGnd {
    /// Query region `[x1, y1, x2, y2]` in pixels of the full query image (floats in Oxford,
    /// ints in Paris; both are accepted).
    pub bbx: [f64; 4],
    /// Strictly increasing indices into `imlist`.
    pub easy: Vec<usize>,
    /// Strictly increasing indices into `imlist` of the hard positives.
    pub hard: Vec<usize>,
    /// Strictly increasing indices into `imlist` of the junk (ignored) images.
    pub junk: Vec<usize>,
}

impl QueryGnd {
    /// The crop `[x1, y1, x2, y2]` as the DOLG evaluation takes it: Python `int()` (truncation
    /// toward zero) of each coordinate, to be used end-exclusive
    /// (`im[y1:y2, x1:x2]`). Loading guarantees the values fit.
    pub fn crop_box(&self) -> [u32; 4] {
        self.bbx.map(|v| v.trunc() as u32)
    }
}

/// A whole Revisited dataset's ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisitedGnd {
    /// Database image names, no folder or extension; position = database index.
    pub imlist: Vec<String>,
    /// Query image names, in query order.
    pub qimlist: Vec<String>,
    /// One entry per query, in `qimlist` order.
    pub gnd: Vec<QueryGnd>,
}

#[derive(Deserialize)]
struct RawGnd {
    imlist: Vec<String>,
    qimlist: Vec<String>,
    gnd: Vec<RawQuery>,
}

/// Indices are read as i64 so that a negative one is reported with its query, not as a bare
/// serde error.
#[derive(Deserialize)]
struct RawQuery {
    bbx: Vec<f64>,
    easy: Vec<i64>,
    hard: Vec<i64>,
    junk: Vec<i64>,
}

impl RevisitedGnd {
    /// Reads and validates a ground-truth pickle.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| EvalError::Io { path: path.to_path_buf(), source })?;
        Self::from_bytes(&bytes, path)
    }

    /// Decodes and validates pickle bytes; `path` is only used in error messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let raw: RawGnd =
            serde_pickle::from_slice(bytes, serde_pickle::DeOptions::new()).map_err(|source| EvalError::Pickle { path: path.to_path_buf(), source })?;
        Self::validate(raw, path)
    }

    fn validate(raw: RawGnd, path: &Path) -> Result<Self> {
        let path_buf = || path.to_path_buf();
        if raw.gnd.len() != raw.qimlist.len() {
            return Err(EvalError::GndCount { path: path_buf(), key: "gnd", expected: raw.qimlist.len(), found: raw.gnd.len() });
        }
        let n_db = raw.imlist.len();
        let gnd = raw
            .gnd
            .into_iter()
            .enumerate()
            .map(|(query, q)| {
                let indices = |key: &'static str, list: Vec<i64>| -> Result<Vec<usize>> {
                    if let Some(w) = list.windows(2).find(|w| w[0] >= w[1]) {
                        return Err(EvalError::GndUnsorted { path: path_buf(), query, key, prev: w[0], next: w[1] });
                    }
                    list.into_iter()
                        .map(|index| match usize::try_from(index) {
                            Ok(i) if i < n_db => Ok(i),
                            _ => Err(EvalError::GndIndex { path: path_buf(), query, key, index, n_db }),
                        })
                        .collect()
                };
                Ok(QueryGnd {
                    bbx: check_box(&q.bbx).map_err(|reason| EvalError::GndBox { path: path_buf(), query, bbx: q.bbx.clone(), reason })?,
                    easy: indices("easy", q.easy)?,
                    hard: indices("hard", q.hard)?,
                    junk: indices("junk", q.junk)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { imlist: raw.imlist, qimlist: raw.qimlist, gnd })
    }

    /// Number of database images.
    pub fn n_db(&self) -> usize {
        self.imlist.len()
    }

    /// Number of queries.
    pub fn n_queries(&self) -> usize {
        self.qimlist.len()
    }

    /// Crop box of query `q` (see [`QueryGnd::crop_box`]). Panics if `q` is not a query index.
    pub fn crop_box(&self, q: usize) -> [u32; 4] {
        self.gnd[q].crop_box()
    }

    /// Per query, the sorted database indices whose ranking positions the metrics need
    /// (easy ∪ hard ∪ junk): the input of [`super::rank::stream_positions`].
    pub fn relevant(&self) -> Vec<Vec<usize>> {
        self.gnd
            .iter()
            .map(|g| {
                let mut v = [g.easy.as_slice(), &g.hard, &g.junk].concat();
                v.sort_unstable();
                v.dedup();
                v
            })
            .collect()
    }

    /// Looks up the positions of every query's easy, hard and junk items.
    pub fn positions(&self, src: &(impl PositionSource + ?Sized)) -> Result<Vec<RevisitedPositions>> {
        if src.n_queries() != self.gnd.len() {
            return Err(EvalError::CountMismatch { what: "queries in the ranking vs. the ground truth", expected: self.gnd.len(), found: src.n_queries() });
        }
        self.gnd
            .iter()
            .enumerate()
            .map(|(q, g)| Ok(RevisitedPositions { easy: src.positions(q, &g.easy)?, hard: src.positions(q, &g.hard)?, junk: src.positions(q, &g.junk)? }))
            .collect()
    }

    /// Easy / Medium / Hard scores of a ranking (queries in `qimlist` order, database in
    /// `imlist` order, optionally followed by distractors).
    pub fn evaluate(&self, src: &(impl PositionSource + ?Sized)) -> Result<RevisitedResult> {
        Ok(RevisitedResult::from_positions(&self.positions(src)?))
    }
}

/// Checks that `bbx` has 4 coordinates whose `int()` is a valid non-negative, ordered u32 box.
fn check_box(bbx: &[f64]) -> Result<[f64; 4], &'static str> {
    let b: [f64; 4] = bbx.try_into().map_err(|_| "expected 4 numbers [x1, y1, x2, y2]")?;
    if b.iter().any(|v| !v.is_finite() || v.trunc() < 0.0 || v.trunc() > f64::from(u32::MAX)) {
        return Err("coordinates must be finite and truncate to 0..=u32::MAX");
    }
    if b[0].trunc() > b[2].trunc() || b[1].trunc() > b[3].trunc() {
        return Err("expected x1 <= x2 and y1 <= y2");
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_box_truncates() {
        let q = QueryGnd { bbx: [136.5, 34.1, 648.5, 955.7], easy: vec![], hard: vec![], junk: vec![] };
        assert_eq!(q.crop_box(), [136, 34, 648, 955]);
        assert_eq!(check_box(&[-0.5, 0.0, 1.0, 1.0]).map(|_| ()), Ok(()));
        assert!(check_box(&[-1.0, 0.0, 1.0, 1.0]).is_err());
        assert!(check_box(&[3.0, 0.0, 1.0, 1.0]).is_err());
        assert!(check_box(&[0.0, 0.0, 1.0]).is_err());
        assert!(check_box(&[f64::NAN, 0.0, 1.0, 1.0]).is_err());
    }
}
