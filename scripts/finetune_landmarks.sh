#!/usr/bin/env bash
# A real fine-tuning run on this machine (issue: training, item 8): DOLG on the ImageNet
# MobileNetV2 backbone, trained on half of the landmarks-dev groups as classes, evaluated on the
# other half (plus all distractors), which training never sees. Prints mAP before and after,
# wall time and peak memory. The split rule (groups sorted by name, 1st/3rd/5th/... train) was
# fixed before any result was seen.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=${DEV:-../shared/data/landmarks-dev}
OUT=${OUT:-target/finetune}
CONFIG=${CONFIG:-examples/finetune-landmarks.toml}
THREADS=${THREADS:-2}
[ -f "$DEV/groups.csv" ] || { echo "landmarks-dev not found at $DEV (set DEV=...)" >&2; exit 1; }
cargo build --release --quiet
BIN=target/release/dolg
$BIN fetch-weights mobilenetv2 >/dev/null
rm -rf "$OUT" && mkdir -p "$OUT"

tail -n +2 "$DEV/groups.csv" | awk -F, '$2!=""{print $2}' | sort -u > "$OUT/groups.txt"
awk 'NR%2==1' "$OUT/groups.txt" > "$OUT/train_groups.txt"
tail -n +2 "$DEV/groups.csv" | awk -F, 'NR==FNR{t[$1]=1;next} ($2 in t){print $1" "$2}' "$OUT/train_groups.txt" - > "$OUT/train.txt"
{ echo image,group; tail -n +2 "$DEV/groups.csv" | awk -F, 'NR==FNR{t[$1]=1;next} !($2 in t){print}' "$OUT/train_groups.txt" -; } > "$OUT/heldout.csv"
# The training groups (+ distractors), to show what the model learned on the data it saw.
{ echo image,group; tail -n +2 "$DEV/groups.csv" | awk -F, 'NR==FNR{t[$1]=1;next} ($2 in t) || $2==""{print}' "$OUT/train_groups.txt" -; } > "$OUT/traingroups.csv"
echo "train: $(wc -l < "$OUT/train.txt") images in $(wc -l < "$OUT/train_groups.txt") groups;" \
     "held out: $(($(wc -l < "$OUT/heldout.csv") - 1)) images ($(($(wc -l < "$OUT/groups.txt") - $(wc -l < "$OUT/train_groups.txt"))) groups + distractors)"

evalg() { $BIN eval groups --groups "$OUT/heldout.csv" --images "$DEV/images" --threads "$THREADS" "$@"; }
evalt() { $BIN eval groups --groups "$OUT/traingroups.csv" --images "$DEV/images" --threads "$THREADS" "$@"; }
echo "== before: off-the-shelf MobileNetV2-GeM"; evalg --backbone mobilenetv2 | tee "$OUT/before_offtheshelf.txt"

/usr/bin/time -v $BIN train --config "$CONFIG" --data "$OUT/train.txt" --images "$DEV/images" \
    --val-groups "$OUT/heldout.csv" --val-images "$DEV/images" --out "$OUT/run" --threads "$THREADS" 2> >(tee "$OUT/train.log" >&2)
FINAL=$(sed -n 's/.*"checkpoint": "\(.*\)".*/\1/p' "$OUT/run/state.json")

echo "== before: DOLG head untrained (step 0)"; evalg --weights "$OUT/run/checkpoints/step-0000000.safetensors" | tee "$OUT/before_dolg.txt"
echo "== after: fine-tuned ($FINAL)"; evalg --weights "$OUT/run/$FINAL" | tee "$OUT/after.txt"
echo "== training groups, before and after"
evalt --weights "$OUT/run/checkpoints/step-0000000.safetensors" | tee "$OUT/train_before.txt"
evalt --weights "$OUT/run/$FINAL" | tee "$OUT/train_after.txt"
grep -E "Elapsed|Maximum resident" "$OUT/train.log"
