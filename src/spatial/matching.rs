//! Putative matching by matrix multiplication, with decisions exact in float64.
//!
//! The authors query a SciPy KD-tree, which converts the float32 descriptors to float64 and
//! compares Euclidean distances. Near-ties between two train features can be closer than a
//! float32 dot product resolves (the fixture README reports gaps down to 1e-7), so one GEMM in
//! float32 only finds the candidates: every train feature whose float32 estimate could be among
//! the exact two nearest. Those few are then measured in float64, summed in SciPy's order.

use super::{MatchRule, SpatialError};
use crate::kernels::gemm::{self, Kernel, MatRef, Parallelism};
use crate::model::LocalFeatures;

/// Putative matches (query feature, train feature), ascending query index: each query
/// feature's nearest train feature, kept if it passes `rule` (and, with `mutual`, if the query
/// feature is also that train feature's nearest). Several queries may match one train feature
/// unless `mutual`. Exact ties go to the lower index.
pub fn putative_matches(query: &LocalFeatures, train: &LocalFeatures, rule: MatchRule, mutual: bool) -> Result<Vec<(usize, usize)>, SpatialError> {
    let (nq, nt, dim) = (query.len(), train.len(), query.dim);
    if nq == 0 || nt == 0 {
        return Ok(Vec::new());
    }
    if train.dim != dim {
        return Err(SpatialError::DimensionMismatch { which: "the candidate".into(), query: dim, found: train.dim });
    }
    let sims = similarities(&query.descriptors, &train.descriptors, nq, nt, dim);
    let (qn2, tn2) = (squared_norms(query), squared_norms(train));
    let to_f32 = |v: &[f64]| -> Vec<f32> { v.iter().map(|&x| x as f32).collect() };
    let (qn2f, tn2f) = (to_f32(&qn2), to_f32(&tn2));
    let max = |n2: &[f64]| n2.iter().fold(0.0f64, |m, &v| m.max(v));
    let (qm, tm) = (max(&qn2).sqrt(), max(&tn2).sqrt());
    // Any summation order of a float32 dot product errs by at most γ_dim·Σ|x_k·y_k| ≤ γ_dim·‖x‖‖y‖
    // (Higham, Accuracy and Stability of Numerical Algorithms, §3.1), γ_n = n·u / (1 − n·u).
    let u = f64::from(f32::EPSILON) / 2.0;
    let gamma = dim as f64 * u / (1.0 - dim as f64 * u);
    // A key ‖y‖² − 2·x·y in float32 is off by twice the dot's error, plus the rounding of the
    // norm to float32 and of the subtraction (each ≤ u·|operand|), plus float64 rounding.
    let norm2 = (qm * qm).max(tm * tm);
    let key_error = 2.0 * gamma * qm * tm + 2.0 * u * (2.0 * norm2 + 2.0 * qm * tm) + 1e-9;

    let mut nearest_query: Vec<Option<usize>> = vec![None; if mutual { nt } else { 0 }];
    let mut column = Vec::new();
    let mut pairs = Vec::new();
    for i in 0..nq {
        let row = &sims[i * nt..(i + 1) * nt];
        let (j, d1, d2) = nearest_two(row, &tn2f, key_error, |k| distance(query.descriptor(i), train.descriptor(k)));
        let pass = match rule {
            MatchRule::MaxDistance(max) => d1 < max,
            MatchRule::Ratio(ratio) => d1 < ratio * d2,
        };
        if !pass {
            continue;
        }
        if mutual {
            let back = *nearest_query[j].get_or_insert_with(|| {
                column.clear();
                column.extend((0..nq).map(|k| sims[k * nt + j]));
                nearest_two(&column, &qn2f, key_error, |k| distance(query.descriptor(k), train.descriptor(j))).0
            });
            if back != i {
                continue;
            }
        }
        pairs.push((i, j));
    }
    Ok(pairs)
}

/// The exact nearest item (index, distance) and the second-nearest distance (∞ for one item).
/// `sims[k]` are float32 dot products with the items, `norm2[k]` their squared norms, so
/// `norm2[k] − 2·sims[k]` estimates the squared distance up to a constant, within `key_error`;
/// `exact(k)` is the float64 distance. Only items whose estimate could put them among the exact
/// two nearest are measured: any other exceeds the second-smallest estimate by > 2·`key_error`.
fn nearest_two(sims: &[f32], norm2: &[f32], key_error: f64, exact: impl Fn(usize) -> f64) -> (usize, f64, f64) {
    let key = |k: usize| norm2[k] - 2.0 * sims[k];
    // The two smallest keys, per lane without branches (this loop vectorises), then merged.
    const LANES: usize = 8;
    let (mut m1, mut m2) = ([f32::INFINITY; LANES], [f32::INFINITY; LANES]);
    let body = sims.len() - sims.len() % LANES;
    for (s, n) in sims[..body].chunks_exact(LANES).zip(norm2[..body].chunks_exact(LANES)) {
        for l in 0..LANES {
            let v = n[l] - 2.0 * s[l];
            m2[l] = m2[l].min(m1[l].max(v));
            m1[l] = m1[l].min(v);
        }
    }
    let (mut k1, mut k2) = (f32::INFINITY, f32::INFINITY);
    for v in m1.into_iter().chain(m2).chain((body..sims.len()).map(key)) {
        (k1, k2) = (k1.min(v), k2.min(k1.max(v)));
    }
    // Rounded up to float32, so the comparison keeps a superset.
    let limit = ((f64::from(if sims.len() == 1 { k1 } else { k2 }) + 2.0 * key_error) as f32).next_up();
    let (mut best, mut d1, mut d2) = (0, f64::INFINITY, f64::INFINITY);
    // Whole chunks are tested branch-free first (this vectorises): few items pass.
    let hit = |(s, n): (&[f32], &[f32])| s.iter().zip(n).fold(false, |any, (&s, &n)| any | (n - 2.0 * s <= limit));
    let chunks = sims.chunks_exact(LANES).zip(norm2.chunks_exact(LANES)).enumerate();
    let starts = chunks.filter(|&(_, c)| hit(c)).map(|(c, _)| c * LANES).chain((body < sims.len()).then_some(body));
    for start in starts {
        for k in (start..(start + LANES).min(sims.len())).filter(|&k| key(k) <= limit) {
            let d = exact(k);
            if d < d1 {
                (best, d1, d2) = (k, d, d1);
            } else if d < d2 {
                d2 = d;
            }
        }
    }
    (best, d1, d2)
}

/// Euclidean distance in float64, summed as SciPy's cKDTree does (`sqeuclidean_distance_double`:
/// four partial sums over blocks of 4, added in order, then the tail).
fn distance(a: &[f32], b: &[f32]) -> f64 {
    let diff = |k: usize| f64::from(a[k]) - f64::from(b[k]);
    let body = a.len() - a.len() % 4;
    let mut acc = [0.0f64; 4];
    for k in (0..body).step_by(4) {
        for (l, acc) in acc.iter_mut().enumerate() {
            *acc += diff(k + l) * diff(k + l);
        }
    }
    let mut s = acc[0] + acc[1] + acc[2] + acc[3];
    for k in body..a.len() {
        s += diff(k) * diff(k);
    }
    s.sqrt()
}

fn squared_norms(f: &LocalFeatures) -> Vec<f64> {
    (0..f.len()).map(|i| f.descriptor(i).iter().map(|&x| f64::from(x) * f64::from(x)).sum()).collect()
}

/// `[nq, nt]` float32 dot products of the rows of `q` and `t`, single-threaded: callers
/// parallelise over candidates.
fn similarities(q: &[f32], t: &[f32], nq: usize, nt: usize, dim: usize) -> Vec<f32> {
    assert!(q.len() == nq * dim && t.len() == nt * dim, "similarities: descriptor lengths disagree with the counts");
    // out[i, j] = Σ_p q[i, p]·t[j, p].
    gemm::matmul_new(MatRef::row_major(q, nq, dim), MatRef::transposed(t, nt, dim), Kernel::Simd(Parallelism::None))
}
