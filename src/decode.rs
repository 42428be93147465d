//! Image decoding: any JPEG/PNG/WebP file to an 8-bit **BGR** raster.
//!
//! The authors' pipeline reads images with `cv2.imread`, which yields BGR; the released weights were
//! trained on that order, so we keep it and never swap to RGB here. Decoding goes through the
//! `image` crate with explicit limits, so a file that *declares* absurd dimensions (a decompression
//! bomb) is rejected from its header before any pixel buffer is allocated.

use std::path::{Path, PathBuf};

use image::{ImageReader, Limits};

/// Errors of the decode layer. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{path}: cannot read file: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: empty file")]
    Empty { path: PathBuf },
    #[error("{path}: not a recognised image (supported: JPEG, PNG, WebP)")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: declared size {width}x{height} exceeds the limit of {max_side} pixels per side / {max_pixels} pixels in all")]
    TooLarge { path: PathBuf, width: u32, height: u32, max_side: u32, max_pixels: u64 },
    #[error("{path}: image is {width}x{height}; both sides must be at least 1 pixel")]
    Degenerate { path: PathBuf, width: u32, height: u32 },
    #[error("{path}: corrupt or truncated image data: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// Bounds applied before decoding. The defaults admit any real photograph (up to 20000 px a side,
/// 100 Mpx) while keeping a hostile file's allocation under ~1 GiB.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_side: u32,
    pub max_pixels: u64,
    pub max_alloc_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_side: 20_000, max_pixels: 100_000_000, max_alloc_bytes: 1 << 30 }
    }
}

/// An 8-bit image in interleaved BGR order, row-major `[height][width][3]`, as `cv2.imread` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct BgrImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl BgrImage {
    /// Build from interleaved RGB bytes (the order most decoders and PNG files use).
    pub fn from_rgb(width: usize, height: usize, rgb: &[u8]) -> Self {
        assert_eq!(rgb.len(), width * height * 3, "RGB buffer does not match {width}x{height}");
        let mut data = rgb.to_vec();
        for px in data.chunks_exact_mut(3) {
            px.swap(0, 2);
        }
        Self { width, height, data }
    }
}

/// Decode a file to BGR, enforcing `limits`. Grey and RGBA inputs are converted to 3 channels
/// (alpha dropped, as `cv2.imread` with its default flag does).
pub fn decode_file(path: &Path, limits: &DecodeLimits) -> Result<BgrImage, DecodeError> {
    let bytes = std::fs::read(path).map_err(|source| DecodeError::Io { path: path.to_owned(), source })?;
    decode_bytes(&bytes, path, limits)
}

/// Decode an in-memory file; `path` is only used to name the source in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path, limits: &DecodeLimits) -> Result<BgrImage, DecodeError> {
    let p = || path.to_owned();
    if bytes.is_empty() {
        return Err(DecodeError::Empty { path: p() });
    }
    let reader = ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|source| DecodeError::Io { path: p(), source })?;
    if reader.format().is_none() {
        return Err(DecodeError::UnknownFormat { path: p() });
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
    let img = reader.decode().map_err(|e| classify(e, path))?;
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    Ok(BgrImage::from_rgb(w as usize, h as usize, rgb.as_raw()))
}

fn classify(e: image::ImageError, path: &Path) -> DecodeError {
    use image::ImageError as E;
    match e {
        E::Unsupported(_) => DecodeError::UnknownFormat { path: path.to_owned() },
        E::IoError(source) => DecodeError::Corrupt { path: path.to_owned(), message: source.to_string() },
        other => DecodeError::Corrupt { path: path.to_owned(), message: other.to_string() },
    }
}

/// Extensions `dolg` picks up when expanding a directory.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp"];

/// Expand files and directories into a list of image paths with the default
/// [`WalkOptions`](crate::inputs::WalkOptions): files are kept as given (whatever their extension,
/// so a bad file is reported rather than silently dropped); directories are walked recursively and
/// their images added in sorted order, without following symbolic links inside them or entering
/// hidden folders, each file once. A subfolder that cannot be read is logged (`tracing::warn!`)
/// and skipped. A thin wrapper over [`crate::inputs::list_inputs`], which also returns those
/// problems and takes the options.
pub fn expand_inputs(inputs: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let listing = crate::inputs::list_inputs(inputs, &crate::inputs::WalkOptions::default()).map_err(std::io::Error::other)?;
    for p in &listing.problems {
        tracing::warn!("skipped {}: {}", p.path.display(), p.error);
    }
    Ok(listing.files)
}
