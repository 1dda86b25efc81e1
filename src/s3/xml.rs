//! S3 XML bodies: the answers we parse and the one request body we build.
//!
//! Exists so that `http.rs` never touches XML text: each answer is parsed
//! here into plain structs with quick-xml + serde, and every failure becomes
//! [`S3Error::InvalidResponse`], never a panic.
//!
//! Guarantees:
//! - a 200 answer whose root element is `<Error>` (CompleteMultipartUpload
//!   and CopyObject can do that) is reported as the service error it is;
//! - ETags come back with their quotes, whatever the server sent (`"x"`,
//!   `&quot;x&quot;` or a bare `x`); an empty ETag stays empty;
//! - listing keys sent with `encoding-type=url` are decoded exactly once,
//!   and only when the server says it encoded them;
//! - dates are ISO 8601 / RFC 3339 (`2009-10-12T17:50:30.000Z`).

use std::time::SystemTime;

use quick_xml::events::Event;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::{Iso8601, Rfc3339};

use super::{BucketInfo, ListPage, MultipartUploadInfo, ObjectSummary, S3Error, S3ErrorCode};

/// `<Error>`: the S3 error body.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// `<Code>`, e.g. `NoSuchKey`.
    #[serde(rename = "Code", default)]
    pub code: String,
    /// `<Message>`.
    #[serde(rename = "Message", default)]
    pub message: String,
    /// `<RequestId>`.
    #[serde(rename = "RequestId", default)]
    pub request_id: String,
}

impl ErrorBody {
    /// Turns the body into a service error; `header_request_id` (from
    /// `x-amz-request-id`) wins over the body's when both exist.
    pub fn into_error(self, status: u16, header_request_id: Option<&str>) -> S3Error {
        S3Error::Service {
            status,
            code: S3ErrorCode::parse(&self.code),
            message: self.message,
            request_id: header_request_id
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or(self.request_id),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ListAllMyBucketsResult {
    #[serde(rename = "Buckets", default)]
    buckets: Buckets,
}

#[derive(Debug, Default, Deserialize)]
struct Buckets {
    #[serde(rename = "Bucket", default)]
    bucket: Vec<BucketXml>,
}

#[derive(Debug, Deserialize)]
struct BucketXml {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "CreationDate", default)]
    creation_date: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListBucketResult {
    #[serde(rename = "Contents", default)]
    contents: Vec<ContentsXml>,
    #[serde(rename = "CommonPrefixes", default)]
    common_prefixes: Vec<CommonPrefixXml>,
    #[serde(rename = "IsTruncated", default)]
    is_truncated: Option<String>,
    #[serde(rename = "NextContinuationToken", default)]
    next_continuation_token: Option<String>,
    #[serde(rename = "EncodingType", default)]
    encoding_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ContentsXml {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "LastModified")]
    last_modified: String,
    #[serde(rename = "ETag", default)]
    etag: String,
    #[serde(rename = "Size", default)]
    size: u64,
    #[serde(rename = "StorageClass", default)]
    storage_class: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CommonPrefixXml {
    #[serde(rename = "Prefix")]
    prefix: String,
}

#[derive(Debug, Deserialize)]
struct InitiateMultipartUploadResult {
    #[serde(rename = "UploadId")]
    upload_id: String,
}

#[derive(Debug, Deserialize)]
struct CompleteMultipartUploadResult {
    #[serde(rename = "ETag", default)]
    etag: String,
}

/// `<CopyObjectResult>` and `<CopyPartResult>` have the same shape.
#[derive(Debug, Deserialize)]
struct CopyResultXml {
    #[serde(rename = "ETag", default)]
    etag: String,
    #[serde(rename = "LastModified", default)]
    last_modified: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListMultipartUploadsResult {
    #[serde(rename = "Upload", default)]
    upload: Vec<UploadXml>,
}

#[derive(Debug, Deserialize)]
struct UploadXml {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "UploadId")]
    upload_id: String,
    #[serde(rename = "Initiated", default)]
    initiated: Option<String>,
}

/// What a copy answered: the new ETag (quoted) and, when sent, its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyResult {
    /// Quoted ETag (empty if the server sent none).
    pub etag: String,
    /// `<LastModified>`, when present.
    pub last_modified: Option<SystemTime>,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> S3Error {
    S3Error::InvalidResponse(format!("{what}: {e}"))
}

/// Name of the root element, or `None` for an empty or non-XML body.
pub fn root_element(body: &[u8]) -> Option<String> {
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                return Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
            }
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => buf.clear(),
        }
    }
}

/// Parses an error body; `None` if it is not one (empty, HTML, ...).
pub fn parse_error(body: &[u8]) -> Option<ErrorBody> {
    if root_element(body).as_deref() != Some("Error") {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    quick_xml::de::from_str::<ErrorBody>(text).ok()
}

/// Parses a success body whose root must be `root`; a body rooted at
/// `<Error>` becomes the service error it carries (with `status`).
fn parse_success<T: DeserializeOwned>(
    body: &[u8],
    root: &str,
    status: u16,
    request_id: Option<&str>,
) -> Result<T, S3Error> {
    match root_element(body).as_deref() {
        Some(r) if r == root => {}
        Some("Error") => {
            let e = parse_error(body).unwrap_or_default();
            // A 200 carrying <Error> is a server-side failure after the
            // headers went out; treat it as a 500 so retry rules apply.
            let status = if status < 300 { 500 } else { status };
            return Err(e.into_error(status, request_id));
        }
        Some(other) => return Err(invalid(root, format!("unexpected root <{other}>"))),
        None => return Err(invalid(root, "empty or malformed body")),
    }
    let text = std::str::from_utf8(body).map_err(|e| invalid(root, e))?;
    quick_xml::de::from_str(text).map_err(|e| invalid(root, e))
}

/// Parses an ISO 8601 timestamp (`2009-10-12T17:50:30.000Z`).
pub fn parse_timestamp(s: &str) -> Result<SystemTime, S3Error> {
    let s = s.trim();
    OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(s, &Iso8601::DEFAULT))
        .map(SystemTime::from)
        .map_err(|e| invalid("timestamp", format!("{s:?}: {e}")))
}

/// Puts the quotes back on an ETag a server sent bare; keeps empty as empty.
pub fn quote_etag(etag: &str) -> String {
    let t = etag.trim();
    if t.is_empty() || (t.len() >= 2 && t.starts_with('"') && t.ends_with('"')) {
        t.to_string()
    } else {
        format!("\"{}\"", t.trim_matches('"'))
    }
}

/// Decodes a key from an `encoding-type=url` listing (`+` is a space, as
/// AWS sends it; a literal `+` arrives as `%2B`).
fn url_decode(s: &str) -> Result<String, S3Error> {
    let plus_free = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_free)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|e| invalid("url-encoded key", e))
}

/// Parses `<ListAllMyBucketsResult>`.
pub fn parse_list_buckets(body: &[u8]) -> Result<Vec<BucketInfo>, S3Error> {
    let r: ListAllMyBucketsResult = parse_success(body, "ListAllMyBucketsResult", 200, None)?;
    r.buckets
        .bucket
        .into_iter()
        .map(|b| {
            Ok(BucketInfo {
                name: b.name,
                created: match b.creation_date.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(d) => Some(parse_timestamp(d)?),
                },
            })
        })
        .collect()
}

/// Parses a ListObjectsV2 `<ListBucketResult>`.
pub fn parse_list_objects(body: &[u8]) -> Result<ListPage, S3Error> {
    let r: ListBucketResult = parse_success(body, "ListBucketResult", 200, None)?;
    let encoded = r
        .encoding_type
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case("url"));
    let decode = |s: String| if encoded { url_decode(&s) } else { Ok(s) };
    let mut objects = Vec::with_capacity(r.contents.len());
    for c in r.contents {
        objects.push(ObjectSummary {
            key: decode(c.key)?,
            size: c.size,
            etag: quote_etag(&c.etag),
            last_modified: parse_timestamp(&c.last_modified)?,
            storage_class: c.storage_class.filter(|s| !s.is_empty()),
        });
    }
    let common_prefixes = r
        .common_prefixes
        .into_iter()
        .map(|p| decode(p.prefix))
        .collect::<Result<Vec<_>, _>>()?;
    let truncated = r
        .is_truncated
        .as_deref()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("true"));
    let next = r.next_continuation_token.filter(|t| !t.is_empty());
    if truncated && next.is_none() {
        return Err(invalid(
            "ListBucketResult",
            "truncated listing without NextContinuationToken",
        ));
    }
    Ok(ListPage {
        objects,
        common_prefixes,
        next_continuation_token: if truncated { next } else { None },
    })
}

/// Parses `<InitiateMultipartUploadResult>` into the upload id.
pub fn parse_initiate_multipart(body: &[u8]) -> Result<String, S3Error> {
    let r: InitiateMultipartUploadResult =
        parse_success(body, "InitiateMultipartUploadResult", 200, None)?;
    if r.upload_id.is_empty() {
        return Err(invalid("InitiateMultipartUploadResult", "empty UploadId"));
    }
    Ok(r.upload_id)
}

/// Parses `<CompleteMultipartUploadResult>` into the (quoted, possibly
/// empty) ETag. A 200 carrying `<Error>` is returned as that error.
pub fn parse_complete_multipart(body: &[u8], request_id: Option<&str>) -> Result<String, S3Error> {
    let r: CompleteMultipartUploadResult =
        parse_success(body, "CompleteMultipartUploadResult", 200, request_id)?;
    Ok(quote_etag(&r.etag))
}

/// Parses `<CopyObjectResult>`. A 200 carrying `<Error>` is that error.
pub fn parse_copy_object(body: &[u8], request_id: Option<&str>) -> Result<CopyResult, S3Error> {
    parse_copy(body, "CopyObjectResult", request_id)
}

/// Parses `<CopyPartResult>`. A 200 carrying `<Error>` is that error.
pub fn parse_copy_part(body: &[u8], request_id: Option<&str>) -> Result<CopyResult, S3Error> {
    parse_copy(body, "CopyPartResult", request_id)
}

fn parse_copy(body: &[u8], root: &str, request_id: Option<&str>) -> Result<CopyResult, S3Error> {
    let r: CopyResultXml = parse_success(body, root, 200, request_id)?;
    Ok(CopyResult {
        etag: quote_etag(&r.etag),
        last_modified: match r.last_modified.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) => Some(parse_timestamp(d)?),
        },
    })
}

/// Parses `<ListMultipartUploadsResult>`.
pub fn parse_list_multipart_uploads(body: &[u8]) -> Result<Vec<MultipartUploadInfo>, S3Error> {
    let r: ListMultipartUploadsResult =
        parse_success(body, "ListMultipartUploadsResult", 200, None)?;
    r.upload
        .into_iter()
        .map(|u| {
            Ok(MultipartUploadInfo {
                key: u.key,
                upload_id: u.upload_id,
                initiated: match u.initiated.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(d) => Some(parse_timestamp(d)?),
                },
            })
        })
        .collect()
}

/// Builds the `<CompleteMultipartUpload>` request body.
pub fn complete_multipart_body(parts: &[super::CompletedPart]) -> String {
    let mut out = String::with_capacity(80 + parts.len() * 90);
    out.push_str(r#"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#);
    for p in parts {
        out.push_str("<Part><PartNumber>");
        out.push_str(&p.part_number.to_string());
        out.push_str("</PartNumber><ETag>");
        out.push_str(&quick_xml::escape::escape(p.etag.as_str()));
        out.push_str("</ETag></Part>");
    }
    out.push_str("</CompleteMultipartUpload>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const RGW_LIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bk</Name><Prefix></Prefix><MaxKeys>2</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated><EncodingType>url</EncodingType><NextContinuationToken>1ABC</NextContinuationToken><Contents><Key>a+b%2Bc%20d</Key><LastModified>2024-03-01T10:20:30.123Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass><Owner><ID>u</ID><DisplayName>u</DisplayName></Owner><Type>Normal</Type></Contents><CommonPrefixes><Prefix>dir%2F%C3%A9/</Prefix></CommonPrefixes><KeyCount>2</KeyCount></ListBucketResult>"#;

    const GARAGE_LIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>test</Name><Prefix>p/</Prefix><Delimiter>/</Delimiter><MaxKeys>1000</MaxKeys>
  <IsTruncated>false</IsTruncated>
  <Contents><Key>p/x y+z</Key><LastModified>2024-03-01T10:20:30Z</LastModified><ETag>"abc-2"</ETag><Size>10485760</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>p/bare</Key><LastModified>2024-03-01T10:20:31.000Z</LastModified><ETag>def</ETag><Size>0</Size></Contents>
  <KeyCount>2</KeyCount>
</ListBucketResult>"#;

    #[test]
    fn list_objects_rgw_shape_url_encoded() {
        let page = parse_list_objects(RGW_LIST.as_bytes()).unwrap();
        assert_eq!(page.objects.len(), 1);
        let o = &page.objects[0];
        assert_eq!(o.key, "a b+c d");
        assert_eq!(o.etag, "\"9b2cf535f27731c974343645a3985328\"");
        assert_eq!(o.size, 3);
        assert_eq!(
            o.last_modified,
            UNIX_EPOCH + Duration::from_millis(1_709_288_430_123)
        );
        assert_eq!(page.common_prefixes, ["dir/é/"]);
        assert_eq!(page.next_continuation_token.as_deref(), Some("1ABC"));
    }

    #[test]
    fn list_objects_garage_shape_not_encoded() {
        let page = parse_list_objects(GARAGE_LIST.as_bytes()).unwrap();
        let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            ["p/x y+z", "p/bare"],
            "no decoding without EncodingType"
        );
        assert_eq!(page.objects[0].etag, "\"abc-2\"");
        assert_eq!(page.objects[1].etag, "\"def\"");
        assert_eq!(page.objects[1].storage_class, None);
        assert!(page.common_prefixes.is_empty());
        assert_eq!(page.next_continuation_token, None);
    }

    #[test]
    fn truncated_without_token_is_an_error() {
        let body = r#"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"#;
        assert!(matches!(
            parse_list_objects(body.as_bytes()),
            Err(S3Error::InvalidResponse(_))
        ));
    }

    #[test]
    fn list_buckets() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>testuser</ID><DisplayName>t</DisplayName></Owner><Buckets><Bucket><Name>a</Name><CreationDate>2024-01-02T03:04:05.000Z</CreationDate></Bucket><Bucket><Name>b</Name><CreationDate>2024-01-02T03:04:06Z</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>"#;
        let b = parse_list_buckets(body.as_bytes()).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].name, "b");
        assert!(b[0].created.is_some());
        let empty = r#"<ListAllMyBucketsResult><Owner/><Buckets/></ListAllMyBucketsResult>"#;
        assert!(parse_list_buckets(empty.as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn error_body() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>k</Key><BucketName>bk</BucketName><RequestId>tx0001</RequestId><HostId>h</HostId></Error>"#;
        let e = parse_error(body.as_bytes()).unwrap();
        assert_eq!(e.code, "NoSuchKey");
        assert_eq!(e.request_id, "tx0001");
        match e.into_error(404, None) {
            S3Error::Service {
                status,
                code,
                request_id,
                ..
            } => {
                assert_eq!(status, 404);
                assert_eq!(code, S3ErrorCode::NoSuchKey);
                assert_eq!(request_id, "tx0001");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_error(b"").is_none());
        assert!(parse_error(b"<html><body>bad gateway</body></html>").is_none());
        assert!(parse_error(b"\xff\xfe garbage").is_none());
    }

    #[test]
    fn complete_multipart_detects_error_in_200() {
        let ok = r#"<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>http://h/bk/k</Location><Bucket>bk</Bucket><Key>k</Key><ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag></CompleteMultipartUploadResult>"#;
        assert_eq!(
            parse_complete_multipart(ok.as_bytes(), None).unwrap(),
            "\"3858f62230ac3c915f300c664312c11f-9\""
        );
        // RGW 16.2 sends an empty ETag.
        let rgw = r#"<CompleteMultipartUploadResult><Location>l</Location><Bucket>bk</Bucket><Key>k</Key><ETag></ETag></CompleteMultipartUploadResult>"#;
        assert_eq!(parse_complete_multipart(rgw.as_bytes(), None).unwrap(), "");
        let err = "<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message><RequestId>r1</RequestId></Error>";
        let e = parse_complete_multipart(err.as_bytes(), Some("hdr-id")).unwrap_err();
        assert_eq!(e.code(), Some(&S3ErrorCode::InternalError));
        assert_eq!(e.request_id(), "hdr-id");
        assert!(e.is_retryable());
        assert!(parse_complete_multipart(b"", None).is_err());
    }

    #[test]
    fn copy_results() {
        let body = r#"<CopyObjectResult><LastModified>2024-05-06T07:08:09.000Z</LastModified><ETag>"aa"</ETag></CopyObjectResult>"#;
        let r = parse_copy_object(body.as_bytes(), None).unwrap();
        assert_eq!(r.etag, "\"aa\"");
        assert!(r.last_modified.is_some());
        let part = r#"<CopyPartResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LastModified>2024-05-06T07:08:09Z</LastModified><ETag>&quot;bb&quot;</ETag></CopyPartResult>"#;
        assert_eq!(
            parse_copy_part(part.as_bytes(), None).unwrap().etag,
            "\"bb\""
        );
        let wrong_root = parse_copy_part(body.as_bytes(), None).unwrap_err();
        assert!(matches!(wrong_root, S3Error::InvalidResponse(_)));
        let err = r#"<Error><Code>SlowDown</Code><Message>m</Message></Error>"#;
        let e = parse_copy_object(err.as_bytes(), None).unwrap_err();
        assert_eq!(e.code(), Some(&S3ErrorCode::SlowDown));
    }

    #[test]
    fn initiate_and_list_uploads() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>bk</Bucket><Key>k</Key><UploadId>2~abc</UploadId></InitiateMultipartUploadResult>"#;
        assert_eq!(parse_initiate_multipart(body.as_bytes()).unwrap(), "2~abc");
        let list = r#"<ListMultipartUploadsResult><Bucket>bk</Bucket><Upload><Key>k</Key><UploadId>u1</UploadId><Initiated>2024-01-01T00:00:00.000Z</Initiated></Upload><Upload><Key>k2</Key><UploadId>u2</UploadId></Upload></ListMultipartUploadsResult>"#;
        let ups = parse_list_multipart_uploads(list.as_bytes()).unwrap();
        assert_eq!(ups.len(), 2);
        assert_eq!(ups[1].upload_id, "u2");
        assert_eq!(ups[1].initiated, None);
    }

    #[test]
    fn timestamps() {
        let t = parse_timestamp("2009-10-12T17:50:30.000Z").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_255_369_830));
        assert_eq!(parse_timestamp("2009-10-12T17:50:30Z").unwrap(), t);
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn complete_body_escapes_etags() {
        let parts = [
            super::super::CompletedPart {
                part_number: 1,
                etag: "\"a\"".into(),
            },
            super::super::CompletedPart {
                part_number: 2,
                etag: "\"b\"".into(),
            },
        ];
        let body = complete_multipart_body(&parts);
        assert!(body.contains("<Part><PartNumber>2</PartNumber><ETag>&quot;b&quot;</ETag></Part>"));
        assert_eq!(
            root_element(body.as_bytes()).as_deref(),
            Some("CompleteMultipartUpload")
        );
    }
}
