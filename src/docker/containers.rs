//! Containers: list (`docker ps`), inspect, start/stop/restart through rcd's operator intents,
//! and the changes that belong in unit files refused with the file named.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::view::Container;
use super::{query_bool, DockerError};
use crate::context::Context;

/// `docker ps`' filters: `filters_of`, with the keys and states moby accepts.
fn filters(q: &HashMap<String, String>) -> Result<HashMap<String, Vec<String>>, DockerError> {
    let out = filters_of(q)?;
    for (k, list) in &out {
        if !FILTERS.contains(&k.as_str()) {
            return Err(DockerError(
                StatusCode::BAD_REQUEST,
                format!("invalid filter '{k}'"),
            ));
        }
        if k == "status" {
            if let Some(v) = list.iter().find(|v| !STATES.contains(&v.as_str())) {
                return Err(DockerError(
                    StatusCode::BAD_REQUEST,
                    format!("invalid filter 'status={v}'"),
                ));
            }
        }
    }
    Ok(out)
}

/// A `filters=` value, in either of its JSON forms (`{"k":{"v":true}}` or `{"k":["v"]}`).
pub(super) fn filters_of(
    q: &HashMap<String, String>,
) -> Result<HashMap<String, Vec<String>>, DockerError> {
    let Some(text) = q.get("filters").filter(|t| !t.is_empty()) else {
        return Ok(HashMap::new());
    };
    let bad = |e: String| DockerError(StatusCode::BAD_REQUEST, format!("invalid filter: {e}"));
    let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let mut out = HashMap::new();
    for (k, vals) in v.as_object().ok_or_else(|| bad("not an object".into()))? {
        let list: Vec<String> = match vals {
            Value::Object(m) => m.keys().cloned().collect(),
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            _ => return Err(bad(format!("{k}: expected a map or a list"))),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

/// The filter keys `docker ps` accepts (moby's `daemon/list.go`).
const FILTERS: &[&str] = &[
    "ancestor",
    "before",
    "exited",
    "id",
    "isolation",
    "label",
    "name",
    "status",
    "health",
    "since",
    "volume",
    "network",
    "is-task",
    "publish",
    "expose",
];

/// Docker's container states.
const STATES: &[&str] = &[
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
];

/// Whether `c` passes every filter (values of one key are alternatives).
fn passes(c: &Container, f: &HashMap<String, Vec<String>>) -> bool {
    for (key, values) in f {
        let ok = match key.as_str() {
            // Docker matches a regular expression; a plain name (the common case) is a
            // substring match either way.
            "name" => values
                .iter()
                .any(|v| c.name.contains(v.trim_start_matches('/'))),
            "id" => values.iter().any(|v| c.id.starts_with(v.as_str())),
            "status" => values.iter().any(|v| v == c.state()),
            "label" => labels_match(values, &labels(c)),
            "exited" => values
                .iter()
                .any(|v| c.state() == "exited" && v.parse::<i32>().ok() == c.status.exit_code),
            "health" => values.iter().any(|v| {
                let h = c
                    .status
                    .health
                    .as_ref()
                    .map_or("none", |h| h.status.as_str());
                v == h
            }),
            "ancestor" => values.iter().any(|v| {
                c.status
                    .image
                    .as_deref()
                    .is_some_and(|i| i.contains(v.as_str()))
            }),
            // Accepted, not applied yet: no filtering rather than a refusal.
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Docker's `label` filter: every `key` or `key=value` given holds (moby's `MatchKVList`).
pub(super) fn labels_match<V: AsRef<str>>(
    values: &[String],
    labels: &std::collections::BTreeMap<String, V>,
) -> bool {
    values.iter().all(|v| match v.split_once('=') {
        Some((k, want)) => labels.get(k).is_some_and(|have| have.as_ref() == want),
        None => labels.contains_key(v.as_str()),
    })
}

fn labels(c: &Container) -> std::collections::BTreeMap<String, String> {
    let mut l = c
        .unit
        .as_ref()
        .map(|u| u.container.labels.clone())
        .unwrap_or_default();
    l.insert("io.rcd.unit".into(), c.name.clone());
    if let Some(f) = &c.status.file {
        l.insert("io.rcd.file".into(), f.clone());
    }
    l
}

/// The image a unit runs, as Docker names it (a rootfs unit: its directory).
fn image_of(c: &Container) -> String {
    match &c.unit {
        Some(u) => unit_image(u),
        None => c.status.image.clone().unwrap_or_default(),
    }
}

/// The image `unit` names, as Docker names it (a rootfs unit: its directory).
pub(super) fn unit_image(unit: &crate::unit::Unit) -> String {
    match &unit.container.source {
        crate::unit::Source::Image { reference, .. } => reference.clone(),
        crate::unit::Source::Rootfs(p) => p.display().to_string(),
    }
}

fn command_of(c: &Container) -> Vec<String> {
    c.unit
        .as_ref()
        .map(|u| {
            u.container
                .entrypoint
                .clone()
                .unwrap_or_default()
                .into_iter()
                .chain(u.container.command.clone().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// `Ports` of `docker ps`, from the published ports (`127.0.0.1:8080->80/tcp`).
fn ports(c: &Container) -> Vec<Value> {
    let Some(net) = &c.status.network else {
        return Vec::new();
    };
    net.ports
        .iter()
        .filter_map(|p| {
            let (host, inside) = p.split_once("->")?;
            let (inside, proto) = inside.split_once('/').unwrap_or((inside, "tcp"));
            let (ip, port) = host.rsplit_once(':')?;
            Some(json!({
                "IP": ip.trim_matches(['[', ']']),
                "PrivatePort": inside.parse::<u16>().ok()?,
                "PublicPort": port.parse::<u16>().ok()?,
                "Type": proto,
            }))
        })
        .collect()
}

fn networks(c: &Container) -> Value {
    let mut m = Map::new();
    if let Some(net) = &c.status.network {
        for n in &net.networks {
            let (ip, prefix) = n
                .address
                .as_deref()
                .and_then(|a| a.split_once('/'))
                .map_or(("", 0), |(ip, p)| (ip, p.parse::<u32>().unwrap_or(0)));
            m.insert(
                n.name.clone(),
                json!({
                    "NetworkID": n.name,
                    "EndpointID": "",
                    "IPAddress": ip,
                    "IPPrefixLen": prefix,
                    "Gateway": n.gateway.map(|g| g.to_string()).unwrap_or_default(),
                    "MacAddress": "",
                }),
            );
        }
    }
    Value::Object(m)
}

fn network_mode(c: &Container) -> String {
    c.unit
        .as_ref()
        .map(|u| u.network.mode.to_string())
        .unwrap_or_else(|| "default".into())
}

/// `GET /containers/json`: `docker ps`.
pub async fn list(
    State(ctx): State<Arc<Context>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<Value>>, DockerError> {
    let f = filters(&q)?;
    let limit: Option<usize> = q
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    // A status filter shows stopped containers too, as a limit does.
    let all = query_bool(q.get("all")) || f.contains_key("status") || limit.is_some();
    let now = crate::clock::now_ms();
    let mut out = Vec::new();
    for c in Container::all(&ctx) {
        // A restarting container counts as running, as in Docker (moby keeps `Running` set
        // while it waits to restart).
        if !all && !matches!(c.state(), "running" | "restarting") {
            continue;
        }
        if !passes(&c, &f) {
            continue;
        }
        out.push(json!({
            "Id": c.id,
            "Names": [format!("/{}", c.name)],
            "Image": image_of(&c),
            "ImageID": "",
            "Command": command_of(&c).join(" "),
            "Created": c.created_ms / 1000,
            "Ports": ports(&c),
            "Labels": labels(&c),
            "State": c.state(),
            "Status": c.status_text(now),
            "HostConfig": {"NetworkMode": network_mode(&c)},
            "NetworkSettings": {"Networks": networks(&c)},
            "Mounts": mounts(&c),
        }));
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    Ok(Json(out))
}

fn mounts(c: &Container) -> Vec<Value> {
    let Some(u) = &c.unit else {
        return Vec::new();
    };
    u.mounts
        .iter()
        .map(|m| {
            let kind = match m.kind {
                crate::unit::MountKind::Bind => "bind",
                crate::unit::MountKind::Volume => "volume",
                crate::unit::MountKind::Tmpfs => "tmpfs",
            };
            json!({
                "Type": kind,
                "Name": if kind == "volume" { m.source.display().to_string() } else { String::new() },
                "Source": m.source.display().to_string(),
                "Destination": m.target,
                "Mode": if m.readonly { "ro" } else { "rw" },
                "RW": !m.readonly,
                "Propagation": if kind == "bind" { "rprivate" } else { "" },
            })
        })
        .collect()
}

fn time_or_zero(t: Option<&String>) -> String {
    t.cloned().unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

/// `GET /containers/{id}/json`: `docker inspect`.
pub async fn inspect(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, DockerError> {
    let c = Container::find(&ctx, &id).map_err(|m| DockerError(StatusCode::NOT_FOUND, m))?;
    let argv = command_of(&c);
    let (path, args) = match argv.split_first() {
        Some((p, a)) => (p.clone(), a.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let u = c.unit.as_deref();
    let env: Vec<String> = u
        .map(|u| {
            u.container
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect()
        })
        .unwrap_or_default();
    let state = c.state();
    let health = c.status.health.as_ref().map(|h| {
        json!({
            "Status": h.status.as_str(),
            "FailingStreak": h.failing_streak,
            "Log": h.log.iter().map(|l| json!({
                "Start": crate::api::server::rfc3339(Some(l.start_ms)),
                "End": crate::api::server::rfc3339(Some(l.start_ms + l.took_ms)),
                "ExitCode": l.exit_code,
                "Output": l.output,
            })).collect::<Vec<_>>(),
        })
    });
    let (policy, retries) = match u.map(|u| u.restart.policy) {
        Some(crate::unit::Policy::OnFailure { max_retries }) => {
            ("on-failure", max_retries.unwrap_or(0))
        }
        Some(crate::unit::Policy::Always) => ("always", 0),
        Some(crate::unit::Policy::UnlessStopped) => ("unless-stopped", 0),
        _ => ("no", 0),
    };
    let mut port_bindings = Map::new();
    let mut port_map = Map::new();
    for p in ports(&c) {
        let key = format!(
            "{}/{}",
            p["PrivatePort"],
            p["Type"].as_str().unwrap_or("tcp")
        );
        let binding = json!([{"HostIp": p["IP"], "HostPort": p["PublicPort"].to_string()}]);
        port_bindings.insert(key.clone(), binding.clone());
        port_map.insert(key, binding);
    }
    let nets = networks(&c);
    let first = nets.as_object().and_then(|m| m.values().next()).cloned();
    let exposed: Map<String, Value> = c
        .status
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    Ok(Json(json!({
        "Id": c.id,
        "Created": crate::api::server::rfc3339(Some(c.created_ms)).unwrap_or_default(),
        "Path": path,
        "Args": args,
        "State": {
            "Status": state,
            "Running": state == "running" || state == "restarting",
            "Paused": false,
            "Restarting": state == "restarting",
            "OOMKilled": c.status.exit_reason.as_deref() == Some("oom"),
            "Dead": false,
            "Pid": c.status.pid.unwrap_or(0),
            "ExitCode": c.status.exit_code.unwrap_or(0),
            "Error": c.status.error.clone().unwrap_or_default(),
            "StartedAt": time_or_zero(c.status.started_at.as_ref()),
            "FinishedAt": time_or_zero(c.status.finished_at.as_ref()),
            "Health": health,
        },
        "Image": "",
        "Name": format!("/{}", c.name),
        "RestartCount": c.status.restarts,
        "Driver": "overlay2",
        "Platform": "linux",
        "LogPath": ctx.paths.log(&c.name).display().to_string(),
        "Config": {
            "Hostname": u.map(|u| u.container.hostname.clone()).unwrap_or_default(),
            "User": u.and_then(|u| u.container.user.map(|x| format!("{}:{}", x.uid, x.gid))).unwrap_or_default(),
            "Env": env,
            "Cmd": u.and_then(|u| u.container.command.clone()),
            "Entrypoint": u.and_then(|u| u.container.entrypoint.clone()),
            "Image": image_of(&c),
            "WorkingDir": u.and_then(|u| u.container.workdir.clone()).unwrap_or_default(),
            "Labels": labels(&c),
            "ExposedPorts": exposed,
            "StopSignal": u.and_then(|u| u.container.stop_signal.clone()).unwrap_or_default(),
            "StopTimeout": u.map(|u| u.container.stop_timeout.as_secs()),
            "Tty": false,
            "OpenStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
        },
        "HostConfig": {
            "NetworkMode": network_mode(&c),
            "RestartPolicy": {"Name": policy, "MaximumRetryCount": retries},
            "AutoRemove": false,
            "LogConfig": {"Type": "json-file", "Config": {}},
            "PortBindings": port_bindings,
            "Memory": u.and_then(|u| u.resources.memory).unwrap_or(0),
            "NanoCpus": u.and_then(|u| u.resources.cpus).map_or(0, |c| (c * 1e9) as i64),
            "PidsLimit": u.and_then(|u| u.resources.pids),
            "Privileged": u.is_some_and(|u| u.security.privileged),
            "ReadonlyRootfs": u.is_some_and(|u| u.container.read_only),
            "Binds": [],
        },
        "Mounts": mounts(&c),
        "NetworkSettings": {
            "Networks": nets,
            "Ports": port_map,
            "IPAddress": first.as_ref().map_or(json!(""), |n| n["IPAddress"].clone()),
            "Gateway": first.as_ref().map_or(json!(""), |n| n["Gateway"].clone()),
        },
    })))
}

/// The unit's file, for messages that send the operator there.
fn file_of(ctx: &Context, reference: &str) -> String {
    Container::find(ctx, reference)
        .ok()
        .and_then(|c| c.status.file)
        .unwrap_or_else(|| {
            ctx.units_dir
                .join(format!("{}.toml", reference.trim_start_matches('/')))
                .display()
                .to_string()
        })
}

async fn intent(ctx: &Arc<Context>, id: &str, verb: &str) -> Result<Response, DockerError> {
    let c = Container::find(ctx, id).map_err(|m| DockerError(StatusCode::NOT_FOUND, m))?;
    // Docker's "nothing to do": 304, which clients count as success. Only a container that
    // has ended is stopped already: one restarting, pulling or starting is on its way up, and
    // `docker stop` must hold it down as `rctl stop` does.
    let ended = c.state() == "exited";
    if (verb == "start" && c.state() == "running") || (verb == "stop" && ended) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    crate::api::server::apply_intent(ctx, &c.name, verb).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/start`: rcd's `start` (clears a hold).
pub async fn start(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Response, DockerError> {
    intent(&ctx, &id, "start").await
}

/// `POST /containers/{id}/stop`: rcd's `stop`, held stopped as `rctl stop` holds it. The
/// unit's `stop_timeout` applies (`-t` is not the unit's to change).
pub async fn stop(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Response, DockerError> {
    intent(&ctx, &id, "stop").await
}

/// `POST /containers/{id}/restart`.
pub async fn restart(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Response, DockerError> {
    intent(&ctx, &id, "restart").await
}

/// `POST /containers/create` (`docker run`, `docker create`): containers come from unit files.
/// 501, so that the CLI prints the message rather than pulling and trying again.
pub async fn refuse_create(
    State(ctx): State<Arc<Context>>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Body,
) -> DockerError {
    super::drain(body).await;
    let name = q.get("name").cloned().unwrap_or_else(|| "NAME".into());
    DockerError(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "rcd runs containers from unit files: write {} (`rctl convert 'docker run ...'` writes one from this command line)",
            ctx.units_dir.join(format!("{name}.toml")).display()
        ),
    )
}

/// `DELETE /containers/{id}` (`docker rm`).
pub async fn refuse_remove(State(ctx): State<Arc<Context>>, Path(id): Path<String>) -> DockerError {
    DockerError(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "rcd removes a container when its unit file goes: delete {} (or `docker stop` to hold it stopped)",
            file_of(&ctx, &id)
        ),
    )
}

/// `rename`, `update`, `commit`, `build`: not what a unit file's daemon does.
pub async fn refuse_change(
    State(ctx): State<Arc<Context>>,
    uri: axum::http::Uri,
    body: axum::body::Body,
) -> DockerError {
    super::drain(body).await;
    let id = uri
        .path()
        .strip_prefix("/containers/")
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let target = if id.is_empty() {
        ctx.units_dir.display().to_string()
    } else {
        file_of(&ctx, &id)
    };
    DockerError(
        StatusCode::NOT_IMPLEMENTED,
        format!("not supported by rcd: a container is what its unit file says; edit {target}"),
    )
}

/// Networks, volumes, plugins by name: none that the Docker API knows yet.
pub async fn no_object(Path(id): Path<String>) -> DockerError {
    DockerError(StatusCode::NOT_FOUND, format!("No such object: {id}"))
}
