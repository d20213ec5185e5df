//! Taking a container instance apart: the runtime's record of it, its overlay mount, and (when
//! the instance is retired) its directory. Every step is idempotent.

use std::sync::Arc;

use crate::context::Context;
use crate::rootfs;

use super::{blocking, Error};

/// How far to take an instance apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Only the runtime's record: the rootfs stays mounted for a restart of the same instance
    /// (unmounting syncs the upper layer's filesystem, which costs up to a second here).
    Runtime,
    /// Also unmount the rootfs and take the network down (stopped, failed, exited for good):
    /// nothing holds an address, a published port or a mount for a container that does not
    /// run. The writable layer stays.
    Unmount,
    /// Also remove the instance's directory. The unmount and removal finish in the background;
    /// a daemon that dies meanwhile removes the leftover at its next start.
    Retire,
}

/// Takes instance `id` apart to `depth`. The unit's log is kept.
pub async fn instance(ctx: &Arc<Context>, id: &str, depth: Depth) -> Result<(), Error> {
    let c = ctx.clone();
    let i = id.to_string();
    let first = if depth == Depth::Retire {
        Depth::Runtime
    } else {
        depth
    };
    blocking(move || instance_blocking(&c, &i, first)).await??;
    if depth == Depth::Retire {
        let c = ctx.clone();
        let i = id.to_string();
        let tasks = ctx.tasks.clone();
        tasks.spawn_blocking(move || {
            if let Err(e) = instance_blocking(&c, &i, Depth::Retire) {
                tracing::warn!(container = %i, "cleanup: {e}");
            }
            // Never while a start's runtime is making its cgroup under them.
            let _alone = c
                .cgroup_parents
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            crate::cgroup::remove_parents(&c.tag);
        });
    }
    Ok(())
}

/// `Depth::Unmount` without the runtime step: for a container its shim already deleted from
/// the runtime (it did if it recorded the exit).
pub async fn unmount(ctx: &Arc<Context>, id: &str) -> Result<(), Error> {
    let c = ctx.clone();
    let i = id.to_string();
    blocking(move || unmount_blocking(&c, &i)).await??;
    Ok(())
}

fn unmount_blocking(ctx: &Context, id: &str) -> Result<(), Error> {
    rootfs::unmount(&ctx.paths.bundle(id).join("rootfs"))?;
    rootfs::unmount(&super::secrets::dir_of(&ctx.paths.container(id)))?;
    // A CNI DEL that fails must not keep a stopped container from being recorded as stopped;
    // what it left is released again at the instance's next start (its namespace gone, its
    // cached attachments are deleted first), at its retirement, or at the next daemon start.
    if let Err(e) = ctx.networks.detach(id) {
        tracing::warn!(container = %id, "taking the network down: {e}");
    }
    Ok(())
}

/// The blocking body of `instance`, all steps in the calling thread.
pub fn instance_blocking(ctx: &Context, id: &str, depth: Depth) -> Result<(), Error> {
    ctx.runtime.delete(id)?;
    if depth == Depth::Runtime {
        return Ok(());
    }
    unmount_blocking(ctx, id)?;
    if depth == Depth::Retire {
        ctx.networks.detach(id)?;
        let dir = ctx.paths.container(id);
        match crate::tree::remove(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Instance { path: dir, source }),
        }
    }
    Ok(())
}
