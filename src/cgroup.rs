//! What a container's cgroup says it uses: memory (and its limit), CPU time, pids, OOM kills.
//! Both layouts: cgroup v2 (one unified tree; most hosts) and v1 (a tree per controller; this
//! machine's hybrid setup). `cgroups_path` is what the spec gave the runtime (`/rcd-<tag>/<id>`).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where the cgroup filesystems are mounted.
const ROOT: &str = "/sys/fs/cgroup";
/// A v1 memory limit at or above this is "no limit".
const NO_LIMIT: u64 = 1 << 62;

/// A container's resource usage; each None where the cgroup does not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Memory in use, bytes.
    pub memory_bytes: Option<u64>,
    /// The memory limit, bytes (None: none).
    pub memory_limit: Option<u64>,
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
    let rel = cgroups_path.trim_start_matches('/');
    if root.join("cgroup.controllers").exists() {
        let dir = root.join(rel);
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        return Usage {
            memory_bytes: read("memory.current").and_then(|s| number(&s)),
            memory_limit: read("memory.max").and_then(|s| number(&s)),
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
        cpu_usec: read("cpuacct", "cpuacct.usage")
            .and_then(|s| number(&s))
            .map(|ns| ns / 1000),
        pids: read("pids", "pids.current").and_then(|s| number(&s)),
        oom_kills: read("memory", "memory.oom_control").and_then(|s| keyed(&s, "oom_kill")),
    }
}

/// A file holding one number (`max`, v2's "no limit", is None).
fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
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
                cpu_usec: Some(2500),
                pids: Some(3),
                oom_kills: Some(1),
            }
        );
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
        assert_eq!(
            usage_at(v1.path(), "/rcd-ab/rcd-ab-web-1"),
            Usage {
                memory_bytes: Some(4096),
                memory_limit: Some(16 << 20),
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
}
