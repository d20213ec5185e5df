//! The content store: blobs by digest under `--root`. A blob enters only through `Ingest`,
//! which checks its size and digest before renaming it into place, so whatever is in the
//! store is what its name says. Partial downloads are kept apart and can be resumed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::digest::{Digest, Hashing};

/// A blob that could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes do not hash to the expected digest.
    #[error("blob {expected}: content has digest {actual}; refusing it")]
    Digest {
        /// What the manifest said.
        expected: Digest,
        /// What the bytes are.
        actual: Digest,
    },
    /// More or fewer bytes than the manifest said.
    #[error("blob {digest}: expected {expected} bytes, got {actual}; refusing it")]
    Size {
        /// The blob.
        digest: Digest,
        /// What the manifest said.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
    /// A filesystem operation failed.
    #[error("content store {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Names the temporary files of concurrent `put_stream` calls.
static STREAM_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Blobs by digest: `blobs/sha256/<hex>`, partial downloads in `ingest/<hex>`.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Opens (creating) a store at `root`.
    pub fn open(root: &Path) -> Result<Self, Error> {
        for d in [root.join("blobs/sha256"), root.join("ingest")] {
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(ContentStore {
            root: root.to_path_buf(),
        })
    }

    /// Where a blob lives.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// True if the blob is stored (and so was verified when it came in).
    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Reads a small blob (a manifest or a config) whole, verifying it again: these are parsed
    /// and trusted, and re-hashing a few kilobytes costs nothing.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let path = self.path(digest);
        let data = fs::read(&path).map_err(io_err(&path))?;
        let actual = Digest::of(&data);
        if actual != *digest {
            return Err(Error::Digest {
                expected: *digest,
                actual,
            });
        }
        Ok(data)
    }

    /// Stores bytes already in memory, verifying them against `expected`.
    pub fn put(&self, expected: &Digest, data: &[u8]) -> Result<PathBuf, Error> {
        let mut ingest = self.ingest(expected, data.len() as u64)?;
        ingest.restart()?;
        ingest.write_all(data).map_err(io_err(&ingest.partial))?;
        ingest.commit()
    }

    /// Starts or resumes storing blob `digest` of `size` bytes. `Ingest::offset` says how much
    /// of it a previous, interrupted attempt already wrote (ask the registry for the rest).
    pub fn ingest(&self, digest: &Digest, size: u64) -> Result<Ingest, Error> {
        let partial = self.root.join("ingest").join(digest.hex());
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&partial)
            .map_err(io_err(&partial))?;
        let len = file.metadata().map_err(io_err(&partial))?.len();
        let mut hashing = Hashing::new(io::empty());
        if len > size {
            // Longer than the blob can be: not a prefix of it.
            file.set_len(0).map_err(io_err(&partial))?;
        } else if len > 0 {
            // Re-hash what is there: the digest covers the whole blob.
            let mut buf = vec![0u8; 64 * 1024];
            file.seek(SeekFrom::Start(0)).map_err(io_err(&partial))?;
            loop {
                let n = file.read(&mut buf).map_err(io_err(&partial))?;
                if n == 0 {
                    break;
                }
                hashing.feed(&buf[..n]);
            }
        }
        file.seek(SeekFrom::End(0)).map_err(io_err(&partial))?;
        Ok(Ingest {
            store: self.clone(),
            digest: *digest,
            size,
            partial,
            file,
            hashing,
        })
    }

    /// Stores a blob whose digest is not known in advance (a `docker save` layer): hashed while
    /// written, named by what it hashed to. At most `max` bytes.
    pub fn put_stream(&self, mut input: impl Read, max: u64) -> Result<(Digest, u64), Error> {
        let tmp = self.root.join("ingest").join(format!(
            ".stream-{}-{}",
            std::process::id(),
            STREAM_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
            let mut hashing = Hashing::new(&mut input);
            let n = io::copy(&mut (&mut hashing).take(max + 1), &mut file).map_err(io_err(&tmp))?;
            if n > max {
                return Err(io_err(&tmp)(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob larger than {max} bytes"),
                )));
            }
            let digest = hashing.finish();
            file.sync_data().map_err(io_err(&tmp))?;
            let dest = self.path(&digest);
            fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
            Ok((digest, n))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Removes a blob (an unused one, at prune time).
    pub fn remove(&self, digest: &Digest) -> Result<(), Error> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Partial downloads and imports (kept for resuming).
    pub fn partials(&self) -> Result<Vec<PathBuf>, Error> {
        let dir = self.root.join("ingest");
        Ok(fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .flatten()
            .map(|e| e.path())
            .collect())
    }

    /// Every stored blob.
    pub fn list(&self) -> Result<Vec<Digest>, Error> {
        let dir = self.root.join("blobs/sha256");
        let mut out: Vec<Digest> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .flatten()
            .filter_map(|e| {
                format!("sha256:{}", e.file_name().to_string_lossy())
                    .parse()
                    .ok()
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// A blob being written; nothing is visible under its digest until `commit` verified it.
pub struct Ingest {
    store: ContentStore,
    digest: Digest,
    size: u64,
    partial: PathBuf,
    file: File,
    hashing: Hashing<io::Empty>,
}

impl Ingest {
    /// Bytes already present from an earlier attempt.
    pub fn offset(&self) -> u64 {
        self.hashing.count()
    }

    /// Drops what an earlier attempt wrote (the registry ignored a range request).
    pub fn restart(&mut self) -> Result<(), Error> {
        self.file.set_len(0).map_err(io_err(&self.partial))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(io_err(&self.partial))?;
        self.hashing = Hashing::new(io::empty());
        Ok(())
    }

    /// Verifies size and digest, makes the blob durable and visible. On a mismatch the partial
    /// data is deleted, so a retry starts clean.
    pub fn commit(mut self) -> Result<PathBuf, Error> {
        let actual_size = self.hashing.count();
        let hashing = std::mem::replace(&mut self.hashing, Hashing::new(io::empty()));
        let actual = hashing.finish();
        let fail = |e: Error, partial: &Path| {
            let _ = fs::remove_file(partial);
            Err(e)
        };
        if actual_size != self.size {
            return fail(
                Error::Size {
                    digest: self.digest,
                    expected: self.size,
                    actual: actual_size,
                },
                &self.partial,
            );
        }
        if actual != self.digest {
            return fail(
                Error::Digest {
                    expected: self.digest,
                    actual,
                },
                &self.partial,
            );
        }
        self.file.sync_data().map_err(io_err(&self.partial))?;
        let dest = self.store.path(&self.digest);
        fs::rename(&self.partial, &dest).map_err(io_err(&dest))?;
        Ok(dest)
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Refuse to grow past the announced size: a registry cannot make us store more.
        if self.hashing.count() + buf.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is larger than its announced {} bytes",
                    self.digest, self.size
                ),
            ));
        }
        let n = self.file.write(buf)?;
        self.hashing.feed(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn verified_blobs_only() {
        let (_d, s) = store();
        let good = Digest::of(b"hello");
        s.put(&good, b"hello").unwrap();
        assert!(s.has(&good));
        assert_eq!(s.read(&good).unwrap(), b"hello");

        let other = Digest::of(b"other");
        let err = s.put(&other, b"hellx").unwrap_err();
        assert!(matches!(err, Error::Digest { .. }), "{err}");
        assert!(!s.has(&other));

        let err = s.put(&other, b"too short").unwrap_err();
        assert!(matches!(err, Error::Size { .. }) || matches!(err, Error::Digest { .. }));
        assert!(!s.has(&other));
        assert_eq!(s.list().unwrap(), vec![good]);
    }

    #[test]
    fn streams_are_named_by_their_digest() {
        let (_d, s) = store();
        let (d, n) = s.put_stream(&b"layer bytes"[..], 100).unwrap();
        assert_eq!((d, n), (Digest::of(b"layer bytes"), 11));
        assert_eq!(s.read(&d).unwrap(), b"layer bytes");
        assert!(s.put_stream(&[0u8; 200][..], 100).is_err());
        assert_eq!(s.list().unwrap(), vec![d]);
    }

    #[test]
    fn writes_past_the_size_are_refused() {
        let (_d, s) = store();
        let d = Digest::of(b"abc");
        let mut i = s.ingest(&d, 3).unwrap();
        assert!(i.write_all(b"abcd").is_err());
    }

    #[test]
    fn an_interrupted_ingest_resumes() {
        let (_d, s) = store();
        let data = vec![7u8; 200_000];
        let d = Digest::of(&data);
        {
            let mut i = s.ingest(&d, data.len() as u64).unwrap();
            i.write_all(&data[..123_456]).unwrap();
            // Dropped without commit: the connection broke.
        }
        assert!(!s.has(&d), "nothing partial is visible");
        let mut i = s.ingest(&d, data.len() as u64).unwrap();
        assert_eq!(i.offset(), 123_456);
        i.write_all(&data[123_456..]).unwrap();
        i.commit().unwrap();
        assert_eq!(std::fs::read(s.path(&d)).unwrap(), data);
    }

    #[test]
    fn a_corrupt_partial_is_caught_at_commit_and_dropped() {
        let (dir, s) = store();
        let data = b"the real blob".to_vec();
        let d = Digest::of(&data);
        std::fs::write(dir.path().join("ingest").join(d.hex()), b"the fake").unwrap();
        let mut i = s.ingest(&d, data.len() as u64).unwrap();
        let off = i.offset() as usize;
        i.write_all(&data[off..]).unwrap();
        assert!(matches!(i.commit(), Err(Error::Digest { .. })));
        assert!(!s.has(&d));
        // The retry starts from nothing and succeeds.
        let i = s.ingest(&d, data.len() as u64).unwrap();
        assert_eq!(i.offset(), 0);
        s.put(&d, &data).unwrap();
        assert!(s.has(&d));
    }

    #[test]
    fn a_tampered_stored_blob_is_refused_on_read() {
        let (_d, s) = store();
        let d = Digest::of(b"{}");
        s.put(&d, b"{}").unwrap();
        std::fs::write(s.path(&d), b"{\"x\":1}").unwrap();
        assert!(matches!(s.read(&d), Err(Error::Digest { .. })));
    }
}
