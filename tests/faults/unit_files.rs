//! The units directory abused while a healthy unit runs: a file truncated mid-write, a file
//! replaced atomically a hundred times a second, symlink loops, 10,000 files, a 100 MB file.
//! Throughout, the healthy unit keeps its one process, and the daemon answers.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::invariants::{settle_and_check, Want};

const T: Duration = Duration::from_secs(30);

/// A quiet unit without a network; `v` is an env value (a change recreates) and `secs` the
/// sleep (so two variants differ in the command too).
fn sleeper(v: u32, secs: u32) -> String {
    format!(
        "{}\n[container.env]\nV = \"{v}\"\n[network]\nmode = \"none\"\n",
        unit(&format!("exec sleep {secs}"), "stop_signal = \"KILL\"")
    )
}

const RUNNING: Want = Want::Running { net: false };

/// A daemon running the healthy unit `uh` (plus whatever `setup` writes first); returns it
/// and the healthy pid.
fn with_healthy(setup: impl FnOnce(&Daemon)) -> (Daemon, i64) {
    let mut d = Daemon::new();
    d.write_unit("uh", &sleeper(0, 1000));
    setup(&d);
    d.spawn();
    let pid = pid_of(&d.wait_state("uh", "running", T));
    (d, pid)
}

/// The healthy unit still runs its first process.
fn still_healthy(d: &Daemon, pid: i64) {
    let s = d.status("uh").expect("uh listed");
    assert_eq!(s["state"], "running", "uh: {s:#}");
    assert_eq!(pid_of(&s), pid, "uh kept its process: {s:#}");
    assert!(pid_alive(pid));
}

/// A variable of a process's environment (what the container was started with).
fn env_of(pid: i64, key: &str) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|b| *b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(&format!("{key}=")).map(str::to_string)
    })
}

/// The daemon's resident set, in kB.
fn rss_kb(d: &Daemon) -> u64 {
    let pid = d.child.as_ref().expect("daemon running").id();
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `rctl check` on `path` (with the daemon's config): its exit success and output.
fn rctl_check(d: &Daemon, path: &Path) -> (bool, String) {
    let out = d.rctl(&[
        "check",
        "--config",
        &d.config.display().to_string(),
        &path.display().to_string(),
    ]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn want(units: &[(&str, Want)]) -> BTreeMap<String, Want> {
    units.iter().map(|(n, w)| (n.to_string(), *w)).collect()
}

#[test]
fn unit_file_truncated_mid_write() {
    let (d, h) = with_healthy(|d| d.write_unit("ut", &sleeper(1, 1000)));
    let old = pid_of(&d.wait_state("ut", "running", T));

    // Written in place, as `echo > file` or a crashed editor does: first a half cut inside the
    // command's string (unterminated, so certainly invalid), the rest a moment later.
    let text = sleeper(2, 1000);
    let cut = text.find("sleep 1000").expect("command in text") + 3;
    let path = d.units.join("ut.toml");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.write_all(&text.as_bytes()[..cut]).unwrap();
    f.sync_all().unwrap();
    wait_until(T, "the half file reported", || {
        d.status("ut").is_some_and(|s| s["error"].is_string())
    });
    // A typo never stops a healthy container: the last valid version keeps running.
    let s = d.status("ut").unwrap();
    assert_eq!(s["state"], "running", "{s:#}");
    assert_eq!(pid_of(&s), old, "the previous version still runs: {s:#}");
    // Cut inside the command on line 3 (`command = ["sh", "-c", "exec sle`): the array is
    // open at the end of the text, column 33.
    let at = format!("{}:3:33: unclosed array", path.display());
    assert!(s["error"].as_str().unwrap().contains(&at), "{s:#}");
    let (ok, said) = rctl_check(&d, &path);
    assert!(!ok && said.contains(&at), "rctl check: {said}");
    still_healthy(&d, h);

    std::thread::sleep(Duration::from_millis(300));
    f.write_all(&text.as_bytes()[cut..]).unwrap();
    drop(f);
    let new = d.wait_new_pid("ut", old, T);
    assert_eq!(
        env_of(new, "V").as_deref(),
        Some("2"),
        "the completed file applies"
    );
    wait_until(T, "the error cleared", || {
        d.status("ut").is_some_and(|s| s["error"].is_null())
    });
    assert!(rctl_check(&d, &path).0);
    settle_and_check(&d, &want(&[("uh", RUNNING), ("ut", RUNNING)]), T);
    still_healthy(&d, h);
}

#[test]
fn unit_file_replaced_atomically_100_times_a_second() {
    let (d, h) = with_healthy(|d| d.write_unit("ur", &sleeper(0, 1000)));
    d.wait_state("ur", "running", T);
    // Alternating variants (another sleep and another env value each time) by rename-over,
    // about every 10 ms for 3 s.
    let start = Instant::now();
    let mut last = 0;
    while start.elapsed() < Duration::from_secs(3) {
        last += 1;
        d.write_unit("ur", &sleeper(last, 1000 + last % 2));
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("storm: {last} renames in {:?}", start.elapsed());
    wait_until(T, "the last variant runs", || {
        d.status("ur")
            .filter(|s| s["state"] == "running")
            .and_then(|s| env_of(pid_of(&s), "V"))
            == Some(last.to_string())
    });
    // One container, no duplicate, nothing orphaned from the ones replaced on the way.
    settle_and_check(&d, &want(&[("uh", RUNNING), ("ur", RUNNING)]), T);
    let s = d.status("ur").unwrap();
    assert_eq!(env_of(pid_of(&s), "V"), Some(last.to_string()));
    assert_eq!(
        cmdline(pid_of(&s)).trim(),
        format!("sleep {}", 1000 + last % 2),
        "the last variant's command"
    );
    still_healthy(&d, h);
}

#[test]
fn symlink_loops_in_the_units_directory() {
    let (d, h) = with_healthy(|d| d.write_unit("ua", &sleeper(1, 1000)));
    let ua = pid_of(&d.wait_state("ua", "running", T));
    let u = &d.units;
    // ua.toml (a running unit's file) re-pointed, atomically, into a loop ua -> ub -> ua.
    symlink("ua.toml", u.join("ub.toml")).unwrap();
    symlink("ub.toml", u.join(".ua.tmp")).unwrap();
    std::fs::rename(u.join(".ua.tmp"), u.join("ua.toml")).unwrap();
    // A link to itself, and directory loops: l1 -> l2 -> l1, and a link back to the directory.
    symlink("uself.toml", u.join("uself.toml")).unwrap();
    symlink("l2", u.join("l1")).unwrap();
    symlink("l1", u.join("l2")).unwrap();
    symlink(".", u.join("back.d")).unwrap();
    symlink(".", u.join("udir.toml")).unwrap();
    // A good unit after them: the scan goes past the loops.
    d.write_unit("un", &sleeper(2, 1000));
    d.wait_state("un", "running", T);

    // Each looping file is reported as its unit's error.
    for n in ["ua", "ub", "uself"] {
        wait_until(T, &format!("{n}'s loop reported"), || {
            d.status(n).is_some_and(|s| {
                s["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("symbolic links"))
            })
        });
    }
    // ua keeps running its last valid version, as for any other broken file.
    assert_eq!(pid_of(&d.status("ua").unwrap()), ua);
    let (ok, said) = rctl_check(&d, u);
    assert!(
        !ok && said.contains("ua.toml") && said.contains("uself.toml"),
        "{said}"
    );
    let looped = want(&[
        ("uh", RUNNING),
        ("un", RUNNING),
        ("ua", RUNNING),
        ("ub", Want::Invalid),
        ("uself", Want::Invalid),
    ]);
    settle_and_check(&d, &looped, T);
    still_healthy(&d, h);

    // Loops gone, ua's file gone: ua is removed, the rest stays.
    for f in [
        "ua.toml",
        "ub.toml",
        "uself.toml",
        "l1",
        "l2",
        "back.d",
        "udir.toml",
    ] {
        std::fs::remove_file(u.join(f)).unwrap();
    }
    settle_and_check(&d, &want(&[("uh", RUNNING), ("un", RUNNING)]), T);
    still_healthy(&d, h);
}

#[test]
fn ten_thousand_files_in_the_units_directory() {
    const UNITS: usize = 300;
    const OTHERS: usize = 9_700;
    let (d, h) = with_healthy(|_| {});
    let rss_before = rss_kb(&d);
    let start = Instant::now();
    // Mostly files the daemon must skip (notes, dotfiles, backups), written while it runs.
    for i in 0..OTHERS {
        let name = match i % 3 {
            0 => format!("note-{i}.txt"),
            1 => format!(".u{i}.toml.swp"),
            _ => format!("u{i}.toml~"),
        };
        std::fs::write(d.units.join(name), "not a unit\n").unwrap();
    }
    let idle = format!(
        "{}\n[install]\nautostart = false\n[network]\nmode = \"none\"\n",
        unit("exec sleep 1000", "")
    );
    for i in 0..UNITS {
        d.write_unit(&format!("uq{i:03}"), &idle);
    }
    wait_until(Duration::from_secs(60), "every unit loaded", || {
        d.statuses().len() == UNITS + 1
    });
    let loaded_in = start.elapsed();
    let list_start = Instant::now();
    let list = d.rctl(&["list"]);
    let list_took = list_start.elapsed();
    assert!(list.status.success());
    let rss_loaded = rss_kb(&d);
    let mut loaded = want(&[("uh", RUNNING)]);
    for i in 0..UNITS {
        loaded.insert(format!("uq{i:03}"), Want::Pending);
    }
    settle_and_check(&d, &loaded, T);
    still_healthy(&d, h);

    for entry in std::fs::read_dir(&d.units).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name() != Some("uh.toml".as_ref()) {
            std::fs::remove_file(p).unwrap();
        }
    }
    settle_and_check(&d, &want(&[("uh", RUNNING)]), T);
    still_healthy(&d, h);
    let rss_after = rss_kb(&d);
    eprintln!(
        "10,000 files: loaded in {loaded_in:?}, rctl list {list_took:?}; daemon RSS {rss_before} kB \
         before, {rss_loaded} kB loaded, {rss_after} kB after removal"
    );
    // Bounded: the skipped files cost nothing kept, a unit a few kB.
    assert!(
        rss_loaded < rss_before + 64 * 1024,
        "RSS {rss_before} -> {rss_loaded} kB"
    );
}

#[test]
fn a_unit_file_of_100_mb() {
    let (d, h) = with_healthy(|_| {});
    let rss_before = rss_kb(&d);
    // A valid unit followed by 100 MB of comment: whole it would parse, so only the size
    // refuses it. Written aside and renamed in, so the daemon sees it whole.
    let tmp = d.units.join(".ubig.tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    f.write_all(sleeper(1, 1000).as_bytes()).unwrap();
    let line = format!("# {}\n", "x".repeat(1022));
    for _ in 0..100 * 1024 {
        f.write_all(line.as_bytes()).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    std::fs::rename(&tmp, d.units.join("ubig.toml")).unwrap();

    wait_until(T, "the big file refused", || {
        d.status("ubig").is_some_and(|s| {
            s["error"]
                .as_str()
                .is_some_and(|e| e.contains("larger than"))
        })
    });
    let s = d.status("ubig").unwrap();
    eprintln!("100 MB file: {}", s["error"]);
    let (ok, said) = rctl_check(&d, &d.units.join("ubig.toml"));
    assert!(!ok && said.contains("larger than"), "{said}");
    settle_and_check(&d, &want(&[("uh", RUNNING), ("ubig", Want::Invalid)]), T);
    let rss_seen = rss_kb(&d);
    eprintln!("100 MB file: daemon RSS {rss_before} kB before, {rss_seen} kB after");
    assert!(
        rss_seen < rss_before + 32 * 1024,
        "the file was not read whole: RSS {rss_before} -> {rss_seen} kB"
    );
    still_healthy(&d, h);

    d.remove_unit("ubig");
    settle_and_check(&d, &want(&[("uh", RUNNING)]), T);
    still_healthy(&d, h);
}
