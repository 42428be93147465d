//! α-DBA ([`crate::rerank::dba`]) as a derived, checksummed layer of an index: `dba.bin` beside
//! the segments, computed once over the live entries (neighbours among live entries only), the
//! raw vectors still in the segments.
//!
//! File (little-endian): magic `DOLGDBA1`, k u32, α f32, dim u32, store epoch u64, rows u64,
//! CRC-32 of the alive flags u32, rows × dim f32 (a dead row keeps its raw vector), then the
//! CRC-32 of everything before it. Written through [`crate::atomic_file`].
//!
//! The layer is *fresh* when its epoch, row count and alive flags are the store's. Any change to
//! the entries (add, sync, remove, import, compact) makes it *stale*: a stale layer is never
//! used (searches fall back to the raw vectors) until [`Collection::refresh_dba`] recomputes it —
//! fully, not only the affected neighbourhoods. `dolg index` writer commands call it at their end.
//! Cost: exact O(n² · dim) on the live entries (rayon-parallel), meant for up to ~10⁵ entries.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::Collection;
use crate::error::{Error, Result};
use crate::index::OpenMode;

const FILE: &str = "dba.bin";
const MAGIC: &[u8; 8] = b"DOLGDBA1";
const HEADER: usize = 8 + 4 + 4 + 4 + 8 + 8 + 4;

/// A loaded DBA layer.
#[derive(Debug, Clone)]
pub struct DbaLayer {
    pub k: usize,
    pub alpha: f32,
    /// One vector per store row ([rows, dim]).
    pub vectors: Vec<f32>,
}

/// What an index holds of the DBA layer.
#[derive(Debug, Clone)]
pub enum DbaState {
    Absent,
    Fresh(DbaLayer),
    /// Made before the entries last changed; carries the parameters to rebuild it with.
    Stale {
        k: usize,
        alpha: f32,
    },
}

fn corrupt(path: &Path, why: &str) -> Error {
    Error::Io { path: path.to_owned(), source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("DBA layer: {why}")) }
}

impl Collection {
    fn dba_path(&self) -> PathBuf {
        self.index.store().dir().join(FILE)
    }

    fn alive_crc(&self) -> u32 {
        let alive: Vec<u8> = self.index.store().rows().iter().map(|r| r.alive as u8).collect();
        crc32fast::hash(&alive)
    }

    /// Compute α-DBA over the live entries (each with its `k` nearest live neighbours) and store
    /// it as the index's DBA layer, replacing any earlier one. Needs the index open for writing.
    pub fn build_dba(&mut self, k: usize, alpha: f32) -> Result<()> {
        let path = self.dba_path();
        if self.index.mode() != OpenMode::Write {
            return Err(corrupt(&path, "building it needs the index opened for writing"));
        }
        let s = self.index.store();
        let dim = s.dim();
        let live: Vec<usize> = s.live_rows().map(|(i, _)| i).collect();
        let dense: Vec<f32> = live.iter().flat_map(|&r| s.vector(r).iter().copied()).collect();
        let positions: Vec<usize> = (0..live.len()).collect();
        let augmented: Vec<f32> = positions.par_chunks(256).flat_map_iter(|chunk| crate::rerank::dba_rows(&dense, dim, chunk, k, alpha)).collect();
        let mut vectors = s.vectors().to_vec();
        for (p, &r) in live.iter().enumerate() {
            vectors[r * dim..(r + 1) * dim].copy_from_slice(&augmented[p * dim..(p + 1) * dim]);
        }
        let mut b = Vec::with_capacity(HEADER + vectors.len() * 4 + 4);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&(k as u32).to_le_bytes());
        b.extend_from_slice(&alpha.to_le_bytes());
        b.extend_from_slice(&(dim as u32).to_le_bytes());
        b.extend_from_slice(&s.epoch().to_le_bytes());
        b.extend_from_slice(&(s.rows().len() as u64).to_le_bytes());
        b.extend_from_slice(&self.alive_crc().to_le_bytes());
        vectors.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        crate::atomic_file::write(&path, crate::atomic_file::Mode::Private, &b).map_err(|source| Error::Io { path, source })
    }

    /// The DBA layer, checked against its checksum and against the store.
    pub fn dba_state(&self) -> Result<DbaState> {
        let path = self.dba_path();
        let b = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DbaState::Absent),
            Err(source) => return Err(Error::Io { path, source }),
        };
        if b.len() < HEADER + 4 || &b[..8] != MAGIC {
            return Err(corrupt(&path, "not a DBA layer file"));
        }
        let (body, trailer) = b.split_at(b.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(trailer.try_into().unwrap()) {
            return Err(corrupt(&path, "checksum mismatch"));
        }
        let u32_at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(body[o..o + 8].try_into().unwrap());
        let (k, alpha, dim, epoch, rows, alive) =
            (u32_at(8) as usize, f32::from_bits(u32_at(12)), u32_at(16) as usize, u64_at(20), u64_at(28) as usize, u32_at(36));
        if dim != self.dim() || body.len() != HEADER + rows * dim * 4 {
            return Err(corrupt(&path, "size does not match its header or the index's dimension"));
        }
        let s = self.index.store();
        if epoch != s.epoch() || rows != s.rows().len() || alive != self.alive_crc() {
            return Ok(DbaState::Stale { k, alpha });
        }
        let vectors = body[HEADER..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        Ok(DbaState::Fresh(DbaLayer { k, alpha, vectors }))
    }

    /// The fresh DBA layer, if any (a stale one is ignored).
    pub fn fresh_dba(&self) -> Result<Option<DbaLayer>> {
        Ok(match self.dba_state()? {
            DbaState::Fresh(l) => Some(l),
            _ => None,
        })
    }

    /// Recompute a stale DBA layer with its own parameters (fully). Returns them when it did.
    pub fn refresh_dba(&mut self) -> Result<Option<(usize, f32)>> {
        match self.dba_state() {
            Ok(DbaState::Stale { k, alpha }) => {
                self.build_dba(k, alpha)?;
                Ok(Some((k, alpha)))
            }
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
