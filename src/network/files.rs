//! The files a container's network identity needs, generated per container as Docker does:
//! `/etc/hostname`, `/etc/hosts` (itself, then the units it can reach by name) and
//! `/etc/resolv.conf` (the host's, minus nameservers a container cannot reach). They are
//! bind-mounted, so later updates rewrite them in place rather than replacing them.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

/// The fixed head of every generated `/etc/hosts` (Docker's).
const HOSTS_HEAD: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// Nameservers used when the host has none a container can reach (Docker's fallback).
const FALLBACK_DNS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// `/etc/hosts` for a container named `hostname` at `ip`, with `peers` (name, address) after
/// it, each name once, in the order given.
pub fn hosts(hostname: &str, ip: Option<IpAddr>, peers: &[(String, IpAddr)]) -> String {
    let mut out = String::from(HOSTS_HEAD);
    if let Some(ip) = ip {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    let mut seen = std::collections::HashSet::from([hostname.to_string()]);
    for (name, addr) in peers {
        if seen.insert(name.clone()) {
            out.push_str(&format!("{addr}\t{name}\n"));
        }
    }
    out
}

/// `/etc/resolv.conf` for a container with its own network, from the host's: nameservers on
/// loopback (a local resolver such as systemd-resolved's 127.0.0.53) are unreachable from
/// the container's namespace and are dropped; if none remain, Docker's fallback servers.
pub fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let loopback = words
                .next()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_some_and(|a| a.is_loopback());
            if loopback {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        for s in FALLBACK_DNS {
            out.push_str(&format!("nameserver {s}\n"));
        }
    }
    out
}

/// The unit's `dns`, `dns_search` and `dns_options` applied to a generated `resolv.conf`:
/// each that is set replaces the lines of its kind (Docker's `--dns`, `--dns-search`,
/// `--dns-option`).
pub fn with_resolver(base: &str, names: &crate::unit::Names) -> String {
    let replaced = |line: &str| {
        let first = line.split_whitespace().next().unwrap_or("");
        (first == "nameserver" && !names.dns.is_empty())
            || (matches!(first, "search" | "domain") && !names.dns_search.is_empty())
            || (first == "options" && !names.dns_options.is_empty())
    };
    let mut out: String = base
        .lines()
        .filter(|l| !replaced(l))
        .map(|l| format!("{l}\n"))
        .collect();
    for s in &names.dns {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !names.dns_search.is_empty() {
        out.push_str(&format!("search {}\n", names.dns_search.join(" ")));
    }
    if !names.dns_options.is_empty() {
        out.push_str(&format!("options {}\n", names.dns_options.join(" ")));
    }
    out
}

/// The unit's `extra_hosts` appended to a generated `/etc/hosts`.
pub fn with_extra_hosts(mut hosts: String, extra: &[(String, IpAddr)]) -> String {
    for (name, ip) in extra {
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    hosts
}

/// Writes `content` into `path` in place (write, then cut to length): a file bind-mounted into
/// a container must keep its inode, or the container keeps seeing the old one. No fsync: these
/// files are made again at every start and every change of the units on a network, and a
/// container reads them from the page cache. Not opened with `O_TRUNC`: ext4 writes back a
/// file truncated to zero at its close (`auto_da_alloc`), which made every rewrite a disk write.
pub fn write_in_place(path: &Path, content: impl AsRef<[u8]>) -> std::io::Result<()> {
    let content = content.as_ref();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    f.write_all(content)?;
    f.set_len(content.len() as u64)
}

/// For `mode = "host"`: copies of the host's `/etc/hosts` and `/etc/resolv.conf` in `dir`
/// (Docker's rule: the host's files, as they were at the start, which the container cannot
/// change on the host).
/// The unit's resolver settings and extra host names are applied to the copies.
pub fn write_host_copies(dir: &Path, names: &crate::unit::Names) -> std::io::Result<()> {
    for (name, source) in [("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf")] {
        let content = match std::fs::read_to_string(source) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let content = match name {
            "hosts" => with_extra_hosts(content, &names.extra_hosts),
            _ => with_resolver(&content, names),
        };
        write_in_place(&dir.join(name), &content)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lists_itself_then_peers_once() {
        let ip: IpAddr = "10.89.0.5".parse().unwrap();
        let peers = vec![
            ("db".to_string(), "10.89.0.6".parse().unwrap()),
            ("web".to_string(), "10.89.0.9".parse().unwrap()),
            ("db".to_string(), "10.89.0.7".parse().unwrap()),
        ];
        let h = hosts("web", Some(ip), &peers);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.89.0.5\tweb\n10.89.0.6\tdb\n"), "{h}");
        assert_eq!(hosts("x", None, &[]), HOSTS_HEAD);
    }

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        for (host, want) in [
            (
                "search lan\nnameserver 10.0.0.1\noptions ndots:2\n",
                "search lan\nnameserver 10.0.0.1\noptions ndots:2\n",
            ),
            (
                "nameserver 127.0.0.53\nsearch lan\n",
                "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n",
            ),
            (
                "nameserver ::1\nnameserver 1.1.1.1\n",
                "nameserver 1.1.1.1\n",
            ),
            ("", "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"),
        ] {
            assert_eq!(resolv_conf(host), want, "{host:?}");
        }
    }

    #[test]
    fn rewrites_keep_the_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        write_in_place(&p, "a long first version\n").unwrap();
        let ino = std::fs::metadata(&p).unwrap().ino();
        write_in_place(&p, "short\n").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().ino(), ino);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "short\n");
    }
}
