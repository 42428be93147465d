"""dolg.Collection on PostgreSQL shards (postgres:// URLs, as `--db` takes them), against a
2-shard cluster that scripts/pg_cluster.sh starts for this module on 127.0.0.1: every result
equals the local collection's on the same vectors (the Rust suite, tests/integration/postgres.rs,
covers photos, replicas and failures)."""

import os
import shutil
import socket
import subprocess
import tempfile

import numpy as np
import pytest

import dolg
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "pg_cluster.sh"


def free_base(count=2):
    """A base port whose next `count` ports are free now."""
    for base in range(56100, 60000, 37):
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def shards():
    # The servers run as an unprivileged user under root: their folder must be reachable, which
    # pytest's own temporary folders (mode 0700) are not.
    d = tempfile.mkdtemp(prefix="dolg-pg-")
    os.chmod(d, 0o755)
    cluster = os.path.join(d, "cluster")
    r = subprocess.run(["bash", str(SCRIPT), "start", "2", "--dir", cluster, "--port", str(free_base())], capture_output=True, text=True)
    try:
        assert r.returncode == 0, f"pg_cluster.sh start failed:\n{r.stdout}{r.stderr}"
        yield r.stdout.strip()
    finally:
        subprocess.run(["bash", str(SCRIPT), "destroy", "--dir", cluster], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def test_a_postgres_collection_answers_as_the_local_one(shards, tmp_path):
    rng = np.random.default_rng(5)
    v = rng.standard_normal((300, 64)).astype(np.float32)
    v[7] = v[3]  # an exact duplicate: a group for duplicates(), a tie for search()
    names = [f"{'ab'[i % 2]}/v{i}.jpg" for i in range(300)]
    local = dolg.Collection.create_for_vectors(tmp_path / "local", 64)
    pg = dolg.Collection.create_for_vectors(shards, 64)
    for c in (local, pg):
        c.import_vectors(v, names)
    assert len(pg) == len(local) == 300
    assert pg.info()["entries"] == 300 and len(pg.info()["shards"]) == 2
    assert pg.path.startswith("postgres://") and "127.0.0.1" in pg.path and "entries=300" in repr(pg)

    q = np.concatenate([rng.standard_normal((4, 64)).astype(np.float32), v[3:4]])
    for kw in [dict(k=10), dict(k=10, where="folder = a"), dict(k=5, where=["name ~ v1*", "folder != b"]), dict(k=0, min_score=0.3), dict(k=8, qe=3, rerank="superglobal")]:
        (ps, pi), (ls, li) = pg.search(q, **kw), local.search(q, **kw)
        assert pg.names(pi) == local.names(li), kw
        np.testing.assert_allclose(ps, ls, atol=1e-5)
    with pytest.raises(ValueError, match="unknown field"):
        pg.search(q, where="colour = red")
    with pytest.raises(ValueError, match="id 99999"):
        pg.names(np.array([99999]))

    pn, pv = pg.export()
    ln, lv = local.export()
    assert pn == ln
    np.testing.assert_allclose(pv, lv, atol=1e-6)
    members = lambda groups: [g["members"] for g in groups]
    assert members(pg.duplicates(0.99)) == members(local.duplicates(0.99)) == [["b/v3.jpg", "b/v7.jpg"]]

    # A DBA layer: searches compare with the DBA vectors, on the shards as locally, and a change
    # recomputes it.
    for c in (local, pg):
        c.build_dba(4, alpha=3.0)
    same = lambda **kw: pg.names(pg.search(q, **kw)[1]) == local.names(local.search(q, **kw)[1])
    assert same(k=10) and same(k=10, qe=2) and same(k=0, min_score=0.3)
    np.testing.assert_allclose(pg.search(q, k=10)[0], local.search(q, k=10)[0], atol=1e-5)

    assert pg.remove(["a/v0.jpg", "b/v7.jpg"]) == 2 == local.remove(["a/v0.jpg", "b/v7.jpg"])
    assert same(k=10) and same(k=10, where="folder = b")
    reopened = dolg.Collection.open(shards)
    assert len(reopened) == 298 and reopened.names(reopened.search(q, k=3)[1]) == local.names(local.search(q, k=3)[1])
    pg.compact()  # VACUUM (ANALYZE) on every shard
    assert len(pg) == 298
    with pytest.raises(ValueError, match="weights"):
        dolg.Collection.open(shards, weights="w.pth")
