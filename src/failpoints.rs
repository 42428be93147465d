//! Crash points for the crash tests: when `DOLG_FAILPOINT` names a point the process reaches, it
//! aborts there ([`std::process::abort`], as a power cut or a kill would), so a test that ran it as
//! a child can check what a reader finds afterwards. The points: [`crate::atomic_file`]'s
//! `pair-companion-removed` and `pair-main-renamed`, the index store's `commit:N[:segment|manifest]`
//! bulk extraction's `extract-shard:K`, and a PostgreSQL
//! collection's `pg-commit:SHARD` (after that shard committed a batch).
//!
//! Compiled in only with the `failpoints` feature, which the test suite turns on (the crate's
//! dev-dependency on itself in Cargo.toml); in every other build [`requested`] is `None`, each
//! check is removed by the optimiser and the variable is never read.

/// The environment variable naming the point to crash at.
pub const VAR: &str = "DOLG_FAILPOINT";

/// The point this process was asked to crash at (read once); always `None` without the
/// `failpoints` feature.
pub fn requested() -> Option<&'static str> {
    #[cfg(feature = "failpoints")]
    {
        static REQUESTED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        REQUESTED.get_or_init(|| std::env::var(VAR).ok()).as_deref()
    }
    #[cfg(not(feature = "failpoints"))]
    None
}

/// Abort the process here if `point` is the requested failpoint.
pub fn check(point: &str) {
    if requested() == Some(point) {
        crash(point);
    }
}

/// Abort the process, saying which failpoint did it.
pub fn crash(point: &str) -> ! {
    eprintln!("{VAR}={point}: aborting");
    std::process::abort();
}
