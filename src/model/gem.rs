//! Generalised-mean pooling with a learnable exponent (`pool_g`).
//!
//! Radenović et al., "Fine-tuning CNN Image Retrieval with No Human Annotation",
//! <https://arxiv.org/abs/1711.02512>: `g = mean_hw(clamp(x, eps)^p)^(1/p)`, eps 1e-6. `p` is a
//! parameter of shape `[1]` read from the checkpoint (2.75 in the fixture, not the initial 3.0).

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::checkpoint::{CheckpointError, VarPath};
use crate::kernels::cpu_resnet::Act;

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

/// [`GeM`] with exponent `p` (`mean(clamp(x, eps)^p)^(1/p)`), or [`gap`] for `None`, per channel
/// of a channels-last map from the native engine.
pub(crate) fn pool_host(f4: &Act, p: Option<f32>) -> Vec<f32> {
    let hw = (f4.h * f4.w) as f32;
    let sums = column_sums(&f4.data, f4.c, |_, row, acc| match p {
        // x³ by multiplication (the off-the-shelf exponent): a tenth of powf's time.
        Some(3.0) => acc.iter_mut().zip(row).for_each(|(a, x)| {
            let x = x.max(GEM_EPS as f32);
            *a += x * x * x
        }),
        Some(p) => acc.iter_mut().zip(row).for_each(|(a, x)| *a += x.max(GEM_EPS as f32).powf(p)),
        None => acc.iter_mut().zip(row).for_each(|(a, x)| *a += x),
    });
    sums.into_iter()
        .map(|s| match p {
            Some(p) => (s / hw).powf(1.0 / p),
            None => s / hw,
        })
        .collect()
}

/// Per-channel sums over the rows of a row-major `[rows][c]` matrix, `add(r, row, acc)` folding
/// row `r` into an accumulator. Rows go in chunks of a fixed size, in parallel, and the chunks'
/// sums are added in order: the result does not depend on the number of threads.
pub(crate) fn column_sums(data: &[f32], c: usize, add: impl Fn(usize, &[f32], &mut [f32]) + Sync) -> Vec<f32> {
    const CHUNK: usize = 64;
    let partial: Vec<Vec<f32>> = data
        .par_chunks(c * CHUNK)
        .enumerate()
        .map(|(i, chunk)| {
            let mut acc = vec![0f32; c];
            chunk.chunks(c).enumerate().for_each(|(r, row)| add(i * CHUNK + r, row, &mut acc));
            acc
        })
        .collect();
    let mut sums = vec![0f32; c];
    for p in partial {
        sums.iter_mut().zip(p).for_each(|(s, v)| *s += v);
    }
    sums
}
