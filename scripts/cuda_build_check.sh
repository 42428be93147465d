#!/usr/bin/env bash
# CI's check of the `cuda` feature (issue 27): it builds offline on a machine with no GPU and no
# CUDA toolkit (cudarc loads the driver and cuDNN only at run time), and `--device cuda` either
# runs (a machine with a driver) or fails with an error that names what is missing (no driver
# here: libcuda.so.1, and where cuDNN 9 is or how to install it). Leaves the default binary in
# target/release (cargo keeps both builds, so putting it back takes a second).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --features cuda --bin dolg
photo=$(ls examples/landmarks/images/*.jpg | head -n 1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
set +e
msg=$(./target/release/dolg extract --device cuda -o "$out/d.npy" "$photo" 2>&1)
rc=$?
set -e
cargo build --release --bin dolg
if ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
    echo "cuda_build_check.sh: this machine has an NVIDIA driver; --device cuda gave rc $rc: $msg" >&2
    exit 0
fi
if [ "$rc" -ne 1 ] || ! grep -q 'libcuda.so.1' <<<"$msg" || ! grep -q 'cuDNN 9' <<<"$msg"; then
    echo "cuda_build_check.sh: without a driver, --device cuda should fail naming libcuda.so.1 and cuDNN; got rc $rc: $msg" >&2
    exit 1
fi
echo "cuda_build_check.sh: the cuda build works here as it should without a GPU: $msg" >&2
