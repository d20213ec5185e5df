//! The daemon config file (`/etc/rcd/rcd.toml`, `--config`): registries (insecure ones, the
//! credentials file, private CAs, the idle timeout), image limits, networks and logs. A missing default file
//! means the defaults; a bad file is refused with file:line:col, as unit files are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::image::layer::Limits;
use crate::image::registry::{self, ClientConfig};
use crate::unit::quantity::{parse_duration, parse_size};

/// The default config file.
pub const DEFAULT_PATH: &str = "/etc/rcd/rcd.toml";

/// What the config file says, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// The file it came from (None: the defaults, no file).
    pub path: Option<PathBuf>,
    /// Registry access.
    pub registries: Registries,
    /// Bounds on what an image layer may unpack to.
    pub layer_limits: Limits,
    /// Container networking.
    pub network: Network,
    /// Container logs.
    pub logs: Logs,
    /// `[daemon] live_restore`: containers keep running when the daemon stops (default);
    /// false stops them all, dependents first, at a clean shutdown.
    pub live_restore: bool,
    /// `[daemon] cgroup_driver`: who makes containers' cgroups; None (`auto`): what the host
    /// suggests (`cgroup::Driver::detect`).
    pub cgroup_driver: Option<crate::cgroup::Driver>,
    /// `[api]`: listeners besides the Unix socket.
    pub api: Api,
    /// `[daemon] cdi_spec_dirs`: where CDI device specs are read, later ones winning.
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// `[update]`: image updates, daemon-wide.
    pub update: Update,
    /// `[images] gc_high`, `gc_low`: collection by the stores' disk usage.
    pub image_gc: crate::image::threshold::Thresholds,
}

/// `[update]` of the daemon config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    /// `enabled = false` stops every unit's image updates (trials in progress still end).
    pub enabled: bool,
    /// `check`: between two looks at a tag, for units that set none.
    pub check: Duration,
}

/// `[api]`: TCP listeners (none by default), with mutual TLS unless `insecure` says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Api {
    /// Addresses to listen on (`127.0.0.1:2376`; `tcp://` allowed).
    pub listen: Vec<std::net::SocketAddr>,
    /// The server's certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The CA that client certificates must chain to (PEM).
    pub tls_client_ca: Option<PathBuf>,
    /// Plain TCP, no TLS: anyone who reaches it runs containers as root. Warned at every start.
    pub insecure: bool,
    /// `docker_socket`: the Docker Engine API on this Unix socket (none by default).
    pub docker_socket: Option<PathBuf>,
    /// `docker_read_only_socket`: the Docker Engine API's GET routes only, for monitoring tools.
    pub docker_read_only_socket: Option<PathBuf>,
    /// `metrics_listen`: `/metrics` alone over plain HTTP, on a loopback address only (the
    /// mutual-TLS listeners of `listen` serve it too).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `[logs]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logs {
    /// Limits of units that set none.
    pub limits: crate::logs::Limits,
    /// How long the logs of a removed unit are kept after their last write.
    pub keep_removed: Duration,
    /// The driver of units that set none.
    pub driver: crate::logs::journal::Driver,
    /// journald's native socket, for the journald driver.
    pub journal_socket: PathBuf,
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Who sets up the default network `rcd`.
    pub driver: BridgeDriver,
    /// The default network `rcd`'s bridge.
    pub bridge: String,
    /// The default network's IPv4 subnet (`a.b.c.d/len`).
    pub subnet: String,
    /// More networks, as CNI `*.conflist` files.
    pub config_dir: PathBuf,
    /// Where the CNI plugins are, searched in order.
    pub plugin_dirs: Vec<PathBuf>,
    /// The network units join when they name none (default `rcd`): any network, `rcd` or a
    /// conflist's name.
    pub default: String,
}

/// Who sets up the default network's bridge, veths, addresses and rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BridgeDriver {
    /// rcd itself, through netlink and nftables.
    #[default]
    Native,
    /// The CNI plugins (bridge, host-local, portmap, firewall), as before the native driver.
    Cni,
}

/// `[registries]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registries {
    /// Registries (`host[:port]`) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
    /// Docker `config.json`-format credentials.
    pub auth_file: PathBuf,
    /// Per-registry CAs and client certificates, Docker's `certs.d` layout.
    pub certs_dir: PathBuf,
    /// How long a registry may send nothing before a pull fails.
    pub idle_timeout: Duration,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            path: None,
            registries: Registries {
                insecure: Vec::new(),
                auth_file: "/etc/rcd/auth.json".into(),
                certs_dir: "/etc/rcd/certs.d".into(),
                idle_timeout: registry::DEFAULT_IDLE,
            },
            layer_limits: Limits::default(),
            network: Network {
                driver: BridgeDriver::Native,
                bridge: "rcd0".into(),
                subnet: "10.89.0.0/16".into(),
                config_dir: "/etc/rcd/networks".into(),
                plugin_dirs: vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()],
                default: crate::unit::DEFAULT_NETWORK.into(),
            },
            logs: Logs {
                limits: crate::logs::Limits::default(),
                keep_removed: crate::logs::DEFAULT_KEEP_REMOVED,
                driver: crate::logs::journal::Driver::File,
                journal_socket: PathBuf::from(crate::logs::journal::DEFAULT_SOCKET),
            },
            live_restore: true,
            cgroup_driver: None,
            cdi_spec_dirs: crate::spec::cdi::DEFAULT_DIRS.map(PathBuf::from).to_vec(),
            api: Api::default(),
            update: Update {
                enabled: true,
                check: crate::unit::update::DEFAULT_CHECK,
            },
            image_gc: crate::image::threshold::Thresholds::default(),
        }
    }
}

/// A config file or credentials file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file says something wrong, at a place.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The credentials file is not Docker's config.json format.
    #[error("{}: {source}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: registry::CredentialsError,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    registries: Option<RawRegistries>,
    #[serde(default)]
    images: Option<RawImages>,
    #[serde(default)]
    network: Option<RawNetwork>,
    #[serde(default)]
    logs: Option<RawLogs>,
    #[serde(default)]
    daemon: Option<RawDaemon>,
    #[serde(default)]
    api: Option<RawApi>,
    #[serde(default)]
    update: Option<RawUpdate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpdate {
    enabled: Option<bool>,
    check: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<Spanned<Vec<Spanned<String>>>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    tls_client_ca: Option<Spanned<String>>,
    insecure: Option<bool>,
    docker_socket: Option<Spanned<String>>,
    docker_read_only_socket: Option<Spanned<String>>,
    metrics_listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    live_restore: Option<bool>,
    cgroup_driver: Option<Spanned<String>>,
    cdi_spec_dirs: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    max_size: Option<Spanned<String>>,
    max_files: Option<Spanned<i64>>,
    keep_removed: Option<Spanned<String>>,
    driver: Option<Spanned<String>>,
    journal_socket: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    driver: Option<Spanned<String>>,
    bridge: Option<Spanned<String>>,
    subnet: Option<Spanned<String>>,
    config_dir: Option<Spanned<String>>,
    plugin_dirs: Option<Vec<Spanned<String>>>,
    default: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistries {
    insecure: Option<Vec<Spanned<String>>>,
    auth_file: Option<Spanned<String>>,
    certs_dir: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImages {
    max_layer_size: Option<Spanned<String>>,
    max_layer_entries: Option<Spanned<i64>>,
    gc_high: Option<Spanned<String>>,
    gc_low: Option<Spanned<String>>,
    gc_min_age: Option<Spanned<String>>,
}

impl FileConfig {
    /// Reads `path`; `explicit` says the operator named it (`--config`), so a missing file is
    /// an error rather than the defaults.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(FileConfig::default())
            }
            Err(source) => Err(Error::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses the text of a config file.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Error> {
        let at = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = crate::unit::line_col(text, span.map_or(0, |s| s.start));
            Error::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: Raw = toml::from_str(text).map_err(|e| at(e.span(), e.message().to_string()))?;
        let mut config = FileConfig {
            path: Some(path.to_path_buf()),
            ..FileConfig::default()
        };
        if let Some(r) = raw.registries {
            for host in r.insecure.unwrap_or_default() {
                check_registry(host.get_ref()).map_err(|m| at(Some(host.span()), m))?;
                config.registries.insecure.push(host.into_inner());
            }
            for (value, slot) in [
                (r.auth_file, &mut config.registries.auth_file),
                (r.certs_dir, &mut config.registries.certs_dir),
            ] {
                if let Some(v) = value {
                    *slot = absolute(&v).map_err(|m| at(Some(v.span()), m))?;
                }
            }
            if let Some(v) = r.idle_timeout {
                let d = parse_duration(v.get_ref()).map_err(|m| at(Some(v.span()), m))?;
                if d.is_zero() {
                    return Err(at(Some(v.span()), "idle_timeout must be above 0".into()));
                }
                config.registries.idle_timeout = d;
            }
        }
        if let Some(i) = raw.images {
            if let Some(v) = i.max_layer_size {
                let bytes = parse_size(v.get_ref()).map_err(|m| at(Some(v.span()), m))?;
                if bytes == 0 {
                    return Err(at(Some(v.span()), "max_layer_size must be above 0".into()));
                }
                config.layer_limits.max_bytes = bytes;
            }
            if let Some(v) = i.max_layer_entries {
                let n = u64::try_from(*v.get_ref())
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        at(Some(v.span()), "max_layer_entries must be above 0".into())
                    })?;
                config.layer_limits.max_entries = n;
            }
            let percent = |v: &Spanned<String>| {
                crate::image::threshold::parse_percent(v.get_ref())
                    .map_err(|m| at(Some(v.span()), m))
            };
            if let Some(v) = &i.gc_high {
                config.image_gc.high = percent(v)?;
            }
            if let Some(v) = &i.gc_low {
                config.image_gc.low = percent(v)?;
            }
            if let Some(v) = &i.gc_min_age {
                config.image_gc.min_age =
                    parse_duration(v.get_ref()).map_err(|m| at(Some(v.span()), m))?;
            }
            if config.image_gc.low >= config.image_gc.high {
                let span = i.gc_low.as_ref().or(i.gc_high.as_ref()).map(Spanned::span);
                return Err(at(
                    span,
                    format!(
                        "gc_low ({}%) must be below gc_high ({}%)",
                        config.image_gc.low, config.image_gc.high
                    ),
                ));
            }
        }
        if let Some(n) = raw.network {
            if let Some(d) = n.driver {
                config.network.driver = match d.get_ref().as_str() {
                    "native" => BridgeDriver::Native,
                    "cni" => BridgeDriver::Cni,
                    other => {
                        return Err(at(
                            Some(d.span()),
                            format!("driver {other:?}: \"native\" or \"cni\""),
                        ))
                    }
                };
            }
            if let Some(b) = n.bridge {
                check_bridge(b.get_ref()).map_err(|m| at(Some(b.span()), m))?;
                config.network.bridge = b.into_inner();
            }
            if let Some(v) = n.subnet {
                check_subnet(v.get_ref()).map_err(|m| at(Some(v.span()), m))?;
                config.network.subnet = v.into_inner();
            }
            if let Some(v) = n.config_dir {
                let p = absolute(&v).map_err(|m| at(Some(v.span()), m))?;
                config.network.config_dir = p;
            }
            if let Some(dirs) = n.plugin_dirs {
                let mut out = Vec::new();
                for v in dirs {
                    out.push(absolute(&v).map_err(|m| at(Some(v.span()), m))?);
                }
                config.network.plugin_dirs = out;
            }
            if let Some(v) = n.default {
                crate::unit::check_network_name(v.get_ref())
                    .map_err(|m| at(Some(v.span()), format!("default: {m}")))?;
                config.network.default = v.into_inner();
            }
        }
        if let Some(a) = raw.api.as_ref() {
            for (key, v) in [
                ("docker_socket", &a.docker_socket),
                ("docker_read_only_socket", &a.docker_read_only_socket),
            ] {
                let Some(v) = v else { continue };
                let path = PathBuf::from(v.get_ref());
                if !path.is_absolute() {
                    return Err(at(
                        Some(v.span()),
                        format!("{key}: {} is not an absolute path", path.display()),
                    ));
                }
                if key == "docker_socket" {
                    config.api.docker_socket = Some(path);
                } else {
                    config.api.docker_read_only_socket = Some(path);
                }
            }
        }
        if let Some(v) = raw.api.as_ref().and_then(|a| a.metrics_listen.as_ref()) {
            let addr: std::net::SocketAddr = v
                .get_ref()
                .trim_start_matches("tcp://")
                .parse()
                .map_err(|_| {
                    at(
                        Some(v.span()),
                        format!(
                            "metrics_listen: {:?} is not an address and port (127.0.0.1:9101)",
                            v.get_ref()
                        ),
                    )
                })?;
            if !addr.ip().is_loopback() {
                return Err(at(
                    Some(v.span()),
                    format!(
                        "metrics_listen: {addr} is not a loopback address: plain HTTP is only for this host; \
                         a listener of `listen` (mutual TLS) serves /metrics to others"
                    ),
                ));
            }
            config.api.metrics_listen = Some(addr);
        }
        if let Some(a) = raw.api {
            for (value, slot) in [
                (a.tls_cert, &mut config.api.tls_cert),
                (a.tls_key, &mut config.api.tls_key),
                (a.tls_client_ca, &mut config.api.tls_client_ca),
            ] {
                if let Some(v) = value {
                    *slot = Some(absolute(&v).map_err(|m| at(Some(v.span()), m))?);
                }
            }
            config.api.insecure = a.insecure.unwrap_or(false);
            if let Some(list) = a.listen {
                let span = list.span();
                for addr in list.into_inner() {
                    let text = addr.get_ref().trim_start_matches("tcp://");
                    let parsed = text.parse().map_err(|_| {
                        at(
                            Some(addr.span()),
                            format!(
                                "{:?} is not an address and port (127.0.0.1:2376)",
                                addr.get_ref()
                            ),
                        )
                    })?;
                    config.api.listen.push(parsed);
                }
                let tls = [
                    &config.api.tls_cert,
                    &config.api.tls_key,
                    &config.api.tls_client_ca,
                ];
                if !config.api.listen.is_empty()
                    && !config.api.insecure
                    && tls.iter().any(|p| p.is_none())
                {
                    return Err(at(
                        Some(span),
                        "a TCP listener needs tls_cert, tls_key and tls_client_ca (clients must present a certificate), or insecure = true".into(),
                    ));
                }
            }
        }
        if let Some(d) = raw.daemon {
            config.live_restore = d.live_restore.unwrap_or(true);
            if let Some(dirs) = d.cdi_spec_dirs {
                let span = dirs.span();
                let dirs: Vec<PathBuf> = dirs.into_inner().into_iter().map(PathBuf::from).collect();
                if let Some(rel) = dirs.iter().find(|d| !d.is_absolute()) {
                    return Err(at(
                        Some(span),
                        format!("cdi_spec_dirs: {} is not an absolute path", rel.display()),
                    ));
                }
                config.cdi_spec_dirs = dirs;
            }
            if let Some(v) = d.cgroup_driver {
                config.cgroup_driver = match v.get_ref().as_str() {
                    "auto" => None,
                    "systemd" => Some(crate::cgroup::Driver::Systemd),
                    "cgroupfs" => Some(crate::cgroup::Driver::Cgroupfs),
                    other => {
                        return Err(at(
                            Some(v.span()),
                            format!(
                                "unknown cgroup_driver {other:?}: use \"auto\", \"systemd\" or \"cgroupfs\""
                            ),
                        ))
                    }
                };
            }
        }
        if let Some(l) = raw.logs {
            if let Some(v) = l.max_size {
                let bytes = parse_size(v.get_ref())
                    .and_then(crate::logs::check_max_size)
                    .map_err(|m| at(Some(v.span()), m))?;
                config.logs.limits.max_size = bytes;
            }
            if let Some(v) = l.max_files {
                config.logs.limits.max_files = crate::logs::check_max_files(*v.get_ref())
                    .map_err(|m| at(Some(v.span()), m))?;
            }
            if let Some(v) = l.keep_removed {
                let d = parse_duration(v.get_ref()).map_err(|m| at(Some(v.span()), m))?;
                if d.is_zero() {
                    return Err(at(
                        Some(v.span()),
                        "keep_removed must be above 0 (rctl logs --prune removes at once)".into(),
                    ));
                }
                config.logs.keep_removed = d;
            }
            if let Some(v) = l.driver {
                config.logs.driver = crate::logs::journal::Driver::parse(v.get_ref())
                    .map_err(|m| at(Some(v.span()), m))?;
            }
            if let Some(v) = l.journal_socket {
                if !v.get_ref().starts_with('/') {
                    return Err(at(
                        Some(v.span()),
                        format!(
                            "journal_socket must be an absolute path (got {:?})",
                            v.get_ref()
                        ),
                    ));
                }
                config.logs.journal_socket = PathBuf::from(v.get_ref());
            }
        }
        if let Some(u) = raw.update {
            if let Some(e) = u.enabled {
                config.update.enabled = e;
            }
            if let Some(v) = u.check {
                let d = parse_duration(v.get_ref()).map_err(|m| at(Some(v.span()), m))?;
                if d < crate::unit::update::MIN_CHECK {
                    return Err(at(
                        Some(v.span()),
                        format!(
                            "check must be at least {}s: a registry is not polled more often",
                            crate::unit::update::MIN_CHECK.as_secs()
                        ),
                    ));
                }
                config.update.check = d;
            }
        }
        Ok(config)
    }

    /// The registry client's settings, with the credentials file read now (a missing file is
    /// no credentials, as with Docker).
    pub fn client_config(&self) -> Result<ClientConfig, Error> {
        Ok(ClientConfig {
            insecure: self.registries.insecure.clone(),
            credentials: load_credentials(&self.registries.auth_file)?,
            idle_timeout: Some(self.registries.idle_timeout),
            certs_dir: Some(self.registries.certs_dir.clone()),
        })
    }
}

/// Reads a Docker `config.json`-format credentials file; a missing one is none.
pub fn load_credentials(path: &Path) -> Result<HashMap<String, (String, String)>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            registry::credentials_from_docker_config(&text).map_err(|source| Error::Credentials {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn absolute(v: &Spanned<String>) -> Result<PathBuf, String> {
    if Path::new(v.get_ref()).is_absolute() {
        Ok(v.get_ref().into())
    } else {
        Err(format!("\"{}\" is not an absolute path", v.get_ref()))
    }
}

/// A Linux interface name: 1 to 15 bytes of letters, digits, `_`, `.` and `-`.
fn check_bridge(name: &str) -> Result<(), String> {
    let ok = (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{name}\" is not an interface name (1 to 15 letters, digits, '_', '.', '-')"
        ))
    }
}

/// An IPv4 network `a.b.c.d/len`, len 8 to 30, with no host bits set.
fn check_subnet(text: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "\"{text}\" is not an IPv4 subnet (a.b.c.d/len): {why}"
        ))
    };
    let Some((addr, len)) = text.split_once('/') else {
        return bad("no /len");
    };
    let Ok(addr) = addr.parse::<std::net::Ipv4Addr>() else {
        return bad("bad address");
    };
    let Ok(len) = len.parse::<u32>() else {
        return bad("bad length");
    };
    if !(8..=30).contains(&len) {
        return bad("the length must be 8 to 30");
    }
    if u32::from(addr) & (u32::MAX >> len) != 0 {
        return bad("host bits are set");
    }
    Ok(())
}

/// An insecure-registry entry is `host[:port]`, as references name registries.
fn check_registry(host: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("\"{host}\" is not a registry (host[:port]): {why}"));
    if host.is_empty() {
        return bad("empty");
    }
    if host.contains("://") {
        return bad("no scheme");
    }
    if host.contains('/') {
        return bad("no path (CIDR ranges are not supported; list each registry)");
    }
    if let Some((_, port)) = host.rsplit_once(':') {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return bad("bad port");
        }
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("whitespace");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        FileConfig::parse(Path::new("/etc/rcd/rcd.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn image_collection_and_update_settings() {
        let c = parse("").unwrap();
        assert_eq!((c.image_gc.high, c.image_gc.low), (85, 80));
        assert!(c.update.enabled);
        let c = parse(
            "[images]\ngc_high = \"90%\"\ngc_low = \"60\"\ngc_min_age = \"1s\"\n\
             [update]\nenabled = false\ncheck = \"30m\"\n",
        )
        .unwrap();
        assert_eq!((c.image_gc.high, c.image_gc.low), (90, 60));
        assert_eq!(c.image_gc.min_age, Duration::from_secs(1));
        assert!(!c.update.enabled);
        assert_eq!(c.update.check, Duration::from_secs(1800));
    }

    #[test]
    fn a_tcp_listener_needs_mutual_tls_or_an_explicit_insecure() {
        assert_eq!(parse("").map(|c| c.api.listen.len()), Ok(0));
        let e = parse("[api]\nlisten = [\"127.0.0.1:2376\"]\n").unwrap_err();
        assert!(
            e.starts_with("/etc/rcd/rcd.toml:2:10: a TCP listener needs"),
            "{e}"
        );
        let e = parse("[api]\nlisten = [\"localhost\"]\n").unwrap_err();
        assert!(
            e.starts_with("/etc/rcd/rcd.toml:2:11: \"localhost\" is not an address"),
            "{e}"
        );
        let c = parse("[api]\nlisten = [\"tcp://127.0.0.1:2376\"]\ninsecure = true\n");
        assert_eq!(
            c.map(|c| (c.api.listen.len(), c.api.insecure)),
            Ok((1, true))
        );
        let tls = "[api]\nlisten = [\"0.0.0.0:2376\"]\ntls_cert = \"/c\"\ntls_key = \"/k\"\ntls_client_ca = \"/ca\"\n";
        assert_eq!(parse(tls).map(|c| c.api.insecure), Ok(false));
    }

    #[test]
    fn the_shipped_config_and_the_documented_one_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let shipped = std::fs::read_to_string(root.join("packaging/rcd.toml")).expect("read");
        // Every key commented out (the defaults), but the Docker API's socket, which the
        // package turns on.
        let mut want = FileConfig::default();
        want.api.docker_socket = Some(PathBuf::from("/run/rcd/docker.sock"));
        assert_eq!(
            parse(&shipped).map(|c| FileConfig { path: None, ..c }),
            Ok(want)
        );
        let docs = std::fs::read_to_string(root.join("docs/operations.md")).expect("read");
        let block: String = docs
            .split("## The config file")
            .nth(1)
            .and_then(|rest| rest.split("```toml\n").nth(1))
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block under \"The config file\"")
            .to_string();
        assert!(block.contains("cgroup_driver"), "{block}");
        parse(&block).expect("the documented config parses");
    }

    #[test]
    fn the_cgroup_driver_is_auto_unless_named() {
        assert_eq!(parse("").map(|c| c.cgroup_driver).ok(), Some(None));
        assert_eq!(
            parse("[daemon]\ncgroup_driver = \"auto\"\n")
                .map(|c| c.cgroup_driver)
                .ok(),
            Some(None)
        );
        assert_eq!(
            parse("[daemon]\ncgroup_driver = \"systemd\"\n")
                .map(|c| c.cgroup_driver)
                .ok(),
            Some(Some(crate::cgroup::Driver::Systemd))
        );
        assert_eq!(
            parse("[daemon]\ncgroup_driver = \"cgroupfs\"\n")
                .map(|c| c.cgroup_driver)
                .ok(),
            Some(Some(crate::cgroup::Driver::Cgroupfs))
        );
        let e = parse("[daemon]\ncgroup_driver = \"systemd-ish\"\n").unwrap_err();
        assert!(
            e.to_string().contains(":2:17: unknown cgroup_driver"),
            "{e}"
        );
    }

    #[test]
    fn live_restore_is_on_unless_turned_off() {
        assert!(parse("").map(|c| c.live_restore).unwrap_or(false));
        assert_eq!(
            parse("[daemon]\nlive_restore = false\n").map(|c| c.live_restore),
            Ok(false)
        );
        let e = parse("[daemon]\nlive_restore = \"no\"\n").unwrap_err();
        assert!(e.starts_with("/etc/rcd/rcd.toml:2:16:"), "{e}");
        let e = parse("[daemon]\nlive = true\n").unwrap_err();
        assert!(
            e.starts_with("/etc/rcd/rcd.toml:2:1:") && e.contains("unknown field"),
            "{e}"
        );
    }

    #[test]
    fn empty_is_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.registries, FileConfig::default().registries);
        assert_eq!(c.layer_limits, Limits::default());
    }

    #[test]
    fn every_key() {
        let c = parse(
            "[registries]\ninsecure = [\"reg.lan:5000\", \"mirror\"]\nauth_file = \"/x/auth.json\"\n\
             certs_dir = \"/x/certs.d\"\nidle_timeout = \"5m\"\n\n[images]\nmax_layer_size = \"2G\"\n\
             max_layer_entries = 1000\n",
        )
        .unwrap();
        assert_eq!(c.registries.insecure, ["reg.lan:5000", "mirror"]);
        assert_eq!(c.registries.auth_file, Path::new("/x/auth.json"));
        assert_eq!(c.registries.certs_dir, Path::new("/x/certs.d"));
        assert_eq!(c.registries.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.layer_limits.max_bytes, 2 << 30);
        assert_eq!(c.layer_limits.max_entries, 1000);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        for (text, want) in [
            ("[registries]\nbogus = 1\n", "/etc/rcd/rcd.toml:2:1: unknown field `bogus`"),
            ("[registrys]\n", "/etc/rcd/rcd.toml:1:2: unknown field `registrys`"),
            (
                "[registries]\ninsecure = [\"http://r:5000\"]\n",
                "/etc/rcd/rcd.toml:2:13: \"http://r:5000\" is not a registry (host[:port]): no scheme",
            ),
            (
                "[registries]\ninsecure = [\"r:0\"]\n",
                "/etc/rcd/rcd.toml:2:13: \"r:0\" is not a registry (host[:port]): bad port",
            ),
            (
                "[registries]\nauth_file = \"auth.json\"\n",
                "/etc/rcd/rcd.toml:2:13: \"auth.json\" is not an absolute path",
            ),
            ("[registries]\nidle_timeout = \"0s\"\n", "/etc/rcd/rcd.toml:2:16: idle_timeout must be above 0"),
            ("[registries]\nidle_timeout = \"soon\"\n", "/etc/rcd/rcd.toml:2:16:"),
            ("[images]\nmax_layer_entries = -1\n", "/etc/rcd/rcd.toml:2:21: max_layer_entries must be above 0"),
            ("[images]\nmax_layer_size = 5\n", "/etc/rcd/rcd.toml:2:18:"),
            ("[registries\n", "/etc/rcd/rcd.toml:1:"),
        ] {
            let got = parse(text).unwrap_err();
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn network_keys() {
        let c = parse(
            "[network]\ndriver = \"cni\"\nbridge = \"rcdt1\"\nsubnet = \"10.90.4.0/24\"\nconfig_dir = \"/x/nets\"\n\
             plugin_dirs = [\"/x/cni\"]\ndefault = \"lan\"\n",
        )
        .unwrap();
        assert_eq!(c.network.default, "lan");
        assert_eq!(parse("").unwrap().network.default, "rcd");
        assert_eq!(c.network.driver, BridgeDriver::Cni);
        assert_eq!(parse("").unwrap().network.driver, BridgeDriver::Native);
        assert_eq!(c.network.bridge, "rcdt1");
        assert_eq!(c.network.subnet, "10.90.4.0/24");
        assert_eq!(c.network.config_dir, Path::new("/x/nets"));
        assert_eq!(c.network.plugin_dirs, [PathBuf::from("/x/cni")]);
        for (text, want) in [
            (
                "[network]\nbridge = \"a-bridge-name-too-long\"\n",
                "2:10: \"a-bridge-name-too-long\" is not an interface name",
            ),
            (
                "[network]\nsubnet = \"10.89.0.1/16\"\n",
                "2:10: \"10.89.0.1/16\" is not an IPv4 subnet (a.b.c.d/len): host bits are set",
            ),
            (
                "[network]\nsubnet = \"10.89.0.0\"\n",
                "2:10: \"10.89.0.0\" is not an IPv4 subnet (a.b.c.d/len): no /len",
            ),
            (
                "[network]\nsubnet = \"10.0.0.0/31\"\n",
                "the length must be 8 to 30",
            ),
            (
                "[network]\ndriver = \"docker\"\n",
                "2:10: driver \"docker\": \"native\" or \"cni\"",
            ),
            (
                "[network]\nplugin_dirs = [\"cni\"]\n",
                "2:16: \"cni\" is not an absolute path",
            ),
            ("[network]\ndefault = \"Bad Name\"\n", "2:11: default: "),
        ] {
            let got = parse(text).unwrap_err();
            assert!(got.contains(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn logs_keys() {
        let c = parse("").unwrap();
        assert_eq!(c.logs.limits, crate::logs::Limits::default());
        assert_eq!(c.logs.keep_removed, Duration::from_secs(7 * 86400));
        let c = parse("[logs]\nmax_size = \"1M\"\nmax_files = 5\nkeep_removed = \"2d\"\n").unwrap();
        assert_eq!(c.logs.limits.max_size, 1 << 20);
        assert_eq!(c.logs.limits.max_files, 5);
        assert_eq!(c.logs.keep_removed, Duration::from_secs(2 * 86400));
        assert_eq!(c.logs.driver, crate::logs::journal::Driver::File);
        let c = parse("[logs]\ndriver = \"journald\"\njournal_socket = \"/j/s\"\n").unwrap();
        assert_eq!(c.logs.driver, crate::logs::journal::Driver::Journald);
        assert_eq!(c.logs.journal_socket, Path::new("/j/s"));
        for (text, want) in [
            (
                "[logs]\ndriver = \"syslog\"\n",
                "/etc/rcd/rcd.toml:2:10: unknown log driver \"syslog\"",
            ),
            (
                "[logs]\njournal_socket = \"j\"\n",
                "/etc/rcd/rcd.toml:2:18: journal_socket must be an absolute path",
            ),
            (
                "[logs]\nmax_size = \"1k\"\n",
                "/etc/rcd/rcd.toml:2:12: max_size must be at least 64K",
            ),
            (
                "[logs]\nmax_size = \"lots\"\n",
                "/etc/rcd/rcd.toml:2:12: expected a number of bytes",
            ),
            (
                "[logs]\nmax_files = 0\n",
                "/etc/rcd/rcd.toml:2:13: max_files must be between 1 and 100",
            ),
            (
                "[logs]\nkeep_removed = \"0s\"\n",
                "/etc/rcd/rcd.toml:2:16: keep_removed must be above 0",
            ),
            (
                "[logs]\nkeep_removed = \"week\"\n",
                "/etc/rcd/rcd.toml:2:16:",
            ),
            (
                "[logs]\nmax_file = 2\n",
                "/etc/rcd/rcd.toml:2:1: unknown field `max_file`",
            ),
            (
                "[images]\ngc_high = \"70%\"\ngc_low = \"75%\"\n",
                "/etc/rcd/rcd.toml:3:10: gc_low (75%) must be below gc_high (70%)",
            ),
            (
                "[images]\ngc_high = \"lots\"\n",
                "/etc/rcd/rcd.toml:2:11: \"lots\" is not a percentage",
            ),
            (
                "[api]\nmetrics_listen = \"0.0.0.0:9101\"\n",
                "/etc/rcd/rcd.toml:2:18: metrics_listen: 0.0.0.0:9101 is not a loopback address",
            ),
            (
                "[update]\ncheck = \"1s\"\n",
                "/etc/rcd/rcd.toml:2:9: check must be at least 10s",
            ),
        ] {
            let got = parse(text).unwrap_err();
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn a_missing_file_is_the_defaults_unless_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rcd.toml");
        assert_eq!(
            FileConfig::load(&path, false).unwrap(),
            FileConfig::default()
        );
        let err = FileConfig::load(&path, true).unwrap_err().to_string();
        assert!(err.contains("rcd.toml"), "{err}");
    }

    #[test]
    fn credentials_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        assert!(load_credentials(&path).unwrap().is_empty());
        std::fs::write(&path, r#"{"auths":{"127.0.0.1:5000":{"auth":"dTpw"}}}"#).unwrap();
        let creds = load_credentials(&path).unwrap();
        assert_eq!(creds["127.0.0.1:5000"], ("u".to_string(), "p".to_string()));
        std::fs::write(&path, "{").unwrap();
        let err = load_credentials(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
    }
}
