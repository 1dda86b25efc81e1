//! Content-Disposition values: build, validate and inspect them
//! (RFC 6266, with RFC 8187 `filename*`).
//!
//! Guarantees:
//! - [`attachment_for`] always returns a value that [`normalize`] accepts
//!   unchanged (if it fits in [`MAX_LEN`]): printable ASCII only, the plain
//!   `filename` quoted with `"` and `\` escaped, so no name can inject a
//!   header or break out of the quotes;
//! - [`normalize`] returns either an error or the value exactly as given (or,
//!   for a bare filename, the [`attachment_for`] value); it never repairs a
//!   value silently;
//! - [`filename_of`] reports the name a client would save the download
//!   under: `filename*` when present and decodable, else `filename`, with
//!   any directory part removed as browsers and `curl -OJ` do.
//!
//! Choice: `filename*` is added whenever the plain `filename` cannot carry
//! the name unchanged and unescaped, i.e. for non-ASCII or control
//! characters, and also for `"` and `\` (which `curl -OJ` does not
//! unescape), so browsers always get the exact name.

use std::fmt::Write;

/// Longest accepted value in bytes; AWS caps system metadata at 2 KB.
pub const MAX_LEN: usize = 2048;

/// Why a Content-Disposition value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispositionError {
    /// The value is empty or only whitespace.
    #[error("empty Content-Disposition; give a file name or e.g. 'attachment; filename=\"x.pdf\"'")]
    Empty,
    /// The value is longer than [`MAX_LEN`] bytes.
    #[error("Content-Disposition is {len} bytes long; at most {MAX_LEN} are allowed")]
    TooLong {
        /// The length that was refused.
        len: usize,
    },
    /// The value contains CR, LF, TAB or another control character.
    #[error(
        "Content-Disposition contains a control character (CR, LF, TAB, ...), which could inject headers"
    )]
    ControlChar,
    /// A full header value contains non-ASCII characters; non-ASCII names
    /// belong in `filename*` (or pass the bare file name instead).
    #[error(
        "Content-Disposition contains non-ASCII characters; give just the file name and s3linkfs \
         will encode it, or use filename*=UTF-8''<percent-encoded>"
    )]
    NonAscii,
    /// The value does not follow the RFC 6266 grammar; the text says where.
    #[error("Content-Disposition is not valid (RFC 6266): {0}")]
    Unparseable(String),
}

/// Builds `attachment; filename="<ascii fallback>"`, plus
/// `; filename*=UTF-8''<percent-encoded name>` when the fallback is not the
/// exact name. The fallback transliterates common Latin letters (`é` -> `e`,
/// `ß` -> `ss`), replaces other non-ASCII and control characters with `_`
/// (so the extension and length stay recognisable), and escapes `"` and `\`.
/// An empty name gives plain `attachment`.
pub fn attachment_for(filename: &str) -> String {
    if filename.is_empty() {
        return "attachment".to_string();
    }
    let fallback = ascii_fallback(filename);
    let mut value = format!("attachment; filename=\"{fallback}\"");
    if fallback != filename {
        value.push_str("; filename*=UTF-8''");
        value.push_str(&encode_ext_value(filename));
    }
    value
}

/// Validates a value given by a user. A bare filename (no `;`, no `=`, and
/// not just `inline` or `attachment`) becomes [`attachment_for`] of it;
/// anything else must be a valid RFC 6266 value of printable ASCII, and is
/// returned exactly as given.
pub fn normalize(value: &str) -> Result<String, DispositionError> {
    if value.trim().is_empty() {
        return Err(DispositionError::Empty);
    }
    check_length(value)?;
    if value.chars().any(char::is_control) {
        return Err(DispositionError::ControlChar);
    }
    if is_bare_filename(value) {
        let built = attachment_for(value);
        check_length(&built)?;
        return Ok(built);
    }
    if !value.is_ascii() {
        return Err(DispositionError::NonAscii);
    }
    parse(value).map_err(DispositionError::Unparseable)?;
    Ok(value.to_string())
}

/// The file name a client would save under: the decoded `filename*` if
/// present and in UTF-8 or ISO-8859-1, else the (unquoted) `filename`, with
/// any directory part (`/` or `\`) removed. `None` if the value does not
/// parse or names no file. Pass full header values (e.g. the output of
/// [`normalize`]); a bare word is read as a disposition type.
pub fn filename_of(value: &str) -> Option<String> {
    let parsed = parse(value).ok()?;
    let param = |name: &str| {
        parsed
            .params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let name = param("filename*")
        .and_then(decode_ext_value)
        .or_else(|| param("filename").map(str::to_string))?;
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    (!base.is_empty()).then(|| base.to_string())
}

/// Refuses values longer than [`MAX_LEN`].
fn check_length(value: &str) -> Result<(), DispositionError> {
    if value.len() > MAX_LEN {
        return Err(DispositionError::TooLong { len: value.len() });
    }
    Ok(())
}

/// No `;`, no `=`, and not a lone disposition type.
fn is_bare_filename(value: &str) -> bool {
    let is_type = ["inline", "attachment"]
        .iter()
        .any(|t| value.trim().eq_ignore_ascii_case(t));
    !value.contains(';') && !value.contains('=') && !is_type
}

/// The plain-`filename` form of `name`: printable ASCII with `"` and `\`
/// backslash-escaped, common Latin letters transliterated, everything else
/// replaced with `_`.
fn ascii_fallback(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push_str(transliterate(c).unwrap_or("_")),
        }
    }
    out
}

/// ASCII spelling of common accented Latin letters, `None` for the rest.
fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'Ā' | 'Ă' | 'Ą' => "A",
        'ç' | 'ć' | 'č' => "c",
        'Ç' | 'Ć' | 'Č' => "C",
        'ď' | 'đ' | 'ð' => "d",
        'Ď' | 'Đ' | 'Ð' => "D",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => "e",
        'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ę' | 'Ě' => "E",
        'ğ' => "g",
        'Ğ' => "G",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'ı' => "i",
        'Ì' | 'Í' | 'Î' | 'Ï' | 'Ī' | 'İ' => "I",
        'ł' | 'ľ' | 'ĺ' => "l",
        'Ł' | 'Ľ' | 'Ĺ' => "L",
        'ñ' | 'ń' | 'ň' => "n",
        'Ñ' | 'Ń' | 'Ň' => "N",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ō' | 'Ő' => "O",
        'ŕ' | 'ř' => "r",
        'Ŕ' | 'Ř' => "R",
        'ś' | 'š' | 'ş' => "s",
        'Ś' | 'Š' | 'Ş' => "S",
        'ť' | 'ţ' => "t",
        'Ť' | 'Ţ' => "T",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => "u",
        'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ū' | 'Ů' | 'Ű' => "U",
        'ý' | 'ÿ' => "y",
        'Ý' | 'Ÿ' => "Y",
        'ź' | 'ż' | 'ž' => "z",
        'Ź' | 'Ż' | 'Ž' => "Z",
        'ß' => "ss",
        'æ' => "ae",
        'Æ' => "AE",
        'œ' => "oe",
        'Œ' => "OE",
        'þ' => "th",
        'Þ' => "TH",
        _ => return None,
    })
}

/// RFC 8187 `attr-char`: the bytes `filename*` carries unencoded.
fn is_attr_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// Percent-encodes every UTF-8 byte outside `attr-char`.
fn encode_ext_value(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 3);
    for &b in name.as_bytes() {
        if is_attr_char(b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// The parameters of a parsed value (the type is checked, not kept): names
/// as written, values unquoted.
struct Parsed {
    params: Vec<(String, String)>,
}

/// A cursor over the bytes of a value.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Consumes a non-empty run of `tchar`s.
    fn token(&mut self, what: &str) -> Result<String, String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(match self.peek() {
                Some(b) => format!("expected {what} at byte {start}, found {:?}", char::from(b)),
                None => format!("expected {what} at the end"),
            });
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    /// Consumes a quoted-string (the opening `"` is next) and unescapes it.
    fn quoted(&mut self) -> Result<String, String> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(format!("unterminated quoted string at byte {start}")),
                Some(b'"') => {
                    self.pos += 1;
                    // Only ASCII backslashes were removed from valid UTF-8.
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b) if b >= b' ' && b != 0x7f => out.push(b),
                        _ => return Err(format!("bad escape in quoted string at byte {start}")),
                    }
                    self.pos += 1;
                }
                Some(b) if (b >= b' ' && b != 0x7f) || b == b'\t' => {
                    out.push(b);
                    self.pos += 1;
                }
                Some(_) => return Err("control character in quoted string".to_string()),
            }
        }
    }
}

/// Parses `type *( OWS ";" OWS name OWS "=" OWS (token / quoted-string) )`,
/// checking that names are unique and that `*` parameters are RFC 8187
/// ext-values (which are never quoted).
fn parse(value: &str) -> Result<Parsed, String> {
    let mut c = Cursor {
        s: value.as_bytes(),
        pos: 0,
    };
    c.skip_ows();
    c.token("a disposition type such as attachment or inline")?;
    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        c.skip_ows();
        match c.peek() {
            None => break,
            Some(b';') => c.pos += 1,
            Some(b'=') if params.is_empty() => {
                return Err(
                    "the value must start with a disposition type, as in attachment; filename=\"x.pdf\""
                        .to_string(),
                );
            }
            Some(b) => {
                return Err(format!(
                    "expected ';' at byte {}, found {:?}",
                    c.pos,
                    char::from(b)
                ));
            }
        }
        c.skip_ows();
        let name = c.token("a parameter name")?;
        c.skip_ows();
        if c.peek() != Some(b'=') {
            return Err(format!("parameter {name:?} has no '=' and value"));
        }
        c.pos += 1;
        c.skip_ows();
        let value = if c.peek() == Some(b'"') {
            if name.ends_with('*') {
                return Err(format!("{name} must not be quoted (RFC 8187)"));
            }
            c.quoted()?
        } else {
            c.token(&format!("a value for {name}"))?
        };
        if name.ends_with('*') {
            check_ext_value(&value).map_err(|why| format!("{name}: {why}"))?;
        }
        if params.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            return Err(format!("parameter {name:?} appears twice"));
        }
        params.push((name, value));
    }
    Ok(Parsed { params })
}

/// Splits an ext-value into (charset, percent-encoded value).
fn split_ext_value(v: &str) -> Result<(&str, &str), String> {
    let mut parts = v.splitn(3, '\'');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(charset), Some(_lang), Some(encoded)) if !charset.is_empty() => {
            Ok((charset, encoded))
        }
        _ => Err("expected charset'language'value, e.g. UTF-8''r%C3%A9sum%C3%A9.pdf".to_string()),
    }
}

/// Checks the RFC 8187 ext-value syntax, and that a UTF-8 value decodes.
fn check_ext_value(v: &str) -> Result<(), String> {
    let (charset, encoded) = split_ext_value(v)?;
    if !charset.bytes().all(is_tchar) {
        return Err(format!("bad charset {charset:?}"));
    }
    let bytes = percent_decode(encoded)?;
    if charset.eq_ignore_ascii_case("UTF-8") && String::from_utf8(bytes).is_err() {
        return Err("the percent-encoded bytes are not UTF-8".to_string());
    }
    Ok(())
}

/// Decodes an ext-value in UTF-8 or ISO-8859-1; `None` for other charsets
/// or bad encoding (clients then fall back to `filename`).
fn decode_ext_value(v: &str) -> Option<String> {
    let (charset, encoded) = split_ext_value(v).ok()?;
    let bytes = percent_decode(encoded).ok()?;
    if charset.eq_ignore_ascii_case("UTF-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case("ISO-8859-1") {
        Some(bytes.into_iter().map(char::from).collect())
    } else {
        None
    }
}

/// Decodes `%XX` escapes; every other byte must be an `attr-char`.
fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else if is_attr_char(b) {
            out.push(b);
            i += 1;
        } else {
            return Err(format!("{:?} must be percent-encoded", char::from(b)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn resume_vector() {
        assert_eq!(
            attachment_for("résumé.pdf"),
            "attachment; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
        );
    }

    #[test]
    fn plain_ascii_gets_no_filename_star() {
        assert_eq!(
            attachment_for("bar.pdf"),
            "attachment; filename=\"bar.pdf\""
        );
        assert_eq!(
            attachment_for("a b (1);x=y.txt"),
            "attachment; filename=\"a b (1);x=y.txt\""
        );
    }

    #[test]
    fn fallback_replaces_what_it_cannot_spell() {
        assert_eq!(
            attachment_for("日本語.pdf"),
            "attachment; filename=\"___.pdf\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.pdf"
        );
        assert_eq!(ascii_fallback("Straße-Ærø.TXT"), "Strasse-AEro.TXT");
        assert_eq!(ascii_fallback("🦀.rs"), "_.rs");
        assert_eq!(ascii_fallback("a\r\nb\t.txt"), "a__b_.txt");
    }

    #[test]
    fn quotes_and_backslashes_are_escaped_and_exact_in_filename_star() {
        let v = attachment_for("a\"b\\c.txt");
        assert_eq!(
            v,
            "attachment; filename=\"a\\\"b\\\\c.txt\"; filename*=UTF-8''a%22b%5Cc.txt"
        );
        assert_eq!(normalize(&v), Ok(v.clone()));
    }

    #[test]
    fn injection_attempts_cannot_escape() {
        let v = attachment_for("x.pdf\"\r\nSet-Cookie: a=b");
        assert!(!v.contains('\r') && !v.contains('\n'), "{v}");
        assert_eq!(normalize(&v), Ok(v.clone()));
        assert_eq!(
            filename_of(&v).as_deref(),
            Some("x.pdf\"\r\nSet-Cookie: a=b")
        );
        for bad in [
            "attachment; filename=\"x.pdf\"\r\nSet-Cookie: a=b",
            "x.pdf\n",
            "attachment;\tfilename=x",
            "a\u{7f}b",
            "a\u{85}b",
        ] {
            assert_eq!(
                normalize(bad),
                Err(DispositionError::ControlChar),
                "{bad:?}"
            );
        }
        assert!(matches!(
            normalize("attachment; filename=\"x\"y\""),
            Err(DispositionError::Unparseable(_))
        ));
    }

    #[test]
    fn empty_and_too_long() {
        assert_eq!(normalize(""), Err(DispositionError::Empty));
        assert_eq!(normalize("   "), Err(DispositionError::Empty));
        assert_eq!(attachment_for(""), "attachment");
        let long = format!("attachment; filename=\"{}\"", "a".repeat(MAX_LEN));
        assert_eq!(
            normalize(&long),
            Err(DispositionError::TooLong { len: long.len() })
        );
        let at_limit = format!("attachment; filename=\"{}\"", "a".repeat(MAX_LEN - 23));
        assert_eq!(at_limit.len(), MAX_LEN);
        assert_eq!(normalize(&at_limit), Ok(at_limit.clone()));
        // A bare name that fits, but whose encoded form does not.
        let name = "é".repeat(600);
        assert!(matches!(
            normalize(&name),
            Err(DispositionError::TooLong { .. })
        ));
    }

    #[test]
    fn bare_names_are_wrapped_and_types_kept() {
        assert_eq!(
            normalize("bar.pdf"),
            Ok("attachment; filename=\"bar.pdf\"".into())
        );
        assert_eq!(normalize("résumé.pdf"), Ok(attachment_for("résumé.pdf")));
        assert_eq!(normalize("report"), Ok(attachment_for("report")));
        assert_eq!(normalize("inline"), Ok("inline".into()));
        assert_eq!(normalize("Attachment"), Ok("Attachment".into()));
    }

    #[test]
    fn valid_values_are_returned_as_given() {
        for v in [
            "inline",
            "attachment; filename=\"bar.pdf\"",
            "attachment;filename=bar.pdf",
            "ATTACHMENT ; FileName = \"bar.pdf\"",
            "inline; filename=\"a\\\"b.txt\"",
            "attachment; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
            "attachment; filename*=iso-8859-1'en'%A3%20rates.txt",
            "form-data; name=\"field\"; creation-date=\"Wed, 12 Feb 1997 16:29:51 -0500\"",
        ] {
            assert_eq!(normalize(v), Ok(v.to_string()), "{v}");
        }
    }

    #[test]
    fn unparseable_values_say_why() {
        for v in [
            "filename=\"x.pdf\"",
            "attachment; filename",
            "attachment; filename=",
            "attachment; filename=\"x.pdf",
            "attachment; filename=x y",
            "attachment; filename=\"a\"; filename=\"b\"",
            "attachment;",
            "attachment; ; filename=x",
            "attachment; filename*=\"UTF-8''x\"",
            "attachment; filename*=x.pdf",
            "attachment; filename*=UTF-8''%E9.pdf",
            "attachment; filename*=UTF-8''%G1",
            "attachment; filename*=UTF-8''a b",
            "\"attachment\"; filename=x",
            "attach ment; filename=x",
            "attachment, inline; filename=x",
        ] {
            match normalize(v) {
                Err(DispositionError::Unparseable(why)) => assert!(!why.is_empty()),
                other => panic!("{v:?} gave {other:?}"),
            }
        }
        let msg = normalize("filename=\"x.pdf\"").unwrap_err().to_string();
        assert!(msg.contains("attachment; filename="), "{msg}");
    }

    #[test]
    fn non_ascii_full_values_are_refused() {
        assert_eq!(
            normalize("attachment; filename=\"résumé.pdf\""),
            Err(DispositionError::NonAscii)
        );
    }

    #[test]
    fn filename_of_prefers_filename_star_and_strips_directories() {
        let v = "attachment; filename=\"resume.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf";
        assert_eq!(filename_of(v).as_deref(), Some("résumé.pdf"));
        assert_eq!(
            filename_of("attachment; filename=\"spam.pdf\"").as_deref(),
            Some("spam.pdf")
        );
        assert_eq!(
            filename_of("attachment; FILENAME=spam.pdf").as_deref(),
            Some("spam.pdf")
        );
        assert_eq!(
            filename_of("attachment; filename=\"../../x/spam.pdf\"").as_deref(),
            Some("spam.pdf")
        );
        assert_eq!(
            filename_of("attachment; filename=\"C:\\\\x\\\\spam.pdf\"").as_deref(),
            Some("spam.pdf")
        );
        assert_eq!(
            filename_of("attachment; filename*=iso-8859-1'en'%A3.txt").as_deref(),
            Some("£.txt")
        );
        // Unknown charset: clients fall back to the plain filename.
        assert_eq!(
            filename_of("attachment; filename=\"a.txt\"; filename*=KOI8-R''%C1.txt").as_deref(),
            Some("a.txt")
        );
        assert_eq!(filename_of("inline"), None);
        assert_eq!(filename_of("attachment; filename=\"dir/\""), None);
        assert_eq!(filename_of("not valid ;;"), None);
    }

    proptest! {
        #[test]
        fn attachment_for_is_valid_and_names_the_file(name in "[^/\\\\]{1,200}") {
            let v = attachment_for(&name);
            prop_assert!(v.is_ascii() && !v.chars().any(char::is_control));
            if v.len() <= MAX_LEN {
                prop_assert_eq!(normalize(&v), Ok(v.clone()));
            }
            prop_assert_eq!(filename_of(&v), Some(name));
        }
    }
}
