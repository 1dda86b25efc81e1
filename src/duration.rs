//! The duration syntax shared by `--expires-in`, `presign_expires` and the
//! `user.s3.presign.<DUR>` xattr names: `3600`, `90s`, `15m`, `12h`, `7d`.
