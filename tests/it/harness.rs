//! The harness: a busybox rootfs, a daemon on its own temporary directories, rctl, and waiting.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The rcd binaries built for this test run.
pub const RCD: &str = env!("CARGO_BIN_EXE_rcd");
pub const RCTL: &str = env!("CARGO_BIN_EXE_rctl");
pub const SHIM: &str = env!("CARGO_BIN_EXE_rcd-shim");

/// A busybox root filesystem from Debian's busybox-static, built once per target directory
/// (once per process under a lock; processes race only through an atomic rename).
pub fn rootfs() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_rootfs).clone()
}

fn build_rootfs() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("busybox-rootfs");
    if dir.join("bin/busybox").exists() {
        return dir;
    }
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("busybox-rootfs.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mkrootfs.sh"
    ))
    .arg(&tmp)
    .output()
    .expect("run tests/fixtures/mkrootfs.sh");
    assert!(
        out.status.success(),
        "mkrootfs.sh failed (is busybox-static installed? sh scripts/setup.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test process may have won the race; either copy is whole.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(dir.join("bin/busybox").exists());
    dir
}

/// A unit file body running `script` under `sh -c` on the busybox rootfs, plus `extra` TOML.
pub fn unit(script: &str, extra: &str) -> String {
    format!(
        "[container]\nrootfs = {:?}\ncommand = [\"sh\", \"-c\", {:?}]\nstop_timeout = \"2s\"\n{extra}\n",
        rootfs().display().to_string(),
        script
    )
}

/// A daemon on its own directories; stopped and cleaned (containers, mounts) on drop.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub units: PathBuf,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub child: Option<Child>,
    pub runtime: Option<PathBuf>,
    /// Working directory for the daemon (to test relative paths).
    pub cwd: Option<PathBuf>,
    /// More daemon flags.
    pub args: Vec<String>,
    /// More environment for the daemon. `SSL_CERT_FILE` and `SSL_CERT_DIR` are not passed on
    /// from the test's own environment (a machine may set them): the daemon reads the
    /// distribution's CA store unless a test sets them here.
    pub env: Vec<(String, String)>,
    /// Another rcd binary than this build's (an upgrade test's copy).
    pub binary: Option<PathBuf>,
    /// The daemon config file (`--config`); its auth file and certs.d are in `dir` too, so no
    /// test reads the host's /etc/rcd.
    pub config: PathBuf,
    /// The default network's bridge and subnet: this daemon's own, so daemons of tests that
    /// run in parallel never share a bridge or hand out the same address.
    pub net: TestNet,
    /// A network namespace to run the daemon in (a whole host's network of its own, firewall
    /// included), instead of the test's.
    pub netns: Option<PathBuf>,
}

/// A bridge name and a /24 no other test daemon on this machine holds at the same time (a
/// lock file per slot, held while this lives); the bridge is deleted when it drops.
pub struct TestNet {
    /// The bridge (`rcdt17`).
    pub bridge: String,
    /// The subnet (`10.100.17.0/24`).
    pub subnet: String,
    /// The subnet's first three octets with the dot (`10.100.17.`).
    pub prefix: String,
    /// The slot (0..1024), for other names a test needs unique on the machine.
    pub slot: u32,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl TestNet {
    const SLOTS: u32 = 1024;

    /// A second bridge and /24 of this slot, for a test that defines another network: the
    /// bridge name and the subnet's prefix (`10.104.17.`).
    pub fn second(&self) -> (String, String) {
        let k = self.slot;
        (
            format!("rcdb{k}"),
            format!("10.{}.{}.", 104 + k / 256, k % 256),
        )
    }

    fn take() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = Path::new("/run/rcd-test-nets");
        std::fs::create_dir_all(dir).unwrap();
        let start = std::process::id() * 61;
        for _ in 0..Self::SLOTS {
            let k = (start + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) % Self::SLOTS;
            let file = std::fs::File::create(dir.join(format!("{k}.lock"))).unwrap();
            let Ok(lock) =
                nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            else {
                continue;
            };
            let prefix = format!("10.{}.{}.", 100 + k / 256, k % 256);
            return TestNet {
                bridge: format!("rcdt{k}"),
                subnet: format!("{prefix}0/24"),
                prefix,
                slot: k,
                _lock: lock,
            };
        }
        panic!("all {} test network slots are taken", Self::SLOTS);
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // The bridge plugin creates the bridge and never removes it.
        for bridge in [&self.bridge, &self.second().0] {
            let _ = Command::new("ip").args(["link", "del", bridge]).output();
        }
    }
}

impl Daemon {
    /// Directories only; call `spawn` to run the daemon.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rcd-it")
            .tempdir()
            .expect("tempdir");
        let units = dir.path().join("units");
        std::fs::create_dir(&units).unwrap();
        let config = dir.path().join("rcd.toml");
        Daemon {
            units,
            root: dir.path().join("root"),
            socket: dir.path().join("rcd.sock"),
            dir,
            child: None,
            runtime: None,
            cwd: None,
            args: Vec::new(),
            env: Vec::new(),
            binary: None,
            config,
            net: TestNet::take(),
            netns: None,
        }
    }

    /// Writes the config file: `registries` lines go into `[registries]` (after the auth file
    /// and certs.d, which point into the test's directory), `network` lines into `[network]`
    /// (after this daemon's bridge, subnet and networks directory), `rest` after both.
    pub fn write_config_with(&self, registries: &str, network: &str, rest: &str) {
        let text = format!(
            "[registries]\nauth_file = \"{}\"\ncerts_dir = \"{}\"\n{registries}\n\
             [network]\nbridge = \"{}\"\nsubnet = \"{}\"\nconfig_dir = \"{}\"\n{network}\n{rest}",
            self.auth_file().display(),
            self.dir.path().join("certs.d").display(),
            self.net.bridge,
            self.net.subnet,
            self.networks_dir().display(),
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// `write_config_with` without network lines.
    pub fn write_config(&self, registries: &str, rest: &str) {
        self.write_config_with(registries, "", rest)
    }

    /// Where this daemon's config says more networks (`*.conflist`) are.
    pub fn networks_dir(&self) -> PathBuf {
        self.dir.path().join("networks")
    }

    /// Where the config file says the credentials are.
    pub fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    /// A running daemon with an empty units directory.
    pub fn start() -> Self {
        let mut d = Self::new();
        d.spawn();
        d
    }

    /// Starts the daemon process and waits until its API answers.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        self.child = Some(self.command().spawn().expect("spawn rcd"));
        wait_until(Duration::from_secs(30), "daemon answers", || {
            self.try_rctl(&["list"]).is_some_and(|o| o.status.success())
        });
    }

    /// The daemon's command line as `spawn` runs it, its output going to the daemon's log.
    pub fn command(&self) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("rcd.log"))
            .unwrap();
        if !self.config.exists() {
            self.write_config("", "");
        }
        let binary = self.binary.as_deref().unwrap_or(Path::new(RCD));
        let mut cmd = match &self.netns {
            // nsenter enters and execs: the daemon is still this child.
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--units-dir")
            .arg(&self.units)
            .arg("--root")
            .arg(&self.root)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--shim")
            .arg(SHIM)
            .env("RCD_LOG", "rcd=debug,info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(rt) = &self.runtime {
            cmd.arg("--runtime").arg(rt);
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd.args(&self.args);
        cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
        // Every daemon reads the test's failpoints file (none armed unless the test does).
        cmd.env("RCD_FAILPOINTS", self.failpoints());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for it to exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    /// `rctl events --since ... --until 0s --output json` for one unit: its actions in order.
    pub fn actions(&self, since: &str, unit: &str) -> Vec<(String, Value)> {
        self.events_json(&["--since", since, "--unit", unit])
            .into_iter()
            .map(|e| {
                assert_eq!(e["unit"], unit);
                (
                    e["action"].as_str().unwrap_or_default().to_string(),
                    e["attributes"].clone(),
                )
            })
            .collect()
    }

    /// `rctl events ARGS --until 0s --output json`: the recorded events, oldest first.
    fn events_json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["events"];
        all.extend_from_slice(args);
        all.extend(["--until", "0s", "--output", "json"]);
        let out = self.rctl(&all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every event recorded so far, all units, oldest first (`rctl events --output json`).
    pub fn events(&self) -> Vec<Value> {
        self.events_json(&["--since", "0"])
    }

    /// The `seq` of the last event recorded so far (0 if none): a mark to read what comes
    /// after it with `actions_after`.
    pub fn last_seq(&self) -> u64 {
        self.events()
            .last()
            .map_or(0, |e| e["seq"].as_u64().unwrap())
    }

    /// The actions of `unit` recorded after the event `mark` (a `last_seq`), in order.
    pub fn actions_after(&self, mark: u64, unit: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e["unit"] == unit && e["seq"].as_u64().unwrap() > mark)
            .map(|e| e["action"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The file this daemon reads injected faults from (`RCD_FAILPOINTS`, src/failpoint.rs).
    pub fn failpoints(&self) -> PathBuf {
        self.dir.path().join("failpoints")
    }

    /// Arms the point `point` (`reconciled:web`) to be passed once, doing nothing: the daemon
    /// removes the line when it passes it (see `wait_passed`). The file is edited under the
    /// lock the daemon takes, so points may be armed while the daemon passes others.
    pub fn arm(&self, point: &str) {
        use std::io::Write;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.failpoints())
            .unwrap();
        let mut file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
        writeln!(file, "{point} sleep:0 once").unwrap();
    }

    /// Waits until the daemon has passed the armed point `point`.
    pub fn wait_passed(&self, point: &str, within: Duration) {
        wait_until(within, &format!("the daemon passed {point}"), || {
            use std::io::Read;
            // Read under the daemon's lock: never a file it is rewriting.
            let file = std::fs::File::open(self.failpoints()).unwrap();
            let mut file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockShared).unwrap();
            let mut text = String::new();
            file.read_to_string(&mut text).unwrap();
            !text
                .lines()
                .any(|l| l.split_whitespace().next() == Some(point))
        });
    }

    /// Arms `reconciled:<unit>`: passed at the end of the first reconcile of `unit` that
    /// began after this, with every effect and event of it done (a reconcile reads the state
    /// as it is when it begins: whatever that state leads to, it has done).
    pub fn arm_reconciled(&self, unit: &str) {
        self.arm(&format!("reconciled:{unit}"));
    }

    /// Waits until a reconcile of `unit` armed for has ended.
    pub fn wait_reconciled(&self, unit: &str, within: Duration) {
        self.wait_passed(&format!("reconciled:{unit}"), within);
    }

    /// Makes the daemon look at `unit` again, and waits until it has: the unit's description
    /// changed (which changes nothing else: a `changed` event, no intent of the operator's
    /// that could hide what the unit's state leads to), the scan applied (`rctl reload`),
    /// and a reconcile of it that began after that has ended.
    pub fn look_again(&self, unit: &str) {
        static LOOKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = LOOKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.units.join(format!("{unit}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let line = format!("description = \"looked at again ({n})\"");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let section = lines.iter().position(|l| l.trim() == "[unit]");
        let existing = section.and_then(|at| {
            lines[at + 1..]
                .iter()
                .take_while(|l| !l.trim_start().starts_with('['))
                .position(|l| l.trim_start().starts_with("description"))
                .map(|i| at + 1 + i)
        });
        match (section, existing) {
            (_, Some(i)) => lines[i] = line,
            (Some(at), None) => lines.insert(at + 1, line),
            (None, None) => {
                lines.insert(0, line);
                lines.insert(0, "[unit]".to_string());
            }
        }
        self.arm_reconciled(unit);
        self.write_unit(unit, &(lines.join("\n") + "\n"));
        let out = self.rctl(&["reload"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait_reconciled(unit, Duration::from_secs(10));
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rcd.log")).unwrap_or_default()
    }

    /// Writes a unit file (atomically, as editors that rename-over do).
    pub fn write_unit(&self, name: &str, text: &str) {
        let tmp = self.units.join(format!(".{name}.toml.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.units.join(format!("{name}.toml"))).unwrap();
    }

    /// Deletes a unit file.
    pub fn remove_unit(&self, name: &str) {
        std::fs::remove_file(self.units.join(format!("{name}.toml"))).unwrap();
    }

    fn try_rctl(&self, args: &[&str]) -> Option<Output> {
        self.rctl_command(args).output().ok()
    }

    /// rctl against this daemon, to run as the test likes (in the background, say).
    pub fn rctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(RCTL);
        cmd.arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs rctl against this daemon.
    pub fn rctl(&self, args: &[&str]) -> Output {
        self.try_rctl(args).expect("run rctl")
    }

    /// `rctl status --output json` of every unit.
    pub fn statuses(&self) -> Vec<Value> {
        let out = self.rctl(&["status", "--output", "json"]);
        assert!(
            out.status.success(),
            "rctl status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    /// The status of one unit, if loaded.
    pub fn status(&self, name: &str) -> Option<Value> {
        self.statuses().into_iter().find(|s| s["name"] == name)
    }

    /// Waits until `name` is in `state`; returns its status.
    /// A scrape of `/metrics` on the socket.
    pub fn scrape(&self) -> String {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "10", "--unix-socket"])
            .arg(&self.socket)
            .arg("http://rcd/metrics")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn wait_state(&self, name: &str, state: &str, within: Duration) -> Value {
        let mut last = None;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(s) = self.status(name) {
                if s["state"] == state {
                    return s;
                }
                last = Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "unit {name} not {state} within {within:?}; last status: {last:#?}\n--- daemon log ---\n{}",
            self.log()
        );
    }

    /// Waits for `name` to be running with a pid different from `old`; returns the new pid.
    /// Waits until `name` is `waiting` for `what` (the reason can change on the way: a unit
    /// named before its file is read "does not exist" at first).
    pub fn wait_waiting_for(&self, name: &str, what: &str, within: Duration) -> Value {
        wait_until(within, &format!("{name} waiting for {what}"), || {
            self.status(name)
                .is_some_and(|s| s["state"] == "waiting" && s["waiting_for"] == what)
        });
        self.status(name).unwrap_or_default()
    }

    pub fn wait_new_pid(&self, name: &str, old: i64, within: Duration) -> i64 {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(s) = self.status(name) {
                if s["state"] == "running" {
                    if let Some(pid) = s["pid"].as_i64() {
                        if pid != old {
                            return pid;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "unit {name} got no new pid within {within:?}\n{}",
            self.log()
        );
    }

    /// Runtime containers under this daemon's root.
    pub fn runtime_containers(&self) -> Vec<String> {
        let out = Command::new("runc")
            .arg("--root")
            .arg(self.root.join("runc"))
            .args(["list", "-q"])
            .output()
            .expect("runc list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Mount points under this daemon's root.
    pub fn mounts(&self) -> Vec<String> {
        mounts_under(&self.root)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- rcd log ({}) ---\n{}",
                self.dir.path().display(),
                self.log()
            );
        }
        // Leave nothing behind: containers, shims, mounts.
        for id in self.runtime_containers() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(self.root.join("runc"))
                .args(["delete", "--force", &id])
                .output();
        }
        // The daemon was killed with its containers' networks up: take them down as it would
        // (CNI DEL releases the iptables rules and leases that outlive a namespace).
        self.detach_networks();
        for m in self.mounts() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        rcd::cgroup::remove_parents(&rcd::config::root_tag(&self.root));
    }
}

impl Daemon {
    /// CNI DEL and namespace removal for every container network under this daemon's root,
    /// through the daemon's own code, with its config.
    pub fn detach_networks(&self) {
        let Ok(config) = rcd::config::file::FileConfig::load(&self.config, true) else {
            return;
        };
        let Ok(nets) = rcd::network::attach::Networks::open(&self.root, &config.network) else {
            return;
        };
        for id in nets.instances() {
            if let Err(e) = nets.detach(&id) {
                eprintln!("test cleanup: network of {id}: {e}");
            }
        }
        if let Some(n) = &nets.native {
            if let Err(e) = n.remove_firewall() {
                eprintln!("test cleanup: firewall: {e}");
            }
        }
    }
}

/// Mount points whose path starts with `root`.
pub fn mounts_under(root: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = root.to_string_lossy().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `within`.
/// The value of the sample `name{labels}` (labels as written, in order) in a scrape.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {within:?} waiting for: {what}");
}

/// True if a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rfind(')').is_some_and(|i| !s[i + 2..].starts_with('Z')),
        Err(_) => false,
    }
}

/// The command line of a process.
pub fn cmdline(pid: i64) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// A status field as i64.
pub fn pid_of(s: &Value) -> i64 {
    s["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in {s:#}"))
}
