"""ONNX Runtime side of the speed comparison (bench/compare_torch.sh): runs a network exported
by `torch_dolg.py --export-onnx` on the photos, with the same preprocessing as the PyTorch
runner. Never needed by dolg itself.

Usage: ort_dolg.py MODEL.onnx OUT.npy THREADS [--scales S,...] [--rgb] IMAGE...
Writes descriptors like `dolg extract` and prints a JSON line with timings.
"""
import json, sys, time

import cv2
import numpy as np
import onnxruntime as ort

from bench_prep import describe, parse_args


def main():
    scales, flags, args = parse_args(sys.argv[1:])
    model, out, threads, images = args[0], args[1], int(args[2]), args[3:]
    cv2.setNumThreads(1)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    t0 = time.perf_counter()
    descs = [describe(lambda x: sess.run(None, {name: x})[0], p, scales, "--rgb" in flags) for p in images]
    secs = time.perf_counter() - t0
    np.save(out, np.stack(descs).astype(np.float32))
    print(json.dumps({"images": len(images), "seconds": secs, "seconds_per_image": secs / len(images)}))


if __name__ == "__main__":
    main()
