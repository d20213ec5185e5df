//! Image layers end to end: a multi-layer image (gzip, zstd and plain tar layers; a whiteout
//! and an opaque directory) and an image index of two platforms, pushed to a real registry,
//! pulled by the daemon and run; what the container sees is what overlayfs should show.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::registry::{
    host_arch, multi_arch_layout, Compression, Image, Layer, OciLayout, Registry, TarBuilder,
};

const SEC: Duration = Duration::from_secs(1);

fn logs(d: &Daemon, name: &str) -> String {
    String::from_utf8_lossy(&d.rctl(&["logs", name]).stdout).to_string()
}

/// Runs `script` in a unit on `image`; returns its output once it printed `marker`.
fn run_script(d: &Daemon, name: &str, image: &str, script: &str, marker: &str) -> String {
    d.write_unit(
        name,
        &format!(
            "[container]\nimage = \"{image}\"\ncommand = [\"sh\", \"-c\", \"{script}; exec sleep 1000\"]\nstop_signal = \"KILL\"\n"
        ),
    );
    d.wait_state(name, "running", 20 * SEC);
    wait_until(5 * SEC, marker, || logs(d, name).contains(marker));
    logs(d, name)
}

#[test]
fn a_multi_layer_image_with_whiteouts_runs_as_overlayfs_shows_it() {
    // Layer 1 (gzip): busybox. Layer 2 (zstd): files to delete and a directory to replace.
    // Layer 3 (plain tar): a whiteout for one file, an opaque directory with a new file.
    let two = TarBuilder::new()
        .dir("data")
        .file("data/gone", b"deleted by layer 3\n")
        .file("data/kept", b"kept from layer 2\n")
        .dir("data/replaced")
        .file("data/replaced/old", b"hidden by the opaque dir\n")
        .finish();
    let three = TarBuilder::new()
        .whiteout("data/gone")
        .dir("data/replaced")
        .opaque("data/replaced")
        .file("data/replaced/new", b"from layer 3\n")
        .finish();
    let image = Image {
        layers: vec![
            Layer::busybox(Compression::Gzip),
            Layer::from_tar(two, Compression::Zstd),
            Layer::from_tar(three, Compression::None),
        ],
        ..Image::busybox()
    };
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(&tmp.path().join("layout"));
    let desc = layout.add_image(&image);
    layout.tag("layered", &desc);
    reg.push_layout(&layout.dir, "app:layered");
    // What the registry serves has the three media types.
    let manifest = reg.manifest("app", "layered").json();
    let types: Vec<_> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar"
        ]
    );

    let d = Daemon::start();
    let out = run_script(
        &d,
        "layered",
        &reg.image("app:layered"),
        "ls -a /data /data/replaced; cat /data/kept /data/replaced/new; echo done",
        "done",
    );
    assert!(out.contains("kept from layer 2"), "{out}");
    assert!(out.contains("from layer 3"), "{out}");
    assert!(!out.contains("gone"), "the whiteout hides data/gone: {out}");
    assert!(
        !out.contains("old"),
        "the opaque directory hides data/replaced/old: {out}"
    );
    // Three snapshots, one per chain id; whiteouts stored as overlayfs wants them.
    let snapshots = d.root.join("images/snapshots");
    let dirs: Vec<_> = std::fs::read_dir(&snapshots)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().len() == 64)
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 3, "{dirs:?}");
    let whiteout = dirs
        .iter()
        .map(|d| d.join("data/gone"))
        .find(|p| p.symlink_metadata().is_ok_and(|m| !m.is_file()))
        .expect("a whiteout device for data/gone");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = whiteout.symlink_metadata().unwrap();
    assert!(m.file_type().is_char_device() && m.rdev() == 0, "{m:?}");
}

#[test]
fn an_image_index_runs_this_hosts_platform() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let (layout, _, manifests) = multi_arch_layout(&tmp.path().join("layout"));
    reg.push_layout(&layout.dir, "multi:latest");
    let d = Daemon::start();
    run_script(
        &d,
        "multi",
        &reg.image("multi:latest"),
        "test -e /platform || echo no-foreign-layer",
        "no-foreign-layer",
    );
    // The stored manifest is this host's, not the other platform's.
    let ls: serde_json::Value =
        serde_json::from_slice(&d.rctl(&["image", "ls", "-o", "json"]).stdout).unwrap();
    assert_eq!(ls[0]["manifest"], json!(manifests[0].digest), "{ls:#}");
    assert_eq!(manifests[0].platform.as_ref().unwrap().1, host_arch());
}
