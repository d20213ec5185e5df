//! Quantities in unit files: sizes ("64M"), durations ("10s") and signals ("TERM") from text to values.
//!
//! Parsers return the reason alone on error; the caller names the key and the value.

use std::time::Duration;

use nix::sys::signal::Signal;

/// Docker's unit multipliers: binary, whatever the suffix's spelling.
const SIZE_UNITS: &[(&str, u32)] = &[
    ("", 0),
    ("b", 0),
    ("k", 1),
    ("kb", 1),
    ("kib", 1),
    ("m", 2),
    ("mb", 2),
    ("mib", 2),
    ("g", 3),
    ("gb", 3),
    ("gib", 3),
    ("t", 4),
    ("tb", 4),
    ("tib", 4),
];

/// Parses a size with Docker's meaning: a number of bytes, or a number with a unit
/// k, m, g or t (optionally followed by `b` or `ib`, any case) meaning 1024^n bytes.
/// A fraction ("1.5g") is allowed and truncated to whole bytes, as Docker does.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit = unit.trim_start().to_ascii_lowercase();
    let shape = || {
        "expected a number of bytes, optionally with a unit k, m, g or t (e.g. \"64M\")".to_owned()
    };
    let power = SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, p)| *p)
        .ok_or_else(shape)?;
    let multiplier = 1024u64.pow(power);
    let too_large = || "too large".to_owned();
    if number.contains('.') {
        // Only a digits-dot-digits shape: f64's parser would also take "1." or ".5e3".
        let mut parts = number.splitn(2, '.');
        let whole = parts.next().unwrap_or_default();
        let frac = parts.next().unwrap_or_default();
        if whole.is_empty() || frac.is_empty() || frac.contains('.') {
            return Err(shape());
        }
        let value: f64 = number.parse().map_err(|_| shape())?;
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(too_large());
        }
        // Truncation is the documented behaviour.
        Ok(bytes as u64)
    } else {
        if number.is_empty() {
            return Err(shape());
        }
        let value: u64 = number.parse().map_err(|_| too_large())?;
        value.checked_mul(multiplier).ok_or_else(too_large)
    }
}

/// Formats a byte count for messages with the largest unit that divides it ("6M").
pub fn format_size(bytes: u64) -> String {
    for (suffix, power) in [("T", 4u32), ("G", 3), ("M", 2), ("K", 1)] {
        let unit = 1024u64.pow(power);
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Parses a humantime duration ("10s", "1m 30s", "100ms"); "0s" is allowed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    use humantime::DurationError as E;
    // humantime's own messages speak of byte offsets ("expected number at 0").
    humantime::parse_duration(text).map_err(|e| match e {
        E::Empty => "empty; write e.g. \"10s\"".to_owned(),
        E::UnknownUnit { unit, .. } => {
            format!("unknown unit {unit:?}; use ms, s, m, h or d (e.g. \"10s\", \"1m 30s\")")
        }
        E::NumberOverflow => "too large".to_owned(),
        E::InvalidCharacter(_) | E::NumberExpected(_) => {
            "expected a number with a unit (e.g. \"10s\", \"1m 30s\", \"100ms\")".to_owned()
        }
    })
}

/// Formats a duration for messages ("1m 30s").
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// What a signal looks like, for messages.
pub const SIGNAL_SHAPE: &str = "expected a name like \"SIGTERM\" or \"TERM\", or a number";

/// Parses a signal given as "SIGTERM", "TERM" (any case) or its number "15".
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let invalid = || SIGNAL_SHAPE.to_owned();
    let s = text.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i32 = s.parse().map_err(|_| invalid())?;
        return signal_from_number(n).ok_or_else(invalid);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| invalid())
}

/// The signal with this number, if there is one (0 is not a signal).
pub fn signal_from_number(n: i32) -> Option<Signal> {
    Signal::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let m = 1024 * 1024;
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("67108864", Some(64 * m)),
            ("64M", Some(64 * m)),
            ("64m", Some(64 * m)),
            ("64MB", Some(64 * m)),
            ("64mb", Some(64 * m)),
            ("64MiB", Some(64 * m)),
            ("64 M", Some(64 * m)),
            (" 64M ", Some(64 * m)),
            ("1k", Some(1024)),
            ("1KB", Some(1024)),
            ("2g", Some(2 * 1024 * m)),
            ("1t", Some(1024 * 1024 * m)),
            ("10b", Some(10)),
            ("10B", Some(10)),
            ("1.5k", Some(1536)),
            ("0.5m", Some(512 * 1024)),
            ("", None),
            ("M", None),
            ("64Q", None),
            ("64 parsecs", None),
            ("-1M", None),
            ("1.", None),
            (".5m", None),
            ("1.2.3m", None),
            ("1e3", None),
            ("64MM", None),
            ("99999999999999999999", None),
            ("99999999999t", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text).ok(), *want, "{text:?}");
        }
    }

    #[test]
    fn size_formats() {
        let cases: &[(u64, &str)] = &[
            (0, "0"),
            (1000, "1000"),
            (1024, "1K"),
            (6 * 1024 * 1024, "6M"),
            (1536 * 1024 * 1024, "1536M"),
        ];
        for (bytes, want) in cases {
            assert_eq!(format_size(*bytes), *want);
        }
    }

    #[test]
    fn durations() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("0s", Some(Duration::ZERO)),
            ("10s", Some(Duration::from_secs(10))),
            ("100ms", Some(Duration::from_millis(100))),
            ("1m 30s", Some(Duration::from_secs(90))),
            ("1m", Some(Duration::from_secs(60))),
            ("10", None),
            ("", None),
            ("10 parsecs", None),
            ("-1s", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), *want, "{text:?}");
        }
    }

    #[test]
    fn signals() {
        let cases: &[(&str, Option<&str>)] = &[
            ("SIGTERM", Some("SIGTERM")),
            ("TERM", Some("SIGTERM")),
            ("term", Some("SIGTERM")),
            ("sigterm", Some("SIGTERM")),
            ("15", Some("SIGTERM")),
            ("9", Some("SIGKILL")),
            ("KILL", Some("SIGKILL")),
            ("SIGQUIT", Some("SIGQUIT")),
            ("usr1", Some("SIGUSR1")),
            ("0", None),
            ("999", None),
            ("", None),
            ("SIG", None),
            ("SIGFOO", None),
            ("-15", None),
            ("SIG TERM", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_signal(text).ok().map(|s| s.as_str()),
                *want,
                "{text:?}"
            );
        }
    }
}
