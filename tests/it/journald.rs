//! The journald log driver against a real systemd-journald: one started for the test in a mount
//! namespace of its own (a tmpfs over `/run`, so the host's `/run` and journal are untouched),
//! reached by the daemon through `/proc/<its pid>/root`. The VM scenario checks the same under
//! systemd as PID 1.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);
const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// A systemd-journald of the test's own, stopped on drop.
struct Journald {
    child: Child,
}

impl Journald {
    fn start() -> Journald {
        assert!(
            std::path::Path::new(JOURNALD).exists(),
            "{JOURNALD} is missing (the systemd package; sh scripts/setup.sh installs it)"
        );
        // Volatile storage only: a tmpfs over /run, and over /var/log/journal if the host keeps
        // a persistent journal there, so nothing of this journald outlives the test.
        let script = format!(
            "set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/systemd/journal; \
             if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi; \
             exec {JOURNALD}"
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare");
        let j = Journald { child };
        wait_until(10 * SEC, "journald's socket", || j.socket().exists());
        j
    }

    fn socket(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root/run/systemd/journal/socket",
            self.child.id()
        ))
    }

    /// The entries matching `matches` (`FIELD=value`), as journalctl's JSON.
    fn entries(&self, matches: &[&str]) -> Vec<Value> {
        let out = Command::new("nsenter")
            .args(["-t", &self.child.id().to_string(), "-m", "journalctl"])
            .args(["--no-pager", "-o", "json", "--output-fields=MESSAGE,PRIORITY,CONTAINER_NAME,RCD_UNIT,CONTAINER_ID_FULL,SYSLOG_IDENTIFIER,CONTAINER_PARTIAL_MESSAGE"])
            .args(matches)
            .output()
            .expect("journalctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        self.stop();
    }
}

fn message(e: &Value) -> String {
    e["MESSAGE"].as_str().unwrap_or_default().to_string()
}

#[test]
fn journald_driver_sends_each_line_with_its_unit_and_keeps_the_file() {
    let mut journald = Journald::start();
    let mut d = Daemon::new();
    d.write_config(
        "",
        &format!(
            "[logs]\njournal_socket = \"{}\"\n",
            journald.socket().display()
        ),
    );
    d.spawn();
    // The unit asks for journald; "plain" takes the daemon's default, the file alone.
    d.write_unit(
        "jlog",
        &unit(
            "echo out-line; echo err-line >&2; printf 'no-newline'; sleep 0.5; echo; \
             while true; do if [ -e /tmp/more ]; then echo after-journald; rm /tmp/more; fi; \
             sleep 0.1; done",
            "[network]\nmode = \"none\"\n[logs]\ndriver = \"journald\"\n",
        ),
    );
    d.write_unit(
        "plain",
        &unit(
            "echo plain-line; exec sleep 1000",
            "[network]\nmode = \"none\"\n",
        ),
    );
    let s = d.wait_state("jlog", "running", 20 * SEC);
    d.wait_state("plain", "running", 20 * SEC);
    let mut entries = Vec::new();
    wait_until(20 * SEC, "the container's lines in the journal", || {
        entries = journald.entries(&["RCD_UNIT=jlog"]);
        entries.len() >= 4
    });
    // Each stream in its order; the two streams as the shim read them.
    let mut messages: Vec<String> = entries.iter().map(message).collect();
    messages.sort();
    assert_eq!(
        messages,
        ["", "err-line", "no-newline", "out-line"],
        "{entries:?}"
    );
    let by = |m: &str| entries.iter().find(|e| message(e) == m).unwrap().clone();
    let out = by("out-line");
    assert_eq!(out["PRIORITY"], "6");
    assert_eq!(out["CONTAINER_NAME"], "jlog");
    assert_eq!(out["SYSLOG_IDENTIFIER"], "jlog");
    let id = out["CONTAINER_ID_FULL"].as_str().unwrap().to_string();
    assert!(id.contains("-jlog-"), "{id}");
    assert_eq!(by("err-line")["PRIORITY"], "3");
    // Output left without its newline went out as a partial record, as the file has it.
    assert_eq!(by("no-newline")["CONTAINER_PARTIAL_MESSAGE"], "true");
    assert!(journald
        .entries(&["-p", "err", "RCD_UNIT=jlog"])
        .iter()
        .map(message)
        .eq(["err-line"]));
    // Dual logging: rctl logs reads the file, which has every line too.
    let logs = String::from_utf8_lossy(&d.rctl(&["logs", "jlog"]).stdout).into_owned();
    assert!(
        logs.contains("out-line\n") && logs.contains("err-line\n"),
        "{logs}"
    );
    assert!(logs.contains("no-newline\n"), "{logs}");
    // The file driver sends nothing to journald.
    wait_until(10 * SEC, "plain's line in its file", || {
        String::from_utf8_lossy(&d.rctl(&["logs", "plain"]).stdout).contains("plain-line")
    });
    assert!(journald.entries(&["CONTAINER_NAME=plain"]).is_empty());

    // journald gone: the container runs on, its file gets the line, the journal's loss counted.
    journald.stop();
    let pid = pid_of(&s);
    std::fs::write(format!("/proc/{pid}/root/tmp/more"), "").unwrap();
    wait_until(10 * SEC, "the line in the file", || {
        String::from_utf8_lossy(&d.rctl(&["logs", "jlog"]).stdout).contains("after-journald")
    });
    let counts = d.root.join("containers").join(&id).join("log-dropped.json");
    wait_until(10 * SEC, "the journal's loss counted", || {
        std::fs::read_to_string(&counts)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v["journal"] == 1 && v["stdout"] == 0)
    });
    let s = d.status("jlog").unwrap();
    assert_eq!((s["state"].as_str(), pid_of(&s)), (Some("running"), pid));
    // The file's own count is unmoved: nothing was lost from the log file.
    assert_eq!(s["logs_dropped"], 0);
}
