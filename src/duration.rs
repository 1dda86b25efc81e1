//! The duration syntax shared by `--expires-in`, `presign_expires` and the
//! `user.s3.presign.<DUR>` xattr names: `3600`, `90s`, `15m`, `12h`, `7d`.
//!
//! Guarantees: [`parse_duration`] accepts exactly ASCII digits followed by at
//! most one unit letter (`s`, `m`, `h`, `d`; none means seconds), and returns
//! a whole number of seconds greater than zero; anything else (empty input,
//! whitespace, signs, zero, overflow, other units) is a [`DurationError`]
//! whose message names the input and the accepted forms. It never panics.
//! [`format_duration`] prints a duration back in the same syntax, so
//! `parse_duration(&format_duration(d)) == Ok(d)` for every whole-second
//! `d > 0`.

use std::time::Duration;

/// The accepted forms, quoted in every error message.
const FORMS: &str = "expected a positive whole number of seconds, optionally with a unit: \
                     3600, 90s, 15m, 12h or 7d";

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The input is empty.
    #[error("empty duration; {FORMS}")]
    Empty,
    /// The input contains whitespace (it is never trimmed silently).
    #[error("duration {0:?} contains whitespace; {FORMS}")]
    Whitespace(String),
    /// The input starts with `-`.
    #[error("duration {0:?} is negative; {FORMS}")]
    Negative(String),
    /// The part before the unit is not a plain decimal number.
    #[error("duration {0:?} is not a number; {FORMS}")]
    NotANumber(String),
    /// The unit letter is not one of `s`, `m`, `h`, `d`.
    #[error("duration {input:?} has unknown unit {unit:?}; {FORMS}")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unrecognised suffix.
        unit: String,
    },
    /// The duration is zero.
    #[error("duration {0:?} is zero; {FORMS}")]
    Zero(String),
    /// The duration does not fit in 64 bits of seconds.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Seconds per unit, largest first (the order [`format_duration`] tries).
const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parses `3600`, `90s`, `15m`, `12h` or `7d` into a positive [`Duration`].
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.chars().any(char::is_whitespace) {
        return Err(DurationError::Whitespace(s.to_string()));
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative(s.to_string()));
    }
    let digits_end = s
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(s.len(), |(i, _)| i);
    let (number, unit) = s.split_at(digits_end);
    if number.is_empty() {
        return Err(DurationError::NotANumber(s.to_string()));
    }
    let per_unit = unit_seconds(s, unit)?;
    // `number` is all ASCII digits, so the only possible failure is overflow.
    let n: u64 = number
        .parse()
        .map_err(|_| DurationError::Overflow(s.to_string()))?;
    let secs = n
        .checked_mul(per_unit)
        .ok_or_else(|| DurationError::Overflow(s.to_string()))?;
    if secs == 0 {
        return Err(DurationError::Zero(s.to_string()));
    }
    Ok(Duration::from_secs(secs))
}

/// Seconds in `unit` (empty means seconds). A suffix that still contains
/// digits (`1m5s`) is reported as not a number rather than as a unit.
fn unit_seconds(input: &str, unit: &str) -> Result<u64, DurationError> {
    if unit.is_empty() {
        return Ok(1);
    }
    let mut chars = unit.chars();
    if let (Some(c), None) = (chars.next(), chars.next())
        && let Some(&(_, secs)) = UNITS.iter().find(|(u, _)| *u == c)
    {
        return Ok(secs);
    }
    if unit.chars().any(|c| c.is_ascii_digit()) {
        return Err(DurationError::NotANumber(input.to_string()));
    }
    Err(DurationError::UnknownUnit {
        input: input.to_string(),
        unit: unit.to_string(),
    })
}

/// Formats `d` in the [`parse_duration`] syntax with the largest unit that
/// divides it exactly (`7d`, `12h`, `15m`, `90s`); sub-second parts are
/// dropped, and zero prints as `0s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    UNITS
        .iter()
        .find(|(_, per)| secs.is_multiple_of(*per))
        .map_or_else(
            || format!("{secs}s"),
            |(u, per)| format!("{}{u}", secs / per),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Result<Duration, DurationError> {
        Ok(Duration::from_secs(n))
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(parse_duration("3600"), secs(3600));
        assert_eq!(parse_duration("90s"), secs(90));
        assert_eq!(parse_duration("15m"), secs(900));
        assert_eq!(parse_duration("12h"), secs(43_200));
        assert_eq!(parse_duration("7d"), secs(604_800));
        assert_eq!(parse_duration("1"), secs(1));
        assert_eq!(parse_duration("007m"), secs(420));
    }

    #[test]
    fn rejects_empty_whitespace_and_signs() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        for s in [" 5", "5 ", "5 m", "\t5", "5\n"] {
            assert!(
                matches!(parse_duration(s), Err(DurationError::Whitespace(_))),
                "{s:?}"
            );
        }
        assert!(matches!(
            parse_duration("-5"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_duration("+5"),
            Err(DurationError::NotANumber(_))
        ));
    }

    #[test]
    fn rejects_non_numbers() {
        for s in ["s", "m5", "abc", "1.5h", "1m5s", "0x10", "٣"] {
            assert!(
                matches!(
                    parse_duration(s),
                    Err(DurationError::NotANumber(_) | DurationError::UnknownUnit { .. })
                ),
                "{s:?}"
            );
        }
        assert!(matches!(
            parse_duration("1m5s"),
            Err(DurationError::NotANumber(_))
        ));
    }

    #[test]
    fn rejects_unknown_units() {
        for (s, unit) in [("5w", "w"), ("5ms", "ms"), ("5H", "H"), ("5sec", "sec")] {
            assert_eq!(
                parse_duration(s),
                Err(DurationError::UnknownUnit {
                    input: s.into(),
                    unit: unit.into()
                })
            );
        }
    }

    #[test]
    fn rejects_zero_and_overflow() {
        for s in ["0", "0s", "000d"] {
            assert!(
                matches!(parse_duration(s), Err(DurationError::Zero(_))),
                "{s:?}"
            );
        }
        assert_eq!(parse_duration("18446744073709551615"), secs(u64::MAX));
        for s in [
            "18446744073709551616",
            "213503982334602d",
            "99999999999999999999999h",
        ] {
            assert!(
                matches!(parse_duration(s), Err(DurationError::Overflow(_))),
                "{s:?}"
            );
        }
    }

    #[test]
    fn messages_name_input_and_forms() {
        let msg = parse_duration("5w").unwrap_err().to_string();
        assert!(msg.contains("\"5w\"") && msg.contains("7d"), "{msg}");
        let msg = parse_duration("").unwrap_err().to_string();
        assert!(msg.contains("3600"), "{msg}");
    }

    #[test]
    fn format_uses_largest_exact_unit() {
        let f = |n| format_duration(Duration::from_secs(n));
        assert_eq!(f(0), "0s");
        assert_eq!(f(59), "59s");
        assert_eq!(f(90), "90s");
        assert_eq!(f(900), "15m");
        assert_eq!(f(3600), "1h");
        assert_eq!(f(5400), "90m");
        assert_eq!(f(43_200), "12h");
        assert_eq!(f(604_800), "7d");
        assert_eq!(f(604_801), "604801s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s");
    }

    #[test]
    fn format_then_parse_round_trips() {
        for n in [1, 59, 60, 61, 3599, 3600, 86_399, 86_400, 604_800, u64::MAX] {
            let d = Duration::from_secs(n);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{n}");
        }
    }
}
