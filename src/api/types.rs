//! What the API sends: a unit's status, its inspection, errors.

use serde::{Deserialize, Serialize};

/// One unit as `rctl status --output json` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UnitStatus {
    /// The unit's name.
    pub name: String,
    /// pending, waiting, starting, pulling, running, exited, restarting, stopped, failed, or invalid (a file that
    /// never had a valid version).
    pub state: String,
    /// Host pid of the container's first process.
    pub pid: Option<i32>,
    /// Restarts by policy since the last operator start.
    pub restarts: u32,
    /// The last exit code.
    pub exit_code: Option<i32>,
    /// Why it ended, when the code does not say: `oom`.
    #[serde(default)]
    pub exit_reason: Option<String>,
    /// The file's current problem if any, else the last start or policy error.
    pub error: Option<String>,
    /// Spec hash of the running (or last) container; else of the loaded unit.
    pub spec_hash: Option<String>,
    /// When the container last started (RFC 3339).
    pub started_at: Option<String>,
    /// When it last ended (RFC 3339).
    pub finished_at: Option<String>,
    /// When the state last changed (RFC 3339).
    pub since: Option<String>,
    /// When a pending restart is due (RFC 3339).
    pub restart_at: Option<String>,
    /// The unit file.
    pub file: Option<String>,
    /// The other files the loaded unit is made of, in merge order: its template, its drop-ins.
    #[serde(default)]
    pub sources: Vec<String>,
    /// The restart policy.
    pub policy: Option<String>,
    /// `[install] autostart`.
    pub autostart: Option<bool>,
    /// Held stopped by `rctl stop`.
    pub held: bool,
    /// `[unit] description`.
    pub description: Option<String>,
    /// The runtime's container id.
    pub container_id: Option<String>,
    /// The image the unit names (normalized), for image units.
    #[serde(default)]
    pub image: Option<String>,
    /// The digest the container's image reference resolved to.
    #[serde(default)]
    pub image_digest: Option<String>,
    /// Image updates (`[update]`): what runs, what was tried, how it went.
    #[serde(default)]
    pub update: Option<crate::update::View>,
    /// While `pulling`: how far the pull is.
    #[serde(default)]
    pub pull: Option<crate::image::progress::Counts>,
    /// The ports the container's image exposes (`80/tcp`): information, nothing is published.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// The networks the container joined: addresses, gateways, published ports (for a
    /// `container:` unit, those of the container whose network it shares).
    #[serde(default)]
    pub network: Option<crate::network::attach::Joined>,
    /// For a `container:` unit: the unit whose network its container shares.
    #[serde(default)]
    pub shares_network_of: Option<String>,
    /// While `waiting`: what for (`unit db to run`).
    #[serde(default)]
    pub waiting_for: Option<String>,
    /// The running container's health: status, failing streak, last 5 probe results.
    #[serde(default)]
    pub health: Option<crate::health::HealthState>,
    /// `[unit] after`, `requires`, `wants`.
    #[serde(default)]
    pub deps: crate::unit::Deps,
    /// Log lines the shim dropped since the container started (the log file could not keep
    /// up; see docs/operations.md).
    #[serde(default)]
    pub logs_dropped: u64,
}

/// `rctl inspect`: the unit as loaded, its record and its bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inspect {
    /// The status summary.
    pub status: UnitStatus,
    /// The unit as loaded (its last valid version).
    pub unit: Option<serde_json::Value>,
    /// The persisted record.
    pub record: Option<serde_json::Value>,
    /// The OCI bundle directory of the current container.
    pub bundle: Option<String>,
    /// The log file.
    pub log: String,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// `rctl shutdown`'s answer, once the daemon is on its way out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShutDown {
    /// Whether every container was stopped (else they keep running: live restore).
    pub containers_stopped: bool,
}

/// `rctl reload`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reloaded {
    /// Units whose desired state changed.
    pub changed: Vec<String>,
}

/// The daemon itself, for `rctl` to warn about.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// rcd's version.
    pub version: String,
    /// The units directory.
    pub units_dir: String,
    /// The state root.
    pub root: String,
    /// The OCI runtime.
    pub runtime: String,
    /// Why the units directory is not being read, if it is not.
    pub units_dir_error: Option<String>,
}

/// One stored image, as `rctl image ls` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageInfo {
    /// Normalized reference.
    pub name: String,
    /// The config blob's digest (the image id, as Docker names it).
    pub id: String,
    /// The manifest's digest.
    pub manifest: String,
    /// Bytes of its layer blobs (as stored, compressed).
    pub size: u64,
    /// How many layers.
    pub layers: usize,
    /// When it was pulled or imported (RFC 3339).
    pub stored: Option<String>,
    /// Units that name it or whose container stands on it.
    pub used_by: Vec<String>,
}

/// `POST /v1/images/pull` and `/v1/images/rm`: which image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRequest {
    /// As the operator wrote it (`busybox`, `host:5000/app:1`, `name@sha256:...`).
    pub reference: String,
}

/// Names a volume (`rctl volume rm`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeRequest {
    /// The volume.
    pub name: String,
}

/// `rctl volume prune`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumesPruned {
    /// The volumes removed.
    pub removed: Vec<String>,
}

/// One line of a pull's answer (newline-delimited JSON, one every few hundred ms).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PullLine {
    /// The normalized reference.
    pub image: String,
    /// Layer and byte counters so far.
    pub progress: crate::image::progress::Counts,
    /// The stored image, on the last line of a pull that worked.
    pub done: Option<ImageInfo>,
    /// Why it failed, on the last line of a pull that did not.
    pub error: Option<String>,
}

/// `rctl image rm`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRemoved {
    /// The image removed.
    pub image: String,
    /// What was freed with it.
    pub swept: crate::image::gc::Swept,
}

/// `rctl image import`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImagesImported {
    /// The images recorded.
    pub images: Vec<ImageInfo>,
}

/// `GET /v1/units/{name}/cat`: the effective unit as TOML, each value with its origin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cat {
    /// The text.
    pub text: String,
}
