#!/usr/bin/env bash
# Install what optional tests need from Debian packages (run as root, or with sudo available):
#   chromium — tests/integration/serve.rs `page_renders_results_in_chromium` (headless screenshot of `dolg serve`'s
#              page). Without it that test is reported as ignored locally; with CI=true it fails.
# Idempotent: does nothing when everything is already installed.
set -euo pipefail
exec "$(dirname "$0")/apt_install.sh" install_test_deps chromium
