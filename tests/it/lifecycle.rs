//! A unit's life: file dropped → running; edited → recreated; comment edit → untouched;
//! deleted → gone; what the container sees; rctl start/stop/restart/logs/inspect.

use std::time::Duration;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn drop_edit_comment_delete() {
    let d = Daemon::start();
    d.write_unit("web", &unit("echo started; exec sleep 1000", ""));
    let s = d.wait_state("web", "running", 10 * SEC);
    let pid = pid_of(&s);
    assert!(pid_alive(pid));
    assert!(
        cmdline(pid).contains("sleep 1000"),
        "pid {pid} is {}",
        cmdline(pid)
    );
    assert_eq!(d.runtime_containers().len(), 1);

    // A comment and key order change: same spec hash, same process. Once the scan that read
    // it is applied (the reload's) and web has been looked at since: nothing happened to it.
    let hash = s["spec_hash"].clone();
    let mark = d.last_seq();
    d.write_unit(
        "web",
        &format!("# a comment\n{}", unit("echo started; exec sleep 1000", "")),
    );
    assert!(d.rctl(&["reload"]).status.success());
    assert_eq!(d.actions_after(mark, "web"), Vec::<String>::new());
    d.look_again("web");
    let s = d.status("web").unwrap();
    assert_eq!(
        s["pid"].as_i64(),
        Some(pid),
        "comment edit must not restart"
    );
    assert_eq!(s["spec_hash"], hash);
    assert_eq!(d.actions_after(mark, "web"), ["changed"]);

    // A real change: new container, new pid, old one gone; the one recreation since the
    // comment edit (after the look's `changed`).
    d.write_unit("web", &unit("echo v2; exec sleep 1001", ""));
    let new = d.wait_new_pid("web", pid, 10 * SEC);
    wait_until(5 * SEC, "the recreation's events", || {
        d.actions_after(mark, "web") == ["changed", "changed", "stopped", "create", "start"]
    });
    assert!(cmdline(new).contains("sleep 1001"));
    wait_until(5 * SEC, "old process gone", || !pid_alive(pid));
    assert_eq!(d.runtime_containers().len(), 1, "no duplicate container");

    // Delete: process, runtime container and mounts gone; the unit is no longer listed.
    d.remove_unit("web");
    wait_until(10 * SEC, "unit gone", || d.status("web").is_none());
    assert!(!pid_alive(new));
    assert!(
        d.runtime_containers().is_empty(),
        "{:?}",
        d.runtime_containers()
    );
    // The writable layer is unmounted and removed in the background.
    wait_until(5 * SEC, "mounts and instance directories gone", || {
        d.mounts().is_empty()
            && std::fs::read_dir(d.root.join("containers"))
                .unwrap()
                .next()
                .is_none()
    });
    // Its logs are kept.
    let log = std::fs::read_to_string(d.root.join("logs/web.log")).unwrap();
    assert!(log.contains("started") && log.contains("v2"), "{log}");
}

#[test]
fn container_sees_safe_defaults_and_its_own_layer() {
    let d = Daemon::start();
    let data = d.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("hello"), "from host").unwrap();
    let script = "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; \
                  echo keys-mounts=$(grep -c ' /proc/keys ' /proc/self/mountinfo); \
                  echo keys-bytes=$(cat /proc/keys | wc -c); \
                  echo x > /dev/null && echo devnull-ok; \
                  echo x > /proc/sys/kernel/hostname 2>&1 || echo proc-sys-ro; \
                  hostname; echo GREETING=$GREETING; id; pwd; cat /data/hello; echo; \
                  touch /data/nope 2>/dev/null || echo data-ro; \
                  echo layer > /etc/written; ls /dev; echo END; exec sleep 1000";
    let extra = format!(
        "env = {{ GREETING = \"hi\" }}\nhostname = \"box\"\nworkdir = \"/tmp\"\nuser = \"0:0\"\n\
         [[mount]]\nsource = {:?}\ntarget = \"/data\"\nreadonly = true\n\
         [resources]\nmemory = \"64M\"\ncpus = 0.5\npids = 64\n",
        data.display().to_string()
    );
    d.write_unit("probe", &unit(script, &extra));
    let s = d.wait_state("probe", "running", 10 * SEC);
    wait_until(5 * SEC, "probe output", || {
        String::from_utf8_lossy(&d.rctl(&["logs", "probe"]).stdout).contains("END")
    });
    let out = String::from_utf8_lossy(&d.rctl(&["logs", "probe"]).stdout).to_string();
    // Docker's default capability set: 0x00000000a80425fb.
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(
        out.contains("keys-mounts=1\n") && out.contains("keys-bytes=0\n"),
        "/proc/keys must be masked: {out}"
    );
    assert!(out.contains("devnull-ok"), "{out}");
    assert!(out.contains("proc-sys-ro"), "{out}");
    assert!(
        out.contains("box\n") && out.contains("GREETING=hi"),
        "{out}"
    );
    assert!(
        out.contains("uid=0(root) gid=0(root)") && out.contains("/tmp\n"),
        "{out}"
    );
    assert!(
        out.contains("from host") && out.contains("data-ro"),
        "{out}"
    );
    // The rootfs is the read-only lower layer: the write went to the container's upper layer.
    assert!(!rootfs().join("etc/written").exists());
    let id = s["container_id"].as_str().unwrap();
    assert!(d
        .root
        .join("containers")
        .join(id)
        .join("upper/etc/written")
        .exists());
    // cgroup limits applied (cgroup v1 or v2 paths).
    let pid = pid_of(&s);
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.contains(id), "cgroup path names the container: {cg}");
    assert!(std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .contains("NSpid"));
}

#[test]
fn two_units_share_a_rootfs() {
    let d = Daemon::start();
    d.write_unit("a", &unit("echo a > /shared; exec sleep 1000", ""));
    d.write_unit(
        "b",
        &unit("sleep 0.3; cat /shared 2>&1; exec sleep 1000", ""),
    );
    let a = d.wait_state("a", "running", 10 * SEC);
    let b = d.wait_state("b", "running", 10 * SEC);
    assert_ne!(a["pid"], b["pid"]);
    wait_until(5 * SEC, "b's output", || {
        String::from_utf8_lossy(&d.rctl(&["logs", "b"]).stdout).contains("No such file")
    });
}

#[test]
fn autostart_false_then_operator_verbs() {
    let d = Daemon::start();
    // Its first reconcile is where it would start.
    d.arm_reconciled("lazy");
    d.write_unit(
        "lazy",
        &unit("echo up; exec sleep 1000", "[install]\nautostart = false\n"),
    );
    d.wait_reconciled("lazy", 10 * SEC);
    let s = d.status("lazy").unwrap();
    assert_eq!(s["state"], "pending", "{s:#}");
    assert!(s["pid"].is_null());
    assert_eq!(d.actions_after(0, "lazy"), ["loaded"]);

    let out = d.rctl(&["start", "lazy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = pid_of(&d.wait_state("lazy", "running", 5 * SEC));

    let out = d.rctl(&["restart", "lazy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid2 = d.wait_new_pid("lazy", pid, 10 * SEC);
    assert!(!pid_alive(pid));

    let out = d.rctl(&["stop", "lazy"]);
    assert!(out.status.success());
    let s = d.wait_state("lazy", "stopped", 5 * SEC);
    assert_eq!(s["held"], true);
    assert!(!pid_alive(pid2));
    assert!(d.runtime_containers().is_empty());
    assert!(d.mounts().is_empty());

    // Logs of both runs, with --tail.
    let out = d.rctl(&["logs", "lazy"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "up\nup\n");
    let out = d.rctl(&["logs", "lazy", "--tail", "1", "--timestamps"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.ends_with(" stdout up\n") && text.lines().count() == 1,
        "{text}"
    );

    // inspect shows the unit, the record and the bundle.
    let out = d.rctl(&["inspect", "lazy"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["unit"]["name"], "lazy");
    assert!(v["bundle"].as_str().unwrap().ends_with("/bundle"));
    assert_eq!(v["record"]["hold"], true);
}

#[test]
fn rctl_errors_have_documented_exit_codes() {
    let d = Daemon::start();
    let out = d.rctl(&["status", "nope"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not loaded"));
    let out = d.rctl(&["start", "nope"]);
    assert_eq!(out.status.code(), Some(4));
    let out = std::process::Command::new(RCTL)
        .args(["--socket", "/nonexistent/rcd.sock", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the daemon running"));
    let out = std::process::Command::new(RCTL)
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Exit codes:"));
}

#[test]
fn follow_logs_across_a_restart() {
    let d = Daemon::start();
    d.write_unit(
        "ticker",
        &unit(
            "echo tick-$$; sleep 0.5; exit 1",
            "[restart]\npolicy = \"always\"\ndelay = \"0s\"\n",
        ),
    );
    d.wait_state("ticker", "running", 10 * SEC);
    let mut child = std::process::Command::new(RCTL)
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "logs",
            "-f",
            "ticker",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(4000));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.matches("tick-").count() >= 3, "follow saw: {text}");
}

#[test]
fn stop_signal_then_sigkill_after_the_timeout() {
    let d = Daemon::start();
    // Handles its stop signal (SIGUSR1 here) and exits 0 at once.
    d.write_unit(
        "polite",
        &unit(
            "trap 'echo got-usr1; exit 0' USR1; while true; do sleep 0.05; done",
            "stop_signal = \"SIGUSR1\"\n",
        )
        .replace("stop_timeout = \"2s\"", "stop_timeout = \"30s\""),
    );
    // Ignores SIGTERM: killed after its 1 s stop timeout.
    d.write_unit(
        "stubborn",
        &unit("trap '' TERM; while true; do sleep 0.05; done", "")
            .replace("stop_timeout = \"2s\"", "stop_timeout = \"1s\""),
    );
    d.wait_state("polite", "running", 10 * SEC);
    d.wait_state("stubborn", "running", 10 * SEC);

    let t = std::time::Instant::now();
    assert!(d.rctl(&["stop", "polite"]).status.success());
    assert!(
        t.elapsed() < 5 * SEC,
        "the stop signal ended it: {:?}",
        t.elapsed()
    );
    let s = d.status("polite").unwrap();
    assert_eq!(s["state"], "stopped");
    assert_eq!(s["exit_code"], 0);
    assert!(String::from_utf8_lossy(&d.rctl(&["logs", "polite"]).stdout).contains("got-usr1"));

    let t = std::time::Instant::now();
    assert!(d.rctl(&["stop", "stubborn"]).status.success());
    let took = t.elapsed();
    assert!(took >= SEC && took < 5 * SEC, "SIGKILL after 1 s: {took:?}");
    assert_eq!(d.status("stubborn").unwrap()["exit_code"], 137);
}

/// The API waits for a request to be applied only so long (`--intent-timeout`): past it the
/// client gets an error that says the request stands, and the daemon still applies it.
#[test]
fn a_request_not_applied_in_time_is_an_error_and_still_stands() {
    let mut d = Daemon::new();
    d.args = vec!["--intent-timeout".into(), "1s".into()];
    d.spawn();
    d.write_unit(
        "slow",
        &unit("trap '' TERM; while true; do sleep 0.05; done", "")
            .replace("stop_timeout = \"2s\"", "stop_timeout = \"4s\""),
    );
    d.wait_state("slow", "running", 10 * SEC);
    let t = std::time::Instant::now();
    let out = d.rctl(&["stop", "slow"]);
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "answered before the stop was done");
    assert!(
        err.contains("not done within 1s") && err.contains("stands"),
        "{err}"
    );
    assert!(took < 3 * SEC, "answered at the deadline: {took:?}");
    let s = d.wait_state("slow", "stopped", 10 * SEC);
    assert_eq!(s["exit_code"], 137, "stopped by the SIGKILL after its 4 s");
    assert_eq!(s["held"], true);
}

#[test]
fn resource_limits_reach_the_cgroup() {
    let d = Daemon::start();
    d.write_unit(
        "limited",
        &unit(
            "exec sleep 1000",
            "[resources]\nmemory = \"64M\"\ncpus = 0.5\npids = 64\n",
        ),
    );
    let pid = pid_of(&d.wait_state("limited", "running", 10 * SEC));
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path_of = |ctrl: &str| -> Option<String> {
        cgroups.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls
                .split(',')
                .any(|c| c == ctrl)
                .then(|| path.to_string())
        })
    };
    let read = |p: String| std::fs::read_to_string(p).unwrap().trim().to_string();
    if let Some(p) = path_of("memory") {
        // cgroup v1 (these machines): one hierarchy per controller.
        assert_eq!(
            read(format!("/sys/fs/cgroup/memory{p}/memory.limit_in_bytes")),
            "67108864"
        );
        let cpu = path_of("cpu").unwrap();
        let quota = ["cpu", "cpu,cpuacct"]
            .iter()
            .map(|h| format!("/sys/fs/cgroup/{h}{cpu}/cpu.cfs_quota_us"))
            .find(|p| std::path::Path::new(p).exists())
            .unwrap();
        assert_eq!(read(quota), "50000");
        let pids = path_of("pids").unwrap();
        assert_eq!(read(format!("/sys/fs/cgroup/pids{pids}/pids.max")), "64");
    } else {
        // cgroup v2.
        let p = path_of("").unwrap();
        assert_eq!(read(format!("/sys/fs/cgroup{p}/memory.max")), "67108864");
        assert_eq!(read(format!("/sys/fs/cgroup{p}/cpu.max")), "50000 100000");
        assert_eq!(read(format!("/sys/fs/cgroup{p}/pids.max")), "64");
    }
}

#[test]
fn reload_rescans_and_status_reads_like_systemctl() {
    let d = Daemon::start();
    d.write_unit(
        "shown",
        &unit(
            "echo hello-status; exec sleep 1000",
            "[restart]\npolicy = \"always\"\n",
        )
        .replace(
            "[container]",
            "[unit]\ndescription = \"Shown in status\"\n[container]",
        ),
    );
    let s = d.wait_state("shown", "running", 10 * SEC);
    let out = d.rctl(&["reload"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no changes\n");
    wait_until(5 * SEC, "log line", || {
        String::from_utf8_lossy(&d.rctl(&["logs", "shown"]).stdout).contains("hello-status")
    });
    let text = String::from_utf8_lossy(&d.rctl(&["status", "shown"]).stdout).to_string();
    for want in [
        "● shown - Shown in status",
        "State: running since",
        &format!("Pid: {}", pid_of(&s)),
        "Restarts: 0",
        "Policy: always",
        "File: ",
        "stdout hello-status",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let list = String::from_utf8_lossy(&d.rctl(&["list"]).stdout).to_string();
    assert!(
        list.starts_with("UNIT") && list.contains("shown") && list.contains("running"),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&d.rctl(&["list", "--output", "json"]).stdout).unwrap();
    for key in [
        "name",
        "state",
        "pid",
        "restarts",
        "exit_code",
        "error",
        "spec_hash",
        "started_at",
        "file",
    ] {
        assert!(json[0].get(key).is_some(), "{key} missing from {json:#}");
    }
}
