//! Resource usage from each container's cgroup (`rctl stats`, `rctl status`), and an OOM kill
//! shown as such and counted by the restart policy.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn stats_show_cpu_memory_and_pids_from_the_cgroup() {
    let d = Daemon::start();
    d.write_unit(
        "busy",
        &unit(
            "sleep 1000 & while :; do :; done",
            "stop_signal = \"KILL\"\n\n[resources]\nmemory = \"32M\"\n",
        ),
    );
    d.write_unit("idle", &unit("exec sleep 1000", "stop_signal = \"KILL\"\n"));
    d.write_unit(
        "writer",
        &unit(
            "dd if=/dev/zero of=/var/blob bs=1M count=4 oflag=direct 2>/dev/null; exec sleep 1000",
            "stop_signal = \"KILL\"\n[network]\nmode = \"none\"\n",
        ),
    );
    d.wait_state("busy", "running", 20 * SEC);
    d.wait_state("idle", "running", 20 * SEC);
    d.wait_state("writer", "running", 20 * SEC);
    let out = d.rctl(&["stats", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = |n: &str| {
        rows.iter()
            .find(|r| r["name"] == n)
            .cloned()
            .unwrap_or_default()
    };
    let busy = row("busy");
    assert!(
        busy["cpu_percent"].as_f64().unwrap_or(0.0) > 10.0,
        "{busy:#}"
    );
    assert_eq!(busy["memory_limit"], 32 * 1024 * 1024, "{busy:#}");
    assert!(busy["memory_bytes"].as_u64().unwrap_or(0) > 0, "{busy:#}");
    assert!(busy["pids"].as_u64().unwrap_or(0) >= 2, "{busy:#}");
    // Bridged: its interface's counters; `mode = "none"`: no interface but loopback.
    assert!(
        busy["net"]
            .as_array()
            .is_some_and(|n| n.iter().any(|i| i["name"] == "eth0")),
        "{busy:#}"
    );
    assert_eq!(row("writer")["net"], serde_json::json!([]));
    // Block I/O, a device a row, from the cgroup (what the kernel accounts there: this
    // sandbox's kernel accounts none to cgroups, so only the shape is checked here; the
    // parsing of v1's and v2's files is tested in cgroup.rs).
    assert!(row("writer")["io"].is_array(), "{:#}", row("writer"));
    let idle = row("idle");
    assert!(
        idle["cpu_percent"].as_f64().unwrap_or(100.0) < 5.0,
        "{idle:#}"
    );
    // The text forms.
    let text = String::from_utf8_lossy(&d.rctl(&["stats", "busy"]).stdout).to_string();
    assert!(
        text.starts_with("UNIT") && text.contains("busy") && !text.contains("idle"),
        "{text}"
    );
    assert!(
        text.contains("NET I/O") && text.contains("BLOCK I/O"),
        "{text}"
    );
    let text = String::from_utf8_lossy(&d.rctl(&["status", "busy"]).stdout).to_string();
    assert!(
        text.contains("Resources: memory ") && text.contains(" of 33.6 MB"),
        "{text}"
    );
}

#[test]
fn an_oom_kill_is_shown_as_such_and_counts_for_the_policy() {
    let d = Daemon::start();
    // dd's 64 MiB buffer cannot fit in 16 MiB.
    d.write_unit(
        "hog",
        &unit(
            "echo start; exec dd if=/dev/zero of=/dev/null bs=64M count=1",
            "\n[resources]\nmemory = \"16M\"\n\n[restart]\npolicy = \"on-failure\"\nmax_retries = 1\ndelay = \"100ms\"\n",
        ),
    );
    let s = d.wait_state("hog", "failed", 30 * SEC);
    assert_eq!(s["exit_code"], 137, "{s:#}");
    assert_eq!(s["exit_reason"], "oom", "{s:#}");
    assert_eq!(s["restarts"], 1, "{s:#}");
    let text = String::from_utf8_lossy(&d.rctl(&["status", "hog"]).stdout).to_string();
    assert!(text.contains("Last exit: 137 (oom)"), "{text}");
    let out = d.rctl(&[
        "events", "--since", "1h", "--until", "0s", "--unit", "hog", "--output", "json",
    ]);
    let oom_exits = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"exited\"") && l.contains("\"reason\":\"oom\""))
        .count();
    assert_eq!(oom_exits, 2, "{}", String::from_utf8_lossy(&out.stdout));
}
