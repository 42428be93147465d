#!/usr/bin/env bash
# Creates (once) target/ref-venv, a Python virtual environment with OpenCV, Pillow and NumPy, the
# reference implementations the decode/preprocess checks compare against
# (scripts/check_decode_cv2.py, bench/large_photo.sh). Prints the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/ref-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
"$venv/bin/python" -c "import cv2, PIL, numpy" 2>/dev/null || "$venv/bin/pip" install --quiet opencv-python-headless pillow numpy >&2
echo "$venv/bin/python"
