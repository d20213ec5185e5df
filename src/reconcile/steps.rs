//! One reconcile of one unit: apply the operator's intents, then `plan`'s action, persist the
//! record, and look again, until the unit matches or must wait. The actions are the verbs
//! (`verbs/`); decisions are in `plan`.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;
use crate::pipeline;
use crate::reconcile::deps;
use crate::reconcile::intent::{self, Intent};
use crate::reconcile::plan::{plan, Action, Input};
use crate::reconcile::record::{clear_requests, now_ms, save, set_error};
use crate::reconcile::scheduler::Next;
use crate::reconcile::verbs;
use crate::reconcile::verbs::wait::wait;
use crate::shim::launch;
use crate::store::Record;
use crate::unit::Unit;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// A unit that must wait for something no event announces looks again after this long.
pub const RETRY: Duration = Duration::from_secs(2);

/// Bound on steps per reconcile, so a bug can never spin.
pub const MAX_STEPS: usize = 16;

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
    pub async fn superseded(&self, ctx: &Context, unit: &Unit) {
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

impl crate::reconcile::scheduler::InFlight<Intent> for Nudge {
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
pub async fn steps(
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
        // Both read /proc and the instance's files: off the async workers.
        let (alive, gate) = {
            let (c, u, r) = (ctx.clone(), unit.clone(), record.clone());
            pipeline::blocking(move || {
                let alive = r
                    .as_ref()
                    .is_some_and(|r| shim_alive(r) && !exit_recorded(&c, r));
                (alive, deps::look(&c, u.as_deref()))
            })
            .await?
        };
        let image_target = unit.as_deref().and_then(|u| image_target(ctx, u));
        let action = plan(Input {
            unit: unit.as_deref(),
            record: record.as_ref(),
            alive,
            now_ms: now_ms(),
            boot_ms: crate::clock::boot_ms(),
            join: gate.join,
            blocked: gate.blocked.is_some(),
            required_stopped: gate.required_stopped.is_some(),
            unhealthy: record
                .as_ref()
                .and_then(|r| r.container_id.as_deref())
                .and_then(|id| ctx.health.get(id))
                .is_some_and(|h| h.status == crate::health::Status::Unhealthy),
            image_target: image_target.as_deref(),
            required_replaced: record.as_ref().is_some_and(|r| required_replaced(ctx, r)),
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
            Action::ObserveExit => {
                verbs::observe_exit::observe_exit(ctx, unit.as_deref(), record).await
            }
            Action::Remove if dir_refused(ctx) => {
                // An unreadable or untrusted directory says nothing about what should run.
                return Ok(Some(RETRY));
            }
            Action::Remove => verbs::remove::remove(ctx, name, record).await,
            Action::Recreate => {
                verbs::recreate::recreate(ctx, record, alive, unit.as_deref()).await
            }
            Action::Stop { hold } => verbs::stop::stop(ctx, unit.as_deref(), record, hold).await,
            Action::Hold => verbs::hold::hold(ctx, name, record).await,
            Action::Wait => {
                // Looked at again when what it waits for changes (see `poke_dependents`).
                wait(ctx, name, record, gate.blocked, gate.problem).await?;
                return Ok(None);
            }
            Action::Rejoin => verbs::rejoin::rejoin(ctx, unit.as_deref(), record).await,
            Action::Secrets => verbs::secrets::secrets_changed(ctx, unit.as_deref(), record).await,
            Action::Yield => verbs::wait::yield_to(ctx, unit.as_deref(), record, gate).await,
            Action::Unhealthy(on) => {
                verbs::unhealthy::unhealthy(ctx, unit.as_deref(), record, on).await
            }
            Action::Start => match unit {
                Some(u) => {
                    pull_in(ctx, &gate.pull_in);
                    verbs::start::start(ctx, &u, record, nudge, gate.shared.as_ref()).await
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

/// Whether a unit `r`'s unit requires runs, now, another container than when `r` started.
fn required_replaced(ctx: &Context, r: &Record) -> bool {
    r.required.iter().any(|(name, id)| {
        ctx.units.get(name).and_then(|e| e.record).is_some_and(|o| {
            o.state == crate::store::State::Running && o.container_id.as_deref() != Some(id)
        })
    })
}

/// The digest image updates chose for `unit`'s image, if they chose one.
pub fn image_target(ctx: &Context, unit: &crate::unit::Unit) -> Option<String> {
    match &unit.container.source {
        crate::unit::Source::Image { reference, .. } => ctx.updates.target(&unit.name, reference),
        crate::unit::Source::Rootfs(_) => None,
    }
}

/// Whether the units directory is refused now (then nothing is removed for its sake).
pub fn dir_refused(ctx: &Context) -> bool {
    ctx.dir_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some()
}

/// Whether the shim of `r`'s container wrote its exit file (it does just before it exits).
pub fn exit_recorded(ctx: &Context, r: &Record) -> bool {
    r.container_id.as_deref().is_some_and(|id| {
        ctx.paths
            .container(id)
            .join(crate::shim::EXIT_FILE)
            .exists()
    })
}

/// Whether the record's shim runs, by /proc (pid and start time).
pub fn shim_alive(r: &Record) -> bool {
    match (r.shim_pid, r.shim_start) {
        (Some(pid), Some(start)) => launch::alive(pid, start),
        _ => false,
    }
}

/// Asks the units that `names` (wanted or required, and down) to start, as an operator's
/// `rctl start` would but without clearing a hold (see `Intent::PullIn`).
pub fn pull_in(ctx: &Context, names: &[String]) {
    for name in names {
        tracing::info!(wanted = %name, "starting a unit this one wants or requires");
        ctx.queue.tell(name, Intent::PullIn);
    }
}
