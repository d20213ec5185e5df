//! Root filesystems: a plain directory in, an overlay mount out (the directory is the read-only
//! lower layer; the container writes to its own upper layer), and its removal.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// An overlay that could not be set up or taken down.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The unit's rootfs is not a directory.
    #[error("rootfs {}: {reason}", path.display())]
    Lower {
        /// The rootfs.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A filesystem operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The directories of one container's overlay.
#[derive(Debug, Clone)]
pub struct Overlay {
    /// The read-only lower layers, top first (a rootfs unit has one).
    pub lowers: Vec<PathBuf>,
    /// The container's writes.
    pub upper: PathBuf,
    /// overlayfs's scratch directory (same filesystem as upper).
    pub work: PathBuf,
    /// Where the merged tree is mounted: the bundle's rootfs.
    pub merged: PathBuf,
}

impl Overlay {
    /// The overlay for a container directory and a lower layer.
    pub fn new(lower: &Path, container_dir: &Path, merged: &Path) -> Self {
        Self::layered(vec![lower.to_path_buf()], container_dir, merged)
    }

    /// The overlay for a container directory and lower layers, top first.
    pub fn layered(lowers: Vec<PathBuf>, container_dir: &Path, merged: &Path) -> Self {
        Overlay {
            lowers,
            upper: container_dir.join("upper"),
            work: container_dir.join("work"),
            merged: merged.to_path_buf(),
        }
    }

    /// Mounts the overlay (idempotent: an existing mount is kept).
    pub fn mount(&self) -> Result<(), Error> {
        if self.lowers.is_empty() {
            return Err(Error::Lower {
                path: self.merged.clone(),
                reason: "no lower layer".into(),
            });
        }
        for lower in &self.lowers {
            match std::fs::metadata(lower) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Error::Lower {
                        path: lower.clone(),
                        reason: "not a directory".into(),
                    })
                }
                Err(e) => {
                    return Err(Error::Lower {
                        path: lower.clone(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        if is_mounted(&self.merged) {
            return Ok(());
        }
        for dir in [&self.upper, &self.work, &self.merged] {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                what: "create",
                path: dir.clone(),
                source,
            })?;
        }
        let data = self.data()?;
        mount(
            Some("overlay"),
            &self.merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| Error::Io {
            what: "mount overlay on",
            path: self.merged.clone(),
            source: e.into(),
        })
    }
}

impl Overlay {
    /// The mount data (`lowerdir=top:...:bottom,upperdir=..,workdir=..`); the kernel takes at
    /// most one page of it, so a longer one is refused here rather than truncated there.
    pub fn data(&self) -> Result<String, Error> {
        let lowers: Vec<String> = self
            .lowers
            .iter()
            .map(|l| l.display().to_string())
            .collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            self.upper.display(),
            self.work.display()
        );
        let page = rustix::param::page_size();
        // The kernel copies one page including the terminating NUL.
        if data.len() >= page {
            return Err(Error::Lower {
                path: self.merged.clone(),
                reason: format!(
                    "overlay mount options are {} bytes for {} layers, over the kernel's limit of {} (one page)",
                    data.len(),
                    self.lowers.len(),
                    page - 1
                ),
            });
        }
        Ok(data)
    }
}

/// Unmounts whatever is mounted at `path`; nothing mounted is success.
pub fn unmount(path: &Path) -> Result<(), Error> {
    while is_mounted(path) {
        match umount2(path, MntFlags::empty()) {
            Ok(()) => {}
            Err(nix::errno::Errno::EBUSY) => {
                // Something still holds it (a process entering the container); detach it.
                umount2(path, MntFlags::MNT_DETACH).map_err(|e| Error::Io {
                    what: "unmount",
                    path: path.to_path_buf(),
                    source: e.into(),
                })?;
            }
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(Error::Io {
                    what: "unmount",
                    path: path.to_path_buf(),
                    source: e.into(),
                })
            }
        }
    }
    Ok(())
}

/// True if `path` is a mount point. Asked of the path itself (statx's `STATX_ATTR_MOUNT_ROOT`,
/// Linux 5.8), not by reading /proc/self/mountinfo: that is the whole mount table, generated
/// and escaped by the kernel at each read, so a check per container start and stop cost time
/// in proportion to the containers already mounted (a sixth of the daemon's CPU while 100
/// units booted). Older kernels fall back to mountinfo.
pub fn is_mounted(path: &Path) -> bool {
    use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags, CWD};
    use rustix::io::Errno;
    match statx(
        CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
        StatxFlags::empty(),
    ) {
        Ok(st) if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) => {
            st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
        }
        Err(Errno::NOENT | Errno::NOTDIR) => false,
        _ => listed_in_mountinfo(path),
    }
}

/// True if `path` is listed as a mount point in /proc/self/mountinfo.
fn listed_in_mountinfo(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape(mp) == want)
}

/// An overlay mounted on this host: where, and on which lower layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    /// The mount point.
    pub target: PathBuf,
    /// Its lower directories, top first.
    pub lowers: Vec<PathBuf>,
}

/// Every overlay mounted on this host (from /proc/self/mountinfo), so that nothing a mounted
/// container stands on is ever pruned.
pub fn overlays() -> Vec<Mounted> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    overlays_in(&info)
}

fn overlays_in(info: &str) -> Vec<Mounted> {
    let mut out = Vec::new();
    for line in info.lines() {
        // The fields after " - " are: fstype, source, super options.
        let Some((head, tail)) = line.split_once(" - ") else {
            continue;
        };
        let mut fields = tail.split(' ');
        if fields.next() != Some("overlay") {
            continue;
        }
        let Some(target) = head.split(' ').nth(4) else {
            continue;
        };
        let options = fields.nth(1).unwrap_or_default();
        let lowers = options
            .split(',')
            .filter_map(|opt| opt.strip_prefix("lowerdir="))
            .flat_map(|dirs| dirs.split(':').map(|d| PathBuf::from(unescape(d))))
            .collect();
        out.push(Mounted {
            target: PathBuf::from(unescape(target)),
            lowers,
        });
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowers_of_mounted_overlays() {
        let info = "36 35 98:0 / /mnt rw - ext4 /dev/sda1 rw\n\
            40 35 0:50 / /c/rootfs rw,relatime - overlay overlay rw,lowerdir=/s/a:/s/b,upperdir=/c/u,workdir=/c/w\n";
        assert_eq!(
            overlays_in(info),
            [Mounted {
                target: "/c/rootfs".into(),
                lowers: vec!["/s/a".into(), "/s/b".into()]
            }]
        );
    }

    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(super::unescape("/a\\040b"), "/a b");
        assert_eq!(super::unescape("/plain"), "/plain");
        assert!(super::is_mounted(std::path::Path::new("/proc")));
    }

    #[test]
    fn mount_points_are_told_apart() {
        use std::path::Path;
        for p in ["/proc", "/sys", "/"] {
            assert!(super::is_mounted(Path::new(p)), "{p}");
            assert!(super::listed_in_mountinfo(Path::new(p)), "{p}");
        }
        for p in ["/proc/self", "/proc/1", "/nonexistent/x", "/etc/hostname/x"] {
            assert_eq!(
                super::is_mounted(Path::new(p)),
                super::listed_in_mountinfo(Path::new(p)),
                "{p}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(!super::is_mounted(dir.path()));
    }

    #[test]
    fn lowerdirs_top_first_and_bounded() {
        use std::path::{Path, PathBuf};
        let o = super::Overlay::layered(
            vec![PathBuf::from("/s/top"), PathBuf::from("/s/bottom")],
            Path::new("/c"),
            Path::new("/c/rootfs"),
        );
        assert_eq!(
            o.data().ok().as_deref(),
            Some("lowerdir=/s/top:/s/bottom,upperdir=/c/upper,workdir=/c/work")
        );
        let many = (0..100)
            .map(|i| PathBuf::from(format!("/var/lib/rcd/images/snapshots/{i:064}")))
            .collect();
        let o = super::Overlay::layered(many, Path::new("/c"), Path::new("/c/rootfs"));
        let err = o.data().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("over the kernel's limit"), "{err}");
    }
}
