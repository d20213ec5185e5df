//! `rctl image` against a real daemon and a real registry: pull with progress, ls, rm refused
//! while in use, prune, import of OCI layout and `docker save` archives; the credentials file
//! read from the daemon config; TLS registries trusted through the daemon's certs.d or its
//! system CA store (`SSL_CERT_FILE`); pull progress in `rctl status`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::registry::{
    base64, busybox_oci_layout, Compression, Image, Layer, OciLayout, Pki, Registry, TarBuilder,
    Tls,
};

const SEC: Duration = Duration::from_secs(1);

fn image_unit(image: &str, extra: &str) -> String {
    format!("[container]\nimage = \"{image}\"\ncommand = [\"sleep\", \"1000\"]\nstop_signal = \"KILL\"\n{extra}")
}

/// Writes a unit on `image` that retries fast, waits for its first failed start, and returns
/// the error `rctl status` shows.
fn first_failure(d: &Daemon, name: &str, image: &str) -> String {
    d.write_unit(
        name,
        &image_unit(
            image,
            "[restart]\npolicy = \"always\"\ndelay = \"200ms\"\nmax_delay = \"500ms\"\n",
        ),
    );
    let s = d.wait_state(name, "restarting", 15 * SEC);
    s["error"].as_str().unwrap_or_default().to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn images(d: &Daemon) -> Vec<Value> {
    let out = d.rctl(&["image", "ls", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| rd.flatten().count())
}

/// A registry with busybox pushed under `names`.
fn registry_with(names: &[&str]) -> (Registry, tempfile::TempDir) {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_oci_layout(&tmp.path().join("layout"));
    for n in names {
        reg.push_layout(&layout.dir, n);
    }
    (reg, tmp)
}

#[test]
fn pull_ls_rm_refused_while_in_use_then_prune() {
    let (reg, _tmp) = registry_with(&["busybox:latest", "other:1"]);
    let d = Daemon::start();
    let busybox = reg.image("busybox:latest");

    let out = d.rctl(&["image", "pull", &busybox]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Not a terminal: plain progress lines on stderr, the image and its digest on stdout.
    assert!(
        text(&out.stderr).contains(&format!("pulling {busybox}: 1/1 layers")),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with(&busybox),
        "{}",
        text(&out.stdout)
    );
    let ls = images(&d);
    assert_eq!(ls.len(), 1, "{ls:?}");
    assert_eq!(ls[0]["name"], busybox.as_str());
    assert_eq!(ls[0]["layers"], 1);
    assert!(ls[0]["size"].as_u64().unwrap() > 100_000, "{ls:?}");
    assert_eq!(ls[0]["used_by"], serde_json::json!([]));
    let table = text(&d.rctl(&["image", "ls"]).stdout);
    assert!(
        table.starts_with("IMAGE") && table.contains(&busybox),
        "{table}"
    );

    // A unit on it: rm is refused and names the unit; nothing is removed.
    d.write_unit("web", &image_unit(&busybox, "pull = \"never\"\n"));
    d.wait_state("web", "running", 15 * SEC);
    let out = d.rctl(&["image", "rm", &busybox]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("is used by unit web"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(images(&d)[0]["used_by"], serde_json::json!(["web"]));
    // Prune keeps what a unit uses.
    let out = d.rctl(&["image", "prune"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(images(&d).len(), 1);

    // The unit gone, rm frees its blobs and layers.
    d.remove_unit("web");
    wait_until(10 * SEC, "unit gone", || d.status("web").is_none());
    // Its overlay is unmounted in the background; a layer still mounted would be kept.
    wait_until(10 * SEC, "overlay unmounted", || {
        mounts_under(&d.root).is_empty()
    });
    let out = d.rctl(&["image", "rm", "--", &busybox]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("removed"),
        "{}",
        text(&out.stdout)
    );
    assert!(images(&d).is_empty());
    let store = d.root.join("images");
    assert_eq!(files_under(&store.join("content/blobs/sha256")), 0);
    assert_eq!(files_under(&store.join("snapshots")), 0);
    let out = d.rctl(&["image", "rm", &busybox]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));

    // Two images, one in use: prune removes the other and what only it used.
    let other = reg.image("other:1");
    for i in [&busybox, &other] {
        assert!(d.rctl(&["image", "pull", i]).status.success());
    }
    d.write_unit("web", &image_unit(&busybox, "pull = \"never\"\n"));
    d.wait_state("web", "running", 15 * SEC);
    let out = d.rctl(&["image", "prune"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("removed {other}")),
        "{}",
        text(&out.stdout)
    );
    let names: Vec<Value> = images(&d).iter().map(|i| i["name"].clone()).collect();
    assert_eq!(names, [Value::from(busybox.as_str())]);
    // Same layer in both: still there, and the unit still runs on it.
    assert_eq!(files_under(&store.join("snapshots")), 1);
    assert_eq!(d.status("web").unwrap()["state"], "running");
    // Only the kept image's manifest, config and layer remain.
    assert_eq!(files_under(&store.join("content/blobs/sha256")), 3);
}

#[test]
fn import_oci_layout_and_docker_save_archives_then_run_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = busybox_oci_layout(&tmp.path().join("layout"));
    layout.tag("1.0", &desc);
    let oci_tar = tmp.path().join("busybox-oci.tar");
    layout.to_tar(&oci_tar);
    let save_tar = tmp.path().join("busybox-save.tar");
    layout.to_docker_archive("latest", &save_tar, "saved/busybox:2");

    let d = Daemon::start();
    let out = d.rctl(&[
        "image",
        "import",
        oci_tar.to_str().unwrap(),
        "--name",
        "local/busybox:1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("imported docker.io/local/busybox:1"),
        "{}",
        text(&out.stdout)
    );
    // A bare --name takes each tag of the layout's index.
    let out = d.rctl(&[
        "image",
        "import",
        oci_tar.to_str().unwrap(),
        "--name",
        "local/bare",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for tag in ["latest", "1.0"] {
        assert!(
            text(&out.stdout).contains(&format!("imported docker.io/local/bare:{tag}")),
            "{}",
            text(&out.stdout)
        );
    }
    let out = d.rctl(&["image", "import", save_tar.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("imported docker.io/saved/busybox:2"),
        "{}",
        text(&out.stdout)
    );
    // No registry anywhere: both run with pull = "never".
    d.write_unit("a", &image_unit("local/busybox:1", "pull = \"never\"\n"));
    d.write_unit("b", &image_unit("saved/busybox:2", "pull = \"never\"\n"));
    d.wait_state("a", "running", 15 * SEC);
    d.wait_state("b", "running", 15 * SEC);

    // Not a tar: a clear refusal, nothing recorded.
    let junk = tmp.path().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar archive at all").unwrap();
    let out = d.rctl(&["image", "import", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("import"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(images(&d).len(), 4);
}

#[test]
fn the_credentials_file_is_read_and_a_fix_applies_at_the_next_retry() {
    let reg = Registry::start_with_auth("rcd", "s3cret");
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_oci_layout(&tmp.path().join("layout"));
    reg.push_layout(&layout.dir, "busybox");
    let auth = |pw: &str| {
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{}\"}}}}}}",
            reg.addr,
            base64(format!("rcd:{pw}").as_bytes())
        )
    };
    let d = Daemon::new();
    std::fs::write(d.auth_file(), auth("wrong")).unwrap();
    let mut d = d;
    d.spawn();
    let err = first_failure(&d, "private", &reg.image("busybox"));
    assert!(err.contains("authentication failed (HTTP 401)"), "{err}");
    assert!(err.contains(&reg.addr), "{err}");

    // Fixed on disk: the next retry reads it, no daemon restart.
    std::fs::write(d.auth_file(), auth("s3cret")).unwrap();
    d.wait_state("private", "running", 15 * SEC);

    // A credentials file that is not JSON: the pull says which file.
    let out = d.rctl(&["image", "rm", "nothing:here"]);
    assert_eq!(out.status.code(), Some(4));
    std::fs::write(d.auth_file(), "{").unwrap();
    let out = d.rctl(&["image", "pull", &reg.image("busybox")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&d.auth_file().display().to_string()),
        "{}",
        text(&out.stderr)
    );
}

/// `rcd --config PATH --check-config`.
fn check_config(path: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rcd"))
        .arg("--config")
        .arg(path)
        .arg("--check-config")
        .output()
        .unwrap()
}

#[test]
fn a_bad_config_file_stops_the_daemon_with_file_line_and_column() {
    let d = Daemon::new();
    d.write_config("insecure = [\"http://x\"]", "");
    let out = check_config(&d.config);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:4:13: \"http://x\" is not a registry",
            d.config.display()
        )),
        "{err}"
    );
    d.write_config(
        "insecure = [\"registry.lan:5000\"]\nidle_timeout = \"2m\"",
        "[images]\nmax_layer_size = \"1G\"\n",
    );
    let out = check_config(&d.config);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Named but missing: refused, not silently the defaults.
    let out = check_config(&d.dir.path().join("nope.toml"));
    assert_eq!(out.status.code(), Some(1));
}

/// A TCP proxy to `upstream` that passes answers at about `rate` bytes per second, so a pull
/// takes long enough to be watched. Serves until the test ends (threads are detached).
fn slow_proxy(upstream: &str, rate: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let chunk = rate / 20;
                let mut buf = vec![0u8; chunk];
                loop {
                    let n = match s_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn a_pulling_unit_shows_its_progress_and_is_never_cut_while_bytes_flow() {
    let (reg, _tmp) = registry_with(&["busybox:latest"]);
    // ~1 MB of layer at 400 kB/s: a few seconds of pulling to watch.
    let proxy = slow_proxy(&reg.addr, 400_000);
    // The start timeout and the registry idle timeout are both far shorter than the pull:
    // neither may cut it while bytes flow (podman#18353 is what this avoids).
    let mut d = Daemon::new();
    d.args = vec!["--start-timeout".into(), "1s".into()];
    d.write_config("idle_timeout = \"1s\"", "");
    d.spawn();
    let started = Instant::now();
    let image = format!("{proxy}/busybox:latest");
    d.write_unit("slow", &image_unit(&image, ""));
    d.wait_state("slow", "pulling", 10 * SEC);
    let deadline = Instant::now() + 30 * SEC;
    let mut seen_partial = None;
    while Instant::now() < deadline {
        let Some(s) = d.status("slow") else { break };
        if s["state"] != "pulling" {
            break;
        }
        let p = &s["pull"];
        let (done, total) = (
            p["bytes_done"].as_u64().unwrap_or(0),
            p["bytes_total"].as_u64().unwrap_or(0),
        );
        if done > 0 && done < total {
            let out = text(&d.rctl(&["status", "slow"]).stdout);
            seen_partial = Some((done, total, out));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (done, total, out) = seen_partial.expect("a status showing part of the pull");
    let s = d.wait_state("slow", "running", 60 * SEC);
    assert!(
        started.elapsed() > 2 * SEC,
        "the pull took longer than both timeouts"
    );
    assert_eq!(s["restarts"], 0, "{s:#}");
    assert!(s["pull"].is_null());
    assert_eq!(
        Some(total),
        images(&d)[0]["size"].as_u64(),
        "bytes_total is the layers' size"
    );
    assert!(done < total);
    assert!(
        out.contains("Pulling: 0/1 layers,") && out.contains(" of "),
        "{out}"
    );
    assert!(out.contains(&format!("Image: {image}")), "{out}");
}

/// `n` bytes that no compression shrinks (xorshift: the same every run).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_slow_pull_holds_up_neither_prune_nor_other_starts_and_prune_keeps_what_it_needs() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let busybox = Image::busybox();
    // `other`: busybox, used by no unit, what the prune removes. `fast`: the same files in an
    // uncompressed layer (another blob, the same snapshot). `slow`: busybox's gzip layer (the
    // one only `other` references once it is pruned) and 1.5 MB more, pulled at 150 kB/s.
    let uncompressed = Image {
        layers: vec![Layer::busybox(Compression::None)],
        ..busybox.clone()
    };
    let noise_layer = Layer::from_tar(
        TarBuilder::new().file("noise", &noise(1_500_000)).finish(),
        Compression::None,
    );
    let big = Image {
        layers: vec![busybox.layers[0].clone(), noise_layer],
        ..busybox.clone()
    };
    for (name, image) in [("other", &busybox), ("fast", &uncompressed), ("slow", &big)] {
        let layout = OciLayout::create(&tmp.path().join(name));
        let desc = layout.add_image(image);
        layout.tag("1", &desc);
        reg.push_layout(&layout.dir, &format!("{name}:1"));
    }
    let proxy = slow_proxy(&reg.addr, 150_000);
    let (other, fast) = (reg.image("other:1"), reg.image("fast:1"));
    let slow = format!("{proxy}/slow:1");
    let d = Daemon::start();
    for i in [&other, &fast] {
        let out = d.rctl(&["image", "pull", i]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    // A starts pulling `slow`; its config is stored, its big layer partly downloaded.
    d.write_unit("a", &image_unit(&slow, ""));
    wait_until(30 * SEC, "a's pull under way", || {
        d.status("a")
            .and_then(|s| s["pull"]["bytes_done"].as_u64())
            .is_some_and(|n| n > 50_000)
    });
    let manifest = reg.manifest("slow", "1").json();
    let digest = |v: &Value| v["digest"].as_str().unwrap()[7..].to_string();
    let config = digest(&manifest["config"]);
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(digest)
        .collect();
    let content = d.root.join("images/content");
    let partial = content.join("ingest").join(&layers[1]);
    assert!(content.join("blobs/sha256").join(&config).is_file());
    assert!(partial.is_file(), "the big layer is being downloaded");

    // B, on a stored image, loaded but not started: a unit names `fast`, so the prune keeps it.
    d.write_unit(
        "b",
        &image_unit(&fast, "pull = \"never\"\n[install]\nautostart = false\n"),
    );
    d.wait_state("b", "pending", 10 * SEC);

    // A prune, then B's start: neither waits for A's pull.
    let t = Instant::now();
    let prune = {
        let (rctl, socket) = (RCTL, d.socket.clone());
        std::thread::spawn(move || {
            let out = std::process::Command::new(rctl)
                .arg("--socket")
                .arg(socket)
                .args(["image", "prune"])
                .output()
                .unwrap();
            (out, t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let out = d.rctl(&["start", "b"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    d.wait_state("b", "running", 20 * SEC);
    let b_running = t.elapsed();
    let (out, pruned) = prune.join().unwrap();
    assert_eq!(
        d.status("a").unwrap()["state"],
        "pulling",
        "b ran after {b_running:?}, the prune answered after {pruned:?}: both waited for a's pull"
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("removed {other}")),
        "{}",
        text(&out.stdout)
    );
    // What A's pull has so far stays: the config, the layer it found stored (only the pruned
    // image named it), the partial download.
    for blob in [&config, &layers[0]] {
        assert!(content.join("blobs/sha256").join(blob).is_file(), "{blob}");
    }
    assert!(partial.is_file(), "the partial download is kept");

    // A runs on its image, intact, with no failed start; a prune now keeps it (a unit uses it).
    let s = d.wait_state("a", "running", 60 * SEC);
    assert_eq!(s["restarts"], 0, "{s:#}");
    assert!(d.rctl(&["image", "prune"]).status.success());
    let names: Vec<Value> = images(&d).iter().map(|i| i["name"].clone()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    for i in [&fast, &slow] {
        assert!(names.contains(&Value::from(i.as_str())), "{i} in {names:?}");
    }
    for blob in layers.iter().chain([&config]) {
        assert!(content.join("blobs/sha256").join(blob).is_file(), "{blob}");
    }
    assert_eq!(files_under(&content.join("ingest")), 0);
}

/// A registry that accepts connections and never answers; its address.
fn silent_registry() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    addr
}

#[test]
fn pulls_that_hang_hold_up_neither_other_units_nor_removal_change_or_stop() {
    let silent = silent_registry();
    let d = Daemon::start();
    // More hanging pulls than there are start slots (4 on this machine).
    for i in 0..6 {
        d.write_unit(
            &format!("hang{i}"),
            &image_unit(&format!("{silent}/hang{i}:1"), ""),
        );
    }
    for i in 0..6 {
        d.wait_state(&format!("hang{i}"), "pulling", 10 * SEC);
    }
    // A unit that needs no pull starts at once.
    d.write_unit("plain", &unit("exec sleep 1000", ""));
    d.wait_state("plain", "running", 5 * SEC);

    // Removed while pulling: gone without waiting for the registry (its idle timeout is 60 s).
    let t = Instant::now();
    d.remove_unit("hang0");
    wait_until(5 * SEC, "hang0 gone", || d.status("hang0").is_none());
    assert!(t.elapsed() < 5 * SEC);

    // Changed while pulling: the new version runs.
    d.write_unit("hang1", &unit("exec sleep 1000", ""));
    d.wait_state("hang1", "running", 5 * SEC);

    // Stopped while pulling: stopped and held.
    let out = d.rctl(&["stop", "hang2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = d.wait_state("hang2", "stopped", 5 * SEC);
    assert_eq!(s["held"], true);

    // The others still wait for their registry, undisturbed.
    for i in 3..6 {
        assert_eq!(d.status(&format!("hang{i}")).unwrap()["state"], "pulling");
    }
    assert_eq!(d.status("plain").unwrap()["state"], "running");
}

#[test]
fn a_pull_cut_off_by_a_daemon_kill_resumes_where_it_stopped() {
    let (reg, _tmp) = registry_with(&["busybox:latest"]);
    let layer = reg.manifest("busybox", "latest").json()["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let proxy = slow_proxy(&reg.addr, 400_000);
    let mut d = Daemon::start();
    d.write_unit("slow", &image_unit(&format!("{proxy}/busybox:latest"), ""));
    wait_until(30 * SEC, "part of the layer downloaded", || {
        d.status("slow")
            .and_then(|s| s["pull"]["bytes_done"].as_u64())
            .is_some_and(|n| n > 200_000)
    });
    d.kill();
    let ingest = d.root.join("images/content/ingest");
    assert_eq!(files_under(&ingest), 1, "the partial download is kept");
    assert!(!d
        .root
        .join("images/content/blobs/sha256")
        .join(&layer[7..])
        .exists());

    d.spawn();
    d.wait_state("slow", "running", 60 * SEC);
    let needle = format!("GET /v2/busybox/blobs/{layer} ");
    let log = reg.log();
    let gets: Vec<&str> = log.lines().filter(|l| l.contains(&needle)).collect();
    assert!(
        gets.last().is_some_and(|l| l.contains(" 206 ")),
        "the second attempt asks for the rest only: {gets:#?}"
    );
    assert_eq!(files_under(&ingest), 0, "nothing partial is left");
}

#[test]
fn an_image_unit_pulls_over_mutual_tls_with_the_daemons_certs_d() {
    let pki = Pki::generate();
    let reg = Registry::start_tls(&pki, Tls::Mutual);
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _) = busybox_oci_layout(&tmp.path().join("layout"));
    reg.push_layout(&layout.dir, "busybox");
    let d = Daemon::start();
    // Without certs.d for it: plain HTTP to an HTTPS server, a clear refusal, retried.
    let err = first_failure(&d, "secure", &reg.image("busybox"));
    assert!(err.contains("HTTP request to an HTTPS server"), "{err}");

    // The CA and a client certificate in the daemon's certs.d (as its config names it): the
    // next retry pulls over verified mutual TLS, no restart.
    let dir = d.dir.path().join("certs.d").join(&reg.addr);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(pki.ca(), dir.join("ca.crt")).unwrap();
    std::fs::copy(pki.client_cert(), dir.join("client.cert")).unwrap();
    std::fs::copy(pki.client_key(), dir.join("client.key")).unwrap();
    d.wait_state("secure", "running", 20 * SEC);
}

#[test]
fn a_registry_signed_by_a_ca_of_the_system_store_is_trusted_and_without_it_refused() {
    let pki = Pki::generate();
    let reg = Registry::start_tls(&pki, Tls::Server);
    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = busybox_oci_layout(&tmp.path().join("layout"));
    reg.push_layout(&layout.dir, "busybox");
    let image = reg.image("busybox");
    // The test's system store, as SSL_CERT_FILE names it: another CA, an entry that is no
    // certificate (skipped, not fatal), and the registry's CA.
    let bundle = tmp.path().join("ca-certificates.crt");
    let other = Pki::generate();
    std::fs::write(
        &bundle,
        [
            std::fs::read_to_string(other.ca()).unwrap(),
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n".into(),
            std::fs::read_to_string(pki.ca()).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let missing = tmp.path().join("missing.crt");
    // A daemon with its own certs.d directory for the registry, empty: HTTPS (it is on
    // loopback), and its CA is not there.
    let daemon = |env: &[(&str, &Path)]| {
        let mut d = Daemon::new();
        d.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.display().to_string()))
            .collect();
        d.spawn();
        let dir = d.dir.path().join("certs.d").join(&reg.addr);
        std::fs::create_dir_all(&dir).unwrap();
        (d, dir)
    };

    // The registry's CA in the system store: `rctl image pull` and an image unit work.
    let (d, _) = daemon(&[("SSL_CERT_FILE", &bundle)]);
    let out = d.rctl(&["image", "pull", &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with(&image),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains(&desc.digest),
        "{}",
        text(&out.stdout)
    );
    d.write_unit("trusted", &image_unit(&image, ""));
    d.wait_state("trusted", "running", 20 * SEC);
    // What the daemon says it read, once, at start.
    let log = d.log();
    let read = format!(
        "registries are trusted through the 2 CAs of the system store (SSL_CERT_FILE={})",
        bundle.display()
    );
    assert_eq!(log.matches(&read).count(), 1, "{log}");
    assert!(
        log.contains("skipped 1 of its entries, the other 2 CAs are used"),
        "{log}"
    );
    drop(d);

    // The distribution's store (the harness passes no SSL_CERT_FILE on; Debian's
    // ca-certificates, as scripts/setup.sh installs it), or a store with no usable CA (the
    // webpki roots then): the pull fails, saying why and what was trusted.
    let refused = [
        (
            &[][..],
            "it is signed by neither a CA of the system store nor a CA in",
            "CAs of the system store, plus each registry's certs.d CAs".to_string(),
        ),
        (
            &[("SSL_CERT_FILE", missing.as_path())][..],
            "it is signed by neither a CA of the webpki roots compiled into rcd (the system \
             store is empty or unreadable) nor a CA in",
            format!(
                "the system CA store has no usable CA (SSL_CERT_FILE={}: ",
                missing.display()
            ),
        ),
    ];
    for (env, why, logged) in refused {
        let (d, dir) = daemon(env);
        let out = d.rctl(&["image", "pull", &image]);
        assert_eq!(out.status.code(), Some(1), "{env:?}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        for words in [
            &format!(
                "registry {}: https://{}/v2/busybox/manifests/",
                reg.addr, reg.addr
            ),
            "TLS handshake failed: invalid peer certificate: UnknownIssuer",
            &format!("{why} {}", dir.display()),
        ] {
            assert!(err.contains(words), "{env:?}: {words:?} not in {err}");
        }
        // A unit on it fails its start with the same words, and is retried.
        let failed = first_failure(&d, "untrusted", &image);
        assert!(failed.contains(why), "{env:?}: {failed}");
        assert!(images(&d).is_empty());
        assert_eq!(d.log().matches(&logged).count(), 1, "{}", d.log());
    }
}

#[test]
fn on_a_terminal_pull_draws_a_progress_bar() {
    let (reg, _tmp) = registry_with(&["busybox:latest"]);
    let d = Daemon::start();
    // `script` (bsdutils, essential in Debian) gives rctl a pseudo-terminal.
    let cmd = format!(
        "{RCTL} --socket {} image pull {}",
        d.socket.display(),
        reg.image("busybox:latest")
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let screen = text(&out.stdout);
    // Redrawn in place, and complete at the end.
    assert!(screen.contains("\r\x1b[2K"), "{screen:?}");
    assert!(
        screen.contains(&format!("[{}] 1/1 layers", "#".repeat(30))),
        "{screen:?}"
    );
    assert!(
        !screen.contains("pulling "),
        "no plain lines on a terminal: {screen:?}"
    );
}

#[test]
fn a_digest_pinned_unit_runs_that_manifest_and_a_wrong_digest_fails() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = busybox_oci_layout(&tmp.path().join("layout"));
    reg.push_layout(&layout.dir, "busybox:latest");
    let pinned = format!("{}/busybox@{}", reg.addr, desc.digest);
    let d = Daemon::start();
    d.write_unit("pinned", &image_unit(&pinned, ""));
    d.wait_state("pinned", "running", 15 * SEC);
    let ls = images(&d);
    assert_eq!(ls[0]["name"], pinned.as_str());
    assert_eq!(ls[0]["manifest"], desc.digest.as_str());

    // A digest the registry does not have: a clear error, the other unit untouched.
    let wrong = format!("{}/busybox@sha256:{}", reg.addr, "0".repeat(64));
    let err = first_failure(&d, "wrong", &wrong);
    assert!(
        err.contains(&wrong) && err.contains("manifest unknown"),
        "{err}"
    );
    assert_eq!(d.status("pinned").unwrap()["state"], "running");
}

/// An import whose client uploads slowly holds no lock while it reads: `rctl image prune`
/// answers meanwhile, and the import still lands.
#[test]
fn a_slow_import_upload_does_not_hold_up_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let (layout, desc) = busybox_oci_layout(&tmp.path().join("layout"));
    layout.tag("1.0", &desc);
    let tar = tmp.path().join("busybox-oci.tar");
    layout.to_tar(&tar);
    let bytes = std::fs::read(&tar).unwrap();
    let d = Daemon::start();

    let socket = d.socket.clone();
    let upload = std::thread::spawn(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        write!(
            s,
            "POST /v1/images/import?name=slow HTTP/1.1\r\nHost: rcd\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            bytes.len()
        )
        .unwrap();
        // About 3 s for the whole archive, in 30 pieces.
        for piece in bytes.chunks(bytes.len().div_ceil(30)) {
            s.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = std::time::Instant::now();
    let out = d.rctl(&["image", "prune"]);
    let took = t.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        took < Duration::from_millis(1500),
        "prune waited for the upload: {took:?}"
    );
    assert!(!upload.is_finished(), "the upload was still going");
    let answer = upload.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        images(&d)
            .iter()
            .any(|i| i["name"] == "docker.io/library/slow:1.0"),
        "{:?}",
        images(&d)
    );
}
