#!/usr/bin/env python3
"""dolg's decoding against cv2.imread, and its size limit against Pillow.

Run: scripts/check_decode_cv2.sh (builds the `decode_dump` example, makes the venv with
scripts/py_reference_venv.sh, runs this), or by hand:
    python scripts/check_decode_cv2.py target/release/examples/decode_dump WORK_DIR

1. EXIF orientation 1..8 in JPEG, PNG (eXIf), WebP (EXIF) and TIFF (Orientation tag): dolg's pixels
   equal cv2.imread's (exactly for the lossless formats; for JPEG within the difference between
   libjpeg-turbo and zune-jpeg, while dolg's oriented decode equals the exact turn/mirror of its
   upright decode of the same compressed data).
2. Formats and sample conversions: 8/16-bit grey, grey+alpha, RGB, RGBA, palette in PNG, TIFF,
   PGM/PPM/PBM, BMP, GIF: dolg == cv2.imread, byte for byte, except the documented divergences.
3. The size limit (`--max-size 1024`): dolg == PIL `Image.resize(size, BILINEAR)` with the size
   rounded half to even, byte for byte.
Exits 1 on any mismatch.
"""
import os
import subprocess
import sys
from fractions import Fraction

import cv2
import numpy as np
from PIL import Image

dump, work = sys.argv[1], sys.argv[2]
src = os.path.join(work, "src")
os.makedirs(src, exist_ok=True)
failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")
    if not ok:
        failures.append(name)


def upright(a, o):
    """What an image stored as `a` with EXIF orientation `o` looks like upright (EXIF 2.3, 4.6.4)."""
    return {
        1: a,
        2: a[:, ::-1],  # mirrored left-right
        3: a[::-1, ::-1],  # turned 180
        4: a[::-1],  # mirrored top-bottom
        5: a.transpose(1, 0, 2),  # transpose
        6: np.rot90(a, -1),  # turn 90 clockwise
        7: np.rot90(a, -1)[::-1],  # transverse
        8: np.rot90(a, 1),  # turn 90 counter-clockwise
    }[o]


def run_dump(files, *flags):
    out = os.path.join(work, "out-" + "-".join(f.strip("-") for f in flags) if flags else os.path.join(work, "out"))
    os.makedirs(out, exist_ok=True)
    subprocess.run([dump, *flags, out, *files], check=True)
    res = {}
    for f in files:
        b = os.path.basename(f)
        p = os.path.join(out, b + ".npy")
        res[f] = np.load(p) if os.path.exists(p) else open(os.path.join(out, b + ".err")).read()
    return res


def exif(o):
    e = Image.Exif()
    e[0x0112] = o
    return e


# ---------------------------------------------------------------- 1. orientation
rng = np.random.default_rng(11)
h, w = 23, 37
# Asymmetric and smooth enough that JPEG keeps it recognisable: gradients plus blocks plus noise.
yy, xx = np.mgrid[0:h, 0:w]
base = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx * yy) % 256], -1).astype(np.int32)
base[2:9, 3:12] = [250, 20, 40]
base = np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
im = Image.fromarray(base)
orient_files = {}
for fmt, ext, kw in [("JPEG", "jpg", {"quality": 92}), ("PNG", "png", {}), ("WEBP", "webp", {"lossless": True}), ("TIFF", "tif", {})]:
    for o in range(1, 9):
        p = os.path.join(src, f"orient{o}.{ext}")
        if fmt == "TIFF":
            im.save(p, fmt, tiffinfo={274: o})
        else:
            im.save(p, fmt, exif=exif(o), **kw)
        orient_files[(ext, o)] = p
files = list(orient_files.values())
ours = run_dump(files)
ours_ignored = run_dump(files, "--ignore-orientation")
for (ext, o), p in orient_files.items():
    d, di = ours[p], ours_ignored[p]
    cv = cv2.imread(p)
    cv_ignored = cv2.imread(p, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    stored = ours_ignored[orient_files[(ext, 1)]]  # same pixel data in every file of a format
    check(f"{ext} orientation {o}: ignore gives the stored pixels", isinstance(di, np.ndarray) and np.array_equal(di, stored))
    check(f"{ext} orientation {o}: apply == exact turn of the stored pixels", isinstance(d, np.ndarray) and np.array_equal(d, upright(stored, o)))
    if cv is None:
        # OpenCV 5.0 cannot read TIFF with orientation 5..8 ("Internal imread issue").
        check(f"{ext} orientation {o}: cv2.imread fails (documented), dolg reads it", ext == "tif" and o >= 5 and isinstance(d, np.ndarray))
        continue
    if ext == "jpg":
        diff = int(np.abs(d.astype(int) - cv.astype(int)).max())
        check(f"{ext} orientation {o}: == cv2.imread within JPEG decoder differences", d.shape == cv.shape and diff <= 3, f"(shape {d.shape}, max |diff| {diff})")
        check(f"{ext} orientation {o}: cv2.imread is the same turn of its own upright decode", np.array_equal(cv, upright(cv2.imread(orient_files[(ext, 1)]), o)))
    else:
        check(f"{ext} orientation {o}: == cv2.imread exactly", d.shape == cv.shape and np.array_equal(d, cv))
    if ext == "tif" and o in (2, 3, 4):
        # OpenCV applies TIFF orientation even when told to ignore it (documented divergence).
        continue
    if cv_ignored is not None:
        check(f"{ext} orientation {o}: ignore == cv2 IMREAD_IGNORE_ORIENTATION", di.shape == cv_ignored.shape and (ext == "jpg" or np.array_equal(di, cv_ignored)))

# ---------------------------------------------------------------- 2. formats
vals = np.array([0, 1, 127, 128, 255, 256, 257, 383, 384, 32767, 32768, 32895, 32896, 65279, 65280, 65535], dtype=np.uint16)
g16 = np.concatenate([np.tile(vals, (3, 1)), rng.integers(0, 65536, (5, 16)).astype(np.uint16)])
c16 = np.stack([g16, g16[::-1, ::-1], rng.integers(0, 65536, g16.shape).astype(np.uint16)], -1)
a16 = np.concatenate([c16, g16[::-1, :, None]], -1)
g8 = rng.integers(0, 256, (9, 14), dtype=np.uint8)
c8 = rng.integers(0, 256, (9, 14, 3), dtype=np.uint8)
a8 = rng.integers(0, 256, (9, 14, 4), dtype=np.uint8)
fmt_files = {}


def add(name, writer):
    p = os.path.join(src, name)
    writer(p)
    fmt_files[name] = p


# OpenCV writes arrays as BGR(A); Pillow takes RGB(A).
add("grey16.png", lambda p: cv2.imwrite(p, g16))
add("rgb16.png", lambda p: cv2.imwrite(p, c16))
add("rgba16.png", lambda p: cv2.imwrite(p, a16))
add("grey16.tif", lambda p: cv2.imwrite(p, g16))
add("rgb16.tif", lambda p: cv2.imwrite(p, c16))
add("rgba16.tif", lambda p: cv2.imwrite(p, a16))
add("grey16.pgm", lambda p: cv2.imwrite(p, g16))
add("rgb16.ppm", lambda p: cv2.imwrite(p, c16))
add("grey8.pgm", lambda p: cv2.imwrite(p, g8))
add("rgb8.ppm", lambda p: cv2.imwrite(p, c8))
add("bw.pbm", lambda p: Image.fromarray(g8 > 127).save(p))
add("grey8.png", lambda p: Image.fromarray(g8).save(p))
add("greyalpha8.png", lambda p: Image.fromarray(a8[..., :2].copy(), "LA").save(p))
add("rgba8.png", lambda p: Image.fromarray(a8, "RGBA").save(p))


def palette_png(p):
    pal = Image.fromarray((g8 % 5).astype(np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 1, 2, 3, 200, 100, 50, 9, 8, 7])
    pal.save(p, transparency=1)


add("palette_trns.png", palette_png)
add("grey8.tif", lambda p: Image.fromarray(g8).save(p))
add("rgb8.tif", lambda p: Image.fromarray(c8).save(p))
add("rgb8_lzw.tif", lambda p: Image.fromarray(c8).save(p, compression="tiff_lzw"))
add("rgb8_deflate.tif", lambda p: Image.fromarray(c8).save(p, compression="tiff_adobe_deflate"))
add("rgb24.bmp", lambda p: Image.fromarray(c8).save(p))
add("rgba32.bmp", lambda p: Image.fromarray(a8, "RGBA").save(p))
add("grey8.bmp", lambda p: Image.fromarray(g8).save(p))
add("palette.bmp", lambda p: Image.fromarray(c8).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(p))


def gif(p, frames):
    fs = [Image.fromarray(((g8 + 37 * i) % 16).astype(np.uint8), "P") for i in range(frames)]
    for f in fs:
        f.putpalette(list(rng.integers(0, 256, 48)))
    fs[0].save(p, save_all=frames > 1, append_images=fs[1:])


add("one.gif", lambda p: gif(p, 1))
add("animated.gif", lambda p: gif(p, 3))
add("grey.jpg", lambda p: Image.fromarray(g8).save(p, quality=95))
add("rgb.webp", lambda p: Image.fromarray(c8).save(p, lossless=True))
add("rgba.webp", lambda p: Image.fromarray(a8, "RGBA").save(p, lossless=True))

ours = run_dump(list(fmt_files.values()))
for name, p in fmt_files.items():
    d, cv = ours[p], cv2.imread(p)
    if cv is None:
        check(f"{name}: cv2.imread cannot read it; dolg gives {type(d).__name__}", False)
        continue
    if not isinstance(d, np.ndarray):
        check(f"{name}: dolg failed: {d}", False)
        continue
    same = d.shape == cv.shape and np.array_equal(d, cv)
    diff = int(np.abs(d.astype(int) - cv.astype(int)).max()) if d.shape == cv.shape else -1
    if name.endswith(".jpg"):
        check(f"{name}: == cv2.imread within JPEG decoder differences", d.shape == cv.shape and diff <= 3, f"(max |diff| {diff})")
    else:
        check(f"{name}: == cv2.imread exactly", same, "" if same else f"(shape {d.shape} vs {cv.shape}, max |diff| {diff})")

# ---------------------------------------------------------------- 3. size limit vs Pillow
N = 1024


def limited(hh, ww):
    longest = max(hh, ww)
    if longest <= N:
        return hh, ww
    other = lambda s: max(1, round(Fraction(s * N, longest)))  # Fraction rounds half to even
    return (N, other(ww)) if hh >= ww else (other(hh), N)


def photo_like(hh, ww, seed):
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:hh, 0:ww]
    img = np.stack([(x * 7 + y * 3) % 256, (np.sin(x / 13.0) * 100 + 128), (x ^ y) & 255], -1)
    img = img + r.normal(0, 25, img.shape)
    img[(x // 50 + y // 50) % 7 == 0] = [255, 255, 255]  # sharp edges, where aliasing would show
    return np.clip(img, 0, 255).astype(np.uint8)


size_files = {}
for hh, ww in [(1025, 2048), (2000, 3000), (4000, 3000), (1025, 300), (3, 4000), (1500, 1500), (1024, 2049), (1024, 1024), (700, 1000), (2001, 1033)]:
    p = os.path.join(src, f"size_{ww}x{hh}.png")
    cv2.imwrite(p, photo_like(hh, ww, hh * ww))
    size_files[(hh, ww)] = p
ours = run_dump(list(size_files.values()), "--max-size", str(N))
worst = 0
for (hh, ww), p in size_files.items():
    bgr = cv2.imread(p)
    th, tw = limited(hh, ww)
    want = bgr if (th, tw) == (hh, ww) else np.asarray(Image.fromarray(bgr).resize((tw, th), Image.BILINEAR))
    d = ours[p]
    diff = int(np.abs(d.astype(int) - want.astype(int)).max()) if d.shape == want.shape else -1
    worst = max(worst, diff)
    check(f"max-size {N}: {ww}x{hh} -> {tw}x{th} == PIL BILINEAR", d.shape == want.shape and diff == 0, f"(dolg {d.shape[1]}x{d.shape[0]}, max |diff| {diff})")
print(f"max-size vs PIL: max abs difference {worst} over {len(size_files)} images")

print(f"cv2 {cv2.__version__}, Pillow {Image.__version__}, numpy {np.__version__}")
if failures:
    print(f"{len(failures)} FAILED")
    sys.exit(1)
print("all checks passed")
