//! The OCI runtime failing under the daemon: missing, not executable, hanging, failing at
//! create, and creating a container but failing to start it. Each time: a healthy container
//! keeps running with the same pid, the new unit's start fails with a clear error and leaves
//! nothing behind, and once the runtime is back, `rctl start` runs it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;
use crate::invariants::{settle_and_check, Want};

const SEC: Duration = Duration::from_secs(1);

/// A runtime wrapper whose behaviour comes from a mode file beside it: the `run` modes break
/// only `run`, every other command (state, list, kill, delete, exec) going to runc unchanged;
/// `hang-others` hangs state, list, kill and delete instead.
fn install_wrapper(dir: &Path) -> (PathBuf, PathBuf) {
    let wrapper = dir.join("runtime");
    let mode = dir.join("runtime.mode");
    std::fs::write(&mode, "ok").unwrap();
    let script = format!(
        r#"#!/bin/sh
mode=$(cat {mode})
prev=
for a in "$@"; do
  [ "$a" = run ] && is_run=1
  case "$a" in state|list|kill|delete) other=1 ;; esac
  [ "$prev" = --log ] && log=$a
  prev=$a
done
# As runc reports an error: a JSON line in the --log file.
fail() {{ echo "{{\"level\":\"error\",\"msg\":\"$1\"}}" >> "$log"; exit 1; }}
# Every call but `run` hanging: what recovery and a stop use.
if [ -n "$other" ] && [ "$mode" = hang-others ]; then exec sleep 1000; fi
if [ -n "$is_run" ]; then
  case "$mode" in
    hang) exec sleep 1000 ;;
    fail-create) fail "injected: create failed" ;;
    fail-start)
      # What `run` would create, created but never started: then a failure.
      first=1
      for a in "$@"; do
        if [ -n "$first" ]; then set --; first=; fi
        case "$a" in run) set -- "$@" create ;; --detach) ;; *) set -- "$@" "$a" ;; esac
      done
      runc "$@" >/dev/null 2>&1
      fail "injected: start failed" ;;
  esac
fi
exec runc "$@"
"#,
        mode = mode.display()
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (wrapper, mode)
}

fn quiet(script: &str) -> String {
    format!(
        "{}\n[network]\nmode = \"none\"\n",
        unit(script, "stop_signal = \"KILL\"")
    )
}

/// Runs `fault` (which breaks the runtime and returns a way to mend it) against a daemon with
/// one healthy unit, then checks the failed start, the mend, and the invariants.
fn under_fault(break_it: impl FnOnce(&Path, &Path), mend: impl FnOnce(&Path, &Path), expect: &str) {
    let mut d = Daemon::new();
    let (wrapper, mode) = install_wrapper(d.dir.path());
    d.runtime = Some(wrapper.clone());
    d.args = vec!["--start-timeout".into(), "3s".into()];
    d.write_unit("good", &quiet("exec sleep 1000"));
    d.spawn();
    let pid = pid_of(&d.wait_state("good", "running", 30 * SEC));

    break_it(&wrapper, &mode);
    d.write_unit("new", &quiet("exec sleep 1000"));
    let s = d.wait_state("new", "failed", 30 * SEC);
    let error = s["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains(expect), "error names the cause: {error:?}");
    assert_eq!(
        pid_of(&d.status("good").unwrap()),
        pid,
        "the healthy one untouched"
    );
    assert!(pid_alive(pid));
    // Nothing of the failed start is left (checked by the invariants with `new` failed).
    let want = BTreeMap::from([
        ("good".to_string(), Want::Running { net: false }),
        ("new".to_string(), Want::Failed),
    ]);
    mend(&wrapper, &mode);
    settle_and_check(&d, &want, 30 * SEC);

    assert!(d.rctl(&["start", "new"]).status.success());
    let want = BTreeMap::from([
        ("good".to_string(), Want::Running { net: false }),
        ("new".to_string(), Want::Running { net: false }),
    ]);
    settle_and_check(&d, &want, 30 * SEC);
    assert_eq!(pid_of(&d.status("good").unwrap()), pid);
}

#[test]
fn the_runtime_missing() {
    under_fault(
        |w, _| std::fs::rename(w, w.with_extension("away")).unwrap(),
        |w, _| std::fs::rename(w.with_extension("away"), w).unwrap(),
        "No such file",
    );
}

#[test]
fn the_runtime_not_executable() {
    under_fault(
        |w, _| std::fs::set_permissions(w, std::fs::Permissions::from_mode(0o644)).unwrap(),
        |w, _| std::fs::set_permissions(w, std::fs::Permissions::from_mode(0o755)).unwrap(),
        "ermission denied",
    );
}

#[test]
fn the_runtime_hanging_at_run() {
    under_fault(
        |_, m| std::fs::write(m, "hang").unwrap(),
        |_, m| std::fs::write(m, "ok").unwrap(),
        "3s",
    );
}

#[test]
fn the_runtime_failing_at_create() {
    under_fault(
        |_, m| std::fs::write(m, "fail-create").unwrap(),
        |_, m| std::fs::write(m, "ok").unwrap(),
        "injected: create failed",
    );
}

#[test]
fn the_runtime_creating_then_failing_at_start() {
    under_fault(
        |_, m| std::fs::write(m, "fail-start").unwrap(),
        |_, m| std::fs::write(m, "ok").unwrap(),
        "injected: start failed",
    );
}

/// A runtime that hangs on state, list, kill and delete: the daemon still starts (recovery's
/// list gives up after `--runtime-timeout`) and re-adopts the running container; a stop fails
/// with a clear error naming the deadline and leaves the container as it was; once the runtime
/// answers again, the stop and a new start work.
#[test]
fn the_runtime_hanging_at_state_list_kill_and_delete() {
    let mut d = Daemon::new();
    let (wrapper, mode) = install_wrapper(d.dir.path());
    d.runtime = Some(wrapper);
    d.args = vec!["--runtime-timeout".into(), "2s".into()];
    d.write_unit("good", &quiet("exec sleep 1000"));
    d.spawn();
    let pid = pid_of(&d.wait_state("good", "running", 30 * SEC));

    d.kill();
    std::fs::write(&mode, "hang-others").unwrap();
    // `spawn` waits (30 s at most) for the API, which answers only after recovery.
    d.spawn();
    assert_eq!(pid_of(&d.wait_state("good", "running", 10 * SEC)), pid);
    assert!(
        d.log().contains("no answer within 2s"),
        "recovery says the runtime did not answer:\n{}",
        d.log()
    );

    let out = d.rctl(&["stop", "good"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "a failed stop is an error: {said}");
    assert!(
        said.contains("still running") && said.contains("no answer within 2s"),
        "the error names the cause: {said}"
    );
    assert!(pid_alive(pid), "the container is left as it was");

    std::fs::write(&mode, "ok").unwrap();
    assert!(d.rctl(&["stop", "good"]).status.success());
    d.wait_state("good", "stopped", 30 * SEC);
    assert!(!pid_alive(pid));
    assert!(d.rctl(&["start", "good"]).status.success());
    let want = BTreeMap::from([("good".to_string(), Want::Running { net: false })]);
    settle_and_check(&d, &want, 30 * SEC);
}
