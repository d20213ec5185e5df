//! `GET /containers/{id}/stats`: Docker's stats documents from the container's cgroup, the
//! host's CPU time and the container's network interfaces; streamed once a second, or one
//! document with the CPU measured over half a second (`stream=false`), or one sample with no
//! previous one (`one-shot`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::view::Container;
use super::{query_bool, DockerError};
use crate::context::Context;

/// Between the two samples of a `stream=false` answer (Docker's own is its 1 s collector
/// tick). The CLI's `--no-stream` prints on its own 0.5 s tick after every answer came, so
/// this is what is left of a second; 0.25 s of host CPU time, read in 10 ms ticks, still gives
/// the percentage to a few per cent.
const ONE_SHOT_GAP: Duration = Duration::from_millis(250);
/// Between the documents of a stream, as Docker's collector.
const STREAM_GAP: Duration = Duration::from_secs(1);

/// One reading.
#[derive(Debug, Clone, Default)]
struct Sample {
    read: String,
    cpu_ns: u64,
    system_ns: u64,
    memory: u64,
    limit: u64,
    pids: u64,
    /// Interface name → (rx bytes, rx packets, tx bytes, tx packets).
    nets: Vec<(String, [u64; 4])>,
}

/// The host's CPU time, all CPUs, in nanoseconds (`/proc/stat`'s first line).
fn system_ns() -> u64 {
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .unwrap_or(100) as u64;
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.strip_prefix("cpu ")?.to_owned();
            Some(
                line.split_whitespace()
                    .take(8)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum::<u64>(),
            )
        })
        .map_or(0, |jiffies| jiffies * (1_000_000_000 / tick))
}

/// The interfaces of the network namespace of `pid` (loopback left out).
fn nets(pid: Option<i32>) -> Vec<(String, [u64; 4])> {
    let Some(pid) = pid else { return Vec::new() };
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return Vec::new();
    };
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            Some((
                name.to_owned(),
                [*v.first()?, *v.get(1)?, *v.get(8)?, *v.get(9)?],
            ))
        })
        .collect()
}

fn sample(ctx: &Context, c: &Container) -> Sample {
    let usage = c
        .status
        .container_id
        .as_ref()
        .map(|id| crate::cgroup::usage(&ctx.cgroups_path(id)))
        .unwrap_or_default();
    Sample {
        read: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        cpu_ns: usage.cpu_usec.unwrap_or(0) * 1000,
        system_ns: system_ns(),
        memory: usage.memory_bytes.unwrap_or(0),
        limit: usage.memory_limit.unwrap_or_else(super::system::mem_total),
        pids: usage.pids.unwrap_or(0),
        nets: nets(c.status.pid),
    }
}

fn cpu(s: Option<&Sample>) -> Value {
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    match s {
        Some(s) => json!({
            "cpu_usage": {"total_usage": s.cpu_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": s.system_ns,
            "online_cpus": online,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        }),
        None => json!({
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        }),
    }
}

/// One stats document: `now`, with `pre` as the previous reading.
fn document(c: &Container, now: &Sample, pre: Option<&Sample>) -> Value {
    let networks: serde_json::Map<String, Value> = now
        .nets
        .iter()
        .map(|(n, [rxb, rxp, txb, txp])| {
            (
                n.clone(),
                json!({"rx_bytes": rxb, "rx_packets": rxp, "rx_errors": 0, "rx_dropped": 0,
                       "tx_bytes": txb, "tx_packets": txp, "tx_errors": 0, "tx_dropped": 0}),
            )
        })
        .collect();
    json!({
        "read": now.read,
        "preread": pre.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), |p| p.read.clone()),
        "pids_stats": {"current": now.pids},
        "blkio_stats": {"io_service_bytes_recursive": null, "io_serviced_recursive": null},
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu(Some(now)),
        "precpu_stats": cpu(pre),
        "memory_stats": {"usage": now.memory, "limit": now.limit, "stats": {}},
        "name": format!("/{}", c.name),
        "id": c.id,
        "networks": networks,
    })
}

fn line(v: &Value) -> Vec<u8> {
    let mut l = serde_json::to_vec(v).unwrap_or_default();
    l.push(b'\n');
    l
}

/// `GET /containers/{id}/stats`.
pub async fn stats(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, DockerError> {
    let c = Container::find(&ctx, &id).map_err(|m| DockerError(StatusCode::NOT_FOUND, m))?;
    // `stream` defaults to true.
    let stream = q.get("stream").is_none_or(|_| query_bool(q.get("stream")));
    let one_shot = query_bool(q.get("one-shot"));
    let json_type = [(header::CONTENT_TYPE, "application/json")];
    let read = |ctx: Arc<Context>, c: Container| async move {
        tokio::task::spawn_blocking(move || sample(&ctx, &c))
            .await
            .unwrap_or_default()
    };
    if !stream {
        let first = read(ctx.clone(), c.clone()).await;
        if one_shot {
            return Ok((json_type, line(&document(&c, &first, None))).into_response());
        }
        tokio::time::sleep(ONE_SHOT_GAP).await;
        let second = read(ctx.clone(), c.clone()).await;
        return Ok((json_type, line(&document(&c, &second, Some(&first)))).into_response());
    }
    let body =
        futures_util::stream::unfold((ctx, c, None::<Sample>), move |(ctx, c, pre)| async move {
            if pre.is_some() {
                tokio::time::sleep(STREAM_GAP).await;
            }
            let now = read(ctx.clone(), c.clone()).await;
            let doc = line(&document(&c, &now, pre.as_ref()));
            Some((Ok::<_, std::io::Error>(doc), (ctx, c, Some(now))))
        });
    Ok((json_type, Body::from_stream(body)).into_response())
}
