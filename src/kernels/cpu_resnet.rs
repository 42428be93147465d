//! Fast CPU inference path for the ResNet backbone (`globalmodel`), used instead of the generic
//! burn kernels when a model is loaded for inference on the CPU.
//!
//! Same network as `model::resnet` (which builds this from its weights: `ResNet::to_cpu`), with
//! BatchNorm already folded into the convolutions;
//! activations stay channels-last (`[H·W, C]`, one image) through the whole trunk, and their
//! buffers are recycled through a pool shared by the passes running at once (page faults and
//! zero-filling are paid once, not per convolution).
//!
//! Where the CPU has AVX-512 (checked at run time), every convolution runs on
//! [`conv_gemm`]: weights packed once at load into 64-channel panels, the input read in place
//! through per-row addresses (a `k×k` convolution is `k` runs of `k·cin` values of the padded
//! input, so no im2col), bias / residual / ReLU applied in registers, and a 1x1 convolution
//! followed by a padded 3x3 one writes straight into that one's zero-padded input. The block's
//! last convolution overwrites the projection it adds when it fits one `K` block.
//!
//! Elsewhere (or with `--cpu-kernels portable`) the portable path runs GEMMs on the `gemm` crate
//! (runtime-dispatched SIMD kernels, rayon-parallel), with weights rearranged once at load to
//! `[kh][kw][cin][cout]`: a stride-1 3x3 convolution is three GEMMs over the zero-padded image
//! flattened row by row (output row `r` reads `3·C` consecutive values from `r + kh·(W+2)`, only
//! the two padding columns per row are computed and thrown away); strided convolutions use an
//! explicit im2col a band of output rows at a time; the epilogue is one pass over each output.

use std::cell::RefCell;
use std::sync::Mutex;

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::conv_gemm::{self, Activation, Packed, Residual, Rows};
use super::gemm::{self, MatRef, Parallelism};

/// One image, channels-last: `data[(y·w + x)·c + ch]`.
#[derive(Debug, Clone)]
pub struct Act {
    /// Height, in pixels.
    pub h: usize,
    /// Width, in pixels.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// `h * w * c` values, channels-last.
    pub data: Vec<f32>,
}

/// Recycled activation buffers, shared by the passes running at once (an extractor runs its
/// largest scale beside the others). A buffer handed out holds stale values: every user
/// overwrites (or zeroes) what it later reads.
#[derive(Debug, Default)]
pub(crate) struct Pool(Mutex<PoolInner>);

#[derive(Debug, Default)]
struct PoolInner {
    /// Free buffers, each with the length up to which its values are initialised.
    free: Vec<(Vec<f32>, usize)>,
    /// Addresses of the buffers this pool created (initialised over their whole capacity) that
    /// are handed out now; the two that leave the trunk as `f3`/`f4` never come back, so only
    /// the latest few are remembered.
    lent: Vec<usize>,
}

impl Pool {
    /// Most free buffers kept (two passes' inputs, intermediates, projections and outputs).
    const KEEP: usize = 6;

    pub(crate) fn take(&self, len: usize) -> Vec<f32> {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Best fit: the smallest buffer large enough, so that a small activation does not hold
        // a large buffer that a later, larger one then has to allocate again.
        let fit = (0..p.free.len()).filter(|&i| p.free[i].0.capacity() >= len).min_by_key(|&i| p.free[i].0.capacity());
        let (mut v, init) = match fit {
            Some(i) => p.free.swap_remove(i),
            None => {
                // Zeroed pages straight from the allocator (no pass writing zeros), with a
                // quarter to spare so that the next photo, often a little larger, fits too.
                let mut v = vec![0.0; len + len / 4];
                v.truncate(len);
                let cap = v.capacity();
                (v, cap)
            }
        };
        if len <= init {
            // SAFETY: len ≤ init ≤ capacity and every value below `init` is initialised
            // (truncating a Vec<f32> leaves its values as they are), so no uninitialised f32
            // becomes visible; this saves writing zeros that every user overwrites anyway.
            unsafe { v.set_len(len) };
        } else {
            v.resize(len, 0.0);
        }
        if init == v.capacity() {
            let at = v.as_ptr() as usize;
            p.lent.retain(|&a| a != at);
            p.lent.push(at);
            if p.lent.len() > 64 {
                p.lent.remove(0);
            }
        }
        v
    }

    pub(crate) fn give(&self, v: Vec<f32>) {
        if v.capacity() == 0 {
            return;
        }
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let at = v.as_ptr() as usize;
        let init = match p.lent.iter().position(|&a| a == at) {
            Some(i) => {
                p.lent.swap_remove(i);
                v.capacity()
            }
            None => v.len(),
        };
        p.free.push((v, init));
        if p.free.len() > Self::KEEP {
            let smallest = (0..p.free.len()).min_by_key(|&i| p.free[i].0.capacity()).expect("non-empty");
            p.free.swap_remove(smallest);
        }
    }
}

thread_local! {
    /// Per-worker im2col band.
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

#[derive(Debug)]
pub(crate) struct Conv {
    cin: usize,
    pub(crate) cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    /// `[kh][kw][cin][cout]`, for the `gemm` crate path; empty when `packed` is used.
    w: Vec<f32>,
    bias: Vec<f32>,
    /// The same weights packed for [`conv_gemm`] where AVX-512 is available.
    packed: Option<Packed>,
}

/// What a convolution does to its output in the kernel: bias always, then a residual and an
/// activation.
#[derive(Clone, Copy)]
pub(crate) enum Epilogue<'a> {
    Linear,
    Relu,
    /// ReLU6 (MobileNetV2).
    Relu6,
    /// Add the residual (same layout as the output), no activation (MobileNetV2's linear bottleneck).
    Add(&'a [f32]),
    /// Add the residual (same layout as the output), then ReLU.
    AddRelu(&'a [f32]),
    /// Add the output buffer's own values (the residual, overwritten), then ReLU
    /// ([`conv_gemm::Residual::InPlace`]; packed path only).
    AddReluInPlace,
}

impl<'a> Epilogue<'a> {
    /// The packed kernel's residual and activation for this epilogue.
    fn parts(self) -> (Residual<'a>, Activation) {
        match self {
            Epilogue::Linear => (Residual::None, Activation::None),
            Epilogue::Relu => (Residual::None, Activation::Relu),
            Epilogue::Relu6 => (Residual::None, Activation::Relu6),
            Epilogue::Add(r) => (Residual::Rows(r), Activation::None),
            Epilogue::AddRelu(r) => (Residual::Rows(r), Activation::Relu),
            Epilogue::AddReluInPlace => (Residual::InPlace, Activation::Relu),
        }
    }

    /// The epilogue for output rows starting at row `row` (of width `n`).
    fn at_row(self, row: usize, n: usize) -> Self {
        match self {
            Epilogue::AddRelu(r) => Epilogue::AddRelu(&r[row * n..]),
            Epilogue::Add(r) => Epilogue::Add(&r[row * n..]),
            e => e,
        }
    }
}

/// One square convolution's weights as PyTorch stores them, BatchNorm folded in: `weight`
/// `[cout][cin][k][k]`, `bias` `[cout]`.
#[derive(Debug, Clone)]
pub struct ConvWeights {
    /// `[cout][cin][k][k]`, row-major.
    pub weight: Vec<f32>,
    /// `[cout]`.
    pub bias: Vec<f32>,
    /// Output channels.
    pub cout: usize,
    /// Input channels.
    pub cin: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride, in both directions.
    pub stride: usize,
    /// Zero padding on every side, in pixels.
    pub pad: usize,
}

/// A bottleneck block's convolutions (`a` 1x1, `b` 3x3, `c` 1x1) and its projection shortcut.
#[derive(Debug, Clone)]
pub struct BlockWeights {
    /// `a`: the 1x1 reduction.
    pub a: ConvWeights,
    /// `b`: the 3x3 convolution (carries the block's stride).
    pub b: ConvWeights,
    /// `c`: the 1x1 expansion.
    pub c: ConvWeights,
    /// The 1x1 projection shortcut, `None` for an identity shortcut.
    pub proj: Option<ConvWeights>,
}

impl Conv {
    pub(crate) fn new(cw: &ConvWeights) -> Self {
        let ConvWeights { weight: src, bias, cout, cin, k, stride, pad } = cw;
        let (cout, cin, k, stride, pad) = (*cout, *cin, *k, *stride, *pad);
        assert_eq!((src.len(), bias.len()), (cout * cin * k * k, cout), "ConvWeights: shapes disagree");
        if conv_gemm::available() {
            let packed = Packed::from_torch(src, cout, cin, k, bias);
            return Self { cin, cout, k, stride, pad, w: Vec::new(), bias: bias.clone(), packed: Some(packed) };
        }
        Self { cin, cout, k, stride, pad, w: to_khwc_cout(src, cout, cin, k), bias: bias.clone(), packed: None }
    }

    /// [`Self::forward`] through [`conv_gemm`]: the input read in place (1x1, or already
    /// zero-padded) or once zero-padded, the epilogue applied in the kernel.
    fn forward_packed(&self, packed: &Packed, x: &Act, epi: Epilogue, pool: &Pool) -> Act {
        let data = self.run_packed(packed, &x.data, x.h, x.w, 0, epi, 0, pool);
        Act { h: self.out_size(x.h), w: self.out_size(x.w), c: self.cout, data }
    }

    /// The convolution of an `h × w × cin` input stored with a zero border of `src_pad` pixels
    /// (0, or this convolution's own padding), written with a zero border of `out_pad` pixels
    /// (the next convolution's padding, so that it reads this output in place).
    #[allow(clippy::too_many_arguments)] // input geometry, epilogue and output border
    pub(crate) fn run_packed(&self, packed: &Packed, src: &[f32], h: usize, w: usize, src_pad: usize, epi: Epilogue, out_pad: usize, pool: &Pool) -> Vec<f32> {
        self.run_packed_into(packed, src, h, w, src_pad, epi, out_pad, None, pool)
    }

    /// [`Self::run_packed`] writing into `into` when given (the residual's buffer, for
    /// [`Epilogue::AddReluInPlace`]) instead of a pooled buffer.
    #[allow(clippy::too_many_arguments)] // input geometry, epilogue and output
    fn run_packed_into(
        &self,
        packed: &Packed,
        src: &[f32],
        h: usize,
        w: usize,
        src_pad: usize,
        epi: Epilogue,
        out_pad: usize,
        into: Option<Vec<f32>>,
        pool: &Pool,
    ) -> Vec<f32> {
        let (ho, wo) = (self.out_size(h), self.out_size(w));
        let (cin, s, p, n) = (self.cin, self.stride, self.pad, self.cout);
        assert!(src_pad == 0 || src_pad == p, "input border {src_pad} for a convolution padded by {p}");
        let wp = w + 2 * p;
        let padded = (p > 0 && src_pad == 0).then(|| {
            let mut xp = pool.take((h + 2 * p) * wp * cin);
            zero_border(&mut xp, h, w, cin, p);
            xp.par_chunks_mut(wp * cin).skip(p).take(h).enumerate().for_each(|(y, row)| {
                row[p * cin..(w + p) * cin].copy_from_slice(&src[y * w * cin..(y + 1) * w * cin]);
            });
            xp
        });
        let src = padded.as_deref().unwrap_or(src);
        let rows = Rows { wo, row_step: s * wp * cin, col_step: s * cin };
        let pieces: Vec<(usize, usize)> = (0..self.k).map(|kh| (kh * wp * cin, self.k * cin)).collect();
        let (hq, wq) = (ho + 2 * out_pad, wo + 2 * out_pad);
        let mut out = match into {
            Some(v) => {
                assert_eq!(v.len(), hq * wq * n, "output buffer size");
                v
            }
            None => pool.take(hq * wq * n),
        };
        zero_border(&mut out, ho, wo, n, out_pad);
        let (res, act) = epi.parts();
        let out_rows = Rows { wo, row_step: wq * n, col_step: n };
        let interior = (out_pad * wq + out_pad) * n;
        conv_gemm::conv(src, rows, &pieces, packed, ho * wo, &mut out[interior..], out_rows, res, act);
        if let Some(xp) = padded {
            pool.give(xp);
        }
        out
    }

    pub(crate) fn out_size(&self, n: usize) -> usize {
        (n + 2 * self.pad - self.k) / self.stride + 1
    }

    pub(crate) fn forward(&self, x: &Act, epi: Epilogue, pool: &Pool) -> Act {
        debug_assert_eq!(x.c, self.cin);
        if let Some(p) = &self.packed {
            return self.forward_packed(p, x, epi, pool);
        }
        let (ho, wo) = (self.out_size(x.h), self.out_size(x.w));
        let (n, cin) = (self.cout, self.cin);
        if self.k == 1 && self.stride == 1 {
            let mut out = pool.take(ho * wo * n);
            gemm_rows(ho * wo, n, cin, &x.data, cin, &self.w, &mut out, false, parallelism(ho * wo, n, cin));
            out.par_chunks_mut(n * 64).enumerate().for_each(|(i, rows)| epilogue(rows, None, n, &self.bias, epi.at_row(i * 64, n)));
            return Act { h: ho, w: wo, c: n, data: out };
        }
        if self.k == 3 && self.stride == 1 && self.pad == 1 {
            // Flattened zero-padded input with two spare rows so every shifted window stays in bounds.
            let (hp, wp) = (x.h + 2, x.w + 2);
            let mut xp = pool.take((hp * wp + 2) * cin);
            xp[..wp * cin].fill(0.0);
            xp[(hp - 1) * wp * cin..].fill(0.0);
            xp.par_chunks_mut(wp * cin).skip(1).take(x.h).enumerate().for_each(|(y, row)| {
                row[..cin].fill(0.0);
                row[(x.w + 1) * cin..].fill(0.0);
                row[cin..(x.w + 1) * cin].copy_from_slice(&x.data[y * x.w * cin..(y + 1) * x.w * cin]);
            });
            let m = x.h * wp;
            let mut ext = pool.take(m * n);
            let par = parallelism(m, n, 3 * cin);
            for kh in 0..3 {
                // Output row r reads padded rows r + kh·wp + (0, 1, 2): 3·cin consecutive values.
                let a = &xp[kh * wp * cin..];
                let b = &self.w[kh * 3 * cin * n..(kh + 1) * 3 * cin * n];
                gemm_rows(m, n, 3 * cin, a, cin, b, &mut ext, kh > 0, par);
            }
            // Keep the W valid columns of every padded-width row, applying the epilogue on the way.
            let mut out = pool.take(ho * wo * n);
            out.par_chunks_mut(wo * n).enumerate().for_each(|(y, dst)| {
                epilogue(dst, Some(&ext[y * wp * n..(y * wp + wo) * n]), n, &self.bias, epi.at_row(y * wo, n));
            });
            pool.give(ext);
            pool.give(xp);
            return Act { h: ho, w: wo, c: n, data: out };
        }
        // General case: im2col rows ordered (kh, kw, cin) to match the weight layout, one band of
        // output rows at a time.
        let kk = self.k * self.k * cin;
        let mut out = pool.take(ho * wo * n);
        let threads = rayon::current_num_threads();
        // Bands of at most about 2^20 im2col values (4 MiB); several bands per thread keep the
        // threads evenly loaded. A small output goes band after band, each GEMM parallel.
        let cap = ((1 << 20) / (wo * kk)).max(1);
        let (band, par) = if threads > 1 && ho * wo >= 512 * threads {
            (ho.div_ceil(4 * threads).min(cap), Parallelism::None)
        } else {
            (ho.min(cap), parallelism(ho.min(cap) * wo, n, kk))
        };
        let run_band = |(bi, dst): (usize, &mut [f32])| {
            let oy0 = bi * band;
            let rows = dst.len() / (wo * n);
            COLS.with_borrow_mut(|cols| {
                // Stale values are fine: im2col writes every value it does not zero.
                cols.resize(rows * wo * kk, 0.0);
                self.im2col(x, oy0, rows, wo, cols);
                gemm_rows(rows * wo, n, kk, cols, kk, &self.w, dst, false, par);
            });
            epilogue(dst, None, n, &self.bias, epi.at_row(oy0 * wo, n));
        };
        if threads > 1 && matches!(par, Parallelism::None) {
            out.par_chunks_mut(band * wo * n).enumerate().for_each(run_band);
        } else {
            out.chunks_mut(band * wo * n).enumerate().for_each(run_band);
        }
        Act { h: ho, w: wo, c: n, data: out }
    }

    /// A 1x1 convolution of the `m` dense rows of `x` (`[m][cin]`), output row `i` written at
    /// `out_rows.base(i)` in `out`: for callers that cut a map into bands themselves.
    pub(crate) fn pointwise_rows(&self, x: &[f32], m: usize, out: &mut [f32], out_rows: Rows, epi: Epilogue) {
        assert_eq!((self.k, self.stride, self.pad), (1, 1, 0), "pointwise_rows: a 1x1 convolution expected");
        let (cin, n) = (self.cin, self.cout);
        if let Some(p) = &self.packed {
            let (res, act) = epi.parts();
            return conv_gemm::conv(x, Rows::dense(m, cin), &[(0, cin)], p, m, out, out_rows, res, act);
        }
        let dense = out_rows.col_step == n && out_rows.row_step == out_rows.wo * n;
        let mut tmp = if dense { Vec::new() } else { vec![0f32; m * n] };
        let dst = if dense { &mut out[..m * n] } else { &mut tmp[..] };
        gemm_rows(m, n, cin, x, cin, &self.w, dst, false, parallelism(m, n, cin));
        epilogue(dst, None, n, &self.bias, epi);
        if !dense {
            for (i, row) in tmp.chunks(n).enumerate() {
                let at = out_rows.base(i);
                out[at..at + n].copy_from_slice(row);
            }
        }
    }

    /// [`Self::forward`] on a CHW image (the network's input), made channels-last here with
    /// this convolution's zero border when the packed kernel reads it in place.
    pub(crate) fn forward_chw(&self, chw: &[f32], h: usize, w: usize, epi: Epilogue, pool: &Pool) -> Act {
        let c = self.cin;
        assert_eq!(chw.len(), c * h * w, "a {c}×{h}×{w} image expected");
        let p = if self.packed.is_some() { self.pad } else { 0 };
        let mut hwc = pool.take((h + 2 * p) * (w + 2 * p) * c);
        zero_border(&mut hwc, h, w, c, p);
        hwc.par_chunks_mut((w + 2 * p) * c).skip(p).take(h).enumerate().for_each(|(y, row)| {
            for (x, px) in row[p * c..(w + p) * c].chunks_mut(c).enumerate() {
                for (ch, v) in px.iter_mut().enumerate() {
                    *v = chw[(ch * h + y) * w + x];
                }
            }
        });
        let out = match &self.packed {
            Some(sp) => {
                let data = self.run_packed(sp, &hwc, h, w, p, epi, 0, pool);
                Act { h: self.out_size(h), w: self.out_size(w), c: self.cout, data }
            }
            None => self.forward(&Act { h, w, c, data: std::mem::take(&mut hwc) }, epi, pool),
        };
        pool.give(hwc);
        out
    }

    /// im2col of output rows `oy0..oy0 + rows` into `cols`: every value is written (taps in the
    /// padding as 0), so `cols` may hold anything before.
    fn im2col(&self, x: &Act, oy0: usize, rows: usize, wo: usize, cols: &mut [f32]) {
        let (k, cin) = (self.k, self.cin);
        let kk = k * k * cin;
        for r in 0..rows {
            let oy = oy0 + r;
            for ox in 0..wo {
                let row = &mut cols[(r * wo + ox) * kk..(r * wo + ox + 1) * kk];
                let (y0, x0) = ((oy * self.stride) as isize - self.pad as isize, (ox * self.stride) as isize - self.pad as isize);
                if y0 < 0 || x0 < 0 || y0 + k as isize > x.h as isize || x0 + k as isize > x.w as isize {
                    // The window reaches into the padding: zero it, then copy the taps inside.
                    row.fill(0.0);
                }
                for kh in 0..k {
                    let iy = (oy * self.stride + kh) as isize - self.pad as isize;
                    if iy < 0 || iy >= x.h as isize {
                        continue;
                    }
                    // Channels-last: the valid kw taps of one kernel row are one contiguous run.
                    let x0 = (ox * self.stride) as isize - self.pad as isize;
                    let (kw0, kw1) = ((-x0).max(0) as usize, ((x.w as isize - x0).min(k as isize)).max(0) as usize);
                    if kw0 >= kw1 {
                        continue;
                    }
                    let src = (iy as usize * x.w + (x0 + kw0 as isize) as usize) * cin;
                    let dst = (kh * k + kw0) * cin;
                    let len = (kw1 - kw0) * cin;
                    row[dst..dst + len].copy_from_slice(&x.data[src..src + len]);
                }
            }
        }
    }
}

/// PyTorch's `[cout][cin][kh][kw]` → `[kh][kw][cin][cout]`: a transpose of the `cout × (cin·k²)`
/// matrix with the columns reordered, done in tiles so that neither side is read or written one
/// value per cache line.
fn to_khwc_cout(src: &[f32], cout: usize, cin: usize, k: usize) -> Vec<f32> {
    const T: usize = 32;
    let kk = k * k;
    let rows = cin * kk;
    let mut w = vec![0f32; src.len()];
    // Destination rows (kh, kw, cin) in tiles of T, each tile filled from T source columns.
    w.par_chunks_mut(T * cout).enumerate().for_each(|(tile, dst)| {
        let r0 = tile * T;
        let nr = dst.len() / cout;
        for o0 in (0..cout).step_by(T) {
            for o in o0..(o0 + T).min(cout) {
                let s = &src[o * rows..(o + 1) * rows];
                for r in 0..nr {
                    // Destination row r0 + r is tap t = (r0 + r) / cin, input channel i = (r0 + r) % cin.
                    let (t, i) = ((r0 + r) / cin, (r0 + r) % cin);
                    dst[r * cout + o] = s[i * kk + t];
                }
            }
        }
    });
    w
}

/// How a GEMM of `m × n × k` is split over the threads.
fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    if threads > 1 && m * n * k > 1 << 16 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// `c[m×n] (+)= a[m×k] · b[k×n]`, all row-major; row `i` of `a` is `a[i·lda..i·lda + k]`, `b` and
/// `c` are dense. Rows of `a` may overlap (`lda < k`: the 3x3 convolution's shifted windows).
/// With `accumulate` the product is added to `c`, otherwise it overwrites it (without reading it).
///
/// Panics if a slice is shorter than `m`, `n`, `k` and `lda` reach (checked once per call; the
/// GEMM itself dwarfs the check).
#[allow(clippy::too_many_arguments)] // a GEMM's sizes and operands, in BLAS order
fn gemm_rows(m: usize, n: usize, k: usize, a: &[f32], lda: usize, b: &[f32], c: &mut [f32], accumulate: bool, par: Parallelism) {
    gemm::matmul(&mut c[..m * n], MatRef::rows_strided(a, m, k, lda), MatRef::row_major(&b[..k * n], k, n), accumulate, gemm::Kernel::Simd(par));
}

/// Rows of width `n`: `dst = act(src + bias [+ residual])`, with `src` = `dst` itself when `None`.
fn epilogue(dst: &mut [f32], src: Option<&[f32]>, n: usize, bias: &[f32], epi: Epilogue) {
    let rows = dst.len() / n;
    for r in 0..rows {
        let d = &mut dst[r * n..(r + 1) * n];
        if let Some(s) = src {
            d.copy_from_slice(&s[r * n..(r + 1) * n]);
        }
        match epi {
            Epilogue::Linear => d.iter_mut().zip(bias).for_each(|(v, b)| *v += b),
            Epilogue::Relu => d.iter_mut().zip(bias).for_each(|(v, b)| *v = (*v + b).max(0.0)),
            Epilogue::Relu6 => d.iter_mut().zip(bias).for_each(|(v, b)| *v = (*v + b).clamp(0.0, 6.0)),
            Epilogue::Add(res) => {
                let res = &res[r * n..(r + 1) * n];
                d.iter_mut().zip(bias).zip(res).for_each(|((v, b), s)| *v = *v + b + s);
            }
            Epilogue::AddRelu(res) => {
                let res = &res[r * n..(r + 1) * n];
                d.iter_mut().zip(bias).zip(res).for_each(|((v, b), s)| *v = (*v + b + s).max(0.0));
            }
            Epilogue::AddReluInPlace => unreachable!("in-place residuals only on the packed path"),
        }
    }
}

/// Zero the border of `p` pixels around an `h × w × c` image stored in `(h+2p) × (w+2p) × c`
/// (a pooled buffer holds stale values; the interior is left as it is).
pub(crate) fn zero_border(buf: &mut [f32], h: usize, w: usize, c: usize, p: usize) {
    if p == 0 {
        return;
    }
    let row = (w + 2 * p) * c;
    buf[..p * row].fill(0.0);
    buf[(p + h) * row..(h + 2 * p) * row].fill(0.0);
    buf[p * row..(p + h) * row].par_chunks_mut(row).for_each(|r| {
        r[..p * c].fill(0.0);
        r[(w + p) * c..].fill(0.0);
    });
}

/// How a band-by-band pass over `out_rows` output rows is cut: (output rows per band, output rows
/// per chunk). A band reads `(bh − 1)·stride + 3` zero-bordered input rows of `row_len` values,
/// which should fit in `budget` bytes (to stay in L2); chunks run in parallel, and each
/// recomputes the input rows it shares with the chunk above, so chunks have at least 16 rows.
pub(crate) fn band_plan(out_rows: usize, row_len: usize, stride: usize, budget: usize) -> (usize, usize) {
    let rows = (budget / (4 * row_len)).max(3);
    let bh = ((rows - 3) / stride + 1).min(out_rows);
    let threads = rayon::current_num_threads();
    let chunks = if threads > 1 { (out_rows / 16).clamp(1, 2 * threads) } else { 1 };
    (bh, out_rows.div_ceil(chunks))
}

/// The rows of a map with a zero border of one pixel (`(h+2) × (w+2) × c`) that a band-by-band
/// pass holds at the start of its buffer, padded row `r` being image row `r − 1`: each band asks
/// for the rows it reads, and only those it does not hold yet are computed.
pub(crate) struct HeldRows {
    h: usize,
    w: usize,
    c: usize,
    held: std::ops::Range<usize>,
}

impl HeldRows {
    pub(crate) fn new(h: usize, w: usize, c: usize) -> Self {
        Self { h, w, c, held: 0..0 }
    }

    /// Make padded rows `need` (starting at or below the previous request's) the first rows of
    /// `buf`: the rows already held move up, the others get their zero border, and
    /// `compute(image_rows, interior, layout)` writes the interior of those that are image rows
    /// (`interior` starts at the first pixel of the first, pixel `i` of the rows at
    /// `layout.base(i)`).
    pub(crate) fn advance(&mut self, buf: &mut [f32], need: std::ops::Range<usize>, compute: impl FnOnce(std::ops::Range<usize>, &mut [f32], Rows)) {
        let (h, w, c) = (self.h, self.w, self.c);
        let prow = (w + 2) * c;
        assert!(need.start >= self.held.start && buf.len() >= need.len() * prow, "rows asked for out of order or past the buffer");
        let kept = self.held.end.saturating_sub(need.start);
        if kept > 0 {
            buf.copy_within((need.start - self.held.start) * prow..(self.held.end - self.held.start) * prow, 0);
        }
        let fresh = need.start + kept..need.end;
        for (j, r) in fresh.clone().enumerate() {
            let row = &mut buf[(kept + j) * prow..(kept + j + 1) * prow];
            if r == 0 || r == h + 1 {
                row.fill(0.0);
            } else {
                row[..c].fill(0.0);
                row[(w + 1) * c..].fill(0.0);
            }
        }
        let (a, b) = (fresh.start.max(1) - 1, fresh.end.min(h + 1).saturating_sub(1));
        if a < b {
            let at = (a + 1 - need.start) * prow + c;
            compute(a..b, &mut buf[at..], Rows { wo: w, row_step: prow, col_step: c });
        }
        self.held = need;
    }
}

/// 3x3 / stride 2 / padding 1 max-pool (padding never wins, as with PyTorch's −∞ padding).
fn max_pool_3x3_s2(x: &Act, pool: &Pool) -> Act {
    let (ho, wo) = ((x.h + 2 - 3) / 2 + 1, (x.w + 2 - 3) / 2 + 1);
    let c = x.c;
    let mut out = pool.take(ho * wo * c);
    out.par_chunks_mut(wo * c).enumerate().for_each(|(oy, row)| {
        row.fill(f32::NEG_INFINITY);
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
    fn forward(&self, x: &Act, pool: &Pool) -> Act {
        if let (Some(_), Some(pb), Some(pc), None) = (&self.a.packed, &self.b.packed, &self.c.packed, &self.proj) {
            if self.b.stride == 1 && self.b.k == 3 && self.b.pad == 1 && self.a.k == 1 && self.c.k == 1 {
                return self.forward_banded(x, [pb, pc], pool);
            }
        }
        if let (Some(pa), Some(pb)) = (&self.a.packed, &self.b.packed) {
            // `a` writes its output straight into `b`'s zero-padded input.
            let (yh, yw) = (self.a.out_size(x.h), self.a.out_size(x.w));
            let y = self.a.run_packed(pa, &x.data, x.h, x.w, 0, Epilogue::Relu, self.b.pad, pool);
            let z = self.b.run_packed(pb, &y, yh, yw, self.b.pad, Epilogue::Relu, 0, pool);
            pool.give(y);
            let z = Act { h: self.b.out_size(yh), w: self.b.out_size(yw), c: self.b.cout, data: z };
            return self.finish(x, z, pool);
        }
        let y = self.a.forward(x, Epilogue::Relu, pool);
        let z = self.b.forward(&y, Epilogue::Relu, pool);
        pool.give(y.data);
        self.finish(x, z, pool)
    }

    /// An identity-shortcut block band by band, so that `a`'s and `b`'s outputs (a quarter of
    /// the block's width) stay in L2 between the convolutions instead of going to memory: a band
    /// of output rows runs `a` on the input rows it needs (keeping the two rows it shares with
    /// the band above), `b` on them, then `c` with the residual. Chunks of rows run in parallel.
    fn forward_banded(&self, x: &Act, packed: [&Packed; 2], pool: &Pool) -> Act {
        let (h, w) = (x.h, x.w);
        let (ca, n) = (self.a.cout, self.c.cout);
        let prow = (w + 2) * ca;
        let (bh, per) = band_plan(h, prow, 1, 384 << 10);
        let mut out = pool.take(h * w * n);
        out.par_chunks_mut(per * w * n).enumerate().for_each(|(i, dst)| self.banded_chunk(x, packed, i * per, bh, dst, pool));
        Act { h, w, c: n, data: out }
    }

    /// Output rows from `y_a` (as many as `dst` holds), `bh` at a time.
    fn banded_chunk(&self, x: &Act, [pb, pc]: [&Packed; 2], y_a: usize, bh: usize, dst: &mut [f32], pool: &Pool) {
        let (h, w, cin) = (x.h, x.w, x.c);
        let (ca, cb, n) = (self.a.cout, self.b.cout, self.c.cout);
        let prow = (w + 2) * ca;
        let rows = dst.len() / (w * n);
        let mut hidden = pool.take((bh + 2) * prow);
        let mut mid = pool.take(bh * w * cb);
        let mut held = HeldRows::new(h, w, ca);
        let pieces: Vec<(usize, usize)> = (0..3).map(|kh| (kh * prow, 3 * ca)).collect();
        let rows_b = Rows { wo: w, row_step: prow, col_step: ca };
        let mut y0 = y_a;
        while y0 < y_a + rows {
            let y1 = (y0 + bh).min(y_a + rows);
            let need = y0..y1 + 2;
            held.advance(&mut hidden, need, |rows, interior, layout| {
                let m = rows.len() * w;
                self.a.pointwise_rows(&x.data[rows.start * w * cin..rows.end * w * cin], m, interior, layout, Epilogue::Relu);
            });
            let m = (y1 - y0) * w;
            conv_gemm::conv(&hidden, rows_b, &pieces, pb, m, &mut mid, Rows::dense(m, cb), Residual::None, Activation::Relu);
            let res = Residual::Rows(&x.data[y0 * w * n..y1 * w * n]);
            conv_gemm::conv(
                &mid[..m * cb],
                Rows::dense(m, cb),
                &[(0, cb)],
                pc,
                m,
                &mut dst[(y0 - y_a) * w * n..][..m * n],
                Rows::dense(m, n),
                res,
                Activation::Relu,
            );
            y0 = y1;
        }
        pool.give(hidden);
        pool.give(mid);
    }

    /// The block's last convolution on `z`, plus the shortcut of `x`.
    fn finish(&self, x: &Act, z: Act, pool: &Pool) -> Act {
        if let (Some(pc), Some(proj)) = (&self.c.packed, &self.proj) {
            if let (Some(ppk), true) = (&proj.packed, conv_gemm::one_block(self.c.cin)) {
                // The output overwrites the projection it adds (one buffer of the block's widest
                // activation fewer alive).
                let s = proj.run_packed(ppk, &x.data, x.h, x.w, 0, Epilogue::Linear, 0, pool);
                let data = self.c.run_packed_into(pc, &z.data, z.h, z.w, 0, Epilogue::AddReluInPlace, 0, Some(s), pool);
                pool.give(z.data);
                return Act { h: z.h, w: z.w, c: self.c.cout, data };
            }
        }
        let out = match &self.proj {
            Some(p) => {
                let s = p.forward(x, Epilogue::Linear, pool);
                let out = self.c.forward(&z, Epilogue::AddRelu(&s.data), pool);
                pool.give(s.data);
                out
            }
            None => self.c.forward(&z, Epilogue::AddRelu(&x.data), pool),
        };
        pool.give(z.data);
        out
    }
}

/// Time (seconds) of each convolution of the trunk for a `h × w` input, labelled with its shape:
/// a development aid for the speed work (`examples/profile_r50.rs`).
pub fn profile_convs(net: &CpuResNet, h: usize, w: usize) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let pool = Pool::default();
    let mut timed = |label: String, conv: &Conv, x: &Act, pool: &Pool| {
        let t = std::time::Instant::now();
        let y = conv.forward(x, Epilogue::Relu, pool);
        out.push((label, t.elapsed().as_secs_f64()));
        y
    };
    let x = Act { h, w, c: 3, data: vec![0.5; h * w * 3] };
    let stem = timed(format!("stem 7x7/2 3->64 @{h}x{w}"), &net.stem, &x, &pool);
    let mut x = max_pool_3x3_s2(&stem, &pool);
    pool.give(stem.data);
    for (s, stage) in net.stages.iter().enumerate() {
        for (i, b) in stage.iter().enumerate() {
            let tag = |c: &Conv, x: &Act| format!("s{}b{} {}x{}/{} {}->{} @{}x{}", s + 1, i + 1, c.k, c.k, c.stride, c.cin, c.cout, x.h, x.w);
            let y = timed(tag(&b.a, &x), &b.a, &x, &pool);
            let z = timed(tag(&b.b, &y), &b.b, &y, &pool);
            let o = timed(tag(&b.c, &z), &b.c, &z, &pool);
            if let Some(p) = &b.proj {
                let s = timed(tag(p, &x), p, &x, &pool);
                pool.give(s.data);
            }
            pool.give(y.data);
            pool.give(z.data);
            pool.give(std::mem::replace(&mut x, o).data);
        }
    }
    out
}

/// The ResNet trunk with folded weights, ready for fast single-image inference.
#[derive(Debug)]
pub struct CpuResNet {
    stem: Conv,
    stages: [Vec<Block>; 4],
    /// Buffers of the last forward passes, reused by the next.
    pool: Pool,
}

impl CpuResNet {
    /// The trunk from its weights: the stem convolution and the blocks of the four stages (packed
    /// here, once).
    pub fn new(stem: &ConvWeights, stages: [&[BlockWeights]; 4]) -> Self {
        let blocks = |s: &[BlockWeights]| {
            s.iter().map(|b| Block { a: Conv::new(&b.a), b: Conv::new(&b.b), c: Conv::new(&b.c), proj: b.proj.as_ref().map(Conv::new) }).collect::<Vec<_>>()
        };
        Self { stem: Conv::new(stem), stages: stages.map(blocks), pool: Pool::default() }
    }

    /// CHW image (one) → (`f3`, `f4`) channels-last.
    pub(crate) fn forward_act(&self, chw: &[f32], h: usize, w: usize) -> (Act, Act) {
        let pool = &self.pool;
        let stem = self.stem.forward_chw(chw, h, w, Epilogue::Relu, pool);
        let mut x = max_pool_3x3_s2(&stem, pool);
        pool.give(stem.data);
        let mut f3 = None;
        for (s, stage) in self.stages.iter().enumerate() {
            for (i, b) in stage.iter().enumerate() {
                let y = b.forward(&x, pool);
                let done = std::mem::replace(&mut x, y);
                if s == 3 && i == 0 {
                    // Stage 3's output, which stage 4 has just read, leaves the trunk as f3.
                    f3 = Some(done);
                } else {
                    pool.give(done.data);
                }
            }
        }
        (f3.expect("stage 3 ran"), x)
    }
}

impl Act {
    /// The same values channel by channel (CHW).
    pub(crate) fn to_chw(&self) -> Vec<f32> {
        let hw = self.h * self.w;
        let mut chw = vec![0f32; self.c * hw];
        chw.par_chunks_mut(hw).enumerate().for_each(|(c, plane)| {
            for (i, v) in plane.iter_mut().enumerate() {
                *v = self.data[i * self.c + c];
            }
        });
        chw
    }
}

/// A channels-last activation as a `[1, C, H, W]` tensor.
pub(crate) fn to_nchw(a: &Act, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(a.to_chw(), [1, a.c, a.h, a.w]), device)
}

/// A 1x1 convolution on a channels-last map (the DOLG local branch's `conv1`): weights `[k][n]`
/// and bias, packed for [`conv_gemm`] where AVX-512 is available.
#[derive(Debug)]
pub(crate) struct HostConv1x1 {
    k: usize,
    n: usize,
    /// `[k][n]` for the `gemm` crate path; empty when packed.
    w: Vec<f32>,
    b: Vec<f32>,
    packed: Option<Packed>,
}

impl HostConv1x1 {
    /// PyTorch's `[n][k]` (or `[n][k][1][1]`) weights and `n` biases, packed straight from that
    /// layout (or transposed to `[k][n]` for the `gemm` crate), as `Conv` does.
    pub(crate) fn from_torch(w: &[f32], k: usize, n: usize, b: Vec<f32>) -> Self {
        assert_eq!((w.len(), b.len()), (k * n, n), "HostConv1x1: {n}×{k} weights and {n} biases expected");
        match conv_gemm::available() {
            true => Self { k, n, packed: Some(Packed::from_torch(w, n, k, 1, &b)), w: Vec::new(), b },
            false => Self { k, n, w: to_khwc_cout(w, n, k, 1), b, packed: None },
        }
    }

    /// `x · w + b` for the `m` rows of `x` (`[m][k]`): `[m][n]`.
    pub fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        assert!(x.len() >= m * k, "HostConv1x1: {m} rows of {k} expected, got {} values", x.len());
        let mut out = vec![0f32; m * n];
        match &self.packed {
            Some(p) => conv_gemm::conv(x, Rows::dense(m, k), &[(0, k)], p, m, &mut out, Rows::dense(m, n), Residual::None, Activation::None),
            None => {
                gemm_rows(m, n, k, x, k, &self.w, &mut out, false, parallelism(m, n, k));
                out.par_chunks_mut(n * 64).for_each(|rows| epilogue(rows, None, n, &self.b, Epilogue::Linear));
            }
        }
        out
    }
}
