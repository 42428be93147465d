//! SGD with momentum, Nesterov and weight decay, exactly as `torch.optim.SGD` (dampening 0):
//! `d = g + λp`; `buf = d` on a parameter's first step, else `buf = μ·buf + d`;
//! `p ← p − lr·(d + μ·buf)` with Nesterov, `p ← p − lr·buf` without.
//!
//! Written here rather than taken from burn because the momentum buffers must be saved under the
//! authors' parameter names and restored bit for bit on resume; the update itself is three lines.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::Tensor;

/// SGD hyper-parameters (the learning rate is given per step).
#[derive(Debug, Clone, Copy)]
pub struct SgdConfig {
    /// Momentum μ (0: plain SGD).
    pub momentum: f64,
    /// Weight decay λ: `λ·p` is added to every gradient.
    pub weight_decay: f64,
    /// Use Nesterov momentum.
    pub nesterov: bool,
}

/// The optimizer: its settings and a momentum buffer per parameter.
#[derive(Debug)]
pub struct Sgd {
    /// The hyper-parameters.
    pub config: SgdConfig,
    /// Momentum buffers, flattened (reshaped back on use).
    pub buffers: HashMap<ParamId, Tensor<1>>,
}

impl Sgd {
    /// An optimizer with no momentum buffers yet.
    pub fn new(config: SgdConfig) -> Self {
        Self { config, buffers: HashMap::new() }
    }

    /// Update every parameter of `module` that has a gradient in `grads` (frozen ones have none).
    pub fn step<M: Module>(&mut self, lr: f64, module: M, grads: &mut Grads) -> M {
        let mut mapper = Step { sgd: self, lr, grads };
        module.map(&mut mapper)
    }
}

struct Step<'a> {
    sgd: &'a mut Sgd,
    lr: f64,
    grads: &'a mut Grads,
}

impl ModuleMapper for Step<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.0.remove(&id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let c = self.sgd.config;
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let p = tensor.inner();
        let d = if c.weight_decay != 0.0 { grad + p.clone().reshape([n]).mul_scalar(c.weight_decay) } else { grad };
        let buf = match self.sgd.buffers.remove(&id) {
            Some(b) if c.momentum != 0.0 => b.mul_scalar(c.momentum) + d.clone(),
            _ => d.clone(),
        };
        let step = if c.momentum == 0.0 {
            d
        } else if c.nesterov {
            d + buf.clone().mul_scalar(c.momentum)
        } else {
            buf.clone()
        };
        if c.momentum != 0.0 {
            self.sgd.buffers.insert(id, buf);
        }
        let p = p - step.reshape(dims).mul_scalar(self.lr);
        Param::from_mapped_value(id, Tensor::from_inner(p).require_grad(), mapper)
    }
}

/// Gradients by parameter id, flattened and detached from the graph; summed over micro-batches
/// for gradient accumulation.
#[derive(Debug, Default)]
pub struct Grads(pub HashMap<ParamId, Tensor<1>>);

impl Grads {
    /// Add the gradients of every trainable parameter of `module` from one backward pass.
    pub fn accumulate<M: Module>(&mut self, module: &M, grads: &burn::tensor::Gradients) {
        struct Collect<'a> {
            out: &'a mut Grads,
            grads: &'a burn::tensor::Gradients,
        }
        impl burn::module::ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let Some(g) = param.val().grad(self.grads) else { return };
                let n = g.dims().iter().product::<usize>();
                self.out.add_one(param.id, g.reshape([n]));
            }
        }
        module.visit(&mut Collect { out: self, grads });
    }

    /// Add another set of gradients (summing those of the same parameter).
    pub fn add(&mut self, other: Grads) {
        for (id, g) in other.0 {
            self.add_one(id, g);
        }
    }

    fn add_one(&mut self, id: ParamId, g: Tensor<1>) {
        let g = match self.0.remove(&id) {
            Some(prev) => prev + g,
            None => g,
        };
        self.0.insert(id, g);
    }

    /// Multiply every gradient by `k`.
    pub fn scale(&mut self, k: f64) {
        for g in self.0.values_mut() {
            *g = g.clone().mul_scalar(k);
        }
    }
}
