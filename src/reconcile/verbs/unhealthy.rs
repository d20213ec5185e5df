//! Unhealthy: the container failed its health check and its unit says to restart or stop it.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;
use crate::pipeline;
use crate::pipeline::cleanup::Depth;
use crate::reconcile::record::{apply, now_ms, save};
use crate::reconcile::verbs::stop::stop_container;
use crate::restart::{self, Outcome};
use crate::store::{Record, State};
use crate::unit::Unit;

/// The container is unhealthy and its unit says to act: restart it through the restart path
/// (counted, with backoff, whatever the policy), or stop it (`failed` until started again).
pub async fn unhealthy(
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
