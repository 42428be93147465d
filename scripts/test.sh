#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need from Debian packages
# (scripts/install_test_deps.sh: chromium for the browser test of `dolg serve`), then runs every
# test. Tests that read ../shared (fixtures beside the checkout) are reported as ignored without it,
# and fail under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_test_deps.sh
# Every build below shares one set of compiled dependencies (fails fast, naming the crate, if a
# dependency change broke that: see the "workspace hack" in Cargo.toml).
scripts/check_feature_sets.sh
cargo test --release "$@"
# The Python package's suite (python/tests, pytest): builds the extension into target/py-venv and
# compares its results with the CLI's, including the Ray Data example on a local Ray cluster.
scripts/python_test.sh
