//! Streaming evaluation at +1M scale: 70 queries ranked against 1,000,000 random 512-d unit
//! vectors, exact positions of 300 relevant items per query (the shape of ROxford+1M).
//! Prints seconds and peak resident memory. Run: `cargo bench --bench rank_1m [-- N_DB]`.

mod common;

use std::time::Instant;

use common::{peak_rss_mib, unit_rows};

use dolg::eval::{stream_positions, Database, DEFAULT_BLOCK_ROWS};

fn main() {
    let n_db: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let (dim, n_q, n_rel) = (512, 70, 300);
    let db = unit_rows(n_db, dim, 1);
    let queries = unit_rows(n_q, dim, 2);
    let relevant: Vec<Vec<usize>> = (0..n_q).map(|q| (0..n_rel).map(|k| (q * 7919 + k * 104_729) % n_db).collect()).collect();
    let data_mib = peak_rss_mib();
    let database = Database::single(dim, &db).expect("valid database");
    let t = Instant::now();
    let positions = stream_positions(&database, &queries, &relevant, DEFAULT_BLOCK_ROWS).expect("ranking");
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(positions.positions_of(0));
    println!("| database | queries | threads | seconds | GFLOP/s | peak RSS (MiB) | of which data (MiB) |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {n_db} x {dim} | {n_q} | {} | {secs:.2} | {:.1} | {:.0} | {:.0} |",
        rayon::current_num_threads(),
        2.0 * (n_db * dim * n_q) as f64 / secs / 1e9,
        peak_rss_mib(),
        data_mib
    );
}
