//! The profile loader against files in a temporary home directory and an
//! injected environment: which source wins, defaults, and the error messages.
//! No network, and the real environment is never read.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use s3linkfs::config::{ConfigError, Environment, LoadOptions, Loaded, load};
use s3linkfs::sign::{Addressing, Scheme, SignatureVersion};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    /// Writes `rel` under the home directory with mode 0600 and returns its path.
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        p
    }
    fn config(&self, text: &str) -> PathBuf {
        self.write(".config/s3linkfs/config.toml", text)
    }
    fn env(&self) -> Environment {
        Environment::new(Some(self.path().to_path_buf()))
    }
}

fn opts(profile: Option<&str>) -> LoadOptions {
    LoadOptions {
        config_file: None,
        profile: profile.map(str::to_string),
    }
}

fn load_ok(o: &LoadOptions, env: &Environment) -> Loaded {
    match load(o, env) {
        Ok(l) => l,
        Err(e) => panic!("load failed: {e}"),
    }
}

fn load_err(o: &LoadOptions, env: &Environment) -> String {
    match load(o, env) {
        Ok(l) => panic!("expected an error, got {:?}", l.profile),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains(SECRET), "secret in message: {msg}");
            msg
        }
    }
}

const FULL: &str = r#"
default_profile = "kna1"
[profiles.kna1]
endpoint = "https://s3-kna1.citycloud.com:8080"
region = "eu-north-1"
access_key = "AKIDEXAMPLE"
secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
session_token = "TOKEN"
addressing = "virtual"
signature = "v2"
presign_endpoint = "https://files.example.com"
presign_expires = "30d"

[profiles.local]
endpoint = "http://127.0.0.1:7480"
access_key = "LOCAL"
secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
"#;

#[test]
fn full_profile_from_default_profile() {
    let h = Home::new();
    let path = h.config(FULL);
    let l = load_ok(&opts(None), &h.env());
    assert_eq!(l.config_file.as_deref(), Some(path.as_path()));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let p = l.profile;
    assert_eq!(p.name, "kna1");
    assert_eq!(p.endpoint.scheme, Scheme::Https);
    assert_eq!(p.endpoint.host, "s3-kna1.citycloud.com");
    assert_eq!(p.endpoint.port, Some(8080));
    assert_eq!(p.region, "eu-north-1");
    assert_eq!(p.credentials.access_key, "AKIDEXAMPLE");
    assert_eq!(p.credentials.secret_key, SECRET);
    assert_eq!(p.credentials.session_token.as_deref(), Some("TOKEN"));
    assert_eq!(p.addressing, Addressing::Virtual);
    assert_eq!(p.signature, SignatureVersion::V2);
    assert_eq!(p.presign_endpoint.unwrap().host, "files.example.com");
    assert_eq!(p.presign_expires, Duration::from_secs(30 * 86400));
}

#[test]
fn defaults_and_profile_flag() {
    let h = Home::new();
    h.config(FULL);
    let p = load_ok(&opts(Some("local")), &h.env()).profile;
    assert_eq!(p.name, "local");
    assert_eq!(p.endpoint.scheme, Scheme::Http);
    assert_eq!(p.region, "us-east-1");
    assert_eq!(p.addressing, Addressing::Path);
    assert_eq!(p.signature, SignatureVersion::V4);
    assert!(p.presign_endpoint.is_none());
    assert_eq!(p.presign_expires, Duration::from_secs(604_800));
    assert_eq!(p.credentials.session_token, None);
}

#[test]
fn debug_output_has_no_secret() {
    let h = Home::new();
    h.config(FULL);
    let l = load_ok(&opts(None), &h.env());
    let d = format!("{l:?}");
    assert!(!d.contains(SECRET) && !d.contains("TOKEN"), "{d}");
}

#[test]
fn explicit_config_file_and_env_variable() {
    let h = Home::new();
    let other = h.write(
        "elsewhere.toml",
        "[profiles.default]\naccess_key = \"A1\"\nsecret_key = \"S1\"\n",
    );
    let o = LoadOptions {
        config_file: Some(other.clone()),
        profile: None,
    };
    assert_eq!(load_ok(&o, &h.env()).profile.credentials.access_key, "A1");
    let env = h.env().with_var("S3LINKFS_CONFIG", other.to_str().unwrap());
    assert_eq!(
        load_ok(&opts(None), &env).profile.credentials.access_key,
        "A1"
    );
    // --config wins over S3LINKFS_CONFIG
    let third = h.write(
        "third.toml",
        "[profiles.default]\naccess_key = \"A3\"\nsecret_key = \"S3\"\n",
    );
    let o = LoadOptions {
        config_file: Some(third),
        profile: None,
    };
    assert_eq!(load_ok(&o, &env).profile.credentials.access_key, "A3");
}

#[test]
fn xdg_config_home_is_used() {
    let h = Home::new();
    h.write(
        "xdg/s3linkfs/config.toml",
        "[profiles.default]\naccess_key = \"X\"\nsecret_key = \"S\"\n",
    );
    let env = h
        .env()
        .with_var("XDG_CONFIG_HOME", h.path().join("xdg").to_str().unwrap());
    assert_eq!(
        load_ok(&opts(None), &env).profile.credentials.access_key,
        "X"
    );
}

#[test]
fn explicit_config_file_must_exist() {
    let h = Home::new();
    let o = LoadOptions {
        config_file: Some(h.path().join("nope.toml")),
        profile: None,
    };
    let msg = load_err(&o, &h.env().with_var("AWS_ACCESS_KEY_ID", "A"));
    assert!(
        msg.contains("nope.toml") && msg.contains("cannot read"),
        "{msg}"
    );
    let env = h.env().with_var(
        "S3LINKFS_CONFIG",
        h.path().join("gone.toml").to_str().unwrap(),
    );
    let msg = load_err(&opts(None), &env);
    assert!(msg.contains("gone.toml"), "{msg}");
}

#[test]
fn environment_only_without_any_file() {
    let h = Home::new();
    let env = h
        .env()
        .with_var("AWS_ACCESS_KEY_ID", "ENVKEY")
        .with_var("AWS_SECRET_ACCESS_KEY", SECRET)
        .with_var("AWS_SESSION_TOKEN", "ENVTOKEN")
        .with_var("AWS_DEFAULT_REGION", "eu-west-1")
        .with_var("AWS_REGION", "eu-west-3")
        .with_var("AWS_ENDPOINT_URL", "http://127.0.0.1:3900");
    let l = load_ok(&opts(None), &env);
    assert!(l.config_file.is_none());
    let p = l.profile;
    assert_eq!(p.name, "default");
    assert_eq!(p.credentials.access_key, "ENVKEY");
    assert_eq!(p.credentials.session_token.as_deref(), Some("ENVTOKEN"));
    assert_eq!(p.region, "eu-west-3", "AWS_REGION beats AWS_DEFAULT_REGION");
    assert_eq!(
        (p.endpoint.host.as_str(), p.endpoint.port),
        ("127.0.0.1", Some(3900))
    );
}

#[test]
fn aws_endpoint_when_none_is_configured() {
    let h = Home::new();
    let env = h
        .env()
        .with_var("AWS_ACCESS_KEY_ID", "K")
        .with_var("AWS_SECRET_ACCESS_KEY", "S")
        .with_var("AWS_REGION", "eu-north-1");
    let p = load_ok(&opts(None), &env).profile;
    assert_eq!(p.endpoint.scheme, Scheme::Https);
    assert_eq!(p.endpoint.host, "s3.eu-north-1.amazonaws.com");
}

#[test]
fn file_beats_environment_per_setting() {
    let h = Home::new();
    h.config("[profiles.default]\nregion = \"garage\"\n");
    let env = h
        .env()
        .with_var("AWS_ACCESS_KEY_ID", "ENVKEY")
        .with_var("AWS_SECRET_ACCESS_KEY", "S")
        .with_var("AWS_REGION", "eu-west-1")
        .with_var("AWS_ENDPOINT_URL", "http://127.0.0.1:3900");
    let p = load_ok(&opts(None), &env).profile;
    assert_eq!(p.region, "garage");
    assert_eq!(
        p.credentials.access_key, "ENVKEY",
        "file has no keys: environment"
    );
    assert_eq!(p.endpoint.port, Some(3900));
}

const AWS_CREDENTIALS: &str = "[default]\naws_access_key_id = DEFKEY\naws_secret_access_key = DEFSECRET\n\
[work]\naws_access_key_id = WORKKEY\naws_secret_access_key = WORK#SECRET\naws_session_token = WT\n";
const AWS_CONFIG: &str = "[default]\nregion = us-west-2\n\
[profile work]\nregion = eu-central-1\nendpoint_url = https://objects.example.net\ns3 =\n    addressing_style = virtual\n\
[profile cfgonly]\naws_access_key_id = CFGKEY\naws_secret_access_key = CFGSECRET\nendpoint_url = http://localhost:9000\n";

#[test]
fn aws_cli_files_default_profile() {
    let h = Home::new();
    h.write(".aws/credentials", AWS_CREDENTIALS);
    h.write(".aws/config", AWS_CONFIG);
    let p = load_ok(&opts(None), &h.env()).profile;
    assert_eq!(p.credentials.access_key, "DEFKEY");
    assert_eq!(p.region, "us-west-2");
    assert_eq!(p.endpoint.host, "s3.us-west-2.amazonaws.com");
}

#[test]
fn aws_cli_files_named_profile() {
    let h = Home::new();
    h.write(".aws/credentials", AWS_CREDENTIALS);
    h.write(".aws/config", AWS_CONFIG);
    let p = load_ok(&opts(Some("work")), &h.env()).profile;
    assert_eq!(p.name, "work");
    assert_eq!(p.credentials.access_key, "WORKKEY");
    assert_eq!(p.credentials.secret_key, "WORK#SECRET");
    assert_eq!(p.credentials.session_token.as_deref(), Some("WT"));
    assert_eq!(p.region, "eu-central-1");
    assert_eq!(p.endpoint.host, "objects.example.net");
    assert_eq!(p.addressing, Addressing::Virtual);
    // credentials kept in ~/.aws/config work too
    let p = load_ok(&opts(Some("cfgonly")), &h.env()).profile;
    assert_eq!(p.credentials.access_key, "CFGKEY");
    assert_eq!(p.endpoint.port, Some(9000));
}

#[test]
fn aws_profile_variable_and_file_overrides() {
    let h = Home::new();
    let creds = h.write("elsewhere/creds", AWS_CREDENTIALS);
    let conf = h.write("elsewhere/conf", AWS_CONFIG);
    let env = h
        .env()
        .with_var("AWS_PROFILE", "work")
        .with_var("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap())
        .with_var("AWS_CONFIG_FILE", conf.to_str().unwrap());
    let p = load_ok(&opts(None), &env).profile;
    assert_eq!(p.name, "work");
    assert_eq!(p.credentials.access_key, "WORKKEY");
}

#[test]
fn explicit_profile_ignores_environment_keys() {
    let h = Home::new();
    h.write(".aws/credentials", AWS_CREDENTIALS);
    let env = h
        .env()
        .with_var("AWS_ACCESS_KEY_ID", "ENVKEY")
        .with_var("AWS_SECRET_ACCESS_KEY", "S");
    assert_eq!(
        load_ok(&opts(Some("work")), &env)
            .profile
            .credentials
            .access_key,
        "WORKKEY"
    );
    // without --profile the environment's keys beat ~/.aws, as with the aws CLI
    assert_eq!(
        load_ok(&opts(None), &env).profile.credentials.access_key,
        "ENVKEY"
    );
}

#[test]
fn s3linkfs_file_beats_aws_files_for_the_same_name() {
    let h = Home::new();
    h.write(".aws/credentials", AWS_CREDENTIALS);
    h.write(".aws/config", AWS_CONFIG);
    h.config("[profiles.work]\nendpoint = \"http://127.0.0.1:7480\"\n");
    let p = load_ok(&opts(Some("work")), &h.env()).profile;
    assert_eq!(p.endpoint.host, "127.0.0.1");
    assert_eq!(
        p.credentials.access_key, "WORKKEY",
        "keys still from ~/.aws"
    );
    assert_eq!(p.region, "eu-central-1");
}

#[test]
fn unknown_profile_is_an_error() {
    let h = Home::new();
    h.config(FULL);
    let msg = load_err(&opts(Some("nosuch")), &h.env());
    assert!(msg.contains("profile `nosuch` not found"), "{msg}");
    assert!(msg.contains("config.toml"), "{msg}");
    // the file's default_profile wins over AWS_PROFILE
    let env = h.env().with_var("AWS_PROFILE", "gone");
    assert_eq!(load_ok(&opts(None), &env).profile.name, "kna1");
}

#[test]
fn aws_profile_not_found() {
    let h = Home::new();
    let msg = load_err(&opts(None), &h.env().with_var("AWS_PROFILE", "gone"));
    assert!(msg.contains("profile `gone` not found"), "{msg}");
}

#[test]
fn default_profile_naming_a_missing_profile() {
    let h = Home::new();
    h.config(
        "default_profile = \"typo\"\n[profiles.real]\naccess_key = \"A\"\nsecret_key = \"S\"\n",
    );
    let msg = load_err(&opts(None), &h.env());
    assert!(msg.contains("profile `typo` not found"), "{msg}");
}

#[test]
fn no_credentials_anywhere() {
    let h = Home::new();
    h.config("[profiles.default]\nendpoint = \"http://127.0.0.1:7480\"\n");
    let msg = load_err(&opts(None), &h.env());
    assert!(msg.contains("no credentials"), "{msg}");
    assert!(msg.contains("AWS_ACCESS_KEY_ID"), "{msg}");
}

fn invalid(profile_body: &str) -> String {
    let h = Home::new();
    h.config(&format!(
        "[profiles.p]\naccess_key = \"A\"\nsecret_key = \"{SECRET}\"\n{profile_body}\n"
    ));
    let msg = load_err(&opts(Some("p")), &h.env());
    assert!(msg.contains("config.toml"), "file not named: {msg}");
    msg
}

#[test]
fn bad_values_name_file_profile_and_key() {
    let cases = [
        ("endpoint = \"s3.example.com\"", "endpoint"),
        ("endpoint = \"https://h/prefix\"", "endpoint"),
        ("presign_endpoint = \"ftp://x\"", "presign_endpoint"),
        ("addressing = \"vhost\"", "addressing"),
        ("signature = \"v3\"", "signature"),
        ("presign_expires = \"soon\"", "presign_expires"),
        ("presign_expires = \"8d\"", "presign_expires"),
        ("region = \"eu west\"", "region"),
        ("region = \"\"", "region"),
    ];
    for (body, key) in cases {
        let msg = invalid(body);
        assert!(msg.contains("[profiles.p]"), "{body}: {msg}");
        assert!(msg.contains(key), "{body}: {msg}");
    }
    assert!(invalid("presign_expires = \"8d\"").contains("7d"));
}

#[test]
fn long_expiry_is_fine_with_sigv2() {
    let h = Home::new();
    h.config("[profiles.p]\naccess_key = \"A\"\nsecret_key = \"S\"\nsignature = \"v2\"\npresign_expires = \"365d\"\n");
    let p = load_ok(&opts(Some("p")), &h.env()).profile;
    assert_eq!(p.presign_expires, Duration::from_secs(365 * 86400));
}

#[test]
fn half_credentials_are_refused() {
    let h = Home::new();
    h.config("[profiles.p]\naccess_key = \"A\"\n");
    let env = h
        .env()
        .with_var("AWS_ACCESS_KEY_ID", "K")
        .with_var("AWS_SECRET_ACCESS_KEY", "S");
    let msg = load_err(&opts(Some("p")), &env);
    assert!(
        msg.contains("[profiles.p]") && msg.contains("secret_key"),
        "{msg}"
    );

    let h = Home::new();
    let env = h.env().with_var("AWS_SECRET_ACCESS_KEY", SECRET);
    let msg = load_err(&opts(None), &env);
    assert!(
        msg.contains("environment") && msg.contains("AWS_ACCESS_KEY_ID"),
        "{msg}"
    );
}

#[test]
fn secret_with_control_characters_is_refused_without_echo() {
    let h = Home::new();
    h.config(&format!(
        "[profiles.p]\naccess_key = \"A\"\nsecret_key = \"{SECRET}\\n\"\n"
    ));
    let msg = load_err(&opts(Some("p")), &h.env());
    assert!(msg.contains("secret_key"), "{msg}");
}

#[test]
fn syntax_and_unknown_keys() {
    let h = Home::new();
    h.config("default_profile = \"p\"\n[profiles.p]\nendpoint = \"http://h\"\nregoin = \"x\"\n");
    let msg = load_err(&opts(None), &h.env());
    assert!(msg.contains("config.toml:4:"), "{msg}");
    assert!(msg.contains("regoin"), "{msg}");

    h.config("[profiles.p]\nsecret_key = \"unterminated\n");
    let msg = load_err(&opts(None), &h.env());
    assert!(msg.contains("config.toml:2:"), "{msg}");
    assert!(!msg.contains("unterminated"), "value echoed: {msg}");

    h.config("typo_top = 1\n");
    let msg = load_err(&opts(None), &h.env());
    assert!(msg.contains("typo_top"), "{msg}");
    assert!(matches!(
        load(&opts(None), &h.env()),
        Err(ConfigError::Parse { line: 1, .. })
    ));
}

#[test]
fn readable_secret_file_warns_like_ssh() {
    let h = Home::new();
    let path = h.config(FULL);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let l = load_ok(&opts(None), &h.env());
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(l.warnings[0].contains("0644"), "{}", l.warnings[0]);
    assert!(l.warnings[0].contains("chmod 600"), "{}", l.warnings[0]);

    // no secret in the file: no warning
    h.config("[profiles.default]\nendpoint = \"http://h\"\n");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let env = h
        .env()
        .with_var("AWS_ACCESS_KEY_ID", "K")
        .with_var("AWS_SECRET_ACCESS_KEY", "S");
    assert!(load_ok(&opts(None), &env).warnings.is_empty());
}
