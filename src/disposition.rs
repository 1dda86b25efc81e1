//! Content-Disposition values: build, validate and inspect (RFC 6266, RFC 8187).
