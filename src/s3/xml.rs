//! s3 xml
