//! Preprocessing exactly as the authors' evaluation (`evaler/process.py`): optional query crop with
//! `int()` truncation, float32 conversion *before* resizing, OpenCV `INTER_LINEAR` bilinear resize
//! per scale, `/255`, then per-channel mean/std in the model's channel order.
//!
//! The resize is written here rather than taken from a crate: the image-resizing crates
//! (`fast_image_resize`, `image::imageops`) antialias when shrinking and use different pixel-centre
//! and border rules, and the fixture shows that such a resize moves the descriptor by ~7e-3. We need
//! OpenCV's exact float32 path: half-pixel centres, two taps per axis, borders clamped.
//!
//! # Image size policy (before the pyramid)
//!
//! The authors evaluate on Revisited Oxford/Paris, whose images are at most 1024 px a side; a phone
//! photo is 4000–8000 px. [`limit_size`] brings an image (decoded, oriented, cropped: crop boxes are
//! in the original pixel coordinates) whose longest side exceeds `max_size` down to that side, the
//! other side `round(side × max_size / longest)` half to even, at least 1 px; an image at or under
//! the limit is left untouched, so everything within 1024 px gives the descriptors it always did.
//! The multi-scale pyramid then runs on the result as above.
//!
//! This step resizes the way the field does it: DELG (and the revisitop tooling) scale images to a
//! maximum size with PIL's `Image.resize(size, BILINEAR)`, which, unlike OpenCV's `INTER_LINEAR`,
//! is anti-aliased when shrinking: a triangle filter whose support is widened by the reduction
//! ratio (every source pixel contributes), so a 6× reduction does not alias. [`resize_pil_bilinear`]
//! is Pillow's algorithm (`libImaging/Resample.c`) re-done step for step, 8-bit in and out:
//! coefficients in f64, normalised per output pixel, rounded to 22-bit fixed point; a horizontal
//! pass over the rows the vertical pass needs, stored as rounded, clamped 8-bit, then the vertical
//! pass. `scripts/check_decode_cv2.py` checks it against Pillow (identical bytes). `image`'s
//! `imageops::resize(Triangle)` computes the same weights but in f32 with a float intermediate and
//! the vertical pass first, and so lands a level off here and there.

use crate::decode::BgrImage;

/// The authors' five evaluation scales.
// Their literal values (0.7071, 1.4142), not approximations of 1/sqrt(2) and sqrt(2) to be
// replaced: the per-scale sizes round(h * s) must match theirs.
#[allow(clippy::approx_constant)]
pub const DEFAULT_SCALES: [f64; 5] = [0.3535, 0.5, 0.7071, 1.0, 1.4142];
/// Mean and std of the DOLG/pycls weights, **in BGR order**.
pub const DOLG_MEAN_BGR: [f32; 3] = [0.406, 0.456, 0.485];
/// Standard deviation of the DOLG/pycls weights, **in BGR order** (on the /255 scale, like the mean).
pub const DOLG_STD_BGR: [f32; 3] = [0.225, 0.224, 0.229];

/// Why an image could not be cropped or resized for the network.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PreprocessError {
    /// A crop box that leaves no pixels inside the image.
    #[error("crop box {x1},{y1},{x2},{y2} leaves no pixels inside the {width}x{height} image")]
    EmptyCrop {
        /// Left edge after `int()` truncation.
        x1: i64,
        /// Top edge after truncation.
        y1: i64,
        /// Right edge (exclusive) after truncation.
        x2: i64,
        /// Bottom edge (exclusive) after truncation.
        y2: i64,
        /// Width of the image, in pixels.
        width: usize,
        /// Height of the image, in pixels.
        height: usize,
    },
    /// A scale that rounds a side of the image to zero pixels.
    #[error("image of {width}x{height} is too small for scale {scale}: it would be resized to {out_w}x{out_h}")]
    TooSmall {
        /// Width of the image, in pixels.
        width: usize,
        /// Height of the image, in pixels.
        height: usize,
        /// The scale asked for.
        scale: f64,
        /// Resized width, in pixels.
        out_w: usize,
        /// Resized height, in pixels.
        out_h: usize,
    },
    /// A scale that is not finite and positive.
    #[error("invalid scale {0}: scales must be finite and positive")]
    BadScale(f64),
    /// A scale that would resize the image past the pixel limit.
    #[error("scale {scale} would resize a {width}x{height} image to {out_w}x{out_h}, over the {max} pixel limit")]
    TooLarge {
        /// Width of the image, in pixels.
        width: usize,
        /// Height of the image, in pixels.
        height: usize,
        /// The scale asked for.
        scale: f64,
        /// Resized width, in pixels.
        out_w: usize,
        /// Resized height, in pixels.
        out_h: usize,
        /// The largest resized image accepted, in pixels (width × height).
        max: usize,
    },
}

/// Channel order the network expects. DOLG's released weights take BGR; torchvision-style ImageNet
/// backbones take RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    /// Blue, green, red (OpenCV's order; DOLG's released weights).
    Bgr,
    /// Red, green, blue (torchvision-style ImageNet backbones).
    Rgb,
}

/// Normalisation constants, given in the order of `order`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// The channel order of the network input, and of `mean` and `std`.
    pub order: ChannelOrder,
    /// Per-channel mean, on the /255 scale.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, on the /255 scale.
    pub std: [f32; 3],
}

impl Normalization {
    /// The DOLG/pycls constants: BGR, [`DOLG_MEAN_BGR`], [`DOLG_STD_BGR`].
    pub const DOLG: Self = Self { order: ChannelOrder::Bgr, mean: DOLG_MEAN_BGR, std: DOLG_STD_BGR };
}

/// A float32 image, interleaved `[h][w][3]` in BGR order, values on the 0..255 scale.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatImage {
    /// Width, in pixels.
    pub width: usize,
    /// Height, in pixels.
    pub height: usize,
    /// `height * width * 3` values, row-major, BGR interleaved.
    pub data: Vec<f32>,
}

impl From<&BgrImage> for FloatImage {
    fn from(img: &BgrImage) -> Self {
        Self { width: img.width, height: img.height, data: img.data.iter().map(|&v| f32::from(v)).collect() }
    }
}

/// A query box `[x1, y1, x2, y2]` in pixels (floats, as in the Oxford/Paris ground truth).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox(pub [f64; 4]);

impl std::str::FromStr for CropBox {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v: Vec<f64> = s.split(',').map(|p| p.trim().parse::<f64>().map_err(|_| format!("'{p}' is not a number"))).collect::<Result<_, _>>()?;
        match v.as_slice() {
            [x1, y1, x2, y2] if v.iter().all(|x| x.is_finite()) => Ok(Self([*x1, *y1, *x2, *y2])),
            _ => Err(format!("expected x1,y1,x2,y2 (four finite numbers), got '{s}'")),
        }
    }
}

/// Crop with Python semantics: `im[int(y1):int(y2), int(x1):int(x2)]` (truncation toward zero,
/// end-exclusive, negative indices count from the end, out-of-range ends clamp).
pub fn crop(img: &BgrImage, bx: CropBox) -> Result<BgrImage, PreprocessError> {
    let [x1, y1, x2, y2] = bx.0.map(|v| v.trunc() as i64);
    let (c0, c1) = (py_index(x1, img.width), py_index(x2, img.width));
    let (r0, r1) = (py_index(y1, img.height), py_index(y2, img.height));
    if c1 <= c0 || r1 <= r0 {
        return Err(PreprocessError::EmptyCrop { x1, y1, x2, y2, width: img.width, height: img.height });
    }
    let (w, h) = (c1 - c0, r1 - r0);
    let mut data = Vec::with_capacity(w * h * 3);
    for r in r0..r1 {
        let row = &img.data[(r * img.width + c0) * 3..(r * img.width + c1) * 3];
        data.extend_from_slice(row);
    }
    Ok(BgrImage { width: w, height: h, data })
}

fn py_index(i: i64, len: usize) -> usize {
    let len = len as i64;
    let i = if i < 0 { i + len } else { i };
    i.clamp(0, len) as usize
}

/// Output size at scale `s`: Python's `int(round(h * s))`, which rounds half to even on the f64
/// product (433 × 0.5 = 216.5 → 216).
pub(crate) fn scaled_size(height: usize, width: usize, s: f64) -> (usize, usize) {
    let r = |v: usize| (v as f64 * s).round_ties_even().max(0.0) as usize;
    (r(height), r(width))
}

/// Source position of each output pixel in OpenCV's float `INTER_LINEAR`: the step comes from the
/// inverse ratio in f64 and the position is rounded to f32, then split into floor and fraction.
fn linear_positions(in_len: usize, out_len: usize) -> impl Iterator<Item = (i64, f32)> {
    let scale = 1.0 / (out_len as f64 / in_len as f64);
    (0..out_len).map(move |d| {
        let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let s = f.floor();
        (s as i64, f - s)
    })
}

/// Horizontal taps: OpenCV resets the weight to (1, 0) at both borders.
fn x_taps(in_len: usize, out_len: usize) -> Vec<(usize, usize, f32, f32)> {
    let last = in_len as i64 - 1;
    linear_positions(in_len, out_len)
        .map(|(s, frac)| {
            let (s, frac) = if s < 0 {
                (0, 0.0)
            } else if s >= last {
                (last, 0.0)
            } else {
                (s, frac)
            };
            (s as usize, (s + 1).min(last) as usize, 1.0 - frac, frac)
        })
        .collect()
}

/// Vertical taps: OpenCV clamps the two source rows but keeps the weights as computed.
fn y_taps(in_len: usize, out_len: usize) -> Vec<(usize, usize, f32, f32)> {
    let last = in_len as i64 - 1;
    linear_positions(in_len, out_len).map(|(s, frac)| (s.clamp(0, last) as usize, (s + 1).clamp(0, last) as usize, 1.0 - frac, frac)).collect()
}

/// Bilinear resize with OpenCV `INTER_LINEAR` semantics on a float32 3-channel image: horizontal
/// pass then vertical pass, no antialiasing. Resizing to the same size returns the input unchanged.
pub(crate) fn resize_linear(src: &FloatImage, out_h: usize, out_w: usize) -> FloatImage {
    assert!(out_h > 0 && out_w > 0, "resize to an empty size");
    if out_h == src.height && out_w == src.width {
        return src.clone();
    }
    let xt = x_taps(src.width, out_w);
    let hrow = |r: usize, buf: &mut [f32]| {
        let row = &src.data[r * src.width * 3..(r + 1) * src.width * 3];
        for (dx, &(s0, s1, a0, a1)) in xt.iter().enumerate() {
            for c in 0..3 {
                buf[dx * 3 + c] = row[s0 * 3 + c] * a0 + row[s1 * 3 + c] * a1;
            }
        }
    };
    // Each source row is filtered horizontally once, however many output rows read it.
    let mut rows: Vec<Option<Vec<f32>>> = vec![None; src.height];
    let mut freed = 0;
    let mut out = vec![0f32; out_h * out_w * 3];
    for (dy, (r0, r1, b0, b1)) in y_taps(src.height, out_h).into_iter().enumerate() {
        for r in [r0, r1] {
            if rows[r].is_none() {
                let mut buf = vec![0f32; out_w * 3];
                hrow(r, &mut buf);
                rows[r] = Some(buf);
            }
        }
        // Rows above r0 are never read again: free them to keep memory at about two rows.
        while freed < r0 {
            rows[freed] = None;
            freed += 1;
        }
        let (h0, h1) = (rows[r0].as_ref().unwrap(), rows[r1].as_ref().unwrap());
        let dst = &mut out[dy * out_w * 3..(dy + 1) * out_w * 3];
        for i in 0..out_w * 3 {
            dst[i] = h0[i] * b0 + h1[i] * b1;
        }
    }
    FloatImage { width: out_w, height: out_h, data: out }
}

/// HWC BGR (0..255) → CHW in the network's channel order, `/255` then `(x - mean) / std`, all f32
/// in the same order of operations as the reference.
pub(crate) fn normalize_chw(img: &FloatImage, norm: &Normalization) -> Vec<f32> {
    let n = img.width * img.height;
    let mut out = vec![0f32; 3 * n];
    for c in 0..3 {
        // Source channel in BGR storage for output channel c.
        let src_c = match norm.order {
            ChannelOrder::Bgr => c,
            ChannelOrder::Rgb => 2 - c,
        };
        let (m, s) = (norm.mean[c], norm.std[c]);
        let plane = &mut out[c * n..(c + 1) * n];
        for (i, v) in plane.iter_mut().enumerate() {
            *v = (img.data[i * 3 + src_c] / 255.0 - m) / s;
        }
    }
    out
}

/// The product's image size policy: the longest side an image is brought down to before the
/// pyramid (see the module doc). `Extractor::max_size` defaults to it.
pub const DEFAULT_MAX_SIZE: u32 = 1024;

/// Size `(height, width)` that [`limit_size`] gives an image of `height` x `width`: the same size
/// when its longest side is at most `max_size` (or `max_size` is 0, no limit); otherwise the
/// longest side becomes `max_size` and the other `round(other × max_size / longest)`, half to even
/// (exact: the division is done once on integers small enough for f64), at least 1.
pub fn limited_size(height: usize, width: usize, max_size: u32) -> (usize, usize) {
    if max_size == 0 || height.max(width) <= max_size as usize {
        return (height, width);
    }
    exact_size(height, width, max_size)
}

/// Size `(height, width)` with the longest side exactly `size`, up or down, the other side
/// rounded as in [`limited_size`]; the same size when `size` or a side is 0.
pub(crate) fn exact_size(height: usize, width: usize, size: u32) -> (usize, usize) {
    let (longest, size) = (height.max(width), size as usize);
    if size == 0 || longest == 0 {
        return (height, width);
    }
    let other = |side: usize| ((side as f64 * size as f64) / longest as f64).round_ties_even().max(1.0) as usize;
    if height >= width {
        (size, other(width))
    } else {
        (other(height), size)
    }
}

/// The image size policy: `img` itself when its longest side is within `max_size` (`None` or 0:
/// no limit), else downscaled by [`resize_pil_bilinear`] to [`limited_size`].
pub fn limit_size(img: BgrImage, max_size: Option<u32>) -> BgrImage {
    let (h, w) = limited_size(img.height, img.width, max_size.unwrap_or(0));
    if (h, w) == (img.height, img.width) {
        img
    } else {
        resize_pil_bilinear(&img, h, w)
    }
}

/// Fixed-point precision of Pillow's 8-bit resampling (`PRECISION_BITS`).
const PIL_PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's per-output-pixel taps along one axis (`precompute_coeffs` + `normalize_coeffs_8bpc`,
/// BILINEAR filter of support 1): for each output pixel the first source pixel and its weights.
fn pil_bilinear_taps(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    // Pillow takes the box as floats: (in1 - in0) is a float, then divided in double.
    let scale = f64::from(in_size as f32) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // BILINEAR's support is 1.0
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero, as `as i64` does.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
            let w: Vec<f64> = (0..xmax)
                .map(|x| {
                    let t = (((x + xmin) as f64 - center + 0.5) * ss).abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let ww: f64 = w.iter().sum();
            let one = f64::from(1u32 << PIL_PRECISION_BITS);
            let k = w
                .iter()
                .map(|&v| {
                    let v = if ww != 0.0 { v / ww } else { v };
                    if v < 0.0 {
                        (-0.5 + v * one) as i32
                    } else {
                        (0.5 + v * one) as i32
                    }
                })
                .collect();
            (xmin as usize, k)
        })
        .collect()
}

/// Pillow's `clip8`: a fixed-point sum back to a byte.
fn pil_clip8(v: i32) -> u8 {
    if v >= 1 << (PIL_PRECISION_BITS + 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PIL_PRECISION_BITS) as u8
    }
}

/// PIL's `Image.resize((out_w, out_h), Image.BILINEAR)` on an 8-bit 3-channel image, byte for
/// byte (module doc): anti-aliased when shrinking. Channels are filtered independently, so the
/// order (BGR here) does not matter. Resizing to the same size returns a copy.
pub fn resize_pil_bilinear(src: &BgrImage, out_h: usize, out_w: usize) -> BgrImage {
    assert!(out_h > 0 && out_w > 0, "resize to an empty size");
    assert_eq!(src.data.len(), src.width * src.height * 3, "BGR buffer does not match {}x{}", src.width, src.height);
    const HALF: i32 = 1 << (PIL_PRECISION_BITS - 1);
    // Horizontal pass, only over the source rows the vertical pass reads (Pillow's ybox).
    let vt = if out_h != src.height { Some(pil_bilinear_taps(src.height, out_h)) } else { None };
    let (first, last) = match &vt {
        Some(t) => (t[0].0, t.last().map(|(s, k)| s + k.len()).unwrap_or(src.height)),
        None => (0, src.height),
    };
    let tmp: std::borrow::Cow<'_, [u8]> = if out_w != src.width {
        let ht = pil_bilinear_taps(src.width, out_w);
        let mut tmp = vec![0u8; (last - first) * out_w * 3];
        for (r, dst) in (first..last).zip(tmp.chunks_exact_mut(out_w * 3)) {
            let row = &src.data[r * src.width * 3..(r + 1) * src.width * 3];
            for ((x0, k), px) in ht.iter().zip(dst.chunks_exact_mut(3)) {
                let mut acc = [HALF; 3];
                for (&w, p) in k.iter().zip(row[x0 * 3..].chunks_exact(3)) {
                    for c in 0..3 {
                        acc[c] += i32::from(p[c]) * w;
                    }
                }
                for c in 0..3 {
                    px[c] = pil_clip8(acc[c]);
                }
            }
        }
        tmp.into()
    } else {
        src.data[first * src.width * 3..last * src.width * 3].into()
    };
    let Some(vt) = vt else {
        return BgrImage { width: out_w, height: out_h, data: tmp.into_owned() };
    };
    // Vertical pass over the horizontal result (its row 0 is source row `first`).
    let stride = out_w * 3;
    let mut data = vec![0u8; out_h * stride];
    let mut acc = vec![0i32; stride];
    for ((y0, k), dst) in vt.iter().zip(data.chunks_exact_mut(stride)) {
        acc.fill(HALF);
        for (j, &w) in k.iter().enumerate() {
            let row = &tmp[(y0 - first + j) * stride..(y0 - first + j + 1) * stride];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += i32::from(v) * w;
            }
        }
        for (out, &a) in dst.iter_mut().zip(&acc) {
            *out = pil_clip8(a);
        }
    }
    BgrImage { width: out_w, height: out_h, data }
}

/// Largest resized image accepted (pixels): far above any real use, low enough that a typo such
/// as `--scales 1e6` is an error for that image rather than an allocation failure.
pub(crate) const MAX_RESIZED_PIXELS: usize = 200_000_000;

/// The network input for one scale: `[3, h, w]` data plus its size.
#[derive(Debug, Clone)]
pub struct ScaledInput {
    /// The scale factor applied to the image.
    pub scale: f64,
    /// Resized height, in pixels.
    pub height: usize,
    /// Resized width, in pixels.
    pub width: usize,
    /// Normalised pixels, `[3, height, width]` row-major in the network's channel order.
    pub chw: Vec<f32>,
}

/// Resize and normalise `img` for every scale, in order. Fails (rather than producing an empty
/// tensor) when a scale rounds a side to zero pixels.
pub fn multiscale_inputs(img: &FloatImage, scales: &[f64], norm: &Normalization) -> Result<Vec<ScaledInput>, PreprocessError> {
    scales
        .iter()
        .map(|&s| {
            if !(s.is_finite() && s > 0.0) {
                return Err(PreprocessError::BadScale(s));
            }
            let (h, w) = scaled_size(img.height, img.width, s);
            if h == 0 || w == 0 {
                return Err(PreprocessError::TooSmall { width: img.width, height: img.height, scale: s, out_w: w, out_h: h });
            }
            if h.saturating_mul(w) > MAX_RESIZED_PIXELS {
                return Err(PreprocessError::TooLarge { width: img.width, height: img.height, scale: s, out_w: w, out_h: h, max: MAX_RESIZED_PIXELS });
            }
            let resized = resize_linear(img, h, w);
            Ok(ScaledInput { scale: s, height: h, width: w, chw: normalize_chw(&resized, norm) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> FloatImage {
        let data = (0..w * h * 3).map(|i| ((i * 37) % 251) as f32).collect();
        FloatImage { width: w, height: h, data }
    }

    #[test]
    fn resize_to_own_size_is_identity() {
        let img = ramp(17, 9);
        assert_eq!(resize_linear(&img, 9, 17), img);
    }

    #[test]
    fn sizes_round_half_to_even() {
        assert_eq!(scaled_size(433, 640, 0.5), (216, 320));
        assert_eq!(scaled_size(337, 425, 0.5), (168, 212));
        assert_eq!(scaled_size(1, 1, 0.3535), (0, 0));
    }

    #[test]
    fn upscale_by_two_matches_hand_computed_taps() {
        // 1-D: in = [0, 10] (width 2) to width 4: positions (d+0.5)/2-0.5 = -0.25, 0.25, 0.75, 1.25
        // → clamp to 0; 0.25; 0.75; clamp to last → 0, 2.5, 7.5, 10.
        let img = FloatImage { width: 2, height: 1, data: vec![0., 0., 0., 10., 10., 10.] };
        let out = resize_linear(&img, 1, 4);
        let ch0: Vec<f32> = out.data.chunks(3).map(|p| p[0]).collect();
        assert_eq!(ch0, vec![0.0, 2.5, 7.5, 10.0]);
    }

    #[test]
    fn downscale_by_two_averages_pairs_without_antialiasing() {
        let img = FloatImage { width: 4, height: 1, data: [0., 4., 8., 100.].iter().flat_map(|&v| [v, v, v]).collect() };
        let out = resize_linear(&img, 1, 2);
        let ch0: Vec<f32> = out.data.chunks(3).map(|p| p[0]).collect();
        assert_eq!(ch0, vec![2.0, 54.0]);
    }

    #[test]
    fn size_limit_keeps_the_longest_side_and_rounds_half_to_even() {
        assert_eq!(limited_size(2000, 3000, 1024), (683, 1024));
        assert_eq!(limited_size(3000, 2000, 1024), (1024, 683));
        // 1025 · 1024 / 2048 = 512.5 → 512 (even); 1027 · 1024 / 2048 = 513.5 → 514.
        assert_eq!(limited_size(1025, 2048, 1024), (512, 1024));
        assert_eq!(limited_size(1027, 2048, 1024), (514, 1024));
        assert_eq!(limited_size(3, 4000, 1024), (1, 1024), "at least one pixel");
        assert_eq!(limited_size(1024, 1024, 1024), (1024, 1024));
        assert_eq!(limited_size(640, 433, 1024), (640, 433));
        assert_eq!(limited_size(6000, 4500, 0), (6000, 4500), "0: no limit");
        let img = BgrImage { width: 5, height: 2000, data: vec![7; 5 * 2000 * 3] };
        assert_eq!(limit_size(img.clone(), None), img);
        assert_eq!(limit_size(img.clone(), Some(2000)), img);
        let small = limit_size(img, Some(1000));
        assert_eq!((small.width, small.height), (2, 1000));
        assert!(small.data.iter().all(|&v| v == 7), "a flat image stays flat");
    }

    #[test]
    fn pil_bilinear_downscale_is_antialiased_with_hand_computed_weights() {
        // Halving [0, 4, 8, 100]: support 2 source pixels, centres 1.0 and 3.0. Output 0 reads
        // pixels 0..3 with triangle weights 0.75, 0.75, 0.25 (/1.75): 20/7 = 2.86 → 3; output 1
        // reads 1..4 with 0.25, 0.75, 0.75: 328/7 = 46.9 → 47. (OpenCV's INTER_LINEAR gives 2, 54.)
        let img = BgrImage { width: 4, height: 1, data: [0u8, 4, 8, 100].iter().flat_map(|&v| [v, v, v]).collect() };
        let out = resize_pil_bilinear(&img, 1, 2);
        assert_eq!(out.data, vec![3, 3, 3, 47, 47, 47]);
        // The same along the other axis.
        let col = BgrImage { width: 1, height: 4, data: img.data.clone() };
        assert_eq!(resize_pil_bilinear(&col, 2, 1).data, out.data);
        assert_eq!(resize_pil_bilinear(&img, 1, 4), img, "same size: a copy");
    }

    #[test]
    fn crop_truncates_toward_zero_and_is_end_exclusive() {
        let img = BgrImage { width: 5, height: 4, data: (0..60).map(|v| v as u8).collect() };
        let c = crop(&img, CropBox([1.9, 1.2, 3.99, 3.0])).unwrap();
        assert_eq!((c.width, c.height), (2, 2));
        assert_eq!(&c.data[..3], &img.data[(5 + 1) * 3..(5 + 1) * 3 + 3]);
        assert!(matches!(crop(&img, CropBox([3.0, 0.0, 3.5, 4.0])), Err(PreprocessError::EmptyCrop { .. })));
    }

    #[test]
    fn tiny_image_is_a_clear_error_not_an_empty_tensor() {
        let img = ramp(1, 1);
        let err = multiscale_inputs(&img, &DEFAULT_SCALES, &Normalization::DOLG).unwrap_err();
        assert!(matches!(err, PreprocessError::TooSmall { scale, .. } if scale == 0.3535));
    }

    #[test]
    fn absurd_scale_is_a_clear_error_not_an_allocation_failure() {
        let err = multiscale_inputs(&ramp(640, 480), &[1e6], &Normalization::DOLG).unwrap_err();
        assert!(matches!(err, PreprocessError::TooLarge { .. }));
    }

    #[test]
    fn normalisation_keeps_bgr_and_applies_bgr_constants() {
        let img = FloatImage { width: 1, height: 1, data: vec![255.0, 0.0, 127.5] };
        let v = normalize_chw(&img, &Normalization::DOLG);
        assert!((v[0] - (1.0 - 0.406) / 0.225).abs() < 1e-6);
        assert!((v[1] - (0.0 - 0.456) / 0.224).abs() < 1e-6);
        assert!((v[2] - (0.5 - 0.485) / 0.229).abs() < 1e-6);
        let rgb = Normalization { order: ChannelOrder::Rgb, mean: [0.5, 0.5, 0.5], std: [1.0, 1.0, 1.0] };
        let v = normalize_chw(&img, &rgb);
        assert!((v[0] - 0.0).abs() < 1e-6 && (v[2] - 0.5).abs() < 1e-6);
    }
}
