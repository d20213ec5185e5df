//! rcd as a systemd service: the unit file that ships verifies, and the daemon speaks
//! sd_notify (READY=1 once its units are read and its containers re-adopted, STATUS= with
//! counts, WATCHDOG=1 as `WatchdogSec=` asks, STOPPING=1).

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn the_shipped_systemd_unit_verifies() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/rcd.service"
    ))
    .unwrap();
    for line in [
        "Type=notify",
        "KillMode=process",
        "WatchdogSec=30s",
        "TimeoutAbortSec=10s",
    ] {
        assert!(shipped.lines().any(|l| l == line), "{line} in rcd.service");
    }
    // Nothing that gives the daemon a mount namespace of its own (its overlays and pinned
    // network namespaces must be the host's, and the same for the next daemon) or a seccomp
    // filter its containers would inherit.
    for key in [
        "ProtectHome=",
        "ProtectSystem=",
        "ProtectClock=",
        "ProtectKernel",
        "PrivateTmp=",
        "PrivateDevices=",
        "ReadOnlyPaths=",
        "InaccessiblePaths=",
        "SystemCallFilter=",
        "MountFlags=",
    ] {
        assert!(
            !shipped.lines().any(|l| l.starts_with(key)),
            "{key} in rcd.service"
        );
    }
    // The binary is not installed here: the unit as shipped, pointed at this build's.
    assert!(shipped.contains("ExecStart=/usr/bin/rcd\n"));
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("rcd.service");
    std::fs::write(
        &unit,
        shipped.replace("ExecStart=/usr/bin/rcd\n", &format!("ExecStart={RCD}\n")),
    )
    .unwrap();
    // The slice the containers' scopes go in ships beside it.
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/rcd.slice"),
        dir.path().join("rcd.slice"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .arg(dir.path().join("rcd.slice"))
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.trim().is_empty(), "warnings: {said}");
}

/// Receives the next notification within `within`.
fn next(sock: &UnixDatagram, within: Duration) -> String {
    sock.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_comes_after_readoption_then_status_watchdog_and_stopping() {
    let mut d = Daemon::new();
    d.write_unit("kept", &unit("exec sleep 1000", "stop_signal = \"KILL\"\n"));
    d.write_unit(
        "off",
        &unit("exec sleep 1000", "[install]\nautostart = false\n"),
    );
    d.spawn();
    let pid = pid_of(&d.wait_state("kept", "running", 20 * SEC));
    d.kill();

    let sock_path = d.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    d.env = vec![
        ("NOTIFY_SOCKET".into(), sock_path.display().to_string()),
        ("WATCHDOG_USEC".into(), "200000".into()),
    ];
    d.spawn();
    let first = next(&sock, 10 * SEC);
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    // By READY the running container is re-adopted (same pid), and the status says so.
    let s = d.status("kept").unwrap();
    assert_eq!((s["state"].as_str(), pid_of(&s)), (Some("running"), pid));
    let status = first
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_default();
    assert_eq!(status, "2 units: 1 pending, 1 running", "{first:?}");
    // The watchdog every 100 ms (half of WATCHDOG_USEC).
    let began = Instant::now();
    let mut pets = 0;
    while pets < 3 {
        if next(&sock, 2 * SEC).lines().any(|l| l == "WATCHDOG=1") {
            pets += 1;
        }
    }
    assert!(
        began.elapsed() < 2 * SEC,
        "{:?} for 3 pets",
        began.elapsed()
    );
    // A change shows in STATUS= at the next refresh.
    assert!(d.rctl(&["start", "off"]).status.success());
    d.wait_state("off", "running", 20 * SEC);
    let deadline = Instant::now() + 5 * SEC;
    loop {
        let m = next(&sock, 2 * SEC);
        if m.contains("STATUS=2 units: 2 running") {
            break;
        }
        assert!(Instant::now() < deadline, "no new STATUS; last {m:?}");
    }
    d.terminate();
    let deadline = Instant::now() + 5 * SEC;
    loop {
        if next(&sock, 2 * SEC).lines().any(|l| l == "STOPPING=1") {
            break;
        }
        assert!(Instant::now() < deadline, "no STOPPING=1");
    }
    // Live restore: the containers outlive the daemon.
    assert!(pid_alive(pid));
}

#[test]
fn without_live_restore_a_clean_shutdown_stops_everything_dependents_first() {
    let mut d = Daemon::new();
    d.write_config("", "[daemon]\nlive_restore = false\n");
    let sleeper = |deps: &str| {
        format!(
            "[unit]\n{deps}\n{}",
            unit("exec sleep 1000", "stop_signal = \"KILL\"\n")
        )
    };
    d.write_unit("db", &sleeper(""));
    d.write_unit("web", &sleeper("after = [\"db\"]\nrequires = [\"db\"]"));
    d.write_unit("solo", &sleeper(""));
    d.spawn();
    let pids: Vec<i64> = ["db", "web", "solo"]
        .iter()
        .map(|n| pid_of(&d.wait_state(n, "running", 20 * SEC)))
        .collect();
    let began = Instant::now();
    d.terminate();
    assert!(began.elapsed() < 15 * SEC, "{:?}", began.elapsed());
    for p in &pids {
        assert!(!pid_alive(*p), "{p} still runs");
    }
    assert!(d.runtime_containers().is_empty());
    // The next start starts them again (they were not held), and the events say web went
    // before db.
    d.spawn();
    for n in ["db", "web", "solo"] {
        d.wait_state(n, "running", 20 * SEC);
    }
    assert_web_stopped_before_db(&d);
}

/// The event log says web (which requires db) was stopped before db.
fn assert_web_stopped_before_db(d: &Daemon) {
    let out = d.rctl(&[
        "events", "--since", "1h", "--until", "0s", "--output", "json",
    ]);
    let stopped: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["action"] == "stopped")
        .map(|e| e["unit"].as_str().unwrap_or_default().to_string())
        .collect();
    let at = |u: &str| stopped.iter().position(|s| s == u);
    assert!(at("web").is_some() && at("web") < at("db"), "{stopped:?}");
}

#[test]
fn rctl_shutdown_keeps_the_containers_and_with_stop_containers_stops_them_dependents_first() {
    let mut d = Daemon::new();
    let sleeper = |deps: &str| {
        format!(
            "[unit]\n{deps}\n{}",
            unit("exec sleep 1000", "stop_signal = \"KILL\"\n")
        )
    };
    d.write_unit("db", &sleeper(""));
    d.write_unit("web", &sleeper("after = [\"db\"]\nrequires = [\"db\"]"));
    d.spawn();
    let pids = |d: &Daemon| -> Vec<i64> {
        ["db", "web"]
            .iter()
            .map(|n| pid_of(&d.wait_state(n, "running", 20 * SEC)))
            .collect()
    };
    let first = pids(&d);
    // Plain: the daemon goes (exit 0), live restore keeps the containers.
    let out = d.rctl(&["shutdown"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("containers keep running"));
    let status = d.child.take().unwrap().wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(first.iter().all(|p| pid_alive(*p)));
    // Re-adopted, then a shutdown that stops them: answered once they are stopped.
    d.spawn();
    assert_eq!(pids(&d), first);
    let out = d.rctl(&["shutdown", "--stop-containers"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("every container is stopped"));
    for p in &first {
        assert!(
            !pid_alive(*p),
            "{p} still runs after rctl shutdown answered"
        );
    }
    assert!(d.child.take().unwrap().wait().unwrap().success());
    assert!(d.runtime_containers().is_empty());
    // Not held: the next daemon starts them again; web went before db.
    d.spawn();
    pids(&d);
    assert_web_stopped_before_db(&d);
}

#[test]
fn sighup_applies_what_it_can_names_what_needs_a_restart_and_survives_a_typo() {
    let mut d = Daemon::new();
    d.write_config("", "");
    d.write_unit("x", &unit("exec sleep 1000", "stop_signal = \"KILL\"\n"));
    d.spawn();
    let pid = pid_of(&d.wait_state("x", "running", 20 * SEC));
    let daemon_pid = nix::unistd::Pid::from_raw(d.child.as_ref().unwrap().id() as i32);
    let hup = || nix::sys::signal::kill(daemon_pid, nix::sys::signal::Signal::SIGHUP).unwrap();

    // A typo changes nothing and says where it is.
    std::fs::write(&d.config, "[daemon]\nlive_restore = maybe\n").unwrap();
    hup();
    let config = d.config.display().to_string();
    wait_until(5 * SEC, "the typo logged", || {
        d.log().contains(&format!(
            "config not reloaded, the running one stays: {config}:2:16"
        ))
    });
    assert!(d.rctl(&["list"]).status.success());

    d.write_config_with(
        "idle_timeout = \"5s\"",
        "",
        "[daemon]\nlive_restore = false\n[logs]\nmax_size = \"2M\"\n[images]\nmax_layer_entries = 5\n",
    );
    hup();
    wait_until(5 * SEC, "the reload logged", || {
        d.log().contains(
            "config reloaded: applied [registries], [logs] (log limits from each container's next start), [daemon] live_restore; needs a daemon restart: [images]",
        )
    });
    // live_restore = false now holds: a clean stop stops the container.
    assert!(pid_alive(pid));
    d.terminate();
    assert!(
        !pid_alive(pid),
        "the reloaded live_restore = false stopped it"
    );
}

/// The fields of one journald native-protocol datagram: `KEY=value` lines, or `KEY`, a
/// little-endian u64 length, the bytes and a newline for values that hold newlines.
fn journal_fields(mut d: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(nl) = d.iter().position(|&b| b == b'\n') {
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            d = &d[nl + 1..];
        } else {
            let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = &d[nl + 9..nl + 9 + len];
            out.push((
                String::from_utf8_lossy(line).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ));
            d = &d[nl + 9 + len + 1..];
        }
    }
    out
}

#[test]
fn under_systemd_the_log_goes_to_journald_with_the_unit_name_as_a_field() {
    // journald's socket path is fixed (/run/systemd/journal/socket): the daemon runs in a mount
    // namespace of its own where /run/systemd is a directory of this test's, whose socket the
    // test reads. JOURNAL_STREAM names its stderr, as systemd sets it for StandardError=journal.
    let mut d = Daemon::new();
    let fake = d.dir.path().join("systemd");
    std::fs::create_dir_all(fake.join("journal")).unwrap();
    let journal = UnixDatagram::bind(fake.join("journal/socket")).unwrap();
    journal.set_read_timeout(Some(SEC)).unwrap();
    // Read as journald does, all along: a full socket queue blocks the sender.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = std::thread::spawn({
        let done = done.clone();
        move || {
            let mut entries = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = journal.recv(&mut buf) {
                    entries.push(journal_fields(&buf[..n]));
                }
            }
            entries
        }
    });
    std::fs::create_dir_all("/run/systemd").unwrap();
    let wrapper = d.dir.path().join("under-systemd");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec unshare -m --propagation private sh -c 'mount --bind \"$0\" /run/systemd && \
             JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) && export JOURNAL_STREAM && \
             exec \"$@\"' {} {RCD} \"$@\"\n",
            fake.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    d.binary = Some(wrapper);
    d.write_unit(
        "web",
        &format!("{}\n[network]\nmode = \"none\"\n", unit("exit 0", "")),
    );
    d.spawn();
    d.wait_state("web", "exited", 30 * SEC);

    d.terminate();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let entries: Vec<_> = reader
        .join()
        .unwrap()
        .into_iter()
        .filter(|e| !e.is_empty())
        .collect();
    let field = |e: &Vec<(String, String)>, k: &str| {
        e.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
    };
    assert!(
        entries
            .iter()
            .all(|e| field(e, "SYSLOG_IDENTIFIER").as_deref() == Some("rcd")
                && field(e, "PRIORITY").is_some()
                && field(e, "MESSAGE").is_some()),
        "{entries:#?}"
    );
    let about_web: Vec<_> = entries
        .iter()
        .filter(|e| field(e, "RCD_UNIT").as_deref() == Some("web"))
        .collect();
    assert!(
        about_web.len() >= 2,
        "lines about the unit carry RCD_UNIT=web: {entries:#?}"
    );
    // One destination: nothing of the daemon's went to stderr as well.
    let stderr = std::fs::read_to_string(d.dir.path().join("rcd.log")).unwrap();
    assert!(!stderr.contains("web"), "{stderr}");
}
