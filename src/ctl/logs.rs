//! `rctl logs`: the operator's flags in, the unit's output out, byte for byte as the container
//! wrote it (or with each line's time and stream); `--prune` removes the logs of removed units.

use std::io::Write;
use std::time::SystemTime;

use clap::{Args, ValueEnum};

use crate::api::client::{Client, Error as ClientError};
use crate::api::logs::Pruned;

/// `rctl logs`'s flags.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The unit (its logs stay readable after its file is removed, until pruned).
    #[arg(required_unless_present = "prune")]
    pub unit: Option<String>,
    /// Only the last N lines (counted across rotated files).
    #[arg(long, short = 'n')]
    pub tail: Option<usize>,
    /// Keep printing new lines, across container restarts and log rotation.
    #[arg(long, short)]
    pub follow: bool,
    /// Prefix each line with its time and stream.
    #[arg(long, short)]
    pub timestamps: bool,
    /// Only lines since: a duration before now (10m, 1h30m), an RFC 3339 time
    /// (2026-11-23T10:00:00Z), a date or a Unix time.
    #[arg(long, value_parser = since_arg)]
    pub since: Option<SystemTime>,
    /// Only this stream.
    #[arg(long, value_enum)]
    pub stream: Option<StreamArg>,
    /// Remove the logs of units no longer loaded, instead of showing logs.
    #[arg(long, conflicts_with_all = ["unit", "tail", "follow", "timestamps", "since", "stream"])]
    pub prune: bool,
}

/// `--stream`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum StreamArg {
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
}

fn since_arg(text: &str) -> Result<SystemTime, String> {
    crate::clock::parse(text, SystemTime::now())
}

/// Runs `rctl logs`.
pub async fn run(client: &Client, args: LogsArgs) -> Result<(), ClientError> {
    if args.prune {
        let p: Pruned = client.post("/v1/logs/prune").await?;
        if p.removed.is_empty() {
            println!("no logs of removed units");
        } else {
            println!("removed the logs of: {}", p.removed.join(", "));
        }
        return Ok(());
    }
    let unit = args.unit.unwrap_or_default();
    let mut path = format!(
        "/v1/units/{}/logs?follow={}",
        super::enc(&unit),
        args.follow
    );
    if let Some(n) = args.tail {
        path.push_str(&format!("&tail={n}"));
    }
    if let Some(t) = args.since {
        path.push_str(&format!("&since={}", humantime::format_rfc3339_nanos(t)));
    }
    if let Some(s) = args.stream {
        path.push_str(match s {
            StreamArg::Stdout => "&stream=stdout",
            StreamArg::Stderr => "&stream=stderr",
        });
    }
    let mut rest = Vec::new();
    let mut printer = Printer::new(args.timestamps);
    let mut out = std::io::stdout();
    client
        .stream(&path, |chunk| {
            rest.extend_from_slice(chunk);
            let Some(end) = rest.iter().rposition(|&b| b == b'\n') else {
                return;
            };
            let mut buf = Vec::with_capacity(end + 1);
            for line in rest[..end].split(|&b| b == b'\n') {
                printer.line(line, &mut buf);
            }
            rest.drain(..=end);
            let mut lock = out.lock();
            let _ = lock.write_all(&buf);
            let _ = lock.flush();
        })
        .await?;
    let _ = out.flush();
    Ok(())
}

/// Turns records into what the operator reads: the container's bytes, lines rejoined from
/// their partial records; with timestamps, each line prefixed once with its time and stream.
pub struct Printer {
    timestamps: bool,
    /// The stream of a line printed in part (its end still to come).
    open: Option<Vec<u8>>,
}

impl Printer {
    /// A printer, with or without timestamps.
    pub fn new(timestamps: bool) -> Self {
        Printer {
            timestamps,
            open: None,
        }
    }

    /// Appends the output for one line of a log file to `out`.
    pub fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if line.is_empty() {
            return;
        }
        let Some(r) = crate::logs::parse(line) else {
            out.extend_from_slice(line);
            out.push(b'\n');
            return;
        };
        if self.timestamps {
            match &self.open {
                Some(s) if s == r.stream => {}
                Some(_) => {
                    // Another stream cuts in on an unfinished line: end it visibly.
                    out.push(b'\n');
                    self.prefix(&r, out);
                }
                None => self.prefix(&r, out),
            }
        }
        out.extend_from_slice(r.text);
        if r.full {
            out.push(b'\n');
            self.open = None;
        } else {
            self.open = Some(r.stream.to_vec());
        }
    }

    fn prefix(&self, r: &crate::logs::RecordRef<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(r.time);
        out.push(b' ');
        out.extend_from_slice(r.stream);
        out.push(b' ');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(timestamps: bool, lines: &[&[u8]]) -> Vec<u8> {
        let mut p = Printer::new(timestamps);
        let mut out = Vec::new();
        for l in lines {
            p.line(l, &mut out);
        }
        out
    }

    #[test]
    fn partial_records_rejoin_and_bytes_pass_through() {
        let lines: &[&[u8]] = &[
            b"T1 stdout P abc",
            b"T2 stdout F def",
            b"T3 stderr F \xff\x00bin",
            b"T4 stdout P prompt> ",
            b"T5 stderr F err",
            b"not a record",
        ];
        assert_eq!(
            print(false, lines),
            b"abcdef\n\xff\x00bin\nprompt> err\nnot a record\n"
        );
        assert_eq!(
            print(true, lines),
            b"T1 stdout abcdef\nT3 stderr \xff\x00bin\nT4 stdout prompt> \nT5 stderr err\nnot a record\n"
        );
    }
}
