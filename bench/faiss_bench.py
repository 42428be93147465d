"""FAISS side of bench/compare_faiss.sh: IndexFlatIP and IndexHNSWFlat on the same data as dolg.

Reads DIR/db.npy, DIR/queries.npy (written by `cargo bench --bench search_1m -- --write DIR`),
prints one JSON object. Never needed by dolg itself.
"""
import json, resource, sys, time

import faiss
import numpy as np

d, threads = sys.argv[1], int(sys.argv[2])
faiss.omp_set_num_threads(threads)
db = np.load(f"{d}/db.npy")
q = np.load(f"{d}/queries.npy")
k = 100
out = {"n": db.shape[0], "threads": threads, "faiss": faiss.__version__}

flat = faiss.IndexFlatIP(db.shape[1])
flat.add(db)
times = []
for _ in range(3):
    t = time.perf_counter()
    _, exact = flat.search(q, k)
    times.append(time.perf_counter() - t)
out["flat_seconds"] = sorted(times)[1]
out["flat_qps"] = len(q) / out["flat_seconds"]
out["peak_rss_mib_after_flat"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

if "--hnsw" in sys.argv:
    hnsw = faiss.IndexHNSWFlat(db.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 128
    t = time.perf_counter()
    hnsw.add(db)
    out["hnsw_build_seconds"] = time.perf_counter() - t
    hnsw.hnsw.efSearch = 64
    # One query at a time, like dolg's HNSW measurement.
    t = time.perf_counter()
    approx = np.stack([hnsw.search(q[i:i + 1], 10)[1][0] for i in range(len(q))])
    out["hnsw_seconds"] = time.perf_counter() - t
    out["hnsw_qps"] = len(q) / out["hnsw_seconds"]
    out["hnsw_recall_at_10"] = float(np.mean([len(set(a) & set(e[:10])) / 10 for a, e in zip(approx, exact)]))
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
