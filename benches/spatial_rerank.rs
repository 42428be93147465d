//! Per-query cost of spatial re-ranking: `verify_many` of one query with 1000 local features
//! against K = 100 candidates with 1000 features each, default settings (distance bound 0.99,
//! homography, 20 px, 1000 iterations), at 1 and 2 threads.
//!
//! Every candidate shares half of its features with the query (noisy copies of query descriptors,
//! distance about 0.5, so about 500 putative matches each, like the ~850 of the DELG fixture's
//! pair); every 10th places them by a homography (a true match), the others at random (RANSAC
//! then runs all its iterations without finding a consensus). Run:
//! `cargo bench --bench spatial_rerank [-- DIM ...]`; best of 3 runs, wall and process CPU time (default dims 64 (XFeat), 128 (DELG), 512
//! (the DOLG authors' DELG)).

mod common;

use std::time::Instant;

use common::{unit_rows, xorshift};
use dolg::model::LocalFeatures;
use dolg::spatial::{verify_many, SpatialParams};

const FEATURES: usize = 1000;
const K: usize = 100;

fn features(dim: usize, descriptors: Vec<f32>, locations: Vec<[f32; 2]>) -> LocalFeatures {
    let n = locations.len();
    LocalFeatures { dim, locations, descriptors, scores: vec![1.0; n], scales: vec![1.0; n] }
}

fn setup(dim: usize) -> (LocalFeatures, Vec<LocalFeatures>) {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let loc = |s: &mut u64| [(xorshift(s) + 0.5) * 480.0, (xorshift(s) + 0.5) * 640.0];
    let q = unit_rows(FEATURES, dim, 1);
    let qloc: Vec<[f32; 2]> = (0..FEATURES).map(|_| loc(&mut s)).collect();
    // Uniform noise of norm ≈ 0.5 before re-normalisation.
    let amp = 2.0 * 0.5 * (3.0 / dim as f32).sqrt();
    let candidates = (0..K)
        .map(|c| {
            let mut desc = unit_rows(FEATURES, dim, 100 + c as u64);
            let mut locs: Vec<[f32; 2]> = (0..FEATURES).map(|_| loc(&mut s)).collect();
            let (angle, scale) = (0.3 * xorshift(&mut s), 1.0 + 0.4 * xorshift(&mut s));
            for k in 0..FEATURES / 2 {
                let row = &mut desc[k * dim..(k + 1) * dim];
                row.iter_mut().zip(&q[k * dim..]).for_each(|(d, x)| *d = x + amp * xorshift(&mut s));
                dolg::descriptors::l2_normalize(row);
                if c % 10 == 0 {
                    let [y, x] = qloc[k];
                    let w = 1.0 + 1e-4 * (x - 320.0);
                    let (ca, sa) = (scale * angle.cos(), scale * angle.sin());
                    locs[k] = [(ca * y - sa * x + 30.0) / w, (sa * y + ca * x - 20.0) / w];
                }
            }
            features(dim, desc, locs)
        })
        .collect();
    (features(dim, q, qloc), candidates)
}

/// CPU time of the whole process (all threads), in ms: the wall time of a busy shared machine
/// overstates the work.
fn cpu_ms() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `t`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

fn main() {
    let dims: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let dims = if dims.is_empty() { vec![64, 128, 512] } else { dims };
    let params = SpatialParams::default();
    println!("| dim | features | K | matches / candidate | inliers true / false (median) | threads | ms per query | CPU ms per query |");
    println!("|---|---|---|---|---|---|---|---|");
    for dim in dims {
        let (query, candidates) = setup(dim);
        let refs: Vec<&LocalFeatures> = candidates.iter().collect();
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
            let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
            let mut out = Vec::new();
            for _ in 0..3 {
                let (t, c) = (Instant::now(), cpu_ms());
                out = pool.install(|| verify_many(&query, &refs, &params)).expect("verification");
                (wall, cpu) = (wall.min(t.elapsed().as_secs_f64() * 1e3), cpu.min(cpu_ms() - c));
            }
            let matches = out.iter().map(|v| v.matches).sum::<usize>() / K;
            let median = |keep: bool| {
                let mut v: Vec<usize> = out.iter().enumerate().filter(|(i, _)| (i % 10 == 0) == keep).map(|(_, v)| v.inliers).collect();
                v.sort_unstable();
                v[v.len() / 2]
            };
            println!("| {dim} | {FEATURES} | {K} | {matches} | {} / {} | {threads} | {wall:.0} | {cpu:.0} |", median(true), median(false));
        }
    }
}
