//! Fast CPU inference path for the ResNet backbone (`globalmodel`), used instead of the generic
//! burn kernels when a model is loaded for inference on the CPU.
//!
//! Same network as [`super::resnet`], with BatchNorm already folded into the convolutions; what
//! changes is how it is computed:
//! * activations stay channels-last (`[H·W, C]`, one image) through the whole trunk, so every
//!   1x1 convolution is a single GEMM on the activation as stored, with no layout conversion;
//! * a stride-1 3x3 convolution is nine GEMMs over the zero-padded image flattened row by row
//!   (output row `r` reads input row `r + kh·(W+2) + kw`), accumulating into one buffer — no
//!   im2col copy; only the two padding columns per row are computed and thrown away;
//! * strided convolutions (the 7x7 stem, the first 3x3 of stages 2–4) use an explicit im2col;
//! * bias, ReLU and the residual addition are applied in one pass over each output.
//!
//! GEMMs run on the `gemm` crate (runtime-dispatched SIMD kernels, rayon-parallel). Weights are
//! rearranged once at load to `[kh][kw][cin][cout]`.

use burn::tensor::{Device, Tensor, TensorData};
use gemm::Parallelism;
use rayon::prelude::*;

use super::layers::ConvBn;
use super::resnet::{ResBlock, ResNet};

/// One image, channels-last: `data[(y·w + x)·c + ch]`.
#[derive(Debug, Clone)]
pub struct Act {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub data: Vec<f32>,
}

#[derive(Debug)]
struct Conv {
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    /// `[kh][kw][cin][cout]`.
    w: Vec<f32>,
    bias: Vec<f32>,
}

#[derive(Clone, Copy)]
enum Epilogue<'a> {
    Linear,
    Relu,
    AddRelu(&'a [f32]),
}

impl Conv {
    fn from_folded(cb: &ConvBn) -> Self {
        assert!(cb.bn.is_none(), "the fast CPU path needs BatchNorm folded into the convolutions");
        let c = &cb.conv;
        let [cout, cin, k, _] = c.weight.val().dims();
        let src = c.weight.val().into_data().try_into_vec::<f32>().expect("f32 weights");
        let mut w = vec![0f32; src.len()];
        for o in 0..cout {
            for i in 0..cin {
                for kh in 0..k {
                    for kw in 0..k {
                        w[((kh * k + kw) * cin + i) * cout + o] = src[((o * cin + i) * k + kh) * k + kw];
                    }
                }
            }
        }
        let bias = c.bias.as_ref().map_or_else(|| vec![0.0; cout], |b| b.val().into_data().try_into_vec::<f32>().expect("f32 bias"));
        let pad = match c.padding {
            burn::nn::PaddingConfig2d::Explicit(p, ..) => p,
            _ => 0,
        };
        Self { cin, cout, k, stride: c.stride[0], pad, w, bias }
    }

    fn out_size(&self, n: usize) -> usize {
        (n + 2 * self.pad - self.k) / self.stride + 1
    }

    fn forward(&self, x: &Act, epi: Epilogue) -> Act {
        debug_assert_eq!(x.c, self.cin);
        let (ho, wo) = (self.out_size(x.h), self.out_size(x.w));
        let n = self.cout;
        if self.k == 1 && self.stride == 1 {
            let mut out = vec![0f32; ho * wo * n];
            gemm_rows(ho * wo, n, self.cin, &x.data, self.cin, &self.w, &mut out, false);
            epilogue_rows(&mut out, n, &self.bias, epi);
            return Act { h: ho, w: wo, c: n, data: out };
        }
        if self.k == 3 && self.stride == 1 && self.pad == 1 {
            // Flattened zero-padded input with two spare rows so every shifted window stays in bounds.
            let (hp, wp) = (x.h + 2, x.w + 2);
            let mut xp = vec![0f32; (hp * wp + 2) * self.cin];
            xp.par_chunks_mut(wp * self.cin).skip(1).take(x.h).enumerate().for_each(|(y, row)| {
                row[self.cin..(x.w + 1) * self.cin].copy_from_slice(&x.data[y * x.w * self.cin..(y + 1) * x.w * self.cin]);
            });
            let m = x.h * wp;
            let mut ext = vec![0f32; m * n];
            for kh in 0..3 {
                for kw in 0..3 {
                    let t = kh * 3 + kw;
                    // Output row r reads padded row r + kh·wp + kw: the window starts that many rows in.
                    let a = &xp[(kh * wp + kw) * self.cin..];
                    let b = &self.w[t * self.cin * n..(t + 1) * self.cin * n];
                    gemm_rows(m, n, self.cin, a, self.cin, b, &mut ext, t > 0);
                }
            }
            // Keep the W valid columns of every padded-width row, applying the epilogue on the way.
            let mut out = vec![0f32; ho * wo * n];
            out.par_chunks_mut(wo * n).enumerate().for_each(|(y, dst)| {
                dst.copy_from_slice(&ext[y * wp * n..(y * wp + wo) * n]);
            });
            epilogue_rows(&mut out, n, &self.bias, epi);
            return Act { h: ho, w: wo, c: n, data: out };
        }
        // General case: im2col rows ordered (kh, kw, cin) to match the weight layout.
        let kk = self.k * self.k * self.cin;
        let mut cols = vec![0f32; ho * wo * kk];
        cols.par_chunks_mut(wo * kk).enumerate().for_each(|(oy, rows)| {
            for ox in 0..wo {
                let row = &mut rows[ox * kk..(ox + 1) * kk];
                for kh in 0..self.k {
                    let iy = (oy * self.stride + kh) as isize - self.pad as isize;
                    if iy < 0 || iy >= x.h as isize {
                        continue;
                    }
                    // Channels-last: the valid kw taps of one kernel row are one contiguous run.
                    let x0 = (ox * self.stride) as isize - self.pad as isize;
                    let (kw0, kw1) = ((-x0).max(0) as usize, ((x.w as isize - x0).min(self.k as isize)).max(0) as usize);
                    if kw0 >= kw1 {
                        continue;
                    }
                    let src = (iy as usize * x.w + (x0 + kw0 as isize) as usize) * self.cin;
                    let dst = (kh * self.k + kw0) * self.cin;
                    let len = (kw1 - kw0) * self.cin;
                    row[dst..dst + len].copy_from_slice(&x.data[src..src + len]);
                }
            }
        });
        let mut out = vec![0f32; ho * wo * n];
        gemm_rows(ho * wo, n, kk, &cols, kk, &self.w, &mut out, false);
        epilogue_rows(&mut out, n, &self.bias, epi);
        Act { h: ho, w: wo, c: n, data: out }
    }
}

/// `c[m×n] (+)= a[m×k] · b[k×n]`, all row-major; row `i` of `a` is `a[i·lda..i·lda + k]` (`lda ≥ k`),
/// `b` and `c` are dense. With `accumulate` the product is added to `c`, otherwise it overwrites it.
///
/// Panics if a slice is shorter than `m`, `n`, `k` and `lda` reach (checked once per call; the
/// GEMM itself dwarfs the check).
#[allow(clippy::too_many_arguments)] // a GEMM's sizes and operands, in BLAS order
fn gemm_rows(m: usize, n: usize, k: usize, a: &[f32], lda: usize, b: &[f32], c: &mut [f32], accumulate: bool) {
    let a_reach = if m == 0 { 0 } else { (m - 1) * lda + k };
    assert!(
        lda >= k && a.len() >= a_reach && b.len() >= k * n && c.len() >= m * n,
        "gemm_rows: m={m} n={n} k={k} lda={lda} need a ≥ {a_reach}, b ≥ {}, c ≥ {} values; got {}, {}, {}",
        k * n,
        m * n,
        a.len(),
        b.len(),
        c.len()
    );
    let threads = rayon::current_num_threads();
    let par = if threads > 1 && m * n * k > 1 << 16 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: the assert above guarantees that every element gemm touches is in bounds: `a` is
    // read at i·lda + p for i < m, p < k (≤ (m−1)·lda + k − 1 < a.len()), `b` at p·n + j
    // (< k·n ≤ b.len()) and `c` written at i·n + j (< m·n ≤ c.len()); strides are positive
    // and fit in isize because the slices they index exist. `c` is a `&mut` borrow, so it
    // aliases neither `a` nor `b`, and all three outlive the call (gemm returns only when every
    // rayon task it spawned has finished).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            1,
            n as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}

/// Bias, then ReLU or residual-add-then-ReLU, over rows of width `n`.
fn epilogue_rows(out: &mut [f32], n: usize, bias: &[f32], epi: Epilogue) {
    out.par_chunks_mut(n * 64).enumerate().for_each(|(chunk, rows)| match epi {
        Epilogue::Linear => rows.chunks_mut(n).for_each(|r| r.iter_mut().zip(bias).for_each(|(v, b)| *v += b)),
        Epilogue::Relu => rows.chunks_mut(n).for_each(|r| r.iter_mut().zip(bias).for_each(|(v, b)| *v = (*v + b).max(0.0))),
        Epilogue::AddRelu(res) => {
            let res = &res[chunk * n * 64..chunk * n * 64 + rows.len()];
            for (r, s) in rows.chunks_mut(n).zip(res.chunks(n)) {
                for ((v, b), s) in r.iter_mut().zip(bias).zip(s) {
                    *v = (*v + b + s).max(0.0);
                }
            }
        }
    });
}

/// 3x3 / stride 2 / padding 1 max-pool (padding never wins, as with PyTorch's −∞ padding).
fn max_pool_3x3_s2(x: &Act) -> Act {
    let (ho, wo) = ((x.h + 2 - 3) / 2 + 1, (x.w + 2 - 3) / 2 + 1);
    let c = x.c;
    let mut out = vec![f32::NEG_INFINITY; ho * wo * c];
    out.par_chunks_mut(wo * c).enumerate().for_each(|(oy, row)| {
        for ox in 0..wo {
            let dst = &mut row[ox * c..(ox + 1) * c];
            for iy in (2 * oy).saturating_sub(1)..(2 * oy + 2).min(x.h) {
                for ix in (2 * ox).saturating_sub(1)..(2 * ox + 2).min(x.w) {
                    let src = &x.data[(iy * x.w + ix) * c..(iy * x.w + ix + 1) * c];
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d = d.max(*s));
                }
            }
        }
    });
    Act { h: ho, w: wo, c, data: out }
}

#[derive(Debug)]
struct Block {
    a: Conv,
    b: Conv,
    c: Conv,
    proj: Option<Conv>,
}

impl Block {
    fn forward(&self, x: &Act) -> Act {
        let y = self.a.forward(x, Epilogue::Relu);
        let y = self.b.forward(&y, Epilogue::Relu);
        match &self.proj {
            Some(p) => {
                let s = p.forward(x, Epilogue::Linear);
                self.c.forward(&y, Epilogue::AddRelu(&s.data))
            }
            None => self.c.forward(&y, Epilogue::AddRelu(&x.data)),
        }
    }
}

/// Time (seconds) of each convolution of the trunk for a `h × w` input, labelled with its shape:
/// a development aid for the speed work (`examples/profile_r50.rs`).
pub fn profile_convs(net: &CpuResNet, h: usize, w: usize) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut timed = |label: String, conv: &Conv, x: &Act| {
        let t = std::time::Instant::now();
        let y = conv.forward(x, Epilogue::Relu);
        out.push((label, t.elapsed().as_secs_f64()));
        y
    };
    let x = Act { h, w, c: 3, data: vec![0.5; h * w * 3] };
    let mut x = max_pool_3x3_s2(&timed(format!("stem 7x7/2 3->64 @{h}x{w}"), &net.stem, &x));
    for (s, stage) in net.stages.iter().enumerate() {
        for (i, b) in stage.iter().enumerate() {
            let tag = |c: &Conv, x: &Act| format!("s{}b{} {}x{}/{} {}->{} @{}x{}", s + 1, i + 1, c.k, c.k, c.stride, c.cin, c.cout, x.h, x.w);
            let y = timed(tag(&b.a, &x), &b.a, &x);
            let y = timed(tag(&b.b, &y), &b.b, &y);
            let y = timed(tag(&b.c, &y), &b.c, &y);
            if let Some(p) = &b.proj {
                timed(tag(p, &x), p, &x);
            }
            x = y;
        }
    }
    out
}

/// The ResNet trunk with folded weights, ready for fast single-image inference.
#[derive(Debug)]
pub struct CpuResNet {
    stem: Conv,
    stages: [Vec<Block>; 4],
}

impl CpuResNet {
    /// Build from a ResNet loaded with [`BatchNorm::Fold`](super::layers::BatchNorm::Fold).
    pub fn from_resnet(r: &ResNet) -> Self {
        let blocks = |s: &[ResBlock]| {
            s.iter()
                .map(|b| Block {
                    a: Conv::from_folded(&b.f.a),
                    b: Conv::from_folded(&b.f.b),
                    c: Conv::from_folded(&b.f.c),
                    proj: b.proj.as_ref().map(Conv::from_folded),
                })
                .collect::<Vec<_>>()
        };
        Self { stem: Conv::from_folded(&r.stem.conv), stages: [blocks(&r.s1.blocks), blocks(&r.s2.blocks), blocks(&r.s3.blocks), blocks(&r.s4.blocks)] }
    }

    /// CHW image (one) → (`f3`, `f4`) channels-last.
    pub fn forward_act(&self, chw: &[f32], h: usize, w: usize) -> (Act, Act) {
        let mut hwc = vec![0f32; h * w * 3];
        for c in 0..3 {
            for i in 0..h * w {
                hwc[i * 3 + c] = chw[c * h * w + i];
            }
        }
        let x = Act { h, w, c: 3, data: hwc };
        let x = max_pool_3x3_s2(&self.stem.forward(&x, Epilogue::Relu));
        let mut x = x;
        let mut f3 = None;
        for (s, stage) in self.stages.iter().enumerate() {
            for b in stage {
                x = b.forward(&x);
            }
            if s == 2 {
                f3 = Some(x.clone());
            }
        }
        (f3.expect("stage 3 ran"), x)
    }

    /// `x`: [1, 3, H, W] → (`f3`, `f4`) as NCHW tensors on `device`.
    pub fn forward(&self, x: Tensor<4>, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let [b, _, h, w] = x.dims();
        assert_eq!(b, 1, "the fast CPU path describes one image at a time");
        let chw = x.into_data().try_into_vec::<f32>().expect("f32 input");
        let (f3, f4) = self.forward_act(&chw, h, w);
        (to_nchw(&f3, device), to_nchw(&f4, device))
    }
}

fn to_nchw(a: &Act, device: &Device) -> Tensor<4> {
    let hw = a.h * a.w;
    let mut chw = vec![0f32; a.c * hw];
    chw.par_chunks_mut(hw).enumerate().for_each(|(c, plane)| {
        for (i, v) in plane.iter_mut().enumerate() {
            *v = a.data[i * a.c + c];
        }
    });
    Tensor::from_data(TensorData::new(chw, [1, a.c, a.h, a.w]), device)
}
