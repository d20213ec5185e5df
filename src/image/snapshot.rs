//! Snapshots: verified layer blobs in, unpacked layer directories out, keyed by chain id so
//! that images sharing a base share its directories, each layer unpacked once. A snapshot
//! appears only after its unpacked content matched the DiffID the image config promised.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::content::{self, ContentStore};
use super::digest::Digest;
use super::layer::{self, Limits};

/// A layer that could not be made into a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The layer blob is not in the content store.
    #[error("layer {0} is not in the content store")]
    Missing(Digest),
    /// The content store failed.
    #[error(transparent)]
    Content(#[from] content::Error),
    /// The layer is unsafe or malformed.
    #[error("layer {blob}: {source}")]
    Layer {
        /// The layer blob.
        blob: Digest,
        /// Why.
        source: layer::Error,
    },
    /// The unpacked content is not what the image config says it is.
    #[error(
        "layer {blob}: unpacked content has DiffID {actual}, the image config says {expected}"
    )]
    DiffId {
        /// The layer blob.
        blob: Digest,
        /// From the image config.
        expected: Digest,
        /// What the layer holds.
        actual: String,
    },
    /// A filesystem operation failed.
    #[error("snapshot {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One layer of an image: its blob and the DiffID of its uncompressed content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerRef {
    /// The (usually compressed) blob in the content store.
    pub blob: Digest,
    /// `rootfs.diff_ids[i]` from the image config.
    pub diff_id: Digest,
}

/// The chain ids of a stack of layers, bottom first (the OCI image spec's definition:
/// ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => *d,
            Some(parent) => Digest::of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Unpacked layers under a directory: `<root>/<chain id hex>/` holds one layer's files.
#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
    limits: Limits,
    // One unpack per chain id at a time; others wait and then find it done.
    locks: Arc<Mutex<HashMap<Digest, Arc<Mutex<()>>>>>,
}

impl Snapshots {
    /// Opens (creating) the snapshot directory.
    pub fn open(root: &Path, limits: Limits) -> Result<Self, Error> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        Ok(Snapshots {
            root: root.to_path_buf(),
            limits,
            locks: Arc::default(),
        })
    }

    /// Where the snapshot for a chain id lives.
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex())
    }

    /// Makes sure every layer of an image is unpacked; returns the layer directories top
    /// first, as overlayfs's `lowerdir` lists them. Blocking (unpacking is file work).
    pub fn prepare(
        &self,
        layers: &[LayerRef],
        store: &ContentStore,
    ) -> Result<Vec<PathBuf>, Error> {
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id).collect();
        let chains = chain_ids(&diff_ids);
        let mut dirs = Vec::with_capacity(layers.len());
        for (layer, chain) in layers.iter().zip(&chains) {
            dirs.push(self.ensure(layer, chain, store)?);
        }
        dirs.reverse();
        Ok(dirs)
    }

    fn ensure(
        &self,
        layer: &LayerRef,
        chain: &Digest,
        store: &ContentStore,
    ) -> Result<PathBuf, Error> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(*chain).or_default().clone()
        };
        let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
        let dest = self.path(chain);
        if dest.is_dir() {
            return Ok(dest);
        }
        if !store.has(&layer.blob) {
            return Err(Error::Missing(layer.blob));
        }
        // Unpacked beside its final place and renamed in only once verified: a crash or a
        // refusal leaves no snapshot that could be taken for a good one.
        let tmp = self
            .root
            .join(format!(".unpack-{}-{}", chain.hex(), std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let result = (|| {
            let blob = store.path(&layer.blob);
            let file = fs::File::open(&blob).map_err(io_err(&blob))?;
            let unpacked = layer::unpack(std::io::BufReader::new(file), &tmp, &self.limits)
                .map_err(|source| Error::Layer {
                    blob: layer.blob,
                    source,
                })?;
            if unpacked.diff_id != layer.diff_id.to_string() {
                return Err(Error::DiffId {
                    blob: layer.blob,
                    expected: layer.diff_id,
                    actual: unpacked.diff_id,
                });
            }
            fs::rename(&tmp, &dest).map_err(io_err(&dest))
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        Ok(dest)
    }

    /// The snapshots present (by chain id), and anything else in the directory (unpacks a
    /// crash left behind).
    pub fn entries(&self) -> Result<(Vec<Digest>, Vec<PathBuf>), Error> {
        let mut chains = Vec::new();
        let mut other = Vec::new();
        for e in fs::read_dir(&self.root)
            .map_err(io_err(&self.root))?
            .flatten()
        {
            match format!("sha256:{}", e.file_name().to_string_lossy()).parse() {
                Ok(d) => chains.push(d),
                Err(_) => other.push(e.path()),
            }
        }
        chains.sort();
        Ok((chains, other))
    }

    /// Removes a snapshot (an unused layer, at prune time).
    pub fn remove(&self, chain_id: &Digest) -> Result<(), Error> {
        let path = self.path(chain_id);
        match fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A gzip layer holding `files`, and its (blob digest, diff id).
    fn layer(files: &[(&str, &str)]) -> (Vec<u8>, LayerRef) {
        let mut b = tar::Builder::new(Vec::new());
        for (name, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, name, body.as_bytes()).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let blob = gz.finish().unwrap();
        let r = LayerRef {
            blob: Digest::of(&blob),
            diff_id: Digest::of(&tar),
        };
        (blob, r)
    }

    fn setup() -> (tempfile::TempDir, ContentStore, Snapshots) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("content")).unwrap();
        let snaps = Snapshots::open(&dir.path().join("snapshots"), Limits::default()).unwrap();
        (dir, store, snaps)
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let chains = chain_ids(&[a, b]);
        assert_eq!(chains[0], a);
        assert_eq!(chains[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn layers_unpack_once_and_are_shared() {
        let (_d, store, snaps) = setup();
        let (base_blob, base) = layer(&[("etc/os", "base")]);
        let (app_blob, app) = layer(&[("app/run", "app")]);
        let (other_blob, other) = layer(&[("other/x", "x")]);
        for (blob, r) in [(&base_blob, base), (&app_blob, app), (&other_blob, other)] {
            store.put(&r.blob, blob).unwrap();
        }
        let one = snaps.prepare(&[base, app], &store).unwrap();
        assert_eq!(one.len(), 2);
        assert!(one[0].join("app/run").is_file(), "top first");
        assert!(one[1].join("etc/os").is_file());
        let two = snaps.prepare(&[base, other], &store).unwrap();
        assert_eq!(two[1], one[1], "the shared base is one directory");
        let marker = one[1].join("marker");
        std::fs::write(&marker, "").unwrap();
        snaps.prepare(&[base, app], &store).unwrap();
        assert!(marker.exists(), "not unpacked again");
    }

    #[test]
    fn a_layer_whose_content_is_not_its_diff_id_is_refused() {
        let (_d, store, snaps) = setup();
        let (blob, mut r) = layer(&[("etc/os", "base")]);
        store.put(&r.blob, &blob).unwrap();
        r.diff_id = Digest::of(b"something else");
        let err = snaps.prepare(&[r], &store).unwrap_err();
        assert!(matches!(err, Error::DiffId { .. }), "{err}");
        let chain = chain_ids(&[r.diff_id])[0];
        assert!(!snaps.path(&chain).exists());
        let leftovers: Vec<_> = std::fs::read_dir(&snaps.root).unwrap().collect();
        assert!(leftovers.is_empty(), "no partial snapshot left");
    }

    #[test]
    fn a_missing_blob_is_reported() {
        let (_d, store, snaps) = setup();
        let (_, r) = layer(&[("x", "y")]);
        assert!(matches!(
            snaps.prepare(&[r], &store),
            Err(Error::Missing(_))
        ));
    }
}
