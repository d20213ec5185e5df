//! Daemon restarts: SIGKILL with containers running (adopted, never duplicated, not counted),
//! containers exiting while it is down, and operator holds across restarts per policy.

use std::time::Duration;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn sigkill_leaves_containers_running_and_restart_adopts_them() {
    let mut d = Daemon::start();
    for i in 0..3 {
        d.write_unit(
            &format!("svc{i}"),
            &unit("exec sleep 1000", "[restart]\npolicy = \"always\"\n"),
        );
    }
    let pids: Vec<i64> = (0..3)
        .map(|i| pid_of(&d.wait_state(&format!("svc{i}"), "running", 10 * SEC)))
        .collect();
    let mark = d.last_seq();
    d.kill();
    for &p in &pids {
        assert!(
            pid_alive(p),
            "container {p} must survive the daemon's SIGKILL"
        );
    }
    // The first reconcile of each in the next daemon is where a second copy would start.
    for i in 0..3 {
        d.arm_reconciled(&format!("svc{i}"));
    }
    d.spawn();
    for (i, &p) in pids.iter().enumerate() {
        let name = format!("svc{i}");
        d.wait_reconciled(&name, 10 * SEC);
        let s = d.status(&name).unwrap();
        assert_eq!(
            (&s["state"], pid_of(&s)),
            (&"running".into(), p),
            "adopted, same pid"
        );
        assert_eq!(s["restarts"], 0, "adoption is not a restart");
        // The file read again, nothing else: the container neither seen to exit (so it
        // outlived the daemon) nor started a second time.
        assert_eq!(d.actions_after(mark, &name), ["loaded"], "{name}");
    }
    assert_eq!(d.runtime_containers().len(), 3, "no second copy");
    let sleeps = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter(|p| cmdline(*p).starts_with("sleep 1000") && pids.contains(p))
        .count();
    assert_eq!(sleeps, 3);
    // The adopted containers are still supervised: an exit is seen and the policy applied.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let new = d.wait_new_pid("svc0", pids[0], 10 * SEC);
    assert_ne!(new, pids[0]);
    let s = d.status("svc0").unwrap();
    assert_eq!(s["restarts"], 1);
    assert_eq!(s["exit_code"], 137);
}

#[test]
fn exits_while_the_daemon_is_down_are_recorded_and_policies_applied() {
    let mut d = Daemon::start();
    let flag = d.dir.path().join("go");
    std::fs::create_dir(&flag).unwrap();
    // Each waits for a file the test creates while the daemon is down, then exits 7.
    let script = "while [ ! -e /flag/go ]; do sleep 0.05; done; exit 7";
    let extra = |p: &str| {
        format!(
            "[[mount]]\nsource = {:?}\ntarget = \"/flag\"\n[restart]\npolicy = \"{p}\"\ndelay = \"10ms\"\n",
            flag.display().to_string()
        )
    };
    d.write_unit("stay", &unit(script, &extra("no")));
    d.write_unit("again", &unit(script, &extra("on-failure")));
    let stay = pid_of(&d.wait_state("stay", "running", 10 * SEC));
    let again = pid_of(&d.wait_state("again", "running", 10 * SEC));
    d.kill();
    std::fs::write(flag.join("go"), "").unwrap();
    wait_until(5 * SEC, "containers exited", || {
        !pid_alive(again) && !pid_alive(stay)
    });
    std::fs::remove_file(flag.join("go")).unwrap();
    d.spawn();
    let s = d.wait_state("stay", "exited", 5 * SEC);
    assert_eq!(s["exit_code"], 7);
    let s = d.wait_state("again", "running", 5 * SEC);
    assert_eq!(s["exit_code"], 7);
    assert_eq!(s["restarts"], 1);
}

#[test]
fn rctl_stop_holds_across_daemon_restarts_per_policy() {
    let mut d = Daemon::start();
    for p in ["no", "on-failure", "always", "unless-stopped"] {
        d.write_unit(
            p,
            &unit("exec sleep 1000", &format!("[restart]\npolicy = \"{p}\"\n")),
        );
    }
    for p in ["no", "on-failure", "always", "unless-stopped"] {
        d.wait_state(p, "running", 10 * SEC);
        let out = d.rctl(&["stop", p]);
        assert!(out.status.success());
        d.wait_state(p, "stopped", 5 * SEC);
    }
    let held = ["no", "on-failure", "unless-stopped"];
    let mark = d.last_seq();
    d.terminate();
    // The first reconcile of each in the next daemon is where a hold could be lost.
    for p in held {
        d.arm_reconciled(p);
    }
    d.spawn();
    // `always` is held only until the next daemon start; the others stay held.
    d.wait_state("always", "running", 10 * SEC);
    for p in held {
        d.wait_reconciled(p, 10 * SEC);
        let s = d.status(p).unwrap();
        assert_eq!(s["state"], "stopped", "{p}: {s:#}");
        assert_eq!(s["held"], true);
        assert_eq!(d.actions_after(mark, p), ["loaded"], "{p}");
    }
    // And a second restart keeps them held.
    let mark = d.last_seq();
    d.kill();
    for p in held {
        d.arm_reconciled(p);
    }
    d.spawn();
    for p in held {
        d.wait_reconciled(p, 10 * SEC);
        let s = d.status(p).unwrap();
        assert_eq!((&s["state"], &s["held"]), (&"stopped".into(), &true.into()));
        assert_eq!(d.actions_after(mark, p), ["loaded"], "{p}");
    }
    let out = d.rctl(&["start", "unless-stopped"]);
    assert!(out.status.success());
    d.wait_state("unless-stopped", "running", 5 * SEC);
}

#[test]
fn unit_removed_while_daemon_down_is_removed_at_start() {
    let mut d = Daemon::start();
    d.write_unit("gone", &unit("exec sleep 1000", ""));
    let pid = pid_of(&d.wait_state("gone", "running", 10 * SEC));
    d.kill();
    d.remove_unit("gone");
    d.spawn();
    wait_until(10 * SEC, "unit removed", || d.status("gone").is_none());
    assert!(!pid_alive(pid));
    assert!(d.runtime_containers().is_empty());
    wait_until(5 * SEC, "mounts gone", || d.mounts().is_empty());
}

#[test]
fn a_killed_shim_does_not_leave_its_container_unsupervised() {
    let d = Daemon::start();
    d.write_unit(
        "orphan",
        &unit(
            "exec sleep 1000",
            "[restart]\npolicy = \"always\"\ndelay = \"10ms\"\n",
        ),
    );
    let s = d.wait_state("orphan", "running", 10 * SEC);
    let pid = pid_of(&s);
    let v: serde_json::Value =
        serde_json::from_slice(&d.rctl(&["inspect", "orphan"]).stdout).unwrap();
    let shim = v["record"]["shim_pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let new = d.wait_new_pid("orphan", pid, 10 * SEC);
    assert!(!pid_alive(pid), "the old container was killed");
    assert!(pid_alive(new));
    assert_eq!(d.runtime_containers().len(), 1);
}

/// Processes `sleep 1000` in the cgroup of a container of unit `name`.
fn sleepers_of(name: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter(|p| cmdline(*p).starts_with("sleep 1000"))
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                .is_ok_and(|c| c.contains(&format!("-{name}-")))
        })
        .count()
}

#[test]
fn a_daemon_killed_mid_start_leaves_no_orphan_and_starts_once() {
    let mut d = Daemon::new();
    // A runtime whose `run` (the shim's one call) says it began, then waits for the test's go:
    // while it waits the daemon is inside the start, waiting for the shim's report.
    let gate = d.dir.path().join("gate");
    std::fs::create_dir(&gate).unwrap();
    let slow = d.dir.path().join("slow-runc");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do id=$a; done\n\
             for a in \"$@\"; do\n  [ \"$a\" = run ] || continue\n  echo $$ > {g}/began-$id\n  \
             while [ ! -e {g}/go-$id ]; do sleep 0.02; done\n  break\ndone\nexec runc \"$@\"\n",
            g = gate.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    d.runtime = Some(slow);
    d.spawn();
    // `late`'s start is let through once the daemon is dead, so recovery finds its container
    // running under a shim; `stuck`'s runtime call still waits when the daemon comes back.
    d.write_unit("late", &unit("exec sleep 1000", ""));
    d.write_unit("stuck", &unit("exec sleep 1000", ""));
    let began = |id: &str| gate.join(format!("began-{id}"));
    let mut old = std::collections::BTreeMap::new();
    for name in ["late", "stuck"] {
        let s = d.wait_state(name, "starting", 10 * SEC);
        let id = s["container_id"].as_str().unwrap().to_string();
        wait_until(10 * SEC, &format!("{name}'s runtime call began"), || {
            began(&id).exists()
        });
        assert_eq!(d.status(name).unwrap()["state"], "starting");
        old.insert(name, id);
    }
    let mark = d.last_seq();
    d.kill();

    std::fs::write(gate.join(format!("go-{}", old["late"])), "").unwrap();
    wait_until(10 * SEC, "late's orphan container runs", || {
        sleepers_of("late") == 1
    });
    let stuck_call: i64 = std::fs::read_to_string(began(&old["stuck"]))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(stuck_call));

    d.runtime = None;
    // The first reconcile of each in the next daemon starts it; a second copy would start
    // there or in a later one.
    for name in ["late", "stuck"] {
        d.arm_reconciled(name);
    }
    d.spawn();
    // Recovery ended the interrupted start's runtime call with its shim, before it could
    // create a container nobody would own.
    wait_until(10 * SEC, "stuck's runtime call killed", || {
        !pid_alive(stuck_call)
    });
    let mut new = std::collections::BTreeMap::new();
    for name in ["late", "stuck"] {
        d.wait_reconciled(name, 10 * SEC);
        let s = d.wait_state(name, "running", 10 * SEC);
        // A later look: nothing to do.
        d.look_again(name);
        assert_eq!(d.status(name).unwrap()["pid"], s["pid"], "started once");
        // Started once, in a new instance: nothing of the interrupted start was counted,
        // nothing started twice.
        assert_eq!(
            d.actions_after(mark, name),
            ["loaded", "create", "start", "changed"],
            "{name}"
        );
        let id = s["container_id"].as_str().unwrap().to_string();
        assert_ne!(id, old[name]);
        assert_eq!(
            sleepers_of(name),
            1,
            "exactly one container process of {name}"
        );
        new.insert(name, id);
    }
    let mut runtime = d.runtime_containers();
    runtime.sort();
    assert_eq!(runtime, new.values().cloned().collect::<Vec<_>>());
    // Nothing of the interrupted instances is left: their directories, and of the mounts
    // only the new instances' rootfs and network namespace, once each.
    let mut dirs: Vec<String> = std::fs::read_dir(d.root.join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs, runtime);
    let mut mounts = d.mounts();
    mounts.sort();
    let mut want: Vec<String> = new
        .values()
        .flat_map(|id| {
            [
                d.root.join("containers").join(id).join("bundle/rootfs"),
                d.root.join("netns").join(id),
            ]
        })
        .map(|p| p.display().to_string())
        .collect();
    want.sort();
    assert_eq!(mounts, want);
}

#[test]
fn a_units_directory_missing_at_daemon_start_removes_nothing() {
    let mut d = Daemon::start();
    d.write_unit("kept", &unit("exec sleep 1000", ""));
    let pid = pid_of(&d.wait_state("kept", "running", 10 * SEC));
    let mark = d.last_seq();
    d.kill();
    let aside = d.dir.path().join("units.aside");
    std::fs::rename(&d.units, &aside).unwrap();
    // The first reconcile of `kept` in the next daemon is where it would be removed.
    d.arm_reconciled("kept");
    d.spawn();
    d.wait_reconciled("kept", 10 * SEC);
    let s = d.status("kept").expect("kept removed");
    assert_eq!(pid_of(&s), pid, "adopted, not removed");
    assert_eq!(d.actions_after(mark, "kept"), Vec::<String>::new());
    assert!(String::from_utf8_lossy(&d.rctl(&["list"]).stderr).contains("does not exist"));
    // Back in place: read again, and nothing else changes either.
    std::fs::rename(&aside, &d.units).unwrap();
    assert!(d.rctl(&["reload"]).status.success());
    d.look_again("kept");
    assert_eq!(pid_of(&d.status("kept").unwrap()), pid);
    assert_eq!(d.actions_after(mark, "kept"), ["loaded", "changed"]);
}
