//! Ranking of L2-normalised descriptors by dot product.
//!
//! Order: descending similarity, ties broken by lower database index (deterministic, unlike a
//! BLAS + argsort pipeline). Every score goes through the same [`dot`], so the full and the
//! streaming rankers agree exactly.
//!
//! - [`full_ranking`] sorts the whole database per query (O(n_db * n_queries) memory).
//! - [`stream_positions`] only needs each query's *relevant* items (positives and ignored): it
//!   scores them, then streams the database in blocks and counts, for every relevant item, how
//!   many database rows rank strictly before it. That count is its exact 0-based position in
//!   the full ranking, which is all the metrics need. Memory: O(block + queries + relevant).

use rayon::prelude::*;

pub use crate::linalg::dot;
use crate::linalg::dot4;

use super::metric::PositionSource;
use super::{EvalError, Result};

/// Rows per streamed block: 4096 rows of 512-d f32 are 8 MiB, enough work per rayon task.
pub const DEFAULT_BLOCK_ROWS: usize = 4096;

/// Row-major f32 descriptors held in one or more slices, addressed by one global index
/// (rows of the first slice, then the second, ...). Distractors (e.g. +1M) are appended as an
/// extra slice without copying the database.
#[derive(Debug, Clone)]
pub struct Database<'a> {
    dim: usize,
    parts: Vec<&'a [f32]>,
    /// Global index of each part's first row.
    starts: Vec<usize>,
    n_rows: usize,
}

impl<'a> Database<'a> {
    /// `parts`: row-major `[rows_i, dim]` slices.
    pub fn new(dim: usize, parts: impl IntoIterator<Item = &'a [f32]>) -> Result<Self> {
        let parts: Vec<&[f32]> = parts.into_iter().collect();
        let mut starts = Vec::with_capacity(parts.len());
        let mut n_rows = 0;
        for p in &parts {
            n_rows_of(p, dim, "database descriptors")?;
            starts.push(n_rows);
            n_rows += p.len() / dim;
        }
        Ok(Self { dim, parts, starts, n_rows })
    }

    /// A database held in a single slice.
    pub fn single(dim: usize, rows: &'a [f32]) -> Result<Self> {
        Self::new(dim, [rows])
    }

    /// Descriptor width (floats per row).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Total number of rows over all slices.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Descriptor of global row `index`, if it exists.
    pub fn row(&self, index: usize) -> Option<&'a [f32]> {
        if index >= self.n_rows {
            return None;
        }
        let part = self.starts.partition_point(|&s| s <= index) - 1;
        let local = index - self.starts[part];
        self.parts[part].get(local * self.dim..(local + 1) * self.dim)
    }

    /// `(global index of first row, rows)` blocks of at most `block_rows` rows; a block never
    /// spans two parts.
    fn blocks(&self, block_rows: usize) -> Vec<(usize, &'a [f32])> {
        let chunk = block_rows.max(1) * self.dim;
        self.parts
            .iter()
            .zip(&self.starts)
            .flat_map(|(part, &start)| part.chunks(chunk).enumerate().map(move |(b, rows)| (start + b * block_rows.max(1), rows)))
            .collect()
    }
}

fn n_rows_of(data: &[f32], dim: usize, what: &'static str) -> Result<usize> {
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(EvalError::Shape { what, len: data.len(), dim });
    }
    Ok(data.len() / dim)
}

/// Whether item `(sa, ia)` ranks strictly before `(sb, ib)`.
#[inline]
fn ranks_before(sa: f32, ia: usize, sb: f32, ib: usize) -> bool {
    sa > sb || (sa == sb && ia < ib)
}

/// Ranking order as an `Ordering` (`Less` = ranks first); total when scores are not NaN.
fn rank_cmp(sa: f32, ia: usize, sb: f32, ib: usize) -> std::cmp::Ordering {
    if ranks_before(sa, ia, sb, ib) {
        std::cmp::Ordering::Less
    } else if ranks_before(sb, ib, sa, ia) {
        std::cmp::Ordering::Greater
    } else {
        std::cmp::Ordering::Equal
    }
}

fn score(query: usize, db_index: usize, row: &[f32], q: &[f32]) -> Result<f32> {
    let s = dot(row, q);
    if s.is_nan() {
        return Err(EvalError::NanScore { query, db_index });
    }
    Ok(s)
}

/// The full ranked list of database indices for each query (`queries`: row-major
/// `[n_queries, dim]`). For small databases and tests; see [`stream_positions`] otherwise.
pub fn full_ranking(db: &Database<'_>, queries: &[f32]) -> Result<Vec<Vec<usize>>> {
    let dim = db.dim();
    n_rows_of(queries, dim, "query descriptors")?;
    let blocks = db.blocks(DEFAULT_BLOCK_ROWS);
    queries
        .par_chunks(dim)
        .enumerate()
        .map(|(qi, q)| {
            let mut scores = Vec::with_capacity(db.n_rows());
            for &(start, rows) in &blocks {
                for (r, row) in rows.chunks_exact(dim).enumerate() {
                    scores.push(score(qi, start + r, row, q)?);
                }
            }
            let mut order: Vec<usize> = (0..scores.len()).collect();
            // Total order (no NaN, index tie-break), so an unstable sort is deterministic.
            order.sort_unstable_by(|&a, &b| rank_cmp(scores[a], a, scores[b], b));
            Ok(order)
        })
        .collect()
}

/// Full rankings after training-free re-ranking ([`crate::rerank::rank_reranked`]): `db` is
/// row-major `[n_db, dim]` (already α-DBA-augmented if wanted), `queries` `[n_queries, dim]`;
/// `exclude[q]`, if any, is left out of query q's re-ranking and placed last (an ignored item).
pub fn reranked_ranking(db: &[f32], dim: usize, queries: &[f32], exclude: &[Option<usize>], rerank: &crate::rerank::Rerank) -> Vec<Vec<usize>> {
    scored_ranking(db, dim, queries, exclude, rerank).into_iter().map(unscored).collect()
}

/// [`reranked_ranking`] with each row's score from the last stage (the excluded row last, with
/// score −∞): what spatial re-ranking combines with the geometric evidence.
pub fn scored_ranking(db: &[f32], dim: usize, queries: &[f32], exclude: &[Option<usize>], rerank: &crate::rerank::Rerank) -> Vec<Vec<(usize, f32)>> {
    queries
        .par_chunks(dim)
        .zip(exclude)
        .map(|(q, ex)| {
            let mut order = crate::rerank::rank_reranked(db, dim, q, *ex, rerank);
            order.extend(ex.map(|e| (e, f32::NEG_INFINITY)));
            order
        })
        .collect()
}

/// The rows of a scored ranking.
pub fn unscored(column: Vec<(usize, f32)>) -> Vec<usize> {
    column.into_iter().map(|(r, _)| r).collect()
}

/// Exact positions in the full ranking of each query's relevant items, as computed by
/// [`stream_positions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelevantPositions {
    /// Per query: sorted, deduplicated database indices.
    relevant: Vec<Vec<usize>>,
    /// Per query: 0-based position of `relevant[q][i]`.
    positions: Vec<Vec<usize>>,
}

impl RelevantPositions {
    /// Sorted relevant database indices of query `q`.
    pub fn relevant(&self, q: usize) -> &[usize] {
        &self.relevant[q]
    }

    /// Positions of [`Self::relevant`]`(q)`, element by element.
    pub fn positions_of(&self, q: usize) -> &[usize] {
        &self.positions[q]
    }
}

impl PositionSource for RelevantPositions {
    fn n_queries(&self) -> usize {
        self.relevant.len()
    }

    fn positions(&self, query: usize, items: &[usize]) -> Result<Vec<usize>> {
        let (rel, pos) = match (self.relevant.get(query), self.positions.get(query)) {
            (Some(r), Some(p)) => (r, p),
            _ => return Err(EvalError::IndexOutOfRange { what: "query", query, index: query, len: self.relevant.len() }),
        };
        items
            .iter()
            .map(|&index| match rel.binary_search(&index) {
                Ok(i) => Ok(pos[i]),
                Err(_) => Err(EvalError::NotRelevant { query, index }),
            })
            .collect()
    }
}

/// Per query, the relevant items sorted in ranking order, for binary search while streaming.
struct QueryKeys {
    /// `(score, database index)`, best first.
    keys: Vec<(f32, usize)>,
    /// `order[i]`: slot in the sorted relevant list of `keys[i]`.
    order: Vec<usize>,
    /// Offset of this query's counters in the flat histogram.
    offset: usize,
}

/// Streams the database once and returns the exact 0-based position of every relevant item
/// of every query, without materialising a score matrix.
///
/// `queries`: row-major `[n_queries, dim]`; `relevant[q]`: database indices (any order,
/// duplicates allowed) whose positions query `q` needs, e.g. positives ∪ junk ∪ the query
/// itself. `block_rows`: rows per parallel work item ([`DEFAULT_BLOCK_ROWS`]).
///
/// For each row `j` and query `q`, a binary search over `q`'s relevant items (sorted in ranking
/// order) finds the first one that `j` ranks before; a per-query histogram of those cut points,
/// prefix-summed at the end, gives each relevant item the number of rows ranked before it.
pub fn stream_positions(db: &Database<'_>, queries: &[f32], relevant: &[Vec<usize>], block_rows: usize) -> Result<RelevantPositions> {
    let dim = db.dim();
    let n_q = n_rows_of(queries, dim, "query descriptors")?;
    if relevant.len() != n_q {
        return Err(EvalError::CountMismatch { what: "relevant sets vs. queries", expected: n_q, found: relevant.len() });
    }

    let mut sorted_relevant = Vec::with_capacity(n_q);
    let mut per_query = Vec::with_capacity(n_q);
    let mut offset = 0;
    for (qi, (q, rel)) in queries.chunks_exact(dim).zip(relevant).enumerate() {
        let mut rel = rel.clone();
        rel.sort_unstable();
        rel.dedup();
        let mut keys = Vec::with_capacity(rel.len());
        for &index in &rel {
            let row = db.row(index).ok_or(EvalError::IndexOutOfRange { what: "relevant database", query: qi, index, len: db.n_rows() })?;
            keys.push((score(qi, index, row, q)?, index));
        }
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by(|&a, &b| rank_cmp(keys[a].0, keys[a].1, keys[b].0, keys[b].1));
        let keys = order.iter().map(|&i| keys[i]).collect();
        per_query.push(QueryKeys { keys, order, offset });
        offset += rel.len();
        sorted_relevant.push(rel);
    }
    let n_counters = offset;

    let hist = db
        .blocks(block_rows)
        .into_par_iter()
        .try_fold(
            || vec![0usize; n_counters],
            |mut hist, (start, rows)| {
                // Tiles of 4 rows x each query: the tile stays in L1, queries stream from L2.
                // A short last tile repeats its last row; the extra scores are dropped.
                let n_rows = rows.len() / dim;
                let row = |r: usize| &rows[r.min(n_rows - 1) * dim..][..dim];
                for r0 in (0..n_rows).step_by(4) {
                    let tile = [row(r0), row(r0 + 1), row(r0 + 2), row(r0 + 3)];
                    for (qi, (q, pk)) in queries.chunks_exact(dim).zip(&per_query).enumerate() {
                        let scores = dot4(tile, q);
                        for (dr, &s) in scores.iter().enumerate().take(n_rows - r0) {
                            let j = start + r0 + dr;
                            if s.is_nan() {
                                return Err(EvalError::NanScore { query: qi, db_index: j });
                            }
                            let Some(&(ls, li)) = pk.keys.last() else {
                                continue;
                            };
                            if !ranks_before(s, j, ls, li) {
                                continue; // ranks after every relevant item: the common case
                            }
                            let t = pk.keys.partition_point(|&(sr, ir)| !ranks_before(s, j, sr, ir));
                            hist[pk.offset + t] += 1;
                        }
                    }
                }
                Ok(hist)
            },
        )
        .try_reduce(
            || vec![0usize; n_counters],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                Ok(a)
            },
        )?;

    let positions = per_query
        .iter()
        .map(|pk| {
            let mut out = vec![0usize; pk.keys.len()];
            let mut before = 0;
            for (t, &slot) in pk.order.iter().enumerate() {
                before += hist[pk.offset + t];
                out[slot] = before;
            }
            out
        })
        .collect();
    Ok(RelevantPositions { relevant: sorted_relevant, positions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_blocks_span_parts() {
        let a = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [6.0f32, 7.0];
        let db = Database::new(2, [&a[..], &[], &b[..]]).expect("db");
        assert_eq!(db.n_rows(), 4);
        assert_eq!(db.row(2), Some(&[4.0, 5.0][..]));
        assert_eq!(db.row(3), Some(&[6.0, 7.0][..]));
        assert_eq!(db.row(4), None);
        let starts: Vec<usize> = db.blocks(2).iter().map(|b| b.0).collect();
        assert_eq!(starts, [0, 2, 3]);
    }
}
