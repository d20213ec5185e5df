//! The decision: desired state (the unit), observed state (its record and whether its shim
//! lives) and operator intent in; the next action for that one unit out. Pure.

use std::time::Duration;

use crate::store::{Record, State};
use crate::unit::Unit;

/// The next step for one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The unit matches; come back after this long if Some.
    Idle(Option<Duration>),
    /// The container's shim is gone: read its exit status and apply the policy.
    ObserveExit,
    /// The file is gone: stop and remove the container, forget the unit.
    Remove,
    /// The spec changed: stop and remove the old container, make way for a new one.
    Recreate,
    /// Stop the running container; `hold` keeps it stopped.
    Stop {
        /// An operator hold (rctl stop) rather than a restart.
        hold: bool,
    },
    /// Mark a container that is not running as held stopped.
    Hold,
    /// Run the start pipeline.
    Start,
    /// It should start, but what it joins does not run: wait (it is looked at again when
    /// that starts).
    Wait,
    /// It runs, but the container whose network it shares now runs in another namespace, or a
    /// unit it requires runs a new container: stop it and start it again (not a restart by
    /// policy), as systemd's `Requires=` restarts a unit with the one it requires.
    Rejoin,
    /// It runs, but a unit it requires was stopped or removed: stop it, and wait for that
    /// unit to be back.
    Yield,
    /// It runs, but its secrets' content changed since it started: act as their
    /// `on_change` says.
    Secrets,
    /// It runs but is unhealthy, and its `on_unhealthy` says to act: restart it (counted,
    /// with backoff) or stop it.
    Unhealthy(crate::unit::OnUnhealthy),
}

/// For a `container:` unit: where the container whose network it shares stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// Not a `container:` unit.
    NotNeeded,
    /// The target runs, in the network namespace with this inode.
    Ready(u64),
    /// The target does not run (or does not exist).
    Missing,
}

/// What `plan` looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The unit's last valid version; None once its file is gone.
    pub unit: Option<&'a Unit>,
    /// Its record; None if the daemon never saw it.
    pub record: Option<&'a Record>,
    /// Whether the record's shim is alive.
    pub alive: bool,
    /// Now, in ms since the epoch.
    pub now_ms: u64,
    /// Now, in ms on CLOCK_BOOTTIME (restart deadlines are kept on it).
    pub boot_ms: u64,
    /// The network it joins, for a `container:` unit.
    pub join: Join,
    /// A unit it names is not ready for it to start (see `deps::Gate`).
    pub blocked: bool,
    /// A unit it requires was stopped or removed.
    pub required_stopped: bool,
    /// Its container's health check says unhealthy.
    pub unhealthy: bool,
    /// The image digest image updates chose for it (`update::Updates::target`).
    pub image_target: Option<&'a str>,
    /// A unit it requires runs another container than when this one started (it was
    /// recreated: its file changed, or its image was updated).
    pub required_replaced: bool,
}

/// Decides the next action for one unit.
pub fn plan(input: Input<'_>) -> Action {
    match decide(input) {
        Action::Start if input.blocked || input.join == Join::Missing => Action::Wait,
        action => action,
    }
}

fn decide(input: Input<'_>) -> Action {
    let Some(record) = input.record else {
        return match input.unit {
            Some(u) if u.autostart => Action::Start,
            _ => Action::Idle(None),
        };
    };
    let active = matches!(
        record.state,
        State::Running | State::Starting | State::Pulling
    );
    if active && !input.alive {
        return Action::ObserveExit;
    }
    let Some(unit) = input.unit else {
        return Action::Remove;
    };
    if record
        .spec_hash
        .as_deref()
        .is_some_and(|h| h != unit.spec_hash)
    {
        return Action::Recreate;
    }
    // Image updates chose another digest than the container instance was made for: a new
    // instance on it, the old one retired (running or not: a crash-looping one keeps its
    // rootfs mounted between its restarts).
    if record.container_id.is_some()
        && !record.hold
        && input
            .image_target
            .is_some_and(|t| record.image_digest.as_deref() != Some(t))
    {
        return Action::Recreate;
    }
    if record.hold {
        return if input.alive {
            Action::Stop { hold: true }
        } else if record.state == State::Stopped {
            Action::Idle(None)
        } else {
            Action::Hold
        };
    }
    if input.alive {
        let moved = match input.join {
            Join::Ready(ino) => record.shared_network.as_ref().is_some_and(|s| s.ino != ino),
            _ => false,
        };
        let on_unhealthy = unit.health.on_unhealthy;
        return if input.required_stopped {
            Action::Yield
        } else if input.unhealthy && on_unhealthy != crate::unit::OnUnhealthy::None {
            Action::Unhealthy(on_unhealthy)
        } else if record.restart_requested {
            Action::Stop { hold: false }
        } else if moved || input.required_replaced {
            Action::Rejoin
        } else if unit.secret_digest.is_some() && record.secret_digest != unit.secret_digest {
            Action::Secrets
        } else {
            Action::Idle(None)
        };
    }
    match record.state {
        State::Pending if unit.autostart || record.start_requested => Action::Start,
        State::Waiting => Action::Start,
        State::Restarting => {
            // The monotonic deadline; the wall-clock one only for records that lack it.
            let left = match (record.restart_due_boot_ms, record.restart_at_ms) {
                (Some(due), _) => due.saturating_sub(input.boot_ms),
                (None, Some(at)) => at.saturating_sub(input.now_ms),
                (None, None) => 0,
            };
            if left > 0 {
                Action::Idle(Some(Duration::from_millis(left)))
            } else {
                Action::Start
            }
        }
        _ if record.start_requested || record.restart_requested => Action::Start,
        _ => Action::Idle(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::{Container, Network, Policy, Resources, Restart, Source, User};

    #[test]
    fn a_new_image_digest_recreates_a_running_container() {
        let u = unit("h", true);
        let mut r = Record::new("web", 0);
        r.state = State::Running;
        r.spec_hash = Some("h".into());
        r.image_digest = Some("sha256:old".into());
        r.container_id = Some("rcd-t-web-1".into());
        fn input<'a>(
            u: &'a Unit,
            r: &'a Record,
            target: Option<&'a str>,
            alive: bool,
        ) -> Input<'a> {
            Input {
                unit: Some(u),
                record: Some(r),
                alive,
                now_ms: 0,
                boot_ms: 0,
                join: Join::NotNeeded,
                blocked: false,
                required_stopped: false,
                unhealthy: false,
                image_target: target,
                required_replaced: false,
            }
        }
        assert_eq!(
            plan(input(&u, &r, Some("sha256:new"), true)),
            Action::Recreate
        );
        assert_eq!(
            plan(input(&u, &r, Some("sha256:old"), true)),
            Action::Idle(None)
        );
        assert_eq!(plan(input(&u, &r, None, true)), Action::Idle(None));
        // A unit it requires got a new container: stopped and started again.
        let mut bound = input(&u, &r, Some("sha256:old"), true);
        bound.required_replaced = true;
        assert_eq!(plan(bound), Action::Rejoin);
        // Not alive (between restarts): its instance is retired all the same.
        let mut waiting = r.clone();
        waiting.state = State::Restarting;
        assert_eq!(
            plan(input(&u, &waiting, Some("sha256:new"), false)),
            Action::Recreate
        );
        // Held: stays stopped.
        r.hold = true;
        assert_eq!(
            plan(input(&u, &r, Some("sha256:new"), true)),
            Action::Stop { hold: true }
        );
    }

    fn unit(hash: &str, autostart: bool) -> Unit {
        Unit {
            name: "web".into(),
            file: "/u/web.toml".into(),
            sources: vec!["/u/web.toml".into()],
            description: None,
            deps: Default::default(),
            health: Default::default(),
            security: Default::default(),
            secrets: vec![],
            secret_digest: None,
            container: Container {
                source: Source::Rootfs("/r".into()),
                entrypoint: None,
                command: Some(vec!["sh".into()]),
                env: Default::default(),
                workdir: None,
                user: Some(User { uid: 0, gid: 0 }),
                hostname: "web".into(),
                stop_signal: Some("SIGTERM".into()),
                reload_signal: None,
                stop_timeout: Duration::from_secs(10),
                env_files: vec![],
                labels: Default::default(),
                read_only: false,
                init: false,
                shm_size: None,
                ulimits: Default::default(),
                sysctls: Default::default(),
                devices: vec![],
                cdi_devices: vec![],
            },
            mounts: vec![],
            network: Network::default(),
            resources: Resources::default(),
            restart: Restart {
                policy: Policy::No,
                delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(60),
                reset_after: Duration::from_secs(10),
            },
            autostart,
            logs: Default::default(),
            update: Default::default(),
            spec_hash: hash.into(),
        }
    }

    fn rec(state: State, hash: Option<&str>, f: impl FnOnce(&mut Record)) -> Record {
        let mut r = Record::new("web", 0);
        r.state = state;
        r.spec_hash = hash.map(String::from);
        f(&mut r);
        r
    }

    #[test]
    fn table() {
        let on = unit("h1", true);
        let off = unit("h1", false);
        let none = |_: &mut Record| {};
        type Case<'a> = (&'a str, Option<&'a Unit>, Option<Record>, bool, Action);
        let cases: Vec<Case> = vec![
            ("new unit", Some(&on), None, false, Action::Start),
            (
                "new unit, no autostart",
                Some(&off),
                None,
                false,
                Action::Idle(None),
            ),
            ("nothing", None, None, false, Action::Idle(None)),
            (
                "pending autostart",
                Some(&on),
                Some(rec(State::Pending, None, none)),
                false,
                Action::Start,
            ),
            (
                "pending no autostart",
                Some(&off),
                Some(rec(State::Pending, None, none)),
                false,
                Action::Idle(None),
            ),
            (
                "pending no autostart, rctl start",
                Some(&off),
                Some(rec(State::Pending, None, |r| r.start_requested = true)),
                false,
                Action::Start,
            ),
            (
                "running, same spec",
                Some(&on),
                Some(rec(State::Running, Some("h1"), none)),
                true,
                Action::Idle(None),
            ),
            (
                "running, shim gone",
                Some(&on),
                Some(rec(State::Running, Some("h1"), none)),
                false,
                Action::ObserveExit,
            ),
            (
                "starting, crashed",
                Some(&on),
                Some(rec(State::Starting, Some("h1"), none)),
                false,
                Action::ObserveExit,
            ),
            (
                "running, spec changed",
                Some(&on),
                Some(rec(State::Running, Some("h0"), none)),
                true,
                Action::Recreate,
            ),
            (
                "exited, spec changed",
                Some(&on),
                Some(rec(State::Exited, Some("h0"), none)),
                false,
                Action::Recreate,
            ),
            (
                "file gone, running",
                None,
                Some(rec(State::Running, Some("h1"), none)),
                true,
                Action::Remove,
            ),
            (
                "file gone, exited",
                None,
                Some(rec(State::Exited, Some("h1"), none)),
                false,
                Action::Remove,
            ),
            (
                "hold, running",
                Some(&on),
                Some(rec(State::Running, Some("h1"), |r| r.hold = true)),
                true,
                Action::Stop { hold: true },
            ),
            (
                "hold, restarting",
                Some(&on),
                Some(rec(State::Restarting, Some("h1"), |r| r.hold = true)),
                false,
                Action::Hold,
            ),
            (
                "hold, stopped",
                Some(&on),
                Some(rec(State::Stopped, Some("h1"), |r| r.hold = true)),
                false,
                Action::Idle(None),
            ),
            (
                "hold, pending",
                Some(&on),
                Some(rec(State::Pending, None, |r| r.hold = true)),
                false,
                Action::Hold,
            ),
            (
                "restart requested, running",
                Some(&on),
                Some(rec(State::Running, Some("h1"), |r| {
                    r.restart_requested = true
                })),
                true,
                Action::Stop { hold: false },
            ),
            (
                "restart requested, stopped",
                Some(&on),
                Some(rec(State::Stopped, Some("h1"), |r| {
                    r.restart_requested = true
                })),
                false,
                Action::Start,
            ),
            (
                "restarting, not due",
                Some(&on),
                Some(rec(State::Restarting, Some("h1"), |r| {
                    r.restart_at_ms = Some(1500)
                })),
                false,
                Action::Idle(Some(Duration::from_millis(500))),
            ),
            (
                "restarting, due",
                Some(&on),
                Some(rec(State::Restarting, Some("h1"), |r| {
                    r.restart_at_ms = Some(900)
                })),
                false,
                Action::Start,
            ),
            (
                // The wall clock was set back an hour after the decision: the monotonic
                // deadline (50 ms from now) is what counts.
                "restarting, wall clock set back",
                Some(&on),
                Some(rec(State::Restarting, Some("h1"), |r| {
                    r.restart_at_ms = Some(1000 + 3_600_000);
                    r.restart_due_boot_ms = Some(100);
                })),
                false,
                Action::Idle(Some(Duration::from_millis(50))),
            ),
            (
                "restarting, wall clock set forward",
                Some(&on),
                Some(rec(State::Restarting, Some("h1"), |r| {
                    r.restart_at_ms = Some(1);
                    r.restart_due_boot_ms = Some(100);
                })),
                false,
                Action::Idle(Some(Duration::from_millis(50))),
            ),
            (
                "exited stays",
                Some(&on),
                Some(rec(State::Exited, Some("h1"), none)),
                false,
                Action::Idle(None),
            ),
            (
                "failed stays",
                Some(&on),
                Some(rec(State::Failed, Some("h1"), none)),
                false,
                Action::Idle(None),
            ),
            (
                "failed, rctl start",
                Some(&on),
                Some(rec(State::Failed, Some("h1"), |r| r.start_requested = true)),
                false,
                Action::Start,
            ),
        ];
        for (name, unit, record, alive, want) in cases {
            let got = plan(Input {
                unit,
                record: record.as_ref(),
                alive,
                now_ms: 1000,
                boot_ms: 50,
                join: Join::NotNeeded,
                blocked: false,
                required_stopped: false,
                unhealthy: false,
                image_target: None,
                required_replaced: false,
            });
            assert_eq!(got, want, "{name}");
        }
    }

    /// The input for `u` and `r` with nothing else going on (no join, gate or health).
    fn quiet<'a>(u: &'a Unit, r: &'a Record, alive: bool) -> Input<'a> {
        Input {
            unit: Some(u),
            record: Some(r),
            alive,
            now_ms: 1000,
            boot_ms: 50,
            join: Join::NotNeeded,
            blocked: false,
            required_stopped: false,
            unhealthy: false,
            image_target: None,
            required_replaced: false,
        }
    }

    #[test]
    fn an_unhealthy_container_is_acted_on_only_as_its_unit_says() {
        use crate::unit::OnUnhealthy;
        let running = rec(State::Running, Some("h1"), |_| {});
        for (on, unhealthy, want) in [
            (OnUnhealthy::None, true, Action::Idle(None)),
            (
                OnUnhealthy::Restart,
                true,
                Action::Unhealthy(OnUnhealthy::Restart),
            ),
            (
                OnUnhealthy::Stop,
                true,
                Action::Unhealthy(OnUnhealthy::Stop),
            ),
            (OnUnhealthy::Restart, false, Action::Idle(None)),
        ] {
            let mut u = unit("h1", true);
            u.health.on_unhealthy = on;
            let got = plan(Input {
                unhealthy,
                ..quiet(&u, &running, true)
            });
            assert_eq!(got, want, "{on:?} {unhealthy}");
        }
    }

    #[test]
    fn changed_secrets_under_a_running_container_are_acted_on_and_nothing_else_is() {
        let run = |unit_digest: Option<&str>, record_digest: Option<&str>, alive: bool| {
            let mut u = unit("h1", true);
            u.secret_digest = unit_digest.map(String::from);
            let r = rec(State::Running, Some("h1"), |r| {
                r.secret_digest = record_digest.map(String::from);
            });
            plan(quiet(&u, &r, alive))
        };
        assert_eq!(run(Some("b"), Some("a"), true), Action::Secrets);
        assert_eq!(run(Some("b"), None, true), Action::Secrets);
        assert_eq!(run(Some("a"), Some("a"), true), Action::Idle(None));
        assert_eq!(run(None, None, true), Action::Idle(None));
        assert_eq!(run(Some("b"), Some("a"), false), Action::ObserveExit);
    }

    #[test]
    fn a_unit_waits_while_blocked_and_yields_when_what_it_requires_stops() {
        let on = unit("h1", true);
        // (name, record, alive, blocked, required_stopped, want)
        type Case = (&'static str, Option<Record>, bool, bool, bool, Action);
        let cases: Vec<Case> = vec![
            ("new, blocked", None, false, true, false, Action::Wait),
            ("new, free", None, false, false, false, Action::Start),
            (
                "waiting, freed",
                Some(rec(State::Waiting, None, |_| {})),
                false,
                false,
                false,
                Action::Start,
            ),
            (
                "running, blocked does not matter",
                Some(rec(State::Running, Some("h1"), |_| {})),
                true,
                true,
                false,
                Action::Idle(None),
            ),
            (
                "running, a required unit stopped",
                Some(rec(State::Running, Some("h1"), |_| {})),
                true,
                true,
                true,
                Action::Yield,
            ),
            (
                "held: the hold wins",
                Some(rec(State::Running, Some("h1"), |r| r.hold = true)),
                true,
                true,
                true,
                Action::Stop { hold: true },
            ),
            (
                "exited, a required unit stopped",
                Some(rec(State::Exited, Some("h1"), |_| {})),
                false,
                true,
                true,
                Action::Idle(None),
            ),
        ];
        for (name, record, alive, blocked, required_stopped, want) in cases {
            let got = plan(Input {
                unit: Some(&on),
                record: record.as_ref(),
                alive,
                now_ms: 1000,
                boot_ms: 50,
                join: Join::NotNeeded,
                blocked,
                required_stopped,
                unhealthy: false,
                image_target: None,
                required_replaced: false,
            });
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_container_unit_waits_for_its_target_and_follows_it_to_a_new_namespace() {
        let on = unit("h1", true);
        let off = unit("h1", false);
        let joined = |ino: u64| {
            move |r: &mut Record| {
                r.shared_network = Some(crate::network::shared::Shared {
                    unit: "db".into(),
                    container_id: "c".into(),
                    netns: "/proc/1/ns/net".into(),
                    ino,
                    files_dir: None,
                    hostname: "db".into(),
                    network: None,
                })
            }
        };
        type Case<'a> = (
            &'a str,
            Option<&'a Unit>,
            Option<Record>,
            bool,
            Join,
            Action,
        );
        let cases: Vec<Case> = vec![
            (
                "new, target down",
                Some(&on),
                None,
                false,
                Join::Missing,
                Action::Wait,
            ),
            (
                "new, target up",
                Some(&on),
                None,
                false,
                Join::Ready(7),
                Action::Start,
            ),
            (
                "new, no autostart",
                Some(&off),
                None,
                false,
                Join::Missing,
                Action::Idle(None),
            ),
            (
                "waiting, target still down",
                Some(&on),
                Some(rec(State::Waiting, None, |_| {})),
                false,
                Join::Missing,
                Action::Wait,
            ),
            (
                "waiting, target up",
                Some(&on),
                Some(rec(State::Waiting, None, |_| {})),
                false,
                Join::Ready(7),
                Action::Start,
            ),
            (
                "waiting, held by rctl stop",
                Some(&on),
                Some(rec(State::Waiting, None, |r| r.hold = true)),
                false,
                Join::Missing,
                Action::Hold,
            ),
            (
                "restart due, target down",
                Some(&on),
                Some(rec(State::Restarting, Some("h1"), |r| {
                    r.restart_at_ms = Some(900)
                })),
                false,
                Join::Missing,
                Action::Wait,
            ),
            (
                "running in the target's namespace",
                Some(&on),
                Some(rec(State::Running, Some("h1"), joined(7))),
                true,
                Join::Ready(7),
                Action::Idle(None),
            ),
            (
                "the target moved to another namespace",
                Some(&on),
                Some(rec(State::Running, Some("h1"), joined(7))),
                true,
                Join::Ready(8),
                Action::Rejoin,
            ),
            (
                "the target stopped: keep running",
                Some(&on),
                Some(rec(State::Running, Some("h1"), joined(7))),
                true,
                Join::Missing,
                Action::Idle(None),
            ),
            (
                "the spec changed: recreate first",
                Some(&on),
                Some(rec(State::Running, Some("h0"), joined(7))),
                true,
                Join::Ready(8),
                Action::Recreate,
            ),
        ];
        for (name, unit, record, alive, join, want) in cases {
            let got = plan(Input {
                unit,
                record: record.as_ref(),
                alive,
                now_ms: 1000,
                boot_ms: 50,
                join,
                blocked: false,
                required_stopped: false,
                unhealthy: false,
                image_target: None,
                required_replaced: false,
            });
            assert_eq!(got, want, "{name}");
        }
    }
}
