//! The wall clock set back and forward under the daemon: a restart backoff is waited out on the
//! monotonic clock, so it is neither stretched by an hour set back nor skipped by two hours set
//! forward. The daemon (and what it starts) sees a wall clock of libfaketime's, moved through
//! its control file; the host's clock is not touched.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::*;
use crate::invariants::{settle_and_check, Want};

const SEC: Duration = Duration::from_secs(1);

/// libfaketime's multithreaded library (Debian's faketime), in the directory of the host's
/// multiarch triplet (`dpkg-architecture`, else `gcc -print-multiarch`), else wherever
/// /usr/lib/*/faketime/ has it.
fn libfaketime() -> std::path::PathBuf {
    const LIB: &str = "faketime/libfaketimeMT.so.1";
    let asked = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|t| !t.is_empty())
    };
    let triplet = asked("dpkg-architecture", &["-qDEB_HOST_MULTIARCH"])
        .or_else(|| asked("gcc", &["-print-multiarch"]));
    let mut looked = Vec::new();
    if let Some(t) = &triplet {
        looked.push(std::path::Path::new("/usr/lib").join(t).join(LIB));
    }
    if let Ok(dirs) = std::fs::read_dir("/usr/lib") {
        let mut others: Vec<_> = dirs.flatten().map(|e| e.path().join(LIB)).collect();
        others.sort();
        looked.extend(others);
    }
    looked
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "libfaketimeMT.so.1 not found (multiarch triplet {triplet:?}; looked in \
                 /usr/lib/*/faketime/): install Debian's faketime (sh scripts/setup.sh does)"
            )
        })
}

fn restarts(d: &Daemon) -> u64 {
    d.status("crash").unwrap()["restarts"]
        .as_u64()
        .unwrap_or_default()
}

#[test]
fn a_backoff_is_neither_stretched_nor_skipped_by_wall_clock_jumps() {
    let lib = libfaketime();
    let mut d = Daemon::new();
    let offset = d.dir.path().join("clock-offset");
    std::fs::write(&offset, "+0\n").unwrap();
    d.env = vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        (
            "FAKETIME_TIMESTAMP_FILE".into(),
            offset.display().to_string(),
        ),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ];
    // Each run notes when it began on the host's monotonic clock (its own, not faked).
    let state = d.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let starts = || -> Vec<f64> {
        std::fs::read_to_string(state.join("starts"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    };
    d.write_unit(
        "crash",
        &format!(
            "{}\n[[mount]]\nsource = {:?}\ntarget = \"/state\"\n\
             [restart]\npolicy = \"always\"\ndelay = \"3s\"\nmax_delay = \"3s\"\n\
             [network]\nmode = \"none\"\n",
            unit("cut -d' ' -f1 /proc/uptime >> /state/starts; exit 1", ""),
            state.display().to_string()
        ),
    );
    d.spawn();
    wait_until(10 * SEC, "the first restart", || restarts(&d) >= 1);
    d.wait_state("crash", "restarting", 10 * SEC);

    // Set back an hour during a 3 s backoff: the next run still begins about 3 s after the
    // one before.
    let before = restarts(&d);
    let ran = starts().len();
    std::fs::write(&offset, "-3600\n").unwrap();
    wait_until(10 * SEC, "a restart within its delay", || {
        restarts(&d) > before
    });
    let s = starts();
    let gap = s[ran] - s[ran - 1];
    assert!((3.0..5.0).contains(&gap), "runs began {gap} s apart: {s:?}");
    // The status shows the due time on the (faked) wall clock the daemon now has.
    let s = d.wait_state("crash", "restarting", 10 * SEC);
    let due = humantime::parse_rfc3339(s["restart_at"].as_str().unwrap()).unwrap();
    let real_now = std::time::SystemTime::now();
    let ahead_of_real = real_now.duration_since(due).unwrap_or_default();
    assert!(
        ahead_of_real > Duration::from_secs(3500),
        "restart_at is on the daemon's clock, an hour behind: {due:?} vs {real_now:?}"
    );

    // Set forward two hours during the next backoff: it is not skipped; the next run begins
    // 3 s after the one before, not as soon as the clock jumps.
    let before = restarts(&d);
    let ran = starts().len();
    std::fs::write(&offset, "+7200\n").unwrap();
    // Looked at during the backoff, on the new clock: still not due.
    d.look_again("crash");
    wait_until(10 * SEC, "the restart at its time", || {
        restarts(&d) > before
    });
    let s = starts();
    let gap = s[ran] - s[ran - 1];
    assert!((3.0..5.0).contains(&gap), "runs began {gap} s apart: {s:?}");

    // Then a long runner replaces it, and everything is as asked.
    d.write_unit(
        "crash",
        &format!(
            "{}\n[network]\nmode = \"none\"\n",
            unit("exec sleep 1000", "stop_signal = \"KILL\"")
        ),
    );
    let want = BTreeMap::from([("crash".to_string(), Want::Running { net: false })]);
    settle_and_check(&d, &want, 30 * SEC);
}
