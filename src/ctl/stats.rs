//! `rctl stats [UNIT...] [-o json]`: each running container's CPU (over one second), memory
//! and pids, from its cgroup, its network and block I/O; Docker's `stats --no-stream`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::client::{Client, Error as ClientError};
use crate::api::stats::UnitUsage;

/// One row.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    container_id: String,
    /// CPU use over the sampling second, in percent of one core.
    cpu_percent: Option<f64>,
    #[serde(flatten)]
    usage: crate::cgroup::Usage,
    /// Its network namespace's interfaces (none with the host's network).
    net: Vec<crate::network::counters::Interface>,
    /// Its block I/O, a device a row.
    io: Vec<crate::cgroup::DeviceIo>,
}

/// Samples twice, a second apart, and prints the table (or JSON).
pub async fn run(client: &Client, units: Vec<String>, json: bool) -> Result<(), ClientError> {
    let sample = || async { client.get::<Vec<UnitUsage>>("/v1/stats").await };
    let first = sample().await?;
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = sample().await?;
    let wall_usec = began.elapsed().as_micros() as f64;
    let before: BTreeMap<&str, &UnitUsage> = first.iter().map(|u| (u.name.as_str(), u)).collect();
    let rows: Vec<Row> = second
        .into_iter()
        .filter(|u| units.is_empty() || units.contains(&u.name))
        .map(|u| {
            let cpu_percent = before
                .get(u.name.as_str())
                .filter(|b| b.container_id == u.container_id)
                .and_then(|b| Some(u.usage.cpu_usec?.saturating_sub(b.usage.cpu_usec?)))
                .map(|d| d as f64 * 100.0 / wall_usec);
            Row {
                name: u.name,
                container_id: u.container_id,
                cpu_percent,
                usage: u.usage,
                net: u.net,
                io: u.io,
            }
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "{:<24} {:>7} {:>24} {:>6} {:>21} {:>21}",
        "UNIT", "CPU %", "MEM USAGE / LIMIT", "PIDS", "NET I/O", "BLOCK I/O"
    );
    for r in rows {
        let mem = match (r.usage.memory_bytes, r.usage.memory_limit) {
            (Some(m), Some(l)) => {
                format!("{} / {}", super::format::bytes(m), super::format::bytes(l))
            }
            (Some(m), None) => super::format::bytes(m),
            _ => "-".into(),
        };
        let cpu = r.cpu_percent.map_or("-".into(), |c| format!("{c:.2}"));
        let pids = r.usage.pids.map_or("-".into(), |p| p.to_string());
        let pair =
            |a: u64, b: u64| format!("{} / {}", super::format::bytes(a), super::format::bytes(b));
        let net = if r.net.is_empty() {
            "-".to_owned()
        } else {
            pair(
                r.net.iter().map(|i| i.rx_bytes).sum(),
                r.net.iter().map(|i| i.tx_bytes).sum(),
            )
        };
        let io = pair(
            r.io.iter().map(|d| d.read_bytes).sum(),
            r.io.iter().map(|d| d.write_bytes).sum(),
        );
        println!(
            "{:<24} {:>7} {:>24} {:>6} {:>21} {:>21}",
            r.name, cpu, mem, pids, net, io
        );
    }
    Ok(())
}
