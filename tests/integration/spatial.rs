//! Spatial verification (`dolg::spatial`) against the DELG fixture `../shared/fixtures/delg-r50-random`
//! (made by `tools/holdout/make_delg_fixture.py` with the authors' `compute_putative_matching_keypoints`,
//! OpenCV and pydegensac; README sections 6, 7 and "Tolerances"), hand-worked cases, and seeded
//! properties with planted transforms and outliers.

use std::path::{Path, PathBuf};

use dolg::model::LocalFeatures;
use dolg::spatial::{
    evidence, putative_matches, ransac, rerank_order, rerank_order_by_inliers, verify, verify_many, GeometricModel, MatchRule, SpatialError, SpatialParams,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

fn fixture() -> PathBuf {
    crate::common::shared_dir().join("fixtures/delg-r50-random")
}

fn expected(dir: &Path) -> Value {
    let path = dir.join("expected.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn read_npy<T: npyz::Deserialize>(path: &Path) -> Vec<T> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    npyz::NpyFile::new(&bytes[..]).unwrap().into_vec::<T>().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `<name>_locations / _descriptors / _scores / _feature_scales.npy` as one feature set.
fn load_features(dir: &Path, name: &str) -> LocalFeatures {
    let f32s = |what: &str| crate::common::read_npy_f32(&dir.join(format!("{name}_{what}.npy")));
    let (_, loc) = f32s("locations");
    let (shape, descriptors) = f32s("descriptors");
    let f = LocalFeatures {
        dim: shape[1],
        locations: loc.chunks(2).map(|p| [p[0], p[1]]).collect(),
        descriptors,
        scores: f32s("scores").1,
        scales: f32s("feature_scales").1,
    };
    assert!(f.is_consistent() && f.len() == shape[0], "{name}: inconsistent fixture arrays");
    f
}

fn rule_of(variant: &Value) -> MatchRule {
    let num = |k: &str| variant[k].as_f64().unwrap_or_else(|| panic!("expected.json: {k} missing"));
    if variant["use_ratio_test"].as_bool().unwrap() {
        MatchRule::Ratio(num("matching_threshold"))
    } else {
        MatchRule::MaxDistance(num("max_distance"))
    }
}

/// The fixture pair (query, train) and its variants, names read from expected.json.
fn fixture_pair() -> (PathBuf, Value, LocalFeatures, LocalFeatures) {
    let dir = fixture();
    let sv = expected(&dir)["spatial_verification"].clone();
    let (q, t) = (load_features(&dir, sv["query"].as_str().unwrap()), load_features(&dir, sv["train"].as_str().unwrap()));
    (dir, sv, q, t)
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn putative_matches_are_the_fixtures() {
    let (dir, sv, query, train) = fixture_pair();
    let variants = sv["variants"].as_object().unwrap();
    assert_eq!(variants.len(), 3, "maxdist0.99, maxdist0.95, ratio0.95");
    for (name, v) in variants {
        let want: Vec<i64> = read_npy(&dir.join(v["matches_file"].as_str().unwrap()));
        let want: Vec<(usize, usize)> = want.chunks(2).map(|p| (p[0] as usize, p[1] as usize)).collect();
        assert_eq!(want.len() as u64, v["num_matches"].as_u64().unwrap(), "{name}: fixture file vs json");
        let got = putative_matches(&query, &train, rule_of(v), false).unwrap();
        eprintln!("{name}: {} matches", got.len());
        assert_eq!(got, want, "{name}: putative matches differ from the fixture's");
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn inlier_counts_within_the_fixture_band() {
    let (_, sv, query, train) = fixture_pair();
    for (name, v) in sv["variants"].as_object().unwrap() {
        // README §6: inside [min, max] of OpenCV's 20 shuffled orders and pydegensac's 20 seeds.
        let band = |k: &str| {
            let a = &v["cv2_ransac"]["shuffled_orders_20"][k];
            let b = &v["pydegensac"]["seeds_0_19"][k];
            (a.as_u64().unwrap() as usize, b.as_u64().unwrap() as usize)
        };
        let (lo, hi) = (band("min").0.min(band("min").1), band("max").0.max(band("max").1));
        let counts: Vec<usize> = (0..5)
            .map(|seed| {
                let params = SpatialParams { rule: rule_of(v), seed, ..SpatialParams::default() };
                let r = verify(&query, &train, &params).unwrap();
                assert_eq!(r.matches as u64, v["num_matches"].as_u64().unwrap(), "{name}");
                r.inliers
            })
            .collect();
        eprintln!("{name}: inliers with seeds 0-4 {counts:?}, band [{lo}, {hi}], OpenCV reference {}", v["cv2_ransac"]["inliers"]);
        assert!(counts.iter().all(|c| (lo..=hi).contains(c)), "{name}: {counts:?} outside [{lo}, {hi}]");
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn ransac_synthetic_gives_the_ground_truth_mask() {
    let dir = fixture();
    let files = &expected(&dir)["ransac_synthetic"]["files"];
    let points = |k: &str| -> Vec<[f64; 2]> {
        let (_, v) = crate::common::read_npy_f32(&dir.join(files[k].as_str().unwrap()));
        v.chunks(2).map(|p| [f64::from(p[0]), f64::from(p[1])]).collect()
    };
    let (src, dst) = (points("src"), points("dst"));
    let want: Vec<bool> = read_npy::<u8>(&dir.join(files["inlier_mask"].as_str().unwrap())).iter().map(|&m| m != 0).collect();
    assert_eq!(want.iter().filter(|&&b| b).count(), 120);
    for seed in 0..10 {
        let fit = ransac(&src, &dst, GeometricModel::Homography, 20.0, 1000, &mut ChaCha8Rng::seed_from_u64(seed)).expect("a model");
        assert_eq!(fit.inliers, want, "seed {seed}: inlier mask differs from the ground truth");
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn rerank_is_the_stable_sort_of_the_fixture_example() {
    let ex = &expected(&fixture())["rerank_sort_example"];
    let ints = |k: &str| -> Vec<usize> { ex[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect() };
    let inliers = ints("inliers");
    assert_eq!(rerank_order_by_inliers(&inliers, 0), ints("stable_descending"));
    assert_eq!(rerank_order_by_inliers(&inliers, 1), ints("stable_descending"), "zeros trail in global order either way");
    assert_ne!(ints("stable_descending"), ints("numpy_argsort_of_minus_inliers"), "the example shows quirk 10");
}

#[test]
fn rerank_min_inliers_keeps_global_order_below() {
    // Positions 0..5 in global order; 5 and 3 fall below the minimum of 6.
    assert_eq!(rerank_order_by_inliers(&[3, 10, 0, 10, 5, 7], 6), vec![1, 3, 5, 0, 2, 4]);
    assert_eq!(rerank_order_by_inliers(&[3, 10, 0, 10, 5, 7], 0), vec![1, 3, 5, 4, 0, 2]);
    assert!(rerank_order_by_inliers(&[], 5).is_empty());
}

fn features(dim: usize, descriptors: Vec<f32>, locations: Vec<[f32; 2]>) -> LocalFeatures {
    let n = locations.len();
    LocalFeatures { dim, locations, descriptors, scores: vec![1.0; n], scales: vec![1.0; n] }
}

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

fn random_unit_rows(rng: &mut ChaCha8Rng, n: usize, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    v.chunks_mut(dim).for_each(unit);
    v
}

#[test]
fn hand_worked_rules_and_mutual() {
    // 2-d descriptors at angles: query q0 at 0°, q1 at 5°; train t0 at 2°, t1 at 90°.
    let at = |deg: f32| [deg.to_radians().cos(), deg.to_radians().sin()];
    let q = features(2, [at(0.0), at(5.0)].concat(), vec![[0.0, 0.0]; 2]);
    let t = features(2, [at(2.0), at(90.0)].concat(), vec![[0.0, 0.0]; 2]);
    // Both queries' nearest is t0 (chord 2·sin(1°) = 0.0349 and 2·sin(1.5°) = 0.0524).
    assert_eq!(putative_matches(&q, &t, MatchRule::MaxDistance(0.05), false).unwrap(), vec![(0, 0)]);
    assert_eq!(putative_matches(&q, &t, MatchRule::MaxDistance(0.06), false).unwrap(), vec![(0, 0), (1, 0)]);
    // t0's nearest query is q0 (1° < 3°), so the mutual check drops (1, 0).
    assert_eq!(putative_matches(&q, &t, MatchRule::MaxDistance(0.06), true).unwrap(), vec![(0, 0)]);
    // Ratio: d1/d2 for q1 = sin(1.5°)/sin(42.5°) = 0.039; 0.03 rejects it, 0.95 keeps both.
    assert_eq!(putative_matches(&q, &t, MatchRule::Ratio(0.95), false).unwrap(), vec![(0, 0), (1, 0)]);
    assert_eq!(putative_matches(&q, &t, MatchRule::Ratio(0.03), false).unwrap(), vec![(0, 0)]);
    // One train feature: d2 = ∞ (SciPy's k=2 answer), so the ratio test passes.
    let one = features(2, at(90.0).to_vec(), vec![[0.0, 0.0]]);
    assert_eq!(putative_matches(&q, &one, MatchRule::Ratio(0.5), false).unwrap(), vec![(0, 0), (1, 0)]);
    assert!(putative_matches(&q, &LocalFeatures::empty(2), MatchRule::Ratio(0.5), false).unwrap().is_empty());
}

#[test]
fn errors_name_the_fault() {
    let q = features(2, vec![1.0, 0.0], vec![[0.0, 0.0]]);
    let t = features(3, vec![1.0, 0.0, 0.0], vec![[0.0, 0.0]]);
    let err = verify_many(&q, &[&q, &t], &SpatialParams::default()).unwrap_err();
    assert!(matches!(err, SpatialError::DimensionMismatch { query: 2, found: 3, .. }), "{err}");
    assert!(err.to_string().contains("candidate 1"), "{err}");
    let mut broken = q.clone();
    broken.scores.clear();
    assert!(matches!(verify(&q, &broken, &SpatialParams::default()), Err(SpatialError::Inconsistent { .. })));
    let params = SpatialParams { threshold_px: 0.0, ..SpatialParams::default() };
    assert!(verify(&q, &q, &params).unwrap_err().to_string().contains("threshold_px"));
    let params = SpatialParams { rule: MatchRule::Ratio(1.5), ..SpatialParams::default() };
    assert!(matches!(verify(&q, &q, &params), Err(SpatialError::InvalidParam { name: "ratio", .. })));
}

/// Every decision equals a brute-force float64 reference even when train features come in
/// near-duplicate pairs one float32 ulp apart, which a float32 dot product cannot tell apart.
#[test]
fn matching_equals_float64_brute_force_on_near_ties() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (dim, nq, half) = (64, 150, 100);
    let q = random_unit_rows(&mut rng, nq, dim);
    let mut t = random_unit_rows(&mut rng, half, dim);
    // Half of the train rows: near copies of query rows (so there are real matches).
    for r in 0..half / 2 {
        let noisy: Vec<f32> = q[r * dim..(r + 1) * dim].iter().map(|x| x + rng.random_range(-0.05..0.05)).collect();
        t[r * dim..(r + 1) * dim].copy_from_slice(&noisy);
        unit(&mut t[r * dim..(r + 1) * dim]);
    }
    // Every even row followed by a twin with one component moved by one ulp (odd rows have
    // none, so the ratio test can pass for them).
    let mut twins = Vec::with_capacity(2 * half * dim);
    for (r, row) in t.chunks(dim).enumerate() {
        twins.extend_from_slice(row);
        if r % 2 == 1 {
            continue;
        }
        let mut twin = row.to_vec();
        let c = rng.random_range(0..dim);
        twin[c] = if rng.random::<bool>() { twin[c].next_up() } else { twin[c].next_down() };
        twins.extend_from_slice(&twin);
    }
    let (nt, t) = (twins.len() / dim, twins);
    // Summed as SciPy's cKDTree does (`sqeuclidean_distance_double`: 4 partial sums, then added
    // in order; dim 64 leaves no tail), so the distances below are the reference's to the last bit.
    let dist = |i: usize, j: usize| -> f64 {
        let mut acc = [0.0f64; 4];
        for k in 0..dim {
            acc[k % 4] += (f64::from(q[i * dim + k]) - f64::from(t[j * dim + k])).powi(2);
        }
        (acc[0] + acc[1] + acc[2] + acc[3]).sqrt()
    };
    let nn = |i: usize| -> (usize, f64, f64) {
        let mut d: Vec<(f64, usize)> = (0..nt).map(|j| (dist(i, j), j)).collect();
        d.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (d[0].1, d[0].0, d[1].0)
    };
    let back = |j: usize| (0..nq).map(|i| (dist(i, j), i)).min_by(|a, b| a.partial_cmp(b).unwrap()).unwrap().1;
    let locs = |n| vec![[0.0f32, 0.0]; n];
    let (qf, tf) = (features(dim, q.clone(), locs(nq)), features(dim, t.clone(), locs(nt)));
    for (rule, mutual) in
        [(MatchRule::MaxDistance(0.9), false), (MatchRule::Ratio(0.95), false), (MatchRule::Ratio(0.999), true), (MatchRule::MaxDistance(2.0), true)]
    {
        let want: Vec<(usize, usize)> = (0..nq)
            .filter_map(|i| {
                let (j, d1, d2) = nn(i);
                let pass = match rule {
                    MatchRule::MaxDistance(m) => d1 < m,
                    MatchRule::Ratio(r) => d1 < r * d2,
                };
                (pass && (!mutual || back(j) == i)).then_some((i, j))
            })
            .collect();
        let got = putative_matches(&qf, &tf, rule, mutual).unwrap();
        assert!(want.len() >= 20, "{rule:?}: the case must have matches");
        if rule == MatchRule::MaxDistance(0.9) {
            // The bound is strict and decided in float64: at d1 no match, one ulp above a match.
            for i in 0..20 {
                let (j, d1, _) = nn(i);
                let has = |max: f64| putative_matches(&qf, &tf, MatchRule::MaxDistance(max), false).unwrap().contains(&(i, j));
                assert!(!has(d1) && has(d1.next_up()), "query {i}: distance {d1} decided off the float64 value");
            }
            // Nearest and second nearest differ by far less than a float32 dot resolves (~1e-7).
            let gap = want.iter().map(|&(i, _)| nn(i).2 - nn(i).1).fold(f64::INFINITY, f64::min);
            assert!(gap < 1e-8, "smallest gap {gap:.1e}: the case has no near tie");
        }
        assert_eq!(got, want, "{rule:?} mutual {mutual}");
    }
}

fn apply(h: &[f64; 9], p: [f64; 2]) -> [f64; 2] {
    let w = h[6] * p[0] + h[7] * p[1] + h[8];
    [(h[0] * p[0] + h[1] * p[1] + h[2]) / w, (h[3] * p[0] + h[4] * p[1] + h[5]) / w]
}

/// A random transform of a 480×640 (row, col) image: rotation ±0.4 rad, scale 0.7-1.4, shear,
/// translation ±60 px, and (homography) perspective up to 2e-4 per px.
fn random_model(rng: &mut ChaCha8Rng, model: GeometricModel) -> [f64; 9] {
    let (a, s) = (rng.random_range(-0.4..0.4f64), rng.random_range(0.7..1.4f64));
    let sh = rng.random_range(-0.15..0.15);
    let (tx, ty) = (rng.random_range(-60.0..60.0), rng.random_range(-60.0..60.0));
    let (px, py) = match model {
        GeometricModel::Homography => (rng.random_range(-2e-4..2e-4), rng.random_range(-2e-4..2e-4)),
        GeometricModel::Affine => (0.0, 0.0),
    };
    [s * a.cos(), -s * a.sin() + sh, tx, s * a.sin(), s * a.cos(), ty, px, py, 1.0]
}

/// `n` pairs: inliers are `h(src)` + U(−1, 1) px, outliers random destinations at least 60 px
/// from `h(src)` (the fixture's recipe). Returns (src, dst, ground-truth mask).
fn planted(rng: &mut ChaCha8Rng, h: &[f64; 9], n: usize, outliers: usize) -> (Vec<[f64; 2]>, Vec<[f64; 2]>, Vec<bool>) {
    let mut src = Vec::new();
    let mut dst = Vec::new();
    let mut mask = Vec::new();
    for k in 0..n {
        let p = [rng.random_range(0.0..480.0), rng.random_range(0.0..640.0)];
        let m = apply(h, p);
        let inlier = k >= outliers;
        let d = if inlier {
            [m[0] + rng.random_range(-1.0..1.0), m[1] + rng.random_range(-1.0..1.0)]
        } else {
            loop {
                let d = [rng.random_range(-100.0..580.0), rng.random_range(-100.0..740.0)];
                if (d[0] - m[0]).hypot(d[1] - m[1]) >= 60.0 {
                    break d;
                }
            }
        };
        src.push(p);
        dst.push(d);
        mask.push(inlier);
    }
    (src, dst, mask)
}

#[test]
fn ransac_recovers_planted_inliers() {
    for model in [GeometricModel::Homography, GeometricModel::Affine] {
        for case in 0..20u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(case);
            let h = random_model(&mut rng, model);
            let (src, dst, mask) = planted(&mut rng, &h, 150, 60);
            let fit = ransac(&src, &dst, model, 20.0, 1000, &mut ChaCha8Rng::seed_from_u64(case)).expect("a model");
            assert_eq!(fit.inliers, mask, "{model:?} case {case}");
            if model == GeometricModel::Affine {
                assert_eq!(fit.model[6..], [0.0, 0.0, 1.0], "an affine map keeps the bottom row");
            }
            // The fitted map agrees with the planted one to well within the noise over the image.
            let worst = src.iter().map(|&p| {
                let (a, b) = (apply(&h, p), apply(&fit.model, p));
                (a[0] - b[0]).hypot(a[1] - b[1])
            });
            let worst = worst.fold(0.0, f64::max);
            assert!(worst < 2.0, "{model:?} case {case}: fitted map off by {worst:.2} px");
        }
    }
}

#[test]
fn affine_hand_made() {
    // (row, col) → (0.5·row + 0.1·col + 10, −0.2·row + 1.5·col − 5), exact; plus 3 gross outliers.
    let f = |p: [f64; 2]| [0.5 * p[0] + 0.1 * p[1] + 10.0, -0.2 * p[0] + 1.5 * p[1] - 5.0];
    let src: Vec<[f64; 2]> = (0..12).map(|k| [(k * 37 % 400) as f64, (k * 53 % 600) as f64]).collect();
    let mut dst: Vec<[f64; 2]> = src.iter().map(|&p| f(p)).collect();
    for k in [2, 5, 9] {
        dst[k][1] += 100.0;
    }
    let fit = ransac(&src, &dst, GeometricModel::Affine, 1.0, 200, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
    assert_eq!(fit.inlier_count(), 9);
    assert!(!fit.inliers[2] && !fit.inliers[5] && !fit.inliers[9]);
    let want = [0.5, 0.1, 10.0, -0.2, 1.5, -5.0, 0.0, 0.0, 1.0];
    assert!(fit.model.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-9), "{:?}", fit.model);
    // Collinear points determine no affine map; too few points none at all.
    let line: Vec<[f64; 2]> = (0..6).map(|k| [k as f64, 2.0 * k as f64]).collect();
    assert!(ransac(&line, &line, GeometricModel::Affine, 1.0, 50, &mut ChaCha8Rng::seed_from_u64(0)).is_none());
    assert!(ransac(&src[..3], &dst[..3], GeometricModel::Homography, 1.0, 50, &mut ChaCha8Rng::seed_from_u64(0)).is_none());
}

/// A query and candidates, half of them a planted homography of 120 of the query's features
/// (descriptors perturbed) among random ones, half random.
fn planted_candidates(n_candidates: usize) -> (LocalFeatures, Vec<LocalFeatures>) {
    let (dim, n) = (32, 300);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let loc = |rng: &mut ChaCha8Rng| [rng.random_range(0.0..480.0f32), rng.random_range(0.0..640.0f32)];
    let qdesc = random_unit_rows(&mut rng, n, dim);
    let qloc: Vec<[f32; 2]> = (0..n).map(|_| loc(&mut rng)).collect();
    let candidates = (0..n_candidates)
        .map(|c| {
            let mut desc = random_unit_rows(&mut rng, n, dim);
            let mut locs: Vec<[f32; 2]> = (0..n).map(|_| loc(&mut rng)).collect();
            if c % 2 == 0 {
                let h = random_model(&mut rng, GeometricModel::Homography);
                for k in 0..120 {
                    let row = &mut desc[k * dim..(k + 1) * dim];
                    row.iter_mut().zip(&qdesc[k * dim..]).for_each(|(d, q)| *d = q + rng.random_range(-0.03..0.03));
                    unit(row);
                    let m = apply(&h, [f64::from(qloc[k][0]), f64::from(qloc[k][1])]);
                    locs[k] = [m[0] as f32, m[1] as f32];
                }
            }
            features(dim, desc, locs)
        })
        .collect();
    (features(dim, qdesc, qloc), candidates)
}

#[test]
fn verify_many_is_sequential_verify_whatever_the_threads() {
    let (query, candidates) = planted_candidates(8);
    let refs: Vec<&LocalFeatures> = candidates.iter().collect();
    let params = SpatialParams { rule: MatchRule::Ratio(0.9), seed: 42, ..SpatialParams::default() };
    let sequential: Vec<_> = candidates.iter().enumerate().map(|(i, c)| verify(&query, c, &SpatialParams { seed: 42 + i as u64, ..params }).unwrap()).collect();
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        assert_eq!(pool.install(|| verify_many(&query, &refs, &params).unwrap()), sequential, "{threads} threads");
    }
    let inliers: Vec<usize> = sequential.iter().map(|v| v.inliers).collect();
    eprintln!("inliers {inliers:?}");
    for (i, &n) in inliers.iter().enumerate() {
        // Planted: about 120 matches agree; random candidates only by chance.
        assert!(if i % 2 == 0 { n >= 110 } else { n < 30 }, "candidate {i}: {n} inliers");
    }
    // Verified (planted) first by inliers; the random ones below 30 keep their global order.
    let order = rerank_order_by_inliers(&inliers, 30);
    assert_eq!(order[..4], sorted_planted(&inliers)[..]);
    assert_eq!(order[4..], [1, 3, 5, 7]);
}

/// The planted candidates (even positions) by inliers descending, ties in position order.
fn sorted_planted(inliers: &[usize]) -> Vec<usize> {
    let mut even: Vec<usize> = (0..inliers.len()).step_by(2).collect();
    even.sort_by_key(|&i| std::cmp::Reverse(inliers[i]));
    even
}

/// Hand-worked: global 0.9 0.8 0.7 0.6, inliers 12 40 0 200, min_inliers 15, half 25. Evidence
/// 0, 25/50 = 0.5, 0, 185/210 ≈ 0.881; with weight 0.3 the scores are 0.9, 0.95, 0.7, 0.864.
#[test]
fn weighted_order_adds_bounded_evidence_to_the_global_score() {
    let global = [0.9f32, 0.8, 0.7, 0.6];
    let inliers = [12, 40, 0, 200];
    let p = SpatialParams { min_inliers: 15, half_inliers: 25.0, weight: Some(0.3), ..SpatialParams::default() };
    assert_eq!(evidence(12, &p), 0.0);
    assert_eq!(evidence(40, &p), 0.5);
    assert!((evidence(200, &p) - 185.0 / 210.0).abs() < 1e-12);
    assert_eq!(rerank_order(&global, &inliers, &p), [1, 0, 3, 2]);
    // A weight of 0 keeps the global order; no weight is the authors' order by inliers.
    assert_eq!(rerank_order(&global, &inliers, &SpatialParams { weight: Some(0.0), ..p }), [0, 1, 2, 3]);
    assert_eq!(rerank_order(&global, &inliers, &SpatialParams { weight: None, ..p }), [3, 1, 0, 2]);
    assert!(SpatialParams { weight: Some(-1.0), ..p }.validate().is_err());
    assert!(SpatialParams { half_inliers: 0.0, ..p }.validate().is_err());
}

/// `scaled_locations`: keypoints are compared in the frame they were found in (location ×
/// scale), so a pixel bound means the same for a photo and its quarter-size copy when both were
/// seen at one size, as XFeat's are; the fitted model still maps image pixels (both scales ≠ 1,
/// so both factors of the conversion are exercised).
#[test]
fn scaled_locations_compare_keypoints_where_they_were_found() {
    let (dim, n) = (16, 200);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let desc = random_unit_rows(&mut rng, n, dim);
    let big: Vec<[f32; 2]> = (0..n).map(|_| [rng.random_range(0.0..1920.0f32), rng.random_range(0.0..2560.0f32)]).collect();
    // The copy: a quarter of the size, each keypoint off by up to 0.4 of its pixels.
    let small: Vec<[f32; 2]> = big.iter().map(|p| [p[0] / 4.0 + rng.random_range(-0.4..0.4), p[1] / 4.0 + rng.random_range(-0.4..0.4)]).collect();
    // Both seen at 960 x 1280: the copy at twice its size, the original at half of its.
    let mut copy = features(dim, desc.clone(), small);
    copy.scales = vec![2.0; n];
    let mut original = features(dim, desc, big.clone());
    original.scales = vec![0.5; n];
    let tight = SpatialParams { mutual: true, threshold_px: 1.5, ..SpatialParams::default() };
    // The copy is the query, the original the candidate: without the scales the bound is in the
    // original's pixels, where the copy's jitter is 1.6 px; in the shared frame it is 0.8.
    let in_frame = verify(&copy, &original, &SpatialParams { scaled_locations: true, ..tight }).unwrap();
    assert_eq!(in_frame.inliers, n, "seen at one size, every keypoint is within 1.5 px");
    let in_pixels = verify(&copy, &original, &tight).unwrap();
    assert!(in_pixels.inliers < n * 17 / 20, "in the original's pixels the copy's jitter is 1.6 px: {} inliers of {n}", in_pixels.inliers);
    // The model maps the copy's pixels to the original's.
    let h = in_frame.model.expect("a model");
    for (q, p) in copy.locations.iter().zip(&big).take(50) {
        let w = h[6] * f64::from(q[0]) + h[7] * f64::from(q[1]) + h[8];
        let (r, c) = ((h[0] * f64::from(q[0]) + h[1] * f64::from(q[1]) + h[2]) / w, (h[3] * f64::from(q[0]) + h[4] * f64::from(q[1]) + h[5]) / w);
        assert!((r - f64::from(p[0])).abs() < 2.5 && (c - f64::from(p[1])).abs() < 2.5, "the model maps image pixels: {q:?} -> ({r}, {c}), want {p:?}");
    }
}
