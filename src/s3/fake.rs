//! s3 fake
