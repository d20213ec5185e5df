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

use super::{Container, Mount, Network, NetworkMode, PortRange, Resources, Source, User};

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

/// One mount, as hashed.
#[derive(Serialize)]
struct CanonicalMount<'a> {
    source: Cow<'a, str>,
    target: &'a str,
    readonly: bool,
}

/// One published port, as hashed; `(first, last)` ranges.
#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
struct CanonicalPort {
    proto: &'static str,
    host_ip: Option<String>,
    host_port: Option<(u16, u16)>,
    container_port: (u16, u16),
}

/// The hex SHA-256 of the container-defining parts.
pub fn spec_hash(
    container: &Container,
    mounts: &[Mount],
    network: &Network,
    resources: &Resources,
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
    };
    // Serializing plain strings, integers and finite floats cannot fail; should it
    // ever, hashing the empty input still yields a stable (if coarse) value.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}
