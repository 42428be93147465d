//! DELG as an index's model: `dolg index build -w DELG.pyth --local delg` stores DELG's global
//! descriptor and local features, `dolg search --rerank spatial` verifies with them, and `dolg
//! extract --local` writes them for research use. References: the random-weight fixture
//! `../shared/fixtures/delg-r50-random` (made by `tools/holdout/make_delg_fixture.py --seed 1`
//! with the authors' `tools/extractor.py::delg_extract`; tolerances of its README: global cosine
//! ≥ 0.99999 and max |Δ| ≤ 1e-5, descriptors ≤ 1e-5, locations ≤ 1e-3 px, scores relative ≤ 1e-4,
//! the same kept features) and `dolg::model::delg` itself, which `tests/integration/delg_parity.rs` checks
//! against that fixture: the index must store exactly what it extracts (descriptors rounded to
//! f16 and re-normalised by the store, nothing else changed).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use crate::common::*;
use burn::tensor::Device;
use dolg::checkpoint::Checkpoint;
use dolg::collection::{Collection, OpenMode};
use dolg::decode::{decode_file, DecodeLimits};
use dolg::model::delg::{Delg, DelgParams};
use dolg::model::LocalFeatures;
use dolg::preprocess::FloatImage;
use dolg::spatial::SpatialParams;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_dolg");
const IMAGES: [&str; 3] = ["church", "kremlin1", "kremlin2"];

fn fixture() -> PathBuf {
    shared_dir().join("fixtures/delg-r50-random")
}

fn weights() -> PathBuf {
    fixture().join("delg_r50_random.pyth.gz")
}

fn input(name: &str) -> PathBuf {
    fixture().join(format!("input_{name}.png"))
}

fn run(args: &[&str], paths: &[PathBuf]) -> Output {
    Command::new(BIN).args(args).args(paths).output().unwrap()
}

fn ok(args: &[&str], paths: &[PathBuf]) -> String {
    let out = run(args, paths);
    assert!(out.status.success(), "dolg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn check_global(what: &str, got: &[f32], want: &[f32]) {
    let (c, m) = (cosine(got, want), max_abs_diff(got, want));
    assert!(c >= 0.99999 && m <= 1e-5, "{what}: cosine {c:.8}, max abs diff {m:.2e}");
}

/// `got` against the fixture's features of `name`: the same features (identified by scale and
/// position on that scale's stride-16 map), within the README's tolerances.
fn check_against_fixture(name: &str, got: &LocalFeatures) {
    let fx = fixture();
    let (_, scores) = read_npy_f32(&fx.join(format!("{name}_scores.npy")));
    let (_, scales) = read_npy_f32(&fx.join(format!("{name}_feature_scales.npy")));
    let (_, locations) = read_npy_f32(&fx.join(format!("{name}_locations.npy")));
    let (dshape, descriptors) = read_npy_f32(&fx.join(format!("{name}_descriptors.npy")));
    assert_eq!((got.len(), got.dim), (scores.len(), dshape[1]), "{name}: number and width of the features");
    let key = |s: f32, [r, c]: [f32; 2]| (s.to_bits(), (r * s / 16.0).round() as i32, (c * s / 16.0).round() as i32);
    let ours: HashMap<_, usize> = (0..got.len()).map(|i| (key(got.scales[i], got.locations[i]), i)).collect();
    for k in 0..scores.len() {
        let m = ours[&key(scales[k], [locations[2 * k], locations[2 * k + 1]])];
        assert!(max_abs_diff(&got.locations[m], &locations[2 * k..2 * k + 2]) <= 1e-3, "{name} feature {k}: location");
        assert!(max_abs_diff(got.descriptor(m), &descriptors[k * got.dim..(k + 1) * got.dim]) <= 1e-5, "{name} feature {k}: descriptor");
        assert!((got.scores[m] - scores[k]).abs() <= 1e-4 * scores[k], "{name} feature {k}: score {} vs {}", got.scores[m], scores[k]);
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn a_delg_index_stores_what_delg_extracts_and_reranks_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("idx");
    let w = weights().display().to_string();
    let inputs: Vec<PathBuf> = IMAGES.iter().map(|n| input(n)).collect();
    ok(&["index", "build", "--db", db.to_str().unwrap(), "-w", &w, "--local", "delg", "--threads", "2"], &inputs);

    let device = Device::flex();
    let c = Collection::open(&db, OpenMode::Read, &device).unwrap();
    let info = c.info();
    assert_eq!(info.model, "DELG-R50");
    // No --scales: DELG's own global scales, not DOLG's five.
    assert_eq!(info.spec.as_ref().unwrap().scales, DelgParams::default().global_scales);
    let delg = Delg::load(&Checkpoint::open(&weights()).unwrap(), &device).unwrap();
    let cfg = c.local_config().expect("the index records its local features");
    assert_eq!((cfg.extractor.as_str(), cfg.dim), ("delg", delg.local_dim()));
    assert_eq!(c.spatial_rerank_defaults().params, SpatialParams::default(), "DELG features verify with the authors' settings");

    // The global passes at DELG's global scales are those of the local extraction: a photo
    // whose local features were just extracted is not run again for its global descriptor.
    let church = decode_file(&input("church"), &DecodeLimits::default()).unwrap();
    let local = delg.extract_local(&church, Some(1024));
    assert_eq!(delg.reusable_passes(), DelgParams::default().scales.len());
    let ex =
        dolg::descriptors::Extractor::new(dolg::model::RetrievalModel::Delg(std::sync::Arc::new(delg)), device.clone(), DelgParams::default().global_scales);
    let global = ex.describe(&ex.prepare_image(church, None).unwrap()).descriptor;
    let dolg::model::RetrievalModel::Delg(delg) = ex.model else { unreachable!() };
    assert_eq!(delg.reusable_passes(), DelgParams::default().scales.len() - 3, "three global scales taken from the memo");
    let row = c.index().store().lookup("input_church.png").unwrap();
    assert_eq!(c.index().store().vector(row), &global[..], "the memo's global descriptor is the index's");
    assert_eq!(local.len(), c.local_features(row).unwrap().unwrap().len());

    let mut stored = HashMap::new();
    for name in IMAGES {
        let row = c.index().store().lookup(&c.name_of(&input(name))).unwrap();
        let out = delg.extract(&FloatImage::from(&decode_file(&input(name), &DecodeLimits::default()).unwrap())).unwrap();
        let (_, want) = read_npy_f32(&fixture().join(format!("{name}_global.npy")));
        check_global(&format!("{name}: stored global vs the fixture"), c.index().store().vector(row), &want);
        check_global(&format!("{name}: stored global vs delg.rs"), c.index().store().vector(row), &out.global);
        // The fixture photos are under the 1024 px limit: the stored features are delg.rs's,
        // with the descriptors rounded to f16 (and re-normalised) by the store, nothing else changed.
        let local = c.local_features(row).unwrap().expect("stored local features");
        let l = &out.local;
        assert_eq!((&local.locations, &local.scores, &local.scales, local.dim), (&l.locations, &l.scores, &l.scales, l.dim), "{name}");
        // The store keeps f16 and re-normalises each row when reading it back.
        let mut rounded: Vec<f32> = l.descriptors.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
        rounded.chunks_exact_mut(l.dim).for_each(dolg::descriptors::l2_normalize);
        let diff = max_abs_diff(&local.descriptors, &rounded);
        assert!(diff == 0.0, "{name}: descriptors differ by up to {diff:e}: {:?} vs {:?}", &local.descriptors[..4], &rounded[..4]);
        stored.insert(name, local);
    }

    // An indexed query uses its stored features; verification with the authors' settings.
    let json = ok(&["search", "--db", db.to_str().unwrap(), "--k", "2", "--json", "--rerank", "spatial", "--threads", "2"], &inputs[1..2]);
    let v: Value = serde_json::from_str(&json).unwrap();
    let results = v["queries"][0]["results"].as_array().unwrap();
    let inliers: HashMap<&str, u64> = results.iter().map(|r| (r["name"].as_str().unwrap(), r["inliers"].as_u64().expect("inliers"))).collect();
    assert_eq!(inliers.len(), 2, "{results:?}");
    let counts: Vec<u64> = results.iter().map(|r| r["inliers"].as_u64().unwrap()).collect();
    assert!(counts[0] >= counts[1], "ordered by inliers: {counts:?}");
    // The candidates in global order (kremlin2 scores higher than the church here), each
    // verified with the seed of its place in that order.
    let global = c
        .search(
            dolg::collection::Query::Vectors(c.index().store().vector(c.index().store().lookup("input_kremlin1.png").unwrap())),
            &dolg::collection::SearchRequest::top(3),
        )
        .unwrap();
    let order: Vec<&str> =
        global[0].iter().map(|h| h.name.strip_prefix("input_").unwrap().strip_suffix(".png").unwrap()).filter(|n| *n != "kremlin1").collect();
    let candidates: Vec<&LocalFeatures> = order.iter().map(|n| &stored[n]).collect();
    let want = dolg::spatial::verify_many(&stored["kremlin1"], &candidates, &SpatialParams::default()).unwrap();
    for (name, v) in order.iter().zip(&want) {
        assert_eq!(inliers[format!("input_{name}.png").as_str()], v.inliers as u64, "{name}");
    }
    // The fixture README's band for the kremlin pair (distance 0.99, 20 px homography): 14 to 137.
    let pair = inliers["input_kremlin2.png"];
    assert!((14..=137).contains(&pair), "kremlin pair: {pair} inliers");

    // index add follows the local features the index records: a copy of a photo gets the
    // same features.
    let copy2 = dir.path().join("copy2.png");
    std::fs::copy(input("kremlin2"), &copy2).unwrap();
    drop(c); // a reader's shared lock would keep the writer out
    ok(&["index", "add", "--db", db.to_str().unwrap(), "--threads", "2"], std::slice::from_ref(&copy2));
    let c = Collection::open(&db, OpenMode::Read, &device).unwrap();
    let row = c.index().store().lookup(&c.name_of(&copy2)).unwrap();
    assert_eq!(c.local_features(row).unwrap().as_ref(), Some(&stored["kremlin2"]), "index add stores DELG's features");

    // A query photo that is not indexed is described, local features included, in one pass.
    let copy = dir.path().join("query.png");
    std::fs::copy(input("kremlin1"), &copy).unwrap();
    let json = ok(&["search", "--db", db.to_str().unwrap(), "--k", "2", "--json", "--rerank", "spatial", "--threads", "2"], &[copy]);
    let v: Value = serde_json::from_str(&json).unwrap();
    let results = v["queries"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "k = 2 (the copy is not an indexed photo, so nothing is left out)");
    let found: Vec<&str> = results.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(found[0], "input_kremlin1.png", "the same pixels verify best: {results:?}");
    assert!(results[0]["inliers"].as_u64().unwrap() >= 500, "{results:?}");
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn local_delg_needs_a_delg_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("idx");
    let dolg_weights = shared_dir().join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz");
    let w = dolg_weights.display().to_string();
    for model in [vec!["-w", w.as_str()], vec!["--backbone", "mobilenetv2"]] {
        let mut args = vec!["index", "build", "--db", db.to_str().unwrap(), "--local", "delg"];
        args.extend(&model);
        let out = run(&args, &[input("church")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("--local delg needs a DELG checkpoint") && err.contains(model[1]), "{err}");
        assert!(!db.exists(), "nothing is created");
    }
    // --arch describes DOLG checkpoints only.
    let out = run(&["extract", "-w", weights().to_str().unwrap(), "--arch", "r50", "-o"], &[dir.path().join("x.npy"), input("church")]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--arch applies to DOLG checkpoints only"));
    let out = run(&["extract", "-w", &w, "--local", "x.safetensors", "--local-kind", "delg", "-o"], &[dir.path().join("x.npy"), input("church")]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--local delg needs a DELG checkpoint"));
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn extract_local_writes_delg_features_as_the_authors_extract_them() {
    let dir = tempfile::tempdir().unwrap();
    let (npy, st) = (dir.path().join("g.npy"), dir.path().join("l.safetensors"));
    let inputs: Vec<PathBuf> = IMAGES.iter().map(|n| input(n)).collect();
    let w = weights();
    let args = ["extract", "-w", w.to_str().unwrap(), "--local", st.to_str().unwrap(), "--local-kind", "delg", "--threads", "2", "-o", npy.to_str().unwrap()];
    ok(&args, &inputs);

    // Read with the safetensors crate itself, not our reader: the documented layout.
    let bytes = std::fs::read(&st).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!((meta["format"].as_str(), meta["extractor"].as_str(), meta["location_order"].as_str()), ("dolg-local-features-v1", "delg", "row,col"));
    let names: Vec<String> = serde_json::from_str(&meta["names"]).unwrap();
    assert_eq!(names, inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>());
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |name: &str| -> (Vec<usize>, Vec<f32>) {
        let t = file.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
        (t.shape().to_vec(), t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
    };
    let offsets: Vec<usize> = file.tensor("offsets").unwrap().data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as usize).collect();
    let ((lshape, locations), (dshape, descriptors), (_, scores), (_, scales)) = (f32s("locations"), f32s("descriptors"), f32s("scores"), f32s("scales"));
    assert_eq!((offsets.len(), lshape[1], offsets[3], dshape[0]), (4, 2, lshape[0], lshape[0]));
    let dim = dshape[1];
    for (i, name) in IMAGES.iter().enumerate() {
        let (a, b) = (offsets[i], offsets[i + 1]);
        let got = LocalFeatures {
            dim,
            locations: (a..b).map(|j| [locations[2 * j], locations[2 * j + 1]]).collect(),
            descriptors: descriptors[a * dim..b * dim].to_vec(),
            scores: scores[a..b].to_vec(),
            scales: scales[a..b].to_vec(),
        };
        check_against_fixture(name, &got);
        // Our own reader gives the same.
        let back = dolg::model::local_features::read_local_file(&st).unwrap();
        assert_eq!((&back.names[i], &back.features[i]), (&names[i], &got));
    }
    let (shape, globals) = read_npy_f32(&npy);
    for (i, name) in IMAGES.iter().enumerate() {
        let (_, want) = read_npy_f32(&fixture().join(format!("{name}_global.npy")));
        check_global(name, &globals[i * shape[1]..(i + 1) * shape[1]], &want);
    }
}

/// Locations are given in the photo's own pixels when the photo is brought within `--max-size`
/// first: the features of the limited photo, their locations multiplied by the size ratio of each
/// axis (640/320 across, 433/216 down) and their scales divided by it.
#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn delg_locations_are_mapped_back_to_the_photos_pixels() {
    let device = Device::flex();
    let delg = Delg::load(&Checkpoint::open(&weights()).unwrap(), &device).unwrap();
    let img = decode_file(&input("kremlin1"), &DecodeLimits::default()).unwrap();
    assert_eq!((img.height, img.width), (433, 640));
    let small = dolg::preprocess::limit_size(img.clone(), Some(320));
    assert_eq!((small.height, small.width), (216, 320));
    let want = delg.extract(&FloatImage::from(&small)).unwrap().local;
    let got = delg.extract_local(&img, Some(320));
    assert!(!got.is_empty() && got.len() == want.len());
    for (g, w) in got.locations.iter().zip(&want.locations) {
        assert_eq!(*g, [w[0] * (433.0 / 216.0), w[1] * 2.0]);
    }
    for (g, w) in got.scales.iter().zip(&want.scales) {
        assert_eq!(*g, w / (433.0f32 / 216.0).max(2.0));
    }
    assert_eq!((&got.scores, &got.descriptors), (&want.scores, &want.descriptors));
    // Under the limit nothing changes.
    assert_eq!(delg.extract_local(&img, Some(1024)), delg.extract(&FloatImage::from(&img)).unwrap().local);
}
