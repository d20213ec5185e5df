//! OCI runtime CLI (runc, crun, youki): typed operations in, argv out; errors keep the runtime's own words.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

/// A failed runtime operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime binary could not be executed at all.
    #[error("runtime {}: cannot execute for `{op}`: {source}", binary.display())]
    Exec {
        /// The binary.
        binary: PathBuf,
        /// The operation.
        op: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The runtime ran and reported a failure.
    #[error("runtime {op} {id}: {message}")]
    Failed {
        /// The operation.
        op: &'static str,
        /// The container id.
        id: String,
        /// The runtime's own message (its stderr or its log).
        message: String,
    },
    /// The runtime did not finish within its deadline; it was killed with what it started.
    #[error("runtime {op} {id}: no answer within {}; killed (what it said: {stderr})", humantime::format_duration(*after))]
    TimedOut {
        /// The operation.
        op: &'static str,
        /// The container id.
        id: String,
        /// The deadline.
        after: std::time::Duration,
        /// Its stderr until then.
        stderr: String,
    },
    /// The runtime's output could not be understood.
    #[error("runtime {op}: unexpected output: {message}")]
    Output {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        message: String,
    },
}

/// The subset of `runc state` we use.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerState {
    /// Container id.
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// "created", "running", "paused", "stopped".
    pub status: String,
}

/// How an exec'd process differs from the container's own (`docker exec -e/-w/-u`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOverrides {
    /// `KEY=VALUE`s added to the container's environment.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: Option<String>,
    /// Numeric uid and gid.
    pub user: Option<(u32, u32)>,
}

/// An OCI runtime CLI with its state directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The runtime binary.
    pub binary: PathBuf,
    /// The runtime's `--root` (its state directory, under rcd's own root).
    pub root: PathBuf,
    /// `--systemd-cgroup`: cgroups paths are systemd's `slice:prefix:name`, made as scopes.
    pub systemd_cgroup: bool,
    /// How long one call (state, list, kill, delete) may take before it is killed.
    pub timeout: std::time::Duration,
}

/// The default deadline of a runtime call: runc's own waits on systemd are 30 s at most.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Runtime {
    /// A runtime binary with its state directory.
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Runtime {
            binary: binary.into(),
            root: root.into(),
            systemd_cgroup: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same runtime with another deadline per call.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same runtime with systemd's cgroup driver on or off.
    pub fn with_systemd_cgroup(mut self, on: bool) -> Self {
        self.systemd_cgroup = on;
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        // The runtime must never notify a service manager on our behalf.
        cmd.env_remove("NOTIFY_SOCKET");
        cmd.arg("--root").arg(&self.root);
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd
    }

    /// `run --detach`: creates and starts the container in one runtime call (one exec fewer
    /// than create + start) and returns once its process runs. Its stdio are the given handles,
    /// so the runtime's error goes to `log` (JSON lines) as well.
    pub fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        log: &Path,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<(), Error> {
        let op = "run";
        let mut cmd = self.command();
        cmd.arg("--log")
            .arg(log)
            .arg("--log-format")
            .arg("json")
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let status = cmd.status().map_err(|source| Error::Exec {
            binary: self.binary.clone(),
            op,
            source,
        })?;
        if status.success() {
            return Ok(());
        }
        Err(Error::Failed {
            op,
            id: id.to_string(),
            message: last_log_error(log).unwrap_or_else(|| format!("exited with {status}")),
        })
    }

    /// `exec`: a command in the running container, with the container's process settings
    /// (user, environment, capabilities). The caller picks stdio and waits; the process's host
    /// pid goes to `pid_file`.
    pub fn exec_command(
        &self,
        id: &str,
        argv: &[String],
        pid_file: &Path,
        tty: bool,
        overrides: &ExecOverrides,
    ) -> Command {
        let mut cmd = self.command();
        cmd.arg("exec").arg("--pid-file").arg(pid_file);
        if tty {
            cmd.arg("--tty");
        }
        for e in &overrides.env {
            cmd.arg("--env").arg(e);
        }
        if let Some(cwd) = &overrides.cwd {
            cmd.arg("--cwd").arg(cwd);
        }
        if let Some((uid, gid)) = overrides.user {
            cmd.arg("--user").arg(format!("{uid}:{gid}"));
        }
        cmd.arg(id).args(argv);
        cmd
    }

    /// `kill`: sends a signal to the container's init (or all its processes); a container
    /// that is gone or already stopped is success.
    pub fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), Error> {
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal]);
        match self.run("kill", id, &args) {
            Err(Error::Failed { message, .. }) if is_gone(&message) => Ok(()),
            other => other.map(drop),
        }
    }

    /// `delete --force`: removes the container and its cgroup; "does not exist" is success.
    /// Without a runtime call when the runtime keeps no state for `id` (runc, crun and youki
    /// all keep it in `<root>/<id>`): the shim deletes its container before it records the
    /// exit, so the daemon's own deletes mostly find nothing, and each call costs an exec of
    /// the runtime (about 10 ms of CPU for runc). It also lets a start that a runtime which
    /// cannot be executed never made be rolled back.
    pub fn delete(&self, id: &str) -> Result<(), Error> {
        if matches!(std::fs::symlink_metadata(self.root.join(id)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        {
            return Ok(());
        }
        match self.run("delete", id, &["delete", "--force", id]) {
            Err(Error::Failed { message, .. }) if is_gone(&message) => Ok(()),
            other => other.map(drop),
        }
    }

    /// `state`: None when the runtime does not know the container.
    pub fn state(&self, id: &str) -> Result<Option<ContainerState>, Error> {
        match self.run("state", id, &["state", id]) {
            Ok(out) => serde_json::from_slice(&out)
                .map(Some)
                .map_err(|e| Error::Output {
                    op: "state",
                    message: e.to_string(),
                }),
            Err(Error::Failed { message, .. }) if is_gone(&message) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `list`: every container under this runtime root.
    pub fn list(&self) -> Result<Vec<ContainerState>, Error> {
        let out = self.run("list", "", &["list", "--format", "json"])?;
        let text = String::from_utf8_lossy(&out);
        if text.trim().is_empty() || text.trim() == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str(&text).map_err(|e| Error::Output {
            op: "list",
            message: e.to_string(),
        })
    }

    fn run(&self, op: &'static str, id: &str, args: &[&str]) -> Result<Vec<u8>, Error> {
        let mut cmd = self.command();
        cmd.args(args);
        let out = match crate::bounded::run(cmd, b"", self.timeout) {
            Ok(out) => out,
            Err(
                crate::bounded::RunError::Spawn(source) | crate::bounded::RunError::Wait(source),
            ) => {
                return Err(Error::Exec {
                    binary: self.binary.clone(),
                    op,
                    source,
                })
            }
            Err(crate::bounded::RunError::TimedOut { stderr }) => {
                return Err(Error::TimedOut {
                    op,
                    id: id.to_string(),
                    after: self.timeout,
                    stderr: clean_message(&String::from_utf8_lossy(&stderr))
                        .unwrap_or_else(|| "nothing".into()),
                })
            }
        };
        if out.status.success() {
            return Ok(out.stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(Error::Failed {
            op,
            id: id.to_string(),
            message: clean_message(&stderr)
                .unwrap_or_else(|| format!("exited with {}", out.status)),
        })
    }
}

/// True when the runtime's message says the container is not there (or no longer running).
fn is_gone(message: &str) -> bool {
    message.contains("does not exist")
        || message.contains("not found")
        || message.contains("container not running")
        || message.contains("process already finished")
}

/// The last error message of a runtime JSON log file.
fn last_log_error(log: &Path) -> Option<String> {
    #[derive(Deserialize)]
    struct Line {
        level: String,
        msg: String,
    }
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .find(|l| l.level == "error" || l.level == "fatal")
        .map(|l| l.msg)
}

/// The useful part of a runtime's stderr: logfmt `msg="..."` if present, else the last line.
fn clean_message(stderr: &str) -> Option<String> {
    let line = stderr.lines().rev().find(|l| !l.trim().is_empty())?;
    if let Some(start) = line.find("msg=\"") {
        let rest = &line[start + 5..];
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => break,
                c => out.push(c),
            }
        }
        return Some(out);
    }
    Some(line.trim().to_string())
}

/// Kills the process named in `pid_file` (an `exec`'s) and all its descendants: a shell's
/// children would otherwise outlive it, reparented inside the container.
pub fn kill_tree(pid_file: &Path) {
    if let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        kill_pid_tree(pid);
    }
}

/// Kills `pid` and all its descendants. For a runtime's `exec` still unreaped (so its pid is
/// its own): the command is its child (the runtime is its subreaper) even before the runtime
/// has written the pid file.
pub fn kill_pid_tree(pid: i32) {
    let mut victims = vec![pid];
    let mut i = 0;
    // Stop each before listing its children, so none is born unseen.
    while i < victims.len() {
        let p = victims[i];
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGSTOP,
        );
        victims.extend(children(p));
        i += 1;
    }
    for p in victims {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The children of `pid` (from `/proc/<pid>/task/*/children`).
fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let cases = [
            (
                "time=\"2026\" level=error msg=\"container \\\"x\\\" does not exist\"\n",
                "container \"x\" does not exist",
            ),
            ("plain failure\n\n", "plain failure"),
        ];
        for (input, want) in cases {
            assert_eq!(clean_message(input).as_deref(), Some(want));
        }
        assert!(is_gone("container \"x\" does not exist"));
        assert!(!is_gone("permission denied"));
    }

    #[test]
    fn deleting_what_the_runtime_never_had_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A binary that cannot run: any runtime call would fail with Error::Exec.
        let rt = Runtime::new("/nonexistent/runc", dir.path());
        assert!(rt.delete("gone").is_ok());
        std::fs::create_dir(dir.path().join("known")).unwrap();
        assert!(matches!(rt.delete("known"), Err(Error::Exec { .. })));
    }
}
