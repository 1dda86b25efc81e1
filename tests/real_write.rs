//! Writes through real mounts of the built binary against a real server (RGW
//! or Garage): `cp`, `rsync -a`, `mv`, `rm -r`, appends, truncation, editor
//! saves, concurrent writers, a server failing part-way through an upload,
//! a random operation sequence checked against a local copy, and headers set
//! through xattrs. What the store holds is checked with boto3, independently
//! of the mount.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::io::IntoRawFd;
use std::path::Path;
use std::process::Command;

use common::mount::Mount;
use common::{TestServer, test_server, unique_name};
use proxy::FaultProxy;

const MIB: usize = 1024 * 1024;

/// Every test that starts a process (boto3, cp, the mount) holds this shared;
/// the server-failure tests hold it alone. A fork and exec elsewhere in this
/// test process closes, at exec, its copies of every open file descriptor,
/// and each such close is a FUSE FLUSH: an upload of the file being written,
/// which those tests must not get at a random moment.
static EXCLUSIVE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner())
}

fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner())
}

/// The server, with the test bucket created (an existing one is fine).
fn server() -> Option<TestServer> {
    let ts = test_server()?;
    ts.create_bucket(&ts.bucket);
    Some(ts)
}

/// `len` pseudo-random bytes: no period, so a shifted or repeated part
/// cannot compare equal by accident.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

/// Runs a command and panics with its output when it fails.
fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn command");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// getxattr(2) of `name` on `path`.
fn getx(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let (p, n) = (cpath(path), CString::new(name).unwrap());
    let mut buf = vec![0u8; 8192];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for its length.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

/// setxattr(2) of `name` to `value` on `path`.
fn setx(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let (p, n) = (cpath(path), CString::new(name).unwrap());
    // SAFETY: both strings are NUL-terminated and `value` is readable for its length.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// close(2) of `file`, returning its error (dropping a File ignores it).
fn close(file: File) -> std::io::Result<()> {
    let fd = file.into_raw_fd();
    // SAFETY: `fd` is owned here and closed exactly once.
    if unsafe { libc::close(fd) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Checks the object at `key` holds exactly `want`, downloaded with boto3.
fn assert_stored(ts: &TestServer, key: &str, want: &[u8]) {
    let (body, _) = ts
        .download(&ts.bucket, key)
        .unwrap_or_else(|| panic!("{key} is not in the store"));
    assert_eq!(body.len(), want.len(), "stored size of {key}");
    assert!(body == want, "stored content of {key}");
}

#[test]
fn cp_and_cmp_round_trips_at_part_edges() {
    let _shared = shared();
    let Some(ts) = server() else { return };
    let prefix = unique_name("w-cp");
    let sizes = [
        0,
        1,
        5 * MIB - 1,
        5 * MIB,
        5 * MIB + 1,
        8 * MIB - 1,
        8 * MIB,
        8 * MIB + 1,
        200 * MIB,
    ];
    let src = tempfile::tempdir().unwrap();
    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    for (i, size) in sizes.iter().enumerate() {
        let name = format!("f{size}");
        std::fs::write(src.path().join(&name), random_bytes(*size, i as u64)).unwrap();
        run(Command::new("cp")
            .arg(src.path().join(&name))
            .arg(m.join(&name)));
        run(Command::new("cmp")
            .arg(src.path().join(&name))
            .arg(m.join(&name)));
    }
    let etags: Vec<Vec<u8>> = sizes
        .iter()
        .map(|s| getx(&m.join(&format!("f{s}")), "user.s3.etag").unwrap())
        .collect();
    m.unmount();

    // A fresh mount reads what the store holds, not the old page cache.
    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    for (size, etag) in sizes.iter().zip(&etags) {
        let name = format!("f{size}");
        let local = src.path().join(&name);
        assert_eq!(
            std::fs::metadata(m.join(&name)).unwrap().len(),
            *size as u64
        );
        run(Command::new("cmp").arg(&local).arg(m.join(&name)));
        let key = format!("{prefix}/{name}");
        let head = ts.head_headers(&ts.bucket, &key).unwrap();
        assert_eq!(head["size"], size.to_string());
        assert_eq!(head["etag"].as_bytes(), &etag[..], "ETag of {name}");
        let (body, md5) = ts.download(&ts.bucket, &key).unwrap();
        assert!(body == std::fs::read(&local).unwrap(), "stored {name}");
        if *size <= 8 * MIB {
            // One PutObject: the ETag is the MD5 of the body.
            assert_eq!(head["etag"], format!("\"{md5}\""), "{name}");
        } else {
            assert!(
                head["etag"].contains('-'),
                "multipart ETag {}",
                head["etag"]
            );
        }
    }
    assert!(ts.multipart_uploads(&ts.bucket, &prefix).is_empty());
    m.unmount();
    ts.delete_prefix(&ts.bucket, &format!("{prefix}/"));
}

#[test]
fn append_truncate_and_editor_save() {
    let _shared = shared();
    let Some(ts) = server() else { return };
    let prefix = unique_name("w-edit");
    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    let log = m.join("log.txt");
    std::fs::write(&log, b"line1\n").unwrap();
    for line in ["line2\n", "line3\n"] {
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(line.as_bytes()).unwrap();
        close(f).unwrap();
    }
    assert_eq!(std::fs::read(&log).unwrap(), b"line1\nline2\nline3\n");
    assert_stored(&ts, &format!("{prefix}/log.txt"), b"line1\nline2\nline3\n");
    let head = ts
        .head_headers(&ts.bucket, &format!("{prefix}/log.txt"))
        .unwrap();
    assert_eq!(head["content-type"], "text/plain");

    // Truncate down, then up (the new bytes are zeros), each on its own.
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(3)
        .unwrap();
    assert_stored(&ts, &format!("{prefix}/log.txt"), b"lin");
    let f = OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(8).unwrap();
    close(f).unwrap();
    assert_stored(&ts, &format!("{prefix}/log.txt"), b"lin\0\0\0\0\0");
    assert_eq!(std::fs::read(&log).unwrap(), b"lin\0\0\0\0\0");
    // truncate(2) by path, no open handle.
    run(Command::new("truncate").args(["-s", "2"]).arg(&log));
    assert_stored(&ts, &format!("{prefix}/log.txt"), b"li");

    // An editor's save: a temporary file in the same directory, renamed over
    // the original.
    let doc = m.join("doc.md");
    std::fs::write(&doc, b"# draft\n").unwrap();
    let tmp = m.join(".doc.md.swp");
    let mut f = File::create(&tmp).unwrap();
    f.write_all(b"# final\nbody\n").unwrap();
    f.sync_all().unwrap();
    close(f).unwrap();
    std::fs::rename(&tmp, &doc).unwrap();
    assert_eq!(std::fs::read(&doc).unwrap(), b"# final\nbody\n");
    assert!(!tmp.exists());
    assert_stored(&ts, &format!("{prefix}/doc.md"), b"# final\nbody\n");
    assert_eq!(
        ts.list_keys(&ts.bucket, &format!("{prefix}/")),
        vec![format!("{prefix}/doc.md"), format!("{prefix}/log.txt")]
    );
    m.unmount();
    ts.delete_prefix(&ts.bucket, &format!("{prefix}/"));
}

#[test]
fn rsync_a_tree_in_and_back_out_is_identical() {
    let _shared = shared();
    let Some(ts) = server() else { return };
    let prefix = unique_name("w-rsync");
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let files: [(&str, usize); 6] = [
        ("a.txt", 12),
        ("zero", 0),
        ("sub/b.bin", MIB + 3),
        ("sub/deeper/c.json", 100),
        ("sub/deeper/big.bin", 9 * MIB + 1),
        ("with space & plus+.txt", 7),
    ];
    for (i, (name, size)) in files.iter().enumerate() {
        let p = src.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, random_bytes(*size, 100 + i as u64)).unwrap();
    }
    std::fs::create_dir_all(src.path().join("empty/also-empty")).unwrap();

    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    let tree = m.join("tree");
    // Twice: the second run finds everything present (times and modes are
    // not stored, so it copies again) and must still succeed.
    for _ in 0..2 {
        run(Command::new("rsync")
            .arg("-a")
            .arg(format!("{}/", src.path().display()))
            .arg(format!("{}/", tree.display())));
    }
    let dest = out.path().join("back");
    run(Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", tree.display()))
        .arg(format!("{}/", dest.display())));
    run(Command::new("diff").arg("-r").arg(src.path()).arg(&dest));
    assert!(dest.join("empty/also-empty").is_dir());
    // No temporary files of rsync's are left in the store.
    let keys = ts.list_keys(&ts.bucket, &format!("{prefix}/"));
    assert!(
        keys.iter()
            .all(|k| !k.rsplit('/').next().unwrap().starts_with('.')),
        "{keys:?}"
    );
    m.unmount();
    ts.delete_prefix(&ts.bucket, &format!("{prefix}/"));
}

#[test]
fn mv_rm_r_mkdir_p_and_rmdir() {
    let _shared = shared();
    let Some(ts) = server() else { return };
    let prefix = unique_name("w-ns");
    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    std::fs::create_dir_all(m.join("a/b/c")).unwrap();
    run(Command::new("mkdir").arg("-p").arg(m.join("a/b/c"))); // exists: fine
    assert!(m.join("a/b/c").is_dir());
    std::fs::write(m.join("a/b/c/f.txt"), b"F").unwrap();

    let e = std::fs::remove_dir(m.join("a/b/c")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY), "{e}");
    let e = std::fs::remove_dir(m.join("a")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY), "{e}");

    // mv of a file, across directories.
    run(Command::new("mv")
        .arg(m.join("a/b/c/f.txt"))
        .arg(m.join("a/g.txt")));
    assert!(!m.join("a/b/c/f.txt").exists());
    assert_eq!(std::fs::read(m.join("a/g.txt")).unwrap(), b"F");
    // c is empty now (its marker keeps it): rmdir works.
    assert!(m.join("a/b/c").is_dir());
    std::fs::remove_dir(m.join("a/b/c")).unwrap();
    assert!(!m.join("a/b/c").exists());

    // mv of a directory.
    std::fs::create_dir_all(m.join("d1/y")).unwrap();
    std::fs::write(m.join("d1/x"), b"X").unwrap();
    std::fs::write(m.join("d1/y/z"), b"Z").unwrap();
    run(Command::new("mv").arg(m.join("d1")).arg(m.join("d2")));
    assert!(!m.join("d1").exists());
    assert_eq!(std::fs::read(m.join("d2/x")).unwrap(), b"X");
    assert_eq!(std::fs::read(m.join("d2/y/z")).unwrap(), b"Z");
    let p = |k: &str| format!("{prefix}/{k}");
    assert_eq!(
        ts.list_keys(&ts.bucket, &p("d")),
        vec![p("d2/"), p("d2/x"), p("d2/y/"), p("d2/y/z")]
    );

    // rm -r.
    run(Command::new("rm").arg("-r").arg(m.join("d2")));
    assert!(!m.join("d2").exists());
    run(Command::new("rm").arg("-r").arg(m.join("a")));
    assert!(ts.list_keys(&ts.bucket, &format!("{prefix}/")).is_empty());
    assert_eq!(std::fs::read_dir(&m.path).unwrap().count(), 0);
    m.unmount();
}

#[test]
fn eight_concurrent_writers_to_different_files() {
    let _shared = shared();
    let Some(ts) = server() else { return };
    let prefix = unique_name("w-conc");
    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    // Sizes from one PUT to several parts, so uploads overlap.
    let bodies: Vec<Vec<u8>> = (0..8)
        .map(|i| random_bytes(i * 2 * MIB + 3 * i + 1, 200 + i as u64))
        .collect();
    std::thread::scope(|s| {
        for (i, body) in bodies.iter().enumerate() {
            let path = m.join(&format!("w{i}.bin"));
            s.spawn(move || {
                let mut f = File::create(&path).unwrap();
                for chunk in body.chunks(100_000) {
                    f.write_all(chunk).unwrap();
                }
                close(f).unwrap();
            });
        }
    });
    for (i, body) in bodies.iter().enumerate() {
        assert_stored(&ts, &format!("{prefix}/w{i}.bin"), body);
        assert!(std::fs::read(m.join(&format!("w{i}.bin"))).unwrap() == *body);
    }
    assert!(ts.multipart_uploads(&ts.bucket, &prefix).is_empty());
    m.unmount();
    ts.delete_prefix(&ts.bucket, &format!("{prefix}/"));
}

/// A mount whose every request goes through a request-aware proxy.
fn mount_through_proxy(
    ts: &TestServer,
    rt: &tokio::runtime::Runtime,
    prefix: &str,
    cache_dir: &Path,
) -> (FaultProxy, Mount) {
    let upstream = ts
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let proxy = rt.block_on(FaultProxy::start_http(upstream));
    let mut via = ts.clone();
    via.endpoint = format!("http://127.0.0.1:{}", proxy.port());
    let cache = cache_dir.display().to_string();
    let m = Mount::new(
        &via,
        &format!("s3://{}/{prefix}/", ts.bucket),
        &["--cache-dir", &cache],
        "",
    );
    (proxy, m)
}

/// The server failing part-way: every UploadPart is reset by the proxy,
/// while all other requests (HEAD, LIST, Create/Abort) go through. A
/// server that is wholly gone could not take the abort either, and the
/// upload it left would be the server's to expire; failing only the parts
/// checks what the mount can promise: EIO, then an abort that leaves
/// nothing behind.
fn reset_upload_parts(proxy: &FaultProxy) {
    proxy.reset_requests(|line| line.starts_with("PUT ") && line.contains("partNumber="));
}

#[test]
fn server_failing_mid_upload_of_existing_file_is_eio_and_old_object_intact() {
    let _alone = alone();
    let Some(ts) = server() else { return };
    let prefix = unique_name("w-fail-old");
    let key = format!("{prefix}/data.bin");
    let old = random_bytes(MIB + 11, 300);
    ts.put_fixture(&ts.bucket, &key, &old);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (proxy, m) = mount_through_proxy(&ts, &rt, &prefix, cache.path());

    let new = random_bytes(40 * MIB, 301);
    // O_TRUNC on an existing object: staged, uploaded at fsync and close.
    let mut f = File::create(m.join("data.bin")).unwrap();
    f.write_all(&new[..20 * MIB]).unwrap();
    reset_upload_parts(&proxy);
    f.write_all(&new[20 * MIB..]).unwrap();
    let e = f.sync_all().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "fsync: {e}");
    let e = close(f).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "close: {e}");
    assert!(proxy.requests_reset() > 0);
    // The old object is still what a reader of the mount sees.
    assert!(std::fs::read(m.join("data.bin")).unwrap() == old);
    // The last close's release retries the upload; once that has failed too,
    // the unsent copy is moved aside. Wait for it (the process would wait
    // for it at unmount anyway, longer than the harness allows).
    let staging = cache.path().join("staging");
    let kept = |staging: &Path| -> Vec<u64> {
        std::fs::read_dir(staging)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.path().extension().is_some_and(|x| x == "failed"))
            .map(|e| e.metadata().unwrap().len())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while kept(&staging).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let log = m.unmount_with_log();

    assert_stored(&ts, &key, &old);
    assert!(
        ts.multipart_uploads(&ts.bucket, &prefix).is_empty(),
        "an upload was left behind; the mount's log:\n{log}"
    );
    // The unsent copy was kept, whole.
    assert_eq!(kept(&staging), vec![new.len() as u64], "{log}");
    drop(proxy);
    ts.delete_prefix(&ts.bucket, &format!("{prefix}/"));
}

#[test]
fn server_failing_mid_upload_of_new_file_is_eio_and_leaves_nothing() {
    let _alone = alone();
    let Some(ts) = server() else { return };
    let prefix = unique_name("w-fail-new");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (proxy, m) = mount_through_proxy(&ts, &rt, &prefix, cache.path());

    let new = random_bytes(40 * MIB, 302);
    // A new file: streamed, parts going out while it is written.
    let mut f = File::create(m.join("new.bin")).unwrap();
    f.write_all(&new[..20 * MIB]).unwrap();
    reset_upload_parts(&proxy);
    f.write_all(&new[20 * MIB..]).unwrap();
    let e = close(f).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "close: {e}");
    assert!(proxy.requests_reset() > 0);
    // Even with the server well again, the release must not upload a
    // partial object in the lost stream's place.
    proxy.clear_request_rule();
    let log = m.unmount_with_log();

    assert_eq!(
        ts.head(&ts.bucket, &format!("{prefix}/new.bin")),
        None,
        "a partial object; the mount's log:\n{log}"
    );
    assert!(
        ts.multipart_uploads(&ts.bucket, &prefix).is_empty(),
        "an upload was left behind; the mount's log:\n{log}"
    );
    drop(proxy);
}

#[test]
fn random_operations_on_a_staged_file_match_a_local_copy() {
    let _shared = shared();
    let Some(ts) = server() else { return };
    let prefix = unique_name("w-fsx");
    let key = format!("{prefix}/fsx.bin");
    let mut reference = random_bytes(256 * 1024 + 5, 400);
    ts.put_fixture(&ts.bucket, &key, &reference);
    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    let path = m.join("fsx.bin");
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap()
    };
    let mut f = open();
    let mut rng = fastrand::Rng::with_seed(0x6_f5c);
    const MAX: usize = 1024 * 1024;
    for op in 0..300 {
        let len = reference.len();
        match rng.u32(0..100) {
            0..40 => {
                let at = rng.usize(0..=(len + 64 * 1024).min(MAX));
                let n = rng.usize(1..=64 * 1024).min(MAX + 64 * 1024 - at);
                let data = random_bytes(n, 1000 + op);
                f.write_all_at(&data, at as u64).unwrap();
                if reference.len() < at + n {
                    reference.resize(at + n, 0);
                }
                reference[at..at + n].copy_from_slice(&data);
            }
            40..65 => {
                let at = rng.usize(0..=len + 10);
                let n = rng.usize(1..=128 * 1024);
                let mut buf = vec![0u8; n];
                let mut got = 0;
                while got < n {
                    let r = f.read_at(&mut buf[got..], (at + got) as u64).unwrap();
                    if r == 0 {
                        break;
                    }
                    got += r;
                }
                let want = &reference[at.min(len)..(at + n).min(len)];
                assert_eq!(got, want.len(), "op {op}: read {n} at {at} of {len}");
                assert!(buf[..got] == *want, "op {op}: read {n} at {at}");
            }
            65..80 => {
                let size = rng.usize(0..=MAX);
                f.set_len(size as u64).unwrap();
                reference.resize(size, 0);
            }
            80..88 => f.sync_all().unwrap(),
            88..95 => {
                close(f).unwrap();
                f = open();
            }
            _ => {
                assert_eq!(f.metadata().unwrap().len(), len as u64, "op {op}: size");
            }
        }
    }
    close(f).unwrap();
    assert_stored(&ts, &key, &reference);
    let mut back = Vec::new();
    File::open(&path).unwrap().read_to_end(&mut back).unwrap();
    assert!(back == reference, "read back through the mount");
    assert!(ts.multipart_uploads(&ts.bucket, &prefix).is_empty());
    m.unmount();
    ts.delete_prefix(&ts.bucket, &format!("{prefix}/"));
}

#[test]
fn headers_set_through_xattrs_survive_a_rename() {
    let _shared = shared();
    let Some(ts) = server() else { return };
    let prefix = unique_name("w-xren");
    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    let body = random_bytes(3000, 500);
    std::fs::write(m.join("doc.bin"), &body).unwrap();
    let cd = br#"attachment; filename="report-final.pdf""#;
    setx(&m.join("doc.bin"), "user.s3.content_disposition", cd).unwrap();
    setx(&m.join("doc.bin"), "user.s3.meta.x", b"y").unwrap();
    setx(
        &m.join("doc.bin"),
        "user.s3.content_type",
        b"application/x-test",
    )
    .unwrap();

    std::fs::create_dir(m.join("sub")).unwrap();
    std::fs::rename(m.join("doc.bin"), m.join("renamed.bin")).unwrap();
    run(Command::new("mv")
        .arg(m.join("renamed.bin"))
        .arg(m.join("sub/moved.bin")));
    // And the directory holding it.
    run(Command::new("mv").arg(m.join("sub")).arg(m.join("sub2")));

    let key = format!("{prefix}/sub2/moved.bin");
    let head = ts.head_headers(&ts.bucket, &key).unwrap();
    assert_eq!(head["content-disposition"].as_bytes(), cd);
    assert_eq!(head["meta.x"], "y");
    assert_eq!(head["content-type"], "application/x-test");
    assert_stored(&ts, &key, &body);
    assert_eq!(
        ts.list_keys(&ts.bucket, &format!("{prefix}/")),
        vec![format!("{prefix}/sub2/"), key.clone()]
    );
    let moved = m.join("sub2/moved.bin");
    assert_eq!(getx(&moved, "user.s3.content_disposition").unwrap(), cd);
    assert_eq!(getx(&moved, "user.s3.meta.x").unwrap(), b"y");
    m.unmount();
    ts.delete_prefix(&ts.bucket, &format!("{prefix}/"));
}

#[test]
fn content_disposition_option_and_setfattr_on_a_file_being_written() {
    let _shared = shared();
    let Some(ts) = server() else { return };
    let prefix = unique_name("w-cd");
    let m = Mount::bucket(
        &ts,
        &format!("{prefix}/"),
        &["--content-disposition", "attachment"],
    );
    std::fs::write(m.join("report.txt"), b"R").unwrap();
    let head = ts
        .head_headers(&ts.bucket, &format!("{prefix}/report.txt"))
        .unwrap();
    assert_eq!(
        head["content-disposition"],
        r#"attachment; filename="report.txt""#
    );
    assert_eq!(head["content-type"], "text/plain");

    // A header set while the new file is still open rides along with its
    // upload: no copy afterwards.
    let path = m.join("notes.txt");
    let mut f = File::create(&path).unwrap();
    f.write_all(b"first ").unwrap();
    setx(&path, "user.s3.content_disposition", b"inline").unwrap();
    setx(&path, "user.s3.meta.owner", b"me").unwrap();
    f.write_all(b"second").unwrap();
    close(f).unwrap();
    let key = format!("{prefix}/notes.txt");
    let head = ts.head_headers(&ts.bucket, &key).unwrap();
    assert_eq!(head["content-disposition"], "inline");
    assert_eq!(head["meta.owner"], "me");
    assert_stored(&ts, &key, b"first second");
    assert_eq!(
        getx(&path, "user.s3.content_disposition").unwrap(),
        b"inline"
    );
    let log = m.log_text();
    assert!(
        !log.lines()
            .any(|l| l.contains("headers changed in place") && l.contains("notes.txt")),
        "the header went through a copy:\n{log}"
    );
    m.unmount();
    ts.delete_prefix(&ts.bucket, &format!("{prefix}/"));
}
