//! Live restore under load: the daemon SIGKILLed while 50 containers run, some waiting out a
//! restart backoff, some being health-checked; some containers exit while it is down. When it
//! is back (READY=1), the status is complete at once, every container still running keeps its
//! pid and is not counted as restarted, nothing is duplicated, and the exits are recorded with
//! their policies applied.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

fn quiet(script: &str, extra: &str) -> String {
    format!(
        "{}\n[network]\nmode = \"none\"\n",
        unit(script, &format!("stop_signal = \"KILL\"\n{extra}"))
    )
}

#[test]
fn fifty_containers_survive_a_daemon_kill_mid_backoff_and_mid_health_check() {
    let mut d = Daemon::new();
    for i in 0..40 {
        d.write_unit(&format!("s{i:02}"), &quiet("exec sleep 1000", ""));
    }
    for i in 0..5 {
        d.write_unit(
            &format!("h{i}"),
            &quiet(
                "exec sleep 1000",
                "\n[health]\ncmd = [\"true\"]\ninterval = \"200ms\"\n",
            ),
        );
    }
    // Crashing under `always` with a long delay: mid-backoff when the daemon dies.
    for i in 0..5 {
        d.write_unit(
            &format!("c{i}"),
            &quiet(
                "exit 3",
                "\n[restart]\npolicy = \"always\"\ndelay = \"30s\"\nmax_delay = \"30s\"\n",
            ),
        );
    }
    d.spawn();
    let running: Vec<String> = (0..40)
        .map(|i| format!("s{i:02}"))
        .chain((0..5).map(|i| format!("h{i}")))
        .collect();
    let mut pids = std::collections::BTreeMap::new();
    for n in &running {
        pids.insert(n.clone(), pid_of(&d.wait_state(n, "running", 60 * SEC)));
    }
    for i in 0..5 {
        d.wait_state(&format!("c{i}"), "restarting", 30 * SEC);
        wait_until(10 * SEC, "healthy", || {
            d.status(&format!("h{i}"))
                .is_some_and(|s| s["health"]["status"] == "healthy")
        });
    }

    d.kill();
    // While it is down, two containers die.
    for n in ["s00", "s01"] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pids[n] as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    let sock_path = d.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(30 * SEC)).unwrap();
    d.env = vec![("NOTIFY_SOCKET".into(), sock_path.display().to_string())];
    d.spawn();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).expect("READY=1");
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            break;
        }
    }
    // Complete within a second of READY=1: every unit, with its container.
    let ready = Instant::now();
    let all = d.statuses();
    assert!(ready.elapsed() < SEC, "{:?}", ready.elapsed());
    assert_eq!(all.len(), 50);
    for s in &all {
        let name = s["name"].as_str().unwrap_or_default();
        match name {
            "s00" | "s01" => {}
            n if n.starts_with('c') => {
                assert_eq!(s["state"], "restarting", "{s:#}");
                assert_eq!(s["restarts"], 1, "{s:#}");
            }
            n => {
                assert_eq!(s["state"], "running", "{s:#}");
                assert_eq!(pid_of(s), pids[n], "{n} kept its pid");
                assert_eq!(s["restarts"], 0, "{s:#}");
            }
        }
    }
    // The two that died meanwhile: their exits recorded, their policy (`no`) applied.
    for n in ["s00", "s01"] {
        let s = d.wait_state(n, "exited", 10 * SEC);
        assert_eq!(s["exit_code"], 137, "{s:#}");
    }
    // Nothing duplicated: one runtime container per running unit, one process each.
    assert_eq!(d.runtime_containers().len(), 43);
    let sleeps = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter(|p| cmdline(*p).trim() == "sleep 1000")
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                .is_ok_and(|c| c.contains(&format!("rcd-{}-", rcd::config::root_tag(&d.root))))
        })
        .count();
    assert_eq!(sleeps, 43);
    // Health checks go on for the re-adopted containers.
    for i in 0..5 {
        let h = format!("h{i}");
        let before = d.status(&h).unwrap()["health"]["log"]
            .as_array()
            .and_then(|l| l.last().cloned())
            .unwrap_or_default();
        wait_until(10 * SEC, "a new probe", || {
            d.status(&h).unwrap()["health"]["log"]
                .as_array()
                .and_then(|l| l.last().cloned())
                .is_some_and(|c| c != before && c["exit_code"] == 0)
        });
    }
}

#[test]
fn an_upgrade_a_new_binary_after_a_clean_stop_keeps_every_container() {
    // Two copies of the daemon, as an upgrade replaces /usr/bin/rcd between a stop and a start.
    let mut d = Daemon::new();
    let (old, new) = (d.dir.path().join("rcd-old"), d.dir.path().join("rcd-new"));
    std::fs::copy(RCD, &old).unwrap();
    std::fs::copy(RCD, &new).unwrap();
    for i in 0..5 {
        d.write_unit(&format!("u{i}"), &quiet("exec sleep 1000", ""));
    }
    d.binary = Some(old);
    d.spawn();
    let pids: Vec<i64> = (0..5)
        .map(|i| pid_of(&d.wait_state(&format!("u{i}"), "running", 30 * SEC)))
        .collect();
    d.terminate();
    d.binary = Some(new.clone());
    d.spawn();
    // The new binary runs, the old one is gone.
    assert!(cmdline(d.child.as_ref().unwrap().id() as i64).contains("rcd-new"));
    for (i, pid) in pids.iter().enumerate() {
        let s = d.wait_state(&format!("u{i}"), "running", 10 * SEC);
        assert_eq!(
            (pid_of(&s), &s["restarts"]),
            (*pid, &serde_json::json!(0)),
            "{s:#}"
        );
    }
    assert_eq!(d.runtime_containers().len(), 5);
}
