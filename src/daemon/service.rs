//! The service manager's side of the daemon (sd_notify, `Type=notify`): READY=1 once the units
//! are read and the running containers re-adopted (so `rctl status` is complete from then on),
//! STATUS= with the counts of units by state, WATCHDOG=1 while the daemon works when
//! `WatchdogSec=` asks for it, STOPPING=1 on the way out. Nothing runs without NOTIFY_SOCKET.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::context::Context;

/// How often STATUS= is refreshed (sent only when it changed) without a watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(10);

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("sd_notify: {e}");
    }
}

/// Whether a service manager listens.
fn managed() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// `12 units: 9 running, 1 waiting, 1 failed, 1 pending`.
pub fn status_line(ctx: &Context) -> String {
    ctx.units.view(|table| {
        let mut by: BTreeMap<&'static str, usize> = BTreeMap::new();
        for e in table.values() {
            let state = match (&e.record, &e.unit) {
                (Some(r), _) => r.state.as_str(),
                (None, Some(_)) => "pending",
                (None, None) => "invalid",
            };
            *by.entry(state).or_default() += 1;
        }
        let parts: Vec<String> = by.iter().map(|(s, n)| format!("{n} {s}")).collect();
        format!("{} units: {}", table.len(), parts.join(", "))
    })
}

/// READY=1, with the first STATUS=, then the watchdog and status refreshes until the daemon
/// stops.
pub async fn ready(ctx: &Arc<Context>) {
    if !managed() {
        return;
    }
    let status = status_line(ctx);
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    tracing::info!("{status}; READY=1 sent");
    let watchdog = sd_notify::watchdog_enabled();
    let every = watchdog.map_or(STATUS_EVERY, |w| (w / 2).max(Duration::from_millis(10)));
    let mut last = status;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = ctx.cancel.cancelled() => break,
        }
        // Counting takes the unit table's lock: a daemon stuck on it stops petting the
        // watchdog, and the service manager restarts it.
        let status = status_line(ctx);
        let mut states = Vec::new();
        if watchdog.is_some() {
            states.push(NotifyState::Watchdog);
        }
        if status != last {
            states.push(NotifyState::Status(&status));
        }
        if !states.is_empty() {
            send(&states);
        }
        last = status;
    }
}

/// STOPPING=1.
pub fn stopping() {
    if managed() {
        send(&[NotifyState::Stopping]);
    }
}
