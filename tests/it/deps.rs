//! Dependencies between units, with systemd's meanings: `after` orders starts, `requires` also
//! stops a unit when what it requires is stopped or removed (and starts it again when that is
//! back), `wants` starts another unit along. Problems (a unit that does not exist, a cycle)
//! block only the units involved and are shown with file and line.

use std::time::Duration;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

fn sleeper(unit_section: &str, extra: &str) -> String {
    format!(
        "[unit]\n{unit_section}\n{}",
        unit(
            "exec sleep 1000",
            &format!("stop_signal = \"KILL\"\n{extra}")
        )
    )
}

fn started_at(d: &Daemon, name: &str) -> String {
    d.status(name).unwrap()["started_at"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn after_orders_starts_and_says_what_each_unit_waits_for() {
    let d = Daemon::start();
    // web after db, db after seed, and seed does not exist yet: db cannot start, web waits
    // for db, which is on its way.
    d.write_unit("web", &sleeper("after = [\"db\"]", ""));
    d.write_unit("db", &sleeper("after = [\"seed\"]", ""));
    let db = d.wait_state("db", "waiting", 10 * SEC);
    assert_eq!(
        db["waiting_for"], "unit seed, which does not exist",
        "{db:#}"
    );
    let err = db["error"].as_str().unwrap_or_default();
    assert!(
        err.ends_with("db.toml:2:10: unit db: after \"seed\" names a unit that does not exist"),
        "{db:#}"
    );
    d.wait_waiting_for("web", "unit db to run", 10 * SEC);
    let text = String::from_utf8_lossy(&d.rctl(&["status", "web"]).stdout).to_string();
    assert!(text.contains("Waiting: for unit db to run"), "{text}");

    // seed appears: seed, then db, then web, each after the one before.
    d.write_unit("seed", &sleeper("", ""));
    for n in ["seed", "db", "web"] {
        d.wait_state(n, "running", 20 * SEC);
    }
    assert!(started_at(&d, "seed") <= started_at(&d, "db"));
    assert!(started_at(&d, "db") <= started_at(&d, "web"));
    assert_eq!(d.status("db").unwrap()["error"], serde_json::Value::Null);

    // A unit that is not going to run is not waited for (systemd's After=): held stopped.
    assert!(d.rctl(&["stop", "db"]).status.success());
    d.wait_state("db", "stopped", 10 * SEC);
    assert!(d.rctl(&["restart", "web"]).status.success());
    d.wait_state("web", "running", 10 * SEC);
}

#[test]
fn requires_stops_the_dependent_with_what_it_requires_and_starts_it_again() {
    let d = Daemon::start();
    d.write_unit("db", &sleeper("", ""));
    d.write_unit("web", &sleeper("after = [\"db\"]\nrequires = [\"db\"]", ""));
    let db = pid_of(&d.wait_state("db", "running", 20 * SEC));
    let web = pid_of(&d.wait_state("web", "running", 20 * SEC));

    // db stopped by the operator: web stops too, and waits for it.
    assert!(d.rctl(&["stop", "db"]).status.success());
    d.wait_state("db", "stopped", 10 * SEC);
    let s = d.wait_waiting_for(
        "web",
        "unit db, which it requires, to be started (it was stopped)",
        10 * SEC,
    );
    assert!(!pid_alive(web));
    assert_eq!(s["restarts"], 0, "not a restart by policy");

    // db started again: web follows.
    assert!(d.rctl(&["start", "db"]).status.success());
    let db2 = d.wait_new_pid("db", db, 20 * SEC);
    let web2 = pid_of(&d.wait_state("web", "running", 20 * SEC));
    assert_ne!(web2, web);
    assert!(pid_alive(db2) && pid_alive(web2));

    // db's file removed: web stops, and says why with the place in its file.
    d.remove_unit("db");
    let s = d.wait_waiting_for("web", "unit db, which does not exist", 15 * SEC);
    assert!(!pid_alive(web2));
    let err = s["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("web.toml:2:10: unit web: after \"db\" names a unit that does not exist"),
        "{s:#}"
    );
    // Back: web runs again.
    d.write_unit("db", &sleeper("", ""));
    d.wait_state("db", "running", 20 * SEC);
    d.wait_state("web", "running", 20 * SEC);
    assert_eq!(d.status("web").unwrap()["error"], serde_json::Value::Null);
}

#[test]
fn wants_starts_a_unit_along_unless_the_operator_holds_it() {
    let d = Daemon::start();
    d.write_unit("cache", &sleeper("", "\n[install]\nautostart = false\n"));
    d.write_unit("spare", &sleeper("", "\n[install]\nautostart = false\n"));
    d.wait_state("cache", "pending", 10 * SEC);
    assert!(d.rctl(&["stop", "spare"]).status.success());
    d.wait_state("spare", "stopped", 10 * SEC);
    let mark = d.last_seq();
    d.write_unit("web", &sleeper("wants = [\"cache\", \"spare\"]", ""));
    let web = pid_of(&d.wait_state("web", "running", 20 * SEC));
    d.wait_state("cache", "running", 20 * SEC);
    // web asked for what it pulls in before it started: once spare has been looked at since,
    // whatever it was asked for has been done. Nothing started it.
    d.look_again("spare");
    assert_eq!(d.status("spare").unwrap()["state"], "stopped");
    assert_eq!(d.actions_after(mark, "spare"), ["changed"]);
    // A wanted unit that stops takes nothing with it.
    let mark = d.last_seq();
    assert!(d.rctl(&["stop", "cache"]).status.success());
    d.wait_state("cache", "stopped", 10 * SEC);
    // Once web has been looked at since: untouched.
    d.look_again("web");
    assert_eq!(pid_of(&d.status("web").unwrap()), web);
    assert_eq!(d.actions_after(mark, "web"), ["changed"]);
}

#[test]
fn an_after_cycle_blocks_only_its_members_and_rctl_check_reports_it() {
    let d = Daemon::start();
    d.write_unit("a", &sleeper("after = [\"b\"]", ""));
    d.write_unit("b", &sleeper("after = [\"a\"]", ""));
    d.write_unit("free", &sleeper("", ""));
    d.wait_state("free", "running", 20 * SEC);
    for (u, o) in [("a", "b"), ("b", "a")] {
        wait_until(10 * SEC, "the cycle reported", || {
            d.status(u).is_some_and(|s| {
                s["waiting_for"] == format!("a cycle to be broken: {u} -> {o} -> {u}")
            })
        });
        assert_eq!(d.status(u).unwrap()["state"], "waiting");
    }
    let out = d.rctl(&[
        "check",
        "--config",
        d.config.to_str().unwrap(),
        d.units.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for (u, o) in [("a", "b"), ("b", "a")] {
        let want = format!(
            "{}:2:10: unit {u}: after \"{o}\" forms a cycle: {u} -> {o} -> {u}",
            d.units.join(format!("{u}.toml")).display()
        );
        assert!(text.contains(&want), "{text}");
    }
    // Broken: both run.
    d.write_unit("b", &sleeper("", ""));
    d.wait_state("b", "running", 20 * SEC);
    d.wait_state("a", "running", 20 * SEC);
}

#[test]
fn at_daemon_start_the_graph_starts_in_dependency_order() {
    // As at boot: the files are there before the daemon.
    let mut d = Daemon::new();
    d.write_unit("c", &sleeper("after = [\"b\"]", ""));
    d.write_unit("b", &sleeper("after = [\"a\"]\nrequires = [\"a\"]", ""));
    d.write_unit("a", &sleeper("", ""));
    d.write_unit("free", &sleeper("", ""));
    d.spawn();
    for n in ["a", "b", "c", "free"] {
        d.wait_state(n, "running", 20 * SEC);
    }
    assert!(started_at(&d, "a") <= started_at(&d, "b"));
    assert!(started_at(&d, "b") <= started_at(&d, "c"));
}
