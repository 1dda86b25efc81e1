//! Real mounts of the built binary against a real server (RGW or Garage):
//! reads, listings and metadata through the kernel.

mod common;

use common::mount::Mount;
use common::{fixture_bytes, test_server, unique_name};

#[test]
fn ls_stat_cat_cmp_at_size_edges() {
    let Some(ts) = test_server() else { return };
    let prefix = unique_name("mnt-sizes");
    let mib = 1024 * 1024;
    let sizes = [0usize, 1, mib - 1, mib, mib + 1];
    let bodies: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .map(|s| (format!("{prefix}/s{s}"), fixture_bytes(*s, *s as u8)))
        .collect();
    let refs: Vec<(&str, &[u8])> = bodies.iter().map(|(k, b)| (k.as_str(), &b[..])).collect();
    ts.put_fixtures(&ts.bucket, &refs);

    let m = Mount::bucket(&ts, &format!("{prefix}/"), &[]);
    let mut names: Vec<String> = std::fs::read_dir(&m.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want: Vec<String> = sizes.iter().map(|s| format!("s{s}")).collect();
    want.sort();
    assert_eq!(names, want);
    for (s, (_, body)) in sizes.iter().zip(&bodies) {
        let p = m.join(&format!("s{s}"));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), *s as u64);
        assert!(std::fs::read(&p).unwrap() == *body, "content of s{s}");
    }
    m.unmount();
}
