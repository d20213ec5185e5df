//! The watch on each running shim: its exit pokes the reconciler.

use std::sync::Arc;

use crate::context::Context;
use crate::shim::launch;

/// Pokes the reconciler when the shim exits (its container has ended).
pub fn watch_exit(ctx: &Arc<Context>, name: &str, shim_pid: i32, shim_start: u64) {
    let c = ctx.clone();
    let name = name.to_string();
    let cancel = ctx.cancel.clone();
    ctx.tasks.spawn(async move {
        tokio::select! {
            () = launch::wait(shim_pid, shim_start) => {}
            () = cancel.cancelled() => return,
        }
        tracing::debug!(unit = %name, shim_pid, "shim exited");
        c.units
            .update(&name, |e| e.shim_exited = Some((shim_pid, shim_start)));
        // A lost poke (injected here by the fault suite) is healed by the periodic look.
        crate::failpoint::hit("exit-poke");
        c.poke(&name);
    });
}
