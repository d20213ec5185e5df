//! Stop: a running container stopped with its signal and timeout, held stopped (`rctl stop`) or
//! to start again (`rctl restart`); every container at a clean shutdown without live restore.

use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;
use crate::pipeline;
use crate::pipeline::cleanup::Depth;
use crate::reconcile::record::{now_ms, save};
use crate::shim::launch;
use crate::store::{Record, State};
use crate::unit::Unit;
use tracing::Instrument;

/// Stops the running container; with `hold` it stays stopped (rctl stop), otherwise a restart
/// request follows (rctl restart).
pub async fn stop(
    ctx: &Arc<Context>,
    unit: Option<&Unit>,
    record: Option<Record>,
    hold: bool,
) -> Result<(), pipeline::Error> {
    let Some(mut r) = record else { return Ok(()) };
    // A restart keeps the instance's rootfs mounted and its network up, as a restart by
    // policy does (same address, and units sharing its network are not bounced).
    let depth = if hold { Depth::Unmount } else { Depth::Runtime };
    stop_container(ctx, unit, &mut r, depth).await?;
    r.set_state(State::Stopped, now_ms());
    if hold {
        r.restart_requested = false;
        r.start_requested = false;
    }
    save(ctx, r).await
}

/// Stops the record's container if its shim lives, records its exit, and takes the instance
/// apart to `depth`.
pub async fn stop_container(
    ctx: &Arc<Context>,
    unit: Option<&Unit>,
    r: &mut Record,
    depth: Depth,
) -> Result<(), pipeline::Error> {
    let Some(id) = r.container_id.clone() else {
        return Ok(());
    };
    // The container stops the way it was started to stop, whatever the file says now.
    let signal = r
        .stop_signal
        .clone()
        .or_else(|| unit.and_then(|u| u.container.stop_signal.clone()))
        .unwrap_or_else(|| "SIGTERM".to_string());
    let timeout = r
        .stop_timeout_ms
        .map(Duration::from_millis)
        .or_else(|| unit.map(|u| u.container.stop_timeout))
        .unwrap_or(Duration::from_secs(10));
    if let (Some(pid), Some(start)) = (r.shim_pid, r.shim_start) {
        if pipeline::blocking(move || launch::alive(pid, start)).await? {
            tracing::info!(container = %id, "stopping with {signal}, timeout {timeout:?}");
            let exit = pipeline::stop::stop(ctx, &id, pid, start, &signal, timeout).await?;
            if let Some(exit) = exit {
                r.exit_code = Some(exit.code);
                r.finished_at_ms = Some(exit.at_ms);
                r.exit_reason = exit.oom.then(|| "oom".to_string());
            }
            let mut attrs = vec![("container", id.clone()), ("signal", signal.clone())];
            attrs.extend(exit.map(|e| ("exit_code", e.code.to_string())));
            ctx.events.emit(&r.unit, "stopped", &attrs);
        }
    }
    pipeline::cleanup::instance(ctx, &id, depth).await?;
    if depth != Depth::Runtime {
        r.clear_network();
    }
    r.pid = None;
    r.shim_pid = None;
    r.shim_start = None;
    r.clear_restart();
    Ok(())
}

/// A clean shutdown without live restore (`[daemon] live_restore = false`): stops every running
/// container, those that name others (`after`, `requires`, `container:`) before the ones they
/// name, each wave in parallel, each with its stop signal and timeout. They are left `pending`,
/// so the next daemon start starts them as its rules say (not held, as after `rctl stop`).
pub async fn stop_all(ctx: &Arc<Context>) {
    loop {
        let running: Vec<(String, Record, Option<Arc<Unit>>)> = ctx.units.view(|v| {
            v.iter()
                .filter_map(|(n, e)| {
                    let r = e.record.as_ref().filter(|_| e.shim_running())?;
                    Some((n.clone(), r.clone(), e.unit.clone()))
                })
                .collect()
        });
        if running.is_empty() {
            return;
        }
        let named = |name: &str| {
            running.iter().any(|(other, _, u)| {
                other != name
                    && u.as_deref()
                        .is_some_and(|u| crate::unit::references(u).any(|(_, t)| t == name))
            })
        };
        let mut wave: Vec<_> = running
            .iter()
            .filter(|(n, _, _)| !named(n))
            .cloned()
            .collect();
        if wave.is_empty() {
            // A circle: nothing is first; stop them together.
            wave = running;
        }
        let stops = wave.into_iter().map(|(name, mut r, unit)| {
            async move {
                if let Err(e) = stop_container(ctx, unit.as_deref(), &mut r, Depth::Unmount).await {
                    tracing::error!("stopping at shutdown: {e}");
                }
                r.set_state(State::Pending, now_ms());
                if let Err(e) = save(ctx, r).await {
                    tracing::error!("{e}");
                }
            }
            .instrument(tracing::info_span!("unit", unit = %name))
        });
        futures_util::future::join_all(stops).await;
    }
}
