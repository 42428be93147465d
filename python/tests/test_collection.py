"""dolg.Collection against `dolg index ...`, `dolg search` and `dolg dedup` on the bundled photos."""

import json
import shutil

import numpy as np
import pytest

import dolg
from conftest import IMAGES, ROOT, read_extract, run_cli

QUERIES = ["examples/landmarks/images/wxbs-kyiv_1.jpg", "examples/landmarks/images/wxbs-tyn_2.jpg"]


@pytest.fixture(autouse=True)
def in_checkout(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="module")
def indexes(mobilenet, tmp_path_factory):
    """The same photos indexed by the CLI and by Python."""
    d = tmp_path_factory.mktemp("idx")
    report = run_cli("index", "build", "--db", d / "cli", "--backbone", "mobilenetv2", "examples/landmarks/images", "--json", json_out=True)
    assert report["added"] == 39
    c = dolg.Collection.open_or_create(d / "py", mobilenet, paths=["examples/landmarks/images"])
    got = c.add(["examples/landmarks/images"])
    assert {k: got[k] for k in ("added", "unchanged", "failed", "entries")} == {"added": 39, "unchanged": 0, "failed": [], "entries": 39}
    return d, c


def test_export_equals_the_cli(indexes, tmp_path):
    d, c = indexes
    run_cli("index", "export", "--db", d / "cli", "--out", tmp_path / "e.npy")
    want, want_names = read_extract(tmp_path / "e.npy")
    names, vectors = c.export()
    assert names == want_names and np.array_equal(vectors, want)
    assert len(c) == 39 and c.dim == 1280 and c.root == str(IMAGES.resolve())
    assert c.info()["entries"] == 39 and c.info()["dim"] == 1280


def test_search_images_equals_the_cli(indexes):
    d, c = indexes
    want = run_cli("search", "--db", d / "cli", *QUERIES, "--k", "5", "--json", json_out=True)
    got = c.search_images(QUERIES, k=5)
    assert [[(h["name"], np.float32(h["score"])) for h in q["results"]] for q in want["queries"]] == [[(n, np.float32(s)) for n, s in q] for q in got]
    # An indexed query photo is left out of its own results.
    assert all(n != "wxbs-kyiv_1.jpg" for n, _ in got[0])


@pytest.mark.parametrize("options,flags", [
    ({}, []),
    ({"qe": 2, "qe_alpha": 3.0}, ["--qe", "2"]),
    ({"rerank": "superglobal", "sg_m": 20, "sg_k": 3}, ["--rerank", "superglobal", "--sg-m", "20", "--sg-k", "3"]),
    ({"where": ["name ~ wxbs-*", "name !~ *_2.jpg"]}, ["--where", "name ~ wxbs-*", "--where", "name !~ *_2.jpg"]),
])
def test_search_vectors_equals_the_cli(indexes, cli_extract, tmp_path, options, flags):
    d, c = indexes
    x, _, npy = cli_extract
    q = np.ascontiguousarray(x[[0, 7, 20]])
    np.save(tmp_path / "q.npy", q)
    run_cli("search", "--db", d / "cli", "--vectors", tmp_path / "q.npy", "--k", "6", "--out-npy", tmp_path / "hits", *flags)
    scores, ids = c.search(q, k=6, **options)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and scores.shape == ids.shape == (3, 6)
    assert np.array_equal(ids, np.load(tmp_path / "hits.ids.npy"))
    assert np.array_equal(scores, np.load(tmp_path / "hits.scores.npy"))
    rows = dict(line.split("\t") for line in (tmp_path / "hits.rows.tsv").read_text().splitlines())
    assert c.names(ids) == [[rows[str(i)] for i in row] for row in ids]


def test_search_padding_and_range(indexes, cli_extract):
    _, c = indexes
    x, _, _ = cli_extract
    scores, ids = c.search(x[:2], k=50)
    assert scores.shape == (2, 50)
    assert (ids[:, 39:] == -1).all() and np.isnan(scores[:, 39:]).all() and (ids[:, :39] >= 0).all()
    assert c.names(ids[0])[39] is None and c.names(ids[:, :0]) == [[], []]
    # Range query: every entry scoring at least 0.9, best first.
    s, i = c.search(x[:1], k=0, min_score=0.9)
    kept = i[0] >= 0
    assert (s[0][kept] >= 0.9).all() and np.all(np.diff(s[0][kept]) <= 0)
    full = x @ x[0]
    assert kept.sum() == (full >= 0.9).sum()


def test_duplicates_equal_the_cli(indexes):
    d, c = indexes
    want = run_cli("dedup", "--db", d / "cli", "--threshold", "0.9", "--json", json_out=True)
    got = c.duplicates(0.9)
    assert json.loads(json.dumps(got)) == want["groups"]
    # No local features stored: the global-score default (src/collection/dedup.rs).
    assert c.default_duplicate_threshold == pytest.approx(0.96)


def test_writes_sync_remove(mobilenet, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for f in ("wxbs-kyiv_1.jpg", "wxbs-kyiv_2.jpg", "wxbs-tyn_1.jpg"):
        shutil.copy(IMAGES / f, photos / f)
    c = dolg.Collection.create(tmp_path / "db", mobilenet, root=photos)
    assert c.add([photos])["added"] == 3
    assert c.add([photos])["unchanged"] == 3
    (photos / "wxbs-tyn_1.jpg").rename(photos / "tyn.jpg")
    (photos / "wxbs-kyiv_2.jpg").unlink()
    r = c.sync([photos])
    assert (r["added"], r["renamed"], r["removed"], r["unchanged"], r["entries"]) == (0, 1, 1, 1, 2)
    assert sorted(c.export()[0]) == ["tyn.jpg", "wxbs-kyiv_1.jpg"]
    with pytest.raises(dolg.DolgError, match="nothere.jpg"):
        c.remove(["nothere.jpg"])
    assert len(c) == 2  # nothing removed unless every name is found
    assert c.remove(["tyn.jpg"]) == 1 and len(c) == 1
    # Imported vectors must be vouched for in an index that has a model.
    v = mobilenet.describe(IMAGES / "wxbs-tyn_2.jpg")
    with pytest.raises(dolg.DolgError, match="same model"):
        c.import_vectors(v, ["imported"])
    c.import_vectors(v, ["imported"], same_model=True)
    assert c.search(v, k=1)[1][0, 0] >= 0 and c.names(c.search(v, k=1)[1]) == [["imported"]]
    with pytest.raises(dolg.DolgError, match="1280"):
        c.import_vectors(np.zeros((1, 7), np.float32), ["x"], same_model=True)


def test_collection_errors(mobilenet, indexes, tmp_path):
    d, c = indexes
    with pytest.raises(dolg.DolgError):
        dolg.Collection.open(tmp_path / "no-such-index")
    # A PostgreSQL server that does not answer is named.
    with pytest.raises(dolg.DolgError, match="127.0.0.1:1/postgres"):
        dolg.Collection.open("postgres://postgres@127.0.0.1:1/postgres")
    with pytest.raises(ValueError, match="mode"):
        dolg.Collection.open(d / "cli", mode="append")
    with pytest.raises(ValueError, match="kind"):
        dolg.Collection.create(tmp_path / "x", mobilenet, kind="ivf")
    with pytest.raises(TypeError, match="float32"):
        c.search(np.zeros((1, 1280), np.float64))
    with pytest.raises(dolg.DolgError, match="1280"):
        c.search(np.zeros((1, 5), np.float32))
    with pytest.raises(ValueError, match="rerank"):
        c.search(np.zeros((1, 1280), np.float32), rerank="magic")
    with pytest.raises(ValueError, match="min_score"):
        c.search(np.zeros((1, 1280), np.float32), k=0)
    with pytest.raises(ValueError, match="unknown field 'date'"):
        c.search(np.zeros((1, 1280), np.float32), where="date >= 2024-06-01")
    with pytest.raises(ValueError, match="where="):
        c.search_images(QUERIES, where=[3])
    # A second writer is refused while one holds the index.
    w = dolg.Collection.open(d / "cli", mode="write")
    with pytest.raises(dolg.DolgError):
        dolg.Collection.open(d / "cli", mode="write")
    del w


def test_opened_by_the_cli_built_index(indexes, tmp_path):
    d, _ = indexes
    c = dolg.Collection.open(d / "cli")
    # A query photo that is not indexed (a copy outside the root) is described with the model
    # rebuilt from the recorded spec, and finds its original first.
    shutil.copy(IMAGES / "wxbs-kyiv_1.jpg", tmp_path / "copy.jpg")
    hits = c.search_images([tmp_path / "copy.jpg"], k=3)
    assert hits[0][0][0] == "wxbs-kyiv_1.jpg" and hits[0][0][1] == pytest.approx(1.0, abs=1e-5)
