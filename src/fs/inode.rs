//! The inode table: inode numbers for buckets, prefixes and objects.
//!
//! Why: the kernel names everything by inode number, S3 by bucket and key.
//! This table is the only place that maps one onto the other.
//!
//! Guarantees:
//! - an inode number is a hash of the entry's location, probed past
//!   collisions, so the same path gets the same number for the life of the
//!   mount even after the kernel forgot it (and usually across mounts);
//! - an entry lives only while the kernel holds a lookup reference or a file
//!   handle is open on it, so memory stays bounded on buckets with millions of
//!   keys;
//! - the root (inode 1) is never forgotten.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

/// An inode number.
pub type Ino = u64;

/// The root directory's inode number, fixed by FUSE.
pub const ROOT_INO: Ino = 1;

/// Where an inode lives in the object store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// The root of a mount that shows every bucket.
    Buckets,
    /// A directory: a bucket root (`prefix` empty) or a prefix ending in `/`.
    Dir {
        /// Bucket name.
        bucket: String,
        /// Key prefix: empty, or ending in `/`.
        prefix: String,
    },
    /// A file: one object.
    File {
        /// Bucket name.
        bucket: String,
        /// Full object key.
        key: String,
    },
}

impl Location {
    /// True for the two directory kinds.
    pub fn is_dir(&self) -> bool {
        !matches!(self, Location::File { .. })
    }

    /// The location of a child called `name`, when `self` is a directory.
    pub fn child(&self, name: &str, is_dir: bool) -> Option<Location> {
        match self {
            Location::Buckets => is_dir.then(|| Location::Dir {
                bucket: name.to_string(),
                prefix: String::new(),
            }),
            Location::Dir { bucket, prefix } => Some(if is_dir {
                Location::Dir {
                    bucket: bucket.clone(),
                    prefix: format!("{prefix}{name}/"),
                }
            } else {
                Location::File {
                    bucket: bucket.clone(),
                    key: format!("{prefix}{name}"),
                }
            }),
            Location::File { .. } => None,
        }
    }

    /// FNV-1a over a tagged rendering of the location: cheap and stable.
    fn hash(&self) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h = OFFSET;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(PRIME);
            }
        };
        match self {
            Location::Buckets => feed(b"B"),
            Location::Dir { bucket, prefix } => {
                feed(b"D");
                feed(bucket.as_bytes());
                feed(b"\0");
                feed(prefix.as_bytes());
            }
            Location::File { bucket, key } => {
                feed(b"F");
                feed(bucket.as_bytes());
                feed(b"\0");
                feed(key.as_bytes());
            }
        }
        h
    }
}

/// What the store last told us about an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time.
    pub mtime: SystemTime,
    /// ETag with quotes, for files.
    pub etag: Option<String>,
}

/// One inode.
#[derive(Clone, Debug)]
pub struct Node {
    /// Where it lives.
    pub location: Location,
    /// Parent directory's inode (the root is its own parent).
    pub parent: Ino,
    /// Name within the parent.
    pub name: String,
    /// Last known attributes.
    pub stat: Stat,
    /// When `stat` was last confirmed by the store.
    pub validated: Instant,
    /// Lookup references the kernel holds.
    pub lookups: u64,
    /// Open file or directory handles.
    pub open_handles: u32,
    /// ETag seen by the last open, to decide whether the kernel may keep its
    /// page cache.
    pub last_open_etag: Option<String>,
}

/// The table itself. Not thread-safe; the fs wraps it in a mutex.
#[derive(Debug)]
pub struct InodeTable {
    nodes: HashMap<Ino, Node>,
    /// Inodes moved by a rename, by their new location: their numbers are
    /// not the hash of where they now live, and lookups must find them.
    moved: HashMap<Location, Ino>,
}

impl InodeTable {
    /// A table holding only the root.
    pub fn new(root: Location, now: Instant) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_INO,
            Node {
                location: root,
                parent: ROOT_INO,
                name: String::new(),
                stat: Stat {
                    size: 0,
                    mtime: SystemTime::now(),
                    etag: None,
                },
                validated: now,
                lookups: 1,
                open_handles: 0,
                last_open_etag: None,
            },
        );
        Self {
            nodes,
            moved: HashMap::new(),
        }
    }

    /// The node for `ino`, if the kernel still holds it.
    pub fn get(&self, ino: Ino) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// Mutable access to a node.
    pub fn get_mut(&mut self, ino: Ino) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    /// Number of live inodes (the root included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false in practice: the root is never removed.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The inode number `location` has or would get.
    fn number_for(&self, location: &Location) -> Ino {
        if let Some(&ino) = self.moved.get(location)
            && self
                .nodes
                .get(&ino)
                .is_some_and(|n| n.location == *location)
        {
            return ino;
        }
        let mut ino = location.hash();
        loop {
            if ino <= ROOT_INO {
                ino = ROOT_INO + 1;
            }
            match self.nodes.get(&ino) {
                Some(node) if node.location != *location => ino = ino.wrapping_add(1),
                _ => return ino,
            }
        }
    }

    /// Inserts or refreshes the entry for `location` under `parent`, taking
    /// `lookups` new kernel references, and returns its inode number.
    pub fn upsert(
        &mut self,
        parent: Ino,
        name: &str,
        location: Location,
        stat: Stat,
        lookups: u64,
        now: Instant,
    ) -> Ino {
        let ino = self.number_for(&location);
        match self.nodes.get_mut(&ino) {
            Some(node) => {
                node.stat = stat;
                node.validated = now;
                node.lookups += lookups;
                node.parent = parent;
            }
            None => {
                self.nodes.insert(
                    ino,
                    Node {
                        location,
                        parent,
                        name: name.to_string(),
                        stat,
                        validated: now,
                        lookups,
                        open_handles: 0,
                        last_open_etag: None,
                    },
                );
            }
        }
        ino
    }

    /// Updates the attributes of `location` if the kernel holds it; never
    /// creates an entry.
    pub fn refresh(&mut self, location: &Location, stat: &Stat, now: Instant) {
        let ino = self.number_for(location);
        if let Some(node) = self.nodes.get_mut(&ino)
            && node.location == *location
        {
            node.stat = stat.clone();
            node.validated = now;
        }
    }

    /// Drops `n` kernel references; removes the node when none remain and no
    /// handle is open. Returns true if the node was removed.
    pub fn forget(&mut self, ino: Ino, n: u64) -> bool {
        if ino == ROOT_INO {
            return false;
        }
        let Some(node) = self.nodes.get_mut(&ino) else {
            return false;
        };
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups == 0 && node.open_handles == 0 {
            self.remove(ino);
            return true;
        }
        false
    }

    /// Points `ino` at its new place after a rename (and, for a directory,
    /// every entry under it): the kernel keeps using the moved inodes under
    /// their new names. Their numbers stay as they were, so a later lookup
    /// of the new path finds them through `moved`; the old path gets a fresh
    /// number.
    pub fn relocate(&mut self, ino: Ino, parent: Ino, name: &str, to: Location) {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        let from = std::mem::replace(&mut node.location, to.clone());
        node.parent = parent;
        node.name = name.to_string();
        self.moved.remove(&from);
        self.moved.insert(to.clone(), ino);
        let (
            Location::Dir {
                bucket,
                prefix: old,
            },
            Location::Dir { prefix: new, .. },
        ) = (&from, &to)
        else {
            return;
        };
        for (&i, n) in self.nodes.iter_mut() {
            let before = n.location.clone();
            let (Location::Dir {
                bucket: b,
                prefix: p,
            }
            | Location::File { bucket: b, key: p }) = &mut n.location
            else {
                continue;
            };
            if b == bucket && p.len() > old.len() && p.starts_with(old.as_str()) {
                *p = format!("{new}{}", &p[old.len()..]);
                self.moved.remove(&before);
                self.moved.insert(n.location.clone(), i);
            }
        }
    }

    fn remove(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.remove(&ino)
            && self.moved.get(&node.location) == Some(&ino)
        {
            self.moved.remove(&node.location);
        }
    }

    /// Records a handle opened on `ino`.
    pub fn pin(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.open_handles += 1;
        }
    }

    /// Records a handle closed on `ino`, removing the node if the kernel had
    /// already forgotten it.
    pub fn unpin(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.open_handles = node.open_handles.saturating_sub(1);
            if ino != ROOT_INO && node.lookups == 0 && node.open_handles == 0 {
                self.remove(ino);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat() -> Stat {
        Stat {
            size: 1,
            mtime: SystemTime::UNIX_EPOCH,
            etag: Some("\"e\"".into()),
        }
    }

    fn file(key: &str) -> Location {
        Location::File {
            bucket: "b".into(),
            key: key.into(),
        }
    }

    #[test]
    fn same_location_gets_same_number_after_forget() {
        let now = Instant::now();
        let mut t = InodeTable::new(Location::Buckets, now);
        let a = t.upsert(ROOT_INO, "a", file("a"), stat(), 1, now);
        assert!(t.forget(a, 1));
        assert!(t.get(a).is_none());
        let again = t.upsert(ROOT_INO, "a", file("a"), stat(), 1, now);
        assert_eq!(a, again);
    }

    #[test]
    fn file_and_dir_of_same_name_differ() {
        let now = Instant::now();
        let mut t = InodeTable::new(Location::Buckets, now);
        let f = t.upsert(ROOT_INO, "a", file("a"), stat(), 1, now);
        let d = t.upsert(
            ROOT_INO,
            "a",
            Location::Dir {
                bucket: "b".into(),
                prefix: "a/".into(),
            },
            stat(),
            1,
            now,
        );
        assert_ne!(f, d);
    }

    #[test]
    fn open_handle_keeps_node_alive_until_closed() {
        let now = Instant::now();
        let mut t = InodeTable::new(Location::Buckets, now);
        let a = t.upsert(ROOT_INO, "a", file("a"), stat(), 2, now);
        t.pin(a);
        assert!(!t.forget(a, 2));
        assert!(t.get(a).is_some());
        t.unpin(a);
        assert!(t.get(a).is_none());
    }

    #[test]
    fn root_is_never_forgotten() {
        let now = Instant::now();
        let mut t = InodeTable::new(Location::Buckets, now);
        assert!(!t.forget(ROOT_INO, 10));
        assert!(t.get(ROOT_INO).is_some());
    }

    #[test]
    fn memory_is_bounded_by_live_references() {
        let now = Instant::now();
        let mut t = InodeTable::new(Location::Buckets, now);
        for i in 0..10_000 {
            let name = format!("k{i}");
            let ino = t.upsert(ROOT_INO, &name, file(&name), stat(), 1, now);
            t.forget(ino, 1);
        }
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn relocate_moves_a_directory_and_what_is_below_it() {
        let now = Instant::now();
        let mut t = InodeTable::new(Location::Buckets, now);
        let dir = |p: &str| Location::Dir {
            bucket: "b".into(),
            prefix: p.into(),
        };
        let d = t.upsert(ROOT_INO, "a", dir("a/"), stat(), 1, now);
        let f = t.upsert(d, "x", file("a/x"), stat(), 1, now);
        let other = t.upsert(ROOT_INO, "ab", file("ab"), stat(), 1, now);
        t.relocate(d, ROOT_INO, "z", dir("z/"));
        assert_eq!(t.get(d).unwrap().location, dir("z/"));
        assert_eq!(t.get(f).unwrap().location, file("z/x"));
        assert_eq!(t.get(other).unwrap().location, file("ab"));
    }

    #[test]
    fn child_locations() {
        let root = Location::Dir {
            bucket: "b".into(),
            prefix: "p/".into(),
        };
        assert_eq!(root.child("x", false), Some(file("p/x")));
        assert_eq!(
            root.child("x", true),
            Some(Location::Dir {
                bucket: "b".into(),
                prefix: "p/x/".into()
            })
        );
        assert_eq!(file("a").child("x", false), None);
    }
}
