//! Container logs. In: a container's stdout and stderr (in the shim); out: one log file per unit
//! in the CRI log format, rotated by size, and what `rctl logs` reads back from it.
//!
//! A record is one line of the file: `<RFC 3339 time, nanoseconds, UTC> <stream> <F|P> <text>`.
//! `F` ends a line of the container's output; `P` is a piece of a line that continues in the
//! next record of the same stream (a line longer than [`MAX_LINE`], or output that stayed
//! without a newline for a while). The text is the container's bytes as written, whatever they
//! are; only the newline ends a record.
//!
//! - [`writer`]: the shim's side, bounded and never blocking the container (see its doc).
//! - [`rotate`]: file names (`web.log`, `web.log.1`, ...) and the size-rotating file.
//! - [`read`]: reading back: tail across rotated files, filters, following across rotations.
//! - [`journal`]: the journald driver, sending what the writer wrote on to journald too.
//! - [`drops`]: the daemon's copy of the shims' dropped-line counts, for status.
//! - [`retention`]: logs of removed units, kept until pruned or old enough.

pub mod drops;
pub mod journal;
pub mod read;
pub mod retention;
pub mod rotate;
pub mod writer;

use std::time::Duration;

/// Longest line kept whole; longer output is split into partial (`P`) records.
pub const MAX_LINE: usize = 16 * 1024;

/// Size limits of one unit's log files: the daemon's defaults (`[logs]` of its config) or the
/// unit's own (`[logs]` of the unit file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// A file is rotated before it would pass this many bytes.
    pub max_size: u64,
    /// Files kept: the current one and `max_files - 1` rotated ones.
    pub max_files: u32,
}

/// Default `max_size` (Docker's common setting, the example).
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Default `max_files`.
pub const DEFAULT_MAX_FILES: u32 = 3;
/// The smallest `max_size`: four longest records, so that a file holds whole records.
pub const MIN_MAX_SIZE: u64 = 64 * 1024;
/// The most files a unit may keep.
pub const MAX_MAX_FILES: u32 = 100;
/// Default age after which the logs of a removed unit go.
pub const DEFAULT_KEEP_REMOVED: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: DEFAULT_MAX_SIZE,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

/// Checks a `max_size` value (bytes); the reason alone on error.
pub fn check_max_size(bytes: u64) -> Result<u64, String> {
    if bytes < MIN_MAX_SIZE {
        Err(format!(
            "max_size must be at least {} (got {bytes} bytes)",
            crate::unit::quantity::format_size(MIN_MAX_SIZE)
        ))
    } else {
        Ok(bytes)
    }
}

/// Checks a `max_files` value; the reason alone on error.
pub fn check_max_files(n: i64) -> Result<u32, String> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_MAX_FILES).contains(n))
        .ok_or_else(|| format!("max_files must be between 1 and {MAX_MAX_FILES} (got {n})"))
}

/// One record of a log file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    /// RFC 3339 time the shim read it.
    pub time: String,
    /// "stdout" or "stderr".
    pub stream: String,
    /// False when the line continues in the next record.
    pub full: bool,
    /// The text, without the newline.
    pub text: String,
}

/// Parses one line of a log file (text; binary output is shown lossily).
pub fn parse_line(line: &str) -> Option<Record> {
    let r = parse(line.as_bytes())?;
    Some(Record {
        time: String::from_utf8_lossy(r.time).into_owned(),
        stream: String::from_utf8_lossy(r.stream).into_owned(),
        full: r.full,
        text: String::from_utf8_lossy(r.text).into_owned(),
    })
}

/// One record, borrowed from the bytes of its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// RFC 3339 time.
    pub time: &'a [u8],
    /// `stdout` or `stderr`.
    pub stream: &'a [u8],
    /// False when the line continues in the next record of the stream.
    pub full: bool,
    /// The container's bytes, without the newline.
    pub text: &'a [u8],
}

/// Parses one line of a log file (without its newline), whatever bytes its text holds.
pub fn parse(line: &[u8]) -> Option<RecordRef<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    let text = parts.next().unwrap_or_default();
    Some(RecordRef {
        time,
        stream,
        full,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_whatever_the_text() {
        let r = parse(b"2026-01-01T00:00:00.000000000Z stdout F a b\xff\x00c").unwrap();
        assert_eq!(r.stream, b"stdout");
        assert!(r.full);
        assert_eq!(r.text, b"a b\xff\x00c");
        let r = parse(b"t stderr P ").unwrap();
        assert!(!r.full);
        assert_eq!(r.text, b"");
        assert_eq!(parse(b"t stderr P").unwrap().text, b"");
        assert!(parse(b"t stderr X x").is_none());
        assert!(parse(b"garbage").is_none());
        let r = parse_line("t stdout F up").unwrap();
        assert_eq!((r.stream.as_str(), r.text.as_str()), ("stdout", "up"));
    }

    #[test]
    fn limits() {
        assert!(check_max_size(64 * 1024).is_ok());
        assert!(check_max_size(1000).unwrap_err().contains("at least 64K"));
        assert_eq!(check_max_files(3), Ok(3));
        assert!(check_max_files(0).is_err());
        assert!(check_max_files(101).is_err());
        assert!(check_max_files(-1).is_err());
    }
}
