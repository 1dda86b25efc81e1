//! Command-line interface: clap definitions for `presign` and `mount`.
