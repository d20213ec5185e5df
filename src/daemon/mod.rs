//! The daemon: recovers state, scans the units directory, re-adopts running shims, then runs the
//! watcher, the reconciler and the API until shutdown. Containers outlive it (live restore).

mod image_gc;
pub mod logging;
mod recover;
pub mod reload;
pub mod service;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;

use crate::config::{find_on_path, is_executable, Config, Paths};
use crate::context::Context;
use crate::reconcile;
use crate::runtime::Runtime;
use crate::store::Store;

/// The daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable OCI runtime.
    #[error("no OCI runtime: {0}")]
    Runtime(String),
    /// No shim binary.
    #[error("no rcd-shim: {0}")]
    Shim(String),
    /// A state directory could not be prepared.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The state store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The image directories could not be opened.
    #[error("images: {0}")]
    Images(String),
    /// The networks could not be set up (config, CNI state directories).
    #[error("networks: {0}")]
    Networks(String),
    /// The first scan of the units directory failed: nothing is touched without it.
    #[error("{0}; stopping with every container as it is")]
    FirstScan(String),
    /// The watcher could not start.
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        /// The units directory.
        path: PathBuf,
        /// The cause.
        source: notify::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Picks the runtime: the configured one, else the first of runc, crun, youki on PATH.
fn pick_runtime(config: &Config) -> Result<PathBuf, Error> {
    match &config.runtime {
        Some(p) if p.components().count() == 1 => find_on_path(&[&p.to_string_lossy()])
            .ok_or_else(|| Error::Runtime(format!("{} not found on PATH", p.display()))),
        Some(p) if is_executable(p) => Ok(p.clone()),
        Some(p) => Err(Error::Runtime(format!(
            "{} is not an executable file",
            p.display()
        ))),
        None => find_on_path(&["runc", "crun", "youki"]).ok_or_else(|| {
            Error::Runtime("none of runc, crun, youki found on PATH (apt-get install runc)".into())
        }),
    }
}

/// Picks the shim: the configured one, else `rcd-shim` beside this executable, else on PATH.
fn pick_shim(config: &Config) -> Result<PathBuf, Error> {
    if let Some(p) = &config.shim {
        return if is_executable(p) {
            Ok(p.clone())
        } else {
            Err(Error::Shim(format!(
                "{} is not an executable file",
                p.display()
            )))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("rcd-shim")));
    if let Some(p) = beside.filter(|p| is_executable(p)) {
        return Ok(p);
    }
    find_on_path(&["rcd-shim"]).ok_or_else(|| Error::Shim("not beside rcd nor on PATH".into()))
}

/// Takes the state root for this process: two daemons on one root would fight over every
/// container. Hold the returned lock for the daemon's lifetime.
pub fn lock_root(root: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, Error> {
    std::fs::create_dir_all(root).map_err(io(root))?;
    let path = root.join("rcd.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        Error::Io {
            path: path.clone(),
            source: std::io::Error::other(format!(
                "another rcd is running on this root ({e}); give each daemon its own --root"
            )),
        }
    })
}

/// Binds the API socket: root's, mode 0660, group `rcd` if that group exists.
pub fn bind_socket(path: &Path) -> Result<UnixListener, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    // A socket left by a killed daemon blocks bind; it is ours to replace.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io(path))?;
    if let Ok(Some(group)) = nix::unistd::Group::from_name("rcd") {
        let _ = nix::unistd::chown(path, None, Some(group.gid));
    }
    Ok(listener)
}

/// Runs the daemon until `shutdown` resolves. Containers keep running afterwards.
pub async fn run(
    mut config: Config,
    listener: UnixListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    // Events name absolute paths; so must the directory they are compared with.
    for p in [&mut config.units_dir, &mut config.root] {
        *p = std::path::absolute(&*p).map_err(io(p))?;
    }
    let runtime_bin = pick_runtime(&config)?;
    let shim = pick_shim(&config)?;
    let paths = Paths::new(&config.root);
    for dir in [
        &paths.root,
        &paths.runtime_root,
        &paths.containers,
        &paths.logs,
    ] {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    // State holds container records and logs: root's alone.
    std::fs::set_permissions(&paths.root, std::fs::Permissions::from_mode(0o711))
        .map_err(io(&paths.root))?;
    let store = Store::open(&paths.records)?;
    // The system CA store, read once for the daemon's life on a blocking thread (a few hundred
    // files), beside the rest of the start: every registry client shares it, and one that
    // needs it sooner waits for that read (a OnceLock) rather than making its own.
    drop(tokio::task::spawn_blocking(crate::image::tls::system_roots));
    let images = crate::context::Images::open(&paths.root, &config.file).map_err(Error::Images)?;
    let networks = crate::network::attach::Networks::open(&paths.root, &config.file.network)
        .map_err(Error::Networks)?;
    networks.restore();
    let events_dir = paths.root.join("events");
    let events = crate::events::Log::open(&events_dir).map_err(io(&events_dir))?;
    let cgroup_driver = config
        .file
        .cgroup_driver
        .unwrap_or_else(crate::cgroup::Driver::detect);
    let runtime = Runtime::new(&runtime_bin, &paths.runtime_root)
        .with_systemd_cgroup(cgroup_driver == crate::cgroup::Driver::Systemd)
        .with_timeout(config.runtime_timeout);
    let (scans, scan_inbox) = crate::desired::owner::channel();
    let mut ctx = Context::new(
        paths,
        config.units_dir.clone(),
        runtime,
        cgroup_driver,
        shim,
        config.start_timeout,
        store,
        images,
        networks,
        events,
    );
    ctx.intent_timeout = config.intent_timeout;
    ctx.cdi_dirs = config.file.cdi_spec_dirs.clone();
    ctx.journal_socket = config.file.logs.journal_socket.clone();
    ctx.scans = scans;
    ctx.set_settings(crate::context::Settings::of(&config.file));
    let ctx = Arc::new(ctx);
    tracing::info!(
        runtime = %runtime_bin.display(),
        cgroup_driver = ctx.cgroups.driver.as_str(),
        root = %config.root.display(),
        units = %config.units_dir.display(),
        "rcd starting"
    );

    // Watch first, so nothing that changes during the scan is missed.
    let (mut watcher, mut ticks) =
        crate::watch::DirWatcher::start(&config.units_dir).map_err(|source| Error::Watch {
            path: config.units_dir.clone(),
            source,
        })?;
    // Nothing is reconciled before the records are read, the orphans swept, the directory
    // scanned and the running shims re-adopted: that is what prevents a second copy.
    let c = ctx.clone();
    tokio::task::spawn_blocking(move || recover::recover(&c))
        .await
        .map_err(|e| Error::Runtime(format!("recovery task: {e}")))?;
    // Fail closed: without the desired state every record looks like a removed unit's.
    crate::desired::owner::once(&ctx)
        .await
        .map_err(Error::FirstScan)?;
    watcher.watch_files(&external_files(&ctx));
    let lost = recover::adopt(&ctx);
    ctx.queue.poke_all();
    let counts = ctx.units.len();
    tracing::info!(units = counts, "rcd ready");

    // Every task below ends when `stop` is cancelled, and is joined before this returns.
    let stop = ctx.cancel.clone();
    let tasks = ctx.tasks.clone();

    // The scan owner, and the watcher asking it: any burst of events is a full rescan
    // (cheap, and it cannot miss a change).
    tasks.spawn(crate::desired::owner::run(
        ctx.clone(),
        scan_inbox,
        stop.clone(),
    ));
    let scans = ctx.scans.clone();
    let wstop = stop.clone();
    let wctx = ctx.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                more = crate::watch::next_burst(&mut ticks) => if !more { break },
                () = wstop.cancelled() => break,
            }
            watcher.rearm();
            // Waited for, so the env files of what it loaded are watched from now on.
            let _ = scans.reload().await;
            watcher.watch_files(&external_files(&wctx));
        }
    });

    let tcp_router = crate::api::server::router(ctx.clone());
    crate::api::tcp::serve(&config.file.api, tcp_router, &tasks, stop.clone())
        .await
        .map_err(Error::Runtime)?;
    let api = {
        let router = crate::api::server::router(ctx.clone());
        let astop = stop.clone();
        tasks.spawn(async move {
            let service = router.into_make_service_with_connect_info::<crate::api::access::Peer>();
            let _ = axum::serve(listener, service)
                .with_graceful_shutdown(async move { astop.cancelled().await })
                .await;
        })
    };

    // /metrics alone, in plain HTTP on a loopback address, when the config asks for it.
    if let Some(addr) = config.file.api.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Runtime(format!("metrics_listen {addr}: {e}")))?;
        tracing::info!(%addr, "metrics listening (plain HTTP, loopback)");
        let router = axum::Router::new()
            .route("/metrics", axum::routing::get(crate::api::metrics::metrics))
            .with_state(ctx.clone());
        let mstop = stop.clone();
        tasks.spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { mstop.cancelled().await })
                .await;
        });
    }

    // The Docker Engine API, on sockets of its own when the config asks for them.
    for (path, read_only) in [
        (config.file.api.docker_socket.clone(), false),
        (config.file.api.docker_read_only_socket.clone(), true),
    ] {
        let Some(path) = path else { continue };
        let listener = bind_socket(&path)?;
        tracing::info!(socket = %path.display(), read_only, "Docker Engine API listening");
        let router = crate::docker::router(ctx.clone(), read_only);
        let dstop = stop.clone();
        tasks.spawn(async move {
            let service = router.into_make_service_with_connect_info::<crate::api::access::Peer>();
            let _ = axum::serve(listener, service)
                .with_graceful_shutdown(async move { dstop.cancelled().await })
                .await;
        });
    }

    // SIGHUP: the config file again.
    {
        let ctx = ctx.clone();
        let (path, explicit) = config.config_path.clone();
        let mut running = config.file.clone();
        let hup_stop = stop.clone();
        tasks.spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            loop {
                tokio::select! {
                    got = hup.recv() => if got.is_none() { return },
                    () = hup_stop.cancelled() => return,
                }
                let c = ctx.clone();
                let p = path.clone();
                let mut r = running.clone();
                if let Ok(r) = tokio::task::spawn_blocking(move || {
                    reload::reload(&c, &p, explicit, &mut r);
                    r
                })
                .await
                {
                    running = r;
                }
            }
        });
    }

    // The listener answers from here on: the service manager may call the daemon started, once
    // the exits that happened while it was down are recorded.
    // The reconciler that observes them runs below: this waits beside it.
    {
        let ctx = ctx.clone();
        tasks.spawn(async move {
            recover::observed(&ctx, &lost, std::time::Duration::from_secs(5)).await;
            service::ready(&ctx).await;
        });
    }

    // Status shows dropped log lines from memory; this keeps them current.
    {
        let c = ctx.clone();
        let running = move || {
            let ids: Vec<String> = c.units.view(|v| {
                v.values()
                    .filter_map(|e| e.record.as_ref()?.container_id.clone())
                    .collect()
            });
            ids.into_iter()
                .map(|id| (id.clone(), c.paths.container(&id)))
                .collect()
        };
        tasks.spawn(crate::logs::drops::run(
            ctx.log_drops.clone(),
            running,
            stop.clone(),
        ));
    }
    // After the scan: before it, every unit's logs look like a removed unit's.
    tasks.spawn(crate::logs::retention::run(ctx.clone(), stop.clone()));
    // Image updates (units with `[update] policy = "registry"`); idle when there are none.
    tasks.spawn(crate::update::run::run(ctx.clone()));
    tasks.spawn(image_gc::run(ctx.clone()));
    // The reconciler has a token of its own: at shutdown it finishes before containers are
    // stopped, and nothing restarts what is stopped then.
    let reconciler_stop = stop.child_token();
    let reconciler = tasks.spawn(reconcile::run(
        ctx.clone(),
        config.resync,
        reconciler_stop.clone(),
    ));
    tokio::select! {
        () = shutdown => {}
        () = ctx.shutdown.requested.notified() => {}
    }
    let stop_containers = !ctx.settings().live_restore
        || ctx
            .shutdown
            .stop_containers
            .load(std::sync::atomic::Ordering::SeqCst);
    tracing::info!(
        "rcd stopping; {}",
        if stop_containers {
            "stopping the containers"
        } else {
            "containers keep running"
        }
    );
    service::stopping();
    reconciler_stop.cancel();
    let _ = reconciler.await;
    if stop_containers {
        // The loop is done: nothing restarts what this stops.
        tracing::info!("stopping every container, dependents first");
        reconcile::verbs::stop::stop_all(&ctx).await;
    }
    stop.cancel();
    ctx.shutdown.done.send_replace(true);
    tasks.close();
    // Followers of `rctl logs -f` would hold the API's graceful shutdown forever.
    let mut api = api;
    if tokio::time::timeout(std::time::Duration::from_secs(2), &mut api)
        .await
        .is_err()
    {
        tracing::info!("API connections still open at exit: closed");
        api.abort();
    }
    if tokio::time::timeout(std::time::Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(left = tasks.len(), "tasks still running at exit");
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// The files outside the units directory that loaded units read (their env files).
fn external_files(ctx: &Context) -> Vec<std::path::PathBuf> {
    ctx.units.view(|t| {
        t.iter()
            .flat_map(|(_, e)| e.externals.iter().cloned())
            .collect()
    })
}
