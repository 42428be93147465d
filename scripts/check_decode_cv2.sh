#!/usr/bin/env bash
# dolg's image decoding against cv2.imread (EXIF orientation 1-8 in JPEG/PNG/WebP/TIFF, 8/16-bit,
# grey/alpha/palette in PNG/TIFF/PNM/BMP/GIF) and its size limit against Pillow's BILINEAR resize.
# Installs opencv-python-headless, pillow and numpy into target/ref-venv (scripts/py_reference_venv.sh).
# Usage: scripts/check_decode_cv2.sh [WORK_DIR]   (default target/decode-check)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/decode-check}
py=$(scripts/py_reference_venv.sh)
cargo build --release --quiet --example decode_dump
rm -rf "$work" && mkdir -p "$work"
"$py" scripts/check_decode_cv2.py target/release/examples/decode_dump "$work"
