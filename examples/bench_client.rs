//! Benchmark driver for the S3 client: a 1 GiB GET through `HttpClient`
//! against curl on the same object, and a 10k-key listing against
//! `aws s3api list-objects-v2`, all in the same run. Prints ratios.
//!
//! Reads the server from the `S3LINKFS_TEST_*` variables (see
//! `tests/common/mod.rs`); `scripts/bench-client.sh` sets them. Creates its
//! fixtures under `bench/` in the bucket once and reuses them.

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use s3linkfs::s3::http::{ClientConfig, HttpClient};
use s3linkfs::s3::{GetRequest, ListRequest, ObjectClient, ObjectHeaders};
use s3linkfs::sign::{Addressing, Credentials, Endpoint, Scheme};

const GIB: u64 = 1024 * 1024 * 1024;
const PART: u64 = 64 * 1024 * 1024;
const BIG_KEY: &str = "bench/1gib.bin";
const LIST_PREFIX: &str = "bench/list10k/";
const LIST_KEYS: usize = 10_000;
const RUNS: usize = 3;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set"))
}

fn endpoint(url: &str) -> Endpoint {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", r)) => (Scheme::Https, r),
        Some((_, r)) => (Scheme::Http, r),
        None => (Scheme::Http, url),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().ok()),
        None => (rest.to_string(), None),
    };
    Endpoint { scheme, host, port }
}

async fn ensure_big_object(c: &HttpClient, bucket: &str) {
    if let Ok(h) = c.head_object(bucket, BIG_KEY).await
        && h.size == GIB
    {
        return;
    }
    eprintln!("creating {BIG_KEY} (1 GiB)...");
    let id = c
        .create_multipart_upload(bucket, BIG_KEY, &ObjectHeaders::default())
        .await
        .expect("create upload");
    let mut parts = Vec::new();
    for n in 0..(GIB / PART) {
        let body = Bytes::from(
            (0..PART)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(n as u8))
                .collect::<Vec<u8>>(),
        );
        parts.push(
            c.upload_part(bucket, BIG_KEY, &id, n as u32 + 1, body)
                .await
                .expect("part"),
        );
    }
    c.complete_multipart_upload(bucket, BIG_KEY, &id, &parts)
        .await
        .expect("complete");
}

async fn ensure_listing(c: &HttpClient, bucket: &str) {
    if count_keys(c, bucket).await == LIST_KEYS {
        return;
    }
    eprintln!("creating {LIST_KEYS} keys under {LIST_PREFIX}...");
    let keys: Vec<String> = (0..LIST_KEYS)
        .map(|i| format!("{LIST_PREFIX}{:02}/key-{i:05}", i % 50))
        .collect();
    futures_util::stream::iter(keys)
        .map(|k| {
            let c = c.clone();
            let bucket = bucket.to_string();
            async move {
                c.put_object(
                    &bucket,
                    &k,
                    &ObjectHeaders::default(),
                    Bytes::from_static(b"x"),
                )
                .await
                .expect("put");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

async fn count_keys(c: &HttpClient, bucket: &str) -> usize {
    let mut req = ListRequest {
        bucket: bucket.to_string(),
        prefix: LIST_PREFIX.to_string(),
        ..ListRequest::default()
    };
    let mut n = 0;
    loop {
        let page = c.list_objects(&req).await.expect("list");
        n += page.objects.len();
        match page.next_continuation_token {
            Some(t) => req.continuation_token = Some(t),
            None => return n,
        }
    }
}

async fn client_get(c: &HttpClient, bucket: &str) -> Duration {
    let t0 = Instant::now();
    let out = c
        .get_object(bucket, BIG_KEY, &GetRequest::default())
        .await
        .expect("get");
    let mut body = out.body;
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        n += chunk.expect("chunk").len() as u64;
    }
    assert_eq!(n, GIB);
    t0.elapsed()
}

fn curl_get(url: &str, region: &str, ak: &str, sk: &str) -> Duration {
    let t0 = Instant::now();
    let out = Command::new("curl")
        .args([
            "-sS",
            "-f",
            "-o",
            "/dev/null",
            "--aws-sigv4",
            &format!("aws:amz:{region}:s3"),
            "--user",
            &format!("{ak}:{sk}"),
            "-H",
            "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            url,
        ])
        .status()
        .expect("run curl");
    assert!(out.success(), "curl failed");
    t0.elapsed()
}

fn aws_list(endpoint: &str, region: &str, ak: &str, sk: &str, bucket: &str) -> Duration {
    let t0 = Instant::now();
    let out = Command::new("aws")
        .args([
            "--endpoint-url",
            endpoint,
            "s3api",
            "list-objects-v2",
            "--bucket",
            bucket,
            "--prefix",
            LIST_PREFIX,
            "--output",
            "json",
        ])
        .env("AWS_ACCESS_KEY_ID", ak)
        .env("AWS_SECRET_ACCESS_KEY", sk)
        .env("AWS_DEFAULT_REGION", region)
        .env_remove("AWS_CA_BUNDLE")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run aws");
    assert!(out.success(), "aws failed");
    t0.elapsed()
}

fn best(v: &[Duration]) -> Duration {
    v.iter().copied().min().unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let url = env("S3LINKFS_TEST_ENDPOINT");
    let region = env("S3LINKFS_TEST_REGION");
    let ak = env("S3LINKFS_TEST_ACCESS_KEY");
    let sk = env("S3LINKFS_TEST_SECRET_KEY");
    let bucket = env("S3LINKFS_TEST_BUCKET");
    let cfg = ClientConfig::new(
        endpoint(&url),
        region.clone(),
        Credentials {
            access_key: ak.clone(),
            secret_key: sk.clone(),
            session_token: None,
        },
        Addressing::Path,
    );
    let c = HttpClient::new(cfg).expect("client");
    ensure_big_object(&c, &bucket).await;
    ensure_listing(&c, &bucket).await;
    let object_url = format!("{}/{bucket}/{BIG_KEY}", url.trim_end_matches('/'));

    // Interleave the runs so drift on the machine hits both sides alike.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        ours.push(client_get(&c, &bucket).await);
        theirs.push(curl_get(&object_url, &region, &ak, &sk));
    }
    let (o, t) = (best(&ours), best(&theirs));
    let mib_s = |d: Duration| 1024.0 / d.as_secs_f64();
    println!(
        "GET 1 GiB   client {:7.3} s ({:6.0} MiB/s)   curl {:7.3} s ({:6.0} MiB/s)   client/curl throughput {:.2}",
        o.as_secs_f64(),
        mib_s(o),
        t.as_secs_f64(),
        mib_s(t),
        t.as_secs_f64() / o.as_secs_f64()
    );

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t0 = Instant::now();
        assert_eq!(count_keys(&c, &bucket).await, LIST_KEYS);
        ours.push(t0.elapsed());
        theirs.push(aws_list(&url, &region, &ak, &sk, &bucket));
    }
    let (o, t) = (best(&ours), best(&theirs));
    println!(
        "LIST 10k    client {:7.3} s   aws s3api {:7.3} s   speed-up {:.1}x",
        o.as_secs_f64(),
        t.as_secs_f64(),
        t.as_secs_f64() / o.as_secs_f64()
    );
}
