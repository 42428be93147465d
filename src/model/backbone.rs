//! The backbones a DOLG head can sit on (module `globalmodel`). Each returns the stride-16 map
//! `f3` for the local branch and the stride-32 map `f4` for the global branch.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;

use super::layers::BatchNorm;
use super::mobilenet_v2::{self, MobileNetV2};
use super::resnet::{ResNet, R101_DEPTHS, R50_DEPTHS};
use crate::checkpoint::{CheckpointError, VarPath};
use crate::kernels::NativeTrunk;
use crate::preprocess::Normalization;

/// Which backbone a checkpoint holds, detected from its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackboneKind {
    /// pycls ResNet with this many blocks per stage.
    ResNet([usize; 4]),
    /// The MobileNetV2 feature extractor (ImageNet weights, RGB input).
    MobileNetV2,
}

impl BackboneKind {
    /// Short name for reports: `R50`, `R101`, `ResNet[..]` for other depths, or `MobileNetV2`.
    pub fn name(self) -> String {
        match self {
            BackboneKind::ResNet(R50_DEPTHS) => "R50".into(),
            BackboneKind::ResNet(R101_DEPTHS) => "R101".into(),
            BackboneKind::ResNet(d) => format!("ResNet{d:?}"),
            BackboneKind::MobileNetV2 => "MobileNetV2".into(),
        }
    }

    /// Channels of (`f3`, `f4`).
    pub fn channels(self) -> (usize, usize) {
        match self {
            BackboneKind::ResNet(_) => (1024, 2048),
            BackboneKind::MobileNetV2 => (mobilenet_v2::F3_CHANNELS, mobilenet_v2::F4_CHANNELS),
        }
    }

    /// The input convention the backbone's weights were trained with: the DOLG/pycls ResNets take
    /// BGR, torchvision-style ImageNet models RGB.
    pub(crate) fn normalization(self) -> Normalization {
        match self {
            BackboneKind::ResNet(_) => Normalization::DOLG,
            BackboneKind::MobileNetV2 => mobilenet_v2::IMAGENET_RGB,
        }
    }

    /// Detect from the keys under `prefix` (`globalmodel` in DOLG files, empty for a bare backbone).
    pub fn detect<'a>(keys: impl Iterator<Item = &'a str> + Clone, prefix: &str) -> Option<Self> {
        let mnv2 = if prefix.is_empty() { "features.0.0.weight".to_owned() } else { format!("{prefix}.features.0.0.weight") };
        if keys.clone().any(|k| k == mnv2) {
            return Some(BackboneKind::MobileNetV2);
        }
        let depths = ResNet::depths_in(keys, prefix);
        (!depths.contains(&0)).then_some(BackboneKind::ResNet(depths))
    }
}

// One backbone per model, built once: boxing the larger variant would save nothing worth an
// indirection (and burn's Module derive takes the variants as they are).
/// A loaded backbone (`globalmodel`), giving `f3` and `f4`.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Backbone {
    /// pycls ResNet-50/101.
    ResNet(ResNet),
    /// MobileNetV2.
    MobileNetV2(MobileNetV2),
}

impl Backbone {
    /// Load a backbone of `kind` from the keys under `vb` (`globalmodel`).
    pub fn load(kind: BackboneKind, vb: &VarPath, bn: BatchNorm) -> Result<Self, CheckpointError> {
        Ok(match kind {
            BackboneKind::ResNet(depths) => Backbone::ResNet(ResNet::load(depths, vb, bn)?),
            BackboneKind::MobileNetV2 => Backbone::MobileNetV2(MobileNetV2::load(vb, bn)?),
        })
    }

    /// `x`: [B, 3, H, W] → (`f3`, `f4`).
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        match self {
            Backbone::ResNet(r) => r.forward(x),
            Backbone::MobileNetV2(m) => m.forward(x),
        }
    }

    /// This trunk with every weight replaced by an empty tensor: what is kept of a trunk whose
    /// native copy ([`Backbone::to_native`]) is used instead.
    pub(crate) fn without_weights(self) -> Self {
        self.map(&mut DropWeights)
    }

    /// This trunk on dolg's own engine (the GPU when the process opened one, else the CPU's),
    /// `None` unless it was loaded with [`BatchNorm::Fold`].
    pub fn to_native(&self) -> Option<NativeTrunk> {
        match self {
            Backbone::ResNet(r) => r.stem.conv.bn.is_none().then(|| r.to_native()),
            Backbone::MobileNetV2(m) => m.stem.bn.is_none().then(|| m.to_native()),
        }
    }
}

/// Replaces every weight with an empty tensor.
struct DropWeights;

impl ModuleMapper for DropWeights {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let empty = Tensor::<D>::zeros([0usize; D], &tensor.device());
        Param::from_mapped_value(id, empty, mapper)
    }
}
