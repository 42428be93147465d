"""dolg.Model: descriptors equal to `dolg extract`'s, images as arrays, errors, copies, the GIL."""

import os
import re
import threading
import time
import tracemalloc

import numpy as np
import pytest

import dolg
from conftest import IMAGES, ROOT, read_extract, run_cli, shared


@pytest.fixture(autouse=True)
def in_checkout(monkeypatch):
    # Relative paths name files as the CLI names them when run from the checkout.
    monkeypatch.chdir(ROOT)


def test_describe_files_equals_dolg_extract(mobilenet, cli_extract):
    want, want_names, _ = cli_extract
    got, names, failures = mobilenet.describe_files(["examples/landmarks/images"])
    assert failures == []
    assert names == want_names and len(names) == 39
    assert got.dtype == np.float32 and got.shape == (39, mobilenet.dim) == want.shape
    # The same library calls: bit for bit, not merely close.
    assert np.array_equal(got, want)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_describe_paths_arrays_and_bgr_agree(mobilenet, cli_extract):
    want, names, _ = cli_extract
    paths = names[:3]
    by_path = mobilenet.describe(paths)
    assert np.array_equal(by_path, want[:3])
    rgb = [dolg.read_image(p) for p in paths]
    assert rgb[0].dtype == np.uint8 and rgb[0].ndim == 3 and rgb[0].shape[2] == 3
    assert np.array_equal(mobilenet.describe(rgb), by_path)
    # BGR as OpenCV gives it, contiguous, and as a strided view (channel flip without a copy).
    bgr = [dolg.read_image(p, bgr=True) for p in paths]
    assert np.array_equal(bgr[0], rgb[0][:, :, ::-1])
    assert np.array_equal(mobilenet.describe(bgr, bgr=True), by_path)
    assert np.array_equal(mobilenet.describe([im[:, :, ::-1] for im in rgb], bgr=True), by_path)
    # Mixed lists, single items and a 4-D batch.
    assert np.array_equal(mobilenet.describe([paths[0], rgb[1]]), by_path[:2])
    assert np.array_equal(mobilenet.describe(paths[0]), by_path[:1])
    assert np.array_equal(mobilenet.describe(rgb[0]), by_path[:1])
    assert np.array_equal(mobilenet.describe(np.stack([rgb[0], rgb[0]])), by_path[[0, 0]])
    # Channel order matters: the same pixels read as BGR give another descriptor.
    assert not np.allclose(mobilenet.describe(rgb[0], bgr=True), by_path[:1])


def test_properties(mobilenet):
    assert mobilenet.dim == 1280
    assert len(mobilenet.fingerprint) == 64 and int(mobilenet.fingerprint, 16) >= 0
    assert mobilenet.scales == [0.3535, 0.5, 0.7071, 1.0, 1.4142]
    assert mobilenet.spec["backbone"] == "mobilenetv2" and mobilenet.spec["max_size"] == 1024
    # Options that change descriptors change the fingerprint.
    assert dolg.Model(backbone="mobilenetv2", scales=[1.0]).fingerprint != mobilenet.fingerprint


def test_options_match_the_cli(mobilenet, tmp_path):
    out = tmp_path / "x.npy"
    run_cli("extract", "--backbone", "mobilenetv2", "--scales", "1.0", "--max-size", "300", "--scale-combine", "max",
            IMAGES / "wxbs-kyiv_1.jpg", IMAGES / "wxbs-tyn_1.jpg", "-o", out)
    want, names = read_extract(out)
    m = dolg.Model(backbone="mobilenetv2", scales=[1.0], max_size=300, scale_combine="max")
    got, got_names, _ = m.describe_files([IMAGES / "wxbs-kyiv_1.jpg", IMAGES / "wxbs-tyn_1.jpg"])
    assert got_names == names and np.array_equal(got, want)


def test_dolg_checkpoint_matches_the_cli(tmp_path):
    weights = shared("fixtures", "dolg-r50-random", "dolg_r50_random_noaspp.pyth.gz")
    files = [IMAGES / "wxbs-kyiv_1.jpg", IMAGES / "distractor_01.jpg"]
    out = tmp_path / "r50.npy"
    run_cli("extract", "--weights", weights, "--scales", "0.5,1.0", "--max-size", "256", *files, "-o", out)
    want, names = read_extract(out)
    m = dolg.Model(weights=weights, scales=[0.5, 1.0], max_size=256)
    assert m.dim == 512
    got, got_names, _ = m.describe_files(files)
    assert got_names == names and np.array_equal(got, want)
    assert np.array_equal(m.describe([dolg.read_image(files[0])]), want[:1])


def test_delg_checkpoint_gets_delgs_scales_as_in_the_cli(tmp_path):
    # No scales given: a DELG checkpoint is described at DELG's own 1/sqrt(2), 1, sqrt(2) in every
    # front end (dolg::spec::default_scales_for), not at DOLG's five.
    weights = shared("fixtures", "delg-r50-random", "delg_r50_random.pyth.gz")
    files = [IMAGES / "wxbs-kyiv_1.jpg"]
    out = tmp_path / "delg.npy"
    run_cli("extract", "--weights", weights, "--max-size", "256", *files, "-o", out)
    want, _ = read_extract(out)
    m = dolg.Model(weights=weights, max_size=256)
    assert m.scales == pytest.approx([0.7071, 1.0, 1.4142])  # DELG's, as its authors round them
    got, _, _ = m.describe_files(files)
    assert np.array_equal(got, want)


def test_describe_files_failures(mobilenet, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    good = IMAGES / "wxbs-kyiv_1.jpg"
    x, names, failures = mobilenet.describe_files([good, bad, tmp_path / "missing.jpg"])
    assert x.shape == (1, mobilenet.dim) and names == [str(good)]
    assert [f[0] for f in failures] == [str(bad), str(tmp_path / "missing.jpg")]
    assert all(f[0] in f[1] for f in failures), failures  # every error names its file
    with pytest.raises(dolg.DolgError, match="broken.jpg"):
        mobilenet.describe_files([good, bad], on_error="raise")
    with pytest.raises(ValueError, match="on_error"):
        mobilenet.describe_files([good], on_error="ignore")


def test_errors_raise(mobilenet, tmp_path):
    with pytest.raises(dolg.DolgError, match="missing.jpg"):
        mobilenet.describe([str(tmp_path / "missing.jpg")])
    with pytest.raises(TypeError, match=r"images\[1\].*uint8.*float32"):
        mobilenet.describe([IMAGES / "wxbs-kyiv_1.jpg", np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match=r"\(8, 8, 4\)"):
        mobilenet.describe([np.zeros((8, 8, 4), np.uint8)])
    with pytest.raises(TypeError, match="uint8"):
        mobilenet.describe([np.zeros((8, 8), np.uint8)])
    with pytest.raises(TypeError):
        mobilenet.describe(42)
    with pytest.raises(ValueError, match="backbone.*mobilenetv2"):
        dolg.Model(backbone="resnet9000")
    with pytest.raises(ValueError, match="scale_combine"):
        dolg.Model(backbone="mobilenetv2", scale_combine="median")
    with pytest.raises(dolg.DolgError, match="no model given"):
        dolg.Model()
    with pytest.raises(dolg.DolgError, match="nope.pyth"):
        dolg.Model(weights=tmp_path / "nope.pyth")
    with pytest.raises(dolg.DolgError, match="scale"):
        dolg.Model(backbone="mobilenetv2", scales=[1.0, -2.0])
    with pytest.raises(dolg.DolgError, match="missing.jpg"):
        dolg.read_image(tmp_path / "missing.jpg")
    assert issubclass(dolg.DolgError, Exception)


def test_arrays_are_not_copied_on_the_python_side(mobilenet):
    # tracemalloc sees numpy's buffers: describing a 24 MB array must not allocate another
    # (no np.ascontiguousarray / astype on the way in, strided or not), and the result is
    # handed over, not copied into a fresh numpy buffer.
    img = np.random.default_rng(0).integers(0, 256, size=(2000, 4000, 3), dtype=np.uint8)
    for arr in (img, img[:, ::2], img[:, :, ::-1]):
        tracemalloc.start()
        out = mobilenet.describe(arr, bgr=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 1_000_000, f"{peak} bytes allocated by Python for a {arr.nbytes}-byte image"
        assert out.shape == (1, mobilenet.dim) and out.flags.c_contiguous and out.flags.writeable
        assert not isinstance(out.base, np.ndarray)  # owns its memory (Rust's), not a view of a copy


def test_gil_is_released_while_describing(mobilenet):
    paths = [str(IMAGES / "wxbs-kyiv_1.jpg")] * 4
    done = threading.Event()
    ticks = 0

    def work():
        mobilenet.describe(paths)
        done.set()

    t = threading.Thread(target=work)
    start = time.perf_counter()
    t.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    t.join()
    elapsed = time.perf_counter() - start
    # With the GIL held for the whole call the loop could not have run at all meanwhile.
    assert elapsed > 0.2 and ticks > 0.2 * elapsed / 0.001 * 0.5, (ticks, elapsed)


def test_list_images_matches_the_cli(cli_extract):
    _, names, _ = cli_extract
    assert dolg.list_images(["examples/landmarks/images"]) == names
    assert dolg.list_images(["examples/landmarks/images"], exclude=["wxbs-*"]) == [n for n in names if "/wxbs-" not in n]
    assert dolg.image_size(IMAGES / "wxbs-kyiv_1.jpg") == (492, 600)
    assert dolg.read_image(IMAGES / "wxbs-kyiv_1.jpg").shape == (600, 492, 3)


def test_threads_option_is_accepted():
    with pytest.raises(ValueError, match="threads"):
        dolg.Model(backbone="mobilenetv2", threads=0)
    assert os.cpu_count() >= 1


def test_a_second_thread_count_is_refused_not_ignored():
    # The process has one thread pool, sized once: after it is in use, another size is an error
    # naming the size it has, and that size is accepted.
    dolg.Model(backbone="mobilenetv2", scales=[1.0]).describe(IMAGES / "wxbs-kyiv_1.jpg")
    with pytest.raises(ValueError, match=r"already has (\d+)") as err:
        dolg.Model(backbone="mobilenetv2", threads=(os.cpu_count() or 1) + 7)
    current = int(re.search(r"already has (\d+)", str(err.value)).group(1))
    dolg.Model(backbone="mobilenetv2", threads=current)
