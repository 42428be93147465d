//! Sets `cfg(dolg_shared)` when the test data directory `../shared` exists beside the checkout, or
//! when `CI=true`. Tests that read it carry
//! `#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout")]`: without the
//! directory they are reported as ignored, with the reason, instead of passing without checking
//! anything; under CI they always run, so a missing directory fails them (tests/common/mod.rs
//! `shared_dir()` panics naming the path). Cargo passes the cfg to the library, binaries,
//! integration tests and doctests alike.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(dolg_shared)");
    println!("cargo::rustc-check-cfg=cfg(dolg_chromium)");
    println!("cargo::rerun-if-env-changed=CI");
    // Cargo reruns this script when anything under ../shared changes, when it disappears, and, while
    // it is missing, on every build (cargo counts a missing path as changed). That last case rebuilds
    // the crate each time, but it is the only way to notice the directory appearing later: cargo
    // has no non-recursive watch of the parent directory.
    println!("cargo::rerun-if-changed=../shared");
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let present = Path::new(&manifest_dir).join("../shared").is_dir();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if present || ci {
        println!("cargo::rustc-cfg=dolg_shared");
    }
    // The browser test of `dolg serve` needs Debian's chromium (scripts/install_test_deps.sh, which
    // .ci/run calls): it runs where chromium is installed, and always under CI, where a missing
    // browser fails it. /usr/bin is watched (it exists, so this costs one scan, not a rebuild on
    // every build) to notice an installation.
    println!("cargo::rerun-if-changed=/usr/bin");
    let chromium = Path::new("/usr/bin/chromium").exists();
    if chromium || ci {
        println!("cargo::rustc-cfg=dolg_chromium");
    }
}
