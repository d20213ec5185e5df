//! `openat2` with its `EAGAIN` retried: the kernel's answer when a rename anywhere raced a
//! `RESOLVE_IN_ROOT`/`RESOLVE_BENEATH` lookup through `..`. The retries are bounded, so a
//! container renaming in a loop gets an error, never a spinning daemon thread.

use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// How many times a lookup is tried before `EAGAIN` is the answer.
const TRIES: usize = 128;

/// `openat2(dir, path, flags, 0, resolve)`, retried on `EAGAIN` up to `TRIES` times.
pub fn openat2<P: rustix::path::Arg + Copy>(
    dir: BorrowedFd<'_>,
    path: P,
    flags: OFlags,
    resolve: ResolveFlags,
) -> rustix::io::Result<OwnedFd> {
    let mut last = Errno::AGAIN;
    for _ in 0..TRIES {
        match rustix::fs::openat2(dir, path, flags, Mode::empty(), resolve) {
            Err(Errno::AGAIN) => last = Errno::AGAIN,
            r => return r,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn opens_in_root_and_reports_other_errors_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink("/f", dir.path().join("abs")).unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        // An absolute link resolves inside the root.
        assert!(openat2(root.as_fd(), "abs", flags, ResolveFlags::IN_ROOT).is_ok());
        assert_eq!(
            openat2(root.as_fd(), "missing", flags, ResolveFlags::IN_ROOT).unwrap_err(),
            Errno::NOENT
        );
    }
}
