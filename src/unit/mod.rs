//! Unit files: the operator's TOML (`raw`) in, a validated, normalized `Unit` with its spec hash out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

mod envfile;
mod hash;
mod knobs;
mod links;
mod load;
mod logs;
pub mod ports;
pub(crate) mod quantity;
mod raw;
mod render;
pub mod secrets;
mod security;
pub mod sources;
pub mod trust;
pub mod update;
mod validate;

pub use knobs::{Device, Names, Ulimit};
pub use links::{links, references, unit_links, LinkProblem};
pub use logs::Logs;
pub use ports::{PortMapping, PortRange, Proto};
pub use quantity::{parse_signal, SIGNAL_SHAPE};
pub use security::{capability, capability_name, Seccomp, Security};
pub use validate::check_network_name;

#[cfg(test)]
mod tests;

/// A validated unit: defaults applied, cannot be invalid.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    /// The unit's name: its file stem.
    pub name: String,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// The files it is made of, in merge order: the template it is an instance of, its own
    /// file, its drop-ins (just `file` for most units).
    pub sources: Vec<PathBuf>,
    /// `[unit] description`.
    pub description: Option<String>,
    /// `[unit] after`, `requires`, `wants`: how it depends on other units (not part of the
    /// container, so not of the spec hash).
    pub deps: Deps,
    /// `[container]`.
    pub container: Container,
    /// `[[mount]]` entries, in file order.
    pub mounts: Vec<Mount>,
    /// `[network]`.
    pub network: Network,
    /// `[resources]`.
    pub resources: Resources,
    /// `[restart]`.
    pub restart: Restart,
    /// `[health]` (not part of the spec hash: a change applies to the running container).
    pub health: Health,
    /// `[security]`.
    pub security: Security,
    /// `[[secret]]` entries, in file order.
    pub secrets: Vec<secrets::Secret>,
    /// Digest of the secrets' content when the unit was loaded (never the content): part of
    /// the unit, not of its spec hash, so a change is seen and applied by `on_change`.
    #[serde(skip)]
    pub secret_digest: Option<String>,
    /// `[install] autostart`, default true.
    pub autostart: bool,
    /// `[logs]`: the unit's log limits (not part of the spec hash).
    pub logs: Logs,
    /// `[update]`: whether and how its image follows its tag (not part of the spec hash).
    pub update: update::Update,
    /// Hex SHA-256 of the container-defining parts (container, mounts, network, resources).
    pub spec_hash: String,
}

impl Unit {
    /// Files outside the unit file whose content is part of the unit (its env files): a
    /// change of one is a change of the unit.
    pub fn external_files(&self) -> Vec<PathBuf> {
        let secrets = self.secrets.iter().map(|s| s.source.clone());
        self.container
            .env_files
            .iter()
            .cloned()
            .chain(secrets)
            .collect()
    }
}

/// `[unit]` dependencies, with systemd's meanings; each a list of unit names, never this one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Deps {
    /// Start only once these run (are healthy, if they have a health check), if they are to
    /// run at all.
    pub after: Vec<String>,
    /// Started along with this one; this one stops when one of them is stopped or removed,
    /// and starts again when it is back.
    pub requires: Vec<String>,
    /// Started along with this one; nothing more.
    pub wants: Vec<String>,
}

impl Deps {
    /// Every unit named, with the key naming it, in key order.
    pub fn all(&self) -> impl Iterator<Item = (&'static str, &String)> {
        let after = self.after.iter().map(|n| ("after", n));
        let requires = self.requires.iter().map(|n| ("requires", n));
        after
            .chain(requires)
            .chain(self.wants.iter().map(|n| ("wants", n)))
    }
}

/// `[health]`: the unit's health check, each key unset where the image's (or Docker's
/// default) applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    /// No health check at all, not even the image's.
    pub disable: bool,
    /// The probe's argv (a shell string becomes `["/bin/sh", "-c", string]`).
    pub cmd: Option<Vec<String>>,
    /// Or an HTTP or TCP probe the daemon makes from inside the container's network
    /// namespace (`http`, `tcp`): no exec, no shell needed in the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<NetProbe>,
    /// `[health.startup]`: a probe that must pass before the others run (Kubernetes'
    /// startupProbe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup: Option<Startup>,
    /// Time between probes.
    #[serde(with = "humantime_serde_shim::option")]
    pub interval: Option<Duration>,
    /// Time a probe may take before it is killed and counted as failed.
    #[serde(with = "humantime_serde_shim::option")]
    pub timeout: Option<Duration>,
    /// Consecutive failures that make the container unhealthy.
    pub retries: Option<u32>,
    /// Time after the start during which failures do not count.
    #[serde(with = "humantime_serde_shim::option")]
    pub start_period: Option<Duration>,
    /// Time between probes during the start period.
    #[serde(with = "humantime_serde_shim::option")]
    pub start_interval: Option<Duration>,
    /// What to do once unhealthy.
    pub on_unhealthy: OnUnhealthy,
}

/// Between two startup probes when `[health.startup]` sets none.
pub const DEFAULT_STARTUP_INTERVAL: Duration = Duration::from_secs(1);
/// How long one startup probe may take when it sets none.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Startup probes that may fail in a row when it sets none: about a minute to start.
pub const DEFAULT_STARTUP_RETRIES: u32 = 60;

/// `[health.startup]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Startup {
    /// An argv run in the container...
    pub cmd: Option<Vec<String>>,
    /// ...or an HTTP or TCP probe the daemon makes.
    pub net: Option<NetProbe>,
    /// Between two probes.
    #[serde(with = "humantime_serde_shim")]
    pub interval: Duration,
    /// How long one may take.
    #[serde(with = "humantime_serde_shim")]
    pub timeout: Duration,
    /// Failures in a row that make the container unhealthy.
    pub retries: u32,
}

/// `[health] http` or `tcp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetProbe {
    /// A GET of `path` from `addr`, with `Host: host`; 200 to 399 is healthy.
    Http {
        /// Where to connect.
        addr: std::net::SocketAddr,
        /// The Host header (as written in the URL).
        host: String,
        /// The path and query.
        path: String,
    },
    /// A connect to this address.
    Tcp(std::net::SocketAddr),
}

/// Parses `[health] http`: `http://IP[:PORT][/PATH]` (`localhost` is 127.0.0.1; no names:
/// the probe runs in the container's namespace, without its resolver).
pub fn parse_http_probe(url: &str) -> Result<NetProbe, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("must start with http:// (https is not probed)")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = socket_addr(hostport, 80)?;
    Ok(NetProbe::Http {
        addr,
        host: hostport.to_owned(),
        path: path.to_owned(),
    })
}

/// Parses `[health] tcp`: `IP:PORT` (`localhost:PORT` is 127.0.0.1).
pub fn parse_tcp_probe(text: &str) -> Result<NetProbe, String> {
    if !text.contains(':') || text.ends_with(':') {
        return Err("must be IP:PORT (e.g. \"127.0.0.1:5432\")".into());
    }
    socket_addr(text, 0).map(NetProbe::Tcp)
}

/// `IP[:PORT]`, `[IPv6][:PORT]` or `localhost[:PORT]`; `default` when the port is left out.
fn socket_addr(text: &str, default: u16) -> Result<std::net::SocketAddr, String> {
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p))
            if !h.is_empty() && !p.contains(']') && (h.starts_with('[') || !h.contains(':')) =>
        {
            (h, Some(p))
        }
        _ => (text, None),
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port {p:?}"))?,
        None if default > 0 => default,
        None => return Err("a port is needed".into()),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = if host == "localhost" {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        host.parse().map_err(|_| {
            format!("{host:?} is not an IP address (the probe does not resolve names)")
        })?
    };
    Ok(std::net::SocketAddr::new(ip, port))
}

/// `[health] on_unhealthy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnhealthy {
    /// Report it, nothing more (Docker's behaviour).
    #[default]
    None,
    /// Restart the container through its restart path (counted, with backoff).
    Restart,
    /// Stop the container; the unit is `failed` until started again.
    Stop,
}

/// Where a container's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Absolute path of a plain root filesystem directory (the overlay's lower layer).
    Rootfs(PathBuf),
    /// An image, by normalized reference (`docker.io/library/busybox:latest`).
    Image {
        /// The normalized reference.
        reference: String,
        /// When to pull it.
        pull: PullPolicy,
    },
}

/// `pull`: Docker's `--pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull only when the image is not stored (the default).
    Missing,
    /// Pull at every start.
    Always,
    /// Never pull; the image must be stored.
    Never,
}

/// `[container]`: what runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Container {
    /// The root filesystem: a directory or an image.
    pub source: Source,
    /// Replaces the image's Entrypoint (image units only; `Some(vec![])` clears it).
    pub entrypoint: Option<Vec<String>>,
    /// argv (or the image's Cmd replacement); never empty when set; always set for rootfs units.
    pub command: Option<Vec<String>>,
    /// Environment, sorted by key.
    pub env: BTreeMap<String, String>,
    /// Absolute working directory; unset means the image's, else "/".
    pub workdir: Option<String>,
    /// Numeric user; unset means the image's, else 0:0.
    pub user: Option<User>,
    /// Hostname, default the unit name.
    pub hostname: String,
    /// Normalized signal name ("SIGTERM"). Unset (None) only in an image unit that leaves it to
    /// the image's StopSignal; a rootfs unit's default is SIGTERM.
    pub stop_signal: Option<String>,
    /// `rctl reload UNIT` sends this (normalized, "SIGHUP"); not part of the spec hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_signal: Option<String>,
    /// Time between the stop signal and SIGKILL, default 10s.
    #[serde(with = "humantime_serde_shim")]
    pub stop_timeout: Duration,
    /// Env files merged under `env` when the unit was loaded (`env` holds the result).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_files: Vec<PathBuf>,
    /// Labels, kept as OCI annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The root filesystem is mounted read-only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// A minimal init runs as PID 1 and runs the command as its child.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// Size of `/dev/shm` in bytes (default 64 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// Resource limits by kernel name (`RLIMIT_NOFILE`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    /// Namespaced kernel parameters, dotted names.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Host devices.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    /// CDI device names (`nvidia.com/gpu=0`), resolved from their specs at each start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cdi_devices: Vec<String>,
}

/// A numeric uid:gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// A mount: a host path bound in, or a tmpfs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mount {
    /// What is mounted.
    #[serde(rename = "type")]
    pub kind: MountKind,
    /// Absolute host path (bind), the volume's name (volume); empty for a tmpfs.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    /// Mounted read-only.
    pub readonly: bool,
    /// A missing host directory is created (bind).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub create: bool,
    /// Size limit in bytes (tmpfs; default: half the memory, the kernel's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Permission bits of its root (tmpfs; default 1777).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// `[[mount]] type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A fresh tmpfs, gone with the container.
    Tmpfs,
    /// A named volume of rcd's (`source` is its name), kept when the unit goes.
    Volume,
}

/// `[network] mode`: Docker's `--network`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// A fresh network namespace with only loopback.
    None,
    /// The host's network namespace.
    Host,
    /// A network namespace of its own, attached to the bridge networks in `Network::networks`.
    Bridge,
    /// The network namespace of another unit's container, by unit name (never this unit's).
    Container(String),
}

impl NetworkMode {
    /// The mode of a unit that sets none: `Bridge` on the default network, as in Docker.
    pub fn default_mode() -> NetworkMode {
        NetworkMode::Bridge
    }
}

impl std::fmt::Display for NetworkMode {
    /// As written in a unit file: "none", "host", "bridge", "container:db".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::Bridge => f.write_str("bridge"),
            NetworkMode::Container(unit) => write!(f, "container:{unit}"),
        }
    }
}

/// As the unit file's string, so `rctl inspect` shows `"container:db"` rather than a tagged object.
impl Serialize for NetworkMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The network a bridge unit joins when it names none.
pub const DEFAULT_NETWORK: &str = "rcd";

/// `[network]`: how the container is networked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    /// The mode.
    pub mode: NetworkMode,
    /// Bridge networks to join, in file order (which comes first can matter: eth0, the default
    /// route); empty unless `mode` is `Bridge`, and then at least one, default `["rcd"]`.
    pub networks: Vec<String>,
    /// Published ports, in file order; empty unless `mode` is `Bridge`.
    pub ports: Vec<PortMapping>,
    /// `networks` was written: a unit without it joins the daemon's `[network] default`,
    /// which is `rcd` unless the config names another.
    #[serde(skip)]
    pub networks_written: bool,
    /// Name servers, search domains, resolver options, extra host names.
    #[serde(flatten)]
    pub names: Names,
}

impl Default for Network {
    /// What a unit without a `[network]` table gets.
    fn default() -> Self {
        Network::with_mode(NetworkMode::default_mode())
    }
}

impl Network {
    /// `mode` with the default networks for it and no published ports.
    pub fn with_mode(mode: NetworkMode) -> Self {
        let networks = match mode {
            NetworkMode::Bridge => vec![DEFAULT_NETWORK.to_owned()],
            _ => Vec::new(),
        };
        Network {
            mode,
            networks,
            ports: Vec::new(),
            networks_written: false,
            names: Names::default(),
        }
    }
}

/// `[resources]`: cgroup limits.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Resources {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU quota in CPUs (0.5 = half of one CPU).
    pub cpus: Option<f64>,
    /// Maximum number of tasks.
    pub pids: Option<i64>,
}

/// The restart policy's name and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "policy")]
pub enum Policy {
    /// Never restart.
    No,
    /// Restart on a non-zero exit, at most `max_retries` times if set.
    OnFailure {
        /// Restarts allowed before the unit is `failed`.
        max_retries: Option<u32>,
    },
    /// Always restart; a hold by `rctl stop` lasts until the next daemon start.
    Always,
    /// Always restart unless held by `rctl stop`.
    UnlessStopped,
}

/// `[restart]`: policy and backoff.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restart {
    /// The policy.
    #[serde(flatten)]
    pub policy: Policy,
    /// First backoff delay, default 100ms.
    #[serde(with = "humantime_serde_shim")]
    pub delay: Duration,
    /// Backoff cap, default 1m.
    #[serde(with = "humantime_serde_shim")]
    pub max_delay: Duration,
    /// A run this long resets the backoff, default 10s.
    #[serde(with = "humantime_serde_shim")]
    pub reset_after: Duration,
}

/// Serializes durations as humantime strings ("10s") in JSON output.
mod humantime_serde_shim {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub mod option {
        use std::time::Duration;

        pub fn serialize<S: serde::Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// One problem in a unit file, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The unit file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Why a unit file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file or its directory may be written by someone other than root.
    #[error("{}: refused: {reason}", path.display())]
    Untrusted {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is not a valid unit.
    #[error("{}", diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Every problem found.
        diagnostics: Vec<Diagnostic>,
    },
}

/// The unit name for a path in the units directory, or None if it is not a unit file
/// (not `*.toml`, a dotfile, an editor backup).
pub fn unit_name(path: &Path) -> Option<String> {
    let file_name = path.file_name()?.to_str()?;
    // Dotfiles cover vim's `.x.toml.swp` and emacs' `.#x.toml`; the suffix rule covers
    // `x.toml~`, `x.toml.bak`, `#x.toml#` and vim's `4913` probe.
    if file_name.starts_with('.') {
        return None;
    }
    let stem = file_name.strip_suffix(".toml")?;
    (!stem.is_empty()).then(|| stem.to_owned())
}

/// Whether `name` is a valid unit name: `^[A-Za-z0-9][A-Za-z0-9_.-]*$`, or two such names
/// joined by one '@' (an instance of a template), 63 characters at most.
pub fn valid_name(name: &str) -> bool {
    fn plain(part: &str) -> bool {
        let mut bytes = part.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    }
    name.len() <= 63
        && match name.split_once('@') {
            Some((prefix, instance)) => plain(prefix) && plain(instance),
            None => plain(name),
        }
}

/// Whether `name` (a file stem) is a template (`web@`): not a unit of its own.
pub fn is_template(name: &str) -> bool {
    name.strip_suffix('@').is_some_and(|p| !p.contains('@'))
}

/// Parses and validates a unit file's text.
pub fn parse(name: &str, file: &Path, text: &str) -> Result<Unit, Vec<Diagnostic>> {
    parse_sources(name, file, &sources::Sources::single(name, file, text))
}

/// Parses and validates a unit made of layers (see `sources`); `file` is the file it is
/// listed as. Each problem names the layer and place it comes from.
pub fn parse_sources(
    name: &str,
    file: &Path,
    sources: &sources::Sources,
) -> Result<Unit, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    if !valid_name(name) {
        problems.push(raw::Problem::new(
            0..0,
            format!(
                "invalid unit name {name:?}: use 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit, and at most one '@' between two such names (an instance of a template)"
            ),
        ));
    }
    let unit = match raw::parse_sources(sources) {
        Err(syntax) => {
            problems.extend(syntax);
            None
        }
        Ok((raw_file, typing)) => {
            problems.extend(typing);
            match validate::validate(name, file, raw_file) {
                Ok(mut unit) => {
                    unit.sources = sources.files().map(Path::to_path_buf).collect();
                    Some(unit)
                }
                Err(semantic) => {
                    problems.extend(semantic);
                    None
                }
            }
        }
    };
    match unit {
        Some(unit) if problems.is_empty() => Ok(unit),
        _ => {
            if problems.is_empty() {
                // Every rejection says why; this is a safety net, not a path taken.
                problems.push(raw::Problem::new(0..0, "invalid unit"));
            }
            let mut diagnostics: Vec<Diagnostic> = problems
                .into_iter()
                .map(|p| {
                    let (file, line, column) = sources.locate(p.span.start);
                    Diagnostic {
                        file,
                        line,
                        column,
                        message: p.message,
                    }
                })
                .collect();
            // Stable: problems at one place keep the order they were found in; layers in
            // merge order.
            let order: Vec<PathBuf> = sources.files().map(Path::to_path_buf).collect();
            let rank = |f: &PathBuf| order.iter().position(|o| o == f).unwrap_or(0);
            diagnostics.sort_by_key(|d| (rank(&d.file), d.line, d.column));
            Err(diagnostics)
        }
    }
}

/// A link problem of the unit in `file`, located in that file (`rctl status`).
pub fn locate_link(file: &Path, p: &LinkProblem) -> Diagnostic {
    load::locate_link(file, p)
}

/// Reads, trust-checks and parses one unit file.
pub fn load_file(path: &Path) -> Result<Unit, Error> {
    load::load_file(path)
}

/// `load_file`, and the files outside the unit file it reads (see `Unit::external_files`).
pub fn load_file_with_externals(path: &Path) -> (Result<Unit, Error>, Vec<PathBuf>) {
    load::load_file_with_externals(path)
}

/// Checks unit files for `rctl check`: each path is a unit file or a directory of
/// them (its `*.toml` files, as `unit_name` selects). Every problem comes back as a
/// diagnostic, read errors and trust refusals at line 1, column 1; none means all good.
/// With `networks` (the configured network names), a unit naming another is a problem too.
pub fn check_paths(
    paths: &[PathBuf],
    networks: Option<&std::collections::BTreeSet<String>>,
) -> Vec<Diagnostic> {
    load::check_paths(paths, networks)
}

/// `rctl check` of one unit file's text (see `check_paths`) with no file system access:
/// `names` are the unit files beside it, `networks` the configured networks if known.
pub fn check_text(
    name: &str,
    file: &Path,
    text: &str,
    names: &std::collections::BTreeSet<String>,
    networks: Option<&std::collections::BTreeSet<String>>,
) -> Vec<Diagnostic> {
    load::check_text(name, file, text, names, networks)
}

/// The `KEY=value` pairs of a text in env-file syntax (`.env`, `env_file`), or the line and
/// problem of the first bad line.
pub fn envfile_pairs(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    envfile::parse(text)
}

/// The effective unit listed at `path` (`rctl cat`): see `render::effective`.
pub fn effective(path: &Path) -> Result<String, Error> {
    render::effective(path)
}

/// The unit files in `dir` (as `unit_name` selects them), sorted by path.
pub fn unit_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    load::unit_files(dir)
}

impl Error {
    /// This error as diagnostics, as `rctl check` and `rctl status` show them:
    /// read errors and refusals at line 1, column 1 of the path concerned.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let at_top = |path: &Path, message: String| Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message,
        };
        match self {
            Error::Read { path, source } => vec![at_top(path, format!("cannot read: {source}"))],
            Error::Untrusted { path, reason } => vec![at_top(path, format!("refused: {reason}"))],
            Error::Invalid { diagnostics } => diagnostics.clone(),
        }
    }
}

/// The 1-based line and column (in characters) of a byte offset in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = text.get(..end).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    (line, column)
}
