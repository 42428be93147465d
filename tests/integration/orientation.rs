//! EXIF orientation (tags 1–8) in JPEG, PNG, WebP and TIFF, and the image size policy, end to end
//! through `Extractor::prepare`.
//!
//! Every file is written here: the EXIF block and the JPEG APP1 segment and the TIFF file by hand
//! (small, documented helpers, so the decoder under test does not read what its own encoder
//! wrote); PNG and WebP through `image`'s lossless encoders with that EXIF block. The expected
//! upright pixels come from index arithmetic written from the EXIF specification (2.3, §4.6.4 A,
//! tag 0x0112), and from decoding the same pixels physically turned and stored without a tag.
//! `scripts/check_decode_cv2.py` compares the same cases with `cv2.imread`.

use std::path::{Path, PathBuf};

use dolg::decode::{decode_bytes, decode_bytes_oriented, BgrImage, DecodeLimits, Orientation};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder};

use crate::common::jpeg_with_exif;

/// The stored image as seen upright under orientation `o`: output pixel (x, y) is stored pixel
/// `src(x, y)`. Tags 5–8 swap width and height.
fn upright(img: &BgrImage, o: u16) -> BgrImage {
    let (w, h) = (img.width, img.height);
    let (ow, oh) = if o >= 5 { (h, w) } else { (w, h) };
    let src = |x: usize, y: usize| -> (usize, usize) {
        match o {
            1 => (x, y),
            2 => (w - 1 - x, y),         // mirrored left-right
            3 => (w - 1 - x, h - 1 - y), // turned 180°
            4 => (x, h - 1 - y),         // mirrored top-bottom
            5 => (y, x),                 // transposed
            6 => (y, h - 1 - x),         // stored turned 90° anticlockwise: turn it clockwise
            7 => (w - 1 - y, h - 1 - x), // transverse
            8 => (w - 1 - y, x),         // stored turned 90° clockwise: turn it anticlockwise
            _ => unreachable!(),
        }
    };
    let mut data = Vec::with_capacity(ow * oh * 3);
    for y in 0..oh {
        for x in 0..ow {
            let (sx, sy) = src(x, y);
            data.extend_from_slice(&img.data[(sy * w + sx) * 3..(sy * w + sx) * 3 + 3]);
        }
    }
    BgrImage { width: ow, height: oh, data }
}

/// An asymmetric 7x4 pattern with every pixel distinct (no turn or mirror maps it onto itself).
fn pattern() -> BgrImage {
    let (w, h) = (7, 4);
    let data = (0..h).flat_map(|y| (0..w).flat_map(move |x| [(x * 30 + 10) as u8, (y * 50 + 20) as u8, ((x + y * 7) * 3) as u8])).collect();
    BgrImage { width: w, height: h, data }
}

fn rgb_of(img: &BgrImage) -> Vec<u8> {
    img.data.chunks(3).flat_map(|p| [p[2], p[1], p[0]]).collect()
}

/// An EXIF block (TIFF structure) holding only IFD0 with the Orientation tag: byte-order mark
/// ("II" little / "MM" big endian), 42, IFD0 offset 8; one entry (tag 0x0112, type 3 SHORT,
/// count 1, value padded to 4 bytes); next-IFD offset 0.
fn exif_block(o: u16, big_endian: bool) -> Vec<u8> {
    let s = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let l = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut b = Vec::new();
    b.extend_from_slice(if big_endian { b"MM" } else { b"II" });
    b.extend_from_slice(&s(42));
    b.extend_from_slice(&l(8));
    b.extend_from_slice(&s(1));
    b.extend_from_slice(&s(0x0112));
    b.extend_from_slice(&s(3));
    b.extend_from_slice(&l(1));
    b.extend_from_slice(&s(o));
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&l(0));
    b
}

fn png(img: &BgrImage, exif: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = PngEncoder::new(&mut out);
    if let Some(e) = exif {
        enc.set_exif_metadata(e).unwrap();
    }
    enc.write_image(&rgb_of(img), img.width as u32, img.height as u32, ExtendedColorType::Rgb8).unwrap();
    out
}

fn webp(img: &BgrImage, exif: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = WebPEncoder::new_lossless(&mut out);
    enc.set_exif_metadata(exif).unwrap();
    enc.write_image(&rgb_of(img), img.width as u32, img.height as u32, ExtendedColorType::Rgb8).unwrap();
    out
}

/// A baseline TIFF by hand: little endian, 8-bit RGB, uncompressed, one strip, with the
/// Orientation tag (274) in its only IFD. Layout: header (8) | IFD of 11 entries at 8 (2 + 132 + 4
/// bytes) | BitsPerSample values at 146 | pixels at 152.
fn tiff(img: &BgrImage, o: u16) -> Vec<u8> {
    let (w, h) = (img.width as u32, img.height as u32);
    let mut b = b"II".to_vec();
    b.extend_from_slice(&42u16.to_le_bytes());
    b.extend_from_slice(&8u32.to_le_bytes());
    // (tag, type: 3 SHORT / 4 LONG, count, value or offset)
    let entries: [(u16, u16, u32, u32); 11] = [
        (256, 4, 1, w),         // ImageWidth
        (257, 4, 1, h),         // ImageLength
        (258, 3, 3, 146),       // BitsPerSample 8,8,8 (at 146)
        (259, 3, 1, 1),         // Compression: none
        (262, 3, 1, 2),         // PhotometricInterpretation: RGB
        (273, 4, 1, 152),       // StripOffsets
        (274, 3, 1, o.into()),  // Orientation
        (277, 3, 1, 3),         // SamplesPerPixel
        (278, 4, 1, h),         // RowsPerStrip
        (279, 4, 1, w * h * 3), // StripByteCounts
        (284, 3, 1, 1),         // PlanarConfiguration: chunky
    ];
    b.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, ty, count, value) in entries {
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        if ty == 3 && count == 1 {
            b.extend_from_slice(&(value as u16).to_le_bytes());
            b.extend_from_slice(&[0, 0]);
        } else {
            b.extend_from_slice(&value.to_le_bytes());
        }
    }
    b.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(b.len(), 146);
    for _ in 0..3 {
        b.extend_from_slice(&8u16.to_le_bytes());
    }
    b.extend_from_slice(&rgb_of(img));
    b
}

fn decode(bytes: &[u8], name: &str, o: Orientation) -> BgrImage {
    decode_bytes_oriented(bytes, Path::new(name), &DecodeLimits::default(), o).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn all_eight_orientations_in_lossless_png_webp_and_tiff() {
    let stored = pattern();
    for o in 1..=8u16 {
        let want = upright(&stored, o);
        // The same pixels turned physically and stored without a tag decode to the same image.
        let physical = decode(&png(&want, None), "physical.png", Orientation::Apply);
        assert_eq!(physical, want, "orientation {o}: physically turned PNG");
        let files = [
            (format!("o{o}-le.png"), png(&stored, Some(exif_block(o, false)))),
            (format!("o{o}-be.png"), png(&stored, Some(exif_block(o, true)))),
            (format!("o{o}.webp"), webp(&stored, exif_block(o, false))),
            (format!("o{o}.tif"), tiff(&stored, o)),
        ];
        for (name, bytes) in &files {
            assert_eq!(decode(bytes, name, Orientation::Apply), want, "{name}: upright");
            assert_eq!(decode(bytes, name, Orientation::Ignore), stored, "{name}: as stored");
        }
        // The existing entry point applies it.
        assert_eq!(decode_bytes(&files[0].1, Path::new("x.png"), &DecodeLimits::default()).unwrap(), want);
    }
}

/// A JPEG that decodes exactly: grey, quality 100 (all quantisers 1), and made of flat 8x8 blocks,
/// whose DCT has only a DC term that survives quantisation and comes back exactly. So the oriented
/// decode can be compared byte for byte with the lossless, physically turned expectation.
#[test]
fn all_eight_orientations_in_jpeg_both_byte_orders() {
    let levels = [16u8, 48, 80, 112, 144, 176, 208, 240, 96, 200, 30, 60];
    let (bw, bh) = (4, 3); // blocks
    let (w, h) = (bw * 8, bh * 8);
    let grey: Vec<u8> = (0..h).flat_map(|y| (0..w).map(move |x| levels[(y / 8) * bw + x / 8])).collect();
    let stored = BgrImage { width: w, height: h, data: grey.iter().flat_map(|&v| [v, v, v]).collect() };
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 100).write_image(&grey, w as u32, h as u32, ExtendedColorType::L8).unwrap();
    assert_eq!(decode(&jpeg, "plain.jpg", Orientation::Apply), stored, "the block pattern survives JPEG exactly");
    for o in 1..=8u16 {
        let want = upright(&stored, o);
        let physical = decode(&png(&want, None), "physical.png", Orientation::Apply);
        for big_endian in [false, true] {
            let name = format!("o{o}-{}.jpg", if big_endian { "be" } else { "le" });
            let bytes = jpeg_with_exif(&jpeg, &exif_block(o, big_endian));
            let got = decode(&bytes, &name, Orientation::Apply);
            assert_eq!((got.width, got.height), (want.width, want.height), "{name}");
            assert_eq!(got, want, "{name}: upright");
            assert_eq!(got, physical, "{name}: same as the physically turned lossless file");
            assert_eq!(decode(&bytes, &name, Orientation::Ignore), stored, "{name}: as stored");
        }
    }
}

#[test]
fn invalid_or_broken_orientation_means_as_stored() {
    let stored = pattern();
    for o in [0u16, 9, 255, 0xFFFF] {
        assert_eq!(decode(&png(&stored, Some(exif_block(o, false))), "bad-tag.png", Orientation::Apply), stored, "tag value {o}");
    }
    // An EXIF block cut short, or not EXIF at all: the pixels are still good.
    let mut cut = exif_block(6, false);
    cut.truncate(12);
    assert_eq!(decode(&png(&stored, Some(cut)), "cut.png", Orientation::Apply), stored);
    assert_eq!(decode(&png(&stored, Some(b"garbage".to_vec())), "junk.png", Orientation::Apply), stored);
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 90).write_image(&rgb_of(&stored), 7, 4, ExtendedColorType::Rgb8).unwrap();
    let plain = decode(&jpeg, "plain.jpg", Orientation::Apply);
    let junk = jpeg_with_exif(&jpeg, b"MM\0*\xFF\xFF\xFF\xFF");
    assert_eq!(decode(&junk, "junk.jpg", Orientation::Apply), plain);
}

fn extractor() -> dolg::descriptors::Extractor {
    let fx = crate::common::shared_dir().join("fixtures/dolg-r50-random");
    let device = burn::tensor::Device::flex();
    let ck = dolg::checkpoint::Checkpoint::open(&fx.join("dolg_r50_random_noaspp.pyth.gz")).unwrap();
    let model = dolg::model::RetrievalModel::dolg(&ck, None, dolg::model::Fusion::Orthogonal, &device).unwrap();
    dolg::descriptors::Extractor::new(model, device, vec![1.0, 0.5])
}

/// `prepare`: decode, orient, crop (box in the upright image's pixels), bring within `max_size`
/// with Pillow's BILINEAR, then the pyramid — and the two options switch their steps off.
#[test]
#[cfg_attr(not(dolg_shared), ignore = "needs ../shared beside the checkout when built (touch build.rs once it is there)")]
fn prepare_orients_then_crops_then_limits_the_size() {
    use dolg::preprocess::{crop, multiscale_inputs, resize_pil_bilinear, CropBox, FloatImage, DEFAULT_MAX_SIZE};
    let mut ex = extractor();
    assert_eq!((ex.orientation, ex.max_size), (Orientation::Apply, Some(DEFAULT_MAX_SIZE)));
    // A 1500x900 photo stored sideways (tag 6): upright it is 900x1500.
    let (w, h) = (1500usize, 900usize);
    let data = (0..h).flat_map(|y| (0..w).flat_map(move |x| [(x % 251) as u8, (y % 241) as u8, ((x * y) % 256) as u8])).collect();
    let stored = BgrImage { width: w, height: h, data };
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("sideways.png");
    std::fs::write(&path, png(&stored, Some(exif_block(6, false)))).unwrap();
    let up = upright(&stored, 6);
    assert_eq!((up.width, up.height), (900, 1500));
    let scales = [1.0, 0.5];
    let inputs = |img: &BgrImage| multiscale_inputs(&FloatImage::from(img), &scales, &ex.norm).unwrap();

    // Whole image: upright 900x1500 → longest side 1024: 614x1024 (900·1024/1500 = 614.4).
    let got = ex.prepare(&path, None).unwrap().inputs;
    let want = inputs(&resize_pil_bilinear(&up, 1024, 614));
    assert_eq!((got[0].width, got[0].height), (614, 1024));
    assert_eq!((got[1].width, got[1].height), (307, 512));
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.chw, w.chw);
    }
    // A crop box in upright pixel coordinates, taken before the size limit: 800x1100 → 745x1024.
    let bx = CropBox([50.0, 300.0, 850.0, 1400.0]);
    let cropped = crop(&up, bx).unwrap();
    let got = ex.prepare(&path, Some(bx)).unwrap().inputs;
    assert_eq!((got[0].width, got[0].height), (745, 1024));
    assert_eq!(got[0].chw, inputs(&resize_pil_bilinear(&cropped, 1024, 745))[0].chw);
    // A crop within the limit is untouched by it.
    let small = CropBox([0.0, 0.0, 500.0, 400.0]);
    assert_eq!(ex.prepare(&path, Some(small)).unwrap().inputs[0].chw, inputs(&crop(&up, small).unwrap())[0].chw);
    // No limit: the full upright image.
    ex.max_size = None;
    let got = ex.prepare(&path, None).unwrap().inputs;
    assert_eq!((got[0].width, got[0].height), (900, 1500));
    assert_eq!(got[0].chw, inputs(&up)[0].chw);
    ex.max_size = Some(0);
    assert_eq!(ex.prepare(&path, None).unwrap().inputs[0].chw, inputs(&up)[0].chw);
    // Orientation ignored: the stored 1500x900, limited to 1024x614.
    ex.orientation = Orientation::Ignore;
    ex.max_size = Some(DEFAULT_MAX_SIZE);
    let got = ex.prepare(&path, None).unwrap().inputs;
    assert_eq!((got[0].width, got[0].height), (1024, 614));
    assert_eq!(got[0].chw, inputs(&resize_pil_bilinear(&stored, 614, 1024))[0].chw);
}
