//! The [`SearchBackend`] contract, one function per point, instantiated for every backend by
//! `backend_conformance!` at the bottom (add a line there for a new backend).

use super::*;
use crate::index::{ModelIdentity, Record};

const DIM: usize = 16;
/// Rows `0..N` are `r{i}`; rows `N` and `N + 1` ("twin-a", "twin-b") share one vector.
const N: usize = 300;

/// Deterministic unit vectors.
fn unit(seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..DIM)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A store (opened for writing) holding the rows described at [`N`].
fn store(kind: IndexKind) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let model = ModelIdentity { name: "test".into(), dim: DIM, fingerprint: None, spec: None };
    let mut s = Store::create(dir.path(), model, kind).unwrap();
    let mut recs: Vec<Record> = (0..N).map(|i| Record::add(format!("r{i}"), None, unit(i as u64))).collect();
    recs.push(Record::add("twin-a", None, unit(9999)));
    recs.push(Record::add("twin-b", None, unit(9999)));
    s.commit(recs).unwrap();
    (dir, s)
}

/// The store's vectors for `rows`, row-major.
fn vectors(s: &Store, rows: &[usize]) -> Vec<f32> {
    rows.iter().flat_map(|&r| s.vector(r).iter().copied()).collect()
}

/// A backend holding every live row of `s`, added in two batches.
fn filled(kind: IndexKind, s: &Store) -> Box<dyn SearchBackend> {
    let mut b = create(kind, DIM).unwrap();
    let live: Vec<usize> = s.live_rows().map(|(i, _)| i).collect();
    let (first, rest) = live.split_at(live.len() / 2);
    b.add(first, &vectors(s, first)).unwrap();
    b.add(rest, &vectors(s, rest)).unwrap();
    b
}

/// The true top `k` of the rows `b` holds: best first, ties to the lower row.
fn brute_force(b: &dyn SearchBackend, s: &Store, q: &[f32], k: usize, min_score: f32) -> Vec<Hit> {
    let mut all: Vec<Hit> =
        (0..s.rows().len()).filter(|&r| b.contains(r)).map(|r| Hit { row: r, score: dot(q, s.vector(r)) }).filter(|h| h.score >= min_score).collect();
    all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
    all.truncate(k);
    all
}

/// Every rule a single result list obeys, exact or not.
fn check_list(b: &dyn SearchBackend, s: &Store, q: &[f32], k: usize, min_score: f32, hits: &[Hit]) {
    assert!(hits.len() <= k, "{} hits for k = {k}", hits.len());
    let mut seen = std::collections::HashSet::new();
    for h in hits {
        assert!(seen.insert(h.row), "row {} returned twice", h.row);
        assert!(b.contains(h.row), "row {} is not held", h.row);
        assert!(h.score >= min_score, "score {} below {min_score}", h.score);
        assert!((h.score - dot(q, s.vector(h.row))).abs() < 1e-4, "row {}: score {} is not the inner product", h.row, h.score);
    }
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "not best first: {hits:?}");
}

pub(super) fn membership(kind: IndexKind) {
    let (_dir, s) = store(kind);
    let mut b = create(kind, DIM).unwrap();
    assert_eq!((b.is_empty(), b.len(), b.contains(0)), (true, 0, false));
    let first: Vec<usize> = (0..100).collect();
    b.add(&first, &vectors(&s, &first)).unwrap();
    assert_eq!(b.len(), 100);
    assert!(first.iter().all(|&r| b.contains(r)) && !b.contains(100));
    // A row already held, or twice in one batch: an error, and nothing of the batch is added.
    assert!(matches!(b.add(&[150, 3], &vectors(&s, &[150, 3])), Err(IndexError::DuplicateRow { row: 3 })));
    assert!(matches!(b.add(&[150, 150], &vectors(&s, &[150, 150])), Err(IndexError::DuplicateRow { row: 150 })));
    assert!(!b.contains(150) && b.len() == 100);
    // Vectors not matching the rows: an error, nothing added.
    assert!(matches!(b.add(&[150, 151], &vectors(&s, &[150])), Err(IndexError::Dimension { .. })));
    assert!(!b.contains(150) && b.len() == 100);
    b.add(&[], &[]).unwrap();
    let rest: Vec<usize> = (100..N + 2).collect();
    b.add(&rest, &vectors(&s, &rest)).unwrap();
    assert_eq!(b.len(), N + 2);
}

pub(super) fn search_results(kind: IndexKind) {
    let (_dir, s) = store(kind);
    let b = filled(kind, &s);
    let queries: Vec<f32> = (0..40).flat_map(|i| if i % 2 == 0 { unit(i * 7) } else { unit(100_000 + i) }).collect();
    let (mut found, mut wanted) = (0, 0);
    for (k, min_score) in [(10, f32::MIN), (1, f32::MIN), (25, 0.3), (N + 10, f32::MIN)] {
        let lists = b.search(&s, &queries, k, min_score).unwrap();
        assert_eq!(lists.len(), 40, "one list per query");
        for (q, hits) in queries.chunks(DIM).zip(&lists) {
            check_list(&*b, &s, q, k, min_score, hits);
            let truth = brute_force(&*b, &s, q, k, min_score);
            if b.is_exact() {
                // The same rows in the same order, except that scores equal up to rounding (the
                // SGEMM and this loop round differently) may come in either order.
                assert_eq!(hits.len(), truth.len(), "k {k}, min {min_score}");
                for (h, t) in hits.iter().zip(&truth) {
                    assert!(h.row == t.row || (h.score - t.score).abs() < 1e-5, "k {k}, min {min_score}: {h:?} where {t:?} is expected");
                }
            } else {
                wanted += truth.len();
                found += truth.iter().filter(|t| hits.iter().any(|h| h.row == t.row)).count();
            }
        }
    }
    if !b.is_exact() {
        let recall = found as f64 / wanted as f64;
        assert!(recall >= 0.9, "recall {recall}");
    }
    // Each held vector finds itself first (either twin for the twins), score 1.
    for row in [0, 17, N - 1, N, N + 1] {
        let hits = b.search(&s, s.vector(row), 3, f32::MIN).unwrap().remove(0);
        assert!(hits[0].row == row || (row >= N && hits[0].row >= N), "row {row}: {hits:?}");
        assert!((hits[0].score - 1.0).abs() < 1e-5);
    }
    // Ties go to the lower row id in an exact backend.
    if b.is_exact() {
        let hits = b.search(&s, s.vector(N + 1), 2, f32::MIN).unwrap().remove(0);
        assert_eq!((hits[0].row, hits[1].row), (N, N + 1));
    }
    // k = 0, no queries, a threshold nothing reaches.
    assert!(b.search(&s, &queries, 0, f32::MIN).unwrap().iter().all(Vec::is_empty));
    assert!(b.search(&s, &[], 5, f32::MIN).unwrap().is_empty());
    assert!(b.search(&s, &queries, 5, 1.5).unwrap().iter().all(Vec::is_empty));
    // A query of the wrong length.
    assert!(matches!(b.search(&s, &queries[..DIM + 3], 5, f32::MIN), Err(IndexError::Dimension { .. })));
    // An empty backend over a full store.
    let empty = create(kind, DIM).unwrap();
    assert!(empty.search(&s, &queries, 5, f32::MIN).unwrap().iter().all(Vec::is_empty));
}

pub(super) fn removal(kind: IndexKind) {
    let (_dir, s) = store(kind);
    let mut b = filled(kind, &s);
    let q = s.vector(5).to_vec();
    assert!(b.remove(5).unwrap());
    assert!(!b.contains(5));
    assert_eq!(b.len(), N + 1);
    let hits = b.search(&s, &q, N + 10, f32::MIN).unwrap().remove(0);
    assert!(hits.iter().all(|h| h.row != 5), "a removed row was returned");
    check_list(&*b, &s, &q, N + 10, f32::MIN, &hits);
    // Removing again, or a row never held: no error, no change.
    assert!(!b.remove(5).unwrap());
    assert!(!b.remove(1_000_000).unwrap());
    assert_eq!(b.len(), N + 1);
    // A removed row may come back.
    b.add(&[5], &q).unwrap();
    assert_eq!(b.search(&s, &q, 1, f32::MIN).unwrap()[0][0].row, 5);
    // Removing many leaves the rest findable.
    for r in (0..N).step_by(3) {
        assert!(b.remove(r).unwrap());
    }
    for r in (1..N).step_by(3) {
        let hits = b.search(&s, s.vector(r), 1, f32::MIN).unwrap().remove(0);
        assert_eq!(hits[0].row, r);
    }
}

pub(super) fn sync_and_persist(kind: IndexKind) {
    let (_dir, mut s) = store(kind);
    // Dead rows in the store: a removal and a replacement (whose old row dies).
    s.commit(vec![Record::Remove { name: "r3".into() }, Record::add("r4", None, unit(4444))]).unwrap();
    let live = s.live_count();
    // From empty: every live row is added.
    let mut b = create(kind, DIM).unwrap();
    assert_eq!(b.sync(&s).unwrap(), live);
    assert_eq!(b.len(), live);
    assert!(s.rows().iter().enumerate().all(|(i, r)| b.contains(i) == r.alive));
    assert_eq!(b.sync(&s).unwrap(), 0, "a synchronised backend needs nothing");
    // A dead row held and a live row missing: two changes.
    b.add(&[3], s.vector(3)).unwrap();
    b.remove(10).unwrap();
    assert_eq!(b.sync(&s).unwrap(), 2);
    assert!(!b.contains(3) && b.contains(10));
    // Saved state is reopened as is, answering the same.
    b.persist(&s).unwrap();
    assert!(!b.persist(&s).unwrap(), "nothing changed since the last save");
    let (reopened, changed) = open(kind, &s).unwrap();
    assert_eq!(changed, 0);
    assert_eq!(reopened.len(), live);
    let queries: Vec<f32> = (0..10).flat_map(|i| unit(200_000 + i)).collect();
    assert_eq!(reopened.search(&s, &queries, 10, f32::MIN).unwrap(), b.search(&s, &queries, 10, f32::MIN).unwrap());
    drop(reopened);
    // A commit the saved state has not seen: open catches up (for a backend with files).
    s.commit(vec![Record::add("late", None, unit(5555))]).unwrap();
    let (reopened, _) = open(kind, &s).unwrap();
    let late = s.lookup("late").unwrap();
    assert!(reopened.contains(late) && reopened.len() == s.live_count());
    drop(reopened);
    // After a compaction renumbers the rows, saved state of the old numbering is not reused.
    s.compact().unwrap();
    let (mut reopened, _) = open(kind, &s).unwrap();
    assert_eq!(reopened.len(), s.live_count());
    assert!(s.rows().iter().enumerate().all(|(i, r)| reopened.contains(i) == r.alive));
    for (i, _) in s.live_rows().step_by(37) {
        assert_eq!(reopened.search(&s, s.vector(i), 1, f32::MIN).unwrap()[0][0].row, i);
    }
    reopened.persist(&s).unwrap();
    assert_eq!(open(kind, &s).unwrap().1, 0);
    // A rebuild holds exactly the live rows.
    let rebuilt = rebuild(kind, &s).unwrap();
    assert!(s.rows().iter().enumerate().all(|(i, r)| rebuilt.contains(i) == r.alive));
}

pub(super) fn concurrent_search(kind: IndexKind) {
    let (_dir, s) = store(kind);
    let b = filled(kind, &s);
    let (b, s): (&dyn SearchBackend, &Store) = (&*b, &s);
    std::thread::scope(|scope| {
        for t in 0..24 {
            scope.spawn(move || {
                for j in 0..20 {
                    let r = (t * 20 + j) % N;
                    assert_eq!(b.search(s, s.vector(r), 3, f32::MIN).unwrap()[0][0].row, r);
                }
            });
        }
    });
}

/// Filtered searches return the top results among held rows the filter keeps, and as many as
/// exist however few the filter keeps.
pub(super) fn filtered_search(kind: IndexKind) {
    let (_dir, s) = store(kind);
    let mut b = filled(kind, &s);
    b.remove(6).unwrap();
    let queries: Vec<f32> = (0..20).flat_map(|i| unit(i * 13)).collect();
    // Every third row (row 6 is no longer held); rows past the mask's end are not kept.
    let thirds: Vec<bool> = (0..N).map(|r| r % 3 == 0).collect();
    let one: Vec<bool> = (0..=42).map(|r| r == 42).collect();
    for (keep, k, min_score) in [(&thirds, 10, f32::MIN), (&thirds, N, f32::MIN), (&thirds, 25, 0.2), (&one, 5, f32::MIN), (&vec![false; N + 2], 5, f32::MIN)] {
        let lists = b.search_where(&s, &queries, k, min_score, Some(keep)).unwrap();
        assert_eq!(lists.len(), 20);
        for (q, hits) in queries.chunks(DIM).zip(&lists) {
            check_list(&*b, &s, q, k, min_score, hits);
            assert!(hits.iter().all(|h| keep.get(h.row) == Some(&true)), "a row the filter drops: {hits:?}");
            let mut truth = brute_force(&*b, &s, q, usize::MAX, min_score);
            truth.retain(|h| keep.get(h.row) == Some(&true));
            truth.truncate(k);
            assert_eq!(hits.len(), truth.len(), "k {k}, min {min_score}: as many results as kept rows allow");
            if b.is_exact() {
                assert!(hits.iter().zip(&truth).all(|(h, t)| h.row == t.row || (h.score - t.score).abs() < 1e-5));
            }
        }
    }
    // No filter is the plain search.
    assert_eq!(b.search_where(&s, &queries, 10, f32::MIN, None).unwrap(), b.search(&s, &queries, 10, f32::MIN).unwrap());
}

macro_rules! backend_conformance {
    ($($module:ident => $kind:expr),* $(,)?) => {$(
        mod $module {
            use crate::index::IndexKind;

            #[test]
            fn membership() {
                super::membership($kind);
            }
            #[test]
            fn search_results() {
                super::search_results($kind);
            }
            #[test]
            fn filtered_search() {
                super::filtered_search($kind);
            }
            #[test]
            fn removal() {
                super::removal($kind);
            }
            #[test]
            fn sync_and_persist() {
                super::sync_and_persist($kind);
            }
            #[test]
            fn concurrent_search() {
                super::concurrent_search($kind);
            }
        }
    )*};
}

backend_conformance! {
    exact => IndexKind::Exact,
    hnsw => IndexKind::Hnsw,
}
