//! The updater: every second, each unit that follows its tag is looked at. A trial in progress
//! is judged by its gate (kept, or rolled back); otherwise a unit whose check is due has its
//! tag looked up (one HEAD request), and a new digest is pulled and tried. Lookups and pulls
//! run in tasks of their own, one per unit at a time, so a slow registry holds up nobody.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument;

use super::gate::{self, Observed, Verdict};
use super::{Outcome, State, Trial};
use crate::context::Context;
use crate::image::digest::Digest;
use crate::image::reference;
use crate::reconcile::intent::Intent;
use crate::unit::update::Policy;
use crate::unit::{Source, Unit};

/// Between two looks at the units.
const TICK: Duration = Duration::from_secs(1);
/// The first wait after a failed lookup; doubled each time, at most the unit's `check`.
const FIRST_BACKOFF: Duration = Duration::from_secs(30);

/// The tag a unit follows, if it follows one: its image, named by tag, with `policy =
/// "registry"`.
pub fn followed(unit: &Unit) -> Option<&str> {
    match &unit.container.source {
        Source::Image { reference, .. }
            if unit.update.policy == Policy::Registry && !reference.contains('@') =>
        {
            Some(reference)
        }
        _ => None,
    }
}

/// Runs until the daemon stops.
pub async fn run(ctx: Arc<Context>) {
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = ctx.updates.wake.notified() => {}
            () = ctx.cancel.cancelled() => return,
        }
        let asked = ctx.updates.take_now();
        let units: Vec<(String, Arc<Unit>)> = ctx.units.view(|t| {
            t.iter()
                .filter_map(|(n, e)| Some((n.clone(), e.unit.clone()?)))
                .collect()
        });
        forget_gone(&ctx, &units).await;
        for (name, unit) in units {
            let span = tracing::info_span!("unit", unit = %name);
            let Some(image) = followed(&unit).map(str::to_owned) else {
                continue;
            };
            let state = ctx
                .updates
                .get(&name)
                .filter(|s| s.image == image)
                .unwrap_or_else(|| State {
                    image: image.clone(),
                    ..State::default()
                });
            if let Some(trial) = state.trial.clone() {
                judge(&ctx, &name, &unit, state, &trial)
                    .instrument(span)
                    .await;
                continue;
            }
            let now = crate::clock::now_ms();
            let due = asked.contains(&name) || now >= ctx.updates.seen(&name).next_ms;
            let settings = ctx.settings().update;
            if !due || state.pinned || !settings.enabled {
                continue;
            }
            if !busy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone())
            {
                continue;
            }
            let (c, b, n) = (ctx.clone(), busy.clone(), name.clone());
            let check = unit.update.check.unwrap_or(settings.check);
            ctx.tasks.spawn(
                async move {
                    look(&c, &n, state, check).await;
                    b.lock().unwrap_or_else(|p| p.into_inner()).remove(&n);
                }
                .instrument(span),
            );
        }
    }
}

/// Drops the state of units whose file is gone or that no longer follow their tag (a state
/// in the middle of a trial is finished first).
async fn forget_gone(ctx: &Arc<Context>, units: &[(String, Arc<Unit>)]) {
    let gone: Vec<String> = ctx
        .updates
        .all()
        .into_iter()
        .filter(|(name, state)| {
            let unit = units.iter().find(|(n, _)| n == name).map(|(_, u)| u);
            match unit {
                None => true,
                Some(u) => match &u.container.source {
                    Source::Image { reference, .. } => *reference != state.image,
                    Source::Rootfs(_) => true,
                },
            }
        })
        .map(|(name, _)| name)
        .collect();
    for name in gone {
        let c = ctx.clone();
        let _ = crate::pipeline::blocking(move || c.updates.forget(&name)).await;
    }
}

/// Writes `state` durably, off the async workers.
async fn put(ctx: &Arc<Context>, name: &str, state: State) -> bool {
    let (c, n) = (ctx.clone(), name.to_owned());
    match crate::pipeline::blocking(move || c.updates.put(&n, state)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!("update state: {e}");
            false
        }
        Err(e) => {
            tracing::error!("update state: {e}");
            false
        }
    }
}

/// Judges a trial in progress: keeps the candidate, or goes back to what ran before.
async fn judge(ctx: &Arc<Context>, name: &str, unit: &Unit, mut state: State, trial: &Trial) {
    let record = ctx.units.get(name).and_then(|e| e.record);
    let health = record
        .as_ref()
        .and_then(|r| r.container_id.as_deref())
        .and_then(|id| ctx.health.get(id))
        .map(|h| h.status);
    let h = &unit.health;
    let checked = !h.disable
        && (h.cmd.is_some()
            || h.net.is_some()
            || h.startup.is_some()
            || record.as_ref().is_some_and(|r| r.image_health.is_some()));
    let seen = Observed {
        record: record.as_ref(),
        health,
        checked,
    };
    let now = crate::clock::now_ms();
    match gate::verdict(trial, unit.update.gate, unit.update.timeout, seen, now) {
        Verdict::Wait => {}
        Verdict::Pass => {
            tracing::info!(digest = %trial.candidate, "image update kept: the gate passed");
            state.previous = Some(trial.from.clone());
            state.trial = None;
            state.rejected = None;
            state.last = Some(Outcome {
                ok: true,
                digest: trial.candidate.clone(),
                reason: None,
                at_ms: now,
            });
            if put(ctx, name, state.clone()).await {
                crate::meters::get().updated(name, true);
                retag(ctx, &state.image, &trial.candidate).await;
                ctx.events.emit(
                    name,
                    "update-done",
                    &[
                        ("digest", trial.candidate.clone()),
                        ("from", trial.from.clone()),
                    ],
                );
            }
        }
        Verdict::Fail(reason) => {
            tracing::warn!(digest = %trial.candidate, %reason, "image update failed; rolling back to {}", trial.from);
            state.target = Some(trial.from.clone());
            state.rejected = Some(trial.candidate.clone());
            state.trial = None;
            state.last = Some(Outcome {
                ok: false,
                digest: trial.candidate.clone(),
                reason: Some(reason.clone()),
                at_ms: now,
            });
            if put(ctx, name, state).await {
                crate::meters::get().updated(name, false);
                ctx.events.emit(
                    name,
                    "update-failed",
                    &[("digest", trial.candidate.clone()), ("reason", reason)],
                );
                ctx.events
                    .emit(name, "rollback", &[("digest", trial.from.clone())]);
                crate::failpoint::hit_for("update-rolling-back", name);
                ctx.queue.tell(name, Intent::NewImage);
            }
        }
    }
}

/// Points the tag's record at the kept digest, as a pull of the tag would have.
async fn retag(ctx: &Arc<Context>, image: &str, digest: &str) {
    let Ok(d) = digest.parse::<Digest>() else {
        return;
    };
    let pinned = reference::by_digest(image, &d);
    let c = ctx.clone();
    let image = image.to_owned();
    let _held = ctx.images.shared().await;
    let _ = crate::pipeline::blocking(move || -> Result<(), crate::image::service::Error> {
        if let Some(stored) = c.images.store.get(&pinned)? {
            c.images.store.put(&crate::image::store::Image {
                name: image,
                ..stored
            })?;
        }
        Ok(())
    })
    .await;
}

/// How long to leave a tag alone after `failures` failed looks in a row and this one: 30 s,
/// doubling, at most `check`; and never less than the registry's `Retry-After`.
fn wait_after_failure(failures: u32, check: Duration, retry_after: Option<Duration>) -> Duration {
    let backoff = FIRST_BACKOFF
        .saturating_mul(1 << failures.min(10))
        .min(check);
    retry_after.map_or(backoff, |r| r.max(backoff))
}

/// When the next look is due: `check` from now, give or take a tenth (so that units set
/// alike do not all ask at once).
fn next_look(now: u64, check: Duration) -> u64 {
    let ms = check.as_millis() as u64;
    let jitter = fastrand::u64(0..=ms / 10);
    now + ms - ms / 20 + jitter
}

/// Looks the tag up and, if it names a new digest, pulls it and begins a trial.
async fn look(ctx: &Arc<Context>, name: &str, mut state: State, check: Duration) {
    let now = crate::clock::now_ms();
    let mut seen = ctx.updates.seen(name);
    let resolved = match reference::parse(&state.image) {
        Ok(r) => ctx.images.client().resolve(&r).await.map_err(|e| {
            let after = match &e {
                crate::image::registry::Error::Throttled { retry_after, .. } => *retry_after,
                _ => None,
            };
            (e.to_string(), after)
        }),
        Err(e) => Err((e.to_string(), None)),
    };
    // When the answer came: what a check cycle is timed by.
    seen.checked_ms = crate::clock::now_ms();
    let digest = match resolved {
        Ok(d) => {
            seen.failures = 0;
            seen.error = None;
            seen.digest = Some(d.to_string());
            seen.next_ms = next_look(now, check);
            d
        }
        Err((error, retry_after)) => {
            tracing::warn!("image update: looking up {}: {error}", state.image);
            seen.next_ms =
                now + wait_after_failure(seen.failures, check, retry_after).as_millis() as u64;
            seen.failures += 1;
            seen.error = Some(error);
            ctx.updates.set_seen(name, seen);
            return;
        }
    };
    ctx.updates.set_seen(name, seen.clone());
    let current = ctx
        .units
        .get(name)
        .and_then(|e| e.record)
        .and_then(|r| r.image_digest);
    let Some(current) = current else {
        // Not started on this image yet: nothing to update from.
        return;
    };
    let new = digest.to_string();
    if new == current
        || state.target.as_deref() == Some(new.as_str())
        || state.rejected.as_deref() == Some(new.as_str())
    {
        return;
    }
    if let Err(e) = begin(ctx, name, &mut state, &current, &digest).await {
        tracing::warn!("image update to {new}: {e}");
        let mut seen = ctx.updates.seen(name);
        seen.error = Some(e);
        ctx.updates.set_seen(name, seen);
    }
}

/// Keeps the running image at hand under its digest, pulls the new one by digest, and
/// records the trial: the reconciler then recreates the container on it.
async fn begin(
    ctx: &Arc<Context>,
    name: &str,
    state: &mut State,
    current: &str,
    digest: &Digest,
) -> Result<(), String> {
    // What a rollback needs must be in the store before anything changes.
    let kept = {
        let _held = ctx.images.shared().await;
        let (c, image, current) = (ctx.clone(), state.image.clone(), current.to_owned());
        crate::pipeline::blocking(move || -> Result<bool, String> {
            let Ok(d) = current.parse::<Digest>() else {
                return Ok(false);
            };
            let pinned = reference::by_digest(&image, &d);
            if c.images
                .store
                .get(&pinned)
                .map_err(|e| e.to_string())?
                .is_some()
            {
                return Ok(true);
            }
            match c.images.store.get(&image).map_err(|e| e.to_string())? {
                Some(tag) if tag.resolved() == d => {
                    c.images.keep_by_digest(&image).map_err(|e| e.to_string())?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await
        .map_err(|e| e.to_string())??
    };
    if !kept {
        tracing::warn!(
            "image update: {current} (running) is no longer stored; a rollback would pull it"
        );
    }
    let candidate = reference::by_digest(&state.image, digest);
    tracing::info!(%candidate, "image update: pulling");
    ctx.events
        .emit(name, "update-pull", &[("digest", digest.to_string())]);
    crate::failpoint::hit_for("update-pulling", name);
    let pin = ctx.images.pin(&candidate);
    let pulled = ctx.images.pull(&candidate, &pin).await;
    ctx.images.unpin(pin).await;
    pulled.map_err(|e| e.to_string())?;
    let trial = Trial {
        candidate: digest.to_string(),
        from: current.to_owned(),
        started_ms: crate::clock::now_ms(),
    };
    state.target = Some(trial.candidate.clone());
    state.trial = Some(trial);
    if !put(ctx, name, state.clone()).await {
        return Err("the update state could not be written".into());
    }
    crate::failpoint::hit_for("update-trial", name);
    tracing::info!(from = %current, to = %digest, "image update: trying the new image");
    ctx.events.emit(
        name,
        "update",
        &[("digest", digest.to_string()), ("from", current.to_owned())],
    );
    ctx.queue.tell(name, Intent::NewImage);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_looks_back_off_and_honour_retry_after() {
        let hour = Duration::from_secs(3600);
        let secs = |n| Duration::from_secs(n);
        assert_eq!(wait_after_failure(0, hour, None), secs(30));
        assert_eq!(wait_after_failure(1, hour, None), secs(60));
        assert_eq!(wait_after_failure(5, hour, None), secs(960));
        assert_eq!(wait_after_failure(20, hour, None), hour);
        // Never more often than the unit's own check.
        assert_eq!(wait_after_failure(3, secs(60), None), secs(60));
        // The registry's Retry-After wins when it asks for longer.
        assert_eq!(wait_after_failure(0, hour, Some(secs(7200))), secs(7200));
        assert_eq!(wait_after_failure(2, hour, Some(secs(5))), secs(120));
    }

    #[test]
    fn looks_are_spread_around_the_check() {
        let check = Duration::from_secs(1000);
        for _ in 0..100 {
            let next = next_look(0, check);
            assert!((950_000..=1_050_000).contains(&next), "{next}");
        }
    }
}
