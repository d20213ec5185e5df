//! Image units: a unit names an image; the start pipeline pulls it from a real registry,
//! unpacks it into shared snapshots and runs it on an overlay of them (Docker's semantics).

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::registry::{
    busybox_oci_layout, host_arch, Compression, Image, Layer, OciLayout, Registry, TarBuilder,
};

const SEC: Duration = Duration::from_secs(1);

fn logs(d: &Daemon, name: &str) -> String {
    String::from_utf8_lossy(&d.rctl(&["logs", name]).stdout).to_string()
}

pub fn image_unit(image: &str, extra: &str) -> String {
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
    let metrics = d.scrape();
    assert_eq!(
        sample(&metrics, "rcd_image_pulls_total{result=\"ok\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "rcd_image_pull_bytes_total") > Some(100_000.0),
        "{metrics}"
    );

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
    let pid = bystander(&d);
    d.write_unit(
        "down",
        &format!(
            "{}[restart]\npolicy = \"on-failure\"\ndelay = \"200ms\"\n",
            image_unit(&image, "command = [\"true\"]\n")
        ),
    );
    let s = d.wait_state("down", "restarting", 10 * SEC);
    let err = s["error"].as_str().unwrap_or_default().to_string();
    assert!(
        err.starts_with(&format!(
            "image {image}: pull failed: registry 127.0.0.1:{port}:"
        )) && err.contains("Connection refused"),
        "{err}"
    );
    wait_until(10 * SEC, "retried", || {
        d.status("down")
            .and_then(|s| s["restarts"].as_u64())
            .is_some_and(|n| n >= 2)
    });
    assert!(d.log().contains(&err), "the daemon log has it too");
    assert_eq!(d.runtime_containers().len(), 1, "only the bystander's");
    assert_undisturbed(&d, pid);
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

/// Short backoff, so that retries are seen within a test.
const RETRY: &str =
    "[restart]\npolicy = \"on-failure\"\ndelay = \"100ms\"\nmax_delay = \"400ms\"\n";

/// Pushes `image` to `reg` as `reference` (`name:tag`); returns what a unit names.
pub fn push_image(reg: &Registry, reference: &str, image: &Image) -> String {
    reg.push_image(reference, image)
}

/// An image of one crafted layer for this host (it never gets as far as running).
fn crafted(tar: Vec<u8>, compression: Compression) -> Image {
    Image::foreign(host_arch(), vec![Layer::from_tar(tar, compression)])
}

/// A unit on the plain busybox rootfs, started first: whatever happens to the image units
/// beside it must not touch it. Returns its pid.
fn bystander(d: &Daemon) -> i64 {
    d.write_unit(
        "bystander",
        &unit("exec sleep 1000", "stop_signal = \"KILL\"\n"),
    );
    pid_of(&d.wait_state("bystander", "running", 10 * SEC))
}

/// The bystander still runs, as the same process, never restarted; and the daemon answers.
fn assert_undisturbed(d: &Daemon, pid: i64) {
    let s = d.status("bystander").expect("bystander loaded");
    assert_eq!(s["state"], "running", "{s:#}");
    assert_eq!(s["pid"].as_i64(), Some(pid), "{s:#}");
    assert_eq!(s["restarts"], 0, "{s:#}");
    assert!(pid_alive(pid));
}

fn error_of(d: &Daemon, name: &str) -> String {
    d.status(name)
        .and_then(|s| s["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Waits until `name` has been retried at least `n` times by its policy.
fn wait_restarts(d: &Daemon, name: &str, n: u64) {
    wait_until(10 * SEC, &format!("{name} retried {n} times"), || {
        d.status(name)
            .and_then(|s| s["restarts"].as_u64())
            .is_some_and(|r| r >= n)
    });
}

/// Names in a directory (none if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_image_stop_signal_stops_it_and_its_ports_are_shown() {
    let reg = Registry::start();
    let mut img = Image::busybox();
    img.config = json!({
        "Env": ["PATH=/bin"],
        "Cmd": ["sh", "-c", "trap 'echo got-quit; exit 0' QUIT; trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.05; done"],
        "StopSignal": "SIGQUIT",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
    });
    let image = push_image(&reg, "quits:latest", &img);
    img.config["StopSignal"] = json!("SIGNOPE");
    let bad = push_image(&reg, "badsig:latest", &img);

    let d = Daemon::start();
    // No stop_signal: the image's. An explicit one, even the default, wins over the image's.
    d.write_unit("quits", &image_unit(&image, "stop_timeout = \"30s\"\n"));
    d.write_unit(
        "terms",
        &image_unit(&image, "stop_signal = \"TERM\"\nstop_timeout = \"30s\"\n"),
    );
    d.write_unit("badsig", &image_unit(&bad, ""));
    for name in ["quits", "terms"] {
        d.wait_state(name, "running", 15 * SEC);
        wait_until(5 * SEC, "ready", || logs(&d, name).contains("ready"));
    }

    // Recorded at start: the stop path reads the record, not the file or the image.
    let inspect = |name: &str| -> serde_json::Value {
        let out = d.rctl(&["inspect", name]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let i = inspect("quits");
    assert_eq!(i["record"]["stop_signal"], "SIGQUIT", "{i:#}");
    assert_eq!(i["unit"]["container"]["stop_signal"], json!(null), "{i:#}");
    assert_eq!(i["record"]["exposed_ports"], json!(["53/udp", "80/tcp"]));
    assert_eq!(i["status"]["exposed_ports"], json!(["53/udp", "80/tcp"]));
    assert_eq!(inspect("terms")["record"]["stop_signal"], "SIGTERM");
    let text = String::from_utf8_lossy(&d.rctl(&["status", "quits"]).stdout).to_string();
    assert!(
        text.contains("Ports: 53/udp, 80/tcp (exposed by the image; not published)"),
        "{text}"
    );

    for (name, said) in [("quits", "got-quit"), ("terms", "got-term")] {
        let t = std::time::Instant::now();
        assert!(d.rctl(&["stop", name]).status.success());
        assert!(t.elapsed() < 5 * SEC, "{name}: not stopped by its signal");
        let s = d.status(name).unwrap();
        assert_eq!(
            (s["state"].as_str(), s["exit_code"].as_i64()),
            (Some("stopped"), Some(0))
        );
        let out = logs(&d, name);
        assert!(out.contains(said), "{name}: {out}");
    }

    // An image StopSignal that is no signal fails the start, before anything runs.
    let s = d.wait_state("badsig", "failed", 15 * SEC);
    let err = s["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("unit badsig") && err.contains("StopSignal \"SIGNOPE\" is not a signal"),
        "{err}"
    );
    assert!(d.log().contains("StopSignal \"SIGNOPE\""));
    assert!(d.runtime_containers().is_empty());
}

#[test]
fn a_missing_tag_is_a_clear_error_retried_with_backoff() {
    let reg = Registry::start();
    let layouts = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_oci_layout(&layouts.path().join("busybox"));
    reg.push_layout(&layout.dir, "busybox:latest");
    let image = reg.image("busybox:nope");

    let d = Daemon::start();
    let pid = bystander(&d);
    d.write_unit("notag", &format!("{}{RETRY}", image_unit(&image, "")));
    d.wait_state("notag", "restarting", 10 * SEC);
    wait_restarts(&d, "notag", 2);
    let err = error_of(&d, "notag");
    assert!(
        err.starts_with(&format!("image {image}: pull failed:"))
            && err
                .contains("busybox: manifest nope: HTTP 404: manifest unknown (MANIFEST_UNKNOWN)"),
        "{err}"
    );
    let text = String::from_utf8_lossy(&d.rctl(&["status", "notag"]).stdout).to_string();
    assert!(text.contains(&format!("Error: image {image}")), "{text}");
    assert!(d.log().contains(&err), "the daemon log has it too");
    assert_undisturbed(&d, pid);
}

#[test]
fn a_tampered_blob_is_refused_retried_and_used_once_fixed() {
    let reg = Registry::start();
    let layouts = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_oci_layout(&layouts.path().join("busybox"));
    reg.push_layout(&layout.dir, "busybox:latest");
    let manifest = reg.manifest("busybox", "latest").json();
    let digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = digest.trim_start_matches("sha256:").to_string();
    let path = reg.blob_path(&digest);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();

    let d = Daemon::start();
    let pid = bystander(&d);
    d.write_unit(
        "tampered",
        &format!(
            "{}{RETRY}",
            image_unit(
                &reg.image("busybox:latest"),
                "command = [\"sh\", \"-c\", \"echo whole; exec sleep 1000\"]\nstop_signal = \"KILL\"\n"
            )
        ),
    );
    d.wait_state("tampered", "restarting", 10 * SEC);
    wait_restarts(&d, "tampered", 2);
    let err = error_of(&d, "tampered");
    assert!(
        err.contains(&format!("blob {digest}: content has digest sha256:"))
            && err.contains("refusing it")
            && err.matches(&digest).count() == 1,
        "{err}"
    );
    assert!(d.log().contains(&err));
    // Nothing of it is kept: no blob, no partial download, no image record, no snapshot.
    let images = d.root.join("images");
    assert!(!images.join("content/blobs/sha256").join(&hex).exists());
    let partial = images.join("content/ingest").join(&hex);
    assert!(
        std::fs::metadata(&partial).map_or(true, |m| m.len() == 0),
        "tampered bytes kept in {}",
        partial.display()
    );
    assert_eq!(entries(&images.join("meta")), Vec::<String>::new());
    assert_eq!(entries(&images.join("snapshots")), Vec::<String>::new());

    // The registry's copy is repaired: the next retry pulls it whole and runs.
    std::fs::write(&path, &good).unwrap();
    d.wait_state("tampered", "running", 10 * SEC);
    wait_until(5 * SEC, "it runs", || {
        logs(&d, "tampered").contains("whole")
    });
    assert!(images.join("content/blobs/sha256").join(&hex).exists());
    assert_eq!(error_of(&d, "tampered"), "");
    assert_undisturbed(&d, pid);
}

#[test]
fn malicious_layers_fail_the_pull_and_write_nothing_outside() {
    let reg = Registry::start();
    let mut d = Daemon::new();
    // Targets beside the daemon's root, as the layers aim at them from
    // <root>/images/snapshots/<staging>/.
    let outside = d.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"host file").unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            TarBuilder::new().file("../escape", b"out").finish(),
            "\"../escape\"",
        ),
        (
            "deep",
            TarBuilder::new()
                .file("../../../../outside/deep", b"out")
                .finish(),
            "\"../../../../outside/deep\"",
        ),
        (
            "symlink",
            TarBuilder::new()
                .dir("etc")
                .symlink("etc/link", "../../../../../outside")
                .file("etc/link/through-relative", b"out")
                .finish(),
            "\"etc/link/through-relative\"",
        ),
        (
            "absolute",
            TarBuilder::new()
                .symlink("abs", &outside.display().to_string())
                .file("abs/through-absolute", b"out")
                .finish(),
            "\"abs/through-absolute\"",
        ),
        (
            "hardlink",
            TarBuilder::new()
                .hardlink("secret", "../../../../outside/secret")
                .finish(),
            "\"secret\"",
        ),
        (
            "hardlink-absolute",
            TarBuilder::new()
                .hardlink("secret", &outside.join("secret").display().to_string())
                .finish(),
            "\"secret\"",
        ),
    ];
    d.spawn();
    let pid = bystander(&d);
    for (name, tar, _) in &cases {
        let image = push_image(
            &reg,
            &format!("{name}:latest"),
            &crafted(tar.clone(), Compression::Gzip),
        );
        d.write_unit(name, &image_unit(&image, ""));
    }
    for (name, _, entry) in &cases {
        let s = d.wait_state(name, "failed", 15 * SEC);
        let err = s["error"].as_str().unwrap_or_default();
        assert!(
            err.starts_with(&format!("image {}", reg.image(&format!("{name}:latest"))))
                && err.contains(&format!("layer entry {entry}")),
            "{name}: {err}"
        );
        assert!(d.log().contains(err), "{name}: not in the daemon log");
    }
    // Nothing landed where the entries aimed, and nothing is left half-unpacked.
    let root = &d.root;
    for p in [
        root.join("images/snapshots/escape"),
        root.join("images/escape"),
        root.join("escape"),
        d.dir.path().join("escape"),
    ] {
        assert!(!p.exists(), "{} written", p.display());
    }
    assert_eq!(entries(&outside), ["secret"]);
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"host file");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(outside.join("secret")).unwrap().nlink(),
        1
    );
    assert_eq!(
        entries(&root.join("images/snapshots")),
        Vec::<String>::new()
    );
    assert!(d
        .runtime_containers()
        .iter()
        .all(|c| c.contains("bystander")));
    assert_undisturbed(&d, pid);
}

/// A small tmpfs, unmounted on drop (after the daemon using it: declare it first).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("rcd-disk")
            .tempdir()
            .unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size},mode=0755").as_str()),
        )
        .unwrap_or_else(|e| panic!("mount a tmpfs (the tests run as root): {e}"));
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `len` bytes no compressor can shrink (xorshift64).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_daemon_stays_up() {
    let reg = Registry::start();
    const MIB: usize = 1024 * 1024;
    // A blob larger than the disk (fails downloading), and a small blob whose content is larger
    // than the disk (fails unpacking).
    let big_blob = crafted(
        TarBuilder::new().file("noise", &noise(3 * MIB)).finish(),
        Compression::None,
    );
    let big_blob_digest = crate::registry::sha256_digest(&big_blob.layers[0].blob);
    let big_blob = push_image(&reg, "bigblob:latest", &big_blob);
    let big_tree = push_image(
        &reg,
        "bigtree:latest",
        &crafted(
            TarBuilder::new().file("zeros", &vec![0; 4 * MIB]).finish(),
            Compression::Gzip,
        ),
    );

    let disk = SmallDisk::mount("2m");
    let mut d = Daemon::new();
    d.root = disk.dir.path().join("root");
    d.spawn();
    let pid = bystander(&d);
    // One after the other, each retried twice and then given up on: a pull filling the disk
    // must not be what fails the other unit's state writes, nor the free space measured below.
    let twice = format!("{RETRY}max_retries = 2\n");
    d.write_unit("bigblob", &format!("{}{twice}", image_unit(&big_blob, "")));
    let s = d.wait_state("bigblob", "failed", 15 * SEC);
    assert_eq!(s["restarts"], 2, "retried with backoff: {s:#}");
    let err = error_of(&d, "bigblob");
    // The blob is stored and unpacked as it streams: either write may meet the full disk first.
    assert!(
        err.starts_with(&format!("image {big_blob}: pull failed:"))
            && (err.contains(&format!("blob {big_blob_digest}"))
                || err.contains(&format!("layer {big_blob_digest}")))
            && err.contains("No space left on device"),
        "{err}"
    );
    d.write_unit("bigtree", &format!("{}{twice}", image_unit(&big_tree, "")));
    let s = d.wait_state("bigtree", "failed", 15 * SEC);
    assert_eq!(s["restarts"], 2, "retried with backoff: {s:#}");
    let err = error_of(&d, "bigtree");
    assert!(
        err.starts_with(&format!("image {big_tree}: pull failed: "))
            && err.contains(&format!(
                ": unpack into {}: layer sha256:",
                d.root.join("images/snapshots").display()
            ))
            && err.contains("\"zeros\"")
            && err.contains("No space left on device"),
        "{err}"
    );
    assert!(d.log().contains("No space left on device"));
    // The failures gave their space back: the disk still has room for the daemon's own state.
    let images = d.root.join("images");
    assert_eq!(entries(&images.join("snapshots")), Vec::<String>::new());
    let stat = nix::sys::statvfs::statvfs(disk.dir.path()).unwrap();
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    assert!(free > MIB as u64 * 3 / 2, "only {free} bytes free");
    assert!(
        d.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none()),
        "the daemon exited"
    );
    assert_undisturbed(&d, pid);
}
