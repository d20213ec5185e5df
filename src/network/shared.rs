//! `mode = "container:<unit>"`: a container that shares another unit's network namespace, and
//! with it that container's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` (Docker's
//! `--network container:`). What it joined is recorded, so that a later start of the target
//! in another namespace (a recreation, or a restart of a target without a pinned namespace)
//! is noticed and the joiner follows it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::attach::Joined;

/// The generated files a container's network identity consists of, and where they go.
pub const FILES: [(&str, &str); 3] = [
    ("hosts", "/etc/hosts"),
    ("hostname", "/etc/hostname"),
    ("resolv.conf", "/etc/resolv.conf"),
];

/// The network a `container:` container joined: its target's, at the time it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shared {
    /// The target unit.
    pub unit: String,
    /// The target's container instance.
    pub container_id: String,
    /// The namespace given to the runtime: the target's pinned one, else its init's.
    pub netns: PathBuf,
    /// The namespace's inode: what tells one namespace from the next.
    pub ino: u64,
    /// Where the target's generated files are (None: it has none, as in mode none).
    pub files_dir: Option<PathBuf>,
    /// The target's hostname, which the joiner takes.
    pub hostname: String,
    /// The target's networks at that time, for `rctl status`.
    pub network: Option<Joined>,
}

impl Shared {
    /// The target's generated files present in `files_dir`, with where each is mounted.
    pub fn files(&self) -> Vec<(PathBuf, &'static str)> {
        files_in(self.files_dir.as_deref())
    }
}

/// The generated files present in `dir`, with where each is mounted.
pub fn files_in(dir: Option<&Path>) -> Vec<(PathBuf, &'static str)> {
    let Some(dir) = dir else { return Vec::new() };
    FILES
        .iter()
        .map(|(name, dest)| (dir.join(name), *dest))
        .filter(|(path, _)| path.exists())
        .collect()
}

/// The inode of the network namespace at `path` (a pinned file or `/proc/PID/ns/net`).
pub fn netns_ino(path: &Path) -> std::io::Result<u64> {
    std::fs::metadata(path).map(|m| m.ino())
}

/// Opens the namespace at `path` if it is still the one with inode `ino`.
pub fn open_checked(path: &Path, ino: u64) -> Result<std::fs::File, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let got = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .ino();
    if got != ino {
        return Err("its network namespace changed since it was looked at".into());
    }
    Ok(file)
}

/// A path to an open namespace file that any process of this host can open while this
/// process holds it: `/proc/<pid>/fd/<fd>`.
pub fn fd_path(file: &std::fs::File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        file.as_raw_fd()
    ))
}

/// The network namespace of process `pid`.
pub fn netns_of(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_and_its_namespace_file_agree_and_files_are_listed_if_present() {
        let me = netns_of(std::process::id() as i32);
        let by_self = netns_ino(Path::new("/proc/self/ns/net")).expect("own netns");
        assert_eq!(netns_ino(&me).expect("own netns by pid"), by_self);
        assert!(netns_ino(Path::new("/proc/0/ns/net")).is_err());

        // Opened by descriptor: the same namespace, through another path.
        let file = open_checked(&me, by_self).expect("open own netns");
        assert_eq!(netns_ino(&fd_path(&file)).expect("by fd"), by_self);
        assert!(open_checked(&me, by_self + 1).is_err());

        let dir = tempfile::tempdir().expect("tempdir");
        assert!(files_in(Some(dir.path())).is_empty());
        assert!(files_in(None).is_empty());
        std::fs::write(dir.path().join("hosts"), "x").expect("write");
        std::fs::write(dir.path().join("resolv.conf"), "x").expect("write");
        let got: Vec<&str> = files_in(Some(dir.path()))
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        assert_eq!(got, ["/etc/hosts", "/etc/resolv.conf"]);
    }
}
