//! The native bridge driver of the default network: what the CNI bridge, host-local, portmap
//! and firewall plugins did in four processes and a dozen iptables calls, done by rcd itself
//! in a few netlink messages (`link`), an address lease file (`ipam`) and, for a container
//! that publishes ports, one nftables transaction (`nft`).
//!
//! Crash safety: an attachment's record is written before anything is made in the kernel
//! (`complete: false`), and completed after; taking it down goes by the record and removes
//! the record last. So whatever a crash interrupts, the record names everything that may
//! exist (lease, veth, map elements), and the sweep at the next start removes it.

pub mod coexist;
pub mod elements;
pub mod ipam;
pub mod link;
pub mod nft;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::network::cni::Cidr;
use crate::store::atomic;
pub use nft::Published;

/// A native bridge step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An address lease.
    #[error(transparent)]
    Ipam(#[from] ipam::Error),
    /// A netlink step.
    #[error("network {network}: {source}")]
    Link {
        /// The network.
        network: String,
        /// The cause.
        source: link::Error,
    },
    /// The firewall.
    #[error("network {network}: {source}")]
    Nft {
        /// The network.
        network: String,
        /// The cause.
        source: nft::Error,
    },
    /// A host port another container of this daemon publishes already.
    #[error("cannot publish {mapping}: {owner} publishes {other} already")]
    Taken {
        /// The mapping asked for.
        mapping: Published,
        /// The container that has it.
        owner: String,
        /// What it publishes.
        other: Published,
    },
    /// A record file.
    #[error("{}: {source}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// What an attachment is, kept under the state root from before it is made until it is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The container instance.
    pub container_id: String,
    /// The network.
    pub network: String,
    /// The interface in the container.
    pub ifname: String,
    /// The host's end of the veth pair.
    pub host_veth: String,
    /// The container's address.
    pub address: IpAddr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The gateway.
    pub gateway: IpAddr,
    /// The container interface's MAC, once made.
    #[serde(default)]
    pub mac: Option<String>,
    /// Its published ports.
    #[serde(default)]
    pub ports: Vec<Published>,
    /// False until every step is done.
    pub complete: bool,
}

impl Record {
    /// The attachment as the CNI result the plugins would have returned (for `rctl inspect`
    /// and for tools that read CNI results).
    pub fn cni_result(&self) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                { "name": self.host_veth },
                { "name": self.ifname, "mac": self.mac, "sandbox": "" },
            ],
            "ips": [{
                "address": format!("{}/{}", self.address, self.prefix),
                "gateway": self.gateway.to_string(),
                "interface": 1,
            }],
            "routes": [{ "dst": if self.address.is_ipv4() { "0.0.0.0/0" } else { "::/0" } }],
        })
    }
}

/// A bridge network run by rcd.
pub struct Native {
    /// The network's name (`rcd`).
    pub name: String,
    bridge: link::BridgeSpec,
    subnet: Cidr,
    leases: ipam::Leases,
    records: PathBuf,
    /// The host ends of veth pairs: `rv` + the root tag + a hash of the container id.
    veth_prefix: String,
    /// The daemon's table.
    pub table: nft::Table,
    /// Set once the bridge, sysctls and firewall are in place in this daemon's life.
    ready: Mutex<bool>,
    /// Held while published ports are checked and added, so two starts cannot take one.
    ports: Mutex<()>,
}

impl Native {
    /// Network `name` on `bridge` and `subnet`, its state under `dir` (leases and records),
    /// host-local's leases of the same network in `cni_ipam`; `tag` is the root's tag.
    pub fn new(
        name: &str,
        bridge: &str,
        subnet: Cidr,
        dir: &Path,
        cni_ipam: &Path,
        tag: &str,
    ) -> Result<Self, String> {
        let gateway = subnet
            .first_host()
            .ok_or_else(|| format!("subnet {subnet}: too small"))?;
        Ok(Native {
            name: name.to_string(),
            bridge: link::BridgeSpec {
                name: bridge.to_string(),
                gateway,
                prefix: subnet.prefix,
            },
            subnet,
            leases: ipam::Leases::new(dir.join("leases"), cni_ipam.join(name), subnet, gateway),
            records: dir.join("attachments"),
            veth_prefix: format!("rv{tag}"),
            table: nft::Table::new(tag, bridge, subnet),
            ready: Mutex::new(false),
            ports: Mutex::new(()),
        })
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge.name
    }

    /// The veth names of this daemon start with this.
    pub fn veth_prefix(&self) -> &str {
        &self.veth_prefix
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.records.join(format!("{id}.json"))
    }

    /// Instance `id`'s record, if it has one (an unreadable one is logged and taken as none).
    pub fn record(&self, id: &str) -> Option<Record> {
        let path = self.record_path(id);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(container = %id, "{}: {e}", path.display());
                None
            }
        }
    }

    fn write_record(&self, r: &Record) -> Result<(), Error> {
        let path = self.record_path(&r.container_id);
        let io = |source| Error::Record {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.records).map_err(io)?;
        // No fsync: the kernel state a record describes does not outlive a reboot either.
        atomic::write_json_with(&path, r, atomic::Sync::None).map_err(io)
    }

    /// Every record.
    pub fn records(&self) -> Vec<Record> {
        let Ok(entries) = std::fs::read_dir(&self.records) else {
            return Vec::new();
        };
        let mut out: Vec<Record> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json").and_then(|id| self.record(id))
            })
            .collect();
        out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        out
    }

    /// Instances with anything here: a record or a lease.
    pub fn instances(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.records().into_iter().map(|r| r.container_id).collect();
        ids.extend(
            self.leases
                .all()
                .unwrap_or_default()
                .into_iter()
                .map(|(_, holder)| holder)
                .filter(|h| !h.is_empty()),
        );
        ids.sort();
        ids.dedup();
        ids
    }

    /// At daemon start: the table rebuilt from the records (a reboot or a crash left it
    /// stale or took it away), if this daemon has records or a table.
    pub fn restore(&self) -> Result<(), Error> {
        let exists = self.table.exists().map_err(|source| Error::Nft {
            network: self.name.clone(),
            source,
        });
        if self.records().is_empty() && !exists? {
            return Ok(());
        }
        self.rebuild_table()
    }

    /// The table made anew with the records' published ports.
    fn rebuild_table(&self) -> Result<(), Error> {
        let elements: Vec<Published> = self.records().into_iter().flat_map(|r| r.ports).collect();
        self.table.rebuild(&elements).map_err(|source| Error::Nft {
            network: self.name.clone(),
            source,
        })
    }

    /// The bridge, forwarding and the firewall, once per daemon life (and again after a
    /// failure).
    fn ensure_ready(&self) -> Result<(), Error> {
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        if *ready {
            return Ok(());
        }
        link::ensure_bridge(&self.bridge).map_err(|source| Error::Link {
            network: self.name.clone(),
            source,
        })?;
        self.set_sysctls();
        self.rebuild_table()?;
        coexist::allow_forwarding(&self.bridge.name);
        *ready = true;
        Ok(())
    }

    /// Forwarding on; and `route_localnet` on the bridge, so that published ports answer the
    /// host's own 127.0.0.1 (the DNAT happens in OUTPUT, the reply comes back through the
    /// bridge; see `nft`).
    fn set_sysctls(&self) {
        for (file, value) in [
            ("/proc/sys/net/ipv4/ip_forward".to_string(), "1"),
            (
                format!(
                    "/proc/sys/net/ipv4/conf/{}/route_localnet",
                    self.bridge.name
                ),
                "1",
            ),
        ] {
            if let Err(e) = std::fs::write(&file, value) {
                tracing::warn!(network = %self.name, "{file}: {e}");
            }
        }
    }

    /// The host end's name for instance `id`: at most 15 bytes, the same at every try.
    fn host_veth(&self, id: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(id.as_bytes());
        let mut name = format!("{}{}", self.veth_prefix, hex::encode(digest));
        name.truncate(15);
        name
    }

    /// Attaches instance `id`'s namespace `netns` as `ifname`, publishing `ports` (the
    /// container side of each is filled in here). An attachment complete already is kept; an
    /// interrupted one is undone first.
    pub fn attach(
        &self,
        id: &str,
        netns: &Path,
        ifname: &str,
        ports: &[Published],
    ) -> Result<Record, Error> {
        match self.record(id) {
            Some(r) if r.complete && r.ifname == ifname => return Ok(r),
            Some(_) => self.detach(id)?,
            None => {}
        }
        let t0 = std::time::Instant::now();
        self.ensure_ready()?;
        let address = self.leases.take(id)?;
        let container_ip = nft::v4(address);
        let ports: Vec<Published> = ports
            .iter()
            .filter_map(|p| {
                container_ip.map(|ip| Published {
                    container_ip: ip,
                    ..*p
                })
            })
            .collect();
        // Held from the check to the map update, so two starts cannot take one host port.
        let _held =
            (!ports.is_empty()).then(|| self.ports.lock().unwrap_or_else(|p| p.into_inner()));
        self.check_clashes(id, &ports)?;
        let mut record = Record {
            container_id: id.to_string(),
            network: self.name.clone(),
            ifname: ifname.to_string(),
            host_veth: self.host_veth(id),
            address,
            prefix: self.subnet.prefix,
            gateway: self.bridge.gateway,
            mac: None,
            ports,
            complete: false,
        };
        self.write_record(&record)?;
        crate::failpoint::hit("native-attach:recorded");
        let wired = link::wire(&link::Wire {
            netns: netns.to_path_buf(),
            host_veth: record.host_veth.clone(),
            ifname: ifname.to_string(),
            address,
            bridge: self.bridge.clone(),
        })
        .map_err(|source| Error::Link {
            network: self.name.clone(),
            source,
        })?;
        record.mac = Some(wired.mac);
        if wired.bridge_made {
            tracing::warn!(network = %self.name, "bridge {} was gone: made again", self.bridge.name);
            self.set_sysctls();
        }
        let t_wired = t0.elapsed();
        self.table.add(&record.ports).map_err(|source| Error::Nft {
            network: self.name.clone(),
            source,
        })?;
        tracing::debug!(
            container = %id,
            network = %self.name,
            address = %address,
            wire_ms = t_wired.as_secs_f64() * 1e3,
            total_ms = t0.elapsed().as_secs_f64() * 1e3,
            "native attach"
        );
        crate::failpoint::hit("native-attach:wired");
        record.complete = true;
        self.write_record(&record)?;
        Ok(record)
    }

    /// Removes what this daemon put in the host's firewall (its table, its iptables
    /// `FORWARD` rules), for a daemon given up with its bridge; attachments are not touched.
    pub fn remove_firewall(&self) -> Result<(), Error> {
        coexist::disallow_forwarding(&self.bridge.name);
        self.table.delete().map_err(|source| Error::Nft {
            network: self.name.clone(),
            source,
        })
    }

    /// Refuses `ports` if another instance's record has one of their host ports.
    fn check_clashes(&self, id: &str, ports: &[Published]) -> Result<(), Error> {
        if ports.is_empty() {
            return Ok(());
        }
        for other in self.records() {
            if other.container_id == id {
                continue;
            }
            for mine in ports {
                if let Some(theirs) = other.ports.iter().find(|o| mine.clashes_with(o)) {
                    return Err(Error::Taken {
                        mapping: *mine,
                        owner: other.container_id.clone(),
                        other: *theirs,
                    });
                }
            }
        }
        Ok(())
    }

    /// Takes instance `id`'s attachment down: map elements, veth, lease, then the record.
    /// Nothing there is fine.
    pub fn detach(&self, id: &str) -> Result<(), Error> {
        if let Some(r) = self.record(id) {
            self.table.remove(&r.ports).map_err(|source| Error::Nft {
                network: self.name.clone(),
                source,
            })?;
            link::delete(&r.host_veth).map_err(|source| Error::Link {
                network: self.name.clone(),
                source,
            })?;
        }
        self.leases.release(id)?;
        let path = self.record_path(id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::Record { path, source: e })
            }
            _ => Ok(()),
        }
    }
}
