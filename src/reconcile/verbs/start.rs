//! Start: run the start pipeline and record the result; a failure goes through the policy.

use std::sync::Arc;

use crate::context::Context;
use crate::pipeline;
use crate::reconcile::hosts::refresh_hosts;
use crate::reconcile::record::{apply, now_ms, save, set};
use crate::reconcile::steps::Nudge;
use crate::reconcile::watch::watch_exit;
use crate::restart::{self, Outcome};
use crate::store::{Record, State};
use crate::unit::Unit;

/// `unit` running its image pinned to `digest` (from the store if it is there).
fn pinned_to(unit: &Arc<Unit>, digest: &str) -> Option<Arc<Unit>> {
    let crate::unit::Source::Image { reference, .. } = &unit.container.source else {
        return None;
    };
    let d = digest.parse().ok()?;
    let mut u = (**unit).clone();
    u.container.source = crate::unit::Source::Image {
        reference: crate::image::reference::by_digest(reference, &d),
        // A digest names the same bytes forever: the stored copy is it.
        pull: crate::unit::PullPolicy::Missing,
    };
    Some(Arc::new(u))
}

/// Runs the start pipeline and records the result; a failure goes through the policy.
pub async fn start(
    ctx: &Arc<Context>,
    unit: &Arc<Unit>,
    record: Option<Record>,
    nudge: &Nudge,
    join: Option<&crate::network::shared::Shared>,
) -> Result<(), pipeline::Error> {
    let now = now_ms();
    let mut r = record.unwrap_or_else(|| Record::new(&unit.name, now));
    // The digest image updates chose: the unit runs its image pinned to it (stored, so no
    // network is needed to go back to one that ran before).
    let target = crate::reconcile::steps::image_target(ctx, unit);
    let same_image = target.is_none() || target == r.image_digest;
    // A restart reuses the instance (and its writable layer); a new spec or a new image gets
    // a new one.
    let id = match (&r.container_id, &r.spec_hash) {
        (Some(id), Some(h)) if *h == unit.spec_hash && same_image => id.clone(),
        _ => {
            // Unique across the unit's lifetimes too (a record is forgotten when its file goes,
            // and the old instance may still be cleaned up in the background).
            r.generation = ctx.next_generation(r.generation, now);
            let id = ctx.container_id(&unit.name, r.generation);
            ctx.events
                .emit(&unit.name, "create", &[("container", id.clone())]);
            id
        }
    };
    r.container_id = Some(id.clone());
    r.spec_hash = Some(unit.spec_hash.clone());
    // The digest the instance is made for, known before the start succeeds: a start that
    // fails on it is not taken for one on another digest.
    if target.is_some() {
        r.image_digest = target.clone();
    }
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
    let pinned = target.as_deref().and_then(|t| pinned_to(unit, t));
    let run = pinned.as_ref().unwrap_or(unit);
    let result = pipeline::start::start(ctx, run, &id, join, &on_pull, superseded).await;
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
            r.image_digest = started.image_digest;
            r.required = unit
                .deps
                .requires
                .iter()
                .filter_map(|n| Some((n.clone(), ctx.units.get(n)?.record?.container_id?)))
                .collect();
            r.secret_digest = unit.secret_digest.clone();
            r.stop_timeout_ms = Some(unit.container.stop_timeout.as_millis() as u64);
            r.error = None;
            r.set_state(State::Running, now);
            tracing::info!(container = %id, pid = l.pid, "container started");
            let image_health = r.image_health.clone();
            save(ctx, r).await?;
            refresh_hosts(ctx);
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
