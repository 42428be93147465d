#!/usr/bin/env bash
# dolg extract vs a PyTorch DOLG-R50 (bench/torch_dolg.py) on the same checkpoint and photos,
# alternating runs, 1 and 2 threads, 5 scales and scale 1.0. Installs torch, opencv-python-headless
# and numpy into target/bench-venv with pip (for this benchmark only).
# Usage: bench/compare_torch.sh [CHECKPOINT] [REPS] [N_PHOTOS]
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=${1:-../shared/fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz}
reps=${2:-3}; n=${3:-20}
venv=target/bench-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import torch, cv2, numpy" 2>/dev/null || "$venv/bin/pip" install --quiet torch opencv-python-headless numpy
cargo build --release --quiet
mapfile -t photos < <(ls examples/landmarks/images/*.jpg | head -n "$n")
"$venv/bin/python" bench/compare_torch.py "$ckpt" ./target/release/dolg "$reps" "${photos[@]}"
