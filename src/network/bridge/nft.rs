//! The native bridge's firewall: one nftables table per daemon (`inet rcd_<root tag>`), so two
//! daemons on one host never touch each other's rules. Its chains are fixed; what changes per
//! container is elements of two maps (published ports by host address, and on every host
//! address), so a container's start or removal is one netlink transaction of a few elements
//! (`elements`), and the whole table is rebuilt from the attachment records by one `nft -f`
//! transaction at daemon start (rules from before a reboot or a crash go with it).
//!
//! What the table does, as Docker's iptables rules do for `docker0`:
//! - outbound traffic of the subnet is masqueraded;
//! - published ports: packets to a local address (from outside, other containers, or the host
//!   itself through `127.0.0.1`) are DNATed to the container; those that come from the host's
//!   loopback or from the subnet itself (hairpin) are masqueraded so that replies come back
//!   the same way (loopback sources need `route_localnet` on the bridge);
//! - packets from the bridge to `127.0.0.0/8` are dropped, as `route_localnet` would let a
//!   container reach the host's loopback services otherwise.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::network::cni::Cidr;
pub use crate::unit::ports::Proto;

use super::elements::Op;

/// An `nft` call that failed.
#[derive(Debug, thiserror::Error)]
#[error("nft: {0}")]
pub struct Error(pub String);

/// How long one `nft` call may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A published port as the map holds it: one host port to one container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Published {
    /// The host address it is published on; none for every address.
    pub host_ip: Option<Ipv4Addr>,
    /// `tcp`, `udp` or `sctp`.
    pub proto: Proto,
    /// The host port.
    pub host_port: u16,
    /// The container's address.
    pub container_ip: Ipv4Addr,
    /// The container port.
    pub container_port: u16,
}

impl Published {
    /// The map this element goes in, and the element.
    fn element(&self) -> (&'static str, String) {
        let target = format!("{} . {}", self.container_ip, self.container_port);
        match self.host_ip {
            Some(ip) if !ip.is_unspecified() => (
                "ports4",
                format!(
                    "{ip} . {} . {} : {target}",
                    self.proto.as_str(),
                    self.host_port
                ),
            ),
            _ => (
                "ports4_any",
                format!("{} . {} : {target}", self.proto.as_str(), self.host_port),
            ),
        }
    }

    /// True when this and `other` take the same host port (same protocol, overlapping
    /// addresses).
    pub fn clashes_with(&self, other: &Published) -> bool {
        let any = |ip: Option<Ipv4Addr>| ip.is_none_or(|ip| ip.is_unspecified());
        self.proto == other.proto
            && self.host_port == other.host_port
            && (any(self.host_ip) || any(other.host_ip) || self.host_ip == other.host_ip)
    }
}

impl std::fmt::Display for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self
            .host_ip
            .map_or("0.0.0.0".to_string(), |ip| ip.to_string());
        write!(
            f,
            "{host}:{}->{}:{}/{}",
            self.host_port,
            self.container_ip,
            self.container_port,
            self.proto.as_str()
        )
    }
}

/// One daemon's table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Its name (`rcd_1a2b3c`).
    pub name: String,
    /// The bridge its rules name.
    pub bridge: String,
    /// The subnet masqueraded.
    pub subnet: Cidr,
}

impl Table {
    /// The table of the daemon with root tag `tag` for bridge `bridge` on `subnet`.
    pub fn new(tag: &str, bridge: &str, subnet: Cidr) -> Self {
        Table {
            name: format!("rcd_{tag}"),
            bridge: bridge.to_string(),
            subnet,
        }
    }

    /// The script that replaces the whole table with its chains and `elements`: one
    /// transaction, so traffic never sees a half-made table.
    pub fn rebuild_script(&self, elements: &[Published]) -> String {
        let (t, br) = (&self.name, &self.bridge);
        let net = format!("{}/{}", self.subnet.network(), self.subnet.prefix);
        let mut s = format!(
            "table inet {t}\n\
             delete table inet {t}\n\
             table inet {t} {{\n\
             \x20 map ports4 {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
             \x20 map ports4_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
             \x20 chain guard {{\n\
             \x20   type filter hook prerouting priority raw; policy accept;\n\
             \x20   iifname \"{br}\" ip daddr 127.0.0.0/8 drop\n\
             \x20 }}\n\
             \x20 chain prerouting {{\n\
             \x20   type nat hook prerouting priority dstnat; policy accept;\n\
             \x20   fib daddr type local jump published\n\
             \x20 }}\n\
             \x20 chain output {{\n\
             \x20   type nat hook output priority -100; policy accept;\n\
             \x20   fib daddr type local jump published\n\
             \x20 }}\n\
             \x20 chain published {{\n\
             \x20   meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @ports4\n\
             \x20   meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4_any\n\
             \x20 }}\n\
             \x20 chain postrouting {{\n\
             \x20   type nat hook postrouting priority srcnat; policy accept;\n\
             \x20   ip saddr {net} ip daddr != {net} masquerade\n\
             \x20   oifname \"{br}\" ct status dnat ip saddr 127.0.0.0/8 masquerade\n\
             \x20   oifname \"{br}\" ct status dnat ip saddr {net} masquerade\n\
             \x20 }}\n\
             }}\n"
        );
        // One element per key: a second one would fail the whole transaction (records never
        // share a host port; this keeps a broken one from taking the table down with it).
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<Published> = elements
            .iter()
            .filter(|p| {
                let (map, element) = p.element();
                let key = element.split(" : ").next().unwrap_or_default().to_string();
                let first = seen.insert((map, key));
                if !first {
                    tracing::warn!("{}: host port published twice; kept the first", p);
                }
                first
            })
            .copied()
            .collect();
        s.push_str(&self.elements_script("add", &unique));
        s
    }

    fn elements_script(&self, verb: &str, elements: &[Published]) -> String {
        let mut s = String::new();
        for p in elements {
            let (map, element) = p.element();
            let _ = writeln!(s, "{verb} element inet {} {map} {{ {element} }}", self.name);
        }
        s
    }

    /// Replaces the table with one holding `elements`.
    pub fn rebuild(&self, elements: &[Published]) -> Result<(), Error> {
        nft(&self.rebuild_script(elements))
    }

    /// Adds `elements` (one transaction, through netlink: see `elements`).
    pub fn add(&self, elements: &[Published]) -> Result<(), Error> {
        let ops: Vec<_> = elements.iter().map(|p| (Op::Add, *p)).collect();
        super::elements::apply(&self.name, &ops)
    }

    /// Removes `elements` (one transaction); those not there are fine (each is added, then
    /// deleted: a delete of a missing element would fail the whole transaction).
    pub fn remove(&self, elements: &[Published]) -> Result<(), Error> {
        let ops: Vec<_> = elements
            .iter()
            .map(|p| (Op::Add, *p))
            .chain(elements.iter().map(|p| (Op::Delete, *p)))
            .collect();
        match super::elements::apply(&self.name, &ops) {
            // The table itself is gone (a reboot, an operator's flush): nothing to remove.
            Err(Error(m)) if m.contains("No such file or directory") => Ok(()),
            r => r,
        }
    }

    /// True if the table exists.
    pub fn exists(&self) -> Result<bool, Error> {
        match nft(&format!("list table inet {}\n", self.name)) {
            Ok(()) => Ok(true),
            Err(Error(m)) if m.contains("No such file or directory") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes the table, if there is one.
    pub fn delete(&self) -> Result<(), Error> {
        nft(&format!(
            "table inet {0}\ndelete table inet {0}\n",
            self.name
        ))
    }
}

/// Runs `nft -f -` with `script`, bounded in time.
fn nft(script: &str) -> Result<(), Error> {
    let mut cmd = Command::new("nft");
    cmd.args(["-f", "-"]);
    match crate::bounded::run(cmd, script.as_bytes(), TIMEOUT) {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(Error(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        Err(crate::bounded::RunError::Spawn(e)) => Err(Error(format!(
            "cannot run nft ({e}); install it: apt-get install -y nftables"
        ))),
        Err(e) => Err(Error(format!("{e:?}"))),
    }
}

/// The IPv4 address of `ip`, for a map element: IPv4 containers only.
pub fn v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(host: Option<&str>, proto: Proto, hp: u16, cp: u16) -> Published {
        Published {
            host_ip: host.map(|h| h.parse().unwrap()),
            proto,
            host_port: hp,
            container_ip: "10.89.0.5".parse().unwrap(),
            container_port: cp,
        }
    }

    #[test]
    fn elements_go_in_the_map_of_their_host_address() {
        let t = Table::new("abc123", "rcd0", "10.89.0.0/16".parse().unwrap());
        let s = t.elements_script(
            "add",
            &[
                p(Some("127.0.0.1"), Proto::Tcp, 8080, 80),
                p(None, Proto::Udp, 5353, 53),
                p(Some("0.0.0.0"), Proto::Sctp, 9, 9),
            ],
        );
        assert_eq!(
            s,
            "add element inet rcd_abc123 ports4 { 127.0.0.1 . tcp . 8080 : 10.89.0.5 . 80 }\n\
             add element inet rcd_abc123 ports4_any { udp . 5353 : 10.89.0.5 . 53 }\n\
             add element inet rcd_abc123 ports4_any { sctp . 9 : 10.89.0.5 . 9 }\n"
        );
        let r = t.rebuild_script(&[]);
        assert!(r.starts_with("table inet rcd_abc123\ndelete table inet rcd_abc123\n"));
        let twice = t.rebuild_script(&[
            p(None, Proto::Tcp, 80, 80),
            p(None, Proto::Tcp, 80, 81),
            p(None, Proto::Udp, 80, 80),
        ]);
        assert_eq!(twice.matches("add element").count(), 2, "{twice}");
        assert!(r.contains("ip saddr 10.89.0.0/16 ip daddr != 10.89.0.0/16 masquerade"));
        assert!(r.contains("iifname \"rcd0\" ip daddr 127.0.0.0/8 drop"));
    }

    #[test]
    fn clashes_are_same_port_and_protocol_on_overlapping_addresses() {
        let a = p(None, Proto::Tcp, 8080, 80);
        assert!(a.clashes_with(&p(Some("127.0.0.1"), Proto::Tcp, 8080, 81)));
        assert!(!a.clashes_with(&p(None, Proto::Udp, 8080, 80)));
        assert!(!p(Some("127.0.0.1"), Proto::Tcp, 1, 1).clashes_with(&p(
            Some("127.0.0.2"),
            Proto::Tcp,
            1,
            1
        )));
        assert!(p(Some("0.0.0.0"), Proto::Tcp, 1, 1).clashes_with(&p(
            Some("127.0.0.2"),
            Proto::Tcp,
            1,
            1
        )));
    }
}
