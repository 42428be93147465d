//! Convolution as an implicit GEMM over pre-packed weights, with an AVX-512 microkernel and the
//! bias / residual / activation epilogue applied in registers.
//!
//! `out[i][j] = act(bias[j] + Σ_p A[i][p] · W[p][j] (+ res[i][j]))`, where row `i` of `A` is not
//! stored anywhere: it is a list of *pieces*, runs of consecutive values of the (zero-padded,
//! channels-last) input starting at `base(i) + piece.off`. For a `k×k` convolution the pieces are
//! the `k` kernel rows, each `k·cin` consecutive values, so strided and 3x3 convolutions need no
//! im2col copy; a 1x1 convolution is a single piece of `cin` values.
//!
//! Why by hand: the `gemm` crate (still used where AVX-512 is absent) packs both operands on every
//! call and takes neither pre-packed weights, per-row operand addresses nor an epilogue; no
//! maintained crate offers those three together, and they are where ONNX Runtime's MLAS gets its
//! lead on convolutions (weights packed once at load, activations read in place).
//!
//! Blocking: weights are packed at load into panels of [`NR`] = 64 output channels (4 zmm
//! registers), each `K × 64`, zero-padded. The microkernel keeps a 6 × 64 tile of the output in 24
//! registers and, per `p`, loads 4 weight vectors and broadcasts 6 input values. `K` is cut into
//! blocks of at most `KC` (so a block of one panel, 64 KiB at most, stays in L2 while every row
//! strip of a task passes over it); the partial sums of earlier blocks go through the output
//! itself. Work is split over rayon into tasks of row strips × panels.

use rayon::prelude::*;

/// Output channels per packed panel.
pub const NR: usize = 64;
/// Output rows per microkernel call.
const MR: usize = 6;
/// Largest `K` block.
const KC: usize = 128;

/// Weights `[K][N]` (row `p` = one input tap, in piece order) packed into `N/64` panels, plus the
/// bias padded to whole panels.
#[derive(Debug, Clone)]
pub struct Packed {
    /// Rows of `W` (the reduction length `K`).
    pub k: usize,
    /// Columns of `W` (output channels `N`), before padding to whole panels.
    pub n: usize,
    /// Panel `j`, row `p`, column `c` at `start + (j·K + p)·64 + c`.
    data: Vec<f32>,
    /// Offset of the first panel in `data`, for 64-byte alignment.
    start: usize,
    bias: Vec<f32>,
}

impl Packed {
    /// `w` row-major `[k][n]`, `bias` of length `n`.
    pub fn new(w: &[f32], k: usize, n: usize, bias: &[f32]) -> Self {
        assert_eq!(w.len(), k * n, "packed weights: {k}×{n} expected");
        Self::build(k, n, bias, |row, c0, p| row.copy_from_slice(&w[p * n + c0..p * n + c0 + row.len()]))
    }

    /// PyTorch's convolution weights `[cout][cin][k][k]`, packed with the rows of `K` in the
    /// pieces' order `(kh, kw, cin)`. Each panel reads its 64 output channels' weights (at most
    /// 64·9·512 values, L2-resident), so no transposed copy of the whole tensor is made.
    pub(crate) fn from_torch(src: &[f32], cout: usize, cin: usize, k: usize, bias: &[f32]) -> Self {
        let (kk, rows) = (k * k, cin * k * k);
        assert_eq!(src.len(), cout * rows, "packed weights: {cout}×{cin}×{k}×{k} expected");
        Self::build(rows, cout, bias, |row, c0, p| {
            // Row p of K is tap t = p / cin of input channel i = p % cin.
            let (t, i) = (p / cin, p % cin);
            for (o, v) in row.iter_mut().enumerate() {
                *v = src[(c0 + o) * rows + i * kk + t];
            }
        })
    }

    /// Zeroed, 64-byte-aligned panels of `k` rows for `n` columns, filled in parallel:
    /// `fill(row, c0, p)` writes row `p`'s values for columns `c0..c0 + row.len()` (the panel's
    /// valid columns; the rest stay zero).
    fn build(k: usize, n: usize, bias: &[f32], fill: impl Fn(&mut [f32], usize, usize) + Sync) -> Self {
        assert_eq!(bias.len(), n, "packed weights: bias of {n} expected");
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; panels * k * NR + 16];
        let start = (64 - (data.as_ptr() as usize % 64)) % 64 / 4;
        data[start..start + panels * k * NR].par_chunks_mut(k * NR).enumerate().for_each(|(j, panel)| {
            let (c0, c1) = (j * NR, ((j + 1) * NR).min(n));
            for (p, row) in panel.chunks_mut(NR).enumerate() {
                fill(&mut row[..c1 - c0], c0, p);
            }
        });
        let mut b = vec![0f32; panels * NR];
        b[..n].copy_from_slice(bias);
        Self { k, n, data, start, bias: b }
    }

    fn panel(&self, j: usize) -> &[f32] {
        &self.data[self.start + j * self.k * NR..self.start + (j + 1) * self.k * NR]
    }
}

/// Where row `i` of the implicit `A` starts in the input: `(i / wo)·row_step + (i % wo)·col_step`.
#[derive(Debug, Clone, Copy)]
pub struct Rows {
    /// Output columns per output image row: row `i` is output pixel `(i / wo, i % wo)`.
    pub wo: usize,
    /// Input offset (in values) between consecutive output image rows.
    pub row_step: usize,
    /// Input offset (in values) between consecutive output columns.
    pub col_step: usize,
}

impl Rows {
    /// Rows of `n` values one after the other.
    pub fn dense(m: usize, n: usize) -> Self {
        Self { wo: m.max(1), row_step: 0, col_step: n }
    }

    /// Where row `i` starts.
    pub fn base(&self, i: usize) -> usize {
        (i / self.wo) * self.row_step + (i % self.wo) * self.col_step
    }
}

/// The activation the epilogue applies last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// None (a linear layer).
    None,
    /// `max(y, 0)`.
    Relu,
    /// `min(max(y, 0), 6)` (MobileNetV2).
    Relu6,
}

impl Activation {
    /// On one value (the portable paths' epilogue).
    #[inline]
    pub fn apply(self, y: f32) -> f32 {
        match self {
            Activation::None => y,
            Activation::Relu => y.max(0.0),
            Activation::Relu6 => y.clamp(0.0, 6.0),
        }
    }
}

/// What the epilogue adds before the activation.
#[derive(Debug, Clone, Copy)]
pub enum Residual<'a> {
    /// Nothing: `act(bias + A·W)`.
    None,
    /// Dense `[m][n]` rows.
    Rows(&'a [f32]),
    /// The output rows' own values before the call (the residual is overwritten by the result,
    /// saving a buffer); only when `K` fits one block ([`one_block`]).
    InPlace,
}

/// Whether a product over `k` values runs as one `K` block (then the output is written once,
/// after the residual is read: [`Residual::InPlace`] is possible).
pub fn one_block(k: usize) -> bool {
    k <= KC
}

/// Whether the AVX-512 kernel runs here: the CPU has it and [`crate::runtime::cpu_kernels`] is
/// `Auto` (checked once).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OK.get_or_init(|| std::is_x86_feature_detected!("avx512f") && crate::runtime::cpu_kernels() == crate::runtime::CpuKernels::Auto)
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `out[i] = act(bias + Σ pieces · W (+ res[i]))` for `m` rows. `pieces` are `(offset, length)`
/// with lengths summing to `w.k`. Output row `i` is the `w.n` values from `out_rows.base(i)` in
/// `out` (dense: `Rows { wo: m, row_step: 0, col_step: n }`; the next convolution's zero-padded
/// input: rows `wp·n` apart, starting past the padding); `res` is dense `[m][w.n]`.
///
/// Panics unless [`available`], if a piece of some row reaches past `x`, or if output rows
/// overlap or reach past `out`.
#[allow(clippy::too_many_arguments)] // a convolution's geometry, operands and epilogue
pub fn conv(x: &[f32], rows: Rows, pieces: &[(usize, usize)], w: &Packed, m: usize, out: &mut [f32], out_rows: Rows, res: Residual, act: Activation) {
    assert!(available(), "conv_gemm::conv needs AVX-512");
    let n = w.n;
    assert_eq!(pieces.iter().map(|p| p.1).sum::<usize>(), w.k, "pieces must cover K");
    // Output rows are disjoint (tasks write them through raw pointers) when they are at least n
    // apart along an image row and image rows do not overlap.
    assert!(
        out_rows.col_step >= n && (m <= out_rows.wo || out_rows.row_step >= out_rows.wo * out_rows.col_step),
        "conv_gemm: output rows overlap ({out_rows:?}, n={n})"
    );
    if m > 0 {
        assert!(out_rows.base(m - 1) + n <= out.len(), "conv_gemm: output of {} values for rows reaching {}", out.len(), out_rows.base(m - 1) + n);
    }
    if let Residual::Rows(r) = res {
        assert!(r.len() >= m * n, "conv_gemm: residual of {} values for {m}×{n}", r.len());
    }
    if let Residual::InPlace = res {
        // Partial sums of an earlier K block would overwrite the residual before it is read.
        assert!(one_block(w.k), "conv_gemm: an in-place residual needs K ≤ {KC}, got {}", w.k);
    }
    if m == 0 {
        return;
    }
    // The largest base is that of the last row (bases grow with i as long as row_step ≥
    // (wo−1)·col_step, which holds for every convolution geometry; checked here anyway).
    let reach = pieces.iter().map(|&(o, l)| o + l).max().unwrap_or(0);
    let max_base = if rows.row_step >= (rows.wo - 1) * rows.col_step { rows.base(m - 1) } else { (0..m).map(|i| rows.base(i)).max().unwrap_or(0) };
    assert!(max_base + reach <= x.len(), "conv_gemm: rows reach {} values, input has {}", max_base + reach, x.len());

    let blocks = k_blocks(pieces);
    // Where block `i` ends in `K` (the next one's start).
    let block_end = |i: usize| blocks.get(i + 1).map_or(w.k, |b| b.0);
    let strips = m.div_ceil(MR);
    let panels = n.div_ceil(NR);
    let threads = rayon::current_num_threads();
    // Tasks of `ms` strips × `np` panels. A task's rows of the input (its A block, read once
    // per panel) should stay in L2 beside the panel: at most about 512 KiB of them (an input
    // row advances `col_step` values per kernel row), and at most 40 strips. Then as many tasks
    // as a whole multiple of the threads, so that none waits at the end: row blocks when there
    // are enough rows, otherwise panels shared out as well.
    let row_bytes = 4 * pieces.len() * rows.col_step.max(1);
    let ms_max = ((512 << 10) / (MR * row_bytes)).clamp(4, 40);
    let (ms, np) = if threads <= 1 {
        (strips.min(ms_max), panels)
    } else if strips >= 8 * threads {
        let mt = strips.div_ceil(ms_max).next_multiple_of(threads);
        (strips.div_ceil(mt), panels)
    } else {
        let nt = panels.min(2 * threads);
        let mt = (2 * threads).div_ceil(nt).min(strips);
        (strips.div_ceil(mt), panels.div_ceil(nt))
    };
    let (mt, nt) = (strips.div_ceil(ms), panels.div_ceil(np));
    let out_ptr = SendPtr(out.as_mut_ptr());
    let run = |t: usize| {
        let (ti, tj) = (t / nt, t % nt);
        let (s0, s1) = (ti * ms, ((ti + 1) * ms).min(strips));
        // Each strip's rows: where they start in `x` and in `out`, and their index (computed
        // once per task).
        let strip_rows: Vec<Strip> = (s0..s1)
            .map(|s| {
                let (r0, r1) = (s * MR, ((s + 1) * MR).min(m));
                let (mut base, mut dst, mut idx) = ([0; MR], [0; MR], [0; MR]);
                for (r, i) in (r0..r1).enumerate() {
                    (base[r], dst[r], idx[r]) = (rows.base(i), out_rows.base(i), i);
                }
                (r1 - r0, base, dst, idx)
            })
            .collect();
        for j in tj * np..((tj + 1) * np).min(panels) {
            let panel = w.panel(j);
            let cols = (n - j * NR).min(NR);
            let bias = &w.bias[j * NR..(j + 1) * NR];
            for (bi, (p0, bp)) in blocks.iter().enumerate() {
                let e = Edge { cols, first: bi == 0, last: bi + 1 == blocks.len(), act, bias };
                // The next block's weights (this panel's, or the next panel's first), fetched
                // into L2 while this block runs: a block comes from L3 otherwise.
                let next = match blocks.get(bi + 1) {
                    Some((q0, _)) => &panel[q0 * NR..block_end(bi + 1) * NR],
                    None if j + 1 < ((tj + 1) * np).min(panels) => &w.panel(j + 1)[..block_end(0) * NR],
                    None => &[],
                };
                // SAFETY: AVX-512 is available (asserted); every strip's rows start within `x`
                // with every piece in bounds (asserted above), `panel[p0·64..]` holds the block's
                // rows, and the output (and residual) rows i < m are within `out` (`res`): this
                // task's own rows × panel `j` (tasks are disjoint in (strip, panel)), of which
                // `cols` columns are written; no other reference to `out` is used meanwhile.
                unsafe { run_strips(&strip_rows, x.as_ptr(), out_ptr.get(), res, n, j * NR, bp, &panel[p0 * NR..], next, &e) };
            }
        }
    };
    if threads > 1 && mt * nt > 1 {
        (0..mt * nt).into_par_iter().for_each(run);
    } else {
        (0..mt * nt).for_each(run);
    }
}

/// A strip of at most [`MR`] rows: (rows, start of each in `x`, start in `out`, row index).
type Strip = (usize, [usize; MR], [usize; MR], [usize; MR]);

/// `*mut f32` that tasks writing disjoint parts of one output may share.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used to write disjoint (row, column) ranges of one output from rayon tasks that
// all end before `conv` returns.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// The `K` blocks: (first row of `K`, the pieces it covers as `(offset, length)`), each block at
/// most [`KC`] long, small pieces grouped (the stem's seven 21-value kernel rows form one block).
fn k_blocks(pieces: &[(usize, usize)]) -> Vec<(usize, Vec<(usize, usize)>)> {
    let total: usize = pieces.iter().map(|p| p.1).sum();
    // Equal blocks rather than KC-sized ones and a short tail.
    let kc = total.div_ceil(total.div_ceil(KC).max(1)).max(1);
    let mut blocks = Vec::new();
    let (mut cur, mut cur_len, mut p0) = (Vec::new(), 0, 0);
    for &(off, len) in pieces {
        let mut done = 0;
        while done < len {
            let take = (len - done).min(kc - cur_len);
            cur.push((off + done, take));
            cur_len += take;
            done += take;
            if cur_len == kc {
                blocks.push((p0, std::mem::take(&mut cur)));
                p0 += cur_len;
                cur_len = 0;
            }
        }
    }
    if cur_len > 0 {
        blocks.push((p0, cur));
    }
    blocks
}

/// What the kernel does around the product for one tile.
struct Edge<'a> {
    /// Valid columns of the panel (≤ 64).
    cols: usize,
    /// First `K` block: start from zero rather than the partial sums in the output.
    first: bool,
    /// Last block: add bias (and residual), apply the activation.
    last: bool,
    act: Activation,
    bias: &'a [f32],
}

/// The kernel over row strips, for panel columns `col0..col0 + 64` of the output rows (and of
/// `res`, dense `[m][n]`).
///
/// # Safety
/// As for [`kernel`], for every strip: `x + start + piece` readable, `out + dst + col0` and
/// `res` row `index` from `col0` valid for `e.cols` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)] // operands, geometry and epilogue of one block
unsafe fn run_strips(
    strips: &[Strip],
    x: *const f32,
    out: *mut f32,
    res: Residual,
    n: usize,
    col0: usize,
    pieces: &[(usize, usize)],
    b: &[f32],
    next: &[f32],
    e: &Edge,
) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
    // Cache lines of `next` to prefetch per strip, spread over the strips.
    let per = (next.len() / 16).div_ceil(strips.len().max(1));
    for (k, &(rows, start, dst, idx)) in strips.iter().enumerate() {
        for line in next.chunks(16).skip(k * per).take(per) {
            // A hint only: it never faults, and changes no value.
            _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast());
        }
        // SAFETY: forwarded from the caller (rows past `rows` hold 0 and are never read).
        unsafe {
            let a = start.map(|o| x.add(o));
            let c = dst.map(|o| out.add(o + col0));
            let r = match res {
                Residual::None => None,
                Residual::Rows(r) => Some(idx.map(|i| r.as_ptr().add(i * n + col0))),
                Residual::InPlace => Some(c.map(|p| p as *const f32)),
            };
            let r = r.as_ref();
            // A panel narrower than 64 (the last one of a width that is not a multiple of 64,
            // common in MobileNetV2: 16, 24, 32, 96, 144) computes only its 16-wide vectors.
            match e.cols.div_ceil(16) {
                4 => rows_kernel::<4>(rows, pieces, &a, b, &c, r, e),
                3 => rows_kernel::<3>(rows, pieces, &a, b, &c, r, e),
                2 => rows_kernel::<2>(rows, pieces, &a, b, &c, r, e),
                _ => rows_kernel::<1>(rows, pieces, &a, b, &c, r, e),
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn run_strips(_: &[Strip], _: *const f32, _: *mut f32, _: Residual, _: usize, _: usize, _: &[(usize, usize)], _: &[f32], _: &[f32], _: &Edge) {
    unreachable!("conv_gemm::available() is false off x86_64")
}

/// [`kernel`] for a strip of `rows` rows.
///
/// # Safety
/// As for [`kernel`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn rows_kernel<const V: usize>(
    rows: usize,
    pieces: &[(usize, usize)],
    a: &[*const f32; MR],
    b: &[f32],
    c: &[*mut f32; MR],
    res: Option<&[*const f32; MR]>,
    e: &Edge,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match rows {
            6 => kernel::<6, V>(pieces, a, b, c, res, e),
            5 => kernel::<5, V>(pieces, a, b, c, res, e),
            4 => kernel::<4, V>(pieces, a, b, c, res, e),
            3 => kernel::<3, V>(pieces, a, b, c, res, e),
            2 => kernel::<2, V>(pieces, a, b, c, res, e),
            1 => kernel::<1, V>(pieces, a, b, c, res, e),
            _ => unreachable!("1..=6 rows per strip"),
        }
    }
}

/// One `R × 16V` tile (`V` ≤ 4 vectors of the 64-wide panel, covering its `e.cols` columns) over one `K` block.
///
/// # Safety
/// AVX-512F must be available; for `r < R`, `a[r] + off .. a[r] + off + len` must be readable for
/// every piece, `c[r][..e.cols]` writable (and readable unless `e.first`), `e.res[r][..e.cols]`
/// readable; `b` holds at least the block's `Σ len` rows of 64 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn kernel<const R: usize, const V: usize>(
    pieces: &[(usize, usize)],
    a: &[*const f32; MR],
    b: &[f32],
    c: &[*mut f32; MR],
    res: Option<&[*const f32; MR]>,
    e: &Edge,
) {
    use std::arch::x86_64::*;
    let klen: usize = pieces.iter().map(|p| p.1).sum();
    assert!(b.len() >= klen * NR && e.bias.len() >= NR && (1..=4).contains(&V) && e.cols <= 16 * V);
    let mask = |v: usize| -> __mmask16 {
        let valid = e.cols.saturating_sub(16 * v).min(16);
        ((1u32 << valid) - 1) as __mmask16
    };
    let masks: [__mmask16; V] = std::array::from_fn(mask);
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    if !e.first {
        for r in 0..R {
            for v in 0..V {
                acc[r][v] = _mm512_maskz_loadu_ps(masks[v], c[r].add(16 * v));
            }
        }
    }
    let mut bp = b.as_ptr();
    for &(off, len) in pieces {
        let ap: [*const f32; R] = std::array::from_fn(|r| a[r].add(off));
        for p in 0..len {
            let bv: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(bp.add(16 * v)));
            for r in 0..R {
                let x = _mm512_set1_ps(*ap[r].add(p));
                for v in 0..V {
                    acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);
                }
            }
            bp = bp.add(NR);
        }
    }
    if e.last {
        let bias: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(e.bias.as_ptr().add(16 * v)));
        for r in 0..R {
            for v in 0..V {
                let mut y = _mm512_add_ps(acc[r][v], bias[v]);
                if let Some(res) = res {
                    y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(masks[v], res[r].add(16 * v)));
                }
                match e.act {
                    Activation::None => {}
                    Activation::Relu => y = _mm512_max_ps(y, _mm512_setzero_ps()),
                    Activation::Relu6 => y = _mm512_min_ps(_mm512_max_ps(y, _mm512_setzero_ps()), _mm512_set1_ps(6.0)),
                }
                acc[r][v] = y;
            }
        }
    }
    for r in 0..R {
        for v in 0..V {
            _mm512_mask_storeu_ps(c[r].add(16 * v), masks[v], acc[r][v]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution, channels-last, as the reference: `x` is `h × w × cin` (unpadded),
    /// weights `[kh][kw][cin][cout]`.
    #[allow(clippy::too_many_arguments)]
    fn direct(x: &[f32], h: usize, w: usize, cin: usize, wt: &[f32], bias: &[f32], cout: usize, k: usize, s: usize, pad: usize) -> (Vec<f32>, usize, usize) {
        let (ho, wo) = ((h + 2 * pad - k) / s + 1, (w + 2 * pad - k) / s + 1);
        let mut out = vec![0f32; ho * wo * cout];
        for oy in 0..ho {
            for ox in 0..wo {
                for o in 0..cout {
                    let mut acc = bias[o] as f64;
                    for kh in 0..k {
                        for kw in 0..k {
                            let (iy, ix) = ((oy * s + kh) as isize - pad as isize, (ox * s + kw) as isize - pad as isize);
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            for i in 0..cin {
                                acc += x[(iy as usize * w + ix as usize) * cin + i] as f64 * wt[((kh * k + kw) * cin + i) * cout + o] as f64;
                            }
                        }
                    }
                    out[(oy * wo + ox) * cout + o] = acc as f32;
                }
            }
        }
        (out, ho, wo)
    }

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// Every geometry the trunk uses (and odd ones: widths that are not whole panels, row counts
    /// that are not whole strips, K blocks that split a kernel row), with residual and ReLU,
    /// against a direct convolution in f64.
    #[test]
    fn implicit_gemm_equals_direct_convolution() {
        if !available() {
            eprintln!("skipped: no AVX-512 here");
            return;
        }
        for &(h, w, cin, cout, k, s, pad, residual) in &[
            (9, 11, 5, 40, 1, 1, 0, false),
            (7, 13, 64, 64, 1, 1, 0, true),
            (8, 8, 96, 130, 3, 1, 1, true),
            (10, 7, 100, 64, 3, 2, 1, false),
            (9, 9, 48, 70, 1, 2, 0, false),
            (17, 19, 3, 64, 7, 2, 3, false),
            (1, 1, 300, 17, 1, 1, 0, false),
            (6, 5, 144, 24, 1, 1, 0, true),
            (5, 7, 24, 144, 1, 1, 0, false),
        ] {
            let x = noise(h * w * cin, 1);
            let wt = noise(k * k * cin * cout, 2);
            let bias = noise(cout, 3);
            let (want, ho, wo) = direct(&x, h, w, cin, &wt, &bias, cout, k, s, pad);
            let res = noise(ho * wo * cout, 4);
            // Zero-padded input, as the trunk prepares it.
            let (hp, wp) = (h + 2 * pad, w + 2 * pad);
            let mut xp = vec![0f32; hp * wp * cin];
            for y in 0..h {
                xp[((y + pad) * wp + pad) * cin..((y + pad) * wp + pad + w) * cin].copy_from_slice(&x[y * w * cin..(y + 1) * w * cin]);
            }
            let packed = Packed::new(&wt, k * k * cin, cout, &bias);
            let rows = Rows { wo, row_step: s * wp * cin, col_step: s * cin };
            let pieces: Vec<(usize, usize)> = (0..k).map(|kh| (kh * wp * cin, k * cin)).collect();
            for act in [Activation::None, Activation::Relu, Activation::Relu6] {
                let mut out = vec![f32::NAN; ho * wo * cout];
                let r = if residual { Residual::Rows(&res) } else { Residual::None };
                conv(&xp, rows, &pieces, &packed, ho * wo, &mut out, Rows::dense(ho * wo, cout), r, act);
                if residual && one_block(k * k * cin) {
                    // The same with the residual taken from (and replaced in) the output.
                    let mut inplace = res.clone();
                    conv(&xp, rows, &pieces, &packed, ho * wo, &mut inplace, Rows::dense(ho * wo, cout), Residual::InPlace, act);
                    assert_eq!(inplace, out, "in-place residual, h{h} w{w} cin{cin} k{k}");
                }
                for (i, (&got, &d)) in out.iter().zip(&want).enumerate() {
                    let e = act.apply(d + if residual { res[i] } else { 0.0 });
                    assert!((got - e).abs() <= 1e-4 * (1.0 + e.abs()), "h{h} w{w} cin{cin} cout{cout} k{k} s{s} {act:?}: [{i}] {got} vs {e}");
                }
            }
        }
    }

    #[test]
    fn packing_from_torch_layout_equals_packing_the_transposed_matrix() {
        let (cout, cin, k) = (70, 5, 3);
        let src = noise(cout * cin * k * k, 9);
        let bias = noise(cout, 10);
        // [cout][cin][kh][kw] → [kh][kw][cin][cout], written out by hand.
        let mut w = vec![0f32; src.len()];
        for o in 0..cout {
            for i in 0..cin {
                for t in 0..k * k {
                    w[(t * cin + i) * cout + o] = src[(o * cin + i) * k * k + t];
                }
            }
        }
        let (a, b) = (Packed::from_torch(&src, cout, cin, k, &bias), Packed::new(&w, k * k * cin, cout, &bias));
        assert_eq!((a.k, a.n, &a.bias), (b.k, b.n, &b.bias));
        for j in 0..cout.div_ceil(NR) {
            assert_eq!(a.panel(j), b.panel(j), "panel {j}");
        }
    }

    #[test]
    fn k_blocks_cover_every_piece_once_in_order() {
        for pieces in [vec![(0, 21), (100, 21), (200, 21)], vec![(0, 1536), (5000, 1536), (9000, 1536)], vec![(7, 300)]] {
            let blocks = k_blocks(&pieces);
            let flat: Vec<(usize, usize)> = blocks.iter().flat_map(|b| b.1.iter().copied()).collect();
            let mut p0 = 0;
            for (start, b) in &blocks {
                assert_eq!(*start, p0);
                let len: usize = b.iter().map(|p| p.1).sum();
                assert!(len <= KC);
                p0 += len;
            }
            // Re-joined, the runs are exactly the pieces.
            let mut joined: Vec<(usize, usize)> = Vec::new();
            for (o, l) in flat {
                match joined.last_mut() {
                    Some(last) if last.0 + last.1 == o && pieces.iter().any(|p| p.0 <= last.0 && o + l <= p.0 + p.1) => last.1 += l,
                    _ => joined.push((o, l)),
                }
            }
            assert_eq!(joined, pieces);
        }
    }
}
