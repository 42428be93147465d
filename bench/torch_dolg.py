"""PyTorch DOLG (R50/R101, optional multi-atrous) written from the project spec, and torchvision's
MobileNetV2 with off-the-shelf GeM (p = 3), for the speed comparison in bench/compare_torch.sh.
Never needed by dolg itself.

Usage: torch_dolg.py CHECKPOINT OUT.npy THREADS [--scales S,S,...] [--flops] [--mobilenetv2] [--cuda] IMAGE...
       torch_dolg.py CHECKPOINT --export-onnx OUT.onnx [--mobilenetv2]
       torch_dolg.py OUT.pyth --random-checkpoint
The first writes descriptors like `dolg extract` and prints a JSON line with timings (`--cuda`: on
the GPU, float32 without TF32, like dolg's GPU engine); the second exports the same network (eval
mode, dynamic height and width) for ONNX Runtime (ort_dolg.py); the third writes a DOLG-R50
checkpoint in the authors' layout with random weights and BatchNorm statistics (seed 0), for the
GPU check (scripts/gpu_check.sh), where no released checkpoint is at hand.
"""
import gzip, io, json, resource, sys, time, warnings

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench_prep import describe, parse_args


class Bottleneck(nn.Module):
    def __init__(self, cin, w, cout, stride):
        super().__init__()
        self.f = nn.Module()
        self.f.a, self.f.a_bn = nn.Conv2d(cin, w, 1, bias=False), nn.BatchNorm2d(w)
        self.f.b, self.f.b_bn = nn.Conv2d(w, w, 3, stride, 1, bias=False), nn.BatchNorm2d(w)
        self.f.c, self.f.c_bn = nn.Conv2d(w, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.has_proj = cin != cout or stride != 1
        if self.has_proj:
            self.proj, self.bn = nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)

    def forward(self, x):
        f = self.f
        y = F.relu(f.a_bn(f.a(x)))
        y = F.relu(f.b_bn(f.b(y)))
        y = f.c_bn(f.c(y))
        return F.relu(y + (self.bn(self.proj(x)) if self.has_proj else x))


class ResNet(nn.Module):
    def __init__(self, depths):
        super().__init__()
        self.stem = nn.Module()
        self.stem.conv, self.stem.bn = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        cin = 64
        for s, (n, w, cout, st) in enumerate(zip(depths, [64, 128, 256, 512], [256, 512, 1024, 2048], [1, 2, 2, 2])):
            stage = nn.Module()
            for i in range(n):
                setattr(stage, f"b{i + 1}", Bottleneck(cin, w, cout, st if i == 0 else 1))
                cin = cout
            setattr(self, f"s{s + 1}", stage)
        self.depths = depths

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem.bn(self.stem.conv(x))), 3, 2, 1)
        for s in range(4):
            stage = getattr(self, f"s{s + 1}")
            for i in range(self.depths[s]):
                x = getattr(stage, f"b{i + 1}")(x)
            if s == 2:
                f3 = x
        return f3, x


class Aspp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.aspp = nn.ModuleList([nn.Conv2d(c, 512, 1)] + [nn.Conv2d(c, 512, 3, 1, d, d) for d in (6, 12, 18)])
        self.im_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, 512, 1), nn.ReLU())
        self.conv_after = nn.Sequential(nn.Conv2d(2560, c, 1), nn.ReLU())

    def forward(self, x):
        h, w = x.shape[2:]
        parts = [self.im_pool(x).expand(-1, -1, h, w)] + [m(x) for m in self.aspp]
        return self.conv_after(torch.cat(parts, 1))


class Local(nn.Module):
    def __init__(self, aspp):
        super().__init__()
        if aspp:
            self.aspp = Aspp(1024)
        self.conv1, self.bn, self.conv2 = nn.Conv2d(1024, 1024, 1), nn.BatchNorm2d(1024), nn.Conv2d(1024, 1, 1)

    def forward(self, x):
        if hasattr(self, "aspp"):
            x = self.aspp(x)
        x = self.bn(self.conv1(x))
        n = F.normalize(x, p=2, dim=1)
        return F.softplus(self.conv2(F.relu(x))) * n


class Dolg(nn.Module):
    def __init__(self, depths, aspp):
        super().__init__()
        self.globalmodel, self.localmodel = ResNet(depths), Local(aspp)
        self.pool_g = nn.Module()
        self.pool_g.p = nn.Parameter(torch.ones(1) * 3)
        self.fc_t, self.fc = nn.Linear(2048, 1024), nn.Linear(2048, 512)

    def forward(self, x):
        f3, f4 = self.globalmodel(x)
        p = self.pool_g.p
        # GeM; a mean over (H, W) rather than avg_pool2d with the map's size, so that an exported
        # graph keeps H and W dynamic.
        fg = self.fc_t(f4.clamp(min=1e-6).pow(p).mean((2, 3)).pow(1.0 / p))
        fl = self.localmodel(f3)
        flat = fl.flatten(2)
        proj = torch.bmm(fg.unsqueeze(2), torch.bmm(fg.unsqueeze(1), flat)) / (fg * fg).sum(1).view(-1, 1, 1)
        fo = (flat - proj).mean(2)
        return self.fc(torch.cat([fg, fo], 1))


def load(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) > 9 and raw[8:9] == b"{":
        # safetensors (as `dolg train` writes): 8-byte header length, JSON header, raw tensors.
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        header.pop("__metadata__", None)
        body = raw[8 + n:]
        sd = {}
        for k, v in header.items():
            assert v["dtype"] == "F32", (k, v["dtype"])
            a, b = v["data_offsets"]
            sd[k] = torch.from_numpy(np.frombuffer(body[a:b], dtype="<f4").copy().reshape(v["shape"]))
    else:
        ck = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)
        sd = ck.get("model_state", ck)
    sd = {k: v for k, v in sd.items() if not k.startswith("desc_cls.") and not k.endswith("num_batches_tracked")}
    depths = [max(int(k.split(".")[2][1:]) for k in sd if k.startswith(f"globalmodel.s{s}.")) for s in range(1, 5)]
    m = Dolg(depths, any(k.startswith("localmodel.aspp.") for k in sd))
    m.load_state_dict(sd, strict=True)
    return m.eval()


class OffTheShelf(nn.Module):
    """torchvision's MobileNetV2 `features` (ReLU6 after features.18), GeM with p = 3."""

    def __init__(self, features):
        super().__init__()
        self.features = features

    def forward(self, x):
        return self.features(x).clamp(min=1e-6).pow(3).mean((2, 3)).pow(1.0 / 3)


def load_mobilenetv2(path):
    import torchvision

    sd = torch.load(path, map_location="cpu", weights_only=False)
    sd = sd.get("state_dict", sd)
    # The shipped file has the flat layout of the original MobileNetV2 code (conv.0 … conv.7 in
    # one Sequential); torchvision nests the expand and depthwise conv+BN pairs.
    flat_to_nested = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
    flat_to_nested_t1 = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
    feats = {}
    for k, v in sd.items():
        if not k.startswith("features.") or k.endswith("num_batches_tracked"):
            continue
        parts = k[len("features."):].split(".")
        if len(parts) > 2 and parts[1] == "conv":
            table = flat_to_nested_t1 if parts[0] == "1" else flat_to_nested
            parts = parts[:2] + table[parts[2]].split(".") + parts[3:]
        feats[".".join(parts)] = v
    net = torchvision.models.mobilenet_v2().features
    net.load_state_dict(feats, strict=False)
    missing = [k for k in net.state_dict() if k not in feats and not k.endswith("num_batches_tracked")]
    assert not missing, f"{path}: no weights for {missing[:5]}"
    return OffTheShelf(net).eval()


def conv_flops(model, h, w):
    """Multiply-adds ×2 of every conv and linear layer for one input of size h×w."""
    total = [0]
    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            total[0] += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total[0] += 2 * m.in_features * m.out_features
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, h, w))
    for x in hs:
        x.remove()
    return total[0]


def random_checkpoint(path):
    """A DOLG-R50 (no multi-atrous module) with He-initialised convolutions and random BatchNorm
    affine parameters and running statistics, so that folding BatchNorm is exercised."""
    torch.manual_seed(0)
    m = Dolg([3, 4, 6, 3], False)
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(mod, nn.BatchNorm2d):
            mod.weight.data.uniform_(0.8, 1.2)
            mod.bias.data.normal_(0, 0.1)
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.8, 1.2)
    torch.save({"model_state": m.state_dict()}, path)


def main():
    scales, flags, args = parse_args(sys.argv[1:])
    mobile = "--mobilenetv2" in flags
    if "--random-checkpoint" in flags:
        random_checkpoint(args[0])
        return
    if "--export-onnx" in flags:
        model = load_mobilenetv2(args[0]) if mobile else load(args[0])
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter: dynamic axes as declared
        torch.onnx.export(model, torch.zeros(1, 3, 224, 320), args[1], input_names=["image"], output_names=["raw"],
                          dynamic_axes={"image": {2: "height", 3: "width"}}, opset_version=17, dynamo=False)
        return
    ckpt, out, threads, images = args[0], args[1], int(args[2]), args[3:]
    torch.set_num_threads(threads)
    cv2.setNumThreads(1)
    model = load_mobilenetv2(ckpt) if mobile else load(ckpt)
    dev = "cuda" if "--cuda" in flags else "cpu"
    if dev == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        model = model.to(dev)

    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x).to(dev)).cpu().numpy()

    t0 = time.perf_counter()
    descs = [describe(run, p, scales, rgb=mobile) for p in images]
    secs = time.perf_counter() - t0
    np.save(out, np.stack(descs).astype(np.float32))
    res = {"images": len(images), "seconds": secs, "seconds_per_image": secs / len(images),
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if "--flops" in flags:
        flops = 0
        for p in images:
            h, w = cv2.imread(p).shape[:2]
            flops += sum(conv_flops(model, int(round(h * s)), int(round(w * s))) for s in scales)
        res["gflop_per_image"] = flops / len(images) / 1e9
        a = torch.randn(2048, 2048)
        torch.mm(a, a)
        t = time.perf_counter()
        for _ in range(5):
            torch.mm(a, a)
        res["sgemm_gflops"] = 5 * 2 * 2048 ** 3 / (time.perf_counter() - t) / 1e9 / threads
    print(json.dumps(res))


if __name__ == "__main__":
    main()
