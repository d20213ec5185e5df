//! Bridge networking through the daemon: a unit with `mode = "bridge"` gets a namespace rcd
//! pins, an address from the CNI bridge plugin's IPAM, published ports through portmap; and
//! when it goes, nothing of it stays (veth, namespace, lease, iptables rules). Each test has
//! its own bridge and subnet, removed at the end.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::registry::http;

const SEC: Duration = Duration::from_secs(1);

/// This test's bridge; deleted when dropped (the bridge plugin never removes it).
struct Bridge {
    name: String,
    subnet_prefix: String,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .status();
    }
}

/// A daemon whose default network has a bridge and a /24 of its own.
fn bridge_daemon() -> (Daemon, Bridge) {
    let n = (std::process::id() as u64 * 31 + now_nanos()) % 250 + 1;
    let bridge = Bridge {
        name: format!("rcdt{:04x}", (now_nanos() % 0xffff) as u16),
        subnet_prefix: format!("10.91.{n}."),
    };
    let mut d = Daemon::new();
    d.write_config(
        "",
        &format!(
            "[network]\nbridge = \"{}\"\nsubnet = \"10.91.{n}.0/24\"\nconfig_dir = \"{}\"\n",
            bridge.name,
            d.dir.path().join("networks").display()
        ),
    );
    d.spawn();
    (d, bridge)
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

fn lines_of(cmd: &[&str]) -> BTreeSet<String> {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

fn web_unit(ports: &str) -> String {
    format!(
        "[container]\nrootfs = \"{}\"\ncommand = [\"sh\", \"-c\", \"mkdir -p /www && echo hello-bridge > /www/index.html && exec httpd -f -p 80 -h /www\"]\nstop_signal = \"KILL\"\n\n[network]\nmode = \"bridge\"\nports = [{ports}]\n\n[restart]\npolicy = \"always\"\ndelay = \"200ms\"\nmax_delay = \"500ms\"\n",
        rootfs().display()
    )
}

#[test]
fn a_bridge_unit_answers_on_its_published_port_and_leaves_nothing() {
    let (d, bridge) = bridge_daemon();
    let port = free_port();
    d.write_unit("web", &web_unit(&format!("\"127.0.0.1:{port}:80\"")));
    let s = d.wait_state("web", "running", 20 * SEC);
    let net = &s["network"]["networks"][0];
    assert_eq!(net["name"], "rcd");
    assert_eq!(net["ifname"], "eth0");
    let address = net["address"].as_str().unwrap_or_default().to_string();
    assert!(address.starts_with(&bridge.subnet_prefix), "{s:#}");
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
    // Its own namespace, pinned under the root; the rules name the container.
    assert!(d.root.join("netns").join(&id).exists());
    let rules = lines_of(&["iptables-save"]);
    assert!(
        rules.iter().any(|l| l.contains(&id)),
        "portmap/firewall rules for {id}"
    );

    let attached = lines_of(&["ip", "-o", "link", "show", "master", &bridge.name]);
    assert_eq!(attached.len(), 1, "one veth on the bridge: {attached:?}");

    d.remove_unit("web");
    assert_no_trace(&d, &bridge, &id);
}

/// Waits for the unit `web` to be gone, then checks that nothing of container `id`'s network
/// remains: namespace, iptables rules, veth on the bridge, IPAM lease.
fn assert_no_trace(d: &Daemon, bridge: &Bridge, id: &str) {
    wait_until(15 * SEC, "network taken down", || {
        d.status("web").is_none()
            && std::fs::read_dir(d.root.join("netns")).map_or(0, |r| r.count()) == 0
    });
    let rules = lines_of(&["iptables-save"]);
    let left: Vec<_> = rules.iter().filter(|l| l.contains(id)).collect();
    assert!(left.is_empty(), "rules left: {left:#?}");
    // No veth left on this test's bridge (other tests run their own beside it).
    let ports_left = lines_of(&["ip", "-o", "link", "show", "master", &bridge.name]);
    assert!(ports_left.is_empty(), "veths left: {ports_left:?}");
    // No lease left: host-local keeps one file per address.
    let ipam = d.root.join("cni/ipam/rcd");
    let leases: Vec<_> = std::fs::read_dir(&ipam)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(&bridge.subnet_prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(leases.is_empty(), "leases left: {leases:?}");
}

#[test]
fn after_a_daemon_kill_a_removed_bridge_unit_leaves_nothing() {
    let (mut d, bridge) = bridge_daemon();
    d.write_unit(
        "web",
        &web_unit(&format!("\"127.0.0.1:{}:80\"", free_port())),
    );
    let s = d.wait_state("web", "running", 20 * SEC);
    let id = s["container_id"].as_str().unwrap().to_string();
    d.kill();
    d.remove_unit("web");
    d.spawn();
    assert_no_trace(&d, &bridge, &id);
}

#[test]
fn a_host_port_in_use_is_a_clear_start_failure_retried_until_free() {
    let (d, _bridge) = bridge_daemon();
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
    let (mut d, bridge) = bridge_daemon();
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
            && !lines_of(&["ip", "-o", "link", "show", "master", &bridge.name]).is_empty()
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
    assert_no_trace(&d, &bridge, &id);
}

fn sleeper(extra: &str) -> String {
    format!(
        "[container]\nrootfs = \"{}\"\ncommand = [\"sleep\", \"1000\"]\nstop_signal = \"KILL\"\n{extra}\n[network]\nmode = \"bridge\"\n",
        rootfs().display()
    )
}

fn address_of(s: &serde_json::Value) -> String {
    let a = s["network"]["networks"][0]["address"]
        .as_str()
        .unwrap_or_default();
    a.split('/').next().unwrap_or_default().to_string()
}

#[test]
fn units_on_a_bridge_reach_each_other_by_name_and_names_follow_recreation() {
    let (d, _bridge) = bridge_daemon();
    d.write_unit("db", &sleeper(""));
    let db = d.wait_state("db", "running", 20 * SEC);
    // The client pings the database by its unit name (bounded: 50 tries).
    d.write_unit(
        "client",
        &format!(
            "[container]\nrootfs = \"{}\"\ncommand = [\"sh\", \"-c\", \"for i in $(seq 50); do ping -c1 -W1 db >/dev/null 2>&1 && echo reached-db && break; sleep 0.2; done; exec sleep 1000\"]\nstop_signal = \"KILL\"\n\n[network]\nmode = \"bridge\"\n",
            rootfs().display()
        ),
    );
    let client = d.wait_state("client", "running", 20 * SEC);
    wait_until(15 * SEC, "client reached db by name", || {
        String::from_utf8_lossy(&d.rctl(&["logs", "client"]).stdout).contains("reached-db")
    });
    let hosts = |pid: i64| std::fs::read_to_string(format!("/proc/{pid}/root/etc/hosts")).unwrap();
    let client_pid = pid_of(&client);
    assert!(hosts(client_pid).contains(&format!("{}\tdb\n", address_of(&db))));
    // db sees client too.
    assert!(hosts(pid_of(&db)).contains(&format!("{}\tclient\n", address_of(&client))));

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
