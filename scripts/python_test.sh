#!/usr/bin/env bash
# The Python test suite (python/tests): builds the CLI and the Python package
# (scripts/python_env.sh), then runs pytest. The tests compare Python results with the CLI's
# (target/release/dolg) on the bundled photos, and run examples/ray_extract.py on a local Ray
# cluster (a head and two workers on 127.0.0.1, started and stopped by the test). Tests that read
# ../shared are skipped without it, and fail under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
# With the crash points the Rust suite builds in (`failpoints`, inert unless DOLG_FAILPOINT is set),
# so after `cargo test --release` this reuses that build instead of compiling the crate again.
cargo build --release --bin dolg --features failpoints
scripts/python_env.sh
exec target/py-venv/bin/python -m pytest python/tests -q -p no:cacheprovider "$@"
