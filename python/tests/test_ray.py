"""examples/ray_extract.py on a local Ray cluster (a head and two worker processes on 127.0.0.1,
CPU only, small object stores), checked row for row against `dolg extract`, and read back by
`dolg index import`."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import CLI, ROOT, read_extract, run_cli

VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")
STORE = str(80 * 1024 * 1024)  # bytes of object store per node


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray")
    # Ray keeps its sockets under --temp-dir; a short path stays within the socket-name limit.
    temp_dir = f"/tmp/dolg-ray-{os.getpid()}"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_DISABLE_DOCKER_CPU_WARNING="1")
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--disable-usage-stats", "--object-store-memory", STORE]
    def start(args):
        subprocess.run([RAY, "start", *args, *common], env=env, check=True, timeout=180, capture_output=True)
    try:
        start(["--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1", "--include-dashboard=false",
               "--temp-dir", temp_dir, "--min-worker-port", "20000", "--max-worker-port", "20999"])
        for i in range(2):
            start(["--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                   "--min-worker-port", str(21000 + 1000 * i), "--max-worker-port", str(21999 + 1000 * i)])
        yield address, env
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, timeout=120, capture_output=True)


def test_ray_extract_equals_dolg_extract(ray_cluster, mobilenet, cli_extract, tmp_path):
    address, env = ray_cluster
    want, want_names, _ = cli_extract
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "examples/ray_extract.py", "--backbone", "mobilenetv2", "--actors", "2", "--batch-size", "4", "--shard-rows", "16",
         "--out", out, "examples/landmarks/images"],
        cwd=ROOT, env=dict(env, RAY_ADDRESS=address), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["rows"], manifest["shards"], manifest["failed"], manifest["dim"]) == (39, 3, 0, 1280)
    assert manifest["fingerprint"] == mobilenet.fingerprint
    # Row for row: the shards, concatenated, are `dolg extract`'s output.
    shards = sorted(out.glob("shard-*.npy"))
    got = np.concatenate([np.load(s) for s in shards])
    names = [n for s in shards for n in read_extract(s)[1]]
    assert names == want_names and np.array_equal(got, want)
    # Metadata: one row per descriptor, with the file's hash and stored size.
    meta = pq.read_table(out / "metadata.parquet").to_pylist()
    assert [m["path"] for m in meta] == want_names and [m["row"] for m in meta] == list(range(39))
    import hashlib
    first = meta[0]
    assert first["sha256"] == hashlib.sha256((ROOT / first["path"]).read_bytes()).hexdigest()
    assert (first["width"], first["height"]) == (512, 512)  # distractor_01.jpg
    assert all(np.array_equal(np.load(shards[m["shard"]])[m["shard_row"]], want[m["row"]]) for m in meta)
    # `dolg index import` reads the folder directly.
    run_cli("index", "import", "--db", tmp_path / "db", "--descriptors", out)
    run_cli("index", "export", "--db", tmp_path / "db", "--out", tmp_path / "e.npy")
    back, back_names = read_extract(tmp_path / "e.npy")
    assert back_names == want_names and np.allclose(back, want, atol=1e-6)


def test_ray_extract_reports_failures(ray_cluster, tmp_path):
    address, env = ray_cluster
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    good = ROOT / "examples" / "landmarks" / "images" / "wxbs-kyiv_1.jpg"
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "examples/ray_extract.py", "--backbone", "mobilenetv2", "--actors", "1", "--out", out, good, bad],
                       cwd=ROOT, env=dict(env, RAY_ADDRESS=address), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    failures = json.loads((out / "failures.json").read_text())
    assert [f["path"] for f in failures] == [str(bad)] and str(bad) in failures[0]["error"]
    assert json.loads((out / "manifest.json").read_text())["rows"] == 1
