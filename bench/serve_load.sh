#!/usr/bin/env bash
# Load benchmark of `dolg serve` with wrk, on 127.0.0.1 only, bounded in time (a bench, not a test).
#
#   bench/serve_load.sh [--duration S] [--conns "1 4 16 64"] [--scenarios "upload name vector"]
#                       [--beside "off on"] [--writer "off"] [--write-interval S]
#                       [--serve-args "--max-batch 2"] [--no-extract]
#
#   --duration        seconds of load per row (default 30)
#   --conns           concurrency levels: wrk connections, each with one request in flight (default "1 4 16 64")
#   --scenarios       what the clients send to POST /search (default: all three)
#                       name    JSON {"id": ..., "k": 10}, rotating over every indexed photo
#                               (stored descriptor: index search only)
#                       vector  JSON {"vector": [512 floats], "k": 10}, rotating over 8 random vectors
#                               (query normalisation + index search)
#                       upload  multipart JPEG, rotating over the 39 bundled photos, k=10 (decode +
#                               describe with the model + search)
#   --beside          upload rows: "off": the uploading clients alone; "on": while 4 other clients
#                     search by id as fast as they can (their req/s and p99 in the last columns;
#                     default: both)
#   --writer          "off": the clients alone; "on": while a writer adds photos (default: off)
#   --write-interval  the writer's pause between two uploads, in seconds (default 1)
#   --serve-args      extra flags for `dolg serve` (default none: the server's defaults)
#   --no-extract      skip the reference run of `dolg extract` over the same 39 photos
#
# Needs wrk and curl (scripts/install_bench_deps.sh installs them) and ../shared beside the
# checkout (the DOLG-R50 fixture). Builds the release binary, indexes examples/landmarks/images
# (39 photos) with the fixture at one scale in a temporary folder, starts `dolg serve` on a free
# port of 127.0.0.1, and runs every (scenario, concurrency, writer) row for --duration seconds.
#
# The writer is one client POSTing /images at a steady pace: copies of the bundled photos, each
# with a JPEG comment naming the run and a counter, so every upload is a new entry (same pixels,
# new content hash). It keeps at most 8 of its photos in the index (deleting the oldest with
# DELETE /images/{id}) and deletes the rest when its row ends, so the index and the upload folder
# stay the same size from row to row. Everything lives in a temporary folder removed on exit.
#
# The server runs with its defaults (plus --serve-args) and a time limit of 120 s; every 429
# refusal is counted (from /metrics), and every other non-2xx answer, socket error, timeout or
# failed write counts as an error. Upload throughput is compared with `dolg extract` over the same
# photos at the same settings (whole process, start-up included, as a user runs it). Prints one
# Markdown table; exits 1 if any row had an error.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=30
CONNS="1 4 16 64"
SCENARIOS="upload name vector"
BESIDE_MODES="off on"
WRITER_MODES="off"
WRITE_INTERVAL=1
KEEP=8
SERVE_ARGS=""
EXTRACT=1
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --conns) CONNS=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --writer) WRITER_MODES=$2; shift 2 ;;
        --beside) BESIDE_MODES=$2; shift 2 ;;
        --serve-args) SERVE_ARGS=$2; shift 2 ;;
        --no-extract) EXTRACT=0; shift ;;
        --write-interval) WRITE_INTERVAL=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for c in $CONNS; do [[ "$c" =~ ^[1-9][0-9]*$ ]] || { echo "--conns: '$c' is not a positive whole number" >&2; exit 2; }; done
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || { echo "--duration: '$DURATION' is not a positive whole number of seconds" >&2; exit 2; }
for s in $SCENARIOS; do case "$s" in name|vector|upload) ;; *) echo "--scenarios: unknown scenario '$s' (name, vector, upload)" >&2; exit 2 ;; esac; done
for w in $WRITER_MODES; do case "$w" in on|off) ;; *) echo "--writer: '$w' is not on or off" >&2; exit 2 ;; esac; done
for w in $BESIDE_MODES; do case "$w" in on|off) ;; *) echo "--beside: '$w' is not on or off" >&2; exit 2 ;; esac; done

for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "needs $tool: run scripts/install_bench_deps.sh" >&2; exit 2; }
done
W=../shared/fixtures/dolg-r50-random/dolg_r50_random_noaspp.pyth.gz
[ -f "$W" ] || { echo "needs $W (../shared beside the checkout)" >&2; exit 2; }

cargo build --release --bin dolg >&2
TMP=$(mktemp -d)
SERVER=""
WRITER=""
BESIDE=""
cleanup() {
    [ -n "$BESIDE" ] && kill "$BESIDE" 2>/dev/null
    [ -n "$WRITER" ] && kill "$WRITER" 2>/dev/null
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
# A copy, so that a rebuild while the bench runs changes nothing.
cp target/release/dolg "$TMP/dolg"
DOLG=$TMP/dolg

mkdir -p "$TMP/photos"
cp examples/landmarks/images/*.jpg "$TMP/photos/"
$DOLG index build --db "$TMP/db" -w "$W" --scales 1.0 "$TMP/photos" >&2
DIM=$($DOLG index info --db "$TMP/db" --json | sed -n 's/^ *"dim": *\([0-9]*\).*/\1/p')

# The reference: `dolg extract` over the same photos, at the same settings, timed as a user runs it.
EXTRACT_RATE=""
if [ "$EXTRACT" = 1 ]; then
    NPHOTOS=$(ls "$TMP/photos"/*.jpg | wc -l)
    t0=$(date +%s.%N)
    $DOLG extract -w "$W" --scales 1.0 "$TMP/photos" --out "$TMP/extract.npy" >/dev/null 2>&1
    t1=$(date +%s.%N)
    EXTRACT_RATE=$(awk -v n="$NPHOTOS" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", n / (b - a)}')
fi

# Request lines are logged as in any deployment; only warnings and errors are kept.
# shellcheck disable=SC2086 # --serve-args is a list of flags
$DOLG serve --db "$TMP/db" --addr 127.0.0.1:0 --timeout 120 $SERVE_ARGS > "$TMP/serve.out" \
    2> >(grep --line-buffered -v 'dolg::serve::request' | grep -E 'WARN|ERROR' > "$TMP/serve.err") &
SERVER=$!
for _ in $(seq 1 600); do grep -q listening "$TMP/serve.out" 2>/dev/null && break; sleep 0.1; done
BASE=$(sed -n 's/^listening on //p' "$TMP/serve.out")
[ -n "$BASE" ] || { echo "the server did not start:" >&2; cat "$TMP/serve.err" >&2; exit 1; }
case "$BASE" in http://127.0.0.1:*) ;; *) echo "refusing to load $BASE: not 127.0.0.1" >&2; exit 1 ;; esac
for _ in $(seq 1 1200); do curl -sf "$BASE/ready" >/dev/null && break; sleep 0.1; done
curl -sf "$BASE/ready" | grep -q '"describes_photos":true' || { echo "the server is not ready to describe photos:" >&2; cat "$TMP/serve.err" >&2; exit 1; }
ENTRIES=$(curl -s "$BASE/ready" | sed -n 's/.*"entries":\([0-9]*\).*/\1/p')

# Request bodies, one file each; a wrk script rotates over a list of them.
mkdir -p "$TMP/bodies/name" "$TMP/bodies/vector" "$TMP/bodies/upload"
i=0
for id in $(curl -s "$BASE/images?limit=1000" | grep -o '"id":"[0-9a-f]*"' | cut -d'"' -f4); do
    printf '{"id": "%s", "k": 10}' "$id" > "$TMP/bodies/name/$i.json"; i=$((i + 1))
done
awk -v dim="$DIM" -v dir="$TMP/bodies/vector" 'BEGIN {
    srand(1)
    for (v = 0; v < 8; v++) {
        f = dir "/" v ".json"; printf "{\"vector\": [" > f
        for (j = 0; j < dim; j++) printf "%s%.5f", (j ? "," : ""), 2 * rand() - 1 > f
        printf "], \"k\": 10}" > f; close(f)
    }
}'
i=0
for p in examples/landmarks/images/*.jpg; do
    {
        printf -- '--BENCHBOUNDARY\r\nContent-Disposition: form-data; name="k"\r\n\r\n10\r\n'
        printf -- '--BENCHBOUNDARY\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        cat "$p"
        printf -- '\r\n--BENCHBOUNDARY--\r\n'
    } > "$TMP/bodies/upload/$i.body"
    i=$((i + 1))
done

wrk_script() { # scenario -> a wrk Lua script sending the scenario's bodies in turn
    local ct=application/json
    [ "$1" = upload ] && ct="multipart/form-data; boundary=BENCHBOUNDARY"
    local f="$TMP/$1.lua"
    {
        echo "local bodies = {}"
        for b in "$TMP/bodies/$1"/*; do
            echo "do local f = io.open(\"$b\", \"rb\"); bodies[#bodies + 1] = f:read(\"*a\"); f:close() end"
        done
        echo "local headers = {[\"Content-Type\"] = \"$ct\"}"
        echo "local i = 0"
        echo "request = function() i = i % #bodies + 1; return wrk.format(\"POST\", \"/search\", headers, bodies[i]) end"
    } > "$f"
    echo "$f"
}

# The writer: add a new photo every WRITE_INTERVAL seconds until $TMP/stop exists, keeping at most
# KEEP of its photos; then delete them. Writes "adds deletes errors" to $1 after every step.
writer() {
    local out=$1 tag=$2 n=0 adds=0 dels=0 errs=0 ids=() photos=(examples/landmarks/images/*.jpg)
    local jpg=$TMP/writer-$tag.jpg
    del() {
        if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 60 -X DELETE "$BASE/images/$1")" = 200 ]; then dels=$((dels + 1)); else errs=$((errs + 1)); fi
    }
    while [ ! -e "$TMP/stop" ]; do
        local src=${photos[$((n % ${#photos[@]}))]}
        # SOI, then a COM segment of 16 bytes (length included) naming this upload, then the rest.
        { printf '\xff\xd8\xff\xfe\x00\x10'; printf '%-14.14s' "w$tag-$n"; tail -c +3 "$src"; } > "$jpg"
        n=$((n + 1))
        local code
        code=$(curl -s -o "$TMP/writer.json" -w '%{http_code}' --max-time 120 -F "image=@$jpg;type=image/jpeg" "$BASE/images" || true)
        if [ "$code" = 201 ]; then
            adds=$((adds + 1))
            ids+=("$(grep -o '"id":"[0-9a-f]*"' "$TMP/writer.json" | head -1 | cut -d'"' -f4)")
            if [ ${#ids[@]} -gt "$KEEP" ]; then del "${ids[0]}"; ids=("${ids[@]:1}"); fi
        else
            errs=$((errs + 1))
            echo "writer: POST /images answered $code: $(head -c 300 "$TMP/writer.json" 2>/dev/null)" >&2
        fi
        echo "$adds $dels $errs" > "$out"
        sleep "$WRITE_INTERVAL"
    done
    for id in "${ids[@]}"; do del "$id"; done
    echo "$adds $dels $errs" > "$out"
}

# Wait until the server has no description running: a row's requests still being worked on when
# wrk stops (their connections closed) would otherwise still be described during the next row.
settle() {
    for _ in $(seq 1 1200); do
        m=$(curl -s "$BASE/metrics")
        grep -q '^dolg_describe_queue_waiting 0$' <<<"$m" && grep -q '^dolg_describe_queue_running 0$' <<<"$m" && return 0
        sleep 0.1
    done
    echo "the server was still describing photos 120 s after a row" >&2
    return 1
}

TOTAL_ERRORS=0
refused() { curl -s "$BASE/metrics" | awk '$1 == "dolg_describe_refused_total" {print $2}'; }

row() { # scenario conns writer(on|off) tag beside(on|off)
    local script out wstats="-" werr=0 brps="-" bp99="-" bout="" refused0
    script=$(wrk_script "$1")
    settle
    refused0=$(refused)
    if [ "$5" = on ]; then
        wrk -t 1 -c 4 -d "${DURATION}s" --timeout 60s --latency -s "$(wrk_script name)" "$BASE/search" > "$TMP/beside.out" 2>&1 &
        BESIDE=$!
    fi
    if [ "$3" = on ]; then
        rm -f "$TMP/stop"
        echo "0 0 0" > "$TMP/writer.stats"
        writer "$TMP/writer.stats" "$4" &
        WRITER=$!
        sleep 1 # the first photo is on its way when the load starts
    fi
    local threads=$2
    [ "$threads" -gt 2 ] && threads=2
    out=$(wrk -t "$threads" -c "$2" -d "${DURATION}s" --timeout 60s --latency -s "$script" "$BASE/search" 2>&1)
    if [ "$5" = on ]; then
        wait "$BESIDE"
        BESIDE=""
        bout=$(cat "$TMP/beside.out")
        brps=$(awk '/Requests\/sec/ {print $2}' <<<"$bout")
        bp99=$(awk '$1 == "99%" {print $2}' <<<"$bout")
    fi
    if [ "$3" = on ]; then
        touch "$TMP/stop"
        wait "$WRITER"
        WRITER=""
        local adds dels
        read -r adds dels werr < "$TMP/writer.stats"
        wstats="$adds / $dels"
    fi
    local rps p50 p99 non2xx sockerr errors
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
    sockerr=$(awk -F'[ ,]+' '/Socket errors/ {print $4 + $6 + $8 + $10}' <<<"$out"); sockerr=${sockerr:-0}
    if [ -z "$rps" ]; then echo "wrk failed: $out" >&2; sockerr=$((sockerr + 1)); fi
    local refusals=$(( $(refused) - refused0 ))
    errors=$((non2xx - refusals + sockerr + werr))
    TOTAL_ERRORS=$((TOTAL_ERRORS + errors))
    local vs="-"
    if [ "$1" = upload ] && [ -n "$EXTRACT_RATE" ] && [ -n "$rps" ]; then
        vs=$(awk -v r="$rps" -v e="$EXTRACT_RATE" 'BEGIN {printf "%.0f %%", 100 * r / e}')
    fi
    printf '| %-8s | %4s | %-6s | %-6s | %8s | %7s | %8s | %8s | %8s | %6s | %6s | %12s | %14s |\n' \
        "$1" "$2" "$5" "$3" "${rps:-?}" "$vs" "${p50:-?}" "${p99:-?}" "$refusals" "$errors" "$brps" "$bp99" "$wstats"
}

echo
QUEUE=$(curl -s "$BASE/ready" | grep -o '"workers":[0-9]*,"max_batch":[0-9]*\|"max_batch":[0-9]*.*"workers":[0-9]*' | head -1)
echo "dolg serve $($DOLG --version 2>/dev/null | awk '{print $2}') on $BASE: $ENTRIES entries, DOLG-R50 (random fixture, scale 1.0, ${DIM}-d, exact index), queue ${QUEUE:-?}, extra flags: ${SERVE_ARGS:-none}"
echo "$(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk, ${DURATION} s per row; dolg extract over the same $((i)) photos: ${EXTRACT_RATE:-not run} photos/s (whole process)"
echo "beside: 4 more clients searching by id meanwhile; writer: one upload to POST /images every ${WRITE_INTERVAL} s, at most $KEEP kept"
echo
echo "| scenario | conc | beside | writer | req/s    | vs extract | p50 | p99 | 429s | errors | beside req/s | beside p99 | writes add / del |"
echo "|----------|------|--------|--------|----------|---------|----------|----------|----------|--------|--------|--------------|----------------|"
tag=0
for s in $SCENARIOS; do
    for c in $CONNS; do
        for w in $WRITER_MODES; do
            modes=off
            [ "$s" = upload ] && modes=$BESIDE_MODES
            for b in $modes; do
                tag=$((tag + 1))
                row "$s" "$c" "$w" "$tag" "$b"
            done
        done
    done
done
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); index entries at the end: $(curl -s "$BASE/ready" | sed -n 's/.*"entries":\([0-9]*\).*/\1/p')"
curl -s "$BASE/metrics" | grep -E '^dolg_describe_(refused|abandoned)_total|^dolg_describe_service_seconds' || true
if [ -s "$TMP/serve.err" ]; then
    echo "server warnings and errors:"
    cat "$TMP/serve.err"
fi
if [ "$TOTAL_ERRORS" -ne 0 ]; then
    echo "FAILED: $TOTAL_ERRORS errors" >&2
    exit 1
fi
