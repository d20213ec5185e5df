//! Signals and processes of a running container: `rctl kill` (as `docker kill`), `rctl reload
//! UNIT` with `[container] reload_signal`, `rctl top`.

use std::time::Duration;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn trapper(extra: &str) -> String {
    unit(
        "trap 'echo got-hup' HUP; trap 'echo got-usr1' USR1; echo ready; \
         while true; do sleep 0.2; done",
        &format!("stop_signal = \"TERM\"\n{extra}\n[network]\nmode = \"none\"\n"),
    )
}

#[test]
fn kill_delivers_or_holds_as_docker_kill_does() {
    let d = Daemon::start();
    d.write_unit("web", &trapper(""));
    let pid = pid_of(&d.wait_state("web", "running", 20 * SEC));
    wait_until(10 * SEC, "ready", || {
        text(&d.rctl(&["logs", "web"]).stdout).contains("ready")
    });
    // Another signal than the stop signal: delivered, nothing else changes.
    let out = d.rctl(&["kill", "-s", "HUP", "web"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "web: SIGHUP sent\n");
    wait_until(10 * SEC, "the trap", || {
        text(&d.rctl(&["logs", "web"]).stdout).contains("got-hup")
    });
    let s = d.status("web").unwrap();
    assert_eq!((pid_of(&s), s["held"].as_bool()), (pid, Some(false)));
    let events = text(
        &d.rctl(&["events", "--since", "1m", "--until", "0s", "--unit", "web"])
            .stdout,
    );
    assert!(events.contains("signal"), "{events}");
    // The default, SIGKILL: a stop, held.
    let out = d.rctl(&["kill", "web"]);
    assert!(text(&out.stdout).contains("stopped, held"), "{out:?}");
    assert_eq!(d.wait_state("web", "stopped", 20 * SEC)["held"], true);
    let out = d.rctl(&["kill", "-s", "HUP", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unit web is not running (it is stopped)"),
        "{out:?}"
    );
    let out = d.rctl(&["kill", "-s", "NOPE", "nope"]);
    assert_ne!(out.status.code(), Some(0));
    // The stop signal counts as a stop too.
    assert!(d.rctl(&["start", "web"]).status.success());
    d.wait_state("web", "running", 20 * SEC);
    assert!(d.rctl(&["kill", "-s", "TERM", "web"]).status.success());
    assert_eq!(d.wait_state("web", "stopped", 20 * SEC)["held"], true);
}

#[test]
fn reload_sends_the_units_reload_signal_and_top_lists_its_processes() {
    let d = Daemon::start();
    d.write_unit("proxy", &trapper("reload_signal = \"USR1\""));
    d.write_unit("plain", &trapper(""));
    let pid = pid_of(&d.wait_state("proxy", "running", 20 * SEC));
    d.wait_state("plain", "running", 20 * SEC);
    wait_until(10 * SEC, "ready", || {
        text(&d.rctl(&["logs", "proxy"]).stdout).contains("ready")
    });
    let out = d.rctl(&["reload", "proxy"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "proxy: SIGUSR1 sent\n");
    wait_until(10 * SEC, "the reload", || {
        text(&d.rctl(&["logs", "proxy"]).stdout).contains("got-usr1")
    });
    assert_eq!(pid_of(&d.status("proxy").unwrap()), pid);
    let out = d.rctl(&["reload", "plain"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("sets no reload_signal"),
        "{out:?}"
    );
    // Without a unit: the directory is rescanned, as before.
    assert!(d.rctl(&["reload"]).status.success());
    // reload_signal is not part of the spec: changing it recreates nothing.
    d.write_unit("proxy", &trapper("reload_signal = \"HUP\""));
    wait_until(10 * SEC, "the change loaded", || {
        assert!(d.rctl(&["reload", "proxy"]).status.success());
        text(&d.rctl(&["logs", "proxy"]).stdout).contains("got-hup")
    });
    assert_eq!(pid_of(&d.status("proxy").unwrap()), pid);
    // top: the shell is pid 1 in the container; the host pid is the unit's.
    let out = d.rctl(&["top", "proxy", "-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let init = list
        .iter()
        .find(|p| p["pid"].as_i64() == Some(pid))
        .unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!(init["container_pid"], 1, "{list:?}");
    assert!(
        init["command"].as_str().unwrap().starts_with("sh -c"),
        "{init}"
    );
    assert!(list.len() >= 2, "the shell and its sleep: {list:?}");
    let table = text(&d.rctl(&["top", "proxy"]).stdout);
    assert!(table.starts_with("     PID     CPID"), "{table}");
}
