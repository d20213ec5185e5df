//! Tests of the unit module as a whole: fixture files, the spec hash, names, loading.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn fixtures(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/units")
        .join(kind)
}

fn read(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// Parses a text as unit "test"; diagnostics as `line:col: message` lines.
fn check_text(text: &str) -> Result<Unit, String> {
    parse("test", Path::new("test.toml"), text).map_err(|ds| render(&ds))
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn good_fixtures_parse() {
    let files = files_with(&fixtures("good"), "toml");
    assert!(files.len() >= 5, "good fixtures missing");
    for file in files {
        let Some(name) = unit_name(&file) else {
            panic!("{}: not a unit name", file.display());
        };
        if let Err(ds) = parse(&name, &file, &read(&file)) {
            panic!("{}:\n{}", file.display(), render(&ds));
        }
    }
}

/// Each `bad/NAME.toml` fails with exactly the diagnostics in `bad/NAME.err`.
/// `RCD_BLESS=1` rewrites the `.err` files from the current output, for review.
#[test]
fn bad_fixtures_fail_as_expected() {
    let dir = fixtures("bad");
    let bless = std::env::var_os("RCD_BLESS").is_some();
    let units = files_with(&dir, "toml");
    assert!(units.len() >= 25, "bad fixtures missing");
    let mut failures = Vec::new();
    for file in &units {
        let name = unit_name(file).unwrap_or_default();
        let got = match parse(&name, file, &read(file)) {
            Ok(_) => "(no error)".to_owned(),
            Err(ds) => {
                assert!(ds.iter().all(|d| d.file == *file));
                render(&ds)
            }
        };
        let err_file = file.with_extension("err");
        if bless {
            assert!(fs::write(&err_file, format!("{got}\n")).is_ok());
            continue;
        }
        let want = fs::read_to_string(&err_file).unwrap_or_default();
        if want.trim_end() != got {
            failures.push(format!(
                "{}\n  want: {}\n  got:  {}",
                file.display(),
                want.trim_end().replace('\n', "\n        "),
                got.replace('\n', "\n        ")
            ));
        }
    }
    // An .err without its unit would be a test that silently stopped running.
    for err in files_with(&dir, "err") {
        if !err.with_extension("toml").exists() {
            failures.push(format!("{}: no .toml beside it", err.display()));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Every unit that ships (`units/`) or is documented (`examples/*/`) is valid.
#[test]
fn shipped_units_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("units")];
    if let Ok(entries) = fs::read_dir(root.join("examples")) {
        dirs.extend(
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir()),
        );
    }
    for dir in dirs {
        for file in unit_files(&dir).unwrap_or_default() {
            let name = unit_name(&file).unwrap_or_default();
            // With its template and drop-ins, read without the trust rule (a checkout's modes).
            let layers = sources::Layers::discover(&file, &name);
            let mut s = sources::Sources::new(&name);
            for f in &layers.files {
                s.push(f, &read(f));
            }
            if let Err(ds) = parse_sources(&name, &file, &s) {
                panic!("{}:\n{}", file.display(), render(&ds));
            }
        }
    }
}

#[test]
fn defaults() {
    let Ok(unit) = check_text("[container]\nrootfs = \"/r\"\ncommand = [\"x\"]\n") else {
        panic!("minimal unit rejected");
    };
    assert_eq!(unit.name, "test");
    assert_eq!(unit.description, None);
    assert_eq!(unit.container.workdir, None);
    assert_eq!(unit.container.user, None);
    assert_eq!(unit.container.hostname, "test");
    assert_eq!(unit.container.stop_signal.as_deref(), Some("SIGTERM"));
    assert_eq!(unit.container.stop_timeout, Duration::from_secs(10));
    assert!(unit.container.env.is_empty());
    assert!(unit.mounts.is_empty());
    assert_eq!(unit.network, Network::default());
    // Docker's default: a bridge, on the default network.
    assert_eq!(unit.network.mode, NetworkMode::default_mode());
    assert_eq!(unit.network.mode, NetworkMode::Bridge);
    assert_eq!(unit.network.networks, [crate::unit::DEFAULT_NETWORK]);
    assert!(unit.network.ports.is_empty());
    assert_eq!(unit.resources, Resources::default());
    assert_eq!(
        unit.restart,
        Restart {
            policy: Policy::No,
            delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(60),
            reset_after: Duration::from_secs(10),
        }
    );
    assert!(unit.autostart);
    assert_eq!(unit.spec_hash.len(), 64);
}

#[test]
fn every_key_is_read() {
    let file = fixtures("good").join("everything.toml");
    let unit = match parse("everything", &file, &read(&file)) {
        Ok(unit) => unit,
        Err(ds) => panic!("{}", render(&ds)),
    };
    let c = &unit.container;
    assert_eq!(
        unit.description.as_deref(),
        Some("Every key, for the reference")
    );
    assert_eq!(
        c.source,
        Source::Rootfs(PathBuf::from("/srv/rootfs/busybox"))
    );
    assert_eq!(
        c.command.as_deref(),
        Some(&["sh", "-c", "echo $GREETING; sleep 1000"].map(String::from)[..])
    );
    assert_eq!(
        c.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [("EMPTY", ""), ("GREETING", "hi")]
    );
    assert_eq!(c.workdir.as_deref(), Some("/tmp"));
    assert_eq!(
        c.user,
        Some(User {
            uid: 1000,
            gid: 1000
        })
    );
    assert_eq!(c.hostname, "every-key.example");
    assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
    assert_eq!(c.stop_timeout, Duration::from_secs(30));
    assert_eq!(
        unit.mounts,
        [
            Mount {
                source: "/srv/data".into(),
                target: "/data".into(),
                readonly: true,
                kind: MountKind::Bind,
                create: false,
                size: None,
                mode: None,
            },
            Mount {
                source: "/srv/cache".into(),
                target: "/var/cache/app".into(),
                readonly: false,
                kind: MountKind::Bind,
                create: false,
                size: None,
                mode: None,
            },
        ]
    );
    assert_eq!(unit.network, Network::with_mode(NetworkMode::Host));
    assert_eq!(
        unit.resources,
        Resources {
            memory: Some(64 << 20),
            cpus: Some(0.5),
            pids: Some(128)
        }
    );
    assert_eq!(
        unit.restart,
        Restart {
            policy: Policy::OnFailure {
                max_retries: Some(3)
            },
            delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    );
    assert!(!unit.autostart);
}

#[test]
fn normalized_values() {
    let base = "[container]\nrootfs = \"/r\"\ncommand = [\"x\"]\n";
    let cases: &[(&str, &str, &str)] = &[
        ("stop_signal = \"term\"", "signal", "SIGTERM"),
        ("stop_signal = \"15\"", "signal", "SIGTERM"),
        ("stop_signal = 9", "signal", "SIGKILL"),
        ("stop_signal = \"SIGKILL\"", "signal", "SIGKILL"),
        ("user = \"1000\"", "user", "1000:0"),
        ("user = \"5:6\"", "user", "5:6"),
        ("user = 7", "user", "7:0"),
        ("stop_timeout = \"0s\"", "timeout", "0s"),
        ("stop_timeout = \"1m 30s\"", "timeout", "1m 30s"),
    ];
    for (line, what, want) in cases {
        let text = format!("{base}{line}\n");
        let unit = match check_text(&text) {
            Ok(unit) => unit,
            Err(e) => panic!("{line}: {e}"),
        };
        let c = &unit.container;
        let got = match *what {
            "signal" => c.stop_signal.clone().unwrap_or_default(),
            "user" => c
                .user
                .map(|u| format!("{}:{}", u.uid, u.gid))
                .unwrap_or_default(),
            _ => humantime::format_duration(c.stop_timeout).to_string(),
        };
        assert_eq!(got, *want, "{line}");
    }
}

#[test]
fn default_hostname_follows_the_name() {
    let text = "[container]\nrootfs = \"/r\"\ncommand = [\"x\"]\n";
    let cases: &[(&str, &str)] = &[
        ("web", "web"),
        ("Cache_Server.v2", "cache-server-v2"),
        ("db_", "db"),
    ];
    for (name, want) in cases {
        let got = parse(name, Path::new("x.toml"), text).map(|u| u.container.hostname);
        assert_eq!(got.as_deref().ok(), Some(*want), "{name}");
    }
}

#[test]
fn bad_unit_names() {
    let text = "[container]\nrootfs = \"/r\"\ncommand = [\"x\"]\n";
    let long = "a".repeat(64);
    let max = "a".repeat(63);
    let cases: &[(&str, bool)] = &[
        ("web", true),
        ("Web_1.v2-x", true),
        ("9lives", true),
        (&max, true),
        ("bad name!", false),
        ("_web", false),
        ("-web", false),
        (".web", false),
        ("", false),
        ("wéb", false),
        (&long, false),
    ];
    for (name, ok) in cases {
        assert_eq!(valid_name(name), *ok, "{name:?}");
        let result = parse(name, Path::new("x.toml"), text);
        match (ok, result) {
            (true, Ok(_)) => {}
            (false, Err(ds)) => {
                assert_eq!(ds.len(), 1);
                assert_eq!((ds[0].line, ds[0].column), (1, 1));
                assert!(
                    ds[0].message.starts_with("invalid unit name"),
                    "{}",
                    ds[0].message
                );
            }
            (_, other) => panic!("{name:?}: {other:?}"),
        }
    }
    // The name is reported alongside problems in the text, and first.
    let Err(ds) = parse(
        "bad name!",
        Path::new("bad name!.toml"),
        "[container]\nrootfs = \"r\"\n",
    ) else {
        panic!("accepted");
    };
    assert_eq!(
        render(&ds),
        "1:1: invalid unit name \"bad name!\": use 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit, and at most one '@' between two such names (an instance of a template)\n\
         1:1: missing required key `command` in [container]\n\
         2:10: rootfs must be an absolute path"
    );
}

#[test]
fn unit_names() {
    let cases: &[(&str, Option<&str>)] = &[
        ("web.toml", Some("web")),
        ("/etc/rcd/units/web.toml", Some("web")),
        ("api.v2.toml", Some("api.v2")),
        ("bad name!.toml", Some("bad name!")),
        ("web", None),
        ("web.yaml", None),
        ("web.TOML", None),
        ("web.toml~", None),
        ("web.toml.bak", None),
        ("web.toml.swp", None),
        (".web.toml.swp", None),
        (".web.toml", None),
        (".#web.toml", None),
        ("#web.toml#", None),
        ("4913", None),
        (".toml", None),
        ("/etc/rcd/units/", None),
        ("", None),
    ];
    for (path, want) in cases {
        assert_eq!(unit_name(Path::new(path)).as_deref(), *want, "{path:?}");
    }
}

/// A minimal valid body, with `extra` appended to `[container]`.
fn unit_with(extra: &str, tail: &str) -> String {
    format!("[container]\nrootfs = \"/srv/r\"\ncommand = [\"sh\", \"-c\", \"x\"]\n{extra}\n{tail}")
}

#[test]
fn spec_hash_table() {
    let base = unit_with(
        "env = { A = \"1\", B = \"2\" }",
        "[resources]\ncpus = 1\nmemory = \"64M\"\n",
    );
    let same: &[(&str, String)] = &[
        ("identical", base.clone()),
        (
            "comments and blank lines",
            format!("# a comment\n\n{}", base.replace("cpus = 1", "cpus = 1 # one CPU\n")),
        ),
        (
            "key order",
            "[resources]\nmemory = \"64M\"\ncpus = 1\n[container]\ncommand = [\"sh\", \"-c\", \"x\"]\nenv = { B = \"2\", A = \"1\" }\nrootfs = \"/srv/r\"\n".into(),
        ),
        ("cpus 1.0", base.replace("cpus = 1", "cpus = 1.0")),
        ("memory in bytes", base.replace("\"64M\"", "\"67108864\"")),
        ("memory as an integer", base.replace("\"64M\"", "67108864")),
        ("memory as 64mb", base.replace("\"64M\"", "\"64mb\"")),
        ("env as a table", base.replace("env = { A = \"1\", B = \"2\" }", "[container.env]\nA = \"1\"\nB = \"2\"")),
        ("description", format!("[unit]\ndescription = \"d\"\n{base}")),
        ("restart policy", format!("{base}[restart]\npolicy = \"always\"\ndelay = \"1s\"\n")),
        ("autostart", format!("{base}[install]\nautostart = false\n")),
        ("explicit defaults", base.replace("env =", "workdir = \"/\"\nuser = \"0:0\"\nstop_signal = \"TERM\"\nstop_timeout = \"10s\"\nhostname = \"test\"\nenv =")),
        ("network bridge", format!("{base}[network]\nmode = \"bridge\"\n")),
        ("default network", format!("{base}[network]\nnetworks = [\"rcd\"]\n")),
        ("empty ports", format!("{base}[network]\nports = []\n")),
        ("security defaults", format!("{base}[security]\nseccomp = \"default\"\nno_new_privileges = true\nprivileged = false\ncap_add = []\n")),
        ("knob defaults", base.replace("env =", "read_only = false\ninit = false\nlabels = {}\nulimits = {}\nenv =")),
    ];
    let differ: &[(&str, String)] = &[
        ("command", base.replace("\"x\"", "\"y\"")),
        ("env value", base.replace("\"2\"", "\"3\"")),
        (
            "env key added",
            base.replace("B = \"2\"", "B = \"2\", C = \"\""),
        ),
        ("rootfs", base.replace("/srv/r", "/srv/s")),
        (
            "workdir",
            base.replace("env =", "workdir = \"/tmp\"\nenv ="),
        ),
        ("user", base.replace("env =", "user = \"1\"\nenv =")),
        (
            "hostname",
            base.replace("env =", "hostname = \"other\"\nenv ="),
        ),
        (
            "stop signal",
            base.replace("env =", "stop_signal = \"QUIT\"\nenv ="),
        ),
        (
            "stop timeout",
            base.replace("env =", "stop_timeout = \"11s\"\nenv ="),
        ),
        (
            "a mount",
            format!("{base}[[mount]]\nsource = \"/a\"\ntarget = \"/b\"\n"),
        ),
        (
            "network host",
            format!("{base}[network]\nmode = \"host\"\n"),
        ),
        (
            "network none",
            format!("{base}[network]\nmode = \"none\"\n"),
        ),
        (
            "network container",
            format!("{base}[network]\nmode = \"container:db\"\n"),
        ),
        ("cpus", base.replace("cpus = 1", "cpus = 2")),
        ("memory", base.replace("\"64M\"", "\"65M\"")),
        ("pids", base.replace("cpus = 1", "cpus = 1\npids = 10")),
        ("no memory limit", base.replace("memory = \"64M\"", "")),
        (
            "a label",
            base.replace("env =", "labels = { a = \"b\" }\nenv ="),
        ),
        (
            "read_only",
            base.replace("env =", "read_only = true\nenv ="),
        ),
        ("init", base.replace("env =", "init = true\nenv =")),
        (
            "shm_size",
            base.replace("env =", "shm_size = \"1M\"\nenv ="),
        ),
        (
            "a ulimit",
            base.replace("env =", "ulimits = { nofile = 10 }\nenv ="),
        ),
        (
            "a sysctl",
            base.replace("env =", "sysctls = { \"net.ipv4.ip_forward\" = 1 }\nenv ="),
        ),
        (
            "a device",
            base.replace("env =", "devices = [\"/dev/fuse\"]\nenv ="),
        ),
        ("dns", format!("{base}[network]\ndns = [\"192.0.2.1\"]\n")),
        (
            "cap_add",
            format!("{base}[security]\ncap_add = [\"NET_ADMIN\"]\n"),
        ),
        (
            "cap_drop",
            format!("{base}[security]\ncap_drop = [\"ALL\"]\n"),
        ),
        (
            "privileged",
            format!("{base}[security]\nprivileged = true\n"),
        ),
        (
            "seccomp",
            format!("{base}[security]\nseccomp = \"unconfined\"\n"),
        ),
        (
            "no_new_privileges off",
            format!("{base}[security]\nno_new_privileges = false\n"),
        ),
        (
            "a tmpfs",
            format!("{base}[[mount]]\ntype = \"tmpfs\"\ntarget = \"/t\"\n"),
        ),
    ];
    let hash = |label: &str, text: &str| match check_text(text) {
        Ok(unit) => unit.spec_hash,
        Err(e) => panic!("{label}: {e}\n{text}"),
    };
    let base_hash = hash("base", &base);
    for (label, text) in same {
        assert_eq!(hash(label, text), base_hash, "{label} changed the hash");
    }
    for (label, text) in differ {
        assert_ne!(hash(label, text), base_hash, "{label} kept the hash");
    }
    // Mount order is significant: a later mount can cover an earlier one.
    let m = |a: &str, b: &str| {
        format!("{base}[[mount]]\nsource = \"/s\"\ntarget = \"{a}\"\n[[mount]]\nsource = \"/s\"\ntarget = \"{b}\"\n")
    };
    assert_ne!(hash("ab", &m("/a", "/b")), hash("ba", &m("/b", "/a")));
    // `create` says what to do about a missing source, not what the container is.
    let bind = format!("{base}[[mount]]\nsource = \"/a\"\ntarget = \"/b\"\n");
    assert_eq!(
        hash("bind", &bind),
        hash("bind created", &format!("{bind}create = true\n"))
    );
}

#[test]
fn every_knob_is_read() {
    let file = fixtures("good").join("every_knob.toml");
    let u = match parse("every_knob", &file, &read(&file)) {
        Ok(u) => u,
        Err(ds) => panic!("{}", render(&ds)),
    };
    let c = &u.container;
    assert_eq!(c.labels["traefik.enable"], "true");
    assert!(c.read_only && c.init);
    assert_eq!(c.shm_size, Some(256 << 20));
    assert_eq!(
        c.ulimits["RLIMIT_NOFILE"],
        Ulimit {
            soft: 65536,
            hard: 65536
        }
    );
    assert_eq!(
        c.ulimits["RLIMIT_MEMLOCK"],
        Ulimit {
            soft: u64::MAX,
            hard: u64::MAX
        }
    );
    assert_eq!(c.sysctls["fs.mqueue.msg_max"], "100");
    assert_eq!(c.sysctls["net.ipv4.ip_unprivileged_port_start"], "0");
    assert_eq!(c.devices.len(), 3);
    assert_eq!(c.devices[2].access, "r");
    assert_eq!(u.mounts[0].kind, MountKind::Bind);
    assert!(u.mounts[0].create);
    assert_eq!(u.mounts[1].kind, MountKind::Tmpfs);
    assert_eq!(
        (u.mounts[1].size, u.mounts[1].mode),
        (Some(64 << 20), Some(0o775))
    );
    let n = &u.network.names;
    assert_eq!(n.dns.len(), 2);
    assert_eq!(n.dns_search, ["example.test"]);
    assert_eq!(
        n.extra_hosts[1],
        ("v6.test".to_string(), "2001:db8::1".parse().unwrap())
    );
    let s = &u.security;
    assert_eq!(s.cap_drop, ["ALL"]);
    assert_eq!(s.cap_add[0], "CAP_CHOWN");
    assert_eq!(
        s.seccomp,
        Seccomp::Profile("/etc/rcd/seccomp/postgres.json".into())
    );
}

#[test]
fn network_spec_hash() {
    let net = |lines: &str| unit_with("", &format!("[network]\nmode = \"bridge\"\n{lines}"));
    let hash = |text: &str| match check_text(text) {
        Ok(u) => u.spec_hash,
        Err(e) => panic!("{e}\n{text}"),
    };
    let base = hash(&net("ports = [\"8080:80\", \"53:53/udp\"]"));
    let same = [
        // The default network written out, ports reordered or spelled out: the same container.
        "networks = [\"rcd\"]\nports = [\"8080:80\", \"53:53/udp\"]",
        "ports = [\"53:53/udp\", \"8080:80\"]",
        "ports = [\"8080:80/tcp\", \"53:53/UDP\"]",
        "ports = [\"8080-8080:80-80\", \"053:053/udp\"]",
    ];
    for lines in same {
        assert_eq!(hash(&net(lines)), base, "{lines}");
    }
    let differ = [
        "ports = [\"8080:80\"]",
        "ports = [\"8080:80\", \"53:53/tcp\"]",
        "ports = [\"8081:80\", \"53:53/udp\"]",
        "ports = [\"8080:81\", \"53:53/udp\"]",
        "ports = [\"127.0.0.1:8080:80\", \"53:53/udp\"]",
        "ports = [\"80\", \"53:53/udp\"]",
        "networks = [\"backend\"]\nports = [\"8080:80\", \"53:53/udp\"]",
        "networks = [\"rcd\", \"backend\"]\nports = [\"8080:80\", \"53:53/udp\"]",
    ];
    for lines in differ {
        assert_ne!(hash(&net(lines)), base, "{lines}");
    }
    // The first network is the default route: order matters.
    assert_ne!(
        hash(&net("networks = [\"a\", \"b\"]")),
        hash(&net("networks = [\"b\", \"a\"]"))
    );
    let joined =
        |target: &str| unit_with("", &format!("[network]\nmode = \"container:{target}\"\n"));
    assert_ne!(hash(&joined("a")), hash(&joined("b")));
}

#[test]
fn network_keys_are_read() {
    let file = fixtures("good").join("published.toml");
    let unit = match parse("published", &file, &read(&file)) {
        Ok(unit) => unit,
        Err(ds) => panic!("{}", render(&ds)),
    };
    let n = &unit.network;
    assert_eq!(n.mode, NetworkMode::Bridge);
    assert_eq!(n.networks, ["rcd", "backend", "a.b_c-9"]);
    let shown: Vec<String> = n.ports.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "8080:80/tcp",
            "127.0.0.1:8443:443/tcp",
            "5353:53/udp",
            "9999:9999/sctp",
            "80/tcp",
            "127.0.0.1::81/tcp",
            "8000-8010:8000-8010/tcp",
            "7000-7010:82/tcp",
            "[::1]:8081:80/tcp",
            "[::]::83/udp",
            "127.0.0.2:8443:444/tcp",
            "8080:80/udp",
        ]
    );
    assert_eq!(
        n.ports[1],
        PortMapping {
            host_ip: Some(std::net::IpAddr::from([127, 0, 0, 1])),
            host_port: Some(PortRange {
                first: 8443,
                last: 8443
            }),
            container_port: PortRange {
                first: 443,
                last: 443
            },
            proto: Proto::Tcp,
        }
    );
    assert_eq!(
        n.ports[4].host_port, None,
        "a bare port is an ephemeral host port"
    );

    let Ok(bridge) = check_text(&unit_with("", "[network]\nmode = \"bridge\"\n")) else {
        panic!("bridge unit rejected");
    };
    assert_eq!(bridge.network.networks, [DEFAULT_NETWORK]);
    assert!(bridge.network.ports.is_empty());

    let Ok(joined) = check_text(&unit_with("", "[network]\nmode = \"container:db\"\n")) else {
        panic!("container unit rejected");
    };
    assert_eq!(joined.network.mode, NetworkMode::Container("db".into()));
    assert!(joined.network.networks.is_empty());
}

/// `rctl inspect` shows the mode as written and ports as fields.
#[test]
fn network_json() {
    let text = unit_with(
        "",
        "[network]\nmode = \"bridge\"\nports = [\"[::1]:8000-8001:80-81/udp\", \"80\"]\n",
    );
    let Ok(unit) = check_text(&text) else {
        panic!("rejected");
    };
    let json = serde_json::to_value(&unit.network).unwrap_or_default();
    assert_eq!(
        json,
        serde_json::json!({
            "mode": "bridge",
            "networks": ["rcd"],
            "ports": [
                {
                    "host_ip": "::1",
                    "host_port": {"first": 8000, "last": 8001},
                    "container_port": {"first": 80, "last": 81},
                    "proto": "udp"
                },
                {
                    "host_ip": null,
                    "host_port": null,
                    "container_port": {"first": 80, "last": 80},
                    "proto": "tcp"
                }
            ]
        })
    );
    let joined = Network::with_mode(NetworkMode::Container("db".into()));
    assert_eq!(
        serde_json::to_value(&joined).unwrap_or_default()["mode"],
        "container:db"
    );
}

/// A root-owned 0755 directory holding `files` (name, text) at mode 0644.
fn unit_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let Ok(dir) = tempfile::tempdir() else {
        panic!("tempdir");
    };
    assert!(fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).is_ok());
    for (name, text) in files {
        let path = dir.path().join(name);
        assert!(fs::write(&path, text).is_ok());
        assert!(fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).is_ok());
    }
    dir
}

#[test]
fn load_file_checks_trust_then_parses() {
    let good = unit_with("", "");
    let dir = unit_dir(&[("web.toml", &good), ("bad.toml", "[container]\n")]);
    let web = dir.path().join("web.toml");
    let loaded = load_file(&web);
    assert!(
        matches!(&loaded, Ok(u) if u.name == "web" && u.file == web),
        "{loaded:?}"
    );

    let bad = load_file(&dir.path().join("bad.toml"));
    // Neither `rootfs` nor `image`: whether `command` is required cannot be told.
    assert!(
        matches!(&bad, Err(Error::Invalid { diagnostics }) if diagnostics.len() == 1),
        "{bad:?}"
    );

    assert!(fs::set_permissions(&web, fs::Permissions::from_mode(0o666)).is_ok());
    let refused = load_file(&web);
    assert!(
        matches!(&refused, Err(Error::Untrusted { reason, .. }) if reason == "writable by group or others (mode 0666)"),
        "{refused:?}"
    );

    let backup = dir.path().join("web.toml~");
    assert!(fs::write(&backup, &good).is_ok());
    assert!(matches!(load_file(&backup), Err(Error::Invalid { .. })));

    assert!(matches!(
        load_file(&dir.path().join("gone.toml")),
        Err(Error::Read { .. })
    ));
}

#[test]
fn load_file_refuses_a_file_over_1_mib_unread() {
    // Valid as TOML whatever its length: only the size can refuse it.
    let good = unit_with("", "");
    let at_limit = format!("{good}#{}\n", "x".repeat(1024 * 1024 - good.len() - 2));
    let over = format!("{at_limit}#\n");
    let dir = unit_dir(&[("fits.toml", &at_limit), ("big.toml", &over)]);
    assert!(load_file(&dir.path().join("fits.toml")).is_ok());
    let big = load_file(&dir.path().join("big.toml"));
    assert!(
        matches!(&big, Err(e @ Error::Read { .. }) if e.to_string().ends_with("big.toml: cannot read: larger than 1048576 bytes")),
        "{big:?}"
    );
}

#[test]
fn load_file_reports_a_symlink_loop() {
    let dir = unit_dir(&[]);
    let (a, b) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
    assert!(std::os::unix::fs::symlink(&b, &a).is_ok());
    assert!(std::os::unix::fs::symlink(&a, &b).is_ok());
    let looped = load_file(&a);
    assert!(
        matches!(&looped, Err(e @ Error::Read { .. }) if e.to_string().contains("symbolic links")),
        "{looped:?}"
    );
}

#[test]
fn check_paths_reports_everything() {
    let good = unit_with("", "");
    let dir = unit_dir(&[
        ("a_good.toml", &good),
        (
            "b_bad.toml",
            "[container]\nrootfs = \"rel\"\ncommand = []\n",
        ),
        ("c_loose.toml", &good),
        ("web.toml~", "garbage"),
        (".hidden.toml", "garbage"),
        ("notes.txt", "garbage"),
    ]);
    let loose = dir.path().join("c_loose.toml");
    assert!(fs::set_permissions(&loose, fs::Permissions::from_mode(0o664)).is_ok());
    let missing = dir.path().join("missing.toml");

    let got = check_paths(
        &[
            dir.path().to_path_buf(),
            missing.clone(),
            dir.path().join("a_good.toml"),
        ],
        None,
    );
    let want = [
        (
            dir.path().join("b_bad.toml"),
            2,
            10,
            "rootfs must be an absolute path".to_owned(),
        ),
        (
            dir.path().join("b_bad.toml"),
            3,
            11,
            "command must not be empty".to_owned(),
        ),
        (
            loose,
            1,
            1,
            "refused: writable by group or others (mode 0664)".to_owned(),
        ),
        (
            missing,
            1,
            1,
            "cannot read: No such file or directory (os error 2)".to_owned(),
        ),
    ];
    let got: Vec<_> = got
        .into_iter()
        .map(|d| (d.file, d.line, d.column, d.message))
        .collect();
    assert_eq!(got, want);

    // A directory others can write is refused once, not once per file.
    assert!(fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).is_ok());
    let got = check_paths(&[dir.path().to_path_buf()], None);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].message,
        "refused: writable by group or others (mode 0777)"
    );

    let clean = unit_dir(&[("a.toml", &good), ("b.toml", &good)]);
    assert_eq!(check_paths(&[clean.path().to_path_buf()], None), []);
}

#[test]
fn check_paths_follows_container_modes() {
    let joins =
        |target: &str| unit_with("", &format!("[network]\nmode = \"container:{target}\"\n"));
    let good = unit_with("", "");
    let (web, a, b) = (joins("db"), joins("b"), joins("a"));
    let dir = unit_dir(&[
        ("web.toml", &web),
        ("a.toml", &a),
        ("b.toml", &b),
        ("ok.toml", &joins("broken")),
        ("broken.toml", "[container]\n"),
    ]);
    let got: Vec<_> = check_paths(&[dir.path().to_path_buf()], None)
        .into_iter()
        .map(|d| {
            let file = d.file.file_name().map(|f| f.to_string_lossy().into_owned());
            format!(
                "{}:{}:{}: {}",
                file.unwrap_or_default(),
                d.line,
                d.column,
                d.message
            )
        })
        .collect();
    // The mode value is on line 6 of `unit_with`'s text, after `mode = `.
    assert_eq!(
        got,
        [
            "a.toml:6:8: unit a: network mode container:b forms a cycle: a -> b -> a",
            "b.toml:6:8: unit b: network mode container:a forms a cycle: b -> a -> b",
            "broken.toml:1:1: missing required key `rootfs` or `image` in [container]",
            "web.toml:6:8: unit web: network mode container:db names a unit that does not exist",
        ]
    );

    // A lone file is judged against the files beside it.
    let web_file = dir.path().join("web.toml");
    let got = check_paths(std::slice::from_ref(&web_file), None);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].file.as_path(), got[0].line, got[0].column),
        (web_file.as_path(), 6, 8)
    );
    assert!(fs::write(dir.path().join("db.toml"), &good).is_ok());
    assert!(fs::set_permissions(
        dir.path().join("db.toml"),
        fs::Permissions::from_mode(0o644)
    )
    .is_ok());
    assert_eq!(check_paths(&[web_file], None), []);
}

#[test]
fn unit_files_lists_units_only() {
    let dir = unit_dir(&[
        ("b.toml", ""),
        ("a.toml", ""),
        ("a.toml.bak", ""),
        (".a.toml.swp", ""),
        ("4913", ""),
    ]);
    let names: Vec<_> = unit_files(dir.path())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| unit_name(p))
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn columns_count_characters() {
    // "é" is two bytes; the column is where an editor puts the cursor.
    let text =
        "[container]\nrootfs = \"/r\"\ncommand = [\"x\"]\nenv = { \"é\" = \"1\", \"=\" = \"2\" }\n";
    assert_eq!(
        check_text(text).err().as_deref(),
        Some("4:20: env key \"=\" must not contain '='")
    );
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
    assert_eq!(line_col("ab", 99), (1, 3));
    assert_eq!(line_col("é", 1), (1, 1));
}

#[test]
fn error_diagnostics() {
    let e = Error::Untrusted {
        path: "/etc/rcd/units".into(),
        reason: "owned by uid 1000, not root".into(),
    };
    assert_eq!(
        e.diagnostics()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["/etc/rcd/units:1:1: refused: owned by uid 1000, not root"]
    );
}

#[test]
fn image_units_normalize_and_leave_defaults_unset() {
    let Ok(unit) = check_text("[container]\nimage = \"busybox\"\n") else {
        panic!("image unit rejected");
    };
    let c = &unit.container;
    assert_eq!(
        c.source,
        Source::Image {
            reference: "docker.io/library/busybox:latest".into(),
            pull: PullPolicy::Missing
        }
    );
    assert_eq!(c.command, None);
    assert_eq!(c.entrypoint, None);
    assert_eq!(c.workdir, None);
    assert_eq!(c.user, None);
    assert_eq!(c.stop_signal, None, "left to the image's StopSignal");
    let Ok(cleared) = check_text("[container]\nimage = \"busybox\"\nentrypoint = []\n") else {
        panic!("empty entrypoint rejected");
    };
    assert_eq!(cleared.container.entrypoint, Some(vec![]));
    assert_ne!(cleared.spec_hash, unit.spec_hash);
}

#[test]
fn image_spec_hash() {
    let hash = |text: &str| match check_text(text) {
        Ok(u) => u.spec_hash,
        Err(e) => panic!("{text}: {e}"),
    };
    let base = hash("[container]\nimage = \"busybox\"\n");
    // The same image written two ways is one image.
    assert_eq!(
        hash("[container]\nimage = \"docker.io/library/busybox:latest\"\n"),
        base
    );
    // The pull policy says when to fetch, not what runs.
    assert_eq!(
        hash("[container]\nimage = \"busybox\"\npull = \"always\"\n"),
        base
    );
    assert_ne!(hash("[container]\nimage = \"busybox:1.36\"\n"), base);
    assert_ne!(
        hash("[container]\nimage = \"busybox\"\nentrypoint = [\"sh\"]\n"),
        base
    );
    assert_ne!(
        hash("[container]\nimage = \"busybox\"\ncommand = [\"sh\"]\n"),
        base
    );
    // Setting the default explicitly overrides the image's, so it is a different container.
    assert_ne!(
        hash("[container]\nimage = \"busybox\"\nworkdir = \"/\"\n"),
        base
    );
    assert_ne!(hash("[container]\nimage = \"busybox\"\nuser = 0\n"), base);
    assert_ne!(
        hash("[container]\nimage = \"busybox\"\nstop_signal = \"TERM\"\n"),
        base
    );
}

/// A changed hash recreates every container on upgrade: these are the values of earlier
/// releases, and must stay so. (They changed once, on purpose, when the default network mode
/// became bridge: a unit that sets no mode then gets a network, so a new container.)
#[test]
fn spec_hashes_are_stable_across_releases() {
    let cases = [
        (
            "[container]\nimage = \"busybox\"\n",
            "e2c1f434cba1e84d33dfff9384d305a07dcb6452e980d14114cc7cbd470c3ec8",
        ),
        (
            "[container]\nrootfs = \"/r\"\ncommand = [\"x\"]\n",
            // The same as `mode = "bridge"` written out (see below).
            "ece166c1bbfe1c068f1df0f43fe1cc480f2c26f67e8ef749ff2976657a233f3b",
        ),
        (
            "[container]\nrootfs = \"/r\"\ncommand = [\"x\"]\nstop_signal = \"QUIT\"\n",
            "faacea8b62de3838dd48a06ea129c02166f0e6ffcba305a9e1e5c12d401f4917",
        ),
    ];
    for (text, want) in cases {
        match parse("t", Path::new("t.toml"), text) {
            Ok(u) => assert_eq!(u.spec_hash, want, "{text}"),
            Err(ds) => panic!("{text}: {}", render(&ds)),
        }
    }
}

/// Pinned when `[network]` gained bridge, container, networks and ports: a changed value
/// recreates every such container on upgrade.
#[test]
fn network_spec_hashes_are_pinned() {
    let base = "[container]\nrootfs = \"/r\"\ncommand = [\"x\"]\n[network]\n";
    let cases = [
        ("mode = \"bridge\"\n", "ece166c1bbfe1c068f1df0f43fe1cc480f2c26f67e8ef749ff2976657a233f3b"),
        (
            "mode = \"bridge\"\nnetworks = [\"rcd\", \"backend\"]\nports = [\"8080:80\", \"[::1]::53/udp\", \"8000-8001:9000-9001\"]\n",
            "49e5f0436ba6eed9557d7b5b3d8636b5a6a19f4e080d47e9a8bce53966f459e1",
        ),
        ("mode = \"container:db\"\n", "e1e2285920984f1dbbc2c1c04de3dec56bdd53828d6738ad8f674a46ef3cf12f"),
    ];
    for (lines, want) in cases {
        let text = format!("{base}{lines}");
        match parse("t", Path::new("t.toml"), &text) {
            Ok(u) => assert_eq!(u.spec_hash, want, "{text}"),
            Err(ds) => panic!("{text}: {}", render(&ds)),
        }
    }
}

/// Found by the unit_file fuzz target's check that the runtime spec says what the unit says
/// (fuzz/regressions/unit_file): a memory limit above i64::MAX was accepted and reached the
/// runtime negative, and u64::MAX as -1, which means no limit at all.
#[test]
fn memory_limits_reach_the_runtime_as_written() {
    let unit = |memory: &str| {
        let text = format!(
            "[container]\nrootfs = \"/r\"\ncommand = [\"x\"]\n[resources]\nmemory = {memory}\n"
        );
        check_text(&text)
    };
    for too_large in [
        "\"18446744073709551615\"",
        "\"9223372036854775808\"",
        "\"8388608t\"",
    ] {
        let Err(e) = unit(too_large) else {
            panic!("memory = {too_large} accepted");
        };
        assert!(
            e.contains("is above the maximum of 9223372036854775807 bytes"),
            "{e}"
        );
    }
    for (written, bytes) in [
        ("\"9223372036854775807\"", i64::MAX),
        ("9223372036854775807", i64::MAX),
        ("\"8388607t\"", 8_388_607 << 40),
    ] {
        let u = unit(written).unwrap();
        let process = crate::spec::process(&u, None, &[]).unwrap();
        let spec =
            crate::spec::build(&u, &process, Path::new("/r"), "rcd:test", &[], None, &[]).unwrap();
        let limit = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit());
        assert_eq!(limit, Some(bytes), "memory = {written}");
    }
}

/// Writes `text` at `dir/rel` (parents made 0755), mode 0644.
fn put(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        assert!(fs::create_dir_all(parent).is_ok());
        assert!(fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).is_ok());
    }
    assert!(fs::write(&path, text).is_ok());
    assert!(fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).is_ok());
    path
}

#[test]
fn instance_names() {
    assert!(valid_name("web@blue") && valid_name("web@0") && valid_name("a.b@c_d-1"));
    for bad in ["web@", "@blue", "a@b@c", "web@-x", "web@b/c"] {
        assert!(!valid_name(bad), "{bad}");
    }
    assert!(is_template("web@") && !is_template("web") && !is_template("web@blue"));
    assert_eq!(validate::default_hostname("web@Blue"), "web-blue");
}

#[test]
fn templates_instances_and_drop_ins() {
    let dir = unit_dir(&[]);
    let d = dir.path();
    let template = put(
        d,
        "web@.toml",
        "[container]\nrootfs = \"/srv/r\"\nhostname = \"%i-host\"\ncommand = [\"echo\", \"%n\", \"100%%\"]\n",
    );
    let blue = d.join("web@blue.toml");
    assert!(std::os::unix::fs::symlink("web@.toml", &blue).is_ok());
    let green = put(
        d,
        "web@green.toml",
        "[container]\nenv = { COLOR = \"green\" }\n",
    );
    let all_mem = put(
        d,
        "web@.toml.d/10-mem.toml",
        "[resources]\nmemory = \"64M\"\n",
    );
    let blue_mem = put(
        d,
        "web@blue.toml.d/10-mem.toml",
        "[resources]\nmemory = \"128M\"\n",
    );
    let blue_pids = put(
        d,
        "web@blue.toml.d/20-pids.toml",
        "[resources]\npids = 50\n",
    );

    let b = match load_file(&blue) {
        Ok(u) => u,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(b.name, "web@blue");
    assert_eq!(b.container.hostname, "blue-host");
    assert_eq!(
        b.container.command.as_deref(),
        Some(&["echo".to_owned(), "web@blue".into(), "100%".into()][..])
    );
    // The instance's own 10-mem.toml replaces the template's.
    assert_eq!(b.resources.memory, Some(128 * 1024 * 1024));
    assert_eq!(b.resources.pids, Some(50));
    assert_eq!(b.sources, [template.clone(), blue_mem, blue_pids]);

    let g = match load_file(&green) {
        Ok(u) => u,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(g.container.hostname, "green-host");
    assert_eq!(
        g.container.env.get("COLOR").map(String::as_str),
        Some("green")
    );
    assert_eq!(g.resources.memory, Some(64 * 1024 * 1024));
    assert_eq!(g.sources, [template.clone(), green.clone(), all_mem]);
    assert_ne!(b.spec_hash, g.spec_hash);

    // The template is no unit; its instances are.
    let listed: Vec<String> = unit_files(d)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| unit_name(p))
        .collect();
    assert_eq!(listed, ["web@blue", "web@green"]);

    // A template's problem is found through it, said once, in the template's file.
    put(
        d,
        "web@.toml",
        "[container]\nrootfs = \"/srv/r\"\ncommand = [\"date\", \"+%s\"]\n",
    );
    let found = check_paths(&[d.to_path_buf()], None);
    let in_template: Vec<_> = found.iter().filter(|p| p.file == template).collect();
    assert_eq!(in_template.len(), 1, "{found:?}");
    assert_eq!((in_template[0].line, in_template[0].column), (3, 20));
    assert!(in_template[0].message.contains("%s"), "{found:?}");
}

#[test]
fn a_drop_in_problem_names_the_drop_in() {
    let dir = unit_dir(&[("web.toml", &unit_with("", ""))]);
    let d = dir.path();
    let bad = put(
        d,
        "web.toml.d/20-bad.toml",
        "# more memory\n[resources]\nmemory = \"lots\"\n",
    );
    let problems = match load_file(&d.join("web.toml")) {
        Err(Error::Invalid { diagnostics }) => diagnostics,
        other => panic!("{other:?}"),
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        (&problems[0].file, problems[0].line, problems[0].column),
        (&bad, 3, 10)
    );
    // A drop-in that is writable by others is refused like a unit file.
    assert!(fs::set_permissions(&bad, fs::Permissions::from_mode(0o666)).is_ok());
    assert!(matches!(
        load_file(&d.join("web.toml")),
        Err(Error::Untrusted { .. })
    ));
}

#[test]
fn effective_unit_names_each_value_origin() {
    let dir = unit_dir(&[(
        "web.toml",
        &unit_with("env = { A = \"1\" }", "[resources]\nmemory = \"64M\"\n"),
    )]);
    let d = dir.path();
    let drop_in = put(
        d,
        "web.toml.d/10.toml",
        "[container.env]\nB = \"2\"\n\n[resources]\nmemory = \"1G\"\n",
    );
    let text = match effective(&d.join("web.toml")) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let web = d.join("web.toml");
    let has = |line: String| assert!(text.contains(&line), "{line:?} not in:\n{text}");
    has(format!("rootfs = \"/srv/r\"  # {}:2", web.display()));
    has(format!("A = \"1\"  # {}:4", web.display()));
    has(format!("B = \"2\"  # {}:2", drop_in.display()));
    has(format!("memory = \"1G\"  # {}:5", drop_in.display()));
    assert!(!text.contains("64M"), "{text}");
    // What it prints is a unit that loads to the same thing.
    let again = parse("web", &web, &text);
    assert!(again.is_ok(), "{again:?}\n{text}");
}

#[test]
fn reload_signal_is_checked_and_not_part_of_the_spec() {
    let base = "[container]\nrootfs = \"/r\"\ncommand = [\"sh\"]\n";
    let parse = |extra: &str| super::parse("u", Path::new("/u/u.toml"), &format!("{base}{extra}"));
    let plain = parse("").unwrap();
    let hup = parse("reload_signal = \"HUP\"\n").unwrap();
    assert_eq!(plain.container.reload_signal, None);
    assert_eq!(hup.container.reload_signal.as_deref(), Some("SIGHUP"));
    assert_eq!(
        parse("reload_signal = 10\n")
            .unwrap()
            .container
            .reload_signal
            .as_deref(),
        Some("SIGUSR1")
    );
    assert_eq!(plain.spec_hash, hup.spec_hash);
    for bad in ["\"KILL\"", "\"SIGSTOP\"", "\"WHAT\""] {
        let err = parse(&format!("reload_signal = {bad}\n"))
            .map(|_| ())
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("invalid reload_signal"),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn http_and_tcp_probes_are_one_probe_at_a_time() {
    let base = "[container]\nrootfs = \"/r\"\ncommand = [\"sh\"]\n[health]\n";
    let parse = |extra: &str| super::parse("u", Path::new("/u/u.toml"), &format!("{base}{extra}"));
    let u = parse("http = \"http://127.0.0.1:8080/healthz\"\n").unwrap();
    assert!(matches!(u.health.net, Some(NetProbe::Http { .. })));
    assert_eq!(u.health.cmd, None);
    let u = parse("tcp = \"127.0.0.1:5432\"\n").unwrap();
    assert!(matches!(u.health.net, Some(NetProbe::Tcp(_))));
    for (bad, says) in [
        (
            "cmd = \"true\"\nhttp = \"http://127.0.0.1/\"",
            "one probe at a time",
        ),
        (
            "http = \"http://127.0.0.1/\"\ntcp = \"127.0.0.1:1\"",
            "one probe at a time",
        ),
        ("tcp = \"127.0.0.1:1\"\ndisable = true", "contradict"),
        ("http = \"http://web/\"", "not an IP address"),
    ] {
        let err = parse(&format!("{bad}\n")).map(|_| ()).unwrap_err();
        assert!(format!("{err:?}").contains(says), "{bad}: {err:?}");
    }
}

#[test]
fn a_startup_probe_needs_a_probe_and_has_defaults() {
    let base = "[container]\nrootfs = \"/r\"\ncommand = [\"sh\"]\n[health]\ncmd = \"true\"\n";
    let parse = |extra: &str| super::parse("u", Path::new("/u/u.toml"), &format!("{base}{extra}"));
    let u = parse("[health.startup]\ntcp = \"127.0.0.1:80\"\n").unwrap();
    let st = u.health.startup.unwrap();
    assert_eq!((st.interval, st.retries), (Duration::from_secs(1), 60));
    assert!(st.net.is_some() && st.cmd.is_none());
    let u = parse("[health.startup]\ncmd = \"test -f /ready\"\ninterval = \"2s\"\nretries = 5\n")
        .unwrap();
    let st = u.health.startup.unwrap();
    assert_eq!((st.interval, st.retries), (Duration::from_secs(2), 5));
    for (bad, says) in [
        ("[health.startup]\ninterval = \"1s\"\n", "needs a probe"),
        (
            "[health.startup]\ntcp = \"127.0.0.1:80\"\nretries = 0\n",
            "at least 1",
        ),
        (
            "[health.startup]\ntcp = \"127.0.0.1:80\"\nperiod = \"1s\"\n",
            "unknown",
        ),
    ] {
        let err = parse(bad).map(|_| ()).unwrap_err();
        assert!(format!("{err:?}").contains(says), "{bad}: {err:?}");
    }
}
