//! `--since` (as `docker logs --since`). In: the operator's text and the time now; out: the
//! earliest time of the records to show.
//!
//! Accepted: a duration before now (`10m`, `1h30m`, `2h 5m`, `90s`, `1d`), a Unix time in
//! seconds (`1700000000`, `1700000000.25`), an RFC 3339 time (`2026-11-23T10:00:00Z`, with a
//! fraction, with an offset `+02:00`, or with no zone, read as UTC), or a date (`2026-11-23`,
//! its midnight UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What `--since` accepts, for messages.
pub const SHAPE: &str = "expected a duration before now (\"10m\", \"1h30m\"), an RFC 3339 time \
                         (\"2026-11-23T10:00:00Z\"), a date (\"2026-11-23\") or a Unix time";

/// Parses `text` as of `now`; the reason alone on error.
pub fn parse(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err(SHAPE.into());
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return unix(s);
    }
    // A time has a date in front; a duration starts with digits and a unit.
    if s.len() >= 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-' {
        return rfc3339(s);
    }
    let d = humantime::parse_duration(s).map_err(|_| SHAPE.to_string())?;
    now.checked_sub(d)
        .ok_or_else(|| format!("{s} is before the epoch"))
}

fn unix(s: &str) -> Result<SystemTime, String> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || frac.contains('.') {
        return Err(SHAPE.into());
    }
    let secs: u64 = secs.parse().map_err(|_| format!("{s}: too large"))?;
    let mut nanos = 0u32;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .ok_or_else(|| format!("{s}: too large"))
}

fn rfc3339(s: &str) -> Result<SystemTime, String> {
    let bad = || format!("{s:?}: {SHAPE}");
    if s.len() == 10 {
        return humantime::parse_rfc3339_weak(&format!("{s}T00:00:00Z")).map_err(|_| bad());
    }
    // humantime reads Z or nothing (UTC); an offset is applied here.
    let (base, offset) = match s
        .len()
        .checked_sub(6)
        .and_then(|at| s.get(at..).map(|o| (at, o)))
    {
        Some((at, o))
            if (o.starts_with('+') || o.starts_with('-'))
                && o.as_bytes()[3] == b':'
                && s.as_bytes()
                    .get(at.wrapping_sub(1))
                    .is_some_and(u8::is_ascii_digit) =>
        {
            let h: u64 = o[1..3].parse().map_err(|_| bad())?;
            let m: u64 = o[4..6].parse().map_err(|_| bad())?;
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let secs = Duration::from_secs(h * 3600 + m * 60);
            (&s[..at], Some((o.starts_with('+'), secs)))
        }
        _ => (s, None),
    };
    let t = humantime::parse_rfc3339_weak(&base.to_ascii_uppercase()).map_err(|_| bad())?;
    match offset {
        // 10:00+02:00 is 08:00 UTC.
        Some((true, d)) => t.checked_sub(d).ok_or_else(bad),
        Some((false, d)) => t.checked_add(d).ok_or_else(bad),
        None => Ok(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_shapes() {
        let now = humantime::parse_rfc3339("2026-11-23T12:00:00Z").unwrap();
        let at = |s: &str| humantime::parse_rfc3339(s).unwrap();
        for (text, want) in [
            ("10m", "2026-11-23T11:50:00Z"),
            ("1h30m", "2026-11-23T10:30:00Z"),
            ("2h 5m", "2026-11-23T09:55:00Z"),
            ("90s", "2026-11-23T11:58:30Z"),
            ("1d", "2026-11-22T12:00:00Z"),
            ("0s", "2026-11-23T12:00:00Z"),
            ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00Z"),
            ("2026-11-23T10:00:00.5Z", "2026-11-23T10:00:00.5Z"),
            ("2026-11-23t10:00:00z", "2026-11-23T10:00:00Z"),
            ("2026-11-23 10:00:00", "2026-11-23T10:00:00Z"),
            ("2026-11-23T10:00:00", "2026-11-23T10:00:00Z"),
            ("2026-11-23T10:00:00+02:00", "2026-11-23T08:00:00Z"),
            ("2026-11-23T10:00:00.250-01:30", "2026-11-23T11:30:00.25Z"),
            ("2026-11-23", "2026-11-23T00:00:00Z"),
            ("1795435200", "2026-11-23T12:00:00Z"),
            ("1795435200.25", "2026-11-23T12:00:00.25Z"),
        ] {
            assert_eq!(parse(text, now), Ok(at(want)), "{text}");
        }
        for bad in [
            "",
            "soon",
            "10x",
            "2026-13-01",
            "2026-11-23T25:00:00Z",
            "2026-11-23T10:00:00+25:00",
            "1.2.3",
            ".5",
        ] {
            let err = parse(bad, now).unwrap_err();
            assert!(err.contains("expected a duration"), "{bad}: {err}");
        }
    }
}
