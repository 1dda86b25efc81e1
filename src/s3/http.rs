//! The real [`ObjectClient`]: S3 over reqwest (HTTP/1.1, rustls), SigV4-signed.
//!
//! Exists to turn each S3 operation into one signed HTTP exchange with the
//! failure behaviour the filesystem needs: bounded waits, bounded retries,
//! typed errors.
//!
//! Guarantees:
//! - every request carries a fresh SigV4 `Authorization` (signed again on
//!   each retry), `x-amz-date`, `x-amz-content-sha256` and, when the
//!   credentials have one, `x-amz-security-token`; every header sent is signed;
//! - keys are encoded once, segment by segment ([`encode_key_path`]); keys
//!   with a `.` or `..` segment are refused ([`S3Error::InvalidRequest`])
//!   because the URL layer would normalise them into a different key;
//! - no wait is unbounded: connecting is bounded by `connect_timeout`, the
//!   answer's head by `first_byte_timeout` (plus the time to send the body at
//!   `min_send_rate`), and every chunk of a body by `stall_timeout`;
//! - retries happen only for transport errors, timeouts, 429, 500, 502, 503,
//!   504, `SlowDown` and `InternalError` (also when sent inside a 200), with
//!   exponential backoff and full jitter, at most `max_attempts` attempts, and
//!   no new attempt starts after `max_retry_time`; a dead server therefore
//!   fails within `max_retry_time + connect_timeout + first_byte_timeout`;
//! - a GetObject body that breaks or stalls midway is resumed from the
//!   next byte with `Range` and `If-Match` (same attempt and time budget as
//!   a request), so the reader sees one gapless body of one object version;
//! - a CompleteMultipartUpload whose retry finds the upload gone confirms
//!   with a HEAD that the object was completed, and then reports success;
//! - every failed attempt is logged (`tracing::warn`) with operation, bucket,
//!   key, status, S3 code and request id, never with credentials or the
//!   `Authorization` header;
//! - the environment's CA settings (`SSL_CERT_FILE`, `AWS_CA_BUNDLE`, ...)
//!   can never stop the client from being built; for `http` endpoints no
//!   certificate is loaded at all.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use time::OffsetDateTime;

use super::xml;
use super::{
    BucketInfo, ByteStream, CompletedPart, CopyOutput, CopyRequest, GetOutput, GetRequest,
    HeadOutput, ListPage, ListRequest, MetadataDirective, MultipartUploadInfo, ObjectClient,
    ObjectHeaders, PutOutput, S3Error, S3ErrorCode,
};
use crate::config::Profile;
use crate::sign::encode::{encode_key_path, uri_encode};
use crate::sign::v4::{
    EMPTY_SHA256, HeaderSigningInput, UNSIGNED_PAYLOAD, amz_date, authorization_header, sha256_hex,
};
use crate::sign::{Addressing, Credentials, Endpoint, Scheme};

/// Largest error body read into memory; S3 error documents are < 1 KiB.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Largest non-object answer (listings, copy results) read into memory; a
/// 1000-key listing with long keys is well under 4 MiB.
const MAX_XML_BODY: usize = 16 * 1024 * 1024;

/// How the client connects, waits and retries. Build with [`ClientConfig::new`]
/// (or [`ClientConfig::from_profile`]) and adjust fields.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Where requests go.
    pub endpoint: Endpoint,
    /// Signing region (Garage checks it; RGW ignores it).
    pub region: String,
    /// Access key, secret and optional session token.
    pub credentials: Credentials,
    /// Path style or virtual-hosted style.
    pub addressing: Addressing,
    /// Bound on establishing a TCP (+TLS) connection.
    pub connect_timeout: Duration,
    /// Bound on waiting for the head of an answer once the request is sent.
    pub first_byte_timeout: Duration,
    /// Bound on waiting for each next chunk of a body being received.
    pub stall_timeout: Duration,
    /// Slowest acceptable upload rate in bytes/s: a request with a body gets
    /// `body_len / min_send_rate` on top of `first_byte_timeout`.
    pub min_send_rate: u64,
    /// Attempts per request, the first included (1 disables retries).
    pub max_attempts: u32,
    /// No retry starts later than this after the first attempt began.
    pub max_retry_time: Duration,
    /// First backoff ceiling; doubles per retry (full jitter below it).
    pub base_backoff: Duration,
    /// Largest backoff ceiling.
    pub max_backoff: Duration,
    /// Idle keep-alive connections kept per host.
    pub pool_size: usize,
    /// Idle connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Bodies of at least this many bytes are sent with `UNSIGNED-PAYLOAD`
    /// instead of their SHA-256; `None` always hashes.
    pub unsigned_payload_from: Option<u64>,
    /// Also send a copy's ETag condition as `x-amz-copy-if-match`: Ceph RGW
    /// 16.2 ignores the standard `x-amz-copy-source-if-match` on CopyObject
    /// (and copies anyway) but honours this name; other servers ignore it.
    pub rgw_copy_if_match: bool,
}

impl ClientConfig {
    /// A configuration with the defaults below for everything but the
    /// destination and the credentials.
    pub fn new(
        endpoint: Endpoint,
        region: impl Into<String>,
        credentials: Credentials,
        addressing: Addressing,
    ) -> Self {
        // Over TLS the body is integrity-protected anyway, so large bodies
        // skip the hash (about 2.5 ms of CPU per MiB); over plain HTTP the
        // signed hash is the only protection a body has, so always hash.
        let unsigned_payload_from = match endpoint.scheme {
            Scheme::Https => Some(1024 * 1024),
            Scheme::Http => None,
        };
        ClientConfig {
            endpoint,
            region: region.into(),
            credentials,
            addressing,
            // Covers two SYN retransmissions (1 s, 3 s) and a TLS handshake;
            // a server that takes longer is as good as down.
            connect_timeout: Duration::from_secs(5),
            // A CopyObject of several GiB may legitimately take this long
            // before its first byte on a busy server; reads answer in ms.
            first_byte_timeout: Duration::from_secs(60),
            // Healthy streams deliver a chunk at least every few ms; 30 s
            // without one means a dead peer or a broken path.
            stall_timeout: Duration::from_secs(30),
            // 256 KiB/s: an 8 MiB part gets an extra 32 s, a 5 GiB single
            // put about 5.5 h; slower links should lower it.
            min_send_rate: 256 * 1024,
            // With the backoffs below, 5 attempts span a few seconds of
            // throttling, which is what S3 asks clients to ride out.
            max_attempts: 5,
            // Caps the retries of one request so an FS call cannot block for
            // minutes when the service is down.
            max_retry_time: Duration::from_secs(20),
            // The AWS SDKs' base; small enough for a blip, growing fast.
            base_backoff: Duration::from_millis(100),
            // Long enough to relieve a throttling server, short enough for a
            // user waiting on `ls`.
            max_backoff: Duration::from_secs(5),
            // The filesystem runs tens of requests at once (prefetch, parallel
            // part uploads); keeping that many warm avoids handshakes.
            pool_size: 32,
            // Below the 60 s idle timeout of common load balancers, so we
            // never reuse a connection the far side is about to drop.
            pool_idle_timeout: Duration::from_secs(30),
            unsigned_payload_from,
            // Without it a header change on RGW could clobber a concurrent
            // writer; the extra header costs nothing elsewhere.
            rgw_copy_if_match: true,
        }
    }

    /// The configuration for a validated profile, with the defaults of [`ClientConfig::new`].
    pub fn from_profile(profile: &Profile) -> Self {
        Self::new(
            profile.endpoint.clone(),
            profile.region.clone(),
            profile.credentials.clone(),
            profile.addressing,
        )
    }
}

/// `host[:port]`, the port omitted when it is the scheme's default (that is
/// also what the URL layer sends as `Host`).
fn authority(endpoint: &Endpoint) -> String {
    let default = match endpoint.scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    };
    match endpoint.port {
        Some(p) if p != default => format!("{}:{p}", endpoint.host),
        _ => endpoint.host.clone(),
    }
}

/// The real S3 client. Cheap to clone (clones share one connection pool);
/// any number of requests may run at once.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    cfg: ClientConfig,
    scheme: &'static str,
    authority: String,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("endpoint", &self.inner.authority)
            .field("region", &self.inner.cfg.region)
            .field("credentials", &self.inner.cfg.credentials)
            .finish_non_exhaustive()
    }
}

/// One S3 request, before signing.
struct Call<'a> {
    op: &'static str,
    method: Method,
    bucket: &'a str,
    key: Option<&'a str>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl<'a> Call<'a> {
    fn new(op: &'static str, method: Method, bucket: &'a str, key: Option<&'a str>) -> Self {
        Call {
            op,
            method,
            bucket,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_string(), value.into()));
        self
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }
}

/// Attempt counting and backoff for one request.
struct Retrier<'a> {
    cfg: &'a ClientConfig,
    attempts: u32,
    started: Instant,
}

impl<'a> Retrier<'a> {
    fn new(cfg: &'a ClientConfig) -> Self {
        Retrier {
            cfg,
            attempts: 0,
            started: Instant::now(),
        }
    }

    /// How long to sleep before the next attempt, or `None` to give up.
    fn backoff(&self, err: &S3Error) -> Option<Duration> {
        if !err.is_retryable() || self.attempts >= self.cfg.max_attempts {
            return None;
        }
        let exp = self.attempts.saturating_sub(1).min(20);
        let ceiling = self
            .cfg
            .base_backoff
            .saturating_mul(1u32 << exp)
            .min(self.cfg.max_backoff);
        // Full jitter: uniform in [0, ceiling].
        let delay = ceiling.mul_f64(fastrand::f64());
        if self.started.elapsed() + delay > self.cfg.max_retry_time {
            return None;
        }
        Some(delay)
    }

    /// The error to report after the last attempt.
    fn give_up(&self, err: S3Error) -> S3Error {
        if err.is_retryable() && self.attempts > 1 {
            S3Error::RetriesExhausted {
                attempts: self.attempts,
                last: Box::new(err),
            }
        } else {
            err
        }
    }
}

/// Renders a transport error with its causes (reqwest's own message is terse).
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        let _ = write!(s, ": {cause}");
        src = cause.source();
    }
    s
}

fn transport_error(e: reqwest::Error) -> S3Error {
    let e = e.without_url();
    if e.is_timeout() {
        S3Error::Timeout(describe(&e))
    } else if e.is_connect() {
        S3Error::Transport(format!("connect: {}", describe(&e)))
    } else {
        S3Error::Transport(describe(&e))
    }
}

/// The code a body-less error answer (HEAD, or a proxy's page) stands for.
fn code_for_status(status: u16) -> S3ErrorCode {
    match status {
        404 => S3ErrorCode::NoSuchKey,
        403 => S3ErrorCode::AccessDenied,
        412 => S3ErrorCode::PreconditionFailed,
        500 => S3ErrorCode::InternalError,
        503 => S3ErrorCode::SlowDown,
        other => S3ErrorCode::Other(format!("HTTP{other}")),
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Parses an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`).
pub fn parse_http_date(s: &str) -> Result<SystemTime, S3Error> {
    use time::format_description::well_known::Rfc2822;
    const IMF: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let s = s.trim();
    time::PrimitiveDateTime::parse(s, IMF)
        .map(|t| t.assume_utc())
        .or_else(|_| OffsetDateTime::parse(s, &Rfc2822))
        .map(SystemTime::from)
        .map_err(|e| S3Error::InvalidResponse(format!("bad HTTP date {s:?}: {e}")))
}

/// The request headers that carry `h` (for PutObject, CreateMultipartUpload
/// and CopyObject with `REPLACE`).
pub fn object_headers_to_pairs(h: &ObjectHeaders) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(12 + h.metadata.len());
    let fields: [(&str, &Option<String>); 12] = [
        ("content-type", &h.content_type),
        ("content-disposition", &h.content_disposition),
        ("cache-control", &h.cache_control),
        ("content-encoding", &h.content_encoding),
        ("content-language", &h.content_language),
        ("expires", &h.expires),
        ("x-amz-storage-class", &h.storage_class),
        (
            "x-amz-website-redirect-location",
            &h.website_redirect_location,
        ),
        ("x-amz-server-side-encryption", &h.server_side_encryption),
        (
            "x-amz-server-side-encryption-aws-kms-key-id",
            &h.sse_kms_key_id,
        ),
        ("x-amz-server-side-encryption-context", &h.sse_context),
        (
            "x-amz-server-side-encryption-bucket-key-enabled",
            &h.sse_bucket_key_enabled,
        ),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            out.push((name.to_string(), v.clone()));
        }
    }
    for (k, v) in &h.metadata {
        out.push((format!("x-amz-meta-{}", k.to_ascii_lowercase()), v.clone()));
    }
    out
}

/// The [`ObjectHeaders`] an answer's headers describe.
pub fn object_headers_from_response(headers: &HeaderMap) -> ObjectHeaders {
    let get = |n: &str| header_str(headers, n);
    let mut metadata = std::collections::BTreeMap::new();
    for (name, value) in headers {
        if let Some(meta) = name.as_str().strip_prefix("x-amz-meta-") {
            let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
            metadata
                .entry(meta.to_string())
                .and_modify(|old: &mut String| {
                    old.push(',');
                    old.push_str(&v);
                })
                .or_insert(v);
        }
    }
    ObjectHeaders {
        content_type: get("content-type"),
        content_disposition: get("content-disposition"),
        cache_control: get("cache-control"),
        content_encoding: get("content-encoding"),
        content_language: get("content-language"),
        expires: get("expires"),
        storage_class: get("x-amz-storage-class"),
        website_redirect_location: get("x-amz-website-redirect-location"),
        server_side_encryption: get("x-amz-server-side-encryption"),
        sse_kms_key_id: get("x-amz-server-side-encryption-aws-kms-key-id"),
        sse_context: get("x-amz-server-side-encryption-context"),
        sse_bucket_key_enabled: get("x-amz-server-side-encryption-bucket-key-enabled"),
        metadata,
    }
}

/// `/bucket/<key encoded per segment>`, as `x-amz-copy-source` wants it.
pub fn copy_source(bucket: &str, key: &str) -> String {
    format!("/{}/{}", uri_encode(bucket), encode_key_path(key))
}

fn check_key(key: &str) -> Result<(), S3Error> {
    if key.is_empty() {
        return Err(S3Error::InvalidRequest("empty object key".into()));
    }
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(S3Error::InvalidRequest(format!(
            "key {key:?} has a '.' or '..' segment, which HTTP URL handling would rewrite"
        )));
    }
    Ok(())
}

fn check_bucket(bucket: &str) -> Result<(), S3Error> {
    if bucket.is_empty() || bucket.contains('/') {
        return Err(S3Error::InvalidRequest(format!(
            "invalid bucket name {bucket:?}"
        )));
    }
    Ok(())
}

impl HttpClient {
    /// Builds a client; fails only on an invalid configuration.
    pub fn new(cfg: ClientConfig) -> Result<Self, S3Error> {
        if cfg.max_attempts == 0 {
            return Err(S3Error::InvalidRequest("max_attempts must be >= 1".into()));
        }
        if cfg.min_send_rate == 0 {
            return Err(S3Error::InvalidRequest("min_send_rate must be > 0".into()));
        }
        let builder = |native_roots: bool| {
            reqwest::Client::builder()
                .connect_timeout(cfg.connect_timeout)
                .pool_max_idle_per_host(cfg.pool_size)
                .pool_idle_timeout(cfg.pool_idle_timeout)
                .tcp_nodelay(true)
                .tcp_keepalive(Duration::from_secs(30))
                .http1_only()
                .redirect(reqwest::redirect::Policy::none())
                .tls_built_in_native_certs(native_roots)
                .build()
        };
        let http = match cfg.endpoint.scheme {
            // Plain HTTP needs no certificate: don't even read the CA settings.
            Scheme::Http => builder(false),
            Scheme::Https => builder(true).or_else(|e| {
                tracing::warn!(
                    error = %describe(&e),
                    "could not load the system CA certificates (check SSL_CERT_FILE / SSL_CERT_DIR); continuing without them"
                );
                builder(false)
            }),
        }
        .map_err(|e| S3Error::InvalidRequest(format!("building HTTP client: {}", describe(&e))))?;
        let scheme = match cfg.endpoint.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let authority = authority(&cfg.endpoint);
        Ok(HttpClient {
            inner: Arc::new(Inner {
                http,
                cfg,
                scheme,
                authority,
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// Host (with port) and encoded path of a request.
    fn host_and_path(&self, bucket: &str, key: Option<&str>) -> (String, String) {
        let inner = &self.inner;
        let key_path = key.map(encode_key_path);
        match (bucket.is_empty(), inner.cfg.addressing) {
            (true, _) => (inner.authority.clone(), "/".to_string()),
            (false, Addressing::Path) => {
                let mut p = format!("/{}", uri_encode(bucket));
                if let Some(k) = key_path {
                    p.push('/');
                    p.push_str(&k);
                }
                (inner.authority.clone(), p)
            }
            (false, Addressing::Virtual) => (
                format!("{}.{}", bucket, inner.authority),
                format!("/{}", key_path.unwrap_or_default()),
            ),
        }
    }

    /// Signs and sends one attempt; returns the answer if its status is a
    /// success, or the typed error (having read the error body).
    async fn attempt(&self, call: &Call<'_>) -> Result<reqwest::Response, S3Error> {
        let cfg = &self.inner.cfg;
        let (host, path) = self.host_and_path(call.bucket, call.key);
        let now = SystemTime::now();
        let payload_hash = if call.body.is_empty() {
            EMPTY_SHA256.to_string()
        } else if cfg
            .unsigned_payload_from
            .is_some_and(|min| call.body.len() as u64 >= min)
        {
            UNSIGNED_PAYLOAD.to_string()
        } else {
            sha256_hex(&call.body)
        };
        let mut headers: Vec<(String, String)> = Vec::with_capacity(call.headers.len() + 4);
        headers.push(("host".into(), host.clone()));
        headers.push(("x-amz-date".into(), amz_date(now)));
        headers.push(("x-amz-content-sha256".into(), payload_hash.clone()));
        if let Some(token) = &cfg.credentials.session_token {
            headers.push(("x-amz-security-token".into(), token.clone()));
        }
        headers.extend(call.headers.iter().cloned());
        let auth = authorization_header(
            &HeaderSigningInput {
                method: call.method.as_str(),
                canonical_path: &path,
                query: &call.query,
                headers: &headers,
                payload_hash: &payload_hash,
                region: &cfg.region,
                service: "s3",
                now,
            },
            &cfg.credentials,
        );

        let mut url = format!("{}://{}{}", self.inner.scheme, host, path);
        for (i, (k, v)) in call.query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&uri_encode(k));
            if !v.is_empty() {
                url.push('=');
                url.push_str(&uri_encode(v));
            }
        }
        let mut map = HeaderMap::with_capacity(headers.len() + 1);
        for (k, v) in headers
            .iter()
            .chain(std::iter::once(&("authorization".to_string(), auth)))
        {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| S3Error::InvalidRequest(format!("bad header name {k:?}")))?;
            let value = HeaderValue::from_bytes(v.as_bytes()).map_err(|_| {
                S3Error::InvalidRequest(format!("header {k} has a forbidden character"))
            })?;
            map.append(name, value);
        }
        if call.method == Method::PUT || call.method == Method::POST {
            // RGW answers 411 to a body-less PUT/POST without it, and hyper
            // leaves it out for an empty body.
            map.insert(
                reqwest::header::CONTENT_LENGTH,
                HeaderValue::from(call.body.len()),
            );
        }
        let request = self
            .inner
            .http
            .request(call.method.clone(), &url)
            .headers(map)
            .body(call.body.clone());

        let send_allowance =
            Duration::from_secs_f64(call.body.len() as f64 / cfg.min_send_rate as f64);
        let wait = cfg.first_byte_timeout + send_allowance;
        let response = match tokio::time::timeout(wait, request.send()).await {
            Err(_) => {
                return Err(S3Error::Timeout(format!(
                    "no answer within {:.1} s",
                    wait.as_secs_f64()
                )));
            }
            Ok(Err(e)) => return Err(transport_error(e)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let request_id = header_str(response.headers(), "x-amz-request-id");
        let status = status.as_u16();
        let body = if call.method == Method::HEAD {
            Bytes::new()
        } else {
            // A broken error body still leaves the status to go by.
            read_body(response, cfg.stall_timeout, MAX_ERROR_BODY)
                .await
                .unwrap_or_default()
        };
        Err(match xml::parse_error(&body) {
            Some(e) if !e.code.is_empty() => e.into_error(status, request_id.as_deref()),
            _ => S3Error::Service {
                status,
                code: code_for_status(status),
                message: String::new(),
                request_id: request_id.unwrap_or_default(),
            },
        })
    }

    fn log_failure(&self, call: &Call<'_>, err: &S3Error, attempt: u32) {
        let (status, code) = match err {
            S3Error::Service { status, code, .. } => (*status, code.as_str()),
            _ => (0, ""),
        };
        tracing::warn!(
            op = call.op,
            method = %call.method,
            bucket = call.bucket,
            key = call.key.unwrap_or(""),
            status,
            code,
            request_id = err.request_id(),
            attempt,
            error = %err,
            "S3 request failed"
        );
    }

    /// Runs `call` with retries, reading the whole answer body and handing
    /// it to `parse`; a retryable parse error (an `<Error>` inside a 200) is
    /// retried like any other. Returns the attempts made with the result.
    async fn run<T>(
        &self,
        call: &Call<'_>,
        parse: impl Fn(&HeaderMap, Bytes) -> Result<T, S3Error>,
    ) -> (Result<T, S3Error>, u32) {
        let mut retry = Retrier::new(&self.inner.cfg);
        loop {
            retry.attempts += 1;
            let result = async {
                let response = self.attempt(call).await?;
                let headers = response.headers().clone();
                let body = read_body(response, self.inner.cfg.stall_timeout, MAX_XML_BODY).await?;
                parse(&headers, body)
            }
            .await;
            match result {
                Ok(v) => return (Ok(v), retry.attempts),
                Err(e) => {
                    self.log_failure(call, &e, retry.attempts);
                    match retry.backoff(&e) {
                        Some(d) => tokio::time::sleep(d).await,
                        None => return (Err(retry.give_up(e)), retry.attempts),
                    }
                }
            }
        }
    }

    /// Like [`Self::run`] but hands back the answer with its body unread.
    async fn run_streaming(&self, call: &Call<'_>) -> Result<reqwest::Response, S3Error> {
        let mut retry = Retrier::new(&self.inner.cfg);
        loop {
            retry.attempts += 1;
            match self.attempt(call).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    self.log_failure(call, &e, retry.attempts);
                    match retry.backoff(&e) {
                        Some(d) => tokio::time::sleep(d).await,
                        None => return Err(retry.give_up(e)),
                    }
                }
            }
        }
    }

    fn request_id(headers: &HeaderMap) -> Option<String> {
        header_str(headers, "x-amz-request-id")
    }

    fn etag_header(headers: &HeaderMap) -> String {
        header_str(headers, "etag")
            .map(|e| xml::quote_etag(&e))
            .unwrap_or_default()
    }
}

/// Reads a whole body, each chunk bounded by `stall`, at most `limit` bytes.
async fn read_body(
    response: reqwest::Response,
    stall: Duration,
    limit: usize,
) -> Result<Bytes, S3Error> {
    let mut stream = response.bytes_stream();
    let mut buf = BytesMut::new();
    loop {
        match tokio::time::timeout(stall, stream.next()).await {
            Err(_) => {
                return Err(S3Error::Timeout(format!(
                    "body stalled for {:.1} s",
                    stall.as_secs_f64()
                )));
            }
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => return Err(transport_error(e)),
            Ok(Some(Ok(chunk))) => {
                if buf.len() + chunk.len() > limit {
                    return Err(S3Error::InvalidResponse(format!(
                        "answer larger than {limit} bytes"
                    )));
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
}

type RawBody = std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Where a GET body stands; drives the resuming [`ByteStream`].
struct BodyReader {
    client: HttpClient,
    bucket: String,
    key: String,
    /// ETag of the object being read; a resume is conditional on it.
    etag: String,
    raw: RawBody,
    /// Absolute offset of the next byte `raw` yields.
    raw_pos: u64,
    /// Absolute offset of the next byte the consumer gets.
    pos: u64,
    /// Absolute end (exclusive) of what the consumer asked for.
    end: u64,
    resumes: u32,
    first_failure: Option<Instant>,
    /// Stall detection without a timer per chunk: the timer is re-armed
    /// only when it fires, from the last time data arrived or the consumer
    /// started waiting.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    last_progress: Instant,
}

impl BodyReader {
    fn into_stream(self) -> ByteStream {
        Box::pin(futures_util::stream::unfold(
            Some(self),
            |state| async move {
                let mut reader = state?;
                match reader.next_chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
                    Ok(None) => None,
                    // After an error the stream ends.
                    Err(e) => Some((Err(e), None)),
                }
            },
        ))
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, S3Error> {
        let stall = self.client.inner.cfg.stall_timeout;
        // Only time spent waiting on the server counts, not the consumer's
        // pauses between chunks.
        self.last_progress = Instant::now();
        loop {
            if self.pos >= self.end {
                return Ok(None);
            }
            let item = tokio::select! {
                biased;
                item = self.raw.next() => item,
                () = &mut self.timer => {
                    let deadline = self.last_progress + stall;
                    if Instant::now() < deadline {
                        self.timer.as_mut().reset(deadline.into());
                        continue;
                    }
                    self.timer.as_mut().reset((Instant::now() + stall).into());
                    self.resume(S3Error::Timeout(format!(
                        "body stalled for {:.1} s",
                        stall.as_secs_f64()
                    )))
                    .await?;
                    continue;
                }
            };
            self.last_progress = Instant::now();
            let failure = match item {
                None => {
                    S3Error::Transport(format!("body ended at byte {} of {}", self.pos, self.end))
                }
                Some(Err(e)) => transport_error(e),
                Some(Ok(mut chunk)) => {
                    let chunk_start = self.raw_pos;
                    self.raw_pos += chunk.len() as u64;
                    // Keep only [pos, end) of what arrived.
                    let from = self.pos.saturating_sub(chunk_start).min(chunk.len() as u64);
                    let to = self.end.saturating_sub(chunk_start).min(chunk.len() as u64);
                    if from >= to {
                        continue;
                    }
                    chunk.truncate(to as usize);
                    let _ = chunk.split_to(from as usize);
                    self.pos += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
            };
            self.resume(failure).await?;
        }
    }

    /// Re-requests `[pos, end)` with `If-Match`, or returns `failure` when
    /// the retry budget (attempts and time, as for requests) is spent.
    async fn resume(&mut self, failure: S3Error) -> Result<(), S3Error> {
        let cfg = &self.client.inner.cfg;
        let started = *self.first_failure.get_or_insert_with(Instant::now);
        if self.etag.is_empty()
            || self.resumes + 1 >= cfg.max_attempts
            || started.elapsed() >= cfg.max_retry_time
        {
            return Err(failure);
        }
        self.resumes += 1;
        tracing::warn!(
            bucket = %self.bucket,
            key = %self.key,
            offset = self.pos,
            error = %failure,
            "GetObject body failed; resuming"
        );
        let call = Call::new("GetObject", Method::GET, &self.bucket, Some(&self.key))
            .header("range", format!("bytes={}-{}", self.pos, self.end - 1))
            .header("if-match", self.etag.clone());
        let response = self.client.attempt(&call).await?;
        self.raw_pos = if response.status().as_u16() == 206 {
            content_range_start(response.headers()).ok_or_else(|| {
                S3Error::InvalidResponse("206 answer without a usable Content-Range".into())
            })?
        } else {
            0
        };
        self.raw = Box::pin(response.bytes_stream());
        // The new answer gets a full stall window.
        self.last_progress = Instant::now();
        Ok(())
    }
}

/// First byte from `Content-Range: bytes a-b/total`.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let v = header_str(headers, "content-range")?;
    let range = v.trim().strip_prefix("bytes")?.trim();
    range.split('-').next()?.trim().parse().ok()
}

/// Total size from `Content-Range: bytes a-b/total`.
fn content_range_total(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, "content-range")?
        .rsplit('/')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, "content-length")?.trim().parse().ok()
}

#[async_trait]
impl ObjectClient for HttpClient {
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>, S3Error> {
        let call = Call::new("ListBuckets", Method::GET, "", None);
        self.run(&call, |_, body| xml::parse_list_buckets(&body))
            .await
            .0
    }

    async fn list_objects(&self, req: &ListRequest) -> Result<ListPage, S3Error> {
        check_bucket(&req.bucket)?;
        let mut call = Call::new("ListObjectsV2", Method::GET, &req.bucket, None)
            .query("list-type", "2")
            .query("encoding-type", "url")
            .query("prefix", req.prefix.clone());
        if let Some(d) = &req.delimiter {
            call = call.query("delimiter", d.clone());
        }
        if let Some(t) = &req.continuation_token {
            call = call.query("continuation-token", t.clone());
        }
        if let Some(m) = req.max_keys {
            call = call.query("max-keys", m.to_string());
        }
        self.run(&call, |_, body| xml::parse_list_objects(&body))
            .await
            .0
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<HeadOutput, S3Error> {
        check_bucket(bucket)?;
        check_key(key)?;
        let call = Call::new("HeadObject", Method::HEAD, bucket, Some(key));
        self.run(&call, |headers, _| {
            Ok(HeadOutput {
                size: content_length(headers).ok_or_else(|| {
                    S3Error::InvalidResponse("HEAD answer without Content-Length".into())
                })?,
                etag: Self::etag_header(headers),
                last_modified: parse_http_date(&header_str(headers, "last-modified").ok_or_else(
                    || S3Error::InvalidResponse("HEAD answer without Last-Modified".into()),
                )?)?,
                headers: object_headers_from_response(headers),
            })
        })
        .await
        .0
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        req: &GetRequest,
    ) -> Result<GetOutput, S3Error> {
        check_bucket(bucket)?;
        check_key(key)?;
        let mut call = Call::new("GetObject", Method::GET, bucket, Some(key));
        if let Some(r) = &req.range {
            if r.end <= r.start {
                return Err(S3Error::InvalidRequest(format!("empty range {r:?}")));
            }
            call = call.header("range", format!("bytes={}-{}", r.start, r.end - 1));
        }
        if let Some(e) = &req.if_match {
            call = call.header("if-match", e.clone());
        }
        let response = self.run_streaming(&call).await?;
        let headers = response.headers();
        let etag = Self::etag_header(headers);
        let (object_size, raw_pos) = if response.status().as_u16() == 206 {
            let total = content_range_total(headers);
            let start = content_range_start(headers);
            match (total, start) {
                (Some(t), Some(s)) => (t, s),
                _ => {
                    return Err(S3Error::InvalidResponse(
                        "206 answer without a usable Content-Range".into(),
                    ));
                }
            }
        } else {
            // A 200 to a ranged request means the server ignored the Range
            // (allowed by HTTP): the reader cuts the range out itself.
            let total = content_length(headers).ok_or_else(|| {
                S3Error::InvalidResponse("GET answer without Content-Length".into())
            })?;
            (total, 0)
        };
        let (pos, end) = match &req.range {
            Some(r) => (r.start, r.end.min(object_size)),
            None => (0, object_size),
        };
        let body = BodyReader {
            client: self.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            etag: etag.clone(),
            raw: Box::pin(response.bytes_stream()),
            raw_pos,
            pos,
            end,
            resumes: 0,
            first_failure: None,
            timer: Box::pin(tokio::time::sleep(self.inner.cfg.stall_timeout)),
            last_progress: Instant::now(),
        }
        .into_stream();
        Ok(GetOutput {
            body,
            etag,
            object_size,
        })
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        headers: &ObjectHeaders,
        body: Bytes,
    ) -> Result<PutOutput, S3Error> {
        check_bucket(bucket)?;
        check_key(key)?;
        let mut call = Call::new("PutObject", Method::PUT, bucket, Some(key)).body(body);
        call.headers = object_headers_to_pairs(headers);
        self.run(&call, |h, _| {
            Ok(PutOutput {
                etag: Self::etag_header(h),
            })
        })
        .await
        .0
    }

    async fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        headers: &ObjectHeaders,
    ) -> Result<String, S3Error> {
        check_bucket(bucket)?;
        check_key(key)?;
        let mut call = Call::new("CreateMultipartUpload", Method::POST, bucket, Some(key))
            .query("uploads", "");
        call.headers = object_headers_to_pairs(headers);
        self.run(&call, |_, body| xml::parse_initiate_multipart(&body))
            .await
            .0
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<CompletedPart, S3Error> {
        check_bucket(bucket)?;
        check_key(key)?;
        let call = Call::new("UploadPart", Method::PUT, bucket, Some(key))
            .query("partNumber", part_number.to_string())
            .query("uploadId", upload_id)
            .body(body);
        self.run(&call, |h, _| {
            let etag = Self::etag_header(h);
            if etag.is_empty() {
                return Err(S3Error::InvalidResponse(
                    "UploadPart answer without ETag".into(),
                ));
            }
            Ok(CompletedPart { part_number, etag })
        })
        .await
        .0
    }

    async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src_bucket: &str,
        src_key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<CompletedPart, S3Error> {
        check_bucket(bucket)?;
        check_key(key)?;
        check_bucket(src_bucket)?;
        check_key(src_key)?;
        if range.end <= range.start {
            return Err(S3Error::InvalidRequest(format!("empty range {range:?}")));
        }
        let mut call = Call::new("UploadPartCopy", Method::PUT, bucket, Some(key))
            .query("partNumber", part_number.to_string())
            .query("uploadId", upload_id)
            .header("x-amz-copy-source", copy_source(src_bucket, src_key))
            .header(
                "x-amz-copy-source-range",
                format!("bytes={}-{}", range.start, range.end - 1),
            );
        if let Some(e) = if_match {
            call = call.header("x-amz-copy-source-if-match", e);
            if self.inner.cfg.rgw_copy_if_match {
                call = call.header("x-amz-copy-if-match", e);
            }
        }
        self.run(&call, |h, body| {
            let r = xml::parse_copy_part(&body, Self::request_id(h).as_deref())?;
            if r.etag.is_empty() {
                return Err(S3Error::InvalidResponse(
                    "UploadPartCopy answer without ETag".into(),
                ));
            }
            Ok(CompletedPart {
                part_number,
                etag: r.etag,
            })
        })
        .await
        .0
    }

    async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<PutOutput, S3Error> {
        check_bucket(bucket)?;
        check_key(key)?;
        let call = Call::new("CompleteMultipartUpload", Method::POST, bucket, Some(key))
            .query("uploadId", upload_id)
            .header("content-type", "application/xml")
            .body(Bytes::from(xml::complete_multipart_body(parts)));
        let (result, attempts) = self
            .run(&call, |h, body| {
                xml::parse_complete_multipart(&body, Self::request_id(h).as_deref())
            })
            .await;
        match result {
            Ok(etag) => Ok(PutOutput { etag }),
            // An earlier attempt may have completed the upload and lost its
            // answer: the object then carries a multipart ETag of N parts.
            Err(e) if attempts > 1 && e.code() == Some(&S3ErrorCode::NoSuchUpload) => {
                let suffix = format!("-{}\"", parts.len());
                match self.head_object(bucket, key).await {
                    Ok(head) if head.etag.ends_with(&suffix) => {
                        tracing::info!(
                            bucket,
                            key,
                            "CompleteMultipartUpload retry found the upload already completed"
                        );
                        Ok(PutOutput { etag: head.etag })
                    }
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), S3Error> {
        check_bucket(bucket)?;
        check_key(key)?;
        let call = Call::new("AbortMultipartUpload", Method::DELETE, bucket, Some(key))
            .query("uploadId", upload_id);
        self.run(&call, |_, _| Ok(())).await.0
    }

    async fn copy_object(&self, req: &CopyRequest) -> Result<CopyOutput, S3Error> {
        check_bucket(&req.src_bucket)?;
        check_key(&req.src_key)?;
        check_bucket(&req.dst_bucket)?;
        check_key(&req.dst_key)?;
        let mut call = Call::new(
            "CopyObject",
            Method::PUT,
            &req.dst_bucket,
            Some(&req.dst_key),
        )
        .header(
            "x-amz-copy-source",
            copy_source(&req.src_bucket, &req.src_key),
        );
        if let Some(e) = &req.if_match {
            call = call.header("x-amz-copy-source-if-match", e.clone());
            if self.inner.cfg.rgw_copy_if_match {
                call = call.header("x-amz-copy-if-match", e.clone());
            }
        }
        match &req.directive {
            MetadataDirective::Copy => {
                call = call.header("x-amz-metadata-directive", "COPY");
            }
            MetadataDirective::Replace(h) => {
                call = call.header("x-amz-metadata-directive", "REPLACE");
                call.headers.extend(object_headers_to_pairs(h));
            }
        }
        self.run(&call, |h, body| {
            let r = xml::parse_copy_object(&body, Self::request_id(h).as_deref())?;
            Ok(CopyOutput {
                etag: r.etag,
                last_modified: r.last_modified.unwrap_or_else(SystemTime::now),
            })
        })
        .await
        .0
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        check_bucket(bucket)?;
        check_key(key)?;
        let call = Call::new("DeleteObject", Method::DELETE, bucket, Some(key));
        match self.run(&call, |_, _| Ok(())).await.0 {
            Err(e) if e.code() == Some(&S3ErrorCode::NoSuchKey) => Ok(()),
            other => other,
        }
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<MultipartUploadInfo>, S3Error> {
        check_bucket(bucket)?;
        let call = Call::new("ListMultipartUploads", Method::GET, bucket, None)
            .query("uploads", "")
            .query("prefix", prefix);
        self.run(&call, |_, body| xml::parse_list_multipart_uploads(&body))
            .await
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(addressing: Addressing) -> ClientConfig {
        ClientConfig::new(
            Endpoint {
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: Some(7480),
            },
            "us-east-1",
            Credentials {
                access_key: "AK".into(),
                secret_key: "SECRET".into(),
                session_token: None,
            },
            addressing,
        )
    }

    #[test]
    fn paths_and_hosts() {
        let c = HttpClient::new(cfg(Addressing::Path)).unwrap();
        assert_eq!(
            c.host_and_path("bk", Some("a b/c++/é/")),
            ("127.0.0.1:7480".into(), "/bk/a%20b/c%2B%2B/%C3%A9/".into())
        );
        assert_eq!(c.host_and_path("", None).1, "/");
        assert_eq!(c.host_and_path("bk", None).1, "/bk");
        let v = HttpClient::new(cfg(Addressing::Virtual)).unwrap();
        assert_eq!(
            v.host_and_path("bk", Some("x//y")),
            ("bk.127.0.0.1:7480".into(), "/x//y".into())
        );
        assert_eq!(v.host_and_path("bk", None).1, "/");
    }

    #[test]
    fn copy_source_is_encoded_per_segment() {
        assert_eq!(copy_source("bk", "c++"), "/bk/c%2B%2B");
        assert_eq!(
            copy_source("bk", "a b/ü?#&="),
            "/bk/a%20b/%C3%BC%3F%23%26%3D"
        );
    }

    #[test]
    fn dot_segments_are_refused() {
        assert!(check_key("a/../b").is_err());
        assert!(check_key("./b").is_err());
        assert!(check_key("a/.").is_err());
        assert!(check_key("a/.../b").is_ok());
        assert!(check_key(".hidden").is_ok());
        assert!(check_key("a//b/").is_ok());
    }

    #[test]
    fn header_mapping_round_trips() {
        let h = ObjectHeaders {
            content_type: Some("text/plain".into()),
            content_disposition: Some("attachment; filename=\"a.txt\"".into()),
            cache_control: Some("max-age=60".into()),
            content_encoding: Some("gzip".into()),
            content_language: Some("en".into()),
            expires: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
            storage_class: Some("STANDARD_IA".into()),
            website_redirect_location: Some("/other".into()),
            server_side_encryption: Some("aws:kms".into()),
            sse_kms_key_id: Some("key-1".into()),
            sse_context: Some("e30=".into()),
            sse_bucket_key_enabled: Some("true".into()),
            metadata: [
                ("color".to_string(), "blue".to_string()),
                ("x-y".to_string(), "z".to_string()),
            ]
            .into(),
        };
        let mut map = HeaderMap::new();
        for (k, v) in object_headers_to_pairs(&h) {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        map.append("etag", HeaderValue::from_static("\"e\""));
        assert_eq!(object_headers_from_response(&map), h);
    }

    #[test]
    fn http_dates() {
        let t = parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            t,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
        );
        assert!(parse_http_date("not a date").is_err());
    }

    #[test]
    fn backoff_is_bounded() {
        let mut c = cfg(Addressing::Path);
        c.max_attempts = 3;
        let mut r = Retrier::new(&c);
        let retryable = S3Error::Transport("x".into());
        let fatal = S3Error::Service {
            status: 403,
            code: S3ErrorCode::AccessDenied,
            message: String::new(),
            request_id: String::new(),
        };
        r.attempts = 1;
        assert!(r.backoff(&retryable).is_some_and(|d| d <= c.base_backoff));
        assert!(r.backoff(&fatal).is_none());
        r.attempts = 2;
        assert!(
            r.backoff(&retryable)
                .is_some_and(|d| d <= c.base_backoff * 2)
        );
        r.attempts = 3;
        assert!(r.backoff(&retryable).is_none());
        assert!(matches!(
            r.give_up(retryable),
            S3Error::RetriesExhausted { attempts: 3, .. }
        ));
        assert!(matches!(r.give_up(fatal), S3Error::Service { .. }));
    }

    #[test]
    fn status_codes_for_bodiless_errors() {
        assert_eq!(code_for_status(404), S3ErrorCode::NoSuchKey);
        assert_eq!(code_for_status(403), S3ErrorCode::AccessDenied);
        assert_eq!(code_for_status(412), S3ErrorCode::PreconditionFailed);
        assert_eq!(code_for_status(409).as_str(), "HTTP409");
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = HttpClient::new(cfg(Addressing::Path)).unwrap();
        let s = format!("{c:?} {:?}", c.config());
        assert!(!s.contains("SECRET"), "{s}");
    }
}
