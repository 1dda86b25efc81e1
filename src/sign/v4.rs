//! AWS Signature Version 4 for ordinary (header-authenticated) requests, and
//! the SigV4 building blocks that presigned URLs share.
//!
//! Guarantees:
//! - pure: the time and the credentials are arguments; nothing global is
//!   cached and nothing reads the clock;
//! - every header passed in is signed (names lower-cased, values trimmed with
//!   inner runs of spaces collapsed, repeated names joined with `,`);
//! - query names and values are encoded with [`uri_encode`] and sorted by
//!   encoded name, then encoded value;
//! - the canonical path is used exactly as given (already encoded, never
//!   normalised);
//! - checked against the AWS documentation's header-auth example.

use std::fmt;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::Credentials;
use super::encode::uri_encode;

/// The SigV4 algorithm name, first word of the `Authorization` value and of
/// the string to sign.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Payload hash for requests whose body is not signed (presigned URLs).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// SHA-256 of the empty string: the payload hash of a body-less request.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Everything a header-authenticated SigV4 request signature depends on.
/// `Debug` redacts the session-token and authorization header values.
#[derive(Clone, Copy)]
pub struct HeaderSigningInput<'a> {
    /// HTTP method, upper case (`GET`, `PUT`, ...).
    pub method: &'a str,
    /// The request path, already encoded (e.g. `/bucket/a%20b`); used as is.
    pub canonical_path: &'a str,
    /// Raw, unencoded query name/value pairs (a bare flag such as `uploads`
    /// has an empty value).
    pub query: &'a [(String, String)],
    /// Header names (any case) and values. Must include `host`, `x-amz-date`
    /// and `x-amz-content-sha256` (and `x-amz-security-token` if any); every
    /// header given here is signed.
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the body, [`EMPTY_SHA256`] or [`UNSIGNED_PAYLOAD`].
    pub payload_hash: &'a str,
    /// Region of the credential scope.
    pub region: &'a str,
    /// Service of the credential scope, `s3`.
    pub service: &'a str,
    /// Signing time; must match the `x-amz-date` header.
    pub now: SystemTime,
}

impl fmt::Debug for HeaderSigningInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let secret = k.eq_ignore_ascii_case("x-amz-security-token")
                    || k.eq_ignore_ascii_case("authorization");
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("HeaderSigningInput")
            .field("method", &self.method)
            .field("canonical_path", &self.canonical_path)
            .field("query", &self.query)
            .field("headers", &headers)
            .field("payload_hash", &self.payload_hash)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("now", &self.now)
            .finish()
    }
}

/// Returns the full `Authorization` header value:
/// `AWS4-HMAC-SHA256 Credential=AK/date/region/service/aws4_request, SignedHeaders=..., Signature=...`.
pub fn authorization_header(input: &HeaderSigningInput, creds: &Credentials) -> String {
    let (canonical, signed_headers) = header_canonical_request(input);
    let date = amz_date(input.now);
    let scope = credential_scope(&date[..8], input.region, input.service);
    let sts = string_to_sign(&date, &scope, &canonical);
    let signature = sign_hex(
        &creds.secret_key,
        &date[..8],
        input.region,
        input.service,
        &sts,
    );
    format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key
    )
}

/// Formats `now` (UTC) as `yyyymmddThhmmssZ`, the `x-amz-date` form.
pub fn amz_date(now: SystemTime) -> String {
    let secs = unix_seconds(now);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        tod / 3600,
        (tod / 60) % 60,
        tod % 60
    )
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Whole seconds since the Unix epoch, negative before it (sub-second part
/// truncated towards the past).
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 {
                whole.saturating_add(1).saturating_neg()
            } else {
                whole.saturating_neg()
            }
        }
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
/// Total for every `i64` input the clock can produce (no panics).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift to 0000-03-01 so leap days fall at the end of a 400-year era.
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365
    let mp = (5 * doy + 2) / 153; // March-based month, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era.saturating_mul(400) + i64::from(month <= 2);
    // month is 1..=12 and day 1..=31, so the casts are lossless.
    (year, month as u32, day as u32)
}

/// `yyyymmdd/region/service/aws4_request`.
pub(crate) fn credential_scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

/// The canonical query string: names and values encoded, sorted by encoded
/// name then encoded value, joined with `&`.
pub(crate) fn canonical_query<'a, I>(pairs: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut encoded: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Trims a header value and collapses inner runs of spaces to one.
fn canonical_header_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Canonical header block (each line `name:value\n`) and the signed-headers
/// list (`a;b;c`). Names are lower-cased and sorted; repeated names keep their
/// order and are joined with `,`.
pub(crate) fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut lowered: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), canonical_header_value(v)))
        .collect();
    lowered.sort_by(|a, b| a.0.cmp(&b.0)); // stable: repeated names keep order
    let mut merged: Vec<(String, String)> = Vec::with_capacity(lowered.len());
    for (k, v) in lowered {
        match merged.last_mut() {
            Some((last, value)) if *last == k => {
                value.push(',');
                value.push_str(&v);
            }
            _ => merged.push((k, v)),
        }
    }
    let block: String = merged.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = merged
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (block, signed)
}

/// Joins the six canonical-request parts with `\n`.
pub(crate) fn canonical_request(
    method: &str,
    canonical_path: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    format!(
        "{method}\n{canonical_path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
    )
}

/// The canonical request of a header-authenticated request and its
/// signed-headers list.
pub(crate) fn header_canonical_request(input: &HeaderSigningInput) -> (String, String) {
    let query = canonical_query(input.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (headers, signed) = canonical_headers(input.headers);
    let canonical = canonical_request(
        input.method,
        input.canonical_path,
        &query,
        &headers,
        &signed,
        input.payload_hash,
    );
    (canonical, signed)
}

/// `AWS4-HMAC-SHA256\n<amz date>\n<scope>\n<hex sha256 of canonical request>`.
pub(crate) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// HMAC-SHA256 of `data` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of every length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The derived SigV4 signing key for one day, region and service.
pub(crate) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// Hex signature of `string_to_sign` with the key derived for this scope.
pub(crate) fn sign_hex(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
    string_to_sign: &str,
) -> String {
    let key = signing_key(secret, date, region, service);
    hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2013-05-24T00:00:00Z, the time of the AWS documentation examples.
    fn t_2013_05_24() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    fn doc_creds() -> Credentials {
        Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    fn h(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn amz_date_formats_utc() {
        assert_eq!(amz_date(t_2013_05_24()), "20130524T000000Z");
        assert_eq!(amz_date(SystemTime::UNIX_EPOCH), "19700101T000000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_891);
        assert_eq!(amz_date(t), "20090213T233131Z");
        // Leap day and end of a leap year.
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(amz_date(t), "20000229T000000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_599); // 2024-12-31T23:59:59
        assert_eq!(amz_date(t), "20241231T235959Z");
        let t = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(amz_date(t), "19691231T235959Z");
    }

    #[test]
    fn debug_redacts_the_session_token() {
        let headers = vec![h("host", "h"), h("X-Amz-Security-Token", "very-secret")];
        let input = HeaderSigningInput {
            method: "GET",
            canonical_path: "/",
            query: &[],
            headers: &headers,
            payload_hash: EMPTY_SHA256,
            region: "r",
            service: "s3",
            now: t_2013_05_24(),
        };
        let dbg = format!("{input:?}");
        assert!(
            !dbg.contains("very-secret") && dbg.contains("<redacted>"),
            "{dbg}"
        );
    }

    #[test]
    fn sha256_of_empty_is_the_constant() {
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
    }

    #[test]
    fn header_auth_known_answer() {
        let headers = vec![
            h("Host", "examplebucket.s3.amazonaws.com"),
            h("Range", "bytes=0-9"),
            h("x-amz-content-sha256", EMPTY_SHA256),
            h("x-amz-date", "20130524T000000Z"),
        ];
        let input = HeaderSigningInput {
            method: "GET",
            canonical_path: "/test.txt",
            query: &[],
            headers: &headers,
            payload_hash: EMPTY_SHA256,
            region: "us-east-1",
            service: "s3",
            now: t_2013_05_24(),
        };
        let (canonical, signed) = header_canonical_request(&input);
        assert_eq!(signed, "host;range;x-amz-content-sha256;x-amz-date");
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            authorization_header(&input, &doc_creds()),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn header_order_and_case_do_not_matter() {
        let a = vec![
            h("x-amz-date", "20130524T000000Z"),
            h("RANGE", "  bytes=0-9 "),
            h("x-amz-content-sha256", EMPTY_SHA256),
            h("host", "examplebucket.s3.amazonaws.com"),
        ];
        let b = vec![
            h("host", "examplebucket.s3.amazonaws.com"),
            h("range", "bytes=0-9"),
            h("x-amz-content-sha256", EMPTY_SHA256),
            h("x-amz-date", "20130524T000000Z"),
        ];
        assert_eq!(canonical_headers(&a), canonical_headers(&b));
    }

    #[test]
    fn repeated_headers_are_joined_and_spaces_collapsed() {
        let hs = vec![h("X-A", "1"), h("host", "h"), h("x-a", "two  words")];
        let (block, signed) = canonical_headers(&hs);
        assert_eq!(block, "host:h\nx-a:1,two words\n");
        assert_eq!(signed, "host;x-a");
    }

    #[test]
    fn query_is_encoded_then_sorted() {
        let q = canonical_query([("prefix", "a b/c"), ("list-type", "2"), ("uploads", "")]);
        assert_eq!(q, "list-type=2&prefix=a%20b%2Fc&uploads=");
    }

    #[test]
    fn query_params_change_the_signature() {
        let headers = vec![
            h("host", "h"),
            h("x-amz-date", "20130524T000000Z"),
            h("x-amz-content-sha256", EMPTY_SHA256),
        ];
        let q = vec![("uploads".to_string(), String::new())];
        let base = HeaderSigningInput {
            method: "POST",
            canonical_path: "/b/k",
            query: &[],
            headers: &headers,
            payload_hash: EMPTY_SHA256,
            region: "us-east-1",
            service: "s3",
            now: t_2013_05_24(),
        };
        let with_q = HeaderSigningInput { query: &q, ..base };
        assert_ne!(
            authorization_header(&base, &doc_creds()),
            authorization_header(&with_q, &doc_creds())
        );
    }

    #[test]
    fn signing_key_matches_aws_doc_example() {
        // The AWS "derive a signing key" example (iam, 20120215, us-east-1).
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }
}
