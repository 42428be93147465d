#!/usr/bin/env python3
"""Distributed descriptor extraction with Ray Data and the `dolg` Python package.

Reads an image folder or list, describes the images in `map_batches` actors (each holding one
`dolg.Model`), and writes to OUT/:

    shard-000000.npy        float32 [n, D] descriptors, rows in input order (a few per shard)
    shard-000000.names.txt  the n image paths, one per line (dolg's names-file format)
    metadata.parquet        one row per described image: path, sha256, width, height (as stored,
                            read from the header), row (in the concatenated shards), shard,
                            shard_row
    failures.json           [{"path", "error"}] for images that could not be described
    manifest.json           model, fingerprint, dim, inputs, rows, shards

The rows are those `dolg extract` writes for the same inputs and options, in the same order
(python/tests/test_ray.py checks it, row for row), and `dolg index import --descriptors OUT
--db DB [--same-model]` reads the folder directly.

Run locally (Ray starts a one-machine cluster):

    python examples/ray_extract.py --backbone mobilenetv2 --out out/ examples/landmarks/images

On an existing cluster: `RAY_ADDRESS=<head>:6379 python examples/ray_extract.py ...` or
`ray job submit --address http://<head>:8265 --working-dir . -- python examples/ray_extract.py ...`.
Every node needs the `dolg` wheel installed and must see the image paths and the weights file
under the same names (a shared filesystem); OUT is written by the driver.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="*", help="images and/or folders (searched recursively, as dolg extract)")
    p.add_argument("--files-from", help="read more inputs from this file, one path per line")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--weights", help="DOLG checkpoint")
    p.add_argument("--backbone", help="pretrained backbone (mobilenetv2)")
    p.add_argument("--scales", help="comma-separated scales (default: the authors' five)")
    p.add_argument("--max-size", type=int, default=1024, help="longest side before the pyramid (0: no limit)")
    p.add_argument("--actors", type=int, default=2, help="describing actors (model copies)")
    p.add_argument("--cpus-per-actor", type=float, default=1, help="CPUs Ray reserves per actor")
    p.add_argument("--threads", type=int, default=None, help="worker threads inside each actor (default: --cpus-per-actor)")
    p.add_argument("--batch-size", type=int, default=8, help="images per map_batches call")
    p.add_argument("--shard-rows", type=int, default=10000, help="descriptors per output shard")
    return p.parse_args(argv)


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Describer:
    """A Ray Data actor: one model, reused for every batch it is given."""

    def __init__(self, model_kwargs):
        import dolg

        self.dolg = dolg
        self.model = dolg.Model(**model_kwargs)

    def __call__(self, batch):
        paths = [str(p) for p in batch["path"]]
        # The GIL is released while the model works; failures are reported, not raised.
        desc, names, failures = self.model.describe_files(paths, on_error="skip")
        failed = dict(failures)
        out = np.zeros((len(paths), self.model.dim), dtype=np.float32)
        ok = np.zeros(len(paths), dtype=bool)
        digests, widths, heights, errors = [], [], [], []
        row = 0
        for i, p in enumerate(paths):
            if p in failed:
                digests.append("")
                widths.append(0)
                heights.append(0)
                errors.append(failed[p])
                continue
            assert names[row] == p, (names[row], p)
            out[i] = desc[row]
            row += 1
            ok[i] = True
            w, h = self.dolg.image_size(p)
            digests.append(sha256(p))
            widths.append(w)
            heights.append(h)
            errors.append("")
        return {
            "input": batch["input"],
            "path": np.array(paths, dtype=object),
            "ok": ok,
            "error": np.array(errors, dtype=object),
            "sha256": np.array(digests, dtype=object),
            "width": np.array(widths, dtype=np.int64),
            "height": np.array(heights, dtype=np.int64),
            "descriptor": out,
        }


def write_atomic(path: str, write) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ShardWriter:
    """Writes descriptor rows, in order, into shards of `shard_rows` rows with names beside."""

    def __init__(self, out: str, dim: int, shard_rows: int):
        self.out, self.dim, self.shard_rows = out, dim, shard_rows
        self.rows, self.names, self.shards, self.total = [], [], 0, 0

    def add(self, vector: np.ndarray, name: str) -> tuple[int, int, int]:
        where = (self.total, self.shards, len(self.names))
        self.rows.append(vector)
        self.names.append(name)
        self.total += 1
        if len(self.names) == self.shard_rows:
            self.flush()
        return where

    def flush(self) -> None:
        if not self.names:
            return
        stem = os.path.join(self.out, f"shard-{self.shards:06d}")
        data = np.ascontiguousarray(np.stack(self.rows), dtype="<f4")
        write_atomic(stem + ".names.txt", lambda f: f.write("".join(n + "\n" for n in self.names).encode()))
        write_atomic(stem + ".npy", lambda f: np.save(f, data))
        self.rows, self.names = [], []
        self.shards += 1


def main(argv=None) -> int:
    a = parse_args(argv)
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    import dolg

    inputs = list(a.inputs)
    if a.files_from:
        with open(a.files_from, encoding="utf-8") as f:
            inputs += [line.rstrip("\r\n") for line in f if line.strip()]
    if not inputs:
        sys.exit("give images, folders or --files-from")
    files = dolg.list_images(inputs)
    model_kwargs = {"weights": a.weights, "backbone": a.backbone, "max_size": a.max_size, "threads": a.threads or max(1, int(a.cpus_per_actor))}
    if a.scales:
        model_kwargs["scales"] = [float(s) for s in a.scales.split(",")]
    # Built once here too: a bad checkpoint or option fails before any actor starts, and the
    # fingerprint goes into the manifest.
    model = dolg.Model(**model_kwargs)
    os.makedirs(a.out, exist_ok=True)

    ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # rows come back in input order
    ctx.enable_progress_bars = False
    start = time.time()
    ds = ray.data.from_items([{"input": i, "path": p} for i, p in enumerate(files)], override_num_blocks=max(1, min(len(files), 4 * a.actors)))
    ds = ds.map_batches(
        Describer,
        fn_constructor_kwargs={"model_kwargs": model_kwargs},
        batch_size=a.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=a.actors),
        num_cpus=a.cpus_per_actor,
    )

    writer = ShardWriter(a.out, model.dim, a.shard_rows)
    meta = {k: [] for k in ("path", "sha256", "width", "height", "row", "shard", "shard_row")}
    failures, expected = [], 0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for j in range(len(batch["input"])):
            if int(batch["input"][j]) != expected:
                raise RuntimeError(f"rows out of order: input {int(batch['input'][j])} where {expected} was expected")
            expected += 1
            path = str(batch["path"][j])
            if not batch["ok"][j]:
                failures.append({"path": path, "error": str(batch["error"][j])})
                continue
            row, shard, shard_row = writer.add(batch["descriptor"][j], path)
            for k, v in (("path", path), ("sha256", str(batch["sha256"][j])), ("width", int(batch["width"][j])), ("height", int(batch["height"][j])),
                         ("row", row), ("shard", shard), ("shard_row", shard_row)):
                meta[k].append(v)
    writer.flush()
    if expected != len(files):
        raise RuntimeError(f"{expected} of {len(files)} inputs came back")
    table = pa.table({
        "path": pa.array(meta["path"], pa.string()),
        "sha256": pa.array(meta["sha256"], pa.string()),
        "width": pa.array(meta["width"], pa.int64()),
        "height": pa.array(meta["height"], pa.int64()),
        "row": pa.array(meta["row"], pa.int64()),
        "shard": pa.array(meta["shard"], pa.int64()),
        "shard_row": pa.array(meta["shard_row"], pa.int64()),
    })
    pq.write_table(table, os.path.join(a.out, "metadata.parquet"))
    write_atomic(os.path.join(a.out, "failures.json"), lambda f: f.write(json.dumps(failures, indent=1).encode()))
    manifest = {"model": model.name, "fingerprint": model.fingerprint, "spec": model.spec, "dim": model.dim, "inputs": len(files),
                "rows": writer.total, "shards": writer.shards, "failed": len(failures), "seconds": round(time.time() - start, 3)}
    write_atomic(os.path.join(a.out, "manifest.json"), lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    print(json.dumps(manifest))
    for f in failures:
        print(f"warning: skipped: {f['error']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
