#!/usr/bin/env bash
# Install what the benchmarks need from Debian packages (run as root, or with sudo available):
#   wrk, curl — bench/serve_load.sh (HTTP load against `dolg serve` on 127.0.0.1).
# Idempotent: does nothing when everything is already installed.
set -euo pipefail
exec "$(dirname "$0")/apt_install.sh" install_bench_deps wrk curl
