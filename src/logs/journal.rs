//! The journald log driver (`[logs] driver = "journald"`): the shim sends each record it wrote
//! to the log file on to journald as well, as Docker's dual logging does (the file stays, so
//! `rctl logs` keeps working). In: the batches the writer has just written; out: one journal
//! entry per record over journald's native protocol (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>).
//!
//! Entries carry Docker's fields (`CONTAINER_NAME`, `CONTAINER_ID`, `CONTAINER_ID_FULL`,
//! `CONTAINER_TAG`, `IMAGE_NAME`, `SYSLOG_IDENTIFIER`, `CONTAINER_PARTIAL_MESSAGE` on a piece
//! of a long line) and `RCD_UNIT`, with the priority of the stream: stdout 6 (info), stderr 3
//! (err). `MESSAGE` is the container's bytes as written, binary-safe.
//!
//! The sender is a thread of its own behind a queue bounded in bytes, so journald never slows
//! the container or the file: when journald falls behind (or is gone), batches for it are
//! dropped and counted, and the file still holds every line. journald takes tens of
//! microseconds of CPU per entry, so entries sent during a flood would take the cores the
//! container and the file need (the benchmark saw the file drop lines): the sender holds back
//! while the file's writer has a backlog, and runs niced.
//!
//! Written here rather than with `libsystemd::logging::journal_send`: that takes the message as
//! `&str` (container output is bytes) and would bring a second `nix`, `nom` and `hmac`; the
//! protocol is a few lines of framing on a datagram socket.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// journald's socket for native entries.
pub const DEFAULT_SOCKET: &str = "/run/systemd/journal/socket";
/// Bytes of records that may wait for journald.
pub const QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// How long one send may wait for room in journald's socket before its entry is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// How much nicer than the shim the sender runs, so that it yields the CPU to the readers and
/// the file's writer.
const SENDER_NICE: i32 = 10;
/// How long the sender waits while the file's writer has a backlog, before it looks again.
const YIELD: Duration = Duration::from_millis(2);

/// Where container logs go besides the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// The unit's log file only.
    #[default]
    File,
    /// The file and journald.
    Journald,
}

impl Driver {
    /// Parses a `driver` value; the reason alone on error.
    pub fn parse(s: &str) -> Result<Driver, String> {
        match s {
            "file" => Ok(Driver::File),
            "journald" => Ok(Driver::Journald),
            other => Err(format!(
                "unknown log driver {other:?}: use \"file\" or \"journald\""
            )),
        }
    }
}

/// Where one container's entries go, and what each says about where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// journald's native socket ([`DEFAULT_SOCKET`] unless the daemon's config says).
    pub socket: PathBuf,
    /// The unit (`CONTAINER_NAME`, `RCD_UNIT`, `SYSLOG_IDENTIFIER`, `CONTAINER_TAG`).
    pub unit: String,
    /// The runtime's container id.
    pub container_id: String,
    /// The image reference, for an image unit.
    pub image: Option<String>,
}

impl Target {
    /// The fields before each entry's own, framed once.
    fn prefix(&self) -> Vec<u8> {
        let mut p = Vec::new();
        let mut field = |name: &str, value: &str| field(&mut p, name, value.as_bytes());
        field("CONTAINER_NAME", &self.unit);
        field("RCD_UNIT", &self.unit);
        field("CONTAINER_TAG", &self.unit);
        field("SYSLOG_IDENTIFIER", &self.unit);
        field("CONTAINER_ID", &self.container_id);
        field("CONTAINER_ID_FULL", &self.container_id);
        if let Some(image) = &self.image {
            field("IMAGE_NAME", image);
        }
        p
    }
}

/// Appends one field: `NAME=value\n`, or the length-prefixed form when the value holds a
/// newline (the only byte the simple form cannot carry).
fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    if memchr::memchr(b'\n', value).is_some() {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The entry of one record (a line of the log file, without its newline), after `prefix`; None
/// for a line that is not a record.
fn entry(prefix: &[u8], line: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let r = super::parse(line)?;
    out.clear();
    out.extend_from_slice(prefix);
    let priority: &[u8] = if r.stream == b"stderr" { b"3" } else { b"6" };
    field(out, "PRIORITY", priority);
    if !r.full {
        field(out, "CONTAINER_PARTIAL_MESSAGE", b"true");
    }
    field(out, "MESSAGE", r.text);
    Some(())
}

/// The writer's side: batches offered to the sender thread.
pub struct Feed {
    tx: Option<Sender<Vec<u8>>>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    changed: SyncSender<()>,
    done: Receiver<()>,
    /// The first send that failed, for the shim's log.
    error: Arc<std::sync::Mutex<Option<String>>>,
}

/// Starts the sender thread for one container's entries. `changed` is poked when the drop
/// count moves (the shim's counter thread writes it out).
/// `backlog` is the bytes waiting for the log file: the sender sends only while it is zero.
pub fn start(target: &Target, changed: SyncSender<()>, backlog: Arc<AtomicUsize>) -> Feed {
    let socket = target.socket.clone();
    let (tx, rx) = channel::<Vec<u8>>();
    let queued = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let (done_tx, done) = channel::<()>();
    let error = Arc::new(std::sync::Mutex::new(None));
    let prefix = target.prefix();
    let (q, d, c, e) = (
        queued.clone(),
        dropped.clone(),
        changed.clone(),
        error.clone(),
    );
    std::thread::spawn(move || {
        let _done = done_tx;
        // The nice value is per thread on Linux: only the sender yields.
        let me = Some(rustix::thread::gettid());
        if let Ok(now) = rustix::process::getpriority_process(me) {
            let _ = rustix::process::setpriority_process(me, (now + SENDER_NICE).min(19));
        }
        let first = send_loop(&socket, &prefix, &rx, &q, &d, &c, &backlog);
        *e.lock().unwrap_or_else(|p| p.into_inner()) = first;
    });
    Feed {
        tx: Some(tx),
        queued,
        dropped,
        changed,
        done,
        error,
    }
}

impl Feed {
    /// Hands over a batch of `records` the writer has written; dropped (and counted) when the
    /// queue is full.
    pub fn offer(&self, data: Vec<u8>, records: u64) {
        let len = data.len();
        let queued = self.queued.load(Ordering::Relaxed);
        // A batch always fits an empty queue, as in the writer's.
        let sent = (queued == 0 || queued + len <= QUEUE_BYTES)
            && self.tx.as_ref().is_some_and(|tx| {
                self.queued.fetch_add(len, Ordering::Relaxed);
                tx.send(data).is_ok()
            });
        if !sent {
            self.count(records);
        }
    }

    fn count(&self, records: u64) {
        if records > 0 {
            self.dropped.fetch_add(records, Ordering::Relaxed);
            let _ = self.changed.try_send(());
        }
    }

    /// The count of entries dropped, as it moves.
    pub fn dropped(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    /// Lets the sender empty its queue, at most `within` (the thread is then left to the
    /// process's exit, its queue lost). Returns the first trouble, if any.
    pub fn finish(mut self, within: Duration) -> Option<String> {
        drop(self.tx.take());
        if !matches!(
            self.done.recv_timeout(within),
            Err(RecvTimeoutError::Disconnected)
        ) {
            return Some("journald took too long to take the container's last lines".into());
        }
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

fn send_loop(
    socket: &Path,
    prefix: &[u8],
    rx: &Receiver<Vec<u8>>,
    queued: &AtomicUsize,
    dropped: &AtomicU64,
    changed: &SyncSender<()>,
    backlog: &AtomicUsize,
) -> Option<String> {
    let mut conn: Option<UnixDatagram> = None;
    let mut first = None;
    let mut buf = Vec::with_capacity(prefix.len() + 256);
    while let Ok(data) = rx.recv() {
        queued.fetch_sub(data.len(), Ordering::Relaxed);
        let mut lost = 0u64;
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if entry(prefix, line, &mut buf).is_none() {
                continue;
            }
            // The file first: it waits on nothing, the journal waits on it. (Records keep
            // coming to the queue meanwhile, and what passes its bound is dropped.)
            while backlog.load(Ordering::Relaxed) > 0 {
                std::thread::sleep(YIELD);
            }
            if let Err(e) = send(&mut conn, socket, &buf) {
                lost += 1;
                first.get_or_insert_with(|| {
                    format!(
                        "cannot send to journald at {}: {e}; lines stay in the log file",
                        socket.display()
                    )
                });
            }
        }
        if lost > 0 {
            dropped.fetch_add(lost, Ordering::Relaxed);
            let _ = changed.try_send(());
        }
    }
    first
}

/// Sends one entry, connecting (again) when needed: journald may have restarted since.
fn send(conn: &mut Option<UnixDatagram>, socket: &Path, entry: &[u8]) -> std::io::Result<()> {
    for attempt in 0..2 {
        let c = match conn {
            Some(c) => c,
            None => {
                let c = UnixDatagram::unbound()?;
                c.connect(socket)?;
                c.set_write_timeout(Some(SEND_TIMEOUT))?;
                conn.insert(c)
            }
        };
        match c.send(entry) {
            Ok(_) => return Ok(()),
            Err(e) if attempt == 0 && reconnect_on(&e) => *conn = None,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The socket was replaced (journald restarted): a new connection reaches the new one.
fn reconnect_on(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED) | Some(libc::ENOTCONN) | Some(libc::ENOENT)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(socket: &Path) -> Target {
        Target {
            socket: socket.to_path_buf(),
            unit: "web".into(),
            container_id: "rcd-x-web-1".into(),
            image: Some("busybox:1".into()),
        }
    }

    /// The fields of one datagram, decoded as journald does.
    fn decode(mut d: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        while !d.is_empty() {
            let nl = d.iter().position(|&b| b == b'\n').unwrap();
            let line = &d[..nl];
            if let Some(eq) = line.iter().position(|&b| b == b'=') {
                out.push((
                    String::from_utf8(line[..eq].to_vec()).unwrap(),
                    line[eq + 1..].to_vec(),
                ));
                d = &d[nl + 1..];
            } else {
                let name = String::from_utf8(line.to_vec()).unwrap();
                let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap()) as usize;
                out.push((name, d[nl + 9..nl + 9 + len].to_vec()));
                assert_eq!(d[nl + 9 + len], b'\n');
                d = &d[nl + 10 + len..];
            }
        }
        out
    }

    fn get<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn entries_carry_the_container_and_the_stream() {
        let mut buf = Vec::new();
        let prefix = target(Path::new("/s")).prefix();
        entry(&prefix, b"t stderr F boom \xff", &mut buf).unwrap();
        let f = decode(&buf);
        assert_eq!(get(&f, "CONTAINER_NAME"), Some(&b"web"[..]));
        assert_eq!(get(&f, "RCD_UNIT"), Some(&b"web"[..]));
        assert_eq!(get(&f, "CONTAINER_ID_FULL"), Some(&b"rcd-x-web-1"[..]));
        assert_eq!(get(&f, "IMAGE_NAME"), Some(&b"busybox:1"[..]));
        assert_eq!(get(&f, "PRIORITY"), Some(&b"3"[..]));
        assert_eq!(get(&f, "MESSAGE"), Some(&b"boom \xff"[..]));
        assert_eq!(get(&f, "CONTAINER_PARTIAL_MESSAGE"), None);
        entry(&prefix, b"t stdout P a=b", &mut buf).unwrap();
        let f = decode(&buf);
        assert_eq!(get(&f, "PRIORITY"), Some(&b"6"[..]));
        assert_eq!(get(&f, "MESSAGE"), Some(&b"a=b"[..]));
        assert_eq!(get(&f, "CONTAINER_PARTIAL_MESSAGE"), Some(&b"true"[..]));
        assert!(entry(&prefix, b"not a record", &mut buf).is_none());
    }

    #[test]
    fn a_newline_in_a_value_is_framed_by_length() {
        let mut out = Vec::new();
        field(&mut out, "MESSAGE", b"a\nb");
        assert_eq!(
            decode(&out),
            vec![("MESSAGE".to_string(), b"a\nb".to_vec())]
        );
    }

    #[test]
    fn drivers_parse() {
        assert_eq!(Driver::parse("journald"), Ok(Driver::Journald));
        assert_eq!(Driver::parse("file"), Ok(Driver::File));
        assert!(Driver::parse("syslog")
            .unwrap_err()
            .contains("\"file\" or \"journald\""));
    }

    #[test]
    fn a_feed_delivers_every_record_to_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let server = UnixDatagram::bind(&path).unwrap();
        let (changed, _rx) = std::sync::mpsc::sync_channel(1);
        let feed = start(&target(&path), changed, Arc::default());
        feed.offer(b"t stdout F one\nt stderr F two\n".to_vec(), 2);
        assert_eq!(feed.finish(Duration::from_secs(5)), None);
        let mut buf = vec![0u8; 4096];
        let mut messages = Vec::new();
        for _ in 0..2 {
            let n = server.recv(&mut buf).unwrap();
            messages.push(get(&decode(&buf[..n]), "MESSAGE").unwrap().to_vec());
        }
        assert_eq!(messages, vec![b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn without_journald_lines_are_counted_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (changed, _rx) = std::sync::mpsc::sync_channel(1);
        let feed = start(&target(&dir.path().join("none")), changed, Arc::default());
        feed.offer(b"t stdout F one\nt stdout F two\n".to_vec(), 2);
        let dropped = feed.dropped();
        let error = feed.finish(Duration::from_secs(5)).unwrap();
        assert!(error.contains("cannot send to journald"), "{error}");
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
    }
}
