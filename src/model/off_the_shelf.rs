//! "Off-the-shelf" global descriptor: GeM (p = 3) of an ImageNet backbone's last feature map, with
//! no trained retrieval head. The honest baseline until a DOLG head has been trained on the
//! backbone (Radenović et al., <https://arxiv.org/abs/1711.02512>, report it as a strong
//! untrained baseline).

use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};

use super::backbone::{Backbone, BackboneKind};
use super::gem::{pool_host, GEM_EPS};
use crate::kernels::NativeTrunk;

pub(crate) const OFF_THE_SHELF_P: f64 = 3.0;

/// An ImageNet backbone whose descriptor is GeM (p = 3) of `f4`, with no trained head.
#[derive(Module, Debug)]
pub struct OffTheShelf {
    /// The backbone, giving `f4` (weights dropped after [`OffTheShelf::into_native`]).
    pub backbone: Backbone,
    /// The backbone on the native CPU engine, used instead of `backbone` when present.
    #[module(skip)]
    pub cpu: Option<Arc<NativeTrunk>>,
}

impl OffTheShelf {
    /// Move inference to the native CPU engine (the burn copy of the weights is dropped);
    /// unchanged when the backbone's BatchNorm is not folded.
    pub fn into_native(self) -> Self {
        match self.backbone.to_native() {
            Some(trunk) => Self { backbone: self.backbone.without_weights(), cpu: Some(Arc::new(trunk)) },
            None => self,
        }
    }

    /// Whether inference runs on the native engine (and may be called from several threads at once).
    pub(crate) fn is_native(&self) -> bool {
        self.cpu.is_some()
    }

    /// `x`: [B, 3, H, W] → GeM of `f4`, [B, C] (unnormalised; B must be 1 on the native path).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        if let Some(trunk) = &self.cpu {
            let [b, _, h, w] = x.dims();
            assert_eq!(b, 1, "the fast CPU path describes one image at a time");
            let device = x.device();
            let chw = x.into_data().try_into_vec::<f32>().expect("f32 input");
            let (_, f4) = trunk.forward_act(&chw, h, w);
            let pooled = pool_host(&f4, Some(OFF_THE_SHELF_P as f32));
            let n = pooled.len();
            return Tensor::from_data(TensorData::new(pooled, [1, n]), &device);
        }
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
