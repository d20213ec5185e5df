//! Starting a container: rootfs (overlay), OCI spec and bundle, then the shim, which creates and
//! starts it through the runtime. Each step undone if a later one fails.

use std::sync::Arc;

use crate::daemon::context::Context;
use crate::rootfs::Overlay;
use crate::shim::{self, launch::Launched};
use crate::unit::Unit;

use super::{blocking, cleanup, Error};

/// Starts container instance `id` of `unit`. On error nothing of it runs or stays mounted.
pub async fn start(ctx: &Arc<Context>, unit: &Arc<Unit>, id: &str) -> Result<Launched, Error> {
    let c2 = ctx.clone();
    let u2 = unit.clone();
    let id2 = id.to_string();
    let result = blocking(move || prepare_and_launch(&c2, &u2, &id2)).await;
    let result = match result {
        Ok(inner) => inner,
        Err(e) => Err(e),
    };
    match result {
        Ok(launched) => Ok(launched),
        Err(error) => match cleanup::instance(ctx, id, cleanup::Depth::Unmount).await {
            Ok(()) => Err(error),
            Err(rollback) => Err(Error::Rollback {
                error: Box::new(error),
                rollback: Box::new(rollback),
            }),
        },
    }
}

fn prepare_and_launch(ctx: &Context, unit: &Unit, id: &str) -> Result<Launched, Error> {
    let dir = ctx.paths.container(id);
    let bundle = ctx.paths.bundle(id);
    let rootfs = bundle.join("rootfs");
    // Step 5: rootfs. The unit's directory stays untouched: it is the overlay's lower layer.
    Overlay::new(&unit.container.rootfs, &dir, &rootfs).mount()?;
    // Step 7: OCI spec -> bundle/config.json, once per instance: it depends only on the
    // spec-hashed parts of the unit, and a restart of the instance reuses it.
    let config = bundle.join("config.json");
    if !config.exists() {
        let spec = crate::spec::build(unit, &rootfs, &ctx.cgroups_path(id))?;
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Bundle {
            path: config.clone(),
            source: std::io::Error::other(e),
        })?;
        // Rebuilt from the unit whenever missing: no fsync needed, only wholeness.
        crate::store::atomic::write_with(&config, &json, crate::store::atomic::Sync::None)
            .map_err(|source| Error::Bundle {
                path: config.clone(),
                source,
            })?;
    }
    std::fs::create_dir_all(&ctx.paths.logs).map_err(|source| Error::Bundle {
        path: ctx.paths.logs.clone(),
        source,
    })?;
    // Step 8: the shim creates and starts it, and stays with it.
    let opts = shim::Options {
        id: id.to_string(),
        bundle,
        runtime: ctx.runtime.binary.clone(),
        runtime_root: ctx.runtime.root.clone(),
        log: ctx.paths.log(&unit.name),
        dir,
    };
    Ok(shim::launch::launch(&ctx.shim, &opts, ctx.start_timeout)?)
}
