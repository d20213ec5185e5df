//! Time: the two clocks the daemon keeps (the wall clock for what is shown and stored as a
//! date, the boot clock for what must not move when the wall clock is set), RFC 3339 text, and
//! the one grammar of `--since`/`--until` that `rctl logs` and `rctl events` share.
//!
//! Accepted as a time: a duration before now (`10m`, `1h30m`, `2h 5m`, `90s`, `1d`), a Unix
//! time in seconds (`1700000000`, `1700000000.25`), an RFC 3339 time (`2026-11-23T10:00:00Z`,
//! with a fraction, with an offset `+02:00`, or with no zone, read as UTC), or a date
//! (`2026-11-23`, its midnight UTC). Dates are read by `jiff`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a time argument accepts, for messages.
pub const SHAPE: &str = "expected a duration before now (\"10m\", \"1h30m\"), an RFC 3339 time \
                         (\"2026-11-23T10:00:00Z\"), a date (\"2026-11-23\") or a Unix time";

/// Milliseconds on CLOCK_BOOTTIME: monotonic across daemon restarts (and suspend) within a boot.
pub fn boot_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// Now, in ms since the epoch (the wall clock: for what is shown and stored as a date).
pub fn now_ms() -> u64 {
    ms_of(SystemTime::now())
}

/// A time as ms since the epoch (0 before it).
pub fn ms_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds (`2026-11-23T10:00:00.250Z`).
pub fn rfc3339_ms(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// Parses a time argument as of `now`; the reason alone on error.
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
        return date_time(s).ok_or_else(|| format!("{s:?}: {SHAPE}"));
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

/// An RFC 3339 time (an offset or `Z`, or none: UTC) or a date (its midnight UTC).
fn date_time(s: &str) -> Option<SystemTime> {
    // RFC 3339's offset hours go to 23 (jiff reads up to 25).
    let offset_hour = s
        .len()
        .checked_sub(6)
        .and_then(|at| s.get(at..))
        .filter(|o| (o.starts_with('+') || o.starts_with('-')) && o.as_bytes()[3] == b':')
        .and_then(|o| o[1..3].parse::<u8>().ok());
    if offset_hour.is_some_and(|h| h > 23) {
        return None;
    }
    let upper = s.to_ascii_uppercase();
    let t = match upper.parse::<jiff::Timestamp>() {
        Ok(t) => t,
        // No zone: read as UTC (a plain date is its midnight).
        Err(_) => upper
            .parse::<jiff::civil::DateTime>()
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp(),
    };
    Some(SystemTime::from(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_arguments() {
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

    #[test]
    fn rfc3339_always_has_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_435_200_250), "2026-11-23T12:00:00.250Z");
    }
}
