//! Secrets changed under a running container: restart it, or rewrite its files in place and
//! signal it, or only note the new content for its next start, as the secrets' `on_change`
//! says (the strongest of them when several differ).

use std::sync::Arc;

use crate::context::Context;
use crate::pipeline;
use crate::pipeline::cleanup::Depth;
use crate::reconcile::record::{now_ms, save};
use crate::reconcile::verbs::stop::stop_container;
use crate::store::{Record, State};
use crate::unit::secrets::OnChange;
use crate::unit::Unit;

/// What to do about changed secrets: a restart if any secret asks for one, else the signals
/// asked for, else nothing.
pub fn reaction(unit: &Unit) -> OnChange {
    let mut out = OnChange::None;
    for s in &unit.secrets {
        match (&s.on_change, &out) {
            (OnChange::Restart, _) => return OnChange::Restart,
            (OnChange::Signal(sig), OnChange::None) => out = OnChange::Signal(sig.clone()),
            _ => {}
        }
    }
    out
}

/// Applies changed secrets to the running container of `unit`.
pub async fn secrets_changed(
    ctx: &Arc<Context>,
    unit: Option<&Unit>,
    record: Option<Record>,
) -> Result<(), pipeline::Error> {
    let (Some(unit), Some(mut r)) = (unit, record) else {
        return Ok(());
    };
    let Some(id) = r.container_id.clone() else {
        return Ok(());
    };
    let how = reaction(unit);
    ctx.events.emit(
        &unit.name,
        "secret-changed",
        &[(
            "on_change",
            match &how {
                OnChange::Restart => "restart".to_string(),
                OnChange::Signal(s) => format!("signal:{s}"),
                OnChange::None => "none".to_string(),
            },
        )],
    );
    match how {
        OnChange::Restart => {
            tracing::info!(container = %id, "a secret changed; restarting the container");
            // As a rejoin: not a restart by policy; the start gives the new content.
            r.start_requested = true;
            save(ctx, r.clone()).await?;
            stop_container(ctx, Some(unit), &mut r, Depth::Runtime).await?;
            r.set_state(State::Pending, now_ms());
            save(ctx, r).await
        }
        OnChange::Signal(signal) => {
            let (c, u, i) = (ctx.clone(), unit.clone(), id.clone());
            let sig = signal.clone();
            pipeline::blocking(move || -> Result<(), pipeline::Error> {
                pipeline::secrets::stage(&c.paths.container(&i), &u)?;
                c.runtime.kill(&i, &sig, false)?;
                Ok(())
            })
            .await??;
            tracing::info!(container = %id, signal, "a secret changed; rewritten and signalled");
            r.secret_digest = unit.secret_digest.clone();
            save(ctx, r).await
        }
        OnChange::None => {
            tracing::info!(container = %id, "a secret changed; applied at the next start");
            r.secret_digest = unit.secret_digest.clone();
            save(ctx, r).await
        }
    }
}
