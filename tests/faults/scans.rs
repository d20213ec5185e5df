//! Scans that fail and events that are lost (faults injected, as a bug would make them): a
//! failed first scan stops the daemon with every container untouched; a later one changes
//! nothing and the reload that asked for it says so; scans never overlap; a lost event is
//! healed by the periodic look.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::invariants::{settle_and_check, Want};

const SEC: Duration = Duration::from_secs(1);

fn quiet() -> String {
    format!(
        "{}\n[network]\nmode = \"none\"\n",
        unit("exec sleep 1000", "stop_signal = \"KILL\"")
    )
}

/// A daemon whose injected faults are read from a file of the test's.
fn with_failpoints() -> (Daemon, std::path::PathBuf) {
    let mut d = Daemon::new();
    let file = d.dir.path().join("failpoints");
    std::fs::write(&file, "").unwrap();
    d.env
        .push(("RCD_FAILPOINTS".into(), file.display().to_string()));
    (d, file)
}

#[test]
fn a_first_scan_that_fails_stops_the_daemon_and_touches_nothing() {
    let (mut d, failpoints) = with_failpoints();
    d.write_unit("a", &quiet());
    d.write_unit("b", &quiet());
    d.spawn();
    let a = pid_of(&d.wait_state("a", "running", 30 * SEC));
    let b = pid_of(&d.wait_state("b", "running", 30 * SEC));
    d.kill();

    std::fs::write(&failpoints, "desired-read\n").unwrap();
    let mut child = d.command().spawn().unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > 30 * SEC {
            let _ = child.kill();
            panic!("the daemon kept running without its units:\n{}", d.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "a failed first scan is a failed start");
    let log = d.log();
    assert!(
        log.contains(
            "failed: failpoint desired-read: injected; stopping with every container as it is"
        ),
        "the log says why:\n{log}"
    );
    assert!(pid_alive(a) && pid_alive(b), "no container was touched");

    // Once the directory reads, everything is re-adopted as it was.
    std::fs::write(&failpoints, "").unwrap();
    d.spawn();
    assert_eq!(pid_of(&d.wait_state("a", "running", 10 * SEC)), a);
    assert_eq!(pid_of(&d.wait_state("b", "running", 10 * SEC)), b);
    let want = BTreeMap::from([
        ("a".to_string(), Want::Running { net: false }),
        ("b".to_string(), Want::Running { net: false }),
    ]);
    settle_and_check(&d, &want, 30 * SEC);
}

#[test]
fn a_later_scan_that_fails_keeps_the_units_as_last_read() {
    let (mut d, failpoints) = with_failpoints();
    d.write_unit("a", &quiet());
    d.write_unit("b", &quiet());
    d.spawn();
    let b = pid_of(&d.wait_state("b", "running", 30 * SEC));
    d.wait_state("a", "running", 30 * SEC);

    std::fs::write(&failpoints, "desired-read\n").unwrap();
    d.remove_unit("b");
    // The reload is answered once its scan is done: here, failed.
    let out = d.rctl(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a failed scan fails the reload");
    assert!(err.contains("failpoint desired-read"), "{err}");
    assert_eq!(pid_of(&d.status("b").unwrap()), b, "b still runs");
    assert!(
        !d.actions("1h", "b")
            .iter()
            .any(|(a, _)| a == "file-removed"),
        "no scan saw b's file gone"
    );

    // The next scan that reads applies what the directory says now.
    std::fs::write(&failpoints, "").unwrap();
    let out = d.rctl(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(30 * SEC, "b removed", || d.status("b").is_none());
    assert!(!pid_alive(b));
    let want = BTreeMap::from([("a".to_string(), Want::Running { net: false })]);
    settle_and_check(&d, &want, 30 * SEC);
}

/// Two reloads at once, the first reading an older version of a file slowly: what stays
/// applied is the newer version (all scans go through one owner, one at a time). The unit is
/// a symlink to a file elsewhere, whose changes the watcher does not see: only the reloads
/// read them.
#[test]
fn an_older_read_is_never_applied_after_a_newer_one() {
    let (mut d, failpoints) = with_failpoints();
    let target = d.dir.path().join("u-real.toml");
    let version = |v: &str| {
        std::fs::write(
            &target,
            format!("{}\n[unit]\ndescription = \"{v}\"\n", quiet()),
        )
        .unwrap();
    };
    version("v0");
    std::os::unix::fs::symlink(&target, d.units.join("u.toml")).unwrap();
    d.spawn();
    d.wait_state("u", "running", 30 * SEC);

    version("v1");
    std::fs::write(&failpoints, "desired-read sleep:1500 once\n").unwrap();
    let slow = d.rctl_command(&["reload"]).spawn().unwrap();
    wait_until(10 * SEC, "the slow read has read v1", || {
        std::fs::read_to_string(&failpoints).unwrap().is_empty()
    });
    version("v2");
    let fast = d.rctl(&["reload"]);
    assert!(fast.status.success());
    assert!(slow.wait_with_output().unwrap().status.success());
    assert_eq!(
        d.status("u").unwrap()["description"],
        "v2",
        "the file says v2:\n{}",
        d.log()
    );
}

/// An event lost (the poke of a container's exit, dropped here by an injected fault): the
/// periodic look at every unit sees the exit anyway and applies the policy.
#[test]
fn a_lost_exit_event_is_healed_by_the_periodic_look() {
    let (mut d, failpoints) = with_failpoints();
    d.args = vec!["--resync-interval".into(), "2s".into()];
    std::fs::write(&failpoints, "exit-poke\n").unwrap();
    d.write_unit(
        "brief",
        &format!(
            "{}\n[network]\nmode = \"none\"\n",
            unit("sleep 1; exit 3", "stop_signal = \"KILL\"")
        ),
    );
    d.spawn();
    d.wait_state("brief", "running", 30 * SEC);
    let s = d.wait_state("brief", "exited", 10 * SEC);
    assert_eq!(s["exit_code"], 3);
    assert!(
        d.log().contains("failpoint exit-poke: injected"),
        "the exit's own poke was lost:\n{}",
        d.log()
    );
}
