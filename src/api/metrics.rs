//! `GET /metrics`: Prometheus' text exposition format (0.0.4), for every unit and its running
//! container: state, restarts, last exit code, OOM kills, health, holds and the last image
//! update; CPU, memory, pids, network and block I/O from the cgroup and the netns; and the
//! daemon's own figures (`crate::meters`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::context::Context;
use crate::store::State as RecState;

use crate::meters::family;

/// What is read of one unit for a scrape.
struct Unit {
    name: String,
    state: &'static str,
    restarts: u32,
    exit_code: Option<i32>,
    /// The last exit was the kernel's OOM killer's.
    exit_oom: bool,
    held: bool,
    health: Option<&'static str>,
    update_ok: Option<bool>,
    /// The running container's cgroup and netns readings.
    usage: Option<crate::cgroup::Usage>,
    net: Vec<crate::network::counters::Interface>,
    io: Vec<crate::cgroup::DeviceIo>,
}

/// What one unit shows, read now: its record's figures and its running container's.
fn read(
    c: &Context,
    (name, r, valid, host): &(String, Option<crate::store::Record>, bool, bool),
) -> Unit {
    let state = match (r, valid) {
        (Some(r), _) => r.state.as_str(),
        (None, false) => "invalid",
        (None, true) => RecState::Pending.as_str(),
    };
    let running = r
        .as_ref()
        .filter(|r| r.state == RecState::Running)
        .and_then(|r| Some((r.container_id.clone()?, r.pid)));
    let health = running
        .as_ref()
        .and_then(|(id, _)| c.health.get(id))
        .map(|h| h.status.as_str());
    let cg = running.as_ref().map(|(id, _)| c.cgroups_path(id));
    Unit {
        state,
        restarts: r.as_ref().map_or(0, |r| r.restarts),
        exit_code: r.as_ref().and_then(|r| r.exit_code),
        exit_oom: r
            .as_ref()
            .is_some_and(|r| r.exit_reason.as_deref() == Some("oom")),
        held: r.as_ref().is_some_and(|r| r.hold),
        health,
        update_ok: c.updates.get(name).and_then(|s| s.last).map(|l| l.ok),
        usage: cg.as_deref().map(crate::cgroup::usage),
        net: running
            .as_ref()
            .and_then(|(_, pid)| *pid)
            .filter(|_| !host)
            .map(crate::network::counters::interfaces)
            .unwrap_or_default(),
        io: cg.as_deref().map(crate::cgroup::io).unwrap_or_default(),
        name: name.clone(),
    }
}

/// `GET /metrics`.
pub async fn metrics(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    let listed: Vec<(String, Option<crate::store::Record>, bool, bool)> = ctx.units.view(|t| {
        t.iter()
            .map(|(n, e)| {
                let host = e
                    .unit
                    .as_ref()
                    .is_some_and(|u| u.network.mode == crate::unit::NetworkMode::Host);
                (n.clone(), e.record.clone(), e.unit.is_some(), host)
            })
            .collect()
    });
    let c = ctx.clone();
    // The cgroup and /proc reads of many containers, spread over the cores (a thousand units
    // read one after another take longer than a scrape should).
    let units: Vec<Unit> = tokio::task::spawn_blocking(move || {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = listed.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let parts: Vec<_> = listed
                .chunks(chunk)
                .map(|part| scope.spawn(|| part.iter().map(|u| read(&c, u)).collect::<Vec<_>>()))
                .collect();
            parts
                .into_iter()
                .flat_map(|p| p.join().unwrap_or_default())
                .collect()
        })
    })
    .await
    .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&units, ctx.queue.depth()),
    )
}

/// A block device as its label names it (`8:0`).
fn device(d: &crate::cgroup::DeviceIo) -> String {
    format!("{}:{}", d.major, d.minor)
}

/// The exposition of `units`, then of the daemon's figures (`queued`: the reconciler's queue
/// depth).
fn render(units: &[Unit], queued: usize) -> String {
    let mut out = String::new();
    let mut f = family(&mut out, "rcd_units", "gauge", "Units loaded.");
    f.sample("rcd_units", &[], units.len());
    let mut f = family(
        &mut out,
        "rcd_unit_state",
        "gauge",
        "1 for the state the unit is in.",
    );
    for u in units {
        f.sample(
            "rcd_unit_state",
            &[("unit", &u.name), ("state", u.state)],
            1,
        );
    }
    let mut f = family(
        &mut out,
        "rcd_unit_restarts_total",
        "counter",
        "Restarts by the restart policy since the last operator start.",
    );
    for u in units {
        f.sample("rcd_unit_restarts_total", &[("unit", &u.name)], u.restarts);
    }
    let mut f = family(
        &mut out,
        "rcd_unit_last_exit_code",
        "gauge",
        "The exit code of the unit's last container run.",
    );
    for u in units {
        if let Some(code) = u.exit_code {
            f.sample("rcd_unit_last_exit_code", &[("unit", &u.name)], code);
        }
    }
    let mut f = family(
        &mut out,
        "rcd_unit_last_exit_oom",
        "gauge",
        "1 if the unit's last container run was ended by the kernel's OOM killer.",
    );
    for u in units {
        if u.exit_code.is_some() {
            f.sample(
                "rcd_unit_last_exit_oom",
                &[("unit", &u.name)],
                u8::from(u.exit_oom),
            );
        }
    }
    let mut f = family(
        &mut out,
        "rcd_unit_held",
        "gauge",
        "1 if the unit is held stopped by an operator.",
    );
    for u in units {
        f.sample("rcd_unit_held", &[("unit", &u.name)], u8::from(u.held));
    }
    let mut f = family(
        &mut out,
        "rcd_unit_health",
        "gauge",
        "1 for the health of the unit's running container.",
    );
    for u in units {
        if let Some(h) = u.health {
            f.sample("rcd_unit_health", &[("unit", &u.name), ("status", h)], 1);
        }
    }
    let mut f = family(
        &mut out,
        "rcd_unit_update_ok",
        "gauge",
        "1 if the unit's last image update was kept, 0 if it was rolled back.",
    );
    for u in units {
        if let Some(ok) = u.update_ok {
            f.sample("rcd_unit_update_ok", &[("unit", &u.name)], u8::from(ok));
        }
    }
    let running: Vec<(&Unit, &crate::cgroup::Usage)> = units
        .iter()
        .filter_map(|u| Some((u, u.usage.as_ref()?)))
        .collect();
    let per = |out: &mut String,
               name: &str,
               kind: &str,
               help: &str,
               get: &dyn Fn(&crate::cgroup::Usage) -> Option<String>| {
        let mut f = family(out, name, kind, help);
        for (u, usage) in &running {
            if let Some(v) = get(usage) {
                f.sample(name, &[("unit", &u.name)], v);
            }
        }
    };
    per(
        &mut out,
        "rcd_container_oom_kills_total",
        "counter",
        "Processes of the container the kernel's OOM killer killed.",
        &|u| u.oom_kills.map(|v| v.to_string()),
    );
    per(
        &mut out,
        "rcd_container_cpu_seconds_total",
        "counter",
        "CPU time the container's processes used.",
        &|u| u.cpu_usec.map(|v| format!("{:.6}", v as f64 / 1e6)),
    );
    per(
        &mut out,
        "rcd_container_memory_bytes",
        "gauge",
        "Memory the container's cgroup uses.",
        &|u| u.memory_bytes.map(|v| v.to_string()),
    );
    per(
        &mut out,
        "rcd_container_memory_limit_bytes",
        "gauge",
        "The container's memory limit (none: not reported).",
        &|u| u.memory_limit.map(|v| v.to_string()),
    );
    per(
        &mut out,
        "rcd_container_memory_max_bytes",
        "gauge",
        "The most memory the container's cgroup has used (its high-water mark).",
        &|u| u.memory_peak.map(|v| v.to_string()),
    );
    per(
        &mut out,
        "rcd_container_pids",
        "gauge",
        "Processes in the container.",
        &|u| u.pids.map(|v| v.to_string()),
    );
    // Counters a row per interface or device: the label that tells the rows apart, and them.
    type Rows = fn(&Unit) -> Vec<(String, u64)>;
    let net: [(&str, &str, Rows); 2] = [
        (
            "rcd_container_network_receive_bytes_total",
            "Bytes received on the container's interfaces.",
            |u| u.net.iter().map(|i| (i.name.clone(), i.rx_bytes)).collect(),
        ),
        (
            "rcd_container_network_transmit_bytes_total",
            "Bytes sent on the container's interfaces.",
            |u| u.net.iter().map(|i| (i.name.clone(), i.tx_bytes)).collect(),
        ),
    ];
    let io: [(&str, &str, Rows); 2] = [
        (
            "rcd_container_block_read_bytes_total",
            "Bytes the container's cgroup read from block devices.",
            |u| u.io.iter().map(|d| (device(d), d.read_bytes)).collect(),
        ),
        (
            "rcd_container_block_write_bytes_total",
            "Bytes the container's cgroup wrote to block devices.",
            |u| u.io.iter().map(|d| (device(d), d.write_bytes)).collect(),
        ),
    ];
    for (key, families) in [("interface", net), ("device", io)] {
        for (name, help, rows) in families {
            let mut f = family(&mut out, name, "counter", help);
            for (u, _) in &running {
                for (label, v) in rows(u) {
                    f.sample(name, &[("unit", &u.name), (key, &label)], v);
                }
            }
        }
    }
    let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
    crate::meters::get().render(&mut out, queued, &names);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let units = vec![Unit {
            name: "we\"b".into(),
            state: "running",
            restarts: 2,
            exit_code: Some(1),
            exit_oom: false,
            held: false,
            health: Some("healthy"),
            update_ok: Some(true),
            usage: Some(crate::cgroup::Usage {
                memory_bytes: Some(4096),
                memory_limit: None,
                memory_peak: Some(8192),
                cpu_usec: Some(1_500_000),
                pids: Some(3),
                oom_kills: Some(0),
            }),
            net: vec![],
            io: vec![],
        }];
        let text = render(&units, 3);
        for line in [
            "# TYPE rcd_unit_restarts_total counter",
            "rcd_unit_state{unit=\"we\\\"b\",state=\"running\"} 1",
            "rcd_unit_restarts_total{unit=\"we\\\"b\"} 2",
            "rcd_container_cpu_seconds_total{unit=\"we\\\"b\"} 1.500000",
            "rcd_unit_health{unit=\"we\\\"b\",status=\"healthy\"} 1",
            "rcd_reconcile_queue_depth 3",
            "# TYPE rcd_unit_start_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(
            !text.contains("rcd_container_memory_limit_bytes{"),
            "{text}"
        );
    }
}
