//! Health checks with Docker's semantics, run in the container through the runtime's exec,
//! and what they drive: `on_unhealthy`, and units that start `after` a healthy one.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;
use crate::image::{image_unit, push_image};
use crate::registry::{Image, Registry};

const SEC: Duration = Duration::from_secs(1);

fn health(d: &Daemon, name: &str) -> serde_json::Value {
    d.status(name)
        .map(|s| s["health"].clone())
        .unwrap_or_default()
}

fn wait_health(d: &Daemon, name: &str, status: &str, within: Duration) -> serde_json::Value {
    wait_until(within, &format!("{name} {status}"), || {
        health(d, name)["status"] == status
    });
    health(d, name)
}

/// Processes whose command line is exactly `cmdline` (space-separated).
fn processes(cmdline: &str) -> Vec<i64> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter(|p| cmdline_of(*p) == cmdline)
        .collect()
}

fn cmdline_of(pid: i64) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .replace('\0', " ")
        })
        .unwrap_or_default()
}

#[test]
fn an_unhealthy_container_is_restarted_when_its_unit_says_so() {
    let d = Daemon::start();
    // Healthy for about a second after each start, then the probe fails.
    d.write_unit(
        "flaky",
        &unit(
            "touch /tmp/ok; (sleep 1; rm -f /tmp/ok) & exec sleep 1000",
            "stop_signal = \"KILL\"\n\n[health]\ncmd = \"test -f /tmp/ok\"\ninterval = \"200ms\"\ntimeout = \"2s\"\nretries = 2\non_unhealthy = \"restart\"\n\n[restart]\ndelay = \"100ms\"\n",
        ),
    );
    let first = pid_of(&d.wait_state("flaky", "running", 20 * SEC));
    let h = wait_health(&d, "flaky", "healthy", 10 * SEC);
    assert_eq!(h["failing_streak"], 0);
    let text = String::from_utf8_lossy(&d.rctl(&["status", "flaky"]).stdout).to_string();
    assert!(text.contains("Health: healthy"), "{text}");
    assert!(text.contains("Last probe: exit 0"), "{text}");
    // Unhealthy after 2 failures: restarted through the restart path (policy `no`
    // notwithstanding), counted.
    let second = d.wait_new_pid("flaky", first, 15 * SEC);
    assert!(!pid_alive(first));
    let s = d.wait_state("flaky", "running", 10 * SEC);
    assert_eq!(pid_of(&s), second);
    assert_eq!(s["restarts"], 1, "{s:#}");
    // The new container's health starts over.
    assert_ne!(health(&d, "flaky")["status"], "unhealthy");
}

/// A status time (RFC 3339) in ms since the epoch.
fn ms(t: &serde_json::Value) -> u64 {
    humantime::parse_rfc3339(t.as_str().unwrap_or_else(|| panic!("no time: {t}")))
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn failures_in_the_start_period_do_not_count_and_on_unhealthy_stop_stops() {
    let d = Daemon::start();
    d.write_unit(
        "slow",
        &unit(
            "exec sleep 1000",
            "stop_signal = \"KILL\"\n\n[health]\ncmd = [\"false\"]\ninterval = \"100ms\"\nstart_interval = \"100ms\"\nstart_period = \"2s\"\nretries = 1\non_unhealthy = \"stop\"\n",
        ),
    );
    let s = d.wait_state("slow", "running", 20 * SEC);
    let pid = pid_of(&s);
    // The start period is counted from the start the status shows; each probe's start is in
    // the health log, on the same clock. A probe that began before the period ended was
    // judged inside it.
    let period_end = ms(&s["started_at"]) + 2000;
    // Probes fail from the first: every look at the health while all its probes are of the
    // start period finds none counted, until the period is over; then one failure (retries =
    // 1) is unhealthy, and the unit stops it.
    let mut failed_in_period = std::collections::BTreeSet::new();
    let deadline = Instant::now() + 15 * SEC;
    let s = loop {
        let s = d.status("slow").unwrap();
        if s["state"] == "failed" {
            break s;
        }
        assert!(Instant::now() < deadline, "slow never failed: {s:#}");
        let h = &s["health"];
        let log = h["log"].as_array().cloned().unwrap_or_default();
        let starts: Vec<u64> = log
            .iter()
            .map(|c| c["start_ms"].as_u64().unwrap())
            .collect();
        if !log.is_empty() && starts.iter().all(|&t| t < period_end) {
            assert_eq!(
                (&h["status"], &h["failing_streak"]),
                (&json!("starting"), &json!(0)),
                "failures of the start period counted: {h:#}"
            );
            for c in &log {
                assert_ne!(c["exit_code"], 0, "{h:#}");
            }
            failed_in_period.extend(starts);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        failed_in_period.len() >= 3,
        "a few failing probes seen in the start period: {failed_in_period:?}"
    );
    assert!(!pid_alive(pid));
    assert_eq!(
        s["error"], "stopped: unhealthy (on_unhealthy = \"stop\")",
        "{s:#}"
    );
    // Unhealthy only once the period was over.
    let events = d.events();
    let unhealthy = events
        .iter()
        .find(|e| e["unit"] == "slow" && e["attributes"]["status"] == "unhealthy")
        .unwrap_or_else(|| panic!("no unhealthy event: {events:#?}"));
    assert!(
        unhealthy["time_ms"].as_u64().unwrap() >= period_end,
        "unhealthy before the start period ended at {period_end}: {unhealthy:#}"
    );
}

#[test]
fn a_probe_that_hangs_is_killed_at_its_timeout_with_what_it_started() {
    let d = Daemon::start();
    d.write_unit(
        "hang",
        &unit(
            "exec sleep 1000",
            "stop_signal = \"KILL\"\n\n[health]\ncmd = \"sleep 1235; true\"\ninterval = \"100ms\"\ntimeout = \"300ms\"\nretries = 2\n",
        ),
    );
    d.wait_state("hang", "running", 20 * SEC);
    let h = wait_health(&d, "hang", "unhealthy", 10 * SEC);
    let last = &h["log"][h["log"].as_array().map_or(0, |l| l.len()) - 1];
    assert_eq!(last["exit_code"], -1, "{h:#}");
    assert!(
        last["output"]
            .as_str()
            .unwrap_or_default()
            .contains("exceeded timeout (300ms)"),
        "{h:#}"
    );
    let took = last["took_ms"].as_u64().unwrap_or(0);
    assert!((300..2000).contains(&took), "{h:#}");
    // No probe left behind: neither the shell nor its sleep.
    wait_until(5 * SEC, "no probe process", || {
        processes("sleep 1235").is_empty() && processes("/bin/sh -c sleep 1235; true").is_empty()
    });
    // `on_unhealthy` defaults to none: it keeps running.
    assert_eq!(d.status("hang").unwrap()["state"], "running");
}

#[test]
fn a_unit_after_a_healthy_one_starts_once_it_is_healthy() {
    let d = Daemon::start();
    d.write_unit(
        "db",
        &unit(
            "sleep 2; touch /tmp/ready; exec sleep 1000",
            "stop_signal = \"KILL\"\n\n[health]\ncmd = \"test -f /tmp/ready\"\ninterval = \"100ms\"\nretries = 100\n",
        ),
    );
    d.write_unit(
        "web",
        &format!(
            "[unit]\nafter = [\"db\"]\nrequires = [\"db\"]\n{}",
            unit("exec sleep 1000", "stop_signal = \"KILL\"\n")
        ),
    );
    d.wait_state("db", "running", 20 * SEC);
    d.wait_waiting_for("web", "unit db to be healthy", 10 * SEC);
    let text = String::from_utf8_lossy(&d.rctl(&["status", "web"]).stdout).to_string();
    assert!(text.contains("Depends: after db; requires db"), "{text}");
    wait_health(&d, "db", "healthy", 10 * SEC);
    let web = d.wait_state("web", "running", 10 * SEC);
    // Started after db's first passing probe.
    let healthy_at = health(&d, "db")["log"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["exit_code"] == 0))
        .and_then(|c| c["start_ms"].as_u64())
        .unwrap_or(u64::MAX);
    let started: u64 = humantime::parse_rfc3339(web["started_at"].as_str().unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        started >= healthy_at,
        "web started {started}, db healthy {healthy_at}"
    );
}

#[test]
fn an_images_healthcheck_applies_unless_the_unit_disables_it() {
    let reg = Registry::start();
    let mut img = Image::busybox();
    img.config["Cmd"] = json!(["sleep", "1000"]);
    img.config["Healthcheck"] = json!({
        "Test": ["CMD-SHELL", "echo from-the-image; exit 3"],
        "Interval": 100_000_000u64,
        "Retries": 2,
    });
    let image = push_image(&reg, "checked:latest", &img);
    let d = Daemon::start();
    // The monitor of a container without a probe ends at once; one with a probe runs as long
    // as its container does.
    d.arm("health-monitor-end:unchecked");
    d.write_unit("checked", &image_unit(&image, "stop_signal = \"KILL\"\n"));
    d.write_unit(
        "unchecked",
        &image_unit(
            &image,
            "stop_signal = \"KILL\"\n\n[health]\ndisable = true\n",
        ),
    );
    let h = wait_health(&d, "checked", "unhealthy", 20 * SEC);
    assert!(
        h["log"][0]["output"]
            .as_str()
            .unwrap_or_default()
            .contains("from-the-image"),
        "{h:#}"
    );
    assert_eq!(h["log"][0]["exit_code"], 3);
    d.wait_state("unchecked", "running", 20 * SEC);
    d.wait_passed("health-monitor-end:unchecked", 10 * SEC);
    assert_eq!(
        d.status("unchecked").unwrap()["health"],
        serde_json::Value::Null
    );
    let events = d.actions("1h", "unchecked");
    assert!(!events.iter().any(|(a, _)| a == "health"), "{events:?}");
}

#[test]
fn probes_in_flight_cost_the_daemon_no_thread_each() {
    const UNITS: usize = 16;
    let d = Daemon::start();
    let pid = d.child.as_ref().expect("the daemon runs").id();
    let threads = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|t| t.count())
            .unwrap_or(0)
    };
    let idle = threads();
    // Probes of a second each, back to back: nearly always in flight.
    for i in 0..UNITS {
        d.write_unit(
            &format!("busy{i}"),
            &unit(
                "exec sleep 1000",
                "stop_signal = \"KILL\"\n\n[health]\ncmd = [\"sleep\", \"1\"]\ninterval = \"100ms\"\ntimeout = \"30s\"\nretries = 100\n",
            ),
        );
    }
    for i in 0..UNITS {
        d.wait_state(&format!("busy{i}"), "running", 60 * SEC);
    }
    for i in 0..UNITS {
        wait_health(&d, &format!("busy{i}"), "healthy", 60 * SEC);
    }
    // Sampled once the starts are done and the blocking threads they used have timed out of
    // the runtime's pool (10 s idle): what remains is the probes' cost.
    std::thread::sleep(11 * SEC);
    let (mut most, mut in_flight) = (0, 0);
    let began = Instant::now();
    while began.elapsed() < 5 * SEC {
        most = most.max(threads());
        in_flight = in_flight.max(processes("sleep 1").len());
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "daemon threads: {idle} idle, at most {most} with {UNITS} units probing ({in_flight} probes in flight at most)"
    );
    assert!(in_flight >= 2, "the probes ran: {in_flight} at once");
    // The old way took three or four threads per probe in flight (over 60 here).
    assert!(most < idle + UNITS, "{most} threads (idle: {idle})");
}

/// A root filesystem with busybox's binary only (no shell, no applet links) and /etc/passwd:
/// nothing in it could run a probe command.
fn distroless(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("distroless");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(rootfs().join("bin/busybox"), root.join("bin/busybox")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/:/nonexistent\n").unwrap();
    root
}

#[test]
fn http_and_tcp_probes_need_nothing_in_the_image() {
    let d = Daemon::start();
    let root = distroless(d.dir.path());
    let httpd = |probe: &str| {
        format!(
            "[container]\nrootfs = {:?}\ncommand = [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/etc\"]\n\
             stop_signal = \"KILL\"\n[network]\nmode = \"none\"\n\
             [health]\n{probe}\ninterval = \"500ms\"\nretries = 1\n",
            root.display().to_string()
        )
    };
    d.write_unit("web", &httpd("http = \"http://127.0.0.1:8080/passwd\""));
    d.write_unit("port", &httpd("tcp = \"127.0.0.1:8080\""));
    d.write_unit("broken", &httpd("http = \"http://localhost:8080/nope\""));
    d.write_unit("closed", &httpd("tcp = \"127.0.0.1:9999\""));
    let web = wait_health(&d, "web", "healthy", 20 * SEC);
    assert!(web["log"].to_string().contains("200 OK"), "{web:#}");
    wait_health(&d, "port", "healthy", 20 * SEC);
    let broken = wait_health(&d, "broken", "unhealthy", 20 * SEC);
    assert!(
        broken["log"].to_string().contains("GET /nope"),
        "{broken:#}"
    );
    let closed = wait_health(&d, "closed", "unhealthy", 20 * SEC);
    assert!(closed["log"].to_string().contains("refused"), "{closed:#}");
    // The probes ran in the containers' own namespaces: the host's 127.0.0.1:8080 is not
    // theirs (nothing listens there on the host, or it is something else).
    assert_eq!(d.status("web").unwrap()["state"], "running");
}

#[test]
fn a_startup_probe_holds_the_other_back_until_it_passes() {
    let d = Daemon::start();
    // httpd comes up after 2 s; the startup probe waits for its port, then the http probe runs.
    d.write_unit(
        "slow",
        &unit(
            "sleep 2; exec httpd -f -p 8080 -h /etc",
            "stop_signal = \"KILL\"\n[network]\nmode = \"none\"\n\
             [health]\nhttp = \"http://127.0.0.1:8080/passwd\"\ninterval = \"500ms\"\nretries = 1\n\
             [health.startup]\ntcp = \"127.0.0.1:8080\"\ninterval = \"300ms\"\nretries = 30\n",
        ),
    );
    // Never comes up: unhealthy after the startup probe's retries.
    d.write_unit(
        "never",
        &unit(
            "exec sleep 1000",
            "stop_signal = \"KILL\"\n[network]\nmode = \"none\"\n\
             [health]\nhttp = \"http://127.0.0.1:8080/\"\n\
             [health.startup]\ntcp = \"127.0.0.1:8080\"\ninterval = \"200ms\"\nretries = 3\n",
        ),
    );
    let h = wait_health(&d, "slow", "healthy", 30 * SEC);
    let log = h["log"].to_string();
    // The startup probe's refusals first, then the http probe's answer.
    assert!(log.contains("refused") && log.contains("200 OK"), "{h:#}");
    let h = wait_health(&d, "never", "unhealthy", 30 * SEC);
    assert!(h["failing_streak"].as_u64() >= Some(3), "{h:#}");
    assert!(
        !h["log"].to_string().contains("GET"),
        "the http probe never ran: {h:#}"
    );
}
