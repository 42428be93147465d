//! Shared test helpers: locating `../shared` and reading `.npy` fixtures.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `../shared` beside the checkout. On a fresh clone without it the caller skips (with a
/// message); under CI (`CI=true`) a missing directory is a failure, never a skip.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("../shared is missing at {} and CI=true: fixture tests must run in CI", dir.display());
    }
    eprintln!("SKIP: ../shared not found beside the checkout ({}); fixture tests skipped", dir.display());
    None
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
