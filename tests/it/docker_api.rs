//! The Docker Engine API with the real, unmodified docker CLI (`scripts/setup.sh` installs one
//! where the machine has none): version, info, ps with its flags and filters, inspect, start,
//! stop and restart mapped on rcd's intents, the refusals, errors and the read-only socket.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

/// The docker CLI, from PATH (or where Docker's packages put it).
fn docker_bin() -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("docker"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain([
            PathBuf::from("/usr/local/bin/docker"),
            PathBuf::from("/usr/bin/docker"),
        ])
        .find(|p| p.is_file());
    found.expect("the docker CLI is missing: `sh scripts/setup.sh` installs it")
}

/// A daemon serving the Docker API on `docker.sock` and, read-only, `docker-ro.sock`.
fn daemon() -> (Daemon, PathBuf, PathBuf) {
    let mut d = Daemon::new();
    let rw = d.dir.path().join("docker.sock");
    let ro = d.dir.path().join("docker-ro.sock");
    d.write_config(
        "",
        &format!(
            "[api]\ndocker_socket = {:?}\ndocker_read_only_socket = {:?}\n",
            rw.display().to_string(),
            ro.display().to_string()
        ),
    );
    d.spawn();
    (d, rw, ro)
}

/// `docker -H unix://SOCK ARGS...`, with no config of the user's.
fn docker(sock: &std::path::Path, args: &[&str]) -> Output {
    let cfg = tempfile::tempdir().unwrap();
    Command::new(docker_bin())
        .arg("--config")
        .arg(cfg.path())
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .args(args)
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{out:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_docker_cli_lists_inspects_starts_and_stops_units() {
    let (d, sock, ro) = daemon();
    d.write_unit(
        "web",
        &unit(
            "exec sleep 1000",
            "labels = { tier = \"front\" }\n[network]\nmode = \"none\"\n",
        ),
    );
    d.write_unit(
        "job",
        &unit(
            "exit 3",
            "[network]\nmode = \"none\"\n[restart]\npolicy = \"no\"\n",
        ),
    );
    let web = d.wait_state("web", "running", 20 * SEC);
    d.wait_state("job", "exited", 20 * SEC);

    // version and info.
    let v = ok(&docker(
        &sock,
        &[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Server.Os}}",
        ],
    ));
    assert_eq!(v.trim(), "1.44 linux");
    let info = ok(&docker(&sock, &["info", "--format", "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.Swarm.LocalNodeState}}"]));
    assert_eq!(info.trim(), "2 1 1 inactive");

    // ps: running only by default, -a for all, filters, -q with 64-hex ids cut to 12.
    let ps = ok(&docker(
        &sock,
        &["ps", "--format", "{{.Names}} {{.State}} {{.Status}}"],
    ));
    assert!(ps.starts_with("web running Up "), "{ps}");
    assert_eq!(ps.lines().count(), 1, "{ps}");
    let all = ok(&docker(
        &sock,
        &["ps", "-a", "--format", "{{.Names}} {{.State}} {{.Status}}"],
    ));
    assert!(
        all.lines().any(|l| l.starts_with("job exited Exited (3) ")),
        "{all}"
    );
    let exited = ok(&docker(
        &sock,
        &["ps", "-a", "-f", "status=exited", "--format", "{{.Names}}"],
    ));
    assert_eq!(exited.trim(), "job");
    let labelled = ok(&docker(
        &sock,
        &[
            "ps",
            "-a",
            "-f",
            "label=tier=front",
            "--format",
            "{{.Names}} {{.Label \"tier\"}}",
        ],
    ));
    assert_eq!(labelled.trim(), "web front");
    let ids = ok(&docker(&sock, &["ps", "-q"]));
    assert_eq!(ids.trim().len(), 12, "{ids}");

    // inspect, by name and by a short id: the id is 64 hex, state and labels are rcd's.
    let fmt = "{{.Id}} {{.Name}} {{.State.Status}} {{.State.Pid}} {{.Config.Labels.tier}} {{.HostConfig.RestartPolicy.Name}}";
    let by_name = ok(&docker(&sock, &["inspect", "--format", fmt, "web"]));
    let fields: Vec<&str> = by_name.split_whitespace().collect();
    assert_eq!(fields[0].len(), 64, "{by_name}");
    assert_eq!(&fields[1..3], ["/web", "running"], "{by_name}");
    assert_eq!(fields[3], pid_of(&web).to_string());
    assert_eq!(fields[4], "front");
    let by_id = ok(&docker(&sock, &["inspect", "--format", fmt, ids.trim()]));
    assert_eq!(by_id, by_name);
    let job = ok(&docker(
        &sock,
        &[
            "inspect",
            "--format",
            "{{.State.ExitCode}} {{.State.Running}}",
            "/job",
        ],
    ));
    assert_eq!(job.trim(), "3 false");

    // stop holds it stopped as `rctl stop` does; start clears the hold; restart gives a new pid.
    assert_eq!(ok(&docker(&sock, &["stop", "web"])).trim(), "web");
    let s = d.wait_state("web", "stopped", 20 * SEC);
    assert_eq!(s["held"], true, "{s:#}");
    // Stopping what is stopped is Docker's success (304).
    assert_eq!(ok(&docker(&sock, &["stop", "web"])).trim(), "web");
    assert_eq!(ok(&docker(&sock, &["start", "web"])).trim(), "web");
    let s = d.wait_state("web", "running", 20 * SEC);
    assert_eq!(s["held"], false);
    let pid = pid_of(&s);
    assert_eq!(ok(&docker(&sock, &["restart", "web"])).trim(), "web");
    d.wait_new_pid("web", pid, 20 * SEC);

    // Errors: an unknown container, and what unit files decide, with the file named.
    let missing = docker(&sock, &["inspect", "nosuch"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("No such object: nosuch"),
        "{missing:?}"
    );
    let run = docker(&sock, &["run", "--name", "x", "busybox", "true"]);
    let err = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(run.status.code(), Some(125), "{err}");
    assert!(
        err.contains("rcd runs containers from unit files: write") && err.contains("x.toml"),
        "{err}"
    );
    assert!(!err.contains("Unable to find image"), "{err}");
    let rm = docker(&sock, &["rm", "web"]);
    let err = String::from_utf8_lossy(&rm.stderr).into_owned();
    assert_eq!(rm.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("delete {}", d.units.join("web.toml").display())),
        "{err}"
    );
    assert_eq!(d.wait_state("web", "running", SEC)["held"], false);

    // The read-only socket: reads work, changes are refused and change nothing.
    let ps = ok(&docker(&ro, &["ps", "--format", "{{.Names}}"]));
    assert_eq!(ps.trim(), "web");
    let stop = docker(&ro, &["stop", "web"]);
    assert_eq!(stop.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&stop.stderr).contains("read-only"),
        "{stop:?}"
    );
    assert_eq!(d.wait_state("web", "running", SEC)["held"], false);
}

#[test]
fn the_api_answers_as_docker_does_at_every_version() {
    let (d, sock, _) = daemon();
    let get = |path: &str| {
        let out = Command::new("curl")
            .args(["-s", "-i", "--unix-socket"])
            .arg(&sock)
            .arg(format!("http://d{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ping = get("/_ping");
    assert!(
        ping.contains("Api-Version: 1.44") || ping.contains("api-version: 1.44"),
        "{ping}"
    );
    assert!(ping.to_lowercase().contains("ostype: linux"), "{ping}");
    assert!(ping.ends_with("OK"), "{ping}");
    // Traefik's pinned 1.24 and an unversioned path serve the same list.
    for path in [
        "/v1.24/containers/json",
        "/containers/json",
        "/v1.44/containers/json?all=1",
    ] {
        let r = get(path);
        assert!(r.starts_with("HTTP/1.1 200"), "{path}: {r}");
    }
    let old = get("/v1.20/containers/json");
    assert!(
        old.starts_with("HTTP/1.1 400") && old.contains("client version 1.20 is too old"),
        "{old}"
    );
    let new = get("/v1.99/version");
    assert!(
        new.contains("is too new. Maximum supported API version is 1.44"),
        "{new}"
    );
    let none = get("/v1.44/no/such/route");
    assert!(none.starts_with("HTTP/1.1 404"), "{none}");
    assert!(
        none.to_lowercase()
            .contains("content-type: application/json\r\n"),
        "{none}"
    );
    assert!(none.contains("{\"message\":\"page not found\"}"), "{none}");
    let bad = get("/containers/json?filters=%7B%22colour%22%3A%7B%22red%22%3Atrue%7D%7D");
    assert!(
        bad.starts_with("HTTP/1.1 400") && bad.contains("invalid filter 'colour'"),
        "{bad}"
    );
    let swarm = get("/v1.44/swarm");
    assert!(swarm.starts_with("HTTP/1.1 503"), "{swarm}");
    drop(d);
}
