//! Logs of removed units. In: the logs directory and the units loaded; out: the logs of units
//! no longer loaded removed, all of them (`rctl logs --prune`) or those not written for
//! `keep_removed` (daemon config `[logs]`, checked at daemon start and then periodically).
//!
//! A unit is "loaded" while the daemon's table has it, valid or not: its logs are never
//! touched. The check is one directory listing and a stat per file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::rotate::unit_of;

/// The log files in `dir` per unit, with the time the newest was last written.
pub fn by_unit(dir: &Path) -> std::io::Result<BTreeMap<String, (Vec<PathBuf>, SystemTime)>> {
    let mut out: BTreeMap<String, (Vec<PathBuf>, SystemTime)> = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(unit) = name.to_str().and_then(unit_of) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let slot = out
            .entry(unit.to_string())
            .or_insert_with(|| (Vec::new(), SystemTime::UNIX_EPOCH));
        slot.0.push(entry.path());
        slot.1 = slot.1.max(mtime);
    }
    Ok(out)
}

/// Removes the logs of units for which `loaded` is false; with `older_than`, only those last
/// written that long before `now`. Returns the units whose logs went.
pub fn prune(
    dir: &Path,
    loaded: impl Fn(&str) -> bool,
    older_than: Option<Duration>,
    now: SystemTime,
) -> std::io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for (unit, (files, newest)) in by_unit(dir)? {
        if loaded(&unit) {
            continue;
        }
        if let Some(age) = older_than {
            if now.duration_since(newest).unwrap_or_default() < age {
                continue;
            }
        }
        for f in files {
            let _ = std::fs::remove_file(f);
        }
        removed.push(unit);
    }
    Ok(removed)
}

/// How often the age rule is applied: half the age, between a second and an hour.
pub fn period(keep: Duration) -> Duration {
    (keep / 2).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Applies the age rule now and then every `period(keep)` until `stop` is cancelled. Call once
/// the units directory has been scanned (before, every unit looks removed).
pub async fn run(ctx: Arc<crate::context::Context>, stop: tokio_util::sync::CancellationToken) {
    loop {
        // Read at each sweep: a SIGHUP may have changed it.
        let keep = ctx.settings().keep_removed;
        let c = ctx.clone();
        let swept = tokio::task::spawn_blocking(move || {
            let names: std::collections::BTreeSet<String> = c.units.names().into_iter().collect();
            prune(
                &c.paths.logs,
                |u| names.contains(u),
                Some(keep),
                SystemTime::now(),
            )
        })
        .await;
        match swept {
            Ok(Ok(units)) if !units.is_empty() => {
                tracing::info!(units = ?units, keep = %humantime::format_duration(keep), "removed the logs of removed units")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot sweep old logs"),
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(period(keep)) => {}
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_spares_loaded_units_and_young_logs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "web.log",
            "web.log.1",
            "db.log",
            "old.log",
            "old.log.2",
            "gone.log",
            "x.txt",
        ] {
            std::fs::write(d.join(f), "t stdout F x\n").unwrap();
        }
        let day = Duration::from_secs(86400);
        let old = SystemTime::now() - 3 * day;
        for f in ["old.log", "old.log.2", "web.log", "web.log.1"] {
            let file = std::fs::File::options()
                .write(true)
                .open(d.join(f))
                .unwrap();
            file.set_modified(old).unwrap();
        }
        let units = by_unit(d).unwrap();
        assert_eq!(
            units.keys().collect::<Vec<_>>(),
            ["db", "gone", "old", "web"]
        );
        assert_eq!(units["web"].0.len(), 2);
        let loaded = |u: &str| u == "web" || u == "db";
        // The age rule: only what was last written long enough ago.
        let removed = prune(d, loaded, Some(2 * day), SystemTime::now()).unwrap();
        assert_eq!(removed, ["old"]);
        assert!(!d.join("old.log.2").exists());
        assert!(d.join("web.log.1").exists());
        // --prune: every unit not loaded.
        let removed = prune(d, loaded, None, SystemTime::now()).unwrap();
        assert_eq!(removed, ["gone"]);
        assert!(d.join("x.txt").exists() && d.join("db.log").exists());
        assert_eq!(
            period(Duration::from_secs(7 * 86400)),
            Duration::from_secs(3600)
        );
        assert_eq!(period(Duration::from_secs(10)), Duration::from_secs(5));
    }
}
