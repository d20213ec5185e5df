//! Starting a container: rootfs (overlay), OCI spec and bundle, then the shim, which creates and
//! starts it through the runtime. Each step undone if a later one fails.

use std::sync::Arc;

use tokio::sync::OwnedRwLockReadGuard;

use crate::context::Context;
use crate::network::attach::{self, Joined};
use crate::network::{files, shared};
use crate::rootfs::Overlay;
use crate::shim::{self, launch::Launched};
use crate::spec::NetSetup;
use crate::unit::{Container, NetworkMode, Source, Unit};

use super::image::{self, Prepared};
use super::{blocking, cleanup, Error};

/// A started container, with what it was started with that the unit alone does not say.
#[derive(Debug)]
pub struct Started {
    /// The shim and the container's init.
    pub launched: Launched,
    /// The signal that stops it: the unit's, else its image's StopSignal, else SIGTERM.
    pub stop_signal: String,
    /// Its image's ExposedPorts (`80/tcp`), information only.
    pub exposed_ports: Vec<String>,
    /// What it got from its networks (bridge mode).
    pub network: Option<Joined>,
    /// Its image's HEALTHCHECK.
    pub image_health: Option<crate::health::ImageHealth>,
    /// The digest its image reference resolved to (an image unit).
    pub image_digest: Option<String>,
}

/// Starts container instance `id` of `unit`. On error nothing of it runs or stays mounted.
/// `join` is the target's network for a `container:` unit (required for one).
/// `on_pull` is called when the start begins waiting for an image pull; if `superseded`
/// resolves before the image is ready, the start gives up (`Error::Superseded`).
pub async fn start(
    ctx: &Arc<Context>,
    unit: &Arc<Unit>,
    id: &str,
    join: Option<&shared::Shared>,
    on_pull: &(dyn Fn() + Send + Sync),
    superseded: impl std::future::Future<Output = ()>,
) -> Result<Started, Error> {
    let began = std::time::Instant::now();
    // Step 4: image. Nothing of the instance exists yet, so a failure here needs no rollback,
    // and giving up midway leaves only what a pull may resume.
    tokio::pin!(superseded);
    let fetched = match &unit.container.source {
        Source::Rootfs(_) => None,
        Source::Image { reference, pull } => tokio::select! {
            fetched = image::fetch(ctx, reference, *pull, on_pull) => Some(fetched?),
            () = &mut superseded => return Err(Error::Superseded),
        },
    };
    // Pulls wait outside the bound on concurrent starts: a slow registry must not hold up
    // units that are ready to run.
    let _permit = ctx.start_permits.acquire().await;
    // Held from the look at the image stores until the overlay stands on them (taken after
    // the permit: a removal waiting for it must not wait for the queue of starts too).
    let (image, held) = match fetched {
        None => (None, None),
        Some(fetched) => {
            let ready = async {
                let held = ctx.images.shared().await;
                image::prepare(ctx, fetched).await.map(|p| (p, held))
            };
            tokio::select! {
                ready = ready => {
                    let (prepared, held) = ready?;
                    (Some(prepared), Some(held))
                }
                () = &mut superseded => return Err(Error::Superseded),
            }
        }
    };
    // Settled before anything is mounted: an image whose StopSignal cannot be sent must not
    // start a container that could then not be stopped as its image asks.
    let config = image.as_ref().map(|p| &p.config);
    let stop_signal = crate::spec::stop_signal(unit, config).map_err(|reason| Error::Process {
        unit: unit.name.clone(),
        reason,
    })?;
    let exposed_ports = crate::spec::exposed_ports(config);
    let image_health = image.as_ref().and_then(|p| p.health.clone());
    let image_digest = image.as_ref().map(|p| p.digest.to_string());
    let c2 = ctx.clone();
    let u2 = unit.clone();
    let id2 = id.to_string();
    let join = join.cloned();
    let signo = crate::unit::parse_signal(&stop_signal)
        .map(|s| s as i32)
        .ok()
        .or_else(|| stop_signal.parse().ok())
        .unwrap_or(nix::sys::signal::Signal::SIGTERM as i32);
    let result = blocking(move || {
        prepare_and_launch(&c2, &u2, &id2, image.as_ref(), held, join.as_ref(), signo)
    })
    .await;
    let result = match result {
        Ok(inner) => inner,
        Err(e) => Err(e),
    };
    match result {
        Ok((launched, network)) => {
            crate::meters::get().started(&unit.name, began.elapsed());
            Ok(Started {
                launched,
                stop_signal,
                exposed_ports,
                network,
                image_health,
                image_digest,
            })
        }
        Err(error) => match cleanup::instance(ctx, id, cleanup::Depth::Unmount).await {
            Ok(()) => Err(error),
            Err(rollback) => Err(Error::Rollback {
                error: Box::new(error),
                rollback: Box::new(rollback),
            }),
        },
    }
}

fn prepare_and_launch(
    ctx: &Context,
    unit: &Unit,
    id: &str,
    image: Option<&Prepared>,
    held: Option<OwnedRwLockReadGuard<()>>,
    join: Option<&shared::Shared>,
    stop_signal: i32,
) -> Result<(Launched, Option<Joined>), Error> {
    // A `container:` unit takes its target's hostname with its network (Docker's rule).
    let renamed;
    let unit = match join {
        Some(s) => {
            renamed = Unit {
                container: Container {
                    hostname: s.hostname.clone(),
                    ..unit.container.clone()
                },
                ..unit.clone()
            };
            &renamed
        }
        None => unit,
    };
    let dir = ctx.paths.container(id);
    let bundle = ctx.paths.bundle(id);
    let rootfs = bundle.join("rootfs");
    // Step 5: rootfs. The unit's directory (or the image's snapshots) stays untouched: it is
    // the overlay's lower layers.
    let lowers = match (&unit.container.source, image) {
        (_, Some(prepared)) => prepared.lowers.clone(),
        (Source::Rootfs(r), None) => vec![r.clone()],
        (Source::Image { reference, .. }, None) => {
            return Err(Error::Image {
                image: reference.clone(),
                reason: "not prepared".into(),
            })
        }
    };
    Overlay::layered(lowers.clone(), &dir, &rootfs).mount()?;
    // Mounted, the snapshots are safe from removal (a sweep leaves mounted lower layers).
    drop(held);
    // What it mounts from the host (bind sources, volumes, secrets), ready before the network.
    let super::mounts::Prepared {
        mounts,
        vars: secret_vars,
    } = super::mounts::prepare(ctx, unit, &dir, &rootfs)?;
    let with_mounts;
    let unit = if mounts != unit.mounts {
        with_mounts = Unit {
            mounts,
            ..unit.clone()
        };
        &with_mounts
    } else {
        unit
    };
    // Step 6: network. A bridge unit's namespace and CNI attachments outlive restarts of the
    // instance by its policy (found in place then); they go when it stops for longer.
    let mut held_netns = None;
    let (network, net) = match &unit.network.mode {
        NetworkMode::None => (None, None),
        NetworkMode::Bridge => {
            let members = crate::reconcile::hosts::members(ctx);
            let joined = ctx.networks.attach(id, unit, &dir, &members)?;
            let net = NetSetup {
                netns: Some(joined.netns.clone()),
                files: shared::files_in(Some(&dir)),
            };
            (Some(joined), Some(net))
        }
        NetworkMode::Host => {
            files::write_host_copies(&dir, &unit.network.names).map_err(|source| {
                attach::Error::File {
                    path: dir.clone(),
                    source,
                }
            })?;
            let net = NetSetup {
                netns: None,
                files: shared::files_in(Some(&dir)),
            };
            (None, Some(net))
        }
        NetworkMode::Container(target) => {
            let s = join.ok_or_else(|| Error::Shared {
                target: target.clone(),
                reason: "not running".into(),
            })?;
            // Held open until the runtime has joined it, and given to the runtime by this
            // descriptor: the namespace checked is the one joined, whatever happens to the
            // target (a restart, a reused pid) in between.
            let file = shared::open_checked(&s.netns, s.ino).map_err(|reason| Error::Shared {
                target: target.clone(),
                reason,
            })?;
            let net = NetSetup {
                netns: Some(shared::fd_path(&file)),
                files: s.files(),
            };
            held_netns = Some(file);
            (None, Some(net))
        }
    };
    // Step 7: OCI spec -> bundle/config.json. A rootfs unit's depends only on the spec-hashed
    // parts of the unit and the cgroup layout, so a restart of the instance reuses it unless
    // the daemon now uses another cgroup driver; an image unit's is rebuilt at every start
    // from the stored image config (a `pull = "always"` may have changed it), a `container:`
    // unit's from its target's network of the moment.
    let config = bundle.join("config.json");
    let cgroups_path = ctx.cgroups_path(id);
    if image.is_some()
        || join.is_some()
        || !secret_vars.is_empty()
        || crate::spec::cgroups_path_of(&config).as_deref() != Some(cgroups_path.as_str())
    {
        let mut process =
            crate::spec::process(unit, image.map(|p| &p.config), &lowers).map_err(|reason| {
                Error::Process {
                    unit: unit.name.clone(),
                    reason,
                }
            })?;
        for (var, value) in &secret_vars {
            let prefix = format!("{var}=");
            process.env.retain(|e| !e.starts_with(&prefix));
            process.env.push(format!("{var}={value}"));
        }
        let annotations = ctx
            .cgroups
            .annotations(stop_signal, unit.container.stop_timeout);
        let spec = crate::spec::build(
            unit,
            &process,
            &rootfs,
            &cgroups_path,
            &annotations,
            net.as_ref(),
            &ctx.cdi_dirs,
        )?;
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
        systemd_cgroup: ctx.runtime.systemd_cgroup,
        log: ctx.paths.log(&unit.name),
        dir,
        log_limits: unit.logs.limits(ctx.settings().log_limits),
        journal: journal_target(ctx, unit, id),
    };
    let launched = {
        // The runtime makes the container's cgroup (and its parent) during the launch.
        let _cgroups = ctx
            .cgroup_parents
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shim::launch::launch(&ctx.shim, &opts, ctx.start_timeout)?
    };
    drop(held_netns);
    Ok((launched, network))
}

/// Where the container's output goes besides its file: journald's socket and the fields of
/// its entries, when the unit (or, failing that, the daemon's config) says `journald`.
fn journal_target(ctx: &Context, unit: &Unit, id: &str) -> Option<crate::logs::journal::Target> {
    use crate::logs::journal::{Driver, Target};
    let driver = unit.logs.driver.unwrap_or(ctx.settings().log_driver);
    (driver == Driver::Journald).then(|| Target {
        socket: ctx.journal_socket.clone(),
        unit: unit.name.clone(),
        container_id: id.to_string(),
        image: match &unit.container.source {
            Source::Image { reference, .. } => Some(reference.clone()),
            Source::Rootfs(_) => None,
        },
    })
}
