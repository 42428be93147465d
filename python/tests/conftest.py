"""Shared fixtures: the CLI (target/release/dolg, built by scripts/python_test.sh), the bundled
photos, the MobileNetV2 weights (fetched with `dolg fetch-weights` on first use, as the Rust
tests do) and ../shared (skipped without it, failed under CI=true)."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
# Cargo's target folder, wherever CARGO_TARGET_DIR puts it.
CLI = Path(os.environ.get("DOLG_CLI", Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "dolg"))
IMAGES = ROOT / "examples" / "landmarks" / "images"
SHARED = ROOT.parent / "shared"


def run_cli(*args, json_out=False, cwd=ROOT):
    """Run the CLI; its stdout parsed as JSON when asked. A failure shows its stderr."""
    r = subprocess.run([str(CLI), *map(str, args)], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"dolg {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}"
    return json.loads(r.stdout) if json_out else r


def shared(*parts):
    """A path under ../shared; skips the test without it, unless CI=true (then it fails)."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{p} is missing (CI=true: ../shared must be beside the checkout)")
        pytest.skip(f"needs {p} (../shared beside the checkout)")
    return p


def read_extract(npy):
    """A `dolg extract` output: (descriptors, names)."""
    npy = Path(npy)
    names = (npy.parent / (npy.stem + ".names.txt")).read_text().splitlines()
    return np.load(npy), names


@pytest.fixture(scope="session")
def cli():
    if not CLI.is_file():
        pytest.fail(f"{CLI} is missing: build it with `cargo build --release --bin dolg` (scripts/python_test.sh does)")
    return CLI


@pytest.fixture(scope="session")
def mobilenet(cli):
    import dolg

    run_cli("fetch-weights", "mobilenetv2")
    return dolg.Model(backbone="mobilenetv2")


@pytest.fixture(scope="session")
def cli_extract(cli, mobilenet, tmp_path_factory):
    """`dolg extract` of the bundled photos with MobileNetV2 (paths relative to the checkout)."""
    out = tmp_path_factory.mktemp("extract") / "photos.npy"
    run_cli("extract", "--backbone", "mobilenetv2", "examples/landmarks/images", "-o", out)
    return read_extract(out) + (out,)
