//! For a `container:<unit>` unit: the container whose network it shares, looked up in the
//! unit table. The plan needs to know whether it runs and in which namespace; the start needs
//! what to join; `rctl status` needs why it waits.

use crate::daemon::context::Context;
use crate::network::shared::{self, Shared};
use crate::shim::launch;
use crate::store::State;
use crate::unit::{network_links, NetworkMode, Unit};

use super::plan::Join;

/// Where the target of a unit's `container:` mode stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// For the plan.
    pub join: Join,
    /// What to join, when it runs.
    pub shared: Option<Shared>,
    /// When it does not: what the unit waits for, as `rctl status` says it.
    pub waiting_for: Option<String>,
}

impl Target {
    fn not_needed() -> Self {
        Target {
            join: Join::NotNeeded,
            shared: None,
            waiting_for: None,
        }
    }

    fn missing(why: String) -> Self {
        Target {
            join: Join::Missing,
            shared: None,
            waiting_for: Some(why),
        }
    }
}

/// Looks up the target of `unit`'s `container:` mode (none for other modes).
pub fn look(ctx: &Context, unit: Option<&Unit>) -> Target {
    let Some(unit) = unit else {
        return Target::not_needed();
    };
    let NetworkMode::Container(name) = &unit.network.mode else {
        return Target::not_needed();
    };
    let table = ctx.table();
    let Some(entry) = table.get(name).filter(|e| e.unit.is_some() || e.present) else {
        return Target::missing(format!("unit {name}, which does not exist"));
    };
    let Some(target_unit) = entry.unit.as_deref() else {
        return Target::missing(format!("unit {name}, whose file is invalid"));
    };
    // A circle of `container:` units can never start; say so rather than wait in silence.
    let names = table.keys().cloned().collect();
    let units = table.values().filter_map(|e| e.unit.as_deref());
    if let Some(p) = network_links(units, &names)
        .into_iter()
        .find(|p| p.unit == unit.name)
    {
        return Target::missing(p.message);
    }
    let running = entry.record.as_ref().filter(|r| {
        r.state == State::Running
            && matches!((r.shim_pid, r.shim_start), (Some(p), Some(s)) if launch::alive(p, s))
    });
    let (Some(r), Some(pid)) = (running, running.and_then(|r| r.pid)) else {
        return Target::missing(format!("unit {name} to run"));
    };
    let (Some(id), Ok(ino)) = (
        r.container_id.clone(),
        shared::netns_ino(&shared::netns_of(pid)),
    ) else {
        return Target::missing(format!("unit {name} to run"));
    };
    let own_files = r.network.is_some() || target_unit.network.mode == NetworkMode::Host;
    let chained = r.shared_network.as_ref();
    // A pinned namespace (bridge, or a chain ending in one) outlives the target's process.
    let netns = r
        .network
        .as_ref()
        .map(|j| j.netns.clone())
        .or_else(|| chained.map(|s| s.netns.clone()))
        .unwrap_or_else(|| shared::netns_of(pid));
    let shared = Shared {
        unit: name.clone(),
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
    };
    Target {
        join: Join::Ready(ino),
        shared: Some(shared),
        waiting_for: None,
    }
}

/// The units whose `container:` mode names a unit that `is_target`.
pub fn joiners(ctx: &Context, is_target: impl Fn(&str) -> bool) -> Vec<String> {
    ctx.table()
        .iter()
        .filter(|(_, e)| {
            e.unit.as_deref().is_some_and(
                |u| matches!(&u.network.mode, NetworkMode::Container(t) if is_target(t)),
            )
        })
        .map(|(name, _)| name.clone())
        .collect()
}
