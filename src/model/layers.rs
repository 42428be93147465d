//! Building blocks shared by every model piece, loaded by PyTorch key: 2-D convolution,
//! BatchNorm (PyTorch semantics, folded into the preceding convolution for inference) and linear.

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

use crate::checkpoint::{to_tensor, CheckpointError, VarPath};

/// Shape of a convolution as PyTorch declares it.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
    pub bias: bool,
}

impl ConvSpec {
    pub fn new(cin: usize, cout: usize, kernel: usize) -> Self {
        Self { cin, cout, kernel, stride: 1, padding: kernel / 2, dilation: 1, groups: 1, bias: false }
    }
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = s;
        self
    }
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = p;
        self
    }
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = d;
        self.padding = d * (self.kernel / 2);
        self
    }
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    pub fn bias(mut self, b: bool) -> Self {
        self.bias = b;
        self
    }
    fn weight_shape(&self) -> [usize; 4] {
        [self.cout, self.cin / self.groups, self.kernel, self.kernel]
    }

    fn build(&self, weight: Vec<f32>, bias: Option<Vec<f32>>, vb: &VarPath) -> Conv2d {
        let p = self.padding;
        Conv2d {
            weight: Param::from_tensor(to_tensor(weight, self.weight_shape(), vb.device())),
            bias: bias.map(|b| Param::from_tensor(to_tensor(b, [self.cout], vb.device()))),
            stride: [self.stride; 2],
            kernel_size: [self.kernel; 2],
            dilation: [self.dilation; 2],
            groups: self.groups,
            padding: PaddingConfig2d::Explicit(p, p, p, p),
        }
    }
}

/// Load a convolution stored as `<vb>.weight` (and `<vb>.bias` when the spec has one).
pub fn conv(spec: ConvSpec, vb: &VarPath) -> Result<Conv2d, CheckpointError> {
    let w = vb.host("weight", &spec.weight_shape())?;
    let b = if spec.bias { Some(vb.host("bias", &[spec.cout])?) } else { None };
    Ok(spec.build(w, b, vb))
}

/// PyTorch `BatchNorm2d` (eps 1e-5): `weight`, `bias`, `running_mean`, `running_var`.
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub running_mean: Param<Tensor<1>>,
    pub running_var: Param<Tensor<1>>,
    pub eps: f64,
}

pub const BN_EPS: f64 = 1e-5;

struct BnHost {
    weight: Vec<f32>,
    bias: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
}

fn bn_host(c: usize, vb: &VarPath) -> Result<BnHost, CheckpointError> {
    Ok(BnHost {
        weight: vb.host("weight", &[c])?,
        bias: vb.host("bias", &[c])?,
        mean: vb.host("running_mean", &[c])?,
        var: vb.host("running_var", &[c])?,
    })
}

impl BatchNorm2d {
    pub fn load(c: usize, vb: &VarPath) -> Result<Self, CheckpointError> {
        let h = bn_host(c, vb)?;
        let d = vb.device();
        let p = |v: Vec<f32>| Param::from_tensor(to_tensor(v, [c], d));
        Ok(Self { weight: p(h.weight), bias: p(h.bias), running_mean: p(h.mean), running_var: p(h.var), eps: BN_EPS })
    }

    /// Inference-mode normalisation with the running statistics.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        burn::tensor::module::batch_norm(x, self.weight.val(), self.bias.val(), self.running_mean.val(), self.running_var.val(), self.eps)
    }
}

/// A convolution followed by BatchNorm. For inference the BatchNorm is folded into the
/// convolution's weight and bias at load time (one pass over the activations instead of two);
/// for training it stays a separate module.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: Option<BatchNorm2d>,
}

impl ConvBn {
    /// `conv_vb` and `bn_vb` are the two PyTorch module paths (they are siblings, e.g. `f.a` and
    /// `f.a_bn`, so the pair is not one PyTorch module).
    pub fn load(spec: ConvSpec, conv_vb: &VarPath, bn_vb: &VarPath, fold: bool) -> Result<Self, CheckpointError> {
        if !fold {
            return Ok(Self { conv: conv(spec, conv_vb)?, bn: Some(BatchNorm2d::load(spec.cout, bn_vb)?) });
        }
        let mut w = conv_vb.host("weight", &spec.weight_shape())?;
        let b = if spec.bias { Some(conv_vb.host("bias", &[spec.cout])?) } else { None };
        let bn = bn_host(spec.cout, bn_vb)?;
        // y = γ (Wx + b − μ) / √(σ² + ε) + β, folded in f64 so the only float32 rounding is the final store.
        let per_out = w.len() / spec.cout;
        let mut bias = vec![0f32; spec.cout];
        for o in 0..spec.cout {
            let scale = f64::from(bn.weight[o]) / (f64::from(bn.var[o]) + BN_EPS).sqrt();
            for v in &mut w[o * per_out..(o + 1) * per_out] {
                *v = (f64::from(*v) * scale) as f32;
            }
            let b0 = b.as_ref().map_or(0.0, |b| f64::from(b[o]));
            bias[o] = ((b0 - f64::from(bn.mean[o])) * scale + f64::from(bn.bias[o])) as f32;
        }
        let spec = spec.bias(true);
        Ok(Self { conv: spec.build(w, Some(bias), conv_vb), bn: None })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv.forward(x);
        match &self.bn {
            Some(bn) => bn.forward(y),
            None => y,
        }
    }
}

/// PyTorch `nn.Linear`: `weight` [out, in], `bias` [out]; `y = x Wᵀ + b`.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Linear {
    pub fn load(din: usize, dout: usize, vb: &VarPath) -> Result<Self, CheckpointError> {
        Ok(Self { weight: Param::from_tensor(vb.tensor("weight", [dout, din])?), bias: Param::from_tensor(vb.tensor("bias", [dout])?) })
    }

    /// `x`: [batch, in] → [batch, out].
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.val().transpose()) + self.bias.val().unsqueeze::<2>()
    }

}
