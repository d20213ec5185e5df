//! `GET /v1/events`: the event log as JSON lines, from `since`, then (unless `until` has
//! passed) what happens next, until `until` or until the client goes away.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::context::Context;
use crate::events::{matches, Event};

/// The filters.
#[derive(Debug, Deserialize)]
pub struct EventQuery {
    /// From (ms since the epoch); default: only what happens from now on.
    pub since: Option<u64>,
    /// Until (ms since the epoch); default: follow until the client leaves.
    pub until: Option<u64>,
    /// One unit's only.
    pub unit: Option<String>,
}

fn line(e: &Event) -> Vec<u8> {
    let mut l = serde_json::to_vec(e).unwrap_or_default();
    l.push(b'\n');
    l
}

/// Streams the events.
pub async fn events(State(ctx): State<Arc<Context>>, Query(q): Query<EventQuery>) -> Response {
    // Subscribed before the past is read, so nothing falls between the two.
    let live = ctx.events.subscribe();
    let now = crate::clock::now_ms();
    let until = q.until;
    let unit = q.unit.clone();
    let past: Vec<Event> = match q.since {
        Some(since) => {
            let c = ctx.clone();
            tokio::task::spawn_blocking(move || c.events.since(since))
                .await
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    let last_seq = past.last().map_or(0, |e| e.seq);
    let head: Vec<u8> = past
        .iter()
        .filter(|e| matches(e, unit.as_deref()) && until.is_none_or(|u| e.time_ms <= u))
        .flat_map(line)
        .collect();
    if until.is_some_and(|u| u <= now) {
        return head.into_response();
    }
    let stream = follow(head, live, last_seq, until, now, move |e| {
        matches(e, unit.as_deref()).then(|| line(e))
    });
    Body::from_stream(stream).into_response()
}

/// `head` (what was already known), then each live event after `last_seq` that `render`
/// makes a chunk of, until `until` (ms since the epoch; `now` is the time now) or until the
/// log closes. Shared by rcd's event route and the Docker API's.
pub fn follow(
    head: Vec<u8>,
    live: tokio::sync::broadcast::Receiver<Event>,
    last_seq: u64,
    until: Option<u64>,
    now: u64,
    render: impl Fn(&Event) -> Option<Vec<u8>> + Clone + Send + 'static,
) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
    let deadline =
        until.map(|u| tokio::time::Instant::now() + Duration::from_millis(u.saturating_sub(now)));
    futures_util::stream::unfold((Some(head), live), move |(head, mut rx)| {
        let render = render.clone();
        async move {
            if let Some(h) = head {
                return Some((Ok::<_, std::io::Error>(h), (None, rx)));
            }
            loop {
                let next = match deadline {
                    Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok()?,
                    None => rx.recv().await,
                };
                match next {
                    Ok(e) if e.seq > last_seq => {
                        if let Some(chunk) = render(&e) {
                            return Some((Ok(chunk), (None, rx)));
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    })
}
