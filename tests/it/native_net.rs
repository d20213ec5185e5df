//! The native bridge driver as the hosts it runs on see it. Each firewall test runs the daemon
//! in a network namespace of its own standing for a whole host (its bridge, veths, nftables
//! table and iptables chains are that namespace's), joined by a veth pair to an "outside"
//! namespace standing for another machine; so a test may set the host's firewall as Docker or
//! an nftables ruleset would, without touching the machine's. Traffic goes only between these
//! namespaces, in bounded tries.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::bridge::{address_of, nft_table, sleeper, traces, walk, web_unit};
use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

/// A host's network of its own, and a machine outside it, joined by a veth pair of a /30.
struct IsolatedHost {
    host: String,
    outside: String,
    /// The host's address on the link to the outside.
    host_ip: String,
    /// The outside machine's address.
    outside_ip: String,
}

impl IsolatedHost {
    fn new(slot: u32) -> Self {
        let h = IsolatedHost {
            host: format!("rcdih{slot}"),
            outside: format!("rcdio{slot}"),
            host_ip: format!("10.{}.{}.1", 112 + slot / 256, slot % 256),
            outside_ip: format!("10.{}.{}.2", 112 + slot / 256, slot % 256),
        };
        for ns in [&h.host, &h.outside] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let host_addr = format!("{}/30", h.host_ip);
        let outside_addr = format!("{}/30", h.outside_ip);
        let steps: [&[&str]; 9] = [
            &["ip", "netns", "add", &h.host],
            &["ip", "netns", "add", &h.outside],
            &[
                "ip", "-n", &h.host, "link", "add", "uplink", "type", "veth", "peer", "name",
                "uplink", "netns", &h.outside,
            ],
            &[
                "ip", "-n", &h.host, "addr", "add", &host_addr, "dev", "uplink",
            ],
            &["ip", "-n", &h.host, "link", "set", "uplink", "up"],
            &["ip", "-n", &h.host, "link", "set", "lo", "up"],
            &[
                "ip",
                "-n",
                &h.outside,
                "addr",
                "add",
                &outside_addr,
                "dev",
                "uplink",
            ],
            &["ip", "-n", &h.outside, "link", "set", "uplink", "up"],
            &["ip", "-n", &h.outside, "link", "set", "lo", "up"],
        ];
        crate::bridge::run_all(&steps);
        h
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.host))
    }

    /// `sh -c script` in the host's namespace.
    fn sh(&self, script: &str) -> Output {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.host, "sh", "-c", script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for IsolatedHost {
    fn drop(&mut self) {
        // The namespaces take their links, bridges and rules with them.
        for ns in [&self.host, &self.outside] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Runs `f` on a thread that entered network namespace `ns` (namespaces are per thread).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// One HTTP GET to `addr` from namespace `ns` (a few seconds at most).
pub fn get_from(ns: &str, addr: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    in_netns(ns, move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, 2 * SEC).ok()?;
        s.set_read_timeout(Some(2 * SEC)).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    })
}

/// GETs `addr` from `ns` until the answer has `want` (20 tries, 200 ms apart).
fn answers(ns: &str, addr: &str, want: &str) -> bool {
    (0..20).any(|_| {
        let ok = get_from(ns, addr).is_some_and(|b| b.contains(want));
        if !ok {
            std::thread::sleep(Duration::from_millis(200));
        }
        ok
    })
}

/// A one-connection HTTP server in the outside namespace: its port, and what it saw (the
/// client's address), waited for at most 20 s.
fn serve_once_outside(h: &IsolatedHost) -> (u16, std::thread::JoinHandle<Option<SocketAddr>>) {
    let ip = h.outside_ip.clone();
    let listener = in_netns(&h.outside, move || {
        std::net::TcpListener::bind(format!("{ip}:0")).unwrap()
    });
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let seen = std::thread::spawn(move || {
        for _ in 0..200 {
            match listener.accept() {
                Ok((mut s, peer)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(2 * SEC));
                    let mut buf = [0u8; 512];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nfrom-outside\n");
                    return Some(peer);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        None
    });
    (port, seen)
}

/// An HTTP GET of `addr` (`ip:port`) from inside unit `unit`'s container, through busybox
/// `nc` (3 s at most; this busybox's static `wget` crashes); what came back.
fn get_in(d: &Daemon, unit: &str, addr: &str) -> String {
    let (ip, port) = addr.rsplit_once(':').unwrap();
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}");
    let out = d.rctl(&["exec", unit, "--", "sh", "-c", &script]);
    format!(
        "{}{}{:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status
    )
}

/// The checks every host kind must pass: a published port answers from outside, from the host
/// itself (its loopback and its own address), from another container and from the container
/// itself through a host address (hairpin); and a container's outbound connection leaves from
/// the host's address (masquerade).
fn published_and_outbound_work(h: &IsolatedHost, d: &Daemon) {
    d.write_unit("web", &web_unit("\"8080:80\""));
    d.write_unit("client", &sleeper(""));
    d.wait_state("web", "running", 20 * SEC);
    d.wait_state("client", "running", 20 * SEC);
    let on_host = format!("{}:8080", h.host_ip);
    assert!(
        answers(&h.outside, &on_host, "hello-bridge"),
        "from outside, {on_host}"
    );
    assert!(
        answers(&h.host, "127.0.0.1:8080", "hello-bridge"),
        "from the host, 127.0.0.1:8080"
    );
    assert!(
        answers(&h.host, &on_host, "hello-bridge"),
        "from the host, {on_host}"
    );
    let gateway = format!("{}1", d.net.prefix);
    for (unit, addr) in [
        ("client", format!("{gateway}:8080")),
        ("client", on_host.clone()),
        ("web", on_host.clone()),
    ] {
        let body = get_in(d, unit, &addr);
        assert!(body.contains("hello-bridge"), "{unit} -> {addr}: {body:?}");
    }
    let (port, seen) = serve_once_outside(h);
    let body = get_in(d, "client", &format!("{}:{port}", h.outside_ip));
    assert!(body.contains("from-outside"), "{body:?}");
    let peer = seen
        .join()
        .unwrap()
        .expect("the outside saw the connection");
    assert_eq!(
        peer.ip().to_string(),
        h.host_ip,
        "masqueraded to the host's address"
    );
}

#[test]
fn on_a_host_of_its_own_published_ports_answer_from_everywhere_and_outbound_is_masqueraded() {
    let d0 = Daemon::new();
    let h = IsolatedHost::new(d0.net.slot);
    let mut d = d0;
    d.netns = Some(h.path());
    d.spawn();
    published_and_outbound_work(&h, &d);
    // The table is the daemon's own, named for its root; a container to 127/8 is dropped.
    let table = String::from_utf8_lossy(
        &h.sh(&format!(
            "nft list table inet rcd_{}",
            rcd::config::root_tag(&d.root)
        ))
        .stdout,
    )
    .into_owned();
    assert!(
        table.contains(&format!(
            "iifname \"{}\" ip daddr 127.0.0.0/8 drop",
            d.net.bridge
        )),
        "{table}"
    );
}

#[test]
fn beside_dockers_iptables_legacy_chains_that_drop_forwarded_packets() {
    let d0 = Daemon::new();
    let h = IsolatedHost::new(d0.net.slot);
    // What Docker leaves on a host: FORWARD's policy DROP, its chains first.
    h.sh("iptables-legacy -P FORWARD DROP && \
         iptables-legacy -N DOCKER-USER && iptables-legacy -A DOCKER-USER -j RETURN && \
         iptables-legacy -N DOCKER && \
         iptables-legacy -A FORWARD -j DOCKER-USER && \
         iptables-legacy -A FORWARD -o docker0 -j DOCKER && \
         iptables-legacy -t nat -N DOCKER && \
         iptables-legacy -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER && \
         iptables-legacy -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE");
    let mut d = d0;
    d.netns = Some(h.path());
    d.spawn();
    published_and_outbound_work(&h, &d);
    let rules = String::from_utf8_lossy(&h.sh("iptables-legacy -S FORWARD").stdout).into_owned();
    let br = &d.net.bridge;
    let lines: Vec<&str> = rules.lines().collect();
    assert_eq!(
        lines.get(1..3),
        Some(
            &[
                format!("-A FORWARD -i {br} -j ACCEPT").as_str(),
                format!(
                    "-A FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT"
                )
                .as_str(),
            ][..]
        ),
        "{rules}"
    );
    // A second daemon start adds nothing twice.
    d.kill();
    d.spawn();
    d.wait_state("web", "running", 20 * SEC);
    d.write_unit("again", &sleeper(""));
    d.wait_state("again", "running", 20 * SEC);
    let again = String::from_utf8_lossy(&h.sh("iptables-legacy -S FORWARD").stdout).into_owned();
    assert_eq!(again, rules);
}

#[test]
fn beside_an_nftables_ruleset_that_drops_with_the_documented_lines() {
    let d0 = Daemon::new();
    let h = IsolatedHost::new(d0.net.slot);
    let br = d0.net.bridge.clone();
    // A host firewall in the style of /etc/nftables.conf: default drop for input and
    // forward, with the lines docs/networking.md gives for rcd's bridge.
    let ruleset = format!(
        "table inet hostfw {{\n\
         \x20 chain input {{\n\
         \x20   type filter hook input priority filter; policy drop;\n\
         \x20   ct state established,related accept\n\
         \x20   iif lo accept\n\
         \x20   iifname \"{br}\" accept\n\
         \x20 }}\n\
         \x20 chain forward {{\n\
         \x20   type filter hook forward priority filter; policy drop;\n\
         \x20   iifname \"{br}\" accept\n\
         \x20   oifname \"{br}\" ct state established,related accept\n\
         \x20   ct status dnat accept\n\
         \x20 }}\n\
         }}\n"
    );
    let file = d0.dir.path().join("hostfw.nft");
    std::fs::write(&file, ruleset).unwrap();
    h.sh(&format!("nft -f {}", file.display()));
    let mut d = d0;
    d.netns = Some(h.path());
    d.spawn();
    published_and_outbound_work(&h, &d);
    // The daemon said which table drops, and what it needs.
    let log = d.log();
    assert!(
        log.contains("nftables chain inet hostfw forward drops forwarded packets by default"),
        "{log}"
    );
    // Its own rules are in its own table: the host's table is as it was written.
    let host_table =
        String::from_utf8_lossy(&h.sh("nft list table inet hostfw").stdout).into_owned();
    assert!(!host_table.contains("masquerade") && !host_table.contains("dnat to"));
}

#[test]
fn two_units_cannot_publish_one_host_port_and_the_second_says_who_has_it() {
    let d = Daemon::start();
    let port = crate::bridge::free_port();
    d.write_unit("first", &web_unit(&format!("\"{port}:80\"")));
    let first = d.wait_state("first", "running", 20 * SEC);
    d.write_unit("second", &web_unit(&format!("\"127.0.0.1:{port}:80\"")));
    let s = d.wait_state("second", "restarting", 20 * SEC);
    let err = s["error"].as_str().unwrap_or_default();
    let first_id = first["container_id"].as_str().unwrap();
    assert!(
        err.contains(&format!("cannot publish 127.0.0.1:{port}->"))
            && err.contains(&format!("{first_id} publishes 0.0.0.0:{port}->")),
        "{s:#}"
    );
    // The failed start left nothing: one veth (the first's), one element.
    let veths = crate::bridge::lines_of(&["ip", "-o", "link", "show", "master", &d.net.bridge]);
    assert_eq!(veths.len(), 1, "{veths:?}");
    // Once the first goes, the second gets the port.
    d.remove_unit("first");
    d.wait_state("second", "running", 20 * SEC);
    let table = nft_table(&d);
    assert!(
        table.contains(&format!("127.0.0.1 . tcp . {port} :")),
        "{table}"
    );
}

#[test]
fn stale_rules_from_before_a_boot_go_and_live_ones_are_restored_at_start() {
    let mut d = Daemon::start();
    let port = crate::bridge::free_port();
    d.write_unit("web", &web_unit(&format!("\"127.0.0.1:{port}:80\"")));
    let s = d.wait_state("web", "running", 20 * SEC);
    let ip = address_of(&s);
    d.kill();
    // What a reboot or an operator may leave: the table gone, or holding an element of a
    // container that no longer exists.
    let table = format!("rcd_{}", rcd::config::root_tag(&d.root));
    let script = format!(
        "add element inet {table} ports4_any {{ tcp . 1 : {}250 . 80 }}\n",
        d.net.prefix
    );
    let out = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(script.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    assert!(nft_table(&d).contains("tcp . 1 :"));
    d.spawn();
    wait_until(10 * SEC, "the table rebuilt from the records", || {
        let t = nft_table(&d);
        !t.contains("tcp . 1 :") && t.contains(&format!("127.0.0.1 . tcp . {port} : {ip} . 80"))
    });
    // And with no table at all (a reboot without the container): restored the same.
    d.kill();
    let out = Command::new("nft")
        .args(["delete", "table", "inet", &table])
        .output()
        .unwrap();
    assert!(out.status.success());
    d.spawn();
    wait_until(10 * SEC, "the table made again", || {
        nft_table(&d).contains(&format!("127.0.0.1 . tcp . {port} : {ip} . 80"))
    });
    assert!(
        answers_local(port),
        "the published port answers after the restart"
    );
}

#[test]
fn an_ipv6_host_address_is_not_published_for_an_ipv4_container_and_says_so() {
    let d = Daemon::start();
    let (v4, v6) = (crate::bridge::free_port(), crate::bridge::free_port());
    d.write_unit(
        "web",
        &web_unit(&format!("\"127.0.0.1:{v4}:80\", \"[::1]:{v6}:80\"")),
    );
    let s = d.wait_state("web", "running", 20 * SEC);
    assert!(answers_local(v4));
    let table = nft_table(&d);
    assert!(!table.contains(&format!(". {v6} :")), "{table}");
    assert_eq!(
        s["network"]["ports"],
        serde_json::json!([format!("127.0.0.1:{v4}:80/tcp")]),
        "{s:#}"
    );
    wait_until(5 * SEC, "the log says why", || {
        d.log().contains(&format!(
            "port {v6}:80: the default network is IPv4 only; not published on [::1]"
        ))
    });
}

/// GETs 127.0.0.1:`port` in the test's namespace until busybox httpd answers (bounded).
fn answers_local(port: u16) -> bool {
    (0..20).any(|_| {
        let ok = crate::registry::http(&format!("127.0.0.1:{port}"), "GET", "/", &[], b"")
            .is_ok_and(|r| r.text().contains("hello-bridge"));
        if !ok {
            std::thread::sleep(Duration::from_millis(200));
        }
        ok
    })
}

#[test]
fn a_daemon_killed_in_the_middle_of_a_native_attach_leaves_nothing_after_its_next_start() {
    for point in ["native-attach:recorded", "native-attach:wired"] {
        let mut d = Daemon::new();
        std::fs::write(d.failpoints(), format!("{point} sleep:30000\n")).unwrap();
        d.spawn();
        let before = traces(&d);
        d.write_unit(
            "web",
            &web_unit(&format!("\"{}:80\"", crate::bridge::free_port())),
        );
        let records = d.root.join("net/rcd/attachments");
        wait_until(20 * SEC, "the attachment is recorded", || {
            walk(&records).len() == 1
        });
        if point.ends_with("wired") {
            // Past the point: the veth on the bridge and the port in the map.
            wait_until(20 * SEC, "the veth and the map element", || {
                crate::bridge::lines_of(&["ip", "-o", "link", "show", "master", &d.net.bridge])
                    .len()
                    == 1
                    && nft_table(&d).contains("elements = ")
            });
        }
        d.kill();
        std::fs::write(d.failpoints(), "").unwrap();
        d.remove_unit("web");
        d.spawn();
        wait_until(15 * SEC, "nothing left", || traces(&d) == before);
        // With the unit back, it starts cleanly on the same daemon.
        d.write_unit("web", &web_unit("\"127.0.0.1::80\""));
        d.wait_state("web", "running", 20 * SEC);
    }
}

#[test]
fn a_container_set_up_by_cni_runs_on_under_the_native_driver_and_is_taken_down_by_cni() {
    let mut d = Daemon::new();
    d.write_config_with("", "driver = \"cni\"", "");
    d.spawn();
    let port = crate::bridge::free_port();
    d.write_unit("old", &web_unit(&format!("\"127.0.0.1:{port}:80\"")));
    let old = d.wait_state("old", "running", 20 * SEC);
    let old_id = old["container_id"].as_str().unwrap().to_string();
    let old_ip = address_of(&old);
    assert!(
        d.root.join("cni/ipam/rcd").join(&old_ip).exists(),
        "a host-local lease"
    );
    // The upgrade: the same root, the native driver (the default).
    d.kill();
    d.write_config_with("", "", "");
    d.spawn();
    let s = d.wait_state("old", "running", 20 * SEC);
    assert_eq!(pid_of(&s), pid_of(&old), "live restore: the same process");
    assert!(
        answers_local(port),
        "its published port (portmap's) still answers"
    );
    // A restart by policy keeps its CNI attachment.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid_of(&s) as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let again = d.wait_new_pid("old", pid_of(&s), 20 * SEC);
    let s = d.status("old").unwrap();
    assert_eq!(address_of(&s), old_ip, "{again}: same address");
    assert!(answers_local(port));
    // A new unit is attached natively beside it, never with its address.
    d.write_unit("new", &sleeper(""));
    let new = d.wait_state("new", "running", 20 * SEC);
    assert_ne!(address_of(&new), old_ip);
    assert!(d
        .root
        .join("net/rcd/leases")
        .join(address_of(&new))
        .exists());
    // Removed, the old one is taken down by CNI: its rules and lease go.
    d.remove_unit("old");
    wait_until(20 * SEC, "old gone, its network too", || {
        d.status("old").is_none()
            && walk(&d.root.join("cni/cache")).is_empty()
            && !d.root.join("netns").join(&old_id).exists()
    });
    let rules = crate::bridge::lines_of(&["iptables-save"]);
    let left: Vec<_> = rules.iter().filter(|l| l.contains(&old_id)).collect();
    assert!(left.is_empty(), "{left:#?}");
    assert!(!d.root.join("cni/ipam/rcd").join(&old_ip).exists());
    d.remove_unit("new");
    wait_until(20 * SEC, "new gone", || {
        d.status("new").is_none() && walk(&d.root.join("net/rcd/attachments")).is_empty()
    });
}

#[test]
fn a_macvlan_network_from_the_cni_config_dir_is_joined_and_left_without_a_trace() {
    let mut d = Daemon::new();
    // A parent link of the test's own for macvlan: one end of a veth pair (no dummy module
    // on every kernel).
    let parent = format!("rcdm{}", d.net.slot);
    let _ = Command::new("ip").args(["link", "del", &parent]).output();
    let out = Command::new("ip")
        .args(["link", "add", &parent, "type", "veth", "peer", "name"])
        .arg(format!("{parent}p"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    Command::new("ip")
        .args(["link", "set", &parent, "up"])
        .output()
        .unwrap();
    struct DelLink(String);
    impl Drop for DelLink {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).output();
        }
    }
    let _parent = DelLink(parent.clone());
    let (_, prefix) = d.net.second();
    let conflist = format!(
        r#"{{"cniVersion": "1.0.0", "name": "lan", "plugins": [{{"type": "macvlan", "master": "{parent}", "mode": "bridge",
           "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{prefix}0/24"}}]]}}}}]}}"#
    );
    std::fs::create_dir_all(d.networks_dir()).unwrap();
    std::fs::write(d.networks_dir().join("lan.conflist"), conflist).unwrap();
    // The lan is also the daemon's default network: units naming none join it.
    d.write_config_with("", "default = \"lan\"", "");
    d.spawn();
    d.write_unit("implicit", &sleeper(""));
    d.write_unit(
        "explicit",
        &sleeper("").replace(
            "mode = \"bridge\"",
            "mode = \"bridge\"\nnetworks = [\"rcd\"]",
        ),
    );
    let implicit = d.wait_state("implicit", "running", 20 * SEC);
    assert!(address_of(&implicit).starts_with(&prefix), "{implicit:#}");
    let explicit = d.wait_state("explicit", "running", 20 * SEC);
    assert!(!address_of(&explicit).starts_with(&prefix), "{explicit:#}");
    d.remove_unit("implicit");
    d.remove_unit("explicit");
    wait_until(20 * SEC, "both gone", || {
        d.status("implicit").is_none() && d.status("explicit").is_none()
    });
    d.write_unit(
        "m",
        &sleeper("").replace(
            "mode = \"bridge\"",
            "mode = \"bridge\"\nnetworks = [\"lan\"]",
        ),
    );
    let s = d.wait_state("m", "running", 20 * SEC);
    let ip = address_of(&s);
    assert!(ip.starts_with(&prefix), "{s:#}");
    let link =
        std::fs::read_to_string(format!("/proc/{}/root/sys/class/net/eth0/type", pid_of(&s)));
    assert!(link.is_ok(), "eth0 in the container");
    let leases = || {
        walk(&d.root.join("cni/ipam/lan"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(&prefix))
            .count()
    };
    assert_eq!(leases(), 1);
    d.remove_unit("m");
    wait_until(20 * SEC, "m gone, its network too", || {
        d.status("m").is_none()
            && walk(&d.root.join("cni/cache")).is_empty()
            && walk(&d.root.join("netns")).is_empty()
    });
    assert_eq!(leases(), 0, "the lease went");
}
