//! The daemon SIGKILLed at each step of an image update, against a real registry on
//! 127.0.0.1: during the pull (the registry frozen mid-pull), during the gate, and during the
//! rollback. After each restart the update finishes or is rolled back, and the invariants
//! hold: one container, on the digest the update ended with.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::*;
use crate::invariants::{settle_and_check, Want};
use crate::registry::{app_image, Registry};

const SEC: Duration = Duration::from_secs(1);

/// Pushes busybox with `/app/run` holding `script` (the image's command) as `app:latest`.
fn push(reg: &Registry, script: &str) {
    reg.push_image("app:latest", &app_image(script));
}

fn status(d: &Daemon) -> serde_json::Value {
    d.status("app").unwrap_or_default()
}

/// Waits until the failpoint line `point` has been taken (the daemon sleeps in it now).
fn wait_taken(d: &Daemon, point: &str) {
    wait_until(30 * SEC, point, || {
        !std::fs::read_to_string(d.failpoints())
            .unwrap_or_default()
            .contains(point)
    });
}

fn restart(d: &mut Daemon) {
    d.kill();
    d.spawn();
}

fn settled(d: &Daemon) {
    let want = BTreeMap::from([("app".to_string(), Want::Running { net: false })]);
    settle_and_check(d, &want, 60 * SEC);
}

#[test]
fn a_daemon_killed_during_an_update_finishes_it_or_rolls_it_back() {
    let reg = Registry::start();
    push(&reg, "echo v1; exec sleep 1000");
    let mut d = Daemon::start();
    d.write_unit(
        "app",
        &format!(
            "[container]\nimage = \"{}\"\nstop_signal = \"KILL\"\n[network]\nmode = \"none\"\n\
             [restart]\npolicy = \"always\"\ndelay = \"200ms\"\n\
             [update]\npolicy = \"registry\"\ncheck = \"1h\"\ngate = \"running:3s\"\ntimeout = \"60s\"\n",
            reg.image("app:latest")
        ),
    );
    d.wait_state("app", "running", 30 * SEC);
    let v1 = status(&d)["image_digest"].as_str().unwrap().to_owned();
    let registry = nix::unistd::Pid::from_raw(reg.pid() as i32);
    use nix::sys::signal::{kill, Signal};

    // 1. Killed during the pull: the registry is frozen once the pull begins.
    push(&reg, "echo v2; exec sleep 1000");
    std::fs::write(d.failpoints(), "update-pulling:app sleep:1500 once\n").unwrap();
    assert!(d.rctl(&["update", "--now", "app"]).status.success());
    wait_taken(&d, "update-pulling:app");
    kill(registry, Signal::SIGSTOP).unwrap();
    std::thread::sleep(3 * SEC);
    restart(&mut d);
    kill(registry, Signal::SIGCONT).unwrap();
    // The new daemon looks at the tag at once, and the update goes through.
    wait_until(60 * SEC, "v2 kept", || {
        status(&d)["update"]["state"]["last"]["ok"] == true
    });
    settled(&d);
    let v2 = status(&d)["image_digest"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);

    // 2. Killed during the gate: the trial goes on after the restart.
    push(&reg, "echo v3; exec sleep 1000");
    assert!(d.rctl(&["update", "--now", "app"]).status.success());
    wait_until(30 * SEC, "v3 on trial", || {
        let s = status(&d);
        s["update"]["state"]["trial"].is_object()
            && s["state"] == "running"
            && s["image_digest"] != v2.as_str()
    });
    let v3 = status(&d)["image_digest"].as_str().unwrap().to_owned();
    restart(&mut d);
    wait_until(60 * SEC, "v3 kept", || {
        let s = status(&d);
        s["update"]["state"]["last"]["digest"] == v3.as_str()
            && s["update"]["state"]["last"]["ok"] == true
    });
    settled(&d);
    assert_eq!(status(&d)["image_digest"], v3.as_str());

    // 3. Killed during the rollback: v4 exits at once; the daemon dies just after deciding
    //    to go back, and the new one finishes going back to v3.
    push(&reg, "echo v4; exit 3");
    std::fs::write(d.failpoints(), "update-rolling-back:app sleep:5000 once\n").unwrap();
    assert!(d.rctl(&["update", "--now", "app"]).status.success());
    wait_taken(&d, "update-rolling-back:app");
    restart(&mut d);
    wait_until(60 * SEC, "rolled back to v3", || {
        let s = status(&d);
        s["update"]["state"]["last"]["ok"] == false
            && s["state"] == "running"
            && s["image_digest"] == v3.as_str()
    });
    settled(&d);
    let s = status(&d);
    assert!(s["update"]["state"]["rejected"].is_string(), "{s:#}");
    assert!(s["update"]["state"]["trial"].is_null(), "{s:#}");
}
