//! Who may ask what, and how: each connection's peer credentials (SO_PEERCRED) logged with
//! what it asked, request bodies bounded, a malformed body a 400 with the reason, an unknown
//! route a 404 in the API's error shape.

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{FromRequest, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use axum::Json;
use serde::de::DeserializeOwned;
use tokio::net::UnixListener;

use super::server::ApiError;

/// Request bodies larger than this are refused (413); image imports stream and are exempt.
pub const MAX_BODY: usize = 1024 * 1024;

/// The process at the other end of a connection to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its user id.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
    /// Its pid, if the kernel told.
    pub pid: Option<i32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid(),
            },
            // Never seen on Linux; logged as nobody rather than refused.
            Err(_) => Peer {
                uid: u32::MAX,
                gid: u32::MAX,
                pid: None,
            },
        }
    }
}

/// Times the request for `/metrics` by method and route. Layered where the router has matched
/// (so that `MatchedPath` is known): the label is the route's pattern, never the path, and a
/// method outside HTTP's own is `OTHER`, so that no client can make the label values many.
pub async fn meter_requests(req: Request, next: Next) -> Response {
    let method = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    // A cheap clone (the pattern is shared), taken before the request is handed on.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    let began = std::time::Instant::now();
    let response = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", |m| m.as_str());
    crate::meters::get().requested(method, route, began.elapsed());
    response
}

/// Logs each request with its peer: what changes something at info, what reads at debug.
pub async fn log_requests(req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0);
    let remote = req
        .extensions()
        .get::<super::tcp::TcpPeer>()
        .map(|p| p.0.to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let (uid, pid) = peer.map_or((None, None), |p| (Some(p.uid), p.pid));
    if method == Method::GET {
        tracing::debug!(?uid, ?pid, ?remote, %method, %path, status, "api request");
    } else {
        tracing::info!(?uid, ?pid, ?remote, %method, %path, status, "api request");
    }
    response
}

/// An unknown route.
pub async fn not_found(req: Request) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no such route: {} {}", req.method(), req.uri().path()),
    )
}

/// A JSON body, refused with a 400 and the reason when it is not the JSON asked for (or a
/// 413 when it is too large).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => {
                let status = match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    _ => StatusCode::BAD_REQUEST,
                };
                Err(ApiError(status, rejection.body_text()))
            }
        }
    }
}
