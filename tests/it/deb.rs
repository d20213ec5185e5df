//! The Debian package: built from this build's binaries, installed with dpkg on this machine,
//! the daemon started as its systemd unit starts it, a unit dropped into /etc/rcd/units run,
//! then the package purged. It uses the real system paths (/usr/bin, /etc/rcd, /var/lib/rcd,
//! /run/rcd): a machine with rcd installed otherwise would have it replaced and purged.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

/// Whatever happens: the daemon stopped, the package purged.
struct Installed {
    daemon: Option<Child>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = std::fs::remove_file("/etc/rcd/units/debtest.toml");
        let _ = Command::new("dpkg").args(["--purge", "rcd"]).output();
    }
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rctl(args: &[&str]) -> std::process::Output {
    Command::new("/usr/bin/rctl")
        .args(args)
        .output()
        .expect("rctl")
}

#[test]
fn the_deb_installs_runs_a_dropped_unit_and_purges_cleanly() {
    let work = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(RCD).parent().unwrap();
    let deb = ok(Command::new("sh")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/deb/build.sh"
        ))
        .arg(work.path())
        .env("RCD_BIN_DIR", bin_dir)
        .env("RCD_DEB_COMPRESSION", "none"));
    let mut installed = Installed { daemon: None };
    ok(Command::new("dpkg").arg("-i").arg(deb.trim()));

    for f in [
        "/usr/bin/rcd",
        "/usr/bin/rctl",
        "/usr/bin/rcd-shim",
        "/usr/lib/systemd/system/rcd.service",
        "/usr/lib/tmpfiles.d/rcd.conf",
        "/usr/lib/sysusers.d/rcd.conf",
        "/etc/rcd/rcd.toml",
        "/usr/share/man/man8/rcd.8.gz",
        "/usr/share/man/man1/rctl.1.gz",
        "/usr/share/bash-completion/completions/rctl",
    ] {
        assert!(Path::new(f).exists(), "{f} installed");
    }
    // postinst: the socket's group and the directories.
    ok(Command::new("getent").args(["group", "rcd"]));
    assert!(Path::new("/run/rcd").is_dir() && Path::new("/etc/rcd/units").is_dir());
    // The unit as installed, with its binary where it says.
    let said = Command::new("systemd-analyze")
        .args(["verify", "/usr/lib/systemd/system/rcd.service"])
        .output()
        .unwrap();
    assert!(said.status.success() && said.stderr.is_empty(), "{said:?}");
    ok(Command::new("/usr/bin/rcd").arg("--check-config"));

    // Started as the unit starts it: its ExecStart, its environment (none but the
    // notification socket systemd gives a Type=notify service).
    let unit_file = std::fs::read_to_string("/usr/lib/systemd/system/rcd.service").unwrap();
    let exec = unit_file
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap()
        .to_string();
    assert!(!unit_file.lines().any(|l| l.starts_with("Environment")));
    let notify = work.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(20 * SEC)).unwrap();
    let mut argv = exec.split_whitespace();
    let log = std::fs::File::create(work.path().join("rcd.log")).unwrap();
    installed.daemon = Some(
        Command::new(argv.next().unwrap())
            .args(argv)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("NOTIFY_SOCKET", &notify)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("READY=1");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    let meta = std::fs::metadata("/run/rcd/rcd.sock").unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let rcd_gid = ok(Command::new("getent").args(["group", "rcd"]))
        .split(':')
        .nth(2)
        .and_then(|g| g.trim().parse::<u32>().ok())
        .unwrap();
    assert_eq!(meta.gid(), rcd_gid);
    // A user outside the group is refused by the socket; one in it is answered.
    let as_nobody = |groups: &str| {
        Command::new("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                groups,
                "/usr/bin/rctl",
                "list",
            ])
            .output()
            .unwrap()
    };
    let refused = as_nobody("--clear-groups");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("ermission denied"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let member = as_nobody(&format!("--groups={rcd_gid}"));
    assert!(
        member.status.success(),
        "{}",
        String::from_utf8_lossy(&member.stderr)
    );

    // A unit dropped into /etc/rcd/units runs.
    let text = format!(
        "{}\n[network]\nmode = \"none\"\n",
        unit(
            "echo from-the-package; exec sleep 1000",
            "stop_signal = \"KILL\"\n"
        )
    );
    std::fs::write("/etc/rcd/units/debtest.toml.tmp", text).unwrap();
    std::fs::rename(
        "/etc/rcd/units/debtest.toml.tmp",
        "/etc/rcd/units/debtest.toml",
    )
    .unwrap();
    wait_until(20 * SEC, "the unit runs", || {
        String::from_utf8_lossy(&rctl(&["list"]).stdout)
            .lines()
            .any(|l| l.starts_with("debtest") && l.contains("running"))
    });
    wait_until(10 * SEC, "its output", || {
        String::from_utf8_lossy(&rctl(&["logs", "debtest"]).stdout).contains("from-the-package")
    });
    // Removed, then the daemon stopped, then the package purged: nothing of it stays.
    std::fs::remove_file("/etc/rcd/units/debtest.toml").unwrap();
    wait_until(15 * SEC, "the unit gone", || {
        !String::from_utf8_lossy(&rctl(&["list"]).stdout).contains("debtest")
    });
    let mut d = installed.daemon.take().unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    assert!(d.wait().unwrap().success());
    ok(Command::new("dpkg").args(["--purge", "rcd"]));
    for f in [
        "/usr/bin/rcd",
        "/etc/rcd/rcd.toml",
        "/var/lib/rcd",
        "/run/rcd",
        "/etc/rcd",
    ] {
        assert!(!Path::new(f).exists(), "{f} left after purge");
    }
    drop(installed);
}
