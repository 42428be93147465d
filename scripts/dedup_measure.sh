#!/usr/bin/env bash
# The near-duplicate threshold measurement (src/collection/dedup.rs, "Default thresholds"):
# builds the edited set from examples/landmarks/images, indexes it with MobileNetV2-GeM and the
# random-weights DOLG-R50 fixture (default scales), and sweeps thresholds for each.
# Usage: scripts/dedup_measure.sh [OUT_DIR]   (default /tmp/dolg-dedup; about 12 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/dolg-dedup}
fixture=../shared/fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz
cargo build --release --bin dolg --example dedup_bench
bench=target/release/examples/dedup_bench
dolg=target/release/dolg
rm -rf "$out"
$bench make-set "$out"
$dolg fetch-weights mobilenetv2
$dolg index build --db "$out/mnv2.idx" --backbone mobilenetv2 "$out/images"
$bench measure "$out/mnv2.idx" "$out/truth.tsv" | tee "$out/mnv2_sweep.tsv"
$bench measure "$out/mnv2.idx" "$out/truth.tsv" 0.90 0.96 0.002 | tee "$out/mnv2_sweep_fine.tsv"
if [ -f "$fixture" ]; then
    $dolg index build --db "$out/r50.idx" --weights "$fixture" "$out/images"
    $bench measure "$out/r50.idx" "$out/truth.tsv" | tee "$out/r50_sweep.tsv"
    $bench measure "$out/r50.idx" "$out/truth.tsv" 0.990 0.9995 0.0005 | tee "$out/r50_sweep_fine.tsv"
fi
