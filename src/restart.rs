//! Restart policy and backoff: how a container ended, its policy and its history in; whether and
//! when it starts again out. Pure, so it is tested with tables.

use std::time::Duration;

use crate::unit::{Policy, Restart};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The container ran and exited with this code.
    Exited(i32),
    /// The container could not be started (it counts as a failure).
    StartFailed,
}

impl Outcome {
    fn failed(self) -> bool {
        !matches!(self, Outcome::Exited(0))
    }
}

/// What the policy says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start again after `delay`; `backoff_step` is the new exponent.
    Restart {
        /// Wait this long first.
        delay: Duration,
        /// The backoff exponent to remember.
        backoff_step: u32,
    },
    /// Stay exited.
    Stay,
    /// Give up: the unit is `failed`, with this reason.
    Fail(String),
}

/// Applies `restart` to an outcome. `restarts` counts restarts since the last operator start;
/// `ran_for` is how long the container ran (None if it never started).
pub fn decide(
    restart: &Restart,
    outcome: Outcome,
    restarts: u32,
    backoff_step: u32,
    ran_for: Option<Duration>,
) -> Decision {
    let again = match restart.policy {
        Policy::No => false,
        Policy::OnFailure { max_retries } => {
            if !outcome.failed() {
                false
            } else if max_retries.is_some_and(|max| restarts >= max) {
                return Decision::Fail(format!(
                    "gave up after {restarts} restarts (max_retries = {})",
                    max_retries.unwrap_or(0)
                ));
            } else {
                true
            }
        }
        Policy::Always | Policy::UnlessStopped => true,
    };
    if !again {
        return match outcome {
            Outcome::StartFailed => Decision::Fail("start failed (restart policy `no`)".into()),
            Outcome::Exited(_) => Decision::Stay,
        };
    }
    // A run long enough resets the backoff (Docker: 10 s).
    let step = match ran_for {
        Some(d) if d >= restart.reset_after => 0,
        _ => backoff_step,
    };
    Decision::Restart {
        delay: backoff(restart.delay, restart.max_delay, step),
        backoff_step: step.saturating_add(1),
    }
}

/// Where consecutive quick failures back off from when the configured delay is zero (Docker's
/// first delay).
pub const ZERO_DELAY_FLOOR: Duration = Duration::from_millis(100);

/// `delay * 2^step`, capped at `max`. A zero delay restarts at once, but only the first time in
/// a row: further quick failures back off from `ZERO_DELAY_FLOOR`, so a restart is never a tight
/// loop unless the operator also sets `max_delay` (or `reset_after`) to zero.
pub fn backoff(delay: Duration, max: Duration, step: u32) -> Duration {
    let (base, exp) = match (delay.is_zero(), step) {
        (true, 0) => return Duration::ZERO,
        (true, s) => (ZERO_DELAY_FLOOR, s - 1),
        (false, s) => (delay, s),
    };
    let factor = 2u32.checked_pow(exp.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(policy: Policy) -> Restart {
        Restart {
            policy,
            delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(60),
            reset_after: Duration::from_secs(10),
        }
    }

    fn restart(ms: u64, step: u32) -> Decision {
        Decision::Restart {
            delay: Duration::from_millis(ms),
            backoff_step: step,
        }
    }

    #[test]
    fn policy_table() {
        let on_failure = Policy::OnFailure {
            max_retries: Some(2),
        };
        let short = Some(Duration::from_secs(1));
        let cases: Vec<(Policy, Outcome, u32, u32, Option<Duration>, Decision)> = vec![
            (Policy::No, Outcome::Exited(0), 0, 0, short, Decision::Stay),
            (Policy::No, Outcome::Exited(1), 0, 0, short, Decision::Stay),
            (
                Policy::No,
                Outcome::StartFailed,
                0,
                0,
                None,
                Decision::Fail("start failed (restart policy `no`)".into()),
            ),
            (on_failure, Outcome::Exited(0), 0, 0, short, Decision::Stay),
            (on_failure, Outcome::Exited(3), 0, 0, short, restart(100, 1)),
            (on_failure, Outcome::Exited(3), 1, 1, short, restart(200, 2)),
            (
                on_failure,
                Outcome::Exited(3),
                2,
                2,
                short,
                Decision::Fail("gave up after 2 restarts (max_retries = 2)".into()),
            ),
            (
                on_failure,
                Outcome::StartFailed,
                0,
                0,
                None,
                restart(100, 1),
            ),
            (
                Policy::OnFailure { max_retries: None },
                Outcome::Exited(1),
                1000,
                3,
                short,
                restart(800, 4),
            ),
            (
                Policy::Always,
                Outcome::Exited(0),
                5,
                5,
                short,
                restart(3200, 6),
            ),
            (
                Policy::Always,
                Outcome::Exited(0),
                5,
                5,
                Some(Duration::from_secs(10)),
                restart(100, 1),
            ),
            (
                Policy::UnlessStopped,
                Outcome::Exited(1),
                0,
                20,
                short,
                restart(60_000, 21),
            ),
            (
                Policy::UnlessStopped,
                Outcome::StartFailed,
                0,
                0,
                None,
                restart(100, 1),
            ),
        ];
        for (i, (policy, outcome, restarts, step, ran, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                decide(&r(policy), outcome, restarts, step, ran),
                want,
                "case {i}"
            );
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        let d = Duration::from_millis(100);
        let max = Duration::from_secs(60);
        let got: Vec<u128> = (0..12).map(|s| backoff(d, max, s).as_millis()).collect();
        assert_eq!(
            got,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000]
        );
        assert_eq!(backoff(d, max, 1000), max);
        let zero: Vec<u128> = (0..4)
            .map(|s| backoff(Duration::ZERO, max, s).as_millis())
            .collect();
        assert_eq!(
            zero,
            [0, 100, 200, 400],
            "a zero delay is immediate once, then backs off"
        );
        assert_eq!(backoff(Duration::ZERO, Duration::ZERO, 7), Duration::ZERO);
    }
}
