//! Reads one object sequentially through the `fs` layer (no FUSE), to tell
//! the filesystem's own throughput apart from the kernel's part.
//!
//! Usage: fs_read ENDPOINT REGION ACCESS SECRET BUCKET KEY [CHUNK]

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use s3linkfs::config::Profile;
use s3linkfs::fs::data::DataCacheConfig;
use s3linkfs::fs::inode::ROOT_INO;
use s3linkfs::fs::write::WriteConfig;
use s3linkfs::fs::{Fs, FsConfig, MountSource};
use s3linkfs::s3::http::{ClientConfig, HttpClient};
use s3linkfs::sign::{Addressing, Credentials, SignatureVersion};

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let endpoint = s3linkfs::config::parse_endpoint(&a[1]).expect("endpoint");
    let credentials = Credentials {
        access_key: a[3].clone(),
        secret_key: a[4].clone(),
        session_token: None,
    };
    let chunk: u32 = a.get(7).map_or(128 * 1024, |c| c.parse().unwrap());
    let profile = Profile {
        name: "bench".into(),
        endpoint: endpoint.clone(),
        region: a[2].clone(),
        credentials: credentials.clone(),
        addressing: Addressing::Path,
        signature: SignatureVersion::V4,
        presign_endpoint: None,
        presign_expires: Duration::from_secs(3600),
        mount: Default::default(),
    };
    let client = HttpClient::new(ClientConfig::from_profile(&profile)).unwrap();
    let cfg = FsConfig {
        uid: 0,
        gid: 0,
        file_mode: 0o644,
        dir_mode: 0o755,
        metadata_ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(1),
        cache: {
            let env = |n: &str| std::env::var(n).ok().map(|v| v.parse::<u64>().unwrap());
            let d = DataCacheConfig::default();
            DataCacheConfig {
                part_size: env("PART").unwrap_or(d.part_size),
                capacity: env("CAP").unwrap_or(d.capacity),
                max_parallel: env("PAR").map_or(d.max_parallel, |v| v as usize),
                ..d
            }
        },
        read_only: true,
        allow_misleading_names: false,
        multipart_copy_threshold: 5 << 30,
        profile,
        write: WriteConfig {
            staging_dir: std::env::temp_dir(),
            staging_capacity: 0,
            part_size: 8 << 20,
            max_parallel_parts: 4,
            content_disposition_attachment: false,
            max_rename_objects: 0,
        },
    };
    let source = MountSource::Bucket {
        bucket: a[5].clone(),
        prefix: String::new(),
    };
    let fs = Arc::new(Fs::new(Arc::new(client), &source, cfg));
    let e = fs.lookup(ROOT_INO, OsStr::new(&a[6])).await.unwrap();
    let o = fs.open(e.attr.ino, false, false, 0).await.unwrap();
    let t0 = Instant::now();
    let mut off = 0u64;
    while off < e.attr.size {
        let b = fs.read(o.fh, off, chunk).await.unwrap();
        off += b.len() as u64;
    }
    let s = t0.elapsed().as_secs_f64();
    println!("{off} bytes in {s:.2} s = {:.0} MB/s", off as f64 / s / 1e6);
}
