//! Taking a container instance apart: the runtime's record of it, its overlay mount, and (when
//! the instance is retired) its directory. Every step is idempotent.

use std::sync::Arc;

use crate::daemon::context::Context;
use crate::rootfs;

use super::{blocking, Error};

/// Deletes instance `id` from the runtime and unmounts its rootfs; with `retire`, also removes
/// its directory (its writable layer). The unit's log is kept.
pub async fn instance(ctx: &Arc<Context>, id: &str, retire: bool) -> Result<(), Error> {
    let ctx = ctx.clone();
    let id = id.to_string();
    blocking(move || instance_blocking(&ctx, &id, retire)).await?
}

/// The blocking body of `instance`, for callers already off the async threads.
pub fn instance_blocking(ctx: &Context, id: &str, retire: bool) -> Result<(), Error> {
    ctx.runtime.delete(id)?;
    rootfs::unmount(&ctx.paths.bundle(id).join("rootfs"))?;
    if retire {
        let dir = ctx.paths.container(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Bundle { path: dir, source }),
        }
    }
    Ok(())
}
