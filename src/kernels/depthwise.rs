//! Depthwise 3x3 convolution (one filter per channel: MobileNetV2's spatial layer), channels-last,
//! padding 1, stride 1 or 2, with the bias and activation applied as each output is finished, one
//! output row at a time (the caller, [`super::cpu_mobilenet`], feeds it bands of its input).
//!
//! Why by hand: a depthwise convolution is a product of width 1 per channel, which GEMM kernels
//! ([`super::conv_gemm`], the `gemm` crate) cannot use well, and no maintained crate offers a
//! channels-last depthwise convolution. Channels-last, it is a loop over channels for every tap:
//! a block of `L` channels keeps its nine weight vectors and its accumulator in registers while it
//! walks an output row, reading each input vector from L1. The loop is written once, generic over
//! `L`, and compiled for AVX-512 (`L` = 16) and AVX2 + FMA (`L` = 8), chosen at run time, with a
//! plain version for every other CPU. No fused multiply-add is used, so every path rounds alike.

use super::conv_gemm::{self, Activation};

/// One depthwise 3x3 convolution, BatchNorm folded in.
#[derive(Debug, Clone)]
pub struct Depthwise {
    /// Channels (in = out).
    pub c: usize,
    /// 1 or 2, in both directions.
    pub stride: usize,
    /// `[tap][c]`, tap = `3·kh + kw`.
    w: Vec<f32>,
    bias: Vec<f32>,
}

impl Depthwise {
    /// PyTorch's `[c][1][3][3]` weights and `c` biases.
    pub fn from_torch(weight: &[f32], bias: &[f32], c: usize, stride: usize) -> Self {
        assert_eq!((weight.len(), bias.len()), (9 * c, c), "depthwise 3x3: {c}×1×3×3 weights and {c} biases expected");
        assert!(stride == 1 || stride == 2, "depthwise 3x3: stride {stride}");
        let mut w = vec![0f32; 9 * c];
        for (ch, taps) in weight.chunks(9).enumerate() {
            for (t, v) in taps.iter().enumerate() {
                w[t * c + ch] = *v;
            }
        }
        Self { c, stride, w, bias: bias.to_vec() }
    }

    /// Output side for an input side `n`.
    pub fn out_size(&self, n: usize) -> usize {
        (n - 1) / self.stride + 1
    }

    /// Output row `oy` (`wo` pixels) into `out`, from the padded input of width `wp` (`xp` may
    /// start at any padded row: `oy` counts output rows from there).
    pub(crate) fn row(&self, xp: &[f32], wp: usize, oy: usize, wo: usize, out: &mut [f32], act: Activation) {
        #[cfg(target_arch = "x86_64")]
        {
            if conv_gemm::available() {
                // SAFETY: `available` checked that the CPU has AVX-512F.
                return unsafe { row_avx512(self, xp, wp, oy, wo, out, act) };
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: AVX2 and FMA were just detected.
                return unsafe { row_avx2(self, xp, wp, oy, wo, out, act) };
            }
        }
        row_lanes::<4>(self, xp, wp, oy, wo, out, act);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn row_avx512(d: &Depthwise, xp: &[f32], wp: usize, oy: usize, wo: usize, out: &mut [f32], act: Activation) {
    row_lanes::<16>(d, xp, wp, oy, wo, out, act);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn row_avx2(d: &Depthwise, xp: &[f32], wp: usize, oy: usize, wo: usize, out: &mut [f32], act: Activation) {
    row_lanes::<8>(d, xp, wp, oy, wo, out, act);
}

/// One output row, `L` channels at a time (then the remaining channels one by one).
#[inline(always)]
fn row_lanes<const L: usize>(d: &Depthwise, xp: &[f32], wp: usize, oy: usize, wo: usize, out: &mut [f32], act: Activation) {
    let (c, s) = (d.c, d.stride);
    let lanes = c / L * L;
    // Start of input row `oy·s + kh` of the padded image.
    let rows: [usize; 3] = std::array::from_fn(|kh| (oy * s + kh) * wp * c);
    let finish = |v: f32| act.apply(v);
    for c0 in (0..lanes).step_by(L) {
        let wv: [[f32; L]; 9] = std::array::from_fn(|t| d.w[t * c + c0..t * c + c0 + L].try_into().expect("L values"));
        let bias: [f32; L] = d.bias[c0..c0 + L].try_into().expect("L values");
        for ox in 0..wo {
            let mut acc = bias;
            for (t, wt) in wv.iter().enumerate() {
                let at = rows[t / 3] + (ox * s + t % 3) * c + c0;
                let xs: &[f32; L] = xp[at..at + L].try_into().expect("L values");
                for l in 0..L {
                    acc[l] += xs[l] * wt[l];
                }
            }
            let dst: &mut [f32; L] = (&mut out[ox * c + c0..ox * c + c0 + L]).try_into().expect("L values");
            for l in 0..L {
                dst[l] = finish(acc[l]);
            }
        }
    }
    for ch in lanes..c {
        for ox in 0..wo {
            let mut acc = d.bias[ch];
            for t in 0..9 {
                acc += xp[rows[t / 3] + (ox * s + t % 3) * c + ch] * d.w[t * c + ch];
            }
            out[ox * c + ch] = finish(acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, on the unpadded `h × w × c` image (taps outside it count as 0).
    fn direct(x: &[f32], h: usize, w: usize, c: usize, wt: &[f32], bias: &[f32], s: usize) -> Vec<f32> {
        let (ho, wo) = ((h - 1) / s + 1, (w - 1) / s + 1);
        let mut out = vec![0f32; ho * wo * c];
        for oy in 0..ho {
            for ox in 0..wo {
                for ch in 0..c {
                    let mut acc = f64::from(bias[ch]);
                    for kh in 0..3 {
                        for kw in 0..3 {
                            let (iy, ix) = ((oy * s + kh) as isize - 1, (ox * s + kw) as isize - 1);
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                acc += f64::from(x[(iy as usize * w + ix as usize) * c + ch]) * f64::from(wt[ch * 9 + kh * 3 + kw]);
                            }
                        }
                    }
                    out[(oy * wo + ox) * c + ch] = acc as f32;
                }
            }
        }
        out
    }

    fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            })
            .collect()
    }

    /// Every kernel path the CPU offers (the vectorised one it picks, and the plain loop with 4
    /// lanes, run directly) against the definition, odd sizes and channel counts with a remainder,
    /// both strides, with ReLU6 clamping values above 6.
    #[test]
    fn depthwise_matches_the_definition() {
        let (mut high, mut low) = (false, false);
        for &(h, w, c, s) in &[(7, 9, 16, 1), (8, 5, 35, 2), (9, 9, 144, 2), (1, 1, 3, 1), (6, 11, 40, 1), (2, 3, 17, 2)] {
            let x = noise(h * w * c, 1, 8.0);
            let wt = noise(9 * c, 2, 2.0);
            let bias = noise(c, 3, 4.0);
            let want = direct(&x, h, w, c, &wt, &bias, s);
            let mut xp = vec![0f32; (h + 2) * (w + 2) * c];
            for y in 0..h {
                xp[((y + 1) * (w + 2) + 1) * c..((y + 1) * (w + 2) + 1 + w) * c].copy_from_slice(&x[y * w * c..(y + 1) * w * c]);
            }
            let d = Depthwise::from_torch(&wt, &bias, c, s);
            let (ho, wo) = (d.out_size(h), d.out_size(w));
            assert_eq!(ho * wo * c, want.len());
            for act in [Activation::None, Activation::Relu6] {
                let expect: Vec<f32> = want.iter().map(|&v| act.apply(v)).collect();
                let (mut picked, mut plain) = (vec![f32::NAN; ho * wo * c], vec![f32::NAN; ho * wo * c]);
                for (oy, (p, q)) in picked.chunks_mut(wo * c).zip(plain.chunks_mut(wo * c)).enumerate() {
                    d.row(&xp, w + 2, oy, wo, p, act);
                    row_lanes::<4>(&d, &xp, w + 2, oy, wo, q, act);
                }
                for (label, got) in [("picked", &picked), ("plain", &plain)] {
                    for (i, (g, e)) in got.iter().zip(&expect).enumerate() {
                        assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()), "{label} h{h} w{w} c{c} s{s} {act:?}: [{i}] {g} vs {e}");
                    }
                }
                if act == Activation::Relu6 {
                    (high, low) = (high || expect.contains(&6.0), low || expect.contains(&0.0));
                }
            }
        }
        assert!(high && low, "the cases should reach both clamps of ReLU6");
    }
}
