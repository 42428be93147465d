//! The stat cache: for each indexed photo, the file's size, modification time and inode when its
//! content hash was last computed, so an unchanged file is recognised without reading it.
//!
//! It is a derived file (`stat.cache` in the index folder), like the HNSW graph: the segments stay
//! the truth. A cached hash is used only when size, mtime and inode all match, and only for files
//! whose mtime is older than the cache's own write time by [`RACY_SECONDS`] — a file modified in
//! the same instant the cache was written could change again without its mtime moving, the
//! "racy" case git's index guards against the same way. A missing, old or damaged cache costs a
//! re-hash of every file, never a wrong answer.
//!
//! Format (little-endian): magic `DOLGSTAT`, version u32, written-at seconds i64, count u64, then
//! per entry: name length u32, name (UTF-8), size u64, mtime seconds i64, mtime nanoseconds u32,
//! inode u64, SHA-256 (32 bytes); a CRC-32 of everything before it closes the file.

use std::collections::HashMap;
use std::path::Path;

use crate::atomic_file::{self, Mode};

pub const FILE: &str = "stat.cache";
const MAGIC: &[u8; 8] = b"DOLGSTAT";
const VERSION: u32 = 1;
/// Files modified this close to the cache's write time are hashed again.
pub(crate) const RACY_SECONDS: i64 = 2;

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    pub size: u64,
    pub mtime_s: i64,
    pub mtime_ns: u32,
    pub inode: u64,
}

impl FileStat {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Self { size: meta.len(), mtime_s: meta.mtime(), mtime_ns: meta.mtime_nsec() as u32, inode: meta.ino() }
        }
        #[cfg(not(unix))]
        {
            let t = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
            Self { size: meta.len(), mtime_s: t.as_secs() as i64, mtime_ns: t.subsec_nanos(), inode: 0 }
        }
    }
}

/// Name → (stat, content hash) as last seen.
#[derive(Debug, Default)]
pub(crate) struct StatCache {
    entries: HashMap<String, (FileStat, [u8; 32])>,
    /// When the loaded cache was written (seconds since the epoch); 0 for a new cache.
    written_at: i64,
    dirty: bool,
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl StatCache {
    /// Load the cache from `dir`; anything unreadable gives an empty cache (with a debug log).
    pub fn load(dir: &Path) -> Self {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::decode(&bytes).unwrap_or_else(|reason| {
                tracing::warn!("{}: {reason}; every file will be hashed again", path.display());
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 8 + 4 + 8 + 8 + 4 || &bytes[..8] != MAGIC {
            return Err("not a dolg stat cache".into());
        }
        let (body, trailer) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(trailer.try_into().expect("4 bytes")) {
            return Err("checksum mismatch".into());
        }
        let mut pos = 8;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let s = body.get(pos..pos + n).ok_or("truncated")?;
            pos += n;
            Ok(s)
        };
        let u32_at = |s: &[u8]| u32::from_le_bytes(s.try_into().expect("4 bytes"));
        let u64_at = |s: &[u8]| u64::from_le_bytes(s.try_into().expect("8 bytes"));
        let version = u32_at(take(4)?);
        if version != VERSION {
            return Err(format!("version {version}, this dolg reads {VERSION}"));
        }
        let written_at = u64_at(take(8)?) as i64;
        let count = u64_at(take(8)?) as usize;
        let mut entries = HashMap::with_capacity(count.min(1 << 24));
        for _ in 0..count {
            let len = u32_at(take(4)?) as usize;
            let name = std::str::from_utf8(take(len)?).map_err(|_| "name is not UTF-8")?.to_owned();
            let stat = FileStat { size: u64_at(take(8)?), mtime_s: u64_at(take(8)?) as i64, mtime_ns: u32_at(take(4)?), inode: u64_at(take(8)?) };
            let hash: [u8; 32] = take(32)?.try_into().expect("32 bytes");
            entries.insert(name, (stat, hash));
        }
        if pos != body.len() {
            return Err("trailing bytes".into());
        }
        Ok(Self { entries, written_at, dirty: false })
    }

    /// The cached hash of `name`, if the file is provably unchanged since it was hashed.
    pub fn hash(&self, name: &str, stat: &FileStat) -> Option<[u8; 32]> {
        let (cached, hash) = self.entries.get(name)?;
        (cached == stat && stat.mtime_s < self.written_at - RACY_SECONDS).then_some(*hash)
    }

    pub fn insert(&mut self, name: String, stat: FileStat, hash: [u8; 32]) {
        if self.entries.get(&name) != Some(&(stat, hash)) {
            self.entries.insert(name, (stat, hash));
            self.dirty = true;
        }
    }

    /// Keep only the names `keep` accepts (the live entries of the index).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let before = self.entries.len();
        self.entries.retain(|name, _| keep(name));
        self.dirty |= self.entries.len() != before;
    }

    /// Write the cache atomically if it changed, or if entries it holds are still too recent to
    /// be trusted (a later write time lets the next run trust them).
    pub fn save(&mut self, dir: &Path) -> std::io::Result<()> {
        let now = now_s();
        let racy = self.entries.values().any(|(s, _)| s.mtime_s >= self.written_at - RACY_SECONDS);
        if !self.dirty && !racy {
            return Ok(());
        }
        let mut b = Vec::with_capacity(32 + self.entries.len() * 100);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&(now as u64).to_le_bytes());
        b.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        let mut names: Vec<&String> = self.entries.keys().collect();
        names.sort();
        for name in names {
            let (s, h) = &self.entries[name];
            b.extend_from_slice(&(name.len() as u32).to_le_bytes());
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(&s.size.to_le_bytes());
            b.extend_from_slice(&(s.mtime_s as u64).to_le_bytes());
            b.extend_from_slice(&s.mtime_ns.to_le_bytes());
            b.extend_from_slice(&s.inode.to_le_bytes());
            b.extend_from_slice(h);
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        atomic_file::write(&dir.join(FILE), Mode::Private, &b)?;
        self.written_at = now;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mtime_s: i64) -> FileStat {
        FileStat { size: 10, mtime_s, mtime_ns: 5, inode: 7 }
    }

    #[test]
    fn round_trip_trusts_only_old_unchanged_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = StatCache::default();
        let old = now_s() - 100;
        c.insert("a.jpg".into(), stat(old), [1; 32]);
        c.insert("new.jpg".into(), stat(now_s()), [2; 32]);
        c.save(dir.path()).unwrap();
        let c = StatCache::load(dir.path());
        assert_eq!(c.hash("a.jpg", &stat(old)), Some([1; 32]));
        // Any change of size, mtime or inode means "hash it again".
        assert_eq!(c.hash("a.jpg", &FileStat { size: 11, ..stat(old) }), None);
        assert_eq!(c.hash("a.jpg", &FileStat { mtime_ns: 6, ..stat(old) }), None);
        assert_eq!(c.hash("a.jpg", &FileStat { inode: 8, ..stat(old) }), None);
        // Modified within RACY_SECONDS of the cache's write: not trusted.
        assert_eq!(c.hash("new.jpg", &stat(now_s())), None);
        assert_eq!(c.hash("missing.jpg", &stat(old)), None);
    }

    #[test]
    fn damage_gives_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = StatCache::default();
        c.insert("a.jpg".into(), stat(1), [1; 32]);
        c.save(dir.path()).unwrap();
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        for i in [0, 9, 30, bytes.len() - 1] {
            bytes[i] ^= 0x10;
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(StatCache::load(dir.path()).hash("a.jpg", &stat(1)), None, "flip at {i}");
            bytes[i] ^= 0x10;
        }
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(StatCache::load(dir.path()).entries.is_empty());
    }
}
