//! `rctl cp`'s daemon side, Docker's archive API in our routes: a path in a running container in,
//! its stat (JSON) or a tar stream of it out; a tar stream in, applied in a directory of the
//! container. Every path resolves inside the container's root ([`crate::copy`]), so no
//! symlink in the container can lead the daemon to a host file.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::server::ApiError;
use crate::context::Context;
use crate::copy::{self, PathStat};
use crate::image::layer::{self, Limits, Target};

/// The answer of an archive applied in a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Copied {
    /// Tar members applied.
    pub entries: u64,
    /// Bytes of the archive.
    pub bytes: u64,
}

/// The routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/units/{name}/stat", get(stat))
        .route("/v1/units/{name}/archive", get(read).put(write))
}

/// The query of the three routes.
#[derive(Debug, Deserialize)]
struct CopyQuery {
    /// The path in the container (relative ones are taken from `/`).
    path: String,
    /// GET: the name of the archive's top entry (default: the path's last component; `.`
    /// for a directory's contents).
    #[serde(rename = "as")]
    top: Option<String>,
    /// PUT: keep the archive's owners (`rctl cp -a`); by default entries belong to the
    /// container's root, as with `docker cp`.
    #[serde(default)]
    keep_owner: bool,
}

/// What a path in unit `name`'s container is, its last component not followed.
async fn stat(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
    Query(q): Query<CopyQuery>,
) -> Result<Json<PathStat>, ApiError> {
    stat_path(&ctx, &name, &q.path).await.map(Json)
}

/// What `path` in unit `name`'s running container is, its last component not followed (also
/// the Docker API's archive stat).
pub async fn stat_path(ctx: &Context, name: &str, path: &str) -> Result<PathStat, ApiError> {
    let (pid, id) = super::process::running_pid(ctx, name)?;
    let path = copy::clean(path);
    let unit = name.to_string();
    super::server::blocking(move || {
        let root = root_of(pid, &id, &unit)?;
        let (dir, base) = copy::locate(root.as_fd(), &path).map_err(|e| copy_error(&unit, e))?;
        copy::stat(dir.as_fd(), &base, &path).map_err(|e| copy_error(&unit, e))
    })
    .await?
}

/// A tar stream of a path in unit `name`'s container, made while it is sent. The path is
/// found before the answer starts, so a missing one is a 404; a failure later cuts the stream
/// (the client's tar reader sees it end early) and is logged here.
async fn read(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
    Query(q): Query<CopyQuery>,
) -> Result<Response, ApiError> {
    send(&ctx, &name, &q.path, q.top).await.map(|(_, r)| r)
}

/// [`read`]'s work, also the Docker API's: the path's stat and the answer streaming its tar
/// (its top entry named `top`, by default the path's last component).
pub async fn send(
    ctx: &Context,
    name: &str,
    path: &str,
    top: Option<String>,
) -> Result<(PathStat, Response), ApiError> {
    let (pid, id) = super::process::running_pid(ctx, name)?;
    let path = copy::clean(path);
    let top = top.unwrap_or_else(|| copy::split(&path).1.to_owned());
    copy::check_name(&top).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let (unit, shown) = (name.to_string(), path.clone());
    let contents = top == ".";
    let (dir, base, stat) = super::server::blocking(move || {
        let root = root_of(pid, &id, &unit)?;
        let (dir, base) = copy::locate(root.as_fd(), &path).map_err(|e| copy_error(&unit, e))?;
        let stat = copy::stat(dir.as_fd(), &base, &path).map_err(|e| copy_error(&unit, e))?;
        if contents && stat.kind != "dir" {
            // The contents of something that is not a directory.
            return Err(copy_error(&unit, copy::Error::NotDir { path }));
        }
        Ok((dir, base, stat))
    })
    .await??;
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let span = tracing::info_span!("copy", unit = %name);
    tokio::task::spawn_blocking(move || {
        let _span = span.enter();
        let failed = tx.clone();
        let out = copy::Chunks::new(tx);
        match copy::archive(dir.as_fd(), &base, &top, &shown, out) {
            Ok(()) => tracing::info!(path = %shown, "copied out of the container"),
            Err(e) => {
                tracing::warn!(path = %shown, error = %e, "copy out of the container failed");
                let _ = failed.blocking_send(Err(io::Error::other(e.to_string())));
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        .map(|r| (stat, r))
}

/// Applies the tar stream in the body in the directory `path` of unit `name`'s container,
/// as it arrives. Entries with `..` are refused, no entry is written through a symlink already
/// there, and parents resolve inside the container's root. A failure leaves what was applied
/// before it (as `docker cp` does) and reads the rest of the body, so that the client gets the
/// answer.
async fn write(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
    Query(q): Query<CopyQuery>,
    body: Body,
) -> Result<Json<Copied>, ApiError> {
    receive(&ctx, &name, &q.path, q.keep_owner, body)
        .await
        .map(Json)
}

/// [`write`]'s work, also the Docker API's: the tar stream `body` applied in the directory
/// `path`, owned by the container's root unless `keep_owner`.
pub async fn receive(
    ctx: &Context,
    name: &str,
    path: &str,
    keep_owner: bool,
    body: Body,
) -> Result<Copied, ApiError> {
    let (pid, id) = super::process::running_pid(ctx, name)?;
    let path = copy::clean(path);
    let owner = (!keep_owner).then_some((0, 0));
    let reader =
        tokio_util::io::StreamReader::new(body.into_data_stream().map_err(io::Error::other));
    let mut reader = tokio_util::io::SyncIoBridge::new(reader);
    let unit = name.to_string();
    let span = tracing::info_span!("copy", unit = %name);
    super::server::blocking(move || {
        let _span = span.enter();
        let applied = (|| {
            let root = root_of(pid, &id, &unit)?;
            let target = Target::in_root(root, &path, owner).map_err(|e| {
                copy_error(&unit, copy::from_errno(e, &path, "opening the directory"))
            })?;
            layer::apply(&mut reader, target, &Limits::default())
                .map_err(|e| apply_error(&unit, &path, e))
        })();
        match applied {
            Ok(done) => {
                tracing::info!(path = %path, entries = done.entries, "copied into the container");
                Ok(Copied {
                    entries: done.entries,
                    bytes: done.size,
                })
            }
            Err(e) => {
                tracing::warn!(path = %path, error = %e.1, "copy into the container failed");
                let _ = io::copy(&mut reader, &mut io::sink());
                Err(e)
            }
        }
    })
    .await?
}

/// The container's root; its init gone since the record said running is a 409.
fn root_of(pid: i32, id: &str, unit: &str) -> Result<std::os::fd::OwnedFd, ApiError> {
    copy::container_root(pid, id).map_err(|e| {
        ApiError(
            StatusCode::CONFLICT,
            format!("unit {unit} is not running (its init, pid {pid}, is gone: {e})"),
        )
    })
}

/// A copy error as the API answers it, the unit before the path (`web:/etc/x: ...`).
fn copy_error(unit: &str, e: copy::Error) -> ApiError {
    let code = match &e {
        copy::Error::NotFound { .. } => StatusCode::NOT_FOUND,
        copy::Error::NotDir { .. } | copy::Error::BadName { .. } | copy::Error::TooDeep { .. } => {
            StatusCode::BAD_REQUEST
        }
        copy::Error::Io { source, .. } => io_status(source),
    };
    ApiError(code, format!("{unit}:{e}"))
}

/// The status of a failed file operation: the container's state (a read-only root, a full
/// disk, a denied path) is the caller's to know, not a fault of the daemon.
fn io_status(e: &io::Error) -> StatusCode {
    match e.raw_os_error() {
        Some(libc::EROFS) => StatusCode::CONFLICT,
        Some(libc::ENOSPC | libc::EDQUOT) => StatusCode::INSUFFICIENT_STORAGE,
        Some(libc::EACCES | libc::EPERM) => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An unpacker error in `rctl cp`'s words: the archive is the client's, not a layer.
fn apply_error(unit: &str, path: &str, e: layer::Error) -> ApiError {
    let at = format!("{unit}:{path}");
    match e {
        layer::Error::Escape { entry, reason } => ApiError(
            StatusCode::BAD_REQUEST,
            format!("{at}: archive entry {entry:?} refused, it escapes the destination: {reason}"),
        ),
        layer::Error::Rejected { entry, reason } => ApiError(
            StatusCode::BAD_REQUEST,
            format!("{at}: archive entry {entry:?} refused: {reason}"),
        ),
        layer::Error::Io { entry, op, source } => ApiError(
            io_status(&source),
            format!("{at}: archive entry {entry:?}: {op} failed: {source}"),
        ),
        layer::Error::Read { at: when, source } => ApiError(
            StatusCode::BAD_REQUEST,
            format!("{at}: reading the archive failed {when}: {source}"),
        ),
        layer::Error::Limit { what, limit } => ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{at}: the archive exceeds the limit on {what} ({limit})"),
        ),
        e @ (layer::Error::Format(_) | layer::Error::Dest { .. }) => {
            ApiError(StatusCode::BAD_REQUEST, format!("{at}: {e}"))
        }
    }
}
