//! A unit as a Docker container: its 64-hex id, its name, Docker's state and status strings,
//! times, and how a reference (`web`, `/web`, an id or a prefix of one) finds it.

use sha2::{Digest, Sha256};

use crate::api::types::UnitStatus;
use crate::context::Context;
use crate::table::Entry;

/// One unit seen as a container.
#[derive(Debug, Clone)]
pub struct Container {
    /// The unit's name.
    pub name: String,
    /// 64 hex characters, stable for the container instance's life.
    pub id: String,
    /// rcd's view of it.
    pub status: UnitStatus,
    /// The unit, if it has a valid version.
    pub unit: Option<std::sync::Arc<crate::unit::Unit>>,
    /// When the instance was made, in Unix milliseconds (its generation).
    pub created_ms: u64,
}

/// The Docker id of a container instance (or, before it has one, of the unit): a digest of
/// rcd's id, so it stays the same for the instance's life and changes with a recreation.
pub fn docker_id(container_id: Option<&str>, unit: &str) -> String {
    let seed = match container_id {
        Some(id) => id.to_owned(),
        None => format!("rcd-unit:{unit}"),
    };
    hex::encode(Sha256::digest(seed.as_bytes()))
}

impl Container {
    /// The unit `name` of `entry`, or None for a unit with no valid version and no record.
    pub fn of(ctx: &Context, name: &str, entry: &Entry) -> Option<Container> {
        if entry.unit.is_none() && entry.record.is_none() {
            return None;
        }
        let status = crate::api::server::status_of(ctx, name, entry);
        let created_ms = entry.record.as_ref().map_or(0, |r| r.generation);
        Some(Container {
            name: name.to_owned(),
            id: docker_id(status.container_id.as_deref(), name),
            unit: entry.unit.clone(),
            status,
            created_ms,
        })
    }

    /// Every unit as a container, newest first.
    pub fn all(ctx: &Context) -> Vec<Container> {
        let mut out: Vec<Container> = ctx.units.view(|v| {
            v.iter()
                .filter_map(|(name, e)| Container::of(ctx, name, e))
                .collect()
        });
        out.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.name.cmp(&b.name)));
        out
    }

    /// The container `reference` names: a name (with or without `/`), a full id, or a
    /// prefix of one id only.
    pub fn find(ctx: &Context, reference: &str) -> Result<Container, String> {
        let all = Container::all(ctx);
        let name = reference.strip_prefix('/').unwrap_or(reference);
        if let Some(c) = all.iter().find(|c| c.name == name || c.id == reference) {
            return Ok(c.clone());
        }
        let by_prefix: Vec<&Container> = all
            .iter()
            .filter(|c| !reference.is_empty() && c.id.starts_with(reference))
            .collect();
        match by_prefix.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(format!("No such container: {reference}")),
            _ => Err(format!(
                "multiple IDs found with provided prefix: {reference}"
            )),
        }
    }

    /// Docker's state: created, running, restarting, exited.
    pub fn state(&self) -> &'static str {
        match self.status.state.as_str() {
            "running" => "running",
            "restarting" => "restarting",
            "exited" | "stopped" | "failed" => "exited",
            _ => "created",
        }
    }

    /// Docker's status text: `Up 5 minutes (healthy)`, `Exited (1) 3 minutes ago`, `Created`.
    pub fn status_text(&self, now_ms: u64) -> String {
        let since = |t: Option<&String>| {
            t.and_then(|t| humantime::parse_rfc3339(t).ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| now_ms.saturating_sub(d.as_millis() as u64))
        };
        let code = self.status.exit_code.unwrap_or(0);
        match self.state() {
            "running" => {
                let up = human_duration(since(self.status.started_at.as_ref()).unwrap_or(0));
                let health = match self.status.health.as_ref().map(|h| h.status.as_str()) {
                    Some("healthy") => " (healthy)",
                    Some("unhealthy") => " (unhealthy)",
                    Some("starting") => " (health: starting)",
                    _ => "",
                };
                format!("Up {up}{health}")
            }
            "restarting" => format!(
                "Restarting ({code}) {} ago",
                human_duration(since(self.status.finished_at.as_ref()).unwrap_or(0))
            ),
            "exited" => format!(
                "Exited ({code}) {} ago",
                human_duration(since(self.status.finished_at.as_ref()).unwrap_or(0))
            ),
            _ => "Created".into(),
        }
    }
}

/// go-units' `HumanDuration`, which Docker's status strings use.
pub fn human_duration(ms: u64) -> String {
    let seconds = ms / 1000;
    let minutes = seconds / 60;
    let hours = (ms as f64 / 3_600_000.0 + 0.5) as u64;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", ms / 3_600_000 / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_follow_the_instance() {
        let a = docker_id(Some("rcd-x-web-1"), "web");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, docker_id(Some("rcd-x-web-1"), "web"));
        assert_ne!(a, docker_id(Some("rcd-x-web-2"), "web"));
    }

    #[test]
    fn durations_read_as_docker_writes_them() {
        for (ms, want) in [
            (500, "Less than a second"),
            (1000, "1 second"),
            (42_000, "42 seconds"),
            (61_000, "About a minute"),
            (5 * 60_000, "5 minutes"),
            (60 * 60_000, "About an hour"),
            (3 * 3_600_000, "3 hours"),
            (72 * 3_600_000, "3 days"),
        ] {
            assert_eq!(human_duration(ms), want, "{ms}");
        }
    }
}
