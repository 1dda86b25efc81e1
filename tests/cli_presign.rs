//! `s3linkfs presign` as a process: output shape, exit codes and messages for
//! bad input. No network: presign never makes a request, so no server is needed.
//! Each run gets an empty environment and a throw-away `$HOME`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use common::{TempConfig, isolated_bin};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn rgw_config(extra: &str) -> TempConfig {
    TempConfig::new(&format!(
        "[profiles.default]\nendpoint = \"http://127.0.0.1:7480\"\naccess_key = \"AKIDEXAMPLE\"\n\
         secret_key = \"{SECRET}\"\n{extra}\n"
    ))
}

fn run(cfg: &TempConfig, args: &[&str]) -> Output {
    let out = isolated_bin(cfg.dir())
        .arg("presign")
        .arg("--config")
        .arg(&cfg.path)
        .args(args)
        .output()
        .unwrap();
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(SECRET),
            "secret printed"
        );
    }
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a usage/config failure: exit code 2, nothing on stdout, `needle` on stderr.
fn fails_with(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(out));
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    assert!(
        stderr(out).contains(needle),
        "expected {needle:?} in: {}",
        stderr(out)
    );
}

#[test]
fn prints_one_url_line() {
    let cfg = rgw_config("");
    let out = run(&cfg, &["s3://bucket/dir/a b.txt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.ends_with('\n') && text.lines().count() == 1,
        "{text:?}"
    );
    assert!(
        text.starts_with(
            "http://127.0.0.1:7480/bucket/dir/a%20b.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&"
        ),
        "{text}"
    );
    assert!(text.contains("X-Amz-Expires=604800&"), "default 7d: {text}");
}

#[test]
fn expiry_and_signature_options() {
    let cfg = rgw_config("");
    let out = run(&cfg, &["s3://b/k", "--expires-in", "15m"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("X-Amz-Expires=900&"));
    let out = run(
        &cfg,
        &["s3://b/k", "--signature", "v2", "--expires-in", "30d"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let url = String::from_utf8(out.stdout).unwrap();
    assert!(url.contains("AWSAccessKeyId=AKIDEXAMPLE"), "{url}");
    assert!(
        url.contains("Expires=") && url.contains("Signature="),
        "{url}"
    );
}

#[test]
fn sigv4_over_seven_days_is_refused() {
    let cfg = rgw_config("");
    fails_with(&run(&cfg, &["s3://b/k", "--expires-in", "8d"]), "7 days");
    fails_with(
        &run(&cfg, &["s3://b/k", "--expires-in", "604801"]),
        "--expires-in",
    );
    assert!(
        run(&cfg, &["s3://b/k", "--expires-in", "604800"])
            .status
            .success()
    );
    // a v2 profile default of 30d with --signature v4 forced
    let cfg = rgw_config("signature = \"v2\"\npresign_expires = \"30d\"");
    assert!(run(&cfg, &["s3://b/k"]).status.success());
    fails_with(
        &run(&cfg, &["s3://b/k", "--signature", "v4"]),
        "presign_expires",
    );
}

#[test]
fn bad_arguments_exit_2() {
    let cfg = rgw_config("");
    fails_with(&run(&cfg, &["s3://bucket"]), "s3://BUCKET/KEY");
    fails_with(&run(&cfg, &["s3://bucket/"]), "empty key");
    fails_with(&run(&cfg, &["bucket/key"]), "s3://BUCKET/KEY");
    fails_with(&run(&cfg, &["s3:///key"]), "empty bucket");
    fails_with(
        &run(&cfg, &["s3://b/k", "--expires-in", "0"]),
        "--expires-in",
    );
    fails_with(
        &run(&cfg, &["s3://b/k", "--expires-in", "1w"]),
        "--expires-in",
    );
    fails_with(
        &run(&cfg, &["s3://b/k", "--signature", "v3"]),
        "--signature",
    );
    fails_with(
        &run(&cfg, &["s3://b/k", "--download-as", ""]),
        "--download-as",
    );
    fails_with(
        &run(&cfg, &[&format!("s3://b/{}", "k".repeat(1025))]),
        "1024",
    );
    fails_with(&run(&cfg, &["s3://b/k", "--bogus"]), "--bogus");
    fails_with(&run(&cfg, &[]), "s3://BUCKET/KEY");
    // the signer's bucket check, reported with the object named
    fails_with(&run(&cfg, &["s3://bad|bucket/k"]), "s3://bad|bucket/k");
}

#[test]
fn help_and_version_exit_0() {
    let home = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["presign", "--help"], &["--version"]] {
        let out = isolated_bin(home.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
    let out = isolated_bin(home.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no subcommand is a usage error");
}

#[test]
fn config_errors_exit_2_naming_file_and_key() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("missing.toml");
    let out = isolated_bin(home.path())
        .args(["presign", "--config"])
        .arg(&missing)
        .arg("s3://b/k")
        .output()
        .unwrap();
    fails_with(&out, "missing.toml");

    let cfg = rgw_config("adressing = \"path\"");
    let out = run(&cfg, &["s3://b/k"]);
    fails_with(&out, "config.toml:5");
    fails_with(&out, "adressing");

    let cfg = rgw_config("endpoint_typo = 1\naddressing = \"sideways\"");
    fails_with(&run(&cfg, &["s3://b/k"]), "endpoint_typo");

    let cfg = TempConfig::new(
        "[profiles.default]\nendpoint = \"http://h\"\naddressing = \"sideways\"\naccess_key = \"A\"\nsecret_key = \"S\"\n",
    );
    let out = run(&cfg, &["s3://b/k"]);
    fails_with(&out, "[profiles.default]: addressing: `sideways`");
    assert_eq!(
        stderr(&out).lines().count(),
        1,
        "one line: {}",
        stderr(&out)
    );

    let cfg = rgw_config("");
    fails_with(
        &run(&cfg, &["--profile", "nosuch", "s3://b/k"]),
        "profile `nosuch` not found",
    );
}

#[test]
fn no_credentials_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let out = isolated_bin(home.path())
        .args(["presign", "s3://b/k"])
        .output()
        .unwrap();
    fails_with(&out, "no credentials");
}

#[test]
fn environment_only_profile() {
    let home = tempfile::tempdir().unwrap();
    let out = isolated_bin(home.path())
        .env("AWS_ACCESS_KEY_ID", "ENVKEY")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "garage")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:3900")
        .args(["presign", "s3://b/k"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let url = String::from_utf8(out.stdout).unwrap();
    assert!(url.starts_with("http://127.0.0.1:3900/b/k?"), "{url}");
    assert!(
        url.contains("ENVKEY%2F") && url.contains("%2Fgarage%2Fs3%2Faws4_request"),
        "{url}"
    );
}

#[test]
fn readable_config_with_secret_warns_but_works() {
    let cfg = rgw_config("");
    fs::set_permissions(&cfg.path, fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&cfg, &["s3://b/k"]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("WARNING") && stderr(&out).contains("chmod 600"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn presign_endpoint_and_download_name() {
    let cfg = rgw_config("presign_endpoint = \"https://files.example.com\"");
    let out = run(&cfg, &["s3://b/k", "--download-as", "résumé.pdf"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let url = String::from_utf8(out.stdout).unwrap();
    assert!(url.starts_with("https://files.example.com/b/k?"), "{url}");
    assert!(
        url.contains("response-content-disposition=attachment%3B"),
        "{url}"
    );
    assert!(
        url.contains("filename%2A%3DUTF-8%27%27r%25C3%25A9sum%25C3%25A9.pdf"),
        "{url}"
    );
}
