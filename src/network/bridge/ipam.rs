//! Addresses of a native bridge network: one lease file per address taken, named by the
//! address and holding the container id, created with `O_EXCL` so that taking an address is
//! atomic whoever else is at it. The files are the truth; an index of them in memory, read
//! once, spares every start a scan of the directory (one daemon owns a root). A lease file left
//! empty by a crash between its creation and its write is removed when the index is read.
//! Addresses the CNI host-local plugin leased on the same network (containers set up before the
//! native driver, still running) count as taken.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::network::cni::Cidr;

/// A lease that could not be taken or given back.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Every address of the subnet is taken.
    #[error("no free address left in {0}")]
    Exhausted(Cidr),
    /// A lease file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The leases of one network.
#[derive(Debug, Clone)]
pub struct Leases {
    dir: PathBuf,
    /// host-local's directory for the same network, whose leases also count.
    cni_dir: PathBuf,
    subnet: Cidr,
    gateway: IpAddr,
    /// Address → holder, as the files say; read at first use.
    index: Arc<Mutex<Option<BTreeMap<IpAddr, String>>>>,
}

impl Leases {
    /// The leases of `subnet` (gateway `gateway`) kept in `dir`; `cni_dir` is host-local's.
    pub fn new(dir: PathBuf, cni_dir: PathBuf, subnet: Cidr, gateway: IpAddr) -> Self {
        Leases {
            dir,
            cni_dir,
            subnet,
            gateway,
            index: Arc::default(),
        }
    }

    /// The index, read from the directory if it was not yet.
    fn index(&self) -> Result<MutexGuard<'_, Option<BTreeMap<IpAddr, String>>>, Error> {
        let mut guard = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.read_dir()?);
        }
        Ok(guard)
    }

    fn read_dir(&self) -> Result<BTreeMap<IpAddr, String>, Error> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(Self::io(&self.dir)(e)),
        };
        let mut out = BTreeMap::new();
        for e in entries.flatten() {
            let Some(ip) = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let holder = std::fs::read_to_string(e.path()).unwrap_or_default();
            let holder = holder.trim();
            if holder.is_empty() {
                // Created, never written: a crash in between. Nobody holds it.
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            out.insert(ip, holder.to_string());
        }
        Ok(out)
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The address leased to `id`, if any.
    pub fn held_by(&self, id: &str) -> Result<Option<IpAddr>, Error> {
        Ok(self
            .all()?
            .into_iter()
            .find(|(_, o)| o == id)
            .map(|(ip, _)| ip))
    }

    /// Every lease: address and holder.
    pub fn all(&self) -> Result<Vec<(IpAddr, String)>, Error> {
        let index = self.index()?;
        Ok(index
            .iter()
            .flatten()
            .map(|(ip, h)| (*ip, h.clone()))
            .collect())
    }

    /// Leases an address to `id`: the one it holds already, else the first free one after the
    /// last handed out (wrapping), so that a released address is not reused at once.
    pub fn take(&self, id: &str) -> Result<IpAddr, Error> {
        let mut guard = self.index()?;
        let index = guard.get_or_insert_with(BTreeMap::new);
        if let Some((ip, _)) = index.iter().find(|(_, h)| *h == id) {
            return Ok(*ip);
        }
        std::fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let last_file = self.dir.join("last");
        let last = std::fs::read_to_string(&last_file)
            .ok()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .filter(|ip| self.subnet.contains(*ip));
        let (first, count) = self.range();
        let start = last.map_or(0, |ip| offset(self.subnet, ip).saturating_sub(first) + 1);
        for k in 0..count {
            let ip = nth(self.subnet, first + (start + k) % count);
            if ip == self.gateway
                || index.contains_key(&ip)
                || self.cni_dir.join(ip.to_string()).exists()
            {
                continue;
            }
            let path = self.dir.join(ip.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    // No fsync: a lease lost to a power cut is one of a container that did
                    // not survive it either.
                    f.write_all(id.as_bytes()).map_err(Self::io(&path))?;
                    index.insert(ip, id.to_string());
                    // Only a hint: a lost update costs a longer scan next time.
                    let _ = crate::network::files::write_in_place(&last_file, ip.to_string());
                    return Ok(ip);
                }
                // Not ours to know of (another process at this directory): taken.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Self::io(&path)(e)),
            }
        }
        Err(Error::Exhausted(self.subnet))
    }

    /// Gives back what `id` holds; nothing held is fine.
    pub fn release(&self, id: &str) -> Result<(), Error> {
        let mut guard = self.index()?;
        let index = guard.get_or_insert_with(BTreeMap::new);
        let held: Vec<IpAddr> = index
            .iter()
            .filter(|(_, h)| *h == id)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in held {
            let path = self.dir.join(ip.to_string());
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Self::io(&path)(e))
                }
                _ => {
                    index.remove(&ip);
                }
            }
        }
        Ok(())
    }

    /// Host offsets of the usable range: the first (1, after the network address) and how
    /// many (up to the broadcast address, excluded, for IPv4).
    fn range(&self) -> (u128, u128) {
        let bits = match self.subnet.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let host_bits = bits - u32::from(self.subnet.prefix);
        // A /64 has more addresses than anyone scans; the first 2^24 are plenty.
        let size = 1u128 << host_bits.min(24);
        let last_excluded = u128::from(self.subnet.addr.is_ipv4() && host_bits <= 24);
        (1, size.saturating_sub(1 + last_excluded))
    }
}

fn offset(subnet: Cidr, ip: IpAddr) -> u128 {
    match (subnet.network(), ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => u128::from(u32::from(a) - u32::from(n)),
        (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) - u128::from(n),
        _ => 0,
    }
}

fn nth(subnet: Cidr, k: u128) -> IpAddr {
    match subnet.network() {
        IpAddr::V4(n) => IpAddr::from(Ipv4Addr::from(u32::from(n) + k as u32)),
        IpAddr::V6(n) => IpAddr::from(Ipv6Addr::from(u128::from(n) + k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases(dir: &Path, subnet: &str) -> Leases {
        let subnet: Cidr = subnet.parse().unwrap();
        Leases::new(
            dir.join("native"),
            dir.join("cni"),
            subnet,
            subnet.first_host().unwrap(),
        )
    }

    #[test]
    fn takes_in_order_skips_the_gateway_and_cni_leases_and_keeps_what_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let l = leases(dir.path(), "10.9.0.0/29");
        std::fs::create_dir_all(dir.path().join("cni")).unwrap();
        std::fs::write(dir.path().join("cni/10.9.0.3"), "old-cni-container").unwrap();
        assert_eq!(l.take("a").unwrap().to_string(), "10.9.0.2");
        assert_eq!(l.take("a").unwrap().to_string(), "10.9.0.2", "held already");
        assert_eq!(
            l.take("b").unwrap().to_string(),
            "10.9.0.4",
            "the CNI lease is taken"
        );
        assert_eq!(l.held_by("b").unwrap().unwrap().to_string(), "10.9.0.4");
        l.release("a").unwrap();
        l.release("a").unwrap();
        // Not reused at once: the next after the last handed out.
        assert_eq!(l.take("c").unwrap().to_string(), "10.9.0.5");
        assert_eq!(l.take("d").unwrap().to_string(), "10.9.0.6");
        // .7 is the broadcast address; wraps to .2, free again.
        assert_eq!(l.take("e").unwrap().to_string(), "10.9.0.2");
        let err = l.take("f").unwrap_err().to_string();
        assert_eq!(err, "no free address left in 10.9.0.0/29");
        let holders: Vec<String> = l.all().unwrap().into_iter().map(|(_, h)| h).collect();
        assert_eq!(holders, ["e", "b", "c", "d"]);

        // A later daemon reads the files: the same leases; an empty file (a crash between
        // its creation and its write) is nobody's and goes.
        l.release("c").unwrap();
        std::fs::write(dir.path().join("native/10.9.0.5"), "").unwrap();
        let again = leases(dir.path(), "10.9.0.0/29");
        assert_eq!(again.all().unwrap(), l.all().unwrap());
        assert!(!dir.path().join("native/10.9.0.5").exists());
        assert_eq!(again.held_by("d").unwrap().unwrap().to_string(), "10.9.0.6");
    }

    #[test]
    fn concurrent_takers_never_share_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let l = leases(dir.path(), "10.9.0.0/24");
        let got: Vec<IpAddr> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|t| {
                    let l = l.clone();
                    s.spawn(move || {
                        (0..20)
                            .map(|k| l.take(&format!("c{t}-{k}")).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let unique: std::collections::BTreeSet<_> = got.iter().collect();
        assert_eq!(unique.len(), 160);
    }
}
