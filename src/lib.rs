//! s3linkfs: a FUSE filesystem for S3-compatible object stores whose extended
//! attributes hand out presigned share links and set download filenames.
//!
//! # Layout
//!
//! Data flows one way, top to bottom; no layer calls upward.
//!
//! ```text
//! main.rs / cli.rs   clap front end; only `main` uses anyhow
//! config.rs          raw TOML, environment and ~/.aws input -> validated `Profile`
//! mount.rs           start-up checks, background process, clean unmount
//! fuse.rs            thin fuser adapter: converts arguments, calls one `fs` method, replies;
//!                    the only place where errors become errno values
//! fs/                inode table, metadata and data caches, virtual xattrs;
//!                    returns plain structs, never fuser `Reply*` types
//! s3/                `ObjectClient` trait, the reqwest implementation, the in-memory fake,
//!                    S3 XML, retries, the in-place header change
//! sign/              pure request signing (SigV4, SigV2, presigned URLs); time and
//!                    credentials are always arguments
//! disposition.rs     Content-Disposition building and validation (RFC 6266, RFC 8187)
//! duration.rs        the `3600` / `90s` / `15m` / `12h` / `7d` duration syntax
//! ```

pub mod cli;
pub mod config;
pub mod disposition;
pub mod duration;
pub mod fs;
pub mod fuse;
pub mod mount;
pub mod s3;
pub mod sign;
