//! The logs routes: a unit's log records (`rctl logs`), read from its files (current and
//! rotated) with the operator's filters, then followed; and `rctl logs --prune`.
//!
//! `GET /v1/units/{name}/logs?tail=N&since=RFC3339&stream=stdout|stderr&follow=true` answers
//! the records as they are in the file, one per line; the client formats them. A unit that is
//! not loaded but left logs is still answered (its logs are kept until pruned).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::server::ApiError;
use crate::context::Context;
use crate::logs::read::{Filter, Follower, Forward, Snapshot};

/// How often a follower looks for new records while there are none.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// The logs routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/units/{name}/logs", get(logs))
        .route("/v1/logs/prune", post(prune))
}

/// The logs route's query string.
#[derive(Debug, Deserialize)]
pub struct LogQuery {
    /// Only the last N records.
    pub tail: Option<usize>,
    /// Keep answering records as they come.
    #[serde(default)]
    pub follow: bool,
    /// Only records from this time on (RFC 3339).
    pub since: Option<String>,
    /// Only `stdout` or `stderr`.
    pub stream: Option<String>,
}

impl LogQuery {
    /// The record filter the query asks for, or a 400 saying which parameter is wrong.
    pub fn filter(&self) -> Result<Filter, ApiError> {
        if let Some(s) = self.stream.as_deref() {
            if s != "stdout" && s != "stderr" {
                return Err(bad(format!("stream must be stdout or stderr, not {s:?}")));
            }
        }
        let since = match self.since.as_deref() {
            Some(t) => Some(
                humantime::parse_rfc3339_weak(t)
                    .map_err(|e| bad(format!("since {t:?} is not an RFC 3339 time: {e}")))?,
            ),
            None => None,
        };
        Ok(Filter::new(self.stream.as_deref(), since))
    }
}

/// `rctl logs --prune`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pruned {
    /// The units whose logs were removed.
    pub removed: Vec<String>,
}

fn bad(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

enum Phase {
    Head(Vec<u8>),
    Forward(Forward),
    Follow(Follower),
    Done,
}

async fn logs(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let filter = q.filter()?;
    // Names are checked before they become paths.
    if !crate::unit::valid_name(&name) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("unit {name:?} is not loaded"),
        ));
    }
    let path = ctx.paths.log(&name);
    let known = ctx.units.contains(&name);
    let (tail, f) = (q.tail, filter.clone());
    let (snapshot, head) = tokio::task::spawn_blocking(move || {
        let snap = Snapshot::open(&path)?;
        let head = match tail {
            Some(n) => Some(snap.tail(n, &f)?.into_iter().fold(Vec::new(), |mut a, l| {
                a.extend_from_slice(&l);
                a.push(b'\n');
                a
            })),
            None => None,
        };
        Ok::<_, std::io::Error>((snap, head))
    })
    .await
    .map_err(internal)?
    .map_err(|e| internal(format!("{}: {e}", ctx.paths.log(&name).display())))?;
    if !known && snapshot.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("unit {name:?} is not loaded and has no logs"),
        ));
    }
    let follower = if q.follow {
        Some(snapshot.follower().map_err(internal)?)
    } else {
        None
    };
    let first = match head {
        Some(h) => Phase::Head(h),
        None => Phase::Forward(snapshot.forward(filter.clone())),
    };
    let stream = futures_util::stream::unfold(
        (first, follower, filter),
        |(phase, mut follower, filter)| async move {
            let mut phase = phase;
            loop {
                match phase {
                    Phase::Head(h) => {
                        let next = follower.take().map_or(Phase::Done, Phase::Follow);
                        if h.is_empty() {
                            phase = next;
                            continue;
                        }
                        return Some((Ok::<_, std::io::Error>(h), (next, None, filter)));
                    }
                    Phase::Forward(mut fwd) => {
                        let got = tokio::task::spawn_blocking(move || {
                            let chunk = fwd.next_chunk();
                            (fwd, chunk)
                        })
                        .await;
                        match got {
                            Ok((fwd, Ok(Some(chunk)))) => {
                                return Some((Ok(chunk), (Phase::Forward(fwd), follower, filter)))
                            }
                            Ok((_, Ok(None))) => {
                                phase = follower.take().map_or(Phase::Done, Phase::Follow);
                            }
                            Ok((_, Err(e))) => return Some((Err(e), (Phase::Done, None, filter))),
                            Err(_) => return None,
                        }
                    }
                    Phase::Follow(mut f) => {
                        let fl = filter.clone();
                        let got = tokio::task::spawn_blocking(move || {
                            let data = f.poll(&fl);
                            (f, data)
                        })
                        .await;
                        match got {
                            Ok((f, Ok(data))) if !data.is_empty() => {
                                return Some((Ok(data), (Phase::Follow(f), None, filter)))
                            }
                            // Nothing new, or a passing error (a file gone between two calls).
                            Ok((f, _)) => {
                                tokio::time::sleep(FOLLOW_POLL).await;
                                phase = Phase::Follow(f);
                            }
                            Err(_) => return None,
                        }
                    }
                    Phase::Done => return None,
                }
            }
        },
    );
    Ok(Body::from_stream(stream).into_response())
}

async fn prune(State(ctx): State<Arc<Context>>) -> Result<Json<Pruned>, ApiError> {
    let c = ctx.clone();
    let removed = tokio::task::spawn_blocking(move || {
        let names: std::collections::BTreeSet<String> = c.units.names().into_iter().collect();
        crate::logs::retention::prune(
            &c.paths.logs,
            |u| names.contains(u),
            None,
            std::time::SystemTime::now(),
        )
    })
    .await
    .map_err(internal)?
    .map_err(|e| internal(format!("{}: {e}", ctx.paths.logs.display())))?;
    Ok(Json(Pruned { removed }))
}
