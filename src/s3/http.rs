//! s3 http
