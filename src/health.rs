//! Step 10 of the start pipeline: health checks, with Docker's semantics. The probe (the
//! unit's `[health]`, else the image's HEALTHCHECK) runs inside the container through the
//! runtime's `exec`; its results make the container `starting`, `healthy` or `unhealthy`. A
//! probe that outlives its timeout is killed with every process it started. The state lives
//! beside the container (`<container dir>/health.json`), so a daemon restart continues it.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

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
    /// The argv run in the container.
    pub cmd: Vec<String>,
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
    let cmd = unit.cmd.clone().or(image_cmd)?;
    let pick = |u: Option<Duration>, i: Option<Duration>, d: Duration| u.or(i).unwrap_or(d);
    Some(Probe {
        cmd,
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
pub struct State {
    /// The verdict.
    pub status: Status,
    /// Consecutive failures counted.
    pub failing_streak: u32,
    /// The last results, oldest first.
    pub log: VecDeque<Check>,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Starting,
            failing_streak: 0,
            log: VecDeque::new(),
        }
    }
}

impl State {
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
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = Status::Unhealthy;
            }
        }
        self.log.push_back(check);
        while self.log.len() > KEEP {
            self.log.pop_front();
        }
        self.status != before
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

/// The health of every monitored container, by container id, with the start time of the
/// run it is about (a restart of an instance keeps its id).
#[derive(Debug, Default)]
pub struct Registry {
    states: Mutex<HashMap<String, (u64, State)>>,
}

impl Registry {
    /// A container's health, if it is monitored.
    pub fn get(&self, id: &str) -> Option<State> {
        self.lock().get(id).map(|(_, s)| s.clone())
    }

    /// Sets the health of the run of container `id` started at `started_ms`; `dir` is its
    /// directory, where the state is saved if `persist`.
    pub fn set(&self, id: &str, started_ms: u64, state: State, dir: &Path, persist: bool) {
        if persist {
            if let Ok(json) = serde_json::to_vec(&state) {
                let path = dir.join(FILE);
                if let Err(e) =
                    crate::store::atomic::write_with(&path, &json, crate::store::atomic::Sync::None)
                {
                    tracing::warn!(container = %id, "{}: {e}", path.display());
                }
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

    /// The state saved in `dir`, after a daemon restart.
    pub fn load(dir: &Path) -> Option<State> {
        serde_json::from_slice(&std::fs::read(dir.join(FILE)).ok()?).ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, State)>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }
}

const FILE: &str = "health.json";

/// Runs `probe` once in container `id` (blocking); kills it and everything it started at its
/// timeout.
pub fn run_probe(runtime: &Runtime, id: &str, probe: &Probe, scratch: &Path) -> Check {
    let start_ms = crate::shim::now_ms();
    let began = Instant::now();
    let pid_file: PathBuf = scratch.join(format!("probe-{}.pid", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let result = runtime
        .exec_command(id, &probe.cmd, &pid_file, false)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match result {
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
    // Both pipes drained at once, so a chatty probe never blocks on a full pipe.
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut r).take(MAX_OUTPUT as u64 * 4).read_to_end(&mut buf);
            // Read the rest away, so the probe is never blocked on a full pipe.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
            buf
        })
    })
    .collect();
    // Waited for at once (no polling); a watchdog kills it, with what it started, at its
    // timeout. The runtime is killed only while unreaped (the wait has not returned), so its
    // pid cannot have been reused.
    let (done, stop) = std::sync::mpsc::channel::<()>();
    let runtime_pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let watched = pid_file.clone();
    let timeout = probe.timeout;
    let watchdog = std::thread::spawn(move || {
        let fired = matches!(
            stop.recv_timeout(timeout),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        );
        if fired {
            crate::runtime::kill_pid_tree(runtime_pid.as_raw());
            crate::runtime::kill_tree(&watched);
        }
        fired
    });
    let status = child.wait().ok();
    let _ = done.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let mut output = Vec::new();
    for r in readers {
        if let Ok(mut b) = r.join() {
            output.append(&mut b);
        }
    }
    let _ = std::fs::remove_file(&pid_file);
    let mut output = String::from_utf8_lossy(&output).into_owned();
    if output.len() > MAX_OUTPUT {
        let mut cut = MAX_OUTPUT;
        while !output.is_char_boundary(cut) {
            cut -= 1;
        }
        output.truncate(cut);
    }
    let exit_code = match (timed_out, status.and_then(|s| s.code())) {
        (true, _) => {
            output.push_str(&format!(
                "health check exceeded timeout ({})",
                humantime::format_duration(probe.timeout)
            ));
            -1
        }
        (false, Some(code)) => code,
        (false, None) => -1,
    };
    Check {
        start_ms,
        took_ms: began.elapsed().as_millis() as u64,
        exit_code,
        output,
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
    let span = tracing::info_span!("unit", unit = %name);
    let (tasks, cancel) = (ctx.tasks.clone(), ctx.cancel.clone());
    let monitor = async move {
            let dir = ctx.paths.container(&id);
            let mut state = match resume {
                true => Registry::load(&dir).unwrap_or_default(),
                false => State::default(),
            };
            // Saved at once: a daemon restart must not resume the previous run's verdict.
            ctx.health.set(&id, started_ms, state.clone(), &dir, !resume);
            while let Some(probe) = current_probe(&ctx, &name, &id, started_ms, image.as_ref()) {
                let grace = |now: u64| now.saturating_sub(started_ms) < probe.start_period.as_millis() as u64;
                let wait = state.next_in(&probe, grace(crate::shim::now_ms()));
                tokio::time::sleep(wait).await;
                if current_probe(&ctx, &name, &id, started_ms, image.as_ref()).is_none() {
                    break;
                }
                let in_grace = grace(crate::shim::now_ms());
                let (c, i, p, d) = (ctx.clone(), id.clone(), probe.clone(), dir.clone());
                let Ok(check) =
                    tokio::task::spawn_blocking(move || run_probe(&c.runtime, &i, &p, &d)).await
                else {
                    break;
                };
                if check.exit_code != 0 {
                    tracing::debug!(exit_code = check.exit_code, output = %check.output.trim(), "health probe failed");
                }
                let changed = state.observe(check, in_grace, probe.retries);
                ctx.health.set(&id, started_ms, state.clone(), &dir, changed);
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

    fn check(code: i32) -> Check {
        Check {
            start_ms: 0,
            took_ms: 1,
            exit_code: code,
            output: String::new(),
        }
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
            let mut s = State::default();
            for (i, &(grace, code, status, streak)) in steps.iter().enumerate() {
                s.observe(check(code), grace, 3);
                assert_eq!(
                    (s.status, s.failing_streak),
                    (status, streak),
                    "{name}, step {i}"
                );
            }
        }
        let mut s = State::default();
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
