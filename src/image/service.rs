//! The daemon's images: the stores, the registry client, pulls in flight (one at a time per
//! image, with progress that `rctl status` and `rctl image pull` read), imports, and removal
//! and pruning, which never run while an import, an unpack or a mount on the stores does, and
//! leave what pulls in flight pin. No lock is held across a pull: a slow registry must hold up
//! neither removal nor, behind it, the starts of other units.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::sync::{OwnedRwLockReadGuard, RwLock, RwLockWriteGuard};

use crate::config::file::{self, FileConfig};
use crate::image::content::ContentStore;
use crate::image::digest::Digest;
use crate::image::gc::{self, Swept};
use crate::image::pins::{Pin, Pins};
use crate::image::platform::Want;
use crate::image::progress::{Counts, Progress};
use crate::image::registry::{self, Client};
use crate::image::snapshot::Snapshots;
use crate::image::store::{self, Image, ImageStore, Layer};
use crate::image::{import, reference};

/// An image operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference does not parse.
    #[error("{0}")]
    Reference(String),
    /// The credentials file is unusable.
    #[error(transparent)]
    Credentials(#[from] file::Error),
    /// The registry pull failed.
    #[error("pull failed: {0}")]
    Pull(#[from] registry::Error),
    /// The pulled image contradicts itself.
    #[error("{0}")]
    Inconsistent(String),
    /// An image record could not be read or written.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// Removal or pruning could not clean the stores.
    #[error(transparent)]
    Gc(#[from] gc::Error),
    /// An archive could not be imported.
    #[error(transparent)]
    Import(#[from] import::Error),
    /// No such image.
    #[error("no image {0} on this host")]
    Absent(String),
    /// A pull or a start holds the image.
    #[error("image {0} is being pulled or started; try again when it is done")]
    Pinned(String),
    /// Units use the image.
    #[error("image {image} is used by unit{} {}", if units.len() == 1 { "" } else { "s" }, units.join(", "))]
    InUse {
        /// The image.
        image: String,
        /// The units naming it, or whose container stands on it.
        units: Vec<String>,
    },
    /// A blocking task died.
    #[error("image task failed: {0}")]
    Task(String),
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Pruned {
    /// Image records removed.
    pub images: Vec<String>,
    /// Blobs, snapshots and partials removed.
    pub swept: Swept,
}

/// A pull in flight.
#[derive(Default)]
struct InFlight {
    /// Held by the one pulling; a second pull of the image waits here.
    turn: tokio::sync::Mutex<()>,
    progress: Progress,
}

/// The image side of the daemon.
pub struct Images {
    /// Blobs by digest, `<root>/images/content`.
    pub content: ContentStore,
    /// Image records by normalized reference, `<root>/images/meta`.
    pub store: ImageStore,
    /// Unpacked layers by chain id, `<root>/images/snapshots`.
    pub snapshots: Snapshots,
    /// The registry client (one for the daemon: concurrent pulls share downloads); replaced
    /// whole when a SIGHUP brings other registry settings (pulls in flight keep theirs).
    client: std::sync::RwLock<Arc<Client>>,
    /// Shared by imports, unpacks and mounts; exclusive for removal and pruning. Never held
    /// across a network pull.
    gc: Arc<RwLock<()>>,
    /// What pulls in flight (and starts on their way to the shared lock) hold on to.
    pins: Pins,
    pulls: crate::keyed::Keyed<String, InFlight>,
    /// When a start last used each image (ms since the epoch), for collection by threshold.
    last_used: Mutex<HashMap<String, u64>>,
    /// Where the stores are: its filesystem's usage decides collection by threshold.
    dir: PathBuf,
    /// Wakes the threshold collector: a pull stored something.
    pub stored: tokio::sync::Notify,
    /// The credentials file, and what it was (mtime, size, inode) when last read.
    auth_file: Mutex<PathBuf>,
    auth_seen: Mutex<Option<(SystemTime, u64, u64)>>,
}

impl Images {
    /// Opens (creating) the image directories under the state root, with the config file's
    /// registry settings and layer limits.
    pub fn open(root: &Path, file: &FileConfig) -> Result<Self, String> {
        let dir = root.join("images");
        Ok(Images {
            content: ContentStore::open(&dir.join("content")).map_err(|e| e.to_string())?,
            store: ImageStore::open(&dir.join("meta")).map_err(|e| e.to_string())?,
            snapshots: Snapshots::open(&dir.join("snapshots"), file.layer_limits)
                .map_err(|e| e.to_string())?,
            client: std::sync::RwLock::new(Arc::new(
                Client::new(file.client_config().map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?,
            )),
            gc: Arc::new(RwLock::new(())),
            pins: Pins::default(),
            pulls: crate::keyed::Keyed::default(),
            last_used: Mutex::default(),
            dir: dir.clone(),
            stored: tokio::sync::Notify::new(),
            auth_seen: Mutex::new(stamp(&file.registries.auth_file)),
            auth_file: Mutex::new(file.registries.auth_file.clone()),
        })
    }

    /// The registry client now.
    pub fn client(&self) -> Arc<Client> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes new registry settings (SIGHUP): a new client for the pulls that start from now
    /// on, the credentials file read again.
    pub fn reload_registries(&self, file: &FileConfig) -> Result<(), String> {
        let client = Client::new(file.client_config().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(client);
        *self.auth_file.lock().unwrap_or_else(|e| e.into_inner()) =
            file.registries.auth_file.clone();
        *self.auth_seen.lock().unwrap_or_else(|e| e.into_inner()) =
            stamp(&file.registries.auth_file);
        Ok(())
    }

    /// Held while using the stores (importing, unpacking, mounting a snapshot): no removal
    /// meanwhile. Owned, so that a start can carry it into the blocking step that mounts.
    pub async fn shared(&self) -> OwnedRwLockReadGuard<()> {
        self.gc.clone().read_owned().await
    }

    /// Pins image `image` and, once given to [`Images::pull`], what its pull stores: removal
    /// and pruning leave them until the pin is released with [`Images::unpin`].
    pub fn pin(&self, image: &str) -> Pin {
        self.pins.pin(image)
    }

    /// Releases a pin, once no removal or pruning runs: one that listed the image records
    /// before the pull wrote its own would take the pulled blobs for unreferenced.
    pub async fn unpin(&self, pin: Pin) {
        let _shared = self.shared().await;
        drop(pin);
    }

    async fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.gc.write().await
    }

    /// How far the pull of `image` in flight is, if one is.
    pub fn progress(&self, image: &str) -> Option<Counts> {
        self.pulls.peek(&image.to_string(), |p| p.progress.counts())
    }

    /// Every image pulled or imported, by name.
    pub fn list(&self) -> Result<Vec<Image>, Error> {
        Ok(self.store.list()?)
    }

    /// Pulls `image` (a normalized reference) for this host and records it. A pull of an image
    /// already being pulled waits for that one, then pulls (finding the blobs stored). The
    /// caller pinned the image with [`Images::pin`] and holds no lock: what the pull stores is
    /// added to `pin`, and stays through removal and pruning until the pin is released.
    pub async fn pull(&self, image: &str, pin: &Pin) -> Result<Image, Error> {
        let r = reference::parse(image).map_err(|e| Error::Reference(e.to_string()))?;
        // Leaves the map however this ends, a start that gave up on its pull included.
        let flight = self.pulls.enter(&image.to_string());
        let _turn = flight.turn.lock().await;
        let pulled = self.pull_now(image, &r, &flight.progress, pin).await;
        crate::meters::get().pulled(match pulled {
            Ok(_) => crate::meters::Outcome::Ok,
            Err(_) => crate::meters::Outcome::Failed,
        });
        pulled
    }

    async fn pull_now(
        &self,
        image: &str,
        r: &oci_spec::distribution::Reference,
        progress: &Progress,
        pin: &Pin,
    ) -> Result<Image, Error> {
        self.refresh_credentials()?;
        let pulled = self
            .client()
            .pull_and_unpack(
                r,
                &self.content,
                &self.snapshots,
                &Want::host(),
                progress,
                pin,
            )
            .await?;
        let diff_ids = pulled.config.rootfs().diff_ids();
        if diff_ids.len() != pulled.layers.len() {
            return Err(Error::Inconsistent(format!(
                "{} layers but {} DiffIDs in its config",
                pulled.layers.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::with_capacity(pulled.layers.len());
        for (l, diff) in pulled.layers.iter().zip(diff_ids) {
            let diff_id: Digest = diff
                .parse()
                .map_err(|e| Error::Inconsistent(format!("DiffID {diff}: {e}")))?;
            layers.push(Layer {
                blob: l.digest,
                diff_id,
                size: l.size,
                media_type: l.media_type.clone(),
            });
        }
        let record = Image {
            name: image.to_string(),
            manifest: pulled.manifest_digest,
            config: pulled.config_digest,
            digest: Some(pulled.index_digest.unwrap_or(pulled.manifest_digest)),
            layers,
            stored_ms: crate::clock::now_ms(),
        };
        self.store.put(&record)?;
        self.stored.notify_one();
        Ok(record)
    }

    /// Records the stored image `name` also under `name@DIGEST` (what it resolved to), so that
    /// this exact image stays at hand, and runs again without the network, after its tag has
    /// moved on (image updates roll back to it). The pinned name, or None if `name` is not
    /// stored.
    pub fn keep_by_digest(&self, name: &str) -> Result<Option<String>, Error> {
        let Some(stored) = self.store.get(name)? else {
            return Ok(None);
        };
        let pinned = reference::by_digest(name, &stored.resolved());
        if pinned != name && self.store.get(&pinned)?.is_none() {
            self.store.put(&Image {
                name: pinned.clone(),
                ..stored
            })?;
        }
        Ok(Some(pinned))
    }

    /// Imports an OCI layout or `docker save` archive (blocking: call off the async threads,
    /// holding `shared()`). `name` names an image the archive leaves unnamed.
    pub fn import(
        &self,
        input: impl std::io::Read,
        name: Option<&str>,
    ) -> Result<Vec<Image>, Error> {
        Ok(import::import(
            input,
            &self.content,
            &self.store,
            &Want::host(),
            name,
        )?)
    }

    /// Removes `image` unless a pull or a start pins it or `users` (the units naming it or
    /// standing on it, asked under the lock, where no start can be between its look at the
    /// stores and its mount) names any, then frees what no other image references.
    pub async fn remove(
        &self,
        image: &str,
        users: impl FnOnce(&Image) -> Vec<String>,
    ) -> Result<Swept, Error> {
        let _held = self.exclusive().await;
        let Some(stored) = self.store.get(image)? else {
            return Err(Error::Absent(image.to_string()));
        };
        let users = users(&stored);
        if !users.is_empty() {
            return Err(Error::InUse {
                image: image.to_string(),
                units: users,
            });
        }
        {
            // As in `prune`: the look at the pins and the removal in one step.
            let pinned = self.pins.lock();
            if pinned.image(image) {
                return Err(Error::Pinned(image.to_string()));
            }
            self.store.remove(image)?;
        }
        self.sweep().await
    }

    /// Notes that a start uses `image` now (collection by threshold removes the least recently
    /// used first).
    pub fn touch(&self, image: &str) {
        self.last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(image.to_owned(), crate::clock::now_ms());
    }

    /// Collection by threshold: nothing while the stores' filesystem is under `t.high` per
    /// cent full; else the least recently used images that no pull or start pins and that
    /// `keep` does not keep are removed, one at a time with what only they referenced, until
    /// it is at most `t.low` per cent full.
    pub async fn collect(
        &self,
        t: super::threshold::Thresholds,
        keep: impl Fn(&Image) -> bool,
    ) -> Result<Pruned, Error> {
        let full = |dir: &Path| {
            super::threshold::usage(dir).map_err(|source| {
                Error::Store(store::Error {
                    path: dir.to_path_buf(),
                    source,
                })
            })
        };
        if t.high >= 100 || full(&self.dir)? < f64::from(t.high) {
            return Ok(Pruned::default());
        }
        let _held = self.exclusive().await;
        let last_used = self
            .last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = Pruned::default();
        let now = crate::clock::now_ms();
        let victims =
            super::threshold::victims(self.store.list()?, &last_used, keep, now, t.min_age);
        for image in victims {
            if full(&self.dir)? <= f64::from(t.low) {
                break;
            }
            {
                let pinned = self.pins.lock();
                if pinned.image(&image.name) {
                    continue;
                }
                self.store.remove(&image.name)?;
            }
            out.images.push(image.name);
            let swept = self.sweep().await?;
            out.swept.blobs += swept.blobs;
            out.swept.snapshots += swept.snapshots;
            out.swept.partials += swept.partials;
            out.swept.bytes += swept.bytes;
        }
        Ok(out)
    }

    /// Removes every image that no pull or start pins and that `keep` (asked under the lock, as
    /// for [`Images::remove`]) does not keep, then frees what no remaining image references.
    pub async fn prune(&self, keep: impl Fn(&Image) -> bool) -> Result<Pruned, Error> {
        let _held = self.exclusive().await;
        let mut images = Vec::new();
        for image in self.store.list()? {
            if keep(&image) {
                continue;
            }
            // The look at the pins and the removal in one step: a pin taken after it finds the
            // image absent (and pulls it).
            let pinned = self.pins.lock();
            if !pinned.image(&image.name) {
                self.store.remove(&image.name)?;
                images.push(image.name);
            }
        }
        let swept = self.sweep().await?;
        Ok(Pruned { images, swept })
    }

    /// The top snapshot directory of each stored image, by image name: a container stands on
    /// the image if its overlay lists that directory.
    pub fn tops(&self) -> Result<HashMap<String, PathBuf>, Error> {
        let mut out = HashMap::new();
        for image in self.store.list()? {
            let diff_ids: Vec<Digest> = image.layers.iter().map(|l| l.diff_id).collect();
            if let Some(top) = crate::image::snapshot::chain_ids(&diff_ids).last() {
                out.insert(image.name, self.snapshots.path(top));
            }
        }
        Ok(out)
    }

    async fn sweep(&self) -> Result<Swept, Error> {
        let (store, content, snapshots, pins) = (
            self.store.clone(),
            self.content.clone(),
            self.snapshots.clone(),
            self.pins.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mounted: HashSet<PathBuf> = crate::rootfs::overlays()
                .into_iter()
                .flat_map(|m| m.lowers)
                .collect();
            gc::sweep(&store, &content, &snapshots, &mounted, &pins)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
        .map_err(Error::from)
    }

    /// Re-reads the credentials file if it changed since it was last read, so that fixing it
    /// takes effect at the next pull (as the Docker CLI reads its config.json each time).
    pub fn refresh_credentials(&self) -> Result<(), file::Error> {
        let auth_file = self
            .auth_file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let now = stamp(&auth_file);
        let mut seen = self.auth_seen.lock().unwrap_or_else(|e| e.into_inner());
        if *seen != now {
            let credentials = file::load_credentials(&auth_file)?;
            self.client().set_credentials(credentials);
            tracing::info!(file = %auth_file.display(), "credentials file read");
            *seen = now;
        }
        Ok(())
    }
}

/// What tells a changed file: mtime, size, inode (None when absent).
fn stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}
