//! RANSAC (Fischler & Bolles 1981) for a homography or an affine map between matched points.
//!
//! Each iteration fits a minimal sample (4 points: the normalised DLT of Hartley & Zisserman,
//! "Multiple View Geometry", Alg. 4.2; 3 points for an affine map), skipping degenerate samples,
//! and counts the points whose reprojection error is within the threshold. The best model is then
//! refitted by least squares on its inliers (OpenCV's `findHomography` also refits on the RANSAC
//! inliers, then refines by Levenberg–Marquardt and keeps the RANSAC mask); here the inliers are
//! counted again and the refit is kept only if it loses none.
//!
//! Linear algebra is nalgebra's (LU for minimal samples and affine fits, symmetric eigen for the
//! homography refit).

use nalgebra::{Matrix3, SMatrix, Vector3};
use rand::Rng;

use super::GeometricModel;

/// A fitted model and its inliers.
#[derive(Debug, Clone, PartialEq)]
pub struct RansacFit {
    /// Row-major 3×3, mapping source (x, y, 1) to destination up to scale, normalised so that
    /// the bottom-right entry is 1 (affine: the bottom row is 0, 0, 1).
    pub model: [f64; 9],
    /// Per input pair: reprojection error ≤ the threshold.
    pub inliers: Vec<bool>,
}

impl RansacFit {
    /// Number of inliers.
    pub fn inlier_count(&self) -> usize {
        self.inliers.iter().filter(|&&b| b).count()
    }
}

/// Fits `model` to `src[k] → dst[k]` with `iterations` random minimal samples drawn from `rng`.
/// `None` when there are fewer pairs than a minimal sample or no sample gave a model.
pub fn ransac(src: &[[f64; 2]], dst: &[[f64; 2]], model: GeometricModel, threshold_px: f64, iterations: usize, rng: &mut impl Rng) -> Option<RansacFit> {
    assert_eq!(src.len(), dst.len(), "ransac: as many source as destination points");
    let (n, k) = (src.len(), model.sample_size());
    if n < k {
        return None;
    }
    let thr2 = threshold_px * threshold_px;
    let mut best: Option<(Matrix3<f64>, usize)> = None;
    let mut sample = [0usize; 4];
    for _ in 0..iterations {
        draw_distinct(rng, n, &mut sample[..k]);
        let (s, d) = (sample.map(|i| src[i]), sample.map(|i| dst[i]));
        if degenerate(&s[..k], &d[..k]) {
            continue;
        }
        let Some(h) = fit(model, &s[..k], &d[..k]) else { continue };
        let count = (0..n).filter(|&i| residual2(&h, src[i], dst[i]) <= thr2).count();
        if best.is_none_or(|(_, c)| count > c) {
            best = Some((h, count));
            if count == n {
                break;
            }
        }
    }
    let (mut h, count) = best?;
    let mask = |h: &Matrix3<f64>| -> Vec<bool> { (0..n).map(|i| residual2(h, src[i], dst[i]) <= thr2).collect() };
    let mut inliers = mask(&h);
    let (s, d): (Vec<[f64; 2]>, Vec<[f64; 2]>) = (0..n).filter(|&i| inliers[i]).map(|i| (src[i], dst[i])).unzip();
    if let Some(refit) = fit(model, &s, &d) {
        let refit_inliers = mask(&refit);
        if refit_inliers.iter().filter(|&&b| b).count() >= count {
            (h, inliers) = (refit, refit_inliers);
        }
    }
    let mut model = [0.0; 9];
    // nalgebra stores column-major: the transpose's storage is the row-major matrix.
    model.copy_from_slice(h.transpose().as_slice());
    Some(RansacFit { model, inliers })
}

/// `out.len()` distinct indices below `n`, uniformly (rejection; samples are at most 4).
fn draw_distinct(rng: &mut impl Rng, n: usize, out: &mut [usize]) {
    for j in 0..out.len() {
        out[j] = loop {
            let i = rng.random_range(0..n);
            if !out[..j].contains(&i) {
                break i;
            }
        };
    }
}

/// Squared distance between `h(src)` and `dst`; ∞ when `src` maps to infinity.
fn residual2(h: &Matrix3<f64>, src: [f64; 2], dst: [f64; 2]) -> f64 {
    let p = h * Vector3::new(src[0], src[1], 1.0);
    if p.z.abs() < f64::EPSILON {
        return f64::INFINITY;
    }
    (p.x / p.z - dst[0]).powi(2) + (p.y / p.z - dst[1]).powi(2)
}

/// Relative tolerance below which three points count as collinear (|sin| of their angle).
const COLLINEAR_SIN: f64 = 1e-6;

/// Cross product of (b − a) and (c − a).
fn cross(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

/// A minimal sample that cannot determine the model: three collinear (or coincident) points on
/// either side, or, for 4 points, triangles whose orientation flips between source and
/// destination in some but not all triples, which no homography without a point at infinity
/// between them does (OpenCV's `checkSubset`, after Marquez-Neila et al., "Speeding-up homography
/// estimation in mobile devices", JRTIP 2013).
fn degenerate(src: &[[f64; 2]], dst: &[[f64; 2]]) -> bool {
    const TRIPLES: [[usize; 3]; 4] = [[0, 1, 2], [1, 2, 3], [0, 2, 3], [0, 1, 3]];
    let triples = if src.len() == 4 { &TRIPLES[..] } else { &TRIPLES[..1] };
    let collinear = |p: &[[f64; 2]], [a, b, c]: [usize; 3]| {
        let len2 = |u: [f64; 2], v: [f64; 2]| (v[0] - u[0]).powi(2) + (v[1] - u[1]).powi(2);
        cross(p[a], p[b], p[c]).powi(2) <= COLLINEAR_SIN * COLLINEAR_SIN * len2(p[a], p[b]) * len2(p[a], p[c])
    };
    if triples.iter().any(|&t| collinear(src, t) || collinear(dst, t)) {
        return true;
    }
    let flipped = triples.iter().filter(|&&[a, b, c]| cross(src[a], src[b], src[c]) * cross(dst[a], dst[b], dst[c]) < 0.0).count();
    src.len() == 4 && flipped != 0 && flipped != 4
}

/// Similarity that moves the centroid to the origin and the mean distance to it to √2
/// (Hartley normalisation); `None` when all points coincide.
fn normaliser(p: &[[f64; 2]]) -> Option<Matrix3<f64>> {
    let n = p.len() as f64;
    let (cx, cy) = (p.iter().map(|q| q[0]).sum::<f64>() / n, p.iter().map(|q| q[1]).sum::<f64>() / n);
    let mean = p.iter().map(|q| ((q[0] - cx).powi(2) + (q[1] - cy).powi(2)).sqrt()).sum::<f64>() / n;
    if mean.is_nan() || mean <= 0.0 {
        return None;
    }
    let s = std::f64::consts::SQRT_2 / mean;
    Some(Matrix3::new(s, 0.0, -s * cx, 0.0, s, -s * cy, 0.0, 0.0, 1.0))
}

fn apply(t: &Matrix3<f64>, p: [f64; 2]) -> [f64; 2] {
    [t[(0, 0)] * p[0] + t[(0, 2)], t[(1, 1)] * p[1] + t[(1, 2)]]
}

/// Least-squares fit of `model` to all pairs (exact for a minimal sample), in normalised
/// coordinates, mapped back and scaled to a bottom-right entry of 1. `None` if degenerate.
fn fit(model: GeometricModel, src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<Matrix3<f64>> {
    if src.len() < model.sample_size() {
        return None;
    }
    let (ts, td) = (normaliser(src)?, normaliser(dst)?);
    let pairs = src.iter().zip(dst).map(|(&s, &d)| (apply(&ts, s), apply(&td, d)));
    let h = match model {
        // A minimal sample: with h₃₃ = 1 the DLT is an 8×8 linear system, several times faster
        // than the eigen-decomposition below (RANSAC solves it once per iteration). h₃₃ = 0 would
        // send the sample's centroid to infinity, so the vanishing line would cross the sample
        // and flip some triangles but not all: `degenerate` has rejected those samples.
        GeometricModel::Homography if src.len() == 4 => {
            let (mut a, mut b) = (SMatrix::<f64, 8, 8>::zeros(), SMatrix::<f64, 8, 1>::zeros());
            for (k, ([x, y], [u, v])) in pairs.enumerate() {
                a.row_mut(2 * k).copy_from_slice(&[x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y]);
                a.row_mut(2 * k + 1).copy_from_slice(&[0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y]);
                (b[2 * k], b[2 * k + 1]) = (u, v);
            }
            let h = a.lu().solve(&b)?;
            Matrix3::new(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], 1.0)
        }
        GeometricModel::Homography => {
            // DLT: h minimises ‖A h‖ with ‖h‖ = 1, the eigenvector of AᵀA with the smallest
            // eigenvalue (two rows of A per pair, as in OpenCV's homography kernel).
            let mut ata = SMatrix::<f64, 9, 9>::zeros();
            for ([x, y], [u, v]) in pairs {
                for row in [[x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, -u], [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, -v]] {
                    let r = SMatrix::<f64, 9, 1>::from_row_slice(&row);
                    ata += r * r.transpose();
                }
            }
            let eig = ata.symmetric_eigen();
            Matrix3::from_row_slice(eig.eigenvectors.column(eig.eigenvalues.imin()).as_slice())
        }
        GeometricModel::Affine => {
            // Two least-squares problems [x y 1]·(a b c) = u and = v sharing the normal matrix.
            let (mut m, mut bu, mut bv) = (Matrix3::zeros(), Vector3::zeros(), Vector3::zeros());
            for ([x, y], [u, v]) in pairs {
                let r = Vector3::new(x, y, 1.0);
                m += r * r.transpose();
                bu += r * u;
                bv += r * v;
            }
            let lu = m.lu();
            let (a, b) = (lu.solve(&bu)?, lu.solve(&bv)?);
            Matrix3::new(a.x, a.y, a.z, b.x, b.y, b.z, 0.0, 0.0, 1.0)
        }
    };
    let h = td.try_inverse()? * h * ts;
    let scale = h[(2, 2)];
    (scale.abs() > f64::EPSILON && h.iter().all(|v| v.is_finite())).then(|| h / scale)
}
