//! Shared test helpers: locating `../shared` and reading `.npy` fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `../shared` beside the checkout, for tests that read its fixtures and data. Every such test is
/// marked `#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]`: build.rs
/// sets `dolg_shared` when the directory exists or when `CI=true`, so on a fresh clone without it
/// those tests are reported as ignored (never as passed), and under CI they run and fail here.
///
/// Panics, naming the path, if the directory is missing: the test was compiled to run, so it must
/// not pass without checking anything.
pub fn shared_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if !dir.is_dir() {
        let why = if std::env::var("CI").is_ok_and(|v| v == "true") {
            "CI=true, where fixture tests must run"
        } else {
            "it was there when the tests were built; `touch build.rs` to have cargo report these tests as ignored"
        };
        panic!("../shared (test fixtures and data) is missing at {}: {why}", dir.display());
    }
    dir
}

/// Read any float32 `.npy` as (shape, data).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&s| s as usize).collect();
    (shape, npy.into_vec::<f32>().unwrap())
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max)
}

/// max |a − b| / max |b|: the fixture's relative error for intermediates.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().map(|x| f64::from(x.abs())).fold(0.0, f64::max);
    max_abs_diff(a, b) / scale
}

/// The name libtest gives the test `name` of the module whose `module_path!()` is `module`, for
/// re-running this test binary as a child with `--exact`: `integration::dedup` + `f` is
/// `dedup::f` (libtest leaves out the crate's own name).
pub fn this_test(module: &str, name: &str) -> String {
    let module = module.split_once("::").map_or("", |(_, rest)| rest);
    if module.is_empty() {
        name.to_string()
    } else {
        format!("{module}::{name}")
    }
}
