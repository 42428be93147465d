//! Orthogonal fusion of the global vector `fg` with the local feature map `fl`, and the paper's
//! ablation alternatives.
//!
//! Yang et al., "DOLG", <https://arxiv.org/abs/2108.02927>, section 3.3:
//! `proj_ij = (fg·fl_ij)/‖fg‖² fg`, `orth = fl − proj`, `fo = GAP(orth)`, `z = [fg, fo]` (global first).

use burn::tensor::Tensor;

/// How the local feature map enters the descriptor. All produce `z = [fg, fo]` of width 2·C, so
/// the final `fc` keeps its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fusion {
    /// The paper's method: the component of each local feature orthogonal to `fg`.
    #[default]
    Orthogonal,
    /// Ablation: `fo = GAP(fl)`, no projection.
    Concat,
    /// Ablation: `fo = fg ⊙ GAP(fl)`.
    Hadamard,
}

/// Checkpoint metadata key under which `dolg train` records the fusion a model was trained with.
pub const FUSION_METADATA_KEY: &str = "dolg.fusion";

impl Fusion {
    /// The name written to checkpoint metadata (the command-line spelling).
    pub fn name(self) -> &'static str {
        match self {
            Fusion::Orthogonal => "orthogonal",
            Fusion::Concat => "concat",
            Fusion::Hadamard => "hadamard",
        }
    }

    /// The fusion recorded in a checkpoint's metadata; orthogonal (the paper's) when there is none.
    pub fn recorded_in(metadata: &std::collections::BTreeMap<String, String>) -> Fusion {
        metadata.get(FUSION_METADATA_KEY).and_then(|f| <Fusion as clap::ValueEnum>::from_str(f, true).ok()).unwrap_or_default()
    }
}

/// Per-position orthogonal component `fl − proj`, [B, C, H, W] (exposed for property tests).
pub fn orthogonal_component(fg: Tensor<2>, fl: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = fl.dims();
    let flat = fl.reshape([b, c, h * w]);
    let g = fg.reshape([b, 1, c]);
    // (fg · fl_ij) for every position: [B, 1, HW].
    let dots = g.clone().matmul(flat.clone());
    let norm2 = g.clone().powi_scalar(2).sum_dim(2); // [B, 1, 1]
    let proj = g.swap_dims(1, 2).matmul(dots) / norm2; // [B, C, HW]
    (flat - proj).reshape([b, c, h, w])
}

/// `fo` [B, C] for the given fusion.
pub fn fuse_local(fusion: Fusion, fg: Tensor<2>, fl: Tensor<4>) -> Tensor<2> {
    let [b, c, _, _] = fl.dims();
    let gap = |x: Tensor<4>| x.mean_dim(3).mean_dim(2).reshape([b, c]);
    match fusion {
        Fusion::Orthogonal => gap(orthogonal_component(fg, fl)),
        Fusion::Concat => gap(fl),
        Fusion::Hadamard => fg * gap(fl),
    }
}
