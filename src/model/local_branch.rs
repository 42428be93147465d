//! DOLG's local branch (`localmodel`, the authors' `SpatialAttention2d`): optional multi-atrous
//! module, then self-attention that re-weights L2-normalised local features.
//!
//! Yang et al., "DOLG", <https://arxiv.org/abs/2108.02927>, section 3.2:
//! ```text
//! x  = bn(conv1(f3))                     1x1 conv 1024→1024 with bias, BN
//! n  = x / max(‖x‖₂ over channels, 1e-12)  (taken before the ReLU)
//! a  = softplus(conv2(relu(x)))           1x1 conv 1024→1 with bias; β=1, threshold 20
//! fl = a · n
//! ```

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::{relu, softplus_with_threshold};
use burn::tensor::Tensor;

use super::aspp::{AsppKind, MultiAtrous};
use super::layers::{conv, BatchNorm, ConvBn, ConvSpec};
use crate::checkpoint::{CheckpointError, VarPath};

/// DOLG's local branch `localmodel` (`SpatialAttention2d`): optional multi-atrous module, `conv1` + BatchNorm, L2 normalisation and attention.
#[derive(Module, Debug)]
pub struct LocalBranch {
    /// `aspp`: the multi-atrous module; `None` as in the released weights.
    pub aspp: Option<MultiAtrous>,
    /// `conv1` + `bn` (BN folded into conv1 for inference).
    pub conv1: ConvBn,
    /// The attention score conv; `None` in the self-attention-off ablation, where `fl` is the
    /// normalised features without attention weights.
    pub conv2: Option<Conv2d>,
}

/// Output of the local branch: `fl` [B, C, H, W] and the attention map [B, 1, H, W].
pub struct LocalOutput {
    /// Local features `fl` = attention × normalised features, [B, C, H, W].
    pub fl: Tensor<4>,
    /// Attention map [B, 1, H, W]; `None` without attention.
    pub att: Option<Tensor<4>>,
}

impl LocalBranch {
    /// Load the branch from `cin` input channels to `dim`-wide features under `vb` (`localmodel`).
    pub fn load(cin: usize, dim: usize, aspp: Option<AsppKind>, attention: bool, vb: &VarPath, bn: BatchNorm) -> Result<Self, CheckpointError> {
        let aspp = aspp.map(|k| MultiAtrous::load(k, cin, cin, &vb.pp("aspp"))).transpose()?;
        let conv1 = ConvBn::load(ConvSpec::new(cin, dim, 1).bias(true), &vb.pp("conv1"), &vb.pp("bn"), bn)?;
        let conv2 = attention.then(|| conv(ConvSpec::new(dim, 1, 1).bias(true), &vb.pp("conv2"))).transpose()?;
        Ok(Self { aspp, conv1, conv2 })
    }

    /// `f3`: [B, cin, H, W] → `fl` and the attention map.
    pub fn forward(&self, f3: Tensor<4>) -> LocalOutput {
        let x = match &self.aspp {
            Some(a) => a.forward(f3),
            None => f3,
        };
        let x = self.conv1.forward(x);
        let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
        let n = x.clone() / norm;
        let Some(conv2) = &self.conv2 else {
            return LocalOutput { fl: n, att: None };
        };
        let att = softplus_with_threshold(conv2.forward(relu(x)), 1.0, 20.0);
        LocalOutput { fl: n * att.clone(), att: Some(att) }
    }
}
