//! Training-time augmentation as in the authors' pycls-based recipe (spec §4):
//! random-resized-crop (area 0.08–1, aspect 3/4–4/3) to the training size, horizontal flip,
//! `/255`, PCA lighting noise (AlexNet eigen-basis, std 0.1), then mean/std normalisation.
//! Everything draws from the caller's RNG, so a sample's augmentation is a function of the seed.

use rand::Rng;

use crate::decode::BgrImage;
use crate::preprocess::{resize_linear, ChannelOrder, FloatImage, Normalization};

/// Training augmentation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentConfig {
    /// Side of the square output, in pixels.
    pub size: usize,
    /// Smallest crop area, as a fraction of the image area.
    pub min_area: f64,
    /// Largest crop aspect ratio (and its inverse the smallest), e.g. 4/3.
    pub max_aspect: f64,
    /// Random horizontal flip with probability ½.
    pub flip: bool,
    /// Standard deviation of the PCA lighting coefficients (0 disables).
    pub lighting: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self { size: 224, min_area: 0.08, max_aspect: 4.0 / 3.0, flip: true, lighting: 0.1 }
    }
}

/// ImageNet RGB PCA (eigenvalues and eigenvectors as columns), as in pycls `transforms.lighting`.
const EIG_VALS: [f64; 3] = [0.2175, 0.0188, 0.0045];
const EIG_VECS: [[f64; 3]; 3] = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]];

/// Crop window `(x, y, w, h)` chosen as torchvision's `RandomResizedCrop.get_params`: ten tries at
/// a random area fraction and log-uniform aspect ratio, then the centre crop at the clamped ratio.
pub(crate) fn random_resized_crop_box(width: usize, height: usize, cfg: &AugmentConfig, rng: &mut impl Rng) -> (usize, usize, usize, usize) {
    let area = (width * height) as f64;
    let (lo, hi) = ((1.0 / cfg.max_aspect).ln(), cfg.max_aspect.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(cfg.min_area..=1.0);
        let aspect = rng.random_range(lo..=hi).exp();
        let w = (target * aspect).sqrt().round() as usize;
        let h = (target / aspect).sqrt().round() as usize;
        if w > 0 && h > 0 && w <= width && h <= height {
            let x = rng.random_range(0..=width - w);
            let y = rng.random_range(0..=height - h);
            return (x, y, w, h);
        }
    }
    let ratio = width as f64 / height as f64;
    let (w, h) = if ratio < 1.0 / cfg.max_aspect {
        (width, ((width as f64) * cfg.max_aspect).round() as usize)
    } else if ratio > cfg.max_aspect {
        (((height as f64) * cfg.max_aspect).round() as usize, height)
    } else {
        (width, height)
    };
    let (w, h) = (w.clamp(1, width), h.clamp(1, height));
    ((width - w) / 2, (height - h) / 2, w, h)
}

/// One training input, CHW float32 in the network's channel order, `size`×`size`.
pub fn augment(img: &BgrImage, norm: &Normalization, cfg: &AugmentConfig, rng: &mut impl Rng) -> Vec<f32> {
    let (x0, y0, w, h) = random_resized_crop_box(img.width, img.height, cfg, rng);
    let mut crop = FloatImage { width: w, height: h, data: Vec::with_capacity(w * h * 3) };
    for y in y0..y0 + h {
        let row = &img.data[(y * img.width + x0) * 3..(y * img.width + x0 + w) * 3];
        crop.data.extend(row.iter().map(|&v| f32::from(v)));
    }
    let resized = resize_linear(&crop, cfg.size, cfg.size);
    let flip = cfg.flip && rng.random_bool(0.5);
    let mut shift_rgb = [0f64; 3];
    if cfg.lighting > 0.0 {
        let alpha: [f64; 3] = std::array::from_fn(|_| cfg.lighting * f64::from(super::rng::normal(rng)));
        for (r, row) in EIG_VECS.iter().enumerate() {
            shift_rgb[r] = (0..3).map(|c| row[c] * alpha[c] * EIG_VALS[c]).sum();
        }
    }
    let s = cfg.size;
    let n = s * s;
    let mut out = vec![0f32; 3 * n];
    for c in 0..3 {
        // Network channel c: its BGR storage index and its RGB index.
        let (src, rgb) = match norm.order {
            ChannelOrder::Bgr => (c, 2 - c),
            ChannelOrder::Rgb => (2 - c, c),
        };
        let (m, sd, light) = (norm.mean[c], norm.std[c], shift_rgb[rgb] as f32);
        for y in 0..s {
            for x in 0..s {
                let sx = if flip { s - 1 - x } else { x };
                let v = resized.data[(y * s + sx) * 3 + src] / 255.0 + light;
                out[c * n + y * s + x] = (v - m) / sd;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn crop_boxes_respect_area_and_aspect() {
        let cfg = AugmentConfig::default();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (w, h) in [(640, 480), (300, 900), (50, 50), (4000, 30)] {
            for _ in 0..500 {
                let (x, y, cw, ch) = random_resized_crop_box(w, h, &cfg, &mut rng);
                assert!(x + cw <= w && y + ch <= h && cw > 0 && ch > 0);
                let frac = (cw * ch) as f64 / (w * h) as f64;
                let aspect = cw as f64 / ch as f64;
                // Rounding to whole pixels loosens the bounds slightly on small images.
                let fallback = frac >= 0.999 || (cw == w || ch == h);
                assert!(fallback || (frac >= 0.08 * 0.9 && (0.75 * 0.9..=4.0 / 3.0 * 1.1).contains(&aspect)), "{w}x{h}: {cw}x{ch}");
            }
        }
    }

    #[test]
    fn augmentation_is_a_function_of_the_seed() {
        let img = BgrImage { width: 37, height: 23, data: (0..37 * 23 * 3).map(|i| (i * 7 % 256) as u8).collect() };
        let cfg = AugmentConfig { size: 16, ..Default::default() };
        let a = augment(&img, &Normalization::DOLG, &cfg, &mut ChaCha8Rng::seed_from_u64(1));
        let b = augment(&img, &Normalization::DOLG, &cfg, &mut ChaCha8Rng::seed_from_u64(1));
        let c = augment(&img, &Normalization::DOLG, &cfg, &mut ChaCha8Rng::seed_from_u64(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 3 * 16 * 16);
    }

    #[test]
    fn identity_settings_reproduce_plain_normalisation() {
        // Full-area crop at the native size, no flip, no lighting: exactly /255 and mean/std.
        let img = BgrImage { width: 8, height: 8, data: (0..8 * 8 * 3).map(|i| (i * 5 % 256) as u8).collect() };
        let cfg = AugmentConfig { size: 8, min_area: 1.0, max_aspect: 1.0, flip: false, lighting: 0.0 };
        let out = augment(&img, &Normalization::DOLG, &cfg, &mut ChaCha8Rng::seed_from_u64(3));
        let want = crate::preprocess::normalize_chw(&FloatImage::from(&img), &Normalization::DOLG);
        assert_eq!(out, want);
    }

    #[test]
    fn lighting_shift_is_the_pca_combination() {
        // A constant grey image: every output pixel of channel c moves by the same PCA offset,
        // and with std 0 nothing moves.
        let img = BgrImage { width: 4, height: 4, data: vec![128; 48] };
        let base = AugmentConfig { size: 4, min_area: 1.0, max_aspect: 1.0, flip: false, lighting: 0.0 };
        let lit = AugmentConfig { lighting: 0.1, ..base };
        let n = Normalization::DOLG;
        let a = augment(&img, &n, &base, &mut ChaCha8Rng::seed_from_u64(5));
        let b = augment(&img, &n, &lit, &mut ChaCha8Rng::seed_from_u64(5));
        for c in 0..3 {
            let d: Vec<f32> = (0..16).map(|i| (b[c * 16 + i] - a[c * 16 + i]) * n.std[c]).collect();
            assert!(d.iter().all(|v| (v - d[0]).abs() < 1e-6), "channel {c} shift not uniform");
            assert!(d[0].abs() < 0.2, "implausible lighting shift {}", d[0]);
        }
        assert_ne!(a, b);
    }
}
