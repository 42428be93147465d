//! "Off-the-shelf" global descriptor: GeM (p = 3) of an ImageNet backbone's last feature map, with
//! no trained retrieval head. The honest baseline until a DOLG head has been trained on the
//! backbone (Radenović et al., <https://arxiv.org/abs/1711.02512>, report it as a strong
//! untrained baseline).

use burn::module::Module;
use burn::tensor::Tensor;

use super::backbone::{Backbone, BackboneKind};
use super::gem::GEM_EPS;

pub(crate) const OFF_THE_SHELF_P: f64 = 3.0;

/// An ImageNet backbone whose descriptor is GeM (p = 3) of `f4`, with no trained head.
#[derive(Module, Debug)]
pub struct OffTheShelf {
    /// The backbone, giving `f4`.
    pub backbone: Backbone,
}

impl OffTheShelf {
    /// `x`: [B, 3, H, W] → GeM of `f4`, [B, C] (unnormalised).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let (_, f4) = self.backbone.forward(x);
        let [b, c, _, _] = f4.dims();
        let p = OFF_THE_SHELF_P;
        f4.clamp_min(GEM_EPS).powf_scalar(p).mean_dim(3).mean_dim(2).powf_scalar(1.0 / p).reshape([b, c])
    }

    /// Which backbone this is (ResNet depths read from its stages).
    pub fn kind(&self) -> BackboneKind {
        match &self.backbone {
            Backbone::ResNet(r) => BackboneKind::ResNet([r.s1.blocks.len(), r.s2.blocks.len(), r.s3.blocks.len(), r.s4.blocks.len()]),
            Backbone::MobileNetV2(_) => BackboneKind::MobileNetV2,
        }
    }
}
