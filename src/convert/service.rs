//! One compose service (or a `docker run` command line read as one) in, one unit's TOML table
//! and the notes about what could not be expressed out.

use std::path::{Path, PathBuf};

use toml::{Table, Value as T};

use super::yaml::{Node, Pos, Value};
use super::{Note, NoteKind};

/// What a service may refer to outside itself.
pub struct Project<'a> {
    /// The compose file's directory: relative paths are resolved against it.
    pub dir: &'a Path,
    /// Top-level `volumes:`.
    pub volumes: Option<&'a Node>,
    /// Top-level `secrets:`.
    pub secrets: Option<&'a Node>,
    /// Top-level `configs:`.
    pub configs: Option<&'a Node>,
    /// Every service's name.
    pub services: Vec<String>,
    /// The services that have a health check of their own in the file.
    pub with_health: Vec<String>,
}

/// A service converted: its unit's table (None if no unit can be written) and the notes.
pub struct Service {
    /// The unit, or None (a service with only `build:`, say).
    pub table: Option<Table>,
    /// What was not expressed, or changed meaning.
    pub notes: Vec<Note>,
}

/// The unit being built and the notes taken.
struct Out<'a> {
    prefix: String,
    sections: std::collections::BTreeMap<String, Table>,
    arrays: std::collections::BTreeMap<String, Vec<T>>,
    notes: Vec<Note>,
    project: &'a Project<'a>,
}

impl Out<'_> {
    fn note(&mut self, at: Pos, key: &str, kind: NoteKind, message: impl Into<String>) {
        self.notes.push(Note {
            at,
            key: format!("{}.{key}", self.prefix),
            kind,
            message: message.into(),
        });
    }

    fn refuse(&mut self, node: &Node, key: &str, why: impl Into<String>) {
        self.note(node.at, key, NoteKind::Refused, why);
    }

    fn section(&mut self, name: &str) -> &mut Table {
        self.sections.entry(name.to_owned()).or_default()
    }

    /// The unit's table.
    fn table(self) -> Table {
        let mut t: Table = self
            .sections
            .into_iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, s)| (k, T::Table(s)))
            .collect();
        for (k, a) in self.arrays {
            t.insert(k, T::Array(a));
        }
        t
    }

    fn set(&mut self, section: &str, key: &str, value: T) {
        self.section(section).insert(key.to_owned(), value);
    }

    fn push(&mut self, array: &str, item: Table) {
        self.arrays
            .entry(array.to_owned())
            .or_default()
            .push(T::Table(item));
    }

    /// A scalar's text, or a note that the key wants one.
    fn text(&mut self, node: &Node, key: &str) -> Option<String> {
        let t = node.text();
        if t.is_none() {
            self.refuse(node, key, "expected a single value");
        }
        t
    }

    /// A list of strings: a sequence of scalars, or one scalar.
    fn strings(&mut self, node: &Node, key: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for item in node.items() {
            out.push(self.text(item, key)?);
        }
        Some(out)
    }

    /// A path from the compose file, absolute.
    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            let joined = self.project.dir.join(p);
            // `./data` reads `DIR/data`, not `DIR/./data`.
            joined.components().collect()
        }
    }
}

fn strs(v: Vec<String>) -> T {
    T::Array(v.into_iter().map(T::String).collect())
}

/// `KEY=value` items or a mapping, as pairs; a bare `KEY` (or a null value) as None.
fn pairs(
    out: &mut Out<'_>,
    node: &Node,
    key: &str,
    sep: char,
) -> Vec<(String, Option<String>, Pos)> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| (k.clone(), v.text(), v.at))
            .collect(),
        Value::Seq(items) => items
            .iter()
            .filter_map(|i| {
                let t = out.text(i, key)?;
                Some(match t.split_once(sep) {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned()), i.at),
                    None => (t, None, i.at),
                })
            })
            .collect(),
        _ => {
            out.refuse(node, key, "expected a mapping or a list");
            Vec::new()
        }
    }
}

/// Converts a service; its notes' keys start with `prefix` (`services.web`).
pub fn convert(prefix: &str, service: &Node, project: &Project<'_>) -> Service {
    let mut out = Out {
        prefix: prefix.to_owned(),
        sections: Default::default(),
        arrays: Default::default(),
        notes: Vec::new(),
        project,
    };
    if !matches!(service.value, Value::Map(_)) {
        out.refuse(service, "", "a service must be a mapping");
        return Service {
            table: None,
            notes: out.notes,
        };
    }
    let mut has_image = false;
    for (key, node) in service.entries() {
        let k = key.as_str();
        match k {
            "image" => {
                if let Some(v) = out.text(node, k) {
                    has_image = true;
                    out.set("container", "image", T::String(v));
                }
            }
            "build" => out.refuse(
                node,
                k,
                "rcd does not build images: build and push it to a registry, or `rctl image import` a `docker save` archive, and name it in `image`",
            ),
            "command" | "entrypoint" => {
                let argv = match &node.value {
                    Value::Str(s) => match shlex::split(s) {
                        Some(v) => Some(v),
                        None => {
                            out.refuse(node, k, "unbalanced quotes");
                            None
                        }
                    },
                    Value::Null => None,
                    _ => out.strings(node, k),
                };
                if let Some(argv) = argv {
                    out.set("container", k, strs(argv));
                }
            }
            "environment" => {
                let mut env = Table::new();
                for (var, value, at) in pairs(&mut out, node, k, '=') {
                    match value {
                        Some(v) => {
                            env.insert(var, T::String(v));
                        }
                        None => out.note(
                            at,
                            &format!("{k}.{var}"),
                            NoteKind::Refused,
                            "a variable without a value takes compose's own environment; rcd's daemon passes none: write its value",
                        ),
                    }
                }
                if !env.is_empty() {
                    out.set("container", "env", T::Table(env));
                }
            }
            "env_file" => {
                let mut files = Vec::new();
                for item in node.items() {
                    let (path, required) = match &item.value {
                        Value::Map(_) => (
                            item.get("path").and_then(Node::text),
                            item.get("required").map(|r| r.value != Value::Bool(false)),
                        ),
                        _ => (item.text(), None),
                    };
                    let Some(path) = path else {
                        out.refuse(item, k, "expected a path");
                        continue;
                    };
                    if required == Some(false) {
                        out.note(item.at, k, NoteKind::Changed, "`required: false` is not kept: rcd refuses a unit whose env file is missing");
                    }
                    files.push(out.path(&path).display().to_string());
                }
                out.set("container", "env_file", strs(files));
            }
            "working_dir" => {
                if let Some(v) = out.text(node, k) {
                    out.set("container", "workdir", T::String(v));
                }
            }
            "user" => {
                if let Some(v) = out.text(node, k) {
                    let numeric = v.split(':').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                    if numeric && v.split(':').count() <= 2 {
                        out.set("container", "user", T::String(v));
                    } else {
                        out.refuse(node, k, format!("user {v:?}: rcd takes numeric ids (\"1000\" or \"1000:1000\"); look the name up in the image's /etc/passwd"));
                    }
                }
            }
            "hostname" => {
                if let Some(v) = out.text(node, k) {
                    out.set("container", "hostname", T::String(v));
                }
            }
            "container_name" => out.note(node.at, k, NoteKind::Ignored, "the unit is named after the service; rcd names its containers itself"),
            "stop_signal" => {
                if let Some(v) = out.text(node, k) {
                    out.set("container", "stop_signal", T::String(v));
                }
            }
            "stop_grace_period" => {
                if let Some(v) = out.text(node, k) {
                    out.set("container", "stop_timeout", T::String(v));
                }
            }
            "labels" => {
                let mut labels = Table::new();
                for (lk, lv, _) in pairs(&mut out, node, k, '=') {
                    labels.insert(lk, T::String(lv.unwrap_or_default()));
                }
                out.set("container", "labels", T::Table(labels));
            }
            "read_only" | "init" | "privileged" => match node.value {
                Value::Bool(b) => {
                    let section = if k == "privileged" { "security" } else { "container" };
                    out.set(section, k, T::Boolean(b));
                }
                _ => out.refuse(node, k, "expected true or false"),
            },
            "shm_size" => {
                if let Some(v) = out.text(node, k) {
                    out.set("container", "shm_size", T::String(v));
                }
            }
            "ulimits" => {
                let mut limits = Table::new();
                for (name, limit) in node.entries() {
                    let value = match &limit.value {
                        Value::Map(_) => match (
                            limit.get("soft").and_then(Node::text),
                            limit.get("hard").and_then(Node::text),
                        ) {
                            (Some(s), Some(h)) => format!("{s}:{h}"),
                            _ => {
                                out.refuse(limit, &format!("{k}.{name}"), "expected soft and hard");
                                continue;
                            }
                        },
                        _ => match limit.text() {
                            Some(t) => t,
                            None => continue,
                        },
                    };
                    limits.insert(name.clone(), T::String(value));
                }
                out.set("container", "ulimits", T::Table(limits));
            }
            "sysctls" => {
                let mut ctls = Table::new();
                for (name, value, at) in pairs(&mut out, node, k, '=') {
                    match value {
                        Some(v) => {
                            ctls.insert(name, T::String(v));
                        }
                        None => out.note(at, k, NoteKind::Refused, format!("sysctl {name} has no value")),
                    }
                }
                out.set("container", "sysctls", T::Table(ctls));
            }
            "devices" => {
                let mut devices = Vec::new();
                for item in node.items() {
                    match &item.value {
                        Value::Map(_) => {
                            let src = item.get("source").and_then(Node::text);
                            let dst = item.get("target").and_then(Node::text);
                            let perm = item.get("permissions").and_then(Node::text);
                            match src {
                                Some(s) => devices.push(
                                    [Some(s), dst, perm].into_iter().flatten().collect::<Vec<_>>().join(":"),
                                ),
                                None => out.refuse(item, k, "a device needs a source"),
                            }
                        }
                        _ => {
                            if let Some(t) = out.text(item, k) {
                                devices.push(t);
                            }
                        }
                    }
                }
                out.set("container", "devices", strs(devices));
            }
            "volumes" => {
                for item in node.items() {
                    if let Some(m) = volume(&mut out, item, k) {
                        out.push("mount", m);
                    }
                }
            }
            "tmpfs" => {
                for item in node.items() {
                    let Some(t) = out.text(item, k) else { continue };
                    let (target, opts) = t.split_once(':').unwrap_or((&t, ""));
                    let mut m = Table::new();
                    m.insert("type".into(), T::String("tmpfs".into()));
                    m.insert("target".into(), T::String(target.to_owned()));
                    tmpfs_options(&mut out, item, k, opts, &mut m);
                    out.push("mount", m);
                }
            }
            "ports" => {
                let mut ports = Vec::new();
                for item in node.items() {
                    match &item.value {
                        Value::Map(_) => {
                            let target = item.get("target").and_then(Node::text);
                            let published = item.get("published").and_then(Node::text);
                            let ip = item.get("host_ip").and_then(Node::text);
                            let proto = item.get("protocol").and_then(Node::text);
                            if item.get("mode").and_then(Node::text).is_some_and(|m| m != "host" && m != "ingress") {
                                out.refuse(item, k, "only host-mode publishing exists on one host");
                            }
                            let Some(target) = target else {
                                out.refuse(item, k, "a port needs a target");
                                continue;
                            };
                            let mut p = String::new();
                            if let Some(ip) = ip {
                                p.push_str(&ip);
                                p.push(':');
                            }
                            if let Some(published) = published {
                                p.push_str(&published);
                                p.push(':');
                            }
                            p.push_str(&target);
                            if let Some(proto) = proto {
                                p.push('/');
                                p.push_str(&proto);
                            }
                            ports.push(p);
                        }
                        _ => {
                            if let Some(t) = out.text(item, k) {
                                ports.push(t);
                            }
                        }
                    }
                }
                out.set("network", "ports", strs(ports));
            }
            "expose" => out.note(node.at, k, NoteKind::Ignored, "information only in Docker too: containers on one network reach each other's ports"),
            "network_mode" => {
                if let Some(v) = out.text(node, k) {
                    let mode = match v.as_str() {
                        "none" | "host" | "bridge" => Some(v.clone()),
                        _ => v.strip_prefix("service:").map(|s| format!("container:{s}")),
                    };
                    match mode {
                        Some(m) => out.set("network", "mode", T::String(m)),
                        None => out.refuse(node, k, format!("network_mode {v:?}: rcd has none, host, bridge and service:NAME (its unit's network)")),
                    }
                }
            }
            "networks" => {
                let names: Vec<String> = match &node.value {
                    Value::Map(entries) => entries.iter().map(|(n, _)| n.clone()).collect(),
                    _ => node.items().iter().filter_map(|n| n.text()).collect(),
                };
                let others: Vec<&String> = names.iter().filter(|n| *n != "default").collect();
                if !others.is_empty() {
                    out.refuse(node, k, format!("project networks ({}) are not converted: every bridge unit joins the daemon's default network, where units find each other by name; for separate networks, configure them in the daemon (docs/networking.md) and list them in [network] networks", others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")));
                }
            }
            "dns" | "dns_search" | "dns_opt" => {
                if let Some(v) = out.strings(node, k) {
                    let key = if k == "dns_opt" { "dns_options" } else { k };
                    out.set("network", key, strs(v));
                }
            }
            "extra_hosts" => {
                let mut hosts = Vec::new();
                match &node.value {
                    Value::Map(entries) => {
                        for (h, ip) in entries {
                            if let Some(ip) = ip.text() {
                                hosts.push(format!("{h}:{ip}"));
                            }
                        }
                    }
                    _ => {
                        for item in node.items() {
                            if let Some(t) = out.text(item, k) {
                                // compose also takes `host=ip`.
                                hosts.push(match t.split_once('=') {
                                    Some((h, ip)) => format!("{h}:{ip}"),
                                    None => t,
                                });
                            }
                        }
                    }
                }
                hosts.retain(|h| {
                    if h.ends_with(":host-gateway") {
                        out.refuse(node, k, format!("{h:?}: rcd has no host-gateway alias; write the address of the host on the unit's network (its gateway, `rctl status` shows it)"));
                        false
                    } else {
                        true
                    }
                });
                if !hosts.is_empty() {
                    out.set("network", "extra_hosts", strs(hosts));
                }
            }
            "cap_add" | "cap_drop" => {
                if let Some(v) = out.strings(node, k) {
                    out.set("security", k, strs(v));
                }
            }
            "security_opt" => {
                for item in node.items() {
                    let Some(t) = out.text(item, k) else { continue };
                    let (opt, val) = t.split_once(['=', ':']).map_or((t.as_str(), None), |(a, b)| (a, Some(b)));
                    match (opt, val) {
                        ("no-new-privileges", None | Some("true")) => out.set("security", "no_new_privileges", T::Boolean(true)),
                        ("no-new-privileges", Some("false")) => out.set("security", "no_new_privileges", T::Boolean(false)),
                        ("seccomp", Some("unconfined")) => out.set("security", "seccomp", T::String("unconfined".into())),
                        ("seccomp", Some(path)) => {
                            let p = out.path(path).display().to_string();
                            out.set("security", "seccomp", T::String(p));
                        }
                        _ => out.refuse(item, k, format!("{t:?}: rcd has no AppArmor or SELinux options; it has seccomp and no-new-privileges")),
                    }
                }
            }
            "mem_limit" => {
                if let Some(v) = out.text(node, k) {
                    out.set("resources", "memory", T::String(v));
                }
            }
            "cpus" => cpus(&mut out, node, k),
            "pids_limit" => match node.value {
                Value::Int(n) if n > 0 => out.set("resources", "pids", T::Integer(n)),
                Value::Int(_) => {}
                _ => out.refuse(node, k, "expected an integer"),
            },
            "deploy" => deploy(&mut out, node),
            "restart" => {
                if let Some(v) = out.text(node, k) {
                    match v.as_str() {
                        "no" | "always" | "unless-stopped" | "on-failure" => out.set("restart", "policy", T::String(v)),
                        other => match other.strip_prefix("on-failure:").map(str::parse::<i64>) {
                            Some(Ok(n)) => {
                                out.set("restart", "policy", T::String("on-failure".into()));
                                out.set("restart", "max_retries", T::Integer(n));
                            }
                            _ => out.refuse(node, k, format!("restart {v:?}: no, always, unless-stopped, on-failure[:N]")),
                        },
                    }
                }
            }
            "healthcheck" => health(&mut out, node),
            "depends_on" => depends_on(&mut out, node),
            "logging" => logging(&mut out, node),
            "secrets" => secrets(&mut out, node),
            "configs" => configs(&mut out, node),
            "pull_policy" => {
                if let Some(v) = out.text(node, k) {
                    let pull = match v.as_str() {
                        "always" => Some("always"),
                        "missing" | "if_not_present" => Some("missing"),
                        "never" => Some("never"),
                        _ => None,
                    };
                    match pull {
                        Some(p) => out.set("container", "pull", T::String(p.into())),
                        None => out.refuse(node, k, format!("pull_policy {v:?}: always, missing or never")),
                    }
                }
            }
            "tty" | "stdin_open" => out.note(node.at, k, NoteKind::Ignored, "a unit's container has no terminal and no input; its output goes to `rctl logs`"),
            "profiles" => out.note(node.at, k, NoteKind::Ignored, "every service is converted; install only the units you want"),
            k if k.starts_with("x-") => {}
            other => out.refuse(node, other, "no rcd equivalent"),
        }
    }
    if !has_image {
        out.refuse(
            service,
            "image",
            "no `image`: a unit needs one (rcd does not build images)",
        );
        return Service {
            table: None,
            notes: out.notes,
        };
    }
    let notes = std::mem::take(&mut out.notes);
    Service {
        table: Some(out.table()),
        notes,
    }
}

/// One `volumes:` item as a `[[mount]]`.
fn volume(out: &mut Out<'_>, item: &Node, k: &str) -> Option<Table> {
    let mut m = Table::new();
    match &item.value {
        Value::Map(_) => {
            let kind = item
                .get("type")
                .and_then(Node::text)
                .unwrap_or_else(|| "volume".into());
            let source = item.get("source").and_then(Node::text);
            let target = item.get("target").and_then(Node::text);
            let Some(target) = target else {
                out.refuse(item, k, "a mount needs a target");
                return None;
            };
            m.insert("target".into(), T::String(target));
            match kind.as_str() {
                "bind" => {
                    let source = source?;
                    m.insert(
                        "source".into(),
                        T::String(out.path(&source).display().to_string()),
                    );
                    let create = item
                        .get("bind")
                        .and_then(|b| b.get("create_host_path"))
                        .is_none_or(|c| c.value != Value::Bool(false));
                    if create {
                        m.insert("create".into(), T::Boolean(true));
                    }
                }
                "volume" => {
                    let Some(source) = source else {
                        out.refuse(
                            item,
                            k,
                            "an anonymous volume: give it a name (rcd's volumes are named)",
                        );
                        return None;
                    };
                    m.insert("type".into(), T::String("volume".into()));
                    m.insert("source".into(), T::String(source.clone()));
                    check_volume(out, item, &source);
                }
                "tmpfs" => {
                    m.insert("type".into(), T::String("tmpfs".into()));
                    if let Some(t) = item.get("tmpfs") {
                        if let Some(size) = t.get("size").and_then(Node::text) {
                            m.insert("size".into(), T::String(size));
                        }
                        if let Some(mode) = t.get("mode") {
                            let text = match mode.value {
                                Value::Int(i) => format!("{i:o}"),
                                _ => mode.text().unwrap_or_default(),
                            };
                            m.insert("mode".into(), T::String(text));
                        }
                    }
                }
                other => {
                    out.refuse(
                        item,
                        k,
                        format!("mount type {other:?}: rcd has bind, volume and tmpfs"),
                    );
                    return None;
                }
            }
            if item
                .get("read_only")
                .is_some_and(|r| r.value == Value::Bool(true))
            {
                m.insert("readonly".into(), T::Boolean(true));
            }
            for extra in ["consistency", "volume", "bind"] {
                if let Some(n) = item.get(extra) {
                    let known_bind =
                        extra == "bind" && n.entries().iter().all(|(k, _)| k == "create_host_path");
                    if !known_bind {
                        out.refuse(
                            n,
                            &format!("{k}.{extra}"),
                            "not expressible in a unit's mount",
                        );
                    }
                }
            }
        }
        _ => {
            let t = out.text(item, k)?;
            let parts: Vec<&str> = t.split(':').collect();
            let (source, target, opts) = match parts.as_slice() {
                [target] => {
                    let _ = target;
                    out.refuse(item, k, "an anonymous volume: give it a name (`NAME:/path`), rcd's volumes are named");
                    return None;
                }
                [s, t] => (*s, *t, ""),
                [s, t, o] => (*s, *t, *o),
                _ => {
                    out.refuse(item, k, "expected SOURCE:TARGET[:OPTIONS]");
                    return None;
                }
            };
            m.insert("target".into(), T::String(target.to_owned()));
            if source.starts_with('/') || source.starts_with('.') || source.starts_with('~') {
                if source.starts_with('~') {
                    out.refuse(item, k, "a path from a home directory: write it absolute");
                    return None;
                }
                m.insert(
                    "source".into(),
                    T::String(out.path(source).display().to_string()),
                );
                // The short syntax makes a missing host directory, as `docker run -v` does.
                m.insert("create".into(), T::Boolean(true));
            } else {
                m.insert("type".into(), T::String("volume".into()));
                m.insert("source".into(), T::String(source.to_owned()));
                check_volume(out, item, source);
            }
            for opt in opts.split(',').filter(|o| !o.is_empty()) {
                match opt {
                    "ro" => {
                        m.insert("readonly".into(), T::Boolean(true));
                    }
                    "rw" => {}
                    "z" | "Z" => out.note(
                        item.at,
                        k,
                        NoteKind::Ignored,
                        "SELinux relabelling (:z, :Z) is not done by rcd",
                    ),
                    other => out.refuse(
                        item,
                        k,
                        format!("mount option {other:?} is not expressible"),
                    ),
                }
            }
        }
    }
    Some(m)
}

/// Notes about a named volume's top-level declaration rcd cannot follow.
fn check_volume(out: &mut Out<'_>, item: &Node, name: &str) {
    let decl = out.project.volumes.and_then(|v| v.get(name));
    match decl {
        None => out.note(item.at, "volumes", NoteKind::Changed, format!("volume {name:?} is not declared under the top-level `volumes:`; rcd makes it on first use")),
        Some(d) => {
            for (key, v) in d.entries() {
                match key.as_str() {
                    "external" => out.note(v.at, "volumes", NoteKind::Changed, format!("volume {name:?} is external: rcd makes it on first use if it is missing")),
                    "driver" if v.text().as_deref() == Some("local") => {}
                    "labels" => {}
                    other => out.refuse(v, &format!("volumes.{name}.{other}"), "rcd's volumes are directories under its root: no drivers or driver options"),
                }
            }
        }
    }
}

/// `size=..,mode=..` of a tmpfs.
fn tmpfs_options(out: &mut Out<'_>, item: &Node, k: &str, opts: &str, m: &mut Table) {
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("size", v)) => {
                m.insert("size".into(), T::String(v.to_owned()));
            }
            Some(("mode", v)) => {
                m.insert("mode".into(), T::String(v.to_owned()));
            }
            _ => match opt {
                "rw" | "nosuid" | "nodev" => {}
                "ro" => {
                    m.insert("readonly".into(), T::Boolean(true));
                }
                other => out.refuse(
                    item,
                    k,
                    format!("tmpfs option {other:?} is not expressible (size and mode are)"),
                ),
            },
        }
    }
}

fn cpus(out: &mut Out<'_>, node: &Node, k: &str) {
    match node.value {
        Value::Int(i) => out.set("resources", "cpus", T::Float(i as f64)),
        Value::Float(f) => out.set("resources", "cpus", T::Float(f)),
        _ => match node.text().and_then(|t| t.parse::<f64>().ok()) {
            Some(f) => out.set("resources", "cpus", T::Float(f)),
            None => out.refuse(node, k, "expected a number"),
        },
    }
}

/// `deploy:`: resource limits are kept; replicas point at templates; the rest is swarm's.
fn deploy(out: &mut Out<'_>, node: &Node) {
    for (key, v) in node.entries() {
        match key.as_str() {
            "resources" => {
                for (rk, rv) in v.entries() {
                    if rk != "limits" {
                        out.refuse(rv, &format!("deploy.resources.{rk}"), "rcd sets limits only (no reservations)");
                        continue;
                    }
                    for (lk, lv) in rv.entries() {
                        match lk.as_str() {
                            "memory" => {
                                if let Some(t) = lv.text() {
                                    out.set("resources", "memory", T::String(t));
                                }
                            }
                            "cpus" => cpus(out, lv, "deploy.resources.limits.cpus"),
                            "pids" => {
                                if let Value::Int(n) = lv.value {
                                    out.set("resources", "pids", T::Integer(n));
                                }
                            }
                            other => out.refuse(lv, &format!("deploy.resources.limits.{other}"), "no rcd equivalent"),
                        }
                    }
                }
            }
            "replicas" if v.value == Value::Int(1) => {}
            "replicas" => out.refuse(v, "deploy.replicas", "one unit is one container: for several, make this unit a template (NAME@.toml) and link an instance per replica (docs/units.md#templates-and-drop-ins)"),
            other => out.refuse(v, &format!("deploy.{other}"), "swarm's; no rcd equivalent"),
        }
    }
}

fn health(out: &mut Out<'_>, node: &Node) {
    for (key, v) in node.entries() {
        let k = format!("healthcheck.{key}");
        match key.as_str() {
            "test" => match &v.value {
                Value::Str(s) => out.set("health", "cmd", T::String(s.clone())),
                Value::Seq(items) => {
                    let words: Vec<String> = items.iter().filter_map(Node::text).collect();
                    match words.split_first() {
                        Some((first, rest)) if first == "CMD" => {
                            out.set("health", "cmd", strs(rest.to_vec()))
                        }
                        Some((first, rest)) if first == "CMD-SHELL" => {
                            out.set("health", "cmd", T::String(rest.join(" ")))
                        }
                        Some((first, _)) if first == "NONE" => {
                            out.set("health", "disable", T::Boolean(true))
                        }
                        _ => out.refuse(
                            v,
                            &k,
                            "expected [\"CMD\", ...], [\"CMD-SHELL\", \"...\"] or [\"NONE\"]",
                        ),
                    }
                }
                _ => out.refuse(v, &k, "expected a string or a list"),
            },
            "interval" | "timeout" | "start_period" | "start_interval" => {
                if let Some(t) = v.text() {
                    out.set("health", key, T::String(t));
                }
            }
            "retries" => match v.value {
                Value::Int(n) => out.set("health", "retries", T::Integer(n)),
                _ => out.refuse(v, &k, "expected an integer"),
            },
            "disable" => {
                if v.value == Value::Bool(true) {
                    out.set("health", "disable", T::Boolean(true));
                }
            }
            _ => out.refuse(v, &k, "no rcd equivalent"),
        }
    }
}

fn depends_on(out: &mut Out<'_>, node: &Node) {
    let mut after = Vec::new();
    let mut wants = Vec::new();
    let mut requires = Vec::new();
    let entries: Vec<(String, Option<&Node>, Pos)> = match &node.value {
        Value::Map(e) => e.iter().map(|(n, v)| (n.clone(), Some(v), v.at)).collect(),
        _ => node
            .items()
            .into_iter()
            .filter_map(|i| Some((i.text()?, None, i.at)))
            .collect(),
    };
    for (dep, spec, at) in entries {
        let condition = spec
            .and_then(|s| s.get("condition"))
            .and_then(Node::text)
            .unwrap_or_else(|| "service_started".into());
        let required = spec
            .and_then(|s| s.get("required"))
            .is_none_or(|r| r.value != Value::Bool(false));
        let restart = spec
            .and_then(|s| s.get("restart"))
            .is_some_and(|r| r.value == Value::Bool(true));
        match condition.as_str() {
            "service_started" => {
                if out.project.with_health.contains(&dep) {
                    out.note(at, &format!("depends_on.{dep}"), NoteKind::Changed, format!("rcd's `after` waits for {dep} to be healthy, not only started, since it has a health check"));
                }
            }
            "service_healthy" => {}
            other => {
                out.note(at, &format!("depends_on.{dep}"), NoteKind::Refused, format!("condition {other}: rcd orders by running or healthy, not by a completed run"));
                continue;
            }
        }
        if !out.project.services.contains(&dep) {
            out.note(
                at,
                &format!("depends_on.{dep}"),
                NoteKind::Refused,
                format!("no service {dep} in the file"),
            );
            continue;
        }
        after.push(dep.clone());
        if restart {
            requires.push(dep);
        } else if required {
            wants.push(dep);
        }
    }
    for (key, list) in [("after", after), ("wants", wants), ("requires", requires)] {
        if !list.is_empty() {
            out.set("unit", key, strs(list));
        }
    }
}

fn logging(out: &mut Out<'_>, node: &Node) {
    let driver = node.get("driver").and_then(Node::text);
    if let Some(d) = driver
        .as_deref()
        .filter(|d| !matches!(*d, "json-file" | "local"))
    {
        out.refuse(
            node,
            "logging.driver",
            format!("log driver {d:?}: rcd keeps logs in its own files (`rctl logs`)"),
        );
        return;
    }
    for (key, v) in node.get("options").map(Node::entries).unwrap_or_default() {
        match key.as_str() {
            "max-size" => {
                if let Some(t) = v.text() {
                    out.set("logs", "max_size", T::String(t));
                }
            }
            "max-file" => match v.text().and_then(|t| t.parse::<i64>().ok()) {
                Some(n) => out.set("logs", "max_files", T::Integer(n)),
                None => out.refuse(v, "logging.options.max-file", "expected a number"),
            },
            other => out.refuse(v, &format!("logging.options.{other}"), "no rcd equivalent"),
        }
    }
}

fn secrets(out: &mut Out<'_>, node: &Node) {
    for item in node.items() {
        let (source, target, mode) = match &item.value {
            Value::Map(_) => {
                for bad in ["uid", "gid"] {
                    if let Some(n) = item.get(bad) {
                        out.refuse(n, &format!("secrets.{bad}"), "a secret's file is root's in the container; set `mode` for others to read it");
                    }
                }
                (
                    item.get("source").and_then(Node::text),
                    item.get("target").and_then(Node::text),
                    item.get("mode").map(|m| match m.value {
                        Value::Int(i) => format!("{i:o}"),
                        _ => m.text().unwrap_or_default(),
                    }),
                )
            }
            _ => (item.text(), None, None),
        };
        let Some(source) = source else {
            out.refuse(item, "secrets", "a secret needs a source");
            continue;
        };
        let decl = out.project.secrets.and_then(|s| s.get(&source));
        let Some(file) = decl.and_then(|d| d.get("file")).and_then(Node::text) else {
            let why = match decl {
                Some(d) if d.get("environment").is_some() => "a secret from compose's environment: rcd's secrets are files (write it to a root-only file)",
                Some(_) => "only secrets from a `file:` convert",
                None => "not declared under the top-level `secrets:`",
            };
            out.refuse(item, &format!("secrets.{source}"), why);
            continue;
        };
        let mut s = Table::new();
        s.insert(
            "source".into(),
            T::String(out.path(&file).display().to_string()),
        );
        match target {
            Some(t) if t.starts_with('/') => {
                s.insert("name".into(), T::String(source.clone()));
                s.insert("target".into(), T::String(t));
            }
            Some(t) => {
                s.insert("name".into(), T::String(t));
            }
            None => {
                s.insert("name".into(), T::String(source.clone()));
            }
        }
        if let Some(m) = mode {
            s.insert("mode".into(), T::String(m));
        }
        out.push("secret", s);
    }
}

fn configs(out: &mut Out<'_>, node: &Node) {
    for item in node.items() {
        let (source, target) = match &item.value {
            Value::Map(_) => (
                item.get("source").and_then(Node::text),
                item.get("target").and_then(Node::text),
            ),
            _ => (item.text(), None),
        };
        let Some(source) = source else {
            out.refuse(item, "configs", "a config needs a source");
            continue;
        };
        let Some(file) = out
            .project
            .configs
            .and_then(|c| c.get(&source))
            .and_then(|d| d.get("file"))
            .and_then(Node::text)
        else {
            out.refuse(
                item,
                &format!("configs.{source}"),
                "only configs from a `file:` declared under the top-level `configs:` convert",
            );
            continue;
        };
        let mut m = Table::new();
        m.insert(
            "source".into(),
            T::String(out.path(&file).display().to_string()),
        );
        m.insert(
            "target".into(),
            T::String(target.unwrap_or_else(|| format!("/{source}"))),
        );
        m.insert("readonly".into(), T::Boolean(true));
        out.push("mount", m);
    }
}
