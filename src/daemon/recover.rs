//! Recovery at daemon start: read the records back, tell a reboot from a daemon restart, sweep
//! what no record owns, and re-adopt the shims that still run.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;
use crate::pipeline::cleanup::Depth;
use crate::shim::launch;
use crate::store::State;
use crate::unit::Policy;

/// Loads the records into the table, resets those from an earlier boot, and removes runtime
/// containers and instance directories that no record owns. Blocking.
pub fn recover(ctx: &Context) {
    let (records, errors) = ctx.store.load_all();
    for e in errors {
        // An unreadable record is never trusted; moved aside so it can be looked at.
        tracing::error!("{e}; moving it aside");
        let _ = std::fs::rename(&e.path, e.path.with_extension("corrupt"));
    }
    let now = crate::clock::now_ms();
    let mut owned = HashSet::new();
    let mut recovered = Vec::with_capacity(records.len());
    for mut r in records {
        let rebooted = r.boot_id.as_deref().is_some_and(|b| b != ctx.boot_id);
        if rebooted {
            // The host restarted: no container of the record survived. Start afresh.
            if let Some(id) = &r.container_id {
                let _ = crate::pipeline::cleanup::instance_blocking(ctx, id, Depth::Unmount);
            }
            r.clear_network();
            r.pid = None;
            r.shim_pid = None;
            r.shim_start = None;
            r.clear_restart();
            let state = if r.hold {
                State::Stopped
            } else {
                State::Pending
            };
            r.set_state(state, now);
        }
        if let Some(id) = &r.container_id {
            owned.insert(id.clone());
        }
        let _ = ctx.store.save(&r);
        recovered.push(r);
    }
    ctx.units.edit(|table| {
        for r in recovered {
            let name = r.unit.clone();
            table.entry(&name).record = Some(r);
        }
    });
    sweep(ctx, &owned);
}

/// Removes what a crash between steps can leave behind: shims, runtime containers and
/// container cgroups (with every process in them) of this root that no running record owns (a
/// start the daemon died in, records removed under running containers), and instance
/// directories no record owns at all.
fn sweep(ctx: &Context, owned: &HashSet<String>) {
    let prefix = ctx.id_prefix();
    let running: HashSet<(String, i32)> = ctx.units.view(|v| {
        v.values()
            .filter_map(|e| e.record.as_ref())
            .filter(|r| r.state == State::Running)
            .filter_map(|r| Some((r.container_id.clone()?, r.shim_pid?)))
            .collect()
    });
    let running_ids: HashSet<&String> = running.iter().map(|(id, _)| id).collect();
    // Containers nothing will supervise: their processes outlive a killed shim (reparented to
    // PID 1), and the runtime may have lost its record of them too.
    let mut unowned = BTreeSet::new();
    for (pid, id) in launch::all() {
        if id.starts_with(&prefix) && !running.contains(&(id.clone(), pid)) {
            tracing::warn!(container = %id, shim_pid = pid, "killing a shim no running unit owns");
            launch::kill_group(pid);
            // A second shim of a running container is only a shim too many.
            if !running_ids.contains(&id) {
                unowned.insert(id);
            }
        }
    }
    // Those whose shim is gone as well are found by their cgroup.
    unowned.extend(
        ctx.cgroups
            .ids()
            .into_iter()
            .filter(|id| id.starts_with(&prefix) && !running_ids.contains(id)),
    );
    for id in &unowned {
        kill_unowned(ctx, id);
    }
    match ctx.runtime.list() {
        Ok(list) => {
            for c in list {
                if c.id.starts_with(&prefix) && !running_ids.contains(&c.id) {
                    tracing::warn!(container = %c.id, "removing a container no running unit owns");
                    let _ = ctx.runtime.kill(&c.id, "SIGKILL", true);
                    let _ = ctx.runtime.delete(&c.id);
                }
            }
        }
        Err(e) => tracing::warn!("cannot list runtime containers: {e}"),
    }
    // A network belongs to a container that runs or is about to restart; one of a stopped
    // container is what a failed CNI DEL left.
    let networked: HashSet<String> = ctx.units.view(|v| {
        v.values()
            .filter_map(|e| e.record.as_ref())
            .filter(|r| matches!(r.state, State::Running | State::Restarting))
            .filter_map(|r| r.container_id.clone())
            .collect()
    });
    for id in ctx.networks.instances() {
        if id.starts_with(&prefix) && !networked.contains(&id) {
            tracing::warn!(container = %id, "taking down a network no running unit owns");
            if let Err(e) = ctx.networks.detach(&id) {
                tracing::warn!(container = %id, "network cleanup: {e}");
            }
        }
    }
    if let Ok(dirs) = std::fs::read_dir(&ctx.paths.containers) {
        for d in dirs.flatten() {
            let id = d.file_name().to_string_lossy().into_owned();
            if !owned.contains(&id) {
                tracing::warn!(container = %id, "removing an instance directory no unit owns");
                let _ = crate::pipeline::cleanup::instance_blocking(ctx, &id, Depth::Retire);
            }
        }
    }
}

/// How long the processes of a container nobody owns are given to die once killed.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Kills everything container `id` still runs (its cgroup, whatever the runtime knows of it),
/// then removes the runtime's record of it and its cgroup.
fn kill_unowned(ctx: &Context, id: &str) {
    let cgroups_path = ctx.cgroups_path(id);
    match crate::cgroup::kill_all(&cgroups_path, KILL_WAIT) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(container = %id, processes = n, "killed what no unit owns"),
        Err(e) => tracing::warn!(container = %id, "killing what no unit owns: {e}"),
    }
    if let Err(e) = ctx.runtime.delete(id) {
        tracing::warn!(container = %id, "removing a container no unit owns: {e}");
    }
    if let Err(e) = crate::cgroup::remove(&cgroups_path) {
        tracing::warn!(container = %id, "removing a cgroup no unit owns: {e}");
    }
}

/// After the first scan: applies daemon-start rules (an `always` hold ends at daemon start) and
/// watches every shim that still runs, so its exit is seen. Returns the units whose shim ended
/// while the daemon was down (name, shim pid): their exits are still to be observed.
pub fn adopt(ctx: &Arc<Context>) -> Vec<(String, i32)> {
    let mut lost = Vec::new();
    let mut watch = Vec::new();
    let mut monitor = Vec::new();
    let mut save = Vec::new();
    // Which shims still run, read from /proc before the table is taken.
    let shims: Vec<(i32, u64)> = ctx.units.view(|v| {
        v.values()
            .filter_map(|e| {
                let r = e.record.as_ref()?;
                Some((r.shim_pid?, r.shim_start?))
            })
            .collect()
    });
    let alive: HashSet<(i32, u64)> = shims
        .into_iter()
        .filter(|&(pid, start)| launch::alive(pid, start))
        .collect();
    ctx.units.edit(|table| {
        for (name, e) in table.iter_mut() {
            let Some(r) = e.record.as_mut() else { continue };
            if let Some(u) = &e.unit {
                if u.restart.policy == Policy::Always && r.hold {
                    r.hold = false;
                    if r.state == State::Stopped {
                        r.start_requested = true;
                    }
                    save.push(r.clone());
                }
            }
            if let (Some(pid), Some(start)) = (r.shim_pid, r.shim_start) {
                if !alive.contains(&(pid, start)) {
                    e.shim_exited = Some((pid, start));
                    lost.push((name.clone(), pid));
                } else {
                    tracing::info!(unit = %name, pid = ?r.pid, "re-adopted running container");
                    watch.push((name.clone(), pid, start));
                    if let Some(id) = &r.container_id {
                        let started = r.started_at_ms.unwrap_or(0);
                        monitor.push((name.clone(), id.clone(), r.image_health.clone(), started));
                    }
                }
            }
        }
    });
    for r in save {
        let _ = ctx.store.save(&r);
    }
    for (name, id, image, started) in monitor {
        crate::health::spawn_monitor(ctx, &name, &id, image, started, true);
    }
    for (name, pid, start) in watch {
        crate::reconcile::watch::watch_exit(ctx, &name, pid, start);
    }
    lost
}

/// Waits (at most `limit`) until the reconciler has observed the exits `adopt` found, so that
/// a status read once the daemon says it is ready shows none of them as still running.
pub async fn observed(ctx: &Context, lost: &[(String, i32)], limit: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let pending = || {
        ctx.units.view(|table| {
            lost.iter().any(|(name, pid)| {
                table
                    .get(name)
                    .and_then(|e| e.record.as_ref())
                    .is_some_and(|r| r.shim_pid == Some(*pid))
            })
        })
    };
    while pending() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
