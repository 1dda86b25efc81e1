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

use crate::config::{Profile, SIGV4_MAX_EXPIRES, parse_mode, parse_size, parse_ttl};
use crate::disposition::attachment_for;
use crate::duration::{format_duration, parse_duration};
use crate::fs::data::{DataCacheConfig, DiskConfig};
use crate::fs::write::WriteConfig;
use crate::fs::{FsConfig, MountSource};
use crate::fuse::MountOptions;
use crate::mount::MountRequest;
use crate::s3::http::ClientConfig;
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
    /// Mount s3:// (every bucket), s3://BUCKET or s3://BUCKET/PREFIX/ at MOUNTPOINT.
    #[command(after_help = MOUNT_EXAMPLES)]
    Mount(Box<MountArgs>),
}

const MOUNT_EXAMPLES: &str = "\
Every option can also be set in the profile (see config/example.toml); a flag wins.

Examples:
  s3linkfs mount s3://photos ~/photos
  s3linkfs mount --profile kna1 s3:// ~/s3 --read-only
  s3linkfs mount s3://reports/2024/ /mnt/r --cache-dir /var/cache/s3linkfs --cache-dir-size 10G
  getfattr --only-values -n user.s3.presign ~/photos/cat.jpg
  setfattr -n user.s3.content_disposition -v 'attachment; filename=\"cat.jpg\"' ~/photos/cat.jpg
  fusermount3 -u ~/photos";

/// `s3linkfs mount` arguments. Unset options fall back to the profile, then
/// to the defaults named in each help line.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// s3:// for every bucket, s3://BUCKET, or s3://BUCKET/PREFIX/.
    #[arg(value_name = "SOURCE", value_parser = MountSource::parse)]
    pub source: MountSource,
    /// An existing directory.
    pub mountpoint: PathBuf,
    /// Stay in the foreground (default: return once the mount is ready).
    #[arg(short, long)]
    pub foreground: bool,
    /// Refuse every change with EROFS.
    #[arg(long)]
    pub read_only: bool,
    /// Owner of every entry [default: you].
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group of every entry [default: your group].
    #[arg(long)]
    pub gid: Option<u32>,
    /// File permission bits, octal [default: 0644].
    #[arg(long, value_parser = parse_mode)]
    pub file_mode: Option<u16>,
    /// Directory permission bits, octal [default: 0755].
    #[arg(long, value_parser = parse_mode)]
    pub dir_mode: Option<u16>,
    /// Let other users in (needs user_allow_other in /etc/fuse.conf unless root).
    #[arg(long)]
    pub allow_other: bool,
    /// Let root in.
    #[arg(long)]
    pub allow_root: bool,
    /// How long attributes and listings are trusted, e.g. 5s; 0 disables [default: 5s].
    #[arg(long, value_name = "DUR", value_parser = parse_ttl)]
    pub metadata_ttl: Option<Duration>,
    /// How long a missing name stays missing [default: 1s].
    #[arg(long, value_name = "DUR", value_parser = parse_ttl)]
    pub negative_ttl: Option<Duration>,
    /// Memory block cache, e.g. 256M [default: 256M].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub cache_size: Option<u64>,
    /// Directory for an on-disk cache tier (also holds staged writes).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Bound of the on-disk cache, and of staged writes [default: 4G].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub cache_dir_size: Option<u64>,
    /// FUSE worker threads [default: 16].
    #[arg(long, value_name = "N")]
    pub max_threads: Option<usize>,
    /// Write logs here (filter with RUST_LOG) [default: stderr in the foreground].
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Default lifetime of user.s3.presign links [default: the profile's, 7d].
    #[arg(long, value_name = "DUR", value_parser = parse_expiry)]
    pub presign_expires: Option<Duration>,
    /// Allow a download name that names another object in the same directory.
    #[arg(long)]
    pub allow_misleading_names: bool,
    /// `attachment`: new uploads get Content-Disposition: attachment; filename="<name>".
    #[arg(long, value_name = "TYPE", value_parser = ["attachment"])]
    pub content_disposition: Option<String>,
    /// Header changes above this size use a multipart copy [default: 5G].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, hide = true)]
    pub multipart_copy_threshold: Option<u64>,
    /// First multipart part size for uploads [default: 8M].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, hide = true)]
    pub part_size: Option<u64>,
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

/// The validated mount request for `args` with `profile`: a flag wins over
/// the profile, which wins over the default. Pure: no I/O.
pub fn mount_request(args: &MountArgs, mut profile: Profile) -> Result<MountRequest, CliError> {
    let m = profile.mount.clone();
    if let Some(d) = args.presign_expires {
        profile.presign_expires = d;
    }
    if profile.signature == SignatureVersion::V4 && profile.presign_expires > SIGV4_MAX_EXPIRES {
        return Err(CliError::ExpiryTooLong {
            origin: "--presign-expires",
            value: format_duration(profile.presign_expires),
        });
    }
    let flag = |cli: bool, prof: Option<bool>| cli || prof.unwrap_or(false);
    let read_only = flag(args.read_only, m.read_only);
    let cache_dir = args.cache_dir.clone().or(m.cache_dir.clone());
    // 4 GiB: room for a few large staged files or a good share of a working
    // set, and small next to today's disks.
    let cache_dir_size = args.cache_dir_size.or(m.cache_dir_size).unwrap_or(4 << 30);
    let defaults = DataCacheConfig::default();
    let cache = DataCacheConfig {
        capacity: args
            .cache_size
            .or(m.cache_size)
            .unwrap_or(defaults.capacity),
        disk: cache_dir.as_ref().map(|dir| DiskConfig {
            dir: dir.clone(),
            capacity: cache_dir_size,
        }),
        ..defaults
    };
    // SAFETY: geteuid and getegid cannot fail and touch no memory.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let staging_dir = match &cache_dir {
        Some(d) => d.join("staging"),
        None => std::env::temp_dir().join(format!("s3linkfs-staging-{euid}")),
    };
    let fs = FsConfig {
        uid: args.uid.or(m.uid).unwrap_or(euid),
        gid: args.gid.or(m.gid).unwrap_or(egid),
        file_mode: args.file_mode.or(m.file_mode).unwrap_or(0o644),
        dir_mode: args.dir_mode.or(m.dir_mode).unwrap_or(0o755),
        // 5 s: bursts of ls/stat/path walks hit the cache; remote changes show soon.
        metadata_ttl: args
            .metadata_ttl
            .or(m.metadata_ttl)
            .unwrap_or(Duration::from_secs(5)),
        // 1 s: shells probe many missing names; new remote objects show quickly.
        negative_ttl: args
            .negative_ttl
            .or(m.negative_ttl)
            .unwrap_or(Duration::from_secs(1)),
        cache,
        read_only,
        allow_misleading_names: flag(args.allow_misleading_names, m.allow_misleading_names),
        // 5 GiB: the largest object a single CopyObject may copy.
        multipart_copy_threshold: args.multipart_copy_threshold.unwrap_or(5 << 30),
        write: WriteConfig {
            staging_dir,
            staging_capacity: cache_dir_size,
            // 8 MiB: S3's customary part size; grows past part 1000.
            part_size: args.part_size.unwrap_or(8 << 20).max(5 << 20),
            // 4 parts in flight: fills a fast link while bounding memory at 32 MiB a file.
            max_parallel_parts: 4,
            content_disposition_attachment: args
                .content_disposition
                .as_ref()
                .or(m.content_disposition.as_ref())
                .is_some(),
            // 1000 objects: a directory rename is a copy per object; beyond
            // this mv's own copy fallback is as good and shows progress.
            max_rename_objects: 1000,
        },
        profile: profile.clone(),
    };
    let options = MountOptions {
        mountpoint: args.mountpoint.clone(),
        fsname: match &args.source {
            MountSource::AllBuckets => "s3linkfs".to_string(),
            MountSource::Bucket { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        },
        allow_other: flag(args.allow_other, m.allow_other),
        allow_root: flag(args.allow_root, m.allow_root),
        read_only,
        // 16 threads: workers only hand requests to tasks, so few are needed;
        // more than cores keeps synchronous replies from queueing.
        max_threads: args.max_threads.or(m.max_threads).unwrap_or(16).max(1),
    };
    Ok(MountRequest {
        source: args.source.clone(),
        client: ClientConfig::from_profile(&profile),
        fs,
        options,
        foreground: args.foreground,
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
            mount: Default::default(),
        }
    }

    fn args(list: &[&str]) -> PresignArgs {
        let mut argv = vec!["s3linkfs", "presign"];
        argv.extend_from_slice(list);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Presign(a) => a,
            Command::Mount(_) => unreachable!(),
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

#[cfg(test)]
mod mount_tests {
    use super::*;
    use crate::config::MountSettings;
    use crate::sign::{Addressing, Credentials, Endpoint, Scheme};

    fn profile(mount: MountSettings) -> Profile {
        Profile {
            name: "t".into(),
            endpoint: Endpoint {
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: Some(7480),
            },
            region: "us-east-1".into(),
            credentials: Credentials {
                access_key: "AK".into(),
                secret_key: "s".into(),
                session_token: None,
            },
            addressing: Addressing::Path,
            signature: SignatureVersion::V4,
            presign_endpoint: None,
            presign_expires: Duration::from_secs(3600),
            mount,
        }
    }

    fn args(list: &[&str]) -> MountArgs {
        let mut argv = vec!["s3linkfs", "mount"];
        argv.extend_from_slice(list);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Mount(a) => *a,
            Command::Presign(_) => unreachable!(),
        }
    }

    #[test]
    fn flags_override_profile_override_defaults() {
        let m = MountSettings {
            file_mode: Some(0o600),
            metadata_ttl: Some(Duration::from_secs(30)),
            read_only: Some(true),
            ..MountSettings::default()
        };
        let req = mount_request(
            &args(&[
                "s3://b/p",
                "/mnt",
                "--metadata-ttl",
                "2s",
                "--cache-size",
                "64M",
            ]),
            profile(m),
        )
        .unwrap();
        assert_eq!(req.fs.file_mode, 0o600);
        assert_eq!(req.fs.dir_mode, 0o755);
        assert_eq!(req.fs.metadata_ttl, Duration::from_secs(2));
        assert!(req.fs.read_only && req.options.read_only);
        assert_eq!(req.fs.cache.capacity, 64 << 20);
        assert_eq!(
            req.source,
            MountSource::Bucket {
                bucket: "b".into(),
                prefix: "p/".into()
            }
        );
    }

    #[test]
    fn sigv4_presign_default_over_seven_days_is_refused() {
        let err = mount_request(
            &args(&["s3://b", "/mnt", "--presign-expires", "8d"]),
            profile(MountSettings::default()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("7 days"), "{err}");
    }

    #[test]
    fn bad_mount_flags_are_usage_errors() {
        for list in [
            vec!["b", "/mnt"],
            vec!["s3://b", "/mnt", "--file-mode", "999"],
            vec!["s3://b", "/mnt", "--cache-size", "lots"],
            vec!["s3://b", "/mnt", "--content-disposition", "inline"],
            vec!["s3://b"],
        ] {
            let mut argv = vec!["s3linkfs", "mount"];
            argv.extend_from_slice(&list);
            assert!(Cli::try_parse_from(&argv).is_err(), "{list:?} accepted");
        }
    }
}
