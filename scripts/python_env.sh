#!/usr/bin/env bash
# The Python environment of the `dolg` package: creates target/py-venv (pip: maturin, numpy,
# pytest, ray[data], pyarrow), then builds the extension (python/, pyo3 + maturin, abi3 wheel)
# in release mode in the workspace's target/ (so the compiled dolg crate is shared with
# `cargo build --release`) and installs it into the venv. Idempotent: packages are installed only
# when the requirement list changed, and the extension is rebuilt only when a source changed
# (cargo decides; a no-change run takes a few seconds).
#
# Use: scripts/python_env.sh; then target/py-venv/bin/python -c 'import dolg'.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/py-venv
requirements=("maturin>=1.9.4,<2" "numpy>=1.21" "pytest>=7" "ray[data]>=2.9" "pyarrow>=12" "schemathesis>=4.3,<5")
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.dolg-requirements"
if [ "$(cat "$stamp" 2>/dev/null)" != "${requirements[*]}" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "${requirements[@]}"
    echo "${requirements[*]}" > "$stamp"
fi
# maturin installs into the active virtual environment.
export VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH"
maturin develop --release --manifest-path python/Cargo.toml
"$venv/bin/python" -c 'import dolg, sys; print(f"dolg {dolg.__version__} installed in {sys.prefix}")'
