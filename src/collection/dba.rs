//! α-DBA ([`crate::rerank::dba`]) as a derived, checksummed layer of an index: `dba.bin` beside
//! the segments, computed over the live entries (neighbours among live entries only), the raw
//! vectors still in the segments. Every search of a collection with a fresh layer compares
//! queries with the DBA vectors (exactly, whatever the backend); queries themselves stay raw.
//!
//! File (little-endian): magic `DOLGDBA2`, k u32, α f32, dim u32, store epoch u64, rows u64,
//! CRC-32 of the alive flags u32; rows × dim f32 (a dead row keeps its raw vector); rows × k u32
//! neighbour rows (`u32::MAX` past the last one); rows × f32 the k-th neighbour's similarity
//! (−∞ with fewer than k); then the CRC-32 of everything before it. Written through
//! [`crate::atomic_file`]. Layers of the first format (`DOLGDBA1`, no neighbour lists) read as
//! stale and are rebuilt in full.
//!
//! The layer is *fresh* when its epoch, row count and alive flags are the store's. Any change to
//! the entries (add, sync, remove, import, compact) makes it *stale*: a stale layer is never
//! used (searches fall back to the raw vectors) until [`Collection::refresh_dba`] brings it up
//! to date; `dolg index` writer commands call it at their end. The refresh recomputes only the
//! affected entries: new ones, those that had a removed entry among their k neighbours, and those
//! a new entry is closer to than their k-th neighbour (strictly: ties go to the lower, older row,
//! so an equally close newcomer changes nothing). Finding them costs one pass over the live
//! entries per new entry; the result equals a full rebuild bit for bit (tested). After a
//! compaction (rows renumbered) it rebuilds in full: exact O(n² · dim), rayon-parallel.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::error::{CollectionError as Error, Result};
use super::Collection;
use crate::index::OpenMode;
use crate::linalg::dot;

const FILE: &str = "dba.bin";
const MAGIC: &[u8; 8] = b"DOLGDBA2";
const MAGIC_V1: &[u8; 8] = b"DOLGDBA1";
const HEADER: usize = 8 + 4 + 4 + 4 + 8 + 8 + 4;
const NONE: u32 = u32::MAX;

/// A loaded DBA layer.
#[derive(Debug, Clone)]
pub struct DbaLayer {
    /// Neighbours that augment each vector.
    pub k: usize,
    /// Exponent α of the neighbour weights.
    pub alpha: f32,
    /// One vector per store row ([rows, dim]).
    pub vectors: Vec<f32>,
}

/// What an index holds of the DBA layer.
#[derive(Debug, Clone)]
pub enum DbaState {
    /// No DBA layer.
    Absent,
    /// A layer matching the current entries; searches use it.
    Fresh(DbaLayer),
    /// Made before the entries last changed; carries the parameters to rebuild it with.
    Stale {
        /// Neighbours the layer was made with.
        k: usize,
        /// Exponent α it was made with.
        alpha: f32,
    },
}

/// What [`Collection::refresh_dba`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DbaRefresh {
    /// Neighbours per entry.
    pub k: usize,
    /// Exponent α of the neighbour weights.
    pub alpha: f32,
    /// Entries whose DBA vector was recomputed.
    pub recomputed: usize,
    /// Live entries.
    pub live: usize,
}

/// The whole file's contents.
struct Saved {
    k: usize,
    alpha: f32,
    epoch: u64,
    rows: usize,
    alive_crc: u32,
    vectors: Vec<f32>,
    /// rows × k store rows, [`NONE`]-padded.
    neighbours: Vec<u32>,
    /// Similarity of each row's k-th neighbour (−∞ with fewer than k).
    kth: Vec<f32>,
}

/// What a layer file was computed for: epoch, row count and CRC-32 of the alive flags.
type Key = (u64, usize, u32);

/// The per-collection cache of the fresh layer, so searches do not re-read `dba.bin`. Keyed by
/// (epoch, rows, live entries), which identifies the store's state without an O(rows) pass per
/// search: within an epoch rows are only appended and alive flags only turn false, so equal row
/// counts with equal live counts mean equal alive flags.
#[derive(Debug, Default)]
pub(super) struct DbaCache(std::sync::Mutex<Option<(StoreState, Option<Arc<DbaLayer>>)>>);

/// (epoch, rows, live entries).
type StoreState = (u64, usize, usize);

fn corrupt(path: &Path, why: &str) -> Error {
    Error::Io { path: path.to_owned(), source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("DBA layer: {why}")) }
}

impl Collection {
    fn dba_path(&self) -> PathBuf {
        self.index.store().dir().join(FILE)
    }

    fn dba_key(&self) -> Key {
        let s = self.index.store();
        let alive: Vec<u8> = s.rows().iter().map(|r| r.alive as u8).collect();
        (s.epoch(), s.rows().len(), crc32fast::hash(&alive))
    }

    /// Compute α-DBA over the live entries (each with its `k` nearest live neighbours) and store
    /// it as the index's DBA layer, replacing any earlier one. Needs the index open for writing.
    pub fn build_dba(&mut self, k: usize, alpha: f32) -> Result<()> {
        self.check_dba_writable()?;
        let s = self.index.store();
        let rows = s.rows().len();
        let live: Vec<usize> = s.live_rows().map(|(i, _)| i).collect();
        let mut saved = Saved {
            k,
            alpha,
            epoch: 0,
            rows,
            alive_crc: 0,
            vectors: s.vectors().to_vec(),
            neighbours: vec![NONE; rows * k],
            kth: vec![f32::NEG_INFINITY; rows],
        };
        let positions: Vec<usize> = (0..live.len()).collect();
        self.recompute(&mut saved, &live, &positions);
        self.save_dba(saved)
    }

    fn check_dba_writable(&self) -> Result<()> {
        if self.index.mode() != OpenMode::Write {
            return Err(corrupt(&self.dba_path(), "building it needs the index opened for writing"));
        }
        Ok(())
    }

    /// Recompute the DBA vector, neighbours and k-th similarity of the live entries at
    /// `positions` (indices into `live`, the store rows of the live entries in order).
    fn recompute(&self, saved: &mut Saved, live: &[usize], positions: &[usize]) {
        let s = self.index.store();
        let (dim, k) = (s.dim(), saved.k);
        let dense: Vec<f32> = live.iter().flat_map(|&r| s.vector(r).iter().copied()).collect();
        type Part = (Vec<f32>, Vec<Vec<(usize, f32)>>);
        let parts: Vec<Part> = positions.par_chunks(256).map(|chunk| crate::rerank::dba_rows_with_neighbours(&dense, dim, chunk, k, saved.alpha)).collect();
        let mut at = positions.iter();
        for (vectors, lists) in parts {
            for (v, nn) in vectors.chunks_exact(dim).zip(lists) {
                let r = live[*at.next().expect("one result per position")];
                saved.vectors[r * dim..(r + 1) * dim].copy_from_slice(v);
                let slot = &mut saved.neighbours[r * k..(r + 1) * k];
                slot.fill(NONE);
                slot.iter_mut().zip(&nn).for_each(|(o, &(p, _))| *o = live[p] as u32);
                saved.kth[r] = if nn.len() == k && k > 0 { nn[k - 1].1 } else { f32::NEG_INFINITY };
            }
        }
    }

    fn save_dba(&mut self, mut saved: Saved) -> Result<()> {
        let path = self.dba_path();
        let dim = self.dim();
        (saved.epoch, saved.rows, saved.alive_crc) = self.dba_key();
        let mut b = Vec::with_capacity(HEADER + saved.vectors.len() * 4 + saved.neighbours.len() * 4 + saved.rows * 4 + 4);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&(saved.k as u32).to_le_bytes());
        b.extend_from_slice(&saved.alpha.to_le_bytes());
        b.extend_from_slice(&(dim as u32).to_le_bytes());
        b.extend_from_slice(&saved.epoch.to_le_bytes());
        b.extend_from_slice(&(saved.rows as u64).to_le_bytes());
        b.extend_from_slice(&saved.alive_crc.to_le_bytes());
        saved.vectors.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        saved.neighbours.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        saved.kth.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        *self.dba_cache.0.lock().unwrap() = None;
        crate::atomic_file::write(&path, crate::atomic_file::Mode::Private, &b).map_err(|source| Error::Io { path, source })
    }

    /// The saved layer, checksum verified; `Ok(None)` when there is none, and a first-format
    /// layer as one to rebuild (no vectors).
    fn read_dba(&self) -> Result<Option<Saved>> {
        let path = self.dba_path();
        let b = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        if b.len() < HEADER + 4 || (&b[..8] != MAGIC && &b[..8] != MAGIC_V1) {
            return Err(corrupt(&path, "not a DBA layer file"));
        }
        let (body, trailer) = b.split_at(b.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(trailer.try_into().unwrap()) {
            return Err(corrupt(&path, "checksum mismatch"));
        }
        let u32_at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(body[o..o + 8].try_into().unwrap());
        let (k, alpha, dim, epoch, rows, alive_crc) =
            (u32_at(8) as usize, f32::from_bits(u32_at(12)), u32_at(16) as usize, u64_at(20), u64_at(28) as usize, u32_at(36));
        if &b[..8] == MAGIC_V1 {
            // Stale whatever the store says: rows 0 make the refresh rebuild it.
            return Ok(Some(Saved { k, alpha, epoch: u64::MAX, rows: 0, alive_crc, vectors: Vec::new(), neighbours: Vec::new(), kth: Vec::new() }));
        }
        if dim != self.dim() || body.len() != HEADER + rows * (dim + k + 1) * 4 {
            return Err(corrupt(&path, "size does not match its header or the index's dimension"));
        }
        let f32s = |from: usize, n: usize| body[from..from + 4 * n].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<f32>>();
        let vectors = f32s(HEADER, rows * dim);
        let at = HEADER + rows * dim * 4;
        let neighbours = body[at..at + rows * k * 4].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
        let kth = f32s(at + rows * k * 4, rows);
        Ok(Some(Saved { k, alpha, epoch, rows, alive_crc, vectors, neighbours, kth }))
    }

    /// The DBA layer, checked against its checksum and against the store.
    pub fn dba_state(&self) -> Result<DbaState> {
        Ok(match self.read_dba()? {
            None => DbaState::Absent,
            Some(sv) if (sv.epoch, sv.rows, sv.alive_crc) == self.dba_key() => DbaState::Fresh(DbaLayer { k: sv.k, alpha: sv.alpha, vectors: sv.vectors }),
            Some(sv) => DbaState::Stale { k: sv.k, alpha: sv.alpha },
        })
    }

    /// The fresh DBA layer, if any (a stale one is ignored). Cached: read from disk once per
    /// state of the store.
    pub fn fresh_dba(&self) -> Result<Option<Arc<DbaLayer>>> {
        let s = self.index.store();
        let key = (s.epoch(), s.rows().len(), s.live_count());
        let mut cache = self.dba_cache.0.lock().unwrap();
        if let Some((k, layer)) = cache.as_ref() {
            if *k == key {
                return Ok(layer.clone());
            }
        }
        let layer = match self.dba_state()? {
            DbaState::Fresh(l) => Some(Arc::new(l)),
            _ => None,
        };
        *cache = Some((key, layer.clone()));
        Ok(layer)
    }

    /// Bring a stale DBA layer up to date with its own parameters, recomputing only the affected
    /// entries (see the module documentation). Returns what it did, `None` when there was nothing
    /// to do.
    pub fn refresh_dba(&mut self) -> Result<Option<DbaRefresh>> {
        let Some(mut saved) = self.read_dba()? else { return Ok(None) };
        let (epoch, rows, alive_crc) = self.dba_key();
        if (saved.epoch, saved.rows, saved.alive_crc) == (epoch, rows, alive_crc) {
            return Ok(None);
        }
        self.check_dba_writable()?;
        let (k, alpha) = (saved.k, saved.alpha);
        let live_count = self.index.store().live_count();
        if saved.epoch != epoch || saved.rows > rows {
            self.build_dba(k, alpha)?;
            return Ok(Some(DbaRefresh { k, alpha, recomputed: live_count, live: live_count }));
        }
        let s = self.index.store();
        let dim = s.dim();
        let old_rows = saved.rows;
        // New rows start from their raw vectors (a dead one keeps it, as in a full build).
        saved.vectors.extend_from_slice(&s.vectors()[old_rows * dim..]);
        saved.neighbours.resize(rows * k, NONE);
        saved.kth.resize(rows, f32::NEG_INFINITY);
        let live: Vec<usize> = s.live_rows().map(|(i, _)| i).collect();
        let alive = |r: u32| s.rows()[r as usize].alive;
        let fresh_rows: Vec<usize> = live.iter().copied().filter(|&r| r >= old_rows).collect();
        let affected: Vec<usize> = live
            .par_iter()
            .enumerate()
            .filter(|&(_, &r)| {
                r >= old_rows
                    || saved.neighbours[r * k..(r + 1) * k].iter().any(|&n| n != NONE && !alive(n))
                    || fresh_rows.iter().any(|&x| dot(s.vector(r), s.vector(x)) > saved.kth[r])
            })
            .map(|(p, _)| p)
            .collect();
        self.recompute(&mut saved, &live, &affected);
        self.save_dba(saved)?;
        Ok(Some(DbaRefresh { k, alpha, recomputed: affected.len(), live: live_count }))
    }
}
