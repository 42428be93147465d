//! Training-free re-ranking and query expansion over L2-normalised global descriptors: α-QE,
//! α-DBA and SuperGlobal re-ranking. Pure functions over row-major `f32` matrices; no I/O.
//!
//! # Definitions
//!
//! * **α-QE** (Radenović, Tolias, Chum: "Fine-tuning CNN image retrieval with no human
//!   annotation", TPAMI 2018, §5.1): with x_1..x_n the top n results of query q,
//!   q' = normalise(q + Σ_{i≤n} w(q·x_i) x_i) with w(s) = max(s, 0)^α; then search again with q'.
//!   The query's own weight is 1 = (q·q)^α. α = 0 gives average query expansion (AQE, Chum et
//!   al. 2007): every weight is 1, including a clamped 0 since 0^0 = 1 here as in numpy and torch.
//!   Negative similarities: the paper only uses top-ranked (positive) neighbours and the
//!   reference implementations (cirtorch-style `qe`/`dba` helpers, SuperGlobal's α-QE baseline)
//!   raise the similarity to α directly, which is NaN for a negative similarity and a non-integer
//!   α. We clamp at 0 (`clamp(min=0) ** alpha`), so a negative neighbour contributes 0 for α > 0
//!   and 1 for α = 0, and never NaN.
//! * **α-DBA** (same paper): every database vector x_i is replaced by
//!   normalise(x_i + Σ_{j ∈ kNN(i)} w(x_i·x_j) x_j), kNN(i) the k nearest *other* database vectors
//!   (ties to the lower row), w as above. k = 0 is the identity. Queries are not augmented.
//! * **SuperGlobal re-ranking** (Shao, Chen, Yan, Xiao, Zhang: "Global Features are All You Need
//!   for Image Retrieval and Reranking", ICCV 2023; modules `MDescAug` and `RerankwMDA` of the
//!   authors' code), over the top M results x_1..x_M of a query q:
//!   1. refine each candidate with its K nearest neighbours among the top M (itself excluded):
//!      x_i' = (x_i + β Σ_j s_ij x_j) / (1 + β Σ_j s_ij), s_ij = x_i·x_j — not re-normalised;
//!   2. s1_i = q·x_i';
//!   3. expanded query q̂ = element-wise max of the refined descriptors of the top K+1
//!      candidates by s1 (the code's `self.K = K + 1`; q̂ is not normalised and does not include
//!      q itself);
//!   4. final score (s1_i + q̂·x_i') / 2; the top M are sorted by it and the rest of the ranking
//!      follows unchanged.
//!
//!   In the authors' code the K+1 neighbours of step 1 are the K+1 most similar rows of the
//!   M×M matrix, the first (normally the candidate itself, similarity 1) weighted 1; we take the
//!   candidate itself plus its K most similar others, which is the same unless an exact
//!   duplicate ties with the candidate itself.
//!   Defaults [`SuperGlobal::default`]: M = 400, K = 9, β = 0.15, as we recall them from the
//!   constructors `MDescAug(M=400, K=9, beta=0.15)` / `RerankwMDA(M=400, K=9, beta=0.15)` of the
//!   authors' repository, which could not be consulted while writing this (unverified; the paper's
//!   text describes M and K but we could not re-check its table of values).
//! * **scale-GeM** (SuperGlobal §3.2 with p → ∞): the multi-scale descriptor is the element-wise
//!   max of the per-scale L2-normalised descriptors, then L2-normalised, see
//!   [`crate::descriptors::ScaleCombine`]
//!   (`dolg --scale-combine max`).
//!
//! # Composition ([`Rerank`], fixed order)
//!
//! DBA on the database (once, offline) → first search with q → α-QE: q' from the top n, second
//! search with q' → SuperGlobal over the top M of that second ranking, with q' as its query →
//! (spatial verification, when it exists). Scores below the top M are the plain dot products of
//! the last search and are not comparable with the SuperGlobal scores above them.

mod spec;
pub use spec::{parse_methods, RerankError, RerankMethod, RerankSpec, SpatialWeight, DEFAULT_ALPHA};

pub use crate::linalg::dot;

/// Scale to unit L2 norm (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// The α weight of a similarity: max(s, 0)^α (0^0 = 1).
pub(crate) fn alpha_weight(s: f32, alpha: f32) -> f32 {
    s.max(0.0).powf(alpha)
}

/// α-QE parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryExpansion {
    /// Top results that expand the query (0 = no expansion).
    pub n: usize,
    /// Exponent α of the neighbour weights max(s, 0)^α (0: plain average query expansion).
    pub alpha: f32,
}

/// SuperGlobal re-ranking parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SuperGlobal {
    /// Candidates re-ranked.
    pub m: usize,
    /// Neighbours refining each candidate; the expanded query is the max over the top K+1.
    pub k: usize,
    /// Weight β of the neighbours when refining a candidate.
    pub beta: f32,
}

impl Default for SuperGlobal {
    fn default() -> Self {
        Self { m: 400, k: 9, beta: 0.15 }
    }
}

/// What to apply after the first search, in the fixed order QE, SuperGlobal, then spatial
/// verification (which needs the query photos' local features).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rerank {
    /// α-QE after the first search, if any.
    pub qe: Option<QueryExpansion>,
    /// SuperGlobal re-ranking of the top M, if any.
    pub superglobal: Option<SuperGlobal>,
    /// Spatial verification of the top K, if any.
    pub spatial: Option<SpatialRerank>,
}

/// `--rerank spatial`: verify the top `k` results with local features and re-order them by
/// inliers ([`crate::spatial`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpatialRerank {
    /// Results verified (the DELG authors' `NUM_RERANK`, 100).
    pub k: usize,
    /// How the verified results are matched and re-ordered.
    pub params: crate::spatial::SpatialParams,
}

impl Default for SpatialRerank {
    fn default() -> Self {
        Self { k: 100, params: crate::spatial::SpatialParams::default() }
    }
}

/// Spatial settings a caller gave (`dolg search` flags, `POST /search` parameters, Python
/// keywords); those not given follow the defaults of the index's local features
/// ([`crate::collection::Collection::spatial_rerank_defaults`]). One resolution for every front end.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct SpatialOverrides {
    pub k: Option<usize>,
    pub min_inliers: Option<usize>,
    /// Lowe's ratio test with this ratio instead of the distance bound.
    pub match_ratio: Option<f64>,
    pub mutual: Option<bool>,
    pub model: Option<crate::spatial::GeometricModel>,
    pub threshold_px: Option<f64>,
    /// [`crate::spatial::SpatialParams::weight`] (`Some(None)`: the authors' order by inliers).
    pub weight: Option<Option<f64>>,
    /// Another matcher than the defaults' brings its own ordering (floor, weight, half) unless
    /// given ([`crate::spatial::default_ordering`]).
    pub matcher: Option<crate::spatial::Matcher>,
}

impl SpatialOverrides {
    /// `defaults` with every given setting in its place.
    pub fn resolve(&self, defaults: SpatialRerank) -> SpatialRerank {
        let d = defaults.params;
        let (floor, weight, half_inliers) = match self.matcher.filter(|&m| m != d.matcher) {
            Some(m) => crate::spatial::default_ordering(m),
            None => (d.min_inliers, d.weight, d.half_inliers),
        };
        let params = crate::spatial::SpatialParams {
            matcher: self.matcher.unwrap_or(d.matcher),
            rule: self.match_ratio.map_or(d.rule, crate::spatial::MatchRule::Ratio),
            mutual: self.mutual.unwrap_or(d.mutual),
            model: self.model.unwrap_or(d.model),
            threshold_px: self.threshold_px.unwrap_or(d.threshold_px),
            min_inliers: self.min_inliers.unwrap_or(floor),
            weight: self.weight.unwrap_or(weight),
            half_inliers,
            ..d
        };
        SpatialRerank { k: self.k.unwrap_or(defaults.k), params }
    }
}

impl Rerank {
    /// Whether no re-ranking stage is set.
    pub fn is_none(&self) -> bool {
        self.qe.is_none() && self.superglobal.is_none() && self.spatial.is_none()
    }
    /// How many results of the last search the re-ranking needs.
    pub fn depth(&self) -> usize {
        self.superglobal.map_or(0, |s| s.m).max(self.spatial.map_or(0, |s| s.k))
    }
}

/// α-QE: normalise(q + Σ w(q·x_i) x_i) over `neighbours` ([n, dim] row-major, the top n).
pub fn expand_query(q: &[f32], neighbours: &[f32], alpha: f32) -> Vec<f32> {
    let dim = q.len();
    let mut out = q.to_vec();
    for x in neighbours.chunks_exact(dim) {
        let w = alpha_weight(dot(q, x), alpha);
        out.iter_mut().zip(x).for_each(|(o, v)| *o += w * v);
    }
    normalize(&mut out);
    out
}

/// Rows of `db` by descending `q·x`, ties to the lower row, leaving out `exclude`.
pub fn rank(db: &[f32], dim: usize, q: &[f32], exclude: Option<usize>) -> Vec<(usize, f32)> {
    let mut s: Vec<(usize, f32)> = db.chunks_exact(dim).map(|x| dot(q, x)).enumerate().filter(|(i, _)| Some(*i) != exclude).collect();
    s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    s
}

/// The k nearest other rows of row `i` (descending similarity, ties to the lower row), with
/// their similarities.
fn neighbours(db: &[f32], dim: usize, i: usize, k: usize) -> Vec<(usize, f32)> {
    let mut r = rank(db, dim, &db[i * dim..(i + 1) * dim], Some(i));
    r.truncate(k);
    r
}

/// α-DBA of the given rows of `db` ([n, dim]): one augmented vector per entry of `rows`, the
/// neighbours taken among all rows of `db`.
pub(crate) fn dba_rows(db: &[f32], dim: usize, rows: &[usize], k: usize, alpha: f32) -> Vec<f32> {
    dba_rows_with_neighbours(db, dim, rows, k, alpha).0
}

/// [`dba_rows`], also returning each row's neighbours (positions in `db` with their
/// similarities, best first): what an incremental update needs to tell which rows a change
/// affects.
pub(crate) fn dba_rows_with_neighbours(db: &[f32], dim: usize, rows: &[usize], k: usize, alpha: f32) -> (Vec<f32>, Vec<Vec<(usize, f32)>>) {
    let mut out = Vec::with_capacity(rows.len() * dim);
    let mut lists = Vec::with_capacity(rows.len());
    for &i in rows {
        let x = &db[i * dim..(i + 1) * dim];
        let mut v = x.to_vec();
        let nn = neighbours(db, dim, i, k);
        for &(j, s) in &nn {
            let w = alpha_weight(s, alpha);
            v.iter_mut().zip(&db[j * dim..(j + 1) * dim]).for_each(|(o, y)| *o += w * y);
        }
        normalize(&mut v);
        out.extend(v);
        lists.push(nn);
    }
    (out, lists)
}

/// α-DBA of every row of `db` ([n, dim] row-major). k = 0 returns `db` unchanged (re-normalised).
pub fn dba(db: &[f32], dim: usize, k: usize, alpha: f32) -> Vec<f32> {
    let rows: Vec<usize> = (0..db.len() / dim).collect();
    dba_rows(db, dim, &rows, k, alpha)
}

/// SuperGlobal re-ranking of `candidates` ([M, dim], the top M of a ranking, best first) for
/// query `q`: the new order as (position in `candidates`, final score), best first (ties to the
/// earlier position).
pub fn superglobal(q: &[f32], candidates: &[f32], params: &SuperGlobal) -> Vec<(usize, f32)> {
    let dim = q.len();
    let m = candidates.len() / dim;
    // 1. Refine each candidate with its K nearest neighbours among the candidates.
    let mut refined = Vec::with_capacity(m * dim);
    for i in 0..m {
        let mut v = candidates[i * dim..(i + 1) * dim].to_vec();
        let mut total = 1.0f32;
        for (j, s) in neighbours(candidates, dim, i, params.k) {
            let w = params.beta * s;
            total += w;
            v.iter_mut().zip(&candidates[j * dim..(j + 1) * dim]).for_each(|(o, y)| *o += w * y);
        }
        v.iter_mut().for_each(|o| *o /= total);
        refined.extend(v);
    }
    // 2. First score, and the order it gives.
    let s1 = rank(&refined, dim, q, None);
    // 3. Expanded query: element-wise max over the top K+1 refined candidates.
    let mut qhat = vec![f32::NEG_INFINITY; dim];
    for &(i, _) in s1.iter().take(params.k + 1) {
        qhat.iter_mut().zip(&refined[i * dim..(i + 1) * dim]).for_each(|(a, b)| *a = a.max(*b));
    }
    // 4. Final score, sorted; ties keep the s1 order, as a stable sort over it would.
    let mut out: Vec<(usize, f32)> = s1.iter().map(|&(i, s)| (i, (s + dot(&qhat, &refined[i * dim..(i + 1) * dim])) / 2.0)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// Apply `rerank` to a ranking: `top` is the ranking (row, score) of the last search, best
/// first, `vector(row)` a database vector and `q` the query that made `top`. Returns the new
/// ranking (SuperGlobal over the first M, the rest unchanged).
pub(crate) fn superglobal_ranking<'a>(q: &[f32], top: &[(usize, f32)], vector: impl Fn(usize) -> &'a [f32], params: &SuperGlobal) -> Vec<(usize, f32)> {
    let m = params.m.min(top.len());
    let candidates: Vec<f32> = top[..m].iter().flat_map(|&(r, _)| vector(r).iter().copied()).collect();
    let mut out: Vec<(usize, f32)> = superglobal(q, &candidates, params).into_iter().map(|(p, s)| (top[p].0, s)).collect();
    out.extend_from_slice(&top[m..]);
    out
}

/// The whole pipeline on an in-memory database ([n, dim], already DBA-augmented if wanted): first
/// search with `q`, then α-QE and SuperGlobal as `rerank` says. Returns the full ranking of
/// every row but `exclude`, best first.
pub fn rank_reranked(db: &[f32], dim: usize, q: &[f32], exclude: Option<usize>, rerank: &Rerank) -> Vec<(usize, f32)> {
    let mut ranking = rank(db, dim, q, exclude);
    let mut query = q.to_vec();
    if let Some(qe) = rerank.qe.filter(|qe| qe.n > 0) {
        let top: Vec<f32> = ranking.iter().take(qe.n).flat_map(|&(r, _)| db[r * dim..(r + 1) * dim].iter().copied()).collect();
        query = expand_query(q, &top, qe.alpha);
        ranking = rank(db, dim, &query, exclude);
    }
    if let Some(sg) = &rerank.superglobal {
        ranking = superglobal_ranking(&query, &ranking, |r| &db[r * dim..(r + 1) * dim], sg);
    }
    ranking
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_qe_and_identity_dba() {
        let q = [1.0, 0.0];
        let top = [0.6, 0.8, 0.0, 1.0];
        // α = 0: (1,0)+(0.6,0.8)+(0,1) = (1.6,1.8), normalised.
        let e = expand_query(&q, &top, 0.0);
        let n = (1.6f32 * 1.6 + 1.8 * 1.8).sqrt();
        assert!((e[0] - 1.6 / n).abs() < 1e-6 && (e[1] - 1.8 / n).abs() < 1e-6);
        let db = [1.0, 0.0, 0.6, 0.8, 0.0, 1.0];
        assert_eq!(dba(&db, 2, 0, 3.0), db.to_vec());
    }
}
