//! Published ports: Docker's `-p` text (`[ip:][hostPort:]containerPort[/proto]`) in, a
//! `PortMapping` out.
//!
//! Parsers return the reason alone on error; the caller names the key and the value.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// What a mapping looks like, for messages.
pub const SHAPE: &str =
    "expected [ip:][hostPort:]containerPort[/proto], e.g. \"8080:80\" or \"127.0.0.1:5353:53/udp\"";

/// One `ports` entry: container port(s) published on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortMapping {
    /// Host address to bind; `None` is every address (Docker's default).
    pub host_ip: Option<IpAddr>,
    /// Host port(s); `None` is an ephemeral port chosen at start (Docker's `-p 80`). A range
    /// with a single container port means one free port of that range (Docker's rule).
    pub host_port: Option<PortRange>,
    /// Container port(s); as long as `host_port` when both are ranges.
    pub container_port: PortRange,
    /// Protocol, default tcp.
    pub proto: Proto,
}

/// An inclusive range of ports, each 1-65535; a single port has `first == last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PortRange {
    /// The first port.
    pub first: u16,
    /// The last port, not below `first`.
    pub last: u16,
}

/// A published port's protocol.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Proto {
    /// The name as Docker writes it ("tcp").
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PortRange {
    /// How many ports the range holds (at least one).
    pub fn count(self) -> u32 {
        u32::from(self.last - self.first) + 1
    }

    /// Whether the two ranges share a port.
    pub fn overlaps(self, other: PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for PortRange {
    /// "80" or "8000-8010".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl fmt::Display for PortMapping {
    /// The normalized `-p` form: "127.0.0.1:8443:443/tcp", "\[::1\]::80/udp", "80/tcp".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V4(ip)) => write!(f, "{ip}:")?,
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            None => {}
        }
        match (self.host_port, self.host_ip) {
            (Some(host), _) => write!(f, "{host}:")?,
            // `ip::port`: the address needs its empty host port to stay unambiguous.
            (None, Some(_)) => f.write_str(":")?,
            (None, None) => {}
        }
        write!(f, "{}/{}", self.container_port, self.proto)
    }
}

impl PortMapping {
    /// The first host port that this mapping and `other` would both bind, if any: the same
    /// protocol, overlapping host ports, and addresses that overlap (equal, or one of them every
    /// address of the other's family). Ephemeral host ports never collide here.
    pub fn collides_with(&self, other: &PortMapping) -> Option<u16> {
        let (Some(a), Some(b)) = (self.host_port, other.host_port) else {
            return None;
        };
        if self.proto != other.proto || !a.overlaps(b) || !ips_overlap(self.host_ip, other.host_ip)
        {
            return None;
        }
        Some(a.first.max(b.first))
    }
}

/// Whether binding `a` and `b` would take the same address; `None` is every address.
fn ips_overlap(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) => {
            a == b || (a.is_ipv4() == b.is_ipv4() && (a.is_unspecified() || b.is_unspecified()))
        }
    }
}

/// Parses one mapping in Docker's `-p` syntax: `80`, `8080:80`, `127.0.0.1:8080:80`,
/// `127.0.0.1::80`, `[::1]:8080:80`, `8000-8010:8000-8010`, each with an optional
/// `/tcp`, `/udp` or `/sctp` (any case; default tcp).
pub fn parse(text: &str) -> Result<PortMapping, String> {
    if text.is_empty() {
        return Err(format!("empty; {SHAPE}"));
    }
    let (rest, proto) = match text.split_once('/') {
        Some((rest, proto)) => (rest, parse_proto(proto)?),
        None => (text, Proto::Tcp),
    };

    // Split into address, host port and container port; brackets protect IPv6's colons.
    let (ip, host, container) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (ip, after) = bracketed
            .split_once(']')
            .ok_or_else(|| "'[' without its ']'".to_owned())?;
        let ports = after.strip_prefix(':').ok_or_else(|| SHAPE.to_owned())?;
        let ip = ip
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        let (host, container) = ports
            .split_once(':')
            .ok_or_else(|| needs_host_port(&format!("[{ip}]"), ports))?;
        (Some(IpAddr::V6(ip)), Some(host), container)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts[..] {
            [container] => (None, None, container),
            [host, container] => {
                if host.is_empty() {
                    return Err(format!(
                        "empty host port; write {container:?} for an ephemeral host port"
                    ));
                }
                if host.parse::<Ipv4Addr>().is_ok() {
                    return Err(needs_host_port(host, container));
                }
                (None, Some(host), container)
            }
            [ip, host, container] => (Some(parse_ipv4(ip)?), Some(host), container),
            _ => {
                let ip = parts[..parts.len() - 2].join(":");
                return Err(if ip.parse::<Ipv6Addr>().is_ok() {
                    format!("an IPv6 address must be in brackets, e.g. \"[{ip}]:8080:80\"")
                } else {
                    SHAPE.to_owned()
                });
            }
        }
    };

    // `ip::80` is an ephemeral port on that address.
    let host_port = match host {
        Some("") | None => None,
        Some(h) => Some(parse_range(h)?),
    };
    if container.is_empty() {
        return Err(format!("missing container port; {SHAPE}"));
    }
    let container_port = parse_range(container)?;
    if let Some(h) = host_port {
        if h.count() != container_port.count() && container_port.count() != 1 {
            return Err(format!(
                "host ports {h} and container ports {container_port} are ranges of different lengths ({} and {})",
                h.count(),
                container_port.count()
            ));
        }
    }
    Ok(PortMapping {
        host_ip: ip,
        host_port,
        container_port,
        proto,
    })
}

/// `127.0.0.1:80`: Docker reads the address as a host port; say what was meant.
fn needs_host_port(ip: &str, container: &str) -> String {
    format!(
        "an address needs a host port: write \"{ip}:HOSTPORT:{container}\", or \"{ip}::{container}\" for an ephemeral one"
    )
}

fn parse_proto(text: &str) -> Result<Proto, String> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        "sctp" => Ok(Proto::Sctp),
        "" => Err("missing protocol after '/': expected tcp, udp or sctp".to_owned()),
        _ => Err(format!(
            "unknown protocol {text:?}, expected tcp, udp or sctp"
        )),
    }
}

fn parse_ipv4(text: &str) -> Result<IpAddr, String> {
    if text.is_empty() {
        return Err(format!("empty IP address; {SHAPE}"));
    }
    text.parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .map_err(|_| format!("{text:?} is not an IP address"))
}

/// "80" or "8000-8010".
fn parse_range(text: &str) -> Result<PortRange, String> {
    let (first, last) = match text.split_once('-') {
        Some((a, b)) if a.is_empty() || b.is_empty() || b.contains('-') => {
            return Err(format!("{text:?} is not a port or a port range"));
        }
        Some((a, b)) => (parse_port(a)?, parse_port(b)?),
        None => {
            let p = parse_port(text)?;
            (p, p)
        }
    };
    if last < first {
        return Err(format!("port range {text} ends before it starts"));
    }
    Ok(PortRange { first, last })
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err(format!("missing port number; {SHAPE}"));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a port number"));
    }
    match text.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        // Zero, too large, or too many digits for u32.
        _ => Err(format!("port {text} is out of range 1-65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    fn m(ip: Option<&str>, host: Option<(u16, u16)>, c: (u16, u16), proto: Proto) -> PortMapping {
        PortMapping {
            host_ip: ip.and_then(|i| i.parse().ok()),
            host_port: host.map(|(a, b)| r(a, b)),
            container_port: r(c.0, c.1),
            proto,
        }
    }

    #[test]
    fn good() {
        use Proto::*;
        let cases: &[(&str, PortMapping, &str)] = &[
            ("80", m(None, None, (80, 80), Tcp), "80/tcp"),
            ("80/udp", m(None, None, (80, 80), Udp), "80/udp"),
            (
                "8080:80",
                m(None, Some((8080, 8080)), (80, 80), Tcp),
                "8080:80/tcp",
            ),
            (
                "127.0.0.1:8443:443/tcp",
                m(Some("127.0.0.1"), Some((8443, 8443)), (443, 443), Tcp),
                "127.0.0.1:8443:443/tcp",
            ),
            (
                "5353:53/udp",
                m(None, Some((5353, 5353)), (53, 53), Udp),
                "5353:53/udp",
            ),
            (
                "5353:53/UDP",
                m(None, Some((5353, 5353)), (53, 53), Udp),
                "5353:53/udp",
            ),
            ("9:9/sctp", m(None, Some((9, 9)), (9, 9), Sctp), "9:9/sctp"),
            (
                "8000-8010:8000-8010",
                m(None, Some((8000, 8010)), (8000, 8010), Tcp),
                "8000-8010:8000-8010/tcp",
            ),
            (
                "8000-8010:9000-9010/udp",
                m(None, Some((8000, 8010)), (9000, 9010), Udp),
                "8000-8010:9000-9010/udp",
            ),
            // Docker's rule: one container port on a free port of the host range.
            (
                "8000-8010:80",
                m(None, Some((8000, 8010)), (80, 80), Tcp),
                "8000-8010:80/tcp",
            ),
            (
                "7000-7002",
                m(None, None, (7000, 7002), Tcp),
                "7000-7002/tcp",
            ),
            (
                "[::1]:8080:80",
                m(Some("::1"), Some((8080, 8080)), (80, 80), Tcp),
                "[::1]:8080:80/tcp",
            ),
            (
                "[2001:db8::1]:53:53/udp",
                m(Some("2001:db8::1"), Some((53, 53)), (53, 53), Udp),
                "[2001:db8::1]:53:53/udp",
            ),
            (
                "127.0.0.1::80",
                m(Some("127.0.0.1"), None, (80, 80), Tcp),
                "127.0.0.1::80/tcp",
            ),
            (
                "[::]::80",
                m(Some("::"), None, (80, 80), Tcp),
                "[::]::80/tcp",
            ),
            (
                "0.0.0.0:1:65535",
                m(Some("0.0.0.0"), Some((1, 1)), (65535, 65535), Tcp),
                "0.0.0.0:1:65535/tcp",
            ),
            (
                "080:0080",
                m(None, Some((80, 80)), (80, 80), Tcp),
                "80:80/tcp",
            ),
            ("80-80", m(None, None, (80, 80), Tcp), "80/tcp"),
        ];
        for (text, want, shown) in cases {
            match parse(text) {
                Ok(got) => {
                    assert_eq!(&got, want, "{text:?}");
                    assert_eq!(got.to_string(), *shown, "{text:?}");
                    // The normalized form reads back as the same mapping.
                    assert_eq!(parse(shown).as_ref(), Ok(want), "{shown:?}");
                }
                Err(e) => panic!("{text:?}: {e}"),
            }
        }
    }

    #[test]
    fn bad() {
        let cases: &[(&str, &str)] = &[
            ("", "empty; expected [ip:][hostPort:]containerPort[/proto], e.g. \"8080:80\" or \"127.0.0.1:5353:53/udp\""),
            ("0", "port 0 is out of range 1-65535"),
            ("8080:0", "port 0 is out of range 1-65535"),
            ("0:80", "port 0 is out of range 1-65535"),
            ("65536", "port 65536 is out of range 1-65535"),
            ("99999999999", "port 99999999999 is out of range 1-65535"),
            ("http", "\"http\" is not a port number"),
            ("-1", "\"-1\" is not a port or a port range"),
            ("+80", "\"+80\" is not a port number"),
            (" 80", "\" 80\" is not a port number"),
            ("80/icmp", "unknown protocol \"icmp\", expected tcp, udp or sctp"),
            ("80/", "missing protocol after '/': expected tcp, udp or sctp"),
            ("80/tcp/udp", "unknown protocol \"tcp/udp\", expected tcp, udp or sctp"),
            ("8080:", "missing container port; expected [ip:][hostPort:]containerPort[/proto], e.g. \"8080:80\" or \"127.0.0.1:5353:53/udp\""),
            (":80", "empty host port; write \"80\" for an ephemeral host port"),
            ("::80", "empty IP address; expected [ip:][hostPort:]containerPort[/proto], e.g. \"8080:80\" or \"127.0.0.1:5353:53/udp\""),
            ("300.1.1.1:80:80", "\"300.1.1.1\" is not an IP address"),
            ("localhost:80:80", "\"localhost\" is not an IP address"),
            ("::1:8080:80", "an IPv6 address must be in brackets, e.g. \"[::1]:8080:80\""),
            ("1:2:3:4", "expected [ip:][hostPort:]containerPort[/proto], e.g. \"8080:80\" or \"127.0.0.1:5353:53/udp\""),
            ("[::1:8080:80", "'[' without its ']'"),
            ("[::1]8080:80", "expected [ip:][hostPort:]containerPort[/proto], e.g. \"8080:80\" or \"127.0.0.1:5353:53/udp\""),
            ("[::1]:80", "an address needs a host port: write \"[::1]:HOSTPORT:80\", or \"[::1]::80\" for an ephemeral one"),
            ("127.0.0.1:80/udp", "an address needs a host port: write \"127.0.0.1:HOSTPORT:80\", or \"127.0.0.1::80\" for an ephemeral one"),
            ("[127.0.0.1]:80:80", "\"127.0.0.1\" is not an IPv6 address"),
            ("[fe80::1%eth0]:80:80", "\"fe80::1%eth0\" is not an IPv6 address"),
            ("8010-8000:80", "port range 8010-8000 ends before it starts"),
            ("8000-:80", "\"8000-\" is not a port or a port range"),
            ("1-2-3", "\"1-2-3\" is not a port or a port range"),
            ("80-http", "\"http\" is not a port number"),
            (
                "8000-8010:80-81",
                "host ports 8000-8010 and container ports 80-81 are ranges of different lengths (11 and 2)",
            ),
            (
                "80:8000-8001",
                "host ports 80 and container ports 8000-8001 are ranges of different lengths (1 and 2)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse(text).as_ref().map_err(|e| e.as_str()),
                Err(*want),
                "{text:?}"
            );
        }
    }

    #[test]
    fn collisions() {
        let p = |text: &str| match parse(text) {
            Ok(m) => m,
            Err(e) => panic!("{text:?}: {e}"),
        };
        let cases: &[(&str, &str, Option<u16>)] = &[
            ("8080:80", "8080:81", Some(8080)),
            ("8080:80", "8080:80/udp", None),
            ("8080:80", "8081:80", None),
            ("8080:80", "127.0.0.1:8080:80", Some(8080)),
            ("127.0.0.1:8080:80", "127.0.0.2:8080:80", None),
            ("0.0.0.0:8080:80", "127.0.0.1:8080:80", Some(8080)),
            ("0.0.0.0:8080:80", "[::1]:8080:80", None),
            ("[::]:8080:80", "[::1]:8080:80", Some(8080)),
            ("[::1]:8080:80", "127.0.0.1:8080:80", None),
            ("8000-8010:8000-8010", "8005:80", Some(8005)),
            ("8000-8010:8000-8010", "7990-8000:7990-8000", Some(8000)),
            ("8000-8010:8000-8010", "8011-8012:1-2", None),
            ("80", "80", None),
            ("127.0.0.1::80", "127.0.0.1::80", None),
        ];
        for (a, b, want) in cases {
            assert_eq!(p(a).collides_with(&p(b)), *want, "{a:?} {b:?}");
            assert_eq!(p(b).collides_with(&p(a)), *want, "{b:?} {a:?}");
        }
    }
}
