//! Whether a new image's container has passed its gate, failed it, or is still being watched.
//! Pure: the unit's record, its health and the clock in, a verdict out.

use std::time::Duration;

use crate::health::Status as Health;
use crate::store::{Record, State};
use crate::unit::update::Gate;

use super::Trial;

/// How long a unit with no health check must run to pass a `healthy` gate.
pub const UNCHECKED_RUN: Duration = Duration::from_secs(10);

/// What the gate says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Kept.
    Pass,
    /// Rolled back, for this reason.
    Fail(String),
    /// Not yet decided.
    Wait,
}

/// What the updater sees of the unit.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// Its record.
    pub record: Option<&'a Record>,
    /// Its current container's health, if a check runs.
    pub health: Option<Health>,
    /// Whether it has a health check (its own or its image's).
    pub checked: bool,
}

/// The verdict on `trial` under `gate`, which must pass within `timeout` of the trial's start.
pub fn verdict(
    trial: &Trial,
    gate: Gate,
    timeout: Duration,
    seen: Observed<'_>,
    now_ms: u64,
) -> Verdict {
    let ms = |d: Duration| d.as_millis() as u64;
    if let Some(r) = seen.record {
        // What happened to the unit since the trial began: an exit, a failed start or a
        // restart by policy is the new image's failure.
        if r.since_ms >= trial.started_ms {
            let code = r.exit_code.map(|c| format!("exited with code {c}"));
            let failed = match r.state {
                State::Failed => Some(r.error.clone().or(code).unwrap_or("failed".into())),
                State::Restarting => Some(match (&r.error, code) {
                    (Some(e), _) => format!("start failed: {e}"),
                    (None, Some(c)) => format!("{c} (restarting)"),
                    (None, None) => "restarting".into(),
                }),
                State::Exited => Some(code.unwrap_or("exited".into())),
                _ => None,
            };
            if let Some(reason) = failed {
                return Verdict::Fail(reason);
            }
        }
        let on_candidate = r.state == State::Running
            && r.image_digest.as_deref() == Some(trial.candidate.as_str())
            && r.started_at_ms.is_some_and(|t| t >= trial.started_ms);
        if on_candidate {
            let ran = now_ms.saturating_sub(r.started_at_ms.unwrap_or(now_ms));
            // Unhealthy fails whatever the gate: a `running:` gate only waits longer.
            if seen.checked && seen.health == Some(Health::Unhealthy) {
                return Verdict::Fail("its health check says unhealthy".into());
            }
            match gate {
                Gate::Healthy if seen.checked => {
                    if seen.health == Some(Health::Healthy) {
                        return Verdict::Pass;
                    }
                }
                Gate::Healthy => {
                    if ran >= ms(UNCHECKED_RUN) {
                        return Verdict::Pass;
                    }
                }
                Gate::Running(d) => {
                    if ran >= ms(d) {
                        return Verdict::Pass;
                    }
                }
            }
        }
    }
    if now_ms >= trial.started_ms + ms(timeout) {
        return Verdict::Fail(format!(
            "the gate ({gate}) did not pass within {}",
            crate::unit::quantity::format_duration(timeout)
        ));
    }
    Verdict::Wait
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000_000;

    fn trial() -> Trial {
        Trial {
            candidate: "sha256:new".into(),
            from: "sha256:old".into(),
            started_ms: T0,
        }
    }

    fn record(state: State, digest: &str, at: u64) -> Record {
        let mut r = Record::new("web", 0);
        r.state = state;
        r.since_ms = at;
        r.started_at_ms = Some(at);
        r.image_digest = Some(digest.into());
        r
    }

    fn judge(r: &Record, health: Option<Health>, checked: bool, gate: Gate, now: u64) -> Verdict {
        let seen = Observed {
            record: Some(r),
            health,
            checked,
        };
        verdict(&trial(), gate, Duration::from_secs(60), seen, now)
    }

    /// A record, its health, whether it has a check, the gate, the time, the verdict.
    type Case<'a> = (&'a Record, Option<Health>, bool, Gate, u64, Verdict);

    #[test]
    fn table() {
        let running = record(State::Running, "sha256:new", T0 + 500);
        let old = record(State::Running, "sha256:old", T0 - 5000);
        let mut crashed = record(State::Restarting, "sha256:new", T0 + 800);
        crashed.exit_code = Some(3);
        let mut refused = record(State::Restarting, "sha256:old", T0 + 100);
        refused.error = Some("no /app/run".into());
        let mut exited_before = record(State::Exited, "sha256:old", T0 - 100);
        exited_before.exit_code = Some(0);
        let thirty = Gate::Running(Duration::from_secs(30));
        let cases: [Case; 11] = [
            (
                &running,
                Some(Health::Healthy),
                true,
                Gate::Healthy,
                T0 + 600,
                Verdict::Pass,
            ),
            (
                &running,
                Some(Health::Starting),
                true,
                Gate::Healthy,
                T0 + 600,
                Verdict::Wait,
            ),
            (
                &running,
                Some(Health::Unhealthy),
                true,
                Gate::Healthy,
                T0 + 600,
                Verdict::Fail("its health check says unhealthy".into()),
            ),
            // No check: running for 10 s passes.
            (
                &running,
                None,
                false,
                Gate::Healthy,
                T0 + 5000,
                Verdict::Wait,
            ),
            (
                &running,
                None,
                false,
                Gate::Healthy,
                T0 + 10_500,
                Verdict::Pass,
            ),
            (&running, None, false, thirty, T0 + 30_500, Verdict::Pass),
            (
                &running,
                Some(Health::Unhealthy),
                true,
                thirty,
                T0 + 6000,
                Verdict::Fail("its health check says unhealthy".into()),
            ),
            // Still the old container: wait, until the timeout.
            (&old, None, false, thirty, T0 + 59_000, Verdict::Wait),
            (
                &old,
                None,
                false,
                thirty,
                T0 + 60_000,
                Verdict::Fail("the gate (running:30s) did not pass within 1m".into()),
            ),
            (
                &crashed,
                None,
                false,
                thirty,
                T0 + 900,
                Verdict::Fail("exited with code 3 (restarting)".into()),
            ),
            (
                &refused,
                None,
                false,
                thirty,
                T0 + 200,
                Verdict::Fail("start failed: no /app/run".into()),
            ),
        ];
        for (i, (r, health, checked, gate, now, want)) in cases.into_iter().enumerate() {
            assert_eq!(judge(r, health, checked, gate, now), want, "case {i}");
        }
        // An exit from before the trial is not the new image's.
        assert_eq!(
            judge(&exited_before, None, false, thirty, T0 + 10),
            Verdict::Wait
        );
    }
}
