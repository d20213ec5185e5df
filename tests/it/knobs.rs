//! The unit keys of issue 16 on real containers, each observed from inside: capabilities,
//! ulimits, sysctls, `/dev/shm`, labels, a read-only root with a tmpfs, seccomp, devices,
//! the init, the resolver settings and extra host names, bind sources made on demand.

use std::time::Duration;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

/// What the unit's script printed, once it printed `done`.
fn output_of(d: &Daemon, name: &str) -> String {
    let deadline = std::time::Instant::now() + 20 * SEC;
    loop {
        let text = String::from_utf8_lossy(&d.rctl(&["logs", name]).stdout).into_owned();
        if text.contains("done\n") {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never printed done: {text}\n{:?}",
            d.status(name)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The host's `/dev/net/tun`, made if the host has none yet (a static node of the tun driver,
/// which the kernel loads when it is opened).
fn tun() {
    if !std::path::Path::new("/dev/net/tun").exists() {
        std::fs::create_dir_all("/dev/net").unwrap();
        let out = std::process::Command::new("mknod")
            .args(["-m", "0666", "/dev/net/tun", "c", "10", "200"])
            .output()
            .unwrap();
        assert!(
            out.status.success() || std::path::Path::new("/dev/net/tun").exists(),
            "{out:?}"
        );
    }
}

/// The value after `key` on its line of `text` (`CapEff:\t0000...` -> `0000...`).
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

#[test]
fn capabilities_ulimits_sysctls_shm_size_and_labels_are_what_the_unit_says() {
    let d = Daemon::start();
    d.write_unit(
        "knobs",
        &unit(
            "grep CapEff /proc/self/status; echo nofile $(ulimit -n) $(ulimit -Hn); \
             echo port $(cat /proc/sys/net/ipv4/ip_unprivileged_port_start); \
             echo shm $(df -k /dev/shm | tail -1 | awk '{print $2}'); echo done; exec sleep 1000",
            "ulimits = { nofile = \"1024:4096\" }\n\
             sysctls = { \"net.ipv4.ip_unprivileged_port_start\" = 80 }\n\
             shm_size = \"8M\"\n\
             labels = { \"traefik.enable\" = \"true\", tier = \"web\" }\n\
             [network]\nmode = \"none\"\n\
             [security]\ncap_drop = [\"ALL\"]\ncap_add = [\"net_admin\", \"CAP_CHOWN\"]\n",
        ),
    );
    let out = output_of(&d, "knobs");
    // CAP_CHOWN is bit 0, CAP_NET_ADMIN bit 12: nothing else.
    assert_eq!(field(&out, "CapEff:"), "0000000000001001", "{out}");
    assert_eq!(field(&out, "nofile"), "1024 4096", "{out}");
    assert_eq!(field(&out, "port"), "80", "{out}");
    assert_eq!(field(&out, "shm"), "8192", "{out}");

    // Labels: the container's annotations, and what inspect shows.
    let s = d.wait_state("knobs", "running", 10 * SEC);
    let id = s["container_id"].as_str().unwrap().to_string();
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            d.root
                .join("containers")
                .join(&id)
                .join("bundle/config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(config["annotations"]["traefik.enable"], "true");
    assert_eq!(config["annotations"]["tier"], "web");
    assert_eq!(config["annotations"]["rcd.unit"], "knobs");
    let inspect: serde_json::Value =
        serde_json::from_slice(&d.rctl(&["inspect", "knobs"]).stdout).unwrap();
    let text = inspect.to_string();
    assert!(text.contains("traefik.enable"), "{text}");
}

#[test]
fn a_read_only_root_refuses_writes_and_its_tmpfs_takes_them() {
    let d = Daemon::start();
    d.write_unit(
        "ro",
        &unit(
            "touch /written 2>/dev/null && echo root-writable || echo root-read-only; \
             touch /scratch/x && echo tmpfs-writable; echo mode $(stat -c %a /scratch); \
             echo size $(df -k /scratch | tail -1 | awk '{print $2}'); echo done; exec sleep 1000",
            "read_only = true\n[network]\nmode = \"none\"\n\
             [[mount]]\ntype = \"tmpfs\"\ntarget = \"/scratch\"\nsize = \"2M\"\nmode = \"700\"\n",
        ),
    );
    let out = output_of(&d, "ro");
    assert!(out.contains("root-read-only\n"), "{out}");
    assert!(out.contains("tmpfs-writable\n"), "{out}");
    assert_eq!(field(&out, "mode"), "700", "{out}");
    assert_eq!(field(&out, "size"), "2048", "{out}");
}

#[test]
fn the_default_seccomp_profile_refuses_namespaces_and_mounts_unless_the_capability_is_added() {
    let d = Daemon::start();
    let script = "grep Seccomp: /proc/self/status; \
         unshare -U true 2>/dev/null && echo userns-made || echo userns-refused; \
         unshare -n true 2>/dev/null && echo netns-made || echo netns-refused; \
         mkdir -p /m; mount -t tmpfs t /m 2>/dev/null && echo mounted || echo mount-refused; \
         echo done; exec sleep 1000";
    let none = "[network]\nmode = \"none\"\n";
    d.write_unit("confined", &unit(script, none));
    d.write_unit(
        "admin",
        &unit(
            script,
            &format!("{none}[security]\ncap_add = [\"SYS_ADMIN\"]\n"),
        ),
    );
    d.write_unit(
        "unconfined",
        &unit(
            script,
            &format!("{none}[security]\nseccomp = \"unconfined\"\n"),
        ),
    );
    let confined = output_of(&d, "confined");
    // A filter is in place; a user namespace needs no capability, so only seccomp refuses it.
    assert_eq!(field(&confined, "Seccomp:"), "2", "{confined}");
    for refused in ["userns-refused", "netns-refused", "mount-refused"] {
        assert!(confined.contains(refused), "{confined}");
    }
    let unconfined = output_of(&d, "unconfined");
    assert_eq!(field(&unconfined, "Seccomp:"), "0", "{unconfined}");
    assert!(unconfined.contains("userns-made"), "{unconfined}");
    // With SYS_ADMIN the profile lets mount and unshare through, as Docker's does.
    let admin = output_of(&d, "admin");
    assert!(
        admin.contains("netns-made") && admin.contains("mounted\n"),
        "{admin}"
    );
}

#[test]
fn a_device_is_usable_inside_and_a_missing_one_fails_the_start_clearly() {
    tun();
    let d = Daemon::start();
    let script = "test -c /dev/net/tun && echo node; (exec 3<>/dev/net/tun) 2>/dev/null && echo opened || echo refused; echo done; exec sleep 1000";
    d.write_unit(
        "tun",
        &unit(
            script,
            "devices = [\"/dev/net/tun\"]\n[network]\nmode = \"none\"\n",
        ),
    );
    d.write_unit("plain", &unit(script, "[network]\nmode = \"none\"\n"));
    let out = output_of(&d, "tun");
    assert!(out.contains("node\n") && out.contains("opened\n"), "{out}");
    let plain = output_of(&d, "plain");
    assert!(
        !plain.contains("node\n") && plain.contains("refused\n"),
        "{plain}"
    );

    d.write_unit(
        "nodev",
        &unit(
            "exec sleep 1000",
            "devices = [\"/dev/no-such-device\"]\n[network]\nmode = \"none\"\n",
        ),
    );
    let s = d.wait_state("nodev", "failed", 10 * SEC);
    let error = s["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("device /dev/no-such-device: No such file or directory"),
        "{s}"
    );
}

#[test]
fn with_init_a_shell_command_stops_at_once_and_pid_1_is_the_init() {
    let d = Daemon::start();
    // A shell as PID 1 ignores SIGTERM: without an init this waits out the 20 s timeout.
    let body = |extra: &str| {
        format!(
            "[container]\nrootfs = {:?}\ncommand = [\"sh\", \"-c\", \"sleep 1000; echo never\"]\nstop_timeout = \"20s\"\n{extra}[network]\nmode = \"none\"\n",
            rootfs().display().to_string()
        )
    };
    d.write_unit("inited", &body("init = true\n"));
    let s = d.wait_state("inited", "running", 10 * SEC);
    let pid = pid_of(&s);
    assert!(cmdline(pid).starts_with("/dev/init"), "{}", cmdline(pid));
    let started = std::time::Instant::now();
    let out = d.rctl(&["stop", "inited"]);
    assert!(out.status.success(), "{out:?}");
    d.wait_state("inited", "stopped", 10 * SEC);
    assert!(
        started.elapsed() < 10 * SEC,
        "stop took {:?}",
        started.elapsed()
    );
}

#[test]
fn dns_settings_and_extra_hosts_reach_the_generated_files() {
    let d = Daemon::start();
    let names = "dns = [\"192.0.2.53\"]\ndns_search = [\"example.test\"]\ndns_options = [\"ndots:2\"]\nextra_hosts = [\"gw.test:192.0.2.1\", \"v6.test:fd00::5\"]\n";
    d.write_unit(
        "bridged",
        &unit("exec sleep 1000", &format!("[network]\n{names}")),
    );
    d.write_unit(
        "hosted",
        &unit(
            "exec sleep 1000",
            &format!("[network]\nmode = \"host\"\n{names}"),
        ),
    );
    for name in ["bridged", "hosted"] {
        let s = d.wait_state(name, "running", 20 * SEC);
        let read =
            |f: &str| std::fs::read_to_string(format!("/proc/{}/root{f}", pid_of(&s))).unwrap();
        let resolv = read("/etc/resolv.conf");
        let servers: Vec<&str> = resolv
            .lines()
            .filter(|l| l.starts_with("nameserver"))
            .collect();
        assert_eq!(servers, ["nameserver 192.0.2.53"], "{name}: {resolv}");
        assert!(resolv.contains("search example.test\n"), "{name}: {resolv}");
        assert!(resolv.contains("options ndots:2\n"), "{name}: {resolv}");
        let hosts = read("/etc/hosts");
        assert!(hosts.contains("192.0.2.1\tgw.test\n"), "{name}: {hosts}");
        assert!(hosts.contains("fd00::5\tv6.test\n"), "{name}: {hosts}");
        // Docker's default in a namespace of the container's own; never set on the host's.
        // Read in its network namespace: /proc/sys/net answers for the reader's.
        let out = std::process::Command::new("nsenter")
            .args([
                "-t",
                &pid_of(&s).to_string(),
                "-n",
                "cat",
                "/proc/sys/net/ipv4/ip_unprivileged_port_start",
            ])
            .output()
            .unwrap();
        let start = String::from_utf8_lossy(&out.stdout).into_owned();
        let host =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
        let want = if name == "bridged" {
            "0\n"
        } else {
            host.as_str()
        };
        assert_eq!(start, want, "{name}");
    }
    d.detach_networks();
}

#[test]
fn a_bind_source_is_made_when_asked_and_a_missing_one_is_a_clear_failure() {
    let d = Daemon::start();
    let made = d.dir.path().join("made/here");
    // An existing file reached through a symlink (`/etc/localtime`) is used as it is.
    let file = d.dir.path().join("zone");
    std::fs::write(&file, "UTC\n").unwrap();
    let link = d.dir.path().join("localtime");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    d.write_unit(
        "maker",
        &unit(
            "echo hello > /data/greeting && cat /etc/zone && echo done; exec sleep 1000",
            &format!(
                "[network]\nmode = \"none\"\n[[mount]]\nsource = {:?}\ntarget = \"/data\"\ncreate = true\n[[mount]]\nsource = {:?}\ntarget = \"/etc/zone\"\ncreate = true\nreadonly = true\n",
                made.display().to_string(),
                link.display().to_string()
            ),
        ),
    );
    assert!(output_of(&d, "maker").contains("UTC\n"));
    assert_eq!(
        std::fs::read_to_string(made.join("greeting")).unwrap(),
        "hello\n"
    );

    let missing = d.dir.path().join("not/there");
    d.write_unit(
        "missing",
        &unit(
            "exec sleep 1000",
            &format!(
                "[network]\nmode = \"none\"\n[[mount]]\nsource = {:?}\ntarget = \"/data\"\n",
                missing.display().to_string()
            ),
        ),
    );
    let s = d.wait_state("missing", "failed", 10 * SEC);
    let error = s["error"].as_str().unwrap_or_default();
    assert!(error.contains("does not exist (`create = true`"), "{s}");
    assert!(!missing.exists());
}

#[test]
fn privileged_has_every_capability_no_filter_and_the_hosts_devices() {
    tun();
    let d = Daemon::start();
    d.write_unit(
        "root",
        &unit(
            "grep -E 'CapEff|Seccomp:' /proc/self/status; test -c /dev/net/tun && echo tun; echo done; exec sleep 1000",
            "[network]\nmode = \"none\"\n[security]\nprivileged = true\n",
        ),
    );
    let out = output_of(&d, "root");
    assert_eq!(field(&out, "Seccomp:"), "0", "{out}");
    let caps = u64::from_str_radix(field(&out, "CapEff:"), 16).unwrap();
    // Every capability of the running kernel (CAP_SYS_ADMIN is 21, CAP_BPF 39).
    assert!(caps & (1 << 21) != 0 && caps & (1 << 39) != 0, "{out}");
    assert!(out.contains("tun\n"), "{out}");
}

#[test]
fn an_env_file_is_merged_under_env_and_its_change_recreates_while_a_typo_keeps_the_container() {
    let d = Daemon::start();
    let envs = d.dir.path().join("env");
    std::fs::create_dir_all(&envs).unwrap();
    let file = envs.join("web.env");
    std::fs::write(
        &file,
        "# the database\nDB_HOST=db\nexport DB_USER=\"app user\"\nMODE=from-file\n",
    )
    .unwrap();
    d.write_unit(
        "web",
        &unit(
            "echo host=$DB_HOST user=$DB_USER mode=$MODE; echo done; exec sleep 1000",
            &format!(
                "env_file = [{:?}]\nenv = {{ MODE = \"inline\" }}\n[network]\nmode = \"none\"\n",
                file.display().to_string()
            ),
        ),
    );
    let out = output_of(&d, "web");
    assert!(out.contains("host=db user=app user mode=inline\n"), "{out}");
    let first = d.wait_state("web", "running", 10 * SEC);

    // A new value: the container is recreated with it, as for a change of the unit file.
    std::fs::write(&file, "DB_HOST=db2\nDB_USER=app\nMODE=x\n").unwrap();
    wait_until(20 * SEC, "web recreated with the new value", || {
        d.status("web")
            .is_some_and(|s| s["state"] == "running" && s["container_id"] != first["container_id"])
            && String::from_utf8_lossy(&d.rctl(&["logs", "web"]).stdout).contains("host=db2")
    });
    let second = d.wait_state("web", "running", 10 * SEC);

    // A typo: the unit is reported invalid with the env file's line, and keeps running.
    std::fs::write(&file, "DB_HOST=db3\nOOPS\n").unwrap();
    wait_until(20 * SEC, "the env file's error shown", || {
        d.status("web").is_some_and(|s| {
            s["error"].as_str().is_some_and(|e| {
                e.contains("web.env:2:1: env_file of unit web: \"OOPS\" has no `=`")
            })
        })
    });
    let s = d.status("web").unwrap();
    assert_eq!(s["state"], "running", "{s}");
    assert_eq!(s["container_id"], second["container_id"], "{s}");
}

#[test]
fn a_named_volume_is_filled_from_the_image_outlives_its_containers_and_goes_only_when_unused() {
    let d = Daemon::start();
    // A root filesystem with content at the mount point, owned by 1234:5678: copied up.
    let seeded = d.dir.path().join("seeded");
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(rootfs())
        .arg(&seeded)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let data_dir = seeded.join("srv/data");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("seed"), "seed-content\n").unwrap();
    std::os::unix::fs::chown(&data_dir, Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::chown(data_dir.join("seed"), Some(1234), Some(5678)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o750)).unwrap();
    let db = |v: &str| {
        format!(
            "[container]\nrootfs = {:?}\ncommand = [\"sh\", \"-c\", \"cat /srv/data/seed; echo owner $(stat -c '%u:%g %a' /srv/data); echo $V >> /srv/data/written; echo done; exec sleep 1000\"]\nenv = {{ V = \"{v}\" }}\nstop_signal = \"KILL\"\n[network]\nmode = \"none\"\n[[mount]]\ntype = \"volume\"\nsource = \"pgdata\"\ntarget = \"/srv/data\"\n",
            seeded.display().to_string()
        )
    };
    d.write_unit("db", &db("1"));
    let out = output_of(&d, "db");
    assert!(out.contains("seed-content\n"), "{out}");
    assert_eq!(field(&out, "owner"), "1234:5678 750", "{out}");
    let data = d.root.join("volumes/pgdata/_data");
    assert_eq!(
        std::fs::read_to_string(data.join("written")).unwrap(),
        "1\n"
    );

    // Recreated (a new spec): the same volume, its data kept, not filled again.
    let first = d.wait_state("db", "running", 10 * SEC);
    d.write_unit("db", &db("2"));
    wait_until(20 * SEC, "db recreated", || {
        d.status("db")
            .is_some_and(|s| s["state"] == "running" && s["container_id"] != first["container_id"])
    });
    wait_until(10 * SEC, "the second run wrote", || {
        std::fs::read_to_string(data.join("written")).is_ok_and(|t| t == "1\n2\n")
    });

    let ls = String::from_utf8_lossy(&d.rctl(&["volume", "ls"]).stdout).into_owned();
    assert!(
        ls.lines()
            .any(|l| l.starts_with("pgdata") && l.ends_with("db")),
        "{ls}"
    );
    let refused = d.rctl(&["volume", "rm", "pgdata"]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("volume \"pgdata\" is in use by unit db"),
        "{why}"
    );

    // The unit goes; its volume stays until removed.
    d.remove_unit("db");
    wait_until(20 * SEC, "db gone", || d.status("db").is_none());
    assert!(data.join("written").exists());
    let inspect: serde_json::Value =
        serde_json::from_slice(&d.rctl(&["volume", "inspect", "pgdata"]).stdout).unwrap();
    assert_eq!(inspect["used_by"], serde_json::json!([]), "{inspect}");
    let pruned = d.rctl(&["volume", "prune"]);
    assert!(pruned.status.success(), "{pruned:?}");
    assert!(String::from_utf8_lossy(&pruned.stdout).contains("removed pgdata"));
    assert!(!d.root.join("volumes/pgdata").exists());
    let gone = d.rctl(&["volume", "rm", "pgdata"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no volume \"pgdata\""));
}

/// A secret file of root's, mode 0600, with `content`.
fn secret_file(d: &Daemon, name: &str, content: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = d.dir.path().join("secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    // Replaced whole, as an operator's editor or `install -m 600` does.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

#[test]
fn a_file_secret_is_read_only_at_its_path_never_shown_and_a_change_signals_the_container() {
    let d = Daemon::start();
    let token = secret_file(&d, "token", "first-s3cret\n");
    d.write_unit(
        "app",
        &unit(
            "trap 'echo reread $(rev /run/secrets/token)' HUP; echo read $(rev /run/secrets/token); \
             echo mode $(stat -c %a /run/secrets/token); echo x 2>/dev/null > /run/secrets/token && echo writable || echo read-only; \
             mount | grep -q ' /run/secrets/token .*tmpfs' && echo on-tmpfs; echo done; while true; do sleep 0.1; done",
            &format!(
                "stop_signal = \"KILL\"\n[network]\nmode = \"none\"\n[[secret]]\nsource = {:?}\non_change = \"signal:SIGHUP\"\n",
                token.display().to_string()
            ),
        ),
    );
    let out = output_of(&d, "app");
    // Printed reversed: the container's own log is shown by `rctl status`.
    assert!(out.contains("read terc3s-tsrif\n"), "{out}");
    assert_eq!(field(&out, "mode"), "444", "{out}");
    assert!(
        out.contains("read-only\n") && out.contains("on-tmpfs\n"),
        "{out}"
    );
    let s = d.wait_state("app", "running", 10 * SEC);
    // Nowhere in what is shown of the unit.
    for shown in [
        d.rctl(&["inspect", "app"]).stdout,
        d.rctl(&["status", "app"]).stdout,
        serde_json::to_vec(&d.events()).unwrap(),
    ] {
        let shown = String::from_utf8_lossy(&shown);
        assert!(!shown.contains("s3cret"), "{shown}");
    }
    assert!(!d.log().contains("s3cret"), "the daemon's log");

    // Changed: rewritten in place and signalled; the same process.
    secret_file(&d, "token", "second-s3cret\n");
    wait_until(20 * SEC, "the container re-read its secret", || {
        String::from_utf8_lossy(&d.rctl(&["logs", "app"]).stdout).contains("reread terc3s-dnoces")
    });
    assert_eq!(pid_of(&d.status("app").unwrap()), pid_of(&s));
    assert!(!String::from_utf8_lossy(&d.rctl(&["inspect", "app"]).stdout).contains("s3cret"));
}

#[test]
fn an_env_secret_restarts_the_container_on_change_and_a_readable_secret_file_is_refused() {
    let d = Daemon::start();
    let pw = secret_file(&d, "db-password", "hunter2\n");
    d.write_unit(
        "db",
        &unit(
            "echo pw=$DB_PASSWORD; echo done; exec sleep 1000",
            &format!(
                "stop_signal = \"KILL\"\n[network]\nmode = \"none\"\n[[secret]]\nsource = {:?}\nenv = \"DB_PASSWORD\"\n",
                pw.display().to_string()
            ),
        ),
    );
    let out = output_of(&d, "db");
    assert!(out.contains("pw=hunter2\n"), "{out}");
    let first = d.wait_state("db", "running", 10 * SEC);
    let inspect = String::from_utf8_lossy(&d.rctl(&["inspect", "db"]).stdout).into_owned();
    assert!(!inspect.contains("hunter2"), "{inspect}");
    secret_file(&d, "db-password", "hunter3\n");
    wait_until(20 * SEC, "db restarted with the new secret", || {
        String::from_utf8_lossy(&d.rctl(&["logs", "db"]).stdout).contains("pw=hunter3")
    });
    let s = d.wait_state("db", "running", 10 * SEC);
    assert_ne!(pid_of(&s), pid_of(&first));
    assert_eq!(
        s["container_id"], first["container_id"],
        "the same instance"
    );
    assert_eq!(s["restarts"], 0, "not a restart by policy");

    // Readable by others: refused, the container stays as it is.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    wait_until(20 * SEC, "the refusal shown", || {
        d.status("db").is_some_and(|s| {
            s["error"]
                .as_str()
                .is_some_and(|e| e.contains("secret db-password of unit db: refused: mode 644"))
        })
    });
    assert_eq!(pid_of(&d.status("db").unwrap()), pid_of(&s));
}

#[test]
fn a_cdi_device_brings_its_node_variables_and_mounts_and_an_unknown_one_fails_clearly() {
    let mut d = Daemon::new();
    let cdi = d.dir.path().join("cdi");
    std::fs::create_dir_all(&cdi).unwrap();
    let info = d.dir.path().join("cdi-info");
    std::fs::write(&info, "from the vendor\n").unwrap();
    std::fs::write(
        cdi.join("rcd-test.json"),
        serde_json::json!({
            "cdiVersion": "0.6.0",
            "kind": "rcd.test/null",
            "containerEdits": {"env": ["CDI_ALL=1"]},
            "devices": [{
                "name": "nul",
                "containerEdits": {
                    "deviceNodes": [{"path": "/dev/cdi-null", "hostPath": "/dev/null", "permissions": "rw"}],
                    "env": ["CDI_DEV=nul"],
                    "mounts": [{"hostPath": info.display().to_string(), "containerPath": "/etc/cdi-info", "options": ["ro", "nosuid", "nodev", "bind"]}]
                }
            }]
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        cdi.join("other.yaml"),
        "cdiVersion: 0.6.0\nkind: rcd.test/yaml\ndevices:\n  - name: one\n    containerEdits:\n      env: [CDI_Y=yes]\n",
    )
    .unwrap();
    d.write_config(
        "",
        &format!(
            "[daemon]\ncdi_spec_dirs = [{:?}]\n",
            cdi.display().to_string()
        ),
    );
    d.spawn();
    d.write_unit(
        "gpu",
        &unit(
            "echo x > /dev/cdi-null && echo node-ok; echo env $CDI_ALL $CDI_DEV $CDI_Y; cat /etc/cdi-info; \
             echo done; exec sleep 1000",
            "devices = [\"rcd.test/null=nul\", \"rcd.test/yaml=one\"]\n[network]\nmode = \"none\"\n",
        ),
    );
    let out = output_of(&d, "gpu");
    assert!(out.contains("node-ok"), "{out}");
    assert_eq!(field(&out, "env"), "1 nul yes", "{out}");
    assert!(out.contains("from the vendor"), "{out}");

    d.write_unit(
        "nope",
        &unit(
            "exec sleep 1000",
            "devices = [\"rcd.test/null=nope\"]\n[network]\nmode = \"none\"\n",
        ),
    );
    wait_until(20 * SEC, "the start to fail naming the CDI device", || {
        d.status("nope").is_some_and(|s| {
            s["error"].as_str().is_some_and(|e| {
                e.contains("CDI device rcd.test/null=nope: no spec in")
                    && e.contains("known: rcd.test/null=nul, rcd.test/yaml=one")
            })
        })
    });
}
