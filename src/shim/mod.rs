//! rcd-shim: one per container, outlives the daemon. In: a bundle and a runtime; out: a running
//! container, its log file, and its exit status written durably.
//!
//! `process` is the shim's own life (no async runtime); `launch` is the daemon's side
//! (spawning a shim, reading its report, watching it die, telling it from a reused pid).

pub mod launch;
pub mod process;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File in the container directory holding the exit status the shim recorded.
pub const EXIT_FILE: &str = "exit.json";
/// File in the container directory where the runtime logs (JSON lines).
pub const RUNTIME_LOG: &str = "runtime.log";
/// File in the container directory where the runtime writes the init pid.
pub const PID_FILE: &str = "init.pid";
/// File in the container directory where the shim logs its own trouble.
pub const SHIM_LOG: &str = "shim.log";
/// The fd number on which the shim reports the start result.
pub const SYNC_FD: i32 = 3;

/// What the daemon tells a shim to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The runtime's container id.
    pub id: String,
    /// The OCI bundle directory.
    pub bundle: PathBuf,
    /// The runtime binary.
    pub runtime: PathBuf,
    /// The runtime's `--root`.
    pub runtime_root: PathBuf,
    /// The runtime's `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// The container's log file (appended to).
    pub log: PathBuf,
    /// The container's directory (exit file, pid file, runtime log).
    pub dir: PathBuf,
    /// When the log file rotates and how many files are kept (fixed for this container's
    /// life: a changed limit applies at the next start).
    pub log_limits: crate::logs::Limits,
    /// The journald driver's destination: None for the file alone.
    pub journal: Option<crate::logs::journal::Target>,
}

impl Options {
    /// The argv the shim binary is called with.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut args = Vec::new();
        for (flag, value) in [
            ("--id", Path::new(&self.id)),
            ("--bundle", &self.bundle),
            ("--runtime", &self.runtime),
            ("--runtime-root", &self.runtime_root),
            ("--log", &self.log),
            ("--dir", &self.dir),
        ] {
            args.push(flag.into());
            args.push(value.as_os_str().to_owned());
        }
        if self.systemd_cgroup {
            args.push("--systemd-cgroup".into());
        }
        for (flag, value) in [
            ("--log-max-size", self.log_limits.max_size),
            ("--log-max-files", u64::from(self.log_limits.max_files)),
        ] {
            args.push(flag.into());
            args.push(value.to_string().into());
        }
        if let Some(j) = &self.journal {
            args.extend(["--journal-socket".into(), j.socket.clone().into_os_string()]);
            args.extend(["--journal-unit".into(), j.unit.clone().into()]);
            if let Some(image) = &j.image {
                args.extend(["--journal-image".into(), image.into()]);
            }
        }
        args
    }
}

/// The shim's one report to the daemon, a JSON line on the sync fd.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Report {
    /// The container runs.
    Started {
        /// Host pid of the container's init.
        pid: i32,
        /// The shim's pid.
        shim_pid: i32,
    },
    /// The container could not be started; nothing is left behind.
    Failed {
        /// Why, in the runtime's words where it gave them.
        error: String,
    },
}

/// How a container ended, as the shim recorded it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Exit {
    /// Exit code; 128+signal for a death by signal (the shell's convention).
    pub code: i32,
    /// The killing signal, if any.
    pub signal: Option<i32>,
    /// When the shim saw it, in milliseconds since the epoch.
    pub at_ms: u64,
    /// The kernel's OOM killer killed a process of the container (its cgroup says so).
    #[serde(default)]
    pub oom: bool,
}

pub use crate::clock::{boot_ms, now_ms};
