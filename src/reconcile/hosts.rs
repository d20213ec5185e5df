//! `/etc/hosts` of the running bridge containers, rewritten when the set of units changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::context::Context;
use crate::network::names::Member;
use crate::pipeline;
use crate::store::State;

/// How long a refresh waits for more changes before it writes: a burst of starts (a boot)
/// becomes a few passes over the members instead of one per start, each rewriting them all.
const GATHER: Duration = Duration::from_millis(100);

/// Coalesces the refreshes of the hosts files: at most one pass at a time, and every request
/// made while one waits or writes is answered by the next.
#[derive(Debug, Default)]
pub struct Refresher {
    state: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    /// A pass is waiting or writing.
    running: bool,
    /// Something changed since the last pass read the members.
    dirty: bool,
}

/// Asks for the `/etc/hosts` of every running bridge container to be brought up to date, so
/// each lists the units it shares a network with at their current addresses (within
/// [`GATHER`]; a starting container's own file has them from the start, see
/// [`members`]). Failures are logged: a stale name is not worth failing anything for.
pub fn refresh_hosts(ctx: &Arc<Context>) {
    {
        let mut p = ctx.hosts.state.lock().unwrap_or_else(|e| e.into_inner());
        p.dirty = true;
        if p.running {
            return;
        }
        p.running = true;
    }
    let ctx = ctx.clone();
    ctx.tasks.clone().spawn(async move {
        loop {
            tokio::time::sleep(GATHER).await;
            {
                let mut p = ctx.hosts.state.lock().unwrap_or_else(|e| e.into_inner());
                if !p.dirty {
                    p.running = false;
                    return;
                }
                p.dirty = false;
            }
            write_all(&ctx).await;
        }
    });
}

/// The running containers on bridge networks, with their addresses.
pub fn members(ctx: &Context) -> Vec<Member> {
    ctx.units.view(|table| {
        table
            .iter()
            .filter_map(|(name, e)| {
                let r = e.record.as_ref().filter(|r| r.state == State::Running)?;
                let joined = r.network.as_ref()?;
                let id = r.container_id.as_ref()?;
                let unit = e.unit.as_ref()?;
                Some(Member {
                    unit: name.clone(),
                    hostname: unit.container.hostname.clone(),
                    hosts_file: ctx.paths.container(id).join("hosts"),
                    addresses: joined.addresses(),
                    extra: unit.network.names.extra_hosts.clone(),
                })
            })
            .collect()
    })
}

/// One pass: every member's file whose content differs from what it should be, rewritten.
async fn write_all(ctx: &Arc<Context>) {
    let members = members(ctx);
    if members.is_empty() {
        return;
    }
    let written = pipeline::blocking(move || {
        for (path, text) in crate::network::names::hosts_files(&members) {
            // A read is far cheaper than a rewrite, and most files of a pass are current.
            match std::fs::read_to_string(&path) {
                Ok(current) if current == text => continue,
                Ok(_) => {}
                // Never recreate the file of an instance being taken apart meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => tracing::warn!("{}: {e}", path.display()),
            }
            if let Err(e) = crate::network::files::write_in_place(&path, &text) {
                tracing::warn!("{}: {e}", path.display());
            }
        }
    })
    .await;
    if let Err(e) = written {
        tracing::warn!("hosts files: {e}");
    }
}
