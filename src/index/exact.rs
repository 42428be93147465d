//! Exact inner-product search: the database is cut into blocks of rows; each block is scored
//! against all queries with one SGEMM (`kernels::gemm`: cache-blocked, SIMD) on a rayon
//! worker, and each worker keeps a bounded top-k per query, merged at the end. Memory beyond the
//! vectors: one `[queries × block]` score tile per worker.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::kernels::gemm::{self, Kernel, MatRef};

/// A search result: row id and inner-product score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Store row of the result.
    pub row: usize,
    /// Inner product with the query (cosine similarity for unit vectors).
    pub score: f32,
}

/// Heap entry ordered so the heap's top is the *worst* kept hit (lowest score, then highest row).
#[derive(Clone, Copy, PartialEq)]
struct Worst(Hit);
impl Eq for Worst {}
impl Ord for Worst {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.score.total_cmp(&self.0.score).then(self.0.row.cmp(&o.0.row))
    }
}
impl PartialOrd for Worst {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Better = higher score, ties to the lower row id (deterministic).
fn better(a: &Hit, b: &Hit) -> bool {
    a.score > b.score || (a.score == b.score && a.row < b.row)
}

fn push(heap: &mut BinaryHeap<Worst>, k: usize, hit: Hit) {
    if heap.len() < k {
        heap.push(Worst(hit));
    } else if let Some(top) = heap.peek() {
        if better(&hit, &top.0) {
            heap.pop();
            heap.push(Worst(hit));
        }
    }
}

pub(crate) const BLOCK_ROWS: usize = 2048;

/// A mask keeping fewer than 1 row in this many is searched by gathering the kept rows first:
/// scoring only them instead of every row (a filter keeping 1 % of the photos costs about 1 %
/// of a full scan, plus the copy), for at most 1/8 of the vectors' memory.
const GATHER_BELOW: usize = 8;

/// Top `k` rows of `vectors` ([n, dim] row-major) for each query ([nq, dim]), best first, skipping
/// rows where `alive` is false and scores below `min_score`.
pub fn search(vectors: &[f32], dim: usize, alive: Option<&[bool]>, queries: &[f32], k: usize, min_score: f32) -> Vec<Vec<Hit>> {
    let n = vectors.len() / dim;
    let nq = queries.len() / dim;
    if k == 0 || nq == 0 {
        return vec![Vec::new(); nq];
    }
    if let Some(alive) = alive {
        let kept = alive.iter().filter(|&&a| a).count();
        if kept * GATHER_BELOW < n {
            // Kept rows in ascending order, so ties still go to the lower row.
            let rows: Vec<usize> = (0..n).filter(|&r| alive[r]).collect();
            let gathered: Vec<f32> = rows.iter().flat_map(|&r| vectors[r * dim..(r + 1) * dim].iter().copied()).collect();
            return search(&gathered, dim, None, queries, k, min_score)
                .into_iter()
                .map(|hits| hits.into_iter().map(|h| Hit { row: rows[h.row], ..h }).collect())
                .collect();
        }
    }
    let heaps = (0..n.div_ceil(BLOCK_ROWS))
        .into_par_iter()
        .fold(
            || (vec![BinaryHeap::with_capacity(k + 1); nq], Vec::new()),
            |(mut heaps, mut tile): (Vec<BinaryHeap<Worst>>, Vec<f32>), b| {
                let start = b * BLOCK_ROWS;
                let rows = BLOCK_ROWS.min(n - start);
                tile.resize(nq * rows, 0.0);
                let block = &vectors[start * dim..(start + rows) * dim];
                // tile[q, r] = Σ_d queries[q, d] · block[r, d]
                gemm::matmul(&mut tile, MatRef::row_major(queries, nq, dim), MatRef::transposed(block, rows, dim), false, Kernel::Stable);
                for (q, heap) in heaps.iter_mut().enumerate() {
                    for (r, &score) in tile[q * rows..(q + 1) * rows].iter().enumerate() {
                        let row = start + r;
                        if score >= min_score && alive.is_none_or(|a| a[row]) {
                            push(heap, k, Hit { row, score });
                        }
                    }
                }
                (heaps, tile)
            },
        )
        .map(|(h, _)| h)
        .reduce(
            || vec![BinaryHeap::new(); nq],
            |mut a, b| {
                for (ha, hb) in a.iter_mut().zip(b) {
                    for w in hb {
                        push(ha, k, w.0);
                    }
                }
                a
            },
        );
    heaps
        .into_iter()
        .map(|h| {
            let mut v: Vec<Hit> = h.into_iter().map(|w| w.0).collect();
            v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_brute_force_with_ties_and_mask() {
        let dim = 3;
        let mut v = Vec::new();
        for i in 0..5000 {
            let x = ((i * 37) % 11) as f32 - 5.0;
            v.extend_from_slice(&[x, ((i * 13) % 7) as f32, 1.0]);
        }
        let alive: Vec<bool> = (0..5000).map(|i| i % 3 != 0).collect();
        let q = vec![1.0, 0.5, -0.25, 0.0, 1.0, 0.0];
        let got = search(&v, dim, Some(&alive), &q, 25, f32::MIN);
        for (qi, hits) in got.iter().enumerate() {
            let qv = &q[qi * dim..(qi + 1) * dim];
            let mut all: Vec<Hit> =
                (0..5000).filter(|&r| alive[r]).map(|r| Hit { row: r, score: v[r * dim..(r + 1) * dim].iter().zip(qv).map(|(a, b)| a * b).sum() }).collect();
            all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
            assert_eq!(hits, &all[..25]);
        }
        // A selective mask (gathered first) ranks as the brute force too.
        let few: Vec<bool> = (0..5000).map(|i| i % 97 == 5 || (i % 11 == 0 && i % 3 == 0)).collect();
        for (qi, hits) in search(&v, dim, Some(&few), &q, 25, f32::MIN).iter().enumerate() {
            let qv = &q[qi * dim..(qi + 1) * dim];
            let mut all: Vec<Hit> =
                (0..5000).filter(|&r| few[r]).map(|r| Hit { row: r, score: v[r * dim..(r + 1) * dim].iter().zip(qv).map(|(a, b)| a * b).sum() }).collect();
            all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
            assert_eq!(hits, &all[..25]);
        }
        let thresholded = search(&v, dim, None, &q[..3], 100, 9.0);
        assert!(thresholded.iter().flatten().all(|h| h.score >= 9.0));
    }
}
