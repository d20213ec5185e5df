//! OCI runtime spec: a validated `Unit` and the container's paths in, `config.json` out, with
//! Docker's safe defaults (capabilities, no-new-privileges, masked /proc paths, fresh /dev).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use crate::unit::{NetworkMode, Unit, User};

/// A spec that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("unit {unit}: cannot build the OCI spec: {source}")]
pub struct Error {
    /// The unit.
    pub unit: String,
    /// The cause.
    pub source: oci_spec::OciSpecError,
}

/// Docker's default capability set (moby's `oci/caps/defaults.go`).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths hidden from the container, as Docker does.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container sees read-only, as Docker does.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The default PATH, Docker's.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the container's init runs and as whom: the unit merged over its image's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// argv, never empty.
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
    /// Numeric user.
    pub user: User,
}

/// Merges the unit over its image config (Docker's rules) into the process to run. `lowers`
/// are the image's layer directories, top first, where a user name is looked up.
pub fn process(
    unit: &Unit,
    image: Option<&ImageConfiguration>,
    lowers: &[PathBuf],
) -> Result<Process, String> {
    let c = &unit.container;
    let cfg = image.and_then(|i| i.config().as_ref());
    // Docker: an entrypoint given at run time drops the image's Cmd unless a command is given too.
    let entrypoint: Vec<String> = match &c.entrypoint {
        Some(e) => e.clone(),
        None => cfg
            .and_then(|cfg| cfg.entrypoint().clone())
            .unwrap_or_default(),
    };
    let command: Vec<String> = match (&c.command, &c.entrypoint) {
        (Some(cmd), _) => cmd.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => cfg.and_then(|cfg| cfg.cmd().clone()).unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(command).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(
            "no command: the image has no Entrypoint/Cmd and the unit gives none".to_string(),
        );
    }

    // Image env first, overridden key by key by the unit's.
    let mut pairs: Vec<(String, String)> = Vec::new();
    for entry in cfg.and_then(|cfg| cfg.env().clone()).unwrap_or_default() {
        let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        match pairs.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => pairs.push((k.to_string(), v.to_string())),
        }
    }
    for (k, v) in &c.env {
        match pairs.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.clone(),
            None => pairs.push((k.clone(), v.clone())),
        }
    }
    let mut env = Vec::new();
    if !pairs.iter().any(|(k, _)| k == "PATH") {
        env.push(DEFAULT_PATH.to_string());
    }
    if !pairs.iter().any(|(k, _)| k == "HOSTNAME") {
        env.push(format!("HOSTNAME={}", c.hostname));
    }
    env.extend(pairs.into_iter().map(|(k, v)| format!("{k}={v}")));

    let cwd = match (&c.workdir, cfg.and_then(|cfg| cfg.working_dir().as_deref())) {
        (Some(w), _) => w.clone(),
        (None, Some(w)) if w.starts_with('/') => w.to_string(),
        (None, Some(w)) if !w.is_empty() => {
            return Err(format!("the image's WorkingDir {w:?} is not absolute"))
        }
        _ => "/".to_string(),
    };

    let user = match (c.user, cfg.and_then(|cfg| cfg.user().as_deref())) {
        (Some(u), _) => u,
        (None, Some(u)) if !u.is_empty() => image_user(u, lowers)?,
        _ => User { uid: 0, gid: 0 },
    };
    Ok(Process {
        args,
        env,
        cwd,
        user,
    })
}

/// glibc's SIGRTMIN (the kernel's 32 plus the two glibc keeps for itself) and SIGRTMAX: what
/// `SIGRTMIN+3` means to a program in the container, and how Docker numbers it.
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// The signal a container of `unit` is stopped with: the unit's `stop_signal`, else its image's
/// StopSignal (Docker's rule), else SIGTERM. An image StopSignal that is not a signal is an error.
pub fn stop_signal(unit: &Unit, image: Option<&ImageConfiguration>) -> Result<String, String> {
    if let Some(s) = &unit.container.stop_signal {
        return Ok(s.clone());
    }
    let from_image = image
        .and_then(|i| i.config().as_ref())
        .and_then(|c| c.stop_signal().as_deref())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    match from_image {
        None => Ok("SIGTERM".to_string()),
        Some(text) => image_signal(text).ok_or_else(|| {
            format!(
                "the image's StopSignal {text:?} is not a signal: {}, or SIGRTMIN+n",
                crate::unit::SIGNAL_SHAPE
            )
        }),
    }
}

/// A StopSignal as images write it: a name ("SIGQUIT", "QUIT"), a number, or a real-time signal
/// ("SIGRTMIN+3", systemd's), which runtimes only take by number.
fn image_signal(text: &str) -> Option<String> {
    if let Ok(sig) = crate::unit::parse_signal(text) {
        return Some(sig.as_str().to_string());
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let relative = |rest: &str, base: i32| -> Option<i32> {
        match rest {
            "" => Some(base),
            _ if rest.starts_with('+') => rest[1..].parse::<i32>().ok().map(|n| base + n),
            _ if rest.starts_with('-') => rest[1..].parse::<i32>().ok().map(|n| base - n),
            _ => None,
        }
    };
    let number = match (name.strip_prefix("RTMIN"), name.strip_prefix("RTMAX")) {
        (Some(rest), _) => relative(rest, SIGRTMIN),
        (_, Some(rest)) => relative(rest, SIGRTMAX),
        _ => name.parse::<i32>().ok(),
    }?;
    (SIGRTMIN..=SIGRTMAX)
        .contains(&number)
        .then(|| number.to_string())
}

/// The image's ExposedPorts as `port/protocol` (a bare "80" is "80/tcp", as in Docker), sorted by
/// port, no duplicates. Information only: nothing is published.
pub fn exposed_ports(image: Option<&ImageConfiguration>) -> Vec<String> {
    let listed = image
        .and_then(|i| i.config().as_ref())
        .and_then(|c| c.exposed_ports().clone())
        .unwrap_or_default();
    let mut ports: Vec<String> = listed
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('/') {
            Some((port, proto)) => format!("{port}/{}", proto.to_ascii_lowercase()),
            None => format!("{p}/tcp"),
        })
        .collect();
    // Numeric order (80 before 443), then by text for anything that is not a plain number.
    let key = |p: &String| {
        let port = p.split(['/', '-']).next().unwrap_or("");
        (port.parse::<u32>().unwrap_or(u32::MAX), p.clone())
    };
    ports.sort_by_key(key);
    ports.dedup();
    ports
}

/// The image config's `User` ("uid", "uid:gid", "name", "name:group") as numbers; names are
/// looked up in the top-most layer that has /etc/passwd (and /etc/group).
fn image_user(spec: &str, lowers: &[PathBuf]) -> Result<User, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str, field: usize| -> Result<(u32, Option<u32>), String> {
        let path = lowers
            .iter()
            .map(|l| l.join("etc").join(file))
            .find(|p| p.symlink_metadata().is_ok_and(|m| m.is_file()))
            .ok_or_else(|| {
                format!(
                    "the image's User {spec:?} names {name:?}, but the image has no /etc/{file}"
                )
            })?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("the image's User {spec:?}: cannot read /etc/{file}: {e}"))?;
        for line in text.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.first() == Some(&name) && fields.len() > 3 {
                let id = fields[2].parse::<u32>().ok();
                let gid = if field == 3 {
                    fields[3].parse::<u32>().ok()
                } else {
                    None
                };
                if let Some(id) = id {
                    return Ok((id, gid));
                }
            }
        }
        Err(format!(
            "the image's User {spec:?}: {name:?} is not in the image's /etc/{file}"
        ))
    };
    let numeric = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (uid, primary) = match numeric(user) {
        Some(uid) => (uid, None),
        None => {
            let (uid, gid) = lookup("passwd", user, 3)?;
            (uid, gid)
        }
    };
    let gid = match group {
        Some(g) => match numeric(g) {
            Some(gid) => gid,
            None => lookup("group", g, 2)?.0,
        },
        None => primary.unwrap_or(0),
    };
    Ok(User { uid, gid })
}

/// The `linux.cgroupsPath` of the spec in the bundle file `config_json`, if it can be read.
pub fn cgroups_path_of(config_json: &Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Spec {
        linux: Option<Linux>,
    }
    #[derive(serde::Deserialize)]
    struct Linux {
        #[serde(rename = "cgroupsPath")]
        cgroups_path: Option<String>,
    }
    let spec: Spec = serde_json::from_slice(&std::fs::read(config_json).ok()?).ok()?;
    spec.linux?.cgroups_path
}

/// Builds the runtime spec for `unit` running `process`, rooted at `rootfs`, in the cgroup
/// `cgroups_path`, with `annotations` for the runtime beside rcd's own (systemd scope
/// properties).
pub fn build(
    unit: &Unit,
    process: &Process,
    rootfs: &Path,
    cgroups_path: &str,
    annotations: &[(String, String)],
    net: Option<&NetSetup>,
) -> Result<Spec, Error> {
    build_inner(unit, process, rootfs, cgroups_path, annotations, net).map_err(|source| Error {
        unit: unit.name.clone(),
        source,
    })
}

/// A network prepared by rcd: the namespace to join (bridge: rcd's pinned one; `container:`:
/// the target's) and the generated files to mount.
#[derive(Debug, Clone, Default)]
pub struct NetSetup {
    /// The namespace to join; None: what the mode says (host's, or a fresh one).
    pub netns: Option<std::path::PathBuf>,
    /// Generated files and where they go (`/etc/hosts`, ...), bind-mounted read-only.
    pub files: Vec<(std::path::PathBuf, &'static str)>,
}

fn build_inner(
    unit: &Unit,
    p: &Process,
    rootfs: &Path,
    cgroups_path: &str,
    annotations: &[(String, String)],
    net: Option<&NetSetup>,
) -> Result<Spec, oci_spec::OciSpecError> {
    let caps: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(p.args.clone())
        .env(p.env.clone())
        .cwd(p.cwd.clone())
        .user(
            UserBuilder::default()
                .uid(p.user.uid)
                .gid(p.user.gid)
                .build()?,
        )
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()?,
        )
        .no_new_privileges(true)
        // The kernel's default, as Docker gives containers: without it they would inherit the
        // daemon's own (rcd.service's OOMScoreAdjust=-500) and be the last the OOM killer picks.
        .oom_score_adj(0)
        .build()?;

    let mut mounts = default_mounts()?;
    for m in &unit.mounts {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if m.readonly {
            options.push("ro".to_string());
        }
        mounts.push(
            MountBuilder::default()
                .destination(&m.target)
                .typ("bind")
                .source(&m.source)
                .options(options)
                .build()?,
        );
    }

    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    let mut joined = None;
    match (&unit.network.mode, net.and_then(|n| n.netns.as_ref())) {
        (NetworkMode::Host, _) => {}
        // Bridge: the namespace rcd made and CNI wired; container: the target's.
        (_, Some(path)) => joined = Some(path.clone()),
        // None; and never a bridge or container: unit, whose start gives a namespace, but
        // if so, isolated rather than the host's.
        (_, None) => namespaces.push(LinuxNamespaceType::Network),
    }
    let mut namespaces = namespaces
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build())
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(path) = joined {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path)
                .build()?,
        );
    }
    if let Some(n) = net {
        for (source, dest) in &n.files {
            mounts.push(
                MountBuilder::default()
                    .destination(*dest)
                    .typ("bind")
                    .source(source)
                    .options(vec![
                        "rbind".into(),
                        "ro".into(),
                        "nosuid".into(),
                        "nodev".into(),
                        "noexec".into(),
                    ])
                    .build()?,
            );
        }
    }

    let mut resources = LinuxResourcesBuilder::default().devices(vec![
        // Deny every device; the runtime adds its default allow list (null, zero, tty, ...).
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()?,
    ]);
    let r = &unit.resources;
    if let Some(bytes) = r.memory {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(bytes as i64).build()?);
    }
    if let Some(cpus) = r.cpus {
        const PERIOD: u64 = 100_000;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .period(PERIOD)
                .quota((cpus * PERIOD as f64).round() as i64)
                .build()?,
        );
    }
    if let Some(pids) = r.pids {
        resources = resources.pids(LinuxPidsBuilder::default().limit(pids).build()?);
    }

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(cgroups_path)
        .masked_paths(MASKED_PATHS.map(String::from).to_vec())
        .readonly_paths(READONLY_PATHS.map(String::from).to_vec())
        .build()?;

    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(false)
                .build()?,
        )
        .hostname(unit.container.hostname.clone())
        .process(process)
        .mounts(mounts)
        .annotations(
            [("rcd.unit".to_string(), unit.name.clone())]
                .into_iter()
                .chain(annotations.iter().cloned())
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .linux(linux)
        .build()
}

fn default_mounts() -> Result<Vec<Mount>, oci_spec::OciSpecError> {
    let table: [(&str, &str, &str, &[&str]); 7] = [
        ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        (
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        (
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
        ),
    ];
    table
        .iter()
        .map(|(dest, typ, source, opts)| {
            MountBuilder::default()
                .destination(*dest)
                .typ(*typ)
                .source(*source)
                .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .build()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(extra: &str) -> Unit {
        let text = format!("[container]\nimage = \"busybox\"\n{extra}");
        match crate::unit::parse("t", Path::new("t.toml"), &text) {
            Ok(u) => u,
            Err(ds) => panic!("{ds:?}"),
        }
    }

    fn config(json: &str) -> ImageConfiguration {
        let text = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}},\"config\":{json}}}"
        );
        match serde_json::from_str(&text) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn run(extra: &str, json: &str, lowers: &[PathBuf]) -> Result<Process, String> {
        process(&unit(extra), Some(&config(json)), lowers)
    }

    #[test]
    fn docker_argv_rules() {
        let img = r#"{"Entrypoint":["/ep"],"Cmd":["c1"]}"#;
        let args = |extra: &str| run(extra, img, &[]).map(|p| p.args);
        assert_eq!(args(""), Ok(vec!["/ep".into(), "c1".into()]));
        assert_eq!(
            args("command = [\"x\"]\n"),
            Ok(vec!["/ep".into(), "x".into()])
        );
        // A unit entrypoint drops the image's Cmd.
        assert_eq!(args("entrypoint = [\"/e2\"]\n"), Ok(vec!["/e2".into()]));
        assert_eq!(
            args("entrypoint = []\ncommand = [\"sh\"]\n"),
            Ok(vec!["sh".into()])
        );
        let none = run("entrypoint = []\n", img, &[]);
        assert!(none.is_err_and(|e| e.starts_with("no command")));
        let none = run("", "{}", &[]);
        assert!(none.is_err_and(|e| e.starts_with("no command")));
    }

    #[test]
    fn env_workdir_user_from_the_image() {
        let img = r#"{"Cmd":["sh"],"Env":["PATH=/img/bin","A=image","B=image"],"WorkingDir":"/srv","User":"7:8"}"#;
        let p = run("env = { B = \"unit\", C = \"unit\" }\n", img, &[]);
        let Ok(p) = p else { panic!("{p:?}") };
        assert_eq!(
            p.env,
            ["HOSTNAME=t", "PATH=/img/bin", "A=image", "B=unit", "C=unit"]
        );
        assert_eq!(p.cwd, "/srv");
        assert_eq!(p.user, User { uid: 7, gid: 8 });
        let p = run("workdir = \"/w\"\nuser = \"1:2\"\n", img, &[]);
        let Ok(p) = p else { panic!("{p:?}") };
        assert_eq!((p.cwd.as_str(), p.user), ("/w", User { uid: 1, gid: 2 }));
        let p = run("", r#"{"Cmd":["sh"]}"#, &[]);
        let Ok(p) = p else { panic!("{p:?}") };
        assert_eq!((p.cwd.as_str(), p.user), ("/", User { uid: 0, gid: 0 }));
    }

    #[test]
    fn stop_signal_from_the_unit_else_the_image_else_sigterm() {
        let sig = |extra: &str, json: &str| stop_signal(&unit(extra), Some(&config(json)));
        let quit = r#"{"StopSignal":"SIGQUIT"}"#;
        assert_eq!(sig("", quit), Ok("SIGQUIT".into()));
        assert_eq!(sig("stop_signal = \"USR1\"\n", quit), Ok("SIGUSR1".into()));
        // Explicitly the default still overrides the image.
        assert_eq!(sig("stop_signal = \"TERM\"\n", quit), Ok("SIGTERM".into()));
        assert_eq!(sig("", "{}"), Ok("SIGTERM".into()));
        assert_eq!(stop_signal(&unit(""), None), Ok("SIGTERM".into()));
        let cases: &[(&str, Option<&str>)] = &[
            ("QUIT", Some("SIGQUIT")),
            ("sigint", Some("SIGINT")),
            ("9", Some("SIGKILL")),
            (" SIGWINCH ", Some("SIGWINCH")),
            ("", Some("SIGTERM")),
            ("SIGRTMIN+3", Some("37")),
            ("RTMIN", Some("34")),
            ("SIGRTMAX-1", Some("63")),
            ("40", Some("40")),
            ("SIGRTMIN+31", None),
            ("SIGRTMAX+1", None),
            ("SIGNOPE", None),
            ("0", None),
            ("-9", None),
            ("65", None),
        ];
        for (text, want) in cases {
            let got = sig("", &format!("{{\"StopSignal\":{text:?}}}"));
            match want {
                Some(w) => assert_eq!(got.as_deref(), Ok(*w), "{text:?}"),
                None => assert!(
                    got.as_ref()
                        .is_err_and(|e| e.contains("StopSignal") && e.contains(text)),
                    "{text:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn exposed_ports_normalized_and_sorted() {
        let ports = |json: &str| exposed_ports(Some(&config(json)));
        assert_eq!(
            ports(r#"{"ExposedPorts":{"443/tcp":{},"53/UDP":{},"80":{},"80/tcp":{},"53/tcp":{}}}"#),
            ["53/tcp", "53/udp", "80/tcp", "443/tcp"]
        );
        assert!(ports("{}").is_empty());
        assert!(exposed_ports(None).is_empty());
    }

    #[test]
    fn user_names_from_the_top_most_passwd() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let (top, bottom) = (dir.path().join("top"), dir.path().join("bottom"));
        for (layer, passwd) in [
            (&top, "www:x:33:34::/:/bin/sh\n"),
            (&bottom, "www:x:1:1::/:/bin/sh\n"),
        ] {
            assert!(std::fs::create_dir_all(layer.join("etc")).is_ok());
            assert!(std::fs::write(layer.join("etc/passwd"), passwd).is_ok());
        }
        assert!(std::fs::write(bottom.join("etc/group"), "staff:x:50:\n").is_ok());
        let lowers = [top.clone(), bottom.clone()];
        let user = |u: &str| {
            run("", &format!(r#"{{"Cmd":["sh"],"User":"{u}"}}"#), &lowers).map(|p| p.user)
        };
        assert_eq!(user("www"), Ok(User { uid: 33, gid: 34 }));
        assert_eq!(user("www:staff"), Ok(User { uid: 33, gid: 50 }));
        assert_eq!(user("5"), Ok(User { uid: 5, gid: 0 }));
        assert!(user("nobody").is_err_and(|e| e.contains("not in the image's /etc/passwd")));
        let bare = run("", r#"{"Cmd":["sh"],"User":"www"}"#, &[]);
        assert!(bare.is_err_and(|e| e.contains("has no /etc/passwd")));
    }
}
