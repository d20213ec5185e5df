//! Bridge networking through the daemon: a unit with `mode = "bridge"` gets a namespace rcd
//! pins, a veth on the bridge, an address leased by the native driver, published ports in the
//! daemon's nftables table; and when it goes, nothing of it stays (veth, namespace, lease,
//! record, map elements). Each test has its own bridge and subnet, removed at the end.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::registry::http;

const SEC: Duration = Duration::from_secs(1);

/// A daemon; its default network has a bridge and a /24 of its own (see `TestNet`).
fn bridge_daemon() -> Daemon {
    Daemon::start()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

pub fn lines_of(cmd: &[&str]) -> BTreeSet<String> {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

pub fn web_unit(ports: &str) -> String {
    format!(
        "[container]\nrootfs = \"{}\"\ncommand = [\"sh\", \"-c\", \"mkdir -p /www && echo hello-bridge > /www/index.html && exec httpd -f -p 80 -h /www\"]\nstop_signal = \"KILL\"\n\n[network]\nmode = \"bridge\"\nports = [{ports}]\n\n[restart]\npolicy = \"always\"\ndelay = \"200ms\"\nmax_delay = \"500ms\"\n",
        rootfs().display()
    )
}

#[test]
fn a_bridge_unit_answers_on_its_published_port_and_leaves_nothing() {
    let d = bridge_daemon();
    let port = free_port();
    d.write_unit("web", &web_unit(&format!("\"127.0.0.1:{port}:80\"")));
    let s = d.wait_state("web", "running", 20 * SEC);
    let net = &s["network"]["networks"][0];
    assert_eq!(net["name"], "rcd");
    assert_eq!(net["ifname"], "eth0");
    let address = net["address"].as_str().unwrap_or_default().to_string();
    assert!(address.starts_with(&d.net.prefix), "{s:#}");
    let id = s["container_id"].as_str().unwrap().to_string();
    let text = String::from_utf8_lossy(&d.rctl(&["status", "web"]).stdout).to_string();
    assert!(
        text.contains(&format!("Network: rcd eth0 {address}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("Published: 127.0.0.1:{port}:80/tcp")),
        "{text}"
    );

    // `rctl inspect` has the record with the CNI result as the plugins returned it.
    let out = d.rctl(&["inspect", "web"]);
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let joined = &inspect["record"]["network"]["networks"][0];
    assert_eq!(
        joined["gateway"],
        format!("{}1", d.net.prefix),
        "{joined:#}"
    );
    let result = &joined["result"];
    assert_eq!(result["ips"][0]["address"], address, "{result:#}");
    assert!(
        result["interfaces"].as_array().is_some_and(|i| i
            .iter()
            .any(|i| i["name"] == "eth0" && i["mac"].is_string())),
        "{result:#}"
    );

    // The published port answers on the host's loopback (bounded retries: httpd starting).
    let mut body = String::new();
    for _ in 0..50 {
        if let Ok(r) = http(&format!("127.0.0.1:{port}"), "GET", "/", &[], b"") {
            body = r.text();
            if body.contains("hello-bridge") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(body.contains("hello-bridge"), "{body:?}");
    // Its own namespace, pinned under the root; the daemon's table maps the port to it.
    assert!(d.root.join("netns").join(&id).exists());
    let ip = address.split('/').next().unwrap_or_default();
    let table = nft_table(&d);
    assert!(
        table.contains(&format!("127.0.0.1 . tcp . {port} : {ip} . 80")),
        "{table}"
    );

    let attached = lines_of(&["ip", "-o", "link", "show", "master", &d.net.bridge]);
    assert_eq!(attached.len(), 1, "one veth on the bridge: {attached:?}");

    d.remove_unit("web");
    assert_no_trace(&d, &id);
}

/// The daemon's nftables table, as `nft list` prints it (empty if there is none).
pub fn nft_table(d: &Daemon) -> String {
    let table = format!("rcd_{}", rcd::config::root_tag(&d.root));
    let out = Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits for the unit `web` to be gone, then checks that nothing of container `id`'s network
/// remains: namespace, map elements, iptables rules, veth on the bridge, lease, record.
fn assert_no_trace(d: &Daemon, id: &str) {
    wait_until(15 * SEC, "network taken down", || {
        d.status("web").is_none()
            && std::fs::read_dir(d.root.join("netns")).map_or(0, |r| r.count()) == 0
    });
    let rules = lines_of(&["iptables-save"]);
    let left: Vec<_> = rules.iter().filter(|l| l.contains(id)).collect();
    assert!(left.is_empty(), "rules left: {left:#?}");
    let table = nft_table(d);
    let elements: Vec<&str> = table
        .lines()
        .filter(|l| l.contains(" : ") && !l.trim_start().starts_with("type "))
        .collect();
    assert!(elements.is_empty(), "map elements left: {elements:?}");
    // No veth left on this test's bridge (other tests run their own beside it).
    let ports_left = lines_of(&["ip", "-o", "link", "show", "master", &d.net.bridge]);
    assert!(ports_left.is_empty(), "veths left: {ports_left:?}");
    // No lease or record left: one file per address, one per attachment.
    let state: Vec<_> = walk(&d.root.join("net"))
        .into_iter()
        .chain(walk(&d.root.join("cni/ipam")))
        .map(|p| p.display().to_string())
        .filter(|p| p.contains(&d.net.prefix) || p.ends_with(".json"))
        .collect();
    assert!(state.is_empty(), "leases or records left: {state:?}");
}

#[test]
fn after_a_daemon_kill_a_removed_bridge_unit_leaves_nothing() {
    let mut d = bridge_daemon();
    d.write_unit(
        "web",
        &web_unit(&format!("\"127.0.0.1:{}:80\"", free_port())),
    );
    let s = d.wait_state("web", "running", 20 * SEC);
    let id = s["container_id"].as_str().unwrap().to_string();
    d.kill();
    d.remove_unit("web");
    d.spawn();
    assert_no_trace(&d, &id);
}

#[test]
fn a_host_port_in_use_is_a_clear_start_failure_retried_until_free() {
    let d = bridge_daemon();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    d.write_unit("web", &web_unit(&format!("\"127.0.0.1:{port}:80\"")));
    let s = d.wait_state("web", "restarting", 20 * SEC);
    let err = s["error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&format!("127.0.0.1:{port} is in use on the host")),
        "{s:#}"
    );
    drop(holder);
    d.wait_state("web", "running", 20 * SEC);
    d.remove_unit("web");
    wait_until(15 * SEC, "network taken down", || {
        std::fs::read_dir(d.root.join("netns")).map_or(0, |r| r.count()) == 0
    });
}

#[test]
fn a_daemon_killed_between_cni_add_and_the_runtime_start_cleans_up_at_its_next_start() {
    let mut d = bridge_daemon();
    d.kill();
    // A runtime that hangs at `run`: the start stops after the network is up.
    let hung = d.dir.path().join("hung-runc");
    std::fs::write(
        &hung,
        "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = run ] && sleep 30; done\nexec runc \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&hung, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    d.runtime = Some(hung);
    d.spawn();
    d.write_unit(
        "web",
        &web_unit(&format!("\"127.0.0.1:{}:80\"", free_port())),
    );
    wait_until(20 * SEC, "the network is up", || {
        std::fs::read_dir(d.root.join("netns")).map_or(0, |r| r.count()) == 1
            && !lines_of(&["ip", "-o", "link", "show", "master", &d.net.bridge]).is_empty()
    });
    let id = std::fs::read_dir(d.root.join("netns"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    d.kill();
    // Back with the real runtime and the unit gone: nothing of that start may remain.
    d.runtime = None;
    d.remove_unit("web");
    d.spawn();
    assert_no_trace(&d, &id);
}

pub fn sleeper(extra: &str) -> String {
    format!(
        "[container]\nrootfs = \"{}\"\ncommand = [\"sleep\", \"1000\"]\nstop_signal = \"KILL\"\n{extra}\n[network]\nmode = \"bridge\"\n",
        rootfs().display()
    )
}

pub fn address_of(s: &serde_json::Value) -> String {
    let a = s["network"]["networks"][0]["address"]
        .as_str()
        .unwrap_or_default();
    a.split('/').next().unwrap_or_default().to_string()
}

#[test]
fn units_on_a_bridge_reach_each_other_by_name_and_names_follow_recreation() {
    let d = bridge_daemon();
    d.write_unit("db", &sleeper(""));
    let db = d.wait_state("db", "running", 20 * SEC);
    // The client pings the database by its unit name (bounded: 50 tries).
    d.write_unit(
        "client",
        &format!(
            "[container]\nrootfs = \"{}\"\ncommand = [\"sh\", \"-c\", \"grep -qw db /etc/hosts && echo db-named-at-start; for i in $(seq 50); do ping -c1 -W1 db >/dev/null 2>&1 && echo reached-db && break; sleep 0.2; done; exec sleep 1000\"]\nstop_signal = \"KILL\"\n\n[network]\nmode = \"bridge\"\n",
            rootfs().display()
        ),
    );
    let client = d.wait_state("client", "running", 20 * SEC);
    wait_until(15 * SEC, "client reached db by name", || {
        String::from_utf8_lossy(&d.rctl(&["logs", "client"]).stdout).contains("reached-db")
    });
    // Its first command already found db in its /etc/hosts: written before it started.
    assert!(
        String::from_utf8_lossy(&d.rctl(&["logs", "client"]).stdout).contains("db-named-at-start")
    );
    let hosts = |pid: i64| std::fs::read_to_string(format!("/proc/{pid}/root/etc/hosts")).unwrap();
    let client_pid = pid_of(&client);
    // The client's file named db from its start; db's names the client a moment later (the
    // running members' files are refreshed a burst at a time).
    assert!(hosts(client_pid).contains(&format!("{}\tdb\n", address_of(&db))));
    wait_until(5 * SEC, "db's hosts names the client", || {
        hosts(pid_of(&db)).contains(&format!("{}\tclient\n", address_of(&client)))
    });

    // db recreated (a new spec): a new instance, a new address; client's file follows.
    d.write_unit("db", &sleeper("env = { V = \"2\" }\n"));
    let new_db = d.wait_new_pid("db", pid_of(&db), 20 * SEC);
    let db2 = d.status("db").unwrap();
    assert_eq!(pid_of(&db2), new_db);
    wait_until(10 * SEC, "client's hosts names the new db", || {
        hosts(client_pid).contains(&format!("{}\tdb\n", address_of(&db2)))
    });
    // Removed: gone from the others' files.
    d.remove_unit("db");
    wait_until(10 * SEC, "db gone from client's hosts", || {
        !hosts(client_pid).contains("\tdb\n")
    });
    d.remove_unit("client");
    wait_until(15 * SEC, "networks taken down", || {
        std::fs::read_dir(d.root.join("netns")).map_or(0, |r| r.count()) == 0
    });
}

/// What of daemon `d`'s networks shows on the host: veths on its bridge, lines of
/// `iptables-save` and `nft list ruleset` that name its containers or its subnet, `ip netns`
/// entries that name them, its pinned namespaces, its IPAM leases and CNI cache entries.
pub fn traces(d: &Daemon) -> BTreeSet<String> {
    let tag = format!("rcd-{}-", rcd::config::root_tag(&d.root));
    let mine = |l: &String| l.contains(&tag) || l.contains(&d.net.prefix);
    let mut out = BTreeSet::new();
    let mut add = |what: &str, lines: BTreeSet<String>| {
        out.extend(lines.into_iter().map(|l| format!("{what}: {l}")));
    };
    add(
        "veth",
        lines_of(&["ip", "-o", "link", "show", "master", &d.net.bridge]),
    );
    add(
        "netns",
        lines_of(&["ip", "netns", "list"])
            .into_iter()
            .filter(mine)
            .collect(),
    );
    add(
        "iptables",
        lines_of(&["iptables-save"])
            .into_iter()
            .filter(mine)
            .collect(),
    );
    // The table's chains stay with the daemon; its map elements are the containers'.
    add(
        "nft",
        lines_of(&["nft", "list", "ruleset"])
            .into_iter()
            .filter(mine)
            .filter(|l| l.contains(" : "))
            .collect(),
    );
    let files = |dir: std::path::PathBuf| -> BTreeSet<String> {
        walk(&dir)
            .into_iter()
            .map(|p| p.display().to_string())
            .collect()
    };
    add("pinned", files(d.root.join("netns")));
    add(
        "native",
        files(d.root.join("net"))
            .into_iter()
            .filter(|p| p.contains(&d.net.prefix) || p.ends_with(".json"))
            .collect(),
    );
    add("cache", files(d.root.join("cni/cache")));
    // host-local keeps one file per leased address (and its own bookkeeping beside them).
    add(
        "lease",
        files(d.root.join("cni/ipam"))
            .into_iter()
            .filter(|p| p.contains(&d.net.prefix))
            .collect(),
    );
    out
}

pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_daemon_killed_with_networked_containers_then_restarted_and_emptied_leaves_no_trace() {
    let mut d = bridge_daemon();
    let before = traces(&d);
    let port = free_port();
    d.write_unit("web", &web_unit(&format!("\"{port}:80\"")));
    d.write_unit("db", &sleeper(""));
    d.write_unit(
        "side",
        &format!(
            "[container]\nrootfs = \"{}\"\ncommand = [\"sleep\", \"1000\"]\nstop_signal = \"KILL\"\n[network]\nmode = \"container:web\"\n",
            rootfs().display()
        ),
    );
    d.write_unit(
        "solo",
        &sleeper("").replace("mode = \"bridge\"", "mode = \"none\""),
    );
    let names = ["web", "db", "side", "solo"];
    let pids: Vec<i64> = names
        .iter()
        .map(|n| pid_of(&d.wait_state(n, "running", 20 * SEC)))
        .collect();
    // What the check looks at does see the networks while they are up.
    let up = traces(&d);
    let count = |what: &str| up.iter().filter(|l| l.starts_with(what)).count();
    assert_eq!(count("veth:"), 2, "{up:#?}");
    assert_eq!(count("pinned:"), 2, "{up:#?}");
    // Two leases and two records; the published port's map element.
    assert_eq!(count("native:"), 4, "{up:#?}");
    assert_eq!(count("nft:"), 1, "{up:#?}");

    d.kill();
    d.spawn();
    for (n, pid) in names.iter().zip(&pids) {
        assert_eq!(pid_of(&d.wait_state(n, "running", 10 * SEC)), *pid, "{n}");
    }
    assert_eq!(traces(&d), up, "a restart changes no network");
    for n in names {
        d.remove_unit(n);
    }
    wait_until(20 * SEC, "every unit gone", || d.statuses().is_empty());
    wait_until(10 * SEC, "every network gone", || traces(&d) == before);
    assert!(d.runtime_containers().is_empty());
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
}

/// Runs each command of `steps` in order; each must succeed.
pub fn run_all(steps: &[&[&str]]) {
    for step in steps {
        let out = Command::new(step[0]).args(&step[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "{step:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A namespace "outside" the host, joined to it by a veth pair of its own /30: a client on
/// another machine, as far as the host's firewall and routing can tell.
struct Outside {
    netns: String,
    host_ip: String,
}

impl Outside {
    fn new(slot: u32) -> Self {
        let netns = format!("rcdo{slot}");
        let (host_if, peer_if) = (format!("rcdo{slot}h"), format!("rcdo{slot}c"));
        let net = format!("10.{}.{}.", 108 + slot / 256, slot % 256);
        let host_ip = format!("{net}1");
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        let o = Outside { netns, host_ip };
        let peer_addr = format!("{net}2/30");
        let host_addr = format!("{}/30", o.host_ip);
        let steps: [&[&str]; 7] = [
            &["ip", "netns", "add", &o.netns],
            &[
                "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if, "netns",
                &o.netns,
            ],
            &["ip", "addr", "add", &host_addr, "dev", &host_if],
            &["ip", "link", "set", &host_if, "up"],
            &[
                "ip", "-n", &o.netns, "addr", "add", &peer_addr, "dev", &peer_if,
            ],
            &["ip", "-n", &o.netns, "link", "set", &peer_if, "up"],
            &["ip", "-n", &o.netns, "link", "set", "lo", "up"],
        ];
        run_all(&steps);
        o
    }

    /// One HTTP GET from outside to the host's address on `port` (a few seconds at most),
    /// from a thread that joins the outside namespace (namespaces are per thread).
    fn get(&self, port: u16) -> Option<String> {
        crate::native_net::get_from(&self.netns, &format!("{}:{port}", self.host_ip))
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

#[test]
fn a_published_port_answers_from_outside_the_host_unless_bound_to_loopback() {
    let d = bridge_daemon();
    let outside = Outside::new(d.net.slot);
    let (open, local) = (free_port(), free_port());
    d.write_unit("web", &web_unit(&format!("\"{open}:80\"")));
    d.write_unit("private", &web_unit(&format!("\"127.0.0.1:{local}:80\"")));
    d.wait_state("web", "running", 20 * SEC);
    d.wait_state("private", "running", 20 * SEC);
    let mut body = None;
    for _ in 0..20 {
        body = outside.get(open).filter(|b| b.contains("hello-bridge"));
        if body.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        body.is_some(),
        "web answers from outside on {}:{open}",
        outside.host_ip
    );
    // Bound to the host's loopback: reachable there, not from outside.
    wait_until(10 * SEC, "private answers on 127.0.0.1", || {
        http(&format!("127.0.0.1:{local}"), "GET", "/", &[], b"")
            .is_ok_and(|r| r.text().contains("hello-bridge"))
    });
    assert_eq!(outside.get(local), None);
}

#[test]
fn a_unit_joins_several_networks_and_an_unknown_one_is_a_clear_start_failure() {
    let mut d = Daemon::new();
    let (bridge, prefix) = d.net.second();
    let backend = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/cni/rcd.conflist"
    ))
    .unwrap()
    .replace("\"name\": \"rcd\"", "\"name\": \"backend\"")
    .replace("rcd0", &bridge)
    .replace("10.89.0.0/16", &format!("{prefix}0/24"))
    .replace("10.89.0.1", &format!("{prefix}1"));
    std::fs::create_dir_all(d.networks_dir()).unwrap();
    std::fs::write(d.networks_dir().join("backend.conflist"), backend).unwrap();
    d.spawn();
    let on = |networks: &str| {
        sleeper("").replace(
            "mode = \"bridge\"",
            &format!("mode = \"bridge\"\nnetworks = [{networks}]"),
        )
    };
    d.write_unit("multi", &on("\"rcd\", \"backend\""));
    d.write_unit("peer", &on("\"backend\""));
    d.write_unit("lonely", &on("\"rcd\""));
    let m = d.wait_state("multi", "running", 20 * SEC);
    let nets = m["network"]["networks"].as_array().unwrap();
    let got: Vec<(&str, &str, bool)> = nets
        .iter()
        .map(|n| {
            let a = n["address"].as_str().unwrap_or_default();
            (
                n["name"].as_str().unwrap_or_default(),
                n["ifname"].as_str().unwrap_or_default(),
                a.starts_with(&d.net.prefix) || a.starts_with(&prefix),
            )
        })
        .collect();
    assert_eq!(
        got,
        [("rcd", "eth0", true), ("backend", "eth1", true)],
        "{m:#}"
    );
    let p = d.wait_state("peer", "running", 20 * SEC);
    let l = d.wait_state("lonely", "running", 20 * SEC);
    let peer_ip = address_of(&p);
    assert!(peer_ip.starts_with(&prefix), "{p:#}");
    // Names are per network: multi shares backend with peer, lonely does not.
    let hosts = |s: &serde_json::Value| {
        std::fs::read_to_string(format!("/proc/{}/root/etc/hosts", pid_of(s))).unwrap()
    };
    wait_until(10 * SEC, "multi knows peer", || {
        hosts(&m).contains(&format!("{peer_ip}\tpeer\n"))
    });
    assert!(!hosts(&l).contains("\tpeer\n"), "{}", hosts(&l));

    // A network nobody defined: the start fails and says which ones exist.
    d.write_unit("bad", &on("\"nope\""));
    let b = d.wait_state("bad", "failed", 20 * SEC);
    let err = b["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("unknown network \"nope\" (configured: backend, rcd)"),
        "{b:#}"
    );
    for u in ["multi", "peer", "lonely", "bad"] {
        d.remove_unit(u);
    }
    wait_until(20 * SEC, "all gone", || d.statuses().is_empty());
    wait_until(10 * SEC, "no lease left on either network", || {
        walk(&d.root.join("cni/ipam")).iter().all(|p| {
            !p.to_string_lossy().contains(&prefix) && !p.to_string_lossy().contains(&d.net.prefix)
        })
    });
}
