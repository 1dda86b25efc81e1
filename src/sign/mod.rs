//! Request signing for S3: SigV4 header auth, SigV4 and SigV2 presigned URLs.
//!
//! Everything here is a pure function of its arguments: the time and the
//! credentials are always passed in, nothing reads the clock, the environment
//! or the network. That is what makes the known-answer tests possible and a
//! presign cost microseconds.
//!
//! Guarantees:
//! - object keys are encoded once, segment by segment (RFC 3986 unreserved
//!   set, space as `%20`), and never normalised: `a//b`, `./x`, `../x` and a
//!   trailing `/` are signed exactly as given;
//! - the secret key never appears in `Debug` output.

pub mod encode;
pub mod presign;
pub mod v4;

use std::fmt;

/// Access key, secret key and optional session token.
///
/// `Debug` redacts the secret and the token, so credentials can sit inside
/// structs that are logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id (not secret; it appears in every signed request).
    pub access_key: String,
    /// The secret key; never printed.
    pub secret_key: String,
    /// An STS session token, sent as `X-Amz-Security-Token`; never printed.
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (local test servers).
    Http,
    /// HTTPS.
    Https,
}

/// Where requests go: scheme, host and optional port, with no path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host name or IP literal (IPv6 in brackets), lower-case.
    pub host: String,
    /// Explicit port, `None` for the scheme's default.
    pub port: Option<u16>,
}

/// Path style (`endpoint/bucket/key`) or virtual-hosted style (`bucket.host/key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// `https://host/bucket/key`: works everywhere, and for bucket names with dots.
    Path,
    /// `https://bucket.host/key`: what AWS prefers.
    Virtual,
}

/// Which signature a presigned URL carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureVersion {
    /// AWS Signature Version 2 (HMAC-SHA1, absolute expiry); RGW and old tools.
    V2,
    /// AWS Signature Version 4 (HMAC-SHA256, at most 7 days).
    V4,
}
