//! One conformance suite run against every index kind: add, search, remove, persist, reopen,
//! corrupt file, model mismatch. Plus crash safety: `dolg index build` killed at random moments
//! always reopens consistent.

mod common;

use std::path::Path;

use dolg::index::{Index, IndexError, IndexKind, ModelIdentity, Record};

fn model(dim: usize, fp: &str) -> ModelIdentity {
    ModelIdentity { name: "test-model".into(), dim, fingerprint: Some(fp.into()), spec: None }
}

/// Deterministic unit vectors.
fn unit(seed: u64, dim: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    dolg::descriptors::l2_normalize(&mut v);
    v
}

fn add(name: &str, seed: u64, dim: usize) -> Record {
    Record::Add { name: name.into(), hash: Some([seed as u8; 32]), vector: unit(seed, dim) }
}

fn brute_force(index: &Index, q: &[f32], k: usize) -> Vec<String> {
    let s = index.store();
    let mut all: Vec<(f32, usize, String)> = s.live_rows().map(|(i, r)| (s.vector(i).iter().zip(q).map(|(a, b)| a * b).sum(), i, r.name.clone())).collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|x| x.2).collect()
}

fn names(hits: &[dolg::index::NamedHit]) -> Vec<String> {
    hits.iter().map(|h| h.name.clone()).collect()
}

fn conformance(kind: IndexKind) {
    let dim = 24;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    {
        let mut index = Index::create(&path, model(dim, "A"), kind).unwrap();
        index.commit((0..300).map(|i| add(&format!("img{i}"), i, dim)).collect()).unwrap();
        // add: every entry finds itself first with score 1.
        for i in [0u64, 17, 299] {
            let hits = index.search(&unit(i, dim), 3, -1.0).unwrap();
            assert_eq!(hits[0][0].name, format!("img{i}"), "{kind:?}");
            assert!((hits[0][0].score - 1.0).abs() < 1e-5);
        }
        // search agrees with brute force.
        let q = unit(1000, dim);
        assert_eq!(names(&index.search(&q, 10, -1.0).unwrap()[0]), brute_force(&index, &q, 10), "{kind:?}");
        // min_score filters.
        assert!(index.search(&q, 50, 0.3).unwrap()[0].iter().all(|h| h.score >= 0.3));
        // remove: gone from results, count drops, others unaffected.
        index.commit(vec![Record::Remove { name: "img17".into() }]).unwrap();
        let hits = index.search(&unit(17, dim), 5, -1.0).unwrap();
        assert!(hits[0].iter().all(|h| h.name != "img17"));
        assert_eq!(index.store().live_count(), 299);
        // re-adding a name replaces its vector.
        index.commit(vec![Record::Add { name: "img5".into(), hash: None, vector: unit(5000, dim) }]).unwrap();
        assert_eq!(index.search(&unit(5000, dim), 1, -1.0).unwrap()[0][0].name, "img5");
        assert_eq!(index.store().live_count(), 299);
    }
    // persist + reopen: same state, same answers.
    let reopened = Index::open(&path, false).unwrap();
    assert_eq!(reopened.store().live_count(), 299);
    assert!(reopened.store().lookup("img17").is_none());
    let q = unit(1000, dim);
    assert_eq!(names(&reopened.search(&q, 10, -1.0).unwrap()[0]), brute_force(&reopened, &q, 10));
    assert_eq!(reopened.search(&unit(5000, dim), 1, -1.0).unwrap()[0][0].name, "img5");
    // mixing models is refused.
    assert!(matches!(reopened.check_model(&model(dim, "B")), Err(IndexError::ModelMismatch { .. })));
    assert!(reopened.check_model(&model(dim, "A")).is_ok());
    drop(reopened);
    // compaction keeps the answers.
    let mut w = Index::open(&path, true).unwrap();
    w.compact().unwrap();
    assert_eq!(w.store().segments(), 1);
    assert_eq!(names(&w.search(&q, 10, -1.0).unwrap()[0]), brute_force(&w, &q, 10));
    drop(w);
    // a corrupted segment is detected and named, never used.
    let seg = std::fs::read_dir(&path).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "bin")).unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    match Index::open(&path, false) {
        Err(IndexError::Corrupt { path: p, .. }) => assert_eq!(p, seg),
        other => panic!("{kind:?}: corrupt segment not detected: {other:?}"),
    }
    bytes[mid] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    if kind == IndexKind::Hnsw {
        // The graph is a checksummed cache of the segments: a damaged one is reported and
        // rebuilt from the vectors, never used.
        let graph = path.join("hnsw.graph");
        assert!(graph.exists(), "the graph is saved with the index");
        let mut g = std::fs::read(&graph).unwrap();
        let gm = g.len() / 2;
        g[gm] ^= 0xff;
        std::fs::write(&graph, &g).unwrap();
        let rebuilt = Index::open(&path, false).unwrap();
        assert_eq!(rebuilt.store().live_count(), 299);
        assert_eq!(names(&rebuilt.search(&q, 10, -1.0).unwrap()[0]), brute_force(&rebuilt, &q, 10));
    }
    // a corrupted manifest too.
    let manifest = path.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap().replacen("test-model", "test-modem", 1);
    std::fs::write(&manifest, text).unwrap();
    assert!(matches!(Index::open(&path, false), Err(IndexError::Corrupt { .. })));
}

macro_rules! conformance_suite {
    ($($name:ident => $kind:expr),* $(,)?) => {$(
        #[test]
        fn $name() {
            conformance($kind);
        }
    )*};
}

conformance_suite! {
    exact_conforms => IndexKind::Exact,
    hnsw_conforms => IndexKind::Hnsw,
}

#[test]
fn orphan_segment_from_an_interrupted_commit_is_ignored() {
    // A crash between writing a segment and replacing the manifest leaves an unlisted segment.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    let mut index = Index::create(&path, model(8, "A"), IndexKind::Exact).unwrap();
    index.commit(vec![add("a", 1, 8)]).unwrap();
    drop(index);
    std::fs::write(path.join("seg-00000099.bin"), b"half-written garbage").unwrap();
    let mut index = Index::open(&path, true).unwrap();
    assert_eq!(index.store().live_count(), 1);
    index.commit(vec![add("b", 2, 8)]).unwrap();
    assert!(!path.join("seg-00000099.bin").exists(), "the next commit cleans up orphans");
}

#[test]
fn missing_directory_is_a_clear_error() {
    assert!(matches!(Index::open(Path::new("/nonexistent/idx"), false), Err(IndexError::NotAnIndex { .. })));
}

/// Kill `dolg index build --batch 1` at several moments; every time, the index must reopen
/// consistently (or not exist yet), hold a prefix of the input in order, and a final resumed
/// build must complete it without re-describing what was committed.
#[test]
fn killed_build_reopens_consistent() {
    const TOTAL: usize = 16;
    let Some(shared) = common::shared_dir() else { return };
    let weights = shared.join("fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz");
    let images = tempfile::tempdir().unwrap();
    // Small copies keep each image fast; 16 images, committed one by one.
    let src = shared.join("fixtures/dolg-r50-random/input_lab.png");
    for i in 0..TOTAL {
        std::fs::copy(&src, images.path().join(format!("img{i}.png"))).unwrap();
        // Make contents differ so each file is a distinct entry.
        let mut b = std::fs::read(images.path().join(format!("img{i}.png"))).unwrap();
        b.extend_from_slice(format!("trailer{i}").as_bytes());
        std::fs::write(images.path().join(format!("img{i}.png")), b).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("idx");
    let bin = env!("CARGO_BIN_EXE_dolg");
    let run = |kill_after_ms: Option<u64>| {
        let mut child = std::process::Command::new(bin)
            .args(["index", "build", "--db"])
            .arg(&db)
            .args(["--weights"])
            .arg(&weights)
            .args(["--batch", "1", "--threads", "1", "--scales", "0.5"])
            .arg(images.path())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        match kill_after_ms {
            Some(ms) => {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                let _ = child.kill();
                child.wait().unwrap();
            }
            None => assert!(child.wait().unwrap().success()),
        }
    };
    let mut last = 0;
    let mut partial_kills = 0;
    // Kill later and later until a run gets to finish on its own.
    for ms in (1..60).map(|i| 250 + 120 * i) {
        run(Some(ms));
        if !dolg::index::Store::exists(&db) {
            continue;
        }
        let index = Index::open(&db, false).unwrap_or_else(|e| panic!("after kill at {ms} ms: {e}"));
        let n = index.store().live_count();
        assert!(n >= last, "committed entries never disappear ({last} → {n})");
        for (row, r) in index.store().live_rows() {
            let norm: f32 = index.store().vector(row).iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-4, "{}: stored vector is not a unit vector", r.name);
        }
        eprintln!("killed at {ms} ms: {n} entries committed");
        last = n;
        if n == TOTAL {
            break;
        }
        partial_kills += usize::from(n > 0);
    }
    assert!(partial_kills > 0, "no kill landed in the middle of the build; the test did not exercise a crash");
    run(None);
    let index = Index::open(&db, false).unwrap();
    assert_eq!(index.store().live_count(), TOTAL);
}
