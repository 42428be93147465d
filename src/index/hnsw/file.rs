//! The on-disk format of a graph file: usearch's own image of the index, followed by a 40-byte
//! dolg trailer.
//!
//! ```text
//! offset from the trailer start:
//!  0  magic      8 bytes  "DOLGHNSW"
//!  8  version    u32 LE   TRAILER_VERSION
//! 12  dim        u32 LE   vector dimension
//! 16  ef_search  u32 LE   (0 = the default)
//! 20  len        u64 LE   length of the usearch image before the trailer
//! 28  tag        u64 LE   caller's value, returned as is by `load` (the index stores its row epoch)
//! 36  crc32      u32 LE   CRC-32 (crc32fast, as the index's segments and manifest) of every byte before it
//! ```
//!
//! The checksum covers the usearch image and the trailer fields, and is checked *before* anything
//! reaches usearch: usearch's C++ loader checks its header but not the graph itself, so a damaged
//! body could load without complaint and then crash or return garbage during search. A file
//! without this trailer (a plain `usearch::Index::save` image), of another trailer version (version
//! 1 used a different checksum), truncated or with a single flipped bit is rejected as corrupt.
//!
//! Saving goes through [`crate::atomic_file`] (temporary file, fsync, rename, fsync directory), so
//! a crash partway through never leaves a half-written file at the path. Loading reads the whole
//! file into memory and usearch copies it, so for a moment memory use is about twice its size.

use std::io::{Read, Write};
use std::path::Path;

use super::HnswError;

pub(super) const TRAILER_MAGIC: &[u8; 8] = b"DOLGHNSW";
/// 1: 64-bit xxh64-style hash of the usearch image only. 2: CRC-32 of the image and the trailer, plus the tag.
pub(super) const TRAILER_VERSION: u32 = 2;
pub(super) const TRAILER_LEN: usize = 40;

/// The trailer's fields besides the magic, version, length and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Trailer {
    pub dim: u32,
    pub ef_search: u32,
    pub tag: u64,
}

/// The trailer without its final checksum.
fn head(t: &Trailer, len: u64) -> [u8; TRAILER_LEN - 4] {
    let mut h = [0u8; TRAILER_LEN - 4];
    h[0..8].copy_from_slice(TRAILER_MAGIC);
    h[8..12].copy_from_slice(&TRAILER_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&t.dim.to_le_bytes());
    h[16..20].copy_from_slice(&t.ef_search.to_le_bytes());
    h[20..28].copy_from_slice(&len.to_le_bytes());
    h[28..36].copy_from_slice(&t.tag.to_le_bytes());
    h
}

/// Replace `path` atomically with the image `write_image` writes to the temporary path it is
/// given, followed by the trailer. The file keeps the index files' private mode.
pub(super) fn save(path: &Path, trailer: &Trailer, write_image: impl FnOnce(&Path) -> Result<(), HnswError>) -> Result<(), HnswError> {
    let mut inner = None;
    let result = crate::atomic_file::replace(path, crate::atomic_file::Mode::Private, |tmp| {
        if let Err(e) = write_image(tmp) {
            inner = Some(e);
            return Err(std::io::Error::other("the graph image could not be written"));
        }
        // Stream the image back to checksum it, then append the trailer.
        let mut f = std::fs::OpenOptions::new().read(true).append(true).open(tmp)?;
        let mut crc = crc32fast::Hasher::new();
        let mut len = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            crc.update(&buf[..n]);
            len += n as u64;
        }
        let head = head(trailer, len);
        crc.update(&head);
        f.write_all(&head)?;
        f.write_all(&crc.finalize().to_le_bytes())
    });
    match (inner, result) {
        (Some(e), _) => Err(e),
        (None, Err(source)) => Err(HnswError::Io { path: path.to_path_buf(), source }),
        (None, Ok(())) => Ok(()),
    }
}

/// Read `path` and verify its trailer and checksum; returns the usearch image and the trailer.
pub(super) fn load(path: &Path) -> Result<(Vec<u8>, Trailer), HnswError> {
    let corrupt = |msg: String| HnswError::Corrupt { path: path.to_path_buf(), msg };
    let mut buf = Vec::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut buf)).map_err(|source| HnswError::Io { path: path.to_path_buf(), source })?;
    if buf.len() < TRAILER_LEN {
        return Err(corrupt(format!("file is {} bytes, too short for the trailer", buf.len())));
    }
    let image_len = buf.len() - TRAILER_LEN;
    let t = &buf[image_len..];
    if &t[0..8] != TRAILER_MAGIC {
        return Err(corrupt("missing dolg trailer (truncated, or not written by HnswIndex::save)".into()));
    }
    let u32_at = |o: usize| u32::from_le_bytes(t[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(t[o..o + 8].try_into().unwrap());
    let version = u32_at(8);
    if version != TRAILER_VERSION {
        return Err(corrupt(format!("graph file format version {version}, this dolg reads version {TRAILER_VERSION}")));
    }
    let (len, stored) = (u64_at(20), u32_at(36));
    if len != image_len as u64 {
        return Err(corrupt(format!("image length {image_len} but the trailer says {len}")));
    }
    let actual = crc32fast::hash(&buf[..buf.len() - 4]);
    if actual != stored {
        return Err(corrupt(format!("checksum mismatch (stored {stored:08x}, computed {actual:08x})")));
    }
    let trailer = Trailer { dim: u32_at(12), ef_search: u32_at(16), tag: u64_at(28) };
    buf.truncate(image_len);
    Ok((buf, trailer))
}
