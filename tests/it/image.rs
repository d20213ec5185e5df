//! Image units: a unit names an image; the start pipeline pulls it from a real registry,
//! unpacks it into shared snapshots and runs it on an overlay of them (Docker's semantics).

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::registry::{busybox_oci_layout, Image, OciLayout, Registry};

const SEC: Duration = Duration::from_secs(1);

fn logs(d: &Daemon, name: &str) -> String {
    String::from_utf8_lossy(&d.rctl(&["logs", name]).stdout).to_string()
}

fn image_unit(image: &str, extra: &str) -> String {
    format!("[container]\nimage = \"{image}\"\n{extra}")
}

/// Every file under `dir` with its size and mtime, to see that nothing changed.
fn tree(dir: &Path) -> Vec<(String, u64, i128)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.path().symlink_metadata().unwrap();
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            out.push((e.path().display().to_string(), m.len(), mtime));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn pulls_runs_shares_layers_and_cleans_up() {
    let reg = Registry::start();
    let layouts = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_oci_layout(&layouts.path().join("busybox"));
    reg.push_layout(&layout.dir, "busybox:latest");
    let image = format!("{}/busybox:latest", reg.addr);

    let d = Daemon::start();
    d.write_unit(
        "a",
        &image_unit(
            &image,
            "command = [\"sh\", \"-c\", \"echo from-image; echo touched > /bin/written; exec sleep 1000\"]\nstop_signal = \"KILL\"\n",
        ),
    );
    let s = d.wait_state("a", "running", 15 * SEC);
    let pid = pid_of(&s);
    assert!(pid_alive(pid));
    wait_until(5 * SEC, "log shows from-image", || {
        logs(&d, "a").contains("from-image")
    });
    assert!(cmdline(pid).contains("sleep 1000"), "{}", cmdline(pid));

    // One snapshot directory per chain id (busybox has one layer), shared by a second unit.
    let snapshots = d.root.join("images/snapshots");
    let dirs = || -> Vec<String> {
        std::fs::read_dir(&snapshots)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.len() == 64)
            .collect()
    };
    assert_eq!(dirs().len(), 1, "{:?}", dirs());
    let before = tree(&snapshots);
    d.write_unit(
        "b",
        &image_unit(
            &image,
            "command = [\"sh\", \"-c\", \"exec sleep 1001\"]\nstop_signal = \"KILL\"\n",
        ),
    );
    let sb = d.wait_state("b", "running", 15 * SEC);
    assert_eq!(dirs().len(), 1, "the second unit shares the snapshot");
    // Container writes land in its upper layer, never in the image's layers.
    wait_until(5 * SEC, "write done", || {
        logs(&d, "a").contains("from-image")
    });
    assert_eq!(tree(&snapshots), before, "image layers changed");
    let written = d.root.join("containers");
    let found = std::fs::read_dir(&written)
        .unwrap()
        .flatten()
        .any(|e| e.path().join("upper/bin/written").exists());
    assert!(found, "the write is in a container's upper layer");

    // Deleting the files removes the containers and every mount.
    d.remove_unit("a");
    d.remove_unit("b");
    wait_until(10 * SEC, "units gone", || {
        d.status("a").is_none() && d.status("b").is_none()
    });
    assert!(!pid_alive(pid));
    assert!(!pid_alive(pid_of(&sb)));
    wait_until(5 * SEC, "mounts gone", || d.mounts().is_empty());
    assert!(d.runtime_containers().is_empty());
}

#[test]
fn image_config_defaults_merge_under_the_unit() {
    let reg = Registry::start();
    let layouts = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&layouts.path().join("app"));
    let mut img = Image::busybox();
    img.config = json!({
        "Env": ["PATH=/bin", "FROM_IMAGE=image", "SHARED=image"],
        "Entrypoint": ["sh", "-c"],
        "Cmd": ["echo \"env:$FROM_IMAGE:$SHARED:$FROM_UNIT pwd:$(pwd) id:$(id -u)\"; exec sleep 1000"],
        "WorkingDir": "/tmp",
        "User": "7:8",
    });
    let desc = layout.add_image(&img);
    layout.tag("latest", &desc);
    reg.push_layout(&layout.dir, "app:latest");

    let d = Daemon::start();
    d.write_unit(
        "app",
        &image_unit(
            &format!("{}/app:latest", reg.addr),
            "env = { SHARED = \"unit\", FROM_UNIT = \"unit\" }\n",
        ),
    );
    d.wait_state("app", "running", 15 * SEC);
    wait_until(5 * SEC, "output", || logs(&d, "app").contains("env:"));
    let out = logs(&d, "app");
    assert!(
        out.contains("env:image:unit:unit pwd:/tmp id:7"),
        "entrypoint + cmd, env merged, workdir and user from the image: {out}"
    );
}

#[test]
fn pull_never_without_the_image_fails() {
    let d = Daemon::start();
    d.write_unit(
        "never",
        &image_unit("127.0.0.1:1/absent:latest", "pull = \"never\"\n"),
    );
    let s = d.wait_state("never", "failed", 10 * SEC);
    let err = s["error"].as_str().unwrap_or_default().to_string();
    assert!(
        err.contains("image 127.0.0.1:1/absent:latest") && err.contains("pull = never"),
        "{err}"
    );
}

#[test]
fn registry_down_retries_with_backoff() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let image = format!("127.0.0.1:{port}/down:latest");
    let d = Daemon::start();
    d.write_unit(
        "down",
        &format!(
            "{}[restart]\npolicy = \"on-failure\"\ndelay = \"200ms\"\n",
            image_unit(&image, "command = [\"true\"]\n")
        ),
    );
    let s = d.wait_state("down", "restarting", 10 * SEC);
    let err = s["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains(&image) && err.contains("pull failed"), "{err}");
    wait_until(10 * SEC, "retried", || {
        d.status("down")
            .and_then(|s| s["restarts"].as_u64())
            .is_some_and(|n| n >= 2)
    });
    assert!(d.runtime_containers().is_empty());
}

#[test]
fn stored_image_runs_offline_but_pull_always_needs_the_registry() {
    let reg = Registry::start();
    let layouts = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_oci_layout(&layouts.path().join("busybox"));
    reg.push_layout(&layout.dir, "busybox:latest");
    let image = format!("{}/busybox:latest", reg.addr);
    let cmd = "command = [\"sh\", \"-c\", \"exec sleep 1000\"]\nstop_signal = \"KILL\"\n";

    let d = Daemon::start();
    d.write_unit("first", &image_unit(&image, cmd));
    d.wait_state("first", "running", 15 * SEC);
    drop(reg);

    // Stored: `never` and `missing` use it without the registry.
    d.write_unit(
        "offline",
        &image_unit(&image, &format!("pull = \"never\"\n{cmd}")),
    );
    d.wait_state("offline", "running", 10 * SEC);
    // `always` pulls at every start; with the registry gone the start fails (as Docker's).
    d.write_unit(
        "always",
        &image_unit(&image, &format!("pull = \"always\"\n{cmd}")),
    );
    let s = d.wait_state("always", "failed", 10 * SEC);
    let err = s["error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains(&image) && err.contains("pull failed"), "{err}");
}

#[test]
fn a_start_waiting_for_its_pull_shows_pulling() {
    // A registry that accepts connections and never answers: the pull waits.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let d = Daemon::start();
    d.write_unit(
        "slow",
        &image_unit(&format!("127.0.0.1:{port}/slow:latest"), ""),
    );
    d.wait_state("slow", "pulling", 10 * SEC);
    let out = String::from_utf8_lossy(&d.rctl(&["status", "slow"]).stdout).to_string();
    assert!(out.contains("pulling"), "{out}");
}
