//! Image updates over the API: `rctl update` (look at the registry now, or only say what would
//! change; clear a rejected digest) and `rctl rollback` (back to the previous digest, held
//! there).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::server::ApiError;
use crate::context::Context;
use crate::reconcile::intent::Intent;
use crate::update::run::followed;
use crate::update::{Outcome, State as UpdateState};

/// `POST /v1/update`: with `now` or `retry` the updater is asked to look (the answer does not
/// wait for it); else each unit's tag is looked up here and nothing changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateRequest {
    /// The units (none: every unit that follows its tag).
    #[serde(default)]
    pub units: Vec<String>,
    /// Look at the registry and update now (else: only say what would change).
    #[serde(default)]
    pub now: bool,
    /// Forget a rejected digest and a rollback's hold, then look now.
    #[serde(default)]
    pub retry: bool,
}

/// One unit's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpdateCheck {
    /// The unit.
    pub unit: String,
    /// The image it follows.
    pub image: String,
    /// The digest its container runs.
    pub running: Option<String>,
    /// The digest its tag names in the registry now (None: the lookup failed).
    pub registry: Option<String>,
    /// What happens: "up to date", "would update", "updating", "rejected", "pinned", or the
    /// lookup's error.
    pub status: String,
}

/// The routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/update", post(update))
        .route("/v1/rollback/{name}", post(rollback))
}

async fn update(
    State(ctx): State<Arc<Context>>,
    super::access::JsonBody(req): super::access::JsonBody<UpdateRequest>,
) -> Result<Json<Vec<UpdateCheck>>, ApiError> {
    let units: Vec<(String, String)> = ctx.units.view(|t| {
        t.iter()
            .filter(|(n, _)| req.units.is_empty() || req.units.contains(n))
            .filter_map(|(n, e)| Some((n.clone(), followed(e.unit.as_ref()?)?.to_owned())))
            .collect()
    });
    if let Some(missing) = req
        .units
        .iter()
        .find(|n| !units.iter().any(|(u, _)| u == *n))
    {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("unit {missing:?} is not loaded, or does not follow its tag ([update] policy = \"registry\")"),
        ));
    }
    let mut out = Vec::new();
    for (unit, image) in units {
        let mut state = ctx.updates.get(&unit).filter(|s| s.image == image);
        if req.retry {
            if let Some(mut s) = state.clone() {
                s.rejected = None;
                s.pinned = false;
                let c = ctx.clone();
                let (n, s2) = (unit.clone(), s.clone());
                crate::pipeline::blocking(move || c.updates.put(&n, s2))
                    .await
                    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                state = Some(s);
            }
        }
        let running = ctx
            .units
            .get(&unit)
            .and_then(|e| e.record)
            .and_then(|r| r.image_digest);
        // Asked to act: the updater looks (one HEAD a unit); only a check asks here.
        let registry = if req.now || req.retry {
            Ok(ctx.updates.seen(&unit).digest.unwrap_or_default())
        } else {
            match crate::image::reference::parse(&image) {
                Ok(r) => ctx
                    .images
                    .client()
                    .resolve(&r)
                    .await
                    .map(|d| d.to_string())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        let status = match (&registry, &state) {
            (_, Some(s)) if s.trial.is_some() => "updating".into(),
            (_, Some(s)) if s.pinned && !req.retry => {
                "pinned (rctl rollback; rctl update --retry clears it)".into()
            }
            (_, _) if req.now || req.retry => "asked: the updater looks now".into(),
            (Err(e), _) => e.clone(),
            (Ok(d), _) if running.as_ref() == Some(d) => "up to date".into(),
            (Ok(d), Some(s)) if s.rejected.as_ref() == Some(d) => {
                "rejected (failed its gate)".into()
            }
            (Ok(_), _) => "would update".into(),
        };
        out.push(UpdateCheck {
            unit,
            image,
            running,
            registry: registry.ok().filter(|d| !d.is_empty()),
            status,
        });
    }
    if req.now || req.retry {
        let names: Vec<String> = out.iter().map(|c| c.unit.clone()).collect();
        ctx.updates.check_now(&names);
    }
    Ok(Json(out))
}

async fn rollback(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<UpdateState>, ApiError> {
    let running = ctx
        .units
        .get(&name)
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("unit {name:?} is not loaded"),
            )
        })?
        .record
        .and_then(|r| r.image_digest);
    let state = ctx.updates.get(&name).unwrap_or_default();
    // In a trial: back to what ran before it; else to the digest before the current one.
    let to = state
        .trial
        .as_ref()
        .map(|t| t.from.clone())
        .or(state.previous.clone())
        .ok_or_else(|| {
            ApiError(
                StatusCode::CONFLICT,
                format!("unit {name} has no previous image digest to roll back to"),
            )
        })?;
    let mut next = state.clone();
    next.previous = running
        .clone()
        .filter(|r| *r != to)
        .or(state.previous.clone());
    next.target = Some(to.clone());
    next.trial = None;
    next.pinned = true;
    next.last = Some(Outcome {
        ok: false,
        digest: running.unwrap_or_default(),
        reason: Some("rolled back by the operator".into()),
        at_ms: crate::clock::now_ms(),
    });
    let c = ctx.clone();
    let (n, s) = (name.clone(), next.clone());
    crate::pipeline::blocking(move || c.updates.put(&n, s))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    tracing::info!(unit = %name, digest = %to, "rollback asked for");
    ctx.events.emit(&name, "rollback", &[("digest", to)]);
    ctx.queue.tell(&name, Intent::NewImage);
    Ok(Json(next))
}
