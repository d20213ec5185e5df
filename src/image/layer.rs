//! Layer unpacking: an untrusted OCI/Docker layer tar stream (gzip, zstd or plain) in, a
//! directory ready to be an overlayfs lower layer and the layer's DiffID out. The same engine
//! applies `rctl cp`'s archives inside a running container ([`Target::in_root`]).
//!
//! Containment does not rest on path checks: every parent directory is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` relative to a
//! descriptor of the destination, so the kernel refuses any resolution that leaves it, and the
//! last component is created with `*at` calls on that parent that never follow a symlink.
//! Whiteouts are converted to overlayfs's form (0/0 character devices, the
//! `trusted.overlay.opaque` xattr) because rcd mounts layers as overlay lower directories.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

/// Bounds on what one layer may contain; exceeding any of them fails the unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Tar members (files, directories, links, whiteouts, PAX global headers).
    pub max_entries: u64,
    /// Decompressed bytes of the whole stream, tar headers and padding included.
    pub max_bytes: u64,
    /// Bytes of a member's path or link target, as written in the archive.
    pub max_path_len: usize,
}

impl Default for Limits {
    /// 1,000,000 entries, 64 GiB, 4096-byte paths (Linux's PATH_MAX).
    fn default() -> Self {
        Limits {
            max_entries: 1_000_000,
            max_bytes: 64 << 30,
            max_path_len: 4096,
        }
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip, possibly several concatenated members.
    Gzip,
    /// zstd, possibly several frames.
    Zstd,
}

impl Compression {
    /// The compression a layer media type announces (OCI and Docker, distributable or not), or
    /// `None` for a media type that is not a layer. [`unpack`] sniffs the stream itself, so a
    /// registry that mislabels a blob still unpacks; this is for reporting and validation.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        // Parameters such as "; charset" are not part of the type.
        let media_type = media_type.split(';').next().unwrap_or("").trim();
        const LAYER_TYPES: [&str; 4] = [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.docker.image.rootfs.diff.tar",
            "application/vnd.docker.image.rootfs.foreign.diff.tar",
        ];
        let (base, suffix) = LAYER_TYPES
            .iter()
            .find_map(|t| media_type.strip_prefix(t).map(|rest| (t, rest)))?;
        let docker = base.starts_with("application/vnd.docker");
        match suffix {
            "" => Some(Compression::None),
            "+gzip" if !docker => Some(Compression::Gzip),
            ".gzip" if docker => Some(Compression::Gzip),
            "+zstd" if !docker => Some(Compression::Zstd),
            ".zstd" if docker => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The compression of a stream that starts with `prefix` (at least 4 bytes for a certain
    /// answer): gzip and zstd by their magic numbers, anything else is taken as plain tar.
    pub fn detect(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
            // A skippable frame (magic 0x184D2A5?, little-endian) may lead a zstd stream.
            || (prefix.len() >= 4 && prefix[0] & 0xf0 == 0x50 && prefix[1..4] == [0x2a, 0x4d, 0x18])
        {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// What an unpack produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// `sha256:<hex>` of the whole decompressed stream, including whatever follows the tar's
    /// end-of-archive marker: the image config's `rootfs.diff_ids` entry for this layer.
    pub diff_id: String,
    /// Decompressed bytes read.
    pub size: u64,
    /// Tar members processed (after GNU long-name and PAX headers are folded into their member).
    pub entries: u64,
}

/// Why a layer could not be unpacked. The destination holds partial output; the caller removes it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The destination is unusable: missing, not a directory, a symlink, or not empty.
    #[error("layer destination {}: {reason}", path.display())]
    Dest {
        /// The destination directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The stream could not be read, decompressed or parsed as tar.
    #[error("reading the layer stream failed {at}: {source}")]
    Read {
        /// Where in the stream ("at the start", "after entry \"x\"", ...).
        at: String,
        /// The cause.
        source: io::Error,
    },
    /// The stream is in a form this unpacker does not take (xz, bzip2, bad header fields).
    #[error("unsupported layer: {0}")]
    Format(String),
    /// An entry would write outside the destination: a `..` component, or a parent or hard
    /// link target that leads out through a symlink.
    #[error("layer entry {entry:?} escapes the layer directory: {reason}")]
    Escape {
        /// The entry's path as written in the archive.
        entry: String,
        /// How it escapes.
        reason: String,
    },
    /// An entry that a layer may not contain: a device node, a hard link to something that is
    /// not an earlier entry, a malformed whiteout, an unknown member type.
    #[error("layer entry {entry:?} is not allowed: {reason}")]
    Rejected {
        /// The entry's path as written in the archive.
        entry: String,
        /// Why.
        reason: String,
    },
    /// A [`Limits`] bound was exceeded.
    #[error("layer exceeds the limit on {what} ({limit})")]
    Limit {
        /// Which bound.
        what: &'static str,
        /// Its value.
        limit: u64,
    },
    /// A filesystem operation on an entry failed.
    #[error("layer entry {entry:?}: {op} failed: {source}")]
    Io {
        /// The entry's path as written in the archive.
        entry: String,
        /// What was being done.
        op: &'static str,
        /// The cause.
        source: io::Error,
    },
}

/// Unpacks the layer tar stream `input` into `dest` and returns its DiffID.
///
/// `dest` must be an existing, empty directory that the caller just created; create it under a
/// root-only (0700) parent so that nothing else can reach the tree while it is incomplete. The
/// compression is detected from the stream's magic bytes. After the tar's end the stream is
/// read to EOF so that the DiffID covers all of it.
///
/// Entries are applied as Docker does (leading `/` stripped, a repeated path replaces the
/// earlier entry, ownership, mode, mtime and xattrs kept), with these refusals, each an error
/// that fails the whole layer: `..` components; a parent directory or hard link target that
/// resolves outside `dest` through a symlink (absolute or climbing above `dest`); hard links
/// to anything but an earlier entry of this layer; character and block devices; malformed
/// whiteouts; a replaced directory that is not empty; and anything beyond `limits`. Symlinks
/// themselves may point anywhere: they are resolved inside the container. Sockets cannot be
/// expressed in tar. `trusted.*` xattrs from the archive are dropped: they would steer the
/// overlay mount (redirects, opaque directories, metacopy) from untrusted input.
///
/// On error `dest` holds partial output and the caller must remove it (`remove_dir_all` does
/// not follow symlinks, so that is safe). The work is blocking; call it off the async runtime.
pub fn unpack(input: impl Read, dest: &Path, limits: &Limits) -> Result<Unpacked, Error> {
    let root = Rc::new(open_dest(dest)?);
    let target = Target {
        base: Rc::clone(&root),
        dest: root,
        prefix: Vec::new(),
        resolve: ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
        whiteouts: true,
        owner: None,
    };
    apply(input, target, limits)
}

/// Where an archive's entries go and how their paths resolve: a layer into its own empty
/// directory, or `rctl cp`'s archive into a directory of a running container.
pub struct Target {
    /// The base of every resolution: the layer directory, or the container's root.
    base: Rc<OwnedFd>,
    /// The directory the entries go in (the archive's `./`).
    dest: Rc<OwnedFd>,
    /// `dest`'s path below `base`, as given (empty: `base` itself).
    prefix: Vec<u8>,
    /// How paths resolve below `base`.
    resolve: ResolveFlags,
    /// `.wh.` entries become overlayfs whiteouts (layers) or stay plain files (a copy).
    whiteouts: bool,
    /// Every entry's owner, instead of the archive's.
    owner: Option<(Uid, Gid)>,
}

impl Target {
    /// Entries go in the directory `path` of the tree rooted at `root` (a container's
    /// `/proc/<pid>/root`), every path resolved as if `root` were `/` (`RESOLVE_IN_ROOT`), so
    /// a symlink in the tree, absolute or climbing, never leads out of it. `.wh.` names are
    /// plain files; `owner` replaces the archive's ownership when given. Fails with the
    /// `openat2` error when `path` is not a directory there.
    pub fn in_root(
        root: OwnedFd,
        path: &str,
        owner: Option<(u32, u32)>,
    ) -> rustix::io::Result<Target> {
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let prefix = path.trim_start_matches('/').as_bytes().to_vec();
        let dest = if prefix.is_empty() {
            rustix::io::dup(&root)?
        } else {
            resolve_at(root.as_fd(), &prefix, false, resolve)?
        };
        Ok(Target {
            base: Rc::new(root),
            dest: Rc::new(dest),
            prefix,
            resolve,
            whiteouts: false,
            owner: owner.map(|(u, g)| (Uid::from_raw(u), Gid::from_raw(g))),
        })
    }

    /// Entries go in the directory `dir` and stay below it: a parent that leads out through a
    /// symlink fails the entry (`RESOLVE_BENEATH`, as for layers). `.wh.` names are plain
    /// files; `owner` replaces the archive's ownership when given. For `rctl cp` on the host.
    pub fn beneath(dir: OwnedFd, owner: Option<(u32, u32)>) -> Target {
        let dir = Rc::new(dir);
        Target {
            base: Rc::clone(&dir),
            dest: dir,
            prefix: Vec::new(),
            resolve: ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            whiteouts: false,
            owner: owner.map(|(u, g)| (Uid::from_raw(u), Gid::from_raw(g))),
        }
    }

    /// Opens the directory `path` (below `dest`), following symlinks as `resolve` allows,
    /// but not in the last component when `nofollow` is set.
    fn open(&self, path: &[u8], nofollow: bool) -> rustix::io::Result<OwnedFd> {
        if self.prefix.is_empty() {
            return resolve_at(self.base.as_fd(), path, nofollow, self.resolve);
        }
        let mut full = self.prefix.clone();
        full.push(b'/');
        full.extend_from_slice(path);
        resolve_at(self.base.as_fd(), &full, nofollow, self.resolve)
    }
}

/// Applies the tar stream `input` (gzip, zstd or plain) to `target`, with [`unpack`]'s rules
/// (less the whiteouts and ownership where `target` says so). The work is blocking.
pub fn apply(mut input: impl Read, target: Target, limits: &Limits) -> Result<Unpacked, Error> {
    let mut magic = [0u8; 6];
    let got = read_prefix(&mut input, &mut magic).map_err(|source| Error::Read {
        at: "at the start".into(),
        source,
    })?;
    let magic = &magic[..got];
    if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(Error::Format(
            "xz-compressed layers are not supported".into(),
        ));
    }
    if magic.starts_with(b"BZh") {
        return Err(Error::Format(
            "bzip2-compressed layers are not supported".into(),
        ));
    }
    let compression = Compression::detect(magic);
    let raw = BufReader::with_capacity(BUF_SIZE, Cursor::new(magic.to_vec()).chain(input));
    let decoded: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(raw).map_err(
            |source| Error::Read {
                at: "at the start".into(),
                source,
            },
        )?),
    };

    let mut archive = tar::Archive::new(Hashing {
        inner: decoded,
        hasher: Sha256::new(),
        size: 0,
        limit: limits.max_bytes,
        exceeded: false,
    });
    let mut unpacker = Unpacker {
        target,
        limits,
        entries: 0,
        last: None,
        cache: None,
        dir_times: Vec::new(),
        buf: vec![0; BUF_SIZE],
    };
    let result = unpacker.run(&mut archive);
    let mut rest = archive.into_inner();
    // Whatever error surfaced, a stream that outgrew its byte limit is reported as that.
    let byte_limit = Error::Limit {
        what: "decompressed bytes",
        limit: limits.max_bytes,
    };
    if rest.exceeded {
        return Err(byte_limit);
    }
    result?;
    // The DiffID covers the whole decompressed stream: the tar's second zero block, padding
    // and anything a tool appended after it.
    if let Err(source) = io::copy(&mut rest, &mut io::sink()) {
        return Err(if rest.exceeded {
            byte_limit
        } else {
            Error::Read {
                at: "after the end of the archive".into(),
                source,
            }
        });
    }
    unpacker.finish()?;
    Ok(Unpacked {
        diff_id: format!("sha256:{}", hex::encode(rest.hasher.finalize())),
        size: rest.size,
        entries: unpacker.entries,
    })
}

/// Read buffer for the compressed input and for file contents.
const BUF_SIZE: usize = 128 * 1024;

/// The prefix of tar member names that overlayfs-style layers use for whiteouts.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Marks the directory holding it as opaque: lower layers' contents are hidden.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// aufs bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`), never part of the image's content.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Reads up to `buf.len()` bytes, fewer only at EOF: a pipe may deliver the magic in pieces.
fn read_prefix(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn open_dest(dest: &Path) -> Result<OwnedFd, Error> {
    let bad = |reason: String| Error::Dest {
        path: dest.to_path_buf(),
        reason,
    };
    // NOFOLLOW: a symlink swapped in for the destination must not redirect the whole layer.
    let fd = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR (or ELOOP on old kernels).
        Errno::LOOP | Errno::NOTDIR if dest.is_symlink() => bad("is a symlink".into()),
        Errno::NOTDIR => bad("is not a directory".into()),
        e => bad(io::Error::from(e).to_string()),
    })?;
    let dir = Dir::read_from(&fd).map_err(|e| bad(io::Error::from(e).to_string()))?;
    for entry in dir {
        let entry = entry.map_err(|e| bad(io::Error::from(e).to_string()))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Err(bad("is not empty".into()));
        }
    }
    Ok(fd)
}

/// Hashes and counts the decompressed stream on its way to the tar parser, and cuts it off at
/// the byte limit (a decompression bomb never reaches the disk in full).
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    limit: u64,
    exceeded: bool,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        if self.size > self.limit {
            self.exceeded = true;
            return Err(io::Error::other(
                "layer exceeds its decompressed size limit",
            ));
        }
        Ok(n)
    }
}

/// Ownership, mode, mtime and xattrs of one entry, from its header and PAX records.
struct Meta {
    mode: Mode,
    uid: Uid,
    gid: Gid,
    times: Timestamps,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The state of one unpack.
struct Unpacker<'l> {
    /// Where entries go and how their paths resolve.
    target: Target,
    limits: &'l Limits,
    entries: u64,
    /// The last entry seen, for locating stream errors.
    last: Option<String>,
    /// The last parent directory opened (tar streams list siblings together), dropped whenever
    /// anything is removed since a removed directory may be on its path.
    cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    /// Directory mtimes, applied at the end because creating entries inside changes them.
    dir_times: Vec<(Vec<u8>, Timestamps)>,
    buf: Vec<u8>,
}

impl Unpacker<'_> {
    fn run<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<(), Error> {
        let entries = archive.entries().map_err(|source| Error::Read {
            at: "at the start".into(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::Read {
                at: match &self.last {
                    Some(last) => format!("after entry {last:?}"),
                    None => "at the first entry".into(),
                },
                source,
            })?;
            self.entry(entry)?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), Error> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(Error::Limit {
                what: "entries",
                limit: self.limits.max_entries,
            });
        }
        let raw_path = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_path).into_owned();
        self.last = Some(name.clone());
        if raw_path.len() > self.limits.max_path_len {
            return Err(self.path_limit());
        }
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // Defaults for later members (comments, charsets); nothing rcd applies.
            return Ok(());
        }
        let comps = components(&raw_path, &name)?;
        let Some((&base, parents)) = comps.split_last() else {
            // "./" or "/": the layer's root directory; its metadata goes on dest.
            if !kind.is_dir() {
                return Err(rejected(
                    &name,
                    "only a directory may stand for the destination itself",
                ));
            }
            let meta = self.meta(&mut entry, &name)?;
            let root = Rc::clone(&self.target.dest);
            apply_fd(root.as_fd(), &meta, &name)?;
            self.dir_times.push((Vec::new(), meta.times));
            return Ok(());
        };
        if self.target.whiteouts {
            return self.layer_entry(entry, parents, base, &name);
        }
        self.plain_entry(entry, parents, base, &name)
    }

    /// What a layer's `.wh.` names mean (aufs bookkeeping, opaque directories, whiteouts);
    /// any other entry is a plain one.
    fn layer_entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        parents: &[&[u8]],
        base: &[u8],
        name: &str,
    ) -> Result<(), Error> {
        if parents.iter().any(|c| c.starts_with(AUFS_META_PREFIX))
            || (base.starts_with(AUFS_META_PREFIX) && base != OPAQUE_MARKER)
        {
            return Ok(());
        }
        if base == OPAQUE_MARKER {
            let dir = self.parent(parents, name, true)?;
            return rustix::fs::fsetxattr(
                dir.as_fd(),
                OVERLAY_OPAQUE_XATTR,
                b"y",
                XattrFlags::empty(),
            )
            .map_err(io_err(name, "setting trusted.overlay.opaque"));
        }
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(rejected(name, "whiteout of an invalid name"));
            }
            let meta = meta(&mut entry, name)?;
            return self.whiteout(parents, hidden, &meta, name);
        }
        self.plain_entry(entry, parents, base, name)
    }

    /// A file, directory, link or fifo.
    fn plain_entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        parents: &[&[u8]],
        base: &[u8],
        name: &str,
    ) -> Result<(), Error> {
        let meta = self.meta(&mut entry, name)?;
        let kind = entry.header().entry_type();
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                self.file(parents, base, &mut entry, &meta, name)
            }
            T::Directory => self.dir(parents, base, &meta, name),
            T::Symlink => {
                let target = self.link_target(&entry, name)?;
                self.symlink(parents, base, &target, &meta, name)
            }
            T::Link => {
                let target = self.link_target(&entry, name)?;
                self.hardlink(parents, base, &target, name)
            }
            T::Fifo => self.fifo(parents, base, &meta, name),
            T::Char | T::Block => Err(rejected(name, "device nodes are not allowed")),
            other => Err(rejected(
                name,
                &format!("unsupported tar member type {:?}", other.as_byte() as char),
            )),
        }
    }

    /// The entry's metadata, with the target's owner in place of the archive's if it has one.
    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, Error> {
        let mut meta = meta(entry, name)?;
        if let Some((uid, gid)) = self.target.owner {
            (meta.uid, meta.gid) = (uid, gid);
        }
        Ok(meta)
    }

    fn path_limit(&self) -> Error {
        Error::Limit {
            what: "path length",
            limit: self.limits.max_path_len as u64,
        }
    }

    fn link_target<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        name: &str,
    ) -> Result<Vec<u8>, Error> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| rejected(name, "link without a target"))?
            .into_owned();
        if target.len() > self.limits.max_path_len {
            return Err(self.path_limit());
        }
        if target.is_empty() {
            return Err(rejected(name, "link with an empty target"));
        }
        Ok(target)
    }

    /// Opens the parent directory `parents` (components below dest), creating missing ones
    /// (0755, root-owned, as Docker does) when `create` is set.
    fn parent(
        &mut self,
        parents: &[&[u8]],
        name: &str,
        create: bool,
    ) -> Result<Rc<OwnedFd>, Error> {
        if parents.is_empty() {
            return Ok(Rc::clone(&self.target.dest));
        }
        let joined = parents.join(&b'/');
        if let Some((path, fd)) = &self.cache {
            if *path == joined {
                return Ok(Rc::clone(fd));
            }
        }
        let fd = match self.target.open(&joined, false) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => self.create_parents(parents, name)?,
            Err(e) => return Err(resolve_error(e, &joined, name, "its parent")),
        };
        let fd = Rc::new(fd);
        self.cache = Some((joined, Rc::clone(&fd)));
        Ok(fd)
    }

    fn create_parents(&self, parents: &[&[u8]], name: &str) -> Result<OwnedFd, Error> {
        let mut current: Option<OwnedFd> = None;
        let mut creating = false;
        for (i, &comp) in parents.iter().enumerate() {
            if !creating {
                // Re-resolve from dest: an existing prefix may contain a (contained) symlink.
                let prefix = parents[..=i].join(&b'/');
                match self.target.open(&prefix, false) {
                    Ok(fd) => {
                        current = Some(fd);
                        continue;
                    }
                    Err(Errno::NOENT) => creating = true,
                    Err(e) => return Err(resolve_error(e, &prefix, name, "its parent")),
                }
            }
            let at = match &current {
                Some(fd) => fd.as_fd(),
                None => self.target.dest.as_fd(),
            };
            match rustix::fs::mkdirat(at, comp, Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                // ENOENT on open, EEXIST on mkdir: a symlink to nothing.
                Err(Errno::EXIST) => {
                    let prefix = String::from_utf8_lossy(&parents[..=i].join(&b'/')).into_owned();
                    return Err(rejected(
                        name,
                        &format!("its parent {prefix:?} is a symlink to a missing target"),
                    ));
                }
                Err(e) => return Err(io_err(name, "creating a parent directory")(e)),
            }
            // Created just now by us, so opening it relative to its parent cannot meet a symlink.
            let fd = rustix::fs::openat(
                at,
                comp,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_err(name, "opening a parent directory"))?;
            // Independent of the daemon's umask.
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))
                .map_err(io_err(name, "chmod of a parent directory"))?;
            current = Some(fd);
        }
        match current {
            Some(fd) => Ok(fd),
            None => rustix::io::dup(self.target.dest.as_fd()).map_err(io_err(name, "dup")),
        }
    }

    /// Makes room for a new entry `base` in `dir`: a repeated path replaces the earlier entry
    /// (the earlier entry itself, never what a symlink there points to).
    fn clear(&mut self, dir: BorrowedFd<'_>, base: &[u8], name: &str) -> Result<(), Error> {
        // Anything removed may be a directory on the cached path.
        self.cache = None;
        match rustix::fs::unlinkat(dir, base, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) => match rustix::fs::unlinkat(dir, base, AtFlags::REMOVEDIR) {
                Ok(()) => Ok(()),
                Err(Errno::NOTEMPTY | Errno::EXIST) => Err(rejected(
                    name,
                    "replaces a directory that earlier entries filled",
                )),
                Err(e) => Err(io_err(name, "removing the earlier entry")(e)),
            },
            Err(e) => Err(io_err(name, "removing the earlier entry")(e)),
        }
    }

    /// Runs `create`; if the name is taken, replaces the earlier entry and runs it again.
    fn create<T>(
        &mut self,
        dir: BorrowedFd<'_>,
        base: &[u8],
        name: &str,
        op: &'static str,
        mut create: impl FnMut() -> rustix::io::Result<T>,
    ) -> Result<T, Error> {
        match create() {
            Err(Errno::EXIST) => {
                self.clear(dir, base, name)?;
                create().map_err(io_err(name, op))
            }
            r => r.map_err(io_err(name, op)),
        }
    }

    fn file<R: Read>(
        &mut self,
        parents: &[&[u8]],
        base: &[u8],
        data: &mut R,
        meta: &Meta,
        name: &str,
    ) -> Result<(), Error> {
        let dir = self.parent(parents, name, true)?;
        let fd = self.create(dir.as_fd(), base, name, "creating the file", || {
            // EXCL + NOFOLLOW: never write through whatever already sits at this name.
            rustix::fs::openat(
                dir.as_fd(),
                base,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        })?;
        let mut file = File::from(fd);
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::Read {
                        at: format!("in entry {name:?}"),
                        source,
                    })
                }
            };
            file.write_all(&self.buf[..n]).map_err(|source| Error::Io {
                entry: name.into(),
                op: "writing the file",
                source,
            })?;
        }
        apply_fd(file.as_fd(), meta, name)?;
        futimens(file.as_fd(), meta, name)
    }

    fn dir(
        &mut self,
        parents: &[&[u8]],
        base: &[u8],
        meta: &Meta,
        name: &str,
    ) -> Result<(), Error> {
        let dir = self.parent(parents, name, true)?;
        match rustix::fs::mkdirat(dir.as_fd(), base, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let existing = rustix::fs::statat(dir.as_fd(), base, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io_err(name, "stat of the earlier entry"))?;
                // A directory listed twice (or created as a parent first) is kept, contents and all.
                if FileType::from_raw_mode(existing.st_mode) != FileType::Directory {
                    self.clear(dir.as_fd(), base, name)?;
                    rustix::fs::mkdirat(dir.as_fd(), base, Mode::from_raw_mode(0o700))
                        .map_err(io_err(name, "creating the directory"))?;
                }
            }
            Err(e) => return Err(io_err(name, "creating the directory")(e)),
        }
        let fd = rustix::fs::openat(
            dir.as_fd(),
            base,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(name, "opening the directory"))?;
        apply_fd(fd.as_fd(), meta, name)?;
        let mut path = parents.join(&b'/');
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(base);
        self.dir_times.push((path, meta.times.clone()));
        Ok(())
    }

    fn symlink(
        &mut self,
        parents: &[&[u8]],
        base: &[u8],
        target: &[u8],
        meta: &Meta,
        name: &str,
    ) -> Result<(), Error> {
        let dir = self.parent(parents, name, true)?;
        // The target is stored verbatim: it is resolved later, inside the container's root.
        self.create(dir.as_fd(), base, name, "creating the symlink", || {
            rustix::fs::symlinkat(target, dir.as_fd(), base)
        })?;
        rustix::fs::chownat(
            dir.as_fd(),
            base,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io_err(name, "chown"))?;
        // A symlink's own mode is meaningless on Linux; xattrs need a path (no fd of a symlink
        // takes fsetxattr), so go through the parent's descriptor, not following the link.
        if !meta.xattrs.is_empty() {
            let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
            path.extend_from_slice(base);
            for (key, value) in &meta.xattrs {
                match rustix::fs::lsetxattr(
                    OsStr::from_bytes(&path),
                    key.as_slice(),
                    value,
                    XattrFlags::empty(),
                ) {
                    // user.* is refused on symlinks by design.
                    Ok(()) | Err(Errno::NOTSUP | Errno::PERM) => {}
                    Err(e) => return Err(io_err(name, "setting an xattr")(e)),
                }
            }
        }
        rustix::fs::utimensat(dir.as_fd(), base, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err(name, "setting the mtime"))
    }

    fn hardlink(
        &mut self,
        parents: &[&[u8]],
        base: &[u8],
        target: &[u8],
        name: &str,
    ) -> Result<(), Error> {
        // Targets are paths in the layer, like entry names: a leading "/" means dest.
        let target_name = String::from_utf8_lossy(target).into_owned();
        let target_comps = components(target, name).map_err(|e| match e {
            Error::Escape { entry, reason } => Error::Escape {
                entry,
                reason: format!("hard link target {target_name:?}: {reason}"),
            },
            e => e,
        })?;
        let Some((&target_base, target_parents)) = target_comps.split_last() else {
            return Err(rejected(name, "hard link to the layer root"));
        };
        let target_dir = match self.parent(target_parents, name, false) {
            Ok(fd) => fd,
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Err(missing_target(name, &target_name))
            }
            Err(Error::Escape { entry, .. }) => {
                return Err(Error::Escape {
                    entry,
                    reason: format!(
                        "hard link target {target_name:?} leads outside the layer directory \
                         through a symlink"
                    ),
                })
            }
            Err(e) => return Err(e),
        };
        let dir = self.parent(parents, name, true)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink, never what it points at.
        let linked = self.create(dir.as_fd(), base, name, "creating the hard link", || {
            rustix::fs::linkat(
                target_dir.as_fd(),
                target_base,
                dir.as_fd(),
                base,
                AtFlags::empty(),
            )
        });
        match linked {
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                Err(missing_target(name, &target_name))
            }
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EPERM) => {
                Err(rejected(
                    name,
                    &format!("hard link target {target_name:?} is a directory"),
                ))
            }
            // The link shares its target's inode, whose metadata came from the target's own
            // entry; applying the link header's copy could only disturb it.
            r => r,
        }
    }

    fn fifo(
        &mut self,
        parents: &[&[u8]],
        base: &[u8],
        meta: &Meta,
        name: &str,
    ) -> Result<(), Error> {
        let dir = self.parent(parents, name, true)?;
        self.create(dir.as_fd(), base, name, "creating the fifo", || {
            rustix::fs::mknodat(
                dir.as_fd(),
                base,
                FileType::Fifo,
                Mode::from_raw_mode(0o600),
                0,
            )
        })?;
        // NONBLOCK: opening a fifo for reading returns at once instead of waiting for a writer.
        let fd = rustix::fs::openat(
            dir.as_fd(),
            base,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(name, "opening the fifo"))?;
        apply_fd(fd.as_fd(), meta, name)?;
        futimens(fd.as_fd(), meta, name)
    }

    /// `.wh.NAME` becomes overlayfs's whiteout: a 0/0 character device NAME. It is created even
    /// when this layer never wrote NAME: it hides the lower layers' file.
    fn whiteout(
        &mut self,
        parents: &[&[u8]],
        hidden: &[u8],
        meta: &Meta,
        name: &str,
    ) -> Result<(), Error> {
        let dir = self.parent(parents, name, true)?;
        self.create(dir.as_fd(), hidden, name, "creating the whiteout", || {
            rustix::fs::mknodat(
                dir.as_fd(),
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                0,
            )
        })?;
        rustix::fs::chownat(
            dir.as_fd(),
            hidden,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io_err(name, "chown of the whiteout"))
    }

    /// Applies directory mtimes once nothing more is created inside.
    fn finish(&mut self) -> Result<(), Error> {
        self.cache = None;
        for (path, times) in std::mem::take(&mut self.dir_times) {
            let name = String::from_utf8_lossy(&path).into_owned();
            let fd = if path.is_empty() {
                Rc::clone(&self.target.dest)
            } else {
                match self.target.open(&path, true) {
                    Ok(fd) => Rc::new(fd),
                    // Replaced by a later non-directory entry, whose own times were applied (or,
                    // though replacement rules forbid it, now behind a symlink leading out).
                    Err(Errno::NOTDIR | Errno::LOOP | Errno::NOENT | Errno::XDEV) => continue,
                    Err(e) => return Err(resolve_error(e, &path, &name, "the directory")),
                }
            };
            rustix::fs::futimens(fd.as_fd(), &times).map_err(io_err(&name, "setting the mtime"))?;
        }
        Ok(())
    }
}

/// Opens the directory `path` below `root` with `resolve`: with `RESOLVE_BENEATH` the kernel
/// refuses (EXDEV) any resolution that would leave it, whether by `..`, an absolute symlink or
/// a relative symlink climbing out; with `RESOLVE_IN_ROOT` such a resolution stays inside, as
/// if `root` were `/`. Symlinks are followed in every component but the last when `nofollow`
/// is set.
fn resolve_at(
    root: BorrowedFd<'_>,
    path: &[u8],
    nofollow: bool,
    resolve: ResolveFlags,
) -> rustix::io::Result<OwnedFd> {
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if nofollow {
        flags |= OFlags::NOFOLLOW;
    }
    crate::openat::openat2(root, path, flags, resolve)
}

fn resolve_error(e: Errno, path: &[u8], name: &str, what: &str) -> Error {
    let path = String::from_utf8_lossy(path);
    match e {
        Errno::XDEV => Error::Escape {
            entry: name.into(),
            reason: format!("{what} {path:?} leads outside the layer directory through a symlink"),
        },
        Errno::LOOP => Error::Escape {
            entry: name.into(),
            reason: format!("{what} {path:?} goes through a symlink loop"),
        },
        Errno::NOTDIR => Error::Rejected {
            entry: name.into(),
            reason: format!("{what} {path:?} is not a directory"),
        },
        e => io_err(name, "opening the parent directory")(e),
    }
}

fn missing_target(name: &str, target: &str) -> Error {
    rejected(
        name,
        &format!("hard link target {target:?} is not an earlier entry of this layer"),
    )
}

/// The path's components below dest: empty and `.` components dropped (so a leading `/` is
/// stripped, as Docker does), `..` refused since it could climb out.
fn components<'p>(path: &'p [u8], name: &str) -> Result<Vec<&'p [u8]>, Error> {
    let mut out = Vec::new();
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                return Err(Error::Escape {
                    entry: name.into(),
                    reason: "path has a \"..\" component".into(),
                })
            }
            c if c.contains(&0) => return Err(rejected(name, "path contains a NUL byte")),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, Error> {
    let header = entry.header();
    let field =
        |what: &str, e: io::Error| Error::Format(format!("entry {name:?}: bad {what}: {e}"));
    let mode = header.mode().map_err(|e| field("mode", e))? & 0o7777;
    // The tar crate has already applied PAX uid/gid overrides to the header.
    let id = |what: &str, v: u64| {
        // u32::MAX is chown's "leave unchanged".
        u32::try_from(v)
            .ok()
            .filter(|&v| v != u32::MAX)
            .ok_or_else(|| Error::Format(format!("entry {name:?}: {what} {v} out of range")))
    };
    let uid = id("uid", header.uid().map_err(|e| field("uid", e))?)?;
    let gid = id("gid", header.gid().map_err(|e| field("gid", e))?)?;
    let header_mtime = header.mtime().map_err(|e| field("mtime", e))?;
    let mut mtime = Timespec {
        tv_sec: i64::try_from(header_mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions().map_err(|source| Error::Read {
        at: format!("in the PAX header of {name:?}"),
        source,
    })? {
        for ext in pax {
            let ext = ext.map_err(|source| Error::Read {
                at: format!("in the PAX header of {name:?}"),
                source,
            })?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                mtime = parse_pax_time(ext.value_bytes())
                    .ok_or_else(|| Error::Format(format!("entry {name:?}: bad PAX mtime")))?;
            } else if let Some(xattr) = key.strip_prefix(b"SCHILY.xattr.") {
                if !xattr.starts_with(b"trusted.") {
                    xattrs.push((xattr.to_vec(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(Meta {
        mode: Mode::from_raw_mode(mode),
        uid: Uid::from_raw(uid),
        gid: Gid::from_raw(gid),
        times: Timestamps {
            last_access: mtime,
            last_modification: mtime,
        },
        xattrs,
    })
}

/// A PAX time: decimal seconds, optionally negative, optionally with a fraction.
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(value).ok()?;
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(if !negative {
        Timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        }
    } else if nanos == 0 {
        Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        }
    } else {
        Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nanos,
        }
    })
}

/// Owner, then mode (chown clears setuid/setgid), then xattrs (chown clears
/// `security.capability`).
fn apply_fd(fd: BorrowedFd<'_>, meta: &Meta, name: &str) -> Result<(), Error> {
    rustix::fs::fchown(fd, Some(meta.uid), Some(meta.gid)).map_err(io_err(name, "chown"))?;
    rustix::fs::fchmod(fd, meta.mode).map_err(io_err(name, "chmod"))?;
    for (key, value) in &meta.xattrs {
        match rustix::fs::fsetxattr(fd, key.as_slice(), value, XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(io_err(name, "setting an xattr")(e)),
        }
    }
    Ok(())
}

fn futimens(fd: BorrowedFd<'_>, meta: &Meta, name: &str) -> Result<(), Error> {
    rustix::fs::futimens(fd, &meta.times).map_err(io_err(name, "setting the mtime"))
}

fn io_err<'a>(name: &'a str, op: &'static str) -> impl FnOnce(Errno) -> Error + 'a {
    move |e| Error::Io {
        entry: name.into(),
        op,
        source: e.into(),
    }
}

fn rejected(name: &str, reason: &str) -> Error {
    Error::Rejected {
        entry: name.into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests;
