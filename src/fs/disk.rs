//! The optional on-disk tier of the block cache (`--cache-dir`).
//!
//! Why: memory is small next to the files people read twice; a local disk
//! is still much faster than a round trip to the store.
//!
//! Guarantees:
//! - blocks live in a private directory made for this mount and removed when
//!   the cache is dropped, so a later mount never trusts stale files;
//! - file names are a SHA-256 of (bucket, key, ETag, block index): a block of
//!   one object version can never be served for another;
//! - the bytes on disk stay within the configured capacity (least recently
//!   used files go first).

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;
use sha2::{Digest, Sha256};

use super::data::DiskConfig;

/// The disk tier. All methods do blocking file I/O: call them from
/// `spawn_blocking`.
#[derive(Debug)]
pub struct DiskTier {
    dir: PathBuf,
    capacity: u64,
    index: Mutex<Index>,
}

#[derive(Debug)]
struct Index {
    files: LruCache<String, u64>,
    bytes: u64,
}

impl DiskTier {
    /// Makes a private directory under `cfg.dir`.
    pub fn open(cfg: &DiskConfig) -> io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = cfg
            .dir
            .join(format!("s3linkfs-{}-{nanos:08x}", std::process::id()));
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            capacity: cfg.capacity,
            index: Mutex::new(Index {
                files: LruCache::unbounded(),
                bytes: 0,
            }),
        })
    }

    /// The file name of one block of one object version.
    pub fn name(bucket: &str, key: &str, etag: &str, index: u64) -> String {
        let mut h = Sha256::new();
        for part in [bucket.as_bytes(), key.as_bytes(), etag.as_bytes()] {
            h.update(part);
            h.update([0]);
        }
        h.update(index.to_be_bytes());
        hex::encode(h.finalize())
    }

    /// True when the block is on disk.
    pub fn contains(&self, name: &str) -> bool {
        self.index.lock().unwrap().files.contains(name)
    }

    /// Reads a block; `None` when it is not (or no longer) there.
    pub fn load(&self, name: &str) -> Option<Bytes> {
        // Touch the entry so that reads keep a block alive.
        self.index.lock().unwrap().files.get(name)?;
        fs::read(self.dir.join(name)).ok().map(Bytes::from)
    }

    /// Writes a block, evicting the least recently used ones past capacity.
    pub fn store(&self, name: &str, data: &[u8]) -> io::Result<()> {
        if self.contains(name) || data.len() as u64 > self.capacity {
            return Ok(());
        }
        fs::write(self.dir.join(name), data)?;
        let mut doomed = Vec::new();
        {
            let mut idx = self.index.lock().unwrap();
            idx.bytes += data.len() as u64;
            idx.files.put(name.to_string(), data.len() as u64);
            while idx.bytes > self.capacity {
                match idx.files.pop_lru() {
                    Some((n, len)) => {
                        idx.bytes -= len;
                        doomed.push(n);
                    }
                    None => break,
                }
            }
        }
        for n in doomed {
            let _ = fs::remove_file(self.dir.join(n));
        }
        Ok(())
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.index.lock().unwrap().bytes
    }
}

impl Drop for DiskTier {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_loads_and_stays_within_capacity() {
        let tmp = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(&DiskConfig {
            dir: tmp.path().to_path_buf(),
            capacity: 10,
        })
        .unwrap();
        let a = DiskTier::name("b", "k", "\"e\"", 0);
        let b = DiskTier::name("b", "k", "\"e\"", 1);
        assert_ne!(a, b);
        tier.store(&a, b"123456").unwrap();
        assert_eq!(tier.load(&a).as_deref(), Some(&b"123456"[..]));
        tier.store(&b, b"abcdef").unwrap();
        assert!(tier.bytes() <= 10);
        assert!(tier.load(&a).is_none(), "oldest block evicted");
        assert_eq!(tier.load(&b).as_deref(), Some(&b"abcdef"[..]));
    }

    #[test]
    fn private_directory_is_removed_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let tier = DiskTier::open(&DiskConfig {
            dir: tmp.path().to_path_buf(),
            capacity: 100,
        })
        .unwrap();
        tier.store("x", b"1").unwrap();
        drop(tier);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
