#!/usr/bin/env bash
# Install what the benchmarks need from Debian packages (run as root, or with sudo available):
#   wrk — bench/serve_load.sh (HTTP load against `dolg serve` on 127.0.0.1).
# Idempotent: does nothing when everything is already installed.
set -euo pipefail
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -eq 0 ]; then
    echo "install_bench_deps: nothing to install"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${need[@]}"
echo "install_bench_deps: installed ${need[*]}"
