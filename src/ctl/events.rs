//! `rctl events [--since TIME] [--until TIME] [--unit U] [--output json]`: what happened, as
//! Docker's `events`: from `--since` (the past kept on disk), then as it happens, until
//! `--until` or Ctrl-C.

use std::time::SystemTime;

use crate::api::client::{Client, Error as ClientError};
use crate::events::Event;

/// A time as `--since`/`--until` take it (the grammar of `crate::clock`, shared with `rctl
/// logs`), in ms since the epoch.
pub fn parse_time(text: &str, now: SystemTime) -> Result<u64, String> {
    crate::clock::parse(text, now)
        .map(crate::clock::ms_of)
        .map_err(|e| format!("invalid time {text:?}: {e}"))
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
    let time = crate::clock::rfc3339_ms(e.time_ms);
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
    use std::time::{Duration, UNIX_EPOCH};

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
