//! The thin fuser adapter between the kernel and [`crate::fs::Fs`].
//!
//! Why: it keeps fuser's types out of the filesystem, so the filesystem can
//! be tested by calling it directly.
//!
//! Guarantees:
//! - every operation that may touch the network is spawned onto the tokio
//!   runtime and replied to from that task, so a slow request never holds a
//!   FUSE worker thread and never stalls other operations;
//! - [`errno`] is the one place where errors become errno values, and it
//!   logs one line for each error worth a line; xattr calls never answer
//!   ENOSYS (that would switch xattrs off for the whole mount).

use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, MountOption, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, SessionACL, WriteFlags,
};
use tokio::runtime::Handle;

use crate::fs::{Attr, Fs, FsError, Kind};
use crate::s3::{S3Error, S3ErrorCode};

/// Maps a filesystem error to its errno, logging one line when the error is
/// worth one (misses that are part of normal operation log at debug level).
pub fn errno(op: &str, e: &FsError) -> Errno {
    let code = match e {
        FsError::NotFound => libc::ENOENT,
        FsError::NotDir => libc::ENOTDIR,
        FsError::IsDir => libc::EISDIR,
        FsError::ReadOnly => libc::EROFS,
        FsError::NoData => libc::ENODATA,
        FsError::Exists => libc::EEXIST,
        FsError::Invalid(_) => libc::EINVAL,
        FsError::NotPermitted(_) => libc::EPERM,
        FsError::Stale(_) => libc::ESTALE,
        FsError::BadHandle => libc::EBADF,
        FsError::Io(_) => libc::EIO,
        FsError::NoSpace(_) => libc::ENOSPC,
        FsError::NotEmpty => libc::ENOTEMPTY,
        FsError::CrossDevice(_) => libc::EXDEV,
        FsError::Busy(_) => libc::EBUSY,
        FsError::S3(s3) => s3_errno(s3),
    };
    match code {
        libc::ENOENT | libc::ENODATA => tracing::debug!(op, error = %e, "answering errno {code}"),
        _ => tracing::warn!(op, error = %e, "answering errno {code}"),
    }
    Errno::from_i32(code)
}

fn s3_errno(e: &S3Error) -> i32 {
    if e.is_not_found() {
        return libc::ENOENT;
    }
    if matches!(e, S3Error::ConcurrentModification { .. }) {
        return libc::ESTALE;
    }
    match e.code() {
        Some(
            S3ErrorCode::AccessDenied
            | S3ErrorCode::InvalidAccessKeyId
            | S3ErrorCode::SignatureDoesNotMatch,
        ) => libc::EACCES,
        Some(S3ErrorCode::PreconditionFailed) => libc::ESTALE,
        _ => libc::EIO,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: match a.kind {
            Kind::Dir => FileType::Directory,
            Kind::File => FileType::RegularFile,
        },
        perm: a.perm,
        nlink: if a.kind == Kind::Dir { 2 } else { 1 },
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
    }
}

/// Answers an xattr read the way the protocol wants: the length for a size
/// probe, ERANGE when the caller's buffer is too small, else the bytes.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(value);
    }
}

/// The fuser `Filesystem` over an [`Fs`].
pub struct Adapter {
    fs: Arc<Fs>,
    rt: Handle,
}

impl Adapter {
    /// Wraps `fs`; network work runs on `rt`.
    pub fn new(fs: Arc<Fs>, rt: Handle) -> Self {
        Self { fs, rt }
    }

    fn spawn<F>(&self, f: impl FnOnce(Arc<Fs>) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.rt.spawn(f(self.fs.clone()));
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        use fuser::InitFlags;
        // Readdirplus hands attributes out with the listing, so `ls -l`
        // needs no per-entry lookup; parallel dirops lets lookups in one
        // directory run at once.
        let _ = config.add_capabilities(
            InitFlags::FUSE_DO_READDIRPLUS
                | InitFlags::FUSE_READDIRPLUS_AUTO
                | InitFlags::FUSE_PARALLEL_DIROPS
                | InitFlags::FUSE_ASYNC_READ,
        );
        // Large kernel readahead lets sequential reads arrive as big requests.
        let _ = config.set_max_readahead(1024 * 1024);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_owned();
        self.spawn(move |fs| async move {
            match fs.lookup(parent.0, &name).await {
                Ok(e) => reply.entry(&e.ttl, &file_attr(&e.attr), Generation(0)),
                Err(e) => reply.error(errno("lookup", &e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.spawn(move |fs| async move {
            match fs.getattr(ino.0).await {
                Ok(e) => reply.attr(&e.ttl, &file_attr(&e.attr)),
                Err(e) => reply.error(errno("getattr", &e)),
            }
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let truncate = flags.0 & libc::O_TRUNC != 0;
        let pid = req.pid();
        self.spawn(move |fs| async move {
            match fs.open(ino.0, write, truncate, pid).await {
                Ok(o) => {
                    let f = if o.keep_cache {
                        FopenFlags::FOPEN_KEEP_CACHE
                    } else {
                        FopenFlags::empty()
                    };
                    reply.opened(FileHandle(o.fh), f)
                }
                Err(e) => reply.error(errno("open", &e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        // Prefetched data is answered right here, without a hop to a task.
        let _in_runtime = self.rt.enter();
        if let Some(result) = self.fs.read_now(fh.0, offset, size) {
            match result {
                Ok(bytes) => reply.data(&bytes),
                Err(e) => reply.error(errno("read", &e)),
            }
            return;
        }
        self.spawn(move |fs| async move {
            match fs.read_rest(fh.0, offset, size).await {
                Ok(bytes) => reply.data(&bytes),
                Err(e) => reply.error(errno("read", &e)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(move |fs| async move {
            fs.release(fh.0).await;
            reply.ok();
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = name.to_owned();
        let read = flags & libc::O_ACCMODE == libc::O_RDWR;
        let pid = req.pid();
        self.spawn(move |fs| async move {
            match fs.create(parent.0, &name, read, pid).await {
                Ok((e, o)) => reply.created(
                    &e.ttl,
                    &file_attr(&e.attr),
                    Generation(0),
                    FileHandle(o.fh),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(errno("create", &e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        self.spawn(move |fs| async move {
            match fs.write(fh.0, offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno("write", &e)),
            }
        });
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        let pid = req.pid();
        self.spawn(move |fs| async move {
            match fs.close(fh.0, pid).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("flush", &e)),
            }
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(move |fs| async move {
            match fs.flush(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("fsync", &e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Mode, owner and times are not stored (doc/SEMANTICS.md): they are
        // accepted so that `cp -a` and `rsync -a` work.
        self.spawn(move |fs| async move {
            let result = match size {
                Some(size) => fs.set_size(ino.0, size).await,
                None => fs.getattr(ino.0).await,
            };
            match result {
                Ok(e) => reply.attr(&e.ttl, &file_attr(&e.attr)),
                Err(e) => reply.error(errno("setattr", &e)),
            }
        });
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // Regular files come through `create`; devices, FIFOs and sockets
        // have no object form.
        let e = FsError::NotPermitted("only regular files and directories exist here".into());
        reply.error(errno("mknod", &e));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.spawn(move |fs| async move {
            match fs.unlink(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("unlink", &e)),
            }
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let name = name.to_owned();
        self.spawn(move |fs| async move {
            match fs.mkdir(parent.0, &name).await {
                Ok(e) => reply.entry(&e.ttl, &file_attr(&e.attr), Generation(0)),
                Err(e) => reply.error(errno("mkdir", &e)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.spawn(move |fs| async move {
            match fs.rmdir(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("rmdir", &e)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            let e = FsError::Invalid("RENAME_EXCHANGE is not supported".into());
            reply.error(errno("rename", &e));
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let (name, newname) = (name.to_owned(), newname.to_owned());
        self.spawn(move |fs| async move {
            match fs
                .rename(parent.0, &name, newparent.0, &newname, no_replace)
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("rename", &e)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.spawn(move |fs| async move {
            match fs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno("opendir", &e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let res = self.fs.readdir(fh.0, offset, false, |e| {
            reply.add(
                INodeNo(e.ino),
                e.next_offset,
                file_type(e.attr.kind),
                &e.name,
            )
        });
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("readdir", &e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let ttl = self.fs.config().metadata_ttl;
        let res = self.fs.readdir(fh.0, offset, true, |e| {
            reply.add(
                INodeNo(e.ino),
                e.next_offset,
                &e.name,
                &ttl,
                &file_attr(&e.attr),
                Generation(0),
            )
        });
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("readdirplus", &e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        // Links, ETags and the kernel's security.* / system.* probes are
        // answered here, without a hop to a task: `ls -l` asks two of those
        // per file.
        if let Some(answer) = self.fs.getxattr_now(ino.0, name, SystemTime::now()) {
            match answer {
                Ok(v) => reply_xattr(reply, size, &v),
                Err(e) => reply.error(errno("getxattr", &e)),
            }
            return;
        }
        let name = name.to_owned();
        self.spawn(move |fs| async move {
            match fs.getxattr(ino.0, &name, SystemTime::now()).await {
                Ok(v) => reply_xattr(reply, size, &v),
                Err(e) => reply.error(errno("getxattr", &e)),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.spawn(move |fs| async move {
            match fs.listxattr(ino.0).await {
                Ok(v) => reply_xattr(reply, size, &v),
                Err(e) => reply.error(errno("listxattr", &e)),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let name = name.to_owned();
        let value = value.to_vec();
        self.spawn(move |fs| async move {
            match fs.setxattr(ino.0, &name, &value, flags).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("setxattr", &e)),
            }
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.spawn(move |fs| async move {
            match fs.removexattr(ino.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("removexattr", &e)),
            }
        });
    }
}

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Where.
    pub mountpoint: PathBuf,
    /// Shown as the source in `mount` and `df`.
    pub fsname: String,
    /// Let other users in (needs `user_allow_other` in /etc/fuse.conf for non-root).
    pub allow_other: bool,
    /// Let root in.
    pub allow_root: bool,
    /// Mount read-only.
    pub read_only: bool,
    /// FUSE worker threads.
    pub max_threads: usize,
}

/// Mounts `fs` and serves it until unmounted (by `fusermount3 -u`, or by
/// SIGINT or SIGTERM, which unmount cleanly). `on_ready` runs once the
/// mount is in place.
pub fn mount(
    fs: Arc<Fs>,
    rt: Handle,
    opts: &MountOptions,
    on_ready: impl FnOnce(),
) -> io::Result<()> {
    let mut mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype("s3linkfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    mount_options.push(if opts.read_only {
        MountOption::RO
    } else {
        MountOption::RW
    });
    let mut config = fuser::Config::default();
    config.mount_options = mount_options;
    config.acl = if opts.allow_other {
        SessionACL::All
    } else if opts.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(opts.max_threads.max(1));
    config.clone_fd = true;

    let adapter = Adapter::new(fs, rt.clone());
    let mut session = fuser::Session::new(adapter, &opts.mountpoint, &config)?;
    let mut unmounter = session.unmount_callable();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let signals = rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT: unmounting"),
            _ = term.recv() => tracing::info!("SIGTERM: unmounting"),
            _ = &mut stop_rx => return,
        }
        if let Err(e) = unmounter.unmount() {
            tracing::warn!(error = %e, "unmount failed");
        }
    });
    on_ready();
    let result = session.run();
    let _ = stop_tx.send(());
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), signals).await });
    result
}
