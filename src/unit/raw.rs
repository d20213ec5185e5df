//! Raw unit files: TOML text in, what the operator wrote (with spans) out, plus every syntax or type problem.
//!
//! Each top-level table is deserialized on its own, so a typo in `[container]`
//! does not hide a wrong type in `[resources]`: the operator sees both at once.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde_spanned::Spanned;
use toml::de::{DeValue, ValueDeserializer};

/// A problem found in the text, located by byte span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Bytes of the text at fault; its start is what gets reported.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem at `span`.
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            span,
            message: message.into(),
        }
    }
}

/// The top-level tables a unit file may have, in documentation order.
const TABLES: &[&str] = &[
    "unit",
    "container",
    "mount",
    "network",
    "resources",
    "restart",
    "health",
    "security",
    "secret",
    "install",
    "logs",
    "update",
];

/// What the operator wrote. A table that failed to deserialize is `None` and named in `broken`.
#[derive(Debug, Default)]
pub struct UnitFile {
    /// `[unit]`.
    pub unit: Option<Spanned<UnitSection>>,
    /// `[container]`.
    pub container: Option<Spanned<ContainerSection>>,
    /// `[[mount]]`, in file order.
    pub mounts: Vec<Spanned<MountSection>>,
    /// `[network]`.
    pub network: Option<Spanned<NetworkSection>>,
    /// `[resources]`.
    pub resources: Option<Spanned<ResourcesSection>>,
    /// `[restart]`.
    pub restart: Option<Spanned<RestartSection>>,
    /// `[health]`.
    pub health: Option<Spanned<HealthSection>>,
    /// `[security]`.
    pub security: Option<Spanned<SecuritySection>>,
    /// `[[secret]]`, in file order.
    pub secrets: Vec<Spanned<SecretSection>>,
    /// `[install]`.
    pub install: Option<Spanned<InstallSection>>,
    /// `[logs]`.
    pub logs: Option<Spanned<LogsSection>>,
    /// `[update]`.
    pub update: Option<Spanned<UpdateSection>>,
    /// Tables present but not deserializable; "missing" checks skip them.
    pub broken: Vec<&'static str>,
}

/// `[unit]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitSection {
    /// Free text for `rctl status`.
    pub description: Option<String>,
    /// Units this one starts after.
    pub after: Option<Spanned<Vec<Spanned<String>>>>,
    /// Units this one needs running.
    pub requires: Option<Spanned<Vec<Spanned<String>>>>,
    /// Units this one starts along.
    pub wants: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[container]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSection {
    /// Root filesystem directory.
    pub rootfs: Option<Spanned<String>>,
    /// Image reference, instead of `rootfs`.
    pub image: Option<Spanned<String>>,
    /// "missing", "always" or "never" (image units only).
    pub pull: Option<Spanned<String>>,
    /// Replaces the image's Entrypoint (image units only).
    pub entrypoint: Option<Spanned<Vec<Spanned<String>>>>,
    /// argv.
    pub command: Option<Spanned<Vec<Spanned<String>>>>,
    /// Environment.
    pub env: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// Working directory.
    pub workdir: Option<Spanned<String>>,
    /// "uid[:gid]" or a bare uid.
    pub user: Option<Spanned<Scalar>>,
    /// Hostname.
    pub hostname: Option<Spanned<String>>,
    /// Signal name or number.
    pub stop_signal: Option<Spanned<Scalar>>,
    /// Signal name or number, sent by `rctl reload UNIT`.
    pub reload_signal: Option<Spanned<Scalar>>,
    /// Duration.
    pub stop_timeout: Option<Spanned<Scalar>>,
    /// Env files, Docker's `.env` syntax, merged under `env`.
    pub env_file: Option<Spanned<Vec<Spanned<String>>>>,
    /// Labels: free key/value metadata, kept as OCI annotations.
    pub labels: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// Root filesystem mounted read-only.
    pub read_only: Option<Spanned<bool>>,
    /// A minimal init as PID 1 (signals forwarded, zombies reaped).
    pub init: Option<Spanned<bool>>,
    /// Size of `/dev/shm`: size text or a byte count.
    pub shm_size: Option<Spanned<Scalar>>,
    /// Resource limits by name: `"soft:hard"`, one number for both, or "unlimited".
    pub ulimits: Option<BTreeMap<Spanned<String>, Spanned<Scalar>>>,
    /// Namespaced kernel parameters.
    pub sysctls: Option<BTreeMap<Spanned<String>, Spanned<Scalar>>>,
    /// Host devices: `"/dev/x"`, `"/dev/x:/dev/y"`, `"/dev/x:/dev/y:rw"`.
    pub devices: Option<Spanned<Vec<Spanned<String>>>>,
}

/// One `[[mount]]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSection {
    /// "bind" (the default) or "tmpfs".
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// Host path (bind).
    pub source: Option<Spanned<String>>,
    /// Container path.
    pub target: Option<Spanned<String>>,
    /// Read-only.
    pub readonly: Option<bool>,
    /// Create a missing host directory (bind).
    pub create: Option<Spanned<bool>>,
    /// Size limit: size text or a byte count (tmpfs).
    pub size: Option<Spanned<Scalar>>,
    /// Permission bits, octal text ("1777") or an integer (`0o1777`) (tmpfs).
    pub mode: Option<Spanned<Scalar>>,
}

/// `[network]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// "none", "host", "bridge" or "container:NAME".
    pub mode: Option<Spanned<String>>,
    /// Bridge networks to join.
    pub networks: Option<Spanned<Vec<Spanned<String>>>>,
    /// Published ports, Docker's `-p` syntax.
    pub ports: Option<Spanned<Vec<Spanned<String>>>>,
    /// Name servers for `/etc/resolv.conf`, instead of the host's.
    pub dns: Option<Spanned<Vec<Spanned<String>>>>,
    /// Search domains for `/etc/resolv.conf`.
    pub dns_search: Option<Spanned<Vec<Spanned<String>>>>,
    /// Resolver options for `/etc/resolv.conf` (`ndots:2`).
    pub dns_options: Option<Spanned<Vec<Spanned<String>>>>,
    /// Extra `/etc/hosts` lines: `"name:address"`.
    pub extra_hosts: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `[resources]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSection {
    /// Size text or a byte count.
    pub memory: Option<Spanned<Scalar>>,
    /// CPUs; an integer is read as a float.
    pub cpus: Option<Spanned<Number>>,
    /// Task limit.
    pub pids: Option<Spanned<Integer>>,
}

/// `[restart]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartSection {
    /// Policy name.
    pub policy: Option<Spanned<String>>,
    /// Retry limit for on-failure.
    pub max_retries: Option<Spanned<Integer>>,
    /// First backoff delay.
    pub delay: Option<Spanned<Scalar>>,
    /// Backoff cap.
    pub max_delay: Option<Spanned<Scalar>>,
    /// Run time that resets the backoff.
    pub reset_after: Option<Spanned<Scalar>>,
}

/// `[health]`: Docker's HEALTHCHECK, plus what to do about an unhealthy container.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// The probe: a shell string or an argv.
    pub cmd: Option<Spanned<HealthCmd>>,
    /// Or an HTTP GET the daemon makes: `http://IP:PORT/PATH`.
    pub http: Option<Spanned<String>>,
    /// Or a TCP connect the daemon makes: `IP:PORT`.
    pub tcp: Option<Spanned<String>>,
    /// `[health.startup]`: a probe that must pass before the others run.
    pub startup: Option<Spanned<StartupSection>>,
    /// Time between probes.
    pub interval: Option<Spanned<Scalar>>,
    /// Time a probe may take.
    pub timeout: Option<Spanned<Scalar>>,
    /// Consecutive failures that make the container unhealthy.
    pub retries: Option<Spanned<Integer>>,
    /// Time after the start during which failures do not count.
    pub start_period: Option<Spanned<Scalar>>,
    /// Time between probes during the start period.
    pub start_interval: Option<Spanned<Scalar>>,
    /// No health check, not even the image's.
    pub disable: Option<Spanned<bool>>,
    /// What to do once unhealthy.
    pub on_unhealthy: Option<Spanned<String>>,
}

/// `[health.startup]`: Kubernetes' startup probe.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartupSection {
    /// The probe: a shell string or an argv.
    pub cmd: Option<Spanned<HealthCmd>>,
    /// Or an HTTP GET the daemon makes.
    pub http: Option<Spanned<String>>,
    /// Or a TCP connect the daemon makes.
    pub tcp: Option<Spanned<String>>,
    /// Time between its probes.
    pub interval: Option<Spanned<Scalar>>,
    /// Time one probe may take.
    pub timeout: Option<Spanned<Scalar>>,
    /// Failures in a row that make the container unhealthy.
    pub retries: Option<Spanned<Integer>>,
}

/// `cmd = "curl -f localhost"` (run with `/bin/sh -c`) or `cmd = ["curl", "-f", "localhost"]`.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum HealthCmd {
    /// A shell command line.
    Shell(String),
    /// An argv.
    Exec(Vec<String>),
}

/// `[security]`: capabilities, privileges, seccomp.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    /// Every capability, every device, no seccomp, no masked paths: the host's root.
    pub privileged: Option<Spanned<bool>>,
    /// Capabilities added to Docker's default set (`"ALL"` for all).
    pub cap_add: Option<Spanned<Vec<Spanned<String>>>>,
    /// Capabilities dropped from it (`"ALL"` for all).
    pub cap_drop: Option<Spanned<Vec<Spanned<String>>>>,
    /// "default", "unconfined" or the path of a profile (the OCI `linux.seccomp` object).
    pub seccomp: Option<Spanned<String>>,
    /// The `no_new_privs` bit (default true).
    pub no_new_privileges: Option<Spanned<bool>>,
}

/// One `[[secret]]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSection {
    /// The host file.
    pub source: Option<Spanned<String>>,
    /// Its name (default: the file's name).
    pub name: Option<Spanned<String>>,
    /// Where it appears as a file (default `/run/secrets/NAME`).
    pub target: Option<Spanned<String>>,
    /// Deliver it in this variable instead of a file.
    pub env: Option<Spanned<String>>,
    /// The file's permission bits in the container.
    pub mode: Option<Spanned<Scalar>>,
    /// "restart", "signal:SIGHUP" or "none".
    pub on_change: Option<Spanned<String>>,
}

/// `[install]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallSection {
    /// Start at file drop and at boot.
    pub autostart: Option<bool>,
}

/// `[update]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSection {
    /// "registry" or "none".
    pub policy: Option<Spanned<String>>,
    /// Between two looks at the tag.
    pub check: Option<Spanned<String>>,
    /// "healthy" or "running:DURATION".
    pub gate: Option<Spanned<String>>,
    /// How long the gate may take.
    pub timeout: Option<Spanned<String>>,
}

/// `[logs]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsSection {
    /// Size text or a byte count.
    pub max_size: Option<Spanned<Scalar>>,
    /// Files kept, the current one included.
    pub max_files: Option<Spanned<Integer>>,
    /// `file` or `journald`.
    pub driver: Option<Spanned<String>>,
}

/// A number, integer or float (`cpus = 1` and `cpus = 1.0` are the same), with
/// "expected a number" rather than serde's "expected f64" on a wrong type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(pub f64);

/// An integer, with "expected an integer" rather than serde's "expected i64".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integer(pub i64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl Visitor<'_> for NumberVisitor {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntegerVisitor;
        impl Visitor<'_> for IntegerVisitor {
            type Value = Integer;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Integer, E> {
                Ok(Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Integer, E> {
                i64::try_from(v)
                    .map(Integer)
                    .map_err(|_| E::custom("integer out of range"))
            }
        }
        deserializer.deserialize_any(IntegerVisitor)
    }
}

/// A string or an integer, for keys where operators write either (`memory = 67108864`,
/// `stop_signal = 15`, `user = 1000`). Hand-written rather than `untagged` so the
/// surrounding `Spanned` keeps its position and type errors stay specific.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar {
    /// A TOML string.
    Text(String),
    /// A TOML integer.
    Int(i64),
}

impl fmt::Display for Scalar {
    /// As the operator would have written it: strings quoted, integers bare.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Text(s) => write!(f, "{s:?}"),
            Scalar::Int(n) => write!(f, "{n}"),
        }
    }
}

impl Scalar {
    /// As a size: text with Docker's units (`"64M"`) or a byte count.
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            Scalar::Text(t) => super::quantity::parse_size(t),
            Scalar::Int(n) => u64::try_from(*n).map_err(|_| "must not be negative".to_owned()),
        }
    }

    /// As permission bits of at most `max`: octal text (`"1777"`) or an integer (`0o1777`).
    pub fn octal(&self, max: u32) -> Option<u32> {
        let bits = match self {
            Scalar::Text(t) => u32::from_str_radix(t, 8).ok(),
            Scalar::Int(n) => u32::try_from(*n).ok(),
        };
        bits.filter(|b| *b <= max)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom("integer out of range"))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Parses a unit's layers, merged. Syntax errors are `Err` (at most one per line: the
/// parser's recovery cascades). Otherwise every table is deserialized, and the problems are
/// the first type error of each table that failed.
pub fn parse_sources(
    sources: &super::sources::Sources,
) -> Result<(UnitFile, Vec<Problem>), Vec<Problem>> {
    let mut file = UnitFile::default();
    let text = sources.text();
    let (doc, specifier_problems) = match sources.table() {
        Ok(parsed) => parsed,
        Err(mut problems) => {
            problems.sort_by_key(|p| p.span.start);
            let mut last_line = None;
            problems.retain(|p| {
                let line = text.get(..p.span.start).map(|s| s.matches('\n').count());
                let keep = line != last_line;
                last_line = line;
                keep
            });
            return Err(problems);
        }
    };

    let mut problems = specifier_problems;
    for (key, value) in doc {
        let key_span = key.span();
        match key.get_ref().as_ref() {
            "unit" => file.unit = section(value, "unit", &mut file.broken, &mut problems),
            "container" => {
                file.container = section(value, "container", &mut file.broken, &mut problems)
            }
            "mount" => {
                if let DeValue::Table(_) = value.get_ref() {
                    // `[mount]` instead of `[[mount]]`: serde would only say "expected a sequence".
                    problems.push(Problem::new(
                        value.span(),
                        "`mount` must be an array of tables: write [[mount]], once per mount",
                    ));
                    file.broken.push("mount");
                } else if let Some(mounts) =
                    section(value, "mount", &mut file.broken, &mut problems)
                {
                    file.mounts = mounts;
                }
            }
            "network" => file.network = section(value, "network", &mut file.broken, &mut problems),
            "resources" => {
                file.resources = section(value, "resources", &mut file.broken, &mut problems)
            }
            "restart" => file.restart = section(value, "restart", &mut file.broken, &mut problems),
            "health" => file.health = section(value, "health", &mut file.broken, &mut problems),
            "security" => {
                file.security = section(value, "security", &mut file.broken, &mut problems)
            }
            "secret" => {
                if let DeValue::Table(_) = value.get_ref() {
                    problems.push(Problem::new(
                        value.span(),
                        "`secret` must be an array of tables: write [[secret]], once per secret",
                    ));
                    file.broken.push("secret");
                } else if let Some(secrets) =
                    section(value, "secret", &mut file.broken, &mut problems)
                {
                    file.secrets = secrets;
                }
            }
            "install" => file.install = section(value, "install", &mut file.broken, &mut problems),
            "logs" => file.logs = section(value, "logs", &mut file.broken, &mut problems),
            "update" => file.update = section(value, "update", &mut file.broken, &mut problems),
            other => {
                let is_table = matches!(value.get_ref(), DeValue::Table(_))
                    || value
                        .get_ref()
                        .as_array()
                        .is_some_and(|a| !a.is_empty() && a.iter().all(|v| v.get_ref().is_table()));
                let (message, home) = unknown_top_level(other, is_table);
                // A [container] key written above any header: "missing [container]" would be noise.
                if home == Some("[container]") {
                    file.broken.push("container");
                }
                problems.push(Problem::new(key_span, message));
            }
        }
    }
    Ok((file, problems))
}

/// Deserializes one table; on failure records the problem and marks the table broken.
fn section<T: for<'de> Deserialize<'de>>(
    value: Spanned<DeValue<'_>>,
    name: &'static str,
    broken: &mut Vec<&'static str>,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let span = value.span();
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(Problem::new(e.span().unwrap_or(span), e.message()));
            broken.push(name);
            None
        }
    }
}

/// The message for an unknown top-level key, and the table its name belongs in,
/// if any (a forgotten `[container]` header is the usual cause).
fn unknown_top_level(key: &str, is_table: bool) -> (String, Option<&'static str>) {
    let expected = TABLES
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let home = [
        ("[container]", CONTAINER_KEYS),
        (
            "[[mount]]",
            &["type", "source", "target", "readonly", "create", "size"][..],
        ),
        (
            "[network]",
            &[
                "mode",
                "networks",
                "ports",
                "dns",
                "dns_search",
                "dns_options",
                "extra_hosts",
            ][..],
        ),
        (
            "[security]",
            &[
                "privileged",
                "cap_add",
                "cap_drop",
                "seccomp",
                "no_new_privileges",
            ][..],
        ),
        ("[resources]", &["memory", "cpus", "pids"][..]),
        (
            "[restart]",
            &["policy", "max_retries", "delay", "max_delay", "reset_after"][..],
        ),
        ("[install]", &["autostart"][..]),
        ("[update]", &["policy", "check", "gate", "timeout"][..]),
        (
            "[health]",
            &[
                "cmd",
                "http",
                "tcp",
                "startup",
                "interval",
                "timeout",
                "retries",
                "start_period",
                "start_interval",
                "disable",
                "on_unhealthy",
            ][..],
        ),
        ("[logs]", &["max_size", "max_files", "driver"][..]),
        ("[unit]", &["description", "after", "requires", "wants"][..]),
    ]
    .iter()
    .find(|(_, keys)| keys.contains(&key))
    .map(|(table, _)| *table);
    let message = match (is_table, home) {
        (true, _) => format!("unknown table `{key}`, expected one of {expected}"),
        (false, Some(table)) => format!("key `{key}` is outside any table; it belongs in {table}"),
        (false, None) => {
            format!("unknown key `{key}` outside any table; expected one of the tables {expected}")
        }
    };
    (message, home)
}

/// Keys of `[container]`, for the hint above.
const CONTAINER_KEYS: &[&str] = &[
    "rootfs",
    "image",
    "pull",
    "entrypoint",
    "command",
    "env",
    "workdir",
    "user",
    "hostname",
    "stop_signal",
    "stop_timeout",
    "reload_signal",
    "env_file",
    "labels",
    "read_only",
    "init",
    "shm_size",
    "ulimits",
    "sysctls",
    "devices",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(UnitFile, Vec<Problem>), Vec<Problem>> {
        parse_sources(&crate::unit::sources::Sources::single(
            "t",
            std::path::Path::new("t.toml"),
            text,
        ))
    }

    #[test]
    fn sections_report_independently() {
        let text = "[container]\ncomand = [\"x\"]\n[resources]\npids = \"many\"\n";
        let Ok((file, problems)) = parse(text) else {
            panic!("syntax error in {text:?}");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(file.broken, vec!["container", "resources"]);
    }

    #[test]
    fn spans_point_at_values() {
        let text = "[container]\nrootfs = \"/x\"\nenv = { A = \"1\" }\n";
        let Ok((file, problems)) = parse(text) else {
            panic!("syntax error in {text:?}");
        };
        assert!(problems.is_empty(), "{problems:?}");
        let c = file.container.map(Spanned::into_inner);
        let rootfs = c.as_ref().and_then(|c| c.rootfs.as_ref()).map(|r| r.span());
        assert_eq!(rootfs.and_then(|r| text.get(r)), Some("\"/x\""));
        let key = c
            .as_ref()
            .and_then(|c| c.env.as_ref())
            .and_then(|e| e.keys().next())
            .map(|k| k.span());
        assert_eq!(key.and_then(|r| text.get(r)), Some("A"));
    }

    #[test]
    fn scalars() {
        let text = "[container]\nuser = 1000\nstop_signal = \"TERM\"\n";
        let Ok((file, problems)) = parse(text) else {
            panic!("syntax error in {text:?}");
        };
        assert!(problems.is_empty(), "{problems:?}");
        let c = file.container.map(Spanned::into_inner);
        assert_eq!(
            c.as_ref()
                .and_then(|c| c.user.as_ref())
                .map(|u| u.get_ref()),
            Some(&Scalar::Int(1000))
        );
        assert_eq!(
            c.as_ref()
                .and_then(|c| c.stop_signal.as_ref())
                .map(|u| u.get_ref()),
            Some(&Scalar::Text("TERM".into()))
        );
    }
}
