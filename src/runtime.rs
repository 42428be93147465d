//! Process-wide settings shared by every heavy command: thread count and compute device.

use burn::tensor::Device;

/// Size rayon's global pool, which burn's `flex` backend and our own parallel loops share.
/// Must run before the first parallel operation; later calls are ignored.
pub fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global();
    }
}

/// `cpu` (burn's `flex` backend) or `cuda[:N]` when built with the `cuda` feature.
pub fn device(name: &str) -> Result<Device, String> {
    match name {
        "cpu" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        n if n == "cuda" || n.starts_with("cuda:") => {
            let idx: usize = n.strip_prefix("cuda:").map(str::parse).transpose().map_err(|_| format!("bad CUDA device '{n}'"))?.unwrap_or(0);
            Ok(Device::cuda(idx))
        }
        #[cfg(not(feature = "cuda"))]
        n if n == "cuda" || n.starts_with("cuda:") => Err("this build has no CUDA support; rebuild with `--features cuda`".into()),
        other => Err(format!("unknown device '{other}': use cpu or cuda[:N]")),
    }
}
