//! The filesystem proper: buckets and prefixes as directories, objects as
//! files, with metadata and data caches and virtual extended attributes.
//!
//! Why a layer of its own: everything here is testable without FUSE. Methods
//! take inode numbers and names and return plain structs or [`FsError`]; the
//! fuser adapter in [`crate::fuse`] only converts and replies.
//!
//! Guarantees:
//! - `ls -l` of a directory costs one paginated LIST and no HEAD: sizes,
//!   mtimes and ETags come from the listing;
//! - attributes are served from cache for `metadata_ttl`, missing names for
//!   `negative_ttl`; after that the store is asked again, so remote changes
//!   and deletions show;
//! - a read never mixes two versions of an object (see [`data`]);
//! - no lock is held across a network request.

pub mod data;
pub mod disk;
pub mod inode;
pub mod write;
pub mod xattr;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;

use crate::config::Profile;
use crate::s3::{HeadOutput, ListRequest, ObjectClient, S3Error, S3ErrorCode};
use data::{DataCache, DataCacheConfig, FetchError, ObjectVersion};
use inode::{Ino, InodeTable, Location, Stat};

/// Why a filesystem operation failed. The FUSE adapter maps each variant to
/// one errno, in one place.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FsError {
    /// No such entry.
    #[error("no such file or directory")]
    NotFound,
    /// A directory was expected.
    #[error("not a directory")]
    NotDir,
    /// A file was expected.
    #[error("is a directory")]
    IsDir,
    /// The mount is read-only.
    #[error("read-only mount")]
    ReadOnly,
    /// The extended attribute does not exist (or does not apply here).
    #[error("no such attribute")]
    NoData,
    /// The attribute already exists (XATTR_CREATE).
    #[error("attribute exists")]
    Exists,
    /// A value or name was refused; the reason is for the log.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The operation is refused by policy; the reason is for the log.
    #[error("not permitted: {0}")]
    NotPermitted(String),
    /// The object changed under us; nothing was changed.
    #[error("stale: {0}")]
    Stale(String),
    /// The handle is unknown.
    #[error("bad file handle")]
    BadHandle,
    /// The object store failed the request.
    #[error("{0}")]
    S3(Arc<S3Error>),
    /// Fetching data failed in a way that is not the store's answer.
    #[error("I/O error: {0}")]
    Io(String),
    /// Staging space ran out.
    #[error("no space: {0}")]
    NoSpace(String),
    /// The directory is not empty.
    #[error("directory not empty")]
    NotEmpty,
    /// The object is busy in a way that forbids the change now (EBUSY).
    #[error("busy: {0}")]
    Busy(String),
    /// The change would cross what one rename can do (EXDEV).
    #[error("cannot rename: {0}")]
    CrossDevice(String),
}

impl From<S3Error> for FsError {
    fn from(e: S3Error) -> Self {
        FsError::S3(Arc::new(e))
    }
}

impl From<FetchError> for FsError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::S3(e) => FsError::S3(e),
            other => FsError::Io(other.to_string()),
        }
    }
}

/// What the mount shows at its root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountSource {
    /// Every bucket the credentials can list, each as a directory.
    AllBuckets,
    /// One bucket, or a prefix of it (empty, or ending in `/`).
    Bucket {
        /// Bucket name.
        bucket: String,
        /// Key prefix shown as the root: empty or ending in `/`.
        prefix: String,
    },
}

impl MountSource {
    /// Parses `s3://`, `s3://BUCKET` or `s3://BUCKET/PREFIX/`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{s:?}: a mount source starts with s3://"))?;
        if rest.is_empty() {
            return Ok(MountSource::AllBuckets);
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{s:?}: empty bucket name"));
        }
        let mut prefix = prefix.to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(MountSource::Bucket {
            bucket: bucket.to_string(),
            prefix,
        })
    }

    fn root(&self) -> Location {
        match self {
            MountSource::AllBuckets => Location::Buckets,
            MountSource::Bucket { bucket, prefix } => Location::Dir {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
            },
        }
    }
}

/// Everything the filesystem needs to know, validated.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// Owner shown for every entry.
    pub uid: u32,
    /// Group shown for every entry.
    pub gid: u32,
    /// Permission bits of files.
    pub file_mode: u16,
    /// Permission bits of directories.
    pub dir_mode: u16,
    /// How long attributes and listings are trusted.
    pub metadata_ttl: Duration,
    /// How long a missing name is trusted to stay missing.
    pub negative_ttl: Duration,
    /// Block cache tuning.
    pub cache: DataCacheConfig,
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// Allow download names that name another object in the same directory.
    pub allow_misleading_names: bool,
    /// Objects above this size change headers through a multipart copy.
    pub multipart_copy_threshold: u64,
    /// The profile: presign settings and credentials for links.
    pub profile: Profile,
    /// Write settings.
    pub write: write::WriteConfig,
}

/// The kind of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
}

/// Attributes of an entry, as `stat` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// File or directory.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (also used for atime and ctime).
    pub mtime: SystemTime,
    /// Permission bits.
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A looked-up entry: its attributes and how long the kernel may cache them.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Attributes.
    pub attr: Attr,
    /// Cache lifetime for the kernel.
    pub ttl: Duration,
}

/// One directory entry handed to a readdir callback.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// Inode number.
    pub ino: Ino,
    /// Offset of the *next* entry, for the kernel's next call.
    pub next_offset: u64,
    /// Name.
    pub name: String,
    /// Attributes (also for plain readdir, where only the kind is used).
    pub attr: Attr,
}

/// The answer to an open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Handle for later reads.
    pub fh: u64,
    /// The kernel may keep the pages it cached from an earlier open: the
    /// object's ETag has not changed since.
    pub keep_cache: bool,
}

/// `statfs` figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
}

/// Longest file name Linux accepts, in bytes.
const NAME_MAX: usize = 255;

#[derive(Clone, Debug)]
struct ListEntry {
    name: String,
    is_dir: bool,
    stat: Stat,
}

#[derive(Debug)]
struct Listing {
    fetched: Instant,
    entries: Vec<ListEntry>,
    index: HashMap<String, usize>,
}

impl Listing {
    fn new(mut entries: Vec<ListEntry>, fetched: Instant) -> Self {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Self {
            fetched,
            entries,
            index,
        }
    }

    fn find(&self, name: &str) -> Option<&ListEntry> {
        self.index.get(name).map(|i| &self.entries[*i])
    }

    /// A copy with the entry `name` (if listed) carrying `stat`; same
    /// fetch time, so it expires when the original would have.
    fn with_stat(&self, name: &str, stat: Stat) -> Listing {
        let mut entries = self.entries.clone();
        if let Some(i) = self.index.get(name) {
            entries[*i].stat = stat;
        }
        Listing {
            fetched: self.fetched,
            entries,
            index: self.index.clone(),
        }
    }
}

struct DirHandle {
    ino: Ino,
    listing: Arc<Listing>,
}

/// Sequential-read detection for one open file.
#[derive(Debug)]
struct Readahead {
    /// Where the previous read ended.
    next_offset: u64,
    /// Current prefetch window (0 after a random read).
    window: u64,
    /// Bytes up to here have been requested already.
    requested_until: u64,
}

struct FileHandle {
    ino: Ino,
    version: Arc<ObjectVersion>,
    readahead: Mutex<Readahead>,
}

/// How many directory listings stay cached (each is dropped after the TTL
/// anyway); bounds memory on trees with many directories.
const LISTING_CACHE_DIRS: usize = 256;
/// How many missing names are remembered.
const NEGATIVE_CACHE_NAMES: usize = 4096;
/// How many HEAD answers (for header xattrs) are remembered.
const HEAD_CACHE_OBJECTS: usize = 4096;
/// A read counts as sequential when it starts within this many bytes of where
/// the previous one ended (the kernel issues readahead out of order).
const SEQUENTIAL_SLACK: u64 = 4 * 1024 * 1024;

/// The filesystem. Share it behind an `Arc`; every method takes `&self`.
pub struct Fs {
    client: Arc<dyn ObjectClient>,
    cfg: FsConfig,
    mounted_at: SystemTime,
    nodes: Mutex<InodeTable>,
    listings: Mutex<LruCache<Ino, Arc<Listing>>>,
    negative: Mutex<LruCache<(Ino, String), Instant>>,
    heads: Mutex<LruCache<Ino, (Instant, Arc<HeadOutput>)>>,
    dir_handles: Mutex<HashMap<u64, DirHandle>>,
    file_handles: Mutex<HashMap<u64, Arc<FileHandle>>>,
    write_handles: Mutex<HashMap<u64, Arc<write::WriteHandle>>>,
    staged_bytes: AtomicU64,
    /// Held shared by every release of a write handle while it uploads, so
    /// that unmounting can wait for them (see [`Fs::finish_releases`]).
    releases: tokio::sync::RwLock<()>,
    next_fh: AtomicU64,
    data: Arc<DataCache>,
}

impl Fs {
    /// A filesystem showing `source` through `client`.
    pub fn new(client: Arc<dyn ObjectClient>, source: &MountSource, cfg: FsConfig) -> Self {
        let now = Instant::now();
        let data = DataCache::new(client.clone(), cfg.cache.clone());
        Self {
            client,
            mounted_at: SystemTime::now(),
            nodes: Mutex::new(InodeTable::new(source.root(), now)),
            listings: Mutex::new(LruCache::new(
                LISTING_CACHE_DIRS.try_into().expect("nonzero"),
            )),
            negative: Mutex::new(LruCache::new(
                NEGATIVE_CACHE_NAMES.try_into().expect("nonzero"),
            )),
            heads: Mutex::new(LruCache::new(
                HEAD_CACHE_OBJECTS.try_into().expect("nonzero"),
            )),
            dir_handles: Mutex::new(HashMap::new()),
            file_handles: Mutex::new(HashMap::new()),
            write_handles: Mutex::new(HashMap::new()),
            staged_bytes: AtomicU64::new(0),
            releases: tokio::sync::RwLock::new(()),
            next_fh: AtomicU64::new(1),
            data,
            cfg,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &FsConfig {
        &self.cfg
    }

    /// The object client (for the mount's start-up checks).
    pub fn client(&self) -> &Arc<dyn ObjectClient> {
        &self.client
    }

    /// The data cache (for statistics).
    pub fn data_cache(&self) -> &Arc<DataCache> {
        &self.data
    }

    /// Number of live inodes, the root included.
    pub fn inode_count(&self) -> usize {
        self.nodes.lock().unwrap().len()
    }

    fn attr_of(&self, ino: Ino, location: &Location, stat: &Stat) -> Attr {
        let is_dir = location.is_dir();
        Attr {
            ino,
            kind: if is_dir { Kind::Dir } else { Kind::File },
            size: stat.size,
            mtime: stat.mtime,
            perm: if is_dir {
                self.cfg.dir_mode
            } else {
                self.cfg.file_mode
            },
            uid: self.cfg.uid,
            gid: self.cfg.gid,
        }
    }

    fn entry(&self, ino: Ino, location: &Location, stat: &Stat) -> Entry {
        Entry {
            attr: self.attr_of(ino, location, stat),
            ttl: self.cfg.metadata_ttl,
        }
    }

    fn dir_stat(&self) -> Stat {
        Stat {
            size: 0,
            mtime: self.mounted_at,
            etag: None,
        }
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.cfg.metadata_ttl
    }

    /// A validation time that is already past the TTL: the next use of the
    /// attributes asks the store.
    fn expired_instant(&self) -> Instant {
        let now = Instant::now();
        now.checked_sub(self.cfg.metadata_ttl).unwrap_or(now)
    }

    fn node(&self, ino: Ino) -> Result<inode::Node, FsError> {
        self.nodes
            .lock()
            .unwrap()
            .get(ino)
            .cloned()
            .ok_or(FsError::NotFound)
    }

    /// The location of `ino`, for layers above (xattrs, writes).
    pub fn location(&self, ino: Ino) -> Result<Location, FsError> {
        Ok(self.node(ino)?.location)
    }

    /// Looks `name` up in directory `parent`, taking one kernel reference on
    /// the result.
    pub async fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Entry, FsError> {
        let name = name.to_str().ok_or(FsError::NotFound)?;
        let dir = self.node(parent)?;
        if !dir.location.is_dir() {
            return Err(FsError::NotDir);
        }
        if !valid_name(name) {
            return Err(FsError::NotFound);
        }
        if let Some(pending) = dir
            .location
            .child(name, false)
            .and_then(|l| self.pending_entry(&l))
        {
            if let Some(node) = self.nodes.lock().unwrap().get_mut(pending.attr.ino) {
                node.lookups += 1;
            }
            return Ok(pending);
        }
        let now = Instant::now();
        let (is_dir, stat) = match self.cached_listing(parent) {
            Some(listing) => {
                let e = listing.find(name).ok_or(FsError::NotFound)?;
                (e.is_dir, e.stat.clone())
            }
            None => {
                let key = (parent, name.to_string());
                if let Some(at) = self.negative.lock().unwrap().get(&key)
                    && at.elapsed() < self.cfg.negative_ttl
                {
                    return Err(FsError::NotFound);
                }
                match self.probe(&dir.location, name).await? {
                    Some(found) => found,
                    None => {
                        self.negative.lock().unwrap().put(key, Instant::now());
                        return Err(FsError::NotFound);
                    }
                }
            }
        };
        let location = dir.location.child(name, is_dir).ok_or(FsError::NotDir)?;
        let ino =
            self.nodes
                .lock()
                .unwrap()
                .upsert(parent, name, location.clone(), stat.clone(), 1, now);
        Ok(self.entry(ino, &location, &stat))
    }

    /// Asks the store whether `name` in `dir` is a directory, a file or
    /// nothing. A directory wins over a file of the same name.
    async fn probe(&self, dir: &Location, name: &str) -> Result<Option<(bool, Stat)>, FsError> {
        match dir {
            Location::Buckets => {
                let buckets = self.client.list_buckets().await?;
                Ok(buckets
                    .iter()
                    .any(|b| b.name == name)
                    .then(|| (true, self.dir_stat())))
            }
            Location::Dir { bucket, prefix } => {
                let key = format!("{prefix}{name}");
                let list = ListRequest {
                    bucket: bucket.clone(),
                    prefix: format!("{key}/"),
                    delimiter: Some("/".into()),
                    continuation_token: None,
                    max_keys: Some(1),
                };
                let (head, listed) = tokio::join!(
                    self.client.head_object(bucket, &key),
                    self.client.list_objects(&list)
                );
                let listed = listed?;
                if !listed.objects.is_empty() || !listed.common_prefixes.is_empty() {
                    return Ok(Some((true, self.dir_stat())));
                }
                match head {
                    Ok(h) => Ok(Some((false, stat_of_head(&h)))),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            Location::File { .. } => Err(FsError::NotDir),
        }
    }

    /// Drops `n` kernel references on `ino`.
    pub fn forget(&self, ino: Ino, n: u64) {
        if self.nodes.lock().unwrap().forget(ino, n) {
            self.listings.lock().unwrap().pop(&ino);
            self.heads.lock().unwrap().pop(&ino);
        }
    }

    /// Attributes of `ino`, refreshed from the store once they are older
    /// than the metadata TTL.
    pub async fn getattr(&self, ino: Ino) -> Result<Entry, FsError> {
        let node = self.node(ino)?;
        if let Some(w) = self.writer_for(ino) {
            let stat = Stat {
                size: w.size(),
                ..node.stat
            };
            return Ok(self.entry(ino, &node.location, &stat));
        }
        if node.location.is_dir() || self.fresh(node.validated) {
            return Ok(self.entry(ino, &node.location, &node.stat));
        }
        let stat = self.revalidate(ino, &node.location).await?;
        Ok(self.entry(ino, &node.location, &stat))
    }

    /// HEADs a file, updating its cached attributes; a vanished object
    /// answers NotFound and is dropped from the caches.
    async fn revalidate(&self, ino: Ino, location: &Location) -> Result<Stat, FsError> {
        let Location::File { bucket, key } = location else {
            return Ok(self.dir_stat());
        };
        match self.client.head_object(bucket, key).await {
            Ok(head) => {
                let stat = stat_of_head(&head);
                if let Some(node) = self.nodes.lock().unwrap().get_mut(ino) {
                    node.stat = stat.clone();
                    node.validated = Instant::now();
                }
                self.heads
                    .lock()
                    .unwrap()
                    .put(ino, (Instant::now(), Arc::new(head)));
                Ok(stat)
            }
            Err(e) if e.is_not_found() => {
                self.heads.lock().unwrap().pop(&ino);
                let parent = self.nodes.lock().unwrap().get(ino).map(|n| n.parent);
                if let Some(parent) = parent {
                    self.listings.lock().unwrap().pop(&parent);
                }
                Err(FsError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The object's full HEAD answer, from cache while fresh.
    pub async fn head(&self, ino: Ino) -> Result<Arc<HeadOutput>, FsError> {
        if let Some((at, head)) = self.heads.lock().unwrap().get(&ino)
            && self.fresh(*at)
        {
            return Ok(head.clone());
        }
        let node = self.node(ino)?;
        if node.location.is_dir() {
            return Err(FsError::IsDir);
        }
        self.revalidate(ino, &node.location).await?;
        self.heads
            .lock()
            .unwrap()
            .get(&ino)
            .map(|(_, h)| h.clone())
            .ok_or(FsError::NotFound)
    }

    /// Records a fresh HEAD answer after this mount changed the object.
    pub fn note_changed(&self, ino: Ino, head: HeadOutput) {
        let stat = stat_of_head(&head);
        let mut nodes = self.nodes.lock().unwrap();
        if let Some(node) = nodes.get_mut(ino) {
            node.stat = stat.clone();
            node.validated = Instant::now();
            let (parent, name) = (node.parent, node.name.clone());
            drop(nodes);
            // Keep the directory's listing (it still answers lookups and the
            // download-name check without a request), with this entry updated.
            let mut listings = self.listings.lock().unwrap();
            if let Some(old) = listings.peek(&parent).cloned() {
                listings.put(parent, Arc::new(old.with_stat(&name, stat)));
            }
        } else {
            drop(nodes);
        }
        self.heads
            .lock()
            .unwrap()
            .put(ino, (Instant::now(), Arc::new(head)));
    }

    fn cached_listing(&self, dir: Ino) -> Option<Arc<Listing>> {
        let mut listings = self.listings.lock().unwrap();
        match listings.get(&dir) {
            Some(l) if self.fresh(l.fetched) => Some(l.clone()),
            Some(_) => {
                listings.pop(&dir);
                None
            }
            None => None,
        }
    }

    /// Lists a directory from the store (every page), caching the result.
    async fn fetch_listing(&self, dir: Ino, location: &Location) -> Result<Arc<Listing>, FsError> {
        let fetched = Instant::now();
        let mut entries = Vec::new();
        match location {
            Location::Buckets => {
                for b in self.client.list_buckets().await? {
                    entries.push(ListEntry {
                        name: b.name,
                        is_dir: true,
                        stat: Stat {
                            size: 0,
                            mtime: b.created.unwrap_or(self.mounted_at),
                            etag: None,
                        },
                    });
                }
            }
            Location::Dir { bucket, prefix } => {
                entries = self.list_prefix(bucket, prefix).await?;
            }
            Location::File { .. } => return Err(FsError::NotDir),
        }
        let listing = Arc::new(Listing::new(entries, fetched));
        {
            // Refresh the attributes of children the kernel already holds.
            let mut nodes = self.nodes.lock().unwrap();
            for e in &listing.entries {
                if let Some(child) = location.child(&e.name, e.is_dir) {
                    nodes.refresh(&child, &e.stat, fetched);
                }
            }
        }
        self.listings.lock().unwrap().put(dir, listing.clone());
        Ok(listing)
    }

    async fn list_prefix(&self, bucket: &str, prefix: &str) -> Result<Vec<ListEntry>, FsError> {
        let mut dirs: Vec<ListEntry> = Vec::new();
        let mut files: Vec<ListEntry> = Vec::new();
        let mut skipped: Vec<String> = Vec::new();
        let mut req = ListRequest {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            delimiter: Some("/".into()),
            continuation_token: None,
            max_keys: None,
        };
        loop {
            let page = self.client.list_objects(&req).await?;
            for cp in &page.common_prefixes {
                let name = cp
                    .strip_prefix(prefix)
                    .and_then(|n| n.strip_suffix('/'))
                    .unwrap_or_default();
                if valid_name(name) {
                    dirs.push(ListEntry {
                        name: name.to_string(),
                        is_dir: true,
                        stat: self.dir_stat(),
                    });
                } else {
                    skipped.push(cp.clone());
                }
            }
            for obj in &page.objects {
                let Some(name) = obj.key.strip_prefix(prefix) else {
                    continue;
                };
                if name.is_empty() {
                    continue; // this directory's own marker object
                }
                if valid_name(name) {
                    files.push(ListEntry {
                        name: name.to_string(),
                        is_dir: false,
                        stat: Stat {
                            size: obj.size,
                            mtime: obj.last_modified,
                            etag: Some(obj.etag.clone()),
                        },
                    });
                } else {
                    skipped.push(obj.key.clone());
                }
            }
            match page.next_continuation_token {
                Some(token) => req.continuation_token = Some(token),
                None => break,
            }
        }
        if !skipped.is_empty() {
            tracing::warn!(
                bucket,
                prefix,
                count = skipped.len(),
                example = %skipped[0],
                "skipped keys that cannot be file names (empty segment, . or .., or over 255 bytes)"
            );
        }
        // A directory wins over a file of the same name (the file stays
        // reachable through other tools; see doc/SEMANTICS.md).
        let dir_names: std::collections::HashSet<&str> =
            dirs.iter().map(|d| d.name.as_str()).collect();
        let shadowed = files
            .iter()
            .filter(|f| dir_names.contains(f.name.as_str()))
            .count();
        if shadowed > 0 {
            tracing::info!(
                bucket,
                prefix,
                shadowed,
                "objects hidden by a directory of the same name"
            );
        }
        files.retain(|f| !dir_names.contains(f.name.as_str()));
        dirs.extend(files);
        Ok(dirs)
    }

    /// Opens directory `ino`, taking a snapshot of its listing.
    pub async fn opendir(&self, ino: Ino) -> Result<u64, FsError> {
        let node = self.node(ino)?;
        if !node.location.is_dir() {
            return Err(FsError::NotDir);
        }
        let listing = match self.cached_listing(ino) {
            Some(l) => l,
            None => self.fetch_listing(ino, &node.location).await?,
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.nodes.lock().unwrap().pin(ino);
        self.dir_handles
            .lock()
            .unwrap()
            .insert(fh, DirHandle { ino, listing });
        Ok(fh)
    }

    /// Hands the entries of an open directory from `offset` on to `add`,
    /// until it answers `true` (buffer full). With `plus`, each entry `add`
    /// accepted takes one kernel reference, as READDIRPLUS requires.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        mut add: impl FnMut(DirEntry) -> bool,
    ) -> Result<(), FsError> {
        let (ino, listing) = {
            let handles = self.dir_handles.lock().unwrap();
            let h = handles.get(&fh).ok_or(FsError::BadHandle)?;
            (h.ino, h.listing.clone())
        };
        let mut nodes = self.nodes.lock().unwrap();
        let me = nodes.get(ino).cloned().ok_or(FsError::NotFound)?;
        let parent = nodes.get(me.parent).cloned().unwrap_or_else(|| me.clone());
        let dots = [(".", ino, &me), ("..", me.parent, &parent)];
        let total = 2 + listing.entries.len() as u64;
        for i in offset..total {
            let accepted;
            if i < 2 {
                let (name, dino, node) = dots[i as usize];
                let full = add(DirEntry {
                    ino: dino,
                    next_offset: i + 1,
                    name: name.to_string(),
                    attr: self.attr_of(dino, &node.location, &node.stat),
                });
                accepted = !full;
            } else {
                let e = &listing.entries[(i - 2) as usize];
                let Some(location) = me.location.child(&e.name, e.is_dir) else {
                    continue;
                };
                // Take the reference first so the number is settled, and give
                // it back if the kernel's buffer had no room.
                let cino = nodes.upsert(
                    ino,
                    &e.name,
                    location.clone(),
                    e.stat.clone(),
                    1,
                    listing.fetched,
                );
                let full = add(DirEntry {
                    ino: cino,
                    next_offset: i + 1,
                    name: e.name.clone(),
                    attr: self.attr_of(cino, &location, &e.stat),
                });
                accepted = !full;
                if !(accepted && plus) {
                    nodes.forget(cino, 1);
                }
            }
            if !accepted {
                break;
            }
        }
        Ok(())
    }

    /// Closes a directory handle.
    pub fn releasedir(&self, fh: u64) {
        if let Some(h) = self.dir_handles.lock().unwrap().remove(&fh) {
            self.nodes.lock().unwrap().unpin(h.ino);
        }
    }

    /// Opens file `ino` for process `pid` (0 when unknown). With `write`,
    /// the file is staged for writing (see [`write`]); `truncate` starts it
    /// empty.
    pub async fn open(
        &self,
        ino: Ino,
        write: bool,
        truncate: bool,
        pid: u32,
    ) -> Result<Opened, FsError> {
        let node = self.node(ino)?;
        let Location::File { bucket, key } = &node.location else {
            return Err(FsError::IsDir);
        };
        if write || truncate {
            return self.open_write(ino, truncate, pid).await;
        }
        let stat = if self.fresh(node.validated) {
            node.stat.clone()
        } else {
            self.revalidate(ino, &node.location).await?
        };
        let etag = stat.etag.clone().unwrap_or_default();
        let version = Arc::new(ObjectVersion {
            bucket: bucket.as_str().into(),
            key: key.as_str().into(),
            etag: etag.as_str().into(),
            size: stat.size,
        });
        let keep_cache = {
            let mut nodes = self.nodes.lock().unwrap();
            nodes.pin(ino);
            let node = nodes.get_mut(ino).ok_or(FsError::NotFound)?;
            let same = node.last_open_etag.as_deref() == Some(etag.as_str());
            node.last_open_etag = Some(etag);
            same
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.file_handles.lock().unwrap().insert(
            fh,
            Arc::new(FileHandle {
                ino,
                version,
                readahead: Mutex::new(Readahead {
                    next_offset: 0,
                    window: 0,
                    requested_until: 0,
                }),
            }),
        );
        Ok(Opened { fh, keep_cache })
    }

    /// Reads up to `size` bytes at `offset` from an open file.
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> Result<bytes::Bytes, FsError> {
        let writer = self.write_handles.lock().unwrap().get(&fh).cloned();
        if let Some(w) = writer {
            return self.read_writer(&w, offset, size).await;
        }
        let handle = self.read_handle(fh)?;
        self.start_prefetch(&handle, offset, size);
        self.read_planned(&handle, offset, size).await
    }

    /// The fast path of [`Self::read`]: answers at once when every block
    /// the read needs is cached (starting the same prefetch), else `None`,
    /// and the caller continues with [`Self::read_rest`]. Must run inside
    /// the tokio runtime.
    pub fn read_now(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Option<Result<bytes::Bytes, FsError>> {
        if self.write_handles.lock().unwrap().contains_key(&fh) {
            return None;
        }
        let handle = match self.read_handle(fh) {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        self.start_prefetch(&handle, offset, size);
        self.data
            .try_read(&handle.version, offset, u64::from(size))
            .map(Ok)
    }

    /// The slow path after [`Self::read_now`] answered `None`: waits for the
    /// blocks (the prefetch was already started).
    pub async fn read_rest(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<bytes::Bytes, FsError> {
        let writer = self.write_handles.lock().unwrap().get(&fh).cloned();
        if let Some(w) = writer {
            return self.read_writer(&w, offset, size).await;
        }
        let handle = self.read_handle(fh)?;
        self.read_planned(&handle, offset, size).await
    }

    fn read_handle(&self, fh: u64) -> Result<Arc<FileHandle>, FsError> {
        self.file_handles
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    fn start_prefetch(&self, handle: &FileHandle, offset: u64, size: u32) {
        let plan = self.plan_prefetch(
            &mut handle.readahead.lock().unwrap(),
            offset,
            u64::from(size),
        );
        if let Some(range) = plan {
            self.data.prefetch(&handle.version, range);
        }
    }

    async fn read_planned(
        &self,
        handle: &FileHandle,
        offset: u64,
        size: u32,
    ) -> Result<bytes::Bytes, FsError> {
        self.data
            .read(&handle.version, offset, u64::from(size))
            .await
            .map_err(|e| {
                if let FetchError::S3(s3) = &e
                    && s3.code() == Some(&S3ErrorCode::PreconditionFailed)
                {
                    return FsError::Stale(format!(
                        "{} changed in the store while open",
                        handle.version.key
                    ));
                }
                FsError::from(e)
            })
    }

    /// Decides what to fetch ahead of a read at `offset`. Sequential reads
    /// grow the window (doubling, from one part up to [`Self::max_window`])
    /// and top it up in large steps once half of it has been consumed, so
    /// GETs stay part-sized; a random read fetches only what it needs.
    fn plan_prefetch(&self, ra: &mut Readahead, offset: u64, len: u64) -> Option<Range<u64>> {
        let end = offset + len;
        let sequential = offset <= ra.next_offset.saturating_add(SEQUENTIAL_SLACK)
            && offset.saturating_add(SEQUENTIAL_SLACK) >= ra.next_offset;
        if !sequential {
            *ra = Readahead {
                next_offset: end,
                window: 0,
                requested_until: 0,
            };
            return None;
        }
        let part = self.cfg.cache.part_size;
        ra.next_offset = ra.next_offset.max(end);
        // Not clamp(): a small cache makes the largest window smaller than a part.
        ra.window = (ra.window * 2).max(part).min(self.max_window());
        if ra.requested_until >= end + ra.window / 2 {
            return None;
        }
        let start = ra.requested_until.max(end);
        let stop = (end + ra.window).div_ceil(part) * part;
        ra.requested_until = stop;
        Some(start..stop)
    }

    /// The largest prefetch window: a quarter of the cache, so one reader
    /// cannot evict what it is about to read, and at most 128 MiB.
    fn max_window(&self) -> u64 {
        (self.cfg.cache.capacity / 4)
            .min(128 * 1024 * 1024)
            .max(self.data.block_size())
    }

    /// Closes a file handle; a dirty write handle uploads first.
    pub async fn release(&self, fh: u64) {
        let reader = self.file_handles.lock().unwrap().remove(&fh);
        match reader {
            Some(h) => self.nodes.lock().unwrap().unpin(h.ino),
            None => self.release_writer(fh).await,
        }
    }

    /// Filesystem figures for `df`: object stores have no fixed capacity, so
    /// a large constant is shown as free.
    pub fn statfs(&self) -> StatFs {
        const BSIZE: u32 = 4096;
        // 1 PiB in 4 KiB blocks.
        const BLOCKS: u64 = (1u64 << 50) / BSIZE as u64;
        StatFs {
            blocks: BLOCKS,
            bfree: BLOCKS,
            bavail: BLOCKS,
            files: 1 << 32,
            ffree: 1 << 32,
            bsize: BSIZE,
            namelen: NAME_MAX as u32,
        }
    }
}

fn stat_of_head(h: &HeadOutput) -> Stat {
    Stat {
        size: h.size,
        mtime: h.last_modified,
        etag: Some(h.etag.clone()),
    }
}

/// True when `name` can be a file name: not empty, not `.` or `..`, no `/`
/// or NUL, and at most 255 bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= NAME_MAX
        && !name.contains('/')
        && !name.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_sources() {
        assert_eq!(MountSource::parse("s3://"), Ok(MountSource::AllBuckets));
        assert_eq!(
            MountSource::parse("s3://b"),
            Ok(MountSource::Bucket {
                bucket: "b".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            MountSource::parse("s3://b/p/q"),
            Ok(MountSource::Bucket {
                bucket: "b".into(),
                prefix: "p/q/".into()
            })
        );
        assert!(MountSource::parse("b/p").is_err());
        assert!(MountSource::parse("s3:///p").is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("a b+c%"));
        assert!(!valid_name(""));
        assert!(!valid_name("."));
        assert!(!valid_name(".."));
        assert!(!valid_name(&"x".repeat(256)));
        assert!(valid_name(&"x".repeat(255)));
    }
}
