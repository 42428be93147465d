//! DOLG: Deep Orthogonal Fusion of Local and Global features.
//!
//! Yang et al., ICCV 2021, <https://arxiv.org/abs/2108.02927>; the authors' code is
//! github.com/feymanpriv/DOLG. Field names are the PyTorch module names, so every checkpoint key
//! maps to a field path without a renaming table:
//! `globalmodel` (ResNet) → `f3`, `f4`; `pool_g` (GeM) on `f4` → `fc_t` → `fg`;
//! `localmodel` on `f3` → `fl`; fusion → `fo`; `fc([fg, fo])` → descriptor.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::aspp::AsppKind;
use super::backbone::{Backbone, BackboneKind};
use super::fusion::{fuse_local, Fusion};
use super::gem::{gap, GeM};
use super::layers::{BatchNorm, Linear};
use super::local_branch::LocalBranch;
use super::{Arch, DolgConfig, ModelError, Pooling};
use crate::checkpoint::{Checkpoint, ParamKeys, VarBuilder};

#[derive(Module, Debug)]
pub struct Dolg {
    pub globalmodel: Backbone,
    pub localmodel: Option<LocalBranch>,
    /// `None` for the GAP ablation (no learnable exponent).
    pub pool_g: Option<GeM>,
    pub fc_t: Linear,
    pub fc: Linear,
    #[module(skip)]
    pub fusion: Fusion,
    /// Native CPU path for the ResNet trunk (inference with folded BatchNorm); see [`super::cpu_resnet`].
    #[module(skip)]
    pub cpu_backbone: Option<std::sync::Arc<super::cpu_resnet::CpuResNet>>,
}

/// Every intermediate of one forward pass (used by the parity tests; `raw` is the descriptor).
pub struct DolgOutput {
    pub f3: Tensor<4>,
    pub f4: Tensor<4>,
    pub pooled: Tensor<2>,
    pub fg: Tensor<2>,
    pub att: Option<Tensor<4>>,
    pub fo: Option<Tensor<2>>,
    /// `fc(z)` before any normalisation, [B, out_dim].
    pub raw: Tensor<2>,
}

impl Dolg {
    /// Load a model from a checkpoint. The configuration is detected from the keys unless `arch`
    /// overrides it; [`BatchNorm::Fold`] merges BatchNorm into the convolutions (inference only).
    /// The model runs on burn's kernels; [`super::RetrievalModel::dolg`] adds the native CPU trunk.
    pub fn load(ckpt: &Checkpoint, arch: Option<Arch>, fusion: Fusion, bn: BatchNorm, device: &Device) -> Result<(Self, DolgConfig), ModelError> {
        Self::load_with_keys(ckpt, arch, fusion, bn, device).map(|(m, c, _)| (m, c))
    }

    /// [`Dolg::load`], also returning the PyTorch key of every parameter and buffer (for training,
    /// which writes checkpoints under those names; complete with [`BatchNorm::Keep`]).
    pub fn load_with_keys(
        ckpt: &Checkpoint,
        arch: Option<Arch>,
        fusion: Fusion,
        bn: BatchNorm,
        device: &Device,
    ) -> Result<(Self, DolgConfig, ParamKeys), ModelError> {
        let mut config = DolgConfig::detect(ckpt)?;
        if let Some(a) = arch {
            config.backbone = BackboneKind::ResNet(a.depths());
            config.aspp = a.aspp();
        }
        config.fusion = fusion;
        let (f3_dim, f4_dim) = config.backbone.channels();
        let vb = VarBuilder::new(ckpt, device);
        let root = vb.root();
        let globalmodel = Backbone::load(config.backbone, &root.pp("globalmodel"), bn)?;
        let localmodel =
            if config.local { Some(LocalBranch::load(f3_dim, config.fg_dim, config.aspp, config.attention, &root.pp("localmodel"), bn)?) } else { None };
        let pool_g = match config.pooling {
            Pooling::Gem => Some(GeM::load(&root.pp("pool_g"))?),
            Pooling::Gap => None,
        };
        let fc_t = Linear::load(f4_dim, config.fg_dim, &root.pp("fc_t"))?;
        let fc_in = if config.local { 2 * config.fg_dim } else { config.fg_dim };
        let fc = Linear::load(fc_in, config.out_dim, &root.pp("fc"))?;
        let keys = vb.finish()?;
        Ok((Self { globalmodel, localmodel, pool_g, fc_t, fc, fusion, cpu_backbone: None }, config, keys))
    }

    pub fn forward_parts(&self, x: Tensor<4>) -> DolgOutput {
        let (f3, f4) = match &self.cpu_backbone {
            Some(native) => {
                let device = x.device();
                native.forward(x, &device)
            }
            None => self.globalmodel.forward(x),
        };
        let pooled = match &self.pool_g {
            Some(g) => g.forward(f4.clone()),
            None => gap(f4.clone()),
        };
        let fg = self.fc_t.forward(pooled.clone());
        let (z, att, fo) = match &self.localmodel {
            Some(local) => {
                let out = local.forward(f3.clone());
                let fo = fuse_local(self.fusion, fg.clone(), out.fl);
                (Tensor::cat(vec![fg.clone(), fo.clone()], 1), out.att, Some(fo))
            }
            None => (fg.clone(), None, None),
        };
        let raw = self.fc.forward(z);
        DolgOutput { f3, f4, pooled, fg, att, fo, raw }
    }

    /// `x`: [B, 3, H, W] → unnormalised descriptors [B, out_dim].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_parts(x).raw
    }
}

impl Arch {
    fn aspp(self) -> Option<AsppKind> {
        match self {
            Arch::R50 | Arch::R101 => None,
            Arch::R50Ma | Arch::R101Ma => Some(AsppKind::Official),
            Arch::R50MaPaper | Arch::R101MaPaper => Some(AsppKind::Paper),
        }
    }
}
