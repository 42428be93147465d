//! The GPU engine (`--device cuda`, cargo feature `cuda`): the ResNet and MobileNetV2 trunks as
//! cuDNN calls, with the same folded weights ([`ConvWeights`]) the native CPU engine packs. The
//! heads (DOLG's local branch and fusion, DELG's attention, GeM) stay on the CPU: they read the
//! trunk's maps, copied back once per image and scale.
//!
//! Why cuDNN through `cudarc` and not burn's own CUDA backend: burn 0.22's backend (cubecl-cuda
//! 0.11) depends on `cubecl-llvm`, whose build script downloads an LLVM archive from outside the
//! package registries, so it cannot be built offline or in CI. `cudarc` loads `libcuda`, cuDNN
//! and the rest at run time (`dynamic-loading`): the feature builds on a machine with no GPU and
//! no CUDA toolkit, and what a GPU needs at run time comes from the ordinary PyPI wheels
//! (`scripts/install_cuda_runtime.sh`). The cost: no autodiff here, so `train` stays on the CPU.
//!
//! Numerics: every convolution uses `IMPLICIT_PRECOMP_GEMM` in float32 with tensor-core math
//! turned off (`CUDNN_FMA_MATH`: no TF32), so descriptors agree with the CPU's to float rounding.

use std::ffi::{c_int, c_void, CString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cudnn::{result as dnn, sys, CudnnError};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DriverError};

use super::cpu_mobilenet::InvertedResidualWeights;
use super::cpu_resnet::{Act, BlockWeights, ConvWeights};

/// Why `--device cuda` could not start, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CudaUnavailable {
    /// No `libcuda.so.1`: the NVIDIA driver is not installed (only the driver provides it).
    #[error("no NVIDIA driver on this machine: libcuda.so.1 was not found (it comes with the driver, which dolg cannot install); {cudnn}")]
    NoDriver {
        /// Where cuDNN was found, or that it is missing too and how to install it.
        cudnn: String,
    },
    /// cuDNN 9 is on neither the library path nor under the install script's folder.
    #[error("cuDNN 9 (libcudnn.so.9) was not found on the library path nor under {dir}: run scripts/install_cuda_runtime.sh, which installs cuDNN, cuBLAS and NVRTC there with pip, or add the folder that holds them to LD_LIBRARY_PATH")]
    NoCudnn {
        /// Where dolg looks besides the library path.
        dir: String,
    },
    /// The libraries loaded but the device or cuDNN failed to start.
    #[error("CUDA device {ordinal}: {reason}")]
    Device {
        /// The device asked for (`cuda:N`).
        ordinal: usize,
        /// The driver's or cuDNN's message.
        reason: String,
    },
}

/// An error while running on the GPU (an out-of-memory, a cuDNN status).
#[derive(Debug, Clone, thiserror::Error)]
#[error("CUDA: {0}")]
pub struct GpuError(String);

impl From<DriverError> for GpuError {
    fn from(e: DriverError) -> Self {
        GpuError(format!("{e:?}"))
    }
}

impl From<CudnnError> for GpuError {
    fn from(e: CudnnError) -> Self {
        GpuError(format!("cuDNN: {e}"))
    }
}

/// Where `scripts/install_cuda_runtime.sh` puts the runtime libraries (pip `--target`), searched
/// when they are not on the library path already.
pub fn install_dir() -> PathBuf {
    dirs::data_local_dir().unwrap_or_else(std::env::temp_dir).join("dolg").join("cuda-runtime")
}

/// One CUDA device with its cuDNN handle. Opened once per process ([`open`]).
pub struct Gpu {
    ordinal: usize,
    name: String,
    stream: Arc<CudaStream>,
    /// One forward pass at a time: a cuDNN handle may move between threads but is not to be used
    /// by two at once.
    dnn: Mutex<Handle>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu(cuda:{} {})", self.ordinal, self.name)
    }
}

struct Handle(sys::cudnnHandle_t);

// SAFETY: cuDNN allows a handle to be used from any host thread as long as no two use it at once
// (its guide, "Thread Safety"); `Gpu` keeps it behind a Mutex.
unsafe impl Send for Handle {}

impl Gpu {
    /// `cuda:N` and the device's name, for logs and the device check.
    pub fn describe(&self) -> String {
        format!("cuda:{} ({})", self.ordinal, self.name)
    }
}

static GPU: OnceLock<Result<Arc<Gpu>, CudaUnavailable>> = OnceLock::new();

/// The process's GPU, opened on first use: loads the driver and cuDNN (from the library path, else
/// from [`install_dir`]), starts the device and a cuDNN handle. Every failure says what is missing.
pub fn open(ordinal: usize) -> Result<Arc<Gpu>, CudaUnavailable> {
    let gpu = GPU.get_or_init(|| start(ordinal)).clone()?;
    if gpu.ordinal != ordinal {
        return Err(CudaUnavailable::Device { ordinal, reason: format!("this process already runs on cuda:{}; start a new process", gpu.ordinal) });
    }
    Ok(gpu)
}

/// The GPU this process opened, if any.
pub fn opened() -> Option<Arc<Gpu>> {
    GPU.get().and_then(|g| g.as_ref().ok()).cloned()
}

fn start(ordinal: usize) -> Result<Arc<Gpu>, CudaUnavailable> {
    // SAFETY (both calls): is_culib_present only tries dlopen on the library's usual names.
    let mut cudnn = unsafe { cudarc::cudnn::sys::is_culib_present() }.then(|| "on the library path".to_string());
    if cudnn.is_none() {
        cudnn = preload(&install_dir()).filter(|_| unsafe { cudarc::cudnn::sys::is_culib_present() }).map(|p| p.display().to_string());
    }
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        let cudnn = match &cudnn {
            Some(at) => format!("cuDNN 9 was found ({at})"),
            None => format!("cuDNN 9 is missing too: {}", CudaUnavailable::NoCudnn { dir: install_dir().display().to_string() }),
        };
        return Err(CudaUnavailable::NoDriver { cudnn });
    }
    if cudnn.is_none() {
        return Err(CudaUnavailable::NoCudnn { dir: install_dir().display().to_string() });
    }
    let fail = |reason: String| CudaUnavailable::Device { ordinal, reason };
    let count = CudaContext::device_count().map_err(|e| fail(format!("{e:?}")))?;
    if ordinal >= count.max(0) as usize {
        return Err(fail(format!("this machine has {count} CUDA device(s)")));
    }
    let ctx = CudaContext::new(ordinal).map_err(|e| fail(format!("{e:?}")))?;
    let name = ctx.name().unwrap_or_else(|_| "unknown".into());
    let stream = ctx.default_stream();
    ctx.bind_to_thread().map_err(|e| fail(format!("{e:?}")))?;
    // SAFETY: one stream does all the work, so cudarc's per-buffer events (ordering across
    // streams) are not needed.
    unsafe { ctx.disable_event_tracking() };
    let version = dnn::get_version();
    if version < 90000 {
        return Err(fail(format!("cuDNN {version} is too old: cuDNN 9 is needed")));
    }
    let handle = dnn::create_handle().map_err(|e| fail(format!("cuDNN: {e}")))?;
    // SAFETY: a fresh handle and the context's own stream.
    unsafe { dnn::set_stream(handle, stream.cu_stream() as *mut _) }.map_err(|e| fail(format!("cuDNN: {e}")))?;
    tracing::info!(device = ordinal, name = %name, cudnn = version, "CUDA device ready");
    Ok(Arc::new(Gpu { ordinal, name, stream, dnn: Mutex::new(Handle(handle)) }))
}

/// Loads the runtime libraries found under `dir` (any depth, as pip's `nvidia/*/lib` folders lay
/// them out), global and in dependency order, so that cudarc's later `dlopen("libcudnn.so.9")`
/// finds the copy already loaded (the dynamic linker matches loaded libraries by soname). Written
/// here because no crate searches pip's layout; a library that fails to load is left for the
/// check that follows to report. Returns the path of `libcudnn.so` when it loaded.
fn preload(dir: &Path) -> Option<PathBuf> {
    const ORDER: [&str; 12] = [
        "libcublasLt.so",
        "libcublas.so",
        "libnvrtc.so",
        "libnvrtc-builtins.so",
        "libcudnn_graph.so",
        "libcudnn_ops.so",
        "libcudnn_cnn.so",
        "libcudnn_adv.so",
        "libcudnn_heuristic.so",
        "libcudnn_engines_precompiled.so",
        "libcudnn_engines_runtime_compiled.so",
        "libcudnn.so",
    ];
    let mut found = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && depth < 6 {
                stack.push((p, depth + 1));
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                if let Some(rank) = ORDER.iter().position(|stem| name.strip_prefix(stem).is_some_and(|v| v.starts_with('.'))) {
                    found.push((rank, p));
                }
            }
        }
    }
    found.sort();
    let mut cudnn = None;
    for (rank, path) in found {
        let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else { continue };
        // SAFETY: loading a shared library runs its initialisers, which is what using it means;
        // the handle is kept for the life of the process.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if h.is_null() {
            tracing::debug!(path = %path.display(), "could not preload");
        } else if rank == ORDER.len() - 1 {
            cudnn = Some(path);
        }
    }
    cudnn
}

/// A feature map on the GPU: `n` images, NCHW, float32.
struct Map {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    data: CudaSlice<f32>,
}

/// What follows a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Post {
    None,
    Relu,
    Relu6,
}

/// A cuDNN descriptor, destroyed on drop.
struct Desc<T: Copy> {
    raw: T,
    destroy: unsafe fn(T) -> Result<(), CudnnError>,
}

impl<T: Copy> Drop for Desc<T> {
    fn drop(&mut self) {
        // SAFETY: created by the matching create call and destroyed once, here.
        let _ = unsafe { (self.destroy)(self.raw) };
    }
}

fn tensor(n: usize, c: usize, h: usize, w: usize) -> Result<Desc<sys::cudnnTensorDescriptor_t>, GpuError> {
    let d = Desc { raw: dnn::create_tensor_descriptor()?, destroy: dnn::destroy_tensor_descriptor };
    // SAFETY: a live descriptor.
    unsafe {
        dnn::set_tensor4d_descriptor(
            d.raw,
            sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
            sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
            [n, c, h, w].map(|v| v as c_int),
        )
    }?;
    Ok(d)
}

fn activation(mode: sys::cudnnActivationMode_t, coef: f64) -> Result<Desc<sys::cudnnActivationDescriptor_t>, GpuError> {
    let d = Desc { raw: dnn::create_activation_descriptor()?, destroy: destroy_activation };
    // SAFETY: a live descriptor.
    unsafe { dnn::set_activation_descriptor(d.raw, mode, sys::cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN, coef) }?;
    Ok(d)
}

unsafe fn destroy_activation(d: sys::cudnnActivationDescriptor_t) -> Result<(), CudnnError> {
    // SAFETY: the caller's (Desc::drop).
    unsafe { sys::cudnnDestroyActivationDescriptor(d) }.result()
}

unsafe fn destroy_pooling(d: sys::cudnnPoolingDescriptor_t) -> Result<(), CudnnError> {
    // SAFETY: the caller's (Desc::drop).
    unsafe { sys::cudnnDestroyPoolingDescriptor(d) }.result()
}

/// One convolution with BatchNorm folded in, weights resident on the GPU.
struct GpuConv {
    w: CudaSlice<f32>,
    b: CudaSlice<f32>,
    cout: usize,
    /// Input channels per group.
    cin_g: usize,
    groups: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl GpuConv {
    fn new(stream: &Arc<CudaStream>, cw: &ConvWeights, groups: usize) -> Result<Self, GpuError> {
        let cin_g = cw.weight.len() / (cw.cout * cw.k * cw.k);
        Ok(Self { w: stream.clone_htod(&cw.weight)?, b: stream.clone_htod(&cw.bias)?, cout: cw.cout, cin_g, groups, k: cw.k, stride: cw.stride, pad: cw.pad })
    }

    fn out_size(&self, n: usize) -> usize {
        (n + 2 * self.pad - self.k) / self.stride + 1
    }

    /// `post(conv(x) + bias [+ z])`: one fused cuDNN call (`y = act(conv(x) + z + bias)`, with
    /// ReLU for ReLU6 too, clipped at 6 after it: the fused call offers no ReLU6), or, where cuDNN
    /// refuses the fused call for a layer (it documents no support for grouped convolutions
    /// there), the convolution, bias, residual and activation as separate calls.
    fn forward(&self, g: &Run, x: &Map, post: Post, z: Option<&Map>) -> Result<Map, GpuError> {
        let (ho, wo) = (self.out_size(x.h), self.out_size(x.w));
        let xd = tensor(x.n, x.c, x.h, x.w)?;
        let yd = tensor(x.n, self.cout, ho, wo)?;
        let bd = tensor(1, self.cout, 1, 1)?;
        let wd = Desc { raw: dnn::create_filter_descriptor()?, destroy: dnn::destroy_filter_descriptor };
        let cd = Desc { raw: dnn::create_convolution_descriptor()?, destroy: dnn::destroy_convolution_descriptor };
        let (p, s) = (self.pad as c_int, self.stride as c_int);
        // SAFETY: live descriptors, set before use.
        unsafe {
            dnn::set_filter4d_descriptor(
                wd.raw,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
                [self.cout, self.cin_g, self.k, self.k].map(|v| v as c_int),
            )?;
            dnn::set_convolution2d_descriptor(
                cd.raw,
                p,
                p,
                s,
                s,
                1,
                1,
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
            )?;
            dnn::set_convolution_group_count(cd.raw, self.groups as c_int)?;
            dnn::set_convolution_math_type(cd.raw, sys::cudnnMathType_t::CUDNN_FMA_MATH)?;
        }
        // The fused call takes IDENTITY only with this algorithm; one algorithm for every layer
        // also keeps the numerics the same whatever the shapes.
        let algo = sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
        let relu = post != Post::None;
        let act =
            activation(if relu { sys::cudnnActivationMode_t::CUDNN_ACTIVATION_RELU } else { sys::cudnnActivationMode_t::CUDNN_ACTIVATION_IDENTITY }, 0.0)?;
        if let Some(z) = z {
            assert_eq!((z.n, z.c, z.h, z.w), (x.n, self.cout, ho, wo), "residual shape");
        }
        // SAFETY: live descriptors and handle.
        let ws_bytes = unsafe { dnn::get_convolution_forward_workspace_size(g.handle, xd.raw, wd.raw, cd.raw, yd.raw, algo) }?;
        // SAFETY (both): cuDNN writes the workspace before reading it, and the convolution writes
        // all of `y` (read as `z` only with a zero weight, which cuDNN then does not read).
        let mut ws = unsafe { g.stream.alloc::<u8>(ws_bytes.max(1)) }?;
        let mut y = unsafe { g.stream.alloc::<f32>(x.n * self.cout * ho * wo) }?;
        let (one, zero) = (1f32, 0f32);
        {
            let st = &g.stream;
            let (xp, _gx) = x.data.device_ptr(st);
            let (wp, _gw) = self.w.device_ptr(st);
            let (bp, _gb) = self.b.device_ptr(st);
            let (wsp, _gws) = ws.device_ptr_mut(st);
            let zd = z.map(|z| z.data.device_ptr(st));
            let (yp, _gy) = y.device_ptr_mut(st);
            // Without a residual, z is y itself with a zero weight (cuDNN's documented in-place use).
            let (alpha2, zp) = match &zd {
                Some((zp, _)) => (&one, *zp),
                None => (&zero, yp),
            };
            // SAFETY: every pointer is a live device buffer of the size its descriptor states.
            let fused = unsafe {
                dnn::convolution_bias_activation_forward(
                    g.handle,
                    ptr(&one),
                    xd.raw,
                    xp as *const c_void,
                    wd.raw,
                    wp as *const c_void,
                    cd.raw,
                    algo,
                    wsp as *mut c_void,
                    ws_bytes,
                    ptr(alpha2),
                    yd.raw,
                    zp as *const c_void,
                    bd.raw,
                    bp as *const c_void,
                    act.raw,
                    yd.raw,
                    yp as *mut c_void,
                )
            };
            if let Err(e) = fused {
                tracing::debug!(error = %e, groups = self.groups, k = self.k, "fused convolution refused; separate calls");
                let algo = sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
                // SAFETY: live descriptors and handle.
                let need = unsafe { dnn::get_convolution_forward_workspace_size(g.handle, xd.raw, wd.raw, cd.raw, yd.raw, algo) }?;
                // SAFETY: written by cuDNN before it is read.
                let mut ws2 = unsafe { g.stream.alloc::<u8>(need.max(1)) }?;
                let (wsp2, _g2) = ws2.device_ptr_mut(st);
                let (x, w, b, zc, y) = (xp as *const c_void, wp as *const c_void, bp as *const c_void, zp as *const c_void, yp as *mut c_void);
                // SAFETY: as the fused call's; each call reads and writes buffers of its
                // descriptors' sizes, in stream order, `y` in place.
                unsafe {
                    sys::cudnnConvolutionForward(g.handle, ptr(&one), xd.raw, x, wd.raw, w, cd.raw, algo, wsp2 as *mut c_void, need, ptr(&zero), yd.raw, y)
                        .result()?;
                    sys::cudnnAddTensor(g.handle, ptr(&one), bd.raw, b, ptr(&one), yd.raw, y).result()?;
                    if zd.is_some() {
                        sys::cudnnAddTensor(g.handle, ptr(&one), yd.raw, zc, ptr(&one), yd.raw, y).result()?;
                    }
                    if relu {
                        dnn::activation_forward(g.handle, act.raw, ptr(&one), yd.raw, y as *const c_void, ptr(&zero), yd.raw, y)?;
                    }
                }
            }
        }
        let mut out = Map { n: x.n, c: self.cout, h: ho, w: wo, data: y };
        if post == Post::Relu6 {
            out = clipped_relu(g, out, 6.0)?;
        }
        Ok(out)
    }
}

fn ptr(v: &f32) -> *const c_void {
    (v as *const f32).cast()
}

/// `min(max(x, 0), ceiling)` in place (cuDNN allows x = y).
fn clipped_relu(g: &Run, mut x: Map, ceiling: f64) -> Result<Map, GpuError> {
    let d = tensor(x.n, x.c, x.h, x.w)?;
    let act = activation(sys::cudnnActivationMode_t::CUDNN_ACTIVATION_CLIPPED_RELU, ceiling)?;
    let (one, zero) = (1f32, 0f32);
    {
        let (xp, _gx) = x.data.device_ptr_mut(g.stream);
        // SAFETY: a live buffer of `d`'s size, read and written in place.
        unsafe { dnn::activation_forward(g.handle, act.raw, ptr(&one), d.raw, xp as *const c_void, ptr(&zero), d.raw, xp as *mut c_void) }?;
    }
    Ok(x)
}

/// Max pooling 3x3, stride 2, padding 1 (the ResNet stem).
fn max_pool_3x3_s2(g: &Run, x: &Map) -> Result<Map, GpuError> {
    let (ho, wo) = ((x.h - 1) / 2 + 1, (x.w - 1) / 2 + 1);
    let xd = tensor(x.n, x.c, x.h, x.w)?;
    let yd = tensor(x.n, x.c, ho, wo)?;
    let pd = Desc { raw: dnn::create_pooling_descriptor()?, destroy: destroy_pooling };
    // SAFETY: a live descriptor.
    unsafe {
        dnn::set_pooling_descriptor(
            pd.raw,
            sys::cudnnPoolingMode_t::CUDNN_POOLING_MAX,
            sys::cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN,
            2,
            &[3, 3],
            &[1, 1],
            &[2, 2],
        )
    }?;
    let mut y = g.stream.alloc_zeros::<f32>(x.n * x.c * ho * wo)?;
    let (one, zero) = (1f32, 0f32);
    {
        let (xp, _gx) = x.data.device_ptr(g.stream);
        let (yp, _gy) = y.device_ptr_mut(g.stream);
        // SAFETY: live buffers of the descriptors' sizes.
        unsafe { dnn::pooling_forward(g.handle, pd.raw, ptr(&one), xd.raw, xp as *const c_void, ptr(&zero), yd.raw, yp as *mut c_void) }?;
    }
    Ok(Map { n: x.n, c: x.c, h: ho, w: wo, data: y })
}

/// One forward pass's access to the device: the handle, held for the pass.
struct Run<'a> {
    handle: sys::cudnnHandle_t,
    stream: &'a Arc<CudaStream>,
}

/// A ResNet bottleneck block on the GPU.
struct GpuBlock {
    a: GpuConv,
    b: GpuConv,
    c: GpuConv,
    proj: Option<GpuConv>,
}

/// A MobileNetV2 inverted residual block on the GPU.
struct GpuInverted {
    expand: Option<GpuConv>,
    depthwise: GpuConv,
    project: GpuConv,
    residual: bool,
}

enum Net {
    ResNet { stem: GpuConv, stages: [Vec<GpuBlock>; 4] },
    MobileNetV2 { stem: GpuConv, blocks: Vec<GpuInverted>, head: GpuConv, f3_block: usize },
}

/// A trunk on the GPU: the same (`f3`, `f4`) maps as [`super::NativeTrunk`]'s CPU variants.
pub struct CudaTrunk {
    gpu: Arc<Gpu>,
    net: Net,
}

impl Drop for CudaTrunk {
    fn drop(&mut self) {
        // The weights are freed (cuMemFreeAsync) by the fields' drops, which need the context
        // current on this thread, whichever it is; without it the free fails and the error waits
        // in the context for the next forward pass to report.
        // SAFETY: the primary context, alive as long as `self.gpu`.
        let _ = unsafe { cudarc::driver::result::ctx::set_current(self.gpu.stream.context().cu_ctx()) };
    }
}

impl std::fmt::Debug for CudaTrunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.net {
            Net::ResNet { .. } => "ResNet",
            Net::MobileNetV2 { .. } => "MobileNetV2",
        };
        write!(f, "CudaTrunk({kind} on {:?})", self.gpu)
    }
}

impl CudaTrunk {
    /// A ResNet trunk from the same weights [`super::cpu_resnet::CpuResNet::new`] takes.
    pub fn resnet(gpu: Arc<Gpu>, stem: &ConvWeights, stages: [&[BlockWeights]; 4]) -> Result<Self, GpuError> {
        let s = &gpu.stream;
        let conv = |cw: &ConvWeights| GpuConv::new(s, cw, 1);
        let stage = |bs: &[BlockWeights]| -> Result<Vec<GpuBlock>, GpuError> {
            bs.iter().map(|b| Ok(GpuBlock { a: conv(&b.a)?, b: conv(&b.b)?, c: conv(&b.c)?, proj: b.proj.as_ref().map(conv).transpose()? })).collect()
        };
        let stages = [stage(stages[0])?, stage(stages[1])?, stage(stages[2])?, stage(stages[3])?];
        let net = Net::ResNet { stem: conv(stem)?, stages };
        Ok(Self { gpu, net })
    }

    /// A MobileNetV2 trunk: stem, inverted residual blocks, the 1x1 head; `f3` is the output of
    /// block `f3_block` (0-based).
    pub fn mobilenet_v2(gpu: Arc<Gpu>, stem: &ConvWeights, blocks: &[InvertedResidualWeights], head: &ConvWeights, f3_block: usize) -> Result<Self, GpuError> {
        assert!(f3_block < blocks.len(), "f3 block {f3_block} of {}", blocks.len());
        let s = &gpu.stream;
        let blocks = blocks
            .iter()
            .map(|b| {
                Ok(GpuInverted {
                    expand: b.expand.as_ref().map(|e| GpuConv::new(s, e, 1)).transpose()?,
                    depthwise: GpuConv::new(s, &b.depthwise, b.depthwise.cout)?,
                    project: GpuConv::new(s, &b.project, 1)?,
                    residual: b.residual,
                })
            })
            .collect::<Result<Vec<_>, GpuError>>()?;
        let net = Net::MobileNetV2 { stem: GpuConv::new(s, stem, 1)?, blocks, head: GpuConv::new(s, head, 1)?, f3_block };
        Ok(Self { gpu, net })
    }

    /// CHW image (one, normalised) → (`f3`, `f4`) channels-last on the host.
    pub fn forward_act(&self, chw: &[f32], h: usize, w: usize) -> Result<(Act, Act), GpuError> {
        let handle = self.gpu.dnn.lock().unwrap_or_else(|p| p.into_inner());
        self.gpu.stream.context().bind_to_thread()?;
        let g = Run { handle: handle.0, stream: &self.gpu.stream };
        let x = Map { n: 1, c: 3, h, w, data: g.stream.clone_htod(chw)? };
        let (f3, f4) = match &self.net {
            Net::ResNet { stem, stages } => {
                let s = stem.forward(&g, &x, Post::Relu, None)?;
                let mut x = max_pool_3x3_s2(&g, &s)?;
                let mut f3 = None;
                for (si, stage) in stages.iter().enumerate() {
                    for b in stage {
                        let a = b.a.forward(&g, &x, Post::Relu, None)?;
                        let m = b.b.forward(&g, &a, Post::Relu, None)?;
                        let short = match &b.proj {
                            Some(p) => Some(p.forward(&g, &x, Post::None, None)?),
                            None => None,
                        };
                        x = b.c.forward(&g, &m, Post::Relu, Some(short.as_ref().unwrap_or(&x)))?;
                    }
                    if si == 2 {
                        f3 = Some(to_host(&g, &x)?);
                    }
                }
                (f3.expect("stage 3 ran"), x)
            }
            Net::MobileNetV2 { stem, blocks, head, f3_block } => {
                let mut x = stem.forward(&g, &x, Post::Relu6, None)?;
                let mut f3 = None;
                for (i, b) in blocks.iter().enumerate() {
                    let e = match &b.expand {
                        Some(e) => Some(e.forward(&g, &x, Post::Relu6, None)?),
                        None => None,
                    };
                    let d = b.depthwise.forward(&g, e.as_ref().unwrap_or(&x), Post::Relu6, None)?;
                    x = b.project.forward(&g, &d, Post::None, b.residual.then_some(&x))?;
                    if i == *f3_block {
                        f3 = Some(to_host(&g, &x)?);
                    }
                }
                (f3.expect("f3 block checked at build"), head.forward(&g, &x, Post::Relu6, None)?)
            }
        };
        // f3 came back to the host as soon as it was computed.
        Ok((f3, to_host(&g, &f4)?))
    }
}

/// One image's NCHW map → channels-last host [`Act`].
fn to_host(g: &Run, x: &Map) -> Result<Act, GpuError> {
    debug_assert_eq!(x.n, 1);
    let chw = g.stream.clone_dtoh(&x.data)?;
    Ok(chw_to_act(&chw, x.c, x.h, x.w))
}

/// CHW → channels-last.
pub(crate) fn chw_to_act(chw: &[f32], c: usize, h: usize, w: usize) -> Act {
    let hw = h * w;
    let mut data = vec![0f32; chw.len()];
    for (ch, plane) in chw.chunks_exact(hw).enumerate() {
        for (i, v) in plane.iter().enumerate() {
            data[i * c + ch] = *v;
        }
    }
    Act { h, w, c, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_to_act_transposes() {
        // 2 channels, 1x3: channel 0 = 1,2,3, channel 1 = 10,20,30.
        let a = chw_to_act(&[1., 2., 3., 10., 20., 30.], 2, 1, 3);
        assert_eq!(a.data, vec![1., 10., 2., 20., 3., 30.]);
    }

    #[test]
    fn without_a_driver_the_error_names_it() {
        // On a machine with a driver this test says nothing; CI machines have none.
        if unsafe { cudarc::driver::sys::is_culib_present() } {
            eprintln!("skipped: this machine has an NVIDIA driver");
            return;
        }
        let e = open(0).unwrap_err();
        assert!(matches!(e, CudaUnavailable::NoDriver { .. }), "{e:?}");
        assert!(e.to_string().contains("libcuda.so.1") && e.to_string().contains("cuDNN 9"), "{e}");
    }
}
