//! Fresh DOLG weights for training: an ImageNet backbone under `globalmodel.`, and the DOLG head
//! initialised as the authors' pycls code does (`init_weights`: conv N(0, 2/fan_out), BN 1/0,
//! linear N(0, 0.01²) with zero bias; conv biases keep PyTorch's default U(±1/√fan_in)), GeM p = 3.
//!
//! The result is an in-memory state dict, loaded through the same key-checked path as any file,
//! so a trained model and a fresh one are built by one code path.

use rand::Rng;

use crate::checkpoint::{Checkpoint, CheckpointError, NamedTensor};
use crate::model::{AsppKind, BackboneKind, Pooling};

/// What to build around the backbone; the paper's ablations are these switches.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeadLayout {
    pub fg_dim: usize,
    pub out_dim: usize,
    pub local: bool,
    pub attention: bool,
    pub aspp: Option<AsppKind>,
    pub pooling: Pooling,
    pub classes: usize,
}

pub use super::rng::normal;

fn conv(name: &str, cout: usize, cin: usize, k: usize, bias: bool, rng: &mut impl Rng, out: &mut Vec<NamedTensor>) {
    let std = (2.0 / (k * k * cout) as f64).sqrt() as f32;
    let w = (0..cout * cin * k * k).map(|_| std * normal(rng)).collect();
    out.push(NamedTensor { name: format!("{name}.weight"), shape: vec![cout, cin, k, k], data: w });
    if bias {
        let bound = 1.0 / ((cin * k * k) as f32).sqrt();
        let b = (0..cout).map(|_| rng.random_range(-bound..bound)).collect();
        out.push(NamedTensor { name: format!("{name}.bias"), shape: vec![cout], data: b });
    }
}

fn linear(name: &str, dout: usize, din: usize, rng: &mut impl Rng, out: &mut Vec<NamedTensor>) {
    let w = (0..dout * din).map(|_| 0.01 * normal(rng)).collect();
    out.push(NamedTensor { name: format!("{name}.weight"), shape: vec![dout, din], data: w });
    out.push(NamedTensor { name: format!("{name}.bias"), shape: vec![dout], data: vec![0.0; dout] });
}

fn bn(name: &str, c: usize, out: &mut Vec<NamedTensor>) {
    for (k, v) in [("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)] {
        out.push(NamedTensor { name: format!("{name}.{k}"), shape: vec![c], data: vec![v; c] });
    }
}

/// The DOLG head (everything but `globalmodel`) plus `desc_cls`, freshly initialised.
pub(crate) fn head_tensors(backbone: BackboneKind, l: &HeadLayout, rng: &mut impl Rng) -> Vec<NamedTensor> {
    let (f3, f4) = backbone.channels();
    let mut out = Vec::new();
    if l.local {
        if let Some(kind) = l.aspp {
            let branch = 512;
            let n = match kind {
                AsppKind::Official => {
                    conv("localmodel.aspp.aspp.0", branch, f3, 1, true, rng, &mut out);
                    for (i, _) in [6, 12, 18].iter().enumerate() {
                        conv(&format!("localmodel.aspp.aspp.{}", i + 1), branch, f3, 3, true, rng, &mut out);
                    }
                    conv("localmodel.aspp.im_pool.1", branch, f3, 1, true, rng, &mut out);
                    5
                }
                AsppKind::Paper => {
                    for i in 0..3 {
                        conv(&format!("localmodel.aspp.aspp.{i}"), branch, f3, 3, true, rng, &mut out);
                    }
                    3
                }
            };
            conv("localmodel.aspp.conv_after.0", f3, n * branch, 1, true, rng, &mut out);
        }
        conv("localmodel.conv1", l.fg_dim, f3, 1, true, rng, &mut out);
        bn("localmodel.bn", l.fg_dim, &mut out);
        if l.attention {
            conv("localmodel.conv2", 1, l.fg_dim, 1, true, rng, &mut out);
        }
    }
    if l.pooling == Pooling::Gem {
        out.push(NamedTensor { name: "pool_g.p".into(), shape: vec![1], data: vec![3.0] });
    }
    linear("fc_t", l.fg_dim, f4, rng, &mut out);
    linear("fc", l.out_dim, if l.local { 2 * l.fg_dim } else { l.fg_dim }, rng, &mut out);
    out.extend(super::head::MarginHead::init_tensors(l.classes, l.out_dim, rng));
    out
}

/// A full DOLG state dict: the bare ImageNet backbone in `backbone` (keys at its root, as the
/// MobileNetV2 weights ship) moved under `globalmodel.`, plus a fresh head.
pub(crate) fn fresh_model(backbone: &Checkpoint, l: &HeadLayout, rng: &mut impl Rng) -> Result<(Checkpoint, BackboneKind), CheckpointError> {
    let kind = BackboneKind::detect(backbone.keys(), "").ok_or_else(|| CheckpointError::NotACheckpoint {
        path: backbone.path().to_owned(),
        reason: "no ResNet ('s1..s4.b*') or MobileNetV2 ('features.*') keys at the top level".into(),
    })?;
    let mut tensors = backbone.named_tensors(|k| Some(format!("globalmodel.{k}")))?;
    tensors.extend(head_tensors(kind, l, rng));
    Ok((Checkpoint::from_tensors(backbone.path(), tensors), kind))
}
