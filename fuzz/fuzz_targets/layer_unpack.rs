//! Layers: arbitrary bytes, or tar members generated from a structure (`..`, absolute paths,
//! symlinks then entries through them, hard links, whiteouts, PAX records), unpacked by the
//! real unpacker into a fresh directory; nothing outside that directory may change.
//!
//! The unpack runs on one worker thread that has its own root (`chroot` after unsharing its
//! filesystem attributes and mount namespace), a jail holding only `/proc` and the case's
//! directories. Inside it, an absolute symlink target such as `/` or `/case/outside` points
//! at something the check sees, and an escape could never reach the host's own files.
//!
//! The first input byte picks the form: 0xff a structured layer, 0xfe a plain stream the
//! harness gzips (so the fuzzer need not learn CRCs), anything else the bytes as they are (a
//! tar, or a gzip or zstd stream it detects itself).

#![no_main]

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use rcd::image::layer::{self, Compression, Limits};
use sha2::{Digest, Sha256};

/// The layer's destination, in the jail.
const ROOT: &str = "/case/root";
/// A directory beside the destination, with a file and an empty directory: what an escape
/// would most easily reach.
const OUTSIDE: &str = "/case/outside";
const SENTINEL: &str = "/case/outside/sentinel";
const SENTINEL_DIR: &str = "/case/outside/dir";
const SENTINEL_TEXT: &[u8] = b"outside the layer\n";

/// Small bounds keep one input fast; the checks themselves are not what is fuzzed here.
const LIMITS: Limits = Limits {
    max_entries: 256,
    max_bytes: 1 << 20,
    max_path_len: 4096,
};

fuzz_target!(|data: &[u8]| {
    let (stream, plain) = match data.split_first() {
        Some((0xff, rest)) => {
            let Ok(layer) = Layer::arbitrary_take_rest(Unstructured::new(rest)) else {
                return;
            };
            let tar = layer.tar();
            let stream = if layer.gzip { gzip(&tar) } else { tar.clone() };
            (stream, Some(tar))
        }
        Some((0xfe, rest)) => (gzip(rest), Some(rest.to_vec())),
        // Compressed or not, as the unpacker sniffs it; plain only when it will take it as is.
        _ => {
            let plain = (Compression::detect(data) == Compression::None
                && !data.starts_with(b"\xfd7zXZ\0")
                && !data.starts_with(b"BZh"))
            .then(|| data.to_vec());
            (data.to_vec(), plain)
        }
    };
    jail().run(stream, plain);
});

/// One input for the worker: the stream to unpack, and its decompressed bytes when known.
type Job = (Vec<u8>, Option<Vec<u8>>);

/// The worker thread in its jail, and the channel to it.
struct Jail {
    jobs: Mutex<Sender<Job>>,
    done: Mutex<Receiver<()>>,
}

impl Jail {
    /// Unpacks on the worker and checks; a failed check panics there, which aborts the process
    /// (libFuzzer's panic hook) and saves the input.
    fn run(&self, stream: Vec<u8>, plain: Option<Vec<u8>>) {
        let jobs = self.jobs.lock().expect("the job channel");
        jobs.send((stream, plain)).expect("the worker is alive");
        self.done
            .lock()
            .expect("the done channel")
            .recv()
            .expect("the worker answers");
    }
}

/// The jail's directory on the host, removed at exit.
static JAIL_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_jail() {
    if let Some(dir) = JAIL_DIR.get() {
        let _ = fs::remove_dir_all(dir);
    }
}

fn jail() -> &'static Jail {
    static JAIL: OnceLock<Jail> = OnceLock::new();
    JAIL.get_or_init(|| {
        remove_stale_jails();
        let dir = std::env::temp_dir().join(format!("rcd-fuzz-layer.{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("proc")).expect("creating the jail");
        let _ = JAIL_DIR.set(dir.clone());
        // SAFETY: `remove_jail` is an `extern "C" fn()` that only touches a static.
        unsafe { libc::atexit(remove_jail) };

        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            enter(&dir);
            ready_tx.send(()).expect("the fuzzer waits");
            for (stream, plain) in job_rx {
                case(&stream, plain.as_deref());
                if done_tx.send(()).is_err() {
                    break;
                }
            }
        });
        ready_rx.recv().expect("the worker enters its jail");
        Jail {
            jobs: Mutex::new(job_tx),
            done: Mutex::new(done_rx),
        }
    })
}

/// Jails of runs that crashed: an abort skips the removal at exit. Their mounts went with
/// their thread's namespace, so what is left are plain directories.
fn remove_stale_jails() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("rcd-fuzz-layer."))
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Makes `dir` this thread's root, with a `/proc` of its own (the unpacker sets symlinks'
/// xattrs through `/proc/self/fd`). The other threads keep the host's root.
fn enter(dir: &Path) {
    nix::sched::unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
        .expect("unshare(CLONE_FS | CLONE_NEWNS): the layer target needs root");
    // Private, so the proc mount never propagates back to the host's namespace.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("making mounts private");
    let proc_dir = dir.join("proc");
    let fresh = nix::mount::mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    );
    if fresh.is_err() {
        // Some sandboxes refuse a new procfs; a bind of the host's serves as well.
        nix::mount::mount(
            Some("/proc"),
            &proc_dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .expect("mounting /proc in the jail");
    }
    nix::unistd::chroot(dir).expect("chroot into the jail");
    std::env::set_current_dir("/").expect("chdir into the jail");
}

/// What must not change outside the destination: type, mode, owner, links, size, mtime and
/// xattr names of each path around it.
fn fingerprint(path: &str) -> String {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return format!("{path}: {e}"),
    };
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(path, &mut names).unwrap_or(0);
    names.truncate(n);
    format!(
        "{path}: mode {:o} owner {}:{} nlink {} size {} mtime {}.{} xattrs {:?}",
        meta.mode(),
        meta.uid(),
        meta.gid(),
        meta.nlink(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        String::from_utf8_lossy(&names),
    )
}

fn listing(dir: &str) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {dir}: {e}"))
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const WATCHED: [&str; 5] = ["/", "/case", OUTSIDE, SENTINEL, SENTINEL_DIR];

/// One input, in the jail: a fresh layout, the unpack, the checks, the cleanup.
fn case(stream: &[u8], plain: Option<&[u8]>) {
    let _ = fs::remove_dir_all("/case");
    fs::create_dir_all(ROOT).expect("creating the destination");
    fs::create_dir_all(SENTINEL_DIR).expect("creating the sentinel directory");
    fs::write(SENTINEL, SENTINEL_TEXT).expect("writing the sentinel");
    let before: Vec<String> = WATCHED.iter().map(|p| fingerprint(p)).collect();

    let result = layer::unpack(stream, Path::new(ROOT), &LIMITS);

    assert_eq!(
        listing("/"),
        names(&["case", "proc"]),
        "the jail's root changed"
    );
    assert_eq!(
        listing("/case"),
        names(&["outside", "root"]),
        "beside the layer"
    );
    assert_eq!(
        listing(OUTSIDE),
        names(&["dir", "sentinel"]),
        "outside the layer"
    );
    assert_eq!(listing(SENTINEL_DIR), names(&[]), "outside the layer");
    assert_eq!(fs::read(SENTINEL).ok().as_deref(), Some(SENTINEL_TEXT));
    let after: Vec<String> = WATCHED.iter().map(|p| fingerprint(p)).collect();
    assert_eq!(after, before, "metadata outside the layer changed");
    assert!(
        fs::symlink_metadata(ROOT).is_ok_and(|m| m.is_dir()),
        "the destination was replaced"
    );

    if let (Ok(unpacked), Some(plain)) = (&result, plain) {
        // The DiffID covers the whole decompressed stream.
        let want = format!("sha256:{}", hex(&Sha256::digest(plain)));
        assert_eq!(unpacked.diff_id, want);
        assert_eq!(unpacked.size, plain.len() as u64);
    }
    let _ = result.map_err(|e| e.to_string());
    fs::remove_dir_all("/case").expect("removing the case");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// A generated layer.
#[derive(Arbitrary, Debug)]
struct Layer {
    gzip: bool,
    members: Vec<Member>,
}

#[derive(Arbitrary, Debug)]
struct Member {
    path: Name,
    kind: Kind,
    mode: u16,
    /// uid and gid both; small, so ownership checks see a few values.
    owner: u8,
    data: Vec<u8>,
    /// How the path is carried when it does not fit the header, or on purpose.
    long: LongName,
    pax: Vec<Pax>,
}

#[derive(Arbitrary, Debug)]
enum LongName {
    Header,
    Pax,
    Gnu,
}

#[derive(Arbitrary, Debug)]
enum Kind {
    File,
    Dir,
    Symlink(Name),
    Hardlink(Name),
    Fifo,
    Char,
    Block,
    PaxGlobal,
    Other(u8),
}

/// A path from a small vocabulary, so that names meet again and links lead somewhere.
#[derive(Arbitrary, Debug)]
struct Name {
    absolute: bool,
    trailing_slash: bool,
    comps: Vec<Comp>,
}

#[derive(Arbitrary, Debug)]
enum Comp {
    A,
    B,
    C,
    Dot,
    DotDot,
    Empty,
    /// The jail's own names: `/case/outside` and `../outside` reach the sentinels.
    Case,
    Outside,
    Root,
    Dir,
    Sentinel,
    Proc,
    Whiteout(Word),
    Opaque,
    AufsMeta,
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Word {
    A,
    B,
    Dot,
    DotDot,
    Empty,
    Opq,
}

#[derive(Arbitrary, Debug)]
enum Pax {
    Mtime(String),
    Xattr(XattrKey, Vec<u8>),
    Path(Name),
    LinkPath(Name),
    Uid(String),
    Raw(Vec<u8>, Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum XattrKey {
    User,
    TrustedOpaque,
    TrustedRedirect,
    SecurityCapability,
    Raw(Vec<u8>),
}

impl Word {
    fn bytes(&self) -> &'static [u8] {
        match self {
            Word::A => b"a",
            Word::B => b"b",
            Word::Dot => b".",
            Word::DotDot => b"..",
            Word::Empty => b"",
            Word::Opq => b".wh..opq",
        }
    }
}

impl Comp {
    fn bytes(&self) -> Vec<u8> {
        let fixed: &[u8] = match self {
            Comp::A => b"a",
            Comp::B => b"b",
            Comp::C => b"c",
            Comp::Dot => b".",
            Comp::DotDot => b"..",
            Comp::Empty => b"",
            Comp::Case => b"case",
            Comp::Outside => b"outside",
            Comp::Root => b"root",
            Comp::Dir => b"dir",
            Comp::Sentinel => b"sentinel",
            Comp::Proc => b"proc",
            Comp::Opaque => b".wh..wh..opq",
            Comp::AufsMeta => b".wh..wh.plnk",
            Comp::Whiteout(w) => return [&b".wh."[..], w.bytes()].concat(),
            // A slash would only split it; NUL is kept, the unpacker must refuse it.
            Comp::Bytes(b) => return b.iter().copied().filter(|&c| c != b'/').collect(),
        };
        fixed.to_vec()
    }
}

impl Name {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.absolute {
            out.push(b'/');
        }
        let comps: Vec<Vec<u8>> = self.comps.iter().take(8).map(Comp::bytes).collect();
        out.extend(comps.join(&b'/'));
        if self.trailing_slash {
            out.push(b'/');
        }
        out
    }
}

impl XattrKey {
    fn bytes(&self) -> Vec<u8> {
        match self {
            XattrKey::User => b"user.fuzz".to_vec(),
            XattrKey::TrustedOpaque => b"trusted.overlay.opaque".to_vec(),
            XattrKey::TrustedRedirect => b"trusted.overlay.redirect".to_vec(),
            XattrKey::SecurityCapability => b"security.capability".to_vec(),
            XattrKey::Raw(b) => b.clone(),
        }
    }
}

/// One PAX record: its length counts itself.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// Appends a header and its data, padded to the block size.
fn push(out: &mut Vec<u8>, header: &mut tar::Header, data: &[u8]) {
    header.set_size(data.len() as u64);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// A header of `kind` whose name field holds the first 100 bytes of `name`, unchecked.
fn header(kind: tar::EntryType, name: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    let field = &mut h.as_old_mut().name;
    let n = name.len().min(field.len());
    field[..n].copy_from_slice(&name[..n]);
    h.set_mtime(1_600_000_000);
    h
}

impl Layer {
    fn tar(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for m in self.members.iter().take(32) {
            m.append(&mut out);
        }
        out.resize(out.len() + 1024, 0);
        out
    }
}

impl Member {
    fn append(&self, out: &mut Vec<u8>) {
        use tar::EntryType as T;
        let path = self.path.bytes();
        let (kind, link) = match &self.kind {
            Kind::File => (T::Regular, None),
            Kind::Dir => (T::Directory, None),
            Kind::Symlink(t) => (T::Symlink, Some(t.bytes())),
            Kind::Hardlink(t) => (T::Link, Some(t.bytes())),
            Kind::Fifo => (T::Fifo, None),
            Kind::Char => (T::Char, None),
            Kind::Block => (T::Block, None),
            Kind::PaxGlobal => (T::XGlobalHeader, None),
            Kind::Other(b) => (T::new(*b), None),
        };
        let mut records = Vec::new();
        for p in self.pax.iter().take(4) {
            records.extend(match p {
                Pax::Mtime(s) => pax_record(b"mtime", s.as_bytes()),
                Pax::Xattr(k, v) => pax_record(&[&b"SCHILY.xattr."[..], &k.bytes()].concat(), v),
                Pax::Path(n) => pax_record(b"path", &n.bytes()),
                Pax::LinkPath(n) => pax_record(b"linkpath", &n.bytes()),
                Pax::Uid(s) => pax_record(b"uid", s.as_bytes()),
                Pax::Raw(k, v) => pax_record(k, v),
            });
        }
        let long = path.len() > 100 || link.as_ref().is_some_and(|l| l.len() > 100);
        match self.long {
            LongName::Pax => {
                records.extend(pax_record(b"path", &path));
                if let Some(l) = &link {
                    records.extend(pax_record(b"linkpath", l));
                }
            }
            LongName::Gnu if long => {
                let mut name = path.clone();
                name.push(0);
                push(out, &mut header(T::GNULongName, b"././@LongLink"), &name);
                if let Some(l) = &link {
                    let mut target = l.clone();
                    target.push(0);
                    push(out, &mut header(T::GNULongLink, b"././@LongLink"), &target);
                }
            }
            _ => {}
        }
        if !records.is_empty() {
            push(out, &mut header(T::XHeader, b"PaxHeaders/x"), &records);
        }
        let mut h = header(kind, &path);
        if let Some(l) = &link {
            let field = &mut h.as_old_mut().linkname;
            let n = l.len().min(field.len());
            field[..n].copy_from_slice(&l[..n]);
        }
        h.set_mode(u32::from(self.mode) & 0o7777);
        h.set_uid(u64::from(self.owner));
        h.set_gid(u64::from(self.owner));
        let data: &[u8] = match kind {
            T::Regular | T::XGlobalHeader => &self.data[..self.data.len().min(64)],
            _ => &[],
        };
        push(out, &mut h, data);
    }
}
