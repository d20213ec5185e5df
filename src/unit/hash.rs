//! Spec hash: the container-defining parts of a validated unit in, a hex SHA-256 out.
//!
//! The hash decides whether a changed file recreates the container, so it covers
//! `[container]`, `[[mount]]`, `[network]` and `[resources]` only: description,
//! restart and install apply to a running container as they are. It hashes values
//! after validation, so comments, key order, `1` vs `1.0` or `"64M"` vs
//! `"67108864"` do not change it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{
    Container, Device, Mount, MountKind, Names, Network, NetworkMode, PortRange, Resources,
    Seccomp, Security, Source, Ulimit, User,
};

/// What is hashed. A private mirror of the public types rather than their own
/// `Serialize`, so that reshaping the API's JSON cannot silently change every
/// hash and recreate every container on upgrade. Field order is fixed by the
/// struct; durations are whole nanoseconds; paths came from TOML strings, so
/// the lossy conversion is exact.
#[derive(Serialize)]
struct Canonical<'a> {
    rootfs: Cow<'a, str>,
    command: &'a [String],
    env: &'a BTreeMap<String, String>,
    workdir: &'a str,
    uid: u32,
    gid: u32,
    hostname: &'a str,
    stop_signal: &'a str,
    stop_timeout_ns: u128,
    mounts: Vec<CanonicalMount<'a>>,
    /// The mode as written ("none", "container:db").
    network: Cow<'a, str>,
    /// Bridge units only, so that units without networks keep their earlier hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    networks: Option<&'a [String]>,
    /// Sorted: the order of `ports` does not change what is published. Left out when empty, so
    /// that units without ports keep their earlier hash.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<CanonicalPort>,
    memory: Option<u64>,
    cpus: Option<f64>,
    pids: Option<i64>,
    /// Image units only, so that every rootfs unit keeps the hash it had before images.
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<CanonicalImage<'a>>,
    /// The keys added with issue 16, left out while all are at their defaults so that units
    /// written before them keep their hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    knobs: Option<CanonicalKnobs<'a>>,
    /// Where each secret goes, not its content nor `on_change`; left out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<CanonicalSecret<'a>>,
}

/// One secret's declaration, as hashed.
#[derive(Serialize)]
struct CanonicalSecret<'a> {
    name: &'a str,
    source: Cow<'a, str>,
    target: Option<&'a str>,
    env: Option<&'a str>,
    mode: u32,
}

/// Labels, kernel knobs, resolver settings and `[security]`, as hashed. The seccomp profile
/// is hashed by its path: its content is read at each start, as Docker reads it at create.
#[derive(Serialize, PartialEq, Default)]
struct CanonicalKnobs<'a> {
    labels: Option<&'a BTreeMap<String, String>>,
    read_only: bool,
    init: bool,
    shm_size: Option<u64>,
    ulimits: Option<&'a BTreeMap<String, Ulimit>>,
    sysctls: Option<&'a BTreeMap<String, String>>,
    devices: Option<&'a [Device]>,
    /// Skipped when empty: the hashes of units from before CDI names stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    cdi_devices: Option<&'a [String]>,
    names: Option<&'a Names>,
    privileged: bool,
    cap_add: Option<&'a [String]>,
    cap_drop: Option<&'a [String]>,
    /// None for the default profile.
    seccomp: Option<Cow<'a, str>>,
    no_new_privileges_off: bool,
}

/// The image-only parts. `pull` is left out: it says when to fetch, not what the container
/// is, and a changed policy applies at the next start without recreating (Docker's `--pull`
/// is likewise a property of the run, not of the container).
#[derive(Serialize)]
struct CanonicalImage<'a> {
    reference: &'a str,
    entrypoint: Option<&'a [String]>,
    command_set: bool,
    workdir_set: bool,
    user_set: bool,
    /// Left out when false, so that image units hashed before it keep their hash.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stop_signal_set: bool,
}

/// One mount, as hashed. `create` is left out: it says what to do about a missing host
/// directory, not what the container is.
#[derive(Serialize)]
struct CanonicalMount<'a> {
    source: Cow<'a, str>,
    target: &'a str,
    readonly: bool,
    /// Tmpfs mounts only, so that bind mounts keep their earlier hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    tmpfs: Option<(Option<u64>, Option<u32>)>,
    /// Volume mounts only (`source` is then the volume's name).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    volume: bool,
}

/// One published port, as hashed; `(first, last)` ranges.
#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
struct CanonicalPort {
    proto: &'static str,
    host_ip: Option<String>,
    host_port: Option<(u16, u16)>,
    container_port: (u16, u16),
}

/// The issue-16 keys as hashed; None while all are at their defaults.
fn knobs<'a>(
    c: &'a Container,
    network: &'a Network,
    security: &'a Security,
) -> Option<CanonicalKnobs<'a>> {
    fn set<T: ?Sized>(v: &T, empty: bool) -> Option<&T> {
        (!empty).then_some(v)
    }
    let k = CanonicalKnobs {
        labels: set(&c.labels, c.labels.is_empty()),
        read_only: c.read_only,
        init: c.init,
        shm_size: c.shm_size,
        ulimits: set(&c.ulimits, c.ulimits.is_empty()),
        sysctls: set(&c.sysctls, c.sysctls.is_empty()),
        devices: set(&c.devices[..], c.devices.is_empty()),
        cdi_devices: set(&c.cdi_devices[..], c.cdi_devices.is_empty()),
        names: set(&network.names, network.names.is_empty()),
        privileged: security.privileged,
        cap_add: set(&security.cap_add[..], security.cap_add.is_empty()),
        cap_drop: set(&security.cap_drop[..], security.cap_drop.is_empty()),
        seccomp: match &security.seccomp {
            Seccomp::Default => None,
            Seccomp::Unconfined => Some(Cow::Borrowed("unconfined")),
            Seccomp::Profile(p) => Some(p.to_string_lossy()),
        },
        no_new_privileges_off: !security.no_new_privileges,
    };
    (k != CanonicalKnobs::default()).then_some(k)
}

/// The hex SHA-256 of the container-defining parts.
pub fn spec_hash(
    container: &Container,
    mounts: &[Mount],
    network: &Network,
    resources: &Resources,
    security: &Security,
    secrets: &[super::secrets::Secret],
) -> String {
    let user = container.user.unwrap_or(User { uid: 0, gid: 0 });
    let (rootfs, image) = match &container.source {
        Source::Rootfs(r) => (r.to_string_lossy(), None),
        Source::Image { reference, .. } => (
            Cow::Borrowed(""),
            Some(CanonicalImage {
                reference,
                entrypoint: container.entrypoint.as_deref(),
                command_set: container.command.is_some(),
                workdir_set: container.workdir.is_some(),
                user_set: container.user.is_some(),
                stop_signal_set: container.stop_signal.is_some(),
            }),
        ),
    };
    let canonical = Canonical {
        rootfs,
        command: container.command.as_deref().unwrap_or_default(),
        env: &container.env,
        workdir: container.workdir.as_deref().unwrap_or("/"),
        uid: user.uid,
        gid: user.gid,
        hostname: &container.hostname,
        stop_signal: container.stop_signal.as_deref().unwrap_or("SIGTERM"),
        stop_timeout_ns: container.stop_timeout.as_nanos(),
        mounts: mounts
            .iter()
            .map(|m| CanonicalMount {
                source: m.source.to_string_lossy(),
                target: &m.target,
                readonly: m.readonly,
                tmpfs: (m.kind == MountKind::Tmpfs).then_some((m.size, m.mode)),
                volume: m.kind == MountKind::Volume,
            })
            .collect(),
        network: match &network.mode {
            NetworkMode::None => Cow::Borrowed("none"),
            NetworkMode::Host => Cow::Borrowed("host"),
            NetworkMode::Bridge => Cow::Borrowed("bridge"),
            NetworkMode::Container(unit) => Cow::Owned(format!("container:{unit}")),
        },
        networks: (!network.networks.is_empty()).then_some(&network.networks[..]),
        ports: {
            let range = |r: PortRange| (r.first, r.last);
            let mut ports: Vec<CanonicalPort> = network
                .ports
                .iter()
                .map(|p| CanonicalPort {
                    proto: p.proto.as_str(),
                    host_ip: p.host_ip.map(|ip| ip.to_string()),
                    host_port: p.host_port.map(range),
                    container_port: range(p.container_port),
                })
                .collect();
            ports.sort();
            ports
        },
        memory: resources.memory,
        cpus: resources.cpus,
        pids: resources.pids,
        image,
        knobs: knobs(container, network, security),
        secrets: secrets
            .iter()
            .map(|s| CanonicalSecret {
                name: &s.name,
                source: s.source.to_string_lossy(),
                target: s.target.as_deref(),
                env: s.env.as_deref(),
                mode: s.mode,
            })
            .collect(),
    };
    // Serializing plain strings, integers and finite floats cannot fail; should it
    // ever, hashing the empty input still yields a stable (if coarse) value.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}
