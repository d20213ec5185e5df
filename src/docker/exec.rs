//! `docker exec`: an exec instance is created (`POST /containers/{id}/exec`), started on an
//! upgraded connection (`POST /exec/{id}/start`, Docker's attach wire), and its exit code is
//! read afterwards (`GET /exec/{id}/json`). The session itself is rctl's (`api::exec`), on
//! Docker's wire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::view::Container;
use super::DockerError;
use crate::api::exec::{ExecRequest, Wire};
use crate::context::Context;
use crate::runtime::ExecOverrides;

/// Exec instances at most kept (the oldest ended ones go first).
const KEEP: usize = 256;

/// One exec instance.
#[derive(Debug, Clone)]
struct Instance {
    unit: String,
    /// The runtime's container id it runs in.
    container: String,
    docker_container: String,
    request: ExecRequest,
    overrides: ExecOverrides,
    running: bool,
    exit_code: Option<i32>,
    created_ms: u64,
}

/// The exec instances of this daemon, by their Docker id.
#[derive(Debug, Default)]
pub struct Registry {
    instances: Mutex<HashMap<String, Instance>>,
    /// Makes each id unique.
    next: std::sync::atomic::AtomicU64,
}

impl Registry {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Instance>) -> T) -> T {
        f(&mut self.instances.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The body of `POST /containers/{id}/exec`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Create {
    #[serde(default)]
    attach_stdin: bool,
    #[serde(default)]
    tty: bool,
    #[serde(default)]
    cmd: Vec<String>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    privileged: bool,
}

/// `POST /containers/{id}/exec`.
pub async fn create(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), DockerError> {
    let c = Container::find(&ctx, &id).map_err(|m| DockerError(StatusCode::NOT_FOUND, m))?;
    let req: Create = serde_json::from_slice(&body)
        .map_err(|e| DockerError(StatusCode::BAD_REQUEST, format!("exec request: {e}")))?;
    if req.cmd.first().is_none_or(|c| c.is_empty()) {
        return Err(DockerError(
            StatusCode::BAD_REQUEST,
            "No exec command specified".into(),
        ));
    }
    if req.privileged {
        return Err(DockerError(
            StatusCode::NOT_IMPLEMENTED,
            "exec --privileged is not supported by rcd: commands run with the container's capabilities".into(),
        ));
    }
    let running = c.state() == "running";
    let Some(container) = c.status.container_id.clone().filter(|_| running) else {
        return Err(DockerError(
            StatusCode::CONFLICT,
            format!("Container {} is not running", c.id),
        ));
    };
    let request = ExecRequest {
        cmd: req.cmd,
        stdin: req.attach_stdin,
        tty: req.tty,
        env: req.env.unwrap_or_default(),
        workdir: req.working_dir.filter(|w| !w.is_empty()),
        user: req.user.filter(|u| !u.is_empty()),
    };
    // Checked and resolved now, so that a bad one is the CLI's error before anything runs.
    let overrides = request
        .check()
        .and_then(|()| {
            request.overrides(
                c.status.pid,
                c.status.container_id.as_deref().unwrap_or_default(),
            )
        })
        .map_err(|m| DockerError(StatusCode::BAD_REQUEST, m))?;
    let n = ctx
        .docker_execs
        .next
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = format!("{container}:{}:{n}", crate::clock::now_ms());
    let exec_id = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(seed.as_bytes()));
    let instance = Instance {
        unit: c.name.clone(),
        container,
        docker_container: c.id.clone(),
        request,
        overrides,
        running: false,
        exit_code: None,
        created_ms: crate::clock::now_ms(),
    };
    ctx.docker_execs.with(|m| {
        if m.len() >= KEEP {
            let oldest = m
                .iter()
                .filter(|(_, i)| !i.running)
                .min_by_key(|(_, i)| i.created_ms)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                m.remove(&k);
            }
        }
        m.insert(exec_id.clone(), instance);
    });
    Ok((StatusCode::CREATED, Json(json!({"Id": exec_id}))))
}

/// `POST /exec/{id}/start`: the session on the upgraded connection (`Detach`: in the
/// background, answered at once).
pub async fn start(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    mut req: Request,
) -> Result<Response, DockerError> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let body = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|e| DockerError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let detach = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("Detach").and_then(Value::as_bool))
        .unwrap_or(false);
    let instance = ctx.docker_execs.with(|m| {
        let i = m.get_mut(&id)?;
        if i.running || i.exit_code.is_some() {
            return Some(Err(()));
        }
        i.running = true;
        Some(Ok(i.clone()))
    });
    let instance = match instance {
        None => {
            return Err(DockerError(
                StatusCode::NOT_FOUND,
                format!("No such exec instance: {id}"),
            ))
        }
        Some(Err(())) => {
            return Err(DockerError(
                StatusCode::CONFLICT,
                format!("Exec {id} has already run"),
            ))
        }
        Some(Ok(i)) => i,
    };
    tracing::info!(unit = %instance.unit, cmd = ?instance.request.cmd, "docker exec");
    let tty = instance.request.tty;
    let tasks = ctx.tasks.clone();
    let c = ctx.clone();
    let exec_id = id.clone();
    if detach {
        tasks.spawn(async move {
            crate::api::exec::run(
                &c,
                &instance.container,
                instance.request.clone(),
                &instance.overrides,
                tokio::io::join(tokio::io::empty(), tokio::io::sink()),
                Wire::Docker,
                |outcome| finish(&c, &exec_id, outcome),
            )
            .await;
        });
        return Ok(StatusCode::OK.into_response());
    }
    tasks.spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                crate::api::exec::run(
                    &c,
                    &instance.container,
                    instance.request.clone(),
                    &instance.overrides,
                    TokioIo::new(up),
                    Wire::Docker,
                    |outcome| finish(&c, &exec_id, outcome),
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(unit = %instance.unit, "docker exec: the upgrade failed: {e}");
                finish(&c, &exec_id, &Err(e.to_string()));
            }
        }
    });
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::empty())
        .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn finish(ctx: &Context, id: &str, outcome: &Result<i32, String>) {
    ctx.docker_execs.with(|m| {
        if let Some(i) = m.get_mut(id) {
            i.running = false;
            // A session that could not run, or whose client left, reads as Docker's 126/137.
            i.exit_code = Some(match outcome {
                Ok(code) => *code,
                Err(_) => 126,
            });
        }
    });
}

/// `GET /exec/{id}/json`: `docker exec`'s exit code, and `exec inspect`.
pub async fn inspect(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, DockerError> {
    let i = ctx
        .docker_execs
        .with(|m| m.get(&id).cloned())
        .ok_or_else(|| {
            DockerError(
                StatusCode::NOT_FOUND,
                format!("No such exec instance: {id}"),
            )
        })?;
    let (entry, args) = i
        .request
        .cmd
        .split_first()
        .map_or((String::new(), Vec::new()), |(e, a)| {
            (e.clone(), a.to_vec())
        });
    Ok(Json(json!({
        "ID": id,
        "Running": i.running,
        "ExitCode": i.exit_code,
        "ProcessConfig": {"tty": i.request.tty, "entrypoint": entry, "arguments": args, "privileged": false},
        "OpenStdin": i.request.stdin,
        "OpenStderr": true,
        "OpenStdout": true,
        "CanRemove": false,
        "ContainerID": i.docker_container,
        "DetachKeys": "",
        "Pid": 0,
    })))
}

/// `POST /exec/{id}/resize`: accepted; rcd's exec terminals keep their size.
pub async fn resize(State(ctx): State<Arc<Context>>, Path(id): Path<String>) -> Response {
    if ctx.docker_execs.with(|m| m.contains_key(&id)) {
        StatusCode::OK.into_response()
    } else {
        DockerError(
            StatusCode::NOT_FOUND,
            format!("No such exec instance: {id}"),
        )
        .into_response()
    }
}
