//! The Docker Engine API: a second face of the daemon on its own socket, for the docker CLI,
//! the Docker SDKs and the tools single hosts run. Each unit is one container; the unit file
//! stays the source of truth, so creating, removing and changing containers are refused with
//! the file to edit named.
//!
//! Every route is served with and without the `/v1.xx` prefix, for API versions
//! `MIN_API_VERSION` to `API_VERSION`; every response carries `Api-Version`, `Ostype` and
//! `Server`; errors are `{"message": ...}` as `application/json`, which is what the clients
//! parse.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};

use crate::context::Context;

mod containers;
mod copy;
pub mod exec;
mod images;
mod resources;
mod stats;
mod streams;
mod system;
pub mod view;

/// The API version served (what `_ping` and every response advertise).
pub const API_VERSION: &str = "1.44";
/// The oldest accepted (Traefik pins 1.24).
pub const MIN_API_VERSION: &str = "1.24";

/// An error as the Docker clients read it.
#[derive(Debug)]
pub struct DockerError(pub StatusCode, pub String);

impl IntoResponse for DockerError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "message": self.1 }))).into_response()
    }
}

impl From<crate::api::server::ApiError> for DockerError {
    fn from(e: crate::api::server::ApiError) -> Self {
        DockerError(e.0, e.1)
    }
}

/// The API's routes; `read_only` keeps the GET (and HEAD) ones.
pub fn router(ctx: Arc<Context>, read_only: bool) -> Router {
    let mut routes = Router::new()
        .route("/_ping", get(system::ping).head(system::ping_head))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/containers/json", get(containers::list))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/logs", get(streams::logs))
        .route("/containers/{id}/stats", get(stats::stats))
        .route("/events", get(streams::events))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/images/json", get(images::list))
        .route("/images/{*name}", get(images::get_image))
        .route("/networks", get(resources::networks))
        .route("/networks/{id}", get(resources::network))
        .route("/volumes", get(resources::volumes))
        .route("/volumes/{id}", get(resources::volume))
        .route("/system/df", get(resources::df))
        .route("/containers/{id}/top", get(resources::top))
        .route("/plugins/{id}/json", get(containers::no_object));
    if !read_only {
        routes = routes
            .route("/containers/{id}/start", post(containers::start))
            .route("/containers/{id}/stop", post(containers::stop))
            .route("/containers/{id}/restart", post(containers::restart))
            .route("/containers/{id}/kill", post(streams::kill))
            .route("/containers/{id}/wait", post(streams::wait))
            .route("/containers/{id}/exec", post(exec::create))
            .route("/exec/{id}/start", post(exec::start))
            .route("/exec/{id}/resize", post(exec::resize))
            .route("/containers/create", post(containers::refuse_create))
            .route("/images/create", post(images::pull))
            .route("/images/prune", post(images::prune))
            .route("/images/{*name}", axum::routing::delete(images::remove))
            .route(
                "/containers/{id}",
                axum::routing::delete(containers::refuse_remove),
            )
            .route("/containers/{id}/rename", post(containers::refuse_change))
            .route("/containers/{id}/update", post(containers::refuse_change))
            .route("/commit", post(containers::refuse_change))
            .route("/build", post(containers::refuse_change))
            .route("/swarm", any(system::no_swarm))
            .route("/swarm/{*rest}", any(system::no_swarm))
            .route("/services", any(system::no_swarm))
            .route("/nodes", any(system::no_swarm));
    }
    // `docker cp`: read on either socket, written only on the read-write one.
    let archive = get(copy::read).head(copy::stat);
    let archive = if read_only {
        archive
    } else {
        archive.put(copy::write)
    };
    routes = routes.route("/containers/{id}/archive", archive);
    // Timed in here, where the route is matched (the outer router only strips the version).
    let inner = routes
        .fallback(|| async { DockerError(StatusCode::NOT_FOUND, "page not found".into()) })
        .layer(axum::middleware::from_fn(
            crate::api::access::meter_requests,
        ))
        .with_state(ctx);
    Router::new()
        .fallback_service(inner)
        .layer(axum::middleware::from_fn(move |req, next| {
            versioned(req, next, read_only)
        }))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::api::access::MAX_BODY,
        ))
        .layer(axum::middleware::from_fn(crate::api::access::log_requests))
}

/// Reads a request's body (up to the API's limit) before it is refused: a client still
/// writing it would see a broken pipe rather than the answer.
pub(super) async fn drain(body: axum::body::Body) {
    let _ = axum::body::to_bytes(body, crate::api::access::MAX_BODY).await;
}

/// Strips and checks the `/v1.xx` prefix, refuses writes on the read-only socket, and adds
/// the headers every Docker response has.
async fn versioned(mut req: Request, next: Next, read_only: bool) -> Response {
    let path = req.uri().path().to_owned();
    if let Some((version, rest)) = split_version(&path) {
        if let Err(message) = check_version(version) {
            return with_headers(DockerError(StatusCode::BAD_REQUEST, message).into_response());
        }
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        if let Ok(uri) = format!("{rest}{query}").parse() {
            *req.uri_mut() = uri;
        }
    }
    if read_only && !matches!(*req.method(), Method::GET | Method::HEAD) {
        drain(req.into_body()).await;
        return with_headers(
            DockerError(
                StatusCode::FORBIDDEN,
                "this socket is rcd's read-only Docker API: only GET requests are served".into(),
            )
            .into_response(),
        );
    }
    with_headers(next.run(req).await)
}

/// `("1.44", "/containers/json")` of `/v1.44/containers/json`.
fn split_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/')?;
    let (version, tail) = rest.split_at(end);
    let ok = !version.is_empty()
        && version.contains('.')
        && version.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    ok.then_some((version, tail))
}

/// Moby's messages for a version out of range.
fn check_version(v: &str) -> Result<(), String> {
    let key = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    if key(v) < key(MIN_API_VERSION) {
        return Err(format!(
            "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        ));
    }
    if key(v) > key(API_VERSION) {
        return Err(format!(
            "client version {v} is too new. Maximum supported API version is {API_VERSION}"
        ));
    }
    Ok(())
}

fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    if let Ok(server) = HeaderValue::from_str(&format!("rcd/{} (linux)", env!("CARGO_PKG_VERSION")))
    {
        h.insert("Server", server);
    }
    resp
}

/// Moby's reading of a boolean query value: empty, `0`, `no`, `false`, `none` are false.
pub fn query_bool(v: Option<&String>) -> bool {
    v.is_some_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "" | "0" | "no" | "false" | "none"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefixes() {
        assert_eq!(
            split_version("/v1.44/containers/json"),
            Some(("1.44", "/containers/json"))
        );
        assert_eq!(split_version("/v1/units/x"), None);
        assert_eq!(split_version("/containers/json"), None);
        assert!(check_version("1.24").is_ok() && check_version("1.44").is_ok());
        assert!(check_version("1.20").unwrap_err().contains("too old"));
        assert!(check_version("1.51").unwrap_err().contains("too new"));
    }

    #[test]
    fn booleans_as_moby_reads_them() {
        for (v, want) in [
            ("1", true),
            ("True", true),
            ("false", false),
            ("0", false),
            ("", false),
        ] {
            assert_eq!(query_bool(Some(&v.to_owned())), want, "{v}");
        }
        assert!(!query_bool(None));
    }
}
