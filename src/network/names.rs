//! Names between units: every container on a bridge network finds the other units on the same
//! networks by unit name, through its `/etc/hosts` (rewritten in place whenever a container on
//! them starts, moves or goes, so names follow recreations).

use std::net::IpAddr;
use std::path::PathBuf;

/// A running container on bridge networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its unit's name: what the others call it.
    pub unit: String,
    /// Its own hostname.
    pub hostname: String,
    /// Its generated `/etc/hosts`.
    pub hosts_file: PathBuf,
    /// Its address on each network it joined.
    pub addresses: Vec<(String, IpAddr)>,
    /// Its unit's `extra_hosts`, listed last in its own file.
    pub extra: Vec<(String, IpAddr)>,
}

/// The `/etc/hosts` each member should have: itself, then every other member that shares a
/// network with it, by unit name, at its address on the first shared network.
pub fn hosts_files(members: &[Member]) -> Vec<(PathBuf, String)> {
    members
        .iter()
        .map(|m| (m.hosts_file.clone(), hosts_file(m, members)))
        .collect()
}

/// What the others call a unit: its name, an instance's '@' read as '-' (`web@blue` is
/// `web-blue`: an '@' in a host name would read as a URL's user part).
pub fn peer_name(unit: &str) -> String {
    unit.replace('@', "-")
}

/// The `/etc/hosts` of `m` among `members` (which may or may not include `m`).
pub fn hosts_file(m: &Member, members: &[Member]) -> String {
    let own = m.addresses.first().map(|(_, ip)| *ip);
    let peers: Vec<(String, IpAddr)> = members
        .iter()
        .filter(|o| o.unit != m.unit)
        .filter_map(|o| {
            m.addresses.iter().find_map(|(net, _)| {
                o.addresses
                    .iter()
                    .find(|(n, _)| n == net)
                    .map(|(_, ip)| (peer_name(&o.unit), *ip))
            })
        })
        .collect();
    super::files::with_extra_hosts(super::files::hosts(&m.hostname, own, &peers), &m.extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(unit: &str, nets: &[(&str, &str)]) -> Member {
        Member {
            unit: unit.into(),
            hostname: unit.into(),
            hosts_file: PathBuf::from(format!("/c/{unit}/hosts")),
            addresses: nets
                .iter()
                .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
                .collect(),
            extra: Vec::new(),
        }
    }

    #[test]
    fn peers_are_those_sharing_a_network() {
        let all = [
            member("web", &[("rcd", "10.0.0.2"), ("back", "10.1.0.2")]),
            member("db", &[("back", "10.1.0.3")]),
            member("other", &[("elsewhere", "10.2.0.2")]),
        ];
        let files = hosts_files(&all);
        let web = &files[0].1;
        assert!(web.ends_with("10.0.0.2\tweb\n10.1.0.3\tdb\n"), "{web}");
        let db = &files[1].1;
        assert!(db.ends_with("10.1.0.3\tdb\n10.1.0.2\tweb\n"), "{db}");
        let other = &files[2].1;
        assert!(other.ends_with("10.2.0.2\tother\n"), "{other}");
    }
}
