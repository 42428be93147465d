#!/usr/bin/env bash
# dolg exact search vs FAISS IndexFlatIP on the same 1M x 512 random unit vectors, 100 queries,
# top-100, same thread count; with HNSW=1 also dolg's HNSW (usearch) against IndexHNSWFlat at the
# same settings (M=16, efConstruction=128, efSearch=64, top-10). Installs faiss-cpu and numpy into
# target/bench-venv with pip (only for this benchmark). Usage: [HNSW=1] bench/compare_faiss.sh [N] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}; threads=${2:-2}
venv=target/bench-venv data=target/bench-data
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import faiss, numpy" 2>/dev/null || "$venv/bin/pip" install --quiet faiss-cpu numpy
dolg_json=$(cargo bench --quiet --bench search_1m -- --n "$n" --threads "$threads" --write "$data" --json ${HNSW:+--hnsw})
faiss_json=$(OMP_NUM_THREADS=$threads "$venv/bin/python" bench/faiss_bench.py "$data" "$threads" ${HNSW:+--hnsw})
"$venv/bin/python" - "$dolg_json" "$faiss_json" <<'PY'
import json, sys
d, f = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"| {d['n']} x {d['dim']}, {d['queries']} queries, top-{d['k']}, {d['threads']} threads | queries/s | peak RSS (MiB) |")
print("|---|---|---|")
print(f"| dolg exact | {d['exact_qps']:.1f} | {d['peak_rss_mib']:.0f} |")
print(f"| FAISS {f['faiss']} IndexFlatIP | {f['flat_qps']:.1f} | {f['peak_rss_mib_after_flat']:.0f} |")
print(f"| ratio dolg / FAISS (higher is better for dolg) | {d['exact_qps'] / f['flat_qps']:.2f} | |")
if "hnsw_qps" in f and "hnsw_qps" in d:
    print()
    print("| HNSW, M=16, efConstruction=128, efSearch=64, top-10 | build (s) | queries/s | recall@10 | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    print(f"| dolg (usearch) | {d['hnsw_build_seconds']:.1f} | {d['hnsw_qps']:.0f} | {d['hnsw_recall_at_10']:.3f} | {d['hnsw_peak_rss_mib']:.0f} |")
    print(f"| FAISS IndexHNSWFlat | {f['hnsw_build_seconds']:.1f} | {f['hnsw_qps']:.0f} | {f['hnsw_recall_at_10']:.3f} | {f['peak_rss_mib']:.0f} |")
    print(f"| ratio dolg / FAISS | {d['hnsw_build_seconds'] / f['hnsw_build_seconds']:.2f} (time) | {d['hnsw_qps'] / f['hnsw_qps']:.2f} | | |")
PY
