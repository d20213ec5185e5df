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
    /// The read-only lower layer.
    pub lower: PathBuf,
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
        Overlay {
            lower: lower.to_path_buf(),
            upper: container_dir.join("upper"),
            work: container_dir.join("work"),
            merged: merged.to_path_buf(),
        }
    }

    /// Mounts the overlay (idempotent: an existing mount is kept).
    pub fn mount(&self) -> Result<(), Error> {
        match std::fs::metadata(&self.lower) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Lower {
                    path: self.lower.clone(),
                    reason: "not a directory".into(),
                })
            }
            Err(e) => {
                return Err(Error::Lower {
                    path: self.lower.clone(),
                    reason: e.to_string(),
                })
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
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.display(),
            self.upper.display(),
            self.work.display()
        );
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

/// True if `path` is a mount point (listed in /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape(mp) == want)
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
    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(super::unescape("/a\\040b"), "/a b");
        assert_eq!(super::unescape("/plain"), "/plain");
        assert!(super::is_mounted(std::path::Path::new("/proc")));
    }
}
