//! SIGHUP: the daemon config read again. What can change without touching a running container
//! is applied (registry access, log defaults and retention, live restore); what cannot (the
//! networks, image limits) is named as needing a restart. A config that does not parse changes
//! nothing and is logged with its file:line:col.

use std::path::Path;

use crate::config::file::FileConfig;

use crate::context::{Context, Settings};

/// Reads `path` again and applies it over `running` (updated to what now applies).
pub fn reload(ctx: &Context, path: &Path, explicit: bool, running: &mut FileConfig) {
    let new = match FileConfig::load(path, explicit) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("config not reloaded, the running one stays: {e}");
            return;
        }
    };
    let mut applied = Vec::new();
    let mut restart = Vec::new();
    if new.registries != running.registries {
        match ctx.images.reload_registries(&new) {
            Ok(()) => {
                applied.push("[registries]");
                running.registries = new.registries.clone();
            }
            Err(e) => tracing::error!("[registries] not reloaded: {e}"),
        }
    }
    if new.logs != running.logs {
        applied.push("[logs] (log limits from each container's next start)");
        running.logs = new.logs.clone();
    }
    if new.live_restore != running.live_restore {
        applied.push("[daemon] live_restore");
        running.live_restore = new.live_restore;
    }
    if new.layer_limits != running.layer_limits {
        restart.push("[images]");
    }
    if new.network != running.network {
        restart.push("[network]");
    }
    if new.cgroup_driver != running.cgroup_driver {
        restart.push("[daemon] cgroup_driver");
    }
    ctx.set_settings(Settings::of(running));
    match (applied.is_empty(), restart.is_empty()) {
        (true, true) => tracing::info!(file = %path.display(), "config reloaded: nothing changed"),
        _ => tracing::info!(
            file = %path.display(),
            "config reloaded: applied {}; needs a daemon restart: {}",
            if applied.is_empty() { "nothing".to_string() } else { applied.join(", ") },
            if restart.is_empty() { "nothing".to_string() } else { restart.join(", ") },
        ),
    }
}
