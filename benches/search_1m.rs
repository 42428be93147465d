//! Exact search benchmark: N random 512-d unit vectors (default 1,000,000), 100 queries, top-100.
//! Prints queries/s and peak memory. `--hnsw` also builds the usearch HNSW index at its defaults
//! (M=16, ef_construction=128, ef_search=64) and reports build time, queries/s (one query at a
//! time, as `dolg search` issues them) and recall@10 against the exact results. `--write DIR`
//! also saves the data as .npy for `bench/compare_faiss.sh`; `--json` prints one JSON object.
//! Run: `cargo bench --bench search_1m [-- --n 1000000 --threads 2]`.

mod common;

use std::time::Instant;

use common::{peak_rss_mib, unit_rows};

use dolg::index::exact;

/// Streamed straight from the flat buffer, so writing adds no copy to the measured peak memory.
fn write_npy(path: &std::path::Path, data: &[f32], dim: usize) {
    use npyz::WriterBuilder;
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = npyz::WriteOptions::<f32>::new().default_dtype().shape(&[(data.len() / dim) as u64, dim as u64]).writer(f).begin_nd().unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let n: usize = arg("--n").and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    if let Some(t) = arg("--threads").and_then(|v| v.parse().ok()) {
        dolg::runtime::set_threads(Some(t)).expect("--threads");
    }
    let json = std::env::args().any(|a| a == "--json");
    let (dim, nq, k) = (512, 100, 100);
    let db = unit_rows(n, dim, 1);
    let queries = unit_rows(nq, dim, 2);
    if let Some(dir) = arg("--write") {
        std::fs::create_dir_all(&dir).unwrap();
        write_npy(&std::path::Path::new(&dir).join("db.npy"), &db, dim);
        write_npy(&std::path::Path::new(&dir).join("queries.npy"), &queries, dim);
    }
    let data_mib = peak_rss_mib();
    let mut times = Vec::new();
    let mut top = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        top = exact::search(&db, dim, None, &queries, k, f32::MIN);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let secs = times[1];
    std::hint::black_box(&top);
    if let Some(dir) = arg("--write") {
        // Top-10 ids for recall comparisons, int64 [nq, 10].
        let ids: Vec<String> = top.iter().map(|h| h.iter().take(10).map(|x| x.row.to_string()).collect::<Vec<_>>().join(",")).collect();
        std::fs::write(std::path::Path::new(&dir).join("exact_top10.txt"), ids.join("\n")).unwrap();
    }
    let threads = rayon::current_num_threads();
    let exact_rss = peak_rss_mib();
    let hnsw = std::env::args().any(|a| a == "--hnsw").then(|| {
        let t = Instant::now();
        let mut g = dolg::index::HnswIndex::new(dim, n).unwrap();
        let ids: Vec<u64> = (0..n as u64).collect();
        g.add_batch(&ids, &db).unwrap();
        let build = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let found: Vec<Vec<u64>> = queries.chunks(dim).map(|q| g.search(q, 10).unwrap().into_iter().map(|(id, _)| id).collect()).collect();
        let search = t.elapsed().as_secs_f64();
        let recall =
            found.iter().zip(&top).map(|(f, e)| e.iter().take(10).filter(|h| f.contains(&(h.row as u64))).count() as f64 / 10.0).sum::<f64>() / nq as f64;
        (build, nq as f64 / search, recall, peak_rss_mib())
    });
    if json {
        let h = hnsw.map_or(String::new(), |(b, q, r, m)| {
            format!(", \"hnsw_build_seconds\": {b}, \"hnsw_qps\": {q}, \"hnsw_recall_at_10\": {r}, \"hnsw_peak_rss_mib\": {m}")
        });
        println!(
            "{{\"n\": {n}, \"dim\": {dim}, \"queries\": {nq}, \"k\": {k}, \"threads\": {threads}, \"exact_seconds\": {secs}, \"exact_qps\": {}, \"peak_rss_mib\": {exact_rss}, \"data_mib\": {data_mib}{h}}}",
            nq as f64 / secs,
        );
    } else {
        println!("| search | database | queries x k | threads | seconds (median of 3) | queries/s | peak RSS (MiB) | of which data (MiB) |");
        println!("|---|---|---|---|---|---|---|---|");
        println!("| dolg exact | {n} x {dim} | {nq} x {k} | {threads} | {secs:.3} | {:.1} | {exact_rss:.0} | {data_mib:.0} |", nq as f64 / secs);
        if let Some((b, q, r, m)) = hnsw {
            println!("\nHNSW (usearch, defaults): build {b:.1} s, {q:.0} queries/s (top-10, one at a time), recall@10 {r:.3}, peak RSS {m:.0} MiB");
        }
    }
}
