//! Networks, volumes, `system df` and `top`: what the Docker clients list beside containers.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::view::Container;
use super::DockerError;
use crate::context::Context;

fn network_json(ctx: &Context, name: &str) -> Value {
    let members: serde_json::Map<String, Value> = Container::all(ctx)
        .into_iter()
        .filter_map(|c| {
            let net = c.status.network.as_ref()?;
            let joined = net.networks.iter().find(|n| n.name == name)?;
            Some((
                c.id.clone(),
                json!({"Name": c.name, "IPv4Address": joined.address.clone().unwrap_or_default(),
                       "IPv6Address": "", "MacAddress": "", "EndpointID": ""}),
            ))
        })
        .collect();
    json!({
        "Name": name,
        "Id": super::view::docker_id(None, &format!("network:{name}")),
        "Created": "0001-01-01T00:00:00Z",
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": false,
        "Internal": false,
        "Attachable": false,
        "Ingress": false,
        "IPAM": {"Driver": "default", "Options": {}, "Config": []},
        "Containers": members,
        "Options": {},
        "Labels": {},
    })
}

/// `GET /networks`: rcd's networks (the default one and the configured CNI ones).
pub async fn networks(State(ctx): State<Arc<Context>>) -> Json<Vec<Value>> {
    let names: Vec<String> = ctx.networks.lists.keys().cloned().collect();
    Json(names.iter().map(|n| network_json(&ctx, n)).collect())
}

/// `GET /networks/{id}`: one, by name or id.
pub async fn network(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, DockerError> {
    ctx.networks
        .lists
        .keys()
        .find(|n| {
            **n == id || super::view::docker_id(None, &format!("network:{n}")).starts_with(&id)
        })
        .map(|n| Json(network_json(&ctx, n)))
        .ok_or_else(|| DockerError(StatusCode::NOT_FOUND, format!("network {id} not found")))
}

/// Every volume; `sized` walks their files for the size (only `system df` asks: Docker's
/// listings leave `UsageData` out, and tools poll them).
async fn volume_infos(ctx: &Arc<Context>, sized: bool) -> Vec<crate::volume::VolumeInfo> {
    let c = ctx.clone();
    tokio::task::spawn_blocking(move || {
        c.volumes
            .names()
            .into_iter()
            .filter_map(|n| {
                if sized {
                    c.volumes.info(&n, Vec::new()).ok()
                } else {
                    c.volumes.describe(&n, Vec::new()).ok()
                }
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

fn volume_json(v: &crate::volume::VolumeInfo, sized: bool) -> Value {
    json!({
        "Name": v.name,
        "Driver": "local",
        "Mountpoint": v.mountpoint.display().to_string(),
        "CreatedAt": v.created,
        "Labels": {},
        "Scope": "local",
        "Options": {},
        "UsageData": if sized { json!({"Size": v.size, "RefCount": -1}) } else { Value::Null },
    })
}

/// `GET /volumes`: rcd's named volumes.
pub async fn volumes(State(ctx): State<Arc<Context>>) -> Json<Value> {
    let list: Vec<Value> = volume_infos(&ctx, false)
        .await
        .iter()
        .map(|v| volume_json(v, false))
        .collect();
    Json(json!({"Volumes": list, "Warnings": []}))
}

/// `GET /volumes/{name}`.
pub async fn volume(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, DockerError> {
    let c = ctx.clone();
    let n = name.clone();
    tokio::task::spawn_blocking(move || c.volumes.describe(&n, Vec::new()).ok())
        .await
        .ok()
        .flatten()
        .map(|v| Json(volume_json(&v, false)))
        .ok_or_else(|| DockerError(StatusCode::NOT_FOUND, format!("get {name}: no such volume")))
}

/// `GET /system/df`: images, containers and volumes with their sizes.
pub async fn df(State(ctx): State<Arc<Context>>) -> Result<Json<Value>, DockerError> {
    let images = ctx
        .images
        .list()
        .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let layers: u64 = images
        .iter()
        .flat_map(|i| i.layers.iter().map(|l| (l.blob.to_string(), l.size)))
        .collect::<std::collections::BTreeMap<_, _>>()
        .values()
        .sum();
    let containers = Container::all(&ctx);
    let image_docs: Vec<Value> = images
        .iter()
        .map(|i| {
            let size: u64 = i.layers.iter().map(|l| l.size).sum();
            let used = containers
                .iter()
                .filter(|c| {
                    matches!(c.unit.as_ref().map(|u| &u.container.source),
                        Some(crate::unit::Source::Image { reference, .. }) if *reference == i.name)
                })
                .count();
            json!({"Id": i.config.to_string(), "ParentId": "", "RepoTags": [i.name],
                   "RepoDigests": [], "Created": i.stored_ms / 1000, "Size": size,
                   "SharedSize": 0, "Labels": {}, "Containers": used})
        })
        .collect();
    let container_docs: Vec<Value> = containers
        .iter()
        .map(|c| {
            json!({"Id": c.id, "Names": [format!("/{}", c.name)], "Image": c.status.image.clone().unwrap_or_default(),
                   "Command": "", "Created": c.created_ms / 1000, "State": c.state(),
                   "Status": c.status_text(crate::clock::now_ms()), "SizeRw": 0, "SizeRootFs": 0,
                   "Labels": {}, "Mounts": []})
        })
        .collect();
    let volume_docs: Vec<Value> = volume_infos(&ctx, true)
        .await
        .iter()
        .map(|v| volume_json(v, true))
        .collect();
    Ok(Json(json!({
        "LayersSize": layers,
        "Images": image_docs,
        "Containers": container_docs,
        "Volumes": volume_docs,
        "BuildCache": [],
    })))
}

/// `GET /containers/{id}/top`: the container's processes, as `ps` shows them.
pub async fn top(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Query(_q): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, DockerError> {
    let c = Container::find(&ctx, &id).map_err(|m| DockerError(StatusCode::NOT_FOUND, m))?;
    let (Some(runtime_id), "running") = (c.status.container_id.clone(), c.state()) else {
        return Err(DockerError(
            StatusCode::CONFLICT,
            format!("container {} is not running", c.name),
        ));
    };
    let cg = ctx.cgroups_path(&runtime_id);
    let out = tokio::task::spawn_blocking(move || {
        let pids = crate::cgroup::pids(&cg);
        if pids.is_empty() {
            return Ok(String::new());
        }
        let list: Vec<String> = pids.iter().map(i32::to_string).collect();
        std::process::Command::new("ps")
            .args([
                "-o",
                "uid,pid,ppid,c,stime,tty,time,cmd",
                "-p",
                &list.join(","),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    })
    .await
    .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, format!("ps: {e}")))?;
    let mut lines = out.lines();
    let titles: Vec<String> = lines
        .next()
        .map(|h| h.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_else(|| {
            ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
                .map(String::from)
                .to_vec()
        });
    let n = titles.len();
    let processes: Vec<Vec<String>> = lines
        .map(|l| {
            // The last column (the command) keeps its spaces.
            let mut cols: Vec<String> = Vec::new();
            let mut rest = l.trim_start();
            for _ in 0..n.saturating_sub(1) {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                cols.push(rest[..end].to_owned());
                rest = rest[end..].trim_start();
            }
            cols.push(rest.to_owned());
            cols
        })
        .collect();
    Ok(Json(json!({"Titles": titles, "Processes": processes})))
}
