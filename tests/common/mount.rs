//! A real FUSE mount of the built binary, for integration tests.
//!
//! The mount runs in the foreground as a child of the test, so the test owns
//! its process: `Drop` unmounts with `fusermount3 -u`, waits for the process
//! to end, and fails loudly if it does not.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{TempConfig, TestServer, isolated_bin};

/// A mounted bucket (or prefix) in a temporary directory.
pub struct Mount {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The mountpoint.
    pub path: PathBuf,
    /// The log file (RUST_LOG=debug for s3linkfs).
    pub log: PathBuf,
    _config: TempConfig,
}

/// True when `path` is a mountpoint right now.
pub fn is_mounted(path: &Path) -> bool {
    let want = path.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

impl Mount {
    /// Mounts `s3://<bucket>/<prefix>` with the extra command-line `args`
    /// (and `profile_extra` lines in the profile), in the foreground, and
    /// waits until the mount is in place.
    pub fn new(ts: &TestServer, source: &str, args: &[&str], profile_extra: &str) -> Mount {
        let config = ts.config(profile_extra);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let log = dir.path().join("s3linkfs.log");
        let child = isolated_bin(config.dir())
            .env("RUST_LOG", "warn,s3linkfs=debug,fuser=error")
            .arg("mount")
            .arg("--config")
            .arg(&config.path)
            .arg(source)
            .arg(&path)
            .arg("--foreground")
            .arg("--log-file")
            .arg(&log)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn s3linkfs mount");
        let mut m = Mount {
            child: Some(child),
            dir,
            path,
            log,
            _config: config,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !is_mounted(&m.path) {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("s3linkfs mount exited with {status}:\n{}", m.log_text());
            }
            assert!(Instant::now() < deadline, "mount not ready in 15 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    /// Mounts the test bucket itself, at `prefix` (empty for the bucket root).
    pub fn bucket(ts: &TestServer, prefix: &str, args: &[&str]) -> Mount {
        Mount::new(ts, &format!("s3://{}/{prefix}", ts.bucket), args, "")
    }

    /// A path inside the mount.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// The log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The mount process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits up to `timeout` for the mount process to exit on its own (after
    /// a signal, say); its exit status, or `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Unmounts and waits for the process to exit; panics if it lingers.
    pub fn unmount(mut self) {
        self.finish();
    }

    /// Unmounts, waits for the process to exit, and returns the whole log
    /// (what the last releases did included).
    pub fn unmount_with_log(mut self) -> String {
        self.finish();
        self.log_text()
    }

    fn finish(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg(&self.path)
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait().unwrap() {
                Some(_) => break,
                None if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = std::process::Command::new("fusermount3")
                        .args(["-u", "-z"])
                        .arg(&self.path)
                        .status();
                    if !std::thread::panicking() {
                        panic!("s3linkfs did not exit 10 s after unmount");
                    }
                    break;
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = &self.dir;
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.finish();
    }
}
