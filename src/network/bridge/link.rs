//! The kernel side of the native bridge, through rtnetlink: the bridge itself with its gateway
//! address, and per container a veth pair, one end a port of the bridge in the host's
//! namespace, the other (renamed `eth0`...) in the container's namespace with its address and
//! default route. A handful of netlink messages, each acknowledged.
//!
//! Namespaces belong to threads: every call runs on a thread of its own, which opens its
//! netlink sockets (one in the host's namespace, one after entering the container's) and drives
//! them with a single-threaded runtime, so no other thread of the daemon ever changes
//! namespace.

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// A netlink step that failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct Error {
    /// The step (`create veth rv1a2b3c4d5e6f`).
    pub what: String,
    /// The kernel's answer, or why the step could not be tried.
    pub message: String,
    /// The errno the kernel answered, if it did.
    pub errno: Option<i32>,
}

impl Error {
    fn new(what: impl Into<String>, message: impl ToString) -> Self {
        Error {
            what: what.into(),
            message: message.to_string(),
            errno: None,
        }
    }

    fn netlink(what: impl Into<String>, e: rtnetlink::Error) -> Self {
        let errno = match &e {
            rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
            _ => None,
        };
        let message = match &e {
            rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
            other => other.to_string(),
        };
        Error {
            what: what.into(),
            message,
            errno,
        }
    }
}

/// The host's side of a bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    /// The bridge's name (`rcd0`).
    pub name: String,
    /// Its address, the containers' gateway.
    pub gateway: IpAddr,
    /// The subnet's prefix length.
    pub prefix: u8,
}

/// One container's port on a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    /// The pinned namespace of the container.
    pub netns: PathBuf,
    /// The host's end of the veth pair (a bridge port).
    pub host_veth: String,
    /// The container's end, as named inside (`eth0`).
    pub ifname: String,
    /// The container's address.
    pub address: IpAddr,
    /// The bridge it is a port of.
    pub bridge: BridgeSpec,
}

/// What the container's interface turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wired {
    /// Its MAC address (`aa:bb:...`).
    pub mac: String,
    /// True if the bridge had to be made again (someone deleted it).
    pub bridge_made: bool,
}

/// Runs `f` on a thread of its own with a handle on the host's namespace and, given `netns`,
/// one on that namespace.
fn on_thread<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(Handle, Option<Handle>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let netns = netns.map(Path::to_path_buf);
    std::thread::spawn(move || -> Result<T, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::new("netlink runtime", e))?;
        let _guard = rt.enter();
        let (conn, host, _) =
            rtnetlink::new_connection().map_err(|e| Error::new("netlink socket", e))?;
        rt.spawn(conn);
        let inside = match &netns {
            Some(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|e| Error::new(format!("open {}", path.display()), e))?;
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::new(format!("enter {}", path.display()), e))?;
                let (conn, handle, _) = rtnetlink::new_connection()
                    .map_err(|e| Error::new("netlink socket in the container", e))?;
                rt.spawn(conn);
                Some(handle)
            }
            None => None,
        };
        rt.block_on(f(host, inside))
    })
    .join()
    .map_err(|_| Error::new("netlink thread", "panicked"))?
}

/// The index of link `name` in the namespace of `handle`, if there is one.
async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, Error> {
    let found = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await;
    match found {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(m)) if -m.raw_code() == libc::ENODEV => Ok(None),
        Err(e) => Err(Error::netlink(format!("look up {name}"), e)),
    }
}

/// Adds `address/prefix` to link `index`; one already there is fine.
async fn add_address(
    handle: &Handle,
    index: u32,
    address: IpAddr,
    prefix: u8,
    what: &str,
) -> Result<(), Error> {
    let mut req = handle.address().add(index, address, prefix);
    if address.is_ipv6() {
        // Duplicate address detection would hold the address back for a second or more; the
        // lease says nobody else has it.
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    match req.execute().await {
        Err(rtnetlink::Error::NetlinkError(m)) if -m.raw_code() == libc::EEXIST => Ok(()),
        r => r.map_err(|e| Error::netlink(format!("add {address}/{prefix} to {what}"), e)),
    }
}

/// Makes sure the bridge exists, is up and has the gateway address; returns its index.
pub fn ensure_bridge(spec: &BridgeSpec) -> Result<u32, Error> {
    let spec = spec.clone();
    on_thread(None, move |host, _| async move {
        ensure_bridge_in(&host, &spec).await.map(|(i, _)| i)
    })
}

/// The bridge's index, and whether it had to be made.
async fn ensure_bridge_in(host: &Handle, spec: &BridgeSpec) -> Result<(u32, bool), Error> {
    let mut made = false;
    let index = match index_of(host, &spec.name).await? {
        Some(i) => i,
        None => {
            made = true;
            match host
                .link()
                .add(LinkBridge::new(&spec.name).build())
                .execute()
                .await
            {
                Err(rtnetlink::Error::NetlinkError(m)) if -m.raw_code() == libc::EEXIST => {}
                r => r.map_err(|e| Error::netlink(format!("create bridge {}", spec.name), e))?,
            }
            index_of(host, &spec.name)
                .await?
                .ok_or_else(|| Error::new(format!("create bridge {}", spec.name), "gone again"))?
        }
    };
    add_address(host, index, spec.gateway, spec.prefix, &spec.name).await?;
    host.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("set {} up", spec.name), e))?;
    Ok((index, made))
}

/// Creates the container's veth pair: the host end a port of the bridge (hairpin on), up; the
/// other end in the container's namespace, named `ifname`, with its address, up, and a
/// default route through the gateway. A host end left by an interrupted attempt is replaced.
pub fn wire(w: &Wire) -> Result<Wired, Error> {
    let w = w.clone();
    let netns = w.netns.clone();
    on_thread(Some(&netns), move |host, inside| async move {
        let inside = inside.ok_or_else(|| Error::new("netlink", "no handle in the container"))?;
        let (bridge, bridge_made) = ensure_bridge_in(&host, &w.bridge).await?;
        delete_in(&host, &w.host_veth).await?;
        let ns = std::fs::File::open(&w.netns)
            .map_err(|e| Error::new(format!("open {}", w.netns.display()), e))?;
        // Not up yet: a veth end cannot be opened before its peer exists (ENOTCONN).
        let peer = LinkUnspec::new_with_name(&w.ifname)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let veth = LinkVeth::new(&w.host_veth, &w.ifname)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .controller(bridge)
            .up()
            .build();
        host.link()
            .add(veth)
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("create veth {}", w.host_veth), e))?;
        let host_index = index_of(&host, &w.host_veth)
            .await?
            .ok_or_else(|| Error::new(format!("create veth {}", w.host_veth), "gone again"))?;
        host.link()
            .set_port(LinkBridgePort::new(host_index).hairpin(true).build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("hairpin on {}", w.host_veth), e))?;

        let link = inside
            .link()
            .get()
            .match_name(w.ifname.clone())
            .execute()
            .try_next()
            .await
            .map_err(|e| Error::netlink(format!("look up {} in the container", w.ifname), e))?
            .ok_or_else(|| Error::new(format!("look up {}", w.ifname), "not in the container"))?;
        let index = link.header.index;
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(bytes) => Some(
                    bytes
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                ),
                _ => None,
            })
            .unwrap_or_default();
        add_address(&inside, index, w.address, w.bridge.prefix, &w.ifname).await?;
        inside
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink(format!("set {} up", w.ifname), e))?;
        let any = match w.address {
            IpAddr::V4(_) => IpAddr::from([0u8; 4]),
            IpAddr::V6(_) => IpAddr::from([0u16; 8]),
        };
        let route = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(any, 0)
            .and_then(|r| r.gateway(w.bridge.gateway))
            .map_err(|e| Error::new("default route", format!("{e:?}")))?
            .output_interface(index)
            .build();
        match inside.route().add(route).execute().await {
            Err(rtnetlink::Error::NetlinkError(m)) if -m.raw_code() == libc::EEXIST => {}
            r => {
                r.map_err(|e| Error::netlink(format!("default route via {}", w.bridge.gateway), e))?
            }
        }
        Ok(Wired { mac, bridge_made })
    })
}

/// Deletes link `name` of the host's namespace (with a veth, its peer goes too); one that is
/// not there is fine.
pub fn delete(name: &str) -> Result<(), Error> {
    let name = name.to_string();
    on_thread(
        None,
        move |host, _| async move { delete_in(&host, &name).await },
    )
}

async fn delete_in(host: &Handle, name: &str) -> Result<(), Error> {
    let msg = LinkUnspec::new_with_name(name).build();
    match host.link().del_with_message(msg).execute().await {
        Err(rtnetlink::Error::NetlinkError(m)) if -m.raw_code() == libc::ENODEV => Ok(()),
        r => r.map_err(|e| Error::netlink(format!("delete {name}"), e)),
    }
}

/// The links of the host's namespace whose names start with `prefix` (for the sweep).
pub fn names_with_prefix(prefix: &str) -> Result<Vec<String>, Error> {
    let prefix = prefix.to_string();
    on_thread(None, move |host, _| async move {
        let mut out = Vec::new();
        let mut links = host.link().get().execute();
        while let Some(link) = links
            .try_next()
            .await
            .map_err(|e| Error::netlink("list links", e))?
        {
            for a in &link.attributes {
                if let LinkAttribute::IfName(n) = a {
                    if n.starts_with(&prefix) {
                        out.push(n.clone());
                    }
                }
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wires_a_namespace_to_a_bridge_and_unwires_it() {
        let dir = tempfile::tempdir().unwrap();
        let ns = dir.path().join("ns");
        crate::network::netns::create(&ns).unwrap();
        let k = std::process::id() % 10000;
        let bridge = BridgeSpec {
            name: format!("rcdlt{k}"),
            gateway: "10.123.7.1".parse().unwrap(),
            prefix: 24,
        };
        let w = Wire {
            netns: ns.clone(),
            host_veth: format!("rvlt{k}"),
            ifname: "eth0".into(),
            address: "10.123.7.9".parse().unwrap(),
            bridge: bridge.clone(),
        };
        let got = wire(&w);
        let cleanup = || {
            let _ = delete(&bridge.name);
            let _ = crate::network::netns::remove(&ns);
        };
        let wired = match got {
            Ok(w) => w,
            Err(e) => {
                cleanup();
                panic!("{e}");
            }
        };
        assert_eq!(wired.mac.len(), 17, "{wired:?}");
        // The gateway answers from the container's side: a listener on the bridge's address,
        // a connection from a thread in the namespace.
        let listener = std::net::TcpListener::bind("10.123.7.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ns_file = std::fs::File::open(&ns).unwrap();
        let reached = std::thread::spawn(move || {
            nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let to = std::net::SocketAddr::from(([10, 123, 7, 1], port));
            std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_secs(3))
                .and_then(|s| s.local_addr())
        })
        .join()
        .unwrap();

        let names = names_with_prefix(&w.host_veth).unwrap();
        delete(&w.host_veth).unwrap();
        delete(&w.host_veth).unwrap();
        let after = names_with_prefix(&w.host_veth).unwrap();
        cleanup();
        let from = reached.expect("the gateway is reachable from the namespace");
        assert_eq!(from.ip().to_string(), "10.123.7.9");
        assert_eq!(names, std::slice::from_ref(&w.host_veth));
        assert!(after.is_empty(), "{after:?}");
    }
}
