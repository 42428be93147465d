#!/usr/bin/env bash
# Install the Debian packages of the commands that are missing (run as root, or with sudo available).
#   scripts/apt_install.sh LABEL COMMAND[:PACKAGE]...   (PACKAGE defaults to COMMAND)
# Idempotent: does nothing when every command is already on PATH. Used by install_test_deps.sh and
# install_bench_deps.sh; the package client is apt-get, as everywhere in this project.
set -euo pipefail
label=$1
shift
need=()
for spec in "$@"; do
    cmd=${spec%%:*}
    pkg=${spec#*:}
    command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
    echo "$label: nothing to install"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${need[@]}"
echo "$label: installed ${need[*]}"
