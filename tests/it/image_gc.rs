//! Image collection by threshold (`[images] gc_high`, `gc_low`, `gc_min_age`): the image stores
//! on a small loop-mounted ext4 filesystem filled past the threshold by pulls; the least
//! recently used image no unit needs goes, the one a unit runs and the one just pulled stay.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::image::push_image;
use crate::registry::{Compression, Image, Layer, Registry, TarBuilder};

const SEC: Duration = Duration::from_secs(1);

/// An ext4 filesystem in a file, loop-mounted at `at`; unmounted on drop.
struct LoopFs {
    at: PathBuf,
}

impl LoopFs {
    fn mount(file: &Path, at: &Path, megabytes: u64) -> Self {
        let f = std::fs::File::create(file).unwrap();
        f.set_len(megabytes << 20).unwrap();
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(file)
            .status();
        assert!(mkfs.unwrap().success(), "mkfs.ext4 (e2fsprogs) failed");
        std::fs::create_dir_all(at).unwrap();
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(file)
            .arg(at)
            .status();
        assert!(mount.unwrap().success(), "mount -o loop failed");
        LoopFs {
            at: at.to_path_buf(),
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// The daemon first, then the filesystem: fields drop in order.
struct Small {
    d: Daemon,
    _fs: LoopFs,
}

/// Busybox plus 6 MiB that does not compress: about 12 MiB stored (blob and snapshot).
fn big(seed: u64) -> Image {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut data = vec![0u8; 6 << 20];
    rng.fill(&mut data);
    let mut img = Image::busybox();
    img.layers.push(Layer::from_tar(
        TarBuilder::new().file("data", &data).finish(),
        Compression::Gzip,
    ));
    img
}

fn usage(path: &Path) -> f64 {
    let s = nix::sys::statvfs::statvfs(path).unwrap();
    let used = (s.blocks() - s.blocks_free()) as f64;
    used * 100.0 / (used + s.blocks_available() as f64)
}

fn stored(d: &Daemon) -> Vec<String> {
    let out = d.rctl(&["image", "ls", "--output", "json"]);
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.iter()
        .map(|i| i["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn least_recently_used_images_go_when_the_store_passes_its_threshold() {
    let reg = Registry::start();
    let refs: Vec<String> = (1..=4)
        .map(|n| push_image(&reg, &format!("big{n}:latest"), &big(n)))
        .collect();
    let d = Daemon::new();
    d.write_config(
        "",
        "[images]\ngc_high = \"50%\"\ngc_low = \"40%\"\ngc_min_age = \"1s\"\n",
    );
    let images = d.root.join("images");
    let fs = LoopFs::mount(&d.dir.path().join("images.ext4"), &images, 80);
    let mut s = Small { d, _fs: fs };
    s.d.spawn();
    let d = &s.d;
    d.write_unit(
        "keeper",
        &format!(
            "[container]\nimage = \"{}\"\ncommand = [\"sleep\", \"1000\"]\nstop_signal = \"KILL\"\n\
             [network]\nmode = \"none\"\n",
            refs[0]
        ),
    );
    d.wait_state("keeper", "running", 60 * SEC);
    let pull = |r: &str| {
        std::thread::sleep(SEC + SEC / 5);
        let out = d.rctl(&["image", "pull", r]);
        assert!(out.status.success(), "{out:?}");
    };
    pull(&refs[1]);
    let before = usage(&images);
    assert!(
        before < 50.0,
        "two images fill {before:.0}%: the test's sizes are off"
    );
    // The third image takes the store past 50%: the second goes (least recently used, no
    // unit names it); the first runs, the third was just pulled.
    pull(&refs[2]);
    wait_until(20 * SEC, "big2 collected", || !stored(d).contains(&refs[1]));
    let left = stored(d);
    assert!(
        left.contains(&refs[0]) && left.contains(&refs[2]),
        "{left:?}"
    );
    assert!(usage(&images) < 50.0, "{:.0}%", usage(&images));
    // Again: now the third is the oldest no unit needs.
    pull(&refs[3]);
    wait_until(20 * SEC, "big3 collected", || !stored(d).contains(&refs[2]));
    let left = stored(d);
    assert!(
        left.contains(&refs[0]) && left.contains(&refs[3]),
        "{left:?}"
    );
    assert_eq!(d.status("keeper").unwrap()["state"], "running");
    let log = d.log();
    assert!(log.contains("least recently used images removed"), "{log}");
}
