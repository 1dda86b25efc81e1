//! Shared helpers for integration tests: where the real test server is.
//!
//! Contract: the `S3LINKFS_TEST_*` environment variables describe one real
//! server (RGW or Garage). When they are unset a real-server test prints why
//! and skips, unless `CI=true`, where it fails so CI can never skip silently.
#![allow(dead_code)]

/// One real S3 server to test against.
#[derive(Clone, Debug)]
pub struct TestServer {
    /// `S3LINKFS_TEST_ENDPOINT`, e.g. `http://127.0.0.1:7480`.
    pub endpoint: String,
    /// `S3LINKFS_TEST_REGION`.
    pub region: String,
    /// `S3LINKFS_TEST_ACCESS_KEY`.
    pub access_key: String,
    /// `S3LINKFS_TEST_SECRET_KEY`.
    pub secret_key: String,
    /// `S3LINKFS_TEST_BUCKET`: an existing, writable bucket.
    pub bucket: String,
    /// `S3LINKFS_TEST_SERVER`: `rgw` or `garage`.
    pub server: String,
}

/// The configured server, or `None` (with a message) when unset; panics
/// when unset and `CI=true`.
pub fn test_server() -> Option<TestServer> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    match var("S3LINKFS_TEST_ENDPOINT") {
        Some(endpoint) => Some(TestServer {
            endpoint,
            region: var("S3LINKFS_TEST_REGION").unwrap_or_else(|| "us-east-1".into()),
            access_key: var("S3LINKFS_TEST_ACCESS_KEY").expect("S3LINKFS_TEST_ACCESS_KEY"),
            secret_key: var("S3LINKFS_TEST_SECRET_KEY").expect("S3LINKFS_TEST_SECRET_KEY"),
            bucket: var("S3LINKFS_TEST_BUCKET").expect("S3LINKFS_TEST_BUCKET"),
            server: var("S3LINKFS_TEST_SERVER").unwrap_or_else(|| "rgw".into()),
        }),
        None => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true but S3LINKFS_TEST_ENDPOINT is unset: real-server tests must run");
            }
            eprintln!("SKIP: S3LINKFS_TEST_ENDPOINT unset; real-server test not run");
            None
        }
    }
}
