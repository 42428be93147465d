//! Multi-atrous module (`localmodel.aspp`), the optional front of DOLG's local branch.
//!
//! Yang et al., "DOLG", <https://arxiv.org/abs/2108.02927>, section 3.2. Two designs:
//! * [`AsppKind::Official`], the authors' code: five parallel paths on `f3` (1x1; 3x3 with
//!   dilation 6, 12, 18; global average pool → 1x1 → ReLU, broadcast back), concatenated in the
//!   order [image-pool, 1x1, d6, d12, d18] → 1x1 conv 2560→1024 → ReLU.
//! * [`AsppKind::Paper`], the paper's figure: three 3x3 convs with dilation 3, 6, 9, concatenated
//!   → 1x1 conv 1536→1024 → ReLU.
//!
//! The released weights were trained without this module.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::Tensor;

use super::layers::{conv, ConvSpec};
use crate::checkpoint::{CheckpointError, VarPath};

/// Which multi-atrous design (`--multi-atrous`, the training config's `multi_atrous`, where a
/// model without one is spelled `none`: see [`none_or_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AsppKind {
    /// The authors' code: 1x1, dilations 6/12/18, image pool.
    Official,
    /// The paper's figure: dilations 3/6/9.
    Paper,
}

/// `Option<AsppKind>` spelled `none`, `official` or `paper`, as the `multi_atrous` option has
/// always been written in training configs and on the command line. Serde: use with
/// `#[serde(with = "crate::model::aspp::none_or_kind")]`.
pub mod none_or_kind {
    use super::AsppKind;

    /// Every spelling, `none` first.
    pub const NAMES: [&str; 3] = ["none", "official", "paper"];

    /// The spelling of `kind`: `none`, `official` or `paper`.
    pub fn name(kind: Option<AsppKind>) -> &'static str {
        match kind {
            None => "none",
            Some(AsppKind::Official) => "official",
            Some(AsppKind::Paper) => "paper",
        }
    }

    /// Parse `none`, `official` or `paper`; anything else is an error naming the valid spellings.
    pub fn parse(s: &str) -> Result<Option<AsppKind>, String> {
        match s {
            "none" => Ok(None),
            "official" => Ok(Some(AsppKind::Official)),
            "paper" => Ok(Some(AsppKind::Paper)),
            _ => Err(format!("unknown multi-atrous variant '{s}': expected one of {}", NAMES.join(", "))),
        }
    }

    /// Serialise as `none`, `official` or `paper`.
    pub fn serialize<S: serde::Serializer>(kind: &Option<AsppKind>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(name(*kind))
    }

    /// Deserialise from `none`, `official` or `paper`.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<AsppKind>, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

const BRANCH: usize = 512;

/// The multi-atrous module `localmodel.aspp`: parallel dilated convolutions on `f3`, concatenated, then a 1x1 convolution and ReLU.
#[derive(Module, Debug)]
pub struct MultiAtrous {
    /// `aspp.aspp.N`: the parallel convolutions, in checkpoint order.
    pub aspp: Vec<Conv2d>,
    /// `aspp.im_pool.1`: the image-pool path's 1x1 conv (official design only).
    pub im_pool: Option<Conv2d>,
    /// `aspp.conv_after.0`.
    pub conv_after: Conv2d,
}

impl MultiAtrous {
    /// Load the `kind` design from `cin` to `cout` channels under `vb` (`localmodel.aspp`).
    pub fn load(kind: AsppKind, cin: usize, cout: usize, vb: &VarPath) -> Result<Self, CheckpointError> {
        let a = vb.pp("aspp");
        let (specs, im_pool) = match kind {
            AsppKind::Official => (
                vec![
                    ConvSpec::new(cin, BRANCH, 1),
                    ConvSpec::new(cin, BRANCH, 3).dilation(6),
                    ConvSpec::new(cin, BRANCH, 3).dilation(12),
                    ConvSpec::new(cin, BRANCH, 3).dilation(18),
                ],
                Some(conv(ConvSpec::new(cin, BRANCH, 1).bias(true), &vb.pp("im_pool").pp(1))?),
            ),
            AsppKind::Paper => {
                (vec![ConvSpec::new(cin, BRANCH, 3).dilation(3), ConvSpec::new(cin, BRANCH, 3).dilation(6), ConvSpec::new(cin, BRANCH, 3).dilation(9)], None)
            }
        };
        let concat = BRANCH * (specs.len() + usize::from(im_pool.is_some()));
        let aspp = specs.into_iter().enumerate().map(|(i, s)| conv(s.bias(true), &a.pp(i))).collect::<Result<_, _>>()?;
        let conv_after = conv(ConvSpec::new(concat, cout, 1).bias(true), &vb.pp("conv_after").pp(0))?;
        Ok(Self { aspp, im_pool, conv_after })
    }

    /// `x`: [B, cin, H, W] → [B, cout, H, W].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let mut parts = Vec::with_capacity(self.aspp.len() + 1);
        if let Some(ip) = &self.im_pool {
            let pooled = x.clone().mean_dim(3).mean_dim(2);
            let p = relu(ip.forward(pooled));
            let c = p.dims()[1];
            parts.push(p.expand([b, c, h, w]));
        }
        for c in &self.aspp {
            parts.push(c.forward(x.clone()));
        }
        relu(self.conv_after.forward(Tensor::cat(parts, 1)))
    }
}
