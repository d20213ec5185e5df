//! What a unit's start depends on: the units it names (`container:<unit>`, `[unit] after`,
//! `requires`, `wants`), looked up in the unit table. The plan needs to know whether it may
//! start, whether it must stop because a unit it requires was stopped, and, for a
//! `container:` unit, which namespace its target runs in; the start needs what to join and
//! which units to start along; `rctl status` needs why it waits.

use crate::context::{Context, Entry};
use crate::network::shared::{self, Shared};
use crate::store::State;
use crate::table::View;
use crate::unit::{locate_link, references, unit_links, NetworkMode, Unit};

use super::plan::Join;

/// Where the units a unit names stand, as far as its own start is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// The `container:` target, for the plan.
    pub join: Join,
    /// What to join, when the target runs.
    pub shared: Option<Shared>,
    /// Why it cannot start now (`unit db to run`), as `rctl status` says it.
    pub blocked: Option<String>,
    /// A unit it names that does not exist, or a cycle: the problem at its place in the file.
    pub problem: Option<String>,
    /// A unit it requires was stopped or removed: it must not run either.
    pub required_stopped: Option<String>,
    /// Units it wants or requires that would not start by themselves: started along.
    pub pull_in: Vec<String>,
}

impl Gate {
    fn open() -> Self {
        Gate {
            join: Join::NotNeeded,
            shared: None,
            blocked: None,
            problem: None,
            required_stopped: None,
            pull_in: Vec::new(),
        }
    }

    fn block(&mut self, why: String) {
        self.blocked.get_or_insert(why);
    }
}

/// Looks up what `unit` depends on.
pub fn look(ctx: &Context, unit: Option<&Unit>) -> Gate {
    let mut gate = Gate::open();
    let Some(unit) = unit else {
        return gate;
    };
    if references(unit).next().is_none() {
        return gate;
    }
    let target = match &unit.network.mode {
        NetworkMode::Container(target) => Some(target.as_str()),
        _ => None,
    };
    let target_entry = ctx.units.view(|table| {
        let lookup = |n: &str| table.get(n).and_then(|e| e.unit.as_deref());
        let exists = |n: &str| table.get(n).is_some_and(|e| e.unit.is_some() || e.present);
        // A missing unit or a circle: say so rather than wait in silence.
        for p in unit_links(unit, lookup, exists) {
            if p.key == "requires" {
                gate.required_stopped.get_or_insert(p.waiting_for());
            }
            gate.block(p.waiting_for());
            gate.problem
                .get_or_insert_with(|| locate_link(&unit.file, &p).to_string());
        }
        target.and_then(|t| table.get(t).cloned())
    });
    // The target's namespace is looked at in /proc: outside the table.
    if let Some(target) = target {
        gate.join = Join::Missing;
        if let Some(e) = target_entry {
            match shared(ctx, target, &e) {
                Ok(s) => {
                    gate.join = Join::Ready(s.ino);
                    gate.shared = Some(s);
                }
                Err(why) => gate.block(why),
            }
        }
    }
    ctx.units
        .view(|table| gate_on_units(ctx, unit, table, &mut gate));
    gate
}

/// The part of the gate that reads only the table: `after`, `requires`, `wants`.
fn gate_on_units(ctx: &Context, unit: &Unit, table: View<'_>, gate: &mut Gate) {
    for name in &unit.deps.after {
        let Some(e) = table.get(name.as_str()) else {
            continue;
        };
        match (ready(ctx, e), coming(e)) {
            (Ok(()), _) | (_, false) => {}
            (Err(why), true) => gate.block(format!("unit {name} to {why}")),
        }
    }
    for name in &unit.deps.requires {
        let held = table
            .get(name.as_str())
            .and_then(|e| e.record.as_ref())
            .is_some_and(|r| r.hold);
        if held {
            let why = format!("unit {name}, which it requires, to be started (it was stopped)");
            gate.required_stopped.get_or_insert(why.clone());
            gate.block(why);
        }
    }
    for name in unit.deps.requires.iter().chain(&unit.deps.wants) {
        if table.get(name.as_str()).is_some_and(idle) {
            gate.pull_in.push(name.clone());
        }
    }
}

/// Whether `e`'s container runs (and is healthy, if it has a health check); if not, what it
/// has yet to do ("run", "be healthy").
fn ready(ctx: &Context, e: &Entry) -> Result<(), &'static str> {
    let Some(r) = e
        .record
        .as_ref()
        .filter(|r| r.state == State::Running && e.shim_running())
    else {
        return Err("run");
    };
    let checked = e
        .unit
        .as_deref()
        .is_some_and(|u| crate::health::resolve(&u.health, r.image_health.as_ref()).is_some());
    let healthy = r
        .container_id
        .as_deref()
        .and_then(|id| ctx.health.get(id))
        .is_some_and(|h| h.status == crate::health::Status::Healthy);
    if checked && !healthy {
        return Err("be healthy");
    }
    Ok(())
}

/// Whether `e` is on its way to running: a unit waits for one that is, and not for one that
/// is not going to (held, exited for good, not autostarted), as systemd's `After=` only
/// orders what starts anyway.
fn coming(e: &Entry) -> bool {
    let Some(unit) = e.unit.as_deref() else {
        return false;
    };
    match &e.record {
        None => unit.autostart,
        Some(r) if r.hold => false,
        Some(r) => match r.state {
            State::Pending => unit.autostart || r.start_requested,
            State::Starting
            | State::Pulling
            | State::Running
            | State::Restarting
            | State::Waiting => true,
            State::Exited | State::Stopped | State::Failed => {
                r.start_requested || r.restart_requested
            }
        },
    }
}

/// Whether `e` would stay down unless something starts it: a unit that wants or requires it
/// does, when it starts (never one the operator holds stopped).
fn idle(e: &Entry) -> bool {
    e.unit.is_some() && !coming(e) && e.record.as_ref().is_none_or(|r| !r.hold) && !e.shim_running()
}

/// The network of `name` (table entry `e`) to share, if its container runs.
fn shared(ctx: &Context, name: &str, e: &Entry) -> Result<Shared, String> {
    let not_running = || format!("unit {name} to run");
    let target_unit = e.unit.as_deref().ok_or_else(not_running)?;
    let r = e
        .record
        .as_ref()
        .filter(|r| r.state == State::Running && e.shim_running())
        .ok_or_else(not_running)?;
    let (Some(pid), Some(id)) = (r.pid, r.container_id.clone()) else {
        return Err(not_running());
    };
    let ino = shared::netns_ino(&shared::netns_of(pid)).map_err(|_| not_running())?;
    let own_files = r.network.is_some() || target_unit.network.mode == NetworkMode::Host;
    let chained = r.shared_network.as_ref();
    // A pinned namespace (bridge, or a chain ending in one) outlives the target's process;
    // taken only while it is the one the target runs in (a chain's may be stale).
    let netns = r
        .network
        .as_ref()
        .map(|j| j.netns.clone())
        .or_else(|| chained.map(|s| s.netns.clone()))
        .filter(|p| shared::netns_ino(p).ok() == Some(ino))
        .unwrap_or_else(|| shared::netns_of(pid));
    Ok(Shared {
        unit: name.to_owned(),
        container_id: id.clone(),
        netns,
        ino,
        files_dir: if own_files {
            Some(ctx.paths.container(&id))
        } else {
            chained.and_then(|s| s.files_dir.clone())
        },
        hostname: chained.map_or_else(
            || target_unit.container.hostname.clone(),
            |s| s.hostname.clone(),
        ),
        network: r
            .network
            .clone()
            .or_else(|| chained.and_then(|s| s.network.clone())),
    })
}

/// The units that name a unit that `is_target` (in any of the ways `references` lists).
pub fn dependents(ctx: &Context, is_target: impl Fn(&str) -> bool) -> Vec<String> {
    ctx.units.view(|v| {
        v.iter()
            .filter(|(_, e)| {
                e.unit
                    .as_deref()
                    .is_some_and(|u| references(u).any(|(_, t)| is_target(t)))
            })
            .map(|(name, _)| name.clone())
            .collect()
    })
}
