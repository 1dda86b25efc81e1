//! Profiles: raw TOML, environment and `~/.aws` input, validated into a typed [`Profile`].
//!
//! Why it exists: every command needs one answer to "which endpoint, which keys,
//! which defaults", and users already keep that answer in different places. This
//! module reads them all, in one fixed order, and rejects bad input with a message
//! naming where it came from, the key and what is wrong.
//!
//! Sources, per setting, first hit wins:
//! 1. the s3linkfs config file (`--config FILE`, else `$S3LINKFS_CONFIG`, else
//!    `$XDG_CONFIG_HOME/s3linkfs/config.toml` or `~/.config/s3linkfs/config.toml`,
//!    which may be missing), profile `[profiles.NAME]`;
//! 2. the standard AWS environment variables (`AWS_ACCESS_KEY_ID`, ...);
//! 3. the aws CLI files `~/.aws/credentials` and `~/.aws/config` (or
//!    `$AWS_SHARED_CREDENTIALS_FILE` / `$AWS_CONFIG_FILE`), profile `NAME`;
//! 4. the built-in defaults below, each with its reason.
//!
//! The profile NAME is `--profile`, else the file's `default_profile`, else
//! `$AWS_PROFILE`, else `default`.
//!
//! Guarantees:
//! - credentials are taken as a unit (key, secret, token) from one source, never
//!   mixed; with an explicit `--profile` the `AWS_*` key variables are ignored,
//!   as the aws CLI does;
//! - nothing here reads the process environment except
//!   [`Environment::from_process`], so tests inject everything;
//! - secrets never appear in `Debug` output or error messages.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration::parse_duration;
use crate::sign::{Addressing, Credentials, Endpoint, Scheme, SignatureVersion};

/// Default signing region: what AWS SDKs assume when none is set, and what
/// Ceph RGW and MinIO accept out of the box.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default addressing: path style works on every S3-compatible server, needs no
/// wildcard DNS, and works for bucket names containing dots.
pub const DEFAULT_ADDRESSING: Addressing = Addressing::Path;
/// Default signature: SigV4 is the only one AWS and Garage accept; SigV2 is opt-in.
pub const DEFAULT_SIGNATURE: SignatureVersion = SignatureVersion::V4;
/// Default link lifetime: 7 days, as `mc share download`, and the SigV4 maximum.
pub const DEFAULT_PRESIGN_EXPIRES: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest lifetime a SigV4 presigned URL may have (604800 s), by the protocol.
pub const SIGV4_MAX_EXPIRES: Duration = Duration::from_secs(604_800);
/// Profile used when nothing names one: the aws CLI's convention.
pub const DEFAULT_PROFILE_NAME: &str = "default";

/// The environment variables this module reads; nothing else is collected.
const ENV_VARS: &[&str] = &[
    "S3LINKFS_CONFIG",
    "XDG_CONFIG_HOME",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
];

/// A validated profile: everything needed to talk to one S3 service.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Profile name, for messages.
    pub name: String,
    /// Where requests go.
    pub endpoint: Endpoint,
    /// Signing region.
    pub region: String,
    /// Credentials (Debug redacts the secret).
    pub credentials: Credentials,
    /// Path or virtual-hosted style.
    pub addressing: Addressing,
    /// Signature version for presigned URLs (requests always use SigV4).
    pub signature: SignatureVersion,
    /// Public host for links, when it differs from `endpoint`.
    pub presign_endpoint: Option<Endpoint>,
    /// Default link lifetime.
    pub presign_expires: Duration,
    /// Mount settings from the profile; command-line flags override them.
    pub mount: MountSettings,
}

/// Mount settings a profile may carry. Each is `None` when the profile does
/// not set it; the mount command then uses its flag or its default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountSettings {
    /// Owner shown for every entry.
    pub uid: Option<u32>,
    /// Group shown for every entry.
    pub gid: Option<u32>,
    /// Permission bits of files.
    pub file_mode: Option<u16>,
    /// Permission bits of directories.
    pub dir_mode: Option<u16>,
    /// Let other users in.
    pub allow_other: Option<bool>,
    /// Let root in.
    pub allow_root: Option<bool>,
    /// How long attributes and listings are trusted.
    pub metadata_ttl: Option<Duration>,
    /// How long a missing name is trusted to stay missing.
    pub negative_ttl: Option<Duration>,
    /// Memory cache size in bytes.
    pub cache_size: Option<u64>,
    /// On-disk cache directory.
    pub cache_dir: Option<PathBuf>,
    /// On-disk cache size in bytes.
    pub cache_dir_size: Option<u64>,
    /// FUSE worker threads.
    pub max_threads: Option<usize>,
    /// Log file.
    pub log_file: Option<PathBuf>,
    /// Mount read-only.
    pub read_only: Option<bool>,
    /// Allow download names that name another object.
    pub allow_misleading_names: Option<bool>,
    /// `attachment`: set Content-Disposition on new uploads.
    pub content_disposition: Option<String>,
}

/// Parses a byte size: `1048576`, `512K`, `256M`, `1G`, `2T` (powers of
/// 1024; a trailing `B` or `iB` is accepted).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 1048576, 512K, 256M, 1G)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Parses permission bits in octal: `644`, `0644`, `0o644`.
pub fn parse_mode(s: &str) -> Result<u16, String> {
    let t = s.trim_start_matches("0o");
    let m =
        u16::from_str_radix(t, 8).map_err(|_| format!("`{s}` is not an octal mode (e.g. 0644)"))?;
    if m > 0o7777 {
        return Err(format!("`{s}` is not a mode: at most 07777"));
    }
    Ok(m)
}

/// Parses a cache lifetime: `0` (no caching) or a duration such as `5s`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s).map_err(|e| e.to_string())
}

/// The process environment as this module sees it: a few variables and the home
/// directory. Tests build one by hand instead of touching the real environment.
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    home: Option<PathBuf>,
}

impl fmt::Debug for Environment {
    // Values are left out: AWS_SECRET_ACCESS_KEY is one of them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("home", &self.home)
            .finish()
    }
}

impl Environment {
    /// An empty environment with the given home directory (for tests).
    pub fn new(home: Option<PathBuf>) -> Self {
        Environment {
            vars: BTreeMap::new(),
            home,
        }
    }

    /// The real process environment: only the variables listed in this module, and `$HOME`.
    pub fn from_process() -> Self {
        let mut env = Environment::new(std::env::var_os("HOME").map(PathBuf::from));
        for name in ENV_VARS {
            if let Ok(v) = std::env::var(name) {
                env.vars.insert((*name).to_string(), v);
            }
        }
        env
    }

    /// Sets one variable (builder style, for tests).
    pub fn with_var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }

    /// A variable's value; unset and empty are the same, as for the aws CLI.
    fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `~/REL`, when the home directory is known.
    fn home_join(&self, rel: &str) -> Option<PathBuf> {
        self.home.as_ref().map(|h| h.join(rel))
    }
}

/// What the caller asked for on the command line.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `--config FILE`: must exist when given.
    pub config_file: Option<PathBuf>,
    /// `--profile NAME`.
    pub profile: Option<String>,
}

/// A loaded profile and what the caller should tell the user about it.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The validated profile.
    pub profile: Profile,
    /// The s3linkfs config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Warnings to print on stderr (e.g. a config file with secrets readable by others).
    pub warnings: Vec<String>,
}

/// Why a configuration could not be loaded. Every message names where the bad
/// input came from; none contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file that had to be read could not be.
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (part of the message, not a separate cause).
        error: std::io::Error,
    },
    /// The s3linkfs config file is not valid TOML or has an unknown key or a wrong type.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// What is wrong, naming the key where known.
        message: String,
    },
    /// A key has a value that does not validate.
    #[error("{origin}: {key}: {problem}")]
    Invalid {
        /// Where the value came from, e.g. `/home/u/.config/s3linkfs/config.toml [profiles.x]`
        /// or `environment`.
        origin: String,
        /// The key or variable name.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A profile was named but no source defines it.
    #[error("profile `{name}` not found (looked in {searched})")]
    ProfileNotFound {
        /// The profile name.
        name: String,
        /// The places looked in.
        searched: String,
    },
    /// No source supplied an access key and secret for the profile.
    #[error(
        "profile `{name}`: no credentials found (looked in {searched}, and the variables \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    )]
    NoCredentials {
        /// The profile name.
        name: String,
        /// The places looked in.
        searched: String,
    },
}

/// The s3linkfs config file exactly as written. Every key is optional here;
/// validation happens in one place, [`resolve`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Profile used when `--profile` is not given.
    pub default_profile: Option<String>,
    /// `[profiles.NAME]` tables.
    #[serde(default)]
    pub profiles: BTreeMap<String, RawProfile>,
}

/// One `[profiles.NAME]` table as written. New keys (e.g. mount options) are
/// added here as `Option<...>` fields and validated in [`resolve`].
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// `https://host[:port]`; the scheme decides http or https.
    pub endpoint: Option<String>,
    /// Signing region.
    pub region: Option<String>,
    /// Access key id.
    pub access_key: Option<String>,
    /// Secret key.
    pub secret_key: Option<String>,
    /// STS session token.
    pub session_token: Option<String>,
    /// `path` or `virtual`.
    pub addressing: Option<String>,
    /// `v4` or `v2`.
    pub signature: Option<String>,
    /// Public `https://host[:port]` used in links instead of `endpoint`.
    pub presign_endpoint: Option<String>,
    /// Default link lifetime, e.g. `7d`.
    pub presign_expires: Option<String>,
    /// Mount: owner uid.
    pub uid: Option<u32>,
    /// Mount: group gid.
    pub gid: Option<u32>,
    /// Mount: file permission bits, octal string such as `"0644"`.
    pub file_mode: Option<String>,
    /// Mount: directory permission bits, octal string.
    pub dir_mode: Option<String>,
    /// Mount: allow other users.
    pub allow_other: Option<bool>,
    /// Mount: allow root.
    pub allow_root: Option<bool>,
    /// Mount: attribute and listing TTL, e.g. `5s`.
    pub metadata_ttl: Option<String>,
    /// Mount: negative lookup TTL, e.g. `1s`.
    pub negative_ttl: Option<String>,
    /// Mount: memory cache size, e.g. `256M`.
    pub cache_size: Option<String>,
    /// Mount: on-disk cache directory.
    pub cache_dir: Option<PathBuf>,
    /// Mount: on-disk cache size, e.g. `4G`.
    pub cache_dir_size: Option<String>,
    /// Mount: FUSE worker threads.
    pub max_threads: Option<usize>,
    /// Mount: log file.
    pub log_file: Option<PathBuf>,
    /// Mount: read-only.
    pub read_only: Option<bool>,
    /// Mount: allow misleading download names.
    pub allow_misleading_names: Option<bool>,
    /// Mount: `attachment` to set Content-Disposition on new uploads.
    pub content_disposition: Option<String>,
}

impl RawProfile {
    /// Validates the mount settings; `origin` names the file and table.
    fn mount_settings(&self, origin: &str) -> Result<MountSettings, ConfigError> {
        let bad = |key: &str, problem: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key: key.to_string(),
            problem,
        };
        let opt = |key: &str, v: &Option<String>, f: fn(&str) -> Result<u64, String>| {
            v.as_deref().map(f).transpose().map_err(|p| bad(key, p))
        };
        let mode = |key: &str, v: &Option<String>| {
            v.as_deref()
                .map(parse_mode)
                .transpose()
                .map_err(|p| bad(key, p))
        };
        let ttl = |key: &str, v: &Option<String>| {
            v.as_deref()
                .map(parse_ttl)
                .transpose()
                .map_err(|p| bad(key, p))
        };
        if let Some(cd) = &self.content_disposition
            && cd != "attachment"
        {
            return Err(bad(
                "content_disposition",
                format!("`{cd}`: the only value is `attachment`"),
            ));
        }
        if self.max_threads == Some(0) {
            return Err(bad("max_threads", "must be at least 1".into()));
        }
        Ok(MountSettings {
            uid: self.uid,
            gid: self.gid,
            file_mode: mode("file_mode", &self.file_mode)?,
            dir_mode: mode("dir_mode", &self.dir_mode)?,
            allow_other: self.allow_other,
            allow_root: self.allow_root,
            metadata_ttl: ttl("metadata_ttl", &self.metadata_ttl)?,
            negative_ttl: ttl("negative_ttl", &self.negative_ttl)?,
            cache_size: opt("cache_size", &self.cache_size, parse_size)?,
            cache_dir: self.cache_dir.clone(),
            cache_dir_size: opt("cache_dir_size", &self.cache_dir_size, parse_size)?,
            max_threads: self.max_threads,
            log_file: self.log_file.clone(),
            read_only: self.read_only,
            allow_misleading_names: self.allow_misleading_names,
            content_disposition: self.content_disposition.clone(),
        })
    }
}

impl fmt::Debug for RawProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("RawProfile")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &redact(&self.secret_key))
            .field("session_token", &redact(&self.session_token))
            .field("addressing", &self.addressing)
            .field("signature", &self.signature)
            .field("presign_endpoint", &self.presign_endpoint)
            .field("presign_expires", &self.presign_expires)
            .finish_non_exhaustive()
    }
}

impl RawProfile {
    fn holds_secret(&self) -> bool {
        self.secret_key.is_some() || self.session_token.is_some()
    }
}

/// Parses the s3linkfs config file text; `path` is only used in messages.
pub fn parse_config(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, key) = match e.span() {
            Some(span) => locate(text, span.start),
            None => (0, None),
        };
        let mut message = e.message().trim().to_string();
        // serde quotes the offending value ("invalid type: integer `123`, expected a
        // string"); it may be a secret, so keep only what was expected.
        if message.starts_with("invalid ")
            && let Some(i) = message.find(", expected")
        {
            message = format!("wrong value type, {}", &message[i + 2..]);
        }
        if let Some(key) = key
            && !message.contains(&format!("`{key}`"))
        {
            message = format!("{key}: {message}");
        }
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            message,
        }
    })
}

/// The 1-based line of byte `offset` and a description of the key written on it
/// (`[profiles.x] secret_key`), without ever quoting the value, which may be a secret.
fn locate(text: &str, offset: usize) -> (usize, Option<String>) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let bare = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"'))
    };
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| bare(k));
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']') && bare(l.trim_matches(['[', ']'])));
    let described = match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t} {k}")),
        (None, Some(k)) => Some(k.to_string()),
        _ => None,
    };
    (line_no, described)
}

/// Parses `scheme://host[:port][/]` into an [`Endpoint`]. No path, query,
/// fragment or user info: links and requests are built from the host alone.
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
        (Scheme::Https, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (Scheme::Http, r)
    } else {
        return Err(format!(
            "`{s}` must start with http:// or https:// (the scheme decides which)"
        ));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(format!(
            "`{s}` has a path, query or fragment; give only scheme://host[:port]"
        ));
    }
    if authority.contains('@') {
        return Err(format!(
            "`{s}` has user info; put keys in access_key and secret_key instead"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inner, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{s}`: unclosed `[` in IPv6 address"))?;
        if inner.is_empty()
            || !inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("`{s}`: `[{inner}]` is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("`{s}`: unexpected `{p}` after the IPv6 address"))?,
            ),
        };
        (format!("[{}]", inner.to_ascii_lowercase()), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    if !host.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(format!("`{s}`: `{host}` is not a valid host name"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("`{s}`: port `{p}` is not a number from 1 to 65535")),
        },
    };
    Ok(Endpoint { scheme, host, port })
}

/// The AWS endpoint for `region`, used when no source names an endpoint, so aws
/// CLI users with only keys and a region get a working profile.
fn aws_endpoint(region: &str) -> Endpoint {
    let host = if region == "us-east-1" {
        "s3.amazonaws.com".to_string()
    } else {
        format!("s3.{region}.amazonaws.com")
    };
    Endpoint {
        scheme: Scheme::Https,
        host,
        port: None,
    }
}

/// One section of an aws CLI ini file: `key = value`, with nested blocks
/// (`s3 =` followed by indented lines) flattened to `s3.key`.
type IniSection = BTreeMap<String, String>;

/// Parses the aws CLI's ini format. Comment lines start with `#` or `;`; there are
/// no inline comments (values may contain `#`, as secrets sometimes do).
pub fn parse_aws_ini(text: &str) -> BTreeMap<String, IniSection> {
    let mut sections: BTreeMap<String, IniSection> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut nested: Option<String> = None;
    for raw in text.lines() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indented = raw.starts_with([' ', '\t']);
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            let name = trimmed[1..trimmed.len() - 1].trim().to_string();
            sections.entry(name.clone()).or_default();
            current = Some(name);
            nested = None;
            continue;
        }
        let Some(section) = current.as_ref() else {
            continue;
        };
        let Some((k, v)) = trimmed.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        let entry = sections.entry(section.clone()).or_default();
        match (&nested, indented) {
            (Some(parent), true) => {
                entry.insert(format!("{parent}.{k}"), v);
            }
            _ if v.is_empty() => nested = Some(k),
            _ => {
                nested = None;
                entry.insert(k, v);
            }
        }
    }
    sections
}

/// One value with the place it came from, for messages.
struct Sourced<'a> {
    value: &'a str,
    origin: String,
    key: String,
}

fn sourced<'a>(value: Option<&'a str>, origin: &str, key: &str) -> Option<Sourced<'a>> {
    value.map(|value| Sourced {
        value,
        origin: origin.to_string(),
        key: key.to_string(),
    })
}

/// The aws CLI profile `name`, merged from the credentials and config files.
#[derive(Default)]
struct AwsProfile {
    /// Keys from `~/.aws/credentials` first, then `~/.aws/config`, with their origin.
    values: BTreeMap<String, (String, String)>,
    found: bool,
}

impl AwsProfile {
    fn get(&self, key: &str) -> Option<Sourced<'_>> {
        self.values.get(key).map(|(v, origin)| Sourced {
            value: v,
            origin: origin.clone(),
            key: key.to_string(),
        })
    }
}

/// Reads a file that may legitimately be missing.
fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            error,
        }),
    }
}

fn load_aws_profile(env: &Environment, name: &str) -> Result<(AwsProfile, String), ConfigError> {
    let creds_path = env
        .var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env.home_join(".aws/credentials"));
    let config_path = env
        .var("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| env.home_join(".aws/config"));
    let mut profile = AwsProfile::default();
    let mut searched = Vec::new();
    // The credentials file names sections `[NAME]`; the config file `[profile NAME]`,
    // except `[default]`.
    let files = [
        (creds_path, vec![name.to_string()]),
        (
            config_path,
            if name == DEFAULT_PROFILE_NAME {
                vec!["default".to_string(), "profile default".to_string()]
            } else {
                vec![format!("profile {name}")]
            },
        ),
    ];
    for (path, section_names) in files {
        let Some(path) = path else { continue };
        searched.push(path.display().to_string());
        let Some(text) = read_optional(&path)? else {
            continue;
        };
        let sections = parse_aws_ini(&text);
        for section_name in section_names {
            if let Some(section) = sections.get(&section_name) {
                profile.found = true;
                let origin = format!("{} [{section_name}]", path.display());
                for (k, v) in section {
                    profile
                        .values
                        .entry(k.clone())
                        .or_insert_with(|| (v.clone(), origin.clone()));
                }
            }
        }
    }
    Ok((profile, searched.join(", ")))
}

/// The s3linkfs config file to read and whether it must exist.
fn config_path(opts: &LoadOptions, env: &Environment) -> Option<(PathBuf, bool)> {
    if let Some(p) = &opts.config_file {
        return Some((p.clone(), true));
    }
    if let Some(p) = env.var("S3LINKFS_CONFIG") {
        return Some((PathBuf::from(p), true));
    }
    let base = env
        .var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env.home_join(".config"))?;
    Some((base.join("s3linkfs/config.toml"), false))
}

/// A warning like ssh's when a file holding secrets is readable by group or others.
#[cfg(unix)]
fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "WARNING: {} holds secret keys but its permissions {mode:04o} let group or others \
             access it; run: chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn permission_warning(_path: &Path) -> Option<String> {
    None
}

/// Loads and validates the profile selected by `opts`, reading only `env` and
/// the files it points to.
pub fn load(opts: &LoadOptions, env: &Environment) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let mut raw = RawConfig::default();
    let mut file_used = None;
    let considered = config_path(opts, env);
    if let Some((path, required)) = considered.clone() {
        let text = if required {
            Some(
                std::fs::read_to_string(&path).map_err(|error| ConfigError::Read {
                    path: path.clone(),
                    error,
                })?,
            )
        } else {
            read_optional(&path)?
        };
        if let Some(text) = text {
            raw = parse_config(&path, &text)?;
            if raw.profiles.values().any(RawProfile::holds_secret)
                && let Some(w) = permission_warning(&path)
            {
                warnings.push(w);
            }
            file_used = Some(path);
        }
    }
    let profile = resolve(
        &raw,
        considered.as_ref().map(|(p, _)| p.as_path()),
        opts,
        env,
    )?;
    Ok(Loaded {
        profile,
        config_file: file_used,
        warnings,
    })
}

/// Picks the profile name and validates every setting from the first source
/// that has it (file, environment, aws CLI files, default). `file` is the
/// s3linkfs config file looked at (named in messages), `raw` its content.
pub fn resolve(
    raw: &RawConfig,
    file: Option<&Path>,
    opts: &LoadOptions,
    env: &Environment,
) -> Result<Profile, ConfigError> {
    let file_name = file.map_or_else(
        || "<no config file>".to_string(),
        |p| p.display().to_string(),
    );
    let (name, explicit) = match (&opts.profile, &raw.default_profile, env.var("AWS_PROFILE")) {
        (Some(p), _, _) => (p.clone(), true),
        (None, Some(p), _) => (p.clone(), true),
        (None, None, Some(p)) => (p.to_string(), true),
        (None, None, None) => (DEFAULT_PROFILE_NAME.to_string(), false),
    };
    if name.is_empty() {
        return Err(ConfigError::Invalid {
            origin: file_name,
            key: "profile".into(),
            problem: "the profile name is empty".into(),
        });
    }
    let empty = RawProfile::default();
    let file_profile = raw.profiles.get(&name);
    let fp = file_profile.unwrap_or(&empty);
    let file_origin = format!("{file_name} [profiles.{name}]");
    let (aws, aws_searched) = load_aws_profile(env, &name)?;
    let searched = match file {
        Some(p) => format!("{}, {aws_searched}", p.display()),
        None => aws_searched,
    };
    if file_profile.is_none() && !aws.found && explicit {
        return Err(ConfigError::ProfileNotFound { name, searched });
    }

    // First source that has a value for this setting.
    let from_env = |var: &str| -> Option<Sourced<'_>> {
        env.var(var).map(|value| Sourced {
            value,
            origin: "environment".to_string(),
            key: var.to_string(),
        })
    };
    let invalid = |s: &Sourced<'_>, problem: String| ConfigError::Invalid {
        origin: s.origin.clone(),
        key: s.key.clone(),
        problem,
    };

    let region_src = sourced(fp.region.as_deref(), &file_origin, "region")
        .or_else(|| from_env("AWS_REGION"))
        .or_else(|| from_env("AWS_DEFAULT_REGION"))
        .or_else(|| aws.get("region"));
    let region = match &region_src {
        Some(s) => {
            let ok = !s.value.is_empty()
                && s.value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(invalid(
                    s,
                    format!(
                        "`{}` is not a region name (letters, digits, `-`, `_`, `.`)",
                        s.value
                    ),
                ));
            }
            s.value.to_string()
        }
        None => DEFAULT_REGION.to_string(),
    };

    let endpoint = match sourced(fp.endpoint.as_deref(), &file_origin, "endpoint")
        .or_else(|| from_env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| from_env("AWS_ENDPOINT_URL"))
        .or_else(|| aws.get("s3.endpoint_url"))
        .or_else(|| aws.get("endpoint_url"))
    {
        Some(s) => parse_endpoint(s.value).map_err(|p| invalid(&s, p))?,
        None => aws_endpoint(&region),
    };

    let presign_endpoint = match sourced(
        fp.presign_endpoint.as_deref(),
        &file_origin,
        "presign_endpoint",
    ) {
        Some(s) => Some(parse_endpoint(s.value).map_err(|p| invalid(&s, p))?),
        None => None,
    };

    let addressing = match sourced(fp.addressing.as_deref(), &file_origin, "addressing")
        .or_else(|| aws.get("s3.addressing_style"))
    {
        Some(s) => match s.value {
            "path" => Addressing::Path,
            "virtual" => Addressing::Virtual,
            // The aws CLI's `auto` leaves the choice to the tool: ours is the default.
            "auto" if s.key == "s3.addressing_style" => DEFAULT_ADDRESSING,
            other => {
                return Err(invalid(&s, format!("`{other}` is not `path` or `virtual`")));
            }
        },
        None => DEFAULT_ADDRESSING,
    };

    let signature = match sourced(fp.signature.as_deref(), &file_origin, "signature") {
        Some(s) => match s.value {
            "v4" => SignatureVersion::V4,
            "v2" => SignatureVersion::V2,
            other => return Err(invalid(&s, format!("`{other}` is not `v4` or `v2`"))),
        },
        None => DEFAULT_SIGNATURE,
    };

    let presign_expires = match sourced(
        fp.presign_expires.as_deref(),
        &file_origin,
        "presign_expires",
    ) {
        Some(s) => {
            let d = parse_duration(s.value).map_err(|e| invalid(&s, e.to_string()))?;
            if signature == SignatureVersion::V4 && d > SIGV4_MAX_EXPIRES {
                return Err(invalid(
                    &s,
                    format!(
                        "`{}` is longer than 7d, the most a SigV4 link allows \
                         (use signature = \"v2\" for longer links where the server supports it)",
                        s.value
                    ),
                ));
            }
            d
        }
        None => DEFAULT_PRESIGN_EXPIRES,
    };

    let credentials = credentials(fp, &file_origin, &aws, env, opts.profile.is_some())?
        .ok_or_else(|| ConfigError::NoCredentials {
            name: name.clone(),
            searched: searched.clone(),
        })?;

    let mount = fp.mount_settings(&file_origin)?;

    Ok(Profile {
        name,
        endpoint,
        region,
        credentials,
        addressing,
        signature,
        presign_endpoint,
        presign_expires,
        mount,
    })
}

/// Credentials as a unit from the first source that has an access key: the file
/// profile, the environment (unless `--profile` was given), the aws CLI profile.
fn credentials(
    fp: &RawProfile,
    file_origin: &str,
    aws: &AwsProfile,
    env: &Environment,
    explicit_profile: bool,
) -> Result<Option<Credentials>, ConfigError> {
    type Triple<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);
    let (file_names, env_names, aws_names) = (
        ["access_key", "secret_key", "session_token"],
        [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        ],
        [
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_session_token",
        ],
    );
    let aws_origin = aws
        .get("aws_access_key_id")
        .or_else(|| aws.get("aws_secret_access_key"))
        .map(|s| s.origin)
        .unwrap_or_default();
    let mut candidates: Vec<(Triple<'_>, String, [&str; 3])> = vec![(
        (
            fp.access_key.as_deref(),
            fp.secret_key.as_deref(),
            fp.session_token.as_deref(),
        ),
        file_origin.to_string(),
        file_names,
    )];
    if !explicit_profile {
        candidates.push((
            (
                env.var(env_names[0]),
                env.var(env_names[1]),
                env.var(env_names[2]),
            ),
            "environment".to_string(),
            env_names,
        ));
    }
    let aws_value = |k: &str| aws.values.get(k).map(|(v, _)| v.as_str());
    candidates.push((
        (
            aws_value(aws_names[0]),
            aws_value(aws_names[1]),
            aws_value(aws_names[2]),
        ),
        aws_origin,
        aws_names,
    ));
    for ((access, secret, token), origin, names) in candidates {
        let missing = |key: &str| ConfigError::Invalid {
            origin: origin.clone(),
            key: key.to_string(),
            problem: "missing: access key and secret key are needed together".into(),
        };
        match (access, secret) {
            (None, None) => {
                if token.is_some() {
                    return Err(missing(names[0]));
                }
                continue;
            }
            (Some(_), None) => return Err(missing(names[1])),
            (None, Some(_)) => return Err(missing(names[0])),
            (Some(a), Some(s)) => {
                if a.trim().is_empty() || a.chars().any(|c| c.is_control() || c == ' ') {
                    return Err(ConfigError::Invalid {
                        origin,
                        key: names[0].into(),
                        problem: "must be non-empty, without spaces or control characters".into(),
                    });
                }
                if s.is_empty() || s.chars().any(char::is_control) {
                    return Err(ConfigError::Invalid {
                        origin,
                        key: names[1].into(),
                        problem: "must be non-empty, without control characters".into(),
                    });
                }
                return Ok(Some(Credentials {
                    access_key: a.to_string(),
                    secret_key: s.to_string(),
                    session_token: token.filter(|t| !t.is_empty()).map(str::to_string),
                }));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        let e = parse_endpoint("https://S3-kna1.CityCloud.com:8080").unwrap();
        assert_eq!(e.scheme, Scheme::Https);
        assert_eq!(e.host, "s3-kna1.citycloud.com");
        assert_eq!(e.port, Some(8080));
        let e = parse_endpoint("http://127.0.0.1:7480/").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Http, "127.0.0.1", Some(7480))
        );
        let e = parse_endpoint("http://[::1]:9000").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("[::1]", Some(9000)));
        let e = parse_endpoint("https://[FE80::1]").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("[fe80::1]", None));
        assert_eq!(parse_endpoint("https://s3.example.com").unwrap().port, None);
    }

    #[test]
    fn endpoint_rejects() {
        for bad in [
            "s3.example.com",
            "ftp://x",
            "https://",
            "https://:80",
            "https://h:0",
            "https://h:99999",
            "https://h:x",
            "https://h/path",
            "https://h?q",
            "https://u:p@h",
            "https://[::1",
            "https://[zz]",
            "https://h b",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn aws_ini_sections_nested_and_comments() {
        let ini = "# comment\n[default]\naws_access_key_id = AK\naws_secret_access_key = se#cret\n\
                   ; other\n[profile x]\nregion=eu-west-1\ns3 =\n  addressing_style = virtual\n  \
                   endpoint_url = http://h:1\noutput = json\n";
        let s = parse_aws_ini(ini);
        assert_eq!(s["default"]["aws_secret_access_key"], "se#cret");
        assert_eq!(s["profile x"]["region"], "eu-west-1");
        assert_eq!(s["profile x"]["s3.addressing_style"], "virtual");
        assert_eq!(s["profile x"]["s3.endpoint_url"], "http://h:1");
        assert_eq!(s["profile x"]["output"], "json");
        assert!(!s["profile x"].contains_key("addressing_style"));
    }

    #[test]
    fn parse_error_names_line_and_key_without_value() {
        let text = "[profiles.a]\nendpoint = \"http://h\"\nsecret_key = 12345\n";
        let err = parse_config(Path::new("/c.toml"), text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/c.toml:3: "), "{msg}");
        assert!(msg.contains("[profiles.a] secret_key"), "{msg}");
        assert!(!msg.contains("12345"), "{msg}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err =
            parse_config(Path::new("/c.toml"), "[profiles.a]\nendpont = \"x\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/c.toml:2"), "{msg}");
        assert!(msg.contains("endpont"), "{msg}");
    }

    #[test]
    fn debug_redacts_secrets() {
        let raw = RawProfile {
            secret_key: Some("s3cr3t".into()),
            session_token: Some("t0k3n".into()),
            ..Default::default()
        };
        let d = format!("{raw:?}");
        assert!(!d.contains("s3cr3t") && !d.contains("t0k3n"), "{d}");
        let env = Environment::new(None).with_var("AWS_SECRET_ACCESS_KEY", "s3cr3t");
        assert!(!format!("{env:?}").contains("s3cr3t"));
    }

    #[test]
    fn aws_endpoint_by_region() {
        assert_eq!(aws_endpoint("us-east-1").host, "s3.amazonaws.com");
        assert_eq!(
            aws_endpoint("eu-north-1").host,
            "s3.eu-north-1.amazonaws.com"
        );
    }
}
