"""Side-by-side extraction benchmark: `dolg extract` vs the PyTorch DOLG in torch_dolg.py, same
checkpoint, same photos, same threads, alternating A/B runs. Prints a Markdown table and fails if
the two disagree (cosine < 0.9999 on any descriptor). Run through bench/compare_torch.sh."""
import json, os, statistics, subprocess, sys, tempfile

import numpy as np

ckpt, dolg, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
images = sys.argv[4:]
here = os.path.dirname(os.path.abspath(__file__))
tmp = tempfile.mkdtemp()


def timed(cmd, env=None):
    """Run under GNU time for peak RSS; return (stdout, peak MiB)."""
    r = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return r.stdout, int(r.stderr.strip().splitlines()[-1]) / 1024


def run_dolg(threads, scales, out):
    stdout, rss = timed([dolg, "extract", "--weights", ckpt, "--out", out, "--threads", str(threads), "--scales", scales, "--json"] + images)
    return json.loads(stdout)["seconds_per_image"], rss


def run_torch(threads, scales, out, flops=False):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.join(here, "torch_dolg.py"), ckpt, out, str(threads), "--scales", scales] + (["--flops"] if flops else []) + images
    stdout, rss = timed(cmd, env)
    return json.loads(stdout.strip().splitlines()[-1]), rss


configs = [(t, name, scales) for t in (1, 2) for name, scales in (("5 scales", "0.3535,0.5,0.7071,1.0,1.4142"), ("scale 1.0", "1.0"))]
res = {c[:2]: {"dolg": [], "torch": [], "dolg_rss": 0, "torch_rss": 0} for c in configs}
floor = None
for rep in range(reps):
    for threads, name, scales in configs:
        r = res[(threads, name)]
        a, b = os.path.join(tmp, "a.npy"), os.path.join(tmp, "b.npy")
        order = ("dolg", "torch") if rep % 2 == 0 else ("torch", "dolg")
        for who in order:
            if who == "dolg":
                s, rss = run_dolg(threads, scales, a)
                r["dolg"].append(s)
                r["dolg_rss"] = max(r["dolg_rss"], rss)
            else:
                j, rss = run_torch(threads, scales, b, flops=floor is None and name == "5 scales")
                r["torch"].append(j["seconds_per_image"])
                r["torch_rss"] = max(r["torch_rss"], rss)
                if "gflop_per_image" in j:
                    floor = j
        da, db = np.load(a), np.load(b)
        cos = (da * db).sum(1) / np.linalg.norm(da, axis=1) / np.linalg.norm(db, axis=1)
        if cos.min() < 0.9999:
            sys.exit(f"descriptors disagree ({threads} threads, {name}): min cosine {cos.min():.6f}")
        r["min_cos"] = min(r.get("min_cos", 1.0), float(cos.min()))
        print(f"rep {rep + 1} {threads} thr {name}: dolg {r['dolg'][-1]:.3f} s/img, torch {r['torch'][-1]:.3f} s/img", file=sys.stderr)

print(f"{len(images)} photos, {reps} alternating runs each; median seconds per image\n")
print("| threads | scales | dolg s/img | PyTorch s/img | dolg img/s | PyTorch img/s | ratio dolg/PyTorch | peak RSS dolg / PyTorch (MiB) | min cosine |")
print("|---|---|---|---|---|---|---|---|---|")
for threads, name, _ in configs:
    r = res[(threads, name)]
    d, t = statistics.median(r["dolg"]), statistics.median(r["torch"])
    print(f"| {threads} | {name} | {d:.3f} | {t:.3f} | {1 / d:.2f} | {1 / t:.2f} | **{d / t:.2f}** | {r['dolg_rss']:.0f} / {r['torch_rss']:.0f} | {r['min_cos']:.6f} |")
if floor:
    print(f"\nFloor: {floor['gflop_per_image']:.1f} GFLOP per image at 5 scales; measured SGEMM rate (torch.mm 2048², 1 thread) "
          f"{floor['sgemm_gflops']:.1f} GFLOP/s → {floor['gflop_per_image'] / floor['sgemm_gflops']:.2f} s per image on 1 thread.")
