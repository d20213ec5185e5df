//! Network namespaces that outlive any process: created by rcd, kept alive by a bind mount of
//! the namespace file under the state root (what `ip netns add` does under /run/netns), given to
//! the runtime by path and to the CNI plugins as `CNI_NETNS`, removed with the container.

// Bringing loopback up takes two interface ioctls, which nix does not wrap.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// A namespace that could not be made or removed.
#[derive(Debug, thiserror::Error)]
#[error("network namespace {}: {what}: {source}", path.display())]
pub struct Error {
    /// The namespace file.
    pub path: PathBuf,
    /// The step that failed.
    pub what: &'static str,
    /// The cause.
    pub source: std::io::Error,
}

fn err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Creates a new network namespace pinned at `path` (its directory must exist). If `path`
/// already pins one (a retry after a crash), that one is kept.
pub fn create(path: &Path) -> Result<(), Error> {
    if is_pinned(path) {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(err(path, "create the mount point"))?;
    let target = path.to_path_buf();
    // Namespaces belong to threads: a thread of its own unshares, so no other thread of the
    // daemon (nor the runtime it spawns) ever runs in the new namespace; its bind mount keeps
    // the namespace alive after the thread ends.
    let pinned = std::thread::spawn(move || -> Result<(), Error> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| err(&target, "unshare")(e.into()))?;
        // A new namespace's loopback is down; containers expect 127.0.0.1 to work (what the
        // CNI loopback plugin does, without a process for it).
        loopback_up().map_err(err(&target, "bring loopback up"))?;
        let tid = nix::unistd::gettid();
        let own = format!("/proc/self/task/{tid}/ns/net");
        mount(
            Some(own.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| err(&target, "bind-mount")(e.into()))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error {
            path: path.to_path_buf(),
            what: "create",
            source: std::io::Error::other("the namespace thread panicked"),
        })
    });
    if pinned.is_err() {
        let _ = std::fs::remove_file(path);
    }
    pinned
}

/// Sets `lo` up in the calling thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2) with constant arguments; the fd is owned (and closed) from here on.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write an ifreq, which `req` is; the flags
    // member of the union is the one both use.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Unpins and deletes the namespace at `path` (gone when its last process leaves). Nothing
/// there is success.
pub fn remove(path: &Path) -> Result<(), Error> {
    while is_pinned(path) {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => break,
            Err(e) => return Err(err(path, "unmount")(e.into())),
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(path, "remove")(e)),
        _ => Ok(()),
    }
}

/// True if `path` is a mount point pinning a namespace.
pub fn is_pinned(path: &Path) -> bool {
    crate::rootfs::is_mounted(path)
}

/// Every pinned namespace file directly under `dir` (for the sweep at daemon start).
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn create_pin_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns1");
        create(&path).unwrap();
        assert!(is_pinned(&path));
        // A namespace of its own, not the daemon's.
        let host = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        let ns = std::fs::metadata(&path).unwrap().ino();
        assert_ne!(host, ns);
        // Its loopback is up.
        let flags = std::process::Command::new("nsenter")
            .arg(format!("--net={}", path.display()))
            .args(["cat", "/sys/class/net/lo/flags"])
            .output()
            .unwrap();
        let flags = String::from_utf8_lossy(&flags.stdout);
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
        assert_eq!(flags & libc::IFF_UP as u32, libc::IFF_UP as u32, "lo is up");
        // The calling thread stayed in the host's namespace.
        let me = std::fs::metadata(format!("/proc/self/task/{}/ns/net", nix::unistd::gettid()))
            .unwrap()
            .ino();
        assert_eq!(me, host);
        // Idempotent: a second create keeps the same namespace.
        create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ns);
        assert_eq!(list(dir.path()), std::slice::from_ref(&path));
        remove(&path).unwrap();
        assert!(!is_pinned(&path) && !path.exists());
        remove(&path).unwrap();
    }

    #[test]
    fn a_missing_directory_is_a_clear_error_and_leaves_nothing() {
        let path = Path::new("/nonexistent-rcd-dir/ns");
        let e = create(path).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent-rcd-dir/ns") && e.contains("create the mount point"),
            "{e}"
        );
    }
}
