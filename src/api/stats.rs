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
    let running: Vec<(String, String)> = ctx.units.view(|v| {
        v.iter()
            .filter(|(n, _)| q.unit.as_ref().is_none_or(|u| u == *n))
            .filter_map(|(n, e)| {
                let r = e.record.as_ref().filter(|r| r.state == RecState::Running)?;
                Some((n.clone(), r.container_id.clone()?))
            })
            .collect()
    });
    let c = ctx.clone();
    let out = tokio::task::spawn_blocking(move || {
        running
            .into_iter()
            .map(|(name, id)| UnitUsage {
                usage: crate::cgroup::usage(&c.cgroups_path(&id)),
                name,
                container_id: id,
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    Json(out)
}
