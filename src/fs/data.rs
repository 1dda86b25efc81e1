//! The read-through data cache and its fetcher.
//!
//! Why: S3 answers in tens of milliseconds where a page fault wants
//! microseconds. Reads are served from fixed-size blocks kept in an LRU;
//! missing blocks are fetched with ranged GETs, large runs split into
//! parallel parts, and each block is handed to its readers as soon as its
//! bytes have arrived rather than when the whole part has.
//!
//! Guarantees:
//! - blocks are keyed by (bucket, key, ETag, index), and every GET carries
//!   `If-Match` with that ETag, so a read never mixes two versions of an object;
//! - the cache never holds more than its capacity in bytes (blocks being
//!   fetched are bounded separately, by the number of parallel requests);
//! - a block is fetched at most once at a time: concurrent readers of the same
//!   block wait for the same request;
//! - a failed fetch fails only the readers of its blocks, and is forgotten,
//!   so the next read tries again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use lru::LruCache;
use tokio::sync::{Semaphore, watch};

use super::disk::DiskTier;
use crate::s3::{GetRequest, ObjectClient, S3Error};

/// One immutable version of an object: what a cached block belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectVersion {
    /// Bucket name.
    pub bucket: Arc<str>,
    /// Object key.
    pub key: Arc<str>,
    /// ETag, with quotes.
    pub etag: Arc<str>,
    /// Size in bytes.
    pub size: u64,
}

/// Tuning of the data cache.
#[derive(Clone, Debug)]
pub struct DataCacheConfig {
    /// Bytes per cached block.
    pub block_size: u64,
    /// Most bytes the cache holds.
    pub capacity: u64,
    /// Bytes per GET when fetching a run of blocks.
    pub part_size: u64,
    /// Most GETs in flight at once for this cache.
    pub max_parallel: usize,
    /// Optional on-disk tier: blocks evicted from memory stay here.
    pub disk: Option<DiskConfig>,
}

/// The on-disk tier's settings.
#[derive(Clone, Debug)]
pub struct DiskConfig {
    /// Directory to keep blocks in; a private subdirectory is made per mount
    /// and removed at unmount.
    pub dir: std::path::PathBuf,
    /// Most bytes kept on disk.
    pub capacity: u64,
}

impl Default for DataCacheConfig {
    fn default() -> Self {
        Self {
            // 256 KiB: small enough that a random 4 KiB read costs one short
            // GET, large enough that a 1 GiB file is only 4096 blocks.
            block_size: 256 * 1024,
            // 256 MiB: room for several large files' prefetch windows without
            // making the mount the biggest process on a laptop.
            capacity: 256 * 1024 * 1024,
            // 8 MiB parts: the size at which one GET reaches full speed on
            // common servers, and S3's usual multipart part size.
            part_size: 8 * 1024 * 1024,
            // 16 parallel GETs keep a fast link busy; more mostly queues.
            max_parallel: 16,
            // No disk tier unless asked for: it writes every block it caches.
            disk: None,
        }
    }
}

/// Why a block could not be had. Cloneable, because one failed GET fails
/// every reader waiting on its blocks.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FetchError {
    /// The store refused or failed the GET.
    #[error("{0}")]
    S3(Arc<S3Error>),
    /// The body ended before the promised range did.
    #[error("short body: got {got} of {want} bytes")]
    ShortBody {
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        want: u64,
    },
    /// The fetching task went away without an answer.
    #[error("fetch abandoned")]
    Abandoned,
}

type BlockResult = Result<Bytes, FetchError>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BlockKey {
    version: Arc<ObjectVersion>,
    index: u64,
}

struct State {
    blocks: LruCache<BlockKey, Bytes>,
    bytes: u64,
    inflight: HashMap<BlockKey, watch::Receiver<Option<BlockResult>>>,
}

/// Counters, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Blocks served from memory.
    pub hits: u64,
    /// Blocks that had to be fetched (or waited for).
    pub misses: u64,
    /// Bytes currently cached.
    pub bytes: u64,
}

/// The block cache. Cheap to share behind an `Arc`.
pub struct DataCache {
    client: Arc<dyn ObjectClient>,
    cfg: DataCacheConfig,
    state: Mutex<State>,
    permits: Arc<Semaphore>,
    stats: Mutex<CacheStats>,
    disk: Option<Arc<DiskTier>>,
}

impl DataCache {
    /// An empty cache reading through `client`. A disk tier that cannot be
    /// made is reported and left out: the mount still works from memory.
    pub fn new(client: Arc<dyn ObjectClient>, cfg: DataCacheConfig) -> Arc<Self> {
        let disk = cfg.disk.as_ref().and_then(|d| match DiskTier::open(d) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                tracing::warn!(dir = %d.dir.display(), error = %e, "disk cache disabled");
                None
            }
        });
        Arc::new(Self {
            disk,
            client,
            permits: Arc::new(Semaphore::new(cfg.max_parallel.max(1))),
            cfg,
            state: Mutex::new(State {
                blocks: LruCache::unbounded(),
                bytes: 0,
                inflight: HashMap::new(),
            }),
            stats: Mutex::new(CacheStats::default()),
        })
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.cfg.block_size
    }

    /// The configuration in force.
    pub fn config(&self) -> &DataCacheConfig {
        &self.cfg
    }

    /// Hit and miss counters, and the bytes held.
    pub fn stats(&self) -> CacheStats {
        let mut s = *self.stats.lock().unwrap();
        s.bytes = self.state.lock().unwrap().bytes;
        s
    }

    /// Reads `len` bytes at `offset` of `version`, fetching what is missing,
    /// and starts fetching the blocks up to `prefetch_end` (exclusive byte
    /// offset) in the background. Returns fewer bytes only at end of file.
    pub async fn read(
        self: &Arc<Self>,
        version: &Arc<ObjectVersion>,
        offset: u64,
        len: u64,
        prefetch_end: u64,
    ) -> Result<Bytes, FetchError> {
        let end = offset.saturating_add(len).min(version.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let bs = self.cfg.block_size;
        let first = offset / bs;
        let last = (end - 1) / bs;
        let prefetch_last = prefetch_end.min(version.size).saturating_sub(1) / bs;
        self.request(version, first, last.max(prefetch_last));

        if first == last {
            let block = self.block(version, first).await?;
            let start = (offset - first * bs) as usize;
            let stop = (end - first * bs) as usize;
            return Ok(block.slice(start..stop.min(block.len())));
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for index in first..=last {
            let block = self.block(version, index).await?;
            let block_start = index * bs;
            let from = offset.saturating_sub(block_start) as usize;
            let to = ((end - block_start) as usize).min(block.len());
            out.extend_from_slice(&block[from..to]);
        }
        Ok(out.freeze())
    }

    /// Drops every cached block of `version` (after a remote change).
    pub fn evict_version(&self, version: &ObjectVersion) {
        let mut st = self.state.lock().unwrap();
        let doomed: Vec<BlockKey> = st
            .blocks
            .iter()
            .filter(|(k, _)| *k.version == *version)
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            if let Some(b) = st.blocks.pop(&k) {
                st.bytes -= b.len() as u64;
            }
        }
    }

    /// Moves the cached blocks of (`bucket`, `key`, `old_etag`) to
    /// `new_etag`: for a change that kept the bytes and only changed the
    /// ETag, such as an in-place header change.
    pub fn rekey(&self, bucket: &str, key: &str, old_etag: &str, new_etag: &str, size: u64) {
        if old_etag == new_etag {
            return;
        }
        let new_version = Arc::new(ObjectVersion {
            bucket: bucket.into(),
            key: key.into(),
            etag: new_etag.into(),
            size,
        });
        let mut st = self.state.lock().unwrap();
        let moving: Vec<BlockKey> = st
            .blocks
            .iter()
            .filter(|(k, _)| {
                &*k.version.bucket == bucket
                    && &*k.version.key == key
                    && &*k.version.etag == old_etag
                    && k.version.size == size
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in moving {
            if let Some(b) = st.blocks.pop(&k) {
                let moved = BlockKey {
                    version: new_version.clone(),
                    index: k.index,
                };
                st.blocks.put(moved, b);
            }
        }
    }

    /// Waits for block `index`, fetching it if nobody is.
    async fn block(
        self: &Arc<Self>,
        version: &Arc<ObjectVersion>,
        index: u64,
    ) -> Result<Bytes, FetchError> {
        let key = BlockKey {
            version: version.clone(),
            index,
        };
        // A block can be evicted between being requested and being waited
        // for when the cache is small; a few rounds settle it.
        for _ in 0..4 {
            let waiting = {
                let mut st = self.state.lock().unwrap();
                if let Some(b) = st.blocks.get(&key) {
                    self.stats.lock().unwrap().hits += 1;
                    return Ok(b.clone());
                }
                st.inflight.get(&key).cloned()
            };
            self.stats.lock().unwrap().misses += 1;
            let Some(mut rx) = waiting else {
                self.request(version, index, index);
                continue;
            };
            let answer = match rx.wait_for(Option::is_some).await {
                Ok(v) => v.clone(),
                Err(_) => Some(Err(FetchError::Abandoned)),
            };
            if let Some(result) = answer {
                return result;
            }
        }
        Err(FetchError::Abandoned)
    }

    /// Starts GETs for every block in `first..=last` that is neither cached
    /// nor being fetched, one GET per run of at most `part_size` bytes.
    fn request(self: &Arc<Self>, version: &Arc<ObjectVersion>, first: u64, last: u64) {
        let per_part = (self.cfg.part_size / self.cfg.block_size).max(1);
        let mut runs: Vec<Vec<(u64, watch::Sender<Option<BlockResult>>)>> = Vec::new();
        let mut from_disk = Vec::new();
        {
            let mut st = self.state.lock().unwrap();
            let mut current: Vec<(u64, watch::Sender<Option<BlockResult>>)> = Vec::new();
            for index in first..=last {
                let key = BlockKey {
                    version: version.clone(),
                    index,
                };
                let have = st.blocks.contains(&key) || st.inflight.contains_key(&key);
                if have || current.len() as u64 == per_part {
                    if !current.is_empty() {
                        runs.push(std::mem::take(&mut current));
                    }
                    if have {
                        continue;
                    }
                }
                let (tx, rx) = watch::channel(None);
                st.inflight.insert(key, rx);
                if let Some(disk) = &self.disk {
                    let name = disk_name(version, index);
                    if disk.contains(&name) {
                        if !current.is_empty() {
                            runs.push(std::mem::take(&mut current));
                        }
                        from_disk.push((index, name, tx));
                        continue;
                    }
                }
                current.push((index, tx));
            }
            if !current.is_empty() {
                runs.push(current);
            }
        }
        for run in runs {
            let this = self.clone();
            let version = version.clone();
            tokio::spawn(async move { this.fetch_run(version, run).await });
        }
        for (index, name, tx) in from_disk {
            let this = self.clone();
            let version = version.clone();
            tokio::spawn(async move { this.load_from_disk(version, index, name, tx).await });
        }
    }

    /// Serves one block from the disk tier, falling back to a GET when the
    /// file has gone (evicted meanwhile, or unreadable).
    async fn load_from_disk(
        self: Arc<Self>,
        version: Arc<ObjectVersion>,
        index: u64,
        name: String,
        tx: watch::Sender<Option<BlockResult>>,
    ) {
        let disk = self.disk.clone().expect("disk tier present");
        let loaded = tokio::task::spawn_blocking(move || disk.load(&name))
            .await
            .ok()
            .flatten();
        match loaded {
            Some(block) => self.complete(&version, index, Ok(block), tx),
            None => self.fetch_run(version, vec![(index, tx)]).await,
        }
    }

    /// One ranged GET covering a run of consecutive blocks, handing each
    /// block out as soon as it is complete.
    async fn fetch_run(
        self: Arc<Self>,
        version: Arc<ObjectVersion>,
        run: Vec<(u64, watch::Sender<Option<BlockResult>>)>,
    ) {
        let bs = self.cfg.block_size;
        let start = run[0].0 * bs;
        let end = ((run[run.len() - 1].0 + 1) * bs).min(version.size);
        let mut pending = run.into_iter();
        let result = async {
            let _permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| FetchError::Abandoned)?;
            let req = GetRequest {
                range: Some(start..end),
                if_match: Some(version.etag.to_string()),
            };
            let out = self
                .client
                .get_object(&version.bucket, &version.key, &req)
                .await
                .map_err(|e| FetchError::S3(Arc::new(e)))?;
            let mut body = out.body;
            // Each block is filled into its own exact-size allocation, so a
            // cached block never pins a larger network buffer.
            let block_len = |at: u64| bs.min(end - at) as usize;
            let mut next_block = start;
            let mut cur = BytesMut::with_capacity(block_len(start));
            let mut got = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| FetchError::S3(Arc::new(e)))?;
                got += chunk.len() as u64;
                let mut rest = &chunk[..];
                while !rest.is_empty() && next_block < end {
                    let want = block_len(next_block);
                    let take = (want - cur.len()).min(rest.len());
                    cur.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if cur.len() == want {
                        let block = std::mem::take(&mut cur).freeze();
                        if let Some((index, tx)) = pending.next() {
                            self.complete(&version, index, Ok(block), tx);
                        }
                        next_block += want as u64;
                        if next_block < end {
                            cur = BytesMut::with_capacity(block_len(next_block));
                        }
                    }
                }
            }
            if next_block < end {
                return Err(FetchError::ShortBody {
                    got,
                    want: end - start,
                });
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            for (index, tx) in pending {
                self.complete(&version, index, Err(e.clone()), tx);
            }
        }
    }

    /// Publishes a block's outcome: caches a success, forgets the in-flight
    /// entry either way, and wakes the waiters.
    fn complete(
        &self,
        version: &Arc<ObjectVersion>,
        index: u64,
        result: BlockResult,
        tx: watch::Sender<Option<BlockResult>>,
    ) {
        let key = BlockKey {
            version: version.clone(),
            index,
        };
        {
            let mut st = self.state.lock().unwrap();
            st.inflight.remove(&key);
            if let Ok(block) = &result {
                if let Some(disk) = &self.disk {
                    let disk = disk.clone();
                    let name = disk_name(version, index);
                    let block = block.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(e) = disk.store(&name, &block) {
                            tracing::debug!(error = %e, "disk cache write failed");
                        }
                    });
                }
                st.bytes += block.len() as u64;
                if let Some(old) = st.blocks.put(key, block.clone()) {
                    st.bytes -= old.len() as u64;
                }
                while st.bytes > self.cfg.capacity {
                    match st.blocks.pop_lru() {
                        Some((_, b)) => st.bytes -= b.len() as u64,
                        None => break,
                    }
                }
            }
        }
        let _ = tx.send(Some(result));
    }
}

fn disk_name(version: &ObjectVersion, index: u64) -> String {
    DiskTier::name(&version.bucket, &version.key, &version.etag, index)
}
