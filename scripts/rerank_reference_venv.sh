#!/bin/sh
# Make the venv scripts/rerank_reference.py runs in (numpy only) and run it.
#   scripts/rerank_reference_venv.sh [ARGS...]   (venv in ${VENV:-target/rerank-venv})
set -e
VENV=${VENV:-target/rerank-venv}
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q numpy; }
exec "$VENV/bin/python" "$(dirname "$0")/rerank_reference.py" "$@"
