//! Shared helpers for the integration tests.
//!
//! The real-server contract: `scripts/test.sh` starts a server and sets
//! `S3LINKFS_TEST_ENDPOINT`, `S3LINKFS_TEST_REGION`, `S3LINKFS_TEST_ACCESS_KEY`,
//! `S3LINKFS_TEST_SECRET_KEY`, `S3LINKFS_TEST_BUCKET` (an existing bucket the
//! tests may write to) and `S3LINKFS_TEST_SERVER` (`rgw` or `garage`), one run
//! per server. [`test_server`] reads them: when the endpoint is unset the test
//! prints why and is skipped, unless `CI=true`, where it fails, so CI can never
//! pass by skipping.
//!
//! Fixtures are written and inspected with boto3 (scripts/s3fixture.py, in a
//! python3 subprocess), so what the tests check against comes from an
//! independent S3 implementation, and links are fetched with curl, as a user would.

#![allow(dead_code)] // each test crate uses a different subset

pub mod mount;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Which kind of server the test run is against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// Ceph RGW: path style, any region, SigV2 and SigV4.
    Rgw,
    /// Garage: strict SigV4 (region checked), no SigV2.
    Garage,
    /// Anything else named in S3LINKFS_TEST_SERVER.
    Other,
}

/// A real S3 server to test against, from the `S3LINKFS_TEST_*` variables.
#[derive(Clone)]
pub struct TestServer {
    /// `http://127.0.0.1:7480`.
    pub endpoint: String,
    /// Signing region.
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
    /// A bucket the tests may write to.
    pub bucket: String,
    /// Which server this is.
    pub kind: ServerKind,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Prints why a test is skipped (once per test binary for the missing server), on the real stderr: libtest captures `eprintln!`
/// of passing tests, and a skip must be visible.
pub fn skip_note(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// The server named by the environment, or `None` (with a printed message) when
/// `S3LINKFS_TEST_ENDPOINT` is unset. Panics when it is unset and `CI=true`, or
/// when the contract is only half set.
pub fn test_server() -> Option<TestServer> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("S3LINKFS_TEST_ENDPOINT") else {
        if in_ci() {
            panic!(
                "CI=true but S3LINKFS_TEST_ENDPOINT is not set: real-server tests must run in CI \
                 (use scripts/test.sh)"
            );
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            skip_note(
                "S3LINKFS_TEST_ENDPOINT is not set; real-server tests need a server \
             (scripts/test.sh starts RGW and Garage and sets it)",
            )
        });
        return None;
    };
    let need = |name: &str| {
        var(name).unwrap_or_else(|| panic!("S3LINKFS_TEST_ENDPOINT is set but {name} is not"))
    };
    let kind = match var("S3LINKFS_TEST_SERVER").as_deref() {
        Some("rgw") => ServerKind::Rgw,
        Some("garage") => ServerKind::Garage,
        _ => ServerKind::Other,
    };
    Some(TestServer {
        endpoint,
        region: var("S3LINKFS_TEST_REGION").unwrap_or_else(|| "us-east-1".into()),
        access_key: need("S3LINKFS_TEST_ACCESS_KEY"),
        secret_key: need("S3LINKFS_TEST_SECRET_KEY"),
        bucket: need("S3LINKFS_TEST_BUCKET"),
        kind,
    })
}

/// A name no other test (in this or another run) uses: `PREFIX-<time>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{nanos:x}-{}-{n}", std::process::id())
}

/// Deterministic test bytes of length `len`, covering every byte value.
pub fn fixture_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The built `s3linkfs` binary.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3linkfs"));
    cmd.stdin(Stdio::null());
    cmd
}

/// A temporary directory holding a config file (mode 0600) for one test.
pub struct TempConfig {
    dir: tempfile::TempDir,
    /// The config file.
    pub path: PathBuf,
}

impl TempConfig {
    /// Writes `text` as config.toml in a fresh temporary directory.
    pub fn new(text: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write config");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        TempConfig { dir, path }
    }

    /// The directory, usable as a throw-away `$HOME`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A `Command` for the binary with an empty environment except `HOME` (so no real
/// config, `~/.aws` or `AWS_*` variable leaks into a test) and `PATH`.
pub fn isolated_bin(home: &Path) -> Command {
    let mut cmd = bin();
    cmd.env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

impl TestServer {
    /// A config file with one profile `test` for this server; `extra` lines are
    /// appended to the profile table.
    pub fn config(&self, extra: &str) -> TempConfig {
        TempConfig::new(&format!(
            "default_profile = \"test\"\n[profiles.test]\nendpoint = \"{}\"\nregion = \"{}\"\n\
             access_key = \"{}\"\nsecret_key = \"{}\"\n{extra}\n",
            self.endpoint, self.region, self.access_key, self.secret_key
        ))
    }

    /// Runs `s3linkfs presign` with `config` for `s3://bucket/key` and `args`;
    /// returns the URL. Panics (with stderr) when the command fails.
    pub fn presign(&self, config: &TempConfig, key: &str, args: &[&str]) -> String {
        let out = isolated_bin(config.dir())
            .arg("presign")
            .arg("--config")
            .arg(&config.path)
            .arg(format!("s3://{}/{key}", self.bucket))
            .args(args)
            .output()
            .expect("run s3linkfs");
        assert!(
            out.status.success(),
            "s3linkfs presign {key:?} {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).expect("URL is UTF-8");
        assert!(
            url.ends_with('\n') && url.matches('\n').count() == 1,
            "{url:?}"
        );
        url.trim_end().to_string()
    }

    /// Uploads each `(key, body)` to `bucket` with boto3 (one python process for all).
    pub fn put_fixtures(&self, bucket: &str, objects: &[(&str, &[u8])]) {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = String::new();
        for (i, (key, body)) in objects.iter().enumerate() {
            let file = dir.path().join(format!("{i}"));
            std::fs::write(&file, body).unwrap();
            manifest.push_str(&format!(
                "put\t{}\t{}\t{}\n",
                hex::encode(bucket),
                hex::encode(key),
                file.display()
            ));
        }
        self.boto3(&manifest);
    }

    /// Uploads one object with boto3.
    pub fn put_fixture(&self, bucket: &str, key: &str, body: &[u8]) {
        self.put_fixtures(bucket, &[(key, body)]);
    }

    /// HEAD with boto3: the object's size and ETag, or `None` when it does not exist.
    pub fn head(&self, bucket: &str, key: &str) -> Option<(u64, String)> {
        let out = self.boto3(&format!(
            "head\t{}\t{}\t-\n",
            hex::encode(bucket),
            hex::encode(key)
        ));
        let line = String::from_utf8(out.stdout).unwrap();
        let mut fields = line.trim_end().split('\t');
        match (fields.next(), fields.next(), fields.next()) {
            (Some("found"), Some(size), Some(etag)) => Some((size.parse().unwrap(), etag.into())),
            _ => None,
        }
    }

    /// Creates `bucket` with boto3 (an existing bucket of ours is fine).
    pub fn create_bucket(&self, bucket: &str) {
        self.boto3(&format!("mkbucket\t{}\t-\t-\n", hex::encode(bucket)));
    }

    /// GET with boto3: the body and the hex MD5 of it, or `None` when the
    /// object does not exist.
    pub fn download(&self, bucket: &str, key: &str) -> Option<(Vec<u8>, String)> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("body");
        let out = self.boto3(&format!(
            "get\t{}\t{}\t{}\n",
            hex::encode(bucket),
            hex::encode(key),
            file.display()
        ));
        let line = String::from_utf8(out.stdout).unwrap();
        let mut fields = line.trim_end().split('\t');
        match (fields.next(), fields.next()) {
            (Some("found"), Some(md5)) => Some((std::fs::read(&file).unwrap(), md5.to_string())),
            _ => None,
        }
    }

    /// HEAD with boto3, every header the tests look at: `size`, `etag`,
    /// `content-type`, `content-disposition`, `cache-control` and `meta.<name>`
    /// for user metadata (absent ones are left out); `None` when missing.
    pub fn head_headers(
        &self,
        bucket: &str,
        key: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let out = self.boto3(&format!(
            "headx\t{}\t{}\t-\n",
            hex::encode(bucket),
            hex::encode(key)
        ));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        if lines.next() != Some("found") {
            return None;
        }
        Some(
            lines
                .filter_map(|l| l.split_once('\t'))
                .map(|(n, v)| {
                    let v = String::from_utf8(hex::decode(v).unwrap()).unwrap();
                    (n.to_string(), v)
                })
                .collect(),
        )
    }

    /// Keys under `prefix` (no delimiter), sorted.
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.key_lines("list", bucket, prefix)
    }

    /// Keys under `prefix` with a multipart upload in progress
    /// (ListMultipartUploads), one entry per upload, sorted.
    pub fn multipart_uploads(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.key_lines("uploads", bucket, prefix)
    }

    /// Deletes every object under `prefix` and aborts every upload there.
    pub fn delete_prefix(&self, bucket: &str, prefix: &str) {
        self.key_lines("rmprefix", bucket, prefix);
    }

    fn key_lines(&self, op: &str, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self.boto3(&format!(
            "{op}\t{}\t{}\t-\n",
            hex::encode(bucket),
            hex::encode(prefix)
        ));
        let mut keys: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| String::from_utf8(hex::decode(l).unwrap()).unwrap())
            .collect();
        keys.sort();
        keys
    }

    fn boto3(&self, manifest: &str) -> Output {
        let mut child = Command::new(python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/s3fixture.py"))
            .arg("batch")
            .env("S3_ENDPOINT", &self.endpoint)
            .env("S3_REGION", &self.region)
            .env("S3_ACCESS_KEY", &self.access_key)
            .env("S3_SECRET_KEY", &self.secret_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 with boto3 is needed for fixtures (scripts/install-deps.sh)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(manifest.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "boto3 fixture helper failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// An object's HEAD answer as boto3 saw it, for before/after comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadFull {
    /// Content-Length.
    pub size: u64,
    /// ETag, quoted.
    pub etag: String,
    /// Every other header boto3 reports (`ContentType`, `ContentDisposition`,
    /// `CacheControl`, `ContentEncoding`, `ContentLanguage`) and `meta:<name>`
    /// for each `x-amz-meta-<name>`, sorted by name.
    pub headers: std::collections::BTreeMap<String, String>,
}

impl HeadFull {
    /// A header (`ContentType`, ...) or `meta:<name>`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

impl TestServer {
    /// Uploads one object with boto3, with extra `put_object` arguments:
    /// `("ContentType", "application/pdf")`, `("CacheControl", ...)`,
    /// `("ContentDisposition", ...)`, or `("meta:<name>", value)`.
    pub fn put_fixture_with(&self, bucket: &str, key: &str, body: &[u8], extra: &[(&str, &str)]) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("body");
        std::fs::write(&file, body).unwrap();
        let extra: String = extra.iter().map(|(n, v)| format!("{n}\t{v}\n")).collect();
        self.boto3(&format!(
            "put\t{}\t{}\t{}\t{}\n",
            hex::encode(bucket),
            hex::encode(key),
            file.display(),
            hex::encode(extra)
        ));
    }

    /// Uploads `count` small objects `<prefix>f00000`, `<prefix>f00001`, ...
    /// (body `"<i>\n"`) with 16 boto3 threads in one process.
    pub fn put_many(&self, bucket: &str, prefix: &str, count: usize) {
        self.boto3(&format!(
            "putmany\t{}\t{}\t{count}\n",
            hex::encode(bucket),
            hex::encode(prefix)
        ));
    }

    /// How many keys start with `prefix` (a paginated boto3 LIST).
    pub fn count_keys(&self, bucket: &str, prefix: &str) -> usize {
        let out = self.boto3(&format!(
            "count\t{}\t{}\t-\n",
            hex::encode(bucket),
            hex::encode(prefix)
        ));
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Deletes one object with boto3.
    pub fn delete_object(&self, bucket: &str, key: &str) {
        self.boto3(&format!(
            "delete\t{}\t{}\t-\n",
            hex::encode(bucket),
            hex::encode(key)
        ));
    }

    /// HEAD with boto3, with every header and all user metadata; `None` when
    /// the object does not exist.
    pub fn head_full(&self, bucket: &str, key: &str) -> Option<HeadFull> {
        let out = self.boto3(&format!(
            "headfull\t{}\t{}\t-\n",
            hex::encode(bucket),
            hex::encode(key)
        ));
        let text = String::from_utf8(out.stdout).unwrap();
        if text.trim() == "missing" {
            return None;
        }
        let mut headers = std::collections::BTreeMap::new();
        for line in text.lines() {
            let (name, value) = line.split_once('\t').expect("name\tvalue");
            let value = String::from_utf8(hex::decode(value).unwrap()).unwrap();
            headers.insert(name.to_string(), value);
        }
        let size = headers.remove("size").expect("size").parse().unwrap();
        let etag = headers.remove("etag").expect("etag");
        Some(HeadFull {
            size,
            etag,
            headers,
        })
    }
}

/// What curl got for a GET.
#[derive(Debug)]
pub struct Fetched {
    /// HTTP status.
    pub status: u16,
    /// Response headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

impl Fetched {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// GETs `url` with curl exactly as given: no globbing (`-g`), no dot-segment
/// removal (`--path-as-is`), no redirects.
pub fn curl_get(url: &str) -> Fetched {
    let dir = tempfile::tempdir().unwrap();
    let (hfile, bfile) = (dir.path().join("h"), dir.path().join("b"));
    let out = Command::new("curl")
        .args(["-sS", "-g", "--path-as-is", "--max-time", "30", "-o"])
        .arg(&bfile)
        .arg("-D")
        .arg(&hfile)
        .args(["-w", "%{http_code}"])
        .arg(url)
        .output()
        .expect("curl is needed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "curl failed for {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let raw = std::fs::read(&hfile).unwrap_or_default();
    let headers = String::from_utf8_lossy(&raw)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Fetched {
        status,
        headers,
        body: std::fs::read(&bfile).unwrap_or_default(),
    }
}
