//! Garbage collection of the image stores: blobs and snapshots that no image record references
//! any more, and what interrupted pulls and unpacks left behind. The caller makes sure nothing
//! pulls or unpacks meanwhile.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::content::{self, ContentStore};
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

/// Removes every blob and snapshot no image record references, and all partials; snapshots
/// whose directory is in `mounted` (a running container's lower layer) stay.
pub fn sweep(
    images: &ImageStore,
    content: &ContentStore,
    snapshots: &Snapshots,
    mounted: &HashSet<PathBuf>,
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
        if !blobs.contains(&digest) {
            swept.bytes += size_of(&content.path(&digest));
            content.remove(&digest)?;
            swept.blobs += 1;
        }
    }
    let (present, leftovers) = snapshots.entries()?;
    for chain in present {
        if !chains.contains(&chain) && !mounted.contains(&snapshots.path(&chain)) {
            swept.bytes += size_of(&snapshots.path(&chain));
            snapshots.remove(&chain)?;
            swept.snapshots += 1;
        }
    }
    for path in leftovers.into_iter().chain(content.partials()?) {
        swept.bytes += size_of(&path);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        // Best effort: a leftover that cannot go now goes at the next sweep.
        if removed.is_ok() {
            swept.partials += 1;
        }
    }
    Ok(swept)
}

/// Bytes of the regular files under `path` (not following symlinks).
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
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
        let s = sweep(&images, &content, &snaps, &none).unwrap();
        assert_eq!((s.blobs, s.snapshots, s.partials), (0, 0, 2));
        assert_eq!(content.list().unwrap().len(), 6);

        images.remove(&made[0].name).unwrap();
        // A snapshot a mounted overlay stands on stays, its blobs go.
        let a_dir = snaps.path(&made[0].layers[0].diff_id);
        let s = sweep(&images, &content, &snaps, &HashSet::from([a_dir])).unwrap();
        assert_eq!((s.blobs, s.snapshots, s.partials), (3, 0, 0));
        let s = sweep(&images, &content, &snaps, &none).unwrap();
        assert_eq!((s.blobs, s.snapshots, s.partials), (0, 1, 0));
        assert!(s.bytes > 0);
        let b = &made[1];
        assert!(content.has(&b.manifest) && content.has(&b.config));
        assert!(snaps.path(&b.layers[0].diff_id).is_dir());
        assert!(!snaps.path(&made[0].layers[0].diff_id).exists());
        assert_eq!(content.list().unwrap().len(), 3);
    }
}
