//! One conformance suite run against every index kind: add, search, remove, persist, reopen,
//! corrupt file, model mismatch. The stale HNSW graph is re-synchronised once and saved, even by
//! a reader. Crash safety: a child process aborted by the commit failpoint at every commit of a
//! build leaves an index that reopens with exactly the commits before (or including) it.

use std::collections::BTreeSet;
use std::path::Path;

use dolg::index::{Index, IndexError, IndexKind, ModelIdentity, OpenMode, Record};

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
    Record::add(name, Some([seed as u8; 32]), unit(seed, dim))
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
        index.commit(vec![Record::add("img5", None, unit(5000, dim))]).unwrap();
        assert_eq!(index.search(&unit(5000, dim), 1, -1.0).unwrap()[0][0].name, "img5");
        assert_eq!(index.store().live_count(), 299);
    }
    // persist + reopen: same state, same answers.
    let reopened = Index::open(&path, OpenMode::Read).unwrap();
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
    let mut w = Index::open(&path, OpenMode::Write).unwrap();
    w.compact().unwrap();
    assert_eq!(w.store().segments(), 1);
    assert_eq!(names(&w.search(&q, 10, -1.0).unwrap()[0]), brute_force(&w, &q, 10));
    w.flush().unwrap();
    drop(w);
    let after = Index::open(&path, OpenMode::Read).unwrap();
    assert_eq!(after.graph_resynced(), 0, "{kind:?}: the flushed backend is current after compaction");
    assert_eq!(names(&after.search(&q, 10, -1.0).unwrap()[0]), brute_force(&after, &q, 10));
    drop(after);
    // a corrupted segment is detected and named, never used.
    let seg = std::fs::read_dir(&path).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "bin")).unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    match Index::open(&path, OpenMode::Read) {
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
        let rebuilt = Index::open(&path, OpenMode::Read).unwrap();
        assert_eq!(rebuilt.store().live_count(), 299);
        assert_eq!(rebuilt.graph_resynced(), 299, "the damaged graph is rebuilt");
        assert_eq!(names(&rebuilt.search(&q, 10, -1.0).unwrap()[0]), brute_force(&rebuilt, &q, 10));
        drop(rebuilt);
        assert_eq!(Index::open(&path, OpenMode::Read).unwrap().graph_resynced(), 0, "and saved by the reader that rebuilt it");
    }
    // a corrupted manifest too.
    let manifest = path.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap().replacen("test-model", "test-modem", 1);
    std::fs::write(&manifest, text).unwrap();
    assert!(matches!(Index::open(&path, OpenMode::Read), Err(IndexError::Corrupt { .. })));
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
    let mut index = Index::open(&path, OpenMode::Write).unwrap();
    assert_eq!(index.store().live_count(), 1);
    index.commit(vec![add("b", 2, 8)]).unwrap();
    assert!(!path.join("seg-00000099.bin").exists(), "the next commit cleans up orphans");
}

#[test]
fn missing_directory_is_a_clear_error() {
    assert!(matches!(Index::open(Path::new("/nonexistent/idx"), OpenMode::Read), Err(IndexError::NotAnIndex { .. })));
}

fn graph_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path.join(dolg::index::backend::GRAPH_FILE)).unwrap()
}

/// A graph behind the segments (a writer that never flushed, a deleted graph) is brought up to
/// date and saved by the first open, a reader's included; the next open finds it current.
#[test]
fn stale_graph_is_resynchronised_once_even_by_readers() {
    let dim = 16;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    let mut w = Index::create(&path, model(dim, "A"), IndexKind::Hnsw).unwrap();
    w.commit((0..200).map(|i| add(&format!("img{i}"), i, dim)).collect()).unwrap();
    w.flush().unwrap();
    let flushed = graph_bytes(&path);
    // A writer that ends without flush: dropping it writes nothing.
    w.commit(vec![Record::Remove { name: "img3".into() }, add("img4", 4000, dim), add("new", 5000, dim)]).unwrap();
    drop(w);
    assert_eq!(graph_bytes(&path), flushed, "dropping an index must not write");
    let q = unit(777, dim);
    for expected in [4, 0] {
        // remove img3 + remove the old img4 + add the new img4 + add "new" = 4 changes, then none.
        let r = Index::open(&path, OpenMode::Read).unwrap();
        assert_eq!(r.graph_resynced(), expected);
        assert_eq!(names(&r.search(&q, 10, -1.0).unwrap()[0]), brute_force(&r, &q, 10));
        assert_eq!(r.search(&unit(5000, dim), 1, -1.0).unwrap()[0][0].name, "new");
    }
    // Readers at the same time: each may save; all see a current graph afterwards.
    std::fs::remove_file(path.join(dolg::index::backend::GRAPH_FILE)).unwrap();
    let (a, b) = (Index::open(&path, OpenMode::Read).unwrap(), Index::open(&path, OpenMode::Read).unwrap());
    assert_eq!(a.graph_resynced(), 200);
    assert!(b.graph_resynced() == 200 || b.graph_resynced() == 0);
    drop((a, b));
    assert_eq!(Index::open(&path, OpenMode::Read).unwrap().graph_resynced(), 0);
    // Where the graph cannot be saved, a reader still searches with the graph it rebuilt.
    let graph = path.join(dolg::index::backend::GRAPH_FILE);
    std::fs::remove_file(&graph).unwrap();
    std::fs::create_dir_all(graph.join("blocker")).unwrap();
    let r = Index::open(&path, OpenMode::Read).unwrap();
    assert_eq!(r.graph_resynced(), 200);
    assert_eq!(names(&r.search(&q, 10, -1.0).unwrap()[0]), brute_force(&r, &q, 10));
}

#[test]
fn exact_index_has_nothing_to_resynchronise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    let mut w = Index::create(&path, model(8, "A"), IndexKind::Exact).unwrap();
    w.commit(vec![add("a", 1, 8), add("b", 2, 8)]).unwrap();
    drop(w);
    let r = Index::open(&path, OpenMode::Read).unwrap();
    assert_eq!((r.kind(), r.graph_resynced(), r.store().live_count()), (IndexKind::Exact, 0, 2));
    assert!(!path.join(dolg::index::backend::GRAPH_FILE).exists());
}

#[test]
fn readers_cannot_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    drop(Index::create(&path, model(8, "A"), IndexKind::Hnsw).unwrap());
    let mut r = Index::open(&path, OpenMode::Read).unwrap();
    assert_eq!(r.mode(), OpenMode::Read);
    assert!(matches!(r.commit(vec![add("a", 1, 8)]), Err(IndexError::ReadOnly { .. })));
    assert!(matches!(r.compact(), Err(IndexError::ReadOnly { .. })));
    assert_eq!(r.store().live_count(), 0);
}

/// Set in the child process of the crash test: the directory to build the index in.
const CRASH_CHILD_DIR: &str = "DOLG_TEST_CRASH_CHILD_DIR";
/// Commits of the child's build.
const CRASH_COMMITS: usize = 4;
const CRASH_DIM: usize = 8;

/// The child's `i`-th commit (from 1): three additions each, the last also removing and replacing.
fn crash_batch(i: usize) -> Vec<Record> {
    let mut batch: Vec<Record> = (0..3).map(|j| add(&format!("c{i}-{j}"), (10 * i + j) as u64, CRASH_DIM)).collect();
    if i == CRASH_COMMITS {
        batch.push(Record::Remove { name: "c1-0".into() });
        batch.push(add("c2-1", 999, CRASH_DIM));
    }
    batch
}

/// The names live after the child's first `n` commits.
fn crash_expected(n: usize) -> BTreeSet<String> {
    let mut live = BTreeSet::new();
    for i in 1..=n {
        for r in crash_batch(i) {
            match r {
                Record::Add { name, .. } => live.insert(name),
                Record::Remove { name } => live.remove(&name),
            };
        }
    }
    live
}

fn segment_files(path: &Path) -> usize {
    std::fs::read_dir(path).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("seg-")).count()
}

/// Not a test on its own: the child process of `aborted_commit_reopens_consistent`, which runs
/// this test binary again with [`CRASH_CHILD_DIR`] and `DOLG_FAILPOINT` set. Without them it
/// does nothing.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) else { return };
    let mut index = Index::create(Path::new(&dir), model(CRASH_DIM, "A"), IndexKind::Hnsw).unwrap();
    for i in 1..=CRASH_COMMITS {
        index.commit(crash_batch(i)).unwrap();
    }
    index.flush().unwrap();
}

/// Abort a build through the library at every commit, before and after its manifest rename
/// (`DOLG_FAILPOINT`, see `dolg::index::store`); every time the index must reopen with exactly
/// the commits before the aborted one (before the rename) or including it (after), and a
/// following writer must be able to commit.
#[test]
fn aborted_commit_reopens_consistent() {
    let exe = std::env::current_exe().unwrap();
    let run_child = |db: &Path, failpoint: &str| {
        std::process::Command::new(&exe)
            .args(["--exact", &crate::common::this_test(module_path!(), "crash_child"), "--nocapture", "--test-threads", "1"])
            .env(CRASH_CHILD_DIR, db)
            .env("DOLG_FAILPOINT", failpoint)
            .current_dir(db.parent().unwrap())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
    };
    for (stage, lands) in [("segment", 0), ("manifest", 1)] {
        for n in 1..=CRASH_COMMITS {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("idx");
            let status = run_child(&db, &format!("commit:{n}:{stage}"));
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(status.signal(), Some(libc::SIGABRT), "commit {n} at {stage}: the child was not aborted ({status})");
            }
            #[cfg(not(unix))]
            assert!(!status.success(), "commit {n} at {stage}: the child was not aborted");
            let committed = n - 1 + lands;
            let index = Index::open(&db, OpenMode::Read).unwrap_or_else(|e| panic!("commit {n} at {stage}: {e}"));
            let live: BTreeSet<String> = index.store().live_rows().map(|(_, r)| r.name.clone()).collect();
            assert_eq!(live, crash_expected(committed), "commit {n} at {stage}");
            assert_eq!(index.store().segments(), committed);
            // Before the rename, the aborted commit's segment is on disk but not in the manifest.
            assert_eq!(segment_files(&db), committed + 1 - lands, "commit {n} at {stage}");
            // The graph (saved empty at creation) is caught up from the segments.
            assert_eq!(index.graph_resynced(), live.len());
            for (row, r) in index.store().live_rows() {
                assert_eq!(index.search(index.store().vector(row), 1, -1.0).unwrap()[0][0].name, r.name);
            }
            drop(index);
            let mut w = Index::open(&db, OpenMode::Write).unwrap();
            w.commit(vec![add("after", 12345, CRASH_DIM)]).unwrap();
            w.flush().unwrap();
            assert_eq!(w.store().live_count(), live.len() + 1);
            assert_eq!(segment_files(&db), w.store().segments(), "commit {n} at {stage}: an orphan segment is left");
        }
    }
    // A failpoint past the last commit never fires: the child builds everything.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("idx");
    assert!(run_child(&db, &format!("commit:{}", CRASH_COMMITS + 1)).success());
    let index = Index::open(&db, OpenMode::Read).unwrap();
    assert_eq!(index.store().live_rows().map(|(_, r)| r.name.clone()).collect::<BTreeSet<_>>(), crash_expected(CRASH_COMMITS));
    assert_eq!(index.graph_resynced(), 0, "the child flushed its graph");
}
