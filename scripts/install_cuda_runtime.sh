#!/usr/bin/env bash
# Installs what `dolg --device cuda` needs at run time besides the NVIDIA driver: cuDNN 9 and the
# cuBLAS and NVRTC libraries its engines load, from the wheels NVIDIA publishes on PyPI, into DIR.
# dolg looks there when the libraries are not on the library path already (LD_LIBRARY_PATH, the
# system's), so nothing else needs setting. The driver (libcuda.so.1) comes with the GPU's own
# installation and cannot be installed this way.
#
# Usage: scripts/install_cuda_runtime.sh [DIR] [cu12|cu13]
#   DIR     default: $XDG_DATA_HOME/dolg/cuda-runtime (~/.local/share/dolg/cuda-runtime), where
#           dolg looks
#   cu12    wheels built against CUDA 12 (the default: drivers from 525 on); cu13 needs a driver
#           from 580 on
# Idempotent: pip skips what is already there. No GPU is needed to install.
set -euo pipefail
default_dir=${XDG_DATA_HOME:-$HOME/.local/share}/dolg/cuda-runtime
dir=${1:-$default_dir}
flavour=${2:-cu12}
case "$flavour" in
    cu12 | cu13) ;;
    *) echo "install_cuda_runtime.sh: unknown flavour '$flavour' (cu12 or cu13)" >&2; exit 2 ;;
esac
mkdir -p "$dir"
echo "install_cuda_runtime.sh: installing cuDNN 9, cuBLAS and NVRTC ($flavour wheels) into $dir" >&2
python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$dir" \
    "nvidia-cudnn-$flavour>=9,<10" "nvidia-cublas-$flavour" "nvidia-cuda-nvrtc-$flavour"
cudnn=$(find "$dir" -name 'libcudnn.so.9*' | head -n 1)
if [ -z "$cudnn" ]; then
    echo "install_cuda_runtime.sh: pip finished but no libcudnn.so.9 is under $dir" >&2
    exit 1
fi
echo "install_cuda_runtime.sh: cuDNN at $cudnn" >&2
if [ "$dir" != "$default_dir" ]; then
    echo "install_cuda_runtime.sh: not the folder dolg searches; run dolg with LD_LIBRARY_PATH=$(dirname "$cudnn")" >&2
fi
