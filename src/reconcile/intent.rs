//! Operator intents (`rctl start|stop|restart`): applied to a unit's record by the reconciler
//! itself, between two reconciles of that unit, so no reconcile in flight can overwrite them.

use crate::store::{Record, State};

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Clear a hold, reset the restart count and backoff, start if not running.
    Start,
    /// Stop and hold stopped.
    Stop,
    /// Clear a hold, reset the restart count and backoff, stop if running, start.
    Restart,
    /// Start if down and not held: a unit that wants or requires this one is starting.
    PullIn,
    /// Image updates chose another digest: what failed on the old one is forgotten (count,
    /// backoff, error), and a unit that is down and not held starts at once on the new one.
    NewImage,
}

impl Intent {
    /// Parses the API verb.
    pub fn from_verb(verb: &str) -> Option<Self> {
        match verb {
            "start" => Some(Intent::Start),
            "stop" => Some(Intent::Stop),
            "restart" => Some(Intent::Restart),
            _ => None,
        }
    }
}

/// Applies an intent to a record (Docker's meaning: start and restart reset the count).
pub fn apply(r: &mut Record, intent: Intent) {
    match intent {
        Intent::Stop => {
            r.hold = true;
            // What failed before is not what this stop will say.
            r.error = None;
            r.start_requested = false;
            r.restart_requested = false;
        }
        Intent::PullIn => {
            let down = matches!(
                r.state,
                State::Pending | State::Exited | State::Stopped | State::Failed
            );
            if !r.hold && down {
                r.start_requested = true;
            }
        }
        Intent::NewImage => {
            r.restarts = 0;
            r.backoff_step = 0;
            r.clear_restart();
            r.error = None;
            let down = matches!(
                r.state,
                State::Pending | State::Exited | State::Failed | State::Restarting
            );
            if !r.hold && down {
                r.start_requested = true;
            }
        }
        Intent::Start | Intent::Restart => {
            r.hold = false;
            r.restarts = 0;
            r.backoff_step = 0;
            r.clear_restart();
            r.error = None;
            if r.state == State::Running {
                r.restart_requested = intent == Intent::Restart;
            } else {
                r.start_requested = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            (State::Running, Intent::Stop, (true, false, false)),
            (State::Stopped, Intent::Start, (false, true, false)),
            (State::Running, Intent::Start, (false, false, false)),
            (State::Running, Intent::Restart, (false, false, true)),
            (State::Failed, Intent::Restart, (false, true, false)),
            (State::Restarting, Intent::Start, (false, true, false)),
        ];
        for (state, intent, (hold, start, restart)) in cases {
            let mut r = Record::new("u", 0);
            r.state = state;
            r.hold = !hold;
            r.restarts = 4;
            r.backoff_step = 3;
            apply(&mut r, intent);
            assert_eq!(
                (r.hold, r.start_requested, r.restart_requested),
                (hold, start, restart),
                "{state:?} {intent:?}"
            );
            if intent != Intent::Stop {
                assert_eq!((r.restarts, r.backoff_step), (0, 0));
            }
        }
    }
}
