"""dolg.eval against `dolg eval revisited|groups --json` and the revisitop golden values."""

import json

import numpy as np
import pytest

import dolg
from conftest import ROOT, run_cli, shared

GROUPS = ROOT / "examples" / "landmarks" / "groups.csv"
IMAGES = ROOT / "examples" / "landmarks" / "images"


@pytest.mark.parametrize("case", ["roxford5k/noisy-oracle-seed2", "rparis6k/random-seed1"])
def test_revisited_ranks_equal_the_cli_and_the_reference(case):
    dataset, name = case.split("/")
    gnd = shared("data", "revisitop", f"gnd_{dataset}.pkl")
    ranks = shared("fixtures", "revisitop", f"{dataset}_{name}_ranks.npy")
    want = run_cli("eval", "revisited", "--gnd", gnd, "--ranks", ranks, "--json", json_out=True)
    assert dolg.eval.revisited(gnd, ranks) == want
    # An in-memory array (int32 as stored, and int64) gives the same numbers.
    assert dolg.eval.revisited(gnd, np.load(ranks)) == want
    assert dolg.eval.revisited(gnd, np.load(ranks).astype(np.int64)) == want
    # Independent reference: cirtorch's compute_map (fixtures/revisitop/expected.json, a fraction; ours ×100).
    golden = json.loads(shared("fixtures", "revisitop", "expected.json").read_text())[case]
    for protocol in ("easy", "medium", "hard"):
        assert abs(dolg.eval.revisited(gnd, ranks)[protocol]["map"] - 100 * golden[protocol]["mAP"]) < 1e-9


def test_revisited_errors(tmp_path):
    gnd = shared("data", "revisitop", "gnd_roxford5k.pkl")
    with pytest.raises(ValueError, match="shape"):
        dolg.eval.revisited(gnd, np.zeros((3, 70), np.int64))
    with pytest.raises(TypeError, match="int32/int64"):
        dolg.eval.revisited(gnd, np.zeros((4993, 70), np.float32))
    with pytest.raises(ValueError, match="ranks, or db and queries"):
        dolg.eval.revisited(gnd)
    with pytest.raises(dolg.DolgError, match="missing.pkl"):
        dolg.eval.revisited(tmp_path / "missing.pkl", np.zeros((1, 1), np.int64))


def test_groups_equal_the_cli(cli_extract, mobilenet):
    _, _, npy = cli_extract
    want = run_cli("eval", "groups", "--groups", GROUPS, "--images", IMAGES, "--db", npy, "--json", json_out=True)
    assert dolg.eval.groups(GROUPS, IMAGES, db=npy) == want
    # Described by the model in process: the same descriptors, so the same numbers.
    assert dolg.eval.groups(GROUPS, IMAGES, model=mobilenet) == want
    want_qe = run_cli("eval", "groups", "--groups", GROUPS, "--images", IMAGES, "--db", npy, "--qe", "2", "--dba", "2", "--per-query", "--json", json_out=True)
    assert dolg.eval.groups(GROUPS, IMAGES, db=npy, qe=2, dba=2, per_query=True) == want_qe
    with pytest.raises(ValueError, match="exactly one"):
        dolg.eval.groups(GROUPS, IMAGES)
