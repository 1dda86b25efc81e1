//! Command-line interface: the clap definitions and the pure part of each command.
//!
//! Why it exists: `main.rs` stays a thin shell (load the profile, call one
//! function here, print, choose the exit code), and everything a command
//! computes can be unit-tested without a process.
//!
//! Guarantees:
//! - `presign` makes no network request and reads no clock: the time is an argument;
//! - an `s3://BUCKET/KEY` argument keeps the key byte for byte (`?`, `#`, `//`,
//!   `.` and `..` segments, a trailing `/` included); only an empty bucket or key,
//!   or a key over 1024 bytes, is refused;
//! - every [`CliError`] is a problem with the user's input (exit code 2).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Profile, SIGV4_MAX_EXPIRES};
use crate::disposition::attachment_for;
use crate::duration::{format_duration, parse_duration};
use crate::sign::SignatureVersion;
use crate::sign::presign::{PresignParams, SignError, presign};

/// Longest object key S3 allows, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// s3linkfs: S3-compatible object stores as a filesystem, with share links.
#[derive(Debug, Parser)]
#[command(name = "s3linkfs", version, about, long_about = None)]
pub struct Cli {
    /// Profile to use: a [profiles.NAME] in the config file, or an aws CLI profile.
    /// Default: the config file's default_profile, else $AWS_PROFILE, else "default".
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// Config file. Default: $S3LINKFS_CONFIG, else ~/.config/s3linkfs/config.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a presigned GET URL for s3://BUCKET/KEY. Computed locally: no request is made.
    #[command(after_help = PRESIGN_EXAMPLES)]
    Presign(PresignArgs),
    // `Mount(MountArgs)` goes here: the mount subcommand, with its own args struct.
}

const PRESIGN_EXAMPLES: &str = "\
Examples:
  s3linkfs presign s3://photos/2024/cat.jpg
  s3linkfs presign s3://photos/2024/cat.jpg --expires-in 12h
  s3linkfs presign --profile kna1 s3://reports/q1.pdf --download-as 'Q1 report.pdf'
  s3linkfs presign s3://old/file.bin --signature v2 --expires-in 30d";

/// `s3linkfs presign` arguments.
#[derive(Debug, Args)]
pub struct PresignArgs {
    /// The object, as s3://BUCKET/KEY (the key is taken exactly as written).
    #[arg(value_name = "s3://BUCKET/KEY")]
    pub uri: S3Uri,

    /// How long the link stays valid: 3600, 90s, 15m, 12h or 7d.
    /// Default: the profile's presign_expires (7d). SigV4 allows at most 7d.
    #[arg(long, value_name = "DUR", value_parser = parse_expiry)]
    pub expires_in: Option<Duration>,

    /// Make the link download as NAME (signs response-content-disposition:
    /// attachment, with an RFC 8187 filename* when NAME is not ASCII).
    #[arg(long, value_name = "NAME", value_parser = parse_download_name)]
    pub download_as: Option<String>,

    /// Signature version of the link. Default: the profile's signature (v4).
    #[arg(long, value_enum)]
    pub signature: Option<SignatureArg>,
}

/// `--signature` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SignatureArg {
    /// AWS Signature Version 2 (HMAC-SHA1, absolute expiry; Ceph RGW and older servers).
    V2,
    /// AWS Signature Version 4 (at most 7 days).
    V4,
}

impl From<SignatureArg> for SignatureVersion {
    fn from(s: SignatureArg) -> Self {
        match s {
            SignatureArg::V2 => SignatureVersion::V2,
            SignatureArg::V4 => SignatureVersion::V4,
        }
    }
}

/// An object named as `s3://BUCKET/KEY`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Uri {
    /// Bucket name (checked further by the signer for the addressing style).
    pub bucket: String,
    /// Object key, exactly as written after the first `/` following the bucket.
    pub key: String,
}

impl FromStr for S3Uri {
    type Err = String;

    /// Splits at the first `/` after `s3://`; everything after it is the key,
    /// untouched (no percent-decoding, no normalisation, `?` and `#` included).
    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{s}` is not an s3://BUCKET/KEY address"))?;
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| format!("`{s}` names no object: expected s3://BUCKET/KEY"))?;
        if bucket.is_empty() {
            return Err(format!("`{s}` has an empty bucket name"));
        }
        if let Some(c) = bucket.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("bucket name `{bucket}` contains {c:?}"));
        }
        if key.is_empty() {
            return Err(format!(
                "`{s}` has an empty key: expected s3://BUCKET/KEY (a link is for an object)"
            ));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(format!(
                "the key is {} bytes; S3 keys are at most {MAX_KEY_BYTES} bytes",
                key.len()
            ));
        }
        Ok(S3Uri {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

fn parse_expiry(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn parse_download_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("the download name is empty".into());
    }
    if s.chars().any(char::is_control) {
        return Err("the download name contains a control character".into());
    }
    Ok(s.to_string())
}

/// Why a command's input was refused. All of these are usage errors (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A SigV4 link was asked to live longer than the protocol allows.
    #[error(
        "{origin} {value} is longer than 7 days, the most a SigV4 link can last; \
         use a shorter expiry, or --signature v2 where the server supports it"
    )]
    ExpiryTooLong {
        /// `--expires-in` or `the profile's presign_expires`.
        origin: &'static str,
        /// The expiry as given, in seconds.
        value: String,
    },
    /// The signer refused the input (bucket name, endpoint, expiry).
    #[error("{uri}: {error}")]
    Sign {
        /// The object asked for.
        uri: S3Uri,
        /// What the signer found wrong (part of the message, not a separate cause).
        error: SignError,
    },
}

/// The presigned URL for `args` with `profile`, signed at `now`. Pure: no I/O.
pub fn presign_url(
    args: &PresignArgs,
    profile: &Profile,
    now: SystemTime,
) -> Result<String, CliError> {
    let version = args.signature.map_or(profile.signature, Into::into);
    let (expires_in, origin) = match args.expires_in {
        Some(d) => (d, "--expires-in"),
        None => (profile.presign_expires, "the profile's presign_expires"),
    };
    if version == SignatureVersion::V4 && expires_in > SIGV4_MAX_EXPIRES {
        return Err(CliError::ExpiryTooLong {
            origin,
            value: format_duration(expires_in),
        });
    }
    let disposition = args.download_as.as_deref().map(attachment_for);
    let params = PresignParams {
        endpoint: profile
            .presign_endpoint
            .as_ref()
            .unwrap_or(&profile.endpoint),
        addressing: profile.addressing,
        region: &profile.region,
        bucket: &args.uri.bucket,
        key: &args.uri.key,
        credentials: &profile.credentials,
        now,
        expires_in,
        response_content_disposition: disposition.as_deref(),
        response_content_type: None,
    };
    presign(version, &params).map_err(|error| CliError::Sign {
        uri: args.uri.clone(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::{Addressing, Credentials, Endpoint, Scheme};

    fn uri(s: &str) -> Result<S3Uri, String> {
        s.parse()
    }

    #[test]
    fn uri_keeps_key_verbatim() {
        for key in [
            "a",
            "a b+c%20d",
            "q?x=1#frag",
            "a//b",
            "./x/../y/",
            "dir/",
            "/leading",
            "ünï/cödé ☃",
            "&=~",
        ] {
            let u = uri(&format!("s3://bkt/{key}")).unwrap();
            assert_eq!((u.bucket.as_str(), u.key.as_str()), ("bkt", key));
        }
        assert_eq!(
            uri(&format!("s3://b/{}", "k".repeat(1024)))
                .unwrap()
                .key
                .len(),
            1024
        );
    }

    #[test]
    fn uri_rejects() {
        for bad in [
            "bkt/key",
            "S3://bkt/key",
            "s3://",
            "s3://bkt",
            "s3://bkt/",
            "s3:///key",
            "s3://b t/key",
            "https://bkt/key",
        ] {
            assert!(uri(bad).is_err(), "{bad} accepted");
        }
        let long = format!("s3://b/{}", "k".repeat(1025));
        assert!(uri(&long).unwrap_err().contains("1024"));
    }

    fn profile(signature: SignatureVersion, presign_expires: Duration) -> Profile {
        Profile {
            name: "t".into(),
            endpoint: Endpoint {
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: Some(7480),
            },
            region: "us-east-1".into(),
            credentials: Credentials {
                access_key: "AKIDEXAMPLE".into(),
                secret_key: "secret".into(),
                session_token: None,
            },
            addressing: Addressing::Path,
            signature,
            presign_endpoint: None,
            presign_expires,
        }
    }

    fn args(list: &[&str]) -> PresignArgs {
        let mut argv = vec!["s3linkfs", "presign"];
        argv.extend_from_slice(list);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Presign(a) => a,
        }
    }

    const DAY: u64 = 86_400;

    #[test]
    fn sigv4_expiry_limit() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let p = profile(SignatureVersion::V4, Duration::from_secs(7 * DAY));
        let url = presign_url(&args(&["s3://b/k"]), &p, now).unwrap();
        assert!(url.contains("X-Amz-Expires=604800"), "{url}");
        let err = presign_url(&args(&["s3://b/k", "--expires-in", "8d"]), &p, now).unwrap_err();
        assert!(err.to_string().contains("--expires-in"), "{err}");
        assert!(err.to_string().contains("7 days"), "{err}");
        // A long profile default is fine for v2, refused when v4 is forced.
        let p2 = profile(SignatureVersion::V2, Duration::from_secs(30 * DAY));
        let url = presign_url(&args(&["s3://b/k"]), &p2, now).unwrap();
        assert!(
            url.contains(&format!("Expires={}", 1_700_000_000 + 30 * DAY)),
            "{url}"
        );
        let err = presign_url(&args(&["s3://b/k", "--signature", "v4"]), &p2, now).unwrap_err();
        assert!(err.to_string().contains("presign_expires"), "{err}");
    }

    #[test]
    fn presign_endpoint_and_download_name() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut p = profile(SignatureVersion::V4, Duration::from_secs(3600));
        p.presign_endpoint = Some(Endpoint {
            scheme: Scheme::Https,
            host: "files.example.com".into(),
            port: None,
        });
        let url = presign_url(&args(&["s3://b/k", "--download-as", "r.pdf"]), &p, now).unwrap();
        assert!(url.starts_with("https://files.example.com/b/k?"), "{url}");
        assert!(
            url.contains("response-content-disposition=attachment"),
            "{url}"
        );
    }

    #[test]
    fn bad_arguments_are_clap_errors() {
        for list in [
            vec!["s3://b/k", "--expires-in", "0"],
            vec!["s3://b/k", "--expires-in", "soon"],
            vec!["s3://b/k", "--signature", "v3"],
            vec!["s3://b/k", "--download-as", ""],
            vec!["s3://b"],
            vec![],
        ] {
            let mut argv = vec!["s3linkfs", "presign"];
            argv.extend_from_slice(&list);
            assert!(Cli::try_parse_from(&argv).is_err(), "{list:?} accepted");
        }
    }
}
