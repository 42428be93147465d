//! Building blocks shared by every model piece, loaded by PyTorch key: 2-D convolution,
//! BatchNorm (PyTorch semantics, folded into the preceding convolution for inference) and linear.

use burn::module::{Module, Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::Tensor;

use crate::checkpoint::{to_tensor, CheckpointError, VarPath};

/// Shape of a convolution as PyTorch declares it.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride, in both directions.
    pub stride: usize,
    /// Zero padding on every side, in pixels.
    pub padding: usize,
    /// Dilation, in both directions.
    pub dilation: usize,
    /// Channel groups (`cin` for a depthwise convolution).
    pub groups: usize,
    /// Whether the convolution has a `bias` tensor.
    pub bias: bool,
}

impl ConvSpec {
    /// A `kernel`×`kernel` convolution from `cin` to `cout` channels: stride 1, "same" padding (`kernel / 2`), no dilation, one group, no bias.
    pub fn new(cin: usize, cout: usize, kernel: usize) -> Self {
        Self { cin, cout, kernel, stride: 1, padding: kernel / 2, dilation: 1, groups: 1, bias: false }
    }
    /// With stride `s`.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = s;
        self
    }
    /// With `p` pixels of zero padding on every side.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = p;
        self
    }
    pub(crate) fn dilation(mut self, d: usize) -> Self {
        self.dilation = d;
        self.padding = d * (self.kernel / 2);
        self
    }
    /// With `g` channel groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    /// With a bias (`b = true`) or without.
    pub fn bias(mut self, b: bool) -> Self {
        self.bias = b;
        self
    }
    fn weight_shape(&self) -> [usize; 4] {
        [self.cout, self.cin / self.groups, self.kernel, self.kernel]
    }

    fn build(&self, weight: Vec<f32>, bias: Option<Vec<f32>>, vb: &VarPath) -> Conv2d {
        let weight = Param::from_tensor(to_tensor(weight, self.weight_shape(), vb.device()));
        let bias = bias.map(|b| Param::from_tensor(to_tensor(b, [self.cout], vb.device())));
        self.assemble(weight, bias)
    }

    fn assemble(&self, weight: Param<Tensor<4>>, bias: Option<Param<Tensor<1>>>) -> Conv2d {
        let p = self.padding;
        Conv2d {
            weight,
            bias,
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
    let w = vb.param("weight", spec.weight_shape())?;
    let b = if spec.bias { Some(vb.param("bias", [spec.cout])?) } else { None };
    Ok(spec.assemble(w, b))
}

/// PyTorch `BatchNorm2d` (eps 1e-5, momentum 0.1): `weight`, `bias`, `running_mean`, `running_var`.
///
/// On an autodiff device it normalises with the batch statistics and updates the running ones
/// the way PyTorch does — with the *unbiased* batch variance (burn's own `BatchNorm` uses the
/// biased one, which would drift from checkpoints trained by the authors' code).
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    /// Scale γ, `[C]`.
    pub weight: Param<Tensor<1>>,
    /// Shift β, `[C]`.
    pub bias: Param<Tensor<1>>,
    /// Running mean, `[C]`.
    pub running_mean: RunningState<Tensor<1>>,
    /// Running (unbiased) variance, `[C]`.
    pub running_var: RunningState<Tensor<1>>,
    /// Epsilon added to the variance (1e-5).
    pub eps: f64,
    /// Keep inference behaviour even during training (frozen stages).
    pub frozen: bool,
}

pub(crate) const BN_EPS: f64 = 1e-5;
pub(crate) const BN_MOMENTUM: f64 = 0.1;

struct BnHost {
    weight: Vec<f32>,
    bias: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
}

fn bn_host(c: usize, vb: &VarPath) -> Result<BnHost, CheckpointError> {
    Ok(BnHost { weight: vb.host("weight", &[c])?, bias: vb.host("bias", &[c])?, mean: vb.host("running_mean", &[c])?, var: vb.host("running_var", &[c])? })
}

impl BatchNorm2d {
    /// Load the `weight`, `bias`, `running_mean` and `running_var` of a `c`-channel BatchNorm under `vb`.
    pub fn load(c: usize, vb: &VarPath) -> Result<Self, CheckpointError> {
        Ok(Self {
            weight: vb.param("weight", [c])?,
            bias: vb.param("bias", [c])?,
            running_mean: vb.running("running_mean", [c])?,
            running_var: vb.running("running_var", [c])?,
            eps: BN_EPS,
            frozen: false,
        })
    }

    /// Normalise `x` `[B, C, H, W]`: with the running statistics for inference or when frozen;
    /// on an autodiff device, with the batch statistics, updating the running ones.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if x.device().is_autodiff() && !self.frozen {
            return self.forward_train(x);
        }
        let device = x.device();
        let mean = self.running_mean.value_sync().to_device(&device);
        let var = self.running_var.value_sync().to_device(&device);
        burn::tensor::module::batch_norm(x, self.weight.val(), self.bias.val(), mean, var, self.eps)
    }

    fn forward_train(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let n = (b * h * w) as f64;
        let out = burn::tensor::module::batch_norm_train(x, self.weight.val(), self.bias.val(), self.eps);
        let unbiased = out.variance.detach().mul_scalar(if n > 1.0 { n / (n - 1.0) } else { 1.0 });
        let device = out.output.device();
        let m = BN_MOMENTUM;
        let mean = self.running_mean.value_sync().to_device(&device).mul_scalar(1.0 - m) + out.mean.detach().mul_scalar(m);
        let var = self.running_var.value_sync().to_device(&device).mul_scalar(1.0 - m) + unbiased.mul_scalar(m);
        self.running_mean.update(mean.detach());
        self.running_var.update(var.detach());
        // Fold the update into the stored value now: visitors and mappers (checkpointing, the
        // optimizer) read the stored value, not pending per-thread updates.
        let _ = (self.running_mean.value_sync(), self.running_var.value_sync());
        out.output
    }
}

/// How a model's BatchNorm layers are loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchNorm {
    /// Merged into the preceding convolution's weight and bias: one pass over the activations
    /// instead of two. Inference only; the BatchNorm parameters are gone from the model.
    Fold,
    /// Kept as separate [`BatchNorm2d`] modules with their parameters and running statistics:
    /// for training, and wherever the model is written back under the checkpoint's keys.
    Keep,
}

/// A convolution followed by BatchNorm. For inference the BatchNorm is folded into the
/// convolution's weight and bias at load time (one pass over the activations instead of two);
/// for training it stays a separate module.
#[derive(Module, Debug)]
pub struct ConvBn {
    /// The convolution (with BatchNorm folded in, for [`BatchNorm::Fold`]).
    pub conv: Conv2d,
    /// The separate BatchNorm ([`BatchNorm::Keep`]), `None` when folded.
    pub bn: Option<BatchNorm2d>,
}

impl ConvBn {
    /// The convolution's weights for the native CPU engine; BatchNorm must have been folded in at
    /// load ([`BatchNorm::Fold`]).
    pub(crate) fn folded_weights(&self) -> crate::kernels::cpu_resnet::ConvWeights {
        assert_eq!(self.conv.groups, 1, "folded_weights is for dense convolutions (see folded_depthwise)");
        self.folded_grouped()
    }

    /// The folded weights of a convolution of any group count, `[cout][cin / groups][k][k]` as
    /// PyTorch stores them.
    fn folded_grouped(&self) -> crate::kernels::cpu_resnet::ConvWeights {
        assert!(self.bn.is_none(), "the fast CPU path needs BatchNorm folded into the convolutions");
        let c = &self.conv;
        let [cout, cin, k, _] = c.weight.val().dims();
        let weight = c.weight.val().into_data().try_into_vec::<f32>().expect("f32 weights");
        let bias = c.bias.as_ref().map_or_else(|| vec![0.0; cout], |b| b.val().into_data().try_into_vec::<f32>().expect("f32 bias"));
        let pad = match c.padding {
            burn::nn::PaddingConfig2d::Explicit(p, ..) => p,
            _ => 0,
        };
        crate::kernels::cpu_resnet::ConvWeights { weight, bias, cout, cin, k, stride: c.stride[0], pad }
    }

    /// A depthwise 3x3 convolution's weights (BatchNorm folded in at load), `[c][1][3][3]`.
    pub(crate) fn folded_depthwise(&self) -> crate::kernels::cpu_resnet::ConvWeights {
        let w = self.folded_grouped();
        assert!(self.conv.groups == w.cout && w.cin == 1 && w.k == 3, "folded_depthwise: a depthwise 3x3 convolution expected");
        w
    }

    /// `conv_vb` and `bn_vb` are the two PyTorch module paths (they are siblings, e.g. `f.a` and
    /// `f.a_bn`, so the pair is not one PyTorch module).
    pub fn load(spec: ConvSpec, conv_vb: &VarPath, bn_vb: &VarPath, bn: BatchNorm) -> Result<Self, CheckpointError> {
        if bn == BatchNorm::Keep {
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

    /// Convolution, then BatchNorm when it is kept separate: `[B, cin, H, W]` → `[B, cout, H', W']`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv.forward(x);
        match &self.bn {
            Some(bn) => bn.forward(y),
            None => y,
        }
    }
}

/// PyTorch `nn.Linear`: `weight` `[out, in]`, `bias` `[out]`; `y = x Wᵀ + b`.
#[derive(Module, Debug)]
pub struct Linear {
    /// Weight, `[out, in]`.
    pub weight: Param<Tensor<2>>,
    /// Bias, `[out]`.
    pub bias: Param<Tensor<1>>,
}

impl Linear {
    /// Load `weight` `[dout, din]` and `bias` `[dout]` under `vb`.
    pub fn load(din: usize, dout: usize, vb: &VarPath) -> Result<Self, CheckpointError> {
        Ok(Self { weight: vb.param("weight", [dout, din])?, bias: vb.param("bias", [dout])? })
    }

    /// `x`: [batch, in] → [batch, out].
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.val().transpose()) + self.bias.val().unsqueeze::<2>()
    }
}
