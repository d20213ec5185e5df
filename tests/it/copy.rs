//! `rctl cp`, as `docker cp`: files and directories out of and into a running container, tar
//! streams on stdin and stdout, and symlinks in the container that point at host paths, which
//! must resolve inside the container and never reach the host's files.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) {
    assert!(out.status.success(), "rctl failed: {out:?}");
}

/// A unit that runs `setup`, says ready and stays up; its init's pid once it is ready.
fn running_box(d: &Daemon, name: &str, setup: &str) -> i64 {
    d.write_unit(
        name,
        &unit(
            &format!("{setup} && echo ready; while true; do sleep 1; done"),
            "[network]\nmode = \"none\"\n",
        ),
    );
    let pid = pid_of(&d.wait_state(name, "running", 20 * SEC));
    wait_until(10 * SEC, "the container's setup", || {
        text(&d.rctl(&["logs", name]).stdout).contains("ready")
    });
    pid
}

/// A path in the container's root, seen from the host (the test runs as root).
fn inside(pid: i64, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root{path}"))
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// rctl with `input` on its stdin.
fn rctl_with_stdin(d: &Daemon, args: &[&str], input: &[u8]) -> Output {
    let mut child = d
        .rctl_command(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run rctl");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// A tar stream of regular files, written raw (the tar crate refuses `..` in names, a hostile
/// client would not).
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn cp_copies_files_and_directories_out_and_in() {
    let d = Daemon::start();
    let pid = running_box(
        &d,
        "box",
        "mkdir -p /srv/dir/sub && echo hello > /srv/dir/a && chmod 640 /srv/dir/a \
         && echo deep > /srv/dir/sub/b && touch -d '2020-01-02 03:04:05' /srv/dir/sub/b \
         && ln -s /etc/shadow /srv/dir/shadow",
    );
    let host = tempfile::tempdir().unwrap();
    let h = |p: &str| host.path().join(p);
    let hs = |p: &str| h(p).display().to_string();

    // A file out, to a new name: content and mode.
    ok(&d.rctl(&["cp", "box:/srv/dir/a", &hs("a.txt")]));
    assert_eq!(std::fs::read_to_string(h("a.txt")).unwrap(), "hello\n");
    assert_eq!(mode(&h("a.txt")), 0o640);
    // A directory out, into an existing directory: recursive, mtimes kept, a symlink a symlink.
    std::fs::create_dir(h("out")).unwrap();
    ok(&d.rctl(&["cp", "box:/srv/dir", &hs("out")]));
    assert_eq!(std::fs::read_to_string(h("out/dir/a")).unwrap(), "hello\n");
    assert_eq!(
        std::fs::read_to_string(h("out/dir/sub/b")).unwrap(),
        "deep\n"
    );
    let mtime = std::fs::metadata(h("out/dir/sub/b"))
        .unwrap()
        .modified()
        .unwrap();
    let want = std::time::UNIX_EPOCH + Duration::from_secs(1_577_934_245);
    assert_eq!(mtime, want);
    assert_eq!(
        std::fs::read_link(h("out/dir/shadow")).unwrap(),
        Path::new("/etc/shadow")
    );
    // A directory's contents (SRC/.) into a directory that does not exist yet.
    ok(&d.rctl(&["cp", "box:/srv/dir/.", &hs("contents")]));
    assert!(h("contents/sub/b").is_file());
    // A directory onto a file: refused.
    let out = d.rctl(&["cp", "box:/srv/dir", &hs("a.txt")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // `-`: a tar stream on stdout.
    let out = d.rctl(&["cp", "box:/srv/dir", "-"]);
    ok(&out);
    let mut names = Vec::new();
    for e in tar::Archive::new(out.stdout.as_slice()).entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = String::new();
        e.read_to_string(&mut data).unwrap();
        names.push(format!("{}={data}", e.path().unwrap().display()));
    }
    assert_eq!(
        names,
        [
            "dir=",
            "dir/a=hello\n",
            "dir/shadow=",
            "dir/sub=",
            "dir/sub/b=deep\n"
        ]
    );

    // A file in, to a new name: content and mode; it belongs to the container's root.
    std::fs::write(h("in.txt"), "from the host\n").unwrap();
    std::fs::set_permissions(h("in.txt"), std::fs::Permissions::from_mode(0o604)).unwrap();
    ok(&d.rctl(&["cp", &hs("in.txt"), "box:/srv/new.txt"]));
    let got = inside(pid, "/srv/new.txt");
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "from the host\n");
    assert_eq!(mode(&got), 0o604);
    // A file onto an existing directory goes inside it.
    ok(&d.rctl(&["cp", &hs("in.txt"), "box:/srv/dir"]));
    assert!(inside(pid, "/srv/dir/in.txt").is_file());
    // A host name that is not UTF-8 is still a name to open (its bytes, shown lossily).
    let latin1 = host.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    std::fs::write(&latin1, "latin-1\n").unwrap();
    let out = d
        .rctl_command(&["cp"])
        .arg(&latin1)
        .arg("box:/srv/dir/cafe")
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(
        std::fs::read_to_string(inside(pid, "/srv/dir/cafe")).unwrap(),
        "latin-1\n"
    );
    // A directory in, recursively.
    std::fs::create_dir_all(h("tree/sub")).unwrap();
    std::fs::write(h("tree/sub/x"), "x").unwrap();
    std::os::unix::fs::symlink("sub/x", h("tree/link")).unwrap();
    ok(&d.rctl(&["cp", &hs("tree"), "box:/srv/"]));
    assert_eq!(
        std::fs::read_to_string(inside(pid, "/srv/tree/sub/x")).unwrap(),
        "x"
    );
    assert_eq!(
        std::fs::read_link(inside(pid, "/srv/tree/link")).unwrap(),
        Path::new("sub/x")
    );
    // `-`: a tar stream from stdin, extracted in a directory.
    let out = rctl_with_stdin(&d, &["cp", "-", "box:/srv"], &tar_of(&[("streamed", b"s")]));
    ok(&out);
    assert_eq!(
        std::fs::read_to_string(inside(pid, "/srv/streamed")).unwrap(),
        "s"
    );
}

#[test]
fn cp_resolves_container_symlinks_inside_the_container_never_on_the_host() {
    let d = Daemon::start();
    // A host directory with a file the container's links name by their absolute paths.
    let host_dir = PathBuf::from(format!(
        "/tmp/rcd-cp-sentinel-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir(&host_dir).unwrap();
    struct Gone(PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _gone = Gone(host_dir.clone());
    let sentinel = host_dir.join("sentinel");
    std::fs::write(&sentinel, "host secret\n").unwrap();
    let hd = host_dir.display().to_string();
    let pid = running_box(
        &d,
        "box",
        &format!(
            "mkdir -p {hd} && echo container > {hd}/sentinel \
             && ln -s {hd}/sentinel /etc/link-to-sentinel && ln -s {hd} /linkdir \
             && ln -s /etc/shadow /etc/link-to-shadow"
        ),
    );
    let host = tempfile::tempdir().unwrap();
    let h = |p: &str| host.path().join(p);
    let hs = |p: &str| h(p).display().to_string();
    let host_untouched = || {
        assert_eq!(std::fs::read_to_string(&sentinel).unwrap(), "host secret\n");
        let names: Vec<_> = std::fs::read_dir(&host_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["sentinel"], "the host directory was written to");
    };

    // Out: a link to /etc/shadow arrives as that link; the host's file is never read.
    ok(&d.rctl(&["cp", "box:/etc/link-to-shadow", &hs("shadow")]));
    let m = std::fs::symlink_metadata(h("shadow")).unwrap();
    assert!(m.file_type().is_symlink(), "{m:?}");
    assert_eq!(
        std::fs::read_link(h("shadow")).unwrap(),
        Path::new("/etc/shadow")
    );
    // -L follows the link, inside the container: its file, not the host's.
    ok(&d.rctl(&["cp", "-L", "box:/etc/link-to-sentinel", &hs("followed")]));
    assert_eq!(
        std::fs::read_to_string(h("followed")).unwrap(),
        "container\n"
    );
    // A path through a directory link, out: the container's directory.
    ok(&d.rctl(&["cp", "box:/linkdir/sentinel", &hs("through")]));
    assert_eq!(
        std::fs::read_to_string(h("through")).unwrap(),
        "container\n"
    );

    // In, onto a link to the host's absolute path: the container's file gets the data.
    std::fs::write(h("payload"), "payload\n").unwrap();
    ok(&d.rctl(&["cp", &hs("payload"), "box:/etc/link-to-sentinel"]));
    assert_eq!(
        std::fs::read_to_string(inside(pid, &format!("{hd}/sentinel"))).unwrap(),
        "payload\n"
    );
    host_untouched();
    // In, into a directory that is such a link.
    ok(&d.rctl(&["cp", &hs("payload"), "box:/linkdir/"]));
    assert!(inside(pid, &format!("{hd}/payload")).is_file());
    host_untouched();
    // A tar stream whose entry's parent is that link: resolved by the daemon inside the root.
    let out = rctl_with_stdin(
        &d,
        &["cp", "-", "box:/"],
        &tar_of(&[("linkdir/streamed", b"streamed")]),
    );
    ok(&out);
    assert!(inside(pid, &format!("{hd}/streamed")).is_file());
    host_untouched();
    // A tar entry with "..": refused, nothing written.
    let out = rctl_with_stdin(
        &d,
        &["cp", "-", "box:/tmp"],
        &tar_of(&[("../../escaped", b"escaped")]),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("archive entry \"../../escaped\" refused"),
        "{out:?}"
    );
    assert!(!inside(pid, "/escaped").exists());
    assert!(!Path::new("/escaped").exists());
    host_untouched();

    // Errors name the unit and the path.
    let out = d.rctl(&["cp", "box:/no/such/file", &hs("x")]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(text(&out.stderr).contains("box:/no/such/file"), "{out:?}");
    let out = d.rctl(&["cp", &hs("payload"), "box:/no/such/dir/"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(text(&out.stderr).contains("box:/no/such/dir"), "{out:?}");
    let out = d.rctl(&["cp", "nobox:/etc", &hs("x")]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(text(&out.stderr).contains("not loaded"), "{out:?}");
    ok(&d.rctl(&["stop", "box"]));
    d.wait_state("box", "stopped", 20 * SEC);
    let out = d.rctl(&["cp", "box:/etc", &hs("x")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("unit box is not running"),
        "{out:?}"
    );
    assert!(!h("x").exists());
}

#[test]
fn cp_into_a_read_only_root_is_refused_with_the_reason() {
    let d = Daemon::start();
    d.write_unit(
        "ro",
        &unit(
            "echo ready; while true; do sleep 1; done",
            "read_only = true\n[network]\nmode = \"none\"\n",
        ),
    );
    let pid = pid_of(&d.wait_state("ro", "running", 20 * SEC));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("f");
    std::fs::write(&src, "x").unwrap();
    let out = d.rctl(&["cp", src.to_str().unwrap(), "ro:/"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("ro:/") && text(&out.stderr).contains("Read-only file system"),
        "{out:?}"
    );
    assert!(!inside(pid, "/f").exists());
    // Reading out of it works as ever.
    ok(&d.rctl(&[
        "cp",
        "ro:/bin/busybox",
        tmp.path().join("bb").to_str().unwrap(),
    ]));
    assert!(tmp.path().join("bb").is_file());
}
