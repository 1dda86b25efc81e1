//! An in-memory [`ObjectClient`] with real S3 semantics, for tests.
//!
//! The `fs` layer's unit tests and the header-change tests run against this
//! instead of a server. It exists so that a test can assert *how many*
//! requests an operation cost ([`FakeClient::count`]) and how the caller
//! behaves when the store misbehaves ([`FakeClient::inject`],
//! [`FakeClient::before_next`]).
//!
//! Guarantees (the S3 behaviour the fake reproduces):
//! - buckets hold objects in key order; ListObjectsV2 honours prefix,
//!   delimiter (common prefixes), max-keys (objects and prefixes both count)
//!   and opaque continuation tokens;
//! - ETags are quoted, deterministic functions of the content (`"<hex>"`, or
//!   `"<hex>-N"` for an object completed from N parts); a copy makes a
//!   single-part ETag, as on real servers;
//! - `If-Match` on GET, `x-amz-copy-source-if-match` on CopyObject and
//!   UploadPartCopy fail with 412 `PreconditionFailed`;
//! - CopyObject with `REPLACE` keeps nothing but the sent headers; a self-copy
//!   with `COPY` is refused (400 `InvalidRequest`), as S3 does;
//! - missing buckets give 404 `NoSuchBucket`, missing keys 404 `NoSuchKey`,
//!   unknown upload ids 404 `NoSuchUpload`, unsatisfiable ranges 416
//!   `InvalidRange`; parts below the minimum part size (5 MiB by default,
//!   see [`FakeClient::set_min_part_size`]) except the last give 400
//!   `EntityTooSmall`;
//! - every call is counted, including calls that a fault made fail;
//! - no lock is held across an `.await`, so hooks and concurrent calls can
//!   never deadlock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{
    BucketInfo, ByteStream, CompletedPart, CopyOutput, CopyRequest, GetOutput, GetRequest,
    HeadOutput, ListPage, ListRequest, MetadataDirective, MultipartUploadInfo, ObjectClient,
    ObjectHeaders, ObjectSummary, PutOutput, S3Error, S3ErrorCode,
};

/// The S3 minimum size of every part but the last.
pub const DEFAULT_MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Chunk size of streamed GET bodies, so readers see more than one chunk.
const BODY_CHUNK: usize = 64 * 1024;

/// Default page size of ListObjectsV2 and the cap S3 applies to max-keys.
const MAX_KEYS: usize = 1000;

/// One kind of request, for counters, faults and hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// ListBuckets.
    ListBuckets,
    /// ListObjectsV2.
    ListObjects,
    /// HeadObject.
    HeadObject,
    /// GetObject.
    GetObject,
    /// PutObject.
    PutObject,
    /// CreateMultipartUpload.
    CreateMultipartUpload,
    /// UploadPart.
    UploadPart,
    /// UploadPartCopy.
    UploadPartCopy,
    /// CompleteMultipartUpload.
    CompleteMultipartUpload,
    /// AbortMultipartUpload.
    AbortMultipartUpload,
    /// CopyObject.
    CopyObject,
    /// DeleteObject.
    DeleteObject,
    /// ListMultipartUploads.
    ListMultipartUploads,
}

impl Op {
    /// Every operation, in declaration order.
    pub const ALL: [Op; 13] = [
        Op::ListBuckets,
        Op::ListObjects,
        Op::HeadObject,
        Op::GetObject,
        Op::PutObject,
        Op::CreateMultipartUpload,
        Op::UploadPart,
        Op::UploadPartCopy,
        Op::CompleteMultipartUpload,
        Op::AbortMultipartUpload,
        Op::CopyObject,
        Op::DeleteObject,
        Op::ListMultipartUploads,
    ];
}

/// A misbehaviour to inject into the next call(s) of one operation.
///
/// Faults queue per operation and are consumed in order; each applies to
/// `times` consecutive calls.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Fail without touching the store.
    Fail {
        /// How many calls fail.
        times: u32,
        /// The error they return.
        error: S3Error,
    },
    /// Do the operation, then return `error` anyway: the answer was lost
    /// (e.g. a CompleteMultipartUpload that succeeded but timed out).
    LoseAnswer {
        /// How many calls lose their answer.
        times: u32,
        /// The error they return.
        error: S3Error,
    },
    /// Sleep before doing the operation.
    Delay {
        /// How many calls are delayed.
        times: u32,
        /// For how long.
        delay: Duration,
    },
    /// Never answer (the future stays pending until dropped).
    Hang {
        /// How many calls hang.
        times: u32,
    },
}

impl Fault {
    /// Fail the next call with a service error of this status and code.
    pub fn service(status: u16, code: S3ErrorCode) -> Self {
        Fault::Fail {
            times: 1,
            error: service_error(status, code, "injected fault"),
        }
    }

    /// Fail the next `times` calls with 503 SlowDown (retryable).
    pub fn slow_down(times: u32) -> Self {
        Fault::Fail {
            times,
            error: service_error(503, S3ErrorCode::SlowDown, "injected fault"),
        }
    }

    /// Fail the next call with this error.
    pub fn fail(error: S3Error) -> Self {
        Fault::Fail { times: 1, error }
    }

    /// Delay the next call.
    pub fn delay(delay: Duration) -> Self {
        Fault::Delay { times: 1, delay }
    }

    /// Make the next call hang forever.
    pub fn hang() -> Self {
        Fault::Hang { times: 1 }
    }

    /// Apply this fault to `times` calls instead of one.
    pub fn times(mut self, n: u32) -> Self {
        match &mut self {
            Fault::Fail { times, .. }
            | Fault::LoseAnswer { times, .. }
            | Fault::Delay { times, .. }
            | Fault::Hang { times } => *times = n,
        }
        self
    }

    fn remaining(&mut self) -> &mut u32 {
        match self {
            Fault::Fail { times, .. }
            | Fault::LoseAnswer { times, .. }
            | Fault::Delay { times, .. }
            | Fault::Hang { times } => times,
        }
    }
}

/// One recorded call: which operation, on which bucket and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The operation.
    pub op: Op,
    /// Bucket (empty for ListBuckets).
    pub bucket: String,
    /// Key (the prefix for listings; empty when there is none).
    pub key: String,
}

/// A stored object, as [`FakeClient::object`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeObject {
    /// The content.
    pub body: Bytes,
    /// Its headers and user metadata.
    pub headers: ObjectHeaders,
    /// Quoted ETag.
    pub etag: String,
    /// Last modification time (whole seconds, as S3 reports it).
    pub last_modified: SystemTime,
}

struct Upload {
    bucket: String,
    key: String,
    headers: ObjectHeaders,
    initiated: SystemTime,
    parts: BTreeMap<u32, (Bytes, String)>,
}

type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    buckets: BTreeMap<String, (SystemTime, BTreeMap<String, FakeObject>)>,
    uploads: HashMap<String, Upload>,
    next_upload: u64,
    next_request: u64,
    min_part_size: u64,
    counts: HashMap<Op, u64>,
    calls: Vec<Call>,
    faults: HashMap<Op, VecDeque<Fault>>,
    hooks: HashMap<Op, VecDeque<Hook>>,
}

/// In-memory S3 store implementing [`ObjectClient`]. Cheap to clone: clones
/// share one store, so a test can keep a handle while the code under test
/// owns another.
#[derive(Clone)]
pub struct FakeClient {
    state: Arc<Mutex<State>>,
}

impl Default for FakeClient {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FakeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("FakeClient")
            .field("buckets", &st.buckets.keys().collect::<Vec<_>>())
            .field("uploads", &st.uploads.len())
            .finish_non_exhaustive()
    }
}

enum Injected {
    None,
    LoseAnswer(S3Error),
}

impl FakeClient {
    /// An empty store with no buckets.
    pub fn new() -> Self {
        let state = State {
            min_part_size: DEFAULT_MIN_PART_SIZE,
            ..State::default()
        };
        FakeClient {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// An empty store holding the given (empty) buckets.
    pub fn with_buckets(names: &[&str]) -> Self {
        let fake = Self::new();
        for name in names {
            fake.create_bucket(name);
        }
        fake
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not poison every later assertion.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ----- test helpers (not counted as requests) -----

    /// Creates a bucket (no-op if it exists).
    pub fn create_bucket(&self, name: &str) {
        self.lock()
            .buckets
            .entry(name.to_string())
            .or_insert_with(|| (now_secs(), BTreeMap::new()));
    }

    /// Stores an object with no headers, creating the bucket if needed;
    /// returns its ETag.
    pub fn put(&self, bucket: &str, key: &str, body: impl Into<Bytes>) -> String {
        self.put_with_headers(bucket, key, body, ObjectHeaders::default())
    }

    /// Stores an object with headers, creating the bucket if needed; returns
    /// its ETag. Metadata names are lower-cased, as servers do.
    pub fn put_with_headers(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes>,
        headers: ObjectHeaders,
    ) -> String {
        self.create_bucket(bucket);
        let body = body.into();
        let etag = single_etag(&body);
        let obj = FakeObject {
            body,
            headers: normalize_headers(headers),
            etag: etag.clone(),
            last_modified: now_secs(),
        };
        if let Some((_, objs)) = self.lock().buckets.get_mut(bucket) {
            objs.insert(key.to_string(), obj);
        }
        etag
    }

    /// The stored object, if any.
    pub fn object(&self, bucket: &str, key: &str) -> Option<FakeObject> {
        self.lock()
            .buckets
            .get(bucket)
            .and_then(|(_, objs)| objs.get(key).cloned())
    }

    /// Every key in the bucket, in order (empty if the bucket is missing).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.lock()
            .buckets
            .get(bucket)
            .map(|(_, objs)| objs.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes an object directly; true if it existed.
    pub fn remove(&self, bucket: &str, key: &str) -> bool {
        self.lock()
            .buckets
            .get_mut(bucket)
            .is_some_and(|(_, objs)| objs.remove(key).is_some())
    }

    /// Upload ids of unfinished multipart uploads in `bucket`.
    pub fn pending_uploads(&self, bucket: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .lock()
            .uploads
            .iter()
            .filter(|(_, u)| u.bucket == bucket)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Sets the minimum size of every part but the last (default 5 MiB;
    /// 0 disables the check).
    pub fn set_min_part_size(&self, bytes: u64) {
        self.lock().min_part_size = bytes;
    }

    // ----- counters -----

    /// How many calls of `op` were made since the last reset.
    pub fn count(&self, op: Op) -> u64 {
        self.lock().counts.get(&op).copied().unwrap_or(0)
    }

    /// How many calls of any operation were made since the last reset.
    pub fn total_requests(&self) -> u64 {
        self.lock().counts.values().sum()
    }

    /// Every non-zero counter, in [`Op`] order (handy in assertion messages).
    pub fn counts(&self) -> BTreeMap<Op, u64> {
        self.lock()
            .counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(op, n)| (*op, *n))
            .collect()
    }

    /// Every call since the last reset, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Zeroes every counter and forgets the recorded calls.
    pub fn reset_counts(&self) {
        let mut st = self.lock();
        st.counts.clear();
        st.calls.clear();
    }

    // ----- faults and hooks -----

    /// Queues a fault for the next call(s) of `op`.
    pub fn inject(&self, op: Op, fault: Fault) {
        self.lock().faults.entry(op).or_default().push_back(fault);
    }

    /// Drops every queued fault and hook.
    pub fn clear_faults(&self) {
        let mut st = self.lock();
        st.faults.clear();
        st.hooks.clear();
    }

    /// Runs `hook` once, right before the next call of `op` touches the
    /// store (after it is counted). Use it to simulate another writer, e.g.
    /// an overwrite between the HEAD and the COPY of a header change:
    ///
    /// ```
    /// # use s3linkfs::s3::fake::{FakeClient, Op};
    /// let fake = FakeClient::new();
    /// let other = fake.clone();
    /// fake.before_next(Op::CopyObject, move || {
    ///     other.put("b", "k", "newer");
    /// });
    /// ```
    pub fn before_next(&self, op: Op, hook: impl FnOnce() + Send + 'static) {
        self.lock()
            .hooks
            .entry(op)
            .or_default()
            .push_back(Box::new(hook));
    }

    /// Counts the call, runs hooks and faults. `Err` means the call fails
    /// now; `Ok(LoseAnswer)` means do it, then fail.
    async fn enter(&self, op: Op, bucket: &str, key: &str) -> Result<Injected, S3Error> {
        let (hook, fault) = {
            let mut st = self.lock();
            *st.counts.entry(op).or_default() += 1;
            st.calls.push(Call {
                op,
                bucket: bucket.to_string(),
                key: key.to_string(),
            });
            let hook = st.hooks.get_mut(&op).and_then(VecDeque::pop_front);
            let fault = match st.faults.get_mut(&op) {
                Some(queue) => match queue.front_mut() {
                    Some(f) => {
                        let mut taken = f.clone();
                        *taken.remaining() = 1;
                        let left = f.remaining();
                        *left = left.saturating_sub(1);
                        if *left == 0 {
                            queue.pop_front();
                        }
                        Some(taken)
                    }
                    None => None,
                },
                None => None,
            };
            (hook, fault)
        };
        if let Some(hook) = hook {
            hook();
        }
        match fault {
            None => Ok(Injected::None),
            Some(Fault::Fail { error, .. }) => Err(error),
            Some(Fault::LoseAnswer { error, .. }) => Ok(Injected::LoseAnswer(error)),
            Some(Fault::Delay { delay, .. }) => {
                tokio::time::sleep(delay).await;
                Ok(Injected::None)
            }
            Some(Fault::Hang { .. }) => std::future::pending().await,
        }
    }

    fn request_id(st: &mut State) -> String {
        st.next_request += 1;
        format!("fake-{:08}", st.next_request)
    }
}

fn finish<T>(injected: Injected, result: Result<T, S3Error>) -> Result<T, S3Error> {
    match injected {
        Injected::None => result,
        Injected::LoseAnswer(e) => Err(e),
    }
}

/// Builds a service error as a server would send it.
pub fn service_error(status: u16, code: S3ErrorCode, message: &str) -> S3Error {
    S3Error::Service {
        status,
        code,
        message: message.to_string(),
        request_id: String::new(),
    }
}

fn err(st: &mut State, status: u16, code: &str, message: &str) -> S3Error {
    S3Error::Service {
        status,
        code: S3ErrorCode::parse(code),
        message: message.to_string(),
        request_id: FakeClient::request_id(st),
    }
}

fn no_such_bucket(st: &mut State) -> S3Error {
    err(
        st,
        404,
        "NoSuchBucket",
        "The specified bucket does not exist",
    )
}

fn no_such_key(st: &mut State) -> S3Error {
    err(st, 404, "NoSuchKey", "The specified key does not exist.")
}

fn no_such_upload(st: &mut State) -> S3Error {
    err(
        st,
        404,
        "NoSuchUpload",
        "The specified upload does not exist.",
    )
}

fn precondition(st: &mut State) -> S3Error {
    err(
        st,
        412,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
    )
}

fn now_secs() -> SystemTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// `"<32 hex>"`: MD5-sized, deterministic, derived from the content.
fn single_etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

fn multipart_etag(part_etags: &[&str], n: usize) -> String {
    let mut h = Sha256::new();
    for e in part_etags {
        h.update(e.trim_matches('"').as_bytes());
    }
    format!("\"{}-{n}\"", hex::encode(&h.finalize()[..16]))
}

fn normalize_headers(mut h: ObjectHeaders) -> ObjectHeaders {
    h.metadata = h
        .metadata
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    h
}

fn etag_matches(cond: &str, etag: &str) -> bool {
    let c = cond.trim();
    c == "*" || c.trim_matches('"') == etag.trim_matches('"')
}

fn body_stream(body: Bytes) -> ByteStream {
    let mut chunks = Vec::new();
    let mut rest = body;
    while rest.len() > BODY_CHUNK {
        chunks.push(Ok(rest.split_to(BODY_CHUNK)));
    }
    if !rest.is_empty() {
        chunks.push(Ok(rest));
    }
    Box::pin(futures_util::stream::iter(chunks))
}

fn objects<'a>(
    st: &'a mut State,
    bucket: &str,
) -> Result<&'a mut BTreeMap<String, FakeObject>, S3Error> {
    if st.buckets.contains_key(bucket) {
        Ok(st
            .buckets
            .get_mut(bucket)
            .map(|(_, o)| o)
            .expect("checked above"))
    } else {
        Err(no_such_bucket(st))
    }
}

fn lookup(st: &mut State, bucket: &str, key: &str) -> Result<FakeObject, S3Error> {
    match objects(st, bucket)?.get(key) {
        Some(o) => Ok(o.clone()),
        None => Err(no_such_key(st)),
    }
}

fn list_page(st: &mut State, req: &ListRequest) -> Result<ListPage, S3Error> {
    let max = req
        .max_keys
        .map_or(MAX_KEYS, |m| (m as usize).min(MAX_KEYS));
    // Token: "fake:k:<last key>" or "fake:p:<last common prefix>".
    let start_after = match &req.continuation_token {
        None => None,
        Some(t) => match (t.strip_prefix("fake:k:"), t.strip_prefix("fake:p:")) {
            (Some(k), _) => Some((k.to_string(), false)),
            (_, Some(p)) => Some((p.to_string(), true)),
            _ => {
                return Err(err(
                    st,
                    400,
                    "InvalidArgument",
                    "The continuation token provided is incorrect",
                ));
            }
        },
    };
    let delimiter = req.delimiter.as_deref().filter(|d| !d.is_empty());
    let objs = objects(st, &req.bucket)?;
    let mut page = ListPage::default();
    let mut last: Option<String> = None;
    let range_start = match &start_after {
        Some((k, _)) if k.as_str() > req.prefix.as_str() => k.clone(),
        _ => req.prefix.clone(),
    };
    for (key, obj) in objs.range(range_start..) {
        if !key.starts_with(&req.prefix) {
            break;
        }
        if let Some((after, is_prefix)) = &start_after {
            // A token naming a common prefix skips everything under it.
            if key <= after || (*is_prefix && key.starts_with(after.as_str())) {
                continue;
            }
        }
        let rolled = delimiter.and_then(|d| {
            key[req.prefix.len()..]
                .find(d)
                .map(|i| key[..req.prefix.len() + i + d.len()].to_string())
        });
        if let Some(cp) = &rolled
            && page.common_prefixes.last() == Some(cp)
        {
            continue;
        }
        if page.objects.len() + page.common_prefixes.len() == max {
            page.next_continuation_token = last;
            return Ok(page);
        }
        match rolled {
            Some(cp) => {
                last = Some(format!("fake:p:{cp}"));
                page.common_prefixes.push(cp);
            }
            None => {
                last = Some(format!("fake:k:{key}"));
                page.objects.push(ObjectSummary {
                    key: key.clone(),
                    size: obj.body.len() as u64,
                    etag: obj.etag.clone(),
                    last_modified: obj.last_modified,
                    storage_class: Some(
                        obj.headers
                            .storage_class
                            .clone()
                            .unwrap_or_else(|| "STANDARD".into()),
                    ),
                });
            }
        }
    }
    Ok(page)
}

#[async_trait]
impl ObjectClient for FakeClient {
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>, S3Error> {
        let inj = self.enter(Op::ListBuckets, "", "").await?;
        let out = self
            .lock()
            .buckets
            .iter()
            .map(|(name, (created, _))| BucketInfo {
                name: name.clone(),
                created: Some(*created),
            })
            .collect();
        finish(inj, Ok(out))
    }

    async fn list_objects(&self, req: &ListRequest) -> Result<ListPage, S3Error> {
        let inj = self
            .enter(Op::ListObjects, &req.bucket, &req.prefix)
            .await?;
        let out = list_page(&mut self.lock(), req);
        finish(inj, out)
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<HeadOutput, S3Error> {
        let inj = self.enter(Op::HeadObject, bucket, key).await?;
        let out = lookup(&mut self.lock(), bucket, key).map(|o| HeadOutput {
            size: o.body.len() as u64,
            etag: o.etag,
            last_modified: o.last_modified,
            headers: o.headers,
        });
        finish(inj, out)
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        req: &GetRequest,
    ) -> Result<GetOutput, S3Error> {
        let inj = self.enter(Op::GetObject, bucket, key).await?;
        let out = {
            let mut st = self.lock();
            lookup(&mut st, bucket, key).and_then(|o| {
                if let Some(cond) = &req.if_match
                    && !etag_matches(cond, &o.etag)
                {
                    return Err(precondition(&mut st));
                }
                let size = o.body.len() as u64;
                let body = match &req.range {
                    None => o.body.clone(),
                    Some(r) => {
                        if r.start >= size || r.end <= r.start {
                            return Err(err(
                                &mut st,
                                416,
                                "InvalidRange",
                                "The requested range is not satisfiable",
                            ));
                        }
                        o.body.slice(r.start as usize..r.end.min(size) as usize)
                    }
                };
                Ok(GetOutput {
                    body: body_stream(body),
                    etag: o.etag,
                    object_size: size,
                })
            })
        };
        finish(inj, out)
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        headers: &ObjectHeaders,
        body: Bytes,
    ) -> Result<PutOutput, S3Error> {
        let inj = self.enter(Op::PutObject, bucket, key).await?;
        let out = {
            let mut st = self.lock();
            let etag = single_etag(&body);
            objects(&mut st, bucket).map(|objs| {
                objs.insert(
                    key.to_string(),
                    FakeObject {
                        body,
                        headers: normalize_headers(headers.clone()),
                        etag: etag.clone(),
                        last_modified: now_secs(),
                    },
                );
                PutOutput { etag }
            })
        };
        finish(inj, out)
    }

    async fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        headers: &ObjectHeaders,
    ) -> Result<String, S3Error> {
        let inj = self.enter(Op::CreateMultipartUpload, bucket, key).await?;
        let out = {
            let mut st = self.lock();
            objects(&mut st, bucket).map(|_| ()).map(|()| {
                st.next_upload += 1;
                let id = format!("upload-{:06}", st.next_upload);
                st.uploads.insert(
                    id.clone(),
                    Upload {
                        bucket: bucket.to_string(),
                        key: key.to_string(),
                        headers: normalize_headers(headers.clone()),
                        initiated: now_secs(),
                        parts: BTreeMap::new(),
                    },
                );
                id
            })
        };
        finish(inj, out)
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<CompletedPart, S3Error> {
        let inj = self.enter(Op::UploadPart, bucket, key).await?;
        let out = {
            let mut st = self.lock();
            store_part(&mut st, bucket, key, upload_id, part_number, body)
        };
        finish(inj, out)
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
        let inj = self.enter(Op::UploadPartCopy, bucket, key).await?;
        let out = {
            let mut st = self.lock();
            lookup(&mut st, src_bucket, src_key).and_then(|src| {
                if let Some(cond) = if_match
                    && !etag_matches(cond, &src.etag)
                {
                    return Err(precondition(&mut st));
                }
                let size = src.body.len() as u64;
                if range.start >= range.end || range.end > size {
                    return Err(err(
                        &mut st,
                        400,
                        "InvalidArgument",
                        "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
                    ));
                }
                let body = src.body.slice(range.start as usize..range.end as usize);
                store_part(&mut st, bucket, key, upload_id, part_number, body)
            })
        };
        finish(inj, out)
    }

    async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<PutOutput, S3Error> {
        let inj = self.enter(Op::CompleteMultipartUpload, bucket, key).await?;
        let out = {
            let mut st = self.lock();
            complete(&mut st, bucket, key, upload_id, parts)
        };
        finish(inj, out)
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), S3Error> {
        let inj = self.enter(Op::AbortMultipartUpload, bucket, key).await?;
        let out = {
            let mut st = self.lock();
            match st.uploads.get(upload_id) {
                Some(u) if u.bucket == bucket && u.key == key => {
                    st.uploads.remove(upload_id);
                    Ok(())
                }
                _ => Err(no_such_upload(&mut st)),
            }
        };
        finish(inj, out)
    }

    async fn copy_object(&self, req: &CopyRequest) -> Result<CopyOutput, S3Error> {
        let inj = self
            .enter(Op::CopyObject, &req.dst_bucket, &req.dst_key)
            .await?;
        let out = {
            let mut st = self.lock();
            copy(&mut st, req)
        };
        finish(inj, out)
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        let inj = self.enter(Op::DeleteObject, bucket, key).await?;
        let out = {
            let mut st = self.lock();
            objects(&mut st, bucket).map(|objs| {
                objs.remove(key);
            })
        };
        finish(inj, out)
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<MultipartUploadInfo>, S3Error> {
        let inj = self.enter(Op::ListMultipartUploads, bucket, prefix).await?;
        let out = {
            let mut st = self.lock();
            objects(&mut st, bucket).map(|_| ()).map(|()| {
                let mut v: Vec<MultipartUploadInfo> = st
                    .uploads
                    .iter()
                    .filter(|(_, u)| u.bucket == bucket && u.key.starts_with(prefix))
                    .map(|(id, u)| MultipartUploadInfo {
                        key: u.key.clone(),
                        upload_id: id.clone(),
                        initiated: Some(u.initiated),
                    })
                    .collect();
                v.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
                v
            })
        };
        finish(inj, out)
    }
}

fn store_part(
    st: &mut State,
    bucket: &str,
    key: &str,
    upload_id: &str,
    part_number: u32,
    body: Bytes,
) -> Result<CompletedPart, S3Error> {
    if !(1..=10_000).contains(&part_number) {
        return Err(err(
            st,
            400,
            "InvalidArgument",
            "Part number must be an integer between 1 and 10000, inclusive",
        ));
    }
    match st.uploads.get_mut(upload_id) {
        Some(u) if u.bucket == bucket && u.key == key => {
            let etag = single_etag(&body);
            u.parts.insert(part_number, (body, etag.clone()));
            Ok(CompletedPart { part_number, etag })
        }
        _ => Err(no_such_upload(st)),
    }
}

fn complete(
    st: &mut State,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: &[CompletedPart],
) -> Result<PutOutput, S3Error> {
    let min = st.min_part_size;
    let upload = match st.uploads.get(upload_id) {
        Some(u) if u.bucket == bucket && u.key == key => u,
        _ => return Err(no_such_upload(st)),
    };
    if parts.is_empty() {
        return Err(err(
            st,
            400,
            "MalformedXML",
            "You must specify at least one part",
        ));
    }
    let mut bodies = Vec::with_capacity(parts.len());
    let mut etags = Vec::with_capacity(parts.len());
    let mut prev = 0;
    let mut problem = None;
    for (i, p) in parts.iter().enumerate() {
        if p.part_number <= prev {
            problem = Some((
                "InvalidPartOrder",
                "The list of parts was not in ascending order.",
            ));
            break;
        }
        prev = p.part_number;
        match upload.parts.get(&p.part_number) {
            Some((body, etag)) if etag_matches(&p.etag, etag) => {
                if i + 1 < parts.len() && (body.len() as u64) < min {
                    problem = Some((
                        "EntityTooSmall",
                        "Your proposed upload is smaller than the minimum allowed object size.",
                    ));
                    break;
                }
                bodies.push(body.clone());
                etags.push(etag.as_str());
            }
            _ => {
                problem = Some((
                    "InvalidPart",
                    "One or more of the specified parts could not be found.",
                ));
                break;
            }
        }
    }
    if let Some((code, message)) = problem {
        return Err(err(st, 400, code, message));
    }
    let etag = multipart_etag(&etags, parts.len());
    let total: usize = bodies.iter().map(Bytes::len).sum();
    let mut joined = Vec::with_capacity(total);
    for b in &bodies {
        joined.extend_from_slice(b);
    }
    let headers = upload.headers.clone();
    st.uploads.remove(upload_id);
    let objs = objects(st, bucket)?;
    objs.insert(
        key.to_string(),
        FakeObject {
            body: Bytes::from(joined),
            headers,
            etag: etag.clone(),
            last_modified: now_secs(),
        },
    );
    Ok(PutOutput { etag })
}

fn copy(st: &mut State, req: &CopyRequest) -> Result<CopyOutput, S3Error> {
    let src = lookup(st, &req.src_bucket, &req.src_key)?;
    if let Some(cond) = &req.if_match
        && !etag_matches(cond, &src.etag)
    {
        return Err(precondition(st));
    }
    let same = req.src_bucket == req.dst_bucket && req.src_key == req.dst_key;
    let headers = match &req.directive {
        MetadataDirective::Copy if same => {
            return Err(err(
                st,
                400,
                "InvalidRequest",
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
            ));
        }
        MetadataDirective::Copy => src.headers.clone(),
        MetadataDirective::Replace(h) => normalize_headers(h.clone()),
    };
    let etag = single_etag(&src.body);
    let last_modified = now_secs();
    let objs = objects(st, &req.dst_bucket)?;
    objs.insert(
        req.dst_key.clone(),
        FakeObject {
            body: src.body,
            headers,
            etag: etag.clone(),
            last_modified,
        },
    );
    Ok(CopyOutput {
        etag,
        last_modified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn read_all(mut body: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.expect("chunk"));
        }
        out
    }

    fn list(bucket: &str, prefix: &str, delim: Option<&str>, max: Option<u32>) -> ListRequest {
        ListRequest {
            bucket: bucket.into(),
            prefix: prefix.into(),
            delimiter: delim.map(Into::into),
            continuation_token: None,
            max_keys: max,
        }
    }

    #[tokio::test]
    async fn list_with_delimiter_and_pages() {
        let fake = FakeClient::new();
        for k in ["a/1", "a/2", "b", "c/x/y", "c/z", "d"] {
            fake.put("bk", k, "x");
        }
        let page = fake
            .list_objects(&list("bk", "", Some("/"), None))
            .await
            .unwrap();
        let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["b", "d"]);
        assert_eq!(page.common_prefixes, ["a/", "c/"]);
        assert_eq!(page.next_continuation_token, None);

        // Pages of 1: a/, b, c/, d — each a separate page.
        let mut req = list("bk", "", Some("/"), Some(1));
        let mut seen = Vec::new();
        loop {
            let p = fake.list_objects(&req).await.unwrap();
            seen.extend(p.common_prefixes.iter().cloned());
            seen.extend(p.objects.iter().map(|o| o.key.clone()));
            match p.next_continuation_token {
                Some(t) => req.continuation_token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, ["a/", "b", "c/", "d"]);

        let p = fake
            .list_objects(&list("bk", "c/", Some("/"), None))
            .await
            .unwrap();
        assert_eq!(p.common_prefixes, ["c/x/"]);
        assert_eq!(p.objects.len(), 1);
        assert_eq!(fake.count(Op::ListObjects), 1 + 4 + 1);
    }

    #[tokio::test]
    async fn list_without_delimiter_pages_through_everything() {
        let fake = FakeClient::new();
        for i in 0..25 {
            fake.put("bk", &format!("k{i:03}"), "x");
        }
        let mut req = list("bk", "k", None, Some(10));
        let mut n = 0;
        loop {
            let p = fake.list_objects(&req).await.unwrap();
            n += p.objects.len();
            match p.next_continuation_token {
                Some(t) => req.continuation_token = Some(t),
                None => break,
            }
        }
        assert_eq!(n, 25);
    }

    #[tokio::test]
    async fn get_range_and_if_match() {
        let fake = FakeClient::new();
        let etag = fake.put("bk", "k", "0123456789");
        let get = |range, if_match| GetRequest { range, if_match };
        let out = fake
            .get_object("bk", "k", &get(Some(2..5), None))
            .await
            .unwrap();
        assert_eq!(out.object_size, 10);
        assert_eq!(read_all(out.body).await, b"234");
        let out = fake
            .get_object("bk", "k", &get(Some(8..100), Some(etag.clone())))
            .await
            .unwrap();
        assert_eq!(read_all(out.body).await, b"89");
        let e = fake
            .get_object("bk", "k", &get(None, Some("\"nope\"".into())))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(&S3ErrorCode::PreconditionFailed));
        let e = fake
            .get_object("bk", "k", &get(Some(10..11), None))
            .await
            .unwrap_err();
        assert_eq!(e.code().map(S3ErrorCode::as_str), Some("InvalidRange"));
        let e = fake.head_object("bk", "missing").await.unwrap_err();
        assert!(e.is_not_found());
        let e = fake.head_object("nobucket", "k").await.unwrap_err();
        assert_eq!(e.code(), Some(&S3ErrorCode::NoSuchBucket));
    }

    #[tokio::test]
    async fn multipart_gives_dash_n_etag_and_checks_sizes() {
        let fake = FakeClient::new();
        fake.create_bucket("bk");
        fake.set_min_part_size(4);
        let id = fake
            .create_multipart_upload("bk", "m", &ObjectHeaders::default())
            .await
            .unwrap();
        let p1 = fake
            .upload_part("bk", "m", &id, 1, Bytes::from_static(b"abcd"))
            .await
            .unwrap();
        let p2 = fake
            .upload_part("bk", "m", &id, 2, Bytes::from_static(b"ef"))
            .await
            .unwrap();
        let out = fake
            .complete_multipart_upload("bk", "m", &id, &[p1.clone(), p2.clone()])
            .await
            .unwrap();
        assert!(out.etag.ends_with("-2\""), "{}", out.etag);
        assert_eq!(fake.object("bk", "m").unwrap().body, "abcdef");
        // The upload is gone: a second complete is NoSuchUpload.
        let e = fake
            .complete_multipart_upload("bk", "m", &id, &[p1, p2])
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(&S3ErrorCode::NoSuchUpload));

        let id = fake
            .create_multipart_upload("bk", "m2", &ObjectHeaders::default())
            .await
            .unwrap();
        let p1 = fake
            .upload_part("bk", "m2", &id, 1, Bytes::from_static(b"ab"))
            .await
            .unwrap();
        let p2 = fake
            .upload_part("bk", "m2", &id, 2, Bytes::from_static(b"cd"))
            .await
            .unwrap();
        let e = fake
            .complete_multipart_upload("bk", "m2", &id, &[p1, p2])
            .await
            .unwrap_err();
        assert_eq!(e.code().map(S3ErrorCode::as_str), Some("EntityTooSmall"));
        fake.abort_multipart_upload("bk", "m2", &id).await.unwrap();
        assert!(fake.pending_uploads("bk").is_empty());
    }

    #[tokio::test]
    async fn copy_replace_and_self_copy_rules() {
        let fake = FakeClient::new();
        let headers = ObjectHeaders {
            content_type: Some("text/plain".into()),
            metadata: [("Color".to_string(), "blue".to_string())].into(),
            ..ObjectHeaders::default()
        };
        let etag = fake.put_with_headers("bk", "k", "data", headers);
        assert_eq!(
            fake.object("bk", "k").unwrap().headers.metadata["color"],
            "blue"
        );
        let mut req = CopyRequest {
            src_bucket: "bk".into(),
            src_key: "k".into(),
            dst_bucket: "bk".into(),
            dst_key: "k".into(),
            if_match: Some(etag.clone()),
            directive: MetadataDirective::Copy,
        };
        let e = fake.copy_object(&req).await.unwrap_err();
        assert_eq!(e.code().map(S3ErrorCode::as_str), Some("InvalidRequest"));
        req.directive = MetadataDirective::Replace(ObjectHeaders {
            cache_control: Some("no-cache".into()),
            ..ObjectHeaders::default()
        });
        fake.copy_object(&req).await.unwrap();
        let obj = fake.object("bk", "k").unwrap();
        assert_eq!(
            obj.headers.content_type, None,
            "REPLACE drops what is not sent"
        );
        assert_eq!(obj.headers.cache_control.as_deref(), Some("no-cache"));
        fake.put("bk", "k", "other");
        let e = fake.copy_object(&req).await.unwrap_err();
        assert_eq!(e.code(), Some(&S3ErrorCode::PreconditionFailed));
        assert_eq!(fake.object("bk", "k").unwrap().body, "other");
    }

    #[tokio::test]
    async fn faults_hooks_and_counts() {
        let fake = FakeClient::new();
        fake.put("bk", "k", "v");
        fake.inject(Op::HeadObject, Fault::slow_down(2));
        assert!(
            fake.head_object("bk", "k")
                .await
                .unwrap_err()
                .is_retryable()
        );
        assert!(fake.head_object("bk", "k").await.is_err());
        assert!(fake.head_object("bk", "k").await.is_ok());
        assert_eq!(fake.count(Op::HeadObject), 3);

        fake.inject(
            Op::PutObject,
            Fault::LoseAnswer {
                times: 1,
                error: S3Error::Timeout("lost".into()),
            },
        );
        let e = fake
            .put_object(
                "bk",
                "lost",
                &ObjectHeaders::default(),
                Bytes::from_static(b"x"),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, S3Error::Timeout(_)));
        assert!(fake.object("bk", "lost").is_some(), "the write happened");

        let other = fake.clone();
        fake.before_next(Op::GetObject, move || {
            other.put("bk", "k", "newer");
        });
        let out = fake
            .get_object("bk", "k", &GetRequest::default())
            .await
            .unwrap();
        assert_eq!(read_all(out.body).await, b"newer");

        fake.inject(Op::ListBuckets, Fault::hang());
        let r = tokio::time::timeout(Duration::from_millis(50), fake.list_buckets()).await;
        assert!(r.is_err(), "hung call must stay pending");
        assert_eq!(fake.list_buckets().await.unwrap().len(), 1);

        assert_eq!(fake.total_requests(), 3 + 1 + 1 + 2);
        fake.reset_counts();
        assert_eq!(fake.total_requests(), 0);
        assert!(fake.calls().is_empty());
    }
}
