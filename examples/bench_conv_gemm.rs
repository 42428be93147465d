//! Throughput of the implicit-GEMM convolution kernel on cache-resident shapes, beside the peak
//! FMA rate of one core (a development aid for the speed work, issue 16).
//! Run: `cargo run --release --example bench_conv_gemm [THREADS]`.

use dolg::kernels::conv_gemm::{conv, Activation, Packed, Residual, Rows};

/// GFLOP/s of 24 independent AVX-512 FMA chains on one core (no memory traffic): the ceiling
/// the kernel's 24-register tile can approach.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_peak() -> f64 {
    use std::arch::x86_64::*;
    let n = 50_000_000usize;
    let (a, b) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(0.999_999));
    let mut acc = [_mm512_setzero_ps(); 24];
    let t = std::time::Instant::now();
    for _ in 0..n {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let dt = t.elapsed().as_secs_f64();
    let sum = acc.iter().fold(_mm512_setzero_ps(), |s, v| _mm512_add_ps(s, *v));
    std::hint::black_box(_mm512_reduce_add_ps(sum));
    (n * 24 * 32) as f64 / dt / 1e9
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present (checked just above).
        println!("peak FMA rate of one core: {:.1} GFLOP/s", unsafe { fma_peak() });
    }
    let threads: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    dolg::runtime::set_threads(Some(threads)).expect("threads");
    println!("{:>28} {:>9} {:>9}", "shape", "ms", "GFLOP/s");
    for &(h, w, cin, cout, k, s) in &[
        (32, 32, 256, 256, 1, 1),
        (32, 32, 1024, 256, 1, 1),
        (32, 32, 128, 128, 3, 1),
        (64, 64, 64, 256, 1, 1),
        (16, 16, 512, 512, 3, 1),
        (128, 128, 3, 64, 7, 2),
    ] {
        let pad = k / 2;
        let (hp, wp) = (h + 2 * pad, w + 2 * pad);
        let x: Vec<f32> = (0..hp * wp * cin).map(|i| (i % 7) as f32 * 0.1).collect();
        let wt: Vec<f32> = (0..k * k * cin * cout).map(|i| (i % 5) as f32 * 0.01).collect();
        let packed = Packed::new(&wt, k * k * cin, cout, &vec![0.0; cout]);
        let (ho, wo) = ((hp - k) / s + 1, (wp - k) / s + 1);
        let rows = Rows { wo, row_step: s * wp * cin, col_step: s * cin };
        let pieces: Vec<(usize, usize)> = (0..k).map(|kh| (kh * wp * cin, k * cin)).collect();
        let mut out = vec![0f32; ho * wo * cout];
        let flop = (ho * wo * k * k * cin * cout * 2) as f64;
        let reps = (2e10 / flop).ceil() as usize;
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..reps {
                conv(&x, rows, &pieces, &packed, ho * wo, &mut out, Rows::dense(ho * wo, cout), Residual::None, Activation::Relu);
            }
            best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        println!("{:>28} {:>9.3} {:>9.1}", format!("{k}x{k}/{s} {cin}->{cout} @{h}x{w}"), best * 1e3, flop / best / 1e9);
    }
}
