//! OCI runtime spec: a validated `Unit` and the container's paths in, `config.json` out, with
//! Docker's safe defaults (capabilities, no-new-privileges, masked /proc paths, fresh /dev).

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use crate::unit::{NetworkMode, Unit};

/// A spec that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("unit {unit}: cannot build the OCI spec: {source}")]
pub struct Error {
    /// The unit.
    pub unit: String,
    /// The cause.
    pub source: oci_spec::OciSpecError,
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

/// Builds the runtime spec for `unit`, rooted at `rootfs`, in the cgroup `cgroups_path`.
pub fn build(unit: &Unit, rootfs: &Path, cgroups_path: &str) -> Result<Spec, Error> {
    build_inner(unit, rootfs, cgroups_path).map_err(|source| Error {
        unit: unit.name.clone(),
        source,
    })
}

fn build_inner(
    unit: &Unit,
    rootfs: &Path,
    cgroups_path: &str,
) -> Result<Spec, oci_spec::OciSpecError> {
    let c = &unit.container;
    let caps: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
    let mut env = Vec::new();
    if !c.env.contains_key("PATH") {
        env.push(DEFAULT_PATH.to_string());
    }
    if !c.env.contains_key("HOSTNAME") {
        env.push(format!("HOSTNAME={}", c.hostname));
    }
    env.extend(c.env.iter().map(|(k, v)| format!("{k}={v}")));
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(c.command.clone())
        .env(env)
        .cwd(c.workdir.clone())
        .user(
            UserBuilder::default()
                .uid(c.user.uid)
                .gid(c.user.gid)
                .build()?,
        )
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()?,
        )
        .no_new_privileges(true)
        .build()?;

    let mut mounts = default_mounts()?;
    for m in &unit.mounts {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if m.readonly {
            options.push("ro".to_string());
        }
        mounts.push(
            MountBuilder::default()
                .destination(&m.target)
                .typ("bind")
                .source(&m.source)
                .options(options)
                .build()?,
        );
    }

    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if unit.network == NetworkMode::None {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<Result<Vec<_>, _>>()?;

    let mut resources = LinuxResourcesBuilder::default().devices(vec![
        // Deny every device; the runtime adds its default allow list (null, zero, tty, ...).
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()?,
    ]);
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

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(cgroups_path)
        .masked_paths(MASKED_PATHS.map(String::from).to_vec())
        .readonly_paths(READONLY_PATHS.map(String::from).to_vec())
        .build()?;

    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(false)
                .build()?,
        )
        .hostname(c.hostname.clone())
        .process(process)
        .mounts(mounts)
        .annotations(
            [("rcd.unit".to_string(), unit.name.clone())]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .linux(linux)
        .build()
}

fn default_mounts() -> Result<Vec<Mount>, oci_spec::OciSpecError> {
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
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
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
            &["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
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
