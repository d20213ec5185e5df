//! Network configuration lists (`.conflist`): parsed and checked, loaded from a directory,
//! rendered for a bridge network.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{json, Map, Value};

use super::Error;

/// The default network's name.
pub const DEFAULT_NETWORK: &str = "rcd";
/// The default network's bridge.
pub const DEFAULT_BRIDGE: &str = "rcd0";
/// The default network's subnet (podman's default is 10.88.0.0/16; this stays out of its way).
pub const DEFAULT_SUBNET: &str = "10.89.0.0/16";

/// The CNI versions whose configuration and result formats we speak (the rich result with
/// `ips`, `interfaces` and `routes`; 0.1 and 0.2 had another shape).
const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A network configuration list: the unit of configuration in CNI 1.0.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    /// The network name, unique on the host.
    pub name: String,
    /// The CNI spec version the list and its plugins speak.
    pub cni_version: String,
    /// `disableCheck`: CHECK is never run for this network.
    pub disable_check: bool,
    /// The plugins, in ADD order.
    pub plugins: Vec<PluginConf>,
    /// The whole list as written (keys we do not model are kept).
    pub raw: Value,
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
}

/// One plugin's configuration object in a list.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    /// `type`: the plugin's executable name.
    pub plugin_type: String,
    /// The capabilities the plugin declares (`capabilities` entries set to true).
    pub capabilities: BTreeSet<String>,
    /// The object as written; passed to the plugin with the runtime's additions.
    pub conf: Map<String, Value>,
}

impl NetworkList {
    /// Parses and checks a list; `origin` names it in errors (a file path, or a description).
    pub fn from_slice(data: &[u8], origin: &str) -> Result<Self, Error> {
        let raw: Value = serde_json::from_slice(data).map_err(|e| invalid(origin, e))?;
        Self::from_value(raw, origin)
    }

    /// Checks a parsed list.
    pub fn from_value(raw: Value, origin: &str) -> Result<Self, Error> {
        let obj = raw
            .as_object()
            .ok_or_else(|| invalid(origin, "not a JSON object"))?;
        let cni_version = match obj.get("cniVersion") {
            Some(Value::String(v)) => v.clone(),
            Some(_) => return Err(invalid(origin, "cniVersion: not a string")),
            None => return Err(invalid(origin, "cniVersion: missing")),
        };
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(invalid(
                origin,
                format!(
                    "cniVersion {cni_version:?} is not supported (supported: {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        let name = match obj.get("name") {
            Some(Value::String(n)) => n.clone(),
            Some(_) => return Err(invalid(origin, "name: not a string")),
            None => return Err(invalid(origin, "name: missing")),
        };
        check_identifier(&name).map_err(|m| invalid(origin, format!("name {name:?}: {m}")))?;
        let disable_check = match obj.get("disableCheck") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid(origin, "disableCheck: not a boolean")),
        };
        let list =
            match obj.get("plugins") {
                Some(Value::Array(a)) if !a.is_empty() => a,
                Some(Value::Array(_)) => return Err(invalid(origin, "plugins: empty")),
                Some(_) => return Err(invalid(origin, "plugins: not a list")),
                None => return Err(invalid(
                    origin,
                    "plugins: missing (a single-plugin .conf is not a list; CNI 1.0 dropped it)",
                )),
            };
        let mut plugins = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            plugins.push(
                PluginConf::from_value(p)
                    .map_err(|m| invalid(origin, format!("plugins[{i}]: {m}")))?,
            );
        }
        Ok(NetworkList {
            name,
            cni_version,
            disable_check,
            plugins,
            raw,
            source: None,
        })
    }

    /// Reads and checks a `.conflist` file.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let data = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut list = Self::from_slice(&data, &path.display().to_string())?;
        list.source = Some(path.to_path_buf());
        Ok(list)
    }

    /// The list as pretty JSON with a trailing newline, as a `.conflist` file holds it.
    pub fn to_json_pretty(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.raw).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Where this list came from, for errors.
    pub(crate) fn origin(&self) -> String {
        match &self.source {
            Some(p) => p.display().to_string(),
            None => format!("network {}", self.name),
        }
    }
}

impl PluginConf {
    fn from_value(v: &Value) -> Result<Self, String> {
        let conf = v.as_object().ok_or("not a JSON object")?.clone();
        let plugin_type = match conf.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(_) => return Err("type: not a string".into()),
            None => return Err("type: missing".into()),
        };
        if plugin_type.is_empty()
            || plugin_type == "."
            || plugin_type == ".."
            || plugin_type.contains(['/', '\\', '\0'])
        {
            return Err(format!("type {plugin_type:?}: not an executable name"));
        }
        let mut capabilities = BTreeSet::new();
        match conf.get("capabilities") {
            None | Some(Value::Null) => {}
            Some(Value::Object(caps)) => {
                for (k, v) in caps {
                    match v {
                        Value::Bool(true) => {
                            capabilities.insert(k.clone());
                        }
                        Value::Bool(false) => {}
                        _ => return Err(format!("{plugin_type}: capabilities.{k}: not a boolean")),
                    }
                }
            }
            Some(_) => return Err(format!("{plugin_type}: capabilities: not an object")),
        }
        Ok(PluginConf {
            plugin_type,
            capabilities,
            conf,
        })
    }
}

/// Loads every `*.conflist` in `dir`, in file name order, into a map by network name. A
/// missing directory has no networks; dotfiles and other names are ignored (editor droppings);
/// two files naming the same network are an error naming both.
pub fn load_dir(dir: &Path) -> Result<BTreeMap<String, NetworkList>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".conflist") {
            continue;
        }
        let path = entry.path();
        // Follows symlinks, as a config directory of links to shared files is common.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    files.sort();
    let mut networks: BTreeMap<String, NetworkList> = BTreeMap::new();
    for path in files {
        let list = NetworkList::from_file(&path)?;
        if let Some(first) = networks.get(&list.name) {
            return Err(Error::Duplicate {
                name: list.name.clone(),
                first: first.source.clone().unwrap_or_default(),
                second: path,
            });
        }
        networks.insert(list.name.clone(), list);
    }
    Ok(networks)
}

/// Renders a bridge network: bridge `bridge` as the gateway with masquerading and hairpin,
/// host-local addresses from `subnet` (gateway the first address), published ports (portmap,
/// with SNAT so the host's loopback reaches them) and the firewall plugin's forward rules.
/// IPAM state goes where the daemon says at invocation (`Cni::ipam_data_dir`).
pub fn bridge_network(name: &str, bridge: &str, subnet: Cidr) -> Result<NetworkList, Error> {
    let origin = format!("network {name}");
    check_interface_name(bridge)
        .map_err(|m| invalid(&origin, format!("bridge {bridge:?}: {m}")))?;
    let gateway = subnet
        .first_host()
        .ok_or_else(|| invalid(&origin, format!("subnet {subnet}: too small")))?;
    if subnet.addr != subnet.network() {
        return Err(invalid(
            &origin,
            format!(
                "subnet {subnet}: host bits set (did you mean {}/{}?)",
                subnet.network(),
                subnet.prefix
            ),
        ));
    }
    let default_route = match subnet.addr {
        IpAddr::V4(_) => "0.0.0.0/0",
        IpAddr::V6(_) => "::/0",
    };
    let raw = json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": subnet.to_string(), "gateway": gateway.to_string() }]],
                    "routes": [{ "dst": default_route }]
                }
            },
            {
                "type": "portmap",
                "capabilities": { "portMappings": true },
                "snat": true
            },
            {
                "type": "firewall"
            }
        ]
    });
    NetworkList::from_value(raw, &origin)
}

/// The default network `rcd` (what `packaging/cni/rcd.conflist` holds).
pub fn default_network() -> NetworkList {
    // Constants, not input: a failure is a bug, caught by the unit tests.
    let subnet = DEFAULT_SUBNET.parse().expect("DEFAULT_SUBNET is a CIDR");
    bridge_network(DEFAULT_NETWORK, DEFAULT_BRIDGE, subnet).expect("the default network is valid")
}

/// Network names and container ids: an alphanumeric, then alphanumerics, `_`, `.` or `-`.
pub(crate) fn check_identifier(s: &str) -> Result<(), &'static str> {
    let mut chars = s.chars();
    match chars.next() {
        None => Err("empty"),
        Some(c) if !c.is_ascii_alphanumeric() => Err("must start with a letter or digit"),
        _ if chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) => Ok(()),
        _ => Err("only letters, digits, '_', '.' and '-' are allowed"),
    }
}

/// Linux interface names: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
pub(crate) fn check_interface_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        Err("empty")
    } else if s.len() > 15 {
        Err("longer than 15 bytes")
    } else if s == "." || s == ".." {
        Err("not a name")
    } else if s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        Err("contains '/', ':' or whitespace")
    } else {
        Ok(())
    }
}

fn invalid(origin: &str, message: impl fmt::Display) -> Error {
    Error::Config {
        origin: origin.to_string(),
        message: message.to_string(),
    }
}

/// An address with a prefix length (`10.89.0.5/16`); also a subnet when the host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address as written.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::from(Ipv4Addr::from(u32::from(a) & mask32(self.prefix))),
            IpAddr::V6(a) => IpAddr::from(Ipv6Addr::from(u128::from(a) & mask128(self.prefix))),
        }
    }

    /// True when `ip` is inside this subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(b)) => {
                IpAddr::from(Ipv4Addr::from(u32::from(b) & mask32(self.prefix))) == self.network()
            }
            (IpAddr::V6(_), IpAddr::V6(b)) => {
                IpAddr::from(Ipv6Addr::from(u128::from(b) & mask128(self.prefix))) == self.network()
            }
            _ => false,
        }
    }

    /// The first usable host address (network + 1), if the subnet has room for a gateway and
    /// at least one container.
    pub fn first_host(&self) -> Option<IpAddr> {
        match self.network() {
            IpAddr::V4(n) if self.prefix <= 30 => {
                Some(IpAddr::from(Ipv4Addr::from(u32::from(n) + 1)))
            }
            IpAddr::V6(n) if self.prefix <= 126 => {
                Some(IpAddr::from(Ipv6Addr::from(u128::from(n) + 1)))
            }
            _ => None,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: not an address/prefix"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{s:?}: prefix {prefix:?} is not 0-{max}"))?;
        Ok(Cidr { addr, prefix })
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NetworkList, String> {
        NetworkList::from_slice(text.as_bytes(), "t.conflist").map_err(|e| e.to_string())
    }

    #[test]
    fn lists_good_and_bad() {
        let good = parse(
            r#"{"cniVersion":"1.0.0","name":"n1","disableCheck":true,"x":1,
                "plugins":[{"type":"bridge","capabilities":{"portMappings":true,"mac":false}},
                           {"type":"portmap"}]}"#,
        )
        .unwrap();
        assert_eq!(good.name, "n1");
        assert!(good.disable_check);
        assert_eq!(good.plugins.len(), 2);
        assert_eq!(
            good.plugins[0].capabilities.iter().collect::<Vec<_>>(),
            ["portMappings"]
        );
        assert_eq!(good.raw["x"], 1);

        let bad = [
            ("[]", "t.conflist: not a JSON object"),
            (
                "{",
                "t.conflist: EOF while parsing an object at line 1 column 1",
            ),
            (
                r#"{"name":"n","plugins":[{"type":"bridge"}]}"#,
                "t.conflist: cniVersion: missing",
            ),
            (
                r#"{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"bridge"}]}"#,
                "t.conflist: cniVersion \"0.2.0\" is not supported",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"-n","plugins":[{"type":"bridge"}]}"#,
                "t.conflist: name \"-n\": must start with a letter or digit",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n m","plugins":[{"type":"bridge"}]}"#,
                "t.conflist: name \"n m\": only letters",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#,
                "t.conflist: plugins: missing (a single-plugin .conf",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "t.conflist: plugins: empty",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"bridge":"x"}]}"#,
                "t.conflist: plugins[1]: type: missing",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../bin/sh"}]}"#,
                "t.conflist: plugins[0]: type \"../bin/sh\": not an executable name",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"portmap","capabilities":{"portMappings":"yes"}}]}"#,
                "t.conflist: plugins[0]: portmap: capabilities.portMappings: not a boolean",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","disableCheck":"true","plugins":[{"type":"a"}]}"#,
                "t.conflist: disableCheck: not a boolean",
            ),
        ];
        for (text, want) in bad {
            let got = parse(text).unwrap_err();
            assert!(got.starts_with(want), "{text}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn load_dir_sorted_unique_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let list = |name: &str| {
            format!(r#"{{"cniVersion":"1.0.0","name":"{name}","plugins":[{{"type":"bridge"}}]}}"#)
        };
        assert!(load_dir(&dir.path().join("absent")).unwrap().is_empty());
        std::fs::write(dir.path().join("20-b.conflist"), list("b")).unwrap();
        std::fs::write(dir.path().join("10-a.conflist"), list("a")).unwrap();
        // Editor droppings and other files are not networks.
        std::fs::write(dir.path().join(".10-a.conflist.swp"), "junk").unwrap();
        std::fs::write(dir.path().join("10-a.conflist~"), "junk").unwrap();
        std::fs::write(dir.path().join("old.conf"), "junk").unwrap();
        std::fs::create_dir(dir.path().join("sub.conflist")).unwrap();
        let nets = load_dir(dir.path()).unwrap();
        assert_eq!(nets.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            nets["a"].source.as_deref(),
            Some(dir.path().join("10-a.conflist").as_path())
        );

        std::fs::write(dir.path().join("30-a-again.conflist"), list("a")).unwrap();
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("network a is defined twice")
                && err.contains("10-a.conflist")
                && err.contains("30-a-again.conflist"),
            "{err}"
        );
        std::fs::remove_file(dir.path().join("30-a-again.conflist")).unwrap();

        std::fs::write(dir.path().join("15-bad.conflist"), "{\"cniVersion\":").unwrap();
        let err = load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}", dir.path().join("15-bad.conflist").display())));
    }

    #[test]
    fn packaged_default_is_the_rendered_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/cni/rcd.conflist");
        let file = NetworkList::from_file(&path).unwrap();
        let rendered = default_network();
        assert_eq!(file.raw, rendered.raw, "regenerate with default_network()");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            rendered.to_json_pretty()
        );
        assert_eq!(file.name, "rcd");
        assert_eq!(file.raw["plugins"][0]["bridge"], "rcd0");
    }

    #[test]
    fn bridge_network_renders_and_refuses() {
        let n = bridge_network("t1", "rcdt00ab", "10.90.7.0/24".parse().unwrap()).unwrap();
        let bridge = &n.plugins[0].conf;
        assert_eq!(bridge["bridge"], "rcdt00ab");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["gateway"], "10.90.7.1");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.90.7.0/24");
        assert!(n.plugins[1].capabilities.contains("portMappings"));
        let v6 = bridge_network("t6", "rcdt6", "fd00:89::/64".parse().unwrap()).unwrap();
        assert_eq!(v6.plugins[0].conf["ipam"]["routes"][0]["dst"], "::/0");

        let cases = [
            (
                "t",
                "a-very-long-bridge",
                "10.0.0.0/24",
                "longer than 15 bytes",
            ),
            ("t", "br:0", "10.0.0.0/24", "contains '/', ':'"),
            (
                "t",
                "br0",
                "10.0.0.1/24",
                "host bits set (did you mean 10.0.0.0/24?)",
            ),
            ("t", "br0", "10.0.0.0/31", "too small"),
            ("t/x", "br0", "10.0.0.0/24", "name \"t/x\""),
        ];
        for (name, bridge, subnet, want) in cases {
            let err = bridge_network(name, bridge, subnet.parse().unwrap())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{name} {bridge} {subnet}: {err}");
        }
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.89.3.4/16".parse().unwrap();
        assert_eq!(c.network().to_string(), "10.89.0.0");
        assert!(c.contains("10.89.255.1".parse().unwrap()));
        assert!(!c.contains("10.90.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6: Cidr = "fd00::5/64".parse().unwrap();
        assert_eq!(v6.first_host().unwrap().to_string(), "fd00::1");
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "::/129", "10.0.0.0/-1"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(c.to_string(), "10.89.3.4/16");
    }

    #[test]
    fn identifiers_and_interface_names() {
        for ok in ["a", "rcd-1_x.y", "0abc"] {
            assert!(check_identifier(ok).is_ok(), "{ok}");
        }
        for bad in ["", "_a", "a b", "a/b", "a+b"] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
        for ok in ["eth0", "rcdt1234", "123456789012345"] {
            assert!(check_interface_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "1234567890123456", "a b", "a/b", "a:b"] {
            assert!(check_interface_name(bad).is_err(), "{bad}");
        }
    }
}
