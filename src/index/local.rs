//! Local features stored with an index: one `seg-N.local` file beside each segment whose adds carry
//! [`LocalFeatures`], written and named in the manifest in the same commit as the segment, so they
//! are added, removed, compacted and synced together with the global vectors.
//!
//! Local features are ~100x larger than a global vector (1000 keypoints x 64..512 dims), and the
//! second stage reads only the top K candidates of a query, so they are never loaded at open: the
//! open reads each file's header and offset table (checksummed), and [`read_block`] reads one
//! image's block with a positioned read and checks that block's own CRC-32.
//!
//! # File layout (little-endian)
//!
//! ```text
//! "DOLGLOC1"  u64 count  count x (u64 offset, u32 len)  u32 crc32(everything before)
//! blocks...   (len 0 = that add has no local features)
//! ```
//! `count` equals the number of add records of the segment, in order. A block:
//! ```text
//! u32 n  u16 dim  u8 encoding  u8 0
//! n x 2 f32 locations (row, col)   n f32 scores   n f32 scales
//! f16:  n x dim f16 descriptors
//! int8: n f32 scales, n x dim i8 (descriptor = scale * q, q = round(x * 127 / max|x|))
//! u32 crc32(block before it)
//! ```
//! Stored descriptors are re-normalised to unit length when read, so either encoding yields unit
//! rows; what each costs in retrieval quality is measured in the README.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use half::f16;
use serde::{Deserialize, Serialize};

use super::IndexError;
use crate::model::LocalFeatures;

const MAGIC: &[u8; 8] = b"DOLGLOC1";

/// How descriptors are stored. Locations, scores and scales are always float32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LocalEncoding {
    /// IEEE half precision: 2 bytes per value.
    #[default]
    F16,
    /// Symmetric int8 with one float32 scale per descriptor: 1 byte per value.
    Int8,
}

impl LocalEncoding {
    fn code(self) -> u8 {
        match self {
            LocalEncoding::F16 => 0,
            LocalEncoding::Int8 => 1,
        }
    }
}

/// Where one row's block lies in its segment's local file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalRef {
    /// Index into the manifest's segment list at open (stable until compaction).
    pub segment: u32,
    /// Byte offset of the block in the local file.
    pub offset: u64,
    /// Length of the block, in bytes.
    pub len: u32,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> IndexError {
    IndexError::Corrupt { path: path.to_owned(), reason: reason.into() }
}

/// One image's block, checksum included.
pub fn encode_block(f: &LocalFeatures, encoding: LocalEncoding) -> Vec<u8> {
    assert!(f.is_consistent(), "inconsistent LocalFeatures");
    let n = f.len();
    let mut b = Vec::with_capacity(16 + n * (16 + f.dim * 2));
    b.extend_from_slice(&(n as u32).to_le_bytes());
    b.extend_from_slice(&(f.dim as u16).to_le_bytes());
    b.push(encoding.code());
    b.push(0);
    let mut put = |x: f32| b.extend_from_slice(&x.to_le_bytes());
    f.locations.iter().flatten().for_each(|&x| put(x));
    f.scores.iter().for_each(|&x| put(x));
    f.scales.iter().for_each(|&x| put(x));
    match encoding {
        LocalEncoding::F16 => f.descriptors.iter().for_each(|&x| b.extend_from_slice(&f16::from_f32(x).to_le_bytes())),
        LocalEncoding::Int8 => {
            let rows: Vec<&[f32]> = (0..n).map(|i| f.descriptor(i)).collect();
            let scales: Vec<f32> = rows.iter().map(|r| r.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0).collect();
            scales.iter().for_each(|s| b.extend_from_slice(&s.to_le_bytes()));
            for (r, s) in rows.iter().zip(&scales) {
                let inv = if *s > 0.0 { 1.0 / s } else { 0.0 };
                b.extend(r.iter().map(|x| (x * inv).round().clamp(-127.0, 127.0) as i8 as u8));
            }
        }
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Decode a block written by [`encode_block`]; `path` names the file in errors.
pub fn decode_block(path: &Path, bytes: &[u8]) -> Result<LocalFeatures, IndexError> {
    decode_body(path, checked_body(bytes).ok_or_else(|| corrupt(path, "local-feature block too short or failing its checksum"))?)
}

/// A block without its CRC trailer, if the trailer matches (and the block is long enough).
fn checked_body(bytes: &[u8]) -> Option<&[u8]> {
    let (body, trailer) = bytes.split_at(bytes.len().checked_sub(4).filter(|&n| n >= 8)?);
    (crc32fast::hash(body) == u32::from_le_bytes(trailer.try_into().unwrap())).then_some(body)
}

/// Decode a block's body (checksum already verified).
fn decode_body(path: &Path, body: &[u8]) -> Result<LocalFeatures, IndexError> {
    let n = u32::from_le_bytes(body[0..4].try_into().unwrap()) as usize;
    let dim = u16::from_le_bytes(body[4..6].try_into().unwrap()) as usize;
    let per_row = match body[6] {
        0 => 16 + 2 * dim,
        1 => 20 + dim,
        x => return Err(corrupt(path, format!("unknown local-feature encoding {x}"))),
    };
    if body.len() != 8 + n * per_row {
        return Err(corrupt(path, format!("local-feature block of {} bytes for {n} features of {dim} dims", body.len())));
    }
    let f32s = |from: usize, count: usize| body[from..from + 4 * count].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()));
    let mut at = 8;
    let flat: Vec<f32> = f32s(at, 2 * n).collect();
    let locations = flat.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    at += 8 * n;
    let scores = f32s(at, n).collect();
    at += 4 * n;
    let scales = f32s(at, n).collect();
    at += 4 * n;
    let mut descriptors: Vec<f32> = if body[6] == 0 {
        body[at..].chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
    } else {
        let row_scale: Vec<f32> = f32s(at, n).collect();
        let q = &body[at + 4 * n..];
        q.iter().enumerate().map(|(i, &v)| v as i8 as f32 * row_scale[i / dim.max(1)]).collect()
    };
    if dim > 0 {
        descriptors.chunks_exact_mut(dim).for_each(crate::descriptors::l2_normalize);
    }
    Ok(LocalFeatures { dim, locations, descriptors, scores, scales })
}

/// A whole local file for one segment: `blocks[i]` belongs to the segment's i-th add record.
/// Returns the bytes and each block's `(offset, len)`, as [`read_table`] will read them back.
pub(crate) fn encode_file(blocks: &[Option<Vec<u8>>]) -> (Vec<u8>, Vec<Option<(u64, u32)>>) {
    let table_len = 8 + 8 + blocks.len() * 12 + 4;
    let mut b = Vec::with_capacity(table_len + blocks.iter().flatten().map(Vec::len).sum::<usize>());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&(blocks.len() as u64).to_le_bytes());
    let mut offset = table_len as u64;
    let mut entries = Vec::with_capacity(blocks.len());
    for blk in blocks {
        let len = blk.as_ref().map_or(0, Vec::len);
        entries.push((len > 0).then_some((offset, len as u32)));
        b.extend_from_slice(&(if len == 0 { 0 } else { offset }).to_le_bytes());
        b.extend_from_slice(&(len as u32).to_le_bytes());
        offset += len as u64;
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    blocks.iter().flatten().for_each(|blk| b.extend_from_slice(blk));
    (b, entries)
}

/// Read and check a local file's offset table: one `(offset, len)` per add record, `None` where
/// that add has no local features. `expect_bytes` is the file size the manifest records.
pub(crate) fn read_table(path: &Path, expect_bytes: u64, adds: usize) -> Result<Vec<Option<(u64, u32)>>, IndexError> {
    let file = File::open(path).map_err(|source| IndexError::Io { path: path.to_owned(), source })?;
    let size = file.metadata().map_err(|source| IndexError::Io { path: path.to_owned(), source })?.len();
    if size != expect_bytes {
        return Err(corrupt(path, format!("{size} bytes, the manifest records {expect_bytes}")));
    }
    let mut head = [0u8; 16];
    file.read_exact_at(&mut head, 0).map_err(|_| corrupt(path, "truncated header"))?;
    if &head[..8] != MAGIC {
        return Err(corrupt(path, "not a dolg local-feature file (bad magic)"));
    }
    let count = u64::from_le_bytes(head[8..16].try_into().unwrap());
    if count != adds as u64 {
        return Err(corrupt(path, format!("{count} entries for a segment of {adds} adds")));
    }
    let mut table = vec![0u8; 16 + adds * 12 + 4];
    file.read_exact_at(&mut table, 0).map_err(|_| corrupt(path, "truncated offset table"))?;
    let (body, trailer) = table.split_at(table.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(trailer.try_into().unwrap()) {
        return Err(corrupt(path, "offset table checksum mismatch"));
    }
    body[16..]
        .chunks_exact(12)
        .map(|e| {
            let (offset, len) = (u64::from_le_bytes(e[..8].try_into().unwrap()), u32::from_le_bytes(e[8..].try_into().unwrap()));
            match len {
                0 => Ok(None),
                _ if offset.checked_add(len as u64).is_none_or(|end| end > size) => Err(corrupt(path, "an entry points past the end of the file")),
                _ => Ok(Some((offset, len))),
            }
        })
        .collect()
}

/// One image's features from `path` at `offset` (a positioned read: readers may share the file).
pub fn read_block(path: &Path, offset: u64, len: u32) -> Result<LocalFeatures, IndexError> {
    let bytes = read_raw(path, offset, len)?;
    decode_body(path, &bytes[..bytes.len() - 4])
}

/// A block's bytes, checksum verified (compaction copies blocks without decoding them).
pub(crate) fn read_raw(path: &Path, offset: u64, len: u32) -> Result<Vec<u8>, IndexError> {
    let file = File::open(path).map_err(|source| IndexError::Io { path: path.to_owned(), source })?;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, offset).map_err(|source| IndexError::Io { path: path.to_owned(), source })?;
    if checked_body(&bytes).is_none() {
        return Err(corrupt(path, format!("local-feature block at offset {offset} fails its checksum")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(n: usize, dim: usize, seed: u32) -> LocalFeatures {
        let mut x = seed.wrapping_mul(2654435761).max(1);
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        };
        let mut descriptors: Vec<f32> = (0..n * dim).map(|_| next()).collect();
        descriptors.chunks_exact_mut(dim).for_each(crate::descriptors::l2_normalize);
        let locations = (0..n).map(|i| [i as f32 * 1.5, 640.0 - i as f32]).collect();
        let scores = (0..n).map(|i| 100.0 - i as f32).collect();
        LocalFeatures { dim, locations, descriptors, scores, scales: vec![0.5; n] }
    }

    #[test]
    fn blocks_round_trip_within_the_encodings_precision() {
        let f = features(50, 64, 3);
        for (enc, tol) in [(LocalEncoding::F16, 1e-3), (LocalEncoding::Int8, 1.2e-2)] {
            let back = decode_block(Path::new("x"), &encode_block(&f, enc)).unwrap();
            assert_eq!((back.dim, &back.locations, &back.scores, &back.scales), (f.dim, &f.locations, &f.scores, &f.scales));
            let worst = back.descriptors.iter().zip(&f.descriptors).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < tol && worst > 0.0, "{enc:?}: worst {worst}");
        }
        let empty = decode_block(Path::new("x"), &encode_block(&LocalFeatures::empty(128), LocalEncoding::Int8)).unwrap();
        assert_eq!(empty, LocalFeatures::empty(128));
    }

    #[test]
    fn a_flipped_bit_is_reported_as_corruption() {
        let mut b = encode_block(&features(5, 8, 1), LocalEncoding::F16);
        b[20] ^= 1;
        assert!(matches!(decode_block(Path::new("x"), &b), Err(IndexError::Corrupt { .. })));
    }

    #[test]
    fn file_table_locates_every_block_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.local");
        let fs = [features(3, 8, 1), features(7, 8, 2)];
        let blocks = vec![Some(encode_block(&fs[0], LocalEncoding::F16)), None, Some(encode_block(&fs[1], LocalEncoding::Int8))];
        let (bytes, entries) = encode_file(&blocks);
        std::fs::write(&path, &bytes).unwrap();
        let table = read_table(&path, bytes.len() as u64, 3).unwrap();
        assert_eq!(table, entries);
        assert!(table[1].is_none());
        for (entry, f) in [table[0], table[2]].into_iter().zip(&fs) {
            let (o, l) = entry.unwrap();
            let back = read_block(&path, o, l).unwrap();
            assert_eq!(back.locations, f.locations);
        }
        assert!(read_table(&path, bytes.len() as u64 + 1, 3).is_err());
        assert!(read_table(&path, bytes.len() as u64, 2).is_err());
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(read_table(&path, bytes.len() as u64, 3), Err(IndexError::Corrupt { .. })));
    }
}
