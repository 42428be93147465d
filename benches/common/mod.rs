//! Helpers shared by the benchmark binaries.
#![allow(dead_code)]

/// Deterministic uniform values in [-0.5, 0.5) (xorshift64).
pub fn xorshift(state: &mut u64) -> f32 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
}

/// `n` random unit vectors of width `dim`, row-major.
pub fn unit_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut v: Vec<f32> = (0..n * dim).map(|_| xorshift(&mut s)).collect();
    v.chunks_mut(dim).for_each(dolg::descriptors::l2_normalize);
    v
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
