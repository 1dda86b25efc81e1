//! The filesystem layer against the in-memory fake: no FUSE, no network.
//! Request counts are asserted exactly, since they are what makes the mount
//! fast.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use s3linkfs::config::Profile;
use s3linkfs::fs::data::DataCacheConfig;
use s3linkfs::fs::inode::ROOT_INO;
use s3linkfs::fs::write::WriteConfig;
use s3linkfs::fs::{Fs, FsConfig, FsError, Kind, MountSource};
use s3linkfs::s3::fake::{FakeClient, Fault, Op};
use s3linkfs::s3::{ObjectHeaders, S3ErrorCode};
use s3linkfs::sign::{Addressing, Credentials, Endpoint, Scheme, SignatureVersion};

fn profile() -> Profile {
    Profile {
        name: "test".into(),
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
        signature: SignatureVersion::V4,
        presign_endpoint: None,
        presign_expires: Duration::from_secs(7 * 24 * 3600),
        mount: Default::default(),
    }
}

fn config() -> FsConfig {
    FsConfig {
        uid: 1000,
        gid: 1000,
        file_mode: 0o644,
        dir_mode: 0o755,
        metadata_ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(60),
        cache: DataCacheConfig {
            block_size: 64 * 1024,
            capacity: 64 * 1024 * 1024,
            part_size: 256 * 1024,
            max_parallel: 4,
            disk: None,
        },
        read_only: false,
        allow_misleading_names: false,
        multipart_copy_threshold: 5 << 30,
        profile: profile(),
        write: WriteConfig {
            staging_dir: std::env::temp_dir().join(format!("s3linkfs-test-{}", std::process::id())),
            staging_capacity: 64 << 20,
            part_size: 5 << 20,
            max_parallel_parts: 4,
            content_disposition_attachment: false,
            max_rename_objects: 100,
        },
    }
}

fn mount(fake: &FakeClient, cfg: FsConfig) -> Arc<Fs> {
    let source = MountSource::Bucket {
        bucket: "b".into(),
        prefix: String::new(),
    };
    Arc::new(Fs::new(Arc::new(fake.clone()), &source, cfg))
}

/// Lists a directory the way `ls -l` does with READDIRPLUS: opendir, then
/// readdir until the end, returning (name, kind, size).
fn ls(fs: &Fs, fh: u64) -> Vec<(String, Kind, u64)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let mut batch = Vec::new();
        fs.readdir(fh, offset, true, |e| {
            if batch.len() == 100 {
                return true;
            }
            batch.push(e);
            false
        })
        .unwrap();
        if batch.is_empty() {
            break;
        }
        offset = batch.last().unwrap().next_offset;
        out.extend(
            batch
                .into_iter()
                .map(|e| (e.name, e.attr.kind, e.attr.size)),
        );
    }
    out
}

/// Opens `ino`, reads it to the end in `chunk`-byte reads, closes it;
/// returns the bytes and whether the kernel could keep its page cache.
async fn read_to_end(fs: &Fs, ino: u64, chunk: u32) -> (Vec<u8>, bool) {
    let o = fs.open(ino, false, false, 0).await.unwrap();
    let mut out = Vec::new();
    loop {
        let bytes = fs.read(o.fh, out.len() as u64, chunk).await.unwrap();
        if bytes.is_empty() {
            break;
        }
        out.extend_from_slice(&bytes);
    }
    fs.release(o.fh).await;
    (out, o.keep_cache)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn ls_l_of_1000_entries_is_one_list_and_no_head() {
    let fake = FakeClient::with_buckets(&["b"]);
    for i in 0..1000 {
        fake.put("b", &format!("dir/f{i:04}"), vec![b'x'; i % 7]);
    }
    let fs = mount(&fake, config());
    let dir = fs.lookup(ROOT_INO, OsStr::new("dir")).await.unwrap();
    assert_eq!(dir.attr.kind, Kind::Dir);
    fake.reset_counts();

    let fh = fs.opendir(dir.attr.ino).await.unwrap();
    let entries = ls(&fs, fh);
    fs.releasedir(fh);
    assert_eq!(entries.len(), 1002, "1000 files plus . and ..");
    assert_eq!(entries[2], ("f0000".to_string(), Kind::File, 0));
    assert_eq!(entries[3], ("f0001".to_string(), Kind::File, 1));
    // What `ls -l` does next: stat every entry.
    for (name, _, _) in &entries[2..] {
        let e = fs.lookup(dir.attr.ino, OsStr::new(name)).await.unwrap();
        fs.getattr(e.attr.ino).await.unwrap();
    }
    assert_eq!(fake.count(Op::ListObjects), 1);
    assert_eq!(fake.count(Op::HeadObject), 0);
    assert_eq!(fake.total_requests(), 1);
}

#[tokio::test]
async fn re_read_of_cached_file_makes_no_get() {
    let fake = FakeClient::with_buckets(&["b"]);
    let data = pattern(1024 * 1024 + 1);
    fake.put("b", "f", data.clone());
    let fs = mount(&fake, config());
    let e = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    assert_eq!(e.attr.size, data.len() as u64);

    let (first, keep1) = read_to_end(&fs, e.attr.ino, 128 * 1024).await;
    assert_eq!(first, data);
    assert!(!keep1, "first open has no page cache to keep");
    let gets = fake.count(Op::GetObject);
    assert!(gets >= 1);

    let (second, keep2) = read_to_end(&fs, e.attr.ino, 128 * 1024).await;
    assert_eq!(second, data);
    assert!(keep2, "unchanged ETag keeps the kernel page cache");
    assert_eq!(fake.count(Op::GetObject), gets, "re-read made a GET");
}

#[tokio::test]
async fn reads_at_random_offsets_match_byte_for_byte() {
    let fake = FakeClient::with_buckets(&["b"]);
    let data = pattern(3 * 1024 * 1024 + 17);
    fake.put("b", "r", data.clone());
    let fs = mount(&fake, config());
    let e = fs.lookup(ROOT_INO, OsStr::new("r")).await.unwrap();
    let o = fs.open(e.attr.ino, false, false, 0).await.unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..200 {
        let off = rng.u64(0..data.len() as u64 + 10);
        let len = rng.u32(1..200_000);
        let got = fs.read(o.fh, off, len).await.unwrap();
        let start = (off as usize).min(data.len());
        let end = (start + len as usize).min(data.len());
        assert_eq!(&got[..], &data[start..end], "offset {off} len {len}");
    }
}

#[tokio::test]
async fn sizes_at_block_edges_read_back_exactly() {
    let fake = FakeClient::with_buckets(&["b"]);
    let bs = config().cache.block_size as usize;
    let sizes = [0, 1, bs - 1, bs, bs + 1, 5 * bs + 3];
    for s in sizes {
        fake.put("b", &format!("s{s}"), pattern(s));
    }
    let fs = mount(&fake, config());
    for s in sizes {
        let e = fs
            .lookup(ROOT_INO, OsStr::new(&format!("s{s}")))
            .await
            .unwrap();
        assert_eq!(e.attr.size, s as u64);
        let o = fs.open(e.attr.ino, false, false, 0).await.unwrap();
        let got = fs.read(o.fh, 0, (s + 100) as u32).await.unwrap();
        assert_eq!(&got[..], &pattern(s)[..], "size {s}");
        fs.release(o.fh).await;
    }
}

#[tokio::test]
async fn remote_change_shows_after_ttl_and_deletion_is_enoent() {
    let fake = FakeClient::with_buckets(&["b"]);
    fake.put("b", "f", b"one".to_vec());
    let mut cfg = config();
    cfg.metadata_ttl = Duration::from_millis(50);
    cfg.negative_ttl = Duration::from_millis(50);
    let fs = mount(&fake, cfg);
    let e = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    let o = fs.open(e.attr.ino, false, false, 0).await.unwrap();
    assert_eq!(&fs.read(o.fh, 0, 100).await.unwrap()[..], b"one");
    fs.release(o.fh).await;

    fake.put("b", "f", b"second".to_vec());
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(fs.getattr(e.attr.ino).await.unwrap().attr.size, 6);
    let o = fs.open(e.attr.ino, false, false, 0).await.unwrap();
    assert!(!o.keep_cache, "a new ETag must drop the page cache");
    assert_eq!(&fs.read(o.fh, 0, 100).await.unwrap()[..], b"second");
    fs.release(o.fh).await;

    fake.remove("b", "f");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(matches!(
        fs.getattr(e.attr.ino).await,
        Err(FsError::NotFound)
    ));
    assert!(matches!(
        fs.lookup(ROOT_INO, OsStr::new("f")).await,
        Err(FsError::NotFound)
    ));
}

#[tokio::test]
async fn negative_lookups_are_cached() {
    let fake = FakeClient::with_buckets(&["b"]);
    let fs = mount(&fake, config());
    for _ in 0..5 {
        assert!(matches!(
            fs.lookup(ROOT_INO, OsStr::new("missing")).await,
            Err(FsError::NotFound)
        ));
    }
    assert_eq!(fake.count(Op::HeadObject), 1);
    assert_eq!(fake.count(Op::ListObjects), 1);
}

#[tokio::test]
async fn directory_wins_over_file_of_same_name() {
    let fake = FakeClient::with_buckets(&["b"]);
    fake.put("b", "x", b"file".to_vec());
    fake.put("b", "x/inner", b"in".to_vec());
    fake.put("b", "empty/", Vec::new());
    let fs = mount(&fake, config());
    let fh = fs.opendir(ROOT_INO).await.unwrap();
    let names = ls(&fs, fh);
    assert_eq!(
        names[2..],
        [
            ("empty".to_string(), Kind::Dir, 0),
            ("x".to_string(), Kind::Dir, 0)
        ]
    );
    let x = fs.lookup(ROOT_INO, OsStr::new("x")).await.unwrap();
    assert_eq!(x.attr.kind, Kind::Dir);
}

#[tokio::test]
async fn keys_that_cannot_be_names_are_skipped_not_fatal() {
    let fake = FakeClient::with_buckets(&["b"]);
    for key in ["ok", "a//b", "./x", "../y", "d/./z"] {
        fake.put("b", key, b"v".to_vec());
    }
    fake.put("b", &"l".repeat(300), b"v".to_vec());
    let fs = mount(&fake, config());
    let fh = fs.opendir(ROOT_INO).await.unwrap();
    let names: Vec<String> = ls(&fs, fh).into_iter().map(|e| e.0).collect();
    assert_eq!(names, [".", "..", "a", "d", "ok"]);
    // a//b: "a" is a directory whose only entry has an empty name.
    let a = fs.lookup(ROOT_INO, OsStr::new("a")).await.unwrap();
    let fh = fs.opendir(a.attr.ino).await.unwrap();
    assert_eq!(ls(&fs, fh).len(), 2);
}

#[tokio::test]
async fn inodes_are_stable_and_forgotten() {
    let fake = FakeClient::with_buckets(&["b"]);
    for i in 0..500 {
        fake.put("b", &format!("k{i}"), b"v".to_vec());
    }
    let fs = mount(&fake, config());
    let first = fs
        .lookup(ROOT_INO, OsStr::new("k1"))
        .await
        .unwrap()
        .attr
        .ino;
    fs.forget(first, 1);
    let fh = fs.opendir(ROOT_INO).await.unwrap();
    let mut seen = Vec::new();
    fs.readdir(fh, 0, true, |e| {
        seen.push(e.ino);
        false
    })
    .unwrap();
    fs.releasedir(fh);
    assert_eq!(fs.inode_count(), 501);
    for ino in &seen[2..] {
        fs.forget(*ino, 1);
    }
    assert_eq!(fs.inode_count(), 1, "forgotten inodes are freed");
    let again = fs
        .lookup(ROOT_INO, OsStr::new("k1"))
        .await
        .unwrap()
        .attr
        .ino;
    assert_eq!(first, again, "the same key keeps its inode number");
}

#[tokio::test]
async fn all_buckets_mount_shows_buckets_as_directories() {
    let fake = FakeClient::with_buckets(&["alpha", "beta"]);
    fake.put("beta", "k", b"v".to_vec());
    let fs = Arc::new(Fs::new(
        Arc::new(fake.clone()),
        &MountSource::AllBuckets,
        config(),
    ));
    let fh = fs.opendir(ROOT_INO).await.unwrap();
    let names: Vec<String> = ls(&fs, fh).into_iter().map(|e| e.0).collect();
    assert_eq!(names, [".", "..", "alpha", "beta"]);
    let beta = fs.lookup(ROOT_INO, OsStr::new("beta")).await.unwrap();
    let k = fs.lookup(beta.attr.ino, OsStr::new("k")).await.unwrap();
    assert_eq!(k.attr.size, 1);
}

#[tokio::test]
async fn prefix_mount_shows_only_the_prefix() {
    let fake = FakeClient::with_buckets(&["b"]);
    fake.put("b", "p/in", b"v".to_vec());
    fake.put("b", "out", b"v".to_vec());
    let source = MountSource::Bucket {
        bucket: "b".into(),
        prefix: "p/".into(),
    };
    let fs = Fs::new(Arc::new(fake.clone()), &source, config());
    let fh = fs.opendir(ROOT_INO).await.unwrap();
    let names: Vec<String> = ls(&fs, fh).into_iter().map(|e| e.0).collect();
    assert_eq!(names, [".", "..", "in"]);
}

#[tokio::test]
async fn errors_map_by_kind_and_one_failure_does_not_block_others() {
    let fake = FakeClient::with_buckets(&["b"]);
    fake.put("b", "slow", b"v".to_vec());
    fake.put("b", "fast", b"v".to_vec());
    let fs = mount(&fake, config());
    fake.inject(Op::HeadObject, Fault::hang());
    let slow_fs = fs.clone();
    let slow = tokio::spawn(async move { slow_fs.lookup(ROOT_INO, OsStr::new("slow")).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The directory listing is independent of the hung HEAD.
    let fh = tokio::time::timeout(Duration::from_secs(2), fs.opendir(ROOT_INO))
        .await
        .expect("opendir blocked behind a hung request")
        .unwrap();
    assert_eq!(ls(&fs, fh).len(), 4);
    slow.abort();

    fake.clear_faults();
    fake.inject(
        Op::HeadObject,
        Fault::service(403, S3ErrorCode::AccessDenied),
    );
    let fs2 = mount(&fake, config());
    match fs2.lookup(ROOT_INO, OsStr::new("fast")).await {
        Err(FsError::S3(e)) => assert_eq!(e.code(), Some(&S3ErrorCode::AccessDenied)),
        other => panic!("expected AccessDenied, got {other:?}"),
    }
}

#[tokio::test]
async fn object_replaced_while_open_is_stale_not_mixed() {
    let fake = FakeClient::with_buckets(&["b"]);
    fake.put("b", "f", pattern(1024 * 1024));
    let fs = mount(&fake, config());
    let e = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    let o = fs.open(e.attr.ino, false, false, 0).await.unwrap();
    let head = fs.read(o.fh, 0, 1000).await.unwrap();
    assert_eq!(&head[..], &pattern(1000)[..]);
    fake.put("b", "f", vec![b'z'; 1024 * 1024]);
    // Later blocks come from a different version: the read must fail rather
    // than splice two versions together.
    match fs.read(o.fh, 900 * 1024, 1000).await {
        Err(FsError::Stale(_)) => {}
        Ok(bytes) => assert_eq!(
            &bytes[..],
            &pattern(1024 * 1024)[900 * 1024..900 * 1024 + 1000]
        ),
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn presign_makes_no_request_and_keeps_its_length() {
    let fake = FakeClient::with_buckets(&["b"]);
    fake.put("b", "file name+1.pdf", b"v".to_vec());
    let fs = mount(&fake, config());
    let e = fs
        .lookup(ROOT_INO, OsStr::new("file name+1.pdf"))
        .await
        .unwrap();
    fake.reset_counts();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let a = fs
        .getxattr(e.attr.ino, OsStr::new("user.s3.presign"), t0)
        .await
        .unwrap();
    let b = fs
        .getxattr(
            e.attr.ino,
            OsStr::new("user.s3.presign"),
            t0 + Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(a.len(), b.len());
    let url = String::from_utf8(a).unwrap();
    assert!(url.starts_with("http://127.0.0.1:7480/b/file%20name%2B1.pdf?"));
    assert!(url.contains("X-Amz-Expires=604800"));
    let short = fs
        .getxattr(e.attr.ino, OsStr::new("user.s3.presign.1h"), t0)
        .await
        .unwrap();
    assert!(
        String::from_utf8(short)
            .unwrap()
            .contains("X-Amz-Expires=3600")
    );
    let dl = fs
        .getxattr(e.attr.ino, OsStr::new("user.s3.presign_download"), t0)
        .await
        .unwrap();
    assert!(
        String::from_utf8(dl)
            .unwrap()
            .contains("response-content-disposition=attachment")
    );
    for bad in [
        "user.s3.presign.0s",
        "user.s3.presign.8d",
        "user.s3.presign.x",
    ] {
        assert!(
            matches!(
                fs.getxattr(e.attr.ino, OsStr::new(bad), t0).await,
                Err(FsError::Invalid(_))
            ),
            "{bad}"
        );
    }
    for other in [
        "security.capability",
        "system.posix_acl_access",
        "user.other",
    ] {
        assert!(matches!(
            fs.getxattr(e.attr.ino, OsStr::new(other), t0).await,
            Err(FsError::NoData)
        ));
    }
    assert_eq!(fake.total_requests(), 0);
    // Directories answer ENODATA for link names.
    assert!(matches!(
        fs.getxattr(ROOT_INO, OsStr::new("user.s3.presign"), t0)
            .await,
        Err(FsError::NoData)
    ));
}

#[tokio::test]
async fn setfattr_is_one_head_and_one_copy_and_keeps_everything_else() {
    let fake = FakeClient::with_buckets(&["b"]);
    let mut headers = ObjectHeaders {
        content_type: Some("application/pdf".into()),
        cache_control: Some("max-age=60".into()),
        ..ObjectHeaders::default()
    };
    headers.metadata.insert("owner".into(), "alice".into());
    fake.put_with_headers("b", "foo.pdf", b"%PDF".to_vec(), headers);
    let fs = mount(&fake, config());
    // As in a shell: the directory was listed before the file was named.
    let fh = fs.opendir(ROOT_INO).await.unwrap();
    ls(&fs, fh);
    let e = fs.lookup(ROOT_INO, OsStr::new("foo.pdf")).await.unwrap();
    fake.reset_counts();
    fs.setxattr(
        e.attr.ino,
        OsStr::new("user.s3.content_disposition"),
        br#"attachment; filename="bar.pdf""#,
        0,
    )
    .await
    .unwrap();
    assert_eq!(fake.count(Op::HeadObject), 1);
    assert_eq!(fake.count(Op::CopyObject), 1);
    assert_eq!(fake.total_requests(), 2);
    let obj = fake.object("b", "foo.pdf").unwrap();
    assert_eq!(
        obj.headers.content_disposition.as_deref(),
        Some(r#"attachment; filename="bar.pdf""#)
    );
    assert_eq!(obj.headers.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(obj.headers.cache_control.as_deref(), Some("max-age=60"));
    assert_eq!(
        obj.headers.metadata.get("owner").map(String::as_str),
        Some("alice")
    );
    assert_eq!(&obj.body[..], b"%PDF");
    // The listing stays cached (updated, not dropped): the next change is
    // two requests as well.
    fake.reset_counts();
    fs.setxattr(
        e.attr.ino,
        OsStr::new("user.s3.content_disposition"),
        br#"attachment; filename="baz.pdf""#,
        0,
    )
    .await
    .unwrap();
    assert_eq!(fake.total_requests(), 2);
}

// ----- writes -----

async fn write_all(fs: &Fs, fh: u64, data: &[u8], chunk: usize) {
    let mut off = 0;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        let n = fs.write(fh, off as u64, &data[off..end]).await.unwrap();
        assert_eq!(n as usize, end - off);
        off = end;
    }
}

#[tokio::test]
async fn new_small_file_is_one_put_with_content_type() {
    let fake = FakeClient::with_buckets(&["b"]);
    let fs = mount(&fake, config());
    let (e, o) = fs
        .create(ROOT_INO, OsStr::new("report.pdf"), false, 0)
        .await
        .unwrap();
    write_all(&fs, o.fh, b"%PDF-1.7", 3).await;
    assert!(
        fake.object("b", "report.pdf").is_none(),
        "nothing visible before close"
    );
    fs.flush(o.fh).await.unwrap();
    fs.release(o.fh).await;
    let obj = fake.object("b", "report.pdf").unwrap();
    assert_eq!(&obj.body[..], b"%PDF-1.7");
    assert_eq!(obj.headers.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(fake.count(Op::PutObject), 1);
    assert_eq!(fs.getattr(e.attr.ino).await.unwrap().attr.size, 8);
}

#[tokio::test]
async fn large_new_file_streams_as_multipart_with_bounded_parts() {
    let fake = FakeClient::with_buckets(&["b"]);
    let fs = mount(&fake, config());
    let data = pattern(12 * 1024 * 1024 + 3);
    let (_, o) = fs
        .create(ROOT_INO, OsStr::new("big.bin"), false, 0)
        .await
        .unwrap();
    write_all(&fs, o.fh, &data, 128 * 1024).await;
    // Parts went out while writing: an upload exists before close.
    assert_eq!(fake.count(Op::CreateMultipartUpload), 1);
    fs.flush(o.fh).await.unwrap();
    assert_eq!(fake.count(Op::UploadPart), 3);
    fs.release(o.fh).await;
    let obj = fake.object("b", "big.bin").unwrap();
    assert_eq!(obj.body.len(), data.len());
    assert!(obj.body[..] == data[..]);
    assert_eq!(fake.count(Op::CompleteMultipartUpload), 1);
    assert!(fake.pending_uploads("b").is_empty());
}

#[tokio::test]
async fn failed_multipart_upload_is_eio_and_aborted_and_old_object_intact() {
    let fake = FakeClient::with_buckets(&["b"]);
    fake.put("b", "f", b"old".to_vec());
    let fs = mount(&fake, config());
    let data = pattern(11 * 1024 * 1024);
    fake.inject(
        Op::CompleteMultipartUpload,
        Fault::service(500, S3ErrorCode::InternalError).times(100),
    );
    let e = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    let o = fs.open(e.attr.ino, true, true, 0).await.unwrap();
    write_all(&fs, o.fh, &data, 1 << 20).await;
    assert!(matches!(fs.flush(o.fh).await, Err(FsError::Io(_))));
    fs.release(o.fh).await;
    assert_eq!(&fake.object("b", "f").unwrap().body[..], b"old");
    assert!(fake.pending_uploads("b").is_empty(), "no orphaned upload");
}

#[tokio::test]
async fn append_and_truncate_stage_and_keep_headers() {
    let fake = FakeClient::with_buckets(&["b"]);
    let mut headers = ObjectHeaders {
        content_type: Some("text/plain".into()),
        ..ObjectHeaders::default()
    };
    headers.metadata.insert("k".into(), "v".into());
    fake.put_with_headers("b", "log.txt", b"line1\n".to_vec(), headers);
    let fs = mount(&fake, config());
    let e = fs.lookup(ROOT_INO, OsStr::new("log.txt")).await.unwrap();
    let o = fs.open(e.attr.ino, true, false, 0).await.unwrap();
    fs.write(o.fh, 6, b"line2\n").await.unwrap();
    assert_eq!(&fs.read(o.fh, 0, 100).await.unwrap()[..], b"line1\nline2\n");
    fs.flush(o.fh).await.unwrap();
    fs.release(o.fh).await;
    let obj = fake.object("b", "log.txt").unwrap();
    assert_eq!(&obj.body[..], b"line1\nline2\n");
    assert_eq!(obj.headers.content_type.as_deref(), Some("text/plain"));
    assert_eq!(obj.headers.metadata.get("k").map(String::as_str), Some("v"));

    fs.set_size(e.attr.ino, 3).await.unwrap();
    assert_eq!(&fake.object("b", "log.txt").unwrap().body[..], b"lin");
    fs.set_size(e.attr.ino, 5).await.unwrap();
    assert_eq!(&fake.object("b", "log.txt").unwrap().body[..], b"lin\0\0");
}

#[tokio::test]
async fn staging_is_bounded_with_enospc() {
    let fake = FakeClient::with_buckets(&["b"]);
    fake.put("b", "f", b"x".to_vec());
    let mut cfg = config();
    cfg.write.staging_capacity = 1024;
    let fs = mount(&fake, cfg);
    let e = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    let o = fs.open(e.attr.ino, true, false, 0).await.unwrap();
    assert!(matches!(
        fs.write(o.fh, 0, &[0u8; 2048]).await,
        Err(FsError::NoSpace(_))
    ));
    fs.release(o.fh).await;
    assert_eq!(&fake.object("b", "f").unwrap().body[..], b"x");
}

#[tokio::test]
async fn unlink_mkdir_rmdir_and_rename_keep_headers() {
    let fake = FakeClient::with_buckets(&["b"]);
    let headers = ObjectHeaders {
        content_disposition: Some(r#"attachment; filename="a.txt""#.into()),
        content_type: Some("text/plain".into()),
        ..ObjectHeaders::default()
    };
    fake.put_with_headers("b", "a.txt", b"A".to_vec(), headers);
    let fs = mount(&fake, config());

    let d = fs.mkdir(ROOT_INO, OsStr::new("d")).await.unwrap();
    assert!(fake.object("b", "d/").is_some(), "marker object");
    assert!(matches!(
        fs.mkdir(ROOT_INO, OsStr::new("d")).await,
        Err(FsError::Exists)
    ));
    fs.rename(
        ROOT_INO,
        OsStr::new("a.txt"),
        d.attr.ino,
        OsStr::new("b.txt"),
        false,
    )
    .await
    .unwrap();
    assert!(fake.object("b", "a.txt").is_none());
    let moved = fake.object("b", "d/b.txt").unwrap();
    assert_eq!(
        moved.headers.content_disposition.as_deref(),
        Some(r#"attachment; filename="a.txt""#)
    );
    assert!(matches!(
        fs.lookup(ROOT_INO, OsStr::new("a.txt")).await,
        Err(FsError::NotFound)
    ));
    assert!(matches!(
        fs.rmdir(ROOT_INO, OsStr::new("d")).await,
        Err(FsError::NotEmpty)
    ));
    fs.rename(ROOT_INO, OsStr::new("d"), ROOT_INO, OsStr::new("e"), false)
        .await
        .unwrap();
    assert_eq!(fake.keys("b"), ["e/", "e/b.txt"]);
    let e = fs.lookup(ROOT_INO, OsStr::new("e")).await.unwrap();
    fs.unlink(e.attr.ino, OsStr::new("b.txt")).await.unwrap();
    fs.rmdir(ROOT_INO, OsStr::new("e")).await.unwrap();
    assert!(fake.keys("b").is_empty());
}

#[tokio::test]
async fn rename_copy_failure_deletes_nothing() {
    let fake = FakeClient::with_buckets(&["b"]);
    fake.put("b", "src", b"S".to_vec());
    let fs = mount(&fake, config());
    fake.inject(
        Op::CopyObject,
        Fault::service(500, S3ErrorCode::InternalError),
    );
    assert!(
        fs.rename(
            ROOT_INO,
            OsStr::new("src"),
            ROOT_INO,
            OsStr::new("dst"),
            false
        )
        .await
        .is_err()
    );
    assert_eq!(&fake.object("b", "src").unwrap().body[..], b"S");
    assert_eq!(fake.count(Op::DeleteObject), 0);
}

#[tokio::test]
async fn read_only_mount_refuses_changes() {
    let fake = FakeClient::with_buckets(&["b"]);
    fake.put("b", "f", b"x".to_vec());
    let mut cfg = config();
    cfg.read_only = true;
    let fs = mount(&fake, cfg);
    let e = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    assert!(matches!(
        fs.open(e.attr.ino, true, false, 0).await,
        Err(FsError::ReadOnly)
    ));
    assert!(matches!(
        fs.create(ROOT_INO, OsStr::new("n"), false, 0).await,
        Err(FsError::ReadOnly)
    ));
    assert!(matches!(
        fs.setxattr(
            e.attr.ino,
            OsStr::new("user.s3.content_type"),
            b"text/plain",
            0
        )
        .await,
        Err(FsError::ReadOnly)
    ));
    assert_eq!(fake.count(Op::CopyObject) + fake.count(Op::PutObject), 0);
}

#[tokio::test]
async fn disk_tier_serves_blocks_evicted_from_memory() {
    let fake = FakeClient::with_buckets(&["b"]);
    let data = pattern(2 * 1024 * 1024);
    fake.put("b", "f", data.clone());
    let disk = tempfile::tempdir().unwrap();
    let mut cfg = config();
    // Memory holds 4 blocks of 64 KiB; the file is 32 blocks.
    cfg.cache.capacity = 4 * 64 * 1024;
    cfg.cache.disk = Some(s3linkfs::fs::data::DiskConfig {
        dir: disk.path().to_path_buf(),
        capacity: 64 << 20,
    });
    let fs = mount(&fake, cfg);
    let e = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    assert!(read_to_end(&fs, e.attr.ino, 64 * 1024).await.0 == data);
    // Disk writes happen in the background.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gets = fake.count(Op::GetObject);
    assert!(read_to_end(&fs, e.attr.ino, 64 * 1024).await.0 == data);
    assert_eq!(
        fake.count(Op::GetObject),
        gets,
        "second read came from disk"
    );
}

/// Regression: a cache smaller than four parts made the prefetch window's
/// bounds cross, and `clamp` panicked in the middle of a read.
#[tokio::test]
async fn regression_prefetch_window_with_cache_smaller_than_parts() {
    let fake = FakeClient::with_buckets(&["b"]);
    let data = pattern(1024 * 1024);
    fake.put("b", "f", data.clone());
    let mut cfg = config();
    cfg.cache.capacity = 128 * 1024;
    cfg.cache.part_size = 512 * 1024;
    let fs = mount(&fake, cfg);
    let e = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    assert!(read_to_end(&fs, e.attr.ino, 32 * 1024).await.0 == data);
}

/// Regression: after a rename the kernel keeps using the source's inode under
/// the new name (an editor's save: write a temp file, rename it over the
/// original, read the original). That inode still pointed at the deleted
/// source key, so reads failed.
#[tokio::test]
async fn regression_renamed_file_readable_through_its_old_inode() {
    let fake = FakeClient::with_buckets(&["b"]);
    fake.put("b", "doc.txt", b"old".to_vec());
    fake.put("b", "d/inner", b"in".to_vec());
    let fs = mount(&fake, config());
    let (tmp, o) = fs
        .create(ROOT_INO, OsStr::new(".doc.swp"), false, 0)
        .await
        .unwrap();
    fs.write(o.fh, 0, b"new text").await.unwrap();
    fs.flush(o.fh).await.unwrap();
    fs.release(o.fh).await;
    fs.rename(
        ROOT_INO,
        OsStr::new(".doc.swp"),
        ROOT_INO,
        OsStr::new("doc.txt"),
        false,
    )
    .await
    .unwrap();
    let o = fs.open(tmp.attr.ino, false, false, 0).await.unwrap();
    assert_eq!(&fs.read(o.fh, 0, 100).await.unwrap()[..], b"new text");
    fs.release(o.fh).await;

    // A directory's inode, and the inodes below it, follow it too.
    let d = fs.lookup(ROOT_INO, OsStr::new("d")).await.unwrap();
    let inner = fs.lookup(d.attr.ino, OsStr::new("inner")).await.unwrap();
    fs.rename(ROOT_INO, OsStr::new("d"), ROOT_INO, OsStr::new("e"), false)
        .await
        .unwrap();
    let o = fs.open(inner.attr.ino, false, false, 0).await.unwrap();
    assert_eq!(&fs.read(o.fh, 0, 100).await.unwrap()[..], b"in");
    let again = fs.lookup(d.attr.ino, OsStr::new("inner")).await.unwrap();
    assert_eq!(again.attr.size, 2);
}

#[tokio::test]
async fn failed_put_of_new_file_is_retried_with_its_bytes_not_empty() {
    let fake = FakeClient::with_buckets(&["b"]);
    let fs = mount(&fake, config());
    let (_, o) = fs
        .create(ROOT_INO, OsStr::new("small.txt"), false, 0)
        .await
        .unwrap();
    write_all(&fs, o.fh, b"hello, world", 5).await;
    fake.inject(
        Op::PutObject,
        Fault::service(500, S3ErrorCode::InternalError),
    );
    assert!(matches!(fs.flush(o.fh).await, Err(FsError::Io(_))));
    assert!(fake.object("b", "small.txt").is_none());
    fs.release(o.fh).await;
    assert_eq!(
        &fake.object("b", "small.txt").unwrap().body[..],
        b"hello, world"
    );
}

#[tokio::test]
async fn failed_multipart_stream_leaves_no_object_after_release() {
    let fake = FakeClient::with_buckets(&["b"]);
    let fs = mount(&fake, config());
    fake.inject(
        Op::UploadPart,
        Fault::service(500, S3ErrorCode::InternalError).times(100),
    );
    let (_, o) = fs
        .create(ROOT_INO, OsStr::new("big.bin"), false, 0)
        .await
        .unwrap();
    write_all(&fs, o.fh, &pattern(12 * 1024 * 1024 + 5), 1 << 20).await;
    assert!(matches!(fs.flush(o.fh).await, Err(FsError::Io(_))));
    assert!(matches!(fs.flush(o.fh).await, Err(FsError::Io(_))));
    fs.release(o.fh).await;
    assert!(fake.object("b", "big.bin").is_none(), "no partial object");
    assert_eq!(fake.count(Op::PutObject), 0);
    assert!(fake.pending_uploads("b").is_empty(), "no orphaned upload");
}

#[tokio::test]
async fn fsync_mid_write_of_new_file_keeps_earlier_bytes() {
    for len in [100usize, 12 * 1024 * 1024 + 7] {
        let fake = FakeClient::with_buckets(&["b"]);
        let fs = mount(&fake, config());
        let data = pattern(2 * len);
        let (e, o) = fs
            .create(ROOT_INO, OsStr::new("grow.log"), false, 0)
            .await
            .unwrap();
        write_all(&fs, o.fh, &data[..len], 1 << 20).await;
        fs.flush(o.fh).await.unwrap();
        assert_eq!(fake.object("b", "grow.log").unwrap().body.len(), len);
        let mut off = len;
        while off < data.len() {
            let end = (off + (1 << 20)).min(data.len());
            fs.write(o.fh, off as u64, &data[off..end]).await.unwrap();
            off = end;
        }
        fs.flush(o.fh).await.unwrap();
        fs.release(o.fh).await;
        let obj = fake.object("b", "grow.log").unwrap();
        assert_eq!(obj.body.len(), data.len(), "len {len}");
        assert!(obj.body[..] == data[..], "content, len {len}");
        assert_eq!(
            fs.getattr(e.attr.ino).await.unwrap().attr.size,
            2 * len as u64
        );
        assert!(fake.pending_uploads("b").is_empty());
    }
}

#[tokio::test]
async fn renamed_inode_follows_its_new_name() {
    let fake = FakeClient::with_buckets(&["b"]);
    fake.put("b", "f", b"F".to_vec());
    fake.put("b", "d1/x", b"X".to_vec());
    let fs = mount(&fake, config());
    let f = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap().attr.ino;
    let d = fs
        .lookup(ROOT_INO, OsStr::new("d1"))
        .await
        .unwrap()
        .attr
        .ino;
    let x = fs.lookup(d, OsStr::new("x")).await.unwrap().attr.ino;
    fs.rename(ROOT_INO, OsStr::new("f"), ROOT_INO, OsStr::new("g"), false)
        .await
        .unwrap();
    fs.rename(
        ROOT_INO,
        OsStr::new("d1"),
        ROOT_INO,
        OsStr::new("d2"),
        false,
    )
    .await
    .unwrap();
    assert!(fake.object("b", "f").is_none());
    // The new name finds the same inode, so a second rename moves it again.
    let g = fs.lookup(ROOT_INO, OsStr::new("g")).await.unwrap().attr.ino;
    assert_eq!(g, f);
    fs.rename(ROOT_INO, OsStr::new("g"), ROOT_INO, OsStr::new("h"), false)
        .await
        .unwrap();
    for (ino, body) in [(f, &b"F"[..]), (x, &b"X"[..])] {
        let o = fs.open(ino, false, false, 0).await.unwrap();
        assert_eq!(&fs.read(o.fh, 0, 10).await.unwrap()[..], body);
        fs.release(o.fh).await;
    }
    // The moved directory's inode lists and looks up under its new prefix.
    let y = fs.lookup(d, OsStr::new("x")).await.unwrap().attr.ino;
    let o = fs.open(y, true, false, 0).await.unwrap();
    fs.write(o.fh, 1, b"Y").await.unwrap();
    fs.flush(o.fh).await.unwrap();
    fs.release(o.fh).await;
    assert_eq!(&fake.object("b", "d2/x").unwrap().body[..], b"XY");
    assert!(fake.object("b", "d1/x").is_none());
}

#[tokio::test]
async fn finish_releases_waits_for_an_upload_in_flight() {
    let fake = FakeClient::with_buckets(&["b"]);
    let fs = mount(&fake, config());
    let (_, o) = fs
        .create(ROOT_INO, OsStr::new("late.txt"), false, 0)
        .await
        .unwrap();
    write_all(&fs, o.fh, b"bytes", 5).await;
    let (reached, at_put) = tokio::sync::oneshot::channel();
    fake.before_next(Op::PutObject, move || {
        let _ = reached.send(());
    });
    fake.inject(Op::PutObject, Fault::delay(Duration::from_millis(300)));
    let releasing = {
        let fs = fs.clone();
        tokio::spawn(async move { fs.release(o.fh).await })
    };
    at_put.await.unwrap();
    fs.finish_releases().await;
    assert_eq!(&fake.object("b", "late.txt").unwrap().body[..], b"bytes");
    releasing.await.unwrap();
}

/// Regression: every close of a descriptor is a FUSE flush, including the
/// close of a copy a child process inherited (at its exec or exit). Each
/// uploaded the file, so a child could publish a half-written new file.
/// Only the opener's close uploads now; the release still does at the end.
#[tokio::test]
async fn regression_close_by_inheriting_process_does_not_publish_partial_file() {
    let fake = FakeClient::with_buckets(&["b"]);
    let fs = mount(&fake, config());
    let (_, o) = fs
        .create(ROOT_INO, OsStr::new("log.txt"), false, 100)
        .await
        .unwrap();
    fs.write(o.fh, 0, b"first half ").await.unwrap();
    fs.close(o.fh, 200).await.unwrap();
    assert!(
        fake.object("b", "log.txt").is_none(),
        "a child's close uploaded"
    );
    fs.write(o.fh, 11, b"second half").await.unwrap();
    fs.close(o.fh, 100).await.unwrap();
    assert_eq!(
        &fake.object("b", "log.txt").unwrap().body[..],
        b"first half second half"
    );
    fs.release(o.fh).await;
}

/// Regression: a header change on a new file that had started streaming its
/// parts fell through to an in-place copy of an object that does not exist
/// yet, and answered a puzzling ENOENT. It is EBUSY now, with the reason.
#[tokio::test]
async fn regression_header_change_while_streaming_is_busy_not_enoent() {
    let fake = FakeClient::with_buckets(&["b"]);
    let fs = mount(&fake, config());
    let (e, o) = fs
        .create(ROOT_INO, OsStr::new("big.bin"), false, 0)
        .await
        .unwrap();
    write_all(&fs, o.fh, &pattern(6 * 1024 * 1024), 1 << 20).await;
    assert!(matches!(
        fs.setxattr(
            e.attr.ino,
            OsStr::new("user.s3.content_type"),
            b"text/plain",
            0
        )
        .await,
        Err(FsError::Busy(_))
    ));
    fs.flush(o.fh).await.unwrap();
    fs.release(o.fh).await;
    assert_eq!(
        fake.object("b", "big.bin").unwrap().body.len(),
        6 * 1024 * 1024
    );
}

/// Regression: a file renamed while still open for writing (logrotate's
/// `mv` of a live log) kept uploading to its old name, and re-staging for a
/// later write read the deleted old key, losing the earlier bytes.
#[tokio::test]
async fn regression_writes_after_renaming_an_open_file_follow_the_new_name() {
    let fake = FakeClient::with_buckets(&["b"]);
    let fs = mount(&fake, config());
    let (_, o) = fs
        .create(ROOT_INO, OsStr::new("app.log"), false, 0)
        .await
        .unwrap();
    fs.write(o.fh, 0, b"abc").await.unwrap();
    fs.flush(o.fh).await.unwrap();
    fs.rename(
        ROOT_INO,
        OsStr::new("app.log"),
        ROOT_INO,
        OsStr::new("app.log.1"),
        false,
    )
    .await
    .unwrap();
    fs.write(o.fh, 3, b"def").await.unwrap();
    fs.flush(o.fh).await.unwrap();
    fs.release(o.fh).await;
    assert_eq!(&fake.object("b", "app.log.1").unwrap().body[..], b"abcdef");
    assert!(fake.object("b", "app.log").is_none());
}
