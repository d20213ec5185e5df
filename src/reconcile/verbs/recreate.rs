//! Recreate: the spec changed; the old instance is retired and a new one starts if it should.

use std::sync::Arc;

use crate::context::Context;
use crate::pipeline;
use crate::pipeline::cleanup::Depth;
use crate::reconcile::record::{now_ms, save};
use crate::reconcile::verbs::stop::stop_container;
use crate::store::{Record, State};
use crate::unit::Unit;

/// The spec changed: stop and retire the old instance; a new one starts if the old one was
/// active or the unit autostarts.
pub async fn recreate(
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
    // The spec as it ran, or only the image's digest (image updates) that changed.
    if unit.is_some_and(|u| r.spec_hash.as_deref() == Some(u.spec_hash.as_str())) {
        tracing::info!("its image digest changed; recreating its container");
    } else {
        tracing::info!("unit changed; recreating its container");
    }
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
