//! A child process bounded in time: input on stdin, output collected, and past its deadline
//! killed with everything it started (its own process group). CNI plugins and the OCI
//! runtime's calls run through it, so that a hung one never pins a thread or a unit.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// What a finished process left.
#[derive(Debug)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// All it wrote to stdout.
    pub stdout: Vec<u8>,
    /// All it wrote to stderr.
    pub stderr: Vec<u8>,
}

/// Why a process gave no output.
#[derive(Debug)]
pub enum RunError {
    /// It could not be started.
    Spawn(io::Error),
    /// Waiting for it failed (it has been killed).
    Wait(io::Error),
    /// It ran past the deadline and was killed; what it had said on stderr.
    TimedOut {
        /// Its stderr until then.
        stderr: Vec<u8>,
    },
}

/// Runs `cmd` with `input` on stdin and waits at most `timeout` for it to exit and close its
/// output. Waits on the exact child (pidfd), never on any child, so it can run beside the
/// daemon's other children.
pub fn run(mut cmd: Command, input: &[u8], timeout: Duration) -> Result<Output, RunError> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout kills the helpers it runs too (a plugin's iptables and
        // IPAM plugins, the runtime's init).
        .process_group(0);
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    match collect(&mut child, input, Instant::now() + timeout) {
        Ok(Collected {
            stdout,
            stderr,
            finished: true,
        }) => {
            let status = child
                .wait()
                .map_err(|e| RunError::Wait(kill(&mut child, e)))?;
            Ok(Output {
                status,
                stdout,
                stderr,
            })
        }
        Ok(Collected { stderr, .. }) => {
            kill(&mut child, io::Error::other("timed out"));
            Err(RunError::TimedOut { stderr })
        }
        Err(e) => Err(RunError::Wait(kill(&mut child, e))),
    }
}

/// Kills the child's process group and reaps the child; returns `why` for convenience.
fn kill(child: &mut Child, why: io::Error) -> io::Error {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.wait();
    why
}

/// What a child said, and whether it finished (exited, output closed) before the deadline.
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    finished: bool,
}

/// Feeds stdin and drains stdout and stderr until the child has exited and both are closed,
/// or the deadline passes.
fn collect(child: &mut Child, input: &[u8], deadline: Instant) -> io::Result<Collected> {
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_child(child),
        rustix::process::PidfdFlags::empty(),
    )?;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    for fd in [
        stdin.as_ref().map(|f| f.as_fd()),
        stdout.as_ref().map(|f| f.as_fd()),
        stderr.as_ref().map(|f| f.as_fd()),
    ]
    .into_iter()
    .flatten()
    {
        rustix::io::ioctl_fionbio(fd, true)?;
    }
    let mut written = 0;
    if input.is_empty() {
        stdin = None;
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut exited = false;
    loop {
        let finished = exited && stdout.is_none() && stderr.is_none();
        let left = deadline.saturating_duration_since(Instant::now());
        if finished || left.is_zero() {
            return Ok(Collected {
                stdout: out,
                stderr: err,
                finished,
            });
        }
        // Slots: 0 stdin, 1 stdout, 2 stderr, 3 pidfd; absent ones are not polled.
        let mut fds = Vec::with_capacity(4);
        let mut slots = Vec::with_capacity(4);
        if let Some(f) = &stdin {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLOUT));
            slots.push(0);
        }
        if let Some(f) = &stdout {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            slots.push(1);
        }
        if let Some(f) = &stderr {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            slots.push(2);
        }
        if !exited {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
            slots.push(3);
        }
        // Round up so a sub-millisecond remainder does not spin.
        let ms = left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<usize> = fds
            .iter()
            .zip(&slots)
            .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, s)| *s)
            .collect();
        drop(fds);
        for slot in ready {
            match slot {
                0 => {
                    if let Some(f) = stdin.as_mut() {
                        match f.write(&input[written..]) {
                            Ok(n) => written += n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            // A plugin that exits without reading all of its config: its exit
                            // status tells the rest.
                            Err(_) => written = input.len(),
                        }
                        if written >= input.len() {
                            stdin = None;
                        }
                    }
                }
                1 => drain(&mut stdout, &mut out)?,
                2 => drain(&mut stderr, &mut err)?,
                _ => exited = true,
            }
        }
    }
}

/// Reads what is there; closes the pipe at end of file.
fn drain<R: Read>(pipe: &mut Option<R>, buf: &mut Vec<u8>) -> io::Result<()> {
    let Some(r) = pipe.as_mut() else {
        return Ok(());
    };
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => {
                *pipe = None;
                return Ok(());
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn feeds_and_collects() {
        let input = vec![b'x'; 300_000]; // more than a pipe holds
        let out = run(
            sh("wc -c; echo err >&2; exit 3"),
            &input,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "300000");
        assert_eq!(out.stderr, b"err\n");

        // A process that never reads its input still finishes.
        let out = run(sh("echo done"), &input, Duration::from_secs(10)).unwrap();
        assert_eq!(out.stdout, b"done\n");
    }

    #[test]
    fn a_hung_process_and_its_children_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let start = Instant::now();
        match run(sh(&script), b"", Duration::from_millis(300)) {
            Err(RunError::TimedOut { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild got SIGKILL with its group; it is a zombie of nobody's or gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3));
            if state.is_none_or(|s| s == "Z") {
                break;
            }
            assert!(Instant::now() < deadline, "sleep {pid} still alive: {stat}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_daemonized_helper_holding_stdout_does_not_hang_us() {
        // The child exits at once but leaves a grandchild with its stdout open.
        let start = Instant::now();
        let r = run(sh("sleep 30 & echo hi"), b"", Duration::from_millis(300));
        assert!(matches!(r, Err(RunError::TimedOut { .. })), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn spawn_failure() {
        let r = run(
            Command::new("/nonexistent/plugin"),
            b"",
            Duration::from_secs(1),
        );
        assert!(matches!(r, Err(RunError::Spawn(_))), "{r:?}");
    }
}
