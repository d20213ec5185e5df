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

/// How many events may wait for the writer before new ones are dropped from the file (they
/// still reach followers); far above any burst the daemon makes.
const BACKLOG: usize = 8192;

/// What the writer thread is sent.
enum ToWriter {
    Event(Event),
    /// Answered once everything sent before is in the file.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The event log of one daemon. `emit` never touches the disk: a writer thread of its own
/// appends, fed through a bounded channel, so no caller (one holding the unit table's lock,
/// an async worker) waits on a write.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    seq: Mutex<u64>,
    live: broadcast::Sender<Event>,
    writer: Option<std::sync::mpsc::SyncSender<ToWriter>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Events the writer could not take (its backlog was full).
    lost: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ToWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToWriter::Event(e) => write!(f, "Event({})", e.seq),
            ToWriter::Flush(_) => write!(f, "Flush"),
        }
    }
}

impl Log {
    /// Opens the log under `dir` (created), continuing its sequence; drops an expired
    /// rotated file; starts the writer.
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
        let (tx, rx) = std::sync::mpsc::sync_channel(BACKLOG);
        let d = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("rcd-events".into())
            .spawn(move || write_loop(&d, rx))?;
        Ok(Log {
            dir: dir.to_path_buf(),
            seq: Mutex::new(last),
            live,
            writer: Some(tx),
            thread: Some(thread),
            lost: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Records an event for `unit`: numbered, sent to followers, queued for the file (a
    /// failure to write it is logged, never fatal).
    pub fn emit(&self, unit: &str, action: &str, attributes: &[(&str, String)]) {
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        *seq += 1;
        let event = Event {
            time_ms: crate::clock::now_ms(),
            seq: *seq,
            unit: unit.to_string(),
            action: action.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        // Queued under the sequence lock, so the file is in sequence order.
        let queued = self
            .writer
            .as_ref()
            .is_some_and(|w| w.try_send(ToWriter::Event(event.clone())).is_ok());
        drop(seq);
        if !queued {
            let n = self.lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                tracing::warn!(lost = n + 1, "event log writer behind; events not written");
            }
        }
        let _ = self.live.send(event);
    }

    /// Follows new events (subscribe before reading the past, then skip what was read).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }

    /// The recorded events at or after `since_ms`, oldest first, every event emitted before
    /// the call included. Blocks: call it off the async workers.
    pub fn since(&self, since_ms: u64) -> Vec<Event> {
        self.flush();
        let mut out = read_file(&self.dir.join("events.log.1"));
        out.extend(read_file(&self.dir.join("events.log")));
        out.retain(|e| e.time_ms >= since_ms);
        out
    }

    /// Waits until everything emitted so far is in the file.
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if let Some(w) = &self.writer {
            if w.send(ToWriter::Flush(tx)).is_ok() {
                let _ = rx.recv();
            }
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        // The writer ends once the channel closes, after writing what is queued.
        self.writer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer: appends each event as a JSON line to `events.log`, rotating it at a size.
fn write_loop(dir: &Path, rx: std::sync::mpsc::Receiver<ToWriter>) {
    let path = dir.join("events.log");
    let mut failing = false;
    for msg in rx {
        match msg {
            ToWriter::Flush(done) => {
                let _ = done.send(());
            }
            ToWriter::Event(event) => match append(dir, &path, &event) {
                Ok(()) => failing = false,
                Err(e) => {
                    // Once per run of failures (a full disk), not per event.
                    if !failing {
                        tracing::warn!("event log {}: {e}", dir.display());
                    }
                    failing = true;
                }
            },
        }
    }
}

fn append(dir: &Path, path: &Path, event: &Event) -> std::io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_FILE) {
        std::fs::rename(path, dir.join("events.log.1"))?;
    }
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(&line)
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
