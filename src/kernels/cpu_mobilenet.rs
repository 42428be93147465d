//! Fast CPU inference path for the MobileNetV2 trunk (`model::mobilenet_v2`, which builds this
//! from its folded weights: `MobileNetV2::to_cpu`), in the native engine's terms: activations
//! channels-last through the trunk, buffers from the shared pool, no burn tensors.
//!
//! Each inverted residual block is three layers: the 1x1 expansion (ReLU6) on
//! [`super::conv_gemm`] (or the `gemm` crate without AVX-512), written straight into the
//! zero-bordered input of the [`Depthwise`] 3x3 (ReLU6), then the 1x1 linear projection, which
//! adds the block's input in its epilogue when the block has a residual. The three run band by
//! band (`Block::forward`): the expanded map, the widest of the network, is never stored whole.

use rayon::prelude::*;

use super::conv_gemm::{Activation, Rows};
use super::cpu_resnet::{band_plan, Act, Conv, ConvWeights, Epilogue, HeldRows, Pool};
use super::depthwise::Depthwise;

/// One inverted residual block's weights as PyTorch stores them, BatchNorm folded in (what the CPU
/// and the GPU engines build their blocks from).
#[derive(Debug, Clone)]
pub struct InvertedResidualWeights {
    /// The 1x1 expansion, `None` when the expansion factor is 1.
    pub expand: Option<ConvWeights>,
    /// The 3x3 depthwise convolution, `[c][1][3][3]` (carries the block's stride).
    pub depthwise: ConvWeights,
    /// The 1x1 linear projection.
    pub project: ConvWeights,
    /// Whether the block's input is added to its output.
    pub residual: bool,
}

#[derive(Debug)]
struct Block {
    expand: Option<Conv>,
    depthwise: Depthwise,
    project: Conv,
    residual: bool,
}

impl Block {
    /// The block on `x`, band by band: the expanded (hidden) map, six times wider than the
    /// block's input, is never stored whole. A band of output rows expands only the input rows
    /// it reads (kept in a buffer of about 256 KiB, so that the depthwise convolution reads
    /// them from L2 right after the expansion wrote them), then runs the depthwise convolution
    /// and the projection on them. Bands go down a chunk of rows one after another, and the
    /// hidden rows two bands share are kept, not recomputed; chunks run in parallel.
    fn forward(&self, x: &Act, pool: &Pool) -> Act {
        let d = &self.depthwise;
        let (s, n) = (d.stride, self.project.cout);
        let (ho, wo) = (d.out_size(x.h), d.out_size(x.w));
        let prow = (x.w + 2) * d.c;
        let (bh, per) = band_plan(ho, prow, s, 256 << 10);
        let mut out = pool.take(ho * wo * n);
        out.par_chunks_mut(per * wo * n).enumerate().for_each(|(i, dst)| self.chunk(x, i * per, bh, dst, pool));
        Act { h: ho, w: wo, c: n, data: out }
    }

    /// Output rows from `oy_a` (as many as `dst` holds), `bh` at a time.
    fn chunk(&self, x: &Act, oy_a: usize, bh: usize, dst: &mut [f32], pool: &Pool) {
        let d = &self.depthwise;
        let (s, hid, n) = (d.stride, d.c, self.project.cout);
        let (w, wo) = (x.w, d.out_size(x.w));
        let (wp, prow) = (w + 2, (w + 2) * d.c);
        let rows = dst.len() / (wo * n);
        let mut hidden = pool.take(((bh - 1) * s + 3) * prow);
        let mut dw = pool.take(bh * wo * hid);
        let mut held = HeldRows::new(x.h, w, hid);
        let mut oy0 = oy_a;
        while oy0 < oy_a + rows {
            let oy1 = (oy0 + bh).min(oy_a + rows);
            held.advance(&mut hidden, oy0 * s..(oy1 - 1) * s + 3, |rows, interior, layout| {
                let c = x.c;
                let src = &x.data[rows.start * w * c..rows.end * w * c];
                match &self.expand {
                    Some(e) => e.pointwise_rows(src, rows.len() * w, interior, layout, Epilogue::Relu6),
                    None => {
                        for (i, row) in src.chunks(w * c).enumerate() {
                            interior[layout.base(i * w)..][..w * c].copy_from_slice(row);
                        }
                    }
                }
            });
            for r in 0..oy1 - oy0 {
                d.row(&hidden, wp, r, wo, &mut dw[r * wo * hid..(r + 1) * wo * hid], Activation::Relu6);
            }
            let m = (oy1 - oy0) * wo;
            let epi = if self.residual { Epilogue::Add(&x.data[oy0 * wo * n..]) } else { Epilogue::Linear };
            self.project.pointwise_rows(&dw[..m * hid], m, &mut dst[(oy0 - oy_a) * wo * n..][..m * n], Rows::dense(m, n), epi);
            oy0 = oy1;
        }
        pool.give(hidden);
        pool.give(dw);
    }
}

/// The MobileNetV2 trunk with folded weights, ready for single-image inference.
#[derive(Debug)]
pub struct CpuMobileNetV2 {
    stem: Conv,
    blocks: Vec<Block>,
    head: Conv,
    /// Index of the block whose output is `f3`.
    f3_block: usize,
    pool: Pool,
}

impl CpuMobileNetV2 {
    /// The trunk from its weights: the stem (3x3/2, ReLU6), the inverted residual blocks, the
    /// 1x1 head (ReLU6), and which block's output is `f3` (packed here, once).
    pub fn new(stem: &ConvWeights, blocks: &[InvertedResidualWeights], head: &ConvWeights, f3_block: usize) -> Self {
        assert!(f3_block < blocks.len(), "f3 block {f3_block} of {}", blocks.len());
        let blocks = blocks
            .iter()
            .map(|b| {
                let d = &b.depthwise;
                let depthwise = Depthwise::from_torch(&d.weight, &d.bias, d.cout, d.stride);
                Block { expand: b.expand.as_ref().map(Conv::new), depthwise, project: Conv::new(&b.project), residual: b.residual }
            })
            .collect();
        Self { stem: Conv::new(stem), blocks, head: Conv::new(head), f3_block, pool: Pool::default() }
    }

    /// CHW image (one, RGB normalised) → (`f3`, `f4`) channels-last.
    pub(crate) fn forward_act(&self, chw: &[f32], h: usize, w: usize) -> (Act, Act) {
        let pool = &self.pool;
        let mut x = self.stem.forward_chw(chw, h, w, Epilogue::Relu6, pool);
        let mut f3 = None;
        for (i, b) in self.blocks.iter().enumerate() {
            let y = b.forward(&x, pool);
            let done = std::mem::replace(&mut x, y);
            if i == self.f3_block + 1 {
                // The f3 block's output, which the next block has just read, leaves as f3.
                f3 = Some(done);
            } else {
                pool.give(done.data);
            }
        }
        let f3 = f3.unwrap_or_else(|| x.clone());
        let f4 = self.head.forward(&x, Epilogue::Relu6, pool);
        pool.give(x.data);
        (f3, f4)
    }
}
