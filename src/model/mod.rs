//! The DOLG network and its pieces, one file each, loaded by the authors' PyTorch key names.

pub mod aspp;
pub mod backbone;
pub mod delg;
pub mod dolg;
pub mod fusion;
pub mod gem;
pub mod layers;
pub mod local_branch;
pub mod local_features;
pub mod mobilenet_v2;
pub mod off_the_shelf;
pub mod resnet;
pub mod xfeat;

pub use aspp::AsppKind;
pub use backbone::{Backbone, BackboneKind};
pub use delg::Delg;
pub use dolg::{Dolg, DolgOutput};
pub use fusion::Fusion;
pub use layers::BatchNorm;
pub use local_features::{LocalFeatures, LocalKind, LocalModel};
pub use off_the_shelf::OffTheShelf;

use std::sync::Arc;

use burn::tensor::{Device, Tensor};

use crate::checkpoint::{Checkpoint, CheckpointError, VarBuilder};
use crate::preprocess::Normalization;
use resnet::{R101_DEPTHS, R50_DEPTHS};

/// Why a model could not be built from a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The checkpoint could not be read, or lacks a tensor or has one of the wrong shape.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A checkpoint whose keys or shapes match no architecture this crate builds.
    #[error("{path}: cannot tell the architecture: {reason}")]
    UnknownArch {
        /// The checkpoint file.
        path: std::path::PathBuf,
        /// Which key or shape did not fit.
        reason: String,
    },
    /// An `--arch` override given for a DELG checkpoint, whose architecture is read from its keys.
    #[error("{path} is a DELG checkpoint: --arch applies to DOLG checkpoints only (DELG's architecture is read from its keys)")]
    DelgOptions {
        /// The DELG checkpoint file.
        path: std::path::PathBuf,
    },
}

/// `--arch` values: backbone depth and multi-atrous variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// ResNet-50, no multi-atrous module (like the released weights).
    R50,
    /// ResNet-101, no multi-atrous module.
    R101,
    /// ResNet-50 with the authors' multi-atrous module (dilations 6/12/18, 1x1, image pool).
    R50Ma,
    /// ResNet-101 with the authors' multi-atrous module.
    R101Ma,
    /// ResNet-50 with the paper's multi-atrous variant (dilations 3/6/9).
    R50MaPaper,
    /// ResNet-101 with the paper's multi-atrous variant.
    R101MaPaper,
}

impl Arch {
    pub(crate) fn depths(self) -> [usize; 4] {
        match self {
            Arch::R50 | Arch::R50Ma | Arch::R50MaPaper => R50_DEPTHS,
            _ => R101_DEPTHS,
        }
    }
}

/// Global pooling of `f4` (`--pooling`, the training config's `pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Generalised mean with a learnable exponent (`pool_g.p`), the paper's.
    #[default]
    Gem,
    /// Global average pooling (ablation).
    Gap,
}

/// Which kernels compute a DOLG model's ResNet trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// burn's generic kernels, on the model's device.
    Burn,
    /// dolg's own engine ([`crate::kernels`]): the trunk with BatchNorm folded, on the CPU
    /// (channels-last, one image at a time) or on the GPU when the process opened one (`--device
    /// cuda`). The heads have native CPU paths of their own where the model has them.
    Native,
}

impl Kernels {
    /// The default: native, unless the process chose burn's kernels on the CPU
    /// ([`crate::runtime::CpuKernels::Burn`], `--cpu-kernels burn`) without a GPU.
    pub fn default_for(device: &Device) -> Self {
        let cpu_native = *device == Device::flex() && crate::runtime::cpu_kernels() != crate::runtime::CpuKernels::Burn;
        if cpu_native || crate::kernels::on_gpu() {
            Kernels::Native
        } else {
            Kernels::Burn
        }
    }
}

/// Everything that shapes a DOLG network, detected from a checkpoint's keys by [`DolgConfig::detect`],
/// and what computes its trunk.
#[derive(Debug, Clone, PartialEq)]
pub struct DolgConfig {
    /// The trunk (`globalmodel`): a ResNet of some depth, or MobileNetV2.
    pub backbone: BackboneKind,
    /// Width of `fg` (output of `fc_t`) and of the local features.
    pub fg_dim: usize,
    /// The local branch's multi-atrous module; `None` without one (as in the released weights).
    pub aspp: Option<AsppKind>,
    /// Whether the checkpoint has a local branch (`localmodel.*`); without one the descriptor is `fc(fg)` alone.
    pub local: bool,
    /// Whether the local branch has its attention score conv (`localmodel.conv2`); `false` in the self-attention-off ablation.
    pub attention: bool,
    /// Global pooling of `f4`: GeM when the checkpoint has `pool_g.p`, average pooling otherwise.
    pub pooling: Pooling,
    /// How the local features are fused with `fg` (not recorded in the keys: the caller's choice).
    pub fusion: Fusion,
    /// Width of the global descriptor (rows of `fc.weight`).
    pub out_dim: usize,
    /// What computes the trunk. [`Dolg::load`] builds burn modules ([`Kernels::Burn`]);
    /// [`RetrievalModel::dolg`] adds the native trunk where [`Kernels::default_for`] says so, and
    /// [`RetrievalModel::dolg_with_kernels`] where its caller does.
    pub kernels: Kernels,
}

impl DolgConfig {
    /// Read the configuration from the checkpoint's keys and tensor shapes, with orthogonal fusion and
    /// [`Kernels::Burn`]; errors name the key that does not fit.
    pub fn detect(ckpt: &Checkpoint) -> Result<Self, ModelError> {
        let err = |reason: String| ModelError::UnknownArch { path: ckpt.path().to_owned(), reason };
        let backbone = BackboneKind::detect(ckpt.keys(), "globalmodel").ok_or_else(|| {
            err("expected a ResNet ('globalmodel.s1..s4.b*') or MobileNetV2 ('globalmodel.features.*') backbone (is this a DOLG checkpoint?)".into())
        })?;
        // fc_t maps the backbone's f4 to fg; checking its input width here names the real culprit
        // (e.g. a transposed matrix) instead of a downstream tensor sized from it.
        let f4_dim = backbone.channels().1;
        let fg_dim = match ckpt.shape("fc_t.weight") {
            Some(&[fg, input]) if input == f4_dim => fg,
            Some(found) => {
                return Err(CheckpointError::ShapeMismatch {
                    path: ckpt.path().to_owned(),
                    key: "fc_t.weight".into(),
                    expected: vec![1024, f4_dim],
                    found: found.to_vec(),
                }
                .into())
            }
            None => return Err(CheckpointError::Missing { path: ckpt.path().to_owned(), key: "fc_t.weight".into(), expected: vec![1024, f4_dim] }.into()),
        };
        let aspp = match ckpt.shape("localmodel.aspp.conv_after.0.weight") {
            None => None,
            Some([_, 2560, ..]) => Some(AsppKind::Official),
            Some([_, 1536, ..]) => Some(AsppKind::Paper),
            Some(s) => {
                return Err(err(format!("'localmodel.aspp.conv_after.0.weight' has shape {s:?}; expected input width 2560 (official) or 1536 (paper variant)")))
            }
        };
        let local = ckpt.keys().any(|k| k.starts_with("localmodel."));
        // The self-attention ablation has no score conv.
        let attention = !local || ckpt.contains("localmodel.conv2.weight");
        let out_dim = match ckpt.shape("fc.weight") {
            Some([out, _]) => *out,
            Some(s) => return Err(err(format!("'fc.weight' has shape {s:?}; expected [out_dim, in_dim]"))),
            None => return Err(CheckpointError::Missing { path: ckpt.path().to_owned(), key: "fc.weight".into(), expected: vec![512, 2 * fg_dim] }.into()),
        };
        let pooling = if ckpt.contains("pool_g.p") {
            Pooling::Gem
        } else {
            tracing::warn!("{}: no 'pool_g.p' key: loading the GAP (average pooling) variant of the global branch", ckpt.path().display());
            Pooling::Gap
        };
        Ok(Self { backbone, fg_dim, aspp, local, attention, pooling, fusion: Fusion::Orthogonal, out_dim, kernels: Kernels::Burn })
    }

    /// A short human name such as `DOLG-R50` or `DOLG-R101+MA`.
    pub fn name(&self) -> String {
        let backbone = self.backbone.name();
        let ma = match self.aspp {
            None => "",
            Some(AsppKind::Official) => "+MA",
            Some(AsppKind::Paper) => "+MA(3/6/9)",
        };
        let local = if self.local { "" } else { " (no local branch)" };
        let pool = if self.pooling == Pooling::Gap { " (GAP)" } else { "" };
        format!("DOLG-{backbone}{ma}{local}{pool}")
    }
}

/// Anything that turns an image tensor into a global descriptor.
// One per process, built once: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum RetrievalModel {
    /// A DOLG network and the configuration it was built with.
    Dolg(Dolg, DolgConfig),
    /// A bare ImageNet backbone whose descriptor is GeM (p = 3) of `f4`.
    OffTheShelf(OffTheShelf),
    /// A DELG checkpoint ([`delg`]): its global descriptor, `fc(GeM(f4))` per scale. Shared
    /// with [`LocalModel::Delg`] when an index also stores its local features.
    Delg(Arc<Delg>),
}

impl RetrievalModel {
    /// Load a DOLG checkpoint for inference (BatchNorm folded), with the default kernels for
    /// `device` ([`Kernels::default_for`]: the native trunk on the CPU). A DELG checkpoint
    /// (detected from its keys, [`Delg::is_delg`]) loads as [`RetrievalModel::Delg`]; `arch`
    /// must then be `None`.
    pub fn dolg(ckpt: &Checkpoint, arch: Option<Arch>, fusion: Fusion, device: &Device) -> Result<Self, ModelError> {
        Self::dolg_with_kernels(ckpt, arch, fusion, Kernels::default_for(device), device)
    }

    /// [`RetrievalModel::dolg`] with the trunk's kernels chosen by the caller. [`Kernels::Native`]
    /// applies to a ResNet trunk (a MobileNetV2 one stays on burn's kernels, and the returned
    /// config says so); on a device other than the CPU it moves `f3` and `f4` through host
    /// memory, which works but is slow.
    pub fn dolg_with_kernels(ckpt: &Checkpoint, arch: Option<Arch>, fusion: Fusion, kernels: Kernels, device: &Device) -> Result<Self, ModelError> {
        if Delg::is_delg(ckpt) {
            if arch.is_some() {
                return Err(ModelError::DelgOptions { path: ckpt.path().to_owned() });
            }
            return Ok(RetrievalModel::Delg(Arc::new(Delg::load_with_kernels(ckpt, kernels, device)?)));
        }
        let (mut m, mut c) = Dolg::load(ckpt, arch, fusion, BatchNorm::Fold, device)?;
        if kernels == Kernels::Native {
            let native;
            (m, native) = m.into_native();
            if native {
                c.kernels = Kernels::Native;
            }
        }
        Ok(RetrievalModel::Dolg(m, c))
    }

    /// Load a bare ImageNet backbone (keys at the file root) as an off-the-shelf GeM model, on the
    /// native CPU engine where [`Kernels::default_for`] picks it.
    pub fn off_the_shelf(ckpt: &Checkpoint, device: &Device) -> Result<Self, ModelError> {
        let kind = BackboneKind::detect(ckpt.keys(), "")
            .ok_or_else(|| ModelError::UnknownArch { path: ckpt.path().to_owned(), reason: "no ResNet or MobileNetV2 keys at the top level".into() })?;
        let vb = VarBuilder::new(ckpt, device);
        let backbone = Backbone::load(kind, &vb.root(), BatchNorm::Fold)?;
        vb.finish()?;
        let model = OffTheShelf { backbone, cpu: None };
        Ok(RetrievalModel::OffTheShelf(if Kernels::default_for(device) == Kernels::Native { model.into_native() } else { model }))
    }

    /// `x`: [B, 3, H, W] → unnormalised descriptors [B, D].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            RetrievalModel::Dolg(m, _) => m.forward(x),
            RetrievalModel::OffTheShelf(m) => m.forward(x),
            RetrievalModel::Delg(m) => m.forward_global(x),
        }
    }

    /// Whether two scales may run at once ([`Dolg::is_native`]): the native path's passes share
    /// nothing but the weights, and rayon's work stealing fills each one's waits with the other's
    /// tasks.
    pub(crate) fn runs_natively(&self) -> bool {
        match self {
            RetrievalModel::Dolg(m, _) => m.is_native(),
            RetrievalModel::OffTheShelf(m) => m.is_native(),
            RetrievalModel::Delg(_) => false,
        }
    }

    /// Width of the descriptor [`RetrievalModel::forward`] gives.
    pub fn out_dim(&self) -> usize {
        match self {
            RetrievalModel::Dolg(_, c) => c.out_dim,
            RetrievalModel::OffTheShelf(m) => m.kind().channels().1,
            RetrievalModel::Delg(m) => m.global_dim(),
        }
    }

    /// A short human name for reports, such as `DOLG-R50`, `DELG-R50` or `MobileNetV2-GeM (off-the-shelf, ImageNet)`.
    pub fn name(&self) -> String {
        match self {
            RetrievalModel::Dolg(_, c) => c.name(),
            RetrievalModel::OffTheShelf(m) => format!("{}-GeM (off-the-shelf, ImageNet)", m.kind().name()),
            RetrievalModel::Delg(m) => m.name(),
        }
    }

    /// Input convention of the weights.
    pub(crate) fn normalization(&self) -> Normalization {
        match self {
            RetrievalModel::Dolg(_, c) => c.backbone.normalization(),
            RetrievalModel::OffTheShelf(m) => m.kind().normalization(),
            RetrievalModel::Delg(_) => Normalization::DOLG,
        }
    }
}
