//! OCI runtime spec: a validated `Unit` and the container's paths in, `config.json` out, with
//! Docker's safe defaults (capabilities, no-new-privileges, masked /proc paths, fresh /dev,
//! the default seccomp profile) and what the unit changes of them.

pub mod cdi;
pub mod host;
pub mod seccomp;
pub mod user;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, LinuxSeccomp, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::unit::{MountKind, NetworkMode, Seccomp, Security, Unit, User};

/// A spec that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The builder refused a value.
    #[error("unit {unit}: cannot build the OCI spec: {source}")]
    Oci {
        /// The unit.
        unit: String,
        /// The cause.
        source: oci_spec::OciSpecError,
    },
    /// Something the unit names on the host is missing or unusable (a device, the init
    /// binary, a seccomp profile).
    #[error("unit {unit}: {reason}")]
    Host {
        /// The unit.
        unit: String,
        /// Why.
        reason: String,
    },
}

/// The capabilities a container of `security` holds: Docker's defaults, or all with
/// `privileged` or `cap_add = ["ALL"]`, or none with `cap_drop = ["ALL"]`; then the drops
/// removed and the additions added (so `cap_drop = ["ALL"]` with `cap_add = ["NET_ADMIN"]`
/// is exactly NET_ADMIN).
pub fn capabilities(security: &Security) -> HashSet<Capability> {
    // "All" is all the daemon may give: those in its own bounding set (Docker's rule), so a
    // host that withholds one (a VM sandbox without CAP_SYS_RESOURCE) still runs the unit.
    let all = || -> HashSet<Capability> {
        let bounding = host::bounding_set();
        ALL_CAPABILITIES
            .iter()
            .enumerate()
            .filter(|(i, _)| bounding & (1 << i) != 0)
            .filter_map(|(_, n)| crate::unit::capability(n))
            .collect()
    };
    let mut caps: HashSet<Capability> =
        if security.privileged || security.cap_add.iter().any(|c| c == "ALL") {
            all()
        } else if security.cap_drop.iter().any(|c| c == "ALL") {
            HashSet::new()
        } else {
            DEFAULT_CAPABILITIES.into_iter().collect()
        };
    if !security.privileged {
        for c in security
            .cap_drop
            .iter()
            .filter_map(|c| crate::unit::capability(c))
        {
            caps.remove(&c);
        }
    }
    caps.extend(
        security
            .cap_add
            .iter()
            .filter_map(|c| crate::unit::capability(c)),
    );
    caps
}

/// What a spec takes from the host, gathered before it is built.
struct FromHost {
    devices: Vec<host::HostDevice>,
    init: Option<std::path::PathBuf>,
    seccomp: Option<LinuxSeccomp>,
    /// What the unit's CDI devices add besides their nodes: variables, mounts, hooks.
    cdi: cdi::Edits,
}

impl FromHost {
    fn gather(
        unit: &Unit,
        caps: &HashSet<Capability>,
        cdi_dirs: &[std::path::PathBuf],
    ) -> Result<FromHost, String> {
        let s = &unit.security;
        let mut devices = if s.privileged {
            host::all_devices()
        } else {
            Vec::new()
        };
        devices.extend(host::devices(&unit.container.devices)?);
        let mut cdi = cdi::resolve(&unit.container.cdi_devices, cdi_dirs)?;
        for n in std::mem::take(&mut cdi.device_nodes) {
            let host_path = n.host_path.as_deref().unwrap_or(&n.path);
            let meta = std::fs::metadata(host_path)
                .map_err(|e| format!("CDI device node {host_path}: {e}"))?;
            let access = n.permissions.as_deref().unwrap_or("rwm");
            devices.push(
                host::node(std::path::Path::new(&n.path), &meta, access)
                    .map_err(|e| format!("CDI device node {host_path}: {e}"))?,
            );
        }
        for m in &cdi.mounts {
            if !std::path::Path::new(&m.host_path).exists() {
                return Err(format!("CDI mount {}: does not exist", m.host_path));
            }
        }
        host::check_ulimits(&unit.container.ulimits)?;
        let init = unit.container.init.then(host::init_binary).transpose()?;
        let seccomp = match (&s.seccomp, s.privileged) {
            (_, true) | (Seccomp::Unconfined, _) => None,
            (Seccomp::Default, false) => {
                Some(seccomp::default_profile(caps).map_err(|e| e.to_string())?)
            }
            (Seccomp::Profile(path), false) => Some(seccomp::load(path)?),
        };
        Ok(FromHost {
            devices,
            init,
            seccomp,
            cdi,
        })
    }
}

/// Docker's default capability set (moby's `oci/caps/defaults.go`).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability of Linux 6.x, by number, for `privileged` and `cap_add = ["ALL"]`.
const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Paths hidden from the container, as Docker does.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container sees read-only, as Docker does.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The default PATH, Docker's.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the container's init runs and as whom: the unit merged over its image's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// argv, never empty.
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
    /// Numeric user.
    pub user: User,
}

/// Merges the unit over its image config (Docker's rules) into the process to run. `lowers`
/// are the image's layer directories, top first, where a user name is looked up.
pub fn process(
    unit: &Unit,
    image: Option<&ImageConfiguration>,
    lowers: &[PathBuf],
) -> Result<Process, String> {
    let c = &unit.container;
    let cfg = image.and_then(|i| i.config().as_ref());
    // Docker: an entrypoint given at run time drops the image's Cmd unless a command is given too.
    let entrypoint: Vec<String> = match &c.entrypoint {
        Some(e) => e.clone(),
        None => cfg
            .and_then(|cfg| cfg.entrypoint().clone())
            .unwrap_or_default(),
    };
    let command: Vec<String> = match (&c.command, &c.entrypoint) {
        (Some(cmd), _) => cmd.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => cfg.and_then(|cfg| cfg.cmd().clone()).unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(command).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(
            "no command: the image has no Entrypoint/Cmd and the unit gives none".to_string(),
        );
    }

    // Image env first, overridden key by key by the unit's.
    let mut pairs: Vec<(String, String)> = Vec::new();
    for entry in cfg.and_then(|cfg| cfg.env().clone()).unwrap_or_default() {
        let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        match pairs.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => pairs.push((k.to_string(), v.to_string())),
        }
    }
    for (k, v) in &c.env {
        match pairs.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.clone(),
            None => pairs.push((k.clone(), v.clone())),
        }
    }
    let mut env = Vec::new();
    if !pairs.iter().any(|(k, _)| k == "PATH") {
        env.push(DEFAULT_PATH.to_string());
    }
    if !pairs.iter().any(|(k, _)| k == "HOSTNAME") {
        env.push(format!("HOSTNAME={}", c.hostname));
    }
    env.extend(pairs.into_iter().map(|(k, v)| format!("{k}={v}")));

    let cwd = match (&c.workdir, cfg.and_then(|cfg| cfg.working_dir().as_deref())) {
        (Some(w), _) => w.clone(),
        (None, Some(w)) if w.starts_with('/') => w.to_string(),
        (None, Some(w)) if !w.is_empty() => {
            return Err(format!("the image's WorkingDir {w:?} is not absolute"))
        }
        _ => "/".to_string(),
    };

    let user = match (c.user, cfg.and_then(|cfg| cfg.user().as_deref())) {
        (Some(u), _) => u,
        (None, Some(u)) if !u.is_empty() => {
            user::resolve(u, "the image's User", &user::Layers(lowers))?
        }
        _ => User { uid: 0, gid: 0 },
    };
    Ok(Process {
        args,
        env,
        cwd,
        user,
    })
}

/// glibc's SIGRTMIN (the kernel's 32 plus the two glibc keeps for itself) and SIGRTMAX: what
/// `SIGRTMIN+3` means to a program in the container, and how Docker numbers it.
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// The signal a container of `unit` is stopped with: the unit's `stop_signal`, else its image's
/// StopSignal (Docker's rule), else SIGTERM. An image StopSignal that is not a signal is an error.
pub fn stop_signal(unit: &Unit, image: Option<&ImageConfiguration>) -> Result<String, String> {
    if let Some(s) = &unit.container.stop_signal {
        return Ok(s.clone());
    }
    let from_image = image
        .and_then(|i| i.config().as_ref())
        .and_then(|c| c.stop_signal().as_deref())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    match from_image {
        None => Ok("SIGTERM".to_string()),
        Some(text) => image_signal(text).ok_or_else(|| {
            format!(
                "the image's StopSignal {text:?} is not a signal: {}, or SIGRTMIN+n",
                crate::unit::SIGNAL_SHAPE
            )
        }),
    }
}

/// A StopSignal as images write it: a name ("SIGQUIT", "QUIT"), a number, or a real-time signal
/// ("SIGRTMIN+3", systemd's), which runtimes only take by number.
fn image_signal(text: &str) -> Option<String> {
    if let Ok(sig) = crate::unit::parse_signal(text) {
        return Some(sig.as_str().to_string());
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let relative = |rest: &str, base: i32| -> Option<i32> {
        match rest {
            "" => Some(base),
            _ if rest.starts_with('+') => rest[1..].parse::<i32>().ok().map(|n| base + n),
            _ if rest.starts_with('-') => rest[1..].parse::<i32>().ok().map(|n| base - n),
            _ => None,
        }
    };
    let number = match (name.strip_prefix("RTMIN"), name.strip_prefix("RTMAX")) {
        (Some(rest), _) => relative(rest, SIGRTMIN),
        (_, Some(rest)) => relative(rest, SIGRTMAX),
        _ => name.parse::<i32>().ok(),
    }?;
    (SIGRTMIN..=SIGRTMAX)
        .contains(&number)
        .then(|| number.to_string())
}

/// The image's ExposedPorts as `port/protocol` (a bare "80" is "80/tcp", as in Docker), sorted by
/// port, no duplicates. Information only: nothing is published.
pub fn exposed_ports(image: Option<&ImageConfiguration>) -> Vec<String> {
    let listed = image
        .and_then(|i| i.config().as_ref())
        .and_then(|c| c.exposed_ports().clone())
        .unwrap_or_default();
    let mut ports: Vec<String> = listed
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('/') {
            Some((port, proto)) => format!("{port}/{}", proto.to_ascii_lowercase()),
            None => format!("{p}/tcp"),
        })
        .collect();
    // Numeric order (80 before 443), then by text for anything that is not a plain number.
    let key = |p: &String| {
        let port = p.split(['/', '-']).next().unwrap_or("");
        (port.parse::<u32>().unwrap_or(u32::MAX), p.clone())
    };
    ports.sort_by_key(key);
    ports.dedup();
    ports
}

/// The `linux.cgroupsPath` of the spec in the bundle file `config_json`, if it can be read.
pub fn cgroups_path_of(config_json: &Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Spec {
        linux: Option<Linux>,
    }
    #[derive(serde::Deserialize)]
    struct Linux {
        #[serde(rename = "cgroupsPath")]
        cgroups_path: Option<String>,
    }
    let spec: Spec = serde_json::from_slice(&std::fs::read(config_json).ok()?).ok()?;
    spec.linux?.cgroups_path
}

/// Builds the runtime spec for `unit` running `process`, rooted at `rootfs`, in the cgroup
/// `cgroups_path`, with `annotations` for the runtime beside rcd's own (systemd scope
/// properties); CDI device names are resolved from the specs in `cdi_dirs`.
pub fn build(
    unit: &Unit,
    process: &Process,
    rootfs: &Path,
    cgroups_path: &str,
    annotations: &[(String, String)],
    net: Option<&NetSetup>,
    cdi_dirs: &[std::path::PathBuf],
) -> Result<Spec, Error> {
    let caps = capabilities(&unit.security);
    let from_host = FromHost::gather(unit, &caps, cdi_dirs).map_err(|reason| Error::Host {
        unit: unit.name.clone(),
        reason,
    })?;
    let inputs = Inputs {
        unit,
        p: process,
        rootfs,
        cgroups_path,
        annotations,
        net,
    };
    build_inner(&inputs, caps, from_host).map_err(|source| Error::Oci {
        unit: unit.name.clone(),
        source,
    })
}

/// The arguments of [`build`], passed on whole.
struct Inputs<'a> {
    unit: &'a Unit,
    p: &'a Process,
    rootfs: &'a Path,
    cgroups_path: &'a str,
    annotations: &'a [(String, String)],
    net: Option<&'a NetSetup>,
}

/// A network prepared by rcd: the namespace to join (bridge: rcd's pinned one; `container:`:
/// the target's) and the generated files to mount.
#[derive(Debug, Clone, Default)]
pub struct NetSetup {
    /// The namespace to join; None: what the mode says (host's, or a fresh one).
    pub netns: Option<std::path::PathBuf>,
    /// Generated files and where they go (`/etc/hosts`, ...), bind-mounted read-only.
    pub files: Vec<(std::path::PathBuf, &'static str)>,
}

fn build_inner(
    inputs: &Inputs<'_>,
    caps: HashSet<Capability>,
    from_host: FromHost,
) -> Result<Spec, oci_spec::OciSpecError> {
    let Inputs {
        unit,
        p,
        rootfs,
        cgroups_path,
        annotations,
        net,
    } = *inputs;
    let c = &unit.container;
    let privileged = unit.security.privileged;
    let args: Vec<String> = match &from_host.init {
        // The init runs the command as its child: it forwards signals and reaps zombies.
        Some(_) => [host::INIT_IN_CONTAINER.to_string(), "--".to_string()]
            .into_iter()
            .chain(p.args.iter().cloned())
            .collect(),
        None => p.args.clone(),
    };
    let rlimits = c
        .ulimits
        .iter()
        .map(|(name, u)| {
            let typ: PosixRlimitType =
                serde_json::from_value(serde_json::Value::String(name.clone())).unwrap_or_default();
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(u.soft)
                .hard(u.hard)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut env = p.env.clone();
    for var in &from_host.cdi.env {
        let key = var.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(var.clone());
    }
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .args(args)
        .env(env)
        .cwd(p.cwd.clone())
        .user(
            UserBuilder::default()
                .uid(p.user.uid)
                .gid(p.user.gid)
                .build()?,
        )
        .capabilities(
            // Inheritable and ambient empty, as Docker has them (the builder's defaults are not:
            // ambient capabilities outside the permitted set make the runtime fail).
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .inheritable(HashSet::new())
                .ambient(HashSet::new())
                .build()?,
        )
        .no_new_privileges(unit.security.no_new_privileges)
        // The kernel's default, as Docker gives containers: without it they would inherit the
        // daemon's own (rcd.service's OOMScoreAdjust=-500) and be the last the OOM killer picks.
        .oom_score_adj(0)
        .build()?;
    if !rlimits.is_empty() {
        process.set_rlimits(Some(rlimits));
    }

    let mut mounts = default_mounts(c.shm_size, privileged)?;
    for m in &unit.mounts {
        let mount = match m.kind {
            // A volume's source is its data directory by now (the start pipeline's doing).
            MountKind::Bind | MountKind::Volume => {
                let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
                if m.readonly {
                    options.push("ro".to_string());
                }
                MountBuilder::default()
                    .destination(&m.target)
                    .typ("bind")
                    .source(&m.source)
                    .options(options)
                    .build()?
            }
            MountKind::Tmpfs => {
                let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                if let Some(size) = m.size {
                    options.push(format!("size={size}"));
                }
                options.push(format!("mode={:o}", m.mode.unwrap_or(0o1777)));
                if m.readonly {
                    options.push("ro".to_string());
                }
                MountBuilder::default()
                    .destination(&m.target)
                    .typ("tmpfs")
                    .source("tmpfs")
                    .options(options)
                    .build()?
            }
        };
        mounts.push(mount);
    }
    for m in &from_host.cdi.mounts {
        let mut options = m.options.clone();
        if !options.iter().any(|o| o == "bind" || o == "rbind") {
            options.push("rbind".into());
        }
        mounts.push(
            MountBuilder::default()
                .destination(&m.container_path)
                .typ("bind")
                .source(&m.host_path)
                .options(options)
                .build()?,
        );
    }
    if let Some(init) = &from_host.init {
        mounts.push(
            MountBuilder::default()
                .destination(host::INIT_IN_CONTAINER)
                .typ("bind")
                .source(init)
                .options(vec![
                    "bind".into(),
                    "ro".into(),
                    "nosuid".into(),
                    "nodev".into(),
                ])
                .build()?,
        );
    }

    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    let mut joined = None;
    match (&unit.network.mode, net.and_then(|n| n.netns.as_ref())) {
        (NetworkMode::Host, _) => {}
        // Bridge: the namespace rcd made and CNI wired; container: the target's.
        (_, Some(path)) => joined = Some(path.clone()),
        // None; and never a bridge or container: unit, whose start gives a namespace, but
        // if so, isolated rather than the host's.
        (_, None) => namespaces.push(LinuxNamespaceType::Network),
    }
    let mut namespaces = namespaces
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(path) = joined {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path)
                .build()?,
        );
    }
    if let Some(n) = net {
        for (source, dest) in &n.files {
            mounts.push(
                MountBuilder::default()
                    .destination(*dest)
                    .typ("bind")
                    .source(source)
                    .options(vec![
                        "rbind".into(),
                        "ro".into(),
                        "nosuid".into(),
                        "nodev".into(),
                        "noexec".into(),
                    ])
                    .build()?,
            );
        }
    }

    // Deny every device, then allow the unit's; the runtime adds its default allow list
    // (null, zero, tty, ...).
    let mut rules = vec![LinuxDeviceCgroupBuilder::default()
        .allow(privileged)
        .access("rwm")
        .build()?];
    let mut nodes = Vec::new();
    for d in from_host.devices {
        rules.push(d.rule);
        nodes.push(d.node);
    }
    let mut resources = LinuxResourcesBuilder::default().devices(rules);
    let r = &unit.resources;
    if let Some(bytes) = r.memory {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(bytes as i64).build()?);
    }
    if let Some(cpus) = r.cpus {
        const PERIOD: u64 = 100_000;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .period(PERIOD)
                .quota((cpus * PERIOD as f64).round() as i64)
                .build()?,
        );
    }
    if let Some(pids) = r.pids {
        resources = resources.pids(LinuxPidsBuilder::default().limit(pids).build()?);
    }

    let (masked, readonly): (Vec<String>, Vec<String>) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            MASKED_PATHS.map(String::from).to_vec(),
            READONLY_PATHS.map(String::from).to_vec(),
        )
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(cgroups_path)
        .masked_paths(masked)
        .readonly_paths(readonly)
        .build()?;
    if !nodes.is_empty() {
        linux.set_devices(Some(nodes));
    }
    // Docker's defaults in a network namespace of the container's own: any user may bind
    // ports below 1024 and send pings (without capabilities, as no non-root process has any),
    // unless the unit sets them.
    let mut sysctls = c.sysctls.clone();
    if matches!(unit.network.mode, NetworkMode::Bridge | NetworkMode::None) {
        for (key, value) in PRIVATE_NETWORK_SYSCTLS {
            sysctls
                .entry(key.to_string())
                .or_insert_with(|| value.to_string());
        }
    }
    linux.set_sysctl(Some(sysctls.into_iter().collect()));
    linux.set_seccomp(from_host.seccomp);

    let hooks = cdi_hooks(&from_host.cdi.hooks)?;
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(c.read_only)
                .build()?,
        )
        .hostname(unit.container.hostname.clone())
        .process(process)
        .mounts(mounts)
        .annotations(
            // Labels first: rcd's own keys win (labels cannot use the "rcd." prefix anyway).
            c.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain([("rcd.unit".to_string(), unit.name.clone())])
                .chain(annotations.iter().cloned())
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .linux(linux)
        .build()?;
    spec.set_hooks(hooks);
    Ok(spec)
}

/// The OCI hooks CDI specs ask for, by stage; None if there are none.
fn cdi_hooks(
    list: &[cdi::Hook],
) -> Result<Option<oci_spec::runtime::Hooks>, oci_spec::OciSpecError> {
    use oci_spec::runtime::{HookBuilder, HooksBuilder};
    if list.is_empty() {
        return Ok(None);
    }
    let mut stages: std::collections::BTreeMap<&str, Vec<oci_spec::runtime::Hook>> =
        Default::default();
    for h in list {
        let mut b = HookBuilder::default().path(&h.path);
        if !h.args.is_empty() {
            b = b.args(h.args.clone());
        }
        if !h.env.is_empty() {
            b = b.env(h.env.clone());
        }
        if let Some(t) = h.timeout {
            b = b.timeout(t);
        }
        stages
            .entry(h.hook_name.as_str())
            .or_default()
            .push(b.build()?);
    }
    let mut hooks = HooksBuilder::default();
    for (stage, list) in stages {
        hooks = match stage {
            "createRuntime" => hooks.create_runtime(list),
            "createContainer" => hooks.create_container(list),
            "startContainer" => hooks.start_container(list),
            "poststart" => hooks.poststart(list),
            "poststop" => hooks.poststop(list),
            // Deprecated in OCI, but what older CDI specs name.
            "prestart" => hooks.prestart(list),
            other => {
                tracing::warn!(hook = other, "CDI hook of an unknown stage skipped");
                hooks
            }
        };
    }
    hooks.build().map(Some)
}

/// Set in a container with a network namespace of its own unless its unit says otherwise.
const PRIVATE_NETWORK_SYSCTLS: [(&str, &str); 2] = [
    ("net.ipv4.ip_unprivileged_port_start", "0"),
    ("net.ipv4.ping_group_range", "0 2147483647"),
];

/// Docker's `/dev/shm` size.
const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

/// The runtime's default mounts; `/dev/shm` of `shm_size` bytes; `/sys` and the cgroup tree
/// writable for a privileged container (Docker's rule).
fn default_mounts(
    shm_size: Option<u64>,
    privileged: bool,
) -> Result<Vec<Mount>, oci_spec::OciSpecError> {
    let shm = format!("size={}", shm_size.unwrap_or(DEFAULT_SHM_SIZE));
    let sys_ro = if privileged { "rw" } else { "ro" };
    let table: [(&str, &str, &str, &[&str]); 7] = [
        ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        (
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_ro],
        ),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_ro],
        ),
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        (
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm],
        ),
    ];
    table
        .iter()
        .map(|(dest, typ, source, opts)| {
            MountBuilder::default()
                .destination(*dest)
                .typ(*typ)
                .source(*source)
                .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .build()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(extra: &str) -> Unit {
        let text = format!("[container]\nimage = \"busybox\"\n{extra}");
        match crate::unit::parse("t", Path::new("t.toml"), &text) {
            Ok(u) => u,
            Err(ds) => panic!("{ds:?}"),
        }
    }

    fn config(json: &str) -> ImageConfiguration {
        let text = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}},\"config\":{json}}}"
        );
        match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn run(extra: &str, json: &str, lowers: &[PathBuf]) -> Result<Process, String> {
        process(&unit(extra), Some(&config(json)), lowers)
    }

    fn spec_of(extra: &str) -> Spec {
        let u = unit(&format!("command = [\"sh\"]\n{extra}"));
        let p = process(&u, None, &[]).unwrap();
        build(&u, &p, Path::new("/r"), "rcd:t", &[], None, &[]).unwrap()
    }

    fn effective(spec: &Spec) -> Vec<String> {
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        let mut names: Vec<String> = caps
            .effective()
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn capabilities_follow_docker_rules() {
        assert_eq!(effective(&spec_of("")).len(), DEFAULT_CAPABILITIES.len());
        let only = spec_of("[security]\ncap_drop = [\"ALL\"]\ncap_add = [\"NET_ADMIN\"]\n");
        assert_eq!(effective(&only), ["CAP_NET_ADMIN"]);
        let fewer = spec_of("[security]\ncap_drop = [\"NET_RAW\"]\n");
        assert!(!effective(&fewer).contains(&"CAP_NET_RAW".to_string()));
        let all = spec_of("[security]\ncap_add = [\"ALL\"]\ncap_drop = [\"SYS_ADMIN\"]\n");
        let held = host::bounding_set().count_ones() as usize;
        assert_eq!(effective(&all).len(), held.min(ALL_CAPABILITIES.len()) - 1);
        let caps = spec_of("")
            .process()
            .clone()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert!(caps.ambient().as_ref().unwrap().is_empty());
        assert!(caps.inheritable().as_ref().unwrap().is_empty());
    }

    #[test]
    fn seccomp_readonly_root_rlimits_and_labels_reach_the_spec() {
        let plain = spec_of("");
        let linux = plain.linux().as_ref().unwrap();
        assert!(
            linux.seccomp().is_some(),
            "the default profile is always on"
        );
        assert!(plain
            .process()
            .as_ref()
            .unwrap()
            .no_new_privileges()
            .unwrap());
        let s = spec_of(
            "read_only = true\nulimits = { nofile = \"10:20\" }\nlabels = { tier = \"db\" }\n[security]\nseccomp = \"unconfined\"\nno_new_privileges = false\n",
        );
        assert!(s.root().as_ref().unwrap().readonly().unwrap());
        assert!(s.linux().as_ref().unwrap().seccomp().is_none());
        assert!(!s.process().as_ref().unwrap().no_new_privileges().unwrap());
        let r = &s.process().as_ref().unwrap().rlimits().as_ref().unwrap()[0];
        assert_eq!(
            (r.typ(), r.soft(), r.hard()),
            (PosixRlimitType::RlimitNofile, 10, 20)
        );
        assert_eq!(s.annotations().as_ref().unwrap()["tier"], "db");
        let sysctl = |s: &Spec| s.linux().as_ref().unwrap().sysctl().clone().unwrap();
        assert_eq!(sysctl(&plain)["net.ipv4.ip_unprivileged_port_start"], "0");
        let own = spec_of("sysctls = { \"net.ipv4.ip_unprivileged_port_start\" = 1024 }\n");
        assert_eq!(sysctl(&own)["net.ipv4.ip_unprivileged_port_start"], "1024");
        let host = spec_of("[network]\nmode = \"host\"\n");
        assert!(sysctl(&host).is_empty(), "never the host's");
        let p = spec_of("[security]\nprivileged = true\n");
        let l = p.linux().as_ref().unwrap();
        assert!(l.seccomp().is_none() && l.masked_paths().as_ref().unwrap().is_empty());
    }

    #[test]
    fn a_missing_device_or_profile_is_a_host_error() {
        let u = unit("command = [\"sh\"]\ndevices = [\"/dev/rcd-no-such\"]\n");
        let p = process(&u, None, &[]).unwrap();
        let e = build(&u, &p, Path::new("/r"), "rcd:t", &[], None, &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("device /dev/rcd-no-such: No such file"),
            "{e}"
        );
        let u = unit("command = [\"sh\"]\n[security]\nseccomp = \"/rcd/no/profile.json\"\n");
        let p = process(&u, None, &[]).unwrap();
        let e = build(&u, &p, Path::new("/r"), "rcd:t", &[], None, &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("seccomp profile /rcd/no/profile.json"),
            "{e}"
        );
    }

    #[test]
    fn docker_argv_rules() {
        let img = r#"{"Entrypoint":["/ep"],"Cmd":["c1"]}"#;
        let args = |extra: &str| run(extra, img, &[]).map(|p| p.args);
        assert_eq!(args(""), Ok(vec!["/ep".into(), "c1".into()]));
        assert_eq!(
            args("command = [\"x\"]\n"),
            Ok(vec!["/ep".into(), "x".into()])
        );
        // A unit entrypoint drops the image's Cmd.
        assert_eq!(args("entrypoint = [\"/e2\"]\n"), Ok(vec!["/e2".into()]));
        assert_eq!(
            args("entrypoint = []\ncommand = [\"sh\"]\n"),
            Ok(vec!["sh".into()])
        );
        let none = run("entrypoint = []\n", img, &[]);
        assert!(none.is_err_and(|e| e.starts_with("no command")));
        let none = run("", "{}", &[]);
        assert!(none.is_err_and(|e| e.starts_with("no command")));
    }

    #[test]
    fn env_workdir_user_from_the_image() {
        let img = r#"{"Cmd":["sh"],"Env":["PATH=/img/bin","A=image","B=image"],"WorkingDir":"/srv","User":"7:8"}"#;
        let p = run("env = { B = \"unit\", C = \"unit\" }\n", img, &[]);
        let Ok(p) = p else { panic!("{p:?}") };
        assert_eq!(
            p.env,
            ["HOSTNAME=t", "PATH=/img/bin", "A=image", "B=unit", "C=unit"]
        );
        assert_eq!(p.cwd, "/srv");
        assert_eq!(p.user, User { uid: 7, gid: 8 });
        let p = run("workdir = \"/w\"\nuser = \"1:2\"\n", img, &[]);
        let Ok(p) = p else { panic!("{p:?}") };
        assert_eq!((p.cwd.as_str(), p.user), ("/w", User { uid: 1, gid: 2 }));
        let p = run("", r#"{"Cmd":["sh"]}"#, &[]);
        let Ok(p) = p else { panic!("{p:?}") };
        assert_eq!((p.cwd.as_str(), p.user), ("/", User { uid: 0, gid: 0 }));
    }

    #[test]
    fn stop_signal_from_the_unit_else_the_image_else_sigterm() {
        let sig = |extra: &str, json: &str| stop_signal(&unit(extra), Some(&config(json)));
        let quit = r#"{"StopSignal":"SIGQUIT"}"#;
        assert_eq!(sig("", quit), Ok("SIGQUIT".into()));
        assert_eq!(sig("stop_signal = \"USR1\"\n", quit), Ok("SIGUSR1".into()));
        // Explicitly the default still overrides the image.
        assert_eq!(sig("stop_signal = \"TERM\"\n", quit), Ok("SIGTERM".into()));
        assert_eq!(sig("", "{}"), Ok("SIGTERM".into()));
        assert_eq!(stop_signal(&unit(""), None), Ok("SIGTERM".into()));
        let cases: &[(&str, Option<&str>)] = &[
            ("QUIT", Some("SIGQUIT")),
            ("sigint", Some("SIGINT")),
            ("9", Some("SIGKILL")),
            (" SIGWINCH ", Some("SIGWINCH")),
            ("", Some("SIGTERM")),
            ("SIGRTMIN+3", Some("37")),
            ("RTMIN", Some("34")),
            ("SIGRTMAX-1", Some("63")),
            ("40", Some("40")),
            ("SIGRTMIN+31", None),
            ("SIGRTMAX+1", None),
            ("SIGNOPE", None),
            ("0", None),
            ("-9", None),
            ("65", None),
        ];
        for (text, want) in cases {
            let got = sig("", &format!("{{\"StopSignal\":{text:?}}}"));
            match want {
                Some(w) => assert_eq!(got.as_deref(), Ok(*w), "{text:?}"),
                None => assert!(
                    got.as_ref()
                        .is_err_and(|e| e.contains("StopSignal") && e.contains(text)),
                    "{text:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn exposed_ports_normalized_and_sorted() {
        let ports = |json: &str| exposed_ports(Some(&config(json)));
        assert_eq!(
            ports(r#"{"ExposedPorts":{"443/tcp":{},"53/UDP":{},"80":{},"80/tcp":{},"53/tcp":{}}}"#),
            ["53/tcp", "53/udp", "80/tcp", "443/tcp"]
        );
        assert!(ports("{}").is_empty());
        assert!(exposed_ports(None).is_empty());
    }

    #[test]
    fn user_names_from_the_top_most_passwd() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let (top, bottom) = (dir.path().join("top"), dir.path().join("bottom"));
        for (layer, passwd) in [
            (&top, "www:x:33:34::/:/bin/sh\n"),
            (&bottom, "www:x:1:1::/:/bin/sh\n"),
        ] {
            assert!(std::fs::create_dir_all(layer.join("etc")).is_ok());
            assert!(std::fs::write(layer.join("etc/passwd"), passwd).is_ok());
        }
        assert!(std::fs::write(bottom.join("etc/group"), "staff:x:50:\n").is_ok());
        let lowers = [top.clone(), bottom.clone()];
        let user = |u: &str| {
            run("", &format!(r#"{{"Cmd":["sh"],"User":"{u}"}}"#), &lowers).map(|p| p.user)
        };
        assert_eq!(user("www"), Ok(User { uid: 33, gid: 34 }));
        assert_eq!(user("www:staff"), Ok(User { uid: 33, gid: 50 }));
        assert_eq!(user("5"), Ok(User { uid: 5, gid: 0 }));
        assert!(user("nobody").is_err_and(|e| e.contains("not in the image's /etc/passwd")));
        let bare = run("", r#"{"Cmd":["sh"],"User":"www"}"#, &[]);
        assert!(bare.is_err_and(|e| e.contains("has no /etc/passwd")));
    }
}
