//! A container instance's network, as the start pipeline needs it: for `mode = "bridge"`, a
//! namespace pinned under the state root, joined to each of the unit's networks (published
//! ports on the first): the default network `rcd` by the native driver (`bridge`) unless the
//! config says `driver = "cni"`, every other network through its CNI conflist; and
//! `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` generated beside it. Kept across restarts
//! of the instance, like its writable layer; taken down (native detach or CNI DEL, namespace
//! removed) when the instance is retired. An attachment is taken down by whoever made it: a
//! container attached through CNI before the native driver keeps its CNI attachment until then.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bridge::{self, Native, Published};
use super::cni::{self, Attachment, Cni, NetworkList, PortMapping, Protocol};
use super::names::{self, Member};
use super::{files, netns};
use crate::config::file::{BridgeDriver, Network as NetworkConfig};
use crate::unit::ports::{PortMapping as UnitPort, Proto};
use crate::unit::Unit;

/// A network step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The unit names a network that is not configured.
    #[error("unknown network {0:?} (configured: {1})")]
    Unknown(String, String),
    /// A host port cannot be published.
    #[error("cannot publish {mapping}: {reason}")]
    Port {
        /// The mapping, as the unit wrote it.
        mapping: String,
        /// Why not (the port is taken, ...).
        reason: String,
    },
    /// The namespace.
    #[error(transparent)]
    Netns(#[from] netns::Error),
    /// A CNI call.
    #[error(transparent)]
    Cni(#[from] cni::Error),
    /// The native bridge.
    #[error(transparent)]
    Native(#[from] bridge::Error),
    /// A generated file.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What a container got from its networks, for `rctl status` and the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// The pinned namespace.
    pub netns: PathBuf,
    /// One entry per network joined, in the unit's order.
    pub networks: Vec<JoinedNetwork>,
    /// Published ports (`127.0.0.1:8080->80/tcp`).
    pub ports: Vec<String>,
}

impl Joined {
    /// The address on each network joined, by network name (for the names between units).
    pub fn addresses(&self) -> Vec<(String, IpAddr)> {
        self.networks
            .iter()
            .filter_map(|n| {
                let ip = n.address.as_deref()?.split('/').next()?.parse().ok()?;
                Some((n.name.clone(), ip))
            })
            .collect()
    }
}

/// One network a container joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinedNetwork {
    /// The network's name.
    pub name: String,
    /// The interface in the container.
    pub ifname: String,
    /// Its address with prefix (`10.89.0.5/16`).
    pub address: Option<String>,
    /// Its gateway.
    pub gateway: Option<IpAddr>,
    /// The CNI result of the ADD as the plugins returned it (interfaces, MACs, routes, DNS).
    #[serde(default)]
    pub result: Option<serde_json::Value>,
}

/// The daemon's networks and its CNI runner.
pub struct Networks {
    /// Runs the plugins.
    pub cni: Cni,
    /// Networks by name: the default `rcd`, then the config directory's.
    pub lists: BTreeMap<String, NetworkList>,
    /// The native driver of the default network, unless the config chose CNI for it.
    pub native: Option<Native>,
    /// Where namespaces are pinned.
    pub netns_dir: PathBuf,
    /// What units that name no network join (`[network] default`).
    pub default: String,
}

impl Networks {
    /// The default network from the config, plus every `*.conflist` in its directory; CNI
    /// state (the attachment cache, IPAM leases) under `root/cni`.
    pub fn open(root: &Path, config: &NetworkConfig) -> Result<Self, String> {
        let lists = configured(config)?;
        let mut cni = Cni::new(root.join("cni/cache"), root.join("cni/ipam"));
        cni.plugin_dirs = config.plugin_dirs.clone();
        let netns_dir = root.join("netns");
        std::fs::create_dir_all(&netns_dir).map_err(|e| format!("{}: {e}", netns_dir.display()))?;
        let native = match config.driver {
            BridgeDriver::Cni => None,
            BridgeDriver::Native => {
                let subnet = config
                    .subnet
                    .parse()
                    .map_err(|e| format!("[network] subnet: {e}"))?;
                let name = crate::unit::DEFAULT_NETWORK;
                Some(Native::new(
                    name,
                    &config.bridge,
                    subnet,
                    &root.join("net").join(name),
                    &root.join("cni/ipam"),
                    &crate::config::root_tag(root),
                )?)
            }
        };
        if !lists.contains_key(&config.default) {
            return Err(format!(
                "[network] default = {:?}: no such network (known: {})",
                config.default,
                lists.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(Networks {
            cni,
            lists,
            native,
            netns_dir,
            default: config.default.clone(),
        })
    }

    /// At daemon start: the native driver's firewall rebuilt from its records (what a reboot
    /// or a crash left stale goes). A failure is logged: the starts that need it say so.
    pub fn restore(&self) {
        if let Some(n) = &self.native {
            if let Err(e) = n.restore() {
                tracing::warn!("network {}: restoring the firewall: {e}", n.name);
            }
        }
    }

    /// The native driver, if it runs network `name`.
    fn native_for(&self, name: &str) -> Option<&Native> {
        self.native.as_ref().filter(|n| n.name == name)
    }

    /// Where instance `id`'s namespace is pinned.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.netns_dir.join(id)
    }

    /// Sets up instance `id`'s network (blocking); what a restart of the instance finds done
    /// is kept. `dir` is the instance's directory, for the generated files; `members` are the
    /// running containers on bridge networks, named in its `/etc/hosts` from the start.
    pub fn attach(
        &self,
        id: &str,
        unit: &Unit,
        dir: &Path,
        members: &[Member],
    ) -> Result<Joined, Error> {
        let ns = self.netns_path(id);
        if !netns::is_pinned(&ns) {
            // A new namespace: attachments cached for an older one (before a reboot, or a
            // crash between steps) describe interfaces that are gone; release them first.
            self.release(id)?;
        }
        netns::create(&ns)?;
        let mut joined = Joined {
            netns: ns.clone(),
            ..Joined::default()
        };
        let ports = cni_ports(&unit.network.ports)?;
        // A unit that names no network joins the daemon's default (read at each attach, so a
        // changed default applies at the unit's next start, as Docker's default bridge does).
        let networks = if unit.network.networks_written {
            unit.network.networks.clone()
        } else {
            vec![self.default.clone()]
        };
        for (i, name) in networks.iter().enumerate() {
            let list = self.lists.get(name).ok_or_else(|| {
                Error::Unknown(
                    name.clone(),
                    self.lists.keys().cloned().collect::<Vec<_>>().join(", "),
                )
            })?;
            let ifname = format!("eth{i}");
            let cached = self.cni.cached(name, id, &ifname)?;
            let native = self.native_for(name);
            let joined_network = match cached {
                // Attached through CNI already (by this daemon, or by one before the native
                // driver): kept as it is until the instance is retired.
                Some(cni::CachedAttachment {
                    complete: true,
                    result: Some(done),
                    ..
                }) => from_cni(name, &ifname, done),
                stale => {
                    if stale.is_some() {
                        // An ADD a crash interrupted: undo it, then do it whole.
                        let att = Attachment::new(id, &ns, &ifname);
                        self.cni.del(list, &att)?;
                    }
                    if let Some(native) = native {
                        let ports = if i == 0 {
                            check_free(&unit.network.ports)?;
                            native_ports(&ports)
                        } else {
                            Vec::new()
                        };
                        let r = native.attach(id, &ns, &ifname, &ports)?;
                        JoinedNetwork {
                            name: name.clone(),
                            ifname,
                            address: Some(format!("{}/{}", r.address, r.prefix)),
                            gateway: Some(r.gateway),
                            result: Some(r.cni_result()),
                        }
                    } else {
                        let mut att = Attachment::new(id, &ns, &ifname);
                        if i == 0 {
                            check_free(&unit.network.ports)?;
                            att = att.with_ports(ports.clone());
                        }
                        from_cni(name, &ifname, self.cni.add(list, &att)?)
                    }
                }
            };
            joined.networks.push(joined_network);
        }
        // An IPv4 container is not published on IPv6 host addresses (see `native_ports`):
        // only what is published is shown.
        let v4 = joined
            .networks
            .first()
            .and_then(|n| n.address.as_deref())
            .is_some_and(|a| !a.contains(':'));
        joined.ports = unit
            .network
            .ports
            .iter()
            .filter(|p| !(v4 && p.host_ip.is_some_and(|ip| ip.is_ipv6())))
            .map(|p| p.to_string())
            .collect();
        self.write_files(unit, dir, &joined, members)?;
        Ok(joined)
    }

    fn write_files(
        &self,
        unit: &Unit,
        dir: &Path,
        joined: &Joined,
        members: &[Member],
    ) -> Result<(), Error> {
        let hostname = unit.container.hostname.clone();
        let me = Member {
            unit: unit.name.clone(),
            hostname: hostname.clone(),
            hosts_file: dir.join("hosts"),
            addresses: joined.addresses(),
            extra: unit.network.names.extra_hosts.clone(),
        };
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        for (name, content) in [
            ("hosts", names::hosts_file(&me, members)),
            ("hostname", format!("{hostname}\n")),
            (
                "resolv.conf",
                files::with_resolver(&files::resolv_conf(&host_resolv), &unit.network.names),
            ),
        ] {
            let path = dir.join(name);
            files::write_in_place(&path, &content)
                .map_err(|source| Error::File { path, source })?;
        }
        Ok(())
    }

    /// Takes instance `id`'s network down (blocking): CNI DEL of every attachment it has and
    /// the native driver's, then the namespace. Idempotent.
    pub fn detach(&self, id: &str) -> Result<(), Error> {
        let released = self.release(id);
        netns::remove(&self.netns_path(id))?;
        released
    }

    /// Every attachment of instance `id`, CNI's and the native driver's, taken down; the
    /// first error, after trying all.
    fn release(&self, id: &str) -> Result<(), Error> {
        let deleted = self.del_cached(id);
        let native = self.native.as_ref().map_or(Ok(()), |n| n.detach(id));
        deleted.and(native.map_err(Error::from))
    }

    /// CNI DEL of every attachment cached for instance `id`; the first error, after trying all.
    fn del_cached(&self, id: &str) -> Result<(), Error> {
        let mut first_error = None;
        for c in self.cni.cached_all()? {
            if c.attachment.container_id == id {
                if let Err(e) = self.cni.del(&c.network, &c.attachment) {
                    first_error.get_or_insert(Error::from(e));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Instances that have network state here (cached attachments, pinned namespaces), for
    /// the sweep at daemon start.
    pub fn instances(&self) -> std::collections::BTreeSet<String> {
        let mut ids: std::collections::BTreeSet<String> = self
            .cni
            .cached_all()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.attachment.container_id)
            .collect();
        if let Some(n) = &self.native {
            ids.extend(n.instances());
        }
        ids.extend(
            netns::list(&self.netns_dir)
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
        );
        ids
    }
}

/// What a CNI result says of an attachment.
fn from_cni(name: &str, ifname: &str, result: cni::CniResult) -> JoinedNetwork {
    let ip = result.container_ips().first().map(|c| (*c).clone());
    JoinedNetwork {
        name: name.to_string(),
        ifname: ifname.to_string(),
        address: ip.as_ref().map(|c| c.address.to_string()),
        gateway: ip.and_then(|c| c.gateway),
        result: Some(result.raw),
    }
}

/// The published ports as the native driver's maps hold them (the container side is filled
/// in at attach). An IPv6 host address cannot lead to an IPv4-only container: skipped, as the
/// portmap plugin does, and said.
fn native_ports(ports: &[PortMapping]) -> Vec<Published> {
    ports
        .iter()
        .filter_map(|p| {
            let host_ip = match p.host_ip {
                None => None,
                Some(IpAddr::V4(a)) => Some(a),
                Some(IpAddr::V6(a)) => {
                    tracing::warn!(
                        "port {}:{}: the default network is IPv4 only; not published on [{a}]",
                        p.host_port,
                        p.container_port
                    );
                    return None;
                }
            };
            let proto = match p.protocol {
                Protocol::Tcp => Proto::Tcp,
                Protocol::Udp => Proto::Udp,
                Protocol::Sctp => Proto::Sctp,
            };
            Some(Published {
                host_ip,
                proto,
                host_port: p.host_port,
                container_ip: std::net::Ipv4Addr::UNSPECIFIED,
                container_port: p.container_port,
            })
        })
        .collect()
}

/// The networks `config` defines, by name: the default `rcd`, then the config directory's.
pub fn configured(config: &NetworkConfig) -> Result<BTreeMap<String, NetworkList>, String> {
    let subnet = config
        .subnet
        .parse()
        .map_err(|e| format!("[network] subnet: {e}"))?;
    let default = cni::bridge_network(crate::unit::DEFAULT_NETWORK, &config.bridge, subnet)
        .map_err(|e| e.to_string())?;
    let mut lists = cni::load_dir(&config.config_dir).map_err(|e| e.to_string())?;
    if lists.contains_key(&default.name) {
        return Err(format!(
            "{}: network {:?} is the built-in default; set [network] bridge and subnet instead",
            config.config_dir.display(),
            default.name
        ));
    }
    lists.insert(default.name.clone(), default);
    Ok(lists)
}

/// The unit's published ports as the portmap plugin takes them: one entry per port of a
/// range; a port without a host port gets a free one now.
fn cni_ports(ports: &[UnitPort]) -> Result<Vec<PortMapping>, Error> {
    let mut out = Vec::new();
    for p in ports {
        let protocol = match p.proto {
            Proto::Tcp => Protocol::Tcp,
            Proto::Udp => Protocol::Udp,
            Proto::Sctp => Protocol::Sctp,
        };
        let host = match p.host_port {
            Some(h) => h,
            None => {
                let port = ephemeral(p).map_err(|reason| Error::Port {
                    mapping: p.to_string(),
                    reason,
                })?;
                crate::unit::ports::PortRange {
                    first: port,
                    last: port,
                }
            }
        };
        let count = p.container_port.last - p.container_port.first;
        // Ranges of the same length map one to one; a host range for a single container port
        // means one free port of it (Docker's rule).
        let one_of = host.last - host.first != count;
        let first_free = if one_of {
            let ip = p.host_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
            (host.first..=host.last)
                .find(|port| match p.proto {
                    Proto::Udp => std::net::UdpSocket::bind((ip, *port)).is_ok(),
                    _ => std::net::TcpListener::bind((ip, *port)).is_ok(),
                })
                .ok_or_else(|| Error::Port {
                    mapping: p.to_string(),
                    reason: "every port of the host range is in use".into(),
                })?
        } else {
            host.first
        };
        for k in 0..=count {
            let host_port = if one_of { first_free } else { host.first + k };
            out.push(PortMapping {
                host_port,
                container_port: p.container_port.first + k,
                protocol,
                host_ip: p.host_ip,
            });
        }
    }
    Ok(out)
}

/// A free host port for `p` (bound and released: the kernel's choice, as Docker's).
fn ephemeral(p: &UnitPort) -> Result<u16, String> {
    let ip = p.host_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let port = match p.proto {
        Proto::Udp => std::net::UdpSocket::bind((ip, 0)).and_then(|s| s.local_addr()),
        _ => std::net::TcpListener::bind((ip, 0)).and_then(|s| s.local_addr()),
    }
    .map_err(|e| format!("no free port on {ip}: {e}"))?
    .port();
    Ok(port)
}

/// Refuses a host port something on the host already listens on: portmap's DNAT would
/// silently take its traffic. (Docker's proxy fails the same way, by binding.)
fn check_free(ports: &[UnitPort]) -> Result<(), Error> {
    for p in ports {
        let Some(host) = p.host_port else { continue };
        let ip = p.host_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        for port in host.first..=host.last {
            let taken = match p.proto {
                Proto::Udp => std::net::UdpSocket::bind((ip, port)).err(),
                Proto::Tcp => std::net::TcpListener::bind((ip, port)).err(),
                Proto::Sctp => None,
            };
            if let Some(e) = taken {
                return Err(Error::Port {
                    mapping: p.to_string(),
                    reason: format!("{ip}:{port} is in use on the host ({e})"),
                });
            }
        }
    }
    Ok(())
}
