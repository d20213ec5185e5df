//! The shim's log writer. In: the read ends of the container's stdout and stderr pipes; out:
//! CRI records in the unit's log file (through [`Rotator`]), and a count of the lines it had
//! to drop, kept in a small file of the container's directory for `rctl status`.
//!
//! # Design: bounded, never blocking the container
//!
//! The shim has no async runtime, so this is threads, a queue and a condition variable:
//!
//! - **One reader thread per stream.** It only reads the pipe, cuts lines, stamps them with
//!   the time of the read and formats them into one batch of records per read (64 KiB at
//!   most of input; 4 KiB until a read fills that, so a quiet container's shim stays small). It never touches the disk, so the pipe keeps draining whatever the disk
//!   does, and the container never blocks on its own output because of it.
//! - **One queue, FIFO, bounded per stream.** Batches of both streams go into one queue in
//!   the order they were read, so the file keeps each stream's order (and the interleaving
//!   as the shim saw it). Each stream may hold at most [`QUEUE_BYTES`] (4 MiB) of formatted
//!   records in it; a batch that would pass its stream's budget is dropped whole and its
//!   records counted. A stream's budget is its own: a flood on stdout never costs stderr its
//!   lines. A batch is always accepted into an empty budget, so a single large read is never
//!   lost for size. 4 MiB is about 25 ms of a flood at full speed (1.5 million lines of 100
//!   bytes a second here): it rides out a writer descheduled on a busy machine or a short
//!   writeback stall; Docker's non-blocking mode defaults to 1 MB, which dropped lines in
//!   the benchmark (docs/PERFORMANCE.md). It costs nothing while the disk keeps up.
//! - **One writer thread** takes batches in order and writes them with rotation. A write
//!   that fails (disk full) drops that batch's records and counts them; the next one tries
//!   again. Behind a busy writer, new reads join the last queued batch of their stream, so
//!   the writer catches up with fewer, larger writes; it is woken only when it sleeps.
//! - **A counter thread** writes the drop counts to [`DROPPED_FILE`] a moment after they
//!   change (at most five times a second), so neither a reader nor the writer waits on it.
//!
//! What is dropped is always whole batches, never a piece of a record, so what is kept stays
//! parseable and in order; a gap is the only trace, besides the count.
//!
//! Lines without a newline: the text waits in the reader for its newline, at most
//! [`MAX_LINE`] bytes (then a `P` record goes out) and at most [`PARTIAL_AFTER`] of quiet on
//! the pipe (then what there is goes out as a `P` record, so a prompt or a progress bar shows
//! up in `rctl logs -f`); at the end of the stream, the rest goes out as a `P` record. A
//! busy stream's lines are never cut at read boundaries, since more data is already there.
//!
//! Binary output is written as it came: records are split at `\n` only, and readers get the
//! same bytes back.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::journal::{Feed, Target};
use super::rotate::Rotator;
use super::{Limits, MAX_LINE};

/// Budget of formatted records a stream may have waiting for the disk.
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Quiet on a pipe after which a line without newline goes out as a partial record.
pub const PARTIAL_AFTER: Duration = Duration::from_millis(100);
/// The file in the container directory holding the drop counts (JSON, [`Dropped`]).
pub const DROPPED_FILE: &str = "log-dropped.json";
/// Bytes read from a pipe at once: at first (most containers write little, and a reader's
/// buffer is resident for the container's life, twice per shim), then once a read fills it
/// (a busy stream).
const READ_FIRST: usize = 4 * 1024;
/// Bytes read from a busy pipe at once.
const READ_SIZE: usize = 64 * 1024;
/// A queued batch smaller than this takes the next read of its stream in.
const MERGE_BELOW: usize = 256 * 1024;

/// Lines (records) dropped since the container started, per stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dropped {
    /// Dropped from stdout.
    pub stdout: u64,
    /// Dropped from stderr.
    pub stderr: u64,
    /// Written to the file but not given to journald (the journald driver only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub journal: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Dropped {
    /// Both streams, from the file.
    pub fn total(&self) -> u64 {
        self.stdout + self.stderr
    }

    /// Reads the counts a shim left in `dir` (none if it dropped nothing).
    pub fn read(dir: &std::path::Path) -> Dropped {
        crate::store::atomic::read_json(&dir.join(DROPPED_FILE))
            .ok()
            .flatten()
            .unwrap_or_default()
    }
}

/// Which stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout.
    Stdout = 0,
    /// The container's stderr.
    Stderr = 1,
}

impl Stream {
    /// As written in records.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

struct Batch {
    stream: Stream,
    data: Vec<u8>,
    records: u64,
}

#[derive(Default)]
struct Queue {
    batches: VecDeque<Batch>,
    bytes: [usize; 2],
    /// Readers still reading.
    open: usize,
    /// The shim stopped waiting for the writer; nothing more is queued.
    abandoned: bool,
    /// The writer sleeps on the condition variable (a wake-up costs a system call: only then).
    writer_waits: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    dropped: [AtomicU64; 2],
    changed: SyncSender<()>,
    /// Entries the journald driver dropped (none without it).
    journal_dropped: Option<Arc<AtomicU64>>,
    /// Bytes waiting for the file, both streams: the journald sender holds back while any do.
    backlog: Arc<AtomicUsize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A poisoned lock only means a thread panicked; the queue itself is consistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn drop_records(&self, stream: Stream, records: u64) {
        if records > 0 {
            self.dropped[stream as usize].fetch_add(records, Ordering::Relaxed);
            // Full means the counter thread is already due to write.
            let _ = self.changed.try_send(());
        }
    }

    fn push(&self, batch: Batch) {
        if batch.records == 0 {
            return;
        }
        let mut q = self.lock();
        let s = batch.stream as usize;
        if q.abandoned || (q.bytes[s] > 0 && q.bytes[s] + batch.data.len() > QUEUE_BYTES) {
            drop(q);
            self.drop_records(batch.stream, batch.records);
            return;
        }
        q.bytes[s] += batch.data.len();
        self.backlog.fetch_add(batch.data.len(), Ordering::Relaxed);
        // Behind a busy writer, reads join the last batch of their stream: fewer, larger
        // writes (the writer has already taken the batch it is writing off the queue).
        match q.batches.back_mut() {
            Some(last) if last.stream == batch.stream && last.data.len() < MERGE_BELOW => {
                last.data.extend_from_slice(&batch.data);
                last.records += batch.records;
            }
            _ => q.batches.push_back(batch),
        }
        let wake = q.writer_waits;
        drop(q);
        if wake {
            self.ready.notify_one();
        }
    }

    fn counts(&self) -> Dropped {
        Dropped {
            stdout: self.dropped[0].load(Ordering::Relaxed),
            stderr: self.dropped[1].load(Ordering::Relaxed),
            journal: self
                .journal_dropped
                .as_ref()
                .map_or(0, |d| d.load(Ordering::Relaxed)),
        }
    }
}

/// A running log writer: its threads and what they share.
pub struct Logger {
    shared: Arc<Shared>,
    writer: JoinHandle<(Rotator, Option<Feed>)>,
    /// Disconnected when the writer returns (it holds the only sender).
    writer_done: Receiver<()>,
    counts_file: PathBuf,
}

/// Starts the threads: readers of `stdout` and `stderr`, the writer to `log` (the open
/// current file at `path`), the counter writing to `counts_file`, and with `journal` the
/// sender to journald of what the writer wrote.
pub fn start(
    path: PathBuf,
    log: File,
    limits: Limits,
    counts_file: PathBuf,
    journal: Option<Target>,
    stdout: std::io::PipeReader,
    stderr: std::io::PipeReader,
) -> Logger {
    let (changed, rx) = sync_channel(1);
    let backlog = Arc::new(AtomicUsize::new(0));
    let feed = journal.map(|t| super::journal::start(&t, changed.clone(), backlog.clone()));
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            open: 2,
            ..Queue::default()
        }),
        ready: Condvar::new(),
        dropped: [AtomicU64::new(0), AtomicU64::new(0)],
        changed,
        journal_dropped: feed.as_ref().map(Feed::dropped),
        backlog,
    });
    for (input, stream) in [(stdout, Stream::Stdout), (stderr, Stream::Stderr)] {
        let s = shared.clone();
        std::thread::spawn(move || read_stream(input, stream, &s));
    }
    let s = shared.clone();
    let rotator = Rotator::new(path, log, limits);
    let (done, writer_done) = channel::<()>();
    let writer = std::thread::spawn(move || {
        let _done = done;
        let rotator = write_loop(&s, rotator, feed.as_ref());
        (rotator, feed)
    });
    let s = shared.clone();
    let file = counts_file.clone();
    std::thread::spawn(move || count_loop(&s, rx, &file));
    Logger {
        shared,
        writer,
        writer_done,
        counts_file,
    }
}

impl Logger {
    /// Waits, at most `within`, for the streams to end and every record to be written (the
    /// container is gone, so its pipes close). Records still waiting after that are counted
    /// as dropped. Returns the final counts (also written to the counts file) and the last
    /// file error, if any.
    pub fn finish(self, within: Duration) -> (Dropped, Option<String>) {
        // Woken the moment the writer returns, not at the next tick of a poll: the shim's exit,
        // and so a restart, waits on this.
        let finished = matches!(
            self.writer_done.recv_timeout(within),
            Err(RecvTimeoutError::Disconnected)
        );
        let error = if finished {
            match self.writer.join() {
                Ok((rotator, feed)) => {
                    // The container is gone and the file written: what journald has not taken
                    // within a second more is left.
                    let journal = feed.and_then(|f| f.finish(Duration::from_secs(1)));
                    rotator.last_error.or(journal)
                }
                Err(_) => None,
            }
        } else {
            let mut q = self.shared.lock();
            q.abandoned = true;
            let left: Vec<Batch> = q.batches.drain(..).collect();
            drop(q);
            self.shared.ready.notify_all();
            for b in left {
                self.shared.drop_records(b.stream, b.records);
            }
            Some("the log file took too long to write; gave up on the rest".into())
        };
        let counts = self.shared.counts();
        if counts.total() > 0 {
            write_counts(&self.counts_file, counts);
        }
        (counts, error)
    }
}

fn read_stream(mut input: std::io::PipeReader, stream: Stream, shared: &Shared) {
    let mut buf = vec![0u8; READ_FIRST];
    let mut lines = Lines::new(stream);
    loop {
        if lines.has_partial() && !readable_within(&input, PARTIAL_AFTER) {
            shared.push(lines.flush(&timestamp()));
            continue;
        }
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        shared.push(lines.feed(&buf[..n], &timestamp()));
        if n == buf.len() && n < READ_SIZE {
            buf.resize(READ_SIZE, 0);
        }
    }
    shared.push(lines.flush(&timestamp()));
    let mut q = shared.lock();
    q.open -= 1;
    drop(q);
    shared.ready.notify_one();
}

/// True when the pipe has data (or was closed) within `timeout`.
fn readable_within(input: &impl AsFd, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms =
        PollTimeout::try_from(timeout.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, ms) {
        Ok(0) => false,
        // Ready, closed, or an error the read will report: read.
        _ => true,
    }
}

fn timestamp() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

fn write_loop(shared: &Shared, mut out: Rotator, journal: Option<&Feed>) -> Rotator {
    let mut q = shared.lock();
    loop {
        let Some(batch) = q.batches.pop_front() else {
            if q.open == 0 || q.abandoned {
                return out;
            }
            q.writer_waits = true;
            q = shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            q.writer_waits = false;
            continue;
        };
        drop(q);
        let len = batch.data.len();
        match out.write(&batch.data) {
            Err(lost) => shared.drop_records(batch.stream, lost),
            // Only what the file holds goes on, so the journal never has a line the file lacks.
            Ok(()) => {
                if let Some(feed) = journal {
                    feed.offer(batch.data, batch.records);
                }
            }
        }
        q = shared.lock();
        let s = batch.stream as usize;
        q.bytes[s] = q.bytes[s].saturating_sub(len);
        shared.backlog.fetch_sub(len, Ordering::Relaxed);
    }
}

fn count_loop(shared: &Shared, changed: Receiver<()>, file: &std::path::Path) {
    let mut written = Dropped::default();
    // Ends when the Logger and every thread holding the sender are gone.
    while changed.recv().is_ok() {
        std::thread::sleep(Duration::from_millis(200));
        let now = shared.counts();
        if now != written {
            write_counts(file, now);
            written = now;
        }
    }
}

fn write_counts(file: &std::path::Path, counts: Dropped) {
    let _ = crate::store::atomic::write_json_with(file, &counts, crate::store::atomic::Sync::None);
}

/// Cuts one stream's bytes into records: whole lines as `F`, pieces of long or unfinished
/// lines as `P`.
pub struct Lines {
    stream: Stream,
    /// The start of a line whose newline has not come yet.
    partial: Vec<u8>,
}

impl Lines {
    /// A cutter for `stream`.
    pub fn new(stream: Stream) -> Self {
        Lines {
            stream,
            partial: Vec::new(),
        }
    }

    /// Whether a line waits for its newline.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// `<time> <stream> F ` (or `P `): what goes before a record's text.
    fn header(&self, time: &str, full: bool) -> Vec<u8> {
        let mut h = Vec::with_capacity(time.len() + 10);
        h.extend_from_slice(time.as_bytes());
        h.push(b' ');
        h.extend_from_slice(self.stream.name().as_bytes());
        h.extend_from_slice(if full { b" F " } else { b" P " });
        h
    }

    /// The records for `chunk`, read at `time`; an unfinished line stays for later.
    fn feed(&mut self, chunk: &[u8], time: &str) -> Batch {
        let full = self.header(time, true);
        let part = self.header(time, false);
        // Sized once: the text, and a header and a newline per record.
        let lines = memchr::memchr_iter(b'\n', chunk).count();
        let mut data = Vec::with_capacity(chunk.len() + (lines + 2) * (full.len() + 1));
        let mut records = 0;
        let record = |data: &mut Vec<u8>, header: &[u8], text: &[u8]| {
            data.extend_from_slice(header);
            data.extend_from_slice(text);
            data.push(b'\n');
        };
        let mut start = 0;
        for pos in memchr::memchr_iter(b'\n', chunk) {
            let line = &chunk[start..pos];
            start = pos + 1;
            if self.partial.is_empty() && line.len() <= MAX_LINE {
                record(&mut data, &full, line);
                records += 1;
                continue;
            }
            self.partial.extend_from_slice(line);
            let whole = std::mem::take(&mut self.partial);
            let mut pieces = whole.chunks(MAX_LINE).peekable();
            while let Some(piece) = pieces.next() {
                let last = pieces.peek().is_none();
                record(&mut data, if last { &full } else { &part }, piece);
                records += 1;
            }
        }
        self.partial.extend_from_slice(&chunk[start..]);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            let piece = std::mem::replace(&mut self.partial, rest);
            record(&mut data, &part, &piece);
            records += 1;
        }
        Batch {
            stream: self.stream,
            data,
            records,
        }
    }

    /// The unfinished line as a partial record (none if there is none).
    fn flush(&mut self, time: &str) -> Batch {
        let mut data = Vec::new();
        let mut records = 0;
        if !self.partial.is_empty() {
            data = self.header(time, false);
            data.extend_from_slice(&std::mem::take(&mut self.partial));
            data.push(b'\n');
            records = 1;
        }
        Batch {
            stream: self.stream,
            data,
            records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    fn texts(data: &[u8]) -> Vec<(String, bool)> {
        data.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let r = super::super::parse(l).unwrap();
                (String::from_utf8_lossy(r.text).into_owned(), r.full)
            })
            .collect()
    }

    #[test]
    fn lines_are_cut_at_newlines_only() {
        let mut l = Lines::new(Stream::Stdout);
        let b = l.feed(b"one\ntw", "T");
        assert_eq!(b.records, 1);
        assert_eq!(b.data, b"T stdout F one\n");
        assert!(l.has_partial());
        let b = l.feed(b"o\n\nthree", "T");
        assert_eq!(texts(&b.data), [("two".into(), true), ("".into(), true)]);
        let b = l.flush("T");
        assert_eq!(b.data, b"T stdout P three\n");
        assert!(!l.has_partial());
        assert_eq!(l.flush("T").records, 0);
    }

    #[test]
    fn long_lines_become_partial_records() {
        let mut l = Lines::new(Stream::Stderr);
        let mut input = vec![b'a'; MAX_LINE * 2 + 10];
        input.push(b'\n');
        let b = l.feed(&input[..MAX_LINE + 5], "T");
        assert_eq!(b.records, 1);
        let b2 = l.feed(&input[MAX_LINE + 5..], "T");
        let got: Vec<(usize, bool)> = texts(&[b.data, b2.data].concat())
            .iter()
            .map(|(t, f)| (t.len(), *f))
            .collect();
        assert_eq!(got, [(MAX_LINE, false), (MAX_LINE, false), (10, true)]);
        // A long line in one chunk, too.
        let b = l.feed(&input, "T");
        let got: Vec<bool> = texts(&b.data).iter().map(|(_, f)| *f).collect();
        assert_eq!(got, [false, false, true]);
    }

    #[test]
    fn binary_bytes_are_kept() {
        let mut l = Lines::new(Stream::Stdout);
        let b = l.feed(b"\x00\xff\xfe\r\x1b[0m\n", "T");
        assert_eq!(b.data, b"T stdout F \x00\xff\xfe\r\x1b[0m\n");
    }

    #[test]
    fn both_streams_reach_the_file_in_order_and_partials_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.log");
        let file = File::create(&path).unwrap();
        let (out_r, mut out_w) = std::io::pipe().unwrap();
        let (err_r, mut err_w) = std::io::pipe().unwrap();
        let counts = dir.path().join(DROPPED_FILE);
        let logger = start(
            path.clone(),
            file,
            Limits::default(),
            counts,
            None,
            out_r,
            err_r,
        );
        for i in 0..2000 {
            writeln!(out_w, "out {i}").unwrap();
            if i % 10 == 0 {
                writeln!(err_w, "err {i}").unwrap();
            }
        }
        write!(out_w, "prompt> ").unwrap();
        // The unfinished line shows up after a quiet moment, before the stream ends.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read(&path).unwrap().ends_with(b" P prompt> \n") {
            assert!(Instant::now() < deadline, "no partial record");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(out_w);
        drop(err_w);
        let (dropped, error) = logger.finish(Duration::from_secs(5));
        assert_eq!(dropped, Dropped::default());
        assert_eq!(error, None);
        let data = std::fs::read(&path).unwrap();
        let mut outs = Vec::new();
        let mut errs = Vec::new();
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let r = super::super::parse(line).unwrap();
            let text = String::from_utf8_lossy(r.text).into_owned();
            match r.stream {
                b"stdout" => outs.push(text),
                _ => errs.push(text),
            }
        }
        let mut want: Vec<String> = (0..2000).map(|i| format!("out {i}")).collect();
        want.push("prompt> ".into());
        assert_eq!(outs, want);
        let want: Vec<String> = (0..2000).step_by(10).map(|i| format!("err {i}")).collect();
        assert_eq!(errs, want);
    }

    #[test]
    fn a_stuck_disk_drops_and_counts_but_never_blocks_the_writer_side() {
        // The log file is a FIFO nobody reads: the writer thread blocks at once.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.log");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let (out_r, mut out_w) = std::io::pipe().unwrap();
        let (err_r, err_w) = std::io::pipe().unwrap();
        let counts = dir.path().join(DROPPED_FILE);
        let logger = start(
            path,
            file,
            Limits::default(),
            counts.clone(),
            None,
            out_r,
            err_r,
        );
        let started = Instant::now();
        let line = [b'x'; 99];
        for _ in 0..200_000 {
            out_w.write_all(&line).unwrap();
            out_w.write_all(b"\n").unwrap();
        }
        // 20 MB through a stuck disk in well under the time a blocked pipe would take.
        assert!(started.elapsed() < Duration::from_secs(20));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Dropped::read(dir.path()).stdout == 0 {
            assert!(Instant::now() < deadline, "no counts written");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(out_w);
        drop(err_w);
        let (dropped, error) = logger.finish(Duration::from_millis(300));
        assert!(error.is_some());
        assert_eq!(dropped.stderr, 0);
        // Everything but the pipe's and the file's buffers was dropped, and counted.
        assert!(dropped.stdout > 100_000, "{dropped:?}");
        assert_eq!(Dropped::read(dir.path()), dropped);
    }

    use std::os::unix::fs::OpenOptionsExt;
}
