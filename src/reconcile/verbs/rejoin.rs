//! Rejoin: the container whose network this one shares moved; start this one again there.

use std::sync::Arc;

use crate::context::Context;
use crate::pipeline;
use crate::pipeline::cleanup::Depth;
use crate::reconcile::record::{now_ms, save};
use crate::reconcile::verbs::stop::stop_container;
use crate::store::{Record, State};
use crate::unit::Unit;

/// The container whose network this one shares runs in another namespace now (it was
/// recreated, or restarted without a pinned one): stop this one and start it again there.
pub async fn rejoin(
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
