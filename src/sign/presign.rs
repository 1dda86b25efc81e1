//! Presigned GET URLs (SigV4 and SigV2) and plain object URLs.
//!
//! Guarantees:
//! - pure: the URL is a function of [`PresignParams`] alone (time and
//!   credentials included), so the same inputs always give the same URL, of
//!   the same length;
//! - the key is encoded once, segment by segment, and never normalised; the
//!   URL's path is byte-for-byte the path that was signed. Clients must send
//!   it as is (`curl --path-as-is` for keys with `.` or `..` segments);
//! - SigV4: expiry 1..=604800 s, payload `UNSIGNED-PAYLOAD`, only `host`
//!   signed; the session token and the `response-*` overrides are part of
//!   the signed canonical query; `X-Amz-Signature` comes last;
//! - SigV2: `Expires` is an absolute Unix time (`now + expires_in`, no 7-day
//!   cap); the string to sign is what `s3cmd signurl` and botocore build;
//! - bucket names are checked before use: path style needs 1..=255 chars of
//!   `A-Z a-z 0-9 . _ -` (so the bucket never needs encoding); virtual-hosted
//!   style needs a DNS-compatible name, without dots over HTTPS (a dotted
//!   bucket breaks the wildcard certificate), and a host name, not an IP
//!   literal, as endpoint.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::encode::{encode_key_path, uri_encode};
use super::v4::{self, ALGORITHM, UNSIGNED_PAYLOAD};
use super::{Addressing, Credentials, Endpoint, Scheme, SignatureVersion};

/// Longest SigV4 presign expiry AWS and Ceph RGW accept: 7 days, in seconds.
pub const MAX_V4_EXPIRY_SECS: u64 = 604_800;

/// Everything a presigned GET URL depends on.
#[derive(Debug, Clone, Copy)]
pub struct PresignParams<'a> {
    /// Where the object lives (scheme, host, port).
    pub endpoint: &'a Endpoint,
    /// Path style or virtual-hosted style.
    pub addressing: Addressing,
    /// Region of the SigV4 credential scope (unused by SigV2).
    pub region: &'a str,
    /// Bucket name.
    pub bucket: &'a str,
    /// Object key, any non-empty UTF-8; signed exactly as given.
    pub key: &'a str,
    /// Who signs.
    pub credentials: &'a Credentials,
    /// Signing time.
    pub now: SystemTime,
    /// How long the URL stays valid, counted from `now` (whole seconds).
    pub expires_in: Duration,
    /// Optional `response-content-disposition` override (signed).
    pub response_content_disposition: Option<&'a str>,
    /// Optional `response-content-type` override (signed).
    pub response_content_type: Option<&'a str>,
}

/// Why a URL could not be presigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The expiry is 0 s, or longer than the signature version allows.
    #[error("presign expiry of {seconds} s is out of range: it must be between 1 and {max} s")]
    ExpiryOutOfRange {
        /// The requested expiry, in whole seconds.
        seconds: u64,
        /// The largest expiry allowed here.
        max: u64,
    },
    /// The bucket name cannot be used with this addressing style; the text
    /// says why.
    #[error("invalid bucket name: {0}")]
    InvalidBucket(String),
    /// The object key is empty (that would sign the bucket, not an object).
    #[error("cannot presign an empty object key")]
    EmptyKey,
    /// The endpoint cannot be used with this addressing style; the text says
    /// why.
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(String),
    /// The signing time is before 1970, so no SigV2 `Expires` exists.
    #[error("the signing time is before the Unix epoch")]
    TimeBeforeEpoch,
}

/// Presigns a GET with the chosen signature version.
pub fn presign(version: SignatureVersion, p: &PresignParams) -> Result<String, SignError> {
    match version {
        SignatureVersion::V4 => presign_v4(p),
        SignatureVersion::V2 => presign_v2(p),
    }
}

/// Presigns a GET with SigV4 (query auth, service `s3`).
pub fn presign_v4(p: &PresignParams) -> Result<String, SignError> {
    presign_v4_with(p, "GET", "s3")
}

/// Presigns any method for any SigV4 service; [`presign_v4`] is
/// `presign_v4_with(p, "GET", "s3")`. A URL signed for one method is refused
/// by the server for every other.
pub fn presign_v4_with(
    p: &PresignParams,
    method: &str,
    service: &str,
) -> Result<String, SignError> {
    let seconds = p.expires_in.as_secs();
    if !(1..=MAX_V4_EXPIRY_SECS).contains(&seconds) {
        return Err(SignError::ExpiryOutOfRange {
            seconds,
            max: MAX_V4_EXPIRY_SECS,
        });
    }
    check_target(p)?;
    let host = request_authority(p.endpoint, p.addressing, p.bucket);
    let path = request_path(p.addressing, p.bucket, p.key);

    let date = v4::amz_date(p.now);
    let day = &date[..8];
    let scope = v4::credential_scope(day, p.region, service);
    let credential = format!("{}/{scope}", p.credentials.access_key);
    let expires = seconds.to_string();
    let mut params: Vec<(&str, &str)> = vec![
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", &credential),
        ("X-Amz-Date", &date),
        ("X-Amz-Expires", &expires),
        ("X-Amz-SignedHeaders", "host"),
    ];
    if let Some(token) = &p.credentials.session_token {
        params.push(("X-Amz-Security-Token", token));
    }
    params.extend(response_overrides(p));

    // The canonical query is also the URL's query, minus the signature.
    let query = v4::canonical_query(params);
    let canonical = v4::canonical_request(
        method,
        &path,
        &query,
        &format!("host:{host}\n"),
        "host",
        UNSIGNED_PAYLOAD,
    );
    let sts = v4::string_to_sign(&date, &scope, &canonical);
    let signature = v4::sign_hex(&p.credentials.secret_key, day, p.region, service, &sts);
    Ok(format!(
        "{}://{host}{path}?{query}&X-Amz-Signature={signature}",
        scheme_str(p.endpoint.scheme)
    ))
}

/// Presigns a GET with SigV2: `AWSAccessKeyId`, `Expires` (absolute Unix
/// time, `now + expires_in`) and `Signature`, then any `response-*`
/// overrides and the session token.
pub fn presign_v2(p: &PresignParams) -> Result<String, SignError> {
    let seconds = p.expires_in.as_secs();
    let now = p
        .now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| SignError::TimeBeforeEpoch)?
        .as_secs();
    // Keep the absolute time within i64, which every server can parse.
    let max = (i64::MAX as u64).saturating_sub(now);
    if !(1..=max).contains(&seconds) {
        return Err(SignError::ExpiryOutOfRange { seconds, max });
    }
    check_target(p)?;
    let expires = now + seconds;
    let host = request_authority(p.endpoint, p.addressing, p.bucket);
    let path = request_path(p.addressing, p.bucket, p.key);

    let sts = v2_string_to_sign(p, expires);
    let signature = uri_encode(&v2_signature(&p.credentials.secret_key, &sts));
    let mut url = format!(
        "{}://{host}{path}?AWSAccessKeyId={}&Expires={expires}&Signature={signature}",
        scheme_str(p.endpoint.scheme),
        uri_encode(&p.credentials.access_key),
    );
    for (name, value) in response_overrides(p) {
        url.push_str(&format!("&{name}={}", uri_encode(value)));
    }
    if let Some(token) = &p.credentials.session_token {
        url.push_str(&format!("&x-amz-security-token={}", uri_encode(token)));
    }
    Ok(url)
}

/// The unsigned URL of an object: `scheme://authority/bucket/key` (path
/// style) or `scheme://bucket.authority/key` (virtual-hosted). The key is
/// encoded with [`encode_key_path`]; nothing is validated here.
pub fn object_url(endpoint: &Endpoint, addressing: Addressing, bucket: &str, key: &str) -> String {
    format!(
        "{}://{}{}",
        scheme_str(endpoint.scheme),
        request_authority(endpoint, addressing, bucket),
        request_path(addressing, bucket, key)
    )
}

/// `host[:port]`, with the port left out when it is the scheme's default
/// (80 for HTTP, 443 for HTTPS), as clients send it in `Host`.
pub fn endpoint_authority(endpoint: &Endpoint) -> String {
    let default_port = match endpoint.scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    };
    match endpoint.port {
        Some(port) if port != default_port => format!("{}:{port}", endpoint.host),
        _ => endpoint.host.clone(),
    }
}

/// `http` or `https`.
fn scheme_str(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    }
}

/// The `Host` the request goes to: the endpoint authority, prefixed with
/// `bucket.` for virtual-hosted style.
fn request_authority(endpoint: &Endpoint, addressing: Addressing, bucket: &str) -> String {
    match addressing {
        Addressing::Path => endpoint_authority(endpoint),
        Addressing::Virtual => format!("{bucket}.{}", endpoint_authority(endpoint)),
    }
}

/// The encoded request path, starting with `/`.
fn request_path(addressing: Addressing, bucket: &str, key: &str) -> String {
    match addressing {
        Addressing::Path => format!("/{}/{}", uri_encode(bucket), encode_key_path(key)),
        Addressing::Virtual => format!("/{}", encode_key_path(key)),
    }
}

/// The `response-*` overrides that are set, sorted by name.
fn response_overrides<'a>(p: &PresignParams<'a>) -> Vec<(&'static str, &'a str)> {
    [
        (
            "response-content-disposition",
            p.response_content_disposition,
        ),
        ("response-content-type", p.response_content_type),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name, v)))
    .collect()
}

/// SigV2 string to sign for a presigned GET: empty Content-MD5 and
/// Content-Type, the `Expires` epoch, the session token as an amz header,
/// then `/bucket/<encoded key>` with the overrides appended unencoded.
fn v2_string_to_sign(p: &PresignParams, expires: u64) -> String {
    let mut sts = format!("GET\n\n\n{expires}\n");
    if let Some(token) = &p.credentials.session_token {
        sts.push_str(&format!("x-amz-security-token:{}\n", token.trim()));
    }
    // The resource always names the bucket, whatever the addressing style.
    sts.push_str(&format!("/{}/{}", p.bucket, encode_key_path(p.key)));
    let overrides = response_overrides(p);
    for (i, (name, value)) in overrides.iter().enumerate() {
        sts.push(if i == 0 { '?' } else { '&' });
        sts.push_str(&format!("{name}={value}"));
    }
    sts
}

/// Base64 of HMAC-SHA1(secret, string to sign).
fn v2_signature(secret: &str, string_to_sign: &str) -> String {
    // HMAC accepts keys of every length, so this cannot fail.
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Checks the bucket, key and endpoint for the addressing style.
fn check_target(p: &PresignParams) -> Result<(), SignError> {
    if p.key.is_empty() {
        return Err(SignError::EmptyKey);
    }
    match p.addressing {
        Addressing::Path => check_path_bucket(p.bucket),
        Addressing::Virtual => {
            check_virtual_endpoint(p.endpoint)?;
            check_virtual_bucket(p.bucket, p.endpoint.scheme)
        }
    }
}

/// Path style: 1..=255 chars of `A-Z a-z 0-9 . _ -` (legacy names included),
/// so the name appears unencoded in both SigV2 and SigV4 resources.
fn check_path_bucket(bucket: &str) -> Result<(), SignError> {
    if bucket.is_empty() || bucket.len() > 255 {
        return Err(SignError::InvalidBucket(format!(
            "{bucket:?} must be 1 to 255 characters long"
        )));
    }
    if let Some(c) = bucket
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(SignError::InvalidBucket(format!(
            "{bucket:?} contains {c:?}; only A-Z a-z 0-9 . _ - are allowed"
        )));
    }
    Ok(())
}

/// Virtual-hosted style: a DNS label sequence (3..=63 chars of `a-z 0-9 . -`,
/// each label starting and ending with a letter or digit, not an IP address);
/// dots only over plain HTTP, since `a.b.host` fails a `*.host` certificate.
fn check_virtual_bucket(bucket: &str, scheme: Scheme) -> Result<(), SignError> {
    let invalid = |why: &str| {
        Err(SignError::InvalidBucket(format!(
            "{bucket:?} cannot be used with virtual-hosted addressing: {why}; use path-style addressing"
        )))
    };
    if !(3..=63).contains(&bucket.len()) {
        return invalid("it must be 3 to 63 characters long");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return invalid("only a-z 0-9 . - are allowed");
    }
    let labels_ok = bucket.split('.').all(|label| {
        let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
        alnum(label.as_bytes().first()) && alnum(label.as_bytes().last())
    });
    if !labels_ok {
        return invalid("each dot-separated part must start and end with a letter or digit");
    }
    if bucket.parse::<IpAddr>().is_ok() {
        return invalid("it looks like an IP address");
    }
    if scheme == Scheme::Https && bucket.contains('.') {
        return invalid("a name with dots does not match the server's TLS certificate");
    }
    Ok(())
}

/// Virtual-hosted style needs a host name to prefix; an IP literal has none.
fn check_virtual_endpoint(endpoint: &Endpoint) -> Result<(), SignError> {
    let host = endpoint.host.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<IpAddr>().is_ok() {
        return Err(SignError::InvalidEndpoint(format!(
            "{} is an IP address; virtual-hosted addressing needs a host name, use path-style addressing",
            endpoint.host
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key: "AK".into(),
            secret_key: "SK".into(),
            session_token: None,
        }
    }

    fn endpoint(scheme: Scheme, host: &str, port: Option<u16>) -> Endpoint {
        Endpoint {
            scheme,
            host: host.into(),
            port,
        }
    }

    fn params<'a>(
        ep: &'a Endpoint,
        addressing: Addressing,
        bucket: &'a str,
        key: &'a str,
        c: &'a Credentials,
    ) -> PresignParams<'a> {
        PresignParams {
            endpoint: ep,
            addressing,
            region: "us-east-1",
            bucket,
            key,
            credentials: c,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            expires_in: Duration::from_secs(3600),
            response_content_disposition: None,
            response_content_type: None,
        }
    }

    #[test]
    fn authority_omits_default_ports_only() {
        let a = |s, p| endpoint_authority(&endpoint(s, "h", p));
        assert_eq!(a(Scheme::Http, None), "h");
        assert_eq!(a(Scheme::Http, Some(80)), "h");
        assert_eq!(a(Scheme::Http, Some(443)), "h:443");
        assert_eq!(a(Scheme::Https, Some(443)), "h");
        assert_eq!(a(Scheme::Https, Some(7480)), "h:7480");
        let v6 = endpoint(Scheme::Http, "[::1]", Some(3900));
        assert_eq!(endpoint_authority(&v6), "[::1]:3900");
    }

    #[test]
    fn object_urls() {
        let ep = endpoint(Scheme::Http, "127.0.0.1", Some(7480));
        assert_eq!(
            object_url(&ep, Addressing::Path, "b", "a b/c+d"),
            "http://127.0.0.1:7480/b/a%20b/c%2Bd"
        );
        let ep = endpoint(Scheme::Https, "s3.example.com", None);
        assert_eq!(
            object_url(&ep, Addressing::Virtual, "b", "x//y/"),
            "https://b.s3.example.com/x//y/"
        );
    }

    #[test]
    fn v4_expiry_range() {
        let ep = endpoint(Scheme::Http, "h", None);
        let c = creds();
        let mut p = params(&ep, Addressing::Path, "bucket", "k", &c);
        for (secs, ok) in [(0, false), (1, true), (604_800, true), (604_801, false)] {
            p.expires_in = Duration::from_secs(secs);
            assert_eq!(presign_v4(&p).is_ok(), ok, "{secs}");
        }
        p.expires_in = Duration::from_millis(999);
        assert_eq!(
            presign_v4(&p),
            Err(SignError::ExpiryOutOfRange {
                seconds: 0,
                max: 604_800
            })
        );
    }

    #[test]
    fn v2_has_no_seven_day_cap_but_rejects_zero() {
        let ep = endpoint(Scheme::Http, "h", None);
        let c = creds();
        let mut p = params(&ep, Addressing::Path, "bucket", "k", &c);
        p.expires_in = Duration::from_secs(365 * 86_400);
        let url = presign_v2(&p).expect("a year is fine for SigV2");
        assert!(url.contains(&format!("Expires={}", 1_700_000_000 + 365 * 86_400)));
        p.expires_in = Duration::ZERO;
        assert!(matches!(
            presign_v2(&p),
            Err(SignError::ExpiryOutOfRange { seconds: 0, .. })
        ));
        p.expires_in = Duration::from_secs(u64::MAX);
        assert!(matches!(
            presign_v2(&p),
            Err(SignError::ExpiryOutOfRange { .. })
        ));
        p.expires_in = Duration::from_secs(60);
        p.now = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(presign_v2(&p), Err(SignError::TimeBeforeEpoch));
    }

    #[test]
    fn empty_key_is_refused() {
        let ep = endpoint(Scheme::Http, "h", None);
        let c = creds();
        let p = params(&ep, Addressing::Path, "bucket", "", &c);
        assert_eq!(presign_v4(&p), Err(SignError::EmptyKey));
        assert_eq!(presign_v2(&p), Err(SignError::EmptyKey));
    }

    #[test]
    fn path_style_bucket_rules() {
        let ep = endpoint(Scheme::Https, "h", None);
        let c = creds();
        for (bucket, ok) in [
            ("My_Legacy.Bucket-1", true),
            ("a", true),
            ("", false),
            ("a/b", false),
            ("a b", false),
            ("ünï", false),
        ] {
            let p = params(&ep, Addressing::Path, bucket, "k", &c);
            assert_eq!(presign_v4(&p).is_ok(), ok, "{bucket:?}");
        }
        let long = "a".repeat(256);
        let p = params(&ep, Addressing::Path, &long, "k", &c);
        assert!(matches!(presign_v4(&p), Err(SignError::InvalidBucket(_))));
    }

    #[test]
    fn virtual_style_bucket_rules() {
        let https = endpoint(Scheme::Https, "s3.example.com", None);
        let http = endpoint(Scheme::Http, "s3.example.com", None);
        let c = creds();
        let cases = [
            ("my-bucket", true, true),
            ("my.bucket", false, true),
            ("ab", false, false),
            ("Upper", false, false),
            ("under_score", false, false),
            ("-lead", false, false),
            ("trail-", false, false),
            ("a..b", false, false),
            ("a.-b", false, false),
            ("a-.b", false, false),
            ("192.168.1.1", false, false),
        ];
        for (bucket, https_ok, http_ok) in cases {
            let p = params(&https, Addressing::Virtual, bucket, "k", &c);
            assert_eq!(presign_v4(&p).is_ok(), https_ok, "https {bucket:?}");
            let p = params(&http, Addressing::Virtual, bucket, "k", &c);
            assert_eq!(presign_v2(&p).is_ok(), http_ok, "http {bucket:?}");
        }
        let long = "a".repeat(64);
        let p = params(&https, Addressing::Virtual, &long, "k", &c);
        assert!(matches!(presign_v4(&p), Err(SignError::InvalidBucket(_))));
    }

    #[test]
    fn virtual_style_needs_a_host_name() {
        let c = creds();
        for host in ["127.0.0.1", "[::1]"] {
            let ep = endpoint(Scheme::Http, host, Some(9000));
            let p = params(&ep, Addressing::Virtual, "bucket", "k", &c);
            assert!(matches!(presign_v4(&p), Err(SignError::InvalidEndpoint(_))));
        }
        let ep = endpoint(Scheme::Http, "localhost", Some(9000));
        let p = params(&ep, Addressing::Virtual, "bucket", "k", &c);
        let url = presign_v4(&p).expect("host names are fine");
        assert!(url.starts_with("http://bucket.localhost:9000/k?"));
    }

    #[test]
    fn v4_signature_is_last_and_token_is_signed() {
        let ep = endpoint(Scheme::Https, "h", None);
        let mut c = creds();
        let plain = presign_v4(&params(&ep, Addressing::Path, "bucket", "k", &c)).unwrap();
        c.session_token = Some("tok/en+".into());
        let with_token = presign_v4(&params(&ep, Addressing::Path, "bucket", "k", &c)).unwrap();
        assert!(with_token.contains(
            "&X-Amz-Security-Token=tok%2Fen%2B&X-Amz-SignedHeaders=host&X-Amz-Signature="
        ));
        let sig = |u: &str| {
            u.rsplit_once("X-Amz-Signature=")
                .map(|(_, s)| s.to_string())
        };
        assert_ne!(sig(&plain), sig(&with_token));
        assert_eq!(sig(&with_token).map(|s| s.len()), Some(64));
    }

    #[test]
    fn v2_token_goes_into_string_to_sign_and_url() {
        let ep = endpoint(Scheme::Https, "h", None);
        let mut c = creds();
        c.session_token = Some("TOKEN".into());
        let p = params(&ep, Addressing::Path, "bucket", "k", &c);
        assert_eq!(
            v2_string_to_sign(&p, 42),
            "GET\n\n\n42\nx-amz-security-token:TOKEN\n/bucket/k"
        );
        assert!(
            presign_v2(&p)
                .unwrap()
                .ends_with("&x-amz-security-token=TOKEN")
        );
    }

    #[test]
    fn v2_overrides_are_sorted_and_unencoded_in_string_to_sign() {
        let ep = endpoint(Scheme::Https, "h", None);
        let c = creds();
        let mut p = params(&ep, Addressing::Virtual, "bucket", "a b", &c);
        p.response_content_type = Some("text/plain; charset=utf-8");
        p.response_content_disposition = Some("attachment; filename=\"x y.txt\"");
        assert_eq!(
            v2_string_to_sign(&p, 7),
            "GET\n\n\n7\n/bucket/a%20b?response-content-disposition=attachment; \
             filename=\"x y.txt\"&response-content-type=text/plain; charset=utf-8"
        );
        let url = presign_v2(&p).unwrap();
        assert!(url.starts_with("https://bucket.h/a%20b?AWSAccessKeyId=AK&Expires="));
        assert!(url.ends_with(
            "&response-content-disposition=attachment%3B%20filename%3D%22x%20y.txt%22\
             &response-content-type=text%2Fplain%3B%20charset%3Dutf-8"
        ));
    }

    #[test]
    fn same_inputs_same_url() {
        let ep = endpoint(Scheme::Https, "h", None);
        let c = creds();
        let p = params(&ep, Addressing::Path, "bucket", "k", &c);
        assert_eq!(presign_v4(&p), presign_v4(&p));
        assert_eq!(presign(SignatureVersion::V2, &p), presign_v2(&p));
        assert_eq!(presign(SignatureVersion::V4, &p), presign_v4(&p));
    }
}
