"""Independent numpy reference for dolg::rerank (alpha-QE, alpha-DBA, SuperGlobal), written from the
papers' definitions and, for SuperGlobal, following the structure of the authors' MDescAug /
RerankwMDA modules (top-(K+1) rows of the MxM similarity matrix, first weighted 1, the others beta*s;
expanded query = max over the top K+1 refined candidates; final = (s1 + qhat.x')/2).

Writes JSON fixtures for tests/integration/rerank.rs:
    python scripts/rerank_reference.py OUT_DIR [NAME=DESCRIPTORS.npy ...]
random.json: 300 random unit vectors (dim 32) and 12 queries; NAME.json: real descriptors, every
4th row a query against the others (left out of its own ranking, as in `dolg eval groups`), the
descriptors copied to NAME.npy beside it.
Computations in float64; rankings by descending score, ties to the lower row.
"""
import json
import sys

import numpy as np

TOP = 120  # ranks/scores stored per query


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def order(scores, rows):
    """rows sorted by descending score, ties to the lower row (stable sort of -score over rows ascending)."""
    rows = np.asarray(rows)
    idx = np.argsort(-scores[rows], kind="stable")
    return rows[idx]


def weight(s, alpha):
    # clamp at 0, then the power (0**0 == 1 in numpy)
    return np.maximum(s, 0.0) ** alpha


def alpha_qe(q, X, top, alpha):
    w = weight(X[top] @ q, alpha)
    return unit(q + (w[:, None] * X[top]).sum(0))


def alpha_dba(X, k, alpha):
    S = X @ X.T
    out = np.empty_like(X)
    for i in range(len(X)):
        others = [j for j in range(len(X)) if j != i]
        nn = order(S[i], others)[:k]
        out[i] = unit(X[i] + (weight(S[i, nn], alpha)[:, None] * X[nn]).sum(0))
    return out


def superglobal(q, Xtop, M, K, beta):
    """Returns (order of positions 0..M-1, final scores in that order)."""
    S = Xtop @ Xtop.T
    refined = np.empty_like(Xtop)
    for i in range(len(Xtop)):
        nn = order(S[i], np.arange(len(Xtop)))[: K + 1]  # normally nn[0] == i
        w = S[i, nn] * beta
        w[0] = 1.0
        refined[i] = (w[:, None] * Xtop[nn]).sum(0) / w.sum()
    s1 = refined @ q
    pre = order(s1, np.arange(len(Xtop)))
    qhat = refined[pre[: K + 1]].max(0)
    final = (s1[pre] + refined[pre] @ qhat) / 2.0
    idx = np.argsort(-final, kind="stable")  # ties keep the s1 order
    return pre[idx], final[idx]


def pipeline(X, q, exclude, dba=None, qe=None, sg=None):
    db = alpha_dba(X, *dba) if dba else X
    rows = np.array([r for r in range(len(db)) if r != exclude])
    ranking = order(db @ q, rows)
    query = q
    if qe:
        n, alpha = qe
        query = alpha_qe(q, db, ranking[:n], alpha)
        ranking = order(db @ query, rows)
    scores = (db @ query)[ranking]
    if sg:
        M, K, beta = sg
        M = min(M, len(ranking))
        pos, final = superglobal(query, db[ranking[:M]], M, K, beta)
        ranking = np.concatenate([ranking[:M][pos], ranking[M:]])
        scores = np.concatenate([final, scores[M:]])
    return ranking, scores


CASES = [
    ("plain", None, None, None),
    ("qe_n5_a3", None, (5, 3.0), None),
    ("aqe_n4", None, (4, 0.0), None),
    ("dba_k5_a3", (5, 3.0), None, None),
    ("dba_k0", (0, 3.0), None, None),
    ("sg_m50_k9_b015", None, None, (50, 9, 0.15)),
    ("sg_m30_k3_b05", None, None, (30, 3, 0.5)),
    ("dba_qe_sg", (3, 3.0), (3, 3.0), (40, 5, 0.15)),
]


def fixture(X, Q, exclude, db_npy=None):
    cases = []
    for name, dba, qe, sg in CASES:
        ranks, scores = [], []
        for q, ex in zip(Q, exclude):
            r, s = pipeline(X, q, ex, dba, qe, sg)
            ranks.append(r[:TOP].tolist())
            scores.append(s[:TOP].tolist())
        cases.append({"name": name, "dba": dba, "qe": qe, "sg": sg, "ranks": ranks, "scores": scores})
    return {
        "dim": X.shape[1],
        "db": None if db_npy else X.astype(np.float32).ravel().tolist(),
        "db_npy": db_npy,
        "queries": None if db_npy else Q.astype(np.float32).ravel().tolist(),
        "exclude": exclude,
        "top": TOP,
        "cases": cases,
    }


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(13)
    X = unit(rng.standard_normal((300, 32))).astype(np.float32).astype(np.float64)
    # Queries near some database rows, so that neighbourhoods matter.
    Q = unit(X[rng.choice(300, 12, replace=False)] + 0.5 * unit(rng.standard_normal((12, 32)))).astype(np.float32).astype(np.float64)
    with open(f"{out}/random.json", "w") as f:
        json.dump(fixture(X, Q, [None] * len(Q)), f)
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        R32 = np.load(path).astype(np.float32)
        np.save(f"{out}/{name}.npy", R32)
        R = R32.astype(np.float64)
        picks = list(range(0, len(R), 4))  # every 4th row is a query, left out of its own ranking
        with open(f"{out}/{name}.json", "w") as f:
            json.dump(fixture(R, R[picks], picks, db_npy=f"{name}.npy"), f)


if __name__ == "__main__":
    main()
