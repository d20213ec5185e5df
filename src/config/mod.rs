//! Daemon configuration: paths and the runtime from flags (defaults as in DESIGN.md), the rest
//! from the config file (`file`).

pub mod file;

use std::path::{Path, PathBuf};

/// Where the daemon reads, writes and listens.
#[derive(Debug, Clone)]
pub struct Config {
    /// The units directory.
    pub units_dir: PathBuf,
    /// The state root.
    pub root: PathBuf,
    /// The API socket.
    pub socket: PathBuf,
    /// The OCI runtime; None means the first of runc, crun, youki found on PATH.
    pub runtime: Option<PathBuf>,
    /// The shim binary; None means `rcd-shim` beside the daemon's own executable, else on PATH.
    pub shim: Option<PathBuf>,
    /// How long the runtime may take to start a container before the start is a failure.
    pub start_timeout: std::time::Duration,
    /// How long any other runtime call may take.
    pub runtime_timeout: std::time::Duration,
    /// How long the API waits for an operator's request to be applied before it answers.
    pub intent_timeout: std::time::Duration,
    /// How often every unit is looked at, events or not.
    pub resync: std::time::Duration,
    /// What the config file says.
    pub file: file::FileConfig,
    /// Where the config file is read from (again at SIGHUP), and whether it was named with
    /// `--config` (then it must exist).
    pub config_path: (PathBuf, bool),
}

impl Default for Config {
    fn default() -> Self {
        Config {
            units_dir: "/etc/rcd/units".into(),
            root: "/var/lib/rcd".into(),
            socket: "/run/rcd/rcd.sock".into(),
            runtime: None,
            shim: None,
            start_timeout: std::time::Duration::from_secs(120),
            runtime_timeout: crate::runtime::DEFAULT_TIMEOUT,
            intent_timeout: std::time::Duration::from_secs(300),
            resync: std::time::Duration::from_secs(30),
            file: file::FileConfig::default(),
            config_path: (file::DEFAULT_PATH.into(), false),
        }
    }
}

/// Derived paths under the state root.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The state root.
    pub root: PathBuf,
    /// The runtime's state directory.
    pub runtime_root: PathBuf,
    /// One directory per container instance.
    pub containers: PathBuf,
    /// Unit records.
    pub records: PathBuf,
    /// Container logs, one file per unit (kept after the unit is removed).
    pub logs: PathBuf,
    /// Named volumes.
    pub volumes: PathBuf,
}

impl Paths {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        Paths {
            root: root.to_path_buf(),
            runtime_root: root.join("runc"),
            containers: root.join("containers"),
            records: root.join("units"),
            logs: root.join("logs"),
            volumes: root.join("volumes"),
        }
    }

    /// A container instance's directory.
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers.join(id)
    }

    /// A container instance's bundle.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.container(id).join("bundle")
    }

    /// A unit's log file.
    pub fn log(&self, unit: &str) -> PathBuf {
        self.logs.join(format!("{unit}.log"))
    }
}

/// A short digest of a state root, in container ids and cgroup paths, so that daemons on
/// different roots never collide.
pub fn root_tag(root: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(root.to_string_lossy().as_bytes());
    hex::encode(&digest[..3])
}

/// Finds the first of `names` that is an executable file on PATH.
pub fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

/// True for an existing regular file with an execute bit.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
