//! Decoding the hostile and awkward files of `../shared/data/bad-inputs` (see its README), and the
//! BGR channel order against an independent PNG reader and the fixture's network input.
//!
//! The reference PNG reader below (zlib inflate via flate2 + the five PNG row filters) is written
//! from the PNG specification and shares no code with the `image` crate that `dolg` uses.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use dolg::decode::{decode_bytes, decode_file, BgrImage, DecodeError, DecodeLimits};
use dolg::preprocess::{multiscale_inputs, FloatImage, Normalization, PreprocessError, DEFAULT_SCALES, DOLG_MEAN_BGR, DOLG_STD_BGR};

fn bad_inputs() -> PathBuf {
    shared_dir().join("data/bad-inputs")
}

/// A decoded PNG as stored: width, height, samples per pixel, and the unfiltered bytes.
struct RawPng {
    width: usize,
    height: usize,
    channels: usize,
    data: Vec<u8>,
}

/// Minimal 8-bit, non-interlaced PNG reader (colour types 0 grey, 2 RGB, 6 RGBA).
fn read_png_reference(path: &Path) -> RawPng {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}: PNG signature", path.display());
    let (mut pos, mut idat, mut ihdr) = (8, Vec::new(), None);
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let body = &bytes[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => ihdr = Some(body.to_vec()),
            b"IDAT" => idat.extend_from_slice(body),
            b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    let h = ihdr.expect("IHDR");
    let width = u32::from_be_bytes(h[0..4].try_into().unwrap()) as usize;
    let height = u32::from_be_bytes(h[4..8].try_into().unwrap()) as usize;
    assert_eq!(h[8], 8, "bit depth");
    assert_eq!(h[12], 0, "interlace");
    let channels = match h[9] {
        0 => 1,
        2 => 3,
        6 => 4,
        t => panic!("colour type {t} not handled by the reference reader"),
    };
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1));
    let mut data = vec![0u8; height * stride];
    for y in 0..height {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for i in 0..stride {
            let a = if i >= channels { i32::from(data[y * stride + i - channels]) } else { 0 };
            let b = if y > 0 { i32::from(data[(y - 1) * stride + i]) } else { 0 };
            let c = if y > 0 && i >= channels { i32::from(data[(y - 1) * stride + i - channels]) } else { 0 };
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("bad filter {f}"),
            };
            data[y * stride + i] = (i32::from(line[i]) + pred) as u8;
        }
    }
    RawPng { width, height, channels, data }
}

/// What `cv2.imread(path)` (IMREAD_COLOR) gives for a PNG: grey replicated, alpha dropped, BGR.
fn expected_bgr(png: &RawPng) -> Vec<u8> {
    png.data
        .chunks_exact(png.channels)
        .flat_map(|px| match png.channels {
            1 => [px[0], px[0], px[0]],
            _ => [px[2], px[1], px[0]],
        })
        .collect()
}

fn check_against_png(path: &Path, img: &BgrImage) {
    let png = read_png_reference(path);
    assert_eq!((img.width, img.height), (png.width, png.height), "{}", path.display());
    assert_eq!(img.data.len(), img.width * img.height * 3);
    let want = expected_bgr(&png);
    let diff = img.data.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(diff, 0, "{}: {diff} bytes differ from the reference PNG reader", path.display());
}

/// Decode and time one file.
fn timed(path: &Path) -> (Result<BgrImage, DecodeError>, Duration) {
    let t = Instant::now();
    let r = decode_file(path, &DecodeLimits::default());
    (r, t.elapsed())
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout")]
fn every_bad_input_gets_its_documented_outcome() {
    let dir = bad_inputs();
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n != "README.md").collect();
    names.sort();
    assert_eq!(names.len(), 9, "files in bad-inputs: {names:?}");
    let defaults = DecodeLimits::default();
    for name in &names {
        let path = dir.join(name);
        let (r, took) = timed(&path);
        eprintln!("{name}: {:?} in {took:.2?}", r.as_ref().map(|i| (i.width, i.height)));
        // Every error names its file.
        if let Err(e) = &r {
            assert!(e.to_string().contains(&path.display().to_string()), "{name}: {e}");
        }
        match name.as_str() {
            "bomb_60000x60000.png" | "huge_dims.jpg" => {
                let side = if name.starts_with("bomb") { 60000 } else { 65500 };
                match r {
                    Err(DecodeError::TooLarge { width, height, max_side, max_pixels, .. }) => {
                        assert_eq!((width, height), (side, side), "{name}");
                        assert_eq!((max_side, max_pixels), (defaults.max_side, defaults.max_pixels));
                    }
                    other => panic!("{name}: expected TooLarge, got {other:?}"),
                }
                // Rejected from the header: a sanity bound, not a benchmark.
                assert!(took < Duration::from_secs(5), "{name}: took {took:?}");
                let msg = decode_file(&path, &defaults).unwrap_err().to_string();
                assert!(msg.contains(&format!("{side}x{side}")) && msg.contains("20000"), "{msg}");
            }
            "empty.jpg" => assert!(matches!(r, Err(DecodeError::Empty { .. })), "{name}: {r:?}"),
            "not_an_image.png" => {
                assert!(matches!(r, Err(DecodeError::UnknownFormat { .. })), "{name}: {r:?}");
                assert!(r.unwrap_err().to_string().contains("not a recognised image"));
            }
            "corrupt_stream.png" => assert!(matches!(r, Err(DecodeError::Corrupt { .. })), "{name}: {r:?}"),
            "truncated.jpg" => match r {
                Ok(img) => assert!(img.width > 0 && img.height > 0 && img.data.len() == img.width * img.height * 3),
                Err(DecodeError::Corrupt { .. }) => {}
                Err(other) => panic!("{name}: expected Ok or Corrupt, got {other}"),
            },
            "grey.png" => {
                let img = r.unwrap();
                assert_eq!((img.width, img.height), (300, 200));
                // Grey becomes three equal channels; the reference reader gives the stored level.
                assert!(img.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
                check_against_png(&path, &img);
            }
            "rgba.png" => {
                let img = r.unwrap();
                assert_eq!((img.width, img.height), (200, 150));
                check_against_png(&path, &img);
                // The file is uniform RGBA (10, 200, 30, 128): alpha is dropped, not blended.
                assert_eq!(&img.data[..3], &[30, 200, 10]);
            }
            "tiny_1x1.png" => {
                let img = r.unwrap();
                assert_eq!((img.width, img.height), (1, 1));
                check_against_png(&path, &img);
                assert_eq!(img.data, vec![30, 20, 10], "stored RGB (10, 20, 30) as BGR");
                // Every default scale rounds 1 px to 0 or 1; the first one (0.3535) gives 0.
                let err = multiscale_inputs(&FloatImage::from(&img), &DEFAULT_SCALES, &Normalization::DOLG).unwrap_err();
                assert_eq!(err, PreprocessError::TooSmall { width: 1, height: 1, scale: 0.3535, out_w: 0, out_h: 0 });
                // Scale 1.0 alone is fine: one pixel, normalised with the BGR constants.
                let ok = multiscale_inputs(&FloatImage::from(&img), &[1.0], &Normalization::DOLG).unwrap();
                assert_eq!((ok[0].height, ok[0].width), (1, 1));
                let want_b = (30.0 / 255.0 - DOLG_MEAN_BGR[0]) / DOLG_STD_BGR[0];
                assert!((ok[0].chw[0] - want_b).abs() < 1e-6);
            }
            other => panic!("unclassified file in bad-inputs: {other} (add its expected outcome here)"),
        }
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout")]
fn limits_are_applied_per_side_and_per_pixel_count() {
    let dir = bad_inputs();
    // The bomb passes a generous side limit but not the pixel-count limit (3.6e9 > 1e8).
    let side_ok = DecodeLimits { max_side: 100_000, ..DecodeLimits::default() };
    let t = Instant::now();
    match decode_file(&dir.join("bomb_60000x60000.png"), &side_ok) {
        Err(DecodeError::TooLarge { width: 60000, height: 60000, max_side: 100_000, .. }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    // A normal image over a small limit is refused with its true size.
    let small = DecodeLimits { max_side: 250, ..DecodeLimits::default() };
    match decode_file(&dir.join("grey.png"), &small) {
        Err(DecodeError::TooLarge { width: 300, height: 200, max_side: 250, .. }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let few_pixels = DecodeLimits { max_pixels: 300 * 200 - 1, ..DecodeLimits::default() };
    assert!(matches!(decode_file(&dir.join("grey.png"), &few_pixels), Err(DecodeError::TooLarge { .. })));
    let exact = DecodeLimits { max_side: 300, max_pixels: 300 * 200, ..DecodeLimits::default() };
    assert!(decode_file(&dir.join("grey.png"), &exact).is_ok());
    // A file that cannot be read at all is an I/O error naming it.
    let missing = dir.join("no-such-file.png");
    match decode_file(&missing, &DecodeLimits::default()) {
        Err(e @ DecodeError::Io { .. }) => assert!(e.to_string().contains("no-such-file.png")),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout")]
fn truncated_prefixes_of_a_good_png_never_panic() {
    let shared = shared_dir();
    let bytes = std::fs::read(shared.join("fixtures/dolg-r50-random/input_lab.png")).unwrap();
    let path = Path::new("lab-prefix.png");
    for n in [1, 7, 8, 16, 33, 100, 1000, bytes.len() / 2, bytes.len() - 13, bytes.len() - 1] {
        let r = std::panic::catch_unwind(|| decode_bytes(&bytes[..n], path, &DecodeLimits::default()));
        let r = r.unwrap_or_else(|_| panic!("decoding the first {n} bytes panicked"));
        match r {
            Err(DecodeError::Corrupt { .. } | DecodeError::UnknownFormat { .. }) => {}
            // Only the IEND chunk (12 bytes) may be cut without losing pixels.
            Ok(img) if n >= bytes.len() - 12 => assert_eq!((img.width, img.height), (243, 253)),
            other => panic!("first {n} bytes: {other:?}"),
        }
    }
}

#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout")]
fn decoded_pixels_are_bgr_like_the_reference_network_input() {
    let shared = shared_dir();
    let fx = shared.join("fixtures/dolg-r50-random");
    let path = fx.join("input_kremlin.png");
    let img = decode_file(&path, &DecodeLimits::default()).unwrap();
    assert_eq!((img.width, img.height), (640, 433));
    // 1. Against the file itself: stored RGB, decoded BGR.
    check_against_png(&path, &img);
    let png = read_png_reference(&path);

    // 2. Against the authors' preprocessed input at scale 1.0 ([1, 3, 433, 640], BGR, normalised):
    //    un-normalise v*std+mean, *255, which must give back the 8-bit pixel of the same channel.
    let (shape, input) = read_npy_f32(&fx.join("noaspp/kremlin_s1.0_input.npy"));
    assert_eq!(shape, vec![1, 3, 433, 640]);
    let plane = 433 * 640;
    let unnorm = |c: usize, i: usize| (input[c * plane + i] * DOLG_STD_BGR[c] + DOLG_MEAN_BGR[c]) * 255.0;

    // One pixel by hand, with a visibly non-grey colour so that B and R can be told apart.
    let i = (0..plane).find(|&i| png.data[i * 3].abs_diff(png.data[i * 3 + 2]) > 40).expect("a coloured pixel");
    let (r, g, b) = (png.data[i * 3], png.data[i * 3 + 1], png.data[i * 3 + 2]);
    eprintln!(
        "pixel {i} (x {}, y {}): PNG RGB = ({r}, {g}, {b}); fixture channels = ({:.3}, {:.3}, {:.3})",
        i % 640,
        i / 640,
        unnorm(0, i),
        unnorm(1, i),
        unnorm(2, i)
    );
    assert!((unnorm(0, i) - f32::from(b)).abs() < 0.01, "fixture channel 0 is blue");
    assert!((unnorm(1, i) - f32::from(g)).abs() < 0.01, "fixture channel 1 is green");
    assert!((unnorm(2, i) - f32::from(r)).abs() < 0.01, "fixture channel 2 is red");
    assert_eq!(&img.data[i * 3..i * 3 + 3], &[b, g, r], "decoded pixel is BGR");

    // Every pixel and channel: decoded BGR byte == un-normalised fixture value.
    let mut worst = 0f32;
    for i in 0..plane {
        for c in 0..3 {
            worst = worst.max((unnorm(c, i) - f32::from(img.data[i * 3 + c])).abs());
        }
    }
    assert!(worst < 0.01, "max |unnormalised fixture − decoded| = {worst}");
    // And the same comparison in RGB order would fail: the image is not grey.
    let swapped = (0..plane).filter(|&i| (unnorm(0, i) - f32::from(img.data[i * 3 + 2])).abs() > 0.5).count();
    assert!(swapped > plane / 10, "only {swapped} pixels tell BGR from RGB");

    // 3. The library's own normalisation reproduces the fixture input (≤ 1e-5, fixture tolerance).
    let ours = multiscale_inputs(&FloatImage::from(&img), &[1.0], &Normalization::DOLG).unwrap();
    assert!(max_abs_diff(&ours[0].chw, &input) <= 1e-5);
}
