//! Step 10 of the start pipeline: health checks, with Docker's semantics. The probe (the
//! unit's `[health]`, else the image's HEALTHCHECK) runs inside the container through the
//! runtime's `exec`; its results make the container `starting`, `healthy` or `unhealthy`. A
//! probe that outlives its timeout is killed with every process it started. The state lives
//! beside the container (`<container dir>/health.json`), so a daemon restart continues it.

pub mod net;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::context::Context;
use crate::runtime::Runtime;
use crate::unit::Health;

/// Docker's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
/// Results kept, and the output kept of each (Docker's).
const KEEP: usize = 5;
const MAX_OUTPUT: usize = 4096;

/// An image's HEALTHCHECK, from its (Docker) config: `Test` as written, durations unset at 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageHealth {
    /// `["CMD", argv...]`, `["CMD-SHELL", line]`, `["NONE"]`, or empty (inherit: none).
    pub test: Vec<String>,
    /// Time between probes.
    pub interval: Option<Duration>,
    /// Time a probe may take.
    pub timeout: Option<Duration>,
    /// Failures that make it unhealthy.
    pub retries: Option<u32>,
    /// Grace after the start.
    pub start_period: Option<Duration>,
    /// Time between probes in the grace period.
    pub start_interval: Option<Duration>,
}

/// The image's HEALTHCHECK, if its config has one (`config.Healthcheck`, Docker's key; OCI
/// configs have none).
pub fn image_health(config_json: &[u8]) -> Option<ImageHealth> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Raw {
        #[serde(default)]
        test: Vec<String>,
        interval: Option<u64>,
        timeout: Option<u64>,
        retries: Option<u32>,
        start_period: Option<u64>,
        start_interval: Option<u64>,
    }
    let v: serde_json::Value = serde_json::from_slice(config_json).ok()?;
    let raw: Raw = serde_json::from_value(v.get("config")?.get("Healthcheck")?.clone()).ok()?;
    // Nanoseconds; 0 means "the default".
    let d = |n: Option<u64>| n.filter(|&n| n > 0).map(Duration::from_nanos);
    Some(ImageHealth {
        test: raw.test,
        interval: d(raw.interval),
        timeout: d(raw.timeout),
        retries: raw.retries.filter(|&r| r > 0),
        start_period: d(raw.start_period),
        start_interval: d(raw.start_interval),
    })
}

/// A health check as it runs: every value settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The argv run in the container (empty for an HTTP or TCP probe).
    pub cmd: Vec<String>,
    /// An HTTP or TCP probe the daemon makes in the container's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<crate::unit::NetProbe>,
    /// A probe that must pass before this one runs (`[health.startup]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Box<Probe>>,
    /// Time between probes.
    pub interval: Duration,
    /// Time a probe may take.
    pub timeout: Duration,
    /// Consecutive failures that make the container unhealthy.
    pub retries: u32,
    /// Grace after the start: failures do not count until the first success.
    pub start_period: Duration,
    /// Time between probes during the grace.
    pub start_interval: Duration,
}

/// The probe for a unit's `[health]` over its image's HEALTHCHECK: the unit's keys win one by
/// one (Docker's `--health-*` flags), `disable` (or an image's `NONE` the unit does not
/// replace) means none.
pub fn resolve(unit: &Health, image: Option<&ImageHealth>) -> Option<Probe> {
    if unit.disable {
        return None;
    }
    let image_cmd = image.and_then(|i| match i.test.split_first() {
        Some((kind, argv)) if kind == "CMD" && !argv.is_empty() => Some(argv.to_vec()),
        Some((kind, [line])) if kind == "CMD-SHELL" => {
            Some(vec!["/bin/sh".into(), "-c".into(), line.clone()])
        }
        _ => None,
    });
    // The unit's own probe, of whatever kind, replaces the image's. A startup probe alone
    // makes a check too: the container is healthy once it passes.
    let startup = unit.startup.as_ref().map(|st| {
        Box::new(Probe {
            cmd: st.cmd.clone().unwrap_or_default(),
            net: st.net.clone(),
            startup: None,
            interval: st.interval,
            timeout: st.timeout,
            retries: st.retries,
            start_period: Duration::ZERO,
            start_interval: st.interval,
        })
    });
    let (cmd, net) = match (&unit.net, &unit.cmd, image_cmd) {
        (Some(net), _, _) => (Vec::new(), Some(net.clone())),
        (None, Some(cmd), _) => (cmd.clone(), None),
        (None, None, Some(cmd)) => (cmd, None),
        (None, None, None) if startup.is_some() => (Vec::new(), None),
        (None, None, None) => return None,
    };
    let pick = |u: Option<Duration>, i: Option<Duration>, d: Duration| u.or(i).unwrap_or(d);
    Some(Probe {
        cmd,
        net,
        startup,
        interval: pick(
            unit.interval,
            image.and_then(|i| i.interval),
            DEFAULT_INTERVAL,
        ),
        timeout: pick(unit.timeout, image.and_then(|i| i.timeout), DEFAULT_TIMEOUT),
        retries: unit
            .retries
            .or(image.and_then(|i| i.retries))
            .unwrap_or(DEFAULT_RETRIES),
        start_period: pick(
            unit.start_period,
            image.and_then(|i| i.start_period),
            Duration::ZERO,
        ),
        start_interval: pick(
            unit.start_interval,
            image.and_then(|i| i.start_interval),
            DEFAULT_START_INTERVAL,
        ),
    })
}

/// Docker's health states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No verdict yet.
    Starting,
    /// The last probe passed.
    Healthy,
    /// `retries` probes in a row failed (outside the start period).
    Unhealthy,
}

impl Status {
    /// As `rctl status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        }
    }
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// When it started (ms since the epoch).
    pub start_ms: u64,
    /// How long it took (ms).
    pub took_ms: u64,
    /// Its exit code; -1 when it was killed at its timeout or could not run.
    pub exit_code: i32,
    /// Its output, stdout and stderr together, cut at 4 KiB.
    pub output: String,
}

/// A container's health: its status, its failing streak, its last results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthState {
    /// The verdict.
    pub status: Status,
    /// Consecutive failures counted.
    pub failing_streak: u32,
    /// The last results, oldest first.
    pub log: VecDeque<Check>,
    /// Its startup probe passed (`[health.startup]`): the other probe runs.
    #[serde(default)]
    pub started: bool,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            status: Status::Starting,
            failing_streak: 0,
            log: VecDeque::new(),
            started: false,
        }
    }
}

impl HealthState {
    /// Takes in one result; `in_start_period` says whether the container is still within its
    /// start period. Returns whether the status changed.
    pub fn observe(&mut self, check: Check, in_start_period: bool, retries: u32) -> bool {
        let before = self.status;
        if check.exit_code == 0 {
            self.failing_streak = 0;
            self.status = Status::Healthy;
        } else if in_start_period && self.status == Status::Starting {
            // Docker's rule: a failure in the start period counts only after a first success.
        } else {
            self.failed(retries);
        }
        self.keep(check);
        self.status != before
    }

    /// Takes in one result of the startup probe, `retries` failures in a row of which make the
    /// container unhealthy; a success lets the other probe run (or, with none, is healthy).
    /// Returns whether the status changed.
    pub fn observe_startup(&mut self, check: Check, retries: u32, main: bool) -> bool {
        let before = self.status;
        if check.exit_code == 0 {
            self.started = true;
            self.failing_streak = 0;
            if !main {
                self.status = Status::Healthy;
            }
        } else {
            self.failed(retries);
        }
        self.keep(check);
        self.status != before
    }

    /// One more failure in a row; `retries` of them make the container unhealthy.
    fn failed(&mut self, retries: u32) {
        self.failing_streak += 1;
        if self.failing_streak >= retries {
            self.status = Status::Unhealthy;
        }
    }

    /// Adds `check` to the log, which keeps the last `KEEP`.
    fn keep(&mut self, check: Check) {
        self.log.push_back(check);
        while self.log.len() > KEEP {
            self.log.pop_front();
        }
    }

    /// How long to wait before the next probe.
    pub fn next_in(&self, probe: &Probe, in_start_period: bool) -> Duration {
        if in_start_period && self.status == Status::Starting {
            probe.start_interval
        } else {
            probe.interval
        }
    }
}

/// A health state file that could not be saved or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state could not be written.
    #[error("health state {}: cannot save: {source}", path.display())]
    Save {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The state could not be read back.
    #[error("health state {}: cannot read: {source}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The health of every monitored container, by container id, with the start time of the
/// run it is about (a restart of an instance keeps its id); and the turns of the probes.
#[derive(Debug)]
pub struct Registry {
    states: Mutex<HashMap<String, (u64, HealthState)>>,
    /// Probes running at once, daemon-wide. Each is a runtime `exec` (runc: a Go process that
    /// joins the container's namespaces, tens of ms of CPU before the command even runs), so
    /// a hundred units probing in the same second must not fork a hundred runtimes at once.
    /// A probe waiting for its turn is late, not failed: its timeout starts with its turn.
    probes: Semaphore,
}

impl Default for Registry {
    fn default() -> Self {
        // Two per core, as for starts: a probe mostly waits on its command, not the CPU.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Registry::with_probes((cores * 2).max(4))
    }
}

impl Registry {
    /// A registry that runs at most `probes` probes at once.
    pub fn with_probes(probes: usize) -> Self {
        Registry {
            states: Mutex::default(),
            probes: Semaphore::new(probes.max(1)),
        }
    }

    /// A container's health, if it is monitored.
    pub fn get(&self, id: &str) -> Option<HealthState> {
        self.lock().get(id).map(|(_, s)| s.clone())
    }

    /// Sets the health of the run of container `id` started at `started_ms`; `dir` is its
    /// directory, where the state is saved first if `persist` (on a blocking thread, and with
    /// no lock held: status reads never wait on the disk).
    pub async fn set(
        &self,
        id: &str,
        started_ms: u64,
        state: HealthState,
        dir: &Path,
        persist: bool,
    ) {
        if persist {
            if let Err(e) = save(dir, &state).await {
                tracing::warn!(container = %id, "{e}");
            }
        }
        self.lock().insert(id.to_string(), (started_ms, state));
    }

    /// Forgets a container (it stopped).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Forgets the run of `id` started at `started_ms`, unless a newer run replaced it.
    fn forget_run(&self, id: &str, started_ms: u64) {
        let mut states = self.lock();
        if states.get(id).is_some_and(|(s, _)| *s == started_ms) {
            states.remove(id);
        }
    }

    /// The state saved in `dir`, after a daemon restart (read on a blocking thread); None if
    /// none was saved or what was saved cannot be understood (the check starts over).
    pub async fn load(dir: &Path) -> Result<Option<HealthState>, Error> {
        let path = dir.join(FILE);
        let read = path.clone();
        let bytes = match tokio::task::spawn_blocking(move || std::fs::read(read)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Ok(Err(source)) => return Err(Error::Load { path, source }),
            Err(e) => {
                return Err(Error::Load {
                    path,
                    source: std::io::Error::other(e),
                })
            }
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Runs `probe` once in container `id` when its turn comes (see `probes`).
    pub async fn probe(&self, runtime: &Runtime, id: &str, probe: &Probe, scratch: &Path) -> Check {
        // Never closed; were it, the probe would run unbounded rather than not at all.
        let _turn = self.probes.acquire().await.ok();
        run_probe(runtime, id, probe, scratch).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, HealthState)>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }
}

const FILE: &str = "health.json";

/// Writes `state` to `dir`'s state file, atomically, on a blocking thread.
async fn save(dir: &Path, state: &HealthState) -> Result<(), Error> {
    let path = dir.join(FILE);
    let json = serde_json::to_vec(state).map_err(|e| Error::Save {
        path: path.clone(),
        source: e.into(),
    })?;
    let target = path.clone();
    let written = tokio::task::spawn_blocking(move || {
        crate::store::atomic::write_with(&target, &json, crate::store::atomic::Sync::None)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    written.map_err(|source| Error::Save { path, source })
}

/// Runs `probe` once in container `id`; kills it and everything it started at its timeout.
/// The runtime's `exec` is a child the async runtime waits on and whose output it reads, so a
/// probe in flight holds no thread.
pub async fn run_probe(runtime: &Runtime, id: &str, probe: &Probe, scratch: &Path) -> Check {
    let start_ms = crate::clock::now_ms();
    let began = Instant::now();
    let pid_file: PathBuf = scratch.join(format!("probe-{}.pid", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let mut cmd = tokio::process::Command::from(runtime.exec_command(
        id,
        &probe.cmd,
        &pid_file,
        false,
        &Default::default(),
    ));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a kill reaches the runtime's helpers (runc's init) in one call.
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Check {
                start_ms,
                took_ms: 0,
                exit_code: -1,
                output: format!("cannot run the runtime: {e}"),
            }
        }
    };
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let mut running = Running { child, pid_file };
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
    // Both pipes drained at once, so a chatty probe never blocks on a full pipe; all of it
    // bounded by the timeout, so output held open by something the probe left behind cannot
    // hold the monitor either.
    let _ = tokio::time::timeout(probe.timeout, async {
        tokio::join!(
            async { status = Some(running.child.wait().await) },
            drain(stdout, &mut out),
            drain(stderr, &mut err),
        )
    })
    .await;
    let timed_out = status.is_none();
    if timed_out {
        running.kill();
        let _ = running.child.wait().await;
    }
    let _ = std::fs::remove_file(&running.pid_file);
    out.append(&mut err);
    let mut output = String::from_utf8_lossy(&out).into_owned();
    if output.len() > MAX_OUTPUT {
        let mut cut = MAX_OUTPUT;
        while !output.is_char_boundary(cut) {
            cut -= 1;
        }
        output.truncate(cut);
    }
    let exit_code = match status {
        None => {
            output.push_str(&format!(
                "health check exceeded timeout ({})",
                humantime::format_duration(probe.timeout)
            ));
            -1
        }
        Some(Ok(s)) => s.code().unwrap_or(-1),
        Some(Err(_)) => -1,
    };
    Check {
        start_ms,
        took_ms: began.elapsed().as_millis() as u64,
        exit_code,
        output,
    }
}

/// A probe's runtime `exec` until it is reaped. Dropped unreaped (its monitor cancelled at
/// shutdown), it is killed with what it started, as at its timeout: a probe must not outlive
/// its monitor in a container left running.
struct Running {
    child: tokio::process::Child,
    pid_file: PathBuf,
}

impl Running {
    /// Kills the runtime, its group, and the command it runs with everything that started.
    /// Only while the runtime is unreaped (`id()` is then Some), so its pid cannot have been
    /// reused; through its tree as well as the pid file, which the runtime may not have
    /// written yet.
    fn kill(&mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            crate::runtime::kill_pid_tree(pid);
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            crate::runtime::kill_tree(&self.pid_file);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Reaped by tokio in the background once dropped.
        self.kill();
    }
}

/// Reads `from` to its end, keeping the first bytes (room for the cut at `MAX_OUTPUT` after
/// a lossy decode) and reading the rest away.
async fn drain(from: Option<impl AsyncRead + Unpin>, into: &mut Vec<u8>) {
    let Some(mut from) = from else {
        return;
    };
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = (MAX_OUTPUT * 4).saturating_sub(into.len());
                into.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Probes container `id` of unit `name` (started at `started_ms`) for as long as it is the
/// unit's running container (that run of it: a restart of the instance keeps the id and gets
/// a monitor of its own). `resume` continues the saved state (a daemon restart) rather than
/// starting over. The probe is read from the unit at each round, so a changed
/// `[health]` applies at once; `image` is the image's HEALTHCHECK. A changed status pokes the
/// unit (its `on_unhealthy`) and the units that wait for it.
pub fn spawn_monitor(
    ctx: &Arc<Context>,
    name: &str,
    id: &str,
    image: Option<ImageHealth>,
    started_ms: u64,
    resume: bool,
) {
    let ctx = ctx.clone();
    let name = name.to_string();
    let id = id.to_string();
    // A root span: the monitor outlives the reconcile that started it, whose span it would
    // otherwise repeat (`unit{unit=web}:unit{unit=web}`).
    let span = tracing::info_span!(parent: None, "unit", unit = %name);
    let (tasks, cancel) = (ctx.tasks.clone(), ctx.cancel.clone());
    let monitor = async move {
        let dir = ctx.paths.container(&id);
        let mut state = match resume {
            true => Registry::load(&dir).await.unwrap_or_else(|e| {
                tracing::warn!(container = %id, "{e}; the check starts over");
                None
            }),
            false => None,
        }
        .unwrap_or_default();
        // Saved at once: a daemon restart must not resume the previous run's verdict.
        ctx.health
            .set(&id, started_ms, state.clone(), &dir, !resume)
            .await;
        while let Some(probe) = current_probe(&ctx, &name, &id, started_ms, image.as_ref()) {
            let grace =
                |now: u64| now.saturating_sub(started_ms) < probe.start_period.as_millis() as u64;
            // Until the startup probe passes, it runs alone, at its own interval.
            let startup = probe.startup.as_deref().filter(|_| !state.started);
            let main = !probe.cmd.is_empty() || probe.net.is_some();
            if startup.is_none() && !main {
                // A startup probe alone, passed: nothing more to probe.
                break;
            }
            let wait = match startup {
                Some(st) => st.interval,
                None => state.next_in(&probe, grace(crate::clock::now_ms())),
            };
            tokio::time::sleep(wait).await;
            if current_probe(&ctx, &name, &id, started_ms, image.as_ref()).is_none() {
                break;
            }
            let active = startup.unwrap_or(&probe);
            let check = match &active.net {
                Some(net) => self::net::check(init_pid(&ctx, &name), net, active.timeout).await,
                None => ctx.health.probe(&ctx.runtime, &id, active, &dir).await,
            };
            // A probe that outlived its run (stopped, or restarted under the same id while it
            // waited or ran) says nothing of the run that follows.
            if current_probe(&ctx, &name, &id, started_ms, image.as_ref()).is_none() {
                break;
            }
            // Whether it counts is decided by when it ran, not when it was due.
            let in_grace = grace(check.start_ms);
            if check.exit_code != 0 {
                tracing::debug!(container = %id, exit_code = check.exit_code, output = %check.output.trim(), "health probe failed");
            }
            let changed = match startup {
                Some(st) => state.observe_startup(check, st.retries, main),
                None => state.observe(check, in_grace, probe.retries),
            };
            ctx.health
                .set(&id, started_ms, state.clone(), &dir, changed)
                .await;
            if changed {
                tracing::info!(container = %id, "health: {}", state.status.as_str());
                ctx.events.emit(
                    &name,
                    "health",
                    &[
                        ("container", id.clone()),
                        ("status", state.status.as_str().to_string()),
                    ],
                );
                ctx.poke(&name);
                for d in crate::reconcile::deps::dependents(&ctx, |t| t == name) {
                    ctx.poke(&d);
                }
            }
        }
        // Unless a newer run of the same instance took over.
        ctx.health.forget_run(&id, started_ms);
        // Where a test learns that the monitor is done (for a unit without a probe, at once).
        crate::failpoint::hit_for("health-monitor-end", &name);
    }
        .instrument(span);
    tasks.spawn(async move {
        tokio::select! {
            () = monitor => {}
            () = cancel.cancelled() => {}
        }
    });
}

/// The host pid of unit `name`'s container's first process.
fn init_pid(ctx: &Context, name: &str) -> Option<i32> {
    ctx.units.get(name)?.record?.pid
}

/// The probe for the run of container `id` of unit `name` started at `started_ms`, while it
/// is the unit's running container and the unit has a health check.
fn current_probe(
    ctx: &Context,
    name: &str,
    id: &str,
    started_ms: u64,
    image: Option<&ImageHealth>,
) -> Option<Probe> {
    ctx.units.view(|table| {
        let e = table.get(name)?;
        let r = e.record.as_ref()?;
        let this_run = r.container_id.as_deref() == Some(id) && r.started_at_ms == Some(started_ms);
        if !this_run || r.state != crate::store::State::Running {
            return None;
        }
        resolve(&e.unit.as_ref()?.health, image)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_startup_probe_passes_once_or_fails_its_retries() {
        let mut s = HealthState::default();
        assert!(!s.observe_startup(check(1), 3, true));
        assert!(!s.observe_startup(check(1), 3, true));
        assert!(!s.started);
        // Passed: the other probe runs; the verdict is still to come.
        assert!(!s.observe_startup(check(0), 3, true));
        assert!(s.started && s.status == Status::Starting && s.failing_streak == 0);
        // Without another probe, passing it is healthy.
        let mut alone = HealthState::default();
        assert!(alone.observe_startup(check(0), 3, false));
        assert_eq!(alone.status, Status::Healthy);
        // Its retries used up: unhealthy.
        let mut never = HealthState::default();
        for _ in 0..2 {
            assert!(!never.observe_startup(check(1), 3, true));
        }
        assert!(never.observe_startup(check(1), 3, true));
        assert_eq!(never.status, Status::Unhealthy);
    }

    fn check(code: i32) -> Check {
        Check {
            start_ms: 0,
            took_ms: 1,
            exit_code: code,
            output: String::new(),
        }
    }

    /// A stand-in for `runc --root R exec --pid-file F ID CMD...` that runs CMD on the host,
    /// its pid in F. For the id `detached`, CMD runs as a real container's process may: out of
    /// the runtime's tree and process group (orphaned, in a session of its own), found only
    /// through the pid file.
    const FAKE_RUNTIME: &str = r#"#!/bin/sh
[ "$3" = exec ] || exit 2
pid_file=$5 id=$6
shift 6
if [ "$id" = detached ]; then
    (setsid "$@" & echo $! > "$pid_file")
    while kill -0 "$(cat "$pid_file")" 2>/dev/null; do sleep 0.05; done
else
    "$@" &
    echo $! > "$pid_file"
    wait $!
fi
"#;

    fn fake_runtime(dir: &Path) -> Runtime {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("runtime");
        std::fs::write(&path, FAKE_RUNTIME).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A process another test forked while the file was open for writing holds it until it
        // execs (ETXTBSY); once one exec works, none can hold it again.
        for _ in 0..100 {
            match std::process::Command::new(&path).output() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break,
            }
        }
        Runtime::new(path, dir.join("root"))
    }

    fn probe(argv: &[&str], timeout: Duration) -> Probe {
        Probe {
            cmd: argv.iter().map(|a| a.to_string()).collect(),
            net: None,
            startup: None,
            interval: Duration::from_secs(1),
            timeout,
            retries: 1,
            start_period: Duration::ZERO,
            start_interval: Duration::from_secs(1),
        }
    }

    /// Live (not zombie) processes whose command line is exactly `cmdline`.
    fn alive(cmdline: &str) -> Vec<i32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                String::from_utf8_lossy(&cmd)
                    .trim_end_matches('\0')
                    .replace('\0', " ")
                    == cmdline
                    && stat
                        .rfind(')')
                        .is_some_and(|i| !stat[i + 2..].starts_with('Z'))
            })
            .collect()
    }

    #[tokio::test]
    async fn a_probe_past_its_timeout_is_killed_with_its_children_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = fake_runtime(dir.path());
        let script = "echo started; sleep 1241 & sleep 1242; true";
        let p = probe(&["/bin/sh", "-c", script], Duration::from_millis(300));
        for id in ["attached", "detached"] {
            let check = run_probe(&runtime, id, &p, dir.path()).await;
            assert_eq!(check.exit_code, -1, "{id}: {check:?}");
            assert_eq!(
                check.output, "started\nhealth check exceeded timeout (300ms)",
                "{id}"
            );
            assert!((300..2000).contains(&check.took_ms), "{id}: {check:?}");
            // The shell and both its children, whichever way they hang off the runtime.
            let deadline = Instant::now() + Duration::from_secs(5);
            let left = || {
                [
                    format!("/bin/sh -c {script}"),
                    "sleep 1241".into(),
                    "sleep 1242".into(),
                ]
                .iter()
                .flat_map(|c| alive(c))
                .collect::<Vec<_>>()
            };
            while !left().is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(left(), Vec::<i32>::new(), "{id}: left running");
            assert!(!dir
                .path()
                .join(format!("probe-{}.pid", std::process::id()))
                .exists());
        }
    }

    #[tokio::test]
    async fn output_held_open_by_what_a_probe_left_behind_holds_it_no_longer_than_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = fake_runtime(dir.path());
        let script = "sleep 1243 & echo done";
        let p = probe(&["/bin/sh", "-c", script], Duration::from_millis(300));
        let check = run_probe(&runtime, "plain", &p, dir.path()).await;
        for pid in alive("sleep 1243") {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // The command itself finished in time: its exit code and what it said count.
        assert_eq!((check.exit_code, check.output.as_str()), (0, "done\n"));
        assert!((300..2000).contains(&check.took_ms), "{check:?}");
    }

    #[tokio::test]
    async fn a_probe_reports_its_exit_code_and_output_cut_at_4_kib() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = fake_runtime(dir.path());
        let script = "head -c 100000 /dev/zero | tr '\\0' x; echo oops >&2; exit 3";
        let check = run_probe(
            &runtime,
            "plain",
            &probe(&["/bin/sh", "-c", script], Duration::from_secs(10)),
            dir.path(),
        )
        .await;
        assert_eq!(check.exit_code, 3);
        assert_eq!(check.output, "x".repeat(MAX_OUTPUT));
        let check = run_probe(
            &runtime,
            "plain",
            &probe(
                &["/bin/sh", "-c", "echo out; echo err >&2"],
                Duration::from_secs(10),
            ),
            dir.path(),
        )
        .await;
        assert_eq!((check.exit_code, check.output.as_str()), (0, "out\nerr\n"));
        let missing = Runtime::new(dir.path().join("nonexistent"), dir.path());
        let check = run_probe(
            &missing,
            "plain",
            &probe(&["true"], Duration::from_secs(1)),
            dir.path(),
        )
        .await;
        assert_eq!(check.exit_code, -1);
        assert!(
            check.output.starts_with("cannot run the runtime"),
            "{check:?}"
        );
    }

    #[tokio::test]
    async fn a_probe_waiting_for_its_turn_does_not_count_the_wait_against_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = fake_runtime(dir.path());
        let registry = Registry::with_probes(1);
        // Each takes most of its timeout: run side by side they pass, one after the other
        // the second would fail if its wait counted.
        let p = probe(&["sleep", "0.4"], Duration::from_millis(700));
        // Scratch directories of their own, as two containers have.
        let (da, db) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&da).unwrap();
        std::fs::create_dir(&db).unwrap();
        let (a, b) = tokio::join!(
            registry.probe(&runtime, "plain", &p, &da),
            registry.probe(&runtime, "plain", &p, &db),
        );
        assert_eq!((a.exit_code, b.exit_code), (0, 0), "{a:?} {b:?}");
        // One after the other.
        let (first, second) = if a.start_ms <= b.start_ms {
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert!(second.start_ms >= first.start_ms + 400, "{a:?} {b:?}");
    }

    #[tokio::test]
    async fn health_state_is_saved_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::default();
        assert_eq!(Registry::load(dir.path()).await.unwrap(), None);
        let mut state = HealthState::default();
        state.observe(check(0), false, 3);
        registry.set("c", 1, state.clone(), dir.path(), true).await;
        assert_eq!(registry.get("c"), Some(state.clone()));
        assert_eq!(
            Registry::load(dir.path()).await.unwrap(),
            Some(state.clone())
        );
        // Not saved: memory only.
        registry
            .set("c", 1, HealthState::default(), dir.path(), false)
            .await;
        assert_eq!(registry.get("c"), Some(HealthState::default()));
        assert_eq!(Registry::load(dir.path()).await.unwrap(), Some(state));
        registry.forget_run("c", 0);
        assert!(registry.get("c").is_some(), "a newer run is kept");
        registry.forget_run("c", 1);
        assert_eq!(registry.get("c"), None);
    }

    #[test]
    fn docker_state_machine() {
        // (in start period, exit code, status after, streak after)
        type Step = (bool, i32, Status, u32);
        let cases: &[(&str, &[Step])] = &[
            (
                "failures in the start period do not count until a success",
                &[
                    (true, 1, Status::Starting, 0),
                    (true, 1, Status::Starting, 0),
                    (true, 0, Status::Healthy, 0),
                    (true, 1, Status::Healthy, 1),
                ],
            ),
            (
                "retries failures in a row make it unhealthy; one success heals",
                &[
                    (false, 1, Status::Starting, 1),
                    (false, 1, Status::Starting, 2),
                    (false, 1, Status::Unhealthy, 3),
                    (false, 1, Status::Unhealthy, 4),
                    (false, 0, Status::Healthy, 0),
                ],
            ),
            (
                "a success resets the streak",
                &[
                    (false, 0, Status::Healthy, 0),
                    (false, 1, Status::Healthy, 1),
                    (false, 0, Status::Healthy, 0),
                    (false, -1, Status::Healthy, 1),
                    (false, 1, Status::Healthy, 2),
                ],
            ),
        ];
        for (name, steps) in cases {
            let mut s = HealthState::default();
            for (i, &(grace, code, status, streak)) in steps.iter().enumerate() {
                s.observe(check(code), grace, 3);
                assert_eq!(
                    (s.status, s.failing_streak),
                    (status, streak),
                    "{name}, step {i}"
                );
            }
        }
        let mut s = HealthState::default();
        for i in 0..8 {
            s.observe(check(i), false, 3);
        }
        assert_eq!(s.log.len(), KEEP);
        assert_eq!(s.log.front().map(|c| c.exit_code), Some(3));
    }

    #[test]
    fn unit_keys_win_one_by_one_over_the_image() {
        let image = ImageHealth {
            test: vec!["CMD-SHELL".into(), "curl -f localhost".into()],
            interval: Some(Duration::from_secs(5)),
            retries: Some(7),
            ..ImageHealth::default()
        };
        let p = resolve(&Health::default(), Some(&image)).expect("the image's check");
        assert_eq!(p.cmd, ["/bin/sh", "-c", "curl -f localhost"]);
        assert_eq!((p.interval, p.retries), (Duration::from_secs(5), 7));
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
        let unit = Health {
            cmd: Some(vec!["true".into()]),
            interval: Some(Duration::from_secs(1)),
            ..Health::default()
        };
        let p = resolve(&unit, Some(&image)).expect("the unit's check");
        assert_eq!(p.cmd, ["true"]);
        assert_eq!((p.interval, p.retries), (Duration::from_secs(1), 7));
        let off = Health {
            disable: true,
            ..Health::default()
        };
        assert_eq!(resolve(&off, Some(&image)), None);
        let none = ImageHealth {
            test: vec!["NONE".into()],
            ..ImageHealth::default()
        };
        assert_eq!(resolve(&Health::default(), Some(&none)), None);
        assert_eq!(resolve(&Health::default(), None), None);
        // Docker's config JSON, durations in nanoseconds.
        let json = br#"{"config":{"Healthcheck":{"Test":["CMD","check","-q"],"Interval":2000000000,"Timeout":0,"Retries":2}}}"#;
        let got = image_health(json).expect("parsed");
        assert_eq!(got.test, ["CMD", "check", "-q"]);
        assert_eq!(got.interval, Some(Duration::from_secs(2)));
        assert_eq!((got.timeout, got.retries), (None, Some(2)));
        assert_eq!(image_health(br#"{"config":{}}"#), None);
    }
}
