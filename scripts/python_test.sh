#!/usr/bin/env bash
# The Python test suite (python/tests): builds the CLI and the Python package
# (scripts/python_env.sh), then runs pytest. The tests compare Python results with the CLI's
# (target/release/dolg) on the bundled photos, and run examples/ray_extract.py on a local Ray
# cluster (a head and two workers on 127.0.0.1, started and stopped by the test). Tests that read
# ../shared are skipped without it, and fail under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin dolg
scripts/python_env.sh
exec target/py-venv/bin/python -m pytest python/tests -q -p no:cacheprovider "$@"
