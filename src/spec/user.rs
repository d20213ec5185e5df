//! Users as Docker writes them ("uid", "uid:gid", "name", "name:group") turned into numbers,
//! with the names looked up in an /etc/passwd and /etc/group: an image's (its top-most layer
//! that has one) or a running container's (`docker exec -u`).

use std::io::Read;
use std::os::fd::AsFd;
use std::path::PathBuf;

use rustix::fs::{OFlags, ResolveFlags};

use crate::unit::User;

/// Where the names are looked up, and how errors name it.
pub trait Accounts {
    /// "the image", "the container".
    fn whose(&self) -> &'static str;
    /// The text of `/etc/{file}`: None when there is none.
    fn read(&self, file: &str) -> Option<Result<String, String>>;
}

/// The top-most of an image's layers that has the file.
pub struct Layers<'a>(pub &'a [PathBuf]);

impl Accounts for Layers<'_> {
    fn whose(&self) -> &'static str {
        "the image"
    }

    fn read(&self, file: &str) -> Option<Result<String, String>> {
        let path = self
            .0
            .iter()
            .map(|l| l.join("etc").join(file))
            .find(|p| p.symlink_metadata().is_ok_and(|m| m.is_file()))?;
        Some(
            std::fs::File::open(&path)
                .map_err(|e| e.to_string())
                .and_then(read_capped),
        )
    }
}

/// The most of an /etc/passwd or /etc/group that is read: far above any real one, and a bound
/// on what an image or a container can make the daemon hold.
const MAX_ACCOUNTS_FILE: u64 = 4 << 20;

/// The text of a regular file of at most `MAX_ACCOUNTS_FILE` bytes; anything else (a fifo, a
/// device, a huge file) is an error, never a wait or an unbounded read.
fn read_capped(file: std::fs::File) -> Result<String, String> {
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_ACCOUNTS_FILE {
        return Err(format!(
            "larger than {} MiB ({} bytes)",
            MAX_ACCOUNTS_FILE >> 20,
            meta.len()
        ));
    }
    let mut text = String::new();
    file.take(MAX_ACCOUNTS_FILE)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Ok(text)
}

/// A running container's root, seen through its init's `/proc/<pid>/root` once that process is
/// known to be the container's (`crate::copy::container_root`). Symlinks resolve inside that
/// root (`RESOLVE_IN_ROOT`), so the container cannot point the daemon at a host file.
pub struct Running<'a> {
    /// The init's host pid.
    pub pid: i32,
    /// The container's runtime id.
    pub container_id: &'a str,
}

impl Accounts for Running<'_> {
    fn whose(&self) -> &'static str {
        "the container"
    }

    fn read(&self, file: &str) -> Option<Result<String, String>> {
        // Not the container's (any more): an error, never another process's files.
        let dir = match crate::copy::container_root(self.pid, self.container_id) {
            Ok(dir) => dir,
            Err(e) => return Some(Err(e.to_string())),
        };
        // NONBLOCK: a fifo planted as /etc/passwd must not hold the open (read_capped then
        // refuses anything but a regular file).
        let opened = crate::openat::openat2(
            dir.as_fd(),
            format!("etc/{file}").as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        );
        match opened {
            Err(rustix::io::Errno::NOENT) => None,
            Err(e) => Some(Err(std::io::Error::from(e).to_string())),
            Ok(fd) => Some(read_capped(std::fs::File::from(fd))),
        }
    }
}

/// `spec` as numbers; `what` names it in errors ("the image's User", "exec -u").
pub fn resolve(spec: &str, what: &str, accounts: &impl Accounts) -> Result<User, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let whose = accounts.whose();
    // The id in field 2 of `name`'s line, and with `gid` the primary group in field 3.
    let lookup = |file: &str, name: &str, gid: bool| -> Result<(u32, Option<u32>), String> {
        let text = accounts
            .read(file)
            .ok_or_else(|| {
                format!("{what} {spec:?} names {name:?}, but {whose} has no /etc/{file}")
            })?
            .map_err(|e| format!("{what} {spec:?}: cannot read {whose}'s /etc/{file}: {e}"))?;
        text.lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .filter(|f| f.first() == Some(&name) && f.len() > 3)
            .find_map(|f| {
                let id = f[2].parse::<u32>().ok()?;
                Some((id, gid.then(|| f[3].parse().ok()).flatten()))
            })
            .ok_or_else(|| format!("{what} {spec:?}: {name:?} is not in {whose}'s /etc/{file}"))
    };
    let numeric = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (uid, primary) = match numeric(user) {
        Some(uid) => (uid, None),
        None => lookup("passwd", user, true)?,
    };
    let gid = match group {
        Some(g) => match numeric(g) {
            Some(gid) => gid,
            None => lookup("group", g, false)?.0,
        },
        None => primary.unwrap_or(0),
    };
    Ok(User { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn only_a_regular_file_of_bounded_size_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // As Running opens it: a fifo with no writer neither blocks the open nor the read.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(OFlags::NONBLOCK.bits() as i32)
            .open(&fifo)
            .unwrap();
        assert_eq!(read_capped(f).unwrap_err(), "not a regular file");
        let big = tmp.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_ACCOUNTS_FILE + 1)
            .unwrap();
        let err = read_capped(std::fs::File::open(&big).unwrap()).unwrap_err();
        assert!(err.starts_with("larger than 4 MiB"), "{err}");
        std::fs::write(tmp.path().join("passwd"), "app:x:7:8::/:/bin/sh\n").unwrap();
        let text = read_capped(std::fs::File::open(tmp.path().join("passwd")).unwrap());
        assert_eq!(text.unwrap(), "app:x:7:8::/:/bin/sh\n");
    }

    #[test]
    fn names_are_read_only_from_the_containers_own_init() {
        // This test's process is no container's init: a name is refused unread (the exec
        // tests resolve names in real containers); numbers need no file.
        let other = Running {
            pid: std::process::id() as i32,
            container_id: "rcd-not-this-one-1",
        };
        assert_eq!(
            resolve("7:8", "exec -u", &other),
            Ok(User { uid: 7, gid: 8 })
        );
        let refused = resolve("root", "exec -u", &other);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("no longer the init of container rcd-not-this-one-1")),
            "{refused:?}"
        );
    }
}
