//! PostgreSQL + pgvector shards against the local index on the same vectors: N random 512-d unit
//! vectors (default 1,000,000) in folders `f0`..`f99`, loaded into the collection `--db` names
//! (empty databases; `bench/pg_1m.sh` starts 3 local shards and passes them) and into a local
//! index. Prints one table: load time, then per search kind (top-10, one query at a time as
//! `dolg search` and the server issue them) queries/s, median and p99 latency, recall@10 against
//! exact, and the same with a filter keeping 1% of the photos (`folder = f7`). `--local-hnsw`
//! adds the local HNSW graph (slow to build at 1M; `benches/search_1m.rs --hnsw` measures it).
//! Random unit vectors are HNSW's hardest case (no clusters to walk towards): recall there is a
//! floor, not what photo descriptors get; `--clustered` puts every vector near one of n/100
//! centres, as photos of one place are.
//!
//! Run: `bash bench/pg_1m.sh [N]` (or `cargo bench --bench pg_1m -- --db postgres://... --n N`).

mod common;

use std::time::Instant;

use common::unit_rows;
use dolg::collection::postgres::PgCollection;
use dolg::collection::{Collection, Filter, IndexKind, OpenMode, Query, SearchRequest, VectorOrigin};
use dolg::index::{Index, ModelIdentity};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// `n` vectors around `n / 100` random centres and `nq` queries around the first centres: each
/// a centre plus noise of 0.4 times its length, normalised.
fn clustered_rows(n: usize, nq: usize, dim: usize) -> (Vec<f32>, Vec<f32>) {
    let centres = unit_rows((n / 100).max(1), dim, 1);
    let around = |count: usize, seed: u64| {
        let noise = unit_rows(count, dim, seed);
        let mut v: Vec<f32> = (0..count * dim).map(|j| centres[((j / dim) % (centres.len() / dim)) * dim + j % dim] + 0.4 * noise[j]).collect();
        v.chunks_mut(dim).for_each(dolg::descriptors::l2_normalize);
        v
    };
    (around(n, 2), around(nq, 3))
}

struct Row {
    what: String,
    qps: f64,
    median_ms: f64,
    p99_ms: f64,
    recall: Option<f64>,
}

/// Time `nq` queries one at a time; returns the row and each query's names.
fn run(what: &str, queries: &[f32], dim: usize, mut search: impl FnMut(&[f32]) -> Vec<String>) -> (Row, Vec<Vec<String>>) {
    let mut times = Vec::new();
    let mut found = Vec::new();
    let t = Instant::now();
    for q in queries.chunks(dim) {
        let s = Instant::now();
        found.push(search(q));
        times.push(s.elapsed().as_secs_f64() * 1000.0);
    }
    let total = t.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    let p99 = times[((times.len() as f64 * 0.99).ceil() as usize).clamp(1, times.len()) - 1];
    (Row { what: what.into(), qps: times.len() as f64 / total, median_ms: times[times.len() / 2], p99_ms: p99, recall: None }, found)
}

fn recall(found: &[Vec<String>], truth: &[Vec<String>]) -> f64 {
    found.iter().zip(truth).map(|(f, t)| f.iter().filter(|n| t.contains(n)).count() as f64 / t.len().max(1) as f64).sum::<f64>() / found.len() as f64
}

fn main() {
    let n: usize = arg("--n").and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let nq: usize = arg("--queries").and_then(|v| v.parse().ok()).unwrap_or(100);
    let exact_db = arg("--db").expect("--db postgres://... (empty databases; bench/pg_1m.sh makes them)");
    let hnsw_db = arg("--hnsw-db").expect("--hnsw-db postgres://... (other empty databases)");
    if let Some(t) = arg("--threads").and_then(|v| v.parse().ok()) {
        dolg::runtime::set_threads(Some(t)).expect("--threads");
    }
    let dim = 512;
    let device = dolg::kernels::device("cpu").unwrap();
    // `--clustered`: photo-like data, every vector near one of n/100 centres (as photos of one
    // place are near each other), queries near centres too; otherwise uniform random vectors.
    let clustered = std::env::args().any(|a| a == "--clustered");
    let (db, queries) = if clustered { clustered_rows(n, nq, dim) } else { (unit_rows(n, dim, 1), unit_rows(nq, dim, 2)) };
    let names: Vec<String> = (0..n).map(|i| format!("f{}/{i}.jpg", i % 100)).collect();
    let mut loads = Vec::new();

    // Local exact index.
    let tmp = tempfile::tempdir().unwrap();
    let model = ModelIdentity { name: "imported descriptors".into(), dim, fingerprint: None, spec: None };
    let t = Instant::now();
    drop(Index::create(&tmp.path().join("exact"), model.clone(), IndexKind::Exact).unwrap());
    let mut local = Collection::open(&tmp.path().join("exact"), OpenMode::Write, &device).unwrap();
    local.import(&mut db.clone(), &names, VectorOrigin::Unverified, |_| {}).unwrap();
    loads.push(("local exact index: import", t.elapsed().as_secs_f64()));
    // The local HNSW graph grows one insertion at a time (about 1,000 vectors/s here): at 1M it
    // would take most of the run, so it is opt-in; benches/search_1m.rs --hnsw measures it alone.
    let local_hnsw = std::env::args().any(|a| a == "--local-hnsw").then(|| {
        let t = Instant::now();
        drop(Index::create(&tmp.path().join("hnsw"), model, IndexKind::Hnsw).unwrap());
        let mut c = Collection::open(&tmp.path().join("hnsw"), OpenMode::Write, &device).unwrap();
        c.import(&mut db.clone(), &names, VectorOrigin::Unverified, |_| {}).unwrap();
        loads.push(("local HNSW index: import and graph", t.elapsed().as_secs_f64()));
        c
    });

    // The same vectors on the shards.
    let t = Instant::now();
    let mut pg = PgCollection::create_for_vectors(&exact_db, dim, IndexKind::Exact, false, &device).unwrap();
    pg.import(&mut db.clone(), &names, VectorOrigin::Unverified, |_| {}).unwrap();
    loads.push(("PostgreSQL exact: COPY", t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let mut pg_hnsw = PgCollection::create_for_vectors(&hnsw_db, dim, IndexKind::Hnsw, false, &device).unwrap();
    pg_hnsw.import(&mut db.clone(), &names, VectorOrigin::Unverified, |_| {}).unwrap();
    loads.push(("PostgreSQL HNSW: COPY and index build", t.elapsed().as_secs_f64()));
    drop(db);

    let top10 = SearchRequest::top(10);
    let filtered = SearchRequest::top(10).with_filter(Filter::parse(&["folder = f7"]).unwrap());
    let names_of = |hits: Vec<Vec<dolg::collection::NamedHit>>| hits.into_iter().next().unwrap_or_default().into_iter().map(|h| h.name).collect::<Vec<_>>();
    let mut rows = Vec::new();
    for (label, request) in [("top-10", &top10), ("top-10, folder = f7 (1%)", &filtered)] {
        let (r, truth) = run(&format!("local exact, {label}"), &queries, dim, |q| names_of(local.search(Query::Vectors(q), request).unwrap()));
        rows.push(r);
        if let Some(h) = &local_hnsw {
            let (mut r, f) = run(&format!("local HNSW, {label}"), &queries, dim, |q| names_of(h.search(Query::Vectors(q), request).unwrap()));
            r.recall = Some(recall(&f, &truth));
            rows.push(r);
        }
        let (mut r, f) = run(&format!("PostgreSQL exact, {label}"), &queries, dim, |q| names_of(pg.search(Query::Vectors(q), request, false).unwrap().hits));
        r.recall = Some(recall(&f, &truth));
        rows.push(r);
        let (mut r, f) =
            run(&format!("PostgreSQL HNSW, {label}"), &queries, dim, |q| names_of(pg_hnsw.search(Query::Vectors(q), request, false).unwrap().hits));
        r.recall = Some(recall(&f, &truth));
        rows.push(r);
    }
    let shards = pg.info().unwrap().shards.len();
    let data = if clustered { "clustered (n/100 centres)" } else { "uniform random" };
    println!(
        "{n} x {dim} float32 vectors, {data}, {nq} queries one at a time, {} threads, {shards} PostgreSQL shards on this machine\n",
        rayon::current_num_threads()
    );
    println!("| load | seconds |\n|---|---|");
    for (what, s) in &loads {
        println!("| {what} | {s:.1} |");
    }
    println!("\n| search | queries/s | median ms | p99 ms | recall@10 vs exact |\n|---|---|---|---|---|");
    for r in rows {
        println!("| {} | {:.1} | {:.1} | {:.1} | {} |", r.what, r.qps, r.median_ms, r.p99_ms, r.recall.map_or("(reference)".into(), |x| format!("{x:.3}")));
    }
}
