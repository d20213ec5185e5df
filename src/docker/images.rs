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

/// The stored image `reference` names: a name (normalized as rcd does), or else its id
/// (`sha256:...`) or a prefix of the id's hex (4 digits at least). A name wins over an id
/// prefix; a prefix of two different ids is refused, as Docker does. Also says whether the
/// image was named by id while other names share it (`docker rmi` then refuses).
fn find(ctx: &Context, reference: &str) -> Result<(Image, bool), DockerError> {
    let images = ctx
        .images
        .list()
        .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let normalized = crate::image::reference::parse(reference)
        .map(|r| r.whole())
        .ok();
    if let Some(i) = images.iter().find(|i| Some(&i.name) == normalized.as_ref()) {
        return Ok((i.clone(), false));
    }
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let by_id: Vec<&Image> = images
        .iter()
        .filter(|i| {
            hex.len() >= 4
                && i.config
                    .to_string()
                    .trim_start_matches("sha256:")
                    .starts_with(hex)
        })
        .collect();
    let Some(first) = by_id.first() else {
        return Err(DockerError(
            StatusCode::NOT_FOUND,
            format!("No such image: {reference}"),
        ));
    };
    if by_id.iter().any(|i| i.config != first.config) {
        return Err(DockerError(
            StatusCode::CONFLICT,
            format!("{reference} is a prefix of more than one image id: give more of it"),
        ));
    }
    Ok(((*first).clone(), by_id.len() > 1))
}

/// The filter keys `docker images` sends that rcd answers (moby's `daemon/images/images.go`
/// has `until` too, which no CLI command sends without `--filter until=`).
const IMAGE_FILTERS: &[&str] = &["reference", "dangling", "label", "before", "since"];

/// Whether `name` (a short form, `repo:tag` or `repo@digest`) matches `pattern` as moby's
/// `reference` filter does: a shell pattern over the whole name, or over the repository
/// alone; `*` does not cross a `/`.
fn reference_matches(pattern: &str, name: &str) -> bool {
    let Ok(p) = glob::Pattern::new(pattern) else {
        return false;
    };
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let repo = crate::image::reference::repository_of(name);
    p.matches_with(name, opts) || p.matches_with(repo, opts)
}

/// `GET /images/json`: `docker images`. One entry an image (a config), all its names in
/// `RepoTags` and `RepoDigests`, as Docker's daemon answers; the CLI prints a row a tag.
pub async fn list(
    State(ctx): State<Arc<Context>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<Value>>, DockerError> {
    let filters = super::containers::filters_of(&q)?;
    if let Some(k) = filters
        .keys()
        .find(|k| !IMAGE_FILTERS.contains(&k.as_str()))
    {
        return Err(DockerError(
            StatusCode::BAD_REQUEST,
            format!("invalid filter '{k}'"),
        ));
    }
    let images = ctx
        .images
        .list()
        .map_err(|e| DockerError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // `before`/`since` name an image; the list is of those created before or after it.
    let created_of = |reference: &str| -> Result<u64, DockerError> {
        let (i, _) = find(&ctx, reference)?;
        Ok(unix_seconds(&created(&ctx, &i).1))
    };
    let before = match filters.get("before").and_then(|v| v.first()) {
        Some(r) => Some(created_of(r)?),
        None => None,
    };
    let since = match filters.get("since").and_then(|v| v.first()) {
        Some(r) => Some(created_of(r)?),
        None => None,
    };
    // Every stored image has a name: none is dangling.
    if filters
        .get("dangling")
        .is_some_and(|v| v.iter().any(|d| d == "true" || d == "1"))
    {
        return Ok(Json(Vec::new()));
    }
    let patterns = filters.get("reference");
    let mut by_config: std::collections::BTreeMap<String, Vec<&Image>> = Default::default();
    for i in &images {
        by_config.entry(i.config.to_string()).or_default().push(i);
    }
    let mut out = Vec::new();
    for (id, named) in by_config {
        let Some(&first) = named.first() else {
            continue;
        };
        let (config, when) = created(&ctx, first);
        let created = unix_seconds(&when);
        if before.is_some_and(|b| created >= b) || since.is_some_and(|s| created <= s) {
            continue;
        }
        if let Some(want) = filters.get("label") {
            let labels: std::collections::BTreeMap<String, String> =
                serde_json::from_value(config["config"]["Labels"].clone()).unwrap_or_default();
            if !super::containers::labels_match(want, &labels) {
                continue;
            }
        }
        let kept =
            |name: &String| patterns.is_none_or(|ps| ps.iter().any(|p| reference_matches(p, name)));
        let mut tags: Vec<String> = named
            .iter()
            .map(|i| short_name(&i.name))
            .filter(|n| !n.contains('@'))
            .filter(kept)
            .collect();
        let mut digests: Vec<String> = named
            .iter()
            .map(|i| {
                let digest = i.digest.as_ref().unwrap_or(&i.manifest);
                short_name(&crate::image::reference::by_digest(&i.name, digest))
            })
            .filter(kept)
            .collect();
        if patterns.is_some() && tags.is_empty() && digests.is_empty() {
            continue;
        }
        tags.sort();
        tags.dedup();
        digests.sort();
        digests.dedup();
        out.push(json!({
            "Id": id,
            "ParentId": "",
            "RepoTags": tags,
            "RepoDigests": digests,
            "Created": created,
            "Size": size(first),
            "SharedSize": -1,
            "Labels": config["config"]["Labels"].clone(),
            "Containers": -1,
        }));
    }
    Ok(Json(out))
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
    let (i, _) = find(&ctx, name)?;
    let (config, when) = created(&ctx, &i);
    Ok(Json(json!({
        "Id": i.config.to_string(),
        "RepoTags": [short_name(&i.name)],
        "RepoDigests": [short_name(&crate::image::reference::by_digest(&i.name, i.digest.as_ref().unwrap_or(&i.manifest)))],
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
    let (i, shared) = find(&ctx, &name)?;
    if shared {
        return Err(DockerError(
            StatusCode::CONFLICT,
            format!(
                "conflict: unable to delete {name}: the image is stored under more than one \
                 name; remove it by name"
            ),
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filters_match_as_mobys() {
        for (pattern, name, want) in [
            ("busybox", "busybox:latest", true),
            ("busybox:latest", "busybox:latest", true),
            ("busybox:1*", "busybox:latest", false),
            ("busy*", "busybox:latest", true),
            // `*` stays within a path component.
            ("*", "traefik/whoami:v1", false),
            ("*/*", "traefik/whoami:v1", true),
            ("127.0.0.1:5000/spare", "127.0.0.1:5000/spare:1", true),
            ("127.0.0.1:5000/spare:1", "127.0.0.1:5000/spare:1", true),
            ("127.0.0.1:5000/*", "127.0.0.1:5000/spare@sha256:ab", true),
            ("[", "busybox:latest", false),
        ] {
            assert_eq!(reference_matches(pattern, name), want, "{pattern} {name}");
        }
    }
}
