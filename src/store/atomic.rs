//! Atomic files: write to a temporary file, fsync, rename over, fsync the directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes concurrent writers' temporary files within one process.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// How durable a write must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Data fsynced before the rename: after any crash the file is the old or the new one,
    /// whole. The rename itself may be lost to a power cut, which only matters to state that
    /// outlives a reboot; container state does not.
    Data,
    /// Also fsync the directory, so the new content survives a power cut.
    Durable,
    /// No fsync: whole-or-old against a process crash only (files rebuilt from state).
    None,
}

/// Replaces `path` with `data` so that a reader, even after a crash, sees the old or the new
/// content whole, never a mix.
pub fn write(path: &Path, data: &[u8]) -> io::Result<()> {
    write_with(path, data, Sync::Durable)
}

/// `write` with a chosen durability.
pub fn write_with(path: &Path, data: &[u8], sync: Sync) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        if sync != Sync::None {
            f.sync_data()?;
        }
        fs::rename(&tmp, path)?;
        if sync == Sync::Durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Serializes `value` as JSON and writes it atomically and durably.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    write_json_with(path, value, Sync::Durable)
}

/// `write_json` with a chosen durability.
pub fn write_json_with<T: serde::Serialize>(path: &Path, value: &T, sync: Sync) -> io::Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_with(path, &data, sync)
}

/// Reads a JSON file; None if it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn roundtrip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        assert_eq!(super::read_json::<u32>(&p).unwrap(), None);
        super::write_json(&p, &7u32).unwrap();
        super::write_json(&p, &8u32).unwrap();
        assert_eq!(super::read_json::<u32>(&p).unwrap(), Some(8));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
