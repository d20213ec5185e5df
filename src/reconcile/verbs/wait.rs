//! Wait: the unit waits for units it depends on (and stops first when one it requires went).

use std::sync::Arc;

use crate::context::Context;
use crate::pipeline;
use crate::pipeline::cleanup::Depth;
use crate::reconcile::deps;
use crate::reconcile::record::{now_ms, save};
use crate::reconcile::verbs::stop::stop_container;
use crate::store::{Record, State};
use crate::unit::Unit;

/// Records that the unit waits (for the container whose network it would share).
pub async fn wait(
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
pub async fn yield_to(
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
