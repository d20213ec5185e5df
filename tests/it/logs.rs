//! Container logs through the shim: rotation by size under a flood, lines without newlines and
//! binary output, `rctl logs` --tail / --since / --stream / -f (across restarts and rotations),
//! drops counted when the disk cannot keep up, logs of removed units, limits that recreate
//! nothing.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

/// No network: these tests are about output, and a bridge only costs start time.
const NO_NET: &str = "[network]\nmode = \"none\"\n";

fn logs(d: &Daemon, args: &[&str]) -> Vec<u8> {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    let out = d.rctl(&all);
    assert!(
        out.status.success(),
        "rctl {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn text(d: &Daemon, args: &[&str]) -> String {
    String::from_utf8_lossy(&logs(d, args)).into_owned()
}

/// The unit's log files, current and rotated, with their sizes.
fn log_files(d: &Daemon, unit: &str) -> Vec<(PathBuf, u64)> {
    let dir = d.root.join("logs");
    let mut out: Vec<(PathBuf, u64)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n == format!("{unit}.log") || n.starts_with(&format!("{unit}.log."))
        })
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .collect();
    out.sort();
    out
}

#[test]
fn a_flood_keeps_running_and_rotation_keeps_the_files_within_bounds() {
    let d = Daemon::start();
    // 50 MiB as fast as busybox can write it, then a marker once the shim has caught up.
    let script = "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijkl \
                  | head -c 52428800; echo; sleep 1; echo flood-done; exec sleep 1000";
    d.write_unit(
        "flood",
        &unit(
            script,
            &format!("{NO_NET}[logs]\nmax_size = \"1M\"\nmax_files = 3\n"),
        ),
    );
    let s = d.wait_state("flood", "running", 10 * SEC);
    let pid = pid_of(&s);
    let started = Instant::now();
    wait_until(30 * SEC, "the flood is written", || {
        text(&d, &["flood", "--tail", "1"]) == "flood-done\n"
    });
    eprintln!("50 MiB through the shim in {:?}", started.elapsed());
    // Still the same container, running.
    let s = d.status("flood").unwrap();
    assert_eq!(s["state"], "running");
    assert_eq!(pid_of(&s), pid);
    assert!(pid_alive(pid));
    let files = log_files(&d, "flood");
    let names: Vec<String> = files
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["flood.log", "flood.log.1", "flood.log.2"]);
    for (p, size) in &files {
        assert!(*size <= 1 << 20, "{} is {size} bytes", p.display());
    }
    // Rotated files are full: rotation happened by size, not early.
    assert!(files[1].1 > 1000 * 1024, "{files:?}");
    // Every record whole and in the CRI shape; no torn line at a rotation.
    for (p, _) in &files {
        let data = std::fs::read(p).unwrap();
        assert!(data.ends_with(b"\n"));
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let r = rcd::logs::parse(line)
                .unwrap_or_else(|| panic!("bad record {:?}", String::from_utf8_lossy(line)));
            assert_eq!(r.stream, b"stdout");
        }
    }
    // --tail counts across the rotated files: more lines than the current file holds.
    let current_lines = std::fs::read(&files[0].0)
        .unwrap()
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    let n = current_lines + 100;
    let out = text(&d, &["flood", "--tail", &n.to_string()]);
    assert_eq!(out.lines().count(), n);
    assert!(out.ends_with("flood-done\n"), "{}", &out[out.len() - 200..]);
}

/// A unit printing `count` numbered lines on stdout, and every tenth on stderr too, then (once
/// the shim has surely read both streams: their relative order is only as the shim read them)
/// two more lines, then sleeping.
fn counter(count: u32) -> String {
    format!(
        "i=0; while [ $i -lt {count} ]; do echo out-$i; [ $((i % 10)) = 0 ] && echo err-$i >&2; i=$((i+1)); done; \
         sleep 0.3; echo last-but-one; echo done-counting; exec sleep 1000"
    )
}

#[test]
fn tail_stream_and_since() {
    let d = Daemon::start();
    d.write_unit("count", &unit(&counter(500), NO_NET));
    d.wait_state("count", "running", 10 * SEC);
    wait_until(10 * SEC, "counted", || {
        text(&d, &["count"]).contains("done-counting")
    });
    // Everything, in order per stream.
    let all = text(&d, &["count"]);
    let outs: Vec<&str> = all.lines().filter(|l| l.starts_with("out-")).collect();
    let want: Vec<String> = (0..500).map(|i| format!("out-{i}")).collect();
    assert_eq!(outs, want);
    // --tail: the last lines, in order.
    assert_eq!(
        text(&d, &["count", "--tail", "2"]),
        "last-but-one\ndone-counting\n"
    );
    // Across streams, order is as the shim read them; within one, as written.
    assert_eq!(
        text(&d, &["count", "--stream", "stdout", "--tail", "4"]),
        "out-498\nout-499\nlast-but-one\ndone-counting\n"
    );
    assert_eq!(text(&d, &["count", "-n", "0"]), "");
    // --stream.
    assert_eq!(
        text(&d, &["count", "--stream", "stderr", "--tail", "2"]),
        "err-480\nerr-490\n"
    );
    let errs = text(&d, &["count", "--stream", "stderr"]);
    assert_eq!(errs.lines().count(), 50);
    assert!(!errs.contains("out-"));
    let out = text(
        &d,
        &["count", "--stream", "stdout", "--timestamps", "--tail", "1"],
    );
    assert!(out.ends_with(" stdout done-counting\n"), "{out}");

    // --since: a relative time covers all; a time after the output, nothing; the time of a
    // line, that line and what follows.
    assert_eq!(text(&d, &["count", "--since", "10m"]), all);
    let later = humantime::format_rfc3339_seconds(SystemTime::now() + 5 * SEC).to_string();
    assert_eq!(text(&d, &["count", "--since", &later]), "");
    let stamped = text(&d, &["count", "--timestamps", "--stream", "stdout"]);
    let line = stamped.lines().nth(250).unwrap();
    let (time, rest) = line.split_once(' ').unwrap();
    assert_eq!(rest, "stdout out-250");
    let since = text(&d, &["count", "--since", time, "--stream", "stdout"]);
    // Lines read in one go share their time: out-250 and whatever came with it, and all after.
    let first: u32 = since
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("out-"))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(first <= 250, "{since}");
    assert!(since.ends_with("out-499\nlast-but-one\ndone-counting\n"));
    assert!(!since.contains("out-0\n") || first == 0);
    // --since with an offset: the same instant.
    let t = humantime::parse_rfc3339(time).unwrap();
    let with_offset = format!(
        "{}+01:00",
        humantime::format_rfc3339_nanos(t + Duration::from_secs(3600))
            .to_string()
            .trim_end_matches('Z')
    );
    assert_eq!(
        text(
            &d,
            &["count", "--since", &with_offset, "--stream", "stdout"]
        ),
        since
    );

    // Bad flags are usage errors.
    let out = d.rctl(&["logs", "count", "--since", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a duration"));
    let out = d.rctl(&["logs", "count", "--stream", "stdin"]);
    assert_eq!(out.status.code(), Some(2));
    let out = d.rctl(&["logs", "nope"]);
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn lines_without_newline_long_lines_and_binary_output() {
    let d = Daemon::start();
    let script = "printf 'no-newline'; sleep 2; printf '\\001\\000\\377\\376 bin\\r\\n'; \
                  head -c 40000 /dev/zero | tr '\\000' a; echo; printf 'last-words'; exec sleep 1000";
    d.write_unit("raw", &unit(script, NO_NET));
    d.wait_state("raw", "running", 10 * SEC);
    // The unfinished line shows before its newline comes.
    wait_until(SEC + SEC / 2, "the partial line", || {
        logs(&d, &["raw"]) == b"no-newline"
    });
    let mut want = b"no-newline\x01\x00\xff\xfe bin\r\n".to_vec();
    want.extend(vec![b'a'; 40000]);
    want.extend(b"\nlast-words");
    wait_until(10 * SEC, "all the output", || logs(&d, &["raw"]) == want);
    // Byte for byte, rejoined from partial records (the long line is three in the file).
    let file = std::fs::read(d.root.join("logs/raw.log")).unwrap();
    let records: Vec<_> = file
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| rcd::logs::parse(l).unwrap().full)
        .collect();
    assert_eq!(records, [false, true, false, false, true, false]);
    // --tail counts lines, not records.
    assert_eq!(logs(&d, &["raw", "--tail", "1"]), b"last-words");
    let mut two = vec![b'a'; 40000];
    two.extend(b"\nlast-words");
    assert_eq!(logs(&d, &["raw", "--tail", "2"]), two);
}

/// Reads a child's stdout on a thread; the text so far on demand.
struct Follow {
    child: std::process::Child,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Follow {
    fn start(d: &Daemon, args: &[&str]) -> Follow {
        let mut child = Command::new(RCTL)
            .args(["--socket", d.socket.to_str().unwrap(), "logs", "-f"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Follow { child, seen }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn follow_continues_across_restarts_and_rotations() {
    let d = Daemon::start();
    let state = d.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // Three runs of 300 lines of about 1 KiB (about 14 rotations at 64 KiB), the first one
    // only once the test says go; the policy restarts the first two at once.
    let pad = "x".repeat(1000);
    let script = format!(
        "r=$(cat /state/n 2>/dev/null || echo 0); echo $((r+1)) > /state/n; \
         while [ ! -e /state/go ]; do usleep 20000; done; \
         i=0; while [ $i -lt 300 ]; do echo \"run $r seq $i {pad}\"; i=$((i+1)); usleep 1000; done; \
         [ $r -ge 2 ] && exec sleep 1000; exit 1"
    );
    d.write_unit(
        "steady",
        &unit(
            &script,
            &format!(
                "{NO_NET}[[mount]]\nsource = {:?}\ntarget = \"/state\"\n\
                 [restart]\npolicy = \"always\"\ndelay = \"0s\"\n\
                 [logs]\nmax_size = \"64K\"\nmax_files = 5\n",
                state.display().to_string()
            ),
        ),
    );
    d.wait_state("steady", "running", 10 * SEC);
    let f = Follow::start(&d, &["steady"]);
    let stderr_only = Follow::start(&d, &["steady", "--stream", "stderr"]);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(state.join("go"), "").unwrap();
    wait_until(30 * SEC, "three runs followed", || {
        f.text().contains("run 2 seq 299 ")
    });
    let want: Vec<String> = (0..3)
        .flat_map(|r| (0..300).map(move |i| format!("run {r} seq {i} {}", "x".repeat(1000))))
        .collect();
    let got = f.text();
    let got: Vec<&str> = got.lines().collect();
    if got != want {
        let short: Vec<String> = got.iter().map(|l| l.chars().take(16).collect()).collect();
        panic!("follow saw {} lines: {short:?}", got.len());
    }
    assert_eq!(stderr_only.text(), "");
    let s = d.status("steady").unwrap();
    assert_eq!(s["restarts"], 2);
    // Rotation kept its bounds meanwhile.
    let files = log_files(&d, "steady");
    assert_eq!(files.len(), 5, "{files:?}");
    assert!(
        files.iter().all(|(_, size)| *size <= 64 * 1024),
        "{files:?}"
    );
    // --tail across the rotated files: the last 100 lines span two or more of them.
    let tail = text(&d, &["steady", "--tail", "100"]);
    let tail: Vec<&str> = tail.lines().collect();
    assert_eq!(tail, want[800..]);
}

#[test]
fn drops_are_counted_and_shown_when_the_disk_cannot_keep_up() {
    let mut d = Daemon::new();
    // The unit's log file is a FIFO nobody reads: a disk that takes nothing, the limit case
    // of one slower than the container. The test holds the read end open, never reading.
    let logs_dir = d.root.join("logs");
    std::fs::create_dir_all(&logs_dir).unwrap();
    let fifo = logs_dir.join("jammed.log");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let _reader = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap()
    };
    d.spawn();
    let state = d.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    d.write_unit(
        "jammed",
        &unit(
            "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz | head -c 20000000; \
             echo >&2 to-stderr; touch /state/done; exec sleep 1000",
            &format!(
                "{NO_NET}[[mount]]\nsource = {:?}\ntarget = \"/state\"\n",
                state.display().to_string()
            ),
        ),
    );
    let s = d.wait_state("jammed", "running", 10 * SEC);
    // The container wrote its 20 MB and went on: its output never blocked it.
    wait_until(15 * SEC, "the container finished writing", || {
        state.join("done").exists()
    });
    wait_until(5 * SEC, "drops counted", || {
        d.status("jammed").unwrap()["logs_dropped"]
            .as_u64()
            .is_some_and(|n| n > 100_000)
    });
    // The shim may still be counting the tail of the burst: the JSON and the text agree
    // once the count holds still (bounded).
    let mut s2 = d.status("jammed").unwrap();
    let mut text = String::new();
    for _ in 0..50 {
        s2 = d.status("jammed").unwrap();
        let out = d.rctl(&["status", "jammed"]);
        text = String::from_utf8_lossy(&out.stdout).into_owned();
        let n = s2["logs_dropped"].as_u64().unwrap();
        if text.contains(&format!("Logs: {n} lines dropped")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s2["state"], "running");
    assert_eq!(pid_of(&s2), pid_of(&s));
    let n = s2["logs_dropped"].as_u64().unwrap();
    assert!(text.contains(&format!("Logs: {n} lines dropped")), "{text}");
    // Counted per stream in the container's directory, where the shim keeps them.
    let id = s2["container_id"].as_str().unwrap();
    let counts =
        std::fs::read_to_string(d.root.join("containers").join(id).join("log-dropped.json"))
            .unwrap();
    let v: serde_json::Value = serde_json::from_str(&counts).unwrap();
    assert!(v["stdout"].as_u64().unwrap() > 100_000, "{v}");
}

#[test]
fn logs_of_removed_units_stay_until_pruned_or_old() {
    let mut d = Daemon::new();
    d.write_config("", "[logs]\nkeep_removed = \"1d\"\n");
    let logs_dir = d.root.join("logs");
    std::fs::create_dir_all(&logs_dir).unwrap();
    // A unit removed long ago, and one removed just now, from an earlier run of the daemon.
    for (name, age) in [
        ("ancient.log", 3 * 86400),
        ("ancient.log.1", 3 * 86400),
        ("recent.log", 60),
    ] {
        let p = logs_dir.join(name);
        std::fs::write(&p, "2026-01-01T00:00:00.000000000Z stdout F old\n").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age))
            .unwrap();
    }
    d.spawn();
    wait_until(5 * SEC, "the old logs swept at start", || {
        !logs_dir.join("ancient.log").exists() && !logs_dir.join("ancient.log.1").exists()
    });
    assert!(logs_dir.join("recent.log").exists());
    assert_eq!(text(&d, &["recent"]), "old\n");

    d.write_unit(
        "short",
        &unit("echo said-something; exec sleep 1000", NO_NET),
    );
    d.wait_state("short", "running", 10 * SEC);
    wait_until(5 * SEC, "output", || {
        text(&d, &["short"]) == "said-something\n"
    });
    d.remove_unit("short");
    wait_until(10 * SEC, "unit gone", || d.status("short").is_none());
    // Removed, still readable.
    assert_eq!(text(&d, &["short"]), "said-something\n");
    // A loaded unit's logs are never pruned.
    d.write_unit("stays", &unit("echo here; exec sleep 1000", NO_NET));
    d.wait_state("stays", "running", 10 * SEC);
    wait_until(5 * SEC, "output", || text(&d, &["stays"]) == "here\n");
    let out = text(&d, &["--prune"]);
    assert_eq!(out, "removed the logs of: recent, short\n");
    assert!(!logs_dir.join("short.log").exists());
    assert_eq!(d.rctl(&["logs", "short"]).status.code(), Some(4));
    assert_eq!(text(&d, &["stays"]), "here\n");
    assert_eq!(text(&d, &["--prune"]), "no logs of removed units\n");
    let out = d.rctl(&["logs", "--prune", "stays"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The shim running container `id`, from /proc.
fn shim_cmdline(id: &str) -> String {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i64>() else {
            continue;
        };
        let c = cmdline(pid);
        if c.contains("rcd-shim") && c.contains(&format!("--id {id} ")) {
            return c;
        }
    }
    String::new()
}

#[test]
fn changed_limits_recreate_nothing_and_apply_at_the_next_start() {
    let d = Daemon::start();
    let with = |size: &str| {
        unit(
            "exec sleep 1000",
            &format!("{NO_NET}[logs]\nmax_size = \"{size}\"\n"),
        )
    };
    d.write_unit("quiet", &with("1M"));
    let s = d.wait_state("quiet", "running", 10 * SEC);
    let pid = pid_of(&s);
    let id = s["container_id"].as_str().unwrap().to_string();
    assert!(shim_cmdline(&id).contains("--log-max-size 1048576 --log-max-files 3"));
    let mark = d.last_seq();
    d.write_unit("quiet", &with("2M"));
    // Once the scan that read it is applied (the reload's) and quiet has been looked at
    // since: the change is in, nothing else happened.
    let out = d.rctl(&["reload"]);
    assert!(out.status.success());
    d.look_again("quiet");
    let s = d.status("quiet").unwrap();
    assert_eq!(
        pid_of(&s),
        pid,
        "a log limit must not recreate the container"
    );
    assert_eq!(d.actions_after(mark, "quiet"), ["changed", "changed"]);
    let v: serde_json::Value =
        serde_json::from_slice(&d.rctl(&["inspect", "quiet"]).stdout).unwrap();
    assert_eq!(v["unit"]["logs"]["max_size"], 2 * 1024 * 1024);
    assert!(d.rctl(&["restart", "quiet"]).status.success());
    let pid2 = d.wait_new_pid("quiet", pid, 10 * SEC);
    assert_ne!(pid2, pid);
    let id = d.status("quiet").unwrap()["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        shim_cmdline(&id).contains("--log-max-size 2097152"),
        "{}",
        shim_cmdline(&id)
    );
}
