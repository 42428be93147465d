//! DOLG: Deep Orthogonal Fusion of Local and Global features.
//!
//! Yang et al., ICCV 2021, <https://arxiv.org/abs/2108.02927>; the authors' code is
//! github.com/feymanpriv/DOLG. Field names are the PyTorch module names, so every checkpoint key
//! maps to a field path without a renaming table:
//! `globalmodel` (ResNet) → `f3`, `f4`; `pool_g` (GeM) on `f4` → `fc_t` → `fg`;
//! `localmodel` on `f3` → `fl`; fusion → `fo`; `fc([fg, fo])` → descriptor.
//!
//! On the CPU, [`Dolg::into_native`] moves inference off burn's kernels: the ResNet trunk to
//! [`crate::kernels::cpu_resnet`] and the head (local branch without multi-atrous module, GeM, `fc_t`,
//! fusion, `fc`) to [`NativeHead`], which works on the trunk's channels-last maps directly.

use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::aspp::AsppKind;
use super::backbone::{Backbone, BackboneKind};
use super::fusion::{fuse_local, Fusion};
use super::gem::{column_sums, gap, pool_host, GeM};
use super::layers::{BatchNorm, Linear};
use super::local_branch::LocalBranch;
use super::{Arch, DolgConfig, ModelError, Pooling};
use crate::checkpoint::{Checkpoint, ParamKeys, VarBuilder};
use crate::kernels::cpu_resnet::{to_nchw, Act, HostConv1x1};
use crate::kernels::NativeTrunk;

/// The DOLG network, fields named after the authors' PyTorch modules: backbone, local branch, GeM, `fc_t`, fusion and `fc`.
#[derive(Module, Debug)]
pub struct Dolg {
    /// The trunk on burn's kernels. After [`Dolg::into_native`] its weights are dropped (empty
    /// tensors: the native copy in `cpu_backbone` is the one used).
    pub globalmodel: Backbone,
    /// `localmodel`: the local branch on `f3` (optional multi-atrous module, self-attention), giving `fl`; `None` for a global-only model.
    pub localmodel: Option<LocalBranch>,
    /// `None` for the GAP ablation (no learnable exponent).
    pub pool_g: Option<GeM>,
    /// `fc_t`: projects the pooled `f4` to the global feature `fg`, `[C4]` → `[fg_dim]`.
    pub fc_t: Linear,
    /// `fc`: the final projection of `[fg, fo]` (or of `fg` alone without a local branch) to the descriptor, `[out_dim]`.
    pub fc: Linear,
    /// How the local features are fused with `fg` (given at load, not read from the weights).
    #[module(skip)]
    pub fusion: Fusion,
    /// Native CPU path for the trunk (inference with folded BatchNorm); see [`crate::kernels`].
    #[module(skip)]
    pub cpu_backbone: Option<Arc<NativeTrunk>>,
    /// Native CPU path for the head, beside `cpu_backbone` (absent with a multi-atrous module,
    /// which stays on burn's kernels).
    #[module(skip)]
    pub cpu_head: Option<Arc<NativeHead>>,
}

/// Every intermediate of one forward pass (used by the parity tests; `raw` is the descriptor).
pub struct DolgOutput {
    /// Backbone stage-3 feature map `[B, C3, H3, W3]` (1024 channels for ResNet), input of the local branch.
    pub f3: Tensor<4>,
    /// Backbone stage-4 feature map `[B, C4, H4, W4]` (2048 channels for ResNet).
    pub f4: Tensor<4>,
    /// `f4` pooled by GeM (or GAP), `[B, C4]`.
    pub pooled: Tensor<2>,
    /// Global feature `fc_t(pooled)`, `[B, fg_dim]`.
    pub fg: Tensor<2>,
    /// Attention map of the local branch, `[B, 1, H3, W3]`; `None` without a local branch or attention.
    pub att: Option<Tensor<4>>,
    /// Fused local feature `fo`, `[B, fg_dim]`; `None` without a local branch.
    pub fo: Option<Tensor<2>>,
    /// `fc(z)` before any normalisation, [B, out_dim].
    pub raw: Tensor<2>,
}

impl Dolg {
    /// Load a model from a checkpoint. The configuration is detected from the keys unless `arch`
    /// overrides it; [`BatchNorm::Fold`] merges BatchNorm into the convolutions (inference only).
    /// The model runs on burn's kernels; [`super::RetrievalModel::dolg`] adds the native CPU path.
    pub fn load(ckpt: &Checkpoint, arch: Option<Arch>, fusion: Fusion, bn: BatchNorm, device: &Device) -> Result<(Self, DolgConfig), ModelError> {
        Self::load_with_keys(ckpt, arch, fusion, bn, device).map(|(m, c, _)| (m, c))
    }

    /// [`Dolg::load`], also returning the PyTorch key of every parameter and buffer (for training,
    /// which writes checkpoints under those names; complete with [`BatchNorm::Keep`]).
    pub(crate) fn load_with_keys(
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
        Ok((Self { globalmodel, localmodel, pool_g, fc_t, fc, fusion, cpu_backbone: None, cpu_head: None }, config, keys))
    }

    /// Move inference to the native CPU kernels where they apply: a trunk loaded with
    /// [`BatchNorm::Fold`] becomes a [`NativeTrunk`] (and the burn copy of its weights, about
    /// 100 MB for R50, is dropped), and the head a [`NativeHead`] unless it has a multi-atrous
    /// module. Returns the model and whether the trunk is now native; a model with unfolded
    /// BatchNorm is returned unchanged.
    pub fn into_native(self) -> (Self, bool) {
        let Some(trunk) = self.globalmodel.to_native() else { return (self, false) };
        let trunk = Arc::new(trunk);
        let head = NativeHead::new(&self).map(Arc::new);
        let globalmodel = self.globalmodel.without_weights();
        (Self { globalmodel, cpu_backbone: Some(trunk), cpu_head: head, ..self }, true)
    }

    /// Whether inference runs entirely on the native CPU path (trunk and head), which may be
    /// called from several threads at once.
    pub(crate) fn is_native(&self) -> bool {
        self.cpu_backbone.is_some() && self.cpu_head.is_some()
    }

    /// `x`: [B, 3, H, W] → every intermediate of the forward pass (B must be 1 on the native CPU path).
    pub fn forward_parts(&self, x: Tensor<4>) -> DolgOutput {
        let device = x.device();
        if let (Some(trunk), Some(head)) = (&self.cpu_backbone, &self.cpu_head) {
            let (chw, h, w) = host_image(x);
            let (f3, f4) = trunk.forward_act(&chw, h, w);
            let p = head.forward(&f3, &f4);
            let t2 = |v: Vec<f32>| {
                let n = v.len();
                Tensor::<2>::from_data(TensorData::new(v, [1, n]), &device)
            };
            return DolgOutput {
                f3: to_nchw(&f3, &device),
                f4: to_nchw(&f4, &device),
                pooled: t2(p.pooled),
                fg: t2(p.fg),
                att: p.att.map(|a| Tensor::from_data(TensorData::new(a, [1, 1, f3.h, f3.w]), &device)),
                fo: p.fo.map(t2),
                raw: t2(p.raw),
            };
        }
        let (f3, f4) = match &self.cpu_backbone {
            Some(native) => native.forward(x, &device),
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
        if let (Some(trunk), Some(head)) = (&self.cpu_backbone, &self.cpu_head) {
            let device = x.device();
            let (chw, h, w) = host_image(x);
            let (f3, f4) = trunk.forward_act(&chw, h, w);
            let raw = head.forward(&f3, &f4).raw;
            let n = raw.len();
            return Tensor::from_data(TensorData::new(raw, [1, n]), &device);
        }
        self.forward_parts(x).raw
    }
}

/// One `[1, 3, H, W]` image as CHW values.
fn host_image(x: Tensor<4>) -> (Vec<f32>, usize, usize) {
    let [b, _, h, w] = x.dims();
    assert_eq!(b, 1, "the fast CPU path describes one image at a time");
    (x.into_data().try_into_vec::<f32>().expect("f32 input"), h, w)
}

/// `y = W x + b` with `W` as PyTorch stores it, `[out][in]`.
#[derive(Debug)]
struct HostLinear {
    w: Vec<f32>,
    b: Vec<f32>,
    din: usize,
}

impl HostLinear {
    fn new(l: &Linear) -> Self {
        let [_, din] = l.weight.val().dims();
        Self { w: host(l.weight.val()), b: host(l.bias.val()), din }
    }

    fn forward(&self, x: &[f32]) -> Vec<f32> {
        debug_assert_eq!(x.len(), self.din);
        self.w.par_chunks(self.din).zip(&self.b).map(|(row, b)| b + row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>()).collect()
    }
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 weights")
}

/// The local branch without multi-atrous module, on channels-last `f3` (see [`LocalBranch`]).
#[derive(Debug)]
struct HostLocal {
    /// `conv1` with BatchNorm folded.
    conv1: HostConv1x1,
    cin: usize,
    dim: usize,
    /// `conv2` (`[dim]`, bias); `None` without attention.
    w2: Option<(Vec<f32>, f32)>,
}

/// The DOLG head on the native trunk's channels-last maps: GeM (or GAP) → `fc_t`; local branch;
/// fusion; `fc`. Orthogonal fusion is linear in `fl`, so `fo = mean(fl) − (fg·mean(fl))/‖fg‖² fg`
/// is computed from the mean local feature without forming the per-position projections.
#[derive(Debug)]
pub struct NativeHead {
    gem_p: Option<f32>,
    fc_t: HostLinear,
    fc: HostLinear,
    local: Option<HostLocal>,
    fusion: Fusion,
}

/// Host results of [`NativeHead::forward`] (one image).
pub struct HostParts {
    /// `f4` pooled by GeM (or GAP), `[C4]`.
    pub pooled: Vec<f32>,
    /// Global feature `fg`, `[fg_dim]`.
    pub fg: Vec<f32>,
    /// Attention score per `f3` position, row-major `[h3][w3]`.
    pub att: Option<Vec<f32>>,
    /// Fused local feature `fo`, `[fg_dim]`; `None` without a local branch.
    pub fo: Option<Vec<f32>>,
    /// Unnormalised descriptor `fc([fg, fo])`, `[out_dim]`.
    pub raw: Vec<f32>,
}

impl NativeHead {
    /// `None` when the head has a multi-atrous module or unfolded BatchNorm.
    fn new(m: &Dolg) -> Option<Self> {
        let local = match &m.localmodel {
            None => None,
            Some(l) if l.aspp.is_some() || l.conv1.bn.is_some() => return None,
            Some(l) => {
                let [dim, cin, _, _] = l.conv1.conv.weight.val().dims();
                let w1 = host(l.conv1.conv.weight.val());
                let b1 = l.conv1.conv.bias.as_ref().map_or_else(|| vec![0.0; dim], |b| host(b.val()));
                let w2 = l.conv2.as_ref().map(|c| (host(c.weight.val()), c.bias.as_ref().map_or(0.0, |b| host(b.val())[0])));
                Some(HostLocal { conv1: HostConv1x1::from_torch(&w1, cin, dim, b1), cin, dim, w2 })
            }
        };
        Some(Self { gem_p: m.pool_g.as_ref().map(|g| host(g.p.val())[0]), fc_t: HostLinear::new(&m.fc_t), fc: HostLinear::new(&m.fc), local, fusion: m.fusion })
    }

    /// The head on one image's channels-last `f3` and `f4` from the native trunk.
    pub fn forward(&self, f3: &Act, f4: &Act) -> HostParts {
        let pooled = pool_host(f4, self.gem_p);
        let fg = self.fc_t.forward(&pooled);
        let Some(local) = &self.local else {
            let raw = self.fc.forward(&fg);
            return HostParts { pooled, fg, att: None, fo: None, raw };
        };
        let (fl_mean, att) = local.mean_feature(f3);
        let fo: Vec<f32> = match self.fusion {
            Fusion::Orthogonal => {
                let dot = fg.iter().zip(&fl_mean).map(|(g, l)| g * l).sum::<f32>();
                let norm2 = fg.iter().map(|g| g * g).sum::<f32>();
                fl_mean.iter().zip(&fg).map(|(l, g)| l - dot / norm2 * g).collect()
            }
            Fusion::Concat => fl_mean,
            Fusion::Hadamard => fl_mean.iter().zip(&fg).map(|(l, g)| l * g).collect(),
        };
        let z: Vec<f32> = fg.iter().chain(&fo).copied().collect();
        let raw = self.fc.forward(&z);
        HostParts { pooled, fg, att, fo: Some(fo), raw }
    }
}

impl HostLocal {
    /// (`mean(fl)` over positions, attention map): `x = conv1(f3)`, `fl = softplus(conv2(relu x)) · x/‖x‖`.
    fn mean_feature(&self, f3: &Act) -> (Vec<f32>, Option<Vec<f32>>) {
        assert_eq!(f3.c, self.cin, "f3 width");
        let (m, dim) = (f3.h * f3.w, self.dim);
        let x = self.conv1.forward(&f3.data, m);
        // Per position: the attention score and the weight a/‖x‖ of its row in mean(fl).
        let (att, weight): (Vec<f32>, Vec<f32>) = x
            .par_chunks(dim)
            .map(|row| {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                let a = match &self.w2 {
                    Some((w2, b2)) => softplus20(b2 + row.iter().zip(w2).map(|(v, w)| v.max(0.0) * w).sum::<f32>()),
                    None => 1.0,
                };
                (a, a / norm)
            })
            .unzip();
        let sums = column_sums(&x, dim, |r, row, acc| {
            let s = weight[r];
            acc.iter_mut().zip(row).for_each(|(a, v)| *a += s * v);
        });
        let mean = sums.into_iter().map(|s| s / m as f32).collect();
        (mean, self.w2.is_some().then_some(att))
    }
}

/// PyTorch's `softplus` with β = 1 and threshold 20 (linear above it).
fn softplus20(z: f32) -> f32 {
    if z > 20.0 {
        z
    } else {
        z.exp().ln_1p()
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
