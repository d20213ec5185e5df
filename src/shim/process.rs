//! The shim's own life: detach, become subreaper, create and start the container through the
//! runtime, report, copy its output to the log, reap it, record its exit, delete it.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, setsid, ForkResult, Pid};

use super::{Exit, Options, Report, EXIT_FILE, PID_FILE, RUNTIME_LOG, SHIM_LOG, SYNC_FD};
use crate::runtime::Runtime;
use crate::{logs, store};

/// Runs the shim. Must be called before any thread exists (it forks). Returns the process
/// exit code of whichever process returns.
pub fn run(opts: Options) -> i32 {
    // SAFETY: the fd number is ours by contract with the daemon (dup'd there before exec);
    // nothing else in this process owns it.
    let sync = unsafe { OwnedFd::from_raw_fd(SYNC_FD) };
    // Runtime children must not inherit the report channel, or the daemon never sees EOF.
    let _ = nix::fcntl::fcntl(
        &sync,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    if let Err(code) = detach() {
        return code;
    }
    let mut sync = File::from(sync);
    let shim_log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(opts.dir.join(SHIM_LOG))
        .ok();
    let log_shim = |msg: &str| {
        if let Some(mut f) = shim_log.as_ref() {
            let _ = writeln!(
                f,
                "{} {msg}",
                humantime::format_rfc3339_millis(std::time::SystemTime::now())
            );
        }
    };
    // Orphaned container processes must be reparented to us, so that we can reap the init.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        log_shim(&format!("cannot become subreaper: {e}"));
    }
    let runtime =
        Runtime::new(&opts.runtime, &opts.runtime_root).with_systemd_cgroup(opts.systemd_cgroup);
    // When it started, on the clock the kernel's log counts in: an OOM kill logged before this
    // belongs to an earlier run of the same container.
    let started_us = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0);
    match start(&opts, &runtime) {
        Ok((pid, logger)) => {
            let report = Report::Started {
                pid: pid.as_raw(),
                shim_pid: std::process::id() as i32,
            };
            let cgroups_path = crate::spec::cgroups_path_of(&opts.bundle.join("config.json"));
            let watched = cgroups_path.as_deref().and_then(watch_oom);
            send(&mut sync, &report);
            drop(sync);
            let mut exit = wait_exit(pid);
            // Read before the delete removes the cgroup: did the OOM killer end it? Under
            // systemd the scope's cgroup may already be gone once the last process ended;
            // then what the watch saw while it ran says, and failing that (the kernel signals
            // memory.events from a work queue, which may run after systemd removed the
            // cgroup) the kernel's log of the kill.
            let at_exit = cgroups_path
                .as_deref()
                .and_then(|c| crate::cgroup::usage(c).oom_kills);
            let seen = watched.map_or(0, |w| w.load(Ordering::Relaxed));
            exit.oom = at_exit.unwrap_or(0).max(seen) > 0
                || (at_exit.is_none()
                    && exit.code != 0
                    && cgroups_path
                        .as_deref()
                        .is_some_and(|c| crate::cgroup::kernel_log_says_oom(c, started_us)));
            // The init is gone, so the kernel ended the rest of its pid namespace; the readers
            // end when the last writer closes. Bound the wait for the disk anyway.
            let (dropped, error) = logger.finish(Duration::from_secs(2));
            if let Some(e) = error {
                log_shim(&format!("log: {e}"));
            }
            if dropped.total() > 0 {
                log_shim(&format!(
                    "log: dropped {} stdout and {} stderr lines (the log file could not keep up)",
                    dropped.stdout, dropped.stderr
                ));
            }
            if dropped.journal > 0 {
                log_shim(&format!(
                    "log: {} lines in the log file did not reach journald",
                    dropped.journal
                ));
            }
            // Deleted before the exit is recorded: an exit file means the runtime no longer
            // knows the container, so the daemon can restart it without a delete of its own.
            if let Err(e) = runtime.delete(&opts.id) {
                log_shim(&format!("{e}"));
            }
            let path = opts.dir.join(EXIT_FILE);
            if let Err(e) = store::atomic::write_json_with(&path, &exit, store::atomic::Sync::Data)
            {
                log_shim(&format!("cannot record exit {exit:?}: {e}"));
            }
            reap_strays();
            0
        }
        Err(error) => {
            log_shim(&error);
            let _ = runtime.delete(&opts.id);
            send(&mut sync, &Report::Failed { error });
            reap_strays();
            1
        }
    }
}

/// Double fork and a new session: the shim survives its parent (the daemon) and has no
/// controlling terminal. Err carries the exit code for the intermediate processes.
fn detach() -> Result<(), i32> {
    // SAFETY: no thread exists yet in this process (contract of `run`).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            let _ = waitpid(child, None);
            return Err(0);
        }
        Ok(ForkResult::Child) => {}
        Err(_) => return Err(1),
    }
    let _ = setsid();
    // SAFETY: still single-threaded.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => Err(0),
        Ok(ForkResult::Child) => {
            // Lead a process group of our own, so the daemon can end us and the runtime calls
            // we make in one signal (launch::kill_group).
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            Ok(())
        }
        Err(_) => Err(1),
    }
}

fn start(opts: &Options, runtime: &Runtime) -> Result<(Pid, logs::writer::Logger), String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&opts.log)
        .map_err(|e| format!("cannot open log {}: {e}", opts.log.display()))?;
    let (out_r, out_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let pid_file = opts.dir.join(PID_FILE);
    let _ = std::fs::remove_file(&pid_file);
    let runtime_log = opts.dir.join(RUNTIME_LOG);
    let _ = std::fs::remove_file(&runtime_log);
    let _ = std::fs::remove_file(opts.dir.join(EXIT_FILE));
    let dropped = opts.dir.join(logs::writer::DROPPED_FILE);
    let _ = std::fs::remove_file(&dropped);
    runtime
        .run_detached(
            &opts.id,
            &opts.bundle,
            &pid_file,
            &runtime_log,
            Stdio::from(out_w),
            Stdio::from(err_w),
        )
        .map_err(|e| e.to_string())?;
    // Our copies of the write ends are closed now (moved into the runtime's Command), so the
    // readers end exactly when the container's last process closes its stdio.
    let logger = logs::writer::start(
        opts.log.clone(),
        log,
        opts.log_limits,
        dropped,
        opts.journal.clone(),
        out_r,
        err_r,
    );
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .ok_or_else(|| format!("runtime wrote no pid to {}", pid_file.display()))?;
    Ok((Pid::from_raw(pid), logger))
}

/// Follows the OOM kills of a cgroup v2 container while it runs (inotify on its
/// `memory.events`, which the kernel signals on every change), so that an OOM kill is known
/// even when the cgroup is removed as soon as it empties (systemd's scopes are). None on
/// cgroup v1, where the cgroup stays until the runtime deletes it.
fn watch_oom(cgroups_path: &str) -> Option<Arc<AtomicU64>> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let file = crate::cgroup::unified_dir(cgroups_path)?.join("memory.events");
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).ok()?;
    inotify.add_watch(&file, AddWatchFlags::IN_MODIFY).ok()?;
    let seen = Arc::new(AtomicU64::new(0));
    let read = move || {
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| crate::cgroup::oom_kills(&t))
    };
    seen.fetch_max(read().unwrap_or(0), Ordering::Relaxed);
    let s = seen.clone();
    let spawned = std::thread::Builder::new()
        .name("oom-watch".into())
        .spawn(move || loop {
            match inotify.read_events() {
                Ok(events) => {
                    if let Some(n) = read() {
                        s.fetch_max(n, Ordering::Relaxed);
                    }
                    // The watch ends with the cgroup (IN_IGNORED).
                    if events
                        .iter()
                        .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
                    {
                        break;
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        });
    spawned.ok().map(|_| seen)
}

/// Waits for the exact init pid (never -1: that would steal the runtime's statuses).
fn wait_exit(pid: Pid) -> Exit {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => {
                return Exit {
                    code,
                    signal: None,
                    at_ms: super::now_ms(),
                    oom: false,
                }
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Exit {
                    code: 128 + sig as i32,
                    signal: Some(sig as i32),
                    at_ms: super::now_ms(),
                    oom: false,
                }
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => {
                // Not our child (should not happen as subreaper): poll until it is gone.
                while nix::sys::signal::kill(pid, None).is_ok() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return Exit {
                    code: 255,
                    signal: None,
                    at_ms: super::now_ms(),
                    oom: false,
                };
            }
        }
    }
}

/// Reaps whatever else was reparented to us, once every runtime call is done.
fn reap_strays() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

fn send(sync: &mut File, report: &Report) {
    if let Ok(mut line) = serde_json::to_vec(report) {
        line.push(b'\n');
        let _ = sync.write_all(&line);
    }
}
