//! The image routes: list, pull (streamed progress), remove (refused while in use), prune,
//! import (the archive streamed in the request body).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;

use super::server::{rfc3339, ApiError};
use super::types::{ImageInfo, ImageRemoved, ImageRequest, ImagesImported, PullLine};
use crate::context::Context;
use crate::image::service::{Error, Pruned};
use crate::image::store::Image;
use crate::unit::Source;

/// The image routes, under `/v1/images`.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/images", get(list))
        .route("/v1/images/pull", post(pull))
        .route("/v1/images/rm", post(remove))
        .route("/v1/images/prune", post(prune))
        .route("/v1/images/import", post(import))
}

fn api_error(e: Error) -> ApiError {
    let code = match &e {
        Error::Absent(_) => StatusCode::NOT_FOUND,
        Error::InUse { .. } | Error::Pinned(_) => StatusCode::CONFLICT,
        Error::Reference(_) | Error::Import(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(code, e.to_string())
}

/// The image a request names, normalized (`busybox` is `docker.io/library/busybox:latest`), or
/// a 400 with the parser's reason.
pub fn normalize(reference: &str) -> Result<String, ApiError> {
    crate::image::reference::parse(reference)
        .map(|r| r.whole())
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))
}

/// Units that name `image` in their current file, and containers left by a unit file removed
/// or changed (being torn down) whose overlay stands on the image's top layer; sorted.
/// (Layers a running container stands on are never swept, whatever the image records say.)
/// The units that name `image` or whose leftover container still uses it.
pub fn users(ctx: &Context, image: &Image) -> Vec<String> {
    let top = ctx
        .images
        .tops()
        .ok()
        .and_then(|mut t| t.remove(&image.name));
    let mounted: Vec<_> = crate::rootfs::overlays()
        .into_iter()
        .filter(|m| top.as_ref().is_some_and(|t| m.lowers.contains(t)))
        .map(|m| m.target)
        .collect();
    ctx.units.view(|table| {
    let mut out: Vec<String> = Vec::new();
    for (name, e) in table.iter() {
        let names_it = e.unit.as_ref().is_some_and(|u| {
            matches!(&u.container.source, Source::Image { reference, .. } if *reference == image.name)
        });
        // What image updates run, try or would roll back to, by digest.
        let updates_keep = ctx
            .updates
            .get(name)
            .is_some_and(|s| crate::update::kept_names(&s).contains(&image.name));
        let leftover = e.unit.is_none()
            && e.record
                .as_ref()
                .and_then(|r| r.container_id.as_ref())
                .is_some_and(|id| {
                    mounted
                        .iter()
                        .any(|m| m.starts_with(ctx.paths.container(id)))
                });
        if names_it || updates_keep || leftover {
            out.push(name.clone());
        }
    }
    out
    })
}

fn info(ctx: &Context, image: &Image) -> ImageInfo {
    ImageInfo {
        name: image.name.clone(),
        id: image.config.to_string(),
        manifest: image.manifest.to_string(),
        size: image.layers.iter().map(|l| l.size).sum(),
        layers: image.layers.len(),
        stored: rfc3339(Some(image.stored_ms)),
        used_by: users(ctx, image),
    }
}

async fn list(State(ctx): State<Arc<Context>>) -> Result<Json<Vec<ImageInfo>>, ApiError> {
    let images = ctx.images.list().map_err(api_error)?;
    Ok(Json(images.iter().map(|i| info(&ctx, i)).collect()))
}

/// Streams one JSON line at once and then every 250 ms while the pull runs, and a last line
/// with the image or the error. The pull goes on if the client leaves: it is the daemon's work.
async fn pull(
    State(ctx): State<Arc<Context>>,
    super::access::JsonBody(req): super::access::JsonBody<ImageRequest>,
) -> Result<Response, ApiError> {
    let image = normalize(&req.reference)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<PullLine>(4);
    let c = ctx.clone();
    let name = image.clone();
    let task = ctx.tasks.spawn(async move {
        let pin = c.images.pin(&name);
        let pulled = c.images.pull(&name, &pin).await;
        c.images.unpin(pin).await;
        pulled
    });
    let tasks = ctx.tasks.clone();
    tasks.spawn(async move {
        let line = |progress| PullLine {
            image: image.clone(),
            progress,
            ..PullLine::default()
        };
        let mut task = task;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let last = loop {
            tokio::select! {
                done = &mut task => break done,
                _ = tick.tick() => {
                    let counts = ctx.images.progress(&image).unwrap_or_default();
                    if tx.send(line(counts)).await.is_err() {
                        // The client left; the pull finishes on its own.
                        return;
                    }
                }
            }
        };
        let mut end = line(ctx.images.progress(&image).unwrap_or_default());
        match last {
            Ok(Ok(stored)) => {
                let total = stored.layers.iter().map(|l| l.size).sum();
                end.progress.layers_total = stored.layers.len() as u64;
                end.progress.layers_done = end.progress.layers_total;
                end.progress.bytes_total = total;
                end.progress.bytes_done = total;
                end.done = Some(info(&ctx, &stored));
            }
            Ok(Err(e)) => end.error = Some(format!("{image}: {e}")),
            Err(e) => end.error = Some(format!("{image}: pull task failed: {e}")),
        }
        let _ = tx.send(end).await;
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|line| {
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        Ok::<_, std::io::Error>(bytes)
    });
    Ok(Body::from_stream(stream).into_response())
}

async fn remove(
    State(ctx): State<Arc<Context>>,
    super::access::JsonBody(req): super::access::JsonBody<ImageRequest>,
) -> Result<Json<ImageRemoved>, ApiError> {
    let image = normalize(&req.reference)?;
    let swept = ctx
        .images
        .remove(&image, |stored| users(&ctx, stored))
        .await
        .map_err(api_error)?;
    tracing::info!(
        image,
        blobs = swept.blobs,
        snapshots = swept.snapshots,
        "image removed"
    );
    Ok(Json(ImageRemoved { image, swept }))
}

async fn prune(State(ctx): State<Arc<Context>>) -> Result<Json<Pruned>, ApiError> {
    let pruned = ctx
        .images
        .prune(|i| !users(&ctx, i).is_empty())
        .await
        .map_err(api_error)?;
    tracing::info!(
        images = pruned.images.len(),
        blobs = pruned.swept.blobs,
        snapshots = pruned.swept.snapshots,
        bytes = pruned.swept.bytes,
        "images pruned"
    );
    Ok(Json(pruned))
}

/// The import route's query string.
#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    /// Names an image the archive leaves unnamed.
    pub name: Option<String>,
}

async fn import(
    State(ctx): State<Arc<Context>>,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> Result<Json<ImagesImported>, ApiError> {
    // Checked here, passed as written: normalizing would tag a bare name `:latest`, and a
    // bare name must take the tags the layout's index gives (`--name busybox` and a tag `vm`
    // are `busybox:vm`).
    if let Some(n) = q.name.as_deref() {
        normalize(n)?;
    }
    let name = q.name.clone();
    let reader =
        tokio_util::io::StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    let mut reader = tokio_util::io::SyncIoBridge::new(reader);
    // The upload is spooled to a file first, holding no lock: a slow client must not hold
    // up removal, and through it every image start. Only the import itself runs under the
    // stores' shared lock.
    let spool_dir = ctx.paths.root.join("images");
    let spooled = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let mut file = tempfile::tempfile_in(&spool_dir)?;
        std::io::copy(&mut reader, &mut file)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
        Ok(file)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("reading the archive: {e}")))?;
    let _shared = ctx.images.shared().await;
    let c = ctx.clone();
    let imported = tokio::task::spawn_blocking(move || {
        c.images
            .import(std::io::BufReader::new(spooled), name.as_deref())
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(api_error)?;
    for i in &imported {
        tracing::info!(image = %i.name, "image imported");
    }
    Ok(Json(ImagesImported {
        images: imported.iter().map(|i| info(&ctx, i)).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the api_request fuzz target (fuzz/regressions/api_request): a pull of this
    /// reference was accepted under a name that does not parse again, so the image could be
    /// stored but never named.
    #[test]
    fn normalized_names_parse_again() {
        let found = "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmWmmmmmmmmmm/mmmmmmmmmymmombx20:00024-09-01T0.000000000Z";
        match normalize(found) {
            Ok(name) => panic!("{found:?} accepted as {name:?}"),
            Err(ApiError(code, message)) => {
                assert_eq!(code, StatusCode::BAD_REQUEST);
                assert!(message.contains("must be lowercase"), "{message}");
            }
        }
        for good in [
            "busybox",
            "Registry.Example.com/team/app:1",
            "127.0.0.1:5000/a/b",
        ] {
            let Ok(name) = normalize(good) else {
                panic!("{good:?} refused");
            };
            assert_eq!(normalize(&name).ok().as_ref(), Some(&name), "{good:?}");
        }
    }
}
