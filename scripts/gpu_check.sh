#!/usr/bin/env bash
# The GPU check for `--device cuda`: parity of the GPU engine with the CPU's and photos per second
# against PyTorch on the same GPU, in one go (about 3 minutes on one H100).
#
#   scripts/gpu_check.sh prepare     here, on the build machine (no GPU needed): builds the `cuda`
#                                    binary and puts it, compressed, with the MobileNetV2 and XFeat
#                                    weights (dolg fetch-weights) into .gpu/ (git-ignored), ready to
#                                    copy to the GPU machine beside the checkout
#   scripts/gpu_check.sh run [OUT]   on the GPU machine, from the checkout holding .gpu/: needs the
#                                    NVIDIA driver, cuDNN 9 (on the library path, under a Python's
#                                    nvidia/*/lib folders, or put there by
#                                    scripts/install_cuda_runtime.sh) and Python with torch, numpy
#                                    and opencv for the reference and the random checkpoint.
#                                    Writes OUT/gpu_check.md (default target/gpu-check) and prints it.
#
# What it checks, at 1024 px (photos of examples/landmarks scaled up), 5 scales:
#   parity   DOLG-R50 (random weights and BatchNorm statistics, seed 0, bench/torch_dolg.py) and
#            MobileNetV2-GeM: `dolg extract --device cuda` against `--device cpu`, every descriptor
#            within cosine >= 0.99999 and |d| <= 1e-4 (issue 27's tolerance); fails otherwise
#   speed    whole-process photos per second of `dolg extract --device cuda` (DOLG-R50,
#            MobileNetV2) and of `dolg index build --backbone mobilenetv2 --local xfeat --device
#            cuda`, beside PyTorch on the same GPU (bench/torch_dolg.py --cuda, float32 without
#            TF32, as dolg) and dolg on the machine's CPU cores
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
case "$mode" in
prepare)
    cargo build --release --features cuda --bin dolg
    mkdir -p .gpu/cache
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    strip -o .gpu/dolg target/release/dolg
    xz -f -T0 -6 .gpu/dolg
    # Put the default (CPU-only) binary back in target/release (both builds are kept: instant).
    cargo build --release --bin dolg
    for w in mobilenetv2 xfeat; do
        cp "$(./target/release/dolg fetch-weights "$w" | tail -n 1)" .gpu/cache/
    done
    du -sh .gpu/* .gpu/cache/* >&2
    echo "gpu_check.sh: ready; on the GPU machine (carry .gpu): scripts/gpu_check.sh run" >&2
    exit 0
    ;;
run) ;;
*)
    echo "usage: scripts/gpu_check.sh prepare | run [OUT]" >&2
    exit 2
    ;;
esac

out=${2:-target/gpu-check}
# GPU_CHECK_DRY=1 runs every step on the CPU instead (dolg --device cpu, PyTorch on the CPU), to
# check this script on a machine without a GPU; its figures mean nothing. GPU_CHECK_PHOTOS=N
# uses N photos (default 16).
dev=cuda
tdev=(--cuda)
if [ "${GPU_CHECK_DRY:-}" = 1 ]; then
    dev=cpu
    tdev=()
    nvidia-smi() { echo "none (dry run), -, -"; }
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
# The Python with torch: $PYTHON, else the GPU image's own venv, else python3.
py=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x /opt/torch/.venv/bin/python ] && py=/opt/torch/.venv/bin/python
"$py" -c "import torch, numpy, cv2" || { echo "gpu_check.sh: $py lacks torch, numpy or cv2 (set PYTHON)" >&2; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$work/gpu.txt"

# The binary: .gpu/dolg(.xz) from `prepare`, else one built here.
if [ -f .gpu/dolg.xz ]; then
    xz -dc .gpu/dolg.xz > "$work/dolg"
    chmod +x "$work/dolg"
    dolg=$work/dolg
elif [ -x .gpu/dolg ]; then
    dolg=.gpu/dolg
else
    dolg=./target/release/dolg
fi
# cuDNN and cuBLAS from this Python's nvidia-* wheels (PyTorch brings them), when not already on the
# library path; dolg itself also searches scripts/install_cuda_runtime.sh's folder.
libs=$("$py" - <<'PY'
import os, site
dirs = set()
for sp in site.getsitepackages():
    for root, _, files in os.walk(os.path.join(sp, "nvidia")):
        if any(f.startswith(("libcudnn.so", "libcublas", "libnvrtc")) for f in files):
            dirs.add(root)
print(":".join(sorted(dirs)))
PY
)
if [ -z "$libs" ] && [ -z "$(find "${XDG_DATA_HOME:-$HOME/.local/share}/dolg/cuda-runtime" -name 'libcudnn.so.9*' 2>/dev/null | head -n 1)" ]; then
    echo "gpu_check.sh: no cuDNN under $py's site-packages nor installed by scripts/install_cuda_runtime.sh; dolg will say what it finds" >&2
fi
export LD_LIBRARY_PATH=${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Weights for --backbone mobilenetv2 and --local xfeat, where dolg's cache looks for them.
cache=${XDG_CACHE_HOME:-$HOME/.cache}/dolg
mkdir -p "$cache"
[ -d .gpu/cache ] && cp -n .gpu/cache/* "$cache/" 2>/dev/null || true

threads=$(nproc)
"$py" bench/torch_dolg.py "$work/r50.pyth" --random-checkpoint
mkdir -p "$work/photos"
"$py" - "$work/photos" "${GPU_CHECK_PHOTOS:-16}" examples/landmarks/images/*.jpg <<'PY'
import sys, cv2
out, paths = sys.argv[1], sys.argv[3:3 + int(sys.argv[2])]
for p in paths:
    im = cv2.imread(p)
    h, w = im.shape[:2]
    s = 1024 / max(h, w)
    im = cv2.resize(im, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(f"{out}/{p.rsplit('/', 1)[1]}", im, [cv2.IMWRITE_JPEG_QUALITY, 95])
PY
photos=("$work"/photos/*.jpg)
n=${#photos[@]}

# Seconds of a whole command (start-up included). A step that fails leaves its output in
# OUT/NAME.log and "failed" in the table, and the check goes on: one run on a lent GPU should
# report every step. dolg's debug log (cuDNN calls refused, fallbacks) goes to that file too.
timed() {
    local name=$1 t0 t1
    shift
    t0=$(date +%s.%N)
    if RUST_LOG=dolg=debug "$@" > "$work/$name.log" 2>&1; then
        t1=$(date +%s.%N)
        "$py" -c "print(f'{$t1 - $t0:.2f}')"
    else
        cp "$work/$name.log" "$out/$name.log"
        tail -n 5 "$work/$name.log" >&2
        echo failed
    fi
}
rate() { "$py" -c "print(f'{$1 / $2:.2f}')"; }

declare -A secs
for model in r50 mobilenetv2; do
    if [ "$model" = r50 ]; then margs=(-w "$work/r50.pyth"); else margs=(--backbone mobilenetv2); fi
    "$dolg" extract "${margs[@]}" --device "$dev" -o "$work/$model-warm.npy" "${photos[0]}" > /dev/null 2>&1 || true
    secs[$model-gpu]=$(timed "$model-gpu" "$dolg" extract "${margs[@]}" --device "$dev" -o "$work/$model-gpu.npy" "${photos[@]}")
    secs[$model-cpu]=$(timed "$model-cpu" "$dolg" extract "${margs[@]}" --device cpu --threads "$threads" -o "$work/$model-cpu.npy" "${photos[@]}")
    tflag=(); [ "$model" = mobilenetv2 ] && tflag=(--mobilenetv2)
    wts=$work/r50.pyth; [ "$model" = mobilenetv2 ] && wts=$(ls "$cache"/mobilenetv2*.pt | head -n 1)
    secs[$model-torch]=$(timed "$model-torch" "$py" bench/torch_dolg.py "$wts" "$work/$model-torch.npy" "$threads" "${tdev[@]}" "${tflag[@]}" "${photos[@]}")
done
secs[index-gpu]=$(timed index-gpu "$dolg" index build --db "$work/idx-gpu" --backbone mobilenetv2 --local xfeat --device "$dev" "${photos[@]}")
secs[index-cpu]=$(timed index-cpu "$dolg" index build --db "$work/idx-cpu" --backbone mobilenetv2 --local xfeat --threads "$threads" "${photos[@]}")

for k in "${!secs[@]}"; do echo "$k ${secs[$k]}"; done > "$work/secs.txt"
"$py" - "$work" "$n" "$threads" "$(cat "$work/gpu.txt")" "$out/gpu_check.md" <<'PY'
import sys, json, datetime, numpy as np
w, n, threads, gpu, report = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
import os
secs = dict((k, float("nan") if v == "failed" else float(v)) for k, v in (l.split() for l in open(f"{w}/secs.txt")))
name, driver = [x.strip() for x in gpu.split(",")][:2]
par = {}
nan = float("nan")
load = lambda m, k: np.load(f"{w}/{m}-{k}.npy") if os.path.exists(f"{w}/{m}-{k}.npy") and secs.get(f"{m}-{k}") == secs.get(f"{m}-{k}") else None
for m in ("r50", "mobilenetv2"):
    g, c, t = (load(m, k) for k in ("gpu", "cpu", "torch"))
    par[m] = {"cos_min": float((g * c).sum(1).min()) if g is not None and c is not None else nan,
              "max_abs": float(abs(g - c).max()) if g is not None and c is not None else nan,
              "torch_vs_cpu_cos_min": float((t * c).sum(1).min()) if t is not None and c is not None else nan}
rate = lambda k: "failed (see its .log)" if secs[k] != secs[k] else f"{n / secs[k]:.2f} photos/s ({secs[k]:.1f} s)"
lines = [f"# GPU check ({datetime.date.today()}, {name}, driver {driver}, {threads} CPU threads)", "",
         f"{n} photos at 1024 px (examples/landmarks scaled up), 5 scales, whole process (start-up and model load included).", "",
         f"| model | dolg --device cuda | PyTorch, same GPU, fp32 | dolg --device cpu, {threads} threads | GPU vs CPU: min cosine | max abs diff |",
         "|---|---|---|---|---|---|"]
for m, label in (("r50", "DOLG-R50 (random weights)"), ("mobilenetv2", "MobileNetV2-GeM")):
    p = par[m]
    lines.append(f"| {label} | {rate(m + '-gpu')} | {rate(m + '-torch')} | {rate(m + '-cpu')} | {p['cos_min']:.7f} | {p['max_abs']:.2e} |")
lines.append(f"| index build, MobileNetV2 + XFeat | {rate('index-gpu')} | | {rate('index-cpu')} | | |")
lines += ["", "parity: " + json.dumps(par)]
text = "\n".join(lines) + "\n"
open(report, "w").write(text)
print(text)
bad = [m for m, v in par.items() if not (v["cos_min"] >= 0.99999 and v["max_abs"] <= 1e-4)]
failed = sorted(k for k, v in secs.items() if v != v)
print("gpu_check.sh: parity " + ("FAILED for " + ", ".join(bad) if bad else "passed"))
if failed:
    print("gpu_check.sh: steps that failed (logs beside the report): " + ", ".join(failed))
sys.exit(1 if bad or failed else 0)
PY
