//! `docker cp` through the Docker API: `HEAD`, `GET` and `PUT /containers/{id}/archive`, mapped
//! on `rctl cp`'s archive API (`crate::api::copy`), so paths resolve inside the container's root
//! exactly as for `rctl cp`. The stat goes in the `X-Docker-Container-Path-Stat` header, as
//! base64 JSON with Go's `os.FileMode` bits, which the CLI decodes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::view::Container;
use super::DockerError;
use crate::context::Context;
use crate::copy::PathStat;

/// The header the stat goes in.
const STAT_HEADER: &str = "x-docker-container-path-stat";

/// Go's `os.FileMode` type bits.
const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;
const GO_SETUID: u32 = 1 << 23;
const GO_SETGID: u32 = 1 << 22;
const GO_STICKY: u32 = 1 << 20;
/// Anything that is neither a file, a directory nor a link (`ModeIrregular`).
const GO_IRREGULAR: u32 = 1 << 19;

/// The header's value for `stat` of `path` (a relative link target made absolute, as Docker's
/// `linkTarget` is, so that `docker cp -L` can follow it).
fn header(stat: &PathStat, path: &str) -> Option<HeaderValue> {
    let mut mode = stat.mode & 0o777;
    for (unix, go) in [
        (0o4000, GO_SETUID),
        (0o2000, GO_SETGID),
        (0o1000, GO_STICKY),
    ] {
        if stat.mode & unix != 0 {
            mode |= go;
        }
    }
    mode |= match stat.kind.as_str() {
        "dir" => GO_DIR,
        "symlink" => GO_SYMLINK,
        "file" => 0,
        _ => GO_IRREGULAR,
    };
    let link = if stat.link_target.is_empty() {
        String::new()
    } else {
        crate::copy::link_destination(path, &stat.link_target)
    };
    // A container can set any time on its files; RFC 3339 (and humantime) ends with 9999.
    const LAST_RFC3339: u64 = 253_402_300_799;
    let secs = u64::try_from(stat.mtime).unwrap_or(0).min(LAST_RFC3339);
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let json = serde_json::json!({
        "name": stat.name,
        "size": stat.size,
        "mode": mode,
        "mtime": humantime::format_rfc3339(mtime).to_string(),
        "linkTarget": link,
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(json.to_string());
    HeaderValue::from_str(&encoded).ok()
}

/// The running container `id` names, by its unit.
fn running(ctx: &Context, id: &str) -> Result<Container, DockerError> {
    let c = Container::find(ctx, id).map_err(|m| DockerError(StatusCode::NOT_FOUND, m))?;
    if c.state() != "running" {
        // rcd reaches a container's files only through its running init.
        return Err(DockerError(
            StatusCode::CONFLICT,
            format!(
                "container {} is not running: rcd copies files of running containers only",
                c.name
            ),
        ));
    }
    Ok(c)
}

fn path_of(q: &HashMap<String, String>) -> Result<&str, DockerError> {
    q.get("path")
        .map(String::as_str)
        .ok_or_else(|| DockerError(StatusCode::BAD_REQUEST, "path is required".into()))
}

/// The stat answer with its header, and `body`.
fn with_stat(stat: &PathStat, path: &str, mut r: Response) -> Response {
    if let Some(v) = header(stat, path) {
        r.headers_mut().insert(STAT_HEADER, v);
    }
    r
}

/// `HEAD /containers/{id}/archive?path=`: the stat alone.
pub async fn stat(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, DockerError> {
    let c = running(&ctx, &id)?;
    let path = path_of(&q)?;
    let stat = crate::api::copy::stat_path(&ctx, &c.name, path).await?;
    Ok(with_stat(&stat, path, StatusCode::OK.into_response()))
}

/// `GET /containers/{id}/archive?path=`: a tar of the path, its stat in the header.
pub async fn read(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, DockerError> {
    let c = running(&ctx, &id)?;
    let path = path_of(&q)?;
    // `/data/.` is the directory's contents: entries named `./x`, as Docker's daemon names
    // them, which the CLI then extracts into the destination itself.
    let top = crate::copy::contents_of(path).then(|| ".".to_string());
    let (stat, response) = crate::api::copy::send(&ctx, &c.name, path, top).await?;
    Ok(with_stat(&stat, path, response))
}

/// `PUT /containers/{id}/archive?path=`: the tar in the body extracted in the directory `path`
/// (owned by the container's root unless `copyUIDGID`).
pub async fn write(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response, DockerError> {
    let c = running(&ctx, &id)?;
    let path = path_of(&q)?;
    let keep = matches!(
        q.get("copyUIDGID").map(String::as_str),
        Some("1" | "true" | "True")
    );
    crate::api::copy::receive(&ctx, &c.name, path, keep, body).await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(v: &HeaderValue) -> serde_json::Value {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v.as_bytes())
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    }

    #[test]
    fn the_stat_header_is_dockers() {
        let stat = |kind: &str, mode: u32, link: &str| PathStat {
            name: "x".into(),
            kind: kind.into(),
            size: 3,
            mode,
            mtime: 0,
            link_target: link.into(),
        };
        let d = decode(&header(&stat("dir", 0o1755, ""), "/tmp").unwrap());
        assert_eq!(d["mode"], GO_DIR | GO_STICKY | 0o755);
        assert_eq!(d["mtime"], "1970-01-01T00:00:00Z");
        let d = decode(&header(&stat("symlink", 0o777, "../etc/shadow"), "/a/b/x").unwrap());
        assert_eq!(d["mode"], GO_SYMLINK | 0o777);
        assert_eq!(d["linkTarget"], "/a/etc/shadow");
        let d = decode(&header(&stat("file", 0o4755, ""), "/bin/su").unwrap());
        assert_eq!(d["mode"], GO_SETUID | 0o755);
        assert_eq!(d["size"], 3);
        // A time past year 9999 (a container can set one) is the last RFC 3339 can say.
        let far = PathStat {
            mtime: 300_000_000_000,
            ..stat("file", 0o644, "")
        };
        let d = decode(&header(&far, "/dev/shm/x").unwrap());
        assert_eq!(d["mtime"], "9999-12-31T23:59:59Z");
    }
}
