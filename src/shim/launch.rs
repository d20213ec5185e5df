//! The daemon's side of a shim: spawn it, read its one report, watch it exit (pidfd), and
//! tell a live shim from a reused pid after a daemon restart.
#![allow(unsafe_code)]

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Options, Report, SYNC_FD};

/// A shim that could not start its container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The shim binary could not be run.
    #[error("cannot run shim {}: {source}", binary.display())]
    Spawn {
        /// The shim binary.
        binary: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The shim ended without a readable report.
    #[error("shim for {id} exited without reporting: {detail}")]
    NoReport {
        /// The container id.
        id: String,
        /// What was read.
        detail: String,
    },
    /// The container could not be started.
    #[error("{0}")]
    Start(String),
    /// The runtime did not start the container in time; the shim and its runtime call were
    /// killed.
    #[error("container {id} did not start within {timeout:?} (the runtime hung); gave up")]
    Timeout {
        /// The container id.
        id: String,
        /// The limit.
        timeout: std::time::Duration,
    },
}

/// A running shim and its container, as the daemon records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launched {
    /// Host pid of the container's init.
    pub pid: i32,
    /// The shim's pid.
    pub shim_pid: i32,
    /// The shim's start time (clock ticks since boot), to tell it from a reused pid.
    pub shim_start: u64,
}

/// Spawns a shim for `opts` and waits for its report, at most `timeout`. Blocking: call from a
/// blocking thread.
pub fn launch(binary: &Path, opts: &Options, timeout: Duration) -> Result<Launched, Error> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Spawn {
            binary: binary.to_path_buf(),
            source: e.into(),
        })?;
    let mut cmd = Command::new(binary);
    cmd.args(opts.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("NOTIFY_SOCKET");
    let write_fd = write.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl) are made.
    unsafe {
        cmd.pre_exec(move || {
            if write_fd == SYNC_FD {
                // Same number: only the close-on-exec flag has to go.
                if libc::fcntl(write_fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(write_fd, SYNC_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        binary: binary.to_path_buf(),
        source,
    })?;
    drop(write);
    // The first shim process exits as soon as it has detached.
    let _ = child.wait();
    let buf = match read_report(read, timeout) {
        Some(buf) => buf,
        None => {
            // A hung runtime must not hold the unit forever: end the shim and its runtime call.
            for pid in find(&opts.id) {
                kill_group(pid);
            }
            return Err(Error::Timeout {
                id: opts.id.clone(),
                timeout,
            });
        }
    };
    let report: Report = serde_json::from_slice(&buf).map_err(|_| Error::NoReport {
        id: opts.id.clone(),
        detail: String::from_utf8_lossy(&buf).trim().to_string(),
    })?;
    match report {
        Report::Started { pid, shim_pid } => Ok(Launched {
            pid,
            shim_pid,
            shim_start: start_time(shim_pid).unwrap_or(0),
        }),
        Report::Failed { error } => Err(Error::Start(error)),
    }
}

/// Reads the shim's report until EOF; None if `timeout` passes first.
fn read_report(read: OwnedFd, timeout: Duration) -> Option<Vec<u8>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + timeout;
    let mut file = std::fs::File::from(read);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let ms =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&file),
            PollFlags::POLLIN,
        )];
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return Some(buf),
        }
        match file.read(&mut chunk) {
            Ok(0) => return Some(buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Some(buf),
        }
    }
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`, read by procfs).
pub fn start_time(pid: i32) -> Option<u64> {
    Some(
        procfs::process::Process::new(pid)
            .ok()?
            .stat()
            .ok()?
            .starttime,
    )
}

/// True if the process `pid` exists, started at `start` (so it is not a reused pid), and has
/// not exited: a zombie (`Z`) or one being reaped (`X`, dead: its parent's wait is releasing
/// it; /proc still shows it for a moment) is not alive.
pub fn alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    let Some(stat) = procfs::process::Process::new(pid)
        .ok()
        .and_then(|p| p.stat().ok())
    else {
        return false;
    };
    stat.starttime == start && !matches!(stat.state, 'Z' | 'X' | 'x')
}

/// A pidfd on a live shim, to await its exit without polling; None if it is already gone.
pub fn watch(pid: i32, start: u64) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    // Checked after opening: the fd now pins this exact process, so a match is final.
    alive(pid.as_raw_nonzero().get(), start).then_some(fd)
}

/// Resolves when the process behind `pidfd` has exited; false if the pidfd could not be
/// registered with the reactor (the caller then polls).
pub async fn exited(pidfd: OwnedFd) -> bool {
    // SAFETY: an OwnedFd stays open and returns the same fd until the AsyncFd drops it.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
    };
    match registered {
        Ok(fd) => fd.readable().await.is_ok(),
        Err(_) => false,
    }
}

/// Resolves when the shim `pid` (started at `start`) is gone, as `alive` tells: whoever is
/// woken by this reads `alive` next and must not see the shim still there.
pub async fn wait(pid: i32, start: u64) {
    if let Some(fd) = watch(pid, start) {
        if exited(fd).await {
            // The pidfd fires as the process exits; /proc may still show it for a moment
            // (exiting, then being reaped by its parent).
            for _ in 0..200 {
                if !alive(pid, start) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }
    // No usable pidfd: poll, rarely.
    while alive(pid, start) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Pids of shims running container `id` (from /proc), for a start the daemon did not see end.
pub fn find(id: &str) -> Vec<i32> {
    all()
        .into_iter()
        .filter(|(_, i)| i == id)
        .map(|(pid, _)| pid)
        .collect()
}

/// Every rcd-shim process on the host with the container id it runs.
pub fn all() -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
            let is_shim = args.first().is_some_and(|a| a.ends_with(b"rcd-shim"));
            if !is_shim {
                return None;
            }
            let at = args.iter().position(|a| *a == b"--id")?;
            let id = String::from_utf8_lossy(args.get(at + 1)?).into_owned();
            Some((pid, id))
        })
        .collect()
}

/// Kills a shim and its process group (the runtime calls it is making).
pub fn kill_group(pid: i32) {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    // The shim leads its own process group (it called setpgid after detaching).
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    #[test]
    fn start_time_of_self_is_stable() {
        let me = std::process::id() as i32;
        let t = super::start_time(me).unwrap();
        assert!(super::alive(me, t));
        assert!(!super::alive(me, t + 1));
        assert!(!super::alive(0, 0));
    }
}
