//! `rctl exec`: a command in a running container through the runtime's exec, its output,
//! exit code, stdin (`-i`) and terminal (`-t`) passed through the daemon.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

fn rctl_exec(d: &Daemon, args: &[&str], input: Option<&[u8]>) -> std::process::Output {
    let mut child = Command::new(RCTL)
        .arg("--socket")
        .arg(&d.socket)
        .arg("exec")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(data).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exec_passes_output_exit_code_stdin_and_a_terminal() {
    let d = Daemon::start();
    d.write_unit(
        "box",
        &unit(
            "echo hi > /tmp/greeting; exec sleep 1000",
            "stop_signal = \"KILL\"\n",
        ),
    );
    d.wait_state("box", "running", 20 * SEC);

    let out = rctl_exec(
        &d,
        &[
            "box",
            "--",
            "sh",
            "-c",
            "cat /tmp/greeting; echo to-err >&2; exit 7",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    assert_eq!(text(&out.stderr), "to-err\n");

    // -i: our stdin is the command's, to its end.
    let out = rctl_exec(&d, &["-i", "box", "--", "wc", "-c"], Some(&[b'x'; 100_000]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "100000");
    // Without -i the command's stdin is empty.
    let out = rctl_exec(&d, &["box", "--", "cat"], Some(b"ignored"));
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), String::new())
    );

    // -t: a terminal, even with pipes on our side.
    let out = rctl_exec(
        &d,
        &[
            "-t",
            "box",
            "--",
            "sh",
            "-c",
            "test -t 0 && test -t 1 && tty",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("/dev/pts/"),
        "{}",
        text(&out.stdout)
    );
    let out = rctl_exec(
        &d,
        &["-t", "-i", "box", "--", "sh", "-c", "read l; echo got-$l"],
        Some(b"line\n"),
    );
    assert!(
        text(&out.stdout).contains("got-line"),
        "{}",
        text(&out.stdout)
    );

    // -e, -w and -u: beside the container's environment, in another directory, as a user
    // named in the container's /etc/passwd.
    let out = rctl_exec(
        &d,
        &[
            "-e",
            "EXTRA=1",
            "-w",
            "/tmp",
            "-u",
            "nobody",
            "box",
            "--",
            "sh",
            "-c",
            "echo $EXTRA $PATH $(pwd) $(id -u):$(id -g)",
        ],
        None,
    );
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (
            Some(0),
            "1 /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /tmp 65534:65534\n"
                .into()
        ),
        "{}",
        text(&out.stderr)
    );
    let out = rctl_exec(&d, &["-u", "ghost", "box", "--", "true"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("\"ghost\" is not in the container's /etc/passwd"),
        "{}",
        text(&out.stderr)
    );
    let out = rctl_exec(&d, &["-w", "tmp", "box", "--", "true"], None);
    assert!(
        text(&out.stderr).contains("is not absolute"),
        "{}",
        text(&out.stderr)
    );

    // A command that is not there: the runtime's error, not rctl's.
    let out = rctl_exec(&d, &["box", "--", "/no/such/command"], None);
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn exec_into_a_unit_that_does_not_run_is_a_clear_error() {
    let d = Daemon::start();
    d.write_unit(
        "idle",
        &unit("exec sleep 1000", "[install]\nautostart = false\n"),
    );
    d.wait_state("idle", "pending", 10 * SEC);
    let out = rctl_exec(&d, &["idle", "--", "true"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unit idle is not running (it is pending)"),
        "{}",
        text(&out.stderr)
    );
    let out = rctl_exec(&d, &["nope", "--", "true"], None);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
}

#[test]
fn a_command_whose_client_is_killed_does_not_outlive_it() {
    let d = Daemon::start();
    d.write_unit("box", &unit("exec sleep 1000", "stop_signal = \"KILL\"\n"));
    d.wait_state("box", "running", 20 * SEC);
    let mut client = Command::new(RCTL)
        .arg("--socket")
        .arg(&d.socket)
        .args(["exec", "box", "--", "sleep", "4321"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
            .any(|p| cmdline(p).trim() == "sleep 4321")
    };
    wait_until(10 * SEC, "the command runs", running);
    client.kill().unwrap();
    let _ = client.wait();
    wait_until(10 * SEC, "the command is gone", || !running());
}
