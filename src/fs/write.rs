//! Writes through the mount: new files, overwrites, appends, truncation,
//! deletion, directories and renames.
//!
//! Why: `cp`, `rsync`, `mv`, editors and `>>` must work on a bucket, and S3
//! has no partial writes: an object is replaced whole, or not at all.
//!
//! Two ways to write a file:
//! - **streaming**, for a new file written in order: parts are uploaded while
//!   the file is written (PutObject when it stays under one part, else a
//!   multipart upload with parallel parts), so memory stays bounded by the
//!   parts in flight;
//! - **staged**, for everything else (overwriting or appending to an existing
//!   object, reads and writes on one handle, truncation): the file is copied
//!   to a local staging file, changed there, and uploaded on flush or fsync.
//!
//! Guarantees:
//! - the old object stays intact and readable until the new one is complete
//!   (PutObject and CompleteMultipartUpload are atomic);
//! - a failed upload surfaces as EIO from `close()` or `fsync()`, with a log
//!   line; a failed multipart upload is aborted, never left behind;
//! - a staged file is kept until its upload succeeds, so flush or fsync can
//!   retry, and if the last close still fails it is moved aside, not deleted;
//!   a new file's unsent bytes are likewise kept across a failed PutObject;
//! - a streamed multipart upload that failed cannot be retried (its parts
//!   are gone with the abort), so every later flush answers EIO and nothing
//!   partial is ever uploaded in its place;
//! - a new file flushed part-way (fsync) and then written again is restaged
//!   from the store first, so the next upload holds all of its bytes;
//! - staging disk use is bounded; past the bound writes answer ENOSPC;
//! - a rename deletes its source only after the copy succeeded;
//! - every change updates this mount's caches at once.

use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::inode::{Ino, Location, Stat};
use super::{Entry, Fs, FsError, Opened, valid_name};
use crate::disposition;
use crate::s3::headers::copy_with_headers;
use crate::s3::{CompletedPart, GetRequest, ListRequest, ObjectHeaders, S3Error};

/// Write settings, validated.
#[derive(Clone, Debug)]
pub struct WriteConfig {
    /// Where staged files live.
    pub staging_dir: PathBuf,
    /// Most bytes staged at once; past this, writes answer ENOSPC.
    pub staging_capacity: u64,
    /// Size of the first parts of a multipart upload; it grows so that an
    /// object of 5 TiB still fits in 10,000 parts.
    pub part_size: u64,
    /// Most parts uploading at once per file.
    pub max_parallel_parts: usize,
    /// Set `Content-Disposition: attachment; filename="<name>"` on every new
    /// upload.
    pub content_disposition_attachment: bool,
    /// A directory rename copies at most this many objects; above it the
    /// rename answers EXDEV (and `mv` falls back to copying file by file).
    pub max_rename_objects: usize,
}

/// The S3 limit on parts in one multipart upload.
const MAX_PARTS: u32 = 10_000;

/// Size of part `n` (from 1): `base` for the first 1000 parts, then doubling
/// every 1000 parts, so 10,000 parts of an 8 MiB base reach past 5 TiB.
pub fn part_size_for(base: u64, n: u32) -> u64 {
    let doublings = (n.saturating_sub(1) / 1000).min(20);
    base << doublings
}

/// How an open file is being written.
enum Body {
    /// A new file written in order; `buf` holds the bytes from `buf_start`
    /// not yet sent.
    Stream {
        buf: BytesMut,
        buf_start: u64,
        upload: Option<Upload>,
    },
    /// A local copy, uploaded whole on flush.
    Staged { file: std::fs::File, path: PathBuf },
    /// A stream whose bytes are all in the store (a flush succeeded); a
    /// further write or truncate restages it from the store first.
    Sent,
    /// A stream whose multipart upload failed and was aborted: the bytes
    /// sent are gone, so every later flush fails and nothing is uploaded.
    Lost,
}

fn lost_error(key: &str) -> FsError {
    FsError::Io(format!(
        "the upload of {key} failed and the bytes already streamed are gone; write the file again"
    ))
}

struct Upload {
    id: String,
    next_part: u32,
    tasks: JoinSet<Result<CompletedPart, S3Error>>,
    permits: Arc<Semaphore>,
}

struct WriteState {
    headers: ObjectHeaders,
    body: Body,
    dirty: bool,
    /// Bytes of staging space this handle has reserved.
    reserved: u64,
}

/// One file open for writing.
pub(super) struct WriteHandle {
    pub(super) ino: Ino,
    bucket: String,
    /// The object key; a rename of the open file moves it.
    key: std::sync::Mutex<String>,
    /// The process that opened the file (0: unknown). Only its closes
    /// upload: a child that inherited the descriptor closes it too (at exec
    /// or exit), and must not publish a half-written file.
    opener: u32,
    size: AtomicU64,
    state: tokio::sync::Mutex<WriteState>,
}

impl WriteHandle {
    /// The object key the next upload goes to.
    pub(super) fn key(&self) -> String {
        self.key.lock().unwrap().clone()
    }

    /// Current size, including bytes not yet uploaded.
    pub(super) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }
}

impl Fs {
    fn check_writable(&self) -> Result<(), FsError> {
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    fn new_headers(&self, name: &str) -> ObjectHeaders {
        let content_type = mime_guess::from_path(name)
            .first()
            .map(|m| m.essence_str().to_string())
            .unwrap_or_else(|| "application/octet-stream".to_string());
        ObjectHeaders {
            content_type: Some(content_type),
            content_disposition: self
                .cfg
                .write
                .content_disposition_attachment
                .then(|| disposition::attachment_for(name)),
            ..ObjectHeaders::default()
        }
    }

    /// The open write handle on `ino`, if any.
    pub(super) fn writer_for(&self, ino: Ino) -> Option<Arc<WriteHandle>> {
        self.write_handles
            .lock()
            .unwrap()
            .values()
            .find(|h| h.ino == ino)
            .cloned()
    }

    fn writer_at(&self, bucket: &str, key: &str) -> Option<Arc<WriteHandle>> {
        self.write_handles
            .lock()
            .unwrap()
            .values()
            .find(|h| h.bucket == bucket && h.key() == key)
            .cloned()
    }

    /// The entry of a file being written that the store does not have yet.
    pub(super) fn pending_entry(&self, location: &Location) -> Option<Entry> {
        let Location::File { bucket, key } = location else {
            return None;
        };
        let w = self.writer_at(bucket, key)?;
        let node = self.node(w.ino).ok()?;
        let stat = Stat {
            size: w.size(),
            ..node.stat
        };
        Some(self.entry(w.ino, &node.location, &stat))
    }

    fn reserve(&self, state: &mut WriteState, size: u64) -> Result<(), FsError> {
        if size <= state.reserved {
            return Ok(());
        }
        let more = size - state.reserved;
        let cap = self.cfg.write.staging_capacity;
        let mut used = self.staged_bytes.load(Ordering::Acquire);
        loop {
            if used + more > cap {
                return Err(FsError::NoSpace(format!(
                    "staging would need {} more bytes; {used} of {cap} in use",
                    more
                )));
            }
            match self.staged_bytes.compare_exchange(
                used,
                used + more,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => used = now,
            }
        }
        state.reserved = size;
        Ok(())
    }

    fn unreserve(&self, state: &mut WriteState) {
        self.staged_bytes
            .fetch_sub(state.reserved, Ordering::AcqRel);
        state.reserved = 0;
    }

    fn staging_file(&self) -> Result<(std::fs::File, PathBuf), FsError> {
        let dir = &self.cfg.write.staging_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| FsError::Io(format!("staging dir {}: {e}", dir.display())))?;
        let n = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("stage-{}-{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| FsError::Io(format!("staging file {}: {e}", path.display())))?;
        Ok((file, path))
    }

    /// Creates file `name` in `parent` and opens it for writing (and reading,
    /// with `read`).
    pub async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        read: bool,
        pid: u32,
    ) -> Result<(Entry, Opened), FsError> {
        self.check_writable()?;
        let name = new_name(name)?;
        let dir = self.node(parent)?;
        if matches!(dir.location, Location::Buckets) {
            return Err(FsError::NotPermitted(
                "files cannot be created beside buckets".into(),
            ));
        }
        let location = dir.location.child(name, false).ok_or(FsError::NotDir)?;
        let Location::File { bucket, key } = location.clone() else {
            return Err(FsError::NotDir);
        };
        let now = Instant::now();
        let stat = Stat {
            size: 0,
            mtime: SystemTime::now(),
            etag: None,
        };
        let ino =
            self.nodes
                .lock()
                .unwrap()
                .upsert(parent, name, location.clone(), stat.clone(), 1, now);
        self.forget_name(parent, name);
        let body = if read {
            let (file, path) = self.staging_file()?;
            Body::Staged { file, path }
        } else {
            Body::Stream {
                buf: BytesMut::new(),
                buf_start: 0,
                upload: None,
            }
        };
        let state = WriteState {
            headers: self.new_headers(name),
            body,
            dirty: true,
            reserved: 0,
        };
        let fh = self.add_writer(ino, bucket, key, 0, state, pid);
        Ok((
            self.entry(ino, &location, &stat),
            Opened {
                fh,
                keep_cache: false,
            },
        ))
    }

    fn add_writer(
        &self,
        ino: Ino,
        bucket: String,
        key: String,
        size: u64,
        state: WriteState,
        opener: u32,
    ) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.nodes.lock().unwrap().pin(ino);
        self.write_handles.lock().unwrap().insert(
            fh,
            Arc::new(WriteHandle {
                ino,
                bucket,
                key: std::sync::Mutex::new(key),
                opener,
                size: AtomicU64::new(size),
                state: tokio::sync::Mutex::new(state),
            }),
        );
        fh
    }

    /// Drops cached knowledge of `name` in `parent` after a change there.
    fn forget_name(&self, parent: Ino, name: &str) {
        self.negative
            .lock()
            .unwrap()
            .pop(&(parent, name.to_string()));
        self.listings.lock().unwrap().pop(&parent);
    }

    /// Opens an existing file for writing: stages a local copy (empty with
    /// `truncate`) to be uploaded on flush.
    pub async fn open_write(&self, ino: Ino, truncate: bool, pid: u32) -> Result<Opened, FsError> {
        self.check_writable()?;
        let node = self.node(ino)?;
        let Location::File { bucket, key } = node.location.clone() else {
            return Err(FsError::IsDir);
        };
        let (file, path) = self.staging_file()?;
        let mut state = WriteState {
            headers: ObjectHeaders::default(),
            body: Body::Staged {
                file,
                path: path.clone(),
            },
            dirty: truncate,
            reserved: 0,
        };
        let size = match self
            .stage_existing(&bucket, &key, &mut state, truncate)
            .await
        {
            Ok(size) => size,
            Err(e) => {
                self.unreserve(&mut state);
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let fh = self.add_writer(ino, bucket, key, size, state, pid);
        Ok(Opened {
            fh,
            keep_cache: false,
        })
    }

    /// Fills a staged handle from the object (its headers always, its bytes
    /// unless `truncate`); returns the staged size.
    async fn stage_existing(
        &self,
        bucket: &str,
        key: &str,
        state: &mut WriteState,
        truncate: bool,
    ) -> Result<u64, FsError> {
        let head = match self.client.head_object(bucket, key).await {
            Ok(h) => h,
            // Created by this mount and not uploaded yet, or deleted meanwhile.
            Err(e) if e.is_not_found() => {
                state.headers = self.new_headers(key.rsplit('/').next().unwrap_or(key));
                state.dirty = true;
                return Ok(0);
            }
            Err(e) => return Err(e.into()),
        };
        state.headers = head.headers.clone();
        if truncate || head.size == 0 {
            return Ok(0);
        }
        self.reserve(state, head.size)?;
        let Body::Staged { file, .. } = &state.body else {
            return Err(FsError::Io("stage_existing on a streaming handle".into()));
        };
        let out = self
            .client
            .get_object(
                bucket,
                key,
                &GetRequest {
                    range: None,
                    if_match: Some(head.etag.clone()),
                },
            )
            .await?;
        let mut body = out.body;
        let mut offset = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            file.write_all_at(&chunk, offset)
                .map_err(|e| FsError::Io(format!("staging write: {e}")))?;
            offset += chunk.len() as u64;
        }
        if offset != head.size {
            return Err(FsError::Io(format!(
                "short download while staging: {offset} of {} bytes",
                head.size
            )));
        }
        Ok(offset)
    }

    fn write_handle(&self, fh: u64) -> Option<Arc<WriteHandle>> {
        self.write_handles.lock().unwrap().get(&fh).cloned()
    }

    /// Writes `data` at `offset` of an open file; answers the bytes written.
    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        let h = self.write_handle(fh).ok_or(FsError::BadHandle)?;
        let mut st = h.state.lock().await;
        self.restage_sent(&h, &mut st).await?;
        let end = offset + data.len() as u64;
        if matches!(st.body, Body::Stream { .. }) && !self.stream_accepts(&st, offset) {
            // Rewriting bytes already sent: switch to a staged copy of what
            // was written so far is impossible (the parts are not readable
            // until complete), so refuse clearly.
            return Err(FsError::Invalid(format!(
                "{}: write at {offset} into a part already uploaded; \
                 new files are uploaded as written and accept rewrites only of the last {} bytes",
                h.key(),
                self.cfg.write.part_size
            )));
        }
        match &mut st.body {
            Body::Stream { buf, buf_start, .. } => {
                let at = (offset - *buf_start) as usize;
                if buf.len() < at + data.len() {
                    buf.resize(at + data.len(), 0);
                }
                buf[at..at + data.len()].copy_from_slice(data);
            }
            Body::Sent | Body::Lost => return Err(lost_error(&h.key())),
            Body::Staged { .. } => {
                let new_size = end.max(h.size());
                self.reserve(&mut st, new_size)?;
                let Body::Staged { file, .. } = &st.body else {
                    unreachable!()
                };
                file.write_all_at(data, offset)
                    .map_err(|e| FsError::Io(format!("staging write: {e}")))?;
            }
        }
        st.dirty = true;
        h.size.fetch_max(end, Ordering::AcqRel);
        self.send_full_parts(&h, &mut st).await?;
        Ok(data.len() as u32)
    }

    fn stream_accepts(&self, st: &WriteState, offset: u64) -> bool {
        match &st.body {
            Body::Stream { buf_start, .. } => offset >= *buf_start,
            Body::Staged { .. } | Body::Sent | Body::Lost => true,
        }
    }

    /// Makes a stream that was fully uploaded writable again by staging its
    /// bytes from the store; a lost stream answers EIO. Other bodies are
    /// left alone.
    async fn restage_sent(&self, h: &WriteHandle, st: &mut WriteState) -> Result<(), FsError> {
        match st.body {
            Body::Sent => {}
            Body::Lost => return Err(lost_error(&h.key())),
            Body::Stream { .. } | Body::Staged { .. } => return Ok(()),
        }
        let (file, path) = self.staging_file()?;
        st.body = Body::Staged {
            file,
            path: path.clone(),
        };
        match self.stage_existing(&h.bucket, &h.key(), st, false).await {
            Ok(size) => {
                h.size.store(size, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                self.unreserve(st);
                let _ = std::fs::remove_file(&path);
                st.body = Body::Sent;
                Err(e)
            }
        }
    }

    /// Starts uploads of every full part in a streaming handle's buffer.
    async fn send_full_parts(&self, h: &WriteHandle, st: &mut WriteState) -> Result<(), FsError> {
        loop {
            let Body::Stream {
                buf,
                buf_start,
                upload,
            } = &mut st.body
            else {
                return Ok(());
            };
            let n = upload.as_ref().map_or(1, |u| u.next_part);
            let part = part_size_for(self.cfg.write.part_size, n);
            // Keep one part's worth back until more arrives, so the last
            // part is never empty and small files stay a single PUT.
            if (buf.len() as u64) <= part {
                return Ok(());
            }
            if upload.is_none() {
                let id = self
                    .client
                    .create_multipart_upload(&h.bucket, &h.key(), &st.headers)
                    .await?;
                *upload = Some(Upload {
                    id,
                    next_part: 1,
                    tasks: JoinSet::new(),
                    permits: Arc::new(Semaphore::new(self.cfg.write.max_parallel_parts.max(1))),
                });
            }
            let u = upload.as_mut().expect("upload started");
            if u.next_part > MAX_PARTS {
                return Err(FsError::NoSpace("object exceeds 10,000 parts".into()));
            }
            let body = buf.split_to(part as usize).freeze();
            *buf_start += part;
            let permit = u
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| FsError::Io("upload cancelled".into()))?;
            let client = self.client.clone();
            let (bucket, key, id, number) = (h.bucket.clone(), h.key(), u.id.clone(), u.next_part);
            u.next_part += 1;
            u.tasks.spawn(async move {
                let r = client.upload_part(&bucket, &key, &id, number, body).await;
                drop(permit);
                r
            });
        }
    }

    /// A close of `fh` by process `pid`: uploads a dirty file when `pid`
    /// opened it (or is unknown, 0); a close by another process that
    /// inherited the descriptor leaves the upload to the opener's close or
    /// to the release.
    pub async fn close(&self, fh: u64, pid: u32) -> Result<(), FsError> {
        match self.write_handle(fh) {
            Some(h) if h.opener != 0 && pid != 0 && pid != h.opener => Ok(()),
            _ => self.flush(fh).await,
        }
    }

    /// Uploads a dirty file now (fsync, and a close by its opener). Errors
    /// leave the handle dirty, so a later flush retries.
    pub async fn flush(&self, fh: u64) -> Result<(), FsError> {
        let Some(h) = self.write_handle(fh) else {
            return Ok(()); // a read handle: nothing to do
        };
        let mut st = h.state.lock().await;
        if !st.dirty {
            return Ok(());
        }
        let result = self.upload(&h, &mut st).await;
        match result {
            Ok(etag) => {
                st.dirty = false;
                self.after_upload(&h, etag).await;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(bucket = %h.bucket, key = %h.key(), error = %e, "upload failed");
                Err(FsError::Io(format!("upload of {} failed: {e}", h.key())))
            }
        }
    }

    async fn upload(&self, h: &WriteHandle, st: &mut WriteState) -> Result<String, FsError> {
        let headers = st.headers.clone();
        match &mut st.body {
            Body::Stream { buf, upload, .. } => {
                let Some(mut u) = upload.take() else {
                    let body = buf.split().freeze();
                    let put = self
                        .client
                        .put_object(&h.bucket, &h.key(), &headers, body.clone())
                        .await;
                    return match put {
                        Ok(out) => {
                            // Further writes on this handle restage from the store.
                            st.body = Body::Sent;
                            Ok(out.etag)
                        }
                        Err(e) => {
                            // Keep the bytes, so a later flush or the release retries them.
                            if let Body::Stream { buf, .. } = &mut st.body {
                                *buf = BytesMut::from(&body[..]);
                            }
                            Err(e.into())
                        }
                    };
                };
                let last = buf.split().freeze();
                if !last.is_empty() {
                    let client = self.client.clone();
                    let (bucket, key, id, number) =
                        (h.bucket.clone(), h.key(), u.id.clone(), u.next_part);
                    u.next_part += 1;
                    u.tasks.spawn(async move {
                        client.upload_part(&bucket, &key, &id, number, last).await
                    });
                }
                let r = self.finish_upload(&h.bucket, &h.key(), &mut u).await;
                // Success: further writes restage from the store. Failure:
                // the parts went with the abort, so there is nothing to retry.
                st.body = if r.is_ok() { Body::Sent } else { Body::Lost };
                r
            }
            // Only a dirty handle uploads, and a sent stream is restaged
            // before it can be dirtied again.
            Body::Sent => Err(FsError::Io(format!(
                "{}: internal error: upload of a stream already sent",
                h.key()
            ))),
            Body::Lost => Err(lost_error(&h.key())),
            Body::Staged { file, .. } => {
                let file = file.try_clone().map_err(|e| FsError::Io(e.to_string()))?;
                self.upload_file(&h.bucket, &h.key(), &headers, file, h.size())
                    .await
            }
        }
    }

    /// Waits for every part, then completes; aborts on any failure.
    async fn finish_upload(
        &self,
        bucket: &str,
        key: &str,
        u: &mut Upload,
    ) -> Result<String, FsError> {
        let mut parts = Vec::new();
        let mut failure: Option<FsError> = None;
        while let Some(joined) = u.tasks.join_next().await {
            match joined {
                Ok(Ok(p)) => parts.push(p),
                Ok(Err(e)) => failure = failure.or(Some(e.into())),
                Err(e) => failure = failure.or(Some(FsError::Io(e.to_string()))),
            }
        }
        if failure.is_none() {
            parts.sort_by_key(|p| p.part_number);
            match self
                .client
                .complete_multipart_upload(bucket, key, &u.id, &parts)
                .await
            {
                Ok(out) => return Ok(out.etag),
                Err(e) => failure = Some(e.into()),
            }
        }
        if let Err(e) = self.client.abort_multipart_upload(bucket, key, &u.id).await {
            tracing::warn!(bucket, key, upload_id = %u.id, error = %e, "abort of failed upload failed");
        }
        Err(failure.expect("failure set"))
    }

    /// Uploads a staged file: one PUT up to one part, else a multipart
    /// upload reading parts from the file.
    async fn upload_file(
        &self,
        bucket: &str,
        key: &str,
        headers: &ObjectHeaders,
        file: std::fs::File,
        size: u64,
    ) -> Result<String, FsError> {
        let file = Arc::new(file);
        let base = self.cfg.write.part_size;
        if size <= base {
            let body = read_range(file, 0, size).await?;
            return Ok(self
                .client
                .put_object(bucket, key, headers, body)
                .await?
                .etag);
        }
        let id = self
            .client
            .create_multipart_upload(bucket, key, headers)
            .await?;
        let mut u = Upload {
            id,
            next_part: 1,
            tasks: JoinSet::new(),
            permits: Arc::new(Semaphore::new(self.cfg.write.max_parallel_parts.max(1))),
        };
        let mut offset = 0;
        while offset < size {
            let len = part_size_for(base, u.next_part).min(size - offset);
            let permit = u
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| FsError::Io("upload cancelled".into()))?;
            let (client, file) = (self.client.clone(), file.clone());
            let (b, k, id, number) = (
                bucket.to_string(),
                key.to_string(),
                u.id.clone(),
                u.next_part,
            );
            u.tasks.spawn(async move {
                let body = read_range(file, offset, len)
                    .await
                    .map_err(|e| S3Error::InvalidRequest(e.to_string()))?;
                let r = client.upload_part(&b, &k, &id, number, body).await;
                drop(permit);
                r
            });
            u.next_part += 1;
            offset += len;
        }
        self.finish_upload(bucket, key, &mut u).await
    }

    /// Updates the caches after this mount replaced an object. A server that
    /// answers an upload without an ETag (RGW's CompleteMultipartUpload)
    /// costs one HEAD, so that reads can be pinned to the right version.
    async fn after_upload(&self, h: &WriteHandle, etag: String) {
        let mut stat = Stat {
            size: h.size(),
            mtime: SystemTime::now(),
            etag: Some(etag.clone()),
        };
        if etag.is_empty() || etag == "\"\"" {
            match self.client.head_object(&h.bucket, &h.key()).await {
                Ok(head) => {
                    stat = Stat {
                        size: head.size,
                        mtime: head.last_modified,
                        etag: Some(head.etag),
                    }
                }
                Err(e) => {
                    tracing::warn!(key = %h.key(), error = %e, "HEAD after upload failed");
                    stat.etag = None;
                }
            }
        }
        let now = Instant::now();
        let (parent, name) = {
            let mut nodes = self.nodes.lock().unwrap();
            match nodes.get_mut(h.ino) {
                Some(node) => {
                    // Without an ETag the next open must ask the store.
                    node.validated = match stat.etag {
                        Some(_) => now,
                        None => self.expired_instant(),
                    };
                    node.stat = stat;
                    (node.parent, node.name.clone())
                }
                None => return,
            }
        };
        self.forget_name(parent, &name);
        self.heads.lock().unwrap().pop(&h.ino);
        tracing::debug!(bucket = %h.bucket, key = %h.key(), size = h.size(), "uploaded");
    }

    /// Closes a write handle: uploads what is still dirty, frees staging.
    /// Errors here cannot reach the caller (close already returned), so
    /// they are logged and the staged copy is moved aside.
    pub(super) async fn release_writer(&self, fh: u64) {
        let _running = self.releases.read().await;
        let Some(h) = self.write_handles.lock().unwrap().remove(&fh) else {
            return;
        };
        let mut st = h.state.lock().await;
        if st.dirty {
            match self.upload(&h, &mut st).await {
                Ok(etag) => {
                    st.dirty = false;
                    self.after_upload(&h, etag).await;
                }
                Err(e) => {
                    tracing::error!(bucket = %h.bucket, key = %h.key(), error = %e, "upload at close failed");
                }
            }
        }
        if let Body::Staged { path, .. } = &st.body {
            if st.dirty {
                let kept = path.with_extension("failed");
                let _ = std::fs::rename(path, &kept);
                tracing::error!(key = %h.key(), kept = %kept.display(), "kept the unsent copy");
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
        if let Body::Stream {
            upload: Some(u), ..
        } = &st.body
        {
            let _ = self
                .client
                .abort_multipart_upload(&h.bucket, &h.key(), &u.id)
                .await;
        }
        self.unreserve(&mut st);
        self.nodes.lock().unwrap().unpin(h.ino);
    }

    /// Waits until every release in progress has finished its upload (or
    /// its abort). The kernel does not wait for releases, so without this
    /// an unmount right after a close could end the process mid-upload and
    /// leave a multipart upload behind.
    pub async fn finish_releases(&self) {
        let _all = self.releases.write().await;
    }

    /// Reads from a handle open for writing (O_RDWR): from the staged copy.
    pub(super) async fn read_writer(
        &self,
        h: &WriteHandle,
        offset: u64,
        size: u32,
    ) -> Result<Bytes, FsError> {
        let st = h.state.lock().await;
        let end = (offset + u64::from(size)).min(h.size());
        if offset >= end {
            return Ok(Bytes::new());
        }
        match &st.body {
            Body::Staged { file, .. } => {
                let mut buf = vec![0; (end - offset) as usize];
                file.read_exact_at(&mut buf, offset)
                    .map_err(|e| FsError::Io(format!("staging read: {e}")))?;
                Ok(buf.into())
            }
            Body::Stream { buf, buf_start, .. } if offset >= *buf_start => {
                let from = (offset - buf_start) as usize;
                let to = ((end - buf_start) as usize).min(buf.len());
                Ok(Bytes::copy_from_slice(&buf[from.min(to)..to]))
            }
            Body::Stream { .. } | Body::Sent | Body::Lost => Err(FsError::Invalid(
                "read of bytes already uploaded from a write-only stream".into(),
            )),
        }
    }

    /// Sets the size of `ino` (truncate or extend with zeros). Mode, owner
    /// and times are accepted and not stored (see doc/SEMANTICS.md).
    pub async fn set_size(&self, ino: Ino, size: u64) -> Result<Entry, FsError> {
        self.check_writable()?;
        let node = self.node(ino)?;
        if node.location.is_dir() {
            return Err(FsError::IsDir);
        }
        let (h, temporary) = match self.writer_for(ino) {
            Some(h) => (h, None),
            None => {
                let opened = self.open_write(ino, size == 0, 0).await?;
                (
                    self.write_handle(opened.fh).ok_or(FsError::BadHandle)?,
                    Some(opened.fh),
                )
            }
        };
        let result = async {
            let mut st = h.state.lock().await;
            self.restage_sent(&h, &mut st).await?;
            if matches!(st.body, Body::Stream { .. }) {
                if size < h.size() {
                    return Err(FsError::Invalid(format!(
                        "{}: cannot shrink a file that is being streamed",
                        h.key()
                    )));
                }
                // Extending a stream: zeros at the end.
                if let Body::Stream { buf, buf_start, .. } = &mut st.body {
                    buf.resize((size - *buf_start) as usize, 0);
                }
            } else {
                self.reserve(&mut st, size)?;
                if let Body::Staged { file, .. } = &st.body {
                    file.set_len(size)
                        .map_err(|e| FsError::Io(format!("staging truncate: {e}")))?;
                }
            }
            h.size.store(size, Ordering::Release);
            st.dirty = true;
            Ok(())
        }
        .await;
        if let Some(fh) = temporary {
            let flushed = match result {
                Ok(()) => self.flush(fh).await,
                Err(e) => Err(e),
            };
            self.release_writer(fh).await;
            flushed?;
        } else {
            result?;
        }
        self.getattr(ino).await
    }

    /// The inode and location of `name` in `parent`, without keeping the
    /// kernel reference a lookup takes.
    async fn resolve(&self, parent: Ino, name: &OsStr) -> Result<(Ino, Location), FsError> {
        let ino = self.lookup(parent, name).await?.attr.ino;
        let location = self.location(ino);
        self.forget(ino, 1);
        Ok((ino, location?))
    }

    /// Deletes file `name` in `parent`.
    pub async fn unlink(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        self.check_writable()?;
        let (ino, location) = self.resolve(parent, name).await?;
        let Location::File { bucket, key } = location else {
            return Err(FsError::IsDir);
        };
        self.client.delete_object(&bucket, &key).await?;
        let name = name.to_string_lossy();
        self.forget_name(parent, &name);
        self.heads.lock().unwrap().pop(&ino);
        self.negative
            .lock()
            .unwrap()
            .put((parent, name.to_string()), Instant::now());
        Ok(())
    }

    /// Creates directory `name` in `parent` as a `name/` marker object, so
    /// that it persists while empty.
    pub async fn mkdir(&self, parent: Ino, name: &OsStr) -> Result<Entry, FsError> {
        self.check_writable()?;
        let name_str = new_name(name)?;
        if self.lookup(parent, name).await.is_ok() {
            return Err(FsError::Exists);
        }
        let dir = self.node(parent)?;
        let Some(Location::Dir { bucket, prefix }) = dir.location.child(name_str, true) else {
            return Err(FsError::NotPermitted(
                "buckets cannot be created through the mount".into(),
            ));
        };
        self.client
            .put_object(&bucket, &prefix, &ObjectHeaders::default(), Bytes::new())
            .await?;
        self.forget_name(parent, name_str);
        self.lookup(parent, name).await
    }

    /// Removes directory `name` in `parent` if it is empty.
    pub async fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        self.check_writable()?;
        let (ino, location) = self.resolve(parent, name).await?;
        let Location::Dir { bucket, prefix } = location else {
            return Err(FsError::NotDir);
        };
        if prefix.is_empty() {
            return Err(FsError::NotPermitted(
                "buckets cannot be removed through the mount".into(),
            ));
        }
        let page = self
            .client
            .list_objects(&ListRequest {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                delimiter: Some("/".into()),
                continuation_token: None,
                max_keys: Some(2),
            })
            .await?;
        let others =
            page.objects.iter().any(|o| o.key != prefix) || !page.common_prefixes.is_empty();
        if others {
            return Err(FsError::NotEmpty);
        }
        self.client.delete_object(&bucket, &prefix).await?;
        self.forget_name(parent, &name.to_string_lossy());
        self.listings.lock().unwrap().pop(&ino);
        Ok(())
    }

    /// Renames `name` in `parent` to `newname` in `newparent`: a copy that
    /// keeps every header, then a delete of the source.
    pub async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        no_replace: bool,
    ) -> Result<(), FsError> {
        self.check_writable()?;
        let newname_str = new_name(newname)?;
        let (src_ino, src_loc) = self.resolve(parent, name).await?;
        let existing = self.lookup(newparent, newname).await.ok();
        if let Some(e) = &existing {
            self.forget(e.attr.ino, 1);
            if no_replace {
                return Err(FsError::Exists);
            }
        }
        let dst_dir = self.node(newparent)?;
        let moved_to = dst_dir
            .location
            .child(newname_str, src_loc.is_dir())
            .ok_or(FsError::NotDir)?;
        if let Some(w) = self.writer_for(src_ino) {
            let mut st = w.state.lock().await;
            if st.dirty {
                let etag = self.upload(&w, &mut st).await?;
                st.dirty = false;
                self.after_upload(&w, etag).await;
            }
        }
        match &src_loc {
            Location::File { bucket, key } => {
                let Some(Location::File {
                    bucket: dbucket,
                    key: dkey,
                }) = dst_dir.location.child(newname_str, false)
                else {
                    return Err(FsError::NotDir);
                };
                if let Some(e) = &existing
                    && e.attr.kind == super::Kind::Dir
                {
                    return Err(FsError::IsDir);
                }
                self.copy_object_keeping_headers(bucket, key, &dbucket, &dkey)
                    .await?;
                self.client.delete_object(bucket, key).await?;
            }
            Location::Dir { bucket, prefix } => {
                let Some(Location::Dir {
                    bucket: dbucket,
                    prefix: dprefix,
                }) = dst_dir.location.child(newname_str, true)
                else {
                    return Err(FsError::NotDir);
                };
                if prefix.is_empty() || dbucket != *bucket {
                    return Err(FsError::CrossDevice("buckets cannot be renamed".into()));
                }
                if let Some(e) = &existing {
                    if e.attr.kind != super::Kind::Dir {
                        return Err(FsError::NotDir);
                    }
                    self.rmdir(newparent, newname).await?;
                }
                self.rename_prefix(bucket, prefix, &dprefix).await?;
            }
            Location::Buckets => return Err(FsError::NotPermitted("the root".into())),
        }
        self.move_writers(&src_loc, &moved_to);
        // The kernel goes on using the source's inode under the new name.
        {
            let mut nodes = self.nodes.lock().unwrap();
            nodes.relocate(src_ino, newparent, newname_str, moved_to);
            // The copy may carry another ETag (a multipart source becomes
            // single-part): the next open asks the store.
            if let Some(node) = nodes.get_mut(src_ino) {
                node.validated = self.expired_instant();
            }
        }
        self.heads.lock().unwrap().pop(&src_ino);
        self.listings.lock().unwrap().pop(&src_ino);
        self.forget_name(parent, &name.to_string_lossy());
        self.forget_name(newparent, newname_str);
        self.negative
            .lock()
            .unwrap()
            .put((parent, name.to_string_lossy().to_string()), Instant::now());
        Ok(())
    }

    /// Points files still open for writing at their new keys after a rename
    /// of `from` to `to`, so that later writes and the final upload (and a
    /// re-staging from the store) use the new name.
    fn move_writers(&self, from: &Location, to: &Location) {
        let writers: Vec<Arc<WriteHandle>> = self
            .write_handles
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        for w in writers {
            let mut key = w.key.lock().unwrap();
            match (from, to) {
                (Location::File { bucket, key: old }, Location::File { key: new, .. })
                    if w.bucket == *bucket && *key == *old =>
                {
                    *key = new.clone();
                }
                (
                    Location::Dir {
                        bucket,
                        prefix: old,
                    },
                    Location::Dir { prefix: new, .. },
                ) if w.bucket == *bucket && !old.is_empty() && key.starts_with(old.as_str()) => {
                    *key = format!("{new}{}", &key[old.len()..]);
                }
                _ => {}
            }
        }
    }

    /// Copies an object to another key with all its headers, through a
    /// multipart copy above the single-copy limit.
    async fn copy_object_keeping_headers(
        &self,
        bucket: &str,
        key: &str,
        dbucket: &str,
        dkey: &str,
    ) -> Result<(), FsError> {
        let head = self.client.head_object(bucket, key).await?;
        copy_with_headers(
            self.client.as_ref(),
            (bucket, key),
            (dbucket, dkey),
            &head,
            &head.headers,
            self.cfg.multipart_copy_threshold,
            self.cfg.write.part_size.max(64 << 20),
        )
        .await?;
        Ok(())
    }

    /// Moves every object under `prefix` to `dprefix`: all copies first,
    /// then the deletes, so a failure part-way loses nothing.
    async fn rename_prefix(
        &self,
        bucket: &str,
        prefix: &str,
        dprefix: &str,
    ) -> Result<(), FsError> {
        let mut keys = Vec::new();
        let mut req = ListRequest {
            bucket: bucket.into(),
            prefix: prefix.into(),
            delimiter: None,
            continuation_token: None,
            max_keys: None,
        };
        loop {
            let page = self.client.list_objects(&req).await?;
            keys.extend(page.objects.into_iter().map(|o| o.key));
            if keys.len() > self.cfg.write.max_rename_objects {
                return Err(FsError::CrossDevice(format!(
                    "directory rename is limited to {} objects (mv falls back to copying)",
                    self.cfg.write.max_rename_objects
                )));
            }
            match page.next_continuation_token {
                Some(t) => req.continuation_token = Some(t),
                None => break,
            }
        }
        if keys.is_empty() {
            // Only a common prefix we saw through a listing: nothing to move.
            return Ok(());
        }
        for key in &keys {
            let dkey = format!("{dprefix}{}", &key[prefix.len()..]);
            self.copy_object_keeping_headers(bucket, key, bucket, &dkey)
                .await?;
        }
        for key in &keys {
            self.client.delete_object(bucket, key).await?;
        }
        Ok(())
    }

    /// Applies a header change to a file still open for writing: it rides
    /// along with the upload, no copy needed. Returns false when there is no
    /// such upload pending.
    pub(super) async fn set_pending_header(
        &self,
        ino: Ino,
        apply: impl FnOnce(&mut ObjectHeaders) -> Result<(), FsError>,
    ) -> Result<bool, FsError> {
        let Some(h) = self.writer_for(ino) else {
            return Ok(false);
        };
        let mut st = h.state.lock().await;
        let streaming_started = matches!(
            st.body,
            Body::Stream {
                upload: Some(_),
                ..
            }
        );
        if streaming_started {
            // The headers went out with CreateMultipartUpload, and the object
            // to copy does not exist until the upload completes.
            return Err(FsError::Busy(format!(
                "{}: headers are fixed once a streamed upload has started; set them after close",
                h.key()
            )));
        }
        if !st.dirty {
            return Ok(false);
        }
        apply(&mut st.headers)?;
        Ok(true)
    }
}

/// Checks a name this mount is asked to create: UTF-8 (S3 keys are), and a
/// valid file name (see [`valid_name`]).
fn new_name(name: &OsStr) -> Result<&str, FsError> {
    let name = name
        .to_str()
        .ok_or_else(|| FsError::Invalid(format!("{name:?}: object keys must be UTF-8")))?;
    if !valid_name(name) {
        return Err(FsError::Invalid(format!("{name:?} cannot be a name")));
    }
    Ok(name)
}

/// Reads `len` bytes at `offset` of a staged file, off the async threads.
async fn read_range(file: Arc<std::fs::File>, offset: u64, len: u64) -> Result<Bytes, FsError> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; len as usize];
        file.read_exact_at(&mut buf, offset)
            .map(|_| Bytes::from(buf))
    })
    .await
    .map_err(|e| FsError::Io(e.to_string()))?
    .map_err(|e| FsError::Io(format!("staging read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_reach_five_tib_within_ten_thousand_parts() {
        let base = 8 << 20;
        let total: u64 = (1..=MAX_PARTS).map(|n| part_size_for(base, n)).sum();
        assert!(total >= 5 << 40, "{total}");
        assert_eq!(part_size_for(base, 1), base);
        assert_eq!(part_size_for(base, 1000), base);
        assert_eq!(part_size_for(base, 1001), base * 2);
    }
}
