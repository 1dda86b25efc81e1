//! Virtual extended attributes: share links, ETag, URL, and object headers.
//!
//! Why: `getfattr` and `setfattr` are the shell's way to ask a file a
//! question or change a property in place. Here they hand out presigned
//! links computed locally and change an object's Content-Disposition (and a
//! few other headers) without re-uploading it.
//!
//! Guarantees:
//! - a link is computed from the cached location alone: no S3 request;
//! - a link's length is fixed for a given name and file, so `getfattr`'s size
//!   probe and its read agree;
//! - `security.*`, `system.*` and `trusted.*` names answer ENODATA at once,
//!   with no request, and no name ever answers ENOSYS;
//! - a header change is one HEAD and one conditional CopyObject that re-sends
//!   every other header and all user metadata; a refused value or a lost race
//!   leaves the object byte- and header-identical.

use std::ffi::OsStr;
use std::time::{Duration, Instant, SystemTime};

use super::inode::{Ino, Location};
use super::{Fs, FsError};
use crate::disposition;
use crate::duration::parse_duration;
use crate::s3::headers::{ReplaceError, replace_headers};
use crate::s3::{HeadOutput, ObjectHeaders};
use crate::sign::presign::{PresignParams, object_url, presign};

/// Most bytes a header value may have (AWS caps system metadata at 2 KB).
pub const MAX_VALUE_LEN: usize = 2048;

/// `setxattr` flag: fail if the attribute exists.
pub const XATTR_CREATE: i32 = 1;
/// `setxattr` flag: fail if the attribute does not exist.
pub const XATTR_REPLACE: i32 = 2;

/// An object header that can be read and written through an xattr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderName {
    /// `Content-Disposition`.
    ContentDisposition,
    /// `Content-Type`.
    ContentType,
    /// `Cache-Control`.
    CacheControl,
}

impl HeaderName {
    fn xattr(self) -> &'static str {
        match self {
            HeaderName::ContentDisposition => "user.s3.content_disposition",
            HeaderName::ContentType => "user.s3.content_type",
            HeaderName::CacheControl => "user.s3.cache_control",
        }
    }

    fn slot(self, h: &mut ObjectHeaders) -> &mut Option<String> {
        match self {
            HeaderName::ContentDisposition => &mut h.content_disposition,
            HeaderName::ContentType => &mut h.content_type,
            HeaderName::CacheControl => &mut h.cache_control,
        }
    }

    fn get(self, h: &ObjectHeaders) -> Option<&String> {
        match self {
            HeaderName::ContentDisposition => h.content_disposition.as_ref(),
            HeaderName::ContentType => h.content_type.as_ref(),
            HeaderName::CacheControl => h.cache_control.as_ref(),
        }
    }
}

const HEADER_NAMES: [HeaderName; 3] = [
    HeaderName::ContentDisposition,
    HeaderName::ContentType,
    HeaderName::CacheControl,
];

/// Every name this filesystem answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VirtualXattr {
    /// `user.s3.presign[.<DUR>]`: a presigned GET URL.
    Presign {
        /// Lifetime; `None` for the mount's default.
        expires: Option<Duration>,
    },
    /// `user.s3.presign_download[.<DUR>]`: a link that downloads under this
    /// file's name.
    PresignDownload {
        /// Lifetime; `None` for the mount's default.
        expires: Option<Duration>,
    },
    /// `user.s3.etag`.
    Etag,
    /// `user.s3.url`: the plain, unsigned object URL.
    Url,
    /// A header, readable and writable.
    Header(HeaderName),
    /// `user.s3.meta.<name>`: one `x-amz-meta-<name>`.
    Meta(String),
}

const PRESIGN: &str = "user.s3.presign";
const PRESIGN_DOWNLOAD: &str = "user.s3.presign_download";
const ETAG: &str = "user.s3.etag";
const URL: &str = "user.s3.url";
const META_PREFIX: &str = "user.s3.meta.";

/// Parses an xattr name: `Ok(None)` for names we do not serve (ENODATA),
/// `Err` for a name of ours with a bad argument, such as a bad duration.
pub fn parse(name: &str) -> Result<Option<VirtualXattr>, FsError> {
    let with_expiry = |rest: &str| -> Result<Option<Duration>, FsError> {
        if rest.is_empty() {
            return Ok(None);
        }
        let dur = rest
            .strip_prefix('.')
            .ok_or_else(|| FsError::Invalid(format!("{name}: unknown name")))?;
        parse_duration(dur)
            .map(Some)
            .map_err(|e| FsError::Invalid(format!("{name}: {e}")))
    };
    if let Some(rest) = name.strip_prefix(PRESIGN_DOWNLOAD) {
        return with_expiry(rest).map(|expires| Some(VirtualXattr::PresignDownload { expires }));
    }
    if let Some(rest) = name.strip_prefix(PRESIGN) {
        if rest.is_empty() || rest.starts_with('.') {
            return with_expiry(rest).map(|expires| Some(VirtualXattr::Presign { expires }));
        }
        return Ok(None);
    }
    if name == ETAG {
        return Ok(Some(VirtualXattr::Etag));
    }
    if name == URL {
        return Ok(Some(VirtualXattr::Url));
    }
    if let Some(h) = HEADER_NAMES.iter().find(|h| h.xattr() == name) {
        return Ok(Some(VirtualXattr::Header(*h)));
    }
    if let Some(meta) = name.strip_prefix(META_PREFIX) {
        if !valid_meta_name(meta) {
            return Err(FsError::Invalid(format!(
                "{name}: metadata names are letters, digits, '-' and '_'"
            )));
        }
        return Ok(Some(VirtualXattr::Meta(meta.to_ascii_lowercase())));
    }
    Ok(None)
}

fn valid_meta_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a header value: non-empty, at most 2 KiB, printable ASCII only.
fn check_header_value(what: &str, value: &str) -> Result<(), FsError> {
    if value.is_empty() {
        return Err(FsError::Invalid(format!("{what}: empty value")));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(FsError::Invalid(format!(
            "{what}: {} bytes, the limit is {MAX_VALUE_LEN}",
            value.len()
        )));
    }
    if let Some(b) = value.bytes().find(|b| !(0x20..0x7f).contains(b)) {
        return Err(FsError::Invalid(format!(
            "{what}: byte 0x{b:02x} is not printable ASCII (CR, LF and control bytes could inject headers)"
        )));
    }
    Ok(())
}

/// Checks a Content-Type: a printable `type/subtype`, optionally with parameters.
fn check_content_type(value: &str) -> Result<(), FsError> {
    check_header_value("content_type", value)?;
    let essence = value.split(';').next().unwrap_or("").trim();
    let ok = essence.split_once('/').is_some_and(|(t, s)| {
        let token = |x: &str| {
            !x.is_empty()
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        token(t) && token(s)
    });
    if !ok {
        return Err(FsError::Invalid(format!(
            "content_type: {value:?} is not of the form type/subtype"
        )));
    }
    Ok(())
}

impl Fs {
    fn file_location(&self, ino: Ino) -> Result<(String, String, String), FsError> {
        let node = self.node(ino)?;
        match node.location {
            Location::File { bucket, key } => Ok((bucket, key, node.name)),
            _ => Err(FsError::NoData),
        }
    }

    fn link(
        &self,
        bucket: &str,
        key: &str,
        expires: Option<Duration>,
        download_as: Option<&str>,
        now: SystemTime,
    ) -> Result<String, FsError> {
        let p = &self.cfg.profile;
        let expires_in = expires.unwrap_or(p.presign_expires);
        let disposition = download_as.map(disposition::attachment_for);
        let params = PresignParams {
            endpoint: p.presign_endpoint.as_ref().unwrap_or(&p.endpoint),
            addressing: p.addressing,
            region: &p.region,
            bucket,
            key,
            credentials: &p.credentials,
            now,
            expires_in,
            response_content_disposition: disposition.as_deref(),
            response_content_type: None,
        };
        presign(p.signature, &params).map_err(|e| FsError::Invalid(format!("presign: {e}")))
    }

    /// Reads the attribute `name` of `ino`; `now` signs links.
    pub async fn getxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        now: SystemTime,
    ) -> Result<Vec<u8>, FsError> {
        if let Some(answer) = self.getxattr_now(ino, name, now) {
            return answer;
        }
        let name = name.to_str().ok_or(FsError::NoData)?;
        let value = match parse(name)? {
            Some(VirtualXattr::Etag) => self.head(ino).await?.etag.clone(),
            Some(VirtualXattr::Header(h)) => h
                .get(&self.head(ino).await?.headers)
                .cloned()
                .ok_or(FsError::NoData)?,
            Some(VirtualXattr::Meta(m)) => self
                .head(ino)
                .await?
                .headers
                .metadata
                .get(&m)
                .cloned()
                .ok_or(FsError::NoData)?,
            _ => return Err(FsError::NoData),
        };
        Ok(value.into_bytes())
    }

    /// The answer to a getxattr that needs no request (links, the URL, a
    /// known ETag, headers from a fresh HEAD, and every name that is not
    /// ours), or `None` when the store must be asked. Never blocks, so the
    /// FUSE adapter answers these on its own thread.
    pub fn getxattr_now(
        &self,
        ino: Ino,
        name: &OsStr,
        now: SystemTime,
    ) -> Option<Result<Vec<u8>, FsError>> {
        let attr = match name.to_str().map(parse) {
            None | Some(Ok(None)) => return Some(Err(FsError::NoData)),
            Some(Err(e)) => return Some(Err(e)),
            Some(Ok(Some(attr))) => attr,
        };
        let (bucket, key, file_name) = match self.file_location(ino) {
            Ok(found) => found,
            Err(e) => return Some(Err(e)),
        };
        let cached_head = || {
            self.heads
                .lock()
                .unwrap()
                .get(&ino)
                .filter(|(at, _)| self.fresh(*at))
                .map(|(_, h)| h.clone())
        };
        let value = match attr {
            VirtualXattr::Presign { expires } => self.link(&bucket, &key, expires, None, now),
            VirtualXattr::PresignDownload { expires } => {
                self.link(&bucket, &key, expires, Some(&file_name), now)
            }
            VirtualXattr::Url => {
                let p = &self.cfg.profile;
                Ok(object_url(
                    p.presign_endpoint.as_ref().unwrap_or(&p.endpoint),
                    p.addressing,
                    &bucket,
                    &key,
                ))
            }
            VirtualXattr::Etag => match self.node(ino).ok()?.stat.etag {
                Some(etag) if !etag.is_empty() => Ok(etag),
                _ => return None,
            },
            VirtualXattr::Header(h) => {
                let head = cached_head()?;
                h.get(&head.headers).cloned().ok_or(FsError::NoData)
            }
            VirtualXattr::Meta(m) => {
                let head = cached_head()?;
                head.headers
                    .metadata
                    .get(&m)
                    .cloned()
                    .ok_or(FsError::NoData)
            }
        };
        Some(value.map(String::into_bytes))
    }

    /// Lists the attribute names of `ino`, NUL-terminated: the link names
    /// always, header and metadata names only when set.
    pub async fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        if self.file_location(ino).is_err() {
            return Ok(Vec::new());
        }
        let head = self.head(ino).await?;
        let mut names: Vec<String> = [PRESIGN, PRESIGN_DOWNLOAD, ETAG, URL]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for h in HEADER_NAMES {
            if h.get(&head.headers).is_some() {
                names.push(h.xattr().to_string());
            }
        }
        for m in head.headers.metadata.keys() {
            names.push(format!("{META_PREFIX}{m}"));
        }
        let mut out = Vec::new();
        for n in names {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    /// Sets attribute `name` of `ino` to `value`, honouring XATTR_CREATE and
    /// XATTR_REPLACE in `flags`.
    pub async fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<(), FsError> {
        let name = name.to_str().ok_or(FsError::NoData)?;
        let attr = self.writable(ino, name)?;
        let value = std::str::from_utf8(value)
            .map_err(|_| FsError::Invalid(format!("{name}: value is not UTF-8")))?;
        let (bucket, key, file_name) = self.file_location(ino)?;
        let value = match &attr {
            VirtualXattr::Header(HeaderName::ContentDisposition) => {
                let v = disposition::normalize(value)
                    .map_err(|e| FsError::Invalid(format!("{name}: {e}")))?;
                self.check_spoof(ino, &bucket, &key, &file_name, &v).await?;
                v
            }
            VirtualXattr::Header(HeaderName::ContentType) => {
                check_content_type(value)?;
                value.to_string()
            }
            _ => {
                check_header_value(name, value)?;
                value.to_string()
            }
        };
        self.change_header(ino, &bucket, &key, &attr, Some(value), flags)
            .await
    }

    /// Removes attribute `name` of `ino`: the header or metadata entry goes.
    pub async fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<(), FsError> {
        let name = name.to_str().ok_or(FsError::NoData)?;
        let attr = self.writable(ino, name)?;
        let (bucket, key, _) = self.file_location(ino)?;
        self.change_header(ino, &bucket, &key, &attr, None, XATTR_REPLACE)
            .await
    }

    /// Parses `name` and checks that it may be changed here.
    fn writable(&self, ino: Ino, name: &str) -> Result<VirtualXattr, FsError> {
        let Some(attr) = parse(name)? else {
            return Err(FsError::NoData);
        };
        self.file_location(ino)?;
        if !matches!(attr, VirtualXattr::Header(_) | VirtualXattr::Meta(_)) {
            return Err(FsError::NotPermitted(format!("{name} is read-only")));
        }
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        Ok(attr)
    }

    /// Refuses a download name that names another existing object in the
    /// same directory, unless the mount allows misleading names.
    async fn check_spoof(
        &self,
        ino: Ino,
        bucket: &str,
        key: &str,
        file_name: &str,
        value: &str,
    ) -> Result<(), FsError> {
        if self.cfg.allow_misleading_names {
            return Ok(());
        }
        let Some(wanted) = disposition::filename_of(value) else {
            return Ok(());
        };
        // Clients keep only the last path component of a suggested name.
        let wanted = wanted.rsplit(['/', '\\']).next().unwrap_or("").to_string();
        if wanted.is_empty() || wanted == file_name {
            return Ok(());
        }
        let parent = self.node(ino)?.parent;
        let exists = match self.cached_listing(parent) {
            Some(listing) => listing.find(&wanted).is_some_and(|e| !e.is_dir),
            None => {
                let miss = (parent, wanted.clone());
                let known_missing = self
                    .negative
                    .lock()
                    .unwrap()
                    .get(&miss)
                    .is_some_and(|at| at.elapsed() < self.cfg.negative_ttl);
                if known_missing {
                    false
                } else {
                    let dir = &key[..key.len() - file_name.len()];
                    match self
                        .client
                        .head_object(bucket, &format!("{dir}{wanted}"))
                        .await
                    {
                        Ok(_) => true,
                        Err(e) if e.is_not_found() => {
                            self.negative.lock().unwrap().put(miss, Instant::now());
                            false
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        };
        if exists {
            return Err(FsError::NotPermitted(format!(
                "download name {wanted:?} names another object in the same directory; \
                 a browser or curl -OJ would save {file_name:?}'s bytes under that name \
                 (mount with --allow-misleading-names to permit)"
            )));
        }
        Ok(())
    }

    async fn change_header(
        &self,
        ino: Ino,
        bucket: &str,
        key: &str,
        attr: &VirtualXattr,
        value: Option<String>,
        flags: i32,
    ) -> Result<(), FsError> {
        let apply = |headers: &mut ObjectHeaders| apply_change(attr, value.clone(), flags, headers);
        // A file still being written takes the header with its upload.
        if self.set_pending_header(ino, apply).await? {
            return Ok(());
        }
        let edit = |_: &HeadOutput, headers: &mut ObjectHeaders| apply(headers);
        let cfg = &self.cfg;
        let outcome = replace_headers(
            self.client.as_ref(),
            bucket,
            key,
            cfg.multipart_copy_threshold,
            cfg.write.part_size.max(64 * 1024 * 1024),
            edit,
        )
        .await
        .map_err(|e| match e {
            ReplaceError::Edit(e) => e,
            ReplaceError::S3(e) => e.into(),
        })?;
        let old_etag = self.node(ino).ok().and_then(|n| n.stat.etag);
        let head = HeadOutput {
            size: outcome.size,
            etag: outcome.etag.clone(),
            last_modified: outcome.last_modified,
            headers: outcome.headers.clone(),
        };
        if let Some(old) = old_etag {
            self.data
                .rekey(bucket, key, &old, &outcome.etag, outcome.size);
            if let Some(node) = self.nodes.lock().unwrap().get_mut(ino)
                && node.last_open_etag.as_deref() == Some(old.as_str())
            {
                node.last_open_etag = Some(outcome.etag.clone());
            }
        }
        self.note_changed(ino, head);
        tracing::info!(bucket, key, etag = %outcome.etag, "headers changed in place");
        Ok(())
    }
}

/// Sets or removes (`value` None) the header or metadata entry `attr` names.
fn apply_change(
    attr: &VirtualXattr,
    value: Option<String>,
    flags: i32,
    headers: &mut ObjectHeaders,
) -> Result<(), FsError> {
    match attr {
        VirtualXattr::Header(h) => {
            let slot = h.slot(headers);
            check_flags(slot.is_some(), value.is_some(), flags)?;
            *slot = value;
        }
        VirtualXattr::Meta(m) => {
            check_flags(headers.metadata.contains_key(m), value.is_some(), flags)?;
            match value {
                Some(v) => headers.metadata.insert(m.clone(), v),
                None => headers.metadata.remove(m),
            };
        }
        _ => return Err(FsError::NotPermitted("read-only attribute".into())),
    }
    Ok(())
}

/// XATTR_CREATE fails on an existing value, XATTR_REPLACE (and removal) on
/// a missing one.
fn check_flags(present: bool, setting: bool, flags: i32) -> Result<(), FsError> {
    if present && setting && flags & XATTR_CREATE != 0 {
        return Err(FsError::Exists);
    }
    if !present && flags & XATTR_REPLACE != 0 {
        return Err(FsError::NoData);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(
            parse("user.s3.presign").unwrap(),
            Some(VirtualXattr::Presign { expires: None })
        );
        assert_eq!(
            parse("user.s3.presign.1h").unwrap(),
            Some(VirtualXattr::Presign {
                expires: Some(Duration::from_secs(3600))
            })
        );
        assert_eq!(
            parse("user.s3.presign_download.900s").unwrap(),
            Some(VirtualXattr::PresignDownload {
                expires: Some(Duration::from_secs(900))
            })
        );
        assert!(parse("user.s3.presign.1x").is_err());
        assert!(parse("user.s3.presign.").is_err());
        assert_eq!(parse("user.s3.presignx").unwrap(), None);
        assert_eq!(parse("security.capability").unwrap(), None);
        assert_eq!(parse("system.posix_acl_access").unwrap(), None);
        assert_eq!(
            parse("user.s3.meta.Owner").unwrap(),
            Some(VirtualXattr::Meta("owner".into()))
        );
        assert!(parse("user.s3.meta.").is_err());
        assert!(parse("user.s3.meta.a b").is_err());
    }

    #[test]
    fn header_values() {
        assert!(check_header_value("x", "max-age=60").is_ok());
        assert!(check_header_value("x", "").is_err());
        assert!(check_header_value("x", "a\r\nb").is_err());
        assert!(check_header_value("x", "caf\u{e9}").is_err());
        assert!(check_header_value("x", &"a".repeat(2049)).is_err());
        assert!(check_content_type("application/pdf").is_ok());
        assert!(check_content_type("text/plain; charset=utf-8").is_ok());
        assert!(check_content_type("pdf").is_err());
    }

    #[test]
    fn flags() {
        assert!(matches!(
            check_flags(true, true, XATTR_CREATE),
            Err(FsError::Exists)
        ));
        assert!(matches!(
            check_flags(false, true, XATTR_REPLACE),
            Err(FsError::NoData)
        ));
        assert!(check_flags(false, true, XATTR_CREATE).is_ok());
        assert!(check_flags(true, true, XATTR_REPLACE).is_ok());
    }
}
