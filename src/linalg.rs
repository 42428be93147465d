//! Dot products over f32 vectors, shared by ranking (eval), re-ranking and duplicate search: one
//! implementation with eight independent partial sums (it vectorises) and a fixed summation
//! order, so the same pair always gets the same score, bit for bit, wherever it is computed.

const LANES: usize = 8;

/// Final reduction shared by [`dot`] and [`dot4`], so both round identically.
#[inline]
fn reduce(acc: &[f32; LANES], tail: f32) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Dot product over the common length, with 8 independent f32 accumulators (vectorises;
/// fixed summation order, so results are reproducible).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    reduce(&acc, tail)
}

/// [`dot`] of four rows with one query at once, sharing the query loads. Each result is
/// bit-identical to `dot(row, q)`: the per-pair operations and their order are the same.
#[inline]
pub(crate) fn dot4(rows: [&[f32]; 4], q: &[f32]) -> [f32; 4] {
    let n = q.len();
    let body = n - n % LANES;
    let mut acc = [[0.0f32; LANES]; 4];
    let rows_body = rows.map(|r| &r[..body]);
    for (c, y) in q[..body].chunks_exact(LANES).enumerate() {
        for (acc, row) in acc.iter_mut().zip(rows_body) {
            let x = &row[c * LANES..][..LANES];
            for k in 0..LANES {
                acc[k] += x[k] * y[k];
            }
        }
    }
    let mut out = [0.0f32; 4];
    for ((o, acc), row) in out.iter_mut().zip(&acc).zip(rows) {
        let tail: f32 = row[body..n].iter().zip(&q[body..]).map(|(x, y)| x * y).sum();
        *o = reduce(acc, tail);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot4_is_bit_identical_to_dot() {
        let mut x = 0.123_f32;
        let mut next = || {
            x = (x * 3.7 + 0.311).fract();
            x - 0.5
        };
        for dim in 1..42 {
            let rows: Vec<Vec<f32>> = (0..4).map(|_| (0..dim).map(|_| next()).collect()).collect();
            let q: Vec<f32> = (0..dim).map(|_| next()).collect();
            let got = dot4([&rows[0], &rows[1], &rows[2], &rows[3]], &q);
            for (r, g) in rows.iter().zip(got) {
                assert_eq!(g.to_bits(), dot(r, &q).to_bits(), "dim {dim}");
            }
        }
    }
}
