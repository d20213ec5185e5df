//! Reconciling one unit: apply `plan`'s action, persist the record, and look again, until the
//! unit matches or must wait. Effects live here and in the pipeline; decisions in `plan`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::Instrument;

use crate::context::Context;
use crate::pipeline;
use crate::pipeline::cleanup::Depth;
use crate::restart::{self, Decision, Outcome};
use crate::shim::launch;
use crate::store::{Record, State};
use crate::unit::Unit;

use super::deps;
use super::intent::{self, Intent};
use super::plan::{plan, Action, Input};
use super::scheduler::Next;

/// A unit that must wait for something no event announces looks again after this long.
const RETRY: Duration = Duration::from_secs(2);
/// Bound on steps per reconcile, so a bug can never spin.
const MAX_STEPS: usize = 16;

/// What the loop tells a reconcile in flight: its unit was looked at again (its file changed,
/// an operator asked something). A start still waiting for its image gives up if the unit no
/// longer wants it, so removing or changing a unit never waits behind a slow pull.
#[derive(Debug, Default)]
pub struct Nudge {
    notify: Notify,
    stop: AtomicBool,
    gave_up: AtomicBool,
}

impl Nudge {
    /// The unit was looked at again; `stop` says an `rctl stop` is among the requests.
    pub fn poke(&self, stop: bool) {
        if stop {
            self.stop.store(true, Ordering::Relaxed);
        }
        self.notify.notify_one();
    }

    /// Resolves once the start of `unit` is no longer wanted.
    async fn superseded(&self, ctx: &Context, unit: &Unit) {
        loop {
            self.notify.notified().await;
            let still = !self.stop.load(Ordering::Relaxed)
                && ctx
                    .units
                    .unit(&unit.name)
                    .is_some_and(|u| u.spec_hash == unit.spec_hash);
            if !still {
                self.gave_up.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}

impl super::scheduler::InFlight<Intent> for Nudge {
    fn poked(&self, pending: &[Intent]) {
        self.poke(pending.contains(&Intent::Stop));
    }
}

/// Applies the operator's `intents`, then reconciles `name` until it matches its desired
/// state; says when to look again.
pub async fn reconcile(ctx: &Arc<Context>, name: &str, intents: &[Intent], nudge: &Nudge) -> Next {
    // Where a test learns that a reconcile of the unit which began after it asked has ended.
    let marked = crate::failpoint::armed_for("reconciled", name);
    let next = match steps(ctx, name, intents, nudge).await {
        Ok(None) => Next::Idle,
        Ok(Some(after)) => Next::After(after),
        Err(e) => {
            // Logged once per new error, not at every retry of the same one.
            if set_error(ctx, name, e.to_string()) {
                tracing::error!("{e}");
            } else {
                tracing::debug!("again: {e}");
            }
            Next::Failed
        }
    };
    if marked {
        crate::failpoint::hit_for("reconciled", name);
    }
    next
}

/// The steps of one reconcile: Ok(when to look again), or the step that failed.
async fn steps(
    ctx: &Arc<Context>,
    name: &str,
    intents: &[Intent],
    nudge: &Nudge,
) -> Result<Option<Duration>, pipeline::Error> {
    if !intents.is_empty() {
        let Some(record) = ctx.units.update(name, |e| {
            let r = e.record.get_or_insert_with(|| Record::new(name, now_ms()));
            for &i in intents {
                intent::apply(r, i);
            }
            r.clone()
        }) else {
            return Ok(None);
        };
        save(ctx, record).await?;
    }
    for _ in 0..MAX_STEPS {
        let Some((unit, record)) = ctx.units.desired_and_record(name) else {
            return Ok(None);
        };
        // A shim that recorded its container's exit is done with it, whatever /proc still
        // says of the shim for a moment (seen under systemd: the exit woke this reconcile,
        // yet the shim's pid still read as alive).
        let alive = record
            .as_ref()
            .is_some_and(|r| shim_alive(r) && !exit_recorded(ctx, r));
        let gate = deps::look(ctx, unit.as_deref());
        let action = plan(Input {
            unit: unit.as_deref(),
            record: record.as_ref(),
            alive,
            now_ms: now_ms(),
            boot_ms: crate::shim::boot_ms(),
            join: gate.join,
            blocked: gate.blocked.is_some(),
            required_stopped: gate.required_stopped.is_some(),
            unhealthy: record
                .as_ref()
                .and_then(|r| r.container_id.as_deref())
                .and_then(|id| ctx.health.get(id))
                .is_some_and(|h| h.status == crate::health::Status::Unhealthy),
        });
        if action != Action::Idle(None) {
            tracing::debug!(?action, "reconcile step");
        } else {
            tracing::trace!(alive, state = ?record.as_ref().map(|r| r.state), "reconcile: idle");
        }
        let step = match action {
            Action::Idle(after) => {
                if alive {
                    clear_requests(ctx, name).await;
                }
                return Ok(after);
            }
            Action::ObserveExit => observe_exit(ctx, unit.as_deref(), record).await,
            Action::Remove if dir_refused(ctx) => {
                // An unreadable or untrusted directory says nothing about what should run.
                return Ok(Some(RETRY));
            }
            Action::Remove => remove(ctx, name, record).await,
            Action::Recreate => recreate(ctx, record, alive, unit.as_deref()).await,
            Action::Stop { hold } => stop(ctx, unit.as_deref(), record, hold).await,
            Action::Hold => hold(ctx, name, record).await,
            Action::Wait => {
                // Looked at again when what it waits for changes (see `poke_dependents`).
                wait(ctx, name, record, gate.blocked, gate.problem).await?;
                return Ok(None);
            }
            Action::Rejoin => rejoin(ctx, unit.as_deref(), record).await,
            Action::Yield => yield_to(ctx, unit.as_deref(), record, gate).await,
            Action::Unhealthy(on) => unhealthy(ctx, unit.as_deref(), record, on).await,
            Action::Start => match unit {
                Some(u) => {
                    pull_in(ctx, &gate.pull_in);
                    start(ctx, &u, record, nudge, gate.shared.as_ref()).await
                }
                None => Ok(()),
            },
        };
        if nudge.gave_up.load(Ordering::Relaxed) {
            // The loop runs this unit again at once, with the requests that superseded it.
            return Ok(None);
        }
        step?;
    }
    Ok(Some(RETRY))
}

fn dir_refused(ctx: &Context) -> bool {
    ctx.dir_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some()
}

/// Whether the shim of `r`'s container wrote its exit file (it does just before it exits).
fn exit_recorded(ctx: &Context, r: &Record) -> bool {
    r.container_id.as_deref().is_some_and(|id| {
        ctx.paths
            .container(id)
            .join(crate::shim::EXIT_FILE)
            .exists()
    })
}

fn shim_alive(r: &Record) -> bool {
    match (r.shim_pid, r.shim_start) {
        (Some(pid), Some(start)) => launch::alive(pid, start),
        _ => false,
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    crate::shim::now_ms()
}

/// Persists `record`, then updates the table's copy (and pokes the units that depend on it if
/// its state changed). The write and its fsync run off the async threads: on a busy disk an
/// fsync takes tens of milliseconds, and while both of a 2-core machine's async workers sat in
/// one, every other unit and the API waited (`rctl status` stalled during a crash-loop storm).
async fn save(ctx: &Arc<Context>, record: Record) -> Result<(), pipeline::Error> {
    let c = ctx.clone();
    let (record, result) = pipeline::blocking(move || {
        let result = c.store.save(&record);
        (record, result)
    })
    .await?;
    let name = record.unit.clone();
    let (state, hold, waiting_for) = (record.state, record.hold, record.waiting_for.clone());
    let new = record.clone();
    let Some(old) = ctx.units.replace_record(record) else {
        return result.map_err(|e| pipeline::Error::Bundle {
            path: e.path,
            source: e.source,
        });
    };
    transition_event(ctx, old.as_ref(), &new);
    let changed = old
        .as_ref()
        .is_none_or(|old| (old.state, old.hold, &old.waiting_for) != (state, hold, &waiting_for));
    if changed {
        // Units that wait for this one, or require it, look again.
        poke_dependents(ctx, &name);
    }
    result.map_err(|e| pipeline::Error::Bundle {
        path: e.path,
        source: e.source,
    })
}

/// Updates the table's copy of a record without persisting it.
fn set(ctx: &Context, record: Record) {
    let Some(old) = ctx.units.replace_record(record.clone()) else {
        return;
    };
    transition_event(ctx, old.as_ref(), &record);
}

/// The event of a record's move to another state, if that move is one (`rctl events`).
fn transition_event(ctx: &Context, old: Option<&Record>, new: &Record) {
    if old.is_some_and(|o| o.state == new.state) {
        return;
    }
    let mut attrs: Vec<(&str, String)> = Vec::new();
    if let Some(id) = &new.container_id {
        attrs.push(("container", id.clone()));
    }
    let action = match new.state {
        State::Running => {
            attrs.extend(new.pid.map(|p| ("pid", p.to_string())));
            "start"
        }
        State::Restarting => {
            // The delay the policy chose: counted from when the state was entered.
            let after = new
                .restart_at_ms
                .map_or(0, |t| t.saturating_sub(new.since_ms));
            attrs.push((
                "after",
                humantime::format_duration(Duration::from_millis(after)).to_string(),
            ));
            attrs.extend(new.error.clone().map(|e| ("error", e)));
            "restarting"
        }
        State::Failed => {
            attrs.extend(new.error.clone().map(|e| ("error", e)));
            "failed"
        }
        State::Waiting => {
            attrs.extend(new.waiting_for.clone().map(|w| ("for", w)));
            "waiting"
        }
        // `exited` is sent where the exit is observed, with its code; `stopped` where a
        // running container is stopped (for whatever reason); `pulling` and `create` where
        // they begin.
        State::Pending | State::Starting | State::Pulling | State::Exited | State::Stopped => {
            return
        }
    };
    ctx.events.emit(&new.unit, action, &attrs);
}

/// Shows `error` on the unit; true if it is not what it showed already.
fn set_error(ctx: &Context, name: &str, error: String) -> bool {
    ctx.units
        .update_record(name, |r| {
            let new = r.error.as_deref() != Some(&error);
            r.error = Some(error);
            new
        })
        .unwrap_or(true)
}

async fn clear_requests(ctx: &Arc<Context>, name: &str) {
    let Some(Some(record)) = ctx.units.update_record(name, |r| {
        r.start_requested.then(|| {
            r.start_requested = false;
            r.clone()
        })
    }) else {
        return;
    };
    let c = ctx.clone();
    let _ = pipeline::blocking(move || c.store.save(&record)).await;
}

/// The container's shim is gone: record how the container ended and apply its policy.
async fn observe_exit(
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
    let exit = pipeline::stop::read_exit(ctx, &id);
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
        for pid in launch::find(&id) {
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

/// Whether a pending restart is due: by the monotonic clock, or by the wall clock for a record
/// written before the daemon kept both.
fn restart_due(r: &Record, now: u64) -> bool {
    match r.restart_due_boot_ms {
        Some(due) => due <= crate::shim::boot_ms(),
        None => r.restart_at_ms.is_some_and(|t| t <= now),
    }
}

/// Applies a policy decision to a record.
fn apply(r: &mut Record, decision: Decision, from_ms: u64, now: u64) {
    match decision {
        Decision::Restart {
            delay,
            backoff_step,
        } => {
            r.restarts = r.restarts.saturating_add(1);
            r.backoff_step = backoff_step;
            r.restart_at_ms = Some(from_ms + delay.as_millis() as u64);
            // What is left of the delay since `from_ms` (the exit), counted on the monotonic
            // clock from here on.
            let left = (from_ms + delay.as_millis() as u64).saturating_sub(now);
            r.restart_due_boot_ms =
                Some(crate::shim::boot_ms() + left.min(delay.as_millis() as u64));
            r.set_state(State::Restarting, now);
            tracing::info!(restarts = r.restarts, "restarting in {delay:?}");
        }
        Decision::Stay => {
            r.clear_restart();
            r.set_state(State::Exited, now);
        }
        Decision::Fail(reason) => {
            tracing::warn!("{reason}");
            r.clear_restart();
            r.error = Some(reason);
            r.set_state(State::Failed, now);
        }
    }
}

/// Stops the running container; with `hold` it stays stopped (rctl stop), otherwise a restart
/// request follows (rctl restart).
async fn stop(
    ctx: &Arc<Context>,
    unit: Option<&Unit>,
    record: Option<Record>,
    hold: bool,
) -> Result<(), pipeline::Error> {
    let Some(mut r) = record else { return Ok(()) };
    // A restart keeps the instance's rootfs mounted and its network up, as a restart by
    // policy does (same address, and units sharing its network are not bounced).
    let depth = if hold { Depth::Unmount } else { Depth::Runtime };
    stop_container(ctx, unit, &mut r, depth).await?;
    r.set_state(State::Stopped, now_ms());
    if hold {
        r.restart_requested = false;
        r.start_requested = false;
    }
    save(ctx, r).await
}

/// Holds a unit whose container is not running (pending, or waiting to restart) stopped.
async fn hold(
    ctx: &Arc<Context>,
    name: &str,
    record: Option<Record>,
) -> Result<(), pipeline::Error> {
    let mut r = record.unwrap_or_else(|| Record::new(name, now_ms()));
    if let Some(id) = &r.container_id {
        // A container waiting to restart still has its rootfs mounted.
        pipeline::cleanup::instance(ctx, id, Depth::Unmount).await?;
        r.clear_network();
    }
    r.set_state(State::Stopped, now_ms());
    r.clear_restart();
    save(ctx, r).await
}

/// Stops the record's container if its shim lives, records its exit, and takes the instance
/// apart to `depth`.
async fn stop_container(
    ctx: &Arc<Context>,
    unit: Option<&Unit>,
    r: &mut Record,
    depth: Depth,
) -> Result<(), pipeline::Error> {
    let Some(id) = r.container_id.clone() else {
        return Ok(());
    };
    // The container stops the way it was started to stop, whatever the file says now.
    let signal = r
        .stop_signal
        .clone()
        .or_else(|| unit.and_then(|u| u.container.stop_signal.clone()))
        .unwrap_or_else(|| "SIGTERM".to_string());
    let timeout = r
        .stop_timeout_ms
        .map(Duration::from_millis)
        .or_else(|| unit.map(|u| u.container.stop_timeout))
        .unwrap_or(Duration::from_secs(10));
    if let (Some(pid), Some(start)) = (r.shim_pid, r.shim_start) {
        if launch::alive(pid, start) {
            tracing::info!(container = %id, "stopping with {signal}, timeout {timeout:?}");
            let exit = pipeline::stop::stop(ctx, &id, pid, start, &signal, timeout).await?;
            if let Some(exit) = exit {
                r.exit_code = Some(exit.code);
                r.finished_at_ms = Some(exit.at_ms);
                r.exit_reason = exit.oom.then(|| "oom".to_string());
            }
            let mut attrs = vec![("container", id.clone()), ("signal", signal.clone())];
            attrs.extend(exit.map(|e| ("exit_code", e.code.to_string())));
            ctx.events.emit(&r.unit, "stopped", &attrs);
        }
    }
    pipeline::cleanup::instance(ctx, &id, depth).await?;
    if depth != Depth::Runtime {
        r.clear_network();
    }
    r.pid = None;
    r.shim_pid = None;
    r.shim_start = None;
    r.clear_restart();
    Ok(())
}

/// The file is gone: stop, remove the instance, forget the unit (its log stays).
async fn remove(
    ctx: &Arc<Context>,
    name: &str,
    record: Option<Record>,
) -> Result<(), pipeline::Error> {
    if let Some(mut r) = record {
        stop_container(ctx, None, &mut r, Depth::Retire).await?;
        ctx.store
            .remove(name)
            .map_err(|e| pipeline::Error::Bundle {
                path: e.path,
                source: e.source,
            })?;
        tracing::info!("unit removed");
        ctx.events.emit(name, "removed", &[]);
        refresh_hosts(ctx).await;
    }
    poke_dependents(ctx, name);
    ctx.units.forget_record(name);
    Ok(())
}

/// The spec changed: stop and retire the old instance; a new one starts if the old one was
/// active or the unit autostarts.
async fn recreate(
    ctx: &Arc<Context>,
    record: Option<Record>,
    alive: bool,
    unit: Option<&Unit>,
) -> Result<(), pipeline::Error> {
    let Some(mut r) = record else { return Ok(()) };
    let was_active = alive
        || matches!(
            r.state,
            State::Running | State::Restarting | State::Starting | State::Pulling
        );
    tracing::info!("unit changed; recreating its container");
    stop_container(ctx, unit, &mut r, Depth::Retire).await?;
    r.container_id = None;
    r.spec_hash = None;
    r.restarts = 0;
    r.backoff_step = 0;
    r.error = None;
    r.start_requested = was_active;
    r.restart_requested = false;
    r.set_state(State::Pending, now_ms());
    save(ctx, r).await
}

/// Records that the unit waits (for the container whose network it would share).
async fn wait(
    ctx: &Arc<Context>,
    name: &str,
    record: Option<Record>,
    why: Option<String>,
    problem: Option<String>,
) -> Result<(), pipeline::Error> {
    let mut r = record.unwrap_or_else(|| Record::new(name, now_ms()));
    if r.state == State::Waiting && r.waiting_for == why && r.error == problem {
        return Ok(());
    }
    if let Some(p) = &problem {
        tracing::warn!("{p}");
    }
    r.error = problem;
    if let Some(why) = &why {
        tracing::info!("waiting for {why}");
    }
    r.set_state(State::Waiting, now_ms());
    r.waiting_for = why;
    r.clear_restart();
    // Saving pokes those waiting for this one, who say why anew (a circle names every member).
    save(ctx, r).await
}

/// A unit it requires was stopped or removed: stop the container, and wait for that unit.
async fn yield_to(
    ctx: &Arc<Context>,
    unit: Option<&Unit>,
    record: Option<Record>,
    gate: deps::Gate,
) -> Result<(), pipeline::Error> {
    let Some(mut r) = record else { return Ok(()) };
    tracing::info!("stopping: a unit it requires is gone");
    stop_container(ctx, unit, &mut r, Depth::Unmount).await?;
    wait(
        ctx,
        &r.unit.clone(),
        Some(r),
        gate.required_stopped,
        gate.problem,
    )
    .await
}

/// The container is unhealthy and its unit says to act: restart it through the restart path
/// (counted, with backoff, whatever the policy), or stop it (`failed` until started again).
async fn unhealthy(
    ctx: &Arc<Context>,
    unit: Option<&Unit>,
    record: Option<Record>,
    on: crate::unit::OnUnhealthy,
) -> Result<(), pipeline::Error> {
    let (Some(mut r), Some(unit)) = (record, unit) else {
        return Ok(());
    };
    let now = now_ms();
    let ran_for = r
        .started_at_ms
        .map(|s| Duration::from_millis(now.saturating_sub(s)));
    if let Some(id) = &r.container_id {
        ctx.health.forget(id);
    }
    if on == crate::unit::OnUnhealthy::Stop {
        tracing::warn!("unhealthy: stopping (on_unhealthy = \"stop\")");
        stop_container(ctx, Some(unit), &mut r, Depth::Unmount).await?;
        r.error = Some("stopped: unhealthy (on_unhealthy = \"stop\")".into());
        r.set_state(State::Failed, now);
        return save(ctx, r).await;
    }
    tracing::warn!("unhealthy: restarting (on_unhealthy = \"restart\")");
    // Kept for the restart, as for a restart by policy: rootfs mounted, network up.
    stop_container(ctx, Some(unit), &mut r, Depth::Runtime).await?;
    let always = crate::unit::Restart {
        policy: crate::unit::Policy::Always,
        ..unit.restart.clone()
    };
    let code = r.exit_code.unwrap_or(137);
    let decision = restart::decide(
        &always,
        Outcome::Exited(code),
        r.restarts,
        r.backoff_step,
        ran_for,
    );
    apply(&mut r, decision, now, now);
    r.error = Some("restarted: unhealthy (on_unhealthy = \"restart\")".into());
    save(ctx, r).await
}

/// Asks the units that `names` (wanted or required, and down) to start, as an operator's
/// `rctl start` would but without clearing a hold (see `Intent::PullIn`).
fn pull_in(ctx: &Context, names: &[String]) {
    for name in names {
        tracing::info!(wanted = %name, "starting a unit this one wants or requires");
        ctx.queue.tell(name, Intent::PullIn);
    }
}

/// The container whose network this one shares runs in another namespace now (it was
/// recreated, or restarted without a pinned one): stop this one and start it again there.
async fn rejoin(
    ctx: &Arc<Context>,
    unit: Option<&Unit>,
    record: Option<Record>,
) -> Result<(), pipeline::Error> {
    let Some(mut r) = record else { return Ok(()) };
    if let Some(s) = &r.shared_network {
        tracing::info!(target = %s.unit, "the network this container shares moved; starting it again there");
    }
    // Saved first: a crash during the stop must not read as an exit for the policy.
    r.start_requested = true;
    save(ctx, r.clone()).await?;
    // The instance stays (as for a restart by policy); only its namespace changes.
    stop_container(ctx, unit, &mut r, Depth::Runtime).await?;
    r.set_state(State::Pending, now_ms());
    save(ctx, r).await
}

/// Asks the reconciler to look at the units that name `target`: they wait for it to run (or
/// be healthy), stop when it is stopped, follow it into a new namespace.
fn poke_dependents(ctx: &Context, target: &str) {
    for name in deps::dependents(ctx, |t| t == target) {
        ctx.poke(&name);
    }
}

/// Runs the start pipeline and records the result; a failure goes through the policy.
async fn start(
    ctx: &Arc<Context>,
    unit: &Arc<Unit>,
    record: Option<Record>,
    nudge: &Nudge,
    join: Option<&crate::network::shared::Shared>,
) -> Result<(), pipeline::Error> {
    let now = now_ms();
    let mut r = record.unwrap_or_else(|| Record::new(&unit.name, now));
    // A restart reuses the instance (and its writable layer); a new spec gets a new one.
    let id = match (&r.container_id, &r.spec_hash) {
        (Some(id), Some(h)) if *h == unit.spec_hash => id.clone(),
        _ => {
            // Unique across the unit's lifetimes too (a record is forgotten when its file goes,
            // and the old instance may still be cleaned up in the background).
            r.generation = (r.generation + 1).max(now);
            let id = ctx.container_id(&unit.name, r.generation);
            ctx.events
                .emit(&unit.name, "create", &[("container", id.clone())]);
            id
        }
    };
    r.container_id = Some(id.clone());
    r.spec_hash = Some(unit.spec_hash.clone());
    r.set_state(State::Starting, now);
    r.shim_pid = None;
    r.shim_start = None;
    // Shown, not persisted: after a crash from here on, recovery finds the instance's shim or
    // container not owned by a running record and removes it (see daemon::recover).
    set(ctx, r.clone());
    let on_pull = {
        let ctx = ctx.clone();
        let name = unit.name.clone();
        let image = match &unit.container.source {
            crate::unit::Source::Image { reference, .. } => reference.clone(),
            crate::unit::Source::Rootfs(_) => String::new(),
        };
        move || {
            ctx.units
                .update_record(&name, |r| r.set_state(State::Pulling, now_ms()));
            ctx.events
                .emit(&name, "pulling", &[("image", image.clone())]);
        }
    };
    let superseded = nudge.superseded(ctx, unit);
    let result = pipeline::start::start(ctx, unit, &id, join, &on_pull, superseded).await;
    let now = now_ms();
    r.start_requested = false;
    r.restart_requested = false;
    match result {
        Ok(started) => {
            let l = started.launched;
            r.pid = Some(l.pid);
            r.shim_pid = Some(l.shim_pid);
            r.shim_start = Some(l.shim_start);
            r.boot_id = Some(ctx.boot_id.clone());
            r.started_at_ms = Some(now);
            r.clear_restart();
            r.stop_signal = Some(started.stop_signal);
            r.exposed_ports = started.exposed_ports;
            r.network = started.network;
            r.shared_network = join.cloned();
            r.image_health = started.image_health;
            r.stop_timeout_ms = Some(unit.container.stop_timeout.as_millis() as u64);
            r.error = None;
            r.set_state(State::Running, now);
            tracing::info!(container = %id, pid = l.pid, "container started");
            let image_health = r.image_health.clone();
            save(ctx, r).await?;
            refresh_hosts(ctx).await;
            watch_exit(ctx, &unit.name, l.shim_pid, l.shim_start);
            crate::health::spawn_monitor(ctx, &unit.name, &id, image_health, now, false);
            Ok(())
        }
        Err(pipeline::Error::Shared { target, reason }) => {
            // The target moved or stopped since it was looked at: not this unit's failure.
            // It waits, and the target's next state change (or a short retry) looks again.
            tracing::info!(container = %id, "start deferred: unit {target}'s network: {reason}");
            r.set_state(State::Waiting, now);
            r.waiting_for = Some(format!("unit {target} to run"));
            r.clear_network();
            save(ctx, r).await
        }
        Err(pipeline::Error::Superseded) => {
            // Nothing of the instance exists yet; what superseded it decides what comes next.
            tracing::info!(container = %id, "start abandoned while waiting for its image");
            r.set_state(State::Pending, now);
            set(ctx, r);
            Ok(())
        }
        Err(e) => {
            tracing::error!(container = %id, "start failed: {e}");
            r.error = Some(e.to_string());
            r.clear_network();
            r.exit_code = None;
            let decision = restart::decide(
                &unit.restart,
                Outcome::StartFailed,
                r.restarts,
                r.backoff_step,
                None,
            );
            apply(&mut r, decision, now, now);
            if r.state == State::Failed {
                // Keep the start error visible rather than the policy's summary alone.
                r.error = Some(e.to_string());
            }
            save(ctx, r).await
        }
    }
}

/// Rewrites the `/etc/hosts` of every running bridge container, so each lists the units it
/// shares a network with at their current addresses. Failures are logged: a stale name is
/// not worth failing a start or a removal for.
async fn refresh_hosts(ctx: &Arc<Context>) {
    let members: Vec<crate::network::names::Member> = ctx.units.view(|table| {
        table
            .iter()
            .filter_map(|(name, e)| {
                let r = e.record.as_ref().filter(|r| r.state == State::Running)?;
                let joined = r.network.as_ref()?;
                let id = r.container_id.as_ref()?;
                let unit = e.unit.as_ref()?;
                Some(crate::network::names::Member {
                    unit: name.clone(),
                    hostname: unit.container.hostname.clone(),
                    hosts_file: ctx.paths.container(id).join("hosts"),
                    addresses: joined
                        .networks
                        .iter()
                        .filter_map(|n| {
                            let ip = n.address.as_deref()?.split('/').next()?.parse().ok()?;
                            Some((n.name.clone(), ip))
                        })
                        .collect(),
                })
            })
            .collect()
    });
    if members.is_empty() {
        return;
    }
    let written = pipeline::blocking(move || {
        for (path, text) in crate::network::names::hosts_files(&members) {
            // Never recreate the file of an instance being taken apart meanwhile.
            if !path.exists() {
                continue;
            }
            if let Err(e) = crate::network::files::write_in_place(&path, &text) {
                tracing::warn!("{}: {e}", path.display());
            }
        }
    })
    .await;
    if let Err(e) = written {
        tracing::warn!("hosts files: {e}");
    }
}

/// Pokes the reconciler when the shim exits (its container has ended).
pub fn watch_exit(ctx: &Arc<Context>, name: &str, shim_pid: i32, shim_start: u64) {
    let c = ctx.clone();
    let name = name.to_string();
    let cancel = ctx.cancel.clone();
    ctx.tasks.spawn(async move {
        tokio::select! {
            () = launch::wait(shim_pid, shim_start) => {}
            () = cancel.cancelled() => return,
        }
        tracing::debug!(unit = %name, shim_pid, "shim exited");
        c.units
            .update(&name, |e| e.shim_exited = Some((shim_pid, shim_start)));
        // A lost poke (injected here by the fault suite) is healed by the periodic look.
        crate::failpoint::hit("exit-poke");
        c.poke(&name);
    });
}

/// A clean shutdown without live restore (`[daemon] live_restore = false`): stops every running
/// container, those that name others (`after`, `requires`, `container:`) before the ones they
/// name, each wave in parallel, each with its stop signal and timeout. They are left `pending`,
/// so the next daemon start starts them as its rules say (not held, as after `rctl stop`).
pub async fn stop_all(ctx: &Arc<Context>) {
    loop {
        let running: Vec<(String, Record, Option<Arc<Unit>>)> = ctx.units.view(|v| {
            v.iter()
                .filter_map(|(n, e)| {
                    let r = e.record.as_ref().filter(|_| e.shim_running())?;
                    Some((n.clone(), r.clone(), e.unit.clone()))
                })
                .collect()
        });
        if running.is_empty() {
            return;
        }
        let named = |name: &str| {
            running.iter().any(|(other, _, u)| {
                other != name
                    && u.as_deref()
                        .is_some_and(|u| crate::unit::references(u).any(|(_, t)| t == name))
            })
        };
        let mut wave: Vec<_> = running
            .iter()
            .filter(|(n, _, _)| !named(n))
            .cloned()
            .collect();
        if wave.is_empty() {
            // A circle: nothing is first; stop them together.
            wave = running;
        }
        let stops = wave.into_iter().map(|(name, mut r, unit)| {
            async move {
                if let Err(e) = stop_container(ctx, unit.as_deref(), &mut r, Depth::Unmount).await {
                    tracing::error!("stopping at shutdown: {e}");
                }
                r.set_state(State::Pending, now_ms());
                if let Err(e) = save(ctx, r).await {
                    tracing::error!("{e}");
                }
            }
            .instrument(tracing::info_span!("unit", unit = %name))
        });
        futures_util::future::join_all(stops).await;
    }
}
