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
# Both sides must see the same pixels: JPEG decoders differ slightly (OpenCV's libjpeg-turbo vs
# zune-jpeg), so the photos are decoded once with OpenCV and stored as lossless PNG.
pngs=target/bench-data/png
mkdir -p "$pngs"
"$venv/bin/python" - "$pngs" $(ls examples/landmarks/images/*.jpg | head -n "$n") <<'PY'
import cv2, os, sys
for p in sys.argv[2:]:
    cv2.imwrite(os.path.join(sys.argv[1], os.path.basename(p)[:-4] + ".png"), cv2.imread(p))
PY
mapfile -t photos < <(ls "$pngs"/*.png | head -n "$n")
"$venv/bin/python" bench/compare_torch.py "$ckpt" ./target/release/dolg "$reps" "${photos[@]}"
