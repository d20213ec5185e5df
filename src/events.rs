//! Step 11 of the start pipeline: the event log, as Docker's events. What happened to each unit
//! (its file loaded, changed, invalid or removed; its container created, pulling, started,
//! exited, restarting, stopped, failed, waiting, removed; its health changing) is appended to
//! `<root>/events/events.log` as JSON lines, and sent to those following. The log is rotated
//! at a size, and a rotated file older than the retention is dropped, so `rctl events --since`
//! reaches back across daemon restarts for a bounded time.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// The current file is rotated above this size; one rotated file is kept.
const MAX_FILE: u64 = 8 * 1024 * 1024;
/// A rotated file older than this is dropped.
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When (ms since the epoch).
    pub time_ms: u64,
    /// Increasing across daemon restarts: orders events of the same millisecond.
    pub seq: u64,
    /// The unit.
    pub unit: String,
    /// What happened: `loaded`, `changed`, `invalid`, `file-removed`, `create`, `pulling`,
    /// `start`, `exited`, `restarting`, `stopped`, `failed`, `waiting`, `health`, `removed`.
    pub action: String,
    /// Details: `container`, `exit_code`, `after` (a restart delay), `error`, `status`, ...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// The event log of one daemon.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    seq: Mutex<u64>,
    live: broadcast::Sender<Event>,
}

impl Log {
    /// Opens the log under `dir` (created), continuing its sequence; drops an expired
    /// rotated file.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let old = dir.join("events.log.1");
        let expired = std::fs::metadata(&old)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > RETENTION);
        if expired {
            let _ = std::fs::remove_file(&old);
        }
        let last = read_file(&dir.join("events.log"))
            .last()
            .map_or(0, |e| e.seq);
        let (live, _) = broadcast::channel(1024);
        Ok(Log {
            dir: dir.to_path_buf(),
            seq: Mutex::new(last),
            live,
        })
    }

    /// Records an event for `unit` (a failure to write it is logged, never fatal).
    pub fn emit(&self, unit: &str, action: &str, attributes: &[(&str, String)]) {
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        *seq += 1;
        let event = Event {
            time_ms: crate::shim::now_ms(),
            seq: *seq,
            unit: unit.to_string(),
            action: action.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        // Written under the sequence lock, so the file is in sequence order.
        if let Err(e) = self.append(&event) {
            tracing::warn!("event log {}: {e}", self.dir.display());
        }
        drop(seq);
        let _ = self.live.send(event);
    }

    fn append(&self, event: &Event) -> std::io::Result<()> {
        let path = self.dir.join("events.log");
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_FILE) {
            std::fs::rename(&path, self.dir.join("events.log.1"))?;
        }
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?
            .write_all(&line)
    }

    /// Follows new events (subscribe before reading the past, then skip what was read).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }

    /// The recorded events at or after `since_ms`, oldest first.
    pub fn since(&self, since_ms: u64) -> Vec<Event> {
        let mut out = read_file(&self.dir.join("events.log.1"));
        out.extend(read_file(&self.dir.join("events.log")));
        out.retain(|e| e.time_ms >= since_ms);
        out
    }
}

/// The events of one file; a torn last line (a crash mid-write) is skipped.
fn read_file(path: &Path) -> Vec<Event> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// Whether `e` passes the filters of `rctl events`.
pub fn matches(e: &Event, unit: Option<&str>) -> bool {
    unit.is_none_or(|u| e.unit == u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_persist_in_order_across_reopening_and_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path()).expect("open");
        let mut rx = log.subscribe();
        log.emit("web", "start", &[("container", "c1".into())]);
        log.emit("db", "exited", &[("exit_code", "3".into())]);
        assert_eq!(
            rx.try_recv().map(|e| e.action).ok().as_deref(),
            Some("start")
        );
        drop(log);
        // A torn line from a crash is skipped, and the sequence continues.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("events.log"))
            .expect("open file");
        f.write_all(b"{\"time_ms\":1,\"se").expect("write");
        f.write_all(b"\n").expect("write");
        let log = Log::open(dir.path()).expect("reopen");
        log.emit("web", "stopped", &[]);
        let all = log.since(0);
        let got: Vec<(u64, &str, &str)> = all
            .iter()
            .map(|e| (e.seq, e.unit.as_str(), e.action.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1, "web", "start"),
                (2, "db", "exited"),
                (3, "web", "stopped")
            ]
        );
        assert_eq!(
            all[1].attributes.get("exit_code").map(String::as_str),
            Some("3")
        );
        assert!(log.since(all[2].time_ms + 1).is_empty());
        // Rotation keeps the previous file readable.
        std::fs::rename(
            dir.path().join("events.log"),
            dir.path().join("events.log.1"),
        )
        .expect("rotate");
        log.emit("web", "start", &[]);
        assert_eq!(log.since(0).len(), 4);
        assert!(matches(&all[0], Some("web")) && !matches(&all[1], Some("web")));
        assert!(matches(&all[1], None));
    }
}
