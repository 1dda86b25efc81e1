//! `s3linkfs mount`: checks, mounts and serves, in the background by default.
//!
//! Why a module of its own: the start-up sequence (check the mountpoint,
//! check the credentials and the bucket, mount, then detach) is where a user
//! learns whether the mount worked, so it must fail early and clearly.
//!
//! Guarantees:
//! - the command returns only once the mount is in place, or exits non-zero
//!   with the reason (bad mountpoint, bad credentials, missing bucket);
//! - the background process is the same binary re-executed in the
//!   foreground, never a `fork` of a threaded process;
//! - SIGINT, SIGTERM and `fusermount3 -u` all end the process after a clean
//!   unmount.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::fs::data::DataCacheConfig;
use crate::fs::{Fs, FsConfig, MountSource};
use crate::fuse::{self, MountOptions};
use crate::s3::http::{ClientConfig, HttpClient};
use crate::s3::{ListRequest, ObjectClient, S3Error, S3ErrorCode};

/// Set in the re-executed background process; its stdout is a pipe to the
/// waiting parent, which reads one `ready` line.
const DAEMON_ENV: &str = "S3LINKFS_DAEMON_CHILD";

/// Everything `mount` needs, validated.
#[derive(Clone, Debug)]
pub struct MountRequest {
    /// What to show.
    pub source: MountSource,
    /// Filesystem settings (includes the profile).
    pub fs: FsConfig,
    /// Kernel mount settings.
    pub options: MountOptions,
    /// HTTP client settings.
    pub client: ClientConfig,
    /// Stay attached to the terminal.
    pub foreground: bool,
}

/// Why mounting failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mountpoint is missing or unusable.
    #[error("mountpoint {path}: {reason}")]
    Mountpoint {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The store refused the start-up check.
    #[error("{0}")]
    Store(String),
    /// The kernel mount or the session failed.
    #[error("mount failed: {0}")]
    Fuse(#[from] std::io::Error),
    /// The background process exited before the mount was ready.
    #[error("the background process exited with status {0} before the mount was ready")]
    Background(i32),
}

/// True in the re-executed background process.
pub fn is_daemon_child() -> bool {
    std::env::var_os(DAEMON_ENV).is_some()
}

/// Mounts as `req` says, returning when the mount ends (foreground) or as
/// soon as it is ready (background).
pub fn run(req: MountRequest) -> Result<(), MountError> {
    check_mountpoint(&req.options.mountpoint)?;
    if !req.foreground && !is_daemon_child() {
        return spawn_background();
    }
    pin_mmap_threshold();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("s3linkfs-io")
        .build()?;
    let client = HttpClient::new(req.client.clone())
        .map_err(|e| MountError::Store(format!("cannot build the HTTP client: {e}")))?;
    let client: Arc<dyn ObjectClient> = Arc::new(client);
    rt.block_on(check_source(client.as_ref(), &req.source))?;
    let fs = Arc::new(Fs::new(client, &req.source, req.fs.clone()));
    tracing::debug!(mountpoint = %req.options.mountpoint.display(), source = ?req.source, "mounting");
    fuse::mount(fs.clone(), rt.handle().clone(), &req.options, || {
        if is_daemon_child() {
            println!("ready");
            detach_stdio();
        }
    })?;
    // Uploads started by a last close must end (or be aborted) before the
    // process does.
    rt.block_on(fs.finish_releases());
    tracing::info!("unmounted");
    Ok(())
}

/// Cache blocks (256 KiB) are allocated and freed all the time. glibc
/// raises its mmap threshold after the first such free and then serves them
/// from arenas that fragment and never shrink, so the process would keep far
/// more memory than the cache holds. A threshold fixed at the block size
/// keeps every block its own mapping, returned to the system when evicted,
/// while the 128 KiB buffers of each FUSE reply stay cheap heap allocations.
fn pin_mmap_threshold() {
    // SAFETY: mallopt only changes allocator tuning; called before any
    // thread of ours exists.
    unsafe {
        libc::mallopt(
            libc::M_MMAP_THRESHOLD,
            DataCacheConfig::default().block_size as i32,
        );
    }
}

fn check_mountpoint(path: &Path) -> Result<(), MountError> {
    let fail = |reason: String| MountError::Mountpoint {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_dir() {
        return Err(fail("not a directory".into()));
    }
    Ok(())
}

/// One cheap request that proves the credentials and the bucket.
async fn check_source(client: &dyn ObjectClient, source: &MountSource) -> Result<(), MountError> {
    let result = match source {
        MountSource::AllBuckets => client.list_buckets().await.map(|_| ()),
        MountSource::Bucket { bucket, prefix } => client
            .list_objects(&ListRequest {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                delimiter: Some("/".into()),
                continuation_token: None,
                max_keys: Some(1),
            })
            .await
            .map(|_| ()),
    };
    result.map_err(|e| MountError::Store(explain(&e, source)))
}

fn explain(e: &S3Error, source: &MountSource) -> String {
    let what = match source {
        MountSource::AllBuckets => "listing buckets".to_string(),
        MountSource::Bucket { bucket, .. } => format!("bucket {bucket:?}"),
    };
    match e.code() {
        Some(S3ErrorCode::NoSuchBucket) => format!("{what}: no such bucket ({e})"),
        Some(
            S3ErrorCode::AccessDenied
            | S3ErrorCode::InvalidAccessKeyId
            | S3ErrorCode::SignatureDoesNotMatch,
        ) => format!("{what}: the credentials were refused ({e})"),
        _ => format!("{what}: {e}"),
    }
}

/// Re-executes this command in a new process group, waits for its `ready`
/// line, and returns; on failure its stderr has already reached ours.
fn spawn_background() -> Result<(), MountError> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(DAEMON_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() == "ready" {
        return Ok(());
    }
    let status = child.wait()?;
    Err(MountError::Background(status.code().unwrap_or(1)))
}

/// Points stdin, stdout and stderr at /dev/null once the parent has gone, so
/// the daemon holds no terminal. Logs go to `--log-file` when one is set.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..=2 {
            // SAFETY: dup2 onto the standard descriptors of our own process;
            // `null` stays open for the duration of the call.
            unsafe {
                libc::dup2(null.as_raw_fd(), fd);
            }
        }
    }
}
