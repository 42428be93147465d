//! Indexes written by dolg 0.1 (tests/fixtures/index-v0.1, see its README for the commands) open
//! unchanged and answer exactly as that release did, through the library and the CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use dolg::collection::{Collection, IndexKind, OpenMode, Query, SearchRequest};
use dolg::descriptors::read_matrix;
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/index-v0.1")
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A private copy: opening may rewrite derived files (the HNSW graph), never the fixture.
fn copy_of(kind: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(kind);
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(fixture().join(kind)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    (tmp, dst)
}

fn cpu() -> burn::tensor::Device {
    dolg::kernels::device("cpu").unwrap()
}

/// Results as (name, score) per query, from the `--json` layout of `dolg search`.
fn expected_hits(v: &Value) -> Vec<Vec<(String, f32)>> {
    v["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["results"].as_array().unwrap().iter().map(|h| (h["name"].as_str().unwrap().to_owned(), h["score"].as_f64().unwrap() as f32)).collect())
        .collect()
}

fn got_hits(results: &[Vec<dolg::collection::NamedHit>]) -> Vec<Vec<(String, f32)>> {
    results.iter().map(|hits| hits.iter().map(|h| (h.name.clone(), h.score)).collect()).collect()
}

fn check_kind(kind: &str, want_kind: IndexKind) {
    let (_tmp, db) = copy_of(kind);
    let c = Collection::open(&db, OpenMode::Read, &cpu()).unwrap();
    let info = c.info();
    let old = json(&fixture().join(format!("{kind}.info.json")));
    assert_eq!(info.kind, want_kind);
    assert_eq!(info.model, old["model"].as_str().unwrap());
    assert_eq!(info.dim as u64, old["dim"].as_u64().unwrap());
    assert_eq!(info.fingerprint.as_deref(), old["fingerprint"].as_str());
    assert_eq!(serde_json::to_value(&info.spec).unwrap(), old["spec"], "the typed spec reads and writes the 0.1 object unchanged");
    assert_eq!(
        (info.entries as u64, info.stored_rows as u64, info.segments as u64),
        (old["entries"].as_u64().unwrap(), old["stored_rows"].as_u64().unwrap(), old["segments"].as_u64().unwrap())
    );

    let (queries, _, _) = read_matrix(&fixture().join("queries.npy")).unwrap();
    let got = got_hits(&c.search(Query::Vectors(&queries), &SearchRequest::top(3)).unwrap());
    assert_eq!(got, expected_hits(&json(&fixture().join(format!("{kind}.search.json")))), "{kind}: same ranking and scores as 0.1");
}

#[test]
fn exact_index_from_0_1_opens_and_searches_the_same() {
    check_kind("exact", IndexKind::Exact);
}

#[test]
fn hnsw_index_from_0_1_opens_and_searches_the_same() {
    check_kind("hnsw", IndexKind::Hnsw);
}

#[test]
fn an_indexed_photo_is_found_by_its_stored_name_without_the_model() {
    let (_tmp, db) = copy_of("exact");
    let c = Collection::open(&db, OpenMode::Read, &cpu()).unwrap();
    let want = json(&fixture().join("exact.search-stored.json"));
    // The photo's name as 0.1 stored it (the absolute path on the machine that built it): it
    // resolves to the stored vector, so no weights are needed and it is left out of its results.
    let stored = PathBuf::from("/work/main/examples/landmarks/images/wxbs-kyiv_1.jpg");
    assert!(c.index().store().lookup(stored.to_str().unwrap()).is_some());
    let hits = c.search(Query::Images(std::slice::from_ref(&stored)), &SearchRequest::top(3)).unwrap();
    let expected = expected_hits(&want);
    assert_eq!(got_hits(&hits), expected);
    assert!(hits[0].iter().all(|h| Path::new(&h.name) != stored));
}

#[test]
fn cli_search_and_info_print_what_0_1_printed() {
    let (_tmp, db) = copy_of("exact");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dolg")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let q = fixture().join("queries.npy");
    let got = run(&["search", "--db", db.to_str().unwrap(), "--vectors", q.to_str().unwrap(), "--k", "3", "--json"]);
    assert_eq!(got, json(&fixture().join("exact.search.json")));
    let mut info = run(&["index", "info", "--db", db.to_str().unwrap(), "--json"]);
    let mut old = json(&fixture().join("exact.info.json"));
    info["index"] = Value::Null;
    old["index"] = Value::Null;
    assert_eq!(info, old);
}

/// The fingerprint computed today from the same checkpoint and options equals the one 0.1
/// recorded, so `dolg index add` accepts the model that built the index.
#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn recorded_fingerprint_is_reproduced_from_the_checkpoint() {
    let weights = crate::common::shared_dir().join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz");
    // 0.1 had no size limit and ignored EXIF orientation: the same options are those.
    let spec = dolg::spec::ModelSpec::dolg(weights).with_scales(vec![1.0]).with_max_size(0).with_orientation(dolg::decode::Orientation::Ignore);
    let old = json(&fixture().join("exact.info.json"));
    assert_eq!(spec.fingerprint().unwrap(), old["fingerprint"].as_str().unwrap());

    // And a writer can add to the 0.1 index with it (weights given anew: the recorded path is
    // that of the machine that built it).
    let (_tmp, db) = copy_of("exact");
    let mut c = Collection::open(&db, OpenMode::Write, &cpu()).unwrap();
    c.use_weights(spec.weights.clone().unwrap()).unwrap();
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/landmarks/images/wxbs-kyiv_3.jpg");
    let report = c.add_paths(&[photo], &Default::default(), |_| {}).unwrap();
    assert_eq!((report.added, report.entries), (1, 5));
    drop(c);
    let c = Collection::open(&db, OpenMode::Read, &cpu()).unwrap();
    let (queries, _, _) = read_matrix(&fixture().join("queries.npy")).unwrap();
    let top = &c.search(Query::Vectors(&queries[..512]), &SearchRequest::top(1)).unwrap()[0][0];
    assert!(top.name.ends_with("wxbs-kyiv_3.jpg") && (top.score - 1.0).abs() < 1e-5, "{top:?}");
}
