//! ResNet-50/101 backbone in the pycls layout used by the DOLG authors (module `globalmodel`).
//!
//! He et al., "Deep Residual Learning for Image Recognition", <https://arxiv.org/abs/1512.03385>.
//! Bottleneck with the stride on the 3x3 conv, projection shortcut in the first block of every
//! stage, no conv bias, BN eps 1e-5, no dilation. Returns the stride-16 map `f3` (end of `s3`) and
//! the stride-32 map `f4` (end of `s4`).

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::Tensor;

use super::layers::{BatchNorm, ConvBn, ConvSpec};
use crate::checkpoint::{CheckpointError, VarPath};
use crate::kernels::cpu_resnet::{BlockWeights, ConvWeights, CpuResNet};
use crate::kernels::NativeTrunk;

/// Blocks per stage: ResNet-50 and ResNet-101.
pub const R50_DEPTHS: [usize; 4] = [3, 4, 6, 3];
/// Blocks per stage of ResNet-101.
pub const R101_DEPTHS: [usize; 4] = [3, 4, 23, 3];
const WIDTHS: [usize; 4] = [256, 512, 1024, 2048];
const BOTTLENECK: [usize; 4] = [64, 128, 256, 512];
const STRIDES: [usize; 4] = [1, 2, 2, 2];

/// `stem`: conv 7x7/2 → BN → ReLU → max-pool 3x3/2.
#[derive(Module, Debug)]
pub struct ResStem {
    /// `stem.conv` + `stem.bn`: the 7x7/2 convolution from 3 to 64 channels with its BatchNorm.
    pub conv: ConvBn,
}

impl ResStem {
    fn load(vb: &VarPath, bn: BatchNorm) -> Result<Self, CheckpointError> {
        let spec = ConvSpec::new(3, 64, 7).stride(2).padding(3);
        Ok(Self { conv: ConvBn::load(spec, &vb.pp("conv"), &vb.pp("bn"), bn)? })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.conv.forward(x));
        max_pool2d(x, MaxPoolOptions::new([3, 3]).with_stride([2, 2]).with_padding([1, 1]))
    }
}

/// Bottleneck transform `f`: a (1x1) → b (3x3, strided) → c (1x1), each with BN.
#[derive(Module, Debug)]
pub struct BottleneckTransform {
    /// `f.a` + `f.a_bn`: 1x1 reduction to the bottleneck width.
    pub a: ConvBn,
    /// `f.b` + `f.b_bn`: 3x3 convolution at the bottleneck width, carrying the block's stride.
    pub b: ConvBn,
    /// `f.c` + `f.c_bn`: 1x1 expansion to the stage width.
    pub c: ConvBn,
}

/// Residual block `s{S}.b{i}`: `relu(proj(x) + f(x))`.
#[derive(Module, Debug)]
pub struct ResBlock {
    /// `f`: the bottleneck transform.
    pub f: BottleneckTransform,
    /// Projection shortcut (`proj` + `bn`), first block of each stage only.
    pub proj: Option<ConvBn>,
}

impl ResBlock {
    fn load(cin: usize, cout: usize, width: usize, stride: usize, vb: &VarPath, bn: BatchNorm) -> Result<Self, CheckpointError> {
        let f = vb.pp("f");
        let t = BottleneckTransform {
            a: ConvBn::load(ConvSpec::new(cin, width, 1), &f.pp("a"), &f.pp("a_bn"), bn)?,
            b: ConvBn::load(ConvSpec::new(width, width, 3).stride(stride), &f.pp("b"), &f.pp("b_bn"), bn)?,
            c: ConvBn::load(ConvSpec::new(width, cout, 1), &f.pp("c"), &f.pp("c_bn"), bn)?,
        };
        let proj =
            if cin != cout || stride != 1 { Some(ConvBn::load(ConvSpec::new(cin, cout, 1).stride(stride), &vb.pp("proj"), &vb.pp("bn"), bn)?) } else { None };
        Ok(Self { f: t, proj })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.proj {
            Some(p) => p.forward(x.clone()),
            None => x.clone(),
        };
        let y = relu(self.f.a.forward(x));
        let y = relu(self.f.b.forward(y));
        let y = self.f.c.forward(y);
        relu(y + shortcut)
    }
}

/// One stage `s{S}` with blocks `b1..bN`.
#[derive(Module, Debug)]
pub struct ResStage {
    /// Blocks `b1..bN`, in order.
    pub blocks: Vec<ResBlock>,
}

impl ResStage {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.blocks.iter().fold(x, |x, b| b.forward(x))
    }
}

/// The backbone; field names are the PyTorch module names.
#[derive(Module, Debug)]
pub struct ResNet {
    /// `stem`: 7x7/2 convolution, BatchNorm, ReLU, 3x3/2 max-pool (stride 4, 64 channels).
    pub stem: ResStem,
    /// `s1`: 256 channels, stride 4.
    pub s1: ResStage,
    /// `s2`: 512 channels, stride 8.
    pub s2: ResStage,
    /// `s3`: 1024 channels, stride 16; its output is `f3`.
    pub s3: ResStage,
    /// `s4`: 2048 channels, stride 32; its output is `f4`.
    pub s4: ResStage,
}

impl ResNet {
    /// The native CPU engine's copy of this trunk ([`CpuResNet`]), for a network loaded with
    /// [`BatchNorm::Fold`].
    pub fn to_cpu(&self) -> CpuResNet {
        let (stem, stages) = self.folded();
        CpuResNet::new(&stem, [&stages[0], &stages[1], &stages[2], &stages[3]])
    }

    /// This trunk on dolg's own engine: on the GPU when the process opened one (`--device
    /// cuda`), else [`ResNet::to_cpu`].
    pub fn to_native(&self) -> NativeTrunk {
        #[cfg(feature = "cuda")]
        if let Some(gpu) = crate::kernels::cuda::opened() {
            let (stem, stages) = self.folded();
            let t = crate::kernels::cuda::CudaTrunk::resnet(gpu, &stem, [&stages[0], &stages[1], &stages[2], &stages[3]]);
            return NativeTrunk::Cuda(t.unwrap_or_else(|e| panic!("{e}")));
        }
        NativeTrunk::ResNet(self.to_cpu())
    }

    /// The stem's and every block's weights, BatchNorm folded in.
    fn folded(&self) -> (ConvWeights, [Vec<BlockWeights>; 4]) {
        let block = |b: &ResBlock| BlockWeights {
            a: b.f.a.folded_weights(),
            b: b.f.b.folded_weights(),
            c: b.f.c.folded_weights(),
            proj: b.proj.as_ref().map(ConvBn::folded_weights),
        };
        let stage = |s: &ResStage| s.blocks.iter().map(block).collect::<Vec<_>>();
        (self.stem.conv.folded_weights(), [stage(&self.s1), stage(&self.s2), stage(&self.s3), stage(&self.s4)])
    }

    /// `depths`: blocks per stage ([`R50_DEPTHS`], [`R101_DEPTHS`]). With [`BatchNorm::Fold`],
    /// every BN is merged into its convolution (inference only).
    pub fn load(depths: [usize; 4], vb: &VarPath, bn: BatchNorm) -> Result<Self, CheckpointError> {
        let stem = ResStem::load(&vb.pp("stem"), bn)?;
        let mut cin = 64;
        let mut stages = Vec::with_capacity(4);
        for s in 0..4 {
            let sv = vb.pp(format!("s{}", s + 1));
            let mut blocks = Vec::with_capacity(depths[s]);
            for i in 0..depths[s] {
                let stride = if i == 0 { STRIDES[s] } else { 1 };
                blocks.push(ResBlock::load(cin, WIDTHS[s], BOTTLENECK[s], stride, &sv.pp(format!("b{}", i + 1)), bn)?);
                cin = WIDTHS[s];
            }
            stages.push(ResStage { blocks });
        }
        let [s1, s2, s3, s4]: [ResStage; 4] = stages.try_into().expect("four stages");
        Ok(Self { stem, s1, s2, s3, s4 })
    }

    /// Number of blocks per stage as declared by the checkpoint keys `<prefix>.s{S}.b{i}.f.a.weight`.
    pub(crate) fn depths_in(keys: impl Iterator<Item = impl AsRef<str>>, prefix: &str) -> [usize; 4] {
        let mut depths = [0usize; 4];
        for k in keys {
            let k = k.as_ref();
            // A bare backbone file has its keys at the root (`s1.b1…`), a DOLG file under `globalmodel.`.
            let rest = if prefix.is_empty() { k.strip_prefix('s') } else { k.strip_prefix(prefix).and_then(|r| r.strip_prefix(".s")) };
            let Some(rest) = rest else { continue };
            let mut parts = rest.split('.');
            let (Some(s), Some(b)) = (parts.next(), parts.next()) else { continue };
            if let (Ok(s), Some(Ok(b))) = (s.parse::<usize>(), b.strip_prefix('b').map(str::parse::<usize>)) {
                if (1..=4).contains(&s) {
                    depths[s - 1] = depths[s - 1].max(b);
                }
            }
        }
        depths
    }

    /// `x`: [B, 3, H, W] → (`f3` [B, 1024, H/16, W/16], `f4` [B, 2048, H/32, W/32]).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let x = self.stem.forward(x);
        let x = self.s1.forward(x);
        let x = self.s2.forward(x);
        let f3 = self.s3.forward(x);
        let f4 = self.s4.forward(f3.clone());
        (f3, f4)
    }
}
