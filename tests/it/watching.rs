//! The units directory: rename-over saves, editor droppings, a directory created after start, a
//! symlinked directory, typos saved over a running unit, and a flood of malformed files.

use std::time::Duration;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

#[test]
fn typo_keeps_the_running_container_and_the_fix_applies() {
    let d = Daemon::start();
    d.write_unit("web", &unit("exec sleep 1000", ""));
    let pid = pid_of(&d.wait_state("web", "running", 10 * SEC));
    // Saved with a typo (an unknown key).
    std::fs::write(
        d.units.join("web.toml"),
        unit("exec sleep 1000", "comand = 1\n"),
    )
    .unwrap();
    wait_until(5 * SEC, "error shown", || {
        d.status("web").unwrap()["error"].is_string()
    });
    let s = d.status("web").unwrap();
    assert_eq!(s["state"], "running");
    assert_eq!(pid_of(&s), pid);
    let err = s["error"].as_str().unwrap();
    // The unknown key is the file's 5th line (after the four `unit` writes), at its start.
    assert!(
        err.contains("/web.toml:5:1: unknown field `comand`"),
        "{err}"
    );
    let out = d.rctl(&["status", "web"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("comand"));
    // The fix, with a real change, applies.
    d.write_unit("web", &unit("exec sleep 1002", ""));
    let new = d.wait_new_pid("web", pid, 10 * SEC);
    assert!(cmdline(new).contains("sleep 1002"));
    assert!(d.status("web").unwrap()["error"].is_null());
}

#[test]
fn only_toml_files_count() {
    let d = Daemon::start();
    let body = unit("exec sleep 1000", "");
    for name in [
        ".web.toml.swp",
        "web.toml~",
        "web.toml.bak",
        ".hidden.toml",
        "README",
    ] {
        std::fs::write(d.units.join(name), &body).unwrap();
    }
    d.write_unit("real", &body);
    d.wait_state("real", "running", 10 * SEC);
    // Once a scan that began after every file was written is applied: only `real`.
    assert!(d.rctl(&["reload"]).status.success());
    let names: Vec<String> = d
        .statuses()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["real"]);
}

#[test]
fn directory_created_after_start_and_symlinked_directory() {
    let mut d = Daemon::new();
    std::fs::remove_dir(&d.units).unwrap();
    d.spawn();
    // The directory appears later.
    std::fs::create_dir(&d.units).unwrap();
    d.write_unit("late", &unit("exec sleep 1000", ""));
    d.wait_state("late", "running", 10 * SEC);

    // Replace the directory with a symlink to another one holding a different unit.
    let other = d.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("linked.toml"), unit("exec sleep 1000", "")).unwrap();
    let moved = d.dir.path().join("units.old");
    std::fs::rename(&d.units, &moved).unwrap();
    std::os::unix::fs::symlink(&other, &d.units).unwrap();
    d.wait_state("linked", "running", 10 * SEC);
    wait_until(10 * SEC, "late removed", || d.status("late").is_none());
    // And a file added in the symlink's target is seen.
    std::fs::write(other.join("more.toml"), unit("exec sleep 1000", "")).unwrap();
    d.wait_state("more", "running", 10 * SEC);
}

#[test]
fn a_hundred_malformed_files_are_each_reported_and_the_daemon_is_unharmed() {
    let d = Daemon::start();
    d.write_unit("good", &unit("exec sleep 1000", ""));
    let pid = pid_of(&d.wait_state("good", "running", 10 * SEC));
    let rootfs = rootfs().display().to_string();
    // Each kind of mistake, where it is (line:column) and what is said of it.
    let said = [
        (1, 11, "unclosed table, expected `]`"),
        (3, 11, "command must not be empty"),
        (4, 16, "invalid duration \"soon\""),
        (2, 10, "rootfs must be an absolute path"),
        (5, 10, "invalid size \"lots\""),
        (5, 10, "unknown restart policy \"sometimes\""),
        (3, 11, "invalid type: string \"sh\", expected a sequence"),
        (1, 1, "invalid unquoted key"),
        (4, 2, "unknown table `bogus`"),
        (1, 1, "missing required table [container]"),
    ];
    let located = |i: usize| {
        let (line, col, what) = said[i % 10];
        format!("/bad{i:03}.toml:{line}:{col}: {what}")
    };
    let bad: Vec<String> = (0..100)
        .map(|i| match i % 10 {
            0 => "[container\n".to_string(),
            1 => format!("[container]\nrootfs = {rootfs:?}\ncommand = []\n"),
            2 => format!("[container]\nrootfs = {rootfs:?}\ncommand = [\"sh\"]\nstop_timeout = \"soon\"\n"),
            3 => "[container]\nrootfs = \"relative/path\"\ncommand = [\"sh\"]\n".to_string(),
            4 => format!("[container]\nrootfs = {rootfs:?}\ncommand = [\"sh\"]\n[resources]\nmemory = \"lots\"\n"),
            5 => format!("[container]\nrootfs = {rootfs:?}\ncommand = [\"sh\"]\n[restart]\npolicy = \"sometimes\"\n"),
            6 => format!("[container]\nrootfs = {rootfs:?}\ncommand = \"sh\"\n"),
            7 => "\u{0}\u{1}binary garbage\u{ff}".to_string(),
            8 => format!("[container]\nrootfs = {rootfs:?}\ncommand = [\"sh\"]\n[bogus]\nx = 1\n"),
            _ => String::new(),
        })
        .collect();
    for (i, text) in bad.iter().enumerate() {
        std::fs::write(d.units.join(format!("bad{i:03}.toml")), text).unwrap();
    }
    wait_until(10 * SEC, "all 101 listed", || d.statuses().len() == 101);
    let all = d.statuses();
    for s in &all {
        if s["name"] == "good" {
            continue;
        }
        assert_eq!(s["state"], "invalid", "{s:#}");
        let err = s["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error: {s:#}"));
        let i: usize = s["name"].as_str().unwrap()["bad".len()..].parse().unwrap();
        assert!(
            err.contains(&located(i)),
            "error names file:line:col: {err}, want {}",
            located(i)
        );
    }
    let s = d.status("good").unwrap();
    assert_eq!(pid_of(&s), pid);
    assert!(d.runtime_containers().len() == 1);
    // rctl check reports each file with file:line:col and exits 1.
    let out = d.rctl(&[
        "check",
        "--config",
        d.config.to_str().unwrap(),
        d.units.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for i in 0..100 {
        assert!(
            text.contains(&located(i)),
            "{} missing from:\n{text}",
            located(i)
        );
    }
}

#[test]
fn an_untrusted_or_vanished_directory_changes_nothing_and_says_so() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start();
    d.write_unit("web", &unit("exec sleep 1000", ""));
    let pid = pid_of(&d.wait_state("web", "running", 10 * SEC));

    // Group-writable directory: refused, reported, the container untouched.
    std::fs::set_permissions(&d.units, std::fs::Permissions::from_mode(0o775)).unwrap();
    d.write_unit("new", &unit("exec sleep 1000", ""));
    wait_until(5 * SEC, "refusal reported", || {
        String::from_utf8_lossy(&d.rctl(&["list"]).stderr).contains("not being read")
    });
    assert!(
        d.status("new").is_none(),
        "nothing loads from an untrusted directory"
    );
    assert_eq!(pid_of(&d.status("web").unwrap()), pid);
    std::fs::set_permissions(&d.units, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.wait_state("new", "running", 10 * SEC);

    // A file others may write is refused; fixing only its mode loads it.
    let loose = d.units.join("loose.toml");
    std::fs::write(&loose, unit("exec sleep 1000", "")).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o666)).unwrap();
    wait_until(5 * SEC, "loose refused", || {
        d.status("loose")
            .is_some_and(|s| s["error"].as_str().is_some_and(|e| e.contains("writable")))
    });
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    d.wait_state("loose", "running", 10 * SEC);

    // The directory vanishes: everything keeps running; an empty directory removes all.
    let moved = d.dir.path().join("moved");
    std::fs::rename(&d.units, &moved).unwrap();
    wait_until(5 * SEC, "vanished reported", || {
        String::from_utf8_lossy(&d.rctl(&["list"]).stderr).contains("does not exist")
    });
    assert_eq!(pid_of(&d.status("web").unwrap()), pid);
    std::fs::create_dir(&d.units).unwrap();
    wait_until(10 * SEC, "all removed", || d.statuses().is_empty());
    assert!(!pid_alive(pid));

    // A never-started unit whose file goes is forgotten at once.
    d.write_unit(
        "idle",
        &unit("exec sleep 1000", "[install]\nautostart = false\n"),
    );
    d.wait_state("idle", "pending", 5 * SEC);
    d.remove_unit("idle");
    wait_until(5 * SEC, "idle forgotten", || d.status("idle").is_none());
}

#[test]
fn a_second_daemon_on_the_same_root_is_refused() {
    let d = Daemon::start();
    let out = std::process::Command::new(RCD)
        .arg("--units-dir")
        .arg(&d.units)
        .arg("--root")
        .arg(&d.root)
        .arg("--socket")
        .arg(d.dir.path().join("other.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another rcd is running"));
    assert!(
        d.rctl(&["list"]).status.success(),
        "the first one is unharmed"
    );
}

#[test]
fn an_idle_daemon_does_not_rescan() {
    let d = Daemon::start();
    for i in 0..20 {
        d.write_unit(
            &format!("idle{i}"),
            &unit("exec sleep 1000", "[install]\nautostart = false\n"),
        );
    }
    wait_until(10 * SEC, "all loaded", || d.statuses().len() == 20);
    std::thread::sleep(Duration::from_millis(300));
    let pid = d.child.as_ref().unwrap().id();
    let reads = || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/io"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("syscr: ")?.parse().ok())
            .unwrap()
    };
    let before = reads();
    std::thread::sleep(Duration::from_secs(1));
    let after = reads();
    // A rescan reads 20 files; an idle daemon reads nothing (no polling, no event echo).
    assert!(
        after - before < 10,
        "{} read syscalls in 1 s of idling",
        after - before
    );
}

#[test]
fn a_relative_units_dir_is_watched() {
    let mut d = Daemon::new();
    let rel = std::path::PathBuf::from(d.units.file_name().unwrap());
    let abs = std::mem::replace(&mut d.units, rel);
    d.cwd = Some(d.dir.path().to_path_buf());
    d.spawn();
    d.units = abs;
    d.write_unit("rel", &unit("exec sleep 1000", ""));
    d.wait_state("rel", "running", 10 * SEC);
    // Removing the last unit leaves no parent cgroup behind.
    d.remove_unit("rel");
    wait_until(10 * SEC, "gone", || d.statuses().is_empty());
    let tag = rcd::config::root_tag(&d.root);
    wait_until(5 * SEC, "parent cgroups removed", || {
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .all(|h| !h.path().join(format!("rcd-{tag}")).exists())
    });
}
