#!/usr/bin/env bash
# Chooses the spatial re-ranking and near-duplicate defaults by leave-one-source-out
# (examples/select_defaults.rs) and prints the tables the README quotes. One index per source (MobileNetV2-GeM + XFeat local
# features) is built, or brought up to date, under IDX_ROOT first.
# Usage: scripts/select_defaults.sh [IDX_ROOT]   (default target/corpus-idx; about 30 minutes on 2
# cores the first time, most of it describing the photos)
# Sources: every data/validation/<source>/ and, when present, ../shared/data/landmarks-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
idx=${1:-target/corpus-idx}
cargo build --release --bin dolg --example select_defaults --example dedup_bench
dolg=target/release/dolg
$dolg fetch-weights mobilenetv2 >/dev/null
$dolg fetch-weights xfeat >/dev/null
sources=(data/validation/*/)
[ -d ../shared/data/landmarks-dev ] && sources+=(../shared/data/landmarks-dev/)
mkdir -p "$idx"
for s in "${sources[@]}"; do
    s=${s%/}
    name=$(basename "$s")
    if [ -d "$idx/$name.idx" ]; then
        $dolg index sync --db "$idx/$name.idx" --root "$s/images" "$s/images" >&2
    else
        $dolg index build --db "$idx/$name.idx" --backbone mobilenetv2 --local xfeat --root "$s/images" "$s/images" >&2
    fi
done
target/release/examples/select_defaults spatial "$idx" "${sources[@]%/}"

# Near-duplicates: per source, the 11 edits of the first photo of each of its first 8 groups among
# all its photos (examples/dedup_bench.rs make-set-from), indexed with local features.
names=()
for s in "${sources[@]}"; do
    s=${s%/}
    name=$(basename "$s")
    names+=("$name")
    if [ ! -d "$idx/$name-dedup.idx" ]; then
        rm -rf "$idx/dedup-sets/$name"
        target/release/examples/dedup_bench make-set-from "$s" "$idx/dedup-sets/$name" 8 >&2
        $dolg index build --db "$idx/$name-dedup.idx" --backbone mobilenetv2 --local xfeat --root "$idx/dedup-sets/$name/images" "$idx/dedup-sets/$name/images" >&2
    fi
done
target/release/examples/select_defaults dedup "$idx" "$idx/dedup-sets" "${names[@]}"
