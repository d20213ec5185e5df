//! Restart policies against exit 0 and exit 1, max_retries, growing backoff, start failures.

use std::time::{Duration, Instant};

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

fn policy(p: &str, extra: &str) -> String {
    format!("[restart]\npolicy = \"{p}\"\ndelay = \"50ms\"\n{extra}")
}

/// Waits until the unit has settled in `state` with at least `restarts`.
fn settled(d: &Daemon, name: &str, state: &str, restarts: u64) -> serde_json::Value {
    let deadline = Instant::now() + 15 * SEC;
    loop {
        let s = d.status(name).unwrap_or_default();
        if s["state"] == state && s["restarts"].as_u64().unwrap_or(0) >= restarts {
            return s;
        }
        assert!(Instant::now() < deadline, "{name}: {s:#}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn no_policy_never_restarts() {
    let d = Daemon::start();
    d.write_unit("zero", &unit("exit 0", ""));
    d.write_unit("one", &unit("exit 1", &policy("no", "")));
    let s = settled(&d, "zero", "exited", 0);
    assert_eq!(s["exit_code"], 0);
    assert_eq!(s["policy"], "no");
    let s = settled(&d, "one", "exited", 0);
    assert_eq!(s["exit_code"], 1);
    // The policy was applied where the exit was seen (a restart would have shown
    // `restarting`, never `exited`); a later look restarts nothing either.
    d.look_again("one");
    let s = d.status("one").unwrap();
    assert_eq!((&s["state"], &s["restarts"]), (&"exited".into(), &0.into()));
    assert_eq!(
        d.actions_after(0, "one"),
        ["loaded", "create", "start", "exited", "changed"]
    );
    assert!(d.runtime_containers().is_empty());
}

#[test]
fn on_failure_restarts_failures_until_max_retries() {
    let d = Daemon::start();
    d.write_unit("ok", &unit("exit 0", &policy("on-failure", "")));
    d.write_unit(
        "bad",
        &unit(
            "echo run; exit 3",
            &policy("on-failure", "max_retries = 3\n"),
        ),
    );
    let s = settled(&d, "ok", "exited", 0);
    assert_eq!(s["exit_code"], 0);
    let s = settled(&d, "bad", "failed", 3);
    assert_eq!(s["restarts"], 3);
    assert_eq!(s["exit_code"], 3);
    assert!(
        s["error"].as_str().unwrap().contains("max_retries"),
        "{s:#}"
    );
    // Exactly 1 + 3 runs.
    let out = d.rctl(&["logs", "bad"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches("run").count(),
        4
    );
    // rctl start resets the count and runs it again.
    let out = d.rctl(&["start", "bad"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = settled(&d, "bad", "failed", 3);
    assert_eq!(s["restarts"], 3);
    let out = d.rctl(&["logs", "bad"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches("run").count(),
        8
    );
}

#[test]
fn always_and_unless_stopped_restart_on_any_exit_with_growing_backoff() {
    let d = Daemon::start();
    d.write_unit("a1", &unit("exit 1", &policy("always", "")));
    d.write_unit("u", &unit("exit 1", &policy("unless-stopped", "")));
    d.write_unit("u0", &unit("exit 0", &policy("unless-stopped", "")));
    for (name, code) in [("a1", 1), ("u", 1), ("u0", 0)] {
        let s = settled(&d, name, "restarting", 3);
        assert_eq!(s["exit_code"], code, "{name}");
    }
    // Held stopped, out of the way of the timing below.
    for name in ["a1", "u", "u0"] {
        assert!(d.rctl(&["stop", name]).status.success());
    }
    d.write_unit(
        "a",
        &unit(
            "cut -d' ' -f1 /proc/uptime; exit 0",
            "[restart]\npolicy = \"always\"\ndelay = \"300ms\"\n",
        ),
    );
    // The waits before each restart of `a` grow: 300, 600, 1200 ms, as each run's own start
    // time (the host's uptime, which each run prints first) shows. A gap between two starts
    // is the wait, plus the run and the next start: never shorter than the wait (uptime's
    // 10 ms steps aside), and at most a second longer (a start takes 0.1 to 0.5 s on a loaded
    // 2-core machine; waits that stayed at 300 ms, or tripled, would not pass).
    let starts = || -> Vec<f64> {
        let out = d.rctl(&["logs", "a"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    };
    wait_until(20 * SEC, "four runs of a", || starts().len() >= 4);
    let starts = starts();
    let gaps: Vec<u64> = starts
        .windows(2)
        .map(|w| ((w[1] - w[0]) * 1000.0).round() as u64)
        .collect();
    for (i, &got) in gaps.iter().take(3).enumerate() {
        let want = 300u64 << i;
        assert!(
            got + 10 >= want && got < want + 1000,
            "restart {}: {got} ms after the run before, want {want} ms (+ the start); gaps: \
             {gaps:?}",
            i + 1
        );
    }
}

#[test]
fn start_failure_counts_as_failure() {
    let d = Daemon::start();
    // A command that does not exist: the runtime fails at start.
    let text = unit("x", &policy("on-failure", "max_retries = 2\n")).replace(
        "command = [\"sh\", \"-c\", \"x\"]",
        "command = [\"/no/such/binary\"]",
    );
    d.write_unit("broken", &text);
    let s = settled(&d, "broken", "failed", 2);
    let err = s["error"].as_str().unwrap();
    assert!(err.contains("/no/such/binary"), "{err}");
    assert!(d.runtime_containers().is_empty());
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());

    // Under `no`, a start failure is failed at once.
    let text = unit("x", "").replace(
        "command = [\"sh\", \"-c\", \"x\"]",
        "command = [\"/no/such/binary\"]",
    );
    d.write_unit("once", &text);
    let s = settled(&d, "once", "failed", 0);
    assert_eq!(s["restarts"], 0);

    // A missing rootfs is a start failure too.
    let text = unit("sleep 1", &policy("always", ""))
        .replace(&rootfs().display().to_string(), "/no/such/rootfs");
    d.write_unit("norootfs", &text);
    let s = settled(&d, "norootfs", "restarting", 2);
    assert!(
        s["error"].as_str().unwrap().contains("/no/such/rootfs"),
        "{s:#}"
    );
}

#[test]
fn a_long_run_resets_the_backoff() {
    let d = Daemon::start();
    // Runs 1.2 s (longer than reset_after) then fails: every restart comes after the first delay.
    d.write_unit(
        "slow",
        &unit(
            "sleep 1.2; exit 1",
            &policy("always", "reset_after = \"1s\"\nmax_delay = \"10s\"\n"),
        ),
    );
    let s = settled(&d, "slow", "running", 3);
    let rec = d.rctl(&["inspect", "slow"]);
    let v: serde_json::Value = serde_json::from_slice(&rec.stdout).unwrap();
    assert_eq!(v["record"]["backoff_step"], 1, "{v:#}");
    assert!(s["restarts"].as_u64().unwrap() >= 3);
}

#[test]
fn a_hung_runtime_is_a_start_failure_and_leaves_nothing() {
    let mut d = Daemon::new();
    let slow = d.dir.path().join("hung-runc");
    std::fs::write(
        &slow,
        "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = run ] && sleep 30; done\nexec runc \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    d.runtime = Some(slow);
    d.args = vec!["--start-timeout".into(), "1s".into()];
    d.spawn();
    d.write_unit("hung", &unit("exec sleep 1000", ""));
    let s = settled(&d, "hung", "failed", 0);
    let err = s["error"].as_str().unwrap();
    assert!(err.contains("did not start within 1s"), "{err}");
    // The shim and its runtime call are gone; nothing runs, nothing is mounted.
    let id = s["container_id"].as_str().unwrap().to_string();
    wait_until(5 * SEC, "shim gone", || {
        std::fs::read_dir("/proc").unwrap().flatten().all(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            !String::from_utf8_lossy(&cmd).contains(&id)
        })
    });
    assert!(d.runtime_containers().is_empty());
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
    // The daemon still answers.
    assert!(d.rctl(&["list"]).status.success());
}
