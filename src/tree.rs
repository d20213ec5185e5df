//! Directory trees that containers made (writable layers, volumes, unpacked layers), measured
//! and removed without recursion and with two descriptors at most: a tree nested 100,000
//! deep must neither overflow the daemon's stack (std's `remove_dir_all` recurses, and does)
//! nor use up its descriptors. The walk goes down by descriptor and back up through `..`,
//! checked against the directory it came from, so it never follows a symlink and never
//! leaves the tree.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Removes the directory `path` and everything below it; a symlink or file at `path` is
/// removed itself. Entries that vanish meanwhile are not errors; `path` missing is
/// (`NotFound`, as `std::fs::remove_dir_all`).
pub fn remove(path: &Path) -> io::Result<()> {
    let not_a_dir = [Errno::NOTDIR, Errno::LOOP].map(|e| Some(e.raw_os_error()));
    match walk(path, &mut Remove) {
        Ok(()) => std::fs::remove_dir(path),
        // Not a directory, or a symlink (refused by O_NOFOLLOW): the entry itself goes.
        Err(e) if not_a_dir.contains(&e.raw_os_error()) => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}

/// Bytes of the regular files below the directory `path` (links not followed); 0 if it
/// cannot be read.
pub fn size(path: &Path) -> u64 {
    let mut sum = Size(0);
    let _ = walk(path, &mut sum);
    sum.0
}

/// What a walk does with what it meets.
trait Visit {
    /// `name` in `dir`, not a directory.
    fn other(&mut self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()>;
    /// Directory `name` in `parent`, after everything below it.
    fn done(&mut self, parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()>;
}

struct Remove;

impl Visit for Remove {
    fn other(&mut self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn done(&mut self, parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

struct Size(u64);

impl Visit for Size {
    fn other(&mut self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        if let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile {
                self.0 += u64::try_from(st.st_size).unwrap_or(0);
            }
        }
        Ok(())
    }

    fn done(&mut self, _: BorrowedFd<'_>, _: &OsStr) -> io::Result<()> {
        Ok(())
    }
}

/// A directory on the way down: its name in its parent, its identity (to check the way back
/// up), and its subdirectories still to visit.
struct Level {
    name: OsString,
    id: (u64, u64),
    pending: Vec<OsString>,
}

fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn id_of(fd: &OwnedFd) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Lists `dir`: what is not a directory goes to `visit` at once (after the listing, so that
/// removing does not disturb it); the subdirectories are returned.
fn list(dir: &OwnedFd, visit: &mut impl Visit) -> io::Result<Vec<OsString>> {
    let (mut subdirs, mut others) = (Vec::new(), Vec::new());
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsString::from(OsStr::from_bytes(name));
        let is_dir = match entry.file_type() {
            FileType::Directory => true,
            FileType::Unknown => rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory),
            _ => false,
        };
        if is_dir {
            subdirs.push(name);
        } else {
            others.push(name);
        }
    }
    for name in others {
        visit.other(dir.as_fd(), &name)?;
    }
    Ok(subdirs)
}

/// Visits everything below the directory `top`, depth first, each directory after its
/// contents (`top` itself is left to the caller).
fn walk(top: &Path, visit: &mut impl Visit) -> io::Result<()> {
    let mut cur = rustix::fs::open(
        top,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut levels = vec![Level {
        name: OsString::new(),
        id: id_of(&cur)?,
        pending: list(&cur, visit)?,
    }];
    while let Some(level) = levels.last_mut() {
        if let Some(child) = level.pending.pop() {
            match open_dir(cur.as_fd(), &child) {
                Ok(fd) => {
                    let id = id_of(&fd)?;
                    let pending = list(&fd, visit)?;
                    cur = fd;
                    levels.push(Level {
                        name: child,
                        id,
                        pending,
                    });
                }
                // Gone since the listing, or no longer a directory.
                Err(Errno::NOENT) => {}
                Err(Errno::NOTDIR | Errno::LOOP) => visit.other(cur.as_fd(), &child)?,
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        let Some(done) = levels.pop() else { break };
        let Some(parent) = levels.last() else { break };
        let up = rustix::fs::openat(
            &cur,
            "..",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        if id_of(&up)? != parent.id {
            return Err(io::Error::other(format!(
                "{}: a directory was moved during the walk",
                top.display()
            )));
        }
        cur = up;
        visit.done(cur.as_fd(), &done.name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `levels` directories named `d`, one in the other, below `top`, a file at the bottom.
    fn nest(top: &Path, levels: usize) {
        let mut dir =
            rustix::fs::open(top, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..levels {
            rustix::fs::mkdirat(&dir, "d", Mode::from_raw_mode(0o755)).unwrap();
            dir = open_dir(dir.as_fd(), OsStr::new("d")).unwrap();
        }
        let f = rustix::fs::openat(
            &dir,
            "f",
            OFlags::CREATE | OFlags::WRONLY,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        rustix::io::write(&f, b"12345").unwrap();
    }

    #[test]
    fn a_tree_deeper_than_any_stack_is_measured_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("deep");
        std::fs::create_dir(&top).unwrap();
        // Deep enough that a recursive walk would overflow this thread's 256 KiB stack.
        nest(&top, 20_000);
        let t = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || (size(&top), remove(&top), top.exists()))
            .unwrap();
        let (bytes, removed, left) = t.join().unwrap();
        assert_eq!(bytes, 5);
        removed.unwrap();
        assert!(!left);
    }

    #[test]
    fn links_are_removed_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"k").unwrap();
        let top = tmp.path().join("tree");
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        std::fs::write(top.join("a/b/file"), b"123").unwrap();
        std::fs::write(top.join("file"), b"1").unwrap();
        std::os::unix::fs::symlink(&outside, top.join("a/link")).unwrap();
        std::os::unix::fs::symlink(&outside, tmp.path().join("top-link")).unwrap();
        assert_eq!(size(&top), 4);
        remove(&top).unwrap();
        assert!(!top.exists());
        // A link given as the tree is removed itself.
        remove(&tmp.path().join("top-link")).unwrap();
        assert!(outside.join("keep").exists());
        assert_eq!(
            remove(&tmp.path().join("missing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
