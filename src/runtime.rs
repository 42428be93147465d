//! Process-wide settings shared by every heavy command: thread count and which CPU kernels compute
//! (the compute device, `--device`, is opened by [`crate::kernels::device`]). Each is an explicit
//! option (`--threads`, `--cpu-kernels`; the same keywords in Python), never an environment
//! variable.

/// The global thread pool was already sized (by an earlier call or the first parallel
/// operation) to another count: a process has one pool, sized once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{requested} threads asked for, but this process's thread pool already has {current} (it is sized once, by the first model, collection or parallel operation); ask for {current} or start a new process")]
pub struct ThreadsAlreadySet {
    /// The thread count asked for.
    pub requested: usize,
    /// The size the pool already has.
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

/// Which kernels compute on the CPU (`--cpu-kernels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CpuKernels {
    /// The native engine ([`crate::kernels`]) with its AVX-512 convolution where the CPU has it.
    #[default]
    Auto,
    /// The native engine without AVX-512: what a CPU without it runs (the `gemm` crate's
    /// portable kernels). For comparing the two paths on one machine.
    Portable,
    /// burn's generic kernels for the whole network, no native engine (A/B comparisons).
    Burn,
}

/// The CPU kernels were already fixed (chosen, or read by the first model) to another choice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CPU kernels {requested:?} asked for, but this process already computes with {current:?} (fixed by the first model); start a new process")]
pub struct KernelsAlreadySet {
    /// The kernels asked for.
    pub requested: CpuKernels,
    /// The kernels this process already computes with.
    pub current: CpuKernels,
}

static CPU_KERNELS: std::sync::OnceLock<CpuKernels> = std::sync::OnceLock::new();

/// Choose the CPU kernels for this process, before the first model is loaded: asking again for
/// the current choice is fine, asking for another is [`KernelsAlreadySet`].
pub fn set_cpu_kernels(kernels: CpuKernels) -> Result<(), KernelsAlreadySet> {
    let current = *CPU_KERNELS.get_or_init(|| kernels);
    if current == kernels {
        Ok(())
    } else {
        Err(KernelsAlreadySet { requested: kernels, current })
    }
}

/// The CPU kernels of this process ([`CpuKernels::Auto`] unless chosen before the first use,
/// which fixes it).
pub fn cpu_kernels() -> CpuKernels {
    *CPU_KERNELS.get_or_init(CpuKernels::default)
}
