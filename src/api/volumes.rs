//! The volume routes: list, inspect, remove (refused while a unit names it), prune.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::server::ApiError;
use super::types::{VolumeRequest, VolumesPruned};
use crate::context::Context;
use crate::unit::MountKind;
use crate::volume::{Error, VolumeInfo};

/// The volume routes, under `/v1/volumes`.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/volumes", get(list))
        .route("/v1/volumes/rm", post(remove))
        .route("/v1/volumes/prune", post(prune))
        .route("/v1/volumes/{name}", get(inspect))
}

fn api_error(e: Error) -> ApiError {
    let code = match &e {
        Error::Absent(_) => StatusCode::NOT_FOUND,
        Error::InUse { .. } => StatusCode::CONFLICT,
        Error::Name(_) => StatusCode::BAD_REQUEST,
        Error::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(code, e.to_string())
}

/// The units whose file (its last valid version) mounts volume `name`, sorted.
fn users(ctx: &Context, name: &str) -> Vec<String> {
    ctx.units.view(|table| {
        table
            .iter()
            .filter(|(_, e)| {
                e.unit.as_ref().is_some_and(|u| {
                    u.mounts
                        .iter()
                        .any(|m| m.kind == MountKind::Volume && m.source.as_os_str() == name)
                })
            })
            .map(|(n, _)| n.clone())
            .collect()
    })
}

/// Off the async workers: sizes walk the volumes' files.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    super::server::blocking(f).await?.map_err(api_error)
}

async fn list(State(ctx): State<Arc<Context>>) -> Result<Json<Vec<VolumeInfo>>, ApiError> {
    let c = ctx.clone();
    blocking(move || {
        c.volumes
            .names()
            .iter()
            .map(|n| c.volumes.info(n, users(&c, n)))
            .collect()
    })
    .await
    .map(Json)
}

async fn inspect(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<VolumeInfo>, ApiError> {
    let c = ctx.clone();
    blocking(move || c.volumes.info(&name, users(&c, &name)))
        .await
        .map(Json)
}

async fn remove(
    State(ctx): State<Arc<Context>>,
    super::access::JsonBody(req): super::access::JsonBody<VolumeRequest>,
) -> Result<Json<VolumeRequest>, ApiError> {
    let c = ctx.clone();
    let name = req.name.clone();
    blocking(move || {
        let units = users(&c, &name);
        if !units.is_empty() {
            return Err(Error::InUse { name, units });
        }
        c.volumes.remove(&name)
    })
    .await?;
    tracing::info!(volume = %req.name, "volume removed");
    Ok(Json(req))
}

async fn prune(State(ctx): State<Arc<Context>>) -> Result<Json<VolumesPruned>, ApiError> {
    let c = ctx.clone();
    let removed = blocking(move || {
        let mut removed = Vec::new();
        for name in c.volumes.names() {
            if users(&c, &name).is_empty() {
                c.volumes.remove(&name)?;
                removed.push(name);
            }
        }
        Ok(removed)
    })
    .await?;
    tracing::info!(volumes = removed.len(), "volumes pruned");
    Ok(Json(VolumesPruned { removed }))
}
