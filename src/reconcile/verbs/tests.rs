//! The verbs in-process: a real context over a temporary root, a fake runtime and a fake shim
//! (shell scripts speaking the runtime's command line and the shim's report), each reconcile
//! run by `steps::reconcile` as the scheduler would. Needs root (the rootfs is mounted).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;
use crate::reconcile::intent::Intent;
use crate::reconcile::scheduler::Next;
use crate::reconcile::steps::{self, Nudge};
use crate::store::State;

/// The fake runtime: `kill` signals the pid the fake shim recorded for the id, `delete`
/// forgets it; every call is appended to `calls`.
const RUNTIME: &str = r#"#!/bin/sh
root=; prev=
for a in "$@"; do [ "$prev" = --root ] && root=$a; prev=$a; done
echo "$*" >> "$(dirname "$0")/calls"
while [ $# -gt 0 ]; do
  case "$1" in
    --root) shift 2 ;;
    --*) shift ;;
    kill) [ -f "$(dirname "$0")/fail-kill" ] && { echo "injected: kill failed" >&2; exit 1; }
          shift; [ "$1" = --all ] && shift; id=$1; sig=${2#SIG}
          [ -f "$root/$id/pid" ] || { echo "container does not exist" >&2; exit 1; }
          kill -s "$sig" "$(cat "$root/$id/pid")"; exit 0 ;;
    delete) shift; [ "$1" = --force ] && shift; rm -rf "${root:?}/$1"; exit 0 ;;
    state) echo '{"status":"running"}'; exit 0 ;;
    list) echo '[]'; exit 0 ;;
    *) exit 0 ;;
  esac
done
"#;

/// The fake shim: starts `sleep` as the container (its state kept where runc keeps it),
/// reports it on fd 3, waits for it, and writes the exit file as rcd-shim does.
const SHIM: &str = r#"#!/bin/sh
if [ "$1" != --serve ]; then
  # Detach as rcd-shim does: the daemon waits for this first process to exit.
  "$0" --serve "$@" &
  exit 0
fi
shift
while [ $# -gt 0 ]; do
  case "$1" in
    --id) id=$2; shift ;;
    --dir) dir=$2; shift ;;
    --bundle) bundle=$2; shift ;;
    --runtime-root) rroot=$2; shift ;;
  esac
  shift
done
exec 0</dev/null 1>/dev/null 2>/dev/null
trap '' HUP
mkdir -p "$rroot/$id"
rm -f "$dir/exit.json"
# A network namespace of its own, as a container has, or the one the spec names (a unit
# sharing another's): what a joiner runs in keeps that namespace alive, as runc's would.
ns=$(grep -oE '"/proc/[0-9]+/(ns/net|fd/[0-9]+)"' "$bundle/config.json" | tr -d '"' | head -n 1)
if [ -n "$ns" ]; then
  nsenter --net="$ns" sleep 1000 3>&- &
else
  unshare --net sleep 1000 3>&- &
fi
c=$!
# Reported once it is in its namespace, as runc reports a container once it is set up.
while [ "$(readlink /proc/$c/ns/net)" = "$(readlink /proc/$$/ns/net)" ]; do sleep 0.01; done
echo "$c" > "$rroot/$id/pid"
printf '{"result":"started","pid":%d,"shim_pid":%d}\n' "$c" "$$" >&3
exec 3>&-
wait "$c"; code=$?
printf '{"code":%d,"signal":null,"at_ms":%s,"oom":false}' "$code" "$(date +%s%3N)" > "$dir/exit.json"
"#;

/// A context over a temporary root with the fakes, and the units directory's files.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub ctx: Arc<Context>,
}

fn script(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

impl Host {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let paths = crate::config::Paths::new(&root);
        for d in [
            &paths.root,
            &paths.runtime_root,
            &paths.containers,
            &paths.logs,
        ] {
            std::fs::create_dir_all(d).expect("state dirs");
        }
        let runtime = dir.path().join("runtime");
        let shim = dir.path().join("rcd-shim");
        script(&runtime, RUNTIME);
        script(&shim, SHIM);
        std::fs::create_dir_all(dir.path().join("rootfs")).expect("rootfs");
        std::fs::create_dir_all(dir.path().join("units")).expect("units");
        let file = crate::config::file::FileConfig::default();
        let ctx = Context::new(
            paths.clone(),
            dir.path().join("units"),
            crate::runtime::Runtime::new(&runtime, &paths.runtime_root)
                .with_timeout(Duration::from_secs(5)),
            crate::cgroup::Driver::Cgroupfs,
            shim,
            Duration::from_secs(10),
            crate::store::Store::open(&paths.records).expect("store"),
            crate::context::Images::open(&paths.root, &file).expect("images"),
            crate::network::attach::Networks::open(&paths.root, &file.network).expect("networks"),
            crate::events::Log::open(&paths.root.join("events")).expect("events"),
        );
        Host {
            dir,
            ctx: Arc::new(ctx),
        }
    }

    /// Writes unit `name` (a `[container]` on the fake rootfs, no network, plus `extra`) and
    /// scans the directory.
    pub fn unit(&self, name: &str, extra: &str) {
        self.unit_on(name, extra, "none");
    }

    /// Writes unit `name` with network mode `mode`, and scans the directory.
    pub fn unit_on(&self, name: &str, extra: &str, mode: &str) {
        let text = format!(
            "[container]\nrootfs = {:?}\ncommand = [\"sleep\", \"1000\"]\nstop_timeout = \"1s\"\n{extra}\n[network]\nmode = \"{mode}\"\n",
            self.dir.path().join("rootfs")
        );
        let path = self.dir.path().join("units").join(format!("{name}.toml"));
        std::fs::write(path, text).expect("unit file");
        crate::desired::scan(&self.ctx);
    }

    /// One reconcile of `name`, as the scheduler runs it.
    pub async fn reconcile(&self, name: &str, intents: &[Intent]) -> Next {
        steps::reconcile(&self.ctx, name, intents, &Nudge::default()).await
    }

    /// The record's state now.
    pub fn state(&self, name: &str) -> Option<State> {
        self.ctx.units.record(name).map(|r| r.state)
    }

    /// The runtime calls so far.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The container's pid.
    pub fn pid(&self, name: &str) -> i32 {
        self.ctx
            .units
            .record(name)
            .and_then(|r| r.pid)
            .expect("a running container")
    }

    /// Waits (bounded) until `path` is gone: a retired instance is removed in the background.
    pub async fn gone(&self, path: &Path) -> bool {
        for _ in 0..200 {
            if !path.exists() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// SIGKILLs the container of `name` and waits until its shim has recorded the exit.
    pub async fn kill_container(&self, name: &str) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid(name)),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the container");
        self.shim_gone(name).await;
    }

    /// Waits (bounded) until the shim of `name` has gone, as the exit watch would see it.
    pub async fn shim_gone(&self, name: &str) {
        let r = self.ctx.units.record(name).expect("record");
        let (pid, start) = (r.shim_pid.expect("shim"), r.shim_start.expect("start"));
        tokio::time::timeout(
            Duration::from_secs(10),
            crate::shim::launch::wait(pid, start),
        )
        .await
        .expect("the shim exits");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Nothing of a failed test may outlive it: containers (sleeps) and mounts.
        let entries: Vec<crate::table::Entry> =
            self.ctx.units.view(|v| v.values().cloned().collect());
        for e in entries {
            if let Some(pid) = e.record.as_ref().and_then(|r| r.pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if let Some(id) = e.record.as_ref().and_then(|r| r.container_id.clone()) {
                let _ = crate::pipeline::cleanup::instance_blocking(
                    &self.ctx,
                    &id,
                    crate::pipeline::cleanup::Depth::Retire,
                );
            }
        }
    }
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn instance_dir(h: &Host, name: &str) -> PathBuf {
    let id = h
        .ctx
        .units
        .record(name)
        .and_then(|r| r.container_id)
        .expect("an instance");
    h.ctx.paths.container(&id)
}

#[tokio::test]
async fn start_runs_the_container_and_records_it() {
    let h = Host::new();
    h.unit("web", "");
    assert_eq!(h.reconcile("web", &[]).await, Next::Idle);
    let r = h.ctx.units.record("web");
    assert_eq!(h.state("web"), Some(State::Running), "{r:?}");
    assert!(alive(h.pid("web")));
    assert!(instance_dir(&h, "web").join("bundle/config.json").exists());
    // Nothing else to do: a second look changes nothing and calls no runtime.
    let calls = h.calls().len();
    assert_eq!(h.reconcile("web", &[]).await, Next::Idle);
    assert_eq!(h.calls().len(), calls);
}

#[tokio::test]
async fn stop_holds_it_stopped_with_its_signal_and_records_the_exit() {
    let h = Host::new();
    h.unit("web", "");
    h.reconcile("web", &[]).await;
    let pid = h.pid("web");
    h.reconcile("web", &[Intent::Stop]).await;
    let r = h.ctx.units.record("web").expect("record");
    assert_eq!(r.state, State::Stopped);
    assert!(r.hold);
    assert_eq!(r.exit_code, Some(143), "SIGTERM, as the shell reports it");
    assert!(!alive(pid));
    assert!(h
        .calls()
        .iter()
        .any(|c| c.contains("kill") && c.ends_with("SIGTERM")));
    // Held: a look does not start it again.
    assert_eq!(h.reconcile("web", &[]).await, Next::Idle);
    assert_eq!(h.state("web"), Some(State::Stopped));
    // Started again by the operator.
    h.reconcile("web", &[Intent::Start]).await;
    assert_eq!(h.state("web"), Some(State::Running));
}

#[tokio::test]
async fn an_exit_is_observed_and_the_policy_applied() {
    let h = Host::new();
    h.unit(
        "web",
        "[restart]\npolicy = \"on-failure\"\ndelay = \"1h\"\nmax_delay = \"1h\"\n",
    );
    h.reconcile("web", &[]).await;
    assert_eq!(
        h.state("web"),
        Some(State::Running),
        "{:?}",
        h.ctx.units.get("web")
    );
    h.kill_container("web").await;
    let next = h.reconcile("web", &[]).await;
    let r = h.ctx.units.record("web").expect("record");
    assert_eq!(r.exit_code, Some(137));
    assert_eq!(
        r.state,
        State::Restarting,
        "on-failure restarts a non-zero exit"
    );
    assert_eq!(r.restarts, 1);
    assert!(
        matches!(next, Next::After(d) if d > Duration::from_secs(3000)),
        "looked at again when the delay is over: {next:?}"
    );
}

#[tokio::test]
async fn a_changed_spec_recreates_on_a_new_instance() {
    let h = Host::new();
    h.unit("web", "");
    h.reconcile("web", &[]).await;
    let (pid, old) = (h.pid("web"), instance_dir(&h, "web"));
    h.unit("web", "[container.env]\nV = \"2\"\n");
    h.reconcile("web", &[]).await;
    assert_eq!(h.state("web"), Some(State::Running));
    assert!(!alive(pid), "the old container is stopped");
    assert_ne!(instance_dir(&h, "web"), old, "a new instance");
    assert!(h.gone(&old).await, "the old instance is retired");
}

#[tokio::test]
async fn a_removed_file_stops_the_container_and_forgets_the_unit() {
    let h = Host::new();
    h.unit("web", "");
    h.reconcile("web", &[]).await;
    let (pid, dir) = (h.pid("web"), instance_dir(&h, "web"));
    std::fs::remove_file(h.dir.path().join("units/web.toml")).expect("rm");
    crate::desired::scan(&h.ctx);
    let next = h.reconcile("web", &[]).await;
    assert!(!alive(pid), "{next:?} {:?}", h.calls());
    assert!(h.gone(&dir).await, "{next:?} {:?}", h.calls());
    assert!(h.calls().iter().any(|c| c.contains("delete --force")));
    assert!(!h.ctx.units.contains("web"));
}

#[tokio::test]
async fn a_failing_stop_is_an_error_the_scheduler_backs_off_from() {
    let h = Host::new();
    h.unit("web", "");
    h.reconcile("web", &[]).await;
    let pid = h.pid("web");
    std::fs::write(h.dir.path().join("fail-kill"), "").expect("break the runtime's kill");
    assert_eq!(h.reconcile("web", &[Intent::Stop]).await, Next::Failed);
    let r = h.ctx.units.record("web").expect("record");
    assert_eq!(
        r.state,
        State::Running,
        "still running: the stop did not happen"
    );
    assert!(r.hold, "the request stands");
    assert!(r.error.is_some_and(|e| e.contains("injected: kill failed")));
    assert!(alive(pid));
    // Once the runtime answers, the next look (the scheduler's retry) stops it.
    std::fs::remove_file(h.dir.path().join("fail-kill")).expect("mend");
    assert_eq!(h.reconcile("web", &[]).await, Next::Idle);
    assert_eq!(h.state("web"), Some(State::Stopped));
    assert!(!alive(pid));
}

#[tokio::test]
async fn restart_runs_a_new_container_on_the_same_instance() {
    let h = Host::new();
    h.unit("web", "");
    h.reconcile("web", &[]).await;
    let (pid, dir) = (h.pid("web"), instance_dir(&h, "web"));
    h.reconcile("web", &[Intent::Restart]).await;
    assert_eq!(h.state("web"), Some(State::Running));
    assert!(!alive(pid));
    assert_ne!(h.pid("web"), pid);
    assert_eq!(instance_dir(&h, "web"), dir, "a restart keeps the instance");
    assert_eq!(h.ctx.units.record("web").map(|r| r.restarts), Some(0));
}

#[tokio::test]
async fn hold_stops_a_unit_waiting_to_restart() {
    let h = Host::new();
    h.unit(
        "web",
        "[restart]\npolicy = \"always\"\ndelay = \"1h\"\nmax_delay = \"1h\"\n",
    );
    h.reconcile("web", &[]).await;
    h.kill_container("web").await;
    h.reconcile("web", &[]).await;
    assert_eq!(h.state("web"), Some(State::Restarting));
    let dir = instance_dir(&h, "web");
    assert!(
        crate::rootfs::overlays()
            .iter()
            .any(|m| m.target.starts_with(&dir)),
        "kept mounted for the restart"
    );
    h.reconcile("web", &[Intent::Stop]).await;
    let r = h.ctx.units.record("web").expect("record");
    assert_eq!((r.state, r.hold), (State::Stopped, true));
    assert_eq!(r.restart_at_ms, None, "no restart pending");
    assert!(
        !crate::rootfs::overlays()
            .iter()
            .any(|m| m.target.starts_with(&dir)),
        "unmounted"
    );
}

#[tokio::test]
async fn an_unhealthy_container_with_on_unhealthy_stop_is_stopped_and_failed() {
    let h = Host::new();
    h.unit(
        "web",
        "[health]\ncmd = [\"true\"]\ninterval = \"1h\"\non_unhealthy = \"stop\"\n",
    );
    h.reconcile("web", &[]).await;
    let r = h.ctx.units.record("web").expect("record");
    let (pid, id) = (h.pid("web"), r.container_id.clone().expect("id"));
    // The monitor's first word (starting) is said before this one, not after it.
    for _ in 0..200 {
        if h.ctx.health.get(&id).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let unhealthy = crate::health::HealthState {
        status: crate::health::Status::Unhealthy,
        ..Default::default()
    };
    h.ctx
        .health
        .set(
            &id,
            r.started_at_ms.unwrap_or(0),
            unhealthy,
            &h.ctx.paths.container(&id),
            false,
        )
        .await;
    h.reconcile("web", &[]).await;
    let r = h.ctx.units.record("web").expect("record");
    assert_eq!(r.state, State::Failed);
    assert!(r.error.is_some_and(|e| e.contains("unhealthy")));
    assert!(!alive(pid));
}

#[tokio::test]
async fn after_orders_only_what_starts_and_requires_waits_for_a_held_unit() {
    let h = Host::new();
    h.unit("db", "[install]\nautostart = false\n");
    h.unit("web", "[unit]\nafter = [\"db\"]\n");
    h.reconcile("db", &[]).await;
    h.reconcile("web", &[]).await;
    // db does not autostart: web, ordered after it only, starts anyway (systemd's After=).
    assert_eq!(h.state("web"), Some(State::Running));
    // A unit that requires one the operator holds stopped waits, and says why.
    h.reconcile("db", &[Intent::Stop]).await;
    h.unit("api", "[unit]\nafter = [\"db\"]\nrequires = [\"db\"]\n");
    h.reconcile("api", &[]).await;
    let r = h.ctx.units.record("api").expect("record");
    assert_eq!(r.state, State::Waiting, "{r:?}");
    assert_eq!(
        r.waiting_for.as_deref(),
        Some("unit db, which it requires, to be started (it was stopped)")
    );
}

#[tokio::test]
async fn a_unit_yields_when_one_it_requires_is_stopped() {
    let h = Host::new();
    h.unit("db", "");
    h.unit("api", "[unit]\nafter = [\"db\"]\nrequires = [\"db\"]\n");
    h.reconcile("db", &[]).await;
    h.reconcile("api", &[]).await;
    let api = h.pid("api");
    h.reconcile("db", &[Intent::Stop]).await;
    h.reconcile("api", &[]).await;
    let r = h.ctx.units.record("api").expect("record");
    assert_eq!(r.state, State::Waiting, "{r:?}");
    assert!(!alive(api), "stopped with the unit it requires");
    assert!(!r.hold, "not held: it starts again with db");
    h.reconcile("db", &[Intent::Start]).await;
    h.reconcile("api", &[]).await;
    assert_eq!(h.state("api"), Some(State::Running));
}

#[tokio::test]
async fn a_unit_sharing_a_network_follows_it_into_its_new_namespace() {
    let h = Host::new();
    h.unit("db", "[restart]\npolicy = \"always\"\ndelay = \"10ms\"\n");
    h.unit_on("api", "", "container:db");
    h.reconcile("db", &[]).await;
    h.reconcile("api", &[]).await;
    assert_eq!(h.state("api"), Some(State::Running));
    let ino = |name: &str| {
        h.ctx
            .units
            .record(name)
            .and_then(|r| r.shared_network)
            .map(|s| s.ino)
    };
    let first = ino("api").expect("api shares db's namespace");
    let api = h.pid("api");
    let ns_of = |pid: i32| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .map(|m| m.ino())
            .ok()
    };
    assert_eq!(ns_of(api), ns_of(h.pid("db")), "api runs in db's namespace");
    assert_eq!(ns_of(api), Some(first));
    // db restarts: a new process in a new namespace.
    h.reconcile("db", &[Intent::Restart]).await;
    h.reconcile("api", &[]).await;
    assert_eq!(h.state("api"), Some(State::Running));
    assert!(
        !alive(api),
        "api was stopped to rejoin: {:?} {:?} {:?}",
        h.ctx.units.record("api"),
        h.ctx.units.record("db"),
        h.calls()
    );
    assert_ne!(ino("api"), Some(first), "api is in db's new namespace");
}

#[tokio::test]
async fn stop_all_stops_dependents_first_and_leaves_no_hold() {
    let h = Host::new();
    h.unit("db", "");
    h.unit("web", "[unit]\nafter = [\"db\"]\nrequires = [\"db\"]\n");
    h.unit("solo", "");
    for n in ["db", "web", "solo"] {
        h.reconcile(n, &[]).await;
    }
    let pids: Vec<i32> = ["db", "web", "solo"].iter().map(|n| h.pid(n)).collect();
    crate::reconcile::verbs::stop::stop_all(&h.ctx).await;
    assert!(pids.iter().all(|p| !alive(*p)));
    let stopped: Vec<String> = h
        .ctx
        .events
        .since(0)
        .into_iter()
        .filter(|e| e.action == "stopped")
        .map(|e| e.unit)
        .collect();
    let at = |u: &str| stopped.iter().position(|s| s == u);
    assert!(at("web") < at("db") && at("db").is_some(), "{stopped:?}");
    for n in ["db", "web", "solo"] {
        assert!(
            !h.ctx.units.record(n).expect("record").hold,
            "{n} is not held"
        );
    }
}
