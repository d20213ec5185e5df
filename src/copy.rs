//! Copying between a running container and the host (`rctl cp`, as `docker cp`): a path and a
//! directory descriptor in, a tar stream out, walked through descriptors; the path rules both
//! ends share (cleaning, the archive's top name); and the resolution of a container path inside
//! its root. Archives are applied by the layer unpacker's engine ([`crate::image::layer::apply`]).
//!
//! The container's side never reads or writes through a path the host resolves: its root is
//! `/proc/<init pid>/root`, every path below it is opened with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`, and the walk opens each entry relative to its directory's
//! descriptor with `O_NOFOLLOW`, archiving a symlink as a symlink. A symlink in the container
//! to `/etc/shadow` is therefore the container's `/etc/shadow`, or a link in the archive;
//! never the host's file.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path does not exist.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The path, as asked.
        path: String,
    },
    /// A path that must be a directory is not one.
    #[error("{path}: not a directory")]
    NotDir {
        /// The path, as asked.
        path: String,
    },
    /// A name that must be one path component is not (`as` names the archive's top entry).
    #[error("{name:?} is not a file name (one component, not \"..\")")]
    BadName {
        /// The name.
        name: String,
    },
    /// A tree nested deeper than [`MAX_DEPTH`] directories (each level holds a descriptor).
    #[error("{path}: nested deeper than {MAX_DEPTH} directories")]
    TooDeep {
        /// The directory at the limit, in the archive.
        path: String,
    },
    /// Opening, reading or archiving failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The path (in the archive, or as asked).
        path: String,
        /// What was being done.
        op: &'static str,
        /// The cause.
        source: io::Error,
    },
}

/// What a path is, as `rctl cp` needs to know before copying (Docker's container path stat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStat {
    /// Its last component (`/` for the root).
    pub name: String,
    /// `file`, `dir`, `symlink` or `other` (the symlink itself: never followed).
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o644`), with setuid, setgid and sticky.
    pub mode: u32,
    /// Last modification, seconds since the epoch.
    pub mtime: i64,
    /// A symlink's target, as written; empty otherwise.
    pub link_target: String,
}

impl PathStat {
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == "dir"
    }

    /// Whether it is a symlink.
    pub fn is_symlink(&self) -> bool {
        self.kind == "symlink"
    }
}

/// A container path cleaned as `docker cp` does (`filepath.Clean` below `/`): absolute, no `.`,
/// `..` or empty components, `..` at the root staying there. Cleaning is lexical, before any
/// symlink is met; the kernel resolves what is left inside the root.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The parent and last component of a cleaned path; the root is (`/`, `.`).
pub fn split(clean: &str) -> (&str, &str) {
    match clean.rsplit_once('/') {
        Some((_, "")) | None => ("/", "."),
        Some(("", base)) => ("/", base),
        Some((parent, base)) => (parent, base),
    }
}

/// Whether `path` as written asks for a directory's contents rather than the directory
/// (`SRC/.`, docker cp's rule), or names a directory (`DEST/`).
pub fn contents_of(path: &str) -> bool {
    path == "." || path.ends_with("/.")
}

/// Checks `name` for the archive's top entry: one component (or `.`, the contents).
pub fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Error::BadName { name: name.into() });
    }
    Ok(())
}

/// A symlink's target seen from the link at `link` (a cleaned container path): an absolute
/// target as it is, a relative one joined to the link's directory; cleaned.
pub fn link_destination(link: &str, target: &str) -> String {
    if target.starts_with('/') {
        clean(target)
    } else {
        clean(&format!("{}/{target}", split(link).0))
    }
}

/// Opens a running container's root: `/proc/<pid>/root` of its init, once `/proc/<pid>` is
/// known to be in container `container_id`'s cgroup (the record's pid may have ended and been
/// reused since it was read).
pub fn container_root(pid: i32, container_id: &str) -> io::Result<OwnedFd> {
    if container_id.is_empty() {
        // An empty id would match any cgroup path's empty first component.
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the container's id is not known",
        ));
    }
    // The /proc entry pins the process: should the init end and its pid be reused, what is
    // opened through this descriptor fails rather than reaching the new process.
    let proc_dir = rustix::fs::open(
        Path::new("/proc").join(pid.to_string()),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let cgroup = rustix::fs::openat(
        &proc_dir,
        "cgroup",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut text = String::new();
    io::Read::read_to_string(&mut std::fs::File::from(cgroup), &mut text)?;
    if !in_cgroup_of(&text, container_id) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("pid {pid} is no longer the init of container {container_id}"),
        ));
    }
    rustix::fs::openat(
        &proc_dir,
        "root",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Whether `/proc/PID/cgroup`'s `text` puts the process in container `id`'s cgroup: a path
/// component named for it (cgroupfs) or its systemd scope.
fn in_cgroup_of(text: &str, id: &str) -> bool {
    let scope = format!("{id}.scope");
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .any(|path| path.split('/').any(|c| c == id || c == scope))
}

/// Opens the directory `path` (cleaned) below `root` as if `root` were `/`: symlinks, even
/// absolute or climbing ones, resolve inside it.
pub fn open_dir_in_root(root: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, Error> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    crate::openat::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| from_errno(e, path, "opening the directory"))
}

/// `path`'s parent opened inside `root` and its last component: what [`stat`] and [`archive`]
/// take. The last component is never followed.
pub fn locate(root: BorrowedFd<'_>, path: &str) -> Result<(OwnedFd, OsString), Error> {
    let (parent, base) = split(path);
    let dir = open_dir_in_root(root, parent)?;
    Ok((dir, OsString::from(base)))
}

/// What `name` in `dir` is, not following a symlink there; `shown` names it in errors.
pub fn stat(dir: BorrowedFd<'_>, name: &OsStr, shown: &str) -> Result<PathStat, Error> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| from_errno(e, shown, "stat"))?;
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => "file",
        FileType::Directory => "dir",
        FileType::Symlink => "symlink",
        _ => "other",
    };
    let link_target = if kind == "symlink" {
        let target = rustix::fs::readlinkat(dir, name, Vec::new())
            .map_err(|e| from_errno(e, shown, "reading the link"))?;
        String::from_utf8_lossy(target.as_bytes()).into_owned()
    } else {
        String::new()
    };
    let shown_name = match name.as_bytes() {
        b"." => "/".to_owned(),
        n => String::from_utf8_lossy(n).into_owned(),
    };
    Ok(PathStat {
        name: shown_name,
        kind: kind.into(),
        size: u64::try_from(st.st_size).unwrap_or(0),
        mode: st.st_mode & 0o7777,
        mtime: st.st_mtime,
        link_target,
    })
}

/// Writes `name` in `dir` to `out` as a tar stream whose top entry is called `top` (`.` for a
/// directory's contents), a directory with everything below it. Symlinks are archived as
/// symlinks, never followed; regular files, directories and fifos are kept with their mode,
/// owner and mtime; sockets and device nodes are left out (tar cannot hold a socket, and a
/// device copied out of a container is not a file). A file that changes size while it is read
/// is cut or padded to the size the header announced, so the archive stays well formed; an
/// entry that vanishes during the walk is left out. `shown` names the root in errors.
pub fn archive(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    top: &str,
    shown: &str,
    out: impl Write,
) -> Result<(), Error> {
    check_name(top)?;
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut walk = Walk {
        builder,
        buf: Vec::new(),
    };
    walk.run(dir, name, PathBuf::from(top))
        .map_err(|e| match e {
            Error::Io { path, op, source } if path == top => Error::Io {
                path: shown.into(),
                op,
                source,
            },
            Error::NotFound { .. } => Error::NotFound { path: shown.into() },
            e => e,
        })?;
    walk.builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|source| Error::Io {
            path: shown.into(),
            op: "writing the archive",
            source,
        })
}

/// How deep a copied tree may nest: far beyond real trees, and a bound on the directory
/// descriptors a walk holds open (one a level).
pub const MAX_DEPTH: usize = 4096;

struct Walk<W: Write> {
    builder: tar::Builder<W>,
    buf: Vec<u8>,
}

/// An entry still to archive: `name` in `parent` (None: the directory the copy starts in),
/// archived as `at`, `depth` directories below the top.
struct Pending {
    parent: Option<Rc<OwnedFd>>,
    name: OsString,
    at: PathBuf,
    depth: usize,
}

/// A directory just archived: its descriptor and its entries' names, sorted.
type Listing = (OwnedFd, Vec<OsString>);

impl<W: Write> Walk<W> {
    /// Archives `name` in `dir` as `at` and everything below it, depth first in name order.
    /// A work list, not recursion: a tree a container nests 100,000 deep must not overflow
    /// the stack of the daemon's thread.
    fn run(&mut self, dir: BorrowedFd<'_>, name: &OsStr, at: PathBuf) -> Result<(), Error> {
        let mut pending = vec![Pending {
            parent: None,
            name: name.to_owned(),
            at,
            depth: 0,
        }];
        while let Some(p) = pending.pop() {
            let parent = p.parent.as_ref().map_or(dir, |fd| fd.as_fd());
            let Some((fd, names)) = self.entry(parent, &p.name, &p.at, p.parent.is_none())? else {
                continue;
            };
            if names.is_empty() {
                continue;
            }
            if p.depth >= MAX_DEPTH {
                return Err(Error::TooDeep {
                    path: p.at.display().to_string(),
                });
            }
            let fd = Rc::new(fd);
            // Reversed: the stack pops them in name order, so the same tree gives the same
            // archive.
            for n in names.into_iter().rev() {
                pending.push(Pending {
                    parent: Some(Rc::clone(&fd)),
                    at: p.at.join(&n),
                    name: n,
                    depth: p.depth + 1,
                });
            }
        }
        Ok(())
    }

    /// Archives `name` in `dir` as `at` alone; for a directory, returns it opened with its
    /// entries' names. `top` for the root of the copy, whose absence is an error rather than
    /// a race to ignore.
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        at: &Path,
        top: bool,
    ) -> Result<Option<Listing>, Error> {
        let shown = at.display().to_string();
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) if !top => return Ok(None),
            r => r.map_err(|e| from_errno(e, &shown, "stat"))?,
        };
        let mut header = tar::Header::new_gnu();
        header.set_mode(st.st_mode & 0o7777);
        header.set_uid(u64::from(st.st_uid));
        header.set_gid(u64::from(st.st_gid));
        header.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        header.set_size(0);
        let io = |op: &'static str| {
            let shown = shown.clone();
            move |source: io::Error| Error::Io {
                path: shown,
                op,
                source,
            }
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Symlink => {
                let target = match rustix::fs::readlinkat(dir, name, std::mem::take(&mut self.buf))
                {
                    Err(Errno::NOENT) if !top => return Ok(None),
                    r => r.map_err(|e| from_errno(e, &shown, "reading the link"))?,
                };
                header.set_entry_type(tar::EntryType::Symlink);
                let target = OsStr::from_bytes(target.as_bytes());
                self.builder
                    .append_link(&mut header, at, target)
                    .map_err(io("writing the archive"))?;
                Ok(None)
            }
            FileType::RegularFile => {
                // NOFOLLOW: a file swapped for a symlink since the stat is not read through.
                let fd = match open_nofollow(dir, name, OFlags::empty()) {
                    Err(Errno::NOENT) if !top => return Ok(None),
                    Err(Errno::LOOP) => return Ok(None),
                    r => r.map_err(|e| from_errno(e, &shown, "opening the file"))?,
                };
                let st = rustix::fs::fstat(&fd).map_err(|e| from_errno(e, &shown, "stat"))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    return Ok(None);
                }
                let size = u64::try_from(st.st_size).unwrap_or(0);
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(size);
                let data = std::fs::File::from(fd)
                    .take(size)
                    .chain(io::repeat(0))
                    .take(size);
                self.builder
                    .append_data(&mut header, at, data)
                    .map_err(io("writing the archive"))?;
                Ok(None)
            }
            FileType::Directory => {
                let fd = match open_nofollow(dir, name, OFlags::DIRECTORY) {
                    Err(Errno::NOENT) if !top => return Ok(None),
                    Err(Errno::LOOP | Errno::NOTDIR) => return Ok(None),
                    r => r.map_err(|e| from_errno(e, &shown, "opening the directory"))?,
                };
                header.set_entry_type(tar::EntryType::Directory);
                self.builder
                    .append_data(&mut header, at, io::empty())
                    .map_err(io("writing the archive"))?;
                let mut names = Vec::new();
                for entry in Dir::read_from(&fd).map_err(|e| from_errno(e, &shown, "listing"))? {
                    let entry = entry.map_err(|e| from_errno(e, &shown, "listing"))?;
                    let n = entry.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        names.push(OsString::from(OsStr::from_bytes(n)));
                    }
                }
                names.sort();
                Ok(Some((fd, names)))
            }
            FileType::Fifo => {
                header.set_entry_type(tar::EntryType::Fifo);
                self.builder
                    .append_data(&mut header, at, io::empty())
                    .map_err(io("writing the archive"))?;
                Ok(None)
            }
            _ => {
                tracing::debug!(path = %shown, "not copied: a socket or device node");
                Ok(None)
            }
        }
    }
}

/// Bytes per chunk of a tar stream sent over HTTP.
const CHUNK: usize = 64 * 1024;

/// A writer that sends what it is given, in chunks, to a bounded channel feeding an HTTP body
/// (the daemon's answer, or rctl's request): the channel holds the walk back while the other
/// end is slow, and an end gone stops it (a write fails).
pub struct Chunks {
    tx: tokio::sync::mpsc::Sender<io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl Chunks {
    /// A writer into `tx`. Call it from a blocking thread, never from the async runtime.
    pub fn new(tx: tokio::sync::mpsc::Sender<io::Result<bytes::Bytes>>) -> Self {
        Chunks {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk.into()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the other end went away"))
    }
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Opens `name` in `dir` for reading, never following a symlink there (and never blocking on a
/// fifo swapped in).
fn open_nofollow(dir: BorrowedFd<'_>, name: &OsStr, extra: OFlags) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | extra,
        Mode::empty(),
    )
}

/// An `openat`-family error on `path` while doing `op`: missing and not-a-directory are
/// told apart, since the API answers them with their own status.
pub fn from_errno(e: Errno, path: &str, op: &'static str) -> Error {
    match e {
        Errno::NOENT => Error::NotFound { path: path.into() },
        Errno::NOTDIR => Error::NotDir { path: path.into() },
        e => Error::Io {
            path: path.into(),
            op,
            source: e.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_counts_as_the_containers_only_in_its_cgroup() {
        let id = "rcd-ab-web-1";
        assert!(in_cgroup_of("0::/rcd.slice/rcd-ab-web-1.scope\n", id));
        assert!(in_cgroup_of(
            "4:memory:/rcd-ab/rcd-ab-web-1\n1:name=systemd:/x\n",
            id
        ));
        assert!(!in_cgroup_of("0::/rcd.slice/rcd-ab-web-1-5.scope\n", id));
        assert!(!in_cgroup_of("0::/rcd-ab/rcd-ab-web-10\n", id));
        assert!(!in_cgroup_of("0::/user.slice/session-1.scope\n", id));
        let me = std::process::id() as i32;
        assert!(container_root(me, "").is_err());
    }

    #[test]
    fn paths_clean_below_the_root() {
        for (raw, want) in [
            ("/", "/"),
            ("", "/"),
            ("etc", "/etc"),
            ("/etc/", "/etc"),
            ("/etc/.", "/etc"),
            ("//etc///passwd", "/etc/passwd"),
            ("/../../etc/shadow", "/etc/shadow"),
            ("/a/b/../c", "/a/c"),
            ("../..", "/"),
        ] {
            assert_eq!(clean(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn split_gives_parent_and_name() {
        for (path, want) in [
            ("/", ("/", ".")),
            ("/etc", ("/", "etc")),
            ("/etc/passwd", ("/etc", "passwd")),
            ("/a/b/c", ("/a/b", "c")),
        ] {
            assert_eq!(split(path), want, "{path:?}");
        }
    }

    #[test]
    fn contents_and_names() {
        assert!(contents_of("/data/."));
        assert!(contents_of("."));
        assert!(!contents_of("/data"));
        assert!(!contents_of("/data/.hidden"));
        for ok in ["file", ".", ".hidden", "a b"] {
            assert!(check_name(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "..", "a/b", "/x", "a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn link_targets_resolve_from_the_links_directory() {
        for (link, target, want) in [
            ("/etc/link", "/etc/shadow", "/etc/shadow"),
            ("/etc/link", "shadow", "/etc/shadow"),
            ("/etc/link", "../tmp/x", "/tmp/x"),
            ("/link", "../../../x", "/x"),
            ("/a/b/link", "./c/", "/a/b/c"),
        ] {
            assert_eq!(link_destination(link, target), want, "{link} -> {target}");
        }
    }

    /// `levels` directories named `d`, one in the other, below `top`.
    fn nest(top: &Path, levels: usize) {
        let mut dir =
            rustix::fs::open(top, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..levels {
            rustix::fs::mkdirat(&dir, "d", Mode::from_raw_mode(0o755)).unwrap();
            dir = rustix::fs::openat(&dir, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .unwrap();
        }
    }

    #[test]
    fn a_deep_tree_is_archived_without_recursion_up_to_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let root = rustix::fs::open(
            tmp.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        // Deeper than the stack of a recursive walk would take, within the limit.
        std::fs::create_dir(tmp.path().join("ok")).unwrap();
        nest(&tmp.path().join("ok"), MAX_DEPTH);
        let mut out = Vec::new();
        archive(root.as_fd(), OsStr::new("ok"), "ok", "ok", &mut out).unwrap();
        let entries = tar::Archive::new(out.as_slice()).entries().unwrap().count();
        assert_eq!(entries, MAX_DEPTH + 1);
        // One more level is refused with an error, not a crash.
        std::fs::create_dir(tmp.path().join("deep")).unwrap();
        nest(&tmp.path().join("deep"), MAX_DEPTH + 1);
        let err = archive(root.as_fd(), OsStr::new("deep"), "deep", "deep", io::sink());
        assert!(
            matches!(err, Err(Error::TooDeep { .. })),
            "{:?}",
            err.map(|_| ())
        );
    }

    #[test]
    fn an_archive_keeps_symlinks_as_links_and_files_with_their_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("file"), b"hello").unwrap();
        std::fs::set_permissions(
            src.join("file"),
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/shadow", src.join("shadow")).unwrap();
        let dir = rustix::fs::open(
            tmp.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let mut out = Vec::new();
        archive(dir.as_fd(), OsStr::new("src"), "copy", "src", &mut out).unwrap();
        let mut seen = Vec::new();
        for e in tar::Archive::new(out.as_slice()).entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let kind = e.header().entry_type();
            let mode = e.header().mode().unwrap();
            let link = e.link_name().unwrap().map(|l| l.display().to_string());
            let mut data = String::new();
            e.read_to_string(&mut data).unwrap();
            seen.push((path, kind, mode, link, data));
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen[0].0, "copy");
        assert_eq!(
            (seen[1].0.as_str(), seen[1].2, seen[1].4.as_str()),
            ("copy/file", 0o640, "hello")
        );
        assert_eq!(seen[2].1, tar::EntryType::Symlink);
        assert_eq!(seen[2].3.as_deref(), Some("/etc/shadow"));
        assert_eq!(seen[2].4, "");
        let missing = archive(dir.as_fd(), OsStr::new("nope"), "x", "/nope", io::sink());
        assert!(matches!(missing, Err(Error::NotFound { path }) if path == "/nope"));
    }

    /// A tar stream with `entries`: (path, regular file content or `None` for a directory).
    fn tar_of(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match data {
                Some(data) => {
                    h.set_size(data.len() as u64);
                    h.set_entry_type(tar::EntryType::Regular);
                    // set_path refuses "..": written raw, as a hostile client would.
                    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    b.append_data(&mut h, path, io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn an_archive_applied_in_a_root_stays_in_it_through_absolute_and_climbing_links() {
        use crate::image::layer::{apply, Limits, Target};
        let tmp = tempfile::tempdir().unwrap();
        // The host file the container's links name by absolute path.
        let host = tmp.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("sentinel"), b"host").unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::create_dir_all(root.join("host")).unwrap();
        let abs = |p: &str| format!("{}{p}", tmp.path().display());
        std::os::unix::fs::symlink(abs("/host"), root.join("linkdir")).unwrap();
        std::os::unix::fs::symlink("../../../../host", root.join("data/climb")).unwrap();
        let open_root =
            || rustix::fs::open(&root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();

        // The destination itself a link to the host's directory: resolved in the root.
        let missing = Target::in_root(open_root(), "/linkdir", Some((0, 0))).err();
        assert_eq!(
            missing,
            Some(Errno::NOENT),
            "the link's target is not in the root"
        );
        std::fs::create_dir_all(root.join(abs("/host").trim_start_matches('/'))).unwrap();
        let target = Target::in_root(open_root(), "/linkdir", None).unwrap();
        let tar = tar_of(&[("sentinel", Some(b"in the root"))]);
        apply(tar.as_slice(), target, &Limits::default()).unwrap();
        // A parent that climbs out, below the destination.
        let target = Target::in_root(open_root(), "/data", None).unwrap();
        let tar = tar_of(&[("climb/sentinel", Some(b"climbed"))]);
        apply(tar.as_slice(), target, &Limits::default()).unwrap();

        assert_eq!(std::fs::read(host.join("sentinel")).unwrap(), b"host");
        let inside = root.join(abs("/host/sentinel").trim_start_matches('/'));
        assert_eq!(
            std::fs::read(root.join("host/sentinel")).unwrap(),
            b"climbed"
        );
        assert_eq!(std::fs::read(inside).unwrap(), b"in the root");

        // "..": refused before anything is written.
        let target = Target::in_root(open_root(), "/data", None).unwrap();
        let tar = tar_of(&[("../../host/sentinel", Some(b"escaped"))]);
        let err = apply(tar.as_slice(), target, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, crate::image::layer::Error::Escape { .. }),
            "{err}"
        );
        assert_eq!(std::fs::read(host.join("sentinel")).unwrap(), b"host");
    }
}
