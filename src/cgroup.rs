//! Where a container's cgroup lives and what it says it uses: memory (and its limit), CPU time,
//! pids, OOM kills; and, for a container nothing supervises any more, every process in it
//! killed and the cgroup removed. Two drivers: `cgroupfs` (the runtime makes `/rcd-<tag>/<id>` itself; hosts
//! without systemd) and `systemd` (the runtime asks systemd for a transient scope
//! `rcd-<tag>-<unit>-<gen>.scope` in `rcd.slice`; a systemd host with cgroup v2, where systemd
//! owns the tree and a cgroup made behind its back may lose its controllers). Both layouts of
//! the files: cgroup v2 (one unified tree; most hosts) and v1 (a tree per controller).

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where the cgroup filesystems are mounted.
const ROOT: &str = "/sys/fs/cgroup";
/// A v1 memory limit at or above this is "no limit".
const NO_LIMIT: u64 = 1 << 62;
/// The systemd slice that holds every container scope.
pub const SLICE: &str = "rcd.slice";

/// A container's cgroup that could not be emptied or removed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cgroup file or directory could not be read, written or removed.
    #[error("cgroup {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Processes were still in the cgroup when the wait ran out.
    #[error("cgroup {path}: processes {pids:?} still in it after {waited:?}")]
    Busy {
        /// The cgroup's directory.
        path: PathBuf,
        /// What was left.
        pids: Vec<i32>,
        /// How long their end was waited for.
        waited: Duration,
    },
    /// The cgroups path names no container's cgroup (empty, or leaving the tree).
    #[error("cgroups path {0:?} names no container's cgroup")]
    NotAContainer(String),
}

/// Who creates and removes containers' cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// The runtime writes the cgroup filesystem itself.
    Cgroupfs,
    /// The runtime asks systemd (over its D-Bus API) for a transient scope per container.
    Systemd,
}

impl Driver {
    /// What `auto` means on this host: `systemd` when systemd is the init (as `sd_booted`
    /// tells) and the cgroup tree is unified (v2), as Docker and Podman choose; else
    /// `cgroupfs`.
    pub fn detect() -> Driver {
        Self::detect_at(Path::new("/run/systemd/system"), Path::new(ROOT))
    }

    fn detect_at(systemd_dir: &Path, root: &Path) -> Driver {
        if systemd_dir.is_dir() && root.join("cgroup.controllers").exists() {
            Driver::Systemd
        } else {
            Driver::Cgroupfs
        }
    }

    /// The name used in the config and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Cgroupfs => "cgroupfs",
            Driver::Systemd => "systemd",
        }
    }
}

/// Where one daemon puts its containers' cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The driver.
    pub driver: Driver,
    /// The daemon's root tag (in every path, so that daemons never collide).
    pub tag: String,
    /// The systemd service the daemon runs as (e.g. `rcd.service`), if it runs as one: with
    /// the systemd driver each scope is ordered before it, so at shutdown the daemon stops
    /// first and never sees its containers end and restarts them.
    pub service: Option<String>,
}

impl Layout {
    /// The layout of a daemon whose root tag is `tag`, with `driver`, the service read from
    /// `/proc/self/cgroup`.
    pub fn new(driver: Driver, tag: &str) -> Layout {
        let service = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|t| own_service(&t));
        Layout {
            driver,
            tag: tag.to_string(),
            service,
        }
    }

    /// The runtime's `cgroupsPath` for container `id` (`rcd-<tag>-<unit>-<gen>`):
    /// `/rcd-<tag>/<id>`, or systemd's `slice:prefix:name` giving the scope `<id>.scope`.
    pub fn path(&self, id: &str) -> String {
        match self.driver {
            Driver::Cgroupfs => format!("/rcd-{}/{id}", self.tag),
            Driver::Systemd => {
                let name = id.strip_prefix("rcd-").unwrap_or(id);
                format!("{SLICE}:rcd:{name}")
            }
        }
    }

    /// The container ids of this daemon (`rcd-<tag>-...`) that have a cgroup on this host, in
    /// the unified tree or in any v1 hierarchy.
    pub fn ids(&self) -> Vec<String> {
        self.ids_at(Path::new(ROOT))
    }

    fn ids_at(&self, root: &Path) -> Vec<String> {
        let prefix = format!("rcd-{}-", self.tag);
        // Every container's cgroup sits in the same parent; which one, the driver says.
        let probe = relative_dir(&self.path(&format!("{prefix}x")));
        let Some(parent) = probe.parent() else {
            return Vec::new();
        };
        let mut ids: Vec<String> = hierarchies(root)
            .into_iter()
            .filter_map(|h| std::fs::read_dir(h.join(parent)).ok())
            .flat_map(|rd| rd.flatten())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let id = name.strip_suffix(".scope").unwrap_or(&name).to_string();
                let own = id.starts_with(&prefix)
                    && relative_dir(&self.path(&id)).file_name() == Some(name.as_ref());
                own.then_some(id)
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Properties of the container's systemd scope, as the runtime takes them (OCI
    /// annotations `org.systemd.property.NAME` with GVariant text values): at shutdown systemd
    /// stops the scope after the daemon's service, with the container's own stop signal and
    /// its stop timeout before SIGKILL, as `rctl stop` would. Empty for the cgroupfs driver.
    pub fn annotations(
        &self,
        stop_signal: i32,
        stop_timeout: std::time::Duration,
    ) -> Vec<(String, String)> {
        if self.driver != Driver::Systemd {
            return Vec::new();
        }
        // The runtime makes scopes with DefaultDependencies=false, which leaves them out of the
        // shutdown transaction (their processes would only meet the final kill-everything, a
        // SIGTERM a container's init may ignore for 90 s): put them back in it explicitly.
        let mut before = vec!["'shutdown.target'".to_string()];
        if let Some(s) = &self.service {
            before.push(format!("'{s}'"));
        }
        let out = [
            ("KillSignal".to_string(), stop_signal.to_string()),
            (
                "TimeoutStopUSec".to_string(),
                format!("uint64 {}", stop_timeout.as_micros()),
            ),
            ("Conflicts".to_string(), "['shutdown.target']".to_string()),
            ("Before".to_string(), format!("[{}]", before.join(", "))),
        ];
        out.into_iter()
            .map(|(k, v)| (format!("org.systemd.property.{k}"), v))
            .collect()
    }
}

/// The systemd service whose cgroup a `/proc/<pid>/cgroup` text names (`rcd.service` for
/// `0::/system.slice/rcd.service`); None outside a service.
fn own_service(proc_cgroup: &str) -> Option<String> {
    let path = proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| {
            proc_cgroup
                .lines()
                .find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p))
        })?;
    path.split('/')
        .rev()
        .find(|c| c.ends_with(".service"))
        .filter(|c| {
            c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "@_.-:\\".contains(ch))
        })
        .map(str::to_string)
}

/// The directory, relative to a hierarchy's root, of the cgroup the runtime made for
/// `cgroups_path`: itself for cgroupfs; for systemd's `slice:prefix:name`, the slice's path
/// (`a-b.slice` is `a.slice/a-b.slice`) and then `prefix-name.scope`.
pub fn relative_dir(cgroups_path: &str) -> PathBuf {
    let parts: Vec<&str> = cgroups_path.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return PathBuf::from(cgroups_path.trim_start_matches('/'));
    };
    let mut dir = PathBuf::new();
    if !slice.is_empty() && slice != "-" {
        // systemd's slice naming: each dash-separated prefix is a parent slice.
        let stem = slice.strip_suffix(".slice").unwrap_or(slice);
        let mut acc = String::new();
        for piece in stem.split('-') {
            if !acc.is_empty() {
                acc.push('-');
            }
            acc.push_str(piece);
            dir.push(format!("{acc}.slice"));
        }
    } else if slice.is_empty() {
        dir.push("system.slice");
    }
    if name.ends_with(".slice") {
        dir.push(name);
    } else {
        dir.push(format!("{prefix}-{name}.scope"));
    }
    dir
}

/// The container's cgroup directory on a cgroup v2 host (None on v1).
pub fn unified_dir(cgroups_path: &str) -> Option<PathBuf> {
    let root = Path::new(ROOT);
    root.join("cgroup.controllers")
        .exists()
        .then(|| root.join(relative_dir(cgroups_path)))
}

/// The roots of the cgroup trees: the unified one (v2), or each v1 hierarchy (a hybrid host's
/// `unified` and `systemd` included).
fn hierarchies(root: &Path) -> Vec<PathBuf> {
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    let mut out = subdirs(root);
    out.sort();
    out
}

/// Removes this daemon's parent cgroups (`rcd-<tag>` in every tree) once they are empty; the
/// kernel refuses while any container's cgroup is still in them, which is the point.
pub fn remove_parents(tag: &str) {
    let name = format!("rcd-{tag}");
    for h in hierarchies(Path::new(ROOT)) {
        let _ = std::fs::remove_dir(h.join(&name));
    }
}

/// The directories directly in `dir` (none if it cannot be read).
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// Every directory of the container cgroup at `cgroups_path`, in every tree that has it, with
/// the cgroups below it (a container may make its own), parents before children.
fn container_dirs(root: &Path, cgroups_path: &str) -> Result<Vec<PathBuf>, Error> {
    let rel = relative_dir(cgroups_path);
    // Never a tree's root or anything outside it: what is in there is not the container's.
    let inside =
        rel.components().count() > 0 && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !inside {
        return Err(Error::NotAContainer(cgroups_path.to_string()));
    }
    let mut out = Vec::new();
    for h in hierarchies(root) {
        let top = h.join(&rel);
        if top.is_dir() {
            let mut at = out.len();
            out.push(top);
            while at < out.len() {
                let children = subdirs(&out[at]);
                out.extend(children);
                at += 1;
            }
        }
    }
    Ok(out)
}

/// The processes in `dirs` (a cgroup that is gone holds none).
fn procs(dirs: &[PathBuf]) -> Result<Vec<i32>, Error> {
    let mut pids = Vec::new();
    for d in dirs {
        let file = d.join("cgroup.procs");
        match std::fs::read_to_string(&file) {
            Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Io { path: file, source }),
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// Kills every process in the container cgroup at `cgroups_path` and waits, at most `within`,
/// until none is left; returns how many it held. For a container nothing supervises:
/// its processes outlive its shim, and the runtime may have lost its record of them.
pub fn kill_all(cgroups_path: &str, within: Duration) -> Result<usize, Error> {
    kill_all_at(Path::new(ROOT), cgroups_path, within)
}

fn kill_all_at(root: &Path, cgroups_path: &str, within: Duration) -> Result<usize, Error> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let dirs = container_dirs(root, cgroups_path)?;
    let Some(top) = dirs.first().cloned() else {
        return Ok(0);
    };
    let held = procs(&dirs)?.len();
    // cgroup.kill (v2, Linux 5.14; a hybrid host's unified tree too): the kernel kills the
    // whole subtree, processes forking meanwhile included.
    for d in &dirs {
        let kill_file = d.join("cgroup.kill");
        if kill_file.exists() {
            let _ = std::fs::write(&kill_file, "1");
        }
    }
    // Without it (v1, older kernels), the freezer keeps anything from forking between the
    // listing and the kill; a frozen process dies of its SIGKILL when thawed.
    let freezer = dirs
        .iter()
        .find(|d| d.join("freezer.state").exists())
        .map(|d| d.join("freezer.state"));
    let deadline = Instant::now() + within;
    loop {
        let left = procs(&dirs)?;
        if left.is_empty() {
            return Ok(held);
        }
        if Instant::now() >= deadline {
            return Err(Error::Busy {
                path: top,
                pids: left,
                waited: within,
            });
        }
        if let Some(f) = &freezer {
            freeze(f, true, deadline);
        }
        for pid in procs(&dirs)? {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(f) = &freezer {
            freeze(f, false, deadline);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The processes in the container cgroup at `cgroups_path`, sorted (none if it is gone).
pub fn pids(cgroups_path: &str) -> Vec<i32> {
    let root = Path::new(ROOT);
    let mut out = container_dirs(root, cgroups_path)
        .and_then(|dirs| procs(&dirs))
        .unwrap_or_default();
    out.sort_unstable();
    out.dedup();
    out
}

/// Freezes (or thaws) a v1 freezer cgroup, waiting (until `deadline`) for a freeze to take.
/// Best effort: the caller's loop kills what a freeze that did not take let fork.
fn freeze(state: &Path, frozen: bool, deadline: Instant) {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    if std::fs::write(state, want).is_err() {
        return;
    }
    while frozen && Instant::now() < deadline {
        match std::fs::read_to_string(state) {
            Ok(s) if s.trim() != want => std::thread::sleep(Duration::from_millis(1)),
            _ => break,
        }
    }
}

/// Removes the emptied container cgroup at `cgroups_path` from every tree, the cgroups below it
/// first; one already gone is success.
pub fn remove(cgroups_path: &str) -> Result<(), Error> {
    remove_at(Path::new(ROOT), cgroups_path)
}

fn remove_at(root: &Path, cgroups_path: &str) -> Result<(), Error> {
    for d in container_dirs(root, cgroups_path)?.iter().rev() {
        match std::fs::remove_dir(d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Io {
                    path: d.clone(),
                    source: e,
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// A container's resource usage; each None where the cgroup does not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Memory in use, bytes.
    pub memory_bytes: Option<u64>,
    /// The memory limit, bytes (None: none).
    pub memory_limit: Option<u64>,
    /// The most memory it used, bytes (v2's `memory.peak`, from kernel 5.19; v1's
    /// `memory.max_usage_in_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_peak: Option<u64>,
    /// CPU time used, microseconds.
    pub cpu_usec: Option<u64>,
    /// Processes (tasks) in it.
    pub pids: Option<u64>,
    /// Times the kernel's OOM killer killed a process in it.
    pub oom_kills: Option<u64>,
}

/// The usage of the cgroup at `cgroups_path` on this host.
pub fn usage(cgroups_path: &str) -> Usage {
    usage_at(Path::new(ROOT), cgroups_path)
}

/// `usage`, with the cgroup filesystems under `root`.
pub fn usage_at(root: &Path, cgroups_path: &str) -> Usage {
    let rel = relative_dir(cgroups_path);
    let rel = rel.as_path();
    if root.join("cgroup.controllers").exists() {
        let dir = root.join(rel);
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        return Usage {
            memory_bytes: read("memory.current").and_then(|s| number(&s)),
            memory_limit: read("memory.max").and_then(|s| number(&s)),
            memory_peak: read("memory.peak").and_then(|s| number(&s)),
            cpu_usec: read("cpu.stat").and_then(|s| keyed(&s, "usage_usec")),
            pids: read("pids.current").and_then(|s| number(&s)),
            oom_kills: read("memory.events").and_then(|s| keyed(&s, "oom_kill")),
        };
    }
    let read =
        |ctrl: &str, f: &str| std::fs::read_to_string(root.join(ctrl).join(rel).join(f)).ok();
    Usage {
        memory_bytes: read("memory", "memory.usage_in_bytes").and_then(|s| number(&s)),
        memory_limit: read("memory", "memory.limit_in_bytes")
            .and_then(|s| number(&s))
            .filter(|&l| l < NO_LIMIT),
        memory_peak: read("memory", "memory.max_usage_in_bytes").and_then(|s| number(&s)),
        cpu_usec: read("cpuacct", "cpuacct.usage")
            .and_then(|s| number(&s))
            .map(|ns| ns / 1000),
        pids: read("pids", "pids.current").and_then(|s| number(&s)),
        oom_kills: read("memory", "memory.oom_control").and_then(|s| keyed(&s, "oom_kill")),
    }
}

/// One block device's I/O by a container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIo {
    /// The device's major number.
    pub major: u64,
    /// Its minor number.
    pub minor: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
}

/// The block I/O of the cgroup at `cgroups_path`, a device a row (v2's `io.stat`, v1's
/// `blkio.throttle.io_service_bytes`); devices with nothing read or written left out.
pub fn io(cgroups_path: &str) -> Vec<DeviceIo> {
    io_at(Path::new(ROOT), cgroups_path)
}

/// `io`, with the cgroup filesystems under `root`.
pub fn io_at(root: &Path, cgroups_path: &str) -> Vec<DeviceIo> {
    let rel = relative_dir(cgroups_path);
    let mut out: Vec<DeviceIo> = Vec::new();
    let mut add = |dev: &str, read: u64, write: u64| {
        let Some((major, minor)) = dev.split_once(':') else {
            return;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            return;
        };
        match out
            .iter_mut()
            .find(|d| (d.major, d.minor) == (major, minor))
        {
            Some(d) => {
                d.read_bytes += read;
                d.write_bytes += write;
            }
            None => out.push(DeviceIo {
                major,
                minor,
                read_bytes: read,
                write_bytes: write,
            }),
        }
    };
    if root.join("cgroup.controllers").exists() {
        // `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`
        let text = std::fs::read_to_string(root.join(&rel).join("io.stat")).unwrap_or_default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let Some(dev) = words.next() else { continue };
            let (mut r, mut w) = (0, 0);
            for kv in words {
                match kv.split_once('=') {
                    Some(("rbytes", v)) => r = v.parse().unwrap_or(0),
                    Some(("wbytes", v)) => w = v.parse().unwrap_or(0),
                    _ => {}
                }
            }
            add(dev, r, w);
        }
    } else {
        // `8:0 Read 1`, `8:0 Write 2`, ..., `Total 3`
        let text = std::fs::read_to_string(
            root.join("blkio")
                .join(&rel)
                .join("blkio.throttle.io_service_bytes"),
        )
        .unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [dev, op, v] = f[..] {
                let v = v.parse().unwrap_or(0);
                match op {
                    "Read" => add(dev, v, 0),
                    "Write" => add(dev, 0, v),
                    _ => {}
                }
            }
        }
    }
    out.retain(|d| d.read_bytes > 0 || d.write_bytes > 0);
    out
}

/// A file holding one number (`max`, v2's "no limit", is None).
fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Whether the kernel's log says its OOM killer killed a process of the cgroup at
/// `cgroups_path` at or after `since_us` (CLOCK_MONOTONIC, µs: what the log's timestamps
/// count). For a cgroup that is already gone (systemd removes a scope as soon as it empties),
/// where `memory.events` can no longer be read. Reads `/dev/kmsg` from its oldest record.
pub fn kernel_log_says_oom(cgroups_path: &str, since_us: u64) -> bool {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let cgroup = format!("/{}", relative_dir(cgroups_path).display());
    let Ok(mut kmsg) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open("/dev/kmsg")
    else {
        return false;
    };
    let mut buf = vec![0u8; 8192];
    // Bounded: the ring holds a few thousand records; a record overwritten while read is
    // skipped (EPIPE) and the next one read.
    for _ in 0..100_000 {
        match kmsg.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                if kmsg_oom_record(&String::from_utf8_lossy(&buf[..n]), &cgroup, since_us) {
                    return true;
                }
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    false
}

/// Whether one `/dev/kmsg` record (`prio,seq,usec,flags;message`) is the OOM killer's
/// account of a kill in `cgroup` (`oom_memcg=` or `task_memcg=`) at or after `since_us`.
fn kmsg_oom_record(record: &str, cgroup: &str, since_us: u64) -> bool {
    let Some((head, message)) = record.split_once(';') else {
        return false;
    };
    let at = head.split(',').nth(2).and_then(|t| t.parse::<u64>().ok());
    if at.is_none_or(|t| t < since_us) || !message.starts_with("oom-kill:") {
        return false;
    }
    message
        .lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .any(|kv| kv == format!("oom_memcg={cgroup}") || kv == format!("task_memcg={cgroup}"))
}

/// The `oom_kill` count of a cgroup v2 `memory.events` text.
pub fn oom_kills(memory_events: &str) -> Option<u64> {
    keyed(memory_events, "oom_kill")
}

/// The value of `key` in a `key value` per line file.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, file: &str, text: &str) {
        let dir = root.join(rel);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(file), text).expect("write");
    }

    #[test]
    fn cgroups_paths_and_their_directories() {
        let fs = Layout {
            driver: Driver::Cgroupfs,
            tag: "ab12cd".into(),
            service: Some("rcd.service".into()),
        };
        assert_eq!(fs.path("rcd-ab12cd-web-7"), "/rcd-ab12cd/rcd-ab12cd-web-7");
        assert!(fs
            .annotations(15, std::time::Duration::from_secs(10))
            .is_empty());
        let sd = Layout {
            driver: Driver::Systemd,
            ..fs.clone()
        };
        assert_eq!(sd.path("rcd-ab12cd-web-7"), "rcd.slice:rcd:ab12cd-web-7");
        let cases = [
            (
                "/rcd-ab12cd/rcd-ab12cd-web-7",
                "rcd-ab12cd/rcd-ab12cd-web-7",
            ),
            (
                "rcd.slice:rcd:ab12cd-web-7",
                "rcd.slice/rcd-ab12cd-web-7.scope",
            ),
            (
                "machine-rcd.slice:x:y",
                "machine.slice/machine-rcd.slice/x-y.scope",
            ),
            (":runc:id", "system.slice/runc-id.scope"),
            ("-:p:n", "p-n.scope"),
            ("rcd.slice:p:sub.slice", "rcd.slice/sub.slice"),
        ];
        for (path, dir) in cases {
            assert_eq!(relative_dir(path), PathBuf::from(dir), "{path}");
        }
        assert_eq!(
            sd.annotations(9, std::time::Duration::from_millis(2500)),
            vec![
                (
                    "org.systemd.property.KillSignal".to_string(),
                    "9".to_string()
                ),
                (
                    "org.systemd.property.TimeoutStopUSec".to_string(),
                    "uint64 2500000".to_string()
                ),
                (
                    "org.systemd.property.Conflicts".to_string(),
                    "['shutdown.target']".to_string()
                ),
                (
                    "org.systemd.property.Before".to_string(),
                    "['shutdown.target', 'rcd.service']".to_string()
                ),
            ]
        );
    }

    #[test]
    fn the_kernel_log_names_the_oom_killed_cgroup() {
        let scope = "/rcd.slice/rcd-ab-oom-1.scope";
        let line = |usec: u64, memcg: &str| {
            format!(
                "6,812,{usec},-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset={memcg},mems_allowed=0,oom_memcg={memcg},task_memcg={memcg},task=dd,pid=1716,uid=0\n"
            )
        };
        assert!(kmsg_oom_record(&line(5_000_000, scope), scope, 4_000_000));
        assert!(kmsg_oom_record(&line(4_000_000, scope), scope, 4_000_000));
        // Before this run of the container: an earlier run's kill.
        assert!(!kmsg_oom_record(&line(3_999_999, scope), scope, 4_000_000));
        // Another container, or one whose name this one's is a prefix of.
        assert!(!kmsg_oom_record(
            &line(5_000_000, "/rcd.slice/rcd-ab-oom-12.scope"),
            scope,
            0
        ));
        assert!(!kmsg_oom_record(
            "6,813,5000000,-;Memory cgroup out of memory: Killed process 1716 (dd)\n",
            scope,
            0
        ));
        assert!(!kmsg_oom_record("garbage", scope, 0));
    }

    #[test]
    fn the_service_a_daemon_runs_as() {
        let cases = [
            ("0::/system.slice/rcd.service\n", Some("rcd.service")),
            (
                "0::/system.slice/rcd.service/supervisor\n",
                Some("rcd.service"),
            ),
            ("0::/user.slice/user-0.slice/session-1.scope\n", None),
            ("0::/\n", None),
            (
                "12:pids:/system.slice/x.service\n1:name=systemd:/system.slice/x.service\n0::/\n",
                None,
            ),
            (
                "12:pids:/system.slice/x.service\n1:name=systemd:/system.slice/x.service\n",
                Some("x.service"),
            ),
            ("0::/system.slice/we'ird.service\n", None),
        ];
        for (text, want) in cases {
            assert_eq!(own_service(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn the_driver_follows_the_host() {
        let host = tempfile::tempdir().expect("tempdir");
        let systemd = host.path().join("run-systemd-system");
        let root = host.path().join("cgroup");
        std::fs::create_dir_all(&root).expect("dir");
        assert_eq!(Driver::detect_at(&systemd, &root), Driver::Cgroupfs);
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").expect("write");
        assert_eq!(Driver::detect_at(&systemd, &root), Driver::Cgroupfs);
        std::fs::create_dir_all(&systemd).expect("dir");
        assert_eq!(Driver::detect_at(&systemd, &root), Driver::Systemd);
        std::fs::remove_file(root.join("cgroup.controllers")).expect("rm");
        assert_eq!(Driver::detect_at(&systemd, &root), Driver::Cgroupfs);
    }

    #[test]
    fn container_cgroups_found_and_emptied_in_every_tree() {
        let fs = Layout {
            driver: Driver::Cgroupfs,
            tag: "ab".into(),
            service: None,
        };
        let sd = Layout {
            driver: Driver::Systemd,
            ..fs.clone()
        };
        // v1: one directory per hierarchy; another daemon's and a stray name are not ours.
        let v1 = tempfile::tempdir().expect("tempdir");
        for rel in [
            "memory/rcd-ab/rcd-ab-web-1",
            "pids/rcd-ab/rcd-ab-web-1",
            "pids/rcd-ab/rcd-ab-db-2/nested",
            "pids/rcd-cd/rcd-cd-web-1",
            "unified/rcd-ab/other",
            "systemd/rcd.slice/rcd-ab-web-3.scope",
        ] {
            std::fs::create_dir_all(v1.path().join(rel)).expect("dir");
        }
        assert_eq!(fs.ids_at(v1.path()), ["rcd-ab-db-2", "rcd-ab-web-1"]);
        assert_eq!(sd.ids_at(v1.path()), ["rcd-ab-web-3"]);
        let dirs = container_dirs(v1.path(), &fs.path("rcd-ab-db-2")).expect("dirs");
        assert_eq!(
            dirs,
            [
                v1.path().join("pids/rcd-ab/rcd-ab-db-2"),
                v1.path().join("pids/rcd-ab/rcd-ab-db-2/nested"),
            ]
        );
        // Empty: nothing to kill; removed children first, in every tree; gone is success.
        assert_eq!(
            kill_all_at(v1.path(), &fs.path("rcd-ab-db-2"), Duration::ZERO).expect("kill"),
            0
        );
        for id in ["rcd-ab-db-2", "rcd-ab-web-1", "rcd-ab-web-1"] {
            remove_at(v1.path(), &fs.path(id)).expect("remove");
        }
        assert!(fs.ids_at(v1.path()).is_empty());
        assert!(v1.path().join("pids/rcd-cd/rcd-cd-web-1").is_dir());

        // v2: the unified tree only; a process listed that does not go is reported.
        let v2 = tempfile::tempdir().expect("tempdir");
        write(v2.path(), "", "cgroup.controllers", "cpu memory pids\n");
        write(
            v2.path(),
            "rcd.slice/rcd-ab-web-4.scope",
            "cgroup.procs",
            "",
        );
        write(
            v2.path(),
            "rcd-ab/rcd-ab-web-5",
            "cgroup.procs",
            "999999999\n",
        );
        assert_eq!(sd.ids_at(v2.path()), ["rcd-ab-web-4"]);
        assert_eq!(fs.ids_at(v2.path()), ["rcd-ab-web-5"]);
        let busy = kill_all_at(v2.path(), &fs.path("rcd-ab-web-5"), Duration::ZERO);
        assert!(
            matches!(&busy, Err(Error::Busy { pids, .. }) if pids == &[999_999_999]),
            "{busy:?}"
        );

        // Never a tree's root or a path out of it.
        for bad in ["/", "", "/rcd-ab/../..", "-:x:../y.slice", "../x"] {
            assert!(
                matches!(
                    kill_all_at(v2.path(), bad, Duration::ZERO),
                    Err(Error::NotAContainer(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn v1_and_v2_layouts() {
        let v2 = tempfile::tempdir().expect("tempdir");
        write(v2.path(), "", "cgroup.controllers", "cpu memory pids\n");
        let c = "rcd-ab/rcd-ab-web-1";
        write(v2.path(), c, "memory.current", "1048576\n");
        write(v2.path(), c, "memory.max", "max\n");
        write(
            v2.path(),
            c,
            "cpu.stat",
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
        );
        write(v2.path(), c, "pids.current", "3\n");
        write(v2.path(), c, "memory.peak", "2097152\n");
        write(
            v2.path(),
            c,
            "memory.events",
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        );
        assert_eq!(
            usage_at(v2.path(), "/rcd-ab/rcd-ab-web-1"),
            Usage {
                memory_bytes: Some(1048576),
                memory_limit: None,
                memory_peak: Some(2097152),
                cpu_usec: Some(2500),
                pids: Some(3),
                oom_kills: Some(1),
            }
        );
        // The systemd driver's scope, read where systemd makes it.
        let scope = "rcd.slice/rcd-ab-web-1.scope";
        write(v2.path(), scope, "memory.max", "16777216\n");
        write(v2.path(), scope, "memory.events", "oom 2\noom_kill 2\n");
        let u = usage_at(v2.path(), "rcd.slice:rcd:ab-web-1");
        assert_eq!((u.memory_limit, u.oom_kills), (Some(16 << 20), Some(2)));
        let v1 = tempfile::tempdir().expect("tempdir");
        write(
            v1.path(),
            &format!("memory/{c}"),
            "memory.usage_in_bytes",
            "4096\n",
        );
        write(
            v1.path(),
            &format!("memory/{c}"),
            "memory.limit_in_bytes",
            "16777216\n",
        );
        write(
            v1.path(),
            &format!("memory/{c}"),
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        write(
            v1.path(),
            &format!("cpuacct/{c}"),
            "cpuacct.usage",
            "7000000\n",
        );
        write(v1.path(), &format!("pids/{c}"), "pids.current", "1\n");
        write(
            v1.path(),
            &format!("memory/{c}"),
            "memory.max_usage_in_bytes",
            "8192\n",
        );
        assert_eq!(
            usage_at(v1.path(), "/rcd-ab/rcd-ab-web-1"),
            Usage {
                memory_bytes: Some(4096),
                memory_limit: Some(16 << 20),
                memory_peak: Some(8192),
                cpu_usec: Some(7000),
                pids: Some(1),
                oom_kills: Some(2),
            }
        );
        write(
            v1.path(),
            &format!("memory/{c}"),
            "memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(usage_at(v1.path(), c).memory_limit, None);
        assert_eq!(usage_at(v1.path(), "/gone"), Usage::default());
    }

    #[test]
    fn block_io_from_v1_and_v2() {
        let c = "rcd-ab/rcd-ab-web-1";
        let v2 = tempfile::tempdir().expect("tempdir");
        write(v2.path(), "", "cgroup.controllers", "io memory\n");
        write(
            v2.path(),
            c,
            "io.stat",
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
             8:16 rbytes=0 wbytes=0 rios=0 wios=0 dbytes=0 dios=0\n",
        );
        let want = vec![DeviceIo {
            major: 8,
            minor: 0,
            read_bytes: 4096,
            write_bytes: 8192,
        }];
        assert_eq!(io_at(v2.path(), c), want);
        let v1 = tempfile::tempdir().expect("tempdir");
        write(
            v1.path(),
            &format!("blkio/{c}"),
            "blkio.throttle.io_service_bytes",
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\nTotal 12288\n",
        );
        assert_eq!(io_at(v1.path(), c), want);
        assert!(io_at(v1.path(), "/gone").is_empty());
    }
}
