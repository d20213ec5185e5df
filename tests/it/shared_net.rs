//! `mode = "container:<unit>"`: a unit's container in another unit's network namespace. It
//! waits for that unit to run, shares its localhost, `/etc/hosts`, `/etc/resolv.conf` and
//! hostname, and follows it into a new namespace when that container is recreated (or, for a
//! target without a pinned namespace, restarted); a daemon restart changes nothing.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

/// The inode of process `pid`'s network namespace; the process must exist.
fn netns_ino(pid: i64) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .map(|m| m.ino())
        .unwrap_or_else(|e| panic!("netns of {pid}: {e}"))
}

/// A file as process `pid` sees it; the process and the file must exist.
fn file_in(pid: i64, path: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/root{path}"))
        .unwrap_or_else(|e| panic!("{path} of {pid}: {e}"))
}

fn sigkill(pid: i64) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// A web server listening on the loopback of its namespace only.
fn web(mode: &str, env: &str) -> String {
    format!(
        "[container]\nrootfs = \"{}\"\ncommand = [\"sh\", \"-c\", \"mkdir -p /www && echo hello-localhost > /www/index.html && exec httpd -f -p 127.0.0.1:80 -h /www\"]\nstop_signal = \"KILL\"\nenv = {{ V = \"{env}\" }}\n\n[network]\nmode = \"{mode}\"\n\n[restart]\npolicy = \"always\"\ndelay = \"100ms\"\n",
        rootfs().display()
    )
}

/// Fetches from 127.0.0.1:80 (bounded: 50 tries), says so, then stays.
fn client(target: &str) -> String {
    format!(
        "[container]\nrootfs = \"{}\"\ncommand = [\"sh\", \"-c\", \"for i in $(seq 50); do wget -qO- http://127.0.0.1/ 2>/dev/null | grep -q hello-localhost && echo reached-localhost && break; sleep 0.2; done; exec sleep 1000\"]\nstop_signal = \"KILL\"\n\n[network]\nmode = \"container:{target}\"\n",
        rootfs().display()
    )
}

fn reached(d: &Daemon, unit: &str) -> usize {
    String::from_utf8_lossy(&d.rctl(&["logs", unit]).stdout)
        .matches("reached-localhost")
        .count()
}

#[test]
fn a_container_unit_waits_for_its_target_shares_its_localhost_and_follows_its_recreation() {
    let mut d = Daemon::start();
    // First the joiner: its target does not exist yet.
    d.write_unit("app", &client("web"));
    let s = d.wait_state("app", "waiting", 10 * SEC);
    assert_eq!(s["waiting_for"], "unit web, which does not exist", "{s:#}");
    let text = String::from_utf8_lossy(&d.rctl(&["status", "app"]).stdout).to_string();
    assert!(
        text.contains("Waiting: for unit web, which does not exist"),
        "{text}"
    );

    // The target appears (bridge mode): the joiner starts after it, in its namespace.
    d.write_unit("web", &web("bridge", "1"));
    let w = d.wait_state("web", "running", 20 * SEC);
    let a = d.wait_state("app", "running", 20 * SEC);
    let (web_pid, app_pid) = (pid_of(&w), pid_of(&a));
    assert_eq!(netns_ino(app_pid), netns_ino(web_pid));
    wait_until(15 * SEC, "app reached web on 127.0.0.1", || {
        reached(&d, "app") == 1
    });
    // Web's files and hostname, not its own.
    for f in ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"] {
        assert_eq!(file_in(app_pid, f), file_in(web_pid, f), "{f}");
    }
    assert_eq!(file_in(app_pid, "/etc/hostname"), "web\n");
    assert_eq!(a["shares_network_of"], "web", "{a:#}");
    assert_eq!(a["network"], w["network"], "app shows web's addresses");
    let text = String::from_utf8_lossy(&d.rctl(&["status", "app"]).stdout).to_string();
    assert!(
        text.contains("Network: shares unit web's (container:web)"),
        "{text}"
    );

    // Web's process dies and its policy restarts it in the same instance, which keeps its
    // pinned namespace: app keeps running as it is.
    let mark = d.last_seq();
    sigkill(web_pid);
    let web_pid2 = d.wait_new_pid("web", web_pid, 20 * SEC);
    assert_eq!(netns_ino(web_pid2), netns_ino(app_pid));
    // Web's new state made app be looked at again; once it has been since: untouched.
    d.look_again("app");
    assert_eq!(pid_of(&d.status("app").unwrap()), app_pid);
    assert_eq!(d.actions_after(mark, "app"), ["changed"]);

    // A daemon crash and restart changes nothing either: the first reconcile of each in the
    // next daemon leaves both as they run.
    let mark = d.last_seq();
    d.kill();
    d.arm_reconciled("app");
    d.arm_reconciled("web");
    d.spawn();
    for (name, pid) in [("app", app_pid), ("web", web_pid2)] {
        d.wait_reconciled(name, 10 * SEC);
        let s = d.status(name).unwrap();
        assert_eq!(
            (&s["state"], pid_of(&s)),
            (&"running".into(), pid),
            "{name}"
        );
        assert_eq!(d.actions_after(mark, name), ["loaded"], "{name}");
    }

    // Web recreated (a new spec): a new namespace, and app follows it there, not counted as
    // a restart.
    d.write_unit("web", &web("bridge", "2"));
    let web_pid3 = d.wait_new_pid("web", web_pid2, 20 * SEC);
    let app_pid2 = d.wait_new_pid("app", app_pid, 20 * SEC);
    assert_eq!(netns_ino(app_pid2), netns_ino(web_pid3));
    wait_until(15 * SEC, "app reached the new web on 127.0.0.1", || {
        reached(&d, "app") == 2
    });
    let a = d.status("app").unwrap();
    assert_eq!(a["restarts"], 0, "{a:#}");

    // Web removed: app keeps running (with only its loopback left), as after `docker rm -f`
    // of the target; a new web would take it along again.
    let mark = d.last_seq();
    d.remove_unit("web");
    wait_until(15 * SEC, "web gone", || d.status("web").is_none());
    d.look_again("app");
    assert_eq!(pid_of(&d.status("app").unwrap()), app_pid2);
    assert_eq!(d.actions_after(mark, "app"), ["changed"]);
    d.remove_unit("app");
    wait_until(15 * SEC, "everything taken down", || {
        d.statuses().is_empty()
            && std::fs::read_dir(d.root.join("netns")).map_or(0, |r| r.count()) == 0
    });
}

#[test]
fn a_container_unit_follows_a_target_without_a_pinned_namespace_through_its_restarts() {
    let d = Daemon::start();
    d.write_unit("web", &web("none", "1"));
    d.write_unit("app", &client("web"));
    let w = d.wait_state("web", "running", 20 * SEC);
    let a = d.wait_state("app", "running", 20 * SEC);
    assert_eq!(netns_ino(pid_of(&a)), netns_ino(pid_of(&w)));
    wait_until(15 * SEC, "app reached web on 127.0.0.1", || {
        reached(&d, "app") == 1
    });
    // Web's namespace was the runtime's: it dies with web's process, so app follows, after
    // a restart by web's policy as after an operator's restart; neither counts for app.
    sigkill(pid_of(&w));
    let web_pid = d.wait_new_pid("web", pid_of(&w), 20 * SEC);
    let app_pid = d.wait_new_pid("app", pid_of(&a), 20 * SEC);
    assert_eq!(netns_ino(app_pid), netns_ino(web_pid));
    wait_until(15 * SEC, "app reached the restarted web", || {
        reached(&d, "app") == 2
    });
    assert!(d.rctl(&["restart", "web"]).status.success());
    let web_pid2 = d.wait_new_pid("web", web_pid, 20 * SEC);
    let app_pid2 = d.wait_new_pid("app", app_pid, 20 * SEC);
    assert_eq!(netns_ino(app_pid2), netns_ino(web_pid2));
    wait_until(15 * SEC, "app reached web again", || {
        reached(&d, "app") == 3
    });
    assert_eq!(d.status("app").unwrap()["restarts"], 0);
}

#[test]
fn a_chain_of_container_units_follows_its_end_through_stop_start_and_recreation() {
    let d = Daemon::start();
    // c joins b, which joins a; b and c run under policy `no`, so a failed join would stay.
    d.write_unit("a", &web("bridge", "1"));
    d.write_unit("b", &client("a"));
    d.write_unit("c", &client("b"));
    let pids = |d: &Daemon| -> Vec<i64> {
        ["a", "b", "c"]
            .iter()
            .map(|n| pid_of(&d.wait_state(n, "running", 20 * SEC)))
            .collect()
    };
    let one_namespace = |p: &[i64]| {
        let a = netns_ino(p[0]);
        assert!(p.iter().all(|&x| netns_ino(x) == a), "{p:?}");
    };
    let first = pids(&d);
    one_namespace(&first);
    assert_eq!(file_in(first[2], "/etc/hostname"), "a\n");
    // a stopped and started: its namespace is new, and both follow it, b then c.
    assert!(d.rctl(&["stop", "a"]).status.success());
    d.wait_state("a", "stopped", 10 * SEC);
    assert!(d.rctl(&["start", "a"]).status.success());
    let a2 = d.wait_new_pid("a", first[0], 20 * SEC);
    let b2 = d.wait_new_pid("b", first[1], 20 * SEC);
    let c2 = d.wait_new_pid("c", first[2], 20 * SEC);
    one_namespace(&[a2, b2, c2]);
    wait_until(15 * SEC, "c reached a through the chain", || {
        reached(&d, "c") == 2
    });
    // a recreated: the same again.
    d.write_unit("a", &web("bridge", "2"));
    let a3 = d.wait_new_pid("a", a2, 20 * SEC);
    let b3 = d.wait_new_pid("b", b2, 20 * SEC);
    let c3 = d.wait_new_pid("c", c2, 20 * SEC);
    one_namespace(&[a3, b3, c3]);
    for n in ["b", "c"] {
        let s = d.status(n).unwrap();
        assert_eq!(
            (&s["state"], &s["restarts"]),
            (&"running".into(), &0.into()),
            "{s:#}"
        );
    }
}

#[test]
fn container_units_in_a_circle_say_so_and_wait() {
    let d = Daemon::start();
    d.write_unit("a", &client("b"));
    d.write_unit("b", &client("a"));
    for (unit, other) in [("a", "b"), ("b", "a")] {
        wait_until(10 * SEC, "the cycle reported", || {
            d.status(unit).is_some_and(|s| {
                s["waiting_for"] == format!("a cycle to be broken: {unit} -> {other} -> {unit}")
            })
        });
        // With its place in the file: `mode = "container:..."` on line 7, its value at column 8.
        let s = d.status(unit).unwrap();
        assert_eq!(
            s["error"],
            format!(
                "{}:7:8: unit {unit}: network mode container:{other} forms a cycle: {unit} -> {other} -> {unit}",
                d.units.join(format!("{unit}.toml")).display()
            ),
            "{s:#}"
        );
    }
    // Broken by making b a network of its own: both run.
    d.write_unit("b", &web("bridge", "1"));
    d.wait_state("b", "running", 20 * SEC);
    d.wait_state("a", "running", 20 * SEC);
}

#[test]
fn a_host_unit_has_the_hosts_network_and_copies_of_its_hosts_and_resolv_conf() {
    let d = Daemon::start();
    d.write_unit(
        "h",
        &unit("exec sleep 1000", "[network]\nmode = \"host\"\n"),
    );
    let s = d.wait_state("h", "running", 20 * SEC);
    let pid = pid_of(&s);
    assert_eq!(netns_ino(pid), netns_ino(std::process::id() as i64));
    for f in ["/etc/hosts", "/etc/resolv.conf"] {
        assert_eq!(
            file_in(pid, f),
            std::fs::read_to_string(f).unwrap_or_default(),
            "{f}"
        );
    }
    // A joiner of a host unit is on the host's network too, with the same files.
    d.write_unit("j", &client("h"));
    let j = pid_of(&d.wait_state("j", "running", 20 * SEC));
    assert_eq!(netns_ino(j), netns_ino(pid));
    assert_eq!(file_in(j, "/etc/hosts"), file_in(pid, "/etc/hosts"));
}
