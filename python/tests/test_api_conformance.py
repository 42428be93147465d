"""`dolg serve` against its own `/openapi.json` (generated from the handlers), with schemathesis:
its coverage, fuzzing and stateful phases (the stateful phase follows the links of `POST /images`
to `GET` and `DELETE /images/{id}`) against a server on 127.0.0.1, started without a token and
with one (then the description requires it where the server does, and the `ignored_auth` check
sends requests without it).

Every check runs but two: no server errors, no status code, content type or header the
description does not list, no response contradicting its schema, no resource used after its
deletion or missing after its creation. Left out are `positive_data_acceptance` and
`negative_data_rejection`: a schema cannot say "a decodable photo" or "`sg_m` only with
`rerank=superglobal`", so schema-valid requests the server rightly refuses (random bytes as an
image, an option without its method) would count as failures."""

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import CLI, IMAGES, ROOT, run_cli, shared

SCHEMATHESIS = Path(os.environ.get("VIRTUAL_ENV", ROOT / "target" / "py-venv")) / "bin" / "schemathesis"
TOKEN = "conformance-token"


@pytest.fixture(scope="module")
def index(cli, tmp_path_factory):
    weights = shared("fixtures", "dolg-r50-random", "dolg_r50_random_noaspp.pyth.gz")
    d = tmp_path_factory.mktemp("api")
    photos = d / "photos"
    photos.mkdir()
    for name in ["wxbs-kyiv_1.jpg", "wxbs-kyiv_2.jpg", "wxbs-tyn_1.jpg", "distractor_01.jpg"]:
        (photos / name).write_bytes((IMAGES / name).read_bytes())
    run_cli("index", "build", "--db", d / "db", "-w", weights, "--scales", "1.0", photos)
    return d / "db"


def serve(db, *flags):
    """A `dolg serve` on a free port of 127.0.0.1, ready; returns (process, base URL)."""
    p = subprocess.Popen([str(CLI), "serve", "--db", str(db), "--addr", "127.0.0.1:0", *flags], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().strip()
    assert line.startswith("listening on http://127.0.0.1:"), line
    base = line.removeprefix("listening on ")
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(base + "/ready") as r:
                if r.status == 200:
                    return p, base
        except OSError:
            time.sleep(0.1)
    p.kill()
    pytest.fail("the server never became ready")


@pytest.mark.parametrize("token", [None, TOKEN], ids=["no-token", "token"])
def test_the_api_conforms_to_its_description(index, token):
    assert SCHEMATHESIS.is_file(), f"{SCHEMATHESIS} is missing: scripts/python_env.sh installs it"
    flags = ["--token", token] if token else []
    p, base = serve(index, *flags)
    try:
        auth = ["-H", f"Authorization: Bearer {token}"] if token else []
        cmd = [
            str(SCHEMATHESIS), "run", f"{base}/openapi.json",
            "--checks", "all", "--exclude-checks", "positive_data_acceptance,negative_data_rejection",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", "25", "--seed", "1", "--request-timeout", "60", "--no-color", *auth,
        ]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=index.parent)
        assert r.returncode == 0, f"schemathesis found failures:\n{r.stdout[-12000:]}\n{r.stderr[-2000:]}"
        assert "Stateful" in r.stdout, r.stdout[-3000:]
    finally:
        p.terminate()
        p.wait(timeout=30)
