//! The API server: routes over the Unix socket, answered from the unit table; operator intents
//! (start, stop, restart) are written to the record and applied through the reconciler.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::types::{DaemonInfo, ErrorBody, Inspect, Reloaded, ShutDown, UnitStatus};
use crate::context::{Context, Entry};
use crate::reconcile::intent::Intent;
use crate::store::State as RecState;
use crate::unit::Policy;

/// The API's routes.
pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/v1/units", get(list))
        .route("/v1/units/{name}", get(status))
        .route("/v1/units/{name}/inspect", get(inspect))
        .route("/v1/units/{name}/cat", get(cat))
        .route("/v1/units/{name}/exec", post(super::exec::exec))
        .route("/v1/units/{name}/{verb}", post(intent))
        .route("/v1/events", get(super::events::events))
        .route("/v1/stats", get(super::stats::stats))
        .route("/v1/reload", post(reload))
        .route("/v1/shutdown", post(shutdown))
        .route("/v1/daemon", get(daemon))
        .route("/metrics", get(super::metrics::metrics))
        .merge(super::images::routes())
        .merge(super::volumes::routes())
        .merge(super::update::routes())
        .merge(super::process::routes())
        .merge(super::copy::routes())
        .merge(super::logs::routes())
        .fallback(super::access::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(
            super::access::MAX_BODY,
        ))
        .layer(axum::middleware::from_fn(super::access::meter_requests))
        .layer(axum::middleware::from_fn(super::access::log_requests))
        .with_state(ctx)
}

/// An error answer: its status and message.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

/// Runs blocking work (files, /proc) off the async workers; its own result comes back whole,
/// a panic in it is a 500.
pub async fn blocking<T: Send + 'static, E: Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<Result<T, E>, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn unknown(name: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("unit {name:?} is not loaded"),
    )
}

/// When a pending restart is due, on today's wall clock: the monotonic deadline's distance from
/// now, so that a clock set since then does not show a date the daemon is not waiting for.
fn restart_at(r: &crate::store::Record) -> Option<u64> {
    match r.restart_due_boot_ms {
        Some(due) => Some(crate::clock::now_ms() + due.saturating_sub(crate::clock::boot_ms())),
        None => r.restart_at_ms,
    }
}

/// Milliseconds since the epoch as RFC 3339.
pub fn rfc3339(ms: Option<u64>) -> Option<String> {
    ms.map(crate::clock::rfc3339_ms)
}

/// The status of one table entry.
pub fn status_of(ctx: &Context, name: &str, e: &Entry) -> UnitStatus {
    let r = e.record.as_ref();
    let state = match (r, &e.unit) {
        (Some(r), _) => r.state.as_str(),
        (None, None) => "invalid",
        (None, Some(_)) => RecState::Pending.as_str(),
    };
    let image = e.unit.as_ref().and_then(|u| match &u.container.source {
        crate::unit::Source::Image { reference, .. } => Some(reference.clone()),
        crate::unit::Source::Rootfs(_) => None,
    });
    let policy = e.unit.as_ref().map(|u| {
        match u.restart.policy {
            Policy::No => "no",
            Policy::OnFailure { .. } => "on-failure",
            Policy::Always => "always",
            Policy::UnlessStopped => "unless-stopped",
        }
        .to_string()
    });
    UnitStatus {
        name: name.to_string(),
        state: state.to_string(),
        pid: r.and_then(|r| {
            if r.state == RecState::Running {
                r.pid
            } else {
                None
            }
        }),
        restarts: r.map_or(0, |r| r.restarts),
        exit_code: r.and_then(|r| r.exit_code),
        exit_reason: r.and_then(|r| r.exit_reason.clone()),
        error: e
            .file_error
            .clone()
            .or_else(|| r.and_then(|r| r.error.clone())),
        spec_hash: r
            .and_then(|r| r.spec_hash.clone())
            .or_else(|| e.unit.as_ref().map(|u| u.spec_hash.clone())),
        started_at: rfc3339(r.and_then(|r| r.started_at_ms)),
        finished_at: rfc3339(r.and_then(|r| r.finished_at_ms)),
        since: rfc3339(r.map(|r| r.since_ms)),
        restart_at: rfc3339(r.and_then(restart_at)),
        file: e.file.as_ref().map(|f| f.display().to_string()),
        sources: e
            .unit
            .as_ref()
            .map(|u| {
                u.sources
                    .iter()
                    .filter(|f| Some(*f) != e.file.as_ref())
                    .map(|f| f.display().to_string())
                    .collect()
            })
            .unwrap_or_default(),
        policy,
        autostart: e.unit.as_ref().map(|u| u.autostart),
        held: r.is_some_and(|r| r.hold),
        description: e.unit.as_ref().and_then(|u| u.description.clone()),
        container_id: r.and_then(|r| r.container_id.clone()),
        image_digest: r.and_then(|r| r.image_digest.clone()),
        update: ctx.updates.view(
            name,
            e.unit
                .as_ref()
                .is_some_and(|u| crate::update::run::followed(u).is_some()),
        ),
        image: image.clone(),
        pull: image
            .filter(|_| state == RecState::Pulling.as_str())
            .and_then(|i| ctx.images.progress(&i)),
        exposed_ports: r.map(|r| r.exposed_ports.clone()).unwrap_or_default(),
        network: r.and_then(|r| {
            r.network
                .clone()
                .or_else(|| r.shared_network.as_ref().and_then(|s| s.network.clone()))
        }),
        shares_network_of: r.and_then(|r| r.shared_network.as_ref().map(|s| s.unit.clone())),
        waiting_for: r.and_then(|r| r.waiting_for.clone()),
        health: r
            .filter(|r| r.state == RecState::Running)
            .and_then(|r| r.container_id.as_deref())
            .and_then(|id| ctx.health.get(id)),
        deps: e.unit.as_ref().map(|u| u.deps.clone()).unwrap_or_default(),
        logs_dropped: r
            .and_then(|r| r.container_id.as_ref())
            .map_or(0, |id| ctx.log_drops.get(id)),
    }
}

async fn daemon(State(ctx): State<Arc<Context>>) -> Json<DaemonInfo> {
    Json(DaemonInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        units_dir: ctx.units_dir.display().to_string(),
        root: ctx.paths.root.display().to_string(),
        runtime: ctx.runtime.binary.display().to_string(),
        units_dir_error: ctx
            .dir_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    })
}

async fn list(State(ctx): State<Arc<Context>>) -> Json<Vec<UnitStatus>> {
    Json(
        ctx.units
            .view(|v| v.iter().map(|(n, e)| status_of(&ctx, n, e)).collect()),
    )
}

async fn status(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<UnitStatus>, ApiError> {
    let e = ctx.units.get(&name).ok_or_else(|| unknown(&name))?;
    Ok(Json(status_of(&ctx, &name, &e)))
}

async fn inspect(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<Inspect>, ApiError> {
    let e = ctx.units.get(&name).ok_or_else(|| unknown(&name))?;
    let record = e.record.as_ref();
    Ok(Json(Inspect {
        status: status_of(&ctx, &name, &e),
        unit: e
            .unit
            .as_ref()
            .and_then(|u| serde_json::to_value(&**u).ok()),
        // The secrets' digest stays inside: a short secret could be found from it.
        record: record
            .and_then(|r| serde_json::to_value(r).ok())
            .map(|mut v| {
                if let Some(o) = v.as_object_mut() {
                    o.remove("secret_digest");
                }
                v
            }),
        bundle: record
            .and_then(|r| r.container_id.as_ref())
            .map(|id| ctx.paths.bundle(id).display().to_string()),
        log: ctx.paths.log(&name).display().to_string(),
    }))
}

/// The effective unit (`rctl cat`): its layers merged, every value with its origin.
async fn cat(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<super::types::Cat>, ApiError> {
    let file = ctx
        .units
        .get(&name)
        .filter(|e| e.present)
        .and_then(|e| e.file.clone())
        .ok_or_else(|| unknown(&name))?;
    let rendered = tokio::task::spawn_blocking(move || crate::unit::effective(&file))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match rendered {
        Ok(text) => Ok(Json(super::types::Cat { text })),
        Err(e) => Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
    }
}

async fn intent(
    State(ctx): State<Arc<Context>>,
    Path((name, verb)): Path<(String, String)>,
) -> Result<Json<UnitStatus>, ApiError> {
    apply_intent(&ctx, &name, &verb).await.map(Json)
}

/// An operator intent (`start`, `stop`, `restart`) on `name`, as `rctl` asks it: handed to
/// the reconciler, answered once applied (or with why not).
pub async fn apply_intent(
    ctx: &Arc<Context>,
    name: &str,
    verb: &str,
) -> Result<UnitStatus, ApiError> {
    let name = name.to_owned();
    let Some(intent) = Intent::from_verb(verb) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no such action {verb:?}"),
        ));
    };
    {
        let e = ctx.units.get(&name).ok_or_else(|| unknown(&name))?;
        if e.unit.is_none() {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "unit {name:?} has no valid version: {}",
                    e.file_error.clone().unwrap_or_default()
                ),
            ));
        }
    }
    let rx = ctx
        .queue
        .ask(&name, intent)
        .map_err(|e| ApiError(StatusCode::TOO_MANY_REQUESTS, e.to_string()))?;
    if tokio::time::timeout(ctx.intent_timeout, rx).await.is_err() {
        return Err(ApiError(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "unit {name:?}: {verb} not done within {}; the request stands and is still \
                 being applied (see `rctl status {name}`)",
                humantime::format_duration(ctx.intent_timeout)
            ),
        ));
    }
    let e = ctx.units.get(&name).ok_or_else(|| unknown(&name))?;
    let st = status_of(ctx, &name, &e);
    // A stop that failed is the request's failure too; it stands and is tried again.
    if verb == "stop" && st.state == "running" {
        if let Some(err) = &st.error {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "unit {name:?} is still running, the stop failed (it is tried again): {err}"
                ),
            ));
        }
    }
    // A start that failed is the request's failure too.
    if verb != "stop" && st.state != "running" {
        if let Some(err) = &st.error {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("unit {name:?} is {}: {err}", st.state),
            ));
        }
    }
    Ok(st)
}

/// `?containers=stop|keep` of `POST /v1/shutdown`.
#[derive(serde::Deserialize)]
struct ShutdownQuery {
    containers: Option<String>,
}

/// Stops the daemon as SIGTERM does; with `containers=stop`, every container first (dependents
/// first), whatever `live_restore` says: what a package removal wants, so that nothing is left
/// running without its supervisor. Answered once the containers' part is done.
async fn shutdown(
    State(ctx): State<Arc<Context>>,
    axum::extract::Query(q): axum::extract::Query<ShutdownQuery>,
) -> Result<Json<ShutDown>, ApiError> {
    let stop = match q.containers.as_deref() {
        None | Some("keep") => false,
        Some("stop") => true,
        Some(other) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("containers={other:?}: expected \"stop\" or \"keep\""),
            ))
        }
    };
    if stop {
        ctx.shutdown
            .stop_containers
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    tracing::info!(stop_containers = stop, "shutdown asked for through the API");
    let mut done = ctx.shutdown.done.subscribe();
    ctx.shutdown.requested.notify_one();
    let _ = done.wait_for(|d| *d).await;
    Ok(Json(ShutDown {
        containers_stopped: stop || !ctx.settings().live_restore,
    }))
}

/// Rescans the units directory through the scan owner; answered once the scan is applied.
async fn reload(State(ctx): State<Arc<Context>>) -> Result<Json<Reloaded>, ApiError> {
    let changed = ctx
        .scans
        .reload()
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Json(Reloaded {
        changed: changed.into_iter().collect(),
    }))
}
