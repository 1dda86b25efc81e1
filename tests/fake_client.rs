//! The in-place header change against the in-memory fake: request counts,
//! the multipart-copy path, conflicts and the headers kept.

use std::convert::Infallible;

use bytes::Bytes;
use s3linkfs::s3::fake::{FakeClient, Fault, Op};
use s3linkfs::s3::headers::{
    DEFAULT_COPY_PART_SIZE, DEFAULT_MULTIPART_THRESHOLD, ReplaceError, replace_headers,
};
use s3linkfs::s3::{ObjectClient, ObjectHeaders, S3Error, S3ErrorCode};

const MIB: u64 = 1024 * 1024;

fn rich_headers() -> ObjectHeaders {
    ObjectHeaders {
        content_type: Some("application/pdf".into()),
        cache_control: Some("max-age=3600".into()),
        content_encoding: Some("identity".into()),
        content_language: Some("sv".into()),
        expires: Some("Wed, 21 Oct 2037 07:28:00 GMT".into()),
        storage_class: Some("STANDARD_IA".into()),
        website_redirect_location: Some("/elsewhere".into()),
        server_side_encryption: Some("aws:kms".into()),
        sse_kms_key_id: Some("arn:aws:kms:key/1".into()),
        metadata: [
            ("owner".to_string(), "alice".to_string()),
            ("project".to_string(), "x y z".to_string()),
        ]
        .into(),
        ..ObjectHeaders::default()
    }
}

const DISPOSITION: &str = "attachment; filename=\"bar.pdf\"";

fn set_disposition(_: &s3linkfs::s3::HeadOutput, h: &mut ObjectHeaders) -> Result<(), Infallible> {
    h.content_disposition = Some(DISPOSITION.into());
    Ok(())
}

#[tokio::test]
async fn single_copy_costs_one_head_and_one_copy_and_keeps_everything() {
    let fake = FakeClient::new();
    let old_etag = fake.put_with_headers("bk", "doc.pdf", "content", rich_headers());
    fake.reset_counts();

    let out = replace_headers(
        &fake,
        "bk",
        "doc.pdf",
        DEFAULT_MULTIPART_THRESHOLD,
        DEFAULT_COPY_PART_SIZE,
        set_disposition,
    )
    .await
    .expect("replace");

    assert_eq!(fake.count(Op::HeadObject), 1, "{:?}", fake.counts());
    assert_eq!(fake.count(Op::CopyObject), 1, "{:?}", fake.counts());
    assert_eq!(fake.total_requests(), 2, "{:?}", fake.counts());

    let mut want = rich_headers();
    want.content_disposition = Some(DISPOSITION.into());
    let obj = fake.object("bk", "doc.pdf").unwrap();
    assert_eq!(obj.headers, want);
    assert_eq!(obj.body, "content");
    assert_eq!(out.headers, want);
    assert_eq!(out.etag, obj.etag);
    assert_eq!(out.etag, old_etag, "same content, single part: same ETag");
    assert_eq!(out.size, 7);
    assert!(out.copied);
}

#[tokio::test]
async fn edit_that_changes_nothing_costs_only_the_head() {
    let fake = FakeClient::new();
    fake.put_with_headers("bk", "k", "v", rich_headers());
    fake.reset_counts();
    let out = replace_headers(&fake, "bk", "k", u64::MAX, MIB, |_, _| {
        Ok::<(), Infallible>(())
    })
    .await
    .unwrap();
    assert!(!out.copied);
    assert_eq!(fake.total_requests(), 1);
}

#[tokio::test]
async fn edit_can_refuse_after_seeing_the_headers() {
    let fake = FakeClient::new();
    fake.put_with_headers("bk", "k", "v", rich_headers());
    fake.reset_counts();
    let err = replace_headers(&fake, "bk", "k", u64::MAX, MIB, |head, _| {
        assert_eq!(
            head.headers.content_type.as_deref(),
            Some("application/pdf")
        );
        Err("name taken")
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ReplaceError::Edit("name taken")));
    assert_eq!(fake.total_requests(), 1, "no copy after a refusal");
}

#[tokio::test]
async fn overwrite_between_head_and_copy_is_a_distinct_error_and_harmless() {
    let fake = FakeClient::new();
    let old = fake.put_with_headers("bk", "k", "old", rich_headers());
    let other = fake.clone();
    fake.before_next(Op::CopyObject, move || {
        other.put_with_headers(
            "bk",
            "k",
            "newer",
            ObjectHeaders {
                content_type: Some("text/plain".into()),
                ..ObjectHeaders::default()
            },
        );
    });
    let err = replace_headers(&fake, "bk", "k", u64::MAX, MIB, set_disposition)
        .await
        .unwrap_err();
    match err {
        ReplaceError::S3(S3Error::ConcurrentModification { expected_etag }) => {
            assert_eq!(expected_etag, old)
        }
        other => panic!("want ConcurrentModification, got {other:?}"),
    }
    let obj = fake.object("bk", "k").unwrap();
    assert_eq!(obj.body, "newer");
    assert_eq!(obj.headers.content_type.as_deref(), Some("text/plain"));
    assert_eq!(obj.headers.content_disposition, None);
}

#[tokio::test]
async fn lost_copy_answer_then_412_is_still_success() {
    // Our copy lands, the answer is lost, a retry sees 412: the follow-up
    // HEAD shows our headers, so this is success, not a conflict.
    let fake = FakeClient::new();
    fake.put_with_headers("bk", "k", "v", rich_headers());
    fake.inject(
        Op::CopyObject,
        Fault::LoseAnswer {
            times: 1,
            error: S3Error::Service {
                status: 412,
                code: S3ErrorCode::PreconditionFailed,
                message: String::new(),
                request_id: String::new(),
            },
        },
    );
    let out = replace_headers(&fake, "bk", "k", u64::MAX, MIB, set_disposition)
        .await
        .expect("our own copy landed");
    assert_eq!(
        out.headers.content_disposition.as_deref(),
        Some(DISPOSITION)
    );
}

fn pattern(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

#[tokio::test]
async fn multipart_copy_with_lowered_threshold_keeps_headers_and_bytes() {
    let fake = FakeClient::new();
    let body = pattern(12 * MIB as usize + 123);
    fake.put_with_headers("bk", "big", body.clone(), rich_headers());
    fake.reset_counts();

    let out = replace_headers(&fake, "bk", "big", MIB, 5 * MIB, set_disposition)
        .await
        .expect("multipart replace");

    assert_eq!(fake.count(Op::CreateMultipartUpload), 1);
    assert_eq!(fake.count(Op::UploadPartCopy), 3, "12 MiB in 5 MiB parts");
    assert_eq!(fake.count(Op::CompleteMultipartUpload), 1);
    assert_eq!(fake.count(Op::CopyObject), 0);
    let obj = fake.object("bk", "big").unwrap();
    assert_eq!(obj.body, body);
    assert!(obj.etag.ends_with("-3\""), "{}", obj.etag);
    assert_eq!(out.etag, obj.etag);
    let mut want = rich_headers();
    want.content_disposition = Some(DISPOSITION.into());
    assert_eq!(obj.headers, want);
    assert!(fake.pending_uploads("bk").is_empty());
}

#[tokio::test]
async fn multipart_copy_aborts_on_a_failed_part() {
    let fake = FakeClient::new();
    fake.put_with_headers("bk", "big", pattern(11 * MIB as usize), rich_headers());
    let before = fake.object("bk", "big").unwrap();
    fake.inject(
        Op::UploadPartCopy,
        Fault::service(403, S3ErrorCode::AccessDenied),
    );
    let err = replace_headers(&fake, "bk", "big", MIB, 5 * MIB, set_disposition)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ReplaceError::S3(S3Error::Service { status: 403, .. })
    ));
    assert_eq!(fake.count(Op::AbortMultipartUpload), 1);
    assert!(fake.pending_uploads("bk").is_empty());
    assert_eq!(fake.object("bk", "big").unwrap(), before);
}

#[tokio::test]
async fn multipart_copy_detects_overwrite_and_aborts() {
    let fake = FakeClient::new();
    fake.put_with_headers("bk", "big", pattern(11 * MIB as usize), rich_headers());
    let other = fake.clone();
    fake.before_next(Op::UploadPartCopy, move || {
        other.put("bk", "big", "replaced");
    });
    let err = replace_headers(&fake, "bk", "big", MIB, 5 * MIB, set_disposition)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ReplaceError::S3(S3Error::ConcurrentModification { .. })
        ),
        "{err:?}"
    );
    assert_eq!(fake.object("bk", "big").unwrap().body, "replaced");
    assert!(fake.pending_uploads("bk").is_empty());
}

#[tokio::test]
async fn missing_object_is_not_found() {
    let fake = FakeClient::with_buckets(&["bk"]);
    let err = replace_headers(&fake, "bk", "nope", u64::MAX, MIB, set_disposition)
        .await
        .unwrap_err();
    match err {
        ReplaceError::S3(e) => assert!(e.is_not_found()),
        other => panic!("{other:?}"),
    }
    // The fake is usable through the trait object too.
    let client: &dyn ObjectClient = &fake;
    assert!(client.list_buckets().await.unwrap().len() == 1);
}
