//! Known-answer tests for presigned URLs (protocol-facts sections 1 and 2),
//! and a property test that every key survives a URL round trip unchanged.

use std::time::{Duration, SystemTime};

use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use s3linkfs::sign::presign::{
    PresignParams, SignError, endpoint_authority, presign, presign_v2, presign_v4, presign_v4_with,
};
use s3linkfs::sign::{Addressing, Credentials, Endpoint, Scheme, SignatureVersion};

const DOC_AK: &str = "AKIAIOSFODNN7EXAMPLE";
const DOC_SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// 2013-05-24T00:00:00Z, the time of vector A.
const T_A: u64 = 1_369_353_600;

/// Vector A's canonical query, which is also its URL query minus the signature.
const A_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
    &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
    &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host";

/// The Content-Disposition of the "A + response-content-disposition" vector.
const RESUME_DISPOSITION: &str =
    "attachment; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf";

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn creds(ak: &str, sk: &str, token: Option<&str>) -> Credentials {
    Credentials {
        access_key: ak.into(),
        secret_key: sk.into(),
        session_token: token.map(str::to_string),
    }
}

fn endpoint(scheme: Scheme, host: &str) -> Endpoint {
    Endpoint {
        scheme,
        host: host.into(),
        port: None,
    }
}

/// The parts of a presign request that vary between vectors.
struct Case<'a> {
    endpoint: &'a Endpoint,
    addressing: Addressing,
    region: &'a str,
    bucket: &'a str,
    key: &'a str,
    credentials: &'a Credentials,
    now: u64,
    expires_in: u64,
}

impl<'a> Case<'a> {
    fn params(&self) -> PresignParams<'a> {
        PresignParams {
            endpoint: self.endpoint,
            addressing: self.addressing,
            region: self.region,
            bucket: self.bucket,
            key: self.key,
            credentials: self.credentials,
            now: at(self.now),
            expires_in: Duration::from_secs(self.expires_in),
            response_content_disposition: None,
            response_content_type: None,
        }
    }
}

fn vector_a_params<'a>(ep: &'a Endpoint, c: &'a Credentials) -> PresignParams<'a> {
    Case {
        endpoint: ep,
        addressing: Addressing::Virtual,
        region: "us-east-1",
        bucket: "examplebucket",
        key: "test.txt",
        credentials: c,
        now: T_A,
        expires_in: 86_400,
    }
    .params()
}

#[test]
fn vector_a_virtual_hosted() {
    let ep = endpoint(Scheme::Https, "s3.amazonaws.com");
    let c = creds(DOC_AK, DOC_SK, None);
    assert_eq!(
        presign_v4(&vector_a_params(&ep, &c)).unwrap(),
        format!(
            "https://examplebucket.s3.amazonaws.com/test.txt?{A_QUERY}\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        )
    );
}

#[test]
fn vector_a_with_response_content_disposition() {
    let ep = endpoint(Scheme::Https, "s3.amazonaws.com");
    let c = creds(DOC_AK, DOC_SK, None);
    assert_eq!(
        s3linkfs::disposition::attachment_for("résumé.pdf"),
        RESUME_DISPOSITION
    );
    let p = PresignParams {
        response_content_disposition: Some(RESUME_DISPOSITION),
        ..vector_a_params(&ep, &c)
    };
    assert_eq!(
        presign_v4(&p).unwrap(),
        format!(
            "https://examplebucket.s3.amazonaws.com/test.txt?{A_QUERY}\
             &response-content-disposition=attachment%3B%20filename%3D%22resume.pdf%22%3B%20\
             filename%2A%3DUTF-8%27%27r%25C3%25A9sum%25C3%25A9.pdf\
             &X-Amz-Signature=0e6170352b67b0315fe461566cdfdb0dcf154e5d7e74f53fc9f05c6baeec4243"
        )
    );
}

#[test]
fn vector_b_path_style_dot_segment_custom_service() {
    let ep = endpoint(Scheme::Https, "s3.us-west-2.amazonaws.com");
    let c = creds("access_key", "secret_key", None);
    let p = Case {
        endpoint: &ep,
        addressing: Addressing::Path,
        region: "myregion",
        bucket: "mybucket",
        key: "keyname/.bar",
        credentials: &c,
        now: 1_388_534_400, // 2014-01-01T00:00:00Z
        expires_in: 60,
    }
    .params();
    assert_eq!(
        presign_v4_with(&p, "GET", "myservice").unwrap(),
        "https://s3.us-west-2.amazonaws.com/mybucket/keyname/.bar\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=access_key%2F20140101%2Fmyregion%2Fmyservice%2Faws4_request\
         &X-Amz-Date=20140101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=ac1b8b9e47e8685c5c963d75e35e8741d55251cd955239cc1efad4dc7201db66"
    );
}

/// Vector C: the AWS Rust SDK prints `X-Amz-Security-Token` *after*
/// `X-Amz-Signature`, but the token is signed all the same (recomputing the
/// SDK's signature shows it is part of the canonical query). s3linkfs prints
/// the token in its sorted place, so the URLs differ only in parameter
/// order: same parameters, same signature. Since our presign is a GET, the
/// HEAD URL comes from `presign_v4_with`.
#[test]
fn vector_c_session_token() {
    const SDK_URL: &str = "https://bucket.s3.us-east-1.amazonaws.com/key\
        ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=ANOTREAL%2F20090213%2Fus-east-1%2Fs3%2Faws4_request\
        &X-Amz-Date=20090213T233131Z&X-Amz-Expires=30&X-Amz-SignedHeaders=host\
        &X-Amz-Signature=6b97012e70d5ee3528b5591e0e90c0f45e0fa303506f854eff50ff922751a193\
        &X-Amz-Security-Token=notarealsessiontoken";
    let ep = endpoint(Scheme::Https, "s3.us-east-1.amazonaws.com");
    let c = creds(
        "ANOTREAL",
        "notrealrnrELgWzOk3IfjzDKtFBhDby",
        Some("notarealsessiontoken"),
    );
    let p = Case {
        endpoint: &ep,
        addressing: Addressing::Virtual,
        region: "us-east-1",
        bucket: "bucket",
        key: "key",
        credentials: &c,
        now: 1_234_567_891, // 2009-02-13T23:31:31Z
        expires_in: 30,
    }
    .params();
    let ours = presign_v4_with(&p, "HEAD", "s3").unwrap();
    assert_eq!(
        ours,
        "https://bucket.s3.us-east-1.amazonaws.com/key\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=ANOTREAL%2F20090213%2Fus-east-1%2Fs3%2Faws4_request\
         &X-Amz-Date=20090213T233131Z&X-Amz-Expires=30\
         &X-Amz-Security-Token=notarealsessiontoken&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=6b97012e70d5ee3528b5591e0e90c0f45e0fa303506f854eff50ff922751a193"
    );
    let params_of = |url: &str| {
        let mut v: Vec<String> = url
            .split_once('?')
            .unwrap()
            .1
            .split('&')
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(params_of(&ours), params_of(SDK_URL));
    // The GET URL for the same inputs carries a different signature.
    assert!(
        !presign_v4(&p)
            .unwrap()
            .ends_with("6b97012e70d5ee3528b5591e0e90c0f45e0fa303506f854eff50ff922751a193")
    );
}

/// A SigV2 URL for path style on `https://s3.amazonaws.com`, expiring at
/// `epoch`.
fn v2_url(secret: &str, bucket: &str, key: &str, epoch: u64, disposition: Option<&str>) -> String {
    let ep = endpoint(Scheme::Https, "s3.amazonaws.com");
    let c = creds(DOC_AK, secret, None);
    let p = PresignParams {
        response_content_disposition: disposition,
        ..Case {
            endpoint: &ep,
            addressing: Addressing::Path,
            region: "us-east-1",
            bucket,
            key,
            credentials: &c,
            now: epoch - 3600,
            expires_in: 3600,
        }
        .params()
    };
    presign_v2(&p).unwrap()
}

#[test]
fn vector_v2a() {
    assert_eq!(
        v2_url(DOC_SK, "johnsmith", "photos/puppy.jpg", 1_175_139_620, None),
        "https://s3.amazonaws.com/johnsmith/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE\
         &Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
    );
}

#[test]
fn vector_v2a_corrected_for_awsexamplebucket1() {
    let url = v2_url(
        DOC_SK,
        "awsexamplebucket1",
        "photos/puppy.jpg",
        1_175_139_620,
        None,
    );
    assert!(
        url.ends_with("&Signature=1No4mq5ETf02z8aet9voy6gui6E%3D"),
        "{url}"
    );
}

#[test]
fn vector_v2a_virtual_hosted_signs_the_same_resource() {
    let ep = endpoint(Scheme::Http, "s3.amazonaws.com");
    let c = creds(DOC_AK, DOC_SK, None);
    let p = Case {
        endpoint: &ep,
        addressing: Addressing::Virtual,
        region: "us-east-1",
        bucket: "johnsmith",
        key: "photos/puppy.jpg",
        credentials: &c,
        now: 1_175_139_620 - 60,
        expires_in: 60,
    }
    .params();
    assert_eq!(
        presign_v2(&p).unwrap(),
        "http://johnsmith.s3.amazonaws.com/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE\
         &Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
    );
}

#[test]
fn vector_v2b() {
    let url = v2_url("secret_key", "mybucket", "myobject", 1_427_430_247, None);
    assert!(
        url.ends_with("&Signature=ZRSgywstwIruKLTLt%2FBcrf9H1K4%3D"),
        "{url}"
    );
}

#[test]
fn vector_v2c_response_override() {
    let url = v2_url(
        DOC_SK,
        "johnsmith",
        "photos/puppy.jpg",
        1_175_139_620,
        Some("attachment; filename=\"puppy.jpg\""),
    );
    assert_eq!(
        url,
        "https://s3.amazonaws.com/johnsmith/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE\
         &Expires=1175139620&Signature=rIqRkzneVNcU66Ca4s6FlzxMKfw%3D\
         &response-content-disposition=attachment%3B%20filename%3D%22puppy.jpg%22"
    );
}

#[test]
fn presign_dispatches_on_version() {
    let ep = endpoint(Scheme::Https, "s3.amazonaws.com");
    let c = creds(DOC_AK, DOC_SK, None);
    let p = vector_a_params(&ep, &c);
    assert_eq!(presign(SignatureVersion::V2, &p), presign_v2(&p));
    assert_eq!(presign(SignatureVersion::V4, &p), presign_v4(&p));
    let eight_days = PresignParams {
        expires_in: Duration::from_secs(8 * 86_400),
        ..p
    };
    assert_eq!(
        presign(SignatureVersion::V4, &eight_days),
        Err(SignError::ExpiryOutOfRange {
            seconds: 8 * 86_400,
            max: 604_800
        })
    );
    assert!(presign(SignatureVersion::V2, &eight_days).is_ok());
}

#[test]
fn longest_key_is_signed_unchanged() {
    let key = "k".repeat(1024);
    let ep = endpoint(Scheme::Https, "s3.amazonaws.com");
    let c = creds(DOC_AK, DOC_SK, None);
    let p = PresignParams {
        key: &key,
        addressing: Addressing::Path,
        ..vector_a_params(&ep, &c)
    };
    let path = format!("/examplebucket/{key}?");
    assert!(presign_v4(&p).unwrap().contains(&path));
    assert!(presign_v2(&p).unwrap().contains(&path));
}

/// Splits a presigned URL back into (bucket, key) the way a server does:
/// the path ends at the first `?` and is percent-decoded once.
fn parse_back(url: &str, authority: &str, addressing: Addressing) -> (String, String) {
    let rest = url.split_once("://").expect("scheme").1;
    let (host, path_and_query) = rest.split_at(rest.find('/').expect("path"));
    let (path, _query) = path_and_query.split_once('?').expect("query");
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .expect("utf-8")
            .into_owned()
    };
    match addressing {
        Addressing::Path => {
            assert_eq!(host, authority);
            let (bucket, key) = path[1..].split_once('/').expect("bucket/key");
            (decode(bucket), decode(key))
        }
        Addressing::Virtual => {
            let bucket = host
                .strip_suffix(&format!(".{authority}"))
                .expect("bucket prefix");
            (bucket.to_string(), decode(&path[1..]))
        }
    }
}

/// Non-empty UTF-8 keys of at most 1024 bytes, rich in characters that URLs,
/// paths and shells treat specially.
fn key_strategy() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        " ", "+", "%", "?", "#", "&", "=", "~", "/", "//", ".", "..", "/./", "/../", "%2F", "%20",
        ";", ":", "@", "!", "$", "'", "(", ")", "*", ",", "[", "]", "\\", "\"", "<", ">", "é",
        "日本", "🦀", "\u{0}", "\u{7f}", "\t", "\n",
    ]);
    let piece = prop_oneof![
        special.prop_map(str::to_string),
        any::<char>().prop_map(String::from),
        "[a-z0-9]{1,12}",
    ];
    prop::collection::vec(piece, 1..400).prop_map(|pieces| {
        let mut key = String::new();
        for p in pieces {
            if key.len() + p.len() > 1024 {
                break;
            }
            key.push_str(&p);
        }
        key
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn keys_round_trip_through_presigned_urls(
        key in key_strategy(),
        virtual_style in any::<bool>(),
        v2 in any::<bool>(),
        port in prop::option::of(1u16..),
    ) {
        let ep = Endpoint { scheme: Scheme::Http, host: "s3.example.test".into(), port };
        let addressing = if virtual_style { Addressing::Virtual } else { Addressing::Path };
        let version = if v2 { SignatureVersion::V2 } else { SignatureVersion::V4 };
        let c = creds("AK", "SK", Some("tok"));
        let p = Case {
            endpoint: &ep,
            addressing,
            region: "us-east-1",
            bucket: "my-bucket",
            key: &key,
            credentials: &c,
            now: T_A,
            expires_in: 900,
        }
        .params();
        let url = presign(version, &p).unwrap();
        prop_assert!(url.is_ascii() && !url.contains(' ') && !url.contains('#'));
        let (bucket, parsed_key) = parse_back(&url, &endpoint_authority(&ep), addressing);
        prop_assert_eq!(bucket, "my-bucket");
        prop_assert_eq!(parsed_key, key);
    }
}
