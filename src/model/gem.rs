//! Generalised-mean pooling with a learnable exponent (`pool_g`).
//!
//! Radenović et al., "Fine-tuning CNN Image Retrieval with No Human Annotation",
//! <https://arxiv.org/abs/1711.02512>: `g = mean_hw(clamp(x, eps)^p)^(1/p)`, eps 1e-6. `p` is a
//! parameter of shape `[1]` read from the checkpoint (2.75 in the fixture, not the initial 3.0).

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use crate::checkpoint::{CheckpointError, VarPath};

pub(crate) const GEM_EPS: f64 = 1e-6;

/// Generalised-mean pooling `pool_g` with a learnable exponent.
#[derive(Module, Debug)]
pub struct GeM {
    /// `p`: the exponent, shape `[1]`.
    pub p: Param<Tensor<1>>,
}

impl GeM {
    /// Load `p` from `vb` (`pool_g` or `head.pool`).
    pub fn load(vb: &VarPath) -> Result<Self, CheckpointError> {
        Ok(Self { p: vb.param("p", [1])? })
    }

    /// `x`: [B, C, H, W] → [B, C].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let p = self.p.val().reshape([1, 1, 1, 1]);
        let pooled = x.clamp_min(GEM_EPS).powf(p.clone()).mean_dim(3).mean_dim(2);
        let [b, c, _, _] = pooled.dims();
        pooled.powf(p.recip()).reshape([b, c])
    }
}

/// Global average pooling, `x`: [B, C, H, W] → [B, C] (the GAP ablation of the global branch).
pub fn gap(x: Tensor<4>) -> Tensor<2> {
    let [b, c, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([b, c])
}
