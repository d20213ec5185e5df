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

/// Whether `name` is the temporary file of a `write` by another process than this one: left by
/// a writer that died between create and rename (a daemon killed mid-write), never renamed.
pub fn is_stale_temp(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let Some((_, tail)) = rest.rsplit_once(".tmp") else {
        return false;
    };
    let Some((pid, seq)) = tail.split_once('.') else {
        return false;
    };
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    numeric(pid) && numeric(seq) && pid != std::process::id().to_string()
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
    use super::*;

    #[test]
    fn stale_temps_are_another_processs() {
        let own = std::process::id();
        assert!(is_stale_temp(".rcd+x+eth0.json.tmp1.86"));
        assert!(!is_stale_temp(&format!(".a.json.tmp{own}.3")));
        assert!(!is_stale_temp("a.json"));
        assert!(!is_stale_temp(".hidden"));
        assert!(!is_stale_temp(".a.json.tmpx.1"));
    }
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
