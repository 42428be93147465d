//! The one safe entry to general matrix products: exact search, the duplicate self-join, spatial
//! matching, LighterGlue and the portable path of the ResNet engine all multiply through
//! [`matmul`] / [`matmul_new`], so the bounds of every product are checked in one place and the
//! crate's only `unsafe` calls into GEMM libraries are here. Two libraries do the work
//! ([`Kernel`]); the hand-written AVX-512 convolution kernel ([`super::conv_gemm`]) is separate
//! because it takes pre-packed weights and per-row operand addresses, which no GEMM library does.

pub use gemm::Parallelism;

/// Which library multiplies.
#[derive(Debug, Clone, Copy)]
pub enum Kernel {
    /// The `gemm` crate: runtime-dispatched SIMD kernels (AVX-512 where the CPU has it), on the
    /// calling thread or spread over rayon.
    Simd(Parallelism),
    /// `matrixmultiply`, single-threaded: what exact search and the duplicate join have always
    /// used, so their scores stay bit-identical to earlier releases (an index made by dolg 0.1
    /// still prints the same scores, `tests/integration/index_compat.rs`). A different summation
    /// order would change the last bit of some scores.
    Stable,
}

/// A read-only view of a matrix in a slice: element `(r, c)` is
/// `data[r * row_stride + c * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// `rows × cols`, row-major and dense.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// `rows × cols`, row-major with `row_stride` values from one row to the next (a band of a
    /// wider matrix).
    pub fn rows_strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self { data, rows, cols, row_stride, col_stride: 1 }
    }

    /// The transpose of the dense row-major `rows × cols` matrix in `data`: a `cols × rows` view
    /// (descriptors stored one per row, read as columns: `q · tᵀ`).
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows: cols, cols: rows, row_stride: 1, col_stride: cols }
    }

    /// The transpose, as a view of the same values.
    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    /// Whether every element of the view lies inside `data`.
    pub fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows - 1).checked_mul(self.row_stride).zip((self.cols - 1).checked_mul(self.col_stride)).and_then(|(r, c)| r.checked_add(c));
        last.is_some_and(|l| l < self.data.len() && l <= isize::MAX as usize)
    }
}

/// The output's length, `m × n`, once the shapes are checked.
fn check(m: usize, n: usize, a: &MatRef, b: &MatRef) -> usize {
    assert!(
        a.cols == b.rows && a.rows == m && b.cols == n && a.in_bounds() && b.in_bounds(),
        "matmul: a is {}×{} (strides {}, {}; {} values), b {}×{} (strides {}, {}; {} values), output {m}×{n}",
        a.rows,
        a.cols,
        a.row_stride,
        a.col_stride,
        a.data.len(),
        b.rows,
        b.cols,
        b.row_stride,
        b.col_stride,
        b.data.len()
    );
    m.checked_mul(n).unwrap_or_else(|| panic!("matmul: a {m}×{n} output does not fit in memory"))
}

/// `dst = a · b`, or `dst += a · b` with `accumulate`; `dst` is `a.rows × b.cols`, row-major and
/// dense. Panics, naming the shapes, when they disagree or a view reaches past its slice.
pub fn matmul(dst: &mut [f32], a: MatRef, b: MatRef, accumulate: bool, kernel: Kernel) {
    let (m, n) = (a.rows, b.cols);
    let len = check(m, n, &a, &b);
    assert_eq!(dst.len(), len, "matmul: the output holds {} values, not {m}×{n}", dst.len());
    if m == 0 || n == 0 {
        return;
    }
    if a.cols == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    // SAFETY: `check` and the assert above establish that `a` is read at r·rs + c·cs for r < m,
    // c < k and `b` at r·rs + c·cs for r < k, c < n, all inside their slices (`in_bounds`, with
    // the largest offset ≤ isize::MAX so the strides convert), and that `dst` is written at
    // i·n + j < m·n = dst.len(). `dst` is a unique borrow, so it aliases neither input, and all
    // three outlive the call: gemm returns only when every task it spawned has finished.
    // Without `accumulate` (read_dst false) gemm never reads `dst`.
    unsafe { raw(dst.as_mut_ptr(), a, b, accumulate, kernel) }
}

/// `a · b` into a new row-major `a.rows × b.cols` vector, written once (no zero fill first: the
/// product overwrites every value).
pub fn matmul_new(a: MatRef, b: MatRef, kernel: Kernel) -> Vec<f32> {
    let (m, n) = (a.rows, b.cols);
    let len = check(m, n, &a, &b);
    if m == 0 || n == 0 || a.cols == 0 {
        return vec![0.0; len];
    }
    let mut out = Vec::with_capacity(len);
    // SAFETY: as in `matmul`, with `out`'s capacity of m·n in place of `dst`: without read_dst
    // gemm writes every one of the m·n values and reads none, so they are initialised when
    // set_len runs. `out` is owned here, so it aliases neither input.
    unsafe {
        raw(out.as_mut_ptr(), a, b, false, kernel);
        out.set_len(len);
    }
    out
}

/// # Safety
/// `dst` must be valid for writes (and reads, with `accumulate`) of `a.rows × b.cols` values,
/// row-major, alias neither input, and the views must be in bounds with `a.cols == b.rows > 0`.
unsafe fn raw(dst: *mut f32, a: MatRef, b: MatRef, accumulate: bool, kernel: Kernel) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let parallelism = match kernel {
        Kernel::Simd(p) => p,
        Kernel::Stable => {
            // SAFETY: the caller's contract; with beta 0 matrixmultiply never reads `dst`.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.data.as_ptr(),
                    a.row_stride as isize,
                    a.col_stride as isize,
                    b.data.as_ptr(),
                    b.row_stride as isize,
                    b.col_stride as isize,
                    if accumulate { 1.0 } else { 0.0 },
                    dst,
                    n as isize,
                    1,
                );
            }
            return;
        }
    };
    // SAFETY: the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product by the definition, in f64.
    fn naive(a: &MatRef, b: &MatRef) -> Vec<f64> {
        let at = |m: &MatRef, r: usize, c: usize| f64::from(m.data[r * m.row_stride + c * m.col_stride]);
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols).map(|p| at(a, i, p) * at(b, p, j)).sum();
            }
        }
        out
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }

    #[test]
    fn every_layout_equals_the_definition() {
        let values: Vec<f32> = (0..600).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        let (m, k, n) = (7, 13, 5);
        let a = MatRef::row_major(&values[..m * k], m, k);
        let bt = MatRef::transposed(&values[100..100 + n * k], n, k);
        let band = MatRef::rows_strided(&values[200..], m, k, 20);
        let b = MatRef::row_major(&values[400..400 + k * n], k, n);
        for kernel in [Kernel::Simd(Parallelism::None), Kernel::Simd(Parallelism::Rayon(0)), Kernel::Stable] {
            for (x, y) in [(a, b), (a, bt), (band, b), (band, bt)] {
                let want = naive(&x, &y);
                close(&matmul_new(x, y, kernel), &want);
                let mut dst = vec![1.0f32; m * n];
                matmul(&mut dst, x, y, true, kernel);
                close(&dst, &want.iter().map(|w| w + 1.0).collect::<Vec<_>>());
                matmul(&mut dst, x, y, false, kernel);
                close(&dst, &want);
            }
        }
    }

    #[test]
    fn empty_inner_dimension_gives_zeros_or_leaves_the_sum() {
        let a = MatRef::row_major(&[], 2, 0);
        let b = MatRef::row_major(&[], 0, 3);
        assert_eq!(matmul_new(a, b, Kernel::Simd(Parallelism::None)), vec![0.0; 6]);
        let mut dst = vec![2.0; 6];
        matmul(&mut dst, a, b, true, Kernel::Simd(Parallelism::None));
        assert_eq!(dst, vec![2.0; 6]);
        matmul(&mut dst, a, b, false, Kernel::Simd(Parallelism::None));
        assert_eq!(dst, vec![0.0; 6]);
    }

    #[test]
    #[should_panic(expected = "matmul: a is 2×3")]
    fn a_view_past_its_slice_is_refused() {
        let a = MatRef::row_major(&[1.0; 5], 2, 3);
        let b = MatRef::row_major(&[1.0; 6], 3, 2);
        let _ = matmul_new(a, b, Kernel::Simd(Parallelism::None));
    }
}
