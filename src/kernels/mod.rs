//! dolg's own engine, apart from the network definitions that use it: the native CPU inference
//! paths of the ResNet ([`cpu_resnet`]) and MobileNetV2 ([`cpu_mobilenet`]) trunks, their
//! AVX-512 implicit-GEMM convolution ([`conv_gemm`]), the depthwise 3x3 convolution
//! ([`depthwise`]), the one safe wrapper every other matrix product goes through (`gemm`), and,
//! with the `cuda` feature, the trunks on the GPU (`cuda`), with the choice of device
//! ([`device`]). Foundations: `model`, `index`, `collection` and `spatial` call in; only the
//! run-time kernel choice (`runtime`) is read from here.

pub mod conv_gemm;
pub mod cpu_mobilenet;
pub mod cpu_resnet;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod depthwise;
pub(crate) mod gemm;

use burn::tensor::{Device, Tensor};

use cpu_resnet::{to_nchw, Act};

/// A backbone on one of dolg's own engines: its stride-16 map `f3` and stride-32 map `f4` for
/// one image, channels-last on the host whichever engine computed them.
#[derive(Debug)]
pub enum NativeTrunk {
    /// ResNet-50/101 (`globalmodel.s1..s4`) on the CPU.
    ResNet(cpu_resnet::CpuResNet),
    /// MobileNetV2 (`features.N`) on the CPU.
    MobileNetV2(cpu_mobilenet::CpuMobileNetV2),
    /// Either trunk on the GPU (`--device cuda`).
    #[cfg(feature = "cuda")]
    Cuda(cuda::CudaTrunk),
}

impl NativeTrunk {
    /// CHW image (one, normalised) → (`f3`, `f4`) channels-last.
    ///
    /// # Panics
    /// On a GPU error (out of device memory, a cuDNN failure): the process cannot go on on the
    /// device it was asked to use, and the message says why.
    pub(crate) fn forward_act(&self, chw: &[f32], h: usize, w: usize) -> (Act, Act) {
        match self {
            NativeTrunk::ResNet(r) => r.forward_act(chw, h, w),
            NativeTrunk::MobileNetV2(m) => m.forward_act(chw, h, w),
            #[cfg(feature = "cuda")]
            NativeTrunk::Cuda(t) => t.forward_act(chw, h, w).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// `x`: [1, 3, H, W] → (`f3`, `f4`) as NCHW tensors on `device`.
    pub fn forward(&self, x: Tensor<4>, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let [b, _, h, w] = x.dims();
        assert_eq!(b, 1, "the fast CPU path describes one image at a time");
        let chw = x.into_data().try_into_vec::<f32>().expect("f32 input");
        let (f3, f4) = self.forward_act(&chw, h, w);
        (to_nchw(&f3, device), to_nchw(&f4, device))
    }
}

/// `cpu` or `cuda[:N]` (a build with the `cuda` feature). burn's tensors stay on the CPU either
/// way (its `flex` backend: model loading, and the parts of a network the engines do not cover);
/// `cuda` opens the GPU engine (`cuda`, feature `cuda`), which then runs every trunk this
/// process loads. A process runs on one GPU; the error for `cuda` says what is missing when the
/// driver, cuDNN or the device cannot be had.
pub fn device(name: &str) -> Result<Device, String> {
    match name {
        "cpu" => Ok(Device::flex()),
        n if n == "cuda" || n.starts_with("cuda:") => {
            let idx: usize =
                n.strip_prefix("cuda:").map(str::parse).transpose().map_err(|_| format!("bad CUDA device '{n}': use cuda or cuda:N"))?.unwrap_or(0);
            open_cuda(idx)
        }
        other => Err(format!("unknown device '{other}': use cpu or cuda[:N]")),
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(idx: usize) -> Result<Device, String> {
    cuda::open(idx).map_err(|e| format!("device cuda:{idx} cannot start: {e}"))?;
    Ok(Device::flex())
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_idx: usize) -> Result<Device, String> {
    Err("this build has no CUDA support: rebuild with the `cuda` feature (`cargo build --release --features cuda`; for Python, `maturin build --release --features cuda` in python/), which needs no GPU or CUDA toolkit; scripts/install_cuda_runtime.sh installs what a GPU needs at run time".into())
}

/// Whether this process opened a GPU (`--device cuda`): trunks then run there.
pub fn on_gpu() -> bool {
    #[cfg(feature = "cuda")]
    return cuda::opened().is_some();
    #[cfg(not(feature = "cuda"))]
    false
}
