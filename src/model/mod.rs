//! The DOLG network and its pieces, one file each, loaded by the authors' PyTorch key names.

pub mod aspp;
pub mod dolg;
pub mod fusion;
pub mod gem;
pub mod layers;
pub mod local_branch;
pub mod resnet;

pub use aspp::AsppKind;
pub use dolg::{Dolg, DolgOutput};
pub use fusion::Fusion;

use crate::checkpoint::{Checkpoint, CheckpointError};
use resnet::{ResNet, R101_DEPTHS, R50_DEPTHS};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}: cannot tell the architecture: {message}")]
    UnknownArch { path: std::path::PathBuf, message: String },
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
    pub fn depths(self) -> [usize; 4] {
        match self {
            Arch::R50 | Arch::R50Ma | Arch::R50MaPaper => R50_DEPTHS,
            _ => R101_DEPTHS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Gem,
    Gap,
}

/// Everything that shapes a DOLG network. Detected from a checkpoint's keys by [`DolgConfig::detect`].
#[derive(Debug, Clone, PartialEq)]
pub struct DolgConfig {
    pub depths: [usize; 4],
    pub aspp: Option<AsppKind>,
    pub local: bool,
    pub attention: bool,
    pub pooling: Pooling,
    pub fusion: Fusion,
    pub out_dim: usize,
}

impl DolgConfig {
    pub fn detect(ckpt: &Checkpoint) -> Result<Self, ModelError> {
        let err = |message: String| ModelError::UnknownArch { path: ckpt.path().to_owned(), message };
        let depths = ResNet::depths_in(ckpt.keys(), "globalmodel");
        if depths.contains(&0) {
            return Err(err(format!(
                "expected ResNet blocks under 'globalmodel.s1..s4', found {depths:?} blocks per stage (is this a DOLG checkpoint?)"
            )));
        }
        let aspp = match ckpt.shape("localmodel.aspp.conv_after.0.weight") {
            None => None,
            Some([_, 2560, ..]) => Some(AsppKind::Official),
            Some([_, 1536, ..]) => Some(AsppKind::Paper),
            Some(s) => return Err(err(format!("'localmodel.aspp.conv_after.0.weight' has shape {s:?}; expected input width 2560 (official) or 1536 (paper variant)"))),
        };
        let local = ckpt.keys().any(|k| k.starts_with("localmodel."));
        let out_dim = match ckpt.shape("fc.weight") {
            Some([out, _]) => *out,
            Some(s) => return Err(err(format!("'fc.weight' has shape {s:?}; expected [out_dim, in_dim]"))),
            None => return Err(CheckpointError::Missing { path: ckpt.path().to_owned(), key: "fc.weight".into(), expected: vec![512, 2048] }.into()),
        };
        Ok(Self {
            depths,
            aspp,
            local,
            attention: true,
            pooling: if ckpt.contains("pool_g.p") { Pooling::Gem } else { Pooling::Gap },
            fusion: Fusion::Orthogonal,
            out_dim,
        })
    }

    /// A short human name such as `DOLG-R50` or `DOLG-R101+MA`.
    pub fn name(&self) -> String {
        let backbone = match self.depths {
            R50_DEPTHS => "R50".to_owned(),
            R101_DEPTHS => "R101".to_owned(),
            d => format!("ResNet{d:?}"),
        };
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
