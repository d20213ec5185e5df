//! Processes killed or frozen under the daemon: a shim SIGKILLed, a container's process
//! SIGKILLed, the daemon SIGSTOPped for 30 s while containers exit. Each time the policies
//! apply as if nothing else had happened, and nothing is orphaned or doubled.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::*;
use crate::invariants::{settle_and_check, Want};

const SEC: Duration = Duration::from_secs(1);

fn quiet(script: &str, restart: &str) -> String {
    format!(
        "{}\n[restart]\n{restart}\n[network]\nmode = \"none\"\n",
        unit(script, "stop_signal = \"KILL\"")
    )
}

fn signal(pid: i64, s: Signal) {
    kill(Pid::from_raw(pid as i32), s).unwrap();
}

#[test]
fn a_killed_shim_or_container_process_is_handled_by_policy() {
    let mut d = Daemon::new();
    d.write_unit(
        "shim-always",
        &quiet("exec sleep 1000", "policy = \"always\""),
    );
    d.write_unit("shim-no", &quiet("exec sleep 1000", ""));
    d.write_unit(
        "proc-always",
        &quiet("exec sleep 1000", "policy = \"always\""),
    );
    d.write_unit("proc-no", &quiet("exec sleep 1000", ""));
    d.write_unit("bystander", &quiet("exec sleep 1000", ""));
    d.spawn();
    let mut pids = BTreeMap::new();
    for n in [
        "shim-always",
        "shim-no",
        "proc-always",
        "proc-no",
        "bystander",
    ] {
        pids.insert(n, pid_of(&d.wait_state(n, "running", 30 * SEC)));
    }
    let shim_of = |n: &str| {
        let id = d.status(n).unwrap()["container_id"]
            .as_str()
            .unwrap()
            .to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
            .find(|p| {
                let c = cmdline(*p);
                c.contains("rcd-shim") && c.contains(&format!("--id {id} "))
            })
            .expect("the unit's shim")
    };
    signal(shim_of("shim-always"), Signal::SIGKILL);
    signal(shim_of("shim-no"), Signal::SIGKILL);
    signal(pids["proc-always"], Signal::SIGKILL);
    signal(pids["proc-no"], Signal::SIGKILL);

    // A container whose shim died is not left unsupervised: killed, then its policy applies.
    let want = BTreeMap::from([
        ("shim-always".to_string(), Want::Running { net: false }),
        ("shim-no".to_string(), Want::Exited(137)),
        ("proc-always".to_string(), Want::Running { net: false }),
        ("proc-no".to_string(), Want::Exited(137)),
        ("bystander".to_string(), Want::Running { net: false }),
    ]);
    settle_and_check(&d, &want, 30 * SEC);
    assert!(!pid_alive(pids["shim-always"]) && !pid_alive(pids["shim-no"]));
    for n in ["shim-always", "proc-always"] {
        let s = d.status(n).unwrap();
        assert_ne!(pid_of(&s), pids[n], "{n}: a new process");
        assert_eq!(s["restarts"], 1, "{n}: {s:#}");
    }
    assert_eq!(pid_of(&d.status("bystander").unwrap()), pids["bystander"]);
}

#[test]
fn a_daemon_frozen_for_30s_while_containers_exit_catches_up() {
    let mut d = Daemon::new();
    for i in 0..3 {
        d.write_unit(
            &format!("once{i}"),
            &quiet(&format!("sleep 2; exit {}", 7 + i), ""),
        );
    }
    d.write_unit(
        "always",
        &quiet("sleep 2; exit 1", "policy = \"always\"\ndelay = \"100ms\""),
    );
    d.write_unit("steady", &quiet("exec sleep 1000", ""));
    d.spawn();
    let steady = pid_of(&d.wait_state("steady", "running", 30 * SEC));
    d.wait_state("always", "running", 30 * SEC);
    let daemon = d.child.as_ref().unwrap().id() as i64;
    signal(daemon, Signal::SIGSTOP);
    std::thread::sleep(30 * SEC);
    signal(daemon, Signal::SIGCONT);

    // The exits of those 30 s are recorded; `always` went on restarting.
    for i in 0..3 {
        let s = d.wait_state(&format!("once{i}"), "exited", 10 * SEC);
        assert_eq!(s["exit_code"], 7 + i, "{s:#}");
    }
    wait_until(20 * SEC, "the crashing unit restarted", || {
        d.status("always")
            .is_some_and(|s| s["restarts"].as_u64().is_some_and(|r| r >= 1))
    });
    assert_eq!(pid_of(&d.status("steady").unwrap()), steady);
    // Then settled as asked once the crashing one is made steady.
    d.write_unit("always", &quiet("exec sleep 1000", "policy = \"always\""));
    let want = BTreeMap::from([
        ("once0".to_string(), Want::Exited(7)),
        ("once1".to_string(), Want::Exited(8)),
        ("once2".to_string(), Want::Exited(9)),
        ("always".to_string(), Want::Running { net: false }),
        ("steady".to_string(), Want::Running { net: false }),
    ]);
    settle_and_check(&d, &want, 30 * SEC);
}

/// The live processes whose cgroup (any hierarchy) is container `id`'s.
fn in_cgroup_of(id: &str) -> Vec<i64> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cgroup")).is_ok_and(|c| {
                c.lines()
                    .any(|l| l.ends_with(&format!("/{id}")) || l.ends_with(&format!("/{id}.scope")))
            }) && pid_alive(*p)
        })
        .collect()
}

/// The cgroup directories of container `id` (the cgroupfs driver's `<tree>/rcd-<tag>/<id>`,
/// the systemd driver's `<tree>/rcd.slice/<id>.scope`), in the unified tree or any v1 one.
fn cgroup_dirs_of(id: &str) -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let trees = std::iter::once(root.to_path_buf()).chain(
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    let parent = id.rsplitn(3, '-').nth(2).unwrap_or_default().to_string();
    trees
        .flat_map(|t| {
            [
                t.join(&parent).join(id),
                t.join("rcd.slice").join(format!("{id}.scope")),
            ]
        })
        .filter(|d| d.is_dir())
        .collect()
}

/// Kills what a failed run of the test below leaves: processes nothing else would end.
struct Reap(String);

impl Drop for Reap {
    fn drop(&mut self) {
        for p in in_cgroup_of(&self.0) {
            let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
        }
        let deadline = std::time::Instant::now() + 5 * SEC;
        while !in_cgroup_of(&self.0).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for d in cgroup_dirs_of(&self.0) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn a_container_whose_records_are_gone_is_killed_at_daemon_start() {
    let mut d = Daemon::new();
    // A second process beside the container's init, as a real service would have.
    d.write_unit("lost", &quiet("sleep 1001 & exec sleep 1000", ""));
    d.write_unit("kept", &quiet("exec sleep 1000", ""));
    d.spawn();
    let lost = d.wait_state("lost", "running", 30 * SEC);
    let kept = pid_of(&d.wait_state("kept", "running", 30 * SEC));
    let (pid, id) = (
        pid_of(&lost),
        lost["container_id"].as_str().unwrap().to_string(),
    );
    let _reap = Reap(id.clone());
    assert_eq!(in_cgroup_of(&id).len(), 2, "init and its child");
    assert!(!cgroup_dirs_of(&id).is_empty());
    d.kill();

    // Its record, the runtime's record of its container and its unit file removed under it:
    // at the next start nothing names it but its shim and its cgroup.
    std::fs::remove_file(d.root.join("units").join("lost.json")).unwrap();
    std::fs::remove_dir_all(d.root.join("runc").join(&id)).unwrap();
    d.remove_unit("lost");
    d.spawn();

    // Nothing of it is left: no process, no cgroup; the rest as the unit files ask.
    wait_until(10 * SEC, "the container's init gone", || !pid_alive(pid));
    wait_until(10 * SEC, "no process left in its cgroup", || {
        in_cgroup_of(&id).is_empty()
    });
    assert_eq!(cgroup_dirs_of(&id), Vec::<std::path::PathBuf>::new());
    let want = BTreeMap::from([("kept".to_string(), Want::Running { net: false })]);
    settle_and_check(&d, &want, 30 * SEC);
    assert_eq!(
        pid_of(&d.status("kept").unwrap()),
        kept,
        "the other one untouched"
    );
}
