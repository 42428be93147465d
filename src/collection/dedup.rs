//! Near-duplicate photos ([`Collection::duplicates`]): re-encodes, resizes, crops and edits of
//! the same picture, grouped so that a person can review each group and keep one photo.
//!
//! # What a group is
//!
//! Two photos are *near-duplicates* when the cosine similarity of their descriptors is at least
//! the threshold. A group is a **connected component** of that graph (union-find over the pairs):
//! if A~B and B~C, then A, B and C form one group even when A and C score below the threshold.
//! This is what photo-collection tools show (imagededup, czkawka, Immich's duplicate review), and
//! it is the only grouping that is independent of the order the photos were indexed in and needs
//! nothing beyond the pairs: complete linkage ("every two members ≥ threshold") has no unique
//! answer (a greedy split depends on the order), and average linkage needs every pairwise score of
//! every candidate cluster. The price is chaining: a run of gradual edits (or a burst of photos
//! taken seconds apart) can link pictures that are not duplicates of each other. Each group
//! therefore reports its **weakest** pair — the lowest similarity between any two members, over
//! all pairs and not only those above the threshold ([`DuplicateGroup::weakest`]). When it is
//! below the threshold, the group was chained and deserves a closer look; raising the threshold
//! splits it.
//!
//! # How pairs are found, without an n×n matrix
//!
//! * **Exact** ([`DedupMethod::Exact`], [`self_join`]): a blocked self-join. The live rows are
//!   cut into blocks of `block` rows; every pair of blocks (i ≤ j, the upper triangle) is scored
//!   with one SGEMM into a `block × block` tile on a rayon worker, and only the pairs (row a <
//!   row b) scoring at least the threshold are kept. Memory beyond the stored vectors is one tile
//!   per worker (4 MiB at the default 1,024 rows) plus the pairs found. The work is n²·dim/2
//!   multiply-adds: 50,000 photos of 512-d descriptors took 16 s on 2 cores (80 GFLOP/s,
//!   `dedup_bench join-bench 50000 512`), so 100,000 take about a minute there.
//! * **Graph** ([`DedupMethod::Graph`]): each live vector asks the search backend for its nearest
//!   neighbours scoring at least the threshold (widening k while all of them do, up to
//!   [`GRAPH_MAX_K`]); the pairs found are scored again exactly against the stored vectors and
//!   kept if they still reach the threshold. For an HNSW index this uses its own graph; for an
//!   exact index a temporary HNSW graph of its live vectors is built for the call. It is
//!   **approximate**: a pair the graph misses (HNSW recall below 1, or a photo with more than
//!   [`GRAPH_MAX_K`] duplicates) is missing, which can split a group in two. Scores and every
//!   pair it reports are exact.
//! * [`DedupMethod::Auto`] takes the exact join up to [`EXACT_LIMIT`] live entries, whatever the
//!   index kind (up to that size the join costs at most about a minute and misses nothing), and
//!   the graph above it.
//!
//! Scores within [`SCORE_TOLERANCE`] below the threshold count as reaching it, so that f32
//! rounding of a dot product cannot drop a pair at the threshold (two copies of the same photo
//! score 1 ± 10⁻⁶, and must be found with threshold 1.0).
//!
//! # Default thresholds
//!
//! Chosen leave-one-source-out (`scripts/select_defaults.sh`, `examples/select_defaults.rs`,
//! `docs/quality.md`): for each of the five sources of the validation corpus, the 11 edits of the
//! first photo of each of 8 groups (JPEG re-encodes at quality 95/75/50/30, resizes to 50 % and
//! 25 %, centre crops keeping 90/80/70 %, brightness ×1.2 and ×0.8) among all of the source's
//! photos, whose other photos of the same places are *not* duplicates (`dedup_bench
//! make-set-from`). A setting is scored by the pairwise precision and recall of "in the same
//! group", chosen on four sources by mean F1 and reported on the fifth.
//!
//! * **MobileNetV2-GeM with the local check** ([`DedupVerify`], XFeat features stored):
//!   threshold **0.92**, at least **40** inliers within **1.5 px** (in XFeat's 640 px frame)
//!   among the mutual matches of each photo's best **256** keypoints. Held out, F1 0.956 /
//!   0.978 / 0.936 / 0.954 / 0.970 (mean 0.959, precision 0.97, recall 0.95); 0.86 before
//!   XFeat saw every photo at one size. The threshold is the highest within 0.01 F1 of the best,
//!   as every pair above it is checked (about 0.3 ms a pair on 2 threads): 100,000 unrelated
//!   photos have about 3.6 million pairs above 0.92. What it still merges is photos from one
//!   spot moments apart (video or optical-flow frames, a fixed camera).
//! * **MobileNetV2-GeM, global score alone**: **0.96**; held out, mean F1 0.74 (precision 0.75,
//!   recall 0.80). Its scores are compressed (every pair of photos scores above 0.78): a 25 %
//!   resize scores lower than another photo of the same place taken from nearby.
//! * **DOLG** checkpoints: **0.90**, *not measured on a trained model* — none is at hand. The only
//!   DOLG weights measured are the random-weights test fixture, whose descriptors are nearly
//!   constant (every pair scores above 0.73; best F1 0.44 at 0.992), which says nothing about a
//!   trained model. 0.90 is the value photo-deduplication tools use for CNN cosine similarity
//!   (imagededup's default); a landmark model is trained to pull different photos of one place
//!   together, so check it on your own collection (`examples/dedup_bench.rs` measures any index)
//!   and pass `--threshold`.
//! * Indexes of imported vectors (no model recorded) get the DOLG default.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::Serialize;

use super::error::Result;
use super::Collection;
use crate::index::{HnswIndex, IndexError, IndexKind, LocalConfig, ModelIdentity};
use crate::kernels::gemm::{self, Kernel, MatRef};
use crate::linalg::dot;
use crate::model::LocalFeatures;

/// Scores this far below the threshold still reach it (f32 rounding of a dot product).
pub const SCORE_TOLERANCE: f32 = 1e-5;

/// Rows per block of the exact self-join: tiles of `1024 × 1024` scores (4 MiB) per worker.
pub const DEFAULT_BLOCK_ROWS: usize = 1024;

/// [`DedupMethod::Auto`] joins exactly up to this many live entries, and uses the graph above.
pub const EXACT_LIMIT: usize = 100_000;

/// Neighbours first asked of the graph per photo (itself included).
pub(crate) const GRAPH_K: usize = 16;

/// The graph widens its neighbour lists up to this many per photo.
pub const GRAPH_MAX_K: usize = 1024;

/// Groups with more members than this get no [`DuplicateGroup::weakest`] (it costs every pair).
pub const WEAKEST_MAX_MEMBERS: usize = 4096;

/// Default threshold for DOLG models: not measured on a trained checkpoint (see the module documentation).
pub const DEFAULT_THRESHOLD_DOLG: f32 = 0.90;

/// Default threshold for the off-the-shelf MobileNetV2-GeM backbone without the local check: the
/// best mean F1 over the five corpus sources (module documentation).
pub const DEFAULT_THRESHOLD_MOBILENETV2: f32 = 0.96;

/// Default threshold for MobileNetV2-GeM when pairs are also checked with local features.
pub(crate) const DEFAULT_THRESHOLD_MOBILENETV2_VERIFIED: f32 = 0.92;

/// How pairs above the threshold are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DedupMethod {
    /// Exact up to [`EXACT_LIMIT`] live entries, the graph above.
    #[default]
    Auto,
    /// Blocked exact self-join ([`self_join`]): finds every pair.
    Exact,
    /// Each photo's nearest neighbours from an HNSW graph: approximate.
    Graph,
}

/// Options of [`Collection::duplicates`].
#[derive(Debug, Clone, Copy)]
pub struct DedupOptions {
    /// How pairs above the threshold are found.
    pub method: DedupMethod,
    /// Rows per block of the exact self-join (the tile is `block × block` scores per worker).
    pub block_rows: usize,
    /// Graph: neighbours first asked per photo (widened while all reach the threshold).
    pub graph_k: usize,
    /// The local-feature check of every pair the global score finds, applied when the index
    /// stores local features ([`DedupVerify`]; left at its default, the default for the index's
    /// features, [`DedupVerify::defaults_for`]); `None` keeps every such pair.
    pub verify: Option<DedupVerify>,
}

impl Default for DedupOptions {
    fn default() -> Self {
        Self { method: DedupMethod::Auto, block_rows: DEFAULT_BLOCK_ROWS, graph_k: GRAPH_K, verify: Some(DedupVerify::default()) }
    }
}

/// The local check of a candidate pair: an edited copy (re-encoded, resized, cropped, brightened)
/// is one picture, so a single transform maps its keypoints onto the original's to within a pixel
/// or two, while another photo of the same place, even from a step away, only up to parallax and
/// with fewer such points. A pair stays a duplicate when RANSAC (the index's spatial
/// verification, [`super::local::spatial_defaults`], with `threshold_px` in the frame the
/// features were found in: 640 px for XFeat) finds at least `min_inliers` inliers among the
/// mutual matches of each photo's best `keypoints` features, and they are at least `min_ratio`
/// of those matches. A pair where either photo has no stored features keeps the global decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DedupVerify {
    /// Fewest RANSAC inliers for the pair to stay a duplicate.
    pub min_inliers: usize,
    /// Smallest fraction of the matches that must be inliers.
    pub min_ratio: f64,
    /// Reprojection error of an inlier, in pixels of the frame the features were found in.
    pub threshold_px: f64,
    /// Each photo's best features matched (matching costs their square).
    pub keypoints: usize,
}

impl Default for DedupVerify {
    fn default() -> Self {
        Self {
            min_inliers: DEFAULT_VERIFY_MIN_INLIERS,
            min_ratio: DEFAULT_VERIFY_MIN_RATIO,
            threshold_px: DEFAULT_VERIFY_PX,
            keypoints: DEFAULT_VERIFY_KEYPOINTS,
        }
    }
}

/// [`DedupVerify::min_inliers`] by default (module documentation, "Default thresholds").
pub(crate) const DEFAULT_VERIFY_MIN_INLIERS: usize = 40;
/// [`DedupVerify::min_ratio`] by default: chosen with the others, no ratio needed.
pub(crate) const DEFAULT_VERIFY_MIN_RATIO: f64 = 0.0;
/// [`DedupVerify::threshold_px`] by default.
pub(crate) const DEFAULT_VERIFY_PX: f64 = 1.5;
/// [`DedupVerify::keypoints`] by default: within 0.01 F1 of all 1,000 at a sixth of the cost.
pub(crate) const DEFAULT_VERIFY_KEYPOINTS: usize = 256;

impl DedupVerify {
    /// Whether a verification passes.
    pub fn accepts(&self, inliers: usize, matches: usize) -> bool {
        inliers >= self.min_inliers && inliers as f64 >= self.min_ratio * matches as f64
    }

    /// The check for features of `extractor` when the caller left the default: XFeat's measured
    /// one ([`Default`]); for other features (DELG, whose keypoints lie on a stride-16 grid and
    /// are compared in image pixels) the check as it was before the 640 px frame, not measured:
    /// at least 30 inliers making 40 % of the matches, the extractor's own RANSAC bound (DELG
    /// 20 px), every keypoint.
    pub fn defaults_for(extractor: &str) -> Self {
        match extractor {
            "xfeat" => Self::default(),
            other => Self { min_inliers: 30, min_ratio: 0.4, threshold_px: super::local::spatial_defaults(other).threshold_px, keypoints: usize::MAX },
        }
    }

    /// The spatial verification this check runs for features of `extractor`.
    pub fn params(&self, extractor: &str) -> crate::spatial::SpatialParams {
        crate::spatial::SpatialParams { threshold_px: self.threshold_px, ..super::local::spatial_defaults(extractor) }
    }
}

/// Two rows scoring at least the threshold (`a < b`, store row ids).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredPair {
    /// Store row of the first photo.
    pub a: usize,
    /// Store row of the second photo.
    pub b: usize,
    /// Global similarity (dot product of the stored descriptors).
    pub score: f32,
}

/// Two near-duplicate photos of a group, by name (`a < b`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DuplicatePair {
    /// Indexed name of the first photo.
    pub a: String,
    /// Indexed name of the second photo.
    pub b: String,
    /// Global similarity (dot product of the stored descriptors).
    pub score: f32,
}

/// A group of near-duplicate photos: a connected component of the pairs at or above the
/// threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DuplicateGroup {
    /// Indexed names, sorted.
    pub members: Vec<String>,
    /// Every pair of members scoring at least the threshold (exact method: all of them; graph:
    /// those the graph found), best first, then by names.
    pub pairs: Vec<DuplicatePair>,
    /// The highest score of the group's pairs.
    pub best: f32,
    /// The lowest similarity between any two members, over all pairs (also those below the
    /// threshold): below the threshold when the group was chained (A~B~C with A≁C). `None` for
    /// groups of more than [`WEAKEST_MAX_MEMBERS`] members.
    pub weakest: Option<f32>,
}

impl DuplicateGroup {
    /// Each member's best score against another member of the group, in `members` order.
    pub fn member_best(&self) -> Vec<f32> {
        let pos: HashMap<&str, usize> = self.members.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
        let mut best = vec![f32::NEG_INFINITY; self.members.len()];
        for p in &self.pairs {
            for name in [&p.a, &p.b] {
                let b = &mut best[pos[name.as_str()]];
                *b = b.max(p.score);
            }
        }
        best
    }

    /// True when some two members score below `threshold`: the group is a chain.
    pub fn is_chained(&self, threshold: f32) -> bool {
        self.weakest.is_some_and(|w| w < threshold - SCORE_TOLERANCE)
    }
}

/// Does `score` reach `threshold` (within [`SCORE_TOLERANCE`])? A NaN threshold reaches nothing.
#[inline]
pub fn reaches(score: f32, threshold: f32) -> bool {
    score >= threshold - SCORE_TOLERANCE
}

/// The default near-duplicate threshold for a collection's model (see the module documentation):
/// [`DEFAULT_THRESHOLD_MOBILENETV2`] for the MobileNetV2-GeM backbone, [`DEFAULT_THRESHOLD_DOLG`]
/// for DOLG checkpoints and for indexes of imported vectors (no model recorded).
pub fn default_threshold(model: &ModelIdentity, verified: bool) -> f32 {
    let backbone = model.spec.as_ref().and_then(|s| s.backbone);
    match (backbone.is_some() || model.name.starts_with("MobileNetV2"), verified) {
        (true, true) => DEFAULT_THRESHOLD_MOBILENETV2_VERIFIED,
        (true, false) => DEFAULT_THRESHOLD_MOBILENETV2,
        (false, _) => DEFAULT_THRESHOLD_DOLG,
    }
}

/// Every pair of rows `a < b` of `vectors` ([n, dim] row-major) whose inner product reaches
/// `threshold`, skipping rows where `alive` is false, sorted by `(a, b)`. Blocked: tiles of at
/// most `block × block` scores, one per rayon worker; nothing of size n×n is allocated.
pub fn self_join(vectors: &[f32], dim: usize, alive: Option<&[bool]>, threshold: f32, block: usize) -> Vec<ScoredPair> {
    assert!(dim > 0 && block > 0, "self_join: dim and block must be positive");
    let n = vectors.len() / dim;
    let nb = n.div_ceil(block);
    let live = |r: usize| alive.is_none_or(|a| a[r]);
    let mut pairs = (0..nb)
        .into_par_iter()
        .flat_map_iter(|bi| (bi..nb).map(move |bj| (bi, bj)))
        .fold(
            || (Vec::new(), Vec::<f32>::new()),
            |(mut found, mut tile): (Vec<ScoredPair>, Vec<f32>), (bi, bj)| {
                let (r0, c0) = (bi * block, bj * block);
                let (rows, cols) = (block.min(n - r0), block.min(n - c0));
                tile.resize(rows * cols, 0.0);
                let a = &vectors[r0 * dim..(r0 + rows) * dim];
                let b = &vectors[c0 * dim..(c0 + cols) * dim];
                // tile[r, c] = Σ_d a[r, d] · b[c, d]
                gemm::matmul(&mut tile, MatRef::row_major(a, rows, dim), MatRef::transposed(b, cols, dim), false, Kernel::Stable);
                for r in 0..rows {
                    let ra = r0 + r;
                    if !live(ra) {
                        continue;
                    }
                    // On a diagonal tile only the pairs above the diagonal (a < b).
                    let first = if bi == bj { r + 1 } else { 0 };
                    for (c, &score) in tile[r * cols..(r + 1) * cols].iter().enumerate().skip(first) {
                        if reaches(score, threshold) && live(c0 + c) {
                            found.push(ScoredPair { a: ra, b: c0 + c, score });
                        }
                    }
                }
                (found, tile)
            },
        )
        .map(|(found, _)| found)
        .reduce(Vec::new, |mut x, mut y| {
            x.append(&mut y);
            x
        });
    pairs.sort_by_key(|p| (p.a, p.b));
    pairs
}

/// Union-find with path halving and union by size.
struct UnionFind {
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self { parent: (0..n).collect(), size: vec![1; n] }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        if self.size[ra] < self.size[rb] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb] = ra;
        self.size[ra] += self.size[rb];
    }
}

/// Connected components of the graph on rows `0..n` with edges `pairs`, leaving out rows in no
/// pair: each component's rows ascending, components ordered by their smallest row.
pub fn components(n: usize, pairs: &[ScoredPair]) -> Vec<Vec<usize>> {
    let mut uf = UnionFind::new(n);
    for p in pairs {
        uf.union(p.a, p.b);
    }
    let mut by_root: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut in_pair = vec![false; n];
    for p in pairs {
        in_pair[p.a] = true;
        in_pair[p.b] = true;
    }
    for r in (0..n).filter(|&r| in_pair[r]) {
        by_root.entry(uf.find(r)).or_default().push(r);
    }
    let mut comps: Vec<Vec<usize>> = by_root.into_values().collect();
    comps.sort_by_key(|c| c[0]);
    comps
}

/// Groups from the pairs of a join: members by name, pairs inside each group, best and weakest
/// scores, ordered largest first, then by best score, then by first member name.
pub(crate) fn groups_from_pairs(vectors: &[f32], dim: usize, names: &(dyn Fn(usize) -> String + Sync), pairs: &[ScoredPair]) -> Vec<DuplicateGroup> {
    let n = vectors.len() / dim;
    let comps = components(n, pairs);
    let mut comp_of = HashMap::new();
    for (g, c) in comps.iter().enumerate() {
        for &r in c {
            comp_of.insert(r, g);
        }
    }
    let mut group_pairs: Vec<Vec<&ScoredPair>> = vec![Vec::new(); comps.len()];
    for p in pairs {
        group_pairs[comp_of[&p.a]].push(p);
    }
    let row = |r: usize| &vectors[r * dim..(r + 1) * dim];
    let mut groups: Vec<DuplicateGroup> = comps
        .par_iter()
        .zip(group_pairs)
        .map(|(rows, gp)| {
            let mut members: Vec<String> = rows.iter().map(|&r| names(r)).collect();
            let name_of: HashMap<usize, &str> = rows.iter().zip(&members).map(|(&r, m)| (r, m.as_str())).collect();
            let mut pairs: Vec<DuplicatePair> = gp
                .iter()
                .map(|p| {
                    let (x, y) = (name_of[&p.a], name_of[&p.b]);
                    let (a, b) = if x <= y { (x, y) } else { (y, x) };
                    DuplicatePair { a: a.to_owned(), b: b.to_owned(), score: p.score }
                })
                .collect();
            pairs.sort_by(|p, q| q.score.total_cmp(&p.score).then_with(|| (&p.a, &p.b).cmp(&(&q.a, &q.b))));
            let best = pairs.first().map_or(f32::NAN, |p| p.score);
            let weakest = (rows.len() <= WEAKEST_MAX_MEMBERS).then(|| {
                let mut w = f32::INFINITY;
                for (i, &a) in rows.iter().enumerate() {
                    for &b in &rows[i + 1..] {
                        w = w.min(dot(row(a), row(b)));
                    }
                }
                w
            });
            members.sort();
            DuplicateGroup { members, pairs, best, weakest }
        })
        .collect();
    groups.sort_by(|x, y| y.members.len().cmp(&x.members.len()).then_with(|| y.best.total_cmp(&x.best)).then_with(|| x.members.cmp(&y.members)));
    groups
}

/// Neighbours of each listed row (row ids, k), best first: (row, score) pairs.
type NeighbourSearch<'a> = dyn Fn(&[usize], usize) -> Result<Vec<Vec<(usize, f32)>>> + Sync + 'a;

/// Pairs reaching `threshold` found through each row's nearest neighbours (`search(rows, k)`:
/// per query row, up to `k` `(row, score)` hits, best first, possibly including itself), then
/// scored exactly against `vectors`. Widens `k` for the rows whose every hit reached the
/// threshold, up to [`GRAPH_MAX_K`].
fn graph_pairs(vectors: &[f32], dim: usize, live: &[usize], threshold: f32, k0: usize, search: &NeighbourSearch<'_>) -> Result<Vec<ScoredPair>> {
    // The graph's own scores carry its rounding (usearch returns 1 − (1 − dot)): take a margin
    // and decide on the exact score.
    let margin = 1e-4;
    let mut found: HashMap<(usize, usize), f32> = HashMap::new();
    let mut todo: Vec<usize> = live.to_vec();
    let mut k = (k0.max(2)).min(live.len());
    let mut capped = 0usize;
    while !todo.is_empty() {
        let hits: Vec<(usize, Vec<(usize, f32)>)> = todo
            .par_chunks(256)
            .map(|chunk| Ok(chunk.iter().copied().zip(search(chunk, k)?).collect::<Vec<_>>()))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        let mut again = Vec::new();
        for (q, hs) in hits {
            let mut all_reach = hs.len() == k;
            for (r, s) in hs {
                if s < threshold - margin {
                    all_reach = false;
                    continue;
                }
                if r == q {
                    continue;
                }
                let key = (q.min(r), q.max(r));
                found.entry(key).or_insert_with(|| dot(&vectors[key.0 * dim..(key.0 + 1) * dim], &vectors[key.1 * dim..(key.1 + 1) * dim]));
            }
            if all_reach {
                if k >= GRAPH_MAX_K.min(live.len()) {
                    capped += 1;
                } else {
                    again.push(q);
                }
            }
        }
        todo = again;
        k = (k * 2).min(GRAPH_MAX_K).min(live.len());
    }
    if capped > 0 {
        tracing::warn!("{capped} photos have more than {GRAPH_MAX_K} near-duplicates; the graph kept only that many of their pairs");
    }
    let mut pairs: Vec<ScoredPair> = found.into_iter().filter(|&(_, s)| reaches(s, threshold)).map(|((a, b), score)| ScoredPair { a, b, score }).collect();
    pairs.sort_by_key(|p| (p.a, p.b));
    Ok(pairs)
}

/// Reads the stored local features of rows (`None` where a row has none), in their order.
pub(crate) type LocalReader<'a> = dyn Fn(&[usize]) -> Result<Vec<Option<LocalFeatures>>> + Sync + 'a;

/// What [`find_duplicates`] reads from a collection of either kind (a local index or PostgreSQL
/// shards).
pub(crate) struct DedupInput<'a> {
    /// Every row's vector, `[rows, dim]` row-major.
    pub vectors: &'a [f32],
    pub dim: usize,
    /// Which rows are live (`None`: all).
    pub alive: Option<&'a [bool]>,
    /// A row's name.
    pub name: &'a (dyn Fn(usize) -> String + Sync),
    /// The collection's own nearest-neighbour search for the graph method (its HNSW graph); a
    /// temporary graph of the live vectors is built when `None`.
    pub search: Option<&'a NeighbourSearch<'a>>,
    /// The local features stored with the rows, if any.
    pub local: Option<(&'a LocalConfig, &'a LocalReader<'a>)>,
}

/// [`DedupMethod::Auto`] resolved for `live` entries.
pub fn resolve_method(method: DedupMethod, live: usize) -> DedupMethod {
    match method {
        DedupMethod::Auto if live <= EXACT_LIMIT => DedupMethod::Exact,
        DedupMethod::Auto => DedupMethod::Graph,
        m => m,
    }
}

/// Groups of near-duplicates among the live rows of `input` ([`Collection::duplicates`]).
pub(crate) fn find_duplicates(input: &DedupInput<'_>, threshold: f32, options: &DedupOptions) -> Result<Vec<DuplicateGroup>> {
    let (vectors, dim) = (input.vectors, input.dim);
    let live: Vec<usize> = (0..vectors.len() / dim).filter(|&r| input.alive.is_none_or(|a| a[r])).collect();
    if live.is_empty() {
        return Ok(Vec::new());
    }
    let pairs = match resolve_method(options.method, live.len()) {
        DedupMethod::Exact | DedupMethod::Auto => self_join(vectors, dim, input.alive, threshold, options.block_rows.max(1)),
        DedupMethod::Graph => {
            let k0 = options.graph_k + 1;
            match input.search {
                Some(search) => graph_pairs(vectors, dim, &live, threshold, k0, search)?,
                None => {
                    let mut graph = HnswIndex::new(dim, live.len()).map_err(IndexError::from)?;
                    let ids: Vec<u64> = live.iter().map(|&r| r as u64).collect();
                    let rows: Vec<f32> = live.iter().flat_map(|&r| vectors[r * dim..(r + 1) * dim].iter().copied()).collect();
                    graph.add_batch(&ids, &rows).map_err(IndexError::from)?;
                    drop(rows);
                    let search = |rows: &[usize], k: usize| -> Result<Vec<Vec<(usize, f32)>>> {
                        rows.iter()
                            .map(|&r| {
                                Ok(graph
                                    .search(&vectors[r * dim..(r + 1) * dim], k)
                                    .map_err(IndexError::from)?
                                    .into_iter()
                                    .map(|(id, sc)| (id as usize, sc))
                                    .collect())
                            })
                            .collect()
                    };
                    graph_pairs(vectors, dim, &live, threshold, k0, &search)?
                }
            }
        }
    };
    let pairs = match (options.verify, input.local) {
        (Some(v), Some((cfg, read))) => {
            let v = if v == DedupVerify::default() { DedupVerify::defaults_for(&cfg.extractor) } else { v };
            let checked = verify_pairs_with(read, &pairs, &v.params(&cfg.extractor), v.keypoints)?;
            pairs.into_iter().zip(checked).filter(|(_, c)| c.is_none_or(|(inliers, matches)| v.accepts(inliers, matches))).map(|(p, _)| p).collect()
        }
        _ => pairs,
    };
    Ok(groups_from_pairs(vectors, dim, input.name, &pairs))
}

/// (inliers, putative matches) of each pair's stored local features (read with `read`) under
/// `params`, in parallel; `None` where either photo has none. Only each photo's best `keypoints`
/// features take part (matching costs their square). Each photo's features are read once,
/// however many pairs it is in (a photo with many copies is in many).
pub(crate) fn verify_pairs_with(
    read: &LocalReader<'_>,
    pairs: &[ScoredPair],
    params: &crate::spatial::SpatialParams,
    keypoints: usize,
) -> Result<Vec<Option<(usize, usize)>>> {
    let mut rows: Vec<usize> = pairs.iter().flat_map(|p| [p.a, p.b]).collect();
    rows.sort_unstable();
    rows.dedup();
    // Read in chunks, each cut to `keypoints` before the next is read: only the cut features
    // of every photo are held at once.
    let mut features: HashMap<usize, Option<LocalFeatures>> = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(256) {
        for (&r, mut f) in chunk.iter().zip(read(chunk)?) {
            if let Some(f) = f.as_mut() {
                f.truncate(keypoints);
            }
            features.insert(r, f);
        }
    }
    pairs
        .par_iter()
        .map(|p| {
            let (Some(a), Some(b)) = (&features[&p.a], &features[&p.b]) else { return Ok(None) };
            let v = crate::spatial::verify(a, b, params)?;
            Ok(Some((v.inliers, v.matches)))
        })
        .collect()
}

impl Collection {
    /// The near-duplicate threshold measured to suit this collection's model
    /// ([`default_threshold`]), with the local check when the index stores local features.
    pub fn default_duplicate_threshold(&self) -> f32 {
        self.default_duplicate_threshold_for(self.local_config().is_some())
    }

    /// [`Collection::default_duplicate_threshold`] with (`verified`) or without the local check.
    pub fn default_duplicate_threshold_for(&self, verified: bool) -> f32 {
        default_threshold(self.index.store().model(), verified)
    }

    /// The method [`DedupMethod::Auto`] resolves to for this collection.
    pub fn dedup_method(&self, method: DedupMethod) -> DedupMethod {
        resolve_method(method, self.len())
    }

    /// Groups of near-duplicate photos: connected components of the pairs scoring at least
    /// `threshold` (cosine similarity), largest groups first, then by best score. See the
    /// [module documentation](self) for the grouping, the methods and their memory.
    pub fn duplicates(&self, threshold: f32, options: &DedupOptions) -> Result<Vec<DuplicateGroup>> {
        let s = self.index.store();
        let alive = s.live_mask();
        let rows = s.rows();
        let hnsw = |q_rows: &[usize], k: usize| -> Result<Vec<Vec<(usize, f32)>>> {
            let q: Vec<f32> = q_rows.iter().flat_map(|&r| s.vector(r).iter().copied()).collect();
            Ok(self.index.search(&q, k, f32::MIN)?.into_iter().map(|hs| hs.into_iter().map(|h| (h.row, h.score)).collect()).collect())
        };
        let read = |rows: &[usize]| -> Result<Vec<Option<LocalFeatures>>> { rows.par_iter().map(|&r| self.local_features(r)).collect() };
        let input = DedupInput {
            vectors: s.vectors(),
            dim: s.dim(),
            alive: Some(&alive),
            name: &|r| rows[r].name.clone(),
            search: (self.index.kind() == IndexKind::Hnsw).then_some(&hnsw as &NeighbourSearch<'_>),
            local: self.local_config().map(|c| (c, &read as &LocalReader<'_>)),
        };
        find_duplicates(&input, threshold, options)
    }

    /// (inliers, putative matches) of each pair's stored local features under `params`, in
    /// parallel; `None` where either photo has none. Only each photo's best `keypoints` features
    /// take part; each photo's features are read once.
    pub fn verify_pairs(&self, pairs: &[ScoredPair], params: &crate::spatial::SpatialParams, keypoints: usize) -> Result<Vec<Option<(usize, usize)>>> {
        verify_pairs_with(&|rows: &[usize]| rows.par_iter().map(|&r| self.local_features(r)).collect(), pairs, params, keypoints)
    }
}
