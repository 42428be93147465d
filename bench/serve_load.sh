#!/usr/bin/env bash
# Load benchmark of `dolg serve` on 127.0.0.1 with wrk (Debian: apt-get install wrk), bounded in time.
#
#   bench/serve_load.sh [SECONDS per scenario, default 10] [CONNECTIONS, default 8]
#
# Builds a fresh index of examples/landmarks/images with the DOLG-R50 fixture from ../shared at one
# scale, starts `dolg serve` on a free port, and measures three scenarios:
#   health      GET /health                             (the HTTP stack alone)
#   search-name POST /search {"id": ...} k=10           (stored descriptor: index search only)
#   search-vec  POST /search {"vector": [512 floats]}   (query normalisation + index search)
#   upload      POST /search with a JPEG (multipart)    (decode + network + search; bounded by the
#               describe queue, so 429s are expected above --queue concurrent uploads)
# and prints a table: requests/s, p50, p99, non-2xx responses, socket errors. Everything stops by
# itself; the server is killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
CONNS=${2:-8}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }
W=../shared/fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz
[ -f "$W" ] || { echo "needs $W (../shared beside the checkout)" >&2; exit 2; }
cargo build --release --bin dolg >&2
DOLG=target/release/dolg
TMP=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

mkdir -p "$TMP/photos"
cp examples/landmarks/images/*.jpg "$TMP/photos/"
$DOLG index build --db "$TMP/db" -w "$W" --scales 1.0 "$TMP/photos" >&2
$DOLG serve --db "$TMP/db" --addr 127.0.0.1:0 --queue "${CONNS}" > "$TMP/serve.out" 2> "$TMP/serve.err" &
SERVER=$!
for _ in $(seq 1 600); do grep -q listening "$TMP/serve.out" 2>/dev/null && break; sleep 0.1; done
BASE=$(sed -n 's/^listening on //p' "$TMP/serve.out")
[ -n "$BASE" ] || { cat "$TMP/serve.err" >&2; exit 1; }
for _ in $(seq 1 600); do curl -sf "$BASE/ready" >/dev/null && break; sleep 0.1; done
ENTRIES=$(curl -s "$BASE/ready" | sed -n 's/.*"entries":\([0-9]*\).*/\1/p')
ID=$(curl -s "$BASE/images?limit=1" | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p')
VEC=$(python3 -c 'import random; random.seed(1); print(",".join("%.4f" % random.uniform(-1, 1) for _ in range(512)))')
QUERY=examples/landmarks/images/wxbs-kyiv_4.jpg

lua_post() { # body content-type -> a wrk script file
    local f="$TMP/$RANDOM.lua"
    printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "%s"\nlocal f = io.open("%s", "rb")\nwrk.body = f:read("*a")\nf:close()\n' "$2" "$1" > "$f"
    echo "$f"
}
printf '{"id": "%s", "k": 10}' "$ID" > "$TMP/name.json"
printf '{"vector": [%s], "k": 10}' "$VEC" > "$TMP/vec.json"
{
    printf -- '--BOUNDARY\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    cat "$QUERY"
    printf -- '\r\n--BOUNDARY--\r\n'
} > "$TMP/upload.body"

run() { # name threads conns url [script]
    local out
    out=$(wrk -t "$2" -c "$3" -d "${SECS}s" --timeout 30s --latency ${5:+-s "$5"} "$4" 2>&1)
    local rps p50 p99 non2xx sockerr
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
    sockerr=$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' <<<"$out"); sockerr=${sockerr:-0}
    printf '| %-11s | %5s | %9s | %9s | %9s | %8s | %11s |\n' "$1" "$3" "$rps" "$p50" "$p99" "$non2xx" "$sockerr"
}

echo
echo "dolg serve on $BASE: $ENTRIES entries, DOLG-R50 (random fixture, scale 1.0), $(nproc) cores, ${SECS}s per scenario"
echo
echo "| scenario    | conns | req/s     | p50       | p99       | non-2xx  | sock errors |"
echo "|-------------|-------|-----------|-----------|-----------|----------|-------------|"
run health 2 "$CONNS" "$BASE/health"
run search-name 2 "$CONNS" "$BASE/search" "$(lua_post "$TMP/name.json" application/json)"
run search-vec 2 "$CONNS" "$BASE/search" "$(lua_post "$TMP/vec.json" application/json)"
run upload 1 2 "$BASE/search" "$(lua_post "$TMP/upload.body" "multipart/form-data; boundary=BOUNDARY")"
echo
curl -s "$BASE/metrics" | grep -E '^dolg_extract_rejected_total|^dolg_index_entries' || true
