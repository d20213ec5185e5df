//! What streams or waits: `logs` (Docker's multiplexed frames), `events` (rcd's event log as
//! Docker's actions), `wait`, and `kill`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::view::{docker_id, Container};
use super::{query_bool, DockerError};
use crate::context::Context;
use crate::logs::read::{Filter, Snapshot};

/// Lines of a `tail` sent in one frame batch.
const TAIL_BATCH: usize = 512;

/// How often a followed log is looked at while nothing new came.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// `seconds[.nanos]` as Unix nanoseconds (what the clients send for `since`/`until`).
fn unix_nanos(text: &str) -> Result<i128, DockerError> {
    let bad = || DockerError(StatusCode::BAD_REQUEST, format!("invalid time {text:?}"));
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    // Seconds as Go's int64, so that the nanoseconds cannot overflow.
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut nanos: i128 = 0;
    if !frac.is_empty() {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = digits.parse().map_err(|_| bad())?;
    }
    Ok(i128::from(secs) * 1_000_000_000 + nanos)
}

/// A record's time (`2026-12-05T01:02:03.123456789Z`) in Unix nanoseconds.
fn record_nanos(time: &[u8]) -> Option<i128> {
    let t = humantime::parse_rfc3339(std::str::from_utf8(time).ok()?).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(d.as_nanos() as i128)
}

/// The frames of complete log lines in `chunk`: `[stream, 0, 0, 0, len BE]` then the payload.
fn frames(chunk: &[u8], timestamps: bool, until: Option<i128>, out: &mut Vec<u8>) -> bool {
    for line in chunk.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Some(r) = crate::logs::parse(line) else {
            continue;
        };
        if let Some(u) = until {
            if record_nanos(r.time).is_some_and(|t| t > u) {
                return false;
            }
        }
        let stream = if r.stream == b"stderr" { 2u8 } else { 1u8 };
        let mut payload = Vec::with_capacity(r.text.len() + 40);
        if timestamps {
            payload.extend_from_slice(&docker_time(r.time));
            payload.push(b' ');
        }
        payload.extend_from_slice(r.text);
        if r.full {
            payload.push(b'\n');
        }
        out.extend(crate::api::exec::docker_frame(stream, &payload));
    }
    true
}

/// A record's time with always nine fraction digits, as Docker writes them.
fn docker_time(time: &[u8]) -> Vec<u8> {
    match humantime::parse_rfc3339(&String::from_utf8_lossy(time)) {
        Ok(t) => humantime::format_rfc3339_nanos(t).to_string().into_bytes(),
        Err(_) => time.to_vec(),
    }
}

/// `GET /containers/{id}/logs`: the records as frames; with `follow`, until the container
/// running when asked stops (rcd's own `logs -f` goes on across restarts; scripts doing
/// `docker logs -f job` expect an end).
pub async fn logs(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, DockerError> {
    let c = Container::find(&ctx, &id).map_err(|m| DockerError(StatusCode::NOT_FOUND, m))?;
    let (stdout, stderr) = (query_bool(q.get("stdout")), query_bool(q.get("stderr")));
    if !stdout && !stderr {
        return Err(DockerError(
            StatusCode::BAD_REQUEST,
            "Bad parameters: you must choose at least one stream".into(),
        ));
    }
    let stream = match (stdout, stderr) {
        (true, false) => Some("stdout"),
        (false, true) => Some("stderr"),
        _ => None,
    };
    let since = match q.get("since").filter(|s| !s.is_empty() && *s != "0") {
        Some(s) => {
            let n = unix_nanos(s)?;
            Some(
                std::time::UNIX_EPOCH
                    + Duration::from_nanos(u64::try_from(n.max(0)).unwrap_or(u64::MAX)),
            )
        }
        None => None,
    };
    let until = match q.get("until").filter(|s| !s.is_empty() && *s != "0") {
        Some(s) => Some(unix_nanos(s)?),
        None => None,
    };
    let tail: Option<usize> = q
        .get("tail")
        .filter(|t| *t != "all")
        .and_then(|t| t.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .map(|n| n as usize);
    let follow = query_bool(q.get("follow"));
    let timestamps = query_bool(q.get("timestamps"));
    let filter = Filter::new(stream, since);
    let path = ctx.paths.log(&c.name);
    let container_at_start = c.status.container_id.clone();
    let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
    let (name, task_ctx) = (c.name.clone(), ctx.clone());
    ctx.tasks.spawn(async move {
        let (f, head_tx) = (filter.clone(), tx.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let snap = Snapshot::open(&path)?;
            // Taken before the snapshot is read: what comes after it is followed.
            let follower = if follow { Some(snap.follower()?) } else { None };
            // Sent as read, a block at a time: a long log never sits whole in memory, and a
            // client gone stops the reading. False once nothing more is to be sent.
            let send = |chunk: &[u8]| -> bool {
                let mut out = Vec::new();
                let open = frames(chunk, timestamps, until, &mut out);
                (out.is_empty() || head_tx.blocking_send(out).is_ok()) && open
            };
            let mut open = true;
            match tail {
                Some(n) => {
                    for batch in snap.tail(n, &f)?.chunks(TAIL_BATCH) {
                        let mut buf = Vec::new();
                        for line in batch {
                            buf.extend_from_slice(line);
                            buf.push(b'\n');
                        }
                        open = send(&buf);
                        if !open {
                            break;
                        }
                    }
                }
                None => {
                    let mut fwd = snap.forward(f);
                    while let Some(chunk) = fwd.next_chunk()? {
                        open = send(&chunk);
                        if !open {
                            break;
                        }
                    }
                }
            }
            Ok::<_, std::io::Error>(follower.filter(|_| open))
        })
        .await;
        let Ok(Ok(Some(mut follower))) = opened else {
            return;
        };
        loop {
            let fl = filter.clone();
            let polled = tokio::task::spawn_blocking(move || {
                let data = follower.poll(&fl);
                (follower, data)
            })
            .await;
            let Ok((f, data)) = polled else { return };
            follower = f;
            let data = data.unwrap_or_default();
            if !data.is_empty() {
                let mut out = Vec::new();
                let open = frames(&data, timestamps, until, &mut out);
                if !out.is_empty() && tx.send(out).await.is_err() {
                    return;
                }
                if !open {
                    return;
                }
                continue;
            }
            // Nothing new: the stream ends once the container asked about is no longer the
            // unit's running one (its last lines were read above).
            let still = task_ctx.units.get(&name).and_then(|e| {
                let r = e.record?;
                (r.state == crate::store::State::Running && r.container_id == container_at_start)
                    .then_some(())
            });
            if still.is_none() || tx.is_closed() {
                return;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/vnd.docker.multiplexed-stream",
        )],
        Body::from_stream(body),
    )
        .into_response())
}

/// rcd's event actions as Docker's (a `stopped` with its exit code is `die` then `stop`).
fn docker_actions(e: &crate::events::Event) -> Vec<(String, Vec<(String, String)>)> {
    let a = |k: &str| e.attributes.get(k).cloned();
    match e.action.as_str() {
        "create" => vec![("create".into(), vec![])],
        "start" => vec![("start".into(), vec![])],
        "exited" => vec![(
            "die".into(),
            vec![("exitCode".into(), a("exit_code").unwrap_or_default())],
        )],
        "stopped" => {
            let mut v = Vec::new();
            if let Some(code) = a("exit_code") {
                v.push(("die".into(), vec![("exitCode".into(), code)]));
            }
            v.push(("stop".into(), vec![]));
            v
        }
        "restarting" => vec![("restart".into(), vec![])],
        "removed" => vec![("destroy".into(), vec![])],
        "health" => vec![(
            format!("health_status: {}", a("status").unwrap_or_default()),
            vec![],
        )],
        _ => Vec::new(),
    }
}

/// `GET /events`: rcd's persistent event log (from `since`) and what happens next, as
/// Docker's container events, until `until` or until the client leaves.
pub async fn events(
    State(ctx): State<Arc<Context>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, DockerError> {
    let ms = |k: &str| -> Result<Option<u64>, DockerError> {
        match q.get(k).filter(|s| !s.is_empty()) {
            Some(s) => Ok(Some((unix_nanos(s)?.max(0) / 1_000_000) as u64)),
            None => Ok(None),
        }
    };
    let (since, until) = (ms("since")?, ms("until")?);
    if let (Some(s), Some(u)) = (since, until) {
        if u < s {
            return Err(DockerError(
                StatusCode::BAD_REQUEST,
                "`since` time must be before `until`".into(),
            ));
        }
    }
    let filters = super::containers::filters_of(&q)?;
    let live = ctx.events.subscribe();
    let past = match since {
        Some(s) => {
            let c = ctx.clone();
            tokio::task::spawn_blocking(move || c.events.since(s))
                .await
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    let now = crate::clock::now_ms();
    let last_seq = past.last().map_or(0, |e| e.seq);
    if let Some(k) = filters
        .keys()
        .find(|k| !EVENT_FILTERS.contains(&k.as_str()))
    {
        return Err(DockerError(
            StatusCode::BAD_REQUEST,
            format!("invalid filter '{k}'"),
        ));
    }
    let units = ctx.clone();
    let render = move |e: &crate::events::Event| -> Vec<u8> {
        let mut out = Vec::new();
        let id = docker_id(e.attributes.get("container").map(String::as_str), &e.unit);
        // Docker's container events carry the name, the image and the labels.
        let mut attrs = std::collections::BTreeMap::new();
        if let Some(unit) = units.units.get(&e.unit).and_then(|u| u.unit.clone()) {
            attrs.extend(unit.container.labels.clone());
            attrs.insert("image".into(), super::containers::unit_image(&unit));
        }
        attrs.insert("name".to_owned(), e.unit.clone());
        let from = attrs.get("image").cloned().unwrap_or_default();
        for (action, extra) in docker_actions(e) {
            let mut attrs = attrs.clone();
            attrs.extend(extra);
            if !event_passes(&filters, &action, &id, &attrs) {
                continue;
            }
            let nanos = u128::from(e.time_ms) * 1_000_000;
            let doc = json!({
                "status": action, "id": id, "from": from,
                "Type": "container", "Action": action,
                "Actor": {"ID": id, "Attributes": attrs},
                "scope": "local", "time": e.time_ms / 1000, "timeNano": nanos,
            });
            if let Ok(mut line) = serde_json::to_vec(&doc) {
                line.push(b'\n');
                out.extend(line);
            }
        }
        out
    };
    let head: Vec<u8> = past
        .iter()
        .filter(|e| until.is_none_or(|u| e.time_ms <= u))
        .flat_map(&render)
        .collect();
    let json_type = [(header::CONTENT_TYPE, "application/json")];
    // Chunked even when all is known already: the SDKs read line by line only then.
    if until.is_some_and(|u| u <= now) {
        let once = futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) });
        return Ok((json_type, Body::from_stream(once)).into_response());
    }
    let stream = crate::api::events::follow(head, live, last_seq, until, now, move |e| {
        let line = render(e);
        (!line.is_empty()).then_some(line)
    });
    Ok((json_type, Body::from_stream(stream)).into_response())
}

/// The filter keys of `docker events` (moby's `daemon/events/filter.go`).
const EVENT_FILTERS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// Whether a container event passes Docker's event filters, as moby applies them: keys are
/// all required, the values of a key are alternatives but for `label`, where all must hold.
fn event_passes(
    f: &HashMap<String, Vec<String>>,
    action: &str,
    id: &str,
    attrs: &std::collections::BTreeMap<String, String>,
) -> bool {
    let name = attrs.get("name").map_or("", String::as_str);
    // An image reference without its tag or digest ("busybox:1.36" is "busybox").
    let untagged = |r: &str| -> String {
        let r = r.split('@').next().unwrap_or(r);
        match r.rfind(':') {
            Some(i) if !r[i..].contains('/') => r[..i].to_owned(),
            _ => r.to_owned(),
        }
    };
    f.iter().all(|(k, values)| match k.as_str() {
        "type" => values.iter().any(|v| v == "container"),
        "scope" => values.iter().any(|v| v == "local"),
        "container" => values
            .iter()
            .any(|v| v.trim_start_matches('/') == name || id.starts_with(v.as_str())),
        "event" => values
            .iter()
            .any(|v| v == action || action.split(':').next() == Some(v.as_str())),
        "image" => {
            let image = attrs.get("image").map_or("", String::as_str);
            values
                .iter()
                .any(|v| v == image || untagged(v) == untagged(image) && !image.is_empty())
        }
        "label" => super::containers::labels_match(values, attrs),
        // A filter on another kind of object (network, volume, daemon, ...) matches a
        // container event only by the container's id or name, as Docker's fuzzy match.
        _ => values
            .iter()
            .any(|v| id.starts_with(v.as_str()) || name.starts_with(v.as_str())),
    })
}

/// `POST /containers/{id}/wait`: answers when the container asked about is no longer running,
/// with its exit code.
pub async fn wait(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, DockerError> {
    let c = Container::find(&ctx, &id).map_err(|m| DockerError(StatusCode::NOT_FOUND, m))?;
    let at_start = c.status.container_id.clone();
    loop {
        let done = ctx
            .units
            .get(&c.name)
            .and_then(|e| e.record)
            .map_or(Some(0), |r| {
                let same_running =
                    r.state == crate::store::State::Running && r.container_id == at_start;
                (!same_running).then(|| r.exit_code.unwrap_or(0))
            });
        if let Some(code) = done {
            return Ok(Json(json!({"StatusCode": code, "Error": null})));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /containers/{id}/kill`: SIGKILL (the default) or the unit's stop signal is a stop,
/// held as `docker stop` is (Docker counts them as a manual stop too); another signal is sent
/// to the container's processes and changes nothing else.
pub async fn kill(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, DockerError> {
    let c = Container::find(&ctx, &id).map_err(|m| DockerError(StatusCode::NOT_FOUND, m))?;
    if c.state() != "running" {
        return Err(DockerError(
            StatusCode::CONFLICT,
            format!(
                "cannot kill container: {}: container {} is not running",
                c.name, c.id
            ),
        ));
    }
    // As rctl kill: SIGKILL or the stop signal is a held stop, another is delivered.
    crate::api::process::signal(&ctx, &c.name, q.get("signal").map(String::as_str)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_dockers() {
        let mut out = Vec::new();
        let chunk = b"2026-12-05T01:02:03.5Z stdout F hello\n2026-12-05T01:02:04Z stderr P par\n";
        assert!(frames(chunk, false, None, &mut out));
        assert_eq!(&out[..8], &[1, 0, 0, 0, 0, 0, 0, 6]);
        assert_eq!(&out[8..14], b"hello\n");
        assert_eq!(&out[14..22], &[2, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(&out[22..], b"par");
        let mut ts = Vec::new();
        frames(chunk, true, None, &mut ts);
        assert_eq!(&ts[8..39], b"2026-12-05T01:02:03.500000000Z ");
        // Past `until`: stops before the record.
        let mut cut = Vec::new();
        let until = unix_nanos("1796432523").unwrap();
        assert!(!frames(chunk, false, Some(until), &mut cut) || cut.len() == 14);
    }

    #[test]
    fn times_as_clients_send_them() {
        assert_eq!(unix_nanos("10").unwrap(), 10_000_000_000);
        assert_eq!(unix_nanos("10.5").unwrap(), 10_500_000_000);
        assert_eq!(unix_nanos("1.000000001").unwrap(), 1_000_000_001);
        assert!(unix_nanos("x").is_err());
        assert!(unix_nanos("1.-5").is_err());
        // Beyond Go's int64 seconds: refused, never an overflow.
        assert!(unix_nanos("1000000000000000000000000000000").is_err());
        assert_eq!(
            unix_nanos("9223372036854775807").unwrap(),
            9_223_372_036_854_775_807_000_000_000
        );
    }
}
