//! Image decoding: a JPEG, PNG, WebP, TIFF, BMP, GIF or PNM (PBM/PGM/PPM/PAM) file to an 8-bit
//! **BGR** raster, upright, as `cv2.imread(path)` (its default flag, `IMREAD_COLOR`) returns it.
//!
//! The authors' pipeline reads images with `cv2.imread`, which yields BGR; the released weights were
//! trained on that order, so we keep it and never swap to RGB here.
//!
//! # What `cv2.imread` does, and what we do
//!
//! Checked against OpenCV 5.0 (opencv-python-headless) by `scripts/check_decode_cv2.py`:
//!
//! * **Orientation.** The EXIF Orientation tag (1–8) is applied, turning and mirroring the stored
//!   pixels upright, in JPEG (APP1 `Exif`), PNG (`eXIf` chunk), WebP (`EXIF` chunk) and TIFF (the
//!   Orientation tag of the image directory). [`Orientation::Ignore`] returns the pixels as stored
//!   (`IMREAD_IGNORE_ORIENTATION`). Two divergences, both in TIFF: OpenCV 5.0 applies tags 2–4 even
//!   with `IMREAD_IGNORE_ORIENTATION` and fails to read tags 5–8 at all ("Internal imread issue");
//!   we apply all eight, or none when asked to ignore them. A missing, invalid (0, 9+) or unreadable
//!   tag means "as stored".
//! * **Channels.** Grey is replicated to three channels; alpha is dropped, not blended (grey+alpha,
//!   RGBA, palette PNGs with transparency, 32-bit BMP). One divergence: for TIFF with unassociated
//!   alpha, libtiff's RGBA reader premultiplies the colour by alpha; we drop the alpha as for every
//!   other format.
//! * **16-bit samples** (PNG, TIFF, PGM/PPM) become 8-bit by `v >> 8`, as OpenCV does, except in
//!   RGB/RGBA TIFF, where OpenCV goes through libtiff's RGBA reader, which rounds (`(v + 128) / 257`);
//!   we do the same per format.
//! * **GIF**: the first frame. **PNM** with a maximum value other than 255/65535 is scaled to the
//!   full range as the format defines (OpenCV reads the raw numbers instead).
//! * **HEIC/HEIF and AVIF** are refused with [`DecodeError::UnsupportedFormat`]: there is no
//!   well-kept pure-Rust decoder for them (see the note beside the `image` features in Cargo.toml).
//!
//! # Limits
//!
//! Three bounds keep a file from costing more than it should; the first two are [`DecodeLimits`],
//! checked from the header before any pixel buffer is allocated, so a file that *declares* absurd
//! dimensions (a decompression bomb) is rejected at once with [`DecodeError::TooLarge`]:
//!
//! 1. **Side**: each side at most [`DecodeLimits::max_side`] (default 20000 px).
//! 2. **Pixel count**: width × height at most [`DecodeLimits::max_pixels`] (default 100 Mpx). With
//!    these two, the decoder's own allocation cap ([`DecodeLimits::max_alloc_bytes`], 1 GiB) bounds
//!    what a hostile file can make us allocate.
//! 3. **Working size** (not a decode limit, the product's image size policy): after decoding,
//!    orienting and cropping, the `Extractor` scales an image whose longest side exceeds its
//!    `max_size` (default [`crate::preprocess::DEFAULT_MAX_SIZE`] = 1024) down to that side
//!    ([`crate::preprocess::limit_size`]), so a 24 Mpx phone photo costs what a 1024 px image does
//!    in the network.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// Errors of the decode layer. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file could not be read.
    #[error("{path}: cannot read file: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("{path}: empty file")]
    Empty {
        /// The image file.
        path: PathBuf,
    },
    /// The file is not in any image format this decoder knows.
    #[error("{path}: not a recognised image (supported: {SUPPORTED_FORMATS})")]
    UnknownFormat {
        /// The image file.
        path: PathBuf,
    },
    /// A recognised image format that is deliberately not decoded (HEIC/HEIF, AVIF).
    #[error("{path}: {format} images are not supported (no dependable pure-Rust decoder); convert it to JPEG or PNG first (supported: {SUPPORTED_FORMATS})")]
    UnsupportedFormat {
        /// The image file.
        path: PathBuf,
        /// The format's name, e.g. `AVIF`.
        format: &'static str,
    },
    /// The header declares dimensions over the [`DecodeLimits`].
    #[error("{path}: declared size {width}x{height} exceeds the limit of {max_side} pixels per side / {max_pixels} pixels in all")]
    TooLarge {
        /// The image file.
        path: PathBuf,
        /// Declared width, in pixels.
        width: u32,
        /// Declared height, in pixels.
        height: u32,
        /// The limit on each side, in pixels.
        max_side: u32,
        /// The limit on width × height, in pixels.
        max_pixels: u64,
    },
    /// The header declares a zero width or height.
    #[error("{path}: image is {width}x{height}; both sides must be at least 1 pixel")]
    Degenerate {
        /// The image file.
        path: PathBuf,
        /// Declared width, in pixels.
        width: u32,
        /// Declared height, in pixels.
        height: u32,
    },
    /// The image data is damaged or truncated.
    #[error("{path}: corrupt or truncated image data: {reason}")]
    Corrupt {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
}

/// The formats [`decode_file`] reads, as named in error messages.
pub(crate) const SUPPORTED_FORMATS: &str = "JPEG, PNG, WebP, TIFF, BMP, GIF, PBM/PGM/PPM/PAM";

/// Bounds applied before decoding. The defaults admit any real photograph (up to 20000 px a side,
/// 100 Mpx) while keeping a hostile file's allocation under ~1 GiB.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest accepted width or height, in pixels (default 20000).
    pub max_side: u32,
    /// Largest accepted width × height, in pixels (default 100 000 000).
    pub max_pixels: u64,
    /// The decoder's allocation cap, in bytes (default 1 GiB).
    pub max_alloc_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_side: 20_000, max_pixels: 100_000_000, max_alloc_bytes: 1 << 30 }
    }
}

/// What to do with the orientation an image's metadata records (the EXIF Orientation tag, 1–8:
/// "the stored pixels must be turned and/or mirrored this way to be seen upright").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Orientation {
    /// Turn the pixels upright as the tag says, as `cv2.imread` does by default (and as a phone
    /// photo, stored sideways with a tag, is meant to be seen).
    #[default]
    Apply,
    /// The pixels as stored, tag ignored (`cv2.IMREAD_IGNORE_ORIENTATION`).
    Ignore,
}

/// An 8-bit image in interleaved BGR order, row-major `[height][width][3]`, as `cv2.imread` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct BgrImage {
    /// Width, in pixels.
    pub width: usize,
    /// Height, in pixels.
    pub height: usize,
    /// `height * width * 3` bytes, row-major, BGR interleaved.
    pub data: Vec<u8>,
}

impl BgrImage {
    /// Build from interleaved RGB bytes (the order most decoders and PNG files use).
    pub fn from_rgb(width: usize, height: usize, rgb: &[u8]) -> Self {
        assert_eq!(rgb.len(), width * height * 3, "RGB buffer does not match {width}x{height}");
        Self::from_rgb_vec(width, height, rgb.to_vec())
    }

    /// [`BgrImage::from_rgb`] taking the buffer, swapped in place (no copy of a large photo).
    pub(crate) fn from_rgb_vec(width: usize, height: usize, mut data: Vec<u8>) -> Self {
        assert_eq!(data.len(), width * height * 3, "RGB buffer does not match {width}x{height}");
        for px in data.chunks_exact_mut(3) {
            px.swap(0, 2);
        }
        Self { width, height, data }
    }
}

/// Decode a file to upright BGR ([`Orientation::Apply`]), enforcing `limits`. Grey and RGBA
/// inputs are converted to 3 channels (alpha dropped, as `cv2.imread` with its default flag does).
pub fn decode_file(path: &Path, limits: &DecodeLimits) -> Result<BgrImage, DecodeError> {
    decode_file_oriented(path, limits, Orientation::Apply)
}

/// [`decode_file`] with the choice of applying or ignoring the recorded orientation.
pub fn decode_file_oriented(path: &Path, limits: &DecodeLimits, orientation: Orientation) -> Result<BgrImage, DecodeError> {
    let bytes = std::fs::read(path).map_err(|source| DecodeError::Io { path: path.to_owned(), source })?;
    decode_bytes_oriented(&bytes, path, limits, orientation)
}

/// Decode an in-memory file ([`Orientation::Apply`]); `path` is only used to name the source in
/// errors.
pub fn decode_bytes(bytes: &[u8], path: &Path, limits: &DecodeLimits) -> Result<BgrImage, DecodeError> {
    decode_bytes_oriented(bytes, path, limits, Orientation::Apply)
}

/// [`decode_bytes`] with the choice of applying or ignoring the recorded orientation.
pub fn decode_bytes_oriented(bytes: &[u8], path: &Path, limits: &DecodeLimits, orientation: Orientation) -> Result<BgrImage, DecodeError> {
    let p = || path.to_owned();
    if bytes.is_empty() {
        return Err(DecodeError::Empty { path: p() });
    }
    let reader = ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|source| DecodeError::Io { path: p(), source })?;
    let Some(format) = reader.format() else {
        return Err(match iso_bmff_image(bytes) {
            Some(format) => DecodeError::UnsupportedFormat { path: p(), format },
            None => DecodeError::UnknownFormat { path: p() },
        });
    };
    if !SUPPORTED.contains(&format) {
        return Err(match format {
            ImageFormat::Avif => DecodeError::UnsupportedFormat { path: p(), format: "AVIF" },
            _ => DecodeError::UnknownFormat { path: p() },
        });
    }
    // Probe the header with no size limits of the decoder's own (reading dimensions allocates
    // nothing), so the rejection below can name the declared size and our limit.
    let mut probe = reader;
    probe.limits(Limits::no_limits());
    let (width, height) = probe.into_dimensions().map_err(|e| classify(e, path))?;
    if width == 0 || height == 0 {
        return Err(DecodeError::Degenerate { path: p(), width, height });
    }
    if width > limits.max_side || height > limits.max_side || u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(DecodeError::TooLarge { path: p(), width, height, max_side: limits.max_side, max_pixels: limits.max_pixels });
    }
    let mut lim = Limits::default();
    lim.max_image_width = Some(limits.max_side);
    lim.max_image_height = Some(limits.max_side);
    lim.max_alloc = Some(limits.max_alloc_bytes);
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|source| DecodeError::Io { path: p(), source })?;
    reader.limits(lim);
    let mut decoder = reader.into_decoder().map_err(|e| classify(e, path))?;
    // The pixel buffer must fit the allocation cap (`ImageReader::decode` checks the same).
    if decoder.total_bytes() > limits.max_alloc_bytes {
        return Err(DecodeError::TooLarge { path: p(), width, height, max_side: limits.max_side, max_pixels: limits.max_pixels });
    }
    // An unreadable or invalid tag means "as stored", as for OpenCV: the pixels are still good.
    let recorded = match orientation {
        Orientation::Apply => decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms),
        Orientation::Ignore => image::metadata::Orientation::NoTransforms,
    };
    let img = DynamicImage::from_decoder(decoder).map_err(|e| classify(e, path))?;
    let bgr = to_bgr(img, format);
    Ok(orient(bgr, recorded))
}

/// Formats whose `image` features are enabled (Cargo.toml).
const SUPPORTED: [ImageFormat; 7] =
    [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP, ImageFormat::Tiff, ImageFormat::Bmp, ImageFormat::Gif, ImageFormat::Pnm];

/// HEIC/HEIF/AVIF files are ISO-BMFF: a `ftyp` box first, whose major brand names the kind.
fn iso_bmff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 12 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    match &bytes[8..12] {
        b"avif" | b"avis" => Some("AVIF"),
        b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1" => Some("HEIC/HEIF"),
        _ => None,
    }
}

/// Any decoded image to 8-bit BGR with `cv2.imread`'s conversions (module doc): grey replicated,
/// alpha dropped, 16-bit by `>> 8` (rounded `/ 257` for RGB(A) TIFF, as libtiff's RGBA reader).
fn to_bgr(img: DynamicImage, format: ImageFormat) -> BgrImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = Vec::with_capacity(w * h * 3);
    let hi = |v: u16| (v >> 8) as u8;
    let round = |v: u16| ((u32::from(v) + 128) / 257) as u8;
    let tiff = format == ImageFormat::Tiff;
    match img {
        DynamicImage::ImageRgb8(b) => return BgrImage::from_rgb_vec(w, h, b.into_raw()),
        DynamicImage::ImageLuma8(b) => b.as_raw().iter().for_each(|&v| data.extend_from_slice(&[v, v, v])),
        DynamicImage::ImageLumaA8(b) => b.as_raw().chunks_exact(2).for_each(|p| data.extend_from_slice(&[p[0], p[0], p[0]])),
        DynamicImage::ImageRgba8(b) => b.as_raw().chunks_exact(4).for_each(|p| data.extend_from_slice(&[p[2], p[1], p[0]])),
        DynamicImage::ImageLuma16(b) => b.as_raw().iter().for_each(|&v| data.extend_from_slice(&[hi(v); 3])),
        DynamicImage::ImageLumaA16(b) => b.as_raw().chunks_exact(2).for_each(|p| data.extend_from_slice(&[hi(p[0]); 3])),
        DynamicImage::ImageRgb16(b) => {
            let f = if tiff { round } else { hi };
            b.as_raw().chunks_exact(3).for_each(|p| data.extend_from_slice(&[f(p[2]), f(p[1]), f(p[0])]))
        }
        DynamicImage::ImageRgba16(b) => {
            let f = if tiff { round } else { hi };
            b.as_raw().chunks_exact(4).for_each(|p| data.extend_from_slice(&[f(p[2]), f(p[1]), f(p[0])]))
        }
        // Floating-point TIFF and anything newer: the `image` crate's own conversion.
        other => return BgrImage::from_rgb_vec(w, h, other.into_rgb8().into_raw()),
    }
    BgrImage { width: w, height: h, data }
}

/// Turn the pixels upright as a recorded EXIF orientation says (lossless: rotations and mirrors
/// only, which `image` implements; channel order does not matter to them).
fn orient(img: BgrImage, o: image::metadata::Orientation) -> BgrImage {
    if o == image::metadata::Orientation::NoTransforms {
        return img;
    }
    let buf = image::RgbImage::from_raw(img.width as u32, img.height as u32, img.data).expect("buffer matches its size");
    let mut dynamic = DynamicImage::ImageRgb8(buf);
    dynamic.apply_orientation(o);
    let out = dynamic.into_rgb8();
    let (w, h) = out.dimensions();
    BgrImage { width: w as usize, height: h as usize, data: out.into_raw() }
}

fn classify(e: image::ImageError, path: &Path) -> DecodeError {
    use image::ImageError as E;
    match e {
        E::Unsupported(_) => DecodeError::UnknownFormat { path: path.to_owned() },
        E::IoError(source) => DecodeError::Corrupt { path: path.to_owned(), reason: source.to_string() },
        other => DecodeError::Corrupt { path: path.to_owned(), reason: other.to_string() },
    }
}

/// Extensions `dolg` picks up when expanding a directory (compared lowercased): the formats it
/// decodes, plus HEIC/HEIF/AVIF, which it does not, so that a phone's folder of those is reported
/// file by file ([`DecodeError::UnsupportedFormat`], asking for a conversion) rather than skipped
/// in silence.
pub const IMAGE_EXTENSIONS: &[&str] =
    &["jpg", "jpeg", "jpe", "jfif", "png", "webp", "tif", "tiff", "bmp", "dib", "gif", "pbm", "pgm", "ppm", "pnm", "pam", "heic", "heif", "avif"];
