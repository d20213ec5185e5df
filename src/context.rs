//! The daemon's shared state: configuration, the runtime, the store, and the unit table
//! (desired state per unit beside its record).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::config::Paths;
pub use crate::image::service::Images;
use crate::runtime::Runtime;
use crate::store::Store;

pub use crate::table::{Entry, UnitTable};

/// Everything the daemon's tasks share.
pub struct Context {
    /// Paths under the state root.
    pub paths: Paths,
    /// The units directory.
    pub units_dir: PathBuf,
    /// The OCI runtime.
    pub runtime: Runtime,
    /// The shim binary.
    pub shim: PathBuf,
    /// How long the runtime may take to start a container.
    pub start_timeout: std::time::Duration,
    /// How long the API waits for an operator's request to be applied.
    pub intent_timeout: std::time::Duration,
    /// Unit records on disk.
    pub store: Store,
    /// Images: content, records, snapshots, registry client.
    pub images: Images,
    /// Networks: CNI configs, the plugin runner, pinned namespaces.
    pub networks: crate::network::attach::Networks,
    /// This boot's id.
    pub boot_id: String,
    /// Short digest of the root, in container ids and cgroup paths, so daemons never collide.
    pub tag: String,
    /// The Docker API's exec instances.
    pub docker_execs: crate::docker::exec::Registry,
    /// Image updates: what each following unit is to run, and how its last update went.
    pub updates: crate::update::Updates,
    /// Where CDI specs are read (`[daemon] cdi_spec_dirs`).
    pub cdi_dirs: Vec<PathBuf>,
    /// journald's native socket, for containers with the journald log driver.
    pub journal_socket: PathBuf,
    /// The last generation handed out: generations are unique across the daemon's units, so
    /// container ids are unique even where two unit names read the same in one (`a@b`, `a_b`).
    last_generation: std::sync::atomic::AtomicU64,
    /// Where containers' cgroups go (driver, paths, systemd scope properties).
    pub cgroups: crate::cgroup::Layout,
    /// Bounds concurrent starts (start work in parallel, bounded by cores).
    pub start_permits: Semaphore,
    /// Shared while a container's runtime makes its cgroup, alone while this daemon's empty
    /// parent cgroups are removed: runc makes the parent, then the child, and a removal in
    /// between failed the start (`cgroup::remove_parents`).
    pub cgroup_parents: std::sync::RwLock<()>,
    /// Asks the scan owner to read the units directory.
    pub scans: crate::desired::owner::Scans,
    /// The reconciler's inbox.
    pub queue: crate::reconcile::Queue,
    /// The unit table.
    pub units: UnitTable,
    /// Named volumes.
    pub volumes: crate::volume::Volumes,
    /// Brings the running bridge containers' `/etc/hosts` up to date, a burst at a time.
    pub hosts: crate::reconcile::hosts::Refresher,
    /// Lines each running container's log dropped, as last read.
    pub log_drops: Arc<crate::logs::drops::Drops>,
    /// Health of the monitored containers.
    pub health: crate::health::Registry,
    /// What happened, for `rctl events`.
    pub events: crate::events::Log,
    /// A problem with the units directory itself (untrusted, unreadable).
    pub dir_error: Mutex<Option<String>>,
    /// What of the daemon config a SIGHUP can change.
    settings: std::sync::RwLock<Settings>,
    /// A shutdown asked for through the API (`rctl shutdown`).
    pub shutdown: Shutdown,
    /// Cancelled when the daemon stops: every task it spawned ends.
    pub cancel: tokio_util::sync::CancellationToken,
    /// Every task the daemon spawned, joined at its end.
    pub tasks: tokio_util::task::TaskTracker,
}

/// A shutdown asked for through the API: the daemon stops as on SIGTERM, and the asker hears
/// when the containers' part is done.
#[derive(Debug)]
pub struct Shutdown {
    /// Wakes the daemon's main task.
    pub requested: tokio::sync::Notify,
    /// Stop every container first, whatever `live_restore` says.
    pub stop_containers: std::sync::atomic::AtomicBool,
    /// True once the containers are stopped or left running as asked.
    pub done: tokio::sync::watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            requested: tokio::sync::Notify::new(),
            stop_containers: std::sync::atomic::AtomicBool::new(false),
            done: tokio::sync::watch::channel(false).0,
        }
    }
}

/// The daemon config's settings that apply without a restart (see `daemon::reload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Log limits of units that set none (`[logs] max_size`, `max_files`): from the next start
    /// of each container.
    pub log_limits: crate::logs::Limits,
    /// How long the logs of a removed unit are kept (`[logs] keep_removed`).
    pub keep_removed: std::time::Duration,
    /// The log driver of units that set none (`[logs] driver`): from the next start.
    pub log_driver: crate::logs::journal::Driver,
    /// `[daemon] live_restore`: read at shutdown.
    pub live_restore: bool,
    /// `[update]`: image updates on or off, and the default interval between checks.
    pub update: crate::config::file::Update,
    /// `[images] gc_high`, `gc_low`.
    pub image_gc: crate::image::threshold::Thresholds,
}

impl Settings {
    /// The settings of a config file.
    pub fn of(file: &crate::config::file::FileConfig) -> Self {
        Settings {
            log_limits: file.logs.limits,
            keep_removed: file.logs.keep_removed,
            log_driver: file.logs.driver,
            live_restore: file.live_restore,
            update: file.update,
            image_gc: file.image_gc,
        }
    }
}

impl Context {
    /// A context over the given parts (each opened by the caller, which reports its errors).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        paths: Paths,
        units_dir: PathBuf,
        runtime: Runtime,
        cgroup_driver: crate::cgroup::Driver,
        shim: PathBuf,
        start_timeout: std::time::Duration,
        store: Store,
        images: Images,
        networks: crate::network::attach::Networks,
        events: crate::events::Log,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let tag = crate::config::root_tag(&paths.root);
        let volumes = crate::volume::Volumes::new(paths.volumes.clone());
        let updates = crate::update::Updates::open(&paths.root);
        Context {
            cgroups: crate::cgroup::Layout::new(cgroup_driver, &tag),
            tag,
            paths,
            units_dir,
            runtime,
            shim,
            start_timeout,
            intent_timeout: std::time::Duration::from_secs(300),
            store,
            images,
            networks,
            boot_id: boot_id(),
            start_permits: Semaphore::new((cores * 2).max(4)),
            cgroup_parents: std::sync::RwLock::new(()),
            // Replaced by the daemon's own; a context without a scan owner never scans.
            last_generation: std::sync::atomic::AtomicU64::new(0),
            cdi_dirs: crate::spec::cdi::DEFAULT_DIRS.map(PathBuf::from).to_vec(),
            journal_socket: PathBuf::from(crate::logs::journal::DEFAULT_SOCKET),
            docker_execs: Default::default(),
            updates,
            scans: crate::desired::owner::channel().0,
            queue: crate::reconcile::Queue::default(),
            units: UnitTable::default(),
            hosts: crate::reconcile::hosts::Refresher::default(),
            volumes,
            health: crate::health::Registry::default(),
            log_drops: Arc::default(),
            events,
            dir_error: Mutex::new(None),
            settings: std::sync::RwLock::new(Settings::of(
                &crate::config::file::FileConfig::default(),
            )),
            shutdown: Shutdown::default(),
            cancel: tokio_util::sync::CancellationToken::new(),
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    /// The runtime id of a unit's container instance. runc, CNI and systemd scope names all
    /// refuse '@', so an instance's '@' reads '_' here.
    pub fn container_id(&self, unit: &str, generation: u64) -> String {
        let unit = unit.replace('@', "_");
        format!("rcd-{}-{unit}-{generation}", self.tag)
    }

    /// A new generation for a unit whose last was `previous`: later than it, than now (in
    /// milliseconds) and than any other handed out by this daemon.
    pub fn next_generation(&self, previous: u64, now_ms: u64) -> u64 {
        use std::sync::atomic::Ordering;
        let mut next = 0;
        let _ = self
            .last_generation
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                next = (previous + 1).max(now_ms).max(last + 1);
                Some(next)
            });
        next
    }

    /// The cgroup path of a container instance.
    pub fn cgroups_path(&self, id: &str) -> String {
        self.cgroups.path(id)
    }

    /// The prefix every container id of this daemon has.
    pub fn id_prefix(&self) -> String {
        format!("rcd-{}-", self.tag)
    }

    /// The reloadable settings now.
    pub fn settings(&self) -> Settings {
        *self.settings.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the reloadable settings.
    pub fn set_settings(&self, s: Settings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// Asks the reconciler to look at `unit`.
    pub fn poke(&self, unit: &str) {
        self.queue.poke(unit);
    }
}

/// This boot's id; a record from another boot describes containers that no longer exist.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
