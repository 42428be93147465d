//! Decoding the hostile and awkward files of `../shared/data/bad-inputs` (see its README), and the
//! BGR channel order against an independent PNG reader and the fixture's network input.
//!
//! The reference PNG reader below (zlib inflate via flate2 + the five PNG row filters) is written
//! from the PNG specification and shares no code with the `image` crate that `dolg` uses.
//!
//! The formats added after the bad-inputs set (TIFF, BMP, GIF, PNM, and WebP) are tested with
//! files written here: valid ones cut at every length, headers followed by garbage, headers that
//! declare bomb sizes, 16-bit and grey/alpha conversions as `cv2.imread` does them, and HEIC/AVIF.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use dolg::decode::{decode_bytes, decode_file, BgrImage, DecodeError, DecodeLimits, IMAGE_EXTENSIONS};
use dolg::inputs::expand_inputs;
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
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
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
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
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
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
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
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
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

/// A valid small file of every format the decoder reads, written by `image`'s encoders (PBM by
/// hand: `image` writes it as ASCII only).
fn sample_files() -> Vec<(&'static str, Vec<u8>)> {
    use image::codecs::{bmp::BmpEncoder, gif::GifEncoder, jpeg::JpegEncoder, png::PngEncoder, pnm, tiff::TiffEncoder, webp::WebPEncoder};
    use image::{ExtendedColorType as C, ImageEncoder};
    let (w, h) = (23u32, 17u32);
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
    let rgba: Vec<u8> = (0..w * h * 4).map(|i| (i * 5 % 253) as u8).collect();
    let grey: Vec<u8> = (0..w * h).map(|i| (i * 3 % 256) as u8).collect();
    let enc = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = Vec::new();
        f(&mut v);
        v
    };
    let mut tiff = std::io::Cursor::new(Vec::new());
    TiffEncoder::new(&mut tiff).write_image(&rgb, w, h, C::Rgb8).unwrap();
    let mut pbm = format!("P4\n{w} {h}\n").into_bytes();
    pbm.extend((0..h * w.div_ceil(8)).map(|i| (i * 37) as u8));
    vec![
        ("sample.png", enc(&|v| PngEncoder::new(v).write_image(&rgb, w, h, C::Rgb8).unwrap())),
        ("sample.jpg", enc(&|v| JpegEncoder::new_with_quality(v, 90).write_image(&rgb, w, h, C::Rgb8).unwrap())),
        ("sample.webp", enc(&|v| WebPEncoder::new_lossless(v).write_image(&rgba, w, h, C::Rgba8).unwrap())),
        ("sample.tif", tiff.into_inner()),
        ("sample.bmp", enc(&|v| BmpEncoder::new(v).write_image(&rgb, w, h, C::Rgb8).unwrap())),
        ("sample.gif", enc(&|v| GifEncoder::new(v).write_image(&rgba, w, h, C::Rgba8).unwrap())),
        (
            "sample.pgm",
            enc(&|v| pnm::PnmEncoder::new(v).with_subtype(pnm::PnmSubtype::Graymap(pnm::SampleEncoding::Binary)).write_image(&grey, w, h, C::L8).unwrap()),
        ),
        (
            "sample.ppm",
            enc(&|v| pnm::PnmEncoder::new(v).with_subtype(pnm::PnmSubtype::Pixmap(pnm::SampleEncoding::Binary)).write_image(&rgb, w, h, C::Rgb8).unwrap()),
        ),
        ("sample.pbm", pbm),
    ]
}

/// Decode without panicking; an error must name the file and be about the content (not I/O).
fn decode_named(bytes: &[u8], name: &str) -> Result<BgrImage, DecodeError> {
    let path = Path::new(name);
    let r = std::panic::catch_unwind(|| decode_bytes(bytes, path, &DecodeLimits::default()))
        .unwrap_or_else(|_| panic!("{name}: decoding {} bytes panicked", bytes.len()));
    if let Err(e) = &r {
        assert!(e.to_string().contains(name), "{name}: error does not name the file: {e}");
        assert!(
            matches!(
                e,
                DecodeError::Empty { .. }
                    | DecodeError::UnknownFormat { .. }
                    | DecodeError::Corrupt { .. }
                    | DecodeError::Degenerate { .. }
                    // A damaged header may declare a size over the limits.
                    | DecodeError::TooLarge { .. }
            ),
            "{name}: unexpected error kind: {e:?}"
        );
    }
    r
}

#[test]
fn every_format_decodes_and_its_truncations_never_panic() {
    for (name, bytes) in sample_files() {
        let full = decode_named(&bytes, name).unwrap_or_else(|e| panic!("{name}: the valid file fails: {e}"));
        assert_eq!((full.width, full.height), (23, 17), "{name}");
        let mut cuts: Vec<usize> = (0..bytes.len().min(200)).collect();
        cuts.extend((200..bytes.len()).step_by(37));
        cuts.push(bytes.len() - 1);
        let (mut errors, mut decoded) = (0, 0);
        for n in cuts {
            match decode_named(&bytes[..n], name) {
                // Some decoders fill what is missing at the end; the image is then whole-sized.
                Ok(img) => {
                    assert_eq!((img.width, img.height), (23, 17), "{name} cut at {n}");
                    decoded += 1;
                }
                Err(_) => errors += 1,
            }
        }
        eprintln!("{name}: {} bytes; prefixes: {errors} errors, {decoded} decoded", bytes.len());
        assert!(errors > 0, "{name}: no prefix was refused");
    }
}

#[test]
fn garbage_after_each_format_header_is_a_named_error_or_an_image_never_a_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for (name, bytes) in sample_files() {
        for keep in [2usize, 4, 8, 16, 30, 60] {
            for len in [keep, keep + 1, keep + 64, keep + 3000] {
                let mut v = bytes[..keep.min(bytes.len())].to_vec();
                v.extend((v.len()..len).map(|_| rng.random::<u8>()));
                let _ = decode_named(&v, name);
            }
        }
        // Single flipped bytes all over a valid file.
        for _ in 0..200 {
            let mut v = bytes.clone();
            let i = rng.random_range(0..v.len());
            v[i] ^= 1 << rng.random_range(0..8);
            if let Ok(img) = decode_named(&v, name) {
                assert!(img.width > 0 && img.height > 0 && img.data.len() == img.width * img.height * 3, "{name}");
            }
        }
    }
}

/// Headers that declare a decompression bomb are refused from the header, for every format.
#[test]
fn bomb_headers_of_every_format_are_refused_before_decoding() {
    let side = 60_000u32;
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&(54u32 + 64).to_le_bytes()); // file size (a lie, as bombs do)
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes()); // pixel data offset
    bmp.extend_from_slice(&40u32.to_le_bytes()); // BITMAPINFOHEADER
    bmp.extend_from_slice(&(side as i32).to_le_bytes());
    bmp.extend_from_slice(&(side as i32).to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes()); // planes
    bmp.extend_from_slice(&24u16.to_le_bytes()); // bits per pixel
    bmp.extend_from_slice(&[0; 24]); // no compression, sizes and palette counts 0
    bmp.extend_from_slice(&[0x55; 64]);
    let mut ppm = format!("P6\n{side} {side}\n255\n").into_bytes();
    ppm.extend_from_slice(&[0x55; 64]);
    let mut pgm16 = format!("P5\n{side} {side}\n65535\n").into_bytes();
    pgm16.extend_from_slice(&[0x55; 64]);
    // GIF: logical screen and first frame both 65535 x 65535.
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x80, 0, 0]); // screen, global table of 2
    gif.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    gif.extend_from_slice(&[0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]); // image descriptor
    gif.extend_from_slice(&[2, 2, 0x4C, 0x01, 0, 0x3B]);
    // TIFF: one strip of a 60000 x 60000 RGB image, 64 bytes of it present.
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    let entries: [(u16, u16, u32); 8] =
        [(256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8 + 2 + 8 * 12 + 4), (278, 4, side), (279, 4, 64)];
    tiff.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, ty, value) in entries {
        tiff.extend_from_slice(&tag.to_le_bytes());
        tiff.extend_from_slice(&ty.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        if ty == 3 {
            tiff.extend_from_slice(&(value as u16).to_le_bytes());
            tiff.extend_from_slice(&[0, 0]);
        } else {
            tiff.extend_from_slice(&value.to_le_bytes());
        }
    }
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(&[0x55; 64]);
    for (name, bytes, want) in
        [("bomb.bmp", bmp, side), ("bomb.ppm", ppm, side), ("bomb16.pgm", pgm16, side), ("bomb.gif", gif, 65535), ("bomb.tif", tiff, side)]
    {
        let t = Instant::now();
        let r = std::panic::catch_unwind(|| decode_bytes(&bytes, Path::new(name), &DecodeLimits::default())).unwrap_or_else(|_| panic!("{name} panicked"));
        match r {
            Err(DecodeError::TooLarge { width, height, .. }) => assert_eq!((width, height), (want, want), "{name}"),
            other => panic!("{name}: expected TooLarge, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{name}: took {:?}", t.elapsed());
    }
}

/// `cv2.imread`'s default conversions (checked against OpenCV 5.0 by scripts/check_decode_cv2.py):
/// 16-bit samples by `v >> 8` (PNG, PNM, grey TIFF) but rounded `/ 257` in RGB(A) TIFF, grey
/// replicated, alpha dropped.
#[test]
fn sixteen_bit_grey_and_alpha_convert_like_cv2_imread() {
    use image::codecs::{png::PngEncoder, tiff::TiffEncoder};
    use image::{ExtendedColorType as C, ImageEncoder};
    let v16: [u16; 8] = [0, 255, 256, 383, 32895, 32896, 65280, 65535];
    let ne = |v: &[u16]| v.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>();
    let shift = |v: u16| (v >> 8) as u8;
    let round = |v: u16| ((u32::from(v) + 128) / 257) as u8;
    let png = |data: &[u8], c: C| {
        let mut out = Vec::new();
        PngEncoder::new(&mut out).write_image(data, 8, 1, c).unwrap();
        out
    };
    let tiff = |data: &[u8], c: C| {
        let mut out = std::io::Cursor::new(Vec::new());
        TiffEncoder::new(&mut out).write_image(data, 8, 1, c).unwrap();
        out.into_inner()
    };
    let grey_want = |f: &dyn Fn(u16) -> u8| v16.iter().flat_map(|&v| [f(v); 3]).collect::<Vec<u8>>();
    // RGB with R = v, G = 65535 - v, B = v / 2: BGR out.
    let rgb16: Vec<u16> = v16.iter().flat_map(|&v| [v, 65535 - v, v / 2]).collect();
    let rgba16: Vec<u16> = v16.iter().flat_map(|&v| [v, 65535 - v, v / 2, 65535 - v]).collect();
    let la16: Vec<u16> = v16.iter().flat_map(|&v| [v, 1234]).collect();
    let rgb_want = |f: &dyn Fn(u16) -> u8| v16.iter().flat_map(|&v| [f(v / 2), f(65535 - v), f(v)]).collect::<Vec<u8>>();
    let mut pgm = b"P5\n8 1\n65535\n".to_vec();
    pgm.extend(v16.iter().flat_map(|v| v.to_be_bytes()));
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("grey16.png", png(&ne(&v16), C::L16), grey_want(&shift)),
        ("greyalpha16.png", png(&ne(&la16), C::La16), grey_want(&shift)),
        ("rgb16.png", png(&ne(&rgb16), C::Rgb16), rgb_want(&shift)),
        ("rgba16.png", png(&ne(&rgba16), C::Rgba16), rgb_want(&shift)),
        ("grey16.pgm", pgm, grey_want(&shift)),
        ("grey16.tif", tiff(&ne(&v16), C::L16), grey_want(&shift)),
        ("rgb16.tif", tiff(&ne(&rgb16), C::Rgb16), rgb_want(&round)),
        ("rgba16.tif", tiff(&ne(&rgba16), C::Rgba16), rgb_want(&round)),
        (
            "greyalpha8.png",
            png(&[10, 0, 200, 255, 30, 128, 0, 1, 255, 9, 1, 2, 3, 4, 5, 6], C::La8),
            [10, 200, 30, 0, 255, 1, 3, 5].iter().flat_map(|&v| [v; 3]).collect(),
        ),
    ];
    for (name, bytes, want) in cases {
        let img = decode_named(&bytes, name).unwrap();
        assert_eq!((img.width, img.height), (8, 1), "{name}");
        assert_eq!(img.data, want, "{name}");
    }
}

#[test]
fn heic_and_avif_are_named_as_unsupported() {
    for (brand, kind) in [(&b"heic"[..], "HEIC/HEIF"), (b"mif1", "HEIC/HEIF"), (b"avif", "AVIF")] {
        let mut v = vec![0, 0, 0, 0x18];
        v.extend_from_slice(b"ftyp");
        v.extend_from_slice(brand);
        v.extend_from_slice(&[0; 12]);
        let name = format!("phone.{}", String::from_utf8_lossy(brand));
        match decode_bytes(&v, Path::new(&name), &DecodeLimits::default()) {
            Err(e @ DecodeError::UnsupportedFormat { format, .. }) => {
                assert_eq!(format, kind);
                let msg = e.to_string();
                assert!(msg.contains(&name) && msg.contains(kind) && msg.contains("convert"), "{msg}");
            }
            other => panic!("{name}: expected UnsupportedFormat, got {other:?}"),
        }
    }
    let msg = decode_bytes(b"plain text", Path::new("t.png"), &DecodeLimits::default()).unwrap_err().to_string();
    for f in ["JPEG", "PNG", "WebP", "TIFF", "BMP", "GIF", "PGM"] {
        assert!(msg.contains(f), "{msg}");
    }
}

#[test]
fn folders_are_walked_for_every_supported_extension_in_any_case() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = Vec::new();
    for ext in IMAGE_EXTENSIONS {
        for e in [ext.to_string(), ext.to_uppercase()] {
            let p = dir.path().join(format!("img_{e}.{e}"));
            std::fs::write(&p, b"x").unwrap();
            want.push(p);
        }
    }
    for other in ["notes.txt", "raw.cr2", "clip.mp4"] {
        std::fs::write(dir.path().join(other), b"x").unwrap();
    }
    want.sort();
    assert_eq!(expand_inputs(&[dir.path().to_owned()]).unwrap(), want);
    for ext in ["tif", "tiff", "bmp", "gif", "pgm", "ppm", "pbm", "pnm"] {
        assert!(IMAGE_EXTENSIONS.contains(&ext), "{ext}");
    }
}
