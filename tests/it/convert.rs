//! `rctl convert` on the compose corpus (tests/fixtures/compose), and the units it writes run
//! on a real daemon.
//!
//! The corpus names images from public registries this test cannot reach, so each unit's image
//! is replaced by one stand-in built here from the busybox rootfs and pushed to a registry on
//! 127.0.0.1: its entrypoint prints its user and arguments and sleeps, and the tools the
//! corpus' health checks call (`pg_isready`, `curl`, `redis-cli`) are stubs that succeed.
//! Three more things are changed for a shared test machine, and only these: published host
//! ports become free ones, an absolute bind source the host lacks moves under the test's
//! directory (so nothing is created on the host), and a device the host lacks is expected to
//! fail the start, with an error naming it. Everything else runs as converted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::registry::{Compression, Image, Layer, OciLayout, Registry, TarBuilder};

const SEC: Duration = Duration::from_secs(1);

const STANDIN: &[u8] = b"#!/bin/sh\necho \"standin uid=$(id -u) args=$*\"\n[ -d /run/secrets ] && echo \"secrets: $(ls /run/secrets)\"\necho ready\nexec sleep 2147483647\n";
const STUB: &[u8] = b"#!/bin/sh\nexit 0\n";

/// The stand-in image, pushed as `standin:1`; returns its reference.
fn standin(reg: &Registry, dir: &Path) -> String {
    let mut tar = TarBuilder::new();
    tar.file_mode("standin", 0o755, STANDIN)
        .file_mode("cron.sh", 0o755, STANDIN)
        .dir("usr/local/bin");
    for tool in ["pg_isready", "curl", "redis-cli"] {
        tar.file_mode(&format!("usr/local/bin/{tool}"), 0o755, STUB);
    }
    let mut image = Image::busybox();
    image
        .layers
        .push(Layer::from_tar(tar.finish(), Compression::Gzip));
    image.config["Entrypoint"] = serde_json::json!(["/standin"]);
    image.config["Cmd"] = serde_json::json!([]);
    let layout = OciLayout::create(&dir.join("standin"));
    let desc = layout.add_image(&image);
    layout.tag("1", &desc);
    reg.push_layout(&layout.dir, "standin:1");
    format!("{}/standin:1", reg.addr)
}

/// A TCP port free on 127.0.0.1 now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The corpus copied into `dir` (relative binds are then made there), secrets at 0600.
fn corpus_copy(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose");
    let dst = dir.join("compose");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let to = dst.join(p.file_name().unwrap());
        std::fs::copy(&p, &to).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dst.join("db_password.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    dst
}

/// What a converted unit is expected to do here.
enum Expect {
    Run,
    /// Fail to start, naming this missing device.
    MissingDevice(String),
    /// Fail to start: this ulimit's hard limit is above what this machine lets rcd give (no
    /// CAP_SYS_RESOURCE here, as in some sandboxes).
    HostLimit(String),
}

/// Whether a hard limit of `hard` ("unlimited", "-1" or a number) for ulimit `name` is more
/// than this process may give: above its own, without CAP_SYS_RESOURCE.
fn above_host(name: &str, hard: &str) -> bool {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    if eff & (1 << 24) != 0 {
        return false;
    }
    let resource = match name {
        "nofile" => Resource::RLIMIT_NOFILE,
        "memlock" => Resource::RLIMIT_MEMLOCK,
        "nproc" => Resource::RLIMIT_NPROC,
        other => panic!("the corpus' ulimit {other} is not known here"),
    };
    let (_, own) = getrlimit(resource).unwrap();
    let wanted = match hard {
        "unlimited" | "-1" => u64::MAX,
        n => n.parse().unwrap(),
    };
    own != RLIM_INFINITY && wanted > own
}

/// The converted unit adapted to this machine (see the module's comment), and what to expect.
fn adapt(text: &str, image: &str, scratch: &Path) -> (String, Expect) {
    let mut unit: toml::Table = toml::from_str(text).unwrap();
    let mut expect = Expect::Run;
    if let Some(toml::Value::Table(c)) = unit.get_mut("container") {
        c.insert("image".into(), toml::Value::String(image.into()));
        if let Some(toml::Value::Array(devices)) = c.get("devices") {
            for d in devices {
                let host = d.as_str().unwrap().split(':').next().unwrap().to_owned();
                if !Path::new(&host).exists() {
                    expect = Expect::MissingDevice(host);
                }
            }
        }
    }
    if let Some(toml::Value::Table(u)) = unit.get("container").and_then(|c| c.get("ulimits")) {
        for (name, v) in u {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            let hard = text.rsplit(':').next().unwrap();
            // The first in the unit's order is the one named.
            if above_host(name, hard) && !matches!(expect, Expect::HostLimit(_)) {
                expect = Expect::HostLimit(name.clone());
            }
        }
    }
    if let Some(toml::Value::Table(n)) = unit.get_mut("network") {
        if let Some(toml::Value::Array(ports)) = n.get_mut("ports") {
            for p in ports.iter_mut() {
                let spec = p.as_str().unwrap().to_owned();
                let (addr, proto) = spec
                    .split_once('/')
                    .map_or((spec.as_str(), None), |(a, b)| (a, Some(b)));
                let parts: Vec<&str> = addr.split(':').collect();
                let port = free_port().to_string();
                let mut out = match parts.as_slice() {
                    [ip, _, ctr] => format!("{ip}:{port}:{ctr}"),
                    [_, ctr] => format!("{port}:{ctr}"),
                    [ctr] => (*ctr).to_owned(),
                    _ => panic!("{spec}"),
                };
                if let Some(proto) = proto {
                    out = format!("{out}/{proto}");
                }
                *p = toml::Value::String(out);
            }
        }
    }
    if let Some(toml::Value::Array(mounts)) = unit.get_mut("mount") {
        for m in mounts.iter_mut().filter_map(toml::Value::as_table_mut) {
            let bind = m.get("type").is_none_or(|t| t.as_str() == Some("bind"));
            let Some(src) = m.get("source").and_then(|s| s.as_str()).map(str::to_owned) else {
                continue;
            };
            if bind && !src.starts_with(scratch.to_str().unwrap()) && !Path::new(&src).exists() {
                let moved = scratch.join("host").join(src.trim_start_matches('/'));
                std::fs::create_dir_all(&moved).unwrap();
                m.insert(
                    "source".into(),
                    toml::Value::String(moved.display().to_string()),
                );
            }
        }
    }
    (toml::to_string(&unit).unwrap(), expect)
}

/// A registry with the stand-in, a copy of the corpus, a daemon, and where units are written.
struct Setup {
    _reg: Registry,
    scratch: tempfile::TempDir,
    image: String,
    corpus: PathBuf,
    d: Daemon,
    out: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let reg = Registry::start();
        let scratch = tempfile::tempdir().unwrap();
        let image = standin(&reg, scratch.path());
        let corpus = corpus_copy(scratch.path());
        let out = scratch.path().join("converted");
        Setup {
            _reg: reg,
            scratch,
            image,
            corpus,
            d: Daemon::start(),
            out,
        }
    }

    /// `rctl convert CORPUS/FILE --out OUT`.
    fn convert(&self, file: &str) -> std::process::Output {
        self.d
            .rctl_command(&[
                "convert",
                self.corpus.join(file).to_str().unwrap(),
                "--out",
                self.out.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    }
}

/// Converts `file` of the corpus with `rctl convert --out`, runs its units on a daemon of its
/// own, and checks each one runs (or fails for a missing device, naming it).
fn converted_units_run(file: &str) {
    if !Path::new("/dev/net/tun").exists() {
        std::fs::create_dir_all("/dev/net").unwrap();
        let _ = Command::new("mknod")
            .args(["-m", "0666", "/dev/net/tun", "c", "10", "200"])
            .status();
    }
    let setup = Setup::new();
    let (d, out, image, scratch) = (&setup.d, &setup.out, &setup.image, &setup.scratch);
    let conv = setup.convert(file);
    let stderr = String::from_utf8_lossy(&conv.stderr).into_owned();
    assert!(conv.status.code().is_some_and(|c| c <= 1), "{stderr}");
    let mut expected = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "{file}: no unit written\n{stderr}");
    for path in names {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let (text, expect) = adapt(
            &std::fs::read_to_string(&path).unwrap(),
            image,
            scratch.path(),
        );
        d.write_unit(&name, &text);
        expected.push((name, expect, text));
    }
    for (name, expect, text) in &expected {
        let deadline = std::time::Instant::now() + 60 * SEC;
        loop {
            let s = d.status(name).unwrap_or_default();
            let done = match expect {
                Expect::Run => {
                    s["state"] == "running"
                        && String::from_utf8_lossy(&d.rctl(&["logs", name]).stdout)
                            .contains("ready")
                }
                Expect::MissingDevice(dev) => s["error"]
                    .as_str()
                    .is_some_and(|e| e.contains(&format!("device {dev}"))),
                Expect::HostLimit(name) => s["error"].as_str().is_some_and(|e| {
                    e.contains(&format!("ulimit {name}: the hard limit"))
                        && e.contains("CAP_SYS_RESOURCE")
                }),
            };
            if done {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{file}: unit {name} did not do what was expected\n{s:#}\n--- unit ---\n{text}\n--- convert ---\n{stderr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn databases_and_their_clients() {
    for f in [
        "postgres-adminer.yaml",
        "wordpress.yaml",
        "gitea.yaml",
        "elastic.yaml",
    ] {
        converted_units_run(f);
    }
}

#[test]
fn proxies_and_web_services() {
    for f in [
        "traefik.yaml",
        "nginx.yaml",
        "vaultwarden.yaml",
        "uptime-kuma.yaml",
        "nextcloud.yaml",
    ] {
        converted_units_run(f);
    }
}

#[test]
fn media_vpn_and_home_services() {
    for f in [
        "jellyfin.yaml",
        "plex.yaml",
        "wireguard.yaml",
        "gluetun-qbittorrent.yaml",
        "pihole.yaml",
        "homeassistant.yaml",
    ] {
        converted_units_run(f);
    }
}

#[test]
fn monitoring_and_apps_with_slow_health_checks() {
    for f in ["monitoring.yaml", "immich.yaml", "mastodon.yaml"] {
        converted_units_run(f);
    }
}

#[test]
fn a_converted_secret_is_readable_inside_and_the_report_names_refusals() {
    let setup = Setup::new();
    let (d, out, image, scratch) = (&setup.d, &setup.out, &setup.image, &setup.scratch);
    let conv = setup.convert("wordpress.yaml");
    assert_eq!(conv.status.code(), Some(0), "{conv:?}");
    let (text, _) = adapt(
        &std::fs::read_to_string(out.join("wordpress.toml")).unwrap(),
        image,
        scratch.path(),
    );
    d.write_unit("wordpress", &text);
    let (db, _) = adapt(
        &std::fs::read_to_string(out.join("db.toml")).unwrap(),
        image,
        scratch.path(),
    );
    d.write_unit("db", &db);
    wait_until(60 * SEC, "wordpress shows its secret", || {
        String::from_utf8_lossy(&d.rctl(&["logs", "wordpress"]).stdout)
            .contains("secrets: db_password")
    });
    let mode = d.rctl(&[
        "exec",
        "wordpress",
        "stat",
        "-c",
        "%a",
        "/run/secrets/db_password",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&mode.stdout).trim(),
        "440",
        "{mode:?}"
    );
    let inspect = String::from_utf8_lossy(&d.rctl(&["inspect", "wordpress"]).stdout).into_owned();
    // The secret's content (tests/fixtures/compose/db_password.txt) is never shown.
    let secret = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose/db_password.txt"),
    )
    .unwrap();
    assert!(!inspect.contains(secret.trim()), "{inspect}");

    // A refused key: exit 1, the key and its line on stderr, the unit's header naming it.
    let conv = setup.convert("immich.yaml");
    let stderr = String::from_utf8_lossy(&conv.stderr).into_owned();
    assert_eq!(conv.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("immich.yaml:6:7: services.immich-server.build: not converted"),
        "{stderr}"
    );
    let header = std::fs::read_to_string(out.join("immich-server.toml")).unwrap();
    assert!(
        header.contains("#   line 6: services.immich-server.build: not converted"),
        "{header}"
    );
    assert!(!out.join("immich-machine-learning.toml").exists());

    // A command line.
    let run = d
        .rctl_command(&[
            "convert",
            "docker run -d --name web -p 8080:80 --cap-drop ALL --read-only nginx:1.27",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout).into_owned();
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    for want in [
        "image = \"nginx:1.27\"",
        "read_only = true",
        "ports = [\"8080:80\"]",
        "cap_drop = [\"ALL\"]",
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
}
