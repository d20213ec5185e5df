//! The kernel and metadata keys of `[container]` and `[network]` beyond the basics: labels,
//! ulimits, sysctls, devices, `/dev/shm`'s size, name servers and extra host names. Each
//! parser takes the raw value and pushes its problems, located, to the checker's list.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;
use serde_spanned::Spanned;

use super::raw::{Problem, Scalar};

/// A host device node (or every node under a host directory) given to the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The host path (`/dev/net/tun`, or a directory such as `/dev/dri`).
    pub host: PathBuf,
    /// Where it appears in the container.
    pub container: String,
    /// Cgroup access: a non-empty subset of "rwm".
    pub access: String,
}

/// One resource limit, soft and hard; `u64::MAX` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    /// The soft limit.
    pub soft: u64,
    /// The hard limit, at least the soft one.
    pub hard: u64,
}

/// Docker's `--ulimit` names and the kernel's resources they set.
const ULIMITS: &[(&str, &str)] = &[
    ("as", "RLIMIT_AS"),
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

/// The kernel parameters a container may set: those of its own IPC namespace, and `net.*`
/// of its own network namespace (Docker's rule). Anything else would change the host.
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// `labels`: any keys but empty ones or rcd's own prefix; values free.
pub(super) fn labels(
    raw: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in raw.unwrap_or_default() {
        let key = k.get_ref();
        if key.is_empty() || key.contains('\0') || v.get_ref().contains('\0') {
            problems.push(Problem::new(
                k.span(),
                "a label key must not be empty and neither key nor value may contain a NUL byte",
            ));
        } else if key.starts_with("rcd.") {
            problems.push(Problem::new(
                k.span(),
                format!("label {key:?}: keys starting with \"rcd.\" are rcd's own"),
            ));
        } else {
            out.insert(k.into_inner(), v.into_inner());
        }
    }
    out
}

/// `ulimits = { nofile = "1024:65536", nproc = 4096, core = "unlimited" }`, keyed by the
/// kernel's name (`RLIMIT_NOFILE`).
pub(super) fn ulimits(
    raw: Option<BTreeMap<Spanned<String>, Spanned<Scalar>>>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Ulimit> {
    let mut out = BTreeMap::new();
    for (k, v) in raw.unwrap_or_default() {
        let Some((_, kernel)) = ULIMITS.iter().find(|(n, _)| *n == k.get_ref().as_str()) else {
            let names: Vec<&str> = ULIMITS.iter().map(|(n, _)| *n).collect();
            problems.push(Problem::new(
                k.span(),
                format!(
                    "unknown ulimit {:?}: expected one of {}",
                    k.get_ref(),
                    names.join(", ")
                ),
            ));
            continue;
        };
        match ulimit(v.get_ref()) {
            Ok(u) => {
                out.insert(kernel.to_string(), u);
            }
            Err(reason) => problems.push(Problem::new(
                v.span(),
                format!("invalid ulimit {} {}: {reason}", k.get_ref(), v.get_ref()),
            )),
        }
    }
    out
}

/// One ulimit value: `n` (soft and hard), `"soft:hard"`, `-1` or `"unlimited"`.
fn ulimit(value: &Scalar) -> Result<Ulimit, String> {
    let one = |t: &str| -> Result<u64, String> {
        match t.trim() {
            "unlimited" | "-1" => Ok(u64::MAX),
            n => n
                .parse::<u64>()
                .map_err(|_| "expected a number, \"soft:hard\" or \"unlimited\"".to_owned()),
        }
    };
    let (soft, hard) = match value {
        Scalar::Int(-1) => (u64::MAX, u64::MAX),
        Scalar::Int(n) => {
            let n = u64::try_from(*n).map_err(|_| "must not be negative".to_owned())?;
            (n, n)
        }
        Scalar::Text(t) => match t.split_once(':') {
            Some((s, h)) => (one(s)?, one(h)?),
            None => {
                let n = one(t)?;
                (n, n)
            }
        },
    };
    if soft > hard {
        return Err("the soft limit is above the hard one".to_owned());
    }
    Ok(Ulimit { soft, hard })
}

/// `sysctls = { "net.ipv4.ip_unprivileged_port_start" = 0 }`: namespaced ones only; `net.*`
/// not with the host's network (`host_network`).
pub(super) fn sysctls(
    raw: Option<BTreeMap<Spanned<String>, Spanned<Scalar>>>,
    host_network: bool,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in raw.unwrap_or_default() {
        // Written with dots or slashes, as sysctl(8) takes both.
        let key = k.get_ref().replace('/', ".");
        let ipc = IPC_SYSCTLS.contains(&key.as_str()) || key.starts_with("fs.mqueue.");
        let net = key.starts_with("net.");
        let value = match v.get_ref() {
            Scalar::Text(t) => t.clone(),
            Scalar::Int(n) => n.to_string(),
        };
        let problem = if !ipc && !net {
            Some(format!(
                "sysctl {key:?} is not namespaced: it would change the host (allowed: net.*, fs.mqueue.*, {})",
                IPC_SYSCTLS.join(", ")
            ))
        } else if net && host_network {
            Some(format!(
                "sysctl {key:?} would change the host's network: not with `mode = \"host\"`"
            ))
        } else if key.contains("..") || key.ends_with('.') || value.contains(['\n', '\0']) {
            Some(format!("invalid sysctl {key:?}"))
        } else {
            None
        };
        match problem {
            Some(message) => problems.push(Problem::new(k.span(), message)),
            None => {
                out.insert(key, value);
            }
        }
    }
    out
}

/// `devices = ["/dev/net/tun", "/dev/dri:/dev/dri:rw", "nvidia.com/gpu=0"]`:
/// `HOST[:CONTAINER][:ACCESS]`, or a CDI device name (resolved from its spec at each start).
pub(super) fn devices(
    raw: Option<Spanned<Vec<Spanned<String>>>>,
    problems: &mut Vec<Problem>,
) -> (Vec<Device>, Vec<String>) {
    let mut out = Vec::new();
    let mut cdi = Vec::new();
    for d in raw.map(Spanned::into_inner).unwrap_or_default() {
        if crate::spec::cdi::is_name(d.get_ref()) {
            if cdi.contains(d.get_ref()) {
                problems.push(Problem::new(
                    d.span(),
                    format!("CDI device {:?} is named twice", d.get_ref()),
                ));
            } else {
                cdi.push(d.get_ref().clone());
            }
            continue;
        }
        match device(d.get_ref()) {
            Ok(dev) => out.push(dev),
            Err(reason) => {
                let hint = if reason.contains("under /dev") {
                    " (or a CDI name, vendor.com/class=name)"
                } else {
                    ""
                };
                problems.push(Problem::new(
                    d.span(),
                    format!("invalid device {:?}: {reason}{hint}", d.get_ref()),
                ))
            }
        }
    }
    (out, cdi)
}

fn device(text: &str) -> Result<Device, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let is_access = |s: &str| !s.is_empty() && s.chars().all(|c| "rwm".contains(c));
    let (host, container, access) = match parts[..] {
        [h] => (h, h, "rwm"),
        [h, a] if is_access(a) => (h, h, a),
        [h, c] => (h, c, "rwm"),
        [h, c, a] => (h, c, a),
        _ => return Err("expected HOST[:CONTAINER][:ACCESS]".to_owned()),
    };
    if !host.starts_with("/dev/") {
        return Err("the host path must be under /dev".to_owned());
    }
    if !container.starts_with('/') || container.split('/').any(|c| c == "..") {
        return Err("the container path must be absolute, without \"..\"".to_owned());
    }
    if !is_access(access) {
        return Err(format!(
            "access {access:?}: expected letters of \"rwm\" (read, write, mknod)"
        ));
    }
    Ok(Device {
        host: PathBuf::from(host),
        container: container.to_owned(),
        access: access.to_owned(),
    })
}

/// A size key (`shm_size`, a tmpfs `size`): size text or a byte count, above zero.
pub(super) fn positive_size(
    raw: Option<Spanned<Scalar>>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<u64> {
    let v = raw?;
    let checked = v.get_ref().bytes().and_then(|b| {
        if b > 0 {
            Ok(b)
        } else {
            Err("must be above zero".to_owned())
        }
    });
    checked
        .map_err(|reason| {
            problems.push(Problem::new(
                v.span(),
                format!("invalid {key} {}: {reason}", v.get_ref()),
            ))
        })
        .ok()
}

/// A `mode` key: permission bits of at most `max`, octal text or an integer.
pub(super) fn mode(
    raw: Option<Spanned<Scalar>>,
    max: u32,
    example: &str,
    problems: &mut Vec<Problem>,
) -> Option<u32> {
    let v = raw?;
    let bits = v.get_ref().octal(max);
    if bits.is_none() {
        problems.push(Problem::new(
            v.span(),
            format!(
                "invalid mode {}: expected octal permission bits such as {example}",
                v.get_ref()
            ),
        ));
    }
    bits
}

/// `[network]`'s resolver and host-name keys, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Names {
    /// Name servers, instead of the host's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
    /// Search domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// Resolver options.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    /// Extra `/etc/hosts` entries, in file order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<(String, IpAddr)>,
}

impl Names {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Names::default()
    }
}

/// A word for resolv.conf: no whitespace or control characters.
fn word(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Validates `dns`, `dns_search`, `dns_options` and `extra_hosts`.
pub(super) fn names(
    dns: Option<Spanned<Vec<Spanned<String>>>>,
    search: Option<Spanned<Vec<Spanned<String>>>>,
    options: Option<Spanned<Vec<Spanned<String>>>>,
    extra: Option<Spanned<Vec<Spanned<String>>>>,
    problems: &mut Vec<Problem>,
) -> Names {
    let list =
        |l: Option<Spanned<Vec<Spanned<String>>>>| l.map(Spanned::into_inner).unwrap_or_default();
    let mut out = Names::default();
    for s in list(dns) {
        match s.get_ref().trim().parse::<IpAddr>() {
            Ok(ip) => out.dns.push(ip),
            Err(_) => problems.push(Problem::new(
                s.span(),
                format!("dns {:?} is not an IP address", s.get_ref()),
            )),
        }
    }
    for (key, into) in [("dns_search", list(search)), ("dns_options", list(options))] {
        for s in into {
            if word(s.get_ref()) {
                if key == "dns_search" {
                    out.dns_search.push(s.into_inner());
                } else {
                    out.dns_options.push(s.into_inner());
                }
            } else {
                problems.push(Problem::new(
                    s.span(),
                    format!("{key} {:?} must be one word", s.get_ref()),
                ));
            }
        }
    }
    for s in list(extra) {
        // "name:address"; an IPv6 address has colons of its own, so split at the first.
        let parsed = s
            .get_ref()
            .split_once(':')
            .and_then(|(name, ip)| {
                Some((name, ip.trim_matches(['[', ']']).parse::<IpAddr>().ok()?))
            })
            .filter(|(name, _)| word(name));
        match parsed {
            Some((name, ip)) => out.extra_hosts.push((name.to_owned(), ip)),
            None => problems.push(Problem::new(
                s.span(),
                format!("extra_hosts {:?}: expected \"name:address\"", s.get_ref()),
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimit_values() {
        let u = |s: Scalar| ulimit(&s);
        assert_eq!(
            u(Scalar::Int(1024)),
            Ok(Ulimit {
                soft: 1024,
                hard: 1024
            })
        );
        assert_eq!(
            u(Scalar::Text("1024:65536".into())),
            Ok(Ulimit {
                soft: 1024,
                hard: 65536
            })
        );
        assert_eq!(
            u(Scalar::Text("unlimited".into())),
            Ok(Ulimit {
                soft: u64::MAX,
                hard: u64::MAX
            })
        );
        assert!(u(Scalar::Text("9:1".into())).is_err());
        assert!(u(Scalar::Text("lots".into())).is_err());
    }

    #[test]
    fn device_forms() {
        let d = device("/dev/net/tun").unwrap();
        assert_eq!(
            (d.container.as_str(), d.access.as_str()),
            ("/dev/net/tun", "rwm")
        );
        let d = device("/dev/dri:/dev/dri:rw").unwrap();
        assert_eq!(d.access, "rw");
        let d = device("/dev/fuse:r").unwrap();
        assert_eq!(
            (d.container.as_str(), d.access.as_str()),
            ("/dev/fuse", "r")
        );
        assert!(device("/etc/passwd").is_err());
        assert!(device("/dev/x:/dev/y:rwx").is_err());
        assert!(device("/dev/x:relative").is_err());
    }
}
