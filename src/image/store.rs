//! The image store: which images this host has, by normalized reference, each as its
//! manifest's parts (config and layers, with their digests and DiffIDs). Records are small JSON
//! files written atomically; the blobs themselves live in the content store.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use crate::store::atomic;

/// A record that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("image store {}: {source}", path.display())]
pub struct Error {
    /// The file.
    pub path: PathBuf,
    /// The cause.
    pub source: std::io::Error,
}

/// One layer of a stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The blob in the content store (compressed or not).
    pub blob: Digest,
    /// The DiffID of its uncompressed content, from the image config.
    pub diff_id: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

impl Image {
    /// The digest its reference resolved to (the manifest's for an older record or an import).
    pub fn resolved(&self) -> Digest {
        self.digest.unwrap_or(self.manifest)
    }

    /// Its layers as the snapshotter wants them, bottom first.
    pub fn layer_refs(&self) -> Vec<super::snapshot::LayerRef> {
        self.layers
            .iter()
            .map(|l| super::snapshot::LayerRef {
                blob: l.blob,
                diff_id: l.diff_id,
            })
            .collect()
    }
}

/// An image this host has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Normalized reference (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The manifest's digest (for a `docker save` import, of the manifest rcd wrote for it).
    pub manifest: Digest,
    /// The config blob.
    pub config: Digest,
    /// What the reference resolved to in its registry (the index's digest for a multi-platform
    /// image, else the manifest's); None for an import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// When it was stored (ms since the epoch).
    pub stored_ms: u64,
}

/// Image records under a directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// Opens (creating) the store.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(ImageStore {
            dir: dir.to_path_buf(),
        })
    }

    /// File names are the digest of the name: references hold `/` and `:`.
    fn path(&self, name: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", Digest::of(name.as_bytes()).hex()))
    }

    /// Records an image (replacing an older one of the same name, as a re-tag does).
    pub fn put(&self, image: &Image) -> Result<(), Error> {
        let path = self.path(&image.name);
        atomic::write_json_with(&path, image, atomic::Sync::Data)
            .map_err(|source| Error { path, source })
    }

    /// The image recorded under `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<Image>, Error> {
        let path = self.path(name);
        let image: Option<Image> = atomic::read_json(&path).map_err(|source| Error {
            path: path.clone(),
            source,
        })?;
        // A hash collision or a hand-edited file must not answer for another name.
        Ok(image.filter(|i| i.name == name))
    }

    /// Forgets an image (its blobs stay until pruned).
    pub fn remove(&self, name: &str) -> Result<bool, Error> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(Error { path, source }),
        }
    }

    /// Every image, sorted by name; unreadable records are skipped.
    pub fn list(&self) -> Result<Vec<Image>, Error> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| Error {
            path: self.dir.clone(),
            source,
        })?;
        let mut out: Vec<Image> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| atomic::read_json(&e.path()).ok().flatten())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str) -> Image {
        Image {
            name: name.into(),
            manifest: Digest::of(b"m"),
            config: Digest::of(b"c"),
            digest: None,
            layers: vec![Layer {
                blob: Digest::of(b"l"),
                diff_id: Digest::of(b"d"),
                size: 1,
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            }],
            stored_ms: 1,
        }
    }

    #[test]
    fn put_get_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let s = ImageStore::open(dir.path()).unwrap();
        let a = image("docker.io/library/busybox:latest");
        let b = image("127.0.0.1:5000/team/app:1.2");
        s.put(&a).unwrap();
        s.put(&b).unwrap();
        assert_eq!(s.get(&a.name).unwrap(), Some(a.clone()));
        assert_eq!(s.get("docker.io/library/nope:latest").unwrap(), None);
        assert_eq!(s.list().unwrap(), vec![b.clone(), a.clone()]);
        assert!(s.remove(&a.name).unwrap());
        assert!(!s.remove(&a.name).unwrap());
        assert_eq!(s.list().unwrap(), vec![b]);
    }
}
