//! Log file names and rotation. In: records (whole lines) from the shim's writer thread; out:
//! the unit's log file, rotated by size: `web.log` (current), `web.log.1` (the newest rotated),
//! ... `web.log.{max_files-1}` (the oldest), each at most `max_size` bytes (a single record
//! longer than the limit still goes whole into a file of its own).
//!
//! Rotation renames, as logrotate and Docker's json-file do: `.1` to `.2` (replacing the
//! oldest), the current file to `.1`, then a new current file. A reader that holds the old
//! file open keeps reading it to its end; the renames happen after the last write to it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::Limits;

/// Files past this index are not looked for (a bound on every scan).
const MAX_INDEX: u32 = 1000;

/// The `n`th rotated file of the log `path` (`n` >= 1): `web.log.2`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The log files of `path` that exist, oldest first: `web.log.2`, `web.log.1`, `web.log`.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for n in 1..MAX_INDEX {
        let p = rotated(path, n);
        if std::fs::symlink_metadata(&p).is_err() {
            break;
        }
        out.push(p);
    }
    out.reverse();
    if std::fs::symlink_metadata(path).is_ok() {
        out.push(path.to_path_buf());
    }
    out
}

/// Where a file dropped by rotation waits for its deletion (`web.log.removing7`): freeing a
/// large file's pages takes milliseconds, which the writer must not spend.
const TRASH: &str = ".removing";

/// The unit a file of the logs directory belongs to: `web.log`, `web.log.3` and a file
/// rotation left to delete (`web.log.removing3`) are `web`'s; anything else is nobody's.
pub fn unit_of(file_name: &str) -> Option<&str> {
    let digits = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    let base = match file_name.rsplit_once('.') {
        Some((base, n)) if digits(n) => base,
        Some((base, n)) if n.strip_prefix(&TRASH[1..]).is_some_and(digits) => base,
        _ => file_name,
    };
    let unit = base.strip_suffix(".log")?;
    crate::unit::valid_name(unit).then_some(unit)
}

/// A log file that rotates itself by size. Errors never stop it: what cannot be written is
/// reported to the caller (to be counted), and the next write tries again.
pub struct Rotator {
    path: PathBuf,
    file: Option<File>,
    /// Bytes in the current file, as far as this writer knows.
    size: u64,
    limits: Limits,
    /// A failed write left a piece of a record: the next write starts a new line first.
    torn: bool,
    /// The last rotation or open problem, for the shim's own log.
    pub last_error: Option<String>,
}

impl Rotator {
    /// Appends to `file`, the already open current log file at `path`.
    pub fn new(path: PathBuf, file: File, limits: Limits) -> Self {
        // A FIFO or a device reports 0; only a regular file's length is its content.
        let size = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map_or(0, |m| m.len());
        Rotator {
            path,
            file: Some(file),
            size,
            limits: Limits {
                max_size: limits.max_size.max(1),
                max_files: limits.max_files.max(1),
            },
            torn: false,
            last_error: None,
        }
    }

    /// Writes whole records (each ending with a newline), rotating first whenever the next
    /// record would not fit. On error, returns how many records were not written.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), u64> {
        let lines = |d: &[u8]| d.iter().filter(|&&b| b == b'\n').count().max(1) as u64;
        while !data.is_empty() {
            if self.file.is_none() {
                if let Err(e) = self.open() {
                    self.last_error = Some(format!("cannot open {}: {e}", self.path.display()));
                    return Err(lines(data));
                }
            }
            let room = self.limits.max_size.saturating_sub(self.size);
            let take = if data.len() as u64 <= room {
                data.len()
            } else {
                let fits = &data[..room as usize];
                match fits.iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    // One record longer than a whole file: alone in a file of its own.
                    None if self.size == 0 => data
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(data.len(), |i| i + 1),
                    None => 0,
                }
            };
            if take == 0 {
                self.rotate();
                continue;
            }
            if let Err(e) = self.write_piece(&data[..take]) {
                self.last_error = Some(format!("cannot write {}: {e}", self.path.display()));
                return Err(lines(data));
            }
            data = &data[take..];
        }
        Ok(())
    }

    fn write_piece(&mut self, piece: &[u8]) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("no file"));
        };
        if self.torn {
            file.write_all(b"\n")?;
            self.torn = false;
            self.size += 1;
        }
        let mut done = 0;
        while done < piece.len() {
            match file.write(&piece[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    self.size += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.torn = done > 0;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Moves `path` (if it exists) out of the way and deletes it on a thread of its own.
    fn discard(&mut self, path: &Path) {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut trash = self.path.as_os_str().to_owned();
        trash.push(format!("{TRASH}{n}"));
        let trash = PathBuf::from(trash);
        match std::fs::rename(path, &trash) {
            Ok(()) => {
                let spawned = std::thread::Builder::new().spawn({
                    let trash = trash.clone();
                    move || std::fs::remove_file(trash)
                });
                if spawned.is_err() {
                    let _ = std::fs::remove_file(&trash);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => self.last_error = Some(format!("cannot rotate {}: {e}", path.display())),
        }
    }

    fn open(&mut self) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata().map_or(0, |m| m.len());
        self.file = Some(file);
        self.torn = false;
        Ok(())
    }

    /// Moves the current file to `.1` (and the others one up) and starts a new one. Whatever
    /// fails, the writer goes on (in the old file if it must), counting from zero again so it
    /// tries again only after another `max_size`.
    fn rotate(&mut self) {
        let max = self.limits.max_files;
        // Beyond the limit: files of a larger max_files the unit had before.
        for n in max..MAX_INDEX {
            let p = rotated(&self.path, n);
            if std::fs::remove_file(&p).is_err() {
                break;
            }
        }
        // The file that drops out goes to a name of its own, deleted on another thread.
        let oldest = if max > 1 {
            rotated(&self.path, max - 1)
        } else {
            self.path.clone()
        };
        self.discard(&oldest);
        let mut result = Ok(());
        for n in (1..max.saturating_sub(1)).rev() {
            match std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => result = Err(e),
                _ => {}
            }
        }
        let moved = if max > 1 {
            match std::fs::rename(&self.path, rotated(&self.path, 1)) {
                // Moved or deleted by hand meanwhile: a new file all the same.
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        } else {
            Ok(())
        };
        if let Err(e) = moved.and(result) {
            self.last_error = Some(format!("cannot rotate {}: {e}", self.path.display()));
            if self.file.is_some() {
                self.size = 0;
                return;
            }
        }
        self.file = None;
        if let Err(e) = self.open() {
            self.last_error = Some(format!("cannot open {}: {e}", self.path.display()));
        }
        self.size = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let p = Path::new("/l/web.log");
        assert_eq!(rotated(p, 1), Path::new("/l/web.log.1"));
        assert_eq!(rotated(p, 12), Path::new("/l/web.log.12"));
        for (name, unit) in [
            ("web.log", Some("web")),
            ("web.log.1", Some("web")),
            ("web.log.17", Some("web")),
            ("a.log.log", Some("a.log")),
            ("a.log.1.log.2", Some("a.log.1")),
            ("a.log.1.log", Some("a.log.1")),
            ("web.log.", None),
            ("web.txt", None),
            (".log", None),
            ("web.log.x", None),
            (".web.log.tmp1.2", None),
            ("web.log.removing12", Some("web")),
            ("a.log.removing.log", Some("a.log.removing")),
            ("web.log.removing", None),
            ("web.log.removingx", None),
        ] {
            assert_eq!(unit_of(name), unit, "{name}");
        }
    }

    fn record(i: usize, len: usize) -> Vec<u8> {
        let mut r = format!("t stdout F {i:06} ").into_bytes();
        r.resize(len - 1, b'x');
        r.push(b'\n');
        r
    }

    #[test]
    fn rotation_keeps_max_files_of_at_most_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.log");
        let file = File::create(&path).unwrap();
        let limits = Limits {
            max_size: 1000,
            max_files: 3,
        };
        let mut r = Rotator::new(path.clone(), file, limits);
        // Batches of several records, as the writer gets them.
        for b in 0..50 {
            let batch: Vec<u8> = (0..3).flat_map(|i| record(b * 3 + i, 100)).collect();
            r.write(&batch).unwrap();
        }
        let got = files(&path);
        assert_eq!(
            got,
            [rotated(&path, 2), rotated(&path, 1), path.clone()],
            "{got:?}"
        );
        let mut all = Vec::new();
        for f in &got {
            let data = std::fs::read(f).unwrap();
            assert!(data.len() <= 1000, "{} is {}", f.display(), data.len());
            assert!(data.ends_with(b"\n"));
            all.extend(data);
        }
        // The newest records, in order, none torn: 150 records of 100 bytes, 10 per file.
        let ids: Vec<usize> = all
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| String::from_utf8_lossy(&l[11..17]).parse().unwrap())
            .collect();
        let first = ids[0];
        assert_eq!(ids, (first..150).collect::<Vec<_>>());
        assert!(ids.len() > 20, "{}", ids.len());
    }

    #[test]
    fn a_record_longer_than_a_file_goes_whole_into_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.log");
        let limits = Limits {
            max_size: 100,
            max_files: 2,
        };
        let mut r = Rotator::new(path.clone(), File::create(&path).unwrap(), limits);
        r.write(&record(1, 50)).unwrap();
        r.write(&record(2, 300)).unwrap();
        r.write(&record(3, 50)).unwrap();
        assert_eq!(std::fs::read(rotated(&path, 1)).unwrap(), record(2, 300));
        assert_eq!(std::fs::read(&path).unwrap(), record(3, 50));
        assert!(!rotated(&path, 2).exists());
    }

    #[test]
    fn one_file_only_and_a_lowered_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.log");
        for n in 1..=4 {
            std::fs::write(rotated(&path, n), b"old\n").unwrap();
        }
        std::fs::write(&path, record(0, 100)).unwrap();
        let file = OpenOptions::new().append(true).open(&path).unwrap();
        let limits = Limits {
            max_size: 150,
            max_files: 1,
        };
        let mut r = Rotator::new(path.clone(), file, limits);
        r.write(&record(1, 100)).unwrap();
        assert_eq!(files(&path), vec![path.clone()]);
        assert_eq!(std::fs::read(&path).unwrap(), record(1, 100));
    }

    #[test]
    fn a_file_deleted_by_hand_is_started_anew_at_the_next_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.log");
        let limits = Limits {
            max_size: 150,
            max_files: 3,
        };
        let mut r = Rotator::new(path.clone(), File::create(&path).unwrap(), limits);
        r.write(&record(1, 100)).unwrap();
        std::fs::remove_file(&path).unwrap();
        r.write(&record(2, 100)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), record(2, 100));
        assert!(!rotated(&path, 1).exists());
        assert_eq!(r.last_error, None);
    }

    #[test]
    fn the_current_file_already_over_the_limit_rotates_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.log");
        std::fs::write(&path, record(0, 500)).unwrap();
        let file = OpenOptions::new().append(true).open(&path).unwrap();
        let limits = Limits {
            max_size: 200,
            max_files: 2,
        };
        let mut r = Rotator::new(path.clone(), file, limits);
        r.write(&record(1, 100)).unwrap();
        assert_eq!(std::fs::read(rotated(&path, 1)).unwrap(), record(0, 500));
        assert_eq!(std::fs::read(&path).unwrap(), record(1, 100));
    }
}
