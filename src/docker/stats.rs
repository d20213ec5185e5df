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
    /// Its network namespace's interfaces.
    nets: Vec<crate::network::counters::Interface>,
    /// Its cgroup's block I/O.
    io: Vec<crate::cgroup::DeviceIo>,
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

fn sample(ctx: &Context, c: &Container) -> Sample {
    let cg = c
        .status
        .container_id
        .as_ref()
        .map(|id| ctx.cgroups_path(id));
    let usage = cg.as_deref().map(crate::cgroup::usage).unwrap_or_default();
    let host = c
        .unit
        .as_ref()
        .is_some_and(|u| u.network.mode == crate::unit::NetworkMode::Host);
    Sample {
        read: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        cpu_ns: usage.cpu_usec.unwrap_or(0) * 1000,
        system_ns: system_ns(),
        memory: usage.memory_bytes.unwrap_or(0),
        limit: usage.memory_limit.unwrap_or_else(super::system::mem_total),
        pids: usage.pids.unwrap_or(0),
        nets: c
            .status
            .pid
            .filter(|_| !host)
            .map(crate::network::counters::interfaces)
            .unwrap_or_default(),
        io: cg.as_deref().map(crate::cgroup::io).unwrap_or_default(),
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
        .map(|i| {
            (
                i.name.clone(),
                json!({"rx_bytes": i.rx_bytes, "rx_packets": i.rx_packets, "rx_errors": 0, "rx_dropped": 0,
                       "tx_bytes": i.tx_bytes, "tx_packets": i.tx_packets, "tx_errors": 0, "tx_dropped": 0}),
            )
        })
        .collect();
    // Docker's shape: a row per device and operation.
    let io: Vec<Value> = now
        .io
        .iter()
        .flat_map(|d| {
            [("read", d.read_bytes), ("write", d.write_bytes)]
                .map(|(op, v)| json!({"major": d.major, "minor": d.minor, "op": op, "value": v}))
        })
        .collect();
    json!({
        "read": now.read,
        "preread": pre.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), |p| p.read.clone()),
        "pids_stats": {"current": now.pids},
        "blkio_stats": {"io_service_bytes_recursive": io, "io_serviced_recursive": null},
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
            // Read afresh each time: the pid of the record asked about at first may be another
            // process's by now. A unit gone ends the stream, as a removed container's does.
            let c = Container::find(&ctx, &c.name).ok()?;
            let now = read(ctx.clone(), c.clone()).await;
            let doc = line(&document(&c, &now, pre.as_ref()));
            Some((Ok::<_, std::io::Error>(doc), (ctx, c, Some(now))))
        });
    Ok((json_type, Body::from_stream(body)).into_response())
}
