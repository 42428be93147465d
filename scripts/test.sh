#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need from Debian packages
# (scripts/install_test_deps.sh: chromium for the browser test of `dolg serve`), then runs every
# test. Tests that read ../shared (fixtures beside the checkout) are reported as ignored without it,
# and fail under CI=true. Prints how long each phase took (to stderr), so CI logs show where the
# time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
phase() {
    local name=$1 start=$SECONDS
    shift
    "$@"
    echo "test.sh: $name took $((SECONDS - start)) s" >&2
}
phase "installing test dependencies" scripts/install_test_deps.sh
# Every build below shares one set of compiled dependencies (fails fast, naming the crate, if a
# dependency change broke that: see the "workspace hack" in Cargo.toml).
phase "checking feature sets" scripts/check_feature_sets.sh
phase "cargo test (build and run)" cargo test --release "$@"
# The Python package's suite (python/tests, pytest): builds the extension into target/py-venv and
# compares its results with the CLI's, including the Ray Data example on a local Ray cluster.
phase "Python suite (build and run)" scripts/python_test.sh
# `--features cuda` builds without a GPU or CUDA toolkit, and says what is missing at run time.
phase "CUDA build (no GPU needed)" scripts/cuda_build_check.sh
echo "test.sh: everything took $SECONDS s" >&2
