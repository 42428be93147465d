"""Side-by-side extraction benchmark: `dolg extract` vs PyTorch eager (torch_dolg.py) vs ONNX
Runtime (ort_dolg.py, on the same network exported from the PyTorch model), same weights, same
photos, same threads, runs alternated (the order rotates every repetition). For each runtime:
the time per photo inside the process, the whole process per photo (start-up, weight loading
and writing included), user+sys CPU time per photo and peak RSS (GNU time). Prints a Markdown
table and fails if any runtime's descriptors disagree with PyTorch's (cosine < 0.9999).
Run through bench/compare_torch.sh.

Usage: compare_torch.py dolg|mobilenetv2 WEIGHTS MODEL.onnx DOLG_BINARY REPS IMAGE...
"""
import json, os, statistics, sys, tempfile

import numpy as np

from bench_prep import timed

mode, weights, onnx_model, dolg, reps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
images = sys.argv[6:]
mobile = mode == "mobilenetv2"
here = os.path.dirname(os.path.abspath(__file__))
tmp = tempfile.mkdtemp()
FIVE = "0.3535,0.5,0.7071,1.0,1.4142"


def run(who, threads, scales, out, flops=False):
    if who == "dolg":
        model = ["--backbone", "mobilenetv2"] if mobile else ["--weights", weights]
        cmd = [dolg, "extract"] + model + ["--out", out, "--threads", str(threads), "--scales", scales, "--json"] + images
        stdout, wall, cpu, rss = timed(cmd, threads)
        per = json.loads(stdout)["seconds_per_image"]
        return {"per": per, "wall": wall, "cpu": cpu, "rss": rss}
    py = sys.executable
    if who == "torch":
        cmd = [py, os.path.join(here, "torch_dolg.py"), weights, out, str(threads), "--scales", scales] + (["--flops"] if flops else [])
    else:
        cmd = [py, os.path.join(here, "ort_dolg.py"), onnx_model, out, str(threads), "--scales", scales]
    cmd += (["--mobilenetv2"] if who == "torch" and mobile else []) + (["--rgb"] if who == "ort" and mobile else []) + images
    stdout, wall, cpu, rss = timed(cmd, threads)
    j = json.loads(stdout.strip().splitlines()[-1])
    return {"per": j["seconds_per_image"], "wall": wall, "cpu": cpu, "rss": rss, "json": j}


who_all = ["dolg", "torch", "ort"]
configs = [(t, name, scales) for t in (1, 2) for name, scales in (("5 scales", FIVE), ("scale 1.0", "1.0"))]
res = {(c[0], c[1], w): [] for c in configs for w in who_all}
min_cos = {(c[0], c[1], w): 1.0 for c in configs for w in who_all}
floor = None
n = len(images)
for rep in range(reps):
    for threads, name, scales in configs:
        order = who_all[rep % 3:] + who_all[:rep % 3]
        outs = {w: os.path.join(tmp, f"{w}.npy") for w in who_all}
        for w in order:
            want_flops = w == "torch" and floor is None and threads == 1 and name == "5 scales"
            r = run(w, threads, scales, outs[w], flops=want_flops)
            if want_flops:
                floor = r["json"]
            res[(threads, name, w)].append(r)
        ref = np.load(outs["torch"])
        for w in ("dolg", "ort"):
            d = np.load(outs[w])
            cos = (d * ref).sum(1) / np.linalg.norm(d, axis=1) / np.linalg.norm(ref, axis=1)
            min_cos[(threads, name, w)] = min(min_cos[(threads, name, w)], float(cos.min()))
            if cos.min() < 0.9999:
                sys.exit(f"{w} and PyTorch disagree ({threads} threads, {name}): min cosine {cos.min():.6f}")
        line = ", ".join(f"{w} {res[(threads, name, w)][-1]['wall'] / n:.3f}" for w in who_all)
        print(f"rep {rep + 1} {threads} thr {name}: whole process s/photo: {line}", file=sys.stderr)

med = lambda t, name, w, k: statistics.median(r[k] for r in res[(t, name, w)])
label = {"dolg": "dolg extract", "torch": "PyTorch eager", "ort": "ONNX Runtime"}
net = "MobileNetV2 off-the-shelf GeM" if mobile else "DOLG-R50"
print(f"{net}, {n} photos, {reps} alternated runs each, medians. Seconds per photo.\n")
print("| threads | scales | runtime | in process | whole process | CPU (user+sys) | whole process vs PyTorch | peak RSS (MiB) | min cosine to PyTorch |")
print("|---|---|---|---|---|---|---|---|---|")
for threads, name, _ in configs:
    base = med(threads, name, "torch", "wall")
    for w in who_all:
        cos = "—" if w == "torch" else f"{min_cos[(threads, name, w)]:.6f}"
        ratio = med(threads, name, w, "wall") / base
        print(f"| {threads} | {name} | {label[w]} | {med(threads, name, w, 'per'):.3f} | {med(threads, name, w, 'wall') / n:.3f} | "
              f"{med(threads, name, w, 'cpu') / n:.3f} | **{ratio:.2f}** | {max(r['rss'] for r in res[(threads, name, w)]):.0f} | {cos} |")
if floor:
    g, rate = floor["gflop_per_image"], floor["sgemm_gflops"]
    print(f"\nFLOP floor: {g:.1f} GFLOP per photo at 5 scales (convolutions and linear layers); PyTorch's SGEMM "
          f"(torch.mm 2048², 1 thread) runs at {rate:.1f} GFLOP/s here → {g / rate:.2f} s per photo on 1 thread, "
          f"{g / rate / 2:.2f} s on 2.")
