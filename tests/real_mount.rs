//! Real mounts of the built binary against a real server (RGW or Garage):
//! reads, listings, metadata and the process's life, through the kernel.
//!
//! Fixtures are stored with boto3 (tests/common), so what the mount shows is
//! checked against an independent S3 implementation. Every test works under a
//! prefix of its own and mounts only that prefix.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mount::{Mount, is_mounted};
use common::{TestServer, isolated_bin, test_server, unique_name};

const MIB: usize = 1024 * 1024;

/// Deterministic bytes without a short period, so a read from the wrong
/// offset can never match by accident.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

/// Uploads `(name, body)` pairs under `prefix/` in one boto3 process.
fn put_under(ts: &TestServer, prefix: &str, objects: &[(String, Vec<u8>)]) {
    let keys: Vec<(String, &[u8])> = objects
        .iter()
        .map(|(n, b)| (format!("{prefix}/{n}"), &b[..]))
        .collect();
    let refs: Vec<(&str, &[u8])> = keys.iter().map(|(k, b)| (k.as_str(), *b)).collect();
    ts.put_fixtures(&ts.bucket, &refs);
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Runs a command, asserts it succeeded, and returns its stdout.
fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error()
        .unwrap_or_else(|| panic!("no errno in {e}"))
}

#[test]
fn ls_stat_cat_cmp_at_size_edges() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("mnt-sizes");
    let sizes = [0usize, 1, MIB - 1, MIB, MIB + 1];
    let objects: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .map(|s| (format!("s{s}"), random_bytes(*s, *s as u64)))
        .collect();
    put_under(&ts, &prefix, &objects);
    let src = tempfile::tempdir().unwrap();
    for (name, body) in &objects {
        std::fs::write(src.path().join(name), body).unwrap();
    }

    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    let want: BTreeSet<String> = objects.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names_in(&m.path), want);
    let ls: BTreeSet<String> = String::from_utf8(run(Command::new("ls").arg("-1").arg(&m.path)))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ls, want, "ls -1");
    for (name, body) in &objects {
        let p = m.join(name);
        let meta = std::fs::metadata(&p).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.len(), body.len() as u64, "{name}: size");
        let stat = run(Command::new("stat").args(["-c", "%s %F"]).arg(&p));
        assert_eq!(
            String::from_utf8(stat).unwrap().trim(),
            format!(
                "{} {}",
                body.len(),
                if body.is_empty() {
                    "regular empty file"
                } else {
                    "regular file"
                }
            )
        );
        assert!(run(Command::new("cat").arg(&p)) == *body, "cat {name}");
        run(Command::new("cmp").arg(src.path().join(name)).arg(&p));
        assert!(std::fs::read(&p).unwrap() == *body, "read {name}");
    }
    m.unmount();
}

#[test]
fn hundred_mib_file_cat_cmp_and_random_offset_reads() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("mnt-100m");
    let body = random_bytes(100 * MIB, 100);
    put_under(&ts, &prefix, &[("big".to_string(), body.clone())]);
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), &body).unwrap();

    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    let p = m.join("big");
    assert_eq!(std::fs::metadata(&p).unwrap().len(), body.len() as u64);
    run(Command::new("cmp").arg(src.path()).arg(&p));
    assert!(run(Command::new("cat").arg(&p)) == body, "cat big");

    // Random reads on a fresh handle: offsets anywhere (block edges and the
    // tail included), lengths from 1 byte to 3 MiB.
    let f = std::fs::File::open(&p).unwrap();
    let mut rng = fastrand::Rng::with_seed(42);
    let len = body.len() as u64;
    let mut offsets: Vec<(u64, usize)> = (0..200)
        .map(|_| (rng.u64(0..len), rng.usize(1..=3 * MIB)))
        .collect();
    offsets.extend([
        (0, 1),
        (MIB as u64 - 1, 2),
        (len - 1, 1),
        (len - 10, 100),
        (len, 10),
    ]);
    for (off, n) in offsets {
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            let r = f.read_at(&mut buf[got..], off + got as u64).unwrap();
            if r == 0 {
                break;
            }
            got += r;
        }
        let end = (off as usize + n).min(body.len());
        let want = &body[(off as usize).min(body.len())..end];
        assert_eq!(got, want.len(), "length at {off}+{n}");
        assert!(&buf[..got] == want, "bytes differ at {off}+{n}");
    }
    drop(f);
    m.unmount();
}

/// A fixed prefix holding `count` tiny objects, uploaded only when it is not
/// complete already: the objects are the same on every run, and uploading
/// 10k of them costs half a minute.
fn many_objects_prefix(ts: &TestServer, count: usize) -> String {
    let prefix = format!("s3linkfs-fixtures/dir{count}-v1/");
    if ts.count_keys(&ts.bucket, &prefix) != count {
        ts.put_many(&ts.bucket, &prefix, count);
    }
    assert_eq!(ts.count_keys(&ts.bucket, &prefix), count);
    prefix
}

#[test]
fn ten_thousand_entries_list_and_stat() {
    let Some(ts) = test_server() else { return };
    const N: usize = 10_000;
    let prefix = many_objects_prefix(&ts, N);
    let m = Mount::bucket(&ts, &prefix, &[]);

    // `ls -l` as a program does it: readdir, then stat every entry.
    let mut seen = 0;
    let mut names = BTreeSet::new();
    for e in std::fs::read_dir(&m.path).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let meta = std::fs::metadata(e.path()).unwrap();
        let i: usize = name.strip_prefix('f').unwrap().parse().unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.len(), format!("{i}\n").len() as u64, "{name}");
        names.insert(name);
        seen += 1;
    }
    assert_eq!(seen, N);
    assert_eq!(names.len(), N);
    assert_eq!(names.first().unwrap(), "f00000");
    assert_eq!(names.last().unwrap(), &format!("f{:05}", N - 1));

    // And the real `ls -l`: one line per entry plus "total".
    let out = String::from_utf8(run(Command::new("ls").arg("-l").arg(&m.path))).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("total "), "{}", lines[0]);
    assert_eq!(lines.len(), N + 1);
    assert!(lines[1].starts_with("-rw-r--r--"), "{}", lines[1]);
    assert_eq!(std::fs::read_to_string(m.join("f09999")).unwrap(), "9999\n");
    m.unmount();
}

#[test]
fn deep_paths_and_directory_markers() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("mnt-deep");
    let levels: Vec<String> = (1..=20).map(|i| format!("d{i:02}")).collect();
    let deep = levels.join("/");
    let body = random_bytes(5000, 20);
    // A marker object for the first level and for the fifth, besides the
    // prefixes implied by the deep key.
    let objects = vec![
        (format!("{deep}/leaf.bin"), body.clone()),
        ("d01/".to_string(), Vec::new()),
        (format!("{}/", levels[..5].join("/")), Vec::new()),
        ("d01/side.txt".to_string(), b"side".to_vec()),
    ];
    put_under(&ts, &prefix, &objects);

    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    let leaf = m.join(&format!("{deep}/leaf.bin"));
    assert!(std::fs::read(&leaf).unwrap() == body);
    assert_eq!(std::fs::metadata(&leaf).unwrap().len(), 5000);
    let mut dir = m.path.clone();
    for (i, level) in levels.iter().enumerate() {
        let mut want: BTreeSet<String> = [level.clone()].into();
        if i == 1 {
            want.insert("side.txt".into());
        }
        assert_eq!(names_in(&dir), want, "entries of {}", dir.display());
        dir.push(level);
        assert!(std::fs::metadata(&dir).unwrap().is_dir());
    }
    assert_eq!(names_in(&dir), ["leaf.bin".to_string()].into());
    assert_eq!(std::fs::read(m.join("d01/side.txt")).unwrap(), b"side");
    m.unmount();
}

#[test]
fn keys_with_special_characters_are_readable_by_name() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("mnt-special");
    let names = [
        "with space.txt",
        "plus+sign",
        "percent%41.txt",
        "amp&ersand",
        "equals=sign",
        "tilde~home",
        "ünïcödé-日本語.txt",
        "question?mark",
        "hash#tag",
        "semi;colon,comma",
        "quote'single\"double",
        "paren(1)[2]{3}",
        "mixed ?#&=+%~ é",
    ];
    let objects: Vec<(String, Vec<u8>)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), random_bytes(100 + i, i as u64)))
        .collect();
    put_under(&ts, &prefix, &objects);
    // A subdirectory with special characters too.
    put_under(
        &ts,
        &format!("{prefix}/dir with #?&+"),
        &[("inner %20.txt".to_string(), b"inner".to_vec())],
    );

    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    let mut want: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    want.insert("dir with #?&+".into());
    assert_eq!(names_in(&m.path), want);
    for (name, body) in &objects {
        let p = m.join(name);
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            body.len() as u64,
            "{name}"
        );
        assert!(std::fs::read(&p).unwrap() == *body, "content of {name:?}");
    }
    assert_eq!(
        std::fs::read(m.join("dir with #?&+/inner %20.txt")).unwrap(),
        b"inner"
    );
    // A name that differs only by percent-decoding must not resolve.
    let e = std::fs::metadata(m.join("percentA.txt")).unwrap_err();
    assert_eq!(errno_of(&e), libc::ENOENT);
    m.unmount();
}

/// Reads all of `path` in `chunk`-sized preads, starting at a rotated offset.
fn read_rotated(path: &Path, chunk: usize, start: usize, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut out = vec![0u8; len];
    let mut order: Vec<usize> = (0..len.div_ceil(chunk)).collect();
    let n = order.len().max(1);
    order.rotate_left(start % n);
    for i in order {
        let off = i * chunk;
        let end = (off + chunk).min(len);
        f.read_exact_at(&mut out[off..end], off as u64).unwrap();
    }
    out
}

#[test]
fn eight_concurrent_readers_same_file_and_different_files() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("mnt-concurrent");
    let shared = random_bytes(8 * MIB + 12345, 8);
    let mut objects = vec![("shared".to_string(), shared.clone())];
    for i in 0..8 {
        objects.push((
            format!("own{i}"),
            random_bytes(2 * MIB + i * 1000, 100 + i as u64),
        ));
    }
    put_under(&ts, &prefix, &objects);

    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let p = m.join("shared");
                let len = shared.len();
                s.spawn(move || read_rotated(&p, 64 * 1024 * (i + 1), i * 7, len))
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert!(h.join().unwrap() == shared, "reader {i} of the shared file");
        }
    });
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let p = m.join(&format!("own{i}"));
                let len = objects[i + 1].1.len();
                s.spawn(move || read_rotated(&p, 128 * 1024, i, len))
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert!(h.join().unwrap() == objects[i + 1].1, "reader of own{i}");
        }
    });
    m.unmount();
}

#[test]
fn remote_overwrite_and_delete_show_after_the_ttl() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("mnt-remote");
    let key = format!("{prefix}/f");
    let v1 = random_bytes(1000, 1);
    ts.put_fixture(&ts.bucket, &key, &v1);

    let m = Mount::bucket(
        &ts,
        &format!("{prefix}/"),
        &["--metadata-ttl", "1s", "--negative-ttl", "1s"],
    );
    let p = m.join("f");
    assert!(std::fs::read(&p).unwrap() == v1);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 1000);

    let v2 = random_bytes(2500, 2);
    ts.put_fixture(&ts.bucket, &key, &v2);
    std::thread::sleep(Duration::from_millis(2500)); // past the 1 s TTL
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 2500);
    assert!(
        std::fs::read(&p).unwrap() == v2,
        "new contents after the TTL"
    );
    let names = names_in(&m.path);
    assert_eq!(names, ["f".to_string()].into());

    // Same size, new bytes: only the ETag tells the versions apart, so
    // the kernel's page cache must be dropped on the change.
    let v3 = random_bytes(2500, 3);
    ts.put_fixture(&ts.bucket, &key, &v3);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 2500);
    assert!(std::fs::read(&p).unwrap() == v3, "same-size overwrite");

    // A name created elsewhere shows once the negative TTL has passed.
    let e = std::fs::metadata(m.join("new")).unwrap_err();
    assert_eq!(errno_of(&e), libc::ENOENT);
    ts.put_fixture(&ts.bucket, &format!("{prefix}/new"), b"new");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(std::fs::read(m.join("new")).unwrap(), b"new");
    ts.delete_object(&ts.bucket, &format!("{prefix}/new"));

    ts.delete_object(&ts.bucket, &key);
    std::thread::sleep(Duration::from_millis(2500));
    let e = std::fs::metadata(&p).unwrap_err();
    assert_eq!(errno_of(&e), libc::ENOENT, "stat after a remote delete");
    let e = std::fs::File::open(&p).unwrap_err();
    assert_eq!(errno_of(&e), libc::ENOENT, "open after a remote delete");
    assert!(names_in(&m.path).is_empty());
    m.unmount();
}

/// Pids of processes whose command line names `needle` (other than us).
fn pids_naming(needle: &Path) -> Vec<u32> {
    let needle = needle.as_os_str().as_encoded_bytes().to_vec();
    let me = std::process::id();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == needle.as_slice())
        {
            pids.push(pid);
        }
    }
    pids
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().as_bytes().first() != Some(&b'Z')),
        Err(_) => false,
    }
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A mountpoint in a fresh temporary directory, removed (after a lazy
/// unmount, should a test fail half-way) on drop.
struct Mountpoint {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Mountpoint {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        Mountpoint { dir, path }
    }
}

impl Drop for Mountpoint {
    fn drop(&mut self) {
        if is_mounted(&self.path) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.path)
                .status();
        }
        for pid in pids_naming(&self.path) {
            // SAFETY: kill(2) on a pid we found running with our mountpoint.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = &self.dir;
    }
}

/// `s3linkfs mount` in its default (background) mode, without waiting for
/// anything but the command itself.
fn mount_in_background(ts: &TestServer, source: &str, mnt: &Path) -> std::process::Output {
    let config = ts.config("");
    isolated_bin(config.dir())
        .arg("mount")
        .arg("--config")
        .arg(&config.path)
        .arg(source)
        .arg(mnt)
        .output()
        .expect("run s3linkfs mount")
}

#[test]
fn background_mode_returns_once_mounted_and_fusermount_ends_it() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("mnt-bg");
    ts.put_fixture(&ts.bucket, &format!("{prefix}/hello"), b"hello\n");
    let mp = Mountpoint::new();

    let out = mount_in_background(&ts, &format!("s3://{}/{prefix}/", ts.bucket), &mp.path);
    assert!(
        out.status.success(),
        "background mount failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Returned only once ready: mounted and serving right away.
    assert!(
        is_mounted(&mp.path),
        "not mounted when the command returned"
    );
    assert_eq!(std::fs::read(mp.path.join("hello")).unwrap(), b"hello\n");
    let pids = pids_naming(&mp.path);
    assert_eq!(pids.len(), 1, "one daemon process, found {pids:?}");
    let pid = pids[0];
    assert!(alive(pid));

    run(Command::new("fusermount3").arg("-u").arg(&mp.path));
    wait_until(
        "the daemon exits after fusermount3 -u",
        Duration::from_secs(10),
        || !alive(pid),
    );
    assert!(!is_mounted(&mp.path));
    assert!(pids_naming(&mp.path).iter().all(|p| !alive(*p)));
}

/// Runs a mount that must fail; returns its stderr, after checking that
/// nothing is mounted and no process is left.
fn failing_mount(ts: &TestServer, source: &str, mnt: &Path) -> String {
    let out = mount_in_background(ts, source, mnt);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "mount of {source} at {} succeeded",
        mnt.display()
    );
    assert!(stderr.contains("s3linkfs: "), "{stderr}");
    assert!(!is_mounted(mnt));
    wait_until(
        "no process left after a failed mount",
        Duration::from_secs(5),
        || pids_naming(mnt).iter().all(|p| !alive(*p)),
    );
    stderr
}

#[test]
fn bad_starts_exit_nonzero_with_the_reason() {
    let Some(ts) = test_server() else { return };
    let mp = Mountpoint::new();

    let missing = unique_name("no-such-bucket");
    let err = failing_mount(&ts, &format!("s3://{missing}/"), &mp.path);
    assert!(
        err.contains("no such bucket") && err.contains(&missing),
        "missing bucket: {err}"
    );

    let mut bad = ts.clone();
    bad.secret_key = "not-the-secret-key-0000000000000000000000".into();
    let err = failing_mount(&bad, &format!("s3://{}/", ts.bucket), &mp.path);
    assert!(
        err.contains("credentials were refused"),
        "bad secret: {err}"
    );

    let mut bad = ts.clone();
    bad.access_key = "AKIDNOSUCHKEY0000000".into();
    let err = failing_mount(&bad, &format!("s3://{}/", ts.bucket), &mp.path);
    assert!(err.contains("credentials were refused"), "bad key: {err}");

    let nowhere = mp.dir.path().join("does-not-exist");
    let err = failing_mount(&ts, &format!("s3://{}/", ts.bucket), &nowhere);
    assert!(
        err.contains("mountpoint") && err.contains("does-not-exist"),
        "missing mountpoint: {err}"
    );
    let file = mp.dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let err = failing_mount(&ts, &format!("s3://{}/", ts.bucket), &file);
    assert!(err.contains("not a directory"), "file as mountpoint: {err}");
}

#[test]
fn sigterm_and_sigint_unmount_a_foreground_mount_cleanly() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("mnt-signal");
    ts.put_fixture(&ts.bucket, &format!("{prefix}/x"), b"x");
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
        assert_eq!(std::fs::read(m.join("x")).unwrap(), b"x");
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(m.pid() as i32, sig) }, 0);
        let status = m
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("still running 10 s after signal {sig}"));
        assert!(status.success(), "exit after signal {sig}: {status}");
        assert!(!is_mounted(&m.path), "still mounted after signal {sig}");
    }
}

#[test]
fn df_and_statvfs_answer() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("mnt-df");
    ts.put_fixture(&ts.bucket, &format!("{prefix}/x"), b"x");
    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    let out = String::from_utf8(run(Command::new("df").arg(&m.path))).unwrap();
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .ends_with(m.path.to_str().unwrap()),
        "{out}"
    );
    run(Command::new("df").arg("-i").arg(&m.path));

    let c = std::ffi::CString::new(m.path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a zeroed statvfs is a valid out-parameter; `c` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    assert!(st.f_blocks > 0 && st.f_bavail > 0 && st.f_bsize > 0);
    assert_eq!(st.f_namemax, 255);
    m.unmount();
}

#[test]
fn read_only_mount_refuses_changes_with_erofs() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("mnt-ro");
    ts.put_fixture(&ts.bucket, &format!("{prefix}/x"), b"x");
    let m = Mount::bucket(&ts, &format!("{prefix}/"), &["--read-only"]);
    assert_eq!(std::fs::read(m.join("x")).unwrap(), b"x");
    let e = std::fs::File::create(m.join("new")).unwrap_err();
    assert_eq!(errno_of(&e), libc::EROFS, "create");
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(m.join("x"))
        .unwrap_err();
    assert_eq!(errno_of(&e), libc::EROFS, "open for writing");
    let e = std::fs::create_dir(m.join("d")).unwrap_err();
    assert_eq!(errno_of(&e), libc::EROFS, "mkdir");
    let e = std::fs::remove_file(m.join("x")).unwrap_err();
    assert_eq!(errno_of(&e), libc::EROFS, "unlink");
    assert!(ts.head(&ts.bucket, &format!("{prefix}/new")).is_none());
    assert!(ts.head(&ts.bucket, &format!("{prefix}/x")).is_some());
    m.unmount();
}

#[test]
fn an_open_file_never_mixes_two_versions() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("mnt-mix");
    let key = format!("{prefix}/f");
    let v1 = random_bytes(64 * MIB, 11);
    ts.put_fixture(&ts.bucket, &key, &v1);
    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    let f = std::fs::File::open(m.join("f")).unwrap();
    let mut buf = vec![0u8; 4096];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf == v1[..4096]);

    // Replaced while open, with the same size: bytes not read yet must not
    // come from the new version.
    let v2 = random_bytes(64 * MIB, 12);
    ts.put_fixture(&ts.bucket, &key, &v2);
    let off = 48 * MIB;
    match f.read_exact_at(&mut buf, off as u64) {
        Ok(()) => assert!(
            buf == v1[off..off + 4096],
            "an open file served bytes of the new version"
        ),
        Err(e) => assert_eq!(errno_of(&e), libc::ESTALE, "{e}"),
    }
    drop(f);
    m.unmount();
}

/// A TCP relay to the server that can be stopped (listener closed, every
/// open connection cut, so the port refuses like a stopped server) and
/// started again on the same port.
struct Relay {
    port: u16,
    upstream: String,
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(upstream: &str) -> Relay {
        let mut r = Relay {
            port: 0,
            upstream: upstream.to_string(),
            running: Default::default(),
            conns: Default::default(),
            acceptor: None,
        };
        r.resume();
        r
    }

    fn resume(&mut self) {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        self.port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        self.running.store(true, Ordering::SeqCst);
        let (running, conns, upstream) = (
            self.running.clone(),
            self.conns.clone(),
            self.upstream.clone(),
        );
        self.acceptor = Some(std::thread::spawn(move || {
            while running.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        }));
    }

    fn stop(&mut self) {
        self.running
            .store(false, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            t.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn server_gone_mid_read_gives_eio_and_the_mount_recovers() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("mnt-gone");
    let body = random_bytes(32 * MIB, 32);
    put_under(
        &ts,
        &prefix,
        &[
            ("f".to_string(), body.clone()),
            ("g".to_string(), b"g".to_vec()),
        ],
    );
    let upstream = ts.endpoint.trim_start_matches("http://").to_string();
    let mut relay = Relay::start(&upstream);
    let mut via = ts.clone();
    via.endpoint = format!("http://127.0.0.1:{}", relay.port);
    let m = Mount::bucket(&via, &format!("{prefix}/"), &[]);

    let f = std::fs::File::open(m.join("f")).unwrap();
    let mut buf = vec![0u8; 4096];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf == body[..4096]);

    // The server goes away: a read that needs it fails with EIO (after the
    // client's bounded retries), and nothing else is wedged meanwhile.
    relay.stop();
    let off = 24 * MIB;
    let e = f.read_exact_at(&mut buf, off as u64).unwrap_err();
    assert_eq!(errno_of(&e), libc::EIO, "{e}");
    assert!(std::fs::metadata(&m.path).unwrap().is_dir());
    assert!(is_mounted(&m.path));

    // Back again: the same handle and new opens work, byte-exact.
    relay.resume();
    f.read_exact_at(&mut buf, off as u64).unwrap();
    assert!(buf == body[off..off + 4096], "after the server came back");
    drop(f);
    assert!(std::fs::read(m.join("f")).unwrap() == body);
    assert_eq!(std::fs::read(m.join("g")).unwrap(), b"g");
    m.unmount();
}
