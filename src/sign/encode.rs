//! RFC 3986 percent-encoding for S3, in one place.
//!
//! Guarantees: only the unreserved set `A-Z a-z 0-9 - _ . ~` passes through
//! unencoded (plus `/` between key segments); a space is `%20`, never `+`.
