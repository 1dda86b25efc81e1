//! Cross-checks of our presigned URLs against independent implementations:
//! botocore (SigV4 and SigV2 query auth) and `s3cmd signurl` (SigV2).
//!
//! No server or network is involved: the other tools only compute URLs from
//! fixed inputs (a patched clock for botocore, an absolute expiry for
//! s3cmd). A test whose tool is not installed prints a skip message and
//! passes; these complement the known-answer tests in `sign_vectors.rs`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use s3linkfs::sign::encode::encode_key_path;
use s3linkfs::sign::presign::{PresignParams, endpoint_authority, presign};
use s3linkfs::sign::v4::{EMPTY_SHA256, HeaderSigningInput, amz_date, authorization_header};
use s3linkfs::sign::{Addressing, Credentials, Endpoint, Scheme, SignatureVersion};

const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const BUCKET: &str = "my-bucket";
/// 2033-05-18T03:33:20Z; s3cmd gets the absolute expiry NOW + EXPIRES_IN.
const NOW: u64 = 2_000_000_000;
const EXPIRES_IN: u64 = 3600;

/// Keys that stress encoding: reserved characters, dot segments, empty
/// segments, a leading and a trailing `/`, non-ASCII, controls, 1024 bytes.
fn keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "test.txt",
        "a b/c+d",
        "c++",
        "100%/x?y#z&w=v~",
        "dir//./../trailing/",
        "/lead",
        "keyname/.bar",
        "résumé 日本.pdf",
        "🦀/ß",
        "quote\"back\\slash",
        "semi;colon:at@!$'()*,[]<>^`{|}",
        "tab\tand\nnewline",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    keys.push(format!("{}/{}", "é".repeat(300), "k".repeat(423)));
    assert_eq!(keys.last().map(String::len), Some(1024));
    keys
}

/// One presign request; everything else is fixed above.
#[derive(Clone)]
struct Case {
    version: SignatureVersion,
    scheme: Scheme,
    port: Option<u16>,
    addressing: Addressing,
    key: String,
    token: Option<String>,
    disposition: Option<String>,
    content_type: Option<String>,
}

impl Case {
    fn new(version: SignatureVersion, addressing: Addressing, key: &str) -> Case {
        Case {
            version,
            scheme: Scheme::Http,
            port: Some(7480),
            addressing,
            key: key.to_string(),
            token: None,
            disposition: None,
            content_type: None,
        }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            scheme: self.scheme,
            host: "s3.example.test".into(),
            port: self.port,
        }
    }

    fn ours(&self) -> String {
        let endpoint = self.endpoint();
        let credentials = Credentials {
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            session_token: self.token.clone(),
        };
        let p = PresignParams {
            endpoint: &endpoint,
            addressing: self.addressing,
            region: "eu-north-1",
            bucket: BUCKET,
            key: &self.key,
            credentials: &credentials,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(NOW),
            expires_in: Duration::from_secs(EXPIRES_IN),
            response_content_disposition: self.disposition.as_deref(),
            response_content_type: self.content_type.as_deref(),
        };
        presign(self.version, &p).expect("valid inputs")
    }

    fn scheme_str(&self) -> &'static str {
        match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A URL's part before `?` and its query parameters, sorted: tools order
/// parameters differently, and servers do not care.
fn comparable(url: &str) -> (String, Vec<String>) {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<String> = query.split('&').map(str::to_string).collect();
    params.sort();
    (base.to_string(), params)
}

/// True if `program args` runs and exits successfully.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Reads tab-separated, hex-encoded cases from stdin (`-` for none) and
/// prints botocore's presigned URL for each, one per line.
const BOTOCORE_SCRIPT: &str = r#"
import binascii, datetime, sys
from urllib.parse import quote
import botocore.auth
from botocore.auth import HmacV1QueryAuth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

def field(s):
    return None if s == "-" else binascii.unhexlify(s).decode("utf-8")

for line in sys.stdin:
    (version, scheme, authority, addressing, region, bucket, key, ak, sk, token,
     now, expires, rcd, rct) = [field(x) for x in line.rstrip("\n").split("\t")]
    now, expires = int(now), int(expires)
    path = quote(key, safe="/~")
    if addressing == "virtual":
        url = f"{scheme}://{bucket}.{authority}/{path}"
    else:
        url = f"{scheme}://{authority}/{bucket}/{path}"
    params = {}
    if rcd is not None:
        params["response-content-disposition"] = rcd
    if rct is not None:
        params["response-content-type"] = rct
    creds = Credentials(ak, sk, token)
    if version == "v4":
        fixed = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).replace(tzinfo=None)
        botocore.auth.get_current_datetime = lambda: fixed
        req = AWSRequest(method="GET", url=url, params=params)
        S3SigV4QueryAuth(creds, "s3", region, expires=expires).add_auth(req)
    else:
        class FixedExpiry(HmacV1QueryAuth):
            def _get_date(self):
                return str(now + expires)
        query = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
        req = AWSRequest(method="GET", url=url + ("?" + query if query else ""))
        req.auth_path = f"/{bucket}/{path}"
        FixedExpiry(creds, expires=expires).add_auth(req)
    print(req.url, flush=True)
"#;

/// One stdin line for [`BOTOCORE_SCRIPT`].
fn botocore_line(c: &Case) -> String {
    let h = |s: &str| hex::encode(s.as_bytes());
    let opt = |s: &Option<String>| s.as_deref().map_or_else(|| "-".to_string(), h);
    let fields = [
        h(match c.version {
            SignatureVersion::V4 => "v4",
            SignatureVersion::V2 => "v2",
        }),
        h(c.scheme_str()),
        h(&endpoint_authority(&c.endpoint())),
        h(match c.addressing {
            Addressing::Path => "path",
            Addressing::Virtual => "virtual",
        }),
        h("eu-north-1"),
        h(BUCKET),
        h(&c.key),
        h(ACCESS_KEY),
        h(SECRET_KEY),
        opt(&c.token),
        h(&NOW.to_string()),
        h(&EXPIRES_IN.to_string()),
        opt(&c.disposition),
        opt(&c.content_type),
    ];
    fields.join("\t") + "\n"
}

/// botocore's URLs for `cases`, or `None` (with a message) if botocore is
/// not importable.
fn botocore_urls(cases: &[Case]) -> Option<Vec<String>> {
    if !runs("python3", &["-c", "import botocore"]) {
        println!("SKIP: python3 with botocore is not available; botocore cross-check not run");
        return None;
    }
    let mut child = Command::new("python3")
        .args(["-c", BOTOCORE_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let input: String = cases.iter().map(botocore_line).collect();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write cases");
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "botocore script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let urls: Vec<String> = String::from_utf8(out.stdout)
        .expect("ASCII URLs")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(urls.len(), cases.len());
    Some(urls)
}

/// Every key, both styles, both versions, with and without a session token
/// and response overrides.
fn botocore_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for version in [SignatureVersion::V4, SignatureVersion::V2] {
        for addressing in [Addressing::Path, Addressing::Virtual] {
            for key in keys() {
                cases.push(Case::new(version, addressing, &key));
            }
            let base = Case::new(version, addressing, "dir/résumé.pdf");
            cases.push(Case {
                token: Some("FQoGZXIvYXdzE/token+with=odd&chars".into()),
                ..base.clone()
            });
            cases.push(Case {
                disposition: Some(s3linkfs::disposition::attachment_for("résumé \"1\".pdf")),
                content_type: Some("application/pdf; charset=binary".into()),
                ..base.clone()
            });
            cases.push(Case {
                scheme: Scheme::Https,
                port: None,
                token: Some("tok".into()),
                disposition: Some("inline".into()),
                ..base
            });
        }
    }
    cases
}

#[test]
fn presigned_urls_match_botocore() {
    let cases = botocore_cases();
    let Some(theirs) = botocore_urls(&cases) else {
        return;
    };
    for (case, their_url) in cases.iter().zip(&theirs) {
        let ours = case.ours();
        assert_eq!(
            comparable(&ours),
            comparable(their_url),
            "\nours:     {ours}\nbotocore: {their_url}"
        );
    }
}

/// `s3cmd signurl` for `case`, using a throw-away config in `dir`. s3cmd
/// knows no session token.
fn s3cmd_url(case: &Case, dir: &std::path::Path) -> String {
    let authority = endpoint_authority(&case.endpoint());
    let host_bucket = match case.addressing {
        Addressing::Path => authority.clone(),
        Addressing::Virtual => format!("%(bucket)s.{authority}"),
    };
    let config = dir.join("s3cfg");
    std::fs::write(
        &config,
        format!(
            "[default]\naccess_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\n\
             host_base = {authority}\nhost_bucket = {host_bucket}\nsignature_v2 = True\n\
             use_https = False\nsignurl_use_https = {}\n",
            if case.scheme == Scheme::Https {
                "True"
            } else {
                "False"
            }
        ),
    )
    .expect("write s3cmd config");
    let mut cmd = Command::new("s3cmd");
    cmd.arg("-c").arg(&config);
    if let Some(d) = &case.disposition {
        cmd.arg("--content-disposition").arg(d);
    }
    if let Some(t) = &case.content_type {
        cmd.arg("--content-type").arg(t);
    }
    cmd.arg("signurl")
        .arg(format!("s3://{BUCKET}/{}", case.key))
        .arg((NOW + EXPIRES_IN).to_string());
    // Only the config file may supply credentials.
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ACCESS_KEY",
        "AWS_SECRET_KEY",
        "AWS_SECURITY_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .env("LC_ALL", "C.UTF-8")
        .env("PYTHONIOENCODING", "utf-8")
        .output()
        .expect("run s3cmd");
    assert!(
        out.status.success(),
        "s3cmd failed for {:?}: {}",
        case.key,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("ASCII URL")
        .trim_end()
        .to_string()
}

#[test]
fn sigv2_urls_match_s3cmd_signurl() {
    if !runs("s3cmd", &["--version"]) {
        println!("SKIP: s3cmd is not installed; s3cmd signurl cross-check not run");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cases: Vec<Case> = keys()
        .iter()
        // s3cmd's S3Uri parsing drops whatever follows a newline.
        .filter(|k| !k.contains('\n'))
        .map(|k| Case::new(SignatureVersion::V2, Addressing::Path, k))
        .collect();
    for key in ["a b/c+d", "résumé 日本.pdf", "dir//./../trailing/"] {
        cases.push(Case {
            scheme: Scheme::Https,
            port: None,
            ..Case::new(SignatureVersion::V2, Addressing::Virtual, key)
        });
    }
    cases.push(Case {
        disposition: Some("attachment; filename=\"x y.pdf\"".into()),
        content_type: Some("text/plain".into()),
        ..Case::new(SignatureVersion::V2, Addressing::Path, "k")
    });
    cases.push(Case {
        disposition: Some(s3linkfs::disposition::attachment_for("résumé.pdf")),
        ..Case::new(SignatureVersion::V2, Addressing::Path, "dir/résumé.pdf")
    });
    for case in &cases {
        // s3cmd prints the parameters in the same order as we do.
        assert_eq!(
            case.ours(),
            s3cmd_url(case, dir.path()),
            "key {:?}",
            case.key
        );
    }
}

/// Reads tab-separated, hex-encoded header-auth cases from stdin (method,
/// host, encoded path, NUL-separated query pairs, NUL-separated extra
/// headers, token or `-`, Unix time) and prints botocore's `Authorization`
/// for each. Plain HTTP makes botocore sign the (empty) payload, as we do.
const BOTOCORE_HEADER_SCRIPT: &str = r#"
import binascii, datetime, sys
import botocore.auth
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

def field(s):
    return None if s == "-" else binascii.unhexlify(s).decode("utf-8")

def pairs(s):
    items = s.split("\0") if s else []
    return list(zip(items[0::2], items[1::2]))

for line in sys.stdin:
    method, host, path, query, headers, token, now = [field(x) for x in line.rstrip("\n").split("\t")]
    fixed = datetime.datetime.fromtimestamp(int(now), datetime.timezone.utc).replace(tzinfo=None)
    botocore.auth.get_current_datetime = lambda: fixed
    req = AWSRequest(method=method, url=f"http://{host}{path}", params=dict(pairs(query)), data=b"")
    for k, v in pairs(headers):
        req.headers[k] = v
    S3SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
                "s3", "garage").add_auth(req)
    print(req.headers["Authorization"], flush=True)
"#;

/// A header-authenticated request to cross-check.
struct HeaderCase {
    method: &'static str,
    key: String,
    query: Vec<(String, String)>,
    extra_headers: Vec<(String, String)>,
    token: Option<String>,
}

fn header_cases() -> Vec<HeaderCase> {
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    let mut cases: Vec<HeaderCase> = keys()
        .into_iter()
        .map(|key| HeaderCase {
            method: "GET",
            key,
            query: vec![],
            extra_headers: vec![pair("Range", "bytes=0-9")],
            token: None,
        })
        .collect();
    cases.push(HeaderCase {
        method: "GET",
        key: String::new(),
        query: vec![
            pair("list-type", "2"),
            pair("prefix", "dir with space/ü+%"),
            pair("delimiter", "/"),
            pair("continuation-token", "1/abc+=="),
        ],
        extra_headers: vec![],
        token: Some("session/token+=".into()),
    });
    cases.push(HeaderCase {
        method: "PUT",
        key: "c++/résumé.pdf".into(),
        query: vec![],
        extra_headers: vec![
            pair(
                "x-amz-copy-source",
                "/my-bucket/c%2B%2B/r%C3%A9sum%C3%A9.pdf",
            ),
            pair("x-amz-metadata-directive", "REPLACE"),
            pair(
                "x-amz-copy-source-if-match",
                "\"9b2cf535f27731c974343645a3985328\"",
            ),
            pair("Content-Disposition", "attachment; filename=\"bar.pdf\""),
            pair("Content-Type", "application/pdf"),
            pair("x-amz-meta-Owner", "  Some   One  "),
        ],
        token: None,
    });
    cases.push(HeaderCase {
        method: "POST",
        key: "big.bin".into(),
        query: vec![pair("uploads", "")],
        extra_headers: vec![],
        token: None,
    });
    cases
}

#[test]
fn authorization_header_matches_botocore() {
    if !runs("python3", &["-c", "import botocore"]) {
        println!("SKIP: python3 with botocore is not available; header-auth cross-check not run");
        return;
    }
    let host = "127.0.0.1:3900";
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
    let h = |s: &str| hex::encode(s.as_bytes());
    let nul_joined = |pairs: &[(String, String)]| {
        pairs
            .iter()
            .flat_map(|(k, v)| [k.as_str(), v.as_str()])
            .collect::<Vec<_>>()
            .join("\0")
    };
    let cases = header_cases();
    let path_of = |c: &HeaderCase| format!("/{BUCKET}/{}", encode_key_path(&c.key));
    let input: String = cases
        .iter()
        .map(|c| {
            let fields = [
                h(c.method),
                h(host),
                h(&path_of(c)),
                h(&nul_joined(&c.query)),
                h(&nul_joined(&c.extra_headers)),
                c.token.as_deref().map_or_else(|| "-".to_string(), h),
                h(&NOW.to_string()),
            ];
            fields.join("\t") + "\n"
        })
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", BOTOCORE_HEADER_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write cases");
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "botocore script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = String::from_utf8(out.stdout).expect("ASCII");
    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(theirs.len(), cases.len());

    for (c, their_auth) in cases.iter().zip(theirs) {
        let credentials = Credentials {
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            session_token: c.token.clone(),
        };
        let mut headers = vec![
            ("host".to_string(), host.to_string()),
            ("x-amz-date".to_string(), amz_date(now)),
            ("x-amz-content-sha256".to_string(), EMPTY_SHA256.to_string()),
        ];
        if let Some(t) = &c.token {
            headers.push(("x-amz-security-token".to_string(), t.clone()));
        }
        headers.extend(c.extra_headers.iter().cloned());
        let path = path_of(c);
        let input = HeaderSigningInput {
            method: c.method,
            canonical_path: &path,
            query: &c.query,
            headers: &headers,
            payload_hash: EMPTY_SHA256,
            region: "garage",
            service: "s3",
            now,
        };
        assert_eq!(
            authorization_header(&input, &credentials),
            their_auth,
            "{} {path}",
            c.method
        );
    }
}
