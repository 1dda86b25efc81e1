//! RFC 3986 percent-encoding for S3, in one place.
//!
//! Guarantees: only the unreserved set `A-Z a-z 0-9 - _ . ~` passes through
//! unencoded (plus `/` between key segments); a space is `%20`, never `+`.
//! Every other byte of the UTF-8 encoding becomes `%XX` with upper-case hex.
//! Nothing is ever normalised: `.` and `..` segments, empty segments (`a//b`)
//! and a trailing `/` survive encoding unchanged.

use std::fmt::Write;

/// True for the RFC 3986 unreserved bytes, the only ones left as they are.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Appends `s` to `out`, percent-encoding every byte outside the unreserved
/// set, and also leaving `/` alone when `keep_slash` is set.
fn encode_into(out: &mut String, s: &str, keep_slash: bool) {
    for &b in s.as_bytes() {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Percent-encodes `s` for a query name or value, or a single path segment:
/// RFC 3986 unreserved characters only, space as `%20`, `/` as `%2F`.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    encode_into(&mut out, s, false);
    out
}

/// Percent-encodes an object key for a URL path, segment by segment, keeping
/// `/` as the separator. The key is never normalised (`a//b`, `../x`, `x/`
/// come out with the same segments). A `/` at the start of the key is part
/// of the key and is kept; the caller adds the path's own separator.
pub fn encode_key_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len() * 3);
    encode_into(&mut out, key, true);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_pass_through() {
        let s = "AZaz09-_.~";
        assert_eq!(uri_encode(s), s);
    }

    #[test]
    fn reserved_and_space_are_encoded() {
        assert_eq!(
            uri_encode("a b+c/d%e?f#g&h=i"),
            "a%20b%2Bc%2Fd%25e%3Ff%23g%26h%3Di"
        );
        assert_eq!(uri_encode("*"), "%2A");
    }

    #[test]
    fn utf8_is_encoded_bytewise_upper_hex() {
        assert_eq!(uri_encode("é"), "%C3%A9");
        assert_eq!(uri_encode("€"), "%E2%82%AC");
    }

    #[test]
    fn key_path_keeps_slashes_and_never_normalises() {
        assert_eq!(encode_key_path("keyname/.bar"), "keyname/.bar");
        assert_eq!(encode_key_path("a//b/../c/./"), "a//b/../c/./");
        assert_eq!(encode_key_path("/lead"), "/lead");
        assert_eq!(encode_key_path("c++ dir/x y"), "c%2B%2B%20dir/x%20y");
    }

    #[test]
    fn empty_input() {
        assert_eq!(uri_encode(""), "");
        assert_eq!(encode_key_path(""), "");
    }
}
