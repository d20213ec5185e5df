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

    // A crash loop between two tries is running to Docker (listed by `ps`, State.Running),
    // and `docker stop` holds it down rather than answering "already stopped".
    d.write_unit(
        "crashy",
        &unit(
            "exit 1",
            "[network]\nmode = \"none\"\n[restart]\npolicy = \"always\"\ndelay = \"30s\"\n",
        ),
    );
    d.wait_state("crashy", "restarting", 20 * SEC);
    let ps = ok(&docker(&sock, &["ps", "--format", "{{.Names}} {{.State}}"]));
    assert!(ps.lines().any(|l| l == "crashy restarting"), "{ps}");
    let running = ok(&docker(
        &sock,
        &[
            "inspect",
            "--format",
            "{{.State.Running}} {{.State.Restarting}}",
            "crashy",
        ],
    ));
    assert_eq!(running.trim(), "true true");
    ok(&docker(&sock, &["stop", "crashy"]));
    let s = d.wait_state("crashy", "stopped", 10 * SEC);
    assert_eq!(s["held"], true, "{s}");
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
    // Timed in rcd's /metrics by the route's pattern (whatever the version prefix), as rcd's
    // own API is.
    let m = d.scrape();
    let list = "rcd_api_request_duration_seconds_count{method=\"GET\",route=\"/containers/json\"}";
    assert!(sample(&m, list) >= Some(4.0), "{m}");
    assert!(m.contains("route=\"/_ping\""), "{m}");
    drop(d);
}

#[test]
fn logs_events_kill_and_wait_through_the_docker_cli() {
    let (d, sock, _) = daemon();
    let since = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 1
    );
    d.write_unit(
        "talker",
        &unit(
            "trap 'echo got-hup' HUP; echo out1; echo err1 >&2; echo out2; \
             while true; do sleep 0.2; done",
            "[network]\nmode = \"none\"\n[container.labels]\ntier = \"web\"\n",
        ),
    );
    d.write_unit(
        "short",
        &unit(
            "echo first; sleep 2; echo last; exit 4",
            "[network]\nmode = \"none\"\n[restart]\npolicy = \"no\"\n",
        ),
    );
    d.wait_state("talker", "running", 20 * SEC);
    wait_until(10 * SEC, "talker's output", || {
        String::from_utf8_lossy(&d.rctl(&["logs", "talker"]).stdout).contains("out2")
    });

    // stdout and stderr demultiplexed by the CLI, --tail, -t with nine fraction digits.
    let logs = docker(&sock, &["logs", "talker"]);
    assert_eq!(
        String::from_utf8_lossy(&ok(&logs).into_bytes()),
        "out1\nout2\n"
    );
    assert_eq!(String::from_utf8_lossy(&logs.stderr), "err1\n");
    // One record, the file's last, whichever stream it is on.
    let tail = docker(&sock, &["logs", "--tail", "1", "talker"]);
    let both = ok(&tail) + &String::from_utf8_lossy(&tail.stderr);
    assert!(both == "out2\n" || both == "err1\n", "{both:?}");
    let ts = ok(&docker(&sock, &["logs", "-t", "talker"]));
    let first = ts.lines().next().unwrap();
    let (stamp, text) = first.split_once(' ').unwrap();
    assert_eq!(text, "out1");
    assert_eq!(
        stamp.len(),
        "2026-12-05T01:02:03.123456789Z".len(),
        "{stamp}"
    );

    // -f ends when the container followed ends (followed once it has started: before, there
    // is nothing to follow, as with Docker).
    wait_until(20 * SEC, "short's first line", || {
        String::from_utf8_lossy(&d.rctl(&["logs", "short"]).stdout).contains("first")
    });
    let started = std::time::Instant::now();
    let follow = docker(&sock, &["logs", "-f", "short"]);
    assert_eq!(ok(&follow), "first\nlast\n");
    assert!(started.elapsed() < 15 * SEC);
    // wait: the exit code of a container that has ended.
    assert_eq!(ok(&docker(&sock, &["wait", "short"])).trim(), "4");

    // kill -s HUP reaches the processes and changes nothing else.
    let pid = pid_of(&d.wait_state("talker", "running", SEC));
    ok(&docker(&sock, &["kill", "-s", "HUP", "talker"]));
    wait_until(10 * SEC, "the trap to run", || {
        ok(&docker(&sock, &["logs", "talker"])).contains("got-hup")
    });
    let s = d.wait_state("talker", "running", SEC);
    assert_eq!((pid_of(&s), s["held"].as_bool()), (pid, Some(false)));
    // A plain kill is a stop, held as `docker stop` is.
    ok(&docker(&sock, &["kill", "talker"]));
    assert_eq!(d.wait_state("talker", "stopped", 20 * SEC)["held"], true);
    let again = docker(&sock, &["kill", "talker"]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not running"),
        "{again:?}"
    );

    // events: what happened, as Docker's actions, replayed from rcd's event log.
    let until = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1
    );
    std::thread::sleep(SEC + SEC / 2);
    let events = ok(&docker(
        &sock,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "container=talker",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ],
    ));
    let actions: Vec<&str> = events.lines().collect();
    for want in ["create talker", "start talker", "stop talker"] {
        assert!(actions.contains(&want), "{want} not in {actions:?}");
    }
    assert!(!events.contains("short"), "{events}");
    let die = ok(&docker(
        &sock,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "event=die",
            "--format",
            "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
        ],
    ));
    assert!(die.lines().any(|l| l == "short 4"), "{die}");
    // label (all must hold) and image filters, and the attributes Docker's events carry.
    let filtered = |filters: &[&str]| {
        let mut args = vec!["events", "--since", &since, "--until", &until];
        for f in filters {
            args.extend(["--filter", f]);
        }
        args.extend(["--format", "{{.Actor.Attributes.name}} {{.From}}"]);
        ok(&docker(&sock, &args))
    };
    let web = filtered(&["label=tier=web", "event=start"]);
    assert_eq!(web.lines().collect::<Vec<_>>().len(), 1, "{web}");
    assert!(web.starts_with("talker /"), "{web}");
    let image = web.trim().split_once(' ').unwrap().1.to_owned();
    assert!(filtered(&["label=tier=web", "label=tier=db"]).is_empty());
    let by_image = filtered(&[&format!("image={image}"), "event=start"]);
    assert!(
        by_image.contains("talker") && by_image.contains("short"),
        "{by_image}"
    );
    assert!(filtered(&["image=elsewhere:1"]).is_empty());
    let bad = docker(&sock, &["events", "--until", &until, "--filter", "bogus=1"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("invalid filter 'bogus'"),
        "{bad:?}"
    );
}

#[test]
fn docker_stats_reads_the_cgroup_once_or_streaming() {
    let (d, sock, ro) = daemon();
    d.write_unit(
        "busy",
        &unit(
            "while true; do :; done",
            "[network]\nmode = \"none\"\n[resources]\nmemory = \"64M\"\npids = 50\n",
        ),
    );
    d.write_unit(
        "idle",
        &unit("exec sleep 1000", "[network]\nmode = \"none\"\n"),
    );
    d.wait_state("busy", "running", 20 * SEC);
    d.wait_state("idle", "running", 20 * SEC);
    std::thread::sleep(SEC);
    let started = std::time::Instant::now();
    let out = ok(&docker(
        &sock,
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}",
        ],
    ));
    let took = started.elapsed();
    let row = |name: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in {out}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let busy = row("busy");
    let cpu: f64 = busy[1].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 20.0, "a spinning shell uses a core: {out}");
    // "1.2MiB / 64MiB": the unit's memory limit.
    assert_eq!(busy[4], "64MiB", "{out}");
    // The shell alone: `:` is a builtin.
    assert_eq!(busy[5], "1", "{out}");
    let idle = row("idle");
    let idle_cpu: f64 = idle[1].trim_end_matches('%').parse().unwrap();
    assert!(idle_cpu < 5.0, "{out}");
    assert!(took < 5 * SEC, "{took:?}");
    // The read-only socket serves stats too (monitoring tools).
    let one = ok(&docker(
        &ro,
        &["stats", "--no-stream", "--format", "{{.Name}}", "idle"],
    ));
    assert_eq!(one.trim(), "idle");
}

#[test]
fn docker_exec_with_and_without_stdin_and_its_exit_code() {
    let (d, sock, ro) = daemon();
    d.write_unit(
        "box",
        &unit("exec sleep 1000", "[network]\nmode = \"none\"\n"),
    );
    d.wait_state("box", "running", 20 * SEC);
    assert_eq!(ok(&docker(&sock, &["exec", "box", "echo", "hi"])), "hi\n");
    // Without -i the CLI half-closes at once: the command must live on.
    assert_eq!(
        ok(&docker(
            &sock,
            &["exec", "box", "sh", "-c", "sleep 1; echo late"]
        )),
        "late\n"
    );
    // -e, -w, -u as Docker's: the user is looked up in the container's /etc/passwd.
    assert_eq!(
        ok(&docker(
            &sock,
            &[
                "exec",
                "-e",
                "EXTRA=1",
                "-w",
                "/tmp",
                "-u",
                "nobody:root",
                "box",
                "sh",
                "-c",
                "echo $EXTRA $(pwd) $(id -u):$(id -g)"
            ]
        )),
        "1 /tmp 65534:0\n"
    );
    let ghost = docker(&sock, &["exec", "-u", "ghost", "box", "true"]);
    assert!(
        String::from_utf8_lossy(&ghost.stderr)
            .contains("\"ghost\" is not in the container's /etc/passwd"),
        "{ghost:?}"
    );
    let failing = docker(&sock, &["exec", "box", "sh", "-c", "echo oops >&2; exit 7"]);
    assert_eq!(failing.status.code(), Some(7), "{failing:?}");
    assert_eq!(String::from_utf8_lossy(&failing.stderr), "oops\n");
    assert!(failing.stdout.is_empty());
    // -i: stdin reaches the command, its end is the command's EOF.
    let mut child = Command::new(docker_bin())
        .args([
            "-H",
            &format!("unix://{}", sock.display()),
            "exec",
            "-i",
            "box",
            "sh",
            "-c",
            "cat; echo done",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"piped\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "piped\ndone\n",
        "{out:?}"
    );
    // Not running, or on the read-only socket: refused.
    let ro_exec = docker(&ro, &["exec", "box", "true"]);
    assert!(!ro_exec.status.success());
    assert!(
        String::from_utf8_lossy(&ro_exec.stderr).contains("read-only"),
        "{ro_exec:?}"
    );
    ok(&docker(&sock, &["stop", "box"]));
    let stopped = docker(&sock, &["exec", "box", "true"]);
    assert!(
        String::from_utf8_lossy(&stopped.stderr).contains("is not running"),
        "{stopped:?}"
    );
}

#[test]
fn docker_pull_images_inspect_and_rmi_follow_rcds_rules() {
    use crate::registry::{busybox_oci_layout, Registry};
    let reg = Registry::start();
    let layouts = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_oci_layout(&layouts.path().join("busybox"));
    reg.push_layout(&layout.dir, "busybox:latest");
    reg.push_layout(&layout.dir, "spare:1");
    let (d, sock, _) = daemon();
    let image = format!("{}/busybox:latest", reg.addr);
    let spare = format!("{}/spare:1", reg.addr);

    let pulled = docker(&sock, &["pull", &spare]);
    let out = ok(&pulled);
    assert!(out.contains("Digest: sha256:"), "{out}");
    let listed = ok(&docker(
        &sock,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
    ));
    assert!(listed.lines().any(|l| l.starts_with(&spare)), "{listed}");
    let arch = ok(&docker(
        &sock,
        &[
            "image",
            "inspect",
            "--format",
            "{{.Os}} {{index .Config.Cmd 0}}",
            &spare,
        ],
    ));
    assert_eq!(arch.trim(), "linux sh");
    // A unit names the other image: rmi is refused while it does.
    d.write_unit(
        "user",
        &format!("[container]\nimage = \"{image}\"\ncommand = [\"sleep\", \"1000\"]\n[network]\nmode = \"none\"\n"),
    );
    d.wait_state("user", "running", 30 * SEC);
    let refused = docker(&sock, &["rmi", &image]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("user"),
        "{refused:?}"
    );
    // Both names are one image, as Docker lists it: one id, a row a tag; a reference filter
    // keeps the tags it matches.
    let rows = ok(&docker(
        &sock,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
    ));
    let ids: std::collections::BTreeSet<&str> =
        rows.lines().filter_map(|l| l.split(' ').nth(1)).collect();
    assert_eq!(ids.len(), 1, "{rows}");
    assert_eq!(rows.lines().count(), 2, "{rows}");
    let id = ok(&docker(&sock, &["images", "-q", &spare]));
    let id = id.trim();
    assert!(id.len() >= 12 && !id.contains('\n'), "{id}");
    let only = ok(&docker(
        &sock,
        &[
            "images",
            "--filter",
            &format!("reference={}/sp*", reg.addr),
            "--format",
            "{{.Repository}}",
        ],
    ));
    assert_eq!(only.trim(), format!("{}/spare", reg.addr));
    assert_eq!(
        ok(&docker(
            &sock,
            &["images", "-q", "--filter", "dangling=true"]
        )),
        ""
    );
    // Its id inspects, but does not remove (say which name).
    ok(&docker(&sock, &["image", "inspect", id]));
    let shared = docker(&sock, &["rmi", id]);
    assert!(
        String::from_utf8_lossy(&shared.stderr).contains("more than one name"),
        "{shared:?}"
    );
    ok(&docker(&sock, &["rmi", &spare]));
    let listed = ok(&docker(&sock, &["images", "--format", "{{.Repository}}"]));
    assert!(!listed.contains("spare"), "{listed}");
    assert!(listed.contains("busybox"), "{listed}");
    // A reference that does not exist: the pull fails with the registry's word.
    let missing = docker(&sock, &["pull", &format!("{}/nothing:here", reg.addr)]);
    assert!(!missing.status.success(), "{missing:?}");
}

/// The Docker SDK for Python's interpreter (`scripts/setup.sh` makes the venv).
fn sdk_python() -> PathBuf {
    let venv = std::env::var_os("RCD_DOCKER_SDK_VENV")
        .map_or_else(|| PathBuf::from("/var/tmp/rcd-docker-sdk"), PathBuf::from);
    let py = venv.join("bin/python");
    assert!(
        py.is_file(),
        "{} is missing: `sh scripts/setup.sh` installs the Docker SDK for Python there",
        py.display()
    );
    py
}

/// What the SDK script does, one JSON result per line, compared with rcd's own view.
const SDK_SCRIPT: &str = r#"
import json, sys, time, docker
c = docker.DockerClient(base_url="unix://" + sys.argv[1], version="auto", timeout=30)
out = {}
out["ping"] = c.ping()
out["version"] = c.version()["ApiVersion"]
names = sorted(x.name for x in c.containers.list(all=True))
out["names"] = names
web = c.containers.get("web")
out["status"] = web.status
out["labels"] = web.labels
out["image_attr"] = web.attrs["Config"]["Image"]
out["logs"] = web.logs(stdout=True, stderr=False).decode()
s = web.stats(stream=False)
out["stats_keys"] = sorted(k for k in ("cpu_stats", "precpu_stats", "memory_stats", "pids_stats") if k in s)
r = web.exec_run(["sh", "-c", "echo from-exec; exit 3"])
out["exec"] = [r.exit_code, r.output.decode()]
since = int(time.time()) - 60
web.stop()
web.reload()
out["after_stop"] = web.status
web.start()
web.reload()
out["after_start"] = web.status
until = int(time.time()) + 1
time.sleep(1.5)
ev = [e["Action"] for e in c.events(since=since, until=until, decode=True, filters={"container": "web"})]
out["events"] = ev
out["images"] = len(c.images.list())
try:
    c.containers.run("busybox", "true", name="nope")
    out["run"] = "accepted"
except docker.errors.APIError as e:
    out["run"] = [e.status_code, e.explanation]
print(json.dumps(out))
"#;

#[test]
fn the_docker_sdk_for_python_drives_the_same() {
    let py = sdk_python();
    let (d, sock, _) = daemon();
    d.write_unit(
        "web",
        &unit(
            "echo hello-sdk; exec sleep 1000",
            "labels = { app = \"web\" }\n[network]\nmode = \"none\"\n",
        ),
    );
    d.write_unit(
        "other",
        &unit("exec sleep 1000", "[network]\nmode = \"none\"\n"),
    );
    d.wait_state("web", "running", 20 * SEC);
    d.wait_state("other", "running", 20 * SEC);
    wait_until(10 * SEC, "web's output", || {
        String::from_utf8_lossy(&d.rctl(&["logs", "web"]).stdout).contains("hello-sdk")
    });
    let out = Command::new(py)
        .arg("-c")
        .arg(SDK_SCRIPT)
        .arg(&sock)
        .output()
        .unwrap();
    let text = ok(&out);
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["ping"], true);
    assert_eq!(v["version"], "1.44");
    assert_eq!(v["names"], serde_json::json!(["other", "web"]));
    assert_eq!(v["status"], "running");
    assert_eq!(v["labels"]["app"], "web");
    assert_eq!(v["logs"], "hello-sdk\n");
    assert_eq!(
        v["stats_keys"],
        serde_json::json!(["cpu_stats", "memory_stats", "pids_stats", "precpu_stats"])
    );
    assert_eq!(v["exec"], serde_json::json!([3, "from-exec\n"]));
    assert_eq!(v["after_stop"], "exited");
    assert_eq!(v["after_start"], "running");
    let events: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    for want in ["start", "stop"] {
        assert!(events.contains(&want), "{want} not in {events:?}");
    }
    assert_eq!(v["run"][0], 501, "{v}");
    assert!(v["run"][1].as_str().unwrap().contains("unit files"), "{v}");
    // The stop held the unit as `rctl stop` does, and the start released it.
    assert_eq!(d.wait_state("web", "running", SEC)["held"], false);
}

/// `curl --unix-socket SOCK http://d/PATH`: status line and body.
fn curl(sock: &std::path::Path, path: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time", "10", "--unix-socket"])
        .arg(sock)
        .arg(format!("http://d{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[test]
fn tool_shaped_sequences_at_their_pinned_versions() {
    let (d, sock, ro) = daemon();
    d.write_unit(
        "whoami",
        &unit(
            "exec sleep 1000",
            "labels = { \"traefik.enable\" = \"true\", \"traefik.http.routers.w.rule\" = \"Host(`w.localhost`)\" }\n",
        ),
    );
    d.wait_state("whoami", "running", 20 * SEC);

    // Traefik's docker provider at API 1.24: list, inspect each, labels and the bridge address.
    let (status, body) = curl(&ro, "/v1.24/containers/json?limit=0");
    assert!(status.contains("200"), "{status}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let c = &list[0];
    assert_eq!(c["Names"][0], "/whoami");
    assert_eq!(c["Labels"]["traefik.enable"], "true");
    let id = c["Id"].as_str().unwrap();
    assert_eq!(id.len(), 64);
    // Prometheus' docker_sd dereferences this map: never null.
    assert!(c["NetworkSettings"]["Networks"].is_object(), "{c}");
    let (_, body) = curl(&ro, &format!("/v1.24/containers/{id}/json"));
    let inspect: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        inspect["Config"]["Labels"]["traefik.http.routers.w.rule"],
        "Host(`w.localhost`)"
    );
    let nets = inspect["NetworkSettings"]["Networks"].as_object().unwrap();
    let ip = nets.values().next().unwrap()["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{inspect}");
    assert_eq!(inspect["HostConfig"]["NetworkMode"], "bridge");
    // The fields whose absence crashed clients in the research: Config, HostConfig, Tty,
    // State times in RFC 3339, a created time as a string.
    assert_eq!(inspect["Config"]["Tty"], false);
    assert!(inspect["HostConfig"]["AutoRemove"].is_boolean());
    assert!(inspect["Created"].as_str().unwrap().ends_with('Z'));

    // Traefik's events at 1.24: a unit edited shows as Docker's die/stop, create and start.
    let now_s = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let before = d.status("whoami").unwrap()["container_id"].clone();
    let since = now_s();
    d.write_unit(
        "whoami",
        &unit(
            "exec sleep 1001",
            "labels = { \"traefik.enable\" = \"true\" }\n",
        ),
    );
    wait_until(20 * SEC, "the recreated container", || {
        d.status("whoami")
            .is_some_and(|s| s["state"] == "running" && s["container_id"] != before)
    });
    std::thread::sleep(SEC);
    let until = now_s();
    let filters = "%7B%22type%22%3A%5B%22container%22%5D%7D";
    let (_, body) = curl(
        &ro,
        &format!("/v1.24/events?since={since}&until={until}&filters={filters}"),
    );
    let actions: Vec<String> = body
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|e| e["Action"].as_str().unwrap_or_default().to_owned())
        .collect();
    for want in ["stop", "create", "start"] {
        assert!(
            actions.iter().any(|a| a == want),
            "{want} not in {actions:?}; rcd's: {}",
            String::from_utf8_lossy(&d.rctl(&["events", "--since", "1m", "--until", "0s"]).stdout)
        );
    }

    // cAdvisor's check: a dotted three-number ServerVersion and a storage driver.
    let (_, body) = curl(&ro, "/version");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let server = v["Version"].as_str().unwrap();
    assert_eq!(
        server
            .split('.')
            .filter(|p| p.parse::<u32>().is_ok())
            .count(),
        3,
        "{server}"
    );
    let (_, body) = curl(&ro, "/v1.44/info");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(!info["Driver"].as_str().unwrap().is_empty());
    assert_eq!(info["Swarm"]["LocalNodeState"], "inactive");

    // docker stats' `read` is never empty, a short id finds the container, no name is empty.
    let (_, body) = curl(
        &sock,
        &format!("/containers/{}/stats?stream=false&one-shot=true", &id[..6]),
    );
    let _ = body;
    let new_id = d.status("whoami").unwrap()["container_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, list) = curl(&sock, "/containers/json?all=1");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let now_id = list[0]["Id"].as_str().unwrap().to_owned();
    assert_ne!(now_id, id, "a recreated container has a new id ({new_id})");
    let (status, body) = curl(
        &sock,
        &format!(
            "/containers/{}/stats?stream=false&one-shot=true",
            &now_id[..8]
        ),
    );
    assert!(status.contains("200"), "{status} {body}");
    let stats: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert!(!stats["read"].as_str().unwrap().is_empty());
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["Names"][0].as_str().unwrap().len() > 1));
}

#[test]
fn top_networks_volumes_and_system_df() {
    let (d, sock, _) = daemon();
    d.write_unit(
        "db",
        &unit(
            "sleep 1000 & exec sleep 1001",
            "[[mount]]\ntype = \"volume\"\nsource = \"dbdata\"\ntarget = \"/data\"\n",
        ),
    );
    d.wait_state("db", "running", 20 * SEC);
    // `running` is recorded when runc's start returns, which can be before the init has
    // exec'd the command (ps then shows `runc init`).
    wait_until(10 * SEC, "the command to run", || {
        ok(&docker(&sock, &["top", "db"])).contains("sleep 1001")
    });
    let top = ok(&docker(&sock, &["top", "db"]));
    assert!(top.lines().next().unwrap().contains("PID"), "{top}");
    assert!(
        top.contains("sleep 1000") && top.contains("sleep 1001"),
        "{top}"
    );
    let nets = ok(&docker(
        &sock,
        &["network", "ls", "--format", "{{.Name}} {{.Driver}}"],
    ));
    assert!(nets.lines().any(|l| l == "rcd bridge"), "{nets}");
    let members = ok(&docker(
        &sock,
        &[
            "network",
            "inspect",
            "rcd",
            "--format",
            "{{range .Containers}}{{.Name}}{{end}}",
        ],
    ));
    assert_eq!(members.trim(), "db");
    let vols = ok(&docker(
        &sock,
        &["volume", "ls", "--format", "{{.Name}} {{.Driver}}"],
    ));
    assert_eq!(vols.trim(), "dbdata local");
    let inspected = ok(&docker(
        &sock,
        &[
            "volume",
            "inspect",
            "--format",
            "{{.Name}} {{.Mountpoint}}",
            "dbdata",
        ],
    ));
    assert!(inspected.starts_with("dbdata /"), "{inspected}");
    assert!(!docker(&sock, &["volume", "inspect", "nothere"])
        .status
        .success());
    let df = ok(&docker(
        &sock,
        &["system", "df", "--format", "{{.Type}} {{.TotalCount}}"],
    ));
    assert!(df.lines().any(|l| l == "Containers 1"), "{df}");
    assert!(df.lines().any(|l| l == "Local Volumes 1"), "{df}");
    d.detach_networks();
}

#[test]
fn docker_logs_follow_ends_at_the_exit_even_when_the_policy_restarts() {
    let (d, sock, _) = daemon();
    d.write_unit(
        "cycler",
        &unit(
            "echo run; sleep 1; exit 1",
            "[network]\nmode = \"none\"\n[restart]\npolicy = \"always\"\ndelay = \"1s\"\n",
        ),
    );
    d.wait_state("cycler", "running", 20 * SEC);
    // As Docker's: the stream ends with the container's exit, though it is restarted.
    let started = std::time::Instant::now();
    let first = ok(&docker(&sock, &["logs", "-f", "cycler"]));
    assert!(first.starts_with("run\n"), "{first}");
    assert!(started.elapsed() < 10 * SEC);
    wait_until(20 * SEC, "a second run", || {
        d.status("cycler")
            .is_some_and(|s| s["restarts"].as_u64() >= Some(1))
    });
    wait_until(10 * SEC, "both runs' lines", || {
        ok(&docker(&sock, &["logs", "cycler"]))
            .matches("run\n")
            .count()
            >= 2
    });
}

#[test]
fn docker_events_follows_a_unit_file_edit_live() {
    use std::io::BufRead;
    let (d, sock, _) = daemon();
    d.write_unit(
        "web",
        &unit("exec sleep 1000", "[network]\nmode = \"none\"\n"),
    );
    d.wait_state("web", "running", 20 * SEC);
    let before = ok(&docker(&sock, &["inspect", "-f", "{{.Id}}", "web"]));
    let cfg = tempfile::tempdir().unwrap();
    let mut follower = Command::new(docker_bin())
        .arg("--config")
        .arg(cfg.path())
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .args([
            "events",
            "--filter",
            "container=web",
            "--format",
            "{{.Action}} {{.ID}}",
        ])
        .env_remove("DOCKER_HOST")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The CLI is following before the edit is saved.
    std::thread::sleep(SEC);
    d.write_unit(
        "web",
        &unit("exec sleep 1001", "[network]\nmode = \"none\"\n"),
    );
    let deadline = std::time::Instant::now() + 30 * SEC;
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.starts_with("start ")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let after = ok(&docker(&sock, &["inspect", "-f", "{{.Id}}", "web"]));
    let (before, after) = (before.trim(), after.trim());
    assert_ne!(before, after, "the edit recreates the container");
    // The old instance stops, the new one is created and started, each under its own id.
    let want = [
        format!("stop {before}"),
        format!("create {after}"),
        format!("start {after}"),
    ];
    let at = |w: &String| seen.iter().position(|l| l == w);
    let positions: Vec<_> = want.iter().map(at).collect();
    assert!(
        positions.iter().all(Option::is_some) && positions.windows(2).all(|p| p[0] < p[1]),
        "{want:?} in order in {seen:?}"
    );
}

#[test]
fn docker_cp_copies_out_and_in_resolving_links_inside_the_container() {
    let (d, rw, ro) = daemon();
    d.write_unit(
        "box",
        &unit(
            "mkdir -p /data && echo hello > /data/f && ln -s /etc/shadow /data/shadow && \
             touch /data/ready && exec sleep 1000",
            "stop_signal = \"KILL\"\n[network]\nmode = \"none\"\n",
        ),
    );
    let pid = pid_of(&d.wait_state("box", "running", 20 * SEC));
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    wait_until(10 * SEC, "the files", || root.join("data/ready").exists());
    let host_shadow = std::fs::read("/etc/shadow").unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // Out: the directory, its link as a link (never the host's /etc/shadow).
    let out = tmp.path().join("out");
    ok(&docker(&ro, &["cp", "box:/data", out.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "hello\n");
    assert_eq!(
        std::fs::read_link(out.join("shadow")).unwrap(),
        PathBuf::from("/etc/shadow")
    );
    // `/data/.` is its contents: into an existing directory, not as `data/` below it.
    let into = tmp.path().join("into");
    std::fs::create_dir(&into).unwrap();
    ok(&docker(&ro, &["cp", "box:/data/.", into.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(into.join("f")).unwrap(), "hello\n");
    assert!(!into.join("data").exists());

    // In: a file into a directory, then onto the link, which docker follows to the container's
    // own /etc/shadow.
    let src = tmp.path().join("note.txt");
    std::fs::write(&src, "from-host\n").unwrap();
    ok(&docker(&rw, &["cp", src.to_str().unwrap(), "box:/data/"]));
    assert_eq!(
        std::fs::read_to_string(root.join("data/note.txt")).unwrap(),
        "from-host\n"
    );
    ok(&docker(
        &rw,
        &["cp", src.to_str().unwrap(), "box:/data/shadow"],
    ));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/shadow")).unwrap(),
        "from-host\n"
    );
    assert_eq!(std::fs::read("/etc/shadow").unwrap(), host_shadow);

    // The read-only socket refuses the write; a stopped container is refused with the reason.
    let refused = docker(&ro, &["cp", src.to_str().unwrap(), "box:/data/"]);
    assert!(!refused.status.success(), "{refused:?}");
    ok(&docker(&rw, &["stop", "box"]));
    let stopped = docker(
        &rw,
        &[
            "cp",
            "box:/data",
            tmp.path().join("again").to_str().unwrap(),
        ],
    );
    assert!(
        String::from_utf8_lossy(&stopped.stderr).contains("not running"),
        "{stopped:?}"
    );
}
