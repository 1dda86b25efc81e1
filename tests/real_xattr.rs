//! The seed's whole flow on a real mount (RGW or Garage): share links from
//! `getfattr`, download names from `setfattr`, checked with curl as a user
//! would and with boto3 as an independent client; then every refusal (bad
//! values, spoofed names, flags, foreign namespaces) leaves the object
//! byte- and header-identical.
//!
//! The main flow goes through the real `getfattr`/`setfattr` binaries; the
//! edge cases call the xattr syscalls through libc so the errno is exact.

mod common;

use std::ffi::CString;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::mount::Mount;
use common::{Fetched, HeadFull, ServerKind, TestServer, curl_get, test_server, unique_name};
use s3linkfs::disposition::attachment_for;

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

/// getxattr(2) the way getfattr does it: probe the size, then read.
fn getx(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let (p, n) = (cpath(path), CString::new(name).unwrap());
    // SAFETY: NUL-terminated strings; a null buffer with size 0 is the probe.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    if len < 0 {
        return Err(last_errno());
    }
    let mut buf = vec![0u8; len as usize];
    // SAFETY: `buf` has room for `buf.len()` bytes.
    let got = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if got < 0 {
        return Err(last_errno());
    }
    assert_eq!(got, len, "{name}: length changed between probe and read");
    Ok(buf)
}

fn getx_str(path: &Path, name: &str) -> String {
    String::from_utf8(getx(path, name).unwrap_or_else(|e| panic!("getxattr {name}: errno {e}")))
        .unwrap()
}

fn setx(path: &Path, name: &str, value: &[u8], flags: i32) -> Result<(), i32> {
    let (p, n) = (cpath(path), CString::new(name).unwrap());
    // SAFETY: NUL-terminated strings; `value` is valid for its length.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if r < 0 { Err(last_errno()) } else { Ok(()) }
}

fn removex(path: &Path, name: &str) -> Result<(), i32> {
    let (p, n) = (cpath(path), CString::new(name).unwrap());
    // SAFETY: NUL-terminated strings.
    let r = unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) };
    if r < 0 { Err(last_errno()) } else { Ok(()) }
}

fn listx(path: &Path) -> Vec<String> {
    let p = cpath(path);
    // SAFETY: a null buffer with size 0 is the size probe.
    let len = unsafe { libc::listxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
    assert!(len >= 0, "listxattr probe: errno {}", last_errno());
    let mut buf = vec![0u8; len as usize];
    // SAFETY: `buf` has room for `buf.len()` bytes.
    let got = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(got >= 0, "listxattr: errno {}", last_errno());
    buf[..got as usize]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

/// `getfattr --only-values -n NAME FILE`.
fn getfattr(path: &Path, name: &str) -> String {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .expect("getfattr (attr package)");
    assert!(
        out.status.success(),
        "getfattr -n {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `setfattr -n NAME -v VALUE FILE`.
fn setfattr(path: &Path, name: &str, value: &str) {
    let out = Command::new("setfattr")
        .args(["-n", name, "-v", value])
        .arg(path)
        .output()
        .expect("setfattr (attr package)");
    assert!(
        out.status.success(),
        "setfattr -n {name} -v {value:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_serves(url: &str, body: &[u8]) -> Fetched {
    let got = curl_get(url);
    assert_eq!(
        got.status,
        200,
        "GET {url}: {}",
        String::from_utf8_lossy(&got.body)
    );
    assert!(got.body == body, "GET {url}: body differs");
    got
}

fn curl_status(args: &[&str], url: &str) -> u16 {
    let out = Command::new("curl")
        .args(["-sS", "-g", "--max-time", "30", "-o", "/dev/null"])
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// `curl -OJ URL` in an empty directory: the one file it saved, and its bytes.
fn curl_oj(url: &str) -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-g", "--max-time", "30", "-f", "-O", "-J"])
        .arg(url)
        .current_dir(dir.path())
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl -OJ {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(files.len(), 1, "curl -OJ saved {files:?}");
    let name = files[0].file_name().into_string().unwrap();
    (name, std::fs::read(files[0].path()).unwrap())
}

/// `url` with the last character of its signature changed.
fn tampered(url: &str) -> String {
    let at = ["X-Amz-Signature=", "Signature="]
        .iter()
        .find_map(|p| url.find(p).map(|i| i + p.len()))
        .expect("a signature parameter");
    let end = url[at..].find('&').map_or(url.len(), |i| at + i);
    let last = &url[end - 1..end];
    let repl = if last == "0" || last == "A" { "1" } else { "0" };
    format!("{}{repl}{}", &url[..end - 1], &url[end..])
}

/// An expired link is refused: 403 on RGW; Garage answers 400 "Date is too
/// old" for an expired SigV4 link, accepted for it only, by its message.
fn assert_expired(ts: &TestServer, url: &str) {
    let got = curl_get(url);
    let body = String::from_utf8_lossy(&got.body);
    let garage_quirk =
        ts.kind == ServerKind::Garage && got.status == 400 && body.contains("Date is too old");
    assert!(
        got.status == 403 || garage_quirk,
        "expired link not refused: {} {url}\n{body}",
        got.status
    );
}

fn head(ts: &TestServer, key: &str) -> HeadFull {
    ts.head_full(&ts.bucket, key)
        .unwrap_or_else(|| panic!("{key} is missing"))
}

/// One directory of fixtures under a fresh prefix, mounted.
struct Fixture {
    prefix: String,
    body: Vec<u8>,
}

impl Fixture {
    /// `eggs.pdf` (Content-Type application/pdf, two metadata entries) and
    /// `spam.pdf` beside it.
    fn new(ts: &TestServer, what: &str) -> Fixture {
        let prefix = unique_name(what);
        let body = random_bytes(300_000, 5);
        ts.put_fixture_with(
            &ts.bucket,
            &format!("{prefix}/eggs.pdf"),
            &body,
            &[
                ("ContentType", "application/pdf"),
                ("meta:owner", "alice"),
                ("meta:project", "seed"),
            ],
        );
        ts.put_fixture(&ts.bucket, &format!("{prefix}/spam.pdf"), b"spam");
        Fixture { prefix, body }
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }

    fn mount(&self, ts: &TestServer, args: &[&str]) -> Mount {
        Mount::bucket(ts, &format!("{}/", self.prefix), args)
    }
}

#[test]
fn seed_flow_getfattr_link_setfattr_download_name() {
    let Some(ts) = test_server() else { return };
    let fx = Fixture::new(&ts, "xattr-seed");
    let before = head(&ts, &fx.key("eggs.pdf"));
    let m = fx.mount(&ts, &[]);
    let eggs = m.join("eggs.pdf");

    // The share link: 200 with the same bytes, and nothing else works.
    let url = getfattr(&eggs, "user.s3.presign");
    assert!(url.starts_with(&ts.endpoint), "{url}");
    assert!(!url.contains('\n'), "{url:?}");
    assert_serves(&url, &fx.body);
    assert_eq!(curl_status(&["-I"], &url), 403, "HEAD on a GET link");
    assert_eq!(curl_get(&tampered(&url)).status, 403, "tampered link");
    let short = getfattr(&eggs, "user.s3.presign.1s");
    assert!(
        short.split(['?', '&']).any(|p| p == "X-Amz-Expires=1"),
        "{short}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_expired(&ts, &short);

    // The download name.
    let value = "attachment; filename=\"bar.pdf\"";
    setfattr(&eggs, "user.s3.content_disposition", value);
    let (saved, bytes) = curl_oj(&getfattr(&eggs, "user.s3.presign"));
    assert_eq!(saved, "bar.pdf");
    assert!(bytes == fx.body, "bar.pdf holds eggs' bytes");
    assert_eq!(getfattr(&eggs, "user.s3.content_disposition"), value);

    // Only the header changed: bytes, Content-Type and metadata kept.
    let after = head(&ts, &fx.key("eggs.pdf"));
    assert_eq!(after.size, before.size);
    assert_eq!(after.get("ContentDisposition"), Some(value));
    let mut expected = before.headers.clone();
    expected.insert("ContentDisposition".into(), value.into());
    assert_eq!(after.headers, expected);
    assert_eq!(after.get("ContentType"), Some("application/pdf"));
    assert_eq!(after.get("meta:owner"), Some("alice"));
    assert_eq!(after.get("meta:project"), Some("seed"));
    // The mount shows the new ETag at once.
    assert_eq!(getx_str(&eggs, "user.s3.etag"), after.etag);
    assert!(std::fs::read(&eggs).unwrap() == fx.body);

    // getfattr -d dumps the listed names, header included.
    let out = Command::new("getfattr")
        .arg("-d")
        .arg(&eggs)
        .output()
        .unwrap();
    assert!(out.status.success());
    let dump = String::from_utf8(out.stdout).unwrap();
    for name in [
        "user.s3.presign=",
        "user.s3.presign_download=",
        "user.s3.etag=",
        "user.s3.url=",
        "user.s3.content_disposition=",
        "user.s3.content_type=\"application/pdf\"",
        "user.s3.meta.owner=\"alice\"",
    ] {
        assert!(dump.contains(name), "getfattr -d lacks {name}:\n{dump}");
    }

    // setfattr -x removes the header and nothing else.
    let out = Command::new("setfattr")
        .args(["-x", "user.s3.content_disposition"])
        .arg(&eggs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        getx(&eggs, "user.s3.content_disposition"),
        Err(libc::ENODATA)
    );
    let removed = head(&ts, &fx.key("eggs.pdf"));
    assert_eq!(removed.headers, before.headers);
    let (saved, _) = curl_oj(&getfattr(&eggs, "user.s3.presign"));
    assert_eq!(saved, "eggs.pdf");
    m.unmount();
}

#[test]
fn non_ascii_bare_filename_gives_an_ascii_fallback_and_filename_star() {
    let Some(ts) = test_server() else { return };
    let fx = Fixture::new(&ts, "xattr-utf8");
    let m = fx.mount(&ts, &[]);
    let eggs = m.join("eggs.pdf");

    setfattr(&eggs, "user.s3.content_disposition", "résumé.pdf");
    let want = attachment_for("résumé.pdf");
    assert_eq!(
        want,
        "attachment; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
    );
    assert_eq!(getx_str(&eggs, "user.s3.content_disposition"), want);
    let url = getx_str(&eggs, "user.s3.presign");
    let got = assert_serves(&url, &fx.body);
    assert_eq!(got.header("content-disposition"), Some(want.as_str()));
    let (saved, bytes) = curl_oj(&url);
    assert_eq!(saved, "resume.pdf", "curl -OJ uses the ASCII fallback");
    assert!(bytes == fx.body);
    let h = head(&ts, &fx.key("eggs.pdf"));
    assert_eq!(h.get("ContentDisposition"), Some(want.as_str()));
    assert_eq!(h.get("ContentType"), Some("application/pdf"));
    assert_eq!(h.get("meta:owner"), Some("alice"));
    m.unmount();
}

#[test]
fn bad_values_are_refused_with_einval_and_change_nothing() {
    let Some(ts) = test_server() else { return };
    let fx = Fixture::new(&ts, "xattr-bad");
    let m = fx.mount(&ts, &[]);
    let eggs = m.join("eggs.pdf");
    let before = head(&ts, &fx.key("eggs.pdf"));

    let long = format!("attachment; filename=\"{}.pdf\"", "x".repeat(2100));
    let cd = "user.s3.content_disposition";
    let bad: Vec<(&str, Vec<u8>)> = vec![
        (cd, b"attachment; filename=\"a\r\nX-Evil: 1.pdf\"".to_vec()),
        (cd, b"attachment; filename=\"a\nb.pdf\"".to_vec()),
        (cd, b"attachment; filename=\"a\rb.pdf\"".to_vec()),
        (cd, b"attachment; filename=\"a\x01b.pdf\"".to_vec()),
        (cd, b"attachment; filename=\"a\x7fb.pdf\"".to_vec()),
        (cd, b"bar\x00.pdf".to_vec()),
        (
            cd,
            "attachment; filename=\"résumé.pdf\"".as_bytes().to_vec(),
        ),
        (cd, b"".to_vec()),
        (cd, b"   ".to_vec()),
        (cd, long.clone().into_bytes()),
        (cd, "x".repeat(2049).into_bytes()),
        (cd, b"attachment; filename=\"unterminated".to_vec()),
        (cd, b"attachment;; =".to_vec()),
        (cd, b"attachment; filename".to_vec()),
        (cd, b"not a type; filename=\"a.pdf\"".to_vec()),
        (cd, vec![0xff, 0xfe, b'a']),
        ("user.s3.content_type", b"pdf".to_vec()),
        ("user.s3.content_type", b"text/plain\r\nX-Evil: 1".to_vec()),
        ("user.s3.cache_control", b"max-age=1\nX-Evil: 1".to_vec()),
        ("user.s3.cache_control", b"".to_vec()),
        ("user.s3.meta.owner", b"bob\r\n".to_vec()),
        ("user.s3.meta.bad name", b"x".to_vec()),
        ("user.s3.presign.1x", b"x".to_vec()),
    ];
    for (name, value) in &bad {
        let r = setx(&eggs, name, value, 0);
        let shown = String::from_utf8_lossy(value);
        assert_eq!(r, Err(libc::EINVAL), "{name} = {shown:?}");
    }
    // A bad duration on read is EINVAL too, with a clear log line.
    assert_eq!(getx(&eggs, "user.s3.presign.1x"), Err(libc::EINVAL));
    assert_eq!(getx(&eggs, "user.s3.presign.9999d"), Err(libc::EINVAL));

    let after = head(&ts, &fx.key("eggs.pdf"));
    assert_eq!(after, before, "a refused value changed the object");
    assert_eq!(getx(&eggs, cd), Err(libc::ENODATA));
    assert!(m.log_text().contains("not printable ASCII") || m.log_text().contains("control"));
    m.unmount();
}

#[test]
fn spoof_guard_refuses_a_sibling_name_unless_allowed() {
    let Some(ts) = test_server() else { return };
    let fx = Fixture::new(&ts, "xattr-spoof");
    let before = head(&ts, &fx.key("eggs.pdf"));
    let m = fx.mount(&ts, &[]);
    let eggs = m.join("eggs.pdf");
    let cd = "user.s3.content_disposition";
    for value in [
        "attachment; filename=\"spam.pdf\"",
        "spam.pdf",
        "inline; filename=\"spam.pdf\"",
        "attachment; filename=\"x.pdf\"; filename*=UTF-8''spam.pdf",
        "attachment; filename=\"dir/spam.pdf\"",
    ] {
        assert_eq!(
            setx(&eggs, cd, value.as_bytes(), 0),
            Err(libc::EPERM),
            "{value}"
        );
    }
    assert_eq!(head(&ts, &fx.key("eggs.pdf")), before);
    assert!(
        m.log_text().contains("names another object"),
        "log says why"
    );
    // Before any listing was cached too: a fresh mount, no readdir.
    m.unmount();
    let m = fx.mount(&ts, &[]);
    assert_eq!(
        setx(
            &m.join("eggs.pdf"),
            cd,
            b"attachment; filename=\"spam.pdf\"",
            0
        ),
        Err(libc::EPERM)
    );
    // Its own name and a name no object has are fine.
    setx(
        &m.join("eggs.pdf"),
        cd,
        b"attachment; filename=\"eggs.pdf\"",
        0,
    )
    .unwrap();
    setx(
        &m.join("eggs.pdf"),
        cd,
        b"attachment; filename=\"other.pdf\"",
        0,
    )
    .unwrap();
    m.unmount();

    let m = fx.mount(&ts, &["--allow-misleading-names"]);
    setx(&m.join("eggs.pdf"), cd, b"spam.pdf", 0).unwrap();
    let (saved, bytes) = curl_oj(&getx_str(&m.join("eggs.pdf"), "user.s3.presign"));
    assert_eq!(saved, "spam.pdf");
    assert!(bytes == fx.body);
    m.unmount();
}

#[test]
fn presign_download_etag_and_url() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("xattr-dl");
    let body = random_bytes(4096, 9);
    let name = "my report (final).pdf";
    ts.put_fixture(&ts.bucket, &format!("{prefix}/{name}"), &body);
    let utf8 = "café menu.pdf";
    ts.put_fixture(&ts.bucket, &format!("{prefix}/{utf8}"), &body);
    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    let p = m.join(name);

    // curl -O alone would save "my%20report%20%28final%29.pdf".
    let url = getfattr(&p, "user.s3.presign_download");
    let (saved, bytes) = curl_oj(&url);
    assert_eq!(saved, name);
    assert!(bytes == body);
    let short = getx_str(&p, "user.s3.presign_download.1h");
    assert_eq!(
        curl_get(&short).header("content-disposition"),
        Some(attachment_for(name).as_str())
    );
    // The object itself was not touched.
    assert_eq!(
        head(&ts, &format!("{prefix}/{name}")).get("ContentDisposition"),
        None
    );

    let url = getx_str(&m.join(utf8), "user.s3.presign_download");
    let got = assert_serves(&url, &body);
    assert_eq!(
        got.header("content-disposition"),
        Some(attachment_for(utf8).as_str())
    );
    assert_eq!(curl_oj(&url).0, "cafe menu.pdf");

    let h = head(&ts, &format!("{prefix}/{name}"));
    assert_eq!(getx_str(&p, "user.s3.etag"), h.etag);
    assert_eq!(getfattr(&p, "user.s3.etag"), h.etag);
    let plain = getx_str(&p, "user.s3.url");
    assert_eq!(
        plain,
        format!(
            "{}/{}/{prefix}/my%20report%20%28final%29.pdf",
            ts.endpoint, ts.bucket
        )
    );
    m.unmount();
}

#[test]
fn listxattr_names_and_foreign_or_unknown_names() {
    let Some(ts) = test_server() else { return };
    let fx = Fixture::new(&ts, "xattr-list");
    ts.put_fixture(&ts.bucket, &fx.key("sub/inner"), b"inner");
    let m = fx.mount(&ts, &[]);
    let eggs = m.join("eggs.pdf");
    let always = [
        "user.s3.presign",
        "user.s3.presign_download",
        "user.s3.etag",
        "user.s3.url",
    ];
    let names = listx(&eggs);
    for n in always {
        assert!(names.contains(&n.to_string()), "{n} not in {names:?}");
    }
    for n in [
        "user.s3.content_type",
        "user.s3.meta.owner",
        "user.s3.meta.project",
    ] {
        assert!(names.contains(&n.to_string()), "{n} not in {names:?}");
    }
    assert!(!names.iter().any(|n| n == "user.s3.content_disposition"));
    assert!(!names.iter().any(|n| n == "user.s3.cache_control"));
    assert!(!names.iter().any(|n| n.starts_with("user.s3.presign.")));

    setx(&eggs, "user.s3.content_disposition", b"bar.pdf", 0).unwrap();
    setx(&eggs, "user.s3.cache_control", b"max-age=60", 0).unwrap();
    let names = listx(&eggs);
    assert!(names.contains(&"user.s3.content_disposition".to_string()));
    assert!(names.contains(&"user.s3.cache_control".to_string()));

    // Directories (and the mount's root) have no link names.
    for dir in [m.path.clone(), m.join("sub")] {
        assert!(listx(&dir).is_empty());
        for n in always {
            assert_eq!(getx(&dir, n), Err(libc::ENODATA), "{n} on a directory");
        }
    }

    // Foreign namespaces and unknown names: ENODATA, never ENOSYS.
    for n in [
        "security.capability",
        "security.selinux",
        "system.posix_acl_access",
        "system.posix_acl_default",
        "trusted.overlay.opaque",
        "user.unknown",
        "user.s3.nope",
        "user.s3.presignx",
    ] {
        assert_eq!(getx(&eggs, n), Err(libc::ENODATA), "getxattr {n}");
    }
    for n in ["user.unknown", "user.s3.nope"] {
        assert_eq!(setx(&eggs, n, b"v", 0), Err(libc::ENODATA), "setxattr {n}");
        assert_eq!(removex(&eggs, n), Err(libc::ENODATA), "removexattr {n}");
    }
    // Read-only names refuse changes.
    for n in always {
        assert_eq!(setx(&eggs, n, b"v", 0), Err(libc::EPERM), "setxattr {n}");
        assert_eq!(removex(&eggs, n), Err(libc::EPERM), "removexattr {n}");
    }
    // A buffer too small for the value is ERANGE, for reads and lists.
    let (cp, cn) = (cpath(&eggs), CString::new("user.s3.presign").unwrap());
    let mut small = [0u8; 16];
    // SAFETY: `small` has room for 16 bytes; the strings are NUL-terminated.
    let r = unsafe { libc::getxattr(cp.as_ptr(), cn.as_ptr(), small.as_mut_ptr().cast(), 16) };
    assert_eq!(
        (r, last_errno()),
        (-1, libc::ERANGE),
        "getxattr into 16 bytes"
    );
    // SAFETY: as above.
    let r = unsafe { libc::listxattr(cp.as_ptr(), small.as_mut_ptr().cast(), 16) };
    assert_eq!(
        (r, last_errno()),
        (-1, libc::ERANGE),
        "listxattr into 16 bytes"
    );

    // xattrs still work after all that (an ENOSYS would have switched them off).
    assert!(getx_str(&eggs, "user.s3.presign").starts_with("http"));
    m.unmount();
}

#[test]
fn xattr_flags_and_removal() {
    let Some(ts) = test_server() else { return };
    let fx = Fixture::new(&ts, "xattr-flags");
    let m = fx.mount(&ts, &[]);
    let eggs = m.join("eggs.pdf");
    let key = fx.key("eggs.pdf");
    let before = head(&ts, &key);

    assert_eq!(
        setx(
            &eggs,
            "user.s3.content_type",
            b"text/plain",
            libc::XATTR_CREATE
        ),
        Err(libc::EEXIST)
    );
    assert_eq!(
        setx(
            &eggs,
            "user.s3.cache_control",
            b"max-age=1",
            libc::XATTR_REPLACE
        ),
        Err(libc::ENODATA)
    );
    assert_eq!(
        setx(&eggs, "user.s3.meta.owner", b"bob", libc::XATTR_CREATE),
        Err(libc::EEXIST)
    );
    assert_eq!(
        setx(&eggs, "user.s3.meta.color", b"blue", libc::XATTR_REPLACE),
        Err(libc::ENODATA)
    );
    assert_eq!(removex(&eggs, "user.s3.cache_control"), Err(libc::ENODATA));
    assert_eq!(removex(&eggs, "user.s3.meta.color"), Err(libc::ENODATA));
    assert_eq!(head(&ts, &key), before, "refused flags changed the object");

    setx(
        &eggs,
        "user.s3.cache_control",
        b"max-age=60",
        libc::XATTR_CREATE,
    )
    .unwrap();
    setx(
        &eggs,
        "user.s3.content_type",
        b"application/x-pdf",
        libc::XATTR_REPLACE,
    )
    .unwrap();
    setx(&eggs, "user.s3.meta.color", b"blue", 0).unwrap();
    let h = head(&ts, &key);
    assert_eq!(h.get("CacheControl"), Some("max-age=60"));
    assert_eq!(h.get("ContentType"), Some("application/x-pdf"));
    assert_eq!(h.get("meta:color"), Some("blue"));
    assert_eq!(h.get("meta:owner"), Some("alice"));
    assert_eq!(h.get("meta:project"), Some("seed"));
    assert_eq!(getx_str(&eggs, "user.s3.meta.color"), "blue");
    assert_eq!(getx_str(&eggs, "user.s3.cache_control"), "max-age=60");

    removex(&eggs, "user.s3.cache_control").unwrap();
    removex(&eggs, "user.s3.meta.color").unwrap();
    let h = head(&ts, &key);
    assert_eq!(h.get("CacheControl"), None);
    assert_eq!(h.get("meta:color"), None);
    assert_eq!(h.get("meta:owner"), Some("alice"));
    assert_eq!(h.get("ContentType"), Some("application/x-pdf"));
    assert_eq!(getx(&eggs, "user.s3.cache_control"), Err(libc::ENODATA));
    assert!(std::fs::read(&eggs).unwrap() == fx.body);
    m.unmount();
}

#[test]
fn read_only_mount_refuses_header_changes_with_erofs() {
    let Some(ts) = test_server() else { return };
    let fx = Fixture::new(&ts, "xattr-ro");
    let before = head(&ts, &fx.key("eggs.pdf"));
    let m = fx.mount(&ts, &["--read-only"]);
    let eggs = m.join("eggs.pdf");
    assert_eq!(
        setx(&eggs, "user.s3.content_disposition", b"bar.pdf", 0),
        Err(libc::EROFS)
    );
    assert_eq!(removex(&eggs, "user.s3.content_type"), Err(libc::EROFS));
    assert_eq!(head(&ts, &fx.key("eggs.pdf")), before);
    // Links still work on a read-only mount.
    assert_serves(&getx_str(&eggs, "user.s3.presign"), &fx.body);
    m.unmount();
}

#[test]
fn sigv2_links_work_on_rgw() {
    let Some(ts) = test_server() else { return };
    if ts.kind != ServerKind::Rgw {
        common::skip_note("SigV2 links: only RGW supports SigV2");
        return;
    }
    let fx = Fixture::new(&ts, "xattr-v2");
    let m = Mount::new(
        &ts,
        &format!("s3://{}/{}/", ts.bucket, fx.prefix),
        &[],
        "signature = \"v2\"",
    );
    let eggs = m.join("eggs.pdf");
    let url = getfattr(&eggs, "user.s3.presign");
    assert!(
        url.contains("AWSAccessKeyId=") && url.contains("Signature=") && url.contains("Expires="),
        "not a SigV2 link: {url}"
    );
    assert!(!url.contains("X-Amz-"), "{url}");
    assert_serves(&url, &fx.body);
    assert_eq!(curl_status(&["-I"], &url), 403, "HEAD on a GET link");
    assert_eq!(curl_get(&tampered(&url)).status, 403, "tampered link");

    setfattr(&eggs, "user.s3.content_disposition", "bar.pdf");
    let (saved, bytes) = curl_oj(&getfattr(&eggs, "user.s3.presign"));
    assert_eq!(saved, "bar.pdf");
    assert!(bytes == fx.body);
    let (saved, _) = curl_oj(&getfattr(&m.join("spam.pdf"), "user.s3.presign_download"));
    assert_eq!(saved, "spam.pdf");

    let short = getfattr(&eggs, "user.s3.presign.1s");
    std::thread::sleep(Duration::from_secs(3));
    assert_expired(&ts, &short);
    m.unmount();
}

#[test]
fn header_changes_on_keys_with_special_characters() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("xattr-special");
    let names = [
        "c++ notes.pdf",
        "100%25 sure.pdf",
        "a&b=c?d#e.pdf",
        "tilde~ semi;colon.pdf",
        "ünïcödé 日本.pdf",
        "quote'\"s.pdf",
    ];
    for (i, n) in names.iter().enumerate() {
        ts.put_fixture_with(
            &ts.bucket,
            &format!("{prefix}/{n}"),
            &random_bytes(1000 + i, i as u64),
            &[("ContentType", "application/pdf"), ("meta:owner", "alice")],
        );
    }
    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    for (i, n) in names.iter().enumerate() {
        let p = m.join(n);
        let body = random_bytes(1000 + i, i as u64);
        setx(
            &p,
            "user.s3.content_disposition",
            b"attachment; filename=\"x.pdf\"",
            0,
        )
        .unwrap_or_else(|e| panic!("setxattr on {n:?}: errno {e}"));
        let h = head(&ts, &format!("{prefix}/{n}"));
        assert_eq!(
            h.get("ContentDisposition"),
            Some("attachment; filename=\"x.pdf\""),
            "{n}"
        );
        assert_eq!(h.get("ContentType"), Some("application/pdf"), "{n}");
        assert_eq!(h.get("meta:owner"), Some("alice"), "{n}");
        assert_eq!(getx_str(&p, "user.s3.etag"), h.etag, "{n}");
        let url = getx_str(&p, "user.s3.presign");
        let (saved, bytes) = curl_oj(&url);
        assert_eq!(saved, "x.pdf", "{n}");
        assert!(bytes == body, "{n}: bytes via the link");
        assert!(
            std::fs::read(&p).unwrap() == body,
            "{n}: bytes via the mount"
        );
        let dl = getx_str(&p, "user.s3.presign_download");
        assert_eq!(
            curl_get(&dl).header("content-disposition"),
            Some(attachment_for(n).as_str()),
            "{n}"
        );
    }
    m.unmount();
}

#[test]
fn header_change_through_a_multipart_copy_keeps_everything() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("xattr-mpcopy");
    let key = format!("{prefix}/big.bin");
    let body = random_bytes(70 * 1024 * 1024 + 17, 70);
    ts.put_fixture_with(
        &ts.bucket,
        &key,
        &body,
        &[
            ("ContentType", "application/x-big"),
            ("CacheControl", "max-age=5"),
            ("meta:owner", "alice"),
        ],
    );
    let before = head(&ts, &key);
    // A low threshold sends this 70 MiB object through the multipart copy
    // (64 MiB parts: two of them).
    let m = Mount::bucket(
        &ts,
        &format!("{prefix}/"),
        &["--multipart-copy-threshold", "5M"],
    );
    let p = m.join("big.bin");
    // Read part of it first, so cached blocks must follow the new ETag.
    let f = std::fs::File::open(&p).unwrap();
    let mut head_bytes = vec![0u8; 3 * 1024 * 1024];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut head_bytes, 0).unwrap();
    drop(f);

    setfattr(&p, "user.s3.content_disposition", "big download.bin");
    let after = head(&ts, &key);
    assert_eq!(after.size, before.size);
    assert_ne!(after.etag, before.etag);
    assert!(after.etag.ends_with("-2\""), "two parts: {}", after.etag);
    let mut expected = before.headers.clone();
    expected.insert(
        "ContentDisposition".into(),
        attachment_for("big download.bin"),
    );
    assert_eq!(after.headers, expected);
    assert_eq!(getx_str(&p, "user.s3.etag"), after.etag);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), body.len() as u64);
    assert!(std::fs::read(&p).unwrap() == body, "bytes via the mount");
    let (saved, bytes) = curl_oj(&getx_str(&p, "user.s3.presign"));
    assert_eq!(saved, "big download.bin");
    assert!(bytes == body, "bytes via the link");
    m.unmount();
}

#[test]
fn remote_header_change_shows_after_the_ttl() {
    let Some(ts) = test_server() else { return };
    let fx = Fixture::new(&ts, "xattr-remote");
    let m = fx.mount(&ts, &["--metadata-ttl", "1s"]);
    let eggs = m.join("eggs.pdf");
    assert_eq!(
        getx(&eggs, "user.s3.content_disposition"),
        Err(libc::ENODATA)
    );
    let etag1 = getx_str(&eggs, "user.s3.etag");
    assert_eq!(etag1, head(&ts, &fx.key("eggs.pdf")).etag);

    // Someone else rewrites the object with a header and new bytes.
    let v2 = random_bytes(1234, 99);
    ts.put_fixture_with(
        &ts.bucket,
        &fx.key("eggs.pdf"),
        &v2,
        &[("ContentDisposition", "attachment; filename=\"remote.pdf\"")],
    );
    let etag2 = head(&ts, &fx.key("eggs.pdf")).etag;
    assert_ne!(etag1, etag2);
    std::thread::sleep(Duration::from_millis(2500)); // past the 1 s TTL
    assert_eq!(
        getx_str(&eggs, "user.s3.content_disposition"),
        "attachment; filename=\"remote.pdf\""
    );
    assert_eq!(getx_str(&eggs, "user.s3.etag"), etag2);
    assert!(std::fs::read(&eggs).unwrap() == v2);
    m.unmount();
}
