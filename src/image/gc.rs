//! Garbage collection of the image stores: blobs and snapshots that no image record references
//! any more, and what interrupted pulls and unpacks left behind. The caller makes sure nothing
//! imports or unpacks meanwhile; pulls in flight pin what they use.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::content::{self, ContentStore};
use super::pins::Pins;
use super::snapshot::{self, chain_ids, Snapshots};
use super::store::{self, ImageStore};

/// What a sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swept {
    /// Blobs removed.
    pub blobs: u64,
    /// Unpacked layers removed.
    pub snapshots: u64,
    /// Partial downloads and unpack leftovers removed.
    pub partials: u64,
    /// Bytes freed (file sizes).
    pub bytes: u64,
}

/// A store that could not be listed or cleaned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The content store.
    #[error(transparent)]
    Content(#[from] content::Error),
    /// The snapshots.
    #[error(transparent)]
    Snapshot(#[from] snapshot::Error),
    /// The image records.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Removes every blob and snapshot no image record references, and all partials, except what
/// `pins` holds (a pull in flight: its blobs, partial downloads, snapshots and unpacks) and
/// snapshots whose directory is in `mounted` (a running container's lower layer). Each removal
/// is decided and done (or, for a directory, moved aside) under the pins' lock, so a pull that
/// pins something afterwards finds it either still there or gone, never half removed.
pub fn sweep(
    images: &ImageStore,
    content: &ContentStore,
    snapshots: &Snapshots,
    mounted: &HashSet<PathBuf>,
    pins: &Pins,
) -> Result<Swept, Error> {
    let mut blobs = HashSet::new();
    let mut chains = HashSet::new();
    for image in images.list()? {
        blobs.insert(image.manifest);
        blobs.insert(image.config);
        blobs.extend(image.layers.iter().map(|l| l.blob));
        let diff_ids: Vec<_> = image.layers.iter().map(|l| l.diff_id).collect();
        chains.extend(chain_ids(&diff_ids));
    }
    let mut swept = Swept::default();
    for digest in content.list()? {
        if blobs.contains(&digest) {
            continue;
        }
        let size = size_of(&content.path(&digest));
        let pinned = pins.lock();
        if !pinned.blob(&digest) {
            content.remove(&digest)?;
            swept.bytes += size;
            swept.blobs += 1;
        }
    }
    let (present, leftovers) = snapshots.entries()?;
    // Moved aside under the lock, removed after it: a layer's files can take seconds.
    let mut doomed = Vec::new();
    for chain in present {
        let path = snapshots.path(&chain);
        if chains.contains(&chain) || mounted.contains(&path) {
            continue;
        }
        let pinned = pins.lock();
        if !pinned.chain(&chain) {
            if let Some(aside) = snapshots.detach(&path)? {
                doomed.push(aside);
            }
        }
    }
    for aside in doomed {
        swept.bytes += size_of(&aside);
        snapshots.purge(&aside)?;
        swept.snapshots += 1;
    }
    let mut partials = Vec::new();
    for path in leftovers {
        if Snapshots::is_detached(&path) {
            partials.push(path);
            continue;
        }
        let pinned = pins.lock();
        let unpacking = Snapshots::unpacking(&path);
        if !unpacking.is_some_and(|c| pinned.chain(&c)) {
            // Best effort, as below.
            if let Ok(Some(aside)) = snapshots.detach(&path) {
                partials.push(aside);
            }
        }
    }
    for path in content.partials()? {
        let pinned = pins.lock();
        let downloading = path
            .file_name()
            .and_then(|n| format!("sha256:{}", n.to_string_lossy()).parse().ok());
        if !downloading.is_some_and(|d| pinned.blob(&d)) {
            swept.bytes += size_of(&path);
            // Best effort: a leftover that cannot go now goes at the next sweep.
            if remove(&path).is_ok() {
                swept.partials += 1;
            }
        }
    }
    for path in partials {
        swept.bytes += size_of(&path);
        if remove(&path).is_ok() {
            swept.partials += 1;
        }
    }
    Ok(swept)
}

fn remove(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        crate::tree::remove(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Bytes of the regular files under `path` (not following symlinks).
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    crate::tree::size(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::Digest;
    use crate::image::layer::Limits;
    use crate::image::snapshot::LayerRef;
    use crate::image::store::{Image, Layer};

    fn layer_blob(name: &str) -> (Vec<u8>, Digest) {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let d = Digest::of(&tar);
        (tar, d)
    }

    #[test]
    fn sweeps_what_no_image_references() {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(&dir.path().join("content")).unwrap();
        let images = ImageStore::open(&dir.path().join("meta")).unwrap();
        let snaps = Snapshots::open(&dir.path().join("snapshots"), Limits::default()).unwrap();
        let mut made = Vec::new();
        for name in ["a", "b"] {
            let (tar, d) = layer_blob(name);
            content.put(&d, &tar).unwrap();
            let config = format!("{{\"{name}\":1}}");
            let cd = Digest::of(config.as_bytes());
            content.put(&cd, config.as_bytes()).unwrap();
            let md = Digest::of(name.as_bytes());
            content.put(&md, name.as_bytes()).unwrap();
            let refs = [LayerRef {
                blob: d,
                diff_id: d,
            }];
            snaps.prepare(&refs, &content).unwrap();
            let image = Image {
                name: format!("example.com/{name}:latest"),
                manifest: md,
                config: cd,
                digest: None,
                layers: vec![Layer {
                    blob: d,
                    diff_id: d,
                    size: tar.len() as u64,
                    media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                }],
                stored_ms: 0,
            };
            images.put(&image).unwrap();
            made.push(image);
        }
        std::fs::write(dir.path().join("content/ingest/partial"), b"half").unwrap();
        std::fs::create_dir(dir.path().join("snapshots/.unpack-x")).unwrap();

        // Both referenced: only the leftovers go.
        let none = HashSet::new();
        let pins = Pins::default();
        let s = sweep(&images, &content, &snaps, &none, &pins).unwrap();
        assert_eq!((s.blobs, s.snapshots, s.partials), (0, 0, 2));
        assert_eq!(content.list().unwrap().len(), 6);

        images.remove(&made[0].name).unwrap();
        // A snapshot a mounted overlay stands on stays, its blobs go.
        let a_dir = snaps.path(&made[0].layers[0].diff_id);
        let s = sweep(&images, &content, &snaps, &HashSet::from([a_dir]), &pins).unwrap();
        assert_eq!((s.blobs, s.snapshots, s.partials), (3, 0, 0));
        let s = sweep(&images, &content, &snaps, &none, &pins).unwrap();
        assert_eq!((s.blobs, s.snapshots, s.partials), (0, 1, 0));
        assert!(s.bytes > 0);
        let b = &made[1];
        assert!(content.has(&b.manifest) && content.has(&b.config));
        assert!(snaps.path(&b.layers[0].diff_id).is_dir());
        assert!(!snaps.path(&made[0].layers[0].diff_id).exists());
        assert_eq!(content.list().unwrap().len(), 3);
    }

    #[test]
    fn what_a_pull_in_flight_pins_stays() {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(&dir.path().join("content")).unwrap();
        let images = ImageStore::open(&dir.path().join("meta")).unwrap();
        let snaps = Snapshots::open(&dir.path().join("snapshots"), Limits::default()).unwrap();
        // Two pulls' worth of unreferenced things: a stored layer and its snapshot, a partial
        // download, an unpack in progress.
        let mut made = Vec::new();
        for name in ["kept", "swept"] {
            let (tar, d) = layer_blob(name);
            content.put(&d, &tar).unwrap();
            snaps
                .prepare(
                    &[LayerRef {
                        blob: d,
                        diff_id: d,
                    }],
                    &content,
                )
                .unwrap();
            let partial = Digest::of(format!("{name} partial").as_bytes());
            std::fs::write(
                dir.path().join("content/ingest").join(partial.hex()),
                b"half",
            )
            .unwrap();
            let unpacking = Digest::of(format!("{name} unpacking").as_bytes());
            let staging = dir
                .path()
                .join(format!("snapshots/.unpack-{}-1", unpacking.hex()));
            std::fs::create_dir(&staging).unwrap();
            made.push((d, partial, unpacking, staging));
        }
        let pins = Pins::default();
        let pin = pins.pin("example.com/kept:1");
        let (d, partial, unpacking, staging) = &made[0];
        pin.blob(d);
        pin.chain(d);
        pin.blob(partial);
        pin.chain(unpacking);

        let s = sweep(&images, &content, &snaps, &HashSet::new(), &pins).unwrap();
        assert_eq!((s.blobs, s.snapshots, s.partials), (1, 1, 2));
        assert!(content.has(d) && snaps.path(d).is_dir() && staging.is_dir());
        assert!(dir
            .path()
            .join("content/ingest")
            .join(partial.hex())
            .is_file());
        let (d, partial, _, staging) = &made[1];
        assert!(!content.has(d) && !snaps.path(d).exists() && !staging.exists());
        assert!(!dir
            .path()
            .join("content/ingest")
            .join(partial.hex())
            .exists());
        // Nothing moved aside is left behind.
        let (_, leftovers) = snaps.entries().unwrap();
        assert_eq!(leftovers, [made[0].3.clone()]);

        // The pull over (its record not written): all of it goes at the next sweep.
        drop(pin);
        let s = sweep(&images, &content, &snaps, &HashSet::new(), &pins).unwrap();
        assert_eq!((s.blobs, s.snapshots, s.partials), (1, 1, 2));
        assert!(content.list().unwrap().is_empty());
        assert_eq!(snaps.entries().unwrap(), (vec![], vec![]));
    }
}
