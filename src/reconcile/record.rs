//! A unit's record as the reconciler changes it: persisted, mirrored in the table, its state
//! changes told to the event log and to the units that depend on it; a policy's decision
//! applied to it.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;
use crate::pipeline;
use crate::reconcile::deps;
use crate::restart::Decision;
use crate::store::{Record, State};

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    crate::clock::now_ms()
}

/// Persists `record`, then updates the table's copy (and pokes the units that depend on it if
/// its state changed). The write and its fsync run off the async threads: on a busy disk an
/// fsync takes tens of milliseconds, and while both of a 2-core machine's async workers sat in
/// one, every other unit and the API waited (`rctl status` stalled during a crash-loop storm).
pub async fn save(ctx: &Arc<Context>, record: Record) -> Result<(), pipeline::Error> {
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
        return result.map_err(pipeline::Error::Record);
    };
    transition_event(ctx, old.as_ref(), &new);
    let changed = old
        .as_ref()
        .is_none_or(|old| (old.state, old.hold, &old.waiting_for) != (state, hold, &waiting_for));
    if changed {
        // Units that wait for this one, or require it, look again.
        poke_dependents(ctx, &name);
    }
    result.map_err(pipeline::Error::Record)
}

/// Updates the table's copy of a record without persisting it.
pub fn set(ctx: &Context, record: Record) {
    let Some(old) = ctx.units.replace_record(record.clone()) else {
        return;
    };
    transition_event(ctx, old.as_ref(), &record);
}

/// The event of a record's move to another state, if that move is one (`rctl events`).
pub fn transition_event(ctx: &Context, old: Option<&Record>, new: &Record) {
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
pub fn set_error(ctx: &Context, name: &str, error: String) -> bool {
    ctx.units
        .update_record(name, |r| {
            let new = r.error.as_deref() != Some(&error);
            r.error = Some(error);
            new
        })
        .unwrap_or(true)
}

/// Clears a start request the unit no longer needs (its container runs).
pub async fn clear_requests(ctx: &Arc<Context>, name: &str) {
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

/// Whether a pending restart is due: by the monotonic clock, or by the wall clock for a record
/// written before the daemon kept both.
pub fn restart_due(r: &Record, now: u64) -> bool {
    match r.restart_due_boot_ms {
        Some(due) => due <= crate::clock::boot_ms(),
        None => r.restart_at_ms.is_some_and(|t| t <= now),
    }
}

/// Applies a policy decision to a record.
pub fn apply(r: &mut Record, decision: Decision, from_ms: u64, now: u64) {
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
                Some(crate::clock::boot_ms() + left.min(delay.as_millis() as u64));
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

/// Asks the reconciler to look at the units that name `target`: they wait for it to run (or
/// be healthy), stop when it is stopped, follow it into a new namespace.
pub fn poke_dependents(ctx: &Context, target: &str) {
    for name in deps::dependents(ctx, |t| t == target) {
        ctx.poke(&name);
    }
}
