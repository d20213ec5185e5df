//! `rctl events [--since TIME] [--until TIME] [--unit U] [--output json]`: what happened, as
//! Docker's `events`: from `--since` (the past kept on disk), then as it happens, until
//! `--until` or Ctrl-C.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api::client::{Client, Error as ClientError};
use crate::events::Event;

/// A time as Docker's `--since`/`--until` take it: RFC 3339, Unix seconds, or a duration
/// ago (`10m`, `0s` for now). In ms since the epoch.
pub fn parse_time(text: &str, now: SystemTime) -> Result<u64, String> {
    let ms = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    };
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs * 1000);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(ms(t));
    }
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(ms(now.checked_sub(d).unwrap_or(UNIX_EPOCH)));
    }
    Err(format!(
        "invalid time {text:?}: expected RFC 3339 (2026-11-24T10:00:00Z), Unix seconds, or a duration ago (10m)"
    ))
}

/// Streams the events to stdout.
pub async fn run(
    client: &Client,
    since: Option<u64>,
    until: Option<u64>,
    unit: Option<String>,
    json: bool,
) -> Result<(), ClientError> {
    let mut query = Vec::new();
    if let Some(s) = since {
        query.push(format!("since={s}"));
    }
    if let Some(u) = until {
        query.push(format!("until={u}"));
    }
    if let Some(u) = &unit {
        query.push(format!("unit={}", super::enc(u)));
    }
    let path = format!("/v1/events?{}", query.join("&"));
    client
        .get_lines(&path, |e: Event| {
            if json {
                println!("{}", serde_json::to_string(&e).unwrap_or_default());
            } else {
                println!("{}", line(&e));
            }
        })
        .await
}

/// One event as a line of text: time, unit, action, attributes (Docker's shape).
fn line(e: &Event) -> String {
    let time = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(e.time_ms));
    let attrs: Vec<String> = e
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let attrs = if attrs.is_empty() {
        String::new()
    } else {
        format!(" ({})", attrs.join(", "))
    };
    format!("{time} unit {} {}{attrs}", e.unit, e.action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_docker_takes_them() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_time("0s", now), Ok(1_000_000_000));
        assert_eq!(parse_time("10m", now), Ok(1_000_000_000 - 600_000));
        assert_eq!(parse_time("1700000000", now), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-02T00:00:00Z", now), Ok(86_400_000));
        assert!(parse_time("yesterday", now).is_err());
    }
}
