//! Search filters (`SearchRequest::filter`, `dolg search --where`): a filtered search ranks
//! exactly as the same search over a collection holding only the entries the filter keeps, for
//! plain, re-ranked and range searches, on both index kinds; a filter that keeps few entries
//! still gets every one of them; bad expressions are named errors.

use std::process::Command;

use dolg::collection::{Collection, Filter, IndexKind, OpenMode, Query, SearchRequest, VectorOrigin};
use dolg::index::{Index, ModelIdentity};
use dolg::rerank::{QueryExpansion, Rerank, SuperGlobal};

const DIM: usize = 8;
const N: usize = 90;

fn vectors() -> Vec<f32> {
    let mut state = 3u64;
    let mut v: Vec<f32> = (0..N * DIM)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    v.chunks_mut(DIM).for_each(dolg::rerank::normalize);
    v
}

/// Entry `i` lives in folder `a`, `b` or `b/c` by `i % 3`.
fn name(i: usize) -> String {
    ["a", "b", "b/c"][i % 3].to_string() + &format!("/v{i}.jpg")
}

/// A collection of the entries `i` with `keep(i)`, imported (no model), of index kind `kind`.
fn collection(dir: &std::path::Path, tag: &str, kind: IndexKind, keep: impl Fn(usize) -> bool) -> Collection {
    let db = dir.join(tag);
    let model = ModelIdentity { name: "imported descriptors".into(), dim: DIM, fingerprint: None, spec: None };
    drop(Index::create(&db, model, kind).unwrap());
    let mut c = Collection::open(&db, OpenMode::Write, &dolg::kernels::device("cpu").unwrap()).unwrap();
    let all = vectors();
    let rows: Vec<usize> = (0..N).filter(|&i| keep(i)).collect();
    let mut v: Vec<f32> = rows.iter().flat_map(|&i| all[i * DIM..(i + 1) * DIM].to_vec()).collect();
    let names: Vec<String> = rows.iter().map(|&i| name(i)).collect();
    c.import(&mut v, &names, VectorOrigin::Unverified, |_| {}).unwrap();
    c
}

fn names_of(hits: &[dolg::collection::NamedHit]) -> Vec<(String, i64)> {
    // Scores to 1e-5: the subset's SGEMM blocks round differently.
    hits.iter().map(|h| (h.name.clone(), (h.score * 1e5).round() as i64)).collect()
}

#[test]
fn a_filtered_search_ranks_as_the_kept_entries_alone() {
    let dir = tempfile::tempdir().unwrap();
    let whole = collection(dir.path(), "whole", IndexKind::Exact, |_| true);
    let folder_b = collection(dir.path(), "b", IndexKind::Exact, |i| i % 3 != 0);
    let filter = Filter::parse(&["folder = b"]).unwrap();
    let q: Vec<f32> = vectors()[5 * DIM..7 * DIM].iter().map(|x| x + 0.05).collect();
    let qe_sg = Rerank { qe: Some(QueryExpansion { n: 3, alpha: 3.0 }), superglobal: Some(SuperGlobal { m: 20, k: 4, beta: 0.15 }), spatial: None };
    for request in [SearchRequest::top(7), SearchRequest::top(N), SearchRequest::top(12).with_rerank(qe_sg), SearchRequest::range(0.2)] {
        let filtered = whole.search(Query::Vectors(&q), &request.clone().with_filter(filter.clone())).unwrap();
        let alone = folder_b.search(Query::Vectors(&q), &request).unwrap();
        for (f, a) in filtered.iter().zip(&alone) {
            assert!(!f.is_empty());
            assert!(f.iter().all(|h| h.name.starts_with("b/")), "{f:?}");
            assert_eq!(names_of(f), names_of(a), "{request:?}");
        }
    }
    // An indexed entry searched by name is still left out of its own results.
    let by_name = whole.search(Query::Name { name: "b/v1.jpg", local: None }, &SearchRequest::top(5).with_filter(filter.clone())).unwrap();
    assert!(by_name[0].iter().all(|h| h.name != "b/v1.jpg" && h.name.starts_with("b/")));
}

#[test]
fn a_selective_filter_gets_every_entry_it_keeps_on_both_index_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let q = &vectors()[..DIM];
    for kind in [IndexKind::Exact, IndexKind::Hnsw] {
        let c = collection(dir.path(), &format!("{kind:?}"), kind, |_| true);
        for (exprs, expect) in
            [(vec!["name ~ v1?.jpg"], 10), (vec!["name = a/v3.jpg"], 1), (vec!["folder = b/c", "name !~ v*5.jpg"], 27), (vec!["folder = z"], 0)]
        {
            let f = Filter::parse(&exprs).unwrap();
            let hits = c.search(Query::Vectors(q), &SearchRequest::top(40).with_filter(f.clone())).unwrap().remove(0);
            assert_eq!(hits.len(), expect, "{kind:?} {exprs:?}: {hits:?}");
            assert!(hits.iter().all(|h| f.keeps(&h.name, None)));
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }
}

#[test]
fn dolg_search_where_filters_and_names_a_bad_expression() {
    let dir = tempfile::tempdir().unwrap();
    let c = collection(dir.path(), "whole", IndexKind::Exact, |_| true);
    let db = c.dir().to_owned();
    drop(c);
    let q = dir.path().join("q.npy");
    dolg::descriptors::write_npy(&q, &[1, DIM as u64], vectors()[..DIM].to_vec()).unwrap();
    let bin = env!("CARGO_BIN_EXE_dolg");
    let run = |extra: &[&str]| {
        Command::new(bin).args(["search", "--db"]).arg(&db).arg("--vectors").arg(&q).args(["--json", "--k", "50"]).args(extra).output().unwrap()
    };
    let out = run(&["--where", "folder = b/c", "--where", "name ~ v?.jpg"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["queries"][0]["results"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["b/c/v2.jpg", "b/c/v5.jpg", "b/c/v8.jpg"]);
    let out = run(&["--where", "date >= 2024-06-01"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field 'date'") && err.contains("--where"), "{err}");
}
