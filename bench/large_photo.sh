#!/usr/bin/env bash
# A phone-sized photo through `dolg extract`: a 6000x4500 JPEG (made with Pillow in target/ref-venv,
# see scripts/py_reference_venv.sh), the DOLG-R50 fixture checkpoint, the 5 default scales,
# --threads 2, the image size policy at 1024 (the Extractor's default; passed as --max-size when the
# CLI has the flag). Prints wall time and peak RSS from /usr/bin/time -v. Target: < 10 s, < 1 GB.
# Without a limit (--max-size 0, when the flag exists) the same run is shown for comparison.
# Usage: bench/large_photo.sh [CHECKPOINT]
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=${1:-../shared/fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz}
work=target/bench-large-photo
mkdir -p "$work"
py=$(scripts/py_reference_venv.sh)
photo=$work/photo_6000x4500.jpg
[ -s "$photo" ] || "$py" - "$photo" <<'PY'
import sys
import numpy as np
from PIL import Image
h, w = 4500, 6000
rng = np.random.default_rng(0)
y, x = np.mgrid[0:h, 0:w].astype(np.float32)
img = np.stack([128 + 100 * np.sin(x / 211.0) * np.cos(y / 97.0), (x + y) * 255 / (w + h), 128 + 90 * np.sin((x - y) / 53.0)], -1)
img += rng.normal(0, 12, img.shape).astype(np.float32)
img[((x // 300 + y // 300) % 5 == 0)] *= 0.6
Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(sys.argv[1], quality=90)
PY
# The network's share: the same photo already at 1024x768 (Pillow BILINEAR, as dolg resizes), PNG.
small=$work/photo_1024x768.png
[ -s "$small" ] || "$py" -c "import sys; from PIL import Image; Image.open(sys.argv[1]).resize((1024, 768), Image.BILINEAR).save(sys.argv[2])" "$photo" "$small"
cargo build --release --quiet --bin dolg
ls -l "$photo"
flag=()
./target/release/dolg extract --help | grep -q -- '--max-size' && flag=(--max-size 1024)
run() {
    local label=$1 input=$2; shift 2
    /usr/bin/time -v ./target/release/dolg extract "$input" --weights "$ckpt" --threads 2 -o "$work/out.npy" "$@" 2> "$work/time.txt" >/dev/null
    local wall rss
    wall=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
    rss=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
    printf '%-44s wall %s  peak RSS %d MiB\n' "$label" "$wall" $((rss / 1024))
}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
for i in 1 2; do
    run "6000x4500 JPEG, max-size 1024 ${flag[*]:-(default)}" "$photo" "${flag[@]}"
    run "1024x768 PNG (network only)" "$small" "${flag[@]}"
done
if [ ${#flag[@]} -gt 0 ]; then run "6000x4500 JPEG, no limit (--max-size 0)" "$photo" --max-size 0; fi
