//! Snapshots: verified layer blobs in, unpacked layer directories out, keyed by chain id so
//! that images sharing a base share its directories, each layer unpacked once. A snapshot
//! appears only after its unpacked content matched the DiffID the image config promised.
//! Layers unpack either from the content store ([`Snapshots::prepare`], several at once) or
//! from the bytes of a download as they arrive ([`Snapshots::stream`]).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use tokio::sync::{mpsc, oneshot};

use super::content::{self, ContentStore};
use super::digest::Digest;
use super::layer::{self, Limits};

/// Pieces a streaming unpack may lag behind its download before the download waits for it,
/// and their largest size (HTTP frames are cut to it): at most 8 MiB held per layer.
const STREAM_BACKLOG: usize = 64;
const STREAM_PIECE: usize = 128 << 10;

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
    /// A streaming unpack was abandoned because its download failed or its blob did not verify.
    #[error("layer {0}: the download failed or did not verify; its unpack was discarded")]
    Abandoned(Digest),
    /// The thread unpacking a layer was lost (it panicked, or the runtime is shutting down).
    #[error("layer {blob}: the unpacking thread was lost: {reason}")]
    Lost {
        /// The layer blob.
        blob: Digest,
        /// What the runtime said.
        reason: String,
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

/// Where a layer unpacks before it is renamed into place: `.unpack-<chain hex>-<pid>`.
const UNPACK_PREFIX: &str = ".unpack-";
/// What garbage collection moved aside to remove.
const GC_PREFIX: &str = ".gc-";

/// Unpacked layers under a directory: `<root>/<chain id hex>/` holds one layer's files.
#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
    limits: Limits,
    // One unpack per chain id at a time; others wait and then find it done.
    locks: Arc<crate::keyed::Keyed<Digest, Mutex<()>>>,
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

    /// The directory holding the snapshots.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Where the snapshot for a chain id lives.
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex())
    }

    /// Makes sure every layer of an image is unpacked; returns the layer directories top
    /// first, as overlayfs's `lowerdir` lists them. Missing layers unpack in parallel (each is
    /// its own directory), as many at a time as there are cores. Blocking (file work).
    pub fn prepare(
        &self,
        layers: &[LayerRef],
        store: &ContentStore,
    ) -> Result<Vec<PathBuf>, Error> {
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id).collect();
        let chains = chain_ids(&diff_ids);
        let missing: Vec<usize> = (0..layers.len())
            .filter(|&i| !self.path(&chains[i]).is_dir())
            .collect();
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(missing.len());
        let mut results: Vec<Option<Result<PathBuf, Error>>> =
            (0..layers.len()).map(|_| None).collect();
        if workers <= 1 {
            for &i in &missing {
                let r = self.ensure(&layers[i], &chains[i], store);
                let failed = r.is_err();
                results[i] = Some(r);
                if failed {
                    break;
                }
            }
        } else {
            let next = AtomicUsize::new(0);
            let failed = AtomicBool::new(false);
            let slots = Mutex::new(&mut results);
            std::thread::scope(|s| {
                for _ in 0..workers {
                    s.spawn(|| {
                        // After a failure no new layer starts: the image cannot be used anyway.
                        while !failed.load(Ordering::Relaxed) {
                            let Some(&i) = missing.get(next.fetch_add(1, Ordering::Relaxed)) else {
                                break;
                            };
                            let r = self.ensure(&layers[i], &chains[i], store);
                            if r.is_err() {
                                failed.store(true, Ordering::Relaxed);
                            }
                            slots.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                        }
                    });
                }
            });
        }
        let mut dirs = Vec::with_capacity(layers.len());
        for (chain, result) in chains.iter().zip(results) {
            match result {
                Some(r) => dirs.push(r?),
                None => dirs.push(self.path(chain)),
            }
        }
        // A layer skipped after another's failure is reported as that failure, above; a layer
        // present at the start is present still (snapshots are removed only by prune).
        dirs.reverse();
        Ok(dirs)
    }

    /// Makes sure one layer (at chain id `chain`) is unpacked from the content store; returns
    /// its directory. Blocking (file work).
    pub fn ensure(
        &self,
        layer: &LayerRef,
        chain: &Digest,
        store: &ContentStore,
    ) -> Result<PathBuf, Error> {
        self.locked(chain, || {
            let dest = self.path(chain);
            if dest.is_dir() {
                return Ok(dest);
            }
            if !store.has(&layer.blob) {
                return Err(Error::Missing(layer.blob));
            }
            self.unpack_into(chain, |tmp| {
                let blob = store.path(&layer.blob);
                let file = fs::File::open(&blob).map_err(io_err(&blob))?;
                self.unpack(layer, io::BufReader::new(file), tmp)
            })
        })
    }

    /// Starts unpacking layer `layer` (at chain id `chain`) from bytes fed to the returned
    /// [`Streaming`] as they are downloaded, on a blocking thread. The snapshot is admitted only
    /// when [`Streaming::finish`] says the blob verified and the stream matched its DiffID.
    /// Must be called inside a tokio runtime.
    pub fn stream(&self, layer: LayerRef, chain: Digest) -> Streaming {
        let (tx, rx) = mpsc::channel(STREAM_BACKLOG);
        let (verdict_tx, verdict_rx) = oneshot::channel();
        let snapshots = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            snapshots.locked(&chain, || {
                let dest = snapshots.path(&chain);
                if dest.is_dir() {
                    // Unpacked already (an earlier pull, an import): dropping `rx` tells the
                    // feeder to stop copying.
                    return Ok(dest);
                }
                snapshots.unpack_into(&chain, |tmp| {
                    let input = Chunks {
                        rx,
                        current: Bytes::new(),
                    };
                    snapshots.unpack(&layer, input, tmp)?;
                    // The content is right; whether it is the blob the manifest named is known
                    // only once the download has been verified.
                    match verdict_rx.blocking_recv() {
                        Ok(true) => Ok(()),
                        _ => Err(Error::Abandoned(layer.blob)),
                    }
                })
            })
        });
        Streaming {
            blob: layer.blob,
            tx: Some(tx),
            verdict: Some(verdict_tx),
            task: Some(task),
            done: None,
        }
    }

    /// Runs `f` holding the lock of chain id `chain`, and forgets the lock once nobody holds it.
    fn locked<T>(&self, chain: &Digest, f: impl FnOnce() -> T) -> T {
        let lock = self.locks.enter(chain);
        let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
        f()
    }

    /// Runs `fill` on a fresh staging directory and renames it into place as the snapshot of
    /// `chain` if it succeeds; removes it otherwise. Called with the chain's lock held.
    fn unpack_into(
        &self,
        chain: &Digest,
        fill: impl FnOnce(&Path) -> Result<(), Error>,
    ) -> Result<PathBuf, Error> {
        let dest = self.path(chain);
        // Unpacked beside its final place and renamed in only once verified: a crash or a
        // refusal leaves no snapshot that could be taken for a good one.
        let tmp = self.root.join(format!(
            "{UNPACK_PREFIX}{}-{}",
            chain.hex(),
            std::process::id()
        ));
        let _ = crate::tree::remove(&tmp);
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let result = fill(&tmp).and_then(|()| fs::rename(&tmp, &dest).map_err(io_err(&dest)));
        if let Err(e) = result {
            let _ = crate::tree::remove(&tmp);
            return Err(e);
        }
        Ok(dest)
    }

    /// Unpacks a layer stream into `tmp` and checks it against the layer's DiffID.
    fn unpack(&self, layer: &LayerRef, input: impl Read, tmp: &Path) -> Result<(), Error> {
        let unpacked = layer::unpack(input, tmp, &self.limits).map_err(|source| Error::Layer {
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
        Ok(())
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
        match self.detach(&self.path(chain_id))? {
            Some(moved) => self.purge(&moved),
            None => Ok(()),
        }
    }

    /// Moves an entry of the directory (a snapshot, an unpack's staging directory) aside to a
    /// name of its own, in one rename: from then on nothing takes it for what it was, and its
    /// slow removal ([`Snapshots::purge`]) can wait until the garbage collector's lock is
    /// released. None if it was not there.
    pub fn detach(&self, entry: &Path) -> Result<Option<PathBuf>, Error> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = entry.file_name().unwrap_or_default().to_string_lossy();
        let aside = self.root.join(format!(
            "{GC_PREFIX}{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::rename(entry, &aside) {
            Ok(()) => Ok(Some(aside)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(entry)(e)),
        }
    }

    /// Removes what [`Snapshots::detach`] moved aside; gone already is success.
    pub fn purge(&self, detached: &Path) -> Result<(), Error> {
        match crate::tree::remove(detached) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(detached)(e)),
            _ => Ok(()),
        }
    }

    /// The chain id a staging directory (`.unpack-<chain hex>-<pid>`) is unpacking, if `entry`
    /// is one.
    pub fn unpacking(entry: &Path) -> Option<Digest> {
        let name = entry.file_name()?.to_str()?;
        let hex = name.strip_prefix(UNPACK_PREFIX)?.split('-').next()?;
        format!("sha256:{hex}").parse().ok()
    }

    /// Whether `entry` is something [`Snapshots::detach`] moved aside.
    pub fn is_detached(entry: &Path) -> bool {
        entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(GC_PREFIX))
    }
}

/// A layer being unpacked while its blob downloads: the downloader [`feed`](Streaming::feed)s
/// it every chunk it stores, then [`finish`](Streaming::finish)es it with whether the blob
/// verified. Dropped without `finish`, the unpack is abandoned and its staging directory
/// removed (by the unpacking thread, shortly after).
pub struct Streaming {
    blob: Digest,
    /// None once the unpacker stopped listening (done early, or the download ended).
    tx: Option<mpsc::Sender<Bytes>>,
    verdict: Option<oneshot::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<Result<PathBuf, Error>>>,
    /// The snapshot, when the unpacking thread ended early because it was already there.
    done: Option<PathBuf>,
}

impl Streaming {
    /// Hands the unpacker the next chunk of the blob. An error means the layer cannot become a
    /// snapshot (unsafe, malformed, not its DiffID) and the unpack is over: the download may
    /// stop at once. Once the unpacker needs no more (the snapshot was already there), chunks
    /// are dropped.
    pub async fn feed(&mut self, mut chunk: Bytes) -> Result<(), Error> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        let mut sent = true;
        while sent && !chunk.is_empty() {
            // Split without copying, so the backlog's bound holds in bytes too.
            let piece = chunk.split_to(chunk.len().min(STREAM_PIECE));
            sent = tx.send(piece).await.is_ok();
        }
        if sent {
            return Ok(());
        }
        // The unpacker has stopped reading before the end: it failed, or had nothing to do.
        self.tx = None;
        let dir = self.join().await?;
        self.done = Some(dir);
        Ok(())
    }

    /// Ends the stream. `blob_verified` says whether the blob's size and digest matched (and
    /// it is stored): only then is the snapshot admitted. Returns its directory, or why not.
    pub async fn finish(mut self, blob_verified: bool) -> Result<PathBuf, Error> {
        // End of input: the unpacker drains to EOF, checks the DiffID, then waits for this.
        self.tx = None;
        if let Some(v) = self.verdict.take() {
            let _ = v.send(blob_verified);
        }
        if let Some(dir) = self.done.take() {
            return Ok(dir);
        }
        self.join().await
    }

    async fn join(&mut self) -> Result<PathBuf, Error> {
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| {
                Err(Error::Lost {
                    blob: self.blob,
                    reason: e.to_string(),
                })
            }),
            // `feed` already returned the unpack's error.
            None => Err(Error::Abandoned(self.blob)),
        }
    }
}

/// The chunks of a download as a `Read`, for the unpacker's blocking thread.
struct Chunks {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                // The sender is gone: the download ended (or broke off; the verdict tells).
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
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

    /// Entries of the snapshot root other than admitted snapshots (staging directories).
    fn leftovers(snaps: &Snapshots) -> Vec<String> {
        std::fs::read_dir(&snaps.root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    /// Feeds `blob` in small chunks, as a download would, then finishes with `verified`.
    async fn stream(
        snaps: &Snapshots,
        r: LayerRef,
        blob: &[u8],
        verified: bool,
    ) -> Result<PathBuf, Error> {
        let chain = chain_ids(&[r.diff_id])[0];
        let mut s = snaps.stream(r, chain);
        for chunk in blob.chunks(7) {
            s.feed(Bytes::copy_from_slice(chunk)).await?;
        }
        s.finish(verified).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_streamed_layer_is_admitted_only_when_both_checks_pass() {
        let (_d, _store, snaps) = setup();
        let (blob, r) = layer(&[("etc/os", "base"), ("bin/sh", "#!")]);
        let dir = stream(&snaps, r, &blob, true).await.unwrap();
        assert_eq!(dir, snaps.path(&r.diff_id));
        assert_eq!(std::fs::read(dir.join("etc/os")).unwrap(), b"base");

        // Already there: fed bytes are dropped and the snapshot is left as it is.
        let marker = dir.join("marker");
        std::fs::write(&marker, "").unwrap();
        assert_eq!(stream(&snaps, r, &blob, true).await.unwrap(), dir);
        assert!(marker.exists(), "not unpacked again");

        // Content that is right, but the blob did not verify: nothing admitted.
        let (blob, r) = layer(&[("x", "y")]);
        let err = stream(&snaps, r, &blob, false).await.unwrap_err();
        assert!(matches!(err, Error::Abandoned(_)), "{err}");
        assert!(!snaps.path(&r.diff_id).exists());

        // The blob verified, but its content is not the config's DiffID: nothing admitted.
        let (blob, mut r) = layer(&[("x", "z")]);
        r.diff_id = Digest::of(b"another layer");
        let err = stream(&snaps, r, &blob, true).await.unwrap_err();
        assert!(matches!(err, Error::DiffId { .. }), "{err}");
        assert!(!snaps.path(&r.diff_id).exists());

        // A stream that breaks off (the download failed) is not a layer.
        let (blob, r) = layer(&[("big", &"q".repeat(100_000))]);
        let err = stream(&snaps, r, &blob[..blob.len() / 2], false)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Layer { .. }), "{err}");
        assert!(!snaps.path(&r.diff_id).exists());
        assert!(leftovers(&snaps).is_empty(), "{:?}", leftovers(&snaps));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unsafe_streamed_layer_fails_while_it_streams() {
        let (dir, _store, snaps) = setup();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses "..": write the name into the header directly.
        h.as_gnu_mut().unwrap().name[..12].copy_from_slice(b"../escape.tx");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        // Enough after it that the failure is seen before the end of the stream.
        let filler = vec![0u8; 4 << 20];
        let mut h2 = tar::Header::new_gnu();
        h2.set_size(filler.len() as u64);
        h2.set_mode(0o644);
        h2.set_cksum();
        b.append_data(&mut h2, "filler", &filler[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let r = LayerRef {
            blob: Digest::of(&tar),
            diff_id: Digest::of(&tar),
        };
        let mut s = snaps.stream(r, r.diff_id);
        let mut failed = None;
        for chunk in tar.chunks(16 * 1024) {
            if let Err(e) = s.feed(Bytes::copy_from_slice(chunk)).await {
                failed = Some(e);
                break;
            }
        }
        let err = failed.expect("the feed fails before the end");
        assert!(
            matches!(
                err,
                Error::Layer {
                    source: layer::Error::Escape { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(s.finish(true).await, Err(Error::Abandoned(_))));
        assert!(!snaps.path(&r.diff_id).exists());
        assert!(leftovers(&snaps).is_empty());
        assert!(!dir.path().join("escape.tx").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_stream_leaves_nothing() {
        let (_d, _store, snaps) = setup();
        let (blob, r) = layer(&[("a", "b")]);
        let mut s = snaps.stream(r, r.diff_id);
        // More pieces than the backlog holds: the last sends wait for the unpacker, which has
        // then made its staging directory.
        assert!(blob.len() > STREAM_BACKLOG + 1, "{}", blob.len());
        for byte in blob.chunks(1) {
            s.feed(Bytes::copy_from_slice(byte)).await.unwrap();
        }
        drop(s);
        // The unpacking thread cleans up on its own, without a verdict.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !leftovers(&snaps).is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(leftovers(&snaps).is_empty());
        assert!(!snaps.path(&r.diff_id).exists());
    }

    #[test]
    fn prepare_unpacks_missing_layers_in_parallel_and_stops_at_a_bad_one() {
        let layers: Vec<(Vec<u8>, LayerRef)> = (0..5)
            .map(|i| layer(&[(&format!("layer{i}"), &i.to_string())]))
            .collect();
        let mut refs: Vec<LayerRef> = layers.iter().map(|(_, r)| *r).collect();
        let (_d, store, snaps) = setup();
        for (blob, r) in &layers {
            store.put(&r.blob, blob).unwrap();
        }
        let dirs = snaps.prepare(&refs, &store).unwrap();
        let chains = chain_ids(&refs.iter().map(|r| r.diff_id).collect::<Vec<_>>());
        for (i, dir) in dirs.iter().rev().enumerate() {
            assert_eq!(*dir, snaps.path(&chains[i]));
            assert!(dir.join(format!("layer{i}")).is_file());
        }

        // The middle layer is not what the config says: the whole prepare fails, that layer
        // has no snapshot and nothing half-unpacked is left.
        let (_d, store, snaps) = setup();
        for (blob, r) in &layers {
            store.put(&r.blob, blob).unwrap();
        }
        refs[2].diff_id = Digest::of(b"wrong");
        let err = snaps.prepare(&refs, &store).unwrap_err();
        assert!(matches!(err, Error::DiffId { .. }), "{err}");
        let chains = chain_ids(&refs.iter().map(|r| r.diff_id).collect::<Vec<_>>());
        assert!(!snaps.path(&chains[2]).exists());
        assert!(leftovers(&snaps).is_empty());
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
