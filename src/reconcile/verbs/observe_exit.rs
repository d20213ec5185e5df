//! Observe an exit: the container's shim is gone; record how it ended and apply its policy.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;
use crate::pipeline;
use crate::pipeline::cleanup::Depth;
use crate::reconcile::record::{apply, now_ms, restart_due, save, set};
use crate::restart::{self, Decision, Outcome};
use crate::shim::launch;
use crate::store::{Record, State};
use crate::unit::Unit;

/// The container's shim is gone: record how the container ended and apply its policy.
pub async fn observe_exit(
    ctx: &Arc<Context>,
    unit: Option<&Unit>,
    record: Option<Record>,
) -> Result<(), pipeline::Error> {
    let Some(mut r) = record else { return Ok(()) };
    let now = now_ms();
    let Some(id) = r.container_id.clone() else {
        r.set_state(State::Pending, now);
        return save(ctx, r).await;
    };
    let exit = pipeline::stop::exit_of(ctx, &id).await;
    let was_starting = matches!(r.state, State::Starting | State::Pulling);
    if exit.is_none() && !was_starting {
        // The shim died without recording an exit: the container must not run unsupervised.
        tracing::warn!(container = %id, "shim is gone; killing its container");
        let c = ctx.clone();
        let i = id.clone();
        pipeline::blocking(move || c.runtime.kill(&i, "SIGKILL", true)).await??;
    }
    r.pid = None;
    r.shim_pid = None;
    r.shim_start = None;
    if was_starting && exit.is_none() {
        // The daemon died mid-start: nothing was recorded as running, so nothing counts. The
        // instance is retired (a shim of it may still be finishing and would delete a
        // container of the same id) and a fresh one starts.
        let i = id.clone();
        for pid in pipeline::blocking(move || launch::find(&i)).await? {
            tracing::warn!(container = %id, shim_pid = pid, "killing the shim of an interrupted start");
            launch::kill_group(pid);
        }
        pipeline::cleanup::instance(ctx, &id, Depth::Retire).await?;
        tracing::info!(container = %id, "cleaned up a start interrupted by a daemon crash");
        r.container_id = None;
        r.spec_hash = None;
        r.set_state(State::Pending, now);
        r.start_requested = true;
        return save(ctx, r).await;
    }
    let code = exit.map_or(137, |e| e.code);
    let at = exit.map_or(now, |e| e.at_ms);
    r.exit_code = Some(code);
    r.finished_at_ms = Some(at);
    r.exit_reason = exit.filter(|e| e.oom).map(|_| "oom".to_string());
    let ran_for = r
        .started_at_ms
        .map(|s| Duration::from_millis(at.saturating_sub(s)));
    tracing::info!(container = %id, exit_code = code, "container exited");
    let mut attrs = vec![("container", id.clone()), ("exit_code", code.to_string())];
    attrs.extend(r.exit_reason.clone().map(|why| ("reason", why)));
    ctx.events.emit(&r.unit, "exited", &attrs);
    let decision = match unit {
        Some(u) => restart::decide(
            &u.restart,
            Outcome::Exited(code),
            r.restarts,
            r.backoff_step,
            ran_for,
        ),
        None => Decision::Stay,
    };
    // A restart reuses the mounted rootfs; anything else unmounts it. A recorded exit means
    // the shim already deleted the container from the runtime.
    let restart = matches!(decision, Decision::Restart { .. });
    match (exit.is_some(), restart) {
        (true, true) => {}
        (true, false) => pipeline::cleanup::unmount(ctx, &id).await?,
        (false, true) => pipeline::cleanup::instance(ctx, &id, Depth::Runtime).await?,
        (false, false) => pipeline::cleanup::instance(ctx, &id, Depth::Unmount).await?,
    }
    if !restart {
        r.clear_network();
    }
    apply(&mut r, decision, at.max(now), now);
    if r.state == State::Restarting && restart_due(&r, now) {
        // Restarting right now: the start persists the record. After a crash in between, the
        // exit is observed again from its file, and counted once.
        set(ctx, r);
        return Ok(());
    }
    save(ctx, r).await
}
