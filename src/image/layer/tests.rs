//! Layer unpacking against tars built in memory, hostile ones included. Run as root: ownership,
//! device nodes, trusted xattrs and the overlay mount need it.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::*;

const MTIME: u64 = 1_600_000_000;

/// A tar stream under construction; `raw` writes names the `tar` crate's own checks refuse.
struct Tar {
    b: tar::Builder<Vec<u8>>,
}

/// Ownership and times for an entry that needs more than the defaults.
#[derive(Clone, Copy)]
struct Owner {
    uid: u64,
    gid: u64,
    mtime: u64,
}

const ROOT: Owner = Owner {
    uid: 0,
    gid: 0,
    mtime: MTIME,
};

fn header(kind: EntryType, mode: u32, owner: Owner) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(owner.uid);
    h.set_gid(owner.gid);
    h.set_mtime(owner.mtime);
    h.set_size(0);
    h
}

impl Tar {
    fn new() -> Self {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn dir(self, path: &str, mode: u32) -> Self {
        self.dir_as(path, mode, ROOT)
    }

    fn dir_as(mut self, path: &str, mode: u32, owner: Owner) -> Self {
        let mut h = header(EntryType::Directory, mode, owner);
        self.b.append_data(&mut h, path, io::empty()).unwrap();
        self
    }

    fn file(self, path: &str, data: &[u8]) -> Self {
        self.file_as(path, data, 0o644, ROOT)
    }

    fn file_as(mut self, path: &str, data: &[u8], mode: u32, owner: Owner) -> Self {
        let mut h = header(EntryType::Regular, mode, owner);
        h.set_size(data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    fn symlink(self, path: &str, target: &str) -> Self {
        self.link(EntryType::Symlink, path, target, ROOT)
    }

    fn hardlink(self, path: &str, target: &str) -> Self {
        self.link(EntryType::Link, path, target, ROOT)
    }

    fn link(mut self, kind: EntryType, path: &str, target: &str, owner: Owner) -> Self {
        let mut h = header(kind, 0o777, owner);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    fn node(mut self, kind: EntryType, path: &str, mode: u32, major: u32, minor: u32) -> Self {
        let mut h = header(kind, mode, ROOT);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, path, io::empty()).unwrap();
        self
    }

    /// An entry whose name and link name go into the header verbatim (at most 100 bytes).
    fn raw(mut self, kind: EntryType, name: &str, link: &str, data: &[u8]) -> Self {
        let mut h = header(kind, 0o644, ROOT);
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    /// A PAX extended header: its records apply to the next entry.
    fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        let mut data = Vec::new();
        for (key, value) in records {
            // "<len> <key>=<value>\n", where len counts itself.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len.to_string().len() + rest != len {
                len += 1;
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let mut h = header(EntryType::XHeader, 0o644, ROOT);
        h.set_size(data.len() as u64);
        let name = b"PaxHeaders/entry";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.b.append(&h, data.as_slice()).unwrap();
        self
    }

    fn bytes(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// A temporary directory holding `dest` (where layers go) beside files that must survive
/// every layer: `sentinel` and `outside/sentinel`.
struct Sandbox {
    tmp: tempfile::TempDir,
    dest: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        // /tmp is ext4 here: trusted.* and user.* xattrs work as root.
        let tmp = tempfile::Builder::new()
            .prefix("rcd-layer-")
            .tempdir()
            .unwrap();
        fs::write(tmp.path().join("sentinel"), "keep").unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        fs::write(tmp.path().join("outside/sentinel"), "keep").unwrap();
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o700)).unwrap();
        Sandbox { tmp, dest }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn unpack(&self, layer: &[u8]) -> Result<Unpacked, Error> {
        unpack(layer, &self.dest, &Limits::default())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dest.join(rel)
    }

    /// Everything in the sandbox but `dest`, described closely enough to see any write.
    fn outside(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        describe(self.root(), self.root(), Some(&self.dest), &mut out);
        out
    }
}

/// Walks `dir` without following symlinks: path → type, mode, owner, size, mtime, content.
fn describe(base: &Path, dir: &Path, skip: Option<&Path>, out: &mut BTreeMap<PathBuf, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if Some(path.as_path()) == skip {
            continue;
        }
        let m = fs::symlink_metadata(&path).unwrap();
        let mut d = format!(
            "{:o} {}:{} {} {}.{}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.len(),
            m.mtime(),
            m.mtime_nsec()
        );
        let rel = path.strip_prefix(base).unwrap().to_path_buf();
        if m.file_type().is_symlink() {
            d += &format!(" -> {}", fs::read_link(&path).unwrap().display());
        } else if m.is_file() {
            d += &format!(" {:?}", fs::read(&path).unwrap());
        } else if m.file_type().is_char_device() || m.file_type().is_block_device() {
            d += &format!(" dev {}", m.rdev());
        }
        if m.is_dir() {
            // A directory's own mtime moves when anything inside changes: also a witness.
            describe(base, &path, skip, out);
        }
        out.insert(rel, d);
    }
}

fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    describe(dir, dir, None, &mut out);
    out
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(Errno::NODATA) => None,
        Err(e) => panic!("getxattr {name} on {}: {e}", path.display()),
    }
}

#[test]
fn unpacks_files_dirs_links_and_fifos_with_their_metadata() {
    let user = Owner {
        uid: 1000,
        gid: 1001,
        mtime: MTIME + 100,
    };
    let layer = Tar::new()
        .dir("etc", 0o755)
        .file("etc/hosts", b"127.0.0.1 localhost\n")
        .file_as("bin/su", b"#!/bin/true\n", 0o4755, ROOT)
        .file_as("bin/wall", b"", 0o2755, Owner { gid: 5, ..ROOT })
        .dir("tmp", 0o1777)
        .dir_as("srv", 0o2770, user)
        .pax(&[
            ("SCHILY.xattr.user.note", b"hello"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ("mtime", b"1600000200.25"),
        ])
        .file_as("srv/data", b"payload", 0o640, user)
        .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        // The symlink's xattrs go on the link itself; user.* is refused on symlinks and skipped.
        .pax(&[
            ("SCHILY.xattr.security.rcdtest", b"on the link"),
            ("SCHILY.xattr.user.note", b"refused"),
        ])
        .link(
            EntryType::Symlink,
            "rel",
            "etc/hosts",
            Owner {
                uid: 5,
                gid: 6,
                mtime: MTIME + 7,
            },
        )
        .symlink("dangling", "../../../nowhere")
        .hardlink("etc/hosts.bak", "etc/hosts")
        .node(EntryType::Fifo, "run/fifo", 0o620, 0, 0)
        .bytes();
    let sb = Sandbox::new();
    let before = sb.outside();
    let got = sb.unpack(&layer).unwrap();
    assert_eq!(got.diff_id, sha256(&layer));
    assert_eq!(got.size, layer.len() as u64);
    assert_eq!(got.entries, 12);

    let meta = |rel: &str| fs::symlink_metadata(sb.path(rel)).unwrap();
    let mode = |rel: &str| meta(rel).mode() & 0o7777;
    assert_eq!(
        fs::read(sb.path("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    assert_eq!(mode("etc/hosts"), 0o644);
    assert_eq!(mode("bin/su"), 0o4755);
    assert_eq!(mode("bin/wall"), 0o2755);
    assert_eq!(meta("bin/wall").gid(), 5);
    assert_eq!(
        mode("bin"),
        0o755,
        "implicit parents are 0755 whatever the umask"
    );
    assert_eq!(mode("tmp"), 0o1777);
    assert_eq!(mode("srv"), 0o2770);
    assert_eq!((meta("srv").uid(), meta("srv").gid()), (1000, 1001));
    assert_eq!(
        meta("srv").mtime() as u64,
        MTIME + 100,
        "dir mtime survives the entry inside"
    );
    assert_eq!(fs::read(sb.path("srv/data")).unwrap(), b"payload");
    assert_eq!(mode("srv/data"), 0o640);
    assert_eq!(
        (meta("srv/data").uid(), meta("srv/data").gid()),
        (1000, 1001)
    );
    assert_eq!(meta("srv/data").mtime(), 1_600_000_200, "PAX mtime wins");
    assert_eq!(meta("srv/data").mtime_nsec(), 250_000_000);
    assert_eq!(
        xattr(&sb.path("srv/data"), "user.note").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        xattr(&sb.path("srv/data"), "trusted.overlay.redirect"),
        None
    );
    assert_eq!(meta("etc/hosts").mtime() as u64, MTIME);

    assert_eq!(
        fs::read_link(sb.path("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/UTC"),
        "absolute symlinks are kept verbatim"
    );
    assert_eq!(
        fs::read_link(sb.path("rel")).unwrap(),
        Path::new("etc/hosts")
    );
    assert_eq!((meta("rel").uid(), meta("rel").gid()), (5, 6));
    assert_eq!(
        xattr(&sb.path("rel"), "security.rcdtest").as_deref(),
        Some(&b"on the link"[..])
    );
    assert_eq!(xattr(&sb.path("etc/hosts"), "security.rcdtest"), None);
    assert_eq!(meta("rel").mtime() as u64, MTIME + 7);
    assert_eq!(
        fs::read_link(sb.path("dangling")).unwrap(),
        Path::new("../../../nowhere")
    );

    assert_eq!(meta("etc/hosts.bak").ino(), meta("etc/hosts").ino());
    assert_eq!(meta("etc/hosts").nlink(), 2);
    assert!(meta("run/fifo").file_type().is_fifo());
    assert_eq!(mode("run/fifo"), 0o620);
    assert_eq!(sb.outside(), before);
}

#[test]
fn root_entry_sets_the_layer_root_and_dir_mtimes_come_last() {
    let layer = Tar::new()
        .raw(EntryType::Directory, "./", "", b"")
        .dir("d", 0o750)
        .file("d/x", b"x")
        .dir("d/e", 0o755)
        .file("d/e/y", b"y")
        .bytes();
    let sb = Sandbox::new();
    sb.unpack(&layer).unwrap();
    let root = fs::metadata(&sb.dest).unwrap();
    assert_eq!(
        root.mode() & 0o7777,
        0o644,
        "the ./ entry's mode lands on dest"
    );
    assert_eq!(root.mtime() as u64, MTIME);
    for dir in ["d", "d/e"] {
        assert_eq!(
            fs::metadata(sb.path(dir)).unwrap().mtime() as u64,
            MTIME,
            "{dir}"
        );
    }
}

#[test]
fn gzip_zstd_and_plain_give_the_same_tree_and_diff_id() {
    let tar = Tar::new()
        .dir("a", 0o755)
        .file("a/one", &[7u8; 300_000])
        .file("a/two", b"two")
        .symlink("a/link", "one")
        .bytes();
    let half = tar.len() / 2;
    let mut multi_gzip = gzip(&tar[..half]);
    multi_gzip.extend(gzip(&tar[half..]));
    let mut multi_zstd = zstd(&tar[..half]);
    multi_zstd.extend(zstd(&tar[half..]));
    let mut skippable = vec![0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, b'r', b'c', b'd'];
    skippable.extend(zstd(&tar));
    let cases: [(&str, Vec<u8>); 6] = [
        ("plain", tar.clone()),
        ("gzip", gzip(&tar)),
        ("zstd", zstd(&tar)),
        ("gzip, two members", multi_gzip),
        ("zstd, two frames", multi_zstd),
        ("zstd after a skippable frame", skippable),
    ];
    let mut trees = Vec::new();
    for (name, blob) in cases {
        let sb = Sandbox::new();
        let got = sb.unpack(&blob).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.diff_id, sha256(&tar), "{name}");
        assert_eq!(got.size, tar.len() as u64, "{name}");
        assert_eq!(got.entries, 4, "{name}");
        trees.push((name, tree(&sb.dest)));
    }
    for (name, t) in &trees[1..] {
        assert_eq!(t, &trees[0].1, "{name} differs from plain");
    }
    assert_eq!(trees[0].1.len(), 4);
}

#[test]
fn data_after_the_end_of_the_archive_is_hashed() {
    let mut blob = Tar::new().file("f", b"content").bytes();
    blob.extend_from_slice(&[0u8; 4096]);
    blob.extend_from_slice(b"appended by some tool");
    for (name, input) in [
        ("plain", blob.clone()),
        ("gzip", gzip(&blob)),
        ("zstd", zstd(&blob)),
    ] {
        let sb = Sandbox::new();
        let got = sb.unpack(&input).unwrap();
        assert_eq!(got.diff_id, sha256(&blob), "{name}");
        assert_eq!(got.size, blob.len() as u64, "{name}");
        assert_eq!(fs::read(sb.path("f")).unwrap(), b"content");
    }
}

#[test]
fn compression_from_media_type_and_magic() {
    let table: &[(&str, Option<Compression>)] = &[
        (
            "application/vnd.oci.image.layer.v1.tar",
            Some(Compression::None),
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            Some(Compression::Zstd),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar",
            Some(Compression::None),
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+gzip; foo=bar",
            Some(Compression::Gzip),
        ),
        ("application/vnd.oci.image.layer.v1.tar.gzip", None),
        ("application/vnd.oci.image.layer.v1.tar+xz", None),
        ("application/vnd.oci.image.config.v1+json", None),
        ("", None),
    ];
    for (media_type, want) in table {
        assert_eq!(
            Compression::from_media_type(media_type),
            *want,
            "{media_type}"
        );
    }
    assert_eq!(Compression::detect(&gzip(b"x")), Compression::Gzip);
    assert_eq!(Compression::detect(&zstd(b"x")), Compression::Zstd);
    assert_eq!(
        Compression::detect(&Tar::new().file("f", b"").bytes()),
        Compression::None
    );
    assert_eq!(Compression::detect(b""), Compression::None);
    let mut skippable = vec![0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
    skippable.extend(zstd(b"x"));
    assert_eq!(Compression::detect(&skippable), Compression::Zstd);
}

#[test]
fn unreadable_streams_are_errors() {
    let tar = Tar::new().file("f", &[1u8; 5000]).bytes();
    let mut bad_sum = tar.clone();
    bad_sum[0] = b'g';
    let mut xz = vec![0xfd, b'7', b'z', b'X', b'Z', 0];
    xz.extend_from_slice(&[0; 64]);
    let mut bad_gzip = gzip(&tar);
    let mid = bad_gzip.len() / 2;
    bad_gzip[mid..mid + 16].fill(0xaa);
    let cases: [(&str, Vec<u8>, Check); 5] = [
        ("truncated in data", tar[..1500].to_vec(), |e| {
            matches!(e, Error::Read { .. })
        }),
        ("bad header checksum", bad_sum, |e| {
            matches!(e, Error::Read { .. })
        }),
        ("corrupt gzip", bad_gzip, |e| {
            matches!(e, Error::Read { .. })
        }),
        ("xz", xz, |e| matches!(e, Error::Format(_))),
        ("bzip2", b"BZh91AY&SY".to_vec(), |e| {
            matches!(e, Error::Format(_))
        }),
    ];
    for (name, blob, want) in cases {
        let sb = Sandbox::new();
        let err = sb.unpack(&blob).expect_err(name);
        assert!(want(&err), "{name}: {err:?}");
    }
}

#[test]
fn dest_must_be_an_empty_real_directory() {
    let sb = Sandbox::new();
    let layer = Tar::new().file("f", b"").bytes();
    fs::write(sb.path("existing"), "").unwrap();
    let err = sb.unpack(&layer).unwrap_err();
    assert!(
        matches!(&err, Error::Dest { reason, .. } if reason == "is not empty"),
        "{err}"
    );

    let link = sb.root().join("link");
    std::os::unix::fs::symlink(sb.root().join("outside"), &link).unwrap();
    let err = unpack(layer.as_slice(), &link, &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Dest { reason, .. } if reason == "is a symlink"),
        "{err}"
    );

    let err = unpack(
        layer.as_slice(),
        &sb.root().join("missing"),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Dest { .. }), "{err}");
    assert!(!sb.root().join("outside/f").exists());
}

type Check = fn(&Error) -> bool;

fn escape(e: &Error) -> bool {
    matches!(e, Error::Escape { .. })
}

fn rejected_(e: &Error) -> bool {
    matches!(e, Error::Rejected { .. })
}

fn limit(e: &Error) -> bool {
    matches!(e, Error::Limit { .. })
}

/// A hostile layer, built knowing where the sandbox is (for absolute symlinks into it).
type Hostile = Box<dyn Fn(&Path) -> Vec<u8>>;

#[test]
fn escapes_and_forbidden_entries_are_rejected_and_touch_nothing_outside() {
    let out = |root: &Path| root.join("outside").display().to_string();
    let sentinel = |root: &Path| root.join("sentinel").display().to_string();
    let small = Limits {
        max_entries: 3,
        max_bytes: 8 * 1024,
        max_path_len: 64,
    };
    let cases: Vec<(&str, Hostile, Check, Limits)> = vec![
        (
            "../x",
            Box::new(|_| {
                Tar::new()
                    .raw(EntryType::Regular, "../x", "", b"evil")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "a/../../x",
            Box::new(|_| {
                Tar::new()
                    .dir("a", 0o755)
                    .raw(EntryType::Regular, "a/../../x", "", b"e")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "../ as a directory",
            Box::new(|_| {
                Tar::new()
                    .raw(EntryType::Directory, "../outside/", "", b"")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "symlinked parent to /",
            // Aimed at the sandbox, so that a broken unpacker is caught without harm.
            Box::new(move |root| {
                Tar::new()
                    .symlink("a", "/")
                    .file(&format!("a{}/x", out(root)), b"evil")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "symlinked parent to ../..",
            Box::new(|_| {
                Tar::new()
                    .symlink("a", "../..")
                    .file("a/x", b"evil")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "symlinked parent to an absolute path outside",
            Box::new(move |root| {
                Tar::new()
                    .symlink("a", &out(root))
                    .file("a/x", b"evil")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "symlinked parent to the sentinel's directory",
            Box::new(|_| {
                Tar::new()
                    .symlink("a", "..")
                    .file("a/sentinel", b"evil")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "symlink chain climbing out",
            Box::new(|_| {
                Tar::new()
                    .symlink("b", "../..")
                    .symlink("a", "b")
                    .file("a/x", b"evil")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "nested symlinked parent climbing out",
            Box::new(|_| {
                Tar::new()
                    .dir("d", 0o755)
                    .symlink("d/up", "../..")
                    .file("d/up/x", b"evil")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "directory through a symlinked parent",
            Box::new(move |root| {
                Tar::new()
                    .symlink("a", &out(root))
                    .dir("a/d", 0o755)
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "whiteout through a symlinked parent",
            Box::new(move |root| {
                Tar::new()
                    .symlink("a", &out(root))
                    .file("a/.wh.sentinel", b"")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "opaque marker through a symlinked parent",
            Box::new(move |root| {
                Tar::new()
                    .symlink("a", &out(root))
                    .file("a/.wh..wh..opq", b"")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "hard link to /etc/passwd",
            Box::new(|_| Tar::new().hardlink("passwd", "/etc/passwd").bytes()),
            rejected_,
            Limits::default(),
        ),
        (
            "hard link to an absolute path of the sandbox",
            Box::new(move |root| Tar::new().hardlink("s", &sentinel(root)).bytes()),
            rejected_,
            Limits::default(),
        ),
        (
            "hard link through a symlinked directory (absolute)",
            Box::new(move |root| {
                Tar::new()
                    .symlink("s", &out(root))
                    .hardlink("x", "s/sentinel")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "hard link through a symlinked directory (relative)",
            Box::new(|_| {
                Tar::new()
                    .symlink("s", "..")
                    .hardlink("x", "s/sentinel")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "hard link with .. in its target",
            Box::new(|_| {
                Tar::new()
                    .raw(EntryType::Link, "x", "../sentinel", b"")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "hard link placed through a symlinked parent",
            Box::new(move |root| {
                Tar::new()
                    .file("f", b"f")
                    .symlink("a", &out(root))
                    .hardlink("a/x", "f")
                    .bytes()
            }),
            escape,
            Limits::default(),
        ),
        (
            "hard link to a directory",
            Box::new(|_| Tar::new().dir("d", 0o755).hardlink("x", "d").bytes()),
            rejected_,
            Limits::default(),
        ),
        (
            "character device",
            Box::new(|_| {
                Tar::new()
                    .node(EntryType::Char, "dev/mem", 0o600, 1, 1)
                    .bytes()
            }),
            rejected_,
            Limits::default(),
        ),
        (
            "block device",
            Box::new(|_| {
                Tar::new()
                    .node(EntryType::Block, "dev/sda", 0o600, 8, 0)
                    .bytes()
            }),
            rejected_,
            Limits::default(),
        ),
        (
            "a ready-made 0/0 character device",
            Box::new(|_| {
                Tar::new()
                    .node(EntryType::Char, "etc/passwd", 0, 0, 0)
                    .bytes()
            }),
            rejected_,
            Limits::default(),
        ),
        (
            "parent is a dangling symlink",
            Box::new(|_| {
                Tar::new()
                    .symlink("a", "missing")
                    .file("a/x", b"evil")
                    .bytes()
            }),
            rejected_,
            Limits::default(),
        ),
        (
            "parent is a file",
            Box::new(|_| Tar::new().file("f", b"").file("f/x", b"").bytes()),
            rejected_,
            Limits::default(),
        ),
        (
            "path longer than the limit",
            Box::new(|_| {
                Tar::new()
                    .file(&format!("{}f", "p/".repeat(40)), b"")
                    .bytes()
            }),
            limit,
            small,
        ),
        (
            "link target longer than the limit",
            Box::new(|_| {
                Tar::new()
                    .symlink("l", &format!("{}t", "t/".repeat(40)))
                    .bytes()
            }),
            limit,
            small,
        ),
        (
            "more entries than the limit",
            Box::new(|_| {
                Tar::new()
                    .file("1", b"")
                    .file("2", b"")
                    .file("3", b"")
                    .file("4", b"")
                    .bytes()
            }),
            limit,
            small,
        ),
        (
            "one file larger than the byte limit",
            Box::new(|_| Tar::new().file("big", &[0u8; 10_000]).bytes()),
            limit,
            small,
        ),
        (
            "a stream larger than the byte limit",
            Box::new(|_| {
                Tar::new()
                    .file("a", &[1u8; 3000])
                    .file("b", &[2u8; 3000])
                    .file("c", &[3u8; 3000])
                    .bytes()
            }),
            limit,
            small,
        ),
        (
            "a gzip bomb",
            Box::new(|_| gzip(&Tar::new().file("bomb", &vec![0u8; 1 << 20]).bytes())),
            limit,
            small,
        ),
    ];
    let passwd = fs::metadata("/etc/passwd").unwrap();
    for (name, layer, check, limits) in cases {
        let sb = Sandbox::new();
        let before = sb.outside();
        let layer = layer(sb.root());
        let err =
            unpack(layer.as_slice(), &sb.dest, &limits).expect_err(&format!("{name}: unpacked"));
        assert!(check(&err), "{name}: wrong error {err:?}");
        assert!(!err.to_string().is_empty());
        assert_eq!(
            sb.outside(),
            before,
            "{name}: something changed outside dest"
        );
        assert_eq!(
            fs::read(sb.root().join("sentinel")).unwrap(),
            b"keep",
            "{name}"
        );
    }
    let after = fs::metadata("/etc/passwd").unwrap();
    assert_eq!(
        (after.nlink(), after.mtime()),
        (passwd.nlink(), passwd.mtime())
    );
}

#[test]
fn an_entry_named_like_an_earlier_symlink_replaces_it() {
    let sentinel = |root: &Path| root.join("sentinel").display().to_string();
    let out = |root: &Path| root.join("outside").display().to_string();
    type Build = Box<dyn Fn(&Path) -> Vec<u8>>;
    type Expect = fn(&Path);
    let cases: Vec<(&str, Build, Expect)> = vec![
        (
            "file over a symlink to a file outside",
            Box::new(move |r| {
                Tar::new()
                    .symlink("link", &sentinel(r))
                    .file("link", b"evil")
                    .bytes()
            }),
            |dest| assert_eq!(fs::read(dest.join("link")).unwrap(), b"evil"),
        ),
        (
            "directory over a symlink to a directory outside, then a file inside",
            Box::new(move |r| {
                Tar::new()
                    .symlink("link", &out(r))
                    .dir("link", 0o755)
                    .file("link/x", b"in")
                    .bytes()
            }),
            |dest| {
                assert!(fs::symlink_metadata(dest.join("link")).unwrap().is_dir());
                assert_eq!(fs::read(dest.join("link/x")).unwrap(), b"in");
            },
        ),
        (
            "fifo over a symlink",
            Box::new(move |r| {
                Tar::new()
                    .symlink("link", &sentinel(r))
                    .node(EntryType::Fifo, "link", 0o600, 0, 0)
                    .bytes()
            }),
            |dest| {
                assert!(fs::symlink_metadata(dest.join("link"))
                    .unwrap()
                    .file_type()
                    .is_fifo())
            },
        ),
        (
            "symlink over a symlink",
            Box::new(move |r| {
                Tar::new()
                    .symlink("link", &sentinel(r))
                    .symlink("link", "elsewhere")
                    .bytes()
            }),
            |dest| {
                assert_eq!(
                    fs::read_link(dest.join("link")).unwrap(),
                    Path::new("elsewhere")
                )
            },
        ),
        (
            "hard link over a symlink",
            Box::new(move |r| {
                Tar::new()
                    .file("f", b"f")
                    .symlink("link", &sentinel(r))
                    .hardlink("link", "f")
                    .bytes()
            }),
            |dest| assert_eq!(fs::read(dest.join("link")).unwrap(), b"f"),
        ),
        (
            "whiteout over a symlink",
            Box::new(move |r| {
                Tar::new()
                    .symlink("link", &sentinel(r))
                    .file(".wh.link", b"")
                    .bytes()
            }),
            |dest| {
                assert!(fs::symlink_metadata(dest.join("link"))
                    .unwrap()
                    .file_type()
                    .is_char_device())
            },
        ),
        (
            "symlink to a file outside as a hard link target",
            Box::new(move |r| {
                Tar::new()
                    .symlink("link", &sentinel(r))
                    .hardlink("x", "link")
                    .bytes()
            }),
            |dest| {
                // The link is to the symlink itself, still pointing where it did.
                assert!(fs::symlink_metadata(dest.join("x"))
                    .unwrap()
                    .file_type()
                    .is_symlink());
            },
        ),
        (
            "a contained symlinked parent is followed",
            Box::new(|_| {
                Tar::new()
                    .dir("usr/lib", 0o755)
                    .symlink("lib", "usr/lib")
                    .file("lib/x", b"x")
                    .bytes()
            }),
            |dest| assert_eq!(fs::read(dest.join("usr/lib/x")).unwrap(), b"x"),
        ),
    ];
    for (name, build, expect) in cases {
        let sb = Sandbox::new();
        let before = sb.outside();
        sb.unpack(&build(sb.root()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        expect(&sb.dest);
        assert_eq!(
            sb.outside(),
            before,
            "{name}: something changed outside dest"
        );
    }
}

#[test]
fn repeated_paths_replace_earlier_entries() {
    let sb = Sandbox::new();
    let layer = Tar::new()
        .file("f", b"first")
        .file("f", b"second")
        .file("g", b"file")
        .dir("g", 0o700)
        .dir("h", 0o755)
        .file("h", b"was an empty dir")
        .dir("d", 0o755)
        .file("d/keep", b"k")
        .dir("d", 0o711)
        .bytes();
    sb.unpack(&layer).unwrap();
    assert_eq!(fs::read(sb.path("f")).unwrap(), b"second");
    assert!(fs::symlink_metadata(sb.path("g")).unwrap().is_dir());
    assert_eq!(fs::read(sb.path("h")).unwrap(), b"was an empty dir");
    assert_eq!(fs::metadata(sb.path("d")).unwrap().mode() & 0o7777, 0o711);
    assert_eq!(fs::read(sb.path("d/keep")).unwrap(), b"k");

    let sb = Sandbox::new();
    let layer = Tar::new()
        .dir("d", 0o755)
        .file("d/x", b"")
        .file("d", b"")
        .bytes();
    let err = sb.unpack(&layer).unwrap_err();
    assert!(rejected_(&err), "{err:?}");
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let sb = Sandbox::new();
    let layer = Tar::new()
        .file(".wh.foo", b"")
        .file("etc/.wh.passwd", b"")
        .file("a", b"written, then whited out")
        .file(".wh.a", b"")
        .dir("d", 0o755)
        .file("d/.wh..wh..opq", b"")
        .file("d/kept", b"k")
        .file("new/.wh..wh..opq", b"")
        .file(".wh..wh..opq", b"")
        .file(".wh..wh.plnk/1234.5678", b"aufs bookkeeping")
        .bytes();
    let got = sb.unpack(&layer).unwrap();
    assert_eq!(got.entries, 10);
    for rel in ["foo", "etc/passwd", "a"] {
        let m = fs::symlink_metadata(sb.path(rel)).unwrap();
        assert!(m.file_type().is_char_device(), "{rel}");
        assert_eq!(m.rdev(), 0, "{rel}");
    }
    for marker in [
        ".wh.foo",
        "etc/.wh.passwd",
        ".wh.a",
        "d/.wh..wh..opq",
        ".wh..wh..opq",
    ] {
        assert!(
            fs::symlink_metadata(sb.path(marker)).is_err(),
            "{marker} left behind"
        );
    }
    assert!(!sb.path(".wh..wh.plnk").exists());
    for dir in ["d", "new", ""] {
        assert_eq!(
            xattr(&sb.path(dir), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..]),
            "{dir:?}"
        );
    }
    assert_eq!(xattr(&sb.path("etc"), "trusted.overlay.opaque"), None);
    assert_eq!(fs::read(sb.path("d/kept")).unwrap(), b"k");

    for bad in [".wh.", "x/.wh..", "x/.wh..."] {
        let sb = Sandbox::new();
        let layer = Tar::new().raw(EntryType::Regular, bad, "", b"").bytes();
        let err = sb.unpack(&layer).unwrap_err();
        assert!(
            matches!(err, Error::Rejected { .. } | Error::Escape { .. }),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn limits_are_inclusive() {
    let layer = Tar::new().file("a", b"1").file("b", b"2").bytes();
    let exact = Limits {
        max_entries: 2,
        max_bytes: layer.len() as u64,
        max_path_len: 1,
    };
    let sb = Sandbox::new();
    assert_eq!(
        unpack(layer.as_slice(), &sb.dest, &exact).unwrap().entries,
        2
    );
    let sb = Sandbox::new();
    let one_less = Limits {
        max_bytes: layer.len() as u64 - 1,
        ..exact
    };
    let err = unpack(layer.as_slice(), &sb.dest, &one_less).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Limit {
                what: "decompressed bytes",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn pax_times_parse() {
    let t = |s: &str| parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
    assert_eq!(t("1600000000"), Some((1_600_000_000, 0)));
    assert_eq!(t("1.5"), Some((1, 500_000_000)));
    assert_eq!(t("1.1234567891"), Some((1, 123_456_789)));
    assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
    assert_eq!(t("-3"), Some((-3, 0)));
    for bad in ["", ".5", "1e3", "1.x", "--1"] {
        assert_eq!(t(bad), None, "{bad}");
    }
}

/// Two layers unpacked here and stacked by overlayfs the way rcd mounts images.
#[test]
fn unpacked_layers_stack_as_overlay_lowers() {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper, merged) = (
        tmp.path().join("l"),
        tmp.path().join("u"),
        tmp.path().join("m"),
    );
    for d in [&lower, &upper, &merged] {
        fs::create_dir(d).unwrap();
    }
    let lower_tar = Tar::new()
        .dir("etc", 0o755)
        .file("etc/a", b"a")
        .file("etc/b", b"b")
        .dir("d", 0o755)
        .file("d/x", b"x")
        .bytes();
    let upper_tar = Tar::new()
        .file("etc/.wh.a", b"")
        .dir("d", 0o755)
        .file("d/.wh..wh..opq", b"")
        .file("d/y", b"y")
        .bytes();
    unpack(lower_tar.as_slice(), &lower, &Limits::default()).unwrap();
    unpack(upper_tar.as_slice(), &upper, &Limits::default()).unwrap();

    let options = format!("lowerdir={}:{}", upper.display(), lower.display());
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(options.as_str()),
    )
    .unwrap();
    // Nothing may panic between mount and unmount: a failed test must not leave a mount.
    let etc_a = merged.join("etc/a").symlink_metadata().is_ok();
    let etc_b = fs::read(merged.join("etc/b")).ok();
    let d: io::Result<Vec<String>> = fs::read_dir(merged.join("d")).and_then(|it| {
        it.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    });
    umount2(&merged, MntFlags::MNT_DETACH).unwrap();
    assert!(!etc_a, "etc/a is whited out");
    assert_eq!(etc_b.as_deref(), Some(&b"b"[..]));
    assert_eq!(d.unwrap(), vec!["y".to_string()], "d is opaque");
}
