//! The protocol against fake plugins (shell scripts that log what they get): order,
//! prevResult, runtimeConfig, environment, errors, timeouts, rollback and the cache. The real
//! plugins are exercised by the integration tests (tests/it/cni.rs, as root).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

/// How a fake plugin behaves.
#[derive(Clone, Copy)]
enum Mode {
    Ok,
    /// ADD fails with a CNI error JSON on stdout.
    FailAdd,
    /// DEL fails with text on stderr only.
    FailDel,
    /// ADD never finishes.
    Hang,
}

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["bin", "log", "cache", "ipam"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        Fake { dir }
    }

    fn log_dir(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    /// Installs a fake plugin `name`: logs its stdin and environment as
    /// `log/<seq>-<command>-<name>.{json,env}`; ADD prints a result naming it.
    fn plugin(&self, name: &str, mode: Mode) {
        let log = self.log_dir();
        let add = match mode {
            Mode::Ok | Mode::FailDel => format!(
                r#"echo '{{"cniVersion":"1.0.0","interfaces":[{{"name":"eth0","sandbox":"'"$CNI_NETNS"'"}}],"ips":[{{"interface":0,"address":"10.9.0.2/24","gateway":"10.9.0.1"}}],"dns":{{"domain":"{name}"}}}}'"#
            ),
            Mode::FailAdd => r#"echo '{"cniVersion":"1.0.0","code":7,"msg":"Invalid network config","details":"subnet too small"}'; exit 1"#.to_string(),
            Mode::Hang => "exec sleep 30".to_string(),
        };
        let del = match mode {
            Mode::FailDel => "echo 'cannot delete: device busy' >&2; exit 1".to_string(),
            _ => String::new(),
        };
        let script = format!(
            r#"#!/bin/sh
input=$(cat)
n=$(ls {log} | wc -l)
n=$(printf %03d "$n")
printf '%s\n' "$input" > {log}/$n-$CNI_COMMAND-{name}.json
env > {log}/$n-$CNI_COMMAND-{name}.env
case "$CNI_COMMAND" in
  ADD) {add} ;;
  DEL) {del} ;;
  VERSION) echo '{{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}}' ;;
esac
"#,
            log = log.display()
        );
        let path = self.dir.path().join("bin").join(name);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn cni(&self) -> Cni {
        let mut cni = Cni::new(self.dir.path().join("cache"), self.dir.path().join("ipam"));
        cni.plugin_dirs = vec![
            self.dir.path().join("nothing-here"),
            self.dir.path().join("bin"),
        ];
        cni
    }

    /// The calls so far: (command, plugin, stdin JSON, environment lines).
    fn calls(&self) -> Vec<(String, String, Value, Vec<String>)> {
        let mut names: Vec<String> = std::fs::read_dir(self.log_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                let stem = n.trim_end_matches(".json");
                let mut parts = stem.splitn(3, '-');
                let (_, cmd, plugin) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
                let input = std::fs::read(self.log_dir().join(n)).unwrap();
                let env =
                    std::fs::read_to_string(self.log_dir().join(format!("{stem}.env"))).unwrap();
                (
                    cmd.to_string(),
                    plugin.to_string(),
                    serde_json::from_slice(&input).unwrap(),
                    env.lines().map(str::to_string).collect(),
                )
            })
            .collect()
    }

    fn clear_log(&self) {
        for e in std::fs::read_dir(self.log_dir()).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }

    fn cache_files(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("cache"))
            .unwrap()
            .count()
    }
}

fn list(plugins: Value) -> NetworkList {
    NetworkList::from_value(
        json!({"cniVersion": "1.0.0", "name": "fake", "plugins": plugins}),
        "test",
    )
    .unwrap()
}

fn three() -> NetworkList {
    list(json!([
        {"type": "a", "capabilities": {"portMappings": true}, "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"}},
        {"type": "b", "capabilities": {"mac": true}},
        {"type": "c"}
    ]))
}

fn att() -> Attachment {
    Attachment::new("ctr-1", Path::new("/proc/self/ns/net"), "eth0").with_ports(vec![PortMapping {
        host_port: 8080,
        container_port: 80,
        protocol: Protocol::Tcp,
        host_ip: None,
    }])
}

fn env_has(env: &[String], line: &str) -> bool {
    env.iter().any(|l| l == line)
}

#[test]
fn add_in_order_with_prev_result_then_del_in_reverse() {
    // Nothing else in the crate reads it; the plugins must not see it.
    std::env::set_var("NOTIFY_SOCKET", "/nonexistent/notify.sock");
    let f = Fake::new();
    for p in ["a", "b", "c"] {
        f.plugin(p, Mode::Ok);
    }
    let cni = f.cni();
    let mut att = att();
    att.args = vec![
        ("IgnoreUnknown".into(), "1".into()),
        ("K8S_POD_NAME".into(), "x".into()),
    ];
    let result = cni.add(&three(), &att).unwrap();
    assert_eq!(
        result.dns.domain.as_deref(),
        Some("c"),
        "the last plugin's result"
    );
    assert_eq!(result.container_ips()[0].address.to_string(), "10.9.0.2/24");

    let calls = f.calls();
    let order: Vec<_> = calls.iter().map(|c| format!("{} {}", c.0, c.1)).collect();
    assert_eq!(order, ["ADD a", "ADD b", "ADD c"]);
    let (a, b, c) = (&calls[0].2, &calls[1].2, &calls[2].2);
    // Name and version from the list, capabilities replaced by the declared arguments only.
    assert_eq!(a["name"], "fake");
    assert_eq!(a["cniVersion"], "1.0.0");
    assert!(a.get("capabilities").is_none());
    assert_eq!(
        a["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
    assert!(
        b.get("runtimeConfig").is_none(),
        "b declares mac, which was not given"
    );
    assert!(a.get("prevResult").is_none());
    assert_eq!(b["prevResult"]["dns"]["domain"], "a");
    assert_eq!(c["prevResult"]["dns"]["domain"], "b");
    // IPAM state under the daemon's root.
    assert_eq!(a["ipam"]["dataDir"], json!(f.dir.path().join("ipam")));
    let env = &calls[0].3;
    assert!(env_has(env, "CNI_COMMAND=ADD"));
    assert!(env_has(env, "CNI_CONTAINERID=ctr-1"));
    assert!(env_has(env, "CNI_NETNS=/proc/self/ns/net"));
    assert!(env_has(env, "CNI_IFNAME=eth0"));
    assert!(env_has(env, "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=x"));
    assert!(env_has(
        env,
        &format!(
            "CNI_PATH={}:{}",
            f.dir.path().join("nothing-here").display(),
            f.dir.path().join("bin").display()
        )
    ));
    assert!(!env.iter().any(|l| l.starts_with("NOTIFY_SOCKET=")));

    let cached = cni.cached("fake", "ctr-1", "eth0").unwrap().unwrap();
    assert!(cached.complete);
    assert_eq!(cached.result.as_ref(), Some(&result));
    assert_eq!(cached.attachment, att);
    assert_eq!(cni.cached_all().unwrap(), [cached]);

    f.clear_log();
    cni.check(&three(), &att).unwrap();
    let calls = f.calls();
    let order: Vec<_> = calls.iter().map(|c| format!("{} {}", c.0, c.1)).collect();
    assert_eq!(order, ["CHECK a", "CHECK b", "CHECK c"]);
    assert!(calls
        .iter()
        .all(|c| c.2["prevResult"]["dns"]["domain"] == "c"));

    f.clear_log();
    cni.del(&three(), &att).unwrap();
    let calls = f.calls();
    let order: Vec<_> = calls.iter().map(|c| format!("{} {}", c.0, c.1)).collect();
    assert_eq!(order, ["DEL c", "DEL b", "DEL a"]);
    // Every plugin gets the final ADD result.
    assert!(calls
        .iter()
        .all(|c| c.2["prevResult"]["dns"]["domain"] == "c"));
    assert!(env_has(&calls[0].3, "CNI_COMMAND=DEL"));
    assert_eq!(f.cache_files(), 0);
    assert!(cni.cached("fake", "ctr-1", "eth0").unwrap().is_none());

    // A second DEL, and a DEL of what was never added: no prevResult, success.
    f.clear_log();
    cni.del(&three(), &att).unwrap();
    cni.del(
        &three(),
        &Attachment::new("never-added", Path::new("/proc/self/ns/net"), "eth0"),
    )
    .unwrap();
    let calls = f.calls();
    assert_eq!(calls.len(), 6);
    assert!(calls.iter().all(|c| c.2.get("prevResult").is_none()));

    // CHECK needs an ADD to check against.
    let err = cni.check(&three(), &att).unwrap_err().to_string();
    assert_eq!(
        err,
        "network fake: container ctr-1 has no completed ADD for eth0 to check"
    );
}

#[test]
fn add_twice_is_refused() {
    let f = Fake::new();
    f.plugin("a", Mode::Ok);
    let cni = f.cni();
    let net = list(json!([{"type": "a"}]));
    cni.add(&net, &att()).unwrap();
    let err = cni.add(&net, &att()).unwrap_err().to_string();
    assert_eq!(
        err,
        "network fake: container ctr-1 is already attached as eth0; DEL it first"
    );
    // Another interface of the same container is another attachment.
    let mut eth1 = att();
    eth1.ifname = "eth1".into();
    cni.add(&net, &eth1).unwrap();
    assert_eq!(cni.cached_all().unwrap().len(), 2);
}

#[test]
fn a_failed_add_is_undone_and_named() {
    let f = Fake::new();
    f.plugin("a", Mode::Ok);
    f.plugin("b", Mode::FailAdd);
    f.plugin("c", Mode::Ok);
    let cni = f.cni();
    let err = cni.add(&three(), &att()).unwrap_err();
    assert!(
        matches!(err, Error::Plugin { code: Some(7), .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "network fake: plugin b ADD for container ctr-1 failed: Invalid network config: subnet too small (CNI error 7)"
    );
    let calls = f.calls();
    let order: Vec<_> = calls.iter().map(|c| format!("{} {}", c.0, c.1)).collect();
    assert_eq!(order, ["ADD a", "ADD b", "DEL c", "DEL b", "DEL a"]);
    // The DEL gets what the ADD got as far as it went.
    assert!(calls[2..]
        .iter()
        .all(|c| c.2["prevResult"]["dns"]["domain"] == "a"));
    assert_eq!(f.cache_files(), 0);
}

#[test]
fn a_failed_undo_is_reported_and_the_cache_kept() {
    let f = Fake::new();
    f.plugin("a", Mode::FailDel);
    f.plugin("b", Mode::FailAdd);
    let cni = f.cni();
    let net = list(json!([{"type": "a"}, {"type": "b"}]));
    let err = cni.add(&net, &att()).unwrap_err();
    assert!(matches!(err, Error::Rollback { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "network fake: plugin b ADD for container ctr-1 failed: Invalid network config: subnet too small (CNI error 7); \
         undoing it failed too: network fake: plugin a DEL for container ctr-1 failed: cannot delete: device busy"
    );
    // Kept, with a's result, for the DEL that must follow.
    let cached = cni.cached("fake", "ctr-1", "eth0").unwrap().unwrap();
    assert!(!cached.complete);
    assert_eq!(cached.result.unwrap().dns.domain.as_deref(), Some("a"));
    f.plugin("a", Mode::Ok);
    cni.del(&net, &att()).unwrap();
    assert_eq!(f.cache_files(), 0);
}

#[test]
fn del_undoes_the_add_as_it_was_configured() {
    let f = Fake::new();
    for p in ["a", "b", "c"] {
        f.plugin(p, Mode::Ok);
    }
    let cni = f.cni();
    cni.add(&three(), &att()).unwrap();
    f.clear_log();
    // The operator has since cut the list down to one plugin and dropped the ports.
    let edited = list(json!([{"type": "a"}]));
    cni.del(
        &edited,
        &Attachment::new("ctr-1", Path::new("/proc/self/ns/net"), "eth0"),
    )
    .unwrap();
    let calls = f.calls();
    let order: Vec<_> = calls.iter().map(|c| format!("{} {}", c.0, c.1)).collect();
    assert_eq!(order, ["DEL c", "DEL b", "DEL a"]);
    assert_eq!(
        calls[2].2["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
}

#[test]
fn del_without_a_namespace_passes_none() {
    let f = Fake::new();
    f.plugin("a", Mode::Ok);
    let cni = f.cni();
    let net = list(json!([{"type": "a"}]));
    // A leftover bind-mount file whose mount is gone is not a namespace.
    let stale = f.dir.path().join("stale-netns");
    std::fs::write(&stale, "").unwrap();
    for netns in [stale.as_path(), Path::new("/run/netns/rcd-surely-absent")] {
        f.clear_log();
        cni.del(&net, &Attachment::new("ctr-1", netns, "eth0"))
            .unwrap();
        let calls = f.calls();
        assert!(env_has(&calls[0].3, "CNI_NETNS="), "{:?}", calls[0].3);
    }
    // ADD and CHECK need a namespace.
    let err = cni
        .add(&net, &Attachment::new("ctr-1", &stale, "eth0"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "network fake: {} is not a network namespace",
            stale.display()
        )
    );
}

#[test]
fn plugin_errors_are_named() {
    let f = Fake::new();
    f.plugin("a", Mode::Ok);
    f.plugin("slow", Mode::Hang);
    let mut cni = f.cni();

    let err = cni
        .add(&list(json!([{"type": "a"}, {"type": "nosuch"}])), &att())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "network fake: plugin nosuch: not found in {}:{}",
            f.dir.path().join("nothing-here").display(),
            f.dir.path().join("bin").display()
        )
    );
    // The DEL that undid "a" skipped the plugin that never ran.
    let order: Vec<_> = f
        .calls()
        .iter()
        .map(|c| format!("{} {}", c.0, c.1))
        .collect();
    assert_eq!(order, ["ADD a", "DEL a"]);

    cni.timeout = Duration::from_millis(300);
    let start = std::time::Instant::now();
    let err = cni
        .add(&list(json!([{"type": "slow"}])), &att())
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        err.to_string().starts_with(
            "network fake: plugin slow ADD for container ctr-1: no answer within 300ms, killed"
        ),
        "{err}"
    );

    let bad = [
        (
            Attachment::new("-x", Path::new("/proc/self/ns/net"), "eth0"),
            "container id \"-x\": must start",
        ),
        (
            Attachment::new("x", Path::new("/proc/self/ns/net"), "eth0:1"),
            "interface name \"eth0:1\"",
        ),
    ];
    for (a, want) in bad {
        let err = cni
            .add(&list(json!([{"type": "a"}])), &a)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{err}");
        let err = cni
            .del(&list(json!([{"type": "a"}])), &a)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn check_is_skipped_when_disabled() {
    let f = Fake::new();
    f.plugin("a", Mode::Ok);
    let cni = f.cni();
    let net = NetworkList::from_value(
        json!({"cniVersion": "1.0.0", "name": "fake", "disableCheck": true, "plugins": [{"type": "a"}]}),
        "test",
    )
    .unwrap();
    cni.check(&net, &att()).unwrap();
    assert!(f.calls().is_empty());
}

#[test]
fn validate_asks_each_plugin_its_versions() {
    let f = Fake::new();
    f.plugin("a", Mode::Ok);
    let cni = f.cni();
    cni.validate(&list(json!([{"type": "a"}]))).unwrap();
    let old = NetworkList::from_value(
        json!({"cniVersion": "0.3.1", "name": "old", "plugins": [{"type": "a"}]}),
        "t",
    )
    .unwrap();
    assert_eq!(
        cni.validate(&old).unwrap_err().to_string(),
        "network old: plugin a does not support cniVersion 0.3.1 (it supports 0.4.0, 1.0.0)"
    );
    assert!(cni
        .validate(&list(json!([{"type": "zz"}])))
        .unwrap_err()
        .to_string()
        .contains("plugin zz: not found"));
}

#[test]
fn derived_configuration() {
    let net = list(json!([
        {"type": "bridge", "ipam": {"type": "host-local", "dataDir": "/mine"}},
        {"type": "bridge", "ipam": {"type": "dhcp"}},
        {"type": "tuning", "capabilities": {"mac": true}, "runtimeConfig": {"stale": 1}}
    ]));
    let mut rc = RuntimeConfig::default();
    rc.other.insert("mac".into(), json!("c2:00:00:00:00:01"));
    let runtime = rc.to_map();
    let dir = Some(Path::new("/var/lib/rcd/cni/ipam"));
    let c0 = derive_conf(&net, &net.plugins[0], &runtime, None, dir);
    assert_eq!(
        c0["ipam"]["dataDir"], "/mine",
        "the list's own dataDir wins"
    );
    let c1 = derive_conf(&net, &net.plugins[1], &runtime, None, dir);
    assert!(
        c1["ipam"].get("dataDir").is_none(),
        "only host-local has dataDir"
    );
    let c2 = derive_conf(
        &net,
        &net.plugins[2],
        &runtime,
        Some(&json!({"cniVersion": "1.0.0"})),
        dir,
    );
    assert_eq!(c2["runtimeConfig"], json!({"mac": "c2:00:00:00:00:01"}));
    assert_eq!(c2["prevResult"], json!({"cniVersion": "1.0.0"}));
}

#[test]
fn failure_messages() {
    use std::os::unix::process::ExitStatusExt;
    let st = std::process::ExitStatus::from_raw(256);
    let cases = [
        (
            r#"{"code":4,"msg":"missing CNI_IFNAME"}"#,
            "",
            (Some(4), "missing CNI_IFNAME (CNI error 4)"),
        ),
        (
            r#"{"code":100,"msg":"m","details":"d"}"#,
            "",
            (Some(100), "m: d (CNI error 100)"),
        ),
        (
            "",
            r#"{"code":2,"msg":"unsupported","details":"unsupported"}"#,
            (Some(2), "unsupported (CNI error 2)"),
        ),
        ("garbage", "panic: boom\n", (None, "panic: boom")),
        ("", "", (None, "exited with exit status: 1")),
    ];
    for (stdout, stderr, (code, msg)) in cases {
        let got = failure_message(stdout.as_bytes(), stderr.as_bytes(), st);
        assert_eq!(got, (code, msg.to_string()), "{stdout} {stderr}");
    }
    assert!(tail(&vec![b'x'; 5000]).len() < 2100);
}
