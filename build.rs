//! Sets `cfg(dolg_shared)` when the test data directory `../shared` exists beside the checkout, and
//! `cfg(dolg_chromium)` when Debian's chromium is installed (the browser test of `dolg serve`);
//! both always under `CI=true`. Tests that need them carry
//! `#[cfg_attr(not(dolg_shared), ignore = "…")]`: without the directory they are reported as
//! ignored, with the reason, instead of passing without checking anything; under CI they always
//! run, so a missing directory fails them (tests/integration/common.rs `shared_dir()` panics naming
//! the path).
//!
//! The script watches only itself and `CI`, so it never reruns (and never rebuilds the library)
//! because something outside the checkout changed: watching `../shared` or `/usr/bin` made every
//! apt-get and, while `../shared` was missing, every build recompile the crate. The price is that a
//! directory or browser added after the first build is noticed only once build.rs is touched; the
//! ignore reasons say so.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(dolg_shared)");
    println!("cargo::rustc-check-cfg=cfg(dolg_chromium)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CI");
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if ci || Path::new(&manifest_dir).join("../shared").is_dir() {
        println!("cargo::rustc-cfg=dolg_shared");
    }
    // scripts/install_test_deps.sh (which .ci/run calls before building) installs it.
    if ci || Path::new("/usr/bin/chromium").exists() {
        println!("cargo::rustc-cfg=dolg_chromium");
    }
}
