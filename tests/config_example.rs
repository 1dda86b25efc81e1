//! config/example.toml is documentation that must stay loadable: every profile
//! in it validates, and it mentions every key the loader accepts.

use std::path::PathBuf;

use s3linkfs::config::{Environment, LoadOptions, load, parse_config};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/example.toml")
}

#[test]
fn every_example_profile_loads() {
    let text = std::fs::read_to_string(example()).unwrap();
    let raw = parse_config(&example(), &text).unwrap();
    assert!(raw.profiles.len() >= 2);
    let env = Environment::new(None);
    for name in raw.profiles.keys() {
        let o = LoadOptions {
            config_file: Some(example()),
            profile: Some(name.clone()),
        };
        let loaded = load(&o, &env).unwrap_or_else(|e| panic!("profile {name}: {e}"));
        assert_eq!(&loaded.profile.name, name);
    }
}

#[test]
fn example_documents_every_key() {
    let text = std::fs::read_to_string(example()).unwrap();
    for key in [
        "default_profile",
        "endpoint",
        "region",
        "access_key",
        "secret_key",
        "session_token",
        "addressing",
        "signature",
        "presign_endpoint",
        "presign_expires",
        "uid",
        "gid",
        "file_mode",
        "dir_mode",
        "allow_other",
        "allow_root",
        "metadata_ttl",
        "negative_ttl",
        "cache_size",
        "cache_dir",
        "cache_dir_size",
        "max_threads",
        "log_file",
        "read_only",
        "allow_misleading_names",
        "content_disposition",
    ] {
        assert!(
            text.contains(&format!("\n{key} = ")) || text.contains(&format!("\n# {key} = ")),
            "config/example.toml does not document `{key}`"
        );
    }
}
