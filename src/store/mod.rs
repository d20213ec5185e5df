//! Persistent state under `--root`: one record per unit (its container, counters and operator
//! intent), written atomically so that a crash at any moment leaves a readable whole.

pub mod atomic;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A state file that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("state {}: {source}", path.display())]
pub struct Error {
    /// The file.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

/// Where a unit's container stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Loaded, not started (autostart off, or not yet reconciled).
    Pending,
    /// The start pipeline is running (a crash here is cleaned up at the next daemon start).
    Starting,
    /// The start pipeline waits for an image pull (shown, not persisted, like `Starting`).
    Pulling,
    /// The container runs under its shim.
    Running,
    /// Exited; its policy keeps it so.
    Exited,
    /// Exited or failed to start; its policy restarts it after a backoff delay.
    Restarting,
    /// Stopped by the operator (`rctl stop`).
    Stopped,
    /// Its policy gave up (max_retries reached, or a start failure under `no`).
    Failed,
    /// Wants to start, but waits for another unit (its `container:` network's target).
    Waiting,
}

impl State {
    /// The name `rctl status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Starting => "starting",
            State::Pulling => "pulling",
            State::Running => "running",
            State::Exited => "exited",
            State::Restarting => "restarting",
            State::Stopped => "stopped",
            State::Failed => "failed",
            State::Waiting => "waiting",
        }
    }
}

/// Everything the daemon must remember about one unit across its own restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The unit's name.
    pub unit: String,
    /// Bumped for every new container instance (recreation), so ids never repeat.
    pub generation: u64,
    /// Spec hash of the current container instance; None before the first start.
    pub spec_hash: Option<String>,
    /// Runtime id of the current container instance.
    pub container_id: Option<String>,
    /// Current state.
    pub state: State,
    /// When the state last changed (ms since the epoch).
    pub since_ms: u64,
    /// Host pid of the container's init, while running.
    pub pid: Option<i32>,
    /// The shim's pid, while running.
    pub shim_pid: Option<i32>,
    /// The shim's start time in clock ticks, to tell it from a reused pid.
    pub shim_start: Option<u64>,
    /// The boot the container was started in (/proc/sys/kernel/random/boot_id).
    pub boot_id: Option<String>,
    /// When the container last started (ms).
    pub started_at_ms: Option<u64>,
    /// When it last ended (ms).
    pub finished_at_ms: Option<u64>,
    /// Its last exit code.
    pub exit_code: Option<i32>,
    /// Restarts by policy since the last operator start.
    pub restarts: u32,
    /// Consecutive quick failures: the backoff exponent.
    pub backoff_step: u32,
    /// When a pending restart is due (ms since the epoch), as shown to the operator.
    pub restart_at_ms: Option<u64>,
    /// When it is due on CLOCK_BOOTTIME (ms): what the daemon waits by, so that the wall clock
    /// set back or forward neither stretches nor skips a backoff. Valid in this boot only.
    #[serde(default)]
    pub restart_due_boot_ms: Option<u64>,
    /// Held stopped by `rctl stop`.
    pub hold: bool,
    /// `rctl start` (or a recreation of a running container) asks for a start regardless of autostart.
    pub start_requested: bool,
    /// `rctl restart` asks to stop and start the running container.
    pub restart_requested: bool,
    /// The last error (a start failure, a policy that gave up).
    pub error: Option<String>,
    /// The stop signal the current container was started with.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// The stop timeout the current container was started with (ms).
    #[serde(default)]
    pub stop_timeout_ms: Option<u64>,
    /// The ports the current container's image exposes (`80/tcp`); information, not published.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// What the current container got from its networks (bridge mode).
    #[serde(default)]
    pub network: Option<crate::network::attach::Joined>,
    /// The network the current container shares (`container:` mode).
    #[serde(default)]
    pub shared_network: Option<crate::network::shared::Shared>,
    /// While waiting: what for.
    #[serde(default)]
    pub waiting_for: Option<String>,
    /// Why the last container ended, when more than its code says: `oom` (killed by the
    /// kernel's OOM killer).
    #[serde(default)]
    pub exit_reason: Option<String>,
    /// The current container's image's HEALTHCHECK (its monitor needs it after a restart of
    /// the daemon).
    #[serde(default)]
    pub image_health: Option<crate::health::ImageHealth>,
    /// The container each unit this one `requires` ran when this one started: a required
    /// unit whose container is replaced since (recreated, updated) has this one start again.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub required: std::collections::BTreeMap<String, String>,
    /// The digest the current container's image reference resolved to (an image unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Digest of the secrets the container was given (see `Unit::secret_digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_digest: Option<String>,
}

impl Record {
    /// A fresh record for a unit never seen before.
    pub fn new(unit: &str, now_ms: u64) -> Self {
        Record {
            unit: unit.to_string(),
            generation: 0,
            spec_hash: None,
            container_id: None,
            state: State::Pending,
            since_ms: now_ms,
            pid: None,
            shim_pid: None,
            shim_start: None,
            boot_id: None,
            started_at_ms: None,
            finished_at_ms: None,
            exit_code: None,
            restarts: 0,
            backoff_step: 0,
            restart_at_ms: None,
            restart_due_boot_ms: None,
            hold: false,
            start_requested: false,
            restart_requested: false,
            error: None,
            stop_signal: None,
            stop_timeout_ms: None,
            exposed_ports: Vec::new(),
            network: None,
            shared_network: None,
            waiting_for: None,
            image_health: None,
            exit_reason: None,
            required: Default::default(),
            image_digest: None,
            secret_digest: None,
        }
    }

    /// Forgets a pending restart (both of its clocks).
    pub fn clear_restart(&mut self) {
        self.restart_at_ms = None;
        self.restart_due_boot_ms = None;
    }

    /// Forgets the container's network: it was taken down (or, shared, is not its own).
    pub fn clear_network(&mut self) {
        self.network = None;
        self.shared_network = None;
    }

    /// Moves to `state`, stamping the time.
    pub fn set_state(&mut self, state: State, now_ms: u64) {
        if state != State::Waiting {
            self.waiting_for = None;
        }
        if self.state != state {
            self.state = state;
            self.since_ms = now_ms;
        }
    }
}

/// The records directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating) the records directory.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, unit: &str) -> PathBuf {
        self.dir.join(format!("{unit}.json"))
    }

    /// Writes a record atomically (data fsynced; see `atomic::Sync::Data` for why not the
    /// directory: records describe containers, which do not outlive a reboot).
    pub fn save(&self, record: &Record) -> Result<(), Error> {
        let path = self.path(&record.unit);
        atomic::write_json_with(&path, record, atomic::Sync::Data)
            .map_err(|source| Error { path, source })
    }

    /// Deletes a unit's record.
    pub fn remove(&self, unit: &str) -> Result<(), Error> {
        let path = self.path(unit);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error { path, source }),
        }
    }

    /// Every readable record; unreadable ones are returned as errors beside them, never trusted.
    pub fn load_all(&self) -> (Vec<Record>, Vec<Error>) {
        let mut records = Vec::new();
        let mut errors = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(source) => {
                errors.push(Error {
                    path: self.dir.clone(),
                    source,
                });
                return (records, errors);
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                // A temporary file of an interrupted write: the old record is still whole.
                if name.starts_with('.') {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            match atomic::read_json::<Record>(&path) {
                Ok(Some(r)) => records.push(r),
                Ok(None) => {}
                Err(source) => errors.push(Error { path, source }),
            }
        }
        records.sort_by(|a, b| a.unit.cmp(&b.unit));
        (records, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut r = Record::new("web", 1);
        r.restarts = 3;
        store.save(&r).unwrap();
        std::fs::write(dir.path().join("broken.json"), b"{\"unit\":").unwrap();
        std::fs::write(dir.path().join(".web.json.tmp1"), b"{").unwrap();
        let (records, errors) = store.load_all();
        assert_eq!(records, vec![r]);
        assert_eq!(errors.len(), 1);
        store.remove("web").unwrap();
        store.remove("web").unwrap();
        assert!(store.load_all().0.is_empty());
    }
}
