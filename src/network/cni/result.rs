//! What goes to plugins besides their configuration (capability arguments such as published
//! ports) and what comes back (the result: interfaces, addresses, routes, DNS).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::Cidr;

/// The result of an ADD: typed, with the plugin's JSON kept whole (`raw`), which is what a
/// later DEL or CHECK passes back as `prevResult`. Serializes as `raw`.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    /// The spec version the result is in.
    pub cni_version: String,
    /// Interfaces created, host side included.
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    pub ips: Vec<IpConfig>,
    /// Routes created.
    pub routes: Vec<Route>,
    /// DNS settings the network suggests.
    pub dns: Dns,
    /// The result as the last plugin printed it.
    pub raw: Value,
}

/// An interface in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its hardware address, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The namespace it is in (the CNI_NETNS given); none for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// An address in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// The address with its prefix length (`10.89.0.2/16`).
    pub address: Cidr,
    /// The subnet's gateway, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces` of the interface holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub dst: Cidr,
    /// Next hop; none means the address's gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// DNS settings in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The typed fields of a result; unknown keys (0.x's `version`, 1.1's `mtu`) are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Typed {
    cni_version: String,
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

impl CniResult {
    /// Reads a result from its JSON.
    pub fn from_value(raw: Value) -> Result<Self, serde_json::Error> {
        let t = Typed::deserialize(&raw)?;
        Ok(CniResult {
            cni_version: t.cni_version,
            interfaces: t.interfaces,
            ips: t.ips,
            routes: t.routes,
            dns: t.dns,
            raw,
        })
    }

    /// The addresses of interfaces inside the container (those with a sandbox); all addresses
    /// when the result does not say which interface holds them.
    pub fn container_ips(&self) -> Vec<&IpConfig> {
        let in_sandbox = |ip: &&IpConfig| match ip.interface {
            Some(i) => self
                .interfaces
                .get(i)
                .is_some_and(|iface| iface.sandbox.as_deref().is_some_and(|s| !s.is_empty())),
            None => true,
        };
        self.ips.iter().filter(in_sandbox).collect()
    }
}

impl Serialize for CniResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for CniResult {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        CniResult::from_value(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Capability arguments: per-attachment values given to the plugins that declare the
/// capability (`runtimeConfig`), by the names of the CNI conventions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// `portMappings`: published ports (portmap).
    #[serde(
        rename = "portMappings",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub port_mappings: Vec<PortMapping>,
    /// Any other capability (`mac`, `ips`, `bandwidth`, ...), by its convention name.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl RuntimeConfig {
    /// The capability arguments by name; those without a value are absent.
    pub fn to_map(&self) -> serde_json::Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        }
    }
}

/// A published port, as the portmap plugin reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The port on the host.
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    /// The port in the container.
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
    /// The host address it is published on; none means all.
    #[serde(rename = "hostIP", default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_of_each_version() {
        // bridge 1.1.1's ADD result, as printed on this kind of machine.
        let v1 = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "rcd0", "mac": "4e:fa:07:69:96:44"},
                {"name": "veth15057dfb", "mac": "26:ac:b1:01:8c:a8"},
                {"name": "eth0", "mac": "6e:82:3f:db:64:f5", "sandbox": "/run/netns/x"}
            ],
            "ips": [{"interface": 2, "address": "10.90.250.2/24", "gateway": "10.90.250.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        let r = CniResult::from_value(v1.clone()).unwrap();
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.container_ips().len(), 1);
        let ip = r.container_ips()[0];
        assert_eq!(ip.address.to_string(), "10.90.250.2/24");
        assert_eq!(ip.gateway, Some("10.90.250.1".parse().unwrap()));
        assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
        assert_eq!(r.routes[0].gw, None);
        // Round trip through a record keeps the plugin's JSON as it was.
        let back: CniResult = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.raw, v1);

        // 0.4.0 adds `version` to each address; IPAM results have no interfaces.
        let v04 = json!({
            "cniVersion": "0.4.0",
            "ips": [{"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1"}],
            "dns": {"nameservers": ["10.1.0.1"], "search": ["example"]}
        });
        let r = CniResult::from_value(v04).unwrap();
        assert_eq!(r.container_ips().len(), 1);
        assert_eq!(r.dns.nameservers, ["10.1.0.1"]);

        let bad = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.5"}]});
        assert!(CniResult::from_value(bad).is_err());
        assert!(CniResult::from_value(json!({"ips": []})).is_err());
    }

    #[test]
    fn runtime_config_names() {
        let mut rc = RuntimeConfig::default();
        assert!(rc.to_map().is_empty());
        rc.port_mappings.push(PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: Some("127.0.0.1".parse().unwrap()),
        });
        rc.other.insert("mac".into(), json!("c2:11:22:33:44:55"));
        assert_eq!(
            Value::Object(rc.to_map()),
            json!({
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}
                ],
                "mac": "c2:11:22:33:44:55"
            })
        );
    }
}
