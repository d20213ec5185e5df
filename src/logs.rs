//! Container logs: the shim writes stdout/stderr lines in the CRI log format
//! (`<RFC 3339 time> <stream> <F|P> <text>`); the daemon reads them back for `rctl logs`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Longest line kept whole; longer output is split into partial (`P`) records.
const MAX_LINE: usize = 16 * 1024;

/// Copies one stream of a container into the shared log file until the stream closes.
pub fn copy_stream(mut input: impl Read, stream: &'static str, out: Arc<Mutex<File>>) {
    let mut buf = vec![0u8; MAX_LINE];
    let mut pending: Vec<u8> = Vec::with_capacity(MAX_LINE);
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut chunk = &buf[..n];
        let mut records = Vec::new();
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            pending.extend_from_slice(&chunk[..pos]);
            records.push((std::mem::take(&mut pending), true));
            chunk = &chunk[pos + 1..];
        }
        pending.extend_from_slice(chunk);
        while pending.len() >= MAX_LINE {
            let rest = pending.split_off(MAX_LINE);
            records.push((std::mem::replace(&mut pending, rest), false));
        }
        write_records(&out, stream, &records);
    }
    if !pending.is_empty() {
        write_records(&out, stream, &[(pending, false)]);
    }
}

fn write_records(out: &Mutex<File>, stream: &str, records: &[(Vec<u8>, bool)]) {
    if records.is_empty() {
        return;
    }
    let now = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
    let mut data = Vec::new();
    for (text, full) in records {
        data.extend_from_slice(now.as_bytes());
        data.push(b' ');
        data.extend_from_slice(stream.as_bytes());
        data.extend_from_slice(if *full { b" F " } else { b" P " });
        data.extend_from_slice(text);
        data.push(b'\n');
    }
    // A poisoned lock only means another copier panicked; the file is still usable.
    let mut f = out.lock().unwrap_or_else(|p| p.into_inner());
    // Logging must never stop the container: a full disk drops the record.
    let _ = f.write_all(&data);
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

/// Parses one line of a log file.
pub fn parse_line(line: &str) -> Option<Record> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?.to_string();
    let stream = parts.next()?.to_string();
    let full = match parts.next()? {
        "F" => true,
        "P" => false,
        _ => return None,
    };
    let text = parts.next().unwrap_or("").to_string();
    Some(Record {
        time,
        stream,
        full,
        text,
    })
}

/// The last `n` whole lines of a log file (all if `n` is None), and the offset where it ended.
pub fn tail(path: &Path, n: Option<usize>) -> io::Result<(Vec<String>, u64)> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    // Read back from the end in blocks until enough lines are seen.
    let mut start = len;
    let mut data = Vec::new();
    loop {
        let want = n.map(|n| n + 1);
        let lines = data.iter().filter(|&&b| b == b'\n').count();
        if start == 0 || want.is_some_and(|w| lines >= w) {
            break;
        }
        let step = if n.is_none() {
            start
        } else {
            start.min(64 * 1024)
        };
        start -= step;
        let mut block = vec![0u8; step as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut block)?;
        block.extend_from_slice(&data);
        data = block;
    }
    let text = String::from_utf8_lossy(&data);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // may be a cut line
    }
    if let Some(n) = n {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    Ok((lines, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn copy_splits_lines_and_marks_partials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let f = Arc::new(Mutex::new(File::create(&path).unwrap()));
        copy_stream(&b"one\ntwo\nthree"[..], "stdout", f.clone());
        let (lines, _) = tail(&path, None).unwrap();
        let recs: Vec<_> = lines.iter().filter_map(|l| parse_line(l)).collect();
        let got: Vec<_> = recs.iter().map(|r| (r.text.as_str(), r.full)).collect();
        assert_eq!(got, [("one", true), ("two", true), ("three", false)]);
        assert!(recs.iter().all(|r| r.stream == "stdout"));
    }

    #[test]
    fn tail_counts_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut f = File::create(&path).unwrap();
        for i in 0..10_000 {
            writeln!(f, "t stdout F line {i}").unwrap();
        }
        let (lines, _) = tail(&path, Some(3)).unwrap();
        assert_eq!(
            lines,
            [
                "t stdout F line 9997",
                "t stdout F line 9998",
                "t stdout F line 9999"
            ]
        );
        assert_eq!(tail(&path, None).unwrap().0.len(), 10_000);
        assert_eq!(tail(&dir.path().join("none"), Some(3)).unwrap().0.len(), 0);
    }
}
