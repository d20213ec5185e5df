//! What an operator does to a running container's processes: `rctl kill` (and the Docker
//! API's kill), `rctl reload UNIT` (the unit's `reload_signal`), `rctl top`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::server::ApiError;
use crate::context::{Context, Entry};
use crate::store::{Record, State as RecState};

/// What a signal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sent {
    /// SIGKILL or the container's stop signal: a stop, held as `rctl stop` holds it (Docker
    /// too counts a kill as a manual stop).
    Held,
    /// Delivered to every process of the container; nothing else changes.
    Delivered,
}

/// The answer of `kill` and `reload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signalled {
    /// The unit.
    pub unit: String,
    /// The signal, by name (`SIGHUP`).
    pub signal: String,
    /// What it did.
    pub sent: Sent,
}

/// One process of a container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Process {
    /// Its pid on the host.
    pub pid: i32,
    /// Its pid in the container's pid namespace.
    pub container_pid: Option<i32>,
    /// Its parent, on the host.
    pub ppid: i32,
    /// Its real uid.
    pub uid: u32,
    /// Its state letter (`S`, `R`, `Z`, ...).
    pub state: String,
    /// Resident memory, bytes.
    pub rss: u64,
    /// CPU time used, user and system, ms.
    pub cpu_ms: u64,
    /// Its command line (its name in brackets if it has none).
    pub command: String,
}

/// The routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/units/{name}/kill", post(kill))
        .route("/v1/units/{name}/reload", post(reload))
        .route("/v1/units/{name}/top", get(top))
}

#[derive(Debug, Deserialize)]
struct KillQuery {
    signal: Option<String>,
}

/// The running container of unit `name`: its entry and record, or why there is none (the
/// unit is not loaded: 404; not running: 409).
fn running_entry(ctx: &Context, name: &str) -> Result<(Entry, Record), ApiError> {
    let e = ctx.units.get(name).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("unit {name:?} is not loaded"),
        )
    })?;
    match e
        .record
        .clone()
        .filter(|r| r.state == RecState::Running && r.container_id.is_some())
    {
        Some(r) => Ok((e, r)),
        None => {
            let state = e.record.as_ref().map_or("pending", |r| r.state.as_str());
            Err(ApiError(
                StatusCode::CONFLICT,
                format!("unit {name} is not running (it is {state})"),
            ))
        }
    }
}

/// The host pid of unit `name`'s running container's init, and the container's id.
pub(super) fn running_pid(ctx: &Context, name: &str) -> Result<(i32, String), ApiError> {
    let (_, r) = running_entry(ctx, name)?;
    let id = r.container_id.clone().unwrap_or_default();
    r.pid.map(|pid| (pid, id)).ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            format!("unit {name} is running but its init's pid is not known yet"),
        )
    })
}

/// The running container of unit `name`: its runtime id and the signal it stops with.
fn running(ctx: &Context, name: &str) -> Result<(String, String), ApiError> {
    let (e, r) = running_entry(ctx, name)?;
    let stop = r
        .stop_signal
        .clone()
        .or_else(|| {
            e.unit
                .as_ref()
                .and_then(|u| u.container.stop_signal.clone())
        })
        .unwrap_or_else(|| "SIGTERM".into());
    Ok((r.container_id.unwrap_or_default(), stop))
}

/// Sends `signal` (default SIGKILL) to unit `name`'s running container, as `docker kill`:
/// SIGKILL or its stop signal is a held stop, any other is delivered and changes nothing else.
pub async fn signal(
    ctx: &Arc<Context>,
    name: &str,
    signal: Option<&str>,
) -> Result<Signalled, ApiError> {
    let (id, stop) = running(ctx, name)?;
    let raw = signal.unwrap_or("KILL");
    let parsed = crate::unit::parse_signal(raw).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid signal {raw:?}: {e}"),
        )
    })?;
    let sig = parsed.as_str().to_owned();
    if sig == "SIGKILL" || sig == stop {
        super::server::apply_intent(ctx, name, "stop").await?;
        return Ok(Signalled {
            unit: name.to_owned(),
            signal: sig,
            sent: Sent::Held,
        });
    }
    deliver(ctx, name, &id, &sig).await
}

/// Delivers `sig` to every process of container `id`.
async fn deliver(
    ctx: &Arc<Context>,
    name: &str,
    id: &str,
    sig: &str,
) -> Result<Signalled, ApiError> {
    let (c, id2, s) = (ctx.clone(), id.to_owned(), sig.to_owned());
    tokio::task::spawn_blocking(move || c.runtime.kill(&id2, &s, true))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    tracing::info!(unit = %name, signal = %sig, "signal delivered");
    ctx.events.emit(
        name,
        "signal",
        &[("signal", sig.to_owned()), ("container", id.to_owned())],
    );
    Ok(Signalled {
        unit: name.to_owned(),
        signal: sig.to_owned(),
        sent: Sent::Delivered,
    })
}

async fn kill(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
    Query(q): Query<KillQuery>,
) -> Result<Json<Signalled>, ApiError> {
    signal(&ctx, &name, q.signal.as_deref()).await.map(Json)
}

/// `rctl reload UNIT`: the unit's `reload_signal`, delivered (never a stop).
async fn reload(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<Signalled>, ApiError> {
    let (id, _) = running(&ctx, &name)?;
    let sig = ctx
        .units
        .get(&name)
        .and_then(|e| e.unit.as_ref()?.container.reload_signal.clone())
        .ok_or_else(|| {
            ApiError(
                StatusCode::CONFLICT,
                format!("unit {name} sets no reload_signal in [container]"),
            )
        })?;
    deliver(&ctx, &name, &id, &sig).await.map(Json)
}

/// `rctl top UNIT`: the processes of its container's cgroup, read from /proc.
async fn top(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<Process>>, ApiError> {
    let (id, _) = running(&ctx, &name)?;
    let cg = ctx.cgroups_path(&id);
    let list = tokio::task::spawn_blocking(move || processes(&crate::cgroup::pids(&cg)))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(list))
}

/// What /proc says of each of `pids` (those gone meanwhile are left out), by host pid.
pub fn processes(pids: &[i32]) -> Vec<Process> {
    let tick = procfs::ticks_per_second().max(1);
    let page = procfs::page_size();
    let mut out: Vec<Process> = pids
        .iter()
        .filter_map(|&pid| {
            let p = procfs::process::Process::new(pid).ok()?;
            let stat = p.stat().ok()?;
            let status = p.status().ok()?;
            let cmdline = p.cmdline().unwrap_or_default();
            let command = if cmdline.is_empty() {
                format!("[{}]", stat.comm)
            } else {
                cmdline.join(" ")
            };
            Some(Process {
                pid,
                container_pid: status.nspid.as_ref().and_then(|n| n.last().copied()),
                ppid: stat.ppid,
                uid: status.ruid,
                state: stat.state.to_string(),
                rss: stat.rss * page,
                cpu_ms: (stat.utime + stat.stime) * 1000 / tick,
                command,
            })
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}
