//! Images: `docker images`, `image inspect`, `pull` (Docker's progress lines), `rmi` and
//! `image prune` with rcd's rule (an image a unit names, or a container still uses, stays).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::DockerError;
use crate::context::Context;
use crate::image::store::Image;

/// Docker's short form of a stored name: `docker.io/library/busybox:latest` is
/// `busybox:latest`, `docker.io/traefik/whoami:v1` is `traefik/whoami:v1`.
fn short_name(name: &str) -> String {
    let n = name.strip_prefix("docker.io/").unwrap_or(name);
    n.strip_prefix("library/").unwrap_or(n).to_owned()
}

fn created(ctx: &Context, image: &Image) -> (Value, String) {
    let config: Value = ctx
        .images
        .content
        .read(&image.config)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let when = config["created"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| crate::api::server::rfc3339(Some(image.stored_ms)).unwrap_or_default());
    (config, when)
}

fn unix_seconds(rfc3339: &str) -> u64 {
    humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z'))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

fn size(image: &Image) -> u64 {
    image.layers.iter().map(|l| l.size).sum()
}

/// The stored image `reference` names: a name (normalized as rcd does), its id
/// (`sha256:...`) or a prefix of the id's hex.
fn find(ctx: &Context, reference: &str) -> Result<Image, DockerError> {
    let images = ctx
        .images
        .list()
        .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let normalized = crate::image::reference::parse(reference)
        .map(|r| r.whole())
        .ok();
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    images
        .into_iter()
        .find(|i| {
            Some(&i.name) == normalized.as_ref()
                || (hex.len() >= 4
                    && i.config
                        .to_string()
                        .trim_start_matches("sha256:")
                        .starts_with(hex))
        })
        .ok_or_else(|| DockerError(StatusCode::NOT_FOUND, format!("No such image: {reference}")))
}

/// `GET /images/json`: `docker images`.
pub async fn list(State(ctx): State<Arc<Context>>) -> Result<Json<Vec<Value>>, DockerError> {
    let images = ctx
        .images
        .list()
        .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(
        images
            .iter()
            .map(|i| {
                let (config, when) = created(&ctx, i);
                json!({
                    "Id": i.config.to_string(),
                    "ParentId": "",
                    "RepoTags": [short_name(&i.name)],
                    "RepoDigests": [format!("{}@{}", short_name(&i.name).split(':').next().unwrap_or_default(), i.manifest)],
                    "Created": unix_seconds(&when),
                    "Size": size(i),
                    "SharedSize": -1,
                    "Labels": config["config"]["Labels"].clone(),
                    "Containers": -1,
                })
            })
            .collect(),
    ))
}

/// `GET /images/{name}/json` (names have slashes, so the route is a wildcard).
pub async fn get_image(
    State(ctx): State<Arc<Context>>,
    Path(rest): Path<String>,
) -> Result<Json<Value>, DockerError> {
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(DockerError(
            StatusCode::NOT_FOUND,
            format!("No such image: {rest}"),
        ));
    };
    let i = find(&ctx, name)?;
    let (config, when) = created(&ctx, &i);
    Ok(Json(json!({
        "Id": i.config.to_string(),
        "RepoTags": [short_name(&i.name)],
        "RepoDigests": [format!("{}@{}", short_name(&i.name).split(':').next().unwrap_or_default(), i.manifest)],
        "Parent": "",
        "Comment": "",
        "Created": when,
        "Author": config["author"].as_str().unwrap_or_default(),
        "Config": config["config"].clone(),
        "Architecture": config["architecture"].clone(),
        "Os": config["os"].clone(),
        "Size": size(&i),
        "RootFS": {"Type": "layers", "Layers": i.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
        "Metadata": {"LastTagTime": crate::api::server::rfc3339(Some(i.stored_ms))},
    })))
}

/// `DELETE /images/{name}`: `docker rmi`, refused while a unit names it.
pub async fn remove(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, DockerError> {
    let i = find(&ctx, &name)?;
    let c = ctx.clone();
    ctx.images
        .remove(&i.name, |stored| crate::api::images::users(&c, stored))
        .await
        .map_err(|e| {
            let code = match e {
                crate::image::service::Error::InUse { .. }
                | crate::image::service::Error::Pinned(_) => StatusCode::CONFLICT,
                crate::image::service::Error::Absent(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            DockerError(code, e.to_string())
        })?;
    Ok(Json(json!([
        {"Untagged": short_name(&i.name)},
        {"Deleted": i.config.to_string()},
    ])))
}

/// `POST /images/create?fromImage=NAME&tag=TAG`: `docker pull`, with Docker's progress lines
/// (a status line when it starts, one per layer stored, the digest and the outcome).
pub async fn pull(
    State(ctx): State<Arc<Context>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, DockerError> {
    let Some(from) = q.get("fromImage").filter(|f| !f.is_empty()).cloned() else {
        return Err(DockerError(
            StatusCode::NOT_IMPLEMENTED,
            "importing an image from a tar stream: use `rctl image import FILE`".into(),
        ));
    };
    let reference = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.clone(),
    };
    let image = crate::image::reference::parse(&reference)
        .map(|r| r.whole())
        .map_err(|e| {
            DockerError(
                StatusCode::BAD_REQUEST,
                format!("invalid reference format: {e}"),
            )
        })?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Value>(8);
    let tag = q.get("tag").cloned().unwrap_or_else(|| "latest".into());
    let c = ctx.clone();
    ctx.tasks.spawn(async move {
        let _ = tx
            .send(json!({"status": format!("Pulling from {}", from), "id": tag}))
            .await;
        let pin = c.images.pin(&image);
        let pulled = c.images.pull(&image, &pin).await;
        c.images.unpin(pin).await;
        let lines = match pulled {
            Ok(stored) => {
                let mut v: Vec<Value> = stored
                    .layers
                    .iter()
                    .map(|l| {
                        let short = l.blob.to_string();
                        let short = short.trim_start_matches("sha256:").get(..12).unwrap_or_default().to_owned();
                        json!({"status": "Pull complete", "progressDetail": {}, "id": short})
                    })
                    .collect();
                v.push(json!({"status": format!("Digest: {}", stored.manifest)}));
                v.push(json!({"status": format!("Status: Image is up to date for {}", short_name(&stored.name))}));
                v
            }
            Err(e) => {
                let message = e.to_string();
                vec![json!({"errorDetail": {"message": message}, "error": message})]
            }
        };
        for l in lines {
            if tx.send(l).await.is_err() {
                return;
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        let v = rx.recv().await?;
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::io::Error>(line), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// `POST /images/prune`: every image no unit names (rcd's rule, whatever the filters).
pub async fn prune(State(ctx): State<Arc<Context>>) -> Result<Json<Value>, DockerError> {
    let c = ctx.clone();
    let pruned = ctx
        .images
        .prune(|i| !crate::api::images::users(&c, i).is_empty())
        .await
        .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({
        "ImagesDeleted": pruned.images.iter().map(|n| json!({"Untagged": short_name(n)})).collect::<Vec<_>>(),
        "SpaceReclaimed": pruned.swept.bytes,
    })))
}
