//! Process-wide settings shared by every heavy command: thread count and compute device.

use burn::tensor::Device;

/// The global thread pool was already sized (by an earlier call or the first parallel
/// operation) to another count: a process has one pool, sized once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{requested} threads asked for, but this process's thread pool already has {current} (it is sized once, by the first model, collection or parallel operation); ask for {current} or start a new process")]
pub struct ThreadsAlreadySet {
    pub requested: usize,
    pub current: usize,
}

/// Size rayon's global pool, which burn's `flex` backend and our own parallel loops share
/// (`None`: leave it, one thread per core by default). It can be sized only before its first use:
/// asking again for the size it has is fine, asking for another is [`ThreadsAlreadySet`].
pub fn set_threads(threads: Option<usize>) -> Result<(), ThreadsAlreadySet> {
    let Some(n) = threads.map(|n| n.max(1)) else { return Ok(()) };
    match rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
        Ok(()) => Ok(()),
        Err(_) if rayon::current_num_threads() == n => Ok(()),
        Err(_) => Err(ThreadsAlreadySet { requested: n, current: rayon::current_num_threads() }),
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
