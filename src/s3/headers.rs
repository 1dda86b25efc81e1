//! s3 headers
