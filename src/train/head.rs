//! Margin classification heads used to train DOLG (`desc_cls`).
//!
//! The authors' head is called "Arcface" in their code but is CurricularFace-style:
//! Huang et al., "CurricularFace: Adaptive Curriculum Learning Loss for Deep Face Recognition",
//! <https://arxiv.org/abs/2004.00288>. Plain ArcFace (Deng et al., <https://arxiv.org/abs/1801.07698>)
//! is the switch [`HeadKind::ArcFace`]. Keys: `desc_cls.weight` `[classes, dim]`, `desc_cls.t` `[1]`.

use burn::module::{Module, Param, RunningState};
use burn::tensor::{Bool, Tensor};

use crate::checkpoint::{to_tensor, CheckpointError, NamedTensor, VarPath};

/// Which margin head trains the descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// The authors' head: ArcFace margin on the target, hard negatives re-weighted by the running `t`.
    #[default]
    Curricular,
    /// Additive angular margin on the target only.
    #[value(name = "arcface")]
    ArcFace,
}

/// Loss-side constants of the head (the authors' yaml: s = 30, m = 0.15).
#[derive(Debug, Clone, Copy)]
pub struct HeadSpec {
    /// CurricularFace or ArcFace.
    pub kind: HeadKind,
    /// Logit scale `s` (30 in the authors' yaml).
    pub scale: f64,
    /// Angular margin `m`, in radians (0.15 in the authors' yaml).
    pub margin: f64,
}

/// The classification head `desc_cls`: a cosine classifier with an angular margin on the target class.
#[derive(Module, Debug)]
pub struct MarginHead {
    /// `desc_cls.weight`: one row per class.
    pub weight: Param<Tensor<2>>,
    /// `desc_cls.t`: the running mean of the target cosine (CurricularFace only; kept for both so
    /// files have one layout).
    pub t: RunningState<Tensor<1>>,
}

/// Output of the head for one batch.
pub struct HeadOutput {
    /// Scaled logits [B, classes].
    pub logits: Tensor<2>,
    /// Mean cross-entropy.
    pub loss: Tensor<1>,
}

impl MarginHead {
    /// Read `desc_cls.weight` / `desc_cls.t` (`vb` points at `desc_cls`).
    pub fn load(classes: usize, dim: usize, vb: &VarPath) -> Result<Self, CheckpointError> {
        Ok(Self { weight: vb.param("weight", [classes, dim])?, t: vb.running("t", [1])? })
    }

    /// The head's tensors under the authors' names.
    pub fn named_tensors(&self) -> Vec<NamedTensor> {
        let w = self.weight.val();
        let shape = w.dims().to_vec();
        vec![
            NamedTensor { name: "desc_cls.weight".into(), shape, data: w.into_data().try_into_vec::<f32>().expect("f32") },
            NamedTensor { name: "desc_cls.t".into(), shape: vec![1], data: self.t.value_sync().into_data().try_into_vec::<f32>().expect("f32") },
        ]
    }

    /// A fresh head: weights N(0, 0.01²) as in CurricularFace's reference code, `t = 0`.
    pub(crate) fn init_tensors(classes: usize, dim: usize, rng: &mut impl rand::Rng) -> Vec<NamedTensor> {
        let w = (0..classes * dim).map(|_| 0.01 * super::rng::normal(rng)).collect();
        vec![
            NamedTensor { name: "desc_cls.weight".into(), shape: vec![classes, dim], data: w },
            NamedTensor { name: "desc_cls.t".into(), shape: vec![1], data: vec![0.0] },
        ]
    }

    /// Number of classes (rows of `weight`).
    pub fn classes(&self) -> usize {
        self.weight.dims()[0]
    }

    /// `desc` [B, D] (unnormalised descriptors), `labels` class indices → logits and loss.
    /// Updates `t` (CurricularFace) before the hard negatives use it, as the authors' code does.
    pub fn forward(&self, spec: &HeadSpec, desc: Tensor<2>, labels: &[usize]) -> HeadOutput {
        let [b, _] = desc.dims();
        let classes = self.classes();
        let device = desc.device();
        let dn = l2_rows(desc);
        let wn = l2_rows(self.weight.val());
        let cos = dn.matmul(wn.transpose()).clamp(-1.0, 1.0);
        let mut onehot = vec![0f32; b * classes];
        for (i, &y) in labels.iter().enumerate() {
            onehot[i * classes + y] = 1.0;
        }
        let onehot = to_tensor(onehot, [b, classes], &device);
        let target_mask: Tensor<2, Bool> = onehot.clone().equal_elem(1.0);
        let cos_y = (cos.clone() * onehot.clone()).sum_dim(1); // [B, 1]
        let (cm, sm) = (spec.margin.cos(), spec.margin.sin());
        let sin_y = (cos_y.clone().powi_scalar(2).neg() + 1.0).sqrt();
        let phi = cos_y.clone() * cm - sin_y * sm; // cos(θ_y + m)
        let threshold = (std::f64::consts::PI - spec.margin).cos();
        let fallback = cos_y.clone() - spec.margin * (std::f64::consts::PI - spec.margin).sin();
        let target = fallback.mask_where(cos_y.clone().greater_elem(threshold), phi.clone()); // [B, 1]
        let mut out = cos.clone();
        if spec.kind == HeadKind::Curricular {
            let mean_y = cos_y.detach().mean().reshape([1]);
            let t = self.t.value_sync().to_device(&device).mul_scalar(0.99) + mean_y.mul_scalar(0.01);
            self.t.update(t.clone().detach());
            let _ = self.t.value_sync();
            let hard = cos.clone().greater(phi.expand([b, classes]));
            let t = t.detach().reshape([1, 1]).expand([b, classes]);
            let reweighted = cos.clone() * (t + cos);
            out = out.mask_where(hard, reweighted);
        }
        let logits = out.mask_where(target_mask, target.expand([b, classes])) * spec.scale;
        let logp = burn::tensor::activation::log_softmax(logits.clone(), 1);
        let loss = (logp * onehot).sum().neg() / b as f64;
        HeadOutput { logits, loss: loss.reshape([1]) }
    }
}

/// `x / max(‖x‖₂, 1e-12)` per row (PyTorch `F.normalize`).
fn l2_rows(x: Tensor<2>) -> Tensor<2> {
    let n = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / n
}

/// Top-1 accuracy of logits against labels.
pub fn accuracy(logits: &Tensor<2>, labels: &[usize]) -> f64 {
    let pred: Vec<i64> = logits.clone().argmax(1).into_data().convert::<i64>().try_into_vec::<i64>().unwrap_or_default();
    let hits = pred.iter().zip(labels).filter(|(p, y)| **p as usize == **y).count();
    hits as f64 / labels.len().max(1) as f64
}
