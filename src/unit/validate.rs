//! Validation: a raw unit file in, a `Unit` with defaults applied out, or every problem found.
//!
//! Each check records its problem and carries on, so one pass tells the operator
//! everything that is wrong, not the first thing.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde_spanned::Spanned;

use super::knobs;
use super::ports::{self, PortMapping};
use super::quantity::{self, format_duration, format_size};
use super::raw::{
    self, ContainerSection, MountSection, NetworkSection, Problem, ResourcesSection,
    RestartSection, Scalar, UnitFile,
};
use super::{
    hash, valid_name, Container, Mount, MountKind, Network, NetworkMode, Policy, PullPolicy,
    Resources, Restart, Source, Unit, User,
};

/// Docker's smallest memory limit: below it a container cannot even start.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;
/// The largest memory limit: the runtime spec's field is an i64, in which -1 means no limit.
pub const MAX_MEMORY: u64 = i64::MAX as u64;
/// The largest `cpus`.
pub const MAX_CPUS: f64 = 1024.0;
/// The smallest `cpus`: the kernel's CFS quota floor (1ms) over its default 100ms period.
pub const MIN_CPUS: f64 = 0.01;
/// The largest uid or gid; u32::MAX is the kernel's "no id" (-1).
const MAX_ID: u32 = u32::MAX - 1;
/// The longest network name: it ends up in CNI config names and file names.
pub const MAX_NETWORK_NAME: usize = 64;

/// Default `stop_timeout`.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default first restart delay (Docker's).
pub const DEFAULT_DELAY: Duration = Duration::from_millis(100);
/// Default restart delay cap (Docker's).
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);
/// Default run time that resets the backoff (Docker's).
pub const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(10);

/// Where a problem without a better place is reported: line 1, column 1.
const TOP: Range<usize> = 0..0;

/// Validates a raw unit named `name` loaded from `file`. The name itself is checked
/// by the caller, which also reports it when the text does not parse. `Err` may be
/// empty when a table is missing only because the raw stage could not read it.
pub fn validate(name: &str, file: &Path, raw: UnitFile) -> Result<Unit, Vec<Problem>> {
    let mut c = Checker::default();
    let (description, deps) = match raw.unit {
        Some(u) => {
            let u = u.into_inner();
            let deps = c.deps(u.after, u.requires, u.wants, name);
            (u.description, deps)
        }
        None => (None, Some(super::Deps::default())),
    };
    // `[network]` needs it: `container:` mode and a set hostname conflict.
    let hostname_span = raw
        .container
        .as_ref()
        .and_then(|c| c.get_ref().hostname.as_ref().map(Spanned::span));
    // `sysctls` needs it: `net.*` would change the host's network.
    let host_network = raw
        .network
        .as_ref()
        .and_then(|n| n.get_ref().mode.as_ref())
        .is_some_and(|m| m.get_ref() == "host");
    let container = match raw.container {
        Some(section) => c.container(section, name, file, host_network),
        None => {
            if !raw.broken.contains(&"container") {
                c.err(TOP, "missing required table [container]");
            }
            None
        }
    };
    let mounts = c.mounts(raw.mounts);
    let network = match raw.network {
        Some(section) => c.network(section.into_inner(), name, hostname_span),
        None => Some(Network::default()),
    };
    let resources = match raw.resources {
        Some(section) => c.resources(section.into_inner()),
        None => Some(Resources::default()),
    };
    let restart = match raw.restart {
        Some(section) => c.restart(section.into_inner()),
        None => Some(Restart {
            policy: Policy::No,
            delay: DEFAULT_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            reset_after: DEFAULT_RESET_AFTER,
        }),
    };
    let health = match raw.health {
        Some(section) => c.health(section.into_inner()),
        None => Some(super::Health::default()),
    };
    let autostart = raw
        .install
        .and_then(|i| i.into_inner().autostart)
        .unwrap_or(true);
    let logs = super::logs::validate(raw.logs, &mut c.problems);
    let security = super::security::validate(raw.security, &mut c.problems);
    let secrets = super::secrets::validate(raw.secrets, file, &mut c.problems);
    let update = super::update::validate(
        raw.update,
        container.as_ref().map(|c| &c.source),
        &mut c.problems,
    );

    match (container, mounts, network, resources, restart, deps, health) {
        (
            Some(container),
            Some(mounts),
            Some(network),
            Some(resources),
            Some(restart),
            Some(deps),
            Some(health),
        ) if c.problems.is_empty() => {
            let spec_hash = hash::spec_hash(
                &container, &mounts, &network, &resources, &security, &secrets,
            );
            Ok(Unit {
                name: name.to_owned(),
                file: file.to_path_buf(),
                sources: vec![file.to_path_buf()],
                description,
                deps,
                container,
                mounts,
                network,
                resources,
                restart,
                health,
                security,
                secrets,
                secret_digest: None,
                autostart,
                logs,
                update,
                spec_hash,
            })
        }
        // Possibly empty: a table the raw stage could not read is already reported there.
        _ => Err(c.problems),
    }
}

/// The hostname a unit gets when it sets none: its name as an RFC 1123 label.
pub fn default_hostname(name: &str) -> String {
    let label: String = name
        .chars()
        .map(|ch| match ch {
            '_' | '.' | '@' => '-',
            other => other.to_ascii_lowercase(),
        })
        .collect();
    // A trailing '-' is not allowed in a label; the name's first character is
    // alphanumeric, so something is always left.
    label.trim_end_matches('-').to_owned()
}

/// Why `host` is not a valid RFC 1123 hostname, if it is not.
pub fn check_hostname(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("must not be empty".into());
    }
    if host.len() > 253 {
        return Err(format!("longer than 253 characters ({})", host.len()));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading or trailing dot)".into());
        }
        if label.len() > 63 {
            return Err(format!("label longer than 63 characters ({})", label.len()));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("labels may contain only letters, digits and '-'".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("labels must not start or end with '-'".into());
        }
    }
    Ok(())
}

/// Why `name` is not a valid network name (`[a-z0-9][a-z0-9_.-]*`, at most 64), if it is not.
pub fn check_network_name(name: &str) -> Result<(), String> {
    let Some(first) = name.bytes().next() else {
        return Err("must not be empty".into());
    };
    if name.len() > MAX_NETWORK_NAME {
        return Err(format!(
            "longer than {MAX_NETWORK_NAME} characters ({})",
            name.len()
        ));
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !allowed(first) {
        return Err("must start with a lowercase letter or a digit".into());
    }
    if !name
        .bytes()
        .all(|b| allowed(b) || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err("may contain only lowercase letters, digits, '_', '.' and '-'".into());
    }
    Ok(())
}

/// Parses "uid", "uid:gid" or a bare integer uid; gid defaults to 0.
pub fn parse_user(value: &Scalar) -> Result<User, String> {
    let shape =
        || format!("invalid user {value}: expected uid or uid:gid, numeric (e.g. \"1000:1000\")");
    let range = || format!("invalid user {value}: ids must be at most {MAX_ID}");
    let text = match value {
        Scalar::Int(n) => {
            let uid = u32::try_from(*n).map_err(|_| if *n < 0 { shape() } else { range() })?;
            return if uid > MAX_ID {
                Err(range())
            } else {
                Ok(User { uid, gid: 0 })
            };
        }
        Scalar::Text(text) => text,
    };
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() > 2 {
        return Err(shape());
    }
    let mut ids = Vec::with_capacity(2);
    for part in &parts {
        if part.is_empty() {
            return Err(shape());
        }
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            let looks_like_name = part
                .chars()
                .next()
                .is_some_and(|ch| ch.is_alphabetic() || ch == '_');
            return Err(if looks_like_name {
                format!("user {value}: user names are not supported yet; use uid[:gid]")
            } else {
                shape()
            });
        }
        let id: u32 = part.parse().map_err(|_| range())?;
        if id > MAX_ID {
            return Err(range());
        }
        ids.push(id);
    }
    match ids[..] {
        [uid] => Ok(User { uid, gid: 0 }),
        [uid, gid] => Ok(User { uid, gid }),
        _ => Err(shape()),
    }
}

/// A `[[mount]]` key: its name, where it was written, the types it applies to, and how the
/// message names them.
type MountKey<'a> = (&'a str, Option<Range<usize>>, &'a [MountKind], &'a str);

/// Collects problems while building the validated values.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.problems.push(Problem::new(span, message));
    }

    /// Records a problem for a required key that is absent.
    fn missing<T>(
        &mut self,
        value: Option<T>,
        key: &str,
        table: &str,
        at: &Range<usize>,
    ) -> Option<T> {
        if value.is_none() {
            self.err(
                at.clone(),
                format!("missing required key `{key}` in {table}"),
            );
        }
        value
    }

    /// An absolute path without NUL bytes; `what` names it in messages.
    fn absolute(&mut self, value: &Spanned<String>, what: &str) -> bool {
        let path = value.get_ref();
        if path.contains('\0') {
            self.err(value.span(), format!("{what} must not contain a NUL byte"));
            false
        } else if !path.starts_with('/') {
            self.err(value.span(), format!("{what} must be an absolute path"));
            false
        } else {
            true
        }
    }

    fn container(
        &mut self,
        section: Spanned<ContainerSection>,
        name: &str,
        file: &Path,
        host_network: bool,
    ) -> Option<Container> {
        let header = section.span();
        let s = section.into_inner();
        const T: &str = "[container]";

        // Judged by the keys written, so a bad value does not hide a missing `command`.
        let rootfs_key = s.rootfs.is_some() && s.image.is_none();
        let image_key = s.image.is_some() && s.rootfs.is_none();
        let source = match (s.rootfs, s.image) {
            (Some(_), Some(image)) => {
                self.err(
                    image.span(),
                    "`rootfs` and `image` are exclusive: a unit runs a plain root filesystem or an image, not both",
                );
                None
            }
            (None, None) => {
                self.err(
                    header.clone(),
                    format!("missing required key `rootfs` or `image` in {T}"),
                );
                None
            }
            (Some(r), None) => self.rootfs(r).map(Source::Rootfs),
            (None, Some(image)) => match crate::image::reference::parse(image.get_ref()) {
                Ok(reference) => Some(reference.whole()),
                Err(e) => {
                    self.err(image.span(), e.to_string());
                    None
                }
            }
            .map(|reference| Source::Image {
                reference,
                pull: PullPolicy::Missing,
            }),
        };
        let (is_image, is_rootfs) = (image_key, rootfs_key);

        let pull = match s.pull {
            None => Some(PullPolicy::Missing),
            Some(p) if is_rootfs => {
                self.err(p.span(), "`pull` applies only to units with an `image`");
                None
            }
            Some(p) => match p.get_ref().as_str() {
                "missing" => Some(PullPolicy::Missing),
                "always" => Some(PullPolicy::Always),
                "never" => Some(PullPolicy::Never),
                other => {
                    self.err(
                        p.span(),
                        format!(
                            "invalid pull policy {other:?}: expected \"missing\", \"always\" or \"never\""
                        ),
                    );
                    None
                }
            },
        };
        let source = match (source, pull) {
            (Some(Source::Image { reference, .. }), Some(pull)) => {
                Some(Source::Image { reference, pull })
            }
            (Some(Source::Rootfs(r)), Some(_)) => Some(Source::Rootfs(r)),
            _ => None,
        };

        let entrypoint = match s.entrypoint {
            None => Some(None),
            Some(e) if is_rootfs => {
                self.err(
                    e.span(),
                    "`entrypoint` applies only to units with an `image`; put the whole argv in `command`",
                );
                None
            }
            Some(e) => self.args(e, "entrypoint", true).map(Some),
        };

        let command = match s.command {
            Some(c) => self.args(c, "command", false).map(Some),
            // An image supplies its own Cmd.
            None if is_image => Some(None),
            None => {
                if is_rootfs {
                    self.err(
                        header.clone(),
                        format!("missing required key `command` in {T}"),
                    );
                }
                None
            }
        };

        let env = self.env(s.env.unwrap_or_default());

        let workdir = match s.workdir {
            Some(w) => self.absolute(&w, "workdir").then(|| Some(w.into_inner())),
            None => Some(None),
        };

        let user = match s.user {
            Some(u) => parse_user(u.get_ref())
                .map_err(|e| self.err(u.span(), e))
                .ok()
                .map(Some),
            None => Some(None),
        };

        let hostname = match s.hostname {
            Some(h) => match check_hostname(h.get_ref()) {
                Ok(()) => Some(h.into_inner()),
                Err(reason) => {
                    self.err(
                        h.span(),
                        format!("invalid hostname {:?}: {reason}", h.get_ref()),
                    );
                    None
                }
            },
            None => Some(default_hostname(name)),
        };

        let stop_signal = match s.stop_signal {
            Some(sig) => self.signal(&sig, "signal", |_| Ok(())).map(Some),
            // An image unit leaves it to the image's StopSignal (Docker's rule), known only at start.
            None if is_image => Some(None),
            None => Some(Some("SIGTERM".to_owned())),
        };

        let stop_timeout = self.duration(s.stop_timeout.as_ref(), DEFAULT_STOP_TIMEOUT);
        // Delivered, never a stop: SIGKILL and SIGSTOP cannot be what a reload asks for.
        let reload_signal = match s.reload_signal {
            None => Some(None),
            Some(sig) => self
                .signal(&sig, "reload_signal", |name| match name {
                    "SIGKILL" | "SIGSTOP" => {
                        Err(format!("{name} cannot be caught, so it reloads nothing"))
                    }
                    _ => Ok(()),
                })
                .map(Some),
        };

        let before = self.problems.len();
        let p = &mut self.problems;
        let labels = knobs::labels(s.labels, p);
        let mut env_files = Vec::new();
        for e in s.env_file.map(Spanned::into_inner).unwrap_or_default() {
            if e.get_ref().is_empty() || e.get_ref().contains('\0') {
                p.push(Problem::new(
                    e.span(),
                    "an env_file path must not be empty or contain a NUL byte",
                ));
            } else {
                env_files.push(super::envfile::resolve(file, e.get_ref()));
            }
        }
        let shm_size = knobs::positive_size(s.shm_size, "shm_size", p);
        let ulimits = knobs::ulimits(s.ulimits, p);
        let sysctls = knobs::sysctls(s.sysctls, host_network, p);
        let (devices, cdi_devices) = knobs::devices(s.devices, p);
        if self.problems.len() > before {
            return None;
        }

        Some(Container {
            source: source?,
            entrypoint: entrypoint?,
            command: command?,
            env: env?,
            workdir: workdir?,
            user: user?,
            hostname: hostname?,
            stop_signal: stop_signal?,
            reload_signal: reload_signal?,
            stop_timeout: stop_timeout?,
            env_files,
            labels,
            read_only: s.read_only.is_some_and(Spanned::into_inner),
            init: s.init.is_some_and(Spanned::into_inner),
            shm_size,
            ulimits,
            sysctls,
            devices,
            cdi_devices,
        })
    }

    /// A root filesystem directory: absolute, usable as an overlay lowerdir.
    fn rootfs(&mut self, r: Spanned<String>) -> Option<PathBuf> {
        if !self.absolute(&r, "rootfs") {
            return None;
        }
        if r.get_ref().contains([',', ':']) {
            self.err(
                r.span(),
                "rootfs must not contain ',' or ':' (it becomes an overlay lowerdir)",
            );
            return None;
        }
        Some(PathBuf::from(r.into_inner()))
    }

    /// An argv list (`command` or `entrypoint`); only `entrypoint` may be empty.
    fn args(
        &mut self,
        list: Spanned<Vec<Spanned<String>>>,
        key: &str,
        may_be_empty: bool,
    ) -> Option<Vec<String>> {
        let span = list.span();
        let args = list.into_inner();
        let mut ok = true;
        match args.first() {
            None if may_be_empty => {}
            None => {
                self.err(span, format!("{key} must not be empty"));
                ok = false;
            }
            Some(first) if first.get_ref().is_empty() => {
                self.err(first.span(), format!("{key}[0] must not be empty"));
                ok = false;
            }
            Some(_) => {}
        }
        for (i, arg) in args.iter().enumerate() {
            if arg.get_ref().contains('\0') {
                self.err(
                    arg.span(),
                    format!("{key}[{i}] must not contain a NUL byte"),
                );
                ok = false;
            }
        }
        ok.then(|| args.into_iter().map(Spanned::into_inner).collect())
    }

    fn env(
        &mut self,
        env: BTreeMap<Spanned<String>, Spanned<String>>,
    ) -> Option<BTreeMap<String, String>> {
        let mut ok = true;
        let mut out = BTreeMap::new();
        for (key, value) in env {
            let k = key.get_ref();
            let problem = if k.is_empty() {
                Some("env key must not be empty".to_owned())
            } else if k.contains('=') {
                Some(format!("env key {k:?} must not contain '='"))
            } else if k.contains('\0') {
                Some(format!("env key {k:?} must not contain a NUL byte"))
            } else {
                None
            };
            if let Some(message) = problem {
                self.err(key.span(), message);
                ok = false;
            }
            if value.get_ref().contains('\0') {
                self.err(
                    value.span(),
                    format!("env value of {k:?} must not contain a NUL byte"),
                );
                ok = false;
            }
            out.insert(key.into_inner(), value.into_inner());
        }
        ok.then_some(out)
    }

    fn mounts(&mut self, mounts: Vec<Spanned<MountSection>>) -> Option<Vec<Mount>> {
        let mut ok = true;
        let mut out = Vec::with_capacity(mounts.len());
        // Normalized targets seen so far: two mounts on one target shadow each other.
        let mut targets: Vec<PathBuf> = Vec::new();
        for section in mounts {
            let header = section.span();
            let m = section.into_inner();
            const T: &str = "[[mount]]";
            let before = self.problems.len();
            let kind = match m.kind.as_ref().map(|k| k.get_ref().as_str()) {
                None | Some("bind") => Some(MountKind::Bind),
                Some("tmpfs") => Some(MountKind::Tmpfs),
                Some("volume") => Some(MountKind::Volume),
                Some(other) => {
                    self.err(
                        m.kind.as_ref().map(Spanned::span).unwrap_or(header.clone()),
                        format!("invalid mount type {other:?}: expected \"bind\", \"volume\" or \"tmpfs\""),
                    );
                    None
                }
            };
            // Keys of another type are refused rather than ignored: each key, where it was
            // written, the types it applies to, and how the message names them.
            use MountKind::{Bind, Tmpfs, Volume};
            let keys: [MountKey; 4] = [
                (
                    "source",
                    m.source.as_ref().map(Spanned::span),
                    &[Bind, Volume],
                    "bind\" or \"volume",
                ),
                (
                    "create",
                    m.create.as_ref().map(Spanned::span),
                    &[Bind],
                    "bind",
                ),
                (
                    "size",
                    m.size.as_ref().map(Spanned::span),
                    &[Tmpfs],
                    "tmpfs",
                ),
                (
                    "mode",
                    m.mode.as_ref().map(Spanned::span),
                    &[Tmpfs],
                    "tmpfs",
                ),
            ];
            if let Some(kind) = kind {
                for (key, span, types, named) in keys {
                    if let (Some(span), false) = (span, types.contains(&kind)) {
                        self.err(
                            span,
                            format!("`{key}` applies only to `type = \"{named}\"` mounts"),
                        );
                    }
                }
            }
            let source = match kind {
                Some(MountKind::Tmpfs) => Some(PathBuf::new()),
                // The type is already reported; its source means something else.
                None => None,
                Some(MountKind::Volume) => {
                    self.missing(m.source, "source", T, &header).and_then(|s| {
                        if crate::volume::valid_name(s.get_ref()) {
                            Some(PathBuf::from(s.into_inner()))
                        } else {
                            self.err(
                                s.span(),
                                format!(
                                    "invalid volume name {:?}: letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64",
                                    s.get_ref()
                                ),
                            );
                            None
                        }
                    })
                }
                Some(MountKind::Bind) => {
                    self.missing(m.source, "source", T, &header).and_then(|s| {
                        self.absolute(&s, "mount source")
                            .then(|| PathBuf::from(s.into_inner()))
                    })
                }
            };
            let target = self
                .missing(m.target, "target", T, &header)
                .and_then(|t| self.mount_target(t, &mut targets));
            let size = knobs::positive_size(m.size, "size", &mut self.problems);
            let mode = knobs::mode(m.mode, 0o7777, "\"1777\" or 0o755", &mut self.problems);
            match (kind, source, target) {
                (Some(kind), Some(source), Some(target)) if self.problems.len() == before => out
                    .push(Mount {
                        kind,
                        source,
                        target,
                        readonly: m.readonly.unwrap_or(false),
                        create: m.create.is_some_and(Spanned::into_inner),
                        size,
                        mode,
                    }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn mount_target(&mut self, target: Spanned<String>, seen: &mut Vec<PathBuf>) -> Option<String> {
        if !self.absolute(&target, "mount target") {
            return None;
        }
        let path = Path::new(target.get_ref());
        if path.components().any(|c| c == Component::ParentDir) {
            self.err(
                target.span(),
                "mount target must not contain a \"..\" component",
            );
            return None;
        }
        // Drops "." and repeated or trailing slashes, so "/data/" and "/data" compare equal.
        let normal: PathBuf = path
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect();
        if normal == Path::new("/") {
            self.err(target.span(), "mount target must not be \"/\"");
            return None;
        }
        if seen.contains(&normal) {
            self.err(
                target.span(),
                format!(
                    "mount target {:?} is already used by an earlier [[mount]]",
                    target.get_ref()
                ),
            );
            return None;
        }
        seen.push(normal);
        Some(target.into_inner())
    }

    /// `[network]`; `hostname` is where `[container] hostname` was set, if it was.
    fn network(
        &mut self,
        section: NetworkSection,
        name: &str,
        hostname: Option<Range<usize>>,
    ) -> Option<Network> {
        let written = section.mode.is_some();
        // None when the mode is invalid (already reported): checks that depend on it are skipped.
        let mode = match section.mode {
            None => Some(NetworkMode::default_mode()),
            Some(m) => self.network_mode(m, name),
        };
        let mut ok = mode.is_some();
        // Why `networks` and `ports` are refused, if they are: they need a bridge.
        let not_bridge = match &mode {
            Some(NetworkMode::Bridge) | None => None,
            Some(m) if written => Some(format!("this unit's mode is \"{m}\"")),
            Some(m) => Some(format!("the default mode is \"{m}\"")),
        };

        if let (Some(NetworkMode::Container(target)), Some(span)) = (&mode, hostname) {
            // Docker refuses --hostname with --network container: (the hostname is the target's).
            self.err(
                span,
                format!(
                    "hostname cannot be set with network mode \"container:{target}\": the container takes {target}'s hostname"
                ),
            );
            ok = false;
        }

        let is_bridge = mode == Some(NetworkMode::Bridge);
        let networks = section
            .networks
            .map(|list| self.networks(list, is_bridge, not_bridge.as_deref()));
        let ports = match section.ports {
            Some(list) => self.ports(list, not_bridge.as_deref()),
            None => Some(Vec::new()),
        };

        let resolver_span = [
            &section.dns,
            &section.dns_search,
            &section.dns_options,
            &section.extra_hosts,
        ]
        .into_iter()
        .flatten()
        .map(Spanned::span)
        .next();
        let before = self.problems.len();
        let names = knobs::names(
            section.dns,
            section.dns_search,
            section.dns_options,
            section.extra_hosts,
            &mut self.problems,
        );
        ok &= self.problems.len() == before;
        let no_files = match &mode {
            Some(NetworkMode::Container(target)) => Some(format!(
                "network mode \"container:{target}\": the container shares {target}'s files"
            )),
            Some(NetworkMode::None) => {
                Some("network mode \"none\": the container has no network to name".to_owned())
            }
            _ => None,
        };
        if let (Some(why), Some(span)) = (no_files, resolver_span) {
            // Docker refuses --dns and --add-host with --network container: likewise.
            self.err(
                span,
                format!("dns and extra_hosts cannot be set with {why}"),
            );
            ok = false;
        }

        let mut network = Network::with_mode(mode?);
        // With another mode than bridge, only an empty list gets here.
        if let Some(names) = networks {
            network.networks = names?;
            network.networks_written = true;
        }
        network.ports = ports?;
        network.names = names;
        ok.then_some(network)
    }

    /// `[unit] after`, `requires`, `wants`: unit names, not this one, none twice in a list.
    fn deps(
        &mut self,
        after: Option<Spanned<Vec<Spanned<String>>>>,
        requires: Option<Spanned<Vec<Spanned<String>>>>,
        wants: Option<Spanned<Vec<Spanned<String>>>>,
        name: &str,
    ) -> Option<super::Deps> {
        let mut ok = true;
        let mut list = |key: &str, list: Option<Spanned<Vec<Spanned<String>>>>| {
            let mut out: Vec<String> = Vec::new();
            for n in list.map(Spanned::into_inner).unwrap_or_default() {
                let text = n.get_ref();
                let message = if !valid_name(text) {
                    format!("{key}: {text:?} is not a unit name (1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit)")
                } else if text == name {
                    format!("{key}: a unit cannot depend on itself")
                } else if out.contains(text) {
                    format!("{key}: {text:?} is listed twice")
                } else {
                    out.push(text.clone());
                    continue;
                };
                self.err(n.span(), message);
                ok = false;
            }
            out
        };
        let deps = super::Deps {
            after: list("after", after),
            requires: list("requires", requires),
            wants: list("wants", wants),
        };
        ok.then_some(deps)
    }

    fn network_mode(&mut self, mode: Spanned<String>, name: &str) -> Option<NetworkMode> {
        let message = match mode.get_ref().as_str() {
            "none" => return Some(NetworkMode::None),
            "host" => return Some(NetworkMode::Host),
            "bridge" => return Some(NetworkMode::Bridge),
            other => match other.strip_prefix("container:") {
                Some("") => format!(
                    "network mode {other:?} needs a unit name, e.g. \"container:db\""
                ),
                Some(target) if !valid_name(target) => format!(
                    "network mode {other:?}: {target:?} is not a unit name (1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit)"
                ),
                Some(target) if target == name => format!(
                    "network mode {other:?} names this unit itself; name the unit whose network to join"
                ),
                Some(target) => return Some(NetworkMode::Container(target.to_owned())),
                None => format!(
                    "unknown network mode {other:?}, expected \"none\", \"host\", \"bridge\" or \"container:NAME\""
                ),
            },
        };
        self.err(mode.span(), message);
        None
    }

    /// `networks`, when set. An empty list asks for nothing, so only a bridge unit is refused
    /// one; `not_bridge` says why a non-empty list is refused, if it is.
    fn networks(
        &mut self,
        list: Spanned<Vec<Spanned<String>>>,
        is_bridge: bool,
        not_bridge: Option<&str>,
    ) -> Option<Vec<String>> {
        let span = list.span();
        let names = list.into_inner();
        let mut ok = true;
        if names.is_empty() {
            if is_bridge {
                self.err(
                    span,
                    "networks must not be empty: a bridge unit joins at least one network (mode = \"none\" has none)",
                );
                ok = false;
            }
        } else if let Some(why) = not_bridge {
            self.err(span, format!("networks need mode = \"bridge\" ({why})"));
            ok = false;
        }
        let mut seen: Vec<&str> = Vec::with_capacity(names.len());
        for n in &names {
            let text = n.get_ref().as_str();
            if let Err(reason) = check_network_name(text) {
                self.err(n.span(), format!("invalid network name {text:?}: {reason}"));
                ok = false;
            } else if seen.contains(&text) {
                self.err(n.span(), format!("network {text:?} is listed twice"));
                ok = false;
            }
            seen.push(text);
        }
        ok.then(|| names.into_iter().map(Spanned::into_inner).collect())
    }

    /// `ports`, each in Docker's `-p` syntax; no host port bound twice.
    fn ports(
        &mut self,
        list: Spanned<Vec<Spanned<String>>>,
        not_bridge: Option<&str>,
    ) -> Option<Vec<PortMapping>> {
        let mut ok = true;
        // An empty list publishes nothing, whatever the mode. Docker discards -p with
        // --network host and refuses it with container:; here both are errors, never silence.
        if let (Some(why), false) = (not_bridge, list.get_ref().is_empty()) {
            self.err(list.span(), format!("ports need mode = \"bridge\" ({why})"));
            ok = false;
        }
        let mut seen: Vec<(PortMapping, String)> = Vec::new();
        for entry in list.into_inner() {
            let text = entry.get_ref();
            let mapping = match ports::parse(text) {
                Ok(m) => m,
                Err(reason) => {
                    self.err(
                        entry.span(),
                        format!("invalid port mapping {text:?}: {reason}"),
                    );
                    ok = false;
                    continue;
                }
            };
            let clash = seen.iter().find_map(|(earlier, earlier_text)| {
                mapping
                    .collides_with(earlier)
                    .map(|port| (port, earlier_text))
            });
            if let Some((port, earlier_text)) = clash {
                self.err(
                    entry.span(),
                    format!(
                        "host port {port}/{} is published twice: by {earlier_text:?} and by {text:?}",
                        mapping.proto
                    ),
                );
                ok = false;
            }
            seen.push((mapping, entry.into_inner()));
        }
        ok.then(|| seen.into_iter().map(|(m, _)| m).collect())
    }

    fn resources(&mut self, section: ResourcesSection) -> Option<Resources> {
        let mut ok = true;
        let memory = section.memory.and_then(|m| {
            match m.get_ref().bytes() {
                Err(reason) => {
                    self.err(m.span(), format!("invalid size {}: {reason}", m.get_ref()))
                }
                Ok(b) if b < MIN_MEMORY => self.err(
                    m.span(),
                    format!(
                        "memory {} is below the minimum of {}",
                        m.get_ref(),
                        format_size(MIN_MEMORY)
                    ),
                ),
                Ok(b) if b > MAX_MEMORY => self.err(
                    m.span(),
                    format!(
                        "memory {} is above the maximum of {MAX_MEMORY} bytes",
                        m.get_ref()
                    ),
                ),
                Ok(b) => return Some(b),
            }
            ok = false;
            None
        });
        let cpus = section.cpus.and_then(|c| {
            let v = c.get_ref().0;
            // Written so that NaN (TOML's `nan`) fails too.
            if (MIN_CPUS..=MAX_CPUS).contains(&v) {
                Some(v)
            } else {
                self.err(
                    c.span(),
                    format!("cpus must be between {MIN_CPUS} and {MAX_CPUS} (got {v})"),
                );
                ok = false;
                None
            }
        });
        let pids = section.pids.and_then(|p| {
            let v = p.get_ref().0;
            if v >= 1 {
                Some(v)
            } else {
                self.err(p.span(), format!("pids must be at least 1 (got {v})"));
                ok = false;
                None
            }
        });
        ok.then_some(Resources { memory, cpus, pids })
    }

    fn restart(&mut self, section: RestartSection) -> Option<Restart> {
        let mut ok = true;
        let name = section
            .policy
            .as_ref()
            .map_or("no", |p| p.get_ref().as_str());
        let known = matches!(name, "no" | "on-failure" | "always" | "unless-stopped");
        if !known {
            if let Some(p) = &section.policy {
                self.err(
                    p.span(),
                    format!(
                        "unknown restart policy {name:?}, expected one of \"no\", \"on-failure\", \"always\", \"unless-stopped\""
                    ),
                );
            }
            ok = false;
        }
        let mut max_retries = None;
        if let Some(m) = &section.max_retries {
            let v = m.get_ref().0;
            if known && name != "on-failure" {
                self.err(
                    m.span(),
                    "max_retries is only allowed with policy \"on-failure\"",
                );
                ok = false;
            } else if v < 0 {
                self.err(
                    m.span(),
                    format!("max_retries must be at least 0 (got {v})"),
                );
                ok = false;
            } else {
                match u32::try_from(v) {
                    Ok(n) => max_retries = Some(n),
                    Err(_) => {
                        self.err(
                            m.span(),
                            format!("max_retries must be at most {} (got {v})", u32::MAX),
                        );
                        ok = false;
                    }
                }
            }
        }
        let policy = match name {
            "on-failure" => Policy::OnFailure { max_retries },
            "always" => Policy::Always,
            "unless-stopped" => Policy::UnlessStopped,
            _ => Policy::No,
        };

        let delay = self.duration(section.delay.as_ref(), DEFAULT_DELAY);
        let max_delay = self.duration(section.max_delay.as_ref(), DEFAULT_MAX_DELAY);
        let reset_after = self.duration(section.reset_after.as_ref(), DEFAULT_RESET_AFTER);
        if let (Some(d), Some(m)) = (delay, max_delay) {
            if m < d {
                // Point at what the operator wrote: max_delay if set, else the delay above the default cap.
                let (at, message) = match (&section.max_delay, &section.delay) {
                    (Some(set), _) => (
                        set.span(),
                        format!(
                            "max_delay ({}) must not be less than delay ({})",
                            format_duration(m),
                            format_duration(d)
                        ),
                    ),
                    (None, delay) => (
                        delay.as_ref().map_or(TOP, |s| s.span()),
                        format!(
                            "delay ({}) must not be more than max_delay (default {}); set max_delay too",
                            format_duration(d),
                            format_duration(m)
                        ),
                    ),
                };
                self.err(at, message);
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        Some(Restart {
            policy,
            delay: delay?,
            max_delay: max_delay?,
            reset_after: reset_after?,
        })
    }

    /// `[health]`.
    fn health(&mut self, section: raw::HealthSection) -> Option<super::Health> {
        let mut ok = true;
        let disable = section.disable.as_ref().is_some_and(|d| *d.get_ref());
        let (cmd, net) =
            self.probe_kind(section.cmd, &section.http, &section.tcp, disable, &mut ok);
        let startup = section
            .startup
            .and_then(|st| self.startup(st.into_inner(), disable, &mut ok));
        let mut positive = |c: &mut Self, v: Option<&Spanned<Scalar>>, key: &str| {
            let d = v.and_then(|v| c.duration(Some(v), Duration::ZERO));
            match (v, d) {
                (Some(_), None) => {
                    ok = false;
                    None
                }
                (Some(v), Some(d)) if d.is_zero() && key != "start_period" => {
                    c.err(v.span(), format!("{key} must be more than 0"));
                    ok = false;
                    None
                }
                (_, d) => d,
            }
        };
        let interval = positive(self, section.interval.as_ref(), "interval");
        let timeout = positive(self, section.timeout.as_ref(), "timeout");
        let start_period = positive(self, section.start_period.as_ref(), "start_period");
        let start_interval = positive(self, section.start_interval.as_ref(), "start_interval");
        let retries = match &section.retries {
            None => None,
            Some(r) => match u32::try_from(r.get_ref().0) {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    self.err(
                        r.span(),
                        format!(
                            "retries must be from 1 to {} (got {})",
                            u32::MAX,
                            r.get_ref().0
                        ),
                    );
                    ok = false;
                    None
                }
            },
        };
        let on_unhealthy = match section
            .on_unhealthy
            .as_ref()
            .map(|o| (o.get_ref().as_str(), o.span()))
        {
            None | Some(("none", _)) => super::OnUnhealthy::None,
            Some(("restart", _)) => super::OnUnhealthy::Restart,
            Some(("stop", _)) => super::OnUnhealthy::Stop,
            Some((other, span)) => {
                self.err(
                    span,
                    format!("unknown on_unhealthy {other:?}, expected \"none\", \"restart\" or \"stop\""),
                );
                ok = false;
                super::OnUnhealthy::None
            }
        };
        ok.then_some(super::Health {
            disable,
            cmd,
            net,
            startup,
            interval,
            timeout,
            retries,
            start_period,
            start_interval,
            on_unhealthy,
        })
    }

    /// A probe's kind: `cmd`, or `http` or `tcp` (one at a time, none with `disable`).
    /// Problems are reported and clear `ok`.
    fn probe_kind(
        &mut self,
        cmd: Option<Spanned<raw::HealthCmd>>,
        http: &Option<Spanned<String>>,
        tcp: &Option<Spanned<String>>,
        disable: bool,
        ok: &mut bool,
    ) -> (Option<Vec<String>>, Option<super::NetProbe>) {
        let cmd = match cmd {
            None => None,
            Some(cmd) => {
                let span = cmd.span();
                let argv = match cmd.into_inner() {
                    raw::HealthCmd::Shell(line) if line.trim().is_empty() => Err(
                        "cmd must not be empty (to turn the image's check off, set disable = true)",
                    ),
                    raw::HealthCmd::Shell(line) => Ok(vec!["/bin/sh".into(), "-c".into(), line]),
                    raw::HealthCmd::Exec(argv) if argv.first().is_none_or(|a| a.is_empty()) => {
                        Err("cmd must start with a program")
                    }
                    raw::HealthCmd::Exec(argv) => Ok(argv),
                };
                match argv {
                    Ok(argv) if disable => {
                        self.err(span, "cmd and disable = true contradict each other");
                        *ok = false;
                        Some(argv)
                    }
                    Ok(argv) => Some(argv),
                    Err(message) => {
                        self.err(span, message);
                        *ok = false;
                        None
                    }
                }
            }
        };
        let mut net = None;
        for (value, key, parse) in [
            (
                http,
                "http",
                super::parse_http_probe as fn(&str) -> Result<_, _>,
            ),
            (tcp, "tcp", super::parse_tcp_probe),
        ] {
            let Some(v) = value else { continue };
            match parse(v.get_ref()) {
                Err(reason) => {
                    self.err(
                        v.span(),
                        format!("invalid {key} {:?}: {reason}", v.get_ref()),
                    );
                    *ok = false;
                }
                Ok(_) if cmd.is_some() || net.is_some() => {
                    self.err(v.span(), "one probe at a time: cmd, http or tcp");
                    *ok = false;
                }
                Ok(_) if disable => {
                    self.err(
                        v.span(),
                        format!("{key} and disable = true contradict each other"),
                    );
                    *ok = false;
                }
                Ok(p) => net = Some(p),
            }
        }
        (cmd, net)
    }

    /// `[health.startup]`: Kubernetes' startup probe.
    fn startup(
        &mut self,
        st: raw::StartupSection,
        disable: bool,
        ok: &mut bool,
    ) -> Option<super::Startup> {
        let (cmd, net) = self.probe_kind(st.cmd, &st.http, &st.tcp, disable, ok);
        if cmd.is_none() && net.is_none() {
            self.err(TOP, "[health.startup] needs a probe: cmd, http or tcp");
            *ok = false;
            return None;
        }
        let mut positive = |c: &mut Self, v: Option<&Spanned<Scalar>>, key: &str, d: Duration| {
            let got = c.duration(v, d);
            match (v, got) {
                (Some(v), Some(d)) if d.is_zero() => {
                    c.err(v.span(), format!("startup {key} must be more than 0"));
                    *ok = false;
                    None
                }
                (_, None) => {
                    *ok = false;
                    None
                }
                (_, d) => d,
            }
        };
        let interval = positive(
            self,
            st.interval.as_ref(),
            "interval",
            super::DEFAULT_STARTUP_INTERVAL,
        )?;
        let timeout = positive(
            self,
            st.timeout.as_ref(),
            "timeout",
            super::DEFAULT_STARTUP_TIMEOUT,
        )?;
        let retries = match &st.retries {
            None => super::DEFAULT_STARTUP_RETRIES,
            Some(r) => match u32::try_from(r.get_ref().0) {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.err(
                        r.span(),
                        format!("startup retries must be at least 1 (got {})", r.get_ref().0),
                    );
                    *ok = false;
                    return None;
                }
            },
        };
        Some(super::Startup {
            cmd,
            net,
            interval,
            timeout,
            retries,
        })
    }

    /// A signal key (a name or a number), normalized (`"SIGTERM"`), or None with the problem
    /// reported as "invalid {what} ...". `allowed` refuses a signal the key cannot take.
    fn signal(
        &mut self,
        sig: &Spanned<Scalar>,
        what: &str,
        allowed: impl Fn(&str) -> Result<(), String>,
    ) -> Option<String> {
        let parsed = match sig.get_ref() {
            Scalar::Text(t) => quantity::parse_signal(t),
            Scalar::Int(n) => i32::try_from(*n)
                .ok()
                .and_then(quantity::signal_from_number)
                .ok_or_else(|| quantity::SIGNAL_SHAPE.to_owned()),
        }
        .and_then(|s| allowed(s.as_str()).map(|()| s.as_str().to_owned()));
        match parsed {
            Ok(name) => Some(name),
            Err(reason) => {
                self.err(
                    sig.span(),
                    format!("invalid {what} {}: {reason}", sig.get_ref()),
                );
                None
            }
        }
    }

    /// A duration key, or its default when absent.
    fn duration(&mut self, value: Option<&Spanned<Scalar>>, default: Duration) -> Option<Duration> {
        let Some(value) = value else {
            return Some(default);
        };
        let parsed = match value.get_ref() {
            Scalar::Text(t) => quantity::parse_duration(t),
            Scalar::Int(_) => Err("a duration needs a unit, e.g. \"10s\"".to_owned()),
        };
        parsed
            .map_err(|reason| {
                self.err(
                    value.span(),
                    format!("invalid duration {}: {reason}", value.get_ref()),
                )
            })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input, and the (uid, gid) or message it gives.
    type UserCase = (Scalar, Result<(u32, u32), &'static str>);

    #[test]
    fn users() {
        let cases: &[UserCase] = &[
            (Scalar::Text("0".into()), Ok((0, 0))),
            (Scalar::Text("1000".into()), Ok((1000, 0))),
            (Scalar::Text("1000:100".into()), Ok((1000, 100))),
            (Scalar::Text("0:0".into()), Ok((0, 0))),
            (Scalar::Int(1000), Ok((1000, 0))),
            (Scalar::Text("4294967294".into()), Ok((u32::MAX - 1, 0))),
            (
                Scalar::Text("nobody".into()),
                Err("user \"nobody\": user names are not supported yet; use uid[:gid]"),
            ),
            (
                Scalar::Text("1000:users".into()),
                Err("user \"1000:users\": user names are not supported yet; use uid[:gid]"),
            ),
            (
                Scalar::Text("".into()),
                Err("invalid user \"\": expected uid or uid:gid, numeric (e.g. \"1000:1000\")"),
            ),
            (
                Scalar::Text("1000:".into()),
                Err(
                    "invalid user \"1000:\": expected uid or uid:gid, numeric (e.g. \"1000:1000\")",
                ),
            ),
            (
                Scalar::Text("1:2:3".into()),
                Err(
                    "invalid user \"1:2:3\": expected uid or uid:gid, numeric (e.g. \"1000:1000\")",
                ),
            ),
            (
                Scalar::Text("-1".into()),
                Err("invalid user \"-1\": expected uid or uid:gid, numeric (e.g. \"1000:1000\")"),
            ),
            (
                Scalar::Int(-1),
                Err("invalid user -1: expected uid or uid:gid, numeric (e.g. \"1000:1000\")"),
            ),
            (
                Scalar::Text("4294967295".into()),
                Err("invalid user \"4294967295\": ids must be at most 4294967294"),
            ),
            (
                Scalar::Text("99999999999".into()),
                Err("invalid user \"99999999999\": ids must be at most 4294967294"),
            ),
            (
                Scalar::Int(5_000_000_000),
                Err("invalid user 5000000000: ids must be at most 4294967294"),
            ),
        ];
        for (input, want) in cases {
            let got = parse_user(input).map(|u| (u.uid, u.gid));
            assert_eq!(
                got.as_ref().map_err(|e| e.as_str()),
                want.as_ref().map_err(|e| *e),
                "{input:?}"
            );
        }
    }

    #[test]
    fn hostnames() {
        let long_label = "a".repeat(64);
        let long_name = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
        ]
        .join(".");
        let cases: &[(&str, bool)] = &[
            ("box", true),
            ("web-1", true),
            ("Web1", true),
            ("1box", true),
            ("a.b.c", true),
            (&"a".repeat(63), true),
            ("", false),
            ("-box", false),
            ("box-", false),
            ("my_box", false),
            ("a..b", false),
            ("box.", false),
            ("bo x", false),
            ("bóx", false),
            (&long_label, false),
            (&long_name, false),
        ];
        for (host, ok) in cases {
            assert_eq!(check_hostname(host).is_ok(), *ok, "{host:?}");
        }
    }

    #[test]
    fn network_names() {
        let longest = "n".repeat(64);
        let too_long = "n".repeat(65);
        let cases: &[(&str, bool)] = &[
            ("rcd", true),
            ("backend", true),
            ("0net", true),
            ("a.b_c-9", true),
            (&longest, true),
            ("", false),
            ("Backend", false),
            ("-x", false),
            ("_x", false),
            (".x", false),
            ("a b", false),
            ("a/b", false),
            ("réseau", false),
            (&too_long, false),
        ];
        for (name, ok) in cases {
            assert_eq!(check_network_name(name).is_ok(), *ok, "{name:?}");
        }
    }

    #[test]
    fn default_hostnames() {
        let cases: &[(&str, &str)] = &[
            ("web", "web"),
            ("Web_Server", "web-server"),
            ("api.v2", "api-v2"),
            ("db-", "db"),
            ("x_.", "x"),
        ];
        for (name, want) in cases {
            assert_eq!(default_hostname(name), *want);
            assert!(check_hostname(&default_hostname(name)).is_ok());
        }
    }
}
