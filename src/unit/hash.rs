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

use super::{Container, Mount, NetworkMode, Resources};

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
    network: &'static str,
    memory: Option<u64>,
    cpus: Option<f64>,
    pids: Option<i64>,
}

/// One mount, as hashed.
#[derive(Serialize)]
struct CanonicalMount<'a> {
    source: Cow<'a, str>,
    target: &'a str,
    readonly: bool,
}

/// The hex SHA-256 of the container-defining parts.
pub fn spec_hash(
    container: &Container,
    mounts: &[Mount],
    network: NetworkMode,
    resources: &Resources,
) -> String {
    let canonical = Canonical {
        rootfs: container.rootfs.to_string_lossy(),
        command: &container.command,
        env: &container.env,
        workdir: &container.workdir,
        uid: container.user.uid,
        gid: container.user.gid,
        hostname: &container.hostname,
        stop_signal: &container.stop_signal,
        stop_timeout_ns: container.stop_timeout.as_nanos(),
        mounts: mounts
            .iter()
            .map(|m| CanonicalMount {
                source: m.source.to_string_lossy(),
                target: &m.target,
                readonly: m.readonly,
            })
            .collect(),
        network: match network {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        },
        memory: resources.memory,
        cpus: resources.cpus,
        pids: resources.pids,
    };
    // Serializing plain strings, integers and finite floats cannot fail; should it
    // ever, hashing the empty input still yields a stable (if coarse) value.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}
