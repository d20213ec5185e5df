//! What a spec takes from the host at start: device nodes (their numbers and modes) and the
//! init binary.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

use crate::unit::Device;

/// Where a unit's `init = true` binary is looked for, in order: podman's catatonit (Debian
/// package `catatonit`), then tini's static build (`tini`), then Docker's own copy. Each is a
/// static binary, so it runs in any image.
pub const INIT_CANDIDATES: &[&str] = &[
    "/usr/bin/catatonit",
    "/usr/libexec/podman/catatonit",
    "/usr/bin/tini-static",
    "/usr/bin/docker-init",
];

/// Where the init binary appears in the container: `/dev` is a fresh tmpfs, so nothing is
/// left in the image's layers or the container's writable one.
pub const INIT_IN_CONTAINER: &str = "/dev/init";

/// The init binary to bind-mount for `init = true`.
pub fn init_binary() -> Result<PathBuf, String> {
    INIT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "init = true needs an init binary: install catatonit (apt-get install catatonit) or tini; looked for {}",
                INIT_CANDIDATES.join(", ")
            )
        })
}

/// The daemon's capability bounding set as a bit mask (`CapBnd` of /proc/self/status): what
/// any container of it can hold at most. All bits if it cannot be read.
pub fn bounding_set() -> u64 {
    static MASK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapBnd:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(u64::MAX)
    })
}

/// The daemon's effective capabilities, as a bit mask (bit N is capability N).
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// `CAP_SYS_RESOURCE`'s number.
const CAP_SYS_RESOURCE: u32 = 24;

/// Refuses ulimits (keyed `RLIMIT_*`) whose hard limit is above the daemon's own when the
/// daemon may not raise one (no `CAP_SYS_RESOURCE`, as in some sandboxes and rootless
/// setups): said now, rather than the runtime's bare "operation not permitted".
pub fn check_ulimits(
    ulimits: &std::collections::BTreeMap<String, crate::unit::Ulimit>,
) -> Result<(), String> {
    use nix::sys::resource::{getrlimit, Resource};
    if ulimits.is_empty() || effective_caps() & (1 << CAP_SYS_RESOURCE) != 0 {
        return Ok(());
    }
    for (name, u) in ulimits {
        let resource = match name.as_str() {
            "RLIMIT_AS" => Resource::RLIMIT_AS,
            "RLIMIT_CORE" => Resource::RLIMIT_CORE,
            "RLIMIT_CPU" => Resource::RLIMIT_CPU,
            "RLIMIT_DATA" => Resource::RLIMIT_DATA,
            "RLIMIT_FSIZE" => Resource::RLIMIT_FSIZE,
            "RLIMIT_LOCKS" => Resource::RLIMIT_LOCKS,
            "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
            "RLIMIT_MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
            "RLIMIT_NICE" => Resource::RLIMIT_NICE,
            "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
            "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
            "RLIMIT_RSS" => Resource::RLIMIT_RSS,
            "RLIMIT_RTPRIO" => Resource::RLIMIT_RTPRIO,
            "RLIMIT_RTTIME" => Resource::RLIMIT_RTTIME,
            "RLIMIT_SIGPENDING" => Resource::RLIMIT_SIGPENDING,
            "RLIMIT_STACK" => Resource::RLIMIT_STACK,
            _ => continue,
        };
        let Ok((_, own)) = getrlimit(resource) else {
            continue;
        };
        if own != nix::sys::resource::RLIM_INFINITY && u.hard > own {
            let short = name.trim_start_matches("RLIMIT_").to_ascii_lowercase();
            let wanted = if u.hard == u64::MAX {
                "unlimited".to_owned()
            } else {
                u.hard.to_string()
            };
            return Err(format!(
                "ulimit {short}: the hard limit {wanted} is above the daemon's own ({own}), which it cannot raise without CAP_SYS_RESOURCE"
            ));
        }
    }
    Ok(())
}

/// A device node as the spec lists it, and the cgroup rule that lets it be used.
pub struct HostDevice {
    /// The node to create in the container.
    pub node: LinuxDevice,
    /// Access to it.
    pub rule: LinuxDeviceCgroup,
}

/// The nodes a unit's `devices` name: a node, or every node under a directory (`/dev/dri`).
pub fn devices(list: &[Device]) -> Result<Vec<HostDevice>, String> {
    let mut out = Vec::new();
    for d in list {
        let meta =
            std::fs::metadata(&d.host).map_err(|e| format!("device {}: {e}", d.host.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(&d.host, &mut found);
            if found.is_empty() {
                return Err(format!(
                    "device {}: no device nodes under it",
                    d.host.display()
                ));
            }
            for (path, meta) in found {
                let rel = path.strip_prefix(&d.host).unwrap_or(&path);
                let inside = Path::new(&d.container).join(rel);
                out.push(
                    node(&inside, &meta, &d.access)
                        .map_err(|e| format!("{}: {e}", path.display()))?,
                );
            }
        } else {
            out.push(
                node(Path::new(&d.container), &meta, &d.access)
                    .map_err(|e| format!("device {}: {e}", d.host.display()))?,
            );
        }
    }
    Ok(out)
}

/// Every device node of the host, for `privileged` (as Docker gives a privileged container).
pub fn all_devices() -> Vec<HostDevice> {
    let mut found = Vec::new();
    walk(Path::new("/dev"), &mut found);
    found
        .into_iter()
        // The container's own /dev/pts, /dev/console and ptmx come from the runtime.
        .filter(|(p, _)| {
            !p.starts_with("/dev/pts")
                && p != Path::new("/dev/console")
                && p != Path::new("/dev/ptmx")
        })
        .filter_map(|(p, meta)| node(&p, &meta, "rwm").ok())
        .collect()
}

/// Device nodes under `dir`, recursively, without following links.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let t = meta.file_type();
        if t.is_dir() {
            walk(&path, out);
        } else if t.is_char_device() || t.is_block_device() {
            out.push((path, meta));
        }
    }
}

/// The spec entry and cgroup rule of the host node `meta` describes, at `inside` in the container.
pub fn node(inside: &Path, meta: &std::fs::Metadata, access: &str) -> Result<HostDevice, String> {
    let t = meta.file_type();
    let typ = if t.is_char_device() {
        LinuxDeviceType::C
    } else if t.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Err("not a device node".to_owned());
    };
    let rdev = meta.rdev();
    let (major, minor) = (
        nix::sys::stat::major(rdev) as i64,
        nix::sys::stat::minor(rdev) as i64,
    );
    let node = LinuxDeviceBuilder::default()
        .path(inside)
        .typ(typ)
        .major(major)
        .minor(minor)
        .file_mode(meta.mode() & 0o777)
        .uid(meta.uid())
        .gid(meta.gid())
        .build()
        .map_err(|e| e.to_string())?;
    let rule = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(typ)
        .major(major)
        .minor(minor)
        .access(access)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(HostDevice { node, rule })
}
