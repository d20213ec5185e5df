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
