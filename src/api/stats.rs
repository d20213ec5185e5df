//! `GET /v1/stats[?unit=NAME]`: what each running container uses, from its cgroup.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::cgroup::Usage;
use crate::context::Context;
use crate::store::State as RecState;

/// One running container's usage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitUsage {
    /// The unit.
    pub name: String,
    /// Its container.
    pub container_id: String,
    /// What its cgroup says.
    pub usage: Usage,
    /// Its network namespace's interfaces (loopback left out; none with the host's network).
    #[serde(default)]
    pub net: Vec<crate::network::counters::Interface>,
    /// Its cgroup's block I/O, a device a row.
    #[serde(default)]
    pub io: Vec<crate::cgroup::DeviceIo>,
}

/// The filter.
#[derive(Debug, Deserialize)]
pub struct StatsQuery {
    /// One unit's only.
    pub unit: Option<String>,
}

/// The usage of every running container (or one unit's).
pub async fn stats(
    State(ctx): State<Arc<Context>>,
    Query(q): Query<StatsQuery>,
) -> Json<Vec<UnitUsage>> {
    // Each running container, with its init's pid when its network is its own.
    let running: Vec<(String, String, Option<i32>)> = ctx.units.view(|v| {
        v.iter()
            .filter(|(n, _)| q.unit.as_ref().is_none_or(|u| u == *n))
            .filter_map(|(n, e)| {
                let r = e.record.as_ref().filter(|r| r.state == RecState::Running)?;
                let host = e
                    .unit
                    .as_ref()
                    .is_some_and(|u| u.network.mode == crate::unit::NetworkMode::Host);
                Some((n.clone(), r.container_id.clone()?, r.pid.filter(|_| !host)))
            })
            .collect()
    });
    let c = ctx.clone();
    let out = tokio::task::spawn_blocking(move || {
        running
            .into_iter()
            .map(|(name, id, pid)| {
                let cg = c.cgroups_path(&id);
                UnitUsage {
                    usage: crate::cgroup::usage(&cg),
                    net: pid
                        .map(crate::network::counters::interfaces)
                        .unwrap_or_default(),
                    io: crate::cgroup::io(&cg),
                    name,
                    container_id: id,
                }
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    Json(out)
}
