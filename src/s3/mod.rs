//! The object-store client the filesystem stands on.
//!
//! [`ObjectClient`] is the seam between the filesystem and the network: the
//! real implementation ([`http::HttpClient`]) speaks S3 over reqwest and signs
//! with [`crate::sign`]; the in-memory [`fake::FakeClient`] counts requests and
//! injects faults so the `fs` layer can be tested without a network.
//!
//! Guarantees of every implementation:
//! - object bodies are streamed ([`ByteStream`]), never buffered whole;
//! - failures are typed ([`S3Error`]), with the S3 error code and request id
//!   when the server sent them, and never contain credentials.

pub mod fake;
pub mod headers;
pub mod http;
pub mod xml;

use std::collections::BTreeMap;
use std::ops::Range;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

/// A streamed object body.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, S3Error>> + Send>>;

/// One bucket from ListBuckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketInfo {
    /// Bucket name.
    pub name: String,
    /// Creation time, when the server reports one.
    pub created: Option<SystemTime>,
}

/// Arguments of one ListObjectsV2 page.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    /// Bucket to list.
    pub bucket: String,
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up at this delimiter into common prefixes (normally `/`).
    pub delimiter: Option<String>,
    /// Token from the previous page.
    pub continuation_token: Option<String>,
    /// Page size; `None` lets the server choose (1000).
    pub max_keys: Option<u32>,
}

/// One object from a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectSummary {
    /// Full key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag, with its quotes.
    pub etag: String,
    /// Last modification time.
    pub last_modified: SystemTime,
    /// Storage class, when listed.
    pub storage_class: Option<String>,
}

/// One ListObjectsV2 page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects on this page, in key order.
    pub objects: Vec<ObjectSummary>,
    /// Common prefixes (each ends with the delimiter).
    pub common_prefixes: Vec<String>,
    /// Token for the next page; `None` on the last page.
    pub next_continuation_token: Option<String>,
}

/// The headers an object carries besides its body: everything a
/// CopyObject with `REPLACE` must re-send to keep the object as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Expires`, as the server sent it.
    pub expires: Option<String>,
    /// `x-amz-storage-class` (absent means STANDARD).
    pub storage_class: Option<String>,
    /// `x-amz-website-redirect-location`.
    pub website_redirect_location: Option<String>,
    /// `x-amz-server-side-encryption` (`AES256` or `aws:kms`).
    pub server_side_encryption: Option<String>,
    /// `x-amz-server-side-encryption-aws-kms-key-id`.
    pub sse_kms_key_id: Option<String>,
    /// `x-amz-server-side-encryption-context`.
    pub sse_context: Option<String>,
    /// `x-amz-server-side-encryption-bucket-key-enabled`.
    pub sse_bucket_key_enabled: Option<String>,
    /// User metadata: `x-amz-meta-<name>` without the prefix, names lower-case.
    pub metadata: BTreeMap<String, String>,
}

/// What HeadObject reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadOutput {
    /// Size in bytes.
    pub size: u64,
    /// ETag, with its quotes.
    pub etag: String,
    /// Last modification time.
    pub last_modified: SystemTime,
    /// Every header worth keeping.
    pub headers: ObjectHeaders,
}

/// Options of a GetObject.
#[derive(Clone, Debug, Default)]
pub struct GetRequest {
    /// Byte range, end exclusive; `None` for the whole object.
    pub range: Option<Range<u64>>,
    /// `If-Match`: fail with `PreconditionFailed` unless the ETag is this.
    pub if_match: Option<String>,
}

/// A GetObject answer whose body is still to be read.
pub struct GetOutput {
    /// The body, streamed.
    pub body: ByteStream,
    /// ETag of the object that is being sent.
    pub etag: String,
    /// Full size of the object (not of the range).
    pub object_size: u64,
}

impl std::fmt::Debug for GetOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetOutput")
            .field("etag", &self.etag)
            .field("object_size", &self.object_size)
            .finish_non_exhaustive()
    }
}

/// What a successful write reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOutput {
    /// ETag of the new object (may be empty when a server omits it, as RGW
    /// does for CompleteMultipartUpload).
    pub etag: String,
}

/// One finished part of a multipart upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedPart {
    /// Part number, from 1.
    pub part_number: u32,
    /// ETag the server gave the part.
    pub etag: String,
}

/// One unfinished multipart upload, from ListMultipartUploads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultipartUploadInfo {
    /// Key the upload will create.
    pub key: String,
    /// Upload id.
    pub upload_id: String,
    /// When the upload was started, when reported.
    pub initiated: Option<SystemTime>,
}

/// What to do with the destination's headers on a copy.
// Built once per copy and passed by reference: the size difference is harmless.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataDirective {
    /// Keep the source's headers (`COPY`, the S3 default).
    Copy,
    /// Replace them with exactly these (`REPLACE`); whatever is not here is dropped.
    Replace(ObjectHeaders),
}

/// Arguments of a CopyObject.
#[derive(Clone, Debug)]
pub struct CopyRequest {
    /// Source bucket.
    pub src_bucket: String,
    /// Source key (raw, unencoded).
    pub src_key: String,
    /// Destination bucket.
    pub dst_bucket: String,
    /// Destination key (raw, unencoded).
    pub dst_key: String,
    /// `x-amz-copy-source-if-match`.
    pub if_match: Option<String>,
    /// Header handling.
    pub directive: MetadataDirective,
}

/// What CopyObject reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyOutput {
    /// ETag of the new object.
    pub etag: String,
    /// Its modification time.
    pub last_modified: SystemTime,
}

/// The S3 error codes the rest of the program acts on; any other code is kept
/// as text in [`S3ErrorCode::Other`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum S3ErrorCode {
    /// The key does not exist.
    NoSuchKey,
    /// The bucket does not exist.
    NoSuchBucket,
    /// The multipart upload id is unknown (already completed or aborted).
    NoSuchUpload,
    /// The credentials may not do this.
    AccessDenied,
    /// The access key is unknown.
    InvalidAccessKeyId,
    /// The signature did not match (wrong secret, clock or region).
    SignatureDoesNotMatch,
    /// An `If-Match` condition failed: the object changed.
    PreconditionFailed,
    /// Throttled.
    SlowDown,
    /// Server fault.
    InternalError,
    /// Any other code, verbatim.
    Other(String),
}

impl S3ErrorCode {
    /// Maps an S3 `<Code>` string to its variant.
    pub fn parse(code: &str) -> Self {
        match code {
            "NoSuchKey" => Self::NoSuchKey,
            "NoSuchBucket" => Self::NoSuchBucket,
            "NoSuchUpload" => Self::NoSuchUpload,
            "AccessDenied" => Self::AccessDenied,
            "InvalidAccessKeyId" => Self::InvalidAccessKeyId,
            "SignatureDoesNotMatch" => Self::SignatureDoesNotMatch,
            "PreconditionFailed" => Self::PreconditionFailed,
            "SlowDown" => Self::SlowDown,
            "InternalError" => Self::InternalError,
            other => Self::Other(other.to_string()),
        }
    }

    /// The code as S3 spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::NoSuchKey => "NoSuchKey",
            Self::NoSuchBucket => "NoSuchBucket",
            Self::NoSuchUpload => "NoSuchUpload",
            Self::AccessDenied => "AccessDenied",
            Self::InvalidAccessKeyId => "InvalidAccessKeyId",
            Self::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Self::PreconditionFailed => "PreconditionFailed",
            Self::SlowDown => "SlowDown",
            Self::InternalError => "InternalError",
            Self::Other(s) => s,
        }
    }
}

impl std::fmt::Display for S3ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an object-store request failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum S3Error {
    /// The server answered with an error status.
    #[error("{code} (HTTP {status}): {message} [request id {request_id}]")]
    Service {
        /// HTTP status.
        status: u16,
        /// S3 error code (for HEAD, derived from the status: HEAD has no body).
        code: S3ErrorCode,
        /// Human-readable message from the server.
        message: String,
        /// `x-amz-request-id`, or empty.
        request_id: String,
    },
    /// The in-place header change found the object overwritten by someone
    /// else between its HEAD and its copy; their object was left untouched.
    #[error("object changed concurrently (expected ETag {expected_etag}); left untouched")]
    ConcurrentModification {
        /// The ETag our HEAD saw.
        expected_etag: String,
    },
    /// No answer within a timeout (connect, first byte, or a stalled body).
    #[error("timed out: {0}")]
    Timeout(String),
    /// Connecting or transferring failed at the transport level.
    #[error("transport error: {0}")]
    Transport(String),
    /// Retries ran out; the last failure is inside.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        last: Box<S3Error>,
    },
    /// The server's answer could not be understood.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The request was refused before sending (bad key, bad range, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl S3Error {
    /// The S3 error code, looking through `RetriesExhausted`.
    pub fn code(&self) -> Option<&S3ErrorCode> {
        match self {
            Self::Service { code, .. } => Some(code),
            Self::RetriesExhausted { last, .. } => last.code(),
            _ => None,
        }
    }

    /// The request id, looking through `RetriesExhausted`; empty if unknown.
    pub fn request_id(&self) -> &str {
        match self {
            Self::Service { request_id, .. } => request_id,
            Self::RetriesExhausted { last, .. } => last.request_id(),
            _ => "",
        }
    }

    /// True for NoSuchKey, NoSuchBucket and a bare 404.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Service { status, code, .. } => {
                *status == 404 || matches!(code, S3ErrorCode::NoSuchKey | S3ErrorCode::NoSuchBucket)
            }
            Self::RetriesExhausted { last, .. } => last.is_not_found(),
            _ => false,
        }
    }

    /// True when the error is worth retrying: transport failures, timeouts,
    /// 429, 500, 502, 503, 504, SlowDown and InternalError. Other 4xx never are.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Transport(_) => true,
            Self::Service { status, code, .. } => {
                matches!(status, 429 | 500 | 502 | 503 | 504)
                    || matches!(code, S3ErrorCode::SlowDown | S3ErrorCode::InternalError)
            }
            _ => false,
        }
    }
}

/// Everything the filesystem asks of an object store.
///
/// Keys are raw (unencoded) UTF-8; implementations encode them.
#[async_trait]
pub trait ObjectClient: Send + Sync + 'static {
    /// ListBuckets.
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>, S3Error>;

    /// One page of ListObjectsV2.
    async fn list_objects(&self, req: &ListRequest) -> Result<ListPage, S3Error>;

    /// HeadObject.
    async fn head_object(&self, bucket: &str, key: &str) -> Result<HeadOutput, S3Error>;

    /// GetObject, optionally ranged and conditional; the body is streamed.
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        req: &GetRequest,
    ) -> Result<GetOutput, S3Error>;

    /// PutObject with the given headers.
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        headers: &ObjectHeaders,
        body: Bytes,
    ) -> Result<PutOutput, S3Error>;

    /// CreateMultipartUpload carrying the given headers; returns the upload id.
    async fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        headers: &ObjectHeaders,
    ) -> Result<String, S3Error>;

    /// UploadPart.
    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<CompletedPart, S3Error>;

    /// UploadPartCopy of `range` (end exclusive) of the source object,
    /// optionally conditional on its ETag.
    #[allow(clippy::too_many_arguments)]
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
    ) -> Result<CompletedPart, S3Error>;

    /// CompleteMultipartUpload. A retry after a lost answer to a successful
    /// first try must still report success.
    async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<PutOutput, S3Error>;

    /// AbortMultipartUpload.
    async fn abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), S3Error>;

    /// CopyObject.
    async fn copy_object(&self, req: &CopyRequest) -> Result<CopyOutput, S3Error>;

    /// DeleteObject (succeeds when the key is already gone).
    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), S3Error>;

    /// ListMultipartUploads: the unfinished uploads under `prefix` (first page
    /// only, up to 1000), for cleanup and for tests that check nothing leaked.
    async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<MultipartUploadInfo>, S3Error> {
        let _ = (bucket, prefix);
        Err(S3Error::InvalidRequest(
            "ListMultipartUploads is not supported by this client".into(),
        ))
    }
}
