//! Image updates against a real registry on 127.0.0.1: v1 runs; v2 (healthy) is kept; v3
//! (unhealthy after 5 s) is rolled back to v2 with the registry stopped; v4 (fails to start)
//! is rolled back too. Each step is seen in `rctl status` and `rctl events`.

use std::time::Duration;

use crate::harness::*;
use crate::image::push_image;
use crate::registry::{app_image, Registry};
use serde_json::json;

const SEC: Duration = Duration::from_secs(1);

fn digest(d: &Daemon) -> String {
    d.status("app").expect("app loaded")["image_digest"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn update_now(d: &Daemon) {
    update_unit_now(d, "app");
}

fn update_unit_now(d: &Daemon, unit: &str) {
    let out = d.rctl(&["update", "--now", unit]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn updates_are_kept_when_healthy_and_rolled_back_when_not() {
    let reg = Registry::start();
    let image = push_image(
        &reg,
        "app:latest",
        &app_image("echo v1; touch /tmp/ok; exec sleep 1000"),
    );
    let d = Daemon::start();
    d.write_unit(
        "app",
        &format!(
            "[container]\nimage = \"{image}\"\nstop_signal = \"KILL\"\n\
             [health]\ncmd = [\"test\", \"-f\", \"/tmp/ok\"]\ninterval = \"1s\"\nretries = 1\n\
             [restart]\npolicy = \"always\"\ndelay = \"200ms\"\n\
             [update]\npolicy = \"registry\"\ncheck = \"1h\"\ngate = \"running:8s\"\ntimeout = \"40s\"\n"
        ),
    );
    d.wait_state("app", "running", 30 * SEC);
    let v1 = digest(&d);
    assert!(v1.starts_with("sha256:"), "{v1}");
    // Nothing new: a check changes nothing.
    let check = String::from_utf8_lossy(&d.rctl(&["update", "--check"]).stdout).into_owned();
    assert!(check.contains("up to date"), "{check}");

    // v2, healthy: kept once it ran 8 s.
    push_image(
        &reg,
        "app:latest",
        &app_image("echo v2; touch /tmp/ok; exec sleep 1000"),
    );
    let check = String::from_utf8_lossy(&d.rctl(&["update", "--check", "app"]).stdout).into_owned();
    assert!(check.contains("would update"), "{check}");
    update_now(&d);
    wait_until(60 * SEC, "v2 kept", || {
        d.status("app")
            .is_some_and(|s| s["update"]["state"]["last"]["ok"] == true)
    });
    let v2 = digest(&d);
    assert_ne!(v1, v2);
    let s = d.status("app").unwrap();
    assert_eq!(s["state"], "running", "{s:#}");
    assert_eq!(s["update"]["state"]["previous"], v1.as_str(), "{s:#}");
    let logs = String::from_utf8_lossy(&d.rctl(&["logs", "app"]).stdout).into_owned();
    assert!(logs.contains("v2"), "{logs}");

    // v3 turns unhealthy after 5 s: rolled back to v2, with the registry stopped.
    push_image(
        &reg,
        "app:latest",
        &app_image("echo v3; touch /tmp/ok; sleep 5; rm /tmp/ok; exec sleep 1000"),
    );
    update_now(&d);
    wait_until(30 * SEC, "v3 on trial", || {
        d.status("app").is_some_and(|s| {
            s["update"]["state"]["trial"].is_object() && s["state"] == "running" && {
                let now = s["image_digest"].as_str().unwrap_or_default();
                now != v2 && now != v1
            }
        })
    });
    let v3 = digest(&d);
    let registry = nix::unistd::Pid::from_raw(reg.pid() as i32);
    nix::sys::signal::kill(registry, nix::sys::signal::Signal::SIGSTOP).unwrap();
    wait_until(40 * SEC, "v3 rolled back", || {
        d.status("app").is_some_and(|s| {
            s["update"]["state"]["last"]["ok"] == false
                && s["state"] == "running"
                && s["image_digest"] == v2.as_str()
        })
    });
    let s = d.status("app").unwrap();
    assert_eq!(s["update"]["state"]["rejected"], v3.as_str(), "{s:#}");
    let reason = s["update"]["state"]["last"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("unhealthy"), "{s:#}");
    nix::sys::signal::kill(registry, nix::sys::signal::Signal::SIGCONT).unwrap();
    let text = String::from_utf8_lossy(&d.rctl(&["status", "app"]).stdout).into_owned();
    assert!(text.contains("update-failed"), "{text}");

    // v3 was rejected: asked again, nothing is tried while the tag still names it.
    update_now(&d);
    std::thread::sleep(3 * SEC);
    let s = d.status("app").unwrap();
    assert!(s["update"]["state"]["trial"].is_null(), "{s:#}");
    assert_eq!(s["image_digest"], v2.as_str(), "{s:#}");

    // v4 cannot start: rolled back as well.
    push_image(&reg, "app:latest", &{
        let mut v4 = app_image("exec sleep 1000");
        v4.config = json!({"Cmd": ["/app/missing"]});
        v4
    });
    update_now(&d);
    wait_until(40 * SEC, "v4 rolled back", || {
        d.status("app").is_some_and(|s| {
            let last = &s["update"]["state"]["last"];
            last["ok"] == false
                && last["digest"] != v3.as_str()
                && s["state"] == "running"
                && s["image_digest"] == v2.as_str()
        })
    });
    let events =
        String::from_utf8_lossy(&d.rctl(&["events", "--since", "5m", "--until", "0s"]).stdout)
            .into_owned();
    for want in ["update", "update-done", "update-failed", "rollback"] {
        assert!(
            events
                .lines()
                .any(|l| l.split_whitespace().any(|w| w == want)),
            "{want} not in {events}"
        );
    }
    // The same three outcomes in /metrics: v2 kept, v3 and v4 rolled back.
    let metrics = d.scrape();
    for (result, n) in [("kept", 1.0), ("rolled_back", 2.0)] {
        let series = format!("rcd_unit_updates_total{{unit=\"app\",result=\"{result}\"}}");
        assert_eq!(sample(&metrics, &series), Some(n), "{metrics}");
    }

    // rctl rollback: back to v1, held there.
    let out = d.rctl(&["rollback", "app"]);
    assert!(out.status.success(), "{out:?}");
    wait_until(30 * SEC, "rolled back to v1", || {
        d.status("app")
            .is_some_and(|s| s["state"] == "running" && s["image_digest"] == v1.as_str())
    });
    assert_eq!(d.status("app").unwrap()["update"]["state"]["pinned"], true);
    // Held there: a look changes nothing until --retry, which tries v4 again (and, as it
    // still cannot start, goes back to v1).
    update_now(&d);
    std::thread::sleep(2 * SEC);
    assert_eq!(d.status("app").unwrap()["image_digest"], v1.as_str());
    let retried_at = d.last_seq();
    assert!(d.rctl(&["update", "--retry", "app"]).status.success());
    wait_until(40 * SEC, "v4 tried again and rolled back", || {
        d.actions_after(retried_at, "app")
            .contains(&"update-failed".to_string())
            && d.status("app")
                .is_some_and(|s| s["state"] == "running" && s["image_digest"] == v1.as_str())
    });
    assert_eq!(d.status("app").unwrap()["update"]["state"]["pinned"], false);
}

#[test]
fn a_unit_that_requires_an_updated_one_is_restarted_after_it() {
    let reg = Registry::start();
    let image = push_image(&reg, "db:latest", &app_image("echo v1; exec sleep 1000"));
    let d = Daemon::start();
    d.write_unit(
        "db",
        &format!(
            "[container]\nimage = \"{image}\"\nstop_signal = \"KILL\"\n[network]\nmode = \"none\"\n\
             [update]\npolicy = \"registry\"\ncheck = \"1h\"\ngate = \"running:2s\"\n"
        ),
    );
    d.write_unit(
        "web",
        &format!(
            "[unit]\nafter = [\"db\"]\nrequires = [\"db\"]\n{}",
            unit(
                "exec sleep 1000",
                "stop_signal = \"KILL\"\n[network]\nmode = \"none\"\n"
            )
        ),
    );
    let db = pid_of(&d.wait_state("db", "running", 30 * SEC));
    let web = pid_of(&d.wait_state("web", "running", 30 * SEC));
    push_image(&reg, "db:latest", &app_image("echo v2; exec sleep 1000"));
    update_unit_now(&d, "db");
    let db2 = d.wait_new_pid("db", db, 30 * SEC);
    let web2 = d.wait_new_pid("web", web, 30 * SEC);
    assert!(pid_alive(db2) && pid_alive(web2));
    let (db_s, web_s) = (d.status("db").unwrap(), d.status("web").unwrap());
    assert!(
        web_s["started_at"].as_str() >= db_s["started_at"].as_str(),
        "web started again after db: {web_s:#} {db_s:#}"
    );
    assert_eq!(web_s["restarts"], 0, "not a restart by policy");
    wait_until(20 * SEC, "v2 kept", || {
        d.status("db")
            .is_some_and(|s| s["update"]["state"]["last"]["ok"] == true)
    });
}

#[test]
fn a_registry_that_says_retry_after_is_left_alone_that_long() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // A registry that answers everything with 429 and Retry-After: an hour.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(AtomicUsize::new(0));
    let counted = heads.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let counted = counted.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    if buf[..n].starts_with(b"HEAD ") {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    let answer = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3600\r\n\
                                  Content-Length: 0\r\n\r\n";
                    if conn.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let d = Daemon::start();
    d.write_unit(
        "app",
        &format!(
            "[container]\nimage = \"127.0.0.1:{port}/app:latest\"\n\
             [update]\npolicy = \"registry\"\ncheck = \"10s\"\n"
        ),
    );
    wait_until(10 * SEC, "the first look", || {
        heads.load(Ordering::SeqCst) >= 1
    });
    wait_until(10 * SEC, "its error shown", || {
        d.status("app").is_some_and(|s| {
            s["update"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("too many requests (retry after 3600s)"))
        })
    });
    // Past the unit's own check (10 s): not asked again.
    std::thread::sleep(12 * SEC);
    assert_eq!(heads.load(Ordering::SeqCst), 1);
    // An operator's `rctl update --now` asks all the same.
    let out = d.rctl(&["update", "--now", "app"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("asked"),
        "{out:?}"
    );
    wait_until(10 * SEC, "the asked look", || {
        heads.load(Ordering::SeqCst) == 2
    });
    // `rctl update` without --now looks itself and says what the registry said.
    let out = d.rctl(&["update", "app"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("too many requests"),
        "{out:?}"
    );
}
