//! Remove: the file is gone; stop, take the instance apart, forget the unit (its log stays).

use std::sync::Arc;

use crate::context::Context;
use crate::pipeline;
use crate::pipeline::cleanup::Depth;
use crate::reconcile::hosts::refresh_hosts;
use crate::reconcile::record::poke_dependents;
use crate::reconcile::verbs::stop::stop_container;
use crate::store::Record;

/// The file is gone: stop, remove the instance, forget the unit (its log stays).
pub async fn remove(
    ctx: &Arc<Context>,
    name: &str,
    record: Option<Record>,
) -> Result<(), pipeline::Error> {
    if let Some(mut r) = record {
        // Named in the event, so that readers that know containers by id (the Docker API)
        // know which one went.
        let container = r.container_id.clone();
        stop_container(ctx, None, &mut r, Depth::Retire).await?;
        // Off the async workers: a removal is an unlink and a directory fsync.
        let c = ctx.clone();
        let n = name.to_string();
        pipeline::blocking(move || c.store.remove(&n)).await??;
        tracing::info!("unit removed");
        let attrs: Vec<(&str, String)> =
            container.map(|id| ("container", id)).into_iter().collect();
        ctx.events.emit(name, "removed", &attrs);
        refresh_hosts(ctx);
    }
    poke_dependents(ctx, name);
    ctx.units.forget_record(name);
    crate::meters::get().forget(name);
    Ok(())
}
