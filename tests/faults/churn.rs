//! SIGKILL of the daemon at random points of a churning workload: unit files written, changed
//! and removed, containers started, stopped by the operator and crashing, the daemon killed
//! after a random number of steps; a few more changes while it is down; then it is started
//! again and must settle on exactly what the files ask for, with nothing orphaned or doubled.
//!
//! Each seed is printed; `RCD_FAULT_SEED=N cargo test --test faults churn` replays seed N alone.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::*;
use crate::invariants::{settle_and_check, Want};

const NAMES: usize = 10;

/// The kinds of unit the workload writes, and what each asks for once settled.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Sleep,
    Bridged,
    Once,
    Crashing,
    Backoff,
}

impl Kind {
    fn pick(rng: &mut fastrand::Rng) -> Self {
        match rng.u8(0..10) {
            0..=3 => Kind::Sleep,
            4 => Kind::Bridged,
            5 | 6 => Kind::Once,
            7 | 8 => Kind::Crashing,
            _ => Kind::Backoff,
        }
    }

    /// The unit file; `variant` changes the spec (an env value), so a rewrite recreates.
    fn text(self, variant: u32) -> String {
        let (script, restart, net) = match self {
            Kind::Sleep => ("exec sleep 1000", "", "mode = \"none\""),
            // The default network, natively, with a published port (a map element).
            Kind::Bridged => ("exec sleep 1000", "", "ports = [\"127.0.0.1::80\"]"),
            Kind::Once => ("exit 0", "", "mode = \"none\""),
            Kind::Crashing => (
                "exit 3",
                "policy = \"on-failure\"\nmax_retries = 2\ndelay = \"50ms\"\n",
                "mode = \"none\"",
            ),
            Kind::Backoff => (
                "exit 1",
                "policy = \"always\"\ndelay = \"1h\"\nmax_delay = \"1h\"\n",
                "mode = \"none\"",
            ),
        };
        format!(
            "{}\n[container.env]\nV = \"{variant}\"\n[restart]\n{restart}\n[network]\n{net}\n",
            unit(script, "stop_signal = \"KILL\"")
        )
    }

    fn want(self) -> Want {
        match self {
            Kind::Sleep => Want::Running { net: false },
            Kind::Bridged => Want::Running { net: true },
            Kind::Once => Want::Exited(0),
            Kind::Crashing => Want::Failed,
            Kind::Backoff => Want::Backoff,
        }
    }
}

/// The unit files as the workload left them: kind, and whether `rctl stop` holds the unit.
#[derive(Default)]
struct Files {
    units: BTreeMap<String, (Kind, bool)>,
    variant: u32,
}

impl Files {
    fn want(&self) -> BTreeMap<String, Want> {
        self.units
            .iter()
            .map(|(n, (k, held))| (n.clone(), if *held { Want::Held } else { k.want() }))
            .collect()
    }

    /// A daemon start ends the holds of units under `always` (Docker's rule).
    fn daemon_started(&mut self) {
        for (kind, held) in self.units.values_mut() {
            if matches!(kind, Kind::Backoff) {
                *held = false;
            }
        }
    }

    /// One random step; `up`: the daemon answers, so `rctl` steps are possible.
    fn step(&mut self, d: &Daemon, rng: &mut fastrand::Rng, up: bool) {
        let name = format!("u{}", rng.usize(0..NAMES));
        match rng.u8(0..10) {
            0..=5 => {
                let kind = Kind::pick(rng);
                self.variant += 1;
                d.write_unit(&name, &kind.text(self.variant));
                // A recreation keeps an operator's hold; a new unit has none.
                let held = self.units.get(&name).is_some_and(|u| u.1);
                self.units.insert(name, (kind, held));
            }
            6 | 7 if self.units.remove(&name).is_some() => d.remove_unit(&name),
            8 if up => {
                if let Some((_, held)) = self.units.get_mut(&name) {
                    if d.rctl(&["stop", &name]).status.success() {
                        *held = true;
                    }
                }
            }
            9 if up => {
                if let Some((_, held)) = self.units.get_mut(&name) {
                    if d.rctl(&["start", &name]).status.success() {
                        *held = false;
                    }
                }
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..120)));
    }
}

fn seeds(range: std::ops::Range<u64>) -> Vec<u64> {
    match std::env::var("RCD_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(one) if range.contains(&one) => vec![one],
        Some(_) => vec![],
        None => range.collect(),
    }
}

fn churn(seed: u64) {
    eprintln!("churn: seed {seed} (replay: RCD_FAULT_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut d = Daemon::new();
    let mut files = Files::default();
    // Some units before the first start, as at boot.
    for _ in 0..rng.usize(0..6) {
        files.step(&d, &mut rng, false);
    }
    d.spawn();
    files.daemon_started();
    for round in 0..2 {
        for _ in 0..rng.usize(1..25) {
            files.step(&d, &mut rng, true);
        }
        d.kill();
        for _ in 0..rng.usize(0..3) {
            files.step(&d, &mut rng, false);
        }
        d.spawn();
        files.daemon_started();
        let want = files.want();
        eprintln!("churn: seed {seed} round {round}: {want:?}");
        settle_and_check(&d, &want, Duration::from_secs(60));
    }
}

#[test]
fn churn_and_sigkill_seeds_0_to_4() {
    seeds(0..5).into_iter().for_each(churn);
}

#[test]
fn churn_and_sigkill_seeds_5_to_9() {
    seeds(5..10).into_iter().for_each(churn);
}

#[test]
fn churn_and_sigkill_seeds_10_to_14() {
    seeds(10..15).into_iter().for_each(churn);
}

#[test]
fn churn_and_sigkill_seeds_15_to_19() {
    seeds(15..20).into_iter().for_each(churn);
}
