//! `s3linkfs presign` against a real server (Ceph RGW or Garage, from the
//! `S3LINKFS_TEST_*` variables; see tests/common): links made by the binary are
//! fetched with curl and must return exactly the bytes boto3 stored, and
//! nothing else may work (tampered or expired links get 403).

mod common;

use std::thread::sleep;
use std::time::Duration;

use common::{ServerKind, TestServer, curl_get, fixture_bytes, test_server, unique_name};
use s3linkfs::disposition::attachment_for;

/// One object under a fresh prefix, stored with boto3; returns its key and bytes.
fn fixture(srv: &TestServer, name: &str, len: usize) -> (String, Vec<u8>) {
    let key = format!("{}/{name}", unique_name("presign"));
    let body = fixture_bytes(len, 7);
    srv.put_fixture(&srv.bucket, &key, &body);
    (key, body)
}

/// Asserts that `url` serves exactly `body`.
fn assert_serves(url: &str, body: &[u8]) {
    let got = curl_get(url);
    assert_eq!(
        got.status,
        200,
        "GET {url}: {}",
        String::from_utf8_lossy(&got.body)
    );
    assert!(
        got.body == body,
        "GET {url}: body differs ({} bytes vs {})",
        got.body.len(),
        body.len()
    );
}

fn assert_status(url: &str, status: u16) {
    let got = curl_get(url);
    assert_eq!(
        got.status,
        status,
        "GET {url}: {}",
        String::from_utf8_lossy(&got.body)
    );
}

/// `url` with the last digit in query parameter `name`'s value changed, so the
/// value stays well-formed (a date stays a date) but differs from what was signed.
fn tamper(url: &str, name: &str) -> String {
    let start = url
        .find(&format!("&{name}="))
        .or_else(|| url.find(&format!("?{name}=")));
    let start = start.expect("parameter present") + name.len() + 2;
    let end = url[start..].find('&').map_or(url.len(), |i| start + i);
    let pos = start
        + url[start..end]
            .rfind(|c: char| c.is_ascii_digit())
            .expect("a digit");
    let repl = if &url[pos..=pos] == "0" { "1" } else { "0" };
    format!("{}{repl}{}", &url[..pos], &url[pos + 1..])
}

/// Asserts an expired link is refused. RGW answers 403 AccessDenied; Garage 2.5
/// answers 400 InvalidRequest "Date is too old" instead, which is accepted for it
/// only, by its exact message.
fn assert_expired(srv: &TestServer, url: &str) {
    let got = curl_get(url);
    let body = String::from_utf8_lossy(&got.body);
    let garage_quirk =
        srv.kind == ServerKind::Garage && got.status == 400 && body.contains("Date is too old");
    assert!(
        got.status == 403 || garage_quirk,
        "expired link not refused: {} {url}\n{body}",
        got.status
    );
}

/// The signature versions this server accepts for links.
fn versions(srv: &TestServer) -> Vec<&'static str> {
    if srv.kind == ServerKind::Rgw {
        vec!["v4", "v2"]
    } else {
        vec!["v4"]
    }
}

#[test]
fn link_returns_exact_bytes() {
    let Some(srv) = test_server() else { return };
    let cfg = srv.config("");
    let (key, body) = fixture(&srv, "data.bin", 300_000);
    assert_eq!(srv.head(&srv.bucket, &key).map(|h| h.0), Some(300_000));
    for v in versions(&srv) {
        let url = srv.presign(&cfg, &key, &["--signature", v]);
        assert_serves(&url, &body);
    }
}

#[test]
fn tampered_link_is_refused() {
    let Some(srv) = test_server() else { return };
    let cfg = srv.config("");
    let (key, body) = fixture(&srv, "t.txt", 100);
    let url = srv.presign(&cfg, &key, &["--expires-in", "1h"]);
    assert_serves(&url, &body);
    assert_status(&tamper(&url, "X-Amz-Signature"), 403);
    assert_status(&tamper(&url, "X-Amz-Expires"), 403);
    assert_status(&tamper(&url, "X-Amz-Date"), 403);
    // another key with the same signature
    let other = url.replacen("/t.txt?", "/u.txt?", 1);
    assert_ne!(other, url);
    assert_status(&other, 403);
    if srv.kind == ServerKind::Rgw {
        let url = srv.presign(&cfg, &key, &["--signature", "v2", "--expires-in", "1h"]);
        assert_serves(&url, &body);
        assert_status(&tamper(&url, "Signature"), 403);
        assert_status(&tamper(&url, "Expires"), 403);
    }
}

#[test]
fn expired_link_is_refused() {
    let Some(srv) = test_server() else { return };
    let cfg = srv.config("");
    let (key, _) = fixture(&srv, "short-lived", 10);
    let urls: Vec<String> = versions(&srv)
        .into_iter()
        .map(|v| srv.presign(&cfg, &key, &["--signature", v, "--expires-in", "1s"]))
        .collect();
    sleep(Duration::from_secs(3));
    for url in urls {
        assert_expired(&srv, &url);
    }
}

/// Keys that trip naive encoders: every one must round-trip through a link.
fn special_keys(prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = [
        "with space.txt",
        "plus+sign",
        "per%cent",
        "already%20encoded",
        "question?mark",
        "hash#tag",
        "amp&and=equals",
        "tilde~",
        "double//slash",
        "./dot/../dotdot",
        "..",
        "trailing/",
        "ünïcödé/日本語 ☃.txt",
        "semi;colon,comma:at@dollar$",
        "quote'\"paren()star*",
        "brackets[]{}",
        "caret^pipe|backslash\\",
    ]
    .iter()
    .map(|k| format!("{prefix}/{k}"))
    .collect();
    let long = format!("{prefix}/long-");
    keys.push(format!("{long}{}", "x".repeat(1024 - long.len())));
    assert_eq!(keys.last().unwrap().len(), 1024);
    keys
}

#[test]
fn special_keys_work() {
    let Some(srv) = test_server() else { return };
    let cfg = srv.config("");
    let prefix = unique_name("keys");
    let keys = special_keys(&prefix);
    let objects: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), k.as_bytes())).collect();
    srv.put_fixtures(&srv.bucket, &objects);
    for key in &keys {
        assert!(
            srv.head(&srv.bucket, key).is_some(),
            "boto3 did not store {key:?}"
        );
        for v in versions(&srv) {
            let url = srv.presign(&cfg, key, &["--signature", v]);
            let got = curl_get(&url);
            assert_eq!(
                (got.status, got.body.as_slice()),
                (200, key.as_bytes()),
                "{v} key {key:?}: {url}\n{}",
                String::from_utf8_lossy(&got.body)
            );
        }
    }
}

#[test]
fn download_as_sets_content_disposition() {
    let Some(srv) = test_server() else { return };
    let cfg = srv.config("");
    let (key, body) = fixture(&srv, "blob", 64);
    for name in [
        "report.pdf",
        "Q1 report (final).pdf",
        "résumé ☃.pdf",
        "数据.csv",
    ] {
        for v in versions(&srv) {
            let url = srv.presign(&cfg, &key, &["--signature", v, "--download-as", name]);
            let got = curl_get(&url);
            assert_eq!(got.status, 200, "{v} {name}: {url}");
            assert_eq!(got.body, body);
            let header = got.header("content-disposition");
            assert_eq!(
                header,
                Some(attachment_for(name).as_str()),
                "{v} {name}: {url}"
            );
            if !name.is_ascii() {
                assert!(header.unwrap().contains("filename*=UTF-8''"), "{header:?}");
            }
        }
    }
}

#[test]
fn sigv2_links_work_on_rgw() {
    let Some(srv) = test_server() else { return };
    if srv.kind != ServerKind::Rgw {
        common::skip_note("SigV2 links are only tested on RGW (S3LINKFS_TEST_SERVER=rgw)");
        return;
    }
    let cfg = srv.config("signature = \"v2\"\npresign_expires = \"30d\"");
    let (key, body) = fixture(&srv, "v2 object+1.txt", 1000);
    let url = srv.presign(&cfg, &key, &[]);
    assert!(
        url.contains("AWSAccessKeyId=") && url.contains("Signature="),
        "{url}"
    );
    assert_serves(&url, &body);
}
