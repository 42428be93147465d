#!/usr/bin/env bash
# Install what optional tests need from Debian packages (run as root, or with sudo available):
#   chromium — tests/serve.rs `page_renders_results_in_chromium` (headless screenshot of `dolg serve`'s
#              page). Without it that test is reported as ignored locally; with CI=true it fails.
# Idempotent: does nothing when everything is already installed.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
    echo "install_test_deps: nothing to install"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${need[@]}"
echo "install_test_deps: installed ${need[*]}"
