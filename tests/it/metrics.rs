//! `/metrics` on the socket: Prometheus' text format, checked by Prometheus' own `promtool`
//! (Debian's `prometheus` package, which `scripts/setup.sh` installs), scraped before and
//! after a crash, an OOM kill and an unhealthy turn.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

fn scrape(d: &Daemon) -> String {
    d.scrape()
}

/// `promtool check metrics`: the exposition parses and follows Prometheus' naming rules.
fn promtool(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; `sh scripts/setup.sh` installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn value(text: &str, series: &str) -> Option<f64> {
    sample(text, series)
}

#[test]
fn metrics_follow_a_crash_an_oom_and_an_unhealthy_turn() {
    let mut d = Daemon::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    d.write_config(
        "",
        &format!("[api]\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
    );
    d.spawn();
    d.write_unit(
        "steady",
        &unit("touch /tmp/ok; exec sleep 1000", "stop_signal = \"KILL\"\n[health]\ncmd = \"test -f /tmp/ok\"\ninterval = \"300ms\"\nretries = 1\n"),
    );
    d.wait_state("steady", "running", 20 * SEC);
    wait_until(10 * SEC, "steady healthy", || {
        scrape(&d).contains("rcd_unit_health{unit=\"steady\",status=\"healthy\"} 1")
    });
    let before = scrape(&d);
    promtool(&before);
    // The same over plain HTTP on the loopback listener, for a Prometheus on this host.
    let tcp = Command::new("curl")
        .args(["-sf", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .unwrap();
    let tcp = String::from_utf8_lossy(&tcp.stdout).into_owned();
    assert!(
        tcp.contains("rcd_unit_state{unit=\"steady\",state=\"running\"} 1"),
        "{tcp}"
    );
    assert_eq!(
        value(&before, "rcd_unit_state{unit=\"steady\",state=\"running\"}"),
        Some(1.0)
    );
    assert!(
        value(&before, "rcd_container_pids{unit=\"steady\"}") >= Some(1.0),
        "{before}"
    );
    assert!(
        value(&before, "rcd_container_memory_bytes{unit=\"steady\"}") > Some(0.0),
        "{before}"
    );
    assert!(
        value(&before, "rcd_container_memory_max_bytes{unit=\"steady\"}")
            >= value(&before, "rcd_container_memory_bytes{unit=\"steady\"}"),
        "{before}"
    );
    // The daemon's own figures.
    assert_eq!(
        value(
            &before,
            "rcd_unit_start_duration_seconds_count{unit=\"steady\"}"
        ),
        Some(1.0),
        "{before}"
    );
    assert!(
        value(&before, "rcd_reconcile_duration_seconds_count") >= Some(1.0),
        "{before}"
    );
    assert!(
        value(&before, "rcd_reconcile_queue_depth").is_some(),
        "{before}"
    );
    let scrapes = "rcd_api_request_duration_seconds_count{method=\"GET\",route=\"/metrics\"}";
    assert!(value(&before, scrapes) >= Some(1.0), "{before}");

    // A crash, an OOM kill, an unhealthy turn.
    d.write_unit(
        "crash",
        &unit(
            "sleep 0.3; exit 3",
            "[restart]\npolicy = \"always\"\ndelay = \"100ms\"\n",
        ),
    );
    d.write_unit(
        "hog",
        &unit(
            "exec dd if=/dev/zero of=/dev/null bs=64M count=1",
            "[resources]\nmemory = \"16M\"\n[restart]\npolicy = \"on-failure\"\nmax_retries = 1\ndelay = \"100ms\"\n",
        ),
    );
    assert!(d
        .rctl(&["exec", "steady", "--", "rm", "/tmp/ok"])
        .status
        .success());
    d.wait_state("hog", "failed", 30 * SEC);
    wait_until(
        20 * SEC,
        "the crash restarted twice, each start timed",
        || {
            let m = scrape(&d);
            value(&m, "rcd_unit_restarts_total{unit=\"crash\"}") >= Some(2.0)
                && value(&m, "rcd_unit_start_duration_seconds_count{unit=\"crash\"}") >= Some(3.0)
        },
    );
    wait_until(10 * SEC, "steady unhealthy", || {
        scrape(&d).contains("rcd_unit_health{unit=\"steady\",status=\"unhealthy\"} 1")
    });
    let after = scrape(&d);
    promtool(&after);
    assert_eq!(
        value(&after, "rcd_unit_state{unit=\"hog\",state=\"failed\"}"),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        value(&after, "rcd_unit_last_exit_oom{unit=\"hog\"}"),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        value(&after, "rcd_unit_last_exit_code{unit=\"hog\"}"),
        Some(137.0),
        "{after}"
    );
    assert_eq!(
        value(&after, "rcd_unit_restarts_total{unit=\"hog\"}"),
        Some(1.0),
        "{after}"
    );
    assert!(
        value(&after, "rcd_container_cpu_seconds_total{unit=\"steady\"}")
            >= value(&before, "rcd_container_cpu_seconds_total{unit=\"steady\"}"),
        "{after}"
    );
    // Every start of the crashing unit timed; the reconciles and the scrapes counted on.
    assert!(
        value(
            &after,
            "rcd_unit_start_duration_seconds_count{unit=\"crash\"}"
        ) >= Some(3.0),
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            "rcd_unit_start_duration_seconds_bucket{unit=\"crash\",le=\"+Inf\"}"
        ),
        value(
            &after,
            "rcd_unit_start_duration_seconds_count{unit=\"crash\"}"
        ),
    );
    for series in ["rcd_reconcile_duration_seconds_count", scrapes] {
        assert!(
            value(&after, series) > value(&before, series),
            "{series}: {after}"
        );
    }
    // Routes are patterns, and a method of a client's own making is OTHER: no client can
    // make the label values many.
    for method in ["BREW", "WHEN"] {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "10", "-X", method])
            .arg("--unix-socket")
            .arg(&d.socket)
            .arg(format!("http://rcd/v1/units/{method}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let m = scrape(&d);
    assert!(
        value(
            &m,
            "rcd_api_request_duration_seconds_count{method=\"OTHER\",route=\"/v1/units/{name}\"}"
        ) >= Some(2.0),
        "{m}"
    );
    assert!(!m.contains("BREW") && !m.contains("WHEN"), "{m}");
    // A unit removed takes its series with it.
    std::fs::remove_file(d.units.join("crash.toml")).unwrap();
    wait_until(20 * SEC, "crash's series gone", || {
        !scrape(&d).contains("unit=\"crash\"")
    });
}
