//! CNI with the real plugins (Debian's containernetworking-plugins in /usr/lib/cni): each test
//! makes its own network namespace, bridge (`rcdt<hex>`) and /24 out of 10.90.0.0/16, with
//! IPAM state and the attachment cache in a temporary directory, and removes them all.
//! Traffic goes only to 127.0.0.1 and into the test's own namespaces, bounded in count and time.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rcd::network::cni::{
    bridge_network, Attachment, Cidr, Cni, CniResult, NetworkList, PortMapping, Protocol,
};

use crate::harness::wait_until;

const SEC: Duration = Duration::from_secs(1);

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .unwrap();
    u16::from_ne_bytes(b)
}

/// A network namespace of the test's own (`ip netns add`), deleted on drop.
struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("rcd-cni-test-{tag}");
        ok(&["ip", "netns", "add", &name]);
        let path = Path::new("/run/netns").join(&name);
        Netns { name, path }
    }

    /// Runs a command inside the namespace.
    fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// Third octets of 10.90.X.0/24 taken by this test process.
static TAKEN: Mutex<Option<HashSet<u8>>> = Mutex::new(None);

/// A network of the test's own: bridge, subnet, IPAM state, cache; the bridge is deleted on
/// drop (the bridge plugin leaves it, as does rcd).
struct TestNet {
    tag: String,
    bridge: String,
    subnet: Cidr,
    dir: tempfile::TempDir,
    cni: Cni,
    network: NetworkList,
}

impl TestNet {
    fn new() -> Self {
        let (tag, bridge) = loop {
            let tag = format!("{:04x}", random_u16());
            let bridge = format!("rcdt{tag}");
            if !Path::new("/sys/class/net").join(&bridge).exists() {
                break (tag, bridge);
            }
        };
        let subnet = Self::free_subnet();
        let dir = tempfile::Builder::new()
            .prefix("rcd-cni")
            .tempdir()
            .unwrap();
        let cni = Cni::new(dir.path().join("cache"), dir.path().join("ipam"));
        let network = bridge_network(&format!("rcd-cni-test-{tag}"), &bridge, subnet).unwrap();
        TestNet {
            tag,
            bridge,
            subnet,
            dir,
            cni,
            network,
        }
    }

    /// A /24 of 10.90.0.0/16 that no test of this process holds and the host does not route.
    fn free_subnet() -> Cidr {
        let routes = ok(&["ip", "-4", "route", "show"]) + &ok(&["ip", "-4", "addr", "show"]);
        let mut taken = TAKEN.lock().unwrap();
        let taken = taken.get_or_insert_with(HashSet::new);
        let start = random_u16() as u8;
        for i in 0..=255u8 {
            let octet = start.wrapping_add(i);
            if !taken.contains(&octet) && !routes.contains(&format!("10.90.{octet}.")) {
                taken.insert(octet);
                return format!("10.90.{octet}.0/24").parse().unwrap();
            }
        }
        panic!("no free /24 in 10.90.0.0/16");
    }

    /// A fresh namespace and an attachment for it (not yet added).
    fn container(&self, n: u32) -> Container<'_> {
        let ns = Netns::new(&format!("{}-{n}", self.tag));
        let att = Attachment::new(&format!("rcd-cni-test-{}-{n}", self.tag), &ns.path, "eth0");
        Container {
            net: self,
            ns,
            att,
            result: None,
        }
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam").join(&self.network.name)
    }

    fn gateway(&self) -> IpAddr {
        self.subnet.first_host().unwrap()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = run(&["ip", "link", "del", &self.bridge]);
        if let Ok(mut taken) = TAKEN.lock() {
            if let (Some(t), IpAddr::V4(a)) = (taken.as_mut(), self.subnet.addr) {
                t.remove(&a.octets()[2]);
            }
        }
    }
}

/// A namespace attached (or to be attached) to a test network; DELeted, then its namespace
/// deleted, on drop.
struct Container<'a> {
    net: &'a TestNet,
    ns: Netns,
    att: Attachment,
    result: Option<CniResult>,
}

impl Container<'_> {
    fn add(&mut self) -> &CniResult {
        let r = self.net.cni.add(&self.net.network, &self.att).unwrap();
        self.result.insert(r)
    }

    fn del(&self) {
        self.net.cni.del(&self.net.network, &self.att).unwrap();
    }

    fn ip(&self) -> IpAddr {
        self.result.as_ref().expect("added").container_ips()[0]
            .address
            .addr
    }

    /// The host end of the veth, from the result.
    fn host_veth(&self) -> String {
        let r = self.result.as_ref().expect("added");
        r.interfaces
            .iter()
            .find(|i| i.sandbox.is_none() && i.name != self.net.bridge)
            .map(|i| i.name.clone())
            .expect("a host veth in the result")
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.net.cni.del(&self.net.network, &self.att);
    }
}

/// iptables rules (all tables, IPv4) mentioning any of `needles`.
fn rules_mentioning(needles: &[&str]) -> Vec<String> {
    ok(&["iptables-save"])
        .lines()
        .filter(|l| l.starts_with("-A") && needles.iter().any(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Pings `ip` from inside `ns`: one packet at a time, at most `tries`.
fn ping_from(ns: &Netns, ip: IpAddr, tries: u32) -> bool {
    let ip = ip.to_string();
    (0..tries).any(|_| {
        ns.exec(&["busybox", "ping", "-c1", "-W1", &ip])
            .status
            .success()
    })
}

#[test]
fn add_gives_an_address_in_the_subnet_and_a_reachable_gateway() {
    let net = TestNet::new();
    let mut c = net.container(0);
    let r = c.add().clone();

    let ips = r.container_ips();
    assert_eq!(ips.len(), 1, "{r:?}");
    let ip = ips[0].address.addr;
    assert!(net.subnet.contains(ip), "{ip} not in {}", net.subnet);
    assert_eq!(ips[0].address.prefix, 24);
    assert_eq!(ips[0].gateway, Some(net.gateway()));
    assert_eq!(r.cni_version, "1.0.0");

    // The interface is in the namespace with that address; the veth's host end is on the host.
    let addr = ok(&["ip", "-n", &c.ns.name, "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("inet {ip}/24")), "{addr}");
    let veth = c.host_veth();
    assert!(Path::new("/sys/class/net").join(&veth).exists(), "{veth}");
    assert!(Path::new("/sys/class/net")
        .join(&veth)
        .join("master")
        .canonicalize()
        .unwrap()
        .ends_with(&net.bridge));
    let route = ok(&["ip", "-n", &c.ns.name, "route", "show", "default"]);
    assert!(route.contains(&format!("via {}", net.gateway())), "{route}");

    assert!(ping_from(&c.ns, net.gateway(), 3), "gateway unreachable");
    net.cni.check(&net.network, &c.att).unwrap();
}

#[test]
fn published_port_answers_on_loopback() {
    let net = TestNet::new();
    let mut c = net.container(0);
    // A port nothing on the host listens on (the kernel's pick, released).
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    c.att.runtime_config.port_mappings = vec![PortMapping {
        host_port,
        container_port: 80,
        protocol: Protocol::Tcp,
        host_ip: None,
    }];
    c.add();

    // portmap with snat sets route_localnet on the bridge, so 127.0.0.1 can be DNATed out.
    let sysctl = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.bridge);
    assert_eq!(std::fs::read_to_string(&sysctl).unwrap().trim(), "1");

    let www = net.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let marker = format!("hello from {}", net.tag);
    std::fs::write(www.join("index.html"), &marker).unwrap();
    let httpd = Killed(
        Command::new("ip")
            .args([
                "netns", "exec", &c.ns.name, "busybox", "httpd", "-f", "-p", "80", "-h",
            ])
            .arg(&www)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let mut body = String::new();
    wait_until(10 * SEC, "the published port answers", || {
        body = http_get(host_port).unwrap_or_default();
        body.contains(&marker)
    });
    drop(httpd);
}

/// A child killed and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET / on 127.0.0.1:port, bounded in time; the whole response.
fn http_get(port: u16) -> Option<String> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, SEC).ok()?;
    s.set_read_timeout(Some(2 * SEC)).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn del_removes_veth_lease_and_rules() {
    let net = TestNet::new();
    let mut c = net.container(0);
    c.att.runtime_config.port_mappings = vec![PortMapping {
        host_port: 20000 + (random_u16() % 20000),
        container_port: 80,
        protocol: Protocol::Tcp,
        host_ip: None,
    }];
    let id = c.att.container_id.clone();
    assert!(rules_mentioning(&[&id, &net.bridge]).is_empty());
    c.add();
    let ip = c.ip().to_string();
    let ip32 = format!("{ip}/32");
    let veth = c.host_veth();
    let lease = net.ipam_dir().join(&ip);

    // What the ADD made: rules naming the container (bridge masquerade, portmap DNAT) and
    // its address (firewall), the lease, the veth, the cached result.
    let before = rules_mentioning(&[&id, &ip32]);
    assert!(before.iter().any(|l| l.contains(&id)), "{before:#?}");
    assert!(before.iter().any(|l| l.contains("DNAT")), "{before:#?}");
    assert!(lease.exists(), "{}", lease.display());
    assert!(Path::new("/sys/class/net").join(&veth).exists());
    assert_eq!(net.cni.cached_all().unwrap().len(), 1);

    c.del();
    let after = rules_mentioning(&[&id, &ip32, &net.bridge]);
    assert!(after.is_empty(), "left behind: {after:#?}");
    assert!(!lease.exists(), "lease {} left behind", lease.display());
    assert!(!Path::new("/sys/class/net").join(&veth).exists(), "{veth}");
    assert!(!run(&["ip", "-n", &c.ns.name, "link", "show", "eth0"])
        .status
        .success());
    assert!(net.cni.cached_all().unwrap().is_empty());
    // The bridge stays (the plugin never deletes it); the test's drop removes it.
    assert!(Path::new("/sys/class/net").join(&net.bridge).exists());
}

#[test]
fn del_twice_and_del_of_nothing_succeed() {
    let net = TestNet::new();
    let mut c = net.container(0);
    c.add();
    c.del();
    c.del();
    // Never added, in a live namespace and in one that does not exist.
    let other = net.container(1);
    other.del();
    let gone = Attachment::new(
        &format!("rcd-cni-test-{}-9", net.tag),
        Path::new("/run/netns/rcd-cni-test-never"),
        "eth0",
    );
    net.cni.del(&net.network, &gone).unwrap();
}

#[test]
fn del_after_the_namespace_is_gone_leaves_nothing() {
    let net = TestNet::new();
    let mut c = net.container(0);
    c.att.runtime_config.port_mappings = vec![PortMapping {
        host_port: 20000 + (random_u16() % 20000),
        container_port: 80,
        protocol: Protocol::Tcp,
        host_ip: None,
    }];
    c.add();
    let id = c.att.container_id.clone();
    let ip = c.ip().to_string();
    let ip32 = format!("{ip}/32");
    let lease = net.ipam_dir().join(&ip);
    assert!(!rules_mentioning(&[&id]).is_empty());

    // Gone under us (an operator's `ip netns del`): the veth goes with it.
    ok(&["ip", "netns", "del", &c.ns.name]);
    c.del();
    let after = rules_mentioning(&[&id, &ip32]);
    assert!(after.is_empty(), "left behind: {after:#?}");
    assert!(!lease.exists(), "lease {} left behind", lease.display());
    assert!(net.cni.cached_all().unwrap().is_empty());
}

#[test]
fn a_bad_plugin_config_is_named_and_undone() {
    let net = TestNet::new();

    // An unknown plugin after a working bridge: the error names it, the bridge's ADD is undone.
    let mut raw = net.network.raw.clone();
    raw["plugins"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "nosuchplugin"}));
    let unknown = NetworkList::from_value(raw, "test").unwrap();
    let c = net.container(0);
    let err = net.cni.add(&unknown, &c.att).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "network {}: plugin nosuchplugin: not found in /usr/lib/cni:/opt/cni/bin",
            net.network.name
        )),
        "{err}"
    );
    assert!(!run(&["ip", "-n", &c.ns.name, "link", "show", "eth0"])
        .status
        .success());
    let leases: Vec<_> = std::fs::read_dir(net.ipam_dir())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leases
            .iter()
            .all(|n| !n.to_string_lossy().starts_with("10.")),
        "{leases:?}"
    );
    assert!(rules_mentioning(&[&c.att.container_id]).is_empty());
    assert!(net.cni.cached_all().unwrap().is_empty());

    // A known plugin with a configuration it refuses: its own words, its name.
    let mut raw = net.network.raw.clone();
    raw["plugins"][0]["ipam"]["ranges"][0][0]["subnet"] = "10.90.0.0/33".into();
    let bad = NetworkList::from_value(raw, "test").unwrap();
    let err = net.cni.add(&bad, &c.att).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "network {}: plugin bridge ADD for container {} failed: ",
            net.network.name, c.att.container_id
        )) && err.contains("10.90.0.0/33"),
        "{err}"
    );
}

#[test]
fn validate_finds_the_plugins_and_their_versions() {
    let net = TestNet::new();
    net.cni.validate(&net.network).unwrap();
    net.cni
        .validate(&rcd::network::cni::default_network())
        .unwrap();
}

/// Repeated ADD/DEL cycles on one network each leave nothing behind, and their latency with
/// the default plugin chain (bridge, portmap with one port, firewall) is printed, for the
/// record (`cargo test --test it cni::repeated -- --nocapture`); nothing asserts on time.
#[test]
fn repeated_add_del_cycles_leave_nothing_and_report_their_latency() {
    let net = TestNet::new();
    let rounds = 5;
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for n in 0..rounds {
        let mut c = net.container(n);
        c.att.runtime_config.port_mappings = vec![PortMapping {
            host_port: 20000 + (random_u16() % 20000),
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: None,
        }];
        let t = Instant::now();
        c.add();
        adds.push(t.elapsed());
        let id = c.att.container_id.clone();
        let lease = net.ipam_dir().join(c.ip().to_string());
        assert!(lease.exists(), "{}", lease.display());
        let t = Instant::now();
        c.del();
        dels.push(t.elapsed());
        let left = rules_mentioning(&[&id]);
        assert!(left.is_empty(), "round {n} left behind: {left:#?}");
        assert!(
            !lease.exists(),
            "round {n}: lease {} left behind",
            lease.display()
        );
        assert!(net.cni.cached_all().unwrap().is_empty(), "round {n}");
    }
    adds.sort();
    dels.sort();
    let fmt = |v: &[Duration]| {
        format!(
            "median {:?}, min {:?}, max {:?}",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        )
    };
    eprintln!(
        "CNI ADD ({rounds} rounds, first one creates the bridge): {}",
        fmt(&adds)
    );
    eprintln!("CNI DEL ({rounds} rounds): {}", fmt(&dels));
}
