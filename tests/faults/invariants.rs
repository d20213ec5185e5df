//! After a fault: what runs equals what the unit files ask for, and nothing is left that no unit
//! owns. Every check reads the system itself (runc's state, /proc, mountinfo, the state root),
//! then compares it with the daemon's answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// What a unit file asks for, once things settle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Running, with one container and one process; `net`: in a namespace of its own.
    Running { net: bool },
    /// Stopped by `rctl stop`, held.
    Held,
    /// Ran once and exited with this code (policy `no`).
    Exited(i32),
    /// Gave up after its retries (`on-failure`).
    Failed,
    /// Waiting out a long backoff (`always`).
    Backoff,
    /// Loaded and never started (`autostart = false`).
    Pending,
    /// A file that never had a valid version: its error reported, nothing run.
    Invalid,
}

impl Want {
    fn state(self) -> &'static str {
        match self {
            Want::Running { .. } => "running",
            Want::Held => "stopped",
            Want::Exited(_) => "exited",
            Want::Failed => "failed",
            Want::Backoff => "restarting",
            Want::Pending => "pending",
            Want::Invalid => "invalid",
        }
    }
}

/// Waits until every unit is in the state it asks for (and no other unit is listed), then
/// checks every invariant. Panics with what differs.
pub fn settle_and_check(d: &Daemon, want: &BTreeMap<String, Want>, within: Duration) {
    let expected: BTreeMap<String, String> = want
        .iter()
        .map(|(n, w)| (n.clone(), w.state().into()))
        .collect();
    let mut last = String::new();
    let mut previous = None;
    // Settled: the states as wanted, each running unit's pid alive, and the same containers
    // and pids at two polls in a row (a record read just after a restart, before its exit is
    // observed, may still say `running`).
    let settled = (0..within.as_millis() / 100).any(|_| {
        let all = d.statuses();
        let got: BTreeMap<String, (String, Value, Value)> = all
            .iter()
            .map(|s| {
                let state = s["state"].as_str().unwrap_or("").to_string();
                (
                    name(s).to_string(),
                    (state, s["container_id"].clone(), s["pid"].clone()),
                )
            })
            .collect();
        let states: BTreeMap<String, String> =
            got.iter().map(|(n, v)| (n.clone(), v.0.clone())).collect();
        let alive = got
            .values()
            .filter(|v| v.0 == "running")
            .all(|v| v.2.as_i64().is_some_and(pid_alive));
        let stable = previous.as_ref() == Some(&got);
        if states == expected && alive && stable {
            return true;
        }
        last = format!("want {expected:?}\n got {states:?}");
        previous = Some(got);
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    if !settled {
        // What the units that differ say, and what the daemon logged of them: the failure
        // of a seeded run under load must be readable without a replay.
        let mut why = String::new();
        for s in d.statuses() {
            let n = name(&s);
            if expected.get(n).map(String::as_str) != s["state"].as_str() {
                why += &format!("{n}: error {}\n", s["error"]);
                for l in d.log().lines().filter(|l| l.contains(&format!("unit={n}"))) {
                    why += &format!("  {l}\n");
                }
            }
        }
        panic!("units did not settle within {within:?}\n{last}\n{why}");
    }
    check(d, want);
}

fn name(s: &Value) -> &str {
    s["name"].as_str().unwrap_or_default()
}

/// The unit a container id of this daemon belongs to (`rcd-<tag>-<unit>-<generation>`).
fn unit_of<'a>(d: &Daemon, id: &'a str) -> Option<&'a str> {
    let prefix = format!("rcd-{}-", rcd::config::root_tag(&d.root));
    id.strip_prefix(&prefix)?.rsplit_once('-').map(|(u, _)| u)
}

/// Every invariant, on a settled daemon.
pub fn check(d: &Daemon, want: &BTreeMap<String, Want>) {
    let statuses = d.statuses();
    let tag = rcd::config::root_tag(&d.root);
    let by_name: BTreeMap<&str, &Value> = statuses.iter().map(|s| (name(s), s)).collect();

    // The daemon's answer: each unit as asked.
    let mut running = BTreeSet::new();
    let mut networked = BTreeSet::new();
    for (n, w) in want {
        let s = by_name[n.as_str()];
        match w {
            Want::Running { net } => {
                let id = s["container_id"]
                    .as_str()
                    .expect("a running unit's container");
                assert!(pid_alive(pid_of(s)), "{n}: pid alive {s:#}");
                running.insert(id.to_string());
                if *net {
                    networked.insert(id.to_string());
                    assert!(s["network"].is_object(), "{n} has its network: {s:#}");
                }
            }
            Want::Held => assert_eq!(s["held"], true, "{n}: {s:#}"),
            Want::Exited(code) => assert_eq!(s["exit_code"], *code, "{n}: {s:#}"),
            Want::Pending => assert!(s["container_id"].is_null(), "{n}: {s:#}"),
            Want::Invalid => assert!(s["error"].is_string(), "{n} says why: {s:#}"),
            Want::Failed | Want::Backoff => {}
        }
    }

    // The runtime holds exactly the running containers: none orphaned, none duplicated.
    let runtime: BTreeSet<String> = d.runtime_containers().into_iter().collect();
    assert_eq!(runtime, running, "runc list vs running units");

    // Every process in one of this daemon's container cgroups belongs to a running container,
    // and each running container has exactly its one process (`sleep`).
    let mut procs: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut shims: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let marker = format!("/rcd-{tag}-");
    let runc_root = d.root.join("runc").display().to_string();
    for pid in all_pids() {
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if let Some(at) = cgroup.find(&marker) {
            let id: String = cgroup[at + 1..]
                .chars()
                .take_while(|c| *c != '/' && *c != '\n')
                .collect();
            if pid_alive(pid) {
                procs.entry(id).or_default().push(pid);
            }
        }
        let cmd = cmdline(pid);
        if cmd.contains("rcd-shim") && cmd.contains(&runc_root) && pid_alive(pid) {
            let id = cmd
                .split(' ')
                .skip_while(|a| *a != "--id")
                .nth(1)
                .unwrap_or_default()
                .to_string();
            shims.entry(id).or_default().push(pid);
        }
    }
    let with_procs: BTreeSet<String> = procs.keys().cloned().collect();
    assert_eq!(with_procs, running, "container processes: {procs:?}");
    for (id, pids) in &procs {
        assert_eq!(pids.len(), 1, "{id}: one process, not {pids:?}");
    }
    let supervised: BTreeSet<String> = shims.keys().cloned().collect();
    assert_eq!(supervised, running, "shims: {shims:?}");
    for (id, pids) in &shims {
        assert_eq!(pids.len(), 1, "{id}: one shim, not {pids:?}");
    }

    // Mounts only for running containers, and those waiting out a backoff (their writable
    // layer stays mounted for the restart by policy).
    let backing_off: BTreeSet<&str> = want
        .iter()
        .filter(|(_, w)| **w == Want::Backoff)
        .filter_map(|(n, _)| by_name[n.as_str()]["container_id"].as_str())
        .collect();
    // A retired instance is unmounted in the background: given a moment too.
    let unowned = || -> Vec<String> {
        d.mounts()
            .into_iter()
            // The root itself may be a mount point of its own (the disk-full test's tmpfs).
            .filter(|m| *m != d.root.display().to_string())
            .filter(|m| {
                // `containers/<id>/bundle/rootfs`, or a pinned namespace `netns/<id>`.
                let rel = m.strip_prefix(&d.root.display().to_string()).unwrap_or(m);
                let owner = rel
                    .strip_prefix("/containers/")
                    .or_else(|| rel.strip_prefix("/netns/"))
                    .and_then(|rest| rest.split('/').next())
                    .unwrap_or_default();
                !running.contains(owner) && !backing_off.contains(owner)
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !unowned().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = unowned();
    assert!(left.is_empty(), "mounts without a running owner: {left:?}");

    // Container directories only for the units' current containers. A retired instance's
    // directory is removed in the background after its replacement starts: given a moment.
    let current: BTreeSet<String> = statuses
        .iter()
        .filter_map(|s| s["container_id"].as_str().map(str::to_string))
        .collect();
    let stray = || -> Vec<(String, Vec<String>)> {
        dir_names(&d.root.join("containers"))
            .into_iter()
            .filter(|id| {
                !current.contains(id) || !unit_of(d, id).is_some_and(|u| want.contains_key(u))
            })
            .map(|id| {
                let inside = dir_names(&d.root.join("containers").join(&id));
                (id, inside)
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !stray().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = stray();
    assert!(
        left.is_empty(),
        "container directories no unit owns: {left:?}"
    );

    // Namespaces and CNI state only for the running networked containers.
    let pinned: BTreeSet<String> = dir_names(&d.root.join("netns")).into_iter().collect();
    assert_eq!(pinned, networked, "pinned namespaces");
    // Cache entries are `<network>+<container id>+<interface>.json`.
    for entry in dir_names(&d.root.join("cni/cache")) {
        let id = entry.split('+').nth(1).unwrap_or_default();
        assert!(
            networked.contains(id),
            "CNI cache without a network: {entry}"
        );
    }
    native_network_matches(d, &networked);
    let leaked_netns: Vec<String> = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("rcd-{tag}-")))
        .map(str::to_string)
        .collect();
    assert!(leaked_netns.is_empty(), "{leaked_netns:?}");

    // Log files are per unit (`<unit>.log`, rotated `<unit>.log.N`), kept after a removal by
    // design (`[logs] keep_removed`); nothing half-written is left beside them.
    for f in dir_names(&d.root.join("logs")) {
        let rotated = f
            .rsplit_once(".log.")
            .is_some_and(|(_, n)| n.chars().all(|c| c.is_ascii_digit()));
        assert!(
            (f.ends_with(".log") || rotated) && !f.starts_with('.'),
            "unexpected file in logs/: {f}"
        );
    }

    // The state is readable as a whole: `rctl list` answers and names every unit.
    let list = d.rctl(&["list"]);
    assert!(list.status.success());
    let list = String::from_utf8_lossy(&list.stdout);
    for n in want.keys() {
        assert!(list.contains(n.as_str()), "{n} in rctl list:\n{list}");
    }
}

/// The native bridge driver's state and the kernel's agree with the running networked
/// containers, and with each other: one record and one lease each and nothing else; on the
/// bridge exactly their veths; in the daemon's nftables maps exactly their published ports.
fn native_network_matches(d: &Daemon, networked: &BTreeSet<String>) {
    let dir = d.root.join("net/rcd");
    let records: BTreeMap<String, Value> = dir_names(&dir.join("attachments"))
        .into_iter()
        .map(|f| {
            let v: Value =
                serde_json::from_slice(&std::fs::read(dir.join("attachments").join(&f)).unwrap())
                    .unwrap_or_else(|e| panic!("record {f}: {e}"));
            (f.trim_end_matches(".json").to_string(), v)
        })
        .collect();
    let ids: BTreeSet<String> = records.keys().cloned().collect();
    assert_eq!(&ids, networked, "native attachment records");
    for (id, r) in &records {
        assert_eq!(r["complete"], true, "{id}: {r:#}");
    }
    let leases: BTreeMap<String, String> = dir_names(&dir.join("leases"))
        .into_iter()
        .filter(|f| f.parse::<std::net::IpAddr>().is_ok())
        .map(|f| {
            let holder = std::fs::read_to_string(dir.join("leases").join(&f)).unwrap();
            (f, holder)
        })
        .collect();
    let holders: BTreeSet<String> = leases.values().cloned().collect();
    assert_eq!(&holders, networked, "leases: {leases:?}");
    assert_eq!(leases.len(), networked.len(), "one lease each: {leases:?}");
    for (id, r) in &records {
        assert_eq!(
            leases.get(r["address"].as_str().unwrap_or_default()),
            Some(id),
            "{id}'s record and lease agree"
        );
    }
    // The kernel: veths on the bridge are the records' host ends.
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &d.net.bridge])
        .output()
        .unwrap();
    let veths: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    let want_veths: BTreeSet<String> = records
        .values()
        .map(|r| r["host_veth"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(veths, want_veths, "veths on {}", d.net.bridge);
    // The maps: exactly the records' ports (elements as nft prints them).
    let table = format!("rcd_{}", rcd::config::root_tag(&d.root));
    let out = std::process::Command::new("nft")
        .args(["-j", "list", "table", "inet", &table])
        .output()
        .unwrap();
    let mut elements = 0;
    if out.status.success() {
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        for item in v["nftables"].as_array().into_iter().flatten() {
            if let Some(elem) = item["map"]["elem"].as_array() {
                elements += elem.len();
                for e in elem {
                    let text = e.to_string();
                    assert!(
                        leases.keys().any(|ip| text.contains(&format!("\"{ip}\""))),
                        "a map element for no running container: {text}"
                    );
                }
            }
        }
    }
    let ports: usize = records
        .values()
        .map(|r| r["ports"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(elements, ports, "map elements against the records' ports");
}

fn all_pids() -> Vec<i64> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn dir_names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

#[test]
fn the_checks_see_an_orphan_directory_a_stray_mount_and_a_second_process() {
    let mut d = Daemon::new();
    d.write_unit(
        "u1",
        &format!(
            "{}\n[network]\nmode = \"none\"\n",
            unit("exec sleep 1000", "stop_signal = \"KILL\"")
        ),
    );
    d.spawn();
    let want = BTreeMap::from([("u1".to_string(), Want::Running { net: false })]);
    settle_and_check(&d, &want, Duration::from_secs(30));
    let fails = |d: &Daemon| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(d, &want))).is_err()
    };

    // A container directory no unit owns.
    let stray = d
        .root
        .join("containers")
        .join(format!("rcd-{}-u1-1", rcd::config::root_tag(&d.root)));
    std::fs::create_dir_all(&stray).unwrap();
    assert!(fails(&d), "an orphan directory is seen");
    std::fs::remove_dir(&stray).unwrap();

    // A mount no container owns.
    let bogus = d.root.join("netns/bogus");
    std::fs::write(&bogus, "").unwrap();
    nix::mount::mount(
        Some("/proc/self/ns/net"),
        &bogus,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    assert!(fails(&d), "a stray mount is seen");
    nix::mount::umount2(&bogus, nix::mount::MntFlags::MNT_DETACH).unwrap();
    std::fs::remove_file(&bogus).unwrap();
    assert!(!fails(&d), "clean again");

    // A second process in the container (a duplicate start would look so).
    let id = d.status("u1").unwrap()["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(d.root.join("runc"))
        .args(["exec", "-d", &id, "sleep", "999"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    assert!(fails(&d), "a second process is seen");
}
