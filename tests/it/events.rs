//! `rctl events`: what happened, kept on disk across daemon restarts, filtered by unit, and
//! followed as it happens.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

fn names(a: &[(String, Value)]) -> Vec<&str> {
    a.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn events_tell_what_happened_and_outlive_a_daemon_restart() {
    let mut d = Daemon::start();
    let since = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 1
    );
    d.write_unit(
        "ev",
        &unit(
            "exit 3",
            "\n[restart]\npolicy = \"on-failure\"\nmax_retries = 1\ndelay = \"100ms\"\n",
        ),
    );
    d.write_unit(
        "other",
        &unit("exec sleep 1000", "stop_signal = \"KILL\"\n"),
    );
    d.wait_state("ev", "failed", 20 * SEC);
    d.wait_state("other", "running", 20 * SEC);
    let want = [
        "loaded",
        "create",
        "start",
        "exited",
        "restarting",
        "start",
        "exited",
        "failed",
    ];
    wait_until(5 * SEC, "all events recorded", || {
        names(&d.actions(&since, "ev")) == want
    });
    let got = d.actions(&since, "ev");
    let (_, exited) = &got[3];
    assert_eq!(exited["exit_code"], "3", "{got:?}");
    assert_eq!(got[4].1["after"], "100ms", "{got:?}");
    assert!(
        got[7].1["error"]
            .as_str()
            .unwrap_or_default()
            .contains("max_retries"),
        "{got:?}"
    );

    // A typo, then a fix that changes the container.
    std::fs::write(d.units.join("other.toml.tmp"), "[container\n").unwrap();
    std::fs::rename(d.units.join("other.toml.tmp"), d.units.join("other.toml")).unwrap();
    wait_until(10 * SEC, "invalid recorded", || {
        names(&d.actions(&since, "other")).contains(&"invalid")
    });
    d.write_unit(
        "other",
        &unit("exec sleep 1001", "stop_signal = \"KILL\"\n"),
    );
    wait_until(10 * SEC, "recreated", || {
        names(&d.actions(&since, "other"))
            == [
                "loaded", "create", "start", "invalid", "changed", "stopped", "create", "start",
            ]
    });

    // After a daemon restart, --since still reaches them.
    d.kill();
    d.spawn();
    assert_eq!(names(&d.actions(&since, "ev"))[..want.len()], want);
    d.remove_unit("other");
    wait_until(10 * SEC, "removed recorded", || {
        let a = d.actions(&since, "other");
        names(&a).ends_with(&["file-removed", "stopped", "removed"])
            && a.iter()
                .rev()
                .nth(1)
                .is_some_and(|(_, at)| at["signal"] == "SIGKILL")
    });
}

#[test]
fn events_can_be_followed_as_they_happen() {
    let d = Daemon::start();
    let mut follower = Command::new(RCTL)
        .arg("--socket")
        .arg(&d.socket)
        .args(["events", "--unit", "late", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let e: Value = serde_json::from_str(&line).unwrap_or_default();
            if tx
                .send(e["action"].as_str().unwrap_or_default().to_string())
                .is_err()
            {
                break;
            }
        }
    });
    // Known to follow once it shows an event the test caused after it began: `late` saved
    // invalid (each time with other bytes, so each scan reports it), until one is shown.
    let mut seen = Vec::new();
    for i in 0.. {
        assert!(i < 100, "the follower never showed late's invalid file");
        std::fs::write(d.units.join("late.toml"), format!("[container\n# {i}\n")).unwrap();
        assert!(d.rctl(&["reload"]).status.success());
        if let Ok(a) = rx.recv_timeout(SEC / 5) {
            seen.push(a);
            break;
        }
    }
    // Then both units saved: only late's events are followed, as they happen.
    d.write_unit(
        "early",
        &unit("exec sleep 1000", "stop_signal = \"KILL\"\n"),
    );
    d.write_unit("late", &unit("exec sleep 1000", "stop_signal = \"KILL\"\n"));
    while !seen.contains(&"start".to_string()) {
        match rx.recv_timeout(10 * SEC) {
            Ok(a) => seen.push(a),
            Err(e) => panic!("no start event for late ({e}); seen {seen:?}"),
        }
    }
    // (A probe shown late is one more `invalid` before the rest.)
    let first = seen.iter().position(|a| a != "invalid").unwrap();
    assert!(first >= 1, "{seen:?}");
    assert_eq!(seen[first..], ["loaded", "create", "start"], "{seen:?}");
    let _ = follower.kill();
    let _ = follower.wait();
}
