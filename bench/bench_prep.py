"""Preprocessing and multi-scale averaging shared by the PyTorch and ONNX Runtime runners of the
speed comparison (bench/compare_torch.sh), written from the project spec: the authors' BGR
input for DOLG, torchvision's RGB ImageNet input for MobileNetV2; bilinear resize per scale;
per-scale L2 normalisation, mean, L2 again. No torch import here, so the ONNX Runtime process
starts without it."""
import os, subprocess, sys, time

import cv2
import numpy as np

SCALES = [0.3535, 0.5, 0.7071, 1.0, 1.4142]
# (mean, std) per channel in the order the network reads them.
DOLG_BGR = (np.array([0.406, 0.456, 0.485], np.float32), np.array([0.225, 0.224, 0.229], np.float32))
IMAGENET_RGB = (np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32))


def timed(cmd, threads):
    """Run `cmd` under GNU time with OpenMP/MKL limited to `threads`; (stdout, wall s, user+sys s,
    peak MiB). Exits with the command's stderr if it fails."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%U %S %M"] + cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    user, sys_, rss = r.stderr.strip().splitlines()[-1].split()
    return r.stdout, wall, float(user) + float(sys_), int(rss) / 1024


def parse_args(args):
    """Pull `--scales S,S,...` and flags out of argv; returns (scales, flags, rest)."""
    scales = SCALES
    if "--scales" in args:
        i = args.index("--scales")
        scales = [float(v) for v in args[i + 1].split(",")]
        del args[i:i + 2]
    flags = {a for a in args if a.startswith("--")}
    return scales, flags, [a for a in args if not a.startswith("--")]


def scaled_inputs(path, scales, rgb=False):
    im = cv2.imread(path)  # BGR, like the authors' evaluation
    if rgb:
        im = im[:, :, ::-1]
    im = im.astype(np.float32)
    mean, std = IMAGENET_RGB if rgb else DOLG_BGR
    h, w = im.shape[:2]
    for s in scales:
        r = cv2.resize(im, (int(round(w * s)), int(round(h * s))), interpolation=cv2.INTER_LINEAR)
        yield np.ascontiguousarray(((r.transpose(2, 0, 1) / 255.0 - mean[:, None, None]) / std[:, None, None]).astype(np.float32)[None])


def describe(run, path, scales, rgb=False):
    """`run(x)` maps a [1, 3, H, W] float32 array to the raw [1, D] descriptor."""
    acc = None
    for x in scaled_inputs(path, scales, rgb):
        d = np.asarray(run(x), np.float32)[0]
        d = d / max(np.linalg.norm(d), 1e-12)
        acc = d if acc is None else acc + d
    acc /= len(scales)
    return acc / np.linalg.norm(acc)
