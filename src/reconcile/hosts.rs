//! `/etc/hosts` of the running bridge containers, rewritten when the set of units changes.

use std::sync::Arc;

use crate::context::Context;
use crate::pipeline;
use crate::store::State;

/// Rewrites the `/etc/hosts` of every running bridge container, so each lists the units it
/// shares a network with at their current addresses. Failures are logged: a stale name is
/// not worth failing a start or a removal for.
pub async fn refresh_hosts(ctx: &Arc<Context>) {
    let members: Vec<crate::network::names::Member> = ctx.units.view(|table| {
        table
            .iter()
            .filter_map(|(name, e)| {
                let r = e.record.as_ref().filter(|r| r.state == State::Running)?;
                let joined = r.network.as_ref()?;
                let id = r.container_id.as_ref()?;
                let unit = e.unit.as_ref()?;
                Some(crate::network::names::Member {
                    unit: name.clone(),
                    hostname: unit.container.hostname.clone(),
                    hosts_file: ctx.paths.container(id).join("hosts"),
                    addresses: joined
                        .networks
                        .iter()
                        .filter_map(|n| {
                            let ip = n.address.as_deref()?.split('/').next()?.parse().ok()?;
                            Some((n.name.clone(), ip))
                        })
                        .collect(),
                })
            })
            .collect()
    });
    if members.is_empty() {
        return;
    }
    let written = pipeline::blocking(move || {
        for (path, text) in crate::network::names::hosts_files(&members) {
            // Never recreate the file of an instance being taken apart meanwhile.
            if !path.exists() {
                continue;
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
