//! Disk full under `--root`: the state root on a 64 MB tmpfs (writable layers, records, logs;
//! the busybox rootfs and the units directory stay elsewhere), filled to the last byte while a
//! container logs heavily and units change. The daemon must stay up, say what it could not do,
//! keep the healthy container running, and recover once the space is back.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::harness::*;
use crate::invariants::{settle_and_check, Want};

const T: Duration = Duration::from_secs(30);

/// A tmpfs mounted at a daemon's root; unmounted (and the test directory removed) on drop.
struct Tmpfs {
    at: PathBuf,
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(at: PathBuf, dir: PathBuf) -> Self {
        std::fs::create_dir_all(&at).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=64m,mode=0755"),
        )
        .expect("mount tmpfs");
        Tmpfs { at, dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Detached: a shim that outlived the daemon may still hold a log open on it.
        let _ = nix::mount::umount2(&self.at, nix::mount::MntFlags::MNT_DETACH);
        // The daemon's temporary directory could not remove the mount point while mounted.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The daemon first, then the tmpfs: fields drop in order, so the daemon's own cleanup
/// (containers deleted, overlays unmounted) runs while its root is still there.
struct FullDisk {
    d: Daemon,
    _tmpfs: Tmpfs,
}

fn sleeper(v: u32) -> String {
    format!(
        "{}\n[container.env]\nV = \"{v}\"\n[restart]\npolicy = \"always\"\ndelay = \"200ms\"\n\
         max_delay = \"1s\"\n[network]\nmode = \"none\"\n",
        unit("exec sleep 1000", "stop_signal = \"KILL\"")
    )
}

/// A unit printing about ten thousand lines a second (throttled so it leaves the machine's
/// two cores to the daemon), its log rotated at 1 MB. Only shell builtins in the loop: the
/// invariant check wants one process per container, so the pause is a `read` timing out on
/// a fifo nobody writes, not a `usleep` child.
fn logger() -> String {
    format!(
        "{}\n[logs]\nmax_size = \"1M\"\n[network]\nmode = \"none\"\n",
        unit(
            "mkfifo /tick; exec 3<>/tick; rm /tick; i=0; while true; do i=$((i+1)); \
             echo \"line $i: padding padding padding padding padding padding padding\"; \
             [ $((i % 100)) = 0 ] && read -t 0.01 -u 3 x; done",
            "stop_signal = \"KILL\""
        )
    )
}

/// Writes `path` until the filesystem refuses more; returns the bytes written.
fn fill(path: &std::path::Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let mut written = 0;
    // Big chunks first, then small ones for the last blocks; bounded by the tmpfs size.
    for chunk in [1 << 20, 4096] {
        let buf = vec![0u8; chunk];
        for _ in 0..(128 << 20) / chunk {
            match f.write_all(&buf) {
                Ok(()) => written += chunk as u64,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
    }
    let _ = f.sync_all();
    written
}

fn free_bytes(path: &std::path::Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).unwrap();
    s.blocks_available() * s.fragment_size()
}

#[test]
fn disk_full_under_the_root() {
    let d = Daemon::new();
    let tmpfs = Tmpfs::mount(d.root.clone(), d.dir.path().to_path_buf());
    let mut env = FullDisk { d, _tmpfs: tmpfs };
    let d = &mut env.d;
    d.write_unit("uh", &sleeper(0));
    d.write_unit("ul", &logger());
    d.write_unit("uc", &sleeper(1));
    d.spawn();
    let h = pid_of(&d.wait_state("uh", "running", T));
    let l = pid_of(&d.wait_state("ul", "running", T));
    d.wait_state("uc", "running", T);
    std::thread::sleep(Duration::from_millis(500));

    let filler = d.root.join("filler");
    let filled = fill(&filler);
    eprintln!(
        "disk full: filler {filled} bytes, {} bytes left",
        free_bytes(&d.root)
    );
    // Units change while it is full: one added, one changed (its new container needs a
    // writable layer and a bundle, which cannot be written).
    d.write_unit("un", &sleeper(2));
    d.write_unit("uc", &sleeper(3));
    // What could not be done is said in the unit's status, not only in the log: a start was
    // tried on the full disk.
    let full = |n: &str| {
        d.status(n)
            .and_then(|s| s["error"].as_str().map(str::to_string))
            .is_some_and(|e| e.contains("No space left"))
    };
    wait_until(T, "a unit's status names the full disk", || {
        full("un") || full("uc")
    });
    assert!(d.log().contains("No space left on device"));

    // Still up and answering; the healthy container untouched; the logger not killed by its
    // log's failures (and neither restarted later while the disk was full: see their pids
    // once the space is back).
    let statuses = d.statuses();
    for s in &statuses {
        eprintln!(
            "disk full: {} {} error={}",
            s["name"], s["state"], s["error"]
        );
    }
    let s = d.status("uh").unwrap();
    assert_eq!((s["state"].as_str(), pid_of(&s)), (Some("running"), h));
    let s = d.status("ul").unwrap();
    assert_eq!(
        (s["state"].as_str(), pid_of(&s)),
        (Some("running"), l),
        "the logger keeps running"
    );
    assert!(pid_alive(h) && pid_alive(l));

    // Space back: the added and changed units start, records save.
    std::fs::remove_file(&filler).unwrap();
    let all = |names: &[&str]| -> BTreeMap<String, Want> {
        names
            .iter()
            .map(|n| (n.to_string(), Want::Running { net: false }))
            .collect()
    };
    let want = all(&["uh", "ul", "uc", "un"]);
    settle_and_check(d, &want, Duration::from_secs(60));
    let uc = d.status("uc").unwrap();
    assert_eq!(
        std::fs::read(format!("/proc/{}/environ", pid_of(&uc)))
            .map(|e| String::from_utf8_lossy(&e).contains("V=3"))
            .ok(),
        Some(true),
        "uc runs its changed version"
    );
    assert_eq!(pid_of(&d.status("uh").unwrap()), h);
    assert_eq!(pid_of(&d.status("ul").unwrap()), l);

    // The records written after recovery are whole: a daemon killed now re-adopts everything.
    d.kill();
    d.spawn();
    settle_and_check(d, &want, T);
    assert_eq!(pid_of(&d.status("uh").unwrap()), h);
    assert_eq!(pid_of(&d.status("ul").unwrap()), l);
}
