//! Hold: a unit whose container is not running (pending, waiting to restart) held stopped.

use std::sync::Arc;

use crate::context::Context;
use crate::pipeline;
use crate::pipeline::cleanup::Depth;
use crate::reconcile::record::{now_ms, save};
use crate::store::{Record, State};

/// Holds a unit whose container is not running (pending, or waiting to restart) stopped.
pub async fn hold(
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
