//! Reading logs back. In: a unit's log files (current and rotated) and what the operator asked
//! for (`--tail`, `--since`, `--stream`); out: whole records in file order, then, following,
//! the records written after, across container restarts and rotations.
//!
//! A [`Snapshot`] opens every file first and checks that no rotation happened meanwhile, so
//! what it reads is one consistent set: rotated files are complete, and the current one is
//! read up to its last whole record at that moment. The [`Follower`] continues from exactly
//! there, holding the current file open: when the name points at a new file (its inode
//! changed), the held one is read to its end, then the files rotated since (found by inode),
//! then the new one from its start; a file that shrank in place is read again from its start.
//! Nothing is read twice, and nothing is lost unless rotation deleted it before it was read.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::rotate::rotated;

/// Bytes read at once.
const BLOCK: u64 = 64 * 1024;
/// Most bytes a follower reads from one file per poll (it is polled again at once).
const FOLLOW_CHUNK: u64 = 1024 * 1024;
/// Rotated files past this index are not looked for.
const MAX_INDEX: u32 = 1000;

/// Which records to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this stream (`stdout` or `stderr`).
    pub stream: Option<Vec<u8>>,
    /// Only records at or after this time, and the time as records write it.
    since: Option<(SystemTime, String)>,
}

impl Filter {
    /// Records of `stream` (all if None) read at or after `since` (all if None).
    pub fn new(stream: Option<&str>, since: Option<SystemTime>) -> Self {
        Filter {
            stream: stream.map(|s| s.as_bytes().to_vec()),
            since: since.map(|t| (t, humantime::format_rfc3339_nanos(t).to_string())),
        }
    }

    /// Whether a line of a log file passes. Lines that are not records pass unless a stream
    /// is asked for.
    pub fn keep(&self, line: &[u8]) -> bool {
        if line.is_empty() {
            return false;
        }
        if self.stream.is_none() && self.since.is_none() {
            return true;
        }
        let Some(r) = super::parse(line) else {
            return self.stream.is_none();
        };
        if self.stream.as_deref().is_some_and(|s| s != r.stream) {
            return false;
        }
        match &self.since {
            None => true,
            // The shim writes one fixed-width shape: compare the bytes; else parse.
            Some((_, text)) if r.time.len() == text.len() && r.time.ends_with(b"Z") => {
                r.time >= text.as_bytes()
            }
            Some((t, _)) => std::str::from_utf8(r.time)
                .ok()
                .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
                .is_none_or(|rt| rt >= *t),
        }
    }

    /// Whether no record of a file last written at `mtime` can pass.
    fn skips_file(&self, mtime: Option<SystemTime>) -> bool {
        match (&self.since, mtime) {
            // A record's time is taken before it is written, so before the file's mtime.
            (Some((t, _)), Some(m)) => m < *t,
            _ => false,
        }
    }
}

struct Part {
    file: File,
    /// Bytes to read: the whole file, or the current one up to its last whole record.
    len: u64,
    mtime: Option<SystemTime>,
}

/// A unit's log files, opened together: rotated ones oldest first, then the current one.
pub struct Snapshot {
    path: PathBuf,
    parts: Vec<Part>,
    /// The current file, if there was one: its inode and where its whole records end.
    current: Option<(u64, u64)>,
}

impl Snapshot {
    /// Opens the log files of `path` (none is an empty snapshot).
    pub fn open(path: &Path) -> io::Result<Snapshot> {
        let mut tries = 0;
        loop {
            tries += 1;
            let current = open_existing(path)?;
            let ino = current
                .as_ref()
                .map(|f| f.metadata().map(|m| m.ino()))
                .transpose()?;
            let mut rotated_files = Vec::new();
            for n in 1..MAX_INDEX {
                match open_existing(&rotated(path, n))? {
                    Some(f) => rotated_files.push(f),
                    None => break,
                }
            }
            // A rotation while opening would shift names under us: try again.
            let now = ino_of(path)?;
            if now != ino && tries < 5 {
                continue;
            }
            let mut parts = Vec::new();
            for file in rotated_files.into_iter().rev() {
                let m = file.metadata()?;
                parts.push(Part {
                    len: m.len(),
                    mtime: m.modified().ok(),
                    file,
                });
            }
            let mut cur = None;
            if let (Some(file), Some(ino)) = (current, ino) {
                let m = file.metadata()?;
                let len = whole_records_end(&file, m.len())?;
                cur = Some((ino, len));
                parts.push(Part {
                    file,
                    len,
                    mtime: m.modified().ok(),
                });
            }
            return Ok(Snapshot {
                path: path.to_path_buf(),
                parts,
                current: cur,
            });
        }
    }

    /// Whether there is no log file at all.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The last `n` lines that pass `filter`, oldest first, each a run of records ending with
    /// a whole (`F`) record, or the partial records of a line not yet finished. Counted across
    /// the rotated files.
    pub fn tail(&self, n: usize, filter: &Filter) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        if n == 0 {
            return Ok(out);
        }
        // Per stream: whether some of its records are taken, and whether it is complete.
        let mut streams: Vec<(Vec<u8>, bool, bool)> = Vec::new();
        let mut lines = 0;
        for part in self.parts.iter().rev() {
            if filter.skips_file(part.mtime) {
                break;
            }
            let mut back = Backward::new(part);
            while let Some(line) = back.next_line()? {
                if !filter.keep(&line) {
                    continue;
                }
                let (stream, full) = match super::parse(&line) {
                    Some(r) => (r.stream, r.full),
                    None => (&b""[..], true),
                };
                let at = match streams.iter().position(|(s, _, _)| s == stream) {
                    Some(at) => at,
                    None => {
                        streams.push((stream.to_vec(), false, false));
                        streams.len() - 1
                    }
                };
                let (_, taken, done) = &mut streams[at];
                if *done {
                    continue;
                }
                // Read backwards, a whole record ends a line; a partial one continues the line
                // of the next record of its stream, if one is taken.
                let starts = full || !*taken;
                if starts && lines == n {
                    *done = true;
                    if streams.iter().all(|(_, taken, done)| *done || !*taken) {
                        out.reverse();
                        return Ok(out);
                    }
                    continue;
                }
                if starts {
                    lines += 1;
                }
                *taken = true;
                out.push(line);
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Every line that passes `filter`, in order, in chunks of about `BLOCK` bytes.
    pub fn forward(self, filter: Filter) -> Forward {
        Forward {
            parts: self.parts.into_iter().collect(),
            pos: 0,
            carry: Vec::new(),
            filter,
        }
    }

    /// A follower continuing where this snapshot ends.
    pub fn follower(&self) -> io::Result<Follower> {
        let held = match (self.current, self.parts.last()) {
            (Some((ino, len)), Some(part)) => Some(Held {
                file: part.file.try_clone()?,
                ino,
                offset: len,
            }),
            _ => None,
        };
        Ok(Follower {
            path: self.path.clone(),
            held,
        })
    }
}

/// Reads a snapshot's lines in order (see [`Snapshot::forward`]).
pub struct Forward {
    parts: std::collections::VecDeque<Part>,
    pos: u64,
    carry: Vec<u8>,
    filter: Filter,
}

impl Forward {
    /// The next chunk of lines that pass (each with its newline); None at the end.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            let Some(part) = self.parts.front() else {
                return Ok(None);
            };
            if self.filter.skips_file(part.mtime) && self.parts.len() > 1 {
                self.parts.pop_front();
                continue;
            }
            let left = part.len.saturating_sub(self.pos);
            let mut data = std::mem::take(&mut self.carry);
            if left > 0 {
                let step = left.min(BLOCK * 4);
                let mut block = vec![0u8; step as usize];
                part.file.read_exact_at(&mut block, self.pos)?;
                self.pos += step;
                data.extend_from_slice(&block);
            }
            let end_of_file = self.pos >= part.len;
            if end_of_file {
                self.parts.pop_front();
                self.pos = 0;
                if !data.is_empty() && !data.ends_with(b"\n") {
                    data.push(b'\n');
                }
            } else {
                let cut = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                self.carry = data.split_off(cut);
            }
            let out = filtered(&data, &self.filter);
            if !out.is_empty() {
                return Ok(Some(out));
            }
        }
    }
}

struct Held {
    file: File,
    ino: u64,
    offset: u64,
}

/// Follows a unit's log: what is written after a snapshot, across rotations.
pub struct Follower {
    path: PathBuf,
    held: Option<Held>,
}

impl Follower {
    /// The lines written since the last call that pass `filter` (each with its newline); empty
    /// when there is nothing new yet. Call again at once after a non-empty answer: a follower
    /// far behind reads in pieces.
    pub fn poll(&mut self, filter: &Filter) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let Some(held) = self.held.as_mut() else {
            // No file yet (nothing ever written, or caught between a rename and the new file).
            if let Some(file) = open_existing(&self.path)? {
                let ino = file.metadata()?.ino();
                self.held = Some(Held {
                    file,
                    ino,
                    offset: 0,
                });
                return self.poll(filter);
            }
            return Ok(out);
        };
        if !read_held(held, &mut out, filter, false)? {
            return Ok(out);
        }
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        if meta.ino() == held.ino {
            if meta.len() < held.offset {
                // Cut short in place: it starts again.
                held.offset = 0;
                read_held(held, &mut out, filter, false)?;
            }
            return Ok(out);
        }
        // Rotated: the held file is complete (the writer renames after its last write).
        read_held(held, &mut out, filter, true)?;
        let Some(next) = open_existing(&self.path)? else {
            return Ok(out);
        };
        let next_ino = next.metadata()?.ino();
        let mut listing = Vec::new();
        for n in 1..MAX_INDEX {
            match ino_of(&rotated(&self.path, n))? {
                Some(ino) => listing.push(ino),
                None => break,
            }
        }
        for n in between(&listing, held.ino, next_ino) {
            if let Some(file) = open_existing(&rotated(&self.path, n))? {
                let len = file.metadata()?.len();
                let mut data = vec![0u8; len as usize];
                file.read_exact_at(&mut data, 0)?;
                if !data.is_empty() && !data.ends_with(b"\n") {
                    data.push(b'\n');
                }
                out.extend(filtered(&data, filter));
            }
        }
        self.held = Some(Held {
            file: next,
            ino: next_ino,
            offset: 0,
        });
        if let Some(h) = self.held.as_mut() {
            read_held(h, &mut out, filter, false)?;
        }
        Ok(out)
    }
}

/// The rotated files (by index) written after the file `held` and before `next`, oldest first,
/// given the inodes of `.1`, `.2`, ... in `listing`. `held` no longer listed means rotation
/// deleted it: every rotated file is newer. `next` listed means it was rotated too meanwhile:
/// only files older than it.
pub fn between(listing: &[u64], held: u64, next: u64) -> Vec<u32> {
    let newest = listing.iter().position(|&i| i == next).map_or(1, |p| p + 2);
    let oldest = listing
        .iter()
        .position(|&i| i == held)
        .unwrap_or(listing.len());
    (newest..=oldest).rev().map(|n| n as u32).collect()
}

/// Reads the held file from its offset: whole records, or with `to_end` everything (a final
/// piece gets a newline). Returns true when it reached the end of the file.
fn read_held(h: &mut Held, out: &mut Vec<u8>, filter: &Filter, to_end: bool) -> io::Result<bool> {
    let len = h.file.metadata()?.len();
    if len <= h.offset {
        return Ok(true);
    }
    let step = if to_end {
        len - h.offset
    } else {
        (len - h.offset).min(FOLLOW_CHUNK)
    };
    let mut data = vec![0u8; step as usize];
    h.file.read_exact_at(&mut data, h.offset)?;
    let at_end = h.offset + step >= len;
    if to_end {
        if !data.ends_with(b"\n") {
            data.push(b'\n');
        }
        h.offset += step;
    } else {
        let cut = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        data.truncate(cut);
        h.offset += cut as u64;
    }
    out.extend(filtered(&data, filter));
    Ok(at_end)
}

/// The lines of `data` (whole, each with its newline) that pass.
fn filtered(data: &[u8], filter: &Filter) -> Vec<u8> {
    if filter.stream.is_none() && filter.since.is_none() {
        return data.to_vec();
    }
    let mut out = Vec::with_capacity(data.len());
    for line in data.split(|&b| b == b'\n') {
        if filter.keep(line) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out
}

/// A file's lines from its end backwards.
struct Backward<'a> {
    part: &'a Part,
    /// Bytes `[pos, pos + buf.len())` not yet returned; they end with a newline.
    pos: u64,
    buf: Vec<u8>,
}

impl<'a> Backward<'a> {
    fn new(part: &'a Part) -> Self {
        Backward {
            part,
            pos: part.len,
            buf: Vec::new(),
        }
    }

    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some((_, body)) = self.buf.split_last() {
                if let Some(i) = body.iter().rposition(|&b| b == b'\n') {
                    let line = body[i + 1..].to_vec();
                    self.buf.truncate(i + 1);
                    return Ok(Some(line));
                }
                if self.pos == 0 {
                    let line = body.to_vec();
                    self.buf.clear();
                    return Ok(Some(line));
                }
            } else if self.pos == 0 {
                return Ok(None);
            }
            let first = self.buf.is_empty() && self.pos == self.part.len;
            let step = self.pos.min(BLOCK);
            self.pos -= step;
            let mut block = vec![0u8; step as usize];
            self.part.file.read_exact_at(&mut block, self.pos)?;
            if first && !block.ends_with(b"\n") {
                block.push(b'\n');
            }
            block.extend_from_slice(&self.buf);
            self.buf = block;
        }
    }
}

fn open_existing(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn ino_of(path: &Path) -> io::Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m.ino())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where the whole records of a file of `len` bytes end (after its last newline).
fn whole_records_end(file: &File, len: u64) -> io::Result<u64> {
    let mut end = len;
    while end > 0 {
        let step = end.min(BLOCK);
        let mut block = vec![0u8; step as usize];
        file.read_exact_at(&mut block, end - step)?;
        if let Some(i) = block.iter().rposition(|&b| b == b'\n') {
            return Ok(end - step + i as u64 + 1);
        }
        end -= step;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn rec(stream: &str, full: bool, text: &str) -> String {
        let f = if full { "F" } else { "P" };
        format!("2026-01-01T00:00:00.000000000Z {stream} {f} {text}\n")
    }

    fn texts(lines: &[Vec<u8>]) -> Vec<String> {
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(super::super::parse(l).unwrap().text).into_owned())
            .collect()
    }

    /// `u.log.2`, `u.log.1`, `u.log` with records 0..30, ten per file.
    fn three_files(dir: &Path) -> PathBuf {
        let path = dir.join("u.log");
        for (n, file) in [
            (2, rotated(&path, 2)),
            (1, rotated(&path, 1)),
            (0, path.clone()),
        ] {
            let first = (2 - n) * 10;
            let text: String = (first..first + 10)
                .map(|i| rec("stdout", true, &format!("line {i}")))
                .collect();
            std::fs::write(file, text).unwrap();
        }
        path
    }

    #[test]
    fn tail_counts_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = three_files(dir.path());
        let snap = Snapshot::open(&path).unwrap();
        let all = Filter::default();
        let want =
            |r: std::ops::Range<usize>| -> Vec<String> { r.map(|i| format!("line {i}")).collect() };
        assert_eq!(texts(&snap.tail(3, &all).unwrap()), want(27..30));
        assert_eq!(texts(&snap.tail(15, &all).unwrap()), want(15..30));
        assert_eq!(texts(&snap.tail(25, &all).unwrap()), want(5..30));
        assert_eq!(texts(&snap.tail(1000, &all).unwrap()), want(0..30));
        assert!(snap.tail(0, &all).unwrap().is_empty());
        let mut fwd = Snapshot::open(&path).unwrap().forward(all);
        let mut data = Vec::new();
        while let Some(c) = fwd.next_chunk().unwrap() {
            data.extend(c);
        }
        let lines: Vec<Vec<u8>> = data
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        assert_eq!(texts(&lines), want(0..30));
    }

    #[test]
    fn tail_keeps_partial_records_with_their_line_and_filters_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.log");
        let text = [
            rec("stdout", true, "a"),
            rec("stdout", false, "b1-"),
            rec("stderr", true, "e1"),
            rec("stdout", false, "b2-"),
            rec("stdout", true, "b3"),
            rec("stderr", true, "e2"),
            rec("stdout", false, "c-unfinished"),
        ]
        .concat();
        std::fs::write(&path, text).unwrap();
        let snap = Snapshot::open(&path).unwrap();
        let all = Filter::default();
        assert_eq!(texts(&snap.tail(1, &all).unwrap()), ["c-unfinished"]);
        assert_eq!(texts(&snap.tail(2, &all).unwrap()), ["e2", "c-unfinished"]);
        // The line b is three records; e1, between its pieces, is a line before it.
        assert_eq!(
            texts(&snap.tail(3, &all).unwrap()),
            ["b1-", "b2-", "b3", "e2", "c-unfinished"]
        );
        assert_eq!(
            texts(&snap.tail(4, &all).unwrap()),
            ["b1-", "e1", "b2-", "b3", "e2", "c-unfinished"]
        );
        let out = Filter::new(Some("stdout"), None);
        assert_eq!(
            texts(&snap.tail(2, &out).unwrap()),
            ["b1-", "b2-", "b3", "c-unfinished"]
        );
        let err = Filter::new(Some("stderr"), None);
        assert_eq!(texts(&snap.tail(1, &err).unwrap()), ["e2"]);
        assert_eq!(texts(&snap.tail(9, &err).unwrap()), ["e1", "e2"]);
    }

    #[test]
    fn since_filters_records_and_skips_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.log");
        let at = |s: &str| humantime::parse_rfc3339(s).unwrap();
        let line = |t: &str, text: &str| format!("{t} stdout F {text}\n");
        std::fs::write(
            &path,
            [
                line("2026-01-01T00:00:00.000000000Z", "old"),
                line("2026-01-01T00:10:00.000000000Z", "new"),
                line("2026-01-01T00:10:00Z", "short-form"),
                "not a record\n".to_string(),
            ]
            .concat(),
        )
        .unwrap();
        let snap = Snapshot::open(&path).unwrap();
        let f = Filter::new(None, Some(at("2026-01-01T00:05:00Z")));
        let got = snap.tail(10, &f).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(texts(&got[..2]), ["new", "short-form"]);
        assert_eq!(got[2], b"not a record");
        // A file last written before `since` is not read at all.
        assert!(
            Filter::new(None, Some(SystemTime::now())).skips_file(Some(at("2026-01-01T00:00:00Z")))
        );
    }

    #[test]
    fn between_finds_the_files_rotated_meanwhile() {
        // .1 = 7, .2 = 6, .3 = 5: the held file 5 was rotated three times; next is 9.
        assert_eq!(between(&[7, 6, 5], 5, 9), [2, 1]);
        assert_eq!(between(&[5], 5, 9), Vec::<u32>::new());
        // The held file is gone: every rotated one is newer.
        assert_eq!(between(&[7, 6], 5, 9), [2, 1]);
        // The new current file was itself rotated to .1 before we listed.
        assert_eq!(between(&[9, 7, 5], 5, 9), [2]);
        assert_eq!(between(&[], 5, 9), Vec::<u32>::new());
    }

    #[test]
    fn follow_continues_across_rotations_without_loss_or_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.log");
        let file = std::fs::File::create(&path).unwrap();
        let limits = super::super::Limits {
            max_size: 300,
            max_files: 5,
        };
        let mut w = super::super::rotate::Rotator::new(path.clone(), file, limits);
        let mut next = 0;
        let mut write = |w: &mut super::super::rotate::Rotator, n: usize| {
            for _ in 0..n {
                w.write(rec("stdout", true, &format!("l{next:04}")).as_bytes())
                    .unwrap();
                next += 1;
            }
        };
        write(&mut w, 3);
        let snap = Snapshot::open(&path).unwrap();
        let mut seen = texts(&snap.tail(100, &Filter::default()).unwrap());
        let mut f = snap.follower().unwrap();
        let all = Filter::default();
        // Small steps, one rotation, several rotations between two polls, none.
        for n in [1, 2, 10, 0, 7, 18, 1, 0] {
            write(&mut w, n);
            let data = f.poll(&all).unwrap();
            let lines: Vec<Vec<u8>> = data
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            seen.extend(texts(&lines));
        }
        let want: Vec<String> = (0..next).map(|i| format!("l{i:04}")).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn follow_waits_for_a_file_and_sees_a_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.log");
        let snap = Snapshot::open(&path).unwrap();
        assert!(snap.is_empty());
        let mut f = snap.follower().unwrap();
        let all = Filter::default();
        assert!(f.poll(&all).unwrap().is_empty());
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(rec("stdout", true, "one").as_bytes())
            .unwrap();
        file.write_all(b"2026 stdout F unfinish").unwrap();
        assert_eq!(f.poll(&all).unwrap(), rec("stdout", true, "one").as_bytes());
        file.write_all(b"ed\n").unwrap();
        assert_eq!(f.poll(&all).unwrap(), b"2026 stdout F unfinished\n");
        file.set_len(0).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(rec("stdout", true, "two").as_bytes())
            .unwrap();
        assert_eq!(f.poll(&all).unwrap(), rec("stdout", true, "two").as_bytes());
    }
}
