//! Users as Docker writes them ("uid", "uid:gid", "name", "name:group") turned into numbers,
//! with the names looked up in an /etc/passwd and /etc/group: an image's (its top-most layer
//! that has one) or a running container's (`docker exec -u`).

use std::io::Read;
use std::os::fd::AsFd;
use std::path::PathBuf;

use rustix::fs::{Mode, OFlags, ResolveFlags};

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
        Some(std::fs::read_to_string(&path).map_err(|e| e.to_string()))
    }
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
        let opened = rustix::fs::openat2(
            dir.as_fd(),
            format!("etc/{file}"),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        );
        match opened {
            Err(rustix::io::Errno::NOENT) => None,
            Err(e) => Some(Err(std::io::Error::from(e).to_string())),
            Ok(fd) => {
                let mut text = String::new();
                Some(
                    std::fs::File::from(fd)
                        .read_to_string(&mut text)
                        .map(|_| text)
                        .map_err(|e| e.to_string()),
                )
            }
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
