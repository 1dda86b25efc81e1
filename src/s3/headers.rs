//! Changing an object's headers in place (CopyObject onto itself).
//!
//! S3 has no "set header" call: the only way is to copy the object onto
//! itself with `x-amz-metadata-directive: REPLACE`, which drops every header
//! not re-sent. [`replace_headers`] does it the careful way (protocol-facts
//! section 3): HEAD, keep everything the HEAD showed, apply the caller's edit,
//! and copy conditionally on the ETag the HEAD saw.
//!
//! Guarantees:
//! - every header the HEAD reported (Content-Type, Content-Disposition,
//!   Cache-Control, Content-Encoding, Content-Language, Expires, every
//!   `x-amz-meta-*`, storage class, website redirect, SSE headers) is re-sent
//!   unless the edit changed it;
//! - cost: 1 HEAD + 1 CopyObject for objects up to the multipart threshold
//!   (5 GiB by default, S3's single-copy limit); an edit that changes nothing
//!   costs the HEAD only;
//! - the copy is conditional on the HEAD's ETag: if another writer replaced
//!   the object in between, the result is
//!   [`S3Error::ConcurrentModification`] and their object is left untouched
//!   (a 412 costs one more HEAD, to tell a lost answer of our own successful
//!   copy from a real conflict);
//! - above the threshold: CreateMultipartUpload with the new headers,
//!   parallel UploadPartCopy (each conditional on the ETag), a HEAD that the
//!   source is still the same, then Complete; any failure aborts the upload.
//!   (Ceph RGW 16.2 ignores the condition on UploadPartCopy, so on RGW that
//!   HEAD is what detects a write during the part copies.) The one window
//!   left is between that last HEAD and the Complete;
//! - the returned ETag and LastModified are the new object's; when the server
//!   omits them (RGW's empty ETag after CompleteMultipartUpload) a HEAD
//!   fetches them.

use std::time::SystemTime;

use futures_util::{StreamExt, TryStreamExt};

use super::{
    CompletedPart, CopyRequest, HeadOutput, MetadataDirective, ObjectClient, ObjectHeaders,
    S3Error, S3ErrorCode,
};

/// S3's limit for a single CopyObject, and so the default threshold above
/// which the multipart copy is used.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 5 * 1024 * 1024 * 1024;

/// Default part size of the multipart copy: a server-side copy of 512 MiB
/// takes seconds, and a 5 GiB object needs only 10 parts.
pub const DEFAULT_COPY_PART_SIZE: u64 = 512 * 1024 * 1024;

/// Part copies in flight at once: they cost the client nothing (the server
/// moves the bytes), and 4 keeps a server busy without monopolising it.
pub const COPY_CONCURRENCY: usize = 4;

/// S3's bounds on parts: at most 10,000, each 5 MiB to 5 GiB (the last may
/// be smaller).
const MAX_PARTS: u64 = 10_000;
const MIN_PART: u64 = 5 * 1024 * 1024;
const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;

/// The object after a successful header change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplaceOutcome {
    /// New ETag, quoted (a multipart object becomes single-part and changes
    /// ETag; caches keyed by ETag must follow).
    pub etag: String,
    /// New modification time.
    pub last_modified: SystemTime,
    /// The full header set the object now carries.
    pub headers: ObjectHeaders,
    /// Size in bytes (unchanged by the copy).
    pub size: u64,
    /// False when the edit changed nothing and no copy was made.
    pub copied: bool,
}

/// Why a header change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError<E> {
    /// The caller's edit refused, after seeing the current headers.
    #[error("{0}")]
    Edit(E),
    /// The store failed; [`S3Error::ConcurrentModification`] when another
    /// writer got in between.
    #[error(transparent)]
    S3(#[from] S3Error),
}

/// Changes the headers of `bucket/key` in place.
///
/// `edit` receives the HEAD answer and a copy of its headers to change (or it
/// returns `Err` to refuse, e.g. because the name it would set is taken).
/// Objects larger than `multipart_threshold` are copied in parts of at least
/// `part_size` bytes (raised if needed to stay within 10,000 parts).
pub async fn replace_headers<F, E>(
    client: &dyn ObjectClient,
    bucket: &str,
    key: &str,
    multipart_threshold: u64,
    part_size: u64,
    edit: F,
) -> Result<ReplaceOutcome, ReplaceError<E>>
where
    F: FnOnce(&HeadOutput, &mut ObjectHeaders) -> Result<(), E>,
{
    let head = client.head_object(bucket, key).await?;
    let mut headers = head.headers.clone();
    edit(&head, &mut headers).map_err(ReplaceError::Edit)?;
    headers.metadata = std::mem::take(&mut headers.metadata)
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    if headers == head.headers {
        return Ok(ReplaceOutcome {
            etag: head.etag,
            last_modified: head.last_modified,
            headers,
            size: head.size,
            copied: false,
        });
    }
    let here = (bucket, key);
    let result = copy_with_headers(
        client,
        here,
        here,
        &head,
        &headers,
        multipart_threshold,
        part_size,
    )
    .await;
    match result {
        Ok((etag, last_modified)) => {
            let (etag, last_modified) = if etag.is_empty() {
                let now = client.head_object(bucket, key).await?;
                (now.etag, now.last_modified)
            } else {
                (etag, last_modified)
            };
            Ok(ReplaceOutcome {
                etag,
                last_modified,
                headers,
                size: head.size,
                copied: true,
            })
        }
        Err(e) if e.code() == Some(&S3ErrorCode::PreconditionFailed) => {
            // Either someone else replaced the object, or our own copy
            // succeeded, its answer was lost, and the retry saw the new ETag.
            match client.head_object(bucket, key).await {
                Ok(now) if now.headers == headers && now.size == head.size => Ok(ReplaceOutcome {
                    etag: now.etag,
                    last_modified: now.last_modified,
                    headers,
                    size: now.size,
                    copied: true,
                }),
                _ => Err(S3Error::ConcurrentModification {
                    expected_etag: head.etag,
                }
                .into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Copies `src` (as `head` describes it) to `dst` carrying exactly
/// `headers`, conditional on `head`'s ETag: one CopyObject up to
/// `multipart_threshold` (capped at S3's 5 GiB), else a multipart copy in
/// parts of at least `part_size`, aborted on any failure. `src` and `dst` may
/// be the same object. Returns the new ETag and LastModified; an empty ETag
/// means the server did not say (the caller HEADs for both).
pub async fn copy_with_headers(
    client: &dyn ObjectClient,
    src: (&str, &str),
    dst: (&str, &str),
    head: &HeadOutput,
    headers: &ObjectHeaders,
    multipart_threshold: u64,
    part_size: u64,
) -> Result<(String, SystemTime), S3Error> {
    if head.size <= multipart_threshold.min(MAX_PART) {
        single_copy(client, src, dst, head, headers).await
    } else {
        multipart_copy(client, src, dst, head, headers, part_size).await
    }
}

async fn single_copy(
    client: &dyn ObjectClient,
    (src_bucket, src_key): (&str, &str),
    (dst_bucket, dst_key): (&str, &str),
    head: &HeadOutput,
    headers: &ObjectHeaders,
) -> Result<(String, SystemTime), S3Error> {
    let out = client
        .copy_object(&CopyRequest {
            src_bucket: src_bucket.to_string(),
            src_key: src_key.to_string(),
            dst_bucket: dst_bucket.to_string(),
            dst_key: dst_key.to_string(),
            if_match: Some(head.etag.clone()),
            directive: MetadataDirective::Replace(headers.clone()),
        })
        .await?;
    Ok((out.etag, out.last_modified))
}

/// The part size to use for `size` bytes: at least `wanted` and 5 MiB, large
/// enough for 10,000 parts, at most 5 GiB.
pub fn copy_part_size(size: u64, wanted: u64) -> u64 {
    wanted
        .max(MIN_PART)
        .max(size.div_ceil(MAX_PARTS))
        .min(MAX_PART)
}

async fn multipart_copy(
    client: &dyn ObjectClient,
    (src_bucket, src_key): (&str, &str),
    (bucket, key): (&str, &str),
    head: &HeadOutput,
    headers: &ObjectHeaders,
    part_size: u64,
) -> Result<(String, SystemTime), S3Error> {
    let part = copy_part_size(head.size, part_size);
    let upload_id = client.create_multipart_upload(bucket, key, headers).await?;
    let ranges: Vec<(u32, std::ops::Range<u64>)> = (0..head.size.div_ceil(part))
        .map(|i| {
            let start = i * part;
            ((i + 1) as u32, start..(start + part).min(head.size))
        })
        .collect();
    let upload = async {
        let mut parts: Vec<CompletedPart> = futures_util::stream::iter(ranges)
            .map(|(n, range)| {
                let upload_id = &upload_id;
                async move {
                    client
                        .upload_part_copy(
                            bucket,
                            key,
                            upload_id,
                            n,
                            src_bucket,
                            src_key,
                            range,
                            Some(&head.etag),
                        )
                        .await
                }
            })
            .buffer_unordered(COPY_CONCURRENCY)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number);
        // Narrow the window in which a concurrent write to the source would
        // go unnoticed (or, in place, be clobbered) by the Complete below.
        let now = client.head_object(src_bucket, src_key).await?;
        if now.etag != head.etag {
            return Err(S3Error::Service {
                status: 412,
                code: S3ErrorCode::PreconditionFailed,
                message: "object changed during the multipart copy".into(),
                request_id: String::new(),
            });
        }
        client
            .complete_multipart_upload(bucket, key, &upload_id, &parts)
            .await
    }
    .await;
    match upload {
        // Complete reports no LastModified (and RGW no ETag): an empty ETag
        // makes the caller HEAD the new object for both.
        Ok(_) => Ok((String::new(), SystemTime::UNIX_EPOCH)),
        Err(e) => {
            if let Err(abort) = client.abort_multipart_upload(bucket, key, &upload_id).await {
                tracing::warn!(
                    bucket,
                    key,
                    upload_id,
                    error = %abort,
                    "could not abort the multipart copy; the upload is left for lifecycle cleanup"
                );
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_respect_s3_limits() {
        assert_eq!(copy_part_size(10, 1), MIN_PART);
        assert_eq!(copy_part_size(6 << 30, 512 << 20), 512 << 20);
        let five_tib = 5u64 << 40;
        let p = copy_part_size(five_tib, 512 << 20);
        assert!(five_tib.div_ceil(p) <= MAX_PARTS);
        assert_eq!(copy_part_size(1 << 50, 1), MAX_PART);
    }
}
